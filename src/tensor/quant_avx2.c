/* AVX2 kernels for block-quantized W times 8-bit activations (tensor/quant.h), the plan of the AVX-512
 * ones in 256-bit vectors without VNNI: row-dot tiles for few rows of x (vpmaddubsw, unsigned levels x
 * signed x exact in int16, then vpmaddwd by ones for Q8_0/Q4_0, one f32 step per 32-block, or by the
 * sub-block scales for Q4_K/Q6_K, int32 sums over a super-block, one f32 step each; Q8_0 weights are
 * signed, so their sign moves onto x with vpsignb and the weight operand is |q|), and 8-row packed
 * panels for more rows. Also used by the avx512 family on CPUs without VNNI. */
#include <immintrin.h>
#include <string.h>

#include "tensor/matmul.h"
#include "tensor/quant.h"

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

GM_INLINE float h2f(const unsigned char *p) { return _cvtsh_ss(gm_ld_u16(p)); }

GM_INLINE float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ---- Q8_0 and Q4_0 ----------------------------------------------------------------------------- */

GM_INLINE void tile_q32(const unsigned char *w, size_t rb, const unsigned char *xq, size_t xs, int in, float *y,
                        size_t ldy, int R, int TT, int q4) {
    const gm_dtype wt = q4 ? GM_DT_Q4_0 : GM_DT_Q8_0;
    const int nb = in / GM_QK;
    const size_t bb = q4 ? GM_Q4_0_BYTES : GM_Q8_0_BYTES;
    xrow x[TMAX];
    __m256 acc[RMAX][TMAX];
#pragma GCC unroll 4
    for (int u = 0; u < TT; u++) x[u] = xrow_at(xq + (size_t)u * xs, wt, in);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++) acc[r][u] = _mm256_setzero_ps();
    const __m256i lo4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    for (int b = 0; b < nb; b++) {
        __m256i xv[TMAX], xc[TMAX];
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++) {
            xv[u] = _mm256_loadu_si256((const void *)(x[u].q + (size_t)b * GM_QK));
            xc[u] = _mm256_zextsi128_si256(_mm_cvtsi32_si128(((const int32_t *)x[u].aux)[b]));
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const unsigned char *p = w + (size_t)r * rb + (size_t)b * bb;
            gm_q_prefetch(p, (size_t)(2 * R) * rb, bb);
            const float dw = h2f(p);
            __m256i s[TMAX];
            if (q4) {
                const __m128i v = _mm_loadu_si128((const void *)(p + 2));
                const __m256i wv = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), lo4);
#pragma GCC unroll 4
                for (int u = 0; u < TT; u++)
                    s[u] = _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(wv, xv[u]), ones), xc[u]);
            } else {
                const __m256i wv = _mm256_loadu_si256((const void *)(p + 2));
                const __m256i aw = _mm256_sign_epi8(wv, wv);
#pragma GCC unroll 4
                for (int u = 0; u < TT; u++)
                    s[u] = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(xv[u], wv)), ones);
            }
#pragma GCC unroll 4
            for (int u = 0; u < TT; u++)
                acc[r][u] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[u]), _mm256_set1_ps(dw * x[u].d[b]), acc[r][u]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++) y[(size_t)u * ldy + (size_t)r] = hsum256(acc[r][u]);
}

/* ---- Q4_K -------------------------------------------------------------------------------------- */

/* The 12 scale bytes as int16: lanes 0..7 the scales, 8..15 the mins. */
GM_INLINE __m256i q4k_scales16(const unsigned char *s) {
    uint32_t u[3];
    memcpy(u, s, sizeof u);
    const uint32_t sc_lo = u[0] & 0x3f3f3f3fu, m_lo = u[1] & 0x3f3f3f3fu;
    const uint32_t sc_hi = (u[2] & 0x0f0f0f0fu) | (((u[0] >> 6) & 0x03030303u) << 4);
    const uint32_t m_hi = ((u[2] >> 4) & 0x0f0f0f0fu) | (((u[1] >> 6) & 0x03030303u) << 4);
    return _mm256_cvtepu8_epi16(_mm_set_epi32((int)m_hi, (int)m_lo, (int)sc_hi, (int)sc_lo));
}

/* pshufb index repeating int16 lane j of a 128-bit lane across it */
GM_INLINE __m256i rep16(int lo, int hi) {
    return _mm256_set_m128i(_mm_set1_epi16((short)(2 * hi | (2 * hi + 1) << 8)),
                            _mm_set1_epi16((short)(2 * lo | (2 * lo + 1) << 8)));
}

