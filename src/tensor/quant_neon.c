/* aarch64 NEON kernels for block-quantized W times 8-bit activations (tensor/quant.h): the variant
 * with widening multiplies (vmull_s8 + pairwise add into int32) that every ARMv8 CPU runs, and the
 * choice at run time of the SDOT variant (quant_sdot_neon.c) where the CPU has the dot product
 * instructions. The kernels themselves are in quant_neon.h. */
#include <stdlib.h>
#if defined(__linux__)
#include <sys/auxv.h>
#endif

#define GM_QN_SDOT 0
#define GM_QN_ENTRY gm_qmatmul_range_neon_mull
#include "tensor/quant_neon.h"

/* 1 if the SDOT variant was compiled and may run: the CPU has the instructions (Linux auxv; every
 * Apple arm64 CPU has them) and GM_NO_SDOT is unset or "0" (lets tests and benchmarks run the
 * widening-multiply variant on such CPUs too). Read once. */
static int use_sdot(void) {
    static int cached = -1;
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v >= 0) return v;
    v = gm_qmatmul_neon_sdot_built();
#if defined(__APPLE__)
#elif defined(__linux__)
    if (!(getauxval(AT_HWCAP) & (1ul << 20))) v = 0; /* HWCAP_ASIMDDP */
#else
    v = 0;
#endif
    const char *e = getenv("GM_NO_SDOT");
    if (e && *e && strcmp(e, "0") != 0) v = 0;
    __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    return v;
}

/* The bytes of gm_xq_quantize_row (quant.c), 4 values a step; vcvtnq rounds half to even as
 * nearest_int does. */
void gm_xq_quantize_row_neon(const float *x, gm_dtype wt, int in, void *base) {
    gm_xq_row r = gm_xq_row_at(base, wt, in);
    const int32x4_t lo = vdupq_n_s32(-127), hi = vdupq_n_s32(127);
    if (wt == GM_DT_Q8_0 || wt == GM_DT_Q4_0) {
        const int32_t off = wt == GM_DT_Q4_0 ? 8 : 128;
        for (int b = 0; b < in / GM_QK; b++) {
            const float *xb = x + (size_t)b * GM_QK;
            float32x4_t v[8], m = vdupq_n_f32(0.0f);
            for (int k = 0; k < 8; k++) {
                v[k] = vld1q_f32(xb + 4 * k);
                m = vmaxq_f32(m, vabsq_f32(v[k]));
            }
            const float amax = vmaxvq_f32(m);
            const float d = amax / 127.0f;
            const float id = d != 0.0f ? 1.0f / d : 0.0f;
            int32x4_t sum = vdupq_n_s32(0);
            int16x8_t h[4];
            for (int k = 0; k < 8; k += 2) {
                int32x4_t a = vminq_s32(vmaxq_s32(vcvtnq_s32_f32(vmulq_n_f32(v[k], id)), lo), hi);
                int32x4_t c = vminq_s32(vmaxq_s32(vcvtnq_s32_f32(vmulq_n_f32(v[k + 1], id)), lo), hi);
                sum = vaddq_s32(sum, vaddq_s32(a, c));
                h[k / 2] = vcombine_s16(vmovn_s32(a), vmovn_s32(c));
            }
            vst1q_s8(r.q + (size_t)b * GM_QK, vcombine_s8(vmovn_s16(h[0]), vmovn_s16(h[1])));
            vst1q_s8(r.q + (size_t)b * GM_QK + 16, vcombine_s8(vmovn_s16(h[2]), vmovn_s16(h[3])));
            r.d[b] = d;
            ((int32_t *)r.aux)[b] = -off * vaddvq_s32(sum);
        }
        return;
    }
    int16_t *bsums = r.aux;
    for (int b = 0; b < in / GM_QK_K; b++) {
        const float *xb = x + (size_t)b * GM_QK_K;
        float32x4_t m = vdupq_n_f32(0.0f);
        for (int j = 0; j < GM_QK_K; j += 4) m = vmaxq_f32(m, vabsq_f32(vld1q_f32(xb + j)));
        const float amax = vmaxvq_f32(m);
        int8_t *q = r.q + (size_t)b * GM_QK_K;
        if (amax == 0.0f) {
            r.d[b] = 0.0f;
            memset(q, 0, GM_QK_K);
            memset(bsums + 16 * b, 0, 16 * sizeof *bsums);
            continue;
        }
        float max = amax;
        for (int j = 0; j < GM_QK_K; j++) /* the first value of largest magnitude, with its sign */
            if (xb[j] == amax || xb[j] == -amax) {
                max = xb[j];
                break;
            }
        const float iscale = -127.0f / max;
        for (int j = 0; j < GM_QK_K; j += 16) {
            int32x4_t v[4];
            for (int k = 0; k < 4; k++)
                v[k] =
                    vminq_s32(vmaxq_s32(vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(xb + j + 4 * k), iscale)), lo), hi);
            const int16x8_t h0 = vcombine_s16(vmovn_s32(v[0]), vmovn_s32(v[1]));
            const int16x8_t h1 = vcombine_s16(vmovn_s32(v[2]), vmovn_s32(v[3]));
            vst1q_s8(q + j, vcombine_s8(vmovn_s16(h0), vmovn_s16(h1)));
            bsums[16 * b + j / 16] = (int16_t)vaddvq_s32(vaddq_s32(vaddq_s32(v[0], v[1]), vaddq_s32(v[2], v[3])));
        }
        r.d[b] = 1.0f / iscale;
    }
}

void gm_qmatmul_range_neon(const gm_mm_args *a, int t0, int t1, int o0, int o1) {
    if (use_sdot())
        gm_qmatmul_range_neon_sdot(a, t0, t1, o0, o1);
    else
        gm_qmatmul_range_neon_mull(a, t0, t1, o0, o1);
}
