/* Synthetic model writer (see genmodel.h). */
#include "genmodel.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "quant.h"

static const gm_spec presets[] = {
    /* HuggingFaceTB/SmolLM2-135M config.json */
    {"smollm2-135m", 30, 576, 1536, 9, 3, 64, 8192, 100000.0f, 1e-5f, true, false, 0, 0, 0, 0},
    /* TinyLlama/TinyLlama-1.1B-Chat-v1.0 config.json */
    {"tinyllama-1.1b", 22, 2048, 5632, 32, 4, 64, 2048, 10000.0f, 1e-5f, false, false, 0, 0, 0, 0},
    /* meta-llama/Llama-3.2-1B config.json */
    {"llama3.2-1b", 16, 2048, 8192, 32, 8, 64, 131072, 500000.0f, 1e-5f, true, true, 32.0f, 1.0f,
     4.0f, 8192},
    /* for tests */
    {"tiny", 2, 256, 512, 4, 2, 64, 256, 10000.0f, 1e-5f, false, true, 8.0f, 1.0f, 4.0f, 128},
};

const gm_spec *gm_preset_at(int i)
{
    return i >= 0 && i < (int)(sizeof presets / sizeof presets[0]) ? &presets[i] : NULL;
}

const gm_spec *gm_preset(const char *name)
{
    for (int i = 0; gm_preset_at(i); i++)
        if (!strcmp(presets[i].name, name)) return &presets[i];
    return NULL;
}

/* ---- random numbers: splitmix64 + Box-Muller */

typedef struct rng { uint64_t s; int have; float spare; } rng;

