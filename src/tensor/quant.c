/* Reference quantizers and dequantizers of the ggml block types, the 8-bit activation quantizer and
 * the scalar dot products (see quant.h). The quantizers follow ggml's published reference algorithms
 * (ggml-quants.c: quantize_row_q8_0_ref, _q4_0_ref, _q4_K_ref with make_qkx2_quants, _q6_K_ref with
 * make_qx_quants), operation for operation, so that their bytes match ggml's; the code is written
 * anew from those algorithms. */
#include "tensor/quant.h"

#include "tensor/matmul.h"

#include <math.h>
#include <string.h>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* ggml's nearest_int: round half to even through the float adder, exact for |f| <= 2^22 - 1. Other
 * inputs (never produced from finite weights) give some int without undefined behaviour. */
static inline int nearest_int(float f) {
    float v = f + 12582912.0f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

static inline uint16_t f2h(float f) { return gm_f32_to_f16(f); }
static inline float h2f(uint16_t h) { return gm_f16_to_f32(h); }
static inline void st_u16(void *p, uint16_t v) { memcpy(p, &v, sizeof v); }

int gm_dtype_is_quant(gm_dtype t) {
    return t == GM_DT_Q8_0 || t == GM_DT_Q4_0 || t == GM_DT_Q4_K || t == GM_DT_Q6_K;
}

/* ---- Q8_0 -------------------------------------------------------------------------------------- */

void gm_quantize_q8_0(const float *x, void *dst, size_t n) {
    uint8_t *y = dst;
    for (size_t b = 0; b < n / GM_QK; b++, x += GM_QK, y += GM_Q8_0_BYTES) {
        float amax = 0.0f;
        for (int j = 0; j < GM_QK; j++) amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        st_u16(y, f2h(d));
        for (int j = 0; j < GM_QK; j++) {
            float r = roundf(x[j] * id);
            /* |x * id| <= 127 for finite input; the clamp only keeps NaN/Inf from undefined casts. */
            int q = r >= 127.0f ? 127 : r <= -127.0f ? -127 : r == r ? (int)r : 0;
            y[2 + j] = (uint8_t)(int8_t)q;
        }
    }
}

void gm_dequantize_q8_0(const void *src, float *y, size_t n) {
    const uint8_t *x = src;
    for (size_t b = 0; b < n / GM_QK; b++, x += GM_Q8_0_BYTES, y += GM_QK) {
        const float d = h2f(gm_ld_u16(x));
        for (int j = 0; j < GM_QK; j++) y[j] = (float)(int8_t)x[2 + j] * d;
    }
}

/* ---- Q4_0 -------------------------------------------------------------------------------------- */

void gm_quantize_q4_0(const float *x, void *dst, size_t n) {
    uint8_t *y = dst;
    for (size_t b = 0; b < n / GM_QK; b++, x += GM_QK, y += GM_Q4_0_BYTES) {
        float amax = 0.0f, max = 0.0f; /* the value of largest magnitude, first one on ties */
        for (int j = 0; j < GM_QK; j++) {
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        st_u16(y, f2h(d));
        for (int j = 0; j < GM_QK / 2; j++) {
            int q[2];
            for (int h = 0; h < 2; h++) {
                float v = x[j + h * GM_QK / 2] * id + 8.5f;     /* in [0.5, 16.5] for finite input */
                q[h] = v >= 15.0f ? 15 : v > 0.0f ? (int)v : 0; /* ggml: MIN(15, (int8_t)v) */
            }
            y[2 + j] = (uint8_t)(q[0] | (q[1] << 4));
        }
    }
}

void gm_dequantize_q4_0(const void *src, float *y, size_t n) {
    const uint8_t *x = src;
    for (size_t b = 0; b < n / GM_QK; b++, x += GM_Q4_0_BYTES, y += GM_QK) {
        const float d = h2f(gm_ld_u16(x));
        for (int j = 0; j < GM_QK / 2; j++) {
            y[j] = (float)((x[2 + j] & 0x0F) - 8) * d;
            y[j + GM_QK / 2] = (float)((x[2 + j] >> 4) - 8) * d;
        }
    }
}

/* ---- Q4_K -------------------------------------------------------------------------------------- */

/* ggml's make_qkx2_quants: levels 0..nmax for x ≈ scale * L - the_min, searching nstep + 1 trial
 * inverse scales around nmax / (max - min) for the least weighted squared (or absolute) error of a
 * least-squares fit of scale and min. */
static float make_qkx2_quants(int n, int nmax, const float *x, const float *w, uint8_t *L, float *the_min,
                              uint8_t *Laux, float rmin, float rdelta, int nstep, int use_mad) {
    float min = x[0], max = x[0];
    float sum_w = w[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; i++) L[i] = 0;
        *the_min = -min;
        return 0.0f;
    }
    float iscale = (float)nmax / (max - min);
    float scale = 1.0f / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
        float diff = scale * (float)L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += w[i] * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * (x[i] - min));
            l = l < 0 ? 0 : l > nmax ? nmax : l;
            Laux[i] = (uint8_t)l;
            float fl = (float)l;
            sum_l += w[i] * fl;
            sum_l2 += w[i] * fl * fl;
            sum_xl += w[i] * fl * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * (float)Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += w[i] * diff;
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

void gm_quantize_q4_K(const float *x, void *dst, size_t n) {
    uint8_t *y = dst;
    uint8_t L[GM_QK_K], Laux[32];
    float weights[32], mins[8], scales[8];
    for (size_t b = 0; b < n / GM_QK_K; b++, x += GM_QK_K, y += GM_Q4_K_BYTES) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < 8; j++) {
            float sum_x2 = 0;
            for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
            float av_x = sqrtf(sum_x2 / 32.0f);
            for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(x[32 * j + l]);
            scales[j] =
                make_qkx2_quants(32, 15, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -1.0f, 0.1f, 20, 0);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
        float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
        uint8_t *sc = y + GM_Q4K_SCALES;
        for (int j = 0; j < 8; j++) {
            uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]); /* wraps like ggml's uint8_t store */
            uint8_t lm = (uint8_t)nearest_int(inv_min * mins[j]);
            ls = ls < 63 ? ls : 63;
            lm = lm < 63 ? lm : 63;
            if (j < 4) {
                sc[j] = ls;
                sc[j + 4] = lm;
            } else {
                sc[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
                sc[j - 4] |= (uint8_t)((ls >> 4) << 6);
                sc[j] |= (uint8_t)((lm >> 4) << 6);
            }
        }
        st_u16(y, f2h(max_scale / 63.0f));
        st_u16(y + GM_Q4K_DMIN, f2h(max_min / 63.0f));
        uint8_t scv[8], mv[8];
        gm_q4k_scales(sc, scv, mv);
        const float dall = h2f(gm_ld_u16(y)), dmin = h2f(gm_ld_u16(y + GM_Q4K_DMIN));
        for (int j = 0; j < 8; j++) {
            const float d = dall * (float)scv[j];
            if (d == 0.0f) continue; /* keep the levels make_qkx2_quants chose */
            const float dm = dmin * (float)mv[j];
            for (int i = 0; i < 32; i++) {
                int l = nearest_int((x[32 * j + i] + dm) / d);
                L[32 * j + i] = (uint8_t)(l < 0 ? 0 : l > 15 ? 15 : l);
            }
        }
        uint8_t *q = y + GM_Q4K_QS;
        for (int j = 0; j < GM_QK_K; j += 64, q += 32)
            for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    }
}

