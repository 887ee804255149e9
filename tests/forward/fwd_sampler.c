/* Sampler: validation, greedy, truncation exactness, penalties, seeded determinism,
 * distribution sanity, logprobs, stop tokens and stop strings. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "sampler.h"
#include "testutil.h"

#define V 8

static smp_sampler *S;

static smp_seq *mkseq(const smp_params *p)
{
    smp_seq *q = NULL;
    eng_error err = {0};
    int rc = smp_seq_create(p, V, &q, &err);
    CHECK_MSG(rc == 0, "smp_seq_create: %s", err.msg);
    return q;
}

static int32_t sample1(smp_seq *q, const float *logits)
{
    smp_result r;
    eng_error err = {0};
    int rc = smp_sample(S, q, logits, &r, &err);
    CHECK_MSG(rc == 0, "smp_sample: %s", err.msg);
    return r.token;
}

/* draws n samples, counts per id */
static void histogram(const smp_params *p, const float *logits, int n, int *count)
{
    smp_seq *q = mkseq(p);
    memset(count, 0, V * sizeof *count);
    for (int i = 0; i < n; i++) count[sample1(q, logits)]++;
    smp_seq_free(q);
}

static void expect_invalid(smp_params p, const char *word)
{
    eng_error err = {0};
    int rc = smp_params_validate(&p, V, &err);
    CHECK_MSG(rc == -EINVAL, "expected -EINVAL for %s, got %d", word, rc);
    CHECK_MSG(strstr(err.msg, word) != NULL, "message '%s' does not name %s", err.msg, word);
    smp_seq *q = NULL;
    CHECK(smp_seq_create(&p, V, &q, &err) == -EINVAL && q == NULL);
}

static void test_validation(void)
{
    smp_params d;
    smp_params_default(&d);
    eng_error err = {0};
    CHECK(smp_params_validate(&d, V, &err) == 0);
    smp_params p = d;
    p.temperature = -0.1f; expect_invalid(p, "temperature");
    p = d; p.temperature = NAN; expect_invalid(p, "temperature");
    p = d; p.temperature = 101.0f; expect_invalid(p, "temperature");
    p = d; p.top_k = -1; expect_invalid(p, "top_k");
    p = d; p.top_k = V + 1; expect_invalid(p, "top_k");
    p = d; p.top_p = 0.0f; expect_invalid(p, "top_p");
    p = d; p.top_p = 1.5f; expect_invalid(p, "top_p");
    p = d; p.min_p = -0.5f; expect_invalid(p, "min_p");
    p = d; p.min_p = 1.01f; expect_invalid(p, "min_p");
    p = d; p.repeat_penalty = 0.0f; expect_invalid(p, "repeat_penalty");
    p = d; p.repeat_penalty = INFINITY; expect_invalid(p, "repeat_penalty");
    p = d; p.presence_penalty = 2.5f; expect_invalid(p, "presence_penalty");
    p = d; p.frequency_penalty = -3.0f; expect_invalid(p, "frequency_penalty");
    p = d; p.penalty_last_n = -1; expect_invalid(p, "penalty_last_n");
    p = d; p.penalty_last_n = SMP_MAX_PENALTY_WINDOW + 1; expect_invalid(p, "penalty_last_n");
    p = d; p.n_logprobs = SMP_MAX_LOGPROBS + 1; expect_invalid(p, "n_logprobs");
    p = d; p.n_stop_tokens = SMP_MAX_STOP_TOKENS + 1; expect_invalid(p, "stop tokens");
    p = d; p.n_stop_tokens = 1; p.stop_tokens[0] = V; expect_invalid(p, "stop token");
    /* edges that are valid */
    p = d; p.temperature = 100.0f; p.top_k = V; p.top_p = 1.0f; p.min_p = 1.0f;
    p.repeat_penalty = 10.0f; p.presence_penalty = -2.0f; p.frequency_penalty = 2.0f;
    p.penalty_last_n = 0; p.n_logprobs = SMP_MAX_LOGPROBS;
    CHECK(smp_params_validate(&p, V, &err) == 0);
    smp_sampler *s2 = NULL;
    CHECK(smp_sampler_create(0, &s2, &err) == -EINVAL && s2 == NULL);
}

