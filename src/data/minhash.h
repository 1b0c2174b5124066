/* Deduplication indexes: exact (a set of 128-bit keys of normalized text) and near-duplicate (MinHash
 * signatures over word-shingle sets, banded into an LSH table whose candidates are verified by the
 * signatures' estimated Jaccard similarity). Seeded and deterministic: the same input, seed and
 * parameters give the same decisions on every machine and thread count.
 *
 * Memory (documented in docs/data.md): the exact set takes 48 bytes per kept document; the LSH index
 * 2 * perms bytes of stored signature plus 16 bytes per band (8-byte entries at load <= 0.5) per kept
 * document, i.e. about 1 KiB per document with the defaults (32 bands x 8 rows). */
#ifndef GM_DATA_MINHASH_H
#define GM_DATA_MINHASH_H

#include <stddef.h>
#include <stdint.h>

#include "data/text.h"
#include "gemma.h"

typedef struct gm_minhash_params {
    int shingle;      /* words per shingle (default 5) */
    int bands, rows;  /* LSH: signature of bands * rows values (default 32 x 8) */
    double threshold; /* Jaccard similarity at or above which a document is a near duplicate (0.8) */
    uint64_t seed;
} gm_minhash_params;

gm_minhash_params gm_minhash_params_default(void);

typedef struct gm_minhash gm_minhash;
gm_status gm_minhash_new(const gm_minhash_params *p, gm_minhash **out);
void gm_minhash_free(gm_minhash *m);
int gm_minhash_perms(const gm_minhash *m);

/* MinHash signature (perms values) of the set of 64-bit element hashes h[0..n) (duplicates allowed). */
void gm_minhash_sign_hashes(const gm_minhash *m, const uint64_t *h, size_t n, uint32_t *sig);

/* Per-thread scratch for signing texts. */
typedef struct gm_minhash_scratch {
    gm_words words;
    uint64_t *sh;
    size_t cap;
} gm_minhash_scratch;
void gm_minhash_scratch_free(gm_minhash_scratch *s);

/* Signature of a text's shingles: its normalized words (gm_text_words) in groups of `shingle`
 * consecutive words; a text with fewer words is one shingle of all of them. *n_shingles = 0 for a text
 * without words (its signature is then meaningless and it should not be indexed). */
gm_status gm_minhash_sign_text(const gm_minhash *m, gm_minhash_scratch *s, const char *text, size_t len,
                               uint32_t *sig, size_t *n_shingles);

/* Fraction of positions where two signatures agree: the unbiased estimate of Jaccard similarity. */
double gm_minhash_similarity(const uint32_t *a, const uint32_t *b, int perms);

/* The near-duplicate index. */
typedef struct gm_lsh gm_lsh;
gm_status gm_lsh_new(const gm_minhash *m, gm_lsh **out);
void gm_lsh_free(gm_lsh *l);
/* Look for an indexed document sharing a band with sig whose estimated similarity is >= threshold.
 * Returns 1 and its id (and the estimate) if found, else 0. At most 1024 candidates are verified. */
int gm_lsh_query(const gm_lsh *l, const uint32_t *sig, uint64_t *id, double *similarity);
gm_status gm_lsh_insert(gm_lsh *l, const uint32_t *sig, uint64_t id);
size_t gm_lsh_bytes(const gm_lsh *l);
size_t gm_lsh_count(const gm_lsh *l);

/* The exact-duplicate index: 128-bit keys (gm_text_exact_key) to the id of the first document. */
typedef struct gm_keyset gm_keyset;
gm_status gm_keyset_new(gm_keyset **out);
void gm_keyset_free(gm_keyset *k);
int gm_keyset_find(const gm_keyset *k, const uint64_t key[2], uint64_t *id);
gm_status gm_keyset_insert(gm_keyset *k, const uint64_t key[2], uint64_t id);
size_t gm_keyset_bytes(const gm_keyset *k);

#endif
