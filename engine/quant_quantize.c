/* Quantizers (f32 -> weight type), round-to-nearest per block, for the formats the synthetic
 * model generator writes: F32, F16, Q8_0, Q4_0, Q4_K. Not on any hot path. */
#include "quant.h"
#include "quant_internal.h"

#include <errno.h>
#include <math.h>

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xFF);
    p[1] = (uint8_t)(v >> 8);
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Q8_0: d = amax / 127 (stored as f16), q = round(x / d) in [-127, 127]. */
static void quant_q8_0(const float *x, uint8_t *b, size_t nblk)
{
    for (size_t i = 0; i < nblk; i++, x += 32, b += 34) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        put16(b, eng_f32_to_f16(d));
        for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(int8_t)clampi((int)lrintf(x[j] * id), -127, 127);
    }
}

/* Q4_0: the value of largest magnitude m maps to -8: d = m / -8, q = round(x / d) + 8 in
 * [0, 15]; byte j holds element j (low nibble) and element j + 16 (high nibble). */
static void quant_q4_0(const float *x, uint8_t *b, size_t nblk)
{
    for (size_t i = 0; i < nblk; i++, x += 32, b += 18) {
        float amax = 0.0f, m = 0.0f;
        for (int j = 0; j < 32; j++)
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                m = x[j];
            }
        const float d = m / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        put16(b, eng_f32_to_f16(d));
        for (int j = 0; j < 16; j++) {
            int q0 = clampi((int)lrintf(x[j] * id) + 8, 0, 15);
            int q1 = clampi((int)lrintf(x[j + 16] * id) + 8, 0, 15);
            b[2 + j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* Q4_K: 8 sub-blocks of 32; sub-block s has value = d * sc[s] * q - dmin * mn[s], q in
 * [0, 15], sc and mn 6-bit. Simple search: per sub-block min (<= 0) and range / 15, then the
 * 6-bit scales and mins round to nearest against the block's largest, then q rounds to
 * nearest with the rounded scales. */
static void quant_q4_k(const float *x, uint8_t *b, size_t nblk)
{
    for (size_t i = 0; i < nblk; i++, x += 256, b += 144) {
        float scale[8], mins[8], smax = 0.0f, mmax = 0.0f;
        for (int s = 0; s < 8; s++) {
            float lo = 0.0f, hi = 0.0f;
            for (int j = 0; j < 32; j++) {
                lo = fminf(lo, x[32 * s + j]);
                hi = fmaxf(hi, x[32 * s + j]);
            }
            scale[s] = (hi - lo) / 15.0f;
            mins[s] = -lo;
            smax = fmaxf(smax, scale[s]);
            mmax = fmaxf(mmax, mins[s]);
        }
        const uint16_t dh = eng_f32_to_f16(smax / 63.0f), mh = eng_f32_to_f16(mmax / 63.0f);
        const float d = eng_f16_to_f32(dh), dmin = eng_f16_to_f32(mh);
        int sc[8], mn[8];
        for (int s = 0; s < 8; s++) {
            sc[s] = d > 0.0f ? clampi((int)lrintf(scale[s] / d), 0, 63) : 0;
            mn[s] = dmin > 0.0f ? clampi((int)lrintf(mins[s] / dmin), 0, 63) : 0;
        }
        put16(b, dh);
        put16(b + 2, mh);
        uint8_t *sb = b + 4;
        for (int j = 0; j < 4; j++) {
            sb[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
            sb[j + 4] = (uint8_t)((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
            sb[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
        }
        uint8_t q[256];
        for (int s = 0; s < 8; s++) {
            const float ds = d * (float)sc[s], ms = dmin * (float)mn[s];
            for (int j = 0; j < 32; j++)
                q[32 * s + j] = (uint8_t)(ds > 0.0f ? clampi((int)lrintf((x[32 * s + j] + ms) / ds), 0, 15) : 0);
        }
        uint8_t *qs = b + 16;
        for (int g = 0; g < 4; g++)
            for (int l = 0; l < 32; l++)
                qs[32 * g + l] = (uint8_t)(q[64 * g + l] | (q[64 * g + 32 + l] << 4));
    }
}

int eng_quantize_row(uint32_t type, const float *src, void *dst, size_t n)
{
    const eng_type_info *ti = eng_type_info_get(type);
    if (!ti || n % ti->block_elems) return -EINVAL;
    const size_t nblk = n / ti->block_elems;
    switch (type) {
    case ENG_TYPE_F32: memcpy(dst, src, n * sizeof(float)); return 0;
    case ENG_TYPE_F16: {
        uint8_t *p = dst;
        for (size_t i = 0; i < n; i++) put16(p + 2 * i, eng_f32_to_f16(src[i]));
        return 0;
    }
    case ENG_TYPE_Q8_0: quant_q8_0(src, dst, nblk); return 0;
    case ENG_TYPE_Q4_0: quant_q4_0(src, dst, nblk); return 0;
    case ENG_TYPE_Q4_K: quant_q4_k(src, dst, nblk); return 0;
    default: return -ENOTSUP;
    }
}
