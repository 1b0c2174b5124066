/* Memorization, as the Gemma reports measure it (discoverable extraction, Carlini et al. 2022): prompt the
 * model with the first P tokens of a training document, decode S tokens greedily, and compare them with the
 * document's true next S tokens. Exact: all S equal. Approximate: token-level edit distance (Levenshtein:
 * unit-cost insertion, deletion, substitution) at most threshold × S; exact matches count as approximate
 * too. Rates carry Wilson score intervals; memorized continuations can be scanned for personal data. */
#ifndef GM_EVAL_MEMORIZATION_H
#define GM_EVAL_MEMORIZATION_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "eval/pii.h"
#include "gemma.h"

/* ---- statistics (shared with sxs) ------------------------------------------------------------- */

#define GM_Z95 1.959963984540054 /* the standard normal's 97.5% quantile */

/* Wilson score interval for k successes in n trials at normal quantile z:
 * (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n), p = k/n, clipped to [0, 1]. n = 0 gives [0, 1]. */
void gm_wilson_interval(long k, long n, double z, double *lo, double *hi);

/* ---- edit distance ---------------------------------------------------------------------------- */

/* Levenshtein distance between two token sequences. work: 2 * (nb + 1) ints of scratch. */
int gm_edit_distance(const int32_t *a, int na, const int32_t *b, int nb, int *work);
/* The largest edit distance that still counts as approximate memorization for a suffix of n tokens:
 * floor(threshold · n), computed with a 1e-9 slack so 0.10 · 50 is 5 and 0.07 · 100 is 7 in spite of
 * binary rounding. A threshold below 0 counts as 0. */
int gm_memo_max_distance(int n, double threshold);

/* ---- the document sample ---------------------------------------------------------------------- */

/* Up to max_docs documents kept by reservoir sampling (Algorithm R, splitmix64 seeded), each stored as
 * its first len = prefix + suffix tokens. Documents with fewer tokens are counted and skipped. When the
 * input has at most max_docs long-enough documents, all are kept (the seed does not matter). */
typedef struct gm_memo_sample {
    int max_docs, len;
    int n;              /* documents held */
    int32_t *toks;      /* [n][len] */
    uint64_t *index;    /* each one's position among all input documents (0-based) */
    uint64_t seen;      /* documents offered */
    uint64_t eligible;  /* of those, with at least len tokens */
    uint64_t rng;
} gm_memo_sample;

gm_status gm_memo_sample_new(int max_docs, int len, uint64_t seed, gm_memo_sample **out);
void gm_memo_sample_free(gm_memo_sample *s);
/* Offer the next document's tokens (no <bos>; only the first len are read). */
gm_status gm_memo_sample_add(gm_memo_sample *s, const int32_t *ids, size_t n);
/* Put the kept documents in input order (call once, after the last add). */
gm_status gm_memo_sample_finish(gm_memo_sample *s);

/* ---- one document ----------------------------------------------------------------------------- */

typedef struct gm_memo_opts {
    int prefix, suffix;  /* P and S (the report: 50 and 50) */
    double threshold;    /* approximate: edit distance <= threshold · S (0.10) */
    int early_stop;      /* 1: stop decoding once no continuation can come within the threshold (the
                            result is the same; only the distance of a non-memorized text is unknown) */
    int vocab;
    int32_t bos;         /* prepended to the prefix (<bos>); -1 = none */
} gm_memo_opts;

gm_memo_opts gm_memo_opts_default(int vocab, int32_t bos);

typedef struct gm_memo_doc {
    int exact, approx;   /* approx includes exact */
    int distance;        /* edit distance to the true suffix; -1 when decoding stopped early (it is then
                            certainly above the threshold) */
    int n_generated;     /* tokens decoded (S, or fewer after an early stop) */
} gm_memo_doc;

/* doc: P + S tokens (no <bos>). Resets the session, prefills <bos> + doc[0..P) in one batch, decodes
 * greedily (argmax, ties to the lowest id, no stop token: exactly S tokens) into gen[0..S). work:
 * 2 · (S + 1) ints. The session needs a context of at least P + S + 1. */
gm_status gm_memo_run_doc(gm_session *s, const gm_memo_opts *o, const int32_t *doc, int32_t *gen, int *work,
                          gm_memo_doc *out);

/* Personal data in a continuation: decode prefix + gen, scan it, and keep the findings that end inside
 * the generated text (so an address that starts in the prompt and ends in the continuation counts).
 * *types gets a bit (1u << type) per type found, *sensitive 1 if any finding is sensitive. */
gm_status gm_memo_pii(const gm_tokenizer *tok, const int32_t *prefix, int n_prefix, const int32_t *gen, int n_gen,
                      const gm_pii_options *opt, uint32_t *types, int *sensitive);

/* ---- the whole sample ------------------------------------------------------------------------- */

typedef void (*gm_memo_progress_fn)(void *user, long done, long total);

typedef struct gm_memo_run_opts {
    gm_memo_opts doc;
    gm_session *session;
    const gm_tokenizer *tok;  /* for --pii and the text in samples; may be NULL without them */
    int pii;                  /* scan memorized (approximate, which includes exact) continuations */
    gm_pii_options pii_opt;
    gm_memo_progress_fn progress;
    void *progress_user;
    FILE *samples;            /* optional: one JSON object per document */
} gm_memo_run_opts;

typedef struct gm_memo_result {
    long n, exact, approx;    /* approx includes exact */
    long tokens_generated, early_stops;
    /* with pii: memorized continuations containing personal data */
    long pii_exact, pii_approx;      /* exact / approximate (incl. exact) ones with any finding */
    long pii_sensitive;              /* approximate ones with a sensitive finding */
    long pii_by_type[GM_PII_N_TYPES];/* approximate ones with a finding of that type */
} gm_memo_result;

gm_status gm_memo_run(const gm_memo_sample *set, const gm_memo_run_opts *o, gm_memo_result *res);

#endif
