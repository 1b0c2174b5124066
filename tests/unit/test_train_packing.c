/* SFT sequence packing (issue 7): several examples per row, attention kept inside each, RoPE positions that
 * restart at 0 at every example (train/ops.h *_pos, gm_train_*_packed, gm_sft_pack):
 *  - ops: attention with segments, a window and a soft-cap against a float64 masked reference (out, lse), its
 *    backward against finite differences; RoPE with positions = the table row of each position; pos NULL and
 *    pos = 0..T−1 bitwise the same;
 *  - model, MQA and GQA: a packed row of 3 examples (and padding) gives each token the loss it has with its
 *    example alone (≤ 1e-6 relative) and the parameter gradients of the 3 examples run alone with the same
 *    normalization (≤ 1e-5 relative per tensor); finite differences of the packed loss; pos NULL vs
 *    0..T−1 bitwise; one example alone in a padded row equals the unpacked call exactly; bad positions refused;
 *  - SFT: first-fit packing equals a naive first fit, every example exactly once and never split (long ones
 *    cut as the unpacked batch cuts them), rows' inputs / targets / positions, determinism in the seed; on
 *    tests/data/align the packed batches keep every trained token and give the unpacked token-weighted loss. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemma.h"
#include "testlib.h"
#include "train/model_train.h"
#include "train/ops.h"
#include "train/sft.h"

static uint64_t rng = 0x1234567ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}
static int irand(int n) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (int)((rng >> 33) % (uint64_t)n);
}
static void fill(float *p, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) p[i] = frand() * scale;
}

/* ---- ops ------------------------------------------------------------------------------------------- */

enum { OB = 2, OT = 9, OH = 4, OK = 2, OD = 4 };
/* row 0: segments of 4, 3, 2; row 1: 1, 6, 2 (longer than the window, so both bounds bite) */
static const int32_t OPOS[OB * OT] = {0, 1, 2, 3, 0, 1, 2, 0, 1, 0, 0, 1, 2, 3, 4, 5, 0, 1};

typedef struct {
    gm_attn_shape s;
    const int32_t *pos;
    float *q, *k, *v, *out, *lse, *r, *scratch;
} attn_ctx;

static double attn_loss(attn_ctx *c) {
    gm_attention_forward_pos(c->out, c->lse, c->q, c->k, c->v, c->pos, &c->s, c->scratch, NULL);
    double s = 0;
    for (size_t i = 0; i < (size_t)OB * OT * OH * OD; i++) s += (double)c->r[i] * c->out[i];
    return s;
}

