/* AdamW over a trainable model's f32 parameters: bias-corrected moments, decoupled weight decay (not on
 * norm offsets or the embedding unless asked), global-norm gradient clipping, a linear-warmup then
 * cosine/linear-decay learning-rate schedule, and a step that refuses non-finite losses and gradients
 * (skips and says why) instead of poisoning the weights. */
#ifndef GM_TRAIN_ADAMW_H
#define GM_TRAIN_ADAMW_H

#include <stddef.h>

#include "train/model_train.h"

/* ---- learning-rate schedule ---------------------------------------------------------------------- */

typedef enum { GM_LR_CONSTANT, GM_LR_COSINE, GM_LR_LINEAR } gm_lr_decay;

typedef struct gm_lr_schedule {
    float lr;         /* peak */
    float lr_min;     /* floor the decay ends at */
    int warmup;       /* steps of linear warmup: step s < warmup gets lr · (s + 1) / warmup */
    int total;        /* steps in all: the decay runs from step warmup to step total, then stays at lr_min */
    gm_lr_decay decay;
} gm_lr_schedule;

/* The rate for 0-based step s. Decay progress p = (s − warmup) / (total − warmup) in [0, 1];
 * cosine: lr_min + (lr − lr_min) · ½(1 + cos πp); linear: lr − (lr − lr_min) · p. */
float gm_lr_at(const gm_lr_schedule *s, int step);

/* ---- optimizer ----------------------------------------------------------------------------------- */

typedef struct gm_adamw_params {
    float beta1, beta2, eps;
    float weight_decay; /* decoupled: w −= lr · wd · w before the Adam update (PyTorch AdamW) */
    float clip;         /* max global L2 norm of the gradient; 0 = no clipping */
    int decay_norms;    /* 1: weight decay on RMSNorm offsets too (default 0) */
    int decay_embed;    /* 1: weight decay on the (tied) embedding too (default 0) */
} gm_adamw_params;

/* β 0.9 / 0.95, ε 1e-8, weight decay 0.1, clip 1.0: the usual LLM pretraining values (llm.c's too). */
gm_adamw_params gm_adamw_params_default(void);

typedef struct gm_adamw gm_adamw;

/* Moments (zero) for every parameter of m, and which tensors take weight decay. */
gm_status gm_adamw_new(const gm_adamw_params *p, const gm_train_model *m, gm_adamw **out);
void gm_adamw_free(gm_adamw *o);
/* Updates taken so far (skipped steps do not count): the t of the bias corrections is this + 1. */
int gm_adamw_steps(const gm_adamw *o);
/* 1 if weight decay applies to tensor i of the model. */
int gm_adamw_decays(const gm_adamw *o, int tensor);
/* The first and second moments (n_params floats each, in the model's layout), for checkpoints. */
float *gm_adamw_m(gm_adamw *o);
float *gm_adamw_v(gm_adamw *o);
/* Restores the update count from a checkpoint (the t of the next bias correction is steps + 1). */
void gm_adamw_set_steps(gm_adamw *o, int steps);

enum {
    GM_STEP_TAKEN = 0,
    GM_STEP_SKIPPED_LOSS = 1, /* the loss was NaN or infinite */
    GM_STEP_SKIPPED_GRAD = 2, /* a gradient was NaN or infinite (the global norm is not finite) */
};

typedef struct gm_step_info {
    int result;        /* GM_STEP_* */
    double grad_norm;  /* global L2 norm of grad_scale · grads, before clipping */
    float clip_coef;   /* factor the gradient was scaled by (1 when not clipped) */
    float lr;
    char message[256]; /* why a step was skipped: names the first tensor with a non-finite gradient */
} gm_step_info;

/* ---- the pieces of a step, shared with the sharded optimizer of train/dist.c ----------------------- */

/* GM_ERR_ARG unless 0 <= beta < 1, eps > 0, weight decay >= 0 and clip >= 0. */
gm_status gm_adamw_params_check(const gm_adamw_params *p);
/* 1 if p puts weight decay on tensor t: 2-D projections always, RMSNorm offsets with decay_norms, the
 * embedding with decay_embed. */
int gm_adamw_tensor_decays(const gm_adamw_params *p, const gm_train_tensor *t);

/* Σ (scale · g[i])² over i < n in double, as partial sums over fixed chunks of GM_ADAMW_NORM_CHUNK elements
 * added in order (the same for any thread count). partial has room for gm_adamw_norm_chunks(n) doubles. */
#define GM_ADAMW_NORM_CHUNK ((size_t)1 << 16)
size_t gm_adamw_norm_chunks(size_t n);
double gm_adamw_sumsq(const float *g, size_t n, float scale, double *partial, gm_pool *pool);

/* The step's decisions, so every rank of a sharded run takes them alike. `updates` is the count so far.
 * gm_adamw_skip_loss / _grad fill info (result, lr, grad_norm, message) for a skipped step and return the
 * result; `where` names the first tensor with a non-finite gradient. gm_adamw_clip_coef is
 * clip_grad_norm_'s factor for a global norm: clip / (norm + 1e-6) when that is below 1, else 1. */
int gm_adamw_skip_loss(gm_step_info *info, int updates, float lr, float loss);
int gm_adamw_skip_grad(gm_step_info *info, int updates, float lr, double norm, const char *where, float loss);
float gm_adamw_clip_coef(const gm_adamw_params *p, double norm);

/* Elements [begin, end) of a model's flat parameter layout; w, m, v and g point at element `begin`. */
typedef struct gm_adamw_span {
    const gm_train_tensor *tensors; /* the layout, for the tensor each element belongs to */
    int n_tensors;
    const unsigned char *decay;     /* per tensor: gm_adamw_tensor_decays */
    size_t begin, end;
    float *w, *m, *v;
    const float *g;
} gm_adamw_span;

/* The AdamW update of a span with PyTorch's arithmetic: gradient scale · g, update number t (1-based, for the
 * bias corrections). Element-wise, so bitwise the same however the elements are split into spans or
 * threads. */
void gm_adamw_update(const gm_adamw_params *p, const gm_adamw_span *s, float lr, float scale, int t, gm_pool *pool);

/* One update of m's parameters from grad_scale · m->grads (grad_scale = 1 / micro-batches for gradient
 * accumulation of mean losses). loss is the step's loss (NaN/Inf → skipped; pass 0 if unknown). A
 * skipped step changes nothing (parameters, moments, step count); the caller reports info.message and
 * zeroes the gradients as after any step. Returns info.result. */
int gm_adamw_step(gm_adamw *o, gm_train_model *m, float lr, float grad_scale, float loss, gm_step_info *info);

#endif
