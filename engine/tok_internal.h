/* Internals shared by the tokenizer sources (tok_*.c). Not a public header. */
#ifndef LLAMAD_TOK_INTERNAL_H
#define LLAMAD_TOK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tokenizer.h"

enum tok_pre {
    TOK_PRE_DEFAULT = 0,
    TOK_PRE_GPT2,
    TOK_PRE_LLAMA3,
    TOK_PRE_DEEPSEEK_LLM,
    TOK_PRE_DEEPSEEK_CODER,
};

/* BPE merge (left, right) -> rank and the symbol the pair becomes. */
typedef struct tok_merge {
    uint32_t left, right;
    int32_t rank;   /* -1: empty slot */
    int32_t result; /* string index of left+right, -1 if that string is unknown */
} tok_merge;

typedef struct tok_trie_node {
    int32_t child, sibling;
    int32_t term; /* index into vocab->special (match order), -1 if no token ends here */
    uint8_t byte;
} tok_trie_node;

struct tok_vocab {
    int model;
    int pre;
    int32_t n_vocab;

    /* Strings: token texts [0, n_vocab), then BPE merge parts that are not tokens. */
    uint32_t n_str;
    char *str_blob;
    uint32_t *str_off; /* n_str + 1 */
    uint32_t *hslots;  /* open addressing, string index + 1 (0 = empty) */
    uint32_t hmask;

    float *scores;
    uint8_t *types;

    char *piece_blob;
    uint32_t *piece_off; /* n_vocab + 1 */
    uint32_t max_piece;  /* longest piece, counting special renderings */

    /* BPE */
    tok_merge *merges;
    uint32_t merge_mask;
    bool ignore_merges;
    int32_t byte_sym[256];      /* string index of the byte-level character of each byte */
    int32_t byte_fb[256][2];    /* fallback ids for the (<= 2) bytes of that character */
    char byte_enc[256][2];
    uint8_t byte_enc_len[256];

    /* SPM */
    int32_t spm_byte_tok[256];
    bool spm_split_at_space; /* no token has U+2581 after other text (see tok_spm.c) */

    /* Special tokens (control, unknown, user-defined) in match order: longest first. */
    int32_t *special;
    uint32_t n_special;
    tok_trie_node *trie;
    uint32_t n_trie;
    uint8_t special_first[32]; /* bitmap of first bytes */

    int32_t bos, eos, eot, eom, unk, pad;
    bool add_bos, add_eos, add_space_prefix;
    int32_t *eog;
    uint32_t n_eog;
    char *chat_template;
};

static inline uint64_t tok_hash_bytes(const char *s, size_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0x94d049bb133111ebull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return h;
}

static inline uint64_t tok_hash_pair(uint32_t a, uint32_t b)
{
    uint64_t h = ((uint64_t)a << 32 | b) * 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return h;
}

/* String index of s (token ids for tokens; the last token wins for duplicate texts), or -1. */
static inline int32_t tok_lookup_str(const tok_vocab *v, const char *s, size_t n)
{
    uint32_t i = (uint32_t)tok_hash_bytes(s, n) & v->hmask;
    for (;;) {
        uint32_t e = v->hslots[i];
        if (e == 0)
            return -1;
        uint32_t k = e - 1;
        uint32_t kl = v->str_off[k + 1] - v->str_off[k];
        if (kl == n && memcmp(v->str_blob + v->str_off[k], s, n) == 0)
            return (int32_t)k;
        i = (i + 1) & v->hmask;
    }
}

/* Merge of (left, right) or NULL. */
static inline const tok_merge *tok_find_merge(const tok_vocab *v, uint32_t l, uint32_t r)
{
    uint32_t i = (uint32_t)tok_hash_pair(l, r) & v->merge_mask;
    for (;;) {
        const tok_merge *m = &v->merges[i];
        if (m->rank < 0)
            return NULL;
        if (m->left == l && m->right == r)
            return m;
        i = (i + 1) & v->merge_mask;
    }
}

/* Output sink for encoders: counts every token, stores the first cap. */
typedef struct tok_out {
    int32_t *ids;
    size_t cap;
    size_t n;
} tok_out;

static inline void tok_out_push(tok_out *o, int32_t id)
{
    if (o->n < o->cap)
        o->ids[o->n] = id;
    o->n++;
}

/* Model encoders over one text fragment (no special tokens inside). */
int tok_spm_encode(const tok_vocab *v, const char *text, size_t len, bool add_prefix,
                   tok_out *out);
int tok_bpe_encode(const tok_vocab *v, const char *text, size_t len, tok_out *out);

/* Pre-tokenizer: splits cps[0, n) into words; writes word end positions (exclusive, in
 * codepoints, increasing, last == n) to ends and returns their count. flags[i] holds
 * unicode_flags(cps[i]). ends and tmp have room for n entries each. */
size_t tok_pretokenize(int pre, const uint32_t *cps, const uint8_t *flags, size_t n,
                       uint32_t *ends, uint32_t *tmp);

#endif