static void check_ops(float softcap, int window) {
    attn_ctx c;
    c.s = (gm_attn_shape){OB, OT, OH, OK, OD, 0.5f, softcap, window};
    c.pos = OPOS;
    size_t N = OB * OT, qn = N * OH * OD, kn = N * OK * OD;
    c.q = malloc(qn * 4), c.k = malloc(kn * 4), c.v = malloc(kn * 4), c.out = malloc(qn * 4), c.r = malloc(qn * 4);
    c.lse = malloc(N * OH * 4), c.scratch = malloc(gm_attention_scratch_floats(&c.s, 1) * 4);
    float *dq = calloc(qn, 4), *dk = calloc(kn, 4), *dv = calloc(kn, 4);
    fill(c.q, qn, 2), fill(c.k, kn, 1.5f), fill(c.v, kn, 1), fill(c.r, qn, 1);
    attn_loss(&c);
    /* float64 reference: query n sees keys from max(window start, segment start) to itself */
    double worst = 0;
    for (size_t n = 0; n < N; n++)
        for (int h = 0; h < OH; h++) {
            int t = (int)(n % OT), lo = t - OPOS[n];
            if (window > 0 && t - window + 1 > lo) lo = t - window + 1;
            size_t row0 = n - (size_t)t;
            const float *q = c.q + (n * OH + (size_t)h) * OD;
            double sc[OT], mx = -INFINITY, sum = 0, o[OD] = {0};
            for (int j = lo; j <= t; j++) {
                const float *k = c.k + ((row0 + (size_t)j) * OK + (size_t)(h / (OH / OK))) * OD;
                double d = 0;
                for (int i = 0; i < OD; i++) d += (double)q[i] * k[i];
                d *= 0.5;
                if (softcap > 0) d = softcap * tanh(d / softcap);
                sc[j] = d, mx = d > mx ? d : mx;
            }
            for (int j = lo; j <= t; j++) sum += exp(sc[j] - mx);
            for (int j = lo; j <= t; j++) {
                const float *v = c.v + ((row0 + (size_t)j) * OK + (size_t)(h / (OH / OK))) * OD;
                for (int i = 0; i < OD; i++) o[i] += exp(sc[j] - mx) / sum * v[i];
            }
            for (int i = 0; i < OD; i++) worst = fmax(worst, fabs(o[i] - c.out[(n * OH + (size_t)h) * OD + (size_t)i]));
            worst = fmax(worst, fabs(mx + log(sum) - c.lse[n * OH + (size_t)h]));
        }
    CHECKF(worst <= 1e-5, "attention with segments (cap %g, window %d): %.2e from the float64 reference",
           (double)softcap, window, worst);
    /* backward against central differences of Σ r ⊙ out */
    gm_attention_backward_pos(dq, dk, dv, c.r, c.q, c.k, c.v, c.out, c.lse, OPOS, &c.s, c.scratch, NULL);
    float *xs[3] = {c.q, c.k, c.v}, *gs[3] = {dq, dk, dv};
    size_t ns[3] = {qn, kn, kn};
    double fd_worst = 0;
    for (int w = 0; w < 3; w++)
        for (size_t i = 0; i < ns[w]; i++) {
            float x0 = xs[w][i], h = 1e-3f;
            xs[w][i] = x0 + h;
            double lp = attn_loss(&c);
            xs[w][i] = x0 - h;
            double lm = attn_loss(&c);
            xs[w][i] = x0;
            double fd = (lp - lm) / (2.0 * h), err = fabs(fd - gs[w][i]);
            CHECKF(err <= 1e-3 * (1.0 + fabs(gs[w][i])), "d%c[%zu] (cap %g, window %d): %g vs fd %g", "qkv"[w], i,
                   (double)softcap, window, (double)gs[w][i], fd);
            fd_worst = fmax(fd_worst, err / (1.0 + fabs(gs[w][i])));
        }
    printf("  attention segments cap %g window %d: forward %.1e, backward fd %.1e\n", (double)softcap, window, worst,
           fd_worst);

    /* pos = 0..T-1 is one segment per row: bitwise pos NULL, forward and backward */
    int32_t ident[OB * OT];
    for (int n = 0; n < OB * OT; n++) ident[n] = n % OT;
    float *o2 = malloc(qn * 4), *l2 = malloc(N * OH * 4), *dq2 = calloc(qn, 4), *dk2 = calloc(kn, 4),
          *dv2 = calloc(kn, 4);
    memset(dq, 0, qn * 4), memset(dk, 0, kn * 4), memset(dv, 0, kn * 4);
    gm_attention_forward(c.out, c.lse, c.q, c.k, c.v, &c.s, c.scratch, NULL);
    gm_attention_backward(dq, dk, dv, c.r, c.q, c.k, c.v, c.out, c.lse, &c.s, c.scratch, NULL);
    gm_attention_forward_pos(o2, l2, c.q, c.k, c.v, ident, &c.s, c.scratch, NULL);
    gm_attention_backward_pos(dq2, dk2, dv2, c.r, c.q, c.k, c.v, o2, l2, ident, &c.s, c.scratch, NULL);
    CHECK(!memcmp(c.out, o2, qn * 4) && !memcmp(c.lse, l2, N * OH * 4));
    CHECK(!memcmp(dq, dq2, qn * 4) && !memcmp(dk, dk2, kn * 4) && !memcmp(dv, dv2, kn * 4));
    free(o2), free(l2), free(dq2), free(dk2), free(dv2);
    free(c.q), free(c.k), free(c.v), free(c.out), free(c.r), free(c.lse), free(c.scratch), free(dq), free(dk), free(dv);
}

