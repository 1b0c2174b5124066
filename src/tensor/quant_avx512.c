/* AVX-512 + VNNI kernels for block-quantized W times 8-bit activations (tensor/quant.h). Only used where
 * the CPU has AVX512-VNNI (matmul.c checks; the avx512 family falls back to quant_avx2.c otherwise).
 * Few rows of x: row-dot tiles (up to 4 rows of W x 4 rows of x, W read once). Q8_0/Q4_0: a pair of
 * 32-blocks per zmm, unsigned weight bytes (Q8_0 bytes + 128; Q4_0 nibbles) times signed x with
 * vpdpbusd; the 4 rows' int32 sums are folded into one vector before a single f32 step per pair, and
 * x's offset corrections are added after the fold. Where the CPU has VBMI its byte permutes replace
 * word permutes (GM_VBMI=0 turns that off). Q4_K/Q6_K: 64 values per zmm, vpmaddubsw (levels x x,
 * exact in int16) then vpdpwssd with the sub-block scales, so a super-block sums in int32 before one
 * f32 step. Measured at T = 1 from L1, one thread of the AVX-512 VM: Q8_0 46, Q4_0 24, Q6_K 33, Q4_K
 * 18 GB/s of W (DRAM gives 14-15 a core).
 * More rows of x: W repacked into 16-row panels (see "packed panels" below), one vpdpbusd per 4 values
 * of 16 rows. Also here: the activation quantizer, 16 values a step. */
#include <immintrin.h>
#include <string.h>

#include "tensor/cpu.h"
#include "tensor/matmul.h"
#include "tensor/quant.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512vnni"))), apply_to = function)
#else
#pragma GCC target("avx512vnni")
#endif

#define GM_INLINE static inline __attribute__((always_inline))
#define RMAX 4
#define TMAX 4

typedef struct {
    const int8_t *q;
    const float *d;
    const void *aux;
} xrow;

GM_INLINE xrow xrow_at(const unsigned char *base, gm_dtype wt, int in) {
    gm_xq_row r = gm_xq_row_at((void *)(uintptr_t)base, wt, in);
    return (xrow){r.q, r.d, r.aux};
}

GM_INLINE float h2f(const unsigned char *p) { return _cvtsh_ss(gm_ld_u16(p)); }

/* ---- Q8_0 -------------------------------------------------------------------------------------- */

/* Two blocks A, B per step (68 bytes: d at 0 and 34, values at 2..33 and 36..67), taken in their own
 * order by one 32-byte load and one 32-byte insert from memory, then + 128 (unsigned, for vpdpbusd),
 * so a row of W costs two simple ops per 64 values; x's correction -128 * sum(x) per block is added
 * after the fold. The f32 step is shared by the tile's 4 rows of W: vpdpbusd leaves each block's sum
 * spread over 8 int32 lanes, so the 4 rows' sums are first folded together with exact integer
 * unpack-adds (lane l then holds part of row l % 4, block A for l < 8, B above) and converted, scaled
 * and accumulated once per row of x; the rows' f16 scales are gathered into the same lane order by two
 * permutes, one conversion for the four rows. A lone last block (34 bytes) is read by masked loads,
 * its B half zero, as is x's. A tail row (R = 1) runs the same lane arithmetic with zero rows beside
 * it, so its output has the same bits as inside a full tile. */
GM_INLINE __m512i fold4_epi32(__m512i a, __m512i b, __m512i c, __m512i d) {
    const __m512i ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
    const __m512i cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
    return _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
}

/* VBMI's byte permutes by inline assembly: this file is compiled for AVX-512 VNNI only, and VBMI is a
 * separate feature (Cascade Lake has VNNI without it), checked at run time. */
GM_INLINE __m512i perm_b(__m512i idx, __m512i t) {
    __m512i r;
    __asm__("vpermb %2, %1, %0" : "=v"(r) : "v"(idx), "v"(t));
    return r;
}
GM_INLINE __m512i perm2_b(__m512i a, __m512i idx, __m512i b) {
    __asm__("vpermt2b %2, %1, %0" : "+v"(a) : "v"(idx), "v"(b));
    return a;
}

/* The 4 rows' f16 scales in a fold's lane order (id, blend): two two-source permutes and a blend. */
GM_INLINE __m512 scales4(const __m512i *raw, __m512i id, __mmask32 blend, int vbmi) {
    const __m512i d01 = vbmi ? perm2_b(raw[0], id, raw[1]) : _mm512_permutex2var_epi16(raw[0], id, raw[1]);
    const __m512i d23 = vbmi ? perm2_b(raw[2], id, raw[3]) : _mm512_permutex2var_epi16(raw[2], id, raw[3]);
    return _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_mask_blend_epi16(blend, d01, d23)));
}

/* The R rows' byte dot products with one row of x (zero vectors for absent rows). */
GM_INLINE void dots4(const __m512i *wv, __m512i xv, int R, __m512i *s) {
#pragma GCC unroll 4
    for (int r = 0; r < RMAX; r++)
        s[r] = r < R ? _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv[r], xv) : _mm512_setzero_si512();
}

/* Scale words in the folded lane order: word l = d of row l % 4 (rows 0, 2 from the first source,
 * 1, 3 from the second at word 32; the blend takes rows 2, 3 from the second pair of rows), block A
 * (word 0) for l < 8, B (word 17) above; byte indices for VBMI (second source from 64). */
