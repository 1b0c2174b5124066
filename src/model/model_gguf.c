/* Loading a GGUF checkpoint (llama.cpp's architectures gemma, gemma2, gemma3) into the same gm_model
 * the Hugging Face loader builds.
 *
 * Config: from the {arch}.* keys, plus what llama.cpp hard-codes rather than stores (src/llama-model.cpp,
 * llm_load_hparams): Gemma 2 slides on even layers with a default window of 4096 and soft-caps 50 / 30;
 * Gemma 3 layer i attends globally iff (i + 1) % 6 == 0 (no window key: all global), local RoPE base
 * 10000, global linear scaling from rope.scaling.*; query scale 1/sqrt(key_length), except the 27B
 * models (recognised by layer count, 46 for Gemma 2 and 62 for Gemma 3) which use 1/sqrt(d / H). Our
 * own converter adds {arch}.attention.scale only where a checkpoint's query_pre_attn_scalar disagrees
 * with that rule (llama.cpp ignores the key). The embedding scale is sqrt(d) rounded to bf16, as the
 * Hugging Face / gemma_pytorch references compute it (llama.cpp uses the exact f32 value).
 *
 * Tensors: token_embd {d, vocab} is the same bytes as PyTorch [vocab, d]; every norm vector holds
 * 1 + w (convert_hf_to_gguf.py adds 1), so 1 is subtracted once when norms are converted to f32. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "formats/gguf.h"
#include "model/model_internal.h"
#include "tokenizer/vocab.h"

#define MAX_DIM (1 << 20)
#define MAX_VOCAB (1 << 22)
#define MAX_POS (1 << 24)

static void release_gguf(void *p) { gm_gguf_close(p); }

typedef struct {
    const gm_gguf *g;
    const char *arch, *path;
    char key[160];
} keys;

static const char *K(keys *k, const char *suffix) {
    snprintf(k->key, sizeof k->key, "%s.%s", k->arch, suffix);
    return k->key;
}

/* An integer key in [lo, hi]; absent: *out keeps its default unless required. */
static gm_status get_int(keys *k, const char *suffix, int required, int64_t lo, int64_t hi, int *out) {
    const char *key = K(k, suffix);
    if (!gm_gguf_has(k->g, key)) {
        if (required) return gm_fail(GM_ERR_FORMAT, "%s: missing key '%s'", k->path, key);
        return GM_OK;
    }
    uint64_t v;
    gm_status st = gm_gguf_get_u64(k->g, key, &v);
    if (st) return st;
    if ((int64_t)v < lo || v > (uint64_t)hi)
        return gm_fail(GM_ERR_FORMAT, "%s: key '%s' = %llu is out of range [%lld, %lld]", k->path, key,
                       (unsigned long long)v, (long long)lo, (long long)hi);
    *out = (int)v;
    return GM_OK;
}

static gm_status get_float(keys *k, const char *suffix, int required, double lo, double hi, float *out) {
    const char *key = K(k, suffix);
    if (!gm_gguf_has(k->g, key)) {
        if (required) return gm_fail(GM_ERR_FORMAT, "%s: missing key '%s'", k->path, key);
        return GM_OK;
    }
    float v;
    gm_status st = gm_gguf_get_f32(k->g, key, &v);
    if (st) return st;
    if (!(v >= lo && v <= hi))
        return gm_fail(GM_ERR_FORMAT, "%s: key '%s' = %g is out of range [%g, %g]", k->path, key, (double)v, lo, hi);
    *out = v;
    return GM_OK;
}

/* The query scale llama.cpp derives for this shape (see the header comment). */
static float llama_cpp_query_scale(const gm_config *c) {
    int is_27b = (c->family == 2 && c->n_layers == 46) || (c->family == 3 && c->n_layers == 62);
    return is_27b ? 1.0f / sqrtf((float)(c->hidden_size / c->n_heads)) : 1.0f / sqrtf((float)c->head_dim);
}

float gm_gguf_default_query_scale(const gm_config *c) { return llama_cpp_query_scale(c); }

static gm_status special_id(const gm_gguf *g, const char *key, int dflt, int *out) {
    *out = dflt;
    if (!gm_gguf_has(g, key)) return GM_OK;
    uint32_t v;
    gm_status st = gm_gguf_get_u32(g, key, &v);
    if (st) return st;
    if (v >= (uint32_t)MAX_VOCAB) return gm_fail(GM_ERR_FORMAT, "%s: key '%s' = %u is not a token id", gm_gguf_path(g), key, v);
    *out = (int)v;
    return GM_OK;
}

