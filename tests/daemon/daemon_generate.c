/* Generation end to end through the real llamad with the shared models: greedy output
 * against the reference vectors, 16 concurrent generations that each produce exactly what
 * they produce alone, cancel and disconnect mid-stream, queue overflow, and KV cache
 * exhaustion (preemption) where every request still completes with its own tokens. */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dh.h"
#include "testutil.h"

#define E(c) LLAMAD__V1__ERROR__CODE__##c
#define FR(c) LLAMAD__V1__GENERATE_DONE__FINISH_REASON__##c

static const char *llamad;
static char m260[4096], m656[4096];

static void start(dh_daemon *d, const char *name, const char *const *extra)
{
    static char a1[4200], a2[4200];
    snprintf(a1, sizeof a1, "tiny=%s", m260);
    snprintf(a2, sizeof a2, "q8=%s", m656);
    const char *args[40] = {"--model", a1, "--model", a2, "--threads", "1"};
    int n = 6;
    for (int i = 0; extra && extra[i]; i++) args[n++] = extra[i];
    args[n] = NULL;
    dh_sock_path(d->sock, sizeof d->sock, name);
    dh_start(d, llamad, args);
}

static void check_ids(const dh_result *r, json_t *expect, int n)
{
    for (int i = 0; i < n; i++) {
        int want = (int)json_integer_value(json_array_get(expect, (size_t)i));
        CHECK_MSG((int)r->ids[i] == want, "token %d: got %u, want %d", i, r->ids[i], want);
    }
}

/* stories260K: 200 greedy tokens from BOS, request 1 on c, checked against the reference
 * ids; returns the vectors (the caller frees them) */
static json_t *greedy_260k(dh_conn *c, dh_result *r)
{
    uint32_t bos[] = {1};
    json_t *v = tu_load_json("testvectors/stories260K_greedy.json");
    dh_gen g = {.model = "tiny", .ids = bos, .n_ids = 1, .max_tokens = 200, .has_temperature = true};
    dh_send_generate(c, 1, &g);
    *r = (dh_result){.rid = 1};
    dh_collect(c, r, 1);
    CHECK_EQ_INT(r->error, 0);
    CHECK_EQ_INT(r->n_ids, 200);
    check_ids(r, json_object_get(v, "generated_ids"), 200);
    return v;
}

