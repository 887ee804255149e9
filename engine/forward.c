/* The batched Llama forward pass. Contract and batch-invariance rules: engine.h. */
#include "engine.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__F16C__) && defined(__AVX__)
#include <immintrin.h>
#define ENG_HAVE_F16C 1
#else
#define ENG_HAVE_F16C 0
#if defined(__SSE__)
#include <xmmintrin.h> /* _mm_prefetch */
#endif
#endif

#include "quant.h"
#include "threadpool.h"

/* multiply-adds below which a kernel runs on the calling thread alone */
#define ENG_PAR_MIN_WORK 65536.0
/* activation values below which their 8-bit quantization stays on the calling thread (with
 * 64 tokens of 576 it went to the pool: the other thread only waited for it) */
#define ENG_PAR_MIN_QUANT 4096.0 /* (and the RMSNorm before it: mm_prepare) */

/* what one thread did in a run: the fraction of the rows and the time it took */
typedef struct mm_meas {
    _Alignas(64) double frac;
    long ns;
} mm_meas;

struct eng_ctx {
    const eng_model *model;
    kv_cache *kv;
    eng_pool *pool;
    int n_threads;
    int max_tokens;     /* max_batch_tokens */
    int max_seqs;       /* max_batch_seqs */
    int n_ctx;

    /* model geometry */
    int L, E, F, H, HKV, D, RD, V;
    int q_dim, kv_dim;
    float rms_eps;
    bool neox;
    float attn_scale;
    bool rope_fused;    /* RoPE and the K/V stores run in the Q/K/V pool run (see eng_step) */

    /* kv geometry */
    int bs;             /* tokens per block */
    bool kv_f16;
    bool attn_elementwise; /* eng_ctx_set_attn_elementwise */

    /* scratch (sized at creation) */
    float *x, *xb, *q, *k, *v, *att, *hb, *hb2;
    float *gath;
    float *inv_freq;    /* RD/2 */
    float *rope_cs;     /* max_tokens * RD: cos, sin interleaved per pair */
    int32_t *tok_entry; /* max_tokens: entry index of each batch token */
    int32_t *tok_pos;   /* max_tokens */
    int32_t *entry_t0;  /* max_seqs: first batch token of each entry */
    const uint32_t **entry_blocks; /* max_seqs: block table of each entry */
    float *th_scores;   /* n_threads * th_scores_stride */
    size_t th_scores_stride; /* ATT_SET rows of n_ctx rounded up to 16 (attn_worker) */
    int32_t *tile_t0;   /* max_tokens: first token of each attention tile (attn_tiles) */
    int n_tiles;

    /* a run's activations quantized once (eng_act_*), 64-byte aligned; NULL if no row
     * length of the model can use it */
    void *act;

    /* matmul runs: each thread's share of the rows (n_threads each, summing to 1), for runs
     * of 1-2 tokens ([0]: they stream the weights) and of more ([1]: they compute), learned
     * from how long each thread took over its share in the runs before (mm_exec) */
    float *mm_share[2];
    atomic_uchar *mm_taken; /* n_threads: the run in progress: chunk i claimed (thread i tries
                             * its own first; mm_worker) */
    mm_meas *mm_meas;       /* n_threads: the run in progress, 64-byte aligned */
};

/* ------------------------------------------------------------------ kv cache access */

static inline void *blk_k(eng_ctx *c, uint32_t block, int layer, int head)
{
    return kv_block_k(c->kv, block, (uint32_t)layer, (uint32_t)head);
}

static inline void *blk_v(eng_ctx *c, uint32_t block, int layer, int head)
{
    return kv_block_v(c->kv, block, (uint32_t)layer, (uint32_t)head);
}

/* ------------------------------------------------------------------ small per-token ops */

/* RMSNorm of nt rows: o[t] = w * (x[t] / sqrt(mean(x[t]^2) + eps)). Each row's sum of squares
 * runs in element order in one f32 accumulator, as a single-row loop would; up to 8 rows
 * are summed side by side only to overlap their dependency chains, so a row's bits do not
 * depend on which rows share the call. */
#define RMS_ROWS 8
static void rmsnorm_rows(float *o, size_t ldo, const float *const *xs, const float *w, int nt,
                         int n, float eps)
{
    for (int t0 = 0; t0 < nt; t0 += RMS_ROWS) {
        const int nr = nt - t0 < RMS_ROWS ? nt - t0 : RMS_ROWS;
        float ss[RMS_ROWS] = {0};
        if (nr == RMS_ROWS) {
            const float *x0 = xs[t0], *x1 = xs[t0 + 1], *x2 = xs[t0 + 2], *x3 = xs[t0 + 3];
            const float *x4 = xs[t0 + 4], *x5 = xs[t0 + 5], *x6 = xs[t0 + 6], *x7 = xs[t0 + 7];
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
            for (int i = 0; i < n; i++) {
                s0 += x0[i] * x0[i];
                s1 += x1[i] * x1[i];
                s2 += x2[i] * x2[i];
                s3 += x3[i] * x3[i];
                s4 += x4[i] * x4[i];
                s5 += x5[i] * x5[i];
                s6 += x6[i] * x6[i];
                s7 += x7[i] * x7[i];
            }
            ss[0] = s0; ss[1] = s1; ss[2] = s2; ss[3] = s3;
            ss[4] = s4; ss[5] = s5; ss[6] = s6; ss[7] = s7;
        } else {
            for (int r = 0; r < nr; r++) {
                const float *x = xs[t0 + r];
                float s = 0.0f;
                for (int i = 0; i < n; i++) s += x[i] * x[i];
                ss[r] = s;
            }
        }
        for (int r = 0; r < nr; r++) {
            float sc = ss[r];
            sc /= (float)n;
            sc += eps;
            sc = 1.0f / sqrtf(sc);
            const float *x = xs[t0 + r];
            float *y = o + (size_t)(t0 + r) * ldo;
            for (int i = 0; i < n; i++) y[i] = w[i] * (sc * x[i]);
        }
    }
}

/* RMSNorm of the rows x[t * ld], t < nt, into o (same stride) */
static void rmsnorm_batch(float *o, const float *x, size_t ld, const float *w, int nt, int n,
                          float eps)
{
    for (int t0 = 0; t0 < nt; t0 += RMS_ROWS) {
        const float *xs[RMS_ROWS];
        const int nr = nt - t0 < RMS_ROWS ? nt - t0 : RMS_ROWS;
        for (int r = 0; r < nr; r++) xs[r] = x + (size_t)(t0 + r) * ld;
        rmsnorm_rows(o + (size_t)t0 * ld, ld, xs, w, nr, n, eps);
    }
}

/* rotates one head vector of dim D, first RD dims, with the token's cos/sin table */
static void rope_head(float *v, const float *cs, int RD, bool neox)
{
    const int half = RD / 2;
    if (neox) {
        for (int i = 0; i < half; i++) {
            float c = cs[2 * i], s = cs[2 * i + 1];
            float a = v[i], b = v[i + half];
            v[i] = a * c - b * s;
            v[i + half] = a * s + b * c;
        }
    } else {
        for (int i = 0; i < half; i++) {
            float c = cs[2 * i], s = cs[2 * i + 1];
            float a = v[2 * i], b = v[2 * i + 1];
            v[2 * i] = a * c - b * s;
            v[2 * i + 1] = a * s + b * c;
        }
    }
}

/* Adjacent-pair RoPE on elements [r0, r1) of each token's row of n_heads * D (r0, r1 even):
 * the same arithmetic as rope_head on the pairs that fall in the range. */
static void rope_range(eng_ctx *c, float *y, size_t ld, int nt, size_t r0, size_t r1)
{
    const size_t D = (size_t)c->D, RD = (size_t)c->RD;
    for (int t = 0; t < nt; t++) {
        const float *cs = c->rope_cs + (size_t)t * RD;
        float *row = y + (size_t)t * ld;
        for (size_t r = r0; r < r1;) {
            const size_t o = r % D; /* even: r0, r1 and D are */
            size_t end = r - o + D; /* the end of this head */
            if (end > r1) end = r1;
            size_t lim = o + (end - r);
            if (lim > RD) lim = RD;
            float *hv = row + (r - o);
            for (size_t i = o; i < lim; i += 2) {
                const float cc = cs[i], s = cs[i + 1];
                const float a = hv[i], b = hv[i + 1];
                hv[i] = a * cc - b * s;
                hv[i + 1] = a * s + b * cc;
            }
            r = end;
        }
    }
}

