/* Dequantization of the GGUF block formats, one function per type. Each reproduces the
 * reference float arithmetic exactly: products are formed in the same order and never
 * fused with the following addition. */
#include "quant.h"
#include "quant_internal.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

/* The reference rounds every product before adding: never fuse here. (GCC does not
 * contract in ISO C mode, -std=c11, which the build uses; the products and sums are also
 * written as separate statements.) */
#if defined(__clang__)
#pragma clang fp contract(off)
#endif

/* The 16 non-uniform levels of IQ4_NL / IQ4_XS. */
static const int8_t iq4_levels[16] = {
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
};

#if defined(__AVX2__)
/* 16 int8 lanes -> 16 floats, each (float)q * d. */
static inline void v16_mul(float *y, __m128i q, __m256 d)
{
#if defined(__AVX512F__)
    __m512 a = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q));
    _mm512_storeu_ps(y, _mm512_mul_ps(a, _mm512_broadcast_f32x8(d)));
#else
    __m256 a = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
    __m256 b = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q, 8)));
    _mm256_storeu_ps(y, _mm256_mul_ps(a, d));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(b, d));
#endif
}

/* 16 int8 lanes -> (float)q * d + m (rounded product, then the sum). */
static inline void v16_mul_add(float *y, __m128i q, __m256 d, __m256 m)
{
#if defined(__AVX512F__)
    __m512 a = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q));
    __m512 p = _mm512_mul_ps(a, _mm512_broadcast_f32x8(d));
    _mm512_storeu_ps(y, _mm512_add_ps(p, _mm512_broadcast_f32x8(m)));
#else
    __m256 a = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
    __m256 b = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q, 8)));
    _mm256_storeu_ps(y, _mm256_add_ps(_mm256_mul_ps(a, d), m));
    _mm256_storeu_ps(y + 8, _mm256_add_ps(_mm256_mul_ps(b, d), m));
#endif
}

/* 16 int8 lanes -> (float)q * d - m. */
static inline void v16_mul_sub(float *y, __m128i q, __m256 d, __m256 m)
{
#if defined(__AVX512F__)
    __m512 a = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q));
    __m512 p = _mm512_mul_ps(a, _mm512_broadcast_f32x8(d));
    _mm512_storeu_ps(y, _mm512_sub_ps(p, _mm512_broadcast_f32x8(m)));
#else
    __m256 a = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
    __m256 b = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q, 8)));
    _mm256_storeu_ps(y, _mm256_sub_ps(_mm256_mul_ps(a, d), m));
    _mm256_storeu_ps(y + 8, _mm256_sub_ps(_mm256_mul_ps(b, d), m));
#endif
}

static inline __m128i v_lo128(__m256i v) { return _mm256_castsi256_si128(v); }
static inline __m128i v_hi128(__m256i v) { return _mm256_extracti128_si256(v, 1); }

/* 16 bytes of nibble pairs -> 32 bytes: low nibbles (elements 0..15), then high nibbles. */
static inline __m256i v_nibbles(const uint8_t *qs)
{
    const __m128i b = _mm_loadu_si128((const __m128i *)qs), m4 = _mm_set1_epi8(0x0F);
    __m128i lo = _mm_and_si128(b, m4), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m4);
    return _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
}

/* 32 bits -> 32 bytes: byte i is 0x10 when bit i is set, else 0. */
static inline __m256i v_bit4(uint32_t bits)
{
    const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                          2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i sel = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), shuf);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, sel), sel);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

static inline __m256i v_iq4_table(void)
{
    __m128i t = _mm_loadu_si128((const __m128i *)iq4_levels);
    return _mm256_inserti128_si256(_mm256_castsi128_si256(t), t, 1);
}
#endif

/* ---- plain float formats */

static void deq_f32(const uint8_t *src, float *dst, size_t n)
{
    memcpy(dst, src, n * sizeof(float));
}

static void deq_f16(const uint8_t *src, float *dst, size_t n)
{
    size_t i = 0;
#if defined(__F16C__) && defined(__AVX__)
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(src + 2 * i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
#endif
    for (; i < n; i++) dst[i] = qi_f16(src + 2 * i);
}

static void deq_bf16(const uint8_t *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t bits = (uint32_t)qi_rd16(src + 2 * i) << 16;
        memcpy(&dst[i], &bits, sizeof bits);
    }
}

