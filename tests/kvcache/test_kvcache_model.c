/* Randomized model check of kvcache against a simple reference model.
 *
 * The test plays the engine: it admits prompts (attach the cached prefix, append the rest),
 * appends decode tokens, "runs the forward pass" by writing into every K/V slot a fingerprint
 * of the exact token prefix ending at that position, commits, forks and frees, at random and
 * from fixed seeds. After every operation it checks against the reference model (the token
 * list and committed length of every sequence) that:
 *   - ref counts equal the number of block tables holding each block, the used/cached/free
 *     totals add up, and no block is both free and owned (kv_check, plus our own count);
 *   - every committed position of every sequence reads back the fingerprint of its own token
 *     prefix (so a cache hit, fork or copy-on-write never shares K/V across different
 *     prefixes), and every recorded token id is right;
 *   - every cache hit covers a token prefix that some sequence committed before;
 *   - admission takes exactly kv_blocks_needed blocks and fails exactly when that is more than
 *     kv_blocks_available; kv_can_grow predicts kv_seq_append; failures change nothing;
 *   - waste equals the slots left in distinct used blocks and stays under one block per
 *     sequence.
 * Built twice: against the normal library, and against one whose prefix hash keeps only 3 bits
 * (every lookup walks colliding entries), to prove matches are checked against the tokens. */
#include "kvcache.h"
#include "testutil.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

/* ---- deterministic RNG ---- */

static uint64_t rng_state;
static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint32_t rnd_below(uint32_t n) { return n ? (uint32_t)(rnd() % n) : 0; }

static uint64_t fp_step(uint64_t prev, int32_t tok)
{
    uint64_t z = prev ^ ((uint64_t)(uint32_t)tok * 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 29)) * 0xBF58476D1CE4E5B9ull;
    return z ^ (z >> 32);
}
#define FP_ROOT 0x1234567890abcdefull

/* ---- a set of committed-prefix fingerprints (test side, may allocate) ---- */

typedef struct { uint64_t *v; size_t cap, n; } fpset;
static void fpset_add(fpset *s, uint64_t x)
{
    if (x == 0) x = 1;
    if (2 * (s->n + 1) > s->cap) {
        fpset t = {calloc(s->cap ? s->cap * 2 : 1024, sizeof(uint64_t)), s->cap ? s->cap * 2 : 1024, 0};
        CHECK(t.v != NULL);
        for (size_t i = 0; i < s->cap; i++)
            if (s->v[i]) fpset_add(&t, s->v[i]);
        free(s->v);
        *s = t;
    }
    size_t i = x & (s->cap - 1);
    while (s->v[i] && s->v[i] != x) i = (i + 1) & (s->cap - 1);
    if (!s->v[i]) { s->v[i] = x; s->n++; }
}
static int fpset_has(const fpset *s, uint64_t x)
{
    if (x == 0) x = 1;
    if (s->cap == 0) return 0;
    size_t i = x & (s->cap - 1);
    while (s->v[i]) {
        if (s->v[i] == x) return 1;
        i = (i + 1) & (s->cap - 1);
    }
    return 0;
}

/* ---- reference model ---- */

typedef struct {
    int live;
    uint32_t len, committed;
    int32_t *tok;   /* max_seq_len */
    uint64_t *fp;   /* fp[p] = fingerprint of tok[0..p] */
    int doc;        /* which document it follows (-1 = random tokens) */
} ref_seq;

#define N_DOCS 4

typedef struct {
    kv_cache *kv;
    kv_config cfg;
    uint32_t bs, esz;
    ref_seq *seqs;
    int32_t *docs[N_DOCS];
    fpset committed;
    uint32_t *count;   /* scratch: n_blocks */
    uint32_t *fillmax; /* scratch: n_blocks */
    int32_t *scratch;  /* scratch tokens: max_seq_len */
    uint64_t n_ops, n_hits, n_cow_checks, n_enospc, n_evict_hits;
} world;

static uint64_t slot_tag(uint64_t fp, uint32_t l, uint32_t h, uint32_t v)
{
    return fp ^ ((uint64_t)l * 0x100000001b3ull + (uint64_t)h * 0x3c6ef372ull + v * 0xabcdefull + 1);
}

static unsigned char *slot_ptr(world *w, uint32_t block, uint32_t l, uint32_t h, uint32_t v,
                               uint32_t slot)
{
    unsigned char *base = v ? kv_block_v(w->kv, block, l, h) : kv_block_k(w->kv, block, l, h);
    CHECK(base != NULL);
    return base + (size_t)slot * w->cfg.head_dim * w->esz;
}