/* SwiGLU, g = silu(g) * u = g / (1 + e^-g) * u, with our own e^x so that it vectorizes:
 * n = round(x log2 e), r = x - n ln 2 (two-part ln 2), e^r by its degree-7 Taylor
 * polynomial (Horner, fused multiply-adds; error under 2^-23 relative on |r| <= ln2/2),
 * times 2^n. x is clamped to [-87, 88] (e^x stays a normal float; silu is then -0 or g to
 * the last bit anyway). The scalar form does the same operations (fmaf), so every element
 * gets the same bits whichever path takes it. */
#define EXP_LOG2E 1.44269504088896341f
#define EXP_LN2_HI 0.693145751953125f
#define EXP_LN2_LO 1.42860682030941723212e-6f

static inline float exp_scalar(float x)
{
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    const float n = nearbyintf(x * EXP_LOG2E);
    float r = fmaf(n, -EXP_LN2_HI, x);
    r = fmaf(n, -EXP_LN2_LO, r);
    float p = 1.0f / 5040.0f;
    p = fmaf(p, r, 1.0f / 720.0f);
    p = fmaf(p, r, 1.0f / 120.0f);
    p = fmaf(p, r, 1.0f / 24.0f);
    p = fmaf(p, r, 1.0f / 6.0f);
    p = fmaf(p, r, 0.5f);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    const uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

#if defined(__AVX2__) && defined(__FMA__)
static inline __m256 exp_avx2(__m256 x)
{
    /* (the constant first: max and min return their second operand when one is NaN, so a
     * NaN stays NaN, as in exp_scalar) */
    x = _mm256_min_ps(_mm256_set1_ps(88.0f), _mm256_max_ps(_mm256_set1_ps(-87.0f), x));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(EXP_LOG2E)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-EXP_LN2_HI), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(-EXP_LN2_LO), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i bits =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}
#endif

static void swiglu_row(float *g, const float *u, size_t n)
{
    size_t i = 0;
#if defined(__AVX2__) && defined(__FMA__)
    const __m256 one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
        const __m256 gv = _mm256_loadu_ps(g + i);
        const __m256 e = exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), gv));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_div_ps(gv, _mm256_add_ps(one, e)),
                                              _mm256_loadu_ps(u + i)));
    }
#endif
    for (; i < n; i++) g[i] = g[i] / (1.0f + exp_scalar(-g[i])) * u[i];
}

/* ------------------------------------------------------------------ kv cache writes */

/* K elements [o, o + n) of one token at slot i of a block's transposed K (attention's
 * layout: element d at [d * bs + i]), f16 (exact rounding, elementwise) or f32 */
static void store_k_column(eng_ctx *c, void *dst, size_t i, size_t o, const float *x, size_t n)
{
    const size_t bs = (size_t)c->bs;
    if (!c->kv_f16) {
        for (size_t e = 0; e < n; e++) ((float *)dst)[(o + e) * bs + i] = x[e];
        return;
    }
    uint16_t h[64];
    for (size_t e0 = 0; e0 < n; e0 += 64) {
        const size_t m = n - e0 < 64 ? n - e0 : 64;
        eng_f32_to_f16_row(x + e0, h, m);
        for (size_t e = 0; e < m; e++) ((uint16_t *)dst)[(o + e0 + e) * bs + i] = h[e];
    }
}

/* Stores elements [r0, r1) of each batch token's K or V row (kv_dim wide, in src) at the
 * token's slot of its block, in attention's layout (V a row per slot, K transposed): f16
 * (exact rounding, elementwise) or f32. */
static void store_kv_range(eng_ctx *c, int layer, bool is_v, const float *src, int nt,
                           size_t r0, size_t r1)
{
    const size_t D = (size_t)c->D, bs = (size_t)c->bs;
    for (int t = 0; t < nt; t++) {
        const uint32_t *blocks = c->entry_blocks[c->tok_entry[t]];
        const size_t pos = (size_t)c->tok_pos[t];
        const uint32_t blk = blocks[pos / bs];
        const size_t slot = pos % bs;
        const float *row = src + (size_t)t * (size_t)c->kv_dim;
        for (size_t r = r0; r < r1;) {
            const int h = (int)(r / D);
            const size_t o = r % D;
            size_t end = (size_t)(h + 1) * D;
            if (end > r1) end = r1;
            if (!is_v)
                store_k_column(c, blk_k(c, blk, layer, h), slot, o, row + r, end - r);
            else if (c->kv_f16)
                eng_f32_to_f16_row(row + r, (uint16_t *)blk_v(c, blk, layer, h) + slot * D + o,
                                   end - r);
            else
                memcpy((float *)blk_v(c, blk, layer, h) + slot * D + o, row + r,
                       (end - r) * sizeof(float));
            r = end;
        }
    }
}

/* ------------------------------------------------------------------ matmul runs
 *
 * One pool run computes one or more weight matrices ("segments") for all of the batch's
 * tokens. Each segment's rows are cut into units of MM_UNIT rows (its last unit may be
 * short); chunk c of n takes the c-th of n equal runs of units of every segment, and the
 * threads claim chunks from an atomic counter until none are left, so a thread that was
 * scheduled late or runs slower takes fewer. A chunk makes one kernel call per segment;
 * chunks are few, so that each thread's rows stay one stream (see MM_CHUNKS_PER_THREAD).
 * Each row is still computed by eng_matmul_rows with the same per-row arithmetic (its result
 * does not depend on the row range of the call), so the split changes no bits. After its
 * rows, a chunk applies its segment's elementwise post-op to the same rows. */

#define MM_UNIT 16
/* chunks per thread aimed at, and the smallest chunk (in units). One chunk per thread,
 * claimed from a counter (a late thread takes the other's). With the activations quantized
 * once per run (mm_prepare) more chunks were measured too: 4 per thread lost 10-20%
 * (SmolLM2-135M Q8_0, 2 threads: each thread's rows are no longer one stream that its
 * prefetches follow) */
#define MM_CHUNKS_PER_THREAD 1
#define MM_MIN_UNITS 1
#define MM_MAX_SEG 3

enum mm_post {
    POST_NONE,
    POST_ROPE,       /* RoPE on the rows (Q) */
    POST_ROPE_K,     /* RoPE, then store into the kv cache as K */
    POST_STORE_V,    /* store into the kv cache as V */
    POST_ADD,        /* residual: x += y */
    POST_SWIGLU,     /* y = silu(y) * y2 */
};

typedef struct mm_seg {
    const eng_mat *w;
    const eng_mat *w2; /* POST_SWIGLU: the second matrix (same rows), into y2 */
    const float *x;
    float *y, *y2;
    enum mm_post post;
    long units;
    const void *act;   /* x quantized (eng_act_*), when w (and w2) can use it */
} mm_seg;

typedef struct mm_run {
    eng_ctx *c;
    int nt, layer, n_seg;
    mm_seg seg[MM_MAX_SEG];
    const float *norm_x, *norm_w; /* mm_norm */
    long n_chunks;
    const float *cum;      /* n_chunks + 1 boundaries in [0, 1]: chunk ci is its share of
                            * every segment's units; NULL: equal chunks */
    _Alignas(64) atomic_long next;
} mm_run;

