#include "scheduler.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sched_backend.h"

enum cmd_type { CMD_SUBMIT, CMD_CANCEL, CMD_DROP_CONN, CMD_PAUSE, CMD_RESUME };

typedef struct cmd {
    struct cmd *next;
    enum cmd_type type;
    uint64_t id;
    sched_job *job;
} cmd;

enum seq_state { SEQ_WAITING, SEQ_RUNNING };

#define HOLD_CAP 1024
#define PIECE_CAP 256

typedef struct seq {
    struct seq *prev, *next; /* in the waiting list or the running list */
    sched_job *job;
    enum seq_state state;
    int slot;          /* -1 when holding no KV */
    bool tokenized;
    int32_t *tokens;   /* prompt, then generated */
    int n_tokens, cap_tokens;
    int n_prompt;
    int n_computed;    /* tokens whose K/V are in the cache */
    int n_generated;
    int n_ctx;
    int cached_tokens; /* from the prefix cache at first admission */
    int preemptions;
    int index;         /* completion index */
    uint64_t seed;
    bool ever_admitted;
    uint64_t in_batch; /* step number this sequence is in the batch of */
    bool cancelled;    /* explicit cancel: DONE(cancelled) */
    bool silent;       /* connection gone: no events */
    uint64_t admit_seq; /* admission order: larger is newer */
    uint64_t t_admit_ns, t_first_ns;
    int32_t prev_tok;
    char hold[HOLD_CAP];
    size_t hold_len;
    sched_event *pending_ev; /* TOKENS event being filled this step */
    void *smp;               /* sampler state */
} seq;

typedef struct seq_list {
    seq *head, *tail;
    int n;
} seq_list;

struct sched {
    sched_config cfg;
    sched_backend *be;
    void (*wake)(void *);
    void *wake_arg;
    pthread_t thread;
    bool thread_started;

    /* commands: loop -> engine */
    pthread_mutex_t cmd_lock;
    pthread_cond_t cmd_cond;
    cmd *cmd_head, *cmd_tail;
    bool stop;
    int queued;        /* submitted and not yet admitted (the queue depth max_queue limits) */
    int active;        /* submitted and not yet ended */
    int max_queue;
    int max_prompt_tokens;

    /* events: engine -> loop */
    pthread_mutex_t ev_lock;
    sched_event *ev_head, *ev_tail;
    sched_event *ev_free;
    /* engine thread only: this iteration's events, handed to the loop (ev_publish) after the
     * stats are updated, so that a client that has its GenerateDone never gets a Status
     * that still counts that request */
    sched_event *st_head, *st_tail;

    /* engine thread only */
    seq_list waiting, running;
    seq **slots; /* slot -> seq */
    uint64_t admit_counter;
    int32_t *scratch; /* tokenizer output */
    int scratch_cap;
    sched_batch_entry *entries;
    seq **entry_seq;
    int64_t prefix_lookup, prefix_hit;
    uint64_t paused_conns[256];
    int last_error_rc;
    sched_token_lp lp_scratch;
    uint64_t step_no;
    char last_error[300];
    int n_paused_conns;

