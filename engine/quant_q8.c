/* Integer kernels for Q8_0, Q4_0, Q4_K and Q6_K: activations quantized to 8 bits per
 * 32-element block, exact integer dot products per block, scaled and summed in f32 in a fixed
 * order. Contract: quant.h (eng_matmul_rows).
 *
 * Activations, per token and 32-element block b:
 *   xq[32] = round(x * 127 / amax_b) (ties to even), dx_b = amax_b / 127 rounded to binary16
 *   (as llama.cpp's Q8_0 activations; kept in f32 where the half would be subnormal or
 *   infinite), ys_b = dx_b * sum(xq_b).
 *
 * Weights, per row and 32-element block b: 32 integer weights w_int and a scale a_b:
 *   Q8_0  w_int = q,       a_b = d
 *   Q4_0  w_int = q - 8,   a_b = d
 *   Q4_K  w_int = q,       a_b = d * sc_b, and a min m_b = dmin * mn_b  (block = sub-block)
 *   Q6_K  w_int = q - 32,  a_b = d * sc[first 16], e_b = d * sc[last 16]  (two sub-blocks)
 *
 * Per (row, token), block b ascending (fma: a multiply then an add when the build has no FMA):
 *   Q8_0, Q4_0, Q4_K:  acc = fma(float(isum_b), a_b * dx_b, acc)
 *                      isum_b = sum over the block of w_int * xq  (exact)
 *   Q4_K also:         macc = fma(m_b, ys_b, macc)
 *   Q6_K:              acc = fma(float(lo_b), a_b * dx_b, acc); acc = fma(float(hi_b), e_b * dx_b, acc)
 *                      lo_b, hi_b = the exact sums over elements 0..15 and 16..31
 *   y = acc (Q4_K: acc - macc)
 *
 * Four shapes of the same arithmetic: one or two tokens (decode) read 8 rows in place (mv8;
 * Q4_0 with AVX-512: mvz_q4_0, two blocks per 512-bit vector); more tokens interleave the
 * integer weights of 8 rows (mm8) or 16 rows (mm16, AVX-512) block by block so that one
 * vpdpbusd against 4 broadcast activations serves every row of the group; 6-64 tokens of
 * Q8_0 (9-64 of Q4_0) with AVX-512 interleave the tokens instead and broadcast the weights,
 * read in place (mt16).
 * Integer sums are exact whatever the instruction set (VNNI vpdpbusd with an offset
 * correction, AVX2 maddubs with the sign trick, or plain C) and in any order, so the AVX2 and
 * AVX-512 builds agree to the bit; the portable build (no FMA) differs in the last bits.
 * Nothing depends on the other tokens, the row range or the batch size. */
#include "quant.h"
#include "quant_internal.h"
#include "quant_q8.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define QQ_VNNI 1
#if defined(__AVX512F__)
#define QQ_Z 1 /* 512-bit vectors for the batched kernel */
#endif
#elif defined(__AVX2__)
#define QQ_AVX2 1
#endif

#define QQ_TG 64        /* tokens per group (eng_matmul_rows: quantized in the thread's buffer) */
#define QQ_TGA 256      /* tokens per group of a caller's activation buffer (eng_act_*): the
                         * weights prepared once serve this many */
#define QQ_KC 2048      /* elements per K chunk (64 blocks; a multiple of 256) */
#define QQ_BUF (512 * 1024)

typedef struct { _Alignas(32) float v[8]; } lanes8;

/* what a weight type adds to the plain per-block scheme */
enum kind { K_PLAIN, K_MINS /* Q4_K */, K_HALVES /* Q6_K */ };

static inline enum kind kind_of(uint32_t type)
{
    return type == ENG_TYPE_Q4_K ? K_MINS : type == ENG_TYPE_Q6_K ? K_HALVES : K_PLAIN;
}

/* one token's quantized activations. A buffer of nt tokens (eng_act_*, or the thread's own
 * for eng_matmul_rows) holds 4 arrays, each 64-byte aligned: xq[nt][n], dx[nt][nb],
 * ys[nt][nb], cr[nt][4 nb] (the xq of successive tokens n bytes apart, as the kernels that
 * take 4 tokens at a time like it) */
typedef struct qx {
    const int8_t *xq;  /* n */
    const float *dx;   /* nb */
    const float *ys;   /* nb: dx * sum(xq) */
    const int32_t *cr; /* 4 nb: VNNI offset corrections of each block, for every type, as
                        * 4 arrays of nb: -128 sum(xq), -8 sum(xq), -32 sum(xq[0..15]),
                        * -32 sum(xq[16..31]) */
} qx;

static _Thread_local _Alignas(64) uint8_t qq_buf[QQ_BUF];

/* bytes one token needs (without alignment) */
static size_t tok_bytes(size_t n)
{
    return n + n / 32 * (4 * sizeof(int32_t) + 2 * sizeof(float));
}

typedef struct act_layout { size_t dx, ys, cr, total; } act_layout; /* offsets (xq at 0) */

static inline size_t up64(size_t v) { return (v + 63) & ~(size_t)63; }

/* the layout of nt tokens of n elements; false if the size does not fit in size_t */
static bool act_layout_of(size_t n, size_t nt, act_layout *L)
{
    const size_t nb = n / 32;
    if (nt != 0 && tok_bytes(n) > (SIZE_MAX - 4 * 64) / nt) return false;
    L->dx = up64(nt * n);
    L->ys = L->dx + up64(nt * nb * sizeof(float));
    L->cr = L->ys + up64(nt * nb * sizeof(float));
    L->total = L->cr + up64(nt * nb * 4 * sizeof(int32_t));
    return true;
}

static inline qx qx_at(const void *act, const act_layout *L, size_t n, size_t t)
{
    const uint8_t *p = (const uint8_t *)act;
    const size_t nb = n / 32;
    qx o = {(const int8_t *)p + t * n, (const float *)(const void *)(p + L->dx) + t * nb,
            (const float *)(const void *)(p + L->ys) + t * nb,
            (const int32_t *)(const void *)(p + L->cr) + t * 4 * nb};
    return o;
}

/* VNNI multiplies unsigned weights, w_int + offset (Q8_0 128, Q4_0 8, Q6_K 32, Q4_K 0),
 * corrected by -offset * sum(xq): which of the 4 arrays of qx.cr has a type's correction of
 * a block's (lo) sum; Q6_K's hi is in array 3 (Q4_K has none) */
static inline int corr_slot(uint32_t type)
{
    return type == ENG_TYPE_Q8_0 ? 0 : type == ENG_TYPE_Q4_0 ? 1 : 2;
}

/* one token's share of the thread's buffer: its bytes plus the alignment of the 4 arrays */
static size_t tok_share(size_t n) { return tok_bytes(n) + 4 * 64; }

/* a row length the 8-bit-activation kernels take (at least one token fits the buffer, so
 * eng_matmul_rows and eng_act_* agree on which calls use them) */
static bool n_ok(size_t n) { return n % 32 == 0 && n > 0 && tok_share(n) <= QQ_BUF; }

bool qq_supported(uint32_t type, size_t n)
{
    if (type != ENG_TYPE_Q8_0 && type != ENG_TYPE_Q4_0 && type != ENG_TYPE_Q4_K &&
        type != ENG_TYPE_Q6_K)
        return false;
    return n_ok(n);
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

void qq_quantize_act(const float *x, size_t n, int8_t *xq, float *dx, int32_t *bsum, int32_t *lsum)
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
        __m256i qi[4];
        for (int k = 0; k < 4; k++) {
            __m256 r = _mm256_round_ps(_mm256_mul_ps(v[k], id),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            r = _mm256_max_ps(_mm256_min_ps(r, _mm256_set1_ps(127.0f)), _mm256_set1_ps(-127.0f));
            qi[k] = _mm256_cvtps_epi32(r);
        }
        const __m256i lo8 = _mm256_add_epi32(qi[0], qi[1]);
        const __m256i sum = _mm256_add_epi32(lo8, _mm256_add_epi32(qi[2], qi[3]));
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(qi[0], qi[1]), _mm256_packs_epi32(qi[2], qi[3]));
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(void *)q, p);
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
        bsum[b] = _mm_cvtsi128_si32(s4);
        if (lsum) {
            __m128i l4 = _mm_add_epi32(_mm256_castsi256_si128(lo8), _mm256_extracti128_si256(lo8, 1));
            l4 = _mm_add_epi32(l4, _mm_shuffle_epi32(l4, 0x4E));
            l4 = _mm_add_epi32(l4, _mm_shuffle_epi32(l4, 0xB1));
            lsum[b] = _mm_cvtsi128_si32(l4);
        }
#else
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) {
            float a = fabsf(xb[j]);
            amax = a > amax ? a : amax;
        }
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        int32_t sum = 0, lo = 0;
        for (int j = 0; j < 32; j++) {
            float v = nearbyintf(xb[j] * id);
            v = v < 127.0f ? v : 127.0f; /* (NaN -> 127, as the vector code) */
            v = v > -127.0f ? v : -127.0f;
            q[j] = (int8_t)v;
            sum += q[j];
            if (j == 15) lo = sum;
        }
        bsum[b] = sum;
        if (lsum) lsum[b] = lo;
#endif
        dx[b] = act_scale(amax);
    }
}

