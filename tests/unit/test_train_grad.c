/* Training gradients. (1) Every parameter's gradient on tiny Gemma 1 models (MQA; MHA with H·hd != d and
 * 3 ignored targets; GQA) against float64 PyTorch autograd (tools/ref/train_ref.py → tests/golden/train/):
 * per tensor max|ours − ref| / max|ref| ≤ 1e-4, loss within 1e-5 relative. (2) Finite differences:
 * every op on random inputs, and model-level spot checks of each tensor kind. (3) 1 vs 2 threads and
 * recompute on/off give bitwise identical gradients; two calls accumulate exactly twice the gradient. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "base/json.h"
#include "formats/safetensors.h"
#include "gemma.h"
#include "testlib.h"
#include "train/model_train.h"
#include "train/ops.h"

#define GRAD_TOL 1e-4
#define LOSS_TOL 1e-5

static const char *CASES[] = {"mqa", "mha", "gqa"};
static const char *KIND_NAMES[] = {"embed", "attn_norm", "q_proj", "k_proj", "v_proj", "o_proj",
                                   "ffn_norm", "gate_proj", "up_proj", "down_proj", "final_norm"};
#define N_KINDS 11
static double worst[N_KINDS];

/* ---- small helpers ----------------------------------------------------------------------------- */

static uint64_t rng_state = 12345;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rng_state >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}
static void fill(float *p, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) p[i] = frand() * scale;
}
static double dsum(const float *r, const float *y, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)r[i] * y[i];
    return s;
}

typedef struct {
    gm_train_model *m;
    int32_t *in, *tg;
    int B, T;
    double loss;
} gcase;

static int load_case(const char *name, int threads, int recompute, gcase *g) {
    char path[256];
    memset(g, 0, sizeof *g);
    snprintf(path, sizeof path, "tests/golden/train/%s/model", name);
    gm_model *src = NULL;
    gm_load_options o = gm_load_options_default();
    CHECK_OK(gm_model_load(path, &o, &src));
    if (!src) return 0;
    snprintf(path, sizeof path, "tests/golden/train/%s/batch.json", name);
    char *text = NULL;
    size_t len;
    gm_json_doc *doc = NULL;
    CHECK_OK(gm_file_read_all(path, &text, &len));
    if (text) CHECK_OK(gm_json_parse(text, len, path, &doc));
    free(text);
    if (!doc) { gm_model_free(src); return 0; }
    const gm_json *r = gm_json_root(doc);
    int64_t B = 0, T = 0;
    gm_json_get_int(r, "B", &B);
    gm_json_get_int(r, "T", &T);
    gm_json_get_num(r, "loss", &g->loss);
    g->B = (int)B, g->T = (int)T;
    g->in = malloc(sizeof(int32_t) * (size_t)(B * T));
    g->tg = malloc(sizeof(int32_t) * (size_t)(B * T));
    const gm_json *ji = gm_json_get(r, "inputs"), *jt = gm_json_get(r, "targets");
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            g->in[b * T + t] = (int32_t)ji->items[b].items[t].i;
            g->tg[b * T + t] = (int32_t)jt->items[b].items[t].i;
        }
    gm_json_free(doc);
    gm_train_opts opt = gm_train_opts_default(g->B, g->T, threads);
    opt.recompute = recompute;
    CHECK_OK(gm_train_model_from_model(src, &opt, &g->m));
    gm_model_free(src);
    return g->m != NULL;
}

static void free_case(gcase *g) {
    gm_train_model_free(g->m);
    free(g->in);
    free(g->tg);
}

/* ---- 1. gradients against PyTorch autograd ----------------------------------------------------- */

