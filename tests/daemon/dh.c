#include "dh.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

void dh_sock_path(char *buf, size_t len, const char *name)
{
    int n = snprintf(buf, len, "%s/%s", tu_tmpdir(), name);
    CHECK(n > 0 && (size_t)n < len && (size_t)n < 108);
}

pid_t dh_spawn(const char *llamad, const char *const *args)
{
    const char *argv[64];
    int n = 0;
    argv[n++] = llamad;
    for (int i = 0; args && args[i]; i++) {
        CHECK(n < 62);
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        /* a test that fails must not leave its daemon behind */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execv(llamad, (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", llamad, strerror(errno));
        _exit(127);
    }
    return pid;
}

int dh_wait(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0) CHECK(errno == EINTR);
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    return 128 + WTERMSIG(st);
}

int dh_try_connect(const char *sock)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock);
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    int e = errno;
    close(fd);
    return rc == 0 ? 0 : -e;
}

void dh_start(dh_daemon *d, const char *llamad, const char *const *args)
{
    const char *all[64];
    int n = 0;
    all[n++] = "--socket";
    all[n++] = d->sock;
    for (int i = 0; args && args[i]; i++) {
        CHECK(n < 62);
        all[n++] = args[i];
    }
    all[n] = NULL;
    d->pid = dh_spawn(llamad, all);
    /* wait for the socket: poll until it accepts, or the daemon exits */
    for (int i = 0; i < 60000; i++) {
        if (dh_try_connect(d->sock) == 0) return;
        int st;
        pid_t w = waitpid(d->pid, &st, WNOHANG);
        CHECK_MSG(w == 0, "llamad exited during start-up (status %d)", st);
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    tu_fail(__FILE__, __LINE__, "llamad did not start listening on %s", d->sock);
}

int dh_stop(dh_daemon *d)
{
    CHECK(kill(d->pid, SIGTERM) == 0);
    return dh_wait(d->pid);
}

void dh_connect(dh_conn *c, const char *sock)
{
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(c->fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock);
    CHECK_MSG(connect(c->fd, (struct sockaddr *)&sa, sizeof sa) == 0, "connect %s: %s", sock, strerror(errno));
    proto_decoder_init(&c->dec, 64u << 20);
}

void dh_close(dh_conn *c)
{
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    proto_decoder_free(&c->dec);
}

void dh_send_raw(dh_conn *c, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t w = send(c->fd, p, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && c->may_be_refused && (errno == EPIPE || errno == ECONNRESET)) return;
        CHECK_MSG(w > 0, "send: %s", strerror(errno));
        p += w;
        len -= (size_t)w;
    }
}

void dh_send(dh_conn *c, const Llamad__V1__ClientMessage *m)
{
    size_t need = proto_client_frame_size(m);
    CHECK(need > 0);
    uint8_t *buf = malloc(need);
    CHECK(buf != NULL);
    size_t len = 0;
    CHECK(proto_client_encode(m, buf, need, &len) == 0);
    dh_send_raw(c, buf, len);
    free(buf);
}

Llamad__V1__ServerMessage *dh_recv(dh_conn *c)
{
    for (;;) {
        if (c->off < c->have) {
            size_t used = 0;
            proto_frame fr;
            int r = proto_decoder_feed(&c->dec, c->buf + c->off, c->have - c->off, &used, &fr);
            CHECK_MSG(r >= 0, "bad frame from the server (%d)", r);
            c->off += used;
            if (r == 1) {
                Llamad__V1__ServerMessage *m = NULL;
                CHECK_MSG(proto_server_unpack(fr.data, fr.len, &m) == 0, "cannot unpack a server message");
                return m;
            }
            continue;
        }
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int pr = poll(&pfd, 1, 60000);
        CHECK_MSG(pr > 0, "no reply from llamad within 60 s");
        ssize_t n = recv(c->fd, c->buf, sizeof c->buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == ECONNRESET) return NULL;
        CHECK_MSG(n >= 0, "recv: %s", strerror(errno));
        if (n == 0) return NULL;
        c->have = (size_t)n;
        c->off = 0;
    }
}

bool dh_wait_closed(dh_conn *c)
{
    Llamad__V1__ServerMessage *m;
    while ((m = dh_recv(c)) != NULL) proto_server_free(m);
    return true;
}

static void send_body(dh_conn *c, uint64_t rid, Llamad__V1__ClientMessage *m)
{
    m->request_id = rid;
    dh_send(c, m);
}

void dh_send_hello(dh_conn *c, uint64_t rid)
{
    Llamad__V1__ClientMessage m = LLAMAD__V1__CLIENT_MESSAGE__INIT;
    Llamad__V1__Hello h = LLAMAD__V1__HELLO__INIT;
    h.protocol_version = PROTO_VERSION;
    h.client_name = "daemon-test";
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_HELLO;
    m.hello = &h;
    send_body(c, rid, &m);
}

void dh_send_status(dh_conn *c, uint64_t rid)
{
    Llamad__V1__ClientMessage m = LLAMAD__V1__CLIENT_MESSAGE__INIT;
    Llamad__V1__StatusRequest s = LLAMAD__V1__STATUS_REQUEST__INIT;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_STATUS;
    m.status = &s;
    send_body(c, rid, &m);
}

