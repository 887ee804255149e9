#include "jsonw.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* need_comma[depth]: 0 = first element not yet written, 1 = write a comma before the next
 * element, 2 = a key was just written (its value takes no comma). */

void jw_init(jw *w, FILE *f)
{
    w->f = f;
    w->depth = 0;
    memset(w->need_comma, 0, sizeof w->need_comma);
}

static void before_value(jw *w)
{
    unsigned char *nc = &w->need_comma[w->depth];
    if (*nc == 1) fputc(',', w->f);
    *nc = 1;
}

static void push(jw *w, int c)
{
    before_value(w);
    fputc(c, w->f);
    if (w->depth + 1 < (int)sizeof w->need_comma) w->depth++;
    w->need_comma[w->depth] = 0;
}

static void pop(jw *w, int c)
{
    fputc(c, w->f);
    if (w->depth > 0) w->depth--;
}

void jw_obj_begin(jw *w)
{
    push(w, '{');
}
void jw_obj_end(jw *w)
{
    pop(w, '}');
}
void jw_arr_begin(jw *w)
{
    push(w, '[');
}
void jw_arr_end(jw *w)
{
    pop(w, ']');
}

void jw_key(jw *w, const char *key)
{
    before_value(w);
    jw_write_string(w->f, key, strlen(key));
    fputc(':', w->f);
    w->need_comma[w->depth] = 2;
}

/* A value right after a key takes no comma; elsewhere it follows the array rules. */
static void value(jw *w)
{
    if (w->need_comma[w->depth] == 2)
        w->need_comma[w->depth] = 1;
    else
        before_value(w);
}

void jw_str(jw *w, const char *s, size_t len)
{
    value(w);
    jw_write_string(w->f, s, len);
}

void jw_cstr(jw *w, const char *s)
{
    if (s == NULL) {
        jw_null(w);
        return;
    }
    jw_str(w, s, strlen(s));
}

void jw_int(jw *w, long long v)
{
    value(w);
    fprintf(w->f, "%lld", v);
}

void jw_uint(jw *w, unsigned long long v)
{
    value(w);
    fprintf(w->f, "%llu", v);
}

void jw_double(jw *w, double v)
{
    value(w);
    if (!isfinite(v)) {
        fputs("null", w->f);
        return;
    }
    /* the shortest of %.15g / %.17g that reads back as the same number */
    char buf[64];
    snprintf(buf, sizeof buf, "%.15g", v);
    if (strtod(buf, NULL) != v) snprintf(buf, sizeof buf, "%.17g", v);
    fputs(buf, w->f);
}

void jw_bool(jw *w, int v)
{
    value(w);
    fputs(v ? "true" : "false", w->f);
}

void jw_null(jw *w)
{
    value(w);
    fputs("null", w->f);
}

void jw_end_line(jw *w)
{
    fputc('\n', w->f);
    jw_init(w, w->f);
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if the bytes there are not one
 * (overlong forms, surrogates and values above U+10FFFF are invalid). */
static size_t utf8_valid_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07u;
    } else {
        return 0;
    }
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0u) != 0x80u) return 0;
        cp = (cp << 6) | (s[i] & 0x3Fu);
    }
    if (len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) return 0;
    if (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) return 0;
    return len;
}

void jw_write_string(FILE *f, const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    fputc('"', f);
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c == '"') {
            fputs("\\\"", f);
        } else if (c == '\\') {
            fputs("\\\\", f);
        } else if (c == '\n') {
            fputs("\\n", f);
        } else if (c == '\r') {
            fputs("\\r", f);
        } else if (c == '\t') {
            fputs("\\t", f);
        } else if (c == '\b') {
            fputs("\\b", f);
        } else if (c == '\f') {
            fputs("\\f", f);
        } else if (c < 0x20) {
            fprintf(f, "\\u%04x", c);
        } else if (c < 0x80) {
            fputc(c, f);
        } else {
            size_t n = utf8_valid_len(s + i, len - i);
            if (n == 0) {
                fputs("\\ufffd", f);
                i++;
                continue;
            }
            fwrite(s + i, 1, n, f);
            i += n;
            continue;
        }
        i++;
    }
    fputc('"', f);
}
