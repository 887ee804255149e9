/* bench_serve: llamad measured through its socket, as clients see it (issue 9).
 *
 * Two workloads (see bench/README.md):
 *   concurrent (default): for each N in --clients (1,4,16,64), N connections each submit one
 *       Generate (a distinct prompt of --prompt-tokens random token ids, --gen-tokens
 *       generated) at the same moment; aggregate generated tok/s, time to first token and
 *       inter-token latency percentiles.
 *   prefix (--prefix, or the bench_prefix binary): requests that share a long system prompt;
 *       time to first token cold (the system prompt is not in the prefix cache) against warm
 *       (it is), and the prefix-cache hit rate.
 *
 * One process drives every connection with libllamactl's non-blocking API (lc_conn_fd,
 * lc_conn_process, lc_conn_flush, poll). Times are CLOCK_MONOTONIC at chunk arrival.
 * It starts its own llamad (or uses a running one with --socket), prints a table and writes
 * JSON. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "jsonw.h"
#include "llamactl.h"

#ifndef LLAMAD_DEFAULT_EXE
#define LLAMAD_DEFAULT_EXE "llamad"
#endif
#ifndef BENCH_DEFAULT_PREFIX
#define BENCH_DEFAULT_PREFIX 0
#endif

/* ---- options ---- */

typedef struct opts {
    const char *model;
    const char *llamad;
    const char *socket; /* use a running daemon */
    const char *json;
    int threads, kv_cache_mib, max_seqs, max_batch_tokens, block_size;
    const char *daemon_args[16];
    int n_daemon_args;
    int clients[16];
    int n_clients;
    int prompt_tokens, gen_tokens;
    float temperature;
    uint64_t seed;
    bool same_prompt;
    bool prefix;
    int prefix_tokens, suffix_tokens, requests, cold_requests, prefix_gen;
    bool quiet;
} opts;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_serve MODEL.gguf [options]        (concurrent clients)\n"
            "       bench_serve MODEL.gguf --prefix [options]   (shared-prefix workload; = bench_prefix)\n"
            "daemon:\n"
            "  --llamad PATH            llamad binary (default: the build's, %s)\n"
            "  --socket PATH            use a running llamad instead of starting one (MODEL unused)\n"
            "  --threads N              (2)        --kv-cache-mib N    (512)\n"
            "  --max-seqs N             (64)       --max-batch-tokens N (512)\n"
            "  --block-size N           (daemon default)\n"
            "  --daemon-arg ARG         one more llamad argument (repeatable), e.g. --daemon-arg=--log-level=debug\n"
            "concurrent workload:\n"
            "  --clients LIST           numbers of concurrent clients (1,4,16,64)\n"
            "  --prompt-tokens N        prompt length in tokens (128)\n"
            "  --gen-tokens N           max_tokens of each request (128)\n"
            "  --same-prompt            every client sends the same prompt (the prefix cache helps)\n"
            "shared-prefix workload (--prefix):\n"
            "  --prefix-tokens N        system prompt length (1024)\n"
            "  --suffix-tokens N        distinct suffix per request (16)\n"
            "  --requests N             warm requests (32)\n"
            "  --cold-requests N        cold requests, each with a new system prompt (3)\n"
            "  --prefix-gen N           max_tokens of each request (4)\n"
            "common:\n"
            "  --temperature T          0 = greedy (0)\n"
            "  --seed S                 prompt ids and sampling seed (42)\n"
            "  --json PATH              JSON output (bench_serve.json / bench_prefix.json)\n"
            "  --quiet                  no table\n",
            LLAMAD_DEFAULT_EXE);
}

static int parse_int(const char *s, int lo, int hi, const char *what)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "bench_serve: %s: '%s' is not a number in %d..%d\n", what, s, lo, hi);
        exit(2);
    }
    return (int)v;
}

