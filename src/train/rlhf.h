/* RLHF with REINFORCE: for each prompt the policy samples K responses, a reward function (the reward model
 * of train/reward.h, or any programmatic one) scores them, the per-token KL to a frozen reference is folded
 * into the reward, and the policy takes a REINFORCE step with the leave-one-out baseline (RLOO):
 *
 *   kl_k  = Σ_t [log π(y_kt) − log π_ref(y_kt)]            (sampled-token estimate, summed over the response)
 *   S_k   = R_k − β · kl_k − λ · |y_k|                    (λ: optional length penalty per response token)
 *   A_k   = S_k − mean_{j≠k} S_j                          (leave-one-out baseline, K >= 2)
 *   loss  = −1/(P·K) Σ_prompts Σ_k A_k · Σ_t log π(y_kt)  (A_k held constant)
 *
 * The KL is part of the reward, not a separate loss term: its gradient then enters through the score
 * function like the reward's, and E[∇loss] = −∇(E[R] − β·KL(π‖π_ref) − λ·E|y|) per prompt. The response is
 * every sampled token up to and including the stop token (<end_of_turn> or <eos>), or max_new tokens. */
#ifndef GM_TRAIN_RLHF_H
#define GM_TRAIN_RLHF_H

#include <stdint.h>

#include "gemma.h"
#include "train/dist.h"
#include "train/model_train.h"
#include "train/sft.h"

/* ---- prompts -------------------------------------------------------------------------------------- */

typedef struct gm_rlhf_prompts {
    int32_t **ids;   /* generation prompts: <bos> ... <start_of_turn>model\n */
    int *n;
    long *line;
    char **text;     /* the last user message, for side-by-side files */
    int count, cap;
    long n_records, n_bad, n_too_long;
} gm_rlhf_prompts;

/* Prompts from a JSONL file or JSON array (record shapes of gm_sft_prompt_conv: {"prompt": ...}, messages,
 * Alpaca, HH dialogues cut before their last answer). Bad records are handled per o->on_bad; prompts longer
 * than o->max_len tokens are left out and counted. */
gm_status gm_rlhf_load_prompts(const char *path, const gm_tokenizer *tok, const gm_sft_load_opts *o,
                               gm_rlhf_prompts *out);
void gm_rlhf_prompts_free(gm_rlhf_prompts *p);

/* ---- REINFORCE -------------------------------------------------------------------------------------- */

typedef struct gm_rlhf_opts {
    int K;             /* samples per prompt (>= 2) */
    int max_new;       /* response tokens at most */
    float temperature; /* sampling temperature; the loss takes the samples as drawn from π itself, so anything
                          but 1 makes the estimate off-policy (biased) */
    float beta;        /* KL coefficient β >= 0 */
    float len_penalty; /* λ >= 0 per response token */
    int32_t stop[2];   /* a response ends after either token (-1: unused) */
    int32_t pad;       /* filler after a response's end */
    int no_cache;      /* 1: sample with full forwards of the trainable model instead of the KV-cached inference
                          engine over the same weights (always so under model parallelism) */
} gm_rlhf_opts;

gm_rlhf_opts gm_rlhf_opts_default(void); /* K 4, max_new 64, temperature 1, β 0.05, λ 0, no stop, pad 0 */

/* One prompt's K samples. Row k of seq is prompt + response + pad (stride cap). */
typedef struct gm_rlhf_group {
    int K, cap;            /* rows, and tokens per row at most (prompt + max_new) */
    int n_prompt;
    int32_t *seq;          /* [K][cap] */
    int *len;              /* [K] prompt + response tokens */
    float *logp, *logp_ref;/* [K][cap]: at t, log-prob of seq[t+1] (response targets only, else 0) */
    float *reward;         /* [K] R_k, set by the caller (or gm_rlhf_step) before gm_rlhf_advantages */
    float *kl, *score, *adv; /* [K] */
    double entropy_sum;    /* Σ over sampled positions of the sampling distribution's entropy (nats) */
    long entropy_n;
    /* scratch for the packed batches [K][T] the model takes */
    int32_t *in, *tg;
    float *w;
} gm_rlhf_group;

