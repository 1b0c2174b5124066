/* AVX-512 matmul kernels (F/BW/VL/DQ; no BF16 instructions: x must stay f32, so vdpbf16ps is out).
 * Small T: tiles of 4 rows of W x up to 4 rows of x, dot products over the whole row, W streamed once.
 * Large T: W converted and transposed into 32-wide f32 panels, then a 12x32 register-blocked
 * outer-product kernel reuses each panel across all rows of x. */
#include <immintrin.h>

#include "tensor/matmul.h"

#define GM_INLINE static inline __attribute__((always_inline))

/* ---- row dot products (T <= GM_MM_GEMV_MAX_T) ------------------------------------------------- */


/* 32 weights as two f32 vectors. For bf16 the 32-bit view of the load gives the even elements by a
 * shift and the odd ones by a mask (one op per 16 weights); x is permuted to match (load_x32). */
GM_INLINE void load_w32(const void *w, gm_dtype wt, size_t off, __mmask32 m, __m512 *a, __m512 *b) {
    if (wt == GM_DT_F32) {
        const float *p = (const float *)w + off;
        *a = _mm512_maskz_loadu_ps((__mmask16)m, p);
        *b = _mm512_maskz_loadu_ps((__mmask16)(m >> 16), p + 16);
    } else if (wt == GM_DT_BF16) {
        __m512i v = _mm512_maskz_loadu_epi16(m, (const uint16_t *)w + off);
        *a = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
        *b = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32((int)0xffff0000u)));
    } else {
        __m512i v = _mm512_maskz_loadu_epi16(m, (const uint16_t *)w + off);
        *a = _mm512_cvtph_ps(_mm512_castsi512_si256(v));
        *b = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(v, 1));
    }
}

GM_INLINE void load_x32(const float *x, gm_dtype wt, __mmask32 m, __m512 *a, __m512 *b) {
    __m512 lo = _mm512_maskz_loadu_ps((__mmask16)m, x);
    __m512 hi = _mm512_maskz_loadu_ps((__mmask16)(m >> 16), x + 16);
    if (wt == GM_DT_BF16) {
        const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        *a = _mm512_permutex2var_ps(lo, even, hi);
        *b = _mm512_permutex2var_ps(lo, odd, hi);
    } else {
        *a = lo;
        *b = hi;
    }
}

/* R rows of W against TT rows of x over the whole row length. With few rows of x (T <= 2) each pair
 * gets two accumulators (one per half of a 32-wide step) to split the FMA latency chain; with more
 * there are enough independent pairs and one accumulator each leaves room for a 4x4 tile. The
 * scheme depends on T only, and a row's arithmetic never depends on R or TT, so tails and thread
 * splits give the same bits. */
GM_INLINE void dot_tile(const gm_mm_args *a, int t, int o, int R, int TT, int dbl, gm_dtype wt) {
    const size_t in = (size_t)a->in, esz = wt == GM_DT_F32 ? 4 : 2;
    /* Each row of a tile is its own short stream, which the hardware prefetcher picks up late: the
     * same lines of the next tile are prefetched, one tile (R rows) ahead, when that is near enough to
     * stay in L1 (measured on the AVX-512 VM, T = 1: bf16 2048-3072 values a row 13.9 -> 15.2 GB/s on
     * one thread, 26.7 -> 29.7 on two; 24576 a row, 196 KiB ahead, a little slower, so not there). */
    const size_t ahead = (size_t)R * in * esz;
    const int pf = ahead <= GM_DOT_PF_MAX;
    const char *wbytes = (const char *)a->w;
    __m512 acc[4][4][2];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++) acc[r][u][0] = acc[r][u][1] = _mm512_setzero_ps();
    for (size_t k = 0; k < in; k += 32) {
        __mmask32 m = in - k >= 32 ? 0xffffffffu : (__mmask32)((1u << (in - k)) - 1u);
        __m512 xa[4], xb[4];
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++) load_x32(a->x + (size_t)(t + u) * in + k, wt, m, &xa[u], &xb[u]);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m512 wa, wb;
            if (pf) /* may point past W: a prefetch never faults */
                for (size_t l = 0; l < 32 * esz; l += 64)
                    _mm_prefetch(wbytes + ((size_t)(o + r) * in + k) * esz + ahead + l, _MM_HINT_T0);
            load_w32(a->w, wt, (size_t)(o + r) * in + k, m, &wa, &wb);
#pragma GCC unroll 4
            for (int u = 0; u < TT; u++) {
                if (dbl) {
                    acc[r][u][0] = _mm512_fmadd_ps(wa, xa[u], acc[r][u][0]);
                    acc[r][u][1] = _mm512_fmadd_ps(wb, xb[u], acc[r][u][1]);
                } else {
                    acc[r][u][0] = _mm512_fmadd_ps(wb, xb[u], _mm512_fmadd_ps(wa, xa[u], acc[r][u][0]));
                }
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++)
            a->y[(size_t)(t + u) * (size_t)a->out + (size_t)(o + r)] =
                _mm512_reduce_add_ps(dbl ? _mm512_add_ps(acc[r][u][0], acc[r][u][1]) : acc[r][u][0]);
}

