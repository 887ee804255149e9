/* libllamactl: connection, requests, frame I/O and dispatch. See llamactl.h. */
#include "llamactl.h"
#include "lc_testing.h"

#include "frame.h"

#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

typedef Llamad__V1__ClientMessage ClientMessage;
typedef Llamad__V1__ServerMessage ServerMessage;

#define LC_DEFAULT_MAX_FRAME (4u << 20)
#define LC_DEFAULT_TIMEOUT_MS 10000
#define LC_MAX_IN_FLIGHT 4096
#define LC_READ_CHUNK 65536
#define LC_MAX_READS_PER_PROCESS 16

enum req_kind {
    REQ_HELLO = 1,
    REQ_GENERATE,
    REQ_TOKENIZE,
    REQ_DETOKENIZE,
    REQ_STATUS,
    REQ_MODELS,
};

typedef struct lc_req {
    uint64_t id;
    enum req_kind kind;
    uint32_t done_left; /* generate: GenerateDone frames still expected */
    lc_callback cb;
    void *ud;
} lc_req;

struct lc_conn {
    int fd;
    char *path;
    char *client_name;
    uint32_t max_in;
    uint32_t max_out;  /* the daemon's limit on our frames' payload */
    int timeout_ms;
    int dead;          /* the fatal error code, 0 while usable */
    int in_callback;
    uint64_t next_id;

    char server_version[64];

    uint8_t *out;      /* pending output: out[out_off .. out_len) */
    size_t out_off, out_len, out_cap;

    proto_decoder dec;
    uint8_t *rbuf;     /* read buffer (LC_READ_CHUNK) */

    lc_req *reqs;
    size_t n_reqs, cap_reqs;

    /* scratch for events (reused between frames) */
    lc_token_logprob *lp;
    size_t lp_cap;
    lc_top_logprob *top;
    size_t top_cap;
    lc_bytes *pieces;
    size_t pieces_cap;
    lc_model_info *models;
    size_t models_cap;

    char err[512];
};

/* ---- small things --------------------------------------------------------------------- */

const char *lc_version(void) { return LC_VERSION_STRING; }

const char *lc_strerror(int code)
{
    switch (code) {
    case LC_OK: return "success";
    case LC_ERR_INVAL: return "invalid argument";
    case LC_ERR_NOMEM: return "out of memory";
    case LC_ERR_NAMETOOLONG: return "socket path too long";
    case LC_ERR_NOTCONN: return "not connected to llamad";
    case LC_ERR_CLOSED: return "llamad closed the connection";
    case LC_ERR_PROTO: return "protocol error (not a llamad v1 daemon?)";
    case LC_ERR_TOOBIG: return "frame larger than the limit";
    case LC_ERR_SERVER: return "llamad refused the request";
    case LC_ERR_TIMEOUT: return "timed out";
    case LC_ERR_INTR: return "interrupted";
    case LC_ERR_BUSY: return "blocking call inside a callback";
    case LC_ERR_NOENT: return "no such request in flight";
    case LC_ERR_TOOMANY: return "too many requests in flight";
    case -ENOENT: return "no socket at that path";
    case -ECONNREFUSED: return "connection refused (nobody listening on the socket)";
    case -EACCES: return "permission denied";
    default: return code < 0 ? strerror(-code) : "unknown error";
    }
}

const char *lc_finish_name(lc_finish f)
{
    switch (f) {
    case LC_FINISH_STOP: return "stop";
    case LC_FINISH_LENGTH: return "length";
    case LC_FINISH_CANCELLED: return "cancelled";
    case LC_FINISH_TIMEOUT: return "timeout";
    case LC_FINISH_ERROR: return "error";
    default: return "unknown";
    }
}

const char *lc_server_code_name(int code)
{
    static const char *const names[] = {
        "UNSPECIFIED", "INVALID_REQUEST", "UNSUPPORTED_VERSION", "UNKNOWN_MODEL",
        "PROMPT_TOO_LONG", "INVALID_PARAMETER", "OVERLOADED", "TOO_MANY_REQUESTS",
        "DUPLICATE_REQUEST_ID", "UNKNOWN_REQUEST_ID", "FRAME_TOO_LARGE", "MALFORMED_FRAME",
        "SHUTTING_DOWN", "PERMISSION_DENIED", "INTERNAL",
    };
    if (code < 0 || (size_t)code >= sizeof names / sizeof names[0]) return names[0];
    return names[code];
}

