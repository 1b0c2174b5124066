/* The Gemma 1/2/3 forward pass over a session (KV cache + activations). A prompt goes through in chunks
 * of up to GM_BATCH tokens so every projection is a matrix-matrix product (batched prefill); decoding is
 * the same code with one token. All activations are f32 (f16 overflows on Gemma); weights stay as stored.
 * Sliding-window layers keep only a ring of W + batch - 1 positions: enough for every query of a chunk
 * to see its W keys while the chunk's own keys are being written, so long contexts cost memory only in
 * the few global layers. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/threads.h"
#include "model/model.h"
#include "tensor/matmul.h"
#include "tensor/vec.h"

#define GM_BATCH 128 /* default chunk of prompt tokens per pass */
/* Queries (tokens x heads of a KV group) from which a chunk's attention runs as matrix products: below
 * it, one (token, head) item per worker over the cache (decode). */
#define GM_ATT_GEMM_MIN_ROWS 32

struct gm_session {
    gm_model *m;
    gm_pool *pool;
    int n_ctx, pos, batch;
    int high;                /* highest position written since the last reset + 1 (for truncation checks) */
    /* activations for one chunk: [GM_BATCH, width] */
    float *x, *xn, *q, *k, *v, *att, *proj, *gate, *up;
    float *logits;           /* [vocab]: the last position's logits */
    void *kcache, *vcache;   /* per layer [ring][n_kv_heads * head_dim] f32 or bf16, at layer_off[l] elements */
    int kv_bf16;
    size_t *layer_off;       /* offset of layer l's cache, in floats */
    int *layer_ring;         /* positions layer l keeps: n_ctx (global) or W + batch - 1 (sliding) */
    size_t cache_floats;
    float *rope_cos, *rope_sin; /* [2][n_ctx][head_dim / 2]: table 0 local layers, table 1 global layers */
    float *scores;           /* [workers][n_ctx] attention scratch */
    /* prefill attention as matrix products (attention_gemm): one KV head's keys [kmax][hd] and values
     * transposed [hd][kmax] gathered from the cache, its queries and outputs [batch * group][hd], and
     * the scores of up to s_rows queries at a time [s_rows][kmax] */
    float *ak, *avt, *aq, *ao, *as;
    int kmax, s_rows;
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
    void *bufs[] = {s->x, s->xn, s->q, s->k, s->v, s->att, s->proj, s->gate, s->up, s->logits,
                    s->kcache, s->vcache, s->rope_cos, s->rope_sin, s->scores,
                    s->ak, s->avt, s->aq, s->ao, s->as};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(s->layer_off);
    free(s->layer_ring);
    free(s);
}

gm_session_params gm_session_params_default(int n_ctx, int n_threads) {
    gm_session_params p = {n_ctx, n_threads, GM_BATCH, 0};
    return p;
}

gm_status gm_session_new(gm_model *m, int n_ctx, int n_threads, gm_session **out) {
    gm_session_params p = gm_session_params_default(n_ctx, n_threads);
    return gm_session_new_ex(m, &p, out);
}

