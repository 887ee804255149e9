/* The frame decoder on a stream: reads split at every byte boundary, one byte at a time and in
 * uneven chunks; oversize frames (rejected from the header, before allocating); truncated
 * streams; garbage protobuf; zero-length frames; a configurable maximum. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "frame.h"
#include "testutil.h"

#define MAX_FRAMES 16

/* A stream of encoded frames and what each payload should be. */
typedef struct {
    uint8_t *bytes;
    size_t len;
    int n;
    size_t off[MAX_FRAMES]; /* payload offset in bytes */
    size_t plen[MAX_FRAMES];
} stream;

static void stream_add_client(stream *s, const Llamad__V1__ClientMessage *m)
{
    CHECK(s->n < MAX_FRAMES);
    size_t need = proto_client_frame_size(m);
    s->bytes = realloc(s->bytes, s->len + need);
    CHECK(s->bytes);
    size_t len = 0;
    CHECK_EQ_INT(proto_client_encode(m, s->bytes + s->len, need, &len), 0);
    CHECK_EQ_INT(len, need);
    s->off[s->n] = s->len + PROTO_FRAME_HEADER;
    s->plen[s->n] = len - PROTO_FRAME_HEADER;
    s->n++;
    s->len += len;
}

static void stream_add_raw(stream *s, const void *payload, uint32_t n)
{
    CHECK(s->n < MAX_FRAMES);
    s->bytes = realloc(s->bytes, s->len + 4 + n);
    CHECK(s->bytes);
    uint8_t *p = s->bytes + s->len;
    p[0] = (uint8_t)n;
    p[1] = (uint8_t)(n >> 8);
    p[2] = (uint8_t)(n >> 16);
    p[3] = (uint8_t)(n >> 24);
    if (n)
        memcpy(p + 4, payload, n);
    s->off[s->n] = s->len + 4;
    s->plen[s->n] = n;
    s->n++;
    s->len += 4 + (size_t)n;
}

/* A few different messages, plus a zero-length frame in the middle. */
static stream small_stream(void)
{
    stream s = {0};
    Llamad__V1__Hello h = LLAMAD__V1__HELLO__INIT;
    h.protocol_version = 1;
    h.client_name = "split-test";
    Llamad__V1__ClientMessage m = LLAMAD__V1__CLIENT_MESSAGE__INIT;
    m.request_id = 1;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_HELLO;
    m.hello = &h;
    stream_add_client(&s, &m);

    Llamad__V1__GenerateRequest g = LLAMAD__V1__GENERATE_REQUEST__INIT;
    g.prompt_case = LLAMAD__V1__GENERATE_REQUEST__PROMPT_TEXT;
    g.text = "Once upon a time there was a little frame that was split everywhere.";
    g.has_temperature_case = LLAMAD__V1__GENERATE_REQUEST__HAS_TEMPERATURE_TEMPERATURE;
    g.temperature = 0;
    g.has_seed_case = LLAMAD__V1__GENERATE_REQUEST__HAS_SEED_SEED;
    g.seed = 1234;
    m = (Llamad__V1__ClientMessage)LLAMAD__V1__CLIENT_MESSAGE__INIT;
    m.request_id = 2;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_GENERATE;
    m.generate = &g;
    stream_add_client(&s, &m);

    stream_add_raw(&s, NULL, 0); /* zero-length frame */

    Llamad__V1__CancelRequest c = LLAMAD__V1__CANCEL_REQUEST__INIT;
    c.target_request_id = 2;
    m = (Llamad__V1__ClientMessage)LLAMAD__V1__CLIENT_MESSAGE__INIT;
    m.request_id = 3;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_CANCEL;
    m.cancel = &c;
    stream_add_client(&s, &m);

    Llamad__V1__StatusRequest st = LLAMAD__V1__STATUS_REQUEST__INIT;
    m = (Llamad__V1__ClientMessage)LLAMAD__V1__CLIENT_MESSAGE__INIT;
    m.request_id = 4;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_STATUS;
    m.status = &st;
    stream_add_client(&s, &m);

    stream_add_raw(&s, NULL, 0); /* and one at the very end */
    return s;
}

