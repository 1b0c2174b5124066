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
 * A dtype with no SIMD kernel goes through its traits row conversion (slow but correct). */
void gm_matmul(float *y, const float *x, const void *w, gm_dtype wt, int T, int in, int out, gm_pool *pool);

/* Force a kernel family for matmul ("scalar", "avx2", "avx512", "neon", or "auto" for the
 * default of tensor/cpu.h); returns 0 and changes nothing if it is unknown or cannot run here. */
int gm_matmul_set_isa(const char *isa);
const char *gm_matmul_isa(void);

/* ---- shared with the per-ISA kernel files; not for callers ----------------------------------- */

/* T at or below this uses row-dot tiles (W streamed once; no packing cost, which dominates at small
 * T); above, packed tiles (x traffic of the row-dot tiles outgrows L2). Crossover measured at
 * 16..32 on AVX-512 for 2048x16384 and 16384x2048. */
#ifndef GM_MM_GEMV_MAX_T
#define GM_MM_GEMV_MAX_T 16
#endif

typedef struct {
    float *y;
    const float *x;
    const void *w;
    gm_dtype wt;
    int T, in, out;
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

#endif
