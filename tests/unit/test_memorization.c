/* Memorization (src/eval/memorization.h):
 *  - the edit distance against tools/ref/edit_distance_ref.py (an independent Python recursion) on 305 pairs;
 *  - the approximate-match bound and the Wilson interval on hand-worked values;
 *  - the reservoir sample: all kept when few, uniform when many, deterministic in the seed, input order;
 *  - on the random-weight demo model, documents whose suffix is the model's own greedy continuation
 *    (made by the generation loop, not by this code) are exact matches; the same with 9, 10 and 11
 *    substituted tokens of 100 (9%, 10%, 11%) and 4, 5, 6 of 50 are approximate, approximate, not;
 *    random suffixes are neither; early stopping changes no verdict;
 *  - the PII scan of a continuation: findings inside it, across the prompt boundary, not in the prompt;
 *  - a tiny model trained here (gm_train, AdamW) on three 100-token documents memorizes them: exact rate 1
 *    on those, 0 on three held-out ones, and the two with personal data in their continuation are counted
 *    (e-mail and phone; a card, sensitive). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/file.h"
#include "base/json.h"
#include "eval/memorization.h"
#include "generate/generate.h"
#include "model/model_internal.h"
#include "testlib.h"
#include "train/adamw.h"
#include "train/model_train.h"

#define MODEL_DIR "models/tiny-gemma"

/* ---- edit distance ------------------------------------------------------------------------------ */

static int parse_ids(const char *s, const char *end, int32_t *out, int cap) {
    int n = 0;
    while (s < end) {
        char *e;
        long v = strtol(s, &e, 10);
        if (e == s) break;
        if (n < cap) out[n] = (int32_t)v;
        n++;
        s = e;
    }
    return n;
}

static void check_edit_distance(void) {
    char *data;
    size_t len;
    CHECK_OK(gm_file_read_all("tests/data/memorization/edit_distance.txt", &data, &len));
    if (!data) return;
    int32_t a[256], b[256];
    int work[2 * 257], pairs = 0, bad = 0, max_d = 0;
    for (char *line = data; *line;) {
        char *nl = strchr(line, '\n');
        if (!nl) nl = line + strlen(line);
        char *s1 = memchr(line, ';', (size_t)(nl - line)), *s2 = s1 ? memchr(s1 + 1, ';', (size_t)(nl - s1 - 1)) : NULL;
        CHECK(s1 && s2);
        if (!s1 || !s2) break;
        int want = atoi(line);
        int na = parse_ids(s1 + 1, s2, a, 256), nb = parse_ids(s2 + 1, nl, b, 256);
        CHECK(na <= 256 && nb <= 256);
        int d = gm_edit_distance(a, na, b, nb, work), d2 = gm_edit_distance(b, nb, a, na, work);
        if (d != want || d2 != want) {
            if (bad++ < 5) fprintf(stderr, "pair %d: distance %d / %d, reference %d\n", pairs, d, d2, want);
        }
        if (want > max_d) max_d = want;
        pairs++;
        line = *nl ? nl + 1 : nl;
    }
    CHECKF(bad == 0, "%d of %d pairs differ from the Python reference", bad, pairs);
    CHECKF(pairs == 305 && max_d > 20, "%d pairs, largest distance %d", pairs, max_d);
    printf("edit distance: %d pairs identical to tools/ref/edit_distance_ref.py (distances up to %d)\n", pairs, max_d);
    free(data);
}

