/* STREAM-style memory read bandwidth, 1..N threads: the "limit" that decode speed is measured against.
 * Each thread sums its own slice of one large buffer (default 2 GiB, far larger than any last-level
 * cache), pages first touched by the thread that reads them. Prints the best and the mean GB/s
 * (1 GB = 1e9 bytes) over several passes for each thread count.
 * Usage: bandwidth [-s MiB] [-t MAX_THREADS | -t LIST] [-r PASSES] */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    const uint64_t *p;
    size_t n; /* words, a multiple of 8 */
    int touch;
    uint64_t sum;
    pthread_barrier_t *start, *done;
} job;

/* Independent accumulators so the loop is bound by loads, not by an add chain, with the widest loads the
 * CPU has: on this project's AVX-512 VM one core reads about 30% more with 64-byte loads than with 8-byte
 * ones, and the kernels stream weights with such loads. The sums are kept (and printed) so the compiler
 * cannot drop the reads. n is a multiple of 32 words. */
typedef uint64_t u64x2 __attribute__((vector_size(16)));
static uint64_t read_sum_v16(const uint64_t *p, size_t n) {
    const u64x2 *q = (const u64x2 *)p;
    u64x2 a = {0, 0}, b = a, c = a, d = a;
    for (size_t i = 0; i < n / 2; i += 4) a += q[i], b += q[i + 1], c += q[i + 2], d += q[i + 3];
    a += b + c + d;
    return a[0] + a[1];
}
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_X86_WIDE 1
typedef uint64_t u64x4 __attribute__((vector_size(32)));
typedef uint64_t u64x8 __attribute__((vector_size(64)));
__attribute__((target("avx2"))) static uint64_t read_sum_v32(const uint64_t *p, size_t n) {
    const u64x4 *q = (const u64x4 *)p;
    u64x4 a = {0, 0, 0, 0}, b = a, c = a, d = a;
    for (size_t i = 0; i < n / 4; i += 4) a += q[i], b += q[i + 1], c += q[i + 2], d += q[i + 3];
    a += b + c + d;
    return a[0] + a[1] + a[2] + a[3];
}
__attribute__((target("avx512f"))) static uint64_t read_sum_v64(const uint64_t *p, size_t n) {
    const u64x8 *q = (const u64x8 *)p;
    u64x8 a = {0, 0, 0, 0, 0, 0, 0, 0}, b = a, c = a, d = a;
    for (size_t i = 0; i < n / 8; i += 4) a += q[i], b += q[i + 1], c += q[i + 2], d += q[i + 3];
    a += b + c + d;
    return a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
}
#endif
static uint64_t (*read_sum)(const uint64_t *, size_t) = read_sum_v16;
static const char *read_kind = "16-byte vector";

static void *worker(void *arg) {
    job *j = arg;
    if (j->touch) {
        uint64_t *w = (uint64_t *)j->p;
        for (size_t i = 0; i < j->n; i++) w[i] = i * 0x9e3779b97f4a7c15ull;
    }
    pthread_barrier_wait(j->start);
    j->sum = read_sum(j->p, j->n);
    pthread_barrier_wait(j->done);
    return NULL;
}

/* One pass with `nt` threads over the whole buffer; returns seconds from the common start to the
 * last thread's finish (the main thread joins both barriers). */
static double pass(uint64_t *buf, size_t words, int nt, int touch, uint64_t *sum) {
    pthread_barrier_t start, done;
    pthread_barrier_init(&start, NULL, (unsigned)nt + 1);
    pthread_barrier_init(&done, NULL, (unsigned)nt + 1);
    pthread_t th[256];
    job jobs[256];
    size_t per = words / (size_t)nt / 32 * 32;
    for (int t = 0; t < nt; t++) {
        jobs[t] = (job){buf + (size_t)t * per, t == nt - 1 ? (words - (size_t)t * per) / 32 * 32 : per, touch, 0, &start,
                        &done};
        if (pthread_create(&th[t], NULL, worker, &jobs[t])) {
            fprintf(stderr, "bandwidth: cannot start thread %d\n", t);
            exit(1);
        }
    }
    pthread_barrier_wait(&start);
    double t0 = now_s();
    pthread_barrier_wait(&done);
    double dt = now_s() - t0;
    for (int t = 0; t < nt; t++) {
        pthread_join(th[t], NULL);
        *sum += jobs[t].sum;
    }
    pthread_barrier_destroy(&start);
    pthread_barrier_destroy(&done);
    return dt;
}

int main(int argc, char **argv) {
    long mib = 2048, passes = 5;
    int threads[64], n_threads = 0;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 1) ncpu = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help") || !v) goto usage;
        i++;
        if (!strcmp(a, "-s")) mib = atol(v);
        else if (!strcmp(a, "-r")) passes = atol(v);
        else if (!strcmp(a, "-t")) {
            if (strchr(v, ',')) { /* an explicit list */
                for (const char *p = v; *p && n_threads < 64; p += strcspn(p, ","), p += *p == ',')
                    threads[n_threads++] = atoi(p);
            } else {
                ncpu = atol(v);
            }
        } else goto usage;
    }
    if (mib < 1 || passes < 1 || ncpu < 1 || ncpu > 256) goto usage;
    if (!n_threads)
        for (long t = 1; t <= ncpu && n_threads < 64; t++) threads[n_threads++] = (int)t;
    for (int i = 0; i < n_threads; i++)
        if (threads[i] < 1 || threads[i] > 256) goto usage;

#ifdef HAVE_X86_WIDE
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) read_sum = read_sum_v64, read_kind = "AVX-512 (64-byte)";
    else if (__builtin_cpu_supports("avx2")) read_sum = read_sum_v32, read_kind = "AVX2 (32-byte)";
#endif
    size_t bytes = (size_t)mib << 20, words = bytes / 8;
    uint64_t *buf = aligned_alloc(4096, bytes);
    if (!buf) {
        fprintf(stderr, "bandwidth: cannot allocate %ld MiB\n", mib);
        return 1;
    }
    uint64_t sum = 0;
    /* First touch split like the widest run, so pages are local to a reader on NUMA machines. */
    int widest = 1;
    for (int i = 0; i < n_threads; i++) widest = threads[i] > widest ? threads[i] : widest;
    pass(buf, words, widest, 1, &sum);

    printf("read bandwidth, %ld MiB buffer, %s loads, best and mean of %ld passes (1 GB = 1e9 B)\n", mib, read_kind,
           passes);
    printf("| threads | best GB/s | mean GB/s |\n|---------|-----------|-----------|\n");
    for (int i = 0; i < n_threads; i++) {
        double best = 0, total = 0;
        pass(buf, words, threads[i], 0, &sum); /* warm-up */
        for (long r = 0; r < passes; r++) {
            double gbs = (double)(words / 32 * 32) * 8.0 / pass(buf, words, threads[i], 0, &sum) / 1e9;
            best = gbs > best ? gbs : best;
            total += gbs;
        }
        printf("| %7d | %9.2f | %9.2f |\n", threads[i], best, total / (double)passes);
        fflush(stdout);
    }
    fprintf(stderr, "(checksum %llx)\n", (unsigned long long)sum);
    free(buf);
    return 0;
usage:
    fprintf(stderr, "usage: bandwidth [-s MiB (default 2048)] [-t MAX_THREADS | -t 1,2,4] [-r PASSES (default 5)]\n");
    return 2;
}
