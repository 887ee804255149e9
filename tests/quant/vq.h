/* Test helper: raw tensors of the shared dequantization vectors (testvectors/dequant). */
#ifndef LLAMAD_TEST_VQ_H
#define LLAMAD_TEST_VQ_H

#include <stddef.h>
#include <stdint.h>

typedef struct vq_tensor {
    uint32_t type;     /* ggml type id from the JSON description */
    uint64_t ne0, ne1; /* shape (ne0 = row length) */
    uint8_t *data;     /* malloc'd copy of the raw tensor bytes */
    size_t nbytes;
} vq_tensor;

/* Loads tensor `name` of testvectors/dequant/<gguf>; fails the test on any error.
 * Locates the tensor-data section without a GGUF reader: the files end right after the
 * last tensor, so the section starts at file size - max(offset_in_data + nbytes). */
void vq_load(const char *gguf, const char *name, vq_tensor *ret);
void vq_free(vq_tensor *t);

/* The 14 test-vector type names (file names vq-<NAME>.gguf). */
extern const char *const vq_type_names[14];

#endif
