/* Matmul kernels: every kernel family this CPU runs against the scalar reference (and the scalar one
 * against a double-precision sum) for every plain float dtype over odd sizes, and 1 vs 2 vs 3 threads
 * bitwise. The block-quantized dtypes (whole blocks only, 8-bit activations) are in test_quant.c. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/threads.h"
#include "tensor/cpu.h"
#include "tensor/matmul.h"
#include "testlib.h"

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform in [-1, 1) */
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 40) / (double)(1ull << 23) - 1.0);
}

/* W as stored in dtype dt plus its exact f32 values. */
static void *make_w(gm_dtype dt, size_t n, float *wf) {
    const gm_dtype_traits *tr = gm_dtype_info(dt);
    void *w = malloc(n * tr->block_bytes);
    for (size_t i = 0; i < n; i++) wf[i] = frand();
    tr->from_f32(wf, w, n);
    tr->to_f32(w, wf, n);
    return w;
}

static double max_abs(const float *v, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fabs(v[i]) > m ? fabs(v[i]) : m;
    return m;
}

/* Largest |a - b| relative to the output scale; NaN if either has a NaN. The scale is max|y|, or the
 * largest sqrt(sum (x_i w_i)^2) when that is bigger: with one or two outputs max|y| can be a chance
 * cancellation far below the size of the terms, which is what rounding error scales with. */
static double rel_err(const float *a, const float *b, double scale, size_t n) {
    double e = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d != d) return NAN;
        e = d > e ? d : e;
    }
    return scale > 0 ? e / scale : e;
}

/* "amx" (where the CPU has it) is avx512 plus tiles for prefill of bf16 W, held to the same bound here;
 * its quantized path rounds x to bf16 and is tested in test_matmul_amx.c. */
static const char *const g_isas[] = {"scalar", "avx2", "avx512", "amx", "neon"};
static gm_pool *g_pool2, *g_pool3;

static void check_case(gm_dtype dt, int T, int in, int out) {
    size_t nx = (size_t)T * in, nw = (size_t)out * in, ny = (size_t)T * out;
    float *x = malloc(nx * sizeof *x), *wf = malloc(nw * sizeof *wf);
    float *ys = malloc(ny * sizeof *ys), *y1 = malloc(ny * sizeof *y1), *y2 = malloc(ny * sizeof *y2);
    float *yd = malloc(ny * sizeof *yd);
    for (size_t i = 0; i < nx; i++) x[i] = frand();
    void *w = make_w(dt, nw, wf);
    double scale = 0;
    for (int t = 0; t < T; t++)
        for (int o = 0; o < out; o++) {
            double s = 0, s2 = 0;
            for (int i = 0; i < in; i++) {
                double p = (double)x[(size_t)t * in + i] * wf[(size_t)o * in + i];
                s += p;
                s2 += p * p;
            }
            yd[(size_t)t * out + o] = (float)s;
            scale = sqrt(s2) > scale ? sqrt(s2) : scale;
        }
    scale = max_abs(yd, ny) > scale ? max_abs(yd, ny) : scale;
    CHECK(gm_matmul_set_isa("scalar"));
    gm_matmul(ys, x, w, dt, T, in, out, NULL);
    double e = rel_err(ys, yd, scale, ny);
    CHECKF(e <= 1e-5, "scalar vs double: dtype %s T=%d in=%d out=%d: rel err %g", gm_dtype_info(dt)->name, T, in,
           out, e);
    for (size_t k = 1; k < sizeof g_isas / sizeof *g_isas; k++) {
        if (!gm_matmul_set_isa(g_isas[k])) continue;
        for (size_t i = 0; i < ny; i++) y1[i] = y2[i] = -12345.0f; /* every output must be written */
        gm_matmul(y1, x, w, dt, T, in, out, NULL);
        e = rel_err(y1, ys, scale, ny);
        CHECKF(e <= 1e-5, "%s vs scalar: dtype %s T=%d in=%d out=%d: rel err %g", g_isas[k],
               gm_dtype_info(dt)->name, T, in, out, e);
        gm_matmul(y2, x, w, dt, T, in, out, g_pool2);
        CHECKF(memcmp(y1, y2, ny * sizeof *y1) == 0, "%s: 1 vs 2 threads differ: dtype %s T=%d in=%d out=%d",
               g_isas[k], gm_dtype_info(dt)->name, T, in, out);
        gm_matmul(y2, x, w, dt, T, in, out, g_pool3);
        CHECKF(memcmp(y1, y2, ny * sizeof *y1) == 0, "%s: 1 vs 3 threads differ: dtype %s T=%d in=%d out=%d",
               g_isas[k], gm_dtype_info(dt)->name, T, in, out);
    }
    CHECK(gm_matmul_set_isa("scalar"));
    gm_matmul(y2, x, w, dt, T, in, out, g_pool2);
    CHECKF(memcmp(ys, y2, ny * sizeof *ys) == 0, "scalar: 1 vs 2 threads differ: T=%d in=%d out=%d", T, in, out);
    free(x), free(wf), free(w), free(ys), free(y1), free(y2), free(yd);
}

