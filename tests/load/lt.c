#include "lt.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

long lt_raise_nofile(long want)
{
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    if ((long)rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || (long)rl.rlim_max >= want ? (rlim_t)want : rl.rlim_max;
        CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    }
    return (long)rl.rlim_cur;
}

long lt_rss_kib(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    CHECK_MSG(f != NULL, "cannot open %s", path);
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
    fclose(f);
    CHECK_MSG(kib > 0, "no VmRSS in %s", path);
    return kib;
}

void lt_open(lt_stream *s, const char *sock)
{
    s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK_MSG(s->fd >= 0, "socket: %s", strerror(errno));
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock);
    /* the listen backlog may be momentarily full with hundreds of connects: retry */
    for (int i = 0;; i++) {
        if (connect(s->fd, (struct sockaddr *)&sa, sizeof sa) == 0) break;
        CHECK_MSG(errno == EAGAIN && i < 100000, "connect %s: %s", sock, strerror(errno));
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    proto_decoder_init(&s->dec, 16u << 20);
    s->dec_init = true;
}

void lt_close(lt_stream *s)
{
    if (s->fd >= 0) close(s->fd);
    s->fd = -1;
    if (s->dec_init) proto_decoder_free(&s->dec);
    s->dec_init = false;
}

void lt_send(lt_stream *s, const Llamad__V1__ClientMessage *m)
{
    size_t need = proto_client_frame_size(m);
    CHECK(need > 0);
    uint8_t *buf = malloc(need);
    CHECK(buf != NULL);
    size_t len = 0;
    CHECK(proto_client_encode(m, buf, need, &len) == 0);
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t w = send(s->fd, p, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        CHECK_MSG(w > 0, "send: %s", strerror(errno));
        p += w;
        len -= (size_t)w;
    }
    free(buf);
}

void lt_send_generate(lt_stream *s, const dh_gen *g)
{
    Llamad__V1__ClientMessage m = LLAMAD__V1__CLIENT_MESSAGE__INIT;
    Llamad__V1__GenerateRequest r = LLAMAD__V1__GENERATE_REQUEST__INIT;
    Llamad__V1__TokenIds t = LLAMAD__V1__TOKEN_IDS__INIT;
    if (g->model) r.model = (char *)g->model;
    t.n_ids = g->n_ids;
    t.ids = (uint32_t *)g->ids;
    r.prompt_case = LLAMAD__V1__GENERATE_REQUEST__PROMPT_TOKENS;
    r.tokens = &t;
    if (g->max_tokens > 0) {
        r.has_max_tokens_case = LLAMAD__V1__GENERATE_REQUEST__HAS_MAX_TOKENS_MAX_TOKENS;
        r.max_tokens = (uint32_t)g->max_tokens;
    }
    if (g->has_temperature) {
        r.has_temperature_case = LLAMAD__V1__GENERATE_REQUEST__HAS_TEMPERATURE_TEMPERATURE;
        r.temperature = g->temperature;
    }
    if (g->has_seed) {
        r.has_seed_case = LLAMAD__V1__GENERATE_REQUEST__HAS_SEED_SEED;
        r.seed = g->seed;
    }
    r.logprobs = (uint32_t)g->logprobs;
    m.request_id = s->rid;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_GENERATE;
    m.generate = &r;
    lt_send(s, &m);
}

void lt_send_cancel(lt_stream *s)
{
    Llamad__V1__ClientMessage m = LLAMAD__V1__CLIENT_MESSAGE__INIT;
    Llamad__V1__CancelRequest c = LLAMAD__V1__CANCEL_REQUEST__INIT;
    c.target_request_id = s->rid;
    m.request_id = s->rid + 1000000;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_CANCEL;
    m.cancel = &c;
    lt_send(s, &m);
    s->cancel_sent = true;
}

