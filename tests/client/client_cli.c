/* The llamactl binary against a scripted fake server: --json output shape (parsed with
 * jansson), exit codes 0/1/2/3, '-' stdin, --ids, Ctrl-C -> Cancel, socket resolution,
 * status/models/tokenize --json, and chat history. argv[1] is the llamactl binary. */
#include "cli_run.h"
#include "fake_server.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef Llamad__V1__ClientMessage CM;

static char g_sock[512];

static void sock_path(const char *name)
{
    snprintf(g_sock, sizeof g_sock, "%s/%s", tu_tmpdir(), name);
}

/* ---- usage: exit 2 -------------------------------------------------------------------- */

static void test_usage(void)
{
    static run_result r;
    run(&r, NULL, NULL);
    EXPECT_CODE(r, 2);
    CHECK(strstr(r.err, "Usage") != NULL);
    run(&r, NULL, "--help", NULL);
    EXPECT_CODE(r, 0);
    CHECK(strstr(r.out, "generate") != NULL && strstr(r.out, "--socket") != NULL);
    run(&r, NULL, "--version", NULL);
    EXPECT_CODE(r, 0);
    CHECK(strstr(r.out, "llamactl") != NULL);
    run(&r, NULL, "generate", "--help", NULL);
    EXPECT_CODE(r, 0);
    CHECK(strstr(r.out, "--temperature") != NULL);
    run(&r, NULL, "frobnicate", NULL);
    EXPECT_CODE(r, 2);
    run(&r, NULL, "--bogus", "status", NULL);
    EXPECT_CODE(r, 2);
    run(&r, NULL, "generate", "--bogus", "x", NULL);
    EXPECT_CODE(r, 2);
    run(&r, NULL, "generate", "one", "two", NULL);
    EXPECT_CODE(r, 2);
    run(&r, NULL, "generate", "--ids", "1,abc", NULL);
    EXPECT_CODE(r, 2);
    CHECK(strstr(r.err, "abc") != NULL);
    run(&r, NULL, "generate", "--ids", "1,-2", NULL);
    EXPECT_CODE(r, 2);
    run(&r, NULL, "generate", "--ids=-5", NULL);
    EXPECT_CODE(r, 2);
    run(&r, NULL, "generate", "--ids", "1,99999999999999999999999", NULL);
    EXPECT_CODE(r, 2);
    CHECK(strstr(r.err, "too large") != NULL);
    run(&r, NULL, "generate", "--ids", "4294967296", NULL);
    EXPECT_CODE(r, 2);
    run(&r, NULL, "generate", "--ids", "", NULL);
    EXPECT_CODE(r, 2);
    run(&r, NULL, "generate", "--ids", "1,,2", NULL);
    EXPECT_CODE(r, 2);
    run(&r, NULL, "generate", "--ids", "1,2", "also text", NULL);
    EXPECT_CODE(r, 2);
    run(&r, NULL, "generate", "--temperature", "-1", "x", NULL);
    EXPECT_CODE(r, 2);
    run(&r, NULL, "generate", "--temperature", "warm", "x", NULL);
    EXPECT_CODE(r, 2);
    run(&r, NULL, "generate", "-n", "0", "x", NULL);
    EXPECT_CODE(r, 2);
    run(&r, NULL, "generate", "--top-p", "1.5", "x", NULL);
    EXPECT_CODE(r, 2);
    run(&r, NULL, "generate", "--seed", "-1", "x", NULL);
    EXPECT_CODE(r, 2);
    run(&r, NULL, "status", "extra", NULL);
    EXPECT_CODE(r, 2);
    run(&r, NULL, "chat", "--json", NULL);
    EXPECT_CODE(r, 2);
}

/* ---- cannot connect: exit 3 ----------------------------------------------------------- */

