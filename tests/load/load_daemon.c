/* Load and fault tests against the real llamad with stories260K, loopback only.
 *   load_daemon LLAMAD conc [N]   N (500) connections at once, random cancels and disconnects;
 *                                 exact tokens, 0 KV blocks used after, RSS back near its level
 *   load_daemon LLAMAD kvx  [N]   N (32) long prompts into a cache that holds about 3 sequences
 *   load_daemon LLAMAD slow       a client that never reads: bounded RSS, bystander unaffected
 *   load_daemon LLAMAD bad        bad input of every kind beside a healthy bystander stream
 * N may also come from $LLAMAD_LOAD_CONNS (the ASan build scales down). Every random choice
 * comes from a fixed seed. No assertion depends on timing. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lt.h"
#include "testutil.h"

#define E(c) LLAMAD__V1__ERROR__CODE__##c
#define FR(c) LLAMAD__V1__GENERATE_DONE__FINISH_REASON__##c

static const char *llamad;
static char m260[4096];

static void start(dh_daemon *d, const char *name, const char *const *extra)
{
    static char a1[4200];
    snprintf(a1, sizeof a1, "tiny=%s", m260);
    const char *args[48] = {"--model", a1, "--threads", "1"};
    int n = 4;
    for (int i = 0; extra && extra[i]; i++) args[n++] = extra[i];
    args[n] = NULL;
    dh_sock_path(d->sock, sizeof d->sock, name);
    dh_start(d, llamad, args);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

/* A reference: one prompt, one seed, the tokens it produces alone. */
typedef struct ref {
    uint32_t prompt[400];
    int n_prompt;
    float temperature;
    uint64_t seed;
    int max_tokens;
    uint32_t ids[512];
    int n_ids;
    int finish;
} ref;

static dh_gen ref_gen(const ref *r)
{
    return (dh_gen){.model = "tiny", .ids = r->prompt, .n_ids = (size_t)r->n_prompt, .max_tokens = r->max_tokens,
                    .has_temperature = true, .temperature = r->temperature, .has_seed = true, .seed = r->seed};
}

static void compute_alone(const char *sock, ref *refs, int n)
{
    for (int i = 0; i < n; i++) {
        lt_stream s = {.rid = 1, .cancel_after = -1, .drop_after = -1};
        lt_open(&s, sock);
        dh_gen g = ref_gen(&refs[i]);
        lt_send_generate(&s, &g);
        lt_run(&s, 1);
        CHECK_MSG(s.done && s.error == 0, "reference %d did not complete (error %d)", i, s.error);
        memcpy(refs[i].ids, s.ids, sizeof s.ids[0] * (size_t)s.n_ids);
        refs[i].n_ids = s.n_ids;
        refs[i].finish = s.finish;
        CHECK(s.n_ids > 0);
    }
}

/* Streams that were neither cancelled nor dropped: exactly the reference. Cancelled: a prefix of
 * it, ended by GenerateDone. */
static int check_streams(const lt_stream *ss, int n, const ref *refs)
{
    int exact = 0;
    for (int i = 0; i < n; i++) {
        const lt_stream *s = &ss[i];
        const ref *r = &refs[s->ref];
        if (s->dropped) continue;
        CHECK_MSG(s->error == 0, "stream %d: error %d", i, s->error);
        CHECK_MSG(s->done, "stream %d ended without GenerateDone", i);
        CHECK_MSG(s->n_ids <= r->n_ids, "stream %d: %d tokens, the reference has %d", i, s->n_ids, r->n_ids);
        for (int k = 0; k < s->n_ids; k++)
            CHECK_MSG(s->ids[k] == r->ids[k], "stream %d (ref %d) token %d: %u, alone %u", i, s->ref, k, s->ids[k],
                      r->ids[k]);
        if (s->cancel_sent && s->finish == FR(CANCELLED)) continue;
        CHECK_MSG(s->n_ids == r->n_ids && s->finish == r->finish,
                  "stream %d (ref %d): %d tokens finish %d, alone %d tokens finish %d", i, s->ref, s->n_ids,
                  s->finish, r->n_ids, r->finish);
        exact++;
    }
    return exact;
}

static int conns_arg(int argc, char **argv, int def)
{
    const char *v = argc > 3 ? argv[3] : getenv("LLAMAD_LOAD_CONNS");
    if (v == NULL || *v == '\0') return def;
    int n = atoi(v);
    CHECK_MSG(n >= 1 && n <= 4000, "bad connection count %s", v);
    return n;
}

/* ---- 500 connections at once ----------------------------------------------------------- */

