/* llamactl's internals: shared by llamactl.c (main), cli_util.c, cli_generate.c and
 * cli_info.c. */
#ifndef LLAMACTL_CLI_H
#define LLAMACTL_CLI_H

#include "llamactl.h"

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    EXIT_OK = 0,
    EXIT_REQUEST = 1,
    EXIT_USAGE = 2,
    EXIT_CONNECT = 3,
    EXIT_INTERRUPTED = 130,
};

#define MAX_STDIN_BYTES  (64u << 20)
#define MAX_STOP_STRINGS 16

/* long options without a short form */
enum {
    OPT_TEMPERATURE = 256,
    OPT_TOP_K,
    OPT_TOP_P,
    OPT_MIN_P,
    OPT_REPEAT_PENALTY,
    OPT_PRESENCE_PENALTY,
    OPT_FREQUENCY_PENALTY,
    OPT_SEED,
    OPT_STOP,
    OPT_JSON,
    OPT_IDS,
    OPT_LOGPROBS,
    OPT_SYSTEM,
    OPT_SOCKET,
    OPT_NO_SPECIAL,
};

extern const char *cli_socket; /* --socket, or NULL */

/* "llamactl: <message>\n" on stderr */
void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Decimal number in [0, max] (no sign, nothing after it): 0, -EINVAL or -ERANGE. */
int cli_parse_u64(const char *s, unsigned long long max, unsigned long long *ret);
/* Finite float in [lo, hi]: 0, -EINVAL or -ERANGE. */
int cli_parse_float(const char *s, float lo, float hi, float *ret);
/* "1,450,4996" -> malloc'd ids in [0, INT32_MAX]; on error *ret_bad is the bad element
 * (static buffer) and the result -EINVAL, -ERANGE or -ENOMEM. */
int cli_parse_ids(const char *s, uint32_t **ret_ids, size_t *ret_n, const char **ret_bad);
/* All of stdin, NUL-terminated (at most MAX_STDIN_BYTES); NULL with errno on failure. */
char *cli_read_stdin(size_t *ret_len);

/* Connects to the daemon, or exits: 3 with a hint naming the socket. */
lc_conn *cli_connect(void);

/* SIGINT/SIGTERM: counted in cli_sigint, and a byte written to cli_sigpipe[1] (poll
 * cli_sigpipe[0]). Installed without SA_RESTART: blocking reads return EINTR. */
extern volatile sig_atomic_t cli_sigint;
extern int cli_sigpipe[2];
void cli_install_signals(void);
void cli_drain_sigpipe(void);

int cmd_generate(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_models(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);

#endif
