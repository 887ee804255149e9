/* Chat templates: build a model's prompt from role/content messages, as token ids.
 *
 * Four template families are built in (no Jinja engine): Llama 2 ([INST] / <<SYS>>),
 * Llama 3 (<|start_header_id|> ... <|eot_id|>), ChatML (<|im_start|> ... <|im_end|>) and
 * Zephyr/TinyLlama (<|user|> ... </s>). The family is recognised from distinctive markers in
 * the GGUF's tokenizer.chat_template; an unrecognised template is an error unless the caller
 * configures a fallback family.
 *
 * The prompt is tokenized segment by segment: template text is trusted (its control tokens,
 * e.g. <|eot_id|>, become those tokens), while message contents are user text, in which
 * control tokens are never recognised: a user message containing "<|eot_id|>" is tokenized
 * as the characters, not as the end-of-turn token. Roles are restricted to [A-Za-z0-9_-]
 * (1..32 chars; Llama 2 takes only system/user/assistant).
 *
 * End of a turn: the ids that should stop generation are tok_stop_tokens() (eos, eot,
 * <|im_end|>, <|eot_id|>, ...).
 */
#ifndef LLAMAD_CHAT_H
#define LLAMAD_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eng_error.h"
#include "tokenizer.h"

enum chat_tmpl {
    CHAT_TMPL_UNKNOWN = 0,
    CHAT_TMPL_LLAMA2 = 1,
    CHAT_TMPL_LLAMA3 = 2,
    CHAT_TMPL_CHATML = 3,
    CHAT_TMPL_ZEPHYR = 4,
};

/* Family of a Jinja chat template string (NULL or unrecognised: CHAT_TMPL_UNKNOWN). */
int chat_template_detect(const char *tmpl);
/* "llama2", "llama3", "chatml", "zephyr" -> the family; -EINVAL for another name. */
int chat_template_from_name(const char *name);
/* Name of a family ("unknown" for anything else). */
const char *chat_template_name(int tmpl);

/* The family to use for a vocab: the one recognised in its chat template, else fallback
 * (CHAT_TMPL_UNKNOWN for none). Without either: -ENOTSUP and a message naming the problem. */
int chat_resolve(const tok_vocab *v, int fallback, int *ret_tmpl, eng_error *err);

typedef struct chat_msg {
    const char *role;    /* NUL-terminated */
    const char *content; /* content_len bytes (any bytes) */
    size_t content_len;
} chat_msg;

/* Builds the prompt as token ids. add_generation_prompt appends the assistant header so the
 * model answers next (Llama 2 has none: its prompt ends with [/INST]). BOS is added as the
 * family requires (Llama 2 once per turn, Llama 3 once, ChatML/Zephyr when the vocab's
 * add_bos says so). Writes up to cap ids; *ret_n is the count; -ENOBUFS when cap is too small
 * (*ret_n then holds the count needed). -EINVAL for a bad role, family or argument. */
int chat_build(const tok_vocab *v, int tmpl, const chat_msg *msgs, size_t n_msgs,
               bool add_generation_prompt, int32_t *out, size_t cap, size_t *ret_n,
               eng_error *err);

/* The same prompt as text, special tokens written out ("<s>", "<|eot_id|>"); for logs and
 * tests. Writes up to cap bytes plus a NUL when it fits; *ret_len is the full length. */
int chat_render(const tok_vocab *v, int tmpl, const chat_msg *msgs, size_t n_msgs,
                bool add_generation_prompt, char *out, size_t cap, size_t *ret_len,
                eng_error *err);

#endif
