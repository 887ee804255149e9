/* The real scheduler backend: engine/ (model, forward pass, sampler, tokenizer) and
 * kvcache/, one KV cache and one forward context per model. */
#ifndef LLAMAD_BACKEND_H
#define LLAMAD_BACKEND_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "sched_backend.h"

typedef struct engine_backend engine_backend;

/* Loads every configured model (resolving relative paths against models-dir), creates its
 * KV cache (kv-cache-mib split evenly between the models) and forward context. With
 * commit_kv the KV caches are faulted in now (serving: resident from start-up, no page
 * fault in a step); without it (--check-config) they are only reserved. On failure err
 * names the model and the problem. */
int engine_backend_create(const srv_config *cfg, bool commit_kv, engine_backend **ret, char *err,
                          size_t errlen);
void engine_backend_free(engine_backend *b);
sched_backend *engine_backend_get(engine_backend *b);

/* One line per model for the start-up log: shape, weights, KV cache, concurrency at full
 * context. */
void engine_backend_describe(engine_backend *b, int model, char *buf, size_t len);

#endif