    /* stats, under stats_lock */
    pthread_mutex_t stats_lock;
    sched_stats stats;
    uint64_t tps_bucket_sec[60];
    uint64_t tps_bucket_tokens[60];
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

const char *sched_err_name(enum sched_err e)
{
    switch (e) {
    case SCHED_ERR_NONE: return "none";
    case SCHED_ERR_INVALID: return "invalid";
    case SCHED_ERR_OVERLOADED: return "overloaded";
    case SCHED_ERR_PROMPT_TOO_LONG: return "prompt too long";
    case SCHED_ERR_INTERNAL: return "internal";
    case SCHED_ERR_SHUTTING_DOWN: return "shutting down";
    case SCHED_ERR_UNAVAILABLE: return "unavailable";
    }
    return "?";
}

const char *sched_finish_name(enum sched_finish f)
{
    switch (f) {
    case SCHED_FINISH_LENGTH: return "length";
    case SCHED_FINISH_STOP: return "stop";
    case SCHED_FINISH_CANCELLED: return "cancelled";
    case SCHED_FINISH_TIMEOUT: return "timeout";
    case SCHED_FINISH_CONTEXT: return "context";
    case SCHED_FINISH_ERROR: return "error";
    }
    return "?";
}

/* ---- jobs ---- */

sched_job *sched_job_new(void)
{
    sched_job *j = calloc(1, sizeof *j);
    if (j == NULL) return NULL;
    j->sampling.top_p = 1.0f;
    j->sampling.repeat_penalty = 1.0f;
    j->add_special = true;
    j->add_generation_prompt = true;
    j->n_completions = 1;
    return j;
}

void sched_job_free(sched_job *job)
{
    if (job == NULL) return;
    free(job->text);
    for (int i = 0; i < job->n_chat; i++) {
        free(job->chat[i].role);
        free(job->chat[i].content);
    }
    free(job->chat);
    free(job->tokens_in);
    free(job);
}

/* ---- lists ---- */

static void list_push_tail(seq_list *l, seq *s)
{
    s->next = NULL;
    s->prev = l->tail;
    if (l->tail) l->tail->next = s;
    else l->head = s;
    l->tail = s;
    l->n++;
}

static void list_push_head(seq_list *l, seq *s)
{
    s->prev = NULL;
    s->next = l->head;
    if (l->head) l->head->prev = s;
    else l->tail = s;
    l->head = s;
    l->n++;
}

static void list_remove(seq_list *l, seq *s)
{
    if (s->prev) s->prev->next = s->next;
    else l->head = s->next;
    if (s->next) s->next->prev = s->prev;
    else l->tail = s->prev;
    s->prev = s->next = NULL;
    l->n--;
}

/* ---- events ---- */

static sched_event *ev_get(sched *s)
{
    pthread_mutex_lock(&s->ev_lock);
    sched_event *ev = s->ev_free;
    if (ev) s->ev_free = ev->next;
    pthread_mutex_unlock(&s->ev_lock);
    if (ev == NULL) {
        ev = malloc(sizeof *ev);
        if (ev == NULL) return NULL;
        ev->lp = NULL;
        ev->lp_text = NULL;
        ev->lp_text_cap = 0;
    }
    /* clear the header fields, not the inline buffers */
    ev->next = NULL;
    ev->index = 0;
    ev->seed = 0;
    ev->big_offsets = NULL;
    ev->n_lp = 0;
    ev->lp_text_len = 0;
    ev->text_len = 0;
    ev->n_tokens = 0;
    ev->big_text = NULL;
    ev->big_text_len = 0;
    ev->big_tokens = NULL;
    ev->n_big_tokens = 0;
    ev->finish = SCHED_FINISH_LENGTH;
    ev->prompt_tokens = ev->cached_tokens = ev->completion_tokens = ev->preemptions = 0;
    ev->queue_ns = ev->ttft_ns = ev->total_ns = 0;
    ev->err = SCHED_ERR_NONE;
    ev->message[0] = '\0';
    return ev;
}

/* (engine thread) stages ev; ev_publish hands the staged events to the loop */
static void ev_push(sched *s, sched_event *ev)
{
    ev->next = NULL;
    if (s->st_tail) s->st_tail->next = ev;
    else s->st_head = ev;
    s->st_tail = ev;
}

/* the staged events onto the queue the loop polls; true if that queue is not empty */
static bool ev_publish(sched *s)
{
    pthread_mutex_lock(&s->ev_lock);
    if (s->st_head) {
        if (s->ev_tail) s->ev_tail->next = s->st_head;
        else s->ev_head = s->st_head;
        s->ev_tail = s->st_tail;
        s->st_head = s->st_tail = NULL;
    }
    const bool have = s->ev_head != NULL;
    pthread_mutex_unlock(&s->ev_lock);
    return have;
}

sched_event *sched_poll_events(sched *s)
{
    pthread_mutex_lock(&s->ev_lock);
    sched_event *ev = s->ev_head;
    s->ev_head = s->ev_tail = NULL;
    pthread_mutex_unlock(&s->ev_lock);
    return ev;
}

void sched_event_release(sched *s, sched_event *ev)
{
    free(ev->big_text);
    free(ev->big_tokens);
    free(ev->big_offsets);
    ev->big_text = NULL;
    ev->big_tokens = NULL;
    ev->big_offsets = NULL;
    pthread_mutex_lock(&s->ev_lock);
    ev->next = s->ev_free;
    s->ev_free = ev;
    pthread_mutex_unlock(&s->ev_lock);
}

static void emit_error(sched *s, const sched_job *job, enum sched_err err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void emit_error(sched *s, const sched_job *job, enum sched_err err, const char *fmt, ...)
{
    sched_event *ev = ev_get(s);
    if (ev == NULL) return;
    ev->type = SCHED_EV_ERROR;
    ev->job_id = job->id;
    ev->conn_id = job->conn_id;
    ev->err = err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ev->message, sizeof ev->message, fmt, ap);
    va_end(ap);
    ev_push(s, ev);
}

/* ---- commands ---- */

static int push_cmd(sched *s, enum cmd_type type, uint64_t id, sched_job *job)
{
    cmd *c = malloc(sizeof *c);
    if (c == NULL) return -ENOMEM;
    c->next = NULL;
    c->type = type;
    c->id = id;
    c->job = job;
    pthread_mutex_lock(&s->cmd_lock);
    if (s->cmd_tail) s->cmd_tail->next = c;
    else s->cmd_head = c;
    s->cmd_tail = c;
    pthread_cond_signal(&s->cmd_cond);
    pthread_mutex_unlock(&s->cmd_lock);
    return 0;
}

int sched_submit(sched *s, sched_job *job)
{
    pthread_mutex_lock(&s->cmd_lock);
    if (s->stop) {
        pthread_mutex_unlock(&s->cmd_lock);
        sched_job_free(job);
        return -ESHUTDOWN;
    }
    bool gen = job->kind == SCHED_JOB_GENERATE;
    if (gen && (job->n_completions < 1 || job->n_completions > 64)) {
        pthread_mutex_unlock(&s->cmd_lock);
        sched_job_free(job);
        return -EINVAL;
    }
    int n = gen ? job->n_completions : 1;
    if (gen && s->queued >= s->max_queue) {
        pthread_mutex_unlock(&s->cmd_lock);
        sched_job_free(job);
        return -EAGAIN;
    }
    if (gen) s->queued += n;
    s->active += n;
    pthread_mutex_unlock(&s->cmd_lock);
    job->t_submit_ns = now_ns();
    if (push_cmd(s, CMD_SUBMIT, job->id, job) != 0) {
        pthread_mutex_lock(&s->cmd_lock);
        if (gen) s->queued -= n;
        s->active -= n;
        pthread_mutex_unlock(&s->cmd_lock);
        sched_job_free(job);
        return -ENOMEM;
    }
    return 0;
}

void sched_cancel(sched *s, uint64_t job_id) { push_cmd(s, CMD_CANCEL, job_id, NULL); }
void sched_drop_conn(sched *s, uint64_t conn_id) { push_cmd(s, CMD_DROP_CONN, conn_id, NULL); }
void sched_pause_conn(sched *s, uint64_t conn_id, bool paused)
{
    push_cmd(s, paused ? CMD_PAUSE : CMD_RESUME, conn_id, NULL);
}

void sched_set_limits(sched *s, int max_queue, int max_prompt_tokens)
{
    pthread_mutex_lock(&s->cmd_lock);
    s->max_queue = max_queue;
    s->max_prompt_tokens = max_prompt_tokens;
    pthread_mutex_unlock(&s->cmd_lock);
}

int sched_active_jobs(sched *s)
{
    pthread_mutex_lock(&s->cmd_lock);
    int n = s->active;
    pthread_mutex_unlock(&s->cmd_lock);
    return n;
}

static void job_ended(sched *s, bool was_queued)
{
    pthread_mutex_lock(&s->cmd_lock);
    if (was_queued) s->queued--;
    s->active--;
    pthread_mutex_unlock(&s->cmd_lock);
}

static bool conn_paused(sched *s, uint64_t conn)
{
    for (int i = 0; i < s->n_paused_conns; i++)
        if (s->paused_conns[i] == conn) return true;
    return false;
}

/* ---- sequences ---- */

static void seq_free(sched *s, seq *q)
{
    if (q == NULL) return;
    if (q->smp) s->be->ops->sampler_free(s->be->impl, q->smp);
    if (--q->job->refs <= 0) sched_job_free(q->job);
    free(q->tokens);
    free(q);
}

static void seq_release_kv(sched *s, seq *q)
{
    if (q->slot >= 0) {
        s->be->ops->kv_release(s->be->impl, q->slot);
        s->slots[q->slot] = NULL;
        q->slot = -1;
    }
    q->n_computed = 0;
}

static void flush_pending(sched *s, seq *q)
{
    if (q->pending_ev != NULL) {
        if (q->silent) sched_event_release(s, q->pending_ev);
        else ev_push(s, q->pending_ev);
        q->pending_ev = NULL;
    }
}

/* Ends a sequence that is in neither list. */
static void seq_finish(sched *s, seq *q, enum sched_finish finish)
{
    uint64_t t = now_ns();
    flush_pending(s, q);
    seq_release_kv(s, q);
    if (!q->silent) {
        sched_event *ev = ev_get(s);
        if (ev != NULL) {
            ev->type = SCHED_EV_DONE;
            ev->job_id = q->job->id;
            ev->conn_id = q->job->conn_id;
            ev->index = q->index;
            ev->seed = q->seed;
            ev->finish = finish;
            ev->prompt_tokens = q->n_prompt;
            ev->cached_tokens = q->cached_tokens;
            ev->completion_tokens = q->n_generated;
            ev->preemptions = q->preemptions;
            uint64_t t0 = q->job->t_submit_ns;
            ev->queue_ns = q->ever_admitted ? q->t_admit_ns - t0 : t - t0;
            ev->ttft_ns = q->t_first_ns ? q->t_first_ns - t0 : 0;
            ev->total_ns = t - t0;
            ev_push(s, ev);
        }
    }
    pthread_mutex_lock(&s->stats_lock);
    s->stats.jobs_done++;
    pthread_mutex_unlock(&s->stats_lock);
    job_ended(s, !q->ever_admitted);
    seq_free(s, q);
}

static void seq_fail(sched *s, seq *q, enum sched_err err, const char *msg)
{
    flush_pending(s, q);
    seq_release_kv(s, q);
    if (!q->silent) emit_error(s, q->job, err, "%s", msg);
    job_ended(s, !q->ever_admitted);
    seq_free(s, q);
}

static seq *find_seq(sched *s, uint64_t id, seq_list **ret_list)
{
    for (seq *q = s->running.head; q; q = q->next)
        if (q->job->id == id) {
            *ret_list = &s->running;
            return q;
        }
    for (seq *q = s->waiting.head; q; q = q->next)
        if (q->job->id == id) {
            *ret_list = &s->waiting;
            return q;
        }
    return NULL;
}

/* ---- tokenize / detokenize jobs (answered at once) ---- */

static void run_tokenize(sched *s, sched_job *job)
{
    const sched_backend_ops *ops = s->be->ops;
    int cap = s->scratch_cap;
    int n = 0;
    int rc = ops->tokenize(s->be->impl, job->model, job->text ? job->text : "", job->text_len, job->add_special,
                           job->parse_special, s->scratch, cap, &n);
    if (rc == -ENOSPC) {
        emit_error(s, job, SCHED_ERR_INVALID, "text is longer than %d tokens", cap);
    } else if (rc != 0) {
        emit_error(s, job, SCHED_ERR_INTERNAL, "tokenizer failed (%s)", strerror(-rc));
    } else {
        sched_event *ev = ev_get(s);
        int32_t *t = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
        size_t *offs = malloc(sizeof(size_t) * (size_t)(n + 1));
        size_t cap_text = 64, len = 0;
        char *text = malloc(cap_text);
        bool ok = ev && t && offs && text;
        for (int i = 0; ok && i < n; i++) {
            char piece[PIECE_CAP];
            size_t pl = 0;
            if (ops->token_text(s->be->impl, job->model, s->scratch[i], piece, sizeof piece, &pl) != 0) pl = 0;
            if (len + pl > cap_text) {
                size_t nc = (len + pl) * 2;
                char *nt = realloc(text, nc);
                if (nt == NULL) {
                    ok = false;
                    break;
                }
                text = nt;
                cap_text = nc;
            }
            offs[i] = len;
            memcpy(text + len, piece, pl);
            len += pl;
        }
        if (!ok) {
            free(t);
            free(offs);
            free(text);
            if (ev) sched_event_release(s, ev);
            emit_error(s, job, SCHED_ERR_INTERNAL, "out of memory");
        } else {
            offs[n] = len;
            memcpy(t, s->scratch, sizeof(int32_t) * (size_t)n);
            ev->type = SCHED_EV_TOKENIZED;
            ev->job_id = job->id;
            ev->conn_id = job->conn_id;
            ev->big_tokens = t;
            ev->big_offsets = offs;
            ev->big_text = text;
            ev->big_text_len = len;
            ev->n_big_tokens = n;
            ev_push(s, ev);
        }
    }
    job_ended(s, false);
    sched_job_free(job);
}

static void run_detokenize(sched *s, sched_job *job)
{
    const sched_backend_ops *ops = s->be->ops;
    sched_model_info mi;
    ops->model_info(s->be->impl, job->model, &mi);
    size_t cap = 256, len = 0;
    char *out = malloc(cap);
    int32_t prev = -1;
    for (int i = 0; out != NULL && i < job->n_tokens_in; i++) {
        int32_t t = job->tokens_in[i];
        if (t < 0 || t >= mi.n_vocab) {
            emit_error(s, job, SCHED_ERR_INVALID, "token id %d at index %d is out of range (vocabulary of %d)",
                       t, i, mi.n_vocab);
            free(out);
            job_ended(s, false);
            sched_job_free(job);
            return;
        }
        char piece[PIECE_CAP];
        size_t pl = 0;
        if (ops->token_piece(s->be->impl, job->model, prev, t, piece, sizeof piece, &pl) != 0) pl = 0;
        if (len + pl + 1 > cap) {
            size_t ncap = (len + pl + 1) * 2;
            char *n2 = realloc(out, ncap);
            if (n2 == NULL) {
                free(out);
                out = NULL;
                break;
            }
            out = n2;
            cap = ncap;
        }
        memcpy(out + len, piece, pl);
        len += pl;
        prev = t;
    }
    if (out == NULL) {
        emit_error(s, job, SCHED_ERR_INTERNAL, "out of memory");
    } else {
        out[len] = '\0';
        sched_event *ev = ev_get(s);
        if (ev == NULL) {
            free(out);
        } else {
            ev->type = SCHED_EV_DETOKENIZED;
            ev->job_id = job->id;
            ev->conn_id = job->conn_id;
            ev->big_text = out;
            ev->big_text_len = len;
            ev_push(s, ev);
        }
    }
    job_ended(s, false);
    sched_job_free(job);
}

/* ---- command processing ---- */

static void cancel_seq(sched *s, seq *q, seq_list *l, bool silent)
{
    list_remove(l, q);
    if (silent) q->silent = true;
    seq_finish(s, q, SCHED_FINISH_CANCELLED);
}

static void handle_cmd(sched *s, cmd *c)
{
    switch (c->type) {
    case CMD_SUBMIT: {
        sched_job *job = c->job;
        if (job->kind == SCHED_JOB_TOKENIZE) {
            run_tokenize(s, job);
            break;
        }
        if (job->kind == SCHED_JOB_DETOKENIZE) {
            run_detokenize(s, job);
            break;
        }
        int n = job->n_completions;
        seq *qs[64];
        for (int i = 0; i < n; i++) {
            qs[i] = calloc(1, sizeof *qs[i]);
            if (qs[i] == NULL) {
                for (int k = 0; k < i; k++) free(qs[k]);
                emit_error(s, job, SCHED_ERR_INTERNAL, "out of memory");
                for (int k = 0; k < n; k++) job_ended(s, true);
                sched_job_free(job);
                return;
            }
        }
        job->refs = n;
        for (int i = 0; i < n; i++) {
            seq *q = qs[i];
            q->job = job;
            q->index = i;
            q->seed = job->sampling.seed + (uint64_t)i;
            q->slot = -1;
            q->prev_tok = -1;
            q->state = SEQ_WAITING;
            list_push_tail(&s->waiting, q);
        }
        break;
    }
    case CMD_CANCEL: {
        seq_list *l;
        seq *q = find_seq(s, c->id, &l);
        if (q) cancel_seq(s, q, l, false);
        break;
    }
    case CMD_DROP_CONN: {
        for (int pass = 0; pass < 2; pass++) {
            seq_list *l = pass ? &s->waiting : &s->running;
            seq *q = l->head;
            while (q) {
                seq *nx = q->next;
                if (q->job->conn_id == c->id) cancel_seq(s, q, l, true);
                q = nx;
            }
        }
        for (int i = 0; i < s->n_paused_conns; i++)
            if (s->paused_conns[i] == c->id) s->paused_conns[i] = s->paused_conns[--s->n_paused_conns];
        break;
    }
    case CMD_PAUSE:
        if (!conn_paused(s, c->id) && s->n_paused_conns < (int)(sizeof s->paused_conns / sizeof s->paused_conns[0]))
            s->paused_conns[s->n_paused_conns++] = c->id;
        break;
    case CMD_RESUME:
        for (int i = 0; i < s->n_paused_conns; i++)
            if (s->paused_conns[i] == c->id) s->paused_conns[i] = s->paused_conns[--s->n_paused_conns];
        break;
    }
}

/* ---- detokenizing into events, stop strings ---- */

static bool utf8_incomplete_tail(const char *b, size_t n, size_t *ret_keep)
{
    /* how many trailing bytes form an incomplete UTF-8 character */
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        unsigned char c = (unsigned char)b[n - k];
        if ((c & 0xC0) == 0x80) continue; /* continuation */
        size_t need = (c >= 0xF0) ? 4 : (c >= 0xE0) ? 3 : (c >= 0xC0) ? 2 : 1;
        if (need > k) {
            *ret_keep = k;
            return true;
        }
        return false;
    }
    return false;
}

