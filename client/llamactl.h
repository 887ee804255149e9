/* libllamactl — the C client library of llamad.
 *
 * It connects to the llamad daemon over its Unix socket, says Hello, submits requests
 * (generate, chat, tokenize, detokenize, status, list models, cancel) and delivers the
 * replies — streamed tokens included — through a callback. Several requests may be in
 * flight on one connection; each is named by the request id that the submit call returns.
 *
 * Two ways to drive a connection:
 *   - blocking: lc_generate(), lc_tokenize(), lc_get_status(), ... submit one request and
 *     return when it has finished (the callbacks of other requests in flight on the same
 *     connection run meanwhile);
 *   - in an application's own event loop: poll lc_conn_fd() for reading (and for writing
 *     while lc_conn_want_write() is true), call lc_conn_process() when it is readable and
 *     lc_conn_flush() when it is writable. Neither ever blocks.
 *
 * Errors: every function that can fail returns 0 (or a count) on success and a negative
 * errno-style code (LC_ERR_*) on failure; lc_conn_error() gives a message that names the
 * problem, lc_strerror() a generic text for a code. Output parameters are named ret_* and
 * are left untouched on failure. The library never prints, never exits, never raises
 * SIGPIPE (it writes with MSG_NOSIGNAL), and installs no signal handlers.
 *
 * Thread safety: an lc_conn is not internally locked. Use each connection from one thread
 * at a time (or serialize all calls on it with your own lock); callbacks run on the thread
 * that called lc_conn_process(), lc_conn_wait(), lc_wait_request() or a blocking request
 * function. Different connections are fully independent and may be used from different
 * threads at the same time. lc_strerror(), lc_socket_path(), lc_finish_name() and
 * lc_version() are thread-safe.
 *
 * Inside a callback you may call lc_cancel(), the lc_submit_*() functions, lc_conn_flush()
 * and the read-only accessors on the same connection, but not lc_conn_process() or the
 * blocking functions (lc_conn_wait(), lc_wait_request(), lc_generate(), lc_tokenize(), ...;
 * they return LC_ERR_BUSY), and not lc_conn_free() or lc_conn_connect().
 */
#ifndef LLAMACTL_H
#define LLAMACTL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LC_VERSION_STRING "0.1.0"

/* Error codes: negative errno values. Connecting may also return the errno of socket()
 * or connect() itself, negated (e.g. -ENOENT: no socket at that path, -ECONNREFUSED:
 * nobody listening, -EACCES). */
enum {
    LC_OK = 0,
    LC_ERR_INVAL = -EINVAL,             /* a bad argument */
    LC_ERR_NOMEM = -ENOMEM,             /* out of memory */
    LC_ERR_NAMETOOLONG = -ENAMETOOLONG, /* socket path longer than a Unix socket allows */
    LC_ERR_NOTCONN = -ENOTCONN,         /* not connected, or the connection already failed */
    LC_ERR_CLOSED = -ECONNRESET,        /* the daemon closed the connection */
    LC_ERR_PROTO = -EPROTO,             /* the daemon sent something that is not llamad v1 */
    LC_ERR_TOOBIG = -EMSGSIZE,          /* a frame over the frame-size limit (either way) */
    LC_ERR_SERVER = -EREMOTEIO,         /* the daemon answered the request with an Error */
    LC_ERR_TIMEOUT = -ETIMEDOUT,        /* a timeout given by the caller expired */
    LC_ERR_INTR = -EINTR,               /* a blocking wait was interrupted by a signal */
    LC_ERR_BUSY = -EBUSY,               /* blocking call from inside a callback */
    LC_ERR_NOENT = -ESRCH,              /* no request in flight with that id */
    LC_ERR_TOOMANY = -ENOBUFS,          /* too many requests in flight on this connection */
};

/* A generic, static description of an error code ("daemon closed the connection"). */
const char *lc_strerror(int code);

