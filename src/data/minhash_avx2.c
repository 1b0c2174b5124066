/* AVX2 MinHash signing (see minhash_kernels.h): four permutations per register as 64-bit lanes,
 * vpmuludq for the two 32 x 32 -> 64 products, two register groups per pass over the shingles so each
 * broadcast hash feeds eight permutations. */
#include <immintrin.h>

#include "data/minhash_kernels.h"

void gm_minhash_sign_avx2(const uint32_t *alo, const uint32_t *ahi, const uint64_t *b, int perms, const uint64_t *h,
                          size_t n, uint32_t *sig) {
    const __m256i pick = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    int i = 0;
    for (; i + 8 <= perms; i += 8) {
        __m256i al0 = _mm256_cvtepu32_epi64(_mm_loadu_si128((const __m128i *)(alo + i)));
        __m256i al1 = _mm256_cvtepu32_epi64(_mm_loadu_si128((const __m128i *)(alo + i + 4)));
        __m256i ah0 = _mm256_cvtepu32_epi64(_mm_loadu_si128((const __m128i *)(ahi + i)));
        __m256i ah1 = _mm256_cvtepu32_epi64(_mm_loadu_si128((const __m128i *)(ahi + i + 4)));
        __m256i b0 = _mm256_loadu_si256((const __m256i *)(b + i));
        __m256i b1 = _mm256_loadu_si256((const __m256i *)(b + i + 4));
        __m256i m0 = _mm256_set1_epi32(-1), m1 = m0;
        for (size_t j = 0; j < n; j++) {
            __m256i x = _mm256_set1_epi64x((long long)h[j]); /* vpmuludq reads the low 32 bits */
            __m256i t0 = _mm256_add_epi64(_mm256_add_epi64(_mm256_mul_epu32(al0, x), b0),
                                          _mm256_slli_epi64(_mm256_mul_epu32(ah0, x), 32));
            __m256i t1 = _mm256_add_epi64(_mm256_add_epi64(_mm256_mul_epu32(al1, x), b1),
                                          _mm256_slli_epi64(_mm256_mul_epu32(ah1, x), 32));
            m0 = _mm256_min_epu32(m0, _mm256_srli_epi64(t0, 32));
            m1 = _mm256_min_epu32(m1, _mm256_srli_epi64(t1, 32));
        }
        /* The minima sit in the low halves of the 64-bit lanes: gather them into 4 x 32 bits each. */
        __m256i r0 = _mm256_permutevar8x32_epi32(m0, pick), r1 = _mm256_permutevar8x32_epi32(m1, pick);
        _mm_storeu_si128((__m128i *)(sig + i), _mm256_castsi256_si128(r0));
        _mm_storeu_si128((__m128i *)(sig + i + 4), _mm256_castsi256_si128(r1));
    }
    if (i < perms) gm_minhash_sign_scalar(alo + i, ahi + i, b + i, perms - i, h, n, sig + i);
}
