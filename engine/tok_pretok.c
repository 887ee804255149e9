/* BPE pre-tokenizers: split the text into words before the merges, the way llama.cpp does for
 * each tokenizer.ggml.pre. Each pre-tokenizer is a list of regexes applied in turn: every
 * regex splits each piece left by the previous one into its matches and the text between
 * them (nothing is dropped). The regexes are implemented by hand here, with llama.cpp's
 * semantics:
 *   - \s is the White_Space property (llama.cpp maps non-ASCII spaces to \v for std::regex),
 *   - \p{L}, \p{N}, \p{P} are the Unicode general category groups,
 *   - a regex applied to a piece sees only that piece ($ is the end of the piece).
 * The GPT-2 and Llama 3 regexes follow llama.cpp's hand-written matchers, which are what it
 * runs for them. */
#include "tok_internal.h"
#include "unicode_data.h"

typedef struct cprange {
    uint32_t lo, hi;
} cprange;

/* deepseek-llm, regex 2: "\s?[A-Za-zµÀ-Ö...𞤀-𞥃]+" (the cased letters of its tokenizer.json). */
static const cprange ds_letters[] = {
    {0x41, 0x5A}, {0x61, 0x7A}, {0xB5, 0xB5}, {0xC0, 0xD6}, {0xD8, 0xF6}, {0xF8, 0x1BA},
    {0x1BC, 0x1BF}, {0x1C4, 0x293}, {0x295, 0x2AF}, {0x370, 0x373}, {0x376, 0x377},
    {0x37B, 0x37D}, {0x37F, 0x37F}, {0x386, 0x386}, {0x388, 0x38A}, {0x38C, 0x38C},
    {0x38E, 0x3A1}, {0x3A3, 0x3F5}, {0x3F7, 0x481}, {0x48A, 0x52F}, {0x531, 0x556},
    {0x10A0, 0x10C5}, {0x13A0, 0x13F5}, {0x13F8, 0x13FD}, {0x1C90, 0x1CBA}, {0x1CBD, 0x1CBF},
    {0x1D00, 0x1D2B}, {0x1D6B, 0x1D77}, {0x1D79, 0x1D9A}, {0x1E00, 0x1F15}, {0x1F18, 0x1F1D},
    {0x1F20, 0x1F45}, {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F59}, {0x1F5B, 0x1F5B},
    {0x1F5D, 0x1F5D}, {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC}, {0x1FBE, 0x1FBE},
    {0x1FC2, 0x1FC4}, {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB}, {0x1FE0, 0x1FEC},
    {0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFC}, {0x2102, 0x2102}, {0x2107, 0x2107}, {0x210A, 0x2113},
    {0x2115, 0x2115}, {0x2119, 0x211D}, {0x2124, 0x2124}, {0x2126, 0x2126}, {0x2128, 0x2128},
    {0x212A, 0x212D}, {0x212F, 0x2134}, {0x2139, 0x2139}, {0x213C, 0x213F}, {0x2145, 0x2149},
    {0x214E, 0x214E}, {0x2183, 0x2184}, {0x2C00, 0x2C7B}, {0x2C7E, 0x2CE4}, {0x2CEB, 0x2CEE},
    {0x2CF2, 0x2CF3}, {0xA640, 0xA66D}, {0xA680, 0xA69B}, {0xA722, 0xA76F}, {0xA771, 0xA787},
    {0xA78B, 0xA78E}, {0xAB70, 0xABBF}, {0xFB00, 0xFB06}, {0xFB13, 0xFB17}, {0xFF21, 0xFF3A},
    {0xFF41, 0xFF5A}, {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
    {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
};

/* deepseek-llm, regex 3: "\s?[!-/:-~！-／：-～‘-‟　-。]+" */
static const cprange ds_punct[] = {
    {0x21, 0x2F}, {0x3A, 0x7E}, {0x2018, 0x201F}, {0x3000, 0x3002}, {0xFF01, 0xFF0F},
    {0xFF1A, 0xFF5E},
};

/* "[一-龥ࠀ-一가-퟿]+" (deepseek-llm and deepseek-coder) */
static const cprange ds_cjk[] = {
    {0x800, 0x9FA5}, {0xAC00, 0xD7FF},
};

static bool in_ranges(const cprange *r, size_t n, uint32_t cp)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < r[mid].lo)
            hi = mid;
        else if (cp > r[mid].hi)
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

enum pred {
    P_CRLF,      /* [\r\n] */
    P_LETTER,    /* \p{L} */
    P_NUMBER,    /* \p{N} */
    P_PUNCT,     /* \p{P} */
    P_DEF_PUNCT, /* [\p{P}\$\+<=>\^~\|] */
    P_DS_LETTER, /* deepseek-llm letters */
    P_DS_PUNCT,  /* deepseek-llm punctuation */
    P_CJK,       /* [一-龥ࠀ-一가-퟿] */
};

typedef struct ctx {
    const uint32_t *cps;
    const uint8_t *fl;
} ctx;

static inline bool is_ws(const ctx *c, size_t i) { return (c->fl[i] & UNICODE_WS) != 0; }
static inline unsigned cat(const ctx *c, size_t i) { return c->fl[i] & UNICODE_CAT_MASK; }

static bool pred_at(const ctx *c, int p, size_t i)
{
    uint32_t cp = c->cps[i];
    switch (p) {
    case P_CRLF: return cp == '\r' || cp == '\n';
    case P_LETTER: return cat(c, i) == UNICODE_CAT_L;
    case P_NUMBER: return cat(c, i) == UNICODE_CAT_N;
    case P_PUNCT: return cat(c, i) == UNICODE_CAT_P;
    case P_DEF_PUNCT:
        return cat(c, i) == UNICODE_CAT_P || cp == '$' || cp == '+' || cp == '<' || cp == '=' ||
               cp == '>' || cp == '^' || cp == '~' || cp == '|';
    /* the literal classes see non-ASCII spaces as \v, which none of them contains */
    case P_DS_LETTER:
        return !(cp > 0x7F && is_ws(c, i)) &&
               in_ranges(ds_letters, sizeof ds_letters / sizeof ds_letters[0], cp);
    case P_DS_PUNCT:
        return !(cp > 0x7F && is_ws(c, i)) &&
               in_ranges(ds_punct, sizeof ds_punct / sizeof ds_punct[0], cp);
    case P_CJK:
        return !(cp > 0x7F && is_ws(c, i)) &&
               in_ranges(ds_cjk, sizeof ds_cjk / sizeof ds_cjk[0], cp);
    }
    return false;
}

typedef struct sink {
    uint32_t *ends;
    size_t n;
    uint32_t last;
} sink;

static inline void emit(sink *s, size_t end)
{
    if (end > s->last) {
        s->ends[s->n++] = (uint32_t)end;
        s->last = (uint32_t)end;
    }
}

/* ---- one regex over one piece [a, b) ---- */

enum stage_kind {
    S_SINGLE,    /* pred: every matching codepoint alone */
    S_RUN,       /* pred+ */
    S_OPTWS_RUN, /* \s?pred+ (pred never matches whitespace) */
    S_TRAIL_WS,  /* \s+$ */
    S_DIGIT3,    /* [0-9][0-9][0-9] */
    S_GPT2,
    S_LLAMA3,
};

typedef struct stage {
    int kind;
    int pred;
} stage;

static void split_simple(const ctx *c, const stage *st, size_t a, size_t b, sink *s)
{
    size_t p = a;
    switch (st->kind) {
    case S_SINGLE:
        for (; p < b; p++)
            if (pred_at(c, st->pred, p)) {
                emit(s, p);
                emit(s, p + 1);
            }
        break;
    case S_RUN:
        while (p < b) {
            if (!pred_at(c, st->pred, p)) {
                p++;
                continue;
            }
            emit(s, p);
            while (p < b && pred_at(c, st->pred, p))
                p++;
            emit(s, p);
        }
        break;
    case S_OPTWS_RUN:
        while (p < b) {
            size_t start;
            if (is_ws(c, p) && p + 1 < b && pred_at(c, st->pred, p + 1))
                start = p++;
            else if (pred_at(c, st->pred, p))
                start = p;
            else {
                p++;
                continue;
            }
            emit(s, start);
            while (p < b && pred_at(c, st->pred, p))
                p++;
            emit(s, p);
        }
        break;
    case S_TRAIL_WS: {
        size_t q = b;
        while (q > a && is_ws(c, q - 1))
            q--;
        if (q < b) {
            emit(s, q);
            emit(s, b);
        }
        break;
    }
    case S_DIGIT3:
        while (p < b) {
            if (p + 2 < b && c->cps[p] - '0' < 10 && c->cps[p + 1] - '0' < 10 &&
                c->cps[p + 2] - '0' < 10) {
                emit(s, p);
                emit(s, p + 3);
                p += 3;
            } else {
                p++;
            }
        }
        break;
    }
    emit(s, b);
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S) */
static void split_gpt2(const ctx *c, size_t a, size_t b, sink *s)
{
    const uint32_t *cps = c->cps;
    size_t pos = a;
    while (pos < b) {
        uint32_t cp = cps[pos];
        if (cp == '\'' && pos + 1 < b) {
            uint32_t nx = cps[pos + 1];
            if (nx == 's' || nx == 't' || nx == 'm' || nx == 'd') {
                pos += 2;
                emit(s, pos);
                continue;
            }
            if (pos + 2 < b) {
                uint32_t nn = cps[pos + 2];
                if ((nx == 'r' && nn == 'e') || (nx == 'v' && nn == 'e') || (nx == 'l' && nn == 'l')) {
                    pos += 3;
                    emit(s, pos);
                    continue;
                }
            }
        }
        size_t p2 = cp == ' ' ? pos + 1 : pos;
        if (p2 < b) {
            unsigned k = cat(c, p2);
            if (k == UNICODE_CAT_L || k == UNICODE_CAT_N) {
                pos = p2;
                while (pos < b && cat(c, pos) == k)
                    pos++;
                emit(s, pos);
                continue;
            }
            if (!is_ws(c, p2)) {
                pos = p2;
                while (pos < b && !is_ws(c, pos) && cat(c, pos) != UNICODE_CAT_L &&
                       cat(c, pos) != UNICODE_CAT_N)
                    pos++;
                emit(s, pos);
                continue;
            }
        }
        size_t nws = 0;
        while (pos + nws < b && is_ws(c, pos + nws))
            nws++;
        if (nws > 1 && pos + nws < b) {
            pos += nws - 1;
            emit(s, pos);
            continue;
        }
        if (nws > 0) {
            pos += nws;
            emit(s, pos);
            continue;
        }
        pos++;
        emit(s, pos);
    }
    emit(s, b);
}

static inline uint32_t ascii_lower(uint32_t cp)
{
    return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
 * \s*[\r\n]+|\s+(?!\S)|\s+ */
static void split_llama3(const ctx *c, size_t a, size_t b, sink *s)
{
    const uint32_t *cps = c->cps;
    size_t pos = a;
    while (pos < b) {
        uint32_t cp = cps[pos];
        unsigned k = cat(c, pos);
        if (cp == '\'' && pos + 1 < b) {
            uint32_t nx = ascii_lower(cps[pos + 1]);
            if (nx == 's' || nx == 't' || nx == 'm' || nx == 'd') {
                pos += 2;
                emit(s, pos);
                continue;
            }
            if (pos + 2 < b) {
                uint32_t nn = ascii_lower(cps[pos + 2]);
                if ((nx == 'r' && nn == 'e') || (nx == 'v' && nn == 'e') || (nx == 'l' && nn == 'l')) {
                    pos += 3;
                    emit(s, pos);
                    continue;
                }
            }
        }
        if (!(cp == '\r' || cp == '\n' || k == UNICODE_CAT_N)) {
            if (k == UNICODE_CAT_L || (pos + 1 < b && cat(c, pos + 1) == UNICODE_CAT_L)) {
                pos++;
                while (pos < b && cat(c, pos) == UNICODE_CAT_L)
                    pos++;
                emit(s, pos);
                continue;
            }
        }
        if (k == UNICODE_CAT_N) {
            size_t ini = pos;
            while (pos < b && cat(c, pos) == UNICODE_CAT_N) {
                if (++pos - ini >= 3) {
                    emit(s, pos);
                    ini = pos;
                }
            }
            emit(s, pos);
            continue;
        }
        size_t p2 = cp == ' ' ? pos + 1 : pos;
        bool other2 = p2 >= b || (!is_ws(c, p2) && cat(c, p2) != UNICODE_CAT_L &&
                                  cat(c, p2) != UNICODE_CAT_N);
        if (other2) {
            pos = p2;
            while (pos < b && !is_ws(c, pos) && cat(c, pos) != UNICODE_CAT_L &&
                   cat(c, pos) != UNICODE_CAT_N)
                pos++;
            while (pos < b && (cps[pos] == '\r' || cps[pos] == '\n'))
                pos++;
            emit(s, pos);
            continue;
        }
        size_t nws = 0, last_rn = 0;
        while (pos + nws < b && is_ws(c, pos + nws)) {
            uint32_t c2 = cps[pos + nws];
            if (c2 == '\r' || c2 == '\n')
                last_rn = pos + nws + 1;
            nws++;
        }
        if (last_rn > 0) {
            pos = last_rn;
            emit(s, pos);
            continue;
        }
        if (nws > 1 && pos + nws < b) {
            pos += nws - 1;
            emit(s, pos);
            continue;
        }
        if (nws > 0) {
            pos += nws;
            emit(s, pos);
            continue;
        }
        pos++;
        emit(s, pos);
    }
    emit(s, b);
}

static const stage stages_default[] = {
    {S_RUN, P_DEF_PUNCT}, {S_GPT2, 0}, {S_RUN, P_NUMBER}, {S_DIGIT3, 0},
};
static const stage stages_gpt2[] = {{S_GPT2, 0}};
static const stage stages_llama3[] = {{S_LLAMA3, 0}};
static const stage stages_ds_llm[] = {
    {S_SINGLE, P_CRLF}, {S_OPTWS_RUN, P_DS_LETTER}, {S_OPTWS_RUN, P_DS_PUNCT},
    {S_TRAIL_WS, 0},    {S_RUN, P_CJK},             {S_RUN, P_NUMBER},
};
static const stage stages_ds_coder[] = {
    {S_SINGLE, P_CRLF}, {S_OPTWS_RUN, P_LETTER}, {S_OPTWS_RUN, P_PUNCT},
    {S_RUN, P_CJK},     {S_SINGLE, P_NUMBER},
};

size_t tok_pretokenize(int pre, const uint32_t *cps, const uint8_t *flags, size_t n,
                       uint32_t *ends, uint32_t *tmp)
{
    const stage *st;
    size_t ns;
    switch (pre) {
    case TOK_PRE_GPT2: st = stages_gpt2; ns = 1; break;
    case TOK_PRE_LLAMA3: st = stages_llama3; ns = 1; break;
    case TOK_PRE_DEEPSEEK_LLM: st = stages_ds_llm; ns = 6; break;
    case TOK_PRE_DEEPSEEK_CODER: st = stages_ds_coder; ns = 5; break;
    default: st = stages_default; ns = 4; break;
    }
    if (n == 0)
        return 0;
    ctx c = {cps, flags};
    /* current pieces live in `cur`; each stage writes into the other buffer */
    uint32_t *cur = (ns % 2 == 0) ? ends : tmp; /* so that the last stage writes into ends */
    uint32_t *nxt = cur == ends ? tmp : ends;
    cur[0] = (uint32_t)n;
    size_t ncur = 1;
    for (size_t k = 0; k < ns; k++) {
        sink s = {nxt, 0, 0};
        size_t a = 0;
        for (size_t i = 0; i < ncur; i++) {
            size_t b = cur[i];
            if (st[k].kind == S_GPT2)
                split_gpt2(&c, a, b, &s);
            else if (st[k].kind == S_LLAMA3)
                split_llama3(&c, a, b, &s);
            else
                split_simple(&c, &st[k], a, b, &s);
            a = b;
        }
        uint32_t *t = cur;
        cur = nxt;
        nxt = t;
        ncur = s.n;
    }
    return ncur;
}
