/* AVX2 + FMA + F16C matmul kernels, same plan as the AVX-512 ones with 8-wide vectors and 16
 * registers: row dot tiles for small T, and for large T 16-wide f32 panels of W with a 6x16
 * register-blocked outer-product kernel. Partial vectors at row ends go through zero-padded copies. */
#include <immintrin.h>
#include <string.h>

#include "tensor/matmul.h"

#define GM_INLINE static inline __attribute__((always_inline))

/* ---- row dot products (T <= GM_MM_GEMV_MAX_T) ------------------------------------------------- */

/* 8 consecutive weights as f32 (bf16: zero-extend and shift, which keeps x in natural order). */
GM_INLINE __m256 load_w8(const void *w, gm_dtype wt, size_t off) {
    if (wt == GM_DT_F32) return _mm256_loadu_ps((const float *)w + off);
    __m128i v = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + off));
    if (wt == GM_DT_BF16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
    return _mm256_cvtph_ps(v);
}

/* R rows of W against TT rows of x over the whole row, 16 columns a step in two halves of 8. With
 * T <= 2 each pair keeps one accumulator per half (splits the FMA latency chain); with more rows
 * of x one accumulator per pair leaves registers for a 2x4 tile. The scheme depends on T only and
 * a row's arithmetic never on R or TT, so tails and thread splits give the same bits. */
GM_INLINE void dot_tile(const gm_mm_args *a, int t, int o, int R, int TT, int dbl, gm_dtype wt) {
    const size_t in = (size_t)a->in, esz = wt == GM_DT_F32 ? 4 : 2;
    const size_t full = in & ~(size_t)15;
    /* the next tile's lines, one tile ahead, as in matmul_avx512.c (measured there and here) */
    const size_t ahead = (size_t)R * in * esz;
    const int pf = ahead <= GM_DOT_PF_MAX;
    __m256 acc[4][4][2];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++) acc[r][u][0] = acc[r][u][1] = _mm256_setzero_ps();
    /* The last, partial step reads zero-padded copies so its arithmetic matches a full step. */
    _Alignas(32) float xt[4][16];
    _Alignas(32) unsigned char wtail[4][64];
    for (size_t k = 0; k < in; k += 16) {
        const float *xp[4];
        const void *wp[4];
        size_t off = k;
        if (k == full) {
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
            for (int r = 0; r < R; r++) {
                wp[r] = (const unsigned char *)a->w + (size_t)(o + r) * in * esz;
                if (pf) /* may point past W: a prefetch never faults */
                    for (size_t l = 0; l < 16 * esz; l += 64)
                        _mm_prefetch((const char *)wp[r] + k * esz + ahead + l, _MM_HINT_T0);
            }
        }
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256 xv[4];
#pragma GCC unroll 4
            for (int u = 0; u < TT; u++) xv[u] = _mm256_loadu_ps(xp[u] + 8 * h);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                __m256 wv = load_w8(wp[r], wt, off + 8 * (size_t)h);
#pragma GCC unroll 4
                for (int u = 0; u < TT; u++) {
                    int slot = dbl ? h : 0;
                    acc[r][u][slot] = _mm256_fmadd_ps(wv, xv[u], acc[r][u][slot]);
                }
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++) {
            __m256 s = dbl ? _mm256_add_ps(acc[r][u][0], acc[r][u][1]) : acc[r][u][0];
            __m128 q = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
            q = _mm_add_ps(q, _mm_movehl_ps(q, q));
            q = _mm_add_ss(q, _mm_movehdup_ps(q));
            a->y[(size_t)(t + u) * (size_t)a->out + (size_t)(o + r)] = _mm_cvtss_f32(q);
        }
}

/* Groups of R rows of W outer, rows of x inner: the R rows stay in cache while every row of x
 * passes, so W comes from memory once whatever T. */
