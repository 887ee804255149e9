/* llamad kvcache: block pool, block tables, ref counts, copy-on-write, prefix cache, LRU.
 * See kvcache.h for the model. Internals:
 *
 * - Every block has a state: used (ref > 0), cached (ref 0, published; on the LRU list) or
 *   free (ref 0, unpublished; on the free stack). Allocation pops the free stack, else evicts
 *   the LRU head (oldest released cached block).
 * - A published block carries hash = H(parent hash, its tokens, salt), the id of its exact
 *   parent prefix (ppid) and its own prefix id (pid). Prefix ids are never reused, and two
 *   blocks share a pid only when their whole token prefixes are equal (a block is given an
 *   existing pid only when hash, parent pid and tokens all match). A lookup accepts a block
 *   only if hash, parent pid and stored tokens all match, so hash collisions never share a
 *   block falsely, and neither does an evicted and reused parent.
 * - The hash table is chained through the blocks themselves (hnext), with a bucket array sized
 *   at creation: no allocation after kv_create.
 * - The arena is anonymous memory at a 2 MiB boundary, advised to use 2 MiB pages: attention
 *   reads every running sequence's K/V runs (2 KiB each at f16, 16-token blocks) from all over
 *   the arena at every step, and with 4 KiB pages nearly every run was a TLB miss
 *   (bench_engine SmolLM2-135M, 64 streams: +50% with 2 MiB pages; bench/RESULTS.md).
 *   With prefault, kv_create faults every page in: otherwise the first store into each
 *   fresh page of the arena (a sequence's new block, K first) waits for the kernel to map
 *   and clear it, about 1 ms of a 16-stream decode step's thread time while the arena warms.
 */
#include "kvcache.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define NONE KV_NO_BLOCK

typedef struct kv_seq {
    bool live;
    uint32_t len;        /* tokens appended */
    uint32_t committed;  /* tokens whose K/V is written (kv_seq_commit) */
    uint32_t n_blocks;   /* entries in table = ceil(len / bs) */
    uint32_t n_pub;      /* leading blocks whose prefix chain is known (= committed / bs) */
    uint64_t prev_hash;  /* hash of block n_pub-1 (root seed when n_pub = 0) */
    uint64_t prev_pid;   /* prefix id of block n_pub-1 (0 when n_pub = 0) */
    uint32_t *table;
} kv_seq;

struct kv_cache {
    kv_config cfg;
    uint32_t bs, bs_shift, esz;
    uint64_t block_bytes, bytes_per_token, slab_bytes; /* slab: one (layer, K|V, head) run */
    uint32_t n_blocks, max_bps;                         /* max blocks per sequence */
    uint64_t root_hash;

    unsigned char *arena;
    void *arena_map;            /* the mapping holding the arena, and its length */
    size_t arena_map_len;

    /* per block */
    uint32_t *ref, *fill, *lprev, *lnext, *hnext;
    uint8_t *pub;
    uint64_t *hash, *pid, *ppid;
    int32_t *tok;               /* n_blocks * bs */

    uint32_t *free_stack, n_free;
    uint32_t lru_head, lru_tail, n_cached; /* head = least recently released */
    uint32_t n_used;
    uint64_t used_fill;         /* sum of fill over used blocks */

    uint32_t *bucket, bucket_mask;
    uint64_t next_pid;

    kv_seq *seqs;
    uint32_t *seq_tables;
    uint32_t *seq_free, n_seq_free;
    uint32_t n_seqs;
    uint64_t tokens;

    uint64_t lookup_tokens, hit_tokens, evictions, cow_copies;
};

/* ---- hashing: an xxhash-style accumulate round and a murmur3-style finalizer ---- */

#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull

