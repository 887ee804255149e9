/* Batch invariance: the same prompts run one by one and together in one batch (prefill and
 * decode mixed, different prefill chunkings, sequences at different lengths) give bitwise
 * identical logits and tokens; a prompt whose prefix comes from the prefix cache gives the
 * same logits as a cold one. Run on an F32 model (sgemm path) and a Q8_0 model
 * (eng_matmul_rows path). Also: eng_step's input validation. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fwd_common.h"
#include "testutil.h"

#define NSEQ 5
#define GEN 10
#define BS 8

static const int plen[NSEQ] = {1, 7, 70, 30, 12};
/* seq 2 is prefilled in one 70-token chunk next to other entries (more than the kernels'
 * 64-token groups) while alone it runs as 64 + 6 */
static const int chunk[NSEQ] = {1, 3, 70, 4, 5};

static void make_prompt(int s, int32_t *p, int n_vocab)
{
    p[0] = 1;
    for (int i = 1; i < plen[s]; i++) p[i] = (int32_t)(3 + (s * 131 + i * 37) % (n_vocab - 3));
}

/* reference: alone, prompt in one chunk, then GEN greedy steps; ref[s][g] = logits */
static void run_alone(fwd_env *e, int s, int pchunk, float *ref, int32_t *gen)
{
    const int V = e->n_vocab;
    int32_t p[128];
    make_prompt(s, p, V);
    uint32_t q = fwd_seq_new(e);
    fwd_run(e, q, p, plen[s], pchunk, ref);
    for (int g = 0; g < GEN; g++) {
        int32_t t = fwd_argmax(ref + (size_t)g * V, V);
        gen[g] = t;
        if (g + 1 < GEN) fwd_run(e, q, &t, 1, 1, ref + (size_t)(g + 1) * V);
    }
    fwd_seq_free(e, q);
}