static void parse_args(opts *o, int argc, char **argv)
{
    *o = (opts){.llamad = LLAMAD_DEFAULT_EXE, .threads = 2, .kv_cache_mib = 512, .max_seqs = 64,
                .max_batch_tokens = 512, .prompt_tokens = 128, .gen_tokens = 128, .seed = 42,
                .prefix = BENCH_DEFAULT_PREFIX, .prefix_tokens = 1024, .suffix_tokens = 16,
                .requests = 32, .cold_requests = 3, .prefix_gen = 4,
                .clients = {1, 4, 16, 64}, .n_clients = 4};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
        char name[64];
        if (strncmp(a, "--", 2) == 0) {
            const char *eq = strchr(a, '=');
            size_t n = eq ? (size_t)(eq - a) : strlen(a);
            if (n >= sizeof name) n = sizeof name - 1;
            memcpy(name, a, n);
            name[n] = '\0';
            if (eq) v = eq + 1;
        } else {
            if (o->model) {
                fprintf(stderr, "bench_serve: unexpected argument '%s'\n", a);
                exit(2);
            }
            o->model = a;
            continue;
        }
#define FLAG(s) (strcmp(name, s) == 0)
#define VAL() (v ? v : (i + 1 < argc ? argv[++i] : (fprintf(stderr, "bench_serve: %s needs a value\n", name), exit(2), "")))
        if (FLAG("--help")) {
            usage(stdout);
            exit(0);
        } else if (FLAG("--prefix")) o->prefix = true;
        else if (FLAG("--concurrent")) o->prefix = false;
        else if (FLAG("--same-prompt")) o->same_prompt = true;
        else if (FLAG("--quiet")) o->quiet = true;
        else if (FLAG("--llamad")) o->llamad = VAL();
        else if (FLAG("--socket")) o->socket = VAL();
        else if (FLAG("--json")) o->json = VAL();
        else if (FLAG("--threads")) o->threads = parse_int(VAL(), 0, 1024, name);
        else if (FLAG("--kv-cache-mib")) o->kv_cache_mib = parse_int(VAL(), 1, 1 << 20, name);
        else if (FLAG("--max-seqs")) o->max_seqs = parse_int(VAL(), 1, 4096, name);
        else if (FLAG("--max-batch-tokens")) o->max_batch_tokens = parse_int(VAL(), 1, 65536, name);
        else if (FLAG("--block-size")) o->block_size = parse_int(VAL(), 1, 1024, name);
        else if (FLAG("--daemon-arg")) {
            if (o->n_daemon_args >= 16) {
                fprintf(stderr, "bench_serve: too many --daemon-arg\n");
                exit(2);
            }
            o->daemon_args[o->n_daemon_args++] = VAL();
        } else if (FLAG("--clients")) {
            char buf[256];
            snprintf(buf, sizeof buf, "%s", VAL());
            o->n_clients = 0;
            for (char *s = strtok(buf, ","); s; s = strtok(NULL, ",")) {
                if (o->n_clients >= 16) {
                    fprintf(stderr, "bench_serve: at most 16 client counts\n");
                    exit(2);
                }
                o->clients[o->n_clients++] = parse_int(s, 1, 1024, name);
            }
            if (o->n_clients == 0) {
                fprintf(stderr, "bench_serve: --clients: empty list\n");
                exit(2);
            }
        } else if (FLAG("--prompt-tokens")) o->prompt_tokens = parse_int(VAL(), 1, 1 << 20, name);
        else if (FLAG("--gen-tokens")) o->gen_tokens = parse_int(VAL(), 1, 1 << 20, name);
        else if (FLAG("--prefix-tokens")) o->prefix_tokens = parse_int(VAL(), 1, 1 << 20, name);
        else if (FLAG("--suffix-tokens")) o->suffix_tokens = parse_int(VAL(), 1, 1 << 16, name);
        else if (FLAG("--requests")) o->requests = parse_int(VAL(), 1, 1024, name);
        else if (FLAG("--cold-requests")) o->cold_requests = parse_int(VAL(), 1, 1024, name);
        else if (FLAG("--prefix-gen")) o->prefix_gen = parse_int(VAL(), 1, 1 << 20, name);
        else if (FLAG("--temperature")) o->temperature = strtof(VAL(), NULL);
        else if (FLAG("--seed")) o->seed = strtoull(VAL(), NULL, 0);
        else {
            fprintf(stderr, "bench_serve: unknown option %s (--help lists them)\n", a);
            exit(2);
        }
#undef FLAG
#undef VAL
    }
    if (!o->model && !o->socket) {
        usage(stderr);
        exit(2);
    }
    if (!o->json) o->json = o->prefix ? "bench_prefix.json" : "bench_serve.json";
}

