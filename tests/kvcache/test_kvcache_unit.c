/* Unit tests for kvcache: one function per operation. */
#include "kvcache.h"
#include "testutil.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* A small model: 2 layers, 2 KV heads, head_dim 4, f32 -> 128 bytes per token. */
static kv_config small_cfg(uint32_t bs, uint32_t n_blocks)
{
    kv_config c;
    memset(&c, 0, sizeof c);
    c.n_layer = 2;
    c.n_head_kv = 2;
    c.head_dim = 4;
    c.block_size = bs;
    c.dtype = KV_F32;
    c.budget_bytes = (uint64_t)n_blocks * bs * 2 * 2 * 2 * 4 * 4;
    c.salt = 42;
    c.max_seqs = 8;
    c.max_seq_len = 64;
    return c;
}

static kv_cache *make(uint32_t bs, uint32_t n_blocks)
{
    kv_config c = small_cfg(bs, n_blocks);
    kv_cache *kv = NULL;
    CHECK_EQ_INT(kv_create(&c, &kv), 0);
    CHECK(kv != NULL);
    return kv;
}

static void seqtoks(int32_t *t, uint32_t n, int32_t base)
{
    for (uint32_t i = 0; i < n; i++) t[i] = base + (int32_t)i;
}

static kv_stats stats(const kv_cache *kv)
{
    kv_stats s;
    kv_get_stats(kv, &s);
    CHECK_EQ_INT(s.used + s.cached + s.free, s.n_blocks);
    CHECK_EQ_INT(kv_check(kv), 0);
    return s;
}

static void test_create(void)
{
    kv_cache *kv = (kv_cache *)(uintptr_t)0x1;
    kv_config c = small_cfg(4, 10);
    kv_config bad;

    bad = c; bad.n_layer = 0;
    CHECK_EQ_INT(kv_create(&bad, &kv), -EINVAL);
    bad = c; bad.n_head_kv = 0;
    CHECK_EQ_INT(kv_create(&bad, &kv), -EINVAL);
    bad = c; bad.head_dim = 0;
    CHECK_EQ_INT(kv_create(&bad, &kv), -EINVAL);
    bad = c; bad.block_size = 12;
    CHECK_EQ_INT(kv_create(&bad, &kv), -EINVAL);
    bad = c; bad.block_size = KV_MAX_BLOCK_SIZE * 2;
    CHECK_EQ_INT(kv_create(&bad, &kv), -EINVAL);
    bad = c; bad.dtype = (kv_dtype)7;
    CHECK_EQ_INT(kv_create(&bad, &kv), -EINVAL);
    bad = c; bad.max_seqs = 0;
    CHECK_EQ_INT(kv_create(&bad, &kv), -EINVAL);
    bad = c; bad.max_seqs = KV_MAX_SEQS + 1;
    CHECK_EQ_INT(kv_create(&bad, &kv), -EINVAL);
    bad = c; bad.max_seq_len = 0;
    CHECK_EQ_INT(kv_create(&bad, &kv), -EINVAL);
    bad = c; bad.budget_bytes = 4 * 128 - 1; /* less than one block */
    CHECK_EQ_INT(kv_create(&bad, &kv), -EINVAL);
    bad = c; bad.n_layer = UINT32_MAX; bad.n_head_kv = UINT32_MAX; bad.head_dim = UINT32_MAX;
    bad.budget_bytes = UINT64_MAX;
    CHECK_EQ_INT(kv_create(&bad, &kv), -EINVAL); /* block size overflows */
    bad = c; bad.budget_bytes = UINT64_MAX;  /* far more than KV_MAX_BLOCKS blocks */
    CHECK_EQ_INT(kv_create(&bad, &kv), -EINVAL);
    CHECK_EQ_INT(kv_create(NULL, &kv), -EINVAL);
    CHECK_EQ_INT(kv_create(&c, NULL), -EINVAL);
    CHECK(kv == (kv_cache *)(uintptr_t)0x1); /* untouched on failure */

    /* block_size 0 means 16; f16 halves the bytes */
    kv_config d = small_cfg(16, 0);
    d.block_size = 0;
    d.dtype = KV_F16;
    d.budget_bytes = 1000 * 64 + 5; /* 64 bytes per token in f16 -> 1000 tokens -> 62 blocks */
    d.max_seq_len = 100;            /* 7 blocks per full sequence */
    CHECK_EQ_INT(kv_create(&d, &kv), 0);
    CHECK_EQ_INT(kv_get_config(kv)->block_size, 16);
    kv_stats s = stats(kv);
    CHECK_EQ_INT(s.block_size, 16);
    CHECK_EQ_INT(s.bytes_per_token, 2 * 2 * 2 * 4 * 2);
    CHECK_EQ_INT(s.block_bytes, 16 * 64);
    CHECK_EQ_INT(s.n_blocks, 62);
    CHECK_EQ_INT(s.free, 62);
    CHECK_EQ_INT(s.used, 0);
    CHECK_EQ_INT(s.cached, 0);
    CHECK_EQ_INT(s.max_seqs_full_ctx, 62 / 7);
    CHECK_EQ_INT(s.n_seqs, 0);
    CHECK_EQ_INT(s.waste_slots, 0);
    CHECK(s.waste_pct == 0.0);
    kv_destroy(kv);
    kv_destroy(NULL);

    /* block_size 1 works */
    kv = make(1, 5);
    CHECK_EQ_INT(stats(kv).n_blocks, 5);
    kv_destroy(kv);
}

