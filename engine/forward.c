/* The batched Llama forward pass. Contract and batch-invariance rules: engine.h. */
#include "engine.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "threadpool.h"

/* multiply-adds below which a kernel runs on the calling thread alone */
#define ENG_PAR_MIN_WORK 65536.0

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

    /* kv geometry */
    int bs;             /* tokens per block */
    bool kv_f16;

    /* scratch (sized at creation) */
    float *x, *xb, *q, *k, *v, *att, *hb, *hb2;
    float *gath, *logit_buf;
    float *inv_freq;    /* RD/2 */
    float *rope_cs;     /* max_tokens * RD: cos, sin interleaved per pair */
    int32_t *tok_entry; /* max_tokens: entry index of each batch token */
    int32_t *tok_pos;   /* max_tokens */
    int32_t *entry_t0;  /* max_seqs: first batch token of each entry */
    const uint32_t **entry_blocks; /* max_seqs: block table of each entry */
    float *th_scores;   /* n_threads * th_scores_stride */
    size_t th_scores_stride; /* group * n_ctx + 2 * group */
    float *th_kbuf;     /* n_threads * bs * D */
    float *th_vbuf;     /* n_threads * bs * D */
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

/* ------------------------------------------------------------------ matmul */

typedef struct mm_job {
    const eng_mat *w;
    const float *x;
    size_t nt;
    float *y;
} mm_job;

static void mm_worker(void *arg, int ith, int nth)
{
    const mm_job *j = arg;
    long r0, r1;
    eng_split_range((long)j->w->rows, ith, nth, &r0, &r1);
    if (r0 >= r1) return;
    eng_matmul_rows(j->w->type, j->w->data, j->w->row_bytes, (size_t)j->w->cols, j->x,
                    (size_t)j->w->cols, j->nt, j->y, (size_t)j->w->rows, (size_t)r0,
                    (size_t)r1);
}

/* y[t*rows + r] = W row r . x[t*cols ...] for t < nt, for every weight type (F32 included):
 * eng_matmul_rows, rows split across the pool. See engine.h for why F32 does not go through
 * cblas_sgemm. */
static void matmul(eng_ctx *c, const eng_mat *w, const float *x, int nt, float *y)
{
    mm_job j = {w, x, (size_t)nt, y};
    /* small jobs: waking the workers costs more than the work (the split never changes
     * the numbers, so this is only a speed choice) */
    if ((double)w->rows * (double)w->cols * nt < ENG_PAR_MIN_WORK)
        mm_worker(&j, 0, 1);
    else
        eng_pool_run(c->pool, mm_worker, &j);
}

/* ------------------------------------------------------------------ small per-token ops */

