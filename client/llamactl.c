/* llamactl — the command-line client of llamad, built on libllamactl.
 *
 * Exit codes: 0 ok; 1 the request failed (message on stderr); 2 usage error; 3 cannot
 * connect to the daemon; 130 interrupted (Ctrl-C: the request was cancelled cleanly). */
#include "llamactl.h"
#include "jsonw.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    EXIT_OK = 0,
    EXIT_REQUEST = 1,
    EXIT_USAGE = 2,
    EXIT_CONNECT = 3,
    EXIT_INTERRUPTED = 130,
};

#define MAX_STDIN_BYTES  (64u << 20)
#define MAX_STOP_STRINGS 16

static const char *g_socket; /* --socket, or NULL */
static const char *g_prog = "llamactl";

/* ---- messages ------------------------------------------------------------------------- */

static void errmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void errmsg(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", g_prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void usage_main(FILE *f)
{
    fprintf(f, "Usage: llamactl [--socket PATH] COMMAND [OPTIONS] [ARGS]\n"
               "\n"
               "Talks to the llamad daemon.\n"
               "\n"
               "Commands:\n"
               "  generate [PROMPT|-]   generate text from a prompt ('-': read it from stdin)\n"
               "  chat                  interactive multi-turn chat (reads lines from stdin)\n"
               "  status                the daemon's status\n"
               "  models                the models the daemon serves\n"
               "  tokenize TEXT|-       the token ids of a text\n"
               "  detokenize IDS        the text of comma-separated token ids\n"
               "\n"
               "Global options:\n"
               "  --socket PATH         the daemon's socket (default: $LLAMAD_SOCKET, then\n"
               "                        $XDG_RUNTIME_DIR/llamad.sock, then " LC_DEFAULT_SOCKET ")\n"
               "  -h, --help            this help ('llamactl COMMAND --help' for a command's)\n"
               "  -V, --version         the version\n"
               "\n"
               "Exit status: 0 ok, 1 request failed, 2 usage error, 3 cannot connect to llamad,\n"
               "130 interrupted (the request was cancelled).\n");
}

static void usage_generate(FILE *f, const char *cmd)
{
    if (strcmp(cmd, "chat") == 0)
        fprintf(f, "Usage: llamactl chat [-m MODEL] [--system TEXT] [SAMPLING OPTIONS]\n"
                   "\n"
                   "Interactive chat: each line read is a user message; the reply streams to\n"
                   "stdout. The client keeps the history; the daemon applies the model's chat\n"
                   "template. Lines '/reset' (forget the history) and '/exit' are commands.\n"
                   "Ctrl-C cancels a reply; at the prompt it exits.\n\n");
    else
        fprintf(f, "Usage: llamactl generate [PROMPT|-] [OPTIONS]\n"
                   "       llamactl generate --ids ID,ID,... [OPTIONS]\n"
                   "\n"
                   "Streams the generated text to stdout. '-' (or no PROMPT with stdin not a\n"
                   "terminal) reads the prompt from stdin. Ctrl-C cancels the request and\n"
                   "exits with status 130.\n\n");
    fprintf(f, "Options:\n"
               "  -m, --model NAME          the model (default: the daemon's default)\n");
    if (strcmp(cmd, "chat") == 0)
        fprintf(f, "      --system TEXT         a system message at the start of the chat\n");
    else
        fprintf(
            f,
            "      --ids LIST            the prompt as comma-separated token ids, used as given\n"
            "      --json                one JSON object per chunk, then a final one\n"
            "      --logprobs N          report the log-probability of each sampled token\n");
    fprintf(f, "  -n, --max-tokens N        generate at most N tokens\n"
               "      --temperature T       sampling temperature (0: greedy)\n"
               "      --top-k K             keep the K most likely tokens (0: off)\n"
               "      --top-p P             nucleus sampling threshold\n"
               "      --min-p P             minimum probability relative to the best token\n"
               "      --repeat-penalty R    penalty for repeated tokens (1: off)\n"
               "      --presence-penalty P  additive penalty for tokens already present\n"
               "      --frequency-penalty P additive penalty per occurrence\n"
               "      --seed S              the random seed (same seed, same output)\n"
               "      --stop STR            stop when STR is generated (repeatable)\n"
               "  -h, --help                this help\n");
}

/* ---- number parsing ------------------------------------------------------------------- */

static int parse_u64(const char *s, unsigned long long max, unsigned long long *ret)
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

static int parse_float(const char *s, float lo, float hi, float *ret)
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
static int parse_ids(const char *s, uint32_t **ret_ids, size_t *ret_n, const char **ret_bad)
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
static char *read_stdin(size_t *ret_len)
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

static lc_conn *connect_or_exit(void)
{
    char path[256];
    int rc = lc_socket_path(g_socket, path, sizeof path);
    if (rc < 0) {
        errmsg("bad socket path: %s", lc_strerror(rc));
        exit(EXIT_USAGE);
    }
    lc_options opt = {.socket_path = path, .client_name = "llamactl " LC_VERSION_STRING};
    lc_conn *c = lc_conn_new(&opt);
    if (c == NULL) {
        errmsg("out of memory");
        exit(EXIT_REQUEST);
    }
    rc = lc_conn_connect(c);
    if (rc < 0) {
        errmsg("%s", lc_conn_error(c));
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

static volatile sig_atomic_t g_sigint;
static int g_sigpipe[2] = {-1, -1};

static void on_signal(int sig)
{
    (void)sig;
    int saved = errno;
    g_sigint++;
    if (g_sigpipe[1] >= 0) {
        char b = 1;
        ssize_t r = write(g_sigpipe[1], &b, 1);
        (void)r;
    }
    errno = saved;
}

static void install_signals(void)
{
    if (pipe2(g_sigpipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        g_sigpipe[0] = g_sigpipe[1] = -1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: a blocking read returns EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static void drain_sigpipe(void)
{
    char buf[64];
    while (g_sigpipe[0] >= 0 && read(g_sigpipe[0], buf, sizeof buf) > 0) {
    }
}

/* ---- generate ------------------------------------------------------------------------- */

typedef struct gen_state {
    bool json;
    bool tty;
    bool finished;
    bool failed;
    bool ended_with_newline;
    lc_done done;
    int err_code;
    char err_msg[512];
    /* chat: the reply's text */
    char *reply;
    size_t reply_len, reply_cap;
    bool keep_reply;
} gen_state;

static void print_done_json(const lc_done *d)
{
    jw w;
    jw_init(&w, stdout);
    jw_obj_begin(&w);
    jw_key(&w, "done");
    jw_bool(&w, 1);
    jw_key(&w, "finish_reason");
    jw_cstr(&w, lc_finish_name(d->finish));
    jw_key(&w, "prompt_tokens");
    jw_uint(&w, d->prompt_tokens);
    jw_key(&w, "cached_tokens");
    jw_uint(&w, d->cached_tokens);
    jw_key(&w, "generated_tokens");
    jw_uint(&w, d->generated_tokens);
    jw_key(&w, "seed");
    jw_uint(&w, d->seed);
    jw_key(&w, "timings");
    jw_obj_begin(&w);
    jw_key(&w, "queue_ms");
    jw_double(&w, d->queue_us / 1000.0);
    jw_key(&w, "time_to_first_token_ms");
    jw_double(&w, d->first_token_us / 1000.0);
    jw_key(&w, "total_ms");
    jw_double(&w, d->total_us / 1000.0);
    /* decoding speed: tokens after the first over the time after the first */
    double gen_us = d->total_us > d->first_token_us ? (double)(d->total_us - d->first_token_us) : 0;
    double tps =
        d->generated_tokens > 1 && gen_us > 0 ? (d->generated_tokens - 1) * 1e6 / gen_us : 0;
    jw_key(&w, "tokens_per_s");
    jw_double(&w, tps);
    jw_obj_end(&w);
    jw_obj_end(&w);
    jw_end_line(&w);
}

static void gen_callback(lc_conn *c, const lc_event *ev, void *ud)
{
    (void)c;
    gen_state *st = ud;
    switch (ev->type) {
    case LC_EVENT_CHUNK: {
        const lc_chunk *ch = &ev->u.chunk;
        if (st->json) {
            jw w;
            jw_init(&w, stdout);
            jw_obj_begin(&w);
            jw_key(&w, "tokens");
            jw_arr_begin(&w);
            for (size_t i = 0; i < ch->n_tokens; i++)
                jw_uint(&w, ch->tokens[i]);
            jw_arr_end(&w);
            jw_key(&w, "text");
            jw_str(&w, ch->text, ch->text_len);
            if (ch->logprobs != NULL && ch->n_logprobs > 0) {
                jw_key(&w, "logprobs");
                jw_arr_begin(&w);
                for (size_t i = 0; i < ch->n_logprobs; i++) {
                    const lc_token_logprob *lp = &ch->logprobs[i];
                    jw_obj_begin(&w);
                    jw_key(&w, "logprob");
                    jw_double(&w, lp->logprob);
                    jw_key(&w, "top");
                    jw_arr_begin(&w);
                    for (size_t k = 0; k < lp->n_top; k++) {
                        jw_obj_begin(&w);
                        jw_key(&w, "token");
                        jw_uint(&w, lp->top[k].token);
                        jw_key(&w, "text");
                        jw_str(&w, lp->top[k].text.data, lp->top[k].text.len);
                        jw_key(&w, "logprob");
                        jw_double(&w, lp->top[k].logprob);
                        jw_obj_end(&w);
                    }
                    jw_arr_end(&w);
                    jw_obj_end(&w);
                }
                jw_arr_end(&w);
            }
            jw_obj_end(&w);
            jw_end_line(&w);
        } else if (ch->text_len > 0) {
            fwrite(ch->text, 1, ch->text_len, stdout);
            st->ended_with_newline = ch->text[ch->text_len - 1] == '\n';
        }
        fflush(stdout);
        if (st->keep_reply && ch->text_len > 0) {
            if (st->reply_cap - st->reply_len <= ch->text_len) {
                size_t ncap = (st->reply_cap ? st->reply_cap * 2 : 256) + ch->text_len;
                char *nb = realloc(st->reply, ncap);
                if (nb == NULL) break; /* the history loses this reply's tail */
                st->reply = nb;
                st->reply_cap = ncap;
            }
            memcpy(st->reply + st->reply_len, ch->text, ch->text_len);
            st->reply_len += ch->text_len;
            st->reply[st->reply_len] = '\0';
        }
        break;
    }
    case LC_EVENT_DONE:
        st->finished = true;
        st->done = ev->u.done;
        if (st->json) {
            print_done_json(&ev->u.done);
            fflush(stdout);
        }
        break;
    case LC_EVENT_ERROR:
        st->finished = true;
        st->failed = true;
        st->err_code = ev->u.error.code;
        snprintf(st->err_msg, sizeof st->err_msg, "%s",
                 ev->u.error.message ? ev->u.error.message : lc_strerror(ev->u.error.code));
        break;
    default:
        break;
    }
}

/* Runs one generate request to its end, cancelling it on the first SIGINT/SIGTERM.
 * Returns an exit code. */
static int run_generate(lc_conn *c, const lc_generate_params *p, gen_state *st)
{
    uint64_t id;
    int rc = lc_submit_generate(c, p, gen_callback, st, &id);
    if (rc < 0) {
        errmsg("%s", lc_conn_error(c));
        return EXIT_REQUEST;
    }
    bool cancel_sent = false;
    while (!st->finished) {
        if (g_sigint > 0 && !cancel_sent) {
            drain_sigpipe();
            cancel_sent = true;
            if (lc_cancel(c, id) < 0) break;
        }
        if (g_sigint > 1) {
            /* a second Ctrl-C: do not wait for the daemon any longer */
            return EXIT_INTERRUPTED;
        }
        struct pollfd pfd[2] = {
            {.fd = lc_conn_fd(c), .events = POLLIN | (lc_conn_want_write(c) ? POLLOUT : 0)},
            {.fd = g_sigpipe[0], .events = POLLIN},
        };
        int n = poll(pfd, g_sigpipe[0] >= 0 ? 2 : 1, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            errmsg("poll: %s", strerror(errno));
            return EXIT_REQUEST;
        }
        if (pfd[0].revents & POLLOUT) {
            rc = lc_conn_flush(c);
            if (rc < 0) break;
        }
        if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            rc = lc_conn_process(c);
            if (rc < 0) break;
        }
    }
    if (!st->json && !st->ended_with_newline && st->tty && !st->keep_reply) {
        fputc('\n', stdout);
        fflush(stdout);
    }
    if (!st->finished) {
        /* lc_conn_process/flush failed before the request got its final event */
        errmsg("%s", lc_conn_error(c));
        return EXIT_REQUEST;
    }
    if (st->failed) {
        if (cancel_sent && st->err_code != LC_ERR_SERVER) return EXIT_INTERRUPTED;
        errmsg("%s", st->err_msg);
        return EXIT_REQUEST;
    }
    if (cancel_sent) return EXIT_INTERRUPTED;
    return EXIT_OK;
}

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

typedef struct gen_opts {
    lc_generate_params p;
    const char *stops[MAX_STOP_STRINGS];
    const char *ids;
    const char *system;
    bool json;
} gen_opts;

#define BAD_VALUE(optname)                                                                         \
    do {                                                                                           \
        errmsg("invalid value for %s: '%s'", optname, optarg);                                     \
        return EXIT_USAGE;                                                                         \
    } while (0)

/* Parses generate/chat options; positional arguments are left in argv[optind..]. Returns
 * -1 to go on, or an exit code. */
static int parse_gen_opts(int argc, char **argv, const char *cmd, gen_opts *o)
{
    bool chat = strcmp(cmd, "chat") == 0;
    static const struct option gen_long[] = {
        {"model", required_argument, NULL, 'm'},
        {"max-tokens", required_argument, NULL, 'n'},
        {"temperature", required_argument, NULL, OPT_TEMPERATURE},
        {"top-k", required_argument, NULL, OPT_TOP_K},
        {"top-p", required_argument, NULL, OPT_TOP_P},
        {"min-p", required_argument, NULL, OPT_MIN_P},
        {"repeat-penalty", required_argument, NULL, OPT_REPEAT_PENALTY},
        {"presence-penalty", required_argument, NULL, OPT_PRESENCE_PENALTY},
        {"frequency-penalty", required_argument, NULL, OPT_FREQUENCY_PENALTY},
        {"seed", required_argument, NULL, OPT_SEED},
        {"stop", required_argument, NULL, OPT_STOP},
        {"json", no_argument, NULL, OPT_JSON},
        {"ids", required_argument, NULL, OPT_IDS},
        {"logprobs", required_argument, NULL, OPT_LOGPROBS},
        {"system", required_argument, NULL, OPT_SYSTEM},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    lc_generate_params_init(&o->p);
    o->p.stop = o->stops;
    optind = 0;
    opterr = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "m:n:h", gen_long, NULL)) != -1) {
        unsigned long long u;
        float f;
        switch (ch) {
        case 'm':
            o->p.model = optarg;
            break;
        case 'n':
            if (parse_u64(optarg, INT32_MAX, &u) < 0 || u == 0) BAD_VALUE("--max-tokens");
            o->p.max_tokens = (uint32_t)u;
            break;
        case OPT_TEMPERATURE:
            if (parse_float(optarg, 0.0f, 100.0f, &f) < 0) BAD_VALUE("--temperature");
            o->p.temperature = f;
            break;
        case OPT_TOP_K:
            if (parse_u64(optarg, INT32_MAX, &u) < 0) BAD_VALUE("--top-k");
            o->p.top_k = (int32_t)u;
            break;
        case OPT_TOP_P:
            if (parse_float(optarg, 0.0f, 1.0f, &f) < 0) BAD_VALUE("--top-p");
            o->p.top_p = f;
            break;
        case OPT_MIN_P:
            if (parse_float(optarg, 0.0f, 1.0f, &f) < 0) BAD_VALUE("--min-p");
            o->p.min_p = f;
            break;
        case OPT_REPEAT_PENALTY:
            if (parse_float(optarg, 0.0f, 100.0f, &f) < 0) BAD_VALUE("--repeat-penalty");
            o->p.repeat_penalty = f;
            break;
        case OPT_PRESENCE_PENALTY:
            if (parse_float(optarg, -100.0f, 100.0f, &f) < 0) BAD_VALUE("--presence-penalty");
            o->p.presence_penalty = f;
            break;
        case OPT_FREQUENCY_PENALTY:
            if (parse_float(optarg, -100.0f, 100.0f, &f) < 0) BAD_VALUE("--frequency-penalty");
            o->p.frequency_penalty = f;
            break;
        case OPT_SEED:
            if (parse_u64(optarg, UINT64_MAX, &u) < 0) BAD_VALUE("--seed");
            o->p.seed = u;
            o->p.has_seed = true;
            break;
        case OPT_STOP:
            if (o->p.n_stop >= MAX_STOP_STRINGS) {
                errmsg("at most %d --stop strings", MAX_STOP_STRINGS);
                return EXIT_USAGE;
            }
            if (optarg[0] == '\0') BAD_VALUE("--stop");
            o->stops[o->p.n_stop++] = optarg;
            break;
        case OPT_JSON:
            if (chat) goto bad_option;
            o->json = true;
            break;
        case OPT_IDS:
            if (chat) goto bad_option;
            o->ids = optarg;
            break;
        case OPT_LOGPROBS:
            if (chat) goto bad_option;
            if (parse_u64(optarg, 20, &u) < 0) BAD_VALUE("--logprobs");
            o->p.logprobs = (uint32_t)u;
            break;
        case OPT_SYSTEM:
            if (!chat) goto bad_option;
            o->system = optarg;
            break;
        case 'h':
            usage_generate(stdout, cmd);
            return EXIT_OK;
        default:
            goto usage;
        }
        continue;
    bad_option:
        errmsg("%s: option '%s' is not for this command", cmd, argv[optind - 1]);
    usage:
        fprintf(stderr, "Try 'llamactl %s --help'.\n", cmd);
        return EXIT_USAGE;
    }
    return -1;
}

static int cmd_generate(int argc, char **argv)
{
    gen_opts o;
    memset(&o, 0, sizeof o);
    int rc = parse_gen_opts(argc, argv, "generate", &o);
    if (rc >= 0) return rc;

    int npos = argc - optind;
    if (npos > 1) {
        errmsg("generate takes one PROMPT (quote it); got %d arguments", npos);
        return EXIT_USAGE;
    }
    const char *prompt = npos == 1 ? argv[optind] : NULL;
    if (prompt != NULL && o.ids != NULL) {
        errmsg("give the prompt as text or as --ids, not both");
        return EXIT_USAGE;
    }
    uint32_t *ids = NULL;
    char *stdin_text = NULL;
    if (o.ids != NULL) {
        size_t n;
        const char *bad = "";
        rc = parse_ids(o.ids, &ids, &n, &bad);
        if (rc == -ENOMEM) {
            errmsg("out of memory");
            return EXIT_REQUEST;
        }
        if (rc < 0) {
            errmsg("--ids: '%s' is not a token id (%s)", bad,
                   rc == -ERANGE ? "too large" : "ids are non-negative integers, comma-separated");
            return EXIT_USAGE;
        }
        o.p.prompt_tokens = ids;
        o.p.n_prompt_tokens = n;
    } else {
        if (prompt == NULL) {
            if (isatty(STDIN_FILENO)) {
                errmsg("generate needs a PROMPT ('-' reads it from stdin)");
                fprintf(stderr, "Try 'llamactl generate --help'.\n");
                return EXIT_USAGE;
            }
            prompt = "-";
        }
        if (strcmp(prompt, "-") == 0) {
            size_t len;
            stdin_text = read_stdin(&len);
            if (stdin_text == NULL) {
                errmsg("cannot read the prompt from stdin: %s", strerror(errno));
                return EXIT_REQUEST;
            }
            if (strlen(stdin_text) != len) {
                errmsg("the prompt on stdin contains a NUL byte");
                free(stdin_text);
                return EXIT_USAGE;
            }
            prompt = stdin_text;
        }
        o.p.prompt = prompt;
    }

    gen_state st;
    memset(&st, 0, sizeof st);
    st.json = o.json;
    st.tty = isatty(STDOUT_FILENO);
    st.ended_with_newline = true; /* nothing printed yet */
    lc_conn *c = connect_or_exit();
    install_signals();
    int ec = run_generate(c, &o.p, &st);
    lc_conn_free(c);
    free(ids);
    free(stdin_text);
    return ec;
}

/* ---- chat ----------------------------------------------------------------------------- */

typedef struct history {
    lc_chat_message *msgs;
    size_t n, cap;
} history;

static int history_add(history *h, const char *role, const char *content, size_t len)
{
    if (h->n == h->cap) {
        size_t ncap = h->cap ? h->cap * 2 : 16;
        lc_chat_message *nm = realloc(h->msgs, ncap * sizeof *nm);
        if (nm == NULL) return -ENOMEM;
        h->msgs = nm;
        h->cap = ncap;
    }
    char *copy = strndup(content, len);
    if (copy == NULL) return -ENOMEM;
    h->msgs[h->n].role = role;
    h->msgs[h->n].content = copy;
    h->n++;
    return 0;
}

static void history_truncate(history *h, size_t n)
{
    while (h->n > n)
        free((char *)h->msgs[--h->n].content);
}

static int cmd_chat(int argc, char **argv)
{
    gen_opts o;
    memset(&o, 0, sizeof o);
    int rc = parse_gen_opts(argc, argv, "chat", &o);
    if (rc >= 0) return rc;
    if (optind < argc) {
        errmsg("chat takes no arguments (it reads the messages from stdin)");
        return EXIT_USAGE;
    }
    bool tty_in = isatty(STDIN_FILENO);
    bool tty_out = isatty(STDOUT_FILENO);
    history h = {0};
    size_t base = 0;
    if (o.system != NULL) {
        if (history_add(&h, "system", o.system, strlen(o.system)) < 0) {
            errmsg("out of memory");
            return EXIT_REQUEST;
        }
        base = 1;
    }
    lc_conn *c = connect_or_exit();
    install_signals();
    char *line = NULL;
    size_t line_cap = 0;
    int ec = EXIT_OK;
    for (;;) {
        if (tty_in) {
            fputs("> ", stderr);
            fflush(stderr);
        }
        errno = 0;
        ssize_t len = getline(&line, &line_cap, stdin);
        if (g_sigint > 0) {
            if (tty_in) fputc('\n', stderr);
            ec = EXIT_INTERRUPTED;
            break;
        }
        if (len < 0) {
            if (tty_in) fputc('\n', stderr);
            break; /* end of input */
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0) continue;
        if (strcmp(line, "/exit") == 0 || strcmp(line, "/quit") == 0) break;
        if (strcmp(line, "/reset") == 0) {
            history_truncate(&h, base);
            if (tty_in) fputs("(history cleared)\n", stderr);
            continue;
        }
        size_t turn_start = h.n;
        if (history_add(&h, "user", line, (size_t)len) < 0) {
            errmsg("out of memory");
            ec = EXIT_REQUEST;
            break;
        }
        gen_state st;
        memset(&st, 0, sizeof st);
        st.tty = tty_out;
        st.keep_reply = true;
        o.p.messages = h.msgs;
        o.p.n_messages = h.n;
        int gec = run_generate(c, &o.p, &st);
        if (st.reply_len == 0 || st.reply[st.reply_len - 1] != '\n') fputc('\n', stdout);
        fflush(stdout);
        if (gec == EXIT_INTERRUPTED && tty_in && g_sigint == 1) {
            /* Ctrl-C at a terminal cancels this reply only; the turn is forgotten. */
            fputs("(cancelled)\n", stderr);
            g_sigint = 0;
            drain_sigpipe();
            history_truncate(&h, turn_start);
            free(st.reply);
            continue;
        }
        if (gec != EXIT_OK) {
            free(st.reply);
            ec = gec;
            break;
        }
        rc = history_add(&h, "assistant", st.reply ? st.reply : "", st.reply_len);
        free(st.reply);
        if (rc < 0) {
            errmsg("out of memory");
            ec = EXIT_REQUEST;
            break;
        }
    }
    free(line);
    history_truncate(&h, 0);
    free(h.msgs);
    lc_conn_free(c);
    return ec;
}

/* ---- status, models, tokenize, detokenize --------------------------------------------- */

static int simple_opts(int argc, char **argv, const char *cmd, const char *usage, bool *json,
                       const char **model, bool *no_special)
{
    static const struct option lo[] = {
        {"json", no_argument, NULL, OPT_JSON},
        {"model", required_argument, NULL, 'm'},
        {"no-special", no_argument, NULL, OPT_NO_SPECIAL},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    optind = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "m:h", lo, NULL)) != -1) {
        switch (ch) {
        case OPT_JSON:
            *json = true;
            break;
        case 'm':
            if (model == NULL) goto bad;
            *model = optarg;
            break;
        case OPT_NO_SPECIAL:
            if (no_special == NULL) goto bad;
            *no_special = true;
            break;
        case 'h':
            fputs(usage, stdout);
            return EXIT_OK;
        default:
            fprintf(stderr, "Try 'llamactl %s --help'.\n", cmd);
            return EXIT_USAGE;
        }
        continue;
    bad:
        errmsg("%s: option '%s' is not for this command", cmd, argv[optind - 1]);
        return EXIT_USAGE;
    }
    return -1;
}

static void print_status_text(const lc_status *s)
{
    printf("default model:      %s\n", s->default_model);
    printf("loaded models:     ");
    for (size_t i = 0; i < s->n_loaded_models; i++)
        printf(" %s", s->loaded_models[i]);
    printf("\n");
    printf("uptime:             %llu s\n", (unsigned long long)s->uptime_seconds);
    printf("connections:        %u\n", s->connections);
    printf("running sequences:  %u\n", s->running_sequences);
    printf("queued requests:    %u\n", s->queue_depth);
    printf("kv blocks:          %llu used, %llu cached, %llu total (%u tokens each)\n",
           (unsigned long long)s->kv_blocks_used, (unsigned long long)s->kv_blocks_cached,
           (unsigned long long)s->kv_blocks_total, s->kv_block_size);
    printf("prefix cache hits:  %.1f%%\n", s->prefix_cache_hit_rate * 100.0);
    printf("tokens/s (60 s):    %.1f\n", s->tokens_per_second);
    printf("memory:             %llu bytes allocated, %llu resident\n",
           (unsigned long long)s->mem_allocated_bytes, (unsigned long long)s->mem_resident_bytes);
}

static void print_status_json(const lc_status *s)
{
    jw w;
    jw_init(&w, stdout);
    jw_obj_begin(&w);
    jw_key(&w, "default_model");
    jw_cstr(&w, s->default_model);
    jw_key(&w, "loaded_models");
    jw_arr_begin(&w);
    for (size_t i = 0; i < s->n_loaded_models; i++)
        jw_cstr(&w, s->loaded_models[i]);
    jw_arr_end(&w);
    jw_key(&w, "queue_depth");
    jw_uint(&w, s->queue_depth);
    jw_key(&w, "running_sequences");
    jw_uint(&w, s->running_sequences);
    jw_key(&w, "kv_blocks_total");
    jw_uint(&w, s->kv_blocks_total);
    jw_key(&w, "kv_blocks_used");
    jw_uint(&w, s->kv_blocks_used);
    jw_key(&w, "kv_blocks_cached");
    jw_uint(&w, s->kv_blocks_cached);
    jw_key(&w, "kv_block_size");
    jw_uint(&w, s->kv_block_size);
    jw_key(&w, "prefix_cache_hit_rate");
    jw_double(&w, s->prefix_cache_hit_rate);
    jw_key(&w, "tokens_per_second");
    jw_double(&w, s->tokens_per_second);
    jw_key(&w, "uptime_seconds");
    jw_uint(&w, s->uptime_seconds);
    jw_key(&w, "connections");
    jw_uint(&w, s->connections);
    jw_key(&w, "jemalloc_allocated_bytes");
    jw_uint(&w, s->mem_allocated_bytes);
    jw_key(&w, "jemalloc_resident_bytes");
    jw_uint(&w, s->mem_resident_bytes);
    jw_obj_end(&w);
    jw_end_line(&w);
}

static int request_failed(lc_conn *c, int rc)
{
    (void)rc;
    errmsg("%s", lc_conn_error(c));
    return EXIT_REQUEST;
}

static int cmd_status(int argc, char **argv)
{
    bool json = false;
    int rc = simple_opts(argc, argv, "status",
                         "Usage: llamactl status [--json]\n\nThe daemon's status: load, KV "
                         "cache, counters, memory.\n",
                         &json, NULL, NULL);
    if (rc >= 0) return rc;
    if (optind < argc) {
        errmsg("status takes no arguments");
        return EXIT_USAGE;
    }
    lc_conn *c = connect_or_exit();
    lc_status *s = NULL;
    rc = lc_get_status(c, &s);
    int ec = EXIT_OK;
    if (rc < 0) {
        ec = request_failed(c, rc);
    } else {
        if (json)
            print_status_json(s);
        else
            print_status_text(s);
        free(s);
    }
    lc_conn_free(c);
    return ec;
}

typedef struct models_state {
    bool json;
    bool done;
    int err;
} models_state;

static void models_callback(lc_conn *c, const lc_event *ev, void *ud)
{
    (void)c;
    models_state *st = ud;
    st->done = true;
    if (ev->type != LC_EVENT_MODELS) {
        st->err = ev->type == LC_EVENT_ERROR ? ev->u.error.code : LC_ERR_PROTO;
        return;
    }
    const lc_model_info *m = ev->u.models.models;
    size_t n = ev->u.models.n_models;
    if (st->json) {
        jw w;
        jw_init(&w, stdout);
        jw_obj_begin(&w);
        jw_key(&w, "models");
        jw_arr_begin(&w);
        for (size_t i = 0; i < n; i++) {
            jw_obj_begin(&w);
            jw_key(&w, "name");
            jw_cstr(&w, m[i].name ? m[i].name : "");
            jw_key(&w, "path");
            jw_cstr(&w, m[i].path ? m[i].path : "");
            jw_key(&w, "default");
            jw_bool(&w, m[i].is_default);
            jw_key(&w, "architecture");
            jw_cstr(&w, m[i].architecture);
            jw_key(&w, "quantization");
            jw_cstr(&w, m[i].quantization);
            jw_key(&w, "parameter_count");
            jw_uint(&w, m[i].parameter_count);
            jw_key(&w, "context_length");
            jw_uint(&w, m[i].context_length);
            jw_key(&w, "vocab_size");
            jw_uint(&w, m[i].vocab_size);
            jw_obj_end(&w);
        }
        jw_arr_end(&w);
        jw_obj_end(&w);
        jw_end_line(&w);
    } else {
        for (size_t i = 0; i < n; i++) {
            printf("%s%s\t%s", m[i].name, m[i].is_default ? " (default)" : "", m[i].path);
            if (m[i].architecture[0]) printf("\t%s", m[i].architecture);
            if (m[i].quantization[0]) printf("\t%s", m[i].quantization);
            if (m[i].context_length) printf("\tctx %u", m[i].context_length);
            if (m[i].vocab_size) printf("\tvocab %u", m[i].vocab_size);
            putchar('\n');
        }
    }
}

static int cmd_models(int argc, char **argv)
{
    bool json = false;
    int rc = simple_opts(argc, argv, "models",
                         "Usage: llamactl models [--json]\n\nThe models the daemon serves (the "
                         "default one is marked).\n",
                         &json, NULL, NULL);
    if (rc >= 0) return rc;
    if (optind < argc) {
        errmsg("models takes no arguments");
        return EXIT_USAGE;
    }
    lc_conn *c = connect_or_exit();
    models_state st = {.json = json};
    uint64_t id;
    rc = lc_submit_models(c, models_callback, &st, &id);
    if (rc == 0) rc = lc_wait_request(c, id, -1);
    while (rc == LC_ERR_INTR)
        rc = lc_wait_request(c, id, -1);
    int ec = EXIT_OK;
    if (rc < 0 || st.err < 0) ec = request_failed(c, rc < 0 ? rc : st.err);
    lc_conn_free(c);
    return ec;
}

static int cmd_tokenize(int argc, char **argv)
{
    bool json = false, no_special = false;
    const char *model = NULL;
    int rc = simple_opts(argc, argv, "tokenize",
                         "Usage: llamactl tokenize [-m MODEL] [--no-special] [--json] TEXT|-\n\n"
                         "Prints the token ids of TEXT ('-': read it from stdin), comma-"
                         "separated\n(usable with 'llamactl generate --ids').\n"
                         "  --no-special  do not add the model's special tokens (BOS)\n",
                         &json, &model, &no_special);
    if (rc >= 0) return rc;
    if (argc - optind != 1) {
        errmsg("tokenize takes one TEXT (quote it; '-' reads stdin)");
        return EXIT_USAGE;
    }
    const char *text = argv[optind];
    char *stdin_text = NULL;
    if (strcmp(text, "-") == 0) {
        size_t len;
        stdin_text = read_stdin(&len);
        if (stdin_text == NULL) {
            errmsg("cannot read stdin: %s", strerror(errno));
            return EXIT_REQUEST;
        }
        text = stdin_text;
    }
    lc_conn *c = connect_or_exit();
    uint32_t *toks = NULL;
    size_t n = 0;
    rc = lc_tokenize(c, model, text, no_special ? LC_TOKENIZE_NO_SPECIAL : 0, &toks, &n);
    int ec = EXIT_OK;
    if (rc < 0) {
        ec = request_failed(c, rc);
    } else if (json) {
        jw w;
        jw_init(&w, stdout);
        jw_obj_begin(&w);
        jw_key(&w, "tokens");
        jw_arr_begin(&w);
        for (size_t i = 0; i < n; i++)
            jw_uint(&w, toks[i]);
        jw_arr_end(&w);
        jw_key(&w, "count");
        jw_uint(&w, n);
        jw_obj_end(&w);
        jw_end_line(&w);
    } else {
        for (size_t i = 0; i < n; i++)
            printf(i ? ",%u" : "%u", (unsigned)toks[i]);
        putchar('\n');
    }
    free(toks);
    free(stdin_text);
    lc_conn_free(c);
    return ec;
}

static int cmd_detokenize(int argc, char **argv)
{
    bool json = false;
    const char *model = NULL;
    int rc = simple_opts(argc, argv, "detokenize",
                         "Usage: llamactl detokenize [-m MODEL] [--json] ID,ID,...\n\n"
                         "Prints the text of the token ids.\n",
                         &json, &model, NULL);
    if (rc >= 0) return rc;
    if (argc - optind != 1) {
        errmsg("detokenize takes one comma-separated list of token ids");
        return EXIT_USAGE;
    }
    uint32_t *ids;
    size_t n;
    const char *bad = "";
    rc = parse_ids(argv[optind], &ids, &n, &bad);
    if (rc == -ENOMEM) {
        errmsg("out of memory");
        return EXIT_REQUEST;
    }
    if (rc < 0) {
        errmsg("'%s' is not a token id (%s)", bad,
               rc == -ERANGE ? "too large" : "ids are non-negative integers, comma-separated");
        return EXIT_USAGE;
    }
    lc_conn *c = connect_or_exit();
    char *text = NULL;
    size_t text_len = 0;
    rc = lc_detokenize(c, model, ids, n, &text, &text_len);
    int ec = EXIT_OK;
    if (rc < 0) {
        ec = request_failed(c, rc);
    } else if (json) {
        jw w;
        jw_init(&w, stdout);
        jw_obj_begin(&w);
        jw_key(&w, "text");
        jw_str(&w, text, text_len);
        jw_obj_end(&w);
        jw_end_line(&w);
    } else {
        fwrite(text, 1, text_len, stdout);
        if (text_len == 0 || text[text_len - 1] != '\n') putchar('\n');
    }
    free(text);
    free(ids);
    lc_conn_free(c);
    return ec;
}

/* ---- main ----------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    static const struct option global_long[] = {
        {"socket", required_argument, NULL, OPT_SOCKET},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    /* '+': stop at the command; its options are parsed by the command. */
    while ((ch = getopt_long(argc, argv, "+hV", global_long, NULL)) != -1) {
        switch (ch) {
        case OPT_SOCKET:
            if (optarg[0] == '\0') {
                errmsg("--socket needs a path");
                return EXIT_USAGE;
            }
            g_socket = optarg;
            break;
        case 'h':
            usage_main(stdout);
            return EXIT_OK;
        case 'V':
            printf("llamactl %s (libllamactl %s)\n", LC_VERSION_STRING, lc_version());
            return EXIT_OK;
        default:
            fprintf(stderr, "Try 'llamactl --help'.\n");
            return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        errmsg("no command given");
        usage_main(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[optind];
    int sub_argc = argc - optind;
    char **sub_argv = argv + optind;
    /* getopt's messages name the command: "llamactl generate: invalid option" */
    static char sub_name[64];
    snprintf(sub_name, sizeof sub_name, "llamactl %s", cmd);
    sub_argv[0] = sub_name;
    if (strcmp(cmd, "generate") == 0) return cmd_generate(sub_argc, sub_argv);
    if (strcmp(cmd, "chat") == 0) return cmd_chat(sub_argc, sub_argv);
    if (strcmp(cmd, "status") == 0) return cmd_status(sub_argc, sub_argv);
    if (strcmp(cmd, "models") == 0) return cmd_models(sub_argc, sub_argv);
    if (strcmp(cmd, "tokenize") == 0) return cmd_tokenize(sub_argc, sub_argv);
    if (strcmp(cmd, "detokenize") == 0) return cmd_detokenize(sub_argc, sub_argv);
    if (strcmp(cmd, "help") == 0) {
        usage_main(stdout);
        return EXIT_OK;
    }
    errmsg("unknown command '%s'", cmd);
    fprintf(stderr, "Try 'llamactl --help'.\n");
    return EXIT_USAGE;
}
