/* The batched Llama forward pass over the paged KV cache.
 *
 * One eng_step runs every token of a batch through the model together. A batch is an array
 * of entries, one per sequence: a decoding sequence brings one token, a prefill chunk brings
 * many. Every weight matrix is applied once per step to all of the batch's tokens; attention
 * runs per sequence over that sequence's block table.
 *
 * CONTRACT WITH THE SCHEDULER (caller)
 *   - One thread (the engine thread) owns the eng_ctx, the kv cache and the model; eng_step
 *     is not reentrant. Compute workers are internal.
 *   - Before eng_step, for each entry the scheduler has called
 *         kv_seq_append(kv, seq, tokens, n_tokens)
 *     (this is where capacity is decided: the scheduler preempts or waits when the cache is
 *     full; eng_step never allocates KV blocks). Therefore, on entry to eng_step:
 *         kv_seq_len(kv, seq) == pos0 + n_tokens
 *     and eng_step checks this for every entry (-EINVAL otherwise).
 *   - eng_step computes and writes K/V for positions [pos0, pos0 + n_tokens) of each entry
 *     into the sequence's blocks, runs attention over positions [0, pos], and then calls
 *     kv_seq_commit(kv, seq) for each entry so that blocks that became full are published
 *     to the prefix cache. Positions [0, pos0) must already hold K/V: computed by earlier
 *     steps or attached from the prefix cache (kv_seq_attach_prefix).
 *   - A sequence appears at most once per batch. n_entries <= max_batch_seqs and the sum of
 *     n_tokens <= max_batch_tokens. Token ids must be in [0, n_vocab) and positions below
 *     the context length (cfg.n_ctx, default the model's n_ctx_train). Every violation is
 *     rejected with -EINVAL and a message before anything is written (no K/V, no commit).
 *   - ret_logits receives one row of n_vocab floats per entry with want_logits, in entry
 *     order (row i = the i-th entry that wants logits): the logits of that entry's LAST
 *     token. Entries without want_logits get no row (mid-prompt prefill chunks).
 *   - On an error after validation (none are expected: kernels cannot fail) the K/V of the
 *     batch's positions is unspecified; the scheduler should drop those sequences.
 *
 * BATCH INVARIANCE (ARCHITECTURE.md): a sequence's logits are bit-identical whatever else is
 * in the batch and however its prompt was chunked or taken from the prefix cache:
 *   - Every weight type, F32 included, goes through quant.h's eng_matmul_rows, rows split
 *     across the pool's threads. Its per-(row, token) arithmetic is fixed (exact f32
 *     dequantization, 16 fixed lanes over K, fixed lane tree), so a row's result does not
 *     depend on how many tokens share the call or on the thread split.
 *   - Why F32 does not use cblas_sgemm: measured on this machine with Debian's OpenBLAS
 *     0.3.21 (AMD EPYC, 1 or 2 threads), cblas_sgemm(RowMajor, A=x[M x K], B=W^T) does NOT
 *     give bit-identical rows for every M >= 2 at the small shapes of real models here: for
 *     K=64, N=172 (stories260K's FFN) rows of an M >= 7 call differ in the last bits from the
 *     same row in an M = 2 call; K=128, N=384: M >= 4; K=N=512: M >= 3 (OpenBLAS picks a
 *     different kernel path by size). At K=N=4096 all M agreed. Padding one row to two is
 *     therefore not enough, and a request's logits would change with the batch size.
 *   - Quantized weights are not dequantized to f32 for sgemm at large batches either: sgemm's
 *     summation order over K differs from eng_matmul_rows' 16-lane order, so numbers would
 *     change when a batch crosses the size threshold.
 *   - OpenBLAS: eng_ctx_create pins its thread count (openblas_set_num_threads(n_threads),
 *     process-wide) so that any BLAS use elsewhere does not oversubscribe the cores; the
 *     forward pass itself makes no BLAS calls, and never calls BLAS from our workers.
 *   - Threads split rows (weights) or (sequence, tokens, head) items (attention), never K.
 *   - Attention always reads K/V back from the cache (also for the batch's own tokens) and
 *     sums over positions 0..pos in ascending order, in f32: the same arithmetic whatever the
 *     chunking. Each query's operations are fixed (forward.c, "attention": its dot products
 *     in 4 chains by dimension, the softmax's e^x and its sum in 8 lanes and a fixed tree,
 *     the V sums in position order) whichever queries are computed together (a prompt's
 *     consecutive tokens, the query heads of one kv head) and whether the vector kernels
 *     or the element-at-a-time form compute them.
 *   - RMSNorm, RoPE, SwiGLU and the residual adds are per-token (elementwise or one row's
 *     sum in element order); forward.c runs RoPE, the K/V stores, SwiGLU and the residual
 *     adds inside the matmul pool runs on the rows each chunk computed, with the same
 *     arithmetic whichever thread or chunk does it.
 *
 * RoPE: adjacent pairs (x[2i], x[2i+1]) for the GGUF "llama" architecture (the converter
 * permutes Q/K for it; the only architecture eng_ctx_create accepts). The neox ordering
 * (x[i], x[i + rope_dim/2]) is implemented for architectures that need it but never selected
 * for "llama". Only the first rope_dim dimensions of a head rotate. Frequencies:
 * theta_i = pos * base^(-2i/rope_dim) / rope_freqs[i] when the model has per-pair factors
 * (Llama 3.1: the rope_freqs.weight tensor, or the llama3 scaling rule that model.h computes
 * from the hparams), / rope_scale_factor for linear scaling. YaRN is rejected (-ENOTSUP).
 * Attention scale 1/sqrt(head_dim); RMSNorm x * w / sqrt(mean(x^2) + eps); SwiGLU
 * silu(gate) * up, with forward.c's own e^x (vectorized; the scalar tail gives the same bits),
 * which the attention softmax uses too (with AVX2 and FMA; else expf).
 */
