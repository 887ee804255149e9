/* libllamactl: encoding requests, and the blocking request functions. */
#include "lc_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- requests ------------------------------------------------------------------------- */

void lc_generate_params_init(lc_generate_params *p)
{
    memset(p, 0, sizeof *p);
    p->temperature = -1.0f;
    p->top_k = -1;
    p->top_p = -1.0f;
    p->min_p = -1.0f;
    p->repeat_penalty = -1.0f;
    p->repeat_last_n = INT32_MIN;
}

static int check_usable(lc_conn *c)
{
    if (c == NULL) return LC_ERR_INVAL;
    if (c->dead) {
        /* after a failure the message that explains it stays */
        if (c->dead == LC_ERR_NOTCONN) lci_set_err(c, "not connected to llamad");
        return LC_ERR_NOTCONN;
    }
    return 0;
}

/* Registers a request and queues its message; on failure nothing stays registered. */
static int submit(lc_conn *c, ClientMessage *m, enum req_kind kind, uint32_t done_left,
                  lc_callback cb, void *ud, uint64_t *ret_id)
{
    uint64_t id;
    int rc = lci_add_req(c, kind, done_left, cb, ud, &id);
    if (rc < 0) return rc;
    m->request_id = id;
    rc = lci_queue_msg(c, m);
    if (rc < 0) {
        lci_take_req(c, lci_find_req(c, id));
        c->next_id--; /* the id was never sent */
        return rc;
    }
    if (ret_id) *ret_id = id;
    return 0;
}

int lc_submit_generate(lc_conn *c, const lc_generate_params *p, lc_callback cb, void *ud,
                       uint64_t *ret_id)
{
    int rc = check_usable(c);
    if (rc < 0) return rc;
    if (p == NULL) return LC_ERR_INVAL;
    int inputs = (p->prompt != NULL) + (p->prompt_tokens != NULL || p->n_prompt_tokens > 0) +
                 (p->messages != NULL || p->n_messages > 0);
    if (inputs != 1) {
        lci_set_err(c, "give exactly one of prompt, prompt_tokens or messages");
        return LC_ERR_INVAL;
    }
    if ((p->prompt_tokens == NULL && p->n_prompt_tokens > 0) ||
        (p->messages == NULL && p->n_messages > 0) || (p->stop == NULL && p->n_stop > 0) ||
        (p->prompt_tokens != NULL && p->n_prompt_tokens == 0) ||
        (p->messages != NULL && p->n_messages == 0)) {
        lci_set_err(c, "empty or NULL array in the generate parameters");
        return LC_ERR_INVAL;
    }
    Llamad__V1__GenerateRequest g = LLAMAD__V1__GENERATE_REQUEST__INIT;
    Llamad__V1__TokenIds tids = LLAMAD__V1__TOKEN_IDS__INIT;
    Llamad__V1__ChatPrompt chat = LLAMAD__V1__CHAT_PROMPT__INIT;
    Llamad__V1__ChatMessage *msgs = NULL, **msgp = NULL;
    if (p->model) g.model = (char *)p->model;
    if (p->prompt != NULL) {
        g.prompt_case = LLAMAD__V1__GENERATE_REQUEST__PROMPT_TEXT;
        g.text = (char *)p->prompt;
    } else if (p->prompt_tokens != NULL) {
        g.prompt_case = LLAMAD__V1__GENERATE_REQUEST__PROMPT_TOKENS;
        tids.n_ids = p->n_prompt_tokens;
        tids.ids = (uint32_t *)p->prompt_tokens;
        g.tokens = &tids;
    } else {
        if (p->n_messages > SIZE_MAX / (sizeof *msgs + sizeof *msgp)) return LC_ERR_NOMEM;
        msgs = malloc(p->n_messages * sizeof *msgs);
        msgp = malloc(p->n_messages * sizeof *msgp);
        if (msgs == NULL || msgp == NULL) {
            free(msgs);
            free(msgp);
            lci_set_err(c, "out of memory");
            return LC_ERR_NOMEM;
        }
        for (size_t i = 0; i < p->n_messages; i++) {
            Llamad__V1__ChatMessage init = LLAMAD__V1__CHAT_MESSAGE__INIT;
            msgs[i] = init;
            if (p->messages[i].role == NULL || p->messages[i].content == NULL) {
                free(msgs);
                free(msgp);
                lci_set_err(c, "chat message %zu has no role or content", i);
                return LC_ERR_INVAL;
            }
            msgs[i].role = (char *)p->messages[i].role;
            msgs[i].content = (char *)p->messages[i].content;
            msgp[i] = &msgs[i];
        }
        chat.n_messages = p->n_messages;
        chat.messages = msgp;
        g.prompt_case = LLAMAD__V1__GENERATE_REQUEST__PROMPT_CHAT;
        g.chat = &chat;
    }
    if (p->max_tokens > 0) {
        g.has_max_tokens_case = LLAMAD__V1__GENERATE_REQUEST__HAS_MAX_TOKENS_MAX_TOKENS;
        g.max_tokens = p->max_tokens;
    }
    if (p->temperature >= 0.0f) {
        g.has_temperature_case = LLAMAD__V1__GENERATE_REQUEST__HAS_TEMPERATURE_TEMPERATURE;
        g.temperature = p->temperature;
    }
    if (p->top_k >= 0) {
        g.has_top_k_case = LLAMAD__V1__GENERATE_REQUEST__HAS_TOP_K_TOP_K;
        g.top_k = (uint32_t)p->top_k;
    }
    if (p->top_p >= 0.0f) {
        g.has_top_p_case = LLAMAD__V1__GENERATE_REQUEST__HAS_TOP_P_TOP_P;
        g.top_p = p->top_p;
    }
    if (p->min_p >= 0.0f) {
        g.has_min_p_case = LLAMAD__V1__GENERATE_REQUEST__HAS_MIN_P_MIN_P;
        g.min_p = p->min_p;
    }
    if (p->repeat_penalty >= 0.0f) {
        g.has_repeat_penalty_case = LLAMAD__V1__GENERATE_REQUEST__HAS_REPEAT_PENALTY_REPEAT_PENALTY;
        g.repeat_penalty = p->repeat_penalty;
    }
    if (p->repeat_last_n >= -1) {
        g.has_repeat_last_n_case = LLAMAD__V1__GENERATE_REQUEST__HAS_REPEAT_LAST_N_REPEAT_LAST_N;
        g.repeat_last_n = p->repeat_last_n;
    }
    g.presence_penalty = p->presence_penalty;
    g.frequency_penalty = p->frequency_penalty;
    if (p->has_seed) {
        g.has_seed_case = LLAMAD__V1__GENERATE_REQUEST__HAS_SEED_SEED;
        g.seed = p->seed;
    }
    if (p->n > 0) {
        g.has_n_case = LLAMAD__V1__GENERATE_REQUEST__HAS_N_N;
        g.n = p->n;
    }
    g.n_stop = p->n_stop;
    g.stop = (char **)p->stop;
    g.logprobs = p->logprobs;

    ClientMessage m = LLAMAD__V1__CLIENT_MESSAGE__INIT;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_GENERATE;
    m.generate = &g;
    rc = submit(c, &m, REQ_GENERATE, p->n > 0 ? p->n : 1, cb, ud, ret_id);
    free(msgs);
    free(msgp);
    return rc;
}

