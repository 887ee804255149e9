/* Building a tok_vocab: strings and their hash, BPE merges, byte tables, pieces, special
 * tokens (match list and trie), special ids and the end-of-generation set. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"
#include "unicode_data.h"

#define TOK_MAX_TOKENS (1u << 24)
#define TOK_MAX_MERGES (1u << 24)
#define TOK_MAX_BLOB 0x7FFFFFFFu

void tok_vocab_desc_init(tok_vocab_desc *d)
{
    memset(d, 0, sizeof *d);
    d->bos = d->eos = d->unk = d->eot = d->eom = d->pad = TOK_ID_DEFAULT;
    d->add_bos = d->add_eos = d->add_space_prefix = -1;
}

void tok_free(tok_vocab *v)
{
    if (v == NULL)
        return;
    free(v->str_blob);
    free(v->str_off);
    free(v->hslots);
    free(v->scores);
    free(v->types);
    free(v->piece_blob);
    free(v->piece_off);
    free(v->merges);
    free(v->special);
    free(v->trie);
    free(v->eog);
    free(v->chat_template);
    free(v);
}

static const struct {
    const char *name;
    int pre;
} pre_names[] = {
    {"default", TOK_PRE_DEFAULT},
    {"gpt-2", TOK_PRE_GPT2},
    {"phi-2", TOK_PRE_GPT2},
    {"llama-bpe", TOK_PRE_LLAMA3},
    {"llama3", TOK_PRE_LLAMA3},
    {"llama-v3", TOK_PRE_LLAMA3},
    {"falcon3", TOK_PRE_LLAMA3},
    {"deepseek-llm", TOK_PRE_DEEPSEEK_LLM},
    {"deepseek-coder", TOK_PRE_DEEPSEEK_CODER},
};

const char *tok_pre_name(const tok_vocab *v)
{
    if (v->model != TOK_MODEL_BPE)
        return "default";
    switch (v->pre) {
    case TOK_PRE_GPT2: return "gpt-2";
    case TOK_PRE_LLAMA3: return "llama-bpe";
    case TOK_PRE_DEEPSEEK_LLM: return "deepseek-llm";
    case TOK_PRE_DEEPSEEK_CODER: return "deepseek-coder";
    default: return "default";
    }
}

/* ---- growable string table with its hash ---- */

typedef struct strtab {
    char *blob;
    size_t blob_len, blob_cap;
    uint32_t *off; /* n + 1 */
    size_t n, off_cap;
} strtab;

static int strtab_add(strtab *t, const char *s, size_t len)
{
    if (len > TOK_MAX_BLOB || t->blob_len + len > TOK_MAX_BLOB)
        return -E2BIG;
    if (t->blob_len + len > t->blob_cap) {
        size_t cap = t->blob_cap ? t->blob_cap : 4096;
        while (cap < t->blob_len + len)
            cap *= 2;
        char *nb = realloc(t->blob, cap);
        if (nb == NULL)
            return -ENOMEM;
        t->blob = nb;
        t->blob_cap = cap;
    }
    if (t->n + 2 > t->off_cap) {
        size_t cap = t->off_cap ? t->off_cap * 2 : 1024;
        uint32_t *no = realloc(t->off, cap * sizeof *no);
        if (no == NULL)
            return -ENOMEM;
        t->off = no;
        t->off_cap = cap;
    }
    if (len)
        memcpy(t->blob + t->blob_len, s, len);
    t->off[t->n] = (uint32_t)t->blob_len;
    t->blob_len += len;
    t->n++;
    t->off[t->n] = (uint32_t)t->blob_len;
    return 0;
}

