/* The Gemma 1 forward pass over a session (KV cache + activations). A prompt goes through in chunks of
 * up to GM_BATCH tokens so every projection is a matrix-matrix product (batched prefill); decoding is the
 * same code with one token. All activations are f32 (f16 overflows on Gemma); weights stay as stored. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/threads.h"
#include "model/model.h"
#include "tensor/matmul.h"

#define GM_BATCH 128

struct gm_session {
    gm_model *m;
    gm_pool *pool;
    int n_ctx, pos;
    /* activations for one chunk: [GM_BATCH, width] */
    float *x, *xn, *q, *k, *v, *att, *proj, *gate, *up;
    float *logits;           /* [vocab]: the last position's logits */
    float *kcache, *vcache;  /* [layers][n_ctx][n_kv_heads * head_dim] */
    float *rope_cos, *rope_sin; /* [n_ctx][head_dim / 2] */
    float *scores;           /* [workers][n_ctx] attention scratch */
    int have_logits;
};

static void *xalloc(size_t n_floats) {
    void *p = NULL;
    if (posix_memalign(&p, 64, (n_floats ? n_floats : 1) * sizeof(float)) != 0) return NULL;
    return p;
}

void gm_session_free(gm_session *s) {
    if (!s) return;
    gm_pool_free(s->pool);
    float *bufs[] = {s->x, s->xn, s->q, s->k, s->v, s->att, s->proj, s->gate, s->up, s->logits,
                     s->kcache, s->vcache, s->rope_cos, s->rope_sin, s->scores};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(s);
}

gm_status gm_session_new(gm_model *m, int n_ctx, int n_threads, gm_session **out) {
    *out = NULL;
    const gm_config *c = &m->cfg;
    if (n_ctx <= 0 || n_ctx > c->max_pos)
        return gm_fail(GM_ERR_ARG, "context size %d is outside 1..%d (the model's max_position_embeddings)", n_ctx,
                       c->max_pos);
    if (n_threads < 1) n_threads = 1;
    gm_session *s = calloc(1, sizeof *s);
    if (!s) return gm_fail(GM_ERR_NOMEM, "out of memory");
    s->m = m;
    s->n_ctx = n_ctx;
    s->pool = gm_pool_new(n_threads);
    size_t B = GM_BATCH, d = (size_t)c->hidden_size, qd = (size_t)c->n_heads * c->head_dim;
    size_t kvd = (size_t)c->n_kv_heads * c->head_dim, f = (size_t)c->ffn_size, half = (size_t)c->head_dim / 2;
    size_t cache = (size_t)c->n_layers * (size_t)n_ctx * kvd;
    s->x = xalloc(B * d), s->xn = xalloc(B * d), s->proj = xalloc(B * d);
    s->q = xalloc(B * qd), s->att = xalloc(B * qd), s->k = xalloc(B * kvd), s->v = xalloc(B * kvd);
    s->gate = xalloc(B * f), s->up = xalloc(B * f);
    s->logits = xalloc((size_t)c->vocab_size);
    s->kcache = xalloc(cache), s->vcache = xalloc(cache);
    s->rope_cos = xalloc((size_t)n_ctx * half), s->rope_sin = xalloc((size_t)n_ctx * half);
    s->scores = xalloc((size_t)n_threads * (size_t)n_ctx);
    if (!s->pool || !s->x || !s->xn || !s->proj || !s->q || !s->att || !s->k || !s->v || !s->gate || !s->up ||
        !s->logits || !s->kcache || !s->vcache || !s->rope_cos || !s->rope_sin || !s->scores) {
        gm_session_free(s);
        return gm_fail(GM_ERR_NOMEM, "cannot allocate a session of %d tokens (KV cache %.1f MiB)", n_ctx,
                       2.0 * (double)cache * 4 / (1 << 20));
    }
    /* Rotary tables in double: theta^(-2i/hd) computed in f32 drifts visibly at long positions. */
    for (int p = 0; p < n_ctx; p++)
        for (size_t i = 0; i < half; i++) {
            double inv = pow((double)c->rope_theta, -2.0 * (double)i / (double)c->head_dim);
            double a = (double)p * inv;
            s->rope_cos[(size_t)p * half + i] = (float)cos(a);
            s->rope_sin[(size_t)p * half + i] = (float)sin(a);
        }
    *out = s;
    return GM_OK;
}

void gm_session_reset(gm_session *s) {
    s->pos = 0;
    s->have_logits = 0;
}
int gm_session_pos(const gm_session *s) { return s->pos; }
int gm_session_n_ctx(const gm_session *s) { return s->n_ctx; }
const float *gm_session_logits(const gm_session *s) { return s->have_logits ? s->logits : NULL; }