/* token t into its place in an activation buffer */
static void quantize_tok(const float *x, size_t n, const act_layout *L, uint8_t *p, size_t t)
{
    const size_t nb = n / 32;
    int8_t *xq = (int8_t *)p + t * n;
    float *dx = (float *)(void *)(p + L->dx) + t * nb, *ys = (float *)(void *)(p + L->ys) + t * nb;
    int32_t *cr = (int32_t *)(void *)(p + L->cr) + t * 4 * nb;
    qq_quantize_act(x, n, xq, dx, cr, cr + 2 * nb); /* block and first-half sums */
    for (size_t b = 0; b < nb; b++) {
        const int32_t s = cr[b], lo = cr[2 * nb + b];
        ys[b] = dx[b] * (float)s;
        cr[b] = -128 * s;
        cr[nb + b] = -8 * s;
        cr[2 * nb + b] = -32 * lo;
        cr[3 * nb + b] = -32 * (s - lo);
    }
}

static inline int32_t rd_i32(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* ---- where block b of a row is */

/* about where block b starts (for prefetching) */
static inline size_t blk_off(uint32_t type, size_t b)
{
    switch (type) {
    case ENG_TYPE_Q8_0: return 34 * b;
    case ENG_TYPE_Q4_0: return 18 * b;
    case ENG_TYPE_Q4_K: return 18 * b;
    default: return 210 * b / 8;
    }
}

/* scales a and e (Q4_K: the min, Q6_K: the second half's scale, else 0) of blocks
 * [kb0, kb0 + nbc) of one row, to a[i * stride], e[i * stride] (K formats: kb0 and nbc are
 * multiples of 8) */
static void row_scales(uint32_t type, const uint8_t *row, size_t kb0, size_t nbc, float *a,
                       float *e, size_t stride)
{
    switch (type) {
    case ENG_TYPE_Q4_K:
        for (size_t i = 0; i < nbc; i += 8) {
            const uint8_t *sb = row + 144 * ((kb0 + i) / 8);
            const float d = qi_f16(sb), dmin = qi_f16(sb + 2);
            /* the 12 bytes of 6-bit scales and mins, four at a time (byte j of each word):
             * sc0-3 = s0-3 & 63, mn0-3 = s4-7 & 63,
             * sc4-7 = (s8-11 & 15) | (s0-3 >> 6) << 4, mn4-7 = (s8-11 >> 4) | (s4-7 >> 6) << 4 */
            const uint32_t u0 = qi_rd32(sb + 4), u1 = qi_rd32(sb + 8), u2 = qi_rd32(sb + 12);
            const uint32_t w[4] = {u0 & 0x3F3F3F3Fu, u1 & 0x3F3F3F3Fu,
                                   (u2 & 0x0F0F0F0Fu) | ((u0 >> 2) & 0x30303030u),
                                   ((u2 >> 4) & 0x0F0F0F0Fu) | ((u1 >> 2) & 0x30303030u)};
            for (size_t j = 0; j < 8; j++) {
                const uint32_t ws = w[j < 4 ? 0 : 2], wm = w[j < 4 ? 1 : 3];
                const unsigned sh = 8 * (unsigned)(j % 4);
                a[(i + j) * stride] = d * (float)((ws >> sh) & 0xFF);
                e[(i + j) * stride] = dmin * (float)((wm >> sh) & 0xFF);
            }
        }
        break;
    case ENG_TYPE_Q6_K:
        for (size_t i = 0; i < nbc; i += 8) {
            const uint8_t *sb = row + 210 * ((kb0 + i) / 8);
            const int8_t *sc = (const int8_t *)(sb + 192);
            const float d = qi_f16(sb + 208);
            for (size_t j = 0; j < 8; j++) {
                a[(i + j) * stride] = d * (float)sc[2 * j];
                e[(i + j) * stride] = d * (float)sc[2 * j + 1];
            }
        }
        break;
    default: {
        const size_t bb = type == ENG_TYPE_Q8_0 ? 34 : 18;
        for (size_t i = 0; i < nbc; i++) {
            a[i * stride] = qi_f16(row + (kb0 + i) * bb);
            e[i * stride] = 0.0f;
        }
    }
    }
}

#if defined(__AVX2__)
/* the 32 integer weights of block b of a row, as the dot products want them: VNNI u8
 * w_int + offset (see corr_slot), else s8 w_int */
static inline __m256i wblock(uint32_t type, const uint8_t *row, size_t b)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256i v;
    switch (type) {
    case ENG_TYPE_Q8_0:
        v = _mm256_loadu_si256((const __m256i *)(row + 34 * b + 2));
#if defined(QQ_VNNI)
        v = _mm256_xor_si256(v, _mm256_set1_epi8((char)0x80));
#endif
        return v;
    case ENG_TYPE_Q4_0: {
        /* the 16 bytes in both halves; the high half shifted right by 4 (64-bit lanes: each
         * byte's high nibble comes down, the bits from the next byte are masked off) */
        const __m256i h = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(row + 18 * b + 2)));
        v = _mm256_and_si256(_mm256_srlv_epi64(h, _mm256_setr_epi64x(0, 0, 4, 4)), m4);
        break;
    }
    case ENG_TYPE_Q4_K:
        /* sub-block b % 8: the low (even) or high (odd) nibbles of 32-byte group (b % 8) / 2 */
        v = _mm256_loadu_si256((const __m256i *)(row + 144 * (b / 8) + 16 + 32 * ((b % 8) / 2)));
        if (b & 1) v = _mm256_srli_epi16(v, 4);
        return _mm256_and_si256(v, m4);
    default: {
        /* Q6_K: elements 32 s .. 32 s + 31 (s = b % 8) of the super-block: in half s / 4, the
         * low bits are nibbles of ql (group s & 1, high nibble when s & 2), the 2 high bits
         * are bits 2 (s % 4) of qh */
        const size_t s = b % 8;
        const uint8_t *sb = row + 210 * (b / 8), *ql = sb + 64 * (s / 4), *qh = sb + 128 + 32 * (s / 4);
        __m256i lo = _mm256_loadu_si256((const __m256i *)(ql + 32 * (s & 1)));
        if (s & 2) lo = _mm256_srli_epi16(lo, 4);
        __m256i hi = _mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)qh),
                                      _mm_cvtsi32_si128((int)(2 * (s % 4))));
        hi = _mm256_slli_epi16(_mm256_and_si256(hi, _mm256_set1_epi8(3)), 4);
        v = _mm256_or_si256(_mm256_and_si256(lo, m4), hi);
#if !defined(QQ_VNNI)
        return _mm256_sub_epi8(v, _mm256_set1_epi8(32));
#else
        return v;
#endif
    }
    }
#if !defined(QQ_VNNI)
    v = _mm256_sub_epi8(v, _mm256_set1_epi8(8)); /* Q4_0 */
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

static inline __m256 fmadd8(__m256 a, __m256 b, __m256 c)
{
#if defined(__FMA__)
    return _mm256_fmadd_ps(a, b, c);
#else
    return _mm256_add_ps(_mm256_mul_ps(a, b), c);
#endif
}
#else
/* portable: the 32 integer weights w_int of block b of a row, as s8 */
static void wblock_c(uint32_t type, const uint8_t *row, size_t b, uint8_t out[32])
{
    switch (type) {
    case ENG_TYPE_Q8_0: memcpy(out, row + 34 * b + 2, 32); break;
    case ENG_TYPE_Q4_0: {
        const uint8_t *q = row + 18 * b + 2;
        for (int k = 0; k < 16; k++) {
            out[k] = (uint8_t)((q[k] & 0x0F) - 8);
            out[16 + k] = (uint8_t)((q[k] >> 4) - 8);
        }
        break;
    }
    case ENG_TYPE_Q4_K: {
        const uint8_t *q = row + 144 * (b / 8) + 16 + 32 * ((b % 8) / 2);
        for (int k = 0; k < 32; k++) out[k] = (uint8_t)((b & 1) ? q[k] >> 4 : q[k] & 0x0F);
        break;
    }
    default: {
        const size_t s = b % 8;
        const uint8_t *sb = row + 210 * (b / 8), *ql = sb + 64 * (s / 4) + 32 * (s & 1);
        const uint8_t *qh = sb + 128 + 32 * (s / 4);
        for (int k = 0; k < 32; k++) {
            int lo = (s & 2) ? ql[k] >> 4 : ql[k] & 0x0F, hi = (qh[k] >> (2 * (s % 4))) & 3;
            out[k] = (uint8_t)((lo | (hi << 4)) - 32);
        }
    }
    }
}
#endif

/* ---- one or two tokens (decode): 8 rows read in place.
 *
 * Per row and block: one 8-lane integer dot product (lanes 0-3: elements 0..15, lanes 4-7:
 * 16..31), then the 8 rows' lanes are summed per half into one exact integer per row
 * (horizontal adds). The scales of Q8_0/Q4_0 are gathered, those of the K formats decoded
 * per chunk. The row group two ahead is prefetched (to L2): these calls stream the matrix. */

#if defined(QQ_VNNI) || defined(QQ_AVX2)
#define QQ_MV_MAX 2

static inline __m256i bdot8(__m256i w, __m256i x)
{
#if defined(QQ_VNNI)
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, x);
#else
    __m256i p16 = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
#endif
}