static void check_golden(const char *name) {
    gcase g;
    if (!load_case(name, 1, 0, &g)) return;
    float loss = 0;
    gm_train_zero_grad(g.m);
    CHECK_OK(gm_train_forward_backward_masked(g.m, g.in, g.tg, g.B, g.T, &loss));
    double lrel = fabs(loss - g.loss) / fabs(g.loss);
    CHECKF(lrel <= LOSS_TOL, "%s: loss %.7f vs reference %.7f (rel %.2e)", name, loss, g.loss, lrel);
    char path[256];
    snprintf(path, sizeof path, "tests/golden/train/%s/grads.safetensors", name);
    gm_st_file *f = NULL;
    CHECK_OK(gm_safetensors_open(path, 0, &f));
    if (!f) { free_case(&g); return; }
    CHECKF(gm_safetensors_count(f) == (size_t)g.m->n_tensors, "%s: %zu gradient tensors, model has %d", name,
           gm_safetensors_count(f), g.m->n_tensors);
    double case_worst = 0;
    for (int i = 0; i < g.m->n_tensors; i++) {
        const gm_train_tensor *t = &g.m->tensors[i];
        const gm_st_tensor *rt = gm_safetensors_find(f, t->name);
        CHECKF(rt && rt->dtype == GM_DT_F32 && rt->n_elems == t->numel, "%s: gradient %s missing or mis-shaped", name,
               t->name);
        if (!rt || rt->n_elems != t->numel) continue;
        const float *ref = rt->data, *ours = g.m->grads + t->offset;
        double md = 0, mr = 0;
        for (size_t k = 0; k < t->numel; k++) {
            double d = fabs((double)ours[k] - ref[k]);
            if (!(d <= md)) md = d; /* NaN sticks */
            mr = fmax(mr, fabs((double)ref[k]));
        }
        double rel = md / mr;
        CHECKF(rel <= GRAD_TOL, "%s: %s max rel error %.3e (max|ref| %.3e)", name, t->name, rel, mr);
        if (!(rel <= worst[t->kind])) worst[t->kind] = rel;
        if (!(rel <= case_worst)) case_worst = rel;
    }
    printf("%s: loss %.7f (ref %.7f, rel %.1e), worst gradient rel error %.2e\n", name, loss, g.loss, lrel, case_worst);
    gm_safetensors_close(f);
    free_case(&g);
}

/* ---- 2. determinism: threads, recompute, accumulation ------------------------------------------- */

static void check_determinism(const char *name) {
    gcase a, b, c;
    if (!load_case(name, 1, 0, &a)) return;
    if (!load_case(name, 2, 0, &b)) { free_case(&a); return; }
    if (!load_case(name, 2, 1, &c)) { free_case(&a); free_case(&b); return; }
    float la, lb, lc;
    CHECK_OK(gm_train_forward_backward_masked(a.m, a.in, a.tg, a.B, a.T, &la));
    CHECK_OK(gm_train_forward_backward_masked(b.m, b.in, b.tg, b.B, b.T, &lb));
    CHECK_OK(gm_train_forward_backward_masked(c.m, c.in, c.tg, c.B, c.T, &lc));
    size_t bytes = sizeof(float) * a.m->n_params;
    CHECKF(la == lb && memcmp(a.m->grads, b.m->grads, bytes) == 0, "%s: 1 and 2 threads differ", name);
    CHECKF(la == lc && memcmp(a.m->grads, c.m->grads, bytes) == 0, "%s: recompute changes the gradients", name);
    /* a second call without zeroing adds the same gradient again (each sum continues from the stored
     * value, so 2x up to f32 rounding, not bitwise) */
    float *once = malloc(bytes);
    memcpy(once, a.m->grads, bytes);
    CHECK_OK(gm_train_forward_backward_masked(a.m, a.in, a.tg, a.B, a.T, &la));
    for (int ti = 0; ti < a.m->n_tensors; ti++) {
        const gm_train_tensor *t = &a.m->tensors[ti];
        double md = 0, mr = 0;
        for (size_t i = t->offset; i < t->offset + t->numel; i++) {
            md = fmax(md, fabs((double)a.m->grads[i] - 2.0 * once[i]));
            mr = fmax(mr, fabs(2.0 * once[i]));
        }
        CHECKF(md <= 1e-6 * mr, "%s: %s: two accumulated calls are %.2e off twice one call", name, t->name, md / mr);
    }
    /* the loss-only call agrees with the training call */
    float l0;
    CHECK_OK(gm_train_loss_masked(a.m, a.in, a.tg, a.B, a.T, &l0));
    CHECK(l0 == la);
    free(once);
    free_case(&a);
    free_case(&b);
    free_case(&c);
}

