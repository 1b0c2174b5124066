/* AdamW with PyTorch's arithmetic (torch.optim.AdamW, single-tensor path) and clip_grad_norm_'s clipping
 * rule, so trajectories can be compared with the reference loop step by step. The update is split over
 * the model's pool by element ranges; the global norm is summed in fixed chunks, so every result is the
 * same for any thread count. The pieces (norm, decisions, update of a span) are public: train/dist.c runs
 * them on a slice of the parameters. */
#include "train/adamw.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

float gm_lr_at(const gm_lr_schedule *s, int step) {
    if (step < s->warmup) return s->lr * (float)(step + 1) / (float)s->warmup;
    if (s->decay == GM_LR_CONSTANT) return s->lr;
    if (step >= s->total) return s->lr_min;
    double p = s->total > s->warmup ? (double)(step - s->warmup) / (double)(s->total - s->warmup) : 1.0;
    double span = (double)s->lr - (double)s->lr_min;
    if (s->decay == GM_LR_LINEAR) return (float)((double)s->lr - span * p);
    return (float)((double)s->lr_min + span * 0.5 * (1.0 + cos(3.14159265358979323846 * p)));
}

gm_adamw_params gm_adamw_params_default(void) {
    gm_adamw_params p = {0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 0, 0};
    return p;
}

struct gm_adamw {
    gm_adamw_params p;
    size_t n;
    float *m, *v;
    unsigned char *decay; /* per tensor */
    int n_tensors;
    int t;                /* updates taken */
    double *partial;      /* per GM_ADAMW_NORM_CHUNK sum of squares */
};

int gm_adamw_tensor_decays(const gm_adamw_params *p, const gm_train_tensor *t) {
    /* weight decay pulls toward 0: for a norm offset that means toward a scale of 1, for the tied
     * embedding it shrinks the output logits too, so both are opt-in */
    if (t->ndim == 1) return p->decay_norms != 0;
    if (t->kind == GM_TT_EMBED) return p->decay_embed != 0;
    return 1;
}

gm_status gm_adamw_params_check(const gm_adamw_params *p) {
    if (!(p->beta1 >= 0 && p->beta1 < 1) || !(p->beta2 >= 0 && p->beta2 < 1) || !(p->eps > 0) ||
        !(p->weight_decay >= 0) || !(p->clip >= 0))
        return gm_fail(GM_ERR_ARG, "AdamW needs 0 <= beta < 1, eps > 0, weight decay >= 0 and clip >= 0");
    return GM_OK;
}

gm_status gm_adamw_new(const gm_adamw_params *p, const gm_train_model *mdl, gm_adamw **out) {
    *out = NULL;
    gm_status st = gm_adamw_params_check(p);
    if (st) return st;
    gm_adamw *o = calloc(1, sizeof *o);
    if (!o) return gm_fail(GM_ERR_NOMEM, "out of memory");
    o->p = *p;
    o->n = mdl->n_params;
    o->n_tensors = mdl->n_tensors;
    o->m = calloc(o->n ? o->n : 1, sizeof(float));
    o->v = calloc(o->n ? o->n : 1, sizeof(float));
    o->decay = calloc((size_t)mdl->n_tensors + 1, 1);
    o->partial = calloc(gm_adamw_norm_chunks(o->n), sizeof(double));
    if (!o->m || !o->v || !o->decay || !o->partial) {
        gm_adamw_free(o);
        return gm_fail(GM_ERR_NOMEM, "cannot allocate AdamW moments for %zu parameters", mdl->n_params);
    }
    for (int i = 0; i < mdl->n_tensors; i++) o->decay[i] = (unsigned char)gm_adamw_tensor_decays(p, &mdl->tensors[i]);
    *out = o;
    return GM_OK;
}

void gm_adamw_free(gm_adamw *o) {
    if (!o) return;
    free(o->m);
    free(o->v);
    free(o->decay);
    free(o->partial);
    free(o);
}

int gm_adamw_steps(const gm_adamw *o) { return o->t; }
float *gm_adamw_m(gm_adamw *o) { return o->m; }
float *gm_adamw_v(gm_adamw *o) { return o->v; }
void gm_adamw_set_steps(gm_adamw *o, int steps) { o->t = steps < 0 ? 0 : steps; }
int gm_adamw_decays(const gm_adamw *o, int tensor) {
    return tensor >= 0 && tensor < o->n_tensors ? o->decay[tensor] : 0;
}

/* ---- the pieces of a step ------------------------------------------------------------------------ */

size_t gm_adamw_norm_chunks(size_t n) { return n ? (n + GM_ADAMW_NORM_CHUNK - 1) / GM_ADAMW_NORM_CHUNK : 1; }

typedef struct {
    const float *g;
    size_t n;
    float scale;
    double *partial;
} norm_job;

static void norm_task(void *ctx, int wk, int nw) {
    norm_job *j = ctx;
    size_t b, e;
    gm_pool_chunk(gm_adamw_norm_chunks(j->n), 1, wk, nw, &b, &e);
    for (size_t c = b; c < e; c++) {
        size_t i0 = c * GM_ADAMW_NORM_CHUNK, i1 = i0 + GM_ADAMW_NORM_CHUNK < j->n ? i0 + GM_ADAMW_NORM_CHUNK : j->n;
        double s = 0;
        for (size_t i = i0; i < i1; i++) {
            double g = (double)j->g[i] * j->scale;
            s += g * g;
        }
        j->partial[c] = s;
    }
}

