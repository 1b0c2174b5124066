/* The single-process contract of train/dist.h, and the model-parallel arithmetic without MPI:
 *  - a one-rank mesh: sizes, collectives that return their input, tp that does not divide refused;
 *  - gm_dist_opt_step is bitwise gm_adamw_step on one rank (ZeRO on and off): parameters, moments, norm,
 *    clip coefficient, over steps with clipping active, and the same skips with the same messages;
 *  - the optimizer state round trip (export, new optimizer, import) continues bitwise; state bytes;
 *  - scatter/gather of the full layout is the identity on one rank;
 *  - shards (MQA, GQA and MHA at tp 2; FFN 50, so a shard's 25 columns of down start mid-pair in the init's
 *    random stream): layouts, init = the cut of the full model's init, from_model = the
 *    cut of the full conversion, and two shards run in two threads with an in-process "sum over the model
 *    ranks" give the full model's loss (≤ 1e-6 relative) and gradients (≤ 1e-5 of each tensor's max). */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemma.h"
#include "testlib.h"
#include "train/adamw.h"
#include "train/dist.h"
#include "train/model_train.h"

static gm_config tiny_config(int heads, int kv) {
    gm_config c;
    memset(&c, 0, sizeof c);
    c.family = 1, c.vocab_size = 64, c.hidden_size = 32, c.n_layers = 2, c.n_heads = heads, c.n_kv_heads = kv;
    c.head_dim = 8, c.ffn_size = 50, c.max_pos = 64, c.rms_eps = 1e-6f, c.rope_theta = 10000;
    c.rope_local_theta = 10000, c.rope_scale = 1, c.query_scale = 1.0f / sqrtf(8.0f), c.embed_scale = sqrtf(32.0f);
    c.bos_id = 2, c.eos_id = 1, c.pad_id = 0;
    for (int l = 0; l < c.n_layers; l++) c.layer_global[l] = 1;
    return c;
}

enum { B = 2, T = 8 };

static void batch(int32_t *tok, int seed) {
    for (int n = 0; n < B * (T + 1); n++) tok[n] = 3 + (n * 17 + seed * 31 + (n * n) % 7) % 61;
}

/* ---- one rank ------------------------------------------------------------------------------------ */

static void test_mesh(gm_dist *d) {
    CHECK(gm_dist_rank(d) == 0 && gm_dist_world(d) == 1);
    CHECK(gm_dist_dp_rank(d) == 0 && gm_dist_dp_size(d) == 1 && gm_dist_tp_rank(d) == 0 && gm_dist_tp_size(d) == 1);
    CHECK(gm_dist_sum_dp(d, 2.5) == 2.5);
    CHECK(gm_dist_max_int(d, -7) == -7);
    char buf[4] = "abc";
    gm_dist_bcast(d, buf, 4);
    CHECK(!strcmp(buf, "abc"));
    gm_dist_barrier(d);
    gm_dist *d2 = NULL;
    gm_status st = gm_dist_init(NULL, NULL, 2, &d2); /* one rank cannot be split two ways */
    CHECK(st != GM_OK && d2 == NULL);
    CHECKF(strstr(gm_last_error(), "--tp 2") != NULL, "%s", gm_last_error());
    CHECK(gm_dist_init(NULL, NULL, 0, &d2) == GM_ERR_ARG);
}

