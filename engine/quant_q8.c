/* Integer kernels for the 32-element-block weight formats (Q8_0, Q4_0) and the K formats
 * (Q4_K, Q6_K): activations quantized to 8 bits per 32-element block, integer dot products
 * per block, scaled and summed in f32 in a fixed order. Contract: quant.h (eng_matmul_rows).
 *
 * Activations, per token and 32-element block b (in every scheme):
 *   xq[32] = round(x * 127 / amax_b) (ties to even), dx_b = amax_b / 127 rounded to binary16
 *   (as llama.cpp's Q8_0 activations; kept in f32 where the half would be subnormal or
 *   infinite).
 *
 * Q8_0, Q4_0, Q4_K (the block scheme: mv8, mm8, mm16 below): per (row, token), block b
 * (32 weights) ascending,
 *   isum_b = sum over the block of w_int * xq (exact integer; w_int = q, q - 8 for Q4_0)
 *   acc  = fma(float(isum_b), a_b * dx_b, acc)      (mul then add without FMA in the build)
 *   macc = fma(m_b, ys_b, macc)                     (Q4_K only; ys_b = dx_b * sum(xq_b))
 *   y = acc (Q4_K: acc - macc)
 *   a_b = the block's scale d (Q4_K: d * sc of the sub-block), m_b = dmin * mn (Q4_K).
 * One or two tokens (mv8) read the rows in place; more tokens interleave 8 rows (mm8) or 16
 * rows (mm16, AVX-512) so that one vpdpbusd serves every row of the group.
 *
 * Q6_K: per (row, token), block b ascending, in 8 float lanes:
 *   p[j] (j = 0..7) = sum over the 4 elements 4j..4j+3 of w_int * xq   (exact)
 *   acc[j] = fma(float(p[j]), s_b[j], acc[j]),  s_b = a_b * dx_b
 *   w_int = q - 32, a_b = d * sc[16-element sub-block] (lanes 0-3 / 4-7)
 *   y = tree(acc), tree(l) = ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)).
 *
 * The integer sums are exact whatever the instruction set (VNNI vpdpbusd with an offset
 * correction, AVX2 maddubs with the sign trick, or plain C), so the AVX2 and AVX-512 builds
 * agree to the bit; the portable build (no FMA) differs in the last bits.
 * Nothing depends on the other tokens, the row range or the batch size. */
#include "quant.h"
#include "quant_internal.h"
#include "quant_q8.h"

#include <math.h>
#include <string.h>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define QQ_VNNI 1
#if defined(__AVX512F__)
#define QQ_Z 1 /* 512-bit vectors for the batched Q8_0/Q4_0 kernel */
#endif
#elif defined(__AVX2__)
#define QQ_AVX2 1
#endif

#define QQ_TG 64        /* tokens per group */
#define QQ_KC 2048      /* elements per K chunk (64 blocks; a multiple of 256) */
#define QQ_RB 4         /* rows per group */
#define QQ_BUF (512 * 1024)

typedef struct { _Alignas(32) float v[8]; } lanes8;

/* per-token quantized activations, in the thread's buffer */
typedef struct qx {
    int8_t *xq;     /* n */
    float *dx;      /* nb */
    float *ys;      /* nb: dx * sum(xq) (Q4_K) */
    int32_t *corr;  /* nb * 8: -c * lane sums of xq (VNNI) */
} qx;

static _Thread_local _Alignas(64) uint8_t qq_buf[QQ_BUF];

static size_t tok_bytes(size_t n)
{
    size_t nb = n / 32;
    return n + nb * 8 + nb * 32;
}

static int type_offset(uint32_t type)
{
    switch (type) {
    case ENG_TYPE_Q8_0: return 128;
    case ENG_TYPE_Q4_0: return 8;
    case ENG_TYPE_Q6_K: return 32;
    default: return 0;
    }
}

bool qq_supported(uint32_t type, size_t n)
{
    if (type != ENG_TYPE_Q8_0 && type != ENG_TYPE_Q4_0 && type != ENG_TYPE_Q4_K &&
        type != ENG_TYPE_Q6_K)
        return false;
    return n % 32 == 0 && n > 0 && tok_bytes(n) <= QQ_BUF;
}

/* the activation scale as llama.cpp keeps it (binary16), where that is a normal half */
static inline float act_scale(float amax)
{
    const float d = amax / 127.0f;
#if defined(__F16C__)
    const float dh = _cvtsh_ss(_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#else
    const float dh = eng_f16_to_f32(eng_f32_to_f16(d));
#endif
    return dh >= 0x1p-14f && dh <= 65504.0f ? dh : d;
}

void qq_quantize_act(const float *x, size_t n, int8_t *xq, float *dx, int32_t *bsum)
{
    const size_t nb = n / 32;
    for (size_t b = 0; b < nb; b++) {
        const float *xb = x + 32 * b;
        int8_t *q = xq + 32 * b;
#if defined(__AVX2__)
        const __m256 sign = _mm256_set1_ps(-0.0f);
        __m256 v[4], m = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(xb + 8 * k);
            m = _mm256_max_ps(_mm256_andnot_ps(sign, v[k]), m);
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        const __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
        __m256i qi[4], sum = _mm256_setzero_si256();
        for (int k = 0; k < 4; k++) {
            __m256 r = _mm256_round_ps(_mm256_mul_ps(v[k], id),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            r = _mm256_max_ps(_mm256_min_ps(r, _mm256_set1_ps(127.0f)), _mm256_set1_ps(-127.0f));
            qi[k] = _mm256_cvtps_epi32(r);
            sum = _mm256_add_epi32(sum, qi[k]);
        }
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(qi[0], qi[1]), _mm256_packs_epi32(qi[2], qi[3]));
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(void *)q, p);
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
        bsum[b] = _mm_cvtsi128_si32(s4);
#else
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) {
            float a = fabsf(xb[j]);
            amax = a > amax ? a : amax;
        }
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        int32_t sum = 0;
        for (int j = 0; j < 32; j++) {
            float v = nearbyintf(xb[j] * id);
            v = v < 127.0f ? v : 127.0f; /* (NaN -> 127, as the vector code) */
            v = v > -127.0f ? v : -127.0f;
            q[j] = (int8_t)v;
            sum += q[j];
        }
        bsum[b] = sum;
#endif
        dx[b] = act_scale(amax);
    }
}

/* one token: xq, dx, ys = dx * sum(xq) per block, and the VNNI offset corrections: per block
 * (lanes false: corr[b] = -c * sum(xq_b)) or per 4-element lane (lanes true: corr[8 b + j]) */
