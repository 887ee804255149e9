/* Dot and matrix kernels: accuracy against a double-precision reference on the
 * dequantized weights, and batch invariance (bit-identical results for any nt, r0, r1,
 * token neighbours, and equal to eng_dot_row), for eng_matmul_rows and for the f32-activation
 * reference eng_matmul_rows_f32act. Also the type table and row sizes. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eng_error.h"
#include "quant.h"
#include "quant_q8.h"
#include "testutil.h"
#include "vq.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rng_u32(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}
static float rng_f(void) { return (float)((double)rng_u32() / 4294967296.0 * 2.0 - 1.0); }

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

/* W: nrows rows of n elements of type, row_bytes apart. Checks everything on it. */
static void check_matrix(const char *what, uint32_t type, const uint8_t *w, size_t row_bytes,
                         size_t n, size_t nrows)
{
    const size_t NT = 70; /* more than one 64-token group */
    const size_t ldx = n + 3, ldy = nrows + 5;
    float *x = malloc(NT * ldx * sizeof(float));
    float *yfull = malloc(NT * ldy * sizeof(float));
    float *ypart = malloc(NT * ldy * sizeof(float));
    float *deq = malloc(n * sizeof(float));
    CHECK(x && yfull && ypart && deq);
    for (size_t i = 0; i < NT * ldx; i++) x[i] = rng_f();
    for (size_t i = 0; i < NT * ldy; i++) yfull[i] = NAN;

    eng_matmul_rows(type, w, row_bytes, n, x, ldx, NT, yfull, ldy, 0, nrows);
    float *yf32 = malloc(NT * ldy * sizeof(float));
    CHECK(yf32);
    eng_matmul_rows_f32act(type, w, row_bytes, n, x, ldx, NT, yf32, ldy, 0, nrows);

    /* Accuracy: every (row, token) against double precision on the dequantized row.
     * The f32-activation path: within f32 rounding (1e-6 of sum |w x|). The 8-bit-activation
     * path (Q8_0, Q4_0, Q4_K, Q6_K): each x is rounded to a multiple of its 32-block's scale
     * d = amax/127 kept as binary16, so it moves by at most 0.5 d (1 + 2^-11) + 127 d 2^-11
     * <= 0.0045 amax: the bound is 0.0045 * sum_k |w_k| amax(block of k), plus f32 rounding. */
    const bool q8act = type == 8 || type == 2 || type == 12 || type == 14;
    double worst = 0, worst_q = 0;
    for (size_t r = 0; r < nrows; r++) {
        eng_dequant_row(type, w + r * row_bytes, deq, n);
        for (size_t t = 0; t < NT; t++) {
            const float *xt = x + t * ldx;
            double ref = 0, mag = 0, qb = 0;
            for (size_t k = 0; k < n; k++) {
                ref += (double)deq[k] * (double)xt[k];
                mag += fabs((double)deq[k] * (double)xt[k]);
                if (q8act) {
                    double amax = 0;
                    for (size_t j = k / 32 * 32; j < k / 32 * 32 + 32; j++)
                        if (fabs(xt[j]) > amax) amax = fabs(xt[j]);
                    qb += fabs((double)deq[k]) * amax * 0.0045;
                }
            }
            double got = yf32[t * ldy + r];
            double err = fabs(got - ref), tol = 1e-6 * mag + 1e-30;
            CHECK_MSG(err <= tol, "%s (f32 act): row %zu token %zu: %.9g vs %.9g (mag %.3g)", what,
                      r, t, got, ref, mag);
            if (mag > 0 && err / mag > worst) worst = err / mag;
            got = yfull[t * ldy + r];
            err = fabs(got - ref);
            tol = q8act ? qb + 1e-6 * mag + 1e-30 : tol;
            CHECK_MSG(err <= tol, "%s: row %zu token %zu: %.9g vs %.9g (mag %.3g, bound %.3g)", what,
                      r, t, got, ref, mag, tol);
            if (q8act && qb > 0 && err / qb > worst_q) worst_q = err / qb;
            if (!q8act) CHECK(same_bits((float)got, yf32[t * ldy + r]));
        }
    }
    free(yf32);
    /* Untouched padding of y stays NaN. */
    for (size_t t = 0; t < NT; t++)
        for (size_t r = nrows; r < ldy; r++) CHECK(isnan(yfull[t * ldy + r]));

    /* Invariance: eng_dot_row, nt = 1 per token, and other token counts / row ranges. */
    for (size_t r = 0; r < nrows; r++)
        for (size_t t = 0; t < NT; t += (r % 3) + 1) {
            float d = eng_dot_row(type, w + r * row_bytes, x + t * ldx, n);
            CHECK_MSG(same_bits(d, yfull[t * ldy + r]), "%s: dot_row row %zu token %zu differs",
                      what, r, t);
        }
    static const size_t nts[] = {1, 2, 3, 5, 6, 7, 8, 12, 16, 17, 33, 48, 64, 65};
    for (size_t ni = 0; ni < sizeof nts / sizeof nts[0]; ni++) {
        size_t nt = nts[ni];
        for (int rep = 0; rep < 4; rep++) {
            size_t t0 = rng_u32() % (NT - nt + 1);
            size_t r0 = rng_u32() % nrows, r1 = r0 + 1 + rng_u32() % (nrows - r0);
            if (rep == 0) { r0 = 0; r1 = nrows; }
            for (size_t i = 0; i < NT * ldy; i++) ypart[i] = NAN;
            eng_matmul_rows(type, w, row_bytes, n, x + t0 * ldx, ldx, nt, ypart, ldy, r0, r1);
            for (size_t t = 0; t < nt; t++)
                for (size_t r = 0; r < ldy; r++) {
                    float g = ypart[t * ldy + r];
                    if (r < r0 || r >= r1) {
                        CHECK_MSG(isnan(g), "%s: wrote outside [r0, r1)", what);
                        continue;
                    }
                    CHECK_MSG(same_bits(g, yfull[(t0 + t) * ldy + r]),
                              "%s: nt=%zu t0=%zu r0=%zu r1=%zu: row %zu token %zu differs "
                              "(%.9g vs %.9g)", what, nt, t0, r0, r1, r, t, (double)g,
                              (double)yfull[(t0 + t) * ldy + r]);
                }
        }
    }
    /* Activations quantized once (eng_act_*): filled in two ranges, then any row range and
     * token count gives eng_matmul_rows' bits. */
    CHECK(eng_act_supported(type, n) == q8act);
    if (q8act) {
        const size_t ab = eng_act_bytes(n, NT);
        CHECK(ab > 0);
        void *act = aligned_alloc(64, (ab + 63) / 64 * 64);
        CHECK(act);
        static const size_t ants[] = {1, 2, 3, 6, 9, 16, 17, 64, 70};
        for (size_t ni = 0; ni < sizeof ants / sizeof ants[0]; ni++) {
            size_t nt = ants[ni], r0 = rng_u32() % nrows, r1 = r0 + 1 + rng_u32() % (nrows - r0);
            if (ni == 0) { r0 = 0; r1 = nrows; }
            CHECK(eng_act_bytes(n, nt) <= ab);
            eng_act_quantize(x, ldx, n, nt, nt / 2, nt, act);
            eng_act_quantize(x, ldx, n, nt, 0, nt / 2, act);
            for (size_t i = 0; i < NT * ldy; i++) ypart[i] = NAN;
            eng_matmul_rows_act(type, w, row_bytes, n, act, nt, ypart, ldy, r0, r1);
            for (size_t t = 0; t < nt; t++)
                for (size_t r = 0; r < ldy; r++) {
                    float g = ypart[t * ldy + r];
                    if (r < r0 || r >= r1) CHECK_MSG(isnan(g), "%s: act wrote outside rows", what);
                    else
                        CHECK_MSG(same_bits(g, yfull[t * ldy + r]),
                                  "%s: act nt=%zu row %zu token %zu differs", what, nt, r, t);
                }
        }
        free(act);
    }
    CHECK(eng_act_bytes(33, 1) == 0 && eng_act_bytes(0, 1) == 0 && eng_act_bytes(64, 3) > 0);
    CHECK(eng_act_bytes(32, SIZE_MAX / 8) == 0);

    /* The same token among different neighbours gives the same bits. */
    float *x2 = malloc(3 * ldx * sizeof(float));
    float *y2 = malloc(3 * nrows * sizeof(float));
    CHECK(x2 && y2);
    for (size_t i = 0; i < 3 * ldx; i++) x2[i] = rng_f();
    memcpy(x2 + ldx, x + 5 * ldx, n * sizeof(float));
    size_t r = nrows / 2;
    eng_matmul_rows(type, w, row_bytes, n, x2, ldx, 3, y2, nrows, r, r + 1);
    CHECK_MSG(same_bits(y2[nrows + r], yfull[5 * ldy + r]), "%s: neighbours changed a result", what);
    /* nt = 0 and an empty row range do nothing. */
    y2[0] = 42.0f;
    eng_matmul_rows(type, w, row_bytes, n, x, ldx, 0, y2, 1, 0, nrows);
    eng_matmul_rows(type, w, row_bytes, n, x, ldx, 1, y2, 1, 3, 3);
    CHECK(y2[0] == 42.0f);
    free(y2);
    /* a digest of every result bit, to compare builds (tests/quant/same_bits.sh) */
    uint64_t h = 1469598103934665603ull;
    for (size_t t = 0; t < NT; t++)
        for (size_t rr = 0; rr < nrows; rr++) {
            uint32_t u;
            memcpy(&u, &yfull[t * ldy + rr], 4);
            h = (h ^ u) * 1099511628211ull;
        }
    printf("ok %-28s n=%-4zu rows=%-4zu bits %016llx worst rel err %.2g", what, n, nrows,
           (unsigned long long)h, worst);
    if (q8act) printf(", 8-bit act: worst err / bound %.2f", worst_q);
    printf("\n");
    free(x2);
    free(x);
    free(yfull);
    free(ypart);
    free(deq);
}