static void test_invariance(const char *model_rel)
{
    fwd_env e;
    fwd_env_open(&e, model_rel, true, BS, 256, 96, NSEQ, 2);
    const int V = e.n_vocab;
    float *ref = malloc((size_t)NSEQ * GEN * V * sizeof(float));
    float *ref2 = malloc((size_t)GEN * V * sizeof(float));
    float *out = malloc((size_t)NSEQ * V * sizeof(float));
    int32_t gen[NSEQ][GEN], gen2[GEN];
    for (int s = 0; s < NSEQ; s++) run_alone(&e, s, 64, ref + (size_t)s * GEN * V, gen[s]);
    /* chunked alone == whole alone */
    run_alone(&e, 3, 1, ref2, gen2);
    CHECK(memcmp(ref2, ref + (size_t)3 * GEN * V, (size_t)GEN * V * sizeof(float)) == 0);
    /* 1 compute thread == 2 threads (threads split rows / attention items, never K) */
    eng_ctx *two = e.ctx, *one = NULL;
    eng_ctx_config c1 = {.n_threads = 1, .max_batch_tokens = 96, .max_batch_seqs = NSEQ,
                         .n_ctx = 512};
    eng_error err = {0};
    CHECK_MSG(eng_ctx_create(e.model, e.kv, &c1, &one, &err) == 0, "%s", err.msg);
    e.ctx = one;
    run_alone(&e, 3, 5, ref2, gen2);
    CHECK(memcmp(ref2, ref + (size_t)3 * GEN * V, (size_t)GEN * V * sizeof(float)) == 0);
    e.ctx = two;
    eng_ctx_free(one);
    /* lopsided row splits between the 2 threads give the same bits too */
    const float lopsided[2][2] = {{0.1f, 0.9f}, {7.0f, 1.0f}};
    for (int k = 0; k < 2; k++) {
        CHECK(eng_ctx_set_row_shares(two, lopsided[k]) == 0);
        run_alone(&e, 3, 7, ref2, gen2);
        CHECK(memcmp(ref2, ref + (size_t)3 * GEN * V, (size_t)GEN * V * sizeof(float)) == 0);
    }
    const float bad[2][2] = {{0.0f, 1.0f}, {1.0f, NAN}};
    CHECK(eng_ctx_set_row_shares(two, bad[0]) == -EINVAL);
    CHECK(eng_ctx_set_row_shares(two, bad[1]) == -EINVAL);

    /* all together: each sequence starts at a different step */
    int32_t prompt[NSEQ][128];
    uint32_t seq[NSEQ];
    int done[NSEQ] = {0}, ng[NSEQ] = {0}, start[NSEQ] = {0, 2, 0, 1, 3};
    int32_t cur[NSEQ];
    for (int s = 0; s < NSEQ; s++) {
        make_prompt(s, prompt[s], V);
        seq[s] = fwd_seq_new(&e);
    }
    int finished = 0, step = 0, n_mixed = 0;
    while (finished < NSEQ) {
        eng_batch_entry b[NSEQ];
        int map[NSEQ], n = 0, n_pre = 0, n_dec = 0;
        for (int s = 0; s < NSEQ; s++) {
            if (step < start[s] || ng[s] == GEN) continue;
            eng_batch_entry *be = &b[n];
            be->seq = seq[s];
            be->pos0 = fwd_seq_len(&e, seq[s]);
            if (done[s] < plen[s]) {
                int m = plen[s] - done[s] < chunk[s] ? plen[s] - done[s] : chunk[s];
                be->tokens = prompt[s] + done[s];
                be->n_tokens = m;
                done[s] += m;
                be->want_logits = done[s] == plen[s];
                n_pre++;
            } else {
                be->tokens = &cur[s];
                be->n_tokens = 1;
                be->want_logits = true;
                n_dec++;
            }
            map[n++] = s;
        }
        if (n_pre && n_dec) n_mixed++;
        int nl = 0;
        for (int i = 0; i < n; i++) nl += b[i].want_logits;
        fwd_step(&e, b, n, out);
        int r = 0;
        for (int i = 0; i < n; i++) {
            if (!b[i].want_logits) continue;
            int s = map[i];
            const float *row = out + (size_t)r++ * V;
            CHECK_MSG(memcmp(row, ref + ((size_t)s * GEN + ng[s]) * V, (size_t)V * sizeof(float)) == 0,
                      "%s: seq %d step %d: batched logits differ from alone", model_rel, s, ng[s]);
            cur[s] = fwd_argmax(row, V);
            CHECK_EQ_INT(cur[s], gen[s][ng[s]]);
            if (++ng[s] == GEN) finished++;
        }
        CHECK_EQ_INT(r, nl);
        step++;
    }
    CHECK_MSG(n_mixed >= 3, "only %d steps mixed prefill and decode", n_mixed);
    for (int s = 0; s < NSEQ; s++) fwd_seq_free(&e, seq[s]);

    /* prefix cache: seq 3's prompt (30 tokens = 3 full blocks + 6) computed once and freed;
     * a new sequence attaches the cached full blocks and computes only the rest. */
    uint32_t warm = fwd_seq_new(&e);
    uint32_t got = 0;
    int rc = kv_seq_attach_prefix(e.kv, warm, prompt[3], (uint32_t)plen[3], &got);
    CHECK_MSG(rc == 0, "kv_seq_attach_prefix: %d", rc);
    CHECK_MSG(got == 24, "attached %u cached tokens, want 24", got);
    CHECK_EQ_INT(fwd_seq_len(&e, warm), 24);
    fwd_run(&e, warm, prompt[3] + got, plen[3] - (int)got, 64, out);
    CHECK_MSG(memcmp(out, ref + (size_t)3 * GEN * V, (size_t)V * sizeof(float)) == 0,
              "%s: logits after a cached prefix differ from the cold run", model_rel);
    for (int g = 1; g < GEN; g++) {
        int32_t t = fwd_argmax(out, V);
        CHECK_EQ_INT(t, gen[3][g - 1]);
        fwd_run(&e, warm, &t, 1, 1, out);
        CHECK(memcmp(out, ref + ((size_t)3 * GEN + g) * V, (size_t)V * sizeof(float)) == 0);
    }
    fwd_seq_free(&e, warm);
    printf("%s: %d sequences batched (%d steps, %d mixing prefill and decode) and from the "
           "prefix cache: logits bitwise equal to alone\n", model_rel, NSEQ, step, n_mixed);

    free(ref);
    free(ref2);
    free(out);
    fwd_env_close(&e);
}

static void expect_step_error(fwd_env *e, const eng_batch_entry *b, int n, float *logits,
                              const char *word)
{
    eng_error err = {0};
    int rc = eng_step(e->ctx, b, n, logits, &err);
    CHECK_MSG(rc == -EINVAL, "expected -EINVAL (%s), got %d", word, rc);
    CHECK_MSG(strstr(err.msg, word) != NULL, "message '%s' does not mention '%s'", err.msg, word);
}