/* The library's version, e.g. "0.1.0". */
const char *lc_version(void);

/* ---- socket path ---------------------------------------------------------------------- */

#define LC_DEFAULT_SOCKET "/run/llamad/llamad.sock"

/* Resolves the daemon's socket path: `arg` if non-NULL and non-empty, else $LLAMAD_SOCKET,
 * else $XDG_RUNTIME_DIR/llamad.sock, else /run/llamad/llamad.sock. Writes it to buf (NUL-
 * terminated). Returns 0, LC_ERR_NAMETOOLONG if it does not fit in buf or in a Unix socket
 * address, LC_ERR_INVAL on bad arguments. */
int lc_socket_path(const char *arg, char *buf, size_t buf_len);

/* ---- connection ----------------------------------------------------------------------- */

typedef struct lc_conn lc_conn;

typedef struct lc_options {
    const char *socket_path;  /* NULL: resolved as lc_socket_path(NULL) */
    const char *client_name;  /* sent in Hello; NULL: "libllamactl/VERSION" */
    uint32_t max_frame_bytes; /* largest frame payload accepted from the daemon; 0: 4 MiB */
    int timeout_ms;           /* bound on connect + Hello; 0: 10 s; < 0: none */
} lc_options;

/* A new, unconnected connection object. opt may be NULL (all defaults); its strings are
 * copied. Returns NULL only when out of memory. */
lc_conn *lc_conn_new(const lc_options *opt);

/* Connects to the daemon and exchanges Hello (blocking, bounded by opt->timeout_ms).
 * On failure the message (lc_conn_error) names the socket path tried; the object may be
 * freed or connected again (connecting again drops any requests still in flight, without
 * callbacks). The socket is non-blocking and close-on-exec. */
int lc_conn_connect(lc_conn *c);

/* Closes the connection and frees everything. Requests still in flight are dropped
 * without callbacks. NULL is fine. */
void lc_conn_free(lc_conn *c);

/* The message of the last failure on this connection ("" if none). Valid until the next
 * call on the connection. */
const char *lc_conn_error(const lc_conn *c);

/* The socket path this connection uses (resolved at lc_conn_new). */
const char *lc_conn_socket_path(const lc_conn *c);

/* What the daemon said in its Hello reply ("" before connecting). */
const char *lc_conn_server_version(const lc_conn *c);

/* ---- event loop integration ----------------------------------------------------------- */

/* The socket's file descriptor (-1 when not connected). Poll it for reading always, and
 * for writing while lc_conn_want_write() is true. Do not read, write or close it. */
int lc_conn_fd(const lc_conn *c);

/* True while encoded requests are waiting to be written. */
bool lc_conn_want_write(const lc_conn *c);

/* Reads whatever is readable now (never blocks), decodes the frames and runs the
 * callbacks. Returns 0, or a negative code when the connection failed (then every request
 * in flight has already received an LC_EVENT_ERROR with that code, and the connection is
 * unusable). Call it when the fd is readable; calling it when nothing is there is harmless.
 * It reads at most about 1 MiB per call, so that one busy connection cannot starve the
 * loop: poll level-triggered (poll(2), or epoll without EPOLLET). */
int lc_conn_process(lc_conn *c);

/* Writes as much pending output as the socket takes now (never blocks). Returns 0 (output
 * may remain: see lc_conn_want_write) or a negative code when the connection failed. */
int lc_conn_flush(lc_conn *c);

/* Blocks until something happens (data read and dispatched, output flushed), at most
 * timeout_ms (< 0: no limit). Returns 0, LC_ERR_TIMEOUT, LC_ERR_INTR (a signal arrived:
 * check your flags and call again), or a negative connection error. */
int lc_conn_wait(lc_conn *c, int timeout_ms);

/* The number of requests in flight. */
size_t lc_conn_in_flight(const lc_conn *c);

/* ---- replies -------------------------------------------------------------------------- */

