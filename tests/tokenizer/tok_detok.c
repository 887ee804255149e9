/* Pieces and the streaming detokenizer: UTF-8 split across byte tokens, emoji, invalid
 * bytes, the SPM leading space, control tokens, the greedy vectors' generated text, and
 * decode(encode(s)) == s over llama.cpp's test strings for every vocab. */
#include <errno.h>

#include "tok_common.h"

#define SEP "\n__ggml_vocab_test__\n"

/* Pushes ids one by one; checks each step's output against want[i] (NULL: skip check);
 * returns the concatenation (malloc'd). */
static char *stream(const tok_vocab *v, unsigned flags, const int32_t *ids, size_t n,
                    const char *const *want, size_t *ret_len)
{
    tok_detok d;
    tok_detok_init(&d, v, flags);
    size_t cap = tok_detok_out_max(v), total = 0, k;
    char *buf = malloc(cap), *all = malloc(cap * (n + 1) + 1);
    CHECK(buf && all);
    for (size_t i = 0; i <= n; i++) {
        int rc = i < n ? tok_detok_push(&d, ids[i], buf, cap, &k) : tok_detok_flush(&d, buf, cap, &k);
        CHECK_EQ_INT(rc, 0);
        if (want && want[i])
            CHECK_MSG(k == strlen(want[i]) && memcmp(buf, want[i], k) == 0,
                      "step %zu: got '%.*s' want '%s'", i, (int)k, buf, want[i]);
        memcpy(all + total, buf, k);
        total += k;
    }
    all[total] = '\0';
    free(buf);
    *ret_len = total;
    return all;
}

#define BT(b) (3 + (b)) /* <0xNN> in the Llama 2 vocab */

static void test_utf8_stream(void)
{
    tok_vocab *v = tt_load("models/llama.cpp-vocab/ggml-vocab-llama-spm.gguf");
    size_t len;
    /* € = E2 82 AC split over three byte tokens: nothing until the last byte */
    {
        const int32_t ids[] = {BT(0xE2), BT(0x82), BT(0xAC)};
        const char *const want[] = {"", "", "\xe2\x82\xac", ""};
        free(stream(v, 0, ids, 3, want, &len));
    }
    /* 🦙 U+1F999 = F0 9F A6 99, then 'a' */
    {
        const int32_t ids[] = {BT(0xF0), BT(0x9F), BT(0xA6), BT(0x99), BT('a')};
        const char *const want[] = {"", "", "", "\xf0\x9f\xa6\x99", "a", ""};
        free(stream(v, 0, ids, 5, want, &len));
    }
    /* invalid bytes: FF alone; E2 followed by 'A'; a surrogate ED A0 80 (3 subparts) */
    {
        const int32_t ids[] = {BT(0xFF), BT(0xE2), BT('A'), BT(0xED), BT(0xA0), BT(0x80)};
        const char *const want[] = {"\xef\xbf\xbd", "", "\xef\xbf\xbd" "A", "",
                                    "\xef\xbf\xbd\xef\xbf\xbd", "\xef\xbf\xbd", ""};
        free(stream(v, 0, ids, 6, want, &len));
    }
    /* overlong C0 80, and an incomplete sequence at the end becomes one U+FFFD at flush */
    {
        const int32_t ids[] = {BT(0xC0), BT(0x80), BT(0xF0), BT(0x9F), BT(0xA6)};
        const char *const want[] = {"\xef\xbf\xbd", "\xef\xbf\xbd", "", "", "", "\xef\xbf\xbd"};
        free(stream(v, 0, ids, 5, want, &len));
    }
    /* the SPM leading space: kept by default, dropped with TOK_DETOK_STRIP_SPACE; control
     * tokens render as nothing unless asked */
    {
        const int32_t ids[] = {1, 15043, 3186, 2}; /* <s> ▁Hello ▁world </s> */
        char *s = stream(v, 0, ids, 4, NULL, &len);
        CHECK(strcmp(s, " Hello world") == 0);
        free(s);
        s = stream(v, TOK_DETOK_STRIP_SPACE, ids, 4, NULL, &len);
        CHECK(strcmp(s, "Hello world") == 0);
        free(s);
        s = stream(v, TOK_DETOK_SPECIAL, ids, 4, NULL, &len);
        CHECK_MSG(strcmp(s, "<s> Hello world</s>") == 0, "got '%s'", s);
        free(s);
    }
    /* errors */
    {
        tok_detok d;
        tok_detok_init(&d, v, 0);
        char small[2];
        size_t k = 99;
        CHECK_EQ_INT(tok_detok_push(&d, 32000, small, 2, &k), -EINVAL);
        CHECK_EQ_INT(tok_detok_push(&d, -1, small, 2, &k), -EINVAL);
        CHECK_EQ_INT(tok_detok_push(&d, 15043, small, 2, &k), -ENOBUFS); /* " Hello" */
        CHECK_EQ_INT(k, 99);
        const int32_t ids[] = {15043};
        char out[4];
        CHECK_EQ_INT(tok_decode(v, ids, 1, 0, out, sizeof out, &k), -ENOBUFS);
        CHECK_EQ_INT(k, 6);
    }
    /* pieces */
    {
        const char *p;
        size_t n;
        CHECK_EQ_INT(tok_piece(v, 15043, 0, &p, &n), 0);
        CHECK(n == 6 && memcmp(p, " Hello", 6) == 0);
        CHECK_EQ_INT(tok_piece(v, BT(0x0A), 0, &p, &n), 0);
        CHECK(n == 1 && p[0] == '\n');
        CHECK_EQ_INT(tok_piece(v, 2, 0, &p, &n), 0);
        CHECK_EQ_INT(n, 0);
        CHECK_EQ_INT(tok_piece(v, 2, TOK_PIECE_SPECIAL, &p, &n), 0);
        CHECK(n == 4 && memcmp(p, "</s>", 4) == 0);
    }
    tok_free(v);
}

