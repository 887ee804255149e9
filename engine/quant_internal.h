/* Internals shared by the quant_*.c files (not a public header). */
#ifndef LLAMAD_QUANT_INTERNAL_H
#define LLAMAD_QUANT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__F16C__)
#include <immintrin.h>
#endif

/* Dequantizes nblk consecutive blocks starting at src into dst (nblk * block_elems floats). */
typedef void (*qi_dequant_fn)(const uint8_t *src, float *dst, size_t nblk);

/* The dequantizer of a supported type (F32 included: a copy); NULL if unsupported. */
qi_dequant_fn qi_dequant_get(uint32_t type);

/* Exact half -> float, bit manipulation only (sNaN comes out quiet). */
float qi_f16_to_f32_soft(uint16_t h);

static inline uint16_t qi_rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static inline uint32_t qi_rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* Half stored little-endian at p, as float. */
static inline float qi_f16(const uint8_t *p)
{
#if defined(__F16C__)
    return _cvtsh_ss(qi_rd16(p));
#else
    return qi_f16_to_f32_soft(qi_rd16(p));
#endif
}

#endif
