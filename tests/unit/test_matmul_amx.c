/* The AMX matmul family (tensor/matmul_amx.c): prefill of bf16 W (x split into three bf16 parts, so
 * exact products) and of block-quantized W (x and W rounded to bf16). Checked against a double-precision
 * product of exactly the operands the tiles see, which pins the tile layouts, the transposes, the splits
 * and the tails; the accuracy cost against the f32 product is measured and bounded; 1, 2 and 3 threads
 * and any split of the ranges give the same bits. Exits 77 (ctest: skipped, not passed) on a machine
 * without AMX-BF16. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/threads.h"
#include "tensor/matmul.h"
#include "tensor/quant.h"
#include "testlib.h"

#ifdef GM_HAVE_X86
static uint64_t g_rng = 0x243f6a8885a308d3ull;
static float frand(void) { /* uniform in [-1, 1) */
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 40) / (double)(1ull << 23) - 1.0);
}

/* Round to bf16, nearest even (what VCVTNE2PS2BF16 does for finite values). */
static float bf16_round(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}

static gm_pool *g_pool2, *g_pool3;
static double g_e2[5], g_f2[5], g_worst[5];

static void check_case(int k, gm_dtype dt, int T, int in, int out) {
    const gm_dtype_traits *tr = gm_dtype_info(dt);
    const int split = gm_amx_splits(dt) > 1;
    size_t nx = (size_t)T * in, nw = (size_t)out * in, ny = (size_t)T * out, rb = 0;
    CHECK(gm_dtype_row_bytes(dt, (size_t)in, &rb));
    float *x = malloc(nx * sizeof *x), *wf = malloc(nw * sizeof *wf), *y1 = malloc(ny * sizeof *y1);
    float *y2 = malloc(ny * sizeof *y2);
    double *yb = malloc(ny * sizeof *yb), *yf = malloc(ny * sizeof *yf), *sc = malloc(ny * sizeof *sc);
    unsigned char *w = malloc(rb * (size_t)out);
    for (size_t i = 0; i < nx; i++) x[i] = frand();
    for (size_t i = 0; i < nw; i++) wf[i] = frand();
    for (int o = 0; o < out; o++) tr->from_f32(wf + (size_t)o * in, w + (size_t)o * rb, (size_t)in);
    for (int o = 0; o < out; o++) tr->to_f32(w + (size_t)o * rb, wf + (size_t)o * in, (size_t)in); /* W as stored */
    double scale = 0;
    for (int t = 0; t < T; t++)
        for (int o = 0; o < out; o++) {
            double sb = 0, sf = 0, s2 = 0;
            for (int i = 0; i < in; i++) {
                const float xv = x[(size_t)t * in + i], wv = wf[(size_t)o * in + i];
                /* bf16 W: x split into parts that sum to it exactly; quantized W: both rounded to bf16 */
                sb += split ? (double)xv * wv : (double)bf16_round(xv) * bf16_round(wv);
                sf += (double)xv * wv;
                s2 += (double)xv * wv * (double)xv * wv;
            }
            yb[(size_t)t * out + o] = sb;
            yf[(size_t)t * out + o] = sf;
            sc[(size_t)t * out + o] = sqrt(s2);
            scale = sqrt(s2) > scale ? sqrt(s2) : scale;
            scale = fabs(sf) > scale ? fabs(sf) : scale;
        }
    CHECK(gm_matmul_set_isa("amx"));
    for (size_t i = 0; i < ny; i++) y1[i] = y2[i] = -12345.0f; /* every output must be written */
    gm_matmul(y1, x, w, dt, T, in, out, NULL);
    double eb = 0, e2 = 0, f2 = 0;
    for (size_t i = 0; i < ny; i++) {
        double d = fabs((double)y1[i] - yb[i]);
        eb = d > eb || d != d ? d : eb;
        double df = (double)y1[i] - yf[i];
        e2 += df * df;
        f2 += yf[i] * yf[i];
    }
    CHECKF(eb <= 1e-5 * scale, "%s T=%d in=%d out=%d: tiles vs exact product of the operands they see: %g of the scale",
           tr->name, T, in, out, eb / scale);
    const double rms = f2 > 0 ? sqrt(e2 / f2) : 0;
    g_e2[k] += e2;
    g_f2[k] += f2;
    if (ny >= 64) {
        g_worst[k] = rms > g_worst[k] ? rms : g_worst[k];
        CHECKF(rms <= (split ? 1e-5 : 0.01), "%s T=%d in=%d out=%d: bf16 rounding costs %.4f relative RMS", tr->name, T,
               in, out, rms);
    }
    gm_matmul(y2, x, w, dt, T, in, out, g_pool2);
    CHECKF(memcmp(y1, y2, ny * sizeof *y1) == 0, "%s T=%d in=%d out=%d: 1 vs 2 threads differ", tr->name, T, in, out);
    gm_matmul(y2, x, w, dt, T, in, out, g_pool3);
    CHECKF(memcmp(y1, y2, ny * sizeof *y1) == 0, "%s T=%d in=%d out=%d: 1 vs 3 threads differ", tr->name, T, in, out);

    /* Ranges that cut through tiles: rows of x at odd places, outputs at a multiple of 16 that is not
     * one of 32, each range on its own gives the bits of the whole. */
    uint16_t *xb = NULL;
    const int ns = gm_amx_splits(dt);
    CHECK(posix_memalign((void **)&xb, 64, gm_amx_xb_bytes(T, in, ns)) == 0);
    gm_amx_pack_x(x, T, in, ns, xb, 0, (T + 15) / 16);
    gm_mm_args a = {y2, x, w, dt, T, in, out, NULL, 0, xb, ns};
    for (size_t i = 0; i < ny; i++) y2[i] = -12345.0f;
    const int tc = T / 3 + 1, oc = out > 16 ? 16 : out;
    gm_matmul_range_amx(&a, 0, tc, 0, oc);
    gm_matmul_range_amx(&a, tc, T, 0, oc);
    if (oc < out) gm_matmul_range_amx(&a, 0, T, oc, out);
    CHECKF(memcmp(y1, y2, ny * sizeof *y1) == 0, "%s T=%d in=%d out=%d: split ranges differ", tr->name, T, in, out);
    free(xb);
    free(x), free(wf), free(y1), free(y2), free(yb), free(yf), free(sc), free(w);
}
#endif

