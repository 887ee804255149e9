/* Test harness for the daemon tests: starts the real llamad binary on a temporary socket and
 * speaks frames to it with the proto codec. Every helper fails the test on error. */
#ifndef LLAMAD_TEST_DH_H
#define LLAMAD_TEST_DH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "frame.h"

typedef struct dh_daemon {
    pid_t pid;
    char sock[256];
} dh_daemon;

/* Starts llamad with --socket d->sock (set it first; dh_sock_path helps) and the given
 * extra arguments (NULL-terminated), and waits until the socket accepts connections. */
void dh_start(dh_daemon *d, const char *llamad, const char *const *args);
/* Starts llamad without waiting; returns its pid. */
pid_t dh_spawn(const char *llamad, const char *const *args);
/* Waits for a process and returns its exit status, or 128 + signal. */
int dh_wait(pid_t pid);
/* SIGTERM, then the exit status. */
int dh_stop(dh_daemon *d);
/* A socket path under the test's temporary folder. */
void dh_sock_path(char *buf, size_t len, const char *name);

typedef struct dh_conn {
    int fd;
    proto_decoder dec;
    uint8_t buf[65536];
    size_t have, off;
    bool may_be_refused; /* sends to a peer that already closed are dropped, not a failure:
                          * the daemon may refuse a connection (and close it) before the
                          * test's first message; dh_recv then reads its error, or NULL */
} dh_conn;

/* Connects; fails the test when that does not work. */
void dh_connect(dh_conn *c, const char *sock);
/* Tries to connect: 0 or -errno. */
int dh_try_connect(const char *sock);
void dh_close(dh_conn *c);
void dh_send(dh_conn *c, const Llamad__V1__ClientMessage *m);
void dh_send_raw(dh_conn *c, const void *data, size_t len);
/* The next server message (NULL when the server closed the connection). Fails the test
 * after 60 s without one. */
Llamad__V1__ServerMessage *dh_recv(dh_conn *c);
/* True when the server has closed the connection (reads until EOF, ignoring frames). */
bool dh_wait_closed(dh_conn *c);

/* Sends a request of each simple kind. */
void dh_send_hello(dh_conn *c, uint64_t rid);
void dh_send_status(dh_conn *c, uint64_t rid);
void dh_send_list_models(dh_conn *c, uint64_t rid);
void dh_send_cancel(dh_conn *c, uint64_t rid, uint64_t target);

/* A Generate with a token prompt. temperature < 0: absent (server default). */
typedef struct dh_gen {
    const char *model;
    const uint32_t *ids;
    size_t n_ids;
    const char *text; /* used instead of ids when not NULL */
    int max_tokens;   /* 0: absent */
    float temperature;
    bool has_temperature;
    uint64_t seed;
    bool has_seed;
    int n;            /* 0: absent */
    const char *const *stop;
    size_t n_stop;
    int logprobs;
} dh_gen;
void dh_send_generate(dh_conn *c, uint64_t rid, const dh_gen *g);

/* The result of one Generate, collected from its frames. */
typedef struct dh_result {
    uint64_t rid;
    int n_expected;    /* GenerateDone frames that end it (0 means 1) */
    uint32_t ids[4096];
    int n_ids;
    char text[16384];
    size_t text_len;
    int done;          /* GenerateDone frames seen */
    int finish;        /* finish reason of the last one */
    int error;         /* Error code, 0 if none */
    uint32_t max_cached; /* largest cached_prompt_tokens of its GenerateDone frames */
    Llamad__V1__GenerateDone last_done;
} dh_result;

/* Reads frames until every one of results[0..n) has ended (done or error); frames of other
 * request ids fail the test. */
void dh_collect(dh_conn *c, dh_result *results, int n);

/* Expects the next message to be an Error with this request id and code. */
void dh_expect_error(dh_conn *c, uint64_t rid, int code);

#endif