/* gm_dist_opt_step against gm_adamw_step, bitwise, on two copies of one model. */
static void test_opt_equals_adamw(gm_dist *d, int zero) {
    gm_config c = tiny_config(4, 1);
    gm_train_opts o = gm_train_opts_default(B, T, 2);
    gm_train_model *a = NULL, *b = NULL;
    CHECK_OK(gm_train_model_new(&c, &o, &a));
    CHECK_OK(gm_dist_model_new(d, &c, &o, &b));
    if (!a || !b) return;
    gm_train_init(a, 5, 0.2f);
    gm_train_init(b, 5, 0.2f);
    CHECK(memcmp(a->params, b->params, sizeof(float) * a->n_params) == 0);
    gm_adamw_params p = gm_adamw_params_default();
    p.clip = 0.5f, p.decay_norms = zero; /* clipping active; both decay settings of the norms */
    gm_adamw *ao = NULL;
    gm_dist_opt *bo = NULL;
    CHECK_OK(gm_adamw_new(&p, a, &ao));
    CHECK_OK(gm_dist_opt_new(d, &p, b, zero, &bo));
    if (!ao || !bo) return;
    size_t n_pad = (a->n_params + GM_TRAIN_PAD - 1) / GM_TRAIN_PAD * GM_TRAIN_PAD;
    CHECK(gm_dist_opt_state_bytes(bo) == 2 * sizeof(float) * n_pad);
    int32_t tok[B * (T + 1)];
    int clipped = 0;
    for (int s = 0; s < 6; s++) {
        batch(tok, s);
        float la = 0, lb = 0;
        gm_train_zero_grad(a);
        gm_train_zero_grad(b);
        for (int micro = 0; micro < 2; micro++) {
            CHECK_OK(gm_train_forward_backward(a, tok, B, T, &la));
            CHECK_OK(gm_train_forward_backward(b, tok, B, T, &lb));
        }
        CHECK(la == lb);
        if (s == 3) { /* a non-finite gradient: both skip, with the same message */
            a->grads[a->tensors[5].offset + 3] = NAN;
            b->grads[b->tensors[5].offset + 3] = NAN;
        }
        float lr = 1e-2f * (float)(s + 1);
        gm_step_info ia, ib;
        int ra = gm_adamw_step(ao, a, lr, 0.5f, s == 4 ? INFINITY : la, &ia);
        int rb = gm_dist_opt_step(bo, b, lr, 0.5f, s == 4 ? INFINITY : lb, &ib);
        CHECK(ra == rb && ia.result == ib.result);
        CHECK(ra == (s == 3 ? GM_STEP_SKIPPED_GRAD : s == 4 ? GM_STEP_SKIPPED_LOSS : GM_STEP_TAKEN));
        CHECKF(!strcmp(ia.message, ib.message), "'%s' vs '%s'", ia.message, ib.message);
        CHECK(ia.grad_norm == ib.grad_norm || (isnan(ia.grad_norm) && isnan(ib.grad_norm)));
        CHECK(ia.clip_coef == ib.clip_coef && ia.lr == ib.lr);
        clipped += ra == GM_STEP_TAKEN && ia.clip_coef < 1;
        CHECKF(memcmp(a->params, b->params, sizeof(float) * a->n_params) == 0, "step %d: parameters differ", s);
    }
    CHECK(clipped >= 2);
    CHECK(gm_adamw_steps(ao) == 4 && gm_dist_opt_steps(bo) == 4);

    /* export: the moments are gm_adamw's; import into a new optimizer continues bitwise */
    size_t n = gm_dist_full_params(d, b);
    CHECK(n == a->n_params);
    float *mf = malloc(sizeof(float) * n), *vf = malloc(sizeof(float) * n), *full = malloc(sizeof(float) * n);
    int steps = 0;
    CHECK_OK(gm_dist_opt_export(bo, mf, vf, &steps));
    CHECK(steps == 4);
    CHECK(memcmp(mf, gm_adamw_m(ao), sizeof(float) * n) == 0 && memcmp(vf, gm_adamw_v(ao), sizeof(float) * n) == 0);
    gm_dist_opt_free(bo);
    bo = NULL;
    CHECK_OK(gm_dist_opt_new(d, &p, b, zero, &bo));
    CHECK_OK(gm_dist_opt_import(bo, mf, vf, steps));
    CHECK(gm_dist_opt_steps(bo) == 4);
    batch(tok, 9);
    float la = 0, lb = 0;
    gm_train_zero_grad(a);
    gm_train_zero_grad(b);
    CHECK_OK(gm_train_forward_backward(a, tok, B, T, &la));
    CHECK_OK(gm_train_forward_backward(b, tok, B, T, &lb));
    gm_adamw_step(ao, a, 3e-3f, 1.0f, la, NULL);
    gm_dist_opt_step(bo, b, 3e-3f, 1.0f, lb, NULL);
    CHECK(memcmp(a->params, b->params, sizeof(float) * a->n_params) == 0);

    /* scatter / gather on one rank: the identity */
    CHECK_OK(gm_dist_model_gather(d, b, full));
    CHECK(memcmp(full, b->params, sizeof(float) * n) == 0);
    for (size_t i = 0; i < n; i++) full[i] = (float)i * 1e-3f;
    CHECK_OK(gm_dist_model_scatter(d, b, full));
    CHECK(memcmp(full, b->params, sizeof(float) * n) == 0);
    for (size_t i = b->n_params; i < n_pad; i++) CHECK(b->params[i] == 0 && b->grads[i] == 0);
    free(mf), free(vf), free(full);
    gm_dist_opt_free(bo);
    gm_adamw_free(ao);
    gm_train_model_free(a);
    gm_train_model_free(b);
}

