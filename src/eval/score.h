/* Scoring for the evaluation suite: log-likelihoods of continuations that reuse the KV cache of a shared
 * prompt prefix (across the choices of one item and across items that share few-shot examples), the
 * lm-evaluation-harness metrics (acc, acc_norm, TruthfulQA MC2 mass, GSM8K exact match, pass@1) with
 * standard errors, the task runner, and perplexity / bits per byte of a text (perplexity.c). */
#ifndef GM_EVAL_SCORE_H
#define GM_EVAL_SCORE_H

#include <stdint.h>
#include <stdio.h>

#include "eval/codeexec.h"
#include "eval/tasks.h"
#include "gemma.h"

/* ---- log-likelihood with prefix reuse ---------------------------------------------------------- */

typedef struct gm_scorer gm_scorer;

typedef struct gm_scorer_stats {
    long tokens_evaluated; /* tokens run through the model */
    long tokens_reused;    /* tokens not run thanks to the cache: scoring every choice as context + choice
                              from scratch would have run tokens_evaluated + tokens_reused */
    long rewinds_refused;  /* rewinds a sliding-window ring could not honour: the prompt was re-evaluated */
} gm_scorer_stats;

gm_status gm_scorer_new(gm_session *s, int vocab, gm_scorer **out);
void gm_scorer_free(gm_scorer *sc);
gm_scorer_stats gm_scorer_get_stats(const gm_scorer *sc);

/* ll[c] = log P(conts[c] | ctx) summed over the continuation's tokens; greedy[c] (may be NULL) = 1 when
 * every continuation token is the argmax. ctx starts with <bos>. The context is evaluated once (only the
 * part not already in the cache) and every continuation is scored from it, with gm_session_truncate to
 * rewind between them; where a sliding-window ring refuses the rewind the context is evaluated again.
 * n_ctx + len(cont) - 1 must fit the session. */
gm_status gm_scorer_loglik(gm_scorer *sc, const int32_t *ctx, int n_ctx, int n_choices, const int32_t *const *conts,
                           const int *n_conts, double *ll, int *greedy);

/* Make the session hold exactly toks[0..n), with the logits after toks[n-1] current (for generation),
 * reusing the longest cached prefix. After generating, call gm_scorer_forget_after(sc, n). */
gm_status gm_scorer_prefill(gm_scorer *sc, const int32_t *toks, int n);
void gm_scorer_forget_after(gm_scorer *sc, int n);

/* log softmax(logits)[tok], in double; *is_max (may be NULL) = tok is the first argmax. */
double gm_logprob(const float *logits, int vocab, int32_t tok, int *is_max);

/* The harness's request encoding: whitespace at the end of the context moves to the continuation;
 * ctx = encode(<bos> + context), and each continuation is encode(<bos> + context + delim + choice) past
 * len(ctx). Outputs are malloc'd (conts: an array of n arrays). */
gm_status gm_eval_encode_mc(const gm_tokenizer *tok, const char *context, const char *delim, char *const *choices,
                            int n, int32_t **ctx, int *n_ctx, int32_t ***conts, int **n_conts);

/* ---- metrics ----------------------------------------------------------------------------------- */

/* Mean with its standard error: the sample standard deviation (n - 1) over sqrt(n), as the harness. */
typedef struct gm_stat {
    double sum, sumsq;
    long n;
} gm_stat;
void gm_stat_add(gm_stat *s, double x);
double gm_stat_mean(const gm_stat *s);
double gm_stat_stderr(const gm_stat *s);

/* Characters (Unicode code points) of a UTF-8 string: the harness's len(choice) for acc_norm. */
size_t gm_eval_char_len(const char *s);
/* acc: the highest log-likelihood is the gold choice; acc_norm: the highest ll / len; ties go to the
 * first (numpy argmax). */
void gm_mc_acc(const double *ll, const double *len, int n, int gold, int *acc, int *acc_norm);
/* TruthfulQA MC2: probability mass on the true answers, normalized over all answers. As the harness,
 * the answers before the first false label are the true ones. */
