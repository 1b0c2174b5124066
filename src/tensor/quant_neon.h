/* The NEON quantized-matmul kernels, compiled twice (see quant_neon.c): by quant_neon.c with
 * GM_QN_SDOT 0 (widening multiplies, any ARMv8) and by quant_sdot_neon.c with GM_QN_SDOT 1 (SDOT, the
 * ARMv8.2 dot product). Levels are made signed in registers (Q4_0 nibble - 8, Q6_K level - 32), so no
 * offset corrections are needed. Both variants compute the same integers, lane by lane where lanes
 * reach f32 (dot32), so they give the same bits (tests/run_all.sh's ARM stage compares logits).
 * Defines static functions and GM_QN_ENTRY (the range function); include once per file. */
#ifndef GM_TENSOR_QUANT_NEON_H
#define GM_TENSOR_QUANT_NEON_H

#include <arm_neon.h>
#include <string.h>

#include "tensor/matmul.h"
#include "tensor/quant.h"

#ifndef GM_QN_SDOT
#error "define GM_QN_SDOT (0 or 1) before including tensor/quant_neon.h"
#endif

#define GM_INLINE static inline __attribute__((always_inline))
#define RMAX 4
#define TMAX 2

typedef struct {
    const int8_t *q;
    const float *d;
    const void *aux;
} xrow;

GM_INLINE xrow xrow_at(const unsigned char *base, gm_dtype wt, int in) {
    gm_xq_row r = gm_xq_row_at((void *)(uintptr_t)base, wt, in);
    return (xrow){r.q, r.d, r.aux};
}

GM_INLINE float h2f(const unsigned char *p) { return gm_f16_to_f32(gm_ld_u16(p)); }

/* acc + the 16 products of a and b (int8) in 4 lanes; which products share a lane differs between
 * the variants, so only the lanes' total may be used. */
GM_INLINE int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if GM_QN_SDOT
    return vdotq_s32(acc, a, b);
#else
    /* |a * b| <= 128 * 127, so two products fit int16 */
    int16x8_t p = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    p = vmlal_high_s8(p, a, b);
    return vpadalq_s16(acc, p);
#endif
}

/* The 32-byte dot product of (a0 a1) and (b0 b1) in SDOT's lanes: lane k sums bytes 4k..4k+3 of both
 * halves. Q8_0/Q4_0 convert these lanes to f32 one by one, so the widening-multiply variant must put
 * the same products in the same lanes for the two variants to give the same bits. */
GM_INLINE int32x4_t dot32(int8x16_t a0, int8x16_t a1, int8x16_t b0, int8x16_t b1) {
#if GM_QN_SDOT
    return vdotq_s32(vdotq_s32(vdupq_n_s32(0), a0, b0), a1, b1);
#else
    /* 16-bit lanes hold two products, |a * b| <= 128 * 127: lo lane i = bytes i and 16 + i,
     * hi lane i = bytes 8 + i and 24 + i; two pairwise additions gather 4 lanes each. */
    int16x8_t lo = vmull_s8(vget_low_s8(a0), vget_low_s8(b0));
    lo = vmlal_s8(lo, vget_low_s8(a1), vget_low_s8(b1));
    int16x8_t hi = vmull_high_s8(a0, b0);
    hi = vmlal_high_s8(hi, a1, b1);
    return vpaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi));
#endif
}

/* ---- Q8_0 and Q4_0 ----------------------------------------------------------------------------- */

GM_INLINE void tile_q32(const unsigned char *w, size_t rb, const unsigned char *xq, size_t xs, int in, float *y,
                        size_t ldy, int R, int TT, int q4) {
    const gm_dtype wt = q4 ? GM_DT_Q4_0 : GM_DT_Q8_0;
    const int nb = in / GM_QK;
    const size_t bb = q4 ? GM_Q4_0_BYTES : GM_Q8_0_BYTES;
    xrow x[TMAX];
    float32x4_t acc[RMAX][TMAX];
#pragma GCC unroll 4
    for (int u = 0; u < TT; u++) x[u] = xrow_at(xq + (size_t)u * xs, wt, in);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++) acc[r][u] = vdupq_n_f32(0.0f);
    const uint8x16_t lo4 = vdupq_n_u8(0x0F);
    const int8x16_t eight = vdupq_n_s8(8);
    for (int b = 0; b < nb; b++) {
        int8x16_t xa[TMAX], xb[TMAX];
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++) {
            xa[u] = vld1q_s8(x[u].q + (size_t)b * GM_QK);
            xb[u] = vld1q_s8(x[u].q + (size_t)b * GM_QK + 16);
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const unsigned char *p = w + (size_t)r * rb + (size_t)b * bb;
            gm_q_prefetch(p, (size_t)(2 * R) * rb, bb);
            int8x16_t wa, wb;
            if (q4) {
                const uint8x16_t v = vld1q_u8(p + 2);
                wa = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, lo4)), eight);
                wb = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), eight);
            } else {
                wa = vld1q_s8((const int8_t *)(p + 2));
                wb = vld1q_s8((const int8_t *)(p + 18));
            }
            const float dw = h2f(p);