static const uint16_t q8_id16[32] __attribute__((aligned(64))) = {
    0, 32, 0, 32, 0, 32, 0, 32, 17, 49, 17, 49, 17, 49, 17, 49, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
static const uint8_t q8_id8[64] __attribute__((aligned(64))) = {
    0,  1,  64, 65, 0,  1,  64, 65, 0,  1,  64, 65, 0,  1,  64, 65, 34, 35, 98, 99, 34, 35,
    98, 99, 34, 35, 98, 99, 34, 35, 98, 99, 0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,
    0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0};

/* One Q8_0 step of tile_q32: the block pair at b (two = 0: block b alone). */
GM_INLINE void q8_0_step(const unsigned char *w, size_t rb, const xrow *x, int b, int two, __m512 *acc, int R, int TT,
                         int vbmi, __m512i id) {
    const size_t bb = GM_Q8_0_BYTES;
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    __m512i xv[TMAX], xc[TMAX];
    __m512 xd[TMAX];
#pragma GCC unroll 4
    for (int u = 0; u < TT; u++) {
        const int32_t *corr = (const int32_t *)x[u].aux + b;
        const float *d = x[u].d + b;
        if (two) {
            xv[u] = _mm512_loadu_si512(x[u].q + (size_t)b * GM_QK);
            xd[u] = _mm512_mask_broadcastss_ps(_mm512_set1_ps(d[0]), 0xFF00, _mm_load_ss(d + 1));
            xc[u] = _mm512_mask_set1_epi32(_mm512_maskz_set1_epi32(0x000F, corr[0]), 0x0F00, corr[1]);
        } else {
            xv[u] = _mm512_zextsi256_si512(_mm256_loadu_si256((const void *)(x[u].q + (size_t)b * GM_QK)));
            xd[u] = _mm512_set1_ps(d[0]);
            xc[u] = _mm512_maskz_set1_epi32(0x000F, corr[0]);
        }
    }
    __m512i raw[RMAX], wv[RMAX];
#pragma GCC unroll 4
    for (int r = 0; r < RMAX; r++) {
        if (r >= R) {
            raw[r] = wv[r] = _mm512_setzero_si512();
            continue;
        }
        const unsigned char *p = w + (size_t)r * rb + (size_t)b * bb;
        gm_q_prefetch(p, (size_t)(2 * R) * rb, two ? 2 * bb : bb);
        __m512i v;
        if (two) {
            raw[r] = _mm512_loadu_si512(p); /* for the scales at words 0 and 17 */
            v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const void *)(p + 2))),
                                   _mm256_loadu_si256((const void *)(p + bb + 2)), 1);
        } else {
            raw[r] = _mm512_maskz_loadu_epi8((1ull << 34) - 1, p);
            v = _mm512_zextsi256_si512(_mm256_loadu_si256((const void *)(p + 2)));
        }
        wv[r] = _mm512_xor_si512(v, bias); /* a lone block's B half (128 after the xor) meets x = 0 */
    }
    const __m512 wd = scales4(raw, id, 0xCCCC, vbmi);
#pragma GCC unroll 4
    for (int u = 0; u < TT; u++) {
        __m512i s[RMAX];
        dots4(wv, xv[u], R, s);
        const __m512i f = _mm512_add_epi32(fold4_epi32(s[0], s[1], s[2], s[3]), xc[u]);
        acc[u] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(f), _mm512_mul_ps(wd, xd[u]), acc[u]);
    }
}

/* ---- Q4_0 -------------------------------------------------------------------------------------- */

/* A pair of Q4_0 blocks A, B (36 bytes: d at bytes 0 and 18, nibbles at 2..17 and 20..35) becomes 64
 * unsigned bytes by one permute and one AND, with no shift: each int32 lane holds 4 bytes of one block
 * (A in even lanes, B in odd ones), bytes 0..31 the low nibbles and 32..63 the same bytes masked to
 * their high nibbles, i.e. 16 x the value. x's 64 bytes get the same permute, so vpdpbusd pairs each
 * nibble with its value, and the int32 sums stay exact (|16 q x| sums < 2^24 after the fold).
 * Four rows of W fold into one vector whose lane 4g + j holds row 2 (g >> 1) + (j >> 1), block j & 1,
 * the low nibbles for even g and the high ones (16 x) for odd g: block parity is the lane's, so x's
 * scales for the pair are one 64-bit broadcast [dA, dB] x 8 and its offset corrections -8 sum(x) one
 * 64-bit broadcast into the low-nibble groups. The high lanes carry 16 x their sums to the end, where a
 * multiply by 1/16 (exact) takes it off. Against the previous word-permute + shift kernel this runs
 * 24 instead of 19 GB/s from L1 and 13.7 / 25.5 instead of 12.2 / 22.7 GB/s from DRAM (in = 3072,
 * 1 / 2 threads). */
/* The permutes: W bytes from the raw pair, x bytes from x's 64 values, scale words from two rows' raw
 * pairs (second source from index 64 / word 32): VBMI byte indices and the word indices used without it. */
static const uint8_t q4_iw8[64] __attribute__((aligned(64))) = {
    2,  3,  4,  5,  20, 21, 22, 23, 6,  7,  8,  9,  24, 25, 26, 27, 10, 11, 12, 13, 28, 29, 30, 31, 14, 15,
    16, 17, 32, 33, 34, 35, 2,  3,  4,  5,  20, 21, 22, 23, 6,  7,  8,  9,  24, 25, 26, 27, 10, 11, 12, 13,
    28, 29, 30, 31, 14, 15, 16, 17, 32, 33, 34, 35};
static const uint8_t q4_ix8[64] __attribute__((aligned(64))) = {
    0,  1,  2,  3,  32, 33, 34, 35, 4,  5,  6,  7,  36, 37, 38, 39, 8,  9,  10, 11, 40, 41, 42, 43, 12, 13,
    14, 15, 44, 45, 46, 47, 16, 17, 18, 19, 48, 49, 50, 51, 20, 21, 22, 23, 52, 53, 54, 55, 24, 25, 26, 27,
    56, 57, 58, 59, 28, 29, 30, 31, 60, 61, 62, 63};
static const uint8_t q4_id8[64] __attribute__((aligned(64))) = {
    0, 1, 18, 19, 64, 65, 82, 83, 0, 1, 18, 19, 64, 65, 82, 83, 0, 1, 18, 19, 64, 65, 82, 83, 0, 1, 18, 19,
    64, 65, 82, 83, 0, 1, 18, 19, 64, 65, 82, 83, 0, 1, 18, 19, 64, 65, 82, 83, 0, 1, 18, 19, 64, 65, 82, 83,
    0, 1, 18, 19, 64, 65, 82, 83};
static const uint16_t q4_iw16[32] __attribute__((aligned(64))) = {
    1, 2, 10, 11, 3, 4, 12, 13, 5, 6, 14, 15, 7, 8, 16, 17, 1, 2, 10, 11, 3, 4, 12, 13, 5, 6, 14, 15, 7, 8, 16, 17};
static const uint16_t q4_ix16[32] __attribute__((aligned(64))) = {
    0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23,
    8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31};
static const uint16_t q4_id16[32] __attribute__((aligned(64))) = {
    0, 9, 32, 41, 0, 9, 32, 41, 0, 9, 32, 41, 0, 9, 32, 41, 0, 9, 32, 41, 0, 9, 32, 41, 0, 9, 32, 41, 0, 9, 32, 41};

