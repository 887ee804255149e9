/* Synthetic Llama-architecture GGUF models with the shapes of real ones and seeded random
 * weights, for benchmarks (bench/gen_model) and tests. The vocabulary (every tokenizer.* key)
 * is copied from a given vocab GGUF; n_vocab is its token count. */
#ifndef LLAMAD_GENMODEL_H
#define LLAMAD_GENMODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "eng_error.h"

typedef struct gm_spec {
    const char *name;  /* preset name and general.name */
    uint32_t n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, n_ctx;
    float rope_base, rms_eps;
    bool tied;         /* no output.weight: the output reuses token_embd */
    bool llama3_rope;  /* write rope_freqs.weight from the llama3 scaling parameters below */
    float rs_factor, rs_low, rs_high;
    uint32_t rs_orig_ctx;
} gm_spec;

/* Presets: "smollm2-135m", "tinyllama-1.1b", "llama3.2-1b", and "tiny" (2 layers, 256 wide,
 * for tests). NULL if unknown. */
const gm_spec *gm_preset(const char *name);
/* i-th preset, NULL past the end (for usage lists). */
const gm_spec *gm_preset_at(int i);

/* Writes the model to out_path: GGUF v3, alignment 32, general.* and llama.* keys, every
 * tokenizer.* key of vocab_path, F32 norms (1 + N(0, 0.02)), weight matrices N(0, 0.02)
 * (token_embd N(0, 1) scaled to 0.02 too) quantized to wtype (F32, F16, Q8_0, Q4_0, Q4_K),
 * all drawn from a generator seeded with seed. 0 or a negative errno code with err set. */
int gm_write(const gm_spec *spec, uint32_t wtype, const char *vocab_path, const char *out_path,
             uint64_t seed, eng_error *err);

#endif
