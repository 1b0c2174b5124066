/* The trainable model: parameter layout by HF name, Gemma init, conversion from a loaded checkpoint, and
 * the forward + backward pass over a batch built from the ops of train/ops.h. The output layer runs in
 * chunks of rows (logits, loss, dlogits, then dx and dE at once), so a 256k vocabulary never needs the
 * whole [B·T, vocab] logits in memory. */
#include "train/model_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "model/model.h"
#include "tensor/dtype.h"
#include "train/ops.h"

/* Floats of logits held at once by the chunked output layer (32 MiB). */
#define GM_CLASSIFIER_FLOATS ((size_t)1 << 23)

struct gm_train_acts {
    size_t cap; /* rows (tokens) the buffers hold: max_batch · max_seq */
    int chunk;  /* rows per output-layer chunk */
    /* saved by the forward, per layer at stride cap·width ("per layer" buffers with stride 0 in recompute
     * mode are scratch shared by all layers) */
    float *res;            /* [L+1][cap][d]: res[l] = input of layer l, res[L] = final residual */
    float *mid;            /* [L][cap][d]: residual after attention */
    float *rstd_a, *rstd_f; /* [L][cap] */
    float *xn_a, *xn_f;    /* [L][cap][d] (recompute: [cap][d]) */
    float *q, *k, *v;      /* [L][cap][H·hd or K·hd], after RoPE */
    float *att, *lse;      /* [L][cap][H·hd], [L][cap][H] */
    float *gate, *up, *h;  /* [L][cap][ffn] (h: [cap][ffn] in recompute mode) */
    float *rstd_final, *xn_final; /* [cap], [cap][d] */
    /* backward scratch */
    float *dres, *dxn, *dq, *dk, *dv, *datt, *dgate, *dup, *dh;
    float *logits, *lse_ce, *loss_row; /* [chunk][V], [cap], [cap] */
    float *attn_scratch;
    float *rope_cos, *rope_sin; /* [max_seq][hd/2] */
    int32_t *inputs, *targets;  /* [cap]: the unpacked [B][T+1] form */
};

gm_train_opts gm_train_opts_default(int max_batch, int max_seq, int n_threads) {
    gm_train_opts o = {max_batch, max_seq, n_threads, 0};
    return o;
}

static void *falloc(size_t n_floats) {
    void *p = NULL;
    if (posix_memalign(&p, 64, (n_floats ? n_floats : 1) * sizeof(float)) != 0) return NULL;
    memset(p, 0, (n_floats ? n_floats : 1) * sizeof(float));
    return p;
}

static void acts_free(gm_train_acts *a) {
    if (!a) return;
    float *bufs[] = {a->res, a->mid, a->rstd_a, a->rstd_f, a->xn_a, a->xn_f, a->q, a->k, a->v, a->att, a->lse,
                     a->gate, a->up, a->h, a->rstd_final, a->xn_final, a->dres, a->dxn, a->dq, a->dk, a->dv,
                     a->datt, a->dgate, a->dup, a->dh, a->logits, a->lse_ce, a->loss_row, a->attn_scratch,
                     a->rope_cos, a->rope_sin};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(a->inputs);
    free(a->targets);
    free(a);
}

void gm_train_model_free(gm_train_model *m) {
    if (!m) return;
    gm_pool_free(m->pool);
    acts_free(m->acts);
    free(m->params);
    free(m->grads);
    if (m->full_tensors != m->tensors) free(m->full_tensors);
    free(m->tensors);
    free(m->layers);
    free(m->d_layers);
    free(m);
}

/* ---- layout ---------------------------------------------------------------------------------- */

static gm_status check_config(const gm_config *c) {
    if (c->family != 1 || c->attn_softcap > 0 || c->final_softcap > 0 || c->sliding_window > 0 || c->qk_norm ||
        c->sandwich_norms || c->lm_prefix || (c->rope_scale != 0 && c->rope_scale != 1))
        return gm_fail(GM_ERR_UNSUPPORTED, "training supports Gemma 1 configs only so far (family %d)", c->family);
    if (c->vocab_size < 1 || c->hidden_size < 1 || c->n_layers < 1 || c->n_layers > GM_MAX_LAYERS ||
        c->n_heads < 1 || c->n_kv_heads < 1 || c->n_heads % c->n_kv_heads || c->head_dim < 2 || c->head_dim % 2 ||
        c->ffn_size < 1)
        return gm_fail(GM_ERR_ARG, "invalid model shape (vocab %d, d %d, layers %d, heads %d/%d, head_dim %d, ffn %d)",
                       c->vocab_size, c->hidden_size, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->ffn_size);
    return GM_OK;
}

/* Names are "model." + suffix for global tensors, "model.layers.{l}." + suffix for layer l's. */
static void add_tensor(gm_train_tensor *tensors, int *n, gm_train_kind kind, int layer, int64_t s0, int64_t s1,
                       size_t *off, const char *suffix) {
    gm_train_tensor *t = &tensors[(*n)++];
    if (layer < 0) snprintf(t->name, sizeof t->name, "model.%s", suffix);
    else snprintf(t->name, sizeof t->name, "model.layers.%d.%s", layer, suffix);
    t->kind = kind, t->layer = layer, t->ndim = s1 ? 2 : 1;
    t->shape[0] = s0, t->shape[1] = s1;
    t->numel = (size_t)s0 * (size_t)(s1 ? s1 : 1);
    t->offset = *off;
    *off += t->numel;
}