static void check_vectors(void)
{
    for (int k = 0; k < 14; k++) {
        static const char *const tensors[] = {"blk.0.attn_v.weight", "blk.1.ffn_down.weight"};
        for (int j = 0; j < 2; j++) {
            char gguf[64], what[96];
            snprintf(gguf, sizeof gguf, "vq-%s.gguf", vq_type_names[k]);
            snprintf(what, sizeof what, "%s %s", vq_type_names[k], tensors[j]);
            vq_tensor t;
            vq_load(gguf, tensors[j], &t);
            size_t rb;
            CHECK_EQ_INT(eng_row_bytes(t.type, t.ne0, &rb), 0);
            size_t nrows = t.ne1 < 40 ? (size_t)t.ne1 : 40; /* keep the test fast */
            check_matrix(what, t.type, t.data, rb, (size_t)t.ne0, nrows);
            vq_free(&t);
        }
    }
}

/* Plain float formats with row lengths that are not multiples of 16 (the tail path). */
static void check_plain_types(void)
{
    static const size_t lens[] = {1, 5, 15, 16, 17, 31, 255, 257, 300, 529};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        size_t n = lens[li], nrows = 9;
        float *f = malloc(n * nrows * sizeof(float) + 1);
        uint16_t *h = malloc(n * nrows * sizeof(uint16_t) + 2);
        uint16_t *b = malloc(n * nrows * sizeof(uint16_t));
        CHECK(f && h && b);
        for (size_t i = 0; i < n * nrows; i++) f[i] = rng_f() * 0.1f;
        eng_f32_to_f16_row(f, h, n * nrows);
        for (size_t i = 0; i < n * nrows; i++) {
            uint32_t bits;
            memcpy(&bits, &f[i], 4);
            b[i] = (uint16_t)(bits >> 16);
        }
        char what[64];
        snprintf(what, sizeof what, "F32 synthetic");
        check_matrix(what, 0, (const uint8_t *)f, n * 4, n, nrows);
        /* F32 rows at an odd address give the same bits. */
        uint8_t *fu = malloc(n * nrows * 4 + 1);
        float *xs = malloc(n * sizeof(float));
        CHECK(fu && xs);
        memcpy(fu + 1, f, n * nrows * 4);
        for (size_t i = 0; i < n; i++) xs[i] = rng_f();
        for (size_t r = 0; r < nrows; r++)
            CHECK(same_bits(eng_dot_row(0, fu + 1 + r * n * 4, xs, n),
                            eng_dot_row(0, f + r * n, xs, n)));
        snprintf(what, sizeof what, "F32 synthetic, unaligned");
        check_matrix(what, 0, fu + 1, n * 4, n, nrows);
        free(fu);
        free(xs);
        snprintf(what, sizeof what, "F16 synthetic");
        check_matrix(what, 1, (const uint8_t *)h, n * 2, n, nrows);
        snprintf(what, sizeof what, "BF16 synthetic");
        check_matrix(what, 30, (const uint8_t *)b, n * 2, n, nrows);
        /* Unaligned F16 rows: dequant equals the scalar conversion. */
        uint8_t *u = malloc(n * 2 + 1);
        float *o = malloc(n * sizeof(float));
        CHECK(u && o);
        memcpy(u + 1, h, n * 2);
        eng_dequant_row(1, u + 1, o, n);
        for (size_t i = 0; i < n; i++) CHECK(same_bits(o[i], eng_f16_to_f32(h[i])));
        eng_dequant_row(30, b, o, n);
        for (size_t i = 0; i < n; i++) CHECK(same_bits(o[i], eng_bf16_to_f32(b[i])));
        free(u);
        free(o);
        free(f);
        free(h);
        free(b);
    }
}