static void emit_raw(sched *s, seq *q, const char *text, size_t len)
{
    while (len > 0) {
        if (q->pending_ev == NULL) {
            q->pending_ev = ev_get(s);
            if (q->pending_ev == NULL) return;
            q->pending_ev->type = SCHED_EV_TOKENS;
            q->pending_ev->job_id = q->job->id;
            q->pending_ev->conn_id = q->job->conn_id;
            q->pending_ev->index = q->index;
        }
        sched_event *ev = q->pending_ev;
        size_t room = SCHED_EV_TEXT_CAP - ev->text_len;
        if (room == 0) {
            flush_pending(s, q);
            continue;
        }
        size_t n = len < room ? len : room;
        if (n < len) /* split between characters only */
            while (n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80) n--;
        if (n == 0) {
            flush_pending(s, q);
            continue;
        }
        memcpy(ev->text + ev->text_len, text, n);
        ev->text_len += n;
        text += n;
        len -= n;
    }
}

/* length of the valid UTF-8 character at b (1..4), or 0 when it is not one */
static size_t utf8_char_len(const unsigned char *b, size_t n)
{
    unsigned char c = b[0];
    size_t need;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) need = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) need = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) need = 4, cp = c & 0x07;
    else return 0;
    if (n < need) return 0;
    for (size_t i = 1; i < need; i++) {
        if ((b[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (b[i] & 0x3F);
    }
    if ((need == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (need == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return need;
}

/* Length of the maximal subpart of an ill-formed sequence at b (>= 1): a valid lead byte
 * followed by the continuation bytes that could still complete it is replaced by one U+FFFD
 * (the Unicode / WHATWG convention). */
static size_t utf8_invalid_len(const unsigned char *b, size_t n)
{
    unsigned char c = b[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c >= 0xE0 && c <= 0xEF) need = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) need = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else return 1;
    size_t k = 1;
    while (k < need && k < n) {
        unsigned char d = b[k];
        if (k == 1 ? (d < lo || d > hi) : (d & 0xC0) != 0x80) break;
        k++;
    }
    return k;
}

/* Emits text as valid UTF-8: each maximal ill-formed subpart becomes U+FFFD. */
static void emit_text(sched *s, seq *q, const char *text, size_t len)
{
    const unsigned char *p = (const unsigned char *)text;
    size_t start = 0, i = 0;
    while (i < len) {
        size_t cl = utf8_char_len(p + i, len - i);
        if (cl > 0) {
            i += cl;
            continue;
        }
        emit_raw(s, q, text + start, i - start);
        emit_raw(s, q, "\xEF\xBF\xBD", 3);
        i += utf8_invalid_len(p + i, len - i);
        start = i;
    }
    emit_raw(s, q, text + start, len - start);
}

static void note_token(sched *s, seq *q, int32_t tok)
{
    if (q->pending_ev == NULL) {
        q->pending_ev = ev_get(s);
        if (q->pending_ev == NULL) return;
        q->pending_ev->type = SCHED_EV_TOKENS;
        q->pending_ev->job_id = q->job->id;
        q->pending_ev->conn_id = q->job->conn_id;
        q->pending_ev->index = q->index;
    }
    if (q->pending_ev->n_tokens == SCHED_EV_TOKENS_CAP) {
        flush_pending(s, q);
        note_token(s, q, tok);
        return;
    }
    q->pending_ev->tokens[q->pending_ev->n_tokens++] = tok;
}

/* Adds the log-probabilities of the token note_token just added, with the text of the top
 * alternatives. */
static void note_logprobs(sched *s, seq *q, const sched_token_lp *src)
{
    sched_event *ev = q->pending_ev;
    if (ev == NULL || ev->n_tokens == 0) return;
    if (ev->lp == NULL) {
        ev->lp = malloc(sizeof *ev->lp * SCHED_EV_TOKENS_CAP);
        if (ev->lp == NULL) return;
    }
    /* entries line up with tokens: fill any gap left by an allocation failure */
    while (ev->n_lp < ev->n_tokens - 1) {
        memset(&ev->lp[ev->n_lp], 0, sizeof ev->lp[0]);
        ev->n_lp++;
    }
    sched_token_lp *d = &ev->lp[ev->n_lp];
    *d = *src;
    for (int k = 0; k < d->n_top; k++) {
        char piece[PIECE_CAP];
        size_t pl = 0;
        if (s->be->ops->token_text(s->be->impl, q->job->model, d->top_id[k], piece, sizeof piece, &pl) != 0) pl = 0;
        if (ev->lp_text_len + pl > ev->lp_text_cap) {
            size_t cap = ev->lp_text_cap ? ev->lp_text_cap * 2 : 1024;
            while (cap < ev->lp_text_len + pl) cap *= 2;
            char *n = realloc(ev->lp_text, cap);
            if (n == NULL) {
                pl = 0;
            } else {
                ev->lp_text = n;
                ev->lp_text_cap = cap;
            }
        }
        d->top_text_off[k] = (uint32_t)ev->lp_text_len;
        d->top_text_len[k] = (uint32_t)pl;
        if (pl) memcpy(ev->lp_text + ev->lp_text_len, piece, pl);
        ev->lp_text_len += pl;
    }
    ev->n_lp++;
}

/* Adds a token's text; returns true when a stop string ended the sequence. */
static bool add_text(sched *s, seq *q, const char *piece, size_t pl, bool final)
{
    const sched_job *j = q->job;
    if (q->hold_len + pl > HOLD_CAP) {
        /* cannot happen with the caps on stop strings and pieces; emit to be safe */
        emit_text(s, q, q->hold, q->hold_len);
        q->hold_len = 0;
        if (pl > HOLD_CAP) pl = HOLD_CAP;
    }
    memcpy(q->hold + q->hold_len, piece, pl);
    q->hold_len += pl;

    /* a stop string anywhere in the held text ends the output right before it */
    size_t best = SIZE_MAX;
    for (int i = 0; i < j->n_stop; i++) {
        const char *st = j->stop[i];
        size_t sl = strlen(st);
        if (sl == 0 || sl > q->hold_len) continue;
        const char *hit = memmem(q->hold, q->hold_len, st, sl);
        if (hit && (size_t)(hit - q->hold) < best) best = (size_t)(hit - q->hold);
    }
    if (best != SIZE_MAX) {
        emit_text(s, q, q->hold, best);
        q->hold_len = 0;
        return true;
    }
    if (final) {
        emit_text(s, q, q->hold, q->hold_len);
        q->hold_len = 0;
        return false;
    }
    /* hold back the longest tail that may still become a stop string */
    size_t keep = 0;
    for (int i = 0; i < j->n_stop; i++) {
        size_t sl = strlen(j->stop[i]);
        size_t maxk = sl - 1 < q->hold_len ? sl - 1 : q->hold_len;
        for (size_t k = maxk; k > keep; k--) {
            if (memcmp(q->hold + q->hold_len - k, j->stop[i], k) == 0) {
                keep = k;
                break;
            }
        }
    }
    size_t utf = 0;
    if (utf8_incomplete_tail(q->hold, q->hold_len - keep, &utf)) keep += utf;
    size_t out = q->hold_len - keep;
    if (out > 0) {
        emit_text(s, q, q->hold, out);
        memmove(q->hold, q->hold + out, keep);
        q->hold_len = keep;
    }
    return false;
}

/* ---- admission, preemption ---- */

static int free_slot(sched *s)
{
    for (int i = 0; i < s->cfg.max_seqs; i++)
        if (s->slots[i] == NULL) return i;
    return -1;
}

static void list_insert_after(seq_list *l, seq *at, seq *s)
{
    s->prev = at;
    s->next = at->next;
    if (at->next) at->next->prev = s;
    else l->tail = s;
    at->next = s;
    l->n++;
}

static void preempt(sched *s, seq *q);

/* Preempts a paused sequence to make room for the head of the queue; it goes back behind
 * that head (not in front of it: its client is not reading anyway). */
static void preempt_behind(sched *s, seq *victim, seq *head)
{
    preempt(s, victim);
    list_remove(&s->waiting, victim);
    list_insert_after(&s->waiting, head, victim);
}

static void preempt(sched *s, seq *q)
{
    /* full blocks stay in the prefix cache: recomputing later is mostly lookups */
    flush_pending(s, q);
    list_remove(&s->running, q);
    seq_release_kv(s, q);
    q->state = SEQ_WAITING;
    q->preemptions++;
    list_push_head(&s->waiting, q);
    pthread_mutex_lock(&s->stats_lock);
    s->stats.preemptions++;
    pthread_mutex_unlock(&s->stats_lock);
}

/* Tokenizes a waiting sequence's prompt (first time only). Returns false when it failed
 * (the sequence is gone). */
static bool prepare_seq(sched *s, seq *q)
{
    if (q->tokenized) return true;
    const sched_backend_ops *ops = s->be->ops;
    sched_job *j = q->job;
    sched_model_info mi;
    ops->model_info(s->be->impl, j->model, &mi);
    pthread_mutex_lock(&s->cmd_lock);
    int limit = s->max_prompt_tokens;
    pthread_mutex_unlock(&s->cmd_lock);
    if (limit > s->scratch_cap) {
        /* the limit was raised at run time (SIGHUP) */
        int32_t *n2 = realloc(s->scratch, sizeof(int32_t) * ((size_t)limit + 1));
        if (n2 != NULL) {
            s->scratch = n2;
            s->scratch_cap = limit;
        } else {
            limit = s->scratch_cap;
        }
    }
    int n = 0, rc;
    char msg[256];
    if (j->n_tokens_in > 0) {
        if (j->n_tokens_in > limit) {
            rc = -ENOSPC;
        } else {
            rc = 0;
            for (int i = 0; i < j->n_tokens_in; i++) {
                if (j->tokens_in[i] < 0 || j->tokens_in[i] >= mi.n_vocab) {
                    snprintf(msg, sizeof msg, "prompt token %d at index %d is out of range (vocabulary of %d)",
                             j->tokens_in[i], i, mi.n_vocab);
                    list_remove(&s->waiting, q);
                    seq_fail(s, q, SCHED_ERR_INVALID, msg);
                    return false;
                }
            }
            memcpy(s->scratch, j->tokens_in, sizeof(int32_t) * (size_t)j->n_tokens_in);
            n = j->n_tokens_in;
        }
    } else if (j->n_chat > 0) {
        rc = ops->tokenize_chat(s->be->impl, j->model, j->chat, j->n_chat, j->add_generation_prompt, s->scratch,
                                limit, &n);
    } else {
        rc = ops->tokenize(s->be->impl, j->model, j->text ? j->text : "", j->text_len, true, true, s->scratch,
                           limit, &n);
    }
    if (rc == -ENOSPC) {
        snprintf(msg, sizeof msg, "prompt is longer than the limit of %d tokens", limit);
        list_remove(&s->waiting, q);
        seq_fail(s, q, SCHED_ERR_PROMPT_TOO_LONG, msg);
        return false;
    }
    if (rc == -ENOTSUP && j->n_chat > 0) {
        snprintf(msg, sizeof msg, "model %s has no chat template llamad knows; send a text prompt", mi.name);
        list_remove(&s->waiting, q);
        seq_fail(s, q, SCHED_ERR_INVALID, msg);
        return false;
    }
    if (rc == -EINVAL && j->n_chat > 0) {
        snprintf(msg, sizeof msg, "the chat prompt does not fit model %s's template (roles: system, user, "
                 "assistant)", mi.name);
        list_remove(&s->waiting, q);
        seq_fail(s, q, SCHED_ERR_INVALID, msg);
        return false;
    }
    if (rc != 0 || n <= 0) {
        snprintf(msg, sizeof msg, rc ? "cannot tokenize the prompt (%s)" : "the prompt has no tokens",
                 strerror(-rc));
        list_remove(&s->waiting, q);
        seq_fail(s, q, rc ? SCHED_ERR_INTERNAL : SCHED_ERR_INVALID, msg);
        return false;
    }
    if (n >= mi.n_ctx) {
        snprintf(msg, sizeof msg, "prompt of %d tokens does not fit the model's context of %d tokens", n,
                 mi.n_ctx);
        list_remove(&s->waiting, q);
        seq_fail(s, q, SCHED_ERR_PROMPT_TOO_LONG, msg);
        return false;
    }
    if (!ops->kv_fits_ever(s->be->impl, j->model, n + 1)) {
        snprintf(msg, sizeof msg, "prompt of %d tokens can never fit in the KV cache (raise kv-cache-mib)", n);
        list_remove(&s->waiting, q);
        seq_fail(s, q, SCHED_ERR_PROMPT_TOO_LONG, msg);
        return false;
    }
    long long cap = (long long)n + (j->max_tokens > 0 ? j->max_tokens : 0) + 1;
    if (cap > mi.n_ctx) cap = mi.n_ctx;
    q->tokens = malloc(sizeof(int32_t) * (size_t)cap);
    if (q->tokens == NULL) {
        list_remove(&s->waiting, q);
        seq_fail(s, q, SCHED_ERR_INTERNAL, "out of memory");
        return false;
    }
    memcpy(q->tokens, s->scratch, sizeof(int32_t) * (size_t)n);
    sched_sampling sp = j->sampling;
    sp.seed = q->seed;
    rc = ops->sampler_create(s->be->impl, j->model, &sp, q->tokens, n, &q->smp);
    if (rc != 0) {
        snprintf(msg, sizeof msg, "bad sampling parameters (%s)", strerror(-rc));
        list_remove(&s->waiting, q);
        seq_fail(s, q, SCHED_ERR_INVALID, msg);
        return false;
    }
    q->n_tokens = q->n_prompt = n;
    q->cap_tokens = (int)cap;
    q->n_ctx = mi.n_ctx;
    q->tokenized = true;
    return true;
}

/* Tries to admit the head of the queue with room for its first chunk. */
static bool try_admit(sched *s, seq *q, int budget, int *ret_chunk)
{
    const sched_backend_ops *ops = s->be->ops;
    int slot = free_slot(s);
    if (slot < 0) return false;
    int cached = 0;
    if (ops->kv_attach(s->be->impl, q->job->model, slot, q->tokens, q->n_tokens, &cached) != 0) return false;
    if (cached >= q->n_tokens) cached = q->n_tokens - 1;
    int need = q->n_tokens - cached;
    int chunk = need < budget ? need : budget;
    if (ops->kv_reserve(s->be->impl, slot, q->tokens, cached + chunk) != 0) {
        ops->kv_release(s->be->impl, slot);
        return false;
    }
    q->slot = slot;
    s->slots[slot] = q;
    q->n_computed = cached;
    if (!q->ever_admitted) {
        q->ever_admitted = true;
        q->cached_tokens = cached;
        q->t_admit_ns = now_ns();
        s->prefix_lookup += q->n_tokens;
        s->prefix_hit += cached;
        pthread_mutex_lock(&s->cmd_lock);
        s->queued--;
        pthread_mutex_unlock(&s->cmd_lock);
    }
    q->admit_seq = ++s->admit_counter;
    q->state = SEQ_RUNNING;
    *ret_chunk = chunk;
    return true;
}

/* ---- one step ---- */

static void expire(sched *s, uint64_t t)
{
    for (int pass = 0; pass < 2; pass++) {
        seq_list *l = pass ? &s->waiting : &s->running;
        seq *q = l->head;
        while (q) {
            seq *nx = q->next;
            uint64_t to = q->job->timeout_ns;
            if (to != 0 && t - q->job->t_submit_ns >= to) {
                list_remove(l, q);
                if (q->hold_len > 0) add_text(s, q, "", 0, true);
                seq_finish(s, q, SCHED_FINISH_TIMEOUT);
            }
            q = nx;
        }
    }
}

static uint64_t next_deadline(sched *s)
{
    uint64_t best = 0;
    for (int pass = 0; pass < 2; pass++) {
        seq_list *l = pass ? &s->waiting : &s->running;
        for (seq *q = l->head; q; q = q->next) {
            if (q->job->timeout_ns == 0) continue;
            uint64_t d = q->job->t_submit_ns + q->job->timeout_ns;
            if (best == 0 || d < best) best = d;
        }
    }
    return best;
}

static void record_tokens(sched *s, int n_prefill, int n_gen)
{
    uint64_t sec = now_ns() / 1000000000ull;
    pthread_mutex_lock(&s->stats_lock);
    s->stats.tokens_generated += (uint64_t)n_gen;
    s->stats.tokens_prefilled += (uint64_t)n_prefill;
    s->stats.steps++;
    int b = (int)(sec % 60);
    if (s->tps_bucket_sec[b] != sec) {
        s->tps_bucket_sec[b] = sec;
        s->tps_bucket_tokens[b] = 0;
    }
    s->tps_bucket_tokens[b] += (uint64_t)n_gen;
    pthread_mutex_unlock(&s->stats_lock);
}

static void update_stats(sched *s)
{
    sched_kv_stats kv = {0};
    s->be->ops->kv_stats(s->be->impl, &kv);
    int paused = 0;
    for (seq *q = s->running.head; q; q = q->next)
        if (conn_paused(s, q->job->conn_id)) paused++;
    pthread_mutex_lock(&s->stats_lock);
    s->stats.queue_depth = s->waiting.n;
    s->stats.running = s->running.n;
    s->stats.paused = paused;
    s->stats.kv_blocks_total = kv.blocks_total;
    s->stats.kv_blocks_used = kv.blocks_used;
    s->stats.kv_blocks_cached = kv.blocks_cached;
    s->stats.prefix_lookup_tokens = s->prefix_lookup;
    s->stats.prefix_hit_tokens = s->prefix_hit;
    s->stats.kv_block_size = kv.block_size;
    pthread_mutex_unlock(&s->stats_lock);
}

void sched_get_stats(sched *s, sched_stats *ret_stats)
{
    uint64_t sec = now_ns() / 1000000000ull;
    pthread_mutex_lock(&s->stats_lock);
    *ret_stats = s->stats;
    uint64_t sum = 0;
    for (int i = 0; i < 60; i++)
        if (s->tps_bucket_sec[i] + 60 > sec) sum += s->tps_bucket_tokens[i];
    pthread_mutex_unlock(&s->stats_lock);
    ret_stats->tokens_per_s_1min = (double)sum / 60.0;
}

/* Builds and runs one step. Returns false when there was nothing to do. */
static bool step(sched *s)
{
    const sched_backend_ops *ops = s->be->ops;
    int budget = s->cfg.max_batch_tokens;
    int n_entries = 0;
    s->step_no++;

    /* 1. running sequences, oldest first: decodes (one token) then prefill chunks */
    for (int phase = 0; phase < 2; phase++) {
        seq *q = s->running.head;
        while (q && budget > 0) {
            seq *nx = q->next;
            int need = q->n_tokens - q->n_computed;
            bool is_decode = need == 1;
            if ((phase == 0) != is_decode || conn_paused(s, q->job->conn_id)) {
                q = nx;
                continue;
            }
            int chunk = need < budget ? need : budget;
            if (!ops->kv_fits_ever(s->be->impl, q->job->model, q->n_computed + chunk)) {
                /* alone in the whole cache it could not grow: it ends as if the context were full */
                if (nx == q) nx = q->next;
                list_remove(&s->running, q);
                add_text(s, q, "", 0, true);
                seq_finish(s, q, SCHED_FINISH_CONTEXT);
                q = nx;
                continue;
            }
            bool skip = false;
            while (ops->kv_reserve(s->be->impl, q->slot, q->tokens, q->n_computed + chunk) != 0) {
                /* out of blocks: the newest running sequence of this model's cache that is not
                 * in this step's batch makes room; a decode with nobody newer yields itself */
                seq *victim = NULL;
                /* paused sequences (their clients are not reading) give way first */
                for (seq *r = s->running.tail; r && !victim; r = r->prev)
                    if (r != q && r->job->model == q->job->model && r->in_batch != s->step_no &&
                        conn_paused(s, r->job->conn_id))
                        victim = r;
                if (victim == NULL) {
                    victim = s->running.tail;
                    while (victim != q &&
                           (victim->job->model != q->job->model || victim->in_batch == s->step_no))
                        victim = victim->prev;
                }
                if (victim == q) {
                    if (is_decode) preempt(s, q);
                    skip = true; /* a prefill chunk waits for blocks, keeping what it has */
                    break;
                }
                if (victim == nx) nx = victim->next;
                if (conn_paused(s, victim->job->conn_id) && s->waiting.head != NULL)
                    preempt_behind(s, victim, s->waiting.head);
                else
                    preempt(s, victim);
            }
            if (!skip) {
                q->in_batch = s->step_no;
                sched_batch_entry *e = &s->entries[n_entries];
                e->slot = q->slot;
                e->model = q->job->model;
                e->tokens = q->tokens + q->n_computed;
                e->n = chunk;
                e->pos0 = q->n_computed;
                e->want_logits = q->n_computed + chunk == q->n_tokens;
                s->entry_seq[n_entries++] = q;
                budget -= chunk;
            }
            q = nx;
        }
    }

    /* 2. admit waiting sequences (FCFS) while there are slots, blocks and budget */
    while (s->waiting.head && budget > 0 && s->running.n < s->cfg.max_seqs) {
        seq *q = s->waiting.head;
        if (!prepare_seq(s, q)) continue;
        if (q->index > 0 && !q->ever_admitted) {
            /* n completions share one prompt: the others wait until the first has computed it,
             * then take its full blocks from the prefix cache */
            bool sibling_prefilling = false;
            for (seq *r = s->running.head; r; r = r->next)
                if (r->job == q->job && r->n_computed < r->n_prompt) sibling_prefilling = true;
            if (sibling_prefilling) break;
        }
        if (q->ever_admitted && !ops->kv_fits_ever(s->be->impl, q->job->model, q->n_tokens)) {
            list_remove(&s->waiting, q);
            add_text(s, q, "", 0, true);
            seq_finish(s, q, SCHED_FINISH_CONTEXT);
            continue;
        }
        int chunk = 0;
        if (!try_admit(s, q, budget, &chunk)) {
            /* nothing that steps holds memory: paused sequences give way */
            bool any_active = false;
            seq *paused_victim = NULL;
            for (seq *r = s->running.head; r; r = r->next) {
                if (r->job->model != q->job->model) continue;
                if (!conn_paused(s, r->job->conn_id)) any_active = true;
                else paused_victim = r;
            }
            if (!any_active && paused_victim != NULL) {
                preempt_behind(s, paused_victim, q);
                continue;
            }
            break;
        }
        list_remove(&s->waiting, q);
        list_push_tail(&s->running, q);
        q->in_batch = s->step_no;
        sched_batch_entry *e = &s->entries[n_entries];
        e->slot = q->slot;
        e->model = q->job->model;
        e->tokens = q->tokens + q->n_computed;
        e->n = chunk;
        e->pos0 = q->n_computed;
        e->want_logits = q->n_computed + chunk == q->n_tokens;
        s->entry_seq[n_entries++] = q;
        budget -= chunk;
    }

    if (n_entries == 0) return false;

    /* 3. the forward pass */
    char err[256] = "";
    int rc = ops->step(s->be->impl, s->entries, n_entries, err, sizeof err);
    if (rc != 0) {
        s->last_error_rc = rc;
        snprintf(s->last_error, sizeof s->last_error, "engine step failed: %s", err[0] ? err : strerror(-rc));
        for (int i = 0; i < n_entries; i++) {
            seq *q = s->entry_seq[i];
            list_remove(&s->running, q);
            seq_finish(s, q, SCHED_FINISH_ERROR);
        }
        return true;
    }

    /* 4. sample, detokenize, finish */
    int n_prefill = 0, n_gen = 0;
    uint64_t t = now_ns();
    for (int i = 0; i < n_entries; i++) {
        seq *q = s->entry_seq[i];
        sched_batch_entry *e = &s->entries[i];
        q->n_computed += e->n;
        if (e->n > 1 || !e->want_logits) n_prefill += e->n;
        ops->kv_commit(s->be->impl, q->slot, q->tokens, q->n_computed);
        if (!e->want_logits) continue;
        int32_t tok;
        bool want_lp = q->job->sampling.logprobs > 0;
        if (ops->sample(s->be->impl, i, q->job->model, q->smp, &tok, want_lp ? &s->lp_scratch : NULL) != 0) {
            list_remove(&s->running, q);
            seq_finish(s, q, SCHED_FINISH_ERROR);
            continue;
        }
        n_gen++;
        if (q->t_first_ns == 0) q->t_first_ns = t;
        int model = q->job->model;
        if (ops->is_eog(s->be->impl, model, tok)) {
            list_remove(&s->running, q);
            add_text(s, q, "", 0, true);
            seq_finish(s, q, SCHED_FINISH_STOP);
            continue;
        }
        q->tokens[q->n_tokens++] = tok;
        q->n_generated++;
        note_token(s, q, tok);
        if (want_lp) note_logprobs(s, q, &s->lp_scratch);
        char piece[PIECE_CAP];
        size_t pl = 0;
        if (ops->token_piece(s->be->impl, model, q->prev_tok, tok, piece, sizeof piece, &pl) != 0) pl = 0;
        q->prev_tok = tok;
        bool done_len = q->job->max_tokens > 0 && q->n_generated >= q->job->max_tokens;
        bool done_ctx = q->n_tokens >= q->n_ctx || q->n_tokens >= q->cap_tokens;
        bool stopped = add_text(s, q, piece, pl, done_len || done_ctx);
        if (stopped || done_len || done_ctx) {
            list_remove(&s->running, q);
            seq_finish(s, q,
                       stopped ? SCHED_FINISH_STOP : done_len ? SCHED_FINISH_LENGTH : SCHED_FINISH_CONTEXT);
            continue;
        }
        flush_pending(s, q);
    }
    record_tokens(s, n_prefill, n_gen);
    return true;
}

static void *engine_main(void *arg)
{
    sched *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->cmd_lock);
        cmd *c = s->cmd_head;
        s->cmd_head = s->cmd_tail = NULL;
        bool stop = s->stop;
        pthread_mutex_unlock(&s->cmd_lock);
        if (stop) {
            while (c) {
                cmd *nx = c->next;
                if (c->job) {
                    bool gen = c->job->kind == SCHED_JOB_GENERATE;
                    for (int i = 0; i < (gen ? c->job->n_completions : 1); i++) job_ended(s, gen);
                    sched_job_free(c->job);
                }
                free(c);
                c = nx;
            }
            break;
        }
        while (c) {
            cmd *nx = c->next;
            handle_cmd(s, c);
            free(c);
            c = nx;
        }
        expire(s, now_ns());
        bool worked = step(s);
        update_stats(s);
        const bool have_events = ev_publish(s);
        if (have_events && s->wake) s->wake(s->wake_arg);
        if (worked) continue;

        /* idle: sleep until a command arrives or the next deadline */
        pthread_mutex_lock(&s->cmd_lock);
        if (s->cmd_head == NULL && !s->stop) {
            uint64_t d = next_deadline(s);
            if (d == 0) {
                pthread_cond_wait(&s->cmd_cond, &s->cmd_lock);
            } else {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                uint64_t t = now_ns();
                uint64_t wait = d > t ? d - t : 0;
                ts.tv_sec += (time_t)(wait / 1000000000ull);
                ts.tv_nsec += (long)(wait % 1000000000ull);
                if (ts.tv_nsec >= 1000000000L) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&s->cmd_cond, &s->cmd_lock, &ts);
            }
        }
        pthread_mutex_unlock(&s->cmd_lock);
    }
    return NULL;
}

int sched_create(const sched_config *cfg, sched_backend *backend, void (*wake)(void *), void *wake_arg,
                 sched **ret_sched)
{
    if (cfg->max_seqs < 1 || cfg->max_batch_tokens < 1 || cfg->max_queue < 1 || cfg->max_prompt_tokens < 1)
        return -EINVAL;
    sched *s = calloc(1, sizeof *s);
    if (s == NULL) return -ENOMEM;
    s->cfg = *cfg;
    s->be = backend;
    s->wake = wake;
    s->wake_arg = wake_arg;
    s->max_queue = cfg->max_queue;
    s->max_prompt_tokens = cfg->max_prompt_tokens;
    s->scratch_cap = cfg->max_prompt_tokens;
    s->slots = calloc((size_t)cfg->max_seqs, sizeof *s->slots);
    s->scratch = malloc(sizeof(int32_t) * ((size_t)s->scratch_cap + 1));
    s->entries = calloc((size_t)cfg->max_seqs, sizeof *s->entries);
    s->entry_seq = calloc((size_t)cfg->max_seqs, sizeof *s->entry_seq);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cmd_cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&s->cmd_lock, NULL);
    pthread_mutex_init(&s->ev_lock, NULL);
    pthread_mutex_init(&s->stats_lock, NULL);
    if (s->slots == NULL || s->scratch == NULL || s->entries == NULL || s->entry_seq == NULL) {
        sched_destroy(s);
        return -ENOMEM;
    }
    update_stats(s);
    int rc = pthread_create(&s->thread, NULL, engine_main, s);
    if (rc != 0) {
        sched_destroy(s);
        return -rc;
    }
    s->thread_started = true;
    *ret_sched = s;
    return 0;
}