/* A shard's head and FFN counts: query heads, KV heads and FFN units split tp_size ways, except MQA's single
 * KV head, which every shard keeps whole (its gradient is then a partial sum per shard: train/dist.c adds
 * them up). Query head h of a shard still reads KV head h / (H/K) of the shard, as H/K is unchanged. */
static gm_status shard_dims(const gm_config *c, int tp_rank, int tp_size, int *H, int *K, int *F) {
    if (tp_size < 1 || tp_rank < 0 || tp_rank >= tp_size)
        return gm_fail(GM_ERR_ARG, "model-parallel rank %d of %d is invalid", tp_rank, tp_size);
    if (c->n_heads % tp_size || (c->n_kv_heads > 1 && c->n_kv_heads % tp_size) || c->ffn_size % tp_size)
        return gm_fail(GM_ERR_ARG,
                       "model parallelism %d must divide the query heads (%d), the KV heads (%d, unless there is one) "
                       "and the FFN width (%d)",
                       tp_size, c->n_heads, c->n_kv_heads, c->ffn_size);
    *H = c->n_heads / tp_size;
    *K = c->n_kv_heads == 1 ? 1 : c->n_kv_heads / tp_size;
    *F = c->ffn_size / tp_size;
    return GM_OK;
}

/* Tensor list in the order and names of src/model/model.c (Gemma 1: the pre-FFN norm is HF's
 * post_attention_layernorm), with H query heads, K KV heads and F FFN units per layer. */
static void build_layout(const gm_config *c, int H, int K, int F, gm_train_tensor *tensors, int *n, size_t *n_params) {
    int64_t d = c->hidden_size, qd = (int64_t)H * c->head_dim, kvd = (int64_t)K * c->head_dim, f = F;
    size_t off = 0;
    *n = 0;
    add_tensor(tensors, n, GM_TT_EMBED, -1, c->vocab_size, d, &off, "embed_tokens.weight");
    for (int l = 0; l < c->n_layers; l++) {
        add_tensor(tensors, n, GM_TT_ATTN_NORM, l, d, 0, &off, "input_layernorm.weight");
        add_tensor(tensors, n, GM_TT_Q, l, qd, d, &off, "self_attn.q_proj.weight");
        add_tensor(tensors, n, GM_TT_K, l, kvd, d, &off, "self_attn.k_proj.weight");
        add_tensor(tensors, n, GM_TT_V, l, kvd, d, &off, "self_attn.v_proj.weight");
        add_tensor(tensors, n, GM_TT_O, l, d, qd, &off, "self_attn.o_proj.weight");
        add_tensor(tensors, n, GM_TT_FFN_NORM, l, d, 0, &off, "post_attention_layernorm.weight");
        add_tensor(tensors, n, GM_TT_GATE, l, f, d, &off, "mlp.gate_proj.weight");
        add_tensor(tensors, n, GM_TT_UP, l, f, d, &off, "mlp.up_proj.weight");
        add_tensor(tensors, n, GM_TT_DOWN, l, d, f, &off, "mlp.down_proj.weight");
    }
    add_tensor(tensors, n, GM_TT_FINAL_NORM, -1, d, 0, &off, "norm.weight");
    *n_params = off;
}

gm_status gm_train_layout(const gm_config *c, int tp_rank, int tp_size, gm_train_tensor *tensors, int *n_tensors,
                          size_t *n_params) {
    int H, K, F;
    gm_status st = check_config(c);
    if (!st) st = shard_dims(c, tp_rank, tp_size, &H, &K, &F);
    if (st) return st;
    build_layout(c, H, K, F, tensors, n_tensors, n_params);
    return GM_OK;
}

void gm_train_shard_copy(const gm_train_model *m, int i, float *full, float *shard, int to_shard) {
    const gm_train_tensor *F = &m->full_tensors[i], *S = &m->tensors[i];
    float *f = full + F->offset, *s = shard + S->offset;
    size_t rows = (size_t)S->shape[0], cols = S->ndim == 2 ? (size_t)S->shape[1] : 1;
    size_t fcols = F->ndim == 2 ? (size_t)F->shape[1] : 1;
    if (S->numel == F->numel) { /* replicated */
        memcpy(to_shard ? s : f, to_shard ? f : s, sizeof(float) * S->numel);
    } else if (cols == fcols) { /* row-parallel: a block of rows */
        float *fb = f + (size_t)m->tp_rank * rows * cols;
        memcpy(to_shard ? s : fb, to_shard ? fb : s, sizeof(float) * S->numel);
    } else { /* column-parallel: a block of columns in every row */
        for (size_t r = 0; r < rows; r++) {
            float *fr = f + r * fcols + (size_t)m->tp_rank * cols, *sr = s + r * cols;
            memcpy(to_shard ? sr : fr, to_shard ? fr : sr, sizeof(float) * cols);
        }
    }
}

static void bind_views(gm_train_model *m, float *base, float **embed, float **final_norm, gm_train_layer *L) {
    for (int i = 0; i < m->n_tensors; i++) {
        const gm_train_tensor *t = &m->tensors[i];
        float *p = base + t->offset;
        gm_train_layer *y = t->layer >= 0 ? &L[t->layer] : NULL;
        switch (t->kind) {
        case GM_TT_EMBED: *embed = p; break;
        case GM_TT_FINAL_NORM: *final_norm = p; break;
        case GM_TT_ATTN_NORM: y->attn_norm = p; break;
        case GM_TT_Q: y->wq = p; break;
        case GM_TT_K: y->wk = p; break;
        case GM_TT_V: y->wv = p; break;
        case GM_TT_O: y->wo = p; break;
        case GM_TT_FFN_NORM: y->ffn_norm = p; break;
        case GM_TT_GATE: y->wgate = p; break;
        case GM_TT_UP: y->wup = p; break;
        case GM_TT_DOWN: y->wdown = p; break;
        }
    }
}

