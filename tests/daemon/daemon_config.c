/* llamad's configuration: defaults, every key in a file and as a flag, flags over the file,
 * range checks, unknown keys with file:line, syntax errors, --help/--version/--check-config. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "testutil.h"

static const char *write_file(const char *name, const char *text)
{
    static char path[8][512];
    static int next;
    char *p = path[next++ % 8];
    snprintf(p, 512, "%s/%s", tu_tmpdir(), name);
    FILE *f = fopen(p, "w");
    CHECK(f != NULL);
    fputs(text, f);
    fclose(f);
    return p;
}

/* Runs srv_config_from_args on a NULL-terminated list of arguments. */
static int run_args(srv_config *cfg, enum srv_config_action *act, char *err, size_t errlen, const char **args)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = "llamad";
    for (int i = 0; args[i]; i++) argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    srv_config_init(cfg);
    err[0] = '\0';
    return srv_config_from_args(cfg, argc, argv, act, err, errlen);
}

static void expect_error(const char **args, const char *needle)
{
    srv_config cfg;
    enum srv_config_action act;
    char err[512];
    int rc = run_args(&cfg, &act, err, sizeof err, args);
    CHECK_MSG(rc == -EINVAL, "expected an error containing '%s', got rc %d", needle, rc);
    CHECK_MSG(strstr(err, needle) != NULL, "error '%s' does not contain '%s'", err, needle);
    srv_config_free(&cfg);
}

static void test_defaults(void)
{
    srv_config cfg;
    srv_config_init(&cfg);
    CHECK_EQ_INT(cfg.kv_cache_mib, 256);
    CHECK_EQ_INT(cfg.block_size, 16);
    CHECK(!cfg.kv_f32); /* f16 by default */
    CHECK_EQ_INT(cfg.max_frame_bytes, 1 << 20);
    CHECK_EQ_INT(cfg.timeout_s, 600);
    CHECK_EQ_INT(cfg.n_models, 0);
    CHECK_EQ_INT(cfg.log_level, SRV_LOG_INFO);
    char err[256];
    CHECK(srv_config_validate(&cfg, err, sizeof err) == -EINVAL); /* no model */
    CHECK(strstr(err, "no model") != NULL);
    srv_config_free(&cfg);
}

