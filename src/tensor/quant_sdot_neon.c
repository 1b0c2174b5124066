/* The SDOT (ARMv8.2 dot product) variant of the NEON quantized-matmul kernels of quant_neon.h, compiled
 * for that extension; quant_neon.c calls it only where the CPU has it. With a compiler that cannot
 * enable the extension per file (clang before 16 without -march=...+dotprod) it is left out and
 * gm_qmatmul_neon_sdot_built() says so. */
#if defined(__ARM_FEATURE_DOTPROD) || (defined(__GNUC__) && !defined(__clang__)) ||                               \
    (defined(__clang__) && __clang_major__ >= 16)
#if !defined(__ARM_FEATURE_DOTPROD)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("dotprod"))), apply_to = function)
#else
#pragma GCC target("arch=armv8.2-a+dotprod")
#endif
#endif
#define GM_QN_SDOT 1
#define GM_QN_ENTRY gm_qmatmul_range_neon_sdot
#include "tensor/quant_neon.h"
#if !defined(__ARM_FEATURE_DOTPROD) && defined(__clang__)
#pragma clang attribute pop
#endif
int gm_qmatmul_neon_sdot_built(void) { return 1; }
#else
#include "tensor/matmul.h"
int gm_qmatmul_neon_sdot_built(void) { return 0; }
void gm_qmatmul_range_neon_sdot(const gm_mm_args *a, int t0, int t1, int o0, int o1) {
    gm_qmatmul_range_scalar(a, t0, t1, o0, o1);
}
#endif