/* Inserts string index k into the hash; replace: a later equal string takes the slot. */
static void hash_insert(tok_vocab *v, uint32_t k, bool replace)
{
    const char *s = v->str_blob + v->str_off[k];
    size_t n = v->str_off[k + 1] - v->str_off[k];
    uint32_t i = (uint32_t)tok_hash_bytes(s, n) & v->hmask;
    for (;;) {
        uint32_t e = v->hslots[i];
        if (e == 0) {
            v->hslots[i] = k + 1;
            return;
        }
        uint32_t o = e - 1;
        if (v->str_off[o + 1] - v->str_off[o] == n && memcmp(v->str_blob + v->str_off[o], s, n) == 0) {
            if (replace)
                v->hslots[i] = k + 1;
            return;
        }
        i = (i + 1) & v->hmask;
    }
}

static int hash_alloc(tok_vocab *v, size_t n_max)
{
    size_t cap = 16;
    while (cap < n_max * 2)
        cap *= 2;
    v->hslots = calloc(cap, sizeof *v->hslots);
    if (v->hslots == NULL)
        return -ENOMEM;
    v->hmask = (uint32_t)(cap - 1);
    return 0;
}

/* ---- byte-level BPE alphabet ---- */

static bool byte_printable(unsigned b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

/* The byte-level BPE character of each byte (printable Latin-1 bytes map to themselves, the
 * others to U+0100 + their rank among the non-printable ones), and the inverse for
 * codepoints below 0x144 (-1: not a byte-level character). */
static void byte_tables(uint32_t b2c[256], int16_t c2b[0x144])
{
    uint32_t n = 0;
    for (unsigned i = 0; i < 0x144; i++)
        c2b[i] = -1;
    for (unsigned b = 0; b < 256; b++) {
        b2c[b] = byte_printable(b) ? b : 0x100 + n++;
        c2b[b2c[b]] = (int16_t)b;
    }
}

/* ---- pieces ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Writes the piece of token id to out (room for 4 * text length + 4); returns its length. */
static size_t render_piece(const tok_vocab *v, int32_t id, const int16_t *c2b, char *out)
{
    const char *s = v->str_blob + v->str_off[id];
    size_t n = v->str_off[id + 1] - v->str_off[id];
    switch (v->types[id]) {
    case TOK_TYPE_USER_DEFINED:
        memcpy(out, s, n);
        return n;
    case TOK_TYPE_BYTE:
        if (n == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>' &&
            hexval(s[3]) >= 0 && hexval(s[4]) >= 0) {
            out[0] = (char)(hexval(s[3]) * 16 + hexval(s[4]));
            return 1;
        }
        return 0;
    case TOK_TYPE_NORMAL:
        break;
    default: /* control, unknown, unused, undefined: nothing */
        return 0;
    }
    size_t o = 0;
    if (v->model == TOK_MODEL_SPM) {
        for (size_t i = 0; i < n;) {
            if (i + 3 <= n && (unsigned char)s[i] == 0xE2 && (unsigned char)s[i + 1] == 0x96 &&
                (unsigned char)s[i + 2] == 0x81) {
                out[o++] = ' ';
                i += 3;
            } else {
                out[o++] = s[i++];
            }
        }
        return o;
    }
    for (size_t i = 0; i < n;) {
        size_t start = i;
        uint32_t cp = unicode_cpt_from_utf8_lenient(s, n, &i);
        int b = cp < 0x144 ? c2b[cp] : -1;
        if (b >= 0) {
            out[o++] = (char)b;
        } else { /* not a byte-level character: keep the text as it is */
            memcpy(out + o, s + start, i - start);
            o += i - start;
        }
    }
    return o;
}

/* ---- building ---- */

typedef struct builder {
    tok_vocab *v;
    strtab st;
    eng_error *err;
} builder;

static void sync_strings(builder *b)
{
    b->v->str_blob = b->st.blob;
    b->v->str_off = b->st.off;
    b->v->n_str = (uint32_t)b->st.n;
}

static int rehash(tok_vocab *v, size_t n_max)
{
    free(v->hslots);
    v->hslots = NULL;
    int rc = hash_alloc(v, n_max);
    if (rc < 0)
        return rc;
    for (uint32_t k = 0; k < v->n_str; k++)
        hash_insert(v, k, k < (uint32_t)v->n_vocab);
    return 0;
}

/* String index of s, adding it (as a non-token string) if it is new. */
static int intern(builder *b, const char *s, size_t n, int32_t *ret)
{
    int32_t k = tok_lookup_str(b->v, s, n);
    if (k >= 0) {
        *ret = k;
        return 0;
    }
    if ((size_t)(b->v->n_str + 1) * 2 > (size_t)b->v->hmask + 1) {
        int rc = rehash(b->v, (size_t)b->v->n_str * 2 + 2);
        if (rc < 0)
            return rc;
    }
    int rc = strtab_add(&b->st, s, n);
    if (rc < 0)
        return rc;
    sync_strings(b);
    hash_insert(b->v, b->v->n_str - 1, false);
    *ret = (int32_t)(b->v->n_str - 1);
    return 0;
}

static int build_merges(builder *b, const tok_vocab_desc *d)
{
    tok_vocab *v = b->v;
    if (d->n_merges > TOK_MAX_MERGES)
        return eng_error_set(b->err, -E2BIG, "tokenizer has %zu merges (limit %u)", d->n_merges,
                             TOK_MAX_MERGES);
    if (d->n_merges > 0 && d->merges == NULL)
        return eng_error_set(b->err, -EINVAL, "tokenizer merges missing");
    size_t cap = 16;
    while (cap * 2 < d->n_merges * 3)
        cap *= 2;
    v->merges = malloc(cap * sizeof *v->merges);
    if (v->merges == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < cap; i++)
        v->merges[i].rank = -1;
    v->merge_mask = (uint32_t)(cap - 1);
    size_t max_part = 0;
    for (size_t r = 0; r < d->n_merges; r++) {
        const char *s = d->merges[r].ptr;
        size_t n = d->merges[r].len;
        if (s == NULL && n > 0)
            return eng_error_set(b->err, -EINVAL, "tokenizer merge %zu missing", r);
        size_t pos = 1;
        while (pos < n && s[pos] != ' ')
            pos++;
        if (pos >= n) /* no separator: a pair that can never match, as in llama.cpp */
            continue;
        int32_t l, rr;
        int rc = intern(b, s, pos, &l);
        if (rc == 0)
            rc = intern(b, s + pos + 1, n - pos - 1, &rr);
        if (rc < 0)
            return eng_error_set(b->err, rc, "tokenizer merges: out of memory or too large");
        if (pos > max_part)
            max_part = pos;
        if (n - pos - 1 > max_part)
            max_part = n - pos - 1;
        uint32_t i = (uint32_t)tok_hash_pair((uint32_t)l, (uint32_t)rr) & v->merge_mask;
        for (;;) {
            tok_merge *m = &v->merges[i];
            if (m->rank < 0) {
                m->left = (uint32_t)l;
                m->right = (uint32_t)rr;
                m->rank = (int32_t)r;
                m->result = -1;
                break;
            }
            if (m->left == (uint32_t)l && m->right == (uint32_t)rr)
                break; /* the first rank wins */
            i = (i + 1) & v->merge_mask;
        }
    }
    char *tmp = malloc(max_part * 2 + 1);
    if (tmp == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < cap; i++) {
        tok_merge *m = &v->merges[i];
        if (m->rank < 0)
            continue;
        size_t ln = v->str_off[m->left + 1] - v->str_off[m->left];
        size_t rn = v->str_off[m->right + 1] - v->str_off[m->right];
        memcpy(tmp, v->str_blob + v->str_off[m->left], ln);
        memcpy(tmp + ln, v->str_blob + v->str_off[m->right], rn);
        m->result = tok_lookup_str(v, tmp, ln + rn);
    }
    free(tmp);
    return 0;
}

static int32_t pick_id(int64_t want, int32_t def, int32_t n)
{
    if (want == TOK_ID_DEFAULT)
        return def < n ? def : -1;
    if (want == -1)
        return -1;
    if (want >= 0 && want < n)
        return (int32_t)want;
    return def < n ? def : -1;
}

static bool text_is(const tok_vocab *v, int32_t id, const char *s)
{
    size_t n = strlen(s);
    return v->str_off[id + 1] - v->str_off[id] == n && memcmp(v->str_blob + v->str_off[id], s, n) == 0;
}

static const char *const eot_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>",
    "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", NULL};
