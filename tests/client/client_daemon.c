/* llamactl and libllamactl against the real llamad with a real model (stories260K).
 * argv[1] is llamad, argv[2] llamactl. Built only when the daemon is part of the build. */
#include "cli_run.h"
#include "llamactl.h"
#include "testutil.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char g_sock[512];
static pid_t g_daemon;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Whatever way the test ends (tu_fail exits), the daemon goes with it. */
static void kill_daemon(void)
{
    if (g_daemon > 0) {
        kill(g_daemon, SIGKILL);
        waitpid(g_daemon, NULL, 0);
        g_daemon = 0;
    }
}

static void start_daemon(const char *llamad)
{
    snprintf(g_sock, sizeof g_sock, "%s/llamad.sock", tu_tmpdir());
    static char conf[600], model[4200];
    snprintf(conf, sizeof conf, "%s/empty.conf", tu_tmpdir());
    FILE *f = fopen(conf, "w");
    CHECK(f != NULL);
    fclose(f);
    snprintf(model, sizeof model, "tiny=%s", tu_shared("models/stories260K.gguf"));
    g_daemon = fork();
    CHECK(g_daemon >= 0);
    if (g_daemon == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execl(llamad, llamad, "--config", conf, "--socket", g_sock, "--model", model,
              "--kv-cache-mib", "16", "--threads", "1", "--max-tokens", "4096", "--log-level",
              "warn", (char *)NULL);
        _exit(127);
    }
    atexit(kill_daemon);
    /* ready when it answers Hello (bounded: 30 s) */
    for (int i = 0; i < 3000; i++) {
        int st;
        CHECK_MSG(waitpid(g_daemon, &st, WNOHANG) == 0, "llamad exited during start-up");
        lc_options opt = {.socket_path = g_sock, .timeout_ms = 20000};
        lc_conn *c = lc_conn_new(&opt);
        CHECK(c != NULL);
        int rc = lc_conn_connect(c);
        lc_conn_free(c);
        if (rc == 0) return;
        sleep_ms(10);
    }
    tu_fail(__FILE__, __LINE__, "llamad did not answer on %s within 30 s", g_sock);
}

static void stop_daemon(void)
{
    CHECK(kill(g_daemon, SIGTERM) == 0);
    int st;
    CHECK(waitpid(g_daemon, &st, 0) == g_daemon);
    g_daemon = 0;
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "llamad ended with status %d", st);
}

static json_t *parse_one(const char *out)
{
    json_error_t e;
    json_t *j = json_loads(out, 0, &e);
    CHECK_MSG(j != NULL, "not one JSON value (%s): %s", e.text, out);
    return j;
}

/* Text and final object of a --json generate run. */
static void gen_json(const char *out, char *text, size_t cap, json_t **ret_final)
{
    text[0] = '\0';
    *ret_final = NULL;
    char *copy = strdup(out), *save = NULL;
    CHECK(copy != NULL);
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        CHECK_MSG(*ret_final == NULL, "a line after the final object: %s", line);
        json_t *j = parse_one(line);
        if (json_is_true(json_object_get(j, "done"))) {
            *ret_final = j;
            continue;
        }
        CHECK(json_is_array(json_object_get(j, "tokens")));
        const char *t = json_string_value(json_object_get(j, "text"));
        CHECK(t != NULL);
        CHECK(strlen(text) + strlen(t) < cap);
        strcat(text, t);
        json_decref(j);
    }
    free(copy);
    CHECK_MSG(*ret_final != NULL, "no final object in: %s", out);
}