/* One Q4_0 step of tile_q32: the block pair at b (two = 0: block b alone, B's bytes load as 0). */
GM_INLINE void q4_0_step(const unsigned char *w, size_t rb, const xrow *x, int b, int two, __m512 *acc, int R, int TT,
                         int vbmi, __m512i iw, __m512i ix, __m512i id, __m512i lohi, __mmask64 m0) {
    const size_t bb = GM_Q4_0_BYTES;
    __m512i xv[TMAX], xc[TMAX];
    __m512 xd[TMAX];
#pragma GCC unroll 4
    for (int u = 0; u < TT; u++) {
        const int32_t *corr = (const int32_t *)x[u].aux + b;
        __m512i q;
        if (two) {
            q = _mm512_loadu_si512(x[u].q + (size_t)b * GM_QK);
            xd[u] = _mm512_castpd_ps(_mm512_set1_pd(*(const double *)(const void *)(x[u].d + b)));
            xc[u] = _mm512_maskz_set1_epi64(0x33, *(const long long *)(const void *)corr);
        } else {
            q = _mm512_zextsi256_si512(_mm256_loadu_si256((const void *)(x[u].q + (size_t)b * GM_QK)));
            xd[u] = _mm512_set1_ps(x[u].d[b]);
            xc[u] = _mm512_maskz_set1_epi32(0x0505, corr[0]);
        }
        xv[u] = vbmi ? perm_b(ix, q) : _mm512_permutexvar_epi16(ix, q);
    }
    __m512i raw[RMAX], wv[RMAX];
#pragma GCC unroll 4
    for (int r = 0; r < RMAX; r++) {
        if (r >= R) {
            raw[r] = wv[r] = _mm512_setzero_si512();
            continue;
        }
        const unsigned char *p = w + (size_t)r * rb + (size_t)b * bb;
        /* the pair's last byte 2 tiles ahead: steps are shorter than a line, so every line is touched */
        __builtin_prefetch(p + (size_t)(2 * R) * rb + (two ? 2 * bb : bb) - 1);
        raw[r] = _mm512_maskz_loadu_epi8(m0, p);
        wv[r] = _mm512_and_si512(vbmi ? perm_b(iw, raw[r]) : _mm512_permutexvar_epi16(iw, raw[r]), lohi);
    }
    const __m512 wd = scales4(raw, id, 0xFF00, vbmi);
#pragma GCC unroll 4
    for (int u = 0; u < TT; u++) {
        __m512i s[RMAX];
        dots4(wv, xv[u], R, s);
        const __m512i t01 = _mm512_add_epi32(_mm512_unpacklo_epi64(s[0], s[1]), _mm512_unpackhi_epi64(s[0], s[1]));
        const __m512i t23 = _mm512_add_epi32(_mm512_unpacklo_epi64(s[2], s[3]), _mm512_unpackhi_epi64(s[2], s[3]));
        const __m512i f = _mm512_add_epi32(_mm512_add_epi32(_mm512_shuffle_i32x4(t01, t23, 0x88), xc[u]),
                                           _mm512_shuffle_i32x4(t01, t23, 0xDD));
        acc[u] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(f), _mm512_mul_ps(wd, xd[u]), acc[u]);
    }
}

/* ---- Q8_0 and Q4_0 tiles ------------------------------------------------------------------------ */

/* R rows of W (4, or 1 for a tail row) against TT rows of x: whole pairs of blocks, then a lone last
 * block, then each row's lanes summed (for Q4_0 after taking the 16 x off the high-nibble lanes). */
GM_INLINE void tile_q32(const unsigned char *w, size_t rb, const unsigned char *xq, size_t xs, int in, float *y,
                        size_t ldy, int R, int TT, int q4, int vbmi) {
    const int nb = in / GM_QK;
    xrow x[TMAX];
    __m512 acc[TMAX];
#pragma GCC unroll 4
    for (int u = 0; u < TT; u++) {
        x[u] = xrow_at(xq + (size_t)u * xs, q4 ? GM_DT_Q4_0 : GM_DT_Q8_0, in);
        acc[u] = _mm512_setzero_ps();
    }
    int b = 0;
    if (q4) {
        const __m512i iw = _mm512_load_si512(vbmi ? (const void *)q4_iw8 : (const void *)q4_iw16);
        const __m512i ix = _mm512_load_si512(vbmi ? (const void *)q4_ix8 : (const void *)q4_ix16);
        const __m512i id = _mm512_load_si512(vbmi ? (const void *)q4_id8 : (const void *)q4_id16);
        const __m512i lohi = _mm512_inserti64x4(_mm512_set1_epi8(0x0F), _mm256_set1_epi8((char)0xF0), 1);
        for (; b + 1 < nb; b += 2) q4_0_step(w, rb, x, b, 1, acc, R, TT, vbmi, iw, ix, id, lohi, (1ull << 36) - 1);
        if (b < nb) q4_0_step(w, rb, x, b, 0, acc, R, TT, vbmi, iw, ix, id, lohi, (1ull << 18) - 1);
    } else {
        const __m512i id = _mm512_load_si512(vbmi ? (const void *)q8_id8 : (const void *)q8_id16);
        for (; b + 1 < nb; b += 2) q8_0_step(w, rb, x, b, 1, acc, R, TT, vbmi, id);
        if (b < nb) q8_0_step(w, rb, x, b, 0, acc, R, TT, vbmi, id);
    }
    const __m512 unscale = _mm512_setr_ps(1, 1, 1, 1, 0.0625f, 0.0625f, 0.0625f, 0.0625f, 1, 1, 1, 1, 0.0625f,
                                          0.0625f, 0.0625f, 0.0625f);
#pragma GCC unroll 4
    for (int u = 0; u < TT; u++) {
        __m128 q;
        if (q4) { /* lanes 4g + j: rows 2 (g >> 1) + (j >> 1) */
            const __m512 a = _mm512_mul_ps(acc[u], unscale);
            const __m128 r01 = _mm_add_ps(_mm512_castps512_ps128(a), _mm512_extractf32x4_ps(a, 1));
            const __m128 r23 = _mm_add_ps(_mm512_extractf32x4_ps(a, 2), _mm512_extractf32x4_ps(a, 3));
            q = _mm_hadd_ps(r01, r23);
        } else { /* lanes r, r + 4, r + 8, r + 12 -> row r */
            const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(acc[u]), _mm512_extractf32x8_ps(acc[u], 1));
            q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
        }
        if (R == RMAX) _mm_storeu_ps(y + (size_t)u * ldy, q);
        else y[(size_t)u * ldy] = _mm_cvtss_f32(q);
    }
}

/* ---- Q4_K -------------------------------------------------------------------------------------- */

/* The 12 scale bytes as int16 lanes 0..7 = scales, 8..15 = mins. */
GM_INLINE __m512i q4k_scales16(const unsigned char *s) {
    uint32_t u[3];
    memcpy(u, s, sizeof u);
    const uint32_t sc_lo = u[0] & 0x3f3f3f3fu, m_lo = u[1] & 0x3f3f3f3fu;
    const uint32_t sc_hi = (u[2] & 0x0f0f0f0fu) | (((u[0] >> 6) & 0x03030303u) << 4);
    const uint32_t m_hi = ((u[2] >> 4) & 0x0f0f0f0fu) | (((u[1] >> 6) & 0x03030303u) << 4);
    __m128i v = _mm_set_epi32((int)m_hi, (int)m_lo, (int)sc_hi, (int)sc_lo);
    return _mm512_castsi256_si512(_mm256_cvtepu8_epi16(v));
}

