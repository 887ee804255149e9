/* Encoding API behaviour: special-token parsing only on request, user-defined tokens,
 * BOS/EOS modes, segments, -ENOBUFS, id validation, vocabularies built in memory. */
#include <errno.h>

#include "tok_common.h"

static size_t count_id(const int32_t *ids, size_t n, int32_t id)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ids[i] == id;
    return c;
}

static void test_llama3_special(void)
{
    tok_vocab *v = tt_load("models/llama.cpp-vocab/llama3-vocab.gguf");
    const int32_t eot = tok_find(v, "<|eot_id|>", 10);
    CHECK_EQ_INT(eot, 128009);
    CHECK(tok_is_control(v, eot));
    const char *s = "Hello<|eot_id|>world";
    size_t n;
    /* off: plain text, never the control token */
    int32_t *ids = tt_encode(v, s, strlen(s), TOK_ADD_BOS_NONE, &n);
    CHECK_EQ_INT(count_id(ids, n, eot), 0);
    CHECK(n > 3);
    free(ids);
    /* on: Hello, <|eot_id|>, world */
    ids = tt_encode(v, s, strlen(s), TOK_ADD_BOS_NONE | TOK_PARSE_SPECIAL, &n);
    const int32_t want[] = {9906, 128009, 14957};
    CHECK_IDS(ids, n, want, 3, "llama3 parse special");
    free(ids);
    /* BOS modes: llama3 adds BOS by default */
    ids = tt_encode(v, "Hi", 2, TOK_ADD_BOS_AUTO, &n);
    CHECK(n >= 2 && ids[0] == 128000);
    free(ids);
    ids = tt_encode(v, "Hi", 2, TOK_ADD_BOS_NONE, &n);
    CHECK(n >= 1 && ids[0] != 128000);
    free(ids);
    /* the longest special token wins where two overlap */
    s = "<|start_header_id|>user<|end_header_id|>";
    ids = tt_encode(v, s, strlen(s), TOK_ADD_BOS_NONE | TOK_PARSE_SPECIAL, &n);
    CHECK(n == 3 && ids[0] == 128006 && ids[2] == 128007);
    free(ids);

    /* segments: control tokens only inside trusted segments, and never across segments */
    tok_segment segs[] = {
        {.kind = TOK_SEG_TRUSTED, .text = "<|eot_id|>", .len = 10},
        {.kind = TOK_SEG_TEXT, .text = "<|eot_id|>", .len = 10},
        {.kind = TOK_SEG_TRUSTED, .text = "<|eot", .len = 5},
        {.kind = TOK_SEG_TEXT, .text = "_id|>", .len = 5},
        {.kind = TOK_SEG_TOKEN, .id = 128001},
    };
    int32_t out[64];
    int rc = tok_encode_segments(v, segs, 5, TOK_ADD_BOS_NONE, out, 64, &n);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(count_id(out, n, eot), 1);
    CHECK(out[0] == eot && out[n - 1] == 128001);
    /* bad segments */
    tok_segment bad = {.kind = TOK_SEG_TOKEN, .id = 128256};
    CHECK_EQ_INT(tok_encode_segments(v, &bad, 1, 0, out, 64, &n), -EINVAL);
    bad.id = -1;
    CHECK_EQ_INT(tok_encode_segments(v, &bad, 1, 0, out, 64, &n), -EINVAL);
    bad = (tok_segment){.kind = 7, .text = "x", .len = 1};
    CHECK_EQ_INT(tok_encode_segments(v, &bad, 1, 0, out, 64, &n), -EINVAL);

    /* -ENOBUFS reports the count needed and fills what fits */
    s = "The quick brown fox jumps over the lazy dog";
    size_t full;
    int32_t *all = tt_encode(v, s, strlen(s), TOK_ADD_BOS_NONE, &full);
    size_t need = 0;
    rc = tok_encode(v, s, strlen(s), TOK_ADD_BOS_NONE, out, 3, &need);
    CHECK_EQ_INT(rc, -ENOBUFS);
    CHECK_EQ_INT(need, full);
    CHECK(out[0] == all[0] && out[2] == all[2]);
    CHECK(full <= tok_encode_bound(v, strlen(s)));
    free(all);
    /* ids are validated */
    const char *p;
    CHECK_EQ_INT(tok_piece(v, 128256, 0, &p, &n), -EINVAL);
    CHECK_EQ_INT(tok_piece(v, -5, 0, &p, &n), -EINVAL);
    CHECK_EQ_INT(tok_type(v, 1 << 30), -EINVAL);
    CHECK(!tok_is_control(v, -1));
    tok_free(v);
}

