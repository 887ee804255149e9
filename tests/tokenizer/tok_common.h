/* Helpers shared by the tokenizer tests. */
#ifndef LLAMAD_TOK_TEST_COMMON_H
#define LLAMAD_TOK_TEST_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "testutil.h"
#include "tokenizer.h"

/* Loads the vocab of a shared GGUF (path relative to the shared folder). */
static inline tok_vocab *tt_load(const char *rel)
{
    gguf_file *f = NULL;
    eng_error err = {0};
    int rc = gguf_open(tu_shared(rel), &f, &err);
    CHECK_MSG(rc == 0, "gguf_open %s: %s", rel, err.msg);
    tok_vocab *v = NULL;
    rc = tok_load_from_gguf(f, &v, &err);
    CHECK_MSG(rc == 0, "tok_load_from_gguf %s: %s", rel, err.msg);
    gguf_close(f);
    return v;
}

/* Encodes text; returns a malloc'd id array and its length. */
static inline int32_t *tt_encode(const tok_vocab *v, const char *text, size_t len, unsigned flags,
                                 size_t *ret_n)
{
    size_t cap = tok_encode_bound(v, len);
    int32_t *ids = malloc(cap * sizeof *ids);
    CHECK(ids != NULL);
    int rc = tok_encode(v, text, len, flags, ids, cap, ret_n);
    CHECK_MSG(rc == 0, "tok_encode: %d", rc);
    return ids;
}

static inline void tt_print_ids(const char *what, const int32_t *ids, size_t n)
{
    fprintf(stderr, "%s:", what);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
}

/* Checks ids == want[0..nw), printing both on a mismatch. */
#define CHECK_IDS(ids, n, want, nw, ...)                                          \
    do {                                                                          \
        int ok_ = (n) == (nw);                                                    \
        for (size_t k_ = 0; ok_ && k_ < (size_t)(n); k_++)                        \
            ok_ = (ids)[k_] == (want)[k_];                                        \
        if (!ok_) {                                                               \
            tt_print_ids("got ", ids, n);                                         \
            tt_print_ids("want", want, nw);                                       \
            tu_fail(__FILE__, __LINE__, __VA_ARGS__);                             \
        }                                                                         \
    } while (0)

#endif
