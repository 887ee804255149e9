/* A scripted fake llamad for the client tests: listens on a Unix socket in a thread, speaks
 * the real frame codec + protobuf, and runs a script function per accepted connection. */
#ifndef LLAMAD_TESTS_FAKE_SERVER_H
#define LLAMAD_TESTS_FAKE_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"

typedef struct fs_conn {
    int fd;
    proto_decoder dec;
    uint8_t buf[4096];
    size_t off, len;
} fs_conn;

typedef void (*fs_script)(fs_conn *conn, void *ud);

typedef struct fs_server fs_server;

/* Listens on path (removed first) and serves n_conns connections one after the other,
 * running script on each. Fails the test on error. */
fs_server *fs_start(const char *path, int n_conns, fs_script script, void *ud);
/* Waits for the server thread to finish its connections, then frees it. */
void fs_stop(fs_server *s);

/* Receives one ClientMessage (waits at most 20 s; fails the test then). Returns 0, or -EPIPE
 * when the client closed the connection. Free with proto_client_free. */
int fs_recv(fs_conn *c, Llamad__V1__ClientMessage **ret_msg);
/* Like fs_recv, but fails the test on EOF or on a message of another body. */
Llamad__V1__ClientMessage *fs_expect(fs_conn *c, int body_case);
/* True when the client has closed its end (waits at most 20 s for it). */
int fs_wait_eof(fs_conn *c);

void fs_send(fs_conn *c, const Llamad__V1__ServerMessage *m);
void fs_send_raw(fs_conn *c, const void *data, size_t len);

/* Expects Hello, answers HelloReply. */
void fs_hello(fs_conn *c);
void fs_chunk(fs_conn *c, uint64_t id, const uint32_t *ids, size_t n, const char *text);
void fs_done(fs_conn *c, uint64_t id, int finish_reason, uint32_t prompt_tokens,
             uint32_t generated_tokens);
void fs_error(fs_conn *c, uint64_t id, int code, const char *message);

#endif
