#include "server.h"

#include <errno.h>
#include <grp.h>
#include <jemalloc/jemalloc.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "frame.h"
#include "log.h"
#include "scheduler.h"
#include "validate.h"

#ifndef LLAMAD_VERSION
#define LLAMAD_VERSION "0.0.0"
#endif

#define E(c) LLAMAD__V1__ERROR__CODE__##c
#define MAX_SLOTS 65536
#define READ_BUF 65536

typedef struct srv srv;

typedef struct req {
    uint64_t rid;
    uint64_t job_id;
    enum sched_job_kind kind;
    int done_left; /* GenerateDone frames still to come */
} req;

typedef struct conn {
    uv_pipe_t pipe; /* first: the handle's data is the conn */
    srv *srv;
    uint64_t id;
    int slot;       /* -1: not registered (refused connection) */
    proto_decoder dec;
    pid_t pid;
    uid_t uid;
    gid_t gid;
    req *reqs;
    int n_reqs, cap_reqs;
    uint8_t *out;
    size_t out_len, out_cap;
    size_t pending; /* bytes in uv_write calls not completed */
    bool paused;    /* backpressure: reading and its sequences stopped */
    bool closing;
    bool close_after_flush;
    bool reading;
    bool dirty; /* in srv.dirty: output waiting for the next flush */
} conn;

typedef struct write_req {
    uv_write_t w;
    conn *c;
    uint8_t *buf;
    size_t len;
} write_req;

struct srv {
    uv_loop_t loop;
    srv_config *cfg;
    int argc;
    char **argv;
    sched_backend *be;
    sched *sched;
    uv_pipe_t listener;
    bool listening;
    bool socket_created; /* we made the socket file (unlink it at exit) */
    uv_async_t async;
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t watchdog, drain_timer;
    bool watchdog_on;
    conn **slots;
    conn **dirty;  /* connections with output to flush after this batch of events */
    int n_dirty;
    int n_conns;   /* registered */
    int n_handles; /* conns not yet closed (registered or not) */
    uint64_t conn_gen;
    uint64_t job_counter;
    uint64_t start_ns;
    bool draining;
    bool finishing;
    uint64_t drain_deadline_ns;
    uint64_t finish_deadline_ns;
    int exit_code;
    sched_stats final; /* the scheduler's counters when it stopped */
    /* models */
    int n_models;
    sched_model_info *minfo;
    srv_model_desc *mdesc;
    srv_limits limits;
    size_t high_water, low_water, hard_limit;
    char readbuf[READ_BUF];
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void notify(const char *state)
{
#ifdef HAVE_LIBSYSTEMD
    sd_notify(0, state);
#else
    (void)state;
#endif
}

/* ---- output ---- */

static void conn_close(conn *c);
static void maybe_finish(srv *s);
static void conn_start_reading(conn *c);

static void on_write(uv_write_t *w, int status)
{
    write_req *wr = (write_req *)w;
    conn *c = wr->c;
    srv *s = c->srv;
    c->pending -= wr->len;
    free(wr->buf);
    free(wr);
    if (c->closing) return;
    if (status < 0) {
        srv_log_debug("conn %llu: write failed: %s", (unsigned long long)c->id, uv_strerror(status));
        conn_close(c);
        return;
    }
    if (c->paused && c->pending + c->out_len <= s->low_water) {
        c->paused = false;
        if (s->sched) sched_pause_conn(s->sched, c->id, false);
        if (!c->close_after_flush && !c->reading) conn_start_reading(c);
        srv_log_debug("conn %llu: resumed (client reads again)", (unsigned long long)c->id);
    }
    if (c->close_after_flush && c->pending == 0 && c->out_len == 0) conn_close(c);
}

static void conn_flush(conn *c)
{
    srv *s = c->srv;
    if (c->closing || c->out_len == 0) return;
    write_req *wr = malloc(sizeof *wr);
    if (wr == NULL) {
        conn_close(c);
        return;
    }
    wr->c = c;
    wr->buf = c->out;
    wr->len = c->out_len;
    c->out = NULL;
    c->out_len = c->out_cap = 0;
    uv_buf_t b = uv_buf_init((char *)wr->buf, (unsigned)wr->len);
    c->pending += wr->len;
    int rc = uv_write(&wr->w, (uv_stream_t *)&c->pipe, &b, 1, on_write);
    if (rc < 0) {
        c->pending -= wr->len;
        free(wr->buf);
        free(wr);
        conn_close(c);
        return;
    }
    if (c->pending > s->hard_limit) {
        srv_log_warn("conn %llu: client does not read (%zu bytes waiting); dropping it", (unsigned long long)c->id,
                     c->pending);
        conn_close(c);
        return;
    }
    if (!c->paused && c->pending > s->high_water) {
        /* a slow reader: stop its sequences and its requests until it catches up */
        c->paused = true;
        sched_pause_conn(s->sched, c->id, true);
        if (c->reading) {
            uv_read_stop((uv_stream_t *)&c->pipe);
            c->reading = false;
        }
        srv_log_debug("conn %llu: paused (%zu bytes waiting)", (unsigned long long)c->id, c->pending);
    }
}

/* Appends one frame to the connection's output. */
static void send_msg(conn *c, const Llamad__V1__ServerMessage *m)
{
    if (c->closing) return;
    size_t need = proto_server_frame_size(m);
    if (need == 0) {
        srv_log_error("conn %llu: reply too large to frame", (unsigned long long)c->id);
        return;
    }
    if (c->out_len + need > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + need) cap *= 2;
        uint8_t *n = realloc(c->out, cap);
        if (n == NULL) {
            srv_log_error("conn %llu: out of memory", (unsigned long long)c->id);
            conn_close(c);
            return;
        }
        c->out = n;
        c->out_cap = cap;
    }
    if (!c->dirty && c->srv->n_dirty < MAX_SLOTS + 1) {
        c->dirty = true;
        c->srv->dirty[c->srv->n_dirty++] = c;
    }
    size_t len = 0;
    if (proto_server_encode(m, c->out + c->out_len, c->out_cap - c->out_len, &len) != 0) {
        srv_log_error("conn %llu: cannot encode a reply", (unsigned long long)c->id);
        return;
    }
    c->out_len += len;
}

