/* Model description: the hyperparameters and weight matrices of a Llama-architecture GGUF,
 * validated and pointing into the file's read-only map (weights are never copied).
 *
 * eng_model_load() opens a GGUF and builds the description from general.architecture
 * "llama" (any other architecture is an error naming it). Every hyperparameter is checked
 * against sane bounds and every tensor the forward pass needs is looked up and its type and
 * shape checked; a missing tensor, a wrong shape or a type the engine has no kernel for is an
 * error that names the tensor.
 */
#ifndef LLAMAD_MODEL_H
#define LLAMAD_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eng_error.h"
#include "gguf.h"

/* A weight matrix in place in the map: rows = ne[1] (output features), cols = ne[0] (input
 * features). Row r (cols values of type `type`, in blocks) is at data + r * row_bytes.
 * For a 1-D tensor rows = 1. name is the tensor's NUL-terminated name (owned by the gguf). */
typedef struct eng_mat {
    uint32_t type; /* ggml type id (enum eng_type in quant.h) */
    uint64_t rows, cols;
    size_t row_bytes;
    const void *data;
    const char *name;
} eng_mat;

/* One transformer block. Norm weights are F32 vectors of n_embd values, 4-byte aligned
 * (checked at load). */
typedef struct eng_layer {
    const float *attn_norm;          /* [n_embd] */
    eng_mat wq;                      /* n_embd -> n_head * head_dim */
    eng_mat wk, wv;                  /* n_embd -> n_head_kv * head_dim */
    eng_mat wo;                      /* n_head * head_dim -> n_embd */
    const float *ffn_norm;           /* [n_embd] */
    eng_mat w_gate, w_up;            /* n_embd -> n_ff */
    eng_mat w_down;                  /* n_ff -> n_embd */
} eng_layer;

/* RoPE scaling kinds (eng_hparams.rope_scaling_type). */
enum eng_rope_scaling {
    ENG_ROPE_SCALING_NONE = 0,
    ENG_ROPE_SCALING_LINEAR = 1, /* positions divided by rope_scale_factor */
    ENG_ROPE_SCALING_YARN = 2,   /* recorded only; the forward pass may reject it */
    ENG_ROPE_SCALING_LLAMA3 = 3, /* per-frequency factors, in rope_freqs */
};

/* general.file_type absent */
#define ENG_FILE_TYPE_UNKNOWN UINT32_MAX

/* Hyperparameters (all validated; see eng_model_from_gguf for the bounds).
 *   head_dim:  llama.attention.key_length if present, else n_embd / n_head.
 *   rope_dim:  llama.rope.dimension_count if present, else head_dim (even, <= head_dim; for
 *              every Llama model it equals head_dim).
 *   n_ctx_train: llama.context_length.
 *   rms_eps:   llama.attention.layer_norm_rms_epsilon, default 1e-5.
 *   rope_base: llama.rope.freq_base, default 10000.
 *   rope scaling: llama.rope.scaling.type ("none", "linear", "yarn", "llama3"),
 *              .factor (default 1, or 8 for llama3), .original_context_length (default
 *              n_ctx_train, or 8192 for llama3), .low_freq_factor (default 1),
 *              .high_freq_factor (default 4); the old key llama.rope.scale_linear means
 *              linear scaling by that factor.
 *   rope_freqs: NULL, or rope_dim/2 per-pair frequency divisors: the forward pass uses
 *              theta_i = pos * base^(-2i/rope_dim) / rope_freqs[i]. Taken from the
 *              rope_freqs.weight tensor when present (type is then LLAMA3 unless the file
 *              says otherwise), or computed from the llama3 keys when the type is llama3 and
 *              the tensor is absent (the array is then owned by the model).
 *   n_vocab:   rows of token_embd.weight (cross-checked with tokenizer.ggml.tokens). */
typedef struct eng_hparams {
    uint32_t n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, rope_dim, n_ctx_train, n_vocab;
    float rms_eps, rope_base;
    int rope_scaling_type; /* enum eng_rope_scaling */
    float rope_scale_factor, rope_low_freq_factor, rope_high_freq_factor;
    uint32_t rope_orig_ctx;
    const float *rope_freqs; /* NULL or rope_dim/2 factors (== head_dim/2 for Llama) */
} eng_hparams;

typedef struct eng_model {
    gguf_file *gguf;       /* owned */
    eng_hparams hp;
    eng_mat tok_embd;      /* [n_vocab rows x n_embd cols] */
    const float *out_norm; /* [n_embd] */
    eng_mat output;        /* n_embd -> n_vocab; == tok_embd when tied */
    bool tied_output;      /* no output.weight in the file */
    eng_layer *layers;     /* [hp.n_layer] */
    char name[128];        /* general.name (truncated), or "" */
    char arch[32];         /* "llama" */
    uint32_t file_type;    /* general.file_type, or ENG_FILE_TYPE_UNKNOWN */
    uint64_t n_params;     /* elements of all tensors in the file */
    float *rope_freqs_owned; /* internal: computed llama3 factors, or NULL */
} eng_model;

/* Opens path and builds the model description. On failure *ret is untouched and err names
 * the problem. */
int eng_model_load(const char *path, eng_model **ret, eng_error *err);

/* Builds the description from an open gguf. Takes ownership of f on success (closed by
 * eng_model_free); on failure f is still the caller's. */
int eng_model_from_gguf(gguf_file *f, eng_model **ret, eng_error *err);

/* Frees the description and closes its gguf; NULL is fine. */
void eng_model_free(eng_model *m);

#endif
