/* The scheduler on its own, with a small deterministic backend: each byte of text is one
 * token, a per-seed script says what the "model" generates, and the KV cache is a counter of
 * blocks. Checks stop strings and UTF-8 in the stream, admission and preemption when blocks
 * run out (with every request completing), the limits of a sequence that outgrows the whole
 * cache, cancel (queued and running), dropped and paused connections, timeouts, overload,
 * n completions, and the invariants of every step the engine is given. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sched_backend.h"
#include "scheduler.h"
#include "testutil.h"

/* ---- the mock backend ---- */

#define BS 4        /* tokens per block */
#define VOCAB 300
#define T_EUR1 260  /* "\xE2\x82": first two bytes of the euro sign */
#define T_EUR2 261  /* "\xAC" */
#define T_BAD 262   /* "\xFF": never valid UTF-8 */
#define MAX_SLOTS 16

typedef struct mock {
    int n_blocks, used;
    int n_ctx;
    int held[MAX_SLOTS];
    int len[MAX_SLOTS];
    bool live[MAX_SLOTS];
    int steps, max_batch_tokens;
    int failed_invariants;
} mock;

typedef struct mock_smp {
    uint64_t seed;
    int n; /* tokens sampled so far */
} mock_smp;

static mock M;

static int m_n_models(void *be) { return 1; }
static void m_model_info(void *be, int model, sched_model_info *r)
{
    memset(r, 0, sizeof *r);
    r->name = "mock";
    r->n_ctx = M.n_ctx;
    r->n_vocab = VOCAB;
    r->bos = 1;
    r->eos = 2;
}
static int m_tokenize(void *be, int model, const char *text, size_t len, bool add_special, bool parse_special,
                      int32_t *out, int cap, int *ret_n)
{
    int n = 0;
    if (add_special) {
        if (n >= cap) return -ENOSPC;
        out[n++] = 1;
    }
    for (size_t i = 0; i < len; i++) {
        if (n >= cap) return -ENOSPC;
        out[n++] = (unsigned char)text[i] + 3;
    }
    *ret_n = n;
    return 0;
}
static int m_tokenize_chat(void *be, int model, const sched_chat_msg *msgs, int n_msgs, bool add_gen, int32_t *out,
                           int cap, int *ret_n)
{
    return -ENOTSUP;
}
static int piece(int32_t tok, char *buf, size_t *ret_len)
{
    if (tok == T_EUR1) {
        memcpy(buf, "\xE2\x82", 2);
        *ret_len = 2;
    } else if (tok == T_EUR2) {
        buf[0] = (char)0xAC;
        *ret_len = 1;
    } else if (tok == T_BAD) {
        buf[0] = (char)0xFF;
        *ret_len = 1;
    } else if (tok >= 3 && tok < 259) {
        buf[0] = (char)(tok - 3);
        *ret_len = 1;
    } else {
        *ret_len = 0;
    }
    return 0;
}
static int m_token_text(void *be, int model, int32_t tok, char *buf, size_t cap, size_t *ret_len)
{
    if (tok == 1) {
        memcpy(buf, "<s>", 3);
        *ret_len = 3;
        return 0;
    }
    return piece(tok, buf, ret_len);
}
static int m_token_piece(void *be, int model, int32_t prev, int32_t tok, char *buf, size_t cap, size_t *ret_len)
{
    return piece(tok, buf, ret_len);
}
static bool m_is_eog(void *be, int model, int32_t tok) { return tok == 2; }

static int blocks_for(int n) { return (n + BS - 1) / BS; }

