/* Dequantization of every supported weight type against the shared test vectors
 * (testvectors/dequant): both dumped tensors of each vq-<TYPE>.gguf must decode to exactly
 * the reference floats (compared as floats: -0.0 == +0.0). */
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "testutil.h"
#include "vq.h"

int main(void)
{
    json_t *index = tu_load_json("testvectors/dequant/dequant_index.json");
    CHECK(json_is_array(index));
    CHECK_EQ_INT(json_array_size(index), 28);
    int seen[14] = {0};
    size_t i;
    json_t *e;
    json_array_foreach(index, i, e) {
        const char *gguf = json_string_value(json_object_get(e, "gguf"));
        const char *tname = json_string_value(json_object_get(e, "tensor"));
        const char *f32_file = json_string_value(json_object_get(e, "f32_file"));
        const char *type_name = json_string_value(json_object_get(e, "ggml_type"));
        uint32_t type_id = (uint32_t)json_integer_value(json_object_get(e, "ggml_type_id"));
        CHECK(gguf && tname && f32_file && type_name);
        for (int k = 0; k < 14; k++)
            if (strcmp(vq_type_names[k], type_name) == 0) seen[k]++;

        vq_tensor t;
        vq_load(gguf, tname, &t);
        CHECK_EQ_INT(t.type, type_id);
        const eng_type_info *ti = eng_type_info_get(t.type);
        CHECK_MSG(ti != NULL, "type %s unsupported", type_name);
        CHECK_MSG(strcmp(ti->name, type_name) == 0, "name %s vs %s", ti->name, type_name);
        CHECK(strcmp(eng_type_name(t.type), type_name) == 0);
        size_t rb;
        CHECK_EQ_INT(eng_row_bytes(t.type, t.ne0, &rb), 0);
        CHECK_EQ_INT(rb * t.ne1, t.nbytes);

        char rel[256];
        snprintf(rel, sizeof rel, "testvectors/dequant/%s", f32_file);
        size_t len;
        float *ref = tu_read_file(tu_shared(rel), &len);
        CHECK_EQ_INT(len, t.ne0 * t.ne1 * sizeof(float));

        /* Whole tensor in one call, and row by row into an unaligned destination. */
        float *out = malloc(len);
        float *out2 = malloc(len + sizeof(float));
        CHECK(out && out2);
        eng_dequant_row(t.type, t.data, out, (size_t)(t.ne0 * t.ne1));
        for (uint64_t r = 0; r < t.ne1; r++)
            eng_dequant_row(t.type, t.data + r * rb, out2 + 1 + r * t.ne0, (size_t)t.ne0);
        size_t bad = 0;
        for (size_t k = 0; k < t.ne0 * t.ne1; k++) {
            if (out[k] != ref[k] || out2[k + 1] != ref[k]) {
                if (bad++ < 5)
                    fprintf(stderr, "%s %s: element %zu (row %zu col %zu): got %.9g / %.9g, want %.9g\n",
                            gguf, tname, k, k / (size_t)t.ne0, k % (size_t)t.ne0,
                            (double)out[k], (double)out2[k + 1], (double)ref[k]);
            }
        }
        CHECK_MSG(bad == 0, "%s %s: %zu mismatching elements", gguf, tname, bad);
        printf("ok %-14s %-22s %6zu elements bit-exact\n", gguf, tname, (size_t)(t.ne0 * t.ne1));
        free(out);
        free(out2);
        free(ref);
        vq_free(&t);
    }
    for (int k = 0; k < 14; k++)
        CHECK_MSG(seen[k] == 2, "type %s: %d tensors in the index, expected 2", vq_type_names[k], seen[k]);
    json_decref(index);
    return 0;
}
