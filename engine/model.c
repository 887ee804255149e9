/* Llama model description from GGUF metadata and tensors: see model.h. */
#include "model.h"

#include "quant.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Sane bounds for values from an untrusted file. */
#define MAX_LAYERS 4096u
#define MAX_EMBD (1u << 20)
#define MAX_FF (1u << 22)
#define MAX_HEADS 4096u
#define MAX_HEAD_DIM 4096u
#define MAX_CTX (1u << 24)
#define MAX_VOCAB (1u << 24)

/* ------------------------------------------------------------------ metadata */

typedef struct loader {
    gguf_file *f;
    const char *arch;
    eng_error *err;
} loader;

static void arch_key(const loader *l, const char *suffix, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s.%s", l->arch, suffix);
}

/* An integer hparam "<arch>.<suffix>"; *present tells whether it was there (NULL: required). */
static int get_u32(loader *l, const char *suffix, uint32_t *v, bool *present)
{
    char key[128];
    arch_key(l, suffix, key, sizeof key);
    int rc = gguf_get_u32(l->f, key, v);
    if (present) *present = rc == 0;
    if (rc == -ENOENT) {
        if (present) return 0;
        return eng_error_set(l->err, -EINVAL, "missing key %s", key);
    }
    if (rc == -EINVAL) {
        const gguf_value *val = gguf_find(l->f, key);
        return eng_error_set(l->err, -EINVAL, "key %s has type %s, expected an integer", key,
                             gguf_vtype_name(val->type));
    }
    if (rc == -ERANGE)
        return eng_error_set(l->err, -EINVAL, "key %s is out of range (negative or > 2^32-1)",
                             key);
    return rc;
}

static int get_f32(loader *l, const char *suffix, float *v, bool *present)
{
    char key[128];
    arch_key(l, suffix, key, sizeof key);
    int rc = gguf_get_f32(l->f, key, v);
    *present = rc == 0;
    if (rc == -ENOENT) return 0;
    if (rc == -EINVAL) {
        const gguf_value *val = gguf_find(l->f, key);
        return eng_error_set(l->err, -EINVAL, "key %s has type %s, expected a float", key,
                             gguf_vtype_name(val->type));
    }
    return rc;
}

static int check_range(loader *l, const char *suffix, uint64_t v, uint64_t lo, uint64_t hi)
{
    if (v < lo || v > hi)
        return eng_error_set(l->err, -EINVAL, "%s.%s = %llu is out of range (%llu..%llu)",
                             l->arch, suffix, (unsigned long long)v, (unsigned long long)lo,
                             (unsigned long long)hi);
    return 0;
}

static int check_float(loader *l, const char *suffix, float v, float lo, float hi)
{
    if (!isfinite(v) || !(v > lo) || !(v <= hi))
        return eng_error_set(l->err, -EINVAL, "%s.%s = %g is out of range (%g < x <= %g)",
                             l->arch, suffix, (double)v, (double)lo, (double)hi);
    return 0;
}

/* ------------------------------------------------------------------ tensors */

static void shape_str(const gguf_tensor *t, char *buf, size_t cap)
{
    int o = snprintf(buf, cap, "[");
    for (uint32_t d = 0; d < t->n_dims && o > 0 && (size_t)o < cap; d++)
        o += snprintf(buf + o, cap - (size_t)o, d ? ", %llu" : "%llu",
                      (unsigned long long)t->ne[d]);
    if (o > 0 && (size_t)o < cap) snprintf(buf + o, cap - (size_t)o, "]");
}

static const gguf_tensor *find(loader *l, const char *name, bool required, int *rc)
{
    const gguf_tensor *t = gguf_find_tensor(l->f, name);
    *rc = 0;
    if (t == NULL && required) *rc = eng_error_set(l->err, -EINVAL, "missing tensor %s", name);
    return t;
}

/* A 2-D weight of cols (ne0) x rows (ne1). */
static int load_mat(loader *l, const char *name, uint64_t cols, uint64_t rows, bool required,
                    eng_mat *m)
{
    int rc;
    const gguf_tensor *t = find(l, name, required, &rc);
    if (t == NULL) return rc;
    if (t->ne[0] != cols || t->ne[1] != rows || t->ne[2] != 1 || t->ne[3] != 1) {
        char sh[96];
        shape_str(t, sh, sizeof sh);
        return eng_error_set(l->err, -EINVAL, "tensor %s has shape %s, expected [%llu, %llu]",
                             name, sh, (unsigned long long)cols, (unsigned long long)rows);
    }
    size_t rb;
    if (eng_row_bytes(t->type, cols, &rb) != 0)
        return eng_error_set(l->err, -EINVAL, "tensor %s has type %s, which is not supported",
                             name, eng_type_name(t->type));
    m->type = t->type;
    m->rows = rows;
    m->cols = cols;
    m->row_bytes = rb;
    m->data = t->data;
    m->name = t->name.ptr;
    return 0;
}