GM_INLINE void tile_q4_K(const unsigned char *w, size_t rb, const unsigned char *xq, size_t xs, int in, float *y,
                         size_t ldy, int R, int TT) {
    const int nb = in / GM_QK_K;
    xrow x[TMAX];
    __m256 acc[RMAX][TMAX];
#pragma GCC unroll 4
    for (int u = 0; u < TT; u++) x[u] = xrow_at(xq + (size_t)u * xs, GM_DT_Q4_K, in);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++) acc[r][u] = _mm256_setzero_ps();
    const __m256i lo4 = _mm256_set1_epi8(0x0F);
    const __m256i pair = _mm256_set_epi8(15, 14, 15, 14, 13, 12, 13, 12, 11, 10, 11, 10, 9, 8, 9, 8, 7, 6, 7, 6, 5,
                                         4, 5, 4, 3, 2, 3, 2, 1, 0, 1, 0);
    for (int i = 0; i < nb; i++) {
        __m256i scl[RMAX], mn[RMAX];
        float dw[RMAX], dm[RMAX];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const unsigned char *blk = w + (size_t)r * rb + (size_t)i * GM_Q4_K_BYTES;
            gm_q_prefetch(blk, (size_t)(2 * R) * rb, GM_Q4_K_BYTES);
            const __m256i s16 = q4k_scales16(blk + GM_Q4K_SCALES);
            scl[r] = _mm256_permute2x128_si256(s16, s16, 0x00);                           /* scales, twice */
            mn[r] = _mm256_shuffle_epi8(_mm256_permute2x128_si256(s16, s16, 0x11), pair); /* m0 m0 m1 m1 .. */
            dw[r] = h2f(blk);
            dm[r] = h2f(blk + GM_Q4K_DMIN);
        }
        __m256i isum[RMAX][TMAX];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
#pragma GCC unroll 4
            for (int u = 0; u < TT; u++) isum[r][u] = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m256i xa[TMAX], xb[TMAX];
#pragma GCC unroll 4
            for (int u = 0; u < TT; u++) {
                xa[u] = _mm256_loadu_si256((const void *)(x[u].q + (size_t)i * GM_QK_K + 64 * c));
                xb[u] = _mm256_loadu_si256((const void *)(x[u].q + (size_t)i * GM_QK_K + 64 * c + 32));
            }
            const __m256i ia = rep16(2 * c, 2 * c), ib = rep16(2 * c + 1, 2 * c + 1);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const __m256i q = _mm256_loadu_si256(
                    (const void *)(w + (size_t)r * rb + (size_t)i * GM_Q4_K_BYTES + GM_Q4K_QS + 32 * c));
                const __m256i lo = _mm256_and_si256(q, lo4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), lo4);
                const __m256i sa = _mm256_shuffle_epi8(scl[r], ia), sb = _mm256_shuffle_epi8(scl[r], ib);
#pragma GCC unroll 4
                for (int u = 0; u < TT; u++) {
                    isum[r][u] =
                        _mm256_add_epi32(isum[r][u], _mm256_madd_epi16(_mm256_maddubs_epi16(lo, xa[u]), sa));
                    isum[r][u] =
                        _mm256_add_epi32(isum[r][u], _mm256_madd_epi16(_mm256_maddubs_epi16(hi, xb[u]), sb));
                }
            }
        }
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++) {
            const float dx = x[u].d[i];
            const __m256i bs = _mm256_loadu_si256((const void *)((const int16_t *)x[u].aux + 16 * i));
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const __m256 m = _mm256_cvtepi32_ps(_mm256_madd_epi16(mn[r], bs));
                acc[r][u] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][u]), _mm256_set1_ps(dw[r] * dx), acc[r][u]);
                acc[r][u] = _mm256_fmadd_ps(m, _mm256_set1_ps(-dm[r] * dx), acc[r][u]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++) y[(size_t)u * ldy + (size_t)r] = hsum256(acc[r][u]);
}

/* ---- Q6_K -------------------------------------------------------------------------------------- */