#ifndef LLAMAD_ENGINE_H
#define LLAMAD_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "eng_error.h"
#include "model.h"
#include "kvcache.h"

typedef struct eng_ctx_config {
    int n_threads;          /* compute threads incl. the caller; 0 = physical cores */
    int max_batch_tokens;   /* tokens per step, >= 1 */
    int max_batch_seqs;     /* entries per step, >= 1 */
    int n_ctx;              /* max positions per sequence; 0 = model's n_ctx_train */
} eng_ctx_config;

typedef struct eng_batch_entry {
    uint32_t seq;           /* kv sequence id */
    const int32_t *tokens;  /* n_tokens ids */
    int32_t n_tokens;       /* >= 1 */
    int32_t pos0;           /* position of tokens[0] == kv_seq_len before the append */
    bool want_logits;       /* logits of the entry's last token */
} eng_batch_entry;

typedef struct eng_ctx eng_ctx;

/* Creates a context: thread pool, scratch buffers sized for the largest batch (no malloc
 * in eng_step), RoPE tables. The kv cache's layer/head/head_dim geometry must match the
 * model. Pins OpenBLAS to n_threads threads (process-wide). model and kv must outlive ctx.
 * n_threads 0 means the number of physical cores. */
int eng_ctx_create(const eng_model *model, kv_cache *kv, const eng_ctx_config *cfg,
                   eng_ctx **ret, eng_error *err);
void eng_ctx_free(eng_ctx *ctx);

int eng_ctx_n_vocab(const eng_ctx *ctx);
int eng_ctx_n_ctx(const eng_ctx *ctx);
int eng_ctx_n_threads(const eng_ctx *ctx);
int eng_ctx_max_batch_tokens(const eng_ctx *ctx);
int eng_ctx_max_batch_seqs(const eng_ctx *ctx);

/* The matrix runs give each thread one run of rows, sized by a share learned from how long
 * each thread took in the runs before (a thread on a busier core gets fewer rows); the split
 * never changes a bit of the result. This sets the shares (n_threads positive values,
 * scaled to sum to 1; they go on adapting from there), for tests that check that claim
 * with lopsided splits. -EINVAL if a value is not positive and finite. */
int eng_ctx_set_row_shares(eng_ctx *ctx, const float *shares);

/* Attention has vector kernels (512- or 256-bit, chosen at build time, when the block size
 * and head dim allow) and an element-at-a-time form that computes the same operations in the
 * same order. on = true makes this context use the element-at-a-time form, for tests that
 * check that both give the same bits; false (the default) goes back to the kernels. */
void eng_ctx_set_attn_elementwise(eng_ctx *ctx, bool on);

/* Runs one step; see the contract above. ret_logits: (number of want_logits entries) *
 * n_vocab floats, may be NULL when no entry wants logits. */
int eng_step(eng_ctx *ctx, const eng_batch_entry *batch, int n_entries, float *ret_logits,
             eng_error *err);

#endif