static void on_message(lt_stream *s, Llamad__V1__ServerMessage *m)
{
    switch (m->body_case) {
    case LLAMAD__V1__SERVER_MESSAGE__BODY_TOKEN_CHUNK:
        CHECK_MSG(m->request_id == s->rid, "chunk for request %llu on the connection of %llu",
                  (unsigned long long)m->request_id, (unsigned long long)s->rid);
        CHECK_MSG(!s->done, "a chunk after GenerateDone");
        for (size_t k = 0; k < m->token_chunk->n_token_ids; k++) {
            CHECK(s->n_ids < (int)(sizeof s->ids / sizeof s->ids[0]));
            s->ids[s->n_ids++] = m->token_chunk->token_ids[k];
        }
        s->n_chunks++;
        break;
    case LLAMAD__V1__SERVER_MESSAGE__BODY_GENERATE_DONE:
        CHECK(m->request_id == s->rid);
        CHECK_MSG(!s->done, "two GenerateDone frames");
        s->done = 1;
        s->finish = m->generate_done->finish_reason;
        break;
    case LLAMAD__V1__SERVER_MESSAGE__BODY_ERROR:
        /* a Cancel that arrives after the end names a request no longer in flight */
        if (m->request_id == s->rid + 1000000 && m->error->code == LLAMAD__V1__ERROR__CODE__UNKNOWN_REQUEST_ID &&
            s->done)
            break;
        CHECK_MSG(m->request_id == s->rid, "error %d for request %llu (%s)", (int)m->error->code,
                  (unsigned long long)m->request_id, m->error->message);
        s->error = m->error->code;
        fprintf(stderr, "request %llu: error %d: %s\n", (unsigned long long)s->rid, s->error, m->error->message);
        break;
    default:
        tu_fail(__FILE__, __LINE__, "unexpected message kind %d", (int)m->body_case);
    }
}

bool lt_pump(lt_stream *s)
{
    uint8_t buf[16384];
    for (;;) {
        ssize_t n = recv(s->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n < 0 && errno == ECONNRESET) n = 0;
        CHECK_MSG(n >= 0, "recv: %s", strerror(errno));
        if (n == 0) {
            s->eof = true;
            return false;
        }
        size_t off = 0;
        while (off < (size_t)n) {
            size_t used = 0;
            proto_frame fr;
            int r = proto_decoder_feed(&s->dec, buf + off, (size_t)n - off, &used, &fr);
            CHECK_MSG(r >= 0, "bad frame from the server (%d)", r);
            off += used;
            if (r == 1) {
                Llamad__V1__ServerMessage *m = NULL;
                CHECK(proto_server_unpack(fr.data, fr.len, &m) == 0);
                on_message(s, m);
                proto_server_free(m);
            }
        }
        if ((size_t)n < sizeof buf) break;
    }
    /* a cancelled stream still ends with its GenerateDone (or its Cancel's error) */
    return !(s->done || s->error);
}

void lt_run(lt_stream *ss, int n)
{
    struct pollfd *p = calloc((size_t)n, sizeof *p);
    int *idx = calloc((size_t)n, sizeof *idx);
    CHECK(p != NULL && idx != NULL);
    for (;;) {
        int np = 0;
        for (int i = 0; i < n; i++) {
            if (ss[i].fd < 0) continue;
            p[np] = (struct pollfd){.fd = ss[i].fd, .events = POLLIN};
            idx[np++] = i;
        }
        if (np == 0) break;
        int pr = poll(p, (nfds_t)np, 60000);
        CHECK_MSG(pr > 0, "no progress from llamad within 60 s (%d streams open)", np);
        for (int k = 0; k < np; k++) {
            if (p[k].revents == 0) continue;
            lt_stream *s = &ss[idx[k]];
            bool more = lt_pump(s);
            if (!more) {
                lt_close(s);
                continue;
            }
            if (s->drop_after >= 0 && s->n_chunks >= s->drop_after) {
                s->dropped = true;
                lt_close(s);
                continue;
            }
            if (s->cancel_after >= 0 && !s->cancel_sent && s->n_chunks >= s->cancel_after) lt_send_cancel(s);
        }
    }
    free(p);
    free(idx);
}

void lt_get_status(const char *sock, lt_status *ret)
{
    dh_conn *c = malloc(sizeof *c);
    CHECK(c != NULL);
    dh_connect(c, sock);
    dh_send_status(c, 7);
    Llamad__V1__ServerMessage *m = dh_recv(c);
    CHECK(m != NULL && m->body_case == LLAMAD__V1__SERVER_MESSAGE__BODY_STATUS);
    const Llamad__V1__StatusReply *st = m->status;
    *ret = (lt_status){.kv_used = st->kv_blocks_used, .kv_total = st->kv_blocks_total,
                       .kv_cached = st->kv_blocks_cached, .running = st->running_sequences,
                       .queue = st->queue_depth, .connections = st->connections};
    proto_server_free(m);
    dh_close(c);
    free(c);
}

void lt_wait_idle(const char *sock, lt_status *ret)
{
    for (int i = 0;; i++) {
        lt_get_status(sock, ret);
        if (ret->running == 0 && ret->queue == 0 && ret->connections == 1 && ret->kv_used == 0) return;
        CHECK_MSG(i < 6000, "llamad is not idle: running %u, queue %u, connections %u, kv used %llu",
                  ret->running, ret->queue, ret->connections, (unsigned long long)ret->kv_used);
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}