static void quantize_x(const float *x, size_t n, int c, bool lanes, qx *o)
{
    const size_t nb = n / 32;
    qq_quantize_act(x, n, o->xq, o->dx, o->corr);
    for (size_t b = 0; b < nb; b++) o->ys[b] = o->dx[b] * (float)o->corr[b];
    if (!lanes) {
        for (size_t b = 0; b < nb; b++) o->corr[b] = -c * o->corr[b];
        return;
    }
#if defined(QQ_VNNI)
    for (size_t b = 0; b < nb; b++) {
        const int8_t *q = o->xq + 32 * b;
        for (int j = 0; j < 8; j++)
            o->corr[8 * b + (size_t)j] = -c * (q[4 * j] + q[4 * j + 1] + q[4 * j + 2] + q[4 * j + 3]);
    }
#endif
}

/* ---- Q4_K, Q6_K weight preparation: one row, blocks [kb0, kb0 + nbc) -> integer weights
 * (VNNI: w_int + offset, as u8; else w_int as s8), scales a (a1: second half, Q6_K), mins m
 * (Q4_K). (Q8_0 and Q4_0 go through prep8_fill and mm8.) */

typedef struct prep {
    _Alignas(32) uint8_t w[QQ_KC];
    float a[QQ_KC / 32], a1[QQ_KC / 32];
} prep;

#if defined(QQ_VNNI)
#define WOFF(c) 0
#else
#define WOFF(c) (c)
#endif