void gm_dequantize_q4_K(const void *src, float *y, size_t n) {
    const uint8_t *x = src;
    for (size_t b = 0; b < n / GM_QK_K; b++, x += GM_Q4_K_BYTES) {
        const float d = h2f(gm_ld_u16(x)), min = h2f(gm_ld_u16(x + GM_Q4K_DMIN));
        uint8_t sc[8], m[8];
        gm_q4k_scales(x + GM_Q4K_SCALES, sc, m);
        const uint8_t *q = x + GM_Q4K_QS;
        for (int j = 0; j < 8; j += 2, q += 32) {
            const float d1 = d * (float)sc[j], m1 = min * (float)m[j];
            const float d2 = d * (float)sc[j + 1], m2 = min * (float)m[j + 1];
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

/* ---- Q6_K -------------------------------------------------------------------------------------- */

#define GROUP_MAX_EPS 1e-15f

/* ggml's make_qx_quants with rmse_type 1 and no importance weights: signed levels -nmax..nmax-1
 * (stored + nmax), weights x^2, trying 18 inverse scales around -nmax / max for the best fit. */
static float make_qx_quants(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.0f;
    }
    float iscale = (float)-nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * x[i]);
        l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i], fl = (float)l;
        sumlx += w * x[i] * fl;
        suml2 += w * fl * fl;
    }
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * x[i]);
            l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
            float w = x[i] * x[i], fl = (float)l;
            sumlx += w * x[i] * fl;
            suml2 += w * fl * fl;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                int l = nearest_int(iscale * x[i]);
                l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
                L[i] = (int8_t)(l + nmax);
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

