/* RLHF with REINFORCE + KL (train/rlhf.h), issue 7 check 4:
 *  - on a fixed batch of samples (one prompt, K = 4 responses of 1..6 tokens, given rewards, β 0.1, length
 *    penalty 0.01) the per-token log-probabilities under policy and reference, the KL, the scores, the
 *    leave-one-out advantages, the loss and every gradient equal float64 PyTorch (tools/ref/align_ref.py →
 *    tests/golden/align/rlhf/): gradients per tensor ≤ 1e-4 relative, loss ≤ 1e-5 relative, log-probs ≤ 2e-5;
 *  - the sampler draws from softmax(logits / temperature): empirical first-token frequencies over 4096
 *    draws within a total-variation distance of 0.06 of the exact distribution at temperatures 1 and 0.5,
 *    and the logged entropy equals the exact one; the KV-cached sampler (inference engine over the policy's
 *    buffers) and the full-forward one draw the same responses from the same seed;
 *  - learning (AdamW lr 3e-3, 4 prompts × K 8 samples of up to 8 tokens per step, 40 steps, tiny model):
 *    with reward = fraction of a target token in the response and β 0.1, the mean reward over the last 5
 *    steps exceeds that of the first 5 by at least 0.15 while the KL to the reference stays below 2.5 nats per
 *    response on average over the run and below 6 at every step (with β 0 the same run's KL peaks above twice
 *    that run's peak, measured 12 nats); with β = 1000 the policy
 *    stays at the reference: mean KL below 0.2 nats per response (Adam's normalized steps jitter it by about
 *    lr) and under 1/20 of the β 0 run's, and the reward does not rise;
 *  - the same seed gives the same run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/file.h"
#include "base/json.h"
#include "formats/safetensors.h"
#include "gemma.h"
#include "testlib.h"
#include "train/adamw.h"
#include "train/dist.h"
#include "train/model_train.h"
#include "train/rlhf.h"
#include "train/sft.h"

#define GOLD "tests/golden/align/rlhf"

static gm_json_doc *read_json(const char *path) {
    char *text = NULL;
    size_t len = 0;
    gm_json_doc *doc = NULL;
    CHECK_OK(gm_file_read_all(path, &text, &len));
    if (text) CHECK_OK(gm_json_parse(text, len, path, &doc));
    free(text);
    return doc;
}

static gm_train_model *load_train(const char *dir, int B, int T) {
    gm_model *src = NULL;
    gm_load_options lo = gm_load_options_default();
    CHECK_OK(gm_model_load(dir, &lo, &src));
    gm_train_opts to = gm_train_opts_default(B, T, 1);
    gm_train_model *m = NULL;
    if (src) CHECK_OK(gm_train_model_from_model(src, &to, &m));
    gm_model_free(src);
    return m;
}

/* ---- the REINFORCE gradient on a fixed batch ------------------------------------------------------- */