static void test_every_key(void)
{
    const char *file = write_file("all.conf",
                                  "# every key\n"
                                  "socket = /tmp/x.sock\n"
                                  "socket-group = root\n"
                                  "model = tiny=/m/tiny.gguf\n"
                                  "model = /m/other-model.gguf\n"
                                  "models-dir = /m\n"
                                  "threads = 3\n"
                                  "kv-cache-mib = 512\n"
                                  "block-size = 32\n"
                                  "kv-type = f32\n"
                                  "max-seqs = 8\n"
                                  "max-batch-tokens = 1024\n"
                                  "max-queue = 9\n"
                                  "max-connections = 10\n"
                                  "max-frame-bytes = 65536\n"
                                  "max-prompt-tokens = 1000\n"
                                  "max-tokens = 77\n"
                                  "max-requests-per-connection = 5\n"
                                  "timeout-s = 0\n"
                                  "grace-s = 3\n"
                                  "log-level = debug\n"
                                  "log-file = /tmp/llamad.log\n"
                                  "allow-uids = 0, 1000\n"
                                  "allow-gids = root,7\n"
                                  "\n"
                                  "[llamad]\n"
                                  "; a section named llamad is fine too\n");
    srv_config cfg;
    enum srv_config_action act;
    char err[512];
    const char *args[] = {"--config", file, NULL};
    CHECK_MSG(run_args(&cfg, &act, err, sizeof err, args) == 0, "%s", err);
    CHECK_EQ_INT(act, SRV_CONFIG_RUN);
    CHECK(strcmp(cfg.config_path, file) == 0);
    CHECK(strcmp(cfg.socket_path, "/tmp/x.sock") == 0);
    CHECK(strcmp(cfg.socket_group, "root") == 0);
    CHECK_EQ_INT(cfg.n_models, 2);
    CHECK(strcmp(cfg.models[0].name, "tiny") == 0 && strcmp(cfg.models[0].path, "/m/tiny.gguf") == 0);
    CHECK(strcmp(cfg.models[1].name, "other-model") == 0);
    CHECK(strcmp(cfg.models_dir, "/m") == 0);
    CHECK_EQ_INT(cfg.threads, 3);
    CHECK_EQ_INT(cfg.kv_cache_mib, 512);
    CHECK_EQ_INT(cfg.block_size, 32);
    CHECK(cfg.kv_f32);
    CHECK_EQ_INT(cfg.max_seqs, 8);
    CHECK_EQ_INT(cfg.max_batch_tokens, 1024);
    CHECK_EQ_INT(cfg.max_queue, 9);
    CHECK_EQ_INT(cfg.max_connections, 10);
    CHECK_EQ_INT(cfg.max_frame_bytes, 65536);
    CHECK_EQ_INT(cfg.max_prompt_tokens, 1000);
    CHECK_EQ_INT(cfg.max_tokens, 77);
    CHECK_EQ_INT(cfg.max_requests_per_connection, 5);
    CHECK_EQ_INT(cfg.timeout_s, 0);
    CHECK_EQ_INT(cfg.grace_s, 3);
    CHECK_EQ_INT(cfg.log_level, SRV_LOG_DEBUG);
    CHECK(strcmp(cfg.log_file, "/tmp/llamad.log") == 0);
    CHECK_EQ_INT(cfg.n_allow_uids, 2);
    CHECK_EQ_INT(cfg.allow_uids[1], 1000);
    CHECK_EQ_INT(cfg.n_allow_gids, 2);
    CHECK_EQ_INT(cfg.allow_gids[0], 0);
    CHECK_EQ_INT(cfg.allow_gids[1], 7);
    CHECK(srv_config_validate(&cfg, err, sizeof err) == 0);
    srv_config_free(&cfg);

    /* the same keys as flags, over the file */
    const char *args2[] = {"--config", file, "--socket", "/tmp/y.sock", "--model", "a=/a.gguf",
                           "--threads", "1", "--kv-cache-mib=64", "--block-size", "8", "--kv-type", "f16",
                           "--max-seqs", "4", "--max-batch-tokens", "64", "--max-queue", "2", "--max-connections", "3",
                           "--max-frame-bytes", "4096", "--max-prompt-tokens", "50", "--max-tokens", "9",
                           "--max-requests-per-connection", "1", "--timeout-s", "30", "--grace-s", "0",
                           "--log-level", "warn", "--models-dir", "/d", "--socket-group", "0",
                           "--log-file", "/tmp/l2", "--allow-uids", "5", "--allow-gids", "6", NULL};
    CHECK_MSG(run_args(&cfg, &act, err, sizeof err, args2) == 0, "%s", err);
    CHECK(strcmp(cfg.socket_path, "/tmp/y.sock") == 0);
    CHECK_EQ_INT(cfg.n_models, 1); /* models on the command line replace the file's */
    CHECK(strcmp(cfg.models[0].name, "a") == 0);
    CHECK_EQ_INT(cfg.threads, 1);
    CHECK_EQ_INT(cfg.kv_cache_mib, 64);
    CHECK_EQ_INT(cfg.block_size, 8);
    CHECK(!cfg.kv_f32); /* the flag wins over the file */
    CHECK_EQ_INT(cfg.max_seqs, 4);
    CHECK_EQ_INT(cfg.max_batch_tokens, 64);
    CHECK_EQ_INT(cfg.max_queue, 2);
    CHECK_EQ_INT(cfg.max_connections, 3);
    CHECK_EQ_INT(cfg.max_frame_bytes, 4096);
    CHECK_EQ_INT(cfg.max_prompt_tokens, 50);
    CHECK_EQ_INT(cfg.max_tokens, 9);
    CHECK_EQ_INT(cfg.max_requests_per_connection, 1);
    CHECK_EQ_INT(cfg.timeout_s, 30);
    CHECK_EQ_INT(cfg.grace_s, 0);
    CHECK_EQ_INT(cfg.log_level, SRV_LOG_WARN);
    CHECK(strcmp(cfg.models_dir, "/d") == 0);
    CHECK(strcmp(cfg.socket_group, "0") == 0);
    CHECK(strcmp(cfg.log_file, "/tmp/l2") == 0);
    CHECK_EQ_INT(cfg.n_allow_uids, 1);
    CHECK_EQ_INT(cfg.allow_uids[0], 5);
    CHECK_EQ_INT(cfg.allow_gids[0], 6);
    srv_config_free(&cfg);
}