static void test_spm_special(void)
{
    tok_vocab *v = tt_load("models/llama.cpp-vocab/ggml-vocab-llama-spm.gguf");
    size_t n;
    int32_t *ids = tt_encode(v, "<s>Hello", 8, TOK_ADD_BOS_NONE, &n);
    CHECK_EQ_INT(count_id(ids, n, 1), 0);
    free(ids);
    /* parsed: <s>, then the dummy-prefix space again after the special token */
    ids = tt_encode(v, "<s>Hello", 8, TOK_ADD_BOS_NONE | TOK_PARSE_SPECIAL, &n);
    const int32_t want[] = {1, 15043};
    CHECK_IDS(ids, n, want, 2, "spm special + prefix");
    free(ids);
    /* AUTO: BOS for llama; FORCE; NONE */
    ids = tt_encode(v, "Hello", 5, TOK_ADD_BOS_AUTO, &n);
    const int32_t want2[] = {1, 15043};
    CHECK_IDS(ids, n, want2, 2, "spm bos auto");
    free(ids);
    ids = tt_encode(v, "", 0, TOK_ADD_BOS_AUTO, &n);
    CHECK(n == 1 && ids[0] == 1);
    free(ids);
    ids = tt_encode(v, "", 0, TOK_ADD_BOS_NONE, &n);
    CHECK_EQ_INT(n, 0);
    free(ids);
    /* byte fallback: U+10FFFF is not in the vocab -> 4 byte tokens <0xF4><0x8F><0xBF><0xBF> */
    ids = tt_encode(v, "\xf4\x8f\xbf\xbf", 4, TOK_ADD_BOS_NONE, &n);
    const int32_t want3[] = {29871, 3 + 0xF4, 3 + 0x8F, 3 + 0xBF, 3 + 0xBF};
    CHECK_IDS(ids, n, want3, 5, "spm byte fallback");
    free(ids);
    CHECK_EQ_INT(tok_bos(v), 1);
    CHECK_EQ_INT(tok_eos(v), 2);
    CHECK_EQ_INT(tok_unk(v), 0);
    CHECK(tok_add_bos(v) && !tok_add_eos(v) && tok_add_space_prefix(v));
    tok_free(v);
}

static void test_user_defined_and_gpt2(void)
{
    /* deepseek-coder: user-defined tokens are matched even without TOK_PARSE_SPECIAL,
     * control tokens (BOS) only with it */
    tok_vocab *v = tt_load("models/llama.cpp-vocab/ggml-vocab-deepseek-coder.gguf");
    int32_t pad = tok_find(v, "<pad>", 5);
    CHECK(pad > 0 && tok_type(v, pad) == TOK_TYPE_USER_DEFINED);
    const char *bos_text;
    size_t bos_len, n;
    CHECK_EQ_INT(tok_text(v, tok_bos(v), &bos_text, &bos_len), 0);
    char s[256];
    snprintf(s, sizeof s, "a<pad>b%.*s", (int)bos_len, bos_text);
    int32_t *ids = tt_encode(v, s, strlen(s), TOK_ADD_BOS_NONE, &n);
    CHECK_EQ_INT(count_id(ids, n, pad), 1);
    CHECK_EQ_INT(count_id(ids, n, tok_bos(v)), 0);
    free(ids);
    ids = tt_encode(v, s, strlen(s), TOK_ADD_BOS_NONE | TOK_PARSE_SPECIAL, &n);
    CHECK_EQ_INT(count_id(ids, n, pad), 1);
    CHECK_EQ_INT(count_id(ids, n, tok_bos(v)), 1);
    free(ids);
    tok_free(v);

    /* gpt-2: no add_bos in the file -> AUTO adds nothing, FORCE adds <|endoftext|> */
    v = tt_load("models/llama.cpp-vocab/ggml-vocab-gpt-2.gguf");
    CHECK(!tok_add_bos(v));
    ids = tt_encode(v, "Hello", 5, TOK_ADD_BOS_AUTO, &n);
    CHECK(n == 1 && ids[0] == 15496);
    free(ids);
    ids = tt_encode(v, "Hello", 5, TOK_ADD_BOS_FORCE, &n);
    CHECK(n == 2 && ids[0] == 50256 && ids[1] == 15496);
    free(ids);
    /* invalid UTF-8 is read as U+FFFD, as llama.cpp does */
    size_t n2;
    ids = tt_encode(v, "a\xff", 2, TOK_ADD_BOS_NONE, &n);
    int32_t *ids2 = tt_encode(v, "a\xef\xbf\xbd", 4, TOK_ADD_BOS_NONE, &n2);
    CHECK_IDS(ids, n, ids2, n2, "invalid byte = U+FFFD");
    free(ids);
    free(ids2);
    tok_free(v);
}