gm_status gm_session_new_ex(gm_model *m, const gm_session_params *prm, gm_session **out) {
    *out = NULL;
    int n_ctx = prm->n_ctx, n_threads = prm->n_threads, batch = prm->batch;
    if (batch < 1 || batch > 4096) return gm_fail(GM_ERR_ARG, "batch size %d is outside 1..4096", batch);
    const gm_config *c = &m->cfg;
    if (n_ctx <= 0 || n_ctx > c->max_pos)
        return gm_fail(GM_ERR_ARG, "context size %d is outside 1..%d (the model's max_position_embeddings)", n_ctx,
                       c->max_pos);
    if (n_threads < 1) n_threads = 1;
    gm_session *s = calloc(1, sizeof *s);
    if (!s) return gm_fail(GM_ERR_NOMEM, "out of memory");
    s->m = m;
    s->n_ctx = n_ctx;
    s->batch = batch;
    s->kv_bf16 = prm->kv_bf16 != 0;
    s->pool = gm_pool_new(n_threads);
    size_t B = (size_t)batch, d = (size_t)c->hidden_size, qd = (size_t)c->n_heads * c->head_dim;
    size_t kvd = (size_t)c->n_kv_heads * c->head_dim, f = (size_t)c->ffn_size, half = (size_t)c->head_dim / 2;
    s->layer_off = calloc((size_t)c->n_layers, sizeof *s->layer_off);
    s->layer_ring = calloc((size_t)c->n_layers, sizeof *s->layer_ring);
    if (!s->layer_off || !s->layer_ring) {
        gm_session_free(s);
        return gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    size_t cache = 0;
    for (int l = 0; l < c->n_layers; l++) {
        int ring = n_ctx;
        if (!c->layer_global[l] && c->sliding_window > 0 && c->sliding_window + batch - 1 < n_ctx)
            ring = c->sliding_window + batch - 1;
        s->layer_ring[l] = ring;
        s->layer_off[l] = cache;
        cache += (size_t)ring * kvd;
    }
    s->cache_floats = cache;
    s->x = xalloc(B * d), s->xn = xalloc(B * d), s->proj = xalloc(B * d);
    s->q = xalloc(B * qd), s->att = xalloc(B * qd), s->k = xalloc(B * kvd), s->v = xalloc(B * kvd);
    s->gate = xalloc(B * f), s->up = xalloc(B * f);
    s->logits = xalloc((size_t)c->vocab_size);
    size_t kv_floats = s->kv_bf16 ? (cache + 1) / 2 : cache; /* xalloc counts floats */
    s->kcache = xalloc(kv_floats), s->vcache = xalloc(kv_floats);
    s->rope_cos = xalloc(2 * (size_t)n_ctx * half), s->rope_sin = xalloc(2 * (size_t)n_ctx * half);
    s->scores = xalloc((size_t)n_threads * (size_t)n_ctx);
    /* attention_gemm's buffers: the keys a chunk can see in the largest layer ring, and scores for as
     * many queries as fit 8 MiB (at least one token's heads of a group) */
    size_t group = (size_t)(c->n_heads / c->n_kv_heads), hdz = (size_t)c->head_dim;
    s->kmax = 0;
    for (int l = 0; l < c->n_layers; l++)
        if (s->layer_ring[l] > s->kmax) s->kmax = s->layer_ring[l];
    size_t s_rows = ((size_t)2 << 20) / (size_t)s->kmax;
    if (s_rows < group) s_rows = group;
    if (s_rows > B * group) s_rows = B * group;
    s->s_rows = (int)s_rows;
    s->ak = xalloc((size_t)s->kmax * hdz), s->avt = xalloc((size_t)s->kmax * hdz);
    s->aq = xalloc(B * group * hdz), s->ao = xalloc(B * group * hdz), s->as = xalloc(s_rows * (size_t)s->kmax);
    if (!s->pool || !s->x || !s->xn || !s->proj || !s->q || !s->att || !s->k || !s->v || !s->gate || !s->up ||
        !s->logits || !s->kcache || !s->vcache || !s->rope_cos || !s->rope_sin || !s->scores || !s->ak ||
        !s->avt || !s->aq || !s->ao || !s->as) {
        gm_session_free(s);
        return gm_fail(GM_ERR_NOMEM, "cannot allocate a session of %d tokens (KV cache %.1f MiB)", n_ctx,
                       2.0 * (double)cache * (s->kv_bf16 ? 2 : 4) / (1 << 20));
    }
    /* Rotary tables in double: theta^(-2i/hd) computed in f32 drifts visibly at long positions.
     * Local layers use rope_local_theta unscaled; global layers rope_theta with linear scaling. */
    for (int g = 0; g < 2; g++) {
        double theta = g ? c->rope_theta : c->rope_local_theta, scale = g ? c->rope_scale : 1.0;
        for (int p = 0; p < n_ctx; p++)
            for (size_t i = 0; i < half; i++) {
                double inv = pow(theta, -2.0 * (double)i / (double)c->head_dim) / scale;
                double a = (double)p * inv;
                size_t at = ((size_t)g * (size_t)n_ctx + (size_t)p) * half + i;
                s->rope_cos[at] = (float)cos(a);
                s->rope_sin[at] = (float)sin(a);
            }
    }
    *out = s;
    return GM_OK;
}

void gm_session_reset(gm_session *s) {
    s->pos = 0;
    s->high = 0;
    s->have_logits = 0;
}

gm_status gm_session_truncate(gm_session *s, int pos) {
    if (pos < 0 || pos > s->pos) return gm_fail(GM_ERR_ARG, "cannot truncate a session at %d to %d", s->pos, pos);
    /* A sliding layer's ring slot for position p is reused by p + ring: positions pos-W+1..pos-1 must not
     * have been overwritten by anything written since. */
    const gm_config *c = &s->m->cfg;
    for (int l = 0; l < c->n_layers; l++) {
        if (s->layer_ring[l] >= s->n_ctx) continue;
        if (s->high - 1 - pos > s->layer_ring[l] - c->sliding_window)
            return gm_fail(GM_ERR_ARG,
                           "cannot rewind from %d to %d: the sliding-window cache keeps only %d positions past the window",
                           s->high, pos, s->layer_ring[l] - c->sliding_window);
    }
    s->pos = pos;
    s->have_logits = 0; /* the logits belong to the old last position */
    return GM_OK;
}
int gm_session_pos(const gm_session *s) { return s->pos; }
int gm_session_n_ctx(const gm_session *s) { return s->n_ctx; }
size_t gm_session_cache_bytes(const gm_session *s) { return 2 * s->cache_floats * (s->kv_bf16 ? 2 : sizeof(float)); }
const float *gm_session_logits(const gm_session *s) { return s->have_logits ? s->logits : NULL; }

/* ---- elementwise ops --------------------------------------------------------------------------- */

/* y = x / sqrt(mean(x^2) + eps) * (1 + w); the sum of squares in double keeps it independent of d. */
static void rmsnorm(float *y, const float *x, const float *w, int n, float eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float r = (float)(1.0 / sqrt(ss / n + (double)eps));
    for (int i = 0; i < n; i++) y[i] = x[i] * r * (1.0f + w[i]);
}

/* Rotate-half RoPE on one head: pairs (i, i + hd/2), as HF and gemma_pytorch do. */
static void rope(float *v, const float *cs, const float *sn, int half) {
    for (int i = 0; i < half; i++) {
        float a = v[i], b = v[i + half];
        v[i] = a * cs[i] - b * sn[i];
        v[i + half] = b * cs[i] + a * sn[i];
    }
}

/* Gemma 2's final soft-cap z = cap * tanh(z / cap); cap 0 = none. */
static void softcap(float *z, size_t n, float cap) {
    if (cap <= 0) return;
    for (size_t i = 0; i < n; i++) z[i] = cap * tanhf(z[i] / cap);
}

/* ---- parallel pieces --------------------------------------------------------------------------- */

typedef struct {
    gm_session *s;
    int layer, T, pos0;
} attn_job;

/* One query's attention weights in place: sc[i0..i1] hold its raw dot products with the keys it sees;
 * they become scale, soft-cap (Gemma 2: before the mask and softmax) and softmax, normalized. */
static void attn_softmax_row(float *sc, int i0, int i1, float scale, float cap) {
    float mx = -INFINITY;
    for (int i = i0; i <= i1; i++) {
        float v = sc[i] * scale;
        if (cap > 0) v = cap * tanhf(v / cap);
        sc[i] = v;
        if (v > mx) mx = v;
    }
    double sum = 0;
    for (int i = i0; i <= i1; i++) {
        sc[i] = expf(sc[i] - mx);
        sum += sc[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int i = i0; i <= i1; i++) sc[i] *= inv;
}

/* One (token, head) pair per work item: scores over the cache, softmax, weighted sum of values. */
static void attention_task(void *ctx, int worker, int n_workers) {
    attn_job *j = ctx;
    gm_session *s = j->s;
    const gm_config *c = &s->m->cfg;
    int hd = c->head_dim, H = c->n_heads, kvd = c->n_kv_heads * hd, group = c->n_heads / c->n_kv_heads;
    /* Items dealt round-robin, not in contiguous shares: with the causal mask a later token attends to
     * more keys, so the last share of a prefill would be the heaviest. */
    const size_t n_items = (size_t)j->T * (size_t)H;
    float *sc = s->scores + (size_t)worker * (size_t)s->n_ctx;
    const float *kc = (const float *)s->kcache + s->layer_off[j->layer];
    const float *vc = (const float *)s->vcache + s->layer_off[j->layer];
    const uint16_t *kh = (const uint16_t *)s->kcache + s->layer_off[j->layer];
    const uint16_t *vh = (const uint16_t *)s->vcache + s->layer_off[j->layer];
    int ring = s->layer_ring[j->layer];
    int window = c->layer_global[j->layer] ? 0 : c->sliding_window;
    float cap = c->attn_softcap;
    const gm_vec_ops *vo = gm_vec();
    for (size_t item = (size_t)worker; item < n_items; item += (size_t)n_workers) {
        int t = (int)(item / (size_t)H), h = (int)(item % (size_t)H);
        int kvh = h / group, p_last = j->pos0 + t; /* causal: keys up to the query's own position */
        int p_first = window > 0 && p_last - window + 1 > 0 ? p_last - window + 1 : 0;
        int n_keys = p_last - p_first + 1;
        const float *q = s->q + (size_t)t * (size_t)H * hd + (size_t)h * hd;
        for (int i = 0; i < n_keys; i++) {
            size_t at = (size_t)((p_first + i) % ring) * kvd + (size_t)kvh * hd;
            sc[i] = s->kv_bf16 ? vo->dot_bf16(q, kh + at, hd) : vo->dot(q, kc + at, hd);
        }
        attn_softmax_row(sc, 0, n_keys - 1, c->query_scale, cap);
        float *o = s->att + (size_t)t * (size_t)H * hd + (size_t)h * hd;
        memset(o, 0, sizeof(float) * (size_t)hd);
        for (int i = 0; i < n_keys; i++) {
            size_t at = (size_t)((p_first + i) % ring) * kvd + (size_t)kvh * hd;
            if (s->kv_bf16) vo->axpy_bf16(o, sc[i], vh + at, hd);
            else vo->axpy(o, sc[i], vc + at, hd);
        }
    }
}

/* Prefill attention as matrix products. For each KV head: its keys of positions [p_lo, p_hi] (every
 * position some query of the chunk sees) are gathered from the cache (ring slots, f32 or bf16) into
 * rows, its values into the transpose; its queries (the tokens' heads of its group) into rows. Then
 * scores = Q K^T and out = P V are two gm_matmul calls, the panel kernels instead of one dot and one
 * axpy per (query, key); in between, each row gets attn_softmax_row over the keys its causal / window
 * mask lets it see, and the masked keys weigh exactly 0. */
typedef struct {
    gm_session *s;
    int layer, kvh, p_lo, n;
} att_gather_job;

static void att_gather_task(void *ctx, int worker, int n_workers) {
    att_gather_job *j = ctx;
    gm_session *s = j->s;
    const gm_config *c = &s->m->cfg;
    const int hd = c->head_dim, kvd = c->n_kv_heads * hd, ring = s->layer_ring[j->layer];
    const size_t off = s->layer_off[j->layer] + (size_t)j->kvh * hd;
    size_t b, e;
    gm_pool_chunk((size_t)j->n, 16, worker, n_workers, &b, &e);
    for (size_t i = b; i < e; i++) {
        const size_t at = off + (size_t)((j->p_lo + (int)i) % ring) * kvd;
        float *kr = s->ak + i * hd;
        if (s->kv_bf16) {
            const uint16_t *kh = (const uint16_t *)s->kcache + at, *vh = (const uint16_t *)s->vcache + at;
            for (int d = 0; d < hd; d++) {
                kr[d] = gm_bf16_to_f32(kh[d]);
                s->avt[(size_t)d * j->n + i] = gm_bf16_to_f32(vh[d]);
            }
        } else {
            const float *kf = (const float *)s->kcache + at, *vf = (const float *)s->vcache + at;
            memcpy(kr, kf, sizeof(float) * (size_t)hd);
            for (int d = 0; d < hd; d++) s->avt[(size_t)d * j->n + i] = vf[d];
        }
    }
}

typedef struct {
    gm_session *s;
    int layer, kvh, t0, pos0, p_lo, n, rows;
} att_softmax_job;

/* Row r of the scores is token t0 + r / group, head kvh * group + r % group. */
static void att_softmax_task(void *ctx, int worker, int n_workers) {
    att_softmax_job *j = ctx;
    gm_session *s = j->s;
    const gm_config *c = &s->m->cfg;
    const int group = c->n_heads / c->n_kv_heads;
    const int window = c->layer_global[j->layer] ? 0 : c->sliding_window;
    const float cap = c->attn_softcap;
    size_t b, e;
    gm_pool_chunk((size_t)j->rows, 1, worker, n_workers, &b, &e);
    for (size_t r = b; r < e; r++) {
        float *sc = s->as + r * (size_t)j->n;
        const int p_last = j->pos0 + j->t0 + (int)r / group;
        const int p_first = window > 0 && p_last - window + 1 > 0 ? p_last - window + 1 : 0;
        const int i0 = p_first - j->p_lo, i1 = p_last - j->p_lo; /* the keys this query sees: [i0, i1] */
        attn_softmax_row(sc, i0, i1, c->query_scale, cap);
        for (int i = 0; i < i0; i++) sc[i] = 0;
        for (int i = i1 + 1; i < j->n; i++) sc[i] = 0;
    }
}

static void attention_gemm(gm_session *s, int layer, int T, int pos0) {
    const gm_config *c = &s->m->cfg;
    const int hd = c->head_dim, H = c->n_heads, group = H / c->n_kv_heads;
    const int window = c->layer_global[layer] ? 0 : c->sliding_window;
    const int p_hi = pos0 + T - 1, p_lo = window > 0 && pos0 - window + 1 > 0 ? pos0 - window + 1 : 0;
    const int n = p_hi - p_lo + 1; /* <= the layer's ring: every position is still in the cache */
    const int tb = s->s_rows / group; /* tokens per block of scores */
    for (int kvh = 0; kvh < c->n_kv_heads; kvh++) {
        att_gather_job g = {s, layer, kvh, p_lo, n};
        gm_pool_run(s->pool, att_gather_task, &g);
        for (int t0 = 0; t0 < T; t0 += tb) {
            const int nt = T - t0 < tb ? T - t0 : tb, rows = nt * group;
            for (int t = 0; t < nt; t++)
                memcpy(s->aq + (size_t)t * group * hd, s->q + ((size_t)(t0 + t) * H + (size_t)kvh * group) * hd,
                       sizeof(float) * (size_t)group * hd);
            gm_matmul(s->as, s->aq, s->ak, GM_DT_F32, rows, hd, n, s->pool);
            att_softmax_job sj = {s, layer, kvh, t0, pos0, p_lo, n, rows};
            gm_pool_run(s->pool, att_softmax_task, &sj);
            gm_matmul(s->ao, s->as, s->avt, GM_DT_F32, rows, n, hd, s->pool);
            for (int t = 0; t < nt; t++)
                memcpy(s->att + ((size_t)(t0 + t) * H + (size_t)kvh * group) * hd, s->ao + (size_t)t * group * hd,
                       sizeof(float) * (size_t)group * hd);
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
    gm_vec()->geglu(j->gate + b, j->up + b, e - b);
}

/* ---- the pass ---------------------------------------------------------------------------------- */

static void mm(gm_session *s, float *y, const float *x, const gm_wmat *w, int T) {
    gm_matmul(y, x, w->data, w->dt, T, w->cols, w->rows, s->pool);
}

/* Run T (<= batch) tokens at positions pos..pos+T-1; logits for all T rows into out_logits if given,
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
        float *kc = (float *)s->kcache + s->layer_off[l], *vc = (float *)s->vcache + s->layer_off[l];
        uint16_t *kh = (uint16_t *)s->kcache + s->layer_off[l], *vh = (uint16_t *)s->vcache + s->layer_off[l];
        int ring = s->layer_ring[l];
        const float *rc = s->rope_cos + (c->layer_global[l] ? (size_t)s->n_ctx * half : 0);
        const float *rsn = s->rope_sin + (c->layer_global[l] ? (size_t)s->n_ctx * half : 0);
        for (int t = 0; t < T; t++) {
            int p = pos0 + t;
            float *qt = s->q + (size_t)t * H * hd, *kt = s->k + (size_t)t * kvd;
            if (L->q_norm) { /* Gemma 3 QK-norm: per head, before RoPE */
                for (int h = 0; h < H; h++) rmsnorm(qt + (size_t)h * hd, qt + (size_t)h * hd, L->q_norm, hd, c->rms_eps);
                for (int h = 0; h < K; h++) rmsnorm(kt + (size_t)h * hd, kt + (size_t)h * hd, L->k_norm, hd, c->rms_eps);
            }
            const float *cs = rc + (size_t)p * half, *sn = rsn + (size_t)p * half;
            for (int h = 0; h < H; h++) rope(qt + (size_t)h * hd, cs, sn, half);
            for (int h = 0; h < K; h++) rope(kt + (size_t)h * hd, cs, sn, half);
            size_t slot = (size_t)(p % ring) * kvd;
            if (s->kv_bf16) {
                for (int e = 0; e < kvd; e++) kh[slot + e] = gm_f32_to_bf16(kt[e]);
                for (int e = 0; e < kvd; e++) vh[slot + e] = gm_f32_to_bf16(s->v[(size_t)t * kvd + e]);
            } else {
                memcpy(kc + slot, kt, sizeof(float) * (size_t)kvd);
                memcpy(vc + slot, s->v + (size_t)t * kvd, sizeof(float) * (size_t)kvd);
            }
        }
        if (T * (c->n_heads / c->n_kv_heads) >= GM_ATT_GEMM_MIN_ROWS) {
            attention_gemm(s, l, T, pos0);
        } else {
            attn_job aj = {s, l, T, pos0};
            gm_pool_run(s->pool, attention_task, &aj);
        }
        mm(s, s->proj, s->att, &L->wo, T);
        if (L->post_attn_norm)
            for (int t = 0; t < T; t++)
                rmsnorm(s->proj + (size_t)t * d, s->proj + (size_t)t * d, L->post_attn_norm, d, c->rms_eps);
        for (size_t i = 0; i < (size_t)T * d; i++) s->x[i] += s->proj[i];
        for (int t = 0; t < T; t++) rmsnorm(s->xn + (size_t)t * d, s->x + (size_t)t * d, L->ffn_norm, d, c->rms_eps);
        mm(s, s->gate, s->xn, &L->wgate, T);
        mm(s, s->up, s->xn, &L->wup, T);
        geglu_job gj = {s->gate, s->up, (size_t)T * (size_t)c->ffn_size};
        gm_pool_run(s->pool, geglu_task, &gj);
        mm(s, s->proj, s->gate, &L->wdown, T);
        if (L->post_ffn_norm)
            for (int t = 0; t < T; t++)
                rmsnorm(s->proj + (size_t)t * d, s->proj + (size_t)t * d, L->post_ffn_norm, d, c->rms_eps);
        for (size_t i = 0; i < (size_t)T * d; i++) s->x[i] += s->proj[i];
    }
    if (out_logits) {
        for (int t = 0; t < T; t++) rmsnorm(s->xn + (size_t)t * d, s->x + (size_t)t * d, m->final_norm, d, c->rms_eps);
        mm(s, out_logits, s->xn, &m->embed, T);
        softcap(out_logits, (size_t)T * c->vocab_size, c->final_softcap);
        memcpy(s->logits, out_logits + (size_t)(T - 1) * c->vocab_size, sizeof(float) * (size_t)c->vocab_size);
    } else if (want_logits) {
        rmsnorm(s->xn, s->x + (size_t)(T - 1) * d, m->final_norm, d, c->rms_eps);
        mm(s, s->logits, s->xn, &m->embed, 1);
        softcap(s->logits, (size_t)c->vocab_size, c->final_softcap);
    }
    s->pos += T;
    if (s->pos > s->high) s->high = s->pos;
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
    for (int off = 0; off < n; off += s->batch) {
        int T = n - off < s->batch ? n - off : s->batch;
        int last = off + T == n;
        float *out = all_logits ? all_logits + (size_t)off * c->vocab_size : NULL;
        /* Chunks before the last only need the cache filled: skip their output projection. */
        forward_chunk(s, ids + off, T, out, last);
    }
    return GM_OK;
}