static inline uint64_t rotl64(uint64_t x, unsigned r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t fmix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static uint64_t block_hash(uint64_t prev, const int32_t *t, uint32_t bs)
{
    uint64_t a = prev ^ P3, b = rotl64(prev, 29) + P1;
    uint32_t i = 0;
    for (; i + 4 <= bs; i += 4) {
        uint64_t w0 = (uint64_t)(uint32_t)t[i] | (uint64_t)(uint32_t)t[i + 1] << 32;
        uint64_t w1 = (uint64_t)(uint32_t)t[i + 2] | (uint64_t)(uint32_t)t[i + 3] << 32;
        a = rotl64(a + w0 * P2, 31) * P1;
        b = rotl64(b + w1 * P2, 31) * P1;
    }
    for (; i < bs; i++)
        a = rotl64(a ^ ((uint64_t)(uint32_t)t[i] * P1), 23) * P2 + P3;
    uint64_t h = fmix64(a ^ rotl64(b, 17) ^ (uint64_t)bs * P3);
#ifdef KV_TEST_HASH_MASK
    h &= KV_TEST_HASH_MASK; /* test builds only: force collisions */
#endif
    return h;
}

/* ---- lists ---- */

static void lru_remove(kv_cache *kv, uint32_t b)
{
    uint32_t p = kv->lprev[b], n = kv->lnext[b];
    if (p != NONE) kv->lnext[p] = n; else kv->lru_head = n;
    if (n != NONE) kv->lprev[n] = p; else kv->lru_tail = p;
    kv->lprev[b] = kv->lnext[b] = NONE;
    kv->n_cached--;
}

static void lru_push_tail(kv_cache *kv, uint32_t b)
{
    kv->lnext[b] = NONE;
    kv->lprev[b] = kv->lru_tail;
    if (kv->lru_tail != NONE) kv->lnext[kv->lru_tail] = b; else kv->lru_head = b;
    kv->lru_tail = b;
    kv->n_cached++;
}

/* ---- hash table ---- */

static void ht_insert(kv_cache *kv, uint32_t b)
{
    uint32_t *head = &kv->bucket[kv->hash[b] & kv->bucket_mask];
    kv->hnext[b] = *head;
    *head = b;
}

static void ht_remove(kv_cache *kv, uint32_t b)
{
    uint32_t *p = &kv->bucket[kv->hash[b] & kv->bucket_mask];
    while (*p != NONE) {
        if (*p == b) {
            *p = kv->hnext[b];
            kv->hnext[b] = NONE;
            return;
        }
        p = &kv->hnext[*p];
    }
}

/* A published block with this hash, parent prefix and tokens; prefers one in use. */
static uint32_t ht_find(const kv_cache *kv, uint64_t h, uint64_t ppid, const int32_t *t)
{
    uint32_t found = NONE;
    size_t tbytes = (size_t)kv->bs * sizeof(int32_t);
    for (uint32_t b = kv->bucket[h & kv->bucket_mask]; b != NONE; b = kv->hnext[b]) {
        if (kv->hash[b] != h || kv->ppid[b] != ppid) continue;
        if (memcmp(&kv->tok[(size_t)b * kv->bs], t, tbytes) != 0) continue;
        if (kv->ref[b] > 0) return b;
        if (found == NONE) found = b;
    }
    return found;
}

/* ---- block state changes ---- */

static uint32_t block_alloc(kv_cache *kv)
{
    uint32_t b;
    if (kv->n_free > 0) {
        b = kv->free_stack[--kv->n_free];
    } else {
        b = kv->lru_head; /* caller checked availability */
        lru_remove(kv, b);
        ht_remove(kv, b);
        kv->pub[b] = 0;
        kv->evictions++;
    }
    kv->ref[b] = 1;
    kv->fill[b] = 0;
    kv->n_used++;
    return b;
}

static void block_release(kv_cache *kv, uint32_t b)
{
    if (--kv->ref[b] > 0) return;
    kv->n_used--;
    kv->used_fill -= kv->fill[b];
    if (kv->pub[b]) {
        lru_push_tail(kv, b);
    } else {
        kv->fill[b] = 0;
        kv->free_stack[kv->n_free++] = b;
    }
}

static void block_retain(kv_cache *kv, uint32_t b)
{
    if (kv->ref[b]++ == 0) { /* a cached block comes back into use */
        lru_remove(kv, b);
        kv->n_used++;
        kv->used_fill += kv->fill[b];
    }
}

static inline unsigned char *block_ptr(const kv_cache *kv, uint32_t b)
{
    return kv->arena + (size_t)b * kv->block_bytes;
}

/* ---- creation ---- */

static int is_pow2(uint32_t x) { return x != 0 && (x & (x - 1)) == 0; }

#define ARENA_ALIGN ((size_t)2 << 20) /* the 2 MiB page size of x86-64 and arm64 */

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/* Faults in every page of [p, p + len) for writing, after the 2 MiB advice so that the pages
 * are the large ones. MADV_POPULATE_WRITE reports a failure to find memory (-ENOMEM); kernels
 * without it (EINVAL) get one store per 4 KiB page instead (of zero: the memory is already
 * zero-filled). */
static int arena_prefault(unsigned char *p, size_t len)
{
    if (madvise(p, len, MADV_POPULATE_WRITE) == 0) return 0;
    if (errno != EINVAL) return -ENOMEM;
    for (size_t o = 0; o < len; o += 4096) ((volatile unsigned char *)p)[o] = 0;
    return 0;
}

/* bytes (> 0, <= SIZE_MAX - 2 * ARENA_ALIGN) of zero-filled memory at a 2 MiB boundary, in 2 MiB
 * pages where the kernel gives them (the advice may be ignored: THP off), every page faulted
 * in when prefault is set; NULL if out of memory. The mapping is kept in kv for kv_destroy. */
static unsigned char *arena_map(kv_cache *kv, size_t bytes, bool prefault)
{
    const size_t whole = (bytes + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1);
    const size_t len = whole + ARENA_ALIGN;
    void *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) return NULL;
    uintptr_t at = ((uintptr_t)map + ARENA_ALIGN - 1) & ~(uintptr_t)(ARENA_ALIGN - 1);
    kv->arena_map = map;
    kv->arena_map_len = len;
    (void)madvise((void *)at, whole, MADV_HUGEPAGE);
    if (prefault && arena_prefault((unsigned char *)at, whole) != 0) return NULL;
    return (unsigned char *)at;
}

