/* Block-quantized weight types in ggml's GGUF layouts (Q8_0, Q4_0, Q4_K, Q6_K): reference quantizers
 * (bit for bit those of ggml's quantize_row_*_ref), dequantizers, the 8-bit activation blocks the
 * integer matmul kernels multiply them with, and the scalar reference dot products.
 *
 * Layouts (little-endian, no padding; f16 = IEEE half):
 *   Q8_0  32 values,  34 bytes: f16 d, int8 q[32];                      value = q * d
 *   Q4_0  32 values,  18 bytes: f16 d, u8 qs[16]; element j < 16 is the low nibble of qs[j], element
 *         j + 16 the high nibble;                                         value = (q - 8) * d
 *   Q4_K 256 values, 144 bytes: f16 d, f16 dmin, u8 scales[12] (eight 6-bit scales sc and eight 6-bit
 *         mins m, one pair per 32 values), u8 qs[128]: each 32 bytes hold 64 values, the low nibbles
 *         the first 32, the high nibbles the next 32;                  value = d * sc * q - dmin * m
 *   Q6_K 256 values, 210 bytes: u8 ql[128] (low 4 bits), u8 qh[64] (high 2 bits), int8 scales[16] (one
 *         per 16 values), f16 d; per 128 values (ql 64 bytes, qh 32 bytes) value l + 32 i (l < 32,
 *         i = 0..3) takes the low (i < 2) or high (i >= 2) nibble of ql[l + 32 (i & 1)] and bits
 *         2i..2i+1 of qh[l];                                            value = d * sc * (q - 32)
 *
 * Floating point here is plain IEEE single evaluated in source order: no contraction into fused
 * multiply-adds (GCC in ISO C mode does not contract; quant.c tells clang not to), which is also
 * what the numpy reference in tools/ref/quant_ref.py computes. */
#ifndef GM_TENSOR_QUANT_H
#define GM_TENSOR_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "tensor/dtype.h"

#define GM_QK 32    /* values per Q8_0 / Q4_0 block */
#define GM_QK_K 256 /* values per Q4_K / Q6_K super-block */

#define GM_Q8_0_BYTES 34
#define GM_Q4_0_BYTES 18
#define GM_Q4_K_BYTES 144
#define GM_Q6_K_BYTES 210

/* Byte offsets inside the blocks. */
#define GM_Q4K_DMIN 2
#define GM_Q4K_SCALES 4
#define GM_Q4K_QS 16
#define GM_Q6K_QH 128
#define GM_Q6K_SCALES 192
#define GM_Q6K_D 208

/* ---- dtype table rows (n: a multiple of the block size) ---------------------------------------- */
void gm_quantize_q8_0(const float *src, void *dst, size_t n);
void gm_quantize_q4_0(const float *src, void *dst, size_t n);
void gm_quantize_q4_K(const float *src, void *dst, size_t n);
void gm_quantize_q6_K(const float *src, void *dst, size_t n);
void gm_dequantize_q8_0(const void *src, float *dst, size_t n);
void gm_dequantize_q4_0(const void *src, float *dst, size_t n);
void gm_dequantize_q4_K(const void *src, float *dst, size_t n);
void gm_dequantize_q6_K(const void *src, float *dst, size_t n);

/* 1 for the block-quantized dtypes above. */
int gm_dtype_is_quant(gm_dtype t);

/* ---- 8-bit activations ------------------------------------------------------------------------- */

/* A row of x as int8 in blocks of GM_QK (for Q8_0/Q4_0 weights) or GM_QK_K (for the K-quants), one
 * f32 scale per block, in natural element order so every kernel family reads the same bytes:
 *   32-blocks: d = amax / 127, q = round_half_even(x * (1 / d)) (ggml's Q8_0 rounds half away from zero
 *              and keeps d as f16; the f32 d here is a little more accurate). aux[b] (int32) =
 *              -off * sum(q of block b), off = 8 for Q4_0, 128 for Q8_0 weights: the correction that
 *              kernels multiplying unsigned weights (nibble q, or q + 128) by signed x start from.
 *   256-blocks: ggml's Q8_K, byte for byte: iscale = -127 / max with max the first value of largest
 *              magnitude, q = nearest_int(iscale * x) (round half even) capped at 127, d = 1 / iscale;
 *              aux holds the int16 sums of q over each 16 values.
 * Byte layout of one quantized row: q[in] padded to a multiple of 64, then d[in / block] (f32), then
 * aux. gm_xq_row_bytes gives the size (a multiple of 64 so rows stay aligned). */
typedef struct {
    int8_t *q;
    float *d;
    void *aux; /* int32 per 32-block, or int16 per 16 values of a 256-block */
} gm_xq_row;

size_t gm_xq_row_bytes(gm_dtype wt, int in);
/* Pointers into a row laid out as above at base (64-byte aligned for the SIMD kernels' sake). */
gm_xq_row gm_xq_row_at(void *base, gm_dtype wt, int in);
/* Quantize one row of in values for multiplication with weights of type wt. */
void gm_xq_quantize_row(const float *x, gm_dtype wt, int in, void *base);

/* ---- dot products ------------------------------------------------------------------------------ */

/* sum over the row of dequantized W row w (in values of type wt) times the quantized activation row:
 * integer block sums, combined in f32 block by block in order. The scalar reference the SIMD kernels
 * are tested against (they compute the same integer sums and combine them in another order). */
float gm_qdot_scalar(gm_dtype wt, const void *w, const void *xq_base, int in);