static void send_error(conn *c, uint64_t rid, int code, const char *msg)
{
    Llamad__V1__ServerMessage m = LLAMAD__V1__SERVER_MESSAGE__INIT;
    Llamad__V1__Error e = LLAMAD__V1__ERROR__INIT;
    e.code = (Llamad__V1__Error__Code)code;
    e.message = (char *)msg;
    m.request_id = rid;
    m.body_case = LLAMAD__V1__SERVER_MESSAGE__BODY_ERROR;
    m.error = &e;
    send_msg(c, &m);
    srv_log_debug("conn %llu: request %llu: error %d: %s", (unsigned long long)c->id, (unsigned long long)rid, code,
                  msg);
}

/* ---- connections ---- */

static void on_close(uv_handle_t *h)
{
    conn *c = h->data;
    srv *s = c->srv;
    if (c->dirty) {
        for (int i = 0; i < s->n_dirty; i++)
            if (s->dirty[i] == c) s->dirty[i] = s->dirty[--s->n_dirty];
    }
    proto_decoder_free(&c->dec);
    free(c->reqs);
    free(c->out);
    s->n_handles--;
    free(c);
    maybe_finish(s);
}

static void conn_close(conn *c)
{
    if (c->closing) return;
    srv *s = c->srv;
    c->closing = true;
    bool any_gen = false;
    for (int i = 0; i < c->n_reqs; i++)
        if (c->reqs[i].kind == SCHED_JOB_GENERATE) any_gen = true;
    if (any_gen && s->sched) sched_drop_conn(s->sched, c->id);
    if (c->paused && s->sched) sched_pause_conn(s->sched, c->id, false);
    if (c->slot >= 0) {
        s->slots[c->slot] = NULL;
        s->n_conns--;
        srv_log_info("conn %llu: closed (%d request(s) in flight dropped)", (unsigned long long)c->id, c->n_reqs);
    }
    c->n_reqs = 0;
    uv_close((uv_handle_t *)&c->pipe, on_close);
}

static conn *find_conn(srv *s, uint64_t id)
{
    conn *c = s->slots[id & (MAX_SLOTS - 1)];
    return (c != NULL && c->id == id) ? c : NULL;
}

static req *find_req_job(conn *c, uint64_t job_id)
{
    for (int i = 0; i < c->n_reqs; i++)
        if (c->reqs[i].job_id == job_id) return &c->reqs[i];
    return NULL;
}

static req *find_req_rid(conn *c, uint64_t rid)
{
    for (int i = 0; i < c->n_reqs; i++)
        if (c->reqs[i].rid == rid) return &c->reqs[i];
    return NULL;
}

static void remove_req(conn *c, req *r)
{
    *r = c->reqs[--c->n_reqs];
}

/* ---- replies from the loop thread ---- */

static void reply_hello(conn *c, const Llamad__V1__ClientMessage *m)
{
    srv *s = c->srv;
    if (m->hello->client_name[0] != '\0')
        srv_log_info("conn %llu: client '%s'", (unsigned long long)c->id, m->hello->client_name);
    Llamad__V1__ServerMessage r = LLAMAD__V1__SERVER_MESSAGE__INIT;
    Llamad__V1__HelloReply h = LLAMAD__V1__HELLO_REPLY__INIT;
    h.protocol_version = PROTO_VERSION;
    h.server_name = "llamad";
    h.server_version = LLAMAD_VERSION;
    h.default_model = s->n_models > 0 ? (char *)s->minfo[0].name : "";
    h.max_frame_bytes = (uint32_t)s->cfg->max_frame_bytes;
    r.request_id = m->request_id;
    r.body_case = LLAMAD__V1__SERVER_MESSAGE__BODY_HELLO;
    r.hello = &h;
    send_msg(c, &r);
}

static void jemalloc_stats(uint64_t *ret_alloc, uint64_t *ret_resident)
{
    uint64_t epoch = 1;
    size_t sz = sizeof epoch;
    size_t alloc = 0, resident = 0;
    *ret_alloc = *ret_resident = 0;
    if (mallctl("epoch", &epoch, &sz, &epoch, sz) != 0) return;
    sz = sizeof alloc;
    if (mallctl("stats.allocated", &alloc, &sz, NULL, 0) != 0) return;
    sz = sizeof resident;
    if (mallctl("stats.resident", &resident, &sz, NULL, 0) != 0) return;
    *ret_alloc = alloc;
    *ret_resident = resident;
}

static void reply_status(conn *c, uint64_t rid)
{
    srv *s = c->srv;
    sched_stats st;
    sched_get_stats(s->sched, &st);
    Llamad__V1__ServerMessage r = LLAMAD__V1__SERVER_MESSAGE__INIT;
    Llamad__V1__StatusReply sr = LLAMAD__V1__STATUS_REPLY__INIT;
    char *names[SRV_MAX_MODELS];
    for (int i = 0; i < s->n_models && i < SRV_MAX_MODELS; i++) names[i] = (char *)s->minfo[i].name;
    sr.n_loaded_models = (size_t)s->n_models;
    sr.loaded_models = names;
    sr.default_model = s->n_models > 0 ? (char *)s->minfo[0].name : "";
    sr.queue_depth = (uint32_t)st.queue_depth;
    sr.running_sequences = (uint32_t)st.running;
    sr.kv_blocks_total = (uint64_t)st.kv_blocks_total;
    sr.kv_blocks_used = (uint64_t)st.kv_blocks_used;
    sr.kv_blocks_cached = (uint64_t)st.kv_blocks_cached;
    sr.kv_block_size = (uint32_t)st.kv_block_size;
    sr.prefix_cache_hit_rate =
        st.prefix_lookup_tokens > 0 ? (double)st.prefix_hit_tokens / (double)st.prefix_lookup_tokens : 0.0;
    sr.tokens_per_second = st.tokens_per_s_1min;
    sr.uptime_seconds = (now_ns() - s->start_ns) / 1000000000ull;
    sr.connections = (uint32_t)s->n_conns;
    jemalloc_stats(&sr.jemalloc_allocated_bytes, &sr.jemalloc_resident_bytes);
    r.request_id = rid;
    r.body_case = LLAMAD__V1__SERVER_MESSAGE__BODY_STATUS;
    r.status = &sr;
    send_msg(c, &r);
}

