/* Small f32 vector primitives for attention over the KV cache (dot products of a query with each key,
 * weighted sums of values) and the FFN's GeGLU, one implementation per instruction set chosen at run time
 * like matmul's. Each result depends only on its inputs, never on threads. */
#ifndef GM_TENSOR_VEC_H
#define GM_TENSOR_VEC_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    float (*dot)(const float *a, const float *b, int n); /* sum a[i] * b[i] */
    void (*axpy)(float *y, float a, const float *x, int n); /* y[i] += a * x[i] */
    /* the same with b / x in bf16 (a bf16 KV cache); widening bf16 is exact */
    float (*dot_bf16)(const float *a, const uint16_t *b, int n);
    void (*axpy_bf16)(float *y, float a, const uint16_t *x, int n);
    /* gate[i] = gelu_tanh(gate[i]) * up[i]; each element's result depends only on its two inputs, so how
     * the array is split (threads, chunks, tails) never changes a bit */
    void (*geglu)(float *gate, const float *up, size_t n);
} gm_vec_ops;

/* The kernels for this CPU (GM_CPU overrides, as for matmul). */
const gm_vec_ops *gm_vec(void);
/* The kernels of one family by name ("scalar", "avx2", "avx512", "neon"); NULL if not runnable here. */
const gm_vec_ops *gm_vec_for(const char *isa);

/* GeGLU in the SIMD families: gelu_tanh(x) = x / (1 + e^z), z = -2k·x·(1 + c·x²), from 0.5·(1 + tanh(u)) =
 * 1 / (1 + e^-2u); unlike 1 + tanh(u) this does not cancel for negative x. Every family runs the same
 * operations with these constants, so they agree bitwise. For x < 0 the result is x·e^-z with z up to 88: an
 * error of a few ulp in z (|z|·2^-23 ≈ 1e-5) would be that relative error in the result, so z is carried as
 * a float pair (x² and the constants split in two, TwoSum), which keeps every x within 3 ulp of the exact
 * function. e^z = 2^n·p(r), n = round(z / ln2), r = z - n·ln2 (ln2 split in two), p(r) = 1 + r + r²·q(r) with
 * q a degree-4 fit of (e^r - 1 - r) / r² at Chebyshev nodes on |r| <= 0.354. |x| is clamped to XMAX for z only
 * (beyond it the result is x or -0 anyway) so x² cannot overflow; z above ZMAX gives e^z = inf, so x -> -inf
 * gives -0 (x = -inf gives NaN, as the scalar formula does), and z is clamped below at ZMIN to keep 2^n
 * normal. NaN in x gives NaN (it is the numerator). */
#define GM_GELU_XMAX 12.0f
#define GM_GELU_ZMAX 88.0f
#define GM_GELU_ZMIN -87.0f
#define GM_GELU_A -0x1.988454p+0f  /* -2k, k = sqrt(2/pi) as the scalar float constant (doubling is exact) */
#define GM_GELU_BH -0x1.2444f2p-4f /* -2k·c (c = 0.044715f) exactly as BH + BL */
#define GM_GELU_BL -0x1.0d3c78p-29f
#define GM_GELU_LOG2E 0x1.715476p+0f
#define GM_GELU_LN2H 0x1.62e43p-1f /* ln2 = LN2H + LN2L */
#define GM_GELU_LN2L -0x1.05c61p-29f
#define GM_GELU_C2 0x1p-1f
#define GM_GELU_C3 0x1.5554d4p-3f
#define GM_GELU_C4 0x1.555514p-5f
#define GM_GELU_C5 0x1.12158cp-7f
#define GM_GELU_C6 0x1.6d1b26p-10f

float gm_vec_dot_scalar(const float *a, const float *b, int n);
void gm_vec_axpy_scalar(float *y, float a, const float *x, int n);
float gm_vec_dot_bf16_scalar(const float *a, const uint16_t *b, int n);
void gm_vec_axpy_bf16_scalar(float *y, float a, const uint16_t *x, int n);
void gm_vec_geglu_scalar(float *gate, const float *up, size_t n);
#ifdef GM_HAVE_X86
float gm_vec_dot_avx2(const float *a, const float *b, int n);
void gm_vec_axpy_avx2(float *y, float a, const float *x, int n);
float gm_vec_dot_bf16_avx2(const float *a, const uint16_t *b, int n);
void gm_vec_axpy_bf16_avx2(float *y, float a, const uint16_t *x, int n);
void gm_vec_geglu_avx2(float *gate, const float *up, size_t n);
float gm_vec_dot_avx512(const float *a, const float *b, int n);
void gm_vec_axpy_avx512(float *y, float a, const float *x, int n);
float gm_vec_dot_bf16_avx512(const float *a, const uint16_t *b, int n);
void gm_vec_axpy_bf16_avx512(float *y, float a, const uint16_t *x, int n);
void gm_vec_geglu_avx512(float *gate, const float *up, size_t n);
#endif
#ifdef GM_HAVE_NEON
float gm_vec_dot_neon(const float *a, const float *b, int n);
void gm_vec_axpy_neon(float *y, float a, const float *x, int n);
float gm_vec_dot_bf16_neon(const float *a, const uint16_t *b, int n);
void gm_vec_axpy_bf16_neon(float *y, float a, const uint16_t *x, int n);
void gm_vec_geglu_neon(float *gate, const float *up, size_t n);
#endif

#endif