/* The [B][T+1] entry point equals the masked one with shifted targets. */
static void check_packed_entry(void) {
    gcase g;
    if (!load_case("mqa", 1, 0, &g)) return;
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)g.B * (size_t)(g.T + 1));
    for (int b = 0; b < g.B; b++) {
        for (int t = 0; t < g.T; t++) tok[b * (g.T + 1) + t] = g.in[b * g.T + t];
        tok[b * (g.T + 1) + g.T] = g.tg[b * g.T + g.T - 1];
    }
    float l1, l2;
    CHECK_OK(gm_train_forward_backward(g.m, tok, g.B, g.T, &l1));
    float *first = malloc(sizeof(float) * g.m->n_params);
    memcpy(first, g.m->grads, sizeof(float) * g.m->n_params);
    gm_train_zero_grad(g.m);
    CHECK_OK(gm_train_forward_backward_masked(g.m, g.in, g.tg, g.B, g.T, &l2));
    CHECK(l1 == l2 && memcmp(first, g.m->grads, sizeof(float) * g.m->n_params) == 0);
    /* bad input is refused with a message, nothing computed */
    tok[3] = 999;
    CHECK(gm_train_forward_backward(g.m, tok, g.B, g.T, &l1) == GM_ERR_ARG);
    CHECK(gm_train_forward_backward(g.m, tok, g.B + 1, g.T, &l1) == GM_ERR_ARG);
    free(first);
    free(tok);
    free_case(&g);
}

/* ---- 3. finite differences, model level --------------------------------------------------------
 * The C forward is f32: the loss (~8) carries rounding noise of ~1e-6, so a central difference with
 * step h has noise ~1e-6 / h and truncation error O(h²). Each element is checked at h = 1e-2 and
 * h = 5e-3 ("double-checked": both must agree), with tolerance 2e-3·max|g of that tensor| + 2e-2·|g|:
 * far below what a wrong formula gives (the gradient would be off by O(|g|)), far above the noise. */
static void fd_model(const char *name) {
    gcase g;
    if (!load_case(name, 1, 0, &g)) return;
    float loss;
    gm_train_zero_grad(g.m);
    CHECK_OK(gm_train_forward_backward_masked(g.m, g.in, g.tg, g.B, g.T, &loss));
    double fd_worst = 0;
    int n_checked = 0;
    for (int ti = 0; ti < g.m->n_tensors; ti++) {
        const gm_train_tensor *t = &g.m->tensors[ti];
        if (t->layer > 0) continue; /* layer 0, the embedding and the final norm cover every kind */
        const float *gr = g.m->grads + t->offset;
        float *w = g.m->params + t->offset;
        size_t arg = 0;
        double gmax = 0;
        for (size_t k = 0; k < t->numel; k++)
            if (fabs(gr[k]) > gmax) gmax = fabs(gr[k]), arg = k;
        size_t picks[3] = {arg, (size_t)(t->numel * 0.37), (size_t)(t->numel * 0.81)};
        for (int p = 0; p < 3; p++) {
            size_t k = picks[p];
            float w0 = w[k];
            double tol = 2e-3 * gmax + 2e-2 * fabs(gr[k]);
            for (int s = 0; s < 2; s++) {
                float h = s ? 5e-3f : 1e-2f, lp, lm;
                w[k] = w0 + h;
                CHECK_OK(gm_train_loss_masked(g.m, g.in, g.tg, g.B, g.T, &lp));
                w[k] = w0 - h;
                CHECK_OK(gm_train_loss_masked(g.m, g.in, g.tg, g.B, g.T, &lm));
                w[k] = w0;
                double fd = ((double)lp - lm) / (2.0 * h), err = fabs(fd - gr[k]);
                CHECKF(err <= tol, "%s: %s[%zu] h %g: finite difference %.6e vs gradient %.6e", name, t->name, k,
                       (double)h, fd, (double)gr[k]);
                if (err / gmax > fd_worst) fd_worst = err / gmax;
                n_checked++;
            }
        }
    }
    printf("%s: %d finite differences, worst |fd - g| / max|g| = %.2e\n", name, n_checked, fd_worst);
    free_case(&g);
}

/* ---- 4. finite differences, op by op -------------------------------------------------------------
 * loss = Σ r ⊙ op(inputs) for random r, summed in double; central differences with h = 1e-3 on O(1)
 * inputs. Tolerance 1e-3·(1 + |g|): f32 noise is ~1e-4 here, a wrong term is O(1). */
#define OP_H 1e-3f
#define OP_TOL(g) (1e-3 * (1.0 + fabs(g)))

typedef double (*op_loss_fn)(void *ctx);

