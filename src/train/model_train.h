/* A trainable Gemma (Gemma 1 so far): f32 master weights in one contiguous buffer with named views in
 * the Hugging Face tensor names (so checkpoints can be written by name), a gradient buffer of the same
 * layout, and activations for up to max_batch × max_seq tokens allocated once. Forward + backward runs
 * the ops of train/ops.h; gradients accumulate across calls until gm_train_zero_grad. */
#ifndef GM_TRAIN_MODEL_TRAIN_H
#define GM_TRAIN_MODEL_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "base/threads.h"
#include "gemma.h"

/* Gemma's initializer_range (HF GemmaConfig default). */
#define GM_TRAIN_INIT_STD 0.02f
/* params and grads are allocated to a multiple of this many floats, the tail past n_params always zero, so
 * train/dist.c can move them through MPI in blocks (whose counts fit an int for any model size). */
#define GM_TRAIN_PAD 64

typedef enum {
    GM_TT_EMBED, GM_TT_ATTN_NORM, GM_TT_Q, GM_TT_K, GM_TT_V, GM_TT_O, GM_TT_FFN_NORM, GM_TT_GATE, GM_TT_UP,
    GM_TT_DOWN, GM_TT_FINAL_NORM
} gm_train_kind;

/* One parameter tensor: its HF name, PyTorch shape ([out, in] or [n]) and place in params / grads. */
typedef struct gm_train_tensor {
    char name[96];
    gm_train_kind kind;
    int layer; /* -1 for the embedding and the final norm */
    int ndim;
    int64_t shape[2];
    size_t offset, numel; /* in floats */
} gm_train_tensor;

/* Views of one layer's tensors (into params, or into grads with the same offsets). */
typedef struct gm_train_layer {
    float *attn_norm, *wq, *wk, *wv, *wo, *ffn_norm, *wgate, *wup, *wdown;
} gm_train_layer;

typedef struct gm_train_opts {
    int max_batch; /* sequences per call, at most */
    int max_seq;   /* tokens per sequence (T), at most; <= the config's max_pos */
    int n_threads;
    /* 1: keep only the layer inputs, q/k/v, attention outputs and FFN pre-activations; the normed inputs
     * and the GeGLU output are recomputed in the backward (saves 2·d + ffn floats per token and layer,
     * about a third of the activations; ~10% more time). Gradients are bitwise the same either way. */
    int recompute;
} gm_train_opts;

typedef struct gm_train_acts gm_train_acts; /* private to model_train.c */

/* Sums buf[0..n) over the model-parallel ranks in place, giving every one of them the same values (the
 * hook train/dist.c installs, so this file needs no MPI). */
typedef void (*gm_train_sum_fn)(void *ctx, float *buf, size_t n);

typedef struct gm_train_model {
    gm_config cfg;
    gm_train_opts opt;
    size_t n_params;
    float *params, *grads;       /* n_params each, layout of tensors[] */
    gm_train_tensor *tensors;    /* HF order: embedding, per layer, final norm */
    int n_tensors;
    float *embed, *final_norm;   /* views into params */
    float *d_embed, *d_final_norm; /* the same into grads */
    gm_train_layer *layers, *d_layers;
    gm_pool *pool;
    gm_train_acts *acts;
    int last_targets;            /* targets counted by the last call (the loss is their mean) */
    /* Model parallelism (train/dist.h): this model is shard tp_rank of tp_size. It holds `heads` query
     * heads, `kv_heads` KV heads and `ffn` FFN units of every layer (the config's own counts when tp_size
     * is 1); tensors[] then has the shard's shapes, while full_tensors[] is the layout of the unsharded
     * config (the same array when tp_size is 1), which checkpoints use. tp_sum (NULL when tp_size is 1)
     * runs after the row-parallel o/down projections and on the column-parallel q/k/v and gate/up input
     * gradients. */
    int tp_rank, tp_size;
    int heads, kv_heads, ffn;
    gm_train_tensor *full_tensors;
    int n_full_tensors;
    size_t n_full_params;
    gm_train_sum_fn tp_sum;
    void *tp_ctx;
} gm_train_model;

gm_train_opts gm_train_opts_default(int max_batch, int max_seq, int n_threads);

/* A model with all parameters zero. Gemma 1 configs only (no soft-caps, windows, sandwich or QK norms):
 * GM_ERR_UNSUPPORTED otherwise. */
gm_status gm_train_model_new(const gm_config *c, const gm_train_opts *o, gm_train_model **out);
/* Gemma's init (HF GemmaPreTrainedModel._init_weights): matrices and the embedding N(0, std²), the
 * padding row (cfg.pad_id) of the embedding zero, norm offsets zero (RMSNorm scales by 1 + w = 1).
 * Deterministic in seed (splitmix64 + Box–Muller), independent of the thread count; a shard gets its part
 * of the unsharded model's values. */
void gm_train_init(gm_train_model *m, uint64_t seed, float std);
/* A trainable copy of a loaded model (any stored dtype converted to f32), for fine-tuning. */
gm_status gm_train_model_from_model(const gm_model *src, const gm_train_opts *o, gm_train_model **out);
void gm_train_model_free(gm_train_model *m);

/* ---- model parallelism (train/dist.h builds on these) ----------------------------------------------- */