static gm_status acts_new(gm_train_model *m) {
    const gm_config *c = &m->cfg;
    gm_train_acts *a = calloc(1, sizeof *a);
    if (!a) return gm_fail(GM_ERR_NOMEM, "out of memory");
    m->acts = a;
    size_t L = (size_t)c->n_layers, cap = (size_t)m->opt.max_batch * (size_t)m->opt.max_seq;
    size_t d = (size_t)c->hidden_size, qd = (size_t)m->heads * c->head_dim, kvd = (size_t)m->kv_heads * c->head_dim;
    size_t f = (size_t)m->ffn, V = (size_t)c->vocab_size, H = (size_t)m->heads;
    size_t rl = m->opt.recompute ? 1 : L; /* copies of the recomputable buffers */
    a->cap = cap;
    size_t chunk = GM_CLASSIFIER_FLOATS / V;
    a->chunk = (int)(chunk < 1 ? 1 : chunk > cap ? cap : chunk);
    a->res = falloc((L + 1) * cap * d), a->mid = falloc(L * cap * d);
    a->rstd_a = falloc(L * cap), a->rstd_f = falloc(L * cap);
    a->xn_a = falloc(rl * cap * d), a->xn_f = falloc(rl * cap * d);
    a->q = falloc(L * cap * qd), a->k = falloc(L * cap * kvd), a->v = falloc(L * cap * kvd);
    a->att = falloc(L * cap * qd), a->lse = falloc(L * cap * H);
    a->gate = falloc(L * cap * f), a->up = falloc(L * cap * f), a->h = falloc(rl * cap * f);
    a->rstd_final = falloc(cap), a->xn_final = falloc(cap * d);
    a->dres = falloc(cap * d), a->dxn = falloc(cap * d);
    a->dq = falloc(cap * qd), a->dk = falloc(cap * kvd), a->dv = falloc(cap * kvd), a->datt = falloc(cap * qd);
    a->dgate = falloc(cap * f), a->dup = falloc(cap * f), a->dh = falloc(cap * f);
    a->logits = falloc((size_t)a->chunk * V), a->lse_ce = falloc(cap), a->loss_row = falloc(cap);
    gm_attn_shape s = {m->opt.max_batch, m->opt.max_seq, m->heads, m->kv_heads, c->head_dim, 0, 0, 0};
    a->attn_scratch = falloc(gm_attention_scratch_floats(&s, gm_pool_size(m->pool)));
    size_t half = (size_t)c->head_dim / 2;
    a->rope_cos = falloc((size_t)m->opt.max_seq * half), a->rope_sin = falloc((size_t)m->opt.max_seq * half);
    a->inputs = malloc(sizeof(int32_t) * cap), a->targets = malloc(sizeof(int32_t) * cap);
    float *bufs[] = {a->res, a->mid, a->rstd_a, a->rstd_f, a->xn_a, a->xn_f, a->q, a->k, a->v, a->att, a->lse,
                     a->gate, a->up, a->h, a->rstd_final, a->xn_final, a->dres, a->dxn, a->dq, a->dk, a->dv,
                     a->datt, a->dgate, a->dup, a->dh, a->logits, a->lse_ce, a->loss_row, a->attn_scratch,
                     a->rope_cos, a->rope_sin};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (!bufs[i]) return gm_fail(GM_ERR_NOMEM, "cannot allocate training activations for %zu tokens", cap);
    if (!a->inputs || !a->targets) return gm_fail(GM_ERR_NOMEM, "out of memory");
    gm_rope_table(a->rope_cos, a->rope_sin, m->opt.max_seq, c->head_dim, (double)c->rope_theta);
    return GM_OK;
}

gm_status gm_train_model_new(const gm_config *c, const gm_train_opts *o, gm_train_model **out) {
    return gm_train_model_new_shard(c, o, 0, 1, out);
}

/* Room for n floats rounded up to GM_TRAIN_PAD, zeroed. */
static void *falloc_padded(size_t n) {
    return falloc((n + GM_TRAIN_PAD - 1) / GM_TRAIN_PAD * GM_TRAIN_PAD);
}

