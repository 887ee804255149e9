/* The GGUF reader and the model description on every shared model file: hyperparameters
 * against MANIFEST.md, tensor types, tied output, vocab-only files, the dequant test files
 * (tensor offsets and sizes against dequant_gguf_files.json), and GGUF v1 rejection. */
#include <errno.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "model.h"
#include "quant.h"
#include "testutil.h"

static bool contains(const char *s, const char *sub) { return strstr(s, sub) != NULL; }

static size_t count_type(const gguf_file *f, uint32_t type)
{
    size_t n = 0;
    for (size_t i = 0; i < gguf_n_tensors(f); i++)
        n += gguf_tensor_at(f, i)->type == type;
    return n;
}

/* Checks the things every loaded llama model must satisfy: matrices point into the file,
 * row_bytes * rows fits the tensor, norm vectors are the right tensors. */
static void check_model_consistency(const eng_model *m)
{
    const gguf_file *f = m->gguf;
    const uint8_t *base = gguf_file_data(f);
    size_t size = gguf_file_size(f);
    const eng_mat *mats[9 * 64 + 2];
    size_t nm = 0;
    mats[nm++] = &m->tok_embd;
    mats[nm++] = &m->output;
    CHECK(m->hp.n_layer <= 64);
    for (uint32_t i = 0; i < m->hp.n_layer; i++) {
        const eng_layer *L = &m->layers[i];
        mats[nm++] = &L->wq; mats[nm++] = &L->wk; mats[nm++] = &L->wv; mats[nm++] = &L->wo;
        mats[nm++] = &L->w_gate; mats[nm++] = &L->w_up; mats[nm++] = &L->w_down;
        CHECK(L->attn_norm != NULL && L->ffn_norm != NULL);
        char name[64];
        snprintf(name, sizeof name, "blk.%u.attn_norm.weight", i);
        CHECK(gguf_find_tensor(f, name)->data == (const void *)L->attn_norm);
        snprintf(name, sizeof name, "blk.%u.ffn_norm.weight", i);
        CHECK(gguf_find_tensor(f, name)->data == (const void *)L->ffn_norm);
    }
    for (size_t i = 0; i < nm; i++) {
        const eng_mat *a = mats[i];
        const gguf_tensor *t = gguf_find_tensor(f, a->name);
        CHECK_MSG(t != NULL, "mat name %s is not a tensor", a->name);
        CHECK(t->data == a->data);
        CHECK_EQ_INT(a->cols, t->ne[0]);
        CHECK_EQ_INT(a->rows, t->ne[1]);
        CHECK_EQ_INT((uint64_t)a->row_bytes * a->rows, t->nbytes);
        CHECK((const uint8_t *)a->data >= base &&
              (const uint8_t *)a->data + t->nbytes <= base + size);
        CHECK(eng_type_info_get(a->type) != NULL);
    }
    CHECK(gguf_find_tensor(f, "output_norm.weight")->data == (const void *)m->out_norm);
    CHECK(strcmp(m->arch, "llama") == 0);
    CHECK(gguf_bookkeeping_bytes(f) < (1u << 20));
}

static eng_model *load(const char *rel)
{
    eng_model *m = NULL;
    eng_error err;
    int rc = eng_model_load(tu_shared(rel), &m, &err);
    CHECK_MSG(rc == 0, "%s: %s", rel, err.msg);
    CHECK(m != NULL && err.code == 0);
    check_model_consistency(m);
    return m;
}