static void check_types(void)
{
    static const struct { uint32_t id; const char *name; uint32_t be, bb; } want[] = {
        {0, "F32", 1, 4}, {1, "F16", 1, 2}, {2, "Q4_0", 32, 18}, {3, "Q4_1", 32, 20},
        {6, "Q5_0", 32, 22}, {7, "Q5_1", 32, 24}, {8, "Q8_0", 32, 34}, {10, "Q2_K", 256, 84},
        {11, "Q3_K", 256, 110}, {12, "Q4_K", 256, 144}, {13, "Q5_K", 256, 176},
        {14, "Q6_K", 256, 210}, {20, "IQ4_NL", 32, 18}, {23, "IQ4_XS", 256, 136},
        {30, "BF16", 1, 2},
    };
    int supported = 0;
    for (uint32_t id = 0; id < 200; id++)
        if (eng_type_info_get(id)) supported++;
    CHECK_EQ_INT(supported, 15);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const eng_type_info *ti = eng_type_info_get(want[i].id);
        CHECK_MSG(ti != NULL, "type %u", want[i].id);
        CHECK(strcmp(ti->name, want[i].name) == 0);
        CHECK(strcmp(eng_type_name(want[i].id), want[i].name) == 0);
        CHECK_EQ_INT(ti->block_elems, want[i].be);
        CHECK_EQ_INT(ti->block_bytes, want[i].bb);
    }
    /* Unsupported: no info, a name that says what it is. */
    CHECK(eng_type_info_get(9) == NULL);
    CHECK(eng_type_info_get(15) == NULL);
    CHECK(eng_type_info_get(UINT32_MAX) == NULL);
    CHECK(strcmp(eng_type_name(15), "Q8_K") == 0);
    CHECK(strcmp(eng_type_name(16), "IQ2_XXS") == 0);
    CHECK(strcmp(eng_type_name(42), "unknown(42)") == 0);
    CHECK(strcmp(eng_type_name(UINT32_MAX), "unknown(4294967295)") == 0);

    /* Messages for loaders name the tensor and the type. */
    eng_error err;
    eng_error_clear(&err);
    size_t rb = 777;
    CHECK_EQ_INT(eng_tensor_row_bytes(16, 256, "blk.0.attn_q.weight", &err, &rb), -EINVAL);
    CHECK_MSG(strstr(err.msg, "blk.0.attn_q.weight") && strstr(err.msg, "IQ2_XXS"), "%s", err.msg);
    CHECK_EQ_INT(err.code, -EINVAL);
    CHECK_EQ_INT(eng_tensor_row_bytes(77, 256, "t", &err, &rb), -EINVAL);
    CHECK_MSG(strstr(err.msg, "unknown(77)"), "%s", err.msg);
    CHECK_EQ_INT(eng_tensor_row_bytes(2, 100, "tok", &err, &rb), -EINVAL);
    CHECK_MSG(strstr(err.msg, "tok") && strstr(err.msg, "Q4_0") && strstr(err.msg, "100"), "%s",
              err.msg);
    CHECK_EQ_INT(eng_tensor_row_bytes(0, UINT64_MAX, NULL, &err, &rb), -EOVERFLOW);
    CHECK_MSG(strstr(err.msg, "too large"), "%s", err.msg);
    CHECK_EQ_INT(eng_tensor_row_bytes(0, 7, NULL, NULL, &rb), 0);
    CHECK_EQ_INT(rb, 28);
    CHECK_EQ_INT(eng_tensor_row_bytes(16, 256, NULL, NULL, &rb), -EINVAL);
    rb = 777;
    CHECK_EQ_INT(eng_row_bytes(12, 256, &rb), 0);
    CHECK_EQ_INT(rb, 144);
    CHECK_EQ_INT(eng_row_bytes(12, 4096, &rb), 0);
    CHECK_EQ_INT(rb, 16 * 144);
    CHECK_EQ_INT(eng_row_bytes(2, 4096, &rb), 0);
    CHECK_EQ_INT(rb, 128 * 18);
    CHECK_EQ_INT(eng_row_bytes(0, 7, &rb), 0);
    CHECK_EQ_INT(rb, 28);
    CHECK_EQ_INT(eng_row_bytes(14, 0, &rb), 0);
    CHECK_EQ_INT(rb, 0);
    rb = 777;
    CHECK_EQ_INT(eng_row_bytes(12, 255, &rb), -EINVAL);
    CHECK_EQ_INT(eng_row_bytes(12, 257, &rb), -EINVAL);
    CHECK_EQ_INT(eng_row_bytes(8, 48, &rb), -EINVAL);
    CHECK_EQ_INT(eng_row_bytes(9, 32, &rb), -EINVAL);
    CHECK_EQ_INT(eng_row_bytes(42, 32, &rb), -EINVAL);
    CHECK_EQ_INT(eng_row_bytes(0, UINT64_MAX, &rb), -EOVERFLOW);
    CHECK_EQ_INT(eng_row_bytes(0, (uint64_t)SIZE_MAX / 4 + 1, &rb), -EOVERFLOW);
    CHECK_EQ_INT(eng_row_bytes(8, (UINT64_MAX / 32) * 32, &rb), -EOVERFLOW);
    CHECK_EQ_INT(eng_row_bytes(1, UINT64_MAX / 2 + 1, &rb), -EOVERFLOW);
    CHECK_EQ_INT(rb, 777); /* untouched on failure */
    CHECK_EQ_INT(eng_row_bytes(0, (uint64_t)SIZE_MAX / 4, &rb), 0);
    CHECK_EQ_INT(rb, (SIZE_MAX / 4) * 4);
}