static void set_err(lc_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(lc_conn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
}

const char *lc_conn_error(const lc_conn *c) { return c ? c->err : "no connection"; }
const char *lc_conn_socket_path(const lc_conn *c) { return c ? c->path : ""; }
const char *lc_conn_server_version(const lc_conn *c) { return c ? c->server_version : ""; }
int lc_conn_fd(const lc_conn *c) { return c ? c->fd : -1; }
bool lc_conn_want_write(const lc_conn *c) { return c && c->fd >= 0 && c->out_len > c->out_off; }
size_t lc_conn_in_flight(const lc_conn *c)
{
    if (c == NULL) return 0;
    size_t n = 0;
    for (size_t i = 0; i < c->n_reqs; i++)
        if (c->reqs[i].kind != REQ_HELLO) n++;
    return n;
}

/* ---- socket path ---------------------------------------------------------------------- */

int lc_socket_path(const char *arg, char *buf, size_t buf_len)
{
    if (buf == NULL || buf_len == 0) return LC_ERR_INVAL;
    const char *env;
    int n;
    if (arg != NULL && arg[0] != '\0')
        n = snprintf(buf, buf_len, "%s", arg);
    else if ((env = getenv("LLAMAD_SOCKET")) != NULL && env[0] != '\0')
        n = snprintf(buf, buf_len, "%s", env);
    else if ((env = getenv("XDG_RUNTIME_DIR")) != NULL && env[0] != '\0')
        n = snprintf(buf, buf_len, "%s/llamad.sock", env);
    else
        n = snprintf(buf, buf_len, "%s", LC_DEFAULT_SOCKET);
    if (n < 0) return LC_ERR_INVAL;
    struct sockaddr_un sa;
    if ((size_t)n >= buf_len || (size_t)n >= sizeof sa.sun_path) return LC_ERR_NAMETOOLONG;
    return 0;
}

/* ---- life cycle ----------------------------------------------------------------------- */

lc_conn *lc_conn_new(const lc_options *opt)
{
    lc_conn *c = calloc(1, sizeof *c);
    if (c == NULL) return NULL;
    c->fd = -1;
    c->next_id = 1;
    c->dead = LC_ERR_NOTCONN;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
    const char *p = opt ? opt->socket_path : NULL;
    if (lc_socket_path(p, path, sizeof path) < 0) {
        /* kept as given; connecting reports the error */
        c->path = strdup(p ? p : "");
    } else {
        c->path = strdup(path);
    }
    c->client_name = strdup(opt && opt->client_name ? opt->client_name : "libllamactl/" LC_VERSION_STRING);
    c->max_in = opt && opt->max_frame_bytes ? opt->max_frame_bytes : LC_DEFAULT_MAX_FRAME;
    c->max_out = PROTO_DEFAULT_MAX_FRAME;
    c->timeout_ms = opt && opt->timeout_ms != 0 ? opt->timeout_ms : LC_DEFAULT_TIMEOUT_MS;
    c->rbuf = malloc(LC_READ_CHUNK);
    if (c->path == NULL || c->client_name == NULL || c->rbuf == NULL) {
        lc_conn_free(c);
        return NULL;
    }
    proto_decoder_init(&c->dec, c->max_in);
    c->err[0] = '\0';
    return c;
}

static void close_socket(lc_conn *c)
{
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->out_off = c->out_len = 0;
}

void lc_conn_free(lc_conn *c)
{
    if (c == NULL) return;
    close_socket(c);
    proto_decoder_free(&c->dec);
    free(c->path);
    free(c->client_name);
    free(c->out);
    free(c->rbuf);
    free(c->reqs);
    free(c->lp);
    free(c->top);
    free(c->pieces);
    free(c->models);
    free(c);
}

/* ---- request table -------------------------------------------------------------------- */

static lc_req *find_req(lc_conn *c, uint64_t id)
{
    for (size_t i = 0; i < c->n_reqs; i++)
        if (c->reqs[i].id == id) return &c->reqs[i];
    return NULL;
}

static int add_req(lc_conn *c, enum req_kind kind, uint32_t done_left, lc_callback cb, void *ud,
                   uint64_t *ret_id)
{
    if (c->n_reqs >= LC_MAX_IN_FLIGHT) {
        set_err(c, "too many requests in flight on this connection (%d)", LC_MAX_IN_FLIGHT);
        return LC_ERR_TOOMANY;
    }
    if (c->n_reqs == c->cap_reqs) {
        size_t ncap = c->cap_reqs ? c->cap_reqs * 2 : 8;
        lc_req *nr = realloc(c->reqs, ncap * sizeof *nr);
        if (nr == NULL) return LC_ERR_NOMEM;
        c->reqs = nr;
        c->cap_reqs = ncap;
    }
    lc_req *r = &c->reqs[c->n_reqs++];
    r->id = c->next_id++;
    r->kind = kind;
    r->done_left = done_left;
    r->cb = cb;
    r->ud = ud;
    *ret_id = r->id;
    return 0;
}

/* Removes a request; returns its copy (pointers into reqs do not survive callbacks). */
static lc_req take_req(lc_conn *c, lc_req *r)
{
    lc_req copy = *r;
    size_t i = (size_t)(r - c->reqs);
    c->reqs[i] = c->reqs[--c->n_reqs];
    return copy;
}

static void call(lc_conn *c, lc_callback cb, void *ud, const lc_event *ev)
{
    if (cb == NULL) return;
    c->in_callback++;
    cb(c, ev, ud);
    c->in_callback--;
}

/* The connection failed: every request in flight gets an error event, the socket closes. */
static int fail_conn(lc_conn *c, int code)
{
    if (c->dead) return c->dead;
    c->dead = code;
    close_socket(c);
    while (c->n_reqs > 0) {
        lc_req r = take_req(c, &c->reqs[c->n_reqs - 1]);
        lc_event ev = { .type = LC_EVENT_ERROR, .request_id = r.id, .final = true };
        ev.u.error.code = code;
        ev.u.error.message = c->err;
        call(c, r.cb, r.ud, &ev);
    }
    return code;
}

/* ---- output --------------------------------------------------------------------------- */

static int queue_msg(lc_conn *c, const ClientMessage *m)
{
    size_t need = proto_client_frame_size(m);
    if (need == 0 || need - PROTO_FRAME_HEADER > c->max_out) {
        set_err(c, "request too large: %zu bytes, llamad accepts at most %u", need,
                (unsigned)c->max_out);
        return LC_ERR_TOOBIG;
    }
    if (c->out_off > 0 && c->out_off == c->out_len) c->out_off = c->out_len = 0;
    if (c->out_cap - c->out_len < need) {
        /* compact first, then grow */
        if (c->out_off > 0) {
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        if (c->out_cap - c->out_len < need) {
            size_t ncap = c->out_cap ? c->out_cap : 4096;
            while (ncap - c->out_len < need) {
                if (ncap > SIZE_MAX / 2) return LC_ERR_NOMEM;
                ncap *= 2;
            }
            uint8_t *nb = realloc(c->out, ncap);
            if (nb == NULL) return LC_ERR_NOMEM;
            c->out = nb;
            c->out_cap = ncap;
        }
    }
    size_t len;
    int rc = proto_client_encode(m, c->out + c->out_len, c->out_cap - c->out_len, &len);
    if (rc < 0) {
        set_err(c, "cannot encode the request: %s", strerror(-rc));
        return rc == -EMSGSIZE ? LC_ERR_TOOBIG : rc;
    }
    c->out_len += len;
    return 0;
}

int lc_conn_flush(lc_conn *c)
{
    if (c == NULL) return LC_ERR_INVAL;
    if (c->dead) return c->dead;
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            int e = errno;
            set_err(c, "cannot write to llamad at %s: %s", c->path, strerror(e));
            return fail_conn(c, e == EPIPE || e == ECONNRESET ? LC_ERR_CLOSED : -e);
        }
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    return 0;
}

/* ---- input and dispatch --------------------------------------------------------------- */

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need) ncap *= 2;
    if (ncap > SIZE_MAX / elem) return LC_ERR_NOMEM;
    void *np = realloc(*p, ncap * elem);
    if (np == NULL) return LC_ERR_NOMEM;
    *p = np;
    *cap = ncap;
    return 0;
}