static void test_greedy(void)
{
    smp_params p;
    smp_params_default(&p);
    smp_seq *q = mkseq(&p);
    float l[V] = {0.1f, 2.0f, -1.0f, 2.5f, 2.5f, 0.0f, -3.0f, 1.0f};
    CHECK_EQ_INT(sample1(q, l), 3); /* tie 3/4: lowest id */
    float bad[V] = {0};
    bad[2] = NAN;
    smp_result r;
    eng_error err = {0};
    CHECK(smp_sample(S, q, bad, &r, &err) == -EINVAL);
    CHECK(strstr(err.msg, "not finite") != NULL);
    smp_seq_free(q);
}

/* Greedy over a vocabulary that is not a multiple of 8 (the sampler's scan runs 8 logits at
 * a time, then a tail): the lowest id of the largest logit wherever the ties fall, signed
 * zeros, the lowest float; and the first logit that is not finite (NaN, an infinity) is the
 * one named. */
static void test_greedy_scan(void)
{
    enum { BV = 1003 };
    smp_sampler *s = NULL;
    smp_seq *q = NULL;
    eng_error err = {0};
    smp_params p;
    smp_params_default(&p);
    CHECK(smp_sampler_create(BV, &s, &err) == 0);
    CHECK(smp_seq_create(&p, BV, &q, &err) == 0);
    static float l[BV];
    uint32_t x = 12345;
    const int ties[][2] = {{17, 600}, {5, 1001}, {999, 1002}, {0, 8}, {1002, 1002}, {996, 997}};
    for (size_t c = 0; c < sizeof ties / sizeof ties[0]; c++) {
        for (int i = 0; i < BV; i++) {
            x = x * 1664525u + 1013904223u;
            l[i] = (float)(x >> 8) / 16777216.0f * 20.0f - 10.0f;
        }
        l[3] = -FLT_MAX;
        l[ties[c][0]] = l[ties[c][1]] = 10.5f;
        smp_result r;
        CHECK(smp_sample(s, q, l, &r, &err) == 0);
        CHECK_EQ_INT(r.token, ties[c][0]);
        CHECK_EQ_INT(smp_argmax(l, BV), ties[c][0]);
        /* shorter arrays end inside and after a vector */
        for (int32_t n = 1; n <= 40; n++) {
            int32_t want = 0;
            for (int32_t i = 1; i < n; i++)
                if (l[i] > l[want]) want = i;
            CHECK_EQ_INT(smp_argmax(l, n), want);
        }
    }
    for (int i = 0; i < BV; i++) l[i] = i % 2 ? 0.0f : -0.0f; /* all equal */
    l[0] = -1.0f;
    smp_result r;
    CHECK(smp_sample(s, q, l, &r, &err) == 0);
    CHECK_EQ_INT(r.token, 1);
    for (int i = 0; i < BV; i++) l[i] = -FLT_MAX;
    l[1000] = -5.0f;
    CHECK(smp_sample(s, q, l, &r, &err) == 0);
    CHECK_EQ_INT(r.token, 1000);
    const int bad[][2] = {{40, 900}, {1001, 1002}, {7, 8}, {555, 555}};
    const float what[] = {NAN, INFINITY, -INFINITY, -NAN};
    for (size_t c = 0; c < sizeof bad / sizeof bad[0]; c++) {
        for (int i = 0; i < BV; i++) l[i] = (float)(i % 7);
        l[bad[c][1]] = what[(c + 1) % 4]; /* a second bad value after the first */
        l[bad[c][0]] = what[c];
        char want[64];
        snprintf(want, sizeof want, "logit %d is not finite", bad[c][0]);
        CHECK_EQ_INT(smp_argmax(l, BV), -(1 + bad[c][0]));
        CHECK(smp_sample(s, q, l, &r, &err) == -EINVAL);
        CHECK_MSG(strstr(err.msg, want) != NULL, "%s (want %s)", err.msg, want);
    }
    smp_seq_free(q);
    smp_sampler_free(s);
}

/* logits = log(probs) so truncation thresholds can be computed by hand */
static const float probs4[V] = {0.05f, 0.5f, 0.0f, 0.3f, 0.15f, 0.0f, 0.0f, 0.0f};
static void logits_of(const float *pr, float *l)
{
    for (int i = 0; i < V; i++) l[i] = pr[i] > 0 ? logf(pr[i]) : -30.0f;
}