GM_INLINE void tile_q6_K(const unsigned char *w, size_t rb, const unsigned char *xq, size_t xs, int in, float *y,
                         size_t ldy, int R, int TT) {
    const int nb = in / GM_QK_K;
    xrow x[TMAX];
    __m256 acc[RMAX][TMAX];
#pragma GCC unroll 4
    for (int u = 0; u < TT; u++) x[u] = xrow_at(xq + (size_t)u * xs, GM_DT_Q6_K, in);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++) acc[r][u] = _mm256_setzero_ps();
    const __m256i lo4 = _mm256_set1_epi8(0x0F), hi2 = _mm256_set1_epi8(0x30);
    for (int i = 0; i < nb; i++) {
        __m256i sc[RMAX];
        float dw[RMAX];
        __m256i isum[RMAX][TMAX];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const unsigned char *blk = w + (size_t)r * rb + (size_t)i * GM_Q6_K_BYTES;
            gm_q_prefetch(blk, (size_t)(2 * R) * rb, GM_Q6_K_BYTES);
            sc[r] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const void *)(blk + GM_Q6K_SCALES)));
            dw[r] = h2f(blk + GM_Q6K_D);
        }
        /* the -32 offset of every level: -32 * sum_j sc_j * (sum of x over sub-block j) */
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++) {
            const __m256i bs = _mm256_loadu_si256((const void *)((const int16_t *)x[u].aux + 16 * i));
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                isum[r][u] =
                    _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(sc[r], bs), 5));
        }
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const unsigned char *blk = w + (size_t)r * rb + (size_t)i * GM_Q6_K_BYTES;
                const __m256i ql0 = _mm256_loadu_si256((const void *)(blk + 64 * h));
                const __m256i ql1 = _mm256_loadu_si256((const void *)(blk + 64 * h + 32));
                const __m256i qh = _mm256_loadu_si256((const void *)(blk + GM_Q6K_QH + 32 * h));
                __m256i q[4];
                q[0] =
                    _mm256_or_si256(_mm256_and_si256(ql0, lo4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), hi2));
                q[1] =
                    _mm256_or_si256(_mm256_and_si256(ql1, lo4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), hi2));
                q[2] =
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), lo4), _mm256_and_si256(qh, hi2));
                q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), lo4),
                                       _mm256_and_si256(_mm256_srli_epi16(qh, 2), hi2));
                /* scales of this half, twice: chunk k (32 values) = sub-blocks 8h + 2k, 8h + 2k + 1 */
                const __m256i s8 = h ? _mm256_permute2x128_si256(sc[r], sc[r], 0x11)
                                     : _mm256_permute2x128_si256(sc[r], sc[r], 0x00);
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) {
                    const __m256i s = _mm256_shuffle_epi8(s8, rep16(2 * k, 2 * k + 1));
#pragma GCC unroll 4
                    for (int u = 0; u < TT; u++) {
                        const __m256i xv =
                            _mm256_loadu_si256((const void *)(x[u].q + (size_t)i * GM_QK_K + 128 * h + 32 * k));
                        isum[r][u] =
                            _mm256_add_epi32(isum[r][u], _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], xv), s));
                    }
                }
            }
        }
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++) {
            const float dx = x[u].d[i];
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                acc[r][u] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][u]), _mm256_set1_ps(dw[r] * dx), acc[r][u]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++) y[(size_t)u * ldy + (size_t)r] = hsum256(acc[r][u]);
}

/* ---- activation quantizer: the bytes of gm_xq_quantize_row (quant.c), 8 values a step ------------- */

GM_INLINE float hmax256(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

GM_INLINE int32_t hsum256_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

/* 32 int32 (already in -127..127) as 32 int8 in order. */
GM_INLINE __m256i pack32(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* Round half to even (the default MXCSR mode, which nothing here changes), as nearest_int does. */
void gm_xq_quantize_row_avx2(const float *x, gm_dtype wt, int in, void *base) {
    gm_xq_row r = gm_xq_row_at(base, wt, in);
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
    if (wt == GM_DT_Q8_0 || wt == GM_DT_Q4_0) {
        const int32_t off = wt == GM_DT_Q4_0 ? 8 : 128;
        for (int b = 0; b < in / GM_QK; b++) {
            const float *xb = x + (size_t)b * GM_QK;
            __m256 v[4], m = _mm256_setzero_ps();
            for (int k = 0; k < 4; k++) {
                v[k] = _mm256_loadu_ps(xb + 8 * k);
                m = _mm256_max_ps(m, _mm256_and_ps(v[k], absmask));
            }
            const float amax = hmax256(m);
            const float d = amax / 127.0f;
            const float id = d != 0.0f ? 1.0f / d : 0.0f;
            const __m256 idv = _mm256_set1_ps(id);
            __m256i q[4], sum = _mm256_setzero_si256();
            for (int k = 0; k < 4; k++) {
                q[k] = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(v[k], idv)), lo), hi);
                sum = _mm256_add_epi32(sum, q[k]);
            }
            _mm256_storeu_si256((void *)(r.q + (size_t)b * GM_QK), pack32(q[0], q[1], q[2], q[3]));
            r.d[b] = d;
            ((int32_t *)r.aux)[b] = -off * hsum256_epi32(sum);
        }
        return;
    }
    int16_t *bsums = r.aux;
    for (int b = 0; b < in / GM_QK_K; b++) {
        const float *xb = x + (size_t)b * GM_QK_K;
        __m256 m = _mm256_setzero_ps();
        for (int j = 0; j < GM_QK_K; j += 8) m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(xb + j), absmask));
        const float amax = hmax256(m);
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
        const __m256 is = _mm256_set1_ps(iscale);
        for (int j = 0; j < GM_QK_K; j += 32) {
            __m256i v[4];
            for (int k = 0; k < 4; k++)
                v[k] = _mm256_min_epi32(
                    _mm256_max_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + j + 8 * k), is)), lo),
                    hi);
            _mm256_storeu_si256((void *)(q + j), pack32(v[0], v[1], v[2], v[3]));
            bsums[16 * b + j / 16] = (int16_t)hsum256_epi32(_mm256_add_epi32(v[0], v[1]));
            bsums[16 * b + j / 16 + 1] = (int16_t)hsum256_epi32(_mm256_add_epi32(v[2], v[3]));
        }
        r.d[b] = 1.0f / iscale;
    }
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

