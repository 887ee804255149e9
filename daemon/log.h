/* llamad's log: one line per message on stderr (or a log file), journald-friendly.
 * When JOURNAL_STREAM is set (stderr is connected to journald), every line starts with
 * an sd-daemon priority prefix "<N>" and carries no timestamp (journald adds its own).
 * Safe to call from any thread: each line is written with a single write(2). */
#ifndef LLAMAD_LOG_H
#define LLAMAD_LOG_H

enum srv_log_level {
    SRV_LOG_ERROR = 0,
    SRV_LOG_WARN = 1,
    SRV_LOG_INFO = 2,
    SRV_LOG_DEBUG = 3,
};

/* Parses "error", "warn" (or "warning"), "info", "debug". */
int srv_log_level_parse(const char *s, enum srv_log_level *ret_level);
const char *srv_log_level_name(enum srv_log_level level);

/* Sets the level and the destination: path NULL or "" means stderr. Returns 0 or -errno
 * (the previous destination stays in use on failure). */
int srv_log_open(enum srv_log_level level, const char *path);
void srv_log_set_level(enum srv_log_level level);
enum srv_log_level srv_log_get_level(void);
/* Reopens the log file (after rotation); a no-op when logging to stderr. */
int srv_log_reopen(void);
void srv_log_close(void);

void srv_log(enum srv_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define srv_log_error(...) srv_log(SRV_LOG_ERROR, __VA_ARGS__)
#define srv_log_warn(...) srv_log(SRV_LOG_WARN, __VA_ARGS__)
#define srv_log_info(...) srv_log(SRV_LOG_INFO, __VA_ARGS__)
#define srv_log_debug(...)                                                   \
    do {                                                                     \
        if (srv_log_get_level() >= SRV_LOG_DEBUG) srv_log(SRV_LOG_DEBUG, __VA_ARGS__); \
    } while (0)

#endif
