/* Request validation: every field of a decoded ClientMessage is checked against the
 * protocol's documented ranges and the server's limits, and turned into a scheduler job.
 * Pure functions (no I/O, no state): the per-connection checks (duplicate request ids,
 * requests in flight, Cancel targets) are the server's. */
#ifndef LLAMAD_VALIDATE_H
#define LLAMAD_VALIDATE_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "scheduler.h"

typedef struct srv_model_desc {
    const char *name;
    int n_vocab;
    int n_ctx;
} srv_model_desc;

typedef struct srv_limits {
    const srv_model_desc *models;
    int n_models; /* models[0] is the default */
    int max_prompt_tokens;
    int max_tokens; /* cap, and the default when a request sets none */
    int timeout_s;  /* 0: none */
} srv_limits;

#define SRV_MAX_STOPS 16
#define SRV_MAX_STOP_BYTES 256
#define SRV_MAX_COMPLETIONS 16
#define SRV_MAX_LOGPROBS 20
#define SRV_MAX_CHAT_MESSAGES 1024
#define SRV_MAX_CLIENT_NAME 256
#define SRV_MAX_ROLE_BYTES 64

/* Finds a model by name ("" or NULL: the default). Returns its index or -1. */
int srv_find_model(const srv_limits *lim, const char *name);

/* True if s[0..len) is valid UTF-8. */
int srv_utf8_valid(const char *s, size_t len);

/* Checks the envelope and the body's fields. Returns 0 when valid, or an Error code
 * (LLAMAD__V1__ERROR__CODE__*) with a message in msg. For Generate, Tokenize and
 * Detokenize a valid request also yields *ret_job (a new job, caller owns; id/conn_id are
 * the caller's to set); for the other kinds *ret_job is set to NULL. */
int srv_validate_request(const Llamad__V1__ClientMessage *m, const srv_limits *lim, sched_job **ret_job,
                         char *msg, size_t msglen);

#endif