static void tiles_q8_0(const unsigned char *w, size_t rb, const unsigned char *xq, size_t xs, int in, float *y,
                       size_t ldy, int R, int TT) {
#define GM_CALL(r_, t_) tile_q32(w, rb, xq, xs, in, y, ldy, r_, t_, 0)
    GM_TILE_SWITCH(GM_CALL);
#undef GM_CALL
}
static void tiles_q4_0(const unsigned char *w, size_t rb, const unsigned char *xq, size_t xs, int in, float *y,
                       size_t ldy, int R, int TT) {
#define GM_CALL(r_, t_) tile_q32(w, rb, xq, xs, in, y, ldy, r_, t_, 1)
    GM_TILE_SWITCH(GM_CALL);
#undef GM_CALL
}
static void tiles_q4_K(const unsigned char *w, size_t rb, const unsigned char *xq, size_t xs, int in, float *y,
                       size_t ldy, int R, int TT) {
#define GM_CALL(r_, t_) tile_q4_K(w, rb, xq, xs, in, y, ldy, r_, t_)
    GM_TILE_SWITCH(GM_CALL);
#undef GM_CALL
}
static void tiles_q6_K(const unsigned char *w, size_t rb, const unsigned char *xq, size_t xs, int in, float *y,
                       size_t ldy, int R, int TT) {
#define GM_CALL(r_, t_) tile_q6_K(w, rb, xq, xs, in, y, ldy, r_, t_)
    GM_TILE_SWITCH(GM_CALL);
#undef GM_CALL
}

/* ---- packed panels (gm_q_use_panels: T above a few rows) -------------------------------------- */

/* The plan of the AVX-512 panels (quant_avx512.c) with 8-row panels and vpmaddubsw: each 4-byte step of
 * a group holds 8 rows' bytes side by side and x's 4 bytes are broadcast. Unsigned levels up to 15
 * (Q4_0, Q4_K) let a group's 8 steps add up in int16 before one vpmaddwd; Q6_K's (up to 63) pairs of
 * steps; Q8_0 keeps signed bytes and moves their sign onto x (vpsignb), one vpmaddwd a step. */
#define PR 8
#define NPAN 2
#define QKC 512
#define QTT 3
#define QMC 480

typedef struct {
    _Alignas(32) uint8_t q[NPAN][QKC * PR];
    _Alignas(32) float s[NPAN][QKC / 16][PR];
    _Alignas(32) float m[NPAN][QKC / 32][PR];
} qpanel;

/* Values [k0, k0 + kc) of one W row as bytes (unsigned levels; Q8_0: signed q), group g of row r going
 * to stage + g * PR * G + slot; sc[g], mn[g] the group's scale and min. */
