/* IEEE half conversions: exhaustive over all 65536 halves, rounding of f32 -> f16 at
 * tricky values (ties, overflow, subnormals, NaN), the row versions and bf16. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "testutil.h"

static float from_bits(uint32_t b) { float f; memcpy(&f, &b, 4); return f; }
static uint32_t to_bits(float f) { uint32_t b; memcpy(&b, &f, 4); return b; }

/* Independent reference for half -> value: (-1)^s * 2^(e-15) * (1 + m/1024), etc. */
static double half_value(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

/* Independent reference for f32 -> f16: search the nearest half by value (finite). */
static uint16_t ref_to_half(float f)
{
    double v = fabs((double)f);
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    if (isnan(f)) return 0xFFFF; /* not used */
    if (v >= 65520.0) return sign | 0x7C00;
    /* binary search over the monotone positive halves 0..0x7BFF */
    uint16_t lo = 0, hi = 0x7BFF;
    while (lo < hi) { /* first half >= v */
        uint16_t mid = (uint16_t)((lo + hi) / 2);
        if (half_value(mid) < v) lo = (uint16_t)(mid + 1); else hi = mid;
    }
    uint16_t best = lo;
    if (lo > 0) {
        double up = half_value(lo) - v, dn = v - half_value((uint16_t)(lo - 1));
        if (dn < up || (dn == up && ((lo - 1) & 1) == 0)) best = (uint16_t)(lo - 1);
    }
    return sign | best;
}

int main(void)
{
    /* Every half: exact value, round trip, row conversion. */
    uint16_t *all = malloc(65536 * sizeof(uint16_t));
    float *rowf = malloc(65536 * sizeof(float));
    uint16_t *back = malloc(65536 * sizeof(uint16_t));
    CHECK(all && rowf && back);
    for (uint32_t i = 0; i < 65536; i++) all[i] = (uint16_t)i;
    eng_f16_to_f32_row(all, rowf, 65536);
    eng_f32_to_f16_row(rowf, back, 65536);
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = eng_f16_to_f32(h);
        int e = (h >> 10) & 31, m = h & 1023;
        if (e == 31 && m != 0) {
            CHECK_MSG(isnan(f) && isnan(rowf[i]), "half %04x not NaN", h);
            CHECK_EQ_INT(!!signbit(f), h >> 15);
            /* quiet, top payload kept */
            CHECK_EQ_INT(eng_f32_to_f16(f), h | 0x200);
            CHECK_EQ_INT(back[i], h | 0x200);
            CHECK_EQ_INT(to_bits(f), to_bits(rowf[i]));
            continue;
        }
        if (e == 31) {
            CHECK(isinf(f));
            CHECK_EQ_INT(!!signbit(f), h >> 15);
        } else {
            CHECK_MSG((double)f == half_value(h), "half %04x: %.9g vs %.9g", h, (double)f, half_value(h));
            CHECK_EQ_INT(!!signbit(f), h >> 15);
        }
        CHECK_MSG(to_bits(f) == to_bits(rowf[i]), "half %04x: row conversion differs", h);
        CHECK_MSG(eng_f32_to_f16(f) == h, "half %04x: round trip gave %04x", h, eng_f32_to_f16(f));
        CHECK_EQ_INT(back[i], h);
    }

    /* f32 -> f16 rounding: around every half boundary (midpoints and neighbours), for
     * each half value; compared with a search-based reference and the row version. */
    float *src = malloc(5 * 0x7C00 * 2 * sizeof(float));
    uint16_t *got = malloc(5 * 0x7C00 * 2 * sizeof(uint16_t));
    CHECK(src && got);
    size_t ns = 0;
    for (uint32_t h = 0; h < 0x7C00; h++) {
        double a = half_value((uint16_t)h), b = half_value((uint16_t)(h + 1)); /* 0x7C00 = inf */
        if (h == 0x7BFF) b = 65536.0; /* the rounding boundary above 65504 is 65520 */
        float mid = (float)((a + b) / 2); /* exact in f32 */
        CHECK((double)mid == (a + b) / 2);
        float c[5] = {mid, nextafterf(mid, 0.0f), nextafterf(mid, INFINITY), (float)a,
                      nextafterf((float)a, INFINITY)};
        for (int k = 0; k < 5; k++) {
            src[ns++] = c[k];
            src[ns++] = -c[k];
        }
    }
    eng_f32_to_f16_row(src, got, ns);
    for (size_t i = 0; i < ns; i++) {
        uint16_t want = ref_to_half(src[i]);
        CHECK_MSG(eng_f32_to_f16(src[i]) == want, "f32 %a (%08x): got %04x want %04x",
                  (double)src[i], to_bits(src[i]), eng_f32_to_f16(src[i]), want);
        CHECK_MSG(got[i] == want, "row f32 %a: got %04x want %04x", (double)src[i], got[i], want);
    }

    /* Named cases. */
    CHECK_EQ_INT(eng_f32_to_f16(0.0f), 0x0000);
    CHECK_EQ_INT(eng_f32_to_f16(-0.0f), 0x8000);
    CHECK_EQ_INT(eng_f32_to_f16(1.0f), 0x3C00);
    CHECK_EQ_INT(eng_f32_to_f16(65504.0f), 0x7BFF);
    CHECK_EQ_INT(eng_f32_to_f16(65519.99f), 0x7BFF);
    CHECK_EQ_INT(eng_f32_to_f16(65520.0f), 0x7C00);  /* tie rounds to even: infinity */
    CHECK_EQ_INT(eng_f32_to_f16(1e10f), 0x7C00);
    CHECK_EQ_INT(eng_f32_to_f16(-1e10f), 0xFC00);
    CHECK_EQ_INT(eng_f32_to_f16(INFINITY), 0x7C00);
    CHECK_EQ_INT(eng_f32_to_f16(-INFINITY), 0xFC00);
    CHECK_EQ_INT(eng_f32_to_f16(FLT_MAX), 0x7C00);
    CHECK_EQ_INT(eng_f32_to_f16(0x1p-24f), 0x0001);  /* smallest subnormal */
    CHECK_EQ_INT(eng_f32_to_f16(0x1p-25f), 0x0000);  /* tie to even: zero */
    CHECK_EQ_INT(eng_f32_to_f16(0x1.000002p-25f), 0x0001);
    CHECK_EQ_INT(eng_f32_to_f16(0x1.8p-24f), 0x0002); /* 1.5 ulp: tie to even 2 */
    CHECK_EQ_INT(eng_f32_to_f16(0x1p-14f), 0x0400);  /* smallest normal */
    CHECK_EQ_INT(eng_f32_to_f16(0x1.ff8p-15f), 0x03FF); /* largest subnormal */
    CHECK_EQ_INT(eng_f32_to_f16(0x1.ffbp-15f), 0x03FF);
    CHECK_EQ_INT(eng_f32_to_f16(0x1.ffcp-15f), 0x0400); /* tie: rounds up into the normals */
    CHECK_EQ_INT(eng_f32_to_f16(1e-30f), 0x0000);
    CHECK_EQ_INT(eng_f32_to_f16(-1e-30f), 0x8000);
    CHECK_EQ_INT(eng_f32_to_f16(FLT_MIN / 4), 0x0000); /* f32 subnormal input */
    CHECK_EQ_INT(eng_f32_to_f16(1.0f + 0x1p-11f), 0x3C00); /* tie, even stays */
    CHECK_EQ_INT(eng_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3C02); /* tie, odd rounds up */
    CHECK_EQ_INT(eng_f32_to_f16(2047.5f), 0x6800);   /* 2047.5 is a tie between 2047 and 2048 */
    uint16_t qn = eng_f32_to_f16(NAN);
    CHECK(((qn >> 10) & 31) == 31 && (qn & 0x3FF) != 0 && (qn & 0x200));
    /* a signalling NaN whose payload is only in the low bits still gives a NaN */
    uint16_t sn = eng_f32_to_f16(from_bits(0xFF800001u));
    CHECK_EQ_INT(sn, 0xFE00);
    uint16_t sn_row;
    float snf = from_bits(0x7F800001u);
    eng_f32_to_f16_row(&snf, &sn_row, 1);
    CHECK_EQ_INT(sn_row, 0x7E00);

    /* bf16 */
    CHECK(eng_bf16_to_f32(0x3F80) == 1.0f);
    CHECK(eng_bf16_to_f32(0xC040) == -3.0f);
    CHECK(isinf(eng_bf16_to_f32(0x7F80)));
    CHECK(isnan(eng_bf16_to_f32(0x7FC0)));
    for (uint32_t i = 0; i < 65536; i++)
        CHECK_EQ_INT(to_bits(eng_bf16_to_f32((uint16_t)i)), i << 16);

    free(all);
    free(rowf);
    free(back);
    free(src);
    free(got);
    printf("ok: all 65536 halves, %zu rounding cases\n", ns);
    return 0;
}
