/* Byte-level BPE encoding of one text fragment: lenient UTF-8 decode (an invalid byte becomes
 * U+FFFD, as llama.cpp reads text), pre-tokenization into words, then per word the merges in
 * rank order (lowest rank first, leftmost first among equal ranks) over a linked list of
 * symbols with a binary heap of candidate pairs. Symbols start as single bytes (each byte is
 * one byte-level character); a pair's rank and result come from one hash lookup on the two
 * symbol ids, so no strings are built while merging. */
#include <errno.h>
#include <stdlib.h>

#include "tok_internal.h"
#include "unicode_data.h"

typedef struct sym {
    uint32_t start, len; /* bytes of the word */
    int32_t id;          /* string index, -1 if the text is unknown */
    int32_t prev, next;
} sym;

typedef struct bigram {
    int32_t rank;
    uint32_t left, right;
    uint32_t size;
    int32_t result;
} bigram;

typedef struct scratch {
    sym *syms;
    size_t sym_cap;
    bigram *heap;
    size_t heap_n, heap_cap;
    char *wbuf; /* the word's bytes */
    size_t wcap;
    char *ebuf; /* the word in byte-level characters */
    size_t ecap;
} scratch;

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *np = realloc(*p, c * elem);
    if (np == NULL)
        return -ENOMEM;
    *p = np;
    *cap = c;
    return 0;
}

static inline bool bg_less(const bigram *a, const bigram *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void heap_push(scratch *s, bigram b)
{
    size_t i = s->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bg_less(&b, &s->heap[p]))
            break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = b;
}

static bigram heap_pop(scratch *s)
{
    bigram top = s->heap[0];
    bigram last = s->heap[--s->heap_n];
    size_t i = 0, n = s->heap_n;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n)
            break;
        size_t m = (l + 1 < n && bg_less(&s->heap[l + 1], &s->heap[l])) ? l + 1 : l;
        if (!bg_less(&s->heap[m], &last))
            break;
        s->heap[i] = s->heap[m];
        i = m;
    }
    if (n > 0)
        s->heap[i] = last;
    return top;
}

static void try_pair(const tok_vocab *v, scratch *s, int32_t l, int32_t r)
{
    if (l < 0 || r < 0)
        return;
    const sym *L = &s->syms[l], *R = &s->syms[r];
    if (L->id < 0 || R->id < 0)
        return;
    const tok_merge *m = tok_find_merge(v, (uint32_t)L->id, (uint32_t)R->id);
    if (m == NULL)
        return;
    heap_push(s, (bigram){m->rank, (uint32_t)l, (uint32_t)r, L->len + R->len, m->result});
}

static void emit_fallback(const tok_vocab *v, const unsigned char *w, uint32_t start, uint32_t len,
                          tok_out *out)
{
    for (uint32_t i = start; i < start + len; i++)
        for (int k = 0; k < v->byte_enc_len[w[i]]; k++)
            if (v->byte_fb[w[i]][k] >= 0)
                tok_out_push(out, v->byte_fb[w[i]][k]);
}

static int encode_word(const tok_vocab *v, scratch *s, size_t n, tok_out *out)
{
    const unsigned char *w = (const unsigned char *)s->wbuf;
    if (v->ignore_merges) { /* the whole word is a token: take it as is */
        if (grow((void **)&s->ebuf, &s->ecap, n * 2, 1) < 0)
            return -ENOMEM;
        size_t e = 0;
        for (size_t i = 0; i < n; i++) {
            memcpy(s->ebuf + e, v->byte_enc[w[i]], v->byte_enc_len[w[i]]);
            e += v->byte_enc_len[w[i]];
        }
        int32_t id = tok_lookup_str(v, s->ebuf, e);
        if (id >= 0 && id < v->n_vocab) {
            tok_out_push(out, id);
            return 0;
        }
    }
    if (n == 1) {
        int32_t id = v->byte_sym[w[0]];
        if (id >= 0 && id < v->n_vocab)
            tok_out_push(out, id);
        else
            emit_fallback(v, w, 0, 1, out);
        return 0;
    }
    if (grow((void **)&s->syms, &s->sym_cap, n, sizeof(sym)) < 0 ||
        grow((void **)&s->heap, &s->heap_cap, 3 * n, sizeof(bigram)) < 0)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        s->syms[i] = (sym){(uint32_t)i, 1, v->byte_sym[w[i]], (int32_t)i - 1,
                           i + 1 < n ? (int32_t)i + 1 : -1};
    s->heap_n = 0;
    for (size_t i = 1; i < n; i++)
        try_pair(v, s, (int32_t)i - 1, (int32_t)i);
    while (s->heap_n > 0) {
        bigram b = heap_pop(s);
        sym *L = &s->syms[b.left], *R = &s->syms[b.right];
        if (L->len == 0 || R->len == 0 || L->len + R->len != b.size)
            continue; /* outdated */
        L->len += R->len;
        L->id = b.result;
        R->len = 0;
        L->next = R->next;
        if (R->next >= 0)
            s->syms[R->next].prev = (int32_t)b.left;
        try_pair(v, s, L->prev, (int32_t)b.left);
        try_pair(v, s, (int32_t)b.left, L->next);
    }
    for (int32_t i = 0; i >= 0; i = s->syms[i].next) {
        const sym *y = &s->syms[i];
        if (y->id >= 0 && y->id < v->n_vocab)
            tok_out_push(out, y->id);
        else
            emit_fallback(v, w, y->start, y->len, out);
    }
    return 0;
}

int tok_bpe_encode(const tok_vocab *v, const char *text, size_t len, tok_out *out)
{
    if (len == 0)
        return 0;
    int rc = 0;
    uint32_t *cps = malloc(len * sizeof *cps);
    uint8_t *fl = malloc(len);
    uint32_t *ends = malloc(len * sizeof *ends);
    uint32_t *tmp = malloc(len * sizeof *tmp);
    scratch s = {0};
    if (cps == NULL || fl == NULL || ends == NULL || tmp == NULL) {
        rc = -ENOMEM;
        goto done;
    }
    size_t n = 0;
    for (size_t pos = 0; pos < len;) {
        uint32_t cp = unicode_cpt_from_utf8_lenient(text, len, &pos);
        cps[n] = cp;
        fl[n] = unicode_flags(cp);
        n++;
    }
    size_t nw = tok_pretokenize(v->pre, cps, fl, n, ends, tmp);
    size_t a = 0;
    for (size_t k = 0; k < nw; k++) {
        size_t b = ends[k];
        if ((rc = grow((void **)&s.wbuf, &s.wcap, (b - a) * 4, 1)) < 0)
            goto done;
        size_t wl = 0;
        for (size_t i = a; i < b; i++)
            wl += unicode_cpt_to_utf8(cps[i], s.wbuf + wl);
        if ((rc = encode_word(v, &s, wl, out)) < 0)
            goto done;
        a = b;
    }
done:
    free(cps);
    free(fl);
    free(ends);
    free(tmp);
    free(s.syms);
    free(s.heap);
    free(s.wbuf);
    free(s.ebuf);
    return rc;
}
