#include "validate.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define E(c) LLAMAD__V1__ERROR__CODE__##c

static int fail(char *msg, size_t msglen, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(char *msg, size_t msglen, int code, const char *fmt, ...)
{
    if (msg != NULL && msglen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, msglen, fmt, ap);
        va_end(ap);
    }
    return code;
}

int srv_find_model(const srv_limits *lim, const char *name)
{
    if (lim->n_models <= 0) return -1;
    if (name == NULL || name[0] == '\0') return 0;
    for (int i = 0; i < lim->n_models; i++)
        if (strcmp(lim->models[i].name, name) == 0) return i;
    return -1;
}

int srv_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) need = 2, cp = c & 0x1F;
        else if (c >= 0xE0 && c <= 0xEF) need = 3, cp = c & 0x0F;
        else if (c >= 0xF0 && c <= 0xF4) need = 4, cp = c & 0x07;
        else return 0;
        if (len - i < need) return 0;
        for (size_t k = 1; k < need; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (need == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) return 0;
        if (need == 4 && (cp < 0x10000 || cp > 0x10FFFF)) return 0;
        i += need;
    }
    return 1;
}

static int check_model(const srv_limits *lim, const char *name, int *ret_model, char *msg, size_t msglen)
{
    int m = srv_find_model(lim, name);
    if (m < 0) {
        if (lim->n_models <= 0) return fail(msg, msglen, E(UNKNOWN_MODEL), "no model is loaded");
        return fail(msg, msglen, E(UNKNOWN_MODEL), "no model named '%.64s'", name);
    }
    *ret_model = m;
    return 0;
}

static bool in_range(float v, float lo, float hi) { return isfinite(v) && v >= lo && v <= hi; }

static uint64_t random_seed(void)
{
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s) {
        static uint64_t fallback = 0x9E3779B97F4A7C15ull;
        fallback = fallback * 6364136223846793005ull + 1442695040888963407ull;
        s = fallback;
    }
    return s;
}

