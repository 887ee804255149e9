/* Tokenizers for llamad: SentencePiece-style (tokenizer.ggml.model "llama", score-based merges,
 * byte fallback) and byte-level BPE (tokenizer.ggml.model "gpt2", rank-based merges with the
 * pre-tokenizers "default", "gpt-2", "llama-bpe", "deepseek-llm", "deepseek-coder"), a
 * token -> piece table and a streaming detokenizer.
 *
 * The results reproduce llama.cpp's tokenizer (b4747) exactly, including its edge cases:
 * the SPM dummy-prefix space after BOS and after every special token, the split of the input
 * on special tokens (longest first), the lenient UTF-8 reading of the BPE path (an invalid
 * byte becomes U+FFFD), and its pre-tokenizer regexes.
 *
 * A tok_vocab is built once per model and is immutable afterwards: every function here may
 * be called on the same vocab from any number of threads at once. Encoding allocates only
 * per-call scratch proportional to the input (freed before returning); nothing is cached.
 *
 * Functions return 0 or a negative errno code; ret_* outputs are untouched on failure.
 * Every token id that comes in is checked (0 <= id < n_vocab).
 */
#ifndef LLAMAD_TOKENIZER_H
#define LLAMAD_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eng_error.h"

typedef struct tok_vocab tok_vocab;
struct gguf_file;

enum tok_model {
    TOK_MODEL_SPM = 1, /* tokenizer.ggml.model "llama" */
    TOK_MODEL_BPE = 2, /* tokenizer.ggml.model "gpt2" */
};

/* Token types (tokenizer.ggml.token_type). */
enum tok_type {
    TOK_TYPE_UNDEFINED = 0,
    TOK_TYPE_NORMAL = 1,
    TOK_TYPE_UNKNOWN = 2,
    TOK_TYPE_CONTROL = 3,
    TOK_TYPE_USER_DEFINED = 4,
    TOK_TYPE_UNUSED = 5,
    TOK_TYPE_BYTE = 6,
};

/* ---- building a vocabulary ---- */

typedef struct tok_str {
    const char *ptr;
    size_t len;
} tok_str;

/* A vocabulary described in memory (what tok_load_from_gguf reads from the file). The
 * builder copies everything it needs: the arrays can be freed afterwards. */
typedef struct tok_vocab_desc {
    int model;               /* enum tok_model */
    const char *pre;         /* BPE pre-tokenizer name; NULL means "default" */
    size_t n_tokens;
    const tok_str *tokens;   /* token texts as stored (SPM: with U+2581; BPE: byte-level) */
    const float *scores;     /* NULL: all 0 */
    const int32_t *types;    /* enum tok_type per token; NULL: all normal */
    size_t n_merges;         /* BPE only: "left right", rank = index */
    const tok_str *merges;
    /* Special token ids; TOK_ID_DEFAULT takes the model's default (SPM: unk 0, bos 1, eos 2;
     * BPE: none), -1 means none. Out-of-range ids are ignored (default kept), as llama.cpp. */
    int64_t bos, eos, unk, eot, eom, pad;
    /* Flags: 1/0, or -1 for the default (SPM: add_bos 1, add_space_prefix 1; BPE: add_bos 1
     * only for the Llama 3 pre-tokenizer; add_eos 0). */
    int add_bos, add_eos, add_space_prefix;
    const char *chat_template; /* tokenizer.chat_template, copied; NULL if none */
    size_t chat_template_len;
} tok_vocab_desc;

#define TOK_ID_DEFAULT INT64_MIN

/* Fills d with "everything default" (ids TOK_ID_DEFAULT, flags -1, no arrays). */
void tok_vocab_desc_init(tok_vocab_desc *d);

/* Builds a vocabulary. Errors: -EINVAL (bad model, empty vocab, bad type), -ENOTSUP (unknown
 * BPE pre-tokenizer), -E2BIG (sizes beyond the limits), -ENOMEM. */
int tok_vocab_build(const tok_vocab_desc *d, tok_vocab **ret, eng_error *err);

