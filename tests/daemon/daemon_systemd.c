/* systemd integration: the units pass `systemd-analyze verify` (copies whose ExecStart points
 * at the build's llamad), and llamad runs under systemd-socket-activate: it serves on the
 * inherited socket, and reports READY=1, WATCHDOG=1 and STOPPING=1 on $NOTIFY_SOCKET. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dh.h"
#include "testutil.h"

/* Runs a command, captures stdout+stderr; returns the exit status. */
static int run_capture(char *const argv[], const char *xdg, char *out, size_t cap)
{
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        close(pfd[0]);
        close(pfd[1]);
        if (xdg) setenv("XDG_RUNTIME_DIR", xdg, 1);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(pfd[1]);
    size_t len = 0;
    ssize_t n;
    while ((n = read(pfd[0], out + len, cap - 1 - len)) > 0) len += (size_t)n;
    out[len] = '\0';
    close(pfd[0]);
    return dh_wait(pid);
}

static void verify(const char *dir, bool user)
{
    char sock[512], svc[512], out[8192];
    snprintf(sock, sizeof sock, "%s/llamad.socket", dir);
    snprintf(svc, sizeof svc, "%s/llamad.service", dir);
    char xdg[512];
    snprintf(xdg, sizeof xdg, "%s/xdg-runtime", tu_tmpdir());
    mkdir(xdg, 0700);
    char *argv_sys[] = {"systemd-analyze", "verify", sock, svc, NULL};
    char *argv_user[] = {"systemd-analyze", "--user", "verify", sock, svc, NULL};
    int rc = run_capture(user ? argv_user : argv_sys, user ? xdg : NULL, out, sizeof out);
    CHECK_MSG(rc == 0, "systemd-analyze verify %s failed (%d):\n%s", dir, rc, out);
    CHECK_MSG(out[0] == '\0', "systemd-analyze verify %s warns:\n%s", dir, out);
}

static int notify_socket(char *path, size_t len)
{
    snprintf(path, len, "%s/notify.sock", tu_tmpdir());
    unlink(path);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    CHECK(strlen(path) < sizeof sa.sun_path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    return fd;
}

/* Waits for a notification datagram containing want. */
static void expect_notify(int fd, const char *want)
{
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        CHECK_MSG(poll(&p, 1, 60000) == 1, "no '%s' notification within 60 s", want);
        char buf[1024];
        ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
        CHECK(n >= 0);
        buf[n] = '\0';
        if (strstr(buf, want) != NULL) return;
    }
}

static void socket_activation(const char *llamad, const char *model)
{
    char sock[256], nsock[256], model_arg[4200], notify_env[300];
    dh_sock_path(sock, sizeof sock, "activated.sock");
    int nfd = notify_socket(nsock, sizeof nsock);
    snprintf(model_arg, sizeof model_arg, "tiny=%s", model);
    snprintf(notify_env, sizeof notify_env, "NOTIFY_SOCKET=%s", nsock);
    /* --socket names a path llamad must not touch: the inherited socket wins */
    const char *args[] = {"-l", sock, "-E", notify_env, "-E", "WATCHDOG_USEC=200000", llamad,
                          "--socket", "/nonexistent/dir/unused.sock", "--model", model_arg, "--kv-cache-mib", "4",
                          "--threads", "1", NULL};
    pid_t pid = dh_spawn("/usr/bin/systemd-socket-activate", args);
    /* systemd-socket-activate listens at once; llamad starts on the first connection */
    int tries = 0;
    while (dh_try_connect(sock) != 0) {
        CHECK_MSG(++tries < 12000, "systemd-socket-activate did not listen on %s", sock);
        usleep(5000);
    }
    dh_conn c;
    dh_connect(&c, sock);
    dh_send_hello(&c, 1);
    Llamad__V1__ServerMessage *m = dh_recv(&c);
    CHECK(m != NULL && m->body_case == LLAMAD__V1__SERVER_MESSAGE__BODY_HELLO);
    CHECK(strcmp(m->hello->server_name, "llamad") == 0);
    proto_server_free(m);
    expect_notify(nfd, "READY=1");
    expect_notify(nfd, "WATCHDOG=1");

    dh_send_status(&c, 2);
    m = dh_recv(&c);
    CHECK(m != NULL && m->body_case == LLAMAD__V1__SERVER_MESSAGE__BODY_STATUS);
    CHECK_EQ_INT(m->status->n_loaded_models, 1);
    proto_server_free(m);

    uint32_t bos[] = {1};
    dh_gen g = {.ids = bos, .n_ids = 1, .max_tokens = 8, .has_temperature = true};
    dh_send_generate(&c, 3, &g);
    dh_result r = {.rid = 3};
    dh_collect(&c, &r, 1);
    CHECK_EQ_INT(r.n_ids, 8);
    dh_close(&c);

    CHECK(kill(pid, SIGTERM) == 0);
    expect_notify(nfd, "STOPPING=1");
    CHECK_EQ_INT(dh_wait(pid), 0);
    close(nfd);
}

int main(int argc, char **argv)
{
    CHECK_MSG(argc == 5, "usage: daemon_systemd LLAMAD SYSTEM_UNITS_DIR USER_UNITS_DIR SOURCE_UNITS_DIR");
    signal(SIGPIPE, SIG_IGN);
    verify(argv[2], false);
    verify(argv[3], true);
    socket_activation(argv[1], tu_shared("models/stories260K.gguf"));
    printf("daemon_systemd: ok\n");
    return 0;
}
