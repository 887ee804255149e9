#include "gguf_builder.h"

#include <stdlib.h>
#include <string.h>

#include "testutil.h"

void gb_put(gb_buf *w, const void *p, size_t n)
{
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->len + n) cap *= 2;
        w->p = realloc(w->p, cap);
        CHECK(w->p != NULL);
        w->cap = cap;
    }
    if (n) memcpy(w->p + w->len, p, n);
    w->len += n;
}

void gb_put_u32(gb_buf *w, uint32_t v) { gb_put(w, &v, 4); }
void gb_put_u64(gb_buf *w, uint64_t v) { gb_put(w, &v, 8); }

void gb_put_str(gb_buf *w, const char *s)
{
    gb_put_u64(w, strlen(s));
    gb_put(w, s, strlen(s));
}

void gb_init(gb *b)
{
    memset(b, 0, sizeof *b);
    b->version = 3;
    b->align = 32;
}

static gb_kv *kv_named(gb *b, const char *key)
{
    for (size_t i = 0; i < b->n_kv; i++)
        if (strcmp(b->kv[i].key, key) == 0) return &b->kv[i];
    return NULL;
}

void gb_set_raw(gb *b, const char *key, uint32_t type, const void *payload, size_t len)
{
    gb_kv *kv = kv_named(b, key);
    if (kv == NULL) {
        CHECK(b->n_kv < sizeof b->kv / sizeof b->kv[0]);
        kv = &b->kv[b->n_kv++];
        memset(kv, 0, sizeof *kv);
        CHECK(strlen(key) < sizeof kv->key);
        strcpy(kv->key, key);
    }
    free(kv->payload);
    kv->type = type;
    kv->payload = malloc(len ? len : 1);
    CHECK(kv->payload != NULL);
    if (len) memcpy(kv->payload, payload, len);
    kv->len = len;
}

void gb_set_u32(gb *b, const char *key, uint32_t v) { gb_set_raw(b, key, GGUF_TYPE_UINT32, &v, 4); }
void gb_set_i32(gb *b, const char *key, int32_t v) { gb_set_raw(b, key, GGUF_TYPE_INT32, &v, 4); }
void gb_set_f32(gb *b, const char *key, float v) { gb_set_raw(b, key, GGUF_TYPE_FLOAT32, &v, 4); }

void gb_set_str(gb *b, const char *key, const char *s)
{
    gb_buf w = {0};
    gb_put_str(&w, s);
    gb_set_raw(b, key, GGUF_TYPE_STRING, w.p, w.len);
    free(w.p);
}

void gb_del(gb *b, const char *key)
{
    gb_kv *kv = kv_named(b, key);
    if (kv == NULL) return;
    free(kv->payload);
    size_t i = (size_t)(kv - b->kv);
    memmove(&b->kv[i], &b->kv[i + 1], (b->n_kv - i - 1) * sizeof b->kv[0]);
    b->n_kv--;
}

void gb_from_file(gb *b, const gguf_file *f)
{
    gb_init(b);
    b->version = gguf_version(f);
    b->align = gguf_alignment(f);
    for (size_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        char key[128];
        CHECK(kv->key.len < sizeof key);
        memcpy(key, kv->key.ptr, (size_t)kv->key.len);
        key[kv->key.len] = '\0';
        gb_buf w = {0};
        if (kv->val.type == GGUF_TYPE_STRING) {
            gb_put_u64(&w, kv->val.size);
        } else if (kv->val.type == GGUF_TYPE_ARRAY) {
            gb_put_u32(&w, kv->val.arr_type);
            gb_put_u64(&w, kv->val.arr_n);
        }
        gb_put(&w, kv->val.data, (size_t)kv->val.size);
        gb_set_raw(b, key, kv->val.type, w.p, w.len);
        free(w.p);
    }
    for (size_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        gb_add_tensor(b, t->name.ptr, t->n_dims, t->ne, t->type, t->data, t->nbytes)->offset =
            t->offset;
    }
}

void gb_free(gb *b)
{
    for (size_t i = 0; i < b->n_kv; i++) free(b->kv[i].payload);
    b->n_kv = 0;
    b->n_t = 0;
}

gb_tensor *gb_tensor_named(gb *b, const char *name)
{
    for (size_t i = 0; i < b->n_t; i++)
        if (strcmp(b->t[i].name, name) == 0) return &b->t[i];
    tu_fail(__FILE__, __LINE__, "builder: no tensor %s", name);
}

void gb_del_tensor(gb *b, const char *name)
{
    gb_tensor *t = gb_tensor_named(b, name);
    size_t i = (size_t)(t - b->t);
    memmove(&b->t[i], &b->t[i + 1], (b->n_t - i - 1) * sizeof b->t[0]);
    b->n_t--;
}

gb_tensor *gb_add_tensor(gb *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                         uint32_t type, const void *data, uint64_t nbytes)
{
    CHECK(b->n_t < sizeof b->t / sizeof b->t[0]);
    gb_tensor *t = &b->t[b->n_t++];
    memset(t, 0, sizeof *t);
    CHECK(strlen(name) < sizeof t->name);
    strcpy(t->name, name);
    t->n_dims = n_dims;
    for (int d = 0; d < 4; d++) t->ne[d] = d < (int)n_dims ? ne[d] : 1;
    t->type = type;
    t->data = data;
    t->nbytes = nbytes;
    return t;
}

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

uint8_t *gb_write(const gb *b, size_t *ret_len)
{
    gb_buf w = {0};
    gb_put(&w, "GGUF", 4);
    gb_put_u32(&w, b->version);
    gb_put_u64(&w, b->n_tensors_override ? b->n_tensors_override : b->n_t);
    gb_put_u64(&w, b->n_kv_override ? b->n_kv_override : b->n_kv);
    for (size_t i = 0; i < b->n_kv; i++) {
        gb_put_str(&w, b->kv[i].key);
        gb_put_u32(&w, b->kv[i].type);
        gb_put(&w, b->kv[i].payload, b->kv[i].len);
    }
    uint64_t offs[128];
    uint64_t end = 0;
    for (size_t i = 0; i < b->n_t; i++) {
        const gb_tensor *t = &b->t[i];
        offs[i] = b->keep_offsets ? t->offset : align_up(end, b->align);
        if (!b->keep_offsets) end = offs[i] + t->nbytes;
        gb_put_str(&w, t->name);
        gb_put_u32(&w, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) gb_put_u64(&w, d < 4 ? t->ne[d] : 1);
        gb_put_u32(&w, t->type);
        gb_put_u64(&w, offs[i]);
    }
    if (b->n_t > 0) {
        size_t data_start = (size_t)align_up(w.len, b->align);
        uint64_t total = 0;
        for (size_t i = 0; i < b->n_t; i++) {
            uint64_t e = offs[i] + b->t[i].nbytes;
            if (offs[i] < (1ull << 32) && e > total) total = e;
        }
        size_t full = data_start + (size_t)align_up(total, b->align);
        uint8_t zero[64] = {0};
        while (w.len < full) gb_put(&w, zero, full - w.len < 64 ? full - w.len : 64);
        for (size_t i = 0; i < b->n_t; i++)
            if (b->t[i].data && offs[i] + b->t[i].nbytes <= total)
                memcpy(w.p + data_start + offs[i], b->t[i].data, (size_t)b->t[i].nbytes);
    }
    *ret_len = w.len;
    return w.p;
}