/* ---- small helpers ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng_next(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* n random ids in [lo, vocab) (below lo: BOS/EOS and other specials of small vocabs). */
static void random_ids(uint32_t *out, int n, uint32_t vocab, uint64_t seed)
{
    uint32_t lo = vocab > 1000 ? 256 : 3;
    uint64_t s = seed;
    for (int i = 0; i < n; i++) out[i] = lo + (uint32_t)(rng_next(&s) % (vocab - lo));
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Percentile p (0..100) of n values, nearest rank; sorts v. NAN when n == 0. */
static double pct(double *v, size_t n, double p)
{
    if (n == 0) return NAN;
    qsort(v, n, sizeof *v, cmp_double);
    size_t k = (size_t)ceil(p / 100.0 * (double)n);
    if (k < 1) k = 1;
    if (k > n) k = n;
    return v[k - 1];
}

/* ---- the daemon ---- */

typedef struct daemon_proc {
    pid_t pid;
    char dir[64];
    char sock[128];
} daemon_proc;

static daemon_proc g_daemon;
static double g_load_at_start = NAN;

static void stop_daemon(void)
{
    if (g_daemon.pid > 0) {
        kill(g_daemon.pid, SIGTERM);
        int st;
        for (int i = 0; i < 500; i++) {
            if (waitpid(g_daemon.pid, &st, WNOHANG) == g_daemon.pid) goto reaped;
            usleep(10000);
        }
        kill(g_daemon.pid, SIGKILL);
        waitpid(g_daemon.pid, &st, 0);
    reaped:
        g_daemon.pid = 0;
    }
    if (g_daemon.sock[0]) unlink(g_daemon.sock);
    if (g_daemon.dir[0]) rmdir(g_daemon.dir);
    g_daemon.sock[0] = g_daemon.dir[0] = '\0';
}

static void on_signal(int sig)
{
    (void)sig;
    if (g_daemon.pid > 0) kill(g_daemon.pid, SIGKILL);
    _exit(130);
}

static void start_daemon(const opts *o)
{
    snprintf(g_daemon.dir, sizeof g_daemon.dir, "/tmp/bench_serve.XXXXXX");
    if (!mkdtemp(g_daemon.dir)) {
        fprintf(stderr, "bench_serve: mkdtemp: %s\n", strerror(errno));
        exit(1);
    }
    snprintf(g_daemon.sock, sizeof g_daemon.sock, "%s/llamad.sock", g_daemon.dir);
    char a_threads[32], a_kv[32], a_seqs[32], a_batch[32], a_block[32], a_model[4200], a_tok[64];
    snprintf(a_threads, sizeof a_threads, "--threads=%d", o->threads);
    snprintf(a_kv, sizeof a_kv, "--kv-cache-mib=%d", o->kv_cache_mib);
    snprintf(a_seqs, sizeof a_seqs, "--max-seqs=%d", o->max_seqs);
    snprintf(a_batch, sizeof a_batch, "--max-batch-tokens=%d", o->max_batch_tokens);
    snprintf(a_block, sizeof a_block, "--block-size=%d", o->block_size);
    snprintf(a_model, sizeof a_model, "--model=%s", o->model);
    int longest = o->prefix ? o->prefix_tokens + o->suffix_tokens : o->prompt_tokens;
    snprintf(a_tok, sizeof a_tok, "--max-tokens=%d", o->gen_tokens > o->prefix_gen ? o->gen_tokens : o->prefix_gen);
    char a_prompt[64];
    snprintf(a_prompt, sizeof a_prompt, "--max-prompt-tokens=%d", longest > 4096 ? longest : 4096);
    const char *argv[48];
    int n = 0;
    argv[n++] = o->llamad;
    argv[n++] = "--config=/dev/null";
    argv[n++] = "--socket";
    argv[n++] = g_daemon.sock;
    argv[n++] = a_model;
    argv[n++] = a_threads;
    argv[n++] = a_kv;
    argv[n++] = a_seqs;
    argv[n++] = a_batch;
    argv[n++] = a_tok;
    argv[n++] = a_prompt;
    argv[n++] = "--max-queue=4096";
    argv[n++] = "--max-connections=4096";
    argv[n++] = "--log-level=warn";
    if (o->block_size) argv[n++] = a_block;
    for (int i = 0; i < o->n_daemon_args; i++) argv[n++] = o->daemon_args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "bench_serve: fork: %s\n", strerror(errno));
        exit(1);
    }
    if (pid == 0) {
        execv(o->llamad, (char *const *)argv);
        fprintf(stderr, "bench_serve: cannot run %s: %s\n", o->llamad, strerror(errno));
        _exit(127);
    }
    g_daemon.pid = pid;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    atexit(stop_daemon);
    /* wait until it accepts connections */
    double t0 = now_s();
    for (;;) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            g_daemon.pid = 0;
            fprintf(stderr, "bench_serve: llamad exited at start-up (status %d)\n",
                    WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
            exit(1);
        }
        lc_options lo = {.socket_path = g_daemon.sock, .client_name = "bench_serve", .timeout_ms = 2000};
        lc_conn *c = lc_conn_new(&lo);
        if (!c) exit(1);
        int rc = lc_conn_connect(c);
        lc_conn_free(c);
        if (rc == 0) break;
        if (now_s() - t0 > 120) {
            fprintf(stderr, "bench_serve: llamad did not accept connections within 120 s\n");
            exit(1);
        }
        usleep(20000);
    }
}

static lc_conn *connect_or_die(const char *sock)
{
    lc_options lo = {.socket_path = sock, .client_name = "bench_serve"};
    lc_conn *c = lc_conn_new(&lo);
    if (!c) {
        fprintf(stderr, "bench_serve: out of memory\n");
        exit(1);
    }
    int rc = lc_conn_connect(c);
    if (rc) {
        fprintf(stderr, "bench_serve: connect: %s\n", lc_conn_error(c));
        exit(1);
    }
    return c;
}

/* ---- one round: several streams at once ---- */

typedef struct stream {
    lc_conn *conn;
    const uint32_t *prompt;
    int n_prompt;
    double t_submit, t_first, t_prev, t_done;
    int n_tokens, n_chunks;
    bool done, failed;
    lc_done info;
    double *gaps; /* ITL samples of this stream */
    int n_gaps, cap_gaps;
    double *times; /* arrival time of each token (NULL: not kept) */
} stream;