static const char *const eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
    "<EOT>", NULL};

static int key_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int build_specials(builder *b)
{
    tok_vocab *v = b->v;
    int32_t n = v->n_vocab;
    if (n <= 0) /* checked when the vocabulary was built; stated for the sizes below */
        return -EINVAL;
    /* eot by text when the metadata has none; eog set; those tokens become control tokens */
    if (v->eot < 0) {
        for (int32_t id = 0; id < n && v->eot < 0; id++)
            for (int k = 0; eot_texts[k]; k++)
                if (text_is(v, id, eot_texts[k])) {
                    v->eot = id;
                    v->types[id] = TOK_TYPE_CONTROL;
                    break;
                }
    }
    uint8_t *is_eog = calloc((size_t)n, 1);
    if (is_eog == NULL)
        return -ENOMEM;
    for (int32_t id = 0; id < n; id++)
        for (int k = 0; eog_texts[k]; k++)
            if (text_is(v, id, eog_texts[k])) {
                is_eog[id] = 1;
                v->types[id] = TOK_TYPE_CONTROL;
                break;
            }
    if (v->eos >= 0) is_eog[v->eos] = 1;
    if (v->eot >= 0) is_eog[v->eot] = 1;
    if (v->eom >= 0) is_eog[v->eom] = 1;
    uint32_t cnt = 0;
    for (int32_t id = 0; id < n; id++)
        cnt += is_eog[id];
    v->eog = malloc((cnt ? cnt : 1) * sizeof *v->eog);
    if (v->eog == NULL) {
        free(is_eog);
        return -ENOMEM;
    }
    for (int32_t id = 0; id < n; id++)
        if (is_eog[id])
            v->eog[v->n_eog++] = id;
    free(is_eog);

    /* special tokens in match order: longest text first, then lowest id */
    uint32_t ns = 0;
    for (int32_t id = 0; id < n; id++) {
        int t = v->types[id];
        if ((t == TOK_TYPE_CONTROL || t == TOK_TYPE_USER_DEFINED || t == TOK_TYPE_UNKNOWN) &&
            v->str_off[id + 1] > v->str_off[id])
            ns++;
    }
    v->special = malloc((ns ? ns : 1) * sizeof *v->special);
    if (v->special == NULL)
        return -ENOMEM;
    size_t trie_cap = 1;
    for (int32_t id = 0; id < n; id++) {
        int t = v->types[id];
        if ((t == TOK_TYPE_CONTROL || t == TOK_TYPE_USER_DEFINED || t == TOK_TYPE_UNKNOWN) &&
            v->str_off[id + 1] > v->str_off[id]) {
            v->special[v->n_special++] = id;
            trie_cap += v->str_off[id + 1] - v->str_off[id];
        }
    }
    /* match order: longest text first, then lowest id */
    uint64_t *keys = malloc((v->n_special ? v->n_special : 1) * sizeof *keys);
    if (keys == NULL)
        return -ENOMEM;
    for (uint32_t i = 0; i < v->n_special; i++) {
        int32_t id = v->special[i];
        uint64_t len = v->str_off[id + 1] - v->str_off[id];
        keys[i] = (~len & 0xFFFFFFFFull) << 32 | (uint32_t)id;
    }
    qsort(keys, v->n_special, sizeof *keys, key_cmp);
    for (uint32_t i = 0; i < v->n_special; i++)
        v->special[i] = (int32_t)(keys[i] & 0xFFFFFFFFu);
    free(keys);
    if (trie_cap > TOK_MAX_BLOB / sizeof(tok_trie_node))
        return -E2BIG;
    v->trie = malloc(trie_cap * sizeof *v->trie);
    if (v->trie == NULL)
        return -ENOMEM;
    v->n_trie = 1;
    v->trie[0] = (tok_trie_node){.child = -1, .sibling = -1, .term = -1, .byte = 0};
    for (uint32_t si = 0; si < v->n_special; si++) {
        int32_t id = v->special[si];
        const unsigned char *s = (const unsigned char *)v->str_blob + v->str_off[id];
        size_t len = v->str_off[id + 1] - v->str_off[id];
        v->special_first[s[0] >> 3] |= (uint8_t)(1u << (s[0] & 7));
        int32_t node = 0;
        for (size_t i = 0; i < len; i++) {
            int32_t c = v->trie[node].child;
            while (c >= 0 && v->trie[c].byte != s[i])
                c = v->trie[c].sibling;
            if (c < 0) {
                c = (int32_t)v->n_trie++;
                v->trie[c] = (tok_trie_node){.child = -1, .sibling = v->trie[node].child,
                                             .term = -1, .byte = s[i]};
                v->trie[node].child = c;
            }
            node = c;
        }
        if (v->trie[node].term < 0)
            v->trie[node].term = (int32_t)si;
    }
    return 0;
}