/* RoPE with positions: token n rotated by the table row pos[n]; its transpose undoes it. */
static void check_rope(void) {
    enum { HD = 8, HALF = 4, NH = 2 };
    float cs[OT * HALF], sn[OT * HALF];
    gm_rope_table(cs, sn, OT, HD, 10000.0);
    size_t n_el = (size_t)OB * OT * NH * HD;
    float *x = malloc(n_el * 4), *y = malloc(n_el * 4), *z = malloc(n_el * 4);
    fill(x, n_el, 1);
    memcpy(y, x, n_el * 4);
    gm_rope_forward_pos(y, OPOS, OB, OT, NH, HD, cs, sn, NULL);
    int ok = 1;
    for (size_t n = 0; n < (size_t)OB * OT; n++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < HALF; i++) {
                size_t b = (n * NH + (size_t)h) * HD;
                float c = cs[OPOS[n] * HALF + i], s = sn[OPOS[n] * HALF + i];
                ok &= y[b + (size_t)i] == x[b + (size_t)i] * c - x[b + (size_t)i + HALF] * s;
                ok &= y[b + (size_t)i + HALF] == x[b + (size_t)i + HALF] * c + x[b + (size_t)i] * s;
            }
    CHECKF(ok, "RoPE with positions does not rotate each token by its position's angle");
    gm_rope_backward_pos(y, OPOS, OB, OT, NH, HD, cs, sn, NULL);
    double err = 0;
    for (size_t i = 0; i < n_el; i++) err = fmax(err, fabs(y[i] - x[i]));
    CHECK(err <= 1e-6);
    int32_t ident[OB * OT];
    for (int n = 0; n < OB * OT; n++) ident[n] = n % OT;
    memcpy(y, x, n_el * 4), memcpy(z, x, n_el * 4);
    gm_rope_forward(y, OB, OT, NH, HD, cs, sn, NULL);
    gm_rope_forward_pos(z, ident, OB, OT, NH, HD, cs, sn, NULL);
    CHECK(!memcmp(y, z, n_el * 4));
    free(x), free(y), free(z);
}

/* ---- model ----------------------------------------------------------------------------------------- */

static gm_config tiny_config(int kv_heads, int vocab) {
    gm_config c;
    memset(&c, 0, sizeof c);
    c.family = 1, c.vocab_size = vocab, c.hidden_size = 32, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = kv_heads;
    c.head_dim = 8, c.ffn_size = 64, c.max_pos = 256, c.rms_eps = 1e-6f, c.rope_theta = 10000;
    c.rope_local_theta = 10000, c.rope_scale = 1, c.query_scale = 1.0f / sqrtf(8.0f), c.embed_scale = sqrtf(32.0f);
    c.bos_id = 2, c.eos_id = 1, c.pad_id = 0;
    for (int l = 0; l < c.n_layers; l++) c.layer_global[l] = 1;
    return c;
}

enum { NEX = 3, PT = 18 };
static const int LENS[NEX] = {5, 7, 4}; /* positions; 16 of the row's 18, then 2 pad tokens */

/* Per tensor max|a − b| / max|b|. */
static double grad_rel(const gm_train_model *m, const float *a, const float *b, const char **worst_name) {
    double worst = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const gm_train_tensor *t = &m->tensors[i];
        double d = 0, ref = 0;
        for (size_t k = 0; k < t->numel; k++) {
            d = fmax(d, fabs((double)a[t->offset + k] - b[t->offset + k]));
            ref = fmax(ref, fabs((double)b[t->offset + k]));
        }
        double r = ref > 0 ? d / ref : d;
        if (r > worst) worst = r, *worst_name = t->name;
    }
    return worst;
}