static void test_layout(void)
{
    for (int dt = 0; dt < 2; dt++) {
        kv_config c = small_cfg(4, 3);
        c.dtype = (kv_dtype)dt;
        uint32_t esz = dt == KV_F16 ? 2 : 4;
        c.budget_bytes = 3ull * 4 * 2 * 2 * 2 * 4 * esz;
        kv_cache *kv = NULL;
        CHECK_EQ_INT(kv_create(&c, &kv), 0);
        kv_stats s = stats(kv);
        CHECK_EQ_INT(s.n_blocks, 3);
        size_t slab = 4 * 4 * esz; /* block_size * head_dim elements */
        CHECK_EQ_INT(s.block_bytes, slab * 2 * 2 * 2);
        unsigned char *base = kv_block_k(kv, 0, 0, 0);
        CHECK(base != NULL);
        CHECK_EQ_INT((uintptr_t)base % 64, 0);
        CHECK_EQ_INT((uintptr_t)base % (2u << 20), 0); /* room for 2 MiB pages from block 0 */
        /* [layer][K,V][head]: every slab in its own place, blocks back to back */
        for (uint32_t b = 0; b < 3; b++)
            for (uint32_t l = 0; l < 2; l++)
                for (uint32_t h = 0; h < 2; h++) {
                    unsigned char *k = kv_block_k(kv, b, l, h), *v = kv_block_v(kv, b, l, h);
                    size_t ko = b * s.block_bytes + ((l * 2 + 0) * 2 + h) * slab;
                    size_t vo = b * s.block_bytes + ((l * 2 + 1) * 2 + h) * slab;
                    CHECK_EQ_INT(k - base, ko);
                    CHECK_EQ_INT(v - base, vo);
                }
        CHECK(kv_block_k(kv, 3, 0, 0) == NULL);
        CHECK(kv_block_k(kv, 0, 2, 0) == NULL);
        CHECK(kv_block_v(kv, 0, 0, 2) == NULL);
        CHECK(kv_block_tokens(kv, 3) == NULL);
        CHECK_EQ_INT(kv_block_refs(kv, 99), 0);
        /* the arena starts zeroed and is writable end to end */
        unsigned char *last = kv_block_v(kv, 2, 1, 1);
        CHECK_EQ_INT(last[slab - 1], 0);
        memset(base, 0xab, 3 * s.block_bytes);
        kv_destroy(kv);
    }
}

/* pages of [p, p + len) (p page-aligned) that are resident */
static size_t resident_pages(const void *p, size_t len)
{
    const size_t pg = (size_t)sysconf(_SC_PAGESIZE), n = (len + pg - 1) / pg;
    unsigned char *vec = malloc(n);
    CHECK(vec != NULL);
    CHECK_EQ_INT(mincore((void *)(uintptr_t)p, len, vec), 0);
    size_t r = 0;
    for (size_t i = 0; i < n; i++) r += vec[i] & 1;
    free(vec);
    return r;
}

/* prefault: every page of the arena is in memory when kv_create returns, and it still reads
 * as zero; without it, kv_create touches none of the arena */
static void test_prefault(void)
{
    const size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    for (int pf = 0; pf < 2; pf++) {
        kv_config c = small_cfg(16, 0);
        c.dtype = KV_F16;
        c.n_layer = 4;
        c.head_dim = 64;
        c.budget_bytes = 6u << 20; /* 192 blocks of 32 KiB: three 2 MiB pages */
        c.prefault = pf;
        kv_cache *kv = NULL;
        CHECK_EQ_INT(kv_create(&c, &kv), 0);
        kv_stats s = stats(kv);
        const unsigned char *base = kv_block_k(kv, 0, 0, 0);
        const size_t len = (size_t)s.n_blocks * s.block_bytes;
        const size_t n_pages = (len + pg - 1) / pg;
        if (pf) {
            CHECK_EQ_INT(resident_pages(base, len), n_pages);
            for (size_t o = 0; o < len; o += 1031) CHECK_EQ_INT(base[o], 0);
        } else {
            CHECK_EQ_INT(resident_pages(base, len), 0);
        }
        kv_destroy(kv);
    }
}