static void on_event(lc_conn *c, const lc_event *ev, void *ud)
{
    (void)c;
    stream *s = ud;
    double t = now_s();
    if (ev->type == LC_EVENT_CHUNK) {
        int k = (int)ev->u.chunk.n_tokens;
        if (k == 0) return;
        s->n_chunks++;
        if (s->times)
            for (int i = 0; i < k && s->n_tokens + i < s->cap_gaps; i++) s->times[s->n_tokens + i] = t;
        if (s->n_tokens == 0) {
            s->t_first = t;
            for (int i = 1; i < k && s->n_gaps < s->cap_gaps; i++) s->gaps[s->n_gaps++] = 0.0;
        } else {
            double g = (t - s->t_prev) / k; /* a chunk of k tokens: k gaps of dt/k */
            for (int i = 0; i < k && s->n_gaps < s->cap_gaps; i++) s->gaps[s->n_gaps++] = g;
        }
        s->t_prev = t;
        s->n_tokens += k;
    } else if (ev->type == LC_EVENT_DONE) {
        s->info = ev->u.done;
        /* the first token sampled was the end-of-generation token (not sent): it was
         * sampled just before this Done, which gives the time to first token */
        if (s->n_tokens == 0 && ev->u.done.finish == LC_FINISH_STOP) s->t_first = t;
        if (ev->final) {
            s->done = true;
            s->t_done = t;
        }
    } else if (ev->type == LC_EVENT_ERROR) {
        fprintf(stderr, "bench_serve: request failed: %s\n", ev->u.error.message);
        s->failed = s->done = true;
        s->t_done = t;
    }
}

/* Submits every stream's request at once and runs the poll loop until all are done.
 * Returns the wall time from the first submit to the last done. */
static double run_streams(stream *ss, int n, const opts *o, int max_tokens)
{
    struct pollfd *pf = calloc((size_t)n, sizeof *pf);
    if (!pf) exit(1);
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        lc_generate_params p;
        lc_generate_params_init(&p);
        p.prompt_tokens = ss[i].prompt;
        p.n_prompt_tokens = (size_t)ss[i].n_prompt;
        p.max_tokens = (uint32_t)max_tokens;
        p.temperature = o->temperature;
        p.repeat_penalty = 1.0f;
        p.seed = o->seed + (uint64_t)i;
        p.has_seed = true;
        ss[i].t_submit = now_s();
        int rc = lc_submit_generate(ss[i].conn, &p, on_event, &ss[i], NULL);
        if (rc == 0) rc = lc_conn_flush(ss[i].conn);
        if (rc) {
            fprintf(stderr, "bench_serve: submit: %s\n", lc_conn_error(ss[i].conn));
            exit(1);
        }
    }
    int left = n;
    while (left > 0) {
        int m = 0;
        int idx[4096];
        for (int i = 0; i < n && m < 4096; i++) {
            if (ss[i].done) continue;
            pf[m].fd = lc_conn_fd(ss[i].conn);
            pf[m].events = POLLIN | (lc_conn_want_write(ss[i].conn) ? POLLOUT : 0);
            pf[m].revents = 0;
            idx[m++] = i;
        }
        int r = poll(pf, (nfds_t)m, 60000);
        if (r < 0) {
            if (errno == EINTR) continue;
            fprintf(stderr, "bench_serve: poll: %s\n", strerror(errno));
            exit(1);
        }
        if (r == 0) {
            fprintf(stderr, "bench_serve: nothing from the daemon for 60 s (%d streams left)\n", left);
            exit(1);
        }
        for (int j = 0; j < m; j++) {
            stream *s = &ss[idx[j]];
            int rc = 0;
            if (pf[j].revents & POLLOUT) rc = lc_conn_flush(s->conn);
            if (rc == 0 && (pf[j].revents & (POLLIN | POLLHUP | POLLERR))) rc = lc_conn_process(s->conn);
            if (rc && !s->done) {
                fprintf(stderr, "bench_serve: connection failed: %s\n", lc_conn_error(s->conn));
                s->done = s->failed = true;
                s->t_done = now_s();
            }
            if (s->done) left--;
        }
    }
    free(pf);
    double t_end = t0;
    for (int i = 0; i < n; i++)
        if (ss[i].t_done > t_end) t_end = ss[i].t_done;
    return t_end - t0;
}

static uint32_t model_vocab(const char *sock)
{
    lc_conn *c = connect_or_die(sock);
    lc_model_info *mi;
    size_t nm;
    int rc = lc_list_models(c, &mi, &nm);
    if (rc || nm == 0) {
        fprintf(stderr, "bench_serve: list models: %s\n", rc ? lc_conn_error(c) : "no model");
        exit(1);
    }
    uint32_t v = 0;
    for (size_t i = 0; i < nm; i++)
        if (mi[i].is_default || v == 0) v = mi[i].vocab_size;
    free(mi);
    lc_conn_free(c);
    if (v < 8) {
        fprintf(stderr, "bench_serve: vocabulary of %u tokens is too small\n", v);
        exit(1);
    }
    return v;
}

static double status_hit_rate(const char *sock)
{
    lc_conn *c = connect_or_die(sock);
    lc_status *st;
    double r = NAN;
    if (lc_get_status(c, &st) == 0) {
        r = st->prefix_cache_hit_rate;
        free(st);
    }
    lc_conn_free(c);
    return r;
}