/* ---- 32-element block formats */

/* Q4_0: f16 d, 16 bytes of 4-bit quants (low nibbles = elements 0..15, high = 16..31).
 * y = (q - 8) * d */
static void deq_q4_0(const uint8_t *b, float *y, size_t nblk)
{
    for (size_t i = 0; i < nblk; i++, b += 18, y += 32) {
        const float d = qi_f16(b);
        const uint8_t *qs = b + 2;
#if defined(__AVX2__)
        __m256i q = _mm256_sub_epi8(v_nibbles(qs), _mm256_set1_epi8(8));
        __m256 vd = _mm256_set1_ps(d);
        v16_mul(y, v_lo128(q), vd);
        v16_mul(y + 16, v_hi128(q), vd);
#else
        for (int j = 0; j < 16; j++) {
            y[j] = (float)((qs[j] & 0x0F) - 8) * d;
            y[j + 16] = (float)((qs[j] >> 4) - 8) * d;
        }
#endif
    }
}

/* Q4_1: f16 d, f16 m, 16 bytes of quants. y = q * d + m */
static void deq_q4_1(const uint8_t *b, float *y, size_t nblk)
{
    for (size_t i = 0; i < nblk; i++, b += 20, y += 32) {
        const float d = qi_f16(b), m = qi_f16(b + 2);
        const uint8_t *qs = b + 4;
#if defined(__AVX2__)
        __m256i q = v_nibbles(qs);
        __m256 vd = _mm256_set1_ps(d), vm = _mm256_set1_ps(m);
        v16_mul_add(y, v_lo128(q), vd, vm);
        v16_mul_add(y + 16, v_hi128(q), vd, vm);
#else
        for (int j = 0; j < 16; j++) {
            float p0 = (float)(qs[j] & 0x0F) * d;
            float p1 = (float)(qs[j] >> 4) * d;
            y[j] = p0 + m;
            y[j + 16] = p1 + m;
        }
#endif
    }
}

/* Q5_0: f16 d, u32 high bits (bit j = bit 4 of element j), 16 bytes of low nibbles.
 * y = (q - 16) * d */
static void deq_q5_0(const uint8_t *b, float *y, size_t nblk)
{
    for (size_t i = 0; i < nblk; i++, b += 22, y += 32) {
        const float d = qi_f16(b);
        const uint32_t qh = qi_rd32(b + 2);
        const uint8_t *qs = b + 6;
#if defined(__AVX2__)
        __m256i q = _mm256_or_si256(v_nibbles(qs), v_bit4(qh));
        q = _mm256_sub_epi8(q, _mm256_set1_epi8(16));
        __m256 vd = _mm256_set1_ps(d);
        v16_mul(y, v_lo128(q), vd);
        v16_mul(y + 16, v_hi128(q), vd);
#else
        for (int j = 0; j < 16; j++) {
            int h0 = (int)((qh >> j) & 1u) << 4;
            int h1 = (int)((qh >> (j + 16)) & 1u) << 4;
            y[j] = (float)(((qs[j] & 0x0F) | h0) - 16) * d;
            y[j + 16] = (float)(((qs[j] >> 4) | h1) - 16) * d;
        }
#endif
    }
}

/* Q5_1: f16 d, f16 m, u32 high bits, 16 bytes of low nibbles. y = q * d + m */
static void deq_q5_1(const uint8_t *b, float *y, size_t nblk)
{
    for (size_t i = 0; i < nblk; i++, b += 24, y += 32) {
        const float d = qi_f16(b), m = qi_f16(b + 2);
        const uint32_t qh = qi_rd32(b + 4);
        const uint8_t *qs = b + 8;
#if defined(__AVX2__)
        __m256i q = _mm256_or_si256(v_nibbles(qs), v_bit4(qh));
        __m256 vd = _mm256_set1_ps(d), vm = _mm256_set1_ps(m);
        v16_mul_add(y, v_lo128(q), vd, vm);
        v16_mul_add(y + 16, v_hi128(q), vd, vm);
        continue;
#endif
        for (int j = 0; j < 16; j++) {
            int h0 = (int)((qh >> j) & 1u) << 4;
            int h1 = (int)((qh >> (j + 16)) & 1u) << 4;
            float p0 = (float)((qs[j] & 0x0F) | h0) * d;
            float p1 = (float)((qs[j] >> 4) | h1) * d;
            y[j] = p0 + m;
            y[j + 16] = p1 + m;
        }
    }
}

