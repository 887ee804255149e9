/* llamad kvcache: a block-paged KV cache with automatic prefix caching.
 *
 * One arena, allocated by kv_create from a byte budget, is cut into blocks of block_size
 * tokens. A block holds K and V of every layer and KV head for its tokens. Sequences own
 * blocks through per-sequence block tables; blocks are ref-counted, so forked sequences share
 * them, and the first append into a shared, partly filled last block copies it
 * (copy-on-write).
 *
 * Prefix cache: once its K/V is written (kv_seq_commit), every full block is published under
 * a hash of (previous block's hash, its token ids, the salt). A new sequence reuses the
 * longest chain of published blocks that matches its prompt (kv_seq_attach_prefix). A match
 * is checked against the stored token ids and against the exact parent block, so a block is
 * never shared with a sequence whose prefix differs. Published blocks that no sequence uses
 * any more are "cached": they stay reusable until they are evicted, least recently released
 * first (a finished sequence releases its tail first, so its tail is evicted first).
 *
 * Block states (every block is in exactly one):
 *   used    ref count > 0 (in at least one block table);
 *   cached  ref count 0, holds a published prefix (reusable until evicted);
 *   free    ref count 0, holds nothing.
 * Allocation takes a free block, else evicts the least recently used cached block.
 *
 * Memory layout of one block (elements of kv_config.dtype):
 *   [layer][K,V][kv head][block_size * head_dim elements]
 * so K (or V) of one (block, layer, head) is one contiguous region, and attention for one
 * (sequence, layer, head) streams one contiguous run per block. The order of the elements
 * inside a region is the engine's (it keeps V token-major and K transposed); the cache
 * copies regions whole and never looks inside. Blocks are 64-byte aligned when the block
 * size in bytes is a multiple of 64.
 *
 * Costs: append, commit and lookup cost O(1) per block (plus O(block_size) to hash and compare
 * the token ids of a full block); a copy-on-write copies one block. Nothing allocates memory
 * after kv_create. Not thread-safe: one owner (the engine thread) calls everything.
 * The library never logs, prints or exits.
 *
 * Errors are negative errno values; ret_* outputs are untouched on failure.
 */
#ifndef LLAMAD_KVCACHE_H
#define LLAMAD_KVCACHE_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Element type of the stored K/V. KV_F16 is IEEE binary16 stored as uint16_t. */
typedef enum { KV_F16 = 0, KV_F32 = 1 } kv_dtype;

#define KV_DEFAULT_BLOCK_SIZE 16u
#define KV_MAX_BLOCK_SIZE 4096u        /* largest accepted block_size */
#define KV_MAX_BLOCKS (1u << 30)       /* more blocks than this: kv_create fails (-EINVAL) */
#define KV_MAX_SEQS (1u << 20)         /* largest accepted max_seqs */
#define KV_NO_BLOCK UINT32_MAX         /* never a valid block id */

typedef struct kv_config {
    uint32_t n_layer, n_head_kv, head_dim;   /* model shape; each >= 1 */
    uint32_t block_size;                     /* tokens per block, a power of two; 0 = 16 */
    kv_dtype dtype;                          /* KV_F16 (default) or KV_F32 */
    uint64_t budget_bytes;                   /* arena size; n_blocks = budget / block_bytes (>= 1) */
    uint64_t salt;                           /* model id mixed into prefix hashes */
    uint32_t max_seqs;                       /* sequence slots, >= 1 */
    uint32_t max_seq_len;                    /* context length: hard bound on a sequence's tokens, >= 1 */
    bool prefault;                           /* fault in every page of the arena in kv_create:
                                                its memory is committed at once (-ENOMEM then,
                                                not later), and no store into a fresh block
                                                waits for the kernel to map and clear a page */
} kv_config;

typedef struct kv_cache kv_cache;

/* Validates cfg and allocates the arena and every table. -EINVAL: a shape, block size, slot
 * count or context length out of range, a budget smaller than one block, more than
 * KV_MAX_BLOCKS blocks, or sizes that overflow. -ENOMEM: allocation failed (with prefault,
 * also when the kernel cannot back the whole arena).
 * The arena starts zero-filled. Use kv_get_stats for n_blocks, bytes per token and the number
 * of sequences that fit at full context. */
int kv_create(const kv_config *cfg, kv_cache **ret_kv);
/* Frees everything. NULL is a no-op. */
void kv_destroy(kv_cache *kv);

/* The configuration in effect (block_size resolved to its default). */
const kv_config *kv_get_config(const kv_cache *kv);

/* A new empty sequence. Sequence ids are < max_seqs. -ENOSPC when every slot is in use. */
int kv_seq_create(kv_cache *kv, uint32_t *ret_seq);

/* Admission: attaches the longest chain of cached full blocks matching tokens[0..n) to an
 * EMPTY sequence; *ret_cached = tokens covered (a multiple of block_size, <= n, and
 * <= max_seq_len). The caller passes n-1 for a prompt whose last token must be computed anyway,
 * then appends tokens[*ret_cached..]. Counts n lookup tokens and *ret_cached hit tokens for
 * the statistics. -EINVAL: bad or non-empty sequence, or tokens NULL with n > 0. */
int kv_seq_attach_prefix(kv_cache *kv, uint32_t seq, const int32_t *tokens, uint32_t n,
                         uint32_t *ret_cached);

/* Reserves slots for n more tokens at the end of seq and records their ids (for hashing).
 * Allocates blocks as needed (free blocks first, then evicting least recently used cached
 * ones) and first copies a shared, partly filled last block (copy-on-write). The caller then
 * writes K/V of the new tokens (kv_block_k / kv_block_v) and calls kv_seq_commit.
 * All-or-nothing: -ENOSPC (not enough free + cached blocks) changes nothing. -E2BIG: the
 * sequence would pass max_seq_len. -EINVAL: bad sequence, or tokens NULL with n > 0.
 * n = 0 is a no-op. */
