#include "vq.h"

#include <stdlib.h>
#include <string.h>

#include "testutil.h"

const char *const vq_type_names[14] = {
    "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
    "IQ4_NL", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_XS",
};

static uint32_t type_id_of(const char *name)
{
    static const struct { const char *n; uint32_t id; } ids[] = {
        {"F32", 0}, {"F16", 1}, {"Q4_0", 2}, {"Q4_1", 3}, {"Q5_0", 6}, {"Q5_1", 7},
        {"Q8_0", 8}, {"Q2_K", 10}, {"Q3_K", 11}, {"Q4_K", 12}, {"Q5_K", 13},
        {"Q6_K", 14}, {"IQ4_NL", 20}, {"IQ4_XS", 23}, {"BF16", 30},
    };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        if (strcmp(ids[i].n, name) == 0) return ids[i].id;
    tu_fail(__FILE__, __LINE__, "unexpected type name %s in test vectors", name);
}

void vq_load(const char *gguf, const char *name, vq_tensor *ret)
{
    json_t *files = tu_load_json("testvectors/dequant/dequant_gguf_files.json");
    CHECK(json_is_array(files));
    json_t *file = NULL;
    size_t i;
    json_t *v;
    json_array_foreach(files, i, v) {
        if (strcmp(json_string_value(json_object_get(v, "gguf")), gguf) == 0) file = v;
    }
    CHECK_MSG(file != NULL, "%s not in dequant_gguf_files.json", gguf);
    json_t *tensors = json_object_get(file, "tensors");
    uint64_t max_end = 0;
    json_t *tj = NULL;
    json_array_foreach(tensors, i, v) {
        uint64_t end = (uint64_t)json_integer_value(json_object_get(v, "offset_in_data")) +
                       (uint64_t)json_integer_value(json_object_get(v, "nbytes"));
        if (end > max_end) max_end = end;
        if (strcmp(json_string_value(json_object_get(v, "name")), name) == 0) tj = v;
    }
    CHECK_MSG(tj != NULL, "%s not in %s", name, gguf);

    char rel[256];
    snprintf(rel, sizeof rel, "testvectors/dequant/%s", gguf);
    size_t len;
    uint8_t *bytes = tu_read_file(tu_shared(rel), &len);
    CHECK(len >= 4 && memcmp(bytes, "GGUF", 4) == 0);
    CHECK_MSG(len == (uint64_t)json_integer_value(json_object_get(file, "bytes")), "%s size", gguf);
    CHECK(max_end <= len);
    uint64_t data_start = len - max_end;
    CHECK_MSG(data_start % 32 == 0, "%s: data section start %llu not aligned", gguf,
              (unsigned long long)data_start);

    ret->type = type_id_of(json_string_value(json_object_get(tj, "ggml_type")));
    json_t *shape = json_object_get(tj, "shape");
    CHECK(json_array_size(shape) == 2);
    ret->ne0 = (uint64_t)json_integer_value(json_array_get(shape, 0));
    ret->ne1 = (uint64_t)json_integer_value(json_array_get(shape, 1));
    uint64_t off = (uint64_t)json_integer_value(json_object_get(tj, "offset_in_data"));
    ret->nbytes = (size_t)json_integer_value(json_object_get(tj, "nbytes"));
    CHECK(data_start + off + ret->nbytes <= len);
    ret->data = malloc(ret->nbytes);
    CHECK(ret->data != NULL);
    memcpy(ret->data, bytes + data_start + off, ret->nbytes);
    free(bytes);
    json_decref(files);
}

void vq_free(vq_tensor *t)
{
    free(t->data);
    t->data = NULL;
}