static gm_status config_from_gguf(const gm_gguf *g, gm_config *c) {
    memset(c, 0, sizeof *c);
    const char *path = gm_gguf_path(g), *arch;
    gm_status st = gm_gguf_get_str(g, "general.architecture", &arch);
    if (st) return st;
    if (!strcmp(arch, "gemma")) c->family = 1;
    else if (!strcmp(arch, "gemma2")) c->family = 2;
    else if (!strcmp(arch, "gemma3")) c->family = 3;
    else
        return gm_fail(GM_ERR_UNSUPPORTED, "%s: general.architecture '%s' is not supported (supported: gemma, gemma2, gemma3)",
                       path, arch);
    keys k = {g, arch, path, {0}};
    if ((st = get_int(&k, "embedding_length", 1, 1, MAX_DIM, &c->hidden_size)) ||
        (st = get_int(&k, "block_count", 1, 1, GM_MAX_LAYERS, &c->n_layers)) ||
        (st = get_int(&k, "feed_forward_length", 1, 1, MAX_DIM, &c->ffn_size)) ||
        (st = get_int(&k, "attention.head_count", 1, 1, 4096, &c->n_heads)) ||
        (st = get_int(&k, "context_length", 1, 1, MAX_POS, &c->max_pos)))
        return st;
    c->n_kv_heads = c->n_heads; /* llama.cpp's default */
    if ((st = get_int(&k, "attention.head_count_kv", 0, 1, 4096, &c->n_kv_heads))) return st;
    c->head_dim = c->hidden_size / c->n_heads;
    if ((st = get_int(&k, "attention.key_length", 0, 2, 65536, &c->head_dim))) return st;
    int vlen = c->head_dim;
    if ((st = get_int(&k, "attention.value_length", 0, 2, 65536, &vlen))) return st;
    if (vlen != c->head_dim)
        return gm_fail(GM_ERR_UNSUPPORTED, "%s: %s.attention.value_length %d differs from key_length %d", path, arch,
                       vlen, c->head_dim);
    if (c->head_dim < 2 || c->head_dim % 2)
        return gm_fail(GM_ERR_FORMAT, "%s: head dimension %d must be even and at least 2", path, c->head_dim);
    if (c->n_heads % c->n_kv_heads)
        return gm_fail(GM_ERR_FORMAT, "%s: head_count %d is not a multiple of head_count_kv %d", path, c->n_heads,
                       c->n_kv_heads);
    if ((int64_t)c->n_heads * c->head_dim > MAX_DIM)
        return gm_fail(GM_ERR_FORMAT, "%s: head_count x key_length is too large", path);
    if ((st = get_float(&k, "attention.layer_norm_rms_epsilon", 1, 1e-30, 0.5, &c->rms_eps))) return st;
    c->rope_theta = 10000.f;
    if ((st = get_float(&k, "rope.freq_base", 0, 1.0001, 1e12, &c->rope_theta))) return st;
    c->rope_local_theta = c->family == 3 ? 10000.f : c->rope_theta;
    c->rope_scale = 1;
    const char *rst = NULL;
    if (gm_gguf_has(g, K(&k, "rope.scaling.type")) && (st = gm_gguf_get_str(g, k.key, &rst))) return st;
    if (rst && strcmp(rst, "none") != 0) {
        if (strcmp(rst, "linear") != 0)
            return gm_fail(GM_ERR_UNSUPPORTED, "%s: %s = '%s' is not supported (only linear)", path, k.key, rst);
        if ((st = get_float(&k, "rope.scaling.factor", 1, 0, 1e6, &c->rope_scale))) return st;
        if (c->rope_scale < 1) c->rope_scale = 1; /* llama.cpp: factor 0 means none */
    } else if (!rst && (st = get_float(&k, "rope.scale_linear", 0, 1, 1e6, &c->rope_scale))) {
        return st; /* the older spelling of the same factor */
    }
    if (c->family == 2 && c->rope_scale != 1)
        return gm_fail(GM_ERR_UNSUPPORTED, "%s: RoPE scaling on a gemma2 model is not supported", path);

    for (int l = 0; l < c->n_layers; l++) c->layer_global[l] = 1;
    if (c->family == 2) {
        c->attn_softcap = 50, c->final_softcap = 30, c->sliding_window = 4096; /* llama_hparams defaults */
        if ((st = get_float(&k, "attn_logit_softcapping", 0, 0, 1e6, &c->attn_softcap)) ||
            (st = get_float(&k, "final_logit_softcapping", 0, 0, 1e6, &c->final_softcap)) ||
            (st = get_int(&k, "attention.sliding_window", 0, 1, MAX_POS, &c->sliding_window)))
            return st;
        for (int l = 0; l < c->n_layers; l++) c->layer_global[l] = l % 2 == 1;
    } else if (c->family == 3) {
        if ((st = get_float(&k, "final_logit_softcapping", 0, 0, 1e6, &c->final_softcap)) ||
            (st = get_int(&k, "attention.sliding_window", 0, 0, MAX_POS, &c->sliding_window)))
            return st;
        if (c->sliding_window > 0)
            for (int l = 0; l < c->n_layers; l++) c->layer_global[l] = (l + 1) % 6 == 0;
    }
    c->sandwich_norms = c->family >= 2;
    c->qk_norm = c->family == 3;
    c->query_scale = llama_cpp_query_scale(c);
    if ((st = get_float(&k, "attention.scale", 0, 1e-6, 1e6, &c->query_scale))) return st;
    c->embed_scale = gm_bf16_to_f32(gm_f32_to_bf16((float)sqrt((double)c->hidden_size)));
    if ((st = special_id(g, "tokenizer.ggml.bos_token_id", 2, &c->bos_id)) ||
        (st = special_id(g, "tokenizer.ggml.eos_token_id", 1, &c->eos_id)) ||
        (st = special_id(g, "tokenizer.ggml.padding_token_id", 0, &c->pad_id)))
        return st;

    /* the vocabulary size is the embedding's row count */
    const gm_gguf_tensor *emb = gm_gguf_find_tensor(g, "token_embd.weight");
    if (!emb) return gm_fail(GM_ERR_FORMAT, "%s: missing tensor 'token_embd.weight'", path);
    if (emb->ndim != 2 || emb->ne[0] != c->hidden_size || emb->ne[1] < 1 || emb->ne[1] > MAX_VOCAB)
        return gm_fail(GM_ERR_FORMAT, "%s: tensor 'token_embd.weight' has shape {%lld, %lld} (ndim %d), expected {%d, n_vocab}",
                       path, (long long)emb->ne[0], (long long)emb->ne[1], emb->ndim, c->hidden_size);
    c->vocab_size = (int)emb->ne[1];
    size_t ki;
    uint64_t n_tok;
    if (gm_gguf_has(g, "tokenizer.ggml.tokens") &&
        !gm_gguf_get_arr(g, "tokenizer.ggml.tokens", GM_GGUF_STRING, &ki, &n_tok) && n_tok != (uint64_t)c->vocab_size)
        return gm_fail(GM_ERR_FORMAT, "%s: tokenizer.ggml.tokens has %llu tokens but token_embd.weight has %d rows", path,
                       (unsigned long long)n_tok, c->vocab_size);
    return GM_OK;
}

