/* MinHash with LSH banding for near-duplicate detection, and the 128-bit key set for exact duplicates.
 * Permutation i is h_i(x) = high 32 bits of (a_i * x + b_i) mod 2^64 over the low 32 bits x of the
 * well-mixed 64-bit shingle hashes (a multiply-add-shift hash, Dietzfelbinger 1996), with (a_i odd, b_i)
 * drawn from splitmix64(seed); an AVX2 kernel computes the same bits eight permutations at a time.
 * Stored signatures keep the top 16 bits of each value (b-bit MinHash, Li & König 2010): unequal minima
 * then agree with probability 2^-16, which biases the estimate by (1 - J) / 65536 and halves the memory. */
#include "data/minhash.h"

#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "data/hash.h"
#include "data/minhash_kernels.h"
#include "tensor/cpu.h"

gm_minhash_params gm_minhash_params_default(void) {
    gm_minhash_params p = {5, 32, 8, 0.8, 1};
    return p;
}

struct gm_minhash {
    gm_minhash_params p;
    int perms;
    uint32_t *alo, *ahi;
    uint64_t *b;
    gm_minhash_kernel sign;
};

static uint64_t splitmix(uint64_t *state) {
    *state += 0x9e3779b97f4a7c15ULL;
    return gm_mix64(*state);
}