int kv_create(const kv_config *cfg, kv_cache **ret_kv)
{
    if (cfg == NULL || ret_kv == NULL) return -EINVAL;
    kv_config c = *cfg;
    if (c.block_size == 0) c.block_size = KV_DEFAULT_BLOCK_SIZE;
    if (c.n_layer == 0 || c.n_head_kv == 0 || c.head_dim == 0) return -EINVAL;
    if (!is_pow2(c.block_size) || c.block_size > KV_MAX_BLOCK_SIZE) return -EINVAL;
    if (c.dtype != KV_F16 && c.dtype != KV_F32) return -EINVAL;
    if (c.max_seqs == 0 || c.max_seqs > KV_MAX_SEQS || c.max_seq_len == 0) return -EINVAL;

    uint64_t esz = c.dtype == KV_F16 ? 2 : 4;
    uint64_t slab, per_block_slabs, block_bytes;
    if (__builtin_mul_overflow((uint64_t)c.block_size, (uint64_t)c.head_dim, &slab) ||
        __builtin_mul_overflow(slab, esz, &slab) ||
        __builtin_mul_overflow((uint64_t)c.n_layer * 2u, (uint64_t)c.n_head_kv, &per_block_slabs) ||
        __builtin_mul_overflow(slab, per_block_slabs, &block_bytes))
        return -EINVAL;
    uint64_t n_blocks = c.budget_bytes / block_bytes;
    if (n_blocks == 0 || n_blocks > KV_MAX_BLOCKS) return -EINVAL;
    uint64_t arena_bytes = n_blocks * block_bytes; /* <= budget */
    if (arena_bytes > SIZE_MAX - 2 * ARENA_ALIGN) return -EINVAL;
    uint32_t max_bps = (uint32_t)(((uint64_t)c.max_seq_len + c.block_size - 1) / c.block_size);
    uint64_t table_entries;
    if (__builtin_mul_overflow((uint64_t)c.max_seqs, (uint64_t)max_bps, &table_entries) ||
        table_entries > SIZE_MAX / sizeof(uint32_t))
        return -EINVAL;
    uint64_t tok_entries = n_blocks * c.block_size; /* <= 2^30 * 2^12 */
    if (tok_entries > SIZE_MAX / sizeof(int32_t)) return -EINVAL;
    uint64_t n_buckets = 16;
    while (n_buckets < 2 * n_blocks) n_buckets <<= 1; /* <= 2^31 */

    kv_cache *kv = calloc(1, sizeof *kv);
    if (kv == NULL) return -ENOMEM;
    kv->cfg = c;
    kv->bs = c.block_size;
    kv->bs_shift = (uint32_t)__builtin_ctz(c.block_size);
    kv->esz = (uint32_t)esz;
    kv->block_bytes = block_bytes;
    kv->bytes_per_token = block_bytes / c.block_size;
    kv->slab_bytes = slab;
    kv->n_blocks = (uint32_t)n_blocks;
    kv->max_bps = max_bps;
    kv->root_hash = fmix64(c.salt ^ P1) ^ P2;
    kv->next_pid = 1;

    size_t nb = (size_t)n_blocks;
    kv->arena = arena_map(kv, (size_t)arena_bytes, c.prefault);
    kv->ref = calloc(nb, sizeof(uint32_t));
    kv->fill = calloc(nb, sizeof(uint32_t));
    kv->lprev = malloc(nb * sizeof(uint32_t));
    kv->lnext = malloc(nb * sizeof(uint32_t));
    kv->hnext = malloc(nb * sizeof(uint32_t));
    kv->pub = calloc(nb, 1);
    kv->hash = calloc(nb, sizeof(uint64_t));
    kv->pid = calloc(nb, sizeof(uint64_t));
    kv->ppid = calloc(nb, sizeof(uint64_t));
    kv->tok = calloc((size_t)tok_entries, sizeof(int32_t));
    kv->free_stack = malloc(nb * sizeof(uint32_t));
    kv->bucket = malloc((size_t)n_buckets * sizeof(uint32_t));
    kv->seqs = calloc(c.max_seqs, sizeof(kv_seq));
    kv->seq_tables = malloc((size_t)(table_entries ? table_entries : 1) * sizeof(uint32_t));
    kv->seq_free = malloc((size_t)c.max_seqs * sizeof(uint32_t));
    if (!kv->arena || !kv->ref || !kv->fill || !kv->lprev || !kv->lnext || !kv->hnext ||
        !kv->pub || !kv->hash || !kv->pid || !kv->ppid || !kv->tok || !kv->free_stack ||
        !kv->bucket || !kv->seqs || !kv->seq_tables || !kv->seq_free) {
        kv_destroy(kv);
        return -ENOMEM;
    }

    /* Free stack popped from the top: block 0 is handed out first. */
    for (uint32_t i = 0; i < kv->n_blocks; i++) {
        kv->free_stack[i] = kv->n_blocks - 1 - i;
        kv->lprev[i] = kv->lnext[i] = kv->hnext[i] = NONE;
    }
    kv->n_free = kv->n_blocks;
    kv->lru_head = kv->lru_tail = NONE;
    kv->bucket_mask = (uint32_t)(n_buckets - 1);
    for (uint64_t i = 0; i < n_buckets; i++) kv->bucket[i] = NONE;
    for (uint32_t s = 0; s < c.max_seqs; s++) {
        kv->seqs[s].table = kv->seq_tables + (size_t)s * max_bps;
        kv->seq_free[s] = c.max_seqs - 1 - s;
    }
    kv->n_seq_free = c.max_seqs;
    *ret_kv = kv;
    return 0;
}