static void reply_models(conn *c, uint64_t rid)
{
    srv *s = c->srv;
    Llamad__V1__ServerMessage r = LLAMAD__V1__SERVER_MESSAGE__INIT;
    Llamad__V1__ModelList ml = LLAMAD__V1__MODEL_LIST__INIT;
    Llamad__V1__ModelInfo infos[SRV_MAX_MODELS];
    Llamad__V1__ModelInfo *ptrs[SRV_MAX_MODELS];
    int n = s->n_models < SRV_MAX_MODELS ? s->n_models : SRV_MAX_MODELS;
    for (int i = 0; i < n; i++) {
        const sched_model_info *mi = &s->minfo[i];
        llamad__v1__model_info__init(&infos[i]);
        infos[i].name = (char *)mi->name;
        infos[i].path = (char *)(mi->path ? mi->path : "");
        infos[i].architecture = (char *)(mi->arch ? mi->arch : "");
        infos[i].parameter_count = (uint64_t)mi->n_params;
        infos[i].quantization = (char *)(mi->quant ? mi->quant : "");
        infos[i].context_length = (uint32_t)mi->n_ctx;
        infos[i].vocab_size = (uint32_t)mi->n_vocab;
        infos[i].is_default = i == 0;
        ptrs[i] = &infos[i];
    }
    ml.n_models = (size_t)n;
    ml.models = ptrs;
    r.request_id = rid;
    r.body_case = LLAMAD__V1__SERVER_MESSAGE__BODY_MODEL_LIST;
    r.model_list = &ml;
    send_msg(c, &r);
}

/* ---- requests ---- */

static void handle_message(conn *c, const Llamad__V1__ClientMessage *m)
{
    srv *s = c->srv;
    char msg[512];
    sched_job *job = NULL;
    int code = srv_validate_request(m, &s->limits, &job, msg, sizeof msg);
    if (code != 0) {
        send_error(c, m->request_id, code, msg);
        return;
    }
    uint64_t rid = m->request_id;
    if (find_req_rid(c, rid) != NULL) {
        /* every request, a Cancel too, has an id of its own that is not in flight */
        sched_job_free(job);
        snprintf(msg, sizeof msg, "request_id %llu is already in flight on this connection",
                 (unsigned long long)rid);
        send_error(c, rid, E(DUPLICATE_REQUEST_ID), msg);
        return;
    }
    switch (m->body_case) {
    case LLAMAD__V1__CLIENT_MESSAGE__BODY_HELLO:
        reply_hello(c, m);
        return;
    case LLAMAD__V1__CLIENT_MESSAGE__BODY_STATUS:
        reply_status(c, rid);
        return;
    case LLAMAD__V1__CLIENT_MESSAGE__BODY_LIST_MODELS:
        reply_models(c, rid);
        return;
    case LLAMAD__V1__CLIENT_MESSAGE__BODY_CANCEL: {
        req *r = find_req_rid(c, m->cancel->target_request_id);
        if (r == NULL || r->kind != SCHED_JOB_GENERATE) {
            snprintf(msg, sizeof msg, "no generate request %llu in flight on this connection",
                     (unsigned long long)m->cancel->target_request_id);
            send_error(c, rid, E(UNKNOWN_REQUEST_ID), msg);
            return;
        }
        sched_cancel(s->sched, r->job_id);
        return;
    }
    default:
        break;
    }
    /* Generate, Tokenize, Detokenize: into the scheduler */
    if (s->draining) {
        sched_job_free(job);
        send_error(c, rid, E(SHUTTING_DOWN), "the server is shutting down");
        return;
    }
    if (c->n_reqs >= s->cfg->max_requests_per_connection) {
        sched_job_free(job);
        snprintf(msg, sizeof msg, "%d requests are in flight on this connection; the limit is %d", c->n_reqs,
                 s->cfg->max_requests_per_connection);
        send_error(c, rid, E(TOO_MANY_REQUESTS), msg);
        return;
    }
    if (c->n_reqs == c->cap_reqs) {
        int cap = c->cap_reqs ? c->cap_reqs * 2 : 8;
        req *n = realloc(c->reqs, sizeof *n * (size_t)cap);
        if (n == NULL) {
            sched_job_free(job);
            send_error(c, rid, E(INTERNAL), "out of memory");
            return;
        }
        c->reqs = n;
        c->cap_reqs = cap;
    }
    job->id = ++s->job_counter;
    job->conn_id = c->id;
    enum sched_job_kind kind = job->kind;
    int n_done = job->kind == SCHED_JOB_GENERATE ? job->n_completions : 1;
    uint64_t job_id = job->id;
    int rc = sched_submit(s->sched, job); /* takes the job */
    if (rc == -EAGAIN) {
        snprintf(msg, sizeof msg, "the queue is full (%d requests waiting); try again later", s->cfg->max_queue);
        send_error(c, rid, E(OVERLOADED), msg);
        return;
    }
    if (rc != 0) {
        send_error(c, rid, rc == -ESHUTDOWN ? E(SHUTTING_DOWN) : E(INTERNAL), "cannot queue the request");
        return;
    }
    req *r = &c->reqs[c->n_reqs++];
    r->rid = rid;
    r->job_id = job_id;
    r->kind = kind;
    r->done_left = n_done;
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    conn *c = h->data;
    buf->base = c->srv->readbuf;
    buf->len = READ_BUF;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = st->data;
    srv *s = c->srv;
    if (nread == 0) return;
    if (nread < 0) {
        if (nread != UV_EOF)
            srv_log_debug("conn %llu: read error: %s", (unsigned long long)c->id, uv_strerror((int)nread));
        else if (proto_decoder_pending(&c->dec) > 0)
            srv_log_info("conn %llu: stream ended inside a frame", (unsigned long long)c->id);
        conn_close(c);
        return;
    }
    const uint8_t *p = (const uint8_t *)buf->base;
    size_t len = (size_t)nread;
    while (len > 0 && !c->closing && !c->close_after_flush) {
        size_t used = 0;
        proto_frame fr;
        int r = proto_decoder_feed(&c->dec, p, len, &used, &fr);
        if (r < 0) {
            char msg[128];
            if (r == -EMSGSIZE) {
                snprintf(msg, sizeof msg, "frame of %u bytes is above the limit of %u bytes", c->dec.announced,
                         c->dec.max_frame);
                send_error(c, 0, E(FRAME_TOO_LARGE), msg);
            } else {
                snprintf(msg, sizeof msg, "cannot read the stream (%s)", strerror(-r));
                send_error(c, 0, E(INTERNAL), msg);
            }
            srv_log_info("conn %llu: %s; closing", (unsigned long long)c->id, msg);
            c->close_after_flush = true;
            if (c->reading) {
                uv_read_stop(st);
                c->reading = false;
            }
            break;
        }
        p += used;
        len -= used;
        if (r == 1) {
            Llamad__V1__ClientMessage *m = NULL;
            if (proto_client_unpack(fr.data, fr.len, &m) != 0) {
                send_error(c, 0, E(MALFORMED_FRAME), "the frame is not a valid ClientMessage");
                continue;
            }
            handle_message(c, m);
            proto_client_free(m);
        }
    }
    if (!c->closing) {
        conn_flush(c);
        if (!c->closing && c->close_after_flush && c->pending == 0 && c->out_len == 0) conn_close(c);
    }
    (void)s;
}

