/* pthread pool: a generation counter announces each run; workers spin on it for a short while (the
 * next run usually follows within microseconds) and then block on a condition variable. The caller
 * works as worker 0 and waits on a countdown of the others the same way, spin first, then sleep. */
#include "base/threads.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define GM_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define GM_CPU_RELAX() __asm__ __volatile__("yield")
#else
#define GM_CPU_RELAX() ((void)0)
#endif

/* How long a worker or the caller spins before sleeping: long enough to bridge the gap between
 * the kernels of one decode step, short enough that a pool waiting for user input goes quiet.
 * Past the first part the spin yields, so a thread sharing its CPU with the one it waits for
 * (oversubscribed pools, other processes) hands over its time slice. */
#define GM_POOL_SPIN_NS 200000L
#define GM_POOL_PAUSE_NS 2000L
#define GM_POOL_MAX_THREADS 1024

/* Pinning. Left to itself, Linux's wake-affine placement often puts a woken worker on the CPU of the
 * thread that woke it, and two spinning threads on one CPU then run at half speed for seconds
 * (measured: a 2-thread decode matvec dropping from 28 to 13 GB/s on a 2-vCPU VM). When the pool
 * uses every CPU the process may run on, pinning worker i to the i-th of them loses no flexibility,
 * so the pool does it (the first thread to call gm_pool_run is pinned to the first CPU, and its old
 * mask restored by gm_pool_free). GM_PIN=0 in the environment turns this off. */
#if defined(__linux__)
#define GM_POOL_CAN_PIN 1
#endif

typedef struct {
    struct gm_pool *pool;
    int index;
} gm_worker;

struct gm_pool {
    /* Hot fields on their own cache lines: every worker polls gen, every worker decrements pending. */
    _Alignas(64) atomic_uint gen;
    gm_task_fn fn;
    void *ctx;
    int stop;
    _Alignas(64) atomic_int pending;
    _Alignas(64) atomic_int sleepers;      /* workers blocked (or about to block) on wake */
    atomic_int caller_sleeping;            /* the caller is blocked (or about to block) on done */
    _Alignas(64) pthread_mutex_t mu;
    pthread_cond_t wake, done;
    int n, started;
    pthread_t *threads;
    gm_worker *workers;
#ifdef GM_POOL_CAN_PIN
    int pin, caller_pinned;
    int *cpus; /* cpus[i]: the CPU worker i is pinned to */
    pthread_t caller;
    cpu_set_t caller_mask;
#endif
};

static long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* One step of a spin-wait; returns 0 once the wait should turn into sleeping. The clock is read
 * only every 64 polls while pausing, to keep the loop cheap. */
typedef struct {
    unsigned i;
    int yielding;
    long t0;
} gm_spin;

static int spin_step(gm_spin *s) {
    s->i++;
    if (!s->yielding) {
        GM_CPU_RELAX();
        if (s->i & 63) return 1;
    } else {
        sched_yield();
    }
    long t = now_ns();
    if (!s->t0) s->t0 = t;
    if (t - s->t0 > GM_POOL_PAUSE_NS) s->yielding = 1;
    return t - s->t0 <= GM_POOL_SPIN_NS;
}

/* Spin until gen moves past `seen`; returns `seen` if it gave up. */
static unsigned spin_for_gen(gm_pool *p, unsigned seen) {
    gm_spin s = {0, 0, 0};
    do {
        unsigned g = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (g != seen) return g;
    } while (spin_step(&s));
    return seen;
}

static void *worker_main(void *arg) {
    gm_worker *w = arg;
    gm_pool *p = w->pool;
    unsigned seen = 0;
    for (;;) {
        unsigned g = spin_for_gen(p, seen);
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            /* seq_cst pairs with the caller's increment of gen then read of sleepers: either we see
             * the new gen below or the caller sees us counted and broadcasts under the mutex. */
            atomic_fetch_add(&p->sleepers, 1);
            while ((g = atomic_load(&p->gen)) == seen) pthread_cond_wait(&p->wake, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        seen = g;
        if (p->stop) break;
        p->fn(p->ctx, w->index, p->n);
        if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->caller_sleeping)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

/* Publish fn/ctx to the workers (they read them after their acquire of gen). */
static void start_run(gm_pool *p) {
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    atomic_fetch_add(&p->gen, 1);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
    }
}

static void wait_run(gm_pool *p) {
    gm_spin s = {0, 0, 0};
    while (atomic_load_explicit(&p->pending, memory_order_acquire) != 0)
        if (!spin_step(&s)) break;
    if (atomic_load(&p->pending) == 0) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->caller_sleeping, 1);
    while (atomic_load(&p->pending) != 0) pthread_cond_wait(&p->done, &p->mu);
    atomic_store(&p->caller_sleeping, 0);
    pthread_mutex_unlock(&p->mu);
}

static void stop_workers(gm_pool *p) {
    if (p->started == 0) return;
    p->stop = 1;
    start_run(p);
    for (int i = 0; i < p->started; i++) pthread_join(p->threads[i], NULL);
    p->started = 0;
}