static int m_kv_attach(void *be, int model, int slot, const int32_t *tokens, int n, int *ret_cached)
{
    CHECK(slot >= 0 && slot < MAX_SLOTS && !M.live[slot]);
    M.live[slot] = true;
    M.held[slot] = 0;
    M.len[slot] = 0;
    *ret_cached = 0;
    return 0;
}
static int m_kv_reserve(void *be, int slot, const int32_t *tokens, int n_total)
{
    CHECK(M.live[slot]);
    int need = blocks_for(n_total) - M.held[slot];
    if (need > 0) {
        if (M.used + need > M.n_blocks) return -ENOSPC;
        M.used += need;
        M.held[slot] += need;
    }
    if (n_total > M.len[slot]) M.len[slot] = n_total;
    return 0;
}
static void m_kv_commit(void *be, int slot, const int32_t *tokens, int n_done) {}
static void m_kv_release(void *be, int slot)
{
    CHECK(M.live[slot]);
    M.used -= M.held[slot];
    M.held[slot] = 0;
    M.live[slot] = false;
}
static bool m_kv_fits_ever(void *be, int model, int n) { return blocks_for(n) <= M.n_blocks && n <= M.n_ctx; }
static void m_kv_stats(void *be, sched_kv_stats *r)
{
    memset(r, 0, sizeof *r);
    r->blocks_total = M.n_blocks;
    r->blocks_used = M.used;
    r->block_size = BS;
}
static int m_sampler_create(void *be, int model, const sched_sampling *p, const int32_t *prompt, int n_prompt,
                            void **ret)
{
    mock_smp *s = calloc(1, sizeof *s);
    if (s == NULL) return -ENOMEM;
    s->seed = p->seed;
    *ret = s;
    return 0;
}
static void m_sampler_free(void *be, void *smp) { free(smp); }
static int m_step(void *be, const sched_batch_entry *e, int n, char *err, size_t errlen)
{
    int total = 0;
    for (int i = 0; i < n; i++) {
        total += e[i].n;
        /* the scheduler reserved the blocks for these positions */
        if (!M.live[e[i].slot] || M.held[e[i].slot] * BS < e[i].pos0 + e[i].n) M.failed_invariants++;
        for (int k = 0; k < i; k++)
            if (e[k].slot == e[i].slot) M.failed_invariants++;
        if (e[i].n < 1 || e[i].pos0 < 0) M.failed_invariants++;
    }
    if (total > M.max_batch_tokens) M.failed_invariants++;
    M.steps++;
    return 0;
}
/* The scripts: what each seed "generates". */
static int32_t script(uint64_t seed, int i)
{
    static const char *texts[] = {"abcSTOPdef", "", "", "hello"};
    if (seed == 100 || seed == 103) {
        const char *t = texts[seed - 100];
        return t[i] ? (unsigned char)t[i] + 3 : 2;
    }
    if (seed == 101) {
        static const int32_t s[] = {T_EUR1, T_EUR2, 'x' + 3, 2};
        return s[i < 3 ? i : 3];
    }
    if (seed == 102) {
        static const int32_t s[] = {T_BAD, 'y' + 3, 2};
        return s[i < 2 ? i : 2];
    }
    if (seed == 104) { /* ends with half a character */
        static const int32_t s[] = {'z' + 3, T_EUR1, 2};
        return s[i < 2 ? i : 2];
    }
    return 'a' + 3 + (int)((seed + (uint64_t)i) % 26); /* never ends */
}
static int m_sample(void *be, int entry_index, int model, void *smp, int32_t *ret, sched_token_lp *lp)
{
    mock_smp *s = smp;
    *ret = script(s->seed, s->n++);
    if (lp) {
        lp->logprob = -0.5f;
        lp->n_top = 2;
        lp->top_id[0] = *ret;
        lp->top_lp[0] = -0.5f;
        lp->top_id[1] = 1; /* BOS: its text is "<s>" */
        lp->top_lp[1] = -3.0f;
    }
    return 0;
}

static const sched_backend_ops mock_ops = {
    m_n_models, m_model_info, m_tokenize, m_tokenize_chat, m_token_text, m_token_piece, m_is_eog,
    m_kv_attach, m_kv_reserve, m_kv_commit, m_kv_release, m_kv_fits_ever, m_kv_stats,
    m_sampler_create, m_sampler_free, m_step, m_sample,
};
static sched_backend mock_be = {&mock_ops, NULL};

/* ---- events ---- */

static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake_cond = PTHREAD_COND_INITIALIZER;
static int wake_count;

static void on_wake(void *arg)
{
    pthread_mutex_lock(&wake_lock);
    wake_count++;
    pthread_cond_signal(&wake_cond);
    pthread_mutex_unlock(&wake_lock);
}

