/* Deduplication: exact keys of normalized text, MinHash signatures (determinism, unbiased similarity),
 * and the LSH index deciding near duplicates: pairs at Jaccard 0.9 are found, pairs at 0.3 kept.
 *
 * Error probabilities (exact binomial sums; docs/data.md has the table). With b bands of r rows
 * (P = b*r values, 16 bits stored) and threshold t = 0.8, a pair of similarity J is reported iff some band
 * agrees and at least ceil(tP) values agree:
 *   P(miss | J = 0.9) <= (1 - 0.9^r)^b + P[Binom(P, 0.9) < ceil(tP)]
 *   P(false | J = 0.3) <= P[Binom(P, 0.3 + 0.7 * 2^-16) >= ceil(tP)]
 * 64 x 8 (the test's setting): miss 6.4e-12, false 3.5e-121 per pair; the 200 pairs checked below then
 * fail by chance with probability about 1.3e-9. Defaults 32 x 8: miss 6.6e-7, false 1.9e-61 per pair.
 * The hashes are seeded, so the outcome is in any case the same on every run. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/hash.h"
#include "data/minhash.h"
#include "data/minhash_kernels.h"
#include "data/text.h"
#include "tensor/cpu.h"
#include "testlib.h"

static uint64_t rng_state;
static uint64_t rnd(void) {
    rng_state += 0x9e3779b97f4a7c15ULL;
    return gm_mix64(rng_state);
}

/* Sets of 1000 distinct random elements e[0..1000): A = e[0..a_end), B = e[b_start..1000). */
static void make_pair(uint64_t *e, int trial) {
    rng_state = 0xabc0000ULL + (uint64_t)trial;
    for (int i = 0; i < 1000; i++) e[i] = rnd();
}

static void test_sets(const gm_minhash_params *p, int trials) {
    gm_minhash *m;
    CHECK_OK(gm_minhash_new(p, &m));
    int P = gm_minhash_perms(m);
    uint32_t *sa = malloc((size_t)P * 4), *sb = malloc((size_t)P * 4);
    uint64_t e[1000];
    int found90 = 0, found30 = 0;
    double sum90 = 0, sum30 = 0;
    for (int t = 0; t < trials; t++) {
        make_pair(e, t);
        /* J = |{50..949}| / |{0..999}| = 900 / 1000 */
        gm_minhash_sign_hashes(m, e, 950, sa);
        gm_minhash_sign_hashes(m, e + 50, 950, sb);
        sum90 += gm_minhash_similarity(sa, sb, P);
        gm_lsh *l;
        CHECK_OK(gm_lsh_new(m, &l));
        CHECK_OK(gm_lsh_insert(l, sa, 7));
        uint64_t id = 0;
        double sim = 0;
        if (gm_lsh_query(l, sb, &id, &sim)) {
            found90++;
            CHECK(id == 7 && sim >= 0.8);
        }
        gm_lsh_free(l);
        /* J = |{350..649}| / 1000 = 0.3 */
        gm_minhash_sign_hashes(m, e, 650, sa);
        gm_minhash_sign_hashes(m, e + 350, 650, sb);
        sum30 += gm_minhash_similarity(sa, sb, P);
        CHECK_OK(gm_lsh_new(m, &l));
        CHECK_OK(gm_lsh_insert(l, sa, 7));
        found30 += gm_lsh_query(l, sb, &id, &sim);
        gm_lsh_free(l);
    }
    CHECKF(found90 == trials, "%d x %d: only %d of %d pairs at Jaccard 0.9 found", p->bands, p->rows, found90, trials);
    CHECKF(found30 == 0, "%d x %d: %d of %d pairs at Jaccard 0.3 reported", p->bands, p->rows, found30, trials);
    /* The estimate is unbiased: the mean over trials is within a few standard errors of J. */
    CHECK_NEAR(sum90 / trials, 0.9, 0.01);
    CHECK_NEAR(sum30 / trials, 0.3, 0.01);
    free(sa);
    free(sb);
    gm_minhash_free(m);
}

/* Text pairs: n distinct words, the second text with its last `m` words replaced by other distinct words.
 * With 5-word shingles: shared (N - m - 4), union (N - 4) + m, so J = (1000 - m) / (1000 + m) for N = 1004. */
static char *words_text(int first, int n, int replace_from, int other) {
    char *s = malloc((size_t)n * 12 + 1);
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        int id = i >= replace_from ? other + i : first + i;
        k += (size_t)sprintf(s + k, "w%dq ", id); /* one normalized word each: letters and digits */
    }
    s[k] = 0;
    return s;
}

