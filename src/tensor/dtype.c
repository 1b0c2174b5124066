/* The dtype traits table and its scalar row conversions. Kernels that care about speed convert in
 * their own SIMD code; these rows serve loading, embedding lookups and the generic matmul fallback. */
#include "tensor/dtype.h"

#include "base/error.h"

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
};

const gm_dtype_traits *gm_dtype_info(gm_dtype t) {
    if ((unsigned)t >= (unsigned)GM_DT_COUNT) return NULL;
    return &g_traits[t];
}

int gm_dtype_from_name(const char *name, gm_dtype *out) {
    if (!name) return 0;
    for (int i = 0; i < GM_DT_COUNT; i++) {
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