GM_INLINE void unpack_row(const unsigned char *row, gm_dtype wt, int k0, int kc, uint8_t *stage, size_t slot,
                          float *sc, float *mn) {
    const __m256i lo4 = _mm256_set1_epi8(0x0F);
    if (wt == GM_DT_Q8_0 || wt == GM_DT_Q4_0) {
        for (int g = 0; g < kc / GM_QK; g++) {
            uint8_t *dst = stage + (size_t)g * PR * GM_QK + slot;
            if (wt == GM_DT_Q8_0) {
                const unsigned char *p = row + (size_t)(k0 / GM_QK + g) * GM_Q8_0_BYTES;
                _mm256_storeu_si256((void *)dst, _mm256_loadu_si256((const void *)(p + 2)));
                sc[g] = h2f(p);
            } else {
                const unsigned char *p = row + (size_t)(k0 / GM_QK + g) * GM_Q4_0_BYTES;
                const __m128i v = _mm_loadu_si128((const void *)(p + 2));
                _mm256_storeu_si256((void *)dst, _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), lo4));
                sc[g] = h2f(p);
            }
        }
    } else if (wt == GM_DT_Q4_K) {
        for (int i = 0; i < kc / GM_QK_K; i++) {
            const unsigned char *blk = row + (size_t)(k0 / GM_QK_K + i) * GM_Q4_K_BYTES;
            uint8_t scs[8], ms[8];
            gm_q4k_scales(blk + GM_Q4K_SCALES, scs, ms);
            const float d = h2f(blk), dmin = h2f(blk + GM_Q4K_DMIN);
            for (int c = 0; c < 4; c++) {
                const __m256i v = _mm256_loadu_si256((const void *)(blk + GM_Q4K_QS + 32 * c));
                const int g = 8 * i + 2 * c;
                _mm256_storeu_si256((void *)(stage + (size_t)g * PR * 32 + slot), _mm256_and_si256(v, lo4));
                _mm256_storeu_si256((void *)(stage + (size_t)(g + 1) * PR * 32 + slot),
                                    _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4));
            }
            for (int j = 0; j < 8; j++) {
                sc[8 * i + j] = d * (float)scs[j];
                mn[8 * i + j] = dmin * (float)ms[j];
            }
        }
    } else {
        const __m256i hi2 = _mm256_set1_epi8(0x30);
        for (int i = 0; i < kc / GM_QK_K; i++) {
            const unsigned char *blk = row + (size_t)(k0 / GM_QK_K + i) * GM_Q6_K_BYTES;
            const float d = h2f(blk + GM_Q6K_D);
            for (int h = 0; h < 2; h++) {
                const __m256i ql0 = _mm256_loadu_si256((const void *)(blk + 64 * h));
                const __m256i ql1 = _mm256_loadu_si256((const void *)(blk + 64 * h + 32));
                const __m256i qh = _mm256_loadu_si256((const void *)(blk + GM_Q6K_QH + 32 * h));
                __m256i q[4];
                q[0] =
                    _mm256_or_si256(_mm256_and_si256(ql0, lo4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), hi2));
                q[1] =
                    _mm256_or_si256(_mm256_and_si256(ql1, lo4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), hi2));
                q[2] =
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), lo4), _mm256_and_si256(qh, hi2));
                q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), lo4),
                                       _mm256_and_si256(_mm256_srli_epi16(qh, 2), hi2));
                for (int k = 0; k < 4; k++) {
                    const int g = 16 * i + 8 * h + 2 * k;
                    _mm_storeu_si128((void *)(stage + (size_t)g * PR * 16 + slot), _mm256_castsi256_si128(q[k]));
                    _mm_storeu_si128((void *)(stage + (size_t)(g + 1) * PR * 16 + slot),
                                     _mm256_extracti128_si256(q[k], 1));
                }
            }
            for (int j = 0; j < 16; j++) sc[16 * i + j] = d * (float)(int8_t)blk[GM_Q6K_SCALES + j];
        }
    }
}

/* Pack rows [0, nr) of w (nr <= NPAN * PR; missing rows zero) for values [k0, k0 + kc): staged so that
 * 32-byte loads give row r (G = 32) or rows (r, r + 4) (G = 16), then a 4-byte-word transpose. */