static void prep_row(uint32_t type, const uint8_t *row, size_t kb0, size_t nbc, prep *p)
{
    switch (type) {
    case ENG_TYPE_Q6_K: {
        const uint8_t *b = row + (kb0 / 8) * 210;
        for (size_t i = 0; i < nbc; i += 8, b += 210) {
            const uint8_t *ql = b, *qh = b + 128;
            const int8_t *sc = (const int8_t *)(b + 192);
            const float d = qi_f16(b + 208);
            for (int s = 0; s < 8; s++) {
                p->a[i + (size_t)s] = d * (float)sc[2 * s];
                p->a1[i + (size_t)s] = d * (float)sc[2 * s + 1];
            }
            for (int h = 0; h < 2; h++, ql += 64, qh += 32) {
                uint8_t *w = p->w + 32 * (i + 4 * (size_t)h);
                for (int l = 0; l < 32; l++) {
                    w[l] = (uint8_t)(((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - WOFF(32));
                    w[l + 32] = (uint8_t)(((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - WOFF(32));
                    w[l + 64] = (uint8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - WOFF(32));
                    w[l + 96] = (uint8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - WOFF(32));
                }
            }
        }
        break;
    }
    }
}

/* ---- block dot products: 8 exact integer lanes */

#if defined(QQ_VNNI)
static inline __m256i bdot(const uint8_t *w, const int8_t *x, const int32_t *corr)
{
    return _mm256_dpbusd_epi32(_mm256_load_si256((const __m256i *)corr),
                               _mm256_load_si256((const __m256i *)w),
                               _mm256_loadu_si256((const __m256i *)x));
}
#elif defined(QQ_AVX2)
static inline __m256i bdot(const uint8_t *w, const int8_t *x, const int32_t *corr)
{
    (void)corr;
    __m256i wv = _mm256_load_si256((const __m256i *)w);
    __m256i xv = _mm256_loadu_si256((const __m256i *)x);
    __m256i p16 = _mm256_maddubs_epi16(_mm256_abs_epi8(wv), _mm256_sign_epi8(xv, wv));
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}
#endif

/* per-block scales of one (row, token): s0[i] = a[i] * dx[i] (s1: the second half, Q6_K) */
typedef struct bsc { _Alignas(64) float s0[QQ_KC / 32], s1[QQ_KC / 32]; } bsc;

static inline void make_scales(const prep *p, const float *dx, size_t nbc, bool halves, bsc *o)
{
    for (size_t i = 0; i < nbc; i++) o->s0[i] = p->a[i] * dx[i];
    if (halves)
        for (size_t i = 0; i < nbc; i++) o->s1[i] = p->a1[i] * dx[i];
}

#if defined(QQ_VNNI) || defined(QQ_AVX2)
static inline __m256 bscale(const bsc *s, size_t i, bool halves)
{
    if (halves) return _mm256_set_m128(_mm_broadcast_ss(&s->s1[i]), _mm_broadcast_ss(&s->s0[i]));
    return _mm256_broadcast_ss(&s->s0[i]);
}

static inline __m256 fmadd8(__m256 a, __m256 b, __m256 c)
{
#if defined(__FMA__)
    return _mm256_fmadd_ps(a, b, c);
#else
    return _mm256_add_ps(_mm256_mul_ps(a, b), c);
#endif
}

/* nr rows (1..4) x one token, blocks [0, nbc) of the chunk */
static inline void kern(const prep *pr, const bsc *sc, int nr, const qx *t, size_t kb0,
                        size_t nbc, lanes8 *acc, bool halves)
{
    __m256 a0 = _mm256_load_ps(acc[0].v), a1 = a0, a2 = a0, a3 = a0;
    if (nr > 1) a1 = _mm256_load_ps(acc[1].v);
    if (nr > 2) a2 = _mm256_load_ps(acc[2].v);
    if (nr > 3) a3 = _mm256_load_ps(acc[3].v);
    const int8_t *xq = t->xq + 32 * kb0;
    const int32_t *corr = t->corr + 8 * kb0;
    for (size_t i = 0; i < nbc; i++) {
        const int8_t *xb = xq + 32 * i;
        const int32_t *cb = corr + 8 * i;
        a0 = fmadd8(_mm256_cvtepi32_ps(bdot(pr[0].w + 32 * i, xb, cb)), bscale(&sc[0], i, halves), a0);
        if (nr > 1)
            a1 = fmadd8(_mm256_cvtepi32_ps(bdot(pr[1].w + 32 * i, xb, cb)), bscale(&sc[1], i, halves), a1);
        if (nr > 2)
            a2 = fmadd8(_mm256_cvtepi32_ps(bdot(pr[2].w + 32 * i, xb, cb)), bscale(&sc[2], i, halves), a2);
        if (nr > 3)
            a3 = fmadd8(_mm256_cvtepi32_ps(bdot(pr[3].w + 32 * i, xb, cb)), bscale(&sc[3], i, halves), a3);
    }
    _mm256_store_ps(acc[0].v, a0);
    if (nr > 1) _mm256_store_ps(acc[1].v, a1);
    if (nr > 2) _mm256_store_ps(acc[2].v, a2);
    if (nr > 3) _mm256_store_ps(acc[3].v, a3);
}

/* 4 rows x 2 tokens (8 accumulators; the same operations per (row, token) as kern) */
static inline void kern42(const prep *pr, const bsc *sc0, const bsc *sc1, const qx *t0,
                          const qx *t1, size_t kb0, size_t nbc, lanes8 *acc0, lanes8 *acc1,
                          bool halves)
{
    __m256 a00 = _mm256_load_ps(acc0[0].v), a10 = _mm256_load_ps(acc0[1].v);
    __m256 a20 = _mm256_load_ps(acc0[2].v), a30 = _mm256_load_ps(acc0[3].v);
    __m256 a01 = _mm256_load_ps(acc1[0].v), a11 = _mm256_load_ps(acc1[1].v);
    __m256 a21 = _mm256_load_ps(acc1[2].v), a31 = _mm256_load_ps(acc1[3].v);
    const int8_t *x0 = t0->xq + 32 * kb0, *x1 = t1->xq + 32 * kb0;
    const int32_t *c0 = t0->corr + 8 * kb0, *c1 = t1->corr + 8 * kb0;
    for (size_t i = 0; i < nbc; i++) {
        const int8_t *xb0 = x0 + 32 * i, *xb1 = x1 + 32 * i;
        const int32_t *cb0 = c0 + 8 * i, *cb1 = c1 + 8 * i;
#define K42(r, aX0, aX1)                                                                        \
    aX0 = fmadd8(_mm256_cvtepi32_ps(bdot(pr[r].w + 32 * i, xb0, cb0)),                          \
                 bscale(&sc0[r], i, halves), aX0);                                              \
    aX1 = fmadd8(_mm256_cvtepi32_ps(bdot(pr[r].w + 32 * i, xb1, cb1)),                          \
                 bscale(&sc1[r], i, halves), aX1);
        K42(0, a00, a01)
        K42(1, a10, a11)
        K42(2, a20, a21)
        K42(3, a30, a31)
#undef K42
    }
    _mm256_store_ps(acc0[0].v, a00); _mm256_store_ps(acc0[1].v, a10);
    _mm256_store_ps(acc0[2].v, a20); _mm256_store_ps(acc0[3].v, a30);
    _mm256_store_ps(acc1[0].v, a01); _mm256_store_ps(acc1[1].v, a11);
    _mm256_store_ps(acc1[2].v, a21); _mm256_store_ps(acc1[3].v, a31);
}

static void kern_pair(const prep *pr, const qx *t0, const qx *t1, size_t kb0, size_t nbc,
                      lanes8 *acc0, lanes8 *acc1, bool halves)
{
    bsc sc0[QQ_RB], sc1[QQ_RB];
    for (int i = 0; i < QQ_RB; i++) {
        make_scales(&pr[i], t0->dx + kb0, nbc, halves, &sc0[i]);
        make_scales(&pr[i], t1->dx + kb0, nbc, halves, &sc1[i]);
    }
    if (halves) kern42(pr, sc0, sc1, t0, t1, kb0, nbc, acc0, acc1, true);
    else kern42(pr, sc0, sc1, t0, t1, kb0, nbc, acc0, acc1, false);
}
#define QQ_HAVE_PAIR 1

static void kern_any(const prep *pr, int nr, const qx *t, size_t kb0, size_t nbc, lanes8 *acc,
                     bool halves)
{
    bsc sc[QQ_RB];
    for (int i = 0; i < nr; i++) make_scales(&pr[i], t->dx + kb0, nbc, halves, &sc[i]);
    if (halves) {
        if (nr == 4) kern(pr, sc, 4, t, kb0, nbc, acc, true);
        else for (int i = 0; i < nr; i++) kern(pr + i, sc + i, 1, t, kb0, nbc, acc + i, true);
    } else {
        if (nr == 4) kern(pr, sc, 4, t, kb0, nbc, acc, false);
        else for (int i = 0; i < nr; i++) kern(pr + i, sc + i, 1, t, kb0, nbc, acc + i, false);
    }
}
#else
static void kern_any(const prep *pr, int nr, const qx *t, size_t kb0, size_t nbc, lanes8 *acc,
                     bool halves)
{
    bsc sc;
    for (int r = 0; r < nr; r++) {
        float *a = acc[r].v;
        make_scales(&pr[r], t->dx + kb0, nbc, halves, &sc);
        for (size_t i = 0; i < nbc; i++) {
            const int8_t *xb = t->xq + 32 * (kb0 + i);
            const int8_t *wb = (const int8_t *)pr[r].w + 32 * i;
            const float s0 = sc.s0[i], s1 = halves ? sc.s1[i] : s0;
            for (int j = 0; j < 8; j++) {
                int p = 0;
                for (int k = 0; k < 4; k++) p += wb[4 * j + k] * xb[4 * j + k];
                float prod = (float)p * (j < 4 ? s0 : s1);
                a[j] = a[j] + prod;
            }
        }
    }
}
#endif

static inline float tree8(const float *l)
{
    return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}


/* ---- Q8_0 and Q4_0: 8 rows interleaved, one exact integer sum per (row, token, block)
 *
 * The weights of 8 rows are prepared block by block as 8 vectors: vector j holds, for each
 * row r, the 4 integer weights 4j..4j+3 of that row's block (an 8 x 8 transpose of 32-bit
 * groups). One vpdpbusd against the token's 4 activations 4j..4j+3 (broadcast) adds those
 * 4 products to each row's lane; 8 of them give every row's whole block sum, exact. Then
 * per (row, token), block b ascending:  acc = fma(float(isum_b), a_b * dx_b, acc);  y = acc.
 * Integer sums are exact in any order, so the instruction sets agree to the bit. */

static inline int32_t rd_i32(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* ---- where block b of a row (32 weights) is, in the formats of the block scheme:
 * Q8_0, Q4_0, and Q4_K (block b = sub-block b % 8 of super-block b / 8: the low (b even) or
 * high (b odd) nibbles of its 32-byte group (b % 8) / 2). */
static inline const uint8_t *bq_ptr(uint32_t type, const uint8_t *row, size_t b)
{
    switch (type) {
    case ENG_TYPE_Q8_0: return row + 34 * b + 2;
    case ENG_TYPE_Q4_0: return row + 18 * b + 2;
    default: return row + 144 * (b / 8) + 16 + 32 * ((b % 8) / 2);
    }
}

/* scales a (and mins m, Q4_K; else 0) of blocks [kb0, kb0 + nbc) of one row, to a[i * stride]
 * (kb0 and nbc are multiples of 8 for Q4_K) */
static void row_scales(uint32_t type, const uint8_t *row, size_t kb0, size_t nbc, float *a,
                       float *m, size_t stride)
{
    if (type == ENG_TYPE_Q4_K) {
        for (size_t i = 0; i < nbc; i += 8) {
            const uint8_t *sb = row + 144 * ((kb0 + i) / 8), *s = sb + 4;
            const float d = qi_f16(sb), dmin = qi_f16(sb + 2);
            for (size_t j = 0; j < 8; j++) {
                int sc, mn;
                if (j < 4) {
                    sc = s[j] & 63;
                    mn = s[j + 4] & 63;
                } else {
                    sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
                    mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
                }
                a[(i + j) * stride] = d * (float)sc;
                m[(i + j) * stride] = dmin * (float)mn;
            }
        }
        return;
    }
    const size_t bb = type == ENG_TYPE_Q8_0 ? 34 : 18;
    for (size_t i = 0; i < nbc; i++) {
        a[i * stride] = qi_f16(row + (kb0 + i) * bb);
        m[i * stride] = 0.0f;
    }
}

#if defined(__AVX2__)
/* the 32 integer weights of a block, as the dot products want them: VNNI u8 (w_int + offset:
 * Q8_0 +128, Q4_0 +8, Q4_K 0), else s8 w_int */
static inline __m256i wblock(uint32_t type, const uint8_t *q, size_t b)
{
    if (type == ENG_TYPE_Q8_0) {
        __m256i v = _mm256_loadu_si256((const __m256i *)q);
#if defined(QQ_VNNI)
        v = _mm256_xor_si256(v, _mm256_set1_epi8((char)0x80));
#endif
        return v;
    }
    if (type == ENG_TYPE_Q4_K) {
        __m256i v = _mm256_loadu_si256((const __m256i *)q);
        if (b & 1) v = _mm256_srli_epi16(v, 4);
        return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
    }
    const __m128i h = _mm_loadu_si128((const __m128i *)q), m4 = _mm_set1_epi8(0x0F);
    __m256i v = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(h, 4), m4), _mm_and_si128(h, m4));
#if !defined(QQ_VNNI)
    v = _mm256_sub_epi8(v, _mm256_set1_epi8(8));
#endif
    return v;
}

/* 8 rows' blocks (R[r]) -> 8 vectors, vector j = the rows' 4-byte groups j (8 x 8 transpose of
 * 32-bit elements), stored at out + j * stride */
static inline void tr8x8_store(const __m256i *R, uint8_t *out, size_t stride)
{
    __m256i t[8], u[8];
    for (int r = 0; r < 8; r += 2) {
        t[r] = _mm256_unpacklo_epi32(R[r], R[r + 1]);
        t[r + 1] = _mm256_unpackhi_epi32(R[r], R[r + 1]);
    }
    for (int g = 0; g < 8; g += 4) {
        u[g] = _mm256_unpacklo_epi64(t[g], t[g + 2]);
        u[g + 1] = _mm256_unpackhi_epi64(t[g], t[g + 2]);
        u[g + 2] = _mm256_unpacklo_epi64(t[g + 1], t[g + 3]);
        u[g + 3] = _mm256_unpackhi_epi64(t[g + 1], t[g + 3]);
    }
    for (int j = 0; j < 4; j++) {
        _mm256_store_si256((__m256i *)(void *)(out + (size_t)j * stride),
                           _mm256_permute2x128_si256(u[j], u[j + 4], 0x20));
        _mm256_store_si256((__m256i *)(void *)(out + (size_t)(j + 4) * stride),
                           _mm256_permute2x128_si256(u[j], u[j + 4], 0x31));
    }
}
#else
/* portable: the 32 integer weights w_int of a block, as s8 */
static inline void wblock_c(uint32_t type, const uint8_t *q, size_t b, uint8_t out[32])
{
    switch (type) {
    case ENG_TYPE_Q8_0: memcpy(out, q, 32); break;
    case ENG_TYPE_Q4_0:
        for (int k = 0; k < 16; k++) {
            out[k] = (uint8_t)((q[k] & 0x0F) - 8);
            out[16 + k] = (uint8_t)((q[k] >> 4) - 8);
        }
        break;
    default:
        for (int k = 0; k < 32; k++) out[k] = (uint8_t)((b & 1) ? q[k] >> 4 : q[k] & 0x0F);
    }
}
#endif

#if !defined(QQ_Z) /* (with AVX-512, mm16 below takes three tokens or more) */
#define QQ_R8 8

typedef struct prep8 {
    _Alignas(32) uint8_t w[QQ_KC / 32][8][32]; /* [block][j][row * 4 + k] */
    _Alignas(32) float a[QQ_KC / 32][8];       /* [block][row] */
    _Alignas(32) float m[QQ_KC / 32][8];       /* [block][row] (Q4_K mins) */
} prep8;

static void prep8_fill(uint32_t type, const uint8_t *w, size_t row_bytes, int nr, size_t kb0,
                       size_t nbc, prep8 *p)
{
    for (int r = 0; r < QQ_R8; r++) {
        if (r < nr) {
            row_scales(type, w + (size_t)r * row_bytes, kb0, nbc, &p->a[0][r], &p->m[0][r], 8);
            continue;
        }
        for (size_t i = 0; i < nbc; i++) p->a[i][r] = p->m[i][r] = 0.0f;
    }
    for (size_t i = 0; i < nbc; i++) {
        const size_t b = kb0 + i;
#if defined(__AVX2__)
        __m256i R[8];
        for (int r = 0; r < QQ_R8; r++)
            R[r] = r < nr ? wblock(type, bq_ptr(type, w + (size_t)r * row_bytes, b), b)
                          : _mm256_setzero_si256();
        tr8x8_store(R, p->w[i][0], 32);
#else
        uint8_t blk[8][32];
        for (int r = 0; r < QQ_R8; r++) {
            if (r < nr) wblock_c(type, bq_ptr(type, w + (size_t)r * row_bytes, b), b, blk[r]);
            else memset(blk[r], 0, 32);
        }
        for (int j = 0; j < 8; j++)
            for (int r = 0; r < 8; r++)
                for (int k = 0; k < 4; k++) p->w[i][j][4 * r + k] = blk[r][4 * j + k];
#endif
    }
}

#if defined(QQ_VNNI) || defined(QQ_AVX2)
/* the 8 rows' exact sums for one block of one token */
static inline __m256i isum8(const prep8 *p, size_t i, const int8_t *xb, int32_t corr)
{
#if defined(QQ_VNNI)
    __m256i s0 = _mm256_set1_epi32(corr), s1 = _mm256_setzero_si256();
    for (int j = 0; j < 8; j += 2) {
        s0 = _mm256_dpbusd_epi32(s0, _mm256_load_si256((const __m256i *)p->w[i][j]),
                                 _mm256_set1_epi32(rd_i32(xb + 4 * j)));
        s1 = _mm256_dpbusd_epi32(s1, _mm256_load_si256((const __m256i *)p->w[i][j + 1]),
                                 _mm256_set1_epi32(rd_i32(xb + 4 * j + 4)));
    }
    return _mm256_add_epi32(s0, s1);
#else
    (void)corr;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
    for (int j = 0; j < 8; j += 2) {
        __m256i w0 = _mm256_load_si256((const __m256i *)p->w[i][j]);
        __m256i w1 = _mm256_load_si256((const __m256i *)p->w[i][j + 1]);
        __m256i x0 = _mm256_set1_epi32(rd_i32(xb + 4 * j)), x1 = _mm256_set1_epi32(rd_i32(xb + 4 * j + 4));
        s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w0), _mm256_sign_epi8(x0, w0)), ones));
        s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w1), _mm256_sign_epi8(x1, w1)), ones));
    }
    return _mm256_add_epi32(s0, s1);