static void test_seq_slots(void)
{
    kv_cache *kv = make(4, 8);
    uint32_t ids[8], extra = 77;
    for (int i = 0; i < 8; i++) {
        CHECK_EQ_INT(kv_seq_create(kv, &ids[i]), 0);
        CHECK(ids[i] < 8);
        CHECK(kv_seq_valid(kv, ids[i]));
        CHECK_EQ_INT(kv_seq_len(kv, ids[i]), 0);
        for (int j = 0; j < i; j++) CHECK(ids[i] != ids[j]);
    }
    CHECK_EQ_INT(kv_seq_create(kv, &extra), -ENOSPC);
    CHECK_EQ_INT(extra, 77);
    CHECK_EQ_INT(stats(kv).n_seqs, 8);
    kv_seq_free(kv, ids[3]);
    CHECK(!kv_seq_valid(kv, ids[3]));
    kv_seq_free(kv, ids[3]);   /* double free: no-op */
    kv_seq_free(kv, 1000);     /* bad id: no-op */
    CHECK_EQ_INT(stats(kv).n_seqs, 7);
    CHECK_EQ_INT(kv_seq_create(kv, &extra), 0);
    CHECK_EQ_INT(extra, ids[3]);
    uint32_t nb = 5;
    CHECK(kv_seq_blocks(kv, 1000, &nb) == NULL);
    CHECK_EQ_INT(nb, 0);
    CHECK_EQ_INT(kv_seq_len(kv, 1000), 0);
    int32_t t[4] = {1, 2, 3, 4};
    CHECK_EQ_INT(kv_seq_append(kv, 1000, t, 4), -EINVAL);
    CHECK_EQ_INT(kv_seq_commit(kv, 1000), -EINVAL);
    uint32_t got;
    CHECK_EQ_INT(kv_seq_attach_prefix(kv, 1000, t, 4, &got), -EINVAL);
    CHECK_EQ_INT(kv_seq_fork(kv, 1000, &got), -EINVAL);
    CHECK(!kv_can_grow(kv, 1000, 1));
    kv_destroy(kv);
}

static void test_append(void)
{
    kv_cache *kv = make(4, 6);
    uint32_t s, nb;
    CHECK_EQ_INT(kv_seq_create(kv, &s), 0);
    int32_t t[64];
    seqtoks(t, 64, 100);

    CHECK_EQ_INT(kv_seq_append(kv, s, t, 0), 0);
    CHECK_EQ_INT(kv_seq_append(kv, s, NULL, 3), -EINVAL);
    CHECK_EQ_INT(stats(kv).used, 0);

    CHECK_EQ_INT(kv_seq_append(kv, s, t, 3), 0);
    const uint32_t *bl = kv_seq_blocks(kv, s, &nb);
    CHECK_EQ_INT(nb, 1);
    CHECK_EQ_INT(kv_seq_len(kv, s), 3);
    CHECK_EQ_INT(kv_block_refs(kv, bl[0]), 1);
    CHECK_EQ_INT(kv_block_fill(kv, bl[0]), 3);
    kv_stats st = stats(kv);
    CHECK_EQ_INT(st.used, 1);
    CHECK_EQ_INT(st.waste_slots, 1);
    CHECK_EQ_INT(st.waste_bytes, st.bytes_per_token);
    CHECK(st.waste_pct > 24.9 && st.waste_pct < 25.1);

    CHECK_EQ_INT(kv_seq_append(kv, s, t + 3, 1), 0); /* fills block 0 exactly */
    bl = kv_seq_blocks(kv, s, &nb);
    CHECK_EQ_INT(nb, 1);
    CHECK_EQ_INT(stats(kv).waste_slots, 0);
    CHECK_EQ_INT(kv_seq_append(kv, s, t + 4, 1), 0); /* new block */
    bl = kv_seq_blocks(kv, s, &nb);
    CHECK_EQ_INT(nb, 2);
    CHECK(bl[0] != bl[1]);
    CHECK_EQ_INT(kv_seq_append(kv, s, t + 5, 10), 0); /* across blocks: 15 tokens, 4 blocks */
    bl = kv_seq_blocks(kv, s, &nb);
    CHECK_EQ_INT(nb, 4);
    CHECK_EQ_INT(kv_seq_len(kv, s), 15);
    for (uint32_t i = 0; i < 15; i++)
        CHECK_EQ_INT(kv_block_tokens(kv, bl[i / 4])[i % 4], t[i]);
    st = stats(kv);
    CHECK_EQ_INT(st.used, 4);
    CHECK_EQ_INT(st.free, 2);
    CHECK_EQ_INT(st.tokens, 15);
    CHECK_EQ_INT(st.waste_slots, 1);

    /* -ENOSPC: all or nothing (needs 3 blocks, 2 free) */
    CHECK(!kv_can_grow(kv, s, 10));
    CHECK(kv_can_grow(kv, s, 9));
    CHECK_EQ_INT(kv_seq_append(kv, s, t + 15, 10), -ENOSPC);
    CHECK_EQ_INT(kv_seq_len(kv, s), 15);
    CHECK_EQ_INT(stats(kv).used, 4);
    CHECK_EQ_INT(kv_check(kv), 0);

    /* -E2BIG past max_seq_len (64) */
    kv_destroy(kv);
    kv = make(4, 40);
    CHECK_EQ_INT(kv_seq_create(kv, &s), 0);
    CHECK_EQ_INT(kv_seq_append(kv, s, t, 60), 0);
    CHECK(!kv_can_grow(kv, s, 5));
    CHECK(kv_can_grow(kv, s, 4));
    CHECK(kv_can_grow(kv, s, 0));
    CHECK_EQ_INT(kv_seq_append(kv, s, t, 5), -E2BIG);
    CHECK_EQ_INT(kv_seq_append(kv, s, t, UINT32_MAX), -E2BIG);
    CHECK_EQ_INT(kv_seq_append(kv, s, t, 4), 0);
    CHECK_EQ_INT(kv_seq_len(kv, s), 64);
    CHECK_EQ_INT(kv_seq_append(kv, s, t, 1), -E2BIG);
    CHECK_EQ_INT(stats(kv).used, 16);
    kv_seq_free(kv, s);
    kv_stats st2 = stats(kv);
    CHECK_EQ_INT(st2.used, 0);
    CHECK_EQ_INT(st2.free, 40); /* nothing committed: nothing cached */
    CHECK_EQ_INT(st2.tokens, 0);
    kv_destroy(kv);
}