static void test_stories260k(void)
{
    eng_model *m = load("models/stories260K.gguf");
    const eng_hparams *hp = &m->hp;
    CHECK_EQ_INT(gguf_version(m->gguf), 3);
    CHECK_EQ_INT(gguf_alignment(m->gguf), 32);
    CHECK_EQ_INT(gguf_n_tensors(m->gguf), 48);
    CHECK_EQ_INT(count_type(m->gguf, ENG_TYPE_F32), 48);
    CHECK_EQ_INT(hp->n_layer, 5);
    CHECK_EQ_INT(hp->n_embd, 64);
    CHECK_EQ_INT(hp->n_ff, 172);
    CHECK_EQ_INT(hp->n_head, 8);
    CHECK_EQ_INT(hp->n_head_kv, 4);
    CHECK_EQ_INT(hp->n_ctx_train, 2048);
    CHECK_EQ_INT(hp->head_dim, 8);
    CHECK_EQ_INT(hp->rope_dim, 8);
    CHECK_EQ_INT(hp->n_vocab, 512);
    CHECK(fabsf(hp->rms_eps - 1e-5f) < 1e-9f);
    CHECK(hp->rope_base == 10000.0f);
    CHECK_EQ_INT(hp->rope_scaling_type, ENG_ROPE_SCALING_NONE);
    CHECK(hp->rope_freqs == NULL);
    CHECK(!m->tied_output);
    CHECK(m->output.data != m->tok_embd.data);
    CHECK(strcmp(m->output.name, "output.weight") == 0);
    CHECK_EQ_INT(m->n_params, 292800);
    CHECK(strcmp(m->name, "llama") == 0);
    CHECK_EQ_INT(m->file_type, ENG_FILE_TYPE_UNKNOWN);
    CHECK_EQ_INT(m->tok_embd.row_bytes, 64 * 4);
    CHECK(strcmp(m->layers[3].wq.name, "blk.3.attn_q.weight") == 0);
    CHECK_EQ_INT(m->layers[3].wk.rows, 32);
    CHECK_EQ_INT(m->layers[3].w_down.cols, 172);

    /* tokenizer arrays through the metadata API */
    const gguf_file *f = m->gguf;
    gguf_value toks, scores, types;
    CHECK(gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &toks) == 0);
    CHECK(gguf_get_arr(f, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, &scores) == 0);
    CHECK(gguf_get_arr(f, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, &types) == 0);
    CHECK(gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_TYPE_INT32, &types) == -EINVAL);
    CHECK_EQ_INT(toks.arr_n, 512);
    CHECK_EQ_INT(scores.arr_n, 512);
    gguf_iter it;
    gguf_iter_init(&it, &toks);
    gguf_str s;
    size_t n = 0;
    while (gguf_iter_next_str(&it, &s)) {
        if (n == 0) CHECK(gguf_str_eq(s, "<unk>"));
        if (n == 1) CHECK(gguf_str_eq(s, "<s>"));
        if (n == 2) CHECK(gguf_str_eq(s, "</s>"));
        n++;
    }
    CHECK_EQ_INT(n, 512);
    CHECK_EQ_INT(it.index, 512);
    CHECK(!gguf_iter_next_str(&it, &s));
    float sc[512];
    CHECK(gguf_arr_copy(&scores, GGUF_TYPE_FLOAT32, 0, 512, sc) == 0);
    for (int i = 0; i < 512; i++) CHECK(sc[i] == gguf_arr_f32(&scores, (uint64_t)i));
    CHECK(gguf_arr_copy(&scores, GGUF_TYPE_FLOAT32, 500, 13, sc) == -ERANGE);
    CHECK(gguf_arr_copy(&scores, GGUF_TYPE_INT32, 0, 1, sc) == -EINVAL);
    CHECK_EQ_INT(gguf_arr_i32(&types, 0), 2);
    CHECK_EQ_INT(gguf_arr_i32(&types, 1), 3);
    CHECK_EQ_INT(gguf_arr_int(&types, 2), 3);
    CHECK_EQ_INT(gguf_arr_i32(&types, 512), 0); /* out of range: 0 */
    int32_t tt[4];
    CHECK(gguf_arr_copy(&types, GGUF_TYPE_INT32, 0, 4, tt) == 0);
    CHECK(tt[0] == 2 && tt[1] == 3);

    /* typed getters */
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    int64_t i64;
    float f32;
    double f64;
    bool bl;
    gguf_str str;
    CHECK(gguf_get_u32(f, "tokenizer.ggml.bos_token_id", &u32) == 0 && u32 == 1);
    CHECK(gguf_get_i32(f, "tokenizer.ggml.eos_token_id", &i32) == 0 && i32 == 2);
    CHECK(gguf_get_u64(f, "llama.block_count", &u64) == 0 && u64 == 5);
    CHECK(gguf_get_i64(f, "llama.block_count", &i64) == 0 && i64 == 5);
    /* 4294967295 as u32 fits u32 and i64, not i32 */
    CHECK(gguf_get_u32(f, "tokenizer.ggml.padding_token_id", &u32) == 0 && u32 == UINT32_MAX);
    CHECK(gguf_get_i32(f, "tokenizer.ggml.padding_token_id", &i32) == -ERANGE);
    CHECK(gguf_get_i64(f, "tokenizer.ggml.padding_token_id", &i64) == 0 && i64 == UINT32_MAX);
    CHECK(gguf_get_f32(f, "llama.attention.layer_norm_rms_epsilon", &f32) == 0);
    CHECK(gguf_get_f64(f, "llama.attention.layer_norm_rms_epsilon", &f64) == 0);
    CHECK(fabs(f64 - 1e-5) < 1e-9);
    CHECK(gguf_get_f32(f, "llama.block_count", &f32) == -EINVAL);
    CHECK(gguf_get_u32(f, "general.architecture", &u32) == -EINVAL);
    CHECK(gguf_get_u32(f, "no.such.key", &u32) == -ENOENT);
    CHECK(gguf_get_bool(f, "llama.block_count", &bl) == -EINVAL);
    CHECK(gguf_get_str(f, "general.architecture", &str) == 0 && gguf_str_eq(str, "llama"));
    CHECK(!gguf_str_eq(str, "llam") && !gguf_str_eq(str, "llama2"));
    CHECK(gguf_find_kv(f, "no.such.key") == NULL);
    const gguf_kv *kv0 = gguf_kv_at(f, 0);
    CHECK(kv0 != NULL && gguf_str_eq(kv0->key, "tokenizer.ggml.tokens"));
    CHECK(gguf_kv_at(f, gguf_n_kv(f)) == NULL);
    CHECK_EQ_INT(gguf_n_kv(f), 19);
    CHECK(gguf_tensor_at(f, 48) == NULL);
    CHECK(gguf_find_tensor(f, "blk.5.attn_q.weight") == NULL);
    const gguf_tensor *t = gguf_find_tensor(f, "blk.0.ffn_down.weight");
    CHECK(t != NULL && t->n_dims == 2 && t->ne[0] == 172 && t->ne[1] == 64 && t->ne[2] == 1);
    CHECK_EQ_INT(t->offset, 355840);
    CHECK_EQ_INT(t->nbytes, 172 * 64 * 4);
    CHECK_EQ_INT(gguf_data_offset(f), 14176); /* 14152 rounded up to 32 */
    CHECK((const uint8_t *)t->data == (const uint8_t *)gguf_file_data(f) + 14176 + 355840);
    eng_model_free(m);
}

