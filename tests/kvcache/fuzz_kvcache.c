/* libFuzzer target: the input is a small kvcache configuration followed by a program of
 * operations (create+attach+append, append, commit, fork, free, lookup). After every operation
 * the cache must pass kv_check, agree with a tiny reference model (lengths, token ids, ref
 * counts, the K/V fingerprint of every committed position), and keep the capacity contract
 * (kv_can_grow predicts kv_seq_append; admission takes exactly kv_blocks_needed blocks).
 * Any disagreement aborts. */
#include "kvcache.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SEQS 8
#define MAX_LEN 64

#define REQUIRE(c) do { if (!(c)) abort(); } while (0)

typedef struct {
    int live;
    uint32_t len, committed;
    int32_t tok[MAX_LEN];
    uint64_t fp[MAX_LEN];
} ref_seq;

static uint64_t fp_step(uint64_t prev, int32_t tok)
{
    uint64_t z = prev ^ ((uint64_t)(uint32_t)tok * 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 29)) * 0xBF58476D1CE4E5B9ull;
    return z ^ (z >> 32);
}

typedef struct {
    const uint8_t *p;
    size_t n;
} input;

static uint8_t next(input *in)
{
    if (in->n == 0) return 0;
    in->n--;
    return *in->p++;
}

static kv_cache *kv;
static ref_seq seqs[MAX_SEQS];
static uint32_t bs, max_len, max_seqs;

static void set_fps(ref_seq *r, uint32_t from, uint32_t to)
{
    for (uint32_t p = from; p < to; p++) r->fp[p] = fp_step(p ? r->fp[p - 1] : 1, r->tok[p]);
}

static void commit(uint32_t s)
{
    ref_seq *r = &seqs[s];
    uint32_t nb;
    const uint32_t *bl = kv_seq_blocks(kv, s, &nb);
    for (uint32_t p = r->committed; p < r->len; p++) {
        uint64_t *slot = (uint64_t *)kv_block_k(kv, bl[p / bs], 0, 0) + (p % bs);
        memcpy(slot, &r->fp[p], 8);
    }
    REQUIRE(kv_seq_commit(kv, s) == 0);
    r->committed = r->len;
}

static void check(void)
{
    REQUIRE(kv_check(kv) == 0);
    uint32_t count[64] = {0};
    kv_stats st;
    kv_get_stats(kv, &st);
    for (uint32_t s = 0; s < max_seqs; s++) {
        ref_seq *r = &seqs[s];
        REQUIRE(kv_seq_valid(kv, s) == (r->live != 0));
        if (!r->live) continue;
        REQUIRE(kv_seq_len(kv, s) == r->len && kv_seq_committed(kv, s) == r->committed);
        uint32_t nb;
        const uint32_t *bl = kv_seq_blocks(kv, s, &nb);
        for (uint32_t i = 0; i < nb; i++) count[bl[i]]++;
        for (uint32_t p = 0; p < r->len; p++) {
            REQUIRE(kv_block_tokens(kv, bl[p / bs])[p % bs] == r->tok[p]);
            if (p < r->committed) {
                uint64_t got;
                memcpy(&got, (uint64_t *)kv_block_k(kv, bl[p / bs], 0, 0) + (p % bs), 8);
                REQUIRE(got == r->fp[p]);
            }
        }
    }
    for (uint32_t b = 0; b < st.n_blocks; b++) REQUIRE(kv_block_refs(kv, b) == count[b]);
}

static int pick(input *in, uint32_t *ret)
{
    uint32_t start = next(in) % max_seqs;
    for (uint32_t i = 0; i < max_seqs; i++) {
        uint32_t s = (start + i) % max_seqs;
        if (seqs[s].live) { *ret = s; return 1; }
    }
    return 0;
}

