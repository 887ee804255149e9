/* libFuzzer target: the frame decoder and protobuf unpacking of ClientMessage/ServerMessage.
 *
 * The input is a byte stream of frames. It is decoded three ways: in one chunk, in uneven
 * chunks (must give the same frames and the same end state), and with a tiny maximum (frames
 * up to the maximum as before, then -EMSGSIZE exactly where a longer frame starts). Every
 * frame is unpacked as both message types; what unpacks is encoded again, and that encoding
 * must unpack and re-encode to the same bytes. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

#define FUZZ_CHECK(c)                                                                  \
    do {                                                                               \
        if (!(c)) {                                                                    \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);      \
            abort();                                                                   \
        }                                                                              \
    } while (0)

#define MAX_FRAME_FUZZ (64u * 1024u)
#define TINY_MAX 24u

typedef struct {
    uint64_t hash;
    size_t len;
} frame_sig;

typedef struct {
    frame_sig *f;
    size_t n, cap;
    int end;       /* finish() result, or the feed error */
    size_t pending;
} run_result;

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211u;
    return h;
}

static void check_roundtrip_client(const proto_frame *fr)
{
    Llamad__V1__ClientMessage *m = NULL;
    if (proto_client_unpack(fr->data, fr->len, &m) != 0)
        return;
    size_t n = proto_client_frame_size(m);
    FUZZ_CHECK(n >= PROTO_FRAME_HEADER);
    uint8_t *a = malloc(n), *b = malloc(n);
    FUZZ_CHECK(a && b);
    size_t la = 0, lb = 0;
    FUZZ_CHECK(proto_client_encode(m, a, n - 1, &la) == -ENOBUFS);
    FUZZ_CHECK(proto_client_encode(m, a, n, &la) == 0 && la == n);
    Llamad__V1__ClientMessage *m2 = NULL;
    FUZZ_CHECK(proto_client_unpack(a + PROTO_FRAME_HEADER, la - PROTO_FRAME_HEADER, &m2) == 0);
    FUZZ_CHECK(proto_client_frame_size(m2) == n);
    FUZZ_CHECK(proto_client_encode(m2, b, n, &lb) == 0 && lb == n);
    FUZZ_CHECK(memcmp(a, b, n) == 0);
    proto_client_free(m2);
    proto_client_free(m);
    free(a);
    free(b);
}

static void check_roundtrip_server(const proto_frame *fr)
{
    Llamad__V1__ServerMessage *m = NULL;
    if (proto_server_unpack(fr->data, fr->len, &m) != 0)
        return;
    size_t n = proto_server_frame_size(m);
    FUZZ_CHECK(n >= PROTO_FRAME_HEADER);
    uint8_t *a = malloc(n), *b = malloc(n);
    FUZZ_CHECK(a && b);
    size_t la = 0, lb = 0;
    FUZZ_CHECK(proto_server_encode(m, a, n, &la) == 0 && la == n);
    Llamad__V1__ServerMessage *m2 = NULL;
    FUZZ_CHECK(proto_server_unpack(a + PROTO_FRAME_HEADER, la - PROTO_FRAME_HEADER, &m2) == 0);
    FUZZ_CHECK(proto_server_frame_size(m2) == n);
    FUZZ_CHECK(proto_server_encode(m2, b, n, &lb) == 0 && lb == n);
    FUZZ_CHECK(memcmp(a, b, n) == 0);
    proto_server_free(m2);
    proto_server_free(m);
    free(a);
    free(b);
}

/* Decodes data with the given maximum, in chunks from `chunks` (0: one chunk). */
static void run(const uint8_t *data, size_t size, uint32_t max, const size_t *chunks,
                size_t n_chunks, int unpack, run_result *res)
{
    proto_decoder d;
    proto_decoder_init(&d, max);
    memset(res, 0, sizeof(*res));
    size_t pos = 0, ci = 0;
    int err = 0;
    while (pos < size && !err) {
        size_t len = size - pos;
        if (n_chunks) {
            size_t c = chunks[ci++ % n_chunks];
            if (c < len)
                len = c;
        }
        const uint8_t *p = data + pos;
        pos += len;
        while (len > 0) {
            size_t used = 0;
            proto_frame fr = {0};
            int r = proto_decoder_feed(&d, p, len, &used, &fr);
            if (r < 0) {
                FUZZ_CHECK(r == -EMSGSIZE); /* the only error input can cause here */
                FUZZ_CHECK(d.announced > max);
                FUZZ_CHECK(proto_decoder_finish(&d) == r);
                err = r;
                break;
            }
            FUZZ_CHECK(used <= len);
            FUZZ_CHECK(r == 1 || used == len);
            p += used;
            len -= used;
            if (r == 1) {
                FUZZ_CHECK(fr.data != NULL && fr.len <= max);
                if (res->n == res->cap) {
                    res->cap = res->cap ? 2 * res->cap : 16;
                    res->f = realloc(res->f, res->cap * sizeof(*res->f));
                    FUZZ_CHECK(res->f);
                }
                res->f[res->n].hash = fnv1a(fr.data, fr.len);
                res->f[res->n].len = fr.len;
                res->n++;
                if (unpack) {
                    check_roundtrip_client(&fr);
                    check_roundtrip_server(&fr);
                }
            }
            FUZZ_CHECK(d.cap <= max);
            FUZZ_CHECK(proto_decoder_pending(&d) <= PROTO_FRAME_HEADER + (size_t)max);
        }
    }
    res->pending = proto_decoder_pending(&d);
    res->end = err ? err : proto_decoder_finish(&d);
    FUZZ_CHECK(res->end == 0 || res->end == -EPIPE || res->end == -EMSGSIZE);
    FUZZ_CHECK((res->end == -EPIPE) == (!err && res->pending > 0));
    proto_decoder_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t chunks[] = {1, 2, 5, 1, 64, 3, 4, 1000, 7};
    run_result whole, split, tiny;

    run(data, size, MAX_FRAME_FUZZ, NULL, 0, 1, &whole);
    run(data, size, MAX_FRAME_FUZZ, chunks + size % 9, 9 - size % 9, 0, &split);
    FUZZ_CHECK(whole.n == split.n && whole.end == split.end && whole.pending == split.pending);
    for (size_t i = 0; i < whole.n; i++)
        FUZZ_CHECK(whole.f[i].len == split.f[i].len && whole.f[i].hash == split.f[i].hash);

    /* With a tiny maximum: the same frames up to the first one longer than it. */
    run(data, size, TINY_MAX, chunks, 9, 0, &tiny);
    size_t k = 0;
    while (k < whole.n && whole.f[k].len <= TINY_MAX)
        k++;
    FUZZ_CHECK(tiny.n == k);
    for (size_t i = 0; i < k; i++)
        FUZZ_CHECK(tiny.f[i].hash == whole.f[i].hash);
    if (k < whole.n)
        FUZZ_CHECK(tiny.end == -EMSGSIZE);

    free(whole.f);
    free(split.f);
    free(tiny.f);
    return 0;
}