/* A 1-D F32 vector of n values. */
static int load_vec(loader *l, const char *name, uint64_t n, const char *what, bool required,
                    const float **v)
{
    int rc;
    const gguf_tensor *t = find(l, name, required, &rc);
    if (t == NULL) return rc;
    if (t->type != ENG_TYPE_F32 || t->ne[0] != n || t->ne[1] != 1 || t->ne[2] != 1 ||
        t->ne[3] != 1) {
        char sh[96];
        shape_str(t, sh, sizeof sh);
        return eng_error_set(l->err, -EINVAL,
                             "tensor %s must be 1-D F32 of %s=%llu values (has type %s, shape %s)",
                             name, what, (unsigned long long)n, eng_type_name(t->type), sh);
    }
    if ((uintptr_t)t->data % sizeof(float) != 0)
        return eng_error_set(l->err, -EINVAL, "tensor %s data is not 4-byte aligned", name);
    *v = t->data;
    return 0;
}

/* ------------------------------------------------------------------ hparams */

static int load_hparams(loader *l, eng_hparams *hp)
{
    int rc;
    bool has;
    memset(hp, 0, sizeof *hp);

    if ((rc = get_u32(l, "block_count", &hp->n_layer, NULL)) ||
        (rc = check_range(l, "block_count", hp->n_layer, 1, MAX_LAYERS)))
        return rc;
    if ((rc = get_u32(l, "embedding_length", &hp->n_embd, NULL)) ||
        (rc = check_range(l, "embedding_length", hp->n_embd, 1, MAX_EMBD)))
        return rc;
    if ((rc = get_u32(l, "feed_forward_length", &hp->n_ff, NULL)) ||
        (rc = check_range(l, "feed_forward_length", hp->n_ff, 1, MAX_FF)))
        return rc;
    if ((rc = get_u32(l, "attention.head_count", &hp->n_head, NULL)) ||
        (rc = check_range(l, "attention.head_count", hp->n_head, 1, MAX_HEADS)))
        return rc;
    if ((rc = get_u32(l, "attention.head_count_kv", &hp->n_head_kv, &has))) return rc;
    if (!has) hp->n_head_kv = hp->n_head;
    if ((rc = check_range(l, "attention.head_count_kv", hp->n_head_kv, 1, hp->n_head)))
        return rc;
    if (hp->n_head % hp->n_head_kv != 0)
        return eng_error_set(l->err, -EINVAL,
                             "head count %u is not a multiple of the KV head count %u",
                             hp->n_head, hp->n_head_kv);

    if ((rc = get_u32(l, "attention.key_length", &hp->head_dim, &has))) return rc;
    if (!has) {
        if (hp->n_embd % hp->n_head != 0)
            return eng_error_set(l->err, -EINVAL,
                                 "embedding length %u is not a multiple of the head count %u",
                                 hp->n_embd, hp->n_head);
        hp->head_dim = hp->n_embd / hp->n_head;
    }
    if (hp->head_dim < 2 || hp->head_dim > MAX_HEAD_DIM)
        return eng_error_set(l->err, -EINVAL, "head dimension %u (%s) is out of range (2..%u)",
                             hp->head_dim,
                             has ? "llama.attention.key_length" : "embedding_length / head_count",
                             MAX_HEAD_DIM);
    if (hp->head_dim % 2 != 0)
        return eng_error_set(l->err, -EINVAL, "head dimension %u is odd", hp->head_dim);
    uint32_t vlen;
    if ((rc = get_u32(l, "attention.value_length", &vlen, &has))) return rc;
    if (has && vlen != hp->head_dim)
        return eng_error_set(l->err, -EINVAL,
                             "attention.value_length %u differs from the key length %u "
                             "(unsupported)", vlen, hp->head_dim);

    if ((rc = get_u32(l, "rope.dimension_count", &hp->rope_dim, &has))) return rc;
    if (!has) hp->rope_dim = hp->head_dim;
    if ((rc = check_range(l, "rope.dimension_count", hp->rope_dim, 2, hp->head_dim))) return rc;
    if (hp->rope_dim % 2 != 0)
        return eng_error_set(l->err, -EINVAL, "rope dimension count %u is odd", hp->rope_dim);

    if ((rc = get_u32(l, "context_length", &hp->n_ctx_train, NULL)) ||
        (rc = check_range(l, "context_length", hp->n_ctx_train, 1, MAX_CTX)))
        return rc;

    if ((rc = get_f32(l, "attention.layer_norm_rms_epsilon", &hp->rms_eps, &has))) return rc;
    if (!has) hp->rms_eps = 1e-5f;
    if ((rc = check_float(l, "attention.layer_norm_rms_epsilon", hp->rms_eps, 0.0f, 1.0f)))
        return rc;
    if ((rc = get_f32(l, "rope.freq_base", &hp->rope_base, &has))) return rc;
    if (!has) hp->rope_base = 10000.0f;
    if ((rc = check_float(l, "rope.freq_base", hp->rope_base, 1.0f, 1e12f))) return rc;

    /* RoPE scaling */
    char key[128];
    gguf_str st;
    arch_key(l, "rope.scaling.type", key, sizeof key);
    rc = gguf_get_str(l->f, key, &st);
    bool has_type = rc == 0;
    if (rc == -EINVAL) return eng_error_set(l->err, -EINVAL, "key %s is not a string", key);
    hp->rope_scaling_type = ENG_ROPE_SCALING_NONE;
    if (has_type) {
        if (gguf_str_eq(st, "none")) hp->rope_scaling_type = ENG_ROPE_SCALING_NONE;
        else if (gguf_str_eq(st, "linear")) hp->rope_scaling_type = ENG_ROPE_SCALING_LINEAR;
        else if (gguf_str_eq(st, "yarn")) hp->rope_scaling_type = ENG_ROPE_SCALING_YARN;
        else if (gguf_str_eq(st, "llama3")) hp->rope_scaling_type = ENG_ROPE_SCALING_LLAMA3;
        else
            return eng_error_set(l->err, -EINVAL, "unsupported rope scaling type '%.*s'",
                                 (int)(st.len > 32 ? 32 : st.len), st.ptr);
    }
    bool llama3 = hp->rope_scaling_type == ENG_ROPE_SCALING_LLAMA3;
    bool has_factor, has_linear;
    float linear = 1.0f;
    if ((rc = get_f32(l, "rope.scaling.factor", &hp->rope_scale_factor, &has_factor))) return rc;
    if ((rc = get_f32(l, "rope.scale_linear", &linear, &has_linear))) return rc;
    if (!has_factor) {
        hp->rope_scale_factor = has_linear ? linear : (llama3 ? 8.0f : 1.0f);
        has_factor = has_linear;
    }
    if ((rc = check_float(l, "rope.scaling.factor", hp->rope_scale_factor, 0.0f, 1e6f)))
        return rc;
    /* A factor without a type means linear scaling (a factor of 1 is no scaling). */
    if (!has_type && has_factor && hp->rope_scale_factor != 1.0f)
        hp->rope_scaling_type = ENG_ROPE_SCALING_LINEAR;

    if ((rc = get_u32(l, "rope.scaling.original_context_length", &hp->rope_orig_ctx, &has)))
        return rc;
    if (!has) hp->rope_orig_ctx = llama3 ? 8192u : hp->n_ctx_train;
    if ((rc = check_range(l, "rope.scaling.original_context_length", hp->rope_orig_ctx, 1,
                          MAX_CTX)))
        return rc;
    if ((rc = get_f32(l, "rope.scaling.low_freq_factor", &hp->rope_low_freq_factor, &has)))
        return rc;
    if (!has) hp->rope_low_freq_factor = 1.0f;
    if ((rc = get_f32(l, "rope.scaling.high_freq_factor", &hp->rope_high_freq_factor, &has)))
        return rc;
    if (!has) hp->rope_high_freq_factor = 4.0f;
    if ((rc = check_float(l, "rope.scaling.low_freq_factor", hp->rope_low_freq_factor, 0.0f,
                          1e6f)) ||
        (rc = check_float(l, "rope.scaling.high_freq_factor", hp->rope_high_freq_factor,
                          hp->rope_low_freq_factor, 1e6f)))
        return rc;
    return 0;
}