typedef struct result {
    char text[4096];
    size_t text_len;
    int n_tokens;
    int done[4];
    int n_done;
    int finish;
    int err;
    char message[256];
    int tokenized[64];
    int n_tokenized;
    int chunks;
    int n_lp;
    bool lp_text_ok;
} result;

#define MAX_JOBS 64
static result res[MAX_JOBS];

static bool utf8_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
        if (k == 0 || i + k > n) return false;
        for (size_t j = 1; j < k; j++)
            if (((unsigned char)s[i + j] & 0xC0) != 0x80) return false;
        i += k;
    }
    return true;
}

/* Drains events into res[] until pred() holds. */
static void pump(sched *s, bool (*pred)(void *), void *arg)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 60;
    for (;;) {
        /* read the wake count before taking the events, so that no wake-up is missed */
        pthread_mutex_lock(&wake_lock);
        int seen = wake_count;
        pthread_mutex_unlock(&wake_lock);
        sched_event *ev = sched_poll_events(s);
        while (ev) {
            sched_event *nx = ev->next;
            CHECK(ev->job_id < MAX_JOBS);
            result *r = &res[ev->job_id];
            switch (ev->type) {
            case SCHED_EV_TOKENS:
                CHECK_MSG(utf8_ok(ev->text, ev->text_len), "a chunk that is not whole UTF-8");
                memcpy(r->text + r->text_len, ev->text, ev->text_len);
                r->text_len += ev->text_len;
                r->text[r->text_len] = '\0';
                r->n_tokens += ev->n_tokens;
                r->chunks++;
                if (ev->n_lp > 0) {
                    CHECK_EQ_INT(ev->n_lp, ev->n_tokens);
                    r->n_lp += ev->n_lp;
                    const sched_token_lp *l = &ev->lp[ev->n_lp - 1];
                    r->lp_text_ok = l->n_top == 2 && l->top_text_len[1] == 3 &&
                                    memcmp(ev->lp_text + l->top_text_off[1], "<s>", 3) == 0;
                }
                break;
            case SCHED_EV_DONE:
                r->done[ev->index]++;
                r->n_done++;
                r->finish = ev->finish;
                break;
            case SCHED_EV_ERROR:
                r->err = ev->err;
                snprintf(r->message, sizeof r->message, "%s", ev->message);
                break;
            case SCHED_EV_TOKENIZED:
                r->n_tokenized = ev->n_big_tokens;
                for (int i = 0; i < ev->n_big_tokens && i < 64; i++) r->tokenized[i] = ev->big_tokens[i];
                r->n_done++;
                break;
            case SCHED_EV_DETOKENIZED:
                memcpy(r->text, ev->big_text, ev->big_text_len);
                r->text_len = ev->big_text_len;
                r->n_done++;
                break;
            }
            sched_event_release(s, ev);
            ev = nx;
        }
        if (pred(arg)) return;
        pthread_mutex_lock(&wake_lock);
        while (wake_count == seen) {
            int rc = pthread_cond_timedwait(&wake_cond, &wake_lock, &dl);
            CHECK_MSG(rc == 0, "no scheduler event within 60 s (%d)", rc);
        }
        pthread_mutex_unlock(&wake_lock);
    }
}

static bool ended(void *arg)
{
    int id = *(int *)arg;
    return res[id].err != 0 || res[id].n_done > 0;
}
static bool all_ended(void *arg)
{
    int *ids = arg; /* count, then ids */
    for (int i = 1; i <= ids[0]; i++)
        if (!ended(&ids[i])) return false;
    return true;
}
static bool has_tokens(void *arg) { return res[*(int *)arg].n_tokens > 0; }

static sched *make(int n_blocks, int n_ctx, int max_seqs, int max_batch, int max_queue)
{
    memset(&M, 0, sizeof M);
    memset(res, 0, sizeof res);
    M.n_blocks = n_blocks;
    M.n_ctx = n_ctx;
    M.max_batch_tokens = max_batch;
    sched_config cfg = {.max_seqs = max_seqs, .max_batch_tokens = max_batch, .max_queue = max_queue,
                        .max_prompt_tokens = 32};
    sched *s = NULL;
    CHECK(sched_create(&cfg, &mock_be, on_wake, NULL, &s) == 0);
    return s;
}

