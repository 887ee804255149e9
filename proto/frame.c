/* llamad frame codec: u32 little-endian length + protobuf payload. See frame.h. */
#include "frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Buffers up to this size are kept between frames; larger ones are freed once handed out, so
 * an idle connection does not hold a large frame's memory. */
#define DECODER_KEEP_BYTES (64u * 1024u)

static const uint8_t empty_payload[1];

static uint32_t read_le32(const uint8_t p[4])
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void write_le32(uint8_t p[4], uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

void proto_decoder_init(proto_decoder *d, uint32_t max_frame)
{
    memset(d, 0, sizeof(*d));
    d->max_frame = max_frame ? max_frame : PROTO_DEFAULT_MAX_FRAME;
}

void proto_decoder_free(proto_decoder *d)
{
    if (!d)
        return;
    free(d->buf);
    d->buf = NULL;
    d->cap = 0;
}

/* Back to a frame boundary after a frame was handed out. */
static void decoder_next_frame(proto_decoder *d)
{
    d->delivered = false;
    d->in_payload = false;
    d->hdr_have = 0;
    d->have = 0;
    if (d->cap > DECODER_KEEP_BYTES) {
        free(d->buf);
        d->buf = NULL;
        d->cap = 0;
    }
}

int proto_decoder_feed(proto_decoder *d, const void *data, size_t len, size_t *ret_used,
                       proto_frame *ret_frame)
{
    if (!d || !ret_used || !ret_frame || (!data && len > 0))
        return -EINVAL;
    if (d->error)
        return d->error;
    if (d->delivered)
        decoder_next_frame(d);

    const uint8_t *in = data;
    size_t used = 0;

    if (!d->in_payload) {
        while (d->hdr_have < PROTO_FRAME_HEADER && used < len)
            d->hdr[d->hdr_have++] = in[used++];
        if (d->hdr_have < PROTO_FRAME_HEADER) {
            *ret_used = used;
            return 0;
        }
        uint32_t n = read_le32(d->hdr);
        d->announced = n;
        if (n > d->max_frame) {
            d->error = -EMSGSIZE;
            return d->error;
        }
        d->in_payload = true;
        d->have = 0;
    }

    uint32_t need = d->announced;
    size_t avail = len - used;

    if (need == 0) {
        d->delivered = true;
        ret_frame->data = empty_payload;
        ret_frame->len = 0;
        *ret_used = used;
        return 1;
    }

    /* The whole payload is in the caller's chunk: hand it out without copying. */
    if (d->have == 0 && avail >= need) {
        d->delivered = true;
        ret_frame->data = in + used;
        ret_frame->len = need;
        *ret_used = used + need;
        return 1;
    }

    if (d->cap < need) {
        /* need <= max_frame was checked above; nothing buffered yet when have == 0, and
         * have > 0 implies the buffer was sized for this frame already. */
        uint8_t *nb = malloc(need);
        if (!nb) {
            d->error = -ENOMEM;
            return d->error;
        }
        free(d->buf);
        d->buf = nb;
        d->cap = need;
    }

    size_t take = need - d->have;
    if (take > avail)
        take = avail;
    memcpy(d->buf + d->have, in + used, take);
    d->have += (uint32_t)take;
    used += take;

    if (d->have < need) {
        *ret_used = used;
        return 0;
    }
    d->delivered = true;
    ret_frame->data = d->buf;
    ret_frame->len = need;
    *ret_used = used;
    return 1;
}

int proto_decoder_finish(const proto_decoder *d)
{
    if (!d)
        return -EINVAL;
    if (d->error)
        return d->error;
    return proto_decoder_pending(d) ? -EPIPE : 0;
}

size_t proto_decoder_pending(const proto_decoder *d)
{
    if (!d || d->delivered)
        return 0;
    if (d->in_payload)
        return PROTO_FRAME_HEADER + (size_t)d->have;
    return d->hdr_have;
}

/* ---- messages -------------------------------------------------------------------------- */

/* protobuf-c 1.4 accepts a field number 0 written as a padded varint (e.g. 80 00) and keeps it
 * as an unknown field; that is not valid protobuf (and would not survive re-encoding), so such
 * messages are rejected here. Walks every sub-message. */
static bool has_invalid_unknown(const ProtobufCMessage *m)
{
    for (unsigned i = 0; i < m->n_unknown_fields; i++)
        if (m->unknown_fields[i].tag == 0)
            return true;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        const char *base = (const char *)m;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n;
            ProtobufCMessage *const *sub;
            memcpy(&n, base + f->quantifier_offset, sizeof n);
            memcpy(&sub, base + f->offset, sizeof sub);
            for (size_t k = 0; k < n; k++)
                if (sub[k] && has_invalid_unknown(sub[k]))
                    return true;
            continue;
        }
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t c;
            memcpy(&c, base + f->quantifier_offset, sizeof c);
            if (c != f->id)
                continue;
        }
        const ProtobufCMessage *sub;
        memcpy(&sub, base + f->offset, sizeof sub);
        if (sub && has_invalid_unknown(sub))
            return true;
    }
    return false;
}

