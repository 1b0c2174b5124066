/* Distributed training over MPI: the ranks form a data × model mesh (rank r: model rank r % tp, data
 * rank r / tp). Data ranks each take a slice of the global batch and average their gradients; with ZeRO
 * the AdamW moments and master weights are sharded over data ranks (reduce-scatter the gradients, each
 * rank updates its slice, all-gather the parameters); model ranks (tp > 1) split every layer's attention
 * heads and FFN units. A build without MPI, or a run not under mpirun, is one rank and every call here
 * reduces to the single-process trainer (gm_train_model_new + gm_adamw).
 *
 * Conventions: the "full layout" is the parameter layout of gm_train_model_new on the unsharded config
 * (tensors in HF order, see train/model_train.h), which is what checkpoints store. */
#ifndef GM_TRAIN_DIST_H
#define GM_TRAIN_DIST_H

#include <stddef.h>

#include "gemma.h"
#include "train/adamw.h"
#include "train/model_train.h"

typedef struct gm_dist gm_dist;

/* 1 if this build has MPI. */
int gm_dist_have_mpi(void);

/* Starts MPI when the build has it (MPI_Init_thread, FUNNELED: only the calling thread talks MPI) and
 * arranges the mesh; tp must divide the world size. Without MPI tp must be 1. */
gm_status gm_dist_init(int *argc, char ***argv, int tp, gm_dist **out);
/* Ends MPI (MPI_Finalize) and frees d; NULL is fine. */
void gm_dist_finalize(gm_dist *d);
/* Aborts every rank (MPI_Abort) with exit code rc: for errors one rank sees and the others would wait on. */
void gm_dist_abort(gm_dist *d, int rc);

int gm_dist_rank(const gm_dist *d); /* world rank; rank 0 prints, writes logs and checkpoints */
int gm_dist_world(const gm_dist *d);
int gm_dist_dp_rank(const gm_dist *d);
int gm_dist_dp_size(const gm_dist *d);
int gm_dist_tp_rank(const gm_dist *d);
int gm_dist_tp_size(const gm_dist *d);

/* ---- model --------------------------------------------------------------------------------------- */

/* A trainable model holding this rank's shard (tp > 1: its heads of q/k/v/o and its units of
 * gate/up/down in every layer; MQA's single KV head, norms and the embedding replicated), all zero.
 * Same arguments as gm_train_model_new with the unsharded config; GM_ERR_ARG naming the sizes when tp
 * does not divide the heads (or the KV heads, unless there is one) or the FFN width. */
gm_status gm_dist_model_new(gm_dist *d, const gm_config *c, const gm_train_opts *o, gm_train_model **out);
/* gm_train_model_from_model for this rank's shard (the checkpoint's tensors converted and cut). */
gm_status gm_dist_model_from_model(gm_dist *d, const gm_model *src, const gm_train_opts *o, gm_train_model **out);
/* Number of floats in the full layout of m's config (m->n_full_params; m->full_tensors lists its tensors). */
size_t gm_dist_full_params(const gm_dist *d, const gm_train_model *m);
/* Sets this rank's shard from full-layout parameters (every rank passes the same full buffer). */
gm_status gm_dist_model_scatter(gm_dist *d, gm_train_model *m, const float *full);
/* Assembles the full-layout parameters on every rank from the shards. */
gm_status gm_dist_model_gather(gm_dist *d, const gm_train_model *m, float *full);

/* ---- optimizer ----------------------------------------------------------------------------------- */

typedef struct gm_dist_opt gm_dist_opt;

/* AdamW over the mesh. zero = 1 shards moments and master weights over the data ranks (ZeRO); zero = 0
 * keeps them whole on every rank (plain all-reduce of the gradients). m must outlive the optimizer (export
 * and import use its layout). */
gm_status gm_dist_opt_new(gm_dist *d, const gm_adamw_params *p, gm_train_model *m, int zero, gm_dist_opt **out);
void gm_dist_opt_free(gm_dist_opt *o);
/* One update from m->grads, which on each data rank hold the sum over its micro-batches of the gradients
 * of their mean losses: the step averages over data ranks itself, so grad_scale is 1 / micro-batches (as
 * for gm_adamw_step). loss is the global mean loss of the step (the same on every rank). Clipping uses the
 * global norm over the whole model. Every rank gets the same info and result; afterwards every rank's m
 * holds the updated parameters of its shard. Returns info->result (GM_STEP_*). The caller zeroes grads. */
int gm_dist_opt_step(gm_dist_opt *o, gm_train_model *m, float lr, float grad_scale, float loss, gm_step_info *info);
/* Bytes of optimizer state (moments and any master copy) this rank holds: halves with ZeRO on 2 data ranks.
 * The moments cover whole 64-float blocks (GM_TRAIN_PAD), so one slice may hold up to 63 floats of padding. */
size_t gm_dist_opt_state_bytes(const gm_dist_opt *o);
/* Updates taken so far. */
int gm_dist_opt_steps(const gm_dist_opt *o);
/* The moments in the full layout, assembled on every rank (for checkpoints), and the update count. */
gm_status gm_dist_opt_export(gm_dist_opt *o, float *m_full, float *v_full, int *steps);
/* Restores the moments from full-layout buffers (every rank passes the same) and the update count. */
gm_status gm_dist_opt_import(gm_dist_opt *o, const float *m_full, const float *v_full, int steps);

/* ---- small collectives --------------------------------------------------------------------------- */

/* Sum of x over the data ranks (model ranks of one data rank pass the same value). */
double gm_dist_sum_dp(gm_dist *d, double x);
/* Largest status code over all ranks, so every rank takes the same error path. */
int gm_dist_max_int(gm_dist *d, int x);
/* Copies n bytes from rank 0 to every rank. */
void gm_dist_bcast(gm_dist *d, void *buf, size_t n);
void gm_dist_barrier(gm_dist *d);

#endif
