/* Starts the real llamad on temporary sockets and speaks frames to it: Hello, Status,
 * ListModels, request errors, bad frames, limits, socket handling, SIGTERM. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dh.h"
#include "testutil.h"

#define E(c) LLAMAD__V1__ERROR__CODE__##c

static const char *llamad;

static Llamad__V1__ServerMessage *recv_kind(dh_conn *c, uint64_t rid, int kind)
{
    Llamad__V1__ServerMessage *m = dh_recv(c);
    CHECK_MSG(m != NULL, "connection closed; expected message kind %d", kind);
    if (m->body_case == LLAMAD__V1__SERVER_MESSAGE__BODY_ERROR)
        tu_fail(__FILE__, __LINE__, "error %d: %s", m->error->code, m->error->message);
    CHECK_EQ_INT(m->body_case, kind);
    CHECK_EQ_INT(m->request_id, rid);
    return m;
}

static void test_basics(const char *m1, const char *m2)
{
    dh_daemon d;
    dh_sock_path(d.sock, sizeof d.sock, "basic.sock");
    char model1[300], model2[300];
    CHECK(snprintf(model1, sizeof model1, "tiny=%s", m1) < (int)sizeof model1);
    snprintf(model2, sizeof model2, "q8=%s", m2);
    const char *args[] = {"--model", model1, "--model", model2, "--kv-cache-mib", "8", "--threads", "1",
                          "--max-requests-per-connection", "2", "--max-frame-bytes", "4096", NULL};
    dh_start(&d, llamad, args);

    /* the socket is 0660 */
    struct stat st;
    CHECK(stat(d.sock, &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK_EQ_INT(st.st_mode & 0777, 0660);

    dh_conn c;
    dh_connect(&c, d.sock);

    dh_send_hello(&c, 1);
    Llamad__V1__ServerMessage *m = recv_kind(&c, 1, LLAMAD__V1__SERVER_MESSAGE__BODY_HELLO);
    CHECK_EQ_INT(m->hello->protocol_version, 1);
    CHECK(strcmp(m->hello->server_name, "llamad") == 0);
    CHECK(strcmp(m->hello->default_model, "tiny") == 0);
    CHECK_EQ_INT(m->hello->max_frame_bytes, 4096);
    proto_server_free(m);

    dh_send_status(&c, 2);
    m = recv_kind(&c, 2, LLAMAD__V1__SERVER_MESSAGE__BODY_STATUS);
    CHECK_EQ_INT(m->status->n_loaded_models, 2);
    CHECK(strcmp(m->status->loaded_models[0], "tiny") == 0);
    CHECK(strcmp(m->status->loaded_models[1], "q8") == 0);
    CHECK(strcmp(m->status->default_model, "tiny") == 0);
    CHECK(m->status->kv_blocks_total > 0);
    CHECK_EQ_INT(m->status->kv_blocks_used, 0);
    CHECK_EQ_INT(m->status->kv_block_size, 16);
    CHECK_EQ_INT(m->status->queue_depth, 0);
    CHECK_EQ_INT(m->status->running_sequences, 0);
    CHECK_EQ_INT(m->status->connections, 1);
    proto_server_free(m);

    dh_send_list_models(&c, 3);
    m = recv_kind(&c, 3, LLAMAD__V1__SERVER_MESSAGE__BODY_MODEL_LIST);
    CHECK_EQ_INT(m->model_list->n_models, 2);
    Llamad__V1__ModelInfo *a = m->model_list->models[0], *b = m->model_list->models[1];
    CHECK(strcmp(a->name, "tiny") == 0 && a->is_default);
    CHECK(strcmp(a->architecture, "llama") == 0);
    CHECK(strcmp(a->quantization, "F32") == 0);
    CHECK_EQ_INT(a->vocab_size, 512);
    CHECK(a->parameter_count > 200000);
    CHECK(strcmp(b->name, "q8") == 0 && !b->is_default);
    CHECK(strcmp(b->quantization, "Q8_0") == 0);
    CHECK_EQ_INT(b->vocab_size, 2048);
    CHECK_EQ_INT(b->context_length, 512);
    proto_server_free(m);

    /* request errors: the connection goes on after each */
    uint32_t bos[] = {1};
    dh_gen g = {.model = "nope", .ids = bos, .n_ids = 1, .max_tokens = 4};
    dh_send_generate(&c, 10, &g);
    dh_expect_error(&c, 10, E(UNKNOWN_MODEL));

    g.model = NULL;
    dh_send_generate(&c, 0, &g); /* request_id 0 is reserved */
    dh_expect_error(&c, 0, E(INVALID_REQUEST));

    Llamad__V1__ClientMessage empty = LLAMAD__V1__CLIENT_MESSAGE__INIT;
    empty.request_id = 11;
    dh_send(&c, &empty); /* no body */
    dh_expect_error(&c, 11, E(INVALID_REQUEST));

    uint32_t bad_ids[] = {1, 600};
    dh_gen gb = {.ids = bad_ids, .n_ids = 2, .max_tokens = 4};
    dh_send_generate(&c, 12, &gb);
    dh_expect_error(&c, 12, E(INVALID_PARAMETER));

    dh_gen gt = {.ids = bos, .n_ids = 1, .max_tokens = 4, .has_temperature = true, .temperature = -1.0f};
    dh_send_generate(&c, 13, &gt);
    dh_expect_error(&c, 13, E(INVALID_PARAMETER));

    dh_send_cancel(&c, 14, 999);
    dh_expect_error(&c, 14, E(UNKNOWN_REQUEST_ID));

    Llamad__V1__ClientMessage hm = LLAMAD__V1__CLIENT_MESSAGE__INIT;
    Llamad__V1__Hello h = LLAMAD__V1__HELLO__INIT;
    h.protocol_version = 7;
    hm.request_id = 15;
    hm.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_HELLO;
    hm.hello = &h;
    dh_send(&c, &hm);
    dh_expect_error(&c, 15, E(UNSUPPORTED_VERSION));

    /* a well-framed payload that is not a ClientMessage: MALFORMED_FRAME, connection goes on */
    uint8_t garbage[] = {5, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff};
    dh_send_raw(&c, garbage, sizeof garbage);
    dh_expect_error(&c, 0, E(MALFORMED_FRAME));
    dh_send_status(&c, 16);
    proto_server_free(recv_kind(&c, 16, LLAMAD__V1__SERVER_MESSAGE__BODY_STATUS));

    /* three long generations in one write: the limit is two in flight per connection; a
     * reused request id is refused while the first is in flight */
    {
        dh_gen gl = {.ids = bos, .n_ids = 1, .max_tokens = 400, .has_temperature = true, .temperature = 0};
        dh_conn w;
        dh_connect(&w, d.sock);
        /* encode the three frames back to back, then send them at once */
        uint8_t buf[4096];
        size_t off = 0;
        uint64_t rids[4] = {21, 21, 22, 23};
        for (int i = 0; i < 4; i++) {
            Llamad__V1__ClientMessage cm = LLAMAD__V1__CLIENT_MESSAGE__INIT;
            Llamad__V1__GenerateRequest gr = LLAMAD__V1__GENERATE_REQUEST__INIT;
            Llamad__V1__TokenIds t = LLAMAD__V1__TOKEN_IDS__INIT;
            t.n_ids = 1;
            t.ids = (uint32_t *)gl.ids;
            gr.prompt_case = LLAMAD__V1__GENERATE_REQUEST__PROMPT_TOKENS;
            gr.tokens = &t;
            gr.has_max_tokens_case = LLAMAD__V1__GENERATE_REQUEST__HAS_MAX_TOKENS_MAX_TOKENS;
            gr.max_tokens = 400;
            gr.has_temperature_case = LLAMAD__V1__GENERATE_REQUEST__HAS_TEMPERATURE_TEMPERATURE;
            gr.temperature = 0;
            cm.request_id = rids[i];
            cm.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_GENERATE;
            cm.generate = &gr;
            size_t len = 0;
            CHECK(proto_client_encode(&cm, buf + off, sizeof buf - off, &len) == 0);
            off += len;
        }
        dh_send_raw(&w, buf, off);
        /* replies: errors for the duplicate 21 and for 23 (too many), and two full streams */
        int dup = 0, too_many = 0, done21 = 0, done22 = 0;
        while (done21 + done22 < 2 || dup + too_many < 2) {
            Llamad__V1__ServerMessage *r = dh_recv(&w);
            CHECK(r != NULL);
            if (r->body_case == LLAMAD__V1__SERVER_MESSAGE__BODY_ERROR) {
                if (r->request_id == 21 && r->error->code == E(DUPLICATE_REQUEST_ID)) dup++;
                else if (r->request_id == 23 && r->error->code == E(TOO_MANY_REQUESTS)) too_many++;
                else tu_fail(__FILE__, __LINE__, "unexpected error %d for %llu: %s", r->error->code,
                             (unsigned long long)r->request_id, r->error->message);
            } else if (r->body_case == LLAMAD__V1__SERVER_MESSAGE__BODY_GENERATE_DONE) {
                CHECK_EQ_INT(r->generate_done->generated_tokens, 400);
                CHECK_EQ_INT(r->generate_done->finish_reason, LLAMAD__V1__GENERATE_DONE__FINISH_REASON__LENGTH);
                if (r->request_id == 21) done21++;
                else if (r->request_id == 22) done22++;
                else tu_fail(__FILE__, __LINE__, "done for %llu", (unsigned long long)r->request_id);
            } else {
                CHECK_EQ_INT(r->body_case, LLAMAD__V1__SERVER_MESSAGE__BODY_TOKEN_CHUNK);
                CHECK(r->request_id == 21 || r->request_id == 22);
            }
            proto_server_free(r);
        }
        CHECK_EQ_INT(dup, 1);
        CHECK_EQ_INT(too_many, 1);
        CHECK_EQ_INT(done21, 1);
        CHECK_EQ_INT(done22, 1);
        dh_close(&w);
    }

    /* oversize frame: FRAME_TOO_LARGE, then the server closes that connection only */
    {
        dh_conn o;
        dh_connect(&o, d.sock);
        uint8_t hdr[4] = {0x01, 0x10, 0, 0}; /* 4097 bytes > 4096 */
        dh_send_raw(&o, hdr, sizeof hdr);
        dh_expect_error(&o, 0, E(FRAME_TOO_LARGE));
        CHECK(dh_recv(&o) == NULL);
        dh_close(&o);
    }
    /* garbage bytes: the length they spell is far above the limit */
    {
        dh_conn o;
        dh_connect(&o, d.sock);
        const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        dh_send_raw(&o, junk, sizeof junk - 1);
        dh_expect_error(&o, 0, E(FRAME_TOO_LARGE));
        CHECK(dh_recv(&o) == NULL);
        dh_close(&o);
    }
    /* a truncated frame, then end of stream: the server just closes */
    {
        dh_conn o;
        dh_connect(&o, d.sock);
        uint8_t part[] = {100, 0, 0, 0, 1, 2, 3};
        dh_send_raw(&o, part, sizeof part);
        shutdown(o.fd, SHUT_WR);
        CHECK(dh_recv(&o) == NULL);
        dh_close(&o);
    }

    /* the first connection still works */
    dh_send_status(&c, 30);
    m = recv_kind(&c, 30, LLAMAD__V1__SERVER_MESSAGE__BODY_STATUS);
    CHECK_EQ_INT(m->status->kv_blocks_used, 0);
    CHECK(m->status->kv_blocks_cached > 0); /* the finished generations left their blocks cached */
    proto_server_free(m);

    /* a second llamad refuses to take over a live socket */
    const char *args2[] = {"--socket", d.sock, "--model", model1, "--kv-cache-mib", "2", NULL};
    pid_t p2 = dh_spawn(llamad, args2);
    CHECK(dh_wait(p2) != 0);
    CHECK(dh_try_connect(d.sock) == 0);

    dh_close(&c);
    CHECK_EQ_INT(dh_stop(&d), 0);
    /* the socket file is removed at exit */
    CHECK(access(d.sock, F_OK) != 0);
}

static void test_stale_socket(const char *m1)
{
    char model1[300];
    CHECK(snprintf(model1, sizeof model1, "tiny=%s", m1) < (int)sizeof model1);
    dh_daemon d;
    dh_sock_path(d.sock, sizeof d.sock, "stale.sock");
    /* a socket file nobody listens on */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    CHECK(strlen(d.sock) < sizeof sa.sun_path);
    memcpy(sa.sun_path, d.sock, strlen(d.sock) + 1);
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    close(fd);
    CHECK(dh_try_connect(d.sock) == -ECONNREFUSED);
    const char *args[] = {"--model", model1, "--kv-cache-mib", "2", "--threads", "1", NULL};
    dh_start(&d, llamad, args);
    dh_conn c;
    dh_connect(&c, d.sock);
    dh_send_hello(&c, 1);
    proto_server_free(recv_kind(&c, 1, LLAMAD__V1__SERVER_MESSAGE__BODY_HELLO));
    dh_close(&c);
    CHECK_EQ_INT(dh_stop(&d), 0);

    /* a regular file in the way is not touched */
    char path[256];
    dh_sock_path(path, sizeof path, "file.sock");
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fputs("not a socket\n", f);
    fclose(f);
    const char *args2[] = {"--socket", path, "--model", model1, "--kv-cache-mib", "2", NULL};
    CHECK(dh_wait(dh_spawn(llamad, args2)) != 0);
    struct stat st;
    CHECK(stat(path, &st) == 0 && S_ISREG(st.st_mode));
}

static void test_sigterm_drain(const char *m1)
{
    char model1[300];
    CHECK(snprintf(model1, sizeof model1, "tiny=%s", m1) < (int)sizeof model1);
    dh_daemon d;
    dh_sock_path(d.sock, sizeof d.sock, "drain.sock");
    const char *args[] = {"--model", model1, "--kv-cache-mib", "4", "--threads", "1", "--grace-s", "60", NULL};
    dh_start(&d, llamad, args);
    dh_conn c;
    dh_connect(&c, d.sock);
    uint32_t bos[] = {1};
    dh_gen g = {.ids = bos, .n_ids = 1, .max_tokens = 300, .has_temperature = true, .temperature = 0};
    dh_send_generate(&c, 5, &g);
    /* wait for the stream to start, then ask the daemon to stop */
    Llamad__V1__ServerMessage *m = dh_recv(&c);
    CHECK(m != NULL && m->body_case == LLAMAD__V1__SERVER_MESSAGE__BODY_TOKEN_CHUNK);
    int got = (int)m->token_chunk->n_token_ids;
    proto_server_free(m);
    CHECK(kill(d.pid, SIGTERM) == 0);
    /* the job in flight still finishes completely */
    for (;;) {
        m = dh_recv(&c);
        CHECK_MSG(m != NULL, "connection closed before the job finished");
        if (m->body_case == LLAMAD__V1__SERVER_MESSAGE__BODY_GENERATE_DONE) {
            CHECK_EQ_INT(m->generate_done->finish_reason, LLAMAD__V1__GENERATE_DONE__FINISH_REASON__LENGTH);
            CHECK_EQ_INT(m->generate_done->generated_tokens, 300);
            proto_server_free(m);
            break;
        }
        CHECK_EQ_INT(m->body_case, LLAMAD__V1__SERVER_MESSAGE__BODY_TOKEN_CHUNK);
        got += (int)m->token_chunk->n_token_ids;
        proto_server_free(m);
    }
    CHECK_EQ_INT(got, 300);
    /* then the daemon closes the connection and exits 0 */
    CHECK(dh_recv(&c) == NULL);
    dh_close(&c);
    CHECK_EQ_INT(dh_wait(d.pid), 0);
}

/* max-connections, journald-style log lines, SIGHUP reload of the config file */
static void test_limits_log_reload(const char *m1)
{
    char model1[300];
    CHECK(snprintf(model1, sizeof model1, "tiny=%s", m1) < (int)sizeof model1);
    char conf[512], logpath[512];
    snprintf(conf, sizeof conf, "%s/reload.conf", tu_tmpdir());
    snprintf(logpath, sizeof logpath, "%s/reload.log", tu_tmpdir());
    FILE *f = fopen(conf, "w");
    CHECK(f != NULL);
    fprintf(f, "model = %s\nkv-cache-mib = 2\nthreads = 1\nmax-connections = 1\nmax-tokens = 50\n", model1);
    fclose(f);

    dh_daemon d;
    dh_sock_path(d.sock, sizeof d.sock, "reload.sock");
    /* stderr to a file, as journald would get it */
    int saved = dup(2);
    int lfd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(saved >= 0 && lfd >= 0);
    dup2(lfd, 2);
    setenv("JOURNAL_STREAM", "8:12345", 1);
    const char *args[] = {"--config", conf, NULL};
    dh_start(&d, llamad, args);
    unsetenv("JOURNAL_STREAM");
    dup2(saved, 2);
    close(saved);
    close(lfd);

    dh_conn c;
    Llamad__V1__ServerMessage *m;
    for (int tries = 0;; tries++) {
        /* dh_start's probe connection may still count for a moment */
        CHECK(tries < 10000);
        dh_connect(&c, d.sock);
        c.may_be_refused = true; /* OVERLOADED and closed before the hello is sent */
        dh_send_hello(&c, 1);
        c.may_be_refused = false;
        m = dh_recv(&c);
        if (m != NULL && m->body_case == LLAMAD__V1__SERVER_MESSAGE__BODY_HELLO) break;
        CHECK(m == NULL || (m->body_case == LLAMAD__V1__SERVER_MESSAGE__BODY_ERROR && m->error->code == E(OVERLOADED)));
        proto_server_free(m);
        dh_close(&c);
        usleep(1000);
    }
    proto_server_free(m);
    /* a second connection is over max-connections = 1: OVERLOADED, then closed */
    dh_conn c2;
    dh_connect(&c2, d.sock);
    dh_expect_error(&c2, 0, E(OVERLOADED));
    CHECK(dh_recv(&c2) == NULL);
    dh_close(&c2);

    /* max-tokens = 50 refuses 60 ... */
    uint32_t bos[] = {1};
    dh_gen g = {.ids = bos, .n_ids = 1, .max_tokens = 60, .has_temperature = true};
    dh_send_generate(&c, 2, &g);
    dh_expect_error(&c, 2, E(INVALID_PARAMETER));
    /* ... until the file says 100 and SIGHUP reloads it */
    f = fopen(conf, "w");
    CHECK(f != NULL);
    fprintf(f, "model = %s\nkv-cache-mib = 2\nthreads = 1\nmax-connections = 1\nmax-tokens = 100\n", model1);
    fclose(f);
    CHECK(kill(d.pid, SIGHUP) == 0);
    for (uint64_t rid = 3;; rid++) {
        CHECK_MSG(rid < 100000, "SIGHUP did not reload max-tokens");
        dh_send_generate(&c, rid, &g);
        dh_result r = {.rid = rid};
        dh_collect(&c, &r, 1);
        if (r.error == 0) {
            CHECK_EQ_INT(r.n_ids, 60);
            break;
        }
        CHECK_EQ_INT(r.error, E(INVALID_PARAMETER));
        usleep(2000);
    }
    dh_close(&c);
    CHECK_EQ_INT(dh_stop(&d), 0);

    /* every log line carries a journald priority prefix (<6> info, <4> warning, ...) */
    size_t len;
    char *log = tu_read_file(logpath, &len);
    CHECK(len > 0);
    int lines = 0;
    for (char *line = log; *line; lines++) {
        CHECK_MSG(line[0] == '<' && line[1] >= '0' && line[1] <= '7' && line[2] == '>', "log line without a priority: %.80s",
                  line);
        char *nl = strchr(line, '\n');
        if (nl == NULL) break;
        line = nl + 1;
    }
    CHECK(lines >= 3);
    CHECK(strstr(log, "<6>ready") != NULL);
    CHECK(strstr(log, "<4>connection from pid") != NULL); /* the refused second connection */
    CHECK(strstr(log, "SIGHUP") != NULL);
    free(log);
}

/* --help, --version, --check-config and argument errors: exit statuses and output */
static void test_cli(const char *m1)
{
    char out[512];
    snprintf(out, sizeof out, "%s/cli.out", tu_tmpdir());
    char model1[300];
    CHECK(snprintf(model1, sizeof model1, "tiny=%s", m1) < (int)sizeof model1);
    struct {
        const char *args[8];
        int status;
        const char *needle; /* in stdout + stderr */
    } cases[] = {
        {{"--help", NULL}, 0, "--kv-cache-mib N"},
        {{"--version", NULL}, 0, "llamad "},
        {{"--check-config", "--model", model1, "--kv-cache-mib", "4", NULL}, 0, "sequences fit at full context"},
        {{"--check-config", "--model", "x=/nonexistent/model.gguf", NULL}, 2, "/nonexistent/model.gguf"},
        {{"--check-config", NULL}, 2, "no model configured"},
        {{"--max-seqs", "0", NULL}, 2, "--max-seqs: 0 is out of range (1..4096)"},
        {{"--bogus", NULL}, 2, "unknown option --bogus"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            dup2(fd, 1);
            dup2(fd, 2);
            const char *argv[10] = {llamad};
            for (int k = 0; cases[i].args[k]; k++) argv[k + 1] = cases[i].args[k];
            execv(llamad, (char *const *)argv);
            _exit(127);
        }
        int st = dh_wait(pid);
        size_t len;
        char *text = tu_read_file(out, &len);
        CHECK_MSG(st == cases[i].status, "case %zu (%s): exit %d, want %d: %s", i, cases[i].args[0], st,
                  cases[i].status, text);
        CHECK_MSG(strstr(text, cases[i].needle) != NULL, "case %zu: '%s' not in: %s", i, cases[i].needle, text);
        free(text);
    }
}

/* kB of resident memory of a running process (VmRSS) */
static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1) break;
    fclose(f);
    CHECK(kb >= 0);
    return kb;
}

