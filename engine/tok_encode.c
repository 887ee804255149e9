/* Encoding entry points: segments -> fragments (special tokens found in the text, longest
 * first, as llama.cpp's partition does) -> the model's encoder per text fragment, plus
 * BOS/EOS. */
#include <errno.h>
#include <stdlib.h>

#include "tok_internal.h"

#define TOK_MAX_TEXT (1u << 30)

typedef struct occ {
    uint32_t order; /* index in v->special: lower = matched first */
    uint32_t start;
} occ;

static int occ_cmp(const void *a, const void *b)
{
    const occ *x = a, *y = b;
    if (x->order != y->order)
        return x->order < y->order ? -1 : 1;
    return x->start < y->start ? -1 : x->start > y->start;
}

static int occ_start_cmp(const void *a, const void *b)
{
    const occ *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* A fragment: text [a, b) of the buffer, or a token. */
typedef struct frag {
    int32_t token; /* -1: text */
    uint32_t a, b;
} frag;

typedef struct fraglist {
    frag *f;
    size_t n, cap;
} fraglist;

static int frag_add(fraglist *l, int32_t token, size_t a, size_t b)
{
    if (token < 0 && a == b)
        return 0;
    if (l->n == l->cap) {
        size_t c = l->cap ? l->cap * 2 : 16;
        frag *nf = realloc(l->f, c * sizeof *nf);
        if (nf == NULL)
            return -ENOMEM;
        l->f = nf;
        l->cap = c;
    }
    l->f[l->n++] = (frag){token, (uint32_t)a, (uint32_t)b};
    return 0;
}

/* Finds the special tokens in buf[a, b) and appends text/token fragments for that range.
 * trusted[i] != 0 where control tokens may be recognised (NULL: nowhere). */
static int partition(const tok_vocab *v, const char *buf, const uint8_t *trusted, size_t a,
                     size_t b, fraglist *fl)
{
    occ *occs = NULL;
    size_t n_occ = 0, cap_occ = 0;
    uint8_t *taken = NULL;
    int rc = 0;
    for (size_t i = a; i < b; i++) {
        unsigned char c0 = (unsigned char)buf[i];
        if (!(v->special_first[c0 >> 3] & (1u << (c0 & 7))))
            continue;
        int32_t node = 0;
        for (size_t j = i; j < b; j++) {
            int32_t c = v->trie[node].child;
            while (c >= 0 && v->trie[c].byte != (unsigned char)buf[j])
                c = v->trie[c].sibling;
            if (c < 0)
                break;
            node = c;
            int32_t term = v->trie[node].term;
            if (term < 0)
                continue;
            int t = v->types[v->special[term]];
            if (t != TOK_TYPE_USER_DEFINED) {
                if (trusted == NULL)
                    continue;
                size_t k = i;
                while (k <= j && trusted[k])
                    k++;
                if (k <= j)
                    continue;
            }
            if (n_occ == cap_occ) {
                size_t nc = cap_occ ? cap_occ * 2 : 16;
                occ *no = realloc(occs, nc * sizeof *no);
                if (no == NULL) {
                    rc = -ENOMEM;
                    goto done;
                }
                occs = no;
                cap_occ = nc;
            }
            occs[n_occ++] = (occ){(uint32_t)term, (uint32_t)i};
        }
    }
    if (n_occ == 0) {
        rc = frag_add(fl, -1, a, b);
        goto done;
    }
    qsort(occs, n_occ, sizeof *occs, occ_cmp);
    taken = calloc(b - a, 1);
    if (taken == NULL) {
        rc = -ENOMEM;
        goto done;
    }
    /* accept in match order when the bytes are still free; accepted ones move to the front
     * of occs (as (start, id) pairs reusing the fields) */
    size_t n_acc = 0;
    for (size_t k = 0; k < n_occ; k++) {
        int32_t id = v->special[occs[k].order];
        size_t len = v->str_off[id + 1] - v->str_off[id];
        size_t s = occs[k].start - a;
        size_t e;
        for (e = s; e < s + len; e++)
            if (taken[e])
                break;
        if (e < s + len)
            continue;
        memset(taken + s, 1, len);
        occs[n_acc++] = (occ){(uint32_t)id, occs[k].start};
    }
    qsort(occs, n_acc, sizeof *occs, occ_start_cmp);
    size_t text_start = a;
    for (size_t k = 0; k < n_acc; k++) {
        int32_t id = (int32_t)occs[k].order;
        size_t len = v->str_off[id + 1] - v->str_off[id];
        if ((rc = frag_add(fl, -1, text_start, occs[k].start)) < 0 || (rc = frag_add(fl, id, 0, 0)) < 0)
            goto done;
        text_start = occs[k].start + len;
    }
    rc = frag_add(fl, -1, text_start, b);
done:
    free(occs);
    free(taken);
    return rc;
}

size_t tok_encode_bound(const tok_vocab *v, size_t len)
{
    (void)v;
    /* BPE: an invalid byte becomes U+FFFD (3 bytes, each up to 2 fallback tokens);
     * SPM: the dummy prefix adds one symbol; 2 for BOS/EOS. */
    if (len > TOK_MAX_TEXT)
        len = TOK_MAX_TEXT;
    return 6 * len + 8;
}

static bool vocab_has_user_defined(const tok_vocab *v)
{
    for (uint32_t i = 0; i < v->n_special; i++)
        if (v->types[v->special[i]] == TOK_TYPE_USER_DEFINED)
            return true;
    return false;
}

int tok_encode_segments(const tok_vocab *v, const tok_segment *segs, size_t n_segs,
                        unsigned flags, int32_t *out, size_t cap, size_t *ret_n)
{
    size_t total = 0;
    bool any_trusted = false;
    for (size_t i = 0; i < n_segs; i++) {
        const tok_segment *s = &segs[i];
        if (s->kind == TOK_SEG_TOKEN) {
            if (s->id < 0 || s->id >= v->n_vocab)
                return -EINVAL;
            continue;
        }
        if (s->kind != TOK_SEG_TEXT && s->kind != TOK_SEG_TRUSTED)
            return -EINVAL;
        if (s->text == NULL && s->len > 0)
            return -EINVAL;
        if (s->len > TOK_MAX_TEXT || total + s->len > TOK_MAX_TEXT)
            return -E2BIG;
        total += s->len;
        if (s->kind == TOK_SEG_TRUSTED && s->len > 0)
            any_trusted = true;
    }
    unsigned bos_mode = flags & TOK_ADD_BOS_MASK;
    bool add_bos = v->bos >= 0 && (bos_mode == TOK_ADD_BOS_FORCE || (bos_mode == TOK_ADD_BOS_AUTO && v->add_bos));
    bool add_eos = v->eos >= 0 && bos_mode != TOK_ADD_BOS_NONE && v->add_eos;

    int rc = 0;
    char *buf = malloc(total ? total : 1);
    uint8_t *trusted = any_trusted ? malloc(total) : NULL;
    fraglist fl = {0};
    if (buf == NULL || (any_trusted && trusted == NULL)) {
        rc = -ENOMEM;
        goto done;
    }
    bool scan = v->n_special > 0 && (any_trusted || vocab_has_user_defined(v));
    size_t pos = 0, run_start = 0;
    for (size_t i = 0; i <= n_segs; i++) {
        if (i == n_segs || segs[i].kind == TOK_SEG_TOKEN) {
            /* end of a text run */
            if (pos > run_start) {
                rc = scan ? partition(v, buf, trusted, run_start, pos, &fl)
                          : frag_add(&fl, -1, run_start, pos);
                if (rc < 0)
                    goto done;
            }
            if (i < n_segs && (rc = frag_add(&fl, segs[i].id, 0, 0)) < 0)
                goto done;
            run_start = pos;
            continue;
        }
        if (segs[i].len > 0) {
            memcpy(buf + pos, segs[i].text, segs[i].len);
            if (trusted)
                memset(trusted + pos, segs[i].kind == TOK_SEG_TRUSTED, segs[i].len);
            pos += segs[i].len;
        }
    }

    tok_out o = {out, cap, 0};
    if (add_bos)
        tok_out_push(&o, v->bos);
    bool prev_special = true; /* SPM: the dummy prefix goes on text that starts a fragment
                                 after BOS, a special token, or the start */
    for (size_t k = 0; k < fl.n; k++) {
        const frag *f = &fl.f[k];
        if (f->token >= 0) {
            tok_out_push(&o, f->token);
            prev_special = true;
            continue;
        }
        if (v->model == TOK_MODEL_SPM)
            rc = tok_spm_encode(v, buf + f->a, f->b - f->a, v->add_space_prefix && prev_special, &o);
        else
            rc = tok_bpe_encode(v, buf + f->a, f->b - f->a, &o);
        if (rc < 0)
            goto done;
        prev_special = false;
    }
    if (add_eos)
        tok_out_push(&o, v->eos);
    *ret_n = o.n;
    rc = o.n > cap ? -ENOBUFS : 0;
done:
    free(buf);
    free(trusted);
    free(fl.f);
    return rc;
}

int tok_encode(const tok_vocab *v, const char *text, size_t len, unsigned flags,
               int32_t *out, size_t cap, size_t *ret_n)
{
    tok_segment seg = {
        .kind = (flags & TOK_PARSE_SPECIAL) ? TOK_SEG_TRUSTED : TOK_SEG_TEXT,
        .text = text,
        .len = len,
    };
    return tok_encode_segments(v, &seg, 1, flags, out, cap, ret_n);
}