/* Reads tokenizer.ggml.* (model, pre, tokens, scores, token_type, merges, special ids,
 * add_bos/add_eos/add_space_prefix) and tokenizer.chat_template from a GGUF file. The vocab
 * does not refer to the file afterwards (it can be closed). */
int tok_load_from_gguf(const struct gguf_file *f, tok_vocab **ret, eng_error *err);

void tok_free(tok_vocab *v);

/* ---- properties ---- */

int32_t tok_n_vocab(const tok_vocab *v);
int tok_model(const tok_vocab *v);         /* enum tok_model */
const char *tok_pre_name(const tok_vocab *v); /* canonical pre-tokenizer name */
int32_t tok_bos(const tok_vocab *v);       /* -1 if none */
int32_t tok_eos(const tok_vocab *v);
int32_t tok_eot(const tok_vocab *v);       /* from metadata, or found by text (<|eot_id|>, ...) */
int32_t tok_unk(const tok_vocab *v);
int32_t tok_pad(const tok_vocab *v);
bool tok_add_bos(const tok_vocab *v);
bool tok_add_eos(const tok_vocab *v);
bool tok_add_space_prefix(const tok_vocab *v);
/* tokenizer.chat_template (NUL-terminated), or NULL. */
const char *tok_chat_template(const tok_vocab *v);

/* Type of a token (enum tok_type), -EINVAL for an invalid id. */
int tok_type(const tok_vocab *v, int32_t id);
/* Control and unknown tokens (<s>, <|eot_id|>, ...): never produced from user text. */
bool tok_is_control(const tok_vocab *v, int32_t id);
/* End-of-generation: eos, eot, eom and the tokens llama.cpp treats as such by their text
 * (<|eot_id|>, <|im_end|>, <|end|>, <end_of_turn>, <|endoftext|>, <|eom_id|>, <EOT>). */
bool tok_is_eog(const tok_vocab *v, int32_t id);
/* The end-of-generation ids in increasing order: writes min(count, cap) ids to out (may be
 * NULL when cap is 0) and returns the count. */
size_t tok_stop_tokens(const tok_vocab *v, int32_t *out, size_t cap);
/* Id of the token whose text (as stored) is exactly s, or -1. */
int32_t tok_find(const tok_vocab *v, const char *s, size_t len);
/* Stored text of a token (SPM: with U+2581; BPE: byte-level encoded). */
int tok_text(const tok_vocab *v, int32_t id, const char **ret_ptr, size_t *ret_len);

/* ---- encoding ---- */

enum tok_encode_flags {
    TOK_ADD_BOS_AUTO = 0,   /* BOS if the vocab says add_bos, EOS if it says add_eos */
    TOK_ADD_BOS_FORCE = 1,  /* BOS always (if the vocab has one), EOS if add_eos */
    TOK_ADD_BOS_NONE = 2,   /* neither */
    TOK_ADD_BOS_MASK = 3,
    /* Recognise control tokens written in the text ("<|eot_id|>" becomes that token).
     * Without it they are tokenized as ordinary text, so user text cannot inject them.
     * User-defined tokens (type 4) are always recognised, as in llama.cpp. */
    TOK_PARSE_SPECIAL = 4,
};

/* Maximum number of tokens tok_encode can produce for len bytes of text. */
size_t tok_encode_bound(const tok_vocab *v, size_t len);

/* Encodes text (any bytes; invalid UTF-8 is handled like llama.cpp does). Writes up to cap
 * ids to out and sets *ret_n to the number of tokens. If cap is too small, returns -ENOBUFS
 * and sets *ret_n to the number needed (out then holds the first cap ids).
 * Other errors: -E2BIG (text longer than 1 GiB), -ENOMEM. */
int tok_encode(const tok_vocab *v, const char *text, size_t len, unsigned flags,
               int32_t *out, size_t cap, size_t *ret_n);

/* Encoding a sequence of segments, for prompts built from trusted template text and
 * untrusted user text. Consecutive text segments are tokenized as one text (exactly as if
 * concatenated), but control tokens are recognised only where they lie entirely inside one
 * TOK_SEG_TRUSTED segment. A TOK_SEG_TOKEN segment puts that id in place (and splits the
 * text around it, like a special token found in the text). flags: only the TOK_ADD_BOS_*
 * bits count. Errors as tok_encode, plus -EINVAL for a bad segment or token id. */