int main(void) {
    /* GM_CPU is read once, at the first dispatch: ask for the scalar family and see it honoured. */
    setenv("GM_CPU", "scalar", 1);
    CHECK(gm_cpu_isa() == GM_ISA_SCALAR);
    CHECK(strcmp(gm_matmul_isa(), "scalar") == 0);
    CHECK(!gm_matmul_set_isa("bogus"));
    CHECK(!gm_matmul_set_isa(NULL));
    CHECK(gm_matmul_set_isa("auto"));
    CHECK(strcmp(gm_matmul_isa(), "scalar") == 0);
    gm_isa isa;
    CHECK(gm_cpu_isa_from_name("avx512", &isa) && isa == GM_ISA_AVX512);
    CHECK(!gm_cpu_isa_from_name("sse", &isa));
    printf("kernel families here:");
    for (size_t k = 0; k < sizeof g_isas / sizeof *g_isas; k++)
        if (gm_matmul_set_isa(g_isas[k])) printf(" %s", g_isas[k]);
    printf("\n");
#if defined(__x86_64__)
    CHECK(!gm_matmul_set_isa("neon"));
#endif

    g_pool2 = gm_pool_new(2);
    g_pool3 = gm_pool_new(3);
    CHECK(g_pool2 && g_pool3);
    static const int ins[] = {1, 7, 33, 257, 2048 + 3}, outs[] = {1, 5, 64, 300}, Ts[] = {1, 2, 3, 17, 64, 5, 9};
    for (int d = 0; d <= GM_DT_BF16; d++)
        for (size_t a = 0; a < sizeof ins / sizeof *ins; a++)
            for (size_t b = 0; b < sizeof outs / sizeof *outs; b++)
                for (size_t c = 0; c < sizeof Ts / sizeof *Ts; c++) check_case((gm_dtype)d, Ts[c], ins[a], outs[b]);
    /* Past the tile blocking: several k blocks, several row blocks, rows of x split over threads, and
     * T on either side of the row-dot / packed-tile switch. */
    for (int d = 0; d <= GM_DT_BF16; d++) {
        check_case((gm_dtype)d, 400, 300, 70);
        check_case((gm_dtype)d, 100, 520, 5);
        check_case((gm_dtype)d, GM_MM_GEMV_MAX_T, 1000, 129);
        check_case((gm_dtype)d, GM_MM_GEMV_MAX_T + 1, 1000, 129);
        check_case((gm_dtype)d, 40, 2048 + 64, 33); /* whole blocks of 32: the AMX tiles, several passes */
    }

    /* Degenerate shapes: nothing written for T or out = 0; zeros for in = 0. */
    float y[4] = {1, 2, 3, 4}, x[2] = {1, 1};
    uint16_t w16[2] = {0x3f80, 0x3f80};
    gm_matmul(y, x, w16, GM_DT_BF16, 0, 2, 1, g_pool2);
    CHECK(y[0] == 1);
    gm_matmul(y, x, w16, GM_DT_BF16, 2, 0, 2, g_pool2);
    CHECK(y[0] == 0 && y[3] == 0);
    /* A dtype no kernel knows is made visible as NaN, not a crash. */
    gm_matmul(y, x, w16, GM_DT_COUNT, 1, 2, 1, NULL);
    CHECK(isnan(y[0]));

    gm_pool_free(g_pool2);
    gm_pool_free(g_pool3);
    TEST_DONE();
}
