/* Attention vector primitives: every SIMD family this CPU runs agrees with the scalar version on odd
 * lengths (tails), within 1e-6 of the magnitude of the terms for dot and exactly-rounded FMA for axpy.
 * GeGLU: every SIMD family within 4e-7 relative (1e-37 absolute for tiny results) of the exact function
 * over a dense sweep of [-20, 20] and special values, close to the scalar formula everywhere (as close as
 * that formula's own cancellation for negative x allows), bitwise the same as the other SIMD families and
 * independent of how the array is split. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/dtype.h"
#include "tensor/vec.h"
#include "testlib.h"

static float frand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)(*s >> 8) / 16777216.0f * 2.0f - 1.0f;
}

/* gelu_tanh in double with the float constants the kernels use: the function they all approximate. */
static double gelu_exact(float xf) {
    double x = xf, k = (double)0.7978845608028654f, c = (double)0.044715f;
    return x / (1 + exp(-2 * k * x * (1 + c * x * x)));
}

static int same_bits(float a, float b) { return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0; }

static void test_geglu(const char *const *isas, size_t n_isas) {
    const gm_vec_ops *ref = gm_vec_for("scalar");
    /* the sweep: every multiple of 2^-16 in [-20, 20], then the special values */
    const float special[] = {1e-30f, -1e-30f, 0.0f, -0.0f, 1e4f, -1e4f, INFINITY, -INFINITY, NAN, 1e30f, -1e30f};
    const size_t n_sweep = 40 * 65536 + 1, n_sp = sizeof special / sizeof special[0], n = n_sweep + n_sp;
    float *x = malloc(n * sizeof *x), *one = malloc(n * sizeof *one), *want = malloc(n * sizeof *want);
    float *got = malloc(n * sizeof *got), *first = malloc(n * sizeof *first);
    CHECK(x && one && want && got && first);
    if (!x || !one || !want || !got || !first) return;
    for (size_t i = 0; i < n_sweep; i++) x[i] = -20.0f + (float)i * 0x1p-16f;
    memcpy(x + n_sweep, special, sizeof special);
    for (size_t i = 0; i < n; i++) one[i] = 1.0f;
    memcpy(want, x, n * sizeof *x);
    ref->geglu(want, one, n);
    const char *first_isa = NULL;
    for (size_t k = 1; k < n_isas; k++) {
        const gm_vec_ops *v = gm_vec_for(isas[k]);
        if (!v) continue;
        memcpy(got, x, n * sizeof *x);
        v->geglu(got, one, n);
        /* against the exact function: a few ulp everywhere */
        double worst_ex = 0, worst_tiny = 0, worst_ref = 0;
        float at_ex = 0, at_ref = 0;
        size_t bad_ex = 0, bad_ref = 0, bad_sp = 0;
        for (size_t i = 0; i < n; i++) {
            double ex = gelu_exact(x[i]), err = fabs(got[i] - ex);
            if (i >= n_sweep) { /* inf, NaN, ±0, huge: exactly what the scalar formula gives */
                bad_sp += !same_bits(got[i], want[i]);
                continue;
            }
            if (fabs(ex) >= 1e-36 && err / fabs(ex) > worst_ex) worst_ex = err / fabs(ex), at_ex = x[i];
            if (fabs(ex) < 1e-36 && err > worst_tiny) worst_tiny = err;
            bad_ex += !(err <= 4e-7 * fabs(ex) + 1e-37);
            /* against the scalar formula: 1 + tanh(u) costs it up to 2^-23 of |x/2| (it is -0 below about -5) */
            double d = fabs((double)got[i] - want[i]);
            if (x[i] != 0 && d / fabs(x[i]) > worst_ref) worst_ref = d / fabs(x[i]), at_ref = x[i];
            bad_ref += !(d <= 0x1p-22 * fabs(x[i]) + 1e-37);
        }
        CHECKF(bad_ex == 0, "%s geglu: %zu of %zu sweep values beyond 4e-7 of the exact function", isas[k], bad_ex,
               n_sweep);
        CHECKF(bad_ref == 0, "%s geglu: %zu sweep values beyond 2^-22·|x| of the scalar formula", isas[k], bad_ref);
        CHECKF(bad_sp == 0, "%s geglu: %zu special values differ from the scalar formula", isas[k], bad_sp);
        printf("%s geglu: worst error vs exact %.3g relative (x = %.7g), %.3g absolute where |result| < 1e-36; "
               "vs the scalar formula %.3g·|x| (x = %.7g)\n",
               isas[k], worst_ex, (double)at_ex, worst_tiny, worst_ref, (double)at_ref);
        /* the SIMD families run the same operations: bitwise the same results */
        if (!first_isa) {
            first_isa = isas[k];
            memcpy(first, got, n * sizeof *got);
        } else {
            size_t differ = 0;
            for (size_t i = 0; i < n; i++) differ += !same_bits(got[i], first[i]);
            CHECKF(differ == 0, "%s geglu differs from %s in %zu values", isas[k], first_isa, differ);
        }
    }
    free(x), free(one), free(want), free(got), free(first);

    /* tails: every length 0..67 and 1003, random gate and up, no write past n; splitting at a multiple of 16
     * (as the thread pool does) gives the same bits */
    enum { N = 1003 };
    float g[N + 1], u[N], r[N + 1], s[N + 1], t[N + 1];
    unsigned seed = 11;
    for (int i = 0; i < N; i++) g[i] = 6.0f * frand(&seed), u[i] = 2.0f * frand(&seed);
    for (size_t k = 0; k < n_isas; k++) {
        const gm_vec_ops *v = gm_vec_for(isas[k]);
        if (!v) continue;
        for (int l = 0; l <= 68; l++) {
            int len = l < 68 ? l : N;
            memcpy(r, g, sizeof g), memcpy(s, g, sizeof g);
            r[len] = s[len] = 12345.0f;
            ref->geglu(r, u, (size_t)len);
            v->geglu(s, u, (size_t)len);
            int ok = s[len] == 12345.0f;
            for (int i = 0; i < len; i++) ok &= fabs((double)s[i] - r[i]) <= 0x1p-22 * fabs(g[i] * u[i]) + 1e-37;
            CHECKF(ok, "%s geglu n=%d against the scalar formula", isas[k], len);
        }
        memcpy(s, g, sizeof g);
        v->geglu(s, u, N);
        for (int split = 16; split < N; split += 16 * 31) {
            memcpy(t, g, sizeof g);
            v->geglu(t, u, (size_t)split);
            v->geglu(t + split, u + split, (size_t)(N - split));
            CHECKF(memcmp(s, t, sizeof(float) * N) == 0, "%s geglu split at %d changes bits", isas[k], split);
        }
    }
}

