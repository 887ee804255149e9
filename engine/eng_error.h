/* Error reporting for the engine: a negative errno-style code plus a message that names
 * the problem ("tensor blk.3.attn_q.weight extends past end of file"). The engine never
 * logs and never exits; callers decide what to do with the message. */
#ifndef LLAMAD_ENG_ERROR_H
#define LLAMAD_ENG_ERROR_H

#include <stddef.h>

typedef struct eng_error {
    int code;        /* 0 or a negative errno value */
    char msg[256];   /* NUL-terminated, empty when code == 0 */
} eng_error;

/* Records code and a formatted message in err (which may be NULL) and returns code,
 * so that callers can write: return eng_error_set(err, -EINVAL, "bad %s", what); */
int eng_error_set(eng_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

void eng_error_clear(eng_error *err);

#endif
