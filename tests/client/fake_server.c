#include "fake_server.h"

#include "testutil.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define FS_TIMEOUT_MS 20000

struct fs_server {
    int lfd;
    int n_conns;
    fs_script script;
    void *ud;
    pthread_t th;
};

static void *server_main(void *arg)
{
    fs_server *s = arg;
    for (int i = 0; i < s->n_conns; i++) {
        struct pollfd p = {.fd = s->lfd, .events = POLLIN};
        int n = poll(&p, 1, FS_TIMEOUT_MS);
        CHECK_MSG(n == 1, "fake server: no client connected within %d ms", FS_TIMEOUT_MS);
        int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
        CHECK_MSG(fd >= 0, "fake server: accept: %s", strerror(errno));
        fs_conn c = {.fd = fd};
        proto_decoder_init(&c.dec, 0);
        s->script(&c, s->ud);
        proto_decoder_free(&c.dec);
        close(fd);
    }
    return NULL;
}

fs_server *fs_start(const char *path, int n_conns, fs_script script, void *ud)
{
    fs_server *s = calloc(1, sizeof *s);
    CHECK(s != NULL);
    s->n_conns = n_conns;
    s->script = script;
    s->ud = ud;
    unlink(path);
    s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(s->lfd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    CHECK(strlen(path) < sizeof sa.sun_path);
    strcpy(sa.sun_path, path);
    CHECK_MSG(bind(s->lfd, (struct sockaddr *)&sa, sizeof sa) == 0, "bind %s: %s", path,
              strerror(errno));
    CHECK(listen(s->lfd, 8) == 0);
    CHECK(pthread_create(&s->th, NULL, server_main, s) == 0);
    return s;
}

void fs_stop(fs_server *s)
{
    pthread_join(s->th, NULL);
    close(s->lfd);
    free(s);
}

int fs_recv(fs_conn *c, Llamad__V1__ClientMessage **ret_msg)
{
    for (;;) {
        while (c->off < c->len) {
            size_t used;
            proto_frame f;
            int r = proto_decoder_feed(&c->dec, c->buf + c->off, c->len - c->off, &used, &f);
            CHECK_MSG(r >= 0, "fake server: bad frame from the client (%d)", r);
            c->off += used;
            if (r == 1) {
                int u = proto_client_unpack(f.data, f.len, ret_msg);
                CHECK_MSG(u == 0, "fake server: undecodable ClientMessage (%d)", u);
                return 0;
            }
        }
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int n = poll(&p, 1, FS_TIMEOUT_MS);
        CHECK_MSG(n == 1, "fake server: nothing from the client within %d ms", FS_TIMEOUT_MS);
        ssize_t got = read(c->fd, c->buf, sizeof c->buf);
        if (got <= 0) return -EPIPE;
        c->off = 0;
        c->len = (size_t)got;
    }
}

Llamad__V1__ClientMessage *fs_expect(fs_conn *c, int body_case)
{
    Llamad__V1__ClientMessage *m = NULL;
    CHECK_MSG(fs_recv(c, &m) == 0, "fake server: client closed, expected body %d", body_case);
    CHECK_MSG((int)m->body_case == body_case, "fake server: got body %d, expected %d",
              (int)m->body_case, body_case);
    return m;
}

int fs_wait_eof(fs_conn *c)
{
    for (;;) {
        Llamad__V1__ClientMessage *m = NULL;
        if (fs_recv(c, &m) < 0) return 1;
        proto_client_free(m); /* ignore anything else */
    }
}

void fs_send_raw(fs_conn *c, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return; /* the client is gone: its test checks what it saw */
        p += n;
        len -= (size_t)n;
    }
}

void fs_send(fs_conn *c, const Llamad__V1__ServerMessage *m)
{
    size_t size = proto_server_frame_size(m);
    CHECK(size > 0);
    uint8_t *buf = malloc(size);
    CHECK(buf != NULL);
    size_t len;
    CHECK(proto_server_encode(m, buf, size, &len) == 0);
    fs_send_raw(c, buf, len);
    free(buf);
}

void fs_hello(fs_conn *c)
{
    Llamad__V1__ClientMessage *m = fs_expect(c, LLAMAD__V1__CLIENT_MESSAGE__BODY_HELLO);
    CHECK_EQ_INT(m->hello->protocol_version, 1);
    CHECK(m->request_id >= 1);
    Llamad__V1__HelloReply h = LLAMAD__V1__HELLO_REPLY__INIT;
    h.protocol_version = 1;
    h.server_name = "llamad";
    h.server_version = "0.1.0-fake";
    h.default_model = "tiny";
    h.max_frame_bytes = 1u << 20;
    Llamad__V1__ServerMessage r = LLAMAD__V1__SERVER_MESSAGE__INIT;
    r.request_id = m->request_id;
    r.body_case = LLAMAD__V1__SERVER_MESSAGE__BODY_HELLO;
    r.hello = &h;
    fs_send(c, &r);
    proto_client_free(m);
}

void fs_chunk(fs_conn *c, uint64_t id, const uint32_t *ids, size_t n, const char *text)
{
    Llamad__V1__TokenChunk tc = LLAMAD__V1__TOKEN_CHUNK__INIT;
    tc.n_token_ids = n;
    tc.token_ids = (uint32_t *)ids;
    tc.text = (char *)text;
    Llamad__V1__ServerMessage r = LLAMAD__V1__SERVER_MESSAGE__INIT;
    r.request_id = id;
    r.body_case = LLAMAD__V1__SERVER_MESSAGE__BODY_TOKEN_CHUNK;
    r.token_chunk = &tc;
    fs_send(c, &r);
}

void fs_done(fs_conn *c, uint64_t id, int finish_reason, uint32_t prompt_tokens,
             uint32_t generated_tokens)
{
    Llamad__V1__GenerateDone d = LLAMAD__V1__GENERATE_DONE__INIT;
    d.finish_reason = (Llamad__V1__GenerateDone__FinishReason)finish_reason;
    d.prompt_tokens = prompt_tokens;
    d.generated_tokens = generated_tokens;
    d.cached_prompt_tokens = 1;
    d.queue_us = 1500;
    d.time_to_first_token_us = 20000;
    d.total_us = 120000;
    d.seed = 42;
    Llamad__V1__ServerMessage r = LLAMAD__V1__SERVER_MESSAGE__INIT;
    r.request_id = id;
    r.body_case = LLAMAD__V1__SERVER_MESSAGE__BODY_GENERATE_DONE;
    r.generate_done = &d;
    fs_send(c, &r);
}

void fs_error(fs_conn *c, uint64_t id, int code, const char *message)
{
    Llamad__V1__Error e = LLAMAD__V1__ERROR__INIT;
    e.code = (Llamad__V1__Error__Code)code;
    e.message = (char *)message;
    Llamad__V1__ServerMessage r = LLAMAD__V1__SERVER_MESSAGE__INIT;
    r.request_id = id;
    r.body_case = LLAMAD__V1__SERVER_MESSAGE__BODY_ERROR;
    r.error = &e;
    fs_send(c, &r);
}
