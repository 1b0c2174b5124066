/* dtype table and conversions: every bf16 and f16 value round-trips exactly through f32; f32 -> half
 * rounds to nearest even (checked against an independent search over all halves, and bit for bit
 * against the F16C instructions where the CPU has them); subnormals, infinities and NaNs. */
#include <stdint.h>
#include <string.h>

#include "tensor/cpu.h"
#include "tensor/dtype.h"
#include "testlib.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_F16C_TEST 1
__attribute__((target("f16c"))) static uint16_t hw_f32_to_f16(float f) {
    return (uint16_t)_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(f), _MM_FROUND_TO_NEAREST_INT), 0);
}
__attribute__((target("f16c"))) static float hw_f16_to_f32(uint16_t h) {
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}
#endif

static uint64_t g_rng = 0x2545f4914f6cdd1dull;
static uint32_t rand32(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 32);
}

static int is_nan_bits(uint32_t u) { return (u & 0x7fffffffu) > 0x7f800000u; }

/* Reference rounding to a format whose positive values are monotonic in their bit patterns: pick the
 * nearer of the two neighbours in double precision, ties to the even pattern. `value(b)` must give
 * the exact value of pattern b, with the pattern just past the largest finite one meaning the
 * overflow threshold's next step (2^16 for half, 2^128 for bf16) so overflow rounds as IEEE says. */
static double half_value(uint32_t b) { return b == 0x7c00 ? 65536.0 : (double)gm_f16_to_f32((uint16_t)b); }
static double bf16_value(uint32_t b) { return b == 0x7f80 ? ldexp(1.0, 128) : (double)gm_bf16_to_f32((uint16_t)b); }

static uint32_t ref_round(double v, uint32_t max_pat, double (*value)(uint32_t)) {
    uint32_t lo = 0, hi = max_pat; /* largest pattern with value <= v, by bisection */
    while (lo < hi) {
        uint32_t mid = (lo + hi + 1) / 2;
        if (value(mid) <= v) lo = mid;
        else hi = mid - 1;
    }
    if (value(lo) == v || lo == max_pat) return lo;
    double dl = v - value(lo), dh = value(lo + 1) - v;
    if (dl < dh) return lo;
    if (dh < dl) return lo + 1;
    return (lo & 1) ? lo + 1 : lo;
}

static void check_f32_to_f16(uint32_t u) {
    float f = gm_bits_f32(u);
    uint16_t h = gm_f32_to_f16(f);
    if (is_nan_bits(u)) {
        CHECKF((h & 0x7c00) == 0x7c00 && (h & 0x3ff), "f32 NaN %08x -> %04x not NaN", u, h);
    } else {
        uint32_t want = ref_round(fabs((double)f), 0x7c00, half_value) | ((u >> 16) & 0x8000u);
        CHECKF(h == want, "f32 %08x (%g) -> f16 %04x, want %04x", u, (double)f, h, want);
    }
#ifdef HAVE_F16C_TEST
    if (gm_cpu_features_get()->f16c) {
        uint16_t hw = hw_f32_to_f16(f);
        CHECKF(h == hw, "f32 %08x -> f16 %04x, F16C gives %04x", u, h, hw);
    }
#endif
}

static void check_f32_to_bf16(uint32_t u) {
    float f = gm_bits_f32(u);
    uint16_t b = gm_f32_to_bf16(f);
    if (is_nan_bits(u)) {
        CHECKF((b & 0x7f80) == 0x7f80 && (b & 0x7f), "f32 NaN %08x -> bf16 %04x not NaN", u, b);
        return;
    }
    uint32_t want = ref_round(fabs((double)f), 0x7f80, bf16_value) | ((u >> 16) & 0x8000u);
    CHECKF(b == want, "f32 %08x (%g) -> bf16 %04x, want %04x", u, (double)f, b, want);
}

