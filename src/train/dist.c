/* The distributed-training layer (train/dist.h). This file is the single-process path: one rank, the
 * whole model, the plain AdamW of train/adamw.c; the MPI mesh builds on the same calls. */
#include "train/dist.h"

#include <stdlib.h>
#include <string.h>

#include "base/error.h"

struct gm_dist {
    int rank, world, tp;
};

struct gm_dist_opt {
    gm_dist *d;
    gm_adamw *adam;
    size_t n;
};

int gm_dist_have_mpi(void) { return 0; }

gm_status gm_dist_init(int *argc, char ***argv, int tp, gm_dist **out) {
    (void)argc, (void)argv;
    *out = NULL;
    if (tp != 1) return gm_fail(GM_ERR_UNSUPPORTED, "--tp %d needs a build with MPI run under mpirun", tp);
    gm_dist *d = calloc(1, sizeof *d);
    if (!d) return gm_fail(GM_ERR_NOMEM, "out of memory");
    d->rank = 0, d->world = 1, d->tp = 1;
    *out = d;
    return GM_OK;
}

void gm_dist_finalize(gm_dist *d) { free(d); }
void gm_dist_abort(gm_dist *d, int rc) {
    (void)d;
    exit(rc);
}

int gm_dist_rank(const gm_dist *d) { return d->rank; }
int gm_dist_world(const gm_dist *d) { return d->world; }
int gm_dist_dp_rank(const gm_dist *d) { return d->rank / d->tp; }
int gm_dist_dp_size(const gm_dist *d) { return d->world / d->tp; }
int gm_dist_tp_rank(const gm_dist *d) { return d->rank % d->tp; }
int gm_dist_tp_size(const gm_dist *d) { return d->tp; }

gm_status gm_dist_model_new(gm_dist *d, const gm_config *c, const gm_train_opts *o, gm_train_model **out) {
    (void)d;
    return gm_train_model_new(c, o, out);
}

size_t gm_dist_full_params(const gm_dist *d, const gm_train_model *m) {
    (void)d;
    return m->n_params;
}

gm_status gm_dist_model_scatter(gm_dist *d, gm_train_model *m, const float *full) {
    (void)d;
    memcpy(m->params, full, sizeof(float) * m->n_params);
    return GM_OK;
}

gm_status gm_dist_model_gather(gm_dist *d, const gm_train_model *m, float *full) {
    (void)d;
    memcpy(full, m->params, sizeof(float) * m->n_params);
    return GM_OK;
}

gm_status gm_dist_opt_new(gm_dist *d, const gm_adamw_params *p, gm_train_model *m, int zero, gm_dist_opt **out) {
    (void)zero;
    *out = NULL;
    gm_dist_opt *o = calloc(1, sizeof *o);
    if (!o) return gm_fail(GM_ERR_NOMEM, "out of memory");
    gm_status st = gm_adamw_new(p, m, &o->adam);
    if (st) {
        free(o);
        return st;
    }
    o->d = d, o->n = m->n_params;
    *out = o;
    return GM_OK;
}

void gm_dist_opt_free(gm_dist_opt *o) {
    if (!o) return;
    gm_adamw_free(o->adam);
    free(o);
}

int gm_dist_opt_step(gm_dist_opt *o, gm_train_model *m, float lr, float grad_scale, float loss, gm_step_info *info) {
    return gm_adamw_step(o->adam, m, lr, grad_scale, loss, info);
}

size_t gm_dist_opt_state_bytes(const gm_dist_opt *o) { return 2 * sizeof(float) * o->n; }
int gm_dist_opt_steps(const gm_dist_opt *o) { return gm_adamw_steps(o->adam); }

gm_status gm_dist_opt_export(gm_dist_opt *o, float *m_full, float *v_full, int *steps) {
    memcpy(m_full, gm_adamw_m(o->adam), sizeof(float) * o->n);
    memcpy(v_full, gm_adamw_v(o->adam), sizeof(float) * o->n);
    *steps = gm_adamw_steps(o->adam);
    return GM_OK;
}

gm_status gm_dist_opt_import(gm_dist_opt *o, const float *m_full, const float *v_full, int steps) {
    memcpy(gm_adamw_m(o->adam), m_full, sizeof(float) * o->n);
    memcpy(gm_adamw_v(o->adam), v_full, sizeof(float) * o->n);
    gm_adamw_set_steps(o->adam, steps);
    return GM_OK;
}

double gm_dist_sum_dp(gm_dist *d, double x) {
    (void)d;
    return x;
}
int gm_dist_max_int(gm_dist *d, int x) {
    (void)d;
    return x;
}
void gm_dist_bcast(gm_dist *d, void *buf, size_t n) { (void)d, (void)buf, (void)n; }
void gm_dist_barrier(gm_dist *d) { (void)d; }