/* The GGUF tensor name of an expected tensor. */
static void gguf_name(const gm_expected_tensor *e, char *buf, size_t cap) {
    static const char *const per_layer[] = {
        [K_ATTN_NORM] = "attn_norm", [K_POST_ATTN_NORM] = "post_attention_norm", [K_FFN_NORM] = "ffn_norm",
        [K_POST_FFN_NORM] = "post_ffw_norm", [K_Q_NORM] = "attn_q_norm", [K_K_NORM] = "attn_k_norm",
        [K_Q] = "attn_q", [K_K] = "attn_k", [K_V] = "attn_v", [K_O] = "attn_output",
        [K_GATE] = "ffn_gate", [K_UP] = "ffn_up", [K_DOWN] = "ffn_down",
    };
    if (e->kind == K_EMBED) snprintf(buf, cap, "token_embd.weight");
    else if (e->kind == K_FINAL_NORM) snprintf(buf, cap, "output_norm.weight");
    else snprintf(buf, cap, "blk.%d.%s.weight", e->layer, per_layer[e->kind]);
}

/* Every tensor the metadata implies is present with its shape, and nothing else is: checked before the
 * model is allocated, so the model's own buffers are bounded by what the file holds. */
static gm_status check_tensors(const gm_gguf *g, const gm_config *cfg, gm_expected_tensor *exp, int n_exp) {
    const char *path = gm_gguf_path(g);
    for (int i = 0; i < n_exp; i++) {
        gm_expected_tensor *e = &exp[i];
        gguf_name(e, e->name, sizeof e->name);
        const gm_gguf_tensor *t = gm_gguf_find_tensor(g, e->name);
        if (!t)
            return gm_fail(GM_ERR_FORMAT, "%s: missing tensor '%s' (required by the %s metadata)", path, e->name,
                           cfg->family == 1 ? "gemma" : cfg->family == 2 ? "gemma2" : "gemma3");
        /* ggml lists dims innermost first: {cols, rows} for a PyTorch [rows, cols] matrix */
        int ok = t->ndim == e->ndim && (e->ndim == 1 ? t->ne[0] == e->shape[0] : t->ne[0] == e->shape[1] && t->ne[1] == e->shape[0]);
        if (!ok && e->ndim == 1)
            return gm_fail(GM_ERR_FORMAT, "%s: tensor '%s' has %d dims {%lld, %lld}, the metadata implies {%lld}", path,
                           e->name, t->ndim, (long long)t->ne[0], (long long)t->ne[1], (long long)e->shape[0]);
        if (!ok)
            return gm_fail(GM_ERR_FORMAT, "%s: tensor '%s' has %d dims {%lld, %lld}, the metadata implies {%lld, %lld}",
                           path, e->name, t->ndim, (long long)t->ne[0], (long long)t->ne[1], (long long)e->shape[1],
                           (long long)e->shape[0]);
        if (e->ndim == 1 && gm_dtype_info(t->dtype)->block_elems != 1)
            return gm_fail(GM_ERR_UNSUPPORTED, "%s: norm tensor '%s' is %s; norms must be F32, F16 or BF16", path, e->name,
                           gm_dtype_info(t->dtype)->name);
    }
    /* names are unique in a GGUF, so equal counts mean nothing else is there */
    if (gm_gguf_n_tensors(g) != (size_t)n_exp) {
        for (size_t i = 0; i < gm_gguf_n_tensors(g); i++) {
            const char *name = gm_gguf_tensor_at(g, i)->name;
            int known = 0;
            for (int j = 0; j < n_exp && !known; j++) known = strcmp(exp[j].name, name) == 0;
            if (!known)
                return gm_fail(GM_ERR_FORMAT, "%s: unexpected tensor '%s' (not part of a Gemma model with this metadata)",
                               path, name);
        }
    }
    return GM_OK;
}

