/* Weight types: type table, row sizes, half conversions, and the batch-invariant
 * dot / matrix kernels. Dequantizers are in quant_dequant.c. */
#include "quant.h"
#include "quant_internal.h"
#include "eng_error.h"
#include "quant_q8.h"

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>

#if defined(__AVX2__) || defined(__AVX512F__) || defined(__F16C__)
#include <immintrin.h>
#elif defined(__SSE__)
#include <xmmintrin.h>
#endif

/* ---- type table */

static const eng_type_info type_table[] = {
    [ENG_TYPE_F32] = {"F32", 1, 4},
    [ENG_TYPE_F16] = {"F16", 1, 2},
    [ENG_TYPE_Q4_0] = {"Q4_0", 32, 18},
    [ENG_TYPE_Q4_1] = {"Q4_1", 32, 20},
    [ENG_TYPE_Q5_0] = {"Q5_0", 32, 22},
    [ENG_TYPE_Q5_1] = {"Q5_1", 32, 24},
    [ENG_TYPE_Q8_0] = {"Q8_0", 32, 34},
    [ENG_TYPE_Q2_K] = {"Q2_K", 256, 84},
    [ENG_TYPE_Q3_K] = {"Q3_K", 256, 110},
    [ENG_TYPE_Q4_K] = {"Q4_K", 256, 144},
    [ENG_TYPE_Q5_K] = {"Q5_K", 256, 176},
    [ENG_TYPE_Q6_K] = {"Q6_K", 256, 210},
    [ENG_TYPE_IQ4_NL] = {"IQ4_NL", 32, 18},
    [ENG_TYPE_IQ4_XS] = {"IQ4_XS", 256, 136},
    [ENG_TYPE_BF16] = {"BF16", 1, 2},
};

/* Names of ggml type ids this engine does not run (so errors can name them). */
static const char *const other_names[] = {
    [4] = "Q4_2", [5] = "Q4_3", [9] = "Q8_1", [15] = "Q8_K", [16] = "IQ2_XXS",
    [17] = "IQ2_XS", [18] = "IQ3_XXS", [19] = "IQ1_S", [21] = "IQ3_S", [22] = "IQ2_S",
    [24] = "I8", [25] = "I16", [26] = "I32", [27] = "I64", [28] = "F64", [29] = "IQ1_M",
    [31] = "Q4_0_4_4", [32] = "Q4_0_4_8", [33] = "Q4_0_8_8", [34] = "TQ1_0",
    [35] = "TQ2_0", [36] = "IQ4_NL_4_4", [37] = "IQ4_NL_4_8", [38] = "IQ4_NL_8_8",
};

const eng_type_info *eng_type_info_get(uint32_t type)
{
    if (type >= sizeof type_table / sizeof type_table[0] || !type_table[type].name)
        return NULL;
    return &type_table[type];
}

const char *eng_type_name(uint32_t type)
{
    const eng_type_info *ti = eng_type_info_get(type);
    if (ti) return ti->name;
    if (type < sizeof other_names / sizeof other_names[0] && other_names[type])
        return other_names[type];
    static _Thread_local char buf[24];
    snprintf(buf, sizeof buf, "unknown(%u)", (unsigned)type);
    return buf;
}

int eng_row_bytes(uint32_t type, uint64_t n_elems, size_t *ret_bytes)
{
    const eng_type_info *ti = eng_type_info_get(type);
    if (!ti || n_elems % ti->block_elems != 0) return -EINVAL;
    uint64_t nblk = n_elems / ti->block_elems;
    if (nblk > SIZE_MAX / ti->block_bytes) return -EOVERFLOW;
    *ret_bytes = (size_t)nblk * ti->block_bytes;
    return 0;
}