static void mm_seg_rows(const mm_run *j, const mm_seg *s, size_t r0, size_t r1)
{
    eng_ctx *c = j->c;
    const eng_mat *w = s->w;
    const size_t rows = (size_t)w->rows, cols = (size_t)w->cols, nt = (size_t)j->nt;
    if (s->act) {
        eng_matmul_rows_act(w->type, w->data, w->row_bytes, cols, s->act, nt, s->y, rows, r0, r1);
        if (s->w2)
            eng_matmul_rows_act(s->w2->type, s->w2->data, s->w2->row_bytes, cols, s->act, nt,
                                s->y2, rows, r0, r1);
    } else {
        eng_matmul_rows(w->type, w->data, w->row_bytes, cols, s->x, cols, nt, s->y, rows, r0, r1);
        if (s->w2)
            eng_matmul_rows(s->w2->type, s->w2->data, s->w2->row_bytes, cols, s->x, cols, nt,
                            s->y2, rows, r0, r1);
    }
    switch (s->post) {
    case POST_NONE:
        break;
    case POST_ROPE:
        rope_range(c, s->y, rows, j->nt, r0, r1);
        break;
    case POST_ROPE_K:
        rope_range(c, s->y, rows, j->nt, r0, r1);
        store_kv_range(c, j->layer, false, s->y, j->nt, r0, r1);
        break;
    case POST_STORE_V:
        store_kv_range(c, j->layer, true, s->y, j->nt, r0, r1);
        break;
    case POST_ADD:
        for (size_t t = 0; t < nt; t++) {
            float *xr = c->x + t * (size_t)c->E;
            const float *yr = s->y + t * rows;
            for (size_t r = r0; r < r1; r++) xr[r] += yr[r];
        }
        break;
    case POST_SWIGLU:
        for (size_t t = 0; t < nt; t++)
            swiglu_row(s->y + t * rows + r0, s->y2 + t * rows + r0, r1 - r0);
        break;
    }
}

static void mm_chunk(mm_run *j, long ci)
{
    for (int si = 0; si < j->n_seg; si++) {
        const mm_seg *s = &j->seg[si];
        long u0, u1;
        if (j->cum) {
            u0 = lround(j->cum[ci] * (double)s->units);
            u1 = lround(j->cum[ci + 1] * (double)s->units);
        } else {
            eng_split_range(s->units, (int)ci, (int)j->n_chunks, &u0, &u1);
        }
        if (u0 >= u1) continue;
        const size_t rows = (size_t)s->w->rows;
        size_t r1 = (size_t)u1 * MM_UNIT;
        if (r1 > rows) r1 = rows;
        mm_seg_rows(j, s, (size_t)u0 * MM_UNIT, r1);
    }
}

static void mm_worker(void *arg, int ith, int nth)
{
    mm_run *j = arg;
    (void)nth;
    if (!j->cum) {
        for (;;) {
            const long ci = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
            if (ci >= j->n_chunks) break;
            mm_chunk(j, ci);
        }
        return;
    }
    /* its own chunk first, then any left (a thread that starts late loses its chunk) */
    const long t0 = eng_now_ns();
    double frac = 0;
    for (long k = 0; k < j->n_chunks; k++) {
        const long ci = (ith + k) % j->n_chunks;
        if (atomic_exchange_explicit(&j->c->mm_taken[ci], 1, memory_order_relaxed)) continue;
        mm_chunk(j, ci);
        frac += (double)(j->cum[ci + 1] - j->cum[ci]);
    }
    j->c->mm_meas[ith].frac = frac;
    j->c->mm_meas[ith].ns = eng_now_ns() - t0;
}

static void mm_add(mm_run *j, const eng_mat *w, const eng_mat *w2, const float *x, float *y,
                   float *y2, enum mm_post post)
{
    mm_seg *s = &j->seg[j->n_seg++];
    *s = (mm_seg){w, w2, x, y, y2, post, (long)((w->rows + MM_UNIT - 1) / MM_UNIT), NULL};
}

typedef struct act_job {
    float *x;              /* rows of n */
    size_t n, nt;
    void *act;             /* NULL: no quantization */
    const float *norm_x;   /* non-NULL: x = RMSNorm(norm_x) * norm_w first */
    const float *norm_w;
    float eps;
} act_job;

static void act_worker(void *arg, int ith, int nth)
{
    const act_job *a = arg;
    long t0, t1;
    eng_split_range((long)a->nt, ith, nth, &t0, &t1);
    if (t0 >= t1) return;
    if (a->norm_x)
        rmsnorm_batch(a->x + (size_t)t0 * a->n, a->norm_x + (size_t)t0 * a->n, a->n, a->norm_w,
                      (int)(t1 - t0), (int)a->n, a->eps);
    if (a->act) eng_act_quantize(a->x, a->n, a->n, a->nt, (size_t)t0, (size_t)t1, a->act);
}

/* Before a run's kernels: the RMSNorm of its input when mm_norm asked for one, then one 8-bit
 * quantization of the x that the segments whose weights use 8-bit activations share (all
 * segments of a run read the same x), instead of one in every kernel call of every chunk.
 * Both are per token (each token's arithmetic is the same whoever does it), so they are split
 * over the threads by tokens when there are enough values. Same bits either way. */
static void mm_prepare(eng_ctx *c, mm_run *j)
{
    const float *x = NULL;
    size_t n = 0;
    for (int si = 0; c->act && si < j->n_seg; si++) {
        mm_seg *s = &j->seg[si];
        const size_t cols = (size_t)s->w->cols;
        if (!eng_act_supported(s->w->type, cols) || (s->w2 && !eng_act_supported(s->w2->type, cols)))
            continue;
        if (x && (s->x != x || cols != n)) continue;
        if (j->norm_w && s->x != j->seg[0].x) continue;
        x = s->x;
        n = cols;
        s->act = c->act;
    }
    act_job a = {(float *)x, n, (size_t)j->nt, x ? c->act : NULL, NULL, NULL, c->rms_eps};
    if (j->norm_w) {
        a.x = (float *)j->seg[0].x;
        a.n = (size_t)c->E;
        a.norm_x = j->norm_x;
        a.norm_w = j->norm_w;
    } else if (!x) {
        return;
    }
    if (c->n_threads == 1 || (double)a.n * j->nt < ENG_PAR_MIN_QUANT) act_worker(&a, 0, 1);
    else eng_pool_run(c->pool, act_worker, &a);
}

/* the run's input (the x of its first segment, E wide) is RMSNorm(x) * w, computed by
 * mm_prepare */
static void mm_norm(mm_run *j, const float *x, const float *w)
{
    j->norm_x = x;
    j->norm_w = w;
}

/* Runs the segments added with mm_add; the run's work is done when this returns. */
static void mm_exec(eng_ctx *c, mm_run *j)
{
    mm_prepare(c, j);
    double work = 0;
    for (int si = 0; si < j->n_seg; si++) {
        const mm_seg *s = &j->seg[si];
        work += (double)s->w->rows * (double)s->w->cols * j->nt * (s->w2 ? 2 : 1);
    }
    atomic_init(&j->next, 0);
    /* small jobs: waking the workers costs more than the work (the split never changes the
     * numbers, so this is only a speed choice) */
    if (c->n_threads == 1 || work < ENG_PAR_MIN_WORK) {
        j->n_chunks = 1;
        mm_worker(j, 0, 1);
        return;
    }
    /* chunks: MM_CHUNKS_PER_THREAD per thread, fewer when the largest segment would give
     * chunks under MM_MIN_UNITS units */
    long max_units = 0;
    for (int si = 0; si < j->n_seg; si++)
        if (j->seg[si].units > max_units) max_units = j->seg[si].units;
    long nc = (long)c->n_threads * MM_CHUNKS_PER_THREAD;
    if (nc > max_units / MM_MIN_UNITS) nc = max_units / MM_MIN_UNITS;
    j->n_chunks = nc < 1 ? 1 : nc;
    if (j->n_chunks != c->n_threads) {
        eng_pool_run(c->pool, mm_worker, j);
        return;
    }
    /* one chunk per thread, sized by its share */
    const int n = c->n_threads;
    float *share = c->mm_share[j->nt > 2];
    float cum[ENG_POOL_MAX_THREADS + 1];
    atomic_uchar *taken = c->mm_taken;
    mm_meas *meas = c->mm_meas;
    cum[0] = 0.0f;
    for (int i = 0; i < n; i++) {
        cum[i + 1] = cum[i] + share[i];
        atomic_init(&taken[i], 0);
        meas[i] = (mm_meas){0, 0};
    }
    cum[n] = 1.0f;
    j->cum = cum;
    eng_pool_run(c->pool, mm_worker, j);
    /* a thread's speed: its fraction per ns; move the shares 1/8 of the way towards the
     * speeds' proportions, when every thread did its own chunk (a late one did none) */
    double speed[ENG_POOL_MAX_THREADS], total = 0;
    for (int i = 0; i < n; i++) {
        if (meas[i].ns <= 0 || meas[i].frac <= 0) return;
        speed[i] = meas[i].frac / (double)meas[i].ns;
        total += speed[i];
    }
    double sum = 0;
    for (int i = 0; i < n; i++) {
        double v = 0.875 * share[i] + 0.125 * speed[i] / total;
        const double lo = 0.25 / n, hi = 4.0 / n;
        share[i] = (float)(v < lo ? lo : v > hi ? hi : v);
        sum += share[i];
    }
    for (int i = 0; i < n; i++) share[i] = (float)(share[i] / sum);
}