/* A short request so that the weights are paged in before anything is timed. */
static void warm_up(const char *sock, uint32_t vocab, const opts *o)
{
    uint32_t ids[8];
    random_ids(ids, 8, vocab, o->seed ^ 0xABCDEFull);
    stream s = {.conn = connect_or_die(sock), .prompt = ids, .n_prompt = 8};
    double g[8];
    s.gaps = g;
    s.cap_gaps = 8;
    run_streams(&s, 1, o, 4);
    lc_conn_free(s.conn);
}

/* ---- concurrent workload ---- */

typedef struct conc_result {
    int clients;
    double wall_s, agg_tok_s, total_tok_s;
    long gen_tokens, prompt_tokens;
    double ttft_p50, ttft_p99, itl_p50, itl_p99, itl_mean;
    double decode_tok_s, decode_window_s; /* while every stream was decoding */
    double srv_ttft_p50, srv_queue_p50;
    int n_length, n_stop, n_other, n_failed;
    long chunks;
} conc_result;

static void run_concurrent(const opts *o, const char *sock, uint32_t vocab, conc_result *res)
{
    for (int r = 0; r < o->n_clients; r++) {
        int n = o->clients[r];
        stream *ss = calloc((size_t)n, sizeof *ss);
        uint32_t *prompts = malloc((size_t)n * (size_t)o->prompt_tokens * sizeof *prompts);
        double *gaps = malloc((size_t)n * (size_t)o->gen_tokens * sizeof *gaps);
        double *times = malloc((size_t)n * (size_t)o->gen_tokens * sizeof *times);
        double *ttft = malloc((size_t)n * sizeof *ttft), *sttft = malloc((size_t)n * sizeof *sttft),
               *squeue = malloc((size_t)n * sizeof *squeue);
        if (!ss || !prompts || !gaps || !times || !ttft || !sttft || !squeue) exit(1);
        for (int i = 0; i < n; i++) {
            uint32_t *p = prompts + (size_t)i * (size_t)o->prompt_tokens;
            /* distinct per client and per round, unless --same-prompt */
            uint64_t ps = o->same_prompt ? o->seed : o->seed * 1000003u + (uint64_t)r * 65536u + (uint64_t)i + 1;
            random_ids(p, o->prompt_tokens, vocab, ps);
            ss[i].conn = connect_or_die(sock);
            ss[i].prompt = p;
            ss[i].n_prompt = o->prompt_tokens;
            ss[i].gaps = gaps + (size_t)i * (size_t)o->gen_tokens;
            ss[i].cap_gaps = o->gen_tokens;
            ss[i].times = times + (size_t)i * (size_t)o->gen_tokens;
        }
        conc_result *cr = &res[r];
        memset(cr, 0, sizeof *cr);
        double wall = run_streams(ss, n, o, o->gen_tokens);
        cr->clients = n;
        cr->wall_s = wall;
        /* decode window: from the moment every stream has its first token to the moment the
         * first stream finishes; tokens that arrived inside it / its length */
        double w0 = 0, w1 = INFINITY;
        for (int i = 0; i < n; i++) {
            if (ss[i].failed || ss[i].n_tokens == 0) continue;
            if (ss[i].t_first > w0) w0 = ss[i].t_first;
            if (ss[i].t_done < w1) w1 = ss[i].t_done;
        }
        if (w1 > w0 && isfinite(w1)) {
            long in = 0;
            for (int i = 0; i < n; i++)
                for (int j = 0; j < ss[i].n_tokens && j < ss[i].cap_gaps; j++)
                    if (ss[i].times[j] > w0 && ss[i].times[j] <= w1) in++;
            cr->decode_window_s = w1 - w0;
            cr->decode_tok_s = (double)in / (w1 - w0);
        } else {
            cr->decode_tok_s = NAN;
        }
        size_t ng = 0, nt = 0;
        for (int i = 0; i < n; i++) {
            stream *s = &ss[i];
            cr->gen_tokens += s->n_tokens;
            cr->chunks += s->n_chunks;
            if (s->failed) {
                cr->n_failed++;
                continue;
            }
            cr->prompt_tokens += s->info.prompt_tokens;
            if (s->info.finish == LC_FINISH_LENGTH) cr->n_length++;
            else if (s->info.finish == LC_FINISH_STOP) cr->n_stop++;
            else cr->n_other++;
            if (s->t_first > 0) {
                ttft[nt] = s->t_first - s->t_submit;
                sttft[nt] = (double)s->info.first_token_us * 1e-6;
                squeue[nt] = (double)s->info.queue_us * 1e-6;
                nt++;
            }
            /* gaps are stored contiguously per stream: compact them */
            memmove(gaps + ng, s->gaps, (size_t)s->n_gaps * sizeof *gaps);
            ng += (size_t)s->n_gaps;
        }
        double sum = 0;
        for (size_t i = 0; i < ng; i++) sum += gaps[i];
        cr->itl_mean = ng ? sum / (double)ng : NAN;
        cr->agg_tok_s = wall > 0 ? (double)cr->gen_tokens / wall : 0;
        cr->total_tok_s = wall > 0 ? (double)(cr->gen_tokens + cr->prompt_tokens) / wall : 0;
        cr->ttft_p50 = pct(ttft, nt, 50);
        cr->ttft_p99 = pct(ttft, nt, 99);
        cr->itl_p50 = pct(gaps, ng, 50);
        cr->itl_p99 = pct(gaps, ng, 99);
        cr->srv_ttft_p50 = pct(sttft, nt, 50);
        cr->srv_queue_p50 = pct(squeue, nt, 50);
        for (int i = 0; i < n; i++) lc_conn_free(ss[i].conn);
        free(ss);
        free(prompts);
        free(gaps);
        free(times);
        free(ttft);
        free(sttft);
        free(squeue);
        if (!o->quiet) {
            if (r == 0) {
                printf("%7s %8s %8s %10s %10s %10s %10s %9s %9s %7s %s\n", "clients", "gen tok", "wall s",
                       "agg tok/s", "decode t/s", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99", "chunks",
                       "finish");
            }
            printf("%7d %8ld %8.2f %10.1f %10.1f %8.1fms %8.1fms %7.2fms %7.2fms %7ld %d length, %d stop%s\n",
                   n, cr->gen_tokens, cr->wall_s, cr->agg_tok_s, cr->decode_tok_s, cr->ttft_p50 * 1e3,
                   cr->ttft_p99 * 1e3,
                   cr->itl_p50 * 1e3, cr->itl_p99 * 1e3, cr->chunks, cr->n_length, cr->n_stop,
                   cr->n_failed ? ", FAILED" : "");
            fflush(stdout);
        }
    }
}