static int protocol_error(lc_conn *c, const char *what, uint64_t id)
{
    set_err(c, "protocol error from llamad at %s: %s (request %llu)", c->path, what,
            (unsigned long long)id);
    return fail_conn(c, LC_ERR_PROTO);
}

static int dispatch_chunk(lc_conn *c, lc_req *r, const Llamad__V1__TokenChunk *tc)
{
    lc_event ev = { .type = LC_EVENT_CHUNK, .request_id = r->id };
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
            set_err(c, "out of memory");
            return fail_conn(c, LC_ERR_NOMEM);
        }
        size_t k = 0;
        for (size_t i = 0; i < tc->n_logprobs; i++) {
            const Llamad__V1__TokenLogprob *tl = tc->logprobs[i];
            c->lp[i].logprob = tl->logprob;
            c->lp[i].top = c->top + k;
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
    call(c, r->cb, r->ud, &ev);
    return 0;
}

static lc_finish map_finish(int fr)
{
    switch (fr) {
    case LLAMAD__V1__GENERATE_DONE__FINISH_REASON__STOP: return LC_FINISH_STOP;
    case LLAMAD__V1__GENERATE_DONE__FINISH_REASON__LENGTH: return LC_FINISH_LENGTH;
    case LLAMAD__V1__GENERATE_DONE__FINISH_REASON__CANCELLED: return LC_FINISH_CANCELLED;
    case LLAMAD__V1__GENERATE_DONE__FINISH_REASON__TIMEOUT: return LC_FINISH_TIMEOUT;
    case LLAMAD__V1__GENERATE_DONE__FINISH_REASON__ERROR: return LC_FINISH_ERROR;
    default: return LC_FINISH_UNKNOWN;
    }
}