static void check_model(int kv_heads) {
    gm_config c = tiny_config(kv_heads, 64);
    gm_train_opts o = gm_train_opts_default(2, PT, 2);
    gm_train_model *m = NULL;
    CHECK_OK(gm_train_model_new(&c, &o, &m));
    if (!m) return;
    gm_train_init(m, 11 + (uint64_t)kv_heads, 0.2f);
    /* three examples: ids from 3..63, the first tokens of each "prompt" (target −1) */
    int32_t ex_in[NEX][8], ex_tg[NEX][8], in[PT], tg[PT], pos[PT];
    int t = 0, counted = 0;
    for (int e = 0; e < NEX; e++)
        for (int j = 0; j < LENS[e]; j++, t++) {
            ex_in[e][j] = j == 0 ? 2 : 3 + irand(61);
            ex_tg[e][j] = j < 2 ? -1 : 3 + irand(61);
            in[t] = ex_in[e][j], tg[t] = ex_tg[e][j], pos[t] = j;
            counted += ex_tg[e][j] >= 0;
        }
    for (; t < PT; t++) in[t] = 0, tg[t] = -1, pos[t] = 0;

    /* per-token losses: packed vs each example alone */
    float lp_packed[PT], lp_alone[8];
    CHECK_OK(gm_train_logprobs_packed(m, in, tg, pos, 1, PT, lp_packed));
    double worst_tok = 0;
    t = 0;
    for (int e = 0; e < NEX; e++) {
        CHECK_OK(gm_train_logprobs(m, ex_in[e], ex_tg[e], 1, LENS[e], lp_alone));
        for (int j = 0; j < LENS[e]; j++, t++) {
            double d = fabs((double)lp_packed[t] - lp_alone[j]), rel = d / fmax(fabs(lp_alone[j]), 1e-30);
            if (lp_alone[j] == 0) rel = d;
            CHECKF(rel <= 1e-6, "kv %d example %d token %d: packed log p %.9g, alone %.9g", kv_heads, e, j,
                   (double)lp_packed[t], (double)lp_alone[j]);
            worst_tok = fmax(worst_tok, rel);
        }
    }
    for (; t < PT; t++) CHECK(lp_packed[t] == 0);

    /* gradients: the packed mean over all counted targets = the examples alone, each weighted 1/counted */
    float loss = 0;
    gm_train_zero_grad(m);
    CHECK_OK(gm_train_forward_backward_packed(m, in, tg, pos, 1, PT, &loss));
    CHECK(m->last_targets == counted && isfinite(loss) && loss > 0);
    float *g_packed = malloc(sizeof(float) * m->n_params);
    memcpy(g_packed, m->grads, sizeof(float) * m->n_params);
    gm_train_zero_grad(m);
    double sum_alone = 0;
    for (int e = 0; e < NEX; e++) {
        float w[8], le = 0;
        for (int j = 0; j < LENS[e]; j++) w[j] = ex_tg[e][j] >= 0 ? 1.0f / (float)counted : 0.0f;
        CHECK_OK(gm_train_forward_backward_weighted(m, ex_in[e], ex_tg[e], w, 1, LENS[e], NULL, &le));
        sum_alone += le;
    }
    const char *name = "";
    double worst_g = grad_rel(m, g_packed, m->grads, &name);
    CHECKF(worst_g <= 1e-5, "kv %d: packed gradients differ from the examples alone by %.2e (%s)", kv_heads, worst_g,
           name);
    CHECK_NEAR(loss, sum_alone, 1e-6 * fabs(sum_alone));
    printf("  kv %d: per-token loss %.1e, gradients %.1e (%s) relative to the examples alone\n", kv_heads, worst_tok,
           worst_g, name);

    /* finite differences of the packed mean loss on sampled parameters (params near the used embedding rows) */
    memcpy(m->grads, g_packed, sizeof(float) * m->n_params);
    int checked = 0;
    double fd_worst = 0;
    for (int ti = 0; ti < m->n_tensors; ti++) {
        const gm_train_tensor *tt = &m->tensors[ti];
        for (int k = 0; k < 2; k++) {
            size_t i = tt->offset + ((size_t)k * 7919u + (size_t)ti * 131u) % tt->numel;
            if (tt->kind == GM_TT_EMBED) i = tt->offset + (size_t)in[3 + 5 * k] * 32 + (size_t)(k * 11);
            float keep = m->params[i], eps = 1e-3f, lp = 0, lm = 0;
            m->params[i] = keep + eps;
            CHECK_OK(gm_train_loss_packed(m, in, tg, pos, 1, PT, &lp));
            m->params[i] = keep - eps;
            CHECK_OK(gm_train_loss_packed(m, in, tg, pos, 1, PT, &lm));
            m->params[i] = keep;
            double fd = ((double)lp - lm) / (2.0 * eps), g = g_packed[i];
            double scale = fmax(fabs(fd), fabs(g));
            CHECKF(fabs(fd - g) <= 2e-2 * scale + 2e-3, "kv %d %s[%zu]: packed gradient %g, finite difference %g",
                   kv_heads, tt->name, i - tt->offset, g, fd);
            fd_worst = fmax(fd_worst, fabs(fd - g) / (scale + 0.1));
            checked++;
        }
    }
    CHECK(checked == 2 * m->n_tensors);
    printf("  kv %d: finite differences of the packed loss, %d parameters, worst %.1e\n", kv_heads, checked, fd_worst);

    /* pos NULL and pos 0..T−1 per row: identical bits (loss, log-probs, gradients), B = 2 */
    int32_t in2[2 * PT], tg2[2 * PT], id2[2 * PT];
    for (int n = 0; n < 2 * PT; n++) in2[n] = 3 + irand(61), tg2[n] = n % 5 == 0 ? -1 : 3 + irand(61), id2[n] = n % PT;
    float la = 0, lb = 0, pa[2 * PT], pb[2 * PT];
    gm_train_zero_grad(m);
    CHECK_OK(gm_train_forward_backward_masked(m, in2, tg2, 2, PT, &la));
    memcpy(g_packed, m->grads, sizeof(float) * m->n_params);
    gm_train_zero_grad(m);
    CHECK_OK(gm_train_forward_backward_packed(m, in2, tg2, id2, 2, PT, &lb));
    CHECK(la == lb && !memcmp(g_packed, m->grads, sizeof(float) * m->n_params));
    CHECK_OK(gm_train_logprobs(m, in2, tg2, 2, PT, pa));
    CHECK_OK(gm_train_logprobs_packed(m, in2, tg2, id2, 2, PT, pb));
    CHECK(!memcmp(pa, pb, sizeof pa));
    CHECK_OK(gm_train_loss_packed(m, in2, tg2, NULL, 2, PT, &lb));
    CHECK(la == lb);

    /* one example alone in a row, then padding that is its own segments: every value the unpacked padded call
     * gives (the padding's targets are −1 and nothing attends to it, so its different context changes nothing) */
    int32_t in1[PT], tg1[PT], pos1[PT];
    for (int n = 0; n < PT; n++) {
        in1[n] = n < 11 ? in2[n] : 0;
        tg1[n] = n < 11 ? tg2[n] : -1;
        pos1[n] = n < 11 ? n : 0;
    }
    gm_train_zero_grad(m);
    CHECK_OK(gm_train_forward_backward_masked(m, in1, tg1, 1, PT, &la));
    memcpy(g_packed, m->grads, sizeof(float) * m->n_params);
    gm_train_zero_grad(m);
    CHECK_OK(gm_train_forward_backward_packed(m, in1, tg1, pos1, 1, PT, &lb));
    size_t differ = 0;
    for (size_t i = 0; i < m->n_params; i++) differ += g_packed[i] != m->grads[i];
    CHECKF(la == lb && differ == 0, "kv %d: alone in a padded row: loss %.9g vs %.9g, %zu gradients differ", kv_heads,
           (double)la, (double)lb, differ);

    /* positions that are not segments are refused, naming the place */
    int32_t badpos[PT];
    memcpy(badpos, pos, sizeof badpos);
    badpos[7] = 4; /* example 2's third token: 2 expected */
    CHECK(gm_train_loss_packed(m, in, tg, badpos, 1, PT, &lb) == GM_ERR_ARG && strstr(gm_last_error(), "[0][7]"));
    badpos[7] = pos[7], badpos[0] = 1;
    CHECK(gm_train_forward_backward_packed(m, in, tg, badpos, 1, PT, &lb) == GM_ERR_ARG);
    free(g_packed);
    gm_train_model_free(m);
}

