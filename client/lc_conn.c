/* libllamactl: connections, the request table, frame I/O, waiting. See llamactl.h. */
#include "lc_internal.h"
#include "lc_testing.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ---- small things --------------------------------------------------------------------- */

const char *lc_version(void)
{
    return LC_VERSION_STRING;
}

const char *lc_strerror(int code)
{
    switch (code) {
    case LC_OK:
        return "success";
    case LC_ERR_INVAL:
        return "invalid argument";
    case LC_ERR_NOMEM:
        return "out of memory";
    case LC_ERR_NAMETOOLONG:
        return "socket path too long";
    case LC_ERR_NOTCONN:
        return "not connected to llamad";
    case LC_ERR_CLOSED:
        return "llamad closed the connection";
    case LC_ERR_PROTO:
        return "protocol error (not a llamad v1 daemon?)";
    case LC_ERR_TOOBIG:
        return "frame larger than the limit";
    case LC_ERR_SERVER:
        return "llamad refused the request";
    case LC_ERR_TIMEOUT:
        return "timed out";
    case LC_ERR_INTR:
        return "interrupted";
    case LC_ERR_BUSY:
        return "blocking call inside a callback";
    case LC_ERR_NOENT:
        return "no such request in flight";
    case LC_ERR_TOOMANY:
        return "too many requests in flight";
    case -ENOENT:
        return "no socket at that path";
    case -ECONNREFUSED:
        return "connection refused (nobody listening on the socket)";
    case -EACCES:
        return "permission denied";
    default:
        return code < 0 ? strerror(-code) : "unknown error";
    }
}

const char *lc_finish_name(lc_finish f)
{
    switch (f) {
    case LC_FINISH_STOP:
        return "stop";
    case LC_FINISH_LENGTH:
        return "length";
    case LC_FINISH_CANCELLED:
        return "cancelled";
    case LC_FINISH_TIMEOUT:
        return "timeout";
    case LC_FINISH_ERROR:
        return "error";
    default:
        return "unknown";
    }
}

const char *lc_server_code_name(int code)
{
    static const char *const names[] = {
        "UNSPECIFIED",        "INVALID_REQUEST",   "UNSUPPORTED_VERSION",
        "UNKNOWN_MODEL",      "PROMPT_TOO_LONG",   "INVALID_PARAMETER",
        "OVERLOADED",         "TOO_MANY_REQUESTS", "DUPLICATE_REQUEST_ID",
        "UNKNOWN_REQUEST_ID", "FRAME_TOO_LARGE",   "MALFORMED_FRAME",
        "SHUTTING_DOWN",      "PERMISSION_DENIED", "INTERNAL",
    };
    if (code < 0 || (size_t)code >= sizeof names / sizeof names[0]) return names[0];
    return names[code];
}

void lci_set_err(lc_conn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
}

const char *lc_conn_error(const lc_conn *c)
{
    return c ? c->err : "no connection";
}
const char *lc_conn_socket_path(const lc_conn *c)
{
    return c ? c->path : "";
}
const char *lc_conn_server_version(const lc_conn *c)
{
    return c ? c->server_version : "";
}
int lc_conn_fd(const lc_conn *c)
{
    return c ? c->fd : -1;
}
bool lc_conn_want_write(const lc_conn *c)
{
    return c && c->fd >= 0 && c->out_len > c->out_off;
}
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
    c->client_name =
        strdup(opt && opt->client_name ? opt->client_name : "libllamactl/" LC_VERSION_STRING);
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

lc_req *lci_find_req(lc_conn *c, uint64_t id)
{
    for (size_t i = 0; i < c->n_reqs; i++)
        if (c->reqs[i].id == id) return &c->reqs[i];
    return NULL;
}

