/* A tiny JSON writer for llamactl's --json output (not part of libllamactl).
 * Strings are escaped per RFC 8259: quote, backslash and control characters are escaped,
 * valid UTF-8 passes through unchanged, and each byte of invalid UTF-8 becomes U+FFFD. */
#ifndef LLAMACTL_JSONW_H
#define LLAMACTL_JSONW_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct jw {
    FILE *f;
    int depth;
    unsigned char need_comma[32]; /* per nesting level */
} jw;

void jw_init(jw *w, FILE *f);
void jw_obj_begin(jw *w);
void jw_obj_end(jw *w);
void jw_arr_begin(jw *w);
void jw_arr_end(jw *w);
/* A key inside an object; the value follows with one of the value calls. */
void jw_key(jw *w, const char *key);
void jw_str(jw *w, const char *s, size_t len);
void jw_cstr(jw *w, const char *s); /* NULL writes null */
void jw_int(jw *w, long long v);
void jw_uint(jw *w, unsigned long long v);
void jw_double(jw *w, double v); /* non-finite writes null */
void jw_bool(jw *w, int v);
void jw_null(jw *w);
/* Ends a top-level value: writes '\n'. */
void jw_end_line(jw *w);

/* Writes the escaped form of s (with quotes) to f. */
void jw_write_string(FILE *f, const char *s, size_t len);

#endif