static void round_of(const char *sock, lt_stream *ss, int n, const ref *refs, int n_refs, bool faults)
{
    for (int i = 0; i < n; i++) {
        lt_stream *s = &ss[i];
        *s = (lt_stream){.rid = (uint64_t)(i + 1), .ref = (int)rnd((uint32_t)n_refs), .cancel_after = -1,
                         .drop_after = -1};
        if (faults) {
            uint32_t what = rnd(10);
            if (what < 2) s->cancel_after = (int)rnd(6);       /* 20%: cancel mid-stream */
            else if (what < 3) s->drop_after = (int)rnd(6);    /* 10%: disconnect mid-stream */
        }
        lt_open(s, sock);
    }
    /* everyone connects first, then all the requests go out at once */
    for (int i = 0; i < n; i++) {
        dh_gen g = ref_gen(&refs[ss[i].ref]);
        lt_send_generate(&ss[i], &g);
    }
    lt_run(ss, n);
}

static void test_conc(int n)
{
    long lim = lt_raise_nofile(n + 64);
    CHECK_MSG(lim >= n + 32, "RLIMIT_NOFILE %ld is too low for %d connections", lim, n);
    char maxc[32], maxq[32];
    snprintf(maxc, sizeof maxc, "%d", n + 16);
    snprintf(maxq, sizeof maxq, "%d", n + 16);
    dh_daemon d;
    const char *extra[] = {"--kv-cache-mib", "16", "--max-seqs", "64", "--max-connections", maxc, "--max-queue", maxq,
                           NULL};
    start(&d, "conc.sock", extra);

    /* 4 prompts x 3 seeds, temperature 0.8, 16..31 tokens */
    enum { NR = 12 };
    static ref refs[NR];
    for (int i = 0; i < NR; i++) {
        ref *r = &refs[i];
        r->prompt[0] = 1;
        r->n_prompt = 2 + (i / 3) * 3;
        for (int k = 1; k < r->n_prompt; k++) r->prompt[k] = 3 + (uint32_t)((i / 3) * 37 + k * 11) % 500;
        r->temperature = 0.8f;
        r->seed = 42u + (uint64_t)(i % 3);
        r->max_tokens = 16 + (i * 5) % 16;
    }
    compute_alone(d.sock, refs, NR);

    lt_stream *ss = calloc((size_t)n, sizeof *ss);
    CHECK(ss != NULL);
    /* warm-up round: every stream completes exactly */
    round_of(d.sock, ss, n, refs, NR, false);
    CHECK_EQ_INT(check_streams(ss, n, refs), n);
    lt_status st;
    lt_wait_idle(d.sock, &st);
    long rss_warm = lt_rss_kib(d.pid);

    /* the round with faults */
    round_of(d.sock, ss, n, refs, NR, true);
    int exact = check_streams(ss, n, refs), cancelled = 0, dropped = 0;
    for (int i = 0; i < n; i++) {
        cancelled += ss[i].cancel_sent && ss[i].finish == FR(CANCELLED);
        dropped += ss[i].dropped;
    }
    lt_wait_idle(d.sock, &st);
    CHECK_EQ_INT((int)st.kv_used, 0);
    CHECK_EQ_INT((int)st.running, 0);
    CHECK_EQ_INT((int)st.queue, 0);
    long rss_after = lt_rss_kib(d.pid);
    printf("conc: %d connections, %d exact, %d cancelled, %d dropped; RSS %ld KiB after warm-up, %ld KiB after\n", n,
           exact, cancelled, dropped, rss_warm, rss_after);
    /* "near": within 64 MiB of the level after the warm-up round */
    CHECK_MSG(rss_after <= rss_warm + 64 * 1024, "RSS grew from %ld KiB to %ld KiB", rss_warm, rss_after);
    CHECK(exact > 0);
    free(ss);
    CHECK_EQ_INT(dh_stop(&d), 0);
}

/* ---- KV exhaustion ---------------------------------------------------------------------- */

