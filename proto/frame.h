/* llamad frame codec: the framing of llamad.proto messages on a byte stream.
 *
 * A frame is a 4-byte little-endian unsigned length N followed by N bytes: one serialized
 * protobuf message (ClientMessage from client to server, ServerMessage the other way).
 * N = 0 is a legal frame (an empty message: no body set).
 *
 * Decoding: a proto_decoder takes the stream in chunks of any size (one byte at a time works)
 * and hands out complete frame payloads; then proto_client_unpack / proto_server_unpack turn a
 * payload into a message. Encoding: proto_client_encode / proto_server_encode write a whole
 * frame into the caller's buffer; proto_*_frame_size tells the size needed.
 *
 * The codec never logs, never exits, and does no I/O. Errors are negative errno codes:
 *   -EMSGSIZE  a frame announced a payload longer than the decoder's maximum (detected from
 *              the 4 length bytes, before anything is allocated); or a message too large to
 *              frame at all (encoder)
 *   -EBADMSG   the payload is not a valid protobuf message of the expected type
 *   -EPIPE     the stream ended inside a frame (proto_decoder_finish)
 *   -ENOBUFS   the caller's buffer is too small (encoder)
 *   -ENOMEM    out of memory
 *   -EINVAL    a bad argument (NULL where a pointer is needed)
 * Output parameters are named ret_* and are left untouched on failure.
 *
 * Memory: the decoder holds at most one frame's payload (<= its maximum); it keeps a small
 * buffer between frames and frees larger ones once they have been handed out. Unpacking a
 * payload allocates the message with protobuf-c (a small constant factor of the payload).
 *
 * Generated types (llamad.pb-c.h): Llamad__V1__ClientMessage, Llamad__V1__ServerMessage, ...
 * Note for C users: proto3 `optional` fields of llamad.proto appear in C as one-field oneofs,
 * so presence is `msg->has_<field>_case != 0` (see proto/meson.build).
 */
#ifndef LLAMAD_PROTO_FRAME_H
#define LLAMAD_PROTO_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llamad.pb-c.h"

/* The protocol version this code speaks (Hello.protocol_version). */
#define PROTO_VERSION 1u
/* Bytes of the length prefix. */
#define PROTO_FRAME_HEADER 4u
/* Default maximum payload length a decoder accepts: 1 MiB. */
#define PROTO_DEFAULT_MAX_FRAME (1u << 20)

/* A complete frame payload handed out by proto_decoder_feed. */
typedef struct proto_frame {
    const uint8_t *data; /* never NULL, even when len == 0 */
    size_t len;
} proto_frame;

/* Incremental frame decoder. Embed it anywhere (e.g. in a connection); the fields are
 * private except where noted. */
typedef struct proto_decoder {
    uint32_t max_frame;  /* maximum payload length accepted (readable) */
    uint32_t announced;  /* length announced by the current/last frame header (readable;
                            after -EMSGSIZE it is the rejected length) */
    int error;           /* sticky error, 0 if none (readable) */
    uint8_t hdr[PROTO_FRAME_HEADER];
    uint8_t hdr_have;    /* header bytes received of the current frame */
    bool in_payload;     /* the header is complete; collecting the payload */
    bool delivered;      /* a frame was handed out; reset on the next feed */
    uint32_t have;       /* payload bytes received of the current frame */
    uint8_t *buf;        /* payload buffer (owned) */
    size_t cap;
} proto_decoder;

/* Sets up a decoder. max_frame is the largest payload accepted, in bytes; 0 means
 * PROTO_DEFAULT_MAX_FRAME. Allocates nothing. */
void proto_decoder_init(proto_decoder *d, uint32_t max_frame);

/* Releases the decoder's buffer. The decoder may be initialised again afterwards. */
void proto_decoder_free(proto_decoder *d);

/* Feeds bytes from the stream. Consumes input up to the end of the first frame that becomes
 * complete, and no further. Returns
 *    1  a frame is complete: *ret_frame is its payload, *ret_used the bytes consumed (the
 *       rest of `data` belongs to the following frames: feed it again);
 *    0  all `len` bytes were consumed (*ret_used = len) and no frame is complete yet;
 *   <0  an error: -EMSGSIZE (announced length > max_frame; checked before allocating),
 *       -ENOMEM, -EINVAL. Errors are sticky: every later call returns the same error, as the
 *       stream cannot be resynchronised. d->announced tells the length after -EMSGSIZE.
 * ret_frame->data points into `data` or into the decoder's buffer; it stays valid until the
 * next call on this decoder (and, if it points into `data`, as long as `data` does).
 * Typical use:
 *     while (len > 0) {
 *         int r = proto_decoder_feed(&d, data, len, &used, &frame);
 *         if (r < 0) { ...close the connection...; break; }
 *         data += used; len -= used;
 *         if (r == 1) handle(frame.data, frame.len);
 *     }
 */
int proto_decoder_feed(proto_decoder *d, const void *data, size_t len, size_t *ret_used,
                       proto_frame *ret_frame);

/* At the end of the stream: 0 if it ended between frames, -EPIPE if a frame was left
 * truncated (header or payload incomplete), or the decoder's sticky error. */
int proto_decoder_finish(const proto_decoder *d);

/* Bytes of a frame started but not complete (header + payload received so far); 0 at a frame
 * boundary. */
size_t proto_decoder_pending(const proto_decoder *d);

/* Unpacks a frame payload into a newly allocated message. Returns 0, -EBADMSG (not a valid
 * message of that type), or -EINVAL. A zero-length payload gives a message with no body set.
 * Release the message with proto_client_free / proto_server_free. Field values are not
 * validated beyond the protobuf encoding (strings are not checked to be UTF-8). */
int proto_client_unpack(const void *data, size_t len, Llamad__V1__ClientMessage **ret_msg);
int proto_server_unpack(const void *data, size_t len, Llamad__V1__ServerMessage **ret_msg);

/* Frees a message from proto_*_unpack. NULL is allowed. */
void proto_client_free(Llamad__V1__ClientMessage *msg);
void proto_server_free(Llamad__V1__ServerMessage *msg);

/* Exact size in bytes of the whole frame (header + payload) encoding msg; 0 if the message is
 * too large to frame (payload > UINT32_MAX). */
size_t proto_client_frame_size(const Llamad__V1__ClientMessage *msg);
size_t proto_server_frame_size(const Llamad__V1__ServerMessage *msg);

/* Writes the frame of msg (header + payload) to buf. Returns 0 and the frame's length in
 * *ret_len, -ENOBUFS if cap is smaller than proto_*_frame_size(msg) (nothing is
 * written), -EMSGSIZE if the message is too large to frame, or -EINVAL. */
int proto_client_encode(const Llamad__V1__ClientMessage *msg, void *buf, size_t cap,
                        size_t *ret_len);
int proto_server_encode(const Llamad__V1__ServerMessage *msg, void *buf, size_t cap,
                        size_t *ret_len);

#endif