static void fd_inputs(const char *what, float *x, const float *g, size_t n, op_loss_fn f, void *ctx) {
    double worst_err = 0;
    for (size_t i = 0; i < n; i++) {
        float x0 = x[i];
        x[i] = x0 + OP_H;
        double lp = f(ctx);
        x[i] = x0 - OP_H;
        double lm = f(ctx);
        x[i] = x0;
        double fd = (lp - lm) / (2.0 * OP_H), err = fabs(fd - g[i]);
        CHECKF(err <= OP_TOL(g[i]), "%s[%zu]: finite difference %.6e vs gradient %.6e", what, i, fd, (double)g[i]);
        worst_err = fmax(worst_err, err / (1.0 + fabs(g[i])));
    }
    printf("  fd %-24s %4zu elements, worst %.1e\n", what, n, worst_err);
}

typedef struct {
    gm_attn_shape s;
    float *q, *k, *v, *out, *lse, *r, *scratch;
} attn_ctx;

static double attn_loss(void *p) {
    attn_ctx *c = p;
    gm_attention_forward(c->out, c->lse, c->q, c->k, c->v, &c->s, c->scratch, NULL);
    return dsum(c->r, c->out, (size_t)c->s.B * c->s.T * c->s.H * c->s.hd);
}

static void fd_attention(int H, int K, float softcap, int window, float qscale) {
    attn_ctx c;
    c.s = (gm_attn_shape){2, 6, H, K, 4, 0.5f, softcap, window};
    size_t N = 12, qn = N * (size_t)H * 4, kn = N * (size_t)K * 4;
    c.q = malloc(qn * 4), c.k = malloc(kn * 4), c.v = malloc(kn * 4), c.out = malloc(qn * 4), c.r = malloc(qn * 4);
    c.lse = malloc(N * (size_t)H * 4);
    c.scratch = malloc(gm_attention_scratch_floats(&c.s, 1) * 4);
    float *dq = calloc(qn, 4), *dk = calloc(kn, 4), *dv = calloc(kn, 4);
    fill(c.q, qn, qscale), fill(c.k, kn, 1.5f), fill(c.v, kn, 1), fill(c.r, qn, 1);
    attn_loss(&c);
    gm_attention_backward(dq, dk, dv, c.r, c.q, c.k, c.v, c.out, c.lse, &c.s, c.scratch, NULL);
    char what[64];
    snprintf(what, sizeof what, "attn H%d K%d cap%g W%d dq", H, K, (double)softcap, window);
    fd_inputs(what, c.q, dq, qn, attn_loss, &c);
    what[strlen(what) - 1] = 'k';
    fd_inputs(what, c.k, dk, kn, attn_loss, &c);
    what[strlen(what) - 1] = 'v';
    fd_inputs(what, c.v, dv, kn, attn_loss, &c);
    free(c.q), free(c.k), free(c.v), free(c.out), free(c.r), free(c.lse), free(c.scratch);
    free(dq), free(dk), free(dv);
}

typedef struct {
    float *x, *w, *y, *rstd, *r;
    int N, d;
} norm_ctx;

static double norm_loss(void *p) {
    norm_ctx *c = p;
    gm_rmsnorm_forward(c->y, c->rstd, c->x, c->w, c->N, c->d, 1e-6f, NULL);
    return dsum(c->r, c->y, (size_t)c->N * c->d);
}

static void fd_rmsnorm(void) {
    norm_ctx c = {NULL, NULL, NULL, NULL, NULL, 3, 8};
    size_t n = 24;
    c.x = malloc(n * 4), c.w = malloc(8 * 4), c.y = malloc(n * 4), c.rstd = malloc(3 * 4), c.r = malloc(n * 4);
    float *dx = calloc(n, 4), *dw = calloc(8, 4);
    fill(c.x, n, 2), fill(c.w, 8, 0.5f), fill(c.r, n, 1);
    norm_loss(&c);
    gm_rmsnorm_backward(dx, dw, c.r, c.x, c.w, c.rstd, 3, 8, NULL);
    fd_inputs("rmsnorm dx", c.x, dx, n, norm_loss, &c);
    fd_inputs("rmsnorm dw", c.w, dw, 8, norm_loss, &c);
    free(c.x), free(c.w), free(c.y), free(c.rstd), free(c.r), free(dx), free(dw);
}

typedef struct {
    float *g, *u, *h, *r;
    size_t n;
} geglu_ctx;