static void expect_support(const int *count, const char *ids)
{
    for (int i = 0; i < V; i++) {
        bool want = strchr(ids, '0' + i) != NULL;
        CHECK_MSG(want ? count[i] > 0 : count[i] == 0, "id %d drawn %d times, support %s", i,
                  count[i], ids);
    }
}

static void test_truncation(void)
{
    float l[V];
    logits_of(probs4, l);
    int count[V];
    smp_params p;
    smp_params_default(&p);
    p.temperature = 1.0f;
    p.seed = 7;

    p.top_k = 2; histogram(&p, l, 3000, count); expect_support(count, "13");
    p.top_k = 3; histogram(&p, l, 3000, count); expect_support(count, "134");
    p.top_k = 1; histogram(&p, l, 200, count); expect_support(count, "1");
    p.top_k = 0;
    /* sorted probs 0.5 (1), 0.3 (3), 0.15 (4), 0.05 (0) */
    p.top_p = 0.45f; histogram(&p, l, 500, count); expect_support(count, "1");
    p.top_p = 0.75f; histogram(&p, l, 3000, count); expect_support(count, "13");
    p.top_p = 0.9f; histogram(&p, l, 3000, count); expect_support(count, "134");
    p.top_p = 0.99f; histogram(&p, l, 5000, count); expect_support(count, "0134");
    p.top_p = 1.0f;
    /* min_p: keep p >= min_p * 0.5 */
    p.min_p = 0.5f; histogram(&p, l, 3000, count); expect_support(count, "13");   /* >= .25 */
    p.min_p = 0.2f; histogram(&p, l, 3000, count); expect_support(count, "134");  /* >= .1 */
    p.min_p = 0.09f; histogram(&p, l, 5000, count); expect_support(count, "0134"); /* >= .045 */
    p.min_p = 1.0f; histogram(&p, l, 200, count); expect_support(count, "1");
    /* combined: top_k 3 then top_p 0.7 -> {1, 3} */
    p.min_p = 0.0f; p.top_k = 3; p.top_p = 0.7f;
    histogram(&p, l, 3000, count); expect_support(count, "13");
}

static void test_distribution(void)
{
    float l[V];
    logits_of(probs4, l);
    int count[V];
    smp_params p;
    smp_params_default(&p);
    p.temperature = 1.0f;
    p.seed = 12345;
    const int n = 40000;
    histogram(&p, l, n, count);
    for (int i = 0; i < V; i++)
        CHECK_MSG(fabs((double)count[i] / n - probs4[i]) < 0.01, "id %d: freq %.4f want %.4f", i,
                  (double)count[i] / n, (double)probs4[i]);
    /* temperature 0.5 squares the probabilities (renormalized) */
    p.temperature = 0.5f;
    histogram(&p, l, n, count);
    double z = 0;
    for (int i = 0; i < V; i++) z += (double)probs4[i] * probs4[i];
    for (int i = 0; i < V; i++) {
        double want = (double)probs4[i] * probs4[i] / z;
        CHECK_MSG(fabs((double)count[i] / n - want) < 0.01, "T=0.5 id %d: %.4f want %.4f", i,
                  (double)count[i] / n, want);
    }
    /* uniform PRNG: mean and range */
    smp_rng r;
    smp_rng_seed(&r, 99);
    double sum = 0;
    for (int i = 0; i < 100000; i++) {
        float u = smp_rng_uniform(&r);
        CHECK(u >= 0.0f && u < 1.0f);
        sum += u;
    }
    CHECK(fabs(sum / 100000 - 0.5) < 0.005);
}