static void test_bpe_pieces(void)
{
    tok_vocab *v = tt_load("models/llama.cpp-vocab/llama3-vocab.gguf");
    /* an emoji that Llama 3 splits into byte-level pieces: streaming emits it whole */
    const char *s = "\xf0\x9f\xa6\x99 llama \xe2\x80\x94 caf\xc3\xa9";
    size_t n, len;
    int32_t *ids = tt_encode(v, s, strlen(s), TOK_ADD_BOS_NONE, &n);
    char *out = stream(v, 0, ids, n, NULL, &len);
    CHECK(len == strlen(s) && memcmp(out, s, len) == 0);
    free(out);
    /* every intermediate output is valid UTF-8 on its own (never a partial character) */
    tok_detok d;
    tok_detok_init(&d, v, 0);
    char buf[4096];
    for (size_t i = 0; i < n; i++) {
        size_t k;
        CHECK_EQ_INT(tok_detok_push(&d, ids[i], buf, sizeof buf, &k), 0);
        for (size_t j = 0; j < k;) {
            unsigned char c = (unsigned char)buf[j];
            size_t l = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
            CHECK(c < 0x80 || c >= 0xC2);
            CHECK(j + l <= k);
            j += l;
        }
    }
    free(ids);
    /* control tokens */
    const int32_t eot[] = {128009};
    char *t = stream(v, 0, eot, 1, NULL, &len);
    CHECK_EQ_INT(len, 0);
    free(t);
    t = stream(v, TOK_DETOK_SPECIAL, eot, 1, NULL, &len);
    CHECK(strcmp(t, "<|eot_id|>") == 0);
    free(t);
    tok_free(v);
}

/* generated_text of the greedy vectors is the concatenation of the pieces (leading space
 * kept, EOS empty) */
static void test_greedy_text(const char *json_rel, const char *model_rel)
{
    tok_vocab *v = tt_load(model_rel);
    json_t *j = tu_load_json(json_rel);
    json_t *cases = json_object_get(j, "cases");
    for (size_t i = 0; i < json_array_size(cases); i++) {
        json_t *c = json_array_get(cases, i);
        json_t *g = json_object_get(c, "generated_ids");
        const char *want = json_string_value(json_object_get(c, "generated_text"));
        size_t n = json_array_size(g), len;
        int32_t *ids = malloc((n + 1) * sizeof *ids);
        for (size_t k = 0; k < n; k++)
            ids[k] = (int32_t)json_integer_value(json_array_get(g, k));
        char *s = stream(v, 0, ids, n, NULL, &len);
        CHECK_MSG(len == strlen(want) && memcmp(s, want, len) == 0, "%s case %zu: '%s' vs '%s'",
                  json_rel, i, s, want);
        free(s);
        free(ids);
    }
    json_decref(j);
    tok_free(v);
}

static void test_roundtrip(const char *gguf_rel)
{
    tok_vocab *v = tt_load(gguf_rel);
    size_t inp_len;
    char *inp = tu_read_file(tu_shared("models/llama.cpp-vocab/ggml-vocab-llama-spm.gguf.inp"),
                             &inp_len);
    unsigned flags = tok_model(v) == TOK_MODEL_SPM ? TOK_DETOK_STRIP_SPACE : 0;
    int cases = 0;
    for (char *ip = inp, *sep; (sep = strstr(ip, SEP)) != NULL; ip = sep + strlen(SEP)) {
        size_t len = (size_t)(sep - ip), n, ol;
        int32_t *ids = tt_encode(v, ip, len, TOK_ADD_BOS_AUTO, &n);
        char *out = malloc(len * 3 + 16);
        CHECK_EQ_INT(tok_decode(v, ids, n, flags, out, len * 3 + 16, &ol), 0);
        CHECK_MSG(ol == len && memcmp(out, ip, len) == 0, "%s: round trip of '%.*s' gave '%.*s'",
                  gguf_rel, (int)len, ip, (int)ol, out);
        free(out);
        free(ids);
        cases++;
    }
    CHECK_EQ_INT(cases, 46);
    free(inp);
    tok_free(v);
}

int main(void)
{
    test_utf8_stream();
    test_bpe_pieces();
    test_greedy_text("testvectors/greedy/greedy_stories260K.json", "models/stories260K.gguf");
    test_greedy_text("testvectors/greedy/greedy_TinyStories-656K-Q8_0.json",
                     "models/TinyStories-656K-Q8_0.gguf");
    test_roundtrip("models/llama.cpp-vocab/ggml-vocab-llama-spm.gguf");
    test_roundtrip("models/llama.cpp-vocab/llama3-vocab.gguf");
    test_roundtrip("models/llama.cpp-vocab/ggml-vocab-gpt-2.gguf");
    test_roundtrip("models/llama.cpp-vocab/ggml-vocab-deepseek-llm.gguf");
    test_roundtrip("models/llama.cpp-vocab/ggml-vocab-deepseek-coder.gguf");
    printf("ok\n");
    return 0;
}