static void test_connect_fails(void)
{
    static run_result r;
    sock_path("absent.sock");
    unlink(g_sock);
    run(&r, NULL, "--socket", g_sock, "generate", "hi", NULL);
    EXPECT_CODE(r, 3);
    CHECK_MSG(strstr(r.err, g_sock) != NULL, "the hint names the socket: %s", r.err);
    CHECK(strstr(r.err, "llamad running") != NULL);

    static char env[300];
    snprintf(env, sizeof env, "LLAMAD_SOCKET=%s/env-absent.sock", tu_tmpdir());
    run_opts o = {.env = {env}};
    run(&r, &o, "status", NULL);
    EXPECT_CODE(r, 3);
    CHECK(strstr(r.err, "env-absent.sock") != NULL);

    static char xdg[300];
    snprintf(xdg, sizeof xdg, "XDG_RUNTIME_DIR=%s/xdg", tu_tmpdir());
    run_opts o2 = {.env = {xdg}};
    run(&r, &o2, "models", NULL);
    EXPECT_CODE(r, 3);
    CHECK_MSG(strstr(r.err, "/xdg/llamad.sock") != NULL, "%s", r.err);

    /* --socket beats $LLAMAD_SOCKET */
    run(&r, &o, "--socket", g_sock, "status", NULL);
    EXPECT_CODE(r, 3);
    CHECK(strstr(r.err, "absent.sock") != NULL && strstr(r.err, "env-absent") == NULL);
}

/* ---- generate ------------------------------------------------------------------------- */

#define TRICKY "q\"uote b\\ack\nnl\ttab \x01\x1f caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"

typedef struct gen_script {
    int mode;              /* 0: stream; 1: error; 2: wait for cancel */
    const char *want_text; /* expected text prompt, or NULL */
    const uint32_t *want_ids;
    size_t n_want_ids;
    bool want_greedy;
    uint64_t gen_id;
    uint64_t cancel_target;
    bool got_cancel;
} gen_script;

static void script_generate(fs_conn *c, void *ud)
{
    gen_script *g = ud;
    fs_hello(c);
    CM *m = fs_expect(c, LLAMAD__V1__CLIENT_MESSAGE__BODY_GENERATE);
    const Llamad__V1__GenerateRequest *r = m->generate;
    g->gen_id = m->request_id;
    if (g->want_text) {
        CHECK(r->prompt_case == LLAMAD__V1__GENERATE_REQUEST__PROMPT_TEXT);
        CHECK_MSG(strcmp(r->text, g->want_text) == 0, "prompt [%s]", r->text);
    }
    if (g->want_ids) {
        CHECK(r->prompt_case == LLAMAD__V1__GENERATE_REQUEST__PROMPT_TOKENS);
        CHECK_EQ_INT(r->tokens->n_ids, g->n_want_ids);
        for (size_t i = 0; i < g->n_want_ids; i++)
            CHECK_EQ_INT(r->tokens->ids[i], g->want_ids[i]);
    }
    if (g->want_greedy) {
        CHECK(r->has_temperature_case && r->temperature == 0.0f);
        CHECK(r->has_max_tokens_case && r->max_tokens == 16);
        CHECK(r->has_top_k_case && r->top_k == 5);
        CHECK(r->has_seed_case && r->seed == 1234);
        CHECK_EQ_INT(r->n_stop, 2);
        CHECK(strcmp(r->stop[1], "END") == 0);
        CHECK(strcmp(r->model, "tiny") == 0);
    }
    uint64_t id = m->request_id;
    proto_client_free(m);
    if (g->mode == 1) {
        fs_error(c, id, LLAMAD__V1__ERROR__CODE__PROMPT_TOO_LONG, "prompt too long: 9000 tokens");
    } else if (g->mode == 2) {
        fs_chunk(c, id, (const uint32_t[]){7}, 1, "first");
        CM *k = fs_expect(c, LLAMAD__V1__CLIENT_MESSAGE__BODY_CANCEL);
        g->cancel_target = k->cancel->target_request_id;
        g->got_cancel = true;
        proto_client_free(k);
        fs_done(c, id, LLAMAD__V1__GENERATE_DONE__FINISH_REASON__CANCELLED, 3, 1);
    } else {
        fs_chunk(c, id, (const uint32_t[]){1, 450}, 2, "Hello");
        fs_chunk(c, id, NULL, 0, "");
        fs_chunk(c, id, (const uint32_t[]){4996}, 1, TRICKY);
        fs_done(c, id, LLAMAD__V1__GENERATE_DONE__FINISH_REASON__STOP, 4, 3);
    }
    fs_wait_eof(c);
}