static void test_validation(void)
{
    fwd_env e;
    fwd_env_open(&e, "models/stories260K.gguf", true, BS, 64, 8, 2, 1);
    CHECK_EQ_INT(eng_ctx_max_batch_tokens(e.ctx), 8);
    CHECK_EQ_INT(eng_ctx_max_batch_seqs(e.ctx), 2);
    CHECK_EQ_INT(eng_ctx_n_threads(e.ctx), 1);
    CHECK_EQ_INT(eng_ctx_n_vocab(e.ctx), 512);
    CHECK_EQ_INT(eng_ctx_n_ctx(e.ctx), 512);
    {
        /* context creation: bad sizes, and a kv cache whose shape is not the model's */
        eng_error err = {0};
        eng_ctx *x = NULL;
        eng_ctx_config bad = {.n_threads = 1, .max_batch_tokens = 0, .max_batch_seqs = 1};
        CHECK(eng_ctx_create(e.model, e.kv, &bad, &x, &err) == -EINVAL && !x);
        CHECK(strstr(err.msg, "max_batch_tokens") != NULL);
        bad = (eng_ctx_config){.n_threads = -1, .max_batch_tokens = 4, .max_batch_seqs = 1};
        CHECK(eng_ctx_create(e.model, e.kv, &bad, &x, &err) == -EINVAL && !x);
        bad = (eng_ctx_config){.n_threads = 1, .max_batch_tokens = 4, .max_batch_seqs = 5};
        CHECK(eng_ctx_create(e.model, e.kv, &bad, &x, &err) == -EINVAL && !x);
        kv_config kc = *kv_get_config(e.kv);
        kc.head_dim = 16;
        kv_cache *kv2 = NULL;
        CHECK(kv_create(&kc, &kv2) == 0);
        eng_ctx_config ok = {.n_threads = 1, .max_batch_tokens = 4, .max_batch_seqs = 1};
        CHECK(eng_ctx_create(e.model, kv2, &ok, &x, &err) == -EINVAL && !x);
        CHECK(strstr(err.msg, "geometry") != NULL);
        kv_destroy(kv2);
    }
    float *out = malloc(2 * (size_t)e.n_vocab * sizeof(float));
    uint32_t a = fwd_seq_new(&e), b = fwd_seq_new(&e);
    int32_t t[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    int32_t bad = 512;
    CHECK(kv_seq_append(e.kv, a, t, 1) == 0);
    eng_batch_entry be = {.seq = a, .tokens = &bad, .n_tokens = 1, .pos0 = 0, .want_logits = true};
    expect_step_error(&e, &be, 1, out, "token id 512");
    be.tokens = t;
    be.pos0 = 1; /* kv_seq_len is 1, so pos0 must be 0 */
    expect_step_error(&e, &be, 1, out, "kv_seq_len");
    be.pos0 = 0;
    expect_step_error(&e, &be, 1, NULL, "ret_logits");
    eng_batch_entry two[2] = {be, be};
    expect_step_error(&e, two, 2, out, "twice");
    eng_batch_entry three[3] = {be, be, be};
    expect_step_error(&e, three, 3, out, "max_batch_seqs");
    be.n_tokens = 9;
    expect_step_error(&e, &be, 1, out, "max_batch_tokens");
    be.n_tokens = 1;
    be.pos0 = 600; /* beyond n_ctx 512 */
    expect_step_error(&e, &be, 1, out, "context length");
    be.pos0 = 0;
    /* b not appended: kv_seq_len 0 */
    eng_batch_entry bb = {.seq = b, .tokens = t, .n_tokens = 1, .pos0 = 0, .want_logits = true};
    expect_step_error(&e, &bb, 1, out, "kv_seq_len");
    /* the valid step still works after the rejected ones */
    eng_error err = {0};
    CHECK(eng_step(e.ctx, &be, 1, out, &err) == 0);
    CHECK_EQ_INT(fwd_argmax(out, e.n_vocab), 403); /* "Once", see stories260K_greedy.json */
    fwd_seq_free(&e, a);
    fwd_seq_free(&e, b);
    free(out);
    fwd_env_close(&e);
}

int main(void)
{
    test_validation();
    test_invariance("models/stories260K.gguf");
    test_invariance("models/TinyStories-656K-Q8_0.gguf");
    test_invariance("testvectors/greedy/TinyStories-656K-Q4_0.gguf");
    printf("fwd_batch: ok\n");
    return 0;
}