/* y[t*rows + r] = W row r . x[t*cols ...] for t < nt (one matrix, no post-op) */
static void matmul(eng_ctx *c, const eng_mat *w, const float *x, int nt, float *y)
{
    mm_run j = {.c = c, .nt = nt};
    mm_add(&j, w, NULL, x, y, NULL, POST_NONE);
    mm_exec(c, &j);
}

/* ------------------------------------------------------------------ attention
 *
 * Layout of a (block, layer, kv head) region of the cache (kvcache hands out the region; the
 * order inside it is the engine's): V token-major, element d of slot i at v[i * D + d]; K
 * transposed, k[d * bs + i], so that one vector load takes dimension d of consecutive keys and
 * a vector of scores needs no horizontal sums.
 *
 * One query (one head of one token that sees positions 0..n-1) is, on every path below:
 *   c_r = sum over the dimensions d = r mod 4, in ascending d, of q[d] * k_p[d] (att_madd:
 *         one fused multiply-add with FMA in the build, else a multiply then an add);
 *   score[p] = ((c_0 + c_1) + (c_2 + c_3)) * scale;
 *   e[p] = softmax_exp(score, n, max score), inv = 1 / (their sum);
 *   out[d] = att_madd(e[p] * inv, v_p[d], out[d]) over p in ascending order, from 0.
 * The vector paths compute one key (or one dimension) per lane with exactly these operations,
 * so the bits depend on neither the path, nor the queries computed together, nor the thread. */

#define ATT_TQ 4        /* queries per tile: consecutive tokens of one sequence (attn_tiles) */
#define ATT_MIN_ITEMS 4 /* items per thread below which attention items are single heads */

#if defined(__FMA__)
#define ATT_FMA 1
#else
#define ATT_FMA 0
#endif

static inline float att_madd(float a, float b, float c)
{
#if ATT_FMA
    return fmaf(a, b, c);
#else
    return a * b + c;
#endif
}

/* element i of a K or V region, f16 (widened exactly) or f32 */
static inline float kv_elem(const void *b, size_t i, const bool f16)
{
    return f16 ? eng_f16_to_f32(((const uint16_t *)b)[i]) : ((const float *)b)[i];
}

/* prefetch (to L1) the cache lines of [p, p + bytes). Always inlined: GCC 12 finds a
 * separate copy free of side effects and deletes the calls. T0 rather than T1: a scratch
 * program reading 2 KiB runs 360 KiB apart with these prefetches got 25-27 GB/s per
 * thread with T0 against 21 with T1 (64-stream decode +3%, bench/RESULTS.md). */
static inline __attribute__((always_inline)) void prefetch_rows(const void *p, size_t bytes)
{
#if defined(__SSE__)
    for (size_t o = 0; o < bytes; o += 64) _mm_prefetch((const char *)p + o, _MM_HINT_T0);
#else
    (void)p;
    (void)bytes;
#endif
}

#if defined(__AVX2__) && defined(__FMA__) && ENG_HAVE_F16C
/* the sum of the 8 lanes of v in a fixed tree:
 * ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)) */
static inline float lane_tree_v(__m256 v)
{
    const __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 b = _mm_add_ps(a, _mm_movehl_ps(a, a)); /* (l0+l4)+(l2+l6), (l1+l5)+(l3+l7) */
    return _mm_cvtss_f32(_mm_add_ss(b, _mm_shuffle_ps(b, b, 1)));
}

/* all ones in the dwords l < n of 8, zeros in the others */
static inline __m256i first_lanes8(int n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
#endif

/* The softmax's numerators in place, scores[p] = e^(scores[p] - m), and their sum. With
 * AVX2 and FMA: exp_avx2 (the SwiGLU's e^x, under 2^-23 relative error; a score 87 or more
 * below the maximum gives e^-87 instead of a smaller number, against a sum of at least 1),
 * summed in 8 lanes (lane j: positions p = j mod 8, in order) and then lane_tree_v. Else
 * expf, summed in position order. Either way the result depends on n_pos and the scores
 * only. */
static float softmax_exp(float *scores, int n_pos, float m)
{
#if defined(__AVX2__) && defined(__FMA__) && ENG_HAVE_F16C
    const __m256 mv = _mm256_set1_ps(m);
    __m256 acc = _mm256_setzero_ps();
    int p = 0;
    for (; p + 8 <= n_pos; p += 8) {
        const __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(scores + p), mv));
        _mm256_storeu_ps(scores + p, e);
        acc = _mm256_add_ps(acc, e);
    }
    if (p < n_pos) { /* the last 1-7 positions in lanes 0..; the other lanes add +0 */
        const __m256i live = first_lanes8(n_pos - p);
        const __m256 x = _mm256_maskload_ps(scores + p, live);
        const __m256 e = _mm256_and_ps(exp_avx2(_mm256_sub_ps(x, mv)), _mm256_castsi256_ps(live));
        _mm256_maskstore_ps(scores + p, live, e);
        acc = _mm256_add_ps(acc, e);
    }
    return lane_tree_v(acc);
#else
    float sum = 0.0f;
    for (int p = 0; p < n_pos; p++) {
        const float e_ = expf(scores[p] - m);
        scores[p] = e_;
        sum += e_;
    }
    return sum;
#endif
}

/* one query of an attention item: its vector, its output, the positions it sees */
typedef struct att_q {
    const float *q;
    float *out;
    int n;
} att_q;

/* att_query: one query by the definition above, an element at a time (any block size and
 * head dim; the path of builds without the vector units). scores: n floats. */
static inline __attribute__((always_inline)) void
att_query_f(eng_ctx *c, int layer, const uint32_t *blocks, int kvh, const att_q *aq, float *sc,
            const bool f16)
{
    const int D = c->D, bs = c->bs, n = aq->n;
    float m = -INFINITY;
    for (int p = 0; p < n; p++) {
        const void *kb = blk_k(c, blocks[p / bs], layer, kvh);
        const size_t i = (size_t)(p % bs);
        float r[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int d = 0; d < D; d++)
            r[d & 3] = att_madd(aq->q[d], kv_elem(kb, (size_t)d * (size_t)bs + i, f16), r[d & 3]);
        const float s_ = ((r[0] + r[1]) + (r[2] + r[3])) * c->attn_scale;
        sc[p] = s_;
        if (s_ > m) m = s_;
    }
    const float inv = 1.0f / softmax_exp(sc, n, m);
    float *out = aq->out;
    for (int d = 0; d < D; d++) out[d] = 0.0f;
    for (int p = 0; p < n; p++) {
        const void *vb = blk_v(c, blocks[p / bs], layer, kvh);
        const size_t row = (size_t)(p % bs) * (size_t)D;
        const float a = sc[p] * inv;
        for (int d = 0; d < D; d++) out[d] = att_madd(a, kv_elem(vb, row + (size_t)d, f16), out[d]);
    }
}

static void att_query(eng_ctx *c, int layer, const uint32_t *blocks, int kvh, const att_q *aq,
                      float *sc)
{
    if (c->kv_f16)
        att_query_f(c, layer, blocks, kvh, aq, sc, true);
    else
        att_query_f(c, layer, blocks, kvh, aq, sc, false);
}