static void test_tinystories_q8(void)
{
    eng_model *m = load("models/TinyStories-656K-Q8_0.gguf");
    const eng_hparams *hp = &m->hp;
    CHECK_EQ_INT(hp->n_layer, 2);
    CHECK_EQ_INT(hp->n_embd, 128);
    CHECK_EQ_INT(hp->n_ff, 384);
    CHECK_EQ_INT(hp->n_head, 8);
    CHECK_EQ_INT(hp->n_head_kv, 4);
    CHECK_EQ_INT(hp->n_ctx_train, 512);
    CHECK_EQ_INT(hp->head_dim, 16);
    CHECK_EQ_INT(hp->rope_dim, 16);
    CHECK_EQ_INT(hp->n_vocab, 2048);
    CHECK(fabsf(hp->rms_eps - 1e-6f) < 1e-10f);
    CHECK(hp->rope_base == 10000.0f);
    CHECK(m->tied_output);
    CHECK(m->output.data == m->tok_embd.data);
    CHECK(strcmp(m->output.name, "token_embd.weight") == 0);
    CHECK_EQ_INT(m->output.rows, 2048);
    CHECK_EQ_INT(m->tok_embd.type, ENG_TYPE_Q8_0);
    CHECK_EQ_INT(m->tok_embd.row_bytes, 128 / 32 * 34);
    CHECK_EQ_INT(count_type(m->gguf, ENG_TYPE_Q8_0), 15);
    CHECK_EQ_INT(count_type(m->gguf, ENG_TYPE_F32), 5);
    CHECK_EQ_INT(m->file_type, 7);
    CHECK(strcmp(m->name, "Raincandy U TinyStories 656K") == 0);
    bool add_bos = false;
    CHECK(gguf_get_bool(m->gguf, "tokenizer.ggml.add_bos_token", &add_bos) == 0 && add_bos);
    gguf_value langs;
    CHECK(gguf_get_arr(m->gguf, "general.languages", GGUF_TYPE_STRING, &langs) == 0);
    gguf_iter it;
    gguf_str s;
    gguf_iter_init(&it, &langs);
    CHECK(gguf_iter_next_str(&it, &s) && gguf_str_eq(s, "en"));
    CHECK(!gguf_iter_next_str(&it, &s));
    eng_model_free(m);
}