/* Llama 3.1 per-frequency RoPE divisors (the published formula): for pair i with frequency
 * base^(-2i/dim) and wavelength 2*pi/freq, the divisor is 1 for short wavelengths
 * (< orig_ctx / high_freq_factor), the scale factor for long ones (> orig_ctx /
 * low_freq_factor), and a smooth blend between. */
static void llama3_factors(const eng_hparams *hp, float *out)
{
    const double lo = hp->rope_low_freq_factor, hi = hp->rope_high_freq_factor;
    const double orig = hp->rope_orig_ctx, factor = hp->rope_scale_factor;
    const double low_wavelen = orig / lo, high_wavelen = orig / hi;
    for (uint32_t i = 0; i < hp->rope_dim / 2; i++) {
        double freq = pow((double)hp->rope_base, -2.0 * i / hp->rope_dim);
        double wavelen = 2.0 * M_PI / freq;
        double div;
        if (wavelen < high_wavelen) {
            div = 1.0;
        } else if (wavelen > low_wavelen) {
            div = factor;
        } else {
            double smooth = (orig / wavelen - lo) / (hi - lo);
            div = 1.0 / ((1.0 - smooth) / factor + smooth);
        }
        out[i] = (float)div;
    }
}

/* ------------------------------------------------------------------ model */