static void conn_start_reading(conn *c)
{
    if (c->reading || c->closing) return;
    if (uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) == 0) c->reading = true;
}

static bool peer_allowed(const srv *s, uid_t uid, gid_t gid)
{
    const srv_config *cfg = s->cfg;
    if (cfg->n_allow_uids == 0 && cfg->n_allow_gids == 0) return true;
    if (uid == 0 || uid == getuid()) return true;
    for (int i = 0; i < cfg->n_allow_uids; i++)
        if (cfg->allow_uids[i] == uid) return true;
    for (int i = 0; i < cfg->n_allow_gids; i++)
        if (cfg->allow_gids[i] == gid) return true;
    return false;
}

static void on_connection(uv_stream_t *server, int status)
{
    srv *s = server->data;
    if (status < 0) {
        srv_log_warn("accept: %s", uv_strerror(status));
        return;
    }
    conn *c = calloc(1, sizeof *c);
    if (c == NULL) return;
    c->srv = s;
    c->slot = -1;
    proto_decoder_init(&c->dec, (uint32_t)s->cfg->max_frame_bytes);
    uv_pipe_init(&s->loop, &c->pipe, 0);
    c->pipe.data = c;
    s->n_handles++;
    if (uv_accept(server, (uv_stream_t *)&c->pipe) != 0) {
        c->closing = true;
        uv_close((uv_handle_t *)&c->pipe, on_close);
        return;
    }
    uv_os_fd_t fd;
    struct ucred cred = {.pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1};
    socklen_t cl = sizeof cred;
    if (uv_fileno((uv_handle_t *)&c->pipe, &fd) == 0) getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl);
    c->pid = cred.pid;
    c->uid = cred.uid;
    c->gid = cred.gid;
    c->id = (++s->conn_gen << 16);
    if (!peer_allowed(s, cred.uid, cred.gid)) {
        srv_log_warn("connection from pid %d uid %u gid %u refused: not in allow-uids/allow-gids", (int)cred.pid,
                     (unsigned)cred.uid, (unsigned)cred.gid);
        send_error(c, 0, E(PERMISSION_DENIED), "this user may not use llamad");
        c->close_after_flush = true;
        conn_flush(c);
        return;
    }
    if (s->n_conns >= s->cfg->max_connections) {
        srv_log_warn("connection from pid %d uid %u refused: %d connections open (max-connections)", (int)cred.pid,
                     (unsigned)cred.uid, s->n_conns);
        char msg[128];
        snprintf(msg, sizeof msg, "too many connections (%d); try again later", s->cfg->max_connections);
        send_error(c, 0, E(OVERLOADED), msg);
        c->close_after_flush = true;
        conn_flush(c);
        return;
    }
    int slot = -1;
    for (int i = (int)(s->conn_gen % MAX_SLOTS), k = 0; k < MAX_SLOTS; k++, i = (i + 1) % MAX_SLOTS)
        if (s->slots[i] == NULL) {
            slot = i;
            break;
        }
    c->slot = slot;
    c->id |= (uint64_t)slot;
    s->slots[slot] = c;
    s->n_conns++;
    srv_log_info("conn %llu: pid %d uid %u gid %u", (unsigned long long)c->id, (int)cred.pid, (unsigned)cred.uid,
                 (unsigned)cred.gid);
    conn_start_reading(c);
}

/* ---- scheduler events ---- */

