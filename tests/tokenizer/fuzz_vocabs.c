#include "fuzz_vocabs.h"

#include <stdio.h>
#include <stdlib.h>

#include "gguf.h"

void fuzz_load_vocabs(const char *who, const char *const *files, size_t n, tok_vocab **ret_vocabs)
{
    const char *root = getenv("LLAMAD_SHARED");
    if (root == NULL) {
        fprintf(stderr, "%s: LLAMAD_SHARED is not set\n", who);
        abort();
    }
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", root, files[i]);
        gguf_file *f = NULL;
        eng_error err = {0};
        if (gguf_open(path, &f, &err) < 0 || tok_load_from_gguf(f, &ret_vocabs[i], &err) < 0) {
            fprintf(stderr, "%s: %s: %s\n", who, path, err.msg);
            abort();
        }
        gguf_close(f);
    }
}