int main(void) {
    /* The table. */
    gm_dtype t;
    CHECK(gm_dtype_from_name("F32", &t) && t == GM_DT_F32);
    CHECK(gm_dtype_from_name("F16", &t) && t == GM_DT_F16);
    CHECK(gm_dtype_from_name("BF16", &t) && t == GM_DT_BF16);
    CHECK(!gm_dtype_from_name("bf16", &t) && !gm_dtype_from_name("F64", &t) && !gm_dtype_from_name(NULL, &t));
    CHECK(gm_dtype_info(GM_DT_COUNT) == NULL);
    for (int i = 0; i < GM_DT_COUNT; i++) {
        const gm_dtype_traits *tr = gm_dtype_info((gm_dtype)i);
        CHECK(tr && tr->name && tr->block_elems >= 1 && tr->block_bytes >= 1 && tr->to_f32 && tr->from_f32);
        gm_dtype back = GM_DT_COUNT;
        /* safetensors names only the plain floats; the block-quantized rows are GGUF-only */
        if (tr->block_elems == 1) CHECK(gm_dtype_from_name(tr->name, &back) && back == (gm_dtype)i);
        else CHECK(!gm_dtype_from_name(tr->name, &back) && back == GM_DT_COUNT);
        /* every row has a ggml type id, and it maps back */
        uint32_t id = UINT32_MAX;
        CHECK(gm_dtype_to_ggml((gm_dtype)i, &id) && gm_dtype_from_ggml(id, &back) && back == (gm_dtype)i);
    }
    uint32_t id = 0;
    CHECK(gm_dtype_from_ggml(0, &t) && t == GM_DT_F32 && gm_dtype_from_ggml(1, &t) && t == GM_DT_F16);
    CHECK(gm_dtype_from_ggml(30, &t) && t == GM_DT_BF16 && gm_dtype_from_ggml(8, &t) && t == GM_DT_Q8_0);
    CHECK(gm_dtype_from_ggml(2, &t) && t == GM_DT_Q4_0 && gm_dtype_from_ggml(12, &t) && t == GM_DT_Q4_K);
    CHECK(gm_dtype_from_ggml(14, &t) && t == GM_DT_Q6_K);
    CHECK(!gm_dtype_from_ggml(3, &t) && !gm_dtype_from_ggml(13, &t) && !gm_dtype_from_ggml(31, &t));
    CHECK(!gm_dtype_to_ggml(GM_DT_COUNT, &id));
    CHECK(gm_dtype_info(GM_DT_Q8_0)->block_elems == 32 && gm_dtype_info(GM_DT_Q8_0)->block_bytes == 34);
    CHECK(gm_dtype_info(GM_DT_Q4_K)->block_elems == 256 && gm_dtype_info(GM_DT_Q6_K)->block_bytes == 210);
    CHECK(gm_dtype_info(GM_DT_F32)->block_bytes == 4 && gm_dtype_info(GM_DT_BF16)->block_bytes == 2 &&
          gm_dtype_info(GM_DT_F16)->block_bytes == 2);
    size_t nb = 0;
    CHECK(gm_dtype_row_bytes(GM_DT_BF16, 2048, &nb) && nb == 4096);
    CHECK(!gm_dtype_row_bytes(GM_DT_F32, (size_t)-1 / 2, &nb));
    CHECK(!gm_dtype_row_bytes(GM_DT_COUNT, 4, &nb));

    /* Every half and every bf16 pattern: widening is exact and narrowing gives the pattern back. */
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = gm_f16_to_f32((uint16_t)h);
        int nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        CHECKF(nan ? isnan(f) : gm_f32_to_f16(f) == h, "f16 %04x round trip", h);
        if (nan) CHECKF(gm_f32_to_f16(f) == (h | 0x200), "f16 NaN %04x payload", h);
        float b = gm_bf16_to_f32((uint16_t)h);
        int bnan = (h & 0x7f80) == 0x7f80 && (h & 0x7f);
        CHECKF(bnan ? isnan(b) : gm_f32_to_bf16(b) == h, "bf16 %04x round trip", h);
        CHECKF(gm_f32_bits(b) == h << 16, "bf16 %04x widening", h);
#ifdef HAVE_F16C_TEST
        if (gm_cpu_features_get()->f16c) {
            float hw = hw_f16_to_f32((uint16_t)h);
            CHECKF(gm_f32_bits(hw) == gm_f32_bits(f), "f16 %04x -> %08x, F16C gives %08x", h, gm_f32_bits(f),
                   gm_f32_bits(hw));
        }
#endif
    }
    /* Exact values of the edge cases. */
    CHECK(gm_f16_to_f32(0x0001) == ldexpf(1.0f, -24)); /* smallest subnormal */
    CHECK(gm_f16_to_f32(0x03ff) == ldexpf(1023.0f, -24));
    CHECK(gm_f16_to_f32(0x0400) == ldexpf(1.0f, -14));
    CHECK(gm_f16_to_f32(0x7bff) == 65504.0f);
    CHECK(isinf(gm_f16_to_f32(0x7c00)) && gm_f16_to_f32(0xfc00) < 0);
    CHECK(gm_f32_bits(gm_f16_to_f32(0x8000)) == 0x80000000u);
    CHECK(gm_f32_to_f16(65504.0f) == 0x7bff && gm_f32_to_f16(65519.996f) == 0x7bff);
    CHECK(gm_f32_to_f16(65520.0f) == 0x7c00 && gm_f32_to_f16(-1e9f) == 0xfc00);
    CHECK(gm_f32_to_f16(ldexpf(1.0f, -25)) == 0x0000);            /* tie to even: 0 */
    CHECK(gm_f32_to_f16(ldexpf(1.0f, -25) * 1.0001f) == 0x0001);  /* past the tie */
    CHECK(gm_f32_to_f16(ldexpf(3.0f, -25)) == 0x0002);            /* 1.5 units: tie to even 2 */
    CHECK(gm_f32_to_f16(-0.0f) == 0x8000 && gm_f32_to_f16(1e-30f) == 0);
    CHECK(gm_f32_to_f16(ldexpf(1023.5f, -24)) == 0x0400);         /* rounds up into the normals */
    CHECK(gm_f32_to_bf16(1.0f + ldexpf(1.0f, -8)) == 0x3f80);     /* tie to even, down */
    CHECK(gm_f32_to_bf16(1.0f + ldexpf(3.0f, -8)) == 0x3f82);     /* tie to even, up */
    CHECK(gm_f32_to_bf16(3.4e38f) == 0x7f80);                     /* past the largest bf16 */
    CHECK(gm_f32_to_bf16(gm_bits_f32(0x7f800001u)) != 0x7f80);    /* a NaN must not become Inf */
    CHECK(isnan(gm_bf16_to_f32(gm_f32_to_bf16(NAN))) && isnan(gm_f16_to_f32(gm_f32_to_f16(NAN))));

    /* f32 -> half/bf16 rounding: around every rounding boundary (all exponents, all kept mantissas,
     * low bits just below, at and above the tie) and on random patterns. */
    static const uint32_t lows[] = {0, 1, 0xfff, 0x1000, 0x1001, 0x1fff};
    for (uint32_t hi = 0; hi < (1u << 19); hi += 7) {
        for (size_t i = 0; i < sizeof lows / sizeof *lows; i++) check_f32_to_f16(hi << 13 | lows[i]);
    }
    static const uint32_t blows[] = {0, 1, 0x7fff, 0x8000, 0x8001, 0xffff};
    for (uint32_t hi = 0; hi < 0x10000; hi++)
        for (size_t i = 0; i < sizeof blows / sizeof *blows; i++) check_f32_to_bf16(hi << 16 | blows[i]);
    for (int i = 0; i < 300000; i++) {
        uint32_t u = rand32();
        check_f32_to_f16(u);
        check_f32_to_bf16(u);
    }

    /* Row conversions agree with the scalar inlines. */
    float src[37], back[37];
    uint16_t h16[37];
    for (int i = 0; i < 37; i++) src[i] = (float)(i - 18) * 0.37f;
    gm_dtype_info(GM_DT_F16)->from_f32(src, h16, 37);
    gm_dtype_info(GM_DT_F16)->to_f32(h16, back, 37);
    for (int i = 0; i < 37; i++) CHECK(h16[i] == gm_f32_to_f16(src[i]) && back[i] == gm_f16_to_f32(h16[i]));
    gm_dtype_info(GM_DT_BF16)->from_f32(src, h16, 37);
    gm_dtype_info(GM_DT_BF16)->to_f32(h16, back, 37);
    for (int i = 0; i < 37; i++) CHECK(h16[i] == gm_f32_to_bf16(src[i]) && back[i] == gm_bf16_to_f32(h16[i]));
    float f32c[37];
    gm_dtype_info(GM_DT_F32)->from_f32(src, f32c, 37);
    CHECK(memcmp(f32c, src, sizeof src) == 0);
    TEST_DONE();
}
