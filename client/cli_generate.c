/* llamactl generate and chat. */
#include "cli.h"
#include "jsonw.h"

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
    /* a string: the daemon's seeds use all 64 bits, beyond what many JSON readers take */
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)d->seed);
    jw_key(&w, "seed");
    jw_cstr(&w, seed);
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
        cli_err("%s", lc_conn_error(c));
        return EXIT_REQUEST;
    }
    bool cancel_sent = false;
    while (!st->finished) {
        if (cli_sigint > 0 && !cancel_sent) {
            cli_drain_sigpipe();
            cancel_sent = true;
            if (lc_cancel(c, id) < 0) break;
        }
        if (cli_sigint > 1) {
            /* a second Ctrl-C: do not wait for the daemon any longer */
            return EXIT_INTERRUPTED;
        }
        struct pollfd pfd[2] = {
            {.fd = lc_conn_fd(c), .events = POLLIN | (lc_conn_want_write(c) ? POLLOUT : 0)},
            {.fd = cli_sigpipe[0], .events = POLLIN},
        };
        int n = poll(pfd, cli_sigpipe[0] >= 0 ? 2 : 1, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            cli_err("poll: %s", strerror(errno));
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
        cli_err("%s", lc_conn_error(c));
        return EXIT_REQUEST;
    }
    if (st->failed) {
        if (cancel_sent && st->err_code != LC_ERR_SERVER) return EXIT_INTERRUPTED;
        cli_err("%s", st->err_msg);
        return EXIT_REQUEST;
    }
    if (cancel_sent) return EXIT_INTERRUPTED;
    return EXIT_OK;
}

typedef struct gen_opts {
    lc_generate_params p;
    const char *stops[MAX_STOP_STRINGS];
    const char *ids;
    const char *system;
    bool json;
} gen_opts;

#define BAD_VALUE(optname)                                                                         \
    do {                                                                                           \
        cli_err("invalid value for %s: '%s'", optname, optarg);                                    \
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
            if (cli_parse_u64(optarg, INT32_MAX, &u) < 0 || u == 0) BAD_VALUE("--max-tokens");
            o->p.max_tokens = (uint32_t)u;
            break;
        case OPT_TEMPERATURE:
            if (cli_parse_float(optarg, 0.0f, 100.0f, &f) < 0) BAD_VALUE("--temperature");
            o->p.temperature = f;
            break;
        case OPT_TOP_K:
            if (cli_parse_u64(optarg, INT32_MAX, &u) < 0) BAD_VALUE("--top-k");
            o->p.top_k = (int32_t)u;
            break;
        case OPT_TOP_P:
            if (cli_parse_float(optarg, 0.0f, 1.0f, &f) < 0) BAD_VALUE("--top-p");
            o->p.top_p = f;
            break;
        case OPT_MIN_P:
            if (cli_parse_float(optarg, 0.0f, 1.0f, &f) < 0) BAD_VALUE("--min-p");
            o->p.min_p = f;
            break;
        case OPT_REPEAT_PENALTY:
            if (cli_parse_float(optarg, 0.0f, 100.0f, &f) < 0) BAD_VALUE("--repeat-penalty");
            o->p.repeat_penalty = f;
            break;
        case OPT_PRESENCE_PENALTY:
            if (cli_parse_float(optarg, -100.0f, 100.0f, &f) < 0) BAD_VALUE("--presence-penalty");
            o->p.presence_penalty = f;
            break;
        case OPT_FREQUENCY_PENALTY:
            if (cli_parse_float(optarg, -100.0f, 100.0f, &f) < 0) BAD_VALUE("--frequency-penalty");
            o->p.frequency_penalty = f;
            break;
        case OPT_SEED:
            if (cli_parse_u64(optarg, UINT64_MAX, &u) < 0) BAD_VALUE("--seed");
            o->p.seed = u;
            o->p.has_seed = true;
            break;
        case OPT_STOP:
            if (o->p.n_stop >= MAX_STOP_STRINGS) {
                cli_err("at most %d --stop strings", MAX_STOP_STRINGS);
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
            if (cli_parse_u64(optarg, 20, &u) < 0) BAD_VALUE("--logprobs");
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
        cli_err("%s: option '%s' is not for this command", cmd, argv[optind - 1]);
    usage:
        fprintf(stderr, "Try 'llamactl %s --help'.\n", cmd);
        return EXIT_USAGE;
    }
    return -1;
}

