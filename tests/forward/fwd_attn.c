/* Attention's vector kernels against its element-at-a-time form, bit for bit, on synthetic
 * models whose shapes the kernels serve (head dim 64 and 128, blocks of 1 to 64 tokens,
 * f16 and f32 K/V, grouped, multi-query and per-head attention): prompts computed in tiles
 * of tokens and decode steps, one sequence alone and two batched with other chunkings. The
 * element-at-a-time form itself is checked against a double-precision reference in
 * fwd_synth. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "fwd_rand.h"
#include "testutil.h"

enum { L = 2, E = 128, F = 96, V = 50, NCTX = 128, NA = 80, NB = 61, PA = 45, PB = 21 };

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static float *rnd(size_t n, float scale, float add) { return fwd_rnd(&rng, n, scale, add); }

typedef struct synth {
    eng_model m;
    eng_layer layers[L];
    float *w[L][9], *emb, *outn;
} synth;

static void synth_make(synth *s, int H, int HKV, int D)
{
    memset(s, 0, sizeof *s);
    eng_hparams *hp = &s->m.hp;
    hp->n_layer = L; hp->n_embd = E; hp->n_ff = F; hp->n_head = (uint32_t)H;
    hp->n_head_kv = (uint32_t)HKV; hp->head_dim = (uint32_t)D; hp->rope_dim = (uint32_t)D;
    hp->n_ctx_train = NCTX; hp->n_vocab = V; hp->rms_eps = 1e-5f; hp->rope_base = 10000.0f;
    strcpy(s->m.arch, "llama");
    s->emb = rnd((size_t)V * E, 1.0f, 0.0f);
    s->outn = rnd(E, 0.2f, 1.0f);
    s->m.tok_embd = fwd_mat_f32(s->emb, V, E);
    s->m.output = s->m.tok_embd;
    s->m.tied_output = true;
    s->m.out_norm = s->outn;
    for (int l = 0; l < L; l++) {
        float **w = s->w[l];
        w[0] = rnd(E, 0.2f, 1.0f);
        w[1] = rnd(E, 0.2f, 1.0f);
        /* large Q/K weights: peaked softmaxes, so that a wrong key or position shows */
        w[2] = rnd((size_t)H * D * E, 0.5f, 0.0f);
        w[3] = rnd((size_t)HKV * D * E, 0.5f, 0.0f);
        w[4] = rnd((size_t)HKV * D * E, 0.4f, 0.0f);
        w[5] = rnd((size_t)E * H * D, 0.2f, 0.0f);
        w[6] = rnd((size_t)F * E, 0.3f, 0.0f);
        w[7] = rnd((size_t)F * E, 0.3f, 0.0f);
        w[8] = rnd((size_t)E * F, 0.3f, 0.0f);
        eng_layer *ly = &s->layers[l];
        ly->attn_norm = w[0];
        ly->ffn_norm = w[1];
        ly->wq = fwd_mat_f32(w[2], H * D, E);
        ly->wk = fwd_mat_f32(w[3], HKV * D, E);
        ly->wv = fwd_mat_f32(w[4], HKV * D, E);
        ly->wo = fwd_mat_f32(w[5], E, H * D);
        ly->w_gate = fwd_mat_f32(w[6], F, E);
        ly->w_up = fwd_mat_f32(w[7], F, E);
        ly->w_down = fwd_mat_f32(w[8], E, F);
    }
    s->m.layers = s->layers;
}

static void synth_free(synth *s)
{
    free(s->emb);
    free(s->outn);
    for (int l = 0; l < L; l++)
        for (int i = 0; i < 9; i++) free(s->w[l][i]);
}

static uint32_t float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static int32_t tok_a(int i) { return (int32_t)((i * 7 + 3) % V); }
static int32_t tok_b(int i) { return (int32_t)((i * 11 + 5) % V); }

/* Runs sequence A (NA tokens) and, when with_b, sequence B (NB tokens) through ctx: prompts
 * (PA, PB tokens) in chunks of ca / cb tokens, then one token per step. got_a[p * V..] gets
 * the logits after A's token p for every chunk end p (done_a[p] set); likewise B. */
static void run(const synth *s, int HKV, int D, int bs, bool f16, bool elementwise, int ca,
                bool with_b, int cb, float *got_a, bool *done_a, float *got_b, bool *done_b)
{
    kv_config kc = {.n_layer = L, .n_head_kv = (uint32_t)HKV, .head_dim = (uint32_t)D,
                    .block_size = (uint32_t)bs, .dtype = f16 ? KV_F16 : KV_F32,
                    .budget_bytes = 8u << 20, .salt = 1, .max_seqs = 4, .max_seq_len = NCTX};
    kv_cache *kv = NULL;
    CHECK(kv_create(&kc, &kv) == 0);
    eng_ctx_config cc = {.n_threads = 2, .max_batch_tokens = PA + PB, .max_batch_seqs = 2,
                         .n_ctx = NCTX};
    eng_ctx *ctx = NULL;
    eng_error err = {0};
    CHECK_MSG(eng_ctx_create(&s->m, kv, &cc, &ctx, &err) == 0, "%s", err.msg);
    eng_ctx_set_attn_elementwise(ctx, elementwise);
    /* per sequence: its tokens, length, prompt, chunk, and where its logits go */
    int32_t toks[2][NA > NB ? NA : NB];
    for (int i = 0; i < NA; i++) toks[0][i] = tok_a(i);
    for (int i = 0; i < NB; i++) toks[1][i] = tok_b(i);
    const int len[2] = {NA, with_b ? NB : 0}, prompt[2] = {PA, PB}, chunk[2] = {ca, cb};
    float *got[2] = {got_a, got_b};
    bool *done[2] = {done_a, done_b};
    uint32_t seq[2] = {0, 0};
    int pos[2] = {0, 0};
    for (int k = 0; k < 2; k++)
        if (len[k]) CHECK(kv_seq_create(kv, &seq[k]) == 0);
    static float out[2 * V];
    for (;;) {
        eng_batch_entry b[2];
        int n = 0, which[2];
        for (int k = 0; k < 2; k++) {
            if (pos[k] == len[k]) continue;
            const int left = prompt[k] - pos[k];
            const int m = left > 0 ? (left < chunk[k] ? left : chunk[k]) : 1;
            CHECK(kv_seq_append(kv, seq[k], toks[k] + pos[k], (uint32_t)m) == 0);
            b[n] = (eng_batch_entry){seq[k], toks[k] + pos[k], m, pos[k], true};
            which[n++] = k;
        }
        if (n == 0) break;
        CHECK_MSG(eng_step(ctx, b, n, out, &err) == 0, "%s", err.msg);
        for (int r = 0; r < n; r++) {
            const int k = which[r];
            pos[k] += b[r].n_tokens;
            memcpy(got[k] + (size_t)(pos[k] - 1) * V, out + (size_t)r * V, V * sizeof(float));
            done[k][pos[k] - 1] = true;
        }
    }
    eng_ctx_free(ctx);
    kv_destroy(kv);
}

