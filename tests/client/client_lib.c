/* libllamactl against a scripted fake server: socket path resolution, Hello, streaming
 * callbacks, several requests in flight, errors, the daemon closing mid-stream, an
 * over-limit frame, garbage, the non-blocking fd API, cancel, and the other requests. */
#include "llamactl.h"

#include "fake_server.h"
#include "testutil.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef Llamad__V1__ClientMessage CM;

static char g_sock[256];

static void sock_path(const char *name)
{
    snprintf(g_sock, sizeof g_sock, "%s/%s", tu_tmpdir(), name);
}

static lc_conn *connect_to(const char *path, uint32_t max_frame)
{
    lc_options opt = {.socket_path = path, .max_frame_bytes = max_frame, .timeout_ms = 20000};
    lc_conn *c = lc_conn_new(&opt);
    CHECK(c != NULL);
    int rc = lc_conn_connect(c);
    CHECK_MSG(rc == 0, "connect: %d %s", rc, lc_conn_error(c));
    return c;
}

/* What a request's callback saw. */
typedef struct seen {
    char text[1024];
    uint32_t tokens[64];
    size_t n_tokens;
    int n_chunks;
    int n_done, n_error, n_final;
    lc_done done;
    int err_code, server_code;
    char err_msg[256];
    int order[16]; /* global sequence numbers of this request's events */
    int n_order;
} seen;

static int g_seq;

static void record(lc_conn *c, const lc_event *ev, void *ud)
{
    (void)c;
    seen *s = ud;
    if (s->n_order < 16) s->order[s->n_order++] = g_seq++;
    if (ev->final) s->n_final++;
    switch (ev->type) {
    case LC_EVENT_CHUNK:
        s->n_chunks++;
        strncat(s->text, ev->u.chunk.text, sizeof s->text - strlen(s->text) - 1);
        CHECK_EQ_INT(strlen(ev->u.chunk.text), ev->u.chunk.text_len);
        for (size_t i = 0; i < ev->u.chunk.n_tokens && s->n_tokens < 64; i++)
            s->tokens[s->n_tokens++] = ev->u.chunk.tokens[i];
        break;
    case LC_EVENT_DONE:
        s->n_done++;
        s->done = ev->u.done;
        break;
    case LC_EVENT_ERROR:
        s->n_error++;
        s->err_code = ev->u.error.code;
        s->server_code = ev->u.error.server_code;
        snprintf(s->err_msg, sizeof s->err_msg, "%s", ev->u.error.message);
        break;
    default:
        break;
    }
}

/* ---- socket path ---------------------------------------------------------------------- */

