/* Chat templates (see chat.h): messages -> segments (trusted template text, untrusted
 * content, token ids) -> tok_encode_segments. */
#include "chat.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int chat_template_detect(const char *t)
{
    if (t == NULL)
        return CHAT_TMPL_UNKNOWN;
    if (strstr(t, "<|start_header_id|>") && strstr(t, "<|end_header_id|>"))
        return CHAT_TMPL_LLAMA3;
    if (strstr(t, "<|im_start|>"))
        return CHAT_TMPL_CHATML;
    if (strstr(t, "[INST]") && strstr(t, "<<SYS>>"))
        return CHAT_TMPL_LLAMA2;
    if (strstr(t, "<|user|>") && strstr(t, "<|assistant|>") && !strstr(t, "<|end|>"))
        return CHAT_TMPL_ZEPHYR;
    return CHAT_TMPL_UNKNOWN;
}

static const char *const tmpl_names[] = {"unknown", "llama2", "llama3", "chatml", "zephyr"};

int chat_template_from_name(const char *name)
{
    for (int i = 1; i <= CHAT_TMPL_ZEPHYR; i++)
        if (name != NULL && strcmp(name, tmpl_names[i]) == 0)
            return i;
    return -EINVAL;
}

const char *chat_template_name(int t)
{
    return t >= 0 && t <= CHAT_TMPL_ZEPHYR ? tmpl_names[t] : "unknown";
}

int chat_resolve(const tok_vocab *v, int fallback, int *ret_tmpl, eng_error *err)
{
    const char *t = tok_chat_template(v);
    int k = chat_template_detect(t);
    if (k == CHAT_TMPL_UNKNOWN && fallback > CHAT_TMPL_UNKNOWN && fallback <= CHAT_TMPL_ZEPHYR)
        k = fallback;
    if (k == CHAT_TMPL_UNKNOWN) {
        if (t == NULL)
            return eng_error_set(err, -ENOTSUP,
                                 "the model has no chat template and no fallback template is configured");
        return eng_error_set(err, -ENOTSUP,
                             "chat template not recognised (starts \"%.40s\"); configure a fallback template",
                             t);
    }
    *ret_tmpl = k;
    return 0;
}

/* ---- segment list ---- */

typedef struct segs {
    tok_segment *s;
    size_t n, cap;
    int rc;
} segs;

static void add(segs *l, int kind, const char *text, size_t len, int32_t id)
{
    if (l->rc < 0)
        return;
    if (kind != TOK_SEG_TOKEN && len == 0)
        return;
    if (l->n == l->cap) {
        size_t c = l->cap ? l->cap * 2 : 32;
        tok_segment *ns = realloc(l->s, c * sizeof *ns);
        if (ns == NULL) {
            l->rc = -ENOMEM;
            return;
        }
        l->s = ns;
        l->cap = c;
    }
    l->s[l->n++] = (tok_segment){.kind = kind, .text = text, .len = len, .id = id};
}

static void trusted(segs *l, const char *s) { add(l, TOK_SEG_TRUSTED, s, strlen(s), -1); }
static void user(segs *l, const char *s, size_t n) { add(l, TOK_SEG_TEXT, s, n, -1); }
static void token(segs *l, int32_t id) { add(l, TOK_SEG_TOKEN, NULL, 0, id); }

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static void trim(const char **s, size_t *n)
{
    while (*n > 0 && is_space((*s)[0])) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && is_space((*s)[*n - 1]))
        (*n)--;
}