/* Appends and commits tokens to a fresh sequence. */
static uint32_t run_seq(kv_cache *kv, const int32_t *t, uint32_t n)
{
    uint32_t s;
    CHECK_EQ_INT(kv_seq_create(kv, &s), 0);
    CHECK_EQ_INT(kv_seq_append(kv, s, t, n), 0);
    CHECK_EQ_INT(kv_seq_commit(kv, s), 0);
    return s;
}

static void test_prefix_cache(void)
{
    kv_cache *kv = make(4, 16);
    int32_t a[32], b[32];
    seqtoks(a, 32, 1000);
    uint32_t s = run_seq(kv, a, 10), got = 99, nb;

    /* nothing is published before commit */
    uint32_t u;
    seqtoks(b, 32, 5000);
    CHECK_EQ_INT(kv_seq_create(kv, &u), 0);
    CHECK_EQ_INT(kv_seq_append(kv, u, b, 0), 0);
    CHECK_EQ_INT(kv_seq_append(kv, u, b, 8), 0);
    CHECK_EQ_INT(kv_lookup_prefix(kv, b, 8), 0);
    CHECK_EQ_INT(kv_seq_committed(kv, u), 0);
    CHECK_EQ_INT(kv_seq_commit(kv, u), 0);
    CHECK_EQ_INT(kv_seq_committed(kv, u), 8);
    CHECK_EQ_INT(kv_lookup_prefix(kv, b, 8), 8);
    kv_seq_free(kv, u);

    /* full blocks of a live sequence are shared; the partial one is not published */
    CHECK_EQ_INT(kv_lookup_prefix(kv, a, 10), 8);
    CHECK_EQ_INT(kv_lookup_prefix(kv, a, 7), 4);
    CHECK_EQ_INT(kv_lookup_prefix(kv, a, 3), 0);
    uint32_t t2;
    CHECK_EQ_INT(kv_seq_create(kv, &t2), 0);
    CHECK_EQ_INT(kv_seq_attach_prefix(kv, t2, a, 9, &got), 0);
    CHECK_EQ_INT(got, 8);
    CHECK_EQ_INT(kv_seq_len(kv, t2), 8);
    CHECK_EQ_INT(kv_seq_committed(kv, t2), 8);
    const uint32_t *bs_ = kv_seq_blocks(kv, s, &nb);
    const uint32_t *bt = kv_seq_blocks(kv, t2, &nb);
    CHECK_EQ_INT(nb, 2);
    CHECK_EQ_INT(bt[0], bs_[0]);
    CHECK_EQ_INT(bt[1], bs_[1]);
    CHECK_EQ_INT(kv_block_refs(kv, bt[0]), 2);
    kv_stats st = stats(kv);
    CHECK_EQ_INT(st.lookup_tokens, 9);
    CHECK_EQ_INT(st.hit_tokens, 8);
    /* attach needs an empty sequence */
    CHECK_EQ_INT(kv_seq_attach_prefix(kv, t2, a, 9, &got), -EINVAL);
    /* diverging token: the sequence appends its own blocks */
    int32_t c[12];
    memcpy(c, a, sizeof c);
    c[9] = -7;
    CHECK_EQ_INT(kv_seq_append(kv, t2, c + 8, 4), 0);
    CHECK_EQ_INT(kv_seq_commit(kv, t2), 0);
    CHECK_EQ_INT(kv_lookup_prefix(kv, c, 12), 12);
    CHECK_EQ_INT(kv_lookup_prefix(kv, a, 12), 8);

    /* a block with equal tokens under a different parent never matches */
    int32_t d[8];
    seqtoks(d, 8, 1000);
    d[0] = 1;                              /* block 0 differs, block 1 equals a's block 1 */
    CHECK_EQ_INT(kv_lookup_prefix(kv, d, 8), 0);
    CHECK_EQ_INT(kv_lookup_prefix(kv, d + 4, 4), 0);

    /* after free, full committed blocks stay cached and are reused */
    kv_seq_free(kv, s);
    kv_seq_free(kv, t2);
    st = stats(kv);
    CHECK_EQ_INT(st.used, 0);
    CHECK_EQ_INT(st.cached, 2 + 1 + 2); /* a's 2 blocks, c's own 3rd block, b's 2 blocks */
    CHECK_EQ_INT(st.free, 11);
    CHECK_EQ_INT(kv_seq_create(kv, &u), 0);
    CHECK_EQ_INT(kv_seq_attach_prefix(kv, u, c, 12, &got), 0);
    CHECK_EQ_INT(got, 12);
    st = stats(kv);
    CHECK_EQ_INT(st.used, 3);
    CHECK_EQ_INT(st.cached, 2);
    CHECK_EQ_INT(st.waste_slots, 0);
    /* n = 0 and short prompts attach nothing */
    uint32_t w;
    CHECK_EQ_INT(kv_seq_create(kv, &w), 0);
    CHECK_EQ_INT(kv_seq_attach_prefix(kv, w, NULL, 0, &got), 0);
    CHECK_EQ_INT(got, 0);
    CHECK_EQ_INT(kv_seq_attach_prefix(kv, w, a, 3, &got), 0);
    CHECK_EQ_INT(got, 0);
    CHECK_EQ_INT(kv_seq_attach_prefix(kv, w, NULL, 3, &got), -EINVAL);
    CHECK_EQ_INT(kv_seq_len(kv, w), 0);
    kv_destroy(kv);

    /* another salt (model) keys the same tokens differently; the hit is still exact */
    kv_config c1 = small_cfg(4, 8), c2 = c1;
    c2.salt = 43;
    kv_cache *k1, *k2;
    CHECK_EQ_INT(kv_create(&c1, &k1), 0);
    CHECK_EQ_INT(kv_create(&c2, &k2), 0);
    run_seq(k1, a, 8);
    run_seq(k2, a, 8);
    CHECK_EQ_INT(kv_lookup_prefix(k1, a, 8), 8);
    CHECK_EQ_INT(kv_lookup_prefix(k2, a, 8), 8);
    kv_destroy(k1);
    kv_destroy(k2);
}