static void test_socket_path(void)
{
    char buf[256];
    unsetenv("LLAMAD_SOCKET");
    unsetenv("XDG_RUNTIME_DIR");
    CHECK_EQ_INT(lc_socket_path(NULL, buf, sizeof buf), 0);
    CHECK(strcmp(buf, "/run/llamad/llamad.sock") == 0);
    setenv("XDG_RUNTIME_DIR", "/run/user/1000", 1);
    CHECK_EQ_INT(lc_socket_path(NULL, buf, sizeof buf), 0);
    CHECK(strcmp(buf, "/run/user/1000/llamad.sock") == 0);
    CHECK_EQ_INT(lc_socket_path("", buf, sizeof buf), 0); /* empty argument: not given */
    CHECK(strcmp(buf, "/run/user/1000/llamad.sock") == 0);
    setenv("LLAMAD_SOCKET", "/tmp/env.sock", 1);
    CHECK_EQ_INT(lc_socket_path(NULL, buf, sizeof buf), 0);
    CHECK(strcmp(buf, "/tmp/env.sock") == 0);
    CHECK_EQ_INT(lc_socket_path("/tmp/arg.sock", buf, sizeof buf), 0);
    CHECK(strcmp(buf, "/tmp/arg.sock") == 0);
    /* the connection object resolves the same way */
    lc_conn *c = lc_conn_new(NULL);
    CHECK(c != NULL);
    CHECK(strcmp(lc_conn_socket_path(c), "/tmp/env.sock") == 0);
    lc_conn_free(c);
    char longp[300];
    memset(longp, 'a', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = '\0';
    CHECK_EQ_INT(lc_socket_path(longp, buf, sizeof buf), LC_ERR_NAMETOOLONG);
    CHECK_EQ_INT(lc_socket_path("/x", buf, 2), LC_ERR_NAMETOOLONG);
    CHECK_EQ_INT(lc_socket_path("/x", NULL, 0), LC_ERR_INVAL);
    unsetenv("LLAMAD_SOCKET");
    unsetenv("XDG_RUNTIME_DIR");
}

static void test_connect_fails(void)
{
    sock_path("nobody.sock");
    unlink(g_sock);
    lc_options opt = {.socket_path = g_sock};
    lc_conn *c = lc_conn_new(&opt);
    CHECK(c != NULL);
    CHECK_EQ_INT(lc_conn_connect(c), -ENOENT);
    CHECK_MSG(strstr(lc_conn_error(c), g_sock) != NULL, "message names the path: %s",
              lc_conn_error(c));
    CHECK_EQ_INT(lc_conn_fd(c), -1);
    uint64_t id;
    CHECK_EQ_INT(lc_submit_status(c, NULL, NULL, &id), LC_ERR_NOTCONN);
    lc_conn_free(c);
    lc_conn_free(NULL);
}

/* ---- streaming ------------------------------------------------------------------------ */

static void script_stream(fs_conn *c, void *ud)
{
    (void)ud;
    fs_hello(c);
    CM *m = fs_expect(c, LLAMAD__V1__CLIENT_MESSAGE__BODY_GENERATE);
    const Llamad__V1__GenerateRequest *g = m->generate;
    CHECK(g->prompt_case == LLAMAD__V1__GENERATE_REQUEST__PROMPT_TEXT);
    CHECK(strcmp(g->text, "Once upon a time") == 0);
    CHECK(strcmp(g->model, "tiny") == 0);
    CHECK(g->has_temperature_case != 0 && g->temperature == 0.0f); /* greedy is sent */
    CHECK(g->has_max_tokens_case != 0 && g->max_tokens == 3);
    CHECK(g->has_top_k_case == 0 && g->has_top_p_case == 0 && g->has_min_p_case == 0);
    CHECK(g->has_seed_case != 0 && g->seed == 7);
    CHECK(g->has_repeat_last_n_case == 0 && g->has_n_case == 0);
    CHECK_EQ_INT(g->n_stop, 2);
    CHECK(strcmp(g->stop[0], "\n\n") == 0 && strcmp(g->stop[1], "The end") == 0);
    uint64_t id = m->request_id;
    proto_client_free(m);
    fs_chunk(c, id, (const uint32_t[]){11}, 1, " there");
    fs_chunk(c, id, (const uint32_t[]){12, 13}, 2, " was\n");
    fs_chunk(c, id, NULL, 0, ""); /* text held back: empty chunk */
    fs_done(c, id, LLAMAD__V1__GENERATE_DONE__FINISH_REASON__LENGTH, 5, 3);
    CHECK(fs_wait_eof(c));
}

static void test_stream(void)
{
    sock_path("stream.sock");
    fs_server *srv = fs_start(g_sock, 1, script_stream, NULL);
    lc_conn *c = connect_to(g_sock, 0);
    CHECK(strcmp(lc_conn_server_version(c), "0.1.0-fake") == 0);
    lc_generate_params p;
    lc_generate_params_init(&p);
    const char *stops[] = {"\n\n", "The end"};
    p.model = "tiny";
    p.prompt = "Once upon a time";
    p.temperature = 0.0f;
    p.max_tokens = 3;
    p.seed = 7;
    p.has_seed = true;
    p.stop = stops;
    p.n_stop = 2;
    seen s = {0};
    lc_done d;
    memset(&d, 0xff, sizeof d);
    CHECK_EQ_INT(lc_generate(c, &p, record, &s, &d), 0);
    CHECK_MSG(strcmp(s.text, " there was\n") == 0, "text [%s] chunks %d", s.text, s.n_chunks);
    CHECK_EQ_INT(s.n_chunks, 3);
    CHECK_EQ_INT(s.n_tokens, 3);
    CHECK(s.tokens[0] == 11 && s.tokens[1] == 12 && s.tokens[2] == 13);
    CHECK_EQ_INT(s.n_done, 1);
    CHECK_EQ_INT(s.n_final, 1);
    CHECK_EQ_INT(d.finish, LC_FINISH_LENGTH);
    CHECK(strcmp(lc_finish_name(d.finish), "length") == 0);
    CHECK_EQ_INT(d.prompt_tokens, 5);
    CHECK_EQ_INT(d.generated_tokens, 3);
    CHECK_EQ_INT(d.cached_tokens, 1);
    CHECK_EQ_INT(d.queue_us, 1500);
    CHECK_EQ_INT(d.first_token_us, 20000);
    CHECK_EQ_INT(d.total_us, 120000);
    CHECK_EQ_INT(d.seed, 42);
    CHECK_EQ_INT(lc_conn_in_flight(c), 0);
    lc_conn_free(c);
    fs_stop(srv);
}

/* ---- several requests in flight ------------------------------------------------------- */

static void script_multi(fs_conn *c, void *ud)
{
    (void)ud;
    fs_hello(c);
    CM *a = fs_expect(c, LLAMAD__V1__CLIENT_MESSAGE__BODY_GENERATE);
    CM *b = fs_expect(c, LLAMAD__V1__CLIENT_MESSAGE__BODY_GENERATE);
    CM *t = fs_expect(c, LLAMAD__V1__CLIENT_MESSAGE__BODY_TOKENIZE);
    CHECK(a->request_id != b->request_id && b->request_id != t->request_id);
    CHECK(strcmp(a->generate->text, "A") == 0);
    CHECK(strcmp(b->generate->text, "B") == 0);
    CHECK(strcmp(t->tokenize->text, "hello") == 0);
    CHECK(t->tokenize->has_add_special_case == 0); /* default: add special tokens */
    /* interleaved replies, in an order unlike the requests' */
    fs_chunk(c, b->request_id, (const uint32_t[]){2}, 1, "b1");
    fs_chunk(c, a->request_id, (const uint32_t[]){1}, 1, "a1");
    Llamad__V1__TokenizeReply tr = LLAMAD__V1__TOKENIZE_REPLY__INIT;
    uint32_t ids[] = {1, 22, 333};
    ProtobufCBinaryData pieces[] = {
        {3, (uint8_t *)"<s>"}, {2, (uint8_t *)"he"}, {3, (uint8_t *)"llo"}};
    tr.n_token_ids = 3;
    tr.token_ids = ids;
    tr.n_pieces = 3;
    tr.pieces = pieces;
    Llamad__V1__ServerMessage r = LLAMAD__V1__SERVER_MESSAGE__INIT;
    r.request_id = t->request_id;
    r.body_case = LLAMAD__V1__SERVER_MESSAGE__BODY_TOKENIZE;
    r.tokenize = &tr;
    fs_send(c, &r);
    fs_done(c, b->request_id, LLAMAD__V1__GENERATE_DONE__FINISH_REASON__STOP, 2, 1);
    fs_chunk(c, a->request_id, (const uint32_t[]){3}, 1, "a2");
    fs_done(c, a->request_id, LLAMAD__V1__GENERATE_DONE__FINISH_REASON__LENGTH, 2, 2);
    proto_client_free(a);
    proto_client_free(b);
    proto_client_free(t);
    CHECK(fs_wait_eof(c));
}

typedef struct tok_seen {
    uint32_t ids[8];
    size_t n;
    char pieces[64];
    int events;
} tok_seen;

static void tok_cb(lc_conn *c, const lc_event *ev, void *ud)
{
    (void)c;
    tok_seen *t = ud;
    t->events++;
    CHECK_EQ_INT(ev->type, LC_EVENT_TOKENS);
    CHECK(ev->final);
    CHECK(ev->u.tokens.n_tokens <= 8);
    t->n = ev->u.tokens.n_tokens;
    memcpy(t->ids, ev->u.tokens.tokens, t->n * sizeof t->ids[0]);
    CHECK_EQ_INT(ev->u.tokens.n_pieces, 3);
    for (size_t i = 0; i < ev->u.tokens.n_pieces; i++) {
        strncat(t->pieces, ev->u.tokens.pieces[i].data, ev->u.tokens.pieces[i].len);
        strcat(t->pieces, "|");
    }
}

static void test_multi(void)
{
    sock_path("multi.sock");
    fs_server *srv = fs_start(g_sock, 1, script_multi, NULL);
    lc_conn *c = connect_to(g_sock, 0);
    lc_generate_params pa, pb;
    lc_generate_params_init(&pa);
    lc_generate_params_init(&pb);
    pa.prompt = "A";
    pb.prompt = "B";
    seen sa = {0}, sb = {0};
    tok_seen st = {0};
    uint64_t ia, ib, it;
    CHECK_EQ_INT(lc_submit_generate(c, &pa, record, &sa, &ia), 0);
    CHECK_EQ_INT(lc_submit_generate(c, &pb, record, &sb, &ib), 0);
    CHECK_EQ_INT(lc_submit_tokenize(c, NULL, "hello", 0, tok_cb, &st, &it), 0);
    CHECK(ia != ib && ib != it && ia != it);
    CHECK_EQ_INT(lc_conn_in_flight(c), 3);
    /* wait for B only: A's and the tokenizer's events that come first run meanwhile */
    CHECK_EQ_INT(lc_wait_request(c, ib, 20000), 0);
    CHECK_EQ_INT(sb.n_done, 1);
    CHECK_EQ_INT(sb.done.finish, LC_FINISH_STOP);
    CHECK(strcmp(sb.text, "b1") == 0);
    CHECK_EQ_INT(st.events, 1);
    CHECK(st.n == 3 && st.ids[0] == 1 && st.ids[1] == 22 && st.ids[2] == 333);
    CHECK(strcmp(st.pieces, "<s>|he|llo|") == 0);
    /* A's first chunk came before B's done; its second may have come in the same read */
    CHECK(strncmp(sa.text, "a1", 2) == 0);
    CHECK(lc_conn_in_flight(c) <= 1);
    CHECK_EQ_INT(lc_wait_request(c, ia, 20000), 0);
    CHECK(strcmp(sa.text, "a1a2") == 0);
    CHECK_EQ_INT(sa.n_done, 1);
    CHECK_EQ_INT(sa.n_final, 1);
    CHECK_EQ_INT(sb.n_final, 1);
    /* events of one request in order, and B's done before A's second chunk */
    CHECK(sb.order[1] < sa.order[1]);
    CHECK_EQ_INT(lc_conn_in_flight(c), 0);
    CHECK_EQ_INT(lc_wait_request(c, ia, 0), 0); /* no longer in flight: returns at once */
    lc_conn_free(c);
    fs_stop(srv);
}

/* ---- errors --------------------------------------------------------------------------- */

static void script_error(fs_conn *c, void *ud)
{
    (void)ud;
    fs_hello(c);
    CM *m = fs_expect(c, LLAMAD__V1__CLIENT_MESSAGE__BODY_GENERATE);
    fs_error(c, m->request_id, LLAMAD__V1__ERROR__CODE__UNKNOWN_MODEL, "no model named 'nope'");
    proto_client_free(m);
    /* a second request on the same connection still works */
    m = fs_expect(c, LLAMAD__V1__CLIENT_MESSAGE__BODY_DETOKENIZE);
    CHECK_EQ_INT(m->detokenize->n_token_ids, 2);
    CHECK(m->detokenize->token_ids[0] == 5 && m->detokenize->token_ids[1] == 6);
    Llamad__V1__DetokenizeReply d = LLAMAD__V1__DETOKENIZE_REPLY__INIT;
    d.text.data = (uint8_t *)"hi\xff"; /* raw bytes, not necessarily UTF-8 */
    d.text.len = 3;
    Llamad__V1__ServerMessage r = LLAMAD__V1__SERVER_MESSAGE__INIT;
    r.request_id = m->request_id;
    r.body_case = LLAMAD__V1__SERVER_MESSAGE__BODY_DETOKENIZE;
    r.detokenize = &d;
    fs_send(c, &r);
    proto_client_free(m);
    CHECK(fs_wait_eof(c));
}

static void test_error(void)
{
    sock_path("error.sock");
    fs_server *srv = fs_start(g_sock, 1, script_error, NULL);
    lc_conn *c = connect_to(g_sock, 0);
    lc_generate_params p;
    lc_generate_params_init(&p);
    p.prompt = "x";
    p.model = "nope";
    seen s = {0};
    CHECK_EQ_INT(lc_generate(c, &p, record, &s, NULL), LC_ERR_SERVER);
    CHECK(strstr(lc_conn_error(c), "no model named 'nope'") != NULL);
    CHECK_EQ_INT(s.n_error, 1);
    CHECK_EQ_INT(s.err_code, LC_ERR_SERVER);
    CHECK_EQ_INT(s.server_code, LC_SERVER_UNKNOWN_MODEL);
    CHECK(strcmp(lc_server_code_name(s.server_code), "UNKNOWN_MODEL") == 0);
    CHECK(strstr(s.err_msg, "no model named") != NULL);
    char *text = NULL;
    size_t len = 0;
    CHECK_EQ_INT(lc_detokenize(c, NULL, (const uint32_t[]){5, 6}, 2, &text, &len), 0);
    CHECK_EQ_INT(len, 3);
    CHECK(memcmp(text, "hi\xff", 4) == 0);
    free(text);
    /* bad arguments are refused before anything is sent */
    lc_generate_params_init(&p);
    CHECK_EQ_INT(lc_submit_generate(c, &p, NULL, NULL, NULL), LC_ERR_INVAL); /* no prompt */
    p.prompt = "x";
    p.messages = (const lc_chat_message[]){{"user", "y"}};
    p.n_messages = 1;
    CHECK_EQ_INT(lc_submit_generate(c, &p, NULL, NULL, NULL), LC_ERR_INVAL); /* two prompts */
    CHECK_EQ_INT(lc_cancel(c, 999), LC_ERR_NOENT);
    CHECK(lc_strerror(LC_ERR_CLOSED)[0] != '\0');
    lc_conn_free(c);
    fs_stop(srv);
}

/* ---- the daemon closes mid-stream ----------------------------------------------------- */

static void script_close(fs_conn *c, void *ud)
{
    (void)ud;
    fs_hello(c);
    CM *m2 = fs_expect(c, LLAMAD__V1__CLIENT_MESSAGE__BODY_STATUS);
    CM *m = fs_expect(c, LLAMAD__V1__CLIENT_MESSAGE__BODY_GENERATE);
    fs_chunk(c, m->request_id, (const uint32_t[]){9}, 1, "partial");
    /* half a frame, then the connection closes */
    fs_send_raw(c, "\x10\x00\x00\x00\x08", 5);
    proto_client_free(m);
    proto_client_free(m2);
}

static void test_close_midstream(void)
{
    sock_path("close.sock");
    fs_server *srv = fs_start(g_sock, 1, script_close, NULL);
    lc_conn *c = connect_to(g_sock, 0);
    lc_generate_params p;
    lc_generate_params_init(&p);
    p.prompt = "x";
    seen s = {0}, s2 = {0};
    uint64_t id2;
    CHECK_EQ_INT(lc_submit_status(c, record, &s2, &id2), 0);
    CHECK_EQ_INT(lc_generate(c, &p, record, &s, NULL), LC_ERR_CLOSED);
    CHECK(strcmp(s.text, "partial") == 0);
    CHECK_EQ_INT(s.n_error, 1);
    CHECK_EQ_INT(s.err_code, LC_ERR_CLOSED);
    CHECK_EQ_INT(s2.n_error, 1); /* every request in flight hears of it */
    CHECK_EQ_INT(s2.err_code, LC_ERR_CLOSED);
    CHECK_MSG(strstr(lc_conn_error(c), "closed") != NULL, "%s", lc_conn_error(c));
    CHECK_EQ_INT(lc_conn_in_flight(c), 0);
    CHECK_EQ_INT(lc_conn_fd(c), -1);
    CHECK_EQ_INT(lc_submit_status(c, NULL, NULL, NULL), LC_ERR_NOTCONN);
    CHECK_EQ_INT(lc_conn_process(c), LC_ERR_CLOSED);
    fs_stop(srv);
    lc_conn_free(c);
}

/* ---- a frame over the client's limit, and garbage ------------------------------------ */

static void script_toobig(fs_conn *c, void *ud)
{
    (void)ud;
    fs_hello(c);
    CM *m = fs_expect(c, LLAMAD__V1__CLIENT_MESSAGE__BODY_GENERATE);
    fs_chunk(c, m->request_id, (const uint32_t[]){1}, 1, "ok");
    /* announces 1 MiB: over the client's 4 KiB limit (nothing else needs to follow) */
    fs_send_raw(c, "\x00\x00\x10\x00", 4);
    proto_client_free(m);
    fs_wait_eof(c);
}

static void script_garbage(fs_conn *c, void *ud)
{
    (void)ud;
    fs_hello(c);
    CM *m = fs_expect(c, LLAMAD__V1__CLIENT_MESSAGE__BODY_TOKENIZE);
    fs_send_raw(c, "\x03\x00\x00\x00\xff\xff\xff", 7); /* not a ServerMessage */
    proto_client_free(m);
    fs_wait_eof(c);
}

static void test_toobig_and_garbage(void)
{
    sock_path("big.sock");
    fs_server *srv = fs_start(g_sock, 1, script_toobig, NULL);
    lc_conn *c = connect_to(g_sock, 4096);
    lc_generate_params p;
    lc_generate_params_init(&p);
    p.prompt = "x";
    seen s = {0};
    CHECK_EQ_INT(lc_generate(c, &p, record, &s, NULL), LC_ERR_TOOBIG);
    CHECK(strcmp(s.text, "ok") == 0);
    CHECK_EQ_INT(s.err_code, LC_ERR_TOOBIG);
    CHECK_MSG(strstr(lc_conn_error(c), "1048576") != NULL && strstr(lc_conn_error(c), "4096"), "%s",
              lc_conn_error(c));
    lc_conn_free(c);
    fs_stop(srv);

    sock_path("garbage.sock");
    srv = fs_start(g_sock, 1, script_garbage, NULL);
    c = connect_to(g_sock, 0);
    uint32_t *toks = NULL;
    size_t n = 0;
    CHECK_EQ_INT(lc_tokenize(c, NULL, "x", 0, &toks, &n), LC_ERR_PROTO);
    CHECK(toks == NULL);
    lc_conn_free(c);
    fs_stop(srv);
}

/* ---- Hello refused -------------------------------------------------------------------- */

static void script_refuse(fs_conn *c, void *ud)
{
    (void)ud;
    CM *m = fs_expect(c, LLAMAD__V1__CLIENT_MESSAGE__BODY_HELLO);
    fs_error(c, m->request_id, LLAMAD__V1__ERROR__CODE__UNSUPPORTED_VERSION, "version 1? no");
    proto_client_free(m);
    fs_wait_eof(c);
}

static void test_hello_refused(void)
{
    sock_path("refuse.sock");
    fs_server *srv = fs_start(g_sock, 1, script_refuse, NULL);
    lc_options opt = {.socket_path = g_sock, .timeout_ms = 20000};
    lc_conn *c = lc_conn_new(&opt);
    CHECK(c != NULL);
    CHECK_EQ_INT(lc_conn_connect(c), LC_ERR_PROTO);
    CHECK_MSG(strstr(lc_conn_error(c), "UNSUPPORTED_VERSION") != NULL, "%s", lc_conn_error(c));
    CHECK_EQ_INT(lc_conn_fd(c), -1);
    lc_conn_free(c);
    fs_stop(srv);
}

/* ---- the non-blocking fd API and cancel ----------------------------------------------- */

typedef struct cancel_state {
    uint64_t target;
    int got_cancel;
} cancel_state;

static void script_cancel(fs_conn *c, void *ud)
{
    cancel_state *cs = ud;
    fs_hello(c);
    CM *m = fs_expect(c, LLAMAD__V1__CLIENT_MESSAGE__BODY_GENERATE);
    CHECK(m->generate->prompt_case == LLAMAD__V1__GENERATE_REQUEST__PROMPT_CHAT);
    const Llamad__V1__ChatPrompt *chat = m->generate->chat;
    CHECK_EQ_INT(chat->n_messages, 2);
    CHECK(strcmp(chat->messages[0]->role, "system") == 0);
    CHECK(strcmp(chat->messages[1]->content, "hi") == 0);
    uint64_t id = m->request_id;
    proto_client_free(m);
    fs_chunk(c, id, (const uint32_t[]){100}, 1, "Hel");
    CM *k = fs_expect(c, LLAMAD__V1__CLIENT_MESSAGE__BODY_CANCEL);
    cs->target = k->cancel->target_request_id;
    cs->got_cancel = 1;
    CHECK(k->request_id != id); /* the Cancel has its own id */
    proto_client_free(k);
    fs_done(c, id, LLAMAD__V1__GENERATE_DONE__FINISH_REASON__CANCELLED, 4, 1);
    fs_wait_eof(c);
}

static void cancel_on_chunk(lc_conn *c, const lc_event *ev, void *ud)
{
    seen *s = ud;
    record(c, ev, ud);
    if (ev->type == LC_EVENT_CHUNK) {
        /* inside a callback: cancel works, blocking calls are refused */
        CHECK_EQ_INT(lc_cancel(c, ev->request_id), 0);
        CHECK_EQ_INT(lc_conn_wait(c, 0), LC_ERR_BUSY);
        CHECK_EQ_INT(lc_conn_process(c), LC_ERR_BUSY);
        uint32_t *t;
        size_t n;
        CHECK_EQ_INT(lc_tokenize(c, NULL, "x", 0, &t, &n), LC_ERR_BUSY);
        CHECK_EQ_INT(lc_wait_request(c, ev->request_id, 0), LC_ERR_BUSY);
        (void)s;
    }
}

static void test_fd_api_and_cancel(void)
{
    sock_path("cancel.sock");
    cancel_state cs = {0};
    fs_server *srv = fs_start(g_sock, 1, script_cancel, &cs);
    lc_conn *c = connect_to(g_sock, 0);
    int fd = lc_conn_fd(c);
    CHECK(fd >= 0);
    /* nothing to read yet: process returns at once */
    CHECK_EQ_INT(lc_conn_process(c), 0);
    CHECK(!lc_conn_want_write(c));
    lc_generate_params p;
    lc_generate_params_init(&p);
    lc_chat_message msgs[] = {{"system", "Be brief."}, {"user", "hi"}};
    p.messages = msgs;
    p.n_messages = 2;
    seen s = {0};
    uint64_t id;
    CHECK_EQ_INT(lc_submit_generate(c, &p, cancel_on_chunk, &s, &id), 0);
    CHECK(lc_conn_want_write(c)); /* queued, not yet written */
    int loops = 0;
    while (lc_conn_in_flight(c) > 0) {
        CHECK(loops++ < 10000);
        struct pollfd pfd = {.fd = fd, .events = POLLIN | (lc_conn_want_write(c) ? POLLOUT : 0)};
        int n = poll(&pfd, 1, 20000);
        CHECK_MSG(n == 1, "poll: nothing within 20 s");
        if (pfd.revents & POLLOUT) CHECK_EQ_INT(lc_conn_flush(c), 0);
        if (pfd.revents & POLLIN) CHECK_EQ_INT(lc_conn_process(c), 0);
    }
    CHECK(!lc_conn_want_write(c));
    CHECK_EQ_INT(s.n_chunks, 1);
    CHECK_EQ_INT(s.n_done, 1);
    CHECK_EQ_INT(s.done.finish, LC_FINISH_CANCELLED);
    CHECK(strcmp(lc_finish_name(s.done.finish), "cancelled") == 0);
    lc_conn_free(c);
    fs_stop(srv);
    CHECK(cs.got_cancel);
    CHECK_EQ_INT(cs.target, id);
}

/* ---- status and models ---------------------------------------------------------------- */

static void script_info(fs_conn *c, void *ud)
{
    (void)ud;
    fs_hello(c);
    CM *m = fs_expect(c, LLAMAD__V1__CLIENT_MESSAGE__BODY_STATUS);
    Llamad__V1__StatusReply st = LLAMAD__V1__STATUS_REPLY__INIT;
    char *loaded[] = {"tiny", "big"};
    st.n_loaded_models = 2;
    st.loaded_models = loaded;
    st.default_model = "tiny";
    st.queue_depth = 3;
    st.running_sequences = 2;
    st.kv_blocks_total = 1000;
    st.kv_blocks_used = 10;
    st.kv_blocks_cached = 20;
    st.kv_block_size = 16;
    st.prefix_cache_hit_rate = 0.5;
    st.tokens_per_second = 12.5;
    st.uptime_seconds = 99;
    st.connections = 4;
    st.jemalloc_allocated_bytes = 1234;
    Llamad__V1__ServerMessage r = LLAMAD__V1__SERVER_MESSAGE__INIT;
    r.request_id = m->request_id;
    r.body_case = LLAMAD__V1__SERVER_MESSAGE__BODY_STATUS;
    r.status = &st;
    fs_send(c, &r);
    proto_client_free(m);

    m = fs_expect(c, LLAMAD__V1__CLIENT_MESSAGE__BODY_LIST_MODELS);
    Llamad__V1__ModelInfo mi[2] = {LLAMAD__V1__MODEL_INFO__INIT, LLAMAD__V1__MODEL_INFO__INIT};
    mi[0].name = "tiny";
    mi[0].path = "/m/tiny.gguf";
    mi[0].architecture = "llama";
    mi[0].quantization = "F32";
    mi[0].context_length = 512;
    mi[0].vocab_size = 512;
    mi[0].is_default = 1;
    mi[1].name = "big";
    mi[1].path = "/m/big.gguf";
    mi[1].parameter_count = 1000000;
    Llamad__V1__ModelInfo *mip[2] = {&mi[0], &mi[1]};
    Llamad__V1__ModelList ml = LLAMAD__V1__MODEL_LIST__INIT;
    ml.n_models = 2;
    ml.models = mip;
    r.request_id = m->request_id;
    r.body_case = LLAMAD__V1__SERVER_MESSAGE__BODY_MODEL_LIST;
    r.model_list = &ml;
    fs_send(c, &r);
    proto_client_free(m);
    fs_wait_eof(c);
}

static void test_info(void)
{
    sock_path("info.sock");
    fs_server *srv = fs_start(g_sock, 1, script_info, NULL);
    lc_conn *c = connect_to(g_sock, 0);
    lc_status *st = NULL;
    CHECK_EQ_INT(lc_get_status(c, &st), 0);
    CHECK_EQ_INT(st->n_loaded_models, 2);
    CHECK(strcmp(st->loaded_models[1], "big") == 0);
    CHECK(strcmp(st->default_model, "tiny") == 0);
    CHECK_EQ_INT(st->queue_depth, 3);
    CHECK_EQ_INT(st->kv_blocks_cached, 20);
    CHECK(st->tokens_per_second == 12.5);
    CHECK_EQ_INT(st->mem_allocated_bytes, 1234);
    free(st);
    lc_model_info *models = NULL;
    size_t n = 0;
    CHECK_EQ_INT(lc_list_models(c, &models, &n), 0);
    CHECK_EQ_INT(n, 2);
    CHECK(strcmp(models[0].name, "tiny") == 0 && models[0].is_default);
    CHECK(strcmp(models[0].quantization, "F32") == 0);
    CHECK_EQ_INT(models[0].context_length, 512);
    CHECK(strcmp(models[1].path, "/m/big.gguf") == 0 && !models[1].is_default);
    CHECK_EQ_INT(models[1].parameter_count, 1000000);
    CHECK(strcmp(models[1].architecture, "") == 0);
    free(models);
    lc_conn_free(c);
    fs_stop(srv);
}

int main(void)
{
    test_socket_path();
    test_connect_fails();
    test_stream();
    test_multi();
    test_error();
    test_close_midstream();
    test_toobig_and_garbage();
    test_hello_refused();
    test_fd_api_and_cancel();
    test_info();
    printf("client_lib: ok\n");
    return 0;
}