/* v[r] (8 lanes each) -> lane r of *lo = the sum of v[r]'s lanes 0-3, of *hi: lanes 4-7 */
static inline void hsum8x8(const __m256i *v, __m256i *lo, __m256i *hi)
{
    __m256i h01 = _mm256_hadd_epi32(v[0], v[1]), h23 = _mm256_hadd_epi32(v[2], v[3]);
    __m256i h45 = _mm256_hadd_epi32(v[4], v[5]), h67 = _mm256_hadd_epi32(v[6], v[7]);
    __m256i a = _mm256_hadd_epi32(h01, h23), b = _mm256_hadd_epi32(h45, h67);
    *lo = _mm256_permute2x128_si256(a, b, 0x20);
    *hi = _mm256_permute2x128_si256(a, b, 0x31);
}

/* the 8 rows' block scales (binary16 at the start of each Q8_0/Q4_0 block) as f32 */
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

/* one token's block: the epilogue of every kind on the rows' lo/hi sums */
static inline __m256 mv_acc(__m256i lo, __m256i hi, const qx *t, size_t nb, size_t b, __m256 av,
                            __m256 ev, const int slot, const enum kind k, __m256 acc, __m256 *macc)
{
    const __m256 dx = _mm256_set1_ps(t->dx[b]);
#if defined(QQ_VNNI)
    if (k != K_MINS) lo = _mm256_add_epi32(lo, _mm256_set1_epi32(t->cr[(size_t)slot * nb + b]));
    if (k == K_HALVES) hi = _mm256_add_epi32(hi, _mm256_set1_epi32(t->cr[3 * nb + b]));
#else
    (void)slot;
#endif
    if (k == K_HALVES) {
        acc = fmadd8(_mm256_cvtepi32_ps(lo), _mm256_mul_ps(av, dx), acc);
        return fmadd8(_mm256_cvtepi32_ps(hi), _mm256_mul_ps(ev, dx), acc);
    }
    acc = fmadd8(_mm256_cvtepi32_ps(_mm256_add_epi32(lo, hi)), _mm256_mul_ps(av, dx), acc);
    if (k == K_MINS) *macc = fmadd8(ev, _mm256_set1_ps(t->ys[b]), *macc);
    return acc;
}

/* the 8 rows of the group at rg (rows past r1 repeat the last one) and their byte offsets
 * from the first; returns how many are real */
static inline int mv_rows(const uint8_t *w, size_t row_bytes, size_t rg, size_t r1,
                          const uint8_t *rows[8], int32_t off[8])
{
    const int nr = (int)(r1 - rg < 8 ? r1 - rg : 8);
    for (int r = 0; r < 8; r++) {
        const int rr = r < nr ? r : nr - 1;
        rows[r] = w + (rg + (size_t)rr) * row_bytes;
        off[r] = (int32_t)((size_t)rr * row_bytes);
    }
    return nr;
}

/* the group's results: lane r of a0 (token 0) and a1 (token 1) for the nr real rows */
static inline void mv_store(__m256 a0, __m256 a1, size_t ntg, int nr, float *y, size_t ldy, size_t rg)
{
    lanes8 l0, l1;
    _mm256_store_ps(l0.v, a0);
    _mm256_store_ps(l1.v, a1);
    for (int r = 0; r < nr; r++) {
        y[rg + (size_t)r] = l0.v[r];
        if (ntg > 1) y[ldy + rg + (size_t)r] = l1.v[r];
    }
}

static inline __attribute__((always_inline)) void
mv8_n(uint32_t type, const enum kind k, const uint8_t *w, size_t row_bytes, size_t nb,
      const qx *toks, const size_t ntg, float *y, size_t ldy, size_t r0, size_t r1)
{
    const bool direct = type == ENG_TYPE_Q8_0 || type == ENG_TYPE_Q4_0; /* gathered scales */
    const int slot = corr_slot(type);
    const size_t bb = type == ENG_TYPE_Q8_0 ? 34 : 18;
    _Alignas(32) float ta[QQ_KC / 32][8], te[QQ_KC / 32][8]; /* K formats: decoded scales */
    for (size_t rg = r0; rg < r1; rg += 8) {
        const uint8_t *rows[8];
        int32_t off[8];
        const int nr = mv_rows(w, row_bytes, rg, r1, rows, off);
        const __m256i idx = _mm256_loadu_si256((const __m256i *)(const void *)off);
        const bool pf = r1 - rg >= 24; /* the group two ahead is part of the range */
        const size_t pfd = 16 * row_bytes;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        __m256 m0 = _mm256_setzero_ps(), m1 = _mm256_setzero_ps();
        for (size_t kb0 = 0; kb0 < nb; kb0 += QQ_KC / 32) {
            const size_t nbc = nb - kb0 < QQ_KC / 32 ? nb - kb0 : QQ_KC / 32;
            if (!direct)
                for (int r = 0; r < 8; r++) row_scales(type, rows[r], kb0, nbc, &ta[0][r], &te[0][r], 8);
            for (size_t i = 0; i < nbc; i++) {
                const size_t b = kb0 + i;
                __m256i v0[8], v1[8];
                const __m256i x0 = _mm256_loadu_si256((const __m256i *)(toks[0].xq + 32 * b));
                const __m256i x1 =
                    ntg > 1 ? _mm256_loadu_si256((const __m256i *)(toks[1].xq + 32 * b)) : x0;
#pragma GCC unroll 8
                for (int r = 0; r < 8; r++) {
                    if (pf) _mm_prefetch((const char *)(rows[r] + pfd + blk_off(type, b)), _MM_HINT_T2);
                    const __m256i wv = wblock(type, rows[r], b);
                    v0[r] = bdot8(wv, x0);
                    v1[r] = ntg > 1 ? bdot8(wv, x1) : v0[r];
                }
                const __m256 av = direct ? wscales8(rows[0] + b * bb, idx) : _mm256_load_ps(ta[i]);
                const __m256 ev = direct ? _mm256_setzero_ps() : _mm256_load_ps(te[i]);
                __m256i lo, hi;
                hsum8x8(v0, &lo, &hi);
                a0 = mv_acc(lo, hi, &toks[0], nb, b, av, ev, slot, k, a0, &m0);
                if (ntg > 1) {
                    hsum8x8(v1, &lo, &hi);
                    a1 = mv_acc(lo, hi, &toks[1], nb, b, av, ev, slot, k, a1, &m1);
                }
            }
        }
        if (k == K_MINS) {
            a0 = _mm256_sub_ps(a0, m0);
            a1 = _mm256_sub_ps(a1, m1);
        }
        mv_store(a0, a1, ntg, nr, y, ldy, rg);
    }
}

#if defined(QQ_Z)
/* Q4_0 with 512-bit vectors: blocks b and b + 1 of a row in one vector (b in the low half,
 * each as wblock gives it), so the nibble unpacking, the dot products, the lanes' reduction
 * and the scale gather are shared by two blocks. The block sums and the fma per block, in
 * block order, are mv8's: the bits do not change. An odd last block goes through mv8's
 * 256-bit step. (The same form for Q8_0 was 2-6% slower than mv8: bench/RESULTS.md.) */
static inline __m512i wpair_q4_0(const uint8_t *row, size_t b)
{
    /* each block's 16 bytes in both quarters of its half, the upper quarter shifted down by
     * 4 (wblock's unpacking) */
    const uint8_t *p = row + 18 * b + 2;
    const __m512i h = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p))),
        _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(p + 18))), 1);
    return _mm512_and_si512(_mm512_srlv_epi64(h, _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4)),
                            _mm512_set1_epi8(0x0F));
}

/* v[r]: row r's dot lanes of two blocks (8 each) -> lane r of the low half: row r's block
 * sum of the first block, of the high half: of the second (exact integer sums) */