GM_INLINE void tile_q4_K(const unsigned char *w, size_t rb, const unsigned char *xq, size_t xs, int in, float *y,
                         size_t ldy, int R, int TT) {
    const int nb = in / GM_QK_K;
    xrow x[TMAX];
    __m512 acc[RMAX][TMAX];
#pragma GCC unroll 4
    for (int u = 0; u < TT; u++) x[u] = xrow_at(xq + (size_t)u * xs, GM_DT_Q4_K, in);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++) acc[r][u] = _mm512_setzero_ps();
    const __m512i lo4 = _mm512_set1_epi8(0x0F);
    /* int16 lane picks: chunk c uses scale 2c for lanes 0..15 and 2c+1 for 16..31; mins pairwise */
    const __m512i idx_m = _mm512_set_epi16(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8, 15, 15, 14,
                                           14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8);
    for (int i = 0; i < nb; i++) {
        __m512i sc[RMAX];
        __m256i mn[RMAX];
        float dw[RMAX], dm[RMAX];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const unsigned char *blk = w + (size_t)r * rb + (size_t)i * GM_Q4_K_BYTES;
            gm_q_prefetch(blk, (size_t)(2 * R) * rb, GM_Q4_K_BYTES);
            sc[r] = q4k_scales16(blk + GM_Q4K_SCALES);
            mn[r] = _mm512_castsi512_si256(_mm512_permutexvar_epi16(idx_m, sc[r]));
            dw[r] = h2f(blk);
            dm[r] = h2f(blk + GM_Q4K_DMIN);
        }
        __m512i isum[RMAX][TMAX];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
#pragma GCC unroll 4
            for (int u = 0; u < TT; u++) isum[r][u] = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m512i xv[TMAX];
#pragma GCC unroll 4
            for (int u = 0; u < TT; u++) xv[u] = _mm512_loadu_si512(x[u].q + (size_t)i * GM_QK_K + 64 * c);
            const __m512i idx =
                _mm512_inserti64x4(_mm512_set1_epi16((short)(2 * c)), _mm256_set1_epi16((short)(2 * c + 1)), 1);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const __m256i q = _mm256_loadu_si256(
                    (const void *)(w + (size_t)r * rb + (size_t)i * GM_Q4_K_BYTES + GM_Q4K_QS + 32 * c));
                __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1);
                z = _mm512_and_si512(z, lo4);
                const __m512i s = _mm512_permutexvar_epi16(idx, sc[r]);
#pragma GCC unroll 4
                for (int u = 0; u < TT; u++)
                    isum[r][u] = _mm512_dpwssd_epi32(isum[r][u], _mm512_maddubs_epi16(z, xv[u]), s);
            }
        }
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++) {
            const float dx = x[u].d[i];
            const __m256i bs = _mm256_loadu_si256((const void *)((const int16_t *)x[u].aux + 16 * i));
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const __m256 m = _mm256_cvtepi32_ps(_mm256_madd_epi16(mn[r], bs));
                acc[r][u] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[r][u]), _mm512_set1_ps(dw[r] * dx), acc[r][u]);
                acc[r][u] = _mm512_fmadd_ps(_mm512_zextps256_ps512(m), _mm512_set1_ps(-dm[r] * dx), acc[r][u]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++) y[(size_t)u * ldy + (size_t)r] = _mm512_reduce_add_ps(acc[r][u]);
}

/* ---- Q6_K -------------------------------------------------------------------------------------- */

GM_INLINE void tile_q6_K(const unsigned char *w, size_t rb, const unsigned char *xq, size_t xs, int in, float *y,
                         size_t ldy, int R, int TT) {
    const int nb = in / GM_QK_K;
    xrow x[TMAX];
    __m512 acc[RMAX][TMAX];
#pragma GCC unroll 4
    for (int u = 0; u < TT; u++) x[u] = xrow_at(xq + (size_t)u * xs, GM_DT_Q6_K, in);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++) acc[r][u] = _mm512_setzero_ps();
    const __m512i lo4 = _mm512_set1_epi8(0x0F), hi2 = _mm512_set1_epi8(0x30);
    const __m512i ibase = _mm512_set_epi16(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1,
                                           0, 0, 0, 0, 0, 0, 0, 0);
    for (int i = 0; i < nb; i++) {
        __m512i sc[RMAX];
        float dw[RMAX];
        __m512i isum[RMAX][TMAX];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const unsigned char *blk = w + (size_t)r * rb + (size_t)i * GM_Q6_K_BYTES;
            gm_q_prefetch(blk, (size_t)(2 * R) * rb, GM_Q6_K_BYTES);
            sc[r] =
                _mm512_castsi256_si512(_mm256_cvtepi8_epi16(_mm_loadu_si128((const void *)(blk + GM_Q6K_SCALES))));
            dw[r] = h2f(blk + GM_Q6K_D);
        }
        /* the -32 offset of every level: -32 * sum_j sc_j * (sum of x over sub-block j) */
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++) {
            const __m256i bs = _mm256_loadu_si256((const void *)((const int16_t *)x[u].aux + 16 * i));
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                __m256i c = _mm256_madd_epi16(_mm512_castsi512_si256(sc[r]), bs);
                isum[r][u] =
                    _mm512_zextsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(c, 5)));
            }
        }
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m512i xa[TMAX], xb[TMAX];
#pragma GCC unroll 4
            for (int u = 0; u < TT; u++) {
                xa[u] = _mm512_loadu_si512(x[u].q + (size_t)i * GM_QK_K + 128 * h);
                xb[u] = _mm512_loadu_si512(x[u].q + (size_t)i * GM_QK_K + 128 * h + 64);
            }
            /* chunk k (64 values) uses scales 4k .. 4k+3, eight int16 lanes each */
            const __m512i idx0 = _mm512_add_epi16(ibase, _mm512_set1_epi16((short)(8 * h)));
            const __m512i idx1 = _mm512_add_epi16(ibase, _mm512_set1_epi16((short)(8 * h + 4)));
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const unsigned char *blk = w + (size_t)r * rb + (size_t)i * GM_Q6_K_BYTES;
                const __m512i ql = _mm512_loadu_si512(blk + 64 * h);
                const __m256i qh = _mm256_loadu_si256((const void *)(blk + GM_Q6K_QH + 32 * h));
                const __m512i qhz = _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
                const __m512i lo =
                    _mm512_or_si512(_mm512_and_si512(ql, lo4), _mm512_and_si512(_mm512_slli_epi16(qhz, 4), hi2));
                const __m512i hi =
                    _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), lo4), _mm512_and_si512(qhz, hi2));
                const __m512i s0 = _mm512_permutexvar_epi16(idx0, sc[r]),
                              s1 = _mm512_permutexvar_epi16(idx1, sc[r]);
