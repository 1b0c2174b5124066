/* Matmul microbenchmark: decode (T = 1) in GB/s of weights streamed and prefill (T = 128) in GFLOP/s,
 * for every kernel family this CPU runs, each dtype (plain and block-quantized), 1 and 2 threads.
 * Decode rotates through several weight copies so the numbers are DRAM, not cache, bandwidth. For the
 * quantized types a last column shows the other prefill plan, for comparison: all of W dequantized to
 * f32 by the (scalar) traits row, then the f32 kernel, in GFLOP/s of the sum, 1 thread. That is a lower
 * bound of the plan (a tiled version would convert with SIMD inside the packing); the f32 kernel alone
 * (the F32 rows) is its upper bound.
 * Usage: bench_matmul [in out [dtype]] (default 2048 16384, the Gemma-2B MLP shape; all dtypes). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/file.h"
#include "base/threads.h"
#include "tensor/matmul.h"
#include "tensor/quant.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Decode cycles through copies of W adding up to at least 512 MiB (at least 4): more than any last-level
 * cache a 2-core VM gets, also for the small quantized types (Q4_0 at the default shape is 18 MiB). */
#define MIN_COPIES 4
#define MAX_COPIES 64
#define COPY_BYTES (512u << 20)

int main(int argc, char **argv) {
    int in = 2048, out = 16384, T = 128;
    const char *only = NULL;
    if (argc >= 3) {
        in = atoi(argv[1]);
        out = atoi(argv[2]);
    }
    if (argc >= 4) only = argv[3];
    if (in <= 0 || out <= 0 || in % 256 != 0 || argc == 2 || argc > 4) {
        fprintf(stderr, "usage: bench_matmul [in out [dtype]] (in a multiple of 256)\n");
        return 2;
    }
    size_t nw = (size_t)in * out;
    float *x = malloc((size_t)T * in * sizeof *x), *y = malloc((size_t)T * out * sizeof *y);
    float *wf = malloc(nw * sizeof *wf);
    void *w[MAX_COPIES];
    if (!x || !y || !wf) return 1;
    uint32_t s = 1;
    for (size_t i = 0; i < (size_t)T * in; i++) x[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
    for (size_t i = 0; i < nw; i++) wf[i] = (float)((s = s * 1664525u + 1013904223u) >> 8) / 16777216.0f - 0.5f;
    static const char *const isas[] = {"scalar", "avx2", "avx512", "amx", "neon"};
    gm_pool *pools[2] = {NULL, gm_pool_new(2)};
    printf("shape in=%d out=%d; decode T=1 (GB/s of W), prefill T=%d (GFLOP/s)\n", in, out, T);
    printf("%-7s %-5s %8s %8s %9s %9s %9s\n", "isa", "dtype", "dec 1t", "dec 2t", "pre 1t", "pre 2t", "deq+f32");
    float *wdq = malloc(nw * sizeof *wdq);
    if (!wdq) return 1;
    for (int d = 0; d < GM_DT_COUNT; d++) {
        const gm_dtype_traits *tr = gm_dtype_info((gm_dtype)d);
        if (only && strcmp(only, tr->name) != 0) continue;
        size_t wbytes = 0;
        if (!gm_dtype_row_bytes((gm_dtype)d, nw, &wbytes)) return 1;
        int n_copies = (int)((COPY_BYTES + wbytes - 1) / wbytes);
        n_copies = n_copies < MIN_COPIES ? MIN_COPIES : n_copies > MAX_COPIES ? MAX_COPIES : n_copies;
        for (int c = 0; c < n_copies; c++) {
            w[c] = gm_alloc_weights(wbytes); /* as the model holds weights: 2 MiB-aligned, huge pages */
            if (!w[c]) return 1;
            if (c == 0) tr->from_f32(wf, w[c], nw);
            else memcpy(w[c], w[0], wbytes);
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
                        gm_matmul(y, x, w[reps % n_copies], (gm_dtype)d, 1, in, out, pools[p]);
                        reps++;
                    } while ((t1 = now_s()) - t0 < 0.25 || reps < n_copies);
                    double gbs = (double)reps * (double)wbytes / (t1 - t0) / 1e9;
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
            /* The dequantize-then-f32 plan (1 thread): convert all of W, then the f32 kernel. */
            double alt = 0;
            if (gm_dtype_is_quant((gm_dtype)d) && k != 0) {
                for (int rep = 0; rep < 3; rep++) {
                    double t0 = now_s();
                    tr->to_f32(w[0], wdq, nw);
                    double t1 = now_s();
                    gm_matmul(y, x, wdq, GM_DT_F32, T, in, out, NULL);
                    double t2 = now_s(), gf = 2.0 * T * in * out / (t2 - t0) / 1e9;
                    alt = gf > alt ? gf : alt;
                    (void)t1;
                }
            }
            printf("%-7s %-5s %8.1f %8.1f %9.1f %9.1f", isas[k], tr->name, dec[0], dec[1], pre[0], pre[1]);
            if (alt > 0) printf(" %9.1f", alt);
            printf("\n");
            fflush(stdout);
        }
        for (int c = 0; c < n_copies; c++) free(w[c]);
    }
    gm_pool_free(pools[1]);
    free(x), free(y), free(wf), free(wdq);
    return 0;
}