/* ---- SFT packing ----------------------------------------------------------------------------------- */

/* First fit the slow way: rows' room scanned in order. */
static int naive_first_fit(const gm_sft_example *ex, const int *order, int n, int T, int *row_of) {
    int *room = malloc(sizeof(int) * (size_t)(n + 1)), rows = 0;
    for (int i = 0; i < n; i++) {
        int need = gm_sft_positions(&ex[order[i]], T), r = 0;
        while (r < rows && room[r] < need) r++;
        if (r == rows) room[rows++] = T;
        room[r] -= need;
        row_of[order[i]] = r;
    }
    free(room);
    return rows;
}

/* Rows of p against the examples: each example once, whole, at its place; inputs, targets, positions. */
static void check_rows(const gm_sft_example *ex, int n, const gm_sft_packing *p, int T) {
    int *seen = calloc((size_t)n, sizeof(int));
    int32_t *in = malloc(sizeof(int32_t) * (size_t)T), *tg = malloc(sizeof(int32_t) * (size_t)T),
            *pos = malloc(sizeof(int32_t) * (size_t)T);
    int bad = 0;
    size_t positions = 0;
    for (int r = 0; r < p->n_rows; r++) {
        gm_sft_pack_row(ex, p, r, T, 0, in, tg, pos);
        int t = 0;
        for (int i = p->row_start[r]; i < p->row_start[r + 1]; i++) {
            const gm_sft_example *e = &ex[p->items[i]];
            seen[p->items[i]]++;
            int k = gm_sft_positions(e, T);
            for (int j = 0; j < k; j++, t++) {
                int32_t want_tg = j + 1 < e->n && e->mask[j + 1] ? e->ids[j + 1] : -1;
                bad += t >= T || in[t] != e->ids[j] || tg[t] != want_tg || pos[t] != j;
            }
        }
        bad += t != p->row_len[r] || t > T;
        positions += (size_t)t;
        for (; t < T; t++) bad += in[t] != 0 || tg[t] != -1 || pos[t] != 0;
    }
    int once = 1;
    for (int i = 0; i < n; i++) once &= seen[i] == 1;
    CHECKF(once && p->n_items == n, "an example is missing or packed twice");
    CHECKF(bad == 0, "%d row positions differ from their examples", bad);
    CHECK(positions == p->n_positions);
    free(seen), free(in), free(tg), free(pos);
}