static void qpack(qpanel *P, const unsigned char *w, size_t rb, gm_dtype wt, int nr, int k0, int kc) {
    const int G = wt == GM_DT_Q6_K ? 16 : 32, ng = kc / G, CH = G / 4;
    _Alignas(32) uint8_t stage[QKC * PR];
    for (int p = 0; p < NPAN; p++) {
        for (int r = 0; r < PR; r++) {
            const int row = p * PR + r;
            const size_t slot = G == 32 ? (size_t)r * 32 : (size_t)(r % 4) * 32 + (size_t)(r / 4) * 16;
            if (row >= nr) {
                for (int g = 0; g < ng; g++) {
                    memset(stage + (size_t)g * PR * G + slot, 0, (size_t)G);
                    P->s[p][g][r] = 0.0f;
                    if (G == 32) P->m[p][g][r] = 0.0f;
                }
                continue;
            }
            float sc[QKC / 16], mn[QKC / 32];
            unpack_row(w + (size_t)row * rb, wt, k0, kc, stage, slot, sc, mn);
            for (int g = 0; g < ng; g++) {
                P->s[p][g][r] = sc[g];
                if (wt == GM_DT_Q4_K) P->m[p][g][r] = mn[g];
            }
        }
        for (int g = 0; g < ng; g++) {
            const uint8_t *src = stage + (size_t)g * PR * G;
            uint8_t *dst = &P->q[p][(size_t)g * CH * PR * 4];
            if (G == 32) {
                __m256i z[8], t[8], u[8];
#pragma GCC unroll 8
                for (int r = 0; r < 8; r++) z[r] = _mm256_load_si256((const void *)(src + 32 * r));
#pragma GCC unroll 4
                for (int r = 0; r < 8; r += 2) {
                    t[r] = _mm256_unpacklo_epi32(z[r], z[r + 1]);
                    t[r + 1] = _mm256_unpackhi_epi32(z[r], z[r + 1]);
                }
#pragma GCC unroll 2
                for (int b = 0; b < 8; b += 4) {
                    u[b + 0] = _mm256_unpacklo_epi64(t[b], t[b + 2]);
                    u[b + 1] = _mm256_unpackhi_epi64(t[b], t[b + 2]);
                    u[b + 2] = _mm256_unpacklo_epi64(t[b + 1], t[b + 3]);
                    u[b + 3] = _mm256_unpackhi_epi64(t[b + 1], t[b + 3]);
                }
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++) {
                    _mm256_store_si256((void *)(dst + 32 * c), _mm256_permute2x128_si256(u[c], u[c + 4], 0x20));
                    _mm256_store_si256((void *)(dst + 32 * (c + 4)),
                                       _mm256_permute2x128_si256(u[c], u[c + 4], 0x31));
                }
            } else {
                __m256i z[4], t[4];
#pragma GCC unroll 4
                for (int r = 0; r < 4; r++) z[r] = _mm256_load_si256((const void *)(src + 32 * r));
                t[0] = _mm256_unpacklo_epi32(z[0], z[1]);
                t[1] = _mm256_unpackhi_epi32(z[0], z[1]);
                t[2] = _mm256_unpacklo_epi32(z[2], z[3]);
                t[3] = _mm256_unpackhi_epi32(z[2], z[3]);
                _mm256_store_si256((void *)dst, _mm256_unpacklo_epi64(t[0], t[2]));
                _mm256_store_si256((void *)(dst + 32), _mm256_unpackhi_epi64(t[0], t[2]));
                _mm256_store_si256((void *)(dst + 64), _mm256_unpacklo_epi64(t[1], t[3]));
                _mm256_store_si256((void *)(dst + 96), _mm256_unpackhi_epi64(t[1], t[3]));
            }
        }
    }
}

GM_INLINE __m256 maskload_y(const float *y, int n) {
    _Alignas(32) float tmp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (n >= 8) return _mm256_loadu_ps(y);
    memcpy(tmp, y, (size_t)n * sizeof *y);
    return _mm256_load_ps(tmp);
}

GM_INLINE void maskstore_y(float *y, __m256 v, int n) {
    _Alignas(32) float tmp[8];
    if (n >= 8) {
        _mm256_storeu_ps(y, v);
        return;
    }
    _mm256_store_ps(tmp, v);
    memcpy(y, tmp, (size_t)n * sizeof *y);
}

/* y[t .. t+TT) x [o, o + 8 NP) (+)= the packed block times x rows t.. over values [k0, k0 + kc); n0, n1:
 * valid rows of each panel. */
