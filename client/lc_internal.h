/* libllamactl internals shared by its source files (lc_conn.c, lc_dispatch.c,
 * lc_request.c). Not installed. Internal functions are named lci_*; the shared library
 * exports only lc_* (libllamactl.map). */
#ifndef LLAMACTL_INTERNAL_H
#define LLAMACTL_INTERNAL_H

#include "llamactl.h"

#include "frame.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef Llamad__V1__ClientMessage ClientMessage;
typedef Llamad__V1__ServerMessage ServerMessage;

#define LC_DEFAULT_MAX_FRAME     (4u << 20)
#define LC_DEFAULT_TIMEOUT_MS    10000
#define LC_MAX_IN_FLIGHT         4096
#define LC_READ_CHUNK            65536
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
    uint32_t max_out; /* the daemon's limit on our frames' payload */
    int timeout_ms;
    int dead; /* the fatal error code, 0 while usable */
    int in_callback;
    uint64_t next_id;

    char server_version[64];

    uint8_t *out; /* pending output: out[out_off .. out_len) */
    size_t out_off, out_len, out_cap;

    proto_decoder dec;
    uint8_t *rbuf; /* read buffer (LC_READ_CHUNK) */

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

void lci_set_err(lc_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The request table. Pointers into it do not survive a callback (it may grow). */
lc_req *lci_find_req(lc_conn *c, uint64_t id);
int lci_add_req(lc_conn *c, enum req_kind kind, uint32_t done_left, lc_callback cb, void *ud,
                uint64_t *ret_id);
/* Removes a request and returns a copy of it. */
lc_req lci_take_req(lc_conn *c, lc_req *r);

/* Runs a callback (NULL: nothing) with the re-entry guard set. */
void lci_call(lc_conn *c, lc_callback cb, void *ud, const lc_event *ev);

/* The connection failed with code: every request in flight gets an error event, the socket
 * closes. Returns code (or the earlier failure's). */
int lci_fail_conn(lc_conn *c, int code);

/* Encodes a message into the output buffer (checked against the daemon's frame limit). */
int lci_queue_msg(lc_conn *c, const ClientMessage *m);

/* Handles one decoded server message: runs callbacks. Returns 0 or a fatal code. */
int lci_dispatch(lc_conn *c, const ServerMessage *m);

/* Waits until request id is over (0), or timeout / signal (unless retry_intr) / failure. */
int lci_wait_for(lc_conn *c, uint64_t id, int timeout_ms, bool retry_intr);

#endif
