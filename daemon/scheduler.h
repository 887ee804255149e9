/* The scheduler: continuous batching on its own engine thread.
 *
 * The loop thread talks to it through two queues:
 *   commands in  (sched_submit / sched_cancel / sched_pause ...): mutex + list, the engine
 *                thread wakes on a condition variable;
 *   events out   (tokens, done, errors, tokenize results): mutex + list; the scheduler calls
 *                the wake callback (the server passes one that does uv_async_send) and the
 *                loop drains them with sched_poll_events.
 *
 * Each step: one decode token for every running sequence, then prompt chunks of admitted
 * or waiting sequences up to max-batch-tokens (chunked prefill). A waiting sequence is
 * admitted (FCFS) only when the KV cache can hold its prompt after the prefix-cache lookup.
 * When blocks run out, the newest running sequence is preempted: its blocks are released
 * (full ones stay cached), it goes back to the head of the queue and is recomputed later.
 * A prompt that can never fit (more blocks than the whole cache, or longer than the model's
 * context) is refused with a clear error; nothing else is ever killed for lack of memory.
 *
 * The model side (tokenizer, KV cache, forward pass, sampler) is reached through
 * sched_backend (sched_backend.h), so the scheduler's policy is testable on its own. */
#ifndef LLAMAD_SCHEDULER_H
#define LLAMAD_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sched_backend;

typedef struct sched sched;

typedef struct sched_config {
    int max_seqs;          /* running sequences at once */
    int max_batch_tokens;  /* tokens per step (decode + prefill chunks) */
    int max_queue;         /* waiting jobs; beyond: SCHED_ERR_OVERLOADED at once */
    int max_prompt_tokens; /* after tokenization */
} sched_config;

enum sched_job_kind {
    SCHED_JOB_GENERATE = 0,
    SCHED_JOB_TOKENIZE,
    SCHED_JOB_DETOKENIZE,
};

/* Stable error codes carried by events; the server maps them onto the wire's codes. */
enum sched_err {
    SCHED_ERR_NONE = 0,
    SCHED_ERR_INVALID,      /* bad input found on the engine side (prompt too long, bad token id) */
    SCHED_ERR_OVERLOADED,   /* queue full */
    SCHED_ERR_PROMPT_TOO_LONG, /* over the prompt limit, or it can never fit the context / KV cache */
    SCHED_ERR_INTERNAL,     /* the engine failed */
    SCHED_ERR_SHUTTING_DOWN,
    SCHED_ERR_UNAVAILABLE,  /* no engine for this model */
};

enum sched_finish {
    SCHED_FINISH_LENGTH = 0, /* max_tokens reached */
    SCHED_FINISH_STOP,       /* end-of-generation token or a stop string */
    SCHED_FINISH_CANCELLED,
    SCHED_FINISH_TIMEOUT,
    SCHED_FINISH_CONTEXT,    /* the model's context is full */
    SCHED_FINISH_ERROR,      /* the engine failed after the completion had started */
};

typedef struct sched_sampling {
    float temperature; /* 0: greedy */
    int top_k;         /* 0: off */
    float top_p;       /* 1: off */
    float min_p;       /* 0: off */
    float repeat_penalty; /* 1: off */
    float presence_penalty;  /* 0: off */
    float frequency_penalty; /* 0: off */
    int repeat_last_n;       /* -1: whole context, 0: no penalties */
    int logprobs;            /* top alternatives to report (0: none) */
    uint64_t seed;           /* completion i samples with seed + i */
} sched_sampling;

#define SCHED_MAX_STOPS 16
#define SCHED_MAX_STOP_LEN 257 /* 256 bytes + NUL */

typedef struct sched_chat_msg {
    char *role;
    char *content;
} sched_chat_msg;

/* One job. The server fills it (sched_job_new / fields), then hands it over with
 * sched_submit; from then on the scheduler owns it and frees it after its last event. */
typedef struct sched_job {
    uint64_t id;      /* unique in this daemon; events carry it */
    uint64_t conn_id; /* flow-control key (sched_pause) */
    enum sched_job_kind kind;
    int model;        /* index into the backend's models */

    /* GENERATE / TOKENIZE: text (prompt) or chat messages (GENERATE only) */
    char *text;
    size_t text_len;
    sched_chat_msg *chat;
    int n_chat;
    bool add_special;    /* TOKENIZE: add BOS etc. as the model asks (GENERATE text: always) */
    bool parse_special;  /* TOKENIZE: special-token text becomes those tokens (GENERATE: always) */
    bool add_generation_prompt; /* GENERATE chat */
    int n_completions;   /* GENERATE: 1..16 independent completions */
    /* DETOKENIZE: token ids; GENERATE: prompt given as token ids when n_tokens_in > 0 */
    int32_t *tokens_in;
    int n_tokens_in;

    int max_tokens;
    sched_sampling sampling;
    char stop[SCHED_MAX_STOPS][SCHED_MAX_STOP_LEN];
    int n_stop;
    uint64_t timeout_ns; /* 0: none */

    /* set by the scheduler */
    uint64_t t_submit_ns;
    int refs; /* sequences still using the job */
} sched_job;