int cmd_generate(int argc, char **argv)
{
    gen_opts o;
    memset(&o, 0, sizeof o);
    int rc = parse_gen_opts(argc, argv, "generate", &o);
    if (rc >= 0) return rc;

    int npos = argc - optind;
    if (npos > 1) {
        cli_err("generate takes one PROMPT (quote it); got %d arguments", npos);
        return EXIT_USAGE;
    }
    const char *prompt = npos == 1 ? argv[optind] : NULL;
    if (prompt != NULL && o.ids != NULL) {
        cli_err("give the prompt as text or as --ids, not both");
        return EXIT_USAGE;
    }
    uint32_t *ids = NULL;
    char *stdin_text = NULL;
    if (o.ids != NULL) {
        size_t n;
        const char *bad = "";
        rc = cli_parse_ids(o.ids, &ids, &n, &bad);
        if (rc == -ENOMEM) {
            cli_err("out of memory");
            return EXIT_REQUEST;
        }
        if (rc < 0) {
            cli_err("--ids: '%s' is not a token id (%s)", bad,
                    rc == -ERANGE ? "too large" : "ids are non-negative integers, comma-separated");
            return EXIT_USAGE;
        }
        o.p.prompt_tokens = ids;
        o.p.n_prompt_tokens = n;
    } else {
        if (prompt == NULL) {
            if (isatty(STDIN_FILENO)) {
                cli_err("generate needs a PROMPT ('-' reads it from stdin)");
                fprintf(stderr, "Try 'llamactl generate --help'.\n");
                return EXIT_USAGE;
            }
            prompt = "-";
        }
        if (strcmp(prompt, "-") == 0) {
            size_t len;
            stdin_text = cli_read_stdin(&len);
            if (stdin_text == NULL) {
                cli_err("cannot read the prompt from stdin: %s", strerror(errno));
                return EXIT_REQUEST;
            }
            if (strlen(stdin_text) != len) {
                cli_err("the prompt on stdin contains a NUL byte");
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
    lc_conn *c = cli_connect();
    cli_install_signals();
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

int cmd_chat(int argc, char **argv)
{
    gen_opts o;
    memset(&o, 0, sizeof o);
    int rc = parse_gen_opts(argc, argv, "chat", &o);
    if (rc >= 0) return rc;
    if (optind < argc) {
        cli_err("chat takes no arguments (it reads the messages from stdin)");
        return EXIT_USAGE;
    }
    bool tty_in = isatty(STDIN_FILENO);
    bool tty_out = isatty(STDOUT_FILENO);
    history h = {0};
    size_t base = 0;
    if (o.system != NULL) {
        if (history_add(&h, "system", o.system, strlen(o.system)) < 0) {
            cli_err("out of memory");
            return EXIT_REQUEST;
        }
        base = 1;
    }
    lc_conn *c = cli_connect();
    cli_install_signals();
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
        if (cli_sigint > 0) {
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
            cli_err("out of memory");
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
        if (gec == EXIT_OK ? st.reply_len == 0 || st.reply[st.reply_len - 1] != '\n'
                           : st.reply_len > 0 && st.reply[st.reply_len - 1] != '\n')
            fputc('\n', stdout);
        fflush(stdout);
        if (gec == EXIT_INTERRUPTED && tty_in && cli_sigint == 1) {
            /* Ctrl-C at a terminal cancels this reply only; the turn is forgotten. */
            fputs("(cancelled)\n", stderr);
            cli_sigint = 0;
            cli_drain_sigpipe();
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
            cli_err("out of memory");
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