static void check_sft_packing(void) {
    /* synthetic: 300 examples of 2..90 ids (some longer than T + 1 = 65: cut, alone in a row) */
    enum { NS = 300, ST = 64 };
    gm_sft_example *ex = calloc(NS, sizeof *ex);
    for (int i = 0; i < NS; i++) {
        int n = i % 37 == 5 ? 66 + irand(25) : 2 + irand(40);
        ex[i].n = n, ex[i].ids = malloc(sizeof(int32_t) * (size_t)n), ex[i].mask = malloc((size_t)n);
        for (int j = 0; j < n; j++) ex[i].ids[j] = 3 + irand(500), ex[i].mask[j] = j > n / 3;
    }
    int order[NS], order2[NS];
    gm_sft_epoch_order(NS, 7, 0, order);
    gm_sft_epoch_order(NS, 7, 0, order2);
    CHECK(!memcmp(order, order2, sizeof order));
    gm_sft_epoch_order(NS, 7, 1, order2);
    CHECK(memcmp(order, order2, sizeof order) != 0); /* a fresh order each epoch */
    gm_sft_packing p, p2;
    CHECK_OK(gm_sft_pack(ex, order, NS, ST, &p));
    CHECK_OK(gm_sft_pack(ex, order, NS, ST, &p2));
    CHECK(p.n_rows == p2.n_rows && !memcmp(p.items, p2.items, sizeof(int) * NS) &&
          !memcmp(p.row_len, p2.row_len, sizeof(int) * (size_t)p.n_rows));
    int row_of[NS];
    int rows = naive_first_fit(ex, order, NS, ST, row_of);
    int same = rows == p.n_rows;
    for (int r = 0; r < p.n_rows && same; r++)
        for (int i = p.row_start[r]; i < p.row_start[r + 1]; i++) same &= row_of[p.items[i]] == r;
    CHECKF(same, "first fit: %d rows, the naive first fit %d (or other places)", p.n_rows, rows);
    check_rows(ex, NS, &p, ST);
    size_t total = 0;
    for (int i = 0; i < NS; i++) total += (size_t)gm_sft_positions(&ex[i], ST);
    CHECK(total == p.n_positions);
    double eff = (double)p.n_positions / ((double)p.n_rows * ST);
    CHECKF(eff > 0.9, "packing efficiency %.3f", eff);
    printf("  synthetic: %d examples into %d rows of %d, efficiency %.3f\n", NS, p.n_rows, ST, eff);
    /* a long example alone fills a row: cut to T positions, never split */
    int long_ok = 1;
    for (int r = 0; r < p.n_rows; r++)
        for (int i = p.row_start[r]; i < p.row_start[r + 1]; i++)
            if (ex[p.items[i]].n > ST + 1) long_ok &= p.row_start[r + 1] - p.row_start[r] == 1 && p.row_len[r] == ST;
    CHECK(long_ok);
    gm_sft_packing_free(&p2);
    CHECK_OK(gm_sft_pack(ex, order2, NS, ST, &p2));
    CHECK(memcmp(p.items, p2.items, sizeof(int) * NS) != 0); /* another epoch, other rows */
    check_rows(ex, NS, &p2, ST);
    gm_sft_packing_free(&p);
    gm_sft_packing_free(&p2);
    CHECK(gm_sft_pack(ex, NULL, NS, 0, &p) == GM_ERR_ARG);
    for (int i = 0; i < NS; i++) gm_sft_example_free(&ex[i]);
    free(ex);

    /* tests/data/align with the tiny tokenizer: packed rows keep every trained token, and their token-weighted
     * loss is the one-example-per-row loss */
    gm_tokenizer *tok = NULL;
    CHECK_OK(gm_tokenizer_load("tests/data/tiny.model", &tok));
    if (!tok) return;
    gm_sft_load_opts lo = {GM_ON_BAD_STOP, 193, NULL, 0};
    gm_sft_data d;
    CHECK_OK(gm_sft_load("tests/data/align/sft_tiny.jsonl", tok, &lo, &d));
    gm_tokenizer_free(tok);
    if (d.n == 0) return;
    enum { T = 192 };
    CHECK_OK(gm_sft_pack(d.ex, NULL, d.n, T, &p));
    check_rows(d.ex, d.n, &p, T);
    CHECK(p.n_rows < d.n); /* short examples share rows */
    gm_config c = tiny_config(2, 1024);
    int maxb = d.n > p.n_rows ? d.n : p.n_rows;
    gm_train_opts o = gm_train_opts_default(maxb, T, 2);
    gm_train_model *m = NULL;
    CHECK_OK(gm_train_model_new(&c, &o, &m));
    if (m) {
        gm_train_init(m, 5, 0.05f);
        int32_t *in = malloc(sizeof(int32_t) * (size_t)maxb * T), *tg = malloc(sizeof(int32_t) * (size_t)maxb * T),
                *pos = malloc(sizeof(int32_t) * (size_t)maxb * T);
        long trained = 0;
        for (int r = 0; r < p.n_rows; r++) {
            gm_sft_pack_row(d.ex, &p, r, T, 0, in + (size_t)r * T, tg + (size_t)r * T, pos + (size_t)r * T);
            for (int t = 0; t < T; t++) trained += tg[(size_t)r * T + t] >= 0;
        }
        CHECKF(trained == (long)d.n_loss_tokens, "packed rows train %ld tokens, the examples have %zu", trained,
               d.n_loss_tokens);
        float lp = 0, lu = 0;
        CHECK_OK(gm_train_loss_packed(m, in, tg, pos, p.n_rows, T, &lp));
        const gm_sft_example **rows_ex = malloc(sizeof *rows_ex * (size_t)d.n);
        for (int i = 0; i < d.n; i++) rows_ex[i] = &d.ex[i];
        gm_sft_batch(rows_ex, d.n, T, 0, in, tg);
        CHECK_OK(gm_train_loss_masked(m, in, tg, d.n, T, &lu));
        CHECK_NEAR(lp, lu, 1e-5 * fabs(lu));
        printf("  align data: %d examples in %d rows of %d, loss packed %.7f, one per row %.7f\n", d.n, p.n_rows, T,
               (double)lp, (double)lu);
        free(rows_ex), free(in), free(tg), free(pos);
        gm_train_model_free(m);
    }
    gm_sft_packing_free(&p);
    gm_sft_data_free(&d);
}

int main(void) {
    check_ops(0, 0);
    check_ops(0, 3);
    check_ops(2.0f, 2);
    check_rope();
    check_model(1); /* MQA */
    check_model(2); /* GQA */
    check_sft_packing();
    TEST_DONE();
}
