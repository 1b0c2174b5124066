/* NEON vector primitives (see vec.h). */
#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "tensor/vec.h"

float gm_vec_dot_neon(const float *a, const float *b, int n) {
    float32x4_t s0 = vdupq_n_f32(0), s1 = vdupq_n_f32(0);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
        s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
    }
    float s = vaddvq_f32(vaddq_f32(s0, s1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

void gm_vec_axpy_neon(float *y, float a, const float *x, int n) {
    int i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vld1q_f32(x + i), a));
    for (; i < n; i++) y[i] += a * x[i];
}

static inline float32x4_t load_bf16x4(const uint16_t *p) { return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16)); }

static inline float bf16_one(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    __builtin_memcpy(&f, &u, 4);
    return f;
}

float gm_vec_dot_bf16_neon(const float *a, const uint16_t *b, int n) {
    float32x4_t s0 = vdupq_n_f32(0), s1 = vdupq_n_f32(0);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        s0 = vfmaq_f32(s0, vld1q_f32(a + i), load_bf16x4(b + i));
        s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), load_bf16x4(b + i + 4));
    }
    float s = vaddvq_f32(vaddq_f32(s0, s1));
    for (; i < n; i++) s += a[i] * bf16_one(b[i]);
    return s;
}

void gm_vec_axpy_bf16_neon(float *y, float a, const uint16_t *x, int n) {
    int i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), load_bf16x4(x + i), a));
    for (; i < n; i++) y[i] += a * bf16_one(x[i]);
}

/* gelu_tanh(x) * up, 4 lanes; the method and the constants are in vec.h (the AVX2 and AVX-512 versions run
 * the same operations, so all agree bitwise). b·c - a is written fma(-a, b, c), which rounds as x86's fmsub. */
static inline float32x4_t geglu4(float32x4_t x, float32x4_t up) {
    const float32x4_t a = vdupq_n_f32(GM_GELU_A), bh = vdupq_n_f32(GM_GELU_BH);
    /* maxNum, as x86's max with the constant second: NaN -> -XMAX */
    float32x4_t xc = vminnmq_f32(vmaxnmq_f32(x, vdupq_n_f32(-GM_GELU_XMAX)), vdupq_n_f32(GM_GELU_XMAX));
    /* w = A + B·x² as wh + wl: x² exactly (th + tl), B·x² as mh + ml, then TwoSum */
    float32x4_t th = vmulq_f32(xc, xc), tl = vfmaq_f32(vnegq_f32(th), xc, xc);
    float32x4_t mh = vmulq_f32(bh, th);
    float32x4_t ml =
        vaddq_f32(vfmaq_f32(vnegq_f32(mh), bh, th), vfmaq_f32(vmulq_f32(vdupq_n_f32(GM_GELU_BL), th), bh, tl));
    float32x4_t wh = vaddq_f32(a, mh), bb = vsubq_f32(wh, a);
    float32x4_t wl = vaddq_f32(vaddq_f32(vsubq_f32(a, vsubq_f32(wh, bb)), vsubq_f32(mh, bb)), ml);
    /* z = x·w as zh + zl */
    float32x4_t zh = vmulq_f32(xc, wh);
    float32x4_t zl = vaddq_f32(vfmaq_f32(vnegq_f32(zh), xc, wh), vmulq_f32(xc, wl));
    uint32x4_t big = vcgtq_f32(zh, vdupq_n_f32(GM_GELU_ZMAX));
    zh = vminnmq_f32(vmaxnmq_f32(zh, vdupq_n_f32(GM_GELU_ZMIN)), vdupq_n_f32(GM_GELU_ZMAX));
    float32x4_t nf = vrndnq_f32(vmulq_f32(zh, vdupq_n_f32(GM_GELU_LOG2E)));
    float32x4_t r = vfmsq_f32(zh, nf, vdupq_n_f32(GM_GELU_LN2H));
    r = vaddq_f32(vfmsq_f32(r, nf, vdupq_n_f32(GM_GELU_LN2L)), zl);
    float32x4_t q = vfmaq_f32(vdupq_n_f32(GM_GELU_C5), vdupq_n_f32(GM_GELU_C6), r);
    q = vfmaq_f32(vdupq_n_f32(GM_GELU_C4), q, r);
    q = vfmaq_f32(vdupq_n_f32(GM_GELU_C3), q, r);
    q = vfmaq_f32(vdupq_n_f32(GM_GELU_C2), q, r);
    const float32x4_t one = vdupq_n_f32(1.0f);
    float32x4_t p = vaddq_f32(vfmaq_f32(r, vmulq_f32(r, r), q), one);
    int32x4_t n = vaddq_s32(vcvtq_s32_f32(nf), vdupq_n_s32(127));
    float32x4_t e = vmulq_f32(p, vreinterpretq_f32_s32(vshlq_n_s32(n, 23)));
    e = vbslq_f32(big, vdupq_n_f32(INFINITY), e);
    return vmulq_f32(vdivq_f32(x, vaddq_f32(one, e)), up);
}

void gm_vec_geglu_neon(float *gate, const float *up, size_t n) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(gate + i, geglu4(vld1q_f32(gate + i), vld1q_f32(up + i)));
    if (i < n) { /* the tail through the same lanes, so an element's result never depends on where it sits */
        float g[4] = {0}, u[4] = {0};
        memcpy(g, gate + i, sizeof(float) * (n - i));
        memcpy(u, up + i, sizeof(float) * (n - i));
        vst1q_f32(g, geglu4(vld1q_f32(g), vld1q_f32(u)));
        memcpy(gate + i, g, sizeof(float) * (n - i));
    }
}
