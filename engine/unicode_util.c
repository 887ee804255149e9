/* Lookups over the generated Unicode tables (unicode_data.c). */
#include "unicode_data.h"

#include <pthread.h>

static uint8_t bmp_flags[0x10000];
static pthread_once_t bmp_once = PTHREAD_ONCE_INIT;

static uint8_t flags_search(uint32_t cp)
{
    if (cp > 0x10FFFF)
        return UNICODE_CAT_UNDEF;
    size_t lo = 0, hi = unicode_n_ranges; /* find the last range starting <= cp */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if ((unicode_ranges[mid] >> 8) <= cp)
            lo = mid;
        else
            hi = mid;
    }
    return (uint8_t)(unicode_ranges[lo] & 0xFF);
}

static void bmp_init(void)
{
    for (size_t r = 0; r < unicode_n_ranges; r++) {
        uint32_t first = unicode_ranges[r] >> 8;
        uint32_t end = r + 1 < unicode_n_ranges ? unicode_ranges[r + 1] >> 8 : 0x110000;
        if (first >= 0x10000)
            break;
        if (end > 0x10000)
            end = 0x10000;
        for (uint32_t cp = first; cp < end; cp++)
            bmp_flags[cp] = (uint8_t)(unicode_ranges[r] & 0xFF);
    }
}

uint8_t unicode_flags(uint32_t cp)
{
    if (cp < 0x10000) {
        pthread_once(&bmp_once, bmp_init);
        return bmp_flags[cp];
    }
    return flags_search(cp);
}

size_t unicode_cpt_to_utf8(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | ((cp >> 18) & 0x07));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static int is_cont(const char *s, size_t n, size_t i)
{
    return i < n && ((unsigned char)s[i] & 0xC0) == 0x80;
}

uint32_t unicode_cpt_from_utf8_lenient(const char *s, size_t n, size_t *pos)
{
    size_t i = *pos;
    unsigned char c = (unsigned char)s[i];
    if (!(c & 0x80)) {
        *pos = i + 1;
        return c;
    }
    if ((c & 0xE0) == 0xC0 && is_cont(s, n, i + 1)) {
        *pos = i + 2;
        return ((uint32_t)(c & 0x1F) << 6) | ((unsigned char)s[i + 1] & 0x3F);
    }
    if ((c & 0xF0) == 0xE0 && is_cont(s, n, i + 1) && is_cont(s, n, i + 2)) {
        *pos = i + 3;
        return ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)((unsigned char)s[i + 1] & 0x3F) << 6) |
               ((unsigned char)s[i + 2] & 0x3F);
    }
    if ((c & 0xF8) == 0xF0 && is_cont(s, n, i + 1) && is_cont(s, n, i + 2) &&
        is_cont(s, n, i + 3)) {
        *pos = i + 4;
        return ((uint32_t)(c & 0x07) << 18) | ((uint32_t)((unsigned char)s[i + 1] & 0x3F) << 12) |
               ((uint32_t)((unsigned char)s[i + 2] & 0x3F) << 6) | ((unsigned char)s[i + 3] & 0x3F);
    }
    *pos = i + 1;
    return 0xFFFD;
}
