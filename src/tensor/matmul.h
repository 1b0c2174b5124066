/* y = x · Wᵀ for a PyTorch-layout weight W [out, in] in any dtype, f32 activations and accumulation.
 * Decode and short prompts (small T) stream W once through row-dot tiles; long prefill converts W
 * tiles to f32 once and reuses them across the rows of x. One kernel family per instruction set,
 * picked at run time (tensor/cpu.h). */
#ifndef GM_TENSOR_MATMUL_H
#define GM_TENSOR_MATMUL_H

#include "base/threads.h"
#include "tensor/dtype.h"

/* y[t*out + o] = sum_i x[t*in + i] * W[o*in + i] for t < T, o < out. y must not overlap x or w.
 * Work is split over the pool by output rows (or by rows of x when out is small); every output is
 * summed in the same order whatever the number of threads, so results are bitwise reproducible.
 * A dtype with no SIMD kernel goes through its traits row conversion (slow but correct).
 * Block-quantized W (Q8_0, Q4_0, Q4_K, Q6_K; rows in ggml's layout, row o at o * row_bytes): each row
 * of x is first quantized to 8 bits per block (tensor/quant.h) and the products are integer block
 * sums scaled in f32, for every T (row-dot tiles for a few rows of x, repacked 8-bit panels above,
 * gm_q_use_panels). The activations' rounding costs about 0.5 % (Q8_0, Q4_0) to 0.7 % (K types)
 * relative RMS error on gaussian x, more when a few channels are outliers. `in` must be a whole
 * number of blocks (32 for Q8_0/Q4_0, 256 for the K types, as GGUF requires); for any other `in`
 * every output is set to NaN. */
void gm_matmul(float *y, const float *x, const void *w, gm_dtype wt, int T, int in, int out, gm_pool *pool);

/* Force a kernel family for matmul ("scalar", "avx2", "avx512", "neon", or "auto" for the
 * default of tensor/cpu.h); returns 0 and changes nothing if it is unknown or cannot run here.
 * "amx" is the avx512 family with AMX tiles for prefill (T >= GM_AMX_MIN_T) of bf16 and block-quantized
 * W (matmul_amx.c: bf16 W as exact as the avx512 kernels, quantized W with x rounded to bf16). "auto"
 * picks it where the CPU has AMX-BF16 and the family would be avx512, unless the environment sets
 * GM_AMX=0; naming "avx512" turns it off. */
int gm_matmul_set_isa(const char *isa);
const char *gm_matmul_isa(void);

/* ---- shared with the per-ISA kernel files; not for callers ----------------------------------- */

/* T at or below this uses row-dot tiles (W streamed once; no packing cost, which dominates at small
 * T); above, packed tiles (x traffic of the row-dot tiles outgrows L2). Crossover measured at
 * 16..32 on AVX-512 for 2048x16384 and 16384x2048. */
#ifndef GM_MM_GEMV_MAX_T
#define GM_MM_GEMV_MAX_T 16
#endif

/* Float row-dot tiles prefetch the next tile's lines when that tile starts at most this many bytes
 * ahead (nearer stays in L1; matmul_avx512.c has the measurements). */
#define GM_DOT_PF_MAX (64u << 10)

typedef struct {
    float *y;
    const float *x;
    const void *w;
    gm_dtype wt;
    int T, in, out;
    /* Quantized W only: the rows of x quantized (gm_xq_quantize_row), row t at xq + t * xq_stride. */
    const unsigned char *xq;
    size_t xq_stride;
    /* AMX only: x as xsplit bf16 parts, repacked in tiles (gm_amx_pack_x). */
    const uint16_t *xb;
    int xsplit;
} gm_mm_args;

/* Compute y for rows t in [t0, t1) and outputs o in [o0, o1); wt is F32, F16 or BF16. The choice
 * between row-dot and tiled code depends on a->T only, never on the range, so any split of the ranges
 * gives the same bits. */
typedef void (*gm_mm_range_fn)(const gm_mm_args *a, int t0, int t1, int o0, int o1);
void gm_matmul_range_scalar(const gm_mm_args *a, int t0, int t1, int o0, int o1);
#ifdef GM_HAVE_X86
void gm_matmul_range_avx2(const gm_mm_args *a, int t0, int t1, int o0, int o1);
void gm_matmul_range_avx512(const gm_mm_args *a, int t0, int t1, int o0, int o1);
#endif
#ifdef GM_HAVE_NEON
void gm_matmul_range_neon(const gm_mm_args *a, int t0, int t1, int o0, int o1);
#endif

/* AMX (matmul_amx.c). T at or above GM_AMX_MIN_T goes to the tiles; below, the avx512 kernels. */
#ifndef GM_AMX_MIN_T
#define GM_AMX_MIN_T 16
#endif
#ifdef GM_HAVE_X86
/* 1 if this CPU has AMX-BF16 (and AVX512-BF16) and the OS granted this process the tile state. */
int gm_amx_usable(void);
/* How many bf16 parts x is split into for W of type wt: 3 for bf16 W (x = sum of the parts exactly, so
 * every product is exact and only the f32 sums round, like the avx512 kernels), 1 for quantized W (x
 * rounded to bf16: about 0.2 % relative error, less than the 8-bit activations of the other families). */
int gm_amx_splits(gm_dtype wt);
/* Bytes of x as tiles: rows padded to a multiple of 16, in a multiple of 32, nsplit parts. */
size_t gm_amx_xb_bytes(int T, int in, int nsplit);
/* Split rows of x into nsplit bf16 parts (each rounds what the parts before it left) and repack blocks
 * [b0, b1) of 16 rows into tiles (xb 64-byte aligned). */
void gm_amx_pack_x(const float *x, int T, int in, int nsplit, uint16_t *xb, int b0, int b1);
void gm_matmul_range_amx(const gm_mm_args *a, int t0, int t1, int o0, int o1);
#endif

/* The activation quantizer of tensor/quant.h (gm_xq_quantize_row, the scalar one) per family: the
 * same bytes, faster. */
typedef void (*gm_xq_fn)(const float *x, gm_dtype wt, int in, void *base);
#ifdef GM_HAVE_X86
void gm_xq_quantize_row_avx2(const float *x, gm_dtype wt, int in, void *base);
void gm_xq_quantize_row_avx512(const float *x, gm_dtype wt, int in, void *base);
#endif
#ifdef GM_HAVE_NEON
void gm_xq_quantize_row_neon(const float *x, gm_dtype wt, int in, void *base);
#endif

/* The same for block-quantized W (a->xq set): quant.c, quant_avx2.c, quant_avx512.c (which needs
 * AVX512-VNNI too: without it the avx512 family uses the avx2 kernels) and quant_neon.c. */
void gm_qmatmul_range_scalar(const gm_mm_args *a, int t0, int t1, int o0, int o1);
#ifdef GM_HAVE_X86
void gm_qmatmul_range_avx2(const gm_mm_args *a, int t0, int t1, int o0, int o1);
void gm_qmatmul_range_avx512(const gm_mm_args *a, int t0, int t1, int o0, int o1);
#endif
#ifdef GM_HAVE_NEON
void gm_qmatmul_range_neon(const gm_mm_args *a, int t0, int t1, int o0, int o1);
/* quant_neon.c: widening multiplies; quant_sdot_neon.c: SDOT, if this compiler could build it. */
void gm_qmatmul_range_neon_mull(const gm_mm_args *a, int t0, int t1, int o0, int o1);
void gm_qmatmul_range_neon_sdot(const gm_mm_args *a, int t0, int t1, int o0, int o1);
int gm_qmatmul_neon_sdot_built(void);
#endif

#endif
