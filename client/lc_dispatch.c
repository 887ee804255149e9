/* libllamactl: decoding the daemon's messages into events. */
#include "lc_internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- input and dispatch --------------------------------------------------------------- */

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need)
        ncap *= 2;
    if (ncap > SIZE_MAX / elem) return LC_ERR_NOMEM;
    void *np = realloc(*p, ncap * elem);
    if (np == NULL) return LC_ERR_NOMEM;
    *p = np;
    *cap = ncap;
    return 0;
}

static int protocol_error(lc_conn *c, const char *what, uint64_t id)
{
    lci_set_err(c, "protocol error from llamad at %s: %s (request %llu)", c->path, what,
                (unsigned long long)id);
    return lci_fail_conn(c, LC_ERR_PROTO);
}

static int dispatch_chunk(lc_conn *c, lc_req *r, const Llamad__V1__TokenChunk *tc)
{
    lc_event ev = {.type = LC_EVENT_CHUNK, .request_id = r->id};
    lc_chunk *ch = &ev.u.chunk;
    ch->index = tc->index;
    ch->tokens = tc->token_ids;
    ch->n_tokens = tc->n_token_ids;
    ch->text = tc->text ? tc->text : "";
    ch->text_len = strlen(ch->text);
    if (tc->n_logprobs > 0) {
        size_t n_top = 0;
        for (size_t i = 0; i < tc->n_logprobs; i++) {
            if (tc->logprobs[i] == NULL) return protocol_error(c, "empty logprob", r->id);
            if (tc->logprobs[i]->n_top > SIZE_MAX - n_top) return LC_ERR_NOMEM;
            n_top += tc->logprobs[i]->n_top;
        }
        if (grow((void **)&c->lp, &c->lp_cap, tc->n_logprobs, sizeof *c->lp) < 0 ||
            grow((void **)&c->top, &c->top_cap, n_top, sizeof *c->top) < 0) {
            lci_set_err(c, "out of memory");
            return lci_fail_conn(c, LC_ERR_NOMEM);
        }
        size_t k = 0;
        for (size_t i = 0; i < tc->n_logprobs; i++) {
            const Llamad__V1__TokenLogprob *tl = tc->logprobs[i];
            c->lp[i].logprob = tl->logprob;
            c->lp[i].top = tl->n_top > 0 ? c->top + k : NULL; /* c->top may be NULL: no NULL + 0 */
            c->lp[i].n_top = tl->n_top;
            for (size_t j = 0; j < tl->n_top; j++, k++) {
                const Llamad__V1__TopLogprob *t = tl->top[j];
                c->top[k].token = t ? t->id : 0;
                c->top[k].text.data = t && t->text.data ? (const char *)t->text.data : "";
                c->top[k].text.len = t ? t->text.len : 0;
                c->top[k].logprob = t ? t->logprob : 0.0f;
            }
        }
        ch->logprobs = c->lp;
        ch->n_logprobs = tc->n_logprobs;
    }
    lci_call(c, r->cb, r->ud, &ev);
    return 0;
}

static lc_finish map_finish(int fr)
{
    switch (fr) {
    case LLAMAD__V1__GENERATE_DONE__FINISH_REASON__STOP:
        return LC_FINISH_STOP;
    case LLAMAD__V1__GENERATE_DONE__FINISH_REASON__LENGTH:
        return LC_FINISH_LENGTH;
    case LLAMAD__V1__GENERATE_DONE__FINISH_REASON__CANCELLED:
        return LC_FINISH_CANCELLED;
    case LLAMAD__V1__GENERATE_DONE__FINISH_REASON__TIMEOUT:
        return LC_FINISH_TIMEOUT;
    case LLAMAD__V1__GENERATE_DONE__FINISH_REASON__ERROR:
        return LC_FINISH_ERROR;
    default:
        return LC_FINISH_UNKNOWN;
    }
}

static void copy_str(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s ? s : "");
}