static sched_job *gen(uint64_t id, uint64_t conn, const char *prompt, uint64_t seed, int max_tokens)
{
    sched_job *j = sched_job_new();
    CHECK(j != NULL);
    j->id = id;
    j->conn_id = conn;
    j->kind = SCHED_JOB_GENERATE;
    j->text = strdup(prompt);
    j->text_len = strlen(prompt);
    j->max_tokens = max_tokens;
    j->sampling.seed = seed;
    return j;
}

static void submit(sched *s, sched_job *j) { CHECK_EQ_INT(sched_submit(s, j), 0); }

static void wait_ended(sched *s, int id) { pump(s, ended, &id); }

static void finish(sched *s)
{
    /* nothing left running, every block given back, every step well formed */
    for (int i = 0; i < 1000000 && sched_active_jobs(s) > 0; i++) {
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    CHECK_EQ_INT(sched_active_jobs(s), 0);
    sched_destroy(s);
    CHECK_EQ_INT(M.used, 0);
    CHECK_EQ_INT(M.failed_invariants, 0);
}

static void test_text(void)
{
    sched *s = make(64, 256, 4, 16, 8);
    /* stop string across tokens: held back, then cut */
    sched_job *j = gen(1, 1, "hi", 100, 50);
    j->n_stop = 2;
    strcpy(j->stop[0], "STOP");
    strcpy(j->stop[1], "cS"); /* matches earlier: "ab" + "cS" -> text "ab" */
    submit(s, j);
    wait_ended(s, 1);
    CHECK_EQ_INT(res[1].finish, SCHED_FINISH_STOP);
    CHECK_MSG(strcmp(res[1].text, "ab") == 0, "got '%s'", res[1].text);

    j = gen(2, 1, "hi", 100, 50);
    j->n_stop = 1;
    strcpy(j->stop[0], "STOP");
    submit(s, j);
    wait_ended(s, 2);
    CHECK_MSG(strcmp(res[2].text, "abc") == 0, "got '%s'", res[2].text);

    /* a stop string that never completes: everything comes out, then EOS ends it */
    j = gen(3, 1, "hi", 100, 50);
    j->n_stop = 1;
    strcpy(j->stop[0], "defg");
    submit(s, j);
    wait_ended(s, 3);
    CHECK_EQ_INT(res[3].finish, SCHED_FINISH_STOP);
    CHECK_MSG(strcmp(res[3].text, "abcSTOPdef") == 0, "got '%s'", res[3].text);
    CHECK_EQ_INT(res[3].n_tokens, 10);

    /* a character split across tokens comes out whole */
    submit(s, gen(4, 1, "hi", 101, 50));
    wait_ended(s, 4);
    CHECK_MSG(strcmp(res[4].text, "\xE2\x82\xACx") == 0, "got '%s'", res[4].text);
    /* an invalid byte becomes U+FFFD */
    submit(s, gen(5, 1, "hi", 102, 50));
    wait_ended(s, 5);
    CHECK_MSG(strcmp(res[5].text, "\xEF\xBF\xBDy") == 0, "got '%s'", res[5].text);
    /* half a character at the end becomes U+FFFD */
    submit(s, gen(6, 1, "hi", 104, 50));
    wait_ended(s, 6);
    CHECK_MSG(strcmp(res[6].text, "z\xEF\xBF\xBD") == 0, "got '%s'", res[6].text);

    /* logprobs ride along with their tokens */
    j = gen(11, 1, "hi", 7, 12);
    j->sampling.logprobs = 2;
    submit(s, j);
    wait_ended(s, 11);
    CHECK_EQ_INT(res[11].n_tokens, 12);
    CHECK_EQ_INT(res[11].n_lp, 12);
    CHECK(res[11].lp_text_ok);

    /* max_tokens */
    submit(s, gen(7, 1, "hi", 7, 10));
    wait_ended(s, 7);
    CHECK_EQ_INT(res[7].finish, SCHED_FINISH_LENGTH);
    CHECK_EQ_INT(res[7].n_tokens, 10);

    /* tokenize / detokenize */
    sched_job *t = sched_job_new();
    t->id = 8;
    t->kind = SCHED_JOB_TOKENIZE;
    t->text = strdup("AB");
    t->text_len = 2;
    t->add_special = true;
    submit(s, t);
    wait_ended(s, 8);
    CHECK_EQ_INT(res[8].n_tokenized, 3);
    CHECK_EQ_INT(res[8].tokenized[0], 1);
    CHECK_EQ_INT(res[8].tokenized[1], 'A' + 3);
    t = sched_job_new();
    t->id = 9;
    t->kind = SCHED_JOB_DETOKENIZE;
    t->tokens_in = malloc(3 * sizeof(int32_t));
    t->tokens_in[0] = 1;
    t->tokens_in[1] = 'O' + 3;
    t->tokens_in[2] = 'K' + 3;
    t->n_tokens_in = 3;
    submit(s, t);
    wait_ended(s, 9);
    CHECK(res[9].text_len == 2 && memcmp(res[9].text, "OK", 2) == 0);

    /* n completions: one DONE per index, seeds seed + i */
    j = gen(10, 1, "hi", 7, 5);
    j->n_completions = 3;
    submit(s, j);
    for (;;) {
        int id = 10;
        pump(s, ended, &id);
        if (res[10].n_done == 3) break;
    }
    CHECK(res[10].done[0] == 1 && res[10].done[1] == 1 && res[10].done[2] == 1);
    CHECK_EQ_INT(res[10].n_tokens, 15);
    finish(s);
}

static void test_limits(void)
{
    sched *s = make(8, 40, 4, 16, 8);
    /* over the prompt limit (32) */
    submit(s, gen(1, 1, "0123456789012345678901234567890123456789", 7, 5));
    wait_ended(s, 1);
    CHECK_EQ_INT(res[1].err, SCHED_ERR_PROMPT_TOO_LONG);
    /* within the limit but more than the whole cache can hold (8 blocks of 4) */
    submit(s, gen(2, 1, "0123456789012345678901234567890", 7, 5));
    wait_ended(s, 2);
    CHECK_EQ_INT(res[2].err, SCHED_ERR_PROMPT_TOO_LONG);
    CHECK(strstr(res[2].message, "can never fit") != NULL);
    /* a sequence that outgrows the whole cache ends as if its context were full */
    submit(s, gen(3, 1, "0123", 7, 100));
    wait_ended(s, 3);
    CHECK_EQ_INT(res[3].finish, SCHED_FINISH_CONTEXT);
    CHECK_EQ_INT(res[3].n_tokens, 32 - 5 + 1); /* the last sampled token needs no K/V */
    /* chat without a template */
    sched_job *j = gen(4, 1, "", 7, 5);
    j->n_chat = 1;
    j->chat = calloc(1, sizeof *j->chat);
    j->chat[0].role = strdup("user");
    j->chat[0].content = strdup("hi");
    submit(s, j);
    wait_ended(s, 4);
    CHECK_EQ_INT(res[4].err, SCHED_ERR_INVALID);
    /* timeout */
    j = gen(5, 1, "hi", 7, 1000);
    j->timeout_ns = 1;
    submit(s, j);
    wait_ended(s, 5);
    CHECK_EQ_INT(res[5].finish, SCHED_FINISH_TIMEOUT);
    finish(s);
}

static void test_preemption(void)
{
    /* 8 sequences of 3 + 20 tokens need 48 blocks; there are 12 */
    sched *s = make(12, 256, 8, 16, 16);
    int ids[9] = {8};
    for (int i = 0; i < 8; i++) {
        submit(s, gen((uint64_t)(i + 1), 1, "hi", (uint64_t)(i * 3), 20));
        ids[i + 1] = i + 1;
    }
    pump(s, all_ended, ids);
    for (int i = 1; i <= 8; i++) {
        CHECK_EQ_INT(res[i].err, 0);
        CHECK_EQ_INT(res[i].finish, SCHED_FINISH_LENGTH);
        CHECK_EQ_INT(res[i].n_tokens, 20);
        /* its own script, untouched by preemption and recomputation */
        for (int k = 0; k < 20; k++) CHECK_EQ_INT((unsigned char)res[i].text[k] + 3, script((uint64_t)((i - 1) * 3), k));
    }
    sched_stats st;
    sched_get_stats(s, &st);
    CHECK(st.preemptions > 0);
    CHECK_EQ_INT(st.jobs_done, 8);
    finish(s);
}

static void test_cancel_pause_overload(void)
{
    sched *s = make(64, 4096, 1, 16, 2);
    /* paused connections keep what happens here independent of speed: A takes the only
     * sequence slot and stops after its first token; B and C wait */
    sched_pause_conn(s, 1, true);
    sched_pause_conn(s, 2, true);
    submit(s, gen(1, 1, "hi", 7, 3000));
    int id = 1;
    pump(s, has_tokens, &id);
    submit(s, gen(2, 1, "hi", 7, 3000));
    submit(s, gen(3, 2, "hi", 7, 3000));
    /* the queue holds two: the next is refused at once */
    sched_job *over = gen(4, 1, "hi", 7, 5);
    CHECK_EQ_INT(sched_submit(s, over), -EAGAIN);
    /* cancel the queued one, then the running one */
    sched_cancel(s, 2);
    wait_ended(s, 2);
    CHECK_EQ_INT(res[2].finish, SCHED_FINISH_CANCELLED);
    CHECK_EQ_INT(res[2].n_tokens, 0);
    sched_cancel(s, 1);
    wait_ended(s, 1);
    CHECK_EQ_INT(res[1].finish, SCHED_FINISH_CANCELLED);
    CHECK_EQ_INT(res[1].n_tokens, 1);
    /* C (connection 2) runs now; its connection goes away: no more events, blocks freed */
    id = 3;
    pump(s, has_tokens, &id);
    sched_drop_conn(s, 2);
    for (int i = 0; i < 1000000 && sched_active_jobs(s) > 0; i++) {
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    CHECK_EQ_INT(sched_active_jobs(s), 0);
    CHECK_EQ_INT(res[3].n_done, 0);
    CHECK_EQ_INT(res[3].err, 0);
    CHECK_EQ_INT(M.used, 0);
    sched_destroy(s);

    /* a paused connection's sequence waits; the others go on */
    s = make(64, 4096, 4, 16, 8);
    sched_pause_conn(s, 7, true);
    submit(s, gen(1, 7, "hi", 7, 50));
    submit(s, gen(2, 8, "hi", 8, 30));
    wait_ended(s, 2);
    CHECK_EQ_INT(res[2].n_tokens, 30);
    CHECK(res[1].n_tokens <= 1); /* at most the token of its prefill step */
    CHECK_EQ_INT(res[1].n_done, 0);
    sched_pause_conn(s, 7, false);
    wait_ended(s, 1);
    CHECK_EQ_INT(res[1].n_tokens, 50);
    finish(s);

    /* a paused sequence gives its blocks to one that runs, and finishes intact later */
    s = make(6, 256, 4, 16, 8);
    sched_pause_conn(s, 7, true);
    submit(s, gen(1, 7, "hi", 9, 18));
    id = 1;
    pump(s, has_tokens, &id);
    submit(s, gen(2, 8, "hi", 10, 18)); /* 3 + 18 tokens: all 6 blocks */
    wait_ended(s, 2);
    CHECK_EQ_INT(res[2].n_tokens, 18);
    CHECK_EQ_INT(res[1].n_done, 0);
    sched_pause_conn(s, 7, false);
    wait_ended(s, 1);
    CHECK_EQ_INT(res[1].n_tokens, 18);
    for (int k = 0; k < 18; k++) CHECK_EQ_INT((unsigned char)res[1].text[k] + 3, script(9, k));
    for (int k = 0; k < 18; k++) CHECK_EQ_INT((unsigned char)res[2].text[k] + 3, script(10, k));
    finish(s);
}

int main(void)
{
    test_text();
    test_limits();
    test_preemption();
    test_cancel_pause_overload();
    printf("daemon_sched: ok\n");
    return 0;
}
