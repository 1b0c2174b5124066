/* REINFORCE with a leave-one-out baseline and the KL folded into the reward (train/rlhf.h): sampling from
 * the trainable policy, log-probabilities under policy and reference, advantages, and the weighted
 * backward; gm_rlhf_step strings them into one optimizer step. */
#include "train/rlhf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/error.h"
#include "model/model_internal.h"
#include "train/sft.h"

/* ---- prompts -------------------------------------------------------------------------------------- */

void gm_rlhf_prompts_free(gm_rlhf_prompts *p) {
    for (int i = 0; i < p->count; i++) {
        free(p->ids[i]);
        free(p->text[i]);
    }
    free(p->ids);
    free(p->n);
    free(p->line);
    free(p->text);
    memset(p, 0, sizeof *p);
}

typedef struct {
    const gm_tokenizer *tok;
    const gm_sft_load_opts *o;
    gm_rlhf_prompts *p;
    int reports;
} prompt_ctx;

static gm_status prompt_record(void *vctx, const gm_json *rec, const char *where, long line) {
    prompt_ctx *x = vctx;
    gm_rlhf_prompts *p = x->p;
    gm_sft_conv c = {0};
    int32_t *ids = NULL;
    int n = 0;
    gm_status st = gm_sft_prompt_conv(rec, &c);
    if (!st) st = gm_sft_encode_prompt(x->tok, c.msgs, c.n, &ids, &n);
    char *text = !st ? strdup(c.msgs[c.n - 1].content) : NULL;
    gm_sft_conv_clear(&c);
    if (!st && !text) st = gm_fail(GM_ERR_NOMEM, "out of memory");
    if (!st && x->o->max_len > 0 && n > x->o->max_len) {
        p->n_too_long++;
        if (x->o->log && x->reports++ < (x->o->max_reports > 0 ? x->o->max_reports : 20))
            fprintf(x->o->log, "%s: prompt of %d tokens, longer than %d: left out\n", where, n, x->o->max_len);
        free(ids);
        free(text);
        return GM_OK;
    }
    if (!st && p->count == p->cap) {
        int nc = p->cap ? p->cap * 2 : 64;
        int32_t **a = realloc(p->ids, sizeof *a * (size_t)nc);
        if (a) p->ids = a;
        int *b = realloc(p->n, sizeof *b * (size_t)nc);
        if (b) p->n = b;
        long *l = realloc(p->line, sizeof *l * (size_t)nc);
        if (l) p->line = l;
        char **t = realloc(p->text, sizeof *t * (size_t)nc);
        if (t) p->text = t;
        if (!a || !b || !l || !t) st = gm_fail(GM_ERR_NOMEM, "out of memory");
        else p->cap = nc;
    }
    if (st) {
        free(ids);
        free(text);
        return st == GM_ERR_NOMEM ? st : gm_fail_prefix(GM_ERR_FORMAT, "%s: ", where);
    }
    p->ids[p->count] = ids, p->n[p->count] = n, p->line[p->count] = line, p->text[p->count] = text;
    p->count++;
    return GM_OK;
}

gm_status gm_rlhf_load_prompts(const char *path, const gm_tokenizer *tok, const gm_sft_load_opts *o,
                               gm_rlhf_prompts *out) {
    memset(out, 0, sizeof *out);
    prompt_ctx x = {tok, o, out, 0};
    gm_status st = gm_align_each_record(path, o, prompt_record, &x, &out->n_records, &out->n_bad);
    if (!st && out->count == 0)
        st = gm_fail(GM_ERR_FORMAT, "%s: no usable prompts (%ld records, %ld bad, %ld too long)", path, out->n_records,
                     out->n_bad, out->n_too_long);
    if (st) gm_rlhf_prompts_free(out);
    return st;
}

/* ---- REINFORCE -------------------------------------------------------------------------------------- */