gm_status gm_model_from_gguf(gm_gguf *g, int own, gm_model **out) {
    *out = NULL;
    const char *path = gm_gguf_path(g);
    gm_config cfg;
    gm_expected_tensor *exp = NULL;
    gm_model *m = NULL;
    int n_exp = 0;
    gm_status st = config_from_gguf(g, &cfg);
    if (!st && (n_exp = gm_model_expected_tensors(&cfg, &exp)) < 0) st = gm_fail(GM_ERR_NOMEM, "%s: out of memory", path);
    if (!st) st = check_tensors(g, &cfg, exp, n_exp);
    free(exp);
    exp = NULL;
    if (!st) st = gm_model_alloc(&cfg, &m, &exp, &n_exp);
    if (st) {
        free(exp);
        if (own) gm_gguf_close(g);
        return st;
    }
    if (own) gm_model_set_release(m, release_gguf, g);
    int norm_slot = 0;
    for (int i = 0; i < n_exp && !st; i++) {
        gm_expected_tensor e = exp[i];
        gguf_name(&exp[i], e.name, sizeof e.name);
        const gm_gguf_tensor *t = gm_gguf_find_tensor(g, e.name); /* present and shaped: checked above */
        st = gm_model_bind(m, &e, t->dtype, t->data, &norm_slot, e.ndim == 1 ? 1.0f : 0.0f);
        if (st) st = gm_fail_prefix(st, "%s: ", path);
    }
    free(exp);
    if (st) {
        gm_model_free(m); /* closes g if owned */
        return st;
    }
    *out = m;
    return GM_OK;
}

gm_status gm_model_load_gguf(const char *path, const gm_load_options *opt_in, gm_model **out) {
    *out = NULL;
    gm_load_options opt = opt_in ? *opt_in : gm_load_options_default();
    if (opt.verbose) fprintf(stderr, "loading %s\n", path);
    gm_gguf *g;
    gm_status st = gm_gguf_open(path, opt.use_mmap, &g);
    if (st) return st;
    return gm_model_from_gguf(g, 1, out);
}

/* ==== writing: GGUF and Hugging Face directories =================================================
 *
 * GGUF conventions followed (llama.cpp convert_hf_to_gguf.py / gguf-py constants.py / src/llama-quant.cpp):
 * tensor names token_embd, blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, attn_q_norm, attn_k_norm,
 * post_attention_norm, ffn_norm, ffn_gate, ffn_up, ffn_down, post_ffw_norm}, output_norm, no output tensor
 * (tied); dims innermost first; every norm stored as 1 + w and kept F32 (like every 1-D tensor); the
 * requested type applies to the matrices; Q8_0 quantizes every matrix including token_embd (rows that are
 * not a whole number of blocks fall back to F16, as the converter does); Q4_0 (llama-quantize's rule for
 * tied embeddings) stores token_embd as Q6_K, or Q8_0 where the rows are not whole Q6_K blocks. */

/* llama.cpp's general.file_type values (gguf-py LlamaFileType). */
enum { FTYPE_F32 = 0, FTYPE_F16 = 1, FTYPE_Q4_0 = 2, FTYPE_Q8_0 = 7, FTYPE_BF16 = 32 };

/* ---- the model's tensors under both names ------------------------------------------------------ */

typedef struct {
    char gguf[64], hf[96];
    const void *data; /* matrices: stored rows; norms: f32 w */
    gm_dtype dt;
    int rows, cols; /* norms: rows = 0, cols = length */
    int is_embed;
} slot;

static int add_slot(slot *s, int *n, const char *gguf, const char *hf, const void *data, gm_dtype dt, int rows, int cols) {
    slot *x = &s[(*n)++];
    memset(x, 0, sizeof *x);
    snprintf(x->gguf, sizeof x->gguf, "%s", gguf);
    snprintf(x->hf, sizeof x->hf, "%s", hf);
    x->data = data, x->dt = dt, x->rows = rows, x->cols = cols;
    return 0;
}

static slot *model_slots(const gm_model *m, int *n_out) {
    const gm_config *c = &m->cfg;
    slot *s = calloc((size_t)(2 + 13 * c->n_layers), sizeof *s);
    if (!s) return NULL;
    int n = 0;
    char g[64], h[96];
#define MAT(gn, hn, w) \
    (snprintf(g, sizeof g, "blk.%d.%s.weight", l, gn), snprintf(h, sizeof h, "model.layers.%d.%s.weight", l, hn), \
     add_slot(s, &n, g, h, (w).data, (w).dt, (w).rows, (w).cols))
#define NORM(gn, hn, v, len) \
    (snprintf(g, sizeof g, "blk.%d.%s.weight", l, gn), snprintf(h, sizeof h, "model.layers.%d.%s.weight", l, hn), \
     add_slot(s, &n, g, h, (v), GM_DT_F32, 0, (len)))
    add_slot(s, &n, "token_embd.weight", "model.embed_tokens.weight", m->embed.data, m->embed.dt, m->embed.rows,
             m->embed.cols);
    s[0].is_embed = 1;
    int d = c->hidden_size, hd = c->head_dim;
    for (int l = 0; l < c->n_layers; l++) {
        const gm_layer *L = &m->layers[l];
        NORM("attn_norm", "input_layernorm", L->attn_norm, d);
        MAT("attn_q", "self_attn.q_proj", L->wq);
        MAT("attn_k", "self_attn.k_proj", L->wk);
        MAT("attn_v", "self_attn.v_proj", L->wv);
        MAT("attn_output", "self_attn.o_proj", L->wo);
        if (c->qk_norm) {
            NORM("attn_q_norm", "self_attn.q_norm", L->q_norm, hd);
            NORM("attn_k_norm", "self_attn.k_norm", L->k_norm, hd);
        }
        if (c->sandwich_norms) {
            NORM("post_attention_norm", "post_attention_layernorm", L->post_attn_norm, d);
            NORM("ffn_norm", "pre_feedforward_layernorm", L->ffn_norm, d);
        } else {
            NORM("ffn_norm", "post_attention_layernorm", L->ffn_norm, d); /* Gemma 1's pre-FFN norm */
        }
        MAT("ffn_gate", "mlp.gate_proj", L->wgate);
        MAT("ffn_up", "mlp.up_proj", L->wup);
        MAT("ffn_down", "mlp.down_proj", L->wdown);
        if (c->sandwich_norms) NORM("post_ffw_norm", "post_feedforward_layernorm", L->post_ffn_norm, d);
    }
#undef MAT
#undef NORM
    add_slot(s, &n, "output_norm.weight", "model.norm.weight", m->final_norm, GM_DT_F32, 0, d);
    *n_out = n;
    return s;
}

