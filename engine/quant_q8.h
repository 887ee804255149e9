/* Integer (8-bit activation) kernels; internal to the quant sources. See quant_q8.c. */
#ifndef LLAMAD_QUANT_Q8_H
#define LLAMAD_QUANT_Q8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True when qq_matmul_rows handles this type and row length. */
bool qq_supported(uint32_t type, size_t n);
void qq_matmul_rows(uint32_t type, const void *w, size_t row_bytes, size_t n, const float *x,
                    size_t ldx, size_t nt, float *y, size_t ldy, size_t r0, size_t r1);

/* Activations quantized once (eng_act_* in quant.h). */
size_t qq_act_bytes(size_t n, size_t nt);
void qq_act_quantize(const float *x, size_t ldx, size_t n, size_t nt, size_t t0, size_t t1,
                     void *act);
void qq_matmul_rows_act(uint32_t type, const void *w, size_t row_bytes, size_t n, const void *act,
                        size_t nt, float *y, size_t ldy, size_t r0, size_t r1);

/* One token's activations quantized to 8 bits per 32-element block (n % 32 == 0):
 * xq = round(x * 127 / amax) (ties to even), dx = amax / 127 as binary16 where that is a
 * normal half, bsum = sum of the block's xq, lsum (may be NULL) = sum of its first 16.
 * Exposed for the tests. */
void qq_quantize_act(const float *x, size_t n, int8_t *xq, float *dx, int32_t *bsum,
                     int32_t *lsum);

#endif