static void check_golden(void) {
    gm_json_doc *doc = read_json(GOLD "/rlhf.json");
    if (!doc) return;
    const gm_json *r = gm_json_root(doc);
    int64_t K = 0, T = 0;
    double beta = 0, lp = 0, ref_loss = 0;
    gm_json_get_int(r, "K", &K);
    gm_json_get_int(r, "T", &T);
    gm_json_get_num(r, "beta", &beta);
    gm_json_get_num(r, "len_penalty", &lp);
    gm_json_get_num(r, "loss", &ref_loss);
    const gm_json *jp = gm_json_get(r, "prompt"), *jr = gm_json_get(r, "responses"), *jw = gm_json_get(r, "rewards");
    gm_train_model *pol = load_train(GOLD "/policy", (int)K, (int)T), *ref = load_train(GOLD "/ref", (int)K, (int)T);
    gm_rlhf_group g;
    CHECK_OK(gm_rlhf_group_new(&g, (int)K, (int)T + 1));
    if (!pol || !ref || !g.seq) goto done;
    int32_t prompt[64], resp[8][64];
    int n_resp[8];
    const int32_t *rp[8];
    for (size_t i = 0; i < jp->len; i++) prompt[i] = (int32_t)jp->items[i].i;
    for (int k = 0; k < K; k++) {
        n_resp[k] = (int)jr->items[k].len;
        for (int t = 0; t < n_resp[k]; t++) resp[k][t] = (int32_t)jr->items[k].items[t].i;
        rp[k] = resp[k];
        g.reward[k] = (float)jw->items[k].num;
    }
    CHECK_OK(gm_rlhf_group_set(&g, prompt, (int)jp->len, rp, n_resp));
    gm_rlhf_opts o = gm_rlhf_opts_default();
    o.K = (int)K, o.beta = (float)beta, o.len_penalty = (float)lp;
    CHECK_OK(gm_rlhf_advantages(pol, ref, &o, &g));
    /* per-token log-probs (packed [K][T] as the reference's) */
    const gm_json *jl = gm_json_get(r, "logp"), *jlr = gm_json_get(r, "logp_ref");
    double dl = 0, dlr = 0;
    for (int k = 0; k < K; k++)
        for (int t = 0; t < T; t++) {
            dl = fmax(dl, fabs(g.logp[k * T + t] - jl->items[k].items[t].num));
            dlr = fmax(dlr, fabs(g.logp_ref[k * T + t] - jlr->items[k].items[t].num));
        }
    CHECKF(dl <= 2e-5 && dlr <= 2e-5, "log-probs off by %.2e (policy), %.2e (reference)", dl, dlr);
    const char *KEYS[3] = {"kl", "score", "advantages"};
    const float *OURS[3] = {g.kl, g.score, g.adv};
    double dk[3] = {0, 0, 0};
    for (int j = 0; j < 3; j++) {
        const gm_json *a = gm_json_get(r, KEYS[j]);
        for (int k = 0; k < K; k++) dk[j] = fmax(dk[j], fabs(OURS[j][k] - a->items[k].num));
        CHECKF(dk[j] <= 1e-4, "%s off by %.2e", KEYS[j], dk[j]);
    }
    float loss = 0;
    gm_train_zero_grad(pol);
    CHECK_OK(gm_rlhf_backward(pol, &g, 1.0f / (float)K, &loss));
    double lrel = fabs(loss - ref_loss) / fabs(ref_loss);
    CHECKF(lrel <= 1e-5, "REINFORCE loss %.7f vs reference %.7f", loss, ref_loss);
    gm_st_file *f = NULL;
    CHECK_OK(gm_safetensors_open(GOLD "/grads.safetensors", 0, &f));
    double worst = 0;
    for (int i = 0; f && i < pol->n_tensors; i++) {
        const gm_train_tensor *t = &pol->tensors[i];
        const gm_st_tensor *rt = gm_safetensors_find(f, t->name);
        CHECKF(rt && rt->n_elems == t->numel, "gradient %s missing", t->name);
        if (!rt || rt->n_elems != t->numel) continue;
        const float *ref_g = rt->data, *ours = pol->grads + t->offset;
        double md = 0, mr = 0;
        for (size_t k = 0; k < t->numel; k++) {
            double d = fabs((double)ours[k] - ref_g[k]);
            if (!(d <= md)) md = d;
            mr = fmax(mr, fabs((double)ref_g[k]));
        }
        CHECKF(md / mr <= 1e-4, "%s: max rel error %.3e", t->name, md / mr);
        if (!(md / mr <= worst)) worst = md / mr;
    }
    gm_safetensors_close(f);
    printf("check 4c: fixed batch: log-probs within %.1e / %.1e, kl/score/advantage within %.1e/%.1e/%.1e, loss %.6f "
           "(ref %.6f), worst gradient rel error %.2e\n", dl, dlr, dk[0], dk[1], dk[2], loss, ref_loss, worst);
done:
    gm_rlhf_group_free(&g);
    gm_train_model_free(pol);
    gm_train_model_free(ref);
    gm_json_free(doc);
}

