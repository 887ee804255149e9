/* Thread pool: every index runs exactly once per job, many jobs in a row, range splitting. */
#include <stdatomic.h>
#include <string.h>

#include "threadpool.h"
#include "testutil.h"

typedef struct job {
    atomic_int hits[8];
    long data[1000];
} job;

static void fill(void *arg, int ith, int nth)
{
    job *j = arg;
    atomic_fetch_add(&j->hits[ith], 1);
    long lo, hi;
    eng_split_range(1000, ith, nth, &lo, &hi);
    for (long i = lo; i < hi; i++) j->data[i] += i;
}

int main(void)
{
    eng_error err = {0};
    eng_pool *p = NULL;
    CHECK(eng_pool_create(0, &p, &err) == -22 && p == NULL);
    for (int n = 1; n <= 4; n++) {
        CHECK(eng_pool_create(n, &p, &err) == 0);
        CHECK_EQ_INT(eng_pool_size(p), n);
        static job j;
        memset(&j, 0, sizeof j);
        for (int rep = 0; rep < 500; rep++) eng_pool_run(p, fill, &j);
        for (int i = 0; i < n; i++) CHECK_EQ_INT(atomic_load(&j.hits[i]), 500);
        for (long i = 0; i < 1000; i++) CHECK_EQ_INT(j.data[i], 500 * i);
        eng_pool_free(p);
    }
    /* splitting covers the range exactly, in order */
    for (int n = 1; n <= 7; n++) {
        long prev = 0;
        for (int i = 0; i < n; i++) {
            long lo, hi;
            eng_split_range(10, i, n, &lo, &hi);
            CHECK_EQ_INT(lo, prev);
            CHECK(hi >= lo);
            prev = hi;
        }
        CHECK_EQ_INT(prev, 10);
    }
    CHECK(eng_physical_cores() >= 1);
    printf("fwd_threadpool: ok\n");
    return 0;
}