int lc_submit_tokenize(lc_conn *c, const char *model, const char *text, unsigned flags,
                       lc_callback cb, void *ud, uint64_t *ret_id)
{
    int rc = check_usable(c);
    if (rc < 0) return rc;
    if (text == NULL) return LC_ERR_INVAL;
    Llamad__V1__TokenizeRequest t = LLAMAD__V1__TOKENIZE_REQUEST__INIT;
    if (model) t.model = (char *)model;
    t.text = (char *)text;
    if (flags & LC_TOKENIZE_NO_SPECIAL) {
        t.has_add_special_case = LLAMAD__V1__TOKENIZE_REQUEST__HAS_ADD_SPECIAL_ADD_SPECIAL;
        t.add_special = 0;
    }
    t.parse_special = (flags & LC_TOKENIZE_PARSE_SPECIAL) != 0;
    ClientMessage m = LLAMAD__V1__CLIENT_MESSAGE__INIT;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_TOKENIZE;
    m.tokenize = &t;
    return submit(c, &m, REQ_TOKENIZE, 0, cb, ud, ret_id);
}

int lc_submit_detokenize(lc_conn *c, const char *model, const uint32_t *tokens, size_t n_tokens,
                         lc_callback cb, void *ud, uint64_t *ret_id)
{
    int rc = check_usable(c);
    if (rc < 0) return rc;
    if (tokens == NULL && n_tokens > 0) return LC_ERR_INVAL;
    Llamad__V1__DetokenizeRequest d = LLAMAD__V1__DETOKENIZE_REQUEST__INIT;
    if (model) d.model = (char *)model;
    d.n_token_ids = n_tokens;
    d.token_ids = (uint32_t *)tokens;
    ClientMessage m = LLAMAD__V1__CLIENT_MESSAGE__INIT;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_DETOKENIZE;
    m.detokenize = &d;
    return submit(c, &m, REQ_DETOKENIZE, 0, cb, ud, ret_id);
}

