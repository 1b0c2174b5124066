/* AMX tiles (AMX-TILE + AMX-BF16) for prefill with bf16 or block-quantized W (docs/kernels.md).
 *
 * One TDPBF16PS multiplies a 16 x 32 bf16 tile by a 32 x 16 one into 16 x 16 f32 sums: 8192
 * multiply-adds, about 25 times what one AVX-512 FMA chain does in the same time on the development
 * machine (3.3 TFLOP/s per core against 131 GFLOP/s for the AVX-512 bf16 kernel). The operands:
 *   A = W: panels of 32 rows, a pass of values at a time, copied (bf16) or dequantized to bf16 (q * d is
 *       exact in f32 and rounds once), rows a cache line more than a multiple of 4 KiB apart;
 *   B = x, split into xsplit bf16 parts (gm_amx_splits: 3 for bf16 W, whose sum is x exactly, so every
 *       product is exact; 1 for quantized W, x rounded to nearest even) and repacked once per call by
 *       gm_amx_pack_x into 1 KiB tiles: for 16 rows of x and 32 values, tile row r holds the pairs
 *       (x[t][2r], x[t][2r+1]) of t = 0..15 side by side, the layout TDPBF16PS reads. The parts of a
 *       block of 32 values follow each other, and the panel holds each block of W once per part, so
 *       a split x is just more tile steps;
 *   C = 16 outputs x 16 rows of x, transposed into y on the way out.
 * f32 and f16 W keep the avx512 kernels.
 *
 * Every output is a fixed sequence: f32 tile sums over passes of AMX_KC_STEPS steps, added through y
 * in order. A row of C depends only on its row of A and column of B, so any split of the rows of x or
 * of the outputs over threads gives the same bits. */
#include <immintrin.h>
#include <stdatomic.h>
#include <string.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "tensor/cpu.h"
#include "tensor/matmul.h"
#include "tensor/quant.h"

#define GM_INLINE static inline __attribute__((always_inline))

#define AMX_K 32        /* values per tile step: one 64-byte row of bf16 */
#define AMX_KC_STEPS 64 /* tile steps per pass over a panel of W: 2048 values of a whole x, fewer of a split one
                          * (fixed per dtype: the f32 sums through y never depend on T or the split) */
#define AMX_MB 16       /* 16-row blocks of x per pass: 256 rows, 1 MiB of tiles per pass, held in L2 */
#define AMX_TILE 512    /* bf16 values in a 1 KiB B tile */
#define AMX_SUB 8       /* tile steps per slice: 32 rows x 256 values of the panel, 16 KiB */
#define AMX_PAD 32      /* bf16 values between panel rows beyond kc: one cache line, so rows spread over L1 sets */

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_cfg;

static atomic_int g_amx_state; /* 0 not asked yet, 1 usable, 2 not */

int gm_amx_usable(void) {
    int s = atomic_load_explicit(&g_amx_state, memory_order_acquire);
    if (s) return s == 1;
    const gm_cpu_features *f = gm_cpu_features_get();
    int ok = f->amx_tile && f->amx_bf16 && f->avx512f && f->avx512bw && f->avx512vl && f->avx512dq && f->avx512bf16;
#if defined(__linux__)
    /* Linux hands out the 8 KiB tile state only to processes that ask (ARCH_REQ_XCOMP_PERM for
     * XFEATURE_XTILEDATA); the grant covers every thread of the process. */
    if (ok) ok = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
#else
    ok = 0;
#endif
    atomic_store_explicit(&g_amx_state, ok ? 1 : 2, memory_order_release);
    return ok;
}