static double geglu_loss(void *p) {
    geglu_ctx *c = p;
    gm_geglu_forward(c->h, c->g, c->u, c->n, NULL);
    return dsum(c->r, c->h, c->n);
}

static void fd_geglu(void) {
    geglu_ctx c = {NULL, NULL, NULL, NULL, 40};
    c.g = malloc(40 * 4), c.u = malloc(40 * 4), c.h = malloc(40 * 4), c.r = malloc(40 * 4);
    float *dg = calloc(40, 4), *du = calloc(40, 4);
    fill(c.g, 40, 4), fill(c.u, 40, 2), fill(c.r, 40, 1);
    gm_geglu_backward(dg, du, c.r, c.g, c.u, 40, NULL);
    fd_inputs("geglu dgate", c.g, dg, 40, geglu_loss, &c);
    fd_inputs("geglu dup", c.u, du, 40, geglu_loss, &c);
    free(c.g), free(c.u), free(c.h), free(c.r), free(dg), free(du);
}

typedef struct {
    float *z, *loss, *lse;
    int32_t *tg;
    int N, V;
} ce_ctx;

static double ce_loss(void *p) {
    ce_ctx *c = p;
    int counted = gm_crossentropy_forward(c->loss, c->lse, c->z, c->tg, c->N, c->V, NULL);
    double s = 0;
    for (int n = 0; n < c->N; n++) s += c->loss[n];
    return s / counted;
}

static void fd_crossentropy(void) {
    int32_t tg[4] = {3, -1, 0, 6};
    ce_ctx c = {NULL, NULL, NULL, tg, 4, 7};
    c.z = malloc(28 * 4), c.loss = malloc(16), c.lse = malloc(16);
    float *dz = malloc(28 * 4);
    fill(c.z, 28, 3);
    double l = ce_loss(&c);
    CHECK(c.loss[1] == 0.0f);
    gm_crossentropy_backward(dz, c.z, c.lse, tg, 4, 7, 1.0f / 3.0f, NULL);
    for (int v = 0; v < 7; v++) CHECK(dz[7 + v] == 0.0f); /* the ignored row */
    fd_inputs("crossentropy dlogits", c.z, dz, 28, ce_loss, &c);
    /* in place, as the classifier runs it (after restoring lse, which the last difference left shifted) */
    ce_loss(&c);
    float *z2 = malloc(28 * 4);
    memcpy(z2, c.z, 28 * 4);
    gm_crossentropy_backward(z2, z2, c.lse, tg, 4, 7, 1.0f / 3.0f, NULL);
    CHECK(memcmp(z2, dz, 28 * 4) == 0);
    CHECK(l > 0);
    free(c.z), free(c.loss), free(c.lse), free(dz), free(z2);
}

/* Linear ops: the backward must be the exact transpose, <op(x), y> = <x, opᵀ(y)> (in double). */
static void transpose_checks(void) {
    /* RoPE */
    int B = 2, T = 5, heads = 3, hd = 8;
    size_t n = (size_t)B * T * heads * hd;
    float *cs = malloc((size_t)T * 4 * 4), *sn = malloc((size_t)T * 4 * 4);
    gm_rope_table(cs, sn, T, hd, 10000.0);
    float *x = malloc(n * 4), *y = malloc(n * 4), *rx = malloc(n * 4), *ry = malloc(n * 4);
    fill(x, n, 1), fill(y, n, 1);
    memcpy(rx, x, n * 4), memcpy(ry, y, n * 4);
    gm_rope_forward(rx, B, T, heads, hd, cs, sn, NULL);
    gm_rope_backward(ry, B, T, heads, hd, cs, sn, NULL);
    double a = dsum(rx, y, n), b = dsum(x, ry, n);
    CHECKF(fabs(a - b) <= 1e-5 * (fabs(a) + 1), "rope: <Rx,y> %.9g vs <x,R'y> %.9g", a, b);
    /* position 0 is the identity */
    CHECK(rx[0] == x[0] && rx[hd / 2] == x[hd / 2]);
    free(cs), free(sn), free(x), free(y), free(rx), free(ry);

    /* embedding with repeated ids */
    int32_t ids[5] = {2, 0, 2, 3, 2};
    float E[4 * 6], xe[5 * 6], ye[5 * 6], dE[4 * 6] = {0};
    fill(E, 24, 1), fill(ye, 30, 1);
    gm_embedding_forward(xe, ids, E, 5, 6, 2.5f, NULL);
    gm_embedding_backward(dE, ye, ids, 5, 6, 2.5f, NULL);
    a = dsum(xe, ye, 30), b = dsum(E, dE, 24);
    CHECKF(fabs(a - b) <= 1e-5 * (fabs(a) + 1), "embedding: %.9g vs %.9g", a, b);
    for (int i = 0; i < 6; i++) CHECK(dE[1 * 6 + i] == 0.0f); /* id 1 not in the batch */
}

