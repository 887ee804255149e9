/* libFuzzer target: gguf_open_mem on arbitrary bytes, then every accessor on what it
 * accepted (all keys, arrays walked to the end, nested ones too, every tensor's first and
 * last byte), then eng_model_from_gguf and every matrix of the model. Must never crash;
 * every failure must come with a message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t sink;

static void walk(const gguf_value *v, int depth)
{
    uint64_t u;
    int64_t i;
    double d;
    gguf_str s;
    (void)gguf_value_u64(v, &u);
    (void)gguf_value_i64(v, &i);
    (void)gguf_value_f64(v, &d);
    if (gguf_value_str(v, &s) == 0 && s.len > 0) sink += (uint8_t)s.ptr[s.len - 1];
    if (v->type != GGUF_TYPE_ARRAY || depth > 16) return;
    gguf_iter it;
    gguf_value e;
    uint64_t n = 0;
    gguf_iter_init(&it, v);
    while (gguf_iter_next(&it, &e)) {
        walk(&e, depth + 1);
        n++;
    }
    if (n != v->arr_n) abort(); /* a validated array walks to its end */
    if (v->arr_n > 0) {
        sink += (uint64_t)gguf_arr_int(v, v->arr_n - 1);
        float last = gguf_arr_f32(v, v->arr_n - 1);
        uint32_t bits;
        memcpy(&bits, &last, 4);
        sink += bits;
        float f[4];
        (void)gguf_arr_copy(v, GGUF_TYPE_FLOAT32, 0, v->arr_n < 4 ? v->arr_n : 4, f);
        int32_t x[4];
        (void)gguf_arr_copy(v, GGUF_TYPE_INT32, 0, v->arr_n < 4 ? v->arr_n : 4, x);
    }
}

static uint32_t float_bits(const float *p)
{
    uint32_t b;
    memcpy(&b, p, 4);
    return b;
}

static void touch_mat(const eng_mat *m)
{
    if (m->rows == 0 || m->row_bytes == 0) return;
    const uint8_t *p = m->data;
    sink += p[0] + p[(m->rows - 1) * m->row_bytes + m->row_bytes - 1];
    if (m->name == NULL || m->name[0] == '\0') abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gguf_file *f = NULL;
    eng_error err;
    if (gguf_open_mem(data, size, &f, &err) != 0) {
        if (err.msg[0] == '\0' || err.code >= 0) abort();
        return 0;
    }
    for (size_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        walk(&kv->val, 0);
        char key[64];
        size_t n = kv->key.len < sizeof key - 1 ? (size_t)kv->key.len : sizeof key - 1;
        memcpy(key, kv->key.ptr, n);
        key[n] = '\0';
        uint32_t u;
        float fl;
        (void)gguf_get_u32(f, key, &u);
        (void)gguf_get_f32(f, key, &fl);
    }
    for (size_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        if (gguf_find_tensor(f, t->name.ptr) != t) abort();
        if (t->nbytes > 0) {
            const uint8_t *p = t->data;
            sink += p[0] + p[t->nbytes - 1];
        }
    }
    eng_model *m = NULL;
    if (eng_model_from_gguf(f, &m, &err) != 0) {
        if (err.msg[0] == '\0' || err.code >= 0) abort();
        gguf_close(f);
        return 0;
    }
    touch_mat(&m->tok_embd);
    touch_mat(&m->output);
    for (uint32_t l = 0; l < m->hp.n_layer; l++) {
        const eng_layer *L = &m->layers[l];
        touch_mat(&L->wq); touch_mat(&L->wk); touch_mat(&L->wv); touch_mat(&L->wo);
        touch_mat(&L->w_gate); touch_mat(&L->w_up); touch_mat(&L->w_down);
        sink += float_bits(&L->attn_norm[m->hp.n_embd - 1]) + float_bits(&L->ffn_norm[0]);
    }
    sink += float_bits(&m->out_norm[m->hp.n_embd - 1]);
    if (m->hp.rope_freqs) sink += float_bits(&m->hp.rope_freqs[m->hp.rope_dim / 2 - 1]);
    eng_model_free(m);
    return 0;
}