/* Q8_0: f16 d, 32 signed bytes. y = q * d */
static void deq_q8_0(const uint8_t *b, float *y, size_t nblk)
{
    for (size_t i = 0; i < nblk; i++, b += 34, y += 32) {
        const float d = qi_f16(b);
        const int8_t *qs = (const int8_t *)(b + 2);
#if defined(__AVX2__)
        __m256 vd = _mm256_set1_ps(d);
        for (int j = 0; j < 32; j += 8) {
            __m128i q8 = _mm_loadl_epi64((const __m128i *)(qs + j));
            __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8));
            _mm256_storeu_ps(y + j, _mm256_mul_ps(q, vd));
        }
#else
        for (int j = 0; j < 32; j++) y[j] = (float)qs[j] * d;
#endif
    }
}

/* IQ4_NL: f16 d, 16 bytes of 4-bit indices into iq4_levels. y = d * level */
static void deq_iq4_nl(const uint8_t *b, float *y, size_t nblk)
{
    for (size_t i = 0; i < nblk; i++, b += 18, y += 32) {
        const float d = qi_f16(b);
        const uint8_t *qs = b + 2;
#if defined(__AVX2__)
        __m256i q = _mm256_shuffle_epi8(v_iq4_table(), v_nibbles(qs));
        __m256 vd = _mm256_set1_ps(d);
        v16_mul(y, v_lo128(q), vd);
        v16_mul(y + 16, v_hi128(q), vd);
        continue;
#endif
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)iq4_levels[qs[j] & 0x0F];
            y[j + 16] = d * (float)iq4_levels[qs[j] >> 4];
        }
    }
}

/* ---- 256-element super-block formats (K-quants) */

/* Q2_K (84 bytes): scales[16] (low nibble: scale, high nibble: min of each 16 elements),
 * qs[64] (2-bit quants), f16 d, f16 dmin.
 * The 256 elements are two halves of 128; in a half, 2-bit field s (s = 0..3, shift 2s)
 * of qs[half*32 + l] is element half*128 + s*32 + l (l = 0..31); each 16 elements take
 * the next scale byte. y = (d * sc) * q - (dmin * m) */
static void deq_q2_k(const uint8_t *b, float *y, size_t nblk)
{
    for (size_t i = 0; i < nblk; i++, b += 84) {
        const uint8_t *sc = b, *qs = b + 16;
        const float d = qi_f16(b + 80), dmin = qi_f16(b + 82);
        int is = 0;
        for (int half = 0; half < 2; half++, qs += 32) {
#if defined(__AVX2__)
            __m256i qb = _mm256_loadu_si256((const __m256i *)qs);
            for (int s = 0; s < 4; s++, y += 32, is += 2) {
                __m256i q = _mm256_and_si256(_mm256_srli_epi16(qb, 2 * s), _mm256_set1_epi8(3));
                v16_mul_sub(y, v_lo128(q), _mm256_set1_ps(d * (float)(sc[is] & 0x0F)),
                            _mm256_set1_ps(dmin * (float)(sc[is] >> 4)));
                v16_mul_sub(y + 16, v_hi128(q), _mm256_set1_ps(d * (float)(sc[is + 1] & 0x0F)),
                            _mm256_set1_ps(dmin * (float)(sc[is + 1] >> 4)));
            }
            continue;
#endif
            for (int s = 0; s < 4; s++) {
                int shift = 2 * s;
                for (int part = 0; part < 2; part++, is++) {
                    const float dl = d * (float)(sc[is] & 0x0F);
                    const float ml = dmin * (float)(sc[is] >> 4);
                    const uint8_t *q = qs + 16 * part;
                    for (int l = 0; l < 16; l++) {
                        float p = dl * (float)((q[l] >> shift) & 3);
                        *y++ = p - ml;
                    }
                }
            }
        }
    }
}