/* ---- the synthetic task ---------------------------------------------------------------------------- */

enum { V = 32, TARGET = 7, STOP = 1, NP = 4, PLEN = 4, K = 8, NEW = 8, STEPS = 40 };

static gm_config tiny(void) {
    gm_config c;
    memset(&c, 0, sizeof c);
    c.family = 1, c.vocab_size = V, c.hidden_size = 32, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 1;
    c.head_dim = 8, c.ffn_size = 64, c.max_pos = 64, c.rms_eps = 1e-6f, c.rope_theta = 10000;
    c.rope_local_theta = 10000, c.rope_scale = 1, c.query_scale = 1.0f / sqrtf(8.0f), c.embed_scale = sqrtf(32.0f);
    c.bos_id = 2, c.eos_id = 1, c.pad_id = 0;
    for (int l = 0; l < c.n_layers; l++) c.layer_global[l] = 1;
    return c;
}

/* reward = fraction of the response's tokens that are TARGET */
static gm_status target_fraction(void *ctx, const int32_t *seq, const int *len, int k_rows, int T, int n_prompt,
                                 float *rewards) {
    (void)ctx;
    for (int k = 0; k < k_rows; k++) {
        int hit = 0, n = len[k] - n_prompt;
        for (int t = n_prompt; t < len[k]; t++) hit += seq[(size_t)k * T + t] == TARGET;
        rewards[k] = n > 0 ? (float)hit / (float)n : 0.0f;
    }
    return GM_OK;
}

typedef struct {
    double reward_first, reward_last, kl_mean, kl_max, entropy_first, seconds;
    int samples;
    double trace[STEPS];
} run_result;

static gm_dist *dist;

static void run(float beta, uint64_t seed, run_result *res) {
    memset(res, 0, sizeof *res);
    gm_config c = tiny();
    gm_train_opts to = gm_train_opts_default(K, PLEN + NEW, 1);
    gm_train_model *pol = NULL, *ref = NULL;
    CHECK_OK(gm_train_model_new(&c, &to, &pol));
    CHECK_OK(gm_train_model_new(&c, &to, &ref));
    if (!pol || !ref) return;
    /* a larger init than Gemma's 0.02 gives the tiny policy a non-uniform start, as a pretrained one has */
    gm_train_init(pol, 11, 0.1f);
    memcpy(ref->params, pol->params, sizeof(float) * pol->n_params);
    gm_dist *d = dist;
    gm_dist_opt *opt = NULL;
    gm_adamw_params ap = gm_adamw_params_default();
    ap.weight_decay = 0;
    if (d) CHECK_OK(gm_dist_opt_new(d, &ap, pol, 0, &opt));
    gm_rlhf_opts o = gm_rlhf_opts_default();
    o.K = K, o.max_new = NEW, o.beta = beta, o.stop[0] = STOP;
    gm_rlhf_group g;
    CHECK_OK(gm_rlhf_group_new(&g, K, PLEN + NEW));
    int32_t prompts[NP][PLEN];
    const int32_t *pp[NP];
    int np[NP];
    uint64_t s = seed;
    for (int p = 0; p < NP; p++) {
        prompts[p][0] = 2;
        for (int t = 1; t < PLEN; t++) prompts[p][t] = 8 + (int32_t)(gm_align_rand(&s) % 24);
        pp[p] = prompts[p], np[p] = PLEN;
    }
    clock_t t0 = clock();
    for (int step = 0; step < STEPS && opt; step++) {
        gm_rlhf_stats st;
        uint64_t seeds[NP];
        for (int p = 0; p < NP; p++) seeds[p] = gm_rlhf_seed(seed, step, p);
        CHECK_OK(gm_rlhf_step(pol, ref, d, opt, &o, pp, np, NP, target_fraction, NULL, 3e-3f, seeds, &g, &st));
        CHECK(st.result == GM_STEP_TAKEN);
        res->trace[step] = st.reward;
        if (step < 5) res->reward_first += st.reward / 5;
        if (step >= STEPS - 5) res->reward_last += st.reward / 5;
        res->kl_mean += st.kl / STEPS;
        res->kl_max = fmax(res->kl_max, st.kl);
        if (step == 0) res->entropy_first = st.entropy;
        res->samples += st.samples;
    }
    res->seconds = (double)(clock() - t0) / CLOCKS_PER_SEC;
    gm_rlhf_group_free(&g);
    gm_dist_opt_free(opt);
    gm_train_model_free(pol);
    gm_train_model_free(ref);
}

