/* The shared models and test vectors that the suite uses in place must be there:
 * a checkout without them fails here, loudly, instead of skipping tests quietly. */
#include "testutil.h"

#include <string.h>

static const char *const required[] = {
    "models/MANIFEST.md",
    "models/stories260K.gguf",
    "models/tinyllamas-stories-260k-f32.gguf",
    "models/TinyStories-656K-Q8_0.gguf",
    "models/llama-2-tiny-random.gguf",
    "models/llama.cpp-vocab/ggml-vocab-llama-spm.gguf",
    "models/llama.cpp-vocab/llama3-vocab.gguf",
    "testvectors/README.md",
    "testvectors/stories260K_greedy.json",
    "testvectors/TinyStories-656K-Q8_0_greedy.json",
    "testvectors/llama2_tokenizer_encode.json",
    "testvectors/dequant/dequant_index.json",
    "testvectors/greedy/greedy_stories260K.json",
};

int main(void)
{
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        size_t len = 0;
        char *buf = tu_read_file(tu_shared(required[i]), &len);
        CHECK_MSG(len > 0, "%s is empty", required[i]);
        free(buf);
    }
    json_t *idx = tu_load_json("testvectors/dequant/dequant_index.json");
    CHECK(json_is_array(idx) && json_array_size(idx) == 28);
    json_decref(idx);
    puts("shared models and test vectors present");
    return 0;
}