static void test_file_errors(void)
{
    char want[600];
    const char *f1 = write_file("unknown.conf", "threads = 2\n\n# comment\nkv-cache = 5\n");
    snprintf(want, sizeof want, "%s:4: unknown key 'kv-cache'", f1);
    const char *a1[] = {"--config", f1, NULL};
    expect_error(a1, want);

    const char *f2 = write_file("range.conf", "max-seqs = 0\n");
    snprintf(want, sizeof want, "%s:1: max-seqs: 0 is out of range (1..4096)", f2);
    const char *a2[] = {"--config", f2, NULL};
    expect_error(a2, want);

    const char *f3 = write_file("nan.conf", "threads = 2\nthreads = two\n");
    snprintf(want, sizeof want, "%s:2: threads: 'two' is not a number", f3);
    const char *a3[] = {"--config", f3, NULL};
    expect_error(a3, want);

    const char *f4 = write_file("syntax.conf", "threads = 2\nthis line has no equals sign\n");
    snprintf(want, sizeof want, "%s:2: syntax error", f4);
    const char *a4[] = {"--config", f4, NULL};
    expect_error(a4, want);

    const char *f5 = write_file("section.conf", "[server]\nthreads = 2\n");
    snprintf(want, sizeof want, "%s:2: unknown section [server]", f5);
    const char *a5[] = {"--config", f5, NULL};
    expect_error(a5, want);

    const char *f6 = write_file("level.conf", "log-level = loud\n");
    snprintf(want, sizeof want, "%s:1: log-level: 'loud' is not one of", f6);
    const char *a6[] = {"--config", f6, NULL};
    expect_error(a6, want);

    const char *f7 = write_file("model.conf", "model = bad name=/x.gguf\n");
    snprintf(want, sizeof want, "%s:1: model: bad name", f7);
    const char *a7[] = {"--config", f7, NULL};
    expect_error(a7, want);

    const char *f8 = write_file("dup.conf", "model = a=/x.gguf\nmodel = a=/y.gguf\n");
    snprintf(want, sizeof want, "%s:2: model: name 'a' given twice", f8);
    const char *a8[] = {"--config", f8, NULL};
    expect_error(a8, want);

    char longline[5000];
    memset(longline, 'x', sizeof longline);
    memcpy(longline, "socket = ", 9);
    strcpy(longline + 4900, "\n");
    const char *f9 = write_file("long.conf", longline);
    snprintf(want, sizeof want, "%s:1: line longer than", f9);
    const char *a9[] = {"--config", f9, NULL};
    expect_error(a9, want);

    const char *f10 = write_file("cfgkey.conf", "config = /etc/other.conf\n");
    snprintf(want, sizeof want, "%s:1: 'config' is a command-line flag only", f10);
    const char *a10[] = {"--config", f10, NULL};
    expect_error(a10, want);

    const char *a11[] = {"--config", "/nonexistent/llamad.conf", NULL};
    expect_error(a11, "/nonexistent/llamad.conf: No such file or directory");
}