gm_status gm_rlhf_group_new(gm_rlhf_group *g, int K, int cap);
void gm_rlhf_group_free(gm_rlhf_group *g);
/* Fill a group with given responses (a fixed batch, for tests and references): row k = prompt + resp[k]. */
gm_status gm_rlhf_group_set(gm_rlhf_group *g, const int32_t *prompt, int n_prompt, const int32_t *const *resp,
                            const int *n_resp);
/* Response k: seq + k·cap + n_prompt, len[k] − n_prompt tokens. */
static inline int gm_rlhf_resp_len(const gm_rlhf_group *g, int k) { return g->len[k] - g->n_prompt; }

/* K responses to prompt from the policy: logits / temperature, one categorical draw per row and position from
 * a stream of its own per row drawn from *rng; rows stop at a stop token or after max_new. The logits
 * come from the inference engine's KV-cached decode over the policy's own f32 buffers, or (no_cache, or a
 * model-parallel shard) from full forwards of the trainable model, logits = h_last · Eᵀ; the two agree to
 * float rounding. */
gm_status gm_rlhf_sample(gm_train_model *policy, const int32_t *prompt, int n_prompt, const gm_rlhf_opts *o,
                         uint64_t *rng, gm_rlhf_group *g);
/* The group packed for the trainable model: inputs [K][T] and targets [K][T] (T = longest row − 1; targets
 * −1 outside the responses). Returns T. */
int gm_rlhf_pack(gm_rlhf_group *g, int32_t pad);
/* From g->reward: log π and log π_ref of every response token, kl, score and the leave-one-out advantage. */
gm_status gm_rlhf_advantages(gm_train_model *policy, gm_train_model *ref, const gm_rlhf_opts *o, gm_rlhf_group *g);
/* grads += ∇ of  −scale · Σ_k adv_k Σ_t log π(y_kt)  (gm_train_forward_backward_weighted with weight
 * scale·adv_k on every response token); *loss = that value. */
gm_status gm_rlhf_backward(gm_train_model *policy, gm_rlhf_group *g, float scale, float *loss);

/* Rewards of a group's K rows: seq [K][T] packed rows (prompt + response, padded), len [K], the prompt's
 * length; rewards[k] out. */
typedef gm_status (*gm_rlhf_reward_fn)(void *ctx, const int32_t *seq, const int *len, int K, int T, int n_prompt,
                                       float *rewards);

typedef struct gm_rlhf_stats {
    double reward, reward_std; /* raw R over all samples of the step */
    double kl;                 /* mean sequence KL (nats) */
    double entropy;            /* mean per-token entropy of the sampling distribution (nats) */
    double length;             /* mean response tokens */
    double score;              /* mean S (what the step maximizes) */
    double loss;
    double grad_norm;
    int result;                /* GM_STEP_* of the optimizer */
    int samples;               /* P · K on this rank */
    double seconds, sample_seconds;
} gm_rlhf_stats;

/* One RLHF step over P prompts: sample (prompt p from the random stream seeds[p], so a prompt's samples do
 * not depend on which rank draws them), reward, advantages, backward (scale 1/(P·K)), and one optimizer step
 * of the policy (opt from gm_dist_opt_new over policy; lr this step's rate). Gradients are zeroed after. */
gm_status gm_rlhf_step(gm_train_model *policy, gm_train_model *ref, gm_dist *dist, gm_dist_opt *opt,
                       const gm_rlhf_opts *o, const int32_t *const *prompts, const int *n_prompts, int P,
                       gm_rlhf_reward_fn reward, void *reward_ctx, float lr, const uint64_t *seeds, gm_rlhf_group *g,
                       gm_rlhf_stats *s);
/* The stream for prompt number i (global, over all ranks) of step `step` of a run seeded `seed`. */
uint64_t gm_rlhf_seed(uint64_t seed, int step, long long i);

#endif