/* Q3_K (110 bytes): hmask[32], qs[64], scales[12], f16 d.
 * 16 signed 6-bit scales: low 4 bits from scales[j] & 15 (j < 8) or scales[j-8] >> 4,
 * high 2 bits from scales[8 + j%4] >> (2*(j/4)); value minus 32.
 * Element layout as Q2_K for the 2-bit low part; the third bit of element e
 * (half h, field s, index l) is bit (4h + s) of hmask[l]; when it is clear, 4 is
 * subtracted. y = (d * scale) * q */
static void deq_q3_k(const uint8_t *b, float *y, size_t nblk)
{
    for (size_t i = 0; i < nblk; i++, b += 110) {
        const uint8_t *hm = b, *qs = b + 32, *sb = b + 96;
        const float d = qi_f16(b + 108);
        int scales[16];
        for (int j = 0; j < 16; j++) {
            int lo = j < 8 ? (sb[j] & 0x0F) : (sb[j - 8] >> 4);
            int hi = (sb[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
            scales[j] = (lo | (hi << 4)) - 32;
        }
        int is = 0;
        unsigned bit = 0;
        for (int half = 0; half < 2; half++, qs += 32) {
#if defined(__AVX2__)
            __m256i qb = _mm256_loadu_si256((const __m256i *)qs);
            __m256i hb = _mm256_loadu_si256((const __m256i *)hm);
            for (int s = 0; s < 4; s++, bit++, y += 32, is += 2) {
                __m256i q = _mm256_and_si256(_mm256_srli_epi16(qb, 2 * s), _mm256_set1_epi8(3));
                __m256i m = _mm256_set1_epi8((char)(1u << bit));
                __m256i clear = _mm256_cmpeq_epi8(_mm256_and_si256(hb, m), _mm256_setzero_si256());
                q = _mm256_sub_epi8(q, _mm256_and_si256(clear, _mm256_set1_epi8(4)));
                v16_mul(y, v_lo128(q), _mm256_set1_ps(d * (float)scales[is]));
                v16_mul(y + 16, v_hi128(q), _mm256_set1_ps(d * (float)scales[is + 1]));
            }
            continue;
#endif
            for (int s = 0; s < 4; s++, bit++) {
                int shift = 2 * s;
                for (int part = 0; part < 2; part++, is++) {
                    const float dl = d * (float)scales[is];
                    const uint8_t *q = qs + 16 * part;
                    const uint8_t *h = hm + 16 * part;
                    for (int l = 0; l < 16; l++) {
                        int v = ((q[l] >> shift) & 3) - (((h[l] >> bit) & 1) ? 0 : 4);
                        *y++ = dl * (float)v;
                    }
                }
            }
        }
    }
}

/* Scale and min number j (0..7) of the 12-byte packed 6-bit scales of Q4_K / Q5_K. */
static inline void kq_scale_min(int j, const uint8_t *q, int *sc, int *mn)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
        *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Q4_K (144 bytes): f16 d, f16 dmin, scales[12] (8 packed 6-bit scale/min pairs), qs[128].
 * Four groups of 64 elements; group g uses qs[32g .. 32g+31]: low nibbles are its first
 * 32 elements (pair 2g), high nibbles the next 32 (pair 2g+1). y = (d*sc) * q - (dmin*m) */
static void deq_q4_k(const uint8_t *b, float *y, size_t nblk)
{
    for (size_t i = 0; i < nblk; i++, b += 144) {
        const float d = qi_f16(b), dmin = qi_f16(b + 2);
        const uint8_t *sb = b + 4, *qs = b + 16;
        for (int g = 0; g < 4; g++, qs += 32) {
            int sc, mn;
            kq_scale_min(2 * g, sb, &sc, &mn);
            const float d1 = d * (float)sc, m1 = dmin * (float)mn;
            kq_scale_min(2 * g + 1, sb, &sc, &mn);
            const float d2 = d * (float)sc, m2 = dmin * (float)mn;
#if defined(__AVX2__)
            {
                const __m256i m4 = _mm256_set1_epi8(0x0F);
                __m256i qb = _mm256_loadu_si256((const __m256i *)qs);
                __m256i lo = _mm256_and_si256(qb, m4);
                __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qb, 4), m4);
                __m256 vd1 = _mm256_set1_ps(d1), vm1 = _mm256_set1_ps(m1);
                __m256 vd2 = _mm256_set1_ps(d2), vm2 = _mm256_set1_ps(m2);
                v16_mul_sub(y, v_lo128(lo), vd1, vm1);
                v16_mul_sub(y + 16, v_hi128(lo), vd1, vm1);
                v16_mul_sub(y + 32, v_lo128(hi), vd2, vm2);
                v16_mul_sub(y + 48, v_hi128(hi), vd2, vm2);
                y += 64;
                continue;
            }
#endif
            for (int l = 0; l < 32; l++) {
                float p = d1 * (float)(qs[l] & 0x0F);
                y[l] = p - m1;
            }
            for (int l = 0; l < 32; l++) {
                float p = d2 * (float)(qs[l] >> 4);
                y[32 + l] = p - m2;
            }
            y += 64;
        }
    }
}

