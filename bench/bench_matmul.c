/* Matmul microbenchmark: decode (T = 1) in GB/s of weights streamed and prefill (T = 128) in GFLOP/s,
 * for every kernel family this CPU runs, each dtype, 1 and 2 threads. Decode rotates through several
 * weight copies so the numbers are DRAM, not cache, bandwidth.
 * Usage: bench_matmul [in out] (default 2048 16384, the Gemma-2B MLP shape). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/threads.h"
#include "tensor/matmul.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define N_COPIES 4 /* 4 x 64 MiB of bf16 weights: larger than any last-level cache of a 2-core VM */

int main(int argc, char **argv) {
    int in = 2048, out = 16384, T = 128;
    if (argc == 3) {
        in = atoi(argv[1]);
        out = atoi(argv[2]);
    }
    if (in <= 0 || out <= 0) {
        fprintf(stderr, "usage: bench_matmul [in out]\n");
        return 2;
    }
    size_t nw = (size_t)in * out;
    float *x = malloc((size_t)T * in * sizeof *x), *y = malloc((size_t)T * out * sizeof *y);
    float *wf = malloc(nw * sizeof *wf);
    void *w[N_COPIES];
    if (!x || !y || !wf) return 1;
    uint32_t s = 1;
    for (size_t i = 0; i < (size_t)T * in; i++) x[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
    for (size_t i = 0; i < nw; i++) wf[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
    static const char *const isas[] = {"scalar", "avx2", "avx512", "neon"};
    gm_pool *pools[2] = {NULL, gm_pool_new(2)};
    printf("shape in=%d out=%d; decode T=1 (GB/s of W), prefill T=%d (GFLOP/s)\n", in, out, T);
    printf("%-7s %-5s %8s %8s %9s %9s\n", "isa", "dtype", "dec 1t", "dec 2t", "pre 1t", "pre 2t");
    for (int d = 0; d < GM_DT_COUNT; d++) {
        const gm_dtype_traits *tr = gm_dtype_info((gm_dtype)d);
        for (int c = 0; c < N_COPIES; c++) {
            w[c] = malloc(nw * tr->block_bytes);
            if (!w[c]) return 1;
            tr->from_f32(wf, w[c], nw);
        }
        for (size_t k = 0; k < sizeof isas / sizeof *isas; k++) {
            if (!gm_matmul_set_isa(isas[k])) continue;
            double dec[2] = {0, 0}, pre[2] = {0, 0};
            /* Best of three short windows: this VM's shared memory bus and vCPUs make single runs noisy. */
            for (int rep = 0; rep < 3; rep++)
                for (int p = 0; p < 2; p++) {
                    int reps = 0;
                    double t0 = now_s(), t1;
                    do {
                        gm_matmul(y, x, w[reps % N_COPIES], (gm_dtype)d, 1, in, out, pools[p]);
                        reps++;
                    } while ((t1 = now_s()) - t0 < 0.25 || reps < N_COPIES);
                    double gbs = (double)reps * (double)nw * (double)tr->block_bytes / (t1 - t0) / 1e9;
                    dec[p] = gbs > dec[p] ? gbs : dec[p];
                    /* The scalar family would take minutes at full size: time it on 1/8 of the rows. */
                    int o_pre = k == 0 ? out / 8 : out;
                    reps = 0;
                    t0 = now_s();
                    do {
                        gm_matmul(y, x, w[0], (gm_dtype)d, T, in, o_pre, pools[p]);
                        reps++;
                    } while ((t1 = now_s()) - t0 < 0.25);
                    double gf = (double)reps * 2.0 * T * in * o_pre / (t1 - t0) / 1e9;
                    pre[p] = gf > pre[p] ? gf : pre[p];
                }
            printf("%-7s %-5s %8.1f %8.1f %9.1f %9.1f\n", isas[k], tr->name, dec[0], dec[1], pre[0], pre[1]);
            fflush(stdout);
        }
        for (int c = 0; c < N_COPIES; c++) free(w[c]);
    }
    gm_pool_free(pools[1]);
    free(x), free(y), free(wf);
    return 0;
}