void dh_send_list_models(dh_conn *c, uint64_t rid)
{
    Llamad__V1__ClientMessage m = LLAMAD__V1__CLIENT_MESSAGE__INIT;
    Llamad__V1__ListModelsRequest s = LLAMAD__V1__LIST_MODELS_REQUEST__INIT;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_LIST_MODELS;
    m.list_models = &s;
    send_body(c, rid, &m);
}

void dh_send_cancel(dh_conn *c, uint64_t rid, uint64_t target)
{
    Llamad__V1__ClientMessage m = LLAMAD__V1__CLIENT_MESSAGE__INIT;
    Llamad__V1__CancelRequest s = LLAMAD__V1__CANCEL_REQUEST__INIT;
    s.target_request_id = target;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_CANCEL;
    m.cancel = &s;
    send_body(c, rid, &m);
}

void dh_send_generate(dh_conn *c, uint64_t rid, const dh_gen *g)
{
    Llamad__V1__ClientMessage m = LLAMAD__V1__CLIENT_MESSAGE__INIT;
    Llamad__V1__GenerateRequest r = LLAMAD__V1__GENERATE_REQUEST__INIT;
    Llamad__V1__TokenIds t = LLAMAD__V1__TOKEN_IDS__INIT;
    if (g->model) r.model = (char *)g->model;
    if (g->text) {
        r.prompt_case = LLAMAD__V1__GENERATE_REQUEST__PROMPT_TEXT;
        r.text = (char *)g->text;
    } else {
        t.n_ids = g->n_ids;
        t.ids = (uint32_t *)g->ids;
        r.prompt_case = LLAMAD__V1__GENERATE_REQUEST__PROMPT_TOKENS;
        r.tokens = &t;
    }
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
    if (g->n > 0) {
        r.has_n_case = LLAMAD__V1__GENERATE_REQUEST__HAS_N_N;
        r.n = (uint32_t)g->n;
    }
    r.logprobs = (uint32_t)g->logprobs;
    r.n_stop = g->n_stop;
    r.stop = (char **)g->stop;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_GENERATE;
    m.generate = &r;
    send_body(c, rid, &m);
}

void dh_collect(dh_conn *c, dh_result *results, int n)
{
    int open = 0;
    for (int i = 0; i < n; i++) {
        open += results[i].n_expected > 0 ? results[i].n_expected : 1;
        results[i].n_ids = 0;
        results[i].text_len = 0;
        results[i].done = 0;
        results[i].error = 0;
        results[i].finish = -1;
        results[i].max_cached = 0;
    }
    while (open > 0) {
        Llamad__V1__ServerMessage *m = dh_recv(c);
        CHECK_MSG(m != NULL, "the server closed the connection with %d request(s) open", open);
        dh_result *r = NULL;
        for (int i = 0; i < n; i++)
            if (results[i].rid == m->request_id) r = &results[i];
        CHECK_MSG(r != NULL, "a frame for request %llu, which the test did not send",
                  (unsigned long long)m->request_id);
        switch (m->body_case) {
        case LLAMAD__V1__SERVER_MESSAGE__BODY_TOKEN_CHUNK: {
            const Llamad__V1__TokenChunk *tc = m->token_chunk;
            CHECK_MSG(r->done == 0 || r->n_expected > r->done, "a chunk after GenerateDone (request %llu)", (unsigned long long)r->rid);
            for (size_t k = 0; k < tc->n_token_ids; k++) {
                CHECK(r->n_ids < (int)(sizeof r->ids / sizeof r->ids[0]));
                r->ids[r->n_ids++] = tc->token_ids[k];
            }
            size_t tl = strlen(tc->text);
            CHECK(r->text_len + tl < sizeof r->text);
            memcpy(r->text + r->text_len, tc->text, tl);
            r->text_len += tl;
            r->text[r->text_len] = '\0';
            break;
        }
        case LLAMAD__V1__SERVER_MESSAGE__BODY_GENERATE_DONE:
            r->done++;
            r->finish = m->generate_done->finish_reason;
            if (m->generate_done->cached_prompt_tokens > r->max_cached)
                r->max_cached = m->generate_done->cached_prompt_tokens;
            r->last_done = *m->generate_done;
            r->last_done.base.descriptor = NULL;
            open--;
            break;
        case LLAMAD__V1__SERVER_MESSAGE__BODY_ERROR:
            r->error = m->error->code;
            fprintf(stderr, "request %llu: error %d: %s\n", (unsigned long long)r->rid, r->error, m->error->message);
            open -= (r->n_expected > 0 ? r->n_expected : 1) - r->done;
            break;
        default:
            tu_fail(__FILE__, __LINE__, "unexpected message kind %d", (int)m->body_case);
        }
        proto_server_free(m);
    }
}

void dh_expect_error(dh_conn *c, uint64_t rid, int code)
{
    Llamad__V1__ServerMessage *m = dh_recv(c);
    CHECK_MSG(m != NULL, "connection closed; expected error %d for request %llu", code, (unsigned long long)rid);
    CHECK_MSG(m->body_case == LLAMAD__V1__SERVER_MESSAGE__BODY_ERROR, "expected an Error, got message kind %d",
              (int)m->body_case);
    CHECK_MSG(m->request_id == rid && (int)m->error->code == code,
              "expected error %d for request %llu, got error %d for %llu (%s)", code, (unsigned long long)rid,
              (int)m->error->code, (unsigned long long)m->request_id, m->error->message);
    proto_server_free(m);
}
