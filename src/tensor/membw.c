/* Read-bandwidth probe (see membw.h): each thread streams its share of a large buffer through the dispatched
 * f32 dot product of the buffer with itself (one read of every cache line; values 1.0, so no denormals), so
 * the loop runs at the width decode's kernels use and is bound by memory, not arithmetic. */
#include "tensor/membw.h"

#include <stdlib.h>
#include <time.h>

#include "base/file.h"
#include "base/threads.h"
#include "tensor/vec.h"

#define GM_BW_SPAN (1 << 16) /* floats per dot call: 256 KiB, long enough that the call costs nothing */

typedef struct {
    const float *buf;
    size_t n;
    const gm_vec_ops *ops;
    float sink[64];
} bw_job;

static void read_task(void *ctx, int worker, int n_workers) {
    bw_job *j = ctx;
    size_t b, e;
    gm_pool_chunk(j->n, GM_BW_SPAN, worker, n_workers, &b, &e);
    float acc = 0;
    for (size_t i = b; i < e; i += GM_BW_SPAN) {
        int len = (int)(e - i < GM_BW_SPAN ? e - i : GM_BW_SPAN);
        acc += j->ops->dot(j->buf + i, j->buf + i, len);
    }
    j->sink[worker % 64] = acc;
}

double gm_read_bandwidth(int n_threads, size_t bytes, int passes) {
    size_t n = bytes / sizeof(float);
    float *buf = gm_alloc_weights(n * sizeof(float));
    if (!buf) return 0;
    for (size_t i = 0; i < n; i++) buf[i] = 1.0f; /* touch every page so the probe measures reads, not faults */
    gm_pool *pool = gm_pool_new(n_threads);
    if (!pool) {
        free(buf);
        return 0;
    }
    bw_job j = {buf, n, gm_vec(), {0}};
    double best = 0;
    for (int p = 0; p < passes; p++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        gm_pool_run(pool, read_task, &j);
        clock_gettime(CLOCK_MONOTONIC, &b);
        double dt = (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
        double gbs = (double)(n * sizeof(float)) / dt / 1e9;
        if (gbs > best) best = gbs;
    }
    gm_pool_free(pool);
    free(buf);
    return best;
}