typedef enum lc_finish {
    LC_FINISH_UNKNOWN = 0,
    LC_FINISH_STOP = 1,      /* end-of-generation token, or a stop string matched */
    LC_FINISH_LENGTH = 2,    /* max_tokens generated, or the context is full */
    LC_FINISH_CANCELLED = 3, /* cancelled (lc_cancel) */
    LC_FINISH_TIMEOUT = 4,   /* the daemon's time limit for a request ran out */
    LC_FINISH_ERROR = 5,     /* failed inside the daemon after it had started */
} lc_finish;

/* "stop", "length", "cancelled", "timeout", "error" or "unknown". */
const char *lc_finish_name(lc_finish f);

/* The daemon's error codes (llamad.v1 Error.Code), in lc_error_info.server_code. */
enum {
    LC_SERVER_INVALID_REQUEST = 1,
    LC_SERVER_UNSUPPORTED_VERSION = 2,
    LC_SERVER_UNKNOWN_MODEL = 3,
    LC_SERVER_PROMPT_TOO_LONG = 4,
    LC_SERVER_INVALID_PARAMETER = 5,
    LC_SERVER_OVERLOADED = 6,
    LC_SERVER_TOO_MANY_REQUESTS = 7,
    LC_SERVER_DUPLICATE_REQUEST_ID = 8,
    LC_SERVER_UNKNOWN_REQUEST_ID = 9,
    LC_SERVER_FRAME_TOO_LARGE = 10,
    LC_SERVER_MALFORMED_FRAME = 11,
    LC_SERVER_SHUTTING_DOWN = 12,
    LC_SERVER_PERMISSION_DENIED = 13,
    LC_SERVER_INTERNAL = 14,
};

/* "UNKNOWN_MODEL", ... ("UNSPECIFIED" for 0 or an unknown value). */
const char *lc_server_code_name(int server_code);

typedef struct lc_bytes {
    const char *data; /* raw bytes (NUL-terminated for convenience) */
    size_t len;
} lc_bytes;

typedef struct lc_top_logprob {
    uint32_t token;
    lc_bytes text;
    float logprob;
} lc_top_logprob;

typedef struct lc_token_logprob {
    float logprob;             /* of the chosen token */
    const lc_top_logprob *top; /* the most likely alternatives, most likely first */
    size_t n_top;
} lc_token_logprob;

typedef struct lc_chunk {
    uint32_t index;         /* which completion (0..n-1) */
    const uint32_t *tokens; /* token ids of this chunk */
    size_t n_tokens;
    const char *text; /* the text they add (UTF-8, may be empty), NUL-terminated */
    size_t text_len;
    const lc_token_logprob *logprobs; /* NULL, or one per token (see n_logprobs) */
    size_t n_logprobs;
} lc_chunk;

typedef struct lc_done {
    uint32_t index; /* which completion (0..n-1) finished */
    lc_finish finish;
    uint32_t prompt_tokens; /* tokens in the prompt */
    uint32_t cached_tokens; /* of them, taken from the daemon's prefix cache */
    uint32_t generated_tokens;
    uint64_t queue_us;       /* receipt -> computing started */
    uint64_t first_token_us; /* receipt -> first token sampled (0 if none) */
    uint64_t total_us;       /* receipt -> finished */
    uint64_t seed;           /* the seed it sampled with */
} lc_done;

typedef struct lc_error_info {
    int code;        /* LC_ERR_SERVER for the daemon's Error, else the connection error */
    int server_code; /* LC_SERVER_* when code is LC_ERR_SERVER, else 0 */
    const char *message;
} lc_error_info;

typedef struct lc_model_info {
    const char *name;
    const char *path;
    const char *architecture; /* e.g. "llama" */
    const char *quantization; /* e.g. "Q8_0" */
    uint64_t parameter_count;
    uint32_t context_length;
    uint32_t vocab_size;
    bool is_default;
} lc_model_info;