#pragma GCC unroll 4
                for (int u = 0; u < TT; u++) {
                    isum[r][u] = _mm512_dpwssd_epi32(isum[r][u], _mm512_maddubs_epi16(lo, xa[u]), s0);
                    isum[r][u] = _mm512_dpwssd_epi32(isum[r][u], _mm512_maddubs_epi16(hi, xb[u]), s1);
                }
            }
        }
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++) {
            const float dx = x[u].d[i];
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                acc[r][u] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[r][u]), _mm512_set1_ps(dw[r] * dx), acc[r][u]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int u = 0; u < TT; u++) y[(size_t)u * ldy + (size_t)r] = _mm512_reduce_add_ps(acc[r][u]);
}

/* ---- tile dispatch ----------------------------------------------------------------------------- */

#define GM_TILE_SWITCH(CALL)                                                                                      \
    do {                                                                                                          \
        if (R == RMAX) {                                                                                          \
            switch (TT) {                                                                                         \
            case 1: CALL(RMAX, 1); break;                                                                         \
            case 2: CALL(RMAX, 2); break;                                                                         \
            case 3: CALL(RMAX, 3); break;                                                                         \
            default: CALL(RMAX, 4); break;                                                                        \
            }                                                                                                     \
        } else {                                                                                                  \
            switch (TT) {                                                                                         \
            case 1: CALL(1, 1); break;                                                                            \
            case 2: CALL(1, 2); break;                                                                            \
            case 3: CALL(1, 3); break;                                                                            \
            default: CALL(1, 4); break;                                                                           \
            }                                                                                                     \
        }                                                                                                         \
    } while (0)

#define GM_Q32_TILES(name, q4, vbmi)                                                                          \
    static void name(const unsigned char *w, size_t rb, const unsigned char *xq, size_t xs, int in, float *y,      \
                     size_t ldy, int R, int TT) {                                                                 \
        const int q4_ = q4, vbmi_ = vbmi;                                                                         \
        GM_TILE_SWITCH(GM_CALL_Q32);                                                                              \
    }
#define GM_CALL_Q32(r_, t_) tile_q32(w, rb, xq, xs, in, y, ldy, r_, t_, q4_, vbmi_)
GM_Q32_TILES(tiles_q8_0, 0, 0)
GM_Q32_TILES(tiles_q8_0_vbmi, 0, 1)
GM_Q32_TILES(tiles_q4_0, 1, 0)
GM_Q32_TILES(tiles_q4_0_vbmi, 1, 1)
#undef GM_CALL_Q32
#undef GM_Q32_TILES
static void tiles_q4_K(const unsigned char *w, size_t rb, const unsigned char *xq, size_t xs, int in, float *y,
                       size_t ldy, int R, int TT) {
#define GM_CALL(r_, t_) tile_q4_K(w, rb, xq, xs, in, y, ldy, r_, t_)
    GM_TILE_SWITCH(GM_CALL);
#undef GM_CALL
}
static void tiles_q6_K(const unsigned char *w, size_t rb, const unsigned char *xq, size_t xs, int in, float *y,
                       size_t ldy, int R, int TT) {
#define GM_CALL(r_, t_) tile_q6_K(w, rb, xq, xs, in, y, ldy, r_, t_)
    GM_TILE_SWITCH(GM_CALL);
#undef GM_CALL
}

/* ---- activation quantizer: the bytes of gm_xq_quantize_row (quant.c), 16 values a step ------------ */

/* Round half to even (the default MXCSR mode, which nothing here changes), as nearest_int does. */
void gm_xq_quantize_row_avx512(const float *x, gm_dtype wt, int in, void *base) {
    gm_xq_row r = gm_xq_row_at(base, wt, in);
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
    if (wt == GM_DT_Q8_0 || wt == GM_DT_Q4_0) {
        const int32_t off = wt == GM_DT_Q4_0 ? 8 : 128;
        for (int b = 0; b < in / GM_QK; b++) {
            const float *xb = x + (size_t)b * GM_QK;
            const __m512 v0 = _mm512_loadu_ps(xb), v1 = _mm512_loadu_ps(xb + 16);
            const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
            const float d = amax / 127.0f;
            const float id = d != 0.0f ? 1.0f / d : 0.0f;
            const __m512 idv = _mm512_set1_ps(id);
            __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, idv)),
                    q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, idv));
            q0 = _mm512_min_epi32(_mm512_max_epi32(q0, lo), hi);
            q1 = _mm512_min_epi32(_mm512_max_epi32(q1, lo), hi);
            _mm_storeu_si128((void *)(r.q + (size_t)b * GM_QK), _mm512_cvtepi32_epi8(q0));
            _mm_storeu_si128((void *)(r.q + (size_t)b * GM_QK + 16), _mm512_cvtepi32_epi8(q1));
            r.d[b] = d;
            ((int32_t *)r.aux)[b] = -off * _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
        }
        return;
    }
    int16_t *bsums = r.aux;
    for (int b = 0; b < in / GM_QK_K; b++) {
        const float *xb = x + (size_t)b * GM_QK_K;
        __m512 m = _mm512_setzero_ps();
        for (int j = 0; j < GM_QK_K; j += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(xb + j)));
        const float amax = _mm512_reduce_max_ps(m);
        int8_t *q = r.q + (size_t)b * GM_QK_K;
        if (amax == 0.0f) {
            r.d[b] = 0.0f;
            memset(q, 0, GM_QK_K);
            memset(bsums + 16 * b, 0, 16 * sizeof *bsums);
            continue;
        }
        float max = amax;
        for (int j = 0; j < GM_QK_K; j++) /* the first value of largest magnitude, with its sign */
            if (xb[j] == amax || xb[j] == -amax) {
                max = xb[j];
                break;
            }
        const float iscale = -127.0f / max;
        const __m512 is = _mm512_set1_ps(iscale);
        for (int j = 0; j < 16; j++) {
            __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + 16 * j), is));
            v = _mm512_min_epi32(_mm512_max_epi32(v, lo), hi);
            _mm_storeu_si128((void *)(q + 16 * j), _mm512_cvtepi32_epi8(v));
            bsums[16 * b + j] = (int16_t)_mm512_reduce_add_epi32(v);
        }
        r.d[b] = 1.0f / iscale;
    }
}