static bool role_ok(const char *r)
{
    size_t n = 0;
    if (r == NULL)
        return false;
    for (; r[n]; n++) {
        char c = r[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
        if (n >= 32)
            return false;
    }
    return n > 0;
}

static int build_segments(const tok_vocab *v, int tmpl, const chat_msg *msgs, size_t n_msgs,
                          bool add_gen, segs *l, eng_error *err)
{
    int32_t bos = tok_bos(v), eos = tok_eos(v);
    for (size_t i = 0; i < n_msgs; i++) {
        if (!role_ok(msgs[i].role))
            return eng_error_set(err, -EINVAL, "message %zu: invalid role", i);
        if (msgs[i].content == NULL && msgs[i].content_len > 0)
            return eng_error_set(err, -EINVAL, "message %zu: no content", i);
    }
    switch (tmpl) {
    case CHAT_TMPL_LLAMA2: {
        /* <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] ... */
        const chat_msg *sys = NULL;
        for (size_t i = 0; i < n_msgs; i++) {
            const char *c = msgs[i].content;
            size_t cn = msgs[i].content_len;
            trim(&c, &cn);
            const char *r = msgs[i].role;
            if (strcmp(r, "system") == 0) {
                sys = &msgs[i];
            } else if (strcmp(r, "user") == 0) {
                if (bos >= 0)
                    token(l, bos);
                trusted(l, "[INST] ");
                if (sys != NULL) {
                    const char *sc = sys->content;
                    size_t sn = sys->content_len;
                    trim(&sc, &sn);
                    trusted(l, "<<SYS>>\n");
                    user(l, sc, sn);
                    trusted(l, "\n<</SYS>>\n\n");
                    sys = NULL;
                }
                user(l, c, cn);
                trusted(l, " [/INST]");
            } else if (strcmp(r, "assistant") == 0) {
                trusted(l, " ");
                user(l, c, cn);
                trusted(l, " ");
                if (eos >= 0)
                    token(l, eos);
            } else {
                return eng_error_set(err, -EINVAL, "message %zu: role '%s' is not system, user or assistant",
                                     i, r);
            }
        }
        if (sys != NULL) { /* a system message with no user message after it */
            if (bos >= 0)
                token(l, bos);
            trusted(l, "[INST] <<SYS>>\n");
            user(l, sys->content, sys->content_len);
            trusted(l, "\n<</SYS>>\n\n [/INST]");
        }
        break;
    }
    case CHAT_TMPL_LLAMA3:
        if (bos >= 0)
            token(l, bos);
        for (size_t i = 0; i < n_msgs; i++) {
            const char *c = msgs[i].content;
            size_t cn = msgs[i].content_len;
            trim(&c, &cn);
            trusted(l, "<|start_header_id|>");
            user(l, msgs[i].role, strlen(msgs[i].role));
            trusted(l, "<|end_header_id|>\n\n");
            user(l, c, cn);
            trusted(l, "<|eot_id|>");
        }
        if (add_gen)
            trusted(l, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case CHAT_TMPL_CHATML:
        if (bos >= 0 && tok_add_bos(v))
            token(l, bos);
        for (size_t i = 0; i < n_msgs; i++) {
            trusted(l, "<|im_start|>");
            user(l, msgs[i].role, strlen(msgs[i].role));
            trusted(l, "\n");
            user(l, msgs[i].content, msgs[i].content_len);
            trusted(l, "<|im_end|>\n");
        }
        if (add_gen)
            trusted(l, "<|im_start|>assistant\n");
        break;
    case CHAT_TMPL_ZEPHYR:
        if (bos >= 0 && tok_add_bos(v))
            token(l, bos);
        for (size_t i = 0; i < n_msgs; i++) {
            trusted(l, "<|");
            user(l, msgs[i].role, strlen(msgs[i].role));
            trusted(l, "|>\n");
            user(l, msgs[i].content, msgs[i].content_len);
            if (eos >= 0)
                token(l, eos);
            else
                trusted(l, "</s>");
            trusted(l, "\n");
        }
        if (add_gen)
            trusted(l, "<|assistant|>\n");
        break;
    default:
        return eng_error_set(err, -EINVAL, "unknown chat template family %d", tmpl);
    }
    if (l->rc < 0)
        return eng_error_set(err, l->rc, "out of memory building the chat prompt");
    return 0;
}

int chat_build(const tok_vocab *v, int tmpl, const chat_msg *msgs, size_t n_msgs,
               bool add_generation_prompt, int32_t *out, size_t cap, size_t *ret_n,
               eng_error *err)
{
    segs l = {0};
    int rc = build_segments(v, tmpl, msgs, n_msgs, add_generation_prompt, &l, err);
    if (rc == 0) {
        rc = tok_encode_segments(v, l.s, l.n, TOK_ADD_BOS_NONE, out, cap, ret_n);
        if (rc < 0 && rc != -ENOBUFS)
            eng_error_set(err, rc, "tokenizing the chat prompt failed");
        else if (rc == -ENOBUFS)
            eng_error_set(err, rc, "chat prompt needs %zu tokens, room for %zu", *ret_n, cap);
    }
    free(l.s);
    return rc;
}

int chat_render(const tok_vocab *v, int tmpl, const chat_msg *msgs, size_t n_msgs,
                bool add_generation_prompt, char *out, size_t cap, size_t *ret_len,
                eng_error *err)
{
    segs l = {0};
    int rc = build_segments(v, tmpl, msgs, n_msgs, add_generation_prompt, &l, err);
    if (rc == 0) {
        size_t o = 0;
        for (size_t i = 0; i < l.n; i++) {
            const char *p = l.s[i].text;
            size_t n = l.s[i].len;
            if (l.s[i].kind == TOK_SEG_TOKEN)
                tok_text(v, l.s[i].id, &p, &n);
            if (o < cap)
                memcpy(out + o, p, n < cap - o ? n : cap - o);
            o += n;
        }
        if (o < cap)
            out[o] = '\0';
        *ret_len = o;
        if (o >= cap)
            rc = eng_error_set(err, -ENOBUFS, "chat prompt text needs %zu bytes", o + 1);
    }
    free(l.s);
    return rc;
}
