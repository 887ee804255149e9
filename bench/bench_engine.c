/* bench_engine: forward-pass throughput on a model file.
 *   single-stream prefill tok/s (one sequence, prompt in chunks of the step budget),
 *   single-stream decode tok/s (one token per step),
 *   aggregate decode tok/s with N sequences decoding together (N tokens per step).
 * Prints a small table and writes JSON. Not a test: timings depend on the machine.
 *
 * usage: bench_engine MODEL.gguf [-t threads] [-p prompt_tokens] [-n decode_steps]
 *                     [-s n_seqs] [-P stream_prompt_tokens] [-b max_batch_tokens] [-r reps]
 *                     [--kv f16|f32] [-o out.json]
 * Each measure is repeated reps times (default 5); the median is reported. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "kvcache.h"
#include "model.h"
#include "sampler.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* the greedy token, as the daemon's sampler picks it (a scalar loop here cost 3% of a
 * 16-stream step) */
static int argmax(const float *x, int n)
{
    const int32_t t = smp_argmax(x, n);
    if (t < 0) {
        fprintf(stderr, "bench_engine: logit %d is not finite\n", -(t + 1));
        exit(1);
    }
    return t;
}

static double median(double *v, int n)
{
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "bench_engine: %s: %s\n", what, msg);
    exit(1);
}

static void step(kv_cache *kv, eng_ctx *ctx, eng_batch_entry *b, int n, float *logits)
{
    for (int i = 0; i < n; i++) {
        int rc = kv_seq_append(kv, b[i].seq, b[i].tokens, (uint32_t)b[i].n_tokens);
        if (rc) die("kv_seq_append", strerror(-rc));
    }
    eng_error err = {0};
    if (eng_step(ctx, b, n, logits, &err)) die("eng_step", err.msg);
}

