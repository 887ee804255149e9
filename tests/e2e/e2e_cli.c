/* The real llamactl binary against the real llamad (stories260K): generate --json parsed with
 * jansson and checked against the greedy reference vector, status/models/tokenize --json,
 * Ctrl-C mid-stream (cancelled, exit 130, the daemon's KV blocks freed), and exit status 3
 * once the daemon is gone. argv: LLAMAD LLAMACTL. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli_run.h"
#include "dh.h"
#include "testutil.h"

static dh_daemon d;

static json_t *parse_one(const char *out)
{
    json_error_t e;
    json_t *j = json_loads(out, 0, &e);
    CHECK_MSG(j != NULL, "not one JSON value (%s): %s", e.text, out);
    return j;
}

/* One JSON object per chunk, then a final one with "done": true. Returns the final object;
 * the token ids of the chunks go to ids. */
static json_t *gen_lines(const char *out, uint32_t *ids, int cap, int *ret_n, char *text, size_t tcap)
{
    char *copy = strdup(out), *save = NULL;
    CHECK(copy != NULL);
    json_t *fin = NULL;
    int n = 0;
    text[0] = '\0';
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        CHECK_MSG(fin == NULL, "a line after the final object: %s", line);
        json_t *j = parse_one(line);
        if (json_is_true(json_object_get(j, "done"))) {
            fin = j;
            continue;
        }
        json_t *toks = json_object_get(j, "tokens");
        CHECK_MSG(json_is_array(toks), "a chunk without tokens: %s", line);
        for (size_t k = 0; k < json_array_size(toks); k++) {
            CHECK(n < cap);
            ids[n++] = (uint32_t)json_integer_value(json_array_get(toks, k));
        }
        const char *t = json_string_value(json_object_get(j, "text"));
        CHECK(t != NULL && strlen(text) + strlen(t) < tcap);
        strcat(text, t);
        json_decref(j);
    }
    free(copy);
    CHECK_MSG(fin != NULL, "no final object in: %s", out);
    *ret_n = n;
    return fin;
}

static json_t *status_json(void)
{
    static run_result r;
    run(&r, NULL, "--socket", d.sock, "status", "--json", NULL);
    EXPECT_CODE(r, 0);
    return parse_one(r.out);
}