#endif
}

static inline __attribute__((always_inline)) void
kern8(const prep8 *p, const qx *const *tk, int ntk, size_t kb0, size_t nbc, lanes8 *const *acc,
      lanes8 *const *macc, const bool mins)
{
    if (ntk == 2) {
        __m256 a0 = _mm256_load_ps(acc[0]->v), a1 = _mm256_load_ps(acc[1]->v);
        __m256 m0 = _mm256_load_ps(macc[0]->v), m1 = _mm256_load_ps(macc[1]->v);
        for (size_t i = 0; i < nbc; i++) {
            const size_t b = kb0 + i;
            __m256i p0 = isum8(p, i, tk[0]->xq + 32 * b, tk[0]->corr[b]);
            __m256i p1 = isum8(p, i, tk[1]->xq + 32 * b, tk[1]->corr[b]);
            const __m256 av = _mm256_load_ps(p->a[i]);
            a0 = fmadd8(_mm256_cvtepi32_ps(p0), _mm256_mul_ps(av, _mm256_set1_ps(tk[0]->dx[b])), a0);
            a1 = fmadd8(_mm256_cvtepi32_ps(p1), _mm256_mul_ps(av, _mm256_set1_ps(tk[1]->dx[b])), a1);
            if (mins) {
                const __m256 mv = _mm256_load_ps(p->m[i]);
                m0 = fmadd8(mv, _mm256_set1_ps(tk[0]->ys[b]), m0);
                m1 = fmadd8(mv, _mm256_set1_ps(tk[1]->ys[b]), m1);
            }
        }
        _mm256_store_ps(acc[0]->v, a0);
        _mm256_store_ps(acc[1]->v, a1);
        _mm256_store_ps(macc[0]->v, m0);
        _mm256_store_ps(macc[1]->v, m1);
        return;
    }
    __m256 a0 = _mm256_load_ps(acc[0]->v), m0 = _mm256_load_ps(macc[0]->v);
    for (size_t i = 0; i < nbc; i++) {
        const size_t b = kb0 + i;
        __m256i p0 = isum8(p, i, tk[0]->xq + 32 * b, tk[0]->corr[b]);
        a0 = fmadd8(_mm256_cvtepi32_ps(p0),
                    _mm256_mul_ps(_mm256_load_ps(p->a[i]), _mm256_set1_ps(tk[0]->dx[b])), a0);
        if (mins) m0 = fmadd8(_mm256_load_ps(p->m[i]), _mm256_set1_ps(tk[0]->ys[b]), m0);
    }
    _mm256_store_ps(acc[0]->v, a0);
    _mm256_store_ps(macc[0]->v, m0);
}
#else
static inline void kern8(const prep8 *p, const qx *const *tk, int ntk, size_t kb0, size_t nbc,
                         lanes8 *const *acc, lanes8 *const *macc, const bool mins)
{
    for (int t = 0; t < ntk; t++)
        for (int r = 0; r < 8; r++) {
            float a = acc[t]->v[r], ma = macc[t]->v[r];
            for (size_t i = 0; i < nbc; i++) {
                const int8_t *xb = tk[t]->xq + 32 * (kb0 + i);
                int32_t sum = 0;
                for (int j = 0; j < 8; j++)
                    for (int k = 0; k < 4; k++)
                        sum += (int8_t)p->w[i][j][4 * r + k] * xb[4 * j + k];
                float sc = p->a[i][r] * tk[t]->dx[kb0 + i];
                float prod = (float)sum * sc;
                a = a + prod;
                if (mins) {
                    float pm = p->m[i][r] * tk[t]->ys[kb0 + i];
                    ma = ma + pm;
                }
            }
            acc[t]->v[r] = a;
            macc[t]->v[r] = ma;
        }
}
#endif

