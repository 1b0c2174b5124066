/* MinHash signing kernels (private to src/data/minhash.c and its tests): the scalar reference and the
 * AVX2 version, which must agree bit for bit. Permutation i maps the low 32 bits x of a shingle hash to
 * the high 32 bits of (a_i * x + b_i) mod 2^64, with a_i = ahi[i] * 2^32 + alo[i]; sig[i] receives the
 * minimum over the n hashes (UINT32_MAX when n = 0). */
#ifndef GM_DATA_MINHASH_KERNELS_H
#define GM_DATA_MINHASH_KERNELS_H

#include <stddef.h>
#include <stdint.h>

typedef void (*gm_minhash_kernel)(const uint32_t *alo, const uint32_t *ahi, const uint64_t *b, int perms,
                                  const uint64_t *h, size_t n, uint32_t *sig);

void gm_minhash_sign_scalar(const uint32_t *alo, const uint32_t *ahi, const uint64_t *b, int perms, const uint64_t *h,
                            size_t n, uint32_t *sig);
#ifdef GM_HAVE_X86
void gm_minhash_sign_avx2(const uint32_t *alo, const uint32_t *ahi, const uint64_t *b, int perms, const uint64_t *h,
                          size_t n, uint32_t *sig);
#endif

#endif