void gm_quantize_q6_K(const float *x, void *dst, size_t n) {
    uint8_t *y = dst;
    int8_t L[GM_QK_K];
    float scales[16];
    for (size_t b = 0; b < n / GM_QK_K; b++, x += GM_QK_K, y += GM_Q6_K_BYTES) {
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < 16; ib++) {
            const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            scales[ib] = scale;
            if (fabsf(scale) > max_abs_scale) {
                max_abs_scale = fabsf(scale);
                max_scale = scale;
            }
        }
        if (max_abs_scale < GROUP_MAX_EPS) {
            memset(y, 0, GM_Q6_K_BYTES);
            continue;
        }
        float iscale = -128.0f / max_scale;
        st_u16(y + GM_Q6K_D, f2h(1.0f / iscale));
        int8_t *sc = (int8_t *)(y + GM_Q6K_SCALES);
        for (int ib = 0; ib < 16; ib++) {
            int l = nearest_int(iscale * scales[ib]);
            sc[ib] = (int8_t)(l < 127 ? l : 127);
        }
        const float dall = h2f(gm_ld_u16(y + GM_Q6K_D));
        for (int j = 0; j < 16; j++) {
            float d = dall * (float)sc[j];
            if (d == 0.0f) continue;
            for (int i = 0; i < 16; i++) {
                int l = nearest_int(x[16 * j + i] / d);
                l = l < -32 ? -32 : l > 31 ? 31 : l;
                L[16 * j + i] = (int8_t)(l + 32);
            }
        }
        uint8_t *ql = y, *qh = y + GM_Q6K_QH;
        for (int j = 0; j < GM_QK_K; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; l++) {
                const uint8_t q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF;
                const uint8_t q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
                ql[l] = (uint8_t)(q1 | (q3 << 4));
                ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
                qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                                  ((L[j + l + 96] >> 4) << 6));
            }
        }
    }
}

/* The 256 6-bit levels (0..63) of a Q6_K super-block, in order. */
static void q6k_levels(const uint8_t *x, uint8_t L[GM_QK_K]) {
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = x + 64 * h, *qh = x + GM_Q6K_QH + 32 * h;
        for (int l = 0; l < 32; l++) {
            L[128 * h + l] = (uint8_t)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4));
            L[128 * h + l + 32] = (uint8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4));
            L[128 * h + l + 64] = (uint8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
            L[128 * h + l + 96] = (uint8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
        }
    }
}

