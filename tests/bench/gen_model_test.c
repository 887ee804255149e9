/* The synthetic model generator (bench/genmodel.c): a tiny-shape model in every weight type
 * it writes loads with eng_model_load and has the shapes, keys and vocabulary asked for; and
 * the quantizers round-trip through our dequantizers within each format's error bound. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "genmodel.h"
#include "gguf.h"
#include "model.h"
#include "quant.h"
#include "testutil.h"

static uint64_t rs = 0x243F6A8885A308D3ull;
static float rnd(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (float)((double)(rs >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* quantize -> dequantize; the error of element k must stay within bound(block) */
static void roundtrip(uint32_t type, size_t n, float scale)
{
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    uint8_t *q = malloc(n * 4);
    CHECK(x && y && q);
    for (size_t i = 0; i < n; i++) x[i] = rnd() * scale;
    if (n >= 64) x[5] = 0.0f, x[40] = -scale; /* a zero and an extreme */
    CHECK_EQ_INT(eng_quantize_row(type, x, q, n), 0);
    eng_dequant_row(type, q, y, n);
    const size_t be = eng_type_info_get(type)->block_elems;
    double worst = 0;
    for (size_t b0 = 0; b0 < n; b0 += (be > 1 ? be : n)) {
        size_t bn = be > 1 ? be : n;
        double amax = 0, lo = 0, hi = 0;
        for (size_t k = b0; k < b0 + bn; k++) {
            amax = fmax(amax, fabs(x[k]));
            lo = fmin(lo, x[k]);
            hi = fmax(hi, x[k]);
        }
        for (size_t k = b0; k < b0 + bn; k++) {
            double err = fabs((double)y[k] - x[k]), bound;
            switch (type) {
            case ENG_TYPE_F32: bound = 0; break;
            case ENG_TYPE_F16: bound = fabs(x[k]) * 0x1p-11 + 0x1p-25; break;
            /* half a step (amax/127), the step itself off by the f16 scale's rounding */
            case ENG_TYPE_Q8_0: bound = amax / 127 * (0.5 + 128 * 0x1p-11); break;
            /* step amax/8; the far end (+amax side) may clip at 7 steps: one step */
            case ENG_TYPE_Q4_0: bound = amax / 8 * (1.0 + 16 * 0x1p-11); break;
            /* per sub-block step (hi-lo)/15, its scale and min rounded to 6-bit multiples
             * of the block's largest / 63: within one sub-block step (measured: 0.2) */
            default: bound = (hi - lo) / 15; break;
            }
            CHECK_MSG(err <= bound + 1e-12, "%s n=%zu element %zu: %g -> %g (bound %g)",
                      eng_type_name(type), n, k, (double)x[k], (double)y[k], bound);
            if (bound > 0 && err / bound > worst) worst = err / bound;
        }
    }
    printf("ok round trip %-5s n=%-5zu worst err / bound %.2f\n", eng_type_name(type), n, worst);
    free(x);
    free(y);
    free(q);
}

