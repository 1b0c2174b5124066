/* Memorization: reservoir sample of documents, greedy continuation of each one's first P tokens, exact and
 * approximate (edit distance) comparison with the true next S tokens, Wilson intervals, and a personal-data
 * scan of what was memorized. The edit distance is computed row by row while decoding, which is what
 * lets a non-memorized document stop early. */
#include "eval/memorization.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "data/docio.h"

/* ---- statistics ------------------------------------------------------------------------------- */

void gm_wilson_interval(long k, long n, double z, double *lo, double *hi) {
    if (n <= 0) {
        *lo = 0, *hi = 1;
        return;
    }
    double nn = (double)n, p = (double)k / nn, z2 = z * z;
    double den = 1 + z2 / nn, mid = (p + z2 / (2 * nn)) / den;
    double half = z * sqrt(p * (1 - p) / nn + z2 / (4 * nn * nn)) / den;
    *lo = k <= 0 ? 0 : fmax(0, mid - half);
    *hi = k >= n ? 1 : fmin(1, mid + half);
}

/* ---- edit distance ---------------------------------------------------------------------------- */

int gm_edit_distance(const int32_t *a, int na, const int32_t *b, int nb, int *work) {
    int *prev = work, *cur = work + nb + 1;
    for (int j = 0; j <= nb; j++) prev[j] = j;
    for (int i = 1; i <= na; i++) {
        cur[0] = i;
        for (int j = 1; j <= nb; j++) {
            int sub = prev[j - 1] + (a[i - 1] != b[j - 1]), del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        int *t = prev;
        prev = cur, cur = t;
    }
    return prev[nb];
}

int gm_memo_max_distance(int n, double threshold) {
    if (!(threshold > 0)) return 0;
    double d = floor(threshold * (double)n + 1e-9);
    return d > (double)n ? n : (int)d;
}

/* ---- sample ----------------------------------------------------------------------------------- */

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

gm_status gm_memo_sample_new(int max_docs, int len, uint64_t seed, gm_memo_sample **out) {
    *out = NULL;
    if (max_docs < 1 || len < 2) return gm_fail(GM_ERR_ARG, "memorization: need at least 1 document and 2 tokens");
    size_t bytes;
    if (!gm_mul_size((size_t)max_docs, (size_t)len * sizeof(int32_t), &bytes))
        return gm_fail(GM_ERR_ARG, "memorization: %d documents of %d tokens overflow memory", max_docs, len);
    gm_memo_sample *s = calloc(1, sizeof *s);
    if (!s) return gm_fail(GM_ERR_NOMEM, "out of memory");
    s->max_docs = max_docs, s->len = len, s->rng = seed;
    s->toks = malloc(bytes);
    s->index = malloc(sizeof(uint64_t) * (size_t)max_docs);
    if (!s->toks || !s->index) {
        gm_memo_sample_free(s);
        return gm_fail(GM_ERR_NOMEM, "memorization: out of memory for %d documents of %d tokens", max_docs, len);
    }
    *out = s;
    return GM_OK;
}

void gm_memo_sample_free(gm_memo_sample *s) {
    if (!s) return;
    free(s->toks);
    free(s->index);
    free(s);
}

gm_status gm_memo_sample_add(gm_memo_sample *s, const int32_t *ids, size_t n) {
    uint64_t idx = s->seen++;
    if (n < (size_t)s->len) return GM_OK;
    uint64_t i = s->eligible++;
    long slot;
    if (i < (uint64_t)s->max_docs) slot = s->n++;
    else {
        /* uniform j in [0, i]: 53 random bits scaled (exact for corpora below 2^53 documents) */
        uint64_t j = (uint64_t)((double)(splitmix(&s->rng) >> 11) * (1.0 / 9007199254740992.0) * (double)(i + 1));
        if (j >= (uint64_t)s->max_docs) return GM_OK;
        slot = (long)j;
    }
    memcpy(s->toks + (size_t)slot * (size_t)s->len, ids, sizeof(int32_t) * (size_t)s->len);
    s->index[slot] = idx;
    return GM_OK;
}

typedef struct {
    uint64_t index;
    int slot;
} order_entry;

static int by_index(const void *x, const void *y) {
    uint64_t a = ((const order_entry *)x)->index, b = ((const order_entry *)y)->index;
    return (a > b) - (a < b);
}

gm_status gm_memo_sample_finish(gm_memo_sample *s) {
    int n = s->n, len = s->len;
    if (n < 2) return GM_OK;
    order_entry *e = malloc(sizeof *e * (size_t)n);
    int32_t *t = malloc(sizeof(int32_t) * (size_t)n * (size_t)len);
    if (!e || !t) {
        free(e);
        free(t);
        return gm_fail(GM_ERR_NOMEM, "memorization: out of memory ordering the sample");
    }
    for (int i = 0; i < n; i++) e[i].index = s->index[i], e[i].slot = i;
    qsort(e, (size_t)n, sizeof *e, by_index);
    for (int i = 0; i < n; i++) {
        memcpy(t + (size_t)i * (size_t)len, s->toks + (size_t)e[i].slot * (size_t)len, sizeof(int32_t) * (size_t)len);
        s->index[i] = e[i].index;
    }
    free(s->toks);
    s->toks = t;
    free(e);
    return GM_OK;
}

/* ---- one document ----------------------------------------------------------------------------- */

gm_memo_opts gm_memo_opts_default(int vocab, int32_t bos) {
    gm_memo_opts o = {50, 50, 0.10, 1, vocab, bos};
    return o;
}

static int32_t argmax(const float *x, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

gm_status gm_memo_run_doc(gm_session *s, const gm_memo_opts *o, const int32_t *doc, int32_t *gen, int *work,
                          gm_memo_doc *out) {
    memset(out, 0, sizeof *out);
    int P = o->prefix, S = o->suffix;
    if (P < 1 || S < 1) return gm_fail(GM_ERR_ARG, "memorization: prefix and suffix need at least one token");
    if (P + S + (o->bos >= 0) > gm_session_n_ctx(s))
        return gm_fail(GM_ERR_ARG, "memorization: prefix %d + suffix %d tokens do not fit the context of %d", P, S,
                       gm_session_n_ctx(s));
    const int32_t *target = doc + P;
    int maxd = gm_memo_max_distance(S, o->threshold);
    gm_session_reset(s);
    int np = P + (o->bos >= 0);
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)np);
    if (!prompt) return gm_fail(GM_ERR_NOMEM, "out of memory");
    if (o->bos >= 0) prompt[0] = o->bos;
    memcpy(prompt + (o->bos >= 0), doc, sizeof(int32_t) * (size_t)P);
    gm_status st = gm_session_eval(s, prompt, np, NULL); /* one batched prefill */
    free(prompt);
    if (st) return st;
    /* Row k of the Levenshtein table: distance between gen[0..k) and target[0..j) for every j. The final
     * distance is at least the row's minimum (an alignment of the whole passes through row k), so once
     * the minimum exceeds maxd nothing later can bring the continuation within the threshold. */
    int *prev = work, *cur = work + S + 1;
    for (int j = 0; j <= S; j++) prev[j] = j;
    int exact = 1;
    for (int k = 0; k < S; k++) {
        int32_t g = argmax(gm_session_logits(s), o->vocab);
        gen[k] = g;
        out->n_generated = k + 1;
        exact &= g == target[k];
        cur[0] = k + 1;
        int rmin = cur[0];
        for (int j = 1; j <= S; j++) {
            int sub = prev[j - 1] + (g != target[j - 1]), del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
            if (cur[j] < rmin) rmin = cur[j];
        }
        int *t = prev;
        prev = cur, cur = t;
        if (o->early_stop && rmin > maxd) {
            out->distance = -1;
            return GM_OK;
        }
        if (k + 1 < S && (st = gm_session_eval(s, &g, 1, NULL))) return st;
    }
    out->distance = prev[S];
    out->exact = exact;
    out->approx = exact || out->distance <= maxd;
    return GM_OK;
}

