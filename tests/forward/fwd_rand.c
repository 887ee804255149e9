#include "fwd_rand.h"

#include <stdlib.h>

#include "quant.h"
#include "testutil.h"

float fwd_frand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return (float)((x >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

float *fwd_rnd(uint64_t *state, size_t n, float scale, float add)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    CHECK(p);
    for (size_t i = 0; i < n; i++) p[i] = fwd_frand(state) * scale + add;
    return p;
}

eng_mat fwd_mat_f32(const float *w, int rows, int cols)
{
    eng_mat m = {.type = ENG_TYPE_F32, .rows = (uint64_t)rows, .cols = (uint64_t)cols,
                 .row_bytes = (size_t)cols * sizeof(float), .data = w, .name = "synthetic"};
    return m;
}