void sched_destroy(sched *s)
{
    if (s == NULL) return;
    if (s->thread_started) {
        pthread_mutex_lock(&s->cmd_lock);
        s->stop = true;
        pthread_cond_signal(&s->cmd_cond);
        pthread_mutex_unlock(&s->cmd_lock);
        pthread_join(s->thread, NULL);
    }
    for (int pass = 0; pass < 2; pass++) {
        seq_list *l = pass ? &s->waiting : &s->running;
        while (l->head) {
            seq *q = l->head;
            list_remove(l, q);
            if (q->pending_ev) sched_event_release(s, q->pending_ev);
            q->pending_ev = NULL;
            if (q->slot >= 0) s->be->ops->kv_release(s->be->impl, q->slot);
            seq_free(s, q);
        }
    }
    (void)ev_publish(s); /* (the engine thread has ended) */
    sched_event *ev = sched_poll_events(s);
    while (ev) {
        sched_event *nx = ev->next;
        free(ev->big_text);
        free(ev->big_tokens);
        free(ev->big_offsets);
        free(ev->lp);
        free(ev->lp_text);
        free(ev);
        ev = nx;
    }
    ev = s->ev_free;
    while (ev) {
        sched_event *nx = ev->next;
        free(ev->lp);
        free(ev->lp_text);
        free(ev);
        ev = nx;
    }
    pthread_mutex_destroy(&s->cmd_lock);
    pthread_mutex_destroy(&s->ev_lock);
    pthread_mutex_destroy(&s->stats_lock);
    pthread_cond_destroy(&s->cmd_cond);
    free(s->slots);
    free(s->scratch);
    free(s->entries);
    free(s->entry_seq);
    free(s);
}