int main(int argc, char **argv)
{
    const char *model_path = NULL, *out_path = "bench_engine.json";
    int n_threads = 0, n_prompt = 256, n_decode = 128, n_seqs = 8, max_tokens = 128, reps = 5;
    int n_sprompt = 8; /* prompt tokens of each stream in the N-stream measure */
    kv_dtype dtype = KV_F16;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-t") && v) n_threads = atoi(argv[++i]);
        else if (!strcmp(a, "-p") && v) n_prompt = atoi(argv[++i]);
        else if (!strcmp(a, "-n") && v) n_decode = atoi(argv[++i]);
        else if (!strcmp(a, "-s") && v) n_seqs = atoi(argv[++i]);
        else if (!strcmp(a, "-P") && v) n_sprompt = atoi(argv[++i]);
        else if (!strcmp(a, "-b") && v) max_tokens = atoi(argv[++i]);
        else if (!strcmp(a, "-r") && v) reps = atoi(argv[++i]);
        else if (!strcmp(a, "-o") && v) out_path = argv[++i];
        else if (!strcmp(a, "--kv") && v) dtype = strcmp(argv[++i], "f32") ? KV_F16 : KV_F32;
        else if (a[0] != '-' && !model_path) model_path = a;
        else {
            fprintf(stderr, "usage: %s MODEL.gguf [-t threads] [-p prompt_tokens] [-n decode_steps] "
                            "[-s n_seqs] [-P stream_prompt_tokens] [-b max_batch_tokens] [-r reps] [--kv f16|f32] [-o out.json]\n",
                    argv[0]);
            return 2;
        }
    }
    if (!model_path || n_prompt < 1 || n_decode < 1 || n_seqs < 1 || max_tokens < n_seqs ||
        reps < 1 || reps > 16 || n_sprompt < 1 || n_sprompt > 65536) {
        fprintf(stderr, "bench_engine: need a model and positive sizes (max_batch_tokens >= seqs)\n");
        return 2;
    }
    eng_error err = {0};
    eng_model *m = NULL;
    if (eng_model_load(model_path, &m, &err)) die(model_path, err.msg);
    const eng_hparams *hp = &m->hp;
    int n_ctx = n_prompt + n_decode;
    if ((uint32_t)n_ctx > hp->n_ctx_train) die("sizes", "prompt + decode exceed the model's context");
    if (n_ctx < n_sprompt + n_decode + 1) n_ctx = n_sprompt + n_decode + 1;
    if ((uint32_t)n_ctx > hp->n_ctx_train) die("sizes", "prompt + decode exceed the model's context");
    const int V = (int)hp->n_vocab;

    kv_config kc = {.n_layer = hp->n_layer, .n_head_kv = hp->n_head_kv, .head_dim = hp->head_dim,
                    .block_size = 16, .dtype = dtype, .salt = 7,
                    .max_seqs = (uint32_t)n_seqs + 1, .max_seq_len = (uint32_t)n_ctx,
                    .prefault = true /* as the daemon: no page faults in the timed steps */};
    uint64_t per_tok = 2ull * hp->n_layer * hp->n_head_kv * hp->head_dim * (dtype == KV_F16 ? 2 : 4);
    kc.budget_bytes = per_tok * (uint64_t)(n_seqs + 1) * (uint64_t)(n_ctx + 32);
    kv_cache *kv = NULL;
    int rc = kv_create(&kc, &kv);
    if (rc) die("kv_create", strerror(-rc));
    eng_ctx_config cc = {.n_threads = n_threads, .max_batch_tokens = max_tokens,
                         .max_batch_seqs = n_seqs, .n_ctx = n_ctx};
    eng_ctx *ctx = NULL;
    if (eng_ctx_create(m, kv, &cc, &ctx, &err)) die("eng_ctx_create", err.msg);

    float *logits = malloc((size_t)n_seqs * (size_t)V * sizeof(float));
    int32_t *prompt = malloc((size_t)n_prompt * sizeof(int32_t));
    if (!logits || !prompt) die("malloc", "out of memory");
    prompt[0] = 1;
    for (int i = 1; i < n_prompt; i++) prompt[i] = 3 + (int32_t)((i * 7919u) % (uint32_t)(V - 3));

    double prefill_s[16], decode_s[16], agg_s[16];
    uint32_t *seqs = calloc((size_t)n_seqs, sizeof *seqs);
    int32_t *cur = calloc((size_t)n_seqs, sizeof *cur);
    eng_batch_entry *b = calloc((size_t)n_seqs, sizeof *b);
    int32_t *pp = calloc((size_t)n_seqs * (size_t)n_sprompt, sizeof *pp);
    if (!seqs || !cur || !b || !pp) die("malloc", "out of memory");
    for (int r = 0; r < reps; r++) {
        /* single-stream prefill (appends never consult the prefix cache: always computed) */
        uint32_t s0;
        if ((rc = kv_seq_create(kv, &s0))) die("kv_seq_create", strerror(-rc));
        double t0 = now_s();
        for (int i = 0; i < n_prompt; i += max_tokens) {
            int n = n_prompt - i < max_tokens ? n_prompt - i : max_tokens;
            eng_batch_entry e = {.seq = s0, .tokens = prompt + i, .n_tokens = n, .pos0 = i,
                                 .want_logits = i + n == n_prompt};
            step(kv, ctx, &e, 1, logits);
        }
        prefill_s[r] = now_s() - t0;

        /* single-stream decode */
        int32_t tok = argmax(logits, V);
        t0 = now_s();
        for (int i = 0; i < n_decode; i++) {
            eng_batch_entry e = {.seq = s0, .tokens = &tok, .n_tokens = 1,
                                 .pos0 = (int32_t)kv_seq_len(kv, s0), .want_logits = true};
            step(kv, ctx, &e, 1, logits);
            tok = argmax(logits, V);
        }
        decode_s[r] = now_s() - t0;
        kv_seq_free(kv, s0);

        /* aggregate decode: n_seqs sequences with distinct prompts of n_sprompt tokens
         * (prefilled together, max_tokens per step, not timed), then n_decode steps */
        for (int s = 0; s < n_seqs; s++) {
            if ((rc = kv_seq_create(kv, &seqs[s]))) die("kv_seq_create", strerror(-rc));
            int32_t *ps = pp + (size_t)s * (size_t)n_sprompt;
            ps[0] = 1;
            for (int i = 1; i < n_sprompt; i++)
                ps[i] = 3 + (int32_t)(((unsigned)(s + r * n_seqs) * 131u + (unsigned)i * 17u) %
                                      (unsigned)(V - 3));
        }
        for (int i0 = 0; i0 < n_sprompt;) {
            /* as many streams' next chunks as fit max_tokens */
            int n_e = 0, budget = max_tokens, chunk = n_sprompt - i0;
            if (chunk * n_seqs > budget) chunk = budget / n_seqs;
            if (chunk < 1) chunk = 1;
            for (int s = 0; s < n_seqs; s++)
                b[n_e++] = (eng_batch_entry){.seq = seqs[s], .tokens = pp + (size_t)s * (size_t)n_sprompt + i0,
                                             .n_tokens = chunk, .pos0 = i0,
                                             .want_logits = i0 + chunk == n_sprompt};
            step(kv, ctx, b, n_e, logits);
            i0 += chunk;
        }
        for (int s = 0; s < n_seqs; s++) cur[s] = argmax(logits + (size_t)s * V, V);
        t0 = now_s();
        for (int i = 0; i < n_decode; i++) {
            for (int s = 0; s < n_seqs; s++)
                b[s] = (eng_batch_entry){.seq = seqs[s], .tokens = &cur[s], .n_tokens = 1,
                                         .pos0 = n_sprompt + i, .want_logits = true};
            step(kv, ctx, b, n_seqs, logits);
            for (int s = 0; s < n_seqs; s++) cur[s] = argmax(logits + (size_t)s * V, V);
        }
        agg_s[r] = now_s() - t0;
        for (int s = 0; s < n_seqs; s++) kv_seq_free(kv, seqs[s]);
    }

    /* the host (figures from different CPUs are not comparable), how busy it was, and
     * whether the weights got 2 MiB pages (engine/filemap.h) */
    char cpu[160] = "unknown";
    FILE *ci = fopen("/proc/cpuinfo", "r");
    if (ci) {
        char line[256], name[128] = "?";
        int fam = -1, mod = -1;
        while (fgets(line, sizeof line, ci) && line[0] != '\n') { /* the first CPU's lines */
            if (sscanf(line, "model name : %127[^\n]", name) == 1) continue;
            if (sscanf(line, "cpu family : %d", &fam) == 1) continue;
            (void)sscanf(line, "model : %d", &mod);
        }
        fclose(ci);
        snprintf(cpu, sizeof cpu, "%s, family %d model %d", name, fam, mod);
    }
    double load = -1;
    (void)getloadavg(&load, 1);
    const char *pages = eng_map_pages_name(gguf_map_info(m->gguf).pages);

    /* median over the repetitions (the machine may be shared) */
    double prefill_tps = n_prompt / median(prefill_s, reps);
    double decode_tps = n_decode / median(decode_s, reps);
    double agg_tps = (double)n_decode * n_seqs / median(agg_s, reps);
    printf("model        %s (%s, %u layers, n_embd %u, vocab %d)\n", model_path, m->name,
           hp->n_layer, hp->n_embd, V);
    printf("host         %s; load %.2f; weights in %s\n", cpu, load, pages);
    printf("threads      %d, kv %s, max_batch_tokens %d\n", eng_ctx_n_threads(ctx),
           dtype == KV_F16 ? "f16" : "f32", max_tokens);
    printf("%-28s %10s %12s\n", "measure", "tokens", "tok/s");
    printf("%-28s %10d %12.1f\n", "prefill (1 stream)", n_prompt, prefill_tps);
    printf("%-28s %10d %12.1f\n", "decode (1 stream)", n_decode, decode_tps);
    char lbl[64];
    snprintf(lbl, sizeof lbl, "decode (%d streams, total)", n_seqs);
    printf("(each of the %d streams: a %d-token prompt, then %d decode steps)\n", n_seqs, n_sprompt,
           n_decode);
    printf("%-28s %10d %12.1f\n", lbl, n_decode * n_seqs, agg_tps);

    FILE *f = fopen(out_path, "w");
    if (!f) die(out_path, strerror(errno));
    fprintf(f,
            "{\n  \"model\": \"%s\",\n  \"threads\": %d,\n  \"kv_dtype\": \"%s\",\n"
            "  \"max_batch_tokens\": %d,\n  \"prefill_tokens\": %d,\n  \"prefill_tok_s\": %.2f,\n"
            "  \"decode_tokens\": %d,\n  \"decode_tok_s\": %.2f,\n  \"agg_seqs\": %d,\n"
            "  \"agg_prompt_tokens\": %d,\n  \"agg_decode_tok_s\": %.2f,\n  \"reps\": %d,\n"
            "  \"cpu\": \"%s\",\n  \"loadavg_1m_at_end\": %.2f,\n  \"weights_pages\": \"%s\"\n}\n",
            model_path, eng_ctx_n_threads(ctx), dtype == KV_F16 ? "f16" : "f32", max_tokens,
            n_prompt, prefill_tps, n_decode, decode_tps, n_seqs, n_sprompt, agg_tps, reps, cpu, load,
            pages);
    fclose(f);
    printf("wrote %s\n", out_path);

    free(seqs); free(cur); free(b); free(pp); free(logits); free(prompt);
    eng_ctx_free(ctx);
    kv_destroy(kv);
    eng_model_free(m);
    return 0;
}