#pragma GCC unroll 4
            for (int u = 0; u < TT; u++) {
                const int32x4_t s = dot32(wa, wb, xa[u], xb[u]);
                acc[r][u] = vfmaq_n_f32(acc[r][u], vcvtq_f32_s32(s), dw * x[u].d[b]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++) y[(size_t)u * ldy + (size_t)r] = vaddvq_f32(acc[r][u]);
}

/* ---- Q4_K -------------------------------------------------------------------------------------- */

GM_INLINE void tile_q4_K(const unsigned char *w, size_t rb, const unsigned char *xq, size_t xs, int in, float *y,
                         size_t ldy, int R, int TT) {
    const int nb = in / GM_QK_K;
    xrow x[TMAX];
    float sum[RMAX][TMAX];
#pragma GCC unroll 4
    for (int u = 0; u < TT; u++) x[u] = xrow_at(xq + (size_t)u * xs, GM_DT_Q4_K, in);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++) sum[r][u] = 0.0f;
    const uint8x16_t lo4 = vdupq_n_u8(0x0F);
    for (int i = 0; i < nb; i++) {
        uint8_t sc[RMAX][8], mn[RMAX][8];
        float dw[RMAX], dm[RMAX];
        int32x4_t isum[RMAX][TMAX];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const unsigned char *blk = w + (size_t)r * rb + (size_t)i * GM_Q4_K_BYTES;
            gm_q_prefetch(blk, (size_t)(2 * R) * rb, GM_Q4_K_BYTES);
            gm_q4k_scales(blk + GM_Q4K_SCALES, sc[r], mn[r]);
            dw[r] = h2f(blk);
            dm[r] = h2f(blk + GM_Q4K_DMIN);
#pragma GCC unroll 4
            for (int u = 0; u < TT; u++) isum[r][u] = vdupq_n_s32(0);
        }
        for (int c = 0; c < 4; c++) {
            int8x16_t xv[TMAX][4];
#pragma GCC unroll 4
            for (int u = 0; u < TT; u++)
#pragma GCC unroll 4
                for (int v = 0; v < 4; v++) xv[u][v] = vld1q_s8(x[u].q + (size_t)i * GM_QK_K + 64 * c + 16 * v);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const unsigned char *qs = w + (size_t)r * rb + (size_t)i * GM_Q4_K_BYTES + GM_Q4K_QS + 32 * c;
                const uint8x16_t q0 = vld1q_u8(qs), q1 = vld1q_u8(qs + 16);
                const int8x16_t l0 = vreinterpretq_s8_u8(vandq_u8(q0, lo4)),
                                l1 = vreinterpretq_s8_u8(vandq_u8(q1, lo4));
                const int8x16_t h0 = vreinterpretq_s8_u8(vshrq_n_u8(q0, 4)),
                                h1 = vreinterpretq_s8_u8(vshrq_n_u8(q1, 4));
#pragma GCC unroll 4
                for (int u = 0; u < TT; u++) {
                    int32x4_t a = dot16(dot16(vdupq_n_s32(0), l0, xv[u][0]), l1, xv[u][1]);
                    int32x4_t h = dot16(dot16(vdupq_n_s32(0), h0, xv[u][2]), h1, xv[u][3]);
                    isum[r][u] = vmlaq_n_s32(isum[r][u], a, sc[r][2 * c]);
                    isum[r][u] = vmlaq_n_s32(isum[r][u], h, sc[r][2 * c + 1]);
                }
            }
        }
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++) {
            const int16_t *bs = (const int16_t *)x[u].aux + 16 * i;
            const int16x8_t b32 = vpaddq_s16(vld1q_s16(bs), vld1q_s16(bs + 8)); /* sums over 32 values */
            const float dx = x[u].d[i];
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const int16x8_t m = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(mn[r])));
                int32x4_t mm = vmull_s16(vget_low_s16(m), vget_low_s16(b32));
                mm = vmlal_high_s16(mm, m, b32);
                sum[r][u] += dw[r] * dx * (float)vaddvq_s32(isum[r][u]) - dm[r] * dx * (float)vaddvq_s32(mm);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++) y[(size_t)u * ldy + (size_t)r] = sum[r][u];
}

/* ---- Q6_K -------------------------------------------------------------------------------------- */