/* gm_gemm_tn (both matmul_backward products) against a double loop, over shapes with edge tiles and
 * more than one k block, with 1 and 2 threads (bitwise equal). */
static void check_gemm(void) {
    int shapes[][3] = {{9, 37, 300}, {4, 16, 1}, {1, 1, 513}, {13, 64, 257}};
    gm_pool *pool = gm_pool_new(2);
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int N = shapes[si][0], in = shapes[si][1], out = shapes[si][2];
        float *x = malloc(sizeof(float) * N * in), *W = malloc(sizeof(float) * out * in), *dy = malloc(sizeof(float) * N * out);
        float *dx = malloc(sizeof(float) * N * in), *dW = malloc(sizeof(float) * out * in);
        float *dx2 = malloc(sizeof(float) * N * in), *dW2 = malloc(sizeof(float) * out * in);
        fill(x, (size_t)N * in, 1), fill(W, (size_t)out * in, 1), fill(dy, (size_t)N * out, 1);
        fill(dx, (size_t)N * in, 1), fill(dW, (size_t)out * in, 1); /* accumulates onto what is there */
        memcpy(dx2, dx, sizeof(float) * N * in), memcpy(dW2, dW, sizeof(float) * out * in);
        double worst_x = 0, worst_w = 0;
        float *dx0 = malloc(sizeof(float) * N * in), *dW0 = malloc(sizeof(float) * out * in);
        memcpy(dx0, dx, sizeof(float) * N * in), memcpy(dW0, dW, sizeof(float) * out * in);
        gm_matmul_backward(dx, dW, dy, x, W, N, in, out, NULL);
        gm_matmul_backward(dx2, dW2, dy, x, W, N, in, out, pool);
        CHECKF(memcmp(dx, dx2, sizeof(float) * N * in) == 0 && memcmp(dW, dW2, sizeof(float) * out * in) == 0,
               "gemm %dx%dx%d: 1 and 2 threads differ", N, in, out);
        for (int n = 0; n < N; n++)
            for (int i = 0; i < in; i++) {
                double s = dx0[n * in + i];
                for (int o = 0; o < out; o++) s += (double)dy[n * out + o] * W[o * in + i];
                worst_x = fmax(worst_x, fabs(s - dx[n * in + i]) / (1 + sqrt((double)out)));
            }
        for (int o = 0; o < out; o++)
            for (int i = 0; i < in; i++) {
                double s = dW0[o * in + i];
                for (int n = 0; n < N; n++) s += (double)dy[n * out + o] * x[n * in + i];
                worst_w = fmax(worst_w, fabs(s - dW[o * in + i]) / (1 + sqrt((double)N)));
            }
        CHECKF(worst_x < 1e-5 && worst_w < 1e-5, "gemm %dx%dx%d: error dx %.2e dW %.2e", N, in, out, worst_x, worst_w);
        free(x), free(W), free(dy), free(dx), free(dW), free(dx2), free(dW2), free(dx0), free(dW0);
    }
    gm_pool_free(pool);
}

int main(void) {
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) check_golden(CASES[i]);
    printf("worst gradient error per tensor kind (max|ours - ref| / max|ref|, all cases):\n");
    for (int k = 0; k < N_KINDS; k++) printf("  %-10s %.2e\n", KIND_NAMES[k], worst[k]);
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) check_determinism(CASES[i]);
    check_packed_entry();
    fd_model("mqa");
    fd_model("mha");
    printf("op-level finite differences:\n");
    fd_attention(4, 1, 0, 0, 1.5f);
    fd_attention(4, 2, 0, 3, 1.5f);
    fd_attention(2, 2, 2.0f, 0, 6.0f); /* scores up to ~20: the cap of 2 bends them hard */
    fd_rmsnorm();
    fd_geglu();
    fd_crossentropy();
    transpose_checks();
    check_gemm();
    TEST_DONE();
}
