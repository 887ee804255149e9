/* Fixed worker pool: a generation counter under a mutex, one condition variable to start
 * work and one to report completion. Workers sleep between steps (the machine is shared). */
#include "threadpool.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct pool_worker {
    eng_pool *pool;
    int ith;
} pool_worker;

struct eng_pool {
    int n;
    pthread_t *th;
    pool_worker *wk;
    int n_started;
    pthread_mutex_t mu;
    pthread_cond_t start_cv;
    pthread_cond_t done_cv;
    unsigned long gen;     /* incremented per run */
    int pending;           /* workers (other than the caller) still running the job */
    bool quit;
    eng_pool_fn fn;
    void *arg;
};

static void *pool_main(void *p)
{
    pool_worker *w = p;
    eng_pool *pool = w->pool;
    unsigned long seen = 0;
    pthread_mutex_lock(&pool->mu);
    for (;;) {
        while (!pool->quit && pool->gen == seen) pthread_cond_wait(&pool->start_cv, &pool->mu);
        if (pool->quit) break;
        seen = pool->gen;
        eng_pool_fn fn = pool->fn;
        void *arg = pool->arg;
        pthread_mutex_unlock(&pool->mu);
        fn(arg, w->ith, pool->n);
        pthread_mutex_lock(&pool->mu);
        if (--pool->pending == 0) pthread_cond_signal(&pool->done_cv);
    }
    pthread_mutex_unlock(&pool->mu);
    return NULL;
}

int eng_pool_create(int n_threads, eng_pool **ret, eng_error *err)
{
    if (n_threads < 1 || n_threads > ENG_POOL_MAX_THREADS)
        return eng_error_set(err, -EINVAL, "thread count %d is out of range [1, %d]", n_threads,
                             ENG_POOL_MAX_THREADS);
    eng_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return eng_error_set(err, -ENOMEM, "thread pool: out of memory");
    pool->n = n_threads;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->start_cv, NULL);
    pthread_cond_init(&pool->done_cv, NULL);
    pool->th = calloc((size_t)n_threads, sizeof *pool->th);
    pool->wk = calloc((size_t)n_threads, sizeof *pool->wk);
    if (!pool->th || !pool->wk) {
        eng_pool_free(pool);
        return eng_error_set(err, -ENOMEM, "thread pool: out of memory");
    }
    for (int i = 1; i < n_threads; i++) {
        pool->wk[i].pool = pool;
        pool->wk[i].ith = i;
        int rc = pthread_create(&pool->th[i], NULL, pool_main, &pool->wk[i]);
        if (rc) {
            eng_pool_free(pool);
            return eng_error_set(err, -rc, "thread pool: cannot start worker %d: %s", i,
                                 strerror(rc));
        }
        pool->n_started = i;
    }
    *ret = pool;
    return 0;
}

void eng_pool_free(eng_pool *pool)
{
    if (!pool) return;
    pthread_mutex_lock(&pool->mu);
    pool->quit = true;
    pthread_cond_broadcast(&pool->start_cv);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 1; i <= pool->n_started; i++) pthread_join(pool->th[i], NULL);
    pthread_cond_destroy(&pool->start_cv);
    pthread_cond_destroy(&pool->done_cv);
    pthread_mutex_destroy(&pool->mu);
    free(pool->th);
    free(pool->wk);
    free(pool);
}

int eng_pool_size(const eng_pool *pool) { return pool->n; }

void eng_pool_run(eng_pool *pool, eng_pool_fn fn, void *arg)
{
    if (pool->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    pthread_mutex_lock(&pool->mu);
    pool->fn = fn;
    pool->arg = arg;
    pool->pending = pool->n - 1;
    pool->gen++;
    pthread_cond_broadcast(&pool->start_cv);
    pthread_mutex_unlock(&pool->mu);
    fn(arg, 0, pool->n);
    pthread_mutex_lock(&pool->mu);
    while (pool->pending > 0) pthread_cond_wait(&pool->done_cv, &pool->mu);
    pthread_mutex_unlock(&pool->mu);
}

void eng_split_range(long total, int i, int n, long *ret_lo, long *ret_hi)
{
    long base = total / n, rem = total % n;
    long lo = (long)i * base + (i < rem ? i : rem);
    *ret_lo = lo;
    *ret_hi = lo + base + (i < rem ? 1 : 0);
}

int eng_physical_cores(void)
{
    /* distinct (physical id, core id) pairs from /proc/cpuinfo */
    FILE *f = fopen("/proc/cpuinfo", "r");
    int pairs[1024][2];
    int np = 0, phys = 0;
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f)) {
            int v;
            if (sscanf(line, "physical id : %d", &v) == 1) {
                phys = v;
            } else if (sscanf(line, "core id : %d", &v) == 1) {
                bool seen = false;
                for (int i = 0; i < np; i++)
                    if (pairs[i][0] == phys && pairs[i][1] == v) seen = true;
                if (!seen && np < 1024) {
                    pairs[np][0] = phys;
                    pairs[np][1] = v;
                    np++;
                }
            }
        }
        fclose(f);
    }
    if (np > 0) return np;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
