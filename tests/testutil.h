/* Shared helpers for llamad's tests: checks that say where they failed, and
 * paths into the shared models / test vectors that fail loudly when missing. */
#ifndef LLAMAD_TESTUTIL_H
#define LLAMAD_TESTUTIL_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

void tu_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) tu_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);        \
    } while (0)

#define CHECK_MSG(cond, ...)                                                 \
    do {                                                                     \
        if (!(cond)) tu_fail(__FILE__, __LINE__, __VA_ARGS__);               \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                   \
    do {                                                                     \
        long long tu_a_ = (long long)(a), tu_b_ = (long long)(b);            \
        if (tu_a_ != tu_b_)                                                  \
            tu_fail(__FILE__, __LINE__, "CHECK_EQ_INT(%s, %s): %lld != %lld",\
                    #a, #b, tu_a_, tu_b_);                                   \
    } while (0)

/* Absolute path of a file under the shared folder ($LLAMAD_SHARED), e.g.
 * tu_shared("models/stories260K.gguf"). Fails the test if it does not exist.
 * Returns a static buffer of a small rotating pool (8 entries). */
const char *tu_shared(const char *rel);

/* Loads a JSON file under the shared folder; fails the test on error. */
json_t *tu_load_json(const char *rel);

/* Reads a whole file into a malloc'd buffer; fails the test on error. */
void *tu_read_file(const char *path, size_t *ret_len);

/* A scratch directory for this test process (created once, under $TMPDIR or /tmp). */
const char *tu_tmpdir(void);

#endif