/* ---- elementwise ops --------------------------------------------------------------------------- */

/* y = x / sqrt(mean(x^2) + eps) * (1 + w); the sum of squares in double keeps it independent of d. */
static void rmsnorm(float *y, const float *x, const float *w, int n, float eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float r = (float)(1.0 / sqrt(ss / n + (double)eps));
    for (int i = 0; i < n; i++) y[i] = x[i] * r * (1.0f + w[i]);
}

static float gelu_tanh(float x) {
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

/* Rotate-half RoPE on one head: pairs (i, i + hd/2), as HF and gemma_pytorch do. */
static void rope(float *v, const float *cs, const float *sn, int half) {
    for (int i = 0; i < half; i++) {
        float a = v[i], b = v[i + half];
        v[i] = a * cs[i] - b * sn[i];
        v[i + half] = b * cs[i] + a * sn[i];
    }
}

/* ---- parallel pieces --------------------------------------------------------------------------- */

typedef struct {
    gm_session *s;
    int layer, T, pos0;
} attn_job;

/* One (token, head) pair per work item: scores over the cache, softmax, weighted sum of values. */
static void attention_task(void *ctx, int worker, int n_workers) {
    attn_job *j = ctx;
    gm_session *s = j->s;
    const gm_config *c = &s->m->cfg;
    int hd = c->head_dim, H = c->n_heads, kvd = c->n_kv_heads * hd, group = c->n_heads / c->n_kv_heads;
    size_t begin, end;
    gm_pool_chunk((size_t)j->T * (size_t)H, 1, worker, n_workers, &begin, &end);
    float *sc = s->scores + (size_t)worker * (size_t)s->n_ctx;
    const float *kc = s->kcache + (size_t)j->layer * (size_t)s->n_ctx * (size_t)kvd;
    const float *vc = s->vcache + (size_t)j->layer * (size_t)s->n_ctx * (size_t)kvd;
    for (size_t item = begin; item < end; item++) {
        int t = (int)(item / (size_t)H), h = (int)(item % (size_t)H);
        int kvh = h / group, n_keys = j->pos0 + t + 1; /* causal: keys 0..pos */
        const float *q = s->q + (size_t)t * (size_t)H * hd + (size_t)h * hd;
        float mx = -INFINITY;
        for (int p = 0; p < n_keys; p++) {
            const float *k = kc + (size_t)p * kvd + (size_t)kvh * hd;
            float dot = 0;
            for (int i = 0; i < hd; i++) dot += q[i] * k[i];
            sc[p] = dot * c->query_scale;
            if (sc[p] > mx) mx = sc[p];
        }
        double sum = 0;
        for (int p = 0; p < n_keys; p++) {
            sc[p] = expf(sc[p] - mx);
            sum += sc[p];
        }
        float inv = (float)(1.0 / sum);
        float *o = s->att + (size_t)t * (size_t)H * hd + (size_t)h * hd;
        memset(o, 0, sizeof(float) * (size_t)hd);
        for (int p = 0; p < n_keys; p++) {
            const float *v = vc + (size_t)p * kvd + (size_t)kvh * hd;
            float wgt = sc[p] * inv;
            for (int i = 0; i < hd; i++) o[i] += wgt * v[i];
        }
    }
}

typedef struct {
    float *gate;
    const float *up;
    size_t n;
} geglu_job;

static void geglu_task(void *ctx, int worker, int n_workers) {
    geglu_job *j = ctx;
    size_t b, e;
    gm_pool_chunk(j->n, 16, worker, n_workers, &b, &e);
    for (size_t i = b; i < e; i++) j->gate[i] = gelu_tanh(j->gate[i]) * j->up[i];
}

/* ---- the pass ---------------------------------------------------------------------------------- */

static void mm(gm_session *s, float *y, const float *x, const gm_wmat *w, int T) {
    gm_matmul(y, x, w->data, w->dt, T, w->cols, w->rows, s->pool);
}

/* Run T (<= GM_BATCH) tokens at positions pos..pos+T-1; logits for all T rows into out_logits if given,
 * else for the last row only into s->logits. */
static void forward_chunk(gm_session *s, const int32_t *ids, int T, float *out_logits, int want_logits) {
    const gm_model *m = s->m;
    const gm_config *c = &m->cfg;
    int d = c->hidden_size, hd = c->head_dim, half = hd / 2, H = c->n_heads, K = c->n_kv_heads;
    int kvd = K * hd, pos0 = s->pos;
    const gm_dtype_traits *et = gm_dtype_info(m->embed.dt);
    size_t erow = (size_t)d / et->block_elems * et->block_bytes;
    for (int t = 0; t < T; t++) {
        float *x = s->x + (size_t)t * d;
        et->to_f32((const char *)m->embed.data + (size_t)ids[t] * erow, x, (size_t)d);
        for (int i = 0; i < d; i++) x[i] *= c->embed_scale;
    }
    for (int l = 0; l < c->n_layers; l++) {
        const gm_layer *L = &m->layers[l];
        for (int t = 0; t < T; t++) rmsnorm(s->xn + (size_t)t * d, s->x + (size_t)t * d, L->attn_norm, d, c->rms_eps);
        mm(s, s->q, s->xn, &L->wq, T);
        mm(s, s->k, s->xn, &L->wk, T);
        mm(s, s->v, s->xn, &L->wv, T);
        float *kc = s->kcache + (size_t)l * (size_t)s->n_ctx * kvd;
        float *vc = s->vcache + (size_t)l * (size_t)s->n_ctx * kvd;
        for (int t = 0; t < T; t++) {
            int p = pos0 + t;
            const float *cs = s->rope_cos + (size_t)p * half, *sn = s->rope_sin + (size_t)p * half;
            for (int h = 0; h < H; h++) rope(s->q + (size_t)t * H * hd + (size_t)h * hd, cs, sn, half);
            for (int h = 0; h < K; h++) rope(s->k + (size_t)t * kvd + (size_t)h * hd, cs, sn, half);
            memcpy(kc + (size_t)p * kvd, s->k + (size_t)t * kvd, sizeof(float) * (size_t)kvd);
            memcpy(vc + (size_t)p * kvd, s->v + (size_t)t * kvd, sizeof(float) * (size_t)kvd);
        }
        attn_job aj = {s, l, T, pos0};
        gm_pool_run(s->pool, attention_task, &aj);
        mm(s, s->proj, s->att, &L->wo, T);
        for (size_t i = 0; i < (size_t)T * d; i++) s->x[i] += s->proj[i];
        for (int t = 0; t < T; t++) rmsnorm(s->xn + (size_t)t * d, s->x + (size_t)t * d, L->ffn_norm, d, c->rms_eps);
        mm(s, s->gate, s->xn, &L->wgate, T);
        mm(s, s->up, s->xn, &L->wup, T);
        geglu_job gj = {s->gate, s->up, (size_t)T * (size_t)c->ffn_size};
        gm_pool_run(s->pool, geglu_task, &gj);
        mm(s, s->proj, s->gate, &L->wdown, T);
        for (size_t i = 0; i < (size_t)T * d; i++) s->x[i] += s->proj[i];
    }
    if (out_logits) {
        for (int t = 0; t < T; t++) rmsnorm(s->xn + (size_t)t * d, s->x + (size_t)t * d, m->final_norm, d, c->rms_eps);
        mm(s, out_logits, s->xn, &m->embed, T);
        memcpy(s->logits, out_logits + (size_t)(T - 1) * c->vocab_size, sizeof(float) * (size_t)c->vocab_size);
    } else if (want_logits) {
        rmsnorm(s->xn, s->x + (size_t)(T - 1) * d, m->final_norm, d, c->rms_eps);
        mm(s, s->logits, s->xn, &m->embed, 1);
    }
    s->pos += T;
    s->have_logits = out_logits || want_logits;
}

gm_status gm_session_eval(gm_session *s, const int32_t *ids, int n, float *all_logits) {
    const gm_config *c = &s->m->cfg;
    if (n <= 0) return gm_fail(GM_ERR_ARG, "no tokens to evaluate");
    if (n > s->n_ctx - s->pos)
        return gm_fail(GM_ERR_ARG, "%d tokens at position %d exceed the context of %d tokens", n, s->pos, s->n_ctx);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return gm_fail(GM_ERR_ARG, "token id %d at index %d is outside the vocabulary (0..%d)", ids[i], i,
                           c->vocab_size - 1);
    for (int off = 0; off < n; off += GM_BATCH) {
        int T = n - off < GM_BATCH ? n - off : GM_BATCH;
        int last = off + T == n;
        float *out = all_logits ? all_logits + (size_t)off * c->vocab_size : NULL;
        /* Chunks before the last only need the cache filled: skip their output projection. */
        forward_chunk(s, ids + off, T, out, last);
    }
    return GM_OK;
}