/* ---- shards in one process ----------------------------------------------------------------------- */

typedef struct {
    pthread_barrier_t bar;
    float *bufs[2];
} pair_t;

typedef struct {
    pair_t *pair;
    int rank;
    gm_train_model *m;
    const int32_t *tok;
    float loss;
    gm_status st;
} shard_t;

/* The model-group sum of two shards running in two threads: rank 0 adds, both read. */
static void pair_sum(void *ctx, float *buf, size_t n) {
    shard_t *s = ctx;
    s->pair->bufs[s->rank] = buf;
    pthread_barrier_wait(&s->pair->bar);
    if (s->rank == 0)
        for (size_t i = 0; i < n; i++) {
            float *x = s->pair->bufs[0], *y = s->pair->bufs[1];
            x[i] = y[i] = x[i] + y[i];
        }
    pthread_barrier_wait(&s->pair->bar);
}

static void *shard_run(void *arg) {
    shard_t *s = arg;
    gm_train_zero_grad(s->m);
    s->st = gm_train_forward_backward(s->m, s->tok, B, T, &s->loss);
    return NULL;
}

static void test_shards(int heads, int kv) {
    gm_config c = tiny_config(heads, kv);
    gm_train_opts o = gm_train_opts_default(B, T, 1);
    gm_train_model *full = NULL, *sh[2] = {NULL, NULL};
    CHECK_OK(gm_train_model_new(&c, &o, &full));
    for (int r = 0; r < 2; r++) CHECK_OK(gm_train_model_new_shard(&c, &o, r, 2, &sh[r]));
    if (!full || !sh[0] || !sh[1]) return;
    gm_train_init(full, 11, 0.1f);
    for (int r = 0; r < 2; r++) gm_train_init(sh[r], 11, 0.1f);

    /* layout: the shard's heads and units, the full layout beside it */
    gm_train_model *s0 = sh[0];
    CHECK(s0->heads == heads / 2 && s0->kv_heads == (kv == 1 ? 1 : kv / 2) && s0->ffn == c.ffn_size / 2);
    CHECK(s0->n_full_params == full->n_params && s0->n_tensors == full->n_tensors);
    gm_train_tensor lay[2 + 9 * 2];
    int nt = 0;
    size_t np = 0;
    CHECK_OK(gm_train_layout(&c, 1, 2, lay, &nt, &np));
    CHECK(nt == s0->n_tensors && np == s0->n_params);
    for (int i = 0; i < full->n_tensors; i++) {
        const gm_train_tensor *t = &s0->tensors[i], *f = &full->tensors[i];
        CHECK(!strcmp(t->name, f->name) && !strcmp(s0->full_tensors[i].name, f->name));
        CHECK(s0->full_tensors[i].offset == f->offset && s0->full_tensors[i].numel == f->numel);
        int split = t->kind == GM_TT_Q || t->kind == GM_TT_O || t->kind == GM_TT_GATE || t->kind == GM_TT_UP ||
                    t->kind == GM_TT_DOWN || ((t->kind == GM_TT_K || t->kind == GM_TT_V) && kv > 1);
        CHECKF(t->numel * (split ? 2 : 1) == f->numel, "%s: %zu of %zu", t->name, t->numel, f->numel);
    }

    /* init: each shard is its cut of the full init; the cuts put back together are the full init */
    float *back = calloc(full->n_params, sizeof(float)), *cut = calloc(sh[0]->n_params, sizeof(float));
    for (int r = 0; r < 2; r++) {
        for (int i = 0; i < full->n_tensors; i++) gm_train_shard_copy(sh[r], i, full->params, cut, 1);
        CHECKF(memcmp(cut, sh[r]->params, sizeof(float) * sh[r]->n_params) == 0, "shard %d init", r);
        for (int i = 0; i < full->n_tensors; i++) gm_train_shard_copy(sh[r], i, back, sh[r]->params, 0);
    }
    CHECK(memcmp(back, full->params, sizeof(float) * full->n_params) == 0);

    /* two shards in two threads = the full model */
    int32_t tok[B * (T + 1)];
    batch(tok, 3);
    float loss = 0;
    gm_train_zero_grad(full);
    CHECK_OK(gm_train_forward_backward(full, tok, B, T, &loss));
    pair_t pair;
    pthread_barrier_init(&pair.bar, NULL, 2);
    shard_t st[2];
    pthread_t th[2];
    for (int r = 0; r < 2; r++) {
        st[r] = (shard_t){&pair, r, sh[r], tok, 0, GM_OK};
        sh[r]->tp_sum = pair_sum, sh[r]->tp_ctx = &st[r];
        pthread_create(&th[r], NULL, shard_run, &st[r]);
    }
    for (int r = 0; r < 2; r++) pthread_join(th[r], NULL);
    pthread_barrier_destroy(&pair.bar);
    CHECK(st[0].st == GM_OK && st[1].st == GM_OK);
    CHECK(st[0].loss == st[1].loss);
    CHECK_NEAR(st[0].loss, loss, 1e-6 * loss);
    memset(back, 0, sizeof(float) * full->n_params);
    for (int i = 0; i < full->n_tensors; i++) {
        const gm_train_tensor *t = &sh[0]->tensors[i], *f = &full->tensors[i];
        if (t->numel == f->numel) { /* replicated: equal on both shards; MQA's k/v are partial sums */
            int partial = t->kind == GM_TT_K || t->kind == GM_TT_V;
            const float *g0 = sh[0]->grads + t->offset, *g1 = sh[1]->grads + t->offset;
            for (size_t j = 0; j < t->numel; j++) back[f->offset + j] = partial ? g0[j] + g1[j] : g0[j];
            if (!partial) CHECKF(memcmp(g0, g1, sizeof(float) * t->numel) == 0, "%s differs between shards", t->name);
        } else
            for (int r = 0; r < 2; r++) gm_train_shard_copy(sh[r], i, back, sh[r]->grads, 0);
        double worst = 0, big = 0;
        for (size_t j = 0; j < f->numel; j++) {
            double e = fabs((double)back[f->offset + j] - full->grads[f->offset + j]);
            worst = e > worst ? e : worst;
            big = fabs(full->grads[f->offset + j]) > big ? fabs(full->grads[f->offset + j]) : big;
        }
        CHECKF(worst <= 1e-5 * big, "%s (H %d, K %d): gradient off by %g of %g", f->name, heads, kv, worst, big);
    }
    free(back), free(cut);
    gm_train_model_free(full);
    for (int r = 0; r < 2; r++) gm_train_model_free(sh[r]);

    /* sizes the split does not divide */
    gm_train_model *bad = NULL;
    CHECK(gm_train_model_new_shard(&c, &o, 0, 3, &bad) == GM_ERR_ARG && bad == NULL);
    CHECKF(strstr(gm_last_error(), "model parallelism 3") != NULL, "%s", gm_last_error());
}