/* Handles one decoded server message. Returns 0 or a fatal code. */
int lci_dispatch(lc_conn *c, const ServerMessage *m)
{
    uint64_t id = m->request_id;
    if (m->body_case == LLAMAD__V1__SERVER_MESSAGE__BODY_ERROR && id == 0) {
        /* about the connection: remember it; if the daemon closes next, it explains why */
        const Llamad__V1__Error *e = m->error;
        lci_set_err(c, "llamad: %s (%s)", e && e->message && e->message[0] ? e->message : "error",
                    lc_server_code_name(e ? (int)e->code : 0));
        return 0;
    }
    lc_req *r = lci_find_req(c, id);
    if (r == NULL) {
        /* e.g. the UNKNOWN_REQUEST_ID answer to a Cancel that came too late: ignored */
        if (m->body_case == LLAMAD__V1__SERVER_MESSAGE__BODY_ERROR) return 0;
        return protocol_error(c, "reply to a request that is not in flight", id);
    }
    lc_event ev = {.request_id = id, .final = true};
    switch (m->body_case) {
    case LLAMAD__V1__SERVER_MESSAGE__BODY_ERROR: {
        const Llamad__V1__Error *e = m->error;
        lc_req rq = lci_take_req(c, r);
        int sc = e ? (int)e->code : 0;
        const char *msg = e && e->message && e->message[0] ? e->message : lc_server_code_name(sc);
        lci_set_err(c, "%s", msg);
        ev.type = LC_EVENT_ERROR;
        ev.u.error.code = LC_ERR_SERVER;
        ev.u.error.server_code = sc;
        ev.u.error.message = c->err;
        if (rq.kind == REQ_HELLO) {
            lci_set_err(c, "llamad refused Hello: %s (%s)", msg, lc_server_code_name(sc));
            return lci_fail_conn(c, LC_ERR_PROTO);
        }
        lci_call(c, rq.cb, rq.ud, &ev);
        return 0;
    }
    case LLAMAD__V1__SERVER_MESSAGE__BODY_HELLO: {
        if (r->kind != REQ_HELLO) break;
        lci_take_req(c, r);
        const Llamad__V1__HelloReply *h = m->hello;
        if (h == NULL) return protocol_error(c, "empty HelloReply", id);
        if (h->protocol_version != PROTO_VERSION) {
            lci_set_err(c, "llamad speaks protocol version %u, this client %u",
                        (unsigned)h->protocol_version, PROTO_VERSION);
            return lci_fail_conn(c, LC_ERR_PROTO);
        }
        copy_str(c->server_version, sizeof c->server_version, h->server_version);
        if (h->max_frame_bytes >= 64) c->max_out = h->max_frame_bytes;
        return 0;
    }
    case LLAMAD__V1__SERVER_MESSAGE__BODY_TOKEN_CHUNK:
        if (r->kind != REQ_GENERATE || m->token_chunk == NULL) break;
        return dispatch_chunk(c, r, m->token_chunk);
    case LLAMAD__V1__SERVER_MESSAGE__BODY_GENERATE_DONE: {
        if (r->kind != REQ_GENERATE || m->generate_done == NULL) break;
        const Llamad__V1__GenerateDone *d = m->generate_done;
        ev.type = LC_EVENT_DONE;
        ev.u.done.index = d->index;
        ev.u.done.finish = map_finish(d->finish_reason);
        ev.u.done.prompt_tokens = d->prompt_tokens;
        ev.u.done.cached_tokens = d->cached_prompt_tokens;
        ev.u.done.generated_tokens = d->generated_tokens;
        ev.u.done.queue_us = d->queue_us;
        ev.u.done.first_token_us = d->time_to_first_token_us;
        ev.u.done.total_us = d->total_us;
        ev.u.done.seed = d->seed;
        lc_req rq = *r;
        if (--r->done_left == 0)
            lci_take_req(c, r);
        else
            ev.final = false;
        lci_call(c, rq.cb, rq.ud, &ev);
        return 0;
    }
    case LLAMAD__V1__SERVER_MESSAGE__BODY_TOKENIZE: {
        if (r->kind != REQ_TOKENIZE || m->tokenize == NULL) break;
        const Llamad__V1__TokenizeReply *t = m->tokenize;
        if (t->n_pieces > 0) {
            if (grow((void **)&c->pieces, &c->pieces_cap, t->n_pieces, sizeof *c->pieces) < 0) {
                lci_set_err(c, "out of memory");
                return lci_fail_conn(c, LC_ERR_NOMEM);
            }
            for (size_t i = 0; i < t->n_pieces; i++) {
                c->pieces[i].data = t->pieces[i].data ? (const char *)t->pieces[i].data : "";
                c->pieces[i].len = t->pieces[i].len;
            }
        }
        lc_req rq = lci_take_req(c, r);
        ev.type = LC_EVENT_TOKENS;
        ev.u.tokens.tokens = t->token_ids;
        ev.u.tokens.n_tokens = t->n_token_ids;
        ev.u.tokens.pieces = t->n_pieces > 0 ? c->pieces : NULL;
        ev.u.tokens.n_pieces = t->n_pieces;
        lci_call(c, rq.cb, rq.ud, &ev);
        return 0;
    }
    case LLAMAD__V1__SERVER_MESSAGE__BODY_DETOKENIZE: {
        if (r->kind != REQ_DETOKENIZE || m->detokenize == NULL) break;
        lc_req rq = lci_take_req(c, r);
        ev.type = LC_EVENT_TEXT;
        ev.u.text.data = m->detokenize->text.data ? (const char *)m->detokenize->text.data : "";
        ev.u.text.len = m->detokenize->text.len;
        lci_call(c, rq.cb, rq.ud, &ev);
        return 0;
    }
    case LLAMAD__V1__SERVER_MESSAGE__BODY_STATUS: {
        if (r->kind != REQ_STATUS || m->status == NULL) break;
        const Llamad__V1__StatusReply *s = m->status;
        lc_status st = {
            .loaded_models = (const char *const *)s->loaded_models,
            .n_loaded_models = s->n_loaded_models,
            .default_model = s->default_model ? s->default_model : "",
            .queue_depth = s->queue_depth,
            .running_sequences = s->running_sequences,
            .kv_blocks_total = s->kv_blocks_total,
            .kv_blocks_used = s->kv_blocks_used,
            .kv_blocks_cached = s->kv_blocks_cached,
            .kv_block_size = s->kv_block_size,
            .prefix_cache_hit_rate = s->prefix_cache_hit_rate,
            .tokens_per_second = s->tokens_per_second,
            .uptime_seconds = s->uptime_seconds,
            .connections = s->connections,
            .mem_allocated_bytes = s->jemalloc_allocated_bytes,
            .mem_resident_bytes = s->jemalloc_resident_bytes,
        };
        for (size_t i = 0; i < s->n_loaded_models; i++)
            if (s->loaded_models[i] == NULL) return protocol_error(c, "bad StatusReply", id);
        lc_req rq = lci_take_req(c, r);
        ev.type = LC_EVENT_STATUS;
        ev.u.status = &st;
        lci_call(c, rq.cb, rq.ud, &ev);
        return 0;
    }
    case LLAMAD__V1__SERVER_MESSAGE__BODY_MODEL_LIST: {
        if (r->kind != REQ_MODELS || m->model_list == NULL) break;
        const Llamad__V1__ModelList *ml = m->model_list;
        if (ml->n_models > 0 &&
            grow((void **)&c->models, &c->models_cap, ml->n_models, sizeof *c->models) < 0) {
            lci_set_err(c, "out of memory");
            return lci_fail_conn(c, LC_ERR_NOMEM);
        }
        for (size_t i = 0; i < ml->n_models; i++) {
            const Llamad__V1__ModelInfo *mi = ml->models[i];
            if (mi == NULL) return protocol_error(c, "bad ModelList", id);
            c->models[i] = (lc_model_info){
                .name = mi->name ? mi->name : "",
                .path = mi->path ? mi->path : "",
                .architecture = mi->architecture ? mi->architecture : "",
                .quantization = mi->quantization ? mi->quantization : "",
                .parameter_count = mi->parameter_count,
                .context_length = mi->context_length,
                .vocab_size = mi->vocab_size,
                .is_default = mi->is_default != 0,
            };
        }
        lc_req rq = lci_take_req(c, r);
        ev.type = LC_EVENT_MODELS;
        ev.u.models.models = c->models;
        ev.u.models.n_models = ml->n_models;
        lci_call(c, rq.cb, rq.ud, &ev);
        return 0;
    }
    default:
        break;
    }
    return protocol_error(c, "unexpected message", id);
}