static void test_generate_json(void)
{
    static run_result r;
    sock_path("json.sock");
    gen_script g = {.want_text = "Hello", .want_greedy = true};
    fs_server *srv = fs_start(g_sock, 1, script_generate, &g);
    run(&r, NULL, "--socket", g_sock, "generate", "Hello", "--json", "-m", "tiny", "--temperature",
        "0", "-n", "16", "--top-k", "5", "--seed", "1234", "--stop", "\n\n", "--stop", "END", NULL);
    fs_stop(srv);
    EXPECT_CODE(r, 0);
    /* one JSON object per line: 3 chunks, then the final one */
    char *save = NULL;
    int lines = 0;
    char *copy = strdup(r.out);
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_error_t e;
        json_t *j = json_loads(line, 0, &e);
        CHECK_MSG(j != NULL, "line %d is not JSON (%s): %s", lines, e.text, line);
        CHECK(json_is_object(j));
        if (lines < 3) {
            json_t *toks = json_object_get(j, "tokens");
            json_t *text = json_object_get(j, "text");
            CHECK(json_is_array(toks) && json_is_string(text));
            CHECK(json_object_get(j, "done") == NULL);
            if (lines == 0) {
                CHECK_EQ_INT(json_array_size(toks), 2);
                CHECK_EQ_INT(json_integer_value(json_array_get(toks, 1)), 450);
                CHECK(strcmp(json_string_value(text), "Hello") == 0);
            } else if (lines == 1) {
                CHECK_EQ_INT(json_array_size(toks), 0);
                CHECK(strcmp(json_string_value(text), "") == 0);
            } else {
                CHECK_EQ_INT(json_integer_value(json_array_get(toks, 0)), 4996);
                /* control characters, quotes, backslash, UTF-8: all round-trip */
                CHECK_MSG(strcmp(json_string_value(text), TRICKY) == 0, "%s", line);
            }
        } else {
            CHECK_EQ_INT(lines, 3);
            CHECK(json_is_true(json_object_get(j, "done")));
            CHECK(strcmp(json_string_value(json_object_get(j, "finish_reason")), "stop") == 0);
            CHECK_EQ_INT(json_integer_value(json_object_get(j, "prompt_tokens")), 4);
            CHECK_EQ_INT(json_integer_value(json_object_get(j, "generated_tokens")), 3);
            CHECK(strcmp(json_string_value(json_object_get(j, "seed")), "42") == 0);
            json_t *t = json_object_get(j, "timings");
            CHECK(json_is_object(t));
            CHECK(json_number_value(json_object_get(t, "total_ms")) == 120.0);
            CHECK(json_number_value(json_object_get(t, "queue_ms")) == 1.5);
            CHECK(json_number_value(json_object_get(t, "time_to_first_token_ms")) == 20.0);
        }
        json_decref(j);
        lines++;
    }
    free(copy);
    CHECK_EQ_INT(lines, 4);
    /* raw control characters never appear unescaped */
    CHECK(strchr(r.out, '\x01') == NULL && strchr(r.out, '\t') == NULL);
}