int main(int argc, char **argv)
{
    CHECK_MSG(argc == 3, "usage: e2e_cli LLAMAD LLAMACTL");
    g_llamactl = argv[2];
    signal(SIGPIPE, SIG_IGN);
    static char model[4200];
    snprintf(model, sizeof model, "tiny=%s", tu_shared("models/stories260K.gguf"));
    const char *args[] = {"--model", model, "--threads", "1", "--kv-cache-mib", "8", "--max-tokens", "100000", NULL};
    dh_sock_path(d.sock, sizeof d.sock, "e2e.sock");
    dh_start(&d, argv[1], args);
    static run_result r;

    /* generate --ids 1 --temperature 0 --json: the greedy reference vector, token for token */
    json_t *v = tu_load_json("testvectors/stories260K_greedy.json");
    json_t *want = json_object_get(v, "generated_ids");
    run(&r, NULL, "--socket", d.sock, "generate", "--ids", "1", "-n", "64", "--temperature", "0", "--json", NULL);
    EXPECT_CODE(r, 0);
    static uint32_t ids[4096];
    static char text[65536];
    int n = 0;
    json_t *fin = gen_lines(r.out, ids, 4096, &n, text, sizeof text);
    CHECK_EQ_INT(n, 64);
    for (int i = 0; i < n; i++)
        CHECK_MSG((json_int_t)ids[i] == json_integer_value(json_array_get(want, (size_t)i)), "token %d: %u", i,
                  ids[i]);
    CHECK(strcmp(json_string_value(json_object_get(fin, "finish_reason")), "length") == 0);
    CHECK_EQ_INT(json_integer_value(json_object_get(fin, "generated_tokens")), 64);
    CHECK_EQ_INT(json_integer_value(json_object_get(fin, "prompt_tokens")), 1);
    json_decref(fin);
    json_decref(v);

    /* a text prompt with a seed: the same output twice */
    static char text2[65536];
    run(&r, NULL, "--socket", d.sock, "generate", "Once upon a time", "-n", "24", "--temperature", "0.8", "--seed",
        "7", "--json", NULL);
    EXPECT_CODE(r, 0);
    json_decref(gen_lines(r.out, ids, 4096, &n, text, sizeof text));
    run(&r, NULL, "--socket", d.sock, "generate", "Once upon a time", "-n", "24", "--temperature", "0.8", "--seed",
        "7", "--json", NULL);
    EXPECT_CODE(r, 0);
    json_decref(gen_lines(r.out, ids, 4096, &n, text2, sizeof text2));
    CHECK_MSG(strcmp(text, text2) == 0, "[%s] vs [%s]", text, text2);

    /* status, models, tokenize --json */
    json_t *st = status_json();
    CHECK(strcmp(json_string_value(json_object_get(st, "default_model")), "tiny") == 0);
    CHECK(json_integer_value(json_object_get(st, "kv_blocks_total")) > 0);
    CHECK_EQ_INT(json_integer_value(json_object_get(st, "kv_blocks_used")), 0);
    json_decref(st);
    run(&r, NULL, "--socket", d.sock, "models", "--json", NULL);
    EXPECT_CODE(r, 0);
    json_t *j = parse_one(r.out);
    json_t *m0 = json_array_get(json_object_get(j, "models"), 0);
    CHECK(strcmp(json_string_value(json_object_get(m0, "name")), "tiny") == 0);
    CHECK_EQ_INT(json_integer_value(json_object_get(m0, "vocab_size")), 512);
    CHECK_EQ_INT(json_array_size(json_object_get(j, "models")), 1);
    json_decref(j);
    run(&r, NULL, "--socket", d.sock, "tokenize", "--json", "Once upon a time", NULL);
    EXPECT_CODE(r, 0);
    j = parse_one(r.out);
    json_t *toks = json_object_get(j, "tokens");
    CHECK_MSG(json_is_array(toks) && json_array_size(toks) >= 2, "%s", r.out);
    CHECK_EQ_INT(json_integer_value(json_array_get(toks, 0)), 1); /* BOS */
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "count")), (long long)json_array_size(toks));
    json_decref(j);
    /* the same text through generate --json reports that many prompt tokens */
    run(&r, NULL, "--socket", d.sock, "generate", "Once upon a time", "-n", "1", "--json", NULL);
    EXPECT_CODE(r, 0);
    fin = gen_lines(r.out, ids, 4096, &n, text, sizeof text);
    CHECK_EQ_INT(json_integer_value(json_object_get(fin, "prompt_tokens")), 5);
    json_decref(fin);

    /* Ctrl-C mid-stream: the final object says cancelled, exit 130, and the daemon's blocks are free */
    run_opts oi = {.sigint_after = "\"tokens\""};
    run(&r, &oi, "--socket", d.sock, "generate", "Once upon a time", "-n", "2000", "--json", NULL);
    EXPECT_CODE(r, 130);
    fin = gen_lines(r.out, ids, 4096, &n, text, sizeof text);
    CHECK_MSG(strcmp(json_string_value(json_object_get(fin, "finish_reason")), "cancelled") == 0, "%s", r.out);
    CHECK(n < 2000);
    json_decref(fin);
    for (int i = 0;; i++) {
        st = status_json();
        json_int_t used = json_integer_value(json_object_get(st, "kv_blocks_used"));
        json_int_t running = json_integer_value(json_object_get(st, "running_sequences"));
        json_decref(st);
        if (used == 0 && running == 0) break;
        CHECK_MSG(i < 500, "the daemon still holds %lld blocks after the cancel", (long long)used);
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }

    /* the daemon stops: llamactl cannot connect, exit 3 */
    CHECK_EQ_INT(dh_stop(&d), 0);
    run(&r, NULL, "--socket", d.sock, "status", "--json", NULL);
    EXPECT_CODE(r, 3);
    run(&r, NULL, "--socket", d.sock, "generate", "hello", NULL);
    EXPECT_CODE(r, 3);
    printf("e2e_cli: ok\n");
    return 0;
}