static inline __m512i hsum8x16(const __m512i *v)
{
    __m512i t[4];
    for (int i = 0; i < 4; i++) /* per 128-bit chunk: rows 2i, 2i + 1, lanes 0+2 and 1+3 */
        t[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]),
                                _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]));
    /* per chunk, the 4 lanes' sum of rows 0-3 (u0) and 4-7 (u1); chunks 0-1: the first
     * block's halves, 2-3: the second's */
    const __m512i u0 = _mm512_add_epi32(_mm512_unpacklo_epi64(t[0], t[1]), _mm512_unpackhi_epi64(t[0], t[1]));
    const __m512i u1 = _mm512_add_epi32(_mm512_unpacklo_epi64(t[2], t[3]), _mm512_unpackhi_epi64(t[2], t[3]));
    const __m512i s = _mm512_add_epi32(_mm512_shuffle_i32x4(u0, u1, _MM_SHUFFLE(2, 0, 2, 0)),
                                       _mm512_shuffle_i32x4(u0, u1, _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_shuffle_i32x4(s, s, _MM_SHUFFLE(3, 1, 2, 0)); /* rows 0-3, 4-7 of each block */
}

/* one token's fma for block b (sums: its 8 rows' block sums), as mv_acc does for K_PLAIN */
static inline __m256 mvz_acc(__m256i sums, const qx *t, size_t nb, size_t b, __m256 av, int slot,
                             __m256 acc)
{
    sums = _mm256_add_epi32(sums, _mm256_set1_epi32(t->cr[(size_t)slot * nb + b]));
    return fmadd8(_mm256_cvtepi32_ps(sums), _mm256_mul_ps(av, _mm256_set1_ps(t->dx[b])), acc);
}

static inline __attribute__((always_inline)) void
mvz_q4_0(const uint8_t *w, size_t row_bytes, size_t nb, const qx *toks, const size_t ntg,
         float *y, size_t ldy, size_t r0, size_t r1)
{
    const uint32_t type = ENG_TYPE_Q4_0;
    const int slot = corr_slot(type);
    const size_t bb = 18;
    for (size_t rg = r0; rg < r1; rg += 8) {
        const uint8_t *rows[8];
        int32_t off[16]; /* the rows' scales of block b, then of block b + 1 */
        const int nr = mv_rows(w, row_bytes, rg, r1, rows, off);
        for (int r = 0; r < 8; r++) off[r + 8] = off[r] + (int32_t)bb;
        const __m512i idx = _mm512_loadu_si512((const void *)off);
        const bool pf = r1 - rg >= 24; /* the group two ahead is part of the range */
        const size_t pfd = 16 * row_bytes;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        size_t b = 0;
        for (; b + 2 <= nb; b += 2) {
            __m512i v0[8], v1[8];
            const __m512i x0 = _mm512_loadu_si512((const void *)(toks[0].xq + 32 * b));
            const __m512i x1 = ntg > 1 ? _mm512_loadu_si512((const void *)(toks[1].xq + 32 * b)) : x0;
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++) {
                if (pf) _mm_prefetch((const char *)(rows[r] + pfd + bb * b), _MM_HINT_T2);
                const __m512i wv = wpair_q4_0(rows[r], b);
                v0[r] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv, x0);
                if (ntg > 1) v1[r] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv, x1);
            }
            const __m512 av = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(
                _mm512_i32gather_epi32(idx, (const void *)(rows[0] + b * bb), 1)));
            const __m256 av0 = _mm512_castps512_ps256(av), av1 = _mm512_extractf32x8_ps(av, 1);
            const __m512i s0 = hsum8x16(v0);
            a0 = mvz_acc(_mm512_castsi512_si256(s0), &toks[0], nb, b, av0, slot, a0);
            a0 = mvz_acc(_mm512_extracti64x4_epi64(s0, 1), &toks[0], nb, b + 1, av1, slot, a0);
            if (ntg > 1) {
                const __m512i s1 = hsum8x16(v1);
                a1 = mvz_acc(_mm512_castsi512_si256(s1), &toks[1], nb, b, av0, slot, a1);
                a1 = mvz_acc(_mm512_extracti64x4_epi64(s1, 1), &toks[1], nb, b + 1, av1, slot, a1);
            }
        }
        if (b < nb) { /* the odd last block: mv8's step */
            __m256i v0[8], v1[8];
            const __m256i x0 = _mm256_loadu_si256((const __m256i *)(toks[0].xq + 32 * b));
            const __m256i x1 = ntg > 1 ? _mm256_loadu_si256((const __m256i *)(toks[1].xq + 32 * b)) : x0;
            for (int r = 0; r < 8; r++) {
                const __m256i wv = wblock(type, rows[r], b);
                v0[r] = bdot8(wv, x0);
                v1[r] = ntg > 1 ? bdot8(wv, x1) : v0[r];
            }
            const __m256 av = wscales8(rows[0] + b * bb, _mm512_castsi512_si256(idx));
            __m256i lo, hi;
            hsum8x8(v0, &lo, &hi);
            a0 = mvz_acc(_mm256_add_epi32(lo, hi), &toks[0], nb, b, av, slot, a0);
            if (ntg > 1) {
                hsum8x8(v1, &lo, &hi);
                a1 = mvz_acc(_mm256_add_epi32(lo, hi), &toks[1], nb, b, av, slot, a1);
            }
        }
        mv_store(a0, a1, ntg, nr, y, ldy, rg);
    }
}
#endif

__attribute__((noinline)) static void mv8(uint32_t type, const uint8_t *w, size_t row_bytes,
                                          size_t nb, const qx *toks, size_t ntg, float *y,
                                          size_t ldy, size_t r0, size_t r1)
{
#define MV8(T, K)                                                                               \
    do {                                                                                        \
        if (ntg == 1) mv8_n(T, K, w, row_bytes, nb, toks, 1, y, ldy, r0, r1);                   \
        else mv8_n(T, K, w, row_bytes, nb, toks, 2, y, ldy, r0, r1);                            \
    } while (0)
    switch (type) {
    case ENG_TYPE_Q8_0: MV8(ENG_TYPE_Q8_0, K_PLAIN); break;
#if defined(QQ_Z)
    case ENG_TYPE_Q4_0:
        if (ntg == 1) mvz_q4_0(w, row_bytes, nb, toks, 1, y, ldy, r0, r1);
        else mvz_q4_0(w, row_bytes, nb, toks, 2, y, ldy, r0, r1);
        break;
#else
    case ENG_TYPE_Q4_0: MV8(ENG_TYPE_Q4_0, K_PLAIN); break;
#endif
    case ENG_TYPE_Q4_K: MV8(ENG_TYPE_Q4_K, K_MINS); break;
    default: MV8(ENG_TYPE_Q6_K, K_HALVES); break;
    }
#undef MV8
}
#endif

/* ---- three tokens or more without AVX-512 (and any count in the portable build): 8 rows
 * interleaved. The weights of 8 rows are prepared block by block as 8 vectors: vector j
 * holds, for each row r, the 4 integer weights 4j..4j+3 of that row's block. One vpdpbusd
 * against the token's 4 activations 4j..4j+3 (broadcast) adds those 4 products to each row's
 * lane; j = 0..3 give every row's lo sum, j = 4..7 its hi sum. */

#if !defined(QQ_Z)
typedef struct prep8 {
    _Alignas(32) uint8_t w[QQ_KC / 32][8][32]; /* [block][j][row * 4 + k] */
    _Alignas(32) float a[QQ_KC / 32][8];       /* [block][row] */
    _Alignas(32) float e[QQ_KC / 32][8];       /* [block][row] (K formats) */
} prep8;

static void prep8_fill(uint32_t type, const uint8_t *w, size_t row_bytes, int nr, size_t kb0,
                       size_t nbc, prep8 *p)
{
    for (int r = 0; r < 8; r++) {
        if (r < nr) {
            row_scales(type, w + (size_t)r * row_bytes, kb0, nbc, &p->a[0][r], &p->e[0][r], 8);
            continue;
        }
        for (size_t i = 0; i < nbc; i++) p->a[i][r] = p->e[i][r] = 0.0f;
    }
    for (size_t i = 0; i < nbc; i++) {
        const size_t b = kb0 + i;
#if defined(__AVX2__)
        __m256i R[8];
        for (int r = 0; r < 8; r++)
            R[r] = r < nr ? wblock(type, w + (size_t)r * row_bytes, b) : _mm256_setzero_si256();
        tr8x8_store(R, p->w[i][0], 32);
#else
        uint8_t blk[8][32];
        for (int r = 0; r < 8; r++) {
            if (r < nr) wblock_c(type, w + (size_t)r * row_bytes, b, blk[r]);
            else memset(blk[r], 0, 32);
        }
        for (int j = 0; j < 8; j++)
            for (int r = 0; r < 8; r++)
                for (int q = 0; q < 4; q++) p->w[i][j][4 * r + q] = blk[r][4 * j + q];
#endif
    }
}

#if defined(__AVX2__)
/* the 8 rows' exact lo and hi sums of one block of one token */
static inline void isum8(const prep8 *p, size_t i, const int8_t *xb, const int32_t *cr,
                         size_t nb, int slot, const enum kind k, __m256i *lo, __m256i *hi)
{
#if defined(QQ_VNNI)
    __m256i s0 = k == K_MINS ? _mm256_setzero_si256() : _mm256_set1_epi32(cr[(size_t)slot * nb]);
    __m256i s1 = k == K_HALVES ? _mm256_set1_epi32(cr[3 * nb]) : _mm256_setzero_si256();
    for (int j = 0; j < 4; j++) {
        s0 = _mm256_dpbusd_epi32(s0, _mm256_load_si256((const __m256i *)p->w[i][j]),
                                 _mm256_set1_epi32(rd_i32(xb + 4 * j)));
        s1 = _mm256_dpbusd_epi32(s1, _mm256_load_si256((const __m256i *)p->w[i][j + 4]),
                                 _mm256_set1_epi32(rd_i32(xb + 4 * j + 16)));
    }
#else
    (void)cr;
    (void)nb;
    (void)slot;
    (void)k;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
    for (int j = 0; j < 4; j++) {
        __m256i w0 = _mm256_load_si256((const __m256i *)p->w[i][j]);
        __m256i w1 = _mm256_load_si256((const __m256i *)p->w[i][j + 4]);
        __m256i x0 = _mm256_set1_epi32(rd_i32(xb + 4 * j)), x1 = _mm256_set1_epi32(rd_i32(xb + 4 * j + 16));
        s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w0), _mm256_sign_epi8(x0, w0)), ones));
        s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w1), _mm256_sign_epi8(x1, w1)), ones));
    }
#endif
    *lo = s0;
    *hi = s1;
}