static uint64_t rng_u64(rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float rng_normal(rng *r)
{
    if (r->have) {
        r->have = 0;
        return r->spare;
    }
    double u1 = ((double)(rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (double)(rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    double rad = sqrt(-2.0 * log(u1)), th = 6.283185307179586 * u2;
    r->spare = (float)(rad * sin(th));
    r->have = 1;
    return (float)(rad * cos(th));
}

/* ---- writer helpers */

typedef struct wr { FILE *f; int failed; uint64_t pos; } wr;

static void w_bytes(wr *w, const void *p, size_t n)
{
    if (n && fwrite(p, 1, n, w->f) != n) w->failed = 1;
    w->pos += n;
}
static void w_u32(wr *w, uint32_t v) { uint8_t b[4]; for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (8 * i)); w_bytes(w, b, 4); }
static void w_u64(wr *w, uint64_t v) { uint8_t b[8]; for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i)); w_bytes(w, b, 8); }
static void w_f32(wr *w, float f) { uint32_t v; memcpy(&v, &f, 4); w_u32(w, v); }
static void w_str(wr *w, const char *s, uint64_t n) { w_u64(w, n); w_bytes(w, s, (size_t)n); }
static void w_key(wr *w, const char *k, uint32_t type) { w_str(w, k, strlen(k)); w_u32(w, type); }
static void kv_u32(wr *w, const char *k, uint32_t v) { w_key(w, k, GGUF_TYPE_UINT32); w_u32(w, v); }
static void kv_f32(wr *w, const char *k, float v) { w_key(w, k, GGUF_TYPE_FLOAT32); w_f32(w, v); }
static void kv_str(wr *w, const char *k, const char *s) { w_key(w, k, GGUF_TYPE_STRING); w_str(w, s, strlen(s)); }
static void w_pad(wr *w, uint64_t align)
{
    static const uint8_t z[64];
    uint64_t r = w->pos % align;
    if (r) w_bytes(w, z, (size_t)(align - r));
}

/* ---- tensors */

enum { T_NORM, T_MAT, T_EMBD, T_FREQS };

typedef struct tdesc {
    char name[64];
    uint64_t ne0, ne1;  /* ne1 = 1 for vectors */
    uint32_t type;
    int kind;
    uint64_t offset, nbytes;
} tdesc;

static uint32_t file_type_of(uint32_t wtype)
{
    switch (wtype) {
    case ENG_TYPE_F32: return 0;
    case ENG_TYPE_F16: return 1;
    case ENG_TYPE_Q4_0: return 2;
    case ENG_TYPE_Q8_0: return 7;
    case ENG_TYPE_Q4_K: return 14; /* MOSTLY_Q4_K_S: every matrix Q4_K */
    default: return UINT32_MAX;
    }
}

/* llama3 per-pair frequency divisors */
static void llama3_factors(const gm_spec *s, float *out)
{
    const double pi2 = 6.283185307179586;
    const double low_wl = (double)s->rs_orig_ctx / s->rs_low, high_wl = (double)s->rs_orig_ctx / s->rs_high;
    for (uint32_t i = 0; i < s->head_dim / 2; i++) {
        double freq = pow((double)s->rope_base, -(double)(2 * i) / (double)s->head_dim);
        double wl = pi2 / freq, f;
        if (wl < high_wl) f = 1.0;
        else if (wl > low_wl) f = s->rs_factor;
        else {
            double sm = ((double)s->rs_orig_ctx / wl - s->rs_low) / (s->rs_high - s->rs_low);
            f = 1.0 / ((1.0 - sm) / s->rs_factor + sm);
        }
        out[i] = (float)f;
    }
}

static int add_t(tdesc *t, int *nt, const char *name, uint64_t ne0, uint64_t ne1, uint32_t type,
                 int kind, eng_error *err)
{
    tdesc *d = &t[(*nt)++];
    snprintf(d->name, sizeof d->name, "%s", name);
    d->ne0 = ne0;
    d->ne1 = ne1;
    d->type = type;
    d->kind = kind;
    size_t rb;
    int rc = eng_tensor_row_bytes(type, ne0, name, err, &rb);
    if (rc) return rc;
    d->nbytes = (uint64_t)rb * ne1;
    return 0;
}

int gm_write(const gm_spec *s, uint32_t wtype, const char *vocab_path, const char *out_path,
             uint64_t seed, eng_error *err)
{
    if (file_type_of(wtype) == UINT32_MAX)
        return eng_error_set(err, -EINVAL, "weight type %s is not one the generator writes "
                             "(F32, F16, Q8_0, Q4_0, Q4_K)", eng_type_name(wtype));
    if (s->n_head == 0 || s->n_head_kv == 0 || s->n_head % s->n_head_kv || s->head_dim % 2)
        return eng_error_set(err, -EINVAL, "%s: bad head geometry", s->name);
    gguf_file *voc = NULL;
    int rc = gguf_open(vocab_path, &voc, err);
    if (rc) return rc;
    gguf_value toks;
    if (gguf_get_arr(voc, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &toks) || toks.arr_n == 0 ||
        toks.arr_n > UINT32_MAX) {
        gguf_close(voc);
        return eng_error_set(err, -EINVAL, "%s: no tokenizer.ggml.tokens array", vocab_path);
    }
    const uint64_t V = toks.arr_n, E = s->n_embd, F = s->n_ff;
    const uint64_t QD = (uint64_t)s->n_head * s->head_dim, KD = (uint64_t)s->n_head_kv * s->head_dim;

    const int max_t = 4 + 9 * (int)s->n_layer;
    tdesc *t = calloc((size_t)max_t, sizeof *t);
    if (!t) {
        gguf_close(voc);
        return eng_error_set(err, -ENOMEM, "out of memory");
    }
    int nt = 0;
    char nm[64];
    rc = add_t(t, &nt, "token_embd.weight", E, V, wtype, T_EMBD, err);
    rc = rc ? rc : add_t(t, &nt, "output_norm.weight", E, 1, ENG_TYPE_F32, T_NORM, err);
    if (!s->tied) rc = rc ? rc : add_t(t, &nt, "output.weight", E, V, wtype, T_MAT, err);
    if (s->llama3_rope)
        rc = rc ? rc : add_t(t, &nt, "rope_freqs.weight", s->head_dim / 2, 1, ENG_TYPE_F32, T_FREQS, err);
    for (uint32_t l = 0; l < s->n_layer && !rc; l++) {
        static const char *const names[] = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                                            "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"};
        const uint64_t shp[9][2] = {{E, 1}, {E, QD}, {E, KD}, {E, KD}, {QD, E},
                                    {E, 1}, {E, F}, {E, F}, {F, E}};
        for (int i = 0; i < 9 && !rc; i++) {
            snprintf(nm, sizeof nm, "blk.%u.%s.weight", l, names[i]);
            const bool norm = shp[i][1] == 1;
            rc = add_t(t, &nt, nm, shp[i][0], shp[i][1], norm ? ENG_TYPE_F32 : wtype,
                       norm ? T_NORM : T_MAT, err);
        }
    }
    uint64_t off = 0;
    for (int i = 0; i < nt; i++) {
        t[i].offset = off;
        off += (t[i].nbytes + 31) / 32 * 32;
    }

    FILE *f = rc ? NULL : fopen(out_path, "wb");
    if (!rc && !f) rc = eng_error_set(err, -errno, "%s: %s", out_path, strerror(errno));
    if (rc) {
        free(t);
        gguf_close(voc);
        return rc;
    }
    static char fbuf[1 << 20];
    setvbuf(f, fbuf, _IOFBF, sizeof fbuf);
    wr w = {f, 0, 0};

    /* header and metadata */
    size_t n_tok_kv = 0;
    for (size_t i = 0; i < gguf_n_kv(voc); i++) {
        const gguf_kv *kv = gguf_kv_at(voc, i);
        if (kv->key.len > 10 && !memcmp(kv->key.ptr, "tokenizer.", 10)) n_tok_kv++;
    }
    const uint64_t n_kv = 17 + n_tok_kv;
    w_bytes(&w, "GGUF", 4);
    w_u32(&w, 3);
    w_u64(&w, (uint64_t)nt);
    w_u64(&w, n_kv);
    kv_str(&w, "general.architecture", "llama");
    char gname[96];
    snprintf(gname, sizeof gname, "synthetic %s", s->name);
    kv_str(&w, "general.name", gname);
    kv_u32(&w, "general.file_type", file_type_of(wtype));
    kv_u32(&w, "general.quantization_version", 2);
    kv_u32(&w, "general.alignment", 32);
    kv_u32(&w, "llama.block_count", s->n_layer);
    kv_u32(&w, "llama.context_length", s->n_ctx);
    kv_u32(&w, "llama.embedding_length", s->n_embd);
    kv_u32(&w, "llama.feed_forward_length", s->n_ff);
    kv_u32(&w, "llama.attention.head_count", s->n_head);
    kv_u32(&w, "llama.attention.head_count_kv", s->n_head_kv);
    kv_u32(&w, "llama.attention.key_length", s->head_dim);
    kv_u32(&w, "llama.attention.value_length", s->head_dim);
    kv_u32(&w, "llama.rope.dimension_count", s->head_dim);
    kv_f32(&w, "llama.rope.freq_base", s->rope_base);
    kv_f32(&w, "llama.attention.layer_norm_rms_epsilon", s->rms_eps);
    kv_u32(&w, "llama.vocab_size", (uint32_t)V);
    for (size_t i = 0; i < gguf_n_kv(voc); i++) {
        const gguf_kv *kv = gguf_kv_at(voc, i);
        if (!(kv->key.len > 10 && !memcmp(kv->key.ptr, "tokenizer.", 10))) continue;
        w_str(&w, kv->key.ptr, kv->key.len);
        w_u32(&w, kv->val.type);
        if (kv->val.type == GGUF_TYPE_ARRAY) {
            w_u32(&w, kv->val.arr_type);
            w_u64(&w, kv->val.arr_n);
        } else if (kv->val.type == GGUF_TYPE_STRING) {
            w_u64(&w, kv->val.size);
        }
        w_bytes(&w, kv->val.data, (size_t)kv->val.size);
    }
    for (int i = 0; i < nt; i++) {
        w_str(&w, t[i].name, strlen(t[i].name));
        const bool vec = t[i].kind == T_NORM || t[i].kind == T_FREQS;
        w_u32(&w, vec ? 1 : 2);
        w_u64(&w, t[i].ne0);
        if (!vec) w_u64(&w, t[i].ne1);
        w_u32(&w, t[i].type);
        w_u64(&w, t[i].offset);
    }
    w_pad(&w, 32);
    gguf_close(voc);

    /* data: each tensor from its own stream (seed, tensor index), row by row */
    float *row = malloc((size_t)(E > F ? (E > QD ? E : QD) : (F > QD ? F : QD)) * sizeof(float) + 64 * sizeof(float));
    uint8_t *qrow = malloc((size_t)(E > F ? (E > QD ? E : QD) : (F > QD ? F : QD)) * 4 + 64);
    if (!row || !qrow) rc = eng_error_set(err, -ENOMEM, "out of memory");
    const uint64_t data0 = w.pos;
    for (int i = 0; i < nt && !rc && !w.failed; i++) {
        rng r = {seed * 0x100000001B3ull + (uint64_t)i * 0x9E3779B97F4A7C15ull + 1, 0, 0};
        w_pad(&w, 32);
        if (w.pos - data0 != t[i].offset) {
            rc = eng_error_set(err, -EIO, "internal: tensor %s offset mismatch", t[i].name);
            break;
        }
        if (t[i].kind == T_FREQS) {
            llama3_factors(s, row);
            w_bytes(&w, row, (size_t)t[i].ne0 * 4);
            continue;
        }
        size_t rb = (size_t)(t[i].nbytes / t[i].ne1);
        for (uint64_t rr = 0; rr < t[i].ne1; rr++) {
            for (uint64_t k = 0; k < t[i].ne0; k++) {
                float g = rng_normal(&r);
                row[k] = t[i].kind == T_NORM ? 1.0f + 0.02f * g : 0.02f * g;
            }
            rc = eng_quantize_row(t[i].type, row, qrow, (size_t)t[i].ne0);
            if (rc) {
                rc = eng_error_set(err, rc, "cannot quantize %s to %s", t[i].name,
                                   eng_type_name(t[i].type));
                break;
            }
            w_bytes(&w, qrow, rb);
        }
    }
    free(row);
    free(qrow);
    free(t);
    if (fclose(f) != 0) w.failed = 1;
    if (!rc && w.failed) rc = eng_error_set(err, -EIO, "%s: write failed", out_path);
    if (rc) remove(out_path);
    return rc;
}