gm_status gm_minhash_new(const gm_minhash_params *p, gm_minhash **out) {
    *out = NULL;
    if (p->shingle < 1 || p->shingle > 64) return gm_fail(GM_ERR_ARG, "minhash: shingle size %d not in 1..64", p->shingle);
    if (p->bands < 1 || p->rows < 1 || p->bands > 1024 || p->rows > 64 || p->bands * p->rows > 4096)
        return gm_fail(GM_ERR_ARG, "minhash: %d bands x %d rows out of range (bands <= 1024, rows <= 64, product <= 4096)",
                       p->bands, p->rows);
    if (!(p->threshold > 0 && p->threshold <= 1)) return gm_fail(GM_ERR_ARG, "minhash: threshold %g not in (0, 1]", p->threshold);
    gm_minhash *m = calloc(1, sizeof *m);
    if (!m) return gm_fail(GM_ERR_NOMEM, "out of memory");
    m->p = *p;
    m->perms = p->bands * p->rows;
    m->alo = malloc((size_t)m->perms * sizeof *m->alo);
    m->ahi = malloc((size_t)m->perms * sizeof *m->ahi);
    m->b = malloc((size_t)m->perms * sizeof *m->b);
    if (!m->alo || !m->ahi || !m->b) {
        gm_minhash_free(m);
        return gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    uint64_t st = p->seed;
    for (int i = 0; i < m->perms; i++) {
        uint64_t a = splitmix(&st) | 1;
        m->alo[i] = (uint32_t)a;
        m->ahi[i] = (uint32_t)(a >> 32);
        m->b[i] = splitmix(&st);
    }
    m->sign = gm_minhash_sign_scalar;
#ifdef GM_HAVE_X86
    if (gm_cpu_isa() == GM_ISA_AVX2 || gm_cpu_isa() == GM_ISA_AVX512) m->sign = gm_minhash_sign_avx2;
#endif
    *out = m;
    return GM_OK;
}

void gm_minhash_free(gm_minhash *m) {
    if (!m) return;
    free(m->alo);
    free(m->ahi);
    free(m->b);
    free(m);
}

int gm_minhash_perms(const gm_minhash *m) { return m->perms; }

void gm_minhash_sign_scalar(const uint32_t *alo, const uint32_t *ahi, const uint64_t *b, int perms, const uint64_t *h,
                            size_t n, uint32_t *sig) {
    for (int i = 0; i < perms; i++) sig[i] = UINT32_MAX;
    for (size_t j = 0; j < n; j++) {
        uint32_t x = (uint32_t)h[j];
        for (int i = 0; i < perms; i++) {
            uint64_t t = (uint64_t)alo[i] * x + b[i] + ((uint64_t)(uint32_t)(ahi[i] * x) << 32);
            uint32_t v = (uint32_t)(t >> 32);
            sig[i] = v < sig[i] ? v : sig[i];
        }
    }
}

void gm_minhash_sign_hashes(const gm_minhash *m, const uint64_t *h, size_t n, uint32_t *sig) {
    m->sign(m->alo, m->ahi, m->b, m->perms, h, n, sig);
}

void gm_minhash_scratch_free(gm_minhash_scratch *s) {
    gm_words_free(&s->words);
    free(s->sh);
    s->sh = NULL;
    s->cap = 0;
}

gm_status gm_minhash_sign_text(const gm_minhash *m, gm_minhash_scratch *s, const char *text, size_t len,
                               uint32_t *sig, size_t *n_shingles) {
    gm_status st = gm_text_words(text, len, &s->words);
    if (st) return st;
    size_t nw = s->words.n;
    int k = m->p.shingle;
    if (nw == 0) {
        *n_shingles = 0;
        gm_minhash_sign_hashes(m, NULL, 0, sig);
        return GM_OK;
    }
    if ((size_t)k > nw) k = (int)nw;
    size_t ns = nw - (size_t)k + 1;
    if (ns > s->cap) {
        size_t cap = ns < 1024 ? 1024 : ns;
        uint64_t *sh = realloc(s->sh, cap * sizeof *sh);
        if (!sh) return gm_fail(GM_ERR_NOMEM, "out of memory for shingles");
        s->sh = sh;
        s->cap = cap;
    }
    gm_text_ngram_hashes(s->words.w, nw, k, s->sh);
    gm_minhash_sign_hashes(m, s->sh, ns, sig);
    *n_shingles = ns;
    return GM_OK;
}

double gm_minhash_similarity(const uint32_t *a, const uint32_t *b, int perms) {
    int eq = 0;
    for (int i = 0; i < perms; i++) eq += a[i] == b[i];
    return perms ? (double)eq / perms : 0.0;
}

/* ---- LSH ------------------------------------------------------------------------------------------ */

typedef struct {
    uint32_t tag;  /* 32-bit band key (never 0) */
    uint32_t slot; /* stored document + 1; 0 = empty */
} lsh_entry;

struct gm_lsh {
    const gm_minhash *m;
    lsh_entry *tab;
    size_t cap, used;
    uint16_t *sigs; /* top 16 bits of each stored signature value, perms per document */
    uint64_t *ids;
    size_t n, n_cap;
};

gm_status gm_lsh_new(const gm_minhash *m, gm_lsh **out) {
    *out = NULL;
    gm_lsh *l = calloc(1, sizeof *l);
    if (!l) return gm_fail(GM_ERR_NOMEM, "out of memory");
    l->m = m;
    l->cap = 1024;
    l->tab = calloc(l->cap, sizeof *l->tab);
    if (!l->tab) {
        free(l);
        return gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    *out = l;
    return GM_OK;
}

void gm_lsh_free(gm_lsh *l) {
    if (!l) return;
    free(l->tab);
    free(l->sigs);
    free(l->ids);
    free(l);
}

static uint32_t band_tag(const uint32_t *sig, int band, int rows) {
    uint64_t h = gm_mix64(0x6a09e667f3bcc909ULL + (uint64_t)band);
    for (int r = 0; r < rows; r++) h = gm_mix64(h ^ sig[band * rows + r]) + 0x9e3779b97f4a7c15ULL;
    uint32_t t = (uint32_t)(h >> 32);
    return t ? t : 1;
}

static size_t tag_home(uint32_t tag, size_t mask) { return (size_t)gm_mix64(tag) & mask; }

static void tab_put(lsh_entry *tab, size_t mask, lsh_entry e) {
    size_t i = tag_home(e.tag, mask);
    while (tab[i].slot) i = (i + 1) & mask;
    tab[i] = e;
}

int gm_lsh_query(const gm_lsh *l, const uint32_t *sig, uint64_t *id, double *similarity) {
    enum { MAX_CAND = 1024 };
    uint32_t cand[MAX_CAND];
    int nc = 0, P = l->m->perms, rows = l->m->p.rows;
    size_t mask = l->cap - 1;
    for (int band = 0; band < l->m->p.bands && nc < MAX_CAND; band++) {
        uint32_t tag = band_tag(sig, band, rows);
        for (size_t i = tag_home(tag, mask); l->tab[i].slot && nc < MAX_CAND; i = (i + 1) & mask) {
            if (l->tab[i].tag != tag) continue;
            uint32_t s = l->tab[i].slot - 1;
            int seen = 0;
            for (int c = 0; c < nc && !seen; c++) seen = cand[c] == s;
            if (!seen) cand[nc++] = s;
        }
    }
    /* Verify in insertion order so the earliest matching document is reported. */
    for (int i = 1; i < nc; i++)
        for (int j = i; j > 0 && cand[j - 1] > cand[j]; j--) {
            uint32_t t = cand[j];
            cand[j] = cand[j - 1];
            cand[j - 1] = t;
        }
    int need = (int)(l->m->p.threshold * P);
    if ((double)need < l->m->p.threshold * P) need++; /* eq / P >= threshold  <=>  eq >= ceil(threshold * P) */
    for (int c = 0; c < nc; c++) {
        const uint16_t *s = l->sigs + (size_t)cand[c] * (size_t)P;
        int eq = 0;
        for (int i = 0; i < P; i++) eq += s[i] == (uint16_t)(sig[i] >> 16);
        if (eq >= need) {
            *id = l->ids[cand[c]];
            if (similarity) *similarity = (double)eq / P;
            return 1;
        }
    }
    return 0;
}

gm_status gm_lsh_insert(gm_lsh *l, const uint32_t *sig, uint64_t id) {
    int P = l->m->perms, bands = l->m->p.bands;
    if (l->n >= UINT32_MAX - 1) return gm_fail(GM_ERR_NOMEM, "minhash index full (2^32 documents)");
    if (l->n == l->n_cap) {
        size_t nc = l->n_cap ? l->n_cap * 2 : 1024;
        uint16_t *s = realloc(l->sigs, nc * (size_t)P * sizeof *s);
        if (!s) return gm_fail(GM_ERR_NOMEM, "out of memory for the minhash index (%zu documents)", l->n);
        l->sigs = s;
        uint64_t *ids = realloc(l->ids, nc * sizeof *ids);
        if (!ids) return gm_fail(GM_ERR_NOMEM, "out of memory for the minhash index (%zu documents)", l->n);
        l->ids = ids;
        l->n_cap = nc;
    }
    if (2 * (l->used + (size_t)bands) > l->cap) {
        size_t nc = l->cap;
        while (2 * (l->used + (size_t)bands) > nc) nc *= 2;
        lsh_entry *t = calloc(nc, sizeof *t);
        if (!t) return gm_fail(GM_ERR_NOMEM, "out of memory for the minhash index (%zu documents)", l->n);
        for (size_t i = 0; i < l->cap; i++)
            if (l->tab[i].slot) tab_put(t, nc - 1, l->tab[i]);
        free(l->tab);
        l->tab = t;
        l->cap = nc;
    }
    uint16_t *dst = l->sigs + l->n * (size_t)P;
    for (int i = 0; i < P; i++) dst[i] = (uint16_t)(sig[i] >> 16);
    l->ids[l->n] = id;
    for (int band = 0; band < bands; band++)
        tab_put(l->tab, l->cap - 1, (lsh_entry){band_tag(sig, band, l->m->p.rows), (uint32_t)(l->n + 1)});
    l->used += (size_t)bands;
    l->n++;
    return GM_OK;
}

size_t gm_lsh_bytes(const gm_lsh *l) {
    return l->cap * sizeof *l->tab + l->n_cap * ((size_t)l->m->perms * sizeof *l->sigs + sizeof *l->ids);
}

size_t gm_lsh_count(const gm_lsh *l) { return l->n; }

/* ---- exact key set ------------------------------------------------------------------------------ */

typedef struct {
    uint64_t k0, k1, id;
} key_entry;

struct gm_keyset {
    key_entry *tab;
    size_t cap, n;
};

gm_status gm_keyset_new(gm_keyset **out) {
    gm_keyset *k = calloc(1, sizeof *k);
    if (k) {
        k->cap = 1024;
        k->tab = calloc(k->cap, sizeof *k->tab);
    }
    if (!k || !k->tab) {
        free(k);
        *out = NULL;
        return gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    *out = k;
    return GM_OK;
}

void gm_keyset_free(gm_keyset *k) {
    if (!k) return;
    free(k->tab);
    free(k);
}

static size_t key_find_slot(const key_entry *tab, size_t cap, const uint64_t key[2]) {
    size_t i = (size_t)key[0] & (cap - 1);
    while ((tab[i].k0 || tab[i].k1) && (tab[i].k0 != key[0] || tab[i].k1 != key[1])) i = (i + 1) & (cap - 1);
    return i;
}

int gm_keyset_find(const gm_keyset *k, const uint64_t key[2], uint64_t *id) {
    size_t i = key_find_slot(k->tab, k->cap, key);
    if (!k->tab[i].k0 && !k->tab[i].k1) return 0;
    if (id) *id = k->tab[i].id;
    return 1;
}

gm_status gm_keyset_insert(gm_keyset *k, const uint64_t key[2], uint64_t id) {
    if (2 * (k->n + 1) > k->cap) {
        size_t nc = k->cap * 2;
        key_entry *t = calloc(nc, sizeof *t);
        if (!t) return gm_fail(GM_ERR_NOMEM, "out of memory for the exact-duplicate index (%zu documents)", k->n);
        for (size_t i = 0; i < k->cap; i++)
            if (k->tab[i].k0 || k->tab[i].k1) {
                uint64_t kk[2] = {k->tab[i].k0, k->tab[i].k1};
                t[key_find_slot(t, nc, kk)] = k->tab[i];
            }
        free(k->tab);
        k->tab = t;
        k->cap = nc;
    }
    size_t i = key_find_slot(k->tab, k->cap, key);
    if (k->tab[i].k0 || k->tab[i].k1) return GM_OK; /* already present: keep the first id */
    k->tab[i] = (key_entry){key[0], key[1], id};
    k->n++;
    return GM_OK;
}

size_t gm_keyset_bytes(const gm_keyset *k) { return k->cap * sizeof *k->tab; }