/* from_model: each shard is the cut of the full conversion (bf16 checkpoint, MQA). */
static void test_from_model(void) {
    gm_model *src = NULL;
    CHECK_OK(gm_model_load("models/tiny-gemma", NULL, &src));
    if (!src) return;
    gm_train_opts o = gm_train_opts_default(1, 4, 1);
    gm_train_model *full = NULL, *sh = NULL;
    CHECK_OK(gm_train_model_from_model(src, &o, &full));
    for (int r = 0; r < 2 && full; r++) {
        CHECK_OK(gm_train_model_from_model_shard(src, &o, r, 2, &sh));
        if (!sh) break;
        float *cut = calloc(sh->n_params, sizeof(float));
        for (int i = 0; i < sh->n_tensors; i++) gm_train_shard_copy(sh, i, full->params, cut, 1);
        CHECKF(memcmp(cut, sh->params, sizeof(float) * sh->n_params) == 0, "from_model shard %d", r);
        free(cut);
        gm_train_model_free(sh);
        sh = NULL;
    }
    gm_train_model_free(full);
    gm_model_free(src);
}

int main(int argc, char **argv) {
    gm_dist *d = NULL;
    CHECK_OK(gm_dist_init(&argc, &argv, 1, &d));
    if (!d) TEST_DONE();
    test_mesh(d);
    test_opt_equals_adamw(d, 1);
    test_opt_equals_adamw(d, 0);
    test_shards(4, 1); /* MQA: the KV head replicated */
    test_shards(4, 2); /* GQA: one KV head each */
    test_shards(2, 2); /* MHA */
    test_from_model();
    printf("MPI in this build: %s\n", gm_dist_have_mpi() ? "yes" : "no");
    gm_dist_finalize(d);
    TEST_DONE();
}