/* ---- the vector path: AV_LANES keys (or dimensions) per vector, 512- or 256-bit */
#if ENG_HAVE_F16C
/* the n (1, 2, 4 or 8) halfs at p in the low words of an xmm, the others 0 */
static inline __m128i load_halfs(const uint16_t *p, int n)
{
    uint32_t w = 0;
    switch (n) {
    case 8: return _mm_loadu_si128((const __m128i *)(const void *)p);
    case 4: return _mm_loadl_epi64((const __m128i *)(const void *)p);
    case 2: memcpy(&w, p, 4); return _mm_cvtsi32_si128((int)w);
    default: return _mm_cvtsi32_si128((int)p[0]);
    }
}
#endif
#if defined(__AVX512F__) && defined(__FMA__) && ENG_HAVE_F16C
#define AV_LANES 16
#define AV_SET 4 /* queries computed together: 16 score and 16 output accumulators */
#define AV_VN 4  /* vectors of output dimensions per pass over V */
typedef __m512 av_f;
static inline av_f av_zero(void) { return _mm512_setzero_ps(); }
static inline av_f av_set1(float x) { return _mm512_set1_ps(x); }
static inline av_f av_add(av_f a, av_f b) { return _mm512_add_ps(a, b); }
static inline av_f av_mul(av_f a, av_f b) { return _mm512_mul_ps(a, b); }
static inline av_f av_fma(av_f a, av_f b, av_f c) { return _mm512_fmadd_ps(a, b, c); }
static inline void av_store(float *p, av_f v) { _mm512_storeu_ps(p, v); }
static inline av_f av_load(const void *b, size_t i, const bool f16)
{
    if (!f16) return _mm512_loadu_ps((const float *)b + i);
    const uint16_t *h = (const uint16_t *)b + i;
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)h));
}
/* the lanes l < n */
static inline __mmask16 av_first(int n)
{
    return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u);
}
/* m with lanes l < n replaced by s when s > m (a NaN score never becomes the maximum) */
static inline av_f av_max_first(av_f m, av_f s, int n)
{
    return _mm512_mask_max_ps(m, av_first(n), s, m);
}
static inline float av_hmax(av_f m) { return _mm512_reduce_max_ps(m); }
/* av_load of the first n (< 16, a power of two) elements, the other lanes 0; av_store of
 * the first n lanes (blocks of fewer than 16 tokens) */
static inline av_f av_load_part(const void *b, size_t i, const bool f16, int n)
{
    if (!f16) return _mm512_maskz_loadu_ps(av_first(n), (const float *)b + i);
    return _mm512_cvtph_ps(_mm256_zextsi128_si256(load_halfs((const uint16_t *)b + i, n)));
}
static inline void av_store_part(float *p, av_f v, int n)
{
    _mm512_mask_storeu_ps(p, av_first(n), v);
}
#elif defined(__AVX2__) && defined(__FMA__) && ENG_HAVE_F16C
#define AV_LANES 8
#define AV_SET 3 /* 12 score accumulators of the 16 registers */
#define AV_VN 2
typedef __m256 av_f;
static inline av_f av_zero(void) { return _mm256_setzero_ps(); }
static inline av_f av_set1(float x) { return _mm256_set1_ps(x); }
static inline av_f av_add(av_f a, av_f b) { return _mm256_add_ps(a, b); }
static inline av_f av_mul(av_f a, av_f b) { return _mm256_mul_ps(a, b); }
static inline av_f av_fma(av_f a, av_f b, av_f c) { return _mm256_fmadd_ps(a, b, c); }
static inline void av_store(float *p, av_f v) { _mm256_storeu_ps(p, v); }
static inline av_f av_load(const void *b, size_t i, const bool f16)
{
    if (!f16) return _mm256_loadu_ps((const float *)b + i);
    const uint16_t *h = (const uint16_t *)b + i;
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)h));
}
static inline __m256i av_first(int n) { return first_lanes8(n); }
static inline av_f av_max_first(av_f m, av_f s, int n)
{
    return _mm256_blendv_ps(m, _mm256_max_ps(s, m), _mm256_castsi256_ps(av_first(n)));
}
static inline float av_hmax(av_f m)
{
    __m128 a = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    a = _mm_max_ps(a, _mm_movehl_ps(a, a));
    return _mm_cvtss_f32(_mm_max_ss(a, _mm_shuffle_ps(a, a, 1)));
}
static inline av_f av_load_part(const void *b, size_t i, const bool f16, int n)
{
    if (!f16) return _mm256_maskload_ps((const float *)b + i, av_first(n));
    return _mm256_cvtph_ps(load_halfs((const uint16_t *)b + i, n));
}
static inline void av_store_part(float *p, av_f v, int n) { _mm256_maskstore_ps(p, av_first(n), v); }
#endif

#if defined(AV_LANES)
#define ATT_SET AV_SET

/* NQ (1..AV_SET) queries of one sequence and kv head. Scores: per block, AV_LANES keys at a
 * time (a whole block when it is smaller, in the low lanes), each query's 4 chains in 4
 * accumulators; K of the next block and V of this one are prefetched a few lines per step
 * (the blocks are scattered, no hardware prefetcher follows them). Then each query's
 * softmax, then the V sums AV_VN vectors of dimensions at a time, each V row widened once
 * for all the queries. scores: NQ rows, ss apart. */
static inline __attribute__((always_inline)) void
att_set_v(eng_ctx *c, int layer, const uint32_t *blocks, int kvh, const att_q *qs, const int NQ,
          float *scores, size_t ss, const bool f16)
{
    const int D = c->D, bs = c->bs;
    const int kc = bs < AV_LANES ? bs : AV_LANES; /* keys per vector */
    const size_t esz = f16 ? 2 : 4, pf_step = (size_t)4 * (size_t)kc * esz;
    const av_f scale = av_set1(c->attn_scale);
    int n_max = 0, n_min = INT32_MAX;
    av_f mx[AV_SET];
    for (int j = 0; j < NQ; j++) {
        if (qs[j].n > n_max) n_max = qs[j].n;
        if (qs[j].n < n_min) n_min = qs[j].n;
        mx[j] = av_set1(-INFINITY);
    }
    for (int p0 = 0; p0 < n_max; p0 += bs) {
        const int nb = n_max - p0 < bs ? n_max - p0 : bs;
        const char *kb = blk_k(c, blocks[p0 / bs], layer, kvh);
        const char *kn =
            p0 + bs < n_max ? (const char *)blk_k(c, blocks[p0 / bs + 1], layer, kvh) : NULL;
        const char *vc = (const char *)blk_v(c, blocks[p0 / bs], layer, kvh);
        size_t pf = 0;
        for (int i0 = 0; i0 < nb; i0 += kc) {
            av_f acc[AV_SET][4];
            for (int j = 0; j < NQ; j++)
                for (int r = 0; r < 4; r++) acc[j][r] = av_zero();
            for (int d = 0; d < D; d += 4) {
                if (kn) prefetch_rows(kn + pf, pf_step);
                prefetch_rows(vc + pf, pf_step);
                pf += pf_step;
                for (int r = 0; r < 4; r++) {
                    const size_t at = (size_t)(d + r) * (size_t)bs + (size_t)i0;
                    const av_f k =
                        kc == AV_LANES ? av_load(kb, at, f16) : av_load_part(kb, at, f16, kc);
                    for (int j = 0; j < NQ; j++)
                        acc[j][r] = av_fma(av_set1(qs[j].q[d + r]), k, acc[j][r]);
                }
            }
            for (int j = 0; j < NQ; j++) {
                const av_f c01 = av_add(acc[j][0], acc[j][1]), c23 = av_add(acc[j][2], acc[j][3]);
                const av_f s = av_mul(av_add(c01, c23), scale);
                float *sp = scores + (size_t)j * ss + (size_t)(p0 + i0);
                if (kc == AV_LANES)
                    av_store(sp, s);
                else
                    av_store_part(sp, s, kc);
                const int live = qs[j].n - (p0 + i0);
                if (live > 0) mx[j] = av_max_first(mx[j], s, live < kc ? live : kc);
            }
        }
    }
    float inv[AV_SET];
    for (int j = 0; j < NQ; j++)
        inv[j] = 1.0f / softmax_exp(scores + (size_t)j * ss, qs[j].n, av_hmax(mx[j]));
    for (int d0 = 0; d0 < D; d0 += AV_VN * AV_LANES) {
        av_f o[AV_SET][AV_VN];
        for (int j = 0; j < NQ; j++)
            for (int k = 0; k < AV_VN; k++) o[j][k] = av_zero();
        for (int p0 = 0; p0 < n_max; p0 += bs) {
            const int nb = n_max - p0 < bs ? n_max - p0 : bs;
            const char *vb = blk_v(c, blocks[p0 / bs], layer, kvh);
            for (int i = 0; i < nb; i++) {
                const int p = p0 + i;
                const size_t row = (size_t)i * (size_t)D + (size_t)d0;
                av_f v[AV_VN];
                for (int k = 0; k < AV_VN; k++) v[k] = av_load(vb, row + (size_t)k * AV_LANES, f16);
                for (int j = 0; j < NQ; j++) {
                    if (p >= n_min && p >= qs[j].n) continue; /* past query j's last position */
                    const av_f a = av_set1(scores[(size_t)j * ss + (size_t)p] * inv[j]);
                    for (int k = 0; k < AV_VN; k++) o[j][k] = av_fma(a, v[k], o[j][k]);
                }
            }
        }
        for (int j = 0; j < NQ; j++)
            for (int k = 0; k < AV_VN; k++) av_store(qs[j].out + d0 + k * AV_LANES, o[j][k]);
    }
}

