/* Unicode tables used by the pre-tokenizers: categories, White_Space, lenient UTF-8 reading. */
#include <string.h>

#include "testutil.h"
#include "unicode_data.h"

static unsigned cat(uint32_t cp) { return unicode_flags(cp) & UNICODE_CAT_MASK; }
static int ws(uint32_t cp) { return (unicode_flags(cp) & UNICODE_WS) != 0; }

int main(void)
{
    CHECK_EQ_INT(cat('A'), UNICODE_CAT_L);
    CHECK_EQ_INT(cat('z'), UNICODE_CAT_L);
    CHECK_EQ_INT(cat(0x00E9), UNICODE_CAT_L);   /* é */
    CHECK_EQ_INT(cat(0x4E00), UNICODE_CAT_L);   /* 一 (Lo) */
    CHECK_EQ_INT(cat(0x1F9D9), UNICODE_CAT_S);  /* astral: binary search path */
    CHECK_EQ_INT(cat('7'), UNICODE_CAT_N);
    CHECK_EQ_INT(cat(0x0663), UNICODE_CAT_N);   /* Arabic-Indic three */
    CHECK_EQ_INT(cat(0x2167), UNICODE_CAT_N);   /* Roman numeral eight (Nl) */
    CHECK_EQ_INT(cat('!'), UNICODE_CAT_P);
    CHECK_EQ_INT(cat('_'), UNICODE_CAT_P);
    CHECK_EQ_INT(cat('$'), UNICODE_CAT_S);
    CHECK_EQ_INT(cat('+'), UNICODE_CAT_S);
    CHECK_EQ_INT(cat(0x0301), UNICODE_CAT_M);   /* combining acute */
    CHECK_EQ_INT(cat(0x200B), UNICODE_CAT_C);   /* zero width space: Cf, not White_Space */
    CHECK_EQ_INT(cat(0x0378), UNICODE_CAT_UNDEF);
    CHECK_EQ_INT(cat(0x110000), UNICODE_CAT_UNDEF);
    CHECK(ws(' ') && ws('\t') && ws('\n') && ws('\v') && ws('\f') && ws('\r'));
    CHECK(ws(0x85) && ws(0xA0) && ws(0x1680) && ws(0x2000) && ws(0x200A) && ws(0x2028) &&
          ws(0x202F) && ws(0x205F) && ws(0x3000));
    CHECK(!ws(0x1C) && !ws(0x200B) && !ws('a') && !ws(0x180E));
    CHECK(strlen(unicode_data_version) > 0);

    /* lenient reading: overlong and surrogates accepted, bad bytes -> U+FFFD one at a time */
    const char *s = "\xc0\x80" "\xed\xa0\x80" "\xff" "\xe2\x82";
    size_t pos = 0, n = 8;
    CHECK_EQ_INT(unicode_cpt_from_utf8_lenient(s, n, &pos), 0);
    CHECK_EQ_INT(pos, 2);
    CHECK_EQ_INT(unicode_cpt_from_utf8_lenient(s, n, &pos), 0xD800);
    CHECK_EQ_INT(pos, 5);
    CHECK_EQ_INT(unicode_cpt_from_utf8_lenient(s, n, &pos), 0xFFFD);
    CHECK_EQ_INT(pos, 6);
    CHECK_EQ_INT(unicode_cpt_from_utf8_lenient(s, n, &pos), 0xFFFD); /* truncated E2 82 */
    CHECK_EQ_INT(pos, 7);
    CHECK_EQ_INT(unicode_cpt_from_utf8_lenient(s, n, &pos), 0xFFFD);
    CHECK_EQ_INT(pos, 8);
    char buf[4];
    CHECK_EQ_INT(unicode_cpt_to_utf8(0x1F999, buf), 4);
    CHECK(memcmp(buf, "\xf0\x9f\xa6\x99", 4) == 0);
    CHECK_EQ_INT(unicode_cpt_to_utf8(0xE9, buf), 2);
    printf("ok\n");
    return 0;
}
