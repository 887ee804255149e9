/* Shared helpers for the forward-pass tests: a model + kv cache + engine context, and
 * single-sequence prefill/decode drivers that follow the scheduler contract (append, then
 * eng_step). */
#ifndef LLAMAD_FWD_COMMON_H
#define LLAMAD_FWD_COMMON_H

#include <stdbool.h>
#include <stdint.h>

#include "engine.h"
#include "kvcache.h"
#include "model.h"

typedef struct fwd_env {
    eng_model *model;
    kv_cache *kv;
    eng_ctx *ctx;
    int n_vocab;
} fwd_env;

/* Loads a shared model (path relative to the shared folder), creates a kv cache of n_blocks
 * blocks of block_size tokens (f16 or f32) and an engine context. */
void fwd_env_open(fwd_env *e, const char *model_rel, bool kv_f16, int block_size, int n_blocks,
                  int max_tokens, int max_seqs, int n_threads);
void fwd_env_close(fwd_env *e);

uint32_t fwd_seq_new(fwd_env *e);
void fwd_seq_free(fwd_env *e, uint32_t seq);
int fwd_seq_len(fwd_env *e, uint32_t seq);

/* Appends and runs n tokens of seq in chunks of at most `chunk` tokens (one entry per step);
 * logits (may be NULL) receive the logits of the last token. */
void fwd_run(fwd_env *e, uint32_t seq, const int32_t *toks, int n, int chunk, float *logits);

/* Appends the batch's tokens for every entry (the scheduler's part), then eng_step. */
void fwd_step(fwd_env *e, const eng_batch_entry *b, int n, float *logits);

int fwd_argmax(const float *x, int n);

/* Natural-log softmax of x[id]. */
double fwd_logprob(const float *x, int n, int id);

/* Decodes ids with the GGUF vocab (tokenizer.ggml.tokens): <0xNN> pieces are bytes, U+2581
 * is a space; with strip_first, the first piece loses one leading space. malloc'd. */
char *fwd_detok(const eng_model *m, const int32_t *ids, int n, bool strip_first);

#endif