static inline __attribute__((always_inline)) void
kern8(const prep8 *p, const qx *t, size_t nb, size_t kb0, size_t nbc, lanes8 *acc,
      lanes8 *macc, const int slot, const enum kind k)
{
    __m256 a0 = _mm256_load_ps(acc->v), m0 = _mm256_load_ps(macc->v);
    for (size_t i = 0; i < nbc; i++) {
        const size_t b = kb0 + i;
        __m256i lo, hi;
        isum8(p, i, t->xq + 32 * b, t->cr + b, nb, slot, k, &lo, &hi);
        const __m256 dx = _mm256_set1_ps(t->dx[b]), av = _mm256_load_ps(p->a[i]);
        if (k == K_HALVES) {
            a0 = fmadd8(_mm256_cvtepi32_ps(lo), _mm256_mul_ps(av, dx), a0);
            a0 = fmadd8(_mm256_cvtepi32_ps(hi), _mm256_mul_ps(_mm256_load_ps(p->e[i]), dx), a0);
            continue;
        }
        a0 = fmadd8(_mm256_cvtepi32_ps(_mm256_add_epi32(lo, hi)), _mm256_mul_ps(av, dx), a0);
        if (k == K_MINS) m0 = fmadd8(_mm256_load_ps(p->e[i]), _mm256_set1_ps(t->ys[b]), m0);
    }
    _mm256_store_ps(acc->v, a0);
    _mm256_store_ps(macc->v, m0);
}
#else
static inline void kern8(const prep8 *p, const qx *t, size_t nb, size_t kb0, size_t nbc,
                         lanes8 *acc, lanes8 *macc, const int slot, const enum kind k)
{
    (void)slot;
    (void)nb;
    for (int r = 0; r < 8; r++) {
        float a = acc->v[r], ma = macc->v[r];
        for (size_t i = 0; i < nbc; i++) {
            const size_t b = kb0 + i;
            const int8_t *xb = t->xq + 32 * b;
            int32_t lo = 0, hi = 0;
            for (int j = 0; j < 4; j++)
                for (int q = 0; q < 4; q++) {
                    lo += (int8_t)p->w[i][j][4 * r + q] * xb[4 * j + q];
                    hi += (int8_t)p->w[i][j + 4][4 * r + q] * xb[4 * j + 16 + q];
                }
            const float dx = t->dx[b];
            if (k == K_HALVES) {
                float s0 = p->a[i][r] * dx, p0 = (float)lo * s0;
                a = a + p0;
                float s1 = p->e[i][r] * dx, p1 = (float)hi * s1;
                a = a + p1;
                continue;
            }
            float sc = p->a[i][r] * dx, prod = (float)(lo + hi) * sc;
            a = a + prod;
            if (k == K_MINS) {
                float pm = p->e[i][r] * t->ys[b];
                ma = ma + pm;
            }
        }
        acc->v[r] = a;
        macc->v[r] = ma;
    }
}
#endif

static inline __attribute__((always_inline)) void
mm8_n(uint32_t type, const enum kind k, const void *w, size_t row_bytes, size_t nb,
      const qx *toks, size_t ntg, float *y, size_t ldy, size_t r0, size_t r1)
{
    static _Thread_local prep8 pr;
    lanes8 acc[QQ_TGA], macc[QQ_TGA];
    for (size_t rg = r0; rg < r1; rg += 8) {
        const int nr = (int)(r1 - rg < 8 ? r1 - rg : 8);
        memset(acc, 0, ntg * sizeof acc[0]);
        memset(macc, 0, ntg * sizeof macc[0]);
        for (size_t kb0 = 0; kb0 < nb; kb0 += QQ_KC / 32) {
            const size_t nbc = nb - kb0 < QQ_KC / 32 ? nb - kb0 : QQ_KC / 32;
            prep8_fill(type, (const uint8_t *)w + rg * row_bytes, row_bytes, nr, kb0, nbc, &pr);
            for (size_t t = 0; t < ntg; t++)
                kern8(&pr, &toks[t], nb, kb0, nbc, &acc[t], &macc[t], corr_slot(type), k);
        }
        for (size_t t = 0; t < ntg; t++)
            for (int i = 0; i < nr; i++)
                y[t * ldy + rg + (size_t)i] = k == K_MINS ? acc[t].v[i] - macc[t].v[i] : acc[t].v[i];
    }
}

static void mm8(uint32_t type, const void *w, size_t row_bytes, size_t nb, const qx *toks,
                size_t ntg, float *y, size_t ldy, size_t r0, size_t r1)
{
    switch (kind_of(type)) {
    case K_PLAIN: mm8_n(type, K_PLAIN, w, row_bytes, nb, toks, ntg, y, ldy, r0, r1); break;
    case K_MINS: mm8_n(type, K_MINS, w, row_bytes, nb, toks, ntg, y, ldy, r0, r1); break;
    case K_HALVES: mm8_n(type, K_HALVES, w, row_bytes, nb, toks, ntg, y, ldy, r0, r1); break;
    }
}
#endif /* !QQ_Z */

/* ---- three tokens or more, AVX-512: 16 rows interleaved in 512-bit vectors (the mm8 scheme
 * for rows 0-7 and 8-15 in the two halves of each vector), the 8 weight vectors of a block
 * kept in registers for 4 tokens at a time. */

#if defined(QQ_Z)
#define QQ_KZ 1024 /* elements per K chunk: 32 blocks, 16 KiB of prepared weights */

typedef struct prep16 {
    _Alignas(64) uint8_t w[QQ_KZ / 32][8][64]; /* [block][j][row * 4 + k] */
    _Alignas(64) float a[QQ_KZ / 32][16];      /* [block][row] */
    _Alignas(64) float e[QQ_KZ / 32][16];      /* [block][row] (K formats) */
} prep16;

typedef struct { _Alignas(64) float v[16]; } lanes16;

/* The first two steps of a transpose of 32-bit elements, per group of 4 vectors (n a
 * multiple of 4): out[g + m], 128-bit lane L = dword 4L + m of in[g], in[g + 1], in[g + 2],
 * in[g + 3] (a 4 x 4 transpose within each 128-bit lane) */
static inline __attribute__((always_inline)) void tr4x4_lanes(const __m512i *in, __m512i *out, const int n)
{
    for (int g = 0; g < n; g += 4) {
        const __m512i a0 = _mm512_unpacklo_epi32(in[g], in[g + 1]);
        const __m512i a1 = _mm512_unpackhi_epi32(in[g], in[g + 1]);
        const __m512i a2 = _mm512_unpacklo_epi32(in[g + 2], in[g + 3]);
        const __m512i a3 = _mm512_unpackhi_epi32(in[g + 2], in[g + 3]);
        out[g] = _mm512_unpacklo_epi64(a0, a2);
        out[g + 1] = _mm512_unpackhi_epi64(a0, a2);
        out[g + 2] = _mm512_unpacklo_epi64(a1, a3);
        out[g + 3] = _mm512_unpackhi_epi64(a1, a3);
    }
}

/* rows [0, nr) of a group of 16 (nr <= 16), blocks [kb0, kb0 + nbc) -> prep16 (rows past nr
 * are zero); with pf, the same blocks of the next group's rows are prefetched. Rows r and
 * r + 8 share a 512-bit vector through the 8 x 8 transpose of 4-byte groups. */
static inline __attribute__((always_inline)) void
prep16_fill_t(const uint32_t type, const uint8_t *w, size_t row_bytes, int nr, size_t kb0,
              size_t nbc, bool pf, prep16 *p)
{
    if (type == ENG_TYPE_Q8_0 || type == ENG_TYPE_Q4_0) {
        /* the 16 rows' binary16 scales of a block, gathered and converted at once */
        const size_t bb = type == ENG_TYPE_Q8_0 ? 34 : 18;
        int32_t off[16];
        for (int r = 0; r < 16; r++) off[r] = (int32_t)((size_t)(r < nr ? r : 0) * row_bytes);
        const __m512i idx = _mm512_loadu_si512((const void *)off);
        const __mmask16 live = (__mmask16)(nr >= 16 ? 0xFFFF : (1u << nr) - 1);
        for (size_t i = 0; i < nbc; i++) {
            __m512i g = _mm512_i32gather_epi32(idx, (const void *)(w + (kb0 + i) * bb), 1);
            __m512 a = _mm512_maskz_mov_ps(live, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g)));
            _mm512_store_ps(p->a[i], a); /* (e is not read for these types) */
        }
    } else {
        for (int r = 0; r < 16; r++) {
            if (r < nr) {
                row_scales(type, w + (size_t)r * row_bytes, kb0, nbc, &p->a[0][r], &p->e[0][r], 16);
                continue;
            }
            for (size_t i = 0; i < nbc; i++) p->a[i][r] = p->e[i][r] = 0.0f;
        }
    }
    const __m512i lo_idx = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
    const __m512i hi_idx = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    for (size_t i = 0; i < nbc; i++) {
        const size_t b = kb0 + i;
        __m512i R[8], u[8];
        for (int r = 0; r < 8; r++) {
            const uint8_t *row0 = w + (size_t)r * row_bytes, *row1 = row0 + 8 * row_bytes;
            if (pf) {
                _mm_prefetch((const char *)(row0 + 16 * row_bytes + blk_off(type, b)), _MM_HINT_T2);
                _mm_prefetch((const char *)(row1 + 16 * row_bytes + blk_off(type, b)), _MM_HINT_T2);
            }
            const __m256i v0 = r < nr ? wblock(type, row0, b) : _mm256_setzero_si256();
            const __m256i v1 = r + 8 < nr ? wblock(type, row1, b) : _mm256_setzero_si256();
            R[r] = _mm512_inserti64x4(_mm512_castsi256_si512(v0), v1, 1);
        }
        tr4x4_lanes(R, u, 8);
        /* per 256-bit half, vector j = 128-bit lane 0 of u[j] and of u[j + 4], vector j + 4 =
         * their lanes 1 */
        for (int j = 0; j < 4; j++) {
            _mm512_store_si512((void *)p->w[i][j], _mm512_permutex2var_epi64(u[j], lo_idx, u[j + 4]));
            _mm512_store_si512((void *)p->w[i][j + 4], _mm512_permutex2var_epi64(u[j], hi_idx, u[j + 4]));
        }
    }
}