int main(void) {
#ifndef GM_HAVE_X86
    printf("not an x86 build: no AMX family\n");
    return 77;
#else
    if (!gm_matmul_set_isa("amx")) {
        printf("this CPU (or OS) has no AMX-BF16: the amx family cannot run here\n");
        return 77;
    }
    g_pool2 = gm_pool_new(2);
    g_pool3 = gm_pool_new(3);
    CHECK(g_pool2 && g_pool3);

    /* Naming: "avx512" turns the tiles off, "amx" on, "auto" picks them here unless GM_AMX=0. */
    CHECK(gm_matmul_set_isa("avx512"));
    CHECK(strcmp(gm_matmul_isa(), "avx512") == 0);
    CHECK(gm_matmul_set_isa("auto"));
    CHECK(strcmp(gm_matmul_isa(), "amx") == 0);
    setenv("GM_AMX", "0", 1);
    CHECK(strcmp(gm_matmul_isa(), "avx512") == 0);
    unsetenv("GM_AMX");

    static const gm_dtype types[5] = {GM_DT_BF16, GM_DT_Q8_0, GM_DT_Q4_0, GM_DT_Q4_K, GM_DT_Q6_K};
    static const int Ts[] = {16, 17, 31, 33, 64, 77};
    static const int outs[] = {1, 5, 16, 31, 33, 64, 100};
    for (int k = 0; k < 5; k++) {
        const int blk = (int)gm_dtype_info(types[k])->block_elems;
        const int ins[] = {blk < 32 ? 32 : blk, 3 * (blk < 32 ? 32 : blk), 2048 + (blk < 32 ? 64 : blk)};
        for (size_t a = 0; a < 3; a++)
            for (size_t b = 0; b < sizeof outs / sizeof *outs; b++)
                for (size_t c = 0; c < sizeof Ts / sizeof *Ts; c++) {
                    if (ins[a] > 1000 && Ts[c] > 17 && outs[b] > 33) continue; /* keep the double reference quick */
                    check_case(k, types[k], Ts[c], ins[a], outs[b]);
                }
        /* several passes over the values and over the rows of x, rows split over threads */
        check_case(k, types[k], 300, 4096 + 256, 40);
        check_case(k, types[k], 40, 512, 300);
    }
    for (int k = 0; k < 5; k++) {
        const double overall = sqrt(g_e2[k] / g_f2[k]);
        const int split = gm_amx_splits(types[k]) > 1;
        printf("%s: %s: %.2g relative RMS error overall against the f32 product, worst case %.2g\n",
               gm_dtype_info(types[k])->name, split ? "x in 3 bf16 parts" : "x and W rounded to bf16", overall,
               g_worst[k]);
        CHECKF(overall <= (split ? 1e-6 : 0.005), "%s: %.2g relative RMS", gm_dtype_info(types[k])->name, overall);
    }
    CHECK(gm_matmul_set_isa("auto"));
    gm_pool_free(g_pool2);
    gm_pool_free(g_pool3);
    TEST_DONE();
#endif
}