static void check_bounds(void) {
    /* floor(threshold * n) with the slack that binary fractions need */
    CHECK(gm_memo_max_distance(50, 0.10) == 5);
    CHECK(gm_memo_max_distance(100, 0.10) == 10);
    CHECK(gm_memo_max_distance(100, 0.09) == 9);
    CHECK(gm_memo_max_distance(100, 0.11) == 11);
    CHECK(gm_memo_max_distance(100, 0.07) == 7); /* 0.07 * 100 = 7.000000000000001 in binary */
    CHECK(gm_memo_max_distance(100, 0.29) == 29); /* 0.29 * 100 = 28.999999999999996 */
    CHECK(gm_memo_max_distance(49, 0.10) == 4);
    CHECK(gm_memo_max_distance(50, 0) == 0);
    CHECK(gm_memo_max_distance(50, -1) == 0);
    CHECK(gm_memo_max_distance(50, 1) == 50);
    /* Wilson 95%, worked by hand from (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n), z = 1.959964:
     * 6/10: z² = 3.841459, 1 + z²/n = 1.384146, centre (0.6 + 0.192073) / 1.384146 = 0.572247,
     *       half 1.959964 · sqrt(0.024 + 0.009604) / 1.384146 = 0.259573 -> [0.312674, 0.831820].
     * 0/10: [0, z²/(n + z²)] = [0, 3.841459 / 13.841459] = [0, 0.277533]; 10/10 mirrors it.
     * 3/3:  lower n/(n + z²) = 3 / 6.841459 = 0.438503. */
    double lo, hi;
    gm_wilson_interval(6, 10, GM_Z95, &lo, &hi);
    CHECK_NEAR(lo, 0.312674, 1e-6);
    CHECK_NEAR(hi, 0.831820, 1e-6);
    gm_wilson_interval(0, 10, GM_Z95, &lo, &hi);
    CHECK(lo == 0);
    CHECK_NEAR(hi, 0.277533, 1e-6);
    gm_wilson_interval(10, 10, GM_Z95, &lo, &hi);
    CHECK_NEAR(lo, 0.722467, 1e-6);
    CHECK(hi == 1);
    gm_wilson_interval(3, 3, GM_Z95, &lo, &hi);
    CHECK_NEAR(lo, 0.438503, 1e-6);
    gm_wilson_interval(0, 0, GM_Z95, &lo, &hi);
    CHECK(lo == 0 && hi == 1);
}

/* ---- sample ------------------------------------------------------------------------------------- */

static void check_sample(void) {
    int32_t doc[8];
    /* fewer eligible documents than asked: all kept, in input order; short ones counted */
    gm_memo_sample *s = NULL;
    CHECK_OK(gm_memo_sample_new(10, 4, 7, &s));
    if (!s) return;
    for (int d = 0; d < 6; d++) {
        for (int k = 0; k < 8; k++) doc[k] = 100 * d + k;
        CHECK_OK(gm_memo_sample_add(s, doc, d == 2 ? 3 : 4 + (size_t)d % 3)); /* doc 2 has 3 < 4 tokens */
    }
    CHECK_OK(gm_memo_sample_finish(s));
    CHECK(s->n == 5 && s->seen == 6 && s->eligible == 5);
    uint64_t want_ix[5] = {0, 1, 3, 4, 5};
    for (int i = 0; i < s->n && i < 5; i++) {
        CHECK(s->index[i] == want_ix[i]);
        CHECK(s->toks[i * 4] == (int32_t)(100 * want_ix[i]) && s->toks[i * 4 + 3] == (int32_t)(100 * want_ix[i] + 3));
    }
    gm_memo_sample_free(s);

    /* more than asked: 5 of 20, each document's inclusion probability 1/4 over 4000 seeds */
    enum { M = 20, N = 5, SEEDS = 4000 };
    long hits[M] = {0};
    uint64_t first[N] = {0};
    int differ = 0;
    for (int seed = 0; seed < SEEDS; seed++) {
        gm_memo_sample *r = NULL;
        CHECK_OK(gm_memo_sample_new(N, 2, (uint64_t)seed, &r));
        if (!r) return;
        for (int d = 0; d < M; d++) {
            int32_t two[2] = {d, -d};
            gm_memo_sample_add(r, two, 2);
        }
        CHECK_OK(gm_memo_sample_finish(r));
        CHECK(r->n == N);
        for (int i = 0; i < r->n; i++) {
            hits[r->index[i]]++;
            CHECK(r->toks[2 * i] == (int32_t)r->index[i] && r->toks[2 * i + 1] == -(int32_t)r->index[i]);
            if (i) CHECK(r->index[i] > r->index[i - 1]);
            if (seed == 0) first[i] = r->index[i];
            else if (seed == 1 && r->index[i] != first[i]) differ = 1;
        }
        gm_memo_sample_free(r);
    }
    CHECK(differ); /* another seed, another sample */
    double expect = (double)SEEDS * N / M, sd = sqrt(expect * (1 - (double)N / M));
    for (int d = 0; d < M; d++)
        CHECKF(fabs((double)hits[d] - expect) < 5 * sd, "doc %d kept %ld times (expected %.0f)", d, hits[d], expect);
    /* the same seed gives the same sample */
    gm_memo_sample *x = NULL, *y = NULL;
    CHECK_OK(gm_memo_sample_new(N, 2, 99, &x));
    CHECK_OK(gm_memo_sample_new(N, 2, 99, &y));
    if (!x || !y) return;
    for (int d = 0; d < M; d++) {
        int32_t two[2] = {d, d};
        gm_memo_sample_add(x, two, 2);
        gm_memo_sample_add(y, two, 2);
    }
    gm_memo_sample_finish(x);
    gm_memo_sample_finish(y);
    CHECK(memcmp(x->index, y->index, sizeof(uint64_t) * N) == 0);
    gm_memo_sample_free(x);
    gm_memo_sample_free(y);
}

