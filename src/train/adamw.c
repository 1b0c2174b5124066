/* AdamW with PyTorch's arithmetic (torch.optim.AdamW, single-tensor path) and clip_grad_norm_'s clipping
 * rule, so trajectories can be compared with the reference loop step by step. The update is split over
 * the model's pool by element ranges; the global norm is summed in fixed chunks, so every result is the
 * same for any thread count. */
#include "train/adamw.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

#define GM_NORM_CHUNK ((size_t)1 << 16) /* elements per partial sum of squares */

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
    double *partial;      /* per GM_NORM_CHUNK sum of squares */
    size_t n_chunks;
};

gm_status gm_adamw_new(const gm_adamw_params *p, const gm_train_model *mdl, gm_adamw **out) {
    *out = NULL;
    if (!(p->beta1 >= 0 && p->beta1 < 1) || !(p->beta2 >= 0 && p->beta2 < 1) || !(p->eps > 0) ||
        !(p->weight_decay >= 0) || !(p->clip >= 0))
        return gm_fail(GM_ERR_ARG, "AdamW needs 0 <= beta < 1, eps > 0, weight decay >= 0 and clip >= 0");
    gm_adamw *o = calloc(1, sizeof *o);
    if (!o) return gm_fail(GM_ERR_NOMEM, "out of memory");
    o->p = *p;
    o->n = mdl->n_params;
    o->n_tensors = mdl->n_tensors;
    o->n_chunks = (o->n + GM_NORM_CHUNK - 1) / GM_NORM_CHUNK;
    o->m = calloc(o->n ? o->n : 1, sizeof(float));
    o->v = calloc(o->n ? o->n : 1, sizeof(float));
    o->decay = calloc((size_t)mdl->n_tensors + 1, 1);
    o->partial = calloc(o->n_chunks + 1, sizeof(double));
    if (!o->m || !o->v || !o->decay || !o->partial) {
        gm_adamw_free(o);
        return gm_fail(GM_ERR_NOMEM, "cannot allocate AdamW moments for %zu parameters", mdl->n_params);
    }
    for (int i = 0; i < mdl->n_tensors; i++) {
        const gm_train_tensor *t = &mdl->tensors[i];
        /* weight decay pulls toward 0: for a norm offset that means toward a scale of 1, for the tied
         * embedding it shrinks the output logits too, so both are opt-in */
        int d = 1;
        if (t->ndim == 1) d = p->decay_norms;
        else if (t->kind == GM_TT_EMBED) d = p->decay_embed;
        o->decay[i] = (unsigned char)d;
    }
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

typedef struct {
    gm_adamw *o;
    const gm_train_model *mdl;
    float *w;
    const float *g;
    float scale; /* grad_scale · clip coefficient */
    float lr;
    double bc1, bc2_sqrt;
} step_job;

static void norm_task(void *ctx, int wk, int nw) {
    step_job *j = ctx;
    size_t b, e;
    gm_pool_chunk(j->o->n_chunks, 1, wk, nw, &b, &e);
    for (size_t c = b; c < e; c++) {
        size_t i0 = c * GM_NORM_CHUNK, i1 = i0 + GM_NORM_CHUNK < j->o->n ? i0 + GM_NORM_CHUNK : j->o->n;
        double s = 0;
        for (size_t i = i0; i < i1; i++) {
            double g = (double)j->g[i] * j->scale;
            s += g * g;
        }
        j->o->partial[c] = s;
    }
}

/* PyTorch's order: decay, moments, then w −= (lr / bc1) · m / (sqrt(v) / sqrt(bc2) + eps). */
static void update_task(void *ctx, int wk, int nw) {
    step_job *j = ctx;
    gm_adamw *o = j->o;
    size_t b, e;
    gm_pool_chunk(o->n, 64, wk, nw, &b, &e);
    const float b1 = o->p.beta1, b2 = o->p.beta2, eps = o->p.eps;
    const float step_size = (float)((double)j->lr / j->bc1), bc2s = (float)j->bc2_sqrt;
    for (int ti = 0; ti < j->mdl->n_tensors && b < e; ti++) {
        const gm_train_tensor *t = &j->mdl->tensors[ti];
        size_t t0 = t->offset, t1 = t->offset + t->numel;
        if (t1 <= b || t0 >= e) continue;
        size_t i0 = t0 > b ? t0 : b, i1 = t1 < e ? t1 : e;
        float keep = o->decay[ti] ? 1.0f - j->lr * o->p.weight_decay : 1.0f;
        for (size_t i = i0; i < i1; i++) {
            float g = j->g[i] * j->scale;
            float w = j->w[i] * keep;
            float m = o->m[i] * b1 + g * (1.0f - b1);
            float v = o->v[i] * b2 + g * g * (1.0f - b2);
            o->m[i] = m, o->v[i] = v;
            j->w[i] = w - step_size * (m / (sqrtf(v) / bc2s + eps));
        }
    }
}

int gm_adamw_step(gm_adamw *o, gm_train_model *mdl, float lr, float grad_scale, float loss, gm_step_info *info) {
    gm_step_info local;
    if (!info) info = &local;
    memset(info, 0, sizeof *info);
    info->lr = lr;
    info->clip_coef = 1.0f;
    if (!isfinite(loss)) {
        info->result = GM_STEP_SKIPPED_LOSS;
        snprintf(info->message, sizeof info->message, "step %d skipped: the loss is %g", o->t + 1, (double)loss);
        return info->result;
    }
    step_job j = {o, mdl, mdl->params, mdl->grads, grad_scale, lr, 0, 0};
    gm_pool_run(mdl->pool, norm_task, &j);
    double ss = 0;
    for (size_t c = 0; c < o->n_chunks; c++) ss += o->partial[c];
    info->grad_norm = sqrt(ss);
    if (!isfinite(info->grad_norm)) {
        info->result = GM_STEP_SKIPPED_GRAD;
        const char *where = "?";
        for (int ti = 0; ti < mdl->n_tensors && where[0] == '?'; ti++) {
            const gm_train_tensor *t = &mdl->tensors[ti];
            for (size_t i = 0; i < t->numel; i++)
                if (!isfinite(mdl->grads[t->offset + i])) {
                    where = t->name;
                    break;
                }
        }
        snprintf(info->message, sizeof info->message,
                 "step %d skipped: non-finite gradient (global norm %g; first in %s), loss %g", o->t + 1,
                 info->grad_norm, where, (double)loss);
        return info->result;
    }
    /* clip_grad_norm_: coefficient max_norm / (norm + 1e-6), applied only when below 1 */
    if (o->p.clip > 0) {
        double coef = (double)o->p.clip / (info->grad_norm + 1e-6);
        if (coef < 1.0) info->clip_coef = (float)coef;
    }
    o->t++;
    j.scale = grad_scale * info->clip_coef;
    j.bc1 = 1.0 - pow((double)o->p.beta1, o->t);
    j.bc2_sqrt = sqrt(1.0 - pow((double)o->p.beta2, o->t));
    gm_pool_run(mdl->pool, update_task, &j);
    info->result = GM_STEP_TAKEN;
    return GM_STEP_TAKEN;
}