/* How the SIMD families walk the outputs: groups of up to rmax rows of W (W read once per block of x
 * rows) times up to tmax rows of x, each tile a whole-row dot product per pair. A pair's arithmetic
 * never depends on the tile it falls in, so any split of the ranges gives the same bits. Rows of x
 * go in blocks of about 256 KiB of quantized bytes, so a block stays in L2 while the W groups pass. */
typedef void (*gm_qtile_fn)(const unsigned char *w, size_t w_row_bytes, const unsigned char *xq, size_t xq_stride,
                            int in, float *y, size_t ldy, int R, int TT);
static inline void gm_q_run_tiles(const void *w, gm_dtype wt, const unsigned char *xq, size_t xq_stride, int in,
                                  float *y, int out, int t0, int t1, int o0, int o1, int rmax, int tmax,
                                  gm_qtile_fn tile) {
    size_t rb = 0;
    gm_dtype_row_bytes(wt, (size_t)in, &rb);
    int mc = (int)((256u << 10) / xq_stride);
    mc = mc < tmax ? tmax : mc / tmax * tmax;
    for (int tb = t0; tb < t1; tb += mc) {
        int te = t1 - tb > mc ? tb + mc : t1;
        for (int o = o0; o < o1;) {
            int R = o1 - o >= rmax ? rmax : 1;
            const unsigned char *wo = (const unsigned char *)w + (size_t)o * rb;
            for (int t = tb; t < te; t += tmax) {
                int TT = te - t < tmax ? te - t : tmax;
                tile(wo, rb, xq + (size_t)t * xq_stride, xq_stride, in, y + (size_t)t * (size_t)out + (size_t)o,
                     (size_t)out, R, TT);
            }
            o += R;
        }
    }
}

/* Row-dot tiles: fetch bytes [p + ahead, p + ahead + n), the same blocks two groups of rows of W on.
 * Rows are a few hundred bytes to a few KiB and a tile reads several side by side, streams too short
 * for the hardware prefetcher to follow; without this, decode waits on DRAM latency. */
static inline void gm_q_prefetch(const unsigned char *p, size_t ahead, size_t n) {
    uintptr_t a = (uintptr_t)p + ahead; /* may point past W: a prefetch never faults */
    for (size_t o = 0; o < n; o += 64) __builtin_prefetch((const void *)(a + o));
    __builtin_prefetch((const void *)(a + n - 1));
}

/* Panel kernels (quant_avx2.c, quant_avx512.c, matmul_amx.c) read a block of W as many rows side by
 * side, a few cache lines each: too short a stream per row for the hardware prefetcher. While they work
 * on one block they prefetch the next into L2, a few lines at a time: gm_q_pf_plan for rows [o, o + nr)
 * and values [k0, k0 + kc) of W (any dtype with whole blocks), then gm_q_pf_some(n) between steps. */
typedef struct {
    const char *base;
    size_t rb, lines_per_row, total, next, r, c;
} gm_q_pf;

static inline void gm_q_pf_plan(gm_q_pf *pf, const void *w, size_t rb, gm_dtype wt, int o, int nr, int k0, int kc) {
    const gm_dtype_traits *tr = gm_dtype_info(wt);
    const size_t off = (size_t)k0 / tr->block_elems * tr->block_bytes,
                 len = (size_t)kc / tr->block_elems * tr->block_bytes;
    pf->base = (const char *)w + (size_t)o * rb + off;
    pf->rb = rb;
    pf->lines_per_row = (len + 63) / 64 + 1;
    pf->total = nr > 0 ? pf->lines_per_row * (size_t)nr : 0;
    pf->next = pf->r = pf->c = 0;
}

static inline void gm_q_pf_some(gm_q_pf *pf, size_t n) {
    for (size_t end = pf->next + n < pf->total ? pf->next + n : pf->total; pf->next < end; pf->next++) {
        __builtin_prefetch(pf->base + pf->r * pf->rb + pf->c * 64, 0, 2); /* locality 2: prefetcht1, into L2 */
        if (++pf->c == pf->lines_per_row) {
            pf->c = 0;
            pf->r++;
        }
    }
}

/* Row-dot tiles read W once whatever T but convert every block's sums to f32 per row of x; packed
 * panels (AVX-512, AVX2) pay a repacking pass over W and then need one f32 step per 16 or 8 rows of W.
 * Panels win above a few rows of x: crossovers measured on AVX-512 VNNI and AVX2 (2048 x 2048, one
 * thread) at T of about 6 (Q4_0), 8 (Q8_0), 10 (Q4_K) and 12 (Q6_K). Depends on T only, so every range
 * of a call takes the same path. */
static inline int gm_q_use_panels(gm_dtype wt, int T) {
    const int last_tiles = wt == GM_DT_Q4_0 ? 5 : wt == GM_DT_Q8_0 ? 7 : wt == GM_DT_Q4_K ? 9 : 11;
    return T > last_tiles;
}

/* Q4_K: the eight 6-bit scales and mins of a super-block's 12 scale bytes. */
static inline void gm_q4k_scales(const uint8_t *s, uint8_t sc[8], uint8_t m[8]) {
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 63;
        m[j] = s[j + 4] & 63;
        sc[j + 4] = (uint8_t)((s[j + 8] & 0xF) | ((s[j] >> 6) << 4));
        m[j + 4] = (uint8_t)((s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4));
    }
}

static inline uint16_t gm_ld_u16(const void *p) {
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

#endif
