/* Read-bandwidth probe (see membw.h): each thread sums its share of a large buffer with wide independent
 * accumulators, which compilers turn into vector loads, so the loop is bound by memory, not arithmetic. */
#include "base/membw.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/threads.h"

typedef struct {
    const uint64_t *buf;
    size_t n;
    uint64_t sink[64];
} bw_job;

static void read_task(void *ctx, int worker, int n_workers) {
    bw_job *j = ctx;
    size_t b, e;
    gm_pool_chunk(j->n, 64, worker, n_workers, &b, &e);
    uint64_t acc[8] = {0};
    for (size_t i = b; i + 8 <= e; i += 8)
        for (int k = 0; k < 8; k++) acc[k] ^= j->buf[i + k];
    j->sink[worker % 64] = acc[0] ^ acc[1] ^ acc[2] ^ acc[3] ^ acc[4] ^ acc[5] ^ acc[6] ^ acc[7];
}

double gm_read_bandwidth(int n_threads, size_t bytes, int passes) {
    uint64_t *buf = NULL;
    if (posix_memalign((void **)&buf, 64, bytes) != 0) return 0;
    memset(buf, 1, bytes); /* touch every page so the probe measures reads, not page faults */
    gm_pool *pool = gm_pool_new(n_threads);
    if (!pool) {
        free(buf);
        return 0;
    }
    bw_job j;
    memset(&j, 0, sizeof j);
    j.buf = buf;
    j.n = bytes / sizeof(uint64_t);
    double best = 0;
    for (int p = 0; p < passes; p++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        gm_pool_run(pool, read_task, &j);
        clock_gettime(CLOCK_MONOTONIC, &b);
        double dt = (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
        double gbs = (double)bytes / dt / 1e9;
        if (gbs > best) best = gbs;
    }
    gm_pool_free(pool);
    free(buf);
    return best;
}