/* ---- shared-prefix workload ---- */

typedef struct prefix_result {
    double cold_p50, cold_min, cold_max;
    double warm_seq_p50, warm_seq_p99;
    double warm_conc_p50, warm_conc_p99, warm_conc_wall;
    double ratio_seq, ratio_conc;
    double cached_frac_seq, cached_frac_conc; /* from GenerateDone.cached_prompt_tokens */
    double hit_rate_status;
    int n_failed;
} prefix_result;

/* Runs one request at a time on conn; ttft[i] per request; cached/prompt token sums. */
static void run_sequential(lc_conn *conn, uint32_t *const *prompts, int n_prompt, int count, const opts *o,
                           double *ttft, long *ret_cached, long *ret_prompt, int *n_failed)
{
    double g[64];
    for (int i = 0; i < count; i++) {
        stream s = {.conn = conn, .prompt = prompts[i], .n_prompt = n_prompt, .gaps = g, .cap_gaps = 64};
        run_streams(&s, 1, o, o->prefix_gen);
        if (s.failed || s.t_first == 0) {
            (*n_failed)++;
            ttft[i] = NAN;
            continue;
        }
        ttft[i] = s.t_first - s.t_submit;
        *ret_cached += s.info.cached_tokens;
        *ret_prompt += s.info.prompt_tokens;
    }
}