static void test_greedy_vectors(void)
{
    dh_daemon d;
    const char *extra[] = {"--kv-cache-mib", "8", NULL};
    start(&d, "greedy.sock", extra);
    dh_conn c;
    dh_connect(&c, d.sock);
    uint32_t bos[] = {1};

    dh_result r;
    json_t *v = greedy_260k(&c, &r);
    json_t *ids = json_object_get(v, "generated_ids");
    CHECK_EQ_INT(r.finish, FR(LENGTH));
    CHECK_EQ_INT(r.last_done.prompt_tokens, 1);
    CHECK_EQ_INT(r.last_done.generated_tokens, 200);
    CHECK(r.last_done.total_us >= r.last_done.time_to_first_token_us);
    /* the streamed text is llama2.c's output (which drops the first piece's leading space) */
    const char *want = json_string_value(json_object_get(v, "expected_stdout"));
    CHECK(r.text_len > 0 && r.text[0] == ' ');
    CHECK_MSG(strcmp(r.text + 1, want) == 0, "text differs:\n%s\n---\n%s", r.text + 1, want);

    /* a stop string ends the text right before it, with finish reason stop */
    const char *stops[] = {"zzz", "Lily"};
    dh_gen gs = {.model = "tiny", .ids = bos, .n_ids = 1, .max_tokens = 200, .has_temperature = true,
                 .stop = stops, .n_stop = 2};
    dh_send_generate(&c, 50, &gs);
    dh_result rs = {.rid = 50};
    dh_collect(&c, &rs, 1);
    CHECK_EQ_INT(rs.finish, FR(STOP));
    CHECK_MSG(strcmp(rs.text, " Once upon a time, there was a little girl named ") == 0, "got '%s'", rs.text);

    /* a text prompt: tokenized by the model's tokenizer, then the same greedy continuation */
    dh_gen gt = {.model = "tiny", .text = "Once upon a time", .max_tokens = 10, .has_temperature = true};
    dh_send_generate(&c, 51, &gt);
    dh_result rt = {.rid = 51};
    dh_collect(&c, &rt, 1);
    CHECK_EQ_INT(rt.error, 0);
    CHECK_EQ_INT(rt.n_ids, 10);
    CHECK_MSG(strncmp(rt.text, ", there was a little girl named Lily", 20) == 0, "got '%s'", rt.text);

    /* Tokenize and Detokenize */
    {
        Llamad__V1__ClientMessage cm = LLAMAD__V1__CLIENT_MESSAGE__INIT;
        Llamad__V1__TokenizeRequest tr = LLAMAD__V1__TOKENIZE_REQUEST__INIT;
        tr.model = "tiny";
        tr.text = "Once upon a time";
        cm.request_id = 52;
        cm.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_TOKENIZE;
        cm.tokenize = &tr;
        dh_send(&c, &cm);
        Llamad__V1__ServerMessage *m = dh_recv(&c);
        CHECK(m != NULL && m->body_case == LLAMAD__V1__SERVER_MESSAGE__BODY_TOKENIZE && m->request_id == 52);
        const Llamad__V1__TokenizeReply *rep = m->tokenize;
        CHECK(rep->n_token_ids >= 2);
        CHECK_EQ_INT(rep->token_ids[0], 1); /* BOS */
        CHECK_EQ_INT(rep->n_pieces, rep->n_token_ids);
        CHECK(rep->pieces[0].len == 3 && memcmp(rep->pieces[0].data, "<s>", 3) == 0);
        Llamad__V1__ClientMessage dm = LLAMAD__V1__CLIENT_MESSAGE__INIT;
        Llamad__V1__DetokenizeRequest dr = LLAMAD__V1__DETOKENIZE_REQUEST__INIT;
        dr.model = "tiny";
        dr.n_token_ids = rep->n_token_ids;
        dr.token_ids = rep->token_ids;
        dm.request_id = 53;
        dm.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_DETOKENIZE;
        dm.detokenize = &dr;
        dh_send(&c, &dm);
        proto_server_free(m);
        m = dh_recv(&c);
        CHECK(m != NULL && m->body_case == LLAMAD__V1__SERVER_MESSAGE__BODY_DETOKENIZE && m->request_id == 53);
        const char *txt = " Once upon a time";
        CHECK_MSG(m->detokenize->text.len == strlen(txt) && memcmp(m->detokenize->text.data, txt, strlen(txt)) == 0,
                  "detokenized '%.*s'", (int)m->detokenize->text.len, (const char *)m->detokenize->text.data);
        proto_server_free(m);
    }

    /* logprobs: one entry per token, the greedy choice is the most likely, alternatives sorted */
    {
        Llamad__V1__ClientMessage cm = LLAMAD__V1__CLIENT_MESSAGE__INIT;
        Llamad__V1__GenerateRequest gr = LLAMAD__V1__GENERATE_REQUEST__INIT;
        Llamad__V1__TokenIds t = LLAMAD__V1__TOKEN_IDS__INIT;
        t.n_ids = 1;
        t.ids = bos;
        gr.prompt_case = LLAMAD__V1__GENERATE_REQUEST__PROMPT_TOKENS;
        gr.tokens = &t;
        gr.has_max_tokens_case = LLAMAD__V1__GENERATE_REQUEST__HAS_MAX_TOKENS_MAX_TOKENS;
        gr.max_tokens = 6;
        gr.has_temperature_case = LLAMAD__V1__GENERATE_REQUEST__HAS_TEMPERATURE_TEMPERATURE;
        gr.temperature = 0;
        gr.logprobs = 3;
        cm.request_id = 55;
        cm.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_GENERATE;
        cm.generate = &gr;
        dh_send(&c, &cm);
        int seen = 0;
        for (;;) {
            Llamad__V1__ServerMessage *m = dh_recv(&c);
            CHECK(m != NULL && m->request_id == 55);
            if (m->body_case == LLAMAD__V1__SERVER_MESSAGE__BODY_GENERATE_DONE) {
                proto_server_free(m);
                break;
            }
            CHECK_EQ_INT(m->body_case, LLAMAD__V1__SERVER_MESSAGE__BODY_TOKEN_CHUNK);
            const Llamad__V1__TokenChunk *tc = m->token_chunk;
            CHECK_EQ_INT(tc->n_logprobs, tc->n_token_ids);
            for (size_t k = 0; k < tc->n_logprobs; k++) {
                const Llamad__V1__TokenLogprob *l = tc->logprobs[k];
                CHECK_EQ_INT(l->n_top, 3);
                CHECK_EQ_INT(l->top[0]->id, tc->token_ids[k]);
                CHECK(l->logprob <= 0.0f && l->logprob == l->top[0]->logprob);
                CHECK(l->top[0]->logprob >= l->top[1]->logprob && l->top[1]->logprob >= l->top[2]->logprob);
                CHECK(l->top[0]->text.len > 0);
                CHECK_EQ_INT(tc->token_ids[k], json_integer_value(json_array_get(ids, (size_t)seen)));
                seen++;
            }
            proto_server_free(m);
        }
        CHECK_EQ_INT(seen, 6);
    }

    /* a chat prompt for a model without a chat template is refused clearly */
    {
        Llamad__V1__ClientMessage cm = LLAMAD__V1__CLIENT_MESSAGE__INIT;
        Llamad__V1__GenerateRequest gr = LLAMAD__V1__GENERATE_REQUEST__INIT;
        Llamad__V1__ChatPrompt cp = LLAMAD__V1__CHAT_PROMPT__INIT;
        Llamad__V1__ChatMessage msg = LLAMAD__V1__CHAT_MESSAGE__INIT, *msgs[1] = {&msg};
        msg.role = "user";
        msg.content = "hi";
        cp.n_messages = 1;
        cp.messages = msgs;
        gr.prompt_case = LLAMAD__V1__GENERATE_REQUEST__PROMPT_CHAT;
        gr.chat = &cp;
        cm.request_id = 54;
        cm.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_GENERATE;
        cm.generate = &gr;
        dh_send(&c, &cm);
        dh_expect_error(&c, 54, E(INVALID_PARAMETER));
    }
    json_decref(v);

    /* TinyStories-656K Q8_0: greedy until EOS (the vector lists EOS as its last id) */
    v = tu_load_json("testvectors/TinyStories-656K-Q8_0_greedy.json");
    ids = json_object_get(v, "generated_ids");
    int n_ref = (int)json_array_size(ids);
    dh_gen g2 = {.model = "q8", .ids = bos, .n_ids = 1, .max_tokens = 300, .has_temperature = true};
    dh_send_generate(&c, 2, &g2);
    r = (dh_result){.rid = 2};
    dh_collect(&c, &r, 1);
    CHECK_EQ_INT(r.error, 0);
    /* strictly equal up to the first near-tie the vector's note names */
    check_ids(&r, ids, 59);
    if (r.n_ids == n_ref - 1) {
        check_ids(&r, ids, n_ref - 1);
        CHECK_EQ_INT(r.finish, FR(STOP));
    }
    json_decref(v);

    /* the same prompt again: now its blocks come from the prefix cache, same tokens */
    dh_gen g3 = {.model = "tiny", .ids = bos, .n_ids = 1, .max_tokens = 40, .has_temperature = true};
    dh_send_generate(&c, 3, &g3);
    dh_result r3 = {.rid = 3};
    dh_collect(&c, &r3, 1);
    uint32_t prompt[64];
    prompt[0] = 1;
    for (int i = 0; i < 40; i++) prompt[i + 1] = r3.ids[i];
    /* a 41-token prompt made of BOS + those 40 tokens continues exactly like the long run */
    v = tu_load_json("testvectors/stories260K_greedy.json");
    ids = json_object_get(v, "generated_ids");
    dh_gen g4 = {.model = "tiny", .ids = prompt, .n_ids = 41, .max_tokens = 20, .has_temperature = true};
    dh_send_generate(&c, 4, &g4);
    dh_result r4 = {.rid = 4};
    dh_collect(&c, &r4, 1);
    CHECK_EQ_INT(r4.n_ids, 20);
    CHECK(r4.last_done.cached_prompt_tokens >= 32); /* two full blocks of 16 were cached */
    for (int i = 0; i < 20; i++)
        CHECK_EQ_INT(r4.ids[i], json_integer_value(json_array_get(ids, (size_t)(40 + i))));
    json_decref(v);

    dh_close(&c);
    CHECK_EQ_INT(dh_stop(&d), 0);
}

