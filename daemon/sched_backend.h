/* What the scheduler needs from the model side: tokenizer, KV cache, forward pass and
 * sampler, behind one table of functions. All of them run on the engine thread only.
 * The real one (backend_engine.c) wires engine/ and kvcache/; tests use a small
 * deterministic one. Sequences are named by slot, 0 .. max_seqs-1. */
#ifndef LLAMAD_SCHED_BACKEND_H
#define LLAMAD_SCHED_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "scheduler.h"

typedef struct sched_model_info {
    const char *name;
    const char *path;
    const char *arch;
    const char *quant; /* file type, e.g. "F32", "Q8_0" */
    int n_ctx;    /* longest sequence (prompt + generated) */
    int n_vocab;
    int n_layer, n_embd, n_head, n_head_kv;
    int64_t n_params;
    int64_t file_bytes;
    int bos, eos; /* -1 when none */
} sched_model_info;

typedef struct sched_batch_entry {
    int slot;
    int model;
    const int32_t *tokens;
    int n;
    int pos0;
    bool want_logits; /* the last token's logits, for sampling */
} sched_batch_entry;

typedef struct sched_kv_stats {
    int64_t blocks_total, blocks_used, blocks_cached;
    int block_size;
    int64_t lookup_tokens, hit_tokens;
} sched_kv_stats;

typedef struct sched_backend_ops {
    int (*n_models)(void *be);
    void (*model_info)(void *be, int model, sched_model_info *ret_info);

    /* text -> ids. -ENOSPC when more than cap ids would come out. */
    int (*tokenize)(void *be, int model, const char *text, size_t len, bool add_special, bool parse_special,
                    int32_t *out, int cap, int *ret_n);
    /* chat messages -> ids, through the model's chat template */
    int (*tokenize_chat)(void *be, int model, const sched_chat_msg *msgs, int n_msgs, bool add_generation_prompt,
                         int32_t *out, int cap, int *ret_n);
    /* the vocabulary text of a token (control tokens give their text form, e.g. "<s>") */
    int (*token_text)(void *be, int model, int32_t tok, char *buf, size_t cap, size_t *ret_len);
    /* the bytes a token adds to the output after prev (-1 at the start of the output);
     * control tokens add nothing */
    int (*token_piece)(void *be, int model, int32_t prev, int32_t tok, char *buf, size_t cap, size_t *ret_len);
    bool (*is_eog)(void *be, int model, int32_t tok);

    /* KV cache. attach: look up the longest cached prefix of tokens[0..n) and take those
     * blocks for slot; *ret_cached is how many tokens need no compute (< n). */
    int (*kv_attach)(void *be, int model, int slot, const int32_t *tokens, int n, int *ret_cached);
    /* make room for positions [0, n_total) of slot, which hold tokens[0..n_total):
     * -ENOSPC when the blocks are not there (nothing changes then) */
    int (*kv_reserve)(void *be, int slot, const int32_t *tokens, int n_total);
    /* positions [0, n_done) of slot hold computed K/V for tokens[0..n_done): full blocks may
     * enter the prefix cache */
    void (*kv_commit)(void *be, int slot, const int32_t *tokens, int n_done);
    /* give back slot's blocks (cached ones stay cached) */
    void (*kv_release)(void *be, int slot);
    /* could a sequence of n tokens of model ever fit, with the whole cache to itself? */
    bool (*kv_fits_ever)(void *be, int model, int n);
    /* summed over the models' caches; lookup/hit tokens of the prefix cache */
    void (*kv_stats)(void *be, sched_kv_stats *ret_stats);

    /* per-sequence sampler state (PRNG, penalty window, which starts with the prompt); it
     * lives as long as the sequence, across preemptions */
    int (*sampler_create)(void *be, int model, const sched_sampling *params, const int32_t *prompt, int n_prompt,
                          void **ret_smp);
    void (*sampler_free)(void *be, void *smp);
    /* one forward pass over the batch; afterwards sample(i) picks the next token of entry i
     * (which must have want_logits) and adds it to the penalty window; ret_lp (NULL unless
     * the request wants logprobs) receives the log-probabilities (ids, values; not the text) */
    int (*step)(void *be, const sched_batch_entry *entries, int n_entries, char *err, size_t errlen);
    int (*sample)(void *be, int entry_index, int model, void *smp, int32_t *ret_tok, sched_token_lp *ret_lp);
} sched_backend_ops;

typedef struct sched_backend {
    const sched_backend_ops *ops;
    void *impl;
} sched_backend;

#endif