int eng_tensor_row_bytes(uint32_t type, uint64_t n_elems, const char *tensor,
                         eng_error *err, size_t *ret_bytes)
{
    const eng_type_info *ti = eng_type_info_get(type);
    if (!tensor) tensor = "?";
    if (!ti)
        return eng_error_set(err, -EINVAL, "tensor %s: unsupported weight type %s (%u)", tensor,
                             eng_type_name(type), (unsigned)type);
    int rc = eng_row_bytes(type, n_elems, ret_bytes);
    if (rc == -EINVAL)
        return eng_error_set(err, rc,
                             "tensor %s: row length %llu is not a multiple of the %s block size %u",
                             tensor, (unsigned long long)n_elems, ti->name, (unsigned)ti->block_elems);
    if (rc != 0)
        return eng_error_set(err, rc, "tensor %s: row of %llu %s elements is too large", tensor,
                             (unsigned long long)n_elems, ti->name);
    return 0;
}

/* ---- half precision */

float qi_f16_to_f32_soft(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t e = (h >> 10) & 0x1F, m = h & 0x3FF, bits;
    float f;
    if (e == 0x1F) {
        bits = sign | 0x7F800000u | (m << 13) | (m ? 0x400000u : 0);
    } else if (e == 0) {
        f = (float)m * 0x1p-24f; /* exact: m < 2^10 */
        memcpy(&bits, &f, sizeof bits);
        bits |= sign;
    } else {
        bits = sign | ((e + 112) << 23) | (m << 13);
    }
    memcpy(&f, &bits, sizeof f);
    return f;
}

float eng_f16_to_f32(uint16_t h) { return qi_f16_to_f32_soft(h); }