/* One sampled generation per seed, alone. */
static void run_alone(const char *sock, int n, int max_tokens, dh_result *out)
{
    dh_conn c;
    dh_connect(&c, sock);
    for (int i = 0; i < n; i++) {
        uint32_t prompt[3] = {1, (uint32_t)(10 + i % 5), 30};
        dh_gen g = {.model = "tiny", .ids = prompt, .n_ids = 3, .max_tokens = max_tokens, .has_temperature = true,
                    .temperature = 0.9f, .has_seed = true, .seed = 1000u + (uint64_t)i};
        dh_send_generate(&c, (uint64_t)(i + 1), &g);
        out[i] = (dh_result){.rid = (uint64_t)(i + 1)};
        dh_collect(&c, &out[i], 1);
        CHECK_EQ_INT(out[i].error, 0);
    }
    dh_close(&c);
}

static void run_together(const char *sock, int n, int max_tokens, dh_result *out)
{
    dh_conn c;
    dh_connect(&c, sock);
    for (int i = 0; i < n; i++) {
        uint32_t prompt[3] = {1, (uint32_t)(10 + i % 5), 30};
        dh_gen g = {.model = "tiny", .ids = prompt, .n_ids = 3, .max_tokens = max_tokens, .has_temperature = true,
                    .temperature = 0.9f, .has_seed = true, .seed = 1000u + (uint64_t)i};
        dh_send_generate(&c, (uint64_t)(i + 1), &g);
        out[i] = (dh_result){.rid = (uint64_t)(i + 1)};
    }
    dh_collect(&c, out, n);
    dh_close(&c);
}