static inline __attribute__((always_inline)) void
mm8_n(uint32_t type, const void *w, size_t row_bytes, size_t nb, qx *toks, size_t ntg, float *y,
      size_t ldy, size_t r0, size_t r1, const bool mins)
{
    static _Thread_local prep8 pr;
    lanes8 acc[QQ_TG], macc[QQ_TG];
    for (size_t rg = r0; rg < r1; rg += QQ_R8) {
        const int nr = (int)(r1 - rg < QQ_R8 ? r1 - rg : QQ_R8);
        memset(acc, 0, ntg * sizeof acc[0]);
        memset(macc, 0, ntg * sizeof macc[0]);
        for (size_t kb0 = 0; kb0 < nb; kb0 += QQ_KC / 32) {
            const size_t nbc = nb - kb0 < QQ_KC / 32 ? nb - kb0 : QQ_KC / 32;
            prep8_fill(type, (const uint8_t *)w + rg * row_bytes, row_bytes, nr, kb0, nbc, &pr);
            size_t t = 0;
            for (; t + 2 <= ntg; t += 2) {
                const qx *tk[2] = {&toks[t], &toks[t + 1]};
                lanes8 *ac[2] = {&acc[t], &acc[t + 1]}, *mc[2] = {&macc[t], &macc[t + 1]};
                kern8(&pr, tk, 2, kb0, nbc, ac, mc, mins);
            }
            for (; t < ntg; t++) {
                const qx *tk[1] = {&toks[t]};
                lanes8 *ac[1] = {&acc[t]}, *mc[1] = {&macc[t]};
                kern8(&pr, tk, 1, kb0, nbc, ac, mc, mins);
            }
        }
        for (size_t t = 0; t < ntg; t++)
            for (int i = 0; i < nr; i++)
                y[t * ldy + rg + (size_t)i] = mins ? acc[t].v[i] - macc[t].v[i] : acc[t].v[i];
    }
}

static void mm8(uint32_t type, const void *w, size_t row_bytes, size_t nb, qx *toks, size_t ntg,
                float *y, size_t ldy, size_t r0, size_t r1)
{
    if (type == ENG_TYPE_Q4_K) mm8_n(type, w, row_bytes, nb, toks, ntg, y, ldy, r0, r1, true);
    else mm8_n(type, w, row_bytes, nb, toks, ntg, y, ldy, r0, r1, false);
}
#endif /* !QQ_Z */

/* ---- Q8_0 and Q4_0, one or two tokens (decode): rows read in place, 8 at a time.
 *
 * Per row and block: one 8-lane integer dot product (4 elements a lane), then the 8 rows'
 * lanes are summed into one exact integer per row (horizontal adds), and from there the
 * arithmetic is the same as mm8's: acc = fma(float(isum_b), a_b * dx_b, acc). The weight
 * scales of the 8 rows are gathered; the row group two ahead is prefetched, since these
 * calls stream the whole matrix from memory once. */

