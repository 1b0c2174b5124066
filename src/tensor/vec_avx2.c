/* AVX2 + FMA vector primitives (see vec.h). */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "tensor/vec.h"

float gm_vec_dot_avx2(const float *a, const float *b, int n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s0 = _mm256_add_ps(s0, s1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    float s = _mm_cvtss_f32(h);
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

void gm_vec_axpy_avx2(float *y, float a, const float *x, int n) {
    __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

static inline __m256 load_bf16x8(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

float gm_vec_dot_bf16_avx2(const float *a, const uint16_t *b, int n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), load_bf16x8(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), load_bf16x8(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), load_bf16x8(b + i), s0);
    s0 = _mm256_add_ps(s0, s1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    float s = _mm_cvtss_f32(h);
    for (; i < n; i++) {
        uint32_t u = (uint32_t)b[i] << 16;
        float f;
        __builtin_memcpy(&f, &u, 4);
        s += a[i] * f;
    }
    return s;
}

void gm_vec_axpy_bf16_avx2(float *y, float a, const uint16_t *x, int n) {
    __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, load_bf16x8(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) {
        uint32_t u = (uint32_t)x[i] << 16;
        float f;
        __builtin_memcpy(&f, &u, 4);
        y[i] += a * f;
    }
}

/* gelu_tanh(x) * up, 8 lanes; the method and the constants are in vec.h (the AVX-512 and NEON versions run
 * the same operations, so all agree bitwise). */
static inline __m256 geglu8(__m256 x, __m256 up) {
    const __m256 xmax = _mm256_set1_ps(GM_GELU_XMAX), a = _mm256_set1_ps(GM_GELU_A), bh = _mm256_set1_ps(GM_GELU_BH);
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-GM_GELU_XMAX)), xmax); /* NaN -> -XMAX */
    /* w = A + B·x² as wh + wl: x² exactly (th + tl), B·x² as mh + ml, then TwoSum */
    __m256 th = _mm256_mul_ps(xc, xc), tl = _mm256_fmsub_ps(xc, xc, th);
    __m256 mh = _mm256_mul_ps(bh, th);
    __m256 ml = _mm256_add_ps(_mm256_fmsub_ps(bh, th, mh),
                              _mm256_fmadd_ps(bh, tl, _mm256_mul_ps(_mm256_set1_ps(GM_GELU_BL), th)));
    __m256 wh = _mm256_add_ps(a, mh), bb = _mm256_sub_ps(wh, a);
    __m256 wl = _mm256_add_ps(_mm256_add_ps(_mm256_sub_ps(a, _mm256_sub_ps(wh, bb)), _mm256_sub_ps(mh, bb)), ml);
    /* z = x·w as zh + zl */
    __m256 zh = _mm256_mul_ps(xc, wh);
    __m256 zl = _mm256_add_ps(_mm256_fmsub_ps(xc, wh, zh), _mm256_mul_ps(xc, wl));
    __m256 big = _mm256_cmp_ps(zh, _mm256_set1_ps(GM_GELU_ZMAX), _CMP_GT_OQ);
    zh = _mm256_min_ps(_mm256_max_ps(zh, _mm256_set1_ps(GM_GELU_ZMIN)), _mm256_set1_ps(GM_GELU_ZMAX));
    __m256 nf = _mm256_round_ps(_mm256_mul_ps(zh, _mm256_set1_ps(GM_GELU_LOG2E)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(nf, _mm256_set1_ps(GM_GELU_LN2H), zh);
    r = _mm256_add_ps(_mm256_fnmadd_ps(nf, _mm256_set1_ps(GM_GELU_LN2L), r), zl);
    __m256 q = _mm256_fmadd_ps(_mm256_set1_ps(GM_GELU_C6), r, _mm256_set1_ps(GM_GELU_C5));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(GM_GELU_C4));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(GM_GELU_C3));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(GM_GELU_C2));
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 p = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(r, r), q, r), one);
    __m256i n = _mm256_add_epi32(_mm256_cvtps_epi32(nf), _mm256_set1_epi32(127));
    __m256 e = _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(n, 23)));
    e = _mm256_blendv_ps(e, _mm256_set1_ps(INFINITY), big);
    return _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(one, e)), up);
}

void gm_vec_geglu_avx2(float *gate, const float *up, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(gate + i, geglu8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
    if (i < n) { /* the tail through the same lanes, so an element's result never depends on where it sits */
        float g[8] = {0}, u[8] = {0};
        memcpy(g, gate + i, sizeof(float) * (n - i));
        memcpy(u, up + i, sizeof(float) * (n - i));
        _mm256_storeu_ps(g, geglu8(_mm256_loadu_ps(g), _mm256_loadu_ps(u)));
        memcpy(gate + i, g, sizeof(float) * (n - i));
    }
}
