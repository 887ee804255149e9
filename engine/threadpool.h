/* A fixed pool of compute workers for the engine (size fixed at creation).
 *
 * eng_pool_run(pool, fn, arg) runs fn(arg, i, n) once for every i in [0, n) where n is the
 * pool's thread count; the calling thread runs i = 0 itself and the call returns when all
 * have finished. Work is split by the callee from (i, n) — rows or columns, never the K
 * dimension, so results do not depend on n. One caller at a time (the engine thread);
 * fn must not call eng_pool_run. OpenBLAS is never called from inside fn. */
#ifndef LLAMAD_ENG_THREADPOOL_H
#define LLAMAD_ENG_THREADPOOL_H

#include "eng_error.h"

typedef struct eng_pool eng_pool;
typedef void (*eng_pool_fn)(void *arg, int ith, int nth);

#define ENG_POOL_MAX_THREADS 256

int eng_pool_create(int n_threads, eng_pool **ret, eng_error *err);
void eng_pool_free(eng_pool *pool);
int eng_pool_size(const eng_pool *pool);
void eng_pool_run(eng_pool *pool, eng_pool_fn fn, void *arg);

/* The i-th of n equal contiguous parts of [0, total): [*ret_lo, *ret_hi). */
void eng_split_range(long total, int i, int n, long *ret_lo, long *ret_hi);

/* CLOCK_MONOTONIC in nanoseconds (the pool's spin limit; the engine's per-thread timings). */
long eng_now_ns(void);

/* Physical cores of this machine (distinct core ids), at least 1. */
int eng_physical_cores(void);

#endif