#if defined(QQ_VNNI) || defined(QQ_AVX2)
#define QQ_MV_MAX 2

/* 8 lanes of 4-element products of one row's block and one token's block (exact) */
static inline __m256i bdot8(__m256i w, __m256i x)
{
#if defined(QQ_VNNI)
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, x);
#else
    __m256i p16 = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
#endif
}

/* v[r] (8 lanes each) -> lane r = sum of v[r]'s lanes */
static inline __m256i hsum8x8(const __m256i *v)
{
    __m256i h01 = _mm256_hadd_epi32(v[0], v[1]), h23 = _mm256_hadd_epi32(v[2], v[3]);
    __m256i h45 = _mm256_hadd_epi32(v[4], v[5]), h67 = _mm256_hadd_epi32(v[6], v[7]);
    __m256i lo = _mm256_hadd_epi32(h01, h23), hi = _mm256_hadd_epi32(h45, h67);
    return _mm256_add_epi32(_mm256_permute2x128_si256(lo, hi, 0x20),
                            _mm256_permute2x128_si256(lo, hi, 0x31));
}

/* the 8 rows' block scales (binary16 at the start of each block) as f32 */
static inline __m256 wscales8(const uint8_t *b, __m256i idx)
{
    __m256i g = _mm256_i32gather_epi32((const int *)(const void *)b, idx, 1);
#if defined(__AVX512VL__) && defined(__AVX512F__)
    return _mm256_cvtph_ps(_mm256_cvtepi32_epi16(g));
#else
    g = _mm256_shuffle_epi8(g, _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1,
                                                -1, -1, 0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1,
                                                -1, -1, -1, -1));
    g = _mm256_permute4x64_epi64(g, 0x08);
    return _mm256_cvtph_ps(_mm256_castsi256_si128(g));
#endif
}

static inline __attribute__((always_inline)) void
mv8_n(uint32_t type, const uint8_t *w, size_t row_bytes, size_t nb, const qx *toks,
      const size_t ntg, float *y, size_t ldy, size_t r0, size_t r1)
{
    const bool q4k = type == ENG_TYPE_Q4_K;
    const size_t bb = type == ENG_TYPE_Q8_0 ? 34 : 18;
    _Alignas(32) float ta[QQ_KC / 32][8], tm[QQ_KC / 32][8]; /* Q4_K scales and mins */
    for (size_t rg = r0; rg < r1; rg += 8) {
        const int nr = (int)(r1 - rg < 8 ? r1 - rg : 8);
        const uint8_t *rows[8];
        int32_t off[8];
        for (int r = 0; r < 8; r++) {
            const int rr = r < nr ? r : nr - 1; /* rows past the end repeat the last one */
            rows[r] = w + (rg + (size_t)rr) * row_bytes;
            off[r] = (int32_t)((size_t)rr * row_bytes);
        }
        const __m256i idx = _mm256_loadu_si256((const __m256i *)(const void *)off);
        /* the group two ahead, if it is part of the range */
        const bool pf = r1 - rg >= 24;
        const size_t pfd = 16 * row_bytes;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        __m256 m0 = _mm256_setzero_ps(), m1 = _mm256_setzero_ps();
        for (size_t kb0 = 0; kb0 < nb; kb0 += QQ_KC / 32) {
            const size_t nbc = nb - kb0 < QQ_KC / 32 ? nb - kb0 : QQ_KC / 32;
            if (q4k)
                for (int r = 0; r < 8; r++) row_scales(type, rows[r], kb0, nbc, &ta[0][r], &tm[0][r], 8);
            for (size_t i = 0; i < nbc; i++) {
                const size_t b = kb0 + i;
                __m256i v0[8], v1[8];
                const __m256i x0 = _mm256_loadu_si256((const __m256i *)(toks[0].xq + 32 * b));
                const __m256i x1 =
                    ntg > 1 ? _mm256_loadu_si256((const __m256i *)(toks[1].xq + 32 * b)) : x0;
#pragma GCC unroll 8
                for (int r = 0; r < 8; r++) {
                    const uint8_t *q = bq_ptr(type, rows[r], b);
                    if (pf) _mm_prefetch((const char *)(q + pfd), _MM_HINT_T2);
                    const __m256i wv = wblock(type, q, b);
                    v0[r] = bdot8(wv, x0);
                    v1[r] = ntg > 1 ? bdot8(wv, x1) : v0[r];
                }
                const __m256 av = q4k ? _mm256_load_ps(ta[i]) : wscales8(rows[0] + b * bb, idx);
#if defined(QQ_VNNI)
                const __m256i c0 = _mm256_set1_epi32(toks[0].corr[b]);
#else
                const __m256i c0 = _mm256_setzero_si256();
#endif
                a0 = fmadd8(_mm256_cvtepi32_ps(_mm256_add_epi32(hsum8x8(v0), c0)),
                            _mm256_mul_ps(av, _mm256_set1_ps(toks[0].dx[b])), a0);
                if (q4k) m0 = fmadd8(_mm256_load_ps(tm[i]), _mm256_set1_ps(toks[0].ys[b]), m0);
                if (ntg > 1) {
#if defined(QQ_VNNI)
                    const __m256i c1 = _mm256_set1_epi32(toks[1].corr[b]);
#else
                    const __m256i c1 = _mm256_setzero_si256();
#endif
                    a1 = fmadd8(_mm256_cvtepi32_ps(_mm256_add_epi32(hsum8x8(v1), c1)),
                                _mm256_mul_ps(av, _mm256_set1_ps(toks[1].dx[b])), a1);
                    if (q4k) m1 = fmadd8(_mm256_load_ps(tm[i]), _mm256_set1_ps(toks[1].ys[b]), m1);
                }
            }
        }
        if (q4k) {
            a0 = _mm256_sub_ps(a0, m0);
            a1 = _mm256_sub_ps(a1, m1);
        }
        lanes8 l0, l1;
        _mm256_store_ps(l0.v, a0);
        _mm256_store_ps(l1.v, a1);
        for (int r = 0; r < nr; r++) {
            y[rg + (size_t)r] = l0.v[r];
            if (ntg > 1) y[ldy + rg + (size_t)r] = l1.v[r];
        }
    }
}

__attribute__((noinline)) static void mv8(uint32_t type, const uint8_t *w, size_t row_bytes,
                                          size_t nb, const qx *toks, size_t ntg, float *y,
                                          size_t ldy, size_t r0, size_t r1)
{
#define MV8(T)                                                                                  \
    do {                                                                                        \
        if (ntg == 1) mv8_n(T, w, row_bytes, nb, toks, 1, y, ldy, r0, r1);                      \
        else mv8_n(T, w, row_bytes, nb, toks, 2, y, ldy, r0, r1);                               \
    } while (0)
    switch (type) {
    case ENG_TYPE_Q8_0: MV8(ENG_TYPE_Q8_0); break;
    case ENG_TYPE_Q4_0: MV8(ENG_TYPE_Q4_0); break;
    default: MV8(ENG_TYPE_Q4_K); break;
    }
#undef MV8
}
#endif