void kv_destroy(kv_cache *kv)
{
    if (kv == NULL) return;
    if (kv->arena_map) munmap(kv->arena_map, kv->arena_map_len);
    free(kv->ref);
    free(kv->fill);
    free(kv->lprev);
    free(kv->lnext);
    free(kv->hnext);
    free(kv->pub);
    free(kv->hash);
    free(kv->pid);
    free(kv->ppid);
    free(kv->tok);
    free(kv->free_stack);
    free(kv->bucket);
    free(kv->seqs);
    free(kv->seq_tables);
    free(kv->seq_free);
    free(kv);
}

const kv_config *kv_get_config(const kv_cache *kv) { return &kv->cfg; }

/* ---- sequences ---- */

static kv_seq *seq_get(const kv_cache *kv, uint32_t seq)
{
    if (kv == NULL || seq >= kv->cfg.max_seqs || !kv->seqs[seq].live) return NULL;
    return &kv->seqs[seq];
}

static inline uint32_t blocks_for(const kv_cache *kv, uint64_t tokens)
{
    return (uint32_t)((tokens + kv->bs - 1) >> kv->bs_shift);
}

int kv_seq_create(kv_cache *kv, uint32_t *ret_seq)
{
    if (kv == NULL || ret_seq == NULL) return -EINVAL;
    if (kv->n_seq_free == 0) return -ENOSPC;
    uint32_t s = kv->seq_free[--kv->n_seq_free];
    kv_seq *q = &kv->seqs[s];
    uint32_t *table = q->table;
    memset(q, 0, sizeof *q);
    q->table = table;
    q->live = true;
    q->prev_hash = kv->root_hash;
    kv->n_seqs++;
    *ret_seq = s;
    return 0;
}

