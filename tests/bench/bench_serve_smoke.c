/* Smoke test of bench_serve and bench_prefix (issue 9): each runs against the build's llamad
 * with TinyStories-656K and tiny settings, exits 0 and writes JSON with the expected keys.
 * No timing is asserted (timings are not pass/fail material on a shared machine); what is
 * asserted is that every request was served and counted, and that the warm shared-prefix
 * requests were served from the prefix cache.
 * usage: test_bench_serve_smoke BENCH_SERVE BENCH_PREFIX LLAMAD */
#include <jansson.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "testutil.h"

extern char **environ;

static int run(const char *const *argv)
{
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], NULL, NULL, (char *const *)argv, environ);
    CHECK_MSG(rc == 0, "cannot run %s: %s", argv[0], strerror(rc));
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static json_t *load(const char *path)
{
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    CHECK_MSG(j != NULL, "%s: invalid JSON: %s (line %d)", path, e.text, e.line);
    CHECK(json_is_object(j));
    return j;
}

static double num(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    CHECK_MSG(v != NULL && json_is_number(v), "key '%s' missing or not a number", key);
    return json_number_value(v);
}

/* a percentile or rate: a number, or null when there was nothing to measure */
static void num_or_null(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    CHECK_MSG(v != NULL && (json_is_number(v) || json_is_null(v)), "key '%s' missing", key);
}

int main(int argc, char **argv)
{
    CHECK_MSG(argc == 4, "usage: %s BENCH_SERVE BENCH_PREFIX LLAMAD", argv[0]);
    const char *model = tu_shared("models/TinyStories-656K-Q8_0.gguf");
    char out[4096], out2[4096];
    snprintf(out, sizeof out, "%s/serve.json", tu_tmpdir());
    snprintf(out2, sizeof out2, "%s/prefix.json", tu_tmpdir());

    const char *a1[] = {argv[1], model, "--llamad", argv[3], "--clients", "1,2", "--prompt-tokens", "16",
                        "--gen-tokens", "8", "--kv-cache-mib", "16", "--max-seqs", "4",
                        "--max-batch-tokens", "64", "--threads", "1", "--json", out, "--quiet", NULL};
    CHECK_EQ_INT(run(a1), 0);
    json_t *j = load(out);
    CHECK(strcmp(json_string_value(json_object_get(j, "bench")), "concurrent") == 0);
    CHECK_EQ_INT((int)num(j, "prompt_tokens"), 16);
    CHECK_EQ_INT((int)num(j, "gen_tokens"), 8);
    CHECK_EQ_INT((int)num(j, "vocab_size"), 2048);
    const json_t *runs = json_object_get(j, "runs");
    CHECK(json_is_array(runs));
    CHECK_EQ_INT((int)json_array_size(runs), 2);
    for (size_t i = 0; i < 2; i++) {
        const json_t *r = json_array_get(runs, i);
        int clients = (int)num(r, "clients");
        CHECK_EQ_INT(clients, i == 0 ? 1 : 2);
        CHECK_EQ_INT((int)num(r, "failed"), 0);
        CHECK_EQ_INT((int)num(r, "prompt_tokens"), 16 * clients);
        int gen = (int)num(r, "generated_tokens");
        CHECK_MSG(gen >= 0 && gen <= 8 * clients, "generated_tokens %d", gen);
        CHECK_EQ_INT((int)num(r, "finish_length") + (int)num(r, "finish_stop"), clients);
        /* every stream that ran to max_tokens generated exactly 8 */
        CHECK_MSG(gen >= 8 * (int)num(r, "finish_length"), "generated %d", gen);
        CHECK(num(r, "wall_s") > 0);
        CHECK(num(r, "aggregate_tok_s") >= 0);
        CHECK(num(r, "chunks") <= gen);
        const char *keys[] = {"ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms", "decode_tok_s",
                              "server_ttft_p50_ms"};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) num_or_null(r, keys[k]);
        CHECK(num(r, "ttft_p50_ms") <= num(r, "ttft_p99_ms"));
    }
    json_decref(j);

    const char *a2[] = {argv[2], model, "--llamad", argv[3], "--prefix-tokens", "64", "--suffix-tokens", "4",
                        "--requests", "4", "--cold-requests", "2", "--prefix-gen", "2", "--kv-cache-mib",
                        "16", "--max-seqs", "4", "--max-batch-tokens", "64", "--block-size", "16",
                        "--threads", "1", "--json", out2, "--quiet", NULL};
    CHECK_EQ_INT(run(a2), 0);
    j = load(out2);
    CHECK(strcmp(json_string_value(json_object_get(j, "bench")), "prefix") == 0);
    CHECK_EQ_INT((int)num(j, "prefix_tokens"), 64);
    CHECK_EQ_INT((int)num(j, "requests"), 4);
    CHECK_EQ_INT((int)num(j, "failed"), 0);
    CHECK(num(j, "ttft_cold_p50_ms") > 0);
    CHECK(num(j, "ttft_warm_p50_ms") > 0);
    CHECK(num(j, "ttft_warm_concurrent_p50_ms") > 0);
    num(j, "warm_cold_ratio");
    /* warm requests reuse the 64-token system prompt: 4 full blocks of 16 out of 68 tokens */
    CHECK_MSG(num(j, "cached_fraction_warm") >= 64.0 / 68.0 - 1e-9, "cached_fraction_warm %g",
              num(j, "cached_fraction_warm"));
    CHECK_MSG(num(j, "cached_fraction_warm_concurrent") >= 64.0 / 68.0 - 1e-9, "%g",
              num(j, "cached_fraction_warm_concurrent"));
    double hr = num(j, "prefix_cache_hit_rate");
    CHECK_MSG(hr > 0 && hr <= 1, "hit rate %g", hr);
    json_decref(j);
    remove(out);
    remove(out2);
    printf("ok\n");
    return 0;
}