static void run_prefix(const opts *o, const char *sock, uint32_t vocab, prefix_result *pr)
{
    memset(pr, 0, sizeof *pr);
    int np = o->prefix_tokens + o->suffix_tokens;
    int nc = o->cold_requests, nw = o->requests;
    uint32_t *buf = malloc((size_t)(nc + nw) * (size_t)np * sizeof *buf);
    uint32_t **pp = malloc((size_t)(nc + nw) * sizeof *pp);
    double *t = malloc((size_t)(nc + nw) * sizeof *t);
    if (!buf || !pp || !t) exit(1);
    /* cold: each request has its own system prompt (never seen by the daemon) */
    for (int i = 0; i < nc; i++) {
        pp[i] = buf + (size_t)i * (size_t)np;
        random_ids(pp[i], np, vocab, o->seed * 7919u + 1000u + (uint64_t)i);
    }
    /* warm: one system prompt + a distinct suffix each */
    for (int i = 0; i < nw; i++) {
        uint32_t *p = pp[nc + i] = buf + (size_t)(nc + i) * (size_t)np;
        random_ids(p, o->prefix_tokens, vocab, o->seed * 7919u + 7u);
        random_ids(p + o->prefix_tokens, o->suffix_tokens, vocab, o->seed * 7919u + 5000u + (uint64_t)i);
    }
    lc_conn *conn = connect_or_die(sock);
    long cached = 0, prompt = 0;
    run_sequential(conn, pp, np, nc, o, t, &cached, &prompt, &pr->n_failed);
    double cold[1024];
    int ncv = 0;
    for (int i = 0; i < nc; i++)
        if (!isnan(t[i])) cold[ncv++] = t[i];
    pr->cold_p50 = pct(cold, (size_t)ncv, 50);
    pr->cold_min = ncv ? cold[0] : NAN;
    pr->cold_max = ncv ? cold[ncv - 1] : NAN;

    /* prime: the shared system prompt goes into the prefix cache (its own suffix) */
    uint32_t *prime = malloc((size_t)np * sizeof *prime);
    if (!prime) exit(1);
    memcpy(prime, pp[nc], (size_t)o->prefix_tokens * sizeof *prime);
    random_ids(prime + o->prefix_tokens, o->suffix_tokens, vocab, o->seed * 7919u + 4999u);
    {
        double tp;
        long c0 = 0, p0 = 0;
        int f0 = 0;
        run_sequential(conn, &prime, np, 1, o, &tp, &c0, &p0, &f0);
        pr->n_failed += f0;
    }
    /* warm, one at a time */
    cached = prompt = 0;
    run_sequential(conn, pp + nc, np, nw, o, t + nc, &cached, &prompt, &pr->n_failed);
    double warm[1024];
    int nwv = 0;
    for (int i = 0; i < nw; i++)
        if (!isnan(t[nc + i])) warm[nwv++] = t[nc + i];
    pr->warm_seq_p50 = pct(warm, (size_t)nwv, 50);
    pr->warm_seq_p99 = pct(warm, (size_t)nwv, 99);
    pr->cached_frac_seq = prompt ? (double)cached / (double)prompt : NAN;
    lc_conn_free(conn);

    /* warm, all at once (one connection each) */
    stream *ss = calloc((size_t)nw, sizeof *ss);
    double *g = malloc((size_t)nw * 64 * sizeof *g);
    if (!ss || !g) exit(1);
    for (int i = 0; i < nw; i++) {
        ss[i] = (stream){.conn = connect_or_die(sock), .prompt = pp[nc + i], .n_prompt = np,
                         .gaps = g + (size_t)i * 64, .cap_gaps = 64};
    }
    pr->warm_conc_wall = run_streams(ss, nw, o, o->prefix_gen);
    nwv = 0;
    cached = prompt = 0;
    for (int i = 0; i < nw; i++) {
        if (ss[i].failed || ss[i].t_first == 0) {
            pr->n_failed++;
            continue;
        }
        warm[nwv++] = ss[i].t_first - ss[i].t_submit;
        cached += ss[i].info.cached_tokens;
        prompt += ss[i].info.prompt_tokens;
    }
    for (int i = 0; i < nw; i++) lc_conn_free(ss[i].conn);
    pr->warm_conc_p50 = pct(warm, (size_t)nwv, 50);
    pr->warm_conc_p99 = pct(warm, (size_t)nwv, 99);
    pr->cached_frac_conc = prompt ? (double)cached / (double)prompt : NAN;
    pr->ratio_seq = pr->warm_seq_p50 / pr->cold_p50;
    pr->ratio_conc = pr->warm_conc_p50 / pr->cold_p50;
    pr->hit_rate_status = status_hit_rate(sock);
    free(ss);
    free(g);
    free(prime);
    free(buf);
    free(pp);
    free(t);
    if (!o->quiet) {
        printf("shared prefix: %d-token system prompt + %d-token suffix, max_tokens %d\n", o->prefix_tokens,
               o->suffix_tokens, o->prefix_gen);
        printf("  %-34s %10s %10s %9s %s\n", "", "TTFT p50", "TTFT p99", "warm/cold", "cached prompt tokens");
        printf("  %-34s %8.1fms %10s %9s (min %.1f ms, max %.1f ms)\n", "cold (a new system prompt each)",
               pr->cold_p50 * 1e3, "", "", pr->cold_min * 1e3, pr->cold_max * 1e3);
        printf("  %-34s %8.1fms %8.1fms %8.1f%% %.1f%%\n", "warm, one at a time", pr->warm_seq_p50 * 1e3,
               pr->warm_seq_p99 * 1e3, pr->ratio_seq * 100, pr->cached_frac_seq * 100);
        printf("  %-34s %8.1fms %8.1fms %8.1f%% %.1f%%\n", "warm, all at once", pr->warm_conc_p50 * 1e3,
               pr->warm_conc_p99 * 1e3, pr->ratio_conc * 100, pr->cached_frac_conc * 100);
        printf("  daemon prefix-cache hit rate (Status, whole run): %.1f%%%s\n", pr->hit_rate_status * 100,
               pr->n_failed ? "  (some requests FAILED)" : "");
    }
}

/* ---- JSON ---- */

static void json_config(jw *w, const opts *o, const char *sock, uint32_t vocab)
{
    jw_key(w, "model");
    jw_cstr(w, o->model);
    jw_key(w, "socket");
    jw_cstr(w, o->socket ? o->socket : NULL);
    jw_key(w, "vocab_size");
    jw_uint(w, vocab);
    jw_key(w, "daemon");
    jw_obj_begin(w);
    jw_key(w, "started");
    jw_bool(w, o->socket == NULL);
    jw_key(w, "threads");
    jw_int(w, o->threads);
    jw_key(w, "kv_cache_mib");
    jw_int(w, o->kv_cache_mib);
    jw_key(w, "max_seqs");
    jw_int(w, o->max_seqs);
    jw_key(w, "max_batch_tokens");
    jw_int(w, o->max_batch_tokens);
    jw_obj_end(w);
    jw_key(w, "temperature");
    jw_double(w, o->temperature);
    jw_key(w, "seed");
    jw_uint(w, o->seed);
    jw_key(w, "loadavg_1m_at_start"); /* the machine is shared: how busy it was */
    jw_double(w, g_load_at_start);
    (void)sock;
}

static void jd(jw *w, const char *k, double v)
{
    jw_key(w, k);
    jw_double(w, v);
}