GM_INLINE void qmicro(const qpanel *P, int NP, int TT, gm_dtype wt, const unsigned char *xq, size_t xs, int in,
                      int k0, int kc, float *y, size_t ldy, int first, int n0, int n1) {
    const int G = wt == GM_DT_Q6_K ? 16 : 32, ng = kc / G, CH = G / 4;
    const int blk = wt == GM_DT_Q8_0 || wt == GM_DT_Q4_0 ? GM_QK : GM_QK_K;
    const __m256i ones = _mm256_set1_epi16(1);
    xrow x[QTT];
    __m256 acc[NPAN][QTT];
#pragma GCC unroll 3
    for (int u = 0; u < TT; u++) {
        x[u] = xrow_at(xq + (size_t)u * xs, wt, in);
#pragma GCC unroll 2
        for (int p = 0; p < NP; p++)
            acc[p][u] =
                first ? _mm256_setzero_ps() : maskload_y(y + (size_t)u * ldy + (size_t)(PR * p), p ? n1 : n0);
    }
    for (int g = 0; g < ng; g++) {
        const int k = k0 + g * G;
        __m256i isum[NPAN][QTT];
#pragma GCC unroll 3
        for (int u = 0; u < TT; u++) {
            int32_t corr = 0;
            if (wt == GM_DT_Q4_0)
                corr = ((const int32_t *)x[u].aux)[k / GM_QK];
            else if (wt == GM_DT_Q6_K)
                corr = -32 * ((const int16_t *)x[u].aux)[k / 16];
            const __m256i cv = _mm256_set1_epi32(corr);
#pragma GCC unroll 2
            for (int p = 0; p < NP; p++) isum[p][u] = cv;
        }
        if (wt == GM_DT_Q8_0) {
#pragma GCC unroll 8
            for (int c = 0; c < CH; c++) {
                __m256i wv[NPAN], aw[NPAN];
#pragma GCC unroll 2
                for (int p = 0; p < NP; p++) {
                    wv[p] = _mm256_load_si256((const void *)&P->q[p][(size_t)(g * CH + c) * PR * 4]);
                    aw[p] = _mm256_sign_epi8(wv[p], wv[p]);
                }
#pragma GCC unroll 3
                for (int u = 0; u < TT; u++) {
                    int32_t xw;
                    memcpy(&xw, x[u].q + k + 4 * c, 4);
                    const __m256i xb = _mm256_set1_epi32(xw);
#pragma GCC unroll 2
                    for (int p = 0; p < NP; p++)
                        isum[p][u] = _mm256_add_epi32(
                            isum[p][u],
                            _mm256_madd_epi16(_mm256_maddubs_epi16(aw[p], _mm256_sign_epi8(xb, wv[p])), ones));
                }
            }
        } else {
            /* int16 partial sums: 8 steps of levels <= 15 (Q4), 2 of levels <= 63 (Q6_K) stay below 2^15 */
            const int run = wt == GM_DT_Q6_K ? 2 : 8;
            for (int c0 = 0; c0 < CH; c0 += run) {
                __m256i s16[NPAN][QTT];
#pragma GCC unroll 3
                for (int u = 0; u < TT; u++)
#pragma GCC unroll 2
                    for (int p = 0; p < NP; p++) s16[p][u] = _mm256_setzero_si256();
#pragma GCC unroll 8
                for (int c = c0; c < c0 + run; c++) {
                    __m256i wv[NPAN];
#pragma GCC unroll 2
                    for (int p = 0; p < NP; p++)
                        wv[p] = _mm256_load_si256((const void *)&P->q[p][(size_t)(g * CH + c) * PR * 4]);
#pragma GCC unroll 3
                    for (int u = 0; u < TT; u++) {
                        int32_t xw;
                        memcpy(&xw, x[u].q + k + 4 * c, 4);
                        const __m256i xb = _mm256_set1_epi32(xw);
#pragma GCC unroll 2
                        for (int p = 0; p < NP; p++)
                            s16[p][u] = _mm256_add_epi16(s16[p][u], _mm256_maddubs_epi16(wv[p], xb));
                    }
                }
#pragma GCC unroll 3
                for (int u = 0; u < TT; u++)
#pragma GCC unroll 2
                    for (int p = 0; p < NP; p++)
                        isum[p][u] = _mm256_add_epi32(isum[p][u], _mm256_madd_epi16(s16[p][u], ones));
            }
        }
#pragma GCC unroll 3
        for (int u = 0; u < TT; u++) {
            const float dx = x[u].d[k / blk];
            const __m256 dxv = _mm256_set1_ps(dx);
            float mt = 0.0f;
            if (wt == GM_DT_Q4_K) {
                const int16_t *bs = (const int16_t *)x[u].aux + k / 16;
                mt = -dx * (float)(bs[0] + bs[1]);
            }
#pragma GCC unroll 2
            for (int p = 0; p < NP; p++) {
                acc[p][u] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[p][u]),
                                            _mm256_mul_ps(_mm256_load_ps(P->s[p][g]), dxv), acc[p][u]);
                if (wt == GM_DT_Q4_K)
                    acc[p][u] = _mm256_fmadd_ps(_mm256_load_ps(P->m[p][g]), _mm256_set1_ps(mt), acc[p][u]);
            }
        }
    }
#pragma GCC unroll 3
    for (int u = 0; u < TT; u++)
#pragma GCC unroll 2
        for (int p = 0; p < NP; p++) maskstore_y(y + (size_t)u * ldy + (size_t)(PR * p), acc[p][u], p ? n1 : n0);
}

typedef void (*qmicro_fn)(const qpanel *P, int np, int tt, const unsigned char *xq, size_t xs, int in, int k0,
                          int kc, float *y, size_t ldy, int first, int n0, int n1);