GM_INLINE void dot_group(const gm_mm_args *a, int t0, int t1, int o, int R, gm_dtype wt) {
    if (a->T <= 2) {
        for (int t = t0; t < t1; t++) dot_tile(a, t, o, R, 1, 1, wt);
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
    if (a->T <= 2)
        for (; o + 4 <= o1; o += 4) dot_group(a, t0, t1, o, 4, wt);
    else
        for (; o + 2 <= o1; o += 2) dot_group(a, t0, t1, o, 2, wt);
    for (; o < o1; o++) dot_group(a, t0, t1, o, 1, wt);
}

static void gemv_f32(const gm_mm_args *a, int t0, int t1, int o0, int o1) { dot_rows(a, t0, t1, o0, o1, GM_DT_F32); }
static void gemv_f16(const gm_mm_args *a, int t0, int t1, int o0, int o1) { dot_rows(a, t0, t1, o0, o1, GM_DT_F16); }
static void gemv_bf16(const gm_mm_args *a, int t0, int t1, int o0, int o1) {
    dot_rows(a, t0, t1, o0, o1, GM_DT_BF16);
}

/* ---- packed tiles (T > GM_MM_GEMV_MAX_T) ------------------------------------------------------ */

#define MR 6   /* 6 x 2 accumulators + 2 panel vectors + 1 broadcast = 15 of 16 registers */
#define NR 16
#define KC 256 /* panel 256 x 16 f32 = 16 KiB: L1 */
#define MC 384

GM_INLINE void transpose8(__m256 r[8]) {
    __m256 t[8], s[8];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
#pragma GCC unroll 2
    for (int g = 0; g < 2; g++) {
        s[4 * g + 0] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        s[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xee);
        s[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        s[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xee);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(s[i], s[4 + i], 0x20);
        r[4 + i] = _mm256_permute2f128_ps(s[i], s[4 + i], 0x31);
    }
}

GM_INLINE float load_w1(const void *w, gm_dtype wt, size_t off) {
    if (wt == GM_DT_F32) return ((const float *)w)[off];
    if (wt == GM_DT_BF16) return gm_bf16_to_f32(((const uint16_t *)w)[off]);
    return gm_f16_to_f32(((const uint16_t *)w)[off]);
}

/* dst[k][j] = W[o + j][k0 + k] as f32 for k < kc, j < NR; rows at or past nr are zero. */
GM_INLINE void pack_panel(float *dst, const gm_mm_args *a, int o, int nr, int k0, int kc, gm_dtype wt) {
    const size_t in = (size_t)a->in;
    for (int h = 0; h < NR; h += 8) {
        int rows = nr - h;
        rows = rows > 8 ? 8 : rows < 0 ? 0 : rows;
        for (int kk = 0; kk < kc; kk += 8) {
            int n = kc - kk < 8 ? kc - kk : 8;
            __m256 r[8];
            if (rows == 8 && n == 8) {
#pragma GCC unroll 8
                for (int j = 0; j < 8; j++) r[j] = load_w8(a->w, wt, (size_t)(o + h + j) * in + (size_t)(k0 + kk));
            } else {
                _Alignas(32) float tmp[8][8];
                memset(tmp, 0, sizeof tmp);
                for (int j = 0; j < rows; j++)
                    for (int i = 0; i < n; i++)
                        tmp[j][i] = load_w1(a->w, wt, (size_t)(o + h + j) * in + (size_t)(k0 + kk + i));
                for (int j = 0; j < 8; j++) r[j] = _mm256_load_ps(tmp[j]);
            }
            transpose8(r);
            float *d = dst + (size_t)kk * NR + h;
            for (int j = 0; j < n; j++) _mm256_store_ps(d + j * NR, r[j]);
        }
    }
}

/* One running fmadd chain per output over k in order: blocking and thread split cannot change bits. */
GM_INLINE void micro(int mr, const float *x, size_t ldx, const float *panel, int kc, float *y, size_t ldy,
                     int first, int nr) {
    __m256 c[MR][2];
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr), lane);
    const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr - 8), lane);
#pragma GCC unroll 6
    for (int r = 0; r < mr; r++) {
        if (first) {
            c[r][0] = _mm256_setzero_ps();
            c[r][1] = _mm256_setzero_ps();
        } else {
            c[r][0] = _mm256_maskload_ps(y + r * ldy, m0);
            c[r][1] = _mm256_maskload_ps(y + r * ldy + 8, m1);
        }
    }
    for (int k = 0; k < kc; k++) {
        __m256 w0 = _mm256_load_ps(panel + (size_t)k * NR), w1 = _mm256_load_ps(panel + (size_t)k * NR + 8);
#pragma GCC unroll 6
        for (int r = 0; r < mr; r++) {
            __m256 xb = _mm256_broadcast_ss(x + r * ldx + (size_t)k);
            c[r][0] = _mm256_fmadd_ps(w0, xb, c[r][0]);
            c[r][1] = _mm256_fmadd_ps(w1, xb, c[r][1]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < mr; r++) {
        _mm256_maskstore_ps(y + r * ldy, m0, c[r][0]);
        _mm256_maskstore_ps(y + r * ldy + 8, m1, c[r][1]);
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

/* Packing reads NR rows a few cache lines each: too short for the hardware prefetcher, so it would
 * wait on memory latency. While the kernels run on one panel, prefetch the next panel's lines. */
typedef struct {
    const char *base;
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
    _Alignas(32) float panel[KC * NR];
    const size_t in = (size_t)a->in, ldy = (size_t)a->out, esz = wt == GM_DT_F32 ? 4 : 2;
    gm_prefetch pf = {NULL, 0, 0, 0, 0};
    for (int tb = t0; tb < t1; tb += MC) {
        int te = t1 - tb > MC ? tb + MC : t1;
        int chunks = (te - tb + MR - 1) / MR;
        for (int k0 = 0; k0 < a->in; k0 += KC) {
            int kc = a->in - k0 < KC ? a->in - k0 : KC;
            for (int o = o0; o < o1; o += NR) {
                int nr = o1 - o < NR ? o1 - o : NR;
                pack_panel(panel, a, o, nr, k0, kc, wt);
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

void gm_matmul_range_avx2(const gm_mm_args *a, int t0, int t1, int o0, int o1) {
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