static void test_duplicates(void)
{
    /* two sequences compute the same prompt before either commits: both publish; a later
     * sequence extends the chain through either one */
    kv_cache *kv = make(4, 16);
    int32_t a[16];
    seqtoks(a, 16, 7);
    uint32_t s1, s2, got;
    CHECK_EQ_INT(kv_seq_create(kv, &s1), 0);
    CHECK_EQ_INT(kv_seq_create(kv, &s2), 0);
    CHECK_EQ_INT(kv_seq_append(kv, s1, a, 8), 0);
    CHECK_EQ_INT(kv_seq_append(kv, s2, a, 12), 0);
    CHECK_EQ_INT(kv_seq_commit(kv, s1), 0);
    CHECK_EQ_INT(kv_seq_commit(kv, s2), 0);
    CHECK_EQ_INT(kv_lookup_prefix(kv, a, 12), 12);
    kv_seq_free(kv, s2);          /* s2's blocks cached, s1's in use */
    CHECK_EQ_INT(stats(kv).cached, 3);
    CHECK_EQ_INT(kv_blocks_needed(kv, a, 13), 4 - 2); /* prefers the in-use copies */
    uint32_t s3;
    CHECK_EQ_INT(kv_seq_create(kv, &s3), 0);
    CHECK_EQ_INT(kv_seq_attach_prefix(kv, s3, a, 12, &got), 0);
    CHECK_EQ_INT(got, 12);
    uint32_t n1, n3;
    const uint32_t *b1 = kv_seq_blocks(kv, s1, &n1), *b3 = kv_seq_blocks(kv, s3, &n3);
    CHECK_EQ_INT(b3[0], b1[0]);
    CHECK_EQ_INT(b3[1], b1[1]);
    CHECK_EQ_INT(kv_check(kv), 0);
    kv_destroy(kv);
}

