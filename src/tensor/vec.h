/* Small f32 vector primitives for attention over the KV cache (dot products of a query with each key,
 * weighted sums of values), one implementation per instruction set chosen at run time like matmul's.
 * Each result depends only on its inputs, never on threads. */
#ifndef GM_TENSOR_VEC_H
#define GM_TENSOR_VEC_H

#include <stdint.h>

typedef struct {
    float (*dot)(const float *a, const float *b, int n); /* sum a[i] * b[i] */
    void (*axpy)(float *y, float a, const float *x, int n); /* y[i] += a * x[i] */
    /* the same with b / x in bf16 (a bf16 KV cache); widening bf16 is exact */
    float (*dot_bf16)(const float *a, const uint16_t *b, int n);
    void (*axpy_bf16)(float *y, float a, const uint16_t *x, int n);
} gm_vec_ops;

/* The kernels for this CPU (GM_CPU overrides, as for matmul). */
const gm_vec_ops *gm_vec(void);
/* The kernels of one family by name ("scalar", "avx2", "avx512", "neon"); NULL if not runnable here. */
const gm_vec_ops *gm_vec_for(const char *isa);

float gm_vec_dot_scalar(const float *a, const float *b, int n);
void gm_vec_axpy_scalar(float *y, float a, const float *x, int n);
float gm_vec_dot_bf16_scalar(const float *a, const uint16_t *b, int n);
void gm_vec_axpy_bf16_scalar(float *y, float a, const uint16_t *x, int n);
#ifdef GM_HAVE_X86
float gm_vec_dot_avx2(const float *a, const float *b, int n);
void gm_vec_axpy_avx2(float *y, float a, const float *x, int n);
float gm_vec_dot_bf16_avx2(const float *a, const uint16_t *b, int n);
void gm_vec_axpy_bf16_avx2(float *y, float a, const uint16_t *x, int n);
float gm_vec_dot_avx512(const float *a, const float *b, int n);
void gm_vec_axpy_avx512(float *y, float a, const float *x, int n);
float gm_vec_dot_bf16_avx512(const float *a, const uint16_t *b, int n);
void gm_vec_axpy_bf16_avx512(float *y, float a, const uint16_t *x, int n);
#endif
#ifdef GM_HAVE_NEON
float gm_vec_dot_neon(const float *a, const float *b, int n);
void gm_vec_axpy_neon(float *y, float a, const float *x, int n);
float gm_vec_dot_bf16_neon(const float *a, const uint16_t *b, int n);
void gm_vec_axpy_bf16_neon(float *y, float a, const uint16_t *x, int n);
#endif

#endif