static void copy_str(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s ? s : "");
}

/* Handles one decoded server message. Returns 0 or a fatal code. */
static int dispatch(lc_conn *c, const ServerMessage *m)
{
    uint64_t id = m->request_id;
    if (m->body_case == LLAMAD__V1__SERVER_MESSAGE__BODY_ERROR && id == 0) {
        /* about the connection: remember it; if the daemon closes next, it explains why */
        const Llamad__V1__Error *e = m->error;
        set_err(c, "llamad: %s (%s)", e && e->message && e->message[0] ? e->message : "error",
                lc_server_code_name(e ? (int)e->code : 0));
        return 0;
    }
    lc_req *r = find_req(c, id);
    if (r == NULL) {
        /* e.g. the UNKNOWN_REQUEST_ID answer to a Cancel that came too late: ignored */
        if (m->body_case == LLAMAD__V1__SERVER_MESSAGE__BODY_ERROR) return 0;
        return protocol_error(c, "reply to a request that is not in flight", id);
    }
    lc_event ev = { .request_id = id, .final = true };
    switch (m->body_case) {
    case LLAMAD__V1__SERVER_MESSAGE__BODY_ERROR: {
        const Llamad__V1__Error *e = m->error;
        lc_req rq = take_req(c, r);
        int sc = e ? (int)e->code : 0;
        const char *msg = e && e->message && e->message[0] ? e->message : lc_server_code_name(sc);
        set_err(c, "%s", msg);
        ev.type = LC_EVENT_ERROR;
        ev.u.error.code = LC_ERR_SERVER;
        ev.u.error.server_code = sc;
        ev.u.error.message = c->err;
        if (rq.kind == REQ_HELLO) {
            set_err(c, "llamad refused Hello: %s (%s)", msg, lc_server_code_name(sc));
            return fail_conn(c, LC_ERR_PROTO);
        }
        call(c, rq.cb, rq.ud, &ev);
        return 0;
    }
    case LLAMAD__V1__SERVER_MESSAGE__BODY_HELLO: {
        if (r->kind != REQ_HELLO) break;
        take_req(c, r);
        const Llamad__V1__HelloReply *h = m->hello;
        if (h == NULL) return protocol_error(c, "empty HelloReply", id);
        if (h->protocol_version != PROTO_VERSION) {
            set_err(c, "llamad speaks protocol version %u, this client %u",
                    (unsigned)h->protocol_version, PROTO_VERSION);
            return fail_conn(c, LC_ERR_PROTO);
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
            take_req(c, r);
        else
            ev.final = false;
        call(c, rq.cb, rq.ud, &ev);
        return 0;
    }
    case LLAMAD__V1__SERVER_MESSAGE__BODY_TOKENIZE: {
        if (r->kind != REQ_TOKENIZE || m->tokenize == NULL) break;
        const Llamad__V1__TokenizeReply *t = m->tokenize;
        if (t->n_pieces > 0) {
            if (grow((void **)&c->pieces, &c->pieces_cap, t->n_pieces, sizeof *c->pieces) < 0) {
                set_err(c, "out of memory");
                return fail_conn(c, LC_ERR_NOMEM);
            }
            for (size_t i = 0; i < t->n_pieces; i++) {
                c->pieces[i].data = t->pieces[i].data ? (const char *)t->pieces[i].data : "";
                c->pieces[i].len = t->pieces[i].len;
            }
        }
        lc_req rq = take_req(c, r);
        ev.type = LC_EVENT_TOKENS;
        ev.u.tokens.tokens = t->token_ids;
        ev.u.tokens.n_tokens = t->n_token_ids;
        ev.u.tokens.pieces = t->n_pieces > 0 ? c->pieces : NULL;
        ev.u.tokens.n_pieces = t->n_pieces;
        call(c, rq.cb, rq.ud, &ev);
        return 0;
    }
    case LLAMAD__V1__SERVER_MESSAGE__BODY_DETOKENIZE: {
        if (r->kind != REQ_DETOKENIZE || m->detokenize == NULL) break;
        lc_req rq = take_req(c, r);
        ev.type = LC_EVENT_TEXT;
        ev.u.text.data = m->detokenize->text.data ? (const char *)m->detokenize->text.data : "";
        ev.u.text.len = m->detokenize->text.len;
        call(c, rq.cb, rq.ud, &ev);
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
        lc_req rq = take_req(c, r);
        ev.type = LC_EVENT_STATUS;
        ev.u.status = &st;
        call(c, rq.cb, rq.ud, &ev);
        return 0;
    }
    case LLAMAD__V1__SERVER_MESSAGE__BODY_MODEL_LIST: {
        if (r->kind != REQ_MODELS || m->model_list == NULL) break;
        const Llamad__V1__ModelList *ml = m->model_list;
        if (ml->n_models > 0 &&
            grow((void **)&c->models, &c->models_cap, ml->n_models, sizeof *c->models) < 0) {
            set_err(c, "out of memory");
            return fail_conn(c, LC_ERR_NOMEM);
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
        lc_req rq = take_req(c, r);
        ev.type = LC_EVENT_MODELS;
        ev.u.models.models = c->models;
        ev.u.models.n_models = ml->n_models;
        call(c, rq.cb, rq.ud, &ev);
        return 0;
    }
    default:
        break;
    }
    return protocol_error(c, "unexpected message", id);
}

static int handle_frame(lc_conn *c, const proto_frame *f)
{
    ServerMessage *m = NULL;
    int rc = proto_server_unpack(f->data, f->len, &m);
    if (rc < 0) {
        set_err(c, "protocol error from llamad at %s: a frame that is not a ServerMessage",
                c->path);
        return fail_conn(c, LC_ERR_PROTO);
    }
    rc = dispatch(c, m);
    proto_server_free(m);
    return rc;
}

int lc_conn_process(lc_conn *c)
{
    if (c == NULL) return LC_ERR_INVAL;
    if (c->in_callback) return LC_ERR_BUSY; /* the read buffer is being dispatched */
    if (c->dead) return c->dead;
    for (int reads = 0; reads < LC_MAX_READS_PER_PROCESS; reads++) {
        ssize_t n = recv(c->fd, c->rbuf, LC_READ_CHUNK, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            int e = errno;
            set_err(c, "cannot read from llamad at %s: %s", c->path, strerror(e));
            return fail_conn(c, e == ECONNRESET ? LC_ERR_CLOSED : -e);
        }
        if (n == 0) {
            /* keep a connection-level message the daemon sent just before closing */
            if (c->err[0] == '\0' || strncmp(c->err, "llamad: ", 8) != 0)
                set_err(c, "llamad closed the connection%s",
                        proto_decoder_pending(&c->dec) ? " in the middle of a frame" : "");
            return fail_conn(c, LC_ERR_CLOSED);
        }
        const uint8_t *p = c->rbuf;
        size_t left = (size_t)n;
        while (left > 0) {
            size_t used;
            proto_frame f;
            int r = proto_decoder_feed(&c->dec, p, left, &used, &f);
            if (r < 0) {
                if (r == -EMSGSIZE)
                    set_err(c, "llamad sent a frame of %u bytes, over this client's limit of %u",
                            (unsigned)c->dec.announced, (unsigned)c->max_in);
                else
                    set_err(c, "cannot decode llamad's frames: %s", strerror(-r));
                return fail_conn(c, r == -EMSGSIZE ? LC_ERR_TOOBIG : r == -ENOMEM ? LC_ERR_NOMEM : LC_ERR_PROTO);
            }
            p += used;
            left -= used;
            if (r == 1) {
                int rc = handle_frame(c, &f);
                if (rc < 0) return rc;
                if (c->dead) return c->dead;
            }
        }
    }
    return 0;
}

/* ---- waiting -------------------------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int wait_once(lc_conn *c, int timeout_ms)
{
    if (c->dead) return c->dead;
    struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
    if (c->out_len > c->out_off) pfd.events |= POLLOUT;
    int n = poll(&pfd, 1, timeout_ms);
    if (n < 0) return errno == EINTR ? LC_ERR_INTR : -errno;
    if (n == 0) return LC_ERR_TIMEOUT;
    int rc = 0;
    if (pfd.revents & POLLOUT) rc = lc_conn_flush(c);
    if (rc == 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR))) rc = lc_conn_process(c);
    return rc;
}

int lc_conn_wait(lc_conn *c, int timeout_ms)
{
    if (c == NULL) return LC_ERR_INVAL;
    if (c->in_callback) return LC_ERR_BUSY;
    return wait_once(c, timeout_ms < 0 ? -1 : timeout_ms);
}

/* Waits until request `id` is over. retry_intr: ignore signals. */
static int wait_for(lc_conn *c, uint64_t id, int timeout_ms, bool retry_intr)
{
    if (c->in_callback) return LC_ERR_BUSY;
    int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    while (find_req(c, id) != NULL) {
        int left = -1;
        if (deadline >= 0) {
            int64_t l = deadline - now_ms();
            if (l <= 0) return LC_ERR_TIMEOUT;
            left = l > INT_MAX ? INT_MAX : (int)l;
        }
        int rc = wait_once(c, left);
        if (rc == LC_ERR_INTR && retry_intr) continue;
        if (rc == LC_ERR_TIMEOUT) continue; /* re-checked against the deadline */
        if (rc < 0 && find_req(c, id) != NULL) return rc;
    }
    return 0;
}

int lc_wait_request(lc_conn *c, uint64_t request_id, int timeout_ms)
{
    if (c == NULL) return LC_ERR_INVAL;
    return wait_for(c, request_id, timeout_ms, false);
}

/* ---- connect -------------------------------------------------------------------------- */

int lc_conn_connect(lc_conn *c)
{
    if (c == NULL) return LC_ERR_INVAL;
    if (c->in_callback) return LC_ERR_BUSY;
    close_socket(c);
    c->n_reqs = 0;
    proto_decoder_free(&c->dec);
    proto_decoder_init(&c->dec, c->max_in);
    c->server_version[0] = '\0';
    c->max_out = PROTO_DEFAULT_MAX_FRAME;
    c->err[0] = '\0';

    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    size_t plen = strlen(c->path);
    if (plen == 0 || plen >= sizeof sa.sun_path) {
        set_err(c, "socket path '%s' is %s", c->path, plen ? "too long" : "empty");
        return plen ? LC_ERR_NAMETOOLONG : LC_ERR_INVAL;
    }
    memcpy(sa.sun_path, c->path, plen + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        set_err(c, "socket: %s", strerror(e));
        return -e;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        close(fd);
        set_err(c, "cannot connect to llamad at %s: %s", c->path, lc_strerror(-e));
        return -e;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        int e = errno;
        close(fd);
        set_err(c, "fcntl: %s", strerror(e));
        return -e;
    }
    c->fd = fd;
    c->dead = 0;

    /* Hello, and wait for its reply */
    Llamad__V1__Hello hello = LLAMAD__V1__HELLO__INIT;
    hello.protocol_version = PROTO_VERSION;
    hello.client_name = c->client_name;
    uint64_t id;
    int rc = add_req(c, REQ_HELLO, 0, NULL, NULL, &id);
    if (rc < 0) return rc;
    ClientMessage m = LLAMAD__V1__CLIENT_MESSAGE__INIT;
    m.request_id = id;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_HELLO;
    m.hello = &hello;
    rc = queue_msg(c, &m);
    if (rc == 0) rc = wait_for(c, id, c->timeout_ms, true);
    if (rc == 0 && c->dead) rc = c->dead;
    if (rc < 0) {
        if (rc == LC_ERR_TIMEOUT)
            set_err(c, "no answer to Hello from %s within %d ms", c->path, c->timeout_ms);
        else if (rc == LC_ERR_CLOSED)
            set_err(c, "%s closed the connection during Hello", c->path);
        c->n_reqs = 0;
        close_socket(c);
        c->dead = LC_ERR_NOTCONN;
        return rc;
    }
    c->err[0] = '\0';
    return 0;
}

int llamactl_testing_adopt_fd(lc_conn *c, int fd)
{
    if (c == NULL || fd < 0) return LC_ERR_INVAL;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -errno;
    close_socket(c);
    c->n_reqs = 0;
    c->fd = fd;
    c->dead = 0;
    c->err[0] = '\0';
    return 0;
}

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
        if (c->dead == LC_ERR_NOTCONN) set_err(c, "not connected to llamad");
        return LC_ERR_NOTCONN;
    }
    return 0;
}