static void test_tiny_random(void)
{
    eng_model *m = load("models/llama-2-tiny-random.gguf");
    const eng_hparams *hp = &m->hp;
    CHECK_EQ_INT(hp->n_layer, 1);
    CHECK_EQ_INT(hp->n_embd, 8);
    CHECK_EQ_INT(hp->n_ff, 32);
    CHECK_EQ_INT(hp->n_head, 2);
    CHECK_EQ_INT(hp->n_head_kv, 2);
    CHECK_EQ_INT(hp->n_ctx_train, 4096);
    CHECK_EQ_INT(hp->head_dim, 4);
    CHECK_EQ_INT(hp->n_vocab, 32000);
    CHECK(!m->tied_output);
    CHECK_EQ_INT(count_type(m->gguf, ENG_TYPE_F16), 9);
    CHECK_EQ_INT(count_type(m->gguf, ENG_TYPE_F32), 3);
    CHECK_EQ_INT(m->file_type, 1);
    CHECK_EQ_INT(m->output.type, ENG_TYPE_F16);
    eng_model_free(m);
}

static void test_greedy_q4(void)
{
    eng_model *m = load("testvectors/greedy/TinyStories-656K-Q4_0.gguf");
    CHECK(m->tied_output);
    CHECK_EQ_INT(m->tok_embd.type, ENG_TYPE_Q8_0);
    CHECK_EQ_INT(count_type(m->gguf, ENG_TYPE_Q4_0), 14);
    CHECK_EQ_INT(count_type(m->gguf, ENG_TYPE_F32), 5);
    CHECK_EQ_INT(m->layers[1].wq.type, ENG_TYPE_Q4_0);
    CHECK_EQ_INT(m->file_type, 2);
    CHECK_EQ_INT(m->hp.n_vocab, 2048);
    eng_model_free(m);
}

struct vocab_file { const char *rel; const char *arch; uint64_t n_tokens; uint64_t n_merges; };

static void test_vocab_only(void)
{
    static const struct vocab_file files[] = {
        {"models/llama.cpp-vocab/ggml-vocab-llama-spm.gguf", "llama", 32000, 0},
        {"models/llama.cpp-vocab/ggml-vocab-deepseek-coder.gguf", "llama", 32256, 31757},
        {"models/llama.cpp-vocab/ggml-vocab-deepseek-llm.gguf", "llama", 102400, 99757},
        {"models/llama.cpp-vocab/ggml-vocab-gpt-2.gguf", "gpt2", 50257, 50000},
        {"models/llama.cpp-vocab/llama3-vocab.gguf", "llama", 128256, 280147},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        const struct vocab_file *vf = &files[i];
        gguf_file *f = NULL;
        eng_error err;
        int rc = gguf_open(tu_shared(vf->rel), &f, &err);
        CHECK_MSG(rc == 0, "%s: %s", vf->rel, err.msg);
        CHECK_EQ_INT(gguf_n_tensors(f), 0);
        gguf_str arch;
        CHECK(gguf_get_str(f, "general.architecture", &arch) == 0 && gguf_str_eq(arch, vf->arch));
        gguf_value toks;
        CHECK(gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &toks) == 0);
        CHECK_EQ_INT(toks.arr_n, vf->n_tokens);
        gguf_iter it;
        gguf_str s;
        uint64_t n = 0, bytes = 0;
        gguf_iter_init(&it, &toks);
        while (gguf_iter_next_str(&it, &s)) {
            n++;
            bytes += s.len;
        }
        CHECK_EQ_INT(n, vf->n_tokens);
        /* the strings fill the array exactly: 8-byte length + bytes each */
        CHECK_EQ_INT(bytes + 8 * n, toks.size);
        gguf_value merges;
        rc = gguf_get_arr(f, "tokenizer.ggml.merges", GGUF_TYPE_STRING, &merges);
        if (vf->n_merges) {
            CHECK(rc == 0);
            CHECK_EQ_INT(merges.arr_n, vf->n_merges);
            gguf_iter_init(&it, &merges);
            n = 0;
            while (gguf_iter_next_str(&it, &s)) {
                if (n == 0) CHECK(memchr(s.ptr, ' ', (size_t)s.len) != NULL);
                n++;
            }
            CHECK_EQ_INT(n, vf->n_merges);
        } else {
            CHECK(rc == -ENOENT);
        }
        gguf_value tt;
        CHECK(gguf_get_arr(f, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, &tt) == 0);
        CHECK_EQ_INT(tt.arr_n, vf->n_tokens);
        /* bookkeeping does not grow with array sizes */
        CHECK_MSG(gguf_bookkeeping_bytes(f) < 64 * 1024, "%s: %zu bytes of bookkeeping",
                  vf->rel, gguf_bookkeeping_bytes(f));
        gguf_close(f);

        eng_model *m = NULL;
        rc = eng_model_load(tu_shared(vf->rel), &m, &err);
        CHECK(rc < 0 && m == NULL);
        if (strcmp(vf->arch, "llama") == 0)
            CHECK_MSG(contains(err.msg, "no tensors"), "%s: %s", vf->rel, err.msg);
        else
            CHECK_MSG(contains(err.msg, "unsupported architecture 'gpt2'"), "%s", err.msg);
    }
    /* llama3-vocab: the first tokens and merges, and the chat template */
    gguf_file *f = NULL;
    CHECK(gguf_open(tu_shared("models/llama.cpp-vocab/llama3-vocab.gguf"), &f, NULL) == 0);
    gguf_value merges;
    CHECK(gguf_get_arr(f, "tokenizer.ggml.merges", GGUF_TYPE_STRING, &merges) == 0);
    gguf_iter it;
    gguf_str s;
    gguf_iter_init(&it, &merges);
    CHECK(gguf_iter_next_str(&it, &s) && gguf_str_eq(s, "\xc4\xa0 \xc4\xa0"));
    gguf_str tmpl;
    CHECK(gguf_get_str(f, "tokenizer.chat_template", &tmpl) == 0 && tmpl.len > 100);
    uint32_t bos;
    CHECK(gguf_get_u32(f, "tokenizer.ggml.bos_token_id", &bos) == 0 && bos == 128000);
    gguf_close(f);
}