/* ---- Q8_0 and Q4_0, three tokens or more, AVX-512: 16 rows interleaved in 512-bit vectors.
 * The same scheme as mm8 (an 8 x 8 transpose of 4-byte groups, done for rows 0-7 and 8-15
 * into the two halves of each vector), with the 8 weight vectors of a block kept in registers
 * for 4 tokens at a time. Per (row, token) the arithmetic is mm8's. */

#if defined(QQ_Z)
#define QQ_KZ 1024 /* elements per K chunk: 32 blocks, 16 KiB of prepared weights */

typedef struct prep16 {
    _Alignas(64) uint8_t w[QQ_KZ / 32][8][64]; /* [block][j][row * 4 + k] */
    _Alignas(64) float a[QQ_KZ / 32][16];      /* [block][row] */
    _Alignas(64) float m[QQ_KZ / 32][16];      /* [block][row] (Q4_K mins) */
} prep16;

typedef struct { _Alignas(64) float v[16]; } lanes16;

/* rows [0, nr) of the group (nr <= 8), blocks [kb0, kb0 + nbc) -> half h of prep16; with pf,
 * the same blocks of the rows 16 further are prefetched */
static void prep16_half(uint32_t type, const uint8_t *w, size_t row_bytes, int nr, size_t kb0,
                        size_t nbc, int h, bool pf, prep16 *p)
{
    for (int r = 0; r < 8; r++) {
        if (r < nr) {
            row_scales(type, w + (size_t)r * row_bytes, kb0, nbc, &p->a[0][8 * h + r],
                       &p->m[0][8 * h + r], 16);
            continue;
        }
        for (size_t i = 0; i < nbc; i++) p->a[i][8 * h + r] = p->m[i][8 * h + r] = 0.0f;
    }
    for (size_t i = 0; i < nbc; i++) {
        const size_t b = kb0 + i;
        __m256i R[8];
        for (int r = 0; r < 8; r++) {
            if (r >= nr) {
                R[r] = _mm256_setzero_si256();
                continue;
            }
            const uint8_t *q = bq_ptr(type, w + (size_t)r * row_bytes, b);
            if (pf) _mm_prefetch((const char *)(q + 16 * row_bytes), _MM_HINT_T2);
            R[r] = wblock(type, q, b);
        }
        tr8x8_store(R, p->w[i][0] + 32 * h, 64);
    }
}

static inline __m512i bc4(const int8_t *x) { return _mm512_set1_epi32(rd_i32(x)); }

/* one token's exact block sums for the 16 rows, weights in W[8] */
#define ZSUM(W, t, b, out)                                                                      \
    do {                                                                                        \
        const int8_t *xb_ = (t)->xq + 32 * (b);                                                 \
        __m512i s0_ = _mm512_set1_epi32((t)->corr[b]), s1_ = _mm512_setzero_si512();           \
        s0_ = _mm512_dpbusd_epi32(s0_, W[0], bc4(xb_));                                         \
        s1_ = _mm512_dpbusd_epi32(s1_, W[1], bc4(xb_ + 4));                                     \
        s0_ = _mm512_dpbusd_epi32(s0_, W[2], bc4(xb_ + 8));                                     \
        s1_ = _mm512_dpbusd_epi32(s1_, W[3], bc4(xb_ + 12));                                    \
        s0_ = _mm512_dpbusd_epi32(s0_, W[4], bc4(xb_ + 16));                                    \
        s1_ = _mm512_dpbusd_epi32(s1_, W[5], bc4(xb_ + 20));                                    \
        s0_ = _mm512_dpbusd_epi32(s0_, W[6], bc4(xb_ + 24));                                    \
        s1_ = _mm512_dpbusd_epi32(s1_, W[7], bc4(xb_ + 28));                                    \
        (out) = _mm512_add_epi32(s0_, s1_);                                                     \
    } while (0)

static inline __m512 zfma(__m512i isum, __m512 av, float dx, __m512 acc)
{
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(av, _mm512_set1_ps(dx)), acc);
}

static inline __attribute__((always_inline)) void
kern16(const prep16 *p, const qx *toks, size_t ntg, size_t kb0, size_t nbc, lanes16 *acc,
       lanes16 *macc, const bool mins)
{
    size_t t = 0;
    for (; t + 4 <= ntg; t += 4) {
        const qx *t0 = &toks[t], *t1 = &toks[t + 1], *t2 = &toks[t + 2], *t3 = &toks[t + 3];
        __m512 c0 = _mm512_load_ps(acc[t].v), c1 = _mm512_load_ps(acc[t + 1].v);
        __m512 c2 = _mm512_load_ps(acc[t + 2].v), c3 = _mm512_load_ps(acc[t + 3].v);
        __m512 n0 = _mm512_load_ps(macc[t].v), n1 = _mm512_load_ps(macc[t + 1].v);
        __m512 n2 = _mm512_load_ps(macc[t + 2].v), n3 = _mm512_load_ps(macc[t + 3].v);
        for (size_t i = 0; i < nbc; i++) {
            const size_t b = kb0 + i;
            __m512i W[8], s0, s1, s2, s3;
            for (int j = 0; j < 8; j++) W[j] = _mm512_load_si512((const void *)p->w[i][j]);
            const __m512 av = _mm512_load_ps(p->a[i]);
            ZSUM(W, t0, b, s0);
            ZSUM(W, t1, b, s1);
            ZSUM(W, t2, b, s2);
            ZSUM(W, t3, b, s3);
            c0 = zfma(s0, av, t0->dx[b], c0);
            c1 = zfma(s1, av, t1->dx[b], c1);
            c2 = zfma(s2, av, t2->dx[b], c2);
            c3 = zfma(s3, av, t3->dx[b], c3);
            if (mins) {
                const __m512 mv = _mm512_load_ps(p->m[i]);
                n0 = _mm512_fmadd_ps(mv, _mm512_set1_ps(t0->ys[b]), n0);
                n1 = _mm512_fmadd_ps(mv, _mm512_set1_ps(t1->ys[b]), n1);
                n2 = _mm512_fmadd_ps(mv, _mm512_set1_ps(t2->ys[b]), n2);
                n3 = _mm512_fmadd_ps(mv, _mm512_set1_ps(t3->ys[b]), n3);
            }
        }
        _mm512_store_ps(acc[t].v, c0);
        _mm512_store_ps(acc[t + 1].v, c1);
        _mm512_store_ps(acc[t + 2].v, c2);
        _mm512_store_ps(acc[t + 3].v, c3);
        if (mins) {
            _mm512_store_ps(macc[t].v, n0);
            _mm512_store_ps(macc[t + 1].v, n1);
            _mm512_store_ps(macc[t + 2].v, n2);
            _mm512_store_ps(macc[t + 3].v, n3);
        }
    }
    for (; t < ntg; t++) {
        const qx *t0 = &toks[t];
        __m512 c0 = _mm512_load_ps(acc[t].v), n0 = _mm512_load_ps(macc[t].v);
        for (size_t i = 0; i < nbc; i++) {
            const size_t b = kb0 + i;
            __m512i W[8], s0;
            for (int j = 0; j < 8; j++) W[j] = _mm512_load_si512((const void *)p->w[i][j]);
            ZSUM(W, t0, b, s0);
            c0 = zfma(s0, _mm512_load_ps(p->a[i]), t0->dx[b], c0);
            if (mins) n0 = _mm512_fmadd_ps(_mm512_load_ps(p->m[i]), _mm512_set1_ps(t0->ys[b]), n0);
        }
        _mm512_store_ps(acc[t].v, c0);
        if (mins) _mm512_store_ps(macc[t].v, n0);
    }
}
#undef ZSUM