static int build_pieces(tok_vocab *v)
{
    uint32_t b2c[256];
    int16_t c2b[0x144];
    byte_tables(b2c, c2b);
    size_t total = 0, maxlen = 0;
    for (int32_t id = 0; id < v->n_vocab; id++) {
        size_t n = v->str_off[id + 1] - v->str_off[id];
        total += n;
        if (n > maxlen)
            maxlen = n;
    }
    /* a piece is never longer than its text, except a BPE text that is not byte-level */
    v->piece_blob = malloc(total + 1);
    v->piece_off = malloc(((size_t)v->n_vocab + 1) * sizeof *v->piece_off);
    char *tmp = malloc(maxlen + 4);
    if (v->piece_blob == NULL || v->piece_off == NULL || tmp == NULL) {
        free(tmp);
        return -ENOMEM;
    }
    size_t o = 0;
    v->max_piece = 0;
    for (int32_t id = 0; id < v->n_vocab; id++) {
        size_t n = render_piece(v, id, c2b, tmp);
        memcpy(v->piece_blob + o, tmp, n);
        v->piece_off[id] = (uint32_t)o;
        o += n;
        size_t raw = v->str_off[id + 1] - v->str_off[id];
        if (n > v->max_piece) v->max_piece = (uint32_t)n;
        if (raw > v->max_piece) v->max_piece = (uint32_t)raw;
    }
    v->piece_off[v->n_vocab] = (uint32_t)o;
    free(tmp);

    if (v->model == TOK_MODEL_BPE) {
        for (unsigned b = 0; b < 256; b++) {
            char enc[4];
            size_t el = unicode_cpt_to_utf8(b2c[b], enc);
            memcpy(v->byte_enc[b], enc, el);
            v->byte_enc_len[b] = (uint8_t)el;
            v->byte_sym[b] = tok_lookup_str(v, enc, el);
            for (size_t k = 0; k < 2; k++) {
                int32_t t = k < el ? tok_lookup_str(v, enc + k, 1) : -1;
                v->byte_fb[b][k] = t < v->n_vocab ? t : -1;
            }
        }
    } else {
        v->spm_split_at_space = true;
        for (int32_t id = 0; id < v->n_vocab && v->spm_split_at_space; id++) {
            const char *s = v->str_blob + v->str_off[id];
            size_t n = v->str_off[id + 1] - v->str_off[id], i = 0;
            while (i + 3 <= n && memcmp(s + i, "\xe2\x96\x81", 3) == 0)
                i += 3;
            if (n - i >= 3 && memmem(s + i, n - i, "\xe2\x96\x81", 3) != NULL)
                v->spm_split_at_space = false;
        }
        for (unsigned b = 0; b < 256; b++) {
            char buf[8];
            snprintf(buf, sizeof buf, "<0x%02X>", b);
            int32_t t = tok_lookup_str(v, buf, 6);
            if (t < 0 || t >= v->n_vocab) {
                char c = (char)b;
                t = tok_lookup_str(v, &c, 1);
            }
            if (t < 0 || t >= v->n_vocab)
                t = v->unk;
            v->spm_byte_tok[b] = t;
        }
    }
    return 0;
}