static void fingerprints(ref_seq *r, uint32_t from)
{
    for (uint32_t p = from; p < r->len; p++)
        r->fp[p] = fp_step(p ? r->fp[p - 1] : FP_ROOT, r->tok[p]);
}

/* The engine's forward pass: K/V of r's uncommitted tokens, then commit. */
static void forward_and_commit(world *w, uint32_t s)
{
    ref_seq *r = &w->seqs[s];
    uint32_t nb;
    const uint32_t *bl = kv_seq_blocks(w->kv, s, &nb);
    for (uint32_t p = r->committed; p < r->len; p++)
        for (uint32_t l = 0; l < w->cfg.n_layer; l++)
            for (uint32_t h = 0; h < w->cfg.n_head_kv; h++)
                for (uint32_t v = 0; v < 2; v++) {
                    uint64_t tag = slot_tag(r->fp[p], l, h, v);
                    memcpy(slot_ptr(w, bl[p / w->bs], l, h, v, p % w->bs), &tag, 8);
                }
    CHECK_EQ_INT(kv_seq_commit(w->kv, s), 0);
    r->committed = r->len;
    for (uint32_t k = 1; k * w->bs <= r->len; k++) fpset_add(&w->committed, r->fp[k * w->bs - 1]);
    /* its own full blocks are published and found at once */
    CHECK_EQ_INT(kv_lookup_prefix(w->kv, r->tok, r->len), r->len / w->bs * w->bs);
}

static void check_all(world *w)
{
    const kv_config *c = &w->cfg;
    kv_stats st;
    kv_get_stats(w->kv, &st);
    CHECK_EQ_INT(kv_check(w->kv), 0);
    CHECK_EQ_INT(st.used + st.cached + st.free, st.n_blocks);
    memset(w->count, 0, st.n_blocks * sizeof(uint32_t));
    memset(w->fillmax, 0, st.n_blocks * sizeof(uint32_t));
    uint32_t n_seqs = 0;
    uint64_t tokens = 0;
    for (uint32_t s = 0; s < c->max_seqs; s++) {
        ref_seq *r = &w->seqs[s];
        CHECK_EQ_INT(kv_seq_valid(w->kv, s), r->live);
        if (!r->live) continue;
        n_seqs++;
        tokens += r->len;
        CHECK_EQ_INT(kv_seq_len(w->kv, s), r->len);
        CHECK_EQ_INT(kv_seq_committed(w->kv, s), r->committed);
        uint32_t nb;
        const uint32_t *bl = kv_seq_blocks(w->kv, s, &nb);
        CHECK_EQ_INT(nb, (r->len + w->bs - 1) / w->bs);
        for (uint32_t i = 0; i < nb; i++) {
            CHECK(bl[i] < st.n_blocks);
            w->count[bl[i]]++;
            uint32_t f = r->len - i * w->bs < w->bs ? r->len - i * w->bs : w->bs;
            if (f > w->fillmax[bl[i]]) w->fillmax[bl[i]] = f;
        }
        for (uint32_t p = 0; p < r->len; p++) {
            CHECK_EQ_INT(kv_block_tokens(w->kv, bl[p / w->bs])[p % w->bs], r->tok[p]);
            if (p >= r->committed) continue;
            for (uint32_t l = 0; l < c->n_layer; l++)
                for (uint32_t h = 0; h < c->n_head_kv; h++)
                    for (uint32_t v = 0; v < 2; v++) {
                        uint64_t got;
                        memcpy(&got, slot_ptr(w, bl[p / w->bs], l, h, v, p % w->bs), 8);
                        CHECK_MSG(got == slot_tag(r->fp[p], l, h, v),
                                  "seq %u pos %u layer %u head %u %c: K/V of another prefix",
                                  s, p, l, h, v ? 'V' : 'K');
                    }
        }
    }
    CHECK_EQ_INT(st.n_seqs, n_seqs);
    CHECK_EQ_INT(st.tokens, tokens);
    uint32_t used = 0;
    uint64_t waste = 0;
    for (uint32_t b = 0; b < st.n_blocks; b++) {
        CHECK_MSG(kv_block_refs(w->kv, b) == w->count[b], "block %u: ref %u, held by %u tables",
                  b, kv_block_refs(w->kv, b), w->count[b]);
        if (w->count[b]) {
            used++;
            waste += w->bs - w->fillmax[b];
            CHECK_EQ_INT(kv_block_fill(w->kv, b), w->fillmax[b]);
        }
    }
    CHECK_EQ_INT(st.used, used);
    CHECK_EQ_INT(st.waste_slots, waste);
    CHECK(n_seqs == 0 ? waste == 0 : waste < (uint64_t)n_seqs * w->bs);
}