static void gen_and_load(uint32_t type)
{
    const gm_spec *s = gm_preset("tiny");
    CHECK(s);
    const char *dir = tu_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/tiny-%s.gguf", dir, eng_type_name(type));
    const char *vocab = tu_shared("models/llama.cpp-vocab/ggml-vocab-llama-spm.gguf");
    eng_error err = {0};
    int rc = gm_write(s, type, vocab, path, 7, &err);
    CHECK_MSG(rc == 0, "gm_write: %s", err.msg);

    eng_model *m = NULL;
    rc = eng_model_load(path, &m, &err);
    CHECK_MSG(rc == 0, "eng_model_load: %s", err.msg);
    const eng_hparams *hp = &m->hp;
    CHECK_EQ_INT((int)hp->n_layer, (int)s->n_layer);
    CHECK_EQ_INT((int)hp->n_embd, (int)s->n_embd);
    CHECK_EQ_INT((int)hp->n_ff, (int)s->n_ff);
    CHECK_EQ_INT((int)hp->n_head, (int)s->n_head);
    CHECK_EQ_INT((int)hp->n_head_kv, (int)s->n_head_kv);
    CHECK_EQ_INT((int)hp->head_dim, (int)s->head_dim);
    CHECK_EQ_INT((int)hp->n_ctx_train, (int)s->n_ctx);
    CHECK_EQ_INT((int)hp->n_vocab, 32000);
    CHECK(hp->rope_base == s->rope_base);
    CHECK(hp->rope_freqs != NULL); /* tiny has llama3 scaling: rope_freqs.weight */
    /* factor 8, low 1, high 4, original context 128, head_dim 64, base 1e4: the first pair
     * (wavelength 2 pi) is unscaled, the last (wavelength ~ 1.5e4 > 128) divided by 8 */
    CHECK(hp->rope_freqs[0] == 1.0f);
    CHECK(hp->rope_freqs[s->head_dim / 2 - 1] == 8.0f);
    CHECK(m->tied_output == s->tied);
    CHECK_EQ_INT((int)m->layers[1].w_down.type, (int)type);
    CHECK_EQ_INT((int)m->tok_embd.type, (int)type);
    CHECK_EQ_INT((int)m->layers[0].wk.rows, (int)(s->n_head_kv * s->head_dim));
    CHECK(m->layers[0].attn_norm[3] > 0.9f && m->layers[0].attn_norm[3] < 1.1f);
    /* metadata a llama.cpp loader reads */
    uint32_t u = 0;
    CHECK(gguf_get_u32(m->gguf, "general.alignment", &u) == 0 && u == 32);
    CHECK(gguf_get_u32(m->gguf, "general.quantization_version", &u) == 0 && u == 2);
    CHECK(m->file_type != ENG_FILE_TYPE_UNKNOWN);
    gguf_str str;
    CHECK(gguf_get_str(m->gguf, "tokenizer.ggml.model", &str) == 0 && gguf_str_eq(str, "llama"));
    gguf_value scores;
    CHECK(gguf_get_arr(m->gguf, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, &scores) == 0 &&
          scores.arr_n == 32000);
    /* weights: N(0, 0.02) after quantization */
    float *row = malloc(s->n_embd * sizeof(float));
    CHECK(row);
    double ss = 0;
    for (int r = 0; r < 8; r++) {
        eng_dequant_row(type, (const char *)m->layers[0].wq.data + r * m->layers[0].wq.row_bytes,
                        row, s->n_embd);
        for (uint32_t k = 0; k < s->n_embd; k++) ss += (double)row[k] * row[k];
    }
    double sd = sqrt(ss / (8.0 * s->n_embd));
    CHECK_MSG(sd > 0.017 && sd < 0.023, "weights have sd %g", sd);
    free(row);
    eng_model_free(m);

    /* the same seed writes the same bytes; another seed other bytes */
    char path2[512];
    snprintf(path2, sizeof path2, "%s/tiny-%s-2.gguf", dir, eng_type_name(type));
    CHECK(gm_write(s, type, vocab, path2, 7, &err) == 0);
    size_t n1, n2;
    char *a = tu_read_file(path, &n1), *b = tu_read_file(path2, &n2);
    CHECK(n1 == n2 && memcmp(a, b, n1) == 0);
    free(b);
    CHECK(gm_write(s, type, vocab, path2, 8, &err) == 0);
    b = tu_read_file(path2, &n2);
    CHECK(n1 == n2 && memcmp(a, b, n1) != 0);
    free(a);
    free(b);
    remove(path);
    remove(path2);
    printf("ok generate + load tiny %s\n", eng_type_name(type));
}

int main(void)
{
    static const uint32_t types[] = {ENG_TYPE_F32, ENG_TYPE_F16, ENG_TYPE_Q8_0, ENG_TYPE_Q4_0,
                                     ENG_TYPE_Q4_K};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        roundtrip(types[i], 256, 1.0f);
        roundtrip(types[i], 2048, 0.02f);
        gen_and_load(types[i]);
    }
    /* errors: a type without a quantizer, a row length off the block size, a bad vocab */
    float x[64] = {0};
    uint8_t q[512];
    CHECK(eng_quantize_row(ENG_TYPE_Q6_K, x, q, 256) == -95 /* ENOTSUP */);
    CHECK(eng_quantize_row(ENG_TYPE_Q8_0, x, q, 33) == -22);
    eng_error err = {0};
    CHECK(gm_write(gm_preset("tiny"), ENG_TYPE_Q6_K, "/nonexistent", "/nonexistent", 1, &err) < 0);
    CHECK(gm_write(gm_preset("tiny"), ENG_TYPE_Q8_0, "/nonexistent.gguf", "/tmp/x.gguf", 1, &err) < 0);
    CHECK(gm_preset("nope") == NULL);
    printf("gen_model_test: ok\n");
    return 0;
}
