#include "testutil.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void tu_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s:%d: FAIL: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    exit(1);
}

const char *tu_shared(const char *rel)
{
    static char pool[8][4096];
    static unsigned next;
    const char *root = getenv("LLAMAD_SHARED");
    if (root == NULL || root[0] == '\0')
        tu_fail(__FILE__, __LINE__, "LLAMAD_SHARED is not set (run the tests through meson test)");
    char *buf = pool[next++ % 8];
    int n = snprintf(buf, sizeof pool[0], "%s/%s", root, rel);
    if (n < 0 || (size_t)n >= sizeof pool[0])
        tu_fail(__FILE__, __LINE__, "shared path too long: %s/%s", root, rel);
    struct stat st;
    if (stat(buf, &st) != 0)
        tu_fail(__FILE__, __LINE__, "shared test file missing: %s (%s)", buf, strerror(errno));
    return buf;
}

json_t *tu_load_json(const char *rel)
{
    json_error_t err;
    const char *path = tu_shared(rel);
    json_t *j = json_load_file(path, 0, &err);
    if (j == NULL)
        tu_fail(__FILE__, __LINE__, "cannot parse %s:%d: %s", path, err.line, err.text);
    return j;
}

void *tu_read_file(const char *path, size_t *ret_len)
{
    /* Reads until EOF rather than trusting the file size: /proc files report size 0. */
    FILE *f = fopen(path, "rb");
    if (f == NULL) tu_fail(__FILE__, __LINE__, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (buf == NULL) tu_fail(__FILE__, __LINE__, "out of memory reading %s", path);
    for (;;) {
        if (cap - len < 2) {
            if (cap > ((size_t)1 << 40)) tu_fail(__FILE__, __LINE__, "%s is too large", path);
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (nb == NULL) tu_fail(__FILE__, __LINE__, "out of memory reading %s", path);
            buf = nb;
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0) {
            if (ferror(f)) tu_fail(__FILE__, __LINE__, "read error on %s", path);
            break;
        }
    }
    fclose(f);
    buf[len] = '\0';
    *ret_len = len;
    return buf;
}

const char *tu_tmpdir(void)
{
    static char dir[4096];
    if (dir[0] != '\0') return dir;
    const char *base = getenv("TMPDIR");
    if (base == NULL || base[0] == '\0') base = "/tmp";
    int n = snprintf(dir, sizeof dir, "%s/llamad-test-XXXXXX", base);
    if (n < 0 || (size_t)n >= sizeof dir) tu_fail(__FILE__, __LINE__, "TMPDIR too long");
    if (mkdtemp(dir) == NULL) tu_fail(__FILE__, __LINE__, "mkdtemp: %s", strerror(errno));
    return dir;
}
