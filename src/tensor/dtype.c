/* The dtype traits table and its scalar row conversions. Kernels that care about speed convert in
 * their own SIMD code; these rows serve loading, embedding lookups and the generic matmul fallback. */
#include "tensor/dtype.h"

#include "base/error.h"
#include "tensor/quant.h"

static void f32_to_f32(const void *src, float *dst, size_t n) { memcpy(dst, src, n * sizeof(float)); }
static void f32_from_f32(const float *src, void *dst, size_t n) { memcpy(dst, src, n * sizeof(float)); }

static void f16_to_f32(const void *src, float *dst, size_t n) {
    const uint16_t *s = src;
    for (size_t i = 0; i < n; i++) dst[i] = gm_f16_to_f32(s[i]);
}
static void f16_from_f32(const float *src, void *dst, size_t n) {
    uint16_t *d = dst;
    for (size_t i = 0; i < n; i++) d[i] = gm_f32_to_f16(src[i]);
}

static void bf16_to_f32(const void *src, float *dst, size_t n) {
    const uint16_t *s = src;
    for (size_t i = 0; i < n; i++) dst[i] = gm_bf16_to_f32(s[i]);
}
static void bf16_from_f32(const float *src, void *dst, size_t n) {
    uint16_t *d = dst;
    for (size_t i = 0; i < n; i++) d[i] = gm_f32_to_bf16(src[i]);
}

static const gm_dtype_traits g_traits[GM_DT_COUNT] = {
    [GM_DT_F32] = {"F32", 1, 4, f32_to_f32, f32_from_f32},
    [GM_DT_F16] = {"F16", 1, 2, f16_to_f32, f16_from_f32},
    [GM_DT_BF16] = {"BF16", 1, 2, bf16_to_f32, bf16_from_f32},
    [GM_DT_Q8_0] = {"Q8_0", GM_QK, GM_Q8_0_BYTES, gm_dequantize_q8_0, gm_quantize_q8_0},
    [GM_DT_Q4_0] = {"Q4_0", GM_QK, GM_Q4_0_BYTES, gm_dequantize_q4_0, gm_quantize_q4_0},
    [GM_DT_Q4_K] = {"Q4_K", GM_QK_K, GM_Q4_K_BYTES, gm_dequantize_q4_K, gm_quantize_q4_K},
    [GM_DT_Q6_K] = {"Q6_K", GM_QK_K, GM_Q6_K_BYTES, gm_dequantize_q6_K, gm_quantize_q6_K},
};

static const uint32_t g_ggml_ids[GM_DT_COUNT] = {
    [GM_DT_F32] = 0, [GM_DT_F16] = 1, [GM_DT_BF16] = 30, [GM_DT_Q8_0] = 8,
    [GM_DT_Q4_0] = 2, [GM_DT_Q4_K] = 12, [GM_DT_Q6_K] = 14,
};

const gm_dtype_traits *gm_dtype_info(gm_dtype t) {
    if ((unsigned)t >= (unsigned)GM_DT_COUNT) return NULL;
    return &g_traits[t];
}

int gm_dtype_from_name(const char *name, gm_dtype *out) {
    if (!name) return 0;
    for (int i = 0; i < GM_DT_COUNT; i++) {
        if (gm_dtype_is_quant((gm_dtype)i)) continue;
        if (strcmp(name, g_traits[i].name) == 0) {
            if (out) *out = (gm_dtype)i;
            return 1;
        }
    }
    return 0;
}

int gm_dtype_row_bytes(gm_dtype t, size_t n, size_t *bytes) {
    const gm_dtype_traits *tr = gm_dtype_info(t);
    if (!tr || n % tr->block_elems) return 0;
    return gm_mul_size(n / tr->block_elems, tr->block_bytes, bytes);
}

int gm_dtype_from_ggml(uint32_t ggml_type, gm_dtype *out) {
    for (int i = 0; i < GM_DT_COUNT; i++) {
        if (g_ggml_ids[i] == ggml_type) {
            if (out) *out = (gm_dtype)i;
            return 1;
        }
    }
    return 0;
}

int gm_dtype_to_ggml(gm_dtype t, uint32_t *out) {
    if ((unsigned)t >= (unsigned)GM_DT_COUNT) return 0;
    if (out) *out = g_ggml_ids[t];
    return 1;
}