static void fill_kv(kv_cache *kv, uint32_t block, uint32_t slot, float val)
{
    const kv_config *c = kv_get_config(kv);
    for (uint32_t l = 0; l < c->n_layer; l++)
        for (uint32_t h = 0; h < c->n_head_kv; h++)
            for (uint32_t d = 0; d < c->head_dim; d++) {
                ((float *)kv_block_k(kv, block, l, h))[slot * c->head_dim + d] = val + (float)d;
                ((float *)kv_block_v(kv, block, l, h))[slot * c->head_dim + d] = -val - (float)d;
            }
}

static int kv_matches(kv_cache *kv, uint32_t block, uint32_t slot, float val)
{
    const kv_config *c = kv_get_config(kv);
    for (uint32_t l = 0; l < c->n_layer; l++)
        for (uint32_t h = 0; h < c->n_head_kv; h++)
            for (uint32_t d = 0; d < c->head_dim; d++) {
                if (((float *)kv_block_k(kv, block, l, h))[slot * c->head_dim + d] != val + (float)d)
                    return 0;
                if (((float *)kv_block_v(kv, block, l, h))[slot * c->head_dim + d] != -val - (float)d)
                    return 0;
            }
    return 1;
}

static void test_fork_cow(void)
{
    kv_cache *kv = make(4, 8);
    int32_t a[16];
    seqtoks(a, 16, 1);
    uint32_t p, ch, nb, nc;
    CHECK_EQ_INT(kv_seq_create(kv, &p), 0);
    CHECK_EQ_INT(kv_seq_append(kv, p, a, 6), 0);
    CHECK_EQ_INT(kv_seq_fork(kv, p, &ch), -EBUSY); /* K/V not written yet */
    const uint32_t *bp = kv_seq_blocks(kv, p, &nb);
    for (uint32_t i = 0; i < 6; i++) fill_kv(kv, bp[i / 4], i % 4, 10.0f * (float)i);
    CHECK_EQ_INT(kv_seq_commit(kv, p), 0);
    CHECK_EQ_INT(kv_seq_fork(kv, p, &ch), 0);
    CHECK_EQ_INT(kv_seq_len(kv, ch), 6);
    CHECK_EQ_INT(kv_seq_committed(kv, ch), 6);
    bp = kv_seq_blocks(kv, p, &nb);
    const uint32_t *bc = kv_seq_blocks(kv, ch, &nc);
    CHECK_EQ_INT(nc, 2);
    CHECK_EQ_INT(bc[0], bp[0]);
    CHECK_EQ_INT(bc[1], bp[1]);
    CHECK_EQ_INT(kv_block_refs(kv, bp[0]), 2);
    CHECK_EQ_INT(kv_block_refs(kv, bp[1]), 2);
    kv_stats st = stats(kv);
    CHECK_EQ_INT(st.used, 2);
    CHECK_EQ_INT(st.waste_slots, 2); /* the shared partial block counts once */
    CHECK_EQ_INT(st.tokens, 12);

    /* can_grow counts the copy */
    uint32_t old_last = bp[1];
    /* the last element of each slab of the shared block (unfilled slots, as the cache sees
     * it; but the engine orders a slab its own way -- its K is transposed, so slot 0 reaches
     * the slab's end -- and a copy must take whole slabs) */
    const kv_config *cfg = kv_get_config(kv);
    const size_t slab_end = (size_t)cfg->block_size * cfg->head_dim - 1;
    for (uint32_t l = 0; l < cfg->n_layer; l++)
        for (uint32_t h = 0; h < cfg->n_head_kv; h++) {
            ((float *)kv_block_k(kv, old_last, l, h))[slab_end] = 7.5f + (float)(l * 8 + h);
            ((float *)kv_block_v(kv, old_last, l, h))[slab_end] = -7.5f - (float)(l * 8 + h);
        }
    CHECK_EQ_INT(kv_blocks_available(kv), 6);
    CHECK(kv_can_grow(kv, ch, 2 + 4 * 5));      /* copy + 5 new blocks = 6 */
    CHECK(!kv_can_grow(kv, ch, 2 + 4 * 5 + 1)); /* 7 */

    /* the child's first append copies the shared partial block */
    CHECK_EQ_INT(kv_seq_append(kv, ch, a + 6, 1), 0);
    bc = kv_seq_blocks(kv, ch, &nc);
    bp = kv_seq_blocks(kv, p, &nb);
    CHECK_EQ_INT(bc[0], bp[0]);
    CHECK(bc[1] != old_last);
    CHECK_EQ_INT(bp[1], old_last);
    CHECK_EQ_INT(kv_block_refs(kv, old_last), 1);
    CHECK_EQ_INT(kv_block_refs(kv, bc[1]), 1);
    CHECK_EQ_INT(kv_block_refs(kv, bp[0]), 2);
    CHECK_EQ_INT(kv_block_fill(kv, bc[1]), 3);
    CHECK_EQ_INT(kv_block_fill(kv, old_last), 2);
    CHECK(kv_matches(kv, bc[1], 0, 40.0f));
    CHECK(kv_matches(kv, bc[1], 1, 50.0f));
    for (uint32_t l = 0; l < cfg->n_layer; l++)
        for (uint32_t h = 0; h < cfg->n_head_kv; h++) {
            CHECK(((float *)kv_block_k(kv, bc[1], l, h))[slab_end] == 7.5f + (float)(l * 8 + h));
            CHECK(((float *)kv_block_v(kv, bc[1], l, h))[slab_end] == -7.5f - (float)(l * 8 + h));
        }
    CHECK_EQ_INT(kv_block_tokens(kv, bc[1])[2], a[6]);
    fill_kv(kv, bc[1], 2, 999.0f);
    CHECK_EQ_INT(stats(kv).cow_copies, 1);

    /* the parent now owns its block alone and writes in place */
    CHECK_EQ_INT(kv_seq_append(kv, p, a + 6, 2), 0);
    bp = kv_seq_blocks(kv, p, &nb);
    CHECK_EQ_INT(bp[1], old_last);
    fill_kv(kv, bp[1], 2, 60.0f);
    CHECK(kv_matches(kv, bc[1], 2, 999.0f)); /* the child's copy is untouched */
    CHECK_EQ_INT(stats(kv).cow_copies, 1);

    /* a fork at a block boundary copies nothing */
    CHECK_EQ_INT(kv_seq_commit(kv, p), 0);
    uint32_t g;
    CHECK_EQ_INT(kv_seq_fork(kv, p, &g), 0);
    CHECK_EQ_INT(kv_seq_append(kv, g, a, 1), 0);
    CHECK_EQ_INT(stats(kv).cow_copies, 1);

    /* freeing the parent keeps shared blocks alive for the children */
    kv_seq_free(kv, p);
    CHECK_EQ_INT(kv_block_refs(kv, bc[0]), 2);
    CHECK(kv_matches(kv, bc[0], 1, 10.0f));
    kv_seq_free(kv, ch);
    kv_seq_free(kv, g);
    st = stats(kv);
    CHECK_EQ_INT(st.used, 0);
    CHECK_EQ_INT(st.cached, 2); /* p's two full committed blocks */

    /* fork fails cleanly without a slot */
    kv_destroy(kv);
    kv_config c = small_cfg(4, 8);
    c.max_seqs = 1;
    CHECK_EQ_INT(kv_create(&c, &kv), 0);
    p = run_seq(kv, a, 5);
    ch = 123;
    CHECK_EQ_INT(kv_seq_fork(kv, p, &ch), -ENOSPC);
    CHECK_EQ_INT(ch, 123);
    CHECK_EQ_INT(kv_block_refs(kv, kv_seq_blocks(kv, p, &nb)[0]), 1);
    kv_destroy(kv);
}