gm_status gm_train_model_new_shard(const gm_config *c, const gm_train_opts *o, int tp_rank, int tp_size,
                                   gm_train_model **out) {
    *out = NULL;
    int H, K, F;
    gm_status st = check_config(c);
    if (!st) st = shard_dims(c, tp_rank, tp_size, &H, &K, &F);
    if (st) return st;
    if (o->max_batch < 1 || o->max_seq < 1 || o->max_seq > c->max_pos || (size_t)o->max_batch * o->max_seq > (1u << 30))
        return gm_fail(GM_ERR_ARG, "batch %d x sequence %d is invalid (sequence at most the context, %d)", o->max_batch,
                       o->max_seq, c->max_pos);
    gm_train_model *m = calloc(1, sizeof *m);
    if (!m) return gm_fail(GM_ERR_NOMEM, "out of memory");
    m->cfg = *c;
    m->opt = *o;
    if (m->opt.n_threads < 1) m->opt.n_threads = 1;
    m->tp_rank = tp_rank, m->tp_size = tp_size, m->heads = H, m->kv_heads = K, m->ffn = F;
    size_t n_max = (size_t)(2 + 9 * c->n_layers);
    m->tensors = calloc(n_max, sizeof *m->tensors);
    m->full_tensors = tp_size == 1 ? m->tensors : calloc(n_max, sizeof *m->full_tensors);
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    m->d_layers = calloc((size_t)c->n_layers, sizeof *m->d_layers);
    if (!m->tensors || !m->full_tensors || !m->layers || !m->d_layers) {
        gm_train_model_free(m);
        return gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    build_layout(c, H, K, F, m->tensors, &m->n_tensors, &m->n_params);
    if (tp_size == 1) m->n_full_tensors = m->n_tensors, m->n_full_params = m->n_params;
    else
        build_layout(c, c->n_heads, c->n_kv_heads, c->ffn_size, m->full_tensors, &m->n_full_tensors,
                     &m->n_full_params);
    m->params = falloc_padded(m->n_params);
    m->grads = falloc_padded(m->n_params);
    m->pool = gm_pool_new(m->opt.n_threads);
    if (!m->params || !m->grads) {
        gm_train_model_free(m);
        return gm_fail(GM_ERR_NOMEM, "cannot allocate %zu parameters and their gradients", m->n_params);
    }
    if (!m->pool) {
        gm_train_model_free(m);
        return GM_ERR_ARG; /* gm_pool_new recorded why */
    }
    bind_views(m, m->params, &m->embed, &m->final_norm, m->layers);
    bind_views(m, m->grads, &m->d_embed, &m->d_final_norm, m->d_layers);
    if ((st = acts_new(m))) {
        gm_train_model_free(m);
        return st;
    }
    *out = m;
    return GM_OK;
}

const gm_train_tensor *gm_train_find(const gm_train_model *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name)) return &m->tensors[i];
    return NULL;
}

void gm_train_zero_grad(gm_train_model *m) { memset(m->grads, 0, sizeof(float) * m->n_params); }

/* ---- init ------------------------------------------------------------------------------------ */

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in (0, 1]: never 0, so the log in Box–Muller is finite. */
static double unit(uint64_t *s) { return ((double)(splitmix(s) >> 11) + 1.0) * (1.0 / 9007199254740992.0); }

/* Elements k0..k1-1 of a tensor's N(0, std²) stream (state s0) into out[0..k1-k0). The stream makes element
 * pairs (k, k+1), k even, from two splitmix64 draws each, so pair k starts at state s0 + k·step: a shard
 * starts there instead of generating the whole tensor. */
static void normal_range(uint64_t s0, float std, size_t k0, size_t k1, float *out) {
    size_t k = k0 & ~(size_t)1;
    uint64_t s = s0 + (uint64_t)k * 0x9E3779B97F4A7C15ull;
    for (; k < k1; k += 2) {
        double r = sqrt(-2.0 * log(unit(&s))), a = 6.283185307179586 * unit(&s);
        if (k >= k0) out[k - k0] = (float)(std * r * cos(a));
        if (k + 1 < k1) out[k + 1 - k0] = (float)(std * r * sin(a));
    }
}

void gm_train_init(gm_train_model *m, uint64_t seed, float std) {
    for (int i = 0; i < m->n_tensors; i++) {
        const gm_train_tensor *t = &m->tensors[i], *F = &m->full_tensors[i];
        float *p = m->params + t->offset;
        if (t->ndim == 1) { /* norm offsets: 1 + w = 1 */
            memset(p, 0, sizeof(float) * t->numel);
            continue;
        }
        /* each tensor its own stream, so adding a tensor kind later leaves the others' values unchanged */
        uint64_t s = seed ^ (0x100000001B3ull * (uint64_t)(i + 1));
        size_t rows = (size_t)t->shape[0], cols = (size_t)t->shape[1], fcols = (size_t)F->shape[1];
        size_t k0 = (size_t)m->tp_rank * t->numel; /* a row-parallel shard's first element */
        if (t->numel == F->numel) normal_range(s, std, 0, t->numel, p);
        else if (cols == fcols) normal_range(s, std, k0, k0 + t->numel, p);
        else
            for (size_t r = 0; r < rows; r++) {
                size_t kr = r * fcols + (size_t)m->tp_rank * cols;
                normal_range(s, std, kr, kr + cols, p + r * cols);
            }
        if (t->kind == GM_TT_EMBED && m->cfg.pad_id >= 0 && m->cfg.pad_id < m->cfg.vocab_size)
            memset(p + (size_t)m->cfg.pad_id * (size_t)m->cfg.hidden_size, 0, sizeof(float) * (size_t)m->cfg.hidden_size);
    }
}

/* The shard's part of w (full tensor F, shard tensor t of model m) into dst: rows converted one at a time,
 * so a shard never holds the whole matrix in f32. */