typedef struct lc_status {
    const char *const *loaded_models;
    size_t n_loaded_models;
    const char *default_model;
    uint32_t queue_depth; /* requests waiting */
    uint32_t running_sequences;
    uint64_t kv_blocks_total;
    uint64_t kv_blocks_used;
    uint64_t kv_blocks_cached;    /* held only by the prefix cache */
    uint32_t kv_block_size;       /* tokens per block */
    double prefix_cache_hit_rate; /* 0..1 */
    double tokens_per_second;     /* last 60 s */
    uint64_t uptime_seconds;
    uint32_t connections;
    uint64_t mem_allocated_bytes; /* jemalloc stats, 0 if not available */
    uint64_t mem_resident_bytes;
} lc_status;

typedef enum lc_event_type {
    LC_EVENT_CHUNK = 1, /* generate: tokens of one completion */
    LC_EVENT_DONE,      /* generate: one completion finished (final after n of them) */
    LC_EVENT_ERROR,     /* any request: failed (final) */
    LC_EVENT_TOKENS,    /* tokenize reply (final) */
    LC_EVENT_TEXT,      /* detokenize reply (final) */
    LC_EVENT_STATUS,    /* status reply (final) */
    LC_EVENT_MODELS,    /* list-models reply (final) */
} lc_event_type;

/* What a callback receives. Every pointer in it is valid only during the callback: copy
 * what you keep. Each request ends with exactly one final event; `final` says which. */
typedef struct lc_event {
    lc_event_type type;
    uint64_t request_id;
    bool final; /* the request is over; its id is no longer in flight */
    union {
        lc_chunk chunk;      /* LC_EVENT_CHUNK */
        lc_done done;        /* LC_EVENT_DONE */
        lc_error_info error; /* LC_EVENT_ERROR */
        struct {
            const uint32_t *tokens;
            size_t n_tokens;
            const lc_bytes *pieces; /* text of each token (n_pieces of them), or NULL */
            size_t n_pieces;
        } tokens;                /* LC_EVENT_TOKENS */
        lc_bytes text;           /* LC_EVENT_TEXT (raw bytes: usually UTF-8) */
        const lc_status *status; /* LC_EVENT_STATUS */
        struct {
            const lc_model_info *models;
            size_t n_models;
        } models; /* LC_EVENT_MODELS */
    } u;
} lc_event;

typedef void (*lc_callback)(lc_conn *c, const lc_event *ev, void *userdata);

/* ---- requests ------------------------------------------------------------------------- */

typedef struct lc_chat_message {
    const char *role; /* "system", "user" or "assistant" */
    const char *content;
} lc_chat_message;

/* Exactly one of prompt, prompt_tokens or messages gives the input. Fields left at the
 * values lc_generate_params_init() sets mean "the daemon's default" (which llamad.proto
 * documents: temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, ...). */
typedef struct lc_generate_params {
    const char *model;             /* NULL or "": the daemon's default model */
    const char *prompt;            /* plain text, tokenized by the daemon (BOS added) */
    const uint32_t *prompt_tokens; /* or token ids, used exactly as given */
    size_t n_prompt_tokens;
    const lc_chat_message *messages; /* or chat messages (the daemon applies the template) */
    size_t n_messages;
    uint32_t max_tokens;     /* 0: default */
    float temperature;       /* < 0: default; 0: greedy */
    int32_t top_k;           /* < 0: default; 0: off */
    float top_p;             /* < 0: default */
    float min_p;             /* < 0: default */
    float repeat_penalty;    /* < 0: default; 1: off */
    float presence_penalty;  /* 0: off (the default) */
    float frequency_penalty; /* 0: off (the default) */
    int32_t repeat_last_n;   /* penalty window; < -1: default; -1: whole context */
    uint64_t seed;
    bool has_seed;           /* false: the daemon picks a seed */
    const char *const *stop; /* stop strings */
    size_t n_stop;
    uint32_t logprobs; /* 0: none; N: chosen token + top N alternatives */
    uint32_t n;        /* completions; 0: default (1) */
} lc_generate_params;