static void test_generate_text_env_socket(void)
{
    static run_result r;
    sock_path("text.sock");
    gen_script g = {.want_text = "Hi there"};
    fs_server *srv = fs_start(g_sock, 1, script_generate, &g);
    static char env[600];
    snprintf(env, sizeof env, "LLAMAD_SOCKET=%s", g_sock);
    run_opts o = {.env = {env}};
    run(&r, &o, "generate", "Hi there", NULL);
    fs_stop(srv);
    EXPECT_CODE(r, 0);
    CHECK_MSG(strcmp(r.out, "Hello" TRICKY) == 0, "stdout [%s]", r.out);
    CHECK_EQ_INT(r.err_len, 0);
}

static void test_generate_xdg_stdin(void)
{
    static run_result r;
    static char dir[300], env[320];
    snprintf(dir, sizeof dir, "%s/xdg2", tu_tmpdir());
    CHECK(mkdir(dir, 0700) == 0 || errno == EEXIST);
    snprintf(g_sock, sizeof g_sock, "%s/llamad.sock", dir);
    snprintf(env, sizeof env, "XDG_RUNTIME_DIR=%s", dir);
    gen_script g = {.want_text = "from stdin\nsecond line\n"};
    fs_server *srv = fs_start(g_sock, 1, script_generate, &g);
    run_opts o = {.env = {env}, .stdin_data = "from stdin\nsecond line\n"};
    run(&r, &o, "generate", "-", NULL);
    fs_stop(srv);
    EXPECT_CODE(r, 0);
    CHECK(strncmp(r.out, "Hello", 5) == 0);
}

static void test_generate_ids(void)
{
    static run_result r;
    sock_path("ids.sock");
    static const uint32_t ids[] = {1, 450, 4996, 0};
    gen_script g = {.want_ids = ids, .n_want_ids = 4};
    fs_server *srv = fs_start(g_sock, 1, script_generate, &g);
    run(&r, NULL, "--socket", g_sock, "generate", "--ids", "1,450, 4996,0", NULL);
    fs_stop(srv);
    EXPECT_CODE(r, 0);
}

static void test_generate_error(void)
{
    static run_result r;
    sock_path("err.sock");
    gen_script g = {.mode = 1};
    fs_server *srv = fs_start(g_sock, 1, script_generate, &g);
    run(&r, NULL, "--socket", g_sock, "generate", "x", NULL);
    fs_stop(srv);
    EXPECT_CODE(r, 1);
    CHECK_MSG(strstr(r.err, "prompt too long: 9000 tokens") != NULL, "%s", r.err);
}

static void test_sigint_cancels(void)
{
    static run_result r;
    sock_path("sigint.sock");
    gen_script g = {.mode = 2};
    fs_server *srv = fs_start(g_sock, 1, script_generate, &g);
    run_opts o = {.sigint_after = "first"};
    run(&r, &o, "--socket", g_sock, "generate", "--json", "x", NULL);
    fs_stop(srv);
    /* documented: the request is cancelled cleanly, then exit 130 */
    EXPECT_CODE(r, 130);
    CHECK(g.got_cancel);
    CHECK_EQ_INT(g.cancel_target, g.gen_id);
    /* the final object reports the cancellation */
    CHECK_MSG(strstr(r.out, "\"finish_reason\":\"cancelled\"") != NULL, "%s", r.out);
}

/* ---- status, models, tokenize --------------------------------------------------------- */