static void handle_event(srv *s, sched_event *ev)
{
    conn *c = find_conn(s, ev->conn_id);
    if (c == NULL || c->closing) return;
    req *r = find_req_job(c, ev->job_id);
    if (r == NULL) return;
    Llamad__V1__ServerMessage m = LLAMAD__V1__SERVER_MESSAGE__INIT;
    m.request_id = r->rid;
    switch (ev->type) {
    case SCHED_EV_TOKENS: {
        Llamad__V1__TokenChunk tc = LLAMAD__V1__TOKEN_CHUNK__INIT;
        uint32_t ids[SCHED_EV_TOKENS_CAP];
        char text[SCHED_EV_TEXT_CAP + 1];
        for (int i = 0; i < ev->n_tokens; i++) ids[i] = (uint32_t)ev->tokens[i];
        memcpy(text, ev->text, ev->text_len);
        text[ev->text_len] = '\0';
        tc.n_token_ids = (size_t)ev->n_tokens;
        tc.token_ids = ids;
        tc.text = text;
        tc.index = (uint32_t)ev->index;
        /* the loop thread is the only user of these */
        static Llamad__V1__TokenLogprob lps[SCHED_EV_TOKENS_CAP];
        static Llamad__V1__TokenLogprob *lp_ptrs[SCHED_EV_TOKENS_CAP];
        static Llamad__V1__TopLogprob tops[SCHED_EV_TOKENS_CAP][SCHED_MAX_LOGPROBS];
        static Llamad__V1__TopLogprob *top_ptrs[SCHED_EV_TOKENS_CAP][SCHED_MAX_LOGPROBS];
        if (ev->n_lp > 0 && ev->n_lp == ev->n_tokens) {
            for (int i = 0; i < ev->n_lp; i++) {
                const sched_token_lp *l = &ev->lp[i];
                llamad__v1__token_logprob__init(&lps[i]);
                lps[i].logprob = l->logprob;
                for (int k = 0; k < l->n_top; k++) {
                    llamad__v1__top_logprob__init(&tops[i][k]);
                    tops[i][k].id = (uint32_t)l->top_id[k];
                    tops[i][k].logprob = l->top_lp[k];
                    tops[i][k].text.data = (uint8_t *)ev->lp_text + l->top_text_off[k];
                    tops[i][k].text.len = l->top_text_len[k];
                    top_ptrs[i][k] = &tops[i][k];
                }
                lps[i].n_top = (size_t)l->n_top;
                lps[i].top = top_ptrs[i];
                lp_ptrs[i] = &lps[i];
            }
            tc.n_logprobs = (size_t)ev->n_lp;
            tc.logprobs = lp_ptrs;
        }
        m.body_case = LLAMAD__V1__SERVER_MESSAGE__BODY_TOKEN_CHUNK;
        m.token_chunk = &tc;
        send_msg(c, &m);
        break;
    }
    case SCHED_EV_DONE: {
        Llamad__V1__GenerateDone d = LLAMAD__V1__GENERATE_DONE__INIT;
        static const Llamad__V1__GenerateDone__FinishReason fr[] = {
            [SCHED_FINISH_LENGTH] = LLAMAD__V1__GENERATE_DONE__FINISH_REASON__LENGTH,
            [SCHED_FINISH_STOP] = LLAMAD__V1__GENERATE_DONE__FINISH_REASON__STOP,
            [SCHED_FINISH_CANCELLED] = LLAMAD__V1__GENERATE_DONE__FINISH_REASON__CANCELLED,
            [SCHED_FINISH_TIMEOUT] = LLAMAD__V1__GENERATE_DONE__FINISH_REASON__TIMEOUT,
            [SCHED_FINISH_CONTEXT] = LLAMAD__V1__GENERATE_DONE__FINISH_REASON__LENGTH,
            [SCHED_FINISH_ERROR] = LLAMAD__V1__GENERATE_DONE__FINISH_REASON__ERROR,
        };
        d.finish_reason = fr[ev->finish];
        d.prompt_tokens = (uint32_t)ev->prompt_tokens;
        d.generated_tokens = (uint32_t)ev->completion_tokens;
        d.cached_prompt_tokens = (uint32_t)ev->cached_tokens;
        d.queue_us = ev->queue_ns / 1000;
        d.time_to_first_token_us = ev->ttft_ns / 1000;
        d.total_us = ev->total_ns / 1000;
        d.index = (uint32_t)ev->index;
        d.seed = ev->seed;
        m.body_case = LLAMAD__V1__SERVER_MESSAGE__BODY_GENERATE_DONE;
        m.generate_done = &d;
        send_msg(c, &m);
        srv_log_debug("conn %llu: request %llu.%d done: %s, %d+%d tokens (%d cached), queue %.1f ms, ttft %.1f ms, "
                      "total %.1f ms",
                      (unsigned long long)c->id, (unsigned long long)r->rid, ev->index,
                      sched_finish_name(ev->finish), ev->prompt_tokens, ev->completion_tokens, ev->cached_tokens,
                      ev->queue_ns / 1e6, ev->ttft_ns / 1e6, ev->total_ns / 1e6);
        if (--r->done_left <= 0) remove_req(c, r);
        break;
    }
    case SCHED_EV_ERROR: {
        static const int codes[] = {
            [SCHED_ERR_NONE] = E(INTERNAL),
            [SCHED_ERR_INVALID] = E(INVALID_PARAMETER),
            [SCHED_ERR_OVERLOADED] = E(OVERLOADED),
            [SCHED_ERR_PROMPT_TOO_LONG] = E(PROMPT_TOO_LONG),
            [SCHED_ERR_INTERNAL] = E(INTERNAL),
            [SCHED_ERR_SHUTTING_DOWN] = E(SHUTTING_DOWN),
            [SCHED_ERR_UNAVAILABLE] = E(INTERNAL),
        };
        send_error(c, r->rid, codes[ev->err], ev->message);
        remove_req(c, r);
        break;
    }
    case SCHED_EV_TOKENIZED: {
        Llamad__V1__TokenizeReply tr = LLAMAD__V1__TOKENIZE_REPLY__INIT;
        int n = ev->n_big_tokens;
        uint32_t *ids = malloc(sizeof(uint32_t) * (size_t)(n > 0 ? n : 1));
        ProtobufCBinaryData *pieces = malloc(sizeof *pieces * (size_t)(n > 0 ? n : 1));
        if (ids == NULL || pieces == NULL) {
            free(ids);
            free(pieces);
            send_error(c, r->rid, E(INTERNAL), "out of memory");
        } else {
            for (int i = 0; i < n; i++) {
                ids[i] = (uint32_t)ev->big_tokens[i];
                pieces[i].data = (uint8_t *)ev->big_text + ev->big_offsets[i];
                pieces[i].len = ev->big_offsets[i + 1] - ev->big_offsets[i];
            }
            tr.n_token_ids = (size_t)n;
            tr.token_ids = ids;
            tr.n_pieces = (size_t)n;
            tr.pieces = pieces;
            m.body_case = LLAMAD__V1__SERVER_MESSAGE__BODY_TOKENIZE;
            m.tokenize = &tr;
            send_msg(c, &m);
            free(ids);
            free(pieces);
        }
        remove_req(c, r);
        break;
    }
    case SCHED_EV_DETOKENIZED: {
        Llamad__V1__DetokenizeReply dr = LLAMAD__V1__DETOKENIZE_REPLY__INIT;
        dr.text.data = (uint8_t *)ev->big_text;
        dr.text.len = ev->big_text_len;
        m.body_case = LLAMAD__V1__SERVER_MESSAGE__BODY_DETOKENIZE;
        m.detokenize = &dr;
        send_msg(c, &m);
        remove_req(c, r);
        break;
    }
    }
}