bool kv_seq_valid(const kv_cache *kv, uint32_t seq) { return seq_get(kv, seq) != NULL; }

uint32_t kv_seq_len(const kv_cache *kv, uint32_t seq)
{
    const kv_seq *q = seq_get(kv, seq);
    return q ? q->len : 0;
}

uint32_t kv_seq_committed(const kv_cache *kv, uint32_t seq)
{
    const kv_seq *q = seq_get(kv, seq);
    return q ? q->committed : 0;
}

const uint32_t *kv_seq_blocks(const kv_cache *kv, uint32_t seq, uint32_t *ret_n_blocks)
{
    const kv_seq *q = seq_get(kv, seq);
    if (ret_n_blocks) *ret_n_blocks = q ? q->n_blocks : 0;
    return q ? q->table : NULL;
}

/* Walks the longest cached chain for tokens[0..n_full*bs). Writes matched blocks to out (if
 * not NULL), the chain state after the last match, and how many matches are in use. */
static uint32_t lookup(const kv_cache *kv, const int32_t *tokens, uint32_t n_full,
                       uint32_t *out, uint64_t *ret_hash, uint64_t *ret_pid, uint32_t *ret_in_use)
{
    uint64_t h = kv->root_hash, pid = 0;
    uint32_t i = 0, in_use = 0;
    for (; i < n_full; i++) {
        const int32_t *t = tokens + (size_t)i * kv->bs;
        uint64_t hi = block_hash(h, t, kv->bs);
        uint32_t b = ht_find(kv, hi, pid, t);
        if (b == NONE) break;
        if (out) out[i] = b;
        if (kv->ref[b] > 0) in_use++;
        h = hi;
        pid = kv->pid[b];
    }
    if (ret_hash) *ret_hash = h;
    if (ret_pid) *ret_pid = pid;
    if (ret_in_use) *ret_in_use = in_use;
    return i;
}

static uint32_t full_blocks_in(const kv_cache *kv, uint32_t n)
{
    if (n > kv->cfg.max_seq_len) n = kv->cfg.max_seq_len;
    return n >> kv->bs_shift;
}

uint32_t kv_lookup_prefix(const kv_cache *kv, const int32_t *tokens, uint32_t n)
{
    if (kv == NULL || tokens == NULL) return 0;
    return lookup(kv, tokens, full_blocks_in(kv, n), NULL, NULL, NULL, NULL) << kv->bs_shift;
}

int kv_seq_attach_prefix(kv_cache *kv, uint32_t seq, const int32_t *tokens, uint32_t n,
                         uint32_t *ret_cached)
{
    kv_seq *q = seq_get(kv, seq);
    if (q == NULL || q->len != 0 || (tokens == NULL && n > 0) || ret_cached == NULL) return -EINVAL;
    uint64_t h, pid;
    uint32_t k = n ? lookup(kv, tokens, full_blocks_in(kv, n), q->table, &h, &pid, NULL) : 0;
    for (uint32_t i = 0; i < k; i++) block_retain(kv, q->table[i]);
    uint32_t cached = k << kv->bs_shift;
    if (k > 0) {
        q->len = q->committed = cached;
        q->n_blocks = q->n_pub = k;
        q->prev_hash = h;
        q->prev_pid = pid;
        kv->tokens += cached;
    }
    kv->lookup_tokens += n;
    kv->hit_tokens += cached;
    *ret_cached = cached;
    return 0;
}