/* ---- packed panels (gm_q_use_panels: T above a few rows) -------------------------------------- */

/* Rows of W are repacked, a block of QKC values at a time, into panels of PR = 16 rows where each
 * 4-byte step of a group (32 values; 16 for Q6_K) holds the 16 rows' bytes side by side: one vpdpbusd
 * with x's 4 bytes broadcast then adds 4 products to each row's lane, and a group's sums come out as
 * one vector of 16 rows, scaled by one f32 multiply-add per group. The bytes are unsigned levels
 * (Q8_0: q + 128; Q4_0, Q4_K: nibbles; Q6_K: 6-bit levels) and the integer sums start at the offset
 * correction -off * sum(x over the group); Q4_K's mins are one more multiply-add per group. Each
 * output is a fixed sequence of operations over its row: QKC blocks summed through y, groups in order,
 * whatever the tile or thread split. Packing costs a pass over W per block of QMC rows of x. */
#define PR 16
#define NPAN 2
#define QKC 512
#define QTT 6
#define QMC 480

typedef struct {
    _Alignas(64) uint8_t q[NPAN][QKC * PR];
    _Alignas(64) float s[NPAN][QKC / 16][PR]; /* per group: the scale of each row (d, or d * sub-block scale) */
    _Alignas(64) float m[NPAN][QKC / 32][PR]; /* Q4_K: dmin * m of each row */
} qpanel;

/* Unpack values [k0, k0 + kc) of one W row (whole groups) as unsigned bytes, group g of row r going
 * to stage + g * 16 G + the row's slot (see qpack); sc[g] and mn[g] get the group's scale and min. */
GM_INLINE void unpack_row(const unsigned char *row, gm_dtype wt, int k0, int kc, uint8_t *stage, size_t slot,
                          float *sc, float *mn) {
    const __m256i lo4 = _mm256_set1_epi8(0x0F);
    if (wt == GM_DT_Q8_0 || wt == GM_DT_Q4_0) {
        for (int g = 0; g < kc / GM_QK; g++) {
            uint8_t *dst = stage + (size_t)g * 16 * GM_QK + slot;
            if (wt == GM_DT_Q8_0) {
                const unsigned char *p = row + (size_t)(k0 / GM_QK + g) * GM_Q8_0_BYTES;
                _mm256_storeu_si256((void *)dst, _mm256_xor_si256(_mm256_loadu_si256((const void *)(p + 2)),
                                                                  _mm256_set1_epi8((char)0x80)));
                sc[g] = h2f(p);
            } else {
                const unsigned char *p = row + (size_t)(k0 / GM_QK + g) * GM_Q4_0_BYTES;
                const __m128i v = _mm_loadu_si128((const void *)(p + 2));
                _mm256_storeu_si256((void *)dst, _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), lo4));
                sc[g] = h2f(p);
            }
        }
    } else if (wt == GM_DT_Q4_K) {
        for (int i = 0; i < kc / GM_QK_K; i++) {
            const unsigned char *blk = row + (size_t)(k0 / GM_QK_K + i) * GM_Q4_K_BYTES;
            uint8_t scs[8], ms[8];
            gm_q4k_scales(blk + GM_Q4K_SCALES, scs, ms);
            const float d = h2f(blk), dmin = h2f(blk + GM_Q4K_DMIN);
            for (int c = 0; c < 4; c++) {
                const __m256i v = _mm256_loadu_si256((const void *)(blk + GM_Q4K_QS + 32 * c));
                const int g = 8 * i + 2 * c;
                _mm256_storeu_si256((void *)(stage + (size_t)g * 16 * 32 + slot), _mm256_and_si256(v, lo4));
                _mm256_storeu_si256((void *)(stage + (size_t)(g + 1) * 16 * 32 + slot),
                                    _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4));
            }
            for (int j = 0; j < 8; j++) {
                sc[8 * i + j] = d * (float)scs[j];
                mn[8 * i + j] = dmin * (float)ms[j];
            }
        }
    } else {
        const __m256i hi2 = _mm256_set1_epi8(0x30);
        for (int i = 0; i < kc / GM_QK_K; i++) {
            const unsigned char *blk = row + (size_t)(k0 / GM_QK_K + i) * GM_Q6_K_BYTES;
            const float d = h2f(blk + GM_Q6K_D);
            for (int h = 0; h < 2; h++) {
                const __m256i ql0 = _mm256_loadu_si256((const void *)(blk + 64 * h));
                const __m256i ql1 = _mm256_loadu_si256((const void *)(blk + 64 * h + 32));
                const __m256i qh = _mm256_loadu_si256((const void *)(blk + GM_Q6K_QH + 32 * h));
                __m256i q[4];
                q[0] =
                    _mm256_or_si256(_mm256_and_si256(ql0, lo4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), hi2));
                q[1] =
                    _mm256_or_si256(_mm256_and_si256(ql1, lo4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), hi2));
                q[2] =
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), lo4), _mm256_and_si256(qh, hi2));
                q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), lo4),
                                       _mm256_and_si256(_mm256_srli_epi16(qh, 2), hi2));
                for (int k = 0; k < 4; k++) { /* values 128 h + 32 k ..: groups of 16 */
                    const int g = 16 * i + 8 * h + 2 * k;
                    _mm_storeu_si128((void *)(stage + (size_t)g * 16 * 16 + slot), _mm256_castsi256_si128(q[k]));
                    _mm_storeu_si128((void *)(stage + (size_t)(g + 1) * 16 * 16 + slot),
                                     _mm256_extracti128_si256(q[k], 1));
                }
            }
            for (int j = 0; j < 16; j++) sc[16 * i + j] = d * (float)(int8_t)blk[GM_Q6K_SCALES + j];
        }
    }
}

/* Pack rows [o, o + nr) (nr <= NPAN * PR; missing rows are zero) for values [k0, k0 + kc). Each row's
 * group goes to a staging slot chosen so that plain 64-byte loads give, for G = 32, rows (r, r + 8) and,
 * for G = 16, rows (r, r + 4, r + 8, r + 12); an in-register transpose of 4-byte words then gives one
 * vector per 4-byte step holding the 16 rows in order. */