int eng_model_from_gguf(gguf_file *f, eng_model **ret, eng_error *err)
{
    int rc;
    gguf_str arch;
    eng_error_clear(err);

    rc = gguf_get_str(f, "general.architecture", &arch);
    if (rc == -ENOENT) return eng_error_set(err, -EINVAL, "missing key general.architecture");
    if (rc != 0) return eng_error_set(err, -EINVAL, "general.architecture is not a string");
    if (!gguf_str_eq(arch, "llama"))
        return eng_error_set(err, -ENOTSUP,
                             "unsupported architecture '%.*s' (only llama is supported)",
                             (int)(arch.len > 64 ? 64 : arch.len), arch.ptr);
    if (gguf_n_tensors(f) == 0)
        return eng_error_set(err, -EINVAL,
                             "the file has no tensors (a vocabulary-only GGUF?): missing tensor "
                             "token_embd.weight");

    loader l = {.f = f, .arch = "llama", .err = err};
    eng_hparams hp;
    if ((rc = load_hparams(&l, &hp))) return rc;

    eng_model *m = calloc(1, sizeof *m);
    if (m == NULL) return eng_error_set(err, -ENOMEM, "out of memory for the model");
    m->layers = calloc(hp.n_layer, sizeof *m->layers);
    if (m->layers == NULL) {
        rc = eng_error_set(err, -ENOMEM, "out of memory for %u layers", hp.n_layer);
        goto fail;
    }

    /* token embedding: n_vocab from its shape */
    const gguf_tensor *te = find(&l, "token_embd.weight", true, &rc);
    if (te == NULL) goto fail;
    if (te->n_dims != 2 || te->ne[0] != hp.n_embd || te->ne[1] < 1 || te->ne[1] > MAX_VOCAB) {
        char sh[96];
        shape_str(te, sh, sizeof sh);
        rc = eng_error_set(err, -EINVAL,
                           "tensor token_embd.weight has shape %s, expected [%u, n_vocab] "
                           "with 1 <= n_vocab <= %u", sh, hp.n_embd, MAX_VOCAB);
        goto fail;
    }
    hp.n_vocab = (uint32_t)te->ne[1];
    gguf_value toks;
    if (gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_TYPE_COUNT, &toks) == 0 &&
        toks.arr_n != hp.n_vocab) {
        rc = eng_error_set(err, -EINVAL,
                           "tokenizer.ggml.tokens has %llu entries but token_embd.weight has "
                           "%u rows", (unsigned long long)toks.arr_n, hp.n_vocab);
        goto fail;
    }
    if ((rc = load_mat(&l, "token_embd.weight", hp.n_embd, hp.n_vocab, true, &m->tok_embd)))
        goto fail;
    if ((rc = load_vec(&l, "output_norm.weight", hp.n_embd, "n_embd", true, &m->out_norm)))
        goto fail;
    if (gguf_find_tensor(f, "output.weight") != NULL) {
        if ((rc = load_mat(&l, "output.weight", hp.n_embd, hp.n_vocab, true, &m->output)))
            goto fail;
        m->tied_output = false;
    } else {
        m->output = m->tok_embd;
        m->tied_output = true;
    }

    /* RoPE frequency factors */
    const float *rf = NULL;
    if ((rc = load_vec(&l, "rope_freqs.weight", hp.rope_dim / 2, "rope_dim/2", false, &rf)))
        goto fail;
    if (rf != NULL) {
        for (uint32_t i = 0; i < hp.rope_dim / 2; i++) {
            float v;
            memcpy(&v, &rf[i], sizeof v);
            if (!isfinite(v) || !(v > 0.0f)) {
                rc = eng_error_set(err, -EINVAL,
                                   "tensor rope_freqs.weight has a bad value %g at %u "
                                   "(must be finite and > 0)", (double)v, i);
                goto fail;
            }
        }
        hp.rope_freqs = rf;
        if (hp.rope_scaling_type == ENG_ROPE_SCALING_NONE)
            hp.rope_scaling_type = ENG_ROPE_SCALING_LLAMA3;
    } else if (hp.rope_scaling_type == ENG_ROPE_SCALING_LLAMA3) {
        m->rope_freqs_owned = malloc(hp.rope_dim / 2 * sizeof(float));
        if (m->rope_freqs_owned == NULL) {
            rc = eng_error_set(err, -ENOMEM, "out of memory for rope factors");
            goto fail;
        }
        llama3_factors(&hp, m->rope_freqs_owned);
        hp.rope_freqs = m->rope_freqs_owned;
    }

    /* layers */
    const uint64_t q_dim = (uint64_t)hp.n_head * hp.head_dim;
    const uint64_t kv_dim = (uint64_t)hp.n_head_kv * hp.head_dim;
    for (uint32_t i = 0; i < hp.n_layer; i++) {
        eng_layer *L = &m->layers[i];
        char nm[64];
#define NAME(s) (snprintf(nm, sizeof nm, "blk.%u." s ".weight", i), nm)
        if ((rc = load_vec(&l, NAME("attn_norm"), hp.n_embd, "n_embd", true, &L->attn_norm)) ||
            (rc = load_mat(&l, NAME("attn_q"), hp.n_embd, q_dim, true, &L->wq)) ||
            (rc = load_mat(&l, NAME("attn_k"), hp.n_embd, kv_dim, true, &L->wk)) ||
            (rc = load_mat(&l, NAME("attn_v"), hp.n_embd, kv_dim, true, &L->wv)) ||
            (rc = load_mat(&l, NAME("attn_output"), q_dim, hp.n_embd, true, &L->wo)) ||
            (rc = load_vec(&l, NAME("ffn_norm"), hp.n_embd, "n_embd", true, &L->ffn_norm)) ||
            (rc = load_mat(&l, NAME("ffn_gate"), hp.n_embd, hp.n_ff, true, &L->w_gate)) ||
            (rc = load_mat(&l, NAME("ffn_up"), hp.n_embd, hp.n_ff, true, &L->w_up)) ||
            (rc = load_mat(&l, NAME("ffn_down"), hp.n_ff, hp.n_embd, true, &L->w_down)))
            goto fail;
#undef NAME
    }

    m->hp = hp;
    m->gguf = f;
    snprintf(m->arch, sizeof m->arch, "llama");
    gguf_str name;
    if (gguf_get_str(f, "general.name", &name) == 0) {
        size_t n = name.len < sizeof m->name - 1 ? (size_t)name.len : sizeof m->name - 1;
        memcpy(m->name, name.ptr, n);
        m->name[n] = '\0';
    }
    if (gguf_get_u32(f, "general.file_type", &m->file_type) != 0)
        m->file_type = ENG_FILE_TYPE_UNKNOWN;
    for (size_t i = 0; i < gguf_n_tensors(f); i++)
        m->n_params += gguf_tensor_at(f, i)->n_elements;
    *ret = m;
    return 0;

fail:
    free(m->rope_freqs_owned);
    free(m->layers);
    free(m);
    return rc;
}

int eng_model_load(const char *path, eng_model **ret, eng_error *err)
{
    gguf_file *f;
    int rc = gguf_open(path, &f, err);
    if (rc != 0) return rc;
    rc = eng_model_from_gguf(f, ret, err);
    if (rc != 0) {
        gguf_close(f);
        if (err != NULL) {
            char msg[sizeof err->msg];
            snprintf(msg, sizeof msg, "%s", err->msg);
            eng_error_set(err, rc, "%s: %s", path, msg);
        }
    }
    return rc;
}

void eng_model_free(eng_model *m)
{
    if (m == NULL) return;
    gguf_close(m->gguf);
    free(m->rope_freqs_owned);
    free(m->layers);
    free(m);
}
