/* TEMPORARY (branch gguf only): the type table of quant.h until branch quant commits its
 * implementation; removed at that merge. */
#include "quant.h"

#include <stdint.h>
#include <stdio.h>

static const eng_type_info stub_types[] = {
    [0] = {"F32", 1, 4},       [1] = {"F16", 1, 2},
    [2] = {"Q4_0", 32, 18},    [3] = {"Q4_1", 32, 20},
    [6] = {"Q5_0", 32, 22},    [7] = {"Q5_1", 32, 24},
    [8] = {"Q8_0", 32, 34},
    [10] = {"Q2_K", 256, 84},  [11] = {"Q3_K", 256, 110},
    [12] = {"Q4_K", 256, 144}, [13] = {"Q5_K", 256, 176},
    [14] = {"Q6_K", 256, 210},
    [20] = {"IQ4_NL", 32, 18}, [23] = {"IQ4_XS", 256, 136},
    [30] = {"BF16", 1, 2},
};

const eng_type_info *eng_type_info_get(uint32_t type)
{
    if (type >= sizeof stub_types / sizeof stub_types[0] || !stub_types[type].name) return NULL;
    return &stub_types[type];
}

const char *eng_type_name(uint32_t type)
{
    static _Thread_local char buf[32];
    const eng_type_info *ti = eng_type_info_get(type);
    if (ti) return ti->name;
    if (type == 16) return "IQ2_XXS";
    snprintf(buf, sizeof buf, "unknown(%u)", type);
    return buf;
}

int eng_row_bytes(uint32_t type, uint64_t n_elems, size_t *ret_bytes)
{
    const eng_type_info *ti = eng_type_info_get(type);
    if (!ti || n_elems % ti->block_elems) return -22;
    uint64_t nb = n_elems / ti->block_elems;
    if (nb > SIZE_MAX / ti->block_bytes) return -75;
    *ret_bytes = (size_t)(nb * ti->block_bytes);
    return 0;
}