static void script_info(fs_conn *c, void *ud)
{
    (void)ud;
    fs_hello(c);
    CM *m = NULL;
    CHECK(fs_recv(c, &m) == 0);
    Llamad__V1__ServerMessage r = LLAMAD__V1__SERVER_MESSAGE__INIT;
    r.request_id = m->request_id;
    Llamad__V1__StatusReply st = LLAMAD__V1__STATUS_REPLY__INIT;
    Llamad__V1__ModelInfo mi = LLAMAD__V1__MODEL_INFO__INIT;
    Llamad__V1__ModelInfo *mip[1] = {&mi};
    Llamad__V1__ModelList ml = LLAMAD__V1__MODEL_LIST__INIT;
    Llamad__V1__TokenizeReply tr = LLAMAD__V1__TOKENIZE_REPLY__INIT;
    uint32_t ids[] = {1, 15043};
    char *loaded[] = {"tiny"};
    switch (m->body_case) {
    case LLAMAD__V1__CLIENT_MESSAGE__BODY_STATUS:
        st.n_loaded_models = 1;
        st.loaded_models = loaded;
        st.default_model = "tiny";
        st.kv_blocks_total = 64;
        st.kv_blocks_used = 3;
        st.kv_block_size = 16;
        st.running_sequences = 1;
        r.body_case = LLAMAD__V1__SERVER_MESSAGE__BODY_STATUS;
        r.status = &st;
        break;
    case LLAMAD__V1__CLIENT_MESSAGE__BODY_LIST_MODELS:
        mi.name = "tiny";
        mi.path = "/models/tiny.gguf";
        mi.is_default = 1;
        mi.context_length = 512;
        ml.n_models = 1;
        ml.models = mip;
        r.body_case = LLAMAD__V1__SERVER_MESSAGE__BODY_MODEL_LIST;
        r.model_list = &ml;
        break;
    case LLAMAD__V1__CLIENT_MESSAGE__BODY_TOKENIZE:
        CHECK(strcmp(m->tokenize->text, "Hello") == 0);
        tr.n_token_ids = 2;
        tr.token_ids = ids;
        r.body_case = LLAMAD__V1__SERVER_MESSAGE__BODY_TOKENIZE;
        r.tokenize = &tr;
        break;
    default:
        CHECK_MSG(0, "unexpected request %d", (int)m->body_case);
    }
    fs_send(c, &r);
    proto_client_free(m);
    fs_wait_eof(c);
}

static json_t *parse_one(const char *out)
{
    json_error_t e;
    json_t *j = json_loads(out, 0, &e);
    CHECK_MSG(j != NULL, "not one JSON value (%s): %s", e.text, out);
    return j;
}

static void test_info_json(void)
{
    static run_result r;
    sock_path("info.sock");
    fs_server *srv = fs_start(g_sock, 5, script_info, NULL);
    run(&r, NULL, "--socket", g_sock, "status", "--json", NULL);
    EXPECT_CODE(r, 0);
    json_t *j = parse_one(r.out);
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "kv_blocks_total")), 64);
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "running_sequences")), 1);
    CHECK(strcmp(json_string_value(json_object_get(j, "default_model")), "tiny") == 0);
    json_decref(j);

    run(&r, NULL, "--socket", g_sock, "models", "--json", NULL);
    EXPECT_CODE(r, 0);
    j = parse_one(r.out);
    json_t *models = json_object_get(j, "models");
    CHECK(json_is_array(models) && json_array_size(models) == 1);
    json_t *m0 = json_array_get(models, 0);
    CHECK(strcmp(json_string_value(json_object_get(m0, "name")), "tiny") == 0);
    CHECK(json_is_true(json_object_get(m0, "default")));
    CHECK_EQ_INT(json_integer_value(json_object_get(m0, "context_length")), 512);
    json_decref(j);

    run(&r, NULL, "--socket", g_sock, "tokenize", "--json", "Hello", NULL);
    EXPECT_CODE(r, 0);
    j = parse_one(r.out);
    json_t *t = json_object_get(j, "tokens");
    CHECK(json_is_array(t) && json_array_size(t) == 2);
    CHECK_EQ_INT(json_integer_value(json_array_get(t, 1)), 15043);
    json_decref(j);

    /* plain forms */
    run(&r, NULL, "--socket", g_sock, "tokenize", "Hello", NULL);
    EXPECT_CODE(r, 0);
    CHECK(strcmp(r.out, "1,15043\n") == 0);
    run(&r, NULL, "--socket", g_sock, "models", NULL);
    EXPECT_CODE(r, 0);
    CHECK(strstr(r.out, "tiny (default)") != NULL);
    fs_stop(srv);
}