void lc_generate_params_init(lc_generate_params *p);

/* Flags of lc_submit_tokenize / lc_tokenize. */
enum {
    LC_TOKENIZE_NO_SPECIAL = 1u << 0,    /* do not add BOS etc. */
    LC_TOKENIZE_PARSE_SPECIAL = 1u << 1, /* "<|eot_id|>" in the text becomes that token */
};

/* Asynchronous requests: they queue the request (it is written by lc_conn_flush or any
 * wait), return its id in *ret_id (may be NULL), and deliver the replies to cb later (cb may
 * be NULL: replies are dropped). They fail with LC_ERR_NOTCONN on a failed or unconnected
 * connection, LC_ERR_TOOBIG when the request is larger than the daemon accepts. */
int lc_submit_generate(lc_conn *c, const lc_generate_params *p, lc_callback cb, void *userdata,
                       uint64_t *ret_id);
int lc_submit_tokenize(lc_conn *c, const char *model, const char *text, unsigned flags,
                       lc_callback cb, void *userdata, uint64_t *ret_id);
int lc_submit_detokenize(lc_conn *c, const char *model, const uint32_t *tokens, size_t n_tokens,
                         lc_callback cb, void *userdata, uint64_t *ret_id);
int lc_submit_status(lc_conn *c, lc_callback cb, void *userdata, uint64_t *ret_id);
int lc_submit_models(lc_conn *c, lc_callback cb, void *userdata, uint64_t *ret_id);

/* Asks the daemon to stop a generate request. The request still ends with its final event
 * (LC_EVENT_DONE with LC_FINISH_CANCELLED, or DONE with another reason if it finished
 * first). LC_ERR_NOENT if that id is not in flight. */
int lc_cancel(lc_conn *c, uint64_t request_id);

/* Blocks until the request has received its final event (other requests' callbacks run
 * meanwhile), at most timeout_ms (< 0: no limit). Returns 0 when it is over (whatever the
 * outcome: see its events), LC_ERR_TIMEOUT, LC_ERR_INTR, or LC_ERR_BUSY. An id that is not
 * in flight (never was, or already over) returns 0 at once. */
int lc_wait_request(lc_conn *c, uint64_t request_id, int timeout_ms);

/* ---- blocking requests ---------------------------------------------------------------- */
/* Each submits one request and waits for its end. They return 0, LC_ERR_SERVER when the
 * daemon answered with an Error (its message in lc_conn_error), or a connection error.
 * Signals do not interrupt them (use the asynchronous API to react to signals). */

/* Streams the chunks to cb (may be NULL) and fills *ret_done (may be NULL) with the
 * completion's GenerateDone (the last one when p->n > 1). */
int lc_generate(lc_conn *c, const lc_generate_params *p, lc_callback cb, void *userdata,
                lc_done *ret_done);

/* *ret_tokens is malloc'd (free() it; NULL when there are no tokens). */
int lc_tokenize(lc_conn *c, const char *model, const char *text, unsigned flags,
                uint32_t **ret_tokens, size_t *ret_n_tokens);

/* *ret_text is malloc'd and NUL-terminated (free() it); *ret_len (may be NULL) its length. */
int lc_detokenize(lc_conn *c, const char *model, const uint32_t *tokens, size_t n_tokens,
                  char **ret_text, size_t *ret_len);

/* *ret_status is one malloc'd block, strings included: free() it. */
int lc_get_status(lc_conn *c, lc_status **ret_status);

/* *ret_models is one malloc'd block (array + strings): free() it. */
int lc_list_models(lc_conn *c, lc_model_info **ret_models, size_t *ret_n_models);

#ifdef __cplusplus
}
#endif

#endif