/* Feeds data[0..len) in one call sequence; records frames; returns the count. */
static int feed_all(proto_decoder *d, const stream *s, const uint8_t *data, size_t len,
                    int first)
{
    int got = first;
    while (len > 0) {
        size_t used = 0;
        proto_frame fr = {0};
        int r = proto_decoder_feed(d, data, len, &used, &fr);
        CHECK_MSG(r == 0 || r == 1, "feed returned %d", r);
        CHECK(used <= len);
        if (r == 0)
            CHECK_EQ_INT(used, len);
        data += used;
        len -= used;
        if (r == 1) {
            CHECK_MSG(got < s->n, "more frames than were sent");
            CHECK(fr.data != NULL);
            CHECK_EQ_INT(fr.len, s->plen[got]);
            CHECK_MSG(memcmp(fr.data, s->bytes + s->off[got], fr.len) == 0,
                      "frame %d payload differs", got);
            if (fr.len > 0) { /* every payload here is a valid ClientMessage */
                Llamad__V1__ClientMessage *m = NULL;
                CHECK_EQ_INT(proto_client_unpack(fr.data, fr.len, &m), 0);
                proto_client_free(m);
            }
            got++;
        } else {
            CHECK(used > 0 || len == 0);
        }
    }
    return got;
}

static void test_split_everywhere(void)
{
    stream s = small_stream();
    CHECK(s.len > 100);
    for (size_t k = 0; k <= s.len; k++) {
        proto_decoder d;
        proto_decoder_init(&d, 0);
        int got = feed_all(&d, &s, s.bytes, k, 0);
        got = feed_all(&d, &s, s.bytes + k, s.len - k, got);
        CHECK_MSG(got == s.n, "split at %zu: %d frames of %d", k, got, s.n);
        CHECK_EQ_INT(proto_decoder_finish(&d), 0);
        CHECK_EQ_INT(proto_decoder_pending(&d), 0);
        proto_decoder_free(&d);
    }
    /* every pair of split points on the first frames (three pieces) */
    size_t lim = s.off[3];
    for (size_t a = 0; a <= lim; a++)
        for (size_t b = a; b <= lim; b++) {
            proto_decoder d;
            proto_decoder_init(&d, 0);
            int got = feed_all(&d, &s, s.bytes, a, 0);
            got = feed_all(&d, &s, s.bytes + a, b - a, got);
            got = feed_all(&d, &s, s.bytes + b, s.len - b, got);
            CHECK_EQ_INT(got, s.n);
            CHECK_EQ_INT(proto_decoder_finish(&d), 0);
            proto_decoder_free(&d);
        }
    free(s.bytes);
}

static void test_one_byte_at_a_time(void)
{
    stream s = small_stream();
    proto_decoder d;
    proto_decoder_init(&d, 0);
    int got = 0;
    for (size_t i = 0; i < s.len; i++) {
        got = feed_all(&d, &s, s.bytes + i, 1, got);
        /* between frames nothing is pending; inside one, the bytes so far are */
        if (proto_decoder_pending(&d) == 0)
            CHECK_EQ_INT(proto_decoder_finish(&d), 0);
        else
            CHECK_EQ_INT(proto_decoder_finish(&d), -EPIPE);
    }
    CHECK_EQ_INT(got, s.n);
    CHECK_EQ_INT(proto_decoder_finish(&d), 0);
    proto_decoder_free(&d);
    free(s.bytes);
}