static bool att_set_vector(eng_ctx *c, int layer, const uint32_t *blocks, int kvh,
                           const att_q *qs, int nq, float *scores, size_t ss)
{
    const bool f16 = c->kv_f16;
#define ATT_SET_CASE(N)                                                                         \
    case N:                                                                                     \
        if (f16)                                                                                \
            att_set_v(c, layer, blocks, kvh, qs, N, scores, ss, true);                          \
        else                                                                                    \
            att_set_v(c, layer, blocks, kvh, qs, N, scores, ss, false);                         \
        return true;
    switch (nq) {
    ATT_SET_CASE(1)
    ATT_SET_CASE(2)
    ATT_SET_CASE(3)
#if AV_SET >= 4
    ATT_SET_CASE(4)
#endif
    default: return false;
    }
#undef ATT_SET_CASE
}
#else
#define ATT_SET 4
#endif

/* the vector path serves the context when a pass over V takes whole vectors of dimensions
 * (and the block size is a power of two, as kvcache wants: a vector of keys is either part
 * of a block or, for blocks of fewer than AV_LANES tokens, one whole block) */
static bool att_vector(const eng_ctx *c)
{
#if defined(AV_LANES)
    const int bs = c->bs;
    return (bs % AV_LANES == 0 || AV_LANES % bs == 0) && c->D % (AV_VN * AV_LANES) == 0;
#else
    (void)c;
    return false;
#endif
}

/* nq (<= ATT_SET) queries of one sequence and kv head: the vector kernel when `vector`
 * (att_vector), else one query at a time, an element at a time; the same bits either way.
 * scores: ATT_SET rows, ss apart. */
static void att_set(eng_ctx *c, bool vector, int layer, const uint32_t *blocks, int kvh,
                    const att_q *qs, int nq, float *scores, size_t ss)
{
#if defined(AV_LANES)
    if (vector && att_set_vector(c, layer, blocks, kvh, qs, nq, scores, ss)) return;
#else
    (void)vector;
    (void)ss;
#endif
    for (int j = 0; j < nq; j++) att_query(c, layer, blocks, kvh, &qs[j], scores);
}

typedef struct attn_job {
    eng_ctx *c;
    int layer;
    int nt;
    long n_items;
    int group; /* query heads per item (attn_worker) */
    bool vector; /* att_vector */
    _Alignas(64) atomic_long next;
} attn_job;

/* Work items are claimed from an atomic counter. An item is a tile (ATT_TQ consecutive tokens
 * of one sequence at most) and either one query head (group == 1) or the `group` query heads
 * that share one kv head. Its queries (head by head, token by token) are computed ATT_SET at
 * a time, each set reading the kv head's K and V once; the sets of an item run on one thread,
 * so that later ones find the rows in this core's cache. Single heads when there are few
 * items (one decoding sequence), so that every thread still gets work. None of this changes
 * a bit (see above). */
static void attn_worker(void *arg, int ith, int nth)
{
    attn_job *j = arg;
    eng_ctx *c = j->c;
    (void)nth;
    float *scores = c->th_scores + (size_t)ith * c->th_scores_stride;
    const size_t ss = c->th_scores_stride / ATT_SET;
    const int per_tile = c->H / j->group, hpk = c->H / c->HKV;
    for (;;) {
        const long it = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (it >= j->n_items) break;
        const int ti = (int)(it / per_tile), h0 = (int)(it % per_tile) * j->group;
        const int t0 = c->tile_t0[ti], t1 = ti + 1 < c->n_tiles ? c->tile_t0[ti + 1] : j->nt;
        const uint32_t *blocks = c->entry_blocks[c->tok_entry[t0]];
        att_q qs[ATT_SET];
        int nq = 0;
        for (int h = h0; h < h0 + j->group; h++)
            for (int t = t0; t < t1; t++) {
                qs[nq].q = c->q + (size_t)t * c->q_dim + (size_t)h * c->D;
                qs[nq].out = c->att + (size_t)t * c->q_dim + (size_t)h * c->D;
                qs[nq].n = c->tok_pos[t] + 1;
                if (++nq == ATT_SET || (h == h0 + j->group - 1 && t == t1 - 1)) {
                    att_set(c, j->vector, j->layer, blocks, h0 / hpk, qs, nq, scores, ss);
                    nq = 0;
                }
            }
    }
}

/* group for attn_worker: the query heads per kv head when that leaves ATT_MIN_ITEMS items
 * per thread, else 1 */
static int attn_group(const eng_ctx *c)
{
    const long grouped = (long)c->n_tiles * c->HKV;
    return grouped >= (long)ATT_MIN_ITEMS * c->n_threads ? c->H / c->HKV : 1;
}

/* the step's attention tiles: runs of up to ATT_TQ tokens of one entry (batch tokens of an
 * entry are consecutive, at consecutive positions) */
static void attn_tiles(eng_ctx *c, int nt)
{
    int n = 0;
    for (int t = 0; t < nt;) {
        int len = 1;
        while (len < ATT_TQ && t + len < nt && c->tok_entry[t + len] == c->tok_entry[t]) len++;
        c->tile_t0[n++] = t;
        t += len;
    }
    c->n_tiles = n;
}

/* ------------------------------------------------------------------ create / free */

static int checked_alloc(void **p, size_t n, size_t sz)
{
    if (n && sz > SIZE_MAX / n) return -EOVERFLOW;
    *p = calloc(n ? n : 1, sz);
    return *p ? 0 : -ENOMEM;
}

void eng_ctx_free(eng_ctx *c)
{
    if (!c) return;
    eng_pool_free(c->pool);
    free(c->x); free(c->xb); free(c->q); free(c->k); free(c->v); free(c->att);
    free(c->hb); free(c->hb2); free(c->gath);
    free(c->inv_freq); free(c->rope_cs);
    free(c->tok_entry); free(c->tok_pos); free(c->tile_t0); free(c->entry_t0); free(c->entry_blocks);
    free(c->th_scores);
    free(c->act);
    free(c->mm_share[0]);
    free(c->mm_share[1]);
    free((void *)c->mm_taken);
    free(c->mm_meas);
    free(c);
}

int eng_ctx_n_vocab(const eng_ctx *c) { return c->V; }
int eng_ctx_n_ctx(const eng_ctx *c) { return c->n_ctx; }
int eng_ctx_n_threads(const eng_ctx *c) { return c->n_threads; }
int eng_ctx_max_batch_tokens(const eng_ctx *c) { return c->max_tokens; }
int eng_ctx_max_batch_seqs(const eng_ctx *c) { return c->max_seqs; }

int eng_ctx_set_row_shares(eng_ctx *c, const float *shares)
{
    double sum = 0;
    for (int i = 0; i < c->n_threads; i++) {
        if (!(shares[i] > 0.0f) || !isfinite(shares[i])) return -EINVAL;
        sum += shares[i];
    }
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < c->n_threads; i++) c->mm_share[k][i] = (float)(shares[i] / sum);
    return 0;
}

void eng_ctx_set_attn_elementwise(eng_ctx *c, bool on) { c->attn_elementwise = on; }