static void test_lru_eviction(void)
{
    kv_cache *kv = make(4, 8);
    int32_t a[32], b[32];
    seqtoks(a, 32, 100);
    seqtoks(b, 32, 900);
    uint32_t s = run_seq(kv, a, 16), nb;
    uint32_t blocks[4];
    memcpy(blocks, kv_seq_blocks(kv, s, &nb), sizeof blocks);
    uint32_t t = run_seq(kv, b, 16);
    kv_seq_free(kv, s);  /* LRU order: a3 a2 a1 a0 */
    kv_seq_free(kv, t);  /* then b3 b2 b1 b0 */
    kv_stats st = stats(kv);
    CHECK_EQ_INT(st.cached, 8);
    CHECK_EQ_INT(st.free, 0);
    CHECK_EQ_INT(kv_blocks_available(kv), 8);

    /* one new block evicts the tail of the first finished sequence */
    uint32_t u;
    int32_t x[4] = {-1, -2, -3, -4};
    CHECK_EQ_INT(kv_seq_create(kv, &u), 0);
    CHECK_EQ_INT(kv_seq_append(kv, u, x, 1), 0);
    CHECK_EQ_INT(kv_seq_blocks(kv, u, &nb)[0], blocks[3]);
    st = stats(kv);
    CHECK_EQ_INT(st.evictions, 1);
    CHECK_EQ_INT(st.cached, 7);
    CHECK_EQ_INT(kv_lookup_prefix(kv, a, 16), 12);
    CHECK_EQ_INT(kv_lookup_prefix(kv, b, 16), 16);
    /* reviving a cached prefix moves it out of the LRU; eviction then takes b's tail */
    uint32_t v, got;
    CHECK_EQ_INT(kv_seq_create(kv, &v), 0);
    CHECK_EQ_INT(kv_seq_attach_prefix(kv, v, a, 16, &got), 0);
    CHECK_EQ_INT(got, 12);
    CHECK_EQ_INT(kv_seq_append(kv, u, x + 1, 3), 0);
    CHECK_EQ_INT(kv_seq_append(kv, u, x, 4), 0);  /* one more block: evicts b3 */
    CHECK_EQ_INT(kv_lookup_prefix(kv, b, 16), 12);
    CHECK_EQ_INT(kv_lookup_prefix(kv, a, 12), 12);
    st = stats(kv);
    CHECK_EQ_INT(st.evictions, 2);
    CHECK_EQ_INT(st.used, 5);
    CHECK_EQ_INT(st.cached, 3);
    /* an evicted then re-published prefix is found again */
    CHECK_EQ_INT(kv_seq_commit(kv, u), 0);
    int32_t ux[8] = {-1, -2, -3, -4, -1, -2, -3, -4};
    CHECK_EQ_INT(kv_lookup_prefix(kv, ux, 8), 8);
    kv_destroy(kv);
}