/* Groups of R rows of W outer, rows of x inner: the R rows stay in cache while every row of x
 * passes, so W comes from memory once whatever T. */
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

#define MR 12  /* rows of x per micro-tile: 12 x 2 accumulators + 2 panel vectors + 1 broadcast */
#define NR 32  /* outputs per panel: two zmm */
#define KC 256 /* panel depth: 256 x 32 f32 = 32 KiB, stays in L1 while all rows of x stream past */
#define MC 384 /* rows of x per block: MC x KC f32 = 384 KiB stays in L2 across the panels */

/* In-register 16x16 transpose: unpack pairs of rows, then pairs of pairs, then 128-bit lanes. */
GM_INLINE void transpose16(__m512 r[16]) {
    __m512 t[16], u[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) {
        __m512d a0 = _mm512_castps_pd(t[4 * g]), a1 = _mm512_castps_pd(t[4 * g + 1]);
        __m512d b0 = _mm512_castps_pd(t[4 * g + 2]), b1 = _mm512_castps_pd(t[4 * g + 3]);
        u[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, b0)); /* column 4l+0 of rows 4g..4g+3 */
        u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, b0));
        u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, b1));
        u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, b1));
    }
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88);
        __m512 v1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xdd);
        __m512 v2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
        __m512 v3 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xdd);
        r[c] = _mm512_shuffle_f32x4(v0, v2, 0x88);
        r[4 + c] = _mm512_shuffle_f32x4(v1, v3, 0x88);
        r[8 + c] = _mm512_shuffle_f32x4(v0, v2, 0xdd);
        r[12 + c] = _mm512_shuffle_f32x4(v1, v3, 0xdd);
    }
}

GM_INLINE __m512 load_w16(const void *w, gm_dtype wt, size_t off, __mmask16 m) {
    if (wt == GM_DT_F32) return _mm512_maskz_loadu_ps(m, (const float *)w + off);
    __m256i v = _mm256_maskz_loadu_epi16(m, (const uint16_t *)w + off);
    if (wt == GM_DT_BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
    return _mm512_cvtph_ps(v);
}

/* dst[k][j] = W[o + j][k0 + k] as f32 for k < kc, j < NR; rows at or past nr are zero. */
GM_INLINE void pack_panel(float *dst, const gm_mm_args *a, int o, int nr, int k0, int kc, gm_dtype wt) {
    const size_t in = (size_t)a->in;
    for (int h = 0; h < NR; h += 16) {
        int rows = nr - h;
        if (rows > 16) rows = 16;
        for (int kk = 0; kk < kc; kk += 16) {
            int n = kc - kk < 16 ? kc - kk : 16;
            __mmask16 m = (__mmask16)((1u << n) - 1u);
            __m512 r[16];
#pragma GCC unroll 16
            for (int j = 0; j < 16; j++)
                r[j] = j < rows ? load_w16(a->w, wt, (size_t)(o + h + j) * in + (size_t)(k0 + kk), m)
                                : _mm512_setzero_ps();
            transpose16(r);
            float *d = dst + (size_t)kk * NR + h;
            if (n == 16) {
#pragma GCC unroll 16
                for (int j = 0; j < 16; j++) _mm512_store_ps(d + j * NR, r[j]);
            } else {
                for (int j = 0; j < n; j++) _mm512_store_ps(d + j * NR, r[j]);
            }
        }
    }
}

/* y[mr rows, 32 cols] (+)= x[mr rows, kc] · panel. Each output is one running fmadd chain over k in
 * order, so the result is independent of how rows and columns are blocked or split over threads. */
GM_INLINE void micro(int mr, const float *x, size_t ldx, const float *panel, int kc, float *y, size_t ldy,
                     int first, __mmask16 m0, __mmask16 m1) {
    __m512 c[MR][2];
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++) {
        if (first) {
            c[r][0] = _mm512_setzero_ps();
            c[r][1] = _mm512_setzero_ps();
        } else {
            c[r][0] = _mm512_maskz_loadu_ps(m0, y + r * ldy);
            c[r][1] = _mm512_maskz_loadu_ps(m1, y + r * ldy + 16);
        }
    }
    for (int k = 0; k < kc; k++) {
        __m512 w0 = _mm512_load_ps(panel + (size_t)k * NR), w1 = _mm512_load_ps(panel + (size_t)k * NR + 16);
#pragma GCC unroll 12
        for (int r = 0; r < mr; r++) {
            __m512 xb = _mm512_set1_ps(x[r * ldx + (size_t)k]);
            c[r][0] = _mm512_fmadd_ps(w0, xb, c[r][0]);
            c[r][1] = _mm512_fmadd_ps(w1, xb, c[r][1]);
        }
    }
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++) {
        _mm512_mask_storeu_ps(y + r * ldy, m0, c[r][0]);
        _mm512_mask_storeu_ps(y + r * ldy + 16, m1, c[r][1]);
    }
}