static void on_async(uv_async_t *a)
{
    srv *s = a->data;
    if (s->sched == NULL) return;
    sched_event *ev = sched_poll_events(s->sched);
    while (ev) {
        sched_event *nx = ev->next;
        handle_event(s, ev);
        sched_event_release(s->sched, ev);
        ev = nx;
    }
    /* one write per connection for everything this batch produced */
    while (s->n_dirty > 0) {
        conn *c = s->dirty[--s->n_dirty];
        c->dirty = false;
        if (c->out_len > 0) conn_flush(c);
    }
    maybe_finish(s);
}

static void wake_loop(void *arg)
{
    srv *s = arg;
    uv_async_send(&s->async);
}

/* ---- shutdown ---- */

static void close_all_handles(srv *s);

static void maybe_finish(srv *s)
{
    if (!s->draining || s->sched == NULL) return;
    if (!s->finishing) {
        bool any_req = false;
        for (int i = 0; i < MAX_SLOTS && s->n_conns > 0 && !any_req; i++)
            if (s->slots[i] && s->slots[i]->n_reqs > 0) any_req = true;
        if (sched_active_jobs(s->sched) > 0 || any_req) return;
        s->finishing = true;
        s->finish_deadline_ns = now_ns() + 2000000000ull;
        for (int i = 0; i < MAX_SLOTS && s->n_conns > 0; i++) {
            conn *c = s->slots[i];
            if (c == NULL) continue;
            c->close_after_flush = true;
            conn_flush(c);
            if (!c->closing && c->pending == 0 && c->out_len == 0) conn_close(c);
        }
    }
    if (s->finishing && (s->n_handles == 0 || now_ns() >= s->finish_deadline_ns)) close_all_handles(s);
}

static void on_drain_timer(uv_timer_t *t)
{
    srv *s = t->data;
    if (!s->finishing && now_ns() >= s->drain_deadline_ns) {
        /* the grace period is over: whatever still runs ends with an error */
        int n = 0;
        for (int i = 0; i < MAX_SLOTS && s->n_conns > 0; i++) {
            conn *c = s->slots[i];
            if (c == NULL) continue;
            for (int k = 0; k < c->n_reqs; k++, n++)
                send_error(c, c->reqs[k].rid, E(SHUTTING_DOWN), "the server is shutting down");
            if (c->n_reqs > 0) sched_drop_conn(s->sched, c->id);
            c->n_reqs = 0;
            conn_flush(c);
        }
        if (n > 0) srv_log_warn("grace period over: %d request(s) ended with an error", n);
        s->finishing = false;
        /* force: ignore jobs the scheduler still holds (they are dropped with it) */
        s->finishing = true;
        s->finish_deadline_ns = now_ns() + 2000000000ull;
        for (int i = 0; i < MAX_SLOTS && s->n_conns > 0; i++) {
            conn *c = s->slots[i];
            if (c == NULL) continue;
            c->close_after_flush = true;
            if (!c->closing && c->pending == 0 && c->out_len == 0) conn_close(c);
        }
    }
    maybe_finish(s);
}

static void begin_drain(srv *s, const char *why)
{
    if (s->draining) {
        srv_log_info("%s again: stopping now", why);
        s->drain_deadline_ns = now_ns();
        on_drain_timer(&s->drain_timer);
        return;
    }
    s->draining = true;
    notify("STOPPING=1");
    srv_log_info("%s: no new connections; %d job(s) in flight get %d s to finish", why,
                 sched_active_jobs(s->sched), s->cfg->grace_s);
    if (s->listening) {
        uv_close((uv_handle_t *)&s->listener, NULL);
        s->listening = false;
    }
    if (s->socket_created) {
        unlink(s->cfg->socket_path);
        s->socket_created = false;
    }
    s->drain_deadline_ns = now_ns() + (uint64_t)s->cfg->grace_s * 1000000000ull;
    uv_timer_start(&s->drain_timer, on_drain_timer, 50, 50);
    maybe_finish(s);
}

static void close_cb_noop(uv_handle_t *h) { (void)h; }

static void close_walk(uv_handle_t *h, void *arg)
{
    srv *s = arg;
    if (uv_is_closing(h)) return;
    if (h->type == UV_NAMED_PIPE && h != (uv_handle_t *)&s->listener) {
        conn_close(h->data);
        return;
    }
    uv_close(h, close_cb_noop);
}