/* ---- row conversion ---------------------------------------------------------------------------- */

typedef struct {
    const slot *s;
    gm_dtype to;
    float add; /* norms: +1 going to GGUF */
} conv;

static gm_status convert_rows(const conv *c, void *dst, size_t nbytes) {
    const slot *s = c->s;
    int rows = s->rows ? s->rows : 1;
    size_t sb, db;
    if (!gm_dtype_row_bytes(s->dt, (size_t)s->cols, &sb) || !gm_dtype_row_bytes(c->to, (size_t)s->cols, &db) ||
        db * (size_t)rows != nbytes)
        return gm_fail(GM_ERR_ARG, "row size mismatch");
    if (s->dt == c->to && c->add == 0) {
        memcpy(dst, s->data, nbytes);
        return GM_OK;
    }
    const gm_dtype_traits *from = gm_dtype_info(s->dt), *to = gm_dtype_info(c->to);
    if (!from->to_f32 || !to->from_f32) return gm_fail(GM_ERR_UNSUPPORTED, "no conversion %s -> %s", from->name, to->name);
    float *row = malloc(sizeof(float) * (size_t)s->cols);
    if (!row) return gm_fail(GM_ERR_NOMEM, "out of memory");
    for (int r = 0; r < rows; r++) {
        from->to_f32((const char *)s->data + (size_t)r * sb, row, (size_t)s->cols);
        if (c->add != 0)
            for (int i = 0; i < s->cols; i++) row[i] += c->add;
        to->from_f32(row, (char *)dst + (size_t)r * db, (size_t)s->cols);
    }
    free(row);
    return GM_OK;
}

static gm_status fill_conv(void *ctx, void *dst, size_t nbytes) { return convert_rows(ctx, dst, nbytes); }

/* ---- small file helpers ------------------------------------------------------------------------ */

typedef struct {
    char *tmp;
    const char *path;
    FILE *f;
} atomic_file;