static void test_texts(void) {
    gm_minhash_params p = gm_minhash_params_default();
    p.bands = 64;
    gm_minhash *m;
    CHECK_OK(gm_minhash_new(&p, &m));
    int P = gm_minhash_perms(m);
    uint32_t *sa = malloc((size_t)P * 4), *sb = malloc((size_t)P * 4);
    gm_minhash_scratch scr = {0};
    int found90 = 0, found30 = 0, trials = 50;
    for (int t = 0; t < trials; t++) {
        int base = 100000 * (t + 1);
        char *a = words_text(base, 1004, 1004, 0);
        char *b90 = words_text(base, 1004, 1004 - 52, base + 50000); /* J = 948/1052 = 0.901 */
        char *b30 = words_text(base, 1004, 1004 - 539, base + 50000); /* J = 461/1539 = 0.2995 */
        size_t ns;
        CHECK_OK(gm_minhash_sign_text(m, &scr, a, strlen(a), sa, &ns));
        CHECK(ns == 1000);
        gm_lsh *l;
        CHECK_OK(gm_lsh_new(m, &l));
        CHECK_OK(gm_lsh_insert(l, sa, 1));
        uint64_t id;
        double sim;
        CHECK_OK(gm_minhash_sign_text(m, &scr, b90, strlen(b90), sb, &ns));
        found90 += gm_lsh_query(l, sb, &id, &sim);
        CHECK_OK(gm_minhash_sign_text(m, &scr, b30, strlen(b30), sb, &ns));
        found30 += gm_lsh_query(l, sb, &id, &sim);
        gm_lsh_free(l);
        free(a);
        free(b90);
        free(b30);
    }
    CHECKF(found90 == trials, "texts: %d of %d at Jaccard 0.9 found", found90, trials);
    CHECKF(found30 == 0, "texts: %d of %d at Jaccard 0.3 reported", found30, trials);

    /* Case, punctuation and spacing do not change shingles; a text shorter than a shingle is one shingle. */
    size_t ns;
    const char *x = "The quick brown fox jumps over the lazy dog", *y = "the QUICK, brown fox -- jumps over the lazy dog!";
    CHECK_OK(gm_minhash_sign_text(m, &scr, x, strlen(x), sa, &ns));
    CHECK(ns == 5);
    CHECK_OK(gm_minhash_sign_text(m, &scr, y, strlen(y), sb, &ns));
    CHECK(gm_minhash_similarity(sa, sb, P) == 1.0);
    CHECK_OK(gm_minhash_sign_text(m, &scr, "two words", 9, sa, &ns));
    CHECK(ns == 1);
    CHECK_OK(gm_minhash_sign_text(m, &scr, " ,.; ", 5, sa, &ns));
    CHECK(ns == 0);
    gm_minhash_scratch_free(&scr);
    free(sa);
    free(sb);
    gm_minhash_free(m);
}

static void test_determinism_and_order(void) {
    gm_minhash_params p = gm_minhash_params_default();
    gm_minhash *m1, *m2, *m3;
    CHECK_OK(gm_minhash_new(&p, &m1));
    CHECK_OK(gm_minhash_new(&p, &m2));
    p.seed = 2;
    CHECK_OK(gm_minhash_new(&p, &m3));
    int P = gm_minhash_perms(m1);
    CHECK(P == 256);
    uint32_t a[256], b[256], c[256];
    uint64_t e[100];
    rng_state = 5;
    for (int i = 0; i < 100; i++) e[i] = rnd();
    gm_minhash_sign_hashes(m1, e, 100, a);
    gm_minhash_sign_hashes(m2, e, 100, b);
    gm_minhash_sign_hashes(m3, e, 100, c);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(memcmp(a, c, sizeof a) != 0);
    /* Order and repetition of elements do not matter: it is a set signature. */
    uint64_t r[200];
    for (int i = 0; i < 100; i++) r[i] = r[199 - i] = e[i];
    gm_minhash_sign_hashes(m1, r, 200, b);
    CHECK(memcmp(a, b, sizeof a) == 0);
    /* Pinned values: signatures (hence dedup decisions) must not change across platforms or releases. */
    uint64_t one = 42;
    gm_minhash_sign_hashes(m1, &one, 1, b);
    CHECK(b[0] == 2325157487u && b[1] == 972702150u && b[255] == 1207375535u);
    gm_minhash_scratch scr = {0};
    size_t ns;
    CHECK_OK(gm_minhash_sign_text(m1, &scr, "The quick brown fox jumps over the lazy dog", 43, b, &ns));
    CHECK(b[0] == 421977443u && b[255] == 840106208u);
    gm_minhash_scratch_free(&scr);

    /* The index reports the earliest matching document and grows past its first sizes. */
    gm_lsh *l;
    CHECK_OK(gm_lsh_new(m1, &l));
    CHECK_OK(gm_lsh_insert(l, a, 3));
    CHECK_OK(gm_lsh_insert(l, a, 9));
    for (int d = 0; d < 3000; d++) {
        uint64_t x[20];
        for (int i = 0; i < 20; i++) x[i] = rnd();
        gm_minhash_sign_hashes(m1, x, 20, c);
        CHECK_OK(gm_lsh_insert(l, c, 100 + (uint64_t)d));
    }
    uint64_t id;
    CHECK(gm_lsh_query(l, a, &id, NULL) && id == 3);
    CHECK(gm_lsh_count(l) == 3002);
    gm_lsh_free(l);
    gm_minhash_free(m1);
    gm_minhash_free(m2);
    gm_minhash_free(m3);

    gm_minhash_params bad = gm_minhash_params_default();
    bad.bands = 0;
    gm_minhash *mb = NULL;
    CHECK(gm_minhash_new(&bad, &mb) == GM_ERR_ARG && !mb);
    bad = gm_minhash_params_default();
    bad.threshold = 1.5;
    CHECK(gm_minhash_new(&bad, &mb) == GM_ERR_ARG);
}