static inline __attribute__((always_inline)) void
mm16_n(uint32_t type, const void *w, size_t row_bytes, size_t nb, const qx *toks, size_t ntg,
       float *y, size_t ldy, size_t r0, size_t r1, const bool mins)
{
    static _Thread_local prep16 pr;
    lanes16 acc[QQ_TG], macc[QQ_TG];
    for (size_t rg = r0; rg < r1; rg += 16) {
        const int nr = (int)(r1 - rg < 16 ? r1 - rg : 16);
        memset(acc, 0, ntg * sizeof acc[0]);
        memset(macc, 0, ntg * sizeof macc[0]);
        const uint8_t *g = (const uint8_t *)w + rg * row_bytes;
        for (size_t kb0 = 0; kb0 < nb; kb0 += QQ_KZ / 32) {
            const size_t nbc = nb - kb0 < QQ_KZ / 32 ? nb - kb0 : QQ_KZ / 32;
            const bool pf = r1 - rg >= 32; /* the next group is whole: prefetch it */
            prep16_half(type, g, row_bytes, nr < 8 ? nr : 8, kb0, nbc, 0, pf, &pr);
            prep16_half(type, g + 8 * row_bytes, row_bytes, nr > 8 ? nr - 8 : 0, kb0, nbc, 1, pf,
                        &pr);
            kern16(&pr, toks, ntg, kb0, nbc, acc, macc, mins);
        }
        for (size_t t = 0; t < ntg; t++)
            for (int i = 0; i < nr; i++)
                y[t * ldy + rg + (size_t)i] = mins ? acc[t].v[i] - macc[t].v[i] : acc[t].v[i];
    }
}

static void mm16(uint32_t type, const void *w, size_t row_bytes, size_t nb, const qx *toks,
                 size_t ntg, float *y, size_t ldy, size_t r0, size_t r1)
{
    if (type == ENG_TYPE_Q4_K) mm16_n(type, w, row_bytes, nb, toks, ntg, y, ldy, r0, r1, true);
    else mm16_n(type, w, row_bytes, nb, toks, ntg, y, ldy, r0, r1, false);
}
#endif

void qq_matmul_rows(uint32_t type, const void *w, size_t row_bytes, size_t n, const float *x,
                    size_t ldx, size_t nt, float *y, size_t ldy, size_t r0, size_t r1)
{
    const size_t nb = n / 32, tb = tok_bytes(n);
    size_t tg = QQ_BUF / tb;
    if (tg > QQ_TG) tg = QQ_TG;
    const int c = type_offset(type);
    const bool halves = type == ENG_TYPE_Q6_K;
    const bool per_block = type != ENG_TYPE_Q6_K;

    qx toks[QQ_TG];
    prep pr[QQ_RB];
    lanes8 acc[QQ_TG][QQ_RB];

    for (size_t t0 = 0; t0 < nt; t0 += tg) {
        const size_t ntg = nt - t0 < tg ? nt - t0 : tg;
        /* buffer layout: corr (32-byte aligned), then xq, dx, ys */
        int32_t *corr = (int32_t *)(void *)qq_buf;
        int8_t *xq = (int8_t *)(corr + ntg * nb * 8);
        float *dx = (float *)(void *)(xq + ntg * n);
        float *ys = dx + ntg * nb;
        for (size_t t = 0; t < ntg; t++) {
            toks[t].corr = corr + t * nb * 8;
            toks[t].xq = xq + t * n;
            toks[t].dx = dx + t * nb;
            toks[t].ys = ys + t * nb;
            quantize_x(x + (t0 + t) * ldx, n, c, !per_block, &toks[t]);
        }
        if (per_block) {
#if defined(QQ_VNNI) || defined(QQ_AVX2)
            if (ntg <= QQ_MV_MAX) {
                mv8(type, (const uint8_t *)w, row_bytes, nb, toks, ntg, y + t0 * ldy, ldy, r0, r1);
                continue;
            }
#endif
#if defined(QQ_Z)
            mm16(type, w, row_bytes, nb, toks, ntg, y + t0 * ldy, ldy, r0, r1);
#else
            mm8(type, w, row_bytes, nb, toks, ntg, y + t0 * ldy, ldy, r0, r1);
#endif
            continue;
        }
        for (size_t rg = r0; rg < r1; rg += QQ_RB) {
            const int nr = (int)(r1 - rg < QQ_RB ? r1 - rg : QQ_RB);
            memset(acc, 0, ntg * sizeof acc[0]);
            for (size_t kb0 = 0; kb0 < nb; kb0 += QQ_KC / 32) {
                const size_t nbc = nb - kb0 < QQ_KC / 32 ? nb - kb0 : QQ_KC / 32;
                for (int i = 0; i < nr; i++)
                    prep_row(type, (const uint8_t *)w + (rg + (size_t)i) * row_bytes, kb0, nbc, &pr[i]);
                size_t t = 0;
#if defined(QQ_HAVE_PAIR)
                if (nr == QQ_RB)
                    for (; t + 2 <= ntg; t += 2)
                        kern_pair(pr, &toks[t], &toks[t + 1], kb0, nbc, acc[t], acc[t + 1], halves);
#endif
                for (; t < ntg; t++)
                    kern_any(pr, nr, &toks[t], kb0, nbc, acc[t], halves);
            }
            for (size_t t = 0; t < ntg; t++)
                for (int i = 0; i < nr; i++)
                    y[(t0 + t) * ldy + rg + (size_t)i] = tree8(acc[t][i].v);
        }
    }
}
