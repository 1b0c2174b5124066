/* Token sampling: greedy, temperature, top-k, top-p, seeded. Buffers are sized for the vocabulary once,
 * so sampling allocates nothing per token. Top-p sorts only tokens with probability >= (1 - p) / V: the
 * rest hold at most 1 - p of the mass in total, so the nucleus always lies among those kept. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "gemma.h"

typedef struct {
    float p;
    int32_t id;
} cand;

struct gm_sampler {
    gm_sampler_params p;
    int vocab;
    uint64_t rng;
    cand *c;
};

static uint64_t next_u64(uint64_t *s) {
    /* xorshift64* : small, fast, and reproducible across platforms */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static double next_unit(uint64_t *s) { return (double)(next_u64(s) >> 11) * (1.0 / 9007199254740992.0); }

gm_status gm_sampler_new(const gm_sampler_params *p, int vocab_size, gm_sampler **out) {
    *out = NULL;
    if (vocab_size <= 0) return gm_fail(GM_ERR_ARG, "sampler: vocabulary size must be positive");
    if (!(p->temperature >= 0) || !isfinite(p->temperature))
        return gm_fail(GM_ERR_ARG, "sampler: temperature must be a finite number >= 0");
    if (p->top_k < 0) return gm_fail(GM_ERR_ARG, "sampler: top-k must be >= 0");
    if (!(p->top_p > 0 && p->top_p <= 1)) return gm_fail(GM_ERR_ARG, "sampler: top-p must be in (0, 1]");
    gm_sampler *s = calloc(1, sizeof *s);
    if (!s) return gm_fail(GM_ERR_NOMEM, "out of memory");
    s->c = malloc(sizeof(cand) * (size_t)vocab_size);
    if (!s->c) {
        free(s);
        return gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    s->p = *p;
    s->vocab = vocab_size;
    /* splitmix the seed so that seeds 0, 1, 2... give unrelated streams (and 0 is a valid state) */
    uint64_t z = p->seed + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    s->rng = (z ^ (z >> 31)) | 1;
    *out = s;
    return GM_OK;
}

void gm_sampler_free(gm_sampler *s) {
    if (!s) return;
    free(s->c);
    free(s);
}

static int cmp_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id; /* ties: lower id first, so the order is total */
}

/* Keep the k largest entries of c[0..n) in c[0..k) (unordered) with a quickselect. */
static void select_top(cand *c, int n, int k) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        cand pivot = c[(lo + hi) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (cmp_desc(&c[i], &pivot) < 0) i++;
            while (cmp_desc(&c[j], &pivot) > 0) j--;
            if (i <= j) {
                cand t = c[i];
                c[i] = c[j];
                c[j] = t;
                i++, j--;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

int32_t gm_sampler_sample(gm_sampler *s, const float *logits) {
    int V = s->vocab;
    int32_t best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    if (s->p.temperature == 0 || s->p.top_k == 1) return best;
    float inv_t = 1.0f / s->p.temperature, mx = logits[best];
    int n = 0;
    for (int i = 0; i < V; i++) {
        s->c[n].id = i;
        s->c[n].p = (logits[i] - mx) * inv_t; /* log-probability up to a constant */
        n++;
    }
    if (s->p.top_k > 0 && s->p.top_k < n) {
        select_top(s->c, n, s->p.top_k);
        n = s->p.top_k;
    }
    double sum = 0;
    for (int i = 0; i < n; i++) {
        s->c[i].p = expf(s->c[i].p);
        sum += s->c[i].p;
    }
    if (s->p.top_p < 1) {
        double thresh = (1.0 - s->p.top_p) / n * sum;
        int m = 0;
        for (int i = 0; i < n; i++)
            if (s->c[i].p >= thresh) s->c[m++] = s->c[i];
        n = m;
        qsort(s->c, (size_t)n, sizeof(cand), cmp_desc);
        double cum = 0, target = s->p.top_p * sum;
        int keep = n;
        for (int i = 0; i < n; i++) {
            cum += s->c[i].p;
            if (cum >= target) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
        sum = 0;
        for (int i = 0; i < n; i++) sum += s->c[i].p;
    } else if (s->p.top_k > 0) {
        qsort(s->c, (size_t)n, sizeof(cand), cmp_desc); /* a fixed order makes the draw reproducible */
    }
    double u = next_unit(&s->rng) * sum, cum = 0;
    for (int i = 0; i < n; i++) {
        cum += s->c[i].p;
        if (u < cum) return s->c[i].id;
    }
    return s->c[n - 1].id;
}