static void prep16_fill(uint32_t type, const uint8_t *w, size_t row_bytes, int nr, size_t kb0,
                        size_t nbc, bool pf, prep16 *p)
{
    switch (type) {
    case ENG_TYPE_Q8_0: prep16_fill_t(ENG_TYPE_Q8_0, w, row_bytes, nr, kb0, nbc, pf, p); break;
    case ENG_TYPE_Q4_0: prep16_fill_t(ENG_TYPE_Q4_0, w, row_bytes, nr, kb0, nbc, pf, p); break;
    case ENG_TYPE_Q4_K: prep16_fill_t(ENG_TYPE_Q4_K, w, row_bytes, nr, kb0, nbc, pf, p); break;
    default: prep16_fill_t(ENG_TYPE_Q6_K, w, row_bytes, nr, kb0, nbc, pf, p); break;
    }
}

static inline __m512i bc4(const int8_t *x) { return _mm512_set1_epi32(rd_i32(x)); }

/* one token's exact lo and hi block sums for the 16 rows, weights in W[8] */
#define ZSUM(W, t, b, lo, hi)                                                                   \
    do {                                                                                        \
        const int8_t *xb_ = (t)->xq + 32 * (b);                                                 \
        __m512i s0_ = k == K_MINS ? _mm512_setzero_si512()                                      \
                                  : _mm512_set1_epi32((t)->cr[(size_t)slot * nb + (b)]);         \
        __m512i s1_ = k == K_HALVES ? _mm512_set1_epi32((t)->cr[3 * nb + (b)])                  \
                                    : _mm512_setzero_si512();                                   \
        s0_ = _mm512_dpbusd_epi32(s0_, W[0], bc4(xb_));                                         \
        s1_ = _mm512_dpbusd_epi32(s1_, W[4], bc4(xb_ + 16));                                    \
        s0_ = _mm512_dpbusd_epi32(s0_, W[1], bc4(xb_ + 4));                                     \
        s1_ = _mm512_dpbusd_epi32(s1_, W[5], bc4(xb_ + 20));                                    \
        s0_ = _mm512_dpbusd_epi32(s0_, W[2], bc4(xb_ + 8));                                     \
        s1_ = _mm512_dpbusd_epi32(s1_, W[6], bc4(xb_ + 24));                                    \
        s0_ = _mm512_dpbusd_epi32(s0_, W[3], bc4(xb_ + 12));                                    \
        s1_ = _mm512_dpbusd_epi32(s1_, W[7], bc4(xb_ + 28));                                    \
        (lo) = s0_;                                                                             \
        (hi) = s1_;                                                                             \
    } while (0)

/* the epilogue of one token's block */
static inline __m512 zacc(__m512i lo, __m512i hi, const qx *t, size_t b, const prep16 *p,
                          size_t i, __m512 av, const enum kind k, __m512 acc, __m512 *macc)
{
    const __m512 dx = _mm512_set1_ps(t->dx[b]);
    if (k == K_HALVES) {
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lo), _mm512_mul_ps(av, dx), acc);
        return _mm512_fmadd_ps(_mm512_cvtepi32_ps(hi), _mm512_mul_ps(_mm512_load_ps(p->e[i]), dx), acc);
    }
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(lo, hi)), _mm512_mul_ps(av, dx), acc);
    if (k == K_MINS) *macc = _mm512_fmadd_ps(_mm512_load_ps(p->e[i]), _mm512_set1_ps(t->ys[b]), *macc);
    return acc;
}

static inline __attribute__((always_inline)) void
kern16(const prep16 *p, const qx *toks, size_t ntg, size_t nb, size_t kb0, size_t nbc,
       lanes16 *acc, lanes16 *macc, const int slot, const enum kind k)
{
    size_t t = 0;
    for (; t + 4 <= ntg; t += 4) {
        const qx *t0 = &toks[t], *t1 = &toks[t + 1], *t2 = &toks[t + 2], *t3 = &toks[t + 3];
        __m512 c0 = _mm512_load_ps(acc[t].v), c1 = _mm512_load_ps(acc[t + 1].v);
        __m512 c2 = _mm512_load_ps(acc[t + 2].v), c3 = _mm512_load_ps(acc[t + 3].v);
        __m512 n0 = _mm512_setzero_ps(), n1 = n0, n2 = n0, n3 = n0;
        if (k == K_MINS) {
            n0 = _mm512_load_ps(macc[t].v);
            n1 = _mm512_load_ps(macc[t + 1].v);
            n2 = _mm512_load_ps(macc[t + 2].v);
            n3 = _mm512_load_ps(macc[t + 3].v);
        }
        for (size_t i = 0; i < nbc; i++) {
            const size_t b = kb0 + i;
            __m512i W[8], l0, h0, l1, h1, l2, h2, l3, h3;
            for (int j = 0; j < 8; j++) W[j] = _mm512_load_si512((const void *)p->w[i][j]);
            const __m512 av = _mm512_load_ps(p->a[i]);
            ZSUM(W, t0, b, l0, h0);
            ZSUM(W, t1, b, l1, h1);
            ZSUM(W, t2, b, l2, h2);
            ZSUM(W, t3, b, l3, h3);
            c0 = zacc(l0, h0, t0, b, p, i, av, k, c0, &n0);
            c1 = zacc(l1, h1, t1, b, p, i, av, k, c1, &n1);
            c2 = zacc(l2, h2, t2, b, p, i, av, k, c2, &n2);
            c3 = zacc(l3, h3, t3, b, p, i, av, k, c3, &n3);
        }
        _mm512_store_ps(acc[t].v, c0);
        _mm512_store_ps(acc[t + 1].v, c1);
        _mm512_store_ps(acc[t + 2].v, c2);
        _mm512_store_ps(acc[t + 3].v, c3);
        if (k == K_MINS) {
            _mm512_store_ps(macc[t].v, n0);
            _mm512_store_ps(macc[t + 1].v, n1);
            _mm512_store_ps(macc[t + 2].v, n2);
            _mm512_store_ps(macc[t + 3].v, n3);
        }
    }
    for (; t < ntg; t++) {
        const qx *t0 = &toks[t];
        __m512 c0 = _mm512_load_ps(acc[t].v);
        __m512 n0 = k == K_MINS ? _mm512_load_ps(macc[t].v) : _mm512_setzero_ps();
        for (size_t i = 0; i < nbc; i++) {
            const size_t b = kb0 + i;
            __m512i W[8], l0, h0;
            for (int j = 0; j < 8; j++) W[j] = _mm512_load_si512((const void *)p->w[i][j]);
            ZSUM(W, t0, b, l0, h0);
            c0 = zacc(l0, h0, t0, b, p, i, _mm512_load_ps(p->a[i]), k, c0, &n0);
        }
        _mm512_store_ps(acc[t].v, c0);
        if (k == K_MINS) _mm512_store_ps(macc[t].v, n0);
    }
}
#undef ZSUM

static inline __attribute__((always_inline)) void
mm16_n(uint32_t type, const enum kind k, const void *w, size_t row_bytes, size_t nb,
       const qx *toks, size_t ntg, float *y, size_t ldy, size_t r0, size_t r1)
{
    static _Thread_local prep16 pr;
    lanes16 acc[QQ_TGA], macc[QQ_TGA];
    for (size_t rg = r0; rg < r1; rg += 16) {
        const int nr = (int)(r1 - rg < 16 ? r1 - rg : 16);
        memset(acc, 0, ntg * sizeof acc[0]);
        if (k == K_MINS) memset(macc, 0, ntg * sizeof macc[0]);
        const uint8_t *g = (const uint8_t *)w + rg * row_bytes;
        for (size_t kb0 = 0; kb0 < nb; kb0 += QQ_KZ / 32) {
            const size_t nbc = nb - kb0 < QQ_KZ / 32 ? nb - kb0 : QQ_KZ / 32;
            const bool pf = r1 - rg >= 32; /* the next group is whole: prefetch it */
            prep16_fill(type, g, row_bytes, nr, kb0, nbc, pf, &pr);
            kern16(&pr, toks, ntg, nb, kb0, nbc, acc, macc, corr_slot(type), k);
        }
        for (size_t t = 0; t < ntg; t++)
            for (int i = 0; i < nr; i++)
                y[t * ldy + rg + (size_t)i] = k == K_MINS ? acc[t].v[i] - macc[t].v[i] : acc[t].v[i];
    }
}