int eng_ctx_create(const eng_model *model, kv_cache *kv, const eng_ctx_config *cfg,
                   eng_ctx **ret, eng_error *err)
{
    if (!model || !kv || !cfg || !ret)
        return eng_error_set(err, -EINVAL, "eng_ctx_create: missing argument");
    const eng_hparams *hp = &model->hp;
    if (cfg->n_threads < 0 || cfg->n_threads > ENG_POOL_MAX_THREADS)
        return eng_error_set(err, -EINVAL, "n_threads %d is out of range [0, %d]",
                             cfg->n_threads, ENG_POOL_MAX_THREADS);
    if (cfg->max_batch_tokens < 1 || cfg->max_batch_tokens > (1 << 20))
        return eng_error_set(err, -EINVAL, "max_batch_tokens %d is out of range [1, %d]",
                             cfg->max_batch_tokens, 1 << 20);
    if (cfg->max_batch_seqs < 1 || cfg->max_batch_seqs > cfg->max_batch_tokens)
        return eng_error_set(err, -EINVAL, "max_batch_seqs %d is out of range [1, %d]",
                             cfg->max_batch_seqs, cfg->max_batch_tokens);
    if (cfg->n_ctx < 0 || (uint32_t)cfg->n_ctx > (1u << 24))
        return eng_error_set(err, -EINVAL, "n_ctx %d is out of range [0, %d]", cfg->n_ctx,
                             1 << 24);
    if (hp->rope_scaling_type == ENG_ROPE_SCALING_YARN)
        return eng_error_set(err, -ENOTSUP, "model uses YaRN RoPE scaling, which is not supported");
    if (strcmp(model->arch, "llama") != 0)
        return eng_error_set(err, -ENOTSUP, "architecture \"%s\" is not supported", model->arch);
    if (hp->n_head % hp->n_head_kv != 0)
        return eng_error_set(err, -EINVAL, "n_head %u is not a multiple of n_head_kv %u",
                             hp->n_head, hp->n_head_kv);

    /* kv geometry must match the model */
    const kv_config *kcp = kv_get_config(kv);
    const kv_config kc = *kcp;
    if (kc.n_layer != hp->n_layer || kc.n_head_kv != hp->n_head_kv || kc.head_dim != hp->head_dim)
        return eng_error_set(err, -EINVAL,
                             "kv cache geometry (layers %u, kv heads %u, head_dim %u) does not "
                             "match the model (%u, %u, %u)",
                             (unsigned)kc.n_layer, (unsigned)kc.n_head_kv, (unsigned)kc.head_dim,
                             hp->n_layer, hp->n_head_kv, hp->head_dim);

    eng_ctx *c = calloc(1, sizeof *c);
    if (!c) return eng_error_set(err, -ENOMEM, "engine context: out of memory");
    c->model = model;
    c->kv = kv;
    c->n_threads = cfg->n_threads ? cfg->n_threads : eng_physical_cores();
    c->max_tokens = cfg->max_batch_tokens;
    c->max_seqs = cfg->max_batch_seqs;
    c->n_ctx = cfg->n_ctx ? cfg->n_ctx : (int)hp->n_ctx_train;
    c->L = (int)hp->n_layer;
    c->E = (int)hp->n_embd;
    c->F = (int)hp->n_ff;
    c->H = (int)hp->n_head;
    c->HKV = (int)hp->n_head_kv;
    c->D = (int)hp->head_dim;
    c->RD = (int)hp->rope_dim;
    c->V = (int)hp->n_vocab;
    c->q_dim = c->H * c->D;
    c->kv_dim = c->HKV * c->D;
    c->rms_eps = hp->rms_eps;
    c->neox = false; /* GGUF "llama": adjacent pairs */
    c->attn_scale = 1.0f / sqrtf((float)c->D);
    c->bs = (int)kc.block_size;
    c->kv_f16 = kc.dtype == KV_F16;
    c->rope_fused = !c->neox && c->D % 2 == 0 && c->RD % 2 == 0;

    int rc = eng_pool_create(c->n_threads, &c->pool, err);
    if (rc) {
        eng_ctx_free(c);
        return rc;
    }
    const size_t R = (size_t)c->max_tokens, G = (size_t)c->max_seqs, nth = (size_t)c->n_threads;
    int wide = c->E > c->q_dim ? c->E : c->q_dim;
    rc = 0;
    rc = rc ? rc : checked_alloc((void **)&c->x, R * (size_t)c->E, sizeof(float));
    rc = rc ? rc : checked_alloc((void **)&c->xb, R * (size_t)wide, sizeof(float));
    rc = rc ? rc : checked_alloc((void **)&c->q, R * (size_t)c->q_dim, sizeof(float));
    rc = rc ? rc : checked_alloc((void **)&c->k, R * (size_t)c->kv_dim, sizeof(float));
    rc = rc ? rc : checked_alloc((void **)&c->v, R * (size_t)c->kv_dim, sizeof(float));
    rc = rc ? rc : checked_alloc((void **)&c->att, R * (size_t)c->q_dim, sizeof(float));
    rc = rc ? rc : checked_alloc((void **)&c->hb, R * (size_t)c->F, sizeof(float));
    rc = rc ? rc : checked_alloc((void **)&c->hb2, R * (size_t)c->F, sizeof(float));
    rc = rc ? rc : checked_alloc((void **)&c->gath, G * (size_t)c->E, sizeof(float));
    rc = rc ? rc : checked_alloc((void **)&c->inv_freq, (size_t)c->RD / 2 + 1, sizeof(float));
    rc = rc ? rc : checked_alloc((void **)&c->rope_cs, (size_t)c->max_tokens * (size_t)c->RD + 1,
                                 sizeof(float));
    rc = rc ? rc : checked_alloc((void **)&c->tok_entry, (size_t)c->max_tokens, sizeof(int32_t));
    rc = rc ? rc : checked_alloc((void **)&c->tok_pos, (size_t)c->max_tokens, sizeof(int32_t));
    rc = rc ? rc : checked_alloc((void **)&c->tile_t0, (size_t)c->max_tokens, sizeof(int32_t));
    rc = rc ? rc : checked_alloc((void **)&c->mm_share[0], nth, sizeof(float));
    rc = rc ? rc : checked_alloc((void **)&c->mm_share[1], nth, sizeof(float));
    rc = rc ? rc : checked_alloc((void **)&c->mm_taken, nth, sizeof *c->mm_taken);
    if (rc == 0) {
        for (size_t i = 0; i < nth; i++) c->mm_share[0][i] = c->mm_share[1][i] = 1.0f / (float)nth;
        c->mm_meas = aligned_alloc(64, nth * sizeof *c->mm_meas); /* a multiple of 64 */
        if (!c->mm_meas) rc = -ENOMEM;
    }
    rc = rc ? rc : checked_alloc((void **)&c->entry_t0, (size_t)c->max_seqs, sizeof(int32_t));
    rc = rc ? rc : checked_alloc((void **)&c->entry_blocks, (size_t)c->max_seqs,
                                 sizeof(uint32_t *));
    {
        size_t ab = 0;
        const int ns[3] = {c->E, c->q_dim, c->F};
        for (int i = 0; i < 3; i++) {
            size_t b = eng_act_bytes((size_t)ns[i], R);
            if (b > ab) ab = b;
        }
        if (ab > 0 && posix_memalign(&c->act, 64, ab) != 0) {
            c->act = NULL;
            rc = -ENOMEM;
        }
    }
    /* attn_worker: ATT_SET rows of scores, each whole vectors of keys long (att_set_v) */
    c->th_scores_stride = (size_t)ATT_SET * (((size_t)c->n_ctx + 15) & ~(size_t)15);
    rc = rc ? rc : checked_alloc((void **)&c->th_scores, nth * c->th_scores_stride, sizeof(float));
    if (rc) {
        eng_ctx_free(c);
        return eng_error_set(err, rc, "engine context: cannot allocate scratch for %d tokens",
                             c->max_tokens);
    }
    for (int i = 0; i < c->RD / 2; i++) {
        float f = 1.0f / powf(hp->rope_base, (float)(2 * i) / (float)c->RD);
        if (hp->rope_freqs) f /= hp->rope_freqs[i];
        if (hp->rope_scaling_type == ENG_ROPE_SCALING_LINEAR && hp->rope_scale_factor > 0.0f)
            f /= hp->rope_scale_factor;
        c->inv_freq[i] = f;
    }
    /* OpenBLAS: pinned thread count, set here (engine thread), never from our workers */
    openblas_set_num_threads(c->n_threads);
    *ret = c;
    return 0;
}

/* ------------------------------------------------------------------ step */