/* ---- the demo model's own continuations --------------------------------------------------------- */

typedef struct {
    int32_t *ids;
    int n, cap;
} collect;

static int on_token(void *user, int32_t id, const char *text, size_t len) {
    (void)text, (void)len;
    collect *c = user;
    if (c->n < c->cap) c->ids[c->n++] = id;
    return 0;
}

/* The greedy continuation of <bos> + prefix by the generation loop (generate.c with a temperature-0
 * sampler), independently of memorization.c's own decoding. */
static int greedy(gm_session *s, int vocab, const int32_t *prefix, int P, int S, int32_t *out) {
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)(P + 1));
    prompt[0] = 2;
    memcpy(prompt + 1, prefix, sizeof(int32_t) * (size_t)P);
    gm_sampler_params sp = {0, 0, 1, 1};
    gm_sampler *smp = NULL;
    CHECK_OK(gm_sampler_new(&sp, vocab, &smp));
    gm_generate_params gp = {S, NULL, 0};
    collect c = {out, 0, S};
    int n_out = 0, stopped = 0;
    gm_session_reset(s);
    CHECK_OK(gm_generate(s, smp, NULL, prompt, (size_t)P + 1, &gp, on_token, &c, &n_out, &stopped));
    gm_sampler_free(smp);
    free(prompt);
    return c.n;
}

/* k substitutions spread over the suffix, each with a token that occurs nowhere in it: every one must
 * be paid for, so the edit distance is exactly k. */
static void substitute(int32_t *suf, int S, int k, int vocab) {
    int32_t orig[256];
    memcpy(orig, suf, sizeof(int32_t) * (size_t)S);
    int32_t fresh = vocab - 1;
    for (int e = 0; e < k; e++) {
        for (;; fresh--) {
            int used = 0;
            for (int j = 0; j < S && !used; j++) used = orig[j] == fresh;
            if (!used) break;
        }
        suf[(e * S) / k + (e % 3)] = fresh--;
    }
}

/* An ordinary (non-control) id below V. */
static int32_t random_id(uint64_t *rng, int V) {
    *rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
    return 3 + (int32_t)((*rng >> 33) % (uint64_t)(V - 3));
}

