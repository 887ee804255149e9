/* Fixed worker pool. A run publishes (fn, arg) and bumps an atomic generation counter;
 * workers spin on it for a short while (ENG_POOL_SPIN_NS) after each job, so the ~200 jobs
 * of one forward step start without a sleep/wake round trip each, and then sleep on a
 * condition variable (the machine is shared: idle workers do not burn a core). The caller
 * waits for the others by spinning on an atomic count of unfinished parts, yielding the
 * core when that takes long. Each part i of a run is claimed once (an atomic per part holds
 * the generation that last claimed it): the caller, done with part 0, claims and runs every
 * part whose worker has not started yet, so a worker that the OS has not scheduled (the
 * machine is shared) delays nothing. fn(arg, i, n) still runs exactly once per i. */
#include "threadpool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

/* how long an idle worker spins before it sleeps */
#define ENG_POOL_SPIN_NS 300000L

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
    _Alignas(64) atomic_ulong gen; /* incremented per run (and at quit) */
    _Alignas(64) atomic_int pending; /* workers (other than the caller) still running the job */
    _Alignas(64) atomic_int sleeping; /* workers in (or entering) the condition wait */
    atomic_bool quit;
    _Atomic unsigned long *claimed; /* [n]: generation that last claimed part i */
    eng_pool_fn fn;
    void *arg;
};

long eng_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* waits until gen != seen; returns the new gen */
static unsigned long wait_gen(eng_pool *pool, unsigned long seen)
{
    unsigned long g;
    long t0 = 0;
    for (unsigned i = 0;; i++) {
        g = atomic_load_explicit(&pool->gen, memory_order_acquire);
        if (g != seen) return g;
        cpu_relax();
        if ((i & 255) == 255) {
            long t = eng_now_ns();
            if (t0 == 0) t0 = t;
            else if (t - t0 > ENG_POOL_SPIN_NS) break;
        }
    }
    pthread_mutex_lock(&pool->mu);
    atomic_fetch_add(&pool->sleeping, 1);
    while ((g = atomic_load(&pool->gen)) == seen) pthread_cond_wait(&pool->start_cv, &pool->mu);
    atomic_fetch_sub(&pool->sleeping, 1);
    pthread_mutex_unlock(&pool->mu);
    return g;
}

/* claims part i for generation g; false if someone already did */
static bool claim(eng_pool *pool, int i, unsigned long g)
{
    unsigned long old = atomic_load(&pool->claimed[i]);
    while (old < g)
        if (atomic_compare_exchange_weak(&pool->claimed[i], &old, g)) return true;
    return false;
}

static void *pool_main(void *p)
{
    pool_worker *w = p;
    eng_pool *pool = w->pool;
    unsigned long seen = 0;
    for (;;) {
        seen = wait_gen(pool, seen);
        if (atomic_load(&pool->quit)) break;
        /* a successful claim for generation `seen` means that run is still going on (it
         * cannot end before this part is done), so fn and arg are that run's */
        if (!claim(pool, w->ith, seen)) continue;
        pool->fn(pool->arg, w->ith, pool->n);
        atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_acq_rel);
    }
    return NULL;
}

/* bumps gen and wakes sleepers */
static void publish(eng_pool *pool)
{
    atomic_fetch_add(&pool->gen, 1);
    if (atomic_load(&pool->sleeping) > 0) {
        pthread_mutex_lock(&pool->mu);
        pthread_cond_broadcast(&pool->start_cv);
        pthread_mutex_unlock(&pool->mu);
    }
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
    atomic_init(&pool->gen, 0);
    atomic_init(&pool->pending, 0);
    atomic_init(&pool->sleeping, 0);
    atomic_init(&pool->quit, false);
    pool->th = calloc((size_t)n_threads, sizeof *pool->th);
    pool->wk = calloc((size_t)n_threads, sizeof *pool->wk);
    pool->claimed = calloc((size_t)n_threads, sizeof *pool->claimed);
    if (!pool->th || !pool->wk || !pool->claimed) {
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
    atomic_store(&pool->quit, true);
    pthread_mutex_lock(&pool->mu);
    atomic_fetch_add(&pool->gen, 1);
    pthread_cond_broadcast(&pool->start_cv);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 1; i <= pool->n_started; i++) pthread_join(pool->th[i], NULL);
    pthread_cond_destroy(&pool->start_cv);
    pthread_mutex_destroy(&pool->mu);
    free(pool->th);
    free(pool->wk);
    free((void *)pool->claimed);
    free(pool);
}

int eng_pool_size(const eng_pool *pool) { return pool->n; }

void eng_pool_run(eng_pool *pool, eng_pool_fn fn, void *arg)
{
    if (pool->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->arg = arg;
    atomic_store_explicit(&pool->pending, pool->n - 1, memory_order_relaxed);
    publish(pool); /* seq_cst: fn, arg and pending are visible to whoever sees the new gen */
    const unsigned long g = atomic_load(&pool->gen);
    fn(arg, 0, pool->n);
    for (int i = 1; i < pool->n; i++) /* parts whose worker has not started: run them here */
        if (claim(pool, i, g)) {
            fn(arg, i, pool->n);
            atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_acq_rel);
        }
    for (unsigned i = 0; atomic_load_explicit(&pool->pending, memory_order_acquire) > 0; i++) {
        cpu_relax();
        if ((i & 1023) == 1023) sched_yield(); /* a worker may be descheduled */
    }
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