static void test_flag_errors(void)
{
    const char *a1[] = {"--kv-cache-mib", "0", NULL};
    expect_error(a1, "--kv-cache-mib: 0 is out of range (1..1048576)");
    const char *a2[] = {"--max-frame-bytes", "99999999999999999999", NULL};
    expect_error(a2, "--max-frame-bytes: 99999999999999999999 is out of range");
    const char *a3[] = {"--threads", "-1", NULL};
    expect_error(a3, "--threads: -1 is out of range (0..1024)");
    const char *a4[] = {"--threads", "4x", NULL};
    expect_error(a4, "--threads: '4x' is not a number");
    const char *a5[] = {"--no-such-flag", NULL};
    expect_error(a5, "unknown option --no-such-flag");
    const char *a6[] = {"--threads", NULL};
    expect_error(a6, "--threads needs a value");
    const char *a7[] = {"extra", NULL};
    expect_error(a7, "unexpected argument 'extra'");
    const char *a8[] = {"--timeout-s", "604801", NULL};
    expect_error(a8, "--timeout-s: 604801 is out of range (0..604800)");
    const char *a9[] = {"--allow-uids", "nosuchuser-llamad", NULL};
    expect_error(a9, "--allow-uids: no user 'nosuchuser-llamad'");
    const char *a10[] = {"--socket", "/tmp/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock", NULL};
    expect_error(a10, "--socket: path longer than 107 bytes");
    const char *a11[] = {"--model", "=/x.gguf", NULL};
    expect_error(a11, "--model: bad name");
    const char *a12[] = {"--block-size", "2000", NULL};
    expect_error(a12, "--block-size: 2000 is out of range (1..1024)");
    const char *a12b[] = {"--kv-type", "q8", NULL};
    expect_error(a12b, "--kv-type: 'q8' is not one of f16, f32");

    /* whole-config checks */
    srv_config cfg;
    enum srv_config_action act;
    char err[512];
    const char *a13[] = {"--model", "/m/x.gguf", "--max-seqs", "64", "--max-batch-tokens", "32", NULL};
    CHECK(run_args(&cfg, &act, err, sizeof err, a13) == 0);
    CHECK(srv_config_validate(&cfg, err, sizeof err) == -EINVAL);
    CHECK(strstr(err, "max-batch-tokens (32) must be at least max-seqs (64)") != NULL);
    srv_config_free(&cfg);
}

static void test_actions(void)
{
    srv_config cfg;
    enum srv_config_action act;
    char err[512];
    const char *a1[] = {"--help", NULL};
    CHECK(run_args(&cfg, &act, err, sizeof err, a1) == 0 && act == SRV_CONFIG_HELP);
    srv_config_free(&cfg);
    const char *a2[] = {"--version", NULL};
    CHECK(run_args(&cfg, &act, err, sizeof err, a2) == 0 && act == SRV_CONFIG_VERSION);
    srv_config_free(&cfg);
    const char *f = write_file("check.conf", "model = /m/x.gguf\n");
    const char *a3[] = {"--check-config", "--config", f, NULL};
    CHECK(run_args(&cfg, &act, err, sizeof err, a3) == 0 && act == SRV_CONFIG_CHECK);
    CHECK_EQ_INT(cfg.n_models, 1);
    srv_config_free(&cfg);

    /* reloadable keys are copied, the others are not */
    srv_config a, b;
    srv_config_init(&a);
    srv_config_init(&b);
    b.max_queue = 3;
    b.timeout_s = 9;
    b.log_level = SRV_LOG_ERROR;
    b.kv_cache_mib = 1;
    srv_config_apply_reload(&a, &b);
    CHECK_EQ_INT(a.max_queue, 3);
    CHECK_EQ_INT(a.timeout_s, 9);
    CHECK_EQ_INT(a.log_level, SRV_LOG_ERROR);
    CHECK_EQ_INT(a.kv_cache_mib, 256);
    srv_config_free(&a);
    srv_config_free(&b);

    FILE *devnull = fopen("/dev/null", "w");
    srv_config_usage(devnull);
    fclose(devnull);
}

int main(void)
{
    test_defaults();
    test_every_key();
    test_file_errors();
    test_flag_errors();
    test_actions();
    printf("daemon_config: ok\n");
    return 0;
}