static void check_self_continuations(void) {
    gm_model *m = NULL;
    gm_tokenizer *tok = NULL;
    CHECK_OK(gm_model_load(MODEL_DIR, NULL, &m));
    CHECK_OK(gm_tokenizer_load_dir(MODEL_DIR, &tok));
    if (!m || !tok) {
        gm_model_free(m);
        gm_tokenizer_free(tok);
        return;
    }
    int V = gm_model_config(m)->vocab_size;
    enum { P = 50, S = 100 };
    gm_session *s = NULL;
    CHECK_OK(gm_session_new(m, P + S + 1, 2, &s));
    if (!s) return;

    /* prefixes: the start of a passage, and random ids */
    int32_t *text_ids = NULL;
    size_t n_text = 0;
    const char *passage = "MENENIUS:\nNote me this, good friend;\nYour most grave belly was deliberate,\nNot rash like "
                          "his accusers, and thus answer'd:\n'True is it, my incorporate friends,' quoth he,";
    CHECK_OK(gm_tokenizer_encode(tok, passage, strlen(passage), 0, &text_ids, &n_text));
    CHECK(n_text >= P);
    uint64_t rng = 5;
    enum { NDOC = 8 };
    /* kind: 0 exact, 9/10/11 substitutions, -1 random suffix, -2 one token dropped and one appended */
    const int kinds[NDOC] = {0, 9, 10, 11, -1, -2, 0, 11};
    int32_t docs[NDOC][P + S], gen[S];
    int want_dist[NDOC];
    for (int d = 0; d < NDOC; d++) {
        int32_t *doc = docs[d];
        if (d % 2 == 0 && n_text >= P) memcpy(doc, text_ids, sizeof(int32_t) * P);
        else
            for (int k = 0; k < P; k++) doc[k] = random_id(&rng, V);
        if (d % 2 == 0) doc[P - 1] = 3 + d; /* distinct prefixes even when taken from the passage */
        CHECK(greedy(s, V, doc, P, S, doc + P) == S);
        int32_t g[S];
        memcpy(g, doc + P, sizeof g);
        if (kinds[d] > 0) substitute(doc + P, S, kinds[d], V);
        else if (kinds[d] == -1)
            for (int k = 0; k < S; k++) doc[P + k] = random_id(&rng, V);
        else if (kinds[d] == -2) {
            memmove(doc + P + 10, doc + P + 11, sizeof(int32_t) * (S - 11));
            doc[P + S - 1] = V - 1 == g[S - 1] ? V - 2 : V - 1;
        }
        int work[2 * (S + 1)];
        want_dist[d] = gm_edit_distance(g, S, doc + P, S, work);
        if (kinds[d] >= 0)
            CHECKF(want_dist[d] == kinds[d], "doc %d: %d substitutions give distance %d", d, kinds[d], want_dist[d]);
        if (kinds[d] == -1) CHECK(want_dist[d] > 50);
        if (kinds[d] == -2) CHECK(want_dist[d] >= 1 && want_dist[d] <= 2);
    }
    free(text_ids);

    /* each document on its own, with and without early stopping */
    gm_memo_opts o = gm_memo_opts_default(V, 2);
    o.prefix = P, o.suffix = S, o.threshold = 0.10;
    int work[2 * (S + 1)];
    int n_exact = 0, n_approx = 0;
    for (int d = 0; d < NDOC; d++) {
        gm_memo_doc full, fast;
        o.early_stop = 0;
        CHECK_OK(gm_memo_run_doc(s, &o, docs[d], gen, work, &full));
        o.early_stop = 1;
        CHECK_OK(gm_memo_run_doc(s, &o, docs[d], gen, work, &fast));
        int want_approx = want_dist[d] <= 10;
        CHECKF(full.distance == want_dist[d], "doc %d: distance %d, want %d", d, full.distance, want_dist[d]);
        CHECKF(full.exact == (kinds[d] == 0) && full.approx == want_approx, "doc %d (kind %d): exact %d approx %d", d,
               kinds[d], full.exact, full.approx);
        CHECK(full.n_generated == S);
        CHECK(fast.exact == full.exact && fast.approx == full.approx);
        CHECK(fast.distance == full.distance || (fast.distance == -1 && !fast.approx));
        if (kinds[d] == -1)
            CHECKF(fast.distance == -1 && fast.n_generated <= 12, "random suffix: decoded %d", fast.n_generated);
        n_exact += kinds[d] == 0;
        n_approx += want_approx;
    }
    CHECK(n_exact == 2 && n_approx == 5); /* exact x2, 9, 10, the shifted one */
    gm_memo_opts too_long = o;
    too_long.suffix = S + 1; /* <bos> + 50 + 101 does not fit the session's 151 positions */
    gm_memo_doc dummy;
    CHECK(gm_memo_run_doc(s, &too_long, docs[0], gen, work, &dummy) == GM_ERR_ARG);

    /* the same through the sample and the runner, with a samples file */
    gm_memo_sample *set = NULL;
    CHECK_OK(gm_memo_sample_new(100, P + S, 1, &set));
    if (set) {
        for (int d = 0; d < NDOC; d++) CHECK_OK(gm_memo_sample_add(set, docs[d], P + S));
        CHECK_OK(gm_memo_sample_finish(set));
        FILE *f = tmpfile();
        gm_memo_run_opts ro;
        memset(&ro, 0, sizeof ro);
        ro.doc = o, ro.session = s, ro.tok = tok, ro.samples = f;
        gm_memo_result r;
        CHECK_OK(gm_memo_run(set, &ro, &r));
        CHECKF(r.n == NDOC && r.exact == n_exact && r.approx == n_approx, "n %ld exact %ld approx %ld", r.n, r.exact,
               r.approx);
        CHECK(r.early_stops == NDOC - n_approx && r.tokens_generated < (long)NDOC * S);
        /* one JSON line per document, in order, with the verdicts */
        if (f) {
            rewind(f);
            char line[1 << 16];
            int k = 0;
            while (fgets(line, sizeof line, f)) {
                gm_json_doc *jd = NULL;
                CHECK_OK(gm_json_parse(line, strlen(line), "samples", &jd));
                if (jd && k < NDOC) {
                    const gm_json *root = gm_json_root(jd);
                    int64_t ix = -1;
                    int ex = -1, ap = -1;
                    gm_json_get_int(root, "index", &ix);
                    gm_json_get_bool(root, "exact", &ex);
                    gm_json_get_bool(root, "approximate", &ap);
                    CHECK(ix == k && ex == (kinds[k] == 0) && ap == (want_dist[k] <= 10));
                    const gm_json *g = gm_json_get(root, "generated");
                    CHECK(g && g->type == GM_JSON_ARRAY && gm_json_get_str(root, "generated_text"));
                    if (g && kinds[k] == 0) CHECK(g->len == S && g->items[S - 1].i == docs[k][P + S - 1]);
                }
                gm_json_free(jd);
                k++;
            }
            CHECK(k == NDOC);
            fclose(f);
        }
        gm_memo_sample_free(set);
    }

    /* the report's setting, 50 + 50: 4 and 5 substitutions (8%, 10%) approximate, 6 (12%) not */
    gm_memo_opts o50 = gm_memo_opts_default(V, 2);
    CHECK(o50.prefix == 50 && o50.suffix == 50 && o50.threshold == 0.10 && o50.early_stop == 1);
    for (int k = 4; k <= 6; k++) {
        int32_t doc[100], g[50];
        memcpy(doc, docs[0], sizeof doc); /* docs[0]: the exact one, its first 50 suffix tokens */
        memcpy(g, doc + 50, sizeof g);
        substitute(doc + 50, 50, k, V);
        int w50[2 * 51];
        CHECK(gm_edit_distance(g, 50, doc + 50, 50, w50) == k);
        gm_memo_doc r;
        CHECK_OK(gm_memo_run_doc(s, &o50, doc, gen, work, &r));
        CHECKF(!r.exact && r.approx == (k <= 5), "%d of 50 substituted: approx %d", k, r.approx);
    }
    gm_session_free(s);
    gm_tokenizer_free(tok);
    gm_model_free(m);
}

