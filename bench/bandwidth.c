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

/* Eight independent accumulators so the loop is bound by loads, not by an add chain. The result is
 * kept (and printed) so the compiler cannot drop the reads. */
static uint64_t read_sum(const uint64_t *p, size_t n) {
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    for (size_t i = 0; i < n; i += 8) {
        a0 += p[i], a1 += p[i + 1], a2 += p[i + 2], a3 += p[i + 3];
        a4 += p[i + 4], a5 += p[i + 5], a6 += p[i + 6], a7 += p[i + 7];
    }
    return a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
}

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
    size_t per = words / (size_t)nt / 8 * 8;
    for (int t = 0; t < nt; t++) {
        jobs[t] = (job){buf + (size_t)t * per, t == nt - 1 ? (words - (size_t)t * per) / 8 * 8 : per, touch, 0, &start,
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

    printf("read bandwidth, %ld MiB buffer, best and mean of %ld passes (1 GB = 1e9 B)\n", mib, passes);
    printf("| threads | best GB/s | mean GB/s |\n|---------|-----------|-----------|\n");
    for (int i = 0; i < n_threads; i++) {
        double best = 0, total = 0;
        pass(buf, words, threads[i], 0, &sum); /* warm-up */
        for (long r = 0; r < passes; r++) {
            double gbs = (double)(words / 8 * 8) * 8.0 / pass(buf, words, threads[i], 0, &sum) / 1e9;
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