int tok_vocab_build(const tok_vocab_desc *d, tok_vocab **ret, eng_error *err)
{
    eng_error_clear(err);
    if (d->model != TOK_MODEL_SPM && d->model != TOK_MODEL_BPE)
        return eng_error_set(err, -EINVAL, "tokenizer model %d is not SPM or BPE", d->model);
    if (d->n_tokens == 0 || d->tokens == NULL)
        return eng_error_set(err, -EINVAL, "tokenizer has no tokens");
    if (d->n_tokens > TOK_MAX_TOKENS)
        return eng_error_set(err, -E2BIG, "tokenizer has %zu tokens (limit %u)", d->n_tokens,
                             TOK_MAX_TOKENS);
    int pre = TOK_PRE_DEFAULT;
    if (d->model == TOK_MODEL_BPE && d->pre != NULL) {
        size_t k;
        for (k = 0; k < sizeof pre_names / sizeof pre_names[0]; k++)
            if (strcmp(d->pre, pre_names[k].name) == 0)
                break;
        if (k == sizeof pre_names / sizeof pre_names[0])
            return eng_error_set(err, -ENOTSUP, "BPE pre-tokenizer '%.64s' is not supported", d->pre);
        pre = pre_names[k].pre;
    }
    tok_vocab *v = calloc(1, sizeof *v);
    if (v == NULL)
        return eng_error_set(err, -ENOMEM, "out of memory for the tokenizer");
    builder b = {.v = v, .err = err};
    int rc = 0;
    int32_t n = (int32_t)d->n_tokens;
    v->model = d->model;
    v->pre = pre;
    v->n_vocab = n;
    v->scores = malloc((size_t)n * sizeof *v->scores);
    v->types = malloc((size_t)n);
    if (v->scores == NULL || v->types == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    for (int32_t i = 0; i < n; i++) {
        const tok_str *t = &d->tokens[i];
        if (t->ptr == NULL && t->len > 0) {
            rc = eng_error_set(err, -EINVAL, "token %d has no text", i);
            goto fail;
        }
        if ((rc = strtab_add(&b.st, t->ptr, t->len)) < 0) {
            eng_error_set(err, rc, "tokenizer token texts too large");
            goto fail;
        }
        v->scores[i] = d->scores ? d->scores[i] : 0.0f;
        int32_t ty = d->types ? d->types[i] : TOK_TYPE_NORMAL;
        if (ty < 0 || ty > TOK_TYPE_BYTE) {
            rc = eng_error_set(err, -EINVAL, "token %d has invalid type %d", i, ty);
            goto fail;
        }
        v->types[i] = (uint8_t)ty;
    }
    sync_strings(&b);
    if ((rc = hash_alloc(v, (size_t)n + 1)) < 0)
        goto fail;
    for (int32_t i = 0; i < n; i++)
        hash_insert(v, (uint32_t)i, true);

    bool spm = d->model == TOK_MODEL_SPM;
    v->unk = pick_id(d->unk, spm ? 0 : -1, n);
    v->bos = pick_id(d->bos, spm ? 1 : -1, n);
    v->eos = pick_id(d->eos, spm ? 2 : -1, n);
    v->eot = pick_id(d->eot, -1, n);
    v->eom = pick_id(d->eom, -1, n);
    v->pad = pick_id(d->pad, -1, n);
    v->add_bos = d->add_bos >= 0 ? d->add_bos != 0 : (spm || pre == TOK_PRE_LLAMA3);
    v->add_eos = d->add_eos > 0;
    v->add_space_prefix = spm && (d->add_space_prefix >= 0 ? d->add_space_prefix != 0 : true);
    v->ignore_merges = !spm && pre == TOK_PRE_LLAMA3;

    if (!spm && (rc = build_merges(&b, d)) < 0)
        goto fail;
    if ((rc = build_specials(&b)) < 0 || (rc = build_pieces(v)) < 0)
        goto fail;
    if (d->chat_template != NULL) {
        v->chat_template = malloc(d->chat_template_len + 1);
        if (v->chat_template == NULL) {
            rc = -ENOMEM;
            goto fail;
        }
        memcpy(v->chat_template, d->chat_template, d->chat_template_len);
        v->chat_template[d->chat_template_len] = '\0';
    }
    *ret = v;
    return 0;
fail:
    if (v->str_blob == NULL) { /* strings not synced yet */
        free(b.st.blob);
        free(b.st.off);
    }
    tok_free(v);
    if (err != NULL && err->code == 0)
        eng_error_set(err, rc, "building the tokenizer failed: %s",
                      rc == -ENOMEM ? "out of memory" : rc == -E2BIG ? "too large" : "invalid vocabulary");
    else if (err != NULL)
        err->code = rc;
    return rc;
}

/* ---- properties ---- */

int32_t tok_n_vocab(const tok_vocab *v) { return v->n_vocab; }
int tok_model(const tok_vocab *v) { return v->model; }
int32_t tok_bos(const tok_vocab *v) { return v->bos; }
int32_t tok_eos(const tok_vocab *v) { return v->eos; }
int32_t tok_eot(const tok_vocab *v) { return v->eot; }
int32_t tok_unk(const tok_vocab *v) { return v->unk; }
int32_t tok_pad(const tok_vocab *v) { return v->pad; }
bool tok_add_bos(const tok_vocab *v) { return v->add_bos; }
bool tok_add_eos(const tok_vocab *v) { return v->add_eos; }
bool tok_add_space_prefix(const tok_vocab *v) { return v->add_space_prefix; }
const char *tok_chat_template(const tok_vocab *v) { return v->chat_template; }
size_t tok_max_piece_len(const tok_vocab *v) { return v->max_piece; }

int tok_type(const tok_vocab *v, int32_t id)
{
    if (id < 0 || id >= v->n_vocab)
        return -EINVAL;
    return v->types[id];
}

bool tok_is_control(const tok_vocab *v, int32_t id)
{
    if (id < 0 || id >= v->n_vocab)
        return false;
    return v->types[id] == TOK_TYPE_CONTROL || v->types[id] == TOK_TYPE_UNKNOWN;
}

bool tok_is_eog(const tok_vocab *v, int32_t id)
{
    size_t lo = 0, hi = v->n_eog;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v->eog[mid] == id)
            return true;
        if (v->eog[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

size_t tok_stop_tokens(const tok_vocab *v, int32_t *out, size_t cap)
{
    for (size_t i = 0; i < v->n_eog && i < cap; i++)
        out[i] = v->eog[i];
    return v->n_eog;
}

int32_t tok_find(const tok_vocab *v, const char *s, size_t len)
{
    int32_t k = tok_lookup_str(v, s, len);
    return k < v->n_vocab ? k : -1;
}

int tok_text(const tok_vocab *v, int32_t id, const char **ret_ptr, size_t *ret_len)
{
    if (id < 0 || id >= v->n_vocab)
        return -EINVAL;
    *ret_ptr = v->str_blob + v->str_off[id];
    *ret_len = v->str_off[id + 1] - v->str_off[id];
    return 0;
}

int tok_piece(const tok_vocab *v, int32_t id, unsigned flags, const char **ret_ptr,
              size_t *ret_len)
{
    if (id < 0 || id >= v->n_vocab)
        return -EINVAL;
    int t = v->types[id];
    if ((flags & TOK_PIECE_SPECIAL) && (t == TOK_TYPE_CONTROL || t == TOK_TYPE_UNKNOWN))
        return tok_text(v, id, ret_ptr, ret_len);
    *ret_ptr = v->piece_blob + v->piece_off[id];
    *ret_len = v->piece_off[id + 1] - v->piece_off[id];
    return 0;
}