static void micro_any(int mr, const float *x, size_t ldx, const float *panel, int kc, float *y, size_t ldy,
                      int first, __mmask16 m0, __mmask16 m1) {
    switch (mr) {
#define GM_CASE(n) case n: micro(n, x, ldx, panel, kc, y, ldy, first, m0, m1); break;
        GM_CASE(1) GM_CASE(2) GM_CASE(3) GM_CASE(4) GM_CASE(5) GM_CASE(6)
        GM_CASE(7) GM_CASE(8) GM_CASE(9) GM_CASE(10) GM_CASE(11) GM_CASE(12)
#undef GM_CASE
    default: break;
    }
}

/* Packing reads NR rows a few cache lines each: too short for the hardware prefetcher, so it would
 * wait on memory latency. While the kernels run on one panel, prefetch the next panel's lines. */
typedef struct {
    const char *base; /* first byte of the next panel's first row segment */
    size_t row_stride, lines_per_row, total, next;
} gm_prefetch;

GM_INLINE void prefetch_plan(gm_prefetch *pf, const gm_mm_args *a, int o, int nr, int k0, int kc, size_t esz) {
    pf->next = 0;
    pf->total = 0;
    if (nr <= 0) return;
    pf->row_stride = (size_t)a->in * esz;
    pf->base = (const char *)a->w + (size_t)o * pf->row_stride + (size_t)k0 * esz;
    pf->lines_per_row = ((size_t)kc * esz + 63) / 64;
    pf->total = pf->lines_per_row * (size_t)nr;
}

GM_INLINE void prefetch_some(gm_prefetch *pf, size_t n) {
    for (size_t end = pf->next + n < pf->total ? pf->next + n : pf->total; pf->next < end; pf->next++) {
        size_t r = pf->next / pf->lines_per_row, c = pf->next % pf->lines_per_row;
        _mm_prefetch(pf->base + r * pf->row_stride + c * 64, _MM_HINT_T1);
    }
}

GM_INLINE void gemm(const gm_mm_args *a, int t0, int t1, int o0, int o1, gm_dtype wt) {
    _Alignas(64) float panel[KC * NR];
    const size_t in = (size_t)a->in, ldy = (size_t)a->out, esz = wt == GM_DT_F32 ? 4 : 2;
    gm_prefetch pf = {NULL, 0, 0, 0, 0};
    for (int tb = t0; tb < t1; tb += MC) {
        int te = t1 - tb > MC ? tb + MC : t1;
        int chunks = (te - tb + MR - 1) / MR;
        for (int k0 = 0; k0 < a->in; k0 += KC) {
            int kc = a->in - k0 < KC ? a->in - k0 : KC;
            for (int o = o0; o < o1; o += NR) {
                int nr = o1 - o < NR ? o1 - o : NR;
                __mmask16 m0 = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1u);
                __mmask16 m1 = nr >= 32 ? 0xffff : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1u);
                pack_panel(panel, a, o, nr, k0, kc, wt);
                /* next panel: the following rows, or the first rows of the next k block */
                if (o + NR < o1) prefetch_plan(&pf, a, o + NR, o1 - o - NR < NR ? o1 - o - NR : NR, k0, kc, esz);
                else if (k0 + KC < a->in)
                    prefetch_plan(&pf, a, o0, o1 - o0 < NR ? o1 - o0 : NR, k0 + KC,
                                  a->in - k0 - KC < KC ? a->in - k0 - KC : KC, esz);
                else pf.total = 0;
                size_t per = (pf.total + (size_t)chunks - 1) / (size_t)chunks;
                for (int t = tb; t < te; t += MR) {
                    int mr = te - t < MR ? te - t : MR;
                    const float *x = a->x + (size_t)t * in + (size_t)k0;
                    float *y = a->y + (size_t)t * ldy + (size_t)o;
                    prefetch_some(&pf, per);
                    if (mr == MR) micro(MR, x, in, panel, kc, y, ldy, k0 == 0, m0, m1);
                    else micro_any(mr, x, in, panel, kc, y, ldy, k0 == 0, m0, m1);
                }
            }
        }
    }
}

static void gemm_f32(const gm_mm_args *a, int t0, int t1, int o0, int o1) { gemm(a, t0, t1, o0, o1, GM_DT_F32); }
static void gemm_f16(const gm_mm_args *a, int t0, int t1, int o0, int o1) { gemm(a, t0, t1, o0, o1, GM_DT_F16); }
static void gemm_bf16(const gm_mm_args *a, int t0, int t1, int o0, int o1) { gemm(a, t0, t1, o0, o1, GM_DT_BF16); }

void gm_matmul_range_avx512(const gm_mm_args *a, int t0, int t1, int o0, int o1) {
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
