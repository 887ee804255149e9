/* libFuzzer target for the chat template builder: arbitrary messages and roles against each
 * template family and vocabulary. Never a crash; every id valid; a valid role list always
 * builds (an invalid one is -EINVAL); the -ENOBUFS count is exact; and the content and roles
 * never inject control tokens: the prompt has exactly as many control tokens as the same
 * conversation with every content replaced by "x".
 * Input: byte 0 picks the vocab (bits 0-2), the family (bits 3-4) and add_generation_prompt
 * (bit 5); the rest is role NUL content NUL role NUL content ... (at most 16 messages). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "fuzz_vocabs.h"
#include "tokenizer.h"

static const char *const vocab_files[] = {
    "models/llama.cpp-vocab/ggml-vocab-llama-spm.gguf",
    "models/llama.cpp-vocab/llama3-vocab.gguf",
    "models/llama.cpp-vocab/ggml-vocab-gpt-2.gguf",
    "models/llama.cpp-vocab/ggml-vocab-deepseek-llm.gguf",
};
#define N_VOCABS (sizeof vocab_files / sizeof vocab_files[0])
static tok_vocab *vocabs[N_VOCABS];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_load_vocabs("fuzz_chat", vocab_files, N_VOCABS, vocabs);
    return 0;
}

#define REQUIRE(c)                                                                 \
    do {                                                                           \
        if (!(c)) {                                                                \
            fprintf(stderr, "fuzz_chat: %s:%d: %s\n", __FILE__, __LINE__, #c);     \
            abort();                                                               \
        }                                                                          \
    } while (0)

static bool role_valid(const char *r, int tmpl)
{
    size_t n = strlen(r);
    if (n == 0 || n > 32) return false;
    for (size_t i = 0; i < n; i++) {
        char c = r[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    if (tmpl == CHAT_TMPL_LLAMA2)
        return strcmp(r, "system") == 0 || strcmp(r, "user") == 0 || strcmp(r, "assistant") == 0;
    return true;
}

/* Builds into a fresh buffer sized by the -ENOBUFS count; returns the rc, the ids in *ret. */
static int build(const tok_vocab *v, int tmpl, const chat_msg *m, size_t n, bool gen, int32_t **ret,
                 size_t *ret_n)
{
    eng_error err = {0};
    size_t need = 0;
    int32_t one;
    int rc = chat_build(v, tmpl, m, n, gen, &one, 0, &need, &err);
    *ret = NULL;
    *ret_n = 0;
    if (rc == -EINVAL) return rc;
    if (rc == 0) { /* nothing to write at all */
        REQUIRE(need == 0);
        return 0;
    }
    REQUIRE(rc == -ENOBUFS);
    REQUIRE(need > 0 && need < (1u << 24));
    int32_t *ids = malloc(need * sizeof *ids);
    REQUIRE(ids != NULL);
    size_t got = 0;
    REQUIRE(chat_build(v, tmpl, m, n, gen, ids, need, &got, &err) == 0);
    REQUIRE(got == need);
    *ret = ids;
    *ret_n = got;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096) return 0;
    unsigned mode = data[0];
    const tok_vocab *v = vocabs[(mode & 7) % N_VOCABS];
    int tmpl = 1 + (int)((mode >> 3) & 3);
    bool gen = (mode & 32) != 0;
    int32_t n_vocab = tok_n_vocab(v);

    /* split into NUL-terminated role/content fields (a copy, so that roles end with a NUL) */
    char *copy = malloc(size);
    REQUIRE(copy != NULL);
    memcpy(copy, data + 1, size - 1);
    copy[size - 1] = '\0';
    chat_msg msgs[16], plain[16];
    size_t n = 0, pos = 0, len = size - 1;
    bool all_valid = true;
    while (pos < len && n < 16) {
        const char *role = copy + pos;
        size_t rl = strlen(role);
        pos += rl + 1;
        const char *content = pos <= len ? copy + pos : copy + len;
        size_t cl = pos <= len ? strlen(content) : 0;
        pos += cl + 1;
        msgs[n] = (chat_msg){role, content, cl};
        plain[n] = (chat_msg){role, "x", 1};
        all_valid = all_valid && role_valid(role, tmpl);
        n++;
    }

    int32_t *ids = NULL, *pids = NULL;
    size_t nid = 0, npid = 0;
    int rc = build(v, tmpl, msgs, n, gen, &ids, &nid);
    if (all_valid) REQUIRE(rc == 0);
    else REQUIRE(rc == -EINVAL);
    if (rc == 0) {
        REQUIRE(build(v, tmpl, plain, n, gen, &pids, &npid) == 0);
        size_t ctl = 0, pctl = 0;
        for (size_t i = 0; i < nid; i++) {
            REQUIRE(ids[i] >= 0 && ids[i] < n_vocab);
            ctl += tok_is_control(v, ids[i]);
        }
        for (size_t i = 0; i < npid; i++) pctl += tok_is_control(v, pids[i]);
        if (ctl != pctl) {
            fprintf(stderr, "fuzz_chat: %zu control tokens, %zu with plain content (family %d)\n", ctl, pctl, tmpl);
            abort();
        }
        /* the text form agrees on its length with a second call */
        eng_error err = {0};
        size_t tl = 0;
        char small[8];
        int rrc = chat_render(v, tmpl, msgs, n, gen, small, sizeof small, &tl, &err);
        REQUIRE(rrc == 0 || (rrc == -ENOBUFS && tl >= sizeof small));
        char *txt = malloc(tl + 1);
        REQUIRE(txt != NULL);
        size_t tl2 = 0;
        REQUIRE(chat_render(v, tmpl, msgs, n, gen, txt, tl + 1, &tl2, &err) == 0);
        REQUIRE(tl2 == tl && txt[tl] == '\0');
        free(txt);
    }
    free(ids);
    free(pids);
    free(copy);
    return 0;
}