static uint32_t type_id_by_name(const char *name)
{
    for (uint32_t t = 0; t < 64; t++)
        if (eng_type_info_get(t) && strcmp(eng_type_info_get(t)->name, name) == 0) return t;
    tu_fail(__FILE__, __LINE__, "unknown type name %s", name);
}

static void test_dequant_files(void)
{
    json_t *list = tu_load_json("testvectors/dequant/dequant_gguf_files.json");
    CHECK(json_is_array(list));
    CHECK_EQ_INT(json_array_size(list), 14);
    size_t i;
    json_t *entry;
    json_array_foreach(list, i, entry) {
        const char *name = json_string_value(json_object_get(entry, "gguf"));
        char rel[256];
        snprintf(rel, sizeof rel, "testvectors/dequant/%s", name);
        eng_model *m = load(rel);
        const gguf_file *f = m->gguf;
        CHECK_EQ_INT(gguf_file_size(f), json_integer_value(json_object_get(entry, "bytes")));
        CHECK_EQ_INT(m->file_type, json_integer_value(json_object_get(entry, "general.file_type")));
        json_t *tensors = json_object_get(entry, "tensors");
        CHECK_EQ_INT(gguf_n_tensors(f), json_array_size(tensors));
        CHECK_EQ_INT(gguf_n_tensors(f), json_integer_value(json_object_get(entry, "n_tensors")));
        size_t j;
        json_t *jt;
        json_array_foreach(tensors, j, jt) {
            const char *tn = json_string_value(json_object_get(jt, "name"));
            const gguf_tensor *t = gguf_tensor_at(f, j);
            CHECK_MSG(strcmp(t->name.ptr, tn) == 0, "%s: tensor %zu is %s, want %s", name, j,
                      t->name.ptr, tn);
            CHECK(gguf_find_tensor(f, tn) == t);
            CHECK_EQ_INT(t->offset, json_integer_value(json_object_get(jt, "offset_in_data")));
            CHECK_EQ_INT(t->nbytes, json_integer_value(json_object_get(jt, "nbytes")));
            CHECK_EQ_INT(t->type,
                         type_id_by_name(json_string_value(json_object_get(jt, "ggml_type"))));
            json_t *shape = json_object_get(jt, "shape");
            CHECK_EQ_INT(t->n_dims, json_array_size(shape));
            for (size_t d = 0; d < json_array_size(shape); d++)
                CHECK_EQ_INT(t->ne[d], json_integer_value(json_array_get(shape, d)));
            CHECK((const uint8_t *)t->data ==
                  (const uint8_t *)gguf_file_data(f) + gguf_data_offset(f) + t->offset);
        }
        json_t *hpj = json_object_get(entry, "hparams");
        CHECK_EQ_INT(m->hp.n_layer, json_integer_value(json_object_get(hpj, "block_count")));
        CHECK_EQ_INT(m->hp.n_embd, json_integer_value(json_object_get(hpj, "embedding_length")));
        CHECK_EQ_INT(m->hp.n_ff, json_integer_value(json_object_get(hpj, "feed_forward_length")));
        CHECK_EQ_INT(m->hp.n_head, json_integer_value(json_object_get(hpj, "attention.head_count")));
        CHECK_EQ_INT(m->hp.n_head_kv,
                     json_integer_value(json_object_get(hpj, "attention.head_count_kv")));
        CHECK_EQ_INT(m->hp.rope_dim, json_integer_value(json_object_get(hpj, "rope.dimension_count")));
        CHECK_EQ_INT(m->hp.n_ctx_train, json_integer_value(json_object_get(hpj, "context_length")));
        CHECK_EQ_INT(m->hp.n_vocab, json_integer_value(json_object_get(hpj, "vocab_size")));
        CHECK_EQ_INT(m->hp.head_dim, 64);
        CHECK(m->tied_output);
        eng_model_free(m);
    }
    json_decref(list);
}

