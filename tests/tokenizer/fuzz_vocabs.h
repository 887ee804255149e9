/* Shared set-up of the tokenizer fuzz targets: loads vocabularies from the shared models
 * folder ($LLAMAD_SHARED) once, in LLVMFuzzerInitialize. */
#ifndef LLAMAD_FUZZ_VOCABS_H
#define LLAMAD_FUZZ_VOCABS_H

#include <stddef.h>

#include "tokenizer.h"

/* Loads files[i] (paths relative to $LLAMAD_SHARED) into ret_vocabs[i]. A fuzz target cannot
 * run without them: a missing variable or file aborts with a message naming `who`. */
void fuzz_load_vocabs(const char *who, const char *const *files, size_t n, tok_vocab **ret_vocabs);

#endif
