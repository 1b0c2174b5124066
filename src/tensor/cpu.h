/* Which SIMD instruction sets this CPU and OS can run, found once at run time (cpuid + xgetbv on x86,
 * auxv on aarch64), and which kernel family to use: the best available one unless the GM_CPU
 * environment variable ("scalar", "avx2", "avx512", "neon") asks for another that is available. */
#ifndef GM_TENSOR_CPU_H
#define GM_TENSOR_CPU_H

typedef enum { GM_ISA_SCALAR = 0, GM_ISA_AVX2, GM_ISA_AVX512, GM_ISA_NEON, GM_ISA_COUNT } gm_isa;

typedef struct {
    /* x86: each flag set only when the OS also saves the register state it needs (XCR0). */
    int avx, avx2, fma, f16c;
    int avx512f, avx512bw, avx512vl, avx512dq, avx512bf16, avx512vnni, avx512fp16;
    /* VBMI byte permutes; GM_VBMI=0 in the environment clears it, so tests and benchmarks can run the
     * kernels written for CPUs without it. */
    int avx512vbmi;
    /* AMX tiles (TILECFG + TILEDATA state in XCR0); Linux still has to grant the tile data per process
     * (tensor/matmul_amx.c asks). */
    int amx_tile, amx_bf16, amx_int8;
    /* aarch64 */
    int neon, neon_fp16, neon_bf16;
} gm_cpu_features;

const gm_cpu_features *gm_cpu_features_get(void);
/* 1 if kernels of this family were compiled in and can run here. The families need:
 * avx2 = AVX2+FMA+F16C; avx512 = that plus AVX-512 F/BW/VL/DQ; neon = aarch64 Advanced SIMD. */
int gm_cpu_isa_available(gm_isa isa);
/* The family kernels should use: GM_CPU's choice if set and available, else the best available. */
gm_isa gm_cpu_isa(void);
const char *gm_cpu_isa_name(gm_isa isa);
/* "scalar", "avx2", "avx512", "neon" -> 1 and *out set; else 0. */
int gm_cpu_isa_from_name(const char *name, gm_isa *out);

#endif