static int pick_live(world *w, uint32_t *ret)
{
    uint32_t n = w->cfg.max_seqs, start = rnd_below(n);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t s = (start + i) % n;
        if (w->seqs[s].live) { *ret = s; return 1; }
    }
    return 0;
}

/* Tokens that continue a sequence: mostly its document, sometimes a divergence. */
static int32_t next_token(world *w, int doc, uint32_t pos)
{
    if (doc >= 0 && rnd_below(20) != 0) return w->docs[doc][pos];
    return (int32_t)rnd_below(50); /* small alphabet: random blocks sometimes repeat */
}

static int stats_equal(const kv_stats *a, const kv_stats *b)
{
    return a->used == b->used && a->cached == b->cached && a->free == b->free &&
           a->n_seqs == b->n_seqs && a->tokens == b->tokens && a->waste_slots == b->waste_slots &&
           a->lookup_tokens == b->lookup_tokens && a->hit_tokens == b->hit_tokens &&
           a->evictions == b->evictions && a->cow_copies == b->cow_copies;
}

static void op_admit(world *w)
{
    uint32_t n = 1 + rnd_below(w->cfg.max_seq_len);
    int doc = rnd_below(5) == 0 ? -1 : (int)rnd_below(N_DOCS);
    int32_t *prompt = w->scratch;
    for (uint32_t p = 0; p < n; p++) prompt[p] = next_token(w, doc, p);

    uint32_t predicted = kv_blocks_needed(w->kv, prompt, n);
    uint32_t avail = kv_blocks_available(w->kv);
    uint32_t expect_hit = kv_lookup_prefix(w->kv, prompt, n - 1);
    uint32_t s;
    int rc = kv_seq_create(w->kv, &s);
    if (rc == -ENOSPC) return;
    CHECK_EQ_INT(rc, 0);
    ref_seq *r = &w->seqs[s];
    CHECK(!r->live);
    uint32_t cached = 12345;
    CHECK_EQ_INT(kv_seq_attach_prefix(w->kv, s, prompt, n - 1, &cached), 0);
    CHECK_EQ_INT(cached, expect_hit);
    CHECK(cached % w->bs == 0 && cached <= n - 1);
    r->live = 1;
    r->doc = doc;
    memcpy(r->tok, prompt, n * sizeof(int32_t));
    r->len = n;
    fingerprints(r, 0);
    r->len = r->committed = cached;
    if (cached > 0) {
        CHECK_MSG(fpset_has(&w->committed, r->fp[cached - 1]),
                  "cache hit of %u tokens on a prefix nobody committed", cached);
        w->n_hits++;
    }
    kv_stats before;
    kv_get_stats(w->kv, &before);
    bool can = kv_can_grow(w->kv, s, n - cached);
    rc = kv_seq_append(w->kv, s, prompt + cached, n - cached);
    CHECK_EQ_INT(can, rc == 0);
    if (predicted <= avail) {
        CHECK_MSG(rc == 0, "admission failed (%d) though %u blocks needed, %u available", rc,
                  predicted, avail);
        CHECK_EQ_INT(avail - kv_blocks_available(w->kv), predicted);
        r->len = n;
        if (rnd_below(4) != 0) forward_and_commit(w, s);
    } else {
        CHECK_EQ_INT(rc, -ENOSPC);
        kv_stats after;
        kv_get_stats(w->kv, &after);
        CHECK(stats_equal(&before, &after));
        w->n_enospc++;
        kv_seq_free(w->kv, s); /* the scheduler backs off */
        r->live = 0;
    }
}