static void compare(const dh_result *a, const dh_result *b, int n)
{
    for (int i = 0; i < n; i++) {
        CHECK_EQ_INT(b[i].error, 0);
        CHECK_MSG(a[i].n_ids == b[i].n_ids, "request %d: %d tokens alone, %d together", i, a[i].n_ids, b[i].n_ids);
        for (int k = 0; k < a[i].n_ids; k++)
            CHECK_MSG(a[i].ids[k] == b[i].ids[k], "request %d token %d: %u alone, %u together", i, k, a[i].ids[k],
                      b[i].ids[k]);
        CHECK_EQ_INT(a[i].finish, b[i].finish);
    }
}

static dh_result alone[16], together[16];

/* --kv-type f32: the same 200 greedy tokens as with the default f16 K/V */
static void test_kv_f32(void)
{
    dh_daemon d;
    const char *extra[] = {"--kv-cache-mib", "8", "--kv-type", "f32", NULL};
    start(&d, "kvf32.sock", extra);
    dh_conn c;
    dh_connect(&c, d.sock);
    static dh_result r;
    json_decref(greedy_260k(&c, &r));
    dh_close(&c);
    CHECK_EQ_INT(dh_stop(&d), 0);
}

static void test_concurrent(void)
{
    dh_daemon d;
    const char *extra[] = {"--kv-cache-mib", "16", "--max-seqs", "16", NULL};
    start(&d, "conc.sock", extra);
    run_alone(d.sock, 16, 60, alone);
    run_together(d.sock, 16, 60, together);
    compare(alone, together, 16);
    CHECK_EQ_INT(dh_stop(&d), 0);
}

static void test_preemption(void)
{
    /* 16 sequences of up to 3 + 150 tokens: about 160 blocks of 16 tokens are needed, the cache
     * has 51 (1 MiB halved between the two models, at 640 bytes per token for stories260K with
     * f16 K/V). They must still all complete, each with exactly the tokens it makes alone. */
    dh_daemon d;
    const char *extra[] = {"--kv-cache-mib", "1", "--max-seqs", "16", NULL};
    start(&d, "preempt.sock", extra);
    run_alone(d.sock, 16, 150, alone);
    run_together(d.sock, 16, 150, together);
    compare(alone, together, 16);
    CHECK_EQ_INT(dh_stop(&d), 0);
}