GM_INLINE void tile_q6_K(const unsigned char *w, size_t rb, const unsigned char *xq, size_t xs, int in, float *y,
                         size_t ldy, int R, int TT) {
    const int nb = in / GM_QK_K;
    xrow x[TMAX];
    float sum[RMAX][TMAX];
#pragma GCC unroll 4
    for (int u = 0; u < TT; u++) x[u] = xrow_at(xq + (size_t)u * xs, GM_DT_Q6_K, in);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++) sum[r][u] = 0.0f;
    const uint8x16_t m3 = vdupq_n_u8(3);
    const int8x16_t k32 = vdupq_n_s8(32);
    for (int i = 0; i < nb; i++) {
        int32x4_t isum[RMAX][TMAX];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
#pragma GCC unroll 4
            for (int u = 0; u < TT; u++) isum[r][u] = vdupq_n_s32(0);
        for (int h = 0; h < 2; h++) {
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const unsigned char *blk = w + (size_t)r * rb + (size_t)i * GM_Q6_K_BYTES;
                if (h == 0) gm_q_prefetch(blk, (size_t)(2 * R) * rb, GM_Q6_K_BYTES);
                const int8_t *sc = (const int8_t *)(blk + GM_Q6K_SCALES) + 8 * h;
                const unsigned char *ql = blk + 64 * h, *qh = blk + GM_Q6K_QH + 32 * h;
#pragma GCC unroll 2
                for (int half = 0; half < 2; half++) { /* values l = 16 half .. 16 half + 15 of each chunk */
                    const uint8x16_t a = vld1q_u8(ql + 16 * half), b = vld1q_u8(ql + 32 + 16 * half);
                    const uint8x16_t hb = vld1q_u8(qh + 16 * half);
                    int8x16_t q[4];
                    q[0] = vreinterpretq_s8_u8(vsliq_n_u8(vandq_u8(a, vdupq_n_u8(0x0F)), vandq_u8(hb, m3), 4));
                    q[1] = vreinterpretq_s8_u8(
                        vsliq_n_u8(vandq_u8(b, vdupq_n_u8(0x0F)), vandq_u8(vshrq_n_u8(hb, 2), m3), 4));
                    q[2] = vreinterpretq_s8_u8(vsliq_n_u8(vshrq_n_u8(a, 4), vandq_u8(vshrq_n_u8(hb, 4), m3), 4));
                    q[3] = vreinterpretq_s8_u8(vsliq_n_u8(vshrq_n_u8(b, 4), vshrq_n_u8(hb, 6), 4));
#pragma GCC unroll 4
                    for (int k = 0; k < 4; k++) {
                        const int8x16_t qk = vsubq_s8(q[k], k32);
                        const int scale = sc[2 * k + half];
#pragma GCC unroll 4
                        for (int u = 0; u < TT; u++) {
                            const int8x16_t xv =
                                vld1q_s8(x[u].q + (size_t)i * GM_QK_K + 128 * h + 32 * k + 16 * half);
                            isum[r][u] = vmlaq_n_s32(isum[r][u], dot16(vdupq_n_s32(0), qk, xv), scale);
                        }
                    }
                }
            }
        }
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++) {
            const float dx = x[u].d[i];
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const float dw = h2f(w + (size_t)r * rb + (size_t)i * GM_Q6_K_BYTES + GM_Q6K_D);
                sum[r][u] += dw * dx * (float)vaddvq_s32(isum[r][u]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++) y[(size_t)u * ldy + (size_t)r] = sum[r][u];
}

/* ---- tile dispatch ----------------------------------------------------------------------------- */

#define GM_TILE_SWITCH(CALL)                                                                                      \
    do {                                                                                                          \
        if (R == RMAX) {                                                                                          \
            if (TT >= 2)                                                                                          \
                CALL(RMAX, 2);                                                                                    \
            else                                                                                                  \
                CALL(RMAX, 1);                                                                                    \
        } else {                                                                                                  \
            if (TT >= 2)                                                                                          \
                CALL(1, 2);                                                                                       \
            else                                                                                                  \
                CALL(1, 1);                                                                                       \
        }                                                                                                         \
    } while (0)

#define GM_TILES(NAME, TILE)                                                                                      \
    static void NAME(const unsigned char *w, size_t rb, const unsigned char *xq, size_t xs, int in, float *y,     \
                     size_t ldy, int R, int TT) {                                                                 \
        GM_TILE_SWITCH(TILE);                                                                                     \
    }

#define GM_Q8_0(r_, t_) tile_q32(w, rb, xq, xs, in, y, ldy, r_, t_, 0)
#define GM_Q4_0(r_, t_) tile_q32(w, rb, xq, xs, in, y, ldy, r_, t_, 1)
#define GM_Q4_K(r_, t_) tile_q4_K(w, rb, xq, xs, in, y, ldy, r_, t_)
#define GM_Q6_K(r_, t_) tile_q6_K(w, rb, xq, xs, in, y, ldy, r_, t_)
GM_TILES(tiles_q8_0, GM_Q8_0)
GM_TILES(tiles_q4_0, GM_Q4_0)
GM_TILES(tiles_q4_K, GM_Q4_K)
GM_TILES(tiles_q6_K, GM_Q6_K)

void GM_QN_ENTRY(const gm_mm_args *a, int t0, int t1, int o0, int o1) {
    gm_qtile_fn f = a->wt == GM_DT_Q8_0   ? tiles_q8_0
                    : a->wt == GM_DT_Q4_0 ? tiles_q4_0
                    : a->wt == GM_DT_Q4_K ? tiles_q4_K
                                          : tiles_q6_K;
    gm_q_run_tiles(a->w, a->wt, a->xq, a->xq_stride, a->in, a->y, a->out, t0, t1, o0, o1, RMAX, TMAX, f);
}

#endif