static void mm16(uint32_t type, const void *w, size_t row_bytes, size_t nb, const qx *toks,
                 size_t ntg, float *y, size_t ldy, size_t r0, size_t r1)
{
    switch (kind_of(type)) {
    case K_PLAIN: mm16_n(type, K_PLAIN, w, row_bytes, nb, toks, ntg, y, ldy, r0, r1); break;
    case K_MINS: mm16_n(type, K_MINS, w, row_bytes, nb, toks, ntg, y, ldy, r0, r1); break;
    case K_HALVES: mm16_n(type, K_HALVES, w, row_bytes, nb, toks, ntg, y, ldy, r0, r1); break;
    }
}

/* ---- 6 (Q8_0) or 9 (Q4_0) to 64 tokens, AVX-512 (the batched decode of that many
 * sequences): the tokens in the 16 lanes of a vector instead of the rows (beyond 16 tokens,
 * one vector of 16 after the other over each run of rows). The activations (small) are
 * interleaved once per call: vector (b, j) holds, for each token, its 4 activations
 * 4j..4j+3 of block b. A row's 4 integer weights are broadcast to every lane, read in place:
 * nothing is prepared per row group (mm16's interleave of 16 rows cost as much as a third of
 * its kernel at 16 tokens), and one vpdpbusd adds those 4 products for every token. The
 * rows stream in order, prefetched QQ_MT_PF groups ahead. Per (row, token) the same exact
 * block sums and the same fma per block, in the same order, as every other shape.
 * With fewer tokens the lanes left empty cost more than mm16's interleave of rows read from
 * memory (bench_engine, alternate steps: Q8_0 at 6 and 8 streams +4-7% with mt16, at 3-4
 * streams -3-9%, at 5 even; Q4_0 at 6 and 8 streams -4-11%). */

#define QQ_MT_MIN_Q8 6   /* fewest tokens, Q8_0 */
#define QQ_MT_MIN_Q4 9   /* fewest tokens, Q4_0 (half the bytes: mm16's interleave costs less) */
#define QQ_MT_ROWS 4     /* rows side by side: 8 int + 4 f32 accumulators, 8 activations
                          * and the constants in the 32 registers (8 rows spill: -25%) */
#define QQ_MT_PF 4       /* row groups ahead for the prefetch */
#define QQ_MT_RUN 65536  /* bytes of weights per run of rows, beyond 16 tokens */
#define QQ_MT_MAX 64     /* most tokens: 4 vectors of 16 */
#define QQ_MT_BLK 512    /* blocks x vectors the interleaved activations take: rows of up to
                          * 16384 elements for 16 tokens, 4096 for 64 */

typedef struct xt16 {
    _Alignas(64) int32_t x[QQ_MT_BLK * 8 * 16]; /* [block][j][vector][token % 16] */
    _Alignas(64) int32_t cr[QQ_MT_BLK * 16];    /* offset correction [block][vector][token % 16] */
    _Alignas(64) float dx[QQ_MT_BLK * 16];      /* activation scale [block][vector][token % 16] */
} xt16;

/* o[k] = dword k of each of t[0..15] (lane i from t[i]): a 16 x 16 transpose of 32-bit
 * elements (within 128-bit lanes, tr4x4_lanes, then of the lanes) */
static inline void tr16x16(const __m512i *t, __m512i *o)
{
    __m512i c[16]; /* c[4g + m], 128-bit lane L: dword 4L + m of t[4g..4g+3] */
    tr4x4_lanes(t, c, 16);
    for (int m = 0; m < 4; m++) { /* lane L of c[m], c[4 + m], c[8 + m], c[12 + m] -> o[4L + m] */
        const __m512i p0 = _mm512_shuffle_i32x4(c[m], c[4 + m], _MM_SHUFFLE(1, 0, 1, 0));
        const __m512i p1 = _mm512_shuffle_i32x4(c[m], c[4 + m], _MM_SHUFFLE(3, 2, 3, 2));
        const __m512i p2 = _mm512_shuffle_i32x4(c[8 + m], c[12 + m], _MM_SHUFFLE(1, 0, 1, 0));
        const __m512i p3 = _mm512_shuffle_i32x4(c[8 + m], c[12 + m], _MM_SHUFFLE(3, 2, 3, 2));
        o[m] = _mm512_shuffle_i32x4(p0, p2, _MM_SHUFFLE(2, 0, 2, 0));
        o[4 + m] = _mm512_shuffle_i32x4(p0, p2, _MM_SHUFFLE(3, 1, 3, 1));
        o[8 + m] = _mm512_shuffle_i32x4(p1, p3, _MM_SHUFFLE(2, 0, 2, 0));
        o[12 + m] = _mm512_shuffle_i32x4(p1, p3, _MM_SHUFFLE(3, 1, 3, 1));
    }
}

/* the interleaved activations of ntg tokens in nv = ntg / 16 rounded up vectors, nb blocks
 * each (nb * nv <= QQ_MT_BLK); lanes past ntg are 0 (their sums are 0, never stored). The
 * 8-bit values two blocks at a time: each token's 64 bytes in one vector, transposed as
 * 16 x 16 groups of 4 (vector k: group k of the pair, which is j = k % 8 of block b + k / 8,
 * stored at ((b * 8 + k) * nv + v) * 16 either way). With a gather per vector instead, a
 * 64-stream decode step took 1.4-3.3% longer. */
static void xt16_fill(const qx *toks, size_t ntg, size_t nv, size_t nb, int slot, xt16 *X)
{
    for (size_t v = 0; v < nv; v++) {
        const qx *tv = toks + 16 * v;
        const size_t nl = ntg - 16 * v < 16 ? ntg - 16 * v : 16;
        const __mmask16 live = (__mmask16)(nl >= 16 ? 0xFFFFu : (1u << nl) - 1);
        int32_t coff[16], doff[16];
        for (size_t t = 0; t < 16; t++) {
            const qx *u = &tv[t < nl ? t : 0];
            coff[t] = (int32_t)((u->cr - tv[0].cr) + (ptrdiff_t)slot * (ptrdiff_t)nb);
            doff[t] = (int32_t)(u->dx - tv[0].dx);
        }
        const __m512i ci = _mm512_loadu_si512((const void *)coff);
        const __m512i di = _mm512_loadu_si512((const void *)doff), z = _mm512_setzero_si512();
        for (size_t b = 0; b < nb; b += 2) {
            const size_t nk = b + 1 < nb ? 16 : 8; /* the last block alone: its 32 bytes */
            __m512i t[16], o[16];
            for (size_t i = 0; i < 16; i++) {
                const int8_t *p = tv[i < nl ? i : 0].xq + 32 * b;
                t[i] = i >= nl ? z : nk == 16 ? _mm512_loadu_si512((const void *)p)
                                              : _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)p));
            }
            tr16x16(t, o);
            for (size_t k = 0; k < nk; k++) _mm512_store_si512((void *)&X->x[((b * 8 + k) * nv + v) * 16], o[k]);
            for (size_t bb = b; bb < b + nk / 8; bb++) {
                _mm512_store_si512((void *)&X->cr[(bb * nv + v) * 16],
                                   _mm512_mask_i32gather_epi32(z, live, ci, (const void *)(tv[0].cr + bb), 4));
                _mm512_store_ps(&X->dx[(bb * nv + v) * 16],
                                _mm512_mask_i32gather_ps(_mm512_setzero_ps(), live, di, (const void *)(tv[0].dx + bb), 4));
            }
        }
    }
}

/* y[t * ldy + r] = lane t of a[r], r < 4, t < ntg: the four rows' sums of each token in one
 * 4-float store (a 4 x 16 transpose) instead of four scalar stores, each to another token's
 * row (decode steps 3-9% shorter at 16 and 64 streams) */
static inline void mt_store4(const __m512 *a, size_t ntg, float *y, size_t ldy)
{
    const __m512 u0 = _mm512_unpacklo_ps(a[0], a[1]), u1 = _mm512_unpackhi_ps(a[0], a[1]);
    const __m512 u2 = _mm512_unpacklo_ps(a[2], a[3]), u3 = _mm512_unpackhi_ps(a[2], a[3]);
    /* w[m], 128-bit lane L: the four rows of token 4L + m */
    const __m512 w[4] = {
        _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(u0), _mm512_castps_pd(u2))),
        _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(u0), _mm512_castps_pd(u2))),
        _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(u1), _mm512_castps_pd(u3))),
        _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(u1), _mm512_castps_pd(u3))),
    };
    _Alignas(64) float o[4][16];
    for (int m = 0; m < 4; m++) _mm512_store_ps(o[m], w[m]);
    for (size_t t = 0; t < ntg; t++) _mm_storeu_ps(y + t * ldy, _mm_load_ps(&o[t % 4][4 * (t / 4)]));
}

/* rows [r0, r1), per group of QQ_MT_ROWS rows: every block's 8 broadcast weight words against
 * the 8 activation vectors (lo sum with the offset correction, hi sum), then
 * acc = fma(float(lo + hi), a * dx, acc) per row, one lane per token */