gm_status gm_memo_pii(const gm_tokenizer *tok, const int32_t *prefix, int n_prefix, const int32_t *gen, int n_gen,
                      const gm_pii_options *opt, uint32_t *types, int *sensitive) {
    *types = 0, *sensitive = 0;
    int32_t *all = malloc(sizeof(int32_t) * (size_t)(n_prefix + n_gen + 1));
    if (!all) return gm_fail(GM_ERR_NOMEM, "out of memory");
    memcpy(all, prefix, sizeof(int32_t) * (size_t)n_prefix);
    memcpy(all + n_prefix, gen, sizeof(int32_t) * (size_t)n_gen);
    char *head = NULL, *text = NULL;
    size_t hl = 0, tl = 0;
    gm_pii_finding *f = NULL;
    size_t nf = 0;
    gm_status st = gm_tokenizer_decode(tok, all, (size_t)n_prefix, &head, &hl);
    if (!st) st = gm_tokenizer_decode(tok, all, (size_t)(n_prefix + n_gen), &text, &tl);
    if (!st) st = gm_pii_scan(text, tl, opt, &f, &nf);
    if (!st) {
        /* decoding is a concatenation of per-token bytes, so the prompt's text is a prefix of the whole;
         * if a tokenizer ever broke that, scan everything rather than miss a finding */
        size_t boundary = hl <= tl && memcmp(head, text, hl) == 0 ? hl : 0;
        for (size_t i = 0; i < nf; i++) {
            if (f[i].end <= boundary) continue;
            *types |= 1u << f[i].type;
            if (f[i].severity == GM_PII_SENSITIVE) *sensitive = 1;
        }
    }
    free(f);
    free(head);
    free(text);
    free(all);
    return st;
}