double gm_mc2_score(const double *ll, const unsigned char *labels, int n);

/* GSM8K answer extraction, as the harness's two filters. strict: the first "#### N" (N = -?[0-9.,]+);
 * flexible: the last number (-?[$0-9.,]{2,} | -?[0-9]+). Return 0 (and "[invalid]") when none. */
int gm_gsm8k_extract_strict(const char *text, char *out, size_t cap);
int gm_gsm8k_extract_flexible(const char *text, char *out, size_t cap);
/* exact_match after the harness's regexes_to_ignore (",", "$", ".*#### ", a final ".") and lowercasing. */
void gm_gsm8k_normalize(const char *in, char *out, size_t cap);
int gm_gsm8k_match(const char *extracted, const char *reference);

/* The program HumanEval runs: prompt + completion + "\n" + test + "\n" + "check(entry_point)\n" (malloc'd). */
char *gm_humaneval_program(const gm_eval_item *it, const char *completion);

/* ---- the runner -------------------------------------------------------------------------------- */

typedef void (*gm_eval_progress_fn)(void *user, long done, long total);

typedef struct gm_eval_run_opts {
    gm_session *session;
    const gm_tokenizer *tok;
    int vocab;
    int max_gen_toks;      /* generative tasks; 0 = task default (GSM8K 256, HumanEval 512) */
    const int32_t *stop_ids; /* generation also stops at these ids (<eos>, <end_of_turn>) */
    int n_stop_ids;
    const char *python;    /* HumanEval: the interpreter (gm_code_find_python) */
    gm_code_limits limits;
    gm_eval_progress_fn progress;
    void *progress_user;
    FILE *samples;         /* optional: one JSON object per item (log-likelihoods, completion, outcome) */
} gm_eval_run_opts;

#define GM_EVAL_MAX_METRICS 4

typedef struct gm_eval_metric {
    const char *name;
    double value, se;
} gm_eval_metric;

typedef struct gm_eval_group {
    char *name;
    gm_stat acc;
} gm_eval_group;

typedef struct gm_eval_result {
    long n;
    int n_metrics;
    gm_eval_metric metrics[GM_EVAL_MAX_METRICS];
    int n_groups;
    gm_eval_group *groups;   /* MMLU subjects */
    long truncated;          /* prompts cut on the left to fit the context */
    long generated_tokens;
    long code_outcomes[5];   /* HumanEval: count per gm_code_outcome */
    int sandbox_net, sandbox_pid, sandbox_fs, sandbox_nproc; /* HumanEval: isolation seen on every run */
    gm_scorer_stats stats;
} gm_eval_result;

gm_status gm_eval_run(const gm_eval_set *set, const gm_eval_run_opts *o, gm_eval_result *res);
void gm_eval_result_free(gm_eval_result *r);

/* ---- perplexity (perplexity.c) ----------------------------------------------------------------- */

typedef struct gm_ppl_result {
    long n_tokens, n_bytes, n_words, n_windows;
    double nll;                  /* total negative log-likelihood, nats */
    double ppl, ppl_se;          /* per token */
    double bits_per_byte, bpb_se;
    double byte_ppl, word_ppl;
    long tokens_evaluated;
} gm_ppl_result;

/* Perplexity of a UTF-8 text: its tokens are scored in windows of `window` positions (<bos> + window - 1
 * tokens) that advance by `stride` tokens; each token is scored once, with the most context its window
 * gives (the first window_len tokens of the text with less). stride 0 = (window - 1) / 2. Standard errors
 * treat per-token losses as independent (an underestimate for correlated text). */
gm_status gm_eval_perplexity(gm_session *s, const gm_tokenizer *tok, int vocab, const char *text, size_t len, int window,
                             int stride, gm_eval_progress_fn progress, void *user, gm_ppl_result *out);

#endif