static int validate(eng_ctx *c, const eng_batch_entry *b, int n, int *ret_nt, int *ret_nl,
                    eng_error *err)
{
    if (n < 0 || n > c->max_seqs)
        return eng_error_set(err, -EINVAL, "batch has %d entries (max_batch_seqs %d)", n,
                             c->max_seqs);
    long nt = 0;
    int nl = 0;
    for (int i = 0; i < n; i++) {
        const eng_batch_entry *e = &b[i];
        if (e->n_tokens < 1 || !e->tokens)
            return eng_error_set(err, -EINVAL, "batch entry %d (seq %u) has %d tokens", i,
                                 e->seq, e->n_tokens);
        nt += e->n_tokens;
        if (nt > c->max_tokens)
            return eng_error_set(err, -EINVAL, "batch has more than max_batch_tokens (%d) tokens",
                                 c->max_tokens);
        if (e->pos0 < 0 || (long)e->pos0 + e->n_tokens > c->n_ctx)
            return eng_error_set(err, -EINVAL,
                                 "batch entry %d (seq %u): positions %d..%ld exceed the context "
                                 "length %d",
                                 i, e->seq, e->pos0, (long)e->pos0 + e->n_tokens - 1, c->n_ctx);
        for (int t = 0; t < e->n_tokens; t++)
            if (e->tokens[t] < 0 || e->tokens[t] >= c->V)
                return eng_error_set(err, -EINVAL,
                                     "batch entry %d (seq %u): token id %d at position %d is not "
                                     "in [0, %d)",
                                     i, e->seq, e->tokens[t], e->pos0 + t, c->V);
        for (int j = 0; j < i; j++)
            if (b[j].seq == e->seq)
                return eng_error_set(err, -EINVAL, "sequence %u appears twice in the batch",
                                     e->seq);
        if (!kv_seq_valid(c->kv, e->seq))
            return eng_error_set(err, -EINVAL, "batch entry %d: no kv sequence %u", i, e->seq);
        long len = (long)kv_seq_len(c->kv, e->seq);
        if (len != (long)e->pos0 + e->n_tokens)
            return eng_error_set(err, -EINVAL,
                                 "batch entry %d (seq %u): kv_seq_len is %ld, expected pos0 + "
                                 "n_tokens = %ld (append the tokens before eng_step)",
                                 i, e->seq, len, (long)e->pos0 + e->n_tokens);
        if (e->want_logits) nl++;
    }
    *ret_nt = (int)nt;
    *ret_nl = nl;
    return 0;
}

int eng_step(eng_ctx *c, const eng_batch_entry *batch, int n_entries, float *ret_logits,
             eng_error *err)
{
    int nt = 0, nl = 0;
    int rc = validate(c, batch, n_entries, &nt, &nl, err);
    if (rc) return rc;
    if (nl > 0 && !ret_logits)
        return eng_error_set(err, -EINVAL, "%d entries want logits but ret_logits is NULL", nl);
    if (n_entries == 0) return 0;
    const eng_model *m = c->model;
    const int E = c->E, RD = c->RD;

    /* token tables, block tables, embeddings, RoPE cos/sin */
    int t = 0;
    double attn_work = 0; /* positions attended over, summed over the batch's tokens */
    for (int e = 0; e < n_entries; e++) {
        const eng_batch_entry *be = &batch[e];
        c->entry_t0[e] = t;
        uint32_t nb = 0;
        c->entry_blocks[e] = kv_seq_blocks(c->kv, be->seq, &nb);
        for (int i = 0; i < be->n_tokens; i++, t++) {
            c->tok_entry[t] = e;
            c->tok_pos[t] = be->pos0 + i;
            attn_work += be->pos0 + i + 1;
            eng_dequant_row(m->tok_embd.type,
                            (const char *)m->tok_embd.data +
                                (size_t)be->tokens[i] * m->tok_embd.row_bytes,
                            c->x + (size_t)t * E, (size_t)E);
            float *cs = c->rope_cs + (size_t)t * RD;
            for (int k = 0; k < RD / 2; k++) {
                float th = (float)c->tok_pos[t] * c->inv_freq[k];
                cs[2 * k] = cosf(th);
                cs[2 * k + 1] = sinf(th);
            }
        }
    }

    /* Per layer: 5 pool runs. Q/K/V projections in one run (with RoPE and the K/V stores
     * on the rows just computed), attention, the output projection (+ residual), gate and up
     * together (+ SwiGLU), the down projection (+ residual). The RMSNorms need whole rows:
     * each runs before its matrices' run, split over the threads by tokens with the
     * activations' quantization (mm_prepare). */
    attn_tiles(c, nt);
    const int group = attn_group(c);
    const bool vector = att_vector(c) && !c->attn_elementwise;
    for (int l = 0; l < c->L; l++) {
        const eng_layer *ly = &m->layers[l];
        {
            mm_run j = {.c = c, .nt = nt, .layer = l};
            mm_norm(&j, c->x, ly->attn_norm); /* xb = RMSNorm(x), before the kernels */
            const bool f = c->rope_fused;
            mm_add(&j, &ly->wq, NULL, c->xb, c->q, NULL, f ? POST_ROPE : POST_NONE);
            mm_add(&j, &ly->wk, NULL, c->xb, c->k, NULL, f ? POST_ROPE_K : POST_NONE);
            mm_add(&j, &ly->wv, NULL, c->xb, c->v, NULL, f ? POST_STORE_V : POST_NONE);
            mm_exec(c, &j);
        }
        if (!c->rope_fused) {
            for (t = 0; t < nt; t++) {
                const float *cs = c->rope_cs + (size_t)t * RD;
                for (int h = 0; h < c->H; h++)
                    rope_head(c->q + (size_t)t * c->q_dim + (size_t)h * c->D, cs, RD, c->neox);
                for (int h = 0; h < c->HKV; h++)
                    rope_head(c->k + (size_t)t * c->kv_dim + (size_t)h * c->D, cs, RD, c->neox);
            }
            store_kv_range(c, l, false, c->k, nt, 0, (size_t)c->kv_dim);
            store_kv_range(c, l, true, c->v, nt, 0, (size_t)c->kv_dim);
        }
        {
            attn_job aj = {.c = c, .layer = l, .nt = nt, .group = group,
                           .n_items = (long)c->n_tiles * (c->H / group), .vector = vector};
            atomic_init(&aj.next, 0);
            if (attn_work * c->H * c->D * 2.0 < ENG_PAR_MIN_WORK || aj.n_items < 2)
                attn_worker(&aj, 0, 1);
            else
                eng_pool_run(c->pool, attn_worker, &aj);
        }
        {
            mm_run j = {.c = c, .nt = nt, .layer = l};
            mm_add(&j, &ly->wo, NULL, c->att, c->xb, NULL, POST_ADD);
            mm_exec(c, &j);
        }
        {
            mm_run j = {.c = c, .nt = nt, .layer = l};
            mm_norm(&j, c->x, ly->ffn_norm);
            mm_add(&j, &ly->w_gate, &ly->w_up, c->xb, c->hb, c->hb2, POST_SWIGLU);
            mm_exec(c, &j);
        }
        {
            mm_run j = {.c = c, .nt = nt, .layer = l};
            mm_add(&j, &ly->w_down, NULL, c->hb, c->xb, NULL, POST_ADD);
            mm_exec(c, &j);
        }
    }

    for (int e = 0; e < n_entries; e++) {
        rc = kv_seq_commit(c->kv, batch[e].seq);
        if (rc) return eng_error_set(err, rc, "kv_seq_commit(seq %u) failed", batch[e].seq);
    }

    if (nl > 0) {
        /* final norm of each wanted entry's last token, then the logits straight into
         * ret_logits (nl rows of n_vocab) */
        const float *xs[RMS_ROWS];
        int g = 0, n = 0;
        for (int e = 0; e < n_entries; e++) {
            if (!batch[e].want_logits) continue;
            xs[n++] = c->x + (size_t)(c->entry_t0[e] + batch[e].n_tokens - 1) * E;
            if (n == RMS_ROWS) {
                rmsnorm_rows(c->gath + (size_t)g * E, (size_t)E, xs, m->out_norm, n, E, c->rms_eps);
                g += n;
                n = 0;
            }
        }
        if (n) rmsnorm_rows(c->gath + (size_t)g * E, (size_t)E, xs, m->out_norm, n, E, c->rms_eps);
        matmul(c, &m->output, c->gath, nl, ret_logits);
    }
    return 0;
}