/* New blocks an append of n tokens needs, counting a copy-on-write of the last block. */
static uint32_t grow_need(const kv_cache *kv, const kv_seq *q, uint32_t n)
{
    uint32_t need = blocks_for(kv, (uint64_t)q->len + n) - q->n_blocks;
    if ((q->len & (kv->bs - 1)) != 0 && kv->ref[q->table[q->n_blocks - 1]] > 1) need++;
    return need;
}

int kv_seq_append(kv_cache *kv, uint32_t seq, const int32_t *tokens, uint32_t n)
{
    kv_seq *q = seq_get(kv, seq);
    if (q == NULL || (tokens == NULL && n > 0)) return -EINVAL;
    if (n == 0) return 0;
    if (n > kv->cfg.max_seq_len - q->len) return -E2BIG;
    if (grow_need(kv, q, n) > kv->n_free + kv->n_cached) return -ENOSPC;

    uint32_t bs = kv->bs, off = q->len & (bs - 1);
    if (off != 0) {
        uint32_t old = q->table[q->n_blocks - 1];
        if (kv->ref[old] > 1) { /* copy-on-write of the shared partial block */
            uint32_t nb = block_alloc(kv);
            /* whole slabs: the order inside them is the engine's (its K is transposed, so
             * the first `off` tokens are not a prefix of a slab) */
            memcpy(block_ptr(kv, nb), block_ptr(kv, old), (size_t)kv->block_bytes);
            memcpy(&kv->tok[(size_t)nb * bs], &kv->tok[(size_t)old * bs], off * sizeof(int32_t));
            kv->fill[nb] = off;
            kv->used_fill += off;
            kv->ref[old]--; /* still > 0 */
            q->table[q->n_blocks - 1] = nb;
            kv->cow_copies++;
        }
    }
    uint32_t done = 0;
    while (done < n) {
        if (off == 0) q->table[q->n_blocks++] = block_alloc(kv);
        uint32_t b = q->table[q->n_blocks - 1];
        uint32_t k = bs - off;
        if (k > n - done) k = n - done;
        memcpy(&kv->tok[(size_t)b * bs + off], tokens + done, (size_t)k * sizeof(int32_t));
        kv->fill[b] += k;
        kv->used_fill += k;
        done += k;
        off = (off + k) & (bs - 1);
    }
    q->len += n;
    kv->tokens += n;
    return 0;
}

int kv_seq_commit(kv_cache *kv, uint32_t seq)
{
    kv_seq *q = seq_get(kv, seq);
    if (q == NULL) return -EINVAL;
    uint32_t full = q->len >> kv->bs_shift;
    for (uint32_t i = q->n_pub; i < full; i++) {
        uint32_t b = q->table[i];
        if (!kv->pub[b]) {
            const int32_t *t = &kv->tok[(size_t)b * kv->bs];
            uint64_t h = block_hash(q->prev_hash, t, kv->bs);
            uint32_t same = ht_find(kv, h, q->prev_pid, t);
            kv->hash[b] = h;
            kv->ppid[b] = q->prev_pid;
            kv->pid[b] = same != NONE ? kv->pid[same] : kv->next_pid++;
            kv->pub[b] = 1;
            ht_insert(kv, b);
        }
        q->prev_hash = kv->hash[b];
        q->prev_pid = kv->pid[b];
    }
    q->n_pub = full;
    q->committed = q->len;
    return 0;
}

int kv_seq_fork(kv_cache *kv, uint32_t seq, uint32_t *ret_child)
{
    kv_seq *q = seq_get(kv, seq);
    if (q == NULL || ret_child == NULL) return -EINVAL;
    if (q->committed != q->len) return -EBUSY;
    uint32_t c;
    int rc = kv_seq_create(kv, &c);
    if (rc < 0) return rc;
    q = &kv->seqs[seq];
    kv_seq *ch = &kv->seqs[c];
    uint32_t *table = ch->table;
    *ch = *q;
    ch->table = table;
    memcpy(table, q->table, (size_t)q->n_blocks * sizeof(uint32_t));
    for (uint32_t i = 0; i < q->n_blocks; i++) kv->ref[table[i]]++;
    kv->tokens += q->len;
    *ret_child = c;
    return 0;
}