int lc_submit_status(lc_conn *c, lc_callback cb, void *ud, uint64_t *ret_id)
{
    int rc = check_usable(c);
    if (rc < 0) return rc;
    Llamad__V1__StatusRequest s = LLAMAD__V1__STATUS_REQUEST__INIT;
    ClientMessage m = LLAMAD__V1__CLIENT_MESSAGE__INIT;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_STATUS;
    m.status = &s;
    return submit(c, &m, REQ_STATUS, 0, cb, ud, ret_id);
}

int lc_submit_models(lc_conn *c, lc_callback cb, void *ud, uint64_t *ret_id)
{
    int rc = check_usable(c);
    if (rc < 0) return rc;
    Llamad__V1__ListModelsRequest l = LLAMAD__V1__LIST_MODELS_REQUEST__INIT;
    ClientMessage m = LLAMAD__V1__CLIENT_MESSAGE__INIT;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_LIST_MODELS;
    m.list_models = &l;
    return submit(c, &m, REQ_MODELS, 0, cb, ud, ret_id);
}

int lc_cancel(lc_conn *c, uint64_t request_id)
{
    int rc = check_usable(c);
    if (rc < 0) return rc;
    lc_req *r = lci_find_req(c, request_id);
    if (r == NULL || r->kind != REQ_GENERATE) {
        lci_set_err(c, "no generate request %llu in flight", (unsigned long long)request_id);
        return LC_ERR_NOENT;
    }
    Llamad__V1__CancelRequest cr = LLAMAD__V1__CANCEL_REQUEST__INIT;
    cr.target_request_id = request_id;
    ClientMessage m = LLAMAD__V1__CLIENT_MESSAGE__INIT;
    /* its own, never reused id: a late UNKNOWN_REQUEST_ID answer cannot hit a live request */
    m.request_id = c->next_id++;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_CANCEL;
    m.cancel = &cr;
    return lci_queue_msg(c, &m);
}

/* ---- blocking requests ---------------------------------------------------------------- */

typedef struct sync_ctx {
    int rc;              /* 0, or the error event's code */
    lc_callback user_cb; /* generate: chunks go on to the user's callback */
    void *user_ud;
    lc_done done;
    uint32_t *tokens;
    size_t n_tokens;
    char *text;
    size_t text_len;
    void *block; /* status/models: one malloc'd block */
    size_t n;
} sync_ctx;

static void sync_cb(lc_conn *c, const lc_event *ev, void *ud)
{
    sync_ctx *s = ud;
    switch (ev->type) {
    case LC_EVENT_CHUNK:
        if (s->user_cb) s->user_cb(c, ev, s->user_ud);
        break;
    case LC_EVENT_DONE:
        s->done = ev->u.done;
        if (s->user_cb) s->user_cb(c, ev, s->user_ud);
        break;
    case LC_EVENT_ERROR:
        s->rc = ev->u.error.code;
        if (s->user_cb) s->user_cb(c, ev, s->user_ud);
        break;
    case LC_EVENT_TOKENS:
        if (ev->u.tokens.n_tokens > 0) {
            s->tokens = malloc(ev->u.tokens.n_tokens * sizeof *s->tokens);
            if (s->tokens == NULL) {
                s->rc = LC_ERR_NOMEM;
                break;
            }
            memcpy(s->tokens, ev->u.tokens.tokens, ev->u.tokens.n_tokens * sizeof *s->tokens);
        }
        s->n_tokens = ev->u.tokens.n_tokens;
        break;
    case LC_EVENT_TEXT:
        s->text = malloc(ev->u.text.len + 1);
        if (s->text == NULL) {
            s->rc = LC_ERR_NOMEM;
            break;
        }
        memcpy(s->text, ev->u.text.data, ev->u.text.len);
        s->text[ev->u.text.len] = '\0';
        s->text_len = ev->u.text.len;
        break;
    case LC_EVENT_STATUS: {
        const lc_status *st = ev->u.status;
        size_t size = sizeof(lc_status), ptrs = st->n_loaded_models * sizeof(char *);
        size_t strs = strlen(st->default_model) + 1;
        for (size_t i = 0; i < st->n_loaded_models; i++)
            strs += strlen(st->loaded_models[i]) + 1;
        lc_status *out = malloc(size + ptrs + strs);
        if (out == NULL) {
            s->rc = LC_ERR_NOMEM;
            break;
        }
        *out = *st;
        const char **arr = (const char **)(out + 1);
        char *sp = (char *)(out + 1) + ptrs;
        for (size_t i = 0; i < st->n_loaded_models; i++) {
            size_t l = strlen(st->loaded_models[i]) + 1;
            memcpy(sp, st->loaded_models[i], l);
            arr[i] = sp;
            sp += l;
        }
        memcpy(sp, st->default_model, strlen(st->default_model) + 1);
        out->default_model = sp;
        out->loaded_models = st->n_loaded_models ? arr : NULL;
        s->block = out;
        break;
    }
    case LC_EVENT_MODELS: {
        size_t n = ev->u.models.n_models;
        const lc_model_info *mi = ev->u.models.models;
        size_t strs = 0;
        for (size_t i = 0; i < n; i++)
            strs += strlen(mi[i].name) + strlen(mi[i].path) + strlen(mi[i].architecture) +
                    strlen(mi[i].quantization) + 4;
        lc_model_info *out = malloc(n * sizeof *out + strs + 1);
        if (out == NULL) {
            s->rc = LC_ERR_NOMEM;
            break;
        }
        char *sp = (char *)(out + n);
        for (size_t i = 0; i < n; i++) {
            out[i] = mi[i];
            const char **fields[] = {&out[i].name, &out[i].path, &out[i].architecture,
                                     &out[i].quantization};
            for (size_t k = 0; k < 4; k++) {
                size_t l = strlen(*fields[k]) + 1;
                memcpy(sp, *fields[k], l);
                *fields[k] = sp;
                sp += l;
            }
        }
        s->block = out;
        s->n = n;
        break;
    }
    }
}

