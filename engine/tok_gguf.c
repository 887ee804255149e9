/* tok_load_from_gguf: the tokenizer.ggml.* metadata of a GGUF file -> tok_vocab_build. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "tok_internal.h"

static int read_str_array(const gguf_file *f, const char *key, tok_str **ret, size_t *ret_n,
                          bool required, eng_error *err)
{
    gguf_value arr;
    int rc = gguf_get_arr(f, key, GGUF_TYPE_STRING, &arr);
    if (rc == -ENOENT && !required) {
        *ret = NULL;
        *ret_n = 0;
        return 0;
    }
    if (rc < 0)
        return eng_error_set(err, rc == -ENOENT ? -EINVAL : rc, "%s: %s", key,
                             rc == -ENOENT ? "missing" : "not an array of strings");
    if (arr.arr_n > (1u << 24))
        return eng_error_set(err, -E2BIG, "%s: %llu entries is too many", key,
                             (unsigned long long)arr.arr_n);
    tok_str *s = malloc((arr.arr_n ? arr.arr_n : 1) * sizeof *s);
    if (s == NULL)
        return eng_error_set(err, -ENOMEM, "%s: out of memory", key);
    gguf_iter it;
    gguf_iter_init(&it, &arr);
    gguf_str g;
    size_t n = 0;
    while (n < arr.arr_n && gguf_iter_next_str(&it, &g)) {
        s[n].ptr = g.ptr;
        s[n].len = (size_t)g.len;
        n++;
    }
    if (n != arr.arr_n) {
        free(s);
        return eng_error_set(err, -EINVAL, "%s: unreadable string array", key);
    }
    *ret = s;
    *ret_n = n;
    return 0;
}

static int64_t read_id(const gguf_file *f, const char *key)
{
    int64_t x;
    if (gguf_get_i64(f, key, &x) == 0)
        return x < 0 ? -1 : x; /* out-of-range values keep the default in the builder */
    uint64_t u;
    if (gguf_get_u64(f, key, &u) == 0)
        return u > INT32_MAX ? (int64_t)INT32_MAX + 1 : (int64_t)u;
    return TOK_ID_DEFAULT;
}

static int read_flag(const gguf_file *f, const char *key)
{
    bool b;
    return gguf_get_bool(f, key, &b) == 0 ? (int)b : -1;
}

int tok_load_from_gguf(const gguf_file *f, tok_vocab **ret, eng_error *err)
{
    tok_vocab_desc d;
    tok_vocab_desc_init(&d);
    gguf_str model, pre, tmpl;
    if (gguf_get_str(f, "tokenizer.ggml.model", &model) < 0)
        return eng_error_set(err, -EINVAL, "tokenizer.ggml.model missing or not a string");
    if (gguf_str_eq(model, "llama"))
        d.model = TOK_MODEL_SPM;
    else if (gguf_str_eq(model, "gpt2"))
        d.model = TOK_MODEL_BPE;
    else
        return eng_error_set(err, -ENOTSUP, "tokenizer model '%.*s' is not supported (only llama, gpt2)",
                             (int)(model.len > 64 ? 64 : model.len), model.ptr);
    char pre_name[80];
    if (gguf_get_str(f, "tokenizer.ggml.pre", &pre) == 0) {
        size_t n = pre.len < sizeof pre_name - 1 ? (size_t)pre.len : sizeof pre_name - 1;
        memcpy(pre_name, pre.ptr, n);
        pre_name[n] = '\0';
        d.pre = pre_name;
    }
    tok_str *tokens = NULL, *merges = NULL;
    float *scores = NULL;
    int32_t *types = NULL;
    int rc = read_str_array(f, "tokenizer.ggml.tokens", &tokens, &d.n_tokens, true, err);
    if (rc < 0)
        return rc;
    d.tokens = tokens;
    if (d.model == TOK_MODEL_BPE) {
        rc = read_str_array(f, "tokenizer.ggml.merges", &merges, &d.n_merges, true, err);
        if (rc < 0)
            goto done;
        d.merges = merges;
    }
    gguf_value arr;
    if (gguf_get_arr(f, "tokenizer.ggml.scores", GGUF_TYPE_COUNT, &arr) == 0) {
        scores = malloc((d.n_tokens ? d.n_tokens : 1) * sizeof *scores);
        if (scores == NULL) {
            rc = eng_error_set(err, -ENOMEM, "out of memory for token scores");
            goto done;
        }
        if (arr.arr_n != d.n_tokens ||
            gguf_arr_copy(&arr, GGUF_TYPE_FLOAT32, 0, d.n_tokens, scores) < 0) {
            rc = eng_error_set(err, -EINVAL, "tokenizer.ggml.scores: %llu floats expected",
                               (unsigned long long)d.n_tokens);
            goto done;
        }
        d.scores = scores;
    }
    if (gguf_get_arr(f, "tokenizer.ggml.token_type", GGUF_TYPE_COUNT, &arr) == 0) {
        types = malloc((d.n_tokens ? d.n_tokens : 1) * sizeof *types);
        if (types == NULL) {
            rc = eng_error_set(err, -ENOMEM, "out of memory for token types");
            goto done;
        }
        if (arr.arr_n != d.n_tokens ||
            gguf_arr_copy(&arr, GGUF_TYPE_INT32, 0, d.n_tokens, types) < 0) {
            rc = eng_error_set(err, -EINVAL, "tokenizer.ggml.token_type: %llu integers expected",
                               (unsigned long long)d.n_tokens);
            goto done;
        }
        d.types = types;
    }
    d.bos = read_id(f, "tokenizer.ggml.bos_token_id");
    d.eos = read_id(f, "tokenizer.ggml.eos_token_id");
    d.unk = read_id(f, "tokenizer.ggml.unknown_token_id");
    d.eot = read_id(f, "tokenizer.ggml.eot_token_id");
    d.eom = read_id(f, "tokenizer.ggml.eom_token_id");
    d.pad = read_id(f, "tokenizer.ggml.padding_token_id");
    d.add_bos = read_flag(f, "tokenizer.ggml.add_bos_token");
    d.add_eos = read_flag(f, "tokenizer.ggml.add_eos_token");
    d.add_space_prefix = read_flag(f, "tokenizer.ggml.add_space_prefix");
    if (gguf_get_str(f, "tokenizer.chat_template", &tmpl) == 0) {
        d.chat_template = tmpl.ptr;
        d.chat_template_len = (size_t)tmpl.len;
    }
    rc = tok_vocab_build(&d, ret, err);
done:
    free(tokens);
    free(merges);
    free(scores);
    free(types);
    return rc;
}