static void check_learning(void) {
    run_result mid, none, huge, again;
    run(0.1f, 1, &mid);
    run(0.0f, 1, &none);
    run(1000.0f, 1, &huge);
    CHECKF(mid.reward_last >= mid.reward_first + 0.15, "reward %.3f -> %.3f with beta 0.1 (want a rise of 0.15)",
           mid.reward_first, mid.reward_last);
    CHECKF(mid.kl_mean < 2.5 && mid.kl_max < 6.0, "KL mean %.3f max %.3f nats with beta 0.1 (bounds 2.5, 6)",
           mid.kl_mean, mid.kl_max);
    /* without the penalty the same run drifts far: the bound above is the KL term's doing */
    CHECKF(none.kl_max > 2 * mid.kl_max && none.reward_last > mid.reward_last, "beta 0: KL max %.3f, reward %.3f",
           none.kl_max, none.reward_last);
    /* a huge beta pins the policy to the reference; Adam's normalized steps still jitter it by about lr */
    CHECKF(huge.kl_mean < 0.2 && huge.kl_mean < none.kl_mean / 20, "mean KL %.4f with beta 1000 (beta 0: %.3f)",
           huge.kl_mean, none.kl_mean);
    CHECKF(huge.reward_last < huge.reward_first + 0.05, "reward %.3f -> %.3f with beta 1000", huge.reward_first,
           huge.reward_last);
    printf("check 4a: beta 0.1: reward %.3f -> %.3f over %d steps (mean of the first / last 5), KL mean %.3f max %.3f "
           "nats per response; %d samples in %.2f s CPU (%.0f samples/s)\n", mid.reward_first, mid.reward_last, STEPS,
           mid.kl_mean, mid.kl_max, mid.samples, mid.seconds, mid.samples / mid.seconds);
    printf("          beta 0: reward %.3f -> %.3f, KL mean %.3f max %.3f\n", none.reward_first, none.reward_last,
           none.kl_mean, none.kl_max);
    printf("check 4b: beta 1000: reward %.3f -> %.3f, KL mean %.4f max %.4f nats per response\n", huge.reward_first,
           huge.reward_last, huge.kl_mean, huge.kl_max);
    printf("reward trace (beta 0.1, every 4th step):");
    for (int i = 0; i < STEPS; i += 4) printf(" %.2f", mid.trace[i]);
    printf("\n");
    run(0.1f, 1, &again);
    CHECK(memcmp(again.trace, mid.trace, sizeof mid.trace) == 0);
}

/* ---- the sampler ------------------------------------------------------------------------------------- */