static void close_all_handles(srv *s)
{
    if (s->exit_code < 0) return;
    s->listening = false;
    /* the engine thread stops first: nothing may wake the loop's async handle after it closes */
    if (s->sched) {
        sched_get_stats(s->sched, &s->final);
        sched_destroy(s->sched);
        s->sched = NULL;
    }
    uv_walk(&s->loop, close_walk, s);
    s->exit_code = s->exit_code ? s->exit_code : 0;
    uv_stop(&s->loop);
}

static void on_signal(uv_signal_t *h, int signum)
{
    srv *s = h->data;
    if (signum == SIGHUP) {
        if (srv_log_reopen() != 0) srv_log_warn("SIGHUP: cannot reopen the log file");
        srv_config nc;
        srv_config_init(&nc);
        char err[512];
        enum srv_config_action act;
        if (srv_config_from_args(&nc, s->argc, s->argv, &act, err, sizeof err) != 0) {
            srv_log_error("SIGHUP: configuration not reloaded: %s", err);
            srv_config_free(&nc);
            return;
        }
        /* changes that need a restart */
        if (strcmp(nc.socket_path ? nc.socket_path : SRV_DEFAULT_SOCKET, s->cfg->socket_path) != 0 ||
            nc.n_models != s->cfg->n_models || nc.kv_cache_mib != s->cfg->kv_cache_mib ||
            nc.block_size != s->cfg->block_size || nc.kv_f32 != s->cfg->kv_f32 ||
            nc.max_seqs != s->cfg->max_seqs || nc.max_batch_tokens != s->cfg->max_batch_tokens ||
            nc.threads != s->cfg->threads)
            srv_log_warn("SIGHUP: socket, model, threads, kv-cache-mib, block-size, kv-type, max-seqs and "
                         "max-batch-tokens changes need a restart; they are ignored");
        if ((nc.log_file == NULL) != (s->cfg->log_file == NULL) ||
            (nc.log_file && strcmp(nc.log_file, s->cfg->log_file) != 0)) {
            if (srv_log_open(nc.log_level, nc.log_file) != 0) srv_log_error("SIGHUP: cannot open the new log file");
        }
        srv_config_apply_reload(s->cfg, &nc);
        srv_log_set_level(s->cfg->log_level);
        s->limits.max_prompt_tokens = s->cfg->max_prompt_tokens;
        s->limits.max_tokens = s->cfg->max_tokens;
        s->limits.timeout_s = s->cfg->timeout_s;
        sched_set_limits(s->sched, s->cfg->max_queue, s->cfg->max_prompt_tokens);
        srv_config_free(&nc);
        srv_log_info("SIGHUP: log reopened; reloaded log-level, log-file, max-queue, max-connections, "
                     "max-frame-bytes (new connections), max-prompt-tokens, max-tokens, "
                     "max-requests-per-connection, timeout-s, grace-s, allow-uids, allow-gids");
        return;
    }
    begin_drain(s, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void on_watchdog(uv_timer_t *t)
{
    (void)t;
    notify("WATCHDOG=1");
}

/* ---- the socket ---- */

static int open_socket(srv *s, char *err, size_t errlen)
{
    const char *path = s->cfg->socket_path;
#ifdef HAVE_LIBSYSTEMD
    int n = sd_listen_fds(1);
    if (n > 1) {
        snprintf(err, errlen, "systemd passed %d sockets; expected one", n);
        return -EINVAL;
    }
    if (n == 1) {
        int fd = SD_LISTEN_FDS_START;
        if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0) {
            snprintf(err, errlen, "the socket systemd passed is not a listening Unix stream socket");
            return -EINVAL;
        }
        int rc = uv_pipe_open(&s->listener, fd);
        if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, 128, on_connection);
        if (rc != 0) {
            snprintf(err, errlen, "cannot use the socket from systemd: %s", uv_strerror(rc));
            return rc;
        }
        srv_log_info("listening on the socket passed by systemd (socket activation)");
        return 0;
    }
#endif
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        snprintf(err, errlen, "socket path too long: %s", path);
        return -ENAMETOOLONG;
    }
    strcpy(sa.sun_path, path);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "%s exists and is not a socket; not touching it", path);
            return -EEXIST;
        }
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe < 0) {
            snprintf(err, errlen, "socket: %s", strerror(errno));
            return -errno;
        }
        int cr = connect(probe, (struct sockaddr *)&sa, sizeof sa);
        int ce = errno;
        close(probe);
        if (cr == 0) {
            snprintf(err, errlen, "another llamad is already listening on %s", path);
            return -EADDRINUSE;
        }
        if (ce != ECONNREFUSED && ce != ENOENT) {
            snprintf(err, errlen, "cannot probe %s: %s", path, strerror(ce));
            return -ce;
        }
        srv_log_info("removing stale socket %s", path);
        if (unlink(path) != 0 && errno != ENOENT) {
            snprintf(err, errlen, "cannot remove stale socket %s: %s", path, strerror(errno));
            return -errno;
        }
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -errno;
    }
    mode_t old = umask(0117); /* the socket is born 0660 */
    int br = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    int be = errno;
    umask(old);
    if (br != 0) {
        close(fd);
        snprintf(err, errlen, "cannot bind %s: %s", path, strerror(be));
        return -be;
    }
    s->socket_created = true;
    if (chmod(path, 0660) != 0) srv_log_warn("chmod 0660 %s: %s", path, strerror(errno));
    if (s->cfg->socket_group) {
        struct group *g = getgrnam(s->cfg->socket_group);
        if (g == NULL) {
            close(fd);
            snprintf(err, errlen, "socket-group: no group '%s'", s->cfg->socket_group);
            return -ENOENT;
        }
        if (chown(path, (uid_t)-1, g->gr_gid) != 0) {
            close(fd);
            snprintf(err, errlen, "cannot give %s to group %s: %s", path, s->cfg->socket_group, strerror(errno));
            return -errno;
        }
    }
    if (listen(fd, 128) != 0) {
        close(fd);
        snprintf(err, errlen, "listen %s: %s", path, strerror(errno));
        return -errno;
    }
    int rc = uv_pipe_open(&s->listener, fd);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, 128, on_connection);
    if (rc != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", path, uv_strerror(rc));
        return rc;
    }
    srv_log_info("listening on %s (mode 0660%s%s)", path, s->cfg->socket_group ? ", group " : "",
                 s->cfg->socket_group ? s->cfg->socket_group : "");
    return 0;
}