/* positions both runs computed: all bitwise equal; returns how many */
static int same_bits(const float *x, const bool *dx, const float *y, const bool *dy, int n,
                     const char *what)
{
    int k = 0;
    for (int p = 0; p < n; p++) {
        if (!dx[p] || !dy[p]) continue;
        CHECK_MSG(memcmp(x + (size_t)p * V, y + (size_t)p * V, V * sizeof(float)) == 0,
                  "%s: logits after position %d differ", what, p);
        k++;
    }
    return k;
}

static void run_case(int H, int HKV, int D, int bs, bool f16)
{
    synth s;
    synth_make(&s, H, HKV, D);
    static float ra[NA * V], rb[NB * V], va[NA * V], vb[NB * V];
    static bool dra[NA], drb[NB], dva[NA], dvb[NB];
    memset(dra, 0, sizeof dra);
    memset(drb, 0, sizeof drb);
    /* reference: element at a time (each query alone, whatever the batch), the two sequences
     * batched, prompts in one step */
    run(&s, HKV, D, bs, f16, true, PA, true, PB, ra, dra, rb, drb);
    /* the logits are finite and not all alike (a vacuous model would pass anything) */
    float lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < NA * V; i++)
        if (dra[i / V]) {
            CHECK(isfinite(ra[i]));
            lo = ra[i] < lo ? ra[i] : lo;
            hi = ra[i] > hi ? ra[i] : hi;
        }
    CHECK(hi - lo > 1.0f);

    char what[128];
    snprintf(what, sizeof what, "H %d HKV %d D %d bs %d %s", H, HKV, D, bs, f16 ? "f16" : "f32");
    /* the kernels, A alone, the same chunking */
    memset(dva, 0, sizeof dva);
    run(&s, HKV, D, bs, f16, false, PA, false, PB, va, dva, vb, dvb);
    int k = same_bits(ra, dra, va, dva, NA, what);
    CHECK(k == NA - PA + 1);
    /* the kernels, A and B batched, prompts in tiles (chunks of 7 and 3: full and partial
     * tiles of 4 tokens) */
    const int chunks[][2] = {{7, 3}, {4, 5}, {1, 2}};
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
        memset(dva, 0, sizeof dva);
        memset(dvb, 0, sizeof dvb);
        run(&s, HKV, D, bs, f16, false, chunks[c][0], true, chunks[c][1], va, dva, vb, dvb);
        k = same_bits(ra, dra, va, dva, NA, what);
        k += same_bits(rb, drb, vb, dvb, NB, what);
        CHECK(k >= NA - PA + NB - PB);
    }
    /* a digest of the logits, which the build without AVX-512 must print too (meson:
     * fwd_attn_same_bits) */
    uint64_t hash = 1469598103934665603ull;
    for (int p = 0; p < NA + NB; p++) {
        const bool done = p < NA ? dra[p] : drb[p - NA];
        const float *row = p < NA ? ra + (size_t)p * V : rb + (size_t)(p - NA) * V;
        for (int i = 0; done && i < V; i++) hash = (hash ^ float_bits(row[i])) * 1099511628211ull;
    }
    printf("ok %s bits %016llx (kernels bitwise equal to element at a time: alone, batched, "
           "prompts in tiles)\n", what, (unsigned long long)hash);
    synth_free(&s);
}

int main(void)
{
    run_case(6, 2, 64, 16, true);   /* grouped, 3 query heads per kv head (SmolLM2's shape) */
    run_case(6, 2, 64, 16, false);  /* f32 K/V */
    run_case(6, 2, 64, 32, true);   /* 32-token blocks */
    run_case(8, 2, 64, 64, false);  /* 4 per kv head, 64-token blocks, f32 */
    run_case(4, 1, 128, 16, true);  /* multi-query, head dim 128 */
    run_case(4, 4, 64, 16, true);   /* a kv head per query head */
    run_case(6, 2, 64, 8, true);    /* blocks smaller than a vector of keys */
    run_case(6, 2, 64, 4, false);
    run_case(6, 2, 64, 2, true);
    run_case(6, 2, 64, 1, true);
    printf("fwd_attn: ok\n");
    return 0;
}
