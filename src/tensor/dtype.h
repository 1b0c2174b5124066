/* Element types of weight tensors: one row per dtype in a type-traits table (block size, bytes per
 * block, row conversions to and from f32), the way ggml does it, so that a quantized type such as
 * Q8_0 is one more row plus its kernels. Scalar bf16/f16 <-> f32 conversions live here as inlines. */
#ifndef GM_TENSOR_DTYPE_H
#define GM_TENSOR_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The block-quantized types (ggml's GGUF layouts, see tensor/quant.h) come after the plain floats. */
typedef enum {
    GM_DT_F32 = 0,
    GM_DT_F16,
    GM_DT_BF16,
    GM_DT_Q8_0,
    GM_DT_Q4_0,
    GM_DT_Q4_K,
    GM_DT_Q6_K,
    GM_DT_COUNT
} gm_dtype;

typedef struct {
    const char *name;   /* safetensors / GGUF spelling: "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K", "Q6_K" */
    size_t block_elems; /* elements per block: 1 for plain floats, 32 for Q8_0/Q4_0, 256 for Q4_K/Q6_K */
    size_t block_bytes; /* bytes one block occupies */
    /* n must be a multiple of block_elems; src/dst hold n elements. from_f32 of a quantized type is
     * ggml's reference quantizer (quantize_row_*_ref), byte for byte. */
    void (*to_f32)(const void *src, float *dst, size_t n);
    void (*from_f32)(const float *src, void *dst, size_t n);
} gm_dtype_traits;

/* NULL for a value outside the enum. */
const gm_dtype_traits *gm_dtype_info(gm_dtype t);
/* "F32", "F16", "BF16" -> 1 and *out set; anything else -> 0. Safetensors has no quantized types, so
 * their names are not accepted here. */
int gm_dtype_from_name(const char *safetensors_name, gm_dtype *out);
/* GGUF tensor type numbers (ggml_type): F32 0, F16 1, Q4_0 2, Q8_0 8, Q4_K 12, Q6_K 14, BF16 30.
 * Return 1 and set *out for a type in the table, 0 for any other (*out unchanged). */
int gm_dtype_from_ggml(uint32_t ggml_type, gm_dtype *out);
int gm_dtype_to_ggml(gm_dtype t, uint32_t *out);
/* Bytes of n elements; 0 if n is not a whole number of blocks, the type is unknown or the size overflows. */
int gm_dtype_row_bytes(gm_dtype t, size_t n, size_t *bytes);

static inline uint32_t gm_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static inline float gm_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* bf16 is the top half of an f32, so widening is exact. */
static inline float gm_bf16_to_f32(uint16_t h) { return gm_bits_f32((uint32_t)h << 16); }

/* Round to nearest even; a NaN stays NaN (quieted, so dropping low payload bits cannot make it Inf). */
static inline uint16_t gm_f32_to_bf16(float f) {
    uint32_t u = gm_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* Exact IEEE half -> single. NaNs come back quiet, as the F16C instruction does. */
static inline float gm_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13) | (mant ? 0x00400000u : 0u);
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;
    } else { /* subnormal: value = mant * 2^-24, renormalise into the f32 exponent range */
        uint32_t e = 113;
        while (!(mant & 0x400u)) {
            mant <<= 1;
            e--;
        }
        bits = sign | (e << 23) | ((mant & 0x3ffu) << 13);
    }
    return gm_bits_f32(bits);
}

/* Single -> half, round to nearest even, overflow to Inf, gradual underflow to subnormals, NaN kept
 * NaN with its top payload bits (matches F16C's vcvtps2ph bit for bit). */
static inline uint16_t gm_f32_to_f16(float f) {
    uint32_t u = gm_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) {
        if (a == 0x7f800000u) return (uint16_t)(sign | 0x7c00u);
        return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    }
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds past 65504 */
    if (a >= 0x38800000u) {                                  /* normal half */
        uint32_t h = (((a >> 23) - 112u) << 10) | ((a >> 13) & 0x3ffu);
        uint32_t rem = a & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++; /* a carry into the exponent is right */
        return (uint16_t)(sign | h);
    }
    uint32_t e = a >> 23;
    if (e < 102) return sign; /* below 2^-25: rounds to zero */
    uint32_t mant = (a & 0x7fffffu) | 0x800000u, shift = 126u - e; /* 14..24 */
    uint32_t h = mant >> shift, rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

#endif