void gm_dequantize_q6_K(const void *src, float *y, size_t n) {
    const uint8_t *x = src;
    uint8_t L[GM_QK_K];
    for (size_t b = 0; b < n / GM_QK_K; b++, x += GM_Q6_K_BYTES, y += GM_QK_K) {
        const float d = h2f(gm_ld_u16(x + GM_Q6K_D));
        const int8_t *sc = (const int8_t *)(x + GM_Q6K_SCALES);
        q6k_levels(x, L);
        for (int e = 0; e < GM_QK_K; e++) y[e] = d * (float)sc[e / 16] * (float)(L[e] - 32);
    }
}

/* ---- 8-bit activations ------------------------------------------------------------------------- */

static size_t xq_block(gm_dtype wt) { return wt == GM_DT_Q8_0 || wt == GM_DT_Q4_0 ? GM_QK : GM_QK_K; }

static size_t round64(size_t v) { return (v + 63) & ~(size_t)63; }

size_t gm_xq_row_bytes(gm_dtype wt, int in) {
    size_t n = (size_t)in, nb = n / xq_block(wt);
    size_t aux = xq_block(wt) == GM_QK ? nb * sizeof(int32_t) : n / 16 * sizeof(int16_t);
    return round64(n) + round64(nb * sizeof(float)) + round64(aux);
}

gm_xq_row gm_xq_row_at(void *base, gm_dtype wt, int in) {
    size_t n = (size_t)in, nb = n / xq_block(wt);
    unsigned char *p = base;
    gm_xq_row r;
    r.q = (int8_t *)p;
    r.d = (float *)(void *)(p + round64(n));
    r.aux = p + round64(n) + round64(nb * sizeof(float));
    return r;
}

void gm_xq_quantize_row(const float *x, gm_dtype wt, int in, void *base) {
    gm_xq_row r = gm_xq_row_at(base, wt, in);
    if (xq_block(wt) == GM_QK) {
        const int32_t off = wt == GM_DT_Q4_0 ? 8 : 128;
        int32_t *corr = r.aux;
        for (int b = 0; b < in / GM_QK; b++) {
            const float *xb = x + (size_t)b * GM_QK;
            float amax = 0.0f;
            for (int j = 0; j < GM_QK; j++) amax = fabsf(xb[j]) > amax ? fabsf(xb[j]) : amax;
            const float d = amax / 127.0f;
            const float id = d != 0.0f ? 1.0f / d : 0.0f;
            int32_t sum = 0;
            for (int j = 0; j < GM_QK; j++) {
                int q = nearest_int(xb[j] * id);
                q = q < -127 ? -127 : q > 127 ? 127 : q;
                r.q[(size_t)b * GM_QK + (size_t)j] = (int8_t)q;
                sum += q;
            }
            r.d[b] = d;
            corr[b] = -off * sum;
        }
        return;
    }
    int16_t *bsums = r.aux;
    for (int b = 0; b < in / GM_QK_K; b++) {
        const float *xb = x + (size_t)b * GM_QK_K;
        int8_t *q = r.q + (size_t)b * GM_QK_K;
        float max = 0, amax = 0;
        for (int j = 0; j < GM_QK_K; j++) {
            if (fabsf(xb[j]) > amax) {
                amax = fabsf(xb[j]);
                max = xb[j];
            }
        }
        if (amax == 0.0f) {
            r.d[b] = 0.0f;
            memset(q, 0, GM_QK_K);
            memset(bsums + 16 * b, 0, 16 * sizeof *bsums);
            continue;
        }
        const float iscale = -127.0f / max;
        for (int j = 0; j < GM_QK_K; j++) {
            int v = nearest_int(iscale * xb[j]);
            q[j] = (int8_t)(v < -127 ? -127 : v > 127 ? 127 : v);
        }
        for (int j = 0; j < 16; j++) {
            int sum = 0;
            for (int i = 0; i < 16; i++) sum += q[16 * j + i];
            bsums[16 * b + j] = (int16_t)sum;
        }
        r.d[b] = 1.0f / iscale;
    }
}