/* Shard tp_rank of tp_size of c: query heads H/tp, KV heads K/tp (or MQA's single KV head, replicated),
 * FFN units ffn/tp of every layer; the embedding and the norms whole. gm_train_model_new is shard 0 of 1.
 * GM_ERR_ARG naming the sizes when tp_size does not divide them. */
gm_status gm_train_model_new_shard(const gm_config *c, const gm_train_opts *o, int tp_rank, int tp_size,
                                   gm_train_model **out);
/* gm_train_model_from_model for a shard: the rows it needs converted one at a time, then cut. */
gm_status gm_train_model_from_model_shard(const gm_model *src, const gm_train_opts *o, int tp_rank, int tp_size,
                                          gm_train_model **out);
/* Tensor table of shard tp_rank of tp_size of c (tp_size 1: the full layout). tensors has room for
 * 2 + 9·n_layers entries. */
gm_status gm_train_layout(const gm_config *c, int tp_rank, int tp_size, gm_train_tensor *tensors, int *n_tensors,
                          size_t *n_params);
/* Copies tensor i of m between the full layout and m's shard: to_shard 1 copies the shard's part of
 * full (a buffer in m's full layout, full_tensors[i].offset) into shard (m's layout, tensors[i].offset);
 * 0 copies it back. Row-parallel tensors (q/k/v, gate/up) own a block of rows, column-parallel ones
 * (o, down) a block of columns, replicated ones everything. */
void gm_train_shard_copy(const gm_train_model *m, int i, float *full, float *shard, int to_shard);

/* The tensor of that HF name, or NULL. */
const gm_train_tensor *gm_train_find(const gm_train_model *m, const char *name);
void gm_train_zero_grad(gm_train_model *m);

/* Next-token loss on tokens [B][T+1] (inputs tokens[b][0..T-1], targets tokens[b][1..T]): the mean
 * cross-entropy, and grads += its gradient. B <= max_batch, T <= max_seq. */
gm_status gm_train_forward_backward(gm_train_model *m, const int32_t *tokens, int B, int T, float *loss);
/* The same with separate inputs [B][T] and targets [B][T]; a target of -1 is not counted (SFT masks).
 * With no counted target the loss is 0 and grads are unchanged. */
gm_status gm_train_forward_backward_masked(gm_train_model *m, const int32_t *inputs, const int32_t *targets, int B,
                                           int T, float *loss);
/* Loss only (no gradient), for evaluation and finite differences. */
gm_status gm_train_loss(gm_train_model *m, const int32_t *tokens, int B, int T, float *loss);
gm_status gm_train_loss_masked(gm_train_model *m, const int32_t *inputs, const int32_t *targets, int B, int T,
                               float *loss);

/* Packed rows (SFT packing): as the masked calls, with pos [B·T] the position of each token within its
 * segment (an example): a segment starts where pos == 0 and counts up by one, so pos[n] == 0 or
 * pos[n] == pos[n−1] + 1 within a row (GM_ERR_ARG naming the place otherwise). RoPE uses pos (positions restart
 * at each example, as HF's position_ids), and attention stays inside each segment (train/ops.h), so every
 * example's per-token losses are those it has alone in a row. pos NULL, or 0..T−1 in every row, is the masked
 * call bitwise. The positions are per batch, the same on every model-parallel rank. */
gm_status gm_train_forward_backward_packed(gm_train_model *m, const int32_t *inputs, const int32_t *targets,
                                           const int32_t *pos, int B, int T, float *loss);
gm_status gm_train_loss_packed(gm_train_model *m, const int32_t *inputs, const int32_t *targets, const int32_t *pos,
                               int B, int T, float *loss);

/* ---- hooks for other heads and losses (reward model, RLHF) ----------------------------------------- */

/* Forward only, up to the final normed hidden state: *hidden = [B·T][d] (row b·T + t), valid until the next
 * call on m. Tokens are checked as inputs. */
gm_status gm_train_hidden(gm_train_model *m, const int32_t *inputs, int B, int T, const float **hidden);
/* grads += the gradient of a loss whose gradient with respect to that hidden state is d_hidden [B·T][d].
 * Must follow gm_train_hidden on the same inputs (it uses the activations that call saved). */
gm_status gm_train_hidden_backward(gm_train_model *m, const int32_t *inputs, int B, int T, const float *d_hidden);
/* Per-token log-probabilities logp[n] = log softmax(logits_n)[targets[n]] (0 where the target is -1). */
gm_status gm_train_logprobs(gm_train_model *m, const int32_t *inputs, const int32_t *targets, int B, int T,
                            float *logp);
/* gm_train_logprobs on packed rows (pos as for gm_train_forward_backward_packed). */
gm_status gm_train_logprobs_packed(gm_train_model *m, const int32_t *inputs, const int32_t *targets,
                                   const int32_t *pos, int B, int T, float *logp);
/* loss = Σ_n weights[n] · (−log p(targets[n])) over counted targets (a sum, not a mean: the caller folds any
 * normalization into the weights), grads += its gradient; logp[n] as gm_train_logprobs when not NULL.
 * REINFORCE is this with weights = +advantage per response token (minimizing it raises log p where A > 0). */
gm_status gm_train_forward_backward_weighted(gm_train_model *m, const int32_t *inputs, const int32_t *targets,
                                             const float *weights, int B, int T, float *logp, float *loss);

#endif
