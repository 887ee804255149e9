/* Streaming detokenizer: pieces in, complete and valid UTF-8 out. Invalid sequences become
 * U+FFFD, one per maximal subpart of an ill-formed sequence (Unicode 3.9, Table 3-7 for the
 * well-formed byte ranges). */
#include <errno.h>
#include <stdlib.h>

#include "tok_internal.h"

static const char repl[3] = {'\xEF', '\xBF', '\xBD'};

void tok_detok_init(tok_detok *d, const tok_vocab *v, unsigned flags)
{
    memset(d, 0, sizeof *d);
    d->v = v;
    d->flags = flags;
}

size_t tok_detok_out_max(const tok_vocab *v)
{
    return 3 * ((size_t)v->max_piece + 4);
}

/* Sequence length and the valid range of the second byte for lead byte c; 0 if c cannot
 * start a sequence. */
static int lead_info(unsigned c, unsigned *lo, unsigned *hi)
{
    *lo = 0x80;
    *hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        return 2;
    if (c >= 0xE0 && c <= 0xEF) {
        if (c == 0xE0) *lo = 0xA0;
        if (c == 0xED) *hi = 0x9F;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (c == 0xF0) *lo = 0x90;
        if (c == 0xF4) *hi = 0x8F;
        return 4;
    }
    return 0;
}

/* Decodes pend + p[0, n) into out; keeps a trailing incomplete sequence in pend. */
static size_t feed(tok_detok *d, const unsigned char *p, size_t n, char *out)
{
    unsigned char pend[4];
    size_t np = d->n_pend;
    memcpy(pend, d->pend, np);
    size_t total = np + n, o = 0, i = 0;
#define AT(k) ((k) < np ? pend[k] : p[(k) - np])
    d->n_pend = 0;
    while (i < total) {
        unsigned c = AT(i);
        if (c < 0x80) {
            out[o++] = (char)c;
            i++;
            continue;
        }
        unsigned lo, hi;
        int len = lead_info(c, &lo, &hi);
        if (len == 0) {
            memcpy(out + o, repl, 3);
            o += 3;
            i++;
            continue;
        }
        int k = 1;
        while (k < len && i + (size_t)k < total) {
            unsigned b = AT(i + (size_t)k);
            unsigned l2 = k == 1 ? lo : 0x80, h2 = k == 1 ? hi : 0xBF;
            if (b < l2 || b > h2)
                break;
            k++;
        }
        if (k == len) {
            for (int j = 0; j < len; j++)
                out[o++] = (char)AT(i + (size_t)j);
            i += (size_t)len;
        } else if (i + (size_t)k == total) { /* incomplete so far: wait for more */
            for (int j = 0; j < k; j++)
                d->pend[j] = (uint8_t)AT(i + (size_t)j);
            d->n_pend = (uint8_t)k;
            i = total;
        } else { /* ill-formed: replace the maximal subpart */
            memcpy(out + o, repl, 3);
            o += 3;
            i += (size_t)k;
        }
    }
#undef AT
    return o;
}

int tok_detok_push(tok_detok *d, int32_t id, char *out, size_t cap, size_t *ret_len)
{
    const char *p;
    size_t n;
    int rc = tok_piece(d->v, id, (d->flags & TOK_DETOK_SPECIAL) ? TOK_PIECE_SPECIAL : 0, &p, &n);
    if (rc < 0)
        return rc;
    if (cap < 3 * (n + d->n_pend))
        return -ENOBUFS;
    if (n > 0 && !d->started) {
        d->started = true;
        if ((d->flags & TOK_DETOK_STRIP_SPACE) && p[0] == ' ') {
            p++;
            n--;
        }
    }
    *ret_len = feed(d, (const unsigned char *)p, n, out);
    return 0;
}

int tok_detok_flush(tok_detok *d, char *out, size_t cap, size_t *ret_len)
{
    size_t o = 0;
    if (d->n_pend > 0) {
        if (cap < 3)
            return -ENOBUFS;
        memcpy(out, repl, 3);
        o = 3;
    }
    d->n_pend = 0;
    d->started = false;
    *ret_len = o;
    return 0;
}

int tok_decode(const tok_vocab *v, const int32_t *ids, size_t n, unsigned flags, char *out,
               size_t cap, size_t *ret_len)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= v->n_vocab)
            return -EINVAL;
    size_t bcap = tok_detok_out_max(v);
    char *tmp = malloc(bcap);
    if (tmp == NULL)
        return -ENOMEM;
    tok_detok d;
    tok_detok_init(&d, v, flags);
    size_t total = 0, k;
    for (size_t i = 0; i <= n; i++) {
        int rc = i < n ? tok_detok_push(&d, ids[i], tmp, bcap, &k) : tok_detok_flush(&d, tmp, bcap, &k);
        if (rc < 0) {
            free(tmp);
            return rc;
        }
        if (total < cap)
            memcpy(out + total, tmp, k < cap - total ? k : cap - total);
        total += k;
    }
    free(tmp);
    *ret_len = total;
    return total > cap ? -ENOBUFS : 0;
}