static inline __attribute__((always_inline)) void
mt16_n(const uint32_t type, const uint8_t *w, size_t row_bytes, size_t nb, const xt16 *X,
       size_t nv, size_t v, size_t ntg, float *y, size_t ldy, size_t r0, size_t r1)
{
    const size_t bb = type == ENG_TYPE_Q8_0 ? 34 : 18;
    const __m512i c80 = _mm512_set1_epi8((char)0x80), m4 = _mm512_set1_epi8(0x0F);
    const __m512i mf0 = _mm512_set1_epi8((char)0xF0);
    for (size_t rg = r0; rg < r1; rg += QQ_MT_ROWS) {
        const int nr = (int)(r1 - rg < QQ_MT_ROWS ? r1 - rg : QQ_MT_ROWS);
        const uint8_t *row[QQ_MT_ROWS];
        for (int r = 0; r < QQ_MT_ROWS; r++) row[r] = w + (rg + (size_t)(r < nr ? r : 0)) * row_bytes;
        __m512 acc[QQ_MT_ROWS];
        for (int r = 0; r < QQ_MT_ROWS; r++) acc[r] = _mm512_setzero_ps();
        const bool pf = r1 - rg >= (QQ_MT_PF + 1) * QQ_MT_ROWS;
        for (size_t b = 0; b < nb; b++) {
            __m512i xv[8];
            for (int j = 0; j < 8; j++) xv[j] = _mm512_load_si512((const void *)&X->x[((b * 8 + (size_t)j) * nv + v) * 16]);
            const __m512i crv = _mm512_load_si512((const void *)&X->cr[(b * nv + v) * 16]);
            const __m512 dxv = _mm512_load_ps(&X->dx[(b * nv + v) * 16]);
            if (pf) {
                const char *a = (const char *)row[0] + QQ_MT_PF * QQ_MT_ROWS * row_bytes + QQ_MT_ROWS * bb * b;
                _mm_prefetch(a, _MM_HINT_T0);
                _mm_prefetch(a + 64, _MM_HINT_T0);
                _mm_prefetch(a + 128, _MM_HINT_T0);
            }
#pragma GCC unroll 4
            for (int r = 0; r < QQ_MT_ROWS; r++) {
                const uint8_t *blk = row[r] + bb * b;
                __m512i s0 = crv, s1 = _mm512_setzero_si512();
                if (type == ENG_TYPE_Q8_0) {
                    for (int j = 0; j < 4; j++) {
                        s0 = _mm512_dpbusd_epi32(s0, _mm512_xor_si512(c80, _mm512_set1_epi32(rd_i32((const int8_t *)blk + 2 + 4 * j))), xv[j]);
                        s1 = _mm512_dpbusd_epi32(s1, _mm512_xor_si512(c80, _mm512_set1_epi32(rd_i32((const int8_t *)blk + 18 + 4 * j))), xv[j + 4]);
                    }
                } else {
                    /* high nibbles in place (16 x their value; the sum is exact and is
                     * scaled back below): one and per half instead of shift + and */
                    for (int j = 0; j < 4; j++) {
                        const __m512i q = _mm512_set1_epi32(rd_i32((const int8_t *)blk + 2 + 4 * j));
                        s0 = _mm512_dpbusd_epi32(s0, _mm512_and_si512(q, m4), xv[j]);
                        s1 = _mm512_dpbusd_epi32(s1, _mm512_and_si512(q, mf0), xv[j + 4]);
                    }
                    s1 = _mm512_srai_epi32(s1, 4);
                }
                const __m512 av = _mm512_cvtph_ps(_mm256_set1_epi16((short)qi_rd16(blk)));
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), _mm512_mul_ps(av, dxv), acc[r]);
            }
        }
        _Static_assert(QQ_MT_ROWS == 4, "mt_store4 stores groups of 4 rows");
        if (nr == QQ_MT_ROWS) {
            mt_store4(acc, ntg, y + rg, ldy);
            continue;
        }
        for (int r = 0; r < nr; r++) {
            _Alignas(64) float o[16];
            _mm512_store_ps(o, acc[r]);
            for (size_t t = 0; t < ntg; t++) y[t * ldy + rg + (size_t)r] = o[t];
        }
    }
}

/* QQ_MT_MIN_Q8 (Q4_0: QQ_MT_MIN_Q4) to QQ_MT_MAX tokens of Q8_0 or Q4_0, nb * vectors <=
 * QQ_MT_BLK. Beyond 16 tokens, each vector of 16 in turn over runs of rows small enough
 * (QQ_MT_RUN bytes) to be read from memory once and from the cache for the other vectors. */
static void mt16(uint32_t type, const uint8_t *w, size_t row_bytes, size_t nb, const qx *toks,
                 size_t ntg, float *y, size_t ldy, size_t r0, size_t r1)
{
    static _Thread_local xt16 X;
    const size_t nv = (ntg + 15) / 16;
    xt16_fill(toks, ntg, nv, nb, corr_slot(type), &X);
    size_t run = QQ_MT_RUN / row_bytes / QQ_MT_ROWS * QQ_MT_ROWS;
    if (nv == 1 || run < QQ_MT_ROWS) run = r1 - r0;
    for (size_t ra = r0; ra < r1; ra += run) {
        const size_t rb = r1 - ra < run ? r1 : ra + run;
        for (size_t v = 0; v < nv; v++) {
            const size_t nl = ntg - 16 * v < 16 ? ntg - 16 * v : 16;
            float *yv = y + 16 * v * ldy;
            if (type == ENG_TYPE_Q8_0) mt16_n(ENG_TYPE_Q8_0, w, row_bytes, nb, &X, nv, v, nl, yv, ldy, ra, rb);
            else mt16_n(ENG_TYPE_Q4_0, w, row_bytes, nb, &X, nv, v, nl, yv, ldy, ra, rb);
        }
    }
}
#endif

/* tokens [t0, t0 + ntg) (ntg <= QQ_TGA) of an activation buffer through the kernel for their
 * count */
static void run_group(uint32_t type, const void *w, size_t row_bytes, size_t n, const void *act,
                      const act_layout *L, size_t t0, size_t ntg, float *y, size_t ldy,
                      size_t r0, size_t r1)
{
    const size_t nb = n / 32;
    qx toks[QQ_TGA];
    for (size_t t = 0; t < ntg; t++) toks[t] = qx_at(act, L, n, t0 + t);
#if defined(QQ_VNNI) || defined(QQ_AVX2)
    if (ntg <= QQ_MV_MAX) {
        mv8(type, (const uint8_t *)w, row_bytes, nb, toks, ntg, y, ldy, r0, r1);
        return;
    }
#endif
#if defined(QQ_Z)
    const size_t mt_min = type == ENG_TYPE_Q8_0 ? QQ_MT_MIN_Q8 : QQ_MT_MIN_Q4;
    if (ntg >= mt_min && ntg <= QQ_MT_MAX && nb * ((ntg + 15) / 16) <= QQ_MT_BLK &&
        (type == ENG_TYPE_Q8_0 || type == ENG_TYPE_Q4_0)) {
        mt16(type, (const uint8_t *)w, row_bytes, nb, toks, ntg, y, ldy, r0, r1);
        return;
    }
    mm16(type, w, row_bytes, nb, toks, ntg, y, ldy, r0, r1);
#else
    mm8(type, w, row_bytes, nb, toks, ntg, y, ldy, r0, r1);
#endif
}

void qq_matmul_rows(uint32_t type, const void *w, size_t row_bytes, size_t n, const float *x,
                    size_t ldx, size_t nt, float *y, size_t ldy, size_t r0, size_t r1)
{
    size_t tg = QQ_BUF / tok_share(n);
    if (tg > QQ_TG) tg = QQ_TG;
    for (size_t t0 = 0; t0 < nt; t0 += tg) {
        const size_t ntg = nt - t0 < tg ? nt - t0 : tg;
        act_layout L = {0, 0, 0, 0};
        (void)act_layout_of(n, ntg, &L); /* fits: qq_supported */
        for (size_t t = 0; t < ntg; t++) quantize_tok(x + (t0 + t) * ldx, n, &L, qq_buf, t);
        run_group(type, w, row_bytes, n, qq_buf, &L, 0, ntg, y + t0 * ldy, ldy, r0, r1);
    }
}

size_t qq_act_bytes(size_t n, size_t nt)
{
    act_layout L = {0, 0, 0, 0};
    if (!n_ok(n) || !act_layout_of(n, nt, &L))
        return 0;
    return L.total;
}

void qq_act_quantize(const float *x, size_t ldx, size_t n, size_t nt, size_t t0, size_t t1,
                     void *act)
{
    act_layout L = {0, 0, 0, 0};
    (void)act_layout_of(n, nt, &L); /* checked by qq_act_bytes */
    for (size_t t = t0; t < t1; t++) quantize_tok(x + t * ldx, n, &L, act, t);
}

void qq_matmul_rows_act(uint32_t type, const void *w, size_t row_bytes, size_t n, const void *act,
                        size_t nt, float *y, size_t ldy, size_t r0, size_t r1)
{
    act_layout L = {0, 0, 0, 0};
    (void)act_layout_of(n, nt, &L);
    for (size_t t0 = 0; t0 < nt; t0 += QQ_TGA) {
        const size_t ntg = nt - t0 < QQ_TGA ? nt - t0 : QQ_TGA;
        run_group(type, w, row_bytes, n, act, &L, t0, ntg, y + t0 * ldy, ldy, r0, r1);
    }
}