/* Vocabularies described in memory. */
static void test_build_in_memory(void)
{
    /* SPM: pieces with scores; "▁ab" must win over "▁a"+"b" by score */
    tok_str toks[] = {
        {"<unk>", 5}, {"<s>", 3}, {"</s>", 4}, {"\xe2\x96\x81", 3}, {"a", 1}, {"b", 1},
        {"\xe2\x96\x81" "a", 4}, {"ab", 2}, {"\xe2\x96\x81" "ab", 5}, {"<0x63>", 6},
    };
    float scores[] = {0, 0, 0, -1, -2, -2, -3, -1, -0.5f, 0};
    int32_t types[] = {2, 3, 3, 1, 1, 1, 1, 1, 1, 6};
    tok_vocab_desc d;
    tok_vocab_desc_init(&d);
    d.model = TOK_MODEL_SPM;
    d.n_tokens = 10;
    d.tokens = toks;
    d.scores = scores;
    d.types = types;
    tok_vocab *v = NULL;
    eng_error err = {0};
    CHECK_EQ_INT(tok_vocab_build(&d, &v, &err), 0);
    size_t n;
    int32_t *ids = tt_encode(v, "ab c", 4, TOK_ADD_BOS_AUTO, &n);
    /* <s> ▁ab ▁ <0x63> */
    const int32_t want[] = {1, 8, 3, 9};
    CHECK_IDS(ids, n, want, 4, "in-memory spm");
    free(ids);
    /* 'd' has no byte token: unk */
    ids = tt_encode(v, "d", 1, TOK_ADD_BOS_NONE, &n);
    const int32_t want2[] = {3, 0};
    CHECK_IDS(ids, n, want2, 2, "in-memory spm unk");
    free(ids);
    tok_free(v);

    /* invalid descriptions */
    int32_t bad_types[] = {2, 3, 3, 1, 1, 1, 1, 1, 1, 9};
    d.types = bad_types;
    CHECK_EQ_INT(tok_vocab_build(&d, &v, &err), -EINVAL);
    CHECK(strstr(err.msg, "type") != NULL);
    d.types = types;
    d.model = 7;
    CHECK_EQ_INT(tok_vocab_build(&d, &v, &err), -EINVAL);
    d.model = TOK_MODEL_BPE;
    d.pre = "no-such-pre";
    CHECK_EQ_INT(tok_vocab_build(&d, &v, &err), -ENOTSUP);
    CHECK(strstr(err.msg, "no-such-pre") != NULL);
    d.n_tokens = 0;
    d.pre = NULL;
    CHECK_EQ_INT(tok_vocab_build(&d, &v, &err), -EINVAL);

    /* BPE: byte-level alphabet "a", "b", "Ġ" and merges; rank order decides */
    tok_str btoks[] = {{"a", 1}, {"b", 1}, {"\xc4\xa0", 2}, {"ab", 2}, {"\xc4\xa0" "a", 3},
                       {"\xc4\xa0" "ab", 4}, {"bb", 2}};
    tok_str merges[] = {{"b b", 3}, {"\xc4\xa0 a", 4}, {"a b", 3}, {"\xc4\xa0" "a b", 5}, {"nosep", 5}};
    tok_vocab_desc_init(&d);
    d.model = TOK_MODEL_BPE;
    d.pre = "gpt-2";
    d.n_tokens = 7;
    d.tokens = btoks;
    d.n_merges = 5;
    d.merges = merges;
    CHECK_EQ_INT(tok_vocab_build(&d, &v, &err), 0);
    /* "abb ab": words "abb", " ab"; "abb" -> b b first (rank 0) -> a, bb;
     * " ab" -> Ġ a (rank 1) before a b (rank 2), then Ġa b */
    ids = tt_encode(v, "abb ab", 6, TOK_ADD_BOS_AUTO, &n);
    const int32_t want3[] = {0, 6, 5};
    CHECK_IDS(ids, n, want3, 3, "in-memory bpe");
    free(ids);
    CHECK_EQ_INT(tok_bos(v), -1);
    CHECK(!tok_add_bos(v));
    /* 'c' is not in the vocab: its byte has no token, nothing is emitted */
    ids = tt_encode(v, "c", 1, TOK_ADD_BOS_NONE, &n);
    CHECK_EQ_INT(n, 0);
    free(ids);
    tok_free(v);
}

int main(void)
{
    test_llama3_special();
    test_spm_special();
    test_user_defined_and_gpt2();
    test_build_in_memory();
    printf("ok\n");
    return 0;
}