/* nrows random rows of n elements of type through check_matrix */
static void check_random(uint32_t type, size_t n, size_t nrows)
{
    float *wf = malloc(n * sizeof(float));
    CHECK(wf);
    size_t rb;
    CHECK_EQ_INT(eng_row_bytes(type, n, &rb), 0);
    const size_t stride = rb + 6;
    uint8_t *w = malloc(nrows * stride);
    CHECK(w);
    for (size_t r = 0; r < nrows; r++) {
        for (size_t k = 0; k < n; k++) wf[k] = rng_f() * (float)(1 + r % 5);
        CHECK_EQ_INT(eng_quantize_row(type, wf, w + r * stride, n), 0);
    }
    char what[64];
    snprintf(what, sizeof what, "%s random, n %zu", eng_type_name(type), n);
    check_matrix(what, type, w, stride, n, nrows);
    free(w);
    free(wf);
}

/* Matrices larger than the reference tensors: K split into several chunks (the kernels keep
 * 1024 or 2048 elements of prepared weights at a time), row counts with tails, enough rows
 * for the prefetching paths, and a row stride larger than the row. */
static void check_large(void)
{
    static const uint32_t types[] = {ENG_TYPE_Q8_0, ENG_TYPE_Q4_0, ENG_TYPE_Q4_K};
    /* long rows, a few each to keep the double-precision reference quick: at and past the
     * longest rows whose activations the token-lane kernel (mt16: 6-64 tokens of Q8_0, 9-64
     * of Q4_0) interleaves (16384 elements for 16 tokens, 4096 for 64) */
    static const struct { size_t n, nrows; } shapes[] = {{2304, 37}, {4096, 6}, {4128, 3}, {16384, 5}, {16416, 3}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
            if (si == 0 || types[ti] != ENG_TYPE_Q4_K) check_random(types[ti], shapes[si].n, shapes[si].nrows);
    const size_t n = 2304, nrows = 37;
    /* Q6_K (no quantizer here): random bytes with a sane scale d per super-block */
    size_t rb;
    CHECK_EQ_INT(eng_row_bytes(ENG_TYPE_Q6_K, n, &rb), 0);
    const size_t stride = rb + 6;
    uint8_t *w = malloc(nrows * stride);
    CHECK(w);
    for (size_t i = 0; i < nrows * stride; i++) w[i] = (uint8_t)rng_u32();
    for (size_t r = 0; r < nrows; r++)
        for (size_t sb = 0; sb < n / 256; sb++) {
            uint16_t d = eng_f32_to_f16(0.001f + 0.01f * (float)(rng_u32() % 100) / 100.0f);
            memcpy(w + r * stride + sb * 210 + 208, &d, 2);
        }
    check_matrix("Q6_K random", ENG_TYPE_Q6_K, w, stride, n, nrows);
    free(w);
}

/* Activation quantization (every instruction set's code) against a plain restatement of its
 * contract, on ordinary blocks and on the edges: zeros, ties at .5, values that round to the
 * clamp, tiny and huge scales (binary16 subnormal / overflow: the f32 scale is kept), NaN and
 * infinities (defined results, no undefined conversions). */
static void check_quantize_act(void)
{
    enum { NB = 12, N = NB * 32 };
    float x[N];
    for (size_t i = 0; i < N; i++) x[i] = rng_f() * 3.0f;
    for (size_t i = 32; i < 64; i++) x[i] = 0.0f;                      /* all zero */
    for (size_t i = 64; i < 96; i++) x[i] = (float)((int)i - 80) * 0.5f; /* ties */
    x[64] = 127.0f;                                                      /* id = 1 */
    for (size_t i = 96; i < 128; i++) x[i] *= 1e-9f;                    /* half subnormal */
    for (size_t i = 128; i < 160; i++) x[i] *= 1e7f;                    /* half overflow */
    x[170] = NAN;
    x[200] = INFINITY;
    x[240] = -INFINITY;
    x[241] = NAN;
    for (size_t i = 256; i < 288; i++) x[i] = (i % 2 ? -1.0f : 1.0f) * (float)(i - 255);
    int8_t q[N];
    float dx[NB];
    int32_t bs[NB], ls[NB];
    qq_quantize_act(x, N, q, dx, bs, ls);
    for (size_t b = 0; b < NB; b++) {
        const float *xb = x + 32 * b;
        float amax = 0.0f;
        for (int j = 0; j < 32; j++)
            if (fabsf(xb[j]) > amax) amax = fabsf(xb[j]);
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        int32_t sum = 0, lo = 0;
        for (int j = 0; j < 32; j++) {
            float v = nearbyintf(xb[j] * id);
            int want = isnan(v) || v >= 127.0f ? 127 : v <= -127.0f ? -127 : (int)v;
            CHECK_MSG(q[32 * b + (size_t)j] == want, "block %zu element %d: %d, want %d", b, j,
                      q[32 * b + (size_t)j], want);
            sum += want;
            if (j < 16) lo += want;
        }
        CHECK_MSG(bs[b] == sum, "block %zu: sum %d, want %d", b, (int)bs[b], (int)sum);
        CHECK_MSG(ls[b] == lo, "block %zu: first-half sum %d, want %d", b, (int)ls[b], (int)lo);
        const float d = amax / 127.0f, dh = eng_f16_to_f32(eng_f32_to_f16(d));
        const float want_d = dh >= 0x1p-14f && dh <= 65504.0f ? dh : d;
        CHECK_MSG(same_bits(dx[b], want_d), "block %zu: dx %.9g, want %.9g", b, (double)dx[b],
                  (double)want_d);
    }
    printf("ok activation quantization (%d blocks, edge cases)\n", NB);
}

int main(void)
{
    check_quantize_act();
    check_types();
    check_plain_types();
    check_vectors();
    check_large();
    return 0;
}
