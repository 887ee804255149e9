/* SentencePiece-style encoding of one text fragment, as llama.cpp does it: spaces become
 * U+2581 (plus one in front when the dummy prefix applies), the text is cut into UTF-8
 * characters, then adjacent symbols are merged while their concatenation is a token, highest
 * score first (leftmost first among equal scores). Symbols that are not tokens at the end are
 * written as byte tokens <0xNN> (byte fallback). */
#include <errno.h>
#include <stdlib.h>

#include "tok_internal.h"
#include "unicode_data.h"

typedef struct sym {
    uint32_t start, len;
    int32_t prev, next;
} sym;

typedef struct bigram {
    float score;
    uint32_t left, right;
    uint32_t size;
} bigram;

static inline bool bg_better(const bigram *a, const bigram *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

typedef struct heap {
    bigram *a;
    size_t n;
} heap;

static void heap_push(heap *h, bigram b)
{
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bg_better(&b, &h->a[p]))
            break;
        h->a[i] = h->a[p];
        i = p;
    }
    h->a[i] = b;
}

static bigram heap_pop(heap *h)
{
    bigram top = h->a[0];
    bigram last = h->a[--h->n];
    size_t i = 0, n = h->n;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n)
            break;
        size_t m = (l + 1 < n && bg_better(&h->a[l + 1], &h->a[l])) ? l + 1 : l;
        if (!bg_better(&h->a[m], &last))
            break;
        h->a[i] = h->a[m];
        i = m;
    }
    if (n > 0)
        h->a[i] = last;
    return top;
}

static void try_pair(const tok_vocab *v, const char *buf, const sym *syms, heap *h, int32_t l,
                     int32_t r)
{
    if (l < 0 || r < 0)
        return;
    uint32_t size = syms[l].len + syms[r].len;
    int32_t id = tok_lookup_str(v, buf + syms[l].start, size);
    if (id < 0 || id >= v->n_vocab)
        return;
    heap_push(h, (bigram){v->scores[id], (uint32_t)l, (uint32_t)r, size});
}

static bool is_space_sym(const char *buf, const sym *y)
{
    return y->len == 3 && memcmp(buf + y->start, "\xe2\x96\x81", 3) == 0;
}

static void merge_chunk(const tok_vocab *v, const char *buf, sym *syms, heap *h, size_t c0,
                        size_t c1, tok_out *out)
{
    for (size_t i = c0; i < c1; i++) {
        syms[i].prev = i > c0 ? (int32_t)i - 1 : -1;
        syms[i].next = i + 1 < c1 ? (int32_t)i + 1 : -1;
    }
    h->n = 0;
    for (size_t i = c0 + 1; i < c1; i++)
        try_pair(v, buf, syms, h, (int32_t)i - 1, (int32_t)i);
    while (h->n > 0) {
        bigram b = heap_pop(h);
        sym *L = &syms[b.left], *R = &syms[b.right];
        if (L->len == 0 || R->len == 0 || L->len + R->len != b.size)
            continue;
        L->len += R->len;
        R->len = 0;
        L->next = R->next;
        if (R->next >= 0)
            syms[R->next].prev = (int32_t)b.left;
        try_pair(v, buf, syms, h, L->prev, (int32_t)b.left);
        try_pair(v, buf, syms, h, (int32_t)b.left, L->next);
    }
    for (int32_t i = (int32_t)c0; i >= 0; i = syms[i].next) {
        int32_t id = tok_lookup_str(v, buf + syms[i].start, syms[i].len);
        if (id >= 0 && id < v->n_vocab) {
            tok_out_push(out, id);
            continue;
        }
        for (uint32_t k = 0; k < syms[i].len; k++) {
            int32_t b = v->spm_byte_tok[(unsigned char)buf[syms[i].start + k]];
            if (b >= 0)
                tok_out_push(out, b);
        }
    }
}

int tok_spm_encode(const tok_vocab *v, const char *text, size_t len, bool add_prefix,
                   tok_out *out)
{
    size_t cap = (len + 1) * 3;
    char *buf = malloc(cap);
    sym *syms = NULL;
    heap h = {NULL, 0};
    int rc = 0;
    if (buf == NULL) {
        rc = -ENOMEM;
        goto done;
    }
    size_t n = 0;
    if (add_prefix) {
        memcpy(buf, "\xe2\x96\x81", 3);
        n = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(buf + n, "\xe2\x96\x81", 3);
            n += 3;
        } else {
            buf[n++] = text[i];
        }
    }
    /* at most one symbol per byte (a space's U+2581 can be split by a stray lead byte
     * before it); each merge adds at most two candidate pairs */
    syms = malloc((n ? n : 1) * sizeof *syms);
    h.a = malloc((n ? n : 1) * 3 * sizeof(bigram));
    if (syms == NULL || h.a == NULL) {
        rc = -ENOMEM;
        goto done;
    }
    size_t ns = 0;
    for (size_t off = 0; off < n;) {
        size_t l = unicode_len_utf8((unsigned char)buf[off]);
        if (l > n - off)
            l = n - off;
        syms[ns++] = (sym){(uint32_t)off, (uint32_t)l, -1, -1};
        off += l;
    }
    /* Merge chunk by chunk. A chunk boundary is put before a U+2581 symbol that follows
     * another symbol, when the vocab has no token with U+2581 after other text: then no
     * token can span the boundary, no merge crosses it, and the result is the same as
     * merging the whole text at once (but the heaps stay small and cache-friendly). */
    size_t c0 = 0;
    while (c0 < ns) {
        size_t c1 = c0 + 1;
        if (v->spm_split_at_space) {
            while (c1 < ns && !(is_space_sym(buf, &syms[c1]) && !is_space_sym(buf, &syms[c1 - 1])))
                c1++;
        } else {
            c1 = ns;
        }
        merge_chunk(v, buf, syms, &h, c0, c1, out);
        c0 = c1;
    }
done:
    free(buf);
    free(syms);
    free(h.a);
    return rc;
}
