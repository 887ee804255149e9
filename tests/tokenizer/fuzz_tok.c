/* libFuzzer target for the tokenizers: never crash on any input, ids always valid, and round
 * trips decode(encode(s)) == s for valid UTF-8 wherever the vocabulary allows it (SPM: with
 * the dummy-prefix space stripped, and no U+2581 in s since SPM reads it as a space).
 * Streaming detokenization of arbitrary ids always gives valid UTF-8. Chat prompts with the
 * input as content never contain more end-of-turn tokens than the template puts there.
 * Input: byte 0 picks the vocab and mode, the rest is the text. */
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
    "models/llama.cpp-vocab/ggml-vocab-deepseek-coder.gguf",
};
#define N_VOCABS (sizeof vocab_files / sizeof vocab_files[0])
static tok_vocab *vocabs[N_VOCABS];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_load_vocabs("fuzz_tok", vocab_files, N_VOCABS, vocabs);
    return 0;
}

/* Strict UTF-8 (Unicode Table 3-7). */
static int valid_utf8(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        unsigned lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
        else return 0;
        if (i + len > n)
            return 0;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (size_t k = 2; k < len; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF)
                return 0;
        i += len;
    }
    return 1;
}

#define REQUIRE(c)                                                        \
    do {                                                                  \
        if (!(c)) {                                                       \
            fprintf(stderr, "fuzz_tok: %s:%d: %s\n", __FILE__, __LINE__, #c); \
            abort();                                                      \
        }                                                                 \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 8192)
        return 0;
    unsigned mode = data[0];
    const tok_vocab *v = vocabs[(mode & 7) % N_VOCABS];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    unsigned flags = (mode & 8) ? TOK_PARSE_SPECIAL : 0;
    int32_t n_vocab = tok_n_vocab(v);

    size_t cap = tok_encode_bound(v, len), n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    REQUIRE(ids != NULL);
    REQUIRE(tok_encode(v, text, len, flags | TOK_ADD_BOS_NONE, ids, cap, &n) == 0);
    REQUIRE(n <= cap);
    for (size_t i = 0; i < n; i++)
        REQUIRE(ids[i] >= 0 && ids[i] < n_vocab);

    /* round trip */
    if (!(flags & TOK_PARSE_SPECIAL) && valid_utf8((const unsigned char *)text, len)) {
        int spm = tok_model(v) == TOK_MODEL_SPM;
        if (!(spm && memmem(text, len, "\xe2\x96\x81", 3) != NULL)) {
            char *out = malloc(len * 3 + 16);
            size_t ol = 0;
            REQUIRE(tok_decode(v, ids, n, spm ? TOK_DETOK_STRIP_SPACE : 0, out, len * 3 + 16, &ol) == 0);
            if (ol != len || memcmp(out, text, len) != 0) {
                fprintf(stderr, "round trip failed: '%.*s' -> '%.*s'\n", (int)len, text, (int)ol, out);
                abort();
            }
            free(out);
        }
    }

    /* arbitrary ids -> always valid UTF-8 */
    {
        tok_detok d;
        tok_detok_init(&d, v, (mode & 16) ? TOK_DETOK_SPECIAL : 0);
        size_t bcap = tok_detok_out_max(v), k;
        char *buf = malloc(bcap);
        REQUIRE(buf != NULL);
        for (size_t i = 0; i + 3 <= len; i += 3) {
            int32_t id = (int32_t)((unsigned)data[1 + i] | (unsigned)data[2 + i] << 8 |
                                   (unsigned)data[3 + i] << 16);
            int rc = tok_detok_push(&d, id, buf, bcap, &k);
            if (id >= n_vocab) {
                REQUIRE(rc < 0);
                continue;
            }
            REQUIRE(rc == 0);
            REQUIRE(valid_utf8((const unsigned char *)buf, k));
        }
        REQUIRE(tok_detok_flush(&d, buf, bcap, &k) == 0);
        REQUIRE(valid_utf8((const unsigned char *)buf, k));
        free(buf);
    }

    /* chat: content never adds end-of-turn tokens */
    if (mode & 32) {
        int tmpl = 1 + (int)((mode >> 6) & 3);
        chat_msg m = {"user", text, len};
        size_t cn = 0;
        size_t ccap = cap + 64;
        int32_t *cids = malloc(ccap * sizeof *cids);
        REQUIRE(cids != NULL);
        eng_error err;
        REQUIRE(chat_build(v, tmpl, &m, 1, false, cids, ccap, &cn, &err) == 0);
        size_t eog = 0;
        for (size_t i = 0; i < cn; i++) {
            REQUIRE(cids[i] >= 0 && cids[i] < n_vocab);
            eog += tok_is_eog(v, cids[i]) && tok_is_control(v, cids[i]);
        }
        REQUIRE(eog <= 1);
        free(cids);
    }
    free(ids);
    return 0;
}