static int run_sync(lc_conn *c, int rc, const uint64_t *idp, sync_ctx *s)
{
    if (rc < 0) return rc;
    uint64_t id = *idp; /* read after the submit call has set it */
    rc = lci_wait_for(c, id, -1, true);
    if (rc < 0) return rc;
    return s->rc;
}

int lc_generate(lc_conn *c, const lc_generate_params *p, lc_callback cb, void *ud,
                lc_done *ret_done)
{
    if (c && c->in_callback) return LC_ERR_BUSY;
    sync_ctx s = {.user_cb = cb, .user_ud = ud};
    uint64_t id = 0;
    int rc = run_sync(c, lc_submit_generate(c, p, sync_cb, &s, &id), &id, &s);
    if (rc == 0 && ret_done) *ret_done = s.done;
    return rc;
}

int lc_tokenize(lc_conn *c, const char *model, const char *text, unsigned flags,
                uint32_t **ret_tokens, size_t *ret_n_tokens)
{
    if (c && c->in_callback) return LC_ERR_BUSY;
    if (ret_tokens == NULL || ret_n_tokens == NULL) return LC_ERR_INVAL;
    sync_ctx s = {0};
    uint64_t id = 0;
    int rc = run_sync(c, lc_submit_tokenize(c, model, text, flags, sync_cb, &s, &id), &id, &s);
    if (rc < 0) {
        free(s.tokens);
        return rc;
    }
    *ret_tokens = s.tokens;
    *ret_n_tokens = s.n_tokens;
    return 0;
}

int lc_detokenize(lc_conn *c, const char *model, const uint32_t *tokens, size_t n_tokens,
                  char **ret_text, size_t *ret_len)
{
    if (c && c->in_callback) return LC_ERR_BUSY;
    if (ret_text == NULL) return LC_ERR_INVAL;
    sync_ctx s = {0};
    uint64_t id = 0;
    int rc =
        run_sync(c, lc_submit_detokenize(c, model, tokens, n_tokens, sync_cb, &s, &id), &id, &s);
    if (rc < 0) {
        free(s.text);
        return rc;
    }
    *ret_text = s.text;
    if (ret_len) *ret_len = s.text_len;
    return 0;
}

int lc_get_status(lc_conn *c, lc_status **ret_status)
{
    if (c && c->in_callback) return LC_ERR_BUSY;
    if (ret_status == NULL) return LC_ERR_INVAL;
    sync_ctx s = {0};
    uint64_t id = 0;
    int rc = run_sync(c, lc_submit_status(c, sync_cb, &s, &id), &id, &s);
    if (rc < 0) {
        free(s.block);
        return rc;
    }
    *ret_status = s.block;
    return 0;
}

int lc_list_models(lc_conn *c, lc_model_info **ret_models, size_t *ret_n_models)
{
    if (c && c->in_callback) return LC_ERR_BUSY;
    if (ret_models == NULL || ret_n_models == NULL) return LC_ERR_INVAL;
    sync_ctx s = {0};
    uint64_t id = 0;
    int rc = run_sync(c, lc_submit_models(c, sync_cb, &s, &id), &id, &s);
    if (rc < 0) {
        free(s.block);
        return rc;
    }
    *ret_models = s.block;
    *ret_n_models = s.n;
    return 0;
}