static void ji(jw *w, const char *k, long long v)
{
    jw_key(w, k);
    jw_int(w, v);
}

static int write_json(const opts *o, const char *sock, uint32_t vocab, const conc_result *cr,
                      const prefix_result *pr)
{
    FILE *f = fopen(o->json, "w");
    if (!f) {
        fprintf(stderr, "bench_serve: %s: %s\n", o->json, strerror(errno));
        return -1;
    }
    jw w;
    jw_init(&w, f);
    jw_obj_begin(&w);
    jw_key(&w, "bench");
    jw_cstr(&w, o->prefix ? "prefix" : "concurrent");
    json_config(&w, o, sock, vocab);
    if (!o->prefix) {
        ji(&w, "prompt_tokens", o->prompt_tokens);
        ji(&w, "gen_tokens", o->gen_tokens);
        jw_key(&w, "same_prompt");
        jw_bool(&w, o->same_prompt);
        jw_key(&w, "runs");
        jw_arr_begin(&w);
        for (int i = 0; i < o->n_clients; i++) {
            const conc_result *c = &cr[i];
            jw_obj_begin(&w);
            ji(&w, "clients", c->clients);
            ji(&w, "generated_tokens", c->gen_tokens);
            ji(&w, "prompt_tokens", c->prompt_tokens);
            ji(&w, "chunks", c->chunks);
            jd(&w, "wall_s", c->wall_s);
            jd(&w, "aggregate_tok_s", c->agg_tok_s);
            jd(&w, "aggregate_with_prompt_tok_s", c->total_tok_s);
            jd(&w, "decode_tok_s", c->decode_tok_s);
            jd(&w, "decode_window_s", c->decode_window_s);
            jd(&w, "ttft_p50_ms", c->ttft_p50 * 1e3);
            jd(&w, "ttft_p99_ms", c->ttft_p99 * 1e3);
            jd(&w, "itl_p50_ms", c->itl_p50 * 1e3);
            jd(&w, "itl_p99_ms", c->itl_p99 * 1e3);
            jd(&w, "itl_mean_ms", c->itl_mean * 1e3);
            jd(&w, "server_ttft_p50_ms", c->srv_ttft_p50 * 1e3);
            jd(&w, "server_queue_p50_ms", c->srv_queue_p50 * 1e3);
            ji(&w, "finish_length", c->n_length);
            ji(&w, "finish_stop", c->n_stop);
            ji(&w, "finish_other", c->n_other);
            ji(&w, "failed", c->n_failed);
            jw_obj_end(&w);
        }
        jw_arr_end(&w);
    } else {
        ji(&w, "prefix_tokens", o->prefix_tokens);
        ji(&w, "suffix_tokens", o->suffix_tokens);
        ji(&w, "requests", o->requests);
        ji(&w, "cold_requests", o->cold_requests);
        ji(&w, "gen_tokens", o->prefix_gen);
        jd(&w, "ttft_cold_p50_ms", pr->cold_p50 * 1e3);
        jd(&w, "ttft_warm_p50_ms", pr->warm_seq_p50 * 1e3);
        jd(&w, "ttft_warm_p99_ms", pr->warm_seq_p99 * 1e3);
        jd(&w, "warm_cold_ratio", pr->ratio_seq);
        jd(&w, "ttft_warm_concurrent_p50_ms", pr->warm_conc_p50 * 1e3);
        jd(&w, "ttft_warm_concurrent_p99_ms", pr->warm_conc_p99 * 1e3);
        jd(&w, "warm_concurrent_cold_ratio", pr->ratio_conc);
        jd(&w, "warm_concurrent_wall_s", pr->warm_conc_wall);
        jd(&w, "cached_fraction_warm", pr->cached_frac_seq);
        jd(&w, "cached_fraction_warm_concurrent", pr->cached_frac_conc);
        jd(&w, "prefix_cache_hit_rate", pr->hit_rate_status);
        ji(&w, "failed", pr->n_failed);
    }
    jw_obj_end(&w);
    jw_end_line(&w);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        fprintf(stderr, "bench_serve: cannot write %s\n", o->json);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    opts o;
    parse_args(&o, argc, argv);
    double la[1];
    if (getloadavg(la, 1) == 1) g_load_at_start = la[0];
    signal(SIGPIPE, SIG_IGN);
    const char *sock = o.socket;
    if (!sock) {
        start_daemon(&o);
        sock = g_daemon.sock;
    }
    uint32_t vocab = model_vocab(sock);
    warm_up(sock, vocab, &o);
    conc_result cr[16];
    prefix_result pr;
    int failed = 0;
    if (o.prefix) {
        run_prefix(&o, sock, vocab, &pr);
        failed = pr.n_failed;
    } else {
        run_concurrent(&o, sock, vocab, cr);
        for (int i = 0; i < o.n_clients; i++) failed += cr[i].n_failed;
    }
    int rc = write_json(&o, sock, vocab, cr, &pr);
    stop_daemon();
    if (rc) return 1;
    if (failed) {
        fprintf(stderr, "bench_serve: %d request(s) failed\n", failed);
        return 1;
    }
    return 0;
}
