/* Thread pool: every worker runs exactly once per run, many back-to-back runs lose nothing (the spin
 * path), runs after idle pauses still wake everyone (the sleep path), a slow worker makes the caller
 * wait (its sleep path), and gm_pool_chunk tiles a range exactly. */
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "base/threads.h"
#include "gemma.h"
#include "testlib.h"

#define MAXW 8

typedef struct {
    atomic_int hits[MAXW];
    atomic_int bad_n;
    int expect_n;
    atomic_long sum;
    int slow_worker; /* this worker sleeps a while; -1 for none */
} ctx_t;

static void sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static void task(void *c, int worker, int n) {
    ctx_t *x = c;
    if (n != x->expect_n || worker < 0 || worker >= n) atomic_fetch_add(&x->bad_n, 1);
    else atomic_fetch_add(&x->hits[worker], 1);
    atomic_fetch_add(&x->sum, worker + 1);
    if (worker == x->slow_worker) sleep_us(3000);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void check_pool(int n) {
    gm_pool *p = gm_pool_new(n);
    CHECK(p != NULL);
    if (!p) return;
    CHECK(gm_pool_size(p) == n);
    ctx_t c;
    memset(&c, 0, sizeof c);
    c.expect_n = n;
    c.slow_worker = -1;
    const int runs = n <= 2 ? 20000 : 2000; /* more threads than this VM's 2 CPUs run slowly */
    double t0 = now_s();
    for (int r = 0; r < runs; r++) gm_pool_run(p, task, &c);
    double per = (now_s() - t0) / runs;
    printf("pool of %d: %.2f us per empty run\n", n, per * 1e6);
    CHECK(atomic_load(&c.bad_n) == 0);
    for (int w = 0; w < n; w++) CHECKF(atomic_load(&c.hits[w]) == runs, "worker %d ran %d of %d", w, c.hits[w], runs);
    CHECK(atomic_load(&c.sum) == (long)runs * n * (n + 1) / 2);

    /* Idle gaps longer than the spin: workers are asleep when each run starts. */
    memset(&c, 0, sizeof c);
    c.expect_n = n;
    c.slow_worker = -1;
    for (int r = 0; r < 20; r++) {
        sleep_us(1500);
        gm_pool_run(p, task, &c);
    }
    for (int w = 0; w < n; w++) CHECK(atomic_load(&c.hits[w]) == 20);

    /* A worker slower than the caller's spin: the caller must sleep and be woken. */
    if (n > 1) {
        memset(&c, 0, sizeof c);
        c.expect_n = n;
        c.slow_worker = n - 1;
        for (int r = 0; r < 5; r++) gm_pool_run(p, task, &c);
        for (int w = 0; w < n; w++) CHECK(atomic_load(&c.hits[w]) == 5);
    }
    gm_pool_free(p);
}

int main(void) {
    /* NULL pool: inline, one worker. */
    ctx_t c;
    memset(&c, 0, sizeof c);
    c.expect_n = 1;
    c.slow_worker = -1;
    gm_pool_run(NULL, task, &c);
    CHECK(atomic_load(&c.hits[0]) == 1 && atomic_load(&c.bad_n) == 0);
    CHECK(gm_pool_size(NULL) == 1);
    gm_pool_free(NULL);

    CHECK(gm_pool_new(0) == NULL);
    CHECK(strstr(gm_last_error(), "thread") != NULL);
    CHECK(gm_pool_new(-3) == NULL);

    for (int n = 1; n <= 4; n++) check_pool(n);
    /* Create and destroy quickly, with and without runs in between. */
    for (int i = 0; i < 50; i++) {
        gm_pool *p = gm_pool_new(3);
        CHECK(p != NULL);
        if (i & 1) {
            memset(&c, 0, sizeof c);
            c.expect_n = 3;
            c.slow_worker = -1;
            gm_pool_run(p, task, &c);
            CHECK(atomic_load(&c.hits[2]) == 1);
        }
        gm_pool_free(p);
    }

    /* gm_pool_chunk: contiguous, covering, aligned, balanced to within one alignment unit. */
    uint64_t s = 88172645463325252ull;
    for (int it = 0; it < 20000; it++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        size_t total = (size_t)(s % 5000), align = (size_t)(s >> 20) % 70;
        int n = 1 + (int)((s >> 40) % 9);
        size_t prev = 0, mn = (size_t)-1, mx = 0, unit = align ? align : 1;
        int ok = 1;
        for (int w = 0; w < n; w++) {
            size_t b, e;
            gm_pool_chunk(total, align, w, n, &b, &e);
            if (b != prev || e < b || (e != total && e % unit) || (b != total && b % unit)) ok = 0;
            if (e != total || b == e) { /* the last, partial unit may be short: compare whole units */
                mn = e - b < mn ? e - b : mn;
            }
            mx = e - b > mx ? e - b : mx;
            prev = e;
        }
        if (prev != total) ok = 0;
        if (mn != (size_t)-1 && mx > mn + unit) ok = 0;
        CHECKF(ok, "chunk total=%zu align=%zu n=%d", total, align, n);
    }
    size_t b, e;
    gm_pool_chunk(100, 32, 0, 4, &b, &e);
    CHECK(b == 0 && e == 32);
    gm_pool_chunk(100, 32, 3, 4, &b, &e);
    CHECK(b == 96 && e == 100);
    gm_pool_chunk(10, 32, 1, 2, &b, &e);
    CHECK(b == 10 && e == 10);
    TEST_DONE();
}
