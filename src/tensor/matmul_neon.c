/* aarch64 NEON matmul kernels, the plan of the x86 ones with 4-wide vectors and 32 registers: row dot
 * tiles (up to 4 rows of W x 4 rows of x) for small T; for large T, 16-wide f32 panels of W and a
 * 6x16 outer-product kernel. Packing is scalar here: it is a small share of the work at large T. */
#include <arm_neon.h>
#include <string.h>

#include "tensor/matmul.h"

#define GM_INLINE static inline __attribute__((always_inline))

/* ---- row dot products (T <= GM_MM_GEMV_MAX_T) ------------------------------------------------- */

/* 8 consecutive weights as two f32 vectors (bf16: widen with a 16-bit shift; f16: vcvt). */
GM_INLINE void load_w8(const void *w, gm_dtype wt, size_t off, float32x4_t *lo, float32x4_t *hi) {
    if (wt == GM_DT_F32) {
        const float *p = (const float *)w + off;
        *lo = vld1q_f32(p);
        *hi = vld1q_f32(p + 4);
    } else if (wt == GM_DT_BF16) {
        uint16x8_t v = vld1q_u16((const uint16_t *)w + off);
        *lo = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(v), 16));
        *hi = vreinterpretq_f32_u32(vshll_high_n_u16(v, 16));
    } else {
        float16x8_t v = vreinterpretq_f16_u16(vld1q_u16((const uint16_t *)w + off));
        *lo = vcvt_f32_f16(vget_low_f16(v));
        *hi = vcvt_high_f32_f16(v);
    }
}

