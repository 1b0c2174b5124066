/* The reward model: a Gemma backbone (train/model_train.h) with a scalar head on the final normed hidden
 * state of each sequence's last token, r = v · h_last, trained on preference pairs with the Bradley–Terry
 * loss −log σ(r_chosen − r_rejected). Pairs come from {"prompt", "chosen", "rejected"} JSONL or Anthropic
 * HH dialogues, rendered as Gemma chat turns. Saved in Hugging Face's GemmaForSequenceClassification
 * layout: the backbone's model.* tensors plus the head as "score.weight" [1, d] in model.safetensors. */
#ifndef GM_TRAIN_REWARD_H
#define GM_TRAIN_REWARD_H

#include <stddef.h>
#include <stdint.h>

#include "gemma.h"
#include "train/adamw.h"
#include "train/dist.h"
#include "train/model_train.h"
#include "train/sft.h"

/* The head's tensor name, as transformers' GemmaForSequenceClassification (score = Linear(d, 1, bias=False)). */
#define GM_REWARD_HEAD "score.weight"

/* ---- preference pairs ---------------------------------------------------------------------------- */

/* Each side is a whole tokenized conversation, <bos> through the final model turn's <end_of_turn> (the
 * token whose hidden state is scored; no trailing "\n"). */
typedef struct gm_pref_pair {
    int32_t *chosen, *rejected;
    int n_chosen, n_rejected;
    long line;
} gm_pref_pair;

typedef struct gm_pref_data {
    gm_pref_pair *p;
    int n, cap;
    long n_records, n_bad, n_too_long;
} gm_pref_data;

/* Read pairs (JSONL or a JSON array; record shapes of gm_sft_pref_conv). A record is bad (reported
 * "FILE:LINE: what", skipped or fatal per o->on_bad) when either side is malformed or the two sides are
 * the same conversation. A pair with a side longer than o->max_len tokens is left out and counted in
 * n_too_long (scoring reads the last token, so cutting would score a different text). */
gm_status gm_pref_load(const char *path, const gm_tokenizer *tok, const gm_sft_load_opts *o, gm_pref_data *out);
/* Append a pair (the ids are copied). */
gm_status gm_pref_push(gm_pref_data *d, const int32_t *chosen, int n_chosen, const int32_t *rejected, int n_rejected,
                       long line);
void gm_pref_data_free(gm_pref_data *d);
/* Move a held-out fraction into *eval (as gm_sft_split). */
gm_status gm_pref_split(gm_pref_data *d, double frac, uint64_t seed, gm_pref_data *eval);

/* ---- the model ----------------------------------------------------------------------------------- */

typedef struct gm_reward_model {
    gm_train_model *m;      /* the backbone (owned) */
    int d;                  /* hidden size */
    float *head, *d_head;   /* score.weight [d] and the gradient accumulated into it */
    float *head_m, *head_v; /* AdamW moments of the head */
    int head_steps;
    float *dh;              /* scratch: d_hidden for max_batch × max_seq rows */
} gm_reward_model;

/* A reward model around backbone m (ownership passes to it, also on failure); the head N(0, std²) from
 * seed, as transformers initializes Linear layers (initializer_range). */
gm_status gm_reward_new(gm_train_model *m, uint64_t seed, float std, gm_reward_model **out);
void gm_reward_free(gm_reward_model *rm);

/* Rows of a batch: rows 0..P-1 the chosen sides of pairs[0..P), rows P..2P-1 the rejected ones, padded with
 * pad to T; lens[row] = the side's length (<= T: longer sides are the caller's error, see gm_pref_load). */
void gm_reward_batch(const gm_pref_pair *const *pairs, int P, int T, int32_t pad, int32_t *inputs, int *lens);
/* r[b] = head · h(b, lens[b] − 1) for rows b < B (1 <= lens[b] <= T). */
gm_status gm_reward_score(gm_reward_model *rm, const int32_t *inputs, const int *lens, int B, int T, float *r);
/* The mean Bradley–Terry loss over the P pairs of a gm_reward_batch (2P rows): loss = mean softplus(r_r − r_c);
 * grads of the backbone and d_head += its gradient. r (2P floats) and *correct (pairs with r_c > r_r) are
 * optional outputs. */
gm_status gm_reward_forward_backward(gm_reward_model *rm, const int32_t *inputs, const int *lens, int P, int T,
                                     float *loss, float *r, int *correct);
/* Loss and pairwise accuracy over pairs (no gradient), in batches of up to the backbone's max_batch / 2
 * pairs. Pairs tied in reward count as half right. */
gm_status gm_reward_eval(gm_reward_model *rm, const gm_pref_pair *pairs, int n, int32_t pad, double *loss,
                         double *accuracy);

/* AdamW on the head with the backbone's parameters p (decoupled decay as on a projection matrix) from
 * grad_scale · d_head, clipped on its own to p->clip; d_head is summed over the data ranks of dist first
 * (dist may be NULL). Zeroes d_head. Returns the head's pre-clip gradient norm. */
double gm_reward_head_step(gm_reward_model *rm, gm_dist *dist, const gm_adamw_params *p, float lr, float grad_scale);

/* Write dir (it is replaced atomically if it exists): config.json (GemmaForSequenceClassification,
 * num_labels 1), model.safetensors (F32: params in the full layout — NULL = the backbone's own, for a
 * single process — plus score.weight), and tokenizer (a file to copy, or NULL). */
gm_status gm_reward_save(const gm_reward_model *rm, const float *params, const char *dir, const char *tokenizer,
                         const char *name);
/* Load a directory gm_reward_save wrote (or any single-file HF GemmaForSequenceClassification with one
 * label; F32, BF16 or F16) as a trainable reward model for batches up to o; dist NULL = one process. A
 * directory without score.weight (a causal LM) is refused: start a reward model from one with
 * gm_train_model_from_model + gm_reward_new. */
gm_status gm_reward_load(const char *dir, gm_dist *dist, const gm_train_opts *o, gm_reward_model **out);

#endif
