/* Side-by-side preference evaluation (the Gemma reports' human SxS, with a model as the rater): a judge sees
 * a prompt and two responses and says which is better. Each pair is judged in both orders so the judge's
 * position bias cancels: A wins when the judge prefers A in both orders, loses when it prefers B in both,
 * and a split verdict (each order favouring the same position, or any order without a preference) is a
 * tie. Rates of win / tie / loss get Wilson 95% intervals; the score (win + tie/2) a normal one. */
#ifndef GM_EVAL_SXS_H
#define GM_EVAL_SXS_H

#include <stdint.h>
#include <stdio.h>

#include "gemma.h"

/* A judge: the log-odds that the response shown first is better than the one shown second (> 0: first,
 * < 0: second, 0: no preference). */
typedef gm_status (*gm_sxs_judge_fn)(void *user, const char *prompt, const char *first, const char *second,
                                     double *logit_first);

typedef enum { GM_SXS_LOSS = 0, GM_SXS_TIE = 1, GM_SXS_WIN = 2 } gm_sxs_verdict;

/* The verdict for A from the two orders: logit_ab with A shown first, logit_ba with B shown first. */
gm_sxs_verdict gm_sxs_combine(double logit_ab, double logit_ba);
/* The judge's probability that A is better, averaged over the two orders:
 * (sigmoid(logit_ab) + sigmoid(-logit_ba)) / 2. */
double gm_sxs_pref_a(double logit_ab, double logit_ba);

/* Counts for one group of prompts (all, or one category). */
typedef struct gm_sxs_counts {
    long n, win, tie, loss;
    long first_preferred;  /* of the 2n single-order judgments, those preferring the response shown first */
    double pref_sum;       /* sum of gm_sxs_pref_a */
} gm_sxs_counts;

void gm_sxs_counts_add(gm_sxs_counts *c, double logit_ab, double logit_ba);

typedef struct gm_sxs_rates {
    double win, tie, loss;                 /* fractions of n */
    double win_lo, win_hi, tie_lo, tie_hi, loss_lo, loss_hi; /* Wilson 95% score intervals */
    double score, score_lo, score_hi;      /* (win + tie/2) / n; mean ± 1.96 · sd / sqrt(n) with the sample
                                              standard deviation (n - 1) of the per-prompt 1 / 0.5 / 0 values,
                                              clipped to [0, 1]; n < 2 gives [0, 1] */
    double mean_pref;                      /* mean gm_sxs_pref_a */
    double first_rate;                     /* first_preferred / 2n: 0.5 = no position bias seen */
} gm_sxs_rates;

void gm_sxs_rates_of(const gm_sxs_counts *c, gm_sxs_rates *r);

/* ---- running a set --------------------------------------------------------------------------- */

typedef struct gm_sxs_item {
    const char *prompt, *a, *b;
    const char *category; /* may be NULL */
} gm_sxs_item;

typedef struct gm_sxs_group {
    char *name;
    gm_sxs_counts c;
} gm_sxs_group;

typedef struct gm_sxs_run_opts {
    gm_sxs_judge_fn judge;
    void *judge_user;
    void (*progress)(void *user, long done, long total);
    void *progress_user;
    /* An item the judge refuses with GM_ERR_ARG (e.g. too long for its context) is skipped and reported
     * here (may be NULL); any other failure stops the run. */
    void (*on_skip)(void *user, int item, const char *why);
    void *skip_user;
} gm_sxs_run_opts;

typedef struct gm_sxs_result {
    gm_sxs_counts all;
    int n_groups;          /* categories, in order of first appearance (items without one: none) */
    gm_sxs_group *groups;
    long skipped;
    double *logit_ab, *logit_ba; /* per item; NaN for a skipped one */
} gm_sxs_result;

/* Judge every item in both orders (A first, then B first) and count the verdicts. */
gm_status gm_sxs_run(const gm_sxs_item *items, int n, const gm_sxs_run_opts *o, gm_sxs_result *res);
void gm_sxs_result_free(gm_sxs_result *r);

/* ---- a model as the judge ---------------------------------------------------------------------- */

/* The default rubric: placeholders {prompt}, {first} (shown as "Response A") and {second} ("Response B"). */
extern const char *const GM_SXS_DEFAULT_RUBRIC;

typedef struct gm_sxs_model_judge gm_sxs_model_judge;

/* A judge that fills the rubric, wraps it in Gemma's chat turn format (or, with chat = 0, follows it with
 * "\n\nAnswer:") and compares the log-likelihoods of the answers "A" and "B" (" A" / " B" without chat):
 * logit_first = log P(A) - log P(B). The turn markers are control tokens; in the filled rubric the spelling
 * of a control token ("<end_of_turn>" in a response) is encoded as plain text, so a response cannot forge a
 * turn. Prompts share the cached rubric prefix.
 * The rubric must contain {prompt}, {first} and {second} (GM_ERR_ARG otherwise); it is copied. */
gm_status gm_sxs_model_judge_new(gm_session *s, const gm_tokenizer *tok, int vocab, const char *rubric, int chat,
                                 gm_sxs_model_judge **out);
void gm_sxs_model_judge_free(gm_sxs_model_judge *j);
/* A gm_sxs_judge_fn; user is the gm_sxs_model_judge. GM_ERR_ARG when the filled prompt does not fit the
 * session's context. */
gm_status gm_sxs_model_judge_fn(void *user, const char *prompt, const char *first, const char *second,
                                double *logit_first);
/* The judging context the judge scores "A" and "B" after (<bos>, the turn header, the filled rubric, the
 * turn footer); *ids malloc'd. */
gm_status gm_sxs_model_judge_tokens(const gm_sxs_model_judge *j, const char *prompt, const char *first,
                                    const char *second, int32_t **ids, size_t *n);
/* Tokens run through the model so far, and those served from the cached prefix. */
void gm_sxs_model_judge_stats(const gm_sxs_model_judge *j, long *evaluated, long *reused);

#endif