static void check_sampler(void) {
    gm_config c = tiny();
    enum { R = 32, DRAWS = 4096 };
    gm_train_opts to = gm_train_opts_default(R, 8, 1);
    gm_train_model *m = NULL;
    CHECK_OK(gm_train_model_new(&c, &to, &m));
    if (!m) return;
    gm_train_init(m, 3, 0.3f);
    int32_t prompt[3] = {2, 9, 12};
    /* exact next-token distribution: row v scores target v after the prompt */
    int32_t in[R * 3], tg[R * 3];
    float lp[R * 3];
    for (int v = 0; v < R; v++)
        for (int t = 0; t < 3; t++) in[v * 3 + t] = prompt[t], tg[v * 3 + t] = t == 2 ? v : -1;
    CHECK_OK(gm_train_logprobs(m, in, tg, R, 3, lp));
    double p1[V], h_exact = 0;
    for (int v = 0; v < V; v++) p1[v] = exp(lp[v * 3 + 2]), h_exact -= p1[v] * lp[v * 3 + 2];
    for (int pass = 0; pass < 2; pass++) {
        float temp = pass ? 0.5f : 1.0f;
        double want[V], z = 0;
        for (int v = 0; v < V; v++) z += want[v] = pow(p1[v], 1.0 / temp);
        gm_rlhf_opts o = gm_rlhf_opts_default();
        o.K = R, o.max_new = 1, o.temperature = temp;
        gm_rlhf_group g;
        CHECK_OK(gm_rlhf_group_new(&g, R, 8));
        long count[V] = {0};
        uint64_t s = 99;
        double ent = 0;
        for (int i = 0; i < DRAWS / R && g.seq; i++) {
            CHECK_OK(gm_rlhf_sample(m, prompt, 3, &o, &s, &g));
            for (int k = 0; k < R; k++) count[g.seq[k * g.cap + 3]]++;
            ent += g.entropy_sum / (double)g.entropy_n;
        }
        double tv = 0;
        for (int v = 0; v < V; v++) tv += fabs((double)count[v] / DRAWS - want[v] / z) / 2;
        CHECKF(tv < 0.06, "temperature %.1f: empirical distribution %.3f from the exact one (TV)", (double)temp, tv);
        if (pass == 0) {
            ent /= DRAWS / R;
            CHECKF(fabs(ent - h_exact) < 1e-4, "logged entropy %.6f, exact %.6f", ent, h_exact);
        }
        printf("sampler: temperature %.1f, TV distance %.3f over %d draws\n", (double)temp, tv, DRAWS);
        gm_rlhf_group_free(&g);
    }
    /* the cached and the full-forward samplers: the same responses from the same stream */
    {
        gm_rlhf_opts o = gm_rlhf_opts_default();
        o.K = 8, o.max_new = 5, o.stop[0] = STOP;
        gm_rlhf_group a, b;
        CHECK_OK(gm_rlhf_group_new(&a, 8, 8));
        CHECK_OK(gm_rlhf_group_new(&b, 8, 8));
        uint64_t s1 = 5, s2 = 5;
        if (a.seq && b.seq) {
            CHECK_OK(gm_rlhf_sample(m, prompt, 3, &o, &s1, &a));
            o.no_cache = 1;
            CHECK_OK(gm_rlhf_sample(m, prompt, 3, &o, &s2, &b));
            int same = 0;
            for (int k = 0; k < 8; k++)
                same += a.len[k] == b.len[k] &&
                        !memcmp(a.seq + k * a.cap, b.seq + k * b.cap, sizeof(int32_t) * (size_t)a.len[k]);
            CHECKF(same == 8, "cached and full-forward sampling agree on %d of 8 rows", same);
            CHECK(a.entropy_n == b.entropy_n && fabs(a.entropy_sum - b.entropy_sum) < 1e-5 * fabs(b.entropy_sum));
        }
        gm_rlhf_group_free(&a);
        gm_rlhf_group_free(&b);
    }
    /* bad arguments are refused */
    gm_rlhf_group g;
    CHECK(gm_rlhf_group_new(&g, 1, 8) == GM_ERR_ARG);
    gm_train_model_free(m);
}

int main(int argc, char **argv) {
    /* one mesh for the process: MPI can start only once */
    CHECK_OK(gm_dist_init(&argc, &argv, 1, &dist));
    if (!dist) TEST_DONE();
    check_golden();
    check_sampler();
    check_learning();
    gm_dist_finalize(dist);
    TEST_DONE();
}