static void test_cancel_disconnect_overload(void)
{
    dh_daemon d;
    const char *extra[] = {"--kv-cache-mib", "8", "--max-seqs", "1", "--max-queue", "1", "--max-tokens", "2000",
                           NULL};
    start(&d, "cancel.sock", extra);
    uint32_t bos[] = {1};

    /* cancel mid-stream */
    dh_conn c;
    dh_connect(&c, d.sock);
    dh_gen g = {.model = "tiny", .ids = bos, .n_ids = 1, .max_tokens = 2000, .has_temperature = true,
                .temperature = 1.0f, .has_seed = true, .seed = 7};
    dh_send_generate(&c, 1, &g);
    Llamad__V1__ServerMessage *m = dh_recv(&c);
    CHECK(m != NULL && m->body_case == LLAMAD__V1__SERVER_MESSAGE__BODY_TOKEN_CHUNK);
    proto_server_free(m);
    /* a Cancel must have an id of its own: one in flight is a duplicate */
    dh_send_cancel(&c, 1, 1);
    for (;;) {
        m = dh_recv(&c);
        CHECK(m != NULL && m->request_id == 1);
        bool err = m->body_case == LLAMAD__V1__SERVER_MESSAGE__BODY_ERROR;
        if (err) CHECK_EQ_INT(m->error->code, E(DUPLICATE_REQUEST_ID));
        else CHECK_EQ_INT(m->body_case, LLAMAD__V1__SERVER_MESSAGE__BODY_TOKEN_CHUNK);
        proto_server_free(m);
        if (err) break;
    }
    dh_send_cancel(&c, 2, 1);
    for (;;) {
        m = dh_recv(&c);
        CHECK(m != NULL);
        CHECK_EQ_INT(m->request_id, 1);
        if (m->body_case == LLAMAD__V1__SERVER_MESSAGE__BODY_GENERATE_DONE) {
            CHECK_EQ_INT(m->generate_done->finish_reason, FR(CANCELLED));
            CHECK(m->generate_done->generated_tokens < 2000);
            proto_server_free(m);
            break;
        }
        proto_server_free(m);
    }

    /* queue overflow: one running (max-seqs 1), one waiting (max-queue 1), the third is refused */
    dh_send_generate(&c, 10, &g);
    m = dh_recv(&c); /* its first tokens: it runs */
    CHECK(m != NULL && m->request_id == 10 && m->body_case == LLAMAD__V1__SERVER_MESSAGE__BODY_TOKEN_CHUNK);
    proto_server_free(m);
    dh_send_generate(&c, 11, &g);
    dh_send_generate(&c, 12, &g);
    /* the waiting one first: cancelling 10 first let 11 start, and stream a token, whenever
     * the engine took the two cancels in separate steps (seen under ASan) */
    dh_send_cancel(&c, 21, 11);
    dh_send_cancel(&c, 20, 10);
    dh_result rs[3] = {{.rid = 10}, {.rid = 11}, {.rid = 12}};
    dh_collect(&c, rs, 3);
    CHECK_EQ_INT(rs[2].error, E(OVERLOADED));
    CHECK_EQ_INT(rs[0].finish, FR(CANCELLED));
    CHECK_EQ_INT(rs[1].finish, FR(CANCELLED));
    CHECK_EQ_INT(rs[1].n_ids, 0); /* it never left the queue */

    /* disconnect mid-stream: the sequence is dropped and its blocks freed */
    dh_conn c2;
    dh_connect(&c2, d.sock);
    dh_send_generate(&c2, 1, &g);
    m = dh_recv(&c2);
    CHECK(m != NULL && m->body_case == LLAMAD__V1__SERVER_MESSAGE__BODY_TOKEN_CHUNK);
    proto_server_free(m);
    dh_close(&c2);
    /* the next request runs (max-seqs is 1: it can only start once the dropped one is gone) */
    dh_gen g2 = {.model = "tiny", .ids = bos, .n_ids = 1, .max_tokens = 5, .has_temperature = true};
    dh_send_generate(&c, 30, &g2);
    dh_result r = {.rid = 30};
    dh_collect(&c, &r, 1);
    CHECK_EQ_INT(r.n_ids, 5);
    dh_send_status(&c, 31);
    m = dh_recv(&c);
    CHECK(m != NULL && m->body_case == LLAMAD__V1__SERVER_MESSAGE__BODY_STATUS);
    CHECK_EQ_INT(m->status->running_sequences, 0);
    CHECK_EQ_INT(m->status->queue_depth, 0);
    CHECK_EQ_INT(m->status->kv_blocks_used, 0);
    CHECK(m->status->tokens_per_second > 0);
    proto_server_free(m);

    /* n completions: each ends with its own GenerateDone; seeds seed+i */
    /* the prompt is computed once: the other completions take its full blocks from the cache */
    uint32_t prompt40[40];
    prompt40[0] = 1;
    for (int i = 1; i < 40; i++) prompt40[i] = (uint32_t)(100 + i);
    dh_gen g3 = {.model = "tiny", .ids = prompt40, .n_ids = 40, .max_tokens = 10, .has_temperature = true,
                 .temperature = 1.0f, .has_seed = true, .seed = 5, .n = 3};
    dh_send_generate(&c, 40, &g3);
    dh_result r3 = {.rid = 40, .n_expected = 3};
    dh_collect(&c, &r3, 1);
    CHECK_EQ_INT(r3.done, 3);
    CHECK_EQ_INT(r3.n_ids, 30);
    CHECK_EQ_INT(r3.max_cached, 32);

    /* a timeout ends a request with finish reason timeout */
    dh_close(&c);
    CHECK_EQ_INT(dh_stop(&d), 0);

    const char *extra2[] = {"--kv-cache-mib", "8", "--timeout-s", "1", "--max-tokens", "100000", NULL};
    start(&d, "timeout.sock", extra2);
    dh_connect(&c, d.sock);
    dh_gen g4 = {.model = "tiny", .ids = bos, .n_ids = 1, .max_tokens = 100000, .has_temperature = true,
                 .temperature = 1.0f};
    dh_send_generate(&c, 1, &g4);
    r = (dh_result){.rid = 1};
    dh_collect(&c, &r, 1);
    /* the context (2048) ends it first on a fast machine; otherwise the 1 s limit */
    CHECK(r.finish == FR(TIMEOUT) || (r.finish == FR(LENGTH) && r.n_ids == 2047));
    dh_close(&c);
    CHECK_EQ_INT(dh_stop(&d), 0);
}

