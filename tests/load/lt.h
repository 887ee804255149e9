/* Load-test helpers: many non-blocking connections to the real llamad driven from one thread
 * with poll(), the daemon's memory (VmRSS) and its Status. */
#ifndef LLAMAD_TEST_LT_H
#define LLAMAD_TEST_LT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "dh.h"

/* One generation stream on its own connection. */
typedef struct lt_stream {
    int fd;               /* -1 once closed */
    proto_decoder dec;
    bool dec_init;
    uint64_t rid;
    int ref;              /* index of the reference (prompt/seed) it must reproduce */
    uint32_t ids[512];
    int n_ids;
    int n_chunks;
    int done;             /* 1: GenerateDone seen */
    int finish;
    int error;            /* error code, 0 if none */
    bool eof;             /* the server closed the connection */
    /* what the test does to it */
    int cancel_after;     /* send Cancel after this many chunks (-1: never) */
    int drop_after;       /* close the socket after this many chunks (-1: never) */
    bool cancel_sent, dropped;
} lt_stream;

/* Raises RLIMIT_NOFILE's soft limit to at least want (up to the hard limit); returns the new
 * soft limit. */
long lt_raise_nofile(long want);

/* The daemon's VmRSS in KiB. */
long lt_rss_kib(pid_t pid);

/* Connects without blocking (the connect itself is immediate on a Unix socket). */
void lt_open(lt_stream *s, const char *sock);
void lt_close(lt_stream *s);
/* Sends one ClientMessage in full (blocking send; requests are small). */
void lt_send(lt_stream *s, const Llamad__V1__ClientMessage *m);
void lt_send_generate(lt_stream *s, const dh_gen *g);
void lt_send_cancel(lt_stream *s);

/* Reads what is there on s and processes every complete frame. Returns false when the stream
 * needs no more polling (done, error, closed). */
bool lt_pump(lt_stream *s);

/* Drives all streams with poll() until none is open; applies cancel_after / drop_after. */
void lt_run(lt_stream *ss, int n);

/* Status through a fresh connection. */
typedef struct lt_status {
    uint64_t kv_used, kv_total, kv_cached;
    uint32_t running, queue, connections;
} lt_status;
void lt_get_status(const char *sock, lt_status *ret);
/* Polls Status until nothing is running or queued and the only connection is the asking one
 * (the daemon finishes closing connections asynchronously); fails after 60 s. */
void lt_wait_idle(const char *sock, lt_status *ret);

#endif