enum sched_event_type {
    SCHED_EV_TOKENS = 0, /* text + token ids of one or more new tokens */
    SCHED_EV_DONE,       /* the last event of a GENERATE job */
    SCHED_EV_ERROR,      /* the last event of a job that failed */
    SCHED_EV_TOKENIZED,  /* TOKENIZE result (tokens) */
    SCHED_EV_DETOKENIZED,/* DETOKENIZE result (text) */
};

#define SCHED_EV_TEXT_CAP 512
#define SCHED_EV_TOKENS_CAP 32
#define SCHED_MAX_LOGPROBS 20

/* Log-probabilities of one sampled token (GenerateRequest.logprobs > 0). */
typedef struct sched_token_lp {
    float logprob;                      /* of the chosen token */
    int n_top;
    int32_t top_id[SCHED_MAX_LOGPROBS]; /* most likely first */
    float top_lp[SCHED_MAX_LOGPROBS];
    uint32_t top_text_off[SCHED_MAX_LOGPROBS]; /* text of top i: lp_text[off .. off+len) */
    uint32_t top_text_len[SCHED_MAX_LOGPROBS];
} sched_token_lp;

typedef struct sched_event {
    struct sched_event *next;
    enum sched_event_type type;
    uint64_t job_id;
    uint64_t conn_id;
    int index; /* completion 0..n-1 */

    /* TOKENS (inline, no allocation); TOKENIZED / DETOKENIZED use the heap fields */
    char text[SCHED_EV_TEXT_CAP];
    size_t text_len;
    int32_t tokens[SCHED_EV_TOKENS_CAP];
    int n_tokens;
    /* TOKENS with logprobs: one entry per token (n_lp == n_tokens), else n_lp == 0. The
     * buffers belong to the pooled event and are reused. */
    sched_token_lp *lp;
    int n_lp;
    char *lp_text;
    size_t lp_text_len, lp_text_cap;
    char *big_text;     /* DETOKENIZED */
    size_t big_text_len;
    int32_t *big_tokens; /* TOKENIZED: ids; big_text holds their pieces back to back, */
    size_t *big_offsets; /* piece i is big_text[big_offsets[i] .. big_offsets[i+1]) */
    int n_big_tokens;

    /* DONE */
    enum sched_finish finish;
    int prompt_tokens;
    int cached_tokens;  /* prompt tokens found in the prefix cache */
    int completion_tokens;
    int preemptions;
    uint64_t seed;
    uint64_t queue_ns;  /* submit -> first admitted */
    uint64_t ttft_ns;   /* submit -> first token */
    uint64_t total_ns;  /* submit -> done */

    /* ERROR */
    enum sched_err err;
    char message[256];
} sched_event;

typedef struct sched_stats {
    int queue_depth;
    int running;
    int paused;
    int64_t kv_blocks_total, kv_blocks_used, kv_blocks_cached;
    int kv_block_size;
    int64_t prefix_lookup_tokens, prefix_hit_tokens;
    double tokens_per_s_1min; /* generated tokens per second over the last minute */
    uint64_t tokens_generated;
    uint64_t tokens_prefilled;
    uint64_t jobs_done;
    uint64_t preemptions;
    uint64_t steps;
} sched_stats;

/* wake is called from the engine thread whenever events are queued (the server passes
 * a function that calls uv_async_send). The backend stays owned by the caller and must
 * outlive the scheduler. */
int sched_create(const sched_config *cfg, struct sched_backend *backend, void (*wake)(void *), void *wake_arg,
                 sched **ret_sched);
/* Stops the engine thread (jobs still queued or running end with SCHED_ERR_SHUTTING_DOWN
 * events, which are dropped with the scheduler) and frees everything. */
void sched_destroy(sched *s);

sched_job *sched_job_new(void);
void sched_job_free(sched_job *job);

/* Hands job to the scheduler (always takes ownership). Returns 0, or -EAGAIN when the queue
 * is full (the job is freed; the caller answers overloaded at once), or -ESHUTDOWN. */
int sched_submit(sched *s, sched_job *job);
/* Stops a job within one step, wherever it is; its blocks are freed. It ends with a DONE
 * event (finish CANCELLED) unless it already ended. Unknown ids are ignored. */
void sched_cancel(sched *s, uint64_t job_id);
/* Cancels every job of a connection (the client went away); no events are sent for them. */
void sched_drop_conn(sched *s, uint64_t conn_id);
/* Flow control: a paused connection's sequences are not stepped (they keep their blocks,
 * and may be preempted like any other); resumed when the client reads again. */
void sched_pause_conn(sched *s, uint64_t conn_id, bool paused);

/* Takes every queued event (a list in order, NULL when none). Release each one. */
sched_event *sched_poll_events(sched *s);
void sched_event_release(sched *s, sched_event *ev);

void sched_get_stats(sched *s, sched_stats *ret_stats);
/* Changes the limits that can change at run time (max_queue, max_prompt_tokens). */
void sched_set_limits(sched *s, int max_queue, int max_prompt_tokens);
/* Jobs queued or running (for the shutdown drain). */
int sched_active_jobs(sched *s);

const char *sched_err_name(enum sched_err e);
const char *sched_finish_name(enum sched_finish f);

#endif