/* Registers a request and queues its message; on failure nothing stays registered. */
static int submit(lc_conn *c, ClientMessage *m, enum req_kind kind, uint32_t done_left,
                  lc_callback cb, void *ud, uint64_t *ret_id)
{
    uint64_t id;
    int rc = add_req(c, kind, done_left, cb, ud, &id);
    if (rc < 0) return rc;
    m->request_id = id;
    rc = queue_msg(c, m);
    if (rc < 0) {
        take_req(c, find_req(c, id));
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
        set_err(c, "give exactly one of prompt, prompt_tokens or messages");
        return LC_ERR_INVAL;
    }
    if ((p->prompt_tokens == NULL && p->n_prompt_tokens > 0) ||
        (p->messages == NULL && p->n_messages > 0) || (p->stop == NULL && p->n_stop > 0) ||
        (p->prompt_tokens != NULL && p->n_prompt_tokens == 0) ||
        (p->messages != NULL && p->n_messages == 0)) {
        set_err(c, "empty or NULL array in the generate parameters");
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
            set_err(c, "out of memory");
            return LC_ERR_NOMEM;
        }
        for (size_t i = 0; i < p->n_messages; i++) {
            Llamad__V1__ChatMessage init = LLAMAD__V1__CHAT_MESSAGE__INIT;
            msgs[i] = init;
            if (p->messages[i].role == NULL || p->messages[i].content == NULL) {
                free(msgs);
                free(msgp);
                set_err(c, "chat message %zu has no role or content", i);
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
    lc_req *r = find_req(c, request_id);
    if (r == NULL || r->kind != REQ_GENERATE) {
        set_err(c, "no generate request %llu in flight", (unsigned long long)request_id);
        return LC_ERR_NOENT;
    }
    Llamad__V1__CancelRequest cr = LLAMAD__V1__CANCEL_REQUEST__INIT;
    cr.target_request_id = request_id;
    ClientMessage m = LLAMAD__V1__CLIENT_MESSAGE__INIT;
    /* its own, never reused id: a late UNKNOWN_REQUEST_ID answer cannot hit a live request */
    m.request_id = c->next_id++;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_CANCEL;
    m.cancel = &cr;
    return queue_msg(c, &m);
}

/* ---- blocking requests ---------------------------------------------------------------- */

typedef struct sync_ctx {
    int rc;               /* 0, or the error event's code */
    lc_callback user_cb;  /* generate: chunks go on to the user's callback */
    void *user_ud;
    lc_done done;
    uint32_t *tokens;
    size_t n_tokens;
    char *text;
    size_t text_len;
    void *block;          /* status/models: one malloc'd block */
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
        for (size_t i = 0; i < st->n_loaded_models; i++) strs += strlen(st->loaded_models[i]) + 1;
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
            const char **fields[] = { &out[i].name, &out[i].path, &out[i].architecture,
                                      &out[i].quantization };
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
    rc = wait_for(c, id, -1, true);
    if (rc < 0) return rc;
    return s->rc;
}

int lc_generate(lc_conn *c, const lc_generate_params *p, lc_callback cb, void *ud,
                lc_done *ret_done)
{
    if (c && c->in_callback) return LC_ERR_BUSY;
    sync_ctx s = { .user_cb = cb, .user_ud = ud };
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
    sync_ctx s = { 0 };
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
    sync_ctx s = { 0 };
    uint64_t id = 0;
    int rc = run_sync(c, lc_submit_detokenize(c, model, tokens, n_tokens, sync_cb, &s, &id),
                      &id, &s);
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
    sync_ctx s = { 0 };
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
    sync_ctx s = { 0 };
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