double gm_adamw_sumsq(const float *g, size_t n, float scale, double *partial, gm_pool *pool) {
    if (n == 0) return 0;
    norm_job j = {g, n, scale, partial};
    gm_pool_run(pool, norm_task, &j);
    double ss = 0;
    for (size_t c = 0; c < gm_adamw_norm_chunks(n); c++) ss += partial[c];
    return ss;
}

int gm_adamw_skip_loss(gm_step_info *info, int updates, float lr, float loss) {
    memset(info, 0, sizeof *info);
    info->lr = lr, info->clip_coef = 1.0f, info->result = GM_STEP_SKIPPED_LOSS;
    snprintf(info->message, sizeof info->message, "step %d skipped: the loss is %g", updates + 1, (double)loss);
    return info->result;
}

int gm_adamw_skip_grad(gm_step_info *info, int updates, float lr, double norm, const char *where, float loss) {
    memset(info, 0, sizeof *info);
    info->lr = lr, info->clip_coef = 1.0f, info->grad_norm = norm, info->result = GM_STEP_SKIPPED_GRAD;
    snprintf(info->message, sizeof info->message,
             "step %d skipped: non-finite gradient (global norm %g; first in %s), loss %g", updates + 1, norm,
             where ? where : "?", (double)loss);
    return info->result;
}

float gm_adamw_clip_coef(const gm_adamw_params *p, double norm) {
    /* clip_grad_norm_: coefficient max_norm / (norm + 1e-6), applied only when below 1 */
    if (p->clip > 0) {
        double coef = (double)p->clip / (norm + 1e-6);
        if (coef < 1.0) return (float)coef;
    }
    return 1.0f;
}

typedef struct {
    const gm_adamw_params *p;
    const gm_adamw_span *s;
    float scale; /* grad_scale · clip coefficient */
    float lr;
    double bc1, bc2_sqrt;
} update_job;

/* PyTorch's order: decay, moments, then w −= (lr / bc1) · m / (sqrt(v) / sqrt(bc2) + eps). */
static void update_task(void *ctx, int wk, int nw) {
    update_job *j = ctx;
    const gm_adamw_span *sp = j->s;
    size_t b, e;
    gm_pool_chunk(sp->end - sp->begin, 64, wk, nw, &b, &e);
    b += sp->begin, e += sp->begin; /* absolute positions in the layout */
    const float b1 = j->p->beta1, b2 = j->p->beta2, eps = j->p->eps;
    const float step_size = (float)((double)j->lr / j->bc1), bc2s = (float)j->bc2_sqrt;
    for (int ti = 0; ti < sp->n_tensors && b < e; ti++) {
        const gm_train_tensor *t = &sp->tensors[ti];
        size_t t0 = t->offset, t1 = t->offset + t->numel;
        if (t1 <= b || t0 >= e) continue;
        size_t i0 = (t0 > b ? t0 : b) - sp->begin, i1 = (t1 < e ? t1 : e) - sp->begin;
        float keep = sp->decay[ti] ? 1.0f - j->lr * j->p->weight_decay : 1.0f;
        float *w = sp->w, *m = sp->m, *v = sp->v;
        const float *g = sp->g;
        for (size_t i = i0; i < i1; i++) {
            float gi = g[i] * j->scale;
            float wi = w[i] * keep;
            float mi = m[i] * b1 + gi * (1.0f - b1);
            float vi = v[i] * b2 + gi * gi * (1.0f - b2);
            m[i] = mi, v[i] = vi;
            w[i] = wi - step_size * (mi / (sqrtf(vi) / bc2s + eps));
        }
    }
}

void gm_adamw_update(const gm_adamw_params *p, const gm_adamw_span *s, float lr, float scale, int t, gm_pool *pool) {
    if (s->end <= s->begin) return;
    update_job j = {p, s, scale, lr, 1.0 - pow((double)p->beta1, t), sqrt(1.0 - pow((double)p->beta2, t))};
    gm_pool_run(pool, update_task, &j);
}

/* ---- the single-process step --------------------------------------------------------------------- */

int gm_adamw_step(gm_adamw *o, gm_train_model *mdl, float lr, float grad_scale, float loss, gm_step_info *info) {
    gm_step_info local;
    if (!info) info = &local;
    if (!isfinite(loss)) return gm_adamw_skip_loss(info, o->t, lr, loss);
    double norm = sqrt(gm_adamw_sumsq(mdl->grads, o->n, grad_scale, o->partial, mdl->pool));
    if (!isfinite(norm)) {
        const char *where = "?";
        for (int ti = 0; ti < mdl->n_tensors && where[0] == '?'; ti++) {
            const gm_train_tensor *t = &mdl->tensors[ti];
            for (size_t i = 0; i < t->numel; i++)
                if (!isfinite(mdl->grads[t->offset + i])) {
                    where = t->name;
                    break;
                }
        }
        return gm_adamw_skip_grad(info, o->t, lr, norm, where, loss);
    }
    memset(info, 0, sizeof *info);
    info->lr = lr;
    info->grad_norm = norm;
    info->clip_coef = gm_adamw_clip_coef(&o->p, norm);
    o->t++;
    gm_adamw_span sp = {mdl->tensors, mdl->n_tensors, o->decay, 0, o->n, mdl->params, o->m, o->v, mdl->grads};
    gm_adamw_update(&o->p, &sp, lr, grad_scale * info->clip_coef, o->t, mdl->pool);
    info->result = GM_STEP_TAKEN;
    return GM_STEP_TAKEN;
}