/* Large frames (above the decoder's keep size) among small ones, uneven chunks. */
static void test_large_frames_chunked(void)
{
    stream s = {0};
    size_t big = 300 * 1000;
    uint8_t *text = malloc(big + 1);
    CHECK(text);
    for (size_t i = 0; i < big; i++)
        text[i] = (uint8_t)('a' + i % 26);
    text[big] = 0;
    Llamad__V1__GenerateRequest g = LLAMAD__V1__GENERATE_REQUEST__INIT;
    g.prompt_case = LLAMAD__V1__GENERATE_REQUEST__PROMPT_TEXT;
    g.text = (char *)text;
    Llamad__V1__ClientMessage m = LLAMAD__V1__CLIENT_MESSAGE__INIT;
    m.request_id = 1;
    m.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_GENERATE;
    m.generate = &g;
    stream_add_client(&s, &m);
    Llamad__V1__StatusRequest st = LLAMAD__V1__STATUS_REQUEST__INIT;
    Llamad__V1__ClientMessage m2 = LLAMAD__V1__CLIENT_MESSAGE__INIT;
    m2.request_id = 2;
    m2.body_case = LLAMAD__V1__CLIENT_MESSAGE__BODY_STATUS;
    m2.status = &st;
    stream_add_client(&s, &m2);
    g.text = (char *)text + big / 2;
    m.request_id = 3;
    stream_add_client(&s, &m);
    stream_add_client(&s, &m2);

    static const size_t chunks[] = {1, 3, 4096, 7, 65536, 2, 100000, 5, 1 << 20};
    for (size_t variant = 0; variant < 4; variant++) {
        proto_decoder d;
        proto_decoder_init(&d, 0);
        size_t pos = 0, ci = variant;
        int got = 0;
        while (pos < s.len) {
            size_t n = chunks[ci++ % (sizeof chunks / sizeof chunks[0])];
            if (n > s.len - pos)
                n = s.len - pos;
            got = feed_all(&d, &s, s.bytes + pos, n, got);
            pos += n;
            CHECK(d.cap <= PROTO_DEFAULT_MAX_FRAME);
        }
        CHECK_EQ_INT(got, s.n);
        CHECK_EQ_INT(proto_decoder_finish(&d), 0);
        proto_decoder_free(&d);
    }
    free(text);
    free(s.bytes);
}

