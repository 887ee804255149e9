/* The real scheduler backend: engine/ (model, forward pass, sampler, tokenizer) and
 * kvcache/, one KV cache and one forward context per model. */
#ifndef LLAMAD_BACKEND_H
#define LLAMAD_BACKEND_H

#include <stddef.h>

#include "config.h"
#include "sched_backend.h"

typedef struct engine_backend engine_backend;

/* Loads every configured model (resolving relative paths against models-dir), creates its
 * KV cache (kv-cache-mib split evenly between the models) and forward context. On failure
 * err names the model and the problem. */
int engine_backend_create(const srv_config *cfg, engine_backend **ret, char *err, size_t errlen);
void engine_backend_free(engine_backend *b);
sched_backend *engine_backend_get(engine_backend *b);

/* One line per model for the start-up log: shape, weights, KV cache, concurrency at full
 * context. */
void engine_backend_describe(engine_backend *b, int model, char *buf, size_t len);

#endif