/* Q5_K (176 bytes): f16 d, f16 dmin, scales[12], qh[32], qs[128]. As Q4_K plus a fifth
 * bit: for group g, bit 2g of qh[l] belongs to the low-nibble element l, bit 2g+1 to the
 * high-nibble element. */
static void deq_q5_k(const uint8_t *b, float *y, size_t nblk)
{
    for (size_t i = 0; i < nblk; i++, b += 176) {
        const float d = qi_f16(b), dmin = qi_f16(b + 2);
        const uint8_t *sb = b + 4, *qh = b + 16, *qs = b + 48;
        for (int g = 0; g < 4; g++, qs += 32) {
            int sc, mn;
            kq_scale_min(2 * g, sb, &sc, &mn);
            const float d1 = d * (float)sc, m1 = dmin * (float)mn;
            kq_scale_min(2 * g + 1, sb, &sc, &mn);
            const float d2 = d * (float)sc, m2 = dmin * (float)mn;
#if defined(__AVX2__)
            {
                const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
                __m256i qb = _mm256_loadu_si256((const __m256i *)qs);
                __m256i hb = _mm256_loadu_si256((const __m256i *)qh);
                __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * g), one), 4);
                __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2 * g + 1), one), 4);
                __m256i lo = _mm256_or_si256(_mm256_and_si256(qb, m4), h0);
                __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qb, 4), m4), h1);
                __m256 vd1 = _mm256_set1_ps(d1), vm1 = _mm256_set1_ps(m1);
                __m256 vd2 = _mm256_set1_ps(d2), vm2 = _mm256_set1_ps(m2);
                v16_mul_sub(y, v_lo128(lo), vd1, vm1);
                v16_mul_sub(y + 16, v_hi128(lo), vd1, vm1);
                v16_mul_sub(y + 32, v_lo128(hi), vd2, vm2);
                v16_mul_sub(y + 48, v_hi128(hi), vd2, vm2);
                y += 64;
                continue;
            }
#endif
            for (int l = 0; l < 32; l++) {
                int q = (qs[l] & 0x0F) | (((qh[l] >> (2 * g)) & 1) << 4);
                float p = d1 * (float)q;
                y[l] = p - m1;
            }
            for (int l = 0; l < 32; l++) {
                int q = (qs[l] >> 4) | (((qh[l] >> (2 * g + 1)) & 1) << 4);
                float p = d2 * (float)q;
                y[32 + l] = p - m2;
            }
            y += 64;
        }
    }
}

/* Q6_K (210 bytes): ql[128] (low 4 bits), qh[64] (high 2 bits), int8 scales[16], f16 d.
 * Two halves of 128 elements; in half h, with L = ql + 64h, H = qh + 32h, l = 0..31:
 *   element l      : L[l] & 15      | ((H[l] >> 0) & 3) << 4
 *   element l + 32 : L[l + 32] & 15 | ((H[l] >> 2) & 3) << 4
 *   element l + 64 : L[l] >> 4      | ((H[l] >> 4) & 3) << 4
 *   element l + 96 : L[l + 32] >> 4 | ((H[l] >> 6) & 3) << 4
 * minus 32; element e of the block has scale e / 16. y = (d * scale) * q */
