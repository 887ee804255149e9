#include "cli_run.h"

#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

const char *g_llamactl;

static void append(char *buf, size_t cap, size_t *len, const char *data, size_t n)
{
    if (n > cap - 1 - *len) n = cap - 1 - *len;
    memcpy(buf + *len, data, n);
    *len += n;
    buf[*len] = '\0';
}

/* Runs llamactl with args (NULL-terminated) and collects its output and exit status. The
 * child's environment has no LLAMAD_SOCKET / XDG_RUNTIME_DIR unless o->env gives them. */
void run(run_result *r, const run_opts *o, ...)
{
    const char *argv[32];
    int argc = 0;
    argv[argc++] = g_llamactl;
    va_list ap;
    va_start(ap, o);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL) {
        CHECK(argc < 31);
        argv[argc++] = a;
    }
    va_end(ap);
    argv[argc] = NULL;

    /* the environment is built before fork: the child of a threaded process only execs */
    const char *envp[256];
    int envc = 0;
    for (char **e = environ; *e && envc < 240; e++) {
        if (strncmp(*e, "LLAMAD_SOCKET=", 14) == 0 || strncmp(*e, "XDG_RUNTIME_DIR=", 16) == 0)
            continue;
        envp[envc++] = *e;
    }
    for (int i = 0; i < 4 && o && o->env[i]; i++)
        envp[envc++] = o->env[i];
    envp[envc] = NULL;

    int in[2], out[2], err[2];
    CHECK(pipe2(in, O_CLOEXEC) == 0 && pipe2(out, O_CLOEXEC) == 0 && pipe2(err, O_CLOEXEC) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(err[1], 2);
        execve(g_llamactl, (char *const *)argv, (char *const *)envp);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    close(err[1]);
    if (o && o->stdin_data) {
        size_t len = strlen(o->stdin_data);
        CHECK(write(in[1], o->stdin_data, len) == (ssize_t)len);
    }
    close(in[1]);
    memset(r, 0, sizeof *r);
    bool out_open = true, err_open = true, signalled = false;
    while (out_open || err_open) {
        struct pollfd p[2] = {{.fd = out_open ? out[0] : -1, .events = POLLIN},
                              {.fd = err_open ? err[0] : -1, .events = POLLIN}};
        int n = poll(p, 2, 20000);
        if (n == 0) {
            kill(pid, SIGKILL);
            tu_fail(__FILE__, __LINE__, "llamactl %s: no output within 20 s (stdout: %s)",
                    argv[1] ? argv[1] : "", r->out);
        }
        CHECK(n > 0 || errno == EINTR);
        char buf[4096];
        if (p[0].revents) {
            ssize_t k = read(out[0], buf, sizeof buf);
            if (k <= 0)
                out_open = false;
            else
                append(r->out, sizeof r->out, &r->out_len, buf, (size_t)k);
        }
        if (p[1].revents) {
            ssize_t k = read(err[0], buf, sizeof buf);
            if (k <= 0)
                err_open = false;
            else
                append(r->err, sizeof r->err, &r->err_len, buf, (size_t)k);
        }
        if (o && o->sigint_after && !signalled && strstr(r->out, o->sigint_after)) {
            kill(pid, SIGINT);
            signalled = true;
        }
    }
    close(out[0]);
    close(err[0]);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    r->code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (o && o->sigint_after) CHECK_MSG(signalled, "never saw '%s' on stdout", o->sigint_after);
}
