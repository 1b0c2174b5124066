/* Attention vector primitives: every SIMD family this CPU runs agrees with the scalar version on odd
 * lengths (tails), within 1e-6 of the magnitude of the terms for dot and exactly-rounded FMA for axpy. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/dtype.h"
#include "tensor/vec.h"
#include "testlib.h"

static float frand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)(*s >> 8) / 16777216.0f * 2.0f - 1.0f;
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
    TEST_DONE();
}