static void op_append(world *w)
{
    uint32_t s;
    if (!pick_live(w, &s)) return;
    ref_seq *r = &w->seqs[s];
    uint32_t n = rnd_below(3) == 0 ? 1 + rnd_below(3 * w->bs + 2) : 1;
    int32_t *t = w->scratch;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t pos = r->len + i;
        t[i] = pos < w->cfg.max_seq_len ? next_token(w, r->doc, pos) : 0;
    }
    uint32_t nb0;
    const uint32_t *bl = kv_seq_blocks(w->kv, s, &nb0);
    uint32_t last0 = nb0 ? bl[nb0 - 1] : KV_NO_BLOCK;
    kv_stats before;
    kv_get_stats(w->kv, &before);
    bool can = kv_can_grow(w->kv, s, n);
    int rc = kv_seq_append(w->kv, s, t, n);
    CHECK_EQ_INT(can, rc == 0);
    if (r->len + n > w->cfg.max_seq_len) {
        CHECK_EQ_INT(rc, -E2BIG);
    } else if (rc != 0) {
        CHECK_EQ_INT(rc, -ENOSPC);
        w->n_enospc++;
    }
    if (rc != 0) {
        kv_stats after;
        kv_get_stats(w->kv, &after);
        CHECK(stats_equal(&before, &after));
        uint32_t nb1;
        bl = kv_seq_blocks(w->kv, s, &nb1);
        CHECK_EQ_INT(nb1, nb0);
        CHECK(nb1 == 0 || bl[nb1 - 1] == last0);
        return;
    }
    kv_stats after;
    kv_get_stats(w->kv, &after);
    if (after.cow_copies != before.cow_copies) w->n_cow_checks++;
    memcpy(r->tok + r->len, t, n * sizeof(int32_t));
    uint32_t from = r->len;
    r->len += n;
    fingerprints(r, from);
    if (rnd_below(3) != 0) forward_and_commit(w, s);
}

static void op_commit(world *w)
{
    uint32_t s;
    if (pick_live(w, &s)) forward_and_commit(w, s);
}

static void op_fork(world *w)
{
    uint32_t s, c = 777;
    if (!pick_live(w, &s)) return;
    ref_seq *r = &w->seqs[s];
    int rc = kv_seq_fork(w->kv, s, &c);
    if (r->committed != r->len) {
        CHECK_EQ_INT(rc, -EBUSY);
        CHECK_EQ_INT(c, 777);
        return;
    }
    if (rc == -ENOSPC) return;
    CHECK_EQ_INT(rc, 0);
    ref_seq *ch = &w->seqs[c];
    CHECK(!ch->live);
    ch->live = 1;
    ch->len = r->len;
    ch->committed = r->committed;
    ch->doc = rnd_below(2) ? r->doc : -1; /* the child may diverge */
    memcpy(ch->tok, r->tok, r->len * sizeof(int32_t));
    memcpy(ch->fp, r->fp, r->len * sizeof(uint64_t));
}

static void op_free(world *w)
{
    uint32_t s;
    if (!pick_live(w, &s)) return;
    kv_seq_free(w->kv, s);
    w->seqs[s].live = 0;
}

static void op_lookup(world *w)
{
    uint32_t n = rnd_below(w->cfg.max_seq_len + 1);
    int doc = (int)rnd_below(N_DOCS);
    for (uint32_t p = 0; p < n; p++) w->scratch[p] = next_token(w, doc, p);
    kv_stats before, after;
    kv_get_stats(w->kv, &before);
    uint32_t c = kv_lookup_prefix(w->kv, w->scratch, n);
    uint32_t need = kv_blocks_needed(w->kv, w->scratch, n);
    kv_get_stats(w->kv, &after);
    CHECK(stats_equal(&before, &after));
    CHECK(c % w->bs == 0 && c <= n);
    CHECK(need <= (n + w->bs - 1) / w->bs);
    if (c > 0) {
        uint64_t f = FP_ROOT;
        for (uint32_t p = 0; p < c; p++) f = fp_step(f, w->scratch[p]);
        CHECK_MSG(fpset_has(&w->committed, f), "lookup hit on a prefix nobody committed");
    }
}