static int unpack(const ProtobufCMessageDescriptor *desc, const void *data, size_t len,
                  ProtobufCMessage **ret_msg)
{
    if (!data && len > 0)
        return -EINVAL;
    if (!data)
        data = empty_payload;
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, len, data);
    if (!m)
        return -EBADMSG;
    if (has_invalid_unknown(m)) {
        protobuf_c_message_free_unpacked(m, NULL);
        return -EBADMSG;
    }
    *ret_msg = m;
    return 0;
}

int proto_client_unpack(const void *data, size_t len, Llamad__V1__ClientMessage **ret_msg)
{
    if (!ret_msg)
        return -EINVAL;
    ProtobufCMessage *m;
    int r = unpack(&llamad__v1__client_message__descriptor, data, len, &m);
    if (r == 0)
        *ret_msg = (Llamad__V1__ClientMessage *)m;
    return r;
}

int proto_server_unpack(const void *data, size_t len, Llamad__V1__ServerMessage **ret_msg)
{
    if (!ret_msg)
        return -EINVAL;
    ProtobufCMessage *m;
    int r = unpack(&llamad__v1__server_message__descriptor, data, len, &m);
    if (r == 0)
        *ret_msg = (Llamad__V1__ServerMessage *)m;
    return r;
}

void proto_client_free(Llamad__V1__ClientMessage *msg)
{
    if (msg)
        protobuf_c_message_free_unpacked(&msg->base, NULL);
}

void proto_server_free(Llamad__V1__ServerMessage *msg)
{
    if (msg)
        protobuf_c_message_free_unpacked(&msg->base, NULL);
}

/* Whole frame size for a payload of n bytes, 0 if it cannot be framed. */
static size_t frame_size_for(size_t n)
{
    if (n > UINT32_MAX || n > SIZE_MAX - PROTO_FRAME_HEADER)
        return 0;
    return PROTO_FRAME_HEADER + n;
}

static size_t frame_size(const ProtobufCMessage *m)
{
    return frame_size_for(protobuf_c_message_get_packed_size(m));
}

static int encode(const ProtobufCMessage *m, void *buf, size_t cap, size_t *ret_len)
{
    if (!ret_len || (!buf && cap > 0))
        return -EINVAL;
    size_t n = protobuf_c_message_get_packed_size(m);
    size_t total = frame_size_for(n);
    if (total == 0)
        return -EMSGSIZE;
    if (cap < total)
        return -ENOBUFS;
    uint8_t *out = buf;
    size_t packed = protobuf_c_message_pack(m, out + PROTO_FRAME_HEADER);
    if (packed != n) /* cannot happen with a well-formed message */
        return -EINVAL;
    write_le32(out, (uint32_t)n);
    *ret_len = total;
    return 0;
}

size_t proto_client_frame_size(const Llamad__V1__ClientMessage *msg)
{
    return msg ? frame_size(&msg->base) : 0;
}

size_t proto_server_frame_size(const Llamad__V1__ServerMessage *msg)
{
    return msg ? frame_size(&msg->base) : 0;
}

int proto_client_encode(const Llamad__V1__ClientMessage *msg, void *buf, size_t cap,
                        size_t *ret_len)
{
    if (!msg)
        return -EINVAL;
    return encode(&msg->base, buf, cap, ret_len);
}

int proto_server_encode(const Llamad__V1__ServerMessage *msg, void *buf, size_t cap,
                        size_t *ret_len)
{
    if (!msg)
        return -EINVAL;
    return encode(&msg->base, buf, cap, ret_len);
}