void kv_seq_free(kv_cache *kv, uint32_t seq)
{
    kv_seq *q = seq_get(kv, seq);
    if (q == NULL) return;
    for (uint32_t i = q->n_blocks; i-- > 0;) block_release(kv, q->table[i]);
    kv->tokens -= q->len;
    q->live = false;
    q->len = q->committed = q->n_blocks = q->n_pub = 0;
    kv->n_seqs--;
    kv->seq_free[kv->n_seq_free++] = seq;
}

/* ---- blocks ---- */

static void *slab_ptr(kv_cache *kv, uint32_t block, uint32_t layer, uint32_t head, uint32_t v)
{
    if (kv == NULL || block >= kv->n_blocks || layer >= kv->cfg.n_layer || head >= kv->cfg.n_head_kv)
        return NULL;
    size_t s = ((size_t)layer * 2 + v) * kv->cfg.n_head_kv + head;
    return block_ptr(kv, block) + s * kv->slab_bytes;
}

void *kv_block_k(kv_cache *kv, uint32_t block, uint32_t layer, uint32_t head)
{
    return slab_ptr(kv, block, layer, head, 0);
}

void *kv_block_v(kv_cache *kv, uint32_t block, uint32_t layer, uint32_t head)
{
    return slab_ptr(kv, block, layer, head, 1);
}

const int32_t *kv_block_tokens(const kv_cache *kv, uint32_t block)
{
    if (kv == NULL || block >= kv->n_blocks) return NULL;
    return &kv->tok[(size_t)block * kv->bs];
}

uint32_t kv_block_fill(const kv_cache *kv, uint32_t block)
{
    return kv && block < kv->n_blocks ? kv->fill[block] : 0;
}

uint32_t kv_block_refs(const kv_cache *kv, uint32_t block)
{
    return kv && block < kv->n_blocks ? kv->ref[block] : 0;
}

/* ---- capacity ---- */

bool kv_can_grow(const kv_cache *kv, uint32_t seq, uint32_t n)
{
    const kv_seq *q = seq_get(kv, seq);
    if (q == NULL) return false;
    if (n == 0) return true;
    if (n > kv->cfg.max_seq_len - q->len) return false;
    return grow_need(kv, q, n) <= kv->n_free + kv->n_cached;
}

uint32_t kv_blocks_available(const kv_cache *kv) { return kv ? kv->n_free + kv->n_cached : 0; }

uint32_t kv_blocks_needed(const kv_cache *kv, const int32_t *tokens, uint32_t n)
{
    if (kv == NULL || n == 0) return 0;
    uint32_t total = blocks_for(kv, n), in_use = 0;
    if (tokens != NULL) lookup(kv, tokens, full_blocks_in(kv, n - 1), NULL, NULL, NULL, &in_use);
    return total - in_use;
}

void kv_get_stats(const kv_cache *kv, kv_stats *ret)
{
    if (kv == NULL || ret == NULL) return;
    kv_stats s;
    memset(&s, 0, sizeof s);
    s.n_blocks = kv->n_blocks;
    s.used = kv->n_used;
    s.cached = kv->n_cached;
    s.free = kv->n_free;
    s.block_size = kv->bs;
    s.block_bytes = kv->block_bytes;
    s.bytes_per_token = kv->bytes_per_token;
    s.max_seqs_full_ctx = kv->n_blocks / kv->max_bps;
    s.n_seqs = kv->n_seqs;
    s.tokens = kv->tokens;
    s.waste_slots = (uint64_t)kv->n_used * kv->bs - kv->used_fill;
    s.waste_bytes = s.waste_slots * kv->bytes_per_token;
    s.waste_pct = kv->n_used ? 100.0 * (double)s.waste_slots / ((double)kv->n_used * kv->bs) : 0.0;
    s.lookup_tokens = kv->lookup_tokens;
    s.hit_tokens = kv->hit_tokens;
    s.evictions = kv->evictions;
    s.cow_copies = kv->cow_copies;
    *ret = s;
}

/* ---- invariants ---- */

#define FAIL_IF(c) do { if (c) { rc = -EUCLEAN; goto out; } } while (0)

