/* The alignment hooks of the trainable model (train/model_train.h):
 *  - the weighted loss with weights 1/counted on counted rows is the masked mean loss, gradients bitwise;
 *  - per-token log-probabilities sum to minus the summed loss, and match the weighted call's logp;
 *  - gm_train_hidden_backward's gradient for a linear probe loss L = Σ_n u·h_n agrees with central finite
 *    differences of L (computed in double from gm_train_hidden) on sampled parameters, relative error ≤ 2e-2
 *    (f32 forward, step 1e-3: the finite difference itself carries ~1e-3 of noise). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemma.h"
#include "testlib.h"
#include "train/model_train.h"

static gm_config tiny_config(void) {
    gm_config c;
    memset(&c, 0, sizeof c);
    c.family = 1, c.vocab_size = 64, c.hidden_size = 32, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 1;
    c.head_dim = 8, c.ffn_size = 64, c.max_pos = 64, c.rms_eps = 1e-6f, c.rope_theta = 10000;
    c.rope_local_theta = 10000, c.rope_scale = 1, c.query_scale = 1.0f / sqrtf(8.0f), c.embed_scale = sqrtf(32.0f);
    c.bos_id = 2, c.eos_id = 1, c.pad_id = 0;
    for (int l = 0; l < c.n_layers; l++) c.layer_global[l] = 1;
    return c;
}

enum { B = 2, T = 6 };

static double probe(gm_train_model *m, const int32_t *in, const float *u) {
    const float *h = NULL;
    if (gm_train_hidden(m, in, B, T, &h) != GM_OK || !h) return NAN;
    double s = 0;
    for (int n = 0; n < B * T; n++)
        for (int i = 0; i < m->cfg.hidden_size; i++) s += (double)u[i] * h[(size_t)n * m->cfg.hidden_size + i];
    return s;
}

int main(void) {
    gm_config c = tiny_config();
    gm_train_opts o = gm_train_opts_default(B, T, 2);
    gm_train_model *m = NULL;
    CHECK_OK(gm_train_model_new(&c, &o, &m));
    if (!m) TEST_DONE();
    gm_train_init(m, 7, 0.2f);
    int32_t in[B * T], tg[B * T];
    for (int n = 0; n < B * T; n++) in[n] = 3 + (n * 17) % 60, tg[n] = (n % 3 == 0) ? -1 : 3 + (n * 29) % 60;
    int counted = 0;
    for (int n = 0; n < B * T; n++) counted += tg[n] >= 0;

    /* weighted with 1/counted == masked mean */
    float loss_mask = 0, loss_w = 0, w[B * T], logp[B * T], logp2[B * T];
    for (int n = 0; n < B * T; n++) w[n] = tg[n] >= 0 ? 1.0f / (float)counted : 0.0f;
    gm_train_zero_grad(m);
    CHECK_OK(gm_train_forward_backward_masked(m, in, tg, B, T, &loss_mask));
    float *g_mask = malloc(sizeof(float) * m->n_params);
    memcpy(g_mask, m->grads, sizeof(float) * m->n_params);
    gm_train_zero_grad(m);
    CHECK_OK(gm_train_forward_backward_weighted(m, in, tg, w, B, T, logp, &loss_w));
    CHECK_NEAR(loss_w, loss_mask, 1e-6 * fabs(loss_mask));
    CHECK(memcmp(g_mask, m->grads, sizeof(float) * m->n_params) == 0);
    CHECK_OK(gm_train_logprobs(m, in, tg, B, T, logp2));
    double sum = 0;
    for (int n = 0; n < B * T; n++) {
        CHECK(logp[n] == logp2[n]);
        CHECK(tg[n] >= 0 ? logp[n] < 0 : logp[n] == 0);
        sum += logp[n];
    }
    CHECK_NEAR(-sum / counted, loss_mask, 1e-5 * fabs(loss_mask));
    float bad[B * T];
    memcpy(bad, w, sizeof bad);
    bad[3] = NAN;
    CHECK(gm_train_forward_backward_weighted(m, in, tg, bad, B, T, NULL, &loss_w) == GM_ERR_ARG);

    /* hidden-state backward vs finite differences of a linear probe */
    float u[32];
    for (int i = 0; i < 32; i++) u[i] = (float)sin(1.0 + i);
    float *dh = malloc(sizeof(float) * B * T * 32);
    for (int n = 0; n < B * T; n++) memcpy(dh + n * 32, u, sizeof u);
    const float *h = NULL;
    gm_train_zero_grad(m);
    CHECK_OK(gm_train_hidden(m, in, B, T, &h));
    CHECK_OK(gm_train_hidden_backward(m, in, B, T, dh));
    int checked = 0;
    for (int ti = 0; ti < m->n_tensors; ti++) {
        const gm_train_tensor *t = &m->tensors[ti];
        for (int k = 0; k < 3; k++) {
            size_t i = t->offset + ((size_t)k * 7919u + (size_t)ti * 31u) % t->numel;
            if (t->kind == GM_TT_EMBED) i = t->offset + (size_t)in[k] * 32 + (size_t)k; /* a row that is used */
            float keep = m->params[i], eps = 1e-3f;
            m->params[i] = keep + eps;
            double lp = probe(m, in, u);
            m->params[i] = keep - eps;
            double lm = probe(m, in, u);
            m->params[i] = keep;
            double fd = (lp - lm) / (2.0 * eps), g = m->grads[i];
            double scale = fabs(fd) > fabs(g) ? fabs(fd) : fabs(g);
            CHECKF(fabs(fd - g) <= 2e-2 * scale + 2e-3, "%s[%zu]: backward %g, finite difference %g", t->name,
                   i - t->offset, g, fd);
            checked++;
        }
    }
    CHECK(checked == 3 * m->n_tensors);
    free(dh);
    free(g_mask);
    gm_train_model_free(m);
    TEST_DONE();
}