static void test_v1_rejected(void)
{
    const char *path = tu_shared("models/tinyllamas-stories-260k-f32.gguf");
    gguf_file *f = NULL;
    eng_error err;
    int rc = gguf_open(path, &f, &err);
    CHECK(rc == -ENOTSUP && f == NULL);
    CHECK_MSG(contains(err.msg, "v1") && contains(err.msg, "unsupported"), "%s", err.msg);
    eng_model *m = NULL;
    rc = eng_model_load(path, &m, &err);
    CHECK(rc == -ENOTSUP && m == NULL);
    CHECK_MSG(contains(err.msg, "GGUF v1 is unsupported"), "%s", err.msg);
}

static void test_open_errors(void)
{
    gguf_file *f = NULL;
    eng_error err;
    char path[4200];
    snprintf(path, sizeof path, "%s/does-not-exist.gguf", tu_tmpdir());
    CHECK(gguf_open(path, &f, &err) == -ENOENT && f == NULL);
    CHECK_MSG(contains(err.msg, "does-not-exist.gguf"), "%s", err.msg);
    CHECK(gguf_open(tu_tmpdir(), &f, &err) < 0 && f == NULL);
    CHECK_MSG(contains(err.msg, "not a regular file"), "%s", err.msg);
    snprintf(path, sizeof path, "%s/empty.gguf", tu_tmpdir());
    FILE *fp = fopen(path, "wb");
    CHECK(fp != NULL);
    fclose(fp);
    CHECK(gguf_open(path, &f, &err) == -EINVAL && f == NULL);
    CHECK_MSG(contains(err.msg, "empty"), "%s", err.msg);
    /* a non-GGUF file */
    CHECK(gguf_open(tu_shared("models/stories260K.bin"), &f, &err) == -EINVAL);
    CHECK_MSG(contains(err.msg, "bad magic"), "%s", err.msg);
    eng_model *m = NULL;
    CHECK(eng_model_load(tu_shared("models/tok512.bin"), &m, &err) == -EINVAL && m == NULL);
    CHECK_MSG(contains(err.msg, "not a GGUF file"), "%s", err.msg);
    /* NULL err is allowed */
    CHECK(gguf_open(path, &f, NULL) == -EINVAL);
    unlink(path);
}

static void test_open_mem_matches_file(void)
{
    size_t len;
    void *buf = tu_read_file(tu_shared("models/TinyStories-656K-Q8_0.gguf"), &len);
    gguf_file *f = NULL;
    eng_error err;
    CHECK(gguf_open_mem(buf, len, &f, &err) == 0);
    CHECK(gguf_file_data(f) == buf);
    eng_model *m = NULL;
    CHECK_MSG(eng_model_from_gguf(f, &m, &err) == 0, "%s", err.msg);
    CHECK(m->gguf == f);
    CHECK_EQ_INT(m->hp.n_vocab, 2048);
    CHECK((const uint8_t *)m->layers[0].wq.data > (const uint8_t *)buf &&
          (const uint8_t *)m->layers[0].wq.data < (const uint8_t *)buf + len);
    eng_model_free(m); /* closes f */
    free(buf);
}

int main(void)
{
    test_stories260k();
    test_tinystories_q8();
    test_tiny_random();
    test_greedy_q4();
    test_vocab_only();
    test_dequant_files();
    test_v1_rejected();
    test_open_errors();
    test_open_mem_matches_file();
    puts("gguf_models: ok");
    return 0;
}