static gm_status af_open(atomic_file *a, const char *path) {
    a->path = path;
    a->f = NULL;
    a->tmp = malloc(strlen(path) + 16);
    if (!a->tmp) return gm_fail(GM_ERR_NOMEM, "out of memory");
    sprintf(a->tmp, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(a->tmp);
    if (fd >= 0) { /* mkstemp makes 0600: give the file the mode an ordinary create would */
        mode_t um = umask(0);
        umask(um);
        (void)fchmod(fd, 0666 & ~um);
    }
    if (fd < 0 || !(a->f = fdopen(fd, "wb"))) {
        gm_status st = gm_fail(GM_ERR_IO, "%s: cannot create a temporary file next to it: %s", path, strerror(errno));
        if (fd >= 0) close(fd), unlink(a->tmp);
        free(a->tmp);
        a->tmp = NULL;
        return st;
    }
    setvbuf(a->f, NULL, _IOFBF, 1 << 20);
    return GM_OK;
}

static void af_abort(atomic_file *a) {
    if (a->f) fclose(a->f);
    if (a->tmp) unlink(a->tmp), free(a->tmp);
    a->f = NULL, a->tmp = NULL;
}

static gm_status af_commit(atomic_file *a) {
    int bad = ferror(a->f) || fflush(a->f) != 0 || fsync(fileno(a->f)) != 0;
    int e = errno;
    if (fclose(a->f) != 0) bad = 1;
    a->f = NULL;
    if (bad || rename(a->tmp, a->path) != 0) {
        gm_status st = gm_fail(GM_ERR_IO, "%s: write failed: %s", a->path, strerror(bad ? e : errno));
        af_abort(a);
        return st;
    }
    free(a->tmp);
    a->tmp = NULL;
    return GM_OK;
}

static gm_status write_whole(const char *path, const void *data, size_t len) {
    atomic_file a;
    gm_status st = af_open(&a, path);
    if (st) return st;
    if (len && fwrite(data, 1, len, a.f) != len) {
        st = gm_fail(GM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        af_abort(&a);
        return st;
    }
    return af_commit(&a);
}


/* ---- GGUF output ------------------------------------------------------------------------------- */

/* The stored type of a matrix for an output type (see the header comment). */
static gm_dtype matrix_type(gm_dtype out, const slot *s) {
    size_t bytes;
    if (out == GM_DT_Q4_0 && s->is_embed) {
        if (gm_dtype_row_bytes(GM_DT_Q6_K, (size_t)s->cols, &bytes)) return GM_DT_Q6_K;
        if (gm_dtype_row_bytes(GM_DT_Q8_0, (size_t)s->cols, &bytes)) return GM_DT_Q8_0;
        return GM_DT_F16;
    }
    if (!gm_dtype_row_bytes(out, (size_t)s->cols, &bytes)) return GM_DT_F16; /* not whole blocks */
    return out;
}

gm_status gm_model_save_gguf(const gm_model *m, const gm_vocab *vocab, const char *name, gm_dtype out,
                             const char *path, int verbose) {
    const gm_config *c = &m->cfg;
    int quiet = !verbose, ftype;
    switch (out) {
    case GM_DT_F32: ftype = FTYPE_F32; break;
    case GM_DT_F16: ftype = FTYPE_F16; break;
    case GM_DT_BF16: ftype = FTYPE_BF16; break;
    case GM_DT_Q8_0: ftype = FTYPE_Q8_0; break;
    case GM_DT_Q4_0: ftype = FTYPE_Q4_0; break;
    default: return gm_fail(GM_ERR_ARG, "%s: GGUF matrices can be F32, F16, BF16, Q8_0 or Q4_0", path);
    }
    const char *arch = c->family == 1 ? "gemma" : c->family == 2 ? "gemma2" : "gemma3";
    /* what GGUF cannot say (llama.cpp hard-codes these per architecture) */
    for (int l = 0; l < c->n_layers; l++) {
        int want = c->family == 1 ? 1 : c->family == 2 ? l % 2 == 1 : (c->sliding_window > 0 ? (l + 1) % 6 == 0 : 1);
        int all_global = 1;
        for (int j = 0; j < c->n_layers; j++) all_global &= c->layer_global[j];
        if (c->family == 3 && all_global) want = 1;
        if (c->layer_global[l] != want)
            return gm_fail(GM_ERR_UNSUPPORTED, "layer %d is %s, but llama.cpp's %s layer pattern makes it %s: not representable in GGUF",
                           l, c->layer_global[l] ? "global" : "sliding", arch, want ? "global" : "sliding");
    }
    if (c->family == 3 && c->rope_local_theta != 10000.f)
        return gm_fail(GM_ERR_UNSUPPORTED, "gemma3 local RoPE base %g: llama.cpp fixes it at 10000", c->rope_local_theta);
    if (c->family == 3 && c->attn_softcap != 0)
        return gm_fail(GM_ERR_UNSUPPORTED, "gemma3 with attention soft-capping is not representable in GGUF");
    if (c->family == 2 && c->rope_scale != 1)
        return gm_fail(GM_ERR_UNSUPPORTED, "gemma2 with RoPE scaling is not representable in GGUF");
    float bf16_scale = gm_bf16_to_f32(gm_f32_to_bf16(sqrtf((float)c->hidden_size)));
    if (c->embed_scale != bf16_scale && !quiet)
        fprintf(stderr, "gemma convert: note: the embedding scale %.9g becomes %.9g (sqrt(d) rounded to bf16, as GGUF loading assumes)\n",
                (double)c->embed_scale, (double)bf16_scale);

    gm_gguf_writer *w;
    gm_status st = gm_gguf_writer_new(&w);
    if (st) return st;
    int n_slots = 0;
    slot *slots = model_slots(m, &n_slots);
    conv *convs = calloc((size_t)(n_slots ? n_slots : 1), sizeof *convs);
    if (!slots || !convs) {
        st = gm_fail(GM_ERR_NOMEM, "out of memory");
        goto done;
    }
    char k[128];
#define KEY(suffix) (snprintf(k, sizeof k, "%s.%s", arch, suffix), k)
    if ((st = gm_gguf_add_str(w, "general.architecture", arch)) || (st = gm_gguf_add_str(w, "general.type", "model")) ||
        (st = gm_gguf_add_str(w, "general.name", name)) ||
        (st = gm_gguf_add_u32(w, KEY("context_length"), (uint32_t)c->max_pos)) ||
        (st = gm_gguf_add_u32(w, KEY("embedding_length"), (uint32_t)c->hidden_size)) ||
        (st = gm_gguf_add_u32(w, KEY("block_count"), (uint32_t)c->n_layers)) ||
        (st = gm_gguf_add_u32(w, KEY("feed_forward_length"), (uint32_t)c->ffn_size)) ||
        (st = gm_gguf_add_u32(w, KEY("attention.head_count"), (uint32_t)c->n_heads)) ||
        (st = gm_gguf_add_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->n_kv_heads)) ||
        (st = gm_gguf_add_f32(w, KEY("attention.layer_norm_rms_epsilon"), c->rms_eps)) ||
        (st = gm_gguf_add_u32(w, KEY("attention.key_length"), (uint32_t)c->head_dim)) ||
        (st = gm_gguf_add_u32(w, KEY("attention.value_length"), (uint32_t)c->head_dim)))
        goto done;
    if (c->family == 2) {
        if ((st = gm_gguf_add_f32(w, KEY("attn_logit_softcapping"), c->attn_softcap)) ||
            (st = gm_gguf_add_f32(w, KEY("final_logit_softcapping"), c->final_softcap)) ||
            (st = gm_gguf_add_u32(w, KEY("attention.sliding_window"), (uint32_t)c->sliding_window)))
            goto done;
    }
    if (c->family == 3 || c->rope_theta != 10000.f) /* the Gemma 1/2 converters leave the default unsaid */
        if ((st = gm_gguf_add_f32(w, KEY("rope.freq_base"), c->rope_theta))) goto done;
    if (c->family == 3) {
        int all_global = 1;
        for (int l = 0; l < c->n_layers; l++) all_global &= c->layer_global[l];
        if (!all_global && (st = gm_gguf_add_u32(w, KEY("attention.sliding_window"), (uint32_t)c->sliding_window))) goto done;
        if (c->rope_scale != 1 && ((st = gm_gguf_add_str(w, KEY("rope.scaling.type"), "linear")) ||
                                   (st = gm_gguf_add_f32(w, KEY("rope.scaling.factor"), c->rope_scale))))
            goto done;
        if (c->final_softcap != 0 && (st = gm_gguf_add_f32(w, KEY("final_logit_softcapping"), c->final_softcap))) goto done;
    } else if (c->rope_scale != 1) {
        if ((st = gm_gguf_add_str(w, KEY("rope.scaling.type"), "linear")) ||
            (st = gm_gguf_add_f32(w, KEY("rope.scaling.factor"), c->rope_scale)))
            goto done;
    }
    float rule = gm_gguf_default_query_scale(c);
    if (fabsf(c->query_scale - rule) > 1e-6f * rule) {
        if (!quiet)
            fprintf(stderr, "gemma convert: note: query scale %.9g differs from llama.cpp's rule (%.9g): written as %s, "
                            "which llama.cpp ignores\n", (double)c->query_scale, (double)rule, KEY("attention.scale"));
        if ((st = gm_gguf_add_f32(w, KEY("attention.scale"), c->query_scale))) goto done;
    }
    if ((st = gm_gguf_add_u32(w, "general.file_type", (uint32_t)ftype)) ||
        (st = gm_gguf_add_u32(w, "general.quantization_version", 2)))
        goto done;
#undef KEY
    if (vocab && (st = gm_vocab_to_gguf(vocab, c->vocab_size, c->family == 1 ? 107 : -1, w))) goto done;

    for (int i = 0; i < n_slots; i++) {
        const slot *s = &slots[i];
        conv *cv = &convs[i];
        cv->s = s;
        int64_t ne[2] = {s->cols, s->rows};
        if (s->rows == 0) { /* norm: 1 + w, f32 */
            cv->to = GM_DT_F32;
            cv->add = 1.0f;
            st = gm_gguf_add_tensor_fn(w, s->gguf, GM_DT_F32, 1, ne, fill_conv, cv);
        } else {
            cv->to = matrix_type(out, s);
            st = gm_gguf_add_tensor_fn(w, s->gguf, cv->to, 2, ne, fill_conv, cv);
        }
        if (st) goto done;
        if (!quiet)
            fprintf(stderr, s->rows ? "%-32s %-4s -> %-4s, shape = {%d, %d}\n" : "%-32s %-4s -> %-4s, shape = {%d}\n",
                    s->gguf, gm_dtype_info(s->dt)->name, gm_dtype_info(cv->to)->name, s->cols, s->rows);
    }
    st = gm_gguf_writer_write(w, path);
done:
    gm_gguf_writer_free(w);
    free(slots);
    free(convs);
    return st;
}

/* ---- Hugging Face output ----------------------------------------------------------------------- */

static void write_num(FILE *f, const char *key, double v, int last) {
    double r = floor(v + 0.5);
    if (fabs(v - r) <= 1e-6 * fmax(1.0, fabs(v)) && fabs(r) < 1e15) fprintf(f, "  \"%s\": %.1f", key, r);
    else fprintf(f, "  \"%s\": %.9g", key, v);
    fputs(last ? "\n" : ",\n", f);
}

static gm_status write_config(const gm_config *c, const char *name, const char *path) {
    atomic_file a;
    gm_status st = af_open(&a, path);
    if (st) return st;
    FILE *f = a.f;
    const char *mt = c->family == 1 ? "gemma" : c->family == 2 ? "gemma2" : "gemma3_text";
    const char *ar = c->family == 1 ? "GemmaForCausalLM" : c->family == 2 ? "Gemma2ForCausalLM" : "Gemma3ForCausalLM";
    fprintf(f, "{\n  \"_name_or_path\": ");
    gm_json_write_str(f, name);
    fprintf(f, ",\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n", ar, mt);
    fprintf(f, "  \"vocab_size\": %d,\n  \"hidden_size\": %d,\n  \"num_hidden_layers\": %d,\n", c->vocab_size,
            c->hidden_size, c->n_layers);
    fprintf(f, "  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n  \"head_dim\": %d,\n", c->n_heads,
            c->n_kv_heads, c->head_dim);
    fprintf(f, "  \"intermediate_size\": %d,\n  \"max_position_embeddings\": %d,\n", c->ffn_size, c->max_pos);
    fprintf(f, "  \"rms_norm_eps\": %.9g,\n", (double)c->rms_eps);
    write_num(f, "rope_theta", c->rope_theta, 0);
    /* query_pre_attn_scalar = 1 / scale^2, snapped to an integer when it is one up to f32 rounding */
    write_num(f, "query_pre_attn_scalar", 1.0 / ((double)c->query_scale * (double)c->query_scale), 0);
    fprintf(f, "  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n  \"pad_token_id\": %d,\n", c->bos_id, c->eos_id, c->pad_id);
    fprintf(f, "  \"hidden_activation\": \"gelu_pytorch_tanh\",\n  \"tie_word_embeddings\": true,\n");
    fprintf(f, "  \"attention_bias\": false,\n");
    if (c->family >= 2) {
        if (c->attn_softcap > 0) write_num(f, "attn_logit_softcapping", c->attn_softcap, 0);
        else fprintf(f, "  \"attn_logit_softcapping\": null,\n");
        if (c->final_softcap > 0) write_num(f, "final_logit_softcapping", c->final_softcap, 0);
        else fprintf(f, "  \"final_logit_softcapping\": null,\n");
        if (c->sliding_window > 0) fprintf(f, "  \"sliding_window\": %d,\n", c->sliding_window);
        else fprintf(f, "  \"sliding_window\": null,\n");
        if (c->family == 3) {
            write_num(f, "rope_local_base_freq", c->rope_local_theta, 0);
            if (c->rope_scale != 1) fprintf(f, "  \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": %.9g},\n", (double)c->rope_scale);
            else fprintf(f, "  \"rope_scaling\": null,\n");
        }
        fprintf(f, "  \"layer_types\": [");
        for (int l = 0; l < c->n_layers; l++)
            fprintf(f, "%s\"%s\"", l ? ", " : "", c->layer_global[l] ? "full_attention" : "sliding_attention");
        fprintf(f, "],\n");
    }
    /* GGUF loading rounds sqrt(d) to bf16: say so, so the directory loads to the same numbers */
    fprintf(f, "  \"torch_dtype\": \"bfloat16\"\n}\n");
    return af_commit(&a);
}

static gm_status write_safetensors(const gm_model *m, gm_dtype to, const char *path, int quiet) {
    if (to != GM_DT_F32 && to != GM_DT_F16 && to != GM_DT_BF16)
        return gm_fail(GM_ERR_ARG, "%s: safetensors weights can be F32, F16 or BF16", path);
    int n = 0;
    slot *s = model_slots(m, &n);
    if (!s) return gm_fail(GM_ERR_NOMEM, "out of memory");
    const gm_dtype_traits *tr = gm_dtype_info(to);
    /* header: {"__metadata__": {"format": "pt"}, name: {dtype, shape, data_offsets}, ...} padded to 8 */
    size_t cap = 256 + (size_t)n * 200, len = 0, off = 0;
    char *h = malloc(cap);
    gm_status st = GM_OK;
    if (!h) {
        free(s);
        return gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    len += (size_t)snprintf(h + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < n; i++) {
        size_t nb = (size_t)(s[i].rows ? s[i].rows : 1) * (size_t)s[i].cols * tr->block_bytes;
        if (s[i].rows)
            len += (size_t)snprintf(h + len, cap - len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%d,%d],\"data_offsets\":[%zu,%zu]}",
                                    s[i].hf, tr->name, s[i].rows, s[i].cols, off, off + nb);
        else
            len += (size_t)snprintf(h + len, cap - len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%d],\"data_offsets\":[%zu,%zu]}",
                                    s[i].hf, tr->name, s[i].cols, off, off + nb);
        off += nb;
    }
    len += (size_t)snprintf(h + len, cap - len, "}");
    while (len % 8) h[len++] = ' ';
    atomic_file a;
    if ((st = af_open(&a, path))) goto done;
    unsigned char hl[8];
    for (int i = 0; i < 8; i++) hl[i] = (unsigned char)((uint64_t)len >> (8 * i));
    fwrite(hl, 1, 8, a.f);
    fwrite(h, 1, len, a.f);
    for (int i = 0; i < n && !st; i++) {
        size_t nb = (size_t)(s[i].rows ? s[i].rows : 1) * (size_t)s[i].cols * tr->block_bytes;
        void *buf = malloc(nb ? nb : 1);
        conv c = {&s[i], to, 0.0f};
        if (!buf) st = gm_fail(GM_ERR_NOMEM, "%s: out of memory converting '%s'", path, s[i].hf);
        else if ((st = convert_rows(&c, buf, nb))) st = gm_fail_prefix(st, "%s: tensor '%s': ", path, s[i].hf);
        else if (fwrite(buf, 1, nb, a.f) != nb) st = gm_fail(GM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        free(buf);
        if (!st && !quiet)
            fprintf(stderr, "%-48s %-4s -> %-4s\n", s[i].hf, gm_dtype_info(s[i].dt)->name, tr->name);
    }
    if (st) af_abort(&a);
    else st = af_commit(&a);
done:
    free(h);
    free(s);
    return st;
}

gm_status gm_model_save_hf(const gm_model *m, gm_dtype dt, const char *name, const char *dir, const void *spm_proto,
                           size_t proto_len, int verbose) {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return gm_fail(GM_ERR_IO, "%s: cannot create the directory: %s", dir, strerror(errno));
    char *cfg = gm_path_join(dir, "config.json"), *wts = gm_path_join(dir, "model.safetensors");
    char *tok = gm_path_join(dir, "tokenizer.model");
    gm_status st = cfg && wts && tok ? GM_OK : gm_fail(GM_ERR_NOMEM, "out of memory");
    if (!st) st = write_safetensors(m, dt, wts, !verbose);
    if (!st) st = write_config(&m->cfg, name, cfg);
    if (!st && spm_proto) st = write_whole(tok, spm_proto, proto_len);
    free(cfg);
    free(wts);
    free(tok);
    return st;
}