static void test_determinism(void)
{
    float l[V];
    logits_of(probs4, l);
    smp_params p;
    smp_params_default(&p);
    p.temperature = 0.9f;
    p.seed = 42;
    smp_seq *a = mkseq(&p), *b = mkseq(&p);
    p.seed = 43;
    smp_seq *c = mkseq(&p);
    int32_t seq_a[200];
    int diff_c = 0;
    for (int i = 0; i < 200; i++) seq_a[i] = sample1(a, l);
    /* b interleaved with c (another request in the "batch"): same as a */
    for (int i = 0; i < 200; i++) {
        int32_t tc = sample1(c, l);
        CHECK_EQ_INT(sample1(b, l), seq_a[i]);
        if (tc != seq_a[i]) diff_c++;
    }
    CHECK_MSG(diff_c > 20, "seed 43 gave nearly the same sequence as 42 (%d differ)", diff_c);
    smp_seq_free(a);
    smp_seq_free(b);
    smp_seq_free(c);
    /* known xoshiro256** / splitmix64 property: same seed, same stream */
    smp_rng r1, r2;
    smp_rng_seed(&r1, 5);
    smp_rng_seed(&r2, 5);
    for (int i = 0; i < 10; i++) CHECK(smp_rng_next(&r1) == smp_rng_next(&r2));
}

static void test_penalties(void)
{
    smp_params p;
    smp_params_default(&p);
    float l[V] = {3.0f, 2.9f, -1.0f, -1.05f, 0, 0, 0, 0};
    /* repetition: positive logit divided */
    p.repeat_penalty = 1.1f;
    smp_seq *q = mkseq(&p);
    CHECK_EQ_INT(sample1(q, l), 0);
    smp_seq_accept(q, 0);
    CHECK_EQ_INT(sample1(q, l), 1); /* 3.0 / 1.1 = 2.727 < 2.9 */
    smp_seq_free(q);
    /* repetition: negative logit multiplied (more negative) */
    float ln[V] = {-1.0f, -1.05f, -5, -5, -5, -5, -5, -5};
    q = mkseq(&p);
    smp_seq_accept(q, 0);
    CHECK_EQ_INT(sample1(q, ln), 1); /* -1.1 < -1.05 */
    smp_seq_free(q);
    /* presence: flat once present */
    smp_params_default(&p);
    p.presence_penalty = 0.2f;
    q = mkseq(&p);
    smp_seq_accept(q, 0);
    smp_seq_accept(q, 0);
    CHECK_EQ_INT(sample1(q, l), 1); /* 2.8 < 2.9 */
    smp_seq_free(q);
    p.presence_penalty = 0.05f;
    q = mkseq(&p);
    smp_seq_accept(q, 0);
    smp_seq_accept(q, 0);
    smp_seq_accept(q, 0);
    CHECK_EQ_INT(sample1(q, l), 0); /* 2.95 > 2.9: presence does not grow with count */
    smp_seq_free(q);
    /* frequency: grows with the count */
    smp_params_default(&p);
    p.frequency_penalty = 0.04f;
    q = mkseq(&p);
    smp_seq_accept(q, 0);
    smp_seq_accept(q, 0);
    CHECK_EQ_INT(sample1(q, l), 0); /* 2.92 */
    smp_seq_accept(q, 0);
    CHECK_EQ_INT(sample1(q, l), 1); /* 2.88 */
    smp_seq_free(q);
    /* window: token 0 slides out of a window of 2 */
    p.frequency_penalty = 0.0f;
    p.repeat_penalty = 2.0f;
    p.penalty_last_n = 2;
    q = mkseq(&p);
    smp_seq_accept(q, 0);
    CHECK_EQ_INT(sample1(q, l), 1);
    smp_seq_accept(q, 5);
    CHECK_EQ_INT(sample1(q, l), 1);
    smp_seq_accept(q, 6);
    CHECK_EQ_INT(sample1(q, l), 0);
    CHECK(smp_seq_accept(q, V) == -EINVAL);
    CHECK(smp_seq_accept(q, -1) == -EINVAL);
    smp_seq_free(q);
    /* penalty_last_n 0: no penalties at all */
    p.penalty_last_n = 0;
    q = mkseq(&p);
    smp_seq_accept(q, 0);
    CHECK_EQ_INT(sample1(q, l), 0);
    smp_seq_free(q);
}

/* Asking for logprobs changes what is reported, never what is drawn: the same seed gives the
 * same tokens with and without them, and without them the chosen token's logprob is NaN
 * (not computed). */