int kv_seq_append(kv_cache *kv, uint32_t seq, const int32_t *tokens, uint32_t n);

/* Call after the forward pass has written K/V for every appended token of seq: publishes the
 * newly full blocks into the prefix cache (hash chain). Blocks are never published before
 * this. Partly filled blocks are not published. -EINVAL: bad sequence. */
int kv_seq_commit(kv_cache *kv, uint32_t seq);

/* A new sequence sharing every block of seq (ref counts + 1); either one's next append into
 * the shared last block copies that block first. -ENOSPC: no slot. -EBUSY: seq has appended
 * tokens that are not committed yet (their K/V may not be written, so a copy-on-write could
 * copy garbage): commit first. -EINVAL: bad sequence. */
int kv_seq_fork(kv_cache *kv, uint32_t seq, uint32_t *ret_child);

/* Releases seq's blocks (last block first) and its slot. Full published blocks stay cached.
 * A bad id is a no-op. */
void kv_seq_free(kv_cache *kv, uint32_t seq);

/* True if seq is a live sequence id. */
bool kv_seq_valid(const kv_cache *kv, uint32_t seq);
/* Tokens appended to seq (0 for a bad id). */
uint32_t kv_seq_len(const kv_cache *kv, uint32_t seq);
/* Tokens of seq whose K/V has been committed (<= kv_seq_len). */
uint32_t kv_seq_committed(const kv_cache *kv, uint32_t seq);
/* Block table of seq: *ret_n_blocks = ceil(len / block_size) ids; token t of the sequence is
 * slot t % block_size of block [t / block_size]. Valid until the next call that changes seq
 * (append may replace the last entry with a copy). NULL and 0 for a bad id. */
const uint32_t *kv_seq_blocks(const kv_cache *kv, uint32_t seq, uint32_t *ret_n_blocks);
/* Token ids recorded in a block: block_size entries, of which the first kv_block_fill are set
 * (token t of a sequence is entry t % block_size of its block [t / block_size]). NULL for a
 * bad id. */
const int32_t *kv_block_tokens(const kv_cache *kv, uint32_t block);
/* Tokens recorded in a block (0..block_size). */
uint32_t kv_block_fill(const kv_cache *kv, uint32_t block);

/* K (or V) of one block for one layer and KV head: block_size * head_dim elements,
 * contiguous, in the engine's order; element type per dtype (uint16_t IEEE half,
 * or float). NULL if block, layer or head is out of range. */
void *kv_block_k(kv_cache *kv, uint32_t block, uint32_t layer, uint32_t head);
void *kv_block_v(kv_cache *kv, uint32_t block, uint32_t layer, uint32_t head);
/* Ref count of a block (0 for free or cached blocks, and for a bad id). */
uint32_t kv_block_refs(const kv_cache *kv, uint32_t block);

/* True if kv_seq_append(seq, n tokens) would succeed now (within max_seq_len and enough
 * free + cached blocks, counting a copy-on-write of a shared last block). False for a bad id. */
bool kv_can_grow(const kv_cache *kv, uint32_t seq, uint32_t n);

/* Blocks that admitting a prompt of n tokens takes from the free + cached pool, with no side
 * effects: ceil(n / block_size) minus the cache hits on blocks already in use (a hit on a
 * cached block takes it out of the pool, so it counts). Hits are looked up over
 * tokens[0..n-1), as kv_seq_attach_prefix(tokens, n-1) would find them; the answer is also an
 * upper bound when attaching all n. So: admission of this prompt succeeds iff
 * kv_blocks_needed(...) <= kv_blocks_available(). tokens may be NULL only when n == 0. */
uint32_t kv_blocks_needed(const kv_cache *kv, const int32_t *tokens, uint32_t n);
/* Free + cached blocks: what allocation can draw from. */
uint32_t kv_blocks_available(const kv_cache *kv);
/* Tokens of tokens[0..n) covered by the longest cached chain (what kv_seq_attach_prefix would
 * attach), with no side effects and no statistics. */
uint32_t kv_lookup_prefix(const kv_cache *kv, const int32_t *tokens, uint32_t n);

typedef struct kv_stats {
    uint32_t n_blocks, used, cached, free;   /* used + cached + free = n_blocks */
    uint32_t block_size;
    uint64_t block_bytes, bytes_per_token;   /* K+V of all layers and heads */
    uint32_t max_seqs_full_ctx;              /* n_blocks / blocks of one max_seq_len sequence
                                                (memory only; the slot limit is max_seqs) */
    uint32_t n_seqs;                         /* live sequences */
    uint64_t tokens;                         /* sum of live sequences' lengths */
    uint64_t waste_slots;                    /* token slots in used blocks not holding a token
                                                (shared blocks counted once) */
    uint64_t waste_bytes;                    /* waste_slots * bytes_per_token */
    double waste_pct;                        /* 100 * waste_slots / (used * block_size); 0 if none used */
    uint64_t lookup_tokens, hit_tokens;      /* kv_seq_attach_prefix totals (hit rate) */
    uint64_t evictions;                      /* cached blocks evicted for reuse */
    uint64_t cow_copies;                     /* copy-on-write block copies */
} kv_stats;

/* O(1). */
void kv_get_stats(const kv_cache *kv, kv_stats *ret);

/* Checks every internal invariant (ref counts against block tables, block states and lists,
 * hash table, waste accounting). O(everything): for tests and debugging. 0 if consistent,
 * -EUCLEAN otherwise. */
int kv_check(const kv_cache *kv);

#ifdef __cplusplus
}
#endif

#endif