/* ---- chat ----------------------------------------------------------------------------- */

static void script_chat(fs_conn *c, void *ud)
{
    (void)ud;
    fs_hello(c);
    CM *m = fs_expect(c, LLAMAD__V1__CLIENT_MESSAGE__BODY_GENERATE);
    CHECK(m->generate->prompt_case == LLAMAD__V1__GENERATE_REQUEST__PROMPT_CHAT);
    Llamad__V1__ChatPrompt *ch = m->generate->chat;
    CHECK_EQ_INT(ch->n_messages, 2);
    CHECK(strcmp(ch->messages[0]->role, "system") == 0);
    CHECK(strcmp(ch->messages[0]->content, "Be terse.") == 0);
    CHECK(strcmp(ch->messages[1]->role, "user") == 0);
    CHECK(strcmp(ch->messages[1]->content, "hi") == 0);
    fs_chunk(c, m->request_id, (const uint32_t[]){5}, 1, "Hel");
    fs_chunk(c, m->request_id, (const uint32_t[]){6}, 1, "lo!");
    fs_done(c, m->request_id, LLAMAD__V1__GENERATE_DONE__FINISH_REASON__STOP, 9, 2);
    proto_client_free(m);

    m = fs_expect(c, LLAMAD__V1__CLIENT_MESSAGE__BODY_GENERATE);
    ch = m->generate->chat;
    CHECK_EQ_INT(ch->n_messages, 4); /* the client keeps the history */
    CHECK(strcmp(ch->messages[2]->role, "assistant") == 0);
    CHECK(strcmp(ch->messages[2]->content, "Hello!") == 0);
    CHECK(strcmp(ch->messages[3]->content, "how are you?") == 0);
    fs_chunk(c, m->request_id, (const uint32_t[]){7}, 1, "Fine.");
    fs_done(c, m->request_id, LLAMAD__V1__GENERATE_DONE__FINISH_REASON__STOP, 20, 1);
    proto_client_free(m);
    fs_wait_eof(c);
}

static void test_chat(void)
{
    static run_result r;
    sock_path("chat.sock");
    fs_server *srv = fs_start(g_sock, 1, script_chat, NULL);
    run_opts o = {.stdin_data = "hi\n\nhow are you?\n"};
    run(&r, &o, "--socket", g_sock, "chat", "--system", "Be terse.", "--temperature", "0", NULL);
    fs_stop(srv);
    EXPECT_CODE(r, 0);
    CHECK_MSG(strcmp(r.out, "Hello!\nFine.\n") == 0, "stdout [%s]", r.out);
}

static void test_chat_error(void)
{
    static run_result r;
    sock_path("chaterr.sock");
    gen_script g = {.mode = 1};
    fs_server *srv = fs_start(g_sock, 1, script_generate, &g);
    run_opts o = {.stdin_data = "hi\n"};
    run(&r, &o, "--socket", g_sock, "chat", NULL);
    fs_stop(srv);
    EXPECT_CODE(r, 1);
    CHECK_EQ_INT(r.out_len, 0);
    CHECK(strstr(r.err, "prompt too long") != NULL);
}

int main(int argc, char **argv)
{
    CHECK_MSG(argc == 2, "usage: client_cli PATH-TO-LLAMACTL");
    g_llamactl = argv[1];
    signal(SIGPIPE, SIG_IGN);
    test_usage();
    test_connect_fails();
    test_generate_json();
    test_generate_text_env_socket();
    test_generate_xdg_stdin();
    test_generate_ids();
    test_generate_error();
    test_sigint_cancels();
    test_info_json();
    test_chat();
    test_chat_error();
    printf("client_cli: ok\n");
    return 0;
}