gm_rlhf_opts gm_rlhf_opts_default(void) {
    gm_rlhf_opts o;
    memset(&o, 0, sizeof o);
    o.K = 4, o.max_new = 64, o.temperature = 1.0f, o.beta = 0.05f, o.len_penalty = 0;
    o.stop[0] = o.stop[1] = -1;
    o.pad = 0;
    return o;
}

gm_status gm_rlhf_group_new(gm_rlhf_group *g, int K, int cap) {
    memset(g, 0, sizeof *g);
    if (K < 2 || cap < 2) return gm_fail(GM_ERR_ARG, "RLHF needs K >= 2 samples per prompt (got %d)", K);
    size_t n = (size_t)K * cap;
    g->K = K, g->cap = cap;
    g->seq = calloc(n, sizeof(int32_t));
    g->len = calloc((size_t)K, sizeof(int));
    g->logp = calloc(n, sizeof(float));
    g->logp_ref = calloc(n, sizeof(float));
    g->reward = calloc((size_t)K, sizeof(float));
    g->kl = calloc((size_t)K, sizeof(float));
    g->score = calloc((size_t)K, sizeof(float));
    g->adv = calloc((size_t)K, sizeof(float));
    g->in = calloc(n, sizeof(int32_t));
    g->tg = calloc(n, sizeof(int32_t));
    g->w = calloc(n, sizeof(float));
    if (!g->seq || !g->len || !g->logp || !g->logp_ref || !g->reward || !g->kl || !g->score || !g->adv || !g->in ||
        !g->tg || !g->w) {
        gm_rlhf_group_free(g);
        return gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    return GM_OK;
}

void gm_rlhf_group_free(gm_rlhf_group *g) {
    free(g->seq);
    free(g->len);
    free(g->logp);
    free(g->logp_ref);
    free(g->reward);
    free(g->kl);
    free(g->score);
    free(g->adv);
    free(g->in);
    free(g->tg);
    free(g->w);
    memset(g, 0, sizeof *g);
}

gm_status gm_rlhf_group_set(gm_rlhf_group *g, const int32_t *prompt, int n_prompt, const int32_t *const *resp,
                            const int *n_resp) {
    if (n_prompt < 1) return gm_fail(GM_ERR_ARG, "RLHF prompt is empty");
    for (int k = 0; k < g->K; k++) {
        if (n_resp[k] < 1 || n_prompt + n_resp[k] > g->cap)
            return gm_fail(GM_ERR_ARG, "response %d has %d tokens (1..%d after a %d-token prompt)", k, n_resp[k],
                           g->cap - n_prompt, n_prompt);
        int32_t *row = g->seq + (size_t)k * g->cap;
        memcpy(row, prompt, sizeof(int32_t) * (size_t)n_prompt);
        memcpy(row + n_prompt, resp[k], sizeof(int32_t) * (size_t)n_resp[k]);
        g->len[k] = n_prompt + n_resp[k];
    }
    g->n_prompt = n_prompt;
    g->entropy_sum = 0, g->entropy_n = 0;
    return GM_OK;
}

static int is_stop(const gm_rlhf_opts *o, int32_t t) { return t >= 0 && (t == o->stop[0] || t == o->stop[1]); }

/* One draw from softmax(logits / temperature) (logits[0..V) in double, overwritten) with the stream *rng; adds
 * the entropy of that distribution to *entropy. */
static int32_t draw(double *p, int V, double inv_t, uint64_t *rng, double *entropy) {
    double mx = -INFINITY;
    for (int v = 0; v < V; v++) {
        p[v] *= inv_t;
        if (p[v] > mx) mx = p[v];
    }
    double z = 0, ez = 0;
    for (int v = 0; v < V; v++) {
        double e = exp(p[v] - mx);
        ez += e * (p[v] - mx);
        p[v] = e;
        z += e;
    }
    /* entropy of the sampling distribution: log Z − E[logit − max] */
    *entropy += log(z) - ez / z;
    double u = gm_align_uniform(rng) * z, c = 0;
    for (int v = 0; v < V; v++) {
        c += p[v];
        if (u < c) return v;
    }
    return V - 1;
}

static gm_status check_sample_args(gm_train_model *policy, int n_prompt, const gm_rlhf_opts *o, gm_rlhf_group *g) {
    if (o->K != g->K) return gm_fail(GM_ERR_ARG, "RLHF group has %d rows but K is %d", g->K, o->K);
    if (n_prompt < 1 || n_prompt + o->max_new > g->cap)
        return gm_fail(GM_ERR_ARG, "prompt of %d tokens + %d new is more than the %d a row holds", n_prompt, o->max_new,
                       g->cap);
    if (n_prompt + o->max_new > policy->cfg.max_pos)
        return gm_fail(GM_ERR_ARG, "prompt of %d tokens + %d new exceeds the model's context %d", n_prompt, o->max_new,
                       policy->cfg.max_pos);
    if (!(o->temperature > 0)) return gm_fail(GM_ERR_ARG, "RLHF sampling temperature must be > 0");
    return GM_OK;
}

/* The policy's current weights as an inference model (train/model_train.h's f32 buffers bound in place; only
 * the norm vectors are copied), so sampling decodes with a KV cache: O(T) per token, not a full forward. */
static gm_status inference_view(const gm_train_model *m, gm_model **out) {
    gm_model *im = NULL;
    gm_expected_tensor *exp = NULL;
    int n_exp = 0, slot = 0;
    gm_status st = gm_model_alloc(&m->cfg, &im, &exp, &n_exp);
    for (int i = 0; i < n_exp && !st; i++) {
        const gm_train_tensor *t = gm_train_find(m, exp[i].name);
        if (!t || t->numel != (size_t)exp[i].shape[0] * (size_t)(exp[i].ndim == 2 ? exp[i].shape[1] : 1))
            st = gm_fail(GM_ERR_UNSUPPORTED, "trainable model has no tensor %s for sampling", exp[i].name);
        else st = gm_model_bind(im, &exp[i], GM_DT_F32, m->params + t->offset, &slot, 0.0f);
    }
    free(exp);
    if (st) {
        gm_model_free(im);
        return st;
    }
    *out = im;
    return GM_OK;
}

static gm_status sample_cached(gm_train_model *policy, const int32_t *prompt, int n_prompt, const gm_rlhf_opts *o,
                               uint64_t *rows_rng, gm_rlhf_group *g, double *p) {
    int V = policy->cfg.vocab_size;
    gm_model *im = NULL;
    gm_session *s = NULL;
    float *first = malloc(sizeof(float) * (size_t)V);
    gm_status st = first ? inference_view(policy, &im) : gm_fail(GM_ERR_NOMEM, "out of memory");
    if (!st) {
        gm_session_params sp = gm_session_params_default(n_prompt + o->max_new, policy->opt.n_threads);
        st = gm_session_new_ex(im, &sp, &s);
    }
    /* the prompt once; each row rewinds to its end and starts from its saved logits */
    if (!st) st = gm_session_eval(s, prompt, n_prompt, NULL);
    if (!st) memcpy(first, gm_session_logits(s), sizeof(float) * (size_t)V);
    double inv_t = 1.0 / o->temperature;
    for (int k = 0; k < g->K && !st; k++) {
        int32_t *row = g->seq + (size_t)k * g->cap;
        if (k > 0) st = gm_session_truncate(s, n_prompt);
        const float *logits = first;
        for (int step = 0; step < o->max_new && !st; step++) {
            for (int v = 0; v < V; v++) p[v] = logits[v];
            int32_t tok = draw(p, V, inv_t, &rows_rng[k], &g->entropy_sum);
            g->entropy_n++;
            row[n_prompt + step] = tok;
            g->len[k] = n_prompt + step + 1;
            if (is_stop(o, tok) || step + 1 == o->max_new) break;
            st = gm_session_eval(s, &tok, 1, NULL);
            logits = gm_session_logits(s);
        }
    }
    gm_session_free(s);
    gm_model_free(im);
    free(first);
    return st;
}

/* Without a cache: every step is a full forward of the trainable model over all K rows (batched; rows are
 * aligned since they share the prompt). The only way with model parallelism, whose shards no inference
 * model can hold. */
static gm_status sample_full(gm_train_model *policy, int n_prompt, const gm_rlhf_opts *o, uint64_t *rows_rng,
                             gm_rlhf_group *g, double *p) {
    int K = g->K, d = policy->cfg.hidden_size, V = policy->cfg.vocab_size;
    if (n_prompt + o->max_new - 1 > policy->opt.max_seq || K > policy->opt.max_batch)
        return gm_fail(GM_ERR_ARG, "sampling %d x %d tokens needs a policy built for that (it has %d x %d)", K,
                       n_prompt + o->max_new - 1, policy->opt.max_batch, policy->opt.max_seq);
    unsigned char *done = calloc((size_t)K, 1);
    gm_status st = done ? GM_OK : gm_fail(GM_ERR_NOMEM, "out of memory");
    const float *E = policy->embed;
    double inv_t = 1.0 / o->temperature;
    for (int step = 0; step < o->max_new && !st; step++) {
        int L = n_prompt + step, live = 0;
        for (int k = 0; k < K; k++) live += !done[k];
        if (!live) break;
        for (int k = 0; k < K; k++)
            memcpy(g->in + (size_t)k * L, g->seq + (size_t)k * g->cap, sizeof(int32_t) * (size_t)L);
        const float *h = NULL;
        st = gm_train_hidden(policy, g->in, K, L, &h);
        for (int k = 0; k < K && !st; k++) {
            if (done[k]) continue;
            const float *x = h + ((size_t)k * L + L - 1) * d;
            for (int v = 0; v < V; v++) { /* tied output layer: logits = h · Eᵀ */
                const float *e = E + (size_t)v * d;
                double acc = 0;
                for (int i = 0; i < d; i++) acc += (double)x[i] * e[i];
                p[v] = acc;
            }
            int32_t tok = draw(p, V, inv_t, &rows_rng[k], &g->entropy_sum);
            g->entropy_n++;
            g->seq[(size_t)k * g->cap + L] = tok;
            g->len[k] = L + 1;
            if (is_stop(o, tok)) done[k] = 1;
        }
    }
    free(done);
    return st;
}

gm_status gm_rlhf_sample(gm_train_model *policy, const int32_t *prompt, int n_prompt, const gm_rlhf_opts *o,
                         uint64_t *rng, gm_rlhf_group *g) {
    gm_status st = check_sample_args(policy, n_prompt, o, g);
    if (st) return st;
    for (int k = 0; k < g->K; k++) {
        memcpy(g->seq + (size_t)k * g->cap, prompt, sizeof(int32_t) * (size_t)n_prompt);
        g->len[k] = n_prompt;
    }
    g->n_prompt = n_prompt;
    g->entropy_sum = 0, g->entropy_n = 0;
    double *p = malloc(sizeof(double) * (size_t)policy->cfg.vocab_size);
    uint64_t *rows_rng = malloc(sizeof(uint64_t) * (size_t)g->K);
    if (!p || !rows_rng) {
        free(p);
        free(rows_rng);
        return gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    /* a stream per row, so the draws do not depend on the order the two samplers visit rows and positions */
    uint64_t base = gm_align_rand(rng);
    for (int k = 0; k < g->K; k++) {
        uint64_t t = base ^ ((uint64_t)(k + 1) * 0xD1B54A32D192ED03ull);
        rows_rng[k] = gm_align_rand(&t);
    }
    int cached = !o->no_cache && policy->tp_size <= 1;
    st = cached ? sample_cached(policy, prompt, n_prompt, o, rows_rng, g, p)
                : sample_full(policy, n_prompt, o, rows_rng, g, p);
    free(p);
    free(rows_rng);
    return st;
}

int gm_rlhf_pack(gm_rlhf_group *g, int32_t pad) {
    int T = 1;
    for (int k = 0; k < g->K; k++)
        if (g->len[k] - 1 > T) T = g->len[k] - 1;
    for (int k = 0; k < g->K; k++) {
        const int32_t *row = g->seq + (size_t)k * g->cap;
        int32_t *in = g->in + (size_t)k * T, *tg = g->tg + (size_t)k * T;
        for (int t = 0; t < T; t++) {
            in[t] = t < g->len[k] ? row[t] : pad;
            /* position t predicts row[t+1]: a response token when t + 1 >= n_prompt */
            tg[t] = t + 1 >= g->n_prompt && t + 1 < g->len[k] ? row[t + 1] : -1;
        }
    }
    return T;
}

gm_status gm_rlhf_advantages(gm_train_model *policy, gm_train_model *ref, const gm_rlhf_opts *o, gm_rlhf_group *g) {
    int K = g->K;
    if (K < 2) return gm_fail(GM_ERR_ARG, "the leave-one-out baseline needs K >= 2");
    int T = gm_rlhf_pack(g, o->pad);
    gm_status st = gm_train_logprobs(policy, g->in, g->tg, K, T, g->logp);
    if (!st) st = gm_train_logprobs(ref, g->in, g->tg, K, T, g->logp_ref);
    if (st) return st;
    double sum = 0;
    for (int k = 0; k < K; k++) {
        double kl = 0;
        for (int t = 0; t < T; t++)
            if (g->tg[(size_t)k * T + t] >= 0)
                kl += (double)g->logp[(size_t)k * T + t] - g->logp_ref[(size_t)k * T + t];
        g->kl[k] = (float)kl;
        g->score[k] = (float)((double)g->reward[k] - (double)o->beta * kl -
                              (double)o->len_penalty * gm_rlhf_resp_len(g, k));
        sum += g->score[k];
    }
    for (int k = 0; k < K; k++) g->adv[k] = (float)(g->score[k] - (sum - g->score[k]) / (K - 1));
    return GM_OK;
}

gm_status gm_rlhf_backward(gm_train_model *policy, gm_rlhf_group *g, float scale, float *loss) {
    int K = g->K, T = 1;
    for (int k = 0; k < K; k++)
        if (g->len[k] - 1 > T) T = g->len[k] - 1;
    /* g->in / g->tg hold the packing of gm_rlhf_advantages; the weights give Σ_n w_n (−log p_n) =
     * −scale Σ_k adv_k Σ_t log π: minimizing it raises the log-probability of better-than-baseline samples */
    for (int k = 0; k < K; k++)
        for (int t = 0; t < T; t++) g->w[(size_t)k * T + t] = g->tg[(size_t)k * T + t] >= 0 ? scale * g->adv[k] : 0.0f;
    return gm_train_forward_backward_weighted(policy, g->in, g->tg, g->w, K, T, NULL, loss);
}

uint64_t gm_rlhf_seed(uint64_t seed, int step, long long i) {
    uint64_t s = seed ^ 0x6a09e667f3bcc909ull;
    s = gm_align_rand(&s) ^ ((uint64_t)step * 0x9E3779B97F4A7C15ull);
    s = gm_align_rand(&s) ^ ((uint64_t)i * 0xBF58476D1CE4E5B9ull);
    return gm_align_rand(&s);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

gm_status gm_rlhf_step(gm_train_model *policy, gm_train_model *ref, gm_dist *dist, gm_dist_opt *opt,
                       const gm_rlhf_opts *o, const int32_t *const *prompts, const int *n_prompts, int P,
                       gm_rlhf_reward_fn reward, void *reward_ctx, float lr, const uint64_t *seeds, gm_rlhf_group *g,
                       gm_rlhf_stats *s) {
    memset(s, 0, sizeof *s);
    if (P < 1) return gm_fail(GM_ERR_ARG, "an RLHF step needs at least one prompt");
    double t0 = now(), r_sum = 0, r_sq = 0, kl = 0, len = 0, score = 0, loss = 0, ent = 0, ent_n = 0, ts = 0;
    int K = o->K;
    gm_status st = GM_OK;
    gm_train_zero_grad(policy);
    for (int p = 0; p < P && !st; p++) {
        double a = now();
        uint64_t rng = seeds[p];
        st = gm_rlhf_sample(policy, prompts[p], n_prompts[p], o, &rng, g);
        ts += now() - a;
        if (st) break;
        int T = gm_rlhf_pack(g, o->pad);
        /* the reward sees whole rows: prompt + response (the packed inputs lack each row's last token) */
        int32_t *rows = malloc(sizeof(int32_t) * (size_t)K * (T + 1));
        if (!rows) {
            st = gm_fail(GM_ERR_NOMEM, "out of memory");
            break;
        }
        for (int k = 0; k < K; k++)
            for (int t = 0; t <= T; t++)
                rows[(size_t)k * (T + 1) + t] = t < g->len[k] ? g->seq[(size_t)k * g->cap + t] : o->pad;
        st = reward(reward_ctx, rows, g->len, K, T + 1, g->n_prompt, g->reward);
        free(rows);
        for (int k = 0; k < K && !st; k++)
            if (!isfinite(g->reward[k])) st = gm_fail(GM_ERR_ARG, "the reward of sample %d is not finite", k);
        if (!st) st = gm_rlhf_advantages(policy, ref, o, g);
        float l = 0;
        if (!st) st = gm_rlhf_backward(policy, g, 1.0f / ((float)P * K), &l);
        if (st) break;
        loss += l;
        for (int k = 0; k < K; k++) {
            r_sum += g->reward[k], r_sq += (double)g->reward[k] * g->reward[k];
            kl += g->kl[k], len += gm_rlhf_resp_len(g, k), score += g->score[k];
        }
        ent += g->entropy_sum, ent_n += (double)g->entropy_n;
    }
    /* every rank takes the same path: an error anywhere stops all of them */
    if (dist && gm_dist_max_int(dist, st != GM_OK)) {
        gm_train_zero_grad(policy);
        return st ? st : gm_fail(GM_ERR_ARG, "RLHF step failed on another rank");
    }
    if (st) return st;
    double n = (double)P * K;
    if (dist && gm_dist_dp_size(dist) > 1) {
        r_sum = gm_dist_sum_dp(dist, r_sum), r_sq = gm_dist_sum_dp(dist, r_sq), kl = gm_dist_sum_dp(dist, kl);
        len = gm_dist_sum_dp(dist, len), score = gm_dist_sum_dp(dist, score), ent = gm_dist_sum_dp(dist, ent);
        ent_n = gm_dist_sum_dp(dist, ent_n), loss = gm_dist_sum_dp(dist, loss) / gm_dist_dp_size(dist);
        n = gm_dist_sum_dp(dist, n);
    }
    s->reward = r_sum / n;
    s->reward_std = sqrt(fmax(0.0, r_sq / n - s->reward * s->reward));
    s->kl = kl / n, s->length = len / n, s->score = score / n, s->loss = loss;
    s->entropy = ent_n > 0 ? ent / ent_n : 0;
    s->samples = P * K;
    gm_step_info info;
    s->result = gm_dist_opt_step(opt, policy, lr, 1.0f, (float)loss, &info);
    s->grad_norm = info.grad_norm;
    gm_train_zero_grad(policy);
    s->sample_seconds = ts;
    s->seconds = now() - t0;
    return GM_OK;
}