int main(void) {
    const char *isas[] = {"scalar", "avx2", "avx512", "neon"};
    const gm_vec_ops *ref = gm_vec_for("scalar");
    CHECK(ref != NULL && gm_vec() != NULL);
    unsigned seed = 7;
    float a[600], b[600], y0[600], y1[600];
    for (int i = 0; i < 600; i++) a[i] = frand(&seed), b[i] = frand(&seed), y0[i] = frand(&seed);
    int tested = 0;
    for (size_t k = 0; k < sizeof isas / sizeof isas[0]; k++) {
        const gm_vec_ops *v = gm_vec_for(isas[k]);
        if (!v) continue;
        tested++;
        for (int n = 0; n <= 600; n += (n < 40 ? 1 : 37)) {
            double exact = 0, mag = 0;
            for (int i = 0; i < n; i++) exact += (double)a[i] * b[i], mag += fabs((double)a[i] * b[i]);
            float d = v->dot(a, b, n);
            CHECKF(fabs(d - exact) <= 1e-6 * mag + 1e-30, "%s dot n=%d: %g vs %g", isas[k], n, d, exact);
            memcpy(y1, y0, sizeof y1);
            v->axpy(y1, 0.37f, a, n);
            int ok = 1;
            for (int i = 0; i < 600; i++) {
                float want = i < n ? fmaf(0.37f, a[i], y0[i]) : y0[i];
                float plain = i < n ? y0[i] + 0.37f * a[i] : y0[i]; /* scalar code may not fuse */
                ok &= y1[i] == want || y1[i] == plain;
            }
            CHECKF(ok, "%s axpy n=%d", isas[k], n);
            /* bf16 operands: widening is exact, so the same bounds hold against the widened values */
            uint16_t bh[600];
            for (int i = 0; i < n; i++) bh[i] = gm_f32_to_bf16(b[i]);
            double exh = 0, magh = 0;
            for (int i = 0; i < n; i++) {
                double bi = gm_bf16_to_f32(bh[i]);
                exh += (double)a[i] * bi, magh += fabs((double)a[i] * bi);
            }
            float dh = v->dot_bf16(a, bh, n);
            CHECKF(fabs(dh - exh) <= 1e-6 * magh + 1e-30, "%s dot_bf16 n=%d: %g vs %g", isas[k], n, dh, exh);
            memcpy(y1, y0, sizeof y1);
            v->axpy_bf16(y1, 0.37f, bh, n);
            ok = 1;
            for (int i = 0; i < 600; i++) {
                float xi = i < n ? gm_bf16_to_f32(bh[i]) : 0;
                float want = i < n ? fmaf(0.37f, xi, y0[i]) : y0[i], plain = i < n ? y0[i] + 0.37f * xi : y0[i];
                ok &= y1[i] == want || y1[i] == plain;
            }
            CHECKF(ok, "%s axpy_bf16 n=%d", isas[k], n);
        }
    }
    CHECK(tested >= 1);
    printf("vector families tested: %d\n", tested);
    test_geglu(isas, sizeof isas / sizeof isas[0]);
    TEST_DONE();
}