static void qpack(qpanel *P, const unsigned char *w, size_t rb, gm_dtype wt, int nr, int k0, int kc) {
    const int G = wt == GM_DT_Q6_K ? 16 : 32, ng = kc / G, CH = G / 4;
    _Alignas(64) uint8_t stage[QKC * PR];
    for (int p = 0; p < NPAN; p++) {
        for (int r = 0; r < PR; r++) {
            const int row = p * PR + r;
            const size_t slot = G == 32 ? (size_t)(r % 8) * 64 + (size_t)(r / 8) * 32
                                        : (size_t)(r % 4) * 64 + (size_t)(r / 4) * 16;
            if (row >= nr) {
                for (int g = 0; g < ng; g++) {
                    memset(stage + (size_t)g * 16 * G + slot, 0, (size_t)G);
                    P->s[p][g][r] = 0.0f;
                    if (G == 32) P->m[p][g][r] = 0.0f;
                }
                continue;
            }
            float sc[QKC / 16], mn[QKC / 32];
            unpack_row(w + (size_t)row * rb, wt, k0, kc, stage, slot, sc, mn);
            for (int g = 0; g < ng; g++) {
                P->s[p][g][r] = sc[g];
                if (wt == GM_DT_Q4_K) P->m[p][g][r] = mn[g];
            }
        }
        for (int g = 0; g < ng; g++) {
            const uint8_t *src = stage + (size_t)g * 16 * G;
            uint8_t *dst = &P->q[p][(size_t)g * CH * PR * 4];
            if (G == 32) {
                __m512i z[8], t[8], u[8];
#pragma GCC unroll 8
                for (int r = 0; r < 8; r++) z[r] = _mm512_load_si512(src + 64 * r);
#pragma GCC unroll 4
                for (int r = 0; r < 8; r += 2) {
                    t[r] = _mm512_unpacklo_epi32(z[r], z[r + 1]);
                    t[r + 1] = _mm512_unpackhi_epi32(z[r], z[r + 1]);
                }
#pragma GCC unroll 2
                for (int b = 0; b < 8; b += 4) { /* rows 0-3 and 4-7 (of each half) */
                    u[b + 0] = _mm512_unpacklo_epi64(t[b], t[b + 2]);
                    u[b + 1] = _mm512_unpackhi_epi64(t[b], t[b + 2]);
                    u[b + 2] = _mm512_unpacklo_epi64(t[b + 1], t[b + 3]);
                    u[b + 3] = _mm512_unpackhi_epi64(t[b + 1], t[b + 3]);
                }
                const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
                const __m512i hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++) {
                    _mm512_store_si512(dst + 64 * c, _mm512_permutex2var_epi64(u[c], lo, u[c + 4]));
                    _mm512_store_si512(dst + 64 * (c + 4), _mm512_permutex2var_epi64(u[c], hi, u[c + 4]));
                }
            } else {
                __m512i z[4], t[4];
#pragma GCC unroll 4
                for (int r = 0; r < 4; r++) z[r] = _mm512_load_si512(src + 64 * r);
                t[0] = _mm512_unpacklo_epi32(z[0], z[1]);
                t[1] = _mm512_unpackhi_epi32(z[0], z[1]);
                t[2] = _mm512_unpacklo_epi32(z[2], z[3]);
                t[3] = _mm512_unpackhi_epi32(z[2], z[3]);
                _mm512_store_si512(dst, _mm512_unpacklo_epi64(t[0], t[2]));
                _mm512_store_si512(dst + 64, _mm512_unpackhi_epi64(t[0], t[2]));
                _mm512_store_si512(dst + 128, _mm512_unpacklo_epi64(t[1], t[3]));
                _mm512_store_si512(dst + 192, _mm512_unpackhi_epi64(t[1], t[3]));
            }
        }
    }
}

/* y[t .. t+TT) x [o, o + 16 NP) (+)= the packed block times x rows t.. over values [k0, k0 + kc). */
GM_INLINE void qmicro(const qpanel *P, int NP, int TT, gm_dtype wt, const unsigned char *xq, size_t xs, int in,
                      int k0, int kc, float *y, size_t ldy, int first, __mmask16 m0, __mmask16 m1) {
    const int G = wt == GM_DT_Q6_K ? 16 : 32, ng = kc / G, CH = G / 4;
    const int blk = wt == GM_DT_Q8_0 || wt == GM_DT_Q4_0 ? GM_QK : GM_QK_K;
    xrow x[QTT];
    __m512 acc[NPAN][QTT];
#pragma GCC unroll 6
    for (int u = 0; u < TT; u++) {
        x[u] = xrow_at(xq + (size_t)u * xs, wt, in);
#pragma GCC unroll 2
        for (int p = 0; p < NP; p++) {
            const __mmask16 m = p ? m1 : m0;
            acc[p][u] =
                first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m, y + (size_t)u * ldy + (size_t)(PR * p));
        }
    }
    for (int g = 0; g < ng; g++) {
        const int k = k0 + g * G;
        __m512i isum[NPAN][QTT];
#pragma GCC unroll 6
        for (int u = 0; u < TT; u++) {
            int32_t corr = 0;
            if (wt == GM_DT_Q8_0 || wt == GM_DT_Q4_0)
                corr = ((const int32_t *)x[u].aux)[k / GM_QK];
            else if (wt == GM_DT_Q6_K)
                corr = -32 * ((const int16_t *)x[u].aux)[k / 16];
            const __m512i cv = _mm512_set1_epi32(corr);
#pragma GCC unroll 2
            for (int p = 0; p < NP; p++) isum[p][u] = cv;
        }
#pragma GCC unroll 8
        for (int c = 0; c < CH; c++) {
            __m512i wv[NPAN];
#pragma GCC unroll 2
            for (int p = 0; p < NP; p++) wv[p] = _mm512_load_si512(&P->q[p][(size_t)(g * CH + c) * PR * 4]);
#pragma GCC unroll 6
            for (int u = 0; u < TT; u++) {
                int32_t xw;
                memcpy(&xw, x[u].q + k + 4 * c, 4);
                const __m512i xb = _mm512_set1_epi32(xw);
#pragma GCC unroll 2
                for (int p = 0; p < NP; p++) isum[p][u] = _mm512_dpbusd_epi32(isum[p][u], wv[p], xb);
            }
        }
#pragma GCC unroll 6
        for (int u = 0; u < TT; u++) {
            const float dx = x[u].d[k / blk];
            const __m512 dxv = _mm512_set1_ps(dx);
            float mt = 0.0f;
            if (wt == GM_DT_Q4_K) {
                const int16_t *bs = (const int16_t *)x[u].aux + k / 16;
                mt = -dx * (float)(bs[0] + bs[1]);
            }
#pragma GCC unroll 2
            for (int p = 0; p < NP; p++) {
                acc[p][u] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[p][u]),
                                            _mm512_mul_ps(_mm512_load_ps(P->s[p][g]), dxv), acc[p][u]);
                if (wt == GM_DT_Q4_K)
                    acc[p][u] = _mm512_fmadd_ps(_mm512_load_ps(P->m[p][g]), _mm512_set1_ps(mt), acc[p][u]);
            }
        }
    }
#pragma GCC unroll 6
    for (int u = 0; u < TT; u++)