static int validate_generate(const Llamad__V1__GenerateRequest *g, const srv_limits *lim, sched_job **ret_job,
                             char *msg, size_t msglen)
{
    int model = 0, rc;
    if ((rc = check_model(lim, g->model, &model, msg, msglen)) != 0) return rc;
    const srv_model_desc *md = &lim->models[model];
    int prompt_limit = lim->max_prompt_tokens;

    switch (g->prompt_case) {
    case LLAMAD__V1__GENERATE_REQUEST__PROMPT_TEXT: {
        size_t len = strlen(g->text);
        if (len == 0) return fail(msg, msglen, E(INVALID_PARAMETER), "the prompt text is empty");
        if (!srv_utf8_valid(g->text, len))
            return fail(msg, msglen, E(INVALID_PARAMETER), "the prompt text is not valid UTF-8");
        break;
    }
    case LLAMAD__V1__GENERATE_REQUEST__PROMPT_TOKENS: {
        const Llamad__V1__TokenIds *t = g->tokens;
        if (t == NULL || t->n_ids == 0)
            return fail(msg, msglen, E(INVALID_PARAMETER), "the prompt has no token ids");
        if (t->n_ids > (size_t)prompt_limit)
            return fail(msg, msglen, E(PROMPT_TOO_LONG), "the prompt has %zu tokens; the limit is %d", t->n_ids,
                        prompt_limit);
        if (t->n_ids >= (size_t)md->n_ctx)
            return fail(msg, msglen, E(PROMPT_TOO_LONG),
                        "the prompt has %zu tokens; model '%s' has a context of %d (room for one more token needed)",
                        t->n_ids, md->name, md->n_ctx);
        for (size_t i = 0; i < t->n_ids; i++)
            if (t->ids[i] >= (uint32_t)md->n_vocab)
                return fail(msg, msglen, E(INVALID_PARAMETER),
                            "prompt token id %u at index %zu is out of range (vocabulary of %d)", t->ids[i], i,
                            md->n_vocab);
        break;
    }
    case LLAMAD__V1__GENERATE_REQUEST__PROMPT_CHAT: {
        const Llamad__V1__ChatPrompt *c = g->chat;
        if (c == NULL || c->n_messages == 0)
            return fail(msg, msglen, E(INVALID_PARAMETER), "the chat prompt has no messages");
        if (c->n_messages > SRV_MAX_CHAT_MESSAGES)
            return fail(msg, msglen, E(INVALID_PARAMETER), "the chat prompt has %zu messages; at most %d",
                        c->n_messages, SRV_MAX_CHAT_MESSAGES);
        for (size_t i = 0; i < c->n_messages; i++) {
            const Llamad__V1__ChatMessage *cm = c->messages[i];
            size_t rl = strlen(cm->role);
            if (rl == 0) return fail(msg, msglen, E(INVALID_PARAMETER), "chat message %zu has no role", i);
            if (rl > SRV_MAX_ROLE_BYTES)
                return fail(msg, msglen, E(INVALID_PARAMETER), "chat message %zu: role longer than %d bytes", i,
                            SRV_MAX_ROLE_BYTES);
            if (!srv_utf8_valid(cm->role, rl) || !srv_utf8_valid(cm->content, strlen(cm->content)))
                return fail(msg, msglen, E(INVALID_PARAMETER), "chat message %zu is not valid UTF-8", i);
        }
        break;
    }
    default:
        return fail(msg, msglen, E(INVALID_REQUEST), "generate needs a prompt (text, tokens or chat)");
    }

    sched_job tmp;
    memset(&tmp, 0, sizeof tmp);
    sched_sampling *sp = &tmp.sampling;
    sp->temperature = 0.8f;
    sp->top_k = 40;
    sp->top_p = 0.95f;
    sp->min_p = 0.05f;
    sp->repeat_penalty = 1.0f;
    sp->repeat_last_n = 64;

    tmp.max_tokens = lim->max_tokens;
    if (g->has_max_tokens_case) {
        if (g->max_tokens < 1)
            return fail(msg, msglen, E(INVALID_PARAMETER), "max_tokens must be at least 1 (got 0)");
        if (g->max_tokens > (uint32_t)lim->max_tokens)
            return fail(msg, msglen, E(INVALID_PARAMETER), "max_tokens %u is above the server's limit of %d",
                        g->max_tokens, lim->max_tokens);
        tmp.max_tokens = (int)g->max_tokens;
    }
    if (g->has_temperature_case) {
        if (!in_range(g->temperature, 0.0f, 100.0f))
            return fail(msg, msglen, E(INVALID_PARAMETER), "temperature must be between 0 and 100 (got %g)",
                        (double)g->temperature);
        sp->temperature = g->temperature;
    }
    if (g->has_top_k_case) {
        if (g->top_k > (uint32_t)md->n_vocab)
            return fail(msg, msglen, E(INVALID_PARAMETER), "top_k %u is above the vocabulary size %d", g->top_k,
                        md->n_vocab);
        sp->top_k = (int)g->top_k;
    }
    if (g->has_top_p_case) {
        if (!in_range(g->top_p, 0.0f, 1.0f) || g->top_p == 0.0f)
            return fail(msg, msglen, E(INVALID_PARAMETER), "top_p must be in (0, 1] (got %g)", (double)g->top_p);
        sp->top_p = g->top_p;
    }
    if (g->has_min_p_case) {
        if (!in_range(g->min_p, 0.0f, 1.0f))
            return fail(msg, msglen, E(INVALID_PARAMETER), "min_p must be between 0 and 1 (got %g)",
                        (double)g->min_p);
        sp->min_p = g->min_p;
    }
    if (g->has_repeat_penalty_case) {
        if (!in_range(g->repeat_penalty, 0.0f, 10.0f) || g->repeat_penalty == 0.0f)
            return fail(msg, msglen, E(INVALID_PARAMETER), "repeat_penalty must be in (0, 10] (got %g)",
                        (double)g->repeat_penalty);
        sp->repeat_penalty = g->repeat_penalty;
    }
    if (!in_range(g->presence_penalty, -2.0f, 2.0f))
        return fail(msg, msglen, E(INVALID_PARAMETER), "presence_penalty must be between -2 and 2 (got %g)",
                    (double)g->presence_penalty);
    sp->presence_penalty = g->presence_penalty;
    if (!in_range(g->frequency_penalty, -2.0f, 2.0f))
        return fail(msg, msglen, E(INVALID_PARAMETER), "frequency_penalty must be between -2 and 2 (got %g)",
                    (double)g->frequency_penalty);
    sp->frequency_penalty = g->frequency_penalty;
    if (g->has_repeat_last_n_case) {
        if (g->repeat_last_n < -1 || g->repeat_last_n > md->n_ctx)
            return fail(msg, msglen, E(INVALID_PARAMETER), "repeat_last_n must be between -1 and %d (got %d)",
                        md->n_ctx, g->repeat_last_n);
        sp->repeat_last_n = g->repeat_last_n;
    }
    sp->seed = g->has_seed_case ? g->seed : random_seed();
    if (g->logprobs > SRV_MAX_LOGPROBS)
        return fail(msg, msglen, E(INVALID_PARAMETER), "logprobs must be between 0 and %d (got %u)",
                    SRV_MAX_LOGPROBS, g->logprobs);
    sp->logprobs = (int)g->logprobs;
    tmp.n_completions = 1;
    if (g->has_n_case) {
        if (g->n < 1 || g->n > SRV_MAX_COMPLETIONS)
            return fail(msg, msglen, E(INVALID_PARAMETER), "n must be between 1 and %d (got %u)",
                        SRV_MAX_COMPLETIONS, g->n);
        tmp.n_completions = (int)g->n;
    }
    if (g->n_stop > SRV_MAX_STOPS)
        return fail(msg, msglen, E(INVALID_PARAMETER), "%zu stop strings; at most %d", g->n_stop, SRV_MAX_STOPS);
    for (size_t i = 0; i < g->n_stop; i++) {
        size_t l = strlen(g->stop[i]);
        if (l == 0) return fail(msg, msglen, E(INVALID_PARAMETER), "stop string %zu is empty", i);
        if (l > SRV_MAX_STOP_BYTES)
            return fail(msg, msglen, E(INVALID_PARAMETER), "stop string %zu is longer than %d bytes", i,
                        SRV_MAX_STOP_BYTES);
        if (!srv_utf8_valid(g->stop[i], l))
            return fail(msg, msglen, E(INVALID_PARAMETER), "stop string %zu is not valid UTF-8", i);
    }

    sched_job *job = sched_job_new();
    if (job == NULL) return fail(msg, msglen, E(INTERNAL), "out of memory");
    job->kind = SCHED_JOB_GENERATE;
    job->model = model;
    job->max_tokens = tmp.max_tokens;
    job->sampling = tmp.sampling;
    job->n_completions = tmp.n_completions;
    job->timeout_ns = (uint64_t)lim->timeout_s * 1000000000ull;
    job->n_stop = (int)g->n_stop;
    for (size_t i = 0; i < g->n_stop; i++) {
        size_t l = strlen(g->stop[i]);
        memcpy(job->stop[i], g->stop[i], l + 1);
    }
    bool oom = false;
    switch (g->prompt_case) {
    case LLAMAD__V1__GENERATE_REQUEST__PROMPT_TEXT:
        job->text_len = strlen(g->text);
        job->text = strdup(g->text);
        oom = job->text == NULL;
        break;
    case LLAMAD__V1__GENERATE_REQUEST__PROMPT_TOKENS:
        job->tokens_in = malloc(sizeof(int32_t) * g->tokens->n_ids);
        oom = job->tokens_in == NULL;
        if (!oom) {
            for (size_t i = 0; i < g->tokens->n_ids; i++) job->tokens_in[i] = (int32_t)g->tokens->ids[i];
            job->n_tokens_in = (int)g->tokens->n_ids;
        }
        break;
    case LLAMAD__V1__GENERATE_REQUEST__PROMPT_CHAT: {
        const Llamad__V1__ChatPrompt *c = g->chat;
        job->add_generation_prompt = c->has_add_generation_prompt_case ? c->add_generation_prompt : true;
        job->chat = calloc(c->n_messages, sizeof *job->chat);
        oom = job->chat == NULL;
        for (size_t i = 0; !oom && i < c->n_messages; i++) {
            job->chat[i].role = strdup(c->messages[i]->role);
            job->chat[i].content = strdup(c->messages[i]->content);
            job->n_chat = (int)i + 1;
            oom = job->chat[i].role == NULL || job->chat[i].content == NULL;
        }
        break;
    }
    default:
        break;
    }
    if (oom) {
        sched_job_free(job);
        return fail(msg, msglen, E(INTERNAL), "out of memory");
    }
    *ret_job = job;
    return 0;
}