static void test_exact(void) {
    uint64_t k1[2], k2[2], k3[2], k4[2];
    const char *a = "Hello   World\n\n", *b = "  hello world", *c = "Hello, world", *d = "HELLO\tWORLD \xC3\x89T\xC3\xA9";
    gm_text_exact_key(a, strlen(a), k1);
    gm_text_exact_key(b, strlen(b), k2);
    gm_text_exact_key(c, strlen(c), k3);
    CHECK(k1[0] == k2[0] && k1[1] == k2[1]); /* case and whitespace normalized */
    CHECK(k1[0] != k3[0] || k1[1] != k3[1]); /* punctuation kept */
    gm_text_exact_key(d, strlen(d), k4);
    uint64_t k5[2];
    gm_text_exact_key("hello world \xC3\xA9t\xC3\xA9", strlen("hello world \xC3\xA9t\xC3\xA9"), k5);
    CHECK(k4[0] == k5[0] && k4[1] == k5[1]); /* Latin-1 letters lowercased too */

    gm_keyset *ks;
    CHECK_OK(gm_keyset_new(&ks));
    uint64_t id = 0;
    CHECK(!gm_keyset_find(ks, k1, &id));
    CHECK_OK(gm_keyset_insert(ks, k1, 5));
    CHECK_OK(gm_keyset_insert(ks, k2, 6)); /* same key: the first id stays */
    CHECK(gm_keyset_find(ks, k2, &id) && id == 5);
    char buf[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(buf, sizeof buf, "doc %d", i);
        uint64_t k[2];
        gm_text_exact_key(buf, strlen(buf), k);
        CHECK_OK(gm_keyset_insert(ks, k, 1000 + (uint64_t)i));
    }
    int ok = 1;
    for (int i = 0; i < 5000; i++) {
        snprintf(buf, sizeof buf, "DOC  %d", i);
        uint64_t k[2];
        gm_text_exact_key(buf, strlen(buf), k);
        ok &= gm_keyset_find(ks, k, &id) && id == 1000 + (uint64_t)i;
    }
    CHECK(ok);
    CHECK(gm_keyset_find(ks, k1, &id) && id == 5);
    gm_keyset_free(ks);
}

/* Every SIMD kernel gives the scalar reference's bits, for permutation counts with and without a tail. */
static void test_kernels(void) {
    enum { NP = 75, NH = 301 };
    uint32_t alo[NP], ahi[NP], ref[NP], got[NP];
    uint64_t b[NP], h[NH];
    rng_state = 99;
    for (int i = 0; i < NP; i++) {
        uint64_t a = rnd() | 1;
        alo[i] = (uint32_t)a;
        ahi[i] = (uint32_t)(a >> 32);
        b[i] = rnd();
    }
    for (int j = 0; j < NH; j++) h[j] = rnd();
    int checked = 0;
    (void)got; /* compared only where a SIMD kernel exists (x86 today) */
#ifdef GM_HAVE_X86
    if (gm_cpu_isa_available(GM_ISA_AVX2)) {
        static const int np[] = {1, 7, 8, 9, 64, 75};
        static const size_t nh[] = {0, 1, 2, 301};
        for (size_t a = 0; a < sizeof np / sizeof *np; a++)
            for (size_t c = 0; c < sizeof nh / sizeof *nh; c++) {
                gm_minhash_sign_scalar(alo, ahi, b, np[a], h, nh[c], ref);
                memset(got, 0, sizeof got);
                gm_minhash_sign_avx2(alo, ahi, b, np[a], h, nh[c], got);
                CHECKF(memcmp(ref, got, (size_t)np[a] * 4) == 0, "avx2 != scalar for %d perms, %zu hashes", np[a], nh[c]);
                checked++;
            }
    }
#endif
    printf("minhash kernels compared with the scalar reference: %d cases\n", checked);
    /* The reference is the formula: high 32 bits of (a * x + b) mod 2^64 on the low 32 bits of the hash. */
    gm_minhash_sign_scalar(alo, ahi, b, 1, h, 1, ref);
    uint64_t a0 = ((uint64_t)ahi[0] << 32) | alo[0];
    CHECK(ref[0] == (uint32_t)((a0 * (uint32_t)h[0] + b[0]) >> 32));
}

int main(void) {
    test_kernels();
    gm_minhash_params p = gm_minhash_params_default();
    CHECK(p.bands == 32 && p.rows == 8 && p.shingle == 5 && p.threshold == 0.8);
    p.bands = 64; /* 64 x 8: the setting the error bounds above are stated for */
    test_sets(&p, 100);
    test_sets(&(gm_minhash_params){5, 32, 8, 0.8, 1}, 100); /* and the defaults */
    test_texts();
    test_determinism_and_order();
    test_exact();
    TEST_DONE();
}