static void test_kvx(int n)
{
    /* 1 MiB of cache at 640 bytes per token (stories260K, f16 K/V) is 1638 tokens, 102 blocks
     * of 16; a sequence here is 250 prompt + up to 24 generated tokens (18 blocks): about 5 fit. */
    char logpath[512];
    snprintf(logpath, sizeof logpath, "%s/kvx.log", tu_tmpdir());
    dh_daemon d;
    const char *extra[] = {"--kv-cache-mib", "1", "--max-seqs", "64", "--max-queue", "1000", "--log-file", logpath,
                           NULL};
    start(&d, "kvx.sock", extra);
    enum { NR = 8 };
    static ref refs[NR];
    for (int i = 0; i < NR; i++) {
        ref *r = &refs[i];
        r->prompt[0] = 1;
        r->n_prompt = 250;
        for (int k = 1; k < r->n_prompt; k++) r->prompt[k] = 3 + rnd(500);
        r->temperature = i % 2 ? 0.7f : 0.0f;
        r->seed = 7u + (uint64_t)i;
        r->max_tokens = 24;
    }
    compute_alone(d.sock, refs, NR);
    lt_stream *ss = calloc((size_t)n, sizeof *ss);
    CHECK(ss != NULL);
    for (int i = 0; i < n; i++) {
        ss[i] = (lt_stream){.rid = (uint64_t)(i + 1), .ref = i % NR, .cancel_after = -1, .drop_after = -1};
        lt_open(&ss[i], d.sock);
    }
    for (int i = 0; i < n; i++) {
        dh_gen g = ref_gen(&refs[ss[i].ref]);
        lt_send_generate(&ss[i], &g);
    }
    lt_run(ss, n);
    CHECK_EQ_INT(check_streams(ss, n, refs), n);
    lt_status st;
    lt_wait_idle(d.sock, &st);
    printf("kvx: %d requests of 250 + 24 tokens through a cache of %llu blocks: all exact\n", n,
           (unsigned long long)st.kv_total);
    CHECK(st.kv_total * 16 < (uint64_t)n * 274 / 4);
    free(ss);
    CHECK_EQ_INT(dh_stop(&d), 0);
    /* the stop line counts the preemptions: the cache really ran out */
    size_t len;
    char *log = tu_read_file(logpath, &len);
    const char *p = strstr(log, "prompt tokens computed, ");
    CHECK_MSG(p != NULL, "no stop line in the log");
    unsigned long long pre = strtoull(p + strlen("prompt tokens computed, "), NULL, 10);
    printf("kvx: %llu preemption(s)\n", pre);
    CHECK(pre > 0 || n < 8);
    free(log);
}

/* ---- a client that never reads ----------------------------------------------------------- */