/* Token ids from the input: small values so that prefixes repeat. */
static void read_tokens(input *in, int32_t *t, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) t[i] = next(in) & 7;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    input in = {data, size};
    uint8_t c0 = next(&in), c1 = next(&in), c2 = next(&in);
    bs = 1u << (c0 & 3);                  /* 1, 2, 4, 8 */
    uint32_t n_blocks = 2 + (c1 % 30);    /* 2..31 (< 64) */
    max_seqs = 1 + (c2 & 7);
    max_len = 1 + (uint32_t)((c2 >> 3) % MAX_LEN);
    kv_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.n_layer = 1;
    cfg.n_head_kv = 1;
    cfg.head_dim = 2;                     /* f32: 8 bytes per slot = one fingerprint */
    cfg.dtype = KV_F32;
    cfg.block_size = bs;
    cfg.budget_bytes = (uint64_t)n_blocks * bs * 2 * 2 * 4 + (c0 >> 2);
    cfg.max_seqs = max_seqs;
    cfg.max_seq_len = max_len;
    cfg.salt = c1;
    if (kv_create(&cfg, &kv) != 0) abort();
    memset(seqs, 0, sizeof seqs);

    int32_t t[MAX_LEN + 16];
    while (in.n > 0) {
        uint8_t op = next(&in);
        uint32_t s;
        switch (op % 6) {
        case 0: { /* admit a prompt */
            uint32_t n = 1 + next(&in) % max_len;
            read_tokens(&in, t, n);
            uint32_t need = kv_blocks_needed(kv, t, n), avail = kv_blocks_available(kv);
            if (kv_seq_create(kv, &s) != 0) break;
            uint32_t got;
            REQUIRE(kv_seq_attach_prefix(kv, s, t, n - 1, &got) == 0);
            REQUIRE(got % bs == 0 && got <= n - 1);
            ref_seq *r = &seqs[s];
            memcpy(r->tok, t, n * sizeof(int32_t));
            set_fps(r, 0, n);
            r->live = 1;
            r->len = r->committed = got;
            int rc = kv_seq_append(kv, s, t + got, n - got);
            if (need <= avail) {
                REQUIRE(rc == 0 && avail - kv_blocks_available(kv) == need);
                r->len = n;
                if (op & 0x80) commit(s);
            } else {
                REQUIRE(rc == -ENOSPC);
                kv_seq_free(kv, s);
                r->live = 0;
            }
            break;
        }
        case 1: { /* append */
            if (!pick(&in, &s)) break;
            ref_seq *r = &seqs[s];
            uint32_t n = 1 + next(&in) % 12;
            read_tokens(&in, t, n);
            int can = kv_can_grow(kv, s, n);
            int rc = kv_seq_append(kv, s, t, n);
            REQUIRE(can == (rc == 0));
            if (r->len + n > max_len) REQUIRE(rc == -E2BIG);
            else REQUIRE(rc == 0 || rc == -ENOSPC);
            if (rc == 0) {
                memcpy(r->tok + r->len, t, n * sizeof(int32_t));
                set_fps(r, r->len, r->len + n);
                r->len += n;
                if (op & 0x80) commit(s);
            }
            break;
        }
        case 2:
            if (pick(&in, &s)) commit(s);
            break;
        case 3: { /* fork */
            if (!pick(&in, &s)) break;
            uint32_t ch;
            int rc = kv_seq_fork(kv, s, &ch);
            if (seqs[s].committed != seqs[s].len) { REQUIRE(rc == -EBUSY); break; }
            if (rc == -ENOSPC) break;
            REQUIRE(rc == 0 && !seqs[ch].live);
            seqs[ch] = seqs[s];
            break;
        }
        case 4:
            if (pick(&in, &s)) {
                kv_seq_free(kv, s);
                seqs[s].live = 0;
            }
            break;
        case 5: { /* lookup: a hit must match a live or cached prefix; no side effects */
            uint32_t n = next(&in) % (max_len + 1);
            read_tokens(&in, t, n);
            kv_stats a, b;
            kv_get_stats(kv, &a);
            uint32_t hit = kv_lookup_prefix(kv, t, n);
            (void)kv_blocks_needed(kv, t, n);
            kv_get_stats(kv, &b);
            REQUIRE(hit % bs == 0 && hit <= n);
            REQUIRE(a.used == b.used && a.cached == b.cached && a.lookup_tokens == b.lookup_tokens);
            break;
        }
        }
        check();
    }
    for (uint32_t s = 0; s < max_seqs; s++)
        if (seqs[s].live) kv_seq_free(kv, s);
    kv_stats st;
    kv_get_stats(kv, &st);
    REQUIRE(st.used == 0 && st.n_seqs == 0);
    kv_destroy(kv);
    kv = NULL;
    return 0;
}