/* 16 x 16 transpose of 32-bit words. */
GM_INLINE void transpose16(__m512i r[16]) {
    __m512i a[16], b[16];
#pragma GCC unroll 8
    for (int i = 0; i < 16; i += 2) {
        a[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        a[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    /* b[4g + j], lane L: word 4L + j of rows 4g .. 4g + 3 */
#pragma GCC unroll 4
    for (int g = 0; g < 16; g += 4) {
        b[g + 0] = _mm512_unpacklo_epi64(a[g], a[g + 2]);
        b[g + 1] = _mm512_unpackhi_epi64(a[g], a[g + 2]);
        b[g + 2] = _mm512_unpacklo_epi64(a[g + 1], a[g + 3]);
        b[g + 3] = _mm512_unpackhi_epi64(a[g + 1], a[g + 3]);
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        const __m512i c1 = _mm512_shuffle_i32x4(b[j], b[4 + j], 0x88), c2 = _mm512_shuffle_i32x4(b[j], b[4 + j], 0xDD);
        const __m512i d1 = _mm512_shuffle_i32x4(b[8 + j], b[12 + j], 0x88),
                      d2 = _mm512_shuffle_i32x4(b[8 + j], b[12 + j], 0xDD);
        r[j] = _mm512_shuffle_i32x4(c1, d1, 0x88);
        r[4 + j] = _mm512_shuffle_i32x4(c2, d2, 0x88);
        r[8 + j] = _mm512_shuffle_i32x4(c1, d1, 0xDD);
        r[12 + j] = _mm512_shuffle_i32x4(c2, d2, 0xDD);
    }
}

/* 32 floats as bf16 (round to nearest even) in natural order. */
GM_INLINE __m512i bf16x32(__m512 lo, __m512 hi) { return (__m512i)_mm512_cvtne2ps_pbh(hi, lo); }

int gm_amx_splits(gm_dtype wt) { return wt == GM_DT_BF16 ? 3 : 1; }

size_t gm_amx_xb_bytes(int T, int in, int nsplit) {
    return (size_t)((T + 15) / 16) * (size_t)in * 16 * sizeof(uint16_t) * (size_t)nsplit;
}

/* The bf16 values of 32 floats as f32 again. */
GM_INLINE void bf16x32_back(__m512i v, __m512 *lo, __m512 *hi) {
    *lo = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(v)), 16));
    *hi = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(v, 1)), 16));
}

void gm_amx_pack_x(const float *x, int T, int in, int nsplit, uint16_t *xb, int b0, int b1) {
    const int nkb = in / AMX_K;
    for (int b = b0; b < b1; b++)
        for (int kb = 0; kb < nkb; kb++) {
            __m512i r[3][16];
            for (int c = 0; c < 16; c++) {
                const int t = 16 * b + c;
                if (t >= T) {
                    for (int s = 0; s < nsplit; s++) r[s][c] = _mm512_setzero_si512();
                    continue;
                }
                const float *p = x + (size_t)t * (size_t)in + (size_t)kb * AMX_K;
                __m512 lo = _mm512_loadu_ps(p), hi = _mm512_loadu_ps(p + 16);
                for (int s = 0; s < nsplit; s++) {
                    /* part s: x less the parts before it (exact in f32), rounded */
                    r[s][c] = bf16x32(lo, hi);
                    if (s + 1 < nsplit) {
                        __m512 plo, phi;
                        bf16x32_back(r[s][c], &plo, &phi);
                        lo = _mm512_sub_ps(lo, plo);
                        hi = _mm512_sub_ps(hi, phi);
                    }
                }
            }
            uint16_t *dst = xb + ((size_t)b * (size_t)nkb + (size_t)kb) * (size_t)nsplit * AMX_TILE;
            for (int s = 0; s < nsplit; s++) {
                transpose16(r[s]);
                for (int k = 0; k < 16; k++) _mm512_store_si512(dst + (size_t)s * AMX_TILE + 32 * k, r[s][k]);
            }
        }
}

/* ---- W panels ---------------------------------------------------------------------------------- */

GM_INLINE float h2f(const unsigned char *p) { return _cvtsh_ss(gm_ld_u16(p)); }

/* Rows [o, o + no) of W, values [k0, k0 + kc), as 32 bf16 rows of kc values, kc + AMX_PAD apart (rows past
 * no are zero). Copied even for bf16 W: rows whose stride is a multiple of 4 KiB all fall in one set
 * of the L1 cache, and a tile load of 16 such rows evicts itself (measured: bf16 W loaded in place ran
 * at a third of the speed). */
