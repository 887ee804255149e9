/* gen_model: writes a synthetic Llama GGUF (real shapes, seeded random weights) for benchmarks.
 *
 * usage: gen_model PRESET TYPE VOCAB.gguf OUT.gguf [seed]
 *   PRESET  smollm2-135m | tinyllama-1.1b | llama3.2-1b | tiny
 *   TYPE    F32 | F16 | Q8_0 | Q4_0 | Q4_K
 *   VOCAB   a GGUF whose tokenizer.* keys are copied (n_vocab = its token count), e.g.
 *           /work/shared/models/llama.cpp-vocab/llama3-vocab.gguf
 * See bench/README.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "genmodel.h"
#include "quant.h"

static void usage(void)
{
    fprintf(stderr, "usage: gen_model PRESET TYPE VOCAB.gguf OUT.gguf [seed]\n  presets:");
    for (int i = 0; gm_preset_at(i); i++) fprintf(stderr, " %s", gm_preset_at(i)->name);
    fprintf(stderr, "\n  types: F32 F16 Q8_0 Q4_0 Q4_K\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 5 || argc > 6) usage();
    const gm_spec *s = gm_preset(argv[1]);
    if (!s) usage();
    static const uint32_t types[] = {ENG_TYPE_F32, ENG_TYPE_F16, ENG_TYPE_Q8_0, ENG_TYPE_Q4_0,
                                     ENG_TYPE_Q4_K};
    uint32_t wt = UINT32_MAX;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(argv[2], eng_type_name(types[i]))) wt = types[i];
    if (wt == UINT32_MAX) usage();
    uint64_t seed = argc == 6 ? strtoull(argv[5], NULL, 0) : 1234;
    eng_error err = {0};
    if (gm_write(s, wt, argv[3], argv[4], seed, &err)) {
        fprintf(stderr, "gen_model: %s\n", err.msg);
        return 1;
    }
    return 0;
}
