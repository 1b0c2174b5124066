/* The pretraining loop as a library: a model (fresh from a config, or from a checkpoint), AdamW over
 * the MPI mesh of train/dist.h, micro-batches from the token-shard loader, evaluation on held-out data,
 * a progress line per step, a CSV log and an SVG loss curve, and atomic checkpoints with exact resume.
 * `gemma train` is a thin wrapper; other loops (SFT, reward models) reuse the pieces: gm_trainer_step
 * with their own micro-batch function, gm_trainer_eval, gm_trainer_save, gm_trainer_log.
 *
 * Every rank runs the same calls in the same order (each one may hold collectives); only rank 0
 * prints and writes files. A step is a pure function of (parameters, moments, update count, step), and
 * a checkpoint holds all of them, so a resumed run prints bitwise the losses of an uninterrupted one. */
#ifndef GM_TRAIN_TRAINER_H
#define GM_TRAIN_TRAINER_H

#include <stdint.h>

#include "gemma.h"
#include "tensor/dtype.h"
#include "train/adamw.h"
#include "train/dist.h"
#include "train/model_train.h"

/* Forward + backward of micro-batch `micro` of 0-based step `step`: grads += the gradient of its mean
 * loss, *loss = that loss. Same calls on every rank of a data rank's model group. */
typedef gm_status (*gm_trainer_micro_fn)(void *ctx, gm_train_model *m, int step, int micro, float *loss);
/* This data rank's share of an evaluation: the sum of per-sequence mean losses and their count. */
typedef gm_status (*gm_trainer_eval_fn)(void *ctx, gm_train_model *m, double *loss_sum, double *count);

typedef struct gm_trainer_opts {
    /* the model: one of a config.json path, a preset name, or a model to continue from (HF dir or GGUF);
     * with resume, none is needed (the checkpoint has its config) and any given must agree with it */
    const char *config, *preset, *init;
    const char *data, *mix;  /* token shards (train/loader.h); unused when micro_fn is set */
    int seq, batch, accum;   /* tokens per sequence, sequences per micro-batch per data rank, micro-batches */
    int steps;               /* total optimizer steps of the run (the schedule's length) */
    float lr, lr_min;
    int warmup;              /* -1: min(100, steps / 10) */
    gm_lr_decay decay;
    gm_adamw_params adam;    /* betas, eps, weight decay, clip */
    uint64_t seed;           /* init and data order */
    int eval_every;          /* steps between evaluations (0: only at the end); also at every save */
    int eval_batches;        /* micro-batches of held-out sequences per data rank per evaluation */
    int save_every;          /* steps between checkpoints (0: only at the end) */
    int keep;                /* checkpoints kept (0: all) */
    const char *out;         /* output directory: checkpoints, train_log.csv, loss.svg */
    const char *resume;      /* NULL: a fresh run (refused if out holds checkpoints); "": out/latest; else a
                                checkpoint directory or an output directory */
    int threads, recompute, tp, zero;
    const char *tokenizer;   /* copied into checkpoints; NULL: from init's directory or the data's meta.json */
    int max_skips;           /* consecutive skipped (non-finite) steps before the run stops with an error */
    gm_dtype save_dtype;     /* model.safetensors: GM_DT_F32 (default) or GM_DT_BF16 */
    int quiet;               /* 1: no per-step lines (errors and the banner still print) */
    /* a loop with its own batches sets these (the loader is then not opened) */
    gm_trainer_micro_fn micro_fn;
    gm_trainer_eval_fn eval_fn;
    void *fn_ctx;
} gm_trainer_opts;

gm_trainer_opts gm_trainer_opts_default(void);

typedef struct gm_trainer gm_trainer;

/* Everything for a run: the model (scattered over the ranks), the optimizer, the loader, and on resume
 * the checkpoint's parameters, moments and step (the checkpoint is verified first and refused whole if
 * anything is wrong). Prints the startup banner on rank 0. Collective. */
gm_status gm_trainer_new(gm_dist *d, const gm_trainer_opts *o, gm_trainer **out);
void gm_trainer_free(gm_trainer *t);

/* What one step did. */
typedef struct gm_trainer_stats {
    int step;           /* 1-based: the step just taken */
    double loss;        /* global mean loss (NaN when not finite) */
    float lr;
    double grad_norm;   /* pre-clip */
    int result;         /* GM_STEP_* */
    int skips;          /* consecutive skipped steps so far (0 after a taken step) */
    double seconds;     /* wall time of the step */
    double tokens_per_s;
    double val_loss;    /* NaN unless gm_trainer_eval ran after this step */
    char message[256];  /* why a step was skipped */
} gm_trainer_stats;

/* One optimizer step: accum micro-batches (loader or micro_fn), the global loss, AdamW. A skipped step
 * (non-finite loss or gradient) is reported in s; the max_skips-th in a row is an error. Collective. */
gm_status gm_trainer_step(gm_trainer *t, gm_trainer_stats *s);
/* The optimizer half of a step, for loops that run their own micro-batches: m's grads hold the sum of
 * `micro` micro-batches' gradients and local_loss_sum the sum of their losses on this data rank. */
gm_status gm_trainer_apply(gm_trainer *t, double local_loss_sum, int micro, gm_trainer_stats *s);
/* Mean loss on the held-out sequences (NaN when there are none). Collective. */
gm_status gm_trainer_eval(gm_trainer *t, double *val_loss);
/* Write OUT/checkpoint-STEP, point OUT/latest at it, prune to keep. Collective. */
gm_status gm_trainer_save(gm_trainer *t);
/* The progress line (stderr) and the CSV row of a step, on rank 0. */
gm_status gm_trainer_log(gm_trainer *t, const gm_trainer_stats *s);
/* Redraw OUT/loss.svg from the logged steps (rank 0). */
gm_status gm_trainer_plot(gm_trainer *t);
/* Steps completed (the checkpoint's step after a resume). */
int gm_trainer_steps_done(const gm_trainer *t);
gm_train_model *gm_trainer_model(gm_trainer *t);

/* Steps until o->steps: step, evaluate and save on schedule, log. Collective. */
gm_status gm_trainer_run(gm_trainer *t);

#endif