static void panel_fill(uint16_t *P, const void *w, gm_dtype wt, size_t rb, int o, int no, int k0, int kc, int ns) {
    const gm_dtype_traits *tr = gm_dtype_info(wt);
    _Alignas(64) float buf[AMX_KC_STEPS * AMX_K];
    const size_t len = (size_t)kc * (size_t)ns; /* each block of 32 values ns times, one per part of x */
    for (int r = 0; r < 32; r++) {
        uint16_t *dst = P + (size_t)r * (len + AMX_PAD);
        if (r >= no) {
            memset(dst, 0, len * sizeof *dst);
            continue;
        }
        if (ns > 1) { /* only bf16 W is paired with a split x */
            const uint16_t *src = (const uint16_t *)((const unsigned char *)w + (size_t)(o + r) * rb) + k0;
            for (int i = 0; i < kc; i += AMX_K)
                for (int s = 0; s < ns; s++)
                    _mm512_store_si512(dst + (size_t)i * (size_t)ns + (size_t)s * AMX_K, _mm512_loadu_si512(src + i));
            continue;
        }
        const unsigned char *row = (const unsigned char *)w + (size_t)(o + r) * rb;
        if (wt == GM_DT_BF16) {
            memcpy(dst, (const uint16_t *)row + k0, (size_t)kc * sizeof *dst);
        } else if (wt == GM_DT_Q8_0) {
            const unsigned char *p = row + (size_t)(k0 / GM_QK) * GM_Q8_0_BYTES;
            for (int i = 0; i < kc; i += GM_QK, p += GM_Q8_0_BYTES) {
                const __m512 d = _mm512_set1_ps(h2f(p));
                const __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const void *)(p + 2))));
                const __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const void *)(p + 18))));
                _mm512_store_si512(dst + i, bf16x32(_mm512_mul_ps(lo, d), _mm512_mul_ps(hi, d)));
            }
        } else if (wt == GM_DT_Q4_0) {
            const unsigned char *p = row + (size_t)(k0 / GM_QK) * GM_Q4_0_BYTES;
            const __m128i lo4 = _mm_set1_epi8(0x0F);
            const __m512i eight = _mm512_set1_epi32(8);
            for (int i = 0; i < kc; i += GM_QK, p += GM_Q4_0_BYTES) {
                const __m512 d = _mm512_set1_ps(h2f(p));
                const __m128i v = _mm_loadu_si128((const void *)(p + 2));
                const __m512i ql = _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_and_si128(v, lo4)), eight);
                const __m512i qh =
                    _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(v, 4), lo4)), eight);
                _mm512_store_si512(dst + i, bf16x32(_mm512_mul_ps(_mm512_cvtepi32_ps(ql), d),
                                                    _mm512_mul_ps(_mm512_cvtepi32_ps(qh), d)));
            }
        } else {
            tr->to_f32(row + (size_t)k0 / tr->block_elems * tr->block_bytes, buf, (size_t)kc);
            for (int i = 0; i < kc; i += 32)
                _mm512_store_si512(dst + i, bf16x32(_mm512_load_ps(buf + i), _mm512_load_ps(buf + i + 16)));
        }
    }
}

/* ---- prefetch of the next panel ----------------------------------------------------------------- */

/* While the tiles work on one panel of W, the lines of the next one are prefetched into L2, a few per
 * tile step: a panel is 32 rows read side by side (as tiles, or by panel_fill), 32 streams that the
 * hardware prefetcher does not follow well enough (measured on Q8_0 2048 x 16384 at T = 128, 1 thread:
 * 572 GFLOP/s without, 736 with). */
typedef struct {
    gm_q_pf p;       /* tensor/quant.h */
    size_t per_step; /* lines per tile step, so the next panel is in L2 when this one is done */
} amx_pf;

static void pf_plan(amx_pf *pf, const void *w, gm_dtype wt, size_t rb, int o, int no, int k0, int kc, size_t steps) {
    gm_q_pf_plan(&pf->p, w, rb, wt, o, no, k0, kc);
    pf->per_step = steps ? (pf->p.total + steps - 1) / steps : pf->p.total;
}

GM_INLINE void pf_step(amx_pf *pf) { gm_q_pf_some(&pf->p, pf->per_step); }

/* ---- tiles ------------------------------------------------------------------------------------- */

/* Tiles 0-3 hold C, 4-5 A (rows 0-15 and 16-31 of the W panel), 6-7 B (two 16-row blocks of x).
 * Tile numbers are part of the instruction, so each shape is its own function. C tile 2 * i + j is
 * A_i times B_j. */