static void deq_q6_k(const uint8_t *b, float *y, size_t nblk)
{
    for (size_t i = 0; i < nblk; i++, b += 210) {
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        const float d = qi_f16(b + 208);
        for (int h = 0; h < 2; h++, ql += 64, qh += 32, sc += 8, y += 128) {
#if defined(__AVX2__)
            const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3);
            const __m256i o32 = _mm256_set1_epi8(32);
            __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
            __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i hb = _mm256_loadu_si256((const __m256i *)qh);
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(hb, m3), 4));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m3), 4));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m3), 4));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m3), 4));
            for (int k = 0; k < 4; k++) {
                __m256i qk = _mm256_sub_epi8(q[k], o32);
                v16_mul(y + 32 * k, v_lo128(qk), _mm256_set1_ps(d * (float)sc[2 * k]));
                v16_mul(y + 32 * k + 16, v_hi128(qk), _mm256_set1_ps(d * (float)sc[2 * k + 1]));
            }
            continue;
#endif
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * (float)sc[is] * (float)q1;
                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
        }
    }
}

/* IQ4_XS (136 bytes): f16 d, u16 scales_h, scales_l[4], qs[128]. Eight 32-element
 * sub-blocks; sub-block k has the 6-bit scale ((scales_l[k/2] >> 4*(k%2)) & 15) |
 * (((scales_h >> 2k) & 3) << 4), minus 32, and 16 bytes of iq4 indices laid out as IQ4_NL.
 * y = (d * scale) * level */
static void deq_iq4_xs(const uint8_t *b, float *y, size_t nblk)
{
    for (size_t i = 0; i < nblk; i++, b += 136) {
        const float d = qi_f16(b);
        const unsigned sh = qi_rd16(b + 2);
        const uint8_t *sl = b + 4, *qs = b + 8;
        for (int k = 0; k < 8; k++, qs += 16, y += 32) {
            int ls = ((sl[k / 2] >> (4 * (k % 2))) & 0x0F) | (int)(((sh >> (2 * k)) & 3) << 4);
            const float dl = d * (float)(ls - 32);
#if defined(__AVX2__)
            __m256i q = _mm256_shuffle_epi8(v_iq4_table(), v_nibbles(qs));
            __m256 vd = _mm256_set1_ps(dl);
            v16_mul(y, v_lo128(q), vd);
            v16_mul(y + 16, v_hi128(q), vd);
            continue;
#endif
            for (int j = 0; j < 16; j++) {
                y[j] = dl * (float)iq4_levels[qs[j] & 0x0F];
                y[j + 16] = dl * (float)iq4_levels[qs[j] >> 4];
            }
        }
    }
}

qi_dequant_fn qi_dequant_get(uint32_t type)
{
    switch (type) {
    case ENG_TYPE_F32: return deq_f32;
    case ENG_TYPE_F16: return deq_f16;
    case ENG_TYPE_BF16: return deq_bf16;
    case ENG_TYPE_Q4_0: return deq_q4_0;
    case ENG_TYPE_Q4_1: return deq_q4_1;
    case ENG_TYPE_Q5_0: return deq_q5_0;
    case ENG_TYPE_Q5_1: return deq_q5_1;
    case ENG_TYPE_Q8_0: return deq_q8_0;
    case ENG_TYPE_IQ4_NL: return deq_iq4_nl;
    case ENG_TYPE_Q2_K: return deq_q2_k;
    case ENG_TYPE_Q3_K: return deq_q3_k;
    case ENG_TYPE_Q4_K: return deq_q4_k;
    case ENG_TYPE_Q5_K: return deq_q5_k;
    case ENG_TYPE_Q6_K: return deq_q6_k;
    case ENG_TYPE_IQ4_XS: return deq_iq4_xs;
    default: return NULL;
    }
}
