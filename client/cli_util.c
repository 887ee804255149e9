/* llamactl: messages, number parsing, stdin, connecting, signals. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *cli_socket;
static const char *g_prog = "llamactl";

/* ---- messages ------------------------------------------------------------------------- */

void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_err(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", g_prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ---- number parsing ------------------------------------------------------------------- */

int cli_parse_u64(const char *s, unsigned long long max, unsigned long long *ret)
{
    if (s == NULL || *s < '0' || *s > '9') return -EINVAL;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0') return -EINVAL;
    if (errno == ERANGE || v > max) return -ERANGE;
    *ret = v;
    return 0;
}

int cli_parse_float(const char *s, float lo, float hi, float *ret)
{
    if (s == NULL || *s == '\0') return -EINVAL;
    errno = 0;
    char *end;
    float v = strtof(s, &end);
    if (*end != '\0' || !isfinite(v)) return -EINVAL;
    if (errno == ERANGE || v < lo || v > hi) return -ERANGE;
    *ret = v;
    return 0;
}

/* "1,450,4996" -> ids. Every element is a decimal number in [0, INT32_MAX]. */
int cli_parse_ids(const char *s, uint32_t **ret_ids, size_t *ret_n, const char **ret_bad)
{
    size_t cap = 1;
    for (const char *p = s; *p; p++)
        if (*p == ',') cap++;
    uint32_t *ids = malloc(cap * sizeof *ids);
    if (ids == NULL) return -ENOMEM;
    size_t n = 0;
    const char *p = s;
    static char bad[64];
    for (;;) {
        const char *start = p;
        while (*p == ' ')
            p++;
        unsigned long long v = 0;
        bool any = false, overflow = false;
        while (*p >= '0' && *p <= '9') {
            any = true;
            if (!overflow) {
                v = v * 10 + (unsigned)(*p - '0');
                if (v > INT32_MAX) overflow = true;
            }
            p++;
        }
        while (*p == ' ')
            p++;
        if (!any || (*p != ',' && *p != '\0') || overflow) {
            const char *e = start;
            while (*e && *e != ',')
                e++;
            snprintf(bad, sizeof bad, "%.*s", (int)(e - start > 40 ? 40 : e - start), start);
            *ret_bad = bad;
            free(ids);
            return overflow ? -ERANGE : -EINVAL;
        }
        ids[n++] = (uint32_t)v;
        if (*p == '\0') break;
        p++;
    }
    *ret_ids = ids;
    *ret_n = n;
    return 0;
}

/* Reads all of stdin into a NUL-terminated buffer. */
char *cli_read_stdin(size_t *ret_len)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (buf == NULL) return NULL;
    for (;;) {
        if (cap - len < 2) {
            if (cap >= MAX_STDIN_BYTES) {
                free(buf);
                errno = EFBIG;
                return NULL;
            }
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                return NULL;
            }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, cap - len - 1, stdin);
        len += n;
        if (n == 0) {
            if (ferror(stdin)) {
                free(buf);
                return NULL;
            }
            break;
        }
    }
    buf[len] = '\0';
    *ret_len = len;
    return buf;
}

/* ---- connecting ----------------------------------------------------------------------- */

lc_conn *cli_connect(void)
{
    char path[256];
    int rc = lc_socket_path(cli_socket, path, sizeof path);
    if (rc < 0) {
        cli_err("bad socket path: %s", lc_strerror(rc));
        exit(EXIT_USAGE);
    }
    lc_options opt = {.socket_path = path, .client_name = "llamactl " LC_VERSION_STRING};
    lc_conn *c = lc_conn_new(&opt);
    if (c == NULL) {
        cli_err("out of memory");
        exit(EXIT_REQUEST);
    }
    rc = lc_conn_connect(c);
    if (rc < 0) {
        cli_err("%s", lc_conn_error(c));
        fprintf(stderr,
                "Is llamad running? Start it (e.g. 'systemctl start llamad', or 'llamad "
                "--socket %s'),\nor point llamactl at its socket with --socket PATH or "
                "$LLAMAD_SOCKET.\n",
                path);
        lc_conn_free(c);
        exit(EXIT_CONNECT);
    }
    return c;
}

/* ---- signals -------------------------------------------------------------------------- */

volatile sig_atomic_t cli_sigint;
int cli_sigpipe[2] = {-1, -1};

static void on_signal(int sig)
{
    (void)sig;
    int saved = errno;
    cli_sigint++;
    if (cli_sigpipe[1] >= 0) {
        char b = 1;
        ssize_t r = write(cli_sigpipe[1], &b, 1);
        (void)r;
    }
    errno = saved;
}

void cli_install_signals(void)
{
    if (pipe2(cli_sigpipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        cli_sigpipe[0] = cli_sigpipe[1] = -1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: a blocking read returns EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

void cli_drain_sigpipe(void)
{
    char buf[64];
    while (cli_sigpipe[0] >= 0 && read(cli_sigpipe[0], buf, sizeof buf) > 0) {
    }
}