/* A serving daemon has its whole KV cache resident from start-up; --check-config only
 * reserves it (it must not take the memory of a 96 MiB cache, or minutes for a large one). */
static void test_kv_commit(const char *m1)
{
    char model1[300];
    CHECK(snprintf(model1, sizeof model1, "tiny=%s", m1) < (int)sizeof model1);
    dh_daemon d;
    dh_sock_path(d.sock, sizeof d.sock, "kv.sock");
    const char *args[] = {"--model", model1, "--kv-cache-mib", "96", "--threads", "1", NULL};
    dh_start(&d, llamad, args);
    const long serving = rss_kb(d.pid);
    CHECK_MSG(serving >= 96 * 1024, "serving daemon: VmRSS %ld kB, under its 96 MiB KV cache", serving);
    CHECK_EQ_INT(dh_stop(&d), 0);

    const char *check[] = {llamad, "--check-config", "--model", model1, "--kv-cache-mib", "96", NULL};
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(fd, 2);
        execv(llamad, (char *const *)check);
        _exit(127);
    }
    int st = 0;
    struct rusage ru;
    CHECK(wait4(pid, &st, 0, &ru) == pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK_MSG(ru.ru_maxrss < serving - 64 * 1024, "--check-config: max RSS %ld kB (serving: %ld kB)",
              ru.ru_maxrss, serving);
}

int main(int argc, char **argv)
{
    CHECK_MSG(argc == 2, "usage: daemon_server LLAMAD");
    llamad = argv[1];
    signal(SIGPIPE, SIG_IGN);
    const char *m1 = tu_shared("models/stories260K.gguf");
    char m1copy[4096];
    snprintf(m1copy, sizeof m1copy, "%s", m1);
    const char *m2 = tu_shared("models/TinyStories-656K-Q8_0.gguf");
    test_basics(m1copy, m2);
    test_stale_socket(m1copy);
    test_sigterm_drain(m1copy);
    test_limits_log_reload(m1copy);
    test_cli(m1copy);
    test_kv_commit(m1copy);
    printf("daemon_server: ok\n");
    return 0;
}