#pragma GCC unroll 2
        for (int p = 0; p < NP; p++)
            _mm512_mask_storeu_ps(y + (size_t)u * ldy + (size_t)(PR * p), p ? m1 : m0, acc[p][u]);
}

#define GM_QMICRO_CASES(WT)                                                                                       \
    switch ((np == 2 ? 8 : 0) + tt) {                                                                             \
    case 1: qmicro(P, 1, 1, WT, xq, xs, in, k0, kc, y, ldy, first, m0, m1); break;                                \
    case 2: qmicro(P, 1, 2, WT, xq, xs, in, k0, kc, y, ldy, first, m0, m1); break;                                \
    case 3: qmicro(P, 1, 3, WT, xq, xs, in, k0, kc, y, ldy, first, m0, m1); break;                                \
    case 4: qmicro(P, 1, 4, WT, xq, xs, in, k0, kc, y, ldy, first, m0, m1); break;                                \
    case 5: qmicro(P, 1, 5, WT, xq, xs, in, k0, kc, y, ldy, first, m0, m1); break;                                \
    case 6: qmicro(P, 1, 6, WT, xq, xs, in, k0, kc, y, ldy, first, m0, m1); break;                                \
    case 9: qmicro(P, 2, 1, WT, xq, xs, in, k0, kc, y, ldy, first, m0, m1); break;                                \
    case 10: qmicro(P, 2, 2, WT, xq, xs, in, k0, kc, y, ldy, first, m0, m1); break;                               \
    case 11: qmicro(P, 2, 3, WT, xq, xs, in, k0, kc, y, ldy, first, m0, m1); break;                               \
    case 12: qmicro(P, 2, 4, WT, xq, xs, in, k0, kc, y, ldy, first, m0, m1); break;                               \
    case 13: qmicro(P, 2, 5, WT, xq, xs, in, k0, kc, y, ldy, first, m0, m1); break;                               \
    default: qmicro(P, 2, 6, WT, xq, xs, in, k0, kc, y, ldy, first, m0, m1); break;                               \
    }

typedef void (*qmicro_fn)(const qpanel *P, int np, int tt, const unsigned char *xq, size_t xs, int in, int k0,
                          int kc, float *y, size_t ldy, int first, __mmask16 m0, __mmask16 m1);
#define GM_QMICRO_FN(NAME, WT)                                                                                    \
    static void NAME(const qpanel *P, int np, int tt, const unsigned char *xq, size_t xs, int in, int k0, int kc, \
                     float *y, size_t ldy, int first, __mmask16 m0, __mmask16 m1) {                               \
        GM_QMICRO_CASES(WT)                                                                                       \
    }
GM_QMICRO_FN(qmicro_q8_0, GM_DT_Q8_0)
GM_QMICRO_FN(qmicro_q4_0, GM_DT_Q4_0)
GM_QMICRO_FN(qmicro_q4_K, GM_DT_Q4_K)
GM_QMICRO_FN(qmicro_q6_K, GM_DT_Q6_K)

static void qgemm(const gm_mm_args *a, int t0, int t1, int o0, int o1) {
    _Alignas(64) unsigned char store[sizeof(qpanel)];
    qpanel *P = (qpanel *)(void *)store;
    const gm_dtype wt = a->wt;
    const qmicro_fn fn = wt == GM_DT_Q8_0   ? qmicro_q8_0
                         : wt == GM_DT_Q4_0 ? qmicro_q4_0
                         : wt == GM_DT_Q4_K ? qmicro_q4_K
                                            : qmicro_q6_K;
    size_t rb = 0;
    gm_dtype_row_bytes(wt, (size_t)a->in, &rb);
    const size_t ldy = (size_t)a->out, xs = a->xq_stride;
    const unsigned char *w = a->w;
    gm_q_pf pf = {NULL, 0, 0, 0, 0, 0, 0};
    for (int tb = t0; tb < t1; tb += QMC) {
        const int te = t1 - tb > QMC ? tb + QMC : t1;
        const int steps = (te - tb + QTT - 1) / QTT;
        for (int k0 = 0; k0 < a->in; k0 += QKC) {
            const int kc = a->in - k0 < QKC ? a->in - k0 : QKC;
            for (int o = o0; o < o1; o += NPAN * PR) {
                const int nr = o1 - o < NPAN * PR ? o1 - o : NPAN * PR;
                qpack(P, w + (size_t)o * rb, rb, wt, nr, k0, kc);
                /* next block: the following rows, or the first rows of the next k block */
                if (o + NPAN * PR < o1) {
                    const int nn = o1 - o - NPAN * PR;
                    gm_q_pf_plan(&pf, w, rb, wt, o + NPAN * PR, nn < NPAN * PR ? nn : NPAN * PR, k0, kc);
                } else if (k0 + QKC < a->in) {
                    const int nk = a->in - k0 - QKC;
                    gm_q_pf_plan(&pf, w, rb, wt, o0, o1 - o0 < NPAN * PR ? o1 - o0 : NPAN * PR, k0 + QKC,
                                   nk < QKC ? nk : QKC);
                } else {
                    pf.total = 0;
                }
                const size_t per = (pf.total + (size_t)steps - 1) / (size_t)steps;
                const __mmask16 m0 = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1u);
                const __mmask16 m1 = nr >= 32 ? 0xffff : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1u);
                const int np = nr > PR ? 2 : 1;
                for (int t = tb; t < te; t += QTT) {
                    const int tt = te - t < QTT ? te - t : QTT;
                    gm_q_pf_some(&pf, per);
                    fn(P, np, tt, a->xq + (size_t)t * xs, xs, a->in, k0, kc, a->y + (size_t)t * ldy + (size_t)o,
                       ldy, k0 == 0, m0, m1);
                }
            }
        }
    }
}

void gm_qmatmul_range_avx512(const gm_mm_args *a, int t0, int t1, int o0, int o1) {
    if (gm_q_use_panels(a->wt, a->T)) {
        qgemm(a, t0, t1, o0, o1);
        return;
    }
    const int vbmi = gm_cpu_features_get()->avx512vbmi;
    gm_qtile_fn f = a->wt == GM_DT_Q8_0   ? (vbmi ? tiles_q8_0_vbmi : tiles_q8_0)
                    : a->wt == GM_DT_Q4_0 ? (vbmi ? tiles_q4_0_vbmi : tiles_q4_0)
                    : a->wt == GM_DT_Q4_K ? tiles_q4_K
                                          : tiles_q6_K;
    gm_q_run_tiles(a->w, a->wt, a->xq, a->xq_stride, a->in, a->y, a->out, t0, t1, o0, o1, RMAX, TMAX, f);
}

#if defined(__clang__)
#pragma clang attribute pop
#endif