uint16_t eng_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7FFFFFFFu;
    if (ax > 0x7F800000u) /* NaN: quiet, keep the top payload bits */
        return (uint16_t)(sign | 0x7E00 | ((ax >> 13) & 0x3FF));
    if (ax >= 0x477FF000u) /* >= 65520 rounds to infinity (inf included) */
        return (uint16_t)(sign | 0x7C00);
    if (ax >= 0x38800000u) { /* normal half: >= 2^-14 */
        uint32_t e = (ax >> 23) - 112, m = ax & 0x7FFFFF;
        uint32_t h = (e << 10) | (m >> 13), rem = m & 0x1FFF;
        if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++; /* may carry into e: right */
        return (uint16_t)(sign | h);
    }
    if (ax <= 0x33000000u) /* <= 2^-25: rounds to zero (the tie goes to even 0) */
        return sign;
    /* subnormal half: value / 2^-24, rounded to nearest even */
    uint32_t mm = (ax & 0x7FFFFF) | 0x800000, sh = 126 - (ax >> 23); /* 14..24 */
    uint32_t h = mm >> sh, rem = mm & ((1u << sh) - 1), half = 1u << (sh - 1);
    if (rem > half || (rem == half && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

void eng_f16_to_f32_row(const uint16_t *src, float *dst, size_t n)
{
    size_t i = 0;
#if defined(__F16C__) && defined(__AVX__)
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
#endif
    for (; i < n; i++) dst[i] = qi_f16_to_f32_soft(src[i]);
}

void eng_f32_to_f16_row(const float *src, uint16_t *dst, size_t n)
{
    size_t i = 0;
#if defined(__F16C__) && defined(__AVX__)
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
#endif
    for (; i < n; i++) dst[i] = eng_f32_to_f16(src[i]);
}

float eng_bf16_to_f32(uint16_t b)
{
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* ---- dequantization */

void eng_dequant_row(uint32_t type, const void *src, float *dst, size_t n)
{
    const eng_type_info *ti = eng_type_info_get(type);
    assert(ti && n % ti->block_elems == 0);
    if (!ti) return;
    qi_dequant_get(type)((const uint8_t *)src, dst, n / ti->block_elems);
}

/* ---- kernels
 *
 * Per (row, token): acc[16] lanes, element k into lane k % 16 for k < n16 = n & ~15,
 * k ascending; then reduce16(acc) + tail, the tail being the elements k >= n16 summed in
 * order. The work is cut into groups of RB rows x TB tokens and K chunks of KC elements;
 * none of that changes the operations a (row, token) pair sees. */

#define KC 256 /* elements per K chunk: a multiple of every block size and of 16 */
#define TB 64  /* tokens per group */
#define RB 8   /* rows per group */

typedef struct { _Alignas(64) float v[16]; } lanes16;

static inline float reduce16(const float *l)
{
    float s8[8], s4[4];
    for (int j = 0; j < 8; j++) s8[j] = l[j] + l[j + 8];
    for (int j = 0; j < 4; j++) s4[j] = s8[j] + s8[j + 4];
    float s2a = s4[0] + s4[2], s2b = s4[1] + s4[3];
    return s2a + s2b;
}

#if defined(__AVX512F__)
/* 16 lanes = one zmm. Micro-kernels: 4 rows x 2 tokens, 4 x 1, 1 x 2, 1 x 1; every one
 * does acc = fma(w[k..k+15], x[k..k+15], acc) for k ascending, per (row, token). */
static inline void k4x2(const float *const *wp, const float *x0, const float *x1,
                        lanes16 (*acc)[TB], size_t t, size_t kv)
{
    __m512 a00 = _mm512_load_ps(acc[0][t].v), a01 = _mm512_load_ps(acc[0][t + 1].v);
    __m512 a10 = _mm512_load_ps(acc[1][t].v), a11 = _mm512_load_ps(acc[1][t + 1].v);
    __m512 a20 = _mm512_load_ps(acc[2][t].v), a21 = _mm512_load_ps(acc[2][t + 1].v);
    __m512 a30 = _mm512_load_ps(acc[3][t].v), a31 = _mm512_load_ps(acc[3][t + 1].v);
    for (size_t k = 0; k < kv; k += 16) {
        __m512 v0 = _mm512_loadu_ps(x0 + k), v1 = _mm512_loadu_ps(x1 + k);
        __m512 w = _mm512_loadu_ps(wp[0] + k);
        a00 = _mm512_fmadd_ps(w, v0, a00); a01 = _mm512_fmadd_ps(w, v1, a01);
        w = _mm512_loadu_ps(wp[1] + k);
        a10 = _mm512_fmadd_ps(w, v0, a10); a11 = _mm512_fmadd_ps(w, v1, a11);
        w = _mm512_loadu_ps(wp[2] + k);
        a20 = _mm512_fmadd_ps(w, v0, a20); a21 = _mm512_fmadd_ps(w, v1, a21);
        w = _mm512_loadu_ps(wp[3] + k);
        a30 = _mm512_fmadd_ps(w, v0, a30); a31 = _mm512_fmadd_ps(w, v1, a31);
    }
    _mm512_store_ps(acc[0][t].v, a00); _mm512_store_ps(acc[0][t + 1].v, a01);
    _mm512_store_ps(acc[1][t].v, a10); _mm512_store_ps(acc[1][t + 1].v, a11);
    _mm512_store_ps(acc[2][t].v, a20); _mm512_store_ps(acc[2][t + 1].v, a21);
    _mm512_store_ps(acc[3][t].v, a30); _mm512_store_ps(acc[3][t + 1].v, a31);
}

/* 4 rows x 4 tokens: 16 accumulators, each weight and activation vector loaded once */
static inline void k4x4(const float *const *wp, const float *x0, size_t ldx, lanes16 (*acc)[TB],
                        size_t t, size_t kv)
{
    __m512 a[4][4];
    for (int i = 0; i < 4; i++)
        for (int u = 0; u < 4; u++) a[i][u] = _mm512_load_ps(acc[i][t + (size_t)u].v);
    const float *x1 = x0 + ldx, *x2 = x1 + ldx, *x3 = x2 + ldx;
    for (size_t k = 0; k < kv; k += 16) {
        const __m512 v0 = _mm512_loadu_ps(x0 + k), v1 = _mm512_loadu_ps(x1 + k);
        const __m512 v2 = _mm512_loadu_ps(x2 + k), v3 = _mm512_loadu_ps(x3 + k);
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            const __m512 w = _mm512_loadu_ps(wp[i] + k);
            a[i][0] = _mm512_fmadd_ps(w, v0, a[i][0]);
            a[i][1] = _mm512_fmadd_ps(w, v1, a[i][1]);
            a[i][2] = _mm512_fmadd_ps(w, v2, a[i][2]);
            a[i][3] = _mm512_fmadd_ps(w, v3, a[i][3]);
        }
    }
    for (int i = 0; i < 4; i++)
        for (int u = 0; u < 4; u++) _mm512_store_ps(acc[i][t + (size_t)u].v, a[i][u]);
}

static inline void k4x1(const float *const *wp, const float *x0, lanes16 (*acc)[TB],
                        size_t t, size_t kv)
{
    __m512 a0 = _mm512_load_ps(acc[0][t].v), a1 = _mm512_load_ps(acc[1][t].v);
    __m512 a2 = _mm512_load_ps(acc[2][t].v), a3 = _mm512_load_ps(acc[3][t].v);
    for (size_t k = 0; k < kv; k += 16) {
        __m512 v0 = _mm512_loadu_ps(x0 + k);
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(wp[0] + k), v0, a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(wp[1] + k), v0, a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(wp[2] + k), v0, a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(wp[3] + k), v0, a3);
    }
    _mm512_store_ps(acc[0][t].v, a0); _mm512_store_ps(acc[1][t].v, a1);
    _mm512_store_ps(acc[2][t].v, a2); _mm512_store_ps(acc[3][t].v, a3);
}

static inline void k1x1(const float *w, const float *x0, lanes16 *acc, size_t kv)
{
    __m512 a = _mm512_load_ps(acc->v);
    for (size_t k = 0; k < kv; k += 16)
        a = _mm512_fmadd_ps(_mm512_loadu_ps(w + k), _mm512_loadu_ps(x0 + k), a);
    _mm512_store_ps(acc->v, a);
}

static void lanes_update(const float *const *wp, int nr, const float *x, size_t ldx,
                         size_t ntb, lanes16 (*acc)[TB], size_t kv)
{
    size_t t = 0;
    if (nr % 4 == 0)
        for (; t + 4 <= ntb; t += 4)
            for (int i = 0; i < nr; i += 4) k4x4(wp + i, x + t * ldx, ldx, acc + i, t, kv);
    for (; t + 2 <= ntb; t += 2) {
        const float *x0 = x + t * ldx, *x1 = x0 + ldx;
        int i = 0;
        for (; i + 4 <= nr; i += 4) k4x2(wp + i, x0, x1, acc + i, t, kv);
        for (; i < nr; i++) {
            k1x1(wp[i], x0, &acc[i][t], kv);
            k1x1(wp[i], x1, &acc[i][t + 1], kv);
        }
    }
    for (; t < ntb; t++) {
        const float *x0 = x + t * ldx;
        int i = 0;
        for (; i + 4 <= nr; i += 4) k4x1(wp + i, x0, acc + i, t, kv);
        for (; i < nr; i++) k1x1(wp[i], x0, &acc[i][t], kv);
    }
}
#elif defined(__AVX2__) && defined(__FMA__)
/* 16 lanes = two ymm (lanes 0..7, 8..15). Micro-kernels 4 rows x 1 token and 1 x 1; each
 * does acc = fma(w, x, acc) per 8 lanes, k ascending, per (row, token). */
static inline void k4x1(const float *const *wp, const float *x0, lanes16 (*acc)[TB],
                        size_t t, size_t kv)
{
    __m256 a0l = _mm256_load_ps(acc[0][t].v), a0h = _mm256_load_ps(acc[0][t].v + 8);
    __m256 a1l = _mm256_load_ps(acc[1][t].v), a1h = _mm256_load_ps(acc[1][t].v + 8);
    __m256 a2l = _mm256_load_ps(acc[2][t].v), a2h = _mm256_load_ps(acc[2][t].v + 8);
    __m256 a3l = _mm256_load_ps(acc[3][t].v), a3h = _mm256_load_ps(acc[3][t].v + 8);
    for (size_t k = 0; k < kv; k += 16) {
        __m256 vl = _mm256_loadu_ps(x0 + k), vh = _mm256_loadu_ps(x0 + k + 8);
        a0l = _mm256_fmadd_ps(_mm256_loadu_ps(wp[0] + k), vl, a0l);
        a0h = _mm256_fmadd_ps(_mm256_loadu_ps(wp[0] + k + 8), vh, a0h);
        a1l = _mm256_fmadd_ps(_mm256_loadu_ps(wp[1] + k), vl, a1l);
        a1h = _mm256_fmadd_ps(_mm256_loadu_ps(wp[1] + k + 8), vh, a1h);
        a2l = _mm256_fmadd_ps(_mm256_loadu_ps(wp[2] + k), vl, a2l);
        a2h = _mm256_fmadd_ps(_mm256_loadu_ps(wp[2] + k + 8), vh, a2h);
        a3l = _mm256_fmadd_ps(_mm256_loadu_ps(wp[3] + k), vl, a3l);
        a3h = _mm256_fmadd_ps(_mm256_loadu_ps(wp[3] + k + 8), vh, a3h);
    }
    _mm256_store_ps(acc[0][t].v, a0l); _mm256_store_ps(acc[0][t].v + 8, a0h);
    _mm256_store_ps(acc[1][t].v, a1l); _mm256_store_ps(acc[1][t].v + 8, a1h);
    _mm256_store_ps(acc[2][t].v, a2l); _mm256_store_ps(acc[2][t].v + 8, a2h);
    _mm256_store_ps(acc[3][t].v, a3l); _mm256_store_ps(acc[3][t].v + 8, a3h);
}

static inline void k1x1(const float *w, const float *x0, lanes16 *acc, size_t kv)
{
    __m256 al = _mm256_load_ps(acc->v), ah = _mm256_load_ps(acc->v + 8);
    for (size_t k = 0; k < kv; k += 16) {
        al = _mm256_fmadd_ps(_mm256_loadu_ps(w + k), _mm256_loadu_ps(x0 + k), al);
        ah = _mm256_fmadd_ps(_mm256_loadu_ps(w + k + 8), _mm256_loadu_ps(x0 + k + 8), ah);
    }
    _mm256_store_ps(acc->v, al);
    _mm256_store_ps(acc->v + 8, ah);
}

static void lanes_update(const float *const *wp, int nr, const float *x, size_t ldx,
                         size_t ntb, lanes16 (*acc)[TB], size_t kv)
{
    for (size_t t = 0; t < ntb; t++) {
        const float *x0 = x + t * ldx;
        int i = 0;
        for (; i + 4 <= nr; i += 4) k4x1(wp + i, x0, acc + i, t, kv);
        for (; i < nr; i++) k1x1(wp[i], x0, &acc[i][t], kv);
    }
}
#else
/* Portable: 16 float lanes, a separate multiply and add per element. */
static inline void lanes_step(float *restrict a, const float *restrict w,
                              const float *restrict x, size_t kv)
{
    for (size_t k = 0; k < kv; k += 16)
        for (int j = 0; j < 16; j++) {
            float p = w[k + j] * x[k + j];
            a[j] = a[j] + p;
        }
}

static void lanes_update(const float *const *wp, int nr, const float *x, size_t ldx,
                         size_t ntb, lanes16 (*acc)[TB], size_t kv)
{
    for (size_t t = 0; t < ntb; t++)
        for (int i = 0; i < nr; i++) lanes_step(acc[i][t].v, wp[i], x + t * ldx, kv);
}
#endif

void eng_matmul_rows(uint32_t type, const void *w, size_t row_bytes, size_t n,
                     const float *x, size_t ldx, size_t nt, float *y, size_t ldy,
                     size_t r0, size_t r1)
{
    if (nt == 0 || r0 >= r1) return;
    if (qq_supported(type, n)) {
        qq_matmul_rows(type, w, row_bytes, n, x, ldx, nt, y, ldy, r0, r1);
        return;
    }
    eng_matmul_rows_f32act(type, w, row_bytes, n, x, ldx, nt, y, ldy, r0, r1);
}

void eng_matmul_rows_f32act(uint32_t type, const void *w, size_t row_bytes, size_t n,
                            const float *x, size_t ldx, size_t nt, float *y, size_t ldy,
                            size_t r0, size_t r1)
{
    const eng_type_info *ti = eng_type_info_get(type);
    assert(ti && n % ti->block_elems == 0);
    if (!ti || nt == 0 || r0 >= r1) return;
    const qi_dequant_fn deq = qi_dequant_get(type);
    const size_t be = ti->block_elems, bb = ti->block_bytes;
    const size_t n16 = n & ~(size_t)15;

    _Alignas(64) float buf[RB][KC];
    lanes16 acc[RB][TB];
    float tail[RB][TB];

    for (size_t rg = r0; rg < r1; rg += RB) {
        const int nr = (int)(r1 - rg < RB ? r1 - rg : RB);
        const uint8_t *rows[RB];
        for (int i = 0; i < nr; i++) rows[i] = (const uint8_t *)w + (rg + (size_t)i) * row_bytes;

        for (size_t t0 = 0; t0 < nt; t0 += TB) {
            const size_t ntb = nt - t0 < TB ? nt - t0 : TB;
            const float *xg = x + t0 * ldx;
            for (int i = 0; i < nr; i++) {
                memset(acc[i], 0, ntb * sizeof(lanes16));
                for (size_t t = 0; t < ntb; t++) tail[i][t] = 0.0f;
            }
            for (size_t k0 = 0; k0 < n; k0 += KC) {
                const size_t kn = n - k0 < KC ? n - k0 : KC;
                const float *wp[RB];
#if defined(__SSE__)
                /* the next row group's part of this chunk, to L2 (decode streams the whole
                 * matrix from memory once) */
                if (t0 == 0 && rg + 2 * RB <= r1)
                    for (int i = 0; i < RB; i++) {
                        const uint8_t *pr = rows[0] + (size_t)(RB + i) * row_bytes + (k0 / be) * bb;
                        for (size_t o = 0; o < kn / be * bb; o += 64)
                            _mm_prefetch((const char *)(pr + o), _MM_HINT_T2);
                    }
#endif
                for (int i = 0; i < nr; i++) {
                    if (type == ENG_TYPE_F32 && ((uintptr_t)rows[i] & 3) == 0) {
                        wp[i] = (const float *)(const void *)(rows[i] + k0 * sizeof(float));
                    } else {
                        deq(rows[i] + (k0 / be) * bb, buf[i], kn / be);
                        wp[i] = buf[i];
                    }
                }
                const size_t kv = (k0 + kn <= n16 ? kn : n16 - k0);
                if (kv) lanes_update(wp, nr, xg + k0, ldx, ntb, acc, kv);
                if (kv < kn) { /* the tail of the row: k >= n16, in order */
                    for (int i = 0; i < nr; i++)
                        for (size_t t = 0; t < ntb; t++) {
                            const float *xt = xg + t * ldx + k0;
                            float s = tail[i][t];
                            for (size_t k = kv; k < kn; k++) {
                                float p = wp[i][k] * xt[k];
                                s = s + p;
                            }
                            tail[i][t] = s;
                        }
                }
            }
            for (int i = 0; i < nr; i++)
                for (size_t t = 0; t < ntb; t++)
                    y[(t0 + t) * ldy + rg + (size_t)i] = reduce16(acc[i][t].v) + tail[i][t];
        }
    }
}

bool eng_act_supported(uint32_t type, size_t n) { return qq_supported(type, n); }

size_t eng_act_bytes(size_t n, size_t nt) { return qq_act_bytes(n, nt); }

void eng_act_quantize(const float *x, size_t ldx, size_t n, size_t nt, size_t t0, size_t t1,
                      void *act)
{
    assert(qq_act_bytes(n, nt) != 0 && t0 <= t1 && t1 <= nt && ((uintptr_t)act & 63) == 0);
    qq_act_quantize(x, ldx, n, nt, t0, t1, act);
}

void eng_matmul_rows_act(uint32_t type, const void *w, size_t row_bytes, size_t n,
                         const void *act, size_t nt, float *y, size_t ldy, size_t r0, size_t r1)
{
    assert(qq_supported(type, n) && ((uintptr_t)act & 63) == 0);
    if (nt == 0 || r0 >= r1) return;
    qq_matmul_rows_act(type, w, row_bytes, n, act, nt, y, ldy, r0, r1);
}

float eng_dot_row(uint32_t type, const void *row, const float *x, size_t n)
{
    float y = 0.0f;
    eng_matmul_rows(type, row, 0, n, x, 0, 1, &y, 0, 0, 1);
    return y;
}
