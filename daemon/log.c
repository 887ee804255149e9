#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Atomic int log_level = SRV_LOG_INFO;
static int log_fd = STDERR_FILENO;
static char *log_path;
static int log_journal = -1; /* -1: not decided yet */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"error", "warn", "info", "debug"};
/* sd-daemon priorities: LOG_ERR 3, LOG_WARNING 4, LOG_INFO 6, LOG_DEBUG 7 */
static const int level_prio[] = {3, 4, 6, 7};

int srv_log_level_parse(const char *s, enum srv_log_level *ret_level)
{
    if (s == NULL) return -EINVAL;
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *ret_level = (enum srv_log_level)i;
            return 0;
        }
    }
    if (strcmp(s, "warning") == 0) {
        *ret_level = SRV_LOG_WARN;
        return 0;
    }
    return -EINVAL;
}

const char *srv_log_level_name(enum srv_log_level level)
{
    if ((int)level < 0 || (int)level > 3) return "?";
    return level_names[level];
}

static int open_path(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0640);
    return fd < 0 ? -errno : fd;
}

int srv_log_open(enum srv_log_level level, const char *path)
{
    int rc = 0;
    pthread_mutex_lock(&log_lock);
    atomic_store(&log_level, (int)level);
    if (path != NULL && path[0] != '\0') {
        int fd = open_path(path);
        char *copy = strdup(path);
        if (fd < 0 || copy == NULL) {
            rc = fd < 0 ? fd : -ENOMEM;
            if (fd >= 0) close(fd);
            free(copy);
        } else {
            if (log_fd != STDERR_FILENO) close(log_fd);
            free(log_path);
            log_fd = fd;
            log_path = copy;
            log_journal = 0;
        }
    } else {
        if (log_fd != STDERR_FILENO) close(log_fd);
        free(log_path);
        log_path = NULL;
        log_fd = STDERR_FILENO;
        log_journal = -1;
    }
    pthread_mutex_unlock(&log_lock);
    return rc;
}

void srv_log_set_level(enum srv_log_level level) { atomic_store(&log_level, (int)level); }

enum srv_log_level srv_log_get_level(void) { return (enum srv_log_level)atomic_load(&log_level); }

int srv_log_reopen(void)
{
    int rc = 0;
    pthread_mutex_lock(&log_lock);
    if (log_path != NULL) {
        int fd = open_path(log_path);
        if (fd < 0) {
            rc = fd;
        } else {
            close(log_fd);
            log_fd = fd;
        }
    }
    pthread_mutex_unlock(&log_lock);
    return rc;
}

void srv_log_close(void)
{
    pthread_mutex_lock(&log_lock);
    if (log_fd != STDERR_FILENO) close(log_fd);
    log_fd = STDERR_FILENO;
    free(log_path);
    log_path = NULL;
    pthread_mutex_unlock(&log_lock);
}

void srv_log(enum srv_log_level level, const char *fmt, ...)
{
    if ((int)level > atomic_load(&log_level)) return;
    if ((int)level < 0 || (int)level > 3) level = SRV_LOG_ERROR;
    char line[2048];
    size_t n = 0;

    pthread_mutex_lock(&log_lock);
    if (log_journal < 0) {
        const char *js = getenv("JOURNAL_STREAM");
        log_journal = (js != NULL && js[0] != '\0') ? 1 : 0;
    }
    int journal = log_journal;
    int fd = log_fd;
    if (journal) {
        n = (size_t)snprintf(line, sizeof line, "<%d>", level_prio[level]);
    } else {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
        n += (size_t)snprintf(line + n, sizeof line - n, ".%03ldZ llamad[%d] %s: ",
                              ts.tv_nsec / 1000000, (int)getpid(), level_names[level]);
    }
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    va_end(ap);
    if (m < 0) m = 0;
    n += (size_t)m;
    if (n > sizeof line - 2) n = sizeof line - 2;
    /* one message is one line: newlines inside it would split a journal entry */
    for (size_t i = 0; i < n; i++)
        if (line[i] == '\n' || line[i] == '\r') line[i] = ' ';
    line[n++] = '\n';
    const char *p = line;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            break;
        }
        p += w;
        n -= (size_t)w;
    }
    pthread_mutex_unlock(&log_lock);
}