static void run_22(const uint16_t *A, size_t lda, const uint16_t *B, size_t bs, int nk, const float *cin, float *c,
                   amx_pf *pf) {
    const char *a0 = (const char *)A, *a1 = (const char *)A + 16 * lda;
    if (cin) _tile_loadd(0, cin, 64);
    else _tile_zero(0);
    if (cin) _tile_loadd(1, cin + 256, 64);
    else _tile_zero(1);
    if (cin) _tile_loadd(2, cin + 512, 64);
    else _tile_zero(2);
    if (cin) _tile_loadd(3, cin + 768, 64);
    else _tile_zero(3);
    for (int k = 0; k < nk; k++) {
        pf_step(pf);
        _tile_loadd(4, a0 + 64 * k, lda);
        _tile_loadd(6, B + (size_t)k * AMX_TILE, 64);
        _tile_loadd(7, B + bs + (size_t)k * AMX_TILE, 64);
        _tile_loadd(5, a1 + 64 * k, lda);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, c, 64);
    _tile_stored(1, c + 256, 64);
    _tile_stored(2, c + 512, 64);
    _tile_stored(3, c + 768, 64);
}

static void run_21(const uint16_t *A, size_t lda, const uint16_t *B, size_t bs, int nk, const float *cin, float *c,
                   amx_pf *pf) {
    (void)bs;
    const char *a0 = (const char *)A, *a1 = (const char *)A + 16 * lda;
    if (cin) _tile_loadd(0, cin, 64);
    else _tile_zero(0);
    if (cin) _tile_loadd(2, cin + 512, 64);
    else _tile_zero(2);
    for (int k = 0; k < nk; k++) {
        pf_step(pf);
        _tile_loadd(6, B + (size_t)k * AMX_TILE, 64);
        _tile_loadd(4, a0 + 64 * k, lda);
        _tile_loadd(5, a1 + 64 * k, lda);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(2, 5, 6);
    }
    _tile_stored(0, c, 64);
    _tile_stored(2, c + 512, 64);
}

static void run_12(const uint16_t *A, size_t lda, const uint16_t *B, size_t bs, int nk, const float *cin, float *c,
                   amx_pf *pf) {
    const char *a0 = (const char *)A;
    if (cin) _tile_loadd(0, cin, 64);
    else _tile_zero(0);
    if (cin) _tile_loadd(1, cin + 256, 64);
    else _tile_zero(1);
    for (int k = 0; k < nk; k++) {
        pf_step(pf);
        _tile_loadd(4, a0 + 64 * k, lda);
        _tile_loadd(6, B + (size_t)k * AMX_TILE, 64);
        _tile_loadd(7, B + bs + (size_t)k * AMX_TILE, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
    }
    _tile_stored(0, c, 64);
    _tile_stored(1, c + 256, 64);
}

static void run_11(const uint16_t *A, size_t lda, const uint16_t *B, size_t bs, int nk, const float *cin, float *c,
                   amx_pf *pf) {
    (void)bs;
    const char *a0 = (const char *)A;
    if (cin) _tile_loadd(0, cin, 64);
    else _tile_zero(0);
    for (int k = 0; k < nk; k++) {
        pf_step(pf);
        _tile_loadd(4, a0 + 64 * k, lda);
        _tile_loadd(6, B + (size_t)k * AMX_TILE, 64);
        _tile_dpbf16ps(0, 4, 6);
    }
    _tile_stored(0, c, 64);
}

/* C (16 outputs o.. x 16 rows of x from tbase) into y rows [tlo, thi): stored on the first pass over
 * the values, added after. */
GM_INLINE void put_tile(const float *c, float *y, size_t ldy, int tbase, int tlo, int thi, int o, int no, int first) {
    __m512i r[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) r[i] = _mm512_load_si512(c + 16 * i);
    transpose16(r);
    const __mmask16 m = no >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << no) - 1u);
    for (int t = tlo; t < thi; t++) {
        float *yp = y + (size_t)t * ldy + (size_t)o;
        __m512 v = _mm512_castsi512_ps(r[t - tbase]);
        if (!first) v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, yp), v);
        _mm512_mask_storeu_ps(yp, m, v);
    }
}