static void test_cli(void)
{
    static run_result r;
    run(&r, NULL, "--socket", g_sock, "status", "--json", NULL);
    EXPECT_CODE(r, 0);
    json_t *j = parse_one(r.out);
    CHECK(strcmp(json_string_value(json_object_get(j, "default_model")), "tiny") == 0);
    CHECK(json_integer_value(json_object_get(j, "kv_blocks_total")) > 0);
    json_decref(j);

    run(&r, NULL, "--socket", g_sock, "models", "--json", NULL);
    EXPECT_CODE(r, 0);
    j = parse_one(r.out);
    json_t *m0 = json_array_get(json_object_get(j, "models"), 0);
    CHECK(strcmp(json_string_value(json_object_get(m0, "name")), "tiny") == 0);
    CHECK(json_is_true(json_object_get(m0, "default")));
    CHECK_EQ_INT(json_integer_value(json_object_get(m0, "vocab_size")), 512);
    json_decref(j);

    /* tokenize: the ids, BOS first; generate from the text and from those ids agree */
    run(&r, NULL, "--socket", g_sock, "tokenize", "Once upon a time", NULL);
    EXPECT_CODE(r, 0);
    CHECK_MSG(strncmp(r.out, "1,", 2) == 0, "BOS first: %s", r.out);
    static char ids[256];
    CHECK_MSG(snprintf(ids, sizeof ids, "%s", r.out) < (int)sizeof ids, "ids: %s", r.out);
    ids[strcspn(ids, "\n")] = '\0';

    static char text1[8192], text2[8192], text3[8192];
    json_t *fin;
    run(&r, NULL, "--socket", g_sock, "generate", "Once upon a time", "-n", "24", "--temperature",
        "0", "--json", NULL);
    EXPECT_CODE(r, 0);
    gen_json(r.out, text1, sizeof text1, &fin);
    CHECK(strcmp(json_string_value(json_object_get(fin, "finish_reason")), "length") == 0 ||
          strcmp(json_string_value(json_object_get(fin, "finish_reason")), "stop") == 0);
    CHECK(json_integer_value(json_object_get(fin, "generated_tokens")) >= 1);
    CHECK(json_integer_value(json_object_get(fin, "prompt_tokens")) >= 2);
    CHECK(json_is_object(json_object_get(fin, "timings")));
    json_decref(fin);
    CHECK(text1[0] != '\0');

    run(&r, NULL, "--socket", g_sock, "generate", "--ids", ids, "-n", "24", "--temperature", "0",
        "--json", NULL);
    EXPECT_CODE(r, 0);
    gen_json(r.out, text2, sizeof text2, &fin);
    json_decref(fin);
    CHECK_MSG(strcmp(text1, text2) == 0, "text prompt: [%s]\nids prompt: [%s]", text1, text2);

    /* plain text output, prompt from stdin: the same greedy text */
    run_opts o = {.stdin_data = "Once upon a time"};
    run(&r, &o, "--socket", g_sock, "generate", "-", "-n", "24", "--temperature", "0", NULL);
    EXPECT_CODE(r, 0);
    CHECK(snprintf(text3, sizeof text3, "%s", r.out) < (int)sizeof text3);
    CHECK_MSG(strcmp(text1, text3) == 0, "json: [%s]\ntext: [%s]", text1, text3);

    /* errors from the daemon: exit 1 with its message */
    run(&r, NULL, "--socket", g_sock, "generate", "-m", "nope", "x", NULL);
    EXPECT_CODE(r, 1);
    CHECK(strstr(r.err, "nope") != NULL);
    run(&r, NULL, "--socket", g_sock, "generate", "--ids", "1,99999", NULL);
    EXPECT_CODE(r, 1);

    /* Ctrl-C while it streams: Cancel, the final object says cancelled, exit 130 */
    run_opts oi = {.sigint_after = "\"tokens\""};
    run(&r, &oi, "--socket", g_sock, "generate", "Once upon a time", "-n", "4000", "--json", NULL);
    EXPECT_CODE(r, 130);
    CHECK_MSG(strstr(r.out, "\"finish_reason\":\"cancelled\"") != NULL, "%s", r.out);
}

/* Several requests on one connection through libllamactl: greedy results equal the CLI's. */
typedef struct acc {
    char text[8192];
    int done;
    lc_finish finish;
} acc;

static void on_event(lc_conn *c, const lc_event *ev, void *ud)
{
    (void)c;
    acc *a = ud;
    if (ev->type == LC_EVENT_CHUNK) {
        CHECK(strlen(a->text) + ev->u.chunk.text_len < sizeof a->text);
        strcat(a->text, ev->u.chunk.text);
    } else if (ev->type == LC_EVENT_DONE) {
        a->done++;
        a->finish = ev->u.done.finish;
    } else {
        CHECK_MSG(0, "unexpected event %d: %s", (int)ev->type,
                  ev->type == LC_EVENT_ERROR ? ev->u.error.message : "");
    }
}

static void test_lib_concurrent(void)
{
    lc_options opt = {.socket_path = g_sock, .timeout_ms = 20000};
    lc_conn *c = lc_conn_new(&opt);
    CHECK(c != NULL);
    CHECK_EQ_INT(lc_conn_connect(c), 0);
    enum { N = 6 };
    static acc a[N];
    uint64_t ids[N];
    for (int i = 0; i < N; i++) {
        lc_generate_params p;
        lc_generate_params_init(&p);
        p.prompt = "Once upon a time";
        p.max_tokens = 24;
        if (i % 2 == 0) {
            p.temperature = 0.0f;
        } else {
            p.seed = 1000 + (uint64_t)i;
            p.has_seed = true;
        }
        CHECK_EQ_INT(lc_submit_generate(c, &p, on_event, &a[i], &ids[i]), 0);
    }
    CHECK_EQ_INT(lc_conn_in_flight(c), N);
    for (int i = 0; i < N; i++)
        CHECK_EQ_INT(lc_wait_request(c, ids[i], 60000), 0);
    for (int i = 0; i < N; i += 2) {
        CHECK_EQ_INT(a[i].done, 1);
        CHECK_MSG(strcmp(a[i].text, a[0].text) == 0, "greedy results differ");
    }
    uint32_t *toks = NULL;
    size_t n = 0;
    CHECK_EQ_INT(lc_tokenize(c, NULL, "Once upon a time", 0, &toks, &n), 0);
    CHECK(n >= 2 && toks[0] == 1);
    char *text = NULL;
    CHECK_EQ_INT(lc_detokenize(c, NULL, toks + 1, n - 1, &text, NULL), 0);
    CHECK_MSG(strstr(text, "Once upon a time") != NULL, "detokenized: [%s]", text);
    free(text);
    free(toks);
    lc_conn_free(c);
}

int main(int argc, char **argv)
{
    CHECK_MSG(argc == 3, "usage: client_daemon LLAMAD LLAMACTL");
    g_llamactl = argv[2];
    signal(SIGPIPE, SIG_IGN);
    start_daemon(argv[1]);
    test_cli();
    test_lib_concurrent();
    stop_daemon();
    printf("client_daemon: ok\n");
    return 0;
}