int kv_check(const kv_cache *kv)
{
    if (kv == NULL) return -EINVAL;
    int rc = 0;
    uint32_t nb = kv->n_blocks, bs = kv->bs;
    uint32_t *refs = calloc(nb, sizeof(uint32_t));
    uint8_t *seen = calloc(nb, 1);
    if (refs == NULL || seen == NULL) { rc = -ENOMEM; goto out; }

    /* sequences: tables, fills, chains */
    uint32_t live = 0;
    uint64_t tokens = 0;
    for (uint32_t s = 0; s < kv->cfg.max_seqs; s++) {
        const kv_seq *q = &kv->seqs[s];
        if (!q->live) continue;
        live++;
        tokens += q->len;
        FAIL_IF(q->len > kv->cfg.max_seq_len || q->committed > q->len);
        FAIL_IF(q->n_blocks != blocks_for(kv, q->len) || q->n_blocks > kv->max_bps);
        FAIL_IF(q->n_pub != q->committed / bs);
        uint64_t pid = 0, h = kv->root_hash;
        for (uint32_t i = 0; i < q->n_blocks; i++) {
            uint32_t b = q->table[i];
            FAIL_IF(b >= nb);
            refs[b]++;
            uint32_t want = q->len - i * bs < bs ? q->len - i * bs : bs;
            FAIL_IF(kv->fill[b] != want);
            if (i < q->n_pub) {
                FAIL_IF(!kv->pub[b] || kv->ppid[b] != pid);
                FAIL_IF(kv->hash[b] != block_hash(h, &kv->tok[(size_t)b * bs], bs));
                pid = kv->pid[b];
                h = kv->hash[b];
            }
        }
        FAIL_IF(q->prev_pid != pid || q->prev_hash != h);
    }
    FAIL_IF(live != kv->n_seqs || tokens != kv->tokens);
    FAIL_IF(kv->n_seq_free + live != kv->cfg.max_seqs);
    for (uint32_t i = 0; i < kv->n_seq_free; i++) {
        uint32_t s = kv->seq_free[i];
        FAIL_IF(s >= kv->cfg.max_seqs || kv->seqs[s].live);
    }

    /* block states */
    uint32_t used = 0;
    uint64_t used_fill = 0;
    for (uint32_t b = 0; b < nb; b++) {
        FAIL_IF(refs[b] != kv->ref[b]);
        FAIL_IF(kv->fill[b] > bs || (kv->pub[b] && kv->fill[b] != bs));
        if (kv->ref[b] > 0) {
            used++;
            used_fill += kv->fill[b];
            seen[b] = 1;
        }
    }
    FAIL_IF(used != kv->n_used || used_fill != kv->used_fill);
    for (uint32_t i = 0; i < kv->n_free; i++) {
        uint32_t b = kv->free_stack[i];
        FAIL_IF(b >= nb || seen[b] || kv->ref[b] != 0 || kv->pub[b]);
        seen[b] = 2;
    }
    uint32_t n_lru = 0, prev = NONE;
    for (uint32_t b = kv->lru_head; b != NONE; b = kv->lnext[b]) {
        FAIL_IF(b >= nb || seen[b] || kv->ref[b] != 0 || !kv->pub[b] || kv->lprev[b] != prev);
        seen[b] = 3;
        prev = b;
        n_lru++;
    }
    FAIL_IF(prev != kv->lru_tail || n_lru != kv->n_cached);
    FAIL_IF(kv->n_used + kv->n_free + kv->n_cached != nb);

    /* hash table: exactly the published blocks, each in its own bucket */
    uint32_t n_pub = 0, in_table = 0;
    for (uint32_t b = 0; b < nb; b++) {
        FAIL_IF(!seen[b]);
        if (kv->pub[b]) n_pub++;
    }
    for (uint64_t i = 0; i <= kv->bucket_mask; i++) {
        for (uint32_t b = kv->bucket[i]; b != NONE; b = kv->hnext[b]) {
            FAIL_IF(b >= nb || !kv->pub[b] || (kv->hash[b] & kv->bucket_mask) != i);
            FAIL_IF(++in_table > n_pub);
        }
    }
    FAIL_IF(in_table != n_pub);
out:
    free(refs);
    free(seen);
    return rc;
}