static void test_capacity(void)
{
    kv_cache *kv = make(4, 10);
    int32_t a[40];
    seqtoks(a, 40, 3);
    CHECK_EQ_INT(kv_blocks_needed(kv, a, 0), 0);
    CHECK_EQ_INT(kv_blocks_needed(kv, a, 1), 1);
    CHECK_EQ_INT(kv_blocks_needed(kv, a, 9), 3);
    CHECK_EQ_INT(kv_blocks_needed(kv, NULL, 9), 3);
    uint32_t s = run_seq(kv, a, 12);
    /* in-use hits cost nothing; the last token is always computed */
    CHECK_EQ_INT(kv_blocks_needed(kv, a, 12), 3 - 2);
    CHECK_EQ_INT(kv_blocks_needed(kv, a, 13), 4 - 3);
    CHECK_EQ_INT(kv_blocks_needed(kv, a, 14), 4 - 3);
    kv_seq_free(kv, s);
    /* cached hits are taken from the pool, so they count */
    CHECK_EQ_INT(kv_blocks_needed(kv, a, 13), 4);
    CHECK_EQ_INT(kv_blocks_available(kv), 10);
    kv_stats before = stats(kv);
    CHECK_EQ_INT(before.cached, 3);
    /* no side effects */
    CHECK_EQ_INT(before.lookup_tokens, 0);
    /* admission of 13 tokens: attach 12, append 1 */
    uint32_t t, got;
    CHECK_EQ_INT(kv_seq_create(kv, &t), 0);
    CHECK_EQ_INT(kv_seq_attach_prefix(kv, t, a, 12, &got), 0);
    CHECK_EQ_INT(got, 12);
    CHECK_EQ_INT(kv_seq_append(kv, t, a + 12, 1), 0);
    CHECK_EQ_INT(kv_blocks_available(kv), 10 - 4);
    kv_stats st = stats(kv);
    CHECK_EQ_INT(st.lookup_tokens, 12);
    CHECK_EQ_INT(st.hit_tokens, 12);
    CHECK_EQ_INT(st.waste_slots, 3);
    CHECK_EQ_INT(st.n_seqs, 1);
    CHECK_EQ_INT(st.tokens, 13);
    kv_destroy(kv);
}

static void test_waste(void)
{
    kv_cache *kv = make(4, 40);
    int32_t a[64];
    seqtoks(a, 64, 0);
    uint32_t lens[5] = {1, 4, 7, 9, 22}, ids[5];
    uint64_t waste = 0, used = 0;
    for (int i = 0; i < 5; i++) {
        CHECK_EQ_INT(kv_seq_create(kv, &ids[i]), 0);
        a[0] = 1000 + i;
        CHECK_EQ_INT(kv_seq_append(kv, ids[i], a, lens[i]), 0);
        used += (lens[i] + 3) / 4;
        waste += (lens[i] + 3) / 4 * 4 - lens[i];
    }
    kv_stats st = stats(kv);
    CHECK_EQ_INT(st.used, used);
    CHECK_EQ_INT(st.waste_slots, waste);
    CHECK_EQ_INT(st.waste_bytes, waste * st.bytes_per_token);
    double pct = 100.0 * (double)waste / (double)(used * 4);
    CHECK(st.waste_pct > pct - 1e-9 && st.waste_pct < pct + 1e-9);
    CHECK(st.waste_slots < (uint64_t)st.n_seqs * st.block_size);
    kv_destroy(kv);
}

int main(void)
{
    test_create();
    test_layout();
    test_prefault();
    test_seq_slots();
    test_append();
    test_prefix_cache();
    test_duplicates();
    test_fork_cow();
    test_lru_eviction();
    test_capacity();
    test_waste();
    printf("kvcache unit tests passed\n");
    return 0;
}