/* ---- scalar dot products ----------------------------------------------------------------------- */

float gm_qdot_scalar(gm_dtype wt, const void *wrow, const void *xq_base, int in) {
    gm_xq_row xr = gm_xq_row_at((void *)(uintptr_t)xq_base, wt, in);
    const uint8_t *w = wrow;
    float sumf = 0.0f;
    if (wt == GM_DT_Q8_0 || wt == GM_DT_Q4_0) {
        const int q4 = wt == GM_DT_Q4_0;
        for (int b = 0; b < in / GM_QK; b++) {
            const int8_t *xq = xr.q + (size_t)b * GM_QK;
            const uint8_t *blk = w + (size_t)b * (q4 ? GM_Q4_0_BYTES : GM_Q8_0_BYTES);
            int32_t isum = 0;
            if (q4) {
                for (int j = 0; j < GM_QK / 2; j++)
                    isum += ((blk[2 + j] & 0xF) - 8) * xq[j] + ((blk[2 + j] >> 4) - 8) * xq[j + GM_QK / 2];
            } else {
                for (int j = 0; j < GM_QK; j++) isum += (int8_t)blk[2 + j] * xq[j];
            }
            sumf += h2f(gm_ld_u16(blk)) * xr.d[b] * (float)isum;
        }
        return sumf;
    }
    const int16_t *bsums = xr.aux;
    for (int b = 0; b < in / GM_QK_K; b++) {
        const int8_t *xq = xr.q + (size_t)b * GM_QK_K;
        const int16_t *bs = bsums + 16 * b;
        if (wt == GM_DT_Q4_K) {
            const uint8_t *blk = w + (size_t)b * GM_Q4_K_BYTES, *qs = blk + GM_Q4K_QS;
            uint8_t sc[8], m[8];
            gm_q4k_scales(blk + GM_Q4K_SCALES, sc, m);
            int32_t isum = 0, summ = 0;
            for (int j = 0; j < 8; j++) {
                int32_t s = 0;
                for (int l = 0; l < 32; l++) {
                    int q = (j & 1) ? qs[32 * (j / 2) + l] >> 4 : qs[32 * (j / 2) + l] & 0xF;
                    s += q * xq[32 * j + l];
                }
                isum += sc[j] * s;
                summ += m[j] * (bs[2 * j] + bs[2 * j + 1]);
            }
            const float d = h2f(gm_ld_u16(blk)) * xr.d[b], dmin = h2f(gm_ld_u16(blk + GM_Q4K_DMIN)) * xr.d[b];
            sumf += d * (float)isum - dmin * (float)summ;
        } else {
            const uint8_t *blk = w + (size_t)b * GM_Q6_K_BYTES;
            const int8_t *sc = (const int8_t *)(blk + GM_Q6K_SCALES);
            uint8_t L[GM_QK_K];
            q6k_levels(blk, L);
            int32_t isum = 0;
            for (int j = 0; j < 16; j++) {
                int32_t s = 0;
                for (int l = 0; l < 16; l++) s += L[16 * j + l] * xq[16 * j + l];
                isum += sc[j] * (s - 32 * bs[j]);
            }
            sumf += h2f(gm_ld_u16(blk + GM_Q6K_D)) * xr.d[b] * (float)isum;
        }
    }
    return sumf;
}

void gm_qmatmul_range_scalar(const gm_mm_args *a, int t0, int t1, int o0, int o1) {
    size_t rb = 0;
    gm_dtype_row_bytes(a->wt, (size_t)a->in, &rb);
    for (int o = o0; o < o1; o++) {
        const unsigned char *wr = (const unsigned char *)a->w + (size_t)o * rb;
        for (int t = t0; t < t1; t++)
            a->y[(size_t)t * (size_t)a->out + (size_t)o] =
                gm_qdot_scalar(a->wt, wr, a->xq + (size_t)t * a->xq_stride, a->in);
    }
}