static void test_logprobs_do_not_change_draws(void)
{
    float l[V];
    logits_of(probs4, l);
    smp_params p;
    smp_params_default(&p);
    p.temperature = 0.7f;
    p.seed = 7;
    smp_seq *plain = mkseq(&p);
    p.n_logprobs = 3;
    smp_seq *with_lp = mkseq(&p);
    for (int i = 0; i < 100; i++) {
        smp_result a, b;
        eng_error err = {0};
        CHECK(smp_sample(S, plain, l, &a, &err) == 0);
        CHECK(smp_sample(S, with_lp, l, &b, &err) == 0);
        CHECK_EQ_INT(a.token, b.token);
        CHECK(isnan(a.logprob) && a.n_top == 0);
        CHECK(isfinite(b.logprob) && b.logprob <= 0.0f && b.n_top == 3);
    }
    smp_seq_free(plain);
    smp_seq_free(with_lp);
}

static void test_logprobs_and_stop_tokens(void)
{
    float l[V] = {0.5f, 1.5f, -2.0f, 1.5f, 0.25f, 3.0f, -1.0f, 0.0f};
    smp_params p;
    smp_params_default(&p);
    p.n_logprobs = 4;
    p.n_stop_tokens = 2;
    p.stop_tokens[0] = 2;
    p.stop_tokens[1] = 7;
    p.repeat_penalty = 5.0f; /* penalties do not change the reported logprobs */
    smp_seq *q = mkseq(&p);
    smp_seq_accept(q, 5);
    smp_result r;
    eng_error err = {0};
    CHECK(smp_sample(S, q, l, &r, &err) == 0);
    double z = 0;
    for (int i = 0; i < V; i++) z += exp((double)l[i]);
    double lse = log(z);
    CHECK_EQ_INT(r.token, 1); /* 3.0/5 = 0.6 < 1.5; tie 1/3 -> 1 */
    CHECK(fabs(r.logprob - (1.5 - lse)) < 1e-5);
    CHECK_EQ_INT(r.n_top, 4);
    const int want[4] = {5, 1, 3, 0};
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_INT(r.top[i].id, want[i]);
        CHECK(fabs(r.top[i].logprob - (l[want[i]] - lse)) < 1e-5);
    }
    CHECK(smp_seq_is_stop_token(q, 2));
    CHECK(smp_seq_is_stop_token(q, 7));
    CHECK(!smp_seq_is_stop_token(q, 1));
    smp_seq_free(q);
}

/* feeds pieces, returns released text concatenated and whether it stopped */
static bool run_stop(smp_stop *m, const char *const *pieces, int n, char *acc, bool flush)
{
    char out[1024];
    size_t ol;
    bool stopped = false;
    acc[0] = 0;
    for (int i = 0; i < n; i++) {
        CHECK(smp_stop_feed(m, pieces[i], strlen(pieces[i]), out, sizeof out, &ol, &stopped) == 0);
        strncat(acc, out, ol);
    }
    if (flush && !stopped) {
        CHECK(smp_stop_flush(m, out, sizeof out, &ol) == 0);
        strncat(acc, out, ol);
    }
    return stopped;
}

