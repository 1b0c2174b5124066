/* The thread pool every kernel shares: gm_pool_run hands one task to each worker and returns when all
 * are done. Workers spin briefly between runs (a decode step issues hundreds of runs back to back),
 * then sleep on a condition variable so an idle pool costs no CPU. */
#ifndef GM_BASE_THREADS_H
#define GM_BASE_THREADS_H

#include <stddef.h>

typedef struct gm_pool gm_pool;

/* n_threads >= 1 workers; the calling thread is worker 0, so gm_pool_new(1) starts no thread.
 * Returns NULL (message in gm_last_error()) on a bad count or when threads cannot be started.
 * On Linux, when n_threads equals the number of CPUs the process may use, each worker is pinned to
 * one of them and so is the first thread that calls gm_pool_run (until gm_pool_free restores its
 * mask): otherwise the scheduler often stacks two spinning threads on one CPU. GM_PIN=0 turns it off. */
gm_pool *gm_pool_new(int n_threads);
void gm_pool_free(gm_pool *p);
/* Workers in the pool; 1 for a NULL pool. */
int gm_pool_size(const gm_pool *p);

typedef void (*gm_task_fn)(void *ctx, int worker, int n_workers);
/* Runs fn(ctx, i, n) for every worker i in 0..n-1 (i = 0 on the calling thread) and returns when all
 * have returned. A NULL pool runs fn(ctx, 0, 1) inline. Runs on one pool must not overlap or nest:
 * call it from one thread at a time, never from inside a task. */
void gm_pool_run(gm_pool *p, gm_task_fn fn, void *ctx);

/* Split [0, total) into n_workers near-equal chunks whose boundaries are multiples of `align`
 * (except the end, total); worker's chunk is [*begin, *end), possibly empty. */
void gm_pool_chunk(size_t total, size_t align, int worker, int n_workers, size_t *begin, size_t *end);

#endif