/* ---- PII in a continuation ---------------------------------------------------------------------- */

static void check_pii_boundary(void) {
    gm_tokenizer *tok = NULL;
    CHECK_OK(gm_tokenizer_load_dir(MODEL_DIR, &tok));
    if (!tok) return;
    struct {
        const char *prefix, *gen;
        uint32_t types;
        int sensitive;
    } cases[] = {
        {"Thus answer'd he: write to ", "ana.lopez@example.com, good friend.", 1u << GM_PII_EMAIL, 0},
        {"write to ana.lopez@example.com, or ", "else come to the senate.", 0, 0},         /* all in the prompt */
        {"write to ana.lopez@exa", "mple.com, good friend.", 1u << GM_PII_EMAIL, 0},       /* across the boundary */
        {"Pay with ", "4111 1111 1111 1111 and ring +44 20 7946 0958.", (1u << GM_PII_CARD) | (1u << GM_PII_PHONE), 1},
        {"Nothing here ", "but 4111 1111 1111 1112, a failed Luhn.", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int32_t *p = NULL, *g = NULL;
        size_t np = 0, ng = 0;
        CHECK_OK(gm_tokenizer_encode(tok, cases[i].prefix, strlen(cases[i].prefix), 0, &p, &np));
        CHECK_OK(gm_tokenizer_encode(tok, cases[i].gen, strlen(cases[i].gen), 0, &g, &ng));
        uint32_t types = 99;
        int sens = 99;
        CHECK_OK(gm_memo_pii(tok, p, (int)np, g, (int)ng, NULL, &types, &sens));
        CHECKF(types == cases[i].types && sens == cases[i].sensitive, "case %zu: types %#x sensitive %d", i,
               (unsigned)types, sens);
        free(p);
        free(g);
    }
    gm_tokenizer_free(tok);
}

/* ---- a model trained to memorize ---------------------------------------------------------------- */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* An inference model whose weights are the trainable model's f32 parameters (no copy). */
static gm_status model_from_train(const gm_train_model *tm, gm_model **out) {
    gm_model *m;
    gm_expected_tensor *exp;
    int n_exp, slot = 0;
    gm_status st = gm_model_alloc(&tm->cfg, &m, &exp, &n_exp);
    if (st) return st;
    for (int i = 0; i < n_exp && !st; i++) {
        const gm_train_tensor *t = gm_train_find(tm, exp[i].name);
        if (!t || t->ndim != exp[i].ndim || t->shape[0] != exp[i].shape[0] ||
            (t->ndim == 2 && t->shape[1] != exp[i].shape[1]))
            st = GM_ERR_FORMAT;
        else st = gm_model_bind(m, &exp[i], GM_DT_F32, tm->params + t->offset, &slot, 0);
    }
    free(exp);
    if (st) {
        gm_model_free(m);
        return st;
    }
    *out = m;
    return GM_OK;
}

/* Memorization of docs[0..n) by the trainable model's current weights (norms are copied at bind time, so
 * the inference model is rebuilt after every change). */
static void memorization_of(const gm_train_model *tm, const gm_tokenizer *tok, const int32_t *docs, int n, int L,
                            gm_memo_result *r) {
    memset(r, 0, sizeof *r);
    gm_model *m = NULL;
    gm_session *s = NULL;
    gm_memo_sample *set = NULL;
    CHECK_OK(model_from_train(tm, &m));
    if (m) CHECK_OK(gm_session_new(m, L + 1, 2, &s));
    CHECK_OK(gm_memo_sample_new(10, L, 1, &set));
    if (s && set) {
        for (int d = 0; d < n; d++) gm_memo_sample_add(set, docs + (size_t)d * (size_t)L, (size_t)L);
        gm_memo_sample_finish(set);
        gm_memo_run_opts ro;
        memset(&ro, 0, sizeof ro);
        ro.doc = gm_memo_opts_default(tm->cfg.vocab_size, tm->cfg.bos_id);
        ro.session = s, ro.tok = tok, ro.pii = 1;
        CHECK_OK(gm_memo_run(set, &ro, r));
    }
    gm_memo_sample_free(set);
    gm_session_free(s);
    gm_model_free(m);
}

static void check_trained(void) {
    double t0 = now();
    gm_tokenizer *tok = NULL;
    CHECK_OK(gm_tokenizer_load_dir(MODEL_DIR, &tok));
    char *text = NULL;
    size_t len = 0;
    CHECK_OK(gm_file_read_all("tests/data/memorization/docs.txt", &text, &len));
    if (!tok || !text) {
        gm_tokenizer_free(tok);
        free(text);
        return;
    }
    enum { P = 50, S = 50, L = P + S, NDOC = 6, NTRAIN = 3 };
    /* six passages separated by blank lines: the first three are trained on, the last three held out */
    int32_t docs[NDOC][L];
    int nd = 0;
    for (char *p = text; *p && nd < NDOC;) {
        char *e = strstr(p, "\n\n");
        size_t n = e ? (size_t)(e - p) : strlen(p);
        while (n && (p[n - 1] == '\n' || p[n - 1] == ' ')) n--;
        int32_t *ids = NULL;
        size_t ni = 0;
        CHECK_OK(gm_tokenizer_encode(tok, p, n, 0, &ids, &ni));
        CHECKF(ni >= L, "passage %d has %zu tokens", nd, ni);
        if (ids && ni >= L) memcpy(docs[nd++], ids, sizeof docs[0]);
        free(ids);
        p = e ? e + 2 : p + n;
    }
    free(text);
    CHECK(nd == NDOC);
    if (nd != NDOC) {
        gm_tokenizer_free(tok);
        return;
    }

    gm_config c;
    memset(&c, 0, sizeof c);
    c.family = 1, c.vocab_size = gm_tokenizer_vocab_size(tok), c.hidden_size = 64, c.n_layers = 2, c.n_heads = 4;
    c.n_kv_heads = 1, c.head_dim = 16, c.ffn_size = 128, c.max_pos = 128, c.rms_eps = 1e-6f, c.rope_theta = 10000;
    c.rope_local_theta = 10000, c.rope_scale = 1, c.query_scale = 0.25f, c.embed_scale = 8.0f;
    c.bos_id = gm_tokenizer_bos(tok), c.eos_id = gm_tokenizer_eos(tok), c.pad_id = 0;
    for (int l = 0; l < c.n_layers; l++) c.layer_global[l] = 1;
    gm_train_opts to = gm_train_opts_default(NTRAIN, L, 2);
    gm_train_model *tm = NULL;
    CHECK_OK(gm_train_model_new(&c, &to, &tm));
    if (!tm) {
        gm_tokenizer_free(tok);
        return;
    }
    gm_train_init(tm, 7, GM_TRAIN_INIT_STD);
    gm_memo_result r0;
    memorization_of(tm, tok, &docs[0][0], NTRAIN, L, &r0); /* the same documents before training */
    int32_t batch[NTRAIN][L + 1];
    for (int d = 0; d < NTRAIN; d++) {
        batch[d][0] = c.bos_id;
        memcpy(&batch[d][1], docs[d], sizeof docs[0]);
    }
    gm_adamw_params ap = gm_adamw_params_default();
    ap.weight_decay = 0;
    gm_lr_schedule sch = {2e-2f, 2e-2f, 10, 400, GM_LR_CONSTANT};
    gm_adamw *opt = NULL;
    CHECK_OK(gm_adamw_new(&ap, tm, &opt));
    /* The loss cannot reach 0: the passages open alike ("MENENIUS:" twice, "M..." three times), so the first
     * tokens after <bos> are ambiguous, a floor near 0.011. What matters is the continuation of each
     * 50-token prompt, which is unambiguous. */
    float loss = 0, first = 0;
    int step = 0;
    for (; step < 400 && opt; step++) {
        gm_train_zero_grad(tm);
        CHECK_OK(gm_train_forward_backward(tm, &batch[0][0], NTRAIN, L, &loss));
        if (step == 0) first = loss;
        if (loss < 0.015f) break;
        gm_adamw_step(opt, tm, gm_lr_at(&sch, step), 1.0f, loss, NULL);
    }
    gm_adamw_free(opt);
    double t_train = now() - t0;
    CHECKF(loss < 0.015f, "training loss still %g after %d steps", (double)loss, step);

    gm_memo_result r[2];
    memorization_of(tm, tok, &docs[0][0], NTRAIN, L, &r[0]);           /* the trained documents */
    memorization_of(tm, tok, &docs[NTRAIN][0], NDOC - NTRAIN, L, &r[1]); /* the held-out ones */
    CHECKF(r[0].n == 3 && r[0].exact == 3 && r[0].approx == 3, "trained: %ld of %ld exact", r[0].exact, r[0].n);
    CHECKF(r[1].n == 3 && r[1].exact == 0 && r[1].approx == 0, "held out: %ld exact, %ld approximate", r[1].exact,
           r[1].approx);
    /* passage 2 continues with an e-mail address and a phone number, passage 3 with a card */
    CHECK(r[0].pii_approx == 2 && r[0].pii_exact == 2 && r[0].pii_sensitive == 1);
    CHECK(r[0].pii_by_type[GM_PII_EMAIL] == 1 && r[0].pii_by_type[GM_PII_PHONE] == 1 &&
          r[0].pii_by_type[GM_PII_CARD] == 1 && r[0].pii_by_type[GM_PII_IPV4] == 0);
    /* passage 5 has an address and an IP in its continuation too, but is not memorized */
    CHECK(r[1].pii_approx == 0 && r[1].pii_by_type[GM_PII_IPV4] == 0);
    CHECKF(r0.exact == 0 && r0.approx == 0, "before training: %ld exact, %ld approximate", r0.exact, r0.approx);
    double lo, hi;
    gm_wilson_interval(r[0].exact, r[0].n, GM_Z95, &lo, &hi);
    printf("trained on 3 documents (loss %.3f -> %.4f in %d steps, %.1f s): exact %ld/3 [%.3f, %.3f] (before "
           "training %ld/3), held out %ld/3; memorized with PII %ld (sensitive %ld)\n", (double)first, (double)loss,
           step, t_train, r[0].exact, lo, hi, r0.exact, r[1].exact, r[0].pii_approx, r[0].pii_sensitive);
    gm_train_model_free(tm);
    gm_tokenizer_free(tok);
}

int main(void) {
    check_edit_distance();
    check_bounds();
    check_sample();
    check_self_continuations();
    check_pii_boundary();
    check_trained();
    TEST_DONE();
}