/* ---- whole sample ----------------------------------------------------------------------------- */

static void write_ids(gm_buf *b, const int32_t *x, int n) {
    gm_buf_add(b, "[", 1);
    for (int i = 0; i < n; i++) gm_buf_printf(b, i ? ", %d" : "%d", (int)x[i]);
    gm_buf_add(b, "]", 1);
}

static gm_status write_sample(const gm_memo_run_opts *o, uint64_t index, const int32_t *doc, const int32_t *gen,
                              const gm_memo_doc *d, uint32_t pii_types, int pii_checked) {
    int P = o->doc.prefix, S = o->doc.suffix;
    gm_buf b = {0};
    gm_buf_printf(&b, "{\"index\": %llu, \"exact\": %s, \"approximate\": %s, \"distance\": ", (unsigned long long)index,
                  d->exact ? "true" : "false", d->approx ? "true" : "false");
    if (d->distance >= 0) gm_buf_printf(&b, "%d", d->distance);
    else gm_buf_str(&b, "null");
    gm_buf_printf(&b, ", \"generated_tokens\": %d, \"prefix\": ", d->n_generated);
    write_ids(&b, doc, P);
    gm_buf_str(&b, ", \"target\": ");
    write_ids(&b, doc + P, S);
    gm_buf_str(&b, ", \"generated\": ");
    write_ids(&b, gen, d->n_generated);
    gm_status st = GM_OK;
    if (o->tok) {
        char *t = NULL;
        size_t tl = 0;
        const char *keys[2] = {", \"target_text\": ", ", \"generated_text\": "};
        const int32_t *seq[2] = {doc + P, gen};
        int lens[2] = {S, d->n_generated};
        for (int i = 0; i < 2 && !st; i++) {
            if ((st = gm_tokenizer_decode(o->tok, seq[i], (size_t)lens[i], &t, &tl))) break;
            gm_buf_str(&b, keys[i]);
            gm_json_write_string(&b, t, tl);
            free(t);
        }
    }
    if (pii_checked) {
        gm_buf_str(&b, ", \"pii\": [");
        int k = 0;
        for (int t = 0; t < GM_PII_N_TYPES; t++)
            if (pii_types & (1u << t)) gm_buf_printf(&b, k++ ? ", \"%s\"" : "\"%s\"", gm_pii_type_name((gm_pii_type)t));
        gm_buf_str(&b, "]");
    }
    gm_buf_str(&b, "}\n");
    if (!st && b.oom) st = gm_fail(GM_ERR_NOMEM, "out of memory writing a memorization sample");
    if (!st && fwrite(b.p, 1, b.n, o->samples) != b.n) st = gm_fail(GM_ERR_IO, "cannot write the samples file");
    gm_buf_free(&b);
    return st;
}

gm_status gm_memo_run(const gm_memo_sample *set, const gm_memo_run_opts *o, gm_memo_result *res) {
    memset(res, 0, sizeof *res);
    int P = o->doc.prefix, S = o->doc.suffix;
    if (P + S != set->len)
        return gm_fail(GM_ERR_ARG, "memorization: the sample holds %d tokens per document, prefix + suffix is %d",
                       set->len, P + S);
    if (o->pii && !o->tok) return gm_fail(GM_ERR_ARG, "memorization: the PII scan needs the model's tokenizer");
    int32_t *gen = malloc(sizeof(int32_t) * (size_t)S);
    int *work = malloc(sizeof(int) * 2 * (size_t)(S + 1));
    if (!gen || !work) {
        free(gen);
        free(work);
        return gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    gm_status st = GM_OK;
    for (int i = 0; i < set->n && !st; i++) {
        const int32_t *doc = set->toks + (size_t)i * (size_t)set->len;
        gm_memo_doc d;
        if ((st = gm_memo_run_doc(o->session, &o->doc, doc, gen, work, &d))) {
            gm_fail_prefix(st, "document %llu: ", (unsigned long long)set->index[i]);
            break;
        }
        res->n++;
        res->exact += d.exact;
        res->approx += d.approx;
        res->tokens_generated += d.n_generated;
        res->early_stops += d.distance < 0;
        uint32_t types = 0;
        int sens = 0, checked = o->pii && d.approx;
        if (checked) {
            if ((st = gm_memo_pii(o->tok, doc, P, gen, d.n_generated, &o->pii_opt, &types, &sens))) break;
            if (types) {
                res->pii_approx++;
                res->pii_exact += d.exact;
                res->pii_sensitive += sens;
                for (int t = 0; t < GM_PII_N_TYPES; t++) res->pii_by_type[t] += (types >> t) & 1;
            }
        }
        if (o->samples) st = write_sample(o, set->index[i], doc, gen, &d, types, checked);
        if (o->progress) o->progress(o->progress_user, i + 1, set->n);
    }
    free(gen);
    free(work);
    return st;
}
