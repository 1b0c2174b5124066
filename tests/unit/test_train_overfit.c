/* End to end: a tiny Gemma (d 64, 2 layers, MQA 4/1, vocab 256) from gm_train_init memorizes one batch of
 * 2 × 16 random tokens: the loss starts near ln(256) = 5.55 and must fall below 0.01 within 60 AdamW
 * steps (lr 1e-2 after a 10-step warmup, no weight decay). Also checks the init itself: Gemma's std 0.02,
 * zero norm offsets, a zero padding row, determinism in the seed. Prints forward+backward tokens/s. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gemma.h"
#include "testlib.h"
#include "train/adamw.h"
#include "train/model_train.h"

#define STEPS 60
#define THRESHOLD 0.01f

static gm_config tiny_config(void) {
    gm_config c;
    memset(&c, 0, sizeof c);
    c.family = 1, c.vocab_size = 256, c.hidden_size = 64, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 1;
    c.head_dim = 16, c.ffn_size = 128, c.max_pos = 256, c.rms_eps = 1e-6f, c.rope_theta = 10000;
    c.rope_local_theta = 10000, c.rope_scale = 1, c.query_scale = 0.25f, c.embed_scale = 8.0f;
    c.bos_id = 2, c.eos_id = 1, c.pad_id = 0;
    for (int l = 0; l < c.n_layers; l++) c.layer_global[l] = 1;
    return c;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void check_init(void) {
    gm_config c = tiny_config();
    gm_train_opts o = gm_train_opts_default(1, 8, 1);
    gm_train_model *a = NULL, *b = NULL;
    CHECK_OK(gm_train_model_new(&c, &o, &a));
    CHECK_OK(gm_train_model_new(&c, &o, &b));
    if (!a || !b) { gm_train_model_free(a); gm_train_model_free(b); return; }
    gm_train_init(a, 1234, GM_TRAIN_INIT_STD);
    gm_train_init(b, 1234, GM_TRAIN_INIT_STD);
    CHECK(memcmp(a->params, b->params, sizeof(float) * a->n_params) == 0);
    gm_train_init(b, 1235, GM_TRAIN_INIT_STD);
    CHECK(memcmp(a->params, b->params, sizeof(float) * a->n_params) != 0);
    for (int i = 0; i < a->n_tensors; i++) {
        const gm_train_tensor *t = &a->tensors[i];
        const float *p = a->params + t->offset;
        double s = 0, s2 = 0;
        for (size_t k = 0; k < t->numel; k++) s += p[k], s2 += (double)p[k] * p[k];
        if (t->ndim == 1) {
            CHECKF(s2 == 0, "%s: norm offsets must start at zero", t->name);
            continue;
        }
        double n = (double)t->numel, mean = s / n, sd = sqrt(s2 / n - mean * mean);
        /* 4 standard errors of the estimates */
        CHECKF(fabs(mean) < 4 * 0.02 / sqrt(n) && fabs(sd - 0.02) < 4 * 0.02 / sqrt(2 * n), "%s: mean %g std %g",
               t->name, mean, sd);
    }
    for (int i = 0; i < c.hidden_size; i++) CHECK(a->embed[(size_t)c.pad_id * c.hidden_size + i] == 0.0f);
    gm_train_model_free(a);
    gm_train_model_free(b);
    /* other families are refused, with a reason */
    gm_config g2 = c;
    g2.family = 2, g2.attn_softcap = 50;
    gm_train_model *m = NULL;
    CHECK(gm_train_model_new(&g2, &o, &m) == GM_ERR_UNSUPPORTED && m == NULL);
}

static void check_overfit(void) {
    gm_config c = tiny_config();
    int B = 2, T = 16;
    gm_train_opts o = gm_train_opts_default(B, T, 2);
    gm_train_model *m = NULL;
    CHECK_OK(gm_train_model_new(&c, &o, &m));
    if (!m) return;
    gm_train_init(m, 42, GM_TRAIN_INIT_STD);
    int32_t tok[2 * 17];
    uint64_t s = 99;
    for (int i = 0; i < B * (T + 1); i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        tok[i] = 3 + (int32_t)((s >> 33) % 253); /* no shared <bos>: identical contexts could not be told apart */
    }
    gm_adamw_params p = gm_adamw_params_default();
    p.weight_decay = 0;
    gm_lr_schedule sch = {1e-2f, 1e-2f, 10, STEPS, GM_LR_CONSTANT};
    gm_adamw *opt = NULL;
    CHECK_OK(gm_adamw_new(&p, m, &opt));
    float first = 0, loss = 0;
    int reached = -1;
    double t0 = now();
    for (int step = 0; step < STEPS && opt; step++) {
        gm_train_zero_grad(m);
        CHECK_OK(gm_train_forward_backward(m, tok, B, T, &loss));
        if (step == 0) first = loss;
        if (loss < THRESHOLD && reached < 0) reached = step;
        if (reached >= 0) break;
        CHECK(gm_adamw_step(opt, m, gm_lr_at(&sch, step), 1.0f, loss, NULL) == GM_STEP_TAKEN);
    }
    double dt = now() - t0;
    int steps = reached >= 0 ? reached + 1 : STEPS;
    CHECKF(fabs(first - logf(256)) < 0.15, "initial loss %g, expected about ln(256) = 5.545", (double)first);
    CHECKF(reached >= 0, "loss still %g after %d steps (threshold %g)", (double)loss, STEPS, (double)THRESHOLD);
    printf("overfit: loss %.4f -> %.4f in %d steps (threshold %.2f), %.0f tokens/s forward+backward+step "
           "(2 threads)\n", (double)first, (double)loss, steps, (double)THRESHOLD, steps * B * T / dt);
    gm_adamw_free(opt);
    gm_train_model_free(m);
}

int main(void) {
    check_init();
    check_overfit();
    TEST_DONE();
}