static void test_stop_strings(void)
{
    eng_error err = {0};
    const char *stops[] = {"world", "\n\n", "abc"};
    smp_stop *m = NULL;
    CHECK(smp_stop_create(stops, 3, &m, &err) == 0);
    char acc[1024], out[64];
    size_t ol;
    bool st;

    /* held while it could match, released piece by piece */
    CHECK(smp_stop_feed(m, "Hello wo", 8, out, sizeof out, &ol, &st) == 0);
    CHECK(!st && ol == 6 && memcmp(out, "Hello ", 6) == 0);
    CHECK_EQ_INT(smp_stop_held(m), 2);
    CHECK(smp_stop_feed(m, "r", 1, out, sizeof out, &ol, &st) == 0);
    CHECK(!st && ol == 0 && smp_stop_held(m) == 3);
    CHECK(smp_stop_feed(m, "ld!", 3, out, sizeof out, &ol, &st) == 0);
    CHECK(st && ol == 0);
    CHECK(smp_stop_feed(m, "more", 4, out, sizeof out, &ol, &st) == 0);
    CHECK(st && ol == 0);

    /* a prefix that fails is released in full */
    smp_stop_reset(m);
    const char *p1[] = {"x a", "b", "d end"};
    CHECK(!run_stop(m, p1, 3, acc, true));
    CHECK(strcmp(acc, "x abd end") == 0);

    /* split across tokens, text before it released */
    smp_stop_reset(m);
    const char *p2[] = {"one\n", "\ntwo"};
    CHECK(run_stop(m, p2, 2, acc, true));
    CHECK(strcmp(acc, "one") == 0);

    /* earliest stop string wins, several in one piece */
    smp_stop_reset(m);
    const char *p3[] = {"zz abc world"};
    CHECK(run_stop(m, p3, 1, acc, true));
    CHECK(strcmp(acc, "zz ") == 0);

    /* ends while holding: flush releases */
    smp_stop_reset(m);
    const char *p4[] = {"hello w", "orl"};
    CHECK(!run_stop(m, p4, 2, acc, false));
    CHECK(strcmp(acc, "hello ") == 0);
    CHECK(smp_stop_flush(m, out, sizeof out, &ol) == 0 && ol == 4 && memcmp(out, "worl", 4) == 0);

    /* overlapping prefixes: "wworld" */
    smp_stop_reset(m);
    const char *p5[] = {"w", "w", "orld"};
    CHECK(run_stop(m, p5, 3, acc, true));
    CHECK(strcmp(acc, "w") == 0);

    /* out too small */
    smp_stop_reset(m);
    CHECK(smp_stop_feed(m, "wor", 3, out, sizeof out, &ol, &st) == 0 && smp_stop_held(m) == 3);
    CHECK(smp_stop_feed(m, "xyz", 3, out, 5, &ol, &st) == -ENOSPC);
    CHECK_EQ_INT(smp_stop_held(m), 3);
    smp_stop_free(m);

    /* no stop strings: everything passes through */
    CHECK(smp_stop_create(NULL, 0, &m, &err) == 0);
    const char *p6[] = {"a", "bc"};
    CHECK(!run_stop(m, p6, 2, acc, false));
    CHECK(strcmp(acc, "abc") == 0);
    smp_stop_free(m);

    /* validation */
    const char *bad[] = {"ok", ""};
    m = NULL;
    CHECK(smp_stop_create(bad, 2, &m, &err) == -EINVAL && m == NULL);
    CHECK(strstr(err.msg, "empty") != NULL);
    CHECK(smp_stop_create(stops, SMP_MAX_STOP_STRINGS + 1, &m, &err) == -EINVAL);
}

static void test_large_vocab_topk(void)
{
    /* heap selection path on a bigger vocabulary equals a plain sort */
    enum { NV = 5000 };
    static float l[NV];
    smp_rng r;
    smp_rng_seed(&r, 3);
    for (int i = 0; i < NV; i++) l[i] = smp_rng_uniform(&r) * 10.0f;
    l[17] = l[18] = 20.0f; /* tie */
    smp_sampler *s = NULL;
    eng_error err = {0};
    CHECK(smp_sampler_create(NV, &s, &err) == 0);
    smp_params p;
    smp_params_default(&p);
    p.temperature = 1.0f;
    p.top_k = 2;
    p.n_logprobs = 3;
    smp_seq *q = NULL;
    CHECK(smp_seq_create(&p, NV, &q, &err) == 0);
    int seen17 = 0, seen18 = 0;
    for (int i = 0; i < 300; i++) {
        smp_result res;
        CHECK(smp_sample(s, q, l, &res, &err) == 0);
        CHECK(res.token == 17 || res.token == 18);
        seen17 += res.token == 17;
        seen18 += res.token == 18;
        CHECK(res.top[0].id == 17 && res.top[1].id == 18);
    }
    CHECK(seen17 > 50 && seen18 > 50);
    smp_seq_free(q);
    smp_sampler_free(s);
}

int main(void)
{
    eng_error err = {0};
    CHECK(smp_sampler_create(V, &S, &err) == 0);
    test_validation();
    test_greedy();
    test_greedy_scan();
    test_truncation();
    test_distribution();
    test_determinism();
    test_penalties();
    test_logprobs_and_stop_tokens();
    test_logprobs_do_not_change_draws();
    test_stop_strings();
    test_large_vocab_topk();
    smp_sampler_free(S);
    printf("fwd_sampler: ok\n");
    return 0;
}
