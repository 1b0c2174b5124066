/* AVX-512 vector primitives (see vec.h); tails use masked loads, so no scalar remainder. */
#include <immintrin.h>
#include <math.h>

#include "tensor/vec.h"

float gm_vec_dot_avx512(const float *a, const float *b, int n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

void gm_vec_axpy_avx512(float *y, float a, const float *x, int n) {
    __m512 va = _mm512_set1_ps(a);
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
}

static inline __m512 load_bf16x16(__mmask16 m, const uint16_t *p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}

float gm_vec_dot_bf16_avx512(const float *a, const uint16_t *b, int n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), load_bf16x16(0xFFFF, b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), load_bf16x16(0xFFFF, b + i + 16), s1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), load_bf16x16(m, b + i), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

void gm_vec_axpy_bf16_avx512(float *y, float a, const uint16_t *x, int n) {
    __m512 va = _mm512_set1_ps(a);
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, load_bf16x16(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
}

/* gelu_tanh(x) * up, 16 lanes; the method and the constants are in vec.h (the AVX2 and NEON versions run the
 * same operations, so all agree bitwise). */
static inline __m512 geglu16(__m512 x, __m512 up) {
    const __m512 xmax = _mm512_set1_ps(GM_GELU_XMAX), a = _mm512_set1_ps(GM_GELU_A), bh = _mm512_set1_ps(GM_GELU_BH);
    __m512 xc = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-GM_GELU_XMAX)), xmax); /* NaN -> -XMAX */
    /* w = A + B·x² as wh + wl: x² exactly (th + tl), B·x² as mh + ml, then TwoSum */
    __m512 th = _mm512_mul_ps(xc, xc), tl = _mm512_fmsub_ps(xc, xc, th);
    __m512 mh = _mm512_mul_ps(bh, th);
    __m512 ml = _mm512_add_ps(_mm512_fmsub_ps(bh, th, mh),
                              _mm512_fmadd_ps(bh, tl, _mm512_mul_ps(_mm512_set1_ps(GM_GELU_BL), th)));
    __m512 wh = _mm512_add_ps(a, mh), bb = _mm512_sub_ps(wh, a);
    __m512 wl = _mm512_add_ps(_mm512_add_ps(_mm512_sub_ps(a, _mm512_sub_ps(wh, bb)), _mm512_sub_ps(mh, bb)), ml);
    /* z = x·w as zh + zl */
    __m512 zh = _mm512_mul_ps(xc, wh);
    __m512 zl = _mm512_add_ps(_mm512_fmsub_ps(xc, wh, zh), _mm512_mul_ps(xc, wl));
    __mmask16 big = _mm512_cmp_ps_mask(zh, _mm512_set1_ps(GM_GELU_ZMAX), _CMP_GT_OQ);
    zh = _mm512_min_ps(_mm512_max_ps(zh, _mm512_set1_ps(GM_GELU_ZMIN)), _mm512_set1_ps(GM_GELU_ZMAX));
    __m512 nf = _mm512_roundscale_ps(_mm512_mul_ps(zh, _mm512_set1_ps(GM_GELU_LOG2E)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(nf, _mm512_set1_ps(GM_GELU_LN2H), zh);
    r = _mm512_add_ps(_mm512_fnmadd_ps(nf, _mm512_set1_ps(GM_GELU_LN2L), r), zl);
    __m512 q = _mm512_fmadd_ps(_mm512_set1_ps(GM_GELU_C6), r, _mm512_set1_ps(GM_GELU_C5));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(GM_GELU_C4));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(GM_GELU_C3));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(GM_GELU_C2));
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 p = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(r, r), q, r), one);
    __m512i n = _mm512_add_epi32(_mm512_cvtps_epi32(nf), _mm512_set1_epi32(127));
    __m512 e = _mm512_mul_ps(p, _mm512_castsi512_ps(_mm512_slli_epi32(n, 23)));
    e = _mm512_mask_blend_ps(big, e, _mm512_set1_ps(INFINITY));
    return _mm512_mul_ps(_mm512_div_ps(x, _mm512_add_ps(one, e)), up);
}

void gm_vec_geglu_avx512(float *gate, const float *up, size_t n) {
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 g = geglu16(_mm512_maskz_loadu_ps(m, gate + i), _mm512_maskz_loadu_ps(m, up + i));
        _mm512_mask_storeu_ps(gate + i, m, g);
    }
}