int srv_validate_request(const Llamad__V1__ClientMessage *m, const srv_limits *lim, sched_job **ret_job,
                         char *msg, size_t msglen)
{
    *ret_job = NULL;
    if (m->body_case == LLAMAD__V1__CLIENT_MESSAGE__BODY__NOT_SET)
        return fail(msg, msglen, E(INVALID_REQUEST), "the message has no body");
    if (m->request_id == 0)
        return fail(msg, msglen, E(INVALID_REQUEST), "request_id 0 is reserved; use an id >= 1");
    switch (m->body_case) {
    case LLAMAD__V1__CLIENT_MESSAGE__BODY_HELLO: {
        const Llamad__V1__Hello *h = m->hello;
        if (h->protocol_version != PROTO_VERSION)
            return fail(msg, msglen, E(UNSUPPORTED_VERSION), "protocol version %u is not supported (this server speaks %u)",
                        h->protocol_version, PROTO_VERSION);
        size_t l = strlen(h->client_name);
        if (l > SRV_MAX_CLIENT_NAME)
            return fail(msg, msglen, E(INVALID_PARAMETER), "client_name is longer than %d bytes",
                        SRV_MAX_CLIENT_NAME);
        if (!srv_utf8_valid(h->client_name, l))
            return fail(msg, msglen, E(INVALID_PARAMETER), "client_name is not valid UTF-8");
        return 0;
    }
    case LLAMAD__V1__CLIENT_MESSAGE__BODY_GENERATE:
        return validate_generate(m->generate, lim, ret_job, msg, msglen);
    case LLAMAD__V1__CLIENT_MESSAGE__BODY_CANCEL:
        if (m->cancel->target_request_id == 0)
            return fail(msg, msglen, E(INVALID_REQUEST), "cancel needs target_request_id >= 1");
        return 0;
    case LLAMAD__V1__CLIENT_MESSAGE__BODY_STATUS:
    case LLAMAD__V1__CLIENT_MESSAGE__BODY_LIST_MODELS:
        return 0;
    case LLAMAD__V1__CLIENT_MESSAGE__BODY_TOKENIZE: {
        const Llamad__V1__TokenizeRequest *t = m->tokenize;
        int model = 0, rc;
        if ((rc = check_model(lim, t->model, &model, msg, msglen)) != 0) return rc;
        size_t len = strlen(t->text);
        if (!srv_utf8_valid(t->text, len))
            return fail(msg, msglen, E(INVALID_PARAMETER), "the text is not valid UTF-8");
        sched_job *job = sched_job_new();
        if (job == NULL || (job->text = strdup(t->text)) == NULL) {
            sched_job_free(job);
            return fail(msg, msglen, E(INTERNAL), "out of memory");
        }
        job->kind = SCHED_JOB_TOKENIZE;
        job->model = model;
        job->text_len = len;
        job->add_special = t->has_add_special_case ? t->add_special : true;
        job->parse_special = t->parse_special;
        *ret_job = job;
        return 0;
    }
    case LLAMAD__V1__CLIENT_MESSAGE__BODY_DETOKENIZE: {
        const Llamad__V1__DetokenizeRequest *d = m->detokenize;
        int model = 0, rc;
        if ((rc = check_model(lim, d->model, &model, msg, msglen)) != 0) return rc;
        for (size_t i = 0; i < d->n_token_ids; i++)
            if (d->token_ids[i] >= (uint32_t)lim->models[model].n_vocab)
                return fail(msg, msglen, E(INVALID_PARAMETER),
                            "token id %u at index %zu is out of range (vocabulary of %d)", d->token_ids[i], i,
                            lim->models[model].n_vocab);
        sched_job *job = sched_job_new();
        if (job == NULL) return fail(msg, msglen, E(INTERNAL), "out of memory");
        job->kind = SCHED_JOB_DETOKENIZE;
        job->model = model;
        if (d->n_token_ids > 0) {
            job->tokens_in = malloc(sizeof(int32_t) * d->n_token_ids);
            if (job->tokens_in == NULL) {
                sched_job_free(job);
                return fail(msg, msglen, E(INTERNAL), "out of memory");
            }
            for (size_t i = 0; i < d->n_token_ids; i++) job->tokens_in[i] = (int32_t)d->token_ids[i];
            job->n_tokens_in = (int)d->n_token_ids;
        }
        *ret_job = job;
        return 0;
    }
    default:
        return fail(msg, msglen, E(INVALID_REQUEST), "unknown request kind %d", (int)m->body_case);
    }
}
