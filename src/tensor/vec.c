/* Scalar vector primitives and their run-time dispatch (see vec.h). The scalar dot keeps 8 partial
 * sums so it vectorizes where the compiler may, and so its rounding resembles the SIMD versions'. */
#include "tensor/vec.h"

#include <math.h>
#include <stddef.h>

#include "tensor/cpu.h"
#include "tensor/dtype.h"

float gm_vec_dot_scalar(const float *a, const float *b, int n) {
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += a[i + k] * b[i + k];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

void gm_vec_axpy_scalar(float *y, float a, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

float gm_vec_dot_bf16_scalar(const float *a, const uint16_t *b, int n) {
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += a[i + k] * gm_bf16_to_f32(b[i + k]);
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++) s += a[i] * gm_bf16_to_f32(b[i]);
    return s;
}

void gm_vec_axpy_bf16_scalar(float *y, float a, const uint16_t *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * gm_bf16_to_f32(x[i]);
}

/* The reference formula, as PyTorch's gelu(approximate="tanh") writes it. 1 + tanh(u) cancels for x below
 * about -1 (relative error 1e-6 at -2, 1e-3 at -4, nothing left below -5, where it gives -0): the SIMD
 * families compute x / (1 + e^-2u) instead and are the accurate ones there (see vec.h). */
static inline float gelu_tanh(float x) {
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

void gm_vec_geglu_scalar(float *gate, const float *up, size_t n) {
    for (size_t i = 0; i < n; i++) gate[i] = gelu_tanh(gate[i]) * up[i];
}

static const gm_vec_ops OPS[GM_ISA_COUNT] = {
    [GM_ISA_SCALAR] = {gm_vec_dot_scalar, gm_vec_axpy_scalar, gm_vec_dot_bf16_scalar, gm_vec_axpy_bf16_scalar,
                       gm_vec_geglu_scalar},
#ifdef GM_HAVE_X86
    [GM_ISA_AVX2] = {gm_vec_dot_avx2, gm_vec_axpy_avx2, gm_vec_dot_bf16_avx2, gm_vec_axpy_bf16_avx2, gm_vec_geglu_avx2},
    [GM_ISA_AVX512] = {gm_vec_dot_avx512, gm_vec_axpy_avx512, gm_vec_dot_bf16_avx512, gm_vec_axpy_bf16_avx512,
                       gm_vec_geglu_avx512},
#endif
#ifdef GM_HAVE_NEON
    [GM_ISA_NEON] = {gm_vec_dot_neon, gm_vec_axpy_neon, gm_vec_dot_bf16_neon, gm_vec_axpy_bf16_neon, gm_vec_geglu_neon},
#endif
};

const gm_vec_ops *gm_vec(void) {
    gm_isa isa = gm_cpu_isa();
    return OPS[isa].dot ? &OPS[isa] : &OPS[GM_ISA_SCALAR];
}

const gm_vec_ops *gm_vec_for(const char *name) {
    gm_isa isa;
    if (!gm_cpu_isa_from_name(name, &isa) || !gm_cpu_isa_available(isa) || !OPS[isa].dot) return NULL;
    return &OPS[isa];
}