int lci_add_req(lc_conn *c, enum req_kind kind, uint32_t done_left, lc_callback cb, void *ud,
                uint64_t *ret_id)
{
    if (c->n_reqs >= LC_MAX_IN_FLIGHT) {
        lci_set_err(c, "too many requests in flight on this connection (%d)", LC_MAX_IN_FLIGHT);
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
lc_req lci_take_req(lc_conn *c, lc_req *r)
{
    lc_req copy = *r;
    size_t i = (size_t)(r - c->reqs);
    c->reqs[i] = c->reqs[--c->n_reqs];
    return copy;
}

void lci_call(lc_conn *c, lc_callback cb, void *ud, const lc_event *ev)
{
    if (cb == NULL) return;
    c->in_callback++;
    cb(c, ev, ud);
    c->in_callback--;
}

/* The connection failed: every request in flight gets an error event, the socket closes. */
int lci_fail_conn(lc_conn *c, int code)
{
    if (c->dead) return c->dead;
    c->dead = code;
    close_socket(c);
    while (c->n_reqs > 0) {
        lc_req r = lci_take_req(c, &c->reqs[c->n_reqs - 1]);
        lc_event ev = {.type = LC_EVENT_ERROR, .request_id = r.id, .final = true};
        ev.u.error.code = code;
        ev.u.error.message = c->err;
        lci_call(c, r.cb, r.ud, &ev);
    }
    return code;
}

/* ---- output --------------------------------------------------------------------------- */

int lci_queue_msg(lc_conn *c, const ClientMessage *m)
{
    size_t need = proto_client_frame_size(m);
    if (need == 0 || need - PROTO_FRAME_HEADER > c->max_out) {
        lci_set_err(c, "request too large: %zu bytes, llamad accepts at most %u", need,
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
        lci_set_err(c, "cannot encode the request: %s", strerror(-rc));
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
            lci_set_err(c, "cannot write to llamad at %s: %s", c->path, strerror(e));
            return lci_fail_conn(c, e == EPIPE || e == ECONNRESET ? LC_ERR_CLOSED : -e);
        }
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    return 0;
}

static int handle_frame(lc_conn *c, const proto_frame *f)
{
    ServerMessage *m = NULL;
    int rc = proto_server_unpack(f->data, f->len, &m);
    if (rc < 0) {
        lci_set_err(c, "protocol error from llamad at %s: a frame that is not a ServerMessage",
                    c->path);
        return lci_fail_conn(c, LC_ERR_PROTO);
    }
    rc = lci_dispatch(c, m);
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
            lci_set_err(c, "cannot read from llamad at %s: %s", c->path, strerror(e));
            return lci_fail_conn(c, e == ECONNRESET ? LC_ERR_CLOSED : -e);
        }
        if (n == 0) {
            /* keep a connection-level message the daemon sent just before closing */
            if (c->err[0] == '\0' || strncmp(c->err, "llamad: ", 8) != 0)
                lci_set_err(c, "llamad closed the connection%s",
                            proto_decoder_pending(&c->dec) ? " in the middle of a frame" : "");
            return lci_fail_conn(c, LC_ERR_CLOSED);
        }
        const uint8_t *p = c->rbuf;
        size_t left = (size_t)n;
        while (left > 0) {
            size_t used;
            proto_frame f;
            int r = proto_decoder_feed(&c->dec, p, left, &used, &f);
            if (r < 0) {
                if (r == -EMSGSIZE)
                    lci_set_err(c,
                                "llamad sent a frame of %u bytes, over this client's limit of %u",
                                (unsigned)c->dec.announced, (unsigned)c->max_in);
                else
                    lci_set_err(c, "cannot decode llamad's frames: %s", strerror(-r));
                return lci_fail_conn(c, r == -EMSGSIZE ? LC_ERR_TOOBIG
                                        : r == -ENOMEM ? LC_ERR_NOMEM
                                                       : LC_ERR_PROTO);
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
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
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
int lci_wait_for(lc_conn *c, uint64_t id, int timeout_ms, bool retry_intr)
{
    if (c->in_callback) return LC_ERR_BUSY;
    int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    while (lci_find_req(c, id) != NULL) {
        int left = -1;
        if (deadline >= 0) {
            int64_t l = deadline - now_ms();
            if (l <= 0) return LC_ERR_TIMEOUT;
            left = l > INT_MAX ? INT_MAX : (int)l;
        }
        int rc = wait_once(c, left);
        if (rc == LC_ERR_INTR && retry_intr) continue;
        if (rc == LC_ERR_TIMEOUT) continue; /* re-checked against the deadline */
        if (rc < 0 && lci_find_req(c, id) != NULL) return rc;
    }
    return 0;
}

int lc_wait_request(lc_conn *c, uint64_t request_id, int timeout_ms)
{
    if (c == NULL) return LC_ERR_INVAL;
    return lci_wait_for(c, request_id, timeout_ms, false);
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

    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t plen = strlen(c->path);
    if (plen == 0 || plen >= sizeof sa.sun_path) {
        lci_set_err(c, "socket path '%s' is %s", c->path, plen ? "too long" : "empty");
        return plen ? LC_ERR_NAMETOOLONG : LC_ERR_INVAL;
    }
    memcpy(sa.sun_path, c->path, plen + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        lci_set_err(c, "socket: %s", strerror(e));
        return -e;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        close(fd);
        lci_set_err(c, "cannot connect to llamad at %s: %s", c->path, lc_strerror(-e));
        return -e;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        int e = errno;
        close(fd);
        lci_set_err(c, "fcntl: %s", strerror(e));
        return -e;
    }
    c->fd = fd;
    c->dead = 0;

    /* Hello, and wait for its reply */
    Llamad__V1__Hello hello = LLAMAD__V1__HELLO__INIT;
    hello.protocol_version = PROTO_VERSION;
    hello.client_name = c->client_name;
    uint64_t id;
    int rc = lci_add_req(c, REQ_HELLO, 0, NULL, NULL, &id);
    if (rc < 0) return rc;
    ClientMessage m = LLAMAD__V1__CLIENT_MESSAGE__INIT;
    m.request_id = id;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_HELLO;
    m.hello = &hello;
    rc = lci_queue_msg(c, &m);
    if (rc == 0) rc = lci_wait_for(c, id, c->timeout_ms, true);
    if (rc == 0 && c->dead) rc = c->dead;
    if (rc < 0) {
        if (rc == LC_ERR_TIMEOUT)
            lci_set_err(c, "no answer to Hello from %s within %d ms", c->path, c->timeout_ms);
        else if (rc == LC_ERR_CLOSED)
            lci_set_err(c, "%s closed the connection during Hello", c->path);
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
