/* Unicode character data for the tokenizers: the general category group of each codepoint
 * (\p{L}, \p{N}, \p{P}, ...) and the White_Space property (\s), generated from Python's
 * unicodedata by unicode_gen.py into unicode_data.c. Lookups are O(1) for the BMP (a table
 * built once, thread-safe) and a binary search above it. */
#ifndef LLAMAD_UNICODE_DATA_H
#define LLAMAD_UNICODE_DATA_H

#include <stddef.h>
#include <stdint.h>

enum unicode_cat {
    UNICODE_CAT_UNDEF = 0, /* Cn: unassigned (and anything above U+10FFFF) */
    UNICODE_CAT_N = 1,     /* numbers */
    UNICODE_CAT_L = 2,     /* letters */
    UNICODE_CAT_Z = 3,     /* separators */
    UNICODE_CAT_M = 4,     /* marks */
    UNICODE_CAT_P = 5,     /* punctuation */
    UNICODE_CAT_S = 6,     /* symbols */
    UNICODE_CAT_C = 7,     /* Cc, Cf, Cs, Co */
};
#define UNICODE_CAT_MASK 7u
#define UNICODE_WS 8u      /* White_Space property */

/* Generated tables (unicode_data.c): runs of equal flags, entry = first_cp << 8 | flags. */
extern const uint32_t unicode_ranges[];
extern const size_t unicode_n_ranges;
extern const char unicode_data_version[];

/* Flags (category | UNICODE_WS) of a codepoint. */
uint8_t unicode_flags(uint32_t cp);

/* Codepoint length of a UTF-8 sequence from its first byte, as a lenient decoder sees it:
 * 1 for ASCII and stray continuation bytes, 2/3/4 for lead bytes. */
static inline size_t unicode_len_utf8(unsigned char c)
{
    static const uint8_t lens[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lens[c >> 4];
}

/* Encodes cp (any value < 2^21) as UTF-8 into out (4 bytes); returns the length. */
size_t unicode_cpt_to_utf8(uint32_t cp, char *out);

/* Lenient decode of one codepoint at s[*pos] (n bytes total), the way llama.cpp's tokenizer
 * reads text: lead/continuation-byte structure is checked, overlong forms and surrogates are
 * accepted; an invalid byte gives U+FFFD and advances by one. */
uint32_t unicode_cpt_from_utf8_lenient(const char *s, size_t n, size_t *pos);

#endif
