/* Runs the llamactl binary for the client tests: arguments, stdin, environment, and an
 * optional SIGINT once some text has appeared on its stdout. */
#ifndef LLAMAD_TESTS_CLI_RUN_H
#define LLAMAD_TESTS_CLI_RUN_H

#include <stddef.h>

typedef struct run_result {
    int code; /* exit status, or 128 + signal */
    char out[65536];
    size_t out_len;
    char err[8192];
    size_t err_len;
} run_result;

typedef struct run_opts {
    const char *stdin_data;
    const char *env[4];       /* extra "NAME=value" entries */
    const char *sigint_after; /* send SIGINT once stdout contains this */
} run_opts;

/* The binary that run() starts. */
extern const char *g_llamactl;

/* Runs llamactl with the arguments after o (NULL-terminated) and collects its output and
 * exit status. The child's environment has no LLAMAD_SOCKET / XDG_RUNTIME_DIR unless o->env
 * gives them. Fails the test when it produces nothing for 20 s. */
void run(run_result *r, const run_opts *o, ...);

#define EXPECT_CODE(r, want)                                                                       \
    CHECK_MSG((r).code == (want), "exit %d, expected %d\nstdout: %s\nstderr: %s", (r).code,        \
              (want), (r).out, (r).err)

#endif