/* A client that does not read: its streams pause (the daemon's memory does not grow with the
 * unsent output) and resume when it reads again, and every stream completes intact. */
static void test_slow_reader(void)
{
    char logpath[512];
    snprintf(logpath, sizeof logpath, "%s/slow.log", tu_tmpdir());
    dh_daemon d;
    const char *extra[] = {"--kv-cache-mib", "16", "--max-seqs", "16", "--max-frame-bytes", "4096",
                           "--log-level", "debug", "--log-file", logpath, NULL};
    start(&d, "slow.sock", extra);
    dh_conn c;
    dh_connect(&c, d.sock);
    int small = 4096;
    setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    uint32_t bos[] = {1};
    /* 20 alternatives per token make every TokenChunk a few hundred bytes: 16 x 200 tokens
     * are far more than the socket buffers and the daemon's high-water mark hold */
    dh_gen g = {.model = "tiny", .ids = bos, .n_ids = 1, .max_tokens = 200, .has_temperature = true, .logprobs = 20};
    for (int i = 0; i < 16; i++) dh_send_generate(&c, (uint64_t)(i + 1), &g);
    /* wait, without reading, until the daemon says it paused this connection */
    for (int i = 0;; i++) {
        CHECK_MSG(i < 60000, "the daemon never paused the connection of a client that does not read");
        size_t len;
        char *log = tu_read_file(logpath, &len);
        bool paused = strstr(log, ": paused (") != NULL;
        free(log);
        if (paused) break;
        usleep(1000);
    }
    static dh_result rs[16];
    for (int i = 0; i < 16; i++) rs[i] = (dh_result){.rid = (uint64_t)(i + 1)};
    dh_collect(&c, rs, 16);
    for (int i = 0; i < 16; i++) {
        CHECK_EQ_INT(rs[i].error, 0);
        CHECK_EQ_INT(rs[i].n_ids, 200);
        CHECK(memcmp(rs[i].ids, rs[0].ids, sizeof rs[0].ids[0] * 200) == 0);
        CHECK(strcmp(rs[i].text, rs[0].text) == 0);
    }
    dh_close(&c);
    CHECK_EQ_INT(dh_stop(&d), 0);
    size_t len;
    char *log = tu_read_file(logpath, &len);
    CHECK(strstr(log, ": resumed (client reads again)") != NULL);
    free(log);
}

int main(int argc, char **argv)
{
    CHECK_MSG(argc == 2, "usage: daemon_generate LLAMAD");
    llamad = argv[1];
    signal(SIGPIPE, SIG_IGN);
    snprintf(m260, sizeof m260, "%s", tu_shared("models/stories260K.gguf"));
    snprintf(m656, sizeof m656, "%s", tu_shared("models/TinyStories-656K-Q8_0.gguf"));
    test_greedy_vectors();
    test_kv_f32();
    test_concurrent();
    test_preemption();
    test_cancel_disconnect_overload();
    test_slow_reader();
    printf("daemon_generate: ok\n");
    return 0;
}