#ifdef GM_POOL_CAN_PIN
/* Decide pinning: only when the process may run on exactly n_threads CPUs. */
static void plan_pinning(gm_pool *p) {
    const char *env = getenv("GM_PIN");
    if (p->n < 2 || (env && strcmp(env, "0") == 0)) return;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0 || CPU_COUNT(&set) != p->n) return;
    p->cpus = calloc((size_t)p->n, sizeof *p->cpus);
    if (!p->cpus) return;
    for (int c = 0, i = 0; c < CPU_SETSIZE && i < p->n; c++)
        if (CPU_ISSET(c, &set)) p->cpus[i++] = c;
    p->pin = 1;
}

static void pin_caller(gm_pool *p) {
    cpu_set_t set;
    p->caller_pinned = 1; /* one try only, even if refused */
    p->caller = pthread_self();
    if (pthread_getaffinity_np(p->caller, sizeof p->caller_mask, &p->caller_mask) != 0) return;
    CPU_ZERO(&set);
    CPU_SET(p->cpus[0], &set);
    if (pthread_setaffinity_np(p->caller, sizeof set, &set) != 0) p->caller_pinned = 2; /* nothing to undo */
}
#endif

gm_pool *gm_pool_new(int n_threads) {
    if (n_threads < 1 || n_threads > GM_POOL_MAX_THREADS) {
        gm_fail(GM_ERR_ARG, "thread pool: %d threads requested (1..%d)", n_threads, GM_POOL_MAX_THREADS);
        return NULL;
    }
    size_t sz = (sizeof(gm_pool) + 63) & ~(size_t)63;
    gm_pool *p = aligned_alloc(64, sz);
    if (!p) {
        gm_fail(GM_ERR_NOMEM, "thread pool: out of memory");
        return NULL;
    }
    memset(p, 0, sz);
    atomic_init(&p->gen, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->caller_sleeping, 0);
    p->n = n_threads;
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p);
        gm_fail(GM_ERR_NOMEM, "thread pool: cannot create a mutex");
        return NULL;
    }
    if (pthread_cond_init(&p->wake, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        free(p);
        gm_fail(GM_ERR_NOMEM, "thread pool: cannot create a condition variable");
        return NULL;
    }
    if (pthread_cond_init(&p->done, NULL) != 0) {
        pthread_cond_destroy(&p->wake);
        pthread_mutex_destroy(&p->mu);
        free(p);
        gm_fail(GM_ERR_NOMEM, "thread pool: cannot create a condition variable");
        return NULL;
    }
#ifdef GM_POOL_CAN_PIN
    plan_pinning(p);
#endif
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
        p->workers = calloc((size_t)n_threads - 1, sizeof *p->workers);
        if (!p->threads || !p->workers) {
            gm_pool_free(p);
            gm_fail(GM_ERR_NOMEM, "thread pool: out of memory");
            return NULL;
        }
        for (int i = 0; i < n_threads - 1; i++) {
            p->workers[i].pool = p;
            p->workers[i].index = i + 1;
            pthread_attr_t attr, *pa = NULL;
#ifdef GM_POOL_CAN_PIN
            if (p->pin && pthread_attr_init(&attr) == 0) {
                cpu_set_t set;
                CPU_ZERO(&set);
                CPU_SET(p->cpus[i + 1], &set);
                pa = &attr;
                if (pthread_attr_setaffinity_np(pa, sizeof set, &set) != 0) {
                    pthread_attr_destroy(pa);
                    pa = NULL;
                }
            }
#endif
            int rc = pthread_create(&p->threads[i], pa, worker_main, &p->workers[i]);
            if (pa) pthread_attr_destroy(pa);
            if (rc != 0) {
                gm_pool_free(p);
                gm_fail(GM_ERR_NOMEM, "thread pool: cannot start thread %d of %d (error %d)", i + 2, n_threads,
                        rc);
                return NULL;
            }
            p->started++;
        }
    }
    return p;
}

void gm_pool_free(gm_pool *p) {
    if (!p) return;
    stop_workers(p);
#ifdef GM_POOL_CAN_PIN
    if (p->caller_pinned == 1 && pthread_equal(p->caller, pthread_self()))
        pthread_setaffinity_np(p->caller, sizeof p->caller_mask, &p->caller_mask);
    free(p->cpus);
#endif
    pthread_cond_destroy(&p->done);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mu);
    free(p->threads);
    free(p->workers);
    free(p);
}

int gm_pool_size(const gm_pool *p) { return p ? p->n : 1; }

void gm_pool_run(gm_pool *p, gm_task_fn fn, void *ctx) {
    if (!p || p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
#ifdef GM_POOL_CAN_PIN
    if (p->pin && !p->caller_pinned) pin_caller(p);
#endif
    p->fn = fn;
    p->ctx = ctx;
    start_run(p);
    fn(ctx, 0, p->n);
    wait_run(p);
}

void gm_pool_chunk(size_t total, size_t align, int worker, int n_workers, size_t *begin, size_t *end) {
    if (align == 0) align = 1;
    if (n_workers < 1) n_workers = 1;
    if (worker < 0 || worker >= n_workers) {
        *begin = *end = total;
        return;
    }
    size_t units = total / align + (total % align != 0);
    size_t n = (size_t)n_workers, w = (size_t)worker;
    size_t per = units / n, extra = units % n;
    size_t ub = w * per + (w < extra ? w : extra);
    size_t ue = ub + per + (w < extra);
    size_t b = ub * align, e = ue * align;
    *begin = b < total ? b : total;
    *end = e < total ? e : total;
}