static void test_slow(void)
{
    char logpath[512];
    snprintf(logpath, sizeof logpath, "%s/slow.log", tu_tmpdir());
    dh_daemon d;
    const char *extra[] = {"--kv-cache-mib", "16", "--max-seqs", "32", "--max-frame-bytes", "4096",
                           "--max-tokens", "2000", "--log-level", "debug", "--log-file", logpath, NULL};
    start(&d, "slow.sock", extra);
    static ref by;
    by.prompt[0] = 1;
    by.prompt[1] = 400;
    by.n_prompt = 2;
    by.temperature = 0.9f;
    by.seed = 99;
    by.max_tokens = 200;
    compute_alone(d.sock, &by, 1);
    long rss0 = lt_rss_kib(d.pid);

    /* the slow client: 16 streams of 600 tokens with 20 logprobs each (hundreds of bytes per
     * token: several MiB of output in all), and it does not read */
    dh_conn *slow = malloc(sizeof *slow);
    CHECK(slow != NULL);
    dh_connect(slow, d.sock);
    int small = 4096;
    setsockopt(slow->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    uint32_t bos[] = {1};
    dh_gen g = {.model = "tiny", .ids = bos, .n_ids = 1, .max_tokens = 600, .has_temperature = true, .logprobs = 20};
    enum { NS = 16 };
    for (int i = 0; i < NS; i++) dh_send_generate(slow, (uint64_t)(i + 1), &g);
    for (int i = 0;; i++) {
        CHECK_MSG(i < 60000, "the daemon never paused the connection of a client that does not read");
        size_t len;
        char *log = tu_read_file(logpath, &len);
        bool paused = strstr(log, ": paused (") != NULL;
        free(log);
        if (paused) break;
        usleep(1000);
    }
    /* meanwhile a bystander: exactly its tokens */
    long rss_max = 0;
    for (int rep = 0; rep < 3; rep++) {
        lt_stream s = {.rid = 1, .cancel_after = -1, .drop_after = -1};
        lt_open(&s, d.sock);
        dh_gen bg = ref_gen(&by);
        lt_send_generate(&s, &bg);
        lt_run(&s, 1);
        CHECK_EQ_INT(check_streams(&s, 1, &by), 1);
        long r = lt_rss_kib(d.pid);
        if (r > rss_max) rss_max = r;
    }
    printf("slow: RSS %ld KiB at start, at most %ld KiB while a client does not read\n", rss0, rss_max);
    /* bound: the pause mark is max(64 KiB, 2 x max-frame-bytes) of queued output per connection;
     * 32 MiB leaves room for allocator noise while a leak of the unsent output (MiBs) shows */
    CHECK_MSG(rss_max <= rss0 + 32 * 1024, "RSS grew from %ld to %ld KiB", rss0, rss_max);

    /* the slow client reads at last: every stream intact (greedy: all the same) */
    static dh_result rs[NS];
    for (int i = 0; i < NS; i++) rs[i] = (dh_result){.rid = (uint64_t)(i + 1)};
    dh_collect(slow, rs, NS);
    for (int i = 0; i < NS; i++) {
        CHECK_EQ_INT(rs[i].error, 0);
        CHECK_EQ_INT(rs[i].n_ids, rs[0].n_ids);
        CHECK(memcmp(rs[i].ids, rs[0].ids, sizeof rs[0].ids[0] * (size_t)rs[0].n_ids) == 0);
    }
    CHECK(rs[0].n_ids > 200);
    dh_close(slow);
    free(slow);
    lt_status st;
    lt_wait_idle(d.sock, &st);
    CHECK_EQ_INT(dh_stop(&d), 0);
}

/* ---- bad input beside a healthy stream ----------------------------------------------------- */

static void expect_closed_or_error(dh_conn *c, int code)
{
    Llamad__V1__ServerMessage *m = dh_recv(c);
    if (m != NULL) {
        CHECK_MSG(m->body_case == LLAMAD__V1__SERVER_MESSAGE__BODY_ERROR && (int)m->error->code == code,
                  "expected error %d, got kind %d", code, (int)m->body_case);
        proto_server_free(m);
        CHECK(dh_wait_closed(c));
    }
}

static void bad_inputs(const char *sock, const char *other_model_path)
{
    dh_conn *c = malloc(sizeof *c);
    CHECK(c != NULL);

    /* oversized frame: Error FRAME_TOO_LARGE, then closed */
    dh_connect(c, sock);
    uint8_t big[4] = {0xff, 0xff, 0xff, 0x7f};
    dh_send_raw(c, big, 4);
    expect_closed_or_error(c, E(FRAME_TOO_LARGE));
    dh_close(c);

    /* garbage bytes with a plausible length: MALFORMED_FRAME, the connection stays usable */
    dh_connect(c, sock);
    uint8_t junk[20] = {16, 0, 0, 0}; /* u32 little-endian length */
    for (int i = 4; i < 20; i++) junk[i] = (uint8_t)(0xf7 ^ (i * 29));
    dh_send_raw(c, junk, sizeof junk);
    dh_expect_error(c, 0, E(MALFORMED_FRAME));
    dh_send_hello(c, 5);
    Llamad__V1__ServerMessage *m = dh_recv(c);
    CHECK(m != NULL && m->body_case == LLAMAD__V1__SERVER_MESSAGE__BODY_HELLO && m->request_id == 5);
    proto_server_free(m);
    dh_close(c);

    /* random garbage, then the peer goes away */
    for (int rep = 0; rep < 20; rep++) {
        dh_connect(c, sock);
        uint8_t g[512];
        size_t n = 1 + rnd(sizeof g);
        for (size_t i = 0; i < n; i++) g[i] = (uint8_t)rnd(256);
        dh_send_raw(c, g, n);
        shutdown(c->fd, SHUT_WR);
        dh_wait_closed(c); /* whatever it answers, it ends the connection once we have */
        dh_close(c);
    }

    /* a truncated frame: the header promises more than comes, then EOF */
    dh_connect(c, sock);
    uint8_t trunc[10] = {0, 1, 0, 0, 8, 1, 0x12};
    dh_send_raw(c, trunc, sizeof trunc);
    shutdown(c->fd, SHUT_WR);
    CHECK(dh_wait_closed(c));
    dh_close(c);

    dh_connect(c, sock);
    uint32_t bos[] = {1};
    /* unknown models, including paths */
    const char *names[] = {"nope", "/etc/passwd", "../x.gguf", other_model_path, ""};
    for (int i = 0; i < 4; i++) {
        dh_gen g = {.model = names[i], .ids = bos, .n_ids = 1, .max_tokens = 4};
        dh_send_generate(c, (uint64_t)(10 + i), &g);
        dh_expect_error(c, (uint64_t)(10 + i), E(UNKNOWN_MODEL));
    }
    /* a prompt longer than the context (and than max-prompt-tokens) */
    static uint32_t longp[5000];
    for (int i = 0; i < 5000; i++) longp[i] = 3 + (uint32_t)i % 500;
    dh_gen gl = {.model = "tiny", .ids = longp, .n_ids = 5000, .max_tokens = 4};
    dh_send_generate(c, 20, &gl);
    dh_expect_error(c, 20, E(PROMPT_TOO_LONG));
    /* invalid sampling parameters and token ids */
    dh_gen gt = {.model = "tiny", .ids = bos, .n_ids = 1, .max_tokens = 4, .has_temperature = true,
                 .temperature = -1.0f};
    dh_send_generate(c, 21, &gt);
    dh_expect_error(c, 21, E(INVALID_PARAMETER));
    uint32_t badid[] = {1, 100000};
    dh_gen gi = {.model = "tiny", .ids = badid, .n_ids = 2, .max_tokens = 4};
    dh_send_generate(c, 22, &gi);
    dh_expect_error(c, 22, E(INVALID_PARAMETER));
    dh_gen gn = {.model = "tiny", .ids = bos, .n_ids = 1, .max_tokens = 4, .n = 100000};
    dh_send_generate(c, 23, &gn);
    dh_expect_error(c, 23, E(INVALID_PARAMETER));
    /* request id 0 */
    dh_gen g0 = {.model = "tiny", .ids = bos, .n_ids = 1, .max_tokens = 4};
    dh_send_generate(c, 0, &g0);
    dh_expect_error(c, 0, E(INVALID_REQUEST));
    /* too many requests on one connection (the limit is 4) */
    dh_gen gm = {.model = "tiny", .ids = bos, .n_ids = 1, .max_tokens = 300, .has_temperature = true};
    for (int i = 0; i < 5; i++) dh_send_generate(c, (uint64_t)(30 + i), &gm);
    dh_result rs[5];
    for (int i = 0; i < 5; i++) rs[i] = (dh_result){.rid = (uint64_t)(30 + i)};
    dh_collect(c, rs, 5);
    int too_many = 0;
    for (int i = 0; i < 5; i++) {
        if (rs[i].error) {
            CHECK_EQ_INT(rs[i].error, E(TOO_MANY_REQUESTS));
            too_many++;
        } else {
            CHECK_EQ_INT(rs[i].n_ids, 300);
        }
    }
    CHECK_EQ_INT(too_many, 1);
    dh_close(c);
    free(c);
}

static void test_bad(void)
{
    dh_daemon d;
    const char *extra[] = {"--kv-cache-mib", "16", "--max-requests-per-connection", "4", "--max-tokens", "2000",
                           "--max-frame-bytes", "65536", NULL};
    start(&d, "bad.sock", extra);
    static ref by;
    by.prompt[0] = 1;
    by.prompt[1] = 77;
    by.n_prompt = 2;
    by.temperature = 0.9f;
    by.seed = 5;
    by.max_tokens = 500;
    compute_alone(d.sock, &by, 1);
    const char *other = tu_shared("models/TinyStories-656K-Q8_0.gguf");

    /* two rounds: the bystander streams while the bad inputs go in on other connections */
    for (int round = 0; round < 2; round++) {
        lt_stream s = {.rid = 1, .cancel_after = -1, .drop_after = -1};
        lt_open(&s, d.sock);
        dh_gen bg = ref_gen(&by);
        lt_send_generate(&s, &bg);
        bad_inputs(d.sock, other);
        lt_run(&s, 1);
        CHECK_EQ_INT(check_streams(&s, 1, &by), 1);
    }
    /* the unconfigured model file was never opened */
    char maps[64];
    snprintf(maps, sizeof maps, "/proc/%d/maps", (int)d.pid);
    size_t len;
    char *mm = tu_read_file(maps, &len);
    CHECK_MSG(strstr(mm, "stories260K.gguf") != NULL, "llamad's configured model is not mapped");
    CHECK_MSG(strstr(mm, "TinyStories-656K") == NULL, "llamad mapped a model it was not configured with");
    free(mm);
    lt_status st;
    lt_wait_idle(d.sock, &st);
    CHECK_EQ_INT(dh_stop(&d), 0);
}

int main(int argc, char **argv)
{
    CHECK_MSG(argc >= 3, "usage: load_daemon LLAMAD conc|kvx|slow|bad [N]");
    llamad = argv[1];
    signal(SIGPIPE, SIG_IGN);
    snprintf(m260, sizeof m260, "%s", tu_shared("models/stories260K.gguf"));
    const char *what = argv[2];
    if (strcmp(what, "conc") == 0) test_conc(conns_arg(argc, argv, 500));
    else if (strcmp(what, "kvx") == 0) test_kvx(conns_arg(argc, argv, 32));
    else if (strcmp(what, "slow") == 0) test_slow();
    else if (strcmp(what, "bad") == 0) test_bad();
    else tu_fail(__FILE__, __LINE__, "unknown test %s", what);
    printf("load_daemon %s: ok\n", what);
    return 0;
}