static void rmsnorm(float *o, const float *x, const float *w, int n, float eps)
{
    float ss = 0.0f;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    ss /= (float)n;
    ss += eps;
    ss = 1.0f / sqrtf(ss);
    for (int i = 0; i < n; i++) o[i] = w[i] * (ss * x[i]);
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

/* fixed-order dot product (8 lanes, then a fixed tree, then the tail) */
static inline float dot_f32(const float *a, const float *b, int n)
{
    float l[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) l[j] += a[i + j] * b[i + j];
    float s = ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* ------------------------------------------------------------------ attention */

typedef struct attn_job {
    eng_ctx *c;
    int layer;
    int nt;
    const eng_batch_entry *batch;
} attn_job;

static const float *load_block(eng_ctx *c, const void *src, float *buf, int n_tok)
{
    const size_t n = (size_t)n_tok * (size_t)c->D;
    if (!c->kv_f16) return src;
    eng_f16_to_f32_row(src, buf, n);
    return buf;
}

/* Work items are (token, kv head): the K/V blocks are converted once for all the query heads
 * that share that kv head (GQA group). Per query head the arithmetic is fixed: scores in
 * position order, softmax (max, exp, sum in position order), then the weighted V sum in
 * position order. */
static void attn_worker(void *arg, int ith, int nth)
{
    const attn_job *j = arg;
    eng_ctx *c = j->c;
    const int D = c->D, bs = c->bs, HKV = c->HKV;
    const int group = c->H / c->HKV;
    long i0, i1;
    eng_split_range((long)j->nt * HKV, ith, nth, &i0, &i1);
    float *scores = c->th_scores + (size_t)ith * c->th_scores_stride; /* group * n_ctx */
    float *mx = scores + (size_t)group * (size_t)c->n_ctx;             /* group */
    float *inv = mx + group;                                            /* group */
    float *kbuf = c->th_kbuf + (size_t)ith * (size_t)bs * (size_t)D;
    float *vbuf = c->th_vbuf + (size_t)ith * (size_t)bs * (size_t)D;

    for (long it = i0; it < i1; it++) {
        const int t = (int)(it / HKV), kvh = (int)(it % HKV);
        const int e = c->tok_entry[t];
        const int n_pos = c->tok_pos[t] + 1;
        const uint32_t *blocks = c->entry_blocks[e];
        const float *q0 = c->q + (size_t)t * c->q_dim + (size_t)kvh * group * D;
        float *out0 = c->att + (size_t)t * c->q_dim + (size_t)kvh * group * D;

        for (int g = 0; g < group; g++) mx[g] = -INFINITY;
        for (int p0 = 0; p0 < n_pos; p0 += bs) {
            const int nb = n_pos - p0 < bs ? n_pos - p0 : bs;
            const float *kb = load_block(c, blk_k(c, blocks[p0 / bs], j->layer, kvh), kbuf, nb);
            for (int g = 0; g < group; g++) {
                const float *qh = q0 + (size_t)g * D;
                float *sc = scores + (size_t)g * c->n_ctx + p0;
                float m = mx[g];
                for (int i = 0; i < nb; i++) {
                    float s_ = dot_f32(qh, kb + (size_t)i * D, D) * c->attn_scale;
                    sc[i] = s_;
                    if (s_ > m) m = s_;
                }
                mx[g] = m;
            }
        }
        for (int g = 0; g < group; g++) {
            float *sc = scores + (size_t)g * c->n_ctx;
            float sum = 0.0f;
            for (int p = 0; p < n_pos; p++) {
                float e_ = expf(sc[p] - mx[g]);
                sc[p] = e_;
                sum += e_;
            }
            inv[g] = 1.0f / sum;
            float *out = out0 + (size_t)g * D;
            for (int d = 0; d < D; d++) out[d] = 0.0f;
        }
        for (int p0 = 0; p0 < n_pos; p0 += bs) {
            const int nb = n_pos - p0 < bs ? n_pos - p0 : bs;
            const float *vb = load_block(c, blk_v(c, blocks[p0 / bs], j->layer, kvh), vbuf, nb);
            for (int g = 0; g < group; g++) {
                const float *sc = scores + (size_t)g * c->n_ctx + p0;
                float *out = out0 + (size_t)g * D;
                for (int i = 0; i < nb; i++) {
                    const float a = sc[i] * inv[g];
                    const float *vv = vb + (size_t)i * D;
                    for (int d = 0; d < D; d++) out[d] += a * vv[d];
                }
            }
        }
    }
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
    free(c->hb); free(c->hb2); free(c->gath); free(c->logit_buf);
    free(c->inv_freq); free(c->rope_cs);
    free(c->tok_entry); free(c->tok_pos); free(c->entry_t0); free(c->entry_blocks);
    free(c->th_scores); free(c->th_kbuf); free(c->th_vbuf);
    free(c);
}

int eng_ctx_n_vocab(const eng_ctx *c) { return c->V; }
int eng_ctx_n_ctx(const eng_ctx *c) { return c->n_ctx; }
int eng_ctx_n_threads(const eng_ctx *c) { return c->n_threads; }
int eng_ctx_max_batch_tokens(const eng_ctx *c) { return c->max_tokens; }
int eng_ctx_max_batch_seqs(const eng_ctx *c) { return c->max_seqs; }

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
    rc = rc ? rc : checked_alloc((void **)&c->logit_buf, G * (size_t)c->V, sizeof(float));
    rc = rc ? rc : checked_alloc((void **)&c->inv_freq, (size_t)c->RD / 2 + 1, sizeof(float));
    rc = rc ? rc : checked_alloc((void **)&c->rope_cs, (size_t)c->max_tokens * (size_t)c->RD + 1,
                                 sizeof(float));
    rc = rc ? rc : checked_alloc((void **)&c->tok_entry, (size_t)c->max_tokens, sizeof(int32_t));
    rc = rc ? rc : checked_alloc((void **)&c->tok_pos, (size_t)c->max_tokens, sizeof(int32_t));
    rc = rc ? rc : checked_alloc((void **)&c->entry_t0, (size_t)c->max_seqs, sizeof(int32_t));
    rc = rc ? rc : checked_alloc((void **)&c->entry_blocks, (size_t)c->max_seqs,
                                 sizeof(uint32_t *));
    const size_t group = (size_t)(c->H / c->HKV);
    c->th_scores_stride = group * (size_t)c->n_ctx + 2 * group;
    rc = rc ? rc : checked_alloc((void **)&c->th_scores, nth * c->th_scores_stride, sizeof(float));
    rc = rc ? rc : checked_alloc((void **)&c->th_kbuf, nth * (size_t)c->bs * (size_t)c->D,
                                 sizeof(float));
    rc = rc ? rc : checked_alloc((void **)&c->th_vbuf, nth * (size_t)c->bs * (size_t)c->D,
                                 sizeof(float));
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

static void write_kv(eng_ctx *c, int layer, int nt)
{
    const int D = c->D, bs = c->bs;
    for (int t = 0; t < nt; t++) {
        const uint32_t *blocks = c->entry_blocks[c->tok_entry[t]];
        const int pos = c->tok_pos[t];
        const uint32_t blk = blocks[pos / bs];
        const size_t off = (size_t)(pos % bs) * (size_t)D;
        for (int h = 0; h < c->HKV; h++) {
            const float *ks = c->k + (size_t)t * c->kv_dim + (size_t)h * D;
            const float *vs = c->v + (size_t)t * c->kv_dim + (size_t)h * D;
            void *kd = blk_k(c, blk, layer, h);
            void *vd = blk_v(c, blk, layer, h);
            if (c->kv_f16) {
                eng_f32_to_f16_row(ks, (uint16_t *)kd + off, (size_t)D);
                eng_f32_to_f16_row(vs, (uint16_t *)vd + off, (size_t)D);
            } else {
                memcpy((float *)kd + off, ks, (size_t)D * sizeof(float));
                memcpy((float *)vd + off, vs, (size_t)D * sizeof(float));
            }
        }
    }
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

    for (int l = 0; l < c->L; l++) {
        const eng_layer *ly = &m->layers[l];
        for (t = 0; t < nt; t++)
            rmsnorm(c->xb + (size_t)t * E, c->x + (size_t)t * E, ly->attn_norm, E, c->rms_eps);
        matmul(c, &ly->wq, c->xb, nt, c->q);
        matmul(c, &ly->wk, c->xb, nt, c->k);
        matmul(c, &ly->wv, c->xb, nt, c->v);
        for (t = 0; t < nt; t++) {
            const float *cs = c->rope_cs + (size_t)t * RD;
            for (int h = 0; h < c->H; h++)
                rope_head(c->q + (size_t)t * c->q_dim + (size_t)h * c->D, cs, RD, c->neox);
            for (int h = 0; h < c->HKV; h++)
                rope_head(c->k + (size_t)t * c->kv_dim + (size_t)h * c->D, cs, RD, c->neox);
        }
        write_kv(c, l, nt);
        attn_job aj = {c, l, nt, batch};
        if (attn_work * c->H * c->D * 2.0 < ENG_PAR_MIN_WORK || nt * c->HKV < 2)
            attn_worker(&aj, 0, 1);
        else
            eng_pool_run(c->pool, attn_worker, &aj);
        matmul(c, &ly->wo, c->att, nt, c->xb);
        for (size_t i = 0; i < (size_t)nt * E; i++) c->x[i] += c->xb[i];

        for (t = 0; t < nt; t++)
            rmsnorm(c->xb + (size_t)t * E, c->x + (size_t)t * E, ly->ffn_norm, E, c->rms_eps);
        matmul(c, &ly->w_gate, c->xb, nt, c->hb);
        matmul(c, &ly->w_up, c->xb, nt, c->hb2);
        for (size_t i = 0; i < (size_t)nt * c->F; i++) {
            float g = c->hb[i];
            c->hb[i] = g / (1.0f + expf(-g)) * c->hb2[i];
        }
        matmul(c, &ly->w_down, c->hb, nt, c->xb);
        for (size_t i = 0; i < (size_t)nt * E; i++) c->x[i] += c->xb[i];
    }

    for (int e = 0; e < n_entries; e++) {
        rc = kv_seq_commit(c->kv, batch[e].seq);
        if (rc) return eng_error_set(err, rc, "kv_seq_commit(seq %u) failed", batch[e].seq);
    }

    if (nl > 0) {
        int g = 0;
        for (int e = 0; e < n_entries; e++) {
            if (!batch[e].want_logits) continue;
            int last = c->entry_t0[e] + batch[e].n_tokens - 1;
            rmsnorm(c->gath + (size_t)g * E, c->x + (size_t)last * E, m->out_norm, E, c->rms_eps);
            g++;
        }
        matmul(c, &m->output, c->gath, nl, c->logit_buf);
        memcpy(ret_logits, c->logit_buf, (size_t)nl * (size_t)c->V * sizeof(float));
    }
    return 0;
}
