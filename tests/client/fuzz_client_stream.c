/* libFuzzer target: arbitrary bytes from "the daemon" into a libllamactl connection that
 * has one request of every kind in flight. Whatever arrives, the library must not crash,
 * leak, or hand out bad pointers (the callback reads every byte it is given). */
#include "lc_testing.h"
#include "llamactl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile unsigned g_sink;

static void touch(const void *p, size_t n)
{
    const unsigned char *b = p;
    unsigned s = 0;
    for (size_t i = 0; i < n; i++)
        s += b[i];
    g_sink += s;
}

static void touch_str(const char *s)
{
    touch(s, strlen(s));
}

static void on_event(lc_conn *c, const lc_event *ev, void *ud)
{
    (void)ud;
    switch (ev->type) {
    case LC_EVENT_CHUNK:
        touch(ev->u.chunk.tokens, ev->u.chunk.n_tokens * sizeof(uint32_t));
        touch(ev->u.chunk.text, ev->u.chunk.text_len);
        for (size_t i = 0; i < ev->u.chunk.n_logprobs; i++) {
            const lc_token_logprob *lp = &ev->u.chunk.logprobs[i];
            for (size_t k = 0; k < lp->n_top; k++)
                touch(lp->top[k].text.data, lp->top[k].text.len);
        }
        /* a callback may cancel and submit */
        lc_cancel(c, ev->request_id);
        break;
    case LC_EVENT_DONE:
        g_sink += (unsigned)ev->u.done.finish + ev->u.done.generated_tokens;
        touch_str(lc_finish_name(ev->u.done.finish));
        break;
    case LC_EVENT_ERROR:
        touch_str(ev->u.error.message);
        touch_str(lc_server_code_name(ev->u.error.server_code));
        break;
    case LC_EVENT_TOKENS:
        touch(ev->u.tokens.tokens, ev->u.tokens.n_tokens * sizeof(uint32_t));
        for (size_t i = 0; i < ev->u.tokens.n_pieces; i++)
            touch(ev->u.tokens.pieces[i].data, ev->u.tokens.pieces[i].len);
        break;
    case LC_EVENT_TEXT:
        touch(ev->u.text.data, ev->u.text.len);
        break;
    case LC_EVENT_STATUS:
        touch_str(ev->u.status->default_model);
        for (size_t i = 0; i < ev->u.status->n_loaded_models; i++)
            touch_str(ev->u.status->loaded_models[i]);
        break;
    case LC_EVENT_MODELS:
        for (size_t i = 0; i < ev->u.models.n_models; i++) {
            const lc_model_info *m = &ev->u.models.models[i];
            touch_str(m->name);
            touch_str(m->path);
            touch_str(m->architecture);
            touch_str(m->quantization);
        }
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 18)) return 0;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
    lc_options opt = {.socket_path = "/fuzz.sock", .max_frame_bytes = 65536};
    lc_conn *c = lc_conn_new(&opt);
    if (c == NULL || llamactl_testing_adopt_fd(c, sv[0]) != 0) abort();

    /* ids 1..5: generate (2 completions), tokenize, detokenize, status, models */
    lc_generate_params p;
    lc_generate_params_init(&p);
    p.prompt = "x";
    p.n = 2;
    p.logprobs = 2;
    if (lc_submit_generate(c, &p, on_event, NULL, NULL) != 0) abort();
    if (lc_submit_tokenize(c, NULL, "x", 0, on_event, NULL, NULL) != 0) abort();
    if (lc_submit_detokenize(c, NULL, (const uint32_t[]){1}, 1, on_event, NULL, NULL) != 0) abort();
    if (lc_submit_status(c, on_event, NULL, NULL) != 0) abort();
    if (lc_submit_models(c, on_event, NULL, NULL) != 0) abort();
    lc_conn_flush(c);

    size_t off = 0;
    int rc = 0;
    for (int rounds = 0; off < size && rc == 0 && rounds < 10000; rounds++) {
        ssize_t n = send(sv[1], data + off, size - off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) off += (size_t)n;
        rc = lc_conn_process(c);
    }
    shutdown(sv[1], SHUT_WR);
    for (int rounds = 0; rc == 0 && rounds < 10000; rounds++)
        rc = lc_conn_process(c);
    if (rc == 0) abort(); /* the stream ended: the connection must have failed by now */
    if (lc_conn_in_flight(c) != 0) abort(); /* every request got its final event */
    lc_conn_free(c);
    close(sv[1]);
    return 0;
}