enum tok_seg_kind {
    TOK_SEG_TEXT = 0,    /* user text: control tokens are not recognised */
    TOK_SEG_TRUSTED = 1, /* template text: control tokens are recognised */
    TOK_SEG_TOKEN = 2,   /* one token id */
};
typedef struct tok_segment {
    int kind;          /* enum tok_seg_kind */
    const char *text;  /* TEXT / TRUSTED */
    size_t len;
    int32_t id;        /* TOKEN */
} tok_segment;

int tok_encode_segments(const tok_vocab *v, const tok_segment *segs, size_t n_segs,
                        unsigned flags, int32_t *out, size_t cap, size_t *ret_n);

/* ---- pieces and detokenizing ---- */

enum tok_piece_flags {
    /* Render control/unknown tokens as their text ("<|eot_id|>"); by default they render as
     * nothing, like llama.cpp's token_to_piece(special=false). */
    TOK_PIECE_SPECIAL = 1,
};

/* The bytes a token stands for: SPM U+2581 becomes a space, <0xNN> byte tokens give that
 * byte, BPE byte-level characters are decoded back to bytes. A piece can be part of a UTF-8
 * character (byte tokens, BPE tokens that split a character). The pointer stays valid as
 * long as the vocab. Unused tokens give an empty piece. -EINVAL for an invalid id. */
int tok_piece(const tok_vocab *v, int32_t id, unsigned flags, const char **ret_ptr,
              size_t *ret_len);
/* Longest piece in bytes. */
size_t tok_max_piece_len(const tok_vocab *v);

enum tok_detok_flags {
    TOK_DETOK_SPECIAL = 1,      /* render control tokens as text (as TOK_PIECE_SPECIAL) */
    /* Drop one leading space from the first piece that produces text. With SPM vocabs this
     * undoes the dummy-prefix space that encoding adds, so decode(encode(s)) == s; llama.cpp's
     * detokenizer does the same. Off by default: generated text continues a prompt and keeps
     * its spaces (the server's generated_text keeps " Once" for the first token). */
    TOK_DETOK_STRIP_SPACE = 2,
};

/* Streaming detokenizer: push ids one at a time, get text made only of complete, valid UTF-8
 * characters. Bytes of a character split across tokens are held until it is complete. Bytes
 * that cannot be part of valid UTF-8 (invalid lead or continuation bytes, overlong forms,
 * surrogates, > U+10FFFF) are replaced by U+FFFD, one per maximal invalid subpart (the
 * Unicode/WHATWG convention); tok_detok_flush turns an incomplete character left at the end
 * into one U+FFFD. The state is a plain struct (no allocation); one per sequence. */
typedef struct tok_detok {
    const tok_vocab *v;
    unsigned flags;
    uint8_t pend[4];
    uint8_t n_pend;
    bool started; /* a piece with text has been emitted */
} tok_detok;

void tok_detok_init(tok_detok *d, const tok_vocab *v, unsigned flags);
/* An output capacity that always suffices for one push or flush. */
size_t tok_detok_out_max(const tok_vocab *v);
/* Adds one token; writes the newly complete text (not NUL-terminated) to out and its length
 * to *ret_len. -EINVAL for an invalid id, -ENOBUFS if cap could be too small (nothing is
 * consumed; use tok_detok_out_max()). */
int tok_detok_push(tok_detok *d, int32_t id, char *out, size_t cap, size_t *ret_len);
/* Ends the stream: emits U+FFFD for an incomplete character, and resets the state. */
int tok_detok_flush(tok_detok *d, char *out, size_t cap, size_t *ret_len);

/* Whole-sequence convenience over the streaming detokenizer (flushes at the end). Writes up
 * to cap bytes and sets *ret_len to the full length; -ENOBUFS if cap was too small. */
int tok_decode(const tok_vocab *v, const int32_t *ids, size_t n, unsigned flags, char *out,
               size_t cap, size_t *ret_len);

#endif