static void run(const char *name, kv_config cfg, uint32_t n_blocks, uint64_t seed, uint32_t n_ops)
{
    world w;
    memset(&w, 0, sizeof w);
    rng_state = seed;
    w.esz = cfg.dtype == KV_F16 ? 2 : 4;
    w.bs = cfg.block_size;
    CHECK(cfg.head_dim * w.esz >= 8); /* room for a fingerprint per slot */
    cfg.budget_bytes = (uint64_t)n_blocks * w.bs * 2 * cfg.n_layer * cfg.n_head_kv * cfg.head_dim * w.esz
                       + rnd_below(100);
    w.cfg = cfg;
    CHECK_EQ_INT(kv_create(&cfg, &w.kv), 0);
    kv_stats st;
    kv_get_stats(w.kv, &st);
    CHECK_EQ_INT(st.n_blocks, n_blocks);
    w.seqs = calloc(cfg.max_seqs, sizeof(ref_seq));
    for (uint32_t s = 0; s < cfg.max_seqs; s++) {
        w.seqs[s].tok = calloc(cfg.max_seq_len, sizeof(int32_t));
        w.seqs[s].fp = calloc(cfg.max_seq_len, sizeof(uint64_t));
    }
    for (int d = 0; d < N_DOCS; d++) {
        w.docs[d] = calloc(cfg.max_seq_len, sizeof(int32_t));
        /* documents share beginnings: doc d copies doc d-1 for a while */
        for (uint32_t p = 0; p < cfg.max_seq_len; p++)
            w.docs[d][p] = (d > 0 && p < cfg.max_seq_len / (uint32_t)(d + 1)) ? w.docs[d - 1][p]
                                                                           : (int32_t)rnd_below(1000);
    }
    w.count = calloc(n_blocks, sizeof(uint32_t));
    w.fillmax = calloc(n_blocks, sizeof(uint32_t));
    w.scratch = calloc(cfg.max_seq_len + 3 * w.bs + 2, sizeof(int32_t));

    for (uint32_t i = 0; i < n_ops; i++) {
        uint32_t op = rnd_below(100);
        if (op < 22) op_admit(&w);
        else if (op < 52) op_append(&w);
        else if (op < 60) op_commit(&w);
        else if (op < 70) op_fork(&w);
        else if (op < 85) op_free(&w);
        else op_lookup(&w);
        check_all(&w);
        w.n_ops++;
    }
    kv_get_stats(w.kv, &st);
    printf("%-28s seed %-6llu ops %u: hits %llu (hit tokens %llu / %llu), evictions %llu, "
           "cow %llu, enospc %llu\n",
           name, (unsigned long long)seed, n_ops, (unsigned long long)w.n_hits,
           (unsigned long long)st.hit_tokens, (unsigned long long)st.lookup_tokens,
           (unsigned long long)st.evictions, (unsigned long long)st.cow_copies,
           (unsigned long long)w.n_enospc);
    /* the run exercised what it is meant to */
    CHECK(w.n_hits > 0 && st.evictions > 0 && w.n_enospc > 0);
    CHECK(w.bs == 1 || st.cow_copies > 0); /* with one-token blocks nothing is partly filled */

    for (uint32_t s = 0; s < cfg.max_seqs; s++) {
        if (w.seqs[s].live) kv_seq_free(w.kv, s);
        free(w.seqs[s].tok);
        free(w.seqs[s].fp);
    }
    kv_get_stats(w.kv, &st);
    CHECK_EQ_INT(st.used, 0);
    CHECK_EQ_INT(st.n_seqs, 0);
    CHECK_EQ_INT(kv_check(w.kv), 0);
    for (int d = 0; d < N_DOCS; d++) free(w.docs[d]);
    free(w.seqs);
    free(w.count);
    free(w.fillmax);
    free(w.scratch);
    free(w.committed.v);
    kv_destroy(w.kv);
}

static kv_config cfg_of(uint32_t bs, kv_dtype dt, uint32_t head_dim, uint32_t max_seqs, uint32_t max_len)
{
    kv_config c;
    memset(&c, 0, sizeof c);
    c.n_layer = 2;
    c.n_head_kv = 2;
    c.head_dim = head_dim;
    c.block_size = bs;
    c.dtype = dt;
    c.salt = 0xfeed;
    c.max_seqs = max_seqs;
    c.max_seq_len = max_len;
    return c;
}

int main(void)
{
    static const uint64_t seeds[] = {1, 2, 3};
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        run("bs4 f32 24 blocks", cfg_of(4, KV_F32, 2, 8, 64), 24, seeds[i], 8000);
        run("bs1 f16 40 blocks", cfg_of(1, KV_F16, 4, 6, 40), 40, seeds[i] + 100, 4000);
        run("bs16 f16 24 blocks", cfg_of(16, KV_F16, 4, 8, 130), 24, seeds[i] + 200, 4000);
        run("bs2 f32 12 blocks 3 seqs", cfg_of(2, KV_F32, 2, 3, 20), 12, seeds[i] + 300, 4000);
    }
    printf("kvcache model check passed\n");
    return 0;
}