/* A whole frame inside one chunk is handed out in place, without a copy. */
static void test_zero_copy(void)
{
    stream s = small_stream();
    proto_decoder d;
    proto_decoder_init(&d, 0);
    size_t used = 0;
    proto_frame fr;
    CHECK_EQ_INT(proto_decoder_feed(&d, s.bytes, s.len, &used, &fr), 1);
    CHECK(fr.data == s.bytes + s.off[0]);
    CHECK_EQ_INT(used, s.off[0] + s.plen[0]);
    CHECK(d.buf == NULL); /* nothing was allocated */
    proto_decoder_free(&d);
    free(s.bytes);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void test_oversize(void)
{
    /* default maximum; the length alone is enough to reject, one byte at a time too */
    uint32_t lens[] = {PROTO_DEFAULT_MAX_FRAME + 1, 0x7fffffffu, UINT32_MAX};
    for (size_t i = 0; i < 3; i++) {
        uint8_t hdr[4];
        put_le32(hdr, lens[i]);
        proto_decoder d;
        proto_decoder_init(&d, 0);
        CHECK_EQ_INT(d.max_frame, PROTO_DEFAULT_MAX_FRAME);
        size_t used = 777;
        proto_frame fr = {0};
        for (int k = 0; k < 3; k++) {
            CHECK_EQ_INT(proto_decoder_feed(&d, hdr + k, 1, &used, &fr), 0);
            CHECK_EQ_INT(used, 1);
        }
        used = 777;
        CHECK_EQ_INT(proto_decoder_feed(&d, hdr + 3, 1, &used, &fr), -EMSGSIZE);
        CHECK_EQ_INT(used, 777); /* untouched on failure */
        CHECK(d.buf == NULL && d.cap == 0); /* rejected before allocating */
        CHECK_EQ_INT(d.announced, lens[i]);
        /* sticky: more input gets the same error, and so does the end of the stream */
        uint8_t more[16] = {0};
        CHECK_EQ_INT(proto_decoder_feed(&d, more, sizeof more, &used, &fr), -EMSGSIZE);
        CHECK_EQ_INT(proto_decoder_finish(&d), -EMSGSIZE);
        CHECK(d.buf == NULL);
        proto_decoder_free(&d);
    }

    /* a valid frame first, then an oversize one in the same chunk */
    uint8_t buf[4 + 2 + 4];
    put_le32(buf, 2);
    buf[4] = 0x08; /* request_id = 5 */
    buf[5] = 0x05;
    put_le32(buf + 6, 1u << 24);
    proto_decoder d;
    proto_decoder_init(&d, 0);
    size_t used = 0;
    proto_frame fr;
    CHECK_EQ_INT(proto_decoder_feed(&d, buf, sizeof buf, &used, &fr), 1);
    CHECK_EQ_INT(used, 6);
    CHECK_EQ_INT(fr.len, 2);
    Llamad__V1__ClientMessage *m = NULL;
    CHECK_EQ_INT(proto_client_unpack(fr.data, fr.len, &m), 0);
    CHECK_EQ_INT(m->request_id, 5);
    proto_client_free(m);
    CHECK_EQ_INT(proto_decoder_feed(&d, buf + 6, 4, &used, &fr), -EMSGSIZE);
    CHECK_EQ_INT(d.announced, 1u << 24);
    proto_decoder_free(&d);
}

static void test_max_configurable(void)
{
    uint8_t buf[4 + 64];
    memset(buf, 0, sizeof buf);
    /* payload: request_id varint fields repeated (valid protobuf: last one wins) */
    for (size_t i = 4; i + 1 < sizeof buf; i += 2) {
        buf[i] = 0x08;
        buf[i + 1] = (uint8_t)(i & 0x7f);
    }
    for (uint32_t max = 1; max <= 64; max *= 2) {
        proto_decoder d;
        proto_decoder_init(&d, max);
        CHECK_EQ_INT(d.max_frame, max);
        size_t used;
        proto_frame fr;
        put_le32(buf, max); /* exactly the maximum: accepted */
        CHECK_EQ_INT(proto_decoder_feed(&d, buf, 4 + max, &used, &fr), 1);
        CHECK_EQ_INT(fr.len, max);
        put_le32(buf, max + 1); /* one more: rejected */
        CHECK_EQ_INT(proto_decoder_feed(&d, buf, 4 + max + 1, &used, &fr), -EMSGSIZE);
        CHECK_EQ_INT(d.announced, max + 1);
        proto_decoder_free(&d);
    }
    /* 0 means the default: exactly 1 MiB passes, in pieces */
    uint8_t *big = calloc(1, 4 + PROTO_DEFAULT_MAX_FRAME);
    CHECK(big);
    put_le32(big, PROTO_DEFAULT_MAX_FRAME);
    proto_decoder d;
    proto_decoder_init(&d, 0);
    size_t used;
    proto_frame fr;
    CHECK_EQ_INT(proto_decoder_feed(&d, big, 1000, &used, &fr), 0);
    CHECK_EQ_INT(proto_decoder_pending(&d), 1000);
    CHECK_EQ_INT(proto_decoder_feed(&d, big + 1000, 4 + PROTO_DEFAULT_MAX_FRAME - 1000, &used,
                                   &fr), 1);
    CHECK_EQ_INT(fr.len, PROTO_DEFAULT_MAX_FRAME);
    /* the large buffer is let go once the next feed starts a new frame */
    uint8_t zero[4] = {0};
    CHECK_EQ_INT(proto_decoder_feed(&d, zero, 4, &used, &fr), 1);
    CHECK_EQ_INT(fr.len, 0);
    CHECK(d.buf == NULL);
    proto_decoder_free(&d);
    free(big);
}

static void test_truncated(void)
{
    stream s = small_stream();
    /* every proper prefix that does not end on a frame boundary leaves the stream truncated */
    for (size_t k = 0; k <= s.len; k++) {
        bool boundary = (k == 0);
        for (int i = 0; i < s.n; i++)
            if (k == s.off[i] + s.plen[i])
                boundary = true;
        proto_decoder d;
        proto_decoder_init(&d, 0);
        (void)feed_all(&d, &s, s.bytes, k, 0);
        CHECK_EQ_INT(proto_decoder_finish(&d), boundary ? 0 : -EPIPE);
        if (!boundary)
            CHECK(proto_decoder_pending(&d) > 0);
        proto_decoder_free(&d);
    }
    free(s.bytes);

    /* header only, and a header + part of the payload */
    uint8_t buf[4 + 10] = {0};
    put_le32(buf, 10);
    proto_decoder d;
    proto_decoder_init(&d, 0);
    size_t used;
    proto_frame fr;
    CHECK_EQ_INT(proto_decoder_feed(&d, buf, 2, &used, &fr), 0);
    CHECK_EQ_INT(proto_decoder_finish(&d), -EPIPE);
    CHECK_EQ_INT(proto_decoder_pending(&d), 2);
    CHECK_EQ_INT(proto_decoder_feed(&d, buf + 2, 2 + 9, &used, &fr), 0);
    CHECK_EQ_INT(proto_decoder_pending(&d), 13);
    CHECK_EQ_INT(proto_decoder_finish(&d), -EPIPE);
    CHECK_EQ_INT(proto_decoder_feed(&d, buf + 13, 1, &used, &fr), 1);
    CHECK_EQ_INT(proto_decoder_finish(&d), 0);
    proto_decoder_free(&d);

    /* an empty stream is fine */
    proto_decoder_init(&d, 0);
    CHECK_EQ_INT(proto_decoder_finish(&d), 0);
    CHECK_EQ_INT(proto_decoder_feed(&d, NULL, 0, &used, &fr), 0);
    CHECK_EQ_INT(used, 0);
    proto_decoder_free(&d);
}

static void test_garbage(void)
{
    static const struct {
        const char *what;
        uint8_t bytes[8];
        size_t len;
    } bad[] = {
        {"tag 0", {0x00}, 1},
        {"truncated varint", {0x08, 0x80}, 2},
        {"length past the end", {0x5a, 0x10, 'a', 'b'}, 4},
        {"wire type 7", {0x0f, 0x01}, 2},
        {"end group without start", {0x0c}, 1},
        {"unterminated long varint", {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 8},
        {"all ones", {0xff, 0xff, 0xff}, 3},
        {"sub-message with a bad inner length", {0x5a, 0x02, 0x12, 0x05}, 4},
        {"field number 0 as a padded varint", {0x08, 0x01, 0x80, 0x00, 0x00}, 5},
        {"field number 0 inside a sub-message", {0x5a, 0x03, 0x80, 0x00, 0x01}, 5},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        /* through the decoder first: framing is fine, the payload is not */
        uint8_t frame[4 + 8];
        put_le32(frame, (uint32_t)bad[i].len);
        memcpy(frame + 4, bad[i].bytes, bad[i].len);
        proto_decoder d;
        proto_decoder_init(&d, 0);
        size_t used;
        proto_frame fr;
        CHECK_EQ_INT(proto_decoder_feed(&d, frame, 4 + bad[i].len, &used, &fr), 1);
        Llamad__V1__ClientMessage *sentinel = (Llamad__V1__ClientMessage *)&d;
        Llamad__V1__ClientMessage *c = sentinel;
        int r = proto_client_unpack(fr.data, fr.len, &c);
        CHECK_MSG(r == -EBADMSG, "%s: client unpack returned %d", bad[i].what, r);
        CHECK(c == sentinel); /* untouched */
        Llamad__V1__ServerMessage *s = NULL;
        r = proto_server_unpack(fr.data, fr.len, &s);
        CHECK_MSG(r == -EBADMSG, "%s: server unpack returned %d", bad[i].what, r);
        CHECK(s == NULL);
        /* the decoder itself goes on: a bad payload does not break the framing */
        uint8_t next[4 + 2] = {2, 0, 0, 0, 0x08, 0x2a};
        CHECK_EQ_INT(proto_decoder_feed(&d, next, sizeof next, &used, &fr), 1);
        CHECK_EQ_INT(proto_client_unpack(fr.data, fr.len, &c), 0);
        CHECK_EQ_INT(c->request_id, 42);
        proto_client_free(c);
        proto_decoder_free(&d);
    }
}

static void test_bad_arguments(void)
{
    proto_decoder d;
    proto_decoder_init(&d, 0);
    size_t used;
    proto_frame fr;
    uint8_t b = 0;
    CHECK_EQ_INT(proto_decoder_feed(NULL, &b, 1, &used, &fr), -EINVAL);
    CHECK_EQ_INT(proto_decoder_feed(&d, NULL, 1, &used, &fr), -EINVAL);
    CHECK_EQ_INT(proto_decoder_feed(&d, &b, 1, NULL, &fr), -EINVAL);
    CHECK_EQ_INT(proto_decoder_feed(&d, &b, 1, &used, NULL), -EINVAL);
    CHECK_EQ_INT(proto_decoder_finish(NULL), -EINVAL);
    CHECK_EQ_INT(proto_decoder_pending(NULL), 0);
    proto_decoder_free(NULL);
    /* the decoder is unharmed by the bad calls */
    CHECK_EQ_INT(proto_decoder_finish(&d), 0);
    proto_decoder_free(&d);
}

int main(void)
{
    test_split_everywhere();
    test_one_byte_at_a_time();
    test_large_frames_chunked();
    test_zero_copy();
    test_oversize();
    test_max_configurable();
    test_truncated();
    test_garbage();
    test_bad_arguments();
    puts("proto frame decoder: all checks passed");
    return 0;
}
