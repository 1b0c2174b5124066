/* Non-cryptographic 64-bit hashing for the data pipeline: a bijective mixer, a byte-string hash, and a
 * streaming 128-bit hasher for exact-duplicate keys. Seeded and platform-independent, so signatures and
 * dedup decisions are the same on every machine and every run. */
#ifndef GM_DATA_HASH_H
#define GM_DATA_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* splitmix64's finalizer: a bijection on 64-bit values with full avalanche. */
static inline uint64_t gm_mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static inline uint64_t gm_rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t gm_load64_le(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* Hash of the bytes p[0..n) under `seed`. */
static inline uint64_t gm_hash_bytes(const void *p, size_t n, uint64_t seed) {
    const unsigned char *s = (const unsigned char *)p;
    uint64_t h = seed ^ (0x9e3779b97f4a7c15ULL * (n + 1));
    size_t i = 0;
    for (; i + 8 <= n; i += 8) h = gm_rotl64(h ^ gm_mix64(gm_load64_le(s + i)), 29) * 0x9e3779b97f4a7c15ULL;
    uint64_t t = 0;
    for (size_t k = 0; i + k < n; k++) t |= (uint64_t)s[i + k] << (8 * k);
    h = gm_rotl64(h ^ gm_mix64(t ^ 0xa0761d6478bd642fULL), 29) * 0x9e3779b97f4a7c15ULL;
    return gm_mix64(h);
}

/* Streaming 128-bit hash: feed bytes one at a time (two independent lanes, so a collision needs two
 * 64-bit coincidences). */
typedef struct gm_hash128 {
    uint64_t h1, h2, word, len;
    int nbuf;
} gm_hash128;

static inline void gm_hash128_init(gm_hash128 *s, uint64_t seed) {
    s->h1 = seed ^ 0x243f6a8885a308d3ULL;
    s->h2 = gm_mix64(seed) ^ 0x13198a2e03707344ULL;
    s->word = 0;
    s->len = 0;
    s->nbuf = 0;
}

static inline void gm_hash128_flush_(gm_hash128 *s) {
    uint64_t m = gm_mix64(s->word);
    s->h1 = gm_rotl64(s->h1 ^ m, 31) * 0x9e3779b97f4a7c15ULL;
    s->h2 = gm_rotl64(s->h2 + (m ^ 0xc2b2ae3d27d4eb4fULL), 23) * 0xff51afd7ed558ccdULL;
    s->word = 0;
    s->nbuf = 0;
}

static inline void gm_hash128_byte(gm_hash128 *s, unsigned char b) {
    s->word |= (uint64_t)b << (8 * s->nbuf);
    s->len++;
    if (++s->nbuf == 8) gm_hash128_flush_(s);
}

static inline void gm_hash128_final(gm_hash128 *s, uint64_t out[2]) {
    gm_hash128_flush_(s);
    out[0] = gm_mix64(s->h1 ^ s->len);
    out[1] = gm_mix64(s->h2 + gm_mix64(s->len));
    if (out[0] == 0 && out[1] == 0) out[1] = 1; /* (0, 0) marks an empty slot in the sets that hold these */
}

#endif
