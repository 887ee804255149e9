/* A small GGUF writer for tests: start from a real file (or from nothing), change keys and
 * tensor infos, and serialize to a buffer — valid or deliberately broken. */
#ifndef LLAMAD_TEST_GGUF_BUILDER_H
#define LLAMAD_TEST_GGUF_BUILDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

typedef struct gb_kv {
    char key[128];
    uint32_t type;     /* value type written after the key */
    uint8_t *payload;  /* encoded value (scalar bytes; u64 len + chars; u32 type + u64 n + elems) */
    size_t len;
} gb_kv;

typedef struct gb_tensor {
    char name[128];
    uint32_t n_dims;
    uint64_t ne[4];
    uint32_t type;
    uint64_t offset;     /* used as is when gb.keep_offsets, else recomputed */
    const void *data;    /* copied into the data section (NULL: zeros) */
    uint64_t nbytes;     /* bytes of data to place */
} gb_tensor;

typedef struct gb {
    uint32_t version;           /* default 3 */
    uint64_t n_kv_override;     /* != 0: written as the key count */
    uint64_t n_tensors_override;/* != 0: written as the tensor count */
    uint32_t align;             /* padding used when writing (default 32) */
    bool keep_offsets;          /* write tensor offsets as given */
    size_t n_kv, n_t;
    gb_kv kv[96];
    gb_tensor t[128];
} gb;

void gb_init(gb *b);
/* Copies every key and tensor of f (data pointers point into f, which must stay open). */
void gb_from_file(gb *b, const gguf_file *f);
void gb_free(gb *b);

/* Sets (replacing or appending) a key. */
void gb_set_raw(gb *b, const char *key, uint32_t type, const void *payload, size_t len);
void gb_set_u32(gb *b, const char *key, uint32_t v);
void gb_set_i32(gb *b, const char *key, int32_t v);
void gb_set_f32(gb *b, const char *key, float v);
void gb_set_str(gb *b, const char *key, const char *s);
void gb_del(gb *b, const char *key);

gb_tensor *gb_tensor_named(gb *b, const char *name);
void gb_del_tensor(gb *b, const char *name);
/* Appends a tensor (data NULL: zeros) and returns it. */
gb_tensor *gb_add_tensor(gb *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                         uint32_t type, const void *data, uint64_t nbytes);

/* Serializes; the result is malloc'd. */
uint8_t *gb_write(const gb *b, size_t *ret_len);

/* Encodes a value payload into a growing buffer (helpers for hand-made arrays). */
typedef struct gb_buf { uint8_t *p; size_t len, cap; } gb_buf;
void gb_put(gb_buf *w, const void *p, size_t n);
void gb_put_u32(gb_buf *w, uint32_t v);
void gb_put_u64(gb_buf *w, uint64_t v);
void gb_put_str(gb_buf *w, const char *s);

#endif