#define GM_QMICRO_FN(NAME, WT)                                                                                    \
    static void NAME(const qpanel *P, int np, int tt, const unsigned char *xq, size_t xs, int in, int k0, int kc, \
                     float *y, size_t ldy, int first, int n0, int n1) {                                           \
        switch ((np == 2 ? 4 : 0) + tt) {                                                                         \
        case 1: qmicro(P, 1, 1, WT, xq, xs, in, k0, kc, y, ldy, first, n0, n1); break;                            \
        case 2: qmicro(P, 1, 2, WT, xq, xs, in, k0, kc, y, ldy, first, n0, n1); break;                            \
        case 3: qmicro(P, 1, 3, WT, xq, xs, in, k0, kc, y, ldy, first, n0, n1); break;                            \
        case 5: qmicro(P, 2, 1, WT, xq, xs, in, k0, kc, y, ldy, first, n0, n1); break;                            \
        case 6: qmicro(P, 2, 2, WT, xq, xs, in, k0, kc, y, ldy, first, n0, n1); break;                            \
        default: qmicro(P, 2, 3, WT, xq, xs, in, k0, kc, y, ldy, first, n0, n1); break;                           \
        }                                                                                                         \
    }
GM_QMICRO_FN(qmicro_q8_0, GM_DT_Q8_0)
GM_QMICRO_FN(qmicro_q4_0, GM_DT_Q4_0)
GM_QMICRO_FN(qmicro_q4_K, GM_DT_Q4_K)
GM_QMICRO_FN(qmicro_q6_K, GM_DT_Q6_K)

static void qgemm(const gm_mm_args *a, int t0, int t1, int o0, int o1) {
    _Alignas(32) unsigned char store[sizeof(qpanel)];
    qpanel *P = (qpanel *)(void *)store;
    const gm_dtype wt = a->wt;
    const qmicro_fn fn = wt == GM_DT_Q8_0   ? qmicro_q8_0
                         : wt == GM_DT_Q4_0 ? qmicro_q4_0
                         : wt == GM_DT_Q4_K ? qmicro_q4_K
                                            : qmicro_q6_K;
    size_t rb = 0;
    gm_dtype_row_bytes(wt, (size_t)a->in, &rb);
    const size_t ldy = (size_t)a->out, xs = a->xq_stride;
    const unsigned char *w = a->w;
    gm_q_pf pf = {NULL, 0, 0, 0, 0, 0, 0}; /* the next block's rows while the micro-kernels run */
    for (int tb = t0; tb < t1; tb += QMC) {
        const int te = t1 - tb > QMC ? tb + QMC : t1;
        const int steps = (te - tb + QTT - 1) / QTT;
        for (int k0 = 0; k0 < a->in; k0 += QKC) {
            const int kc = a->in - k0 < QKC ? a->in - k0 : QKC;
            for (int o = o0; o < o1; o += NPAN * PR) {
                const int nr = o1 - o < NPAN * PR ? o1 - o : NPAN * PR;
                qpack(P, w + (size_t)o * rb, rb, wt, nr, k0, kc);
                if (o + NPAN * PR < o1) {
                    const int nn = o1 - o - NPAN * PR;
                    gm_q_pf_plan(&pf, w, rb, wt, o + NPAN * PR, nn < NPAN * PR ? nn : NPAN * PR, k0, kc);
                } else if (k0 + QKC < a->in) {
                    const int nk = a->in - k0 - QKC;
                    gm_q_pf_plan(&pf, w, rb, wt, o0, o1 - o0 < NPAN * PR ? o1 - o0 : NPAN * PR, k0 + QKC,
                                   nk < QKC ? nk : QKC);
                } else {
                    pf.total = 0;
                }
                const size_t per = (pf.total + (size_t)steps - 1) / (size_t)steps;
                const int n0 = nr < PR ? nr : PR, n1 = nr > PR ? nr - PR : 0;
                const int np = nr > PR ? 2 : 1;
                for (int t = tb; t < te; t += QTT) {
                    const int tt = te - t < QTT ? te - t : QTT;
                    gm_q_pf_some(&pf, per);
                    fn(P, np, tt, a->xq + (size_t)t * xs, xs, a->in, k0, kc, a->y + (size_t)t * ldy + (size_t)o,
                       ldy, k0 == 0, n0, n1);
                }
            }
        }
    }
}

void gm_qmatmul_range_avx2(const gm_mm_args *a, int t0, int t1, int o0, int o1) {
    if (gm_q_use_panels(a->wt, a->T)) {
        qgemm(a, t0, t1, o0, o1);
        return;
    }
    gm_qtile_fn f = a->wt == GM_DT_Q8_0   ? tiles_q8_0
                    : a->wt == GM_DT_Q4_0 ? tiles_q4_0
                    : a->wt == GM_DT_Q4_K ? tiles_q4_K
                                          : tiles_q6_K;
    gm_q_run_tiles(a->w, a->wt, a->xq, a->xq_stride, a->in, a->y, a->out, t0, t1, o0, o1, RMAX, TMAX, f);
}