/* See matmul_avx512.c: two accumulators per pair when T <= 2, else one; depends on T only. */
GM_INLINE void dot_tile(const gm_mm_args *a, int t, int o, int R, int TT, int dbl, gm_dtype wt) {
    const size_t in = (size_t)a->in, esz = wt == GM_DT_F32 ? 4 : 2;
    const size_t full = in & ~(size_t)7;
    float32x4_t acc[4][4][2];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++) acc[r][u][0] = acc[r][u][1] = vdupq_n_f32(0.0f);
    float xt[4][8];
    unsigned char wtail[4][32];
    for (size_t k = 0; k < in; k += 8) {
        const float *xp[4];
        const void *wp[4];
        size_t off = k;
        if (k == full) { /* partial last step through zero-padded copies: same arithmetic */
            size_t n = in - full;
#pragma GCC unroll 4
            for (int u = 0; u < TT; u++) {
                memset(xt[u], 0, sizeof xt[u]);
                memcpy(xt[u], a->x + (size_t)(t + u) * in + k, n * 4);
                xp[u] = xt[u];
            }
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                memset(wtail[r], 0, sizeof wtail[r]);
                memcpy(wtail[r], (const unsigned char *)a->w + ((size_t)(o + r) * in + k) * esz, n * esz);
                wp[r] = wtail[r];
            }
            off = 0;
        } else {
#pragma GCC unroll 4
            for (int u = 0; u < TT; u++) xp[u] = a->x + (size_t)(t + u) * in + k;
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) wp[r] = (const unsigned char *)a->w + (size_t)(o + r) * in * esz;
        }
        float32x4_t xl[4], xh[4];
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++) {
            xl[u] = vld1q_f32(xp[u]);
            xh[u] = vld1q_f32(xp[u] + 4);
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            float32x4_t wl, wh;
            load_w8(wp[r], wt, off, &wl, &wh);
#pragma GCC unroll 4
            for (int u = 0; u < TT; u++) {
                acc[r][u][0] = vfmaq_f32(acc[r][u][0], wl, xl[u]);
                acc[r][u][dbl] = vfmaq_f32(acc[r][u][dbl], wh, xh[u]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++)
            a->y[(size_t)(t + u) * (size_t)a->out + (size_t)(o + r)] =
                vaddvq_f32(dbl ? vaddq_f32(acc[r][u][0], acc[r][u][1]) : acc[r][u][0]);
}

GM_INLINE void dot_group(const gm_mm_args *a, int t0, int t1, int o, int R, gm_dtype wt) {
    if (a->T <= 2) {
        for (int t = t0; t < t1; t += 2) {
            if (t1 - t >= 2) dot_tile(a, t, o, R, 2, 1, wt);
            else dot_tile(a, t, o, R, 1, 1, wt);
        }
        return;
    }
    for (int t = t0; t < t1; t += 4) {
        switch (t1 - t) {
        case 1: dot_tile(a, t, o, R, 1, 0, wt); break;
        case 2: dot_tile(a, t, o, R, 2, 0, wt); break;
        case 3: dot_tile(a, t, o, R, 3, 0, wt); break;
        default: dot_tile(a, t, o, R, 4, 0, wt); break;
        }
    }
}

GM_INLINE void dot_rows(const gm_mm_args *a, int t0, int t1, int o0, int o1, gm_dtype wt) {
    int o = o0;
    for (; o + 4 <= o1; o += 4) dot_group(a, t0, t1, o, 4, wt);
    for (; o < o1; o++) dot_group(a, t0, t1, o, 1, wt);
}

static void gemv_f32(const gm_mm_args *a, int t0, int t1, int o0, int o1) { dot_rows(a, t0, t1, o0, o1, GM_DT_F32); }
static void gemv_f16(const gm_mm_args *a, int t0, int t1, int o0, int o1) { dot_rows(a, t0, t1, o0, o1, GM_DT_F16); }
static void gemv_bf16(const gm_mm_args *a, int t0, int t1, int o0, int o1) {
    dot_rows(a, t0, t1, o0, o1, GM_DT_BF16);
}

/* ---- packed tiles (T > GM_MM_GEMV_MAX_T) ------------------------------------------------------ */

#define MR 6 /* 6 x 4 accumulators + 4 panel vectors + x = 29 of 32 registers */
#define NR 16
#define KC 256
#define MC 384

GM_INLINE float load_w1(const void *w, gm_dtype wt, size_t off) {
    if (wt == GM_DT_F32) return ((const float *)w)[off];
    if (wt == GM_DT_BF16) return gm_bf16_to_f32(((const uint16_t *)w)[off]);
    return gm_f16_to_f32(((const uint16_t *)w)[off]);
}

GM_INLINE void pack_panel(float *dst, const gm_mm_args *a, int o, int nr, int k0, int kc, gm_dtype wt) {
    const size_t in = (size_t)a->in;
    if (nr < NR) memset(dst, 0, (size_t)kc * NR * sizeof *dst);
    for (int j = 0; j < nr; j++) {
        size_t row = (size_t)(o + j) * in + (size_t)k0;
        for (int k = 0; k < kc; k++) dst[(size_t)k * NR + (size_t)j] = load_w1(a->w, wt, row + (size_t)k);
    }
}

/* One running FMA chain per output over k in order: blocking and thread split cannot change bits. */
GM_INLINE void micro(int mr, const float *x, size_t ldx, const float *panel, int kc, float *y, size_t ldy,
                     int first, int nr) {
    float32x4_t c[MR][4];
    float tmp[NR];
#pragma GCC unroll 6
    for (int r = 0; r < mr; r++) {
        if (first) {
            c[r][0] = c[r][1] = c[r][2] = c[r][3] = vdupq_n_f32(0.0f);
        } else {
            const float *src = y + r * ldy;
            if (nr < NR) {
                memset(tmp, 0, sizeof tmp);
                memcpy(tmp, src, (size_t)nr * sizeof *tmp);
                src = tmp;
            }
            c[r][0] = vld1q_f32(src);
            c[r][1] = vld1q_f32(src + 4);
            c[r][2] = vld1q_f32(src + 8);
            c[r][3] = vld1q_f32(src + 12);
        }
    }
    for (int k = 0; k < kc; k++) {
        const float *p = panel + (size_t)k * NR;
        float32x4_t w0 = vld1q_f32(p), w1 = vld1q_f32(p + 4), w2 = vld1q_f32(p + 8), w3 = vld1q_f32(p + 12);
#pragma GCC unroll 6
        for (int r = 0; r < mr; r++) {
            float xs = x[r * ldx + (size_t)k];
            c[r][0] = vfmaq_n_f32(c[r][0], w0, xs);
            c[r][1] = vfmaq_n_f32(c[r][1], w1, xs);
            c[r][2] = vfmaq_n_f32(c[r][2], w2, xs);
            c[r][3] = vfmaq_n_f32(c[r][3], w3, xs);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < mr; r++) {
        float *dst = nr < NR ? tmp : y + r * ldy;
        vst1q_f32(dst, c[r][0]);
        vst1q_f32(dst + 4, c[r][1]);
        vst1q_f32(dst + 8, c[r][2]);
        vst1q_f32(dst + 12, c[r][3]);
        if (nr < NR) memcpy(y + r * ldy, tmp, (size_t)nr * sizeof *tmp);
    }
}

static void micro_any(int mr, const float *x, size_t ldx, const float *panel, int kc, float *y, size_t ldy,
                      int first, int nr) {
    switch (mr) {
    case 1: micro(1, x, ldx, panel, kc, y, ldy, first, nr); break;
    case 2: micro(2, x, ldx, panel, kc, y, ldy, first, nr); break;
    case 3: micro(3, x, ldx, panel, kc, y, ldy, first, nr); break;
    case 4: micro(4, x, ldx, panel, kc, y, ldy, first, nr); break;
    case 5: micro(5, x, ldx, panel, kc, y, ldy, first, nr); break;
    default: micro(6, x, ldx, panel, kc, y, ldy, first, nr); break;
    }
}

GM_INLINE void gemm(const gm_mm_args *a, int t0, int t1, int o0, int o1, gm_dtype wt) {
    float panel[KC * NR] __attribute__((aligned(64)));
    const size_t in = (size_t)a->in, ldy = (size_t)a->out;
    for (int tb = t0; tb < t1; tb += MC) {
        int te = t1 - tb > MC ? tb + MC : t1;
        for (int k0 = 0; k0 < a->in; k0 += KC) {
            int kc = a->in - k0 < KC ? a->in - k0 : KC;
            for (int o = o0; o < o1; o += NR) {
                int nr = o1 - o < NR ? o1 - o : NR;
                pack_panel(panel, a, o, nr, k0, kc, wt);
                for (int t = tb; t < te; t += MR) {
                    int mr = te - t < MR ? te - t : MR;
                    const float *x = a->x + (size_t)t * in + (size_t)k0;
                    float *y = a->y + (size_t)t * ldy + (size_t)o;
                    if (mr == MR) micro(MR, x, in, panel, kc, y, ldy, k0 == 0, nr);
                    else micro_any(mr, x, in, panel, kc, y, ldy, k0 == 0, nr);
                }
            }
        }
    }
}

static void gemm_f32(const gm_mm_args *a, int t0, int t1, int o0, int o1) { gemm(a, t0, t1, o0, o1, GM_DT_F32); }
static void gemm_f16(const gm_mm_args *a, int t0, int t1, int o0, int o1) { gemm(a, t0, t1, o0, o1, GM_DT_F16); }
static void gemm_bf16(const gm_mm_args *a, int t0, int t1, int o0, int o1) { gemm(a, t0, t1, o0, o1, GM_DT_BF16); }

void gm_matmul_range_neon(const gm_mm_args *a, int t0, int t1, int o0, int o1) {
    if (a->T > GM_MM_GEMV_MAX_T) {
        if (a->wt == GM_DT_BF16) gemm_bf16(a, t0, t1, o0, o1);
        else if (a->wt == GM_DT_F16) gemm_f16(a, t0, t1, o0, o1);
        else gemm_f32(a, t0, t1, o0, o1);
        return;
    }
    if (a->wt == GM_DT_BF16) gemv_bf16(a, t0, t1, o0, o1);
    else if (a->wt == GM_DT_F16) gemv_f16(a, t0, t1, o0, o1);
    else gemv_f32(a, t0, t1, o0, o1);
}