static gm_status copy_matrix(float *dst, const gm_wmat *w, const gm_train_model *m, int i) {
    const gm_train_tensor *t = &m->tensors[i], *F = &m->full_tensors[i];
    if (w->rows != F->shape[0] || w->cols != F->shape[1])
        return gm_fail(GM_ERR_FORMAT, "%s: shape [%d, %d], expected [%lld, %lld]", t->name, w->rows, w->cols,
                       (long long)F->shape[0], (long long)F->shape[1]);
    const gm_dtype_traits *tr = gm_dtype_info(w->dt);
    size_t row_bytes;
    if (!tr || !gm_dtype_row_bytes(w->dt, (size_t)w->cols, &row_bytes))
        return gm_fail(GM_ERR_UNSUPPORTED, "%s: cannot convert its dtype to f32", t->name);
    size_t rows = (size_t)t->shape[0], cols = (size_t)t->shape[1], fcols = (size_t)w->cols;
    int col_par = cols != fcols;
    size_t r0 = t->numel == F->numel || col_par ? 0 : (size_t)m->tp_rank * rows; /* row-parallel: rows from r0 */
    size_t c0 = col_par ? (size_t)m->tp_rank * cols : 0;                         /* column-parallel: from c0 */
    float *row = col_par ? malloc(sizeof(float) * fcols) : NULL;
    if (col_par && !row) return gm_fail(GM_ERR_NOMEM, "out of memory");
    for (size_t r = 0; r < rows; r++) {
        const char *src = (const char *)w->data + (r0 + r) * row_bytes;
        if (!col_par) {
            tr->to_f32(src, dst + r * cols, cols);
            continue;
        }
        tr->to_f32(src, row, fcols);
        memcpy(dst + r * cols, row + c0, sizeof(float) * cols);
    }
    free(row);
    return GM_OK;
}

gm_status gm_train_model_from_model(const gm_model *src, const gm_train_opts *o, gm_train_model **out) {
    return gm_train_model_from_model_shard(src, o, 0, 1, out);
}

gm_status gm_train_model_from_model_shard(const gm_model *src, const gm_train_opts *o, int tp_rank, int tp_size,
                                          gm_train_model **out) {
    gm_train_model *m;
    gm_status st = gm_train_model_new_shard(&src->cfg, o, tp_rank, tp_size, &m);
    if (st) return st;
    for (int i = 0; i < m->n_tensors && !st; i++) {
        const gm_train_tensor *t = &m->tensors[i];
        float *p = m->params + t->offset;
        const gm_layer *L = t->layer >= 0 ? &src->layers[t->layer] : NULL;
        const float *norm = NULL;
        const gm_wmat *w = NULL;
        switch (t->kind) {
        case GM_TT_EMBED: w = &src->embed; break;
        case GM_TT_FINAL_NORM: norm = src->final_norm; break;
        case GM_TT_ATTN_NORM: norm = L->attn_norm; break;
        case GM_TT_FFN_NORM: norm = L->ffn_norm; break;
        case GM_TT_Q: w = &L->wq; break;
        case GM_TT_K: w = &L->wk; break;
        case GM_TT_V: w = &L->wv; break;
        case GM_TT_O: w = &L->wo; break;
        case GM_TT_GATE: w = &L->wgate; break;
        case GM_TT_UP: w = &L->wup; break;
        case GM_TT_DOWN: w = &L->wdown; break;
        }
        if (norm) memcpy(p, norm, sizeof(float) * t->numel); /* already f32, stored as w (used as 1 + w) */
        else if (w) st = copy_matrix(p, w, m, i);
        else st = gm_fail(GM_ERR_FORMAT, "the model has no tensor %s", t->name);
    }
    if (st) {
        gm_train_model_free(m);
        return st;
    }
    *out = m;
    return GM_OK;
}

/* ---- forward / backward ---------------------------------------------------------------------- */

/* Layer l's slice of a saved buffer of `width` floats per token (stride 0 for shared scratch). */
static float *at(float *buf, int l, int shared, size_t cap, size_t width) {
    return buf + (shared ? 0 : (size_t)l * cap * width);
}

typedef struct {
    float *res_in, *mid, *res_out, *rstd_a, *rstd_f, *xn_a, *xn_f, *q, *k, *v, *att, *lse, *gate, *up, *h;
} layer_acts;

static layer_acts layer_slices(gm_train_model *m, int l) {
    const gm_config *c = &m->cfg;
    gm_train_acts *a = m->acts;
    size_t cap = a->cap, d = (size_t)c->hidden_size, qd = (size_t)m->heads * c->head_dim;
    size_t kvd = (size_t)m->kv_heads * c->head_dim, f = (size_t)m->ffn;
    int rc = m->opt.recompute;
    layer_acts s = {
        at(a->res, l, 0, cap, d), at(a->mid, l, 0, cap, d), at(a->res, l + 1, 0, cap, d),
        at(a->rstd_a, l, 0, cap, 1), at(a->rstd_f, l, 0, cap, 1), at(a->xn_a, l, rc, cap, d),
        at(a->xn_f, l, rc, cap, d), at(a->q, l, 0, cap, qd), at(a->k, l, 0, cap, kvd), at(a->v, l, 0, cap, kvd),
        at(a->att, l, 0, cap, qd), at(a->lse, l, 0, cap, (size_t)m->heads), at(a->gate, l, 0, cap, f),
        at(a->up, l, 0, cap, f), at(a->h, l, rc, cap, f)};
    return s;
}

static gm_attn_shape attn_shape(const gm_train_model *m, int B, int T) {
    const gm_config *c = &m->cfg;
    gm_attn_shape s = {B, T, m->heads, m->kv_heads, c->head_dim, c->query_scale, 0, 0};
    return s;
}

/* Model parallelism: a row-parallel projection's output (o, down) and a column-parallel one's input gradient
 * (q/k/v, gate/up) are partial sums over the shards until added up here. */
static void tp_sum(gm_train_model *m, float *buf, size_t n) {
    if (m->tp_sum) m->tp_sum(m->tp_ctx, buf, n);
}