void gm_matmul_range_amx(const gm_mm_args *a, int t0, int t1, int o0, int o1) {
    const int in = a->in, nkb = in / AMX_K, S = a->xsplit;
    const int KC = AMX_KC_STEPS / S * AMX_K; /* values per pass */
    size_t rb = 0;
    gm_dtype_row_bytes(a->wt, (size_t)in, &rb);
    _Alignas(64) uint16_t panel[32 * (AMX_KC_STEPS * AMX_K + AMX_PAD)];
    _Alignas(64) float cbuf[AMX_MB / 2 * 4 * 256];
    amx_pf pf = {{NULL, 0, 0, 0, 0, 0, 0}, 0};
    amx_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int i = 0; i < 8; i++) {
        cfg.colsb[i] = 64;
        cfg.rows[i] = 16;
    }
    _tile_loadconfig(&cfg);
    const size_t ldy = (size_t)a->out, bs = (size_t)nkb * (size_t)S * AMX_TILE;
    const int b_first = t0 / 16, b_end = (t1 + 15) / 16;
    for (int mb = b_first; mb < b_end; mb += AMX_MB) {
        const int me = b_end - mb > AMX_MB ? mb + AMX_MB : b_end;
        for (int k0 = 0; k0 < in; k0 += KC) {
            const int kc = in - k0 < KC ? in - k0 : KC, nk = kc / AMX_K * S; /* tile steps */
            const int npairs = (me - mb + 1) / 2;
            for (int o = o0; o < o1; o += 32) {
                const int no = o1 - o < 32 ? o1 - o : 32;
                /* the next panel: the following rows, or the first rows of the next pass over the values */
                if (o + 32 < o1)
                    pf_plan(&pf, a->w, a->wt, rb, o + 32, o1 - o - 32 < 32 ? o1 - o - 32 : 32, k0, kc,
                            (size_t)npairs * (size_t)nk);
                else if (k0 + KC < in)
                    pf_plan(&pf, a->w, a->wt, rb, o0, o1 - o0 < 32 ? o1 - o0 : 32, k0 + KC,
                            in - k0 - KC < KC ? in - k0 - KC : KC, (size_t)npairs * (size_t)nk);
                else
                    pf.p.total = 0;
                const size_t lda = ((size_t)kc * (size_t)S + AMX_PAD) * sizeof(uint16_t);
                panel_fill(panel, a->w, a->wt, rb, o, no, k0, kc, S);
                /* AMX_SUB steps at a time over every pair of x blocks: that slice of the panel stays in L1
                 * while the pairs pass, the sums wait in cbuf (L1) between slices */
                for (int ks = 0; ks < nk; ks += AMX_SUB) {
                    const int ns = nk - ks < AMX_SUB ? nk - ks : AMX_SUB;
                    const uint16_t *As = panel + (size_t)ks * AMX_K;
                    for (int b = mb; b < me; b += 2) {
                        const int nb = me - b >= 2 ? 2 : 1, na = no > 16 ? 2 : 1;
                        const uint16_t *B =
                            a->xb + (((size_t)b * (size_t)nkb + (size_t)(k0 / AMX_K)) * (size_t)S + (size_t)ks) *
                                        AMX_TILE;
                        float *cb = cbuf + (size_t)(b - mb) / 2 * 1024;
                        const float *cin = ks ? cb : NULL;
                        if (na == 2) {
                            if (nb == 2) run_22(As, lda, B, bs, ns, cin, cb, &pf);
                            else run_21(As, lda, B, bs, ns, cin, cb, &pf);
                        } else {
                            if (nb == 2) run_12(As, lda, B, bs, ns, cin, cb, &pf);
                            else run_11(As, lda, B, bs, ns, cin, cb, &pf);
                        }
                        if (ks + ns < nk) continue;
                        for (int i = 0; i < na; i++)
                            for (int j = 0; j < nb; j++) {
                                const int tb = 16 * (b + j), tlo = tb > t0 ? tb : t0,
                                          thi = tb + 16 < t1 ? tb + 16 : t1;
                                const int nr = no - 16 * i < 16 ? no - 16 * i : 16;
                                put_tile(cb + 256 * (2 * i + j), a->y, ldy, tb, tlo, thi, o + 16 * i, nr, k0 == 0);
                            }
                    }
                }
            }
        }
    }
    _tile_release();
}