int srv_run(srv_config *cfg, sched_backend *be, int argc, char **argv)
{
    srv *s = calloc(1, sizeof *s);
    if (s == NULL) return 1;
    int code = 1;
    s->cfg = cfg;
    s->argc = argc;
    s->argv = argv;
    s->be = be;
    s->start_ns = now_ns();
    s->slots = calloc(MAX_SLOTS, sizeof *s->slots);
    s->dirty = calloc(MAX_SLOTS + 1, sizeof *s->dirty);
    s->n_models = be->ops->n_models(be->impl);
    s->minfo = calloc((size_t)(s->n_models > 0 ? s->n_models : 1), sizeof *s->minfo);
    s->mdesc = calloc((size_t)(s->n_models > 0 ? s->n_models : 1), sizeof *s->mdesc);
    if (s->slots == NULL || s->dirty == NULL || s->minfo == NULL || s->mdesc == NULL) goto out_free;
    for (int i = 0; i < s->n_models; i++) {
        be->ops->model_info(be->impl, i, &s->minfo[i]);
        s->mdesc[i].name = s->minfo[i].name;
        s->mdesc[i].n_vocab = s->minfo[i].n_vocab;
        s->mdesc[i].n_ctx = s->minfo[i].n_ctx;
    }
    s->limits.models = s->mdesc;
    s->limits.n_models = s->n_models;
    s->limits.max_prompt_tokens = cfg->max_prompt_tokens;
    s->limits.max_tokens = cfg->max_tokens;
    s->limits.timeout_s = cfg->timeout_s;
    /* A connection's unsent output: above high_water its sequences and its reading pause,
     * below low_water they resume; above hard_limit (a client that stopped reading while big
     * replies were already on their way) it is dropped. */
    s->high_water = (size_t)2 * (size_t)cfg->max_frame_bytes;
    if (s->high_water < ((size_t)64 << 10)) s->high_water = (size_t)64 << 10;
    s->low_water = s->high_water / 4;
    s->hard_limit = (size_t)64 << 20;
    if (s->hard_limit < (size_t)cfg->max_frame_bytes * 8) s->hard_limit = (size_t)cfg->max_frame_bytes * 8;

    signal(SIGPIPE, SIG_IGN);
    if (uv_loop_init(&s->loop) != 0) goto out_free;
    uv_async_init(&s->loop, &s->async, on_async);
    s->async.data = s;
    uv_signal_init(&s->loop, &s->sig_term);
    uv_signal_init(&s->loop, &s->sig_int);
    uv_signal_init(&s->loop, &s->sig_hup);
    s->sig_term.data = s->sig_int.data = s->sig_hup.data = s;
    uv_signal_start(&s->sig_term, on_signal, SIGTERM);
    uv_signal_start(&s->sig_int, on_signal, SIGINT);
    uv_signal_start(&s->sig_hup, on_signal, SIGHUP);
    uv_timer_init(&s->loop, &s->watchdog);
    uv_timer_init(&s->loop, &s->drain_timer);
    s->watchdog.data = s->drain_timer.data = s;
    uv_pipe_init(&s->loop, &s->listener, 0);
    s->listener.data = s;

    sched_config sc = {
        .max_seqs = cfg->max_seqs,
        .max_batch_tokens = cfg->max_batch_tokens,
        .max_queue = cfg->max_queue,
        .max_prompt_tokens = cfg->max_prompt_tokens,
    };
    int rc = sched_create(&sc, be, wake_loop, s, &s->sched);
    if (rc != 0) {
        srv_log_error("cannot start the scheduler: %s", strerror(-rc));
        close_all_handles(s);
        uv_run(&s->loop, UV_RUN_DEFAULT);
        goto out_loop;
    }
    char err[512];
    rc = open_socket(s, err, sizeof err);
    if (rc != 0) {
        srv_log_error("%s", err);
        close_all_handles(s);
        uv_run(&s->loop, UV_RUN_DEFAULT);
        goto out_sched;
    }
    s->listening = true;

#ifdef HAVE_LIBSYSTEMD
    uint64_t wd_usec = 0;
    if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec > 0) {
        uint64_t every_ms = wd_usec / 2000;
        if (every_ms == 0) every_ms = 1;
        uv_timer_start(&s->watchdog, on_watchdog, every_ms, every_ms);
        srv_log_info("systemd watchdog: ping every %llu ms", (unsigned long long)every_ms);
    }
#endif
    char status[256];
    snprintf(status, sizeof status, "READY=1\nSTATUS=serving %d model(s)", s->n_models);
    notify(status);
    srv_log_info("ready");

    uv_run(&s->loop, UV_RUN_DEFAULT);
    /* let the close callbacks run */
    uv_walk(&s->loop, close_walk, s);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    code = 0;
    srv_log_info("stopped: served %llu generation(s); %llu tokens generated, %llu prompt tokens computed, "
                 "%llu preemption(s), %llu steps",
                 (unsigned long long)s->final.jobs_done, (unsigned long long)s->final.tokens_generated,
                 (unsigned long long)s->final.tokens_prefilled, (unsigned long long)s->final.preemptions,
                 (unsigned long long)s->final.steps);
out_sched:
    if (s->sched) sched_destroy(s->sched);
    if (s->socket_created) unlink(cfg->socket_path);
out_loop:
    if (uv_loop_close(&s->loop) != 0) srv_log_debug("loop closed with handles open");
out_free:
    free(s->slots);
    free(s->dirty);
    free(s->minfo);
    free(s->mdesc);
    free(s);
    return code;
}