static void add_rows(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

/* pos: positions within packed segments (train/ops.h), NULL for one sequence per row. */
static void forward(gm_train_model *m, const int32_t *inputs, const int32_t *pos, int B, int T) {
    const gm_config *c = &m->cfg;
    gm_train_acts *a = m->acts;
    gm_pool *P = m->pool;
    int N = B * T, d = c->hidden_size, H = m->heads, K = m->kv_heads, hd = c->head_dim, f = m->ffn;
    gm_attn_shape as = attn_shape(m, B, T);
    gm_embedding_forward(a->res, inputs, m->embed, N, d, c->embed_scale, P);
    for (int l = 0; l < c->n_layers; l++) {
        const gm_train_layer *W = &m->layers[l];
        layer_acts s = layer_slices(m, l);
        gm_rmsnorm_forward(s.xn_a, s.rstd_a, s.res_in, W->attn_norm, N, d, c->rms_eps, P);
        gm_matmul_forward(s.q, s.xn_a, W->wq, N, d, H * hd, P);
        gm_matmul_forward(s.k, s.xn_a, W->wk, N, d, K * hd, P);
        gm_matmul_forward(s.v, s.xn_a, W->wv, N, d, K * hd, P);
        gm_rope_forward_pos(s.q, pos, B, T, H, hd, a->rope_cos, a->rope_sin, P);
        gm_rope_forward_pos(s.k, pos, B, T, K, hd, a->rope_cos, a->rope_sin, P);
        gm_attention_forward_pos(s.att, s.lse, s.q, s.k, s.v, pos, &as, a->attn_scratch, P);
        gm_matmul_forward(s.mid, s.att, W->wo, N, H * hd, d, P);
        tp_sum(m, s.mid, (size_t)N * d);
        add_rows(s.mid, s.res_in, (size_t)N * d);
        gm_rmsnorm_forward(s.xn_f, s.rstd_f, s.mid, W->ffn_norm, N, d, c->rms_eps, P);
        gm_matmul_forward(s.gate, s.xn_f, W->wgate, N, d, f, P);
        gm_matmul_forward(s.up, s.xn_f, W->wup, N, d, f, P);
        gm_geglu_forward(s.h, s.gate, s.up, (size_t)N * f, P);
        gm_matmul_forward(s.res_out, s.h, W->wdown, N, f, d, P);
        tp_sum(m, s.res_out, (size_t)N * d);
        add_rows(s.res_out, s.mid, (size_t)N * d);
    }
    const float *last = a->res + (size_t)c->n_layers * a->cap * (size_t)d;
    gm_rmsnorm_forward(a->xn_final, a->rstd_final, last, m->final_norm, N, d, c->rms_eps, P);
}

/* Tied output layer + cross-entropy, chunk by chunk. With grads: dlogits overwrite the chunk's logits,
 * then dx_final += dlogits·E and dE += dlogitsᵀ·xn_final. Row n's loss enters with weight row_w[n], or
 * with 1 / counted when row_w is NULL (the mean). Returns the summed (unweighted) loss (double). */
static double classifier(gm_train_model *m, const int32_t *targets, int N, int counted, const float *row_w,
                         int grads) {
    const gm_config *c = &m->cfg;
    gm_train_acts *a = m->acts;
    int d = c->hidden_size, V = c->vocab_size;
    for (int r0 = 0; r0 < N; r0 += a->chunk) {
        int rows = N - r0 < a->chunk ? N - r0 : a->chunk;
        const float *xr = a->xn_final + (size_t)r0 * d;
        gm_matmul_forward(a->logits, xr, m->embed, rows, d, V, m->pool);
        gm_crossentropy_forward(a->loss_row + r0, a->lse_ce + r0, a->logits, targets + r0, rows, V, m->pool);
        if (!grads) continue;
        gm_crossentropy_backward(a->logits, a->logits, a->lse_ce + r0, targets + r0, rows, V,
                                 row_w ? 1.0f : 1.0f / (float)counted, m->pool);
        if (row_w)
            for (int r = 0; r < rows; r++) {
                float w = row_w[r0 + r], *dl = a->logits + (size_t)r * V;
                for (int v = 0; v < V; v++) dl[v] *= w;
            }
        gm_matmul_backward(a->dxn + (size_t)r0 * d, m->d_embed, a->logits, xr, m->embed, rows, d, V, m->pool);
    }
    double sum = 0;
    for (int n = 0; n < N; n++) sum += a->loss_row[n];
    return sum;
}

static void zero(float *p, size_t n) { memset(p, 0, sizeof(float) * n); }

static void backward(gm_train_model *m, const int32_t *inputs, const int32_t *pos, int B, int T) {
    const gm_config *c = &m->cfg;
    gm_train_acts *a = m->acts;
    gm_pool *P = m->pool;
    int N = B * T, d = c->hidden_size, H = m->heads, K = m->kv_heads, hd = c->head_dim, f = m->ffn;
    size_t Nd = (size_t)N * d, Nq = (size_t)N * H * hd, Nkv = (size_t)N * K * hd, Nf = (size_t)N * f;
    gm_attn_shape as = attn_shape(m, B, T);
    /* a->dxn holds d(xn_final) from the classifier */
    zero(a->dres, Nd);
    const float *last = a->res + (size_t)c->n_layers * a->cap * (size_t)d;
    gm_rmsnorm_backward(a->dres, m->d_final_norm, a->dxn, last, m->final_norm, a->rstd_final, N, d, P);
    for (int l = c->n_layers - 1; l >= 0; l--) {
        const gm_train_layer *W = &m->layers[l], *dW = &m->d_layers[l];
        layer_acts s = layer_slices(m, l);
        /* FFN: res_out = mid + down(gelu(gate) ⊙ up); dres holds d(res_out) and becomes d(mid) */
        if (m->opt.recompute) {
            gm_rmsnorm_forward(s.xn_f, s.rstd_f, s.mid, W->ffn_norm, N, d, c->rms_eps, P);
            gm_geglu_forward(s.h, s.gate, s.up, Nf, P);
        }
        zero(a->dh, Nf);
        gm_matmul_backward(a->dh, dW->wdown, a->dres, s.h, W->wdown, N, f, d, P);
        zero(a->dgate, Nf);
        zero(a->dup, Nf);
        gm_geglu_backward(a->dgate, a->dup, a->dh, s.gate, s.up, Nf, P);
        zero(a->dxn, Nd);
        gm_matmul_backward(a->dxn, dW->wgate, a->dgate, s.xn_f, W->wgate, N, d, f, P);
        gm_matmul_backward(a->dxn, dW->wup, a->dup, s.xn_f, W->wup, N, d, f, P);
        tp_sum(m, a->dxn, Nd);
        gm_rmsnorm_backward(a->dres, dW->ffn_norm, a->dxn, s.mid, W->ffn_norm, s.rstd_f, N, d, P);
        /* attention: mid = res_in + o(attn(rope(q), rope(k), v)); dres becomes d(res_in) */
        if (m->opt.recompute) gm_rmsnorm_forward(s.xn_a, s.rstd_a, s.res_in, W->attn_norm, N, d, c->rms_eps, P);
        zero(a->datt, Nq);
        gm_matmul_backward(a->datt, dW->wo, a->dres, s.att, W->wo, N, H * hd, d, P);
        zero(a->dq, Nq);
        zero(a->dk, Nkv);
        zero(a->dv, Nkv);
        gm_attention_backward_pos(a->dq, a->dk, a->dv, a->datt, s.q, s.k, s.v, s.att, s.lse, pos, &as,
                                  a->attn_scratch, P);
        gm_rope_backward_pos(a->dq, pos, B, T, H, hd, a->rope_cos, a->rope_sin, P);
        gm_rope_backward_pos(a->dk, pos, B, T, K, hd, a->rope_cos, a->rope_sin, P);
        zero(a->dxn, Nd);
        gm_matmul_backward(a->dxn, dW->wq, a->dq, s.xn_a, W->wq, N, d, H * hd, P);
        gm_matmul_backward(a->dxn, dW->wk, a->dk, s.xn_a, W->wk, N, d, K * hd, P);
        gm_matmul_backward(a->dxn, dW->wv, a->dv, s.xn_a, W->wv, N, d, K * hd, P);
        tp_sum(m, a->dxn, Nd);
        gm_rmsnorm_backward(a->dres, dW->attn_norm, a->dxn, s.res_in, W->attn_norm, s.rstd_a, N, d, P);
    }
    gm_embedding_backward(m->d_embed, a->dres, inputs, N, d, c->embed_scale, P);
}

static gm_status check_batch(const gm_train_model *m, const int32_t *inputs, const int32_t *targets, int B, int T) {
    if (B < 1 || T < 1 || B > m->opt.max_batch || T > m->opt.max_seq)
        return gm_fail(GM_ERR_ARG, "batch %d x %d tokens exceeds the model's training buffers (%d x %d)", B, T,
                       m->opt.max_batch, m->opt.max_seq);
    int V = m->cfg.vocab_size;
    for (int n = 0; n < B * T; n++) {
        if (inputs[n] < 0 || inputs[n] >= V)
            return gm_fail(GM_ERR_ARG, "input token %d at [%d][%d] is outside the vocabulary (0..%d)", inputs[n], n / T,
                           n % T, V - 1);
        if (targets[n] < -1 || targets[n] >= V)
            return gm_fail(GM_ERR_ARG, "target %d at [%d][%d] is neither -1 (ignored) nor in 0..%d", targets[n], n / T,
                           n % T, V - 1);
    }
    return GM_OK;
}

/* Segments as the ops need them: every row starts one, and inside one positions count up by one. */
static gm_status check_pos(const int32_t *pos, int B, int T) {
    for (int n = 0; pos && n < B * T; n++) {
        int t = n % T;
        if (pos[n] != 0 && (t == 0 || pos[n] != pos[n - 1] + 1))
            return gm_fail(GM_ERR_ARG,
                           "position %d at [%d][%d] neither starts a segment (0) nor follows the one before it (%d)",
                           pos[n], n / T, t, t ? pos[n - 1] + 1 : 0);
    }
    return GM_OK;
}

static gm_status run(gm_train_model *m, const int32_t *inputs, const int32_t *targets, const int32_t *pos, int B,
                     int T, float *loss, int grads) {
    gm_status st = check_batch(m, inputs, targets, B, T);
    if (!st) st = check_pos(pos, B, T);
    if (st) return st;
    int N = B * T, counted = 0;
    for (int n = 0; n < N; n++) counted += targets[n] >= 0;
    m->last_targets = counted;
    *loss = 0;
    if (counted == 0) return GM_OK;
    forward(m, inputs, pos, B, T);
    if (grads) zero(m->acts->dxn, (size_t)N * m->cfg.hidden_size);
    double sum = classifier(m, targets, N, counted, NULL, grads);
    *loss = (float)(sum / counted);
    if (grads) backward(m, inputs, pos, B, T);
    return GM_OK;
}

/* Split tokens [B][T+1] into the inputs and shifted targets. */
static gm_status unpack(gm_train_model *m, const int32_t *tokens, int B, int T) {
    if (B < 1 || T < 1 || B > m->opt.max_batch || T > m->opt.max_seq)
        return gm_fail(GM_ERR_ARG, "batch %d x %d tokens exceeds the model's training buffers (%d x %d)", B, T,
                       m->opt.max_batch, m->opt.max_seq);
    for (int b = 0; b < B; b++) {
        memcpy(m->acts->inputs + (size_t)b * T, tokens + (size_t)b * (T + 1), sizeof(int32_t) * (size_t)T);
        memcpy(m->acts->targets + (size_t)b * T, tokens + (size_t)b * (T + 1) + 1, sizeof(int32_t) * (size_t)T);
    }
    for (int n = 0; n < B * T; n++)
        if (m->acts->targets[n] < 0)
            return gm_fail(GM_ERR_ARG, "token %d in sequence %d is negative (use the masked call for ignored targets)",
                           m->acts->targets[n], n / T);
    return GM_OK;
}

gm_status gm_train_forward_backward_masked(gm_train_model *m, const int32_t *inputs, const int32_t *targets, int B,
                                           int T, float *loss) {
    return run(m, inputs, targets, NULL, B, T, loss, 1);
}

gm_status gm_train_loss_masked(gm_train_model *m, const int32_t *inputs, const int32_t *targets, int B, int T,
                               float *loss) {
    return run(m, inputs, targets, NULL, B, T, loss, 0);
}

gm_status gm_train_forward_backward_packed(gm_train_model *m, const int32_t *inputs, const int32_t *targets,
                                           const int32_t *pos, int B, int T, float *loss) {
    return run(m, inputs, targets, pos, B, T, loss, 1);
}

gm_status gm_train_loss_packed(gm_train_model *m, const int32_t *inputs, const int32_t *targets, const int32_t *pos,
                               int B, int T, float *loss) {
    return run(m, inputs, targets, pos, B, T, loss, 0);
}

gm_status gm_train_forward_backward(gm_train_model *m, const int32_t *tokens, int B, int T, float *loss) {
    gm_status st = unpack(m, tokens, B, T);
    return st ? st : run(m, m->acts->inputs, m->acts->targets, NULL, B, T, loss, 1);
}

gm_status gm_train_loss(gm_train_model *m, const int32_t *tokens, int B, int T, float *loss) {
    gm_status st = unpack(m, tokens, B, T);
    return st ? st : run(m, m->acts->inputs, m->acts->targets, NULL, B, T, loss, 0);
}

/* ---- hooks for other heads and losses (alignment) ------------------------------------------------ */

gm_status gm_train_hidden(gm_train_model *m, const int32_t *inputs, int B, int T, const float **hidden) {
    *hidden = NULL;
    gm_status st = check_batch(m, inputs, inputs, B, T);
    if (st) return st;
    forward(m, inputs, NULL, B, T);
    *hidden = m->acts->xn_final;
    return GM_OK;
}

gm_status gm_train_hidden_backward(gm_train_model *m, const int32_t *inputs, int B, int T, const float *d_hidden) {
    gm_status st = check_batch(m, inputs, inputs, B, T);
    if (st) return st;
    /* the saved activations are those of the last forward: the caller passes the same inputs */
    memcpy(m->acts->dxn, d_hidden, sizeof(float) * (size_t)B * T * (size_t)m->cfg.hidden_size);
    backward(m, inputs, NULL, B, T);
    return GM_OK;
}

static gm_status run_weighted(gm_train_model *m, const int32_t *inputs, const int32_t *targets, const int32_t *pos,
                              const float *weights, int B, int T, float *logp, float *loss, int grads) {
    gm_status st = check_batch(m, inputs, targets, B, T);
    if (!st) st = check_pos(pos, B, T);
    if (st) return st;
    int N = B * T;
    for (int n = 0; n < N; n++)
        if (weights && !isfinite(weights[n]))
            return gm_fail(GM_ERR_ARG, "loss weight %g at [%d][%d] is not finite", (double)weights[n], n / T, n % T);
    forward(m, inputs, pos, B, T);
    if (grads) zero(m->acts->dxn, (size_t)N * m->cfg.hidden_size);
    classifier(m, targets, N, 1, weights, grads);
    double sum = 0;
    for (int n = 0; n < N; n++) {
        float lr = targets[n] >= 0 ? m->acts->loss_row[n] : 0.0f;
        if (logp) logp[n] = -lr;
        if (weights) sum += (double)weights[n] * lr;
    }
    m->last_targets = 0;
    for (int n = 0; n < N; n++) m->last_targets += targets[n] >= 0;
    if (loss) *loss = (float)sum;
    if (grads) backward(m, inputs, pos, B, T);
    return GM_OK;
}

gm_status gm_train_logprobs(gm_train_model *m, const int32_t *inputs, const int32_t *targets, int B, int T,
                            float *logp) {
    return run_weighted(m, inputs, targets, NULL, NULL, B, T, logp, NULL, 0);
}

gm_status gm_train_logprobs_packed(gm_train_model *m, const int32_t *inputs, const int32_t *targets,
                                   const int32_t *pos, int B, int T, float *logp) {
    return run_weighted(m, inputs, targets, pos, NULL, B, T, logp, NULL, 0);
}

gm_status gm_train_forward_backward_weighted(gm_train_model *m, const int32_t *inputs, const int32_t *targets,
                                             const float *weights, int B, int T, float *logp, float *loss) {
    if (!weights) return gm_fail(GM_ERR_ARG, "weighted loss needs weights");
    return run_weighted(m, inputs, targets, NULL, weights, B, T, logp, loss, 1);
}
