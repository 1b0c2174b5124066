/* Model loading: a Hugging Face directory (config.json + one or several safetensors files) bound to
 * the Gemma tensor names, every tensor's dtype and shape checked against config.json; or a random
 * model with a preset's shapes for benchmarks. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "model/config.h"
#include "model/model.h"
#include "model/model_internal.h"

gm_load_options gm_load_options_default(void) {
    gm_load_options o;
    memset(&o, 0, sizeof o);
    o.use_mmap = 0; /* anonymous memory decodes faster and steadier here (bench/RESULTS.md) */
    return o;
}

const gm_config *gm_model_config(const gm_model *m) { return &m->cfg; }
uint64_t gm_model_n_params(const gm_model *m) { return m->n_params; }
uint64_t gm_model_weight_bytes(const gm_model *m) { return m->weight_bytes; }

int gm_model_tensor_info(const gm_model *m, int i, const char **name, const char **dtype, int *ndim, int64_t shape[4]) {
    if (i < 0 || i >= m->n_tensors) return 0;
    const gm_named_tensor *t = &m->tensors[i];
    *name = t->name;
    *dtype = gm_dtype_info(t->dt)->name;
    *ndim = t->ndim;
    shape[0] = t->shape[0];
    shape[1] = t->shape[1];
    return 1;
}

/* Every model is allocated inside a box that also holds a loader's release hook (model_internal.h). */
typedef struct {
    gm_model m; /* first: a gm_model * is a pointer to its box */
    void (*release)(void *);
    void *release_ctx;
} model_box;

void gm_model_set_release(gm_model *m, void (*fn)(void *), void *ctx) {
    model_box *b = (model_box *)m;
    b->release = fn;
    b->release_ctx = ctx;
}

void gm_model_free(gm_model *m) {
    if (!m) return;
    model_box *b = (model_box *)m;
    if (b->release) b->release(b->release_ctx);
    for (int i = 0; i < m->n_files; i++) gm_safetensors_close(m->files[i]);
    free(m->files);
    for (int i = 0; i < m->n_tensors; i++) free(m->tensors[i].name);
    free(m->tensors);
    free(m->layers);
    free(m->norm_store);
    free(m->owned);
    free(m);
}

/* ---- the tensor list a config implies -------------------------------------------------------- */

/* Multimodal Gemma 3 checkpoints carry a vision tower beside the text model: not ours to load. */
static int ignored_tensor(const gm_config *c, const char *name) {
    return c->lm_prefix && (!strncmp(name, "vision_tower.", 13) || !strncmp(name, "multi_modal_projector.", 22));
}

typedef gm_expected_tensor expected_tensor; /* K_* kinds and the struct: model_internal.h */

static int expected_tensors(const gm_config *c, expected_tensor **out) {
    int n = 2 + 13 * c->n_layers;
    expected_tensor *e = calloc((size_t)n, sizeof *e);
    if (!e) return -1;
    int k = 0;
    const char *P = c->lm_prefix ? "language_model.model." : "model.";
#define ADD(kind_, layer_, nd, s0, s1, ...)                                  \
    do {                                                                     \
        int w_ = snprintf(e[k].name, sizeof e[k].name, "%s", P);             \
        snprintf(e[k].name + w_, sizeof e[k].name - (size_t)w_, __VA_ARGS__); \
        e[k].kind = kind_, e[k].layer = layer_, e[k].ndim = nd;              \
        e[k].shape[0] = s0, e[k].shape[1] = s1;                              \
        k++;                                                                 \
    } while (0)
    int d = c->hidden_size, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim, f = c->ffn_size;
    int hd = c->head_dim;
    ADD(K_EMBED, -1, 2, c->vocab_size, d, "embed_tokens.weight");
    for (int l = 0; l < c->n_layers; l++) {
        ADD(K_ATTN_NORM, l, 1, d, 0, "layers.%d.input_layernorm.weight", l);
        ADD(K_Q, l, 2, qd, d, "layers.%d.self_attn.q_proj.weight", l);
        ADD(K_K, l, 2, kvd, d, "layers.%d.self_attn.k_proj.weight", l);
        ADD(K_V, l, 2, kvd, d, "layers.%d.self_attn.v_proj.weight", l);
        ADD(K_O, l, 2, d, qd, "layers.%d.self_attn.o_proj.weight", l);
        if (c->qk_norm) {
            ADD(K_Q_NORM, l, 1, hd, 0, "layers.%d.self_attn.q_norm.weight", l);
            ADD(K_K_NORM, l, 1, hd, 0, "layers.%d.self_attn.k_norm.weight", l);
        }
        if (c->sandwich_norms) {
            /* Gemma 2/3 reuse Gemma 1's name post_attention_layernorm for a true post-attention norm */
            ADD(K_POST_ATTN_NORM, l, 1, d, 0, "layers.%d.post_attention_layernorm.weight", l);
            ADD(K_FFN_NORM, l, 1, d, 0, "layers.%d.pre_feedforward_layernorm.weight", l);
            ADD(K_POST_FFN_NORM, l, 1, d, 0, "layers.%d.post_feedforward_layernorm.weight", l);
        } else {
            ADD(K_FFN_NORM, l, 1, d, 0, "layers.%d.post_attention_layernorm.weight", l);
        }
        ADD(K_GATE, l, 2, f, d, "layers.%d.mlp.gate_proj.weight", l);
        ADD(K_UP, l, 2, f, d, "layers.%d.mlp.up_proj.weight", l);
        ADD(K_DOWN, l, 2, d, f, "layers.%d.mlp.down_proj.weight", l);
    }
    ADD(K_FINAL_NORM, -1, 1, d, 0, "norm.weight");
#undef ADD
    *out = e;
    return k;
}

static gm_status alloc_model(const gm_config *c, gm_model **out, expected_tensor **exp, int *n_exp) {
    model_box *box = calloc(1, sizeof *box);
    if (!box) return gm_fail(GM_ERR_NOMEM, "out of memory");
    gm_model *m = &box->m;
    m->cfg = *c;
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    m->norm_slot = c->hidden_size > c->head_dim ? c->hidden_size : c->head_dim;
    m->norm_store = malloc(sizeof(float) * (size_t)m->norm_slot * (size_t)(6 * c->n_layers + 1));
    *n_exp = expected_tensors(c, exp);
    m->tensors = calloc((size_t)(*n_exp > 0 ? *n_exp : 1), sizeof *m->tensors);
    if (!m->layers || !m->norm_store || *n_exp < 0 || !m->tensors) {
        gm_model_free(m);
        if (*n_exp >= 0) free(*exp);
        return gm_fail(GM_ERR_NOMEM, "out of memory allocating the model");
    }
    *out = m;
    return GM_OK;
}

/* Attach one tensor's storage to its slot; norms are converted to f32 (they are stored as w, used as 1 + w). */
static gm_status bind(gm_model *m, const expected_tensor *e, gm_dtype dt, const void *data, int *norm_slot) {
    gm_named_tensor *nt = &m->tensors[m->n_tensors];
    nt->name = strdup(e->name);
    if (!nt->name) return gm_fail(GM_ERR_NOMEM, "out of memory");
    nt->dt = dt, nt->ndim = e->ndim, nt->shape[0] = e->shape[0], nt->shape[1] = e->shape[1], nt->data = data;
    m->n_tensors++;
    uint64_t n = (uint64_t)e->shape[0] * (uint64_t)(e->ndim == 2 ? e->shape[1] : 1);
    m->n_params += n;
    m->weight_bytes += n * gm_dtype_info(dt)->block_bytes / gm_dtype_info(dt)->block_elems;
    gm_wmat w = {dt, data, (int)e->shape[0], e->ndim == 2 ? (int)e->shape[1] : 1};
    if (e->ndim == 1) {
        float *dst = m->norm_store + (size_t)(*norm_slot)++ * (size_t)m->norm_slot;
        gm_dtype_info(dt)->to_f32(data, dst, (size_t)e->shape[0]);
        for (int64_t i = 0; i < e->shape[0]; i++)
            if (!isfinite(dst[i])) return gm_fail(GM_ERR_FORMAT, "tensor '%s' holds a non-finite value", e->name);
        gm_layer *NL = e->layer >= 0 ? &m->layers[e->layer] : NULL;
        switch (e->kind) {
        case K_FINAL_NORM: m->final_norm = dst; break;
        case K_ATTN_NORM: NL->attn_norm = dst; break;
        case K_POST_ATTN_NORM: NL->post_attn_norm = dst; break;
        case K_FFN_NORM: NL->ffn_norm = dst; break;
        case K_POST_FFN_NORM: NL->post_ffn_norm = dst; break;
        case K_Q_NORM: NL->q_norm = dst; break;
        case K_K_NORM: NL->k_norm = dst; break;
        }
        return GM_OK;
    }
    gm_layer *L = e->layer >= 0 ? &m->layers[e->layer] : NULL;
    switch (e->kind) {
    case K_EMBED: m->embed = w; break;
    case K_Q: L->wq = w; break;
    case K_K: L->wk = w; break;
    case K_V: L->wv = w; break;
    case K_O: L->wo = w; break;
    case K_GATE: L->wgate = w; break;
    case K_UP: L->wup = w; break;
    case K_DOWN: L->wdown = w; break;
    }
    return GM_OK;
}

static void fmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++) n += (size_t)snprintf(buf + n, cap - n, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

/* Shard file names come from an untrusted index: keep them inside the model directory. */
static int safe_shard_name(const char *s) {
    return s[0] && !strchr(s, '/') && !strchr(s, '\\') && strcmp(s, ".") && strcmp(s, "..");
}

static gm_status open_files(gm_model *m, const char *dir, const gm_load_options *opt, gm_json_doc **index_doc,
                            const gm_json **weight_map, char **index_path) {
    char *single = gm_path_join(dir, "model.safetensors");
    *index_path = gm_path_join(dir, "model.safetensors.index.json");
    if (!single || !*index_path) { free(single); return gm_fail(GM_ERR_NOMEM, "out of memory"); }
    gm_status st = GM_OK;
    if (gm_file_exists(*index_path)) {
        char *text;
        size_t len;
        if ((st = gm_file_read_all(*index_path, &text, &len))) goto done;
        st = gm_json_parse(text, len, *index_path, index_doc);
        free(text);
        if (st) goto done;
        *weight_map = gm_json_get(gm_json_root(*index_doc), "weight_map");
        if (!*weight_map || (*weight_map)->type != GM_JSON_OBJECT) {
            st = gm_fail(GM_ERR_FORMAT, "%s: missing object 'weight_map'", *index_path);
            goto done;
        }
        const gm_json *wm = *weight_map;
        m->files = calloc(wm->len ? wm->len : 1, sizeof *m->files);
        const char **names = calloc(wm->len ? wm->len : 1, sizeof *names);
        if (!m->files || !names) { free(names); st = gm_fail(GM_ERR_NOMEM, "out of memory"); goto done; }
        for (size_t i = 0; i < wm->len && !st; i++) {
            const gm_json *v = &wm->members[i].value;
            if (v->type != GM_JSON_STRING || !safe_shard_name(v->str)) {
                st = gm_fail(GM_ERR_FORMAT, "%s: weight_map entry '%s' must name a file in the model directory",
                             *index_path, wm->members[i].key);
                break;
            }
            int seen = 0;
            for (int j = 0; j < m->n_files; j++) seen |= strcmp(names[j], v->str) == 0;
            if (seen) continue;
            char *p = gm_path_join(dir, v->str);
            if (!p) { st = gm_fail(GM_ERR_NOMEM, "out of memory"); break; }
            if (opt->verbose) fprintf(stderr, "loading %s\n", p);
            gm_st_file *f;
            st = gm_safetensors_open(p, opt->use_mmap, &f);
            free(p);
            if (st) break;
            names[m->n_files] = v->str;
            m->files[m->n_files++] = f;
        }
        free(names);
    } else if (gm_file_exists(single)) {
        m->files = calloc(1, sizeof *m->files);
        if (!m->files) { st = gm_fail(GM_ERR_NOMEM, "out of memory"); goto done; }
        if (opt->verbose) fprintf(stderr, "loading %s\n", single);
        gm_st_file *f;
        if ((st = gm_safetensors_open(single, opt->use_mmap, &f))) goto done;
        m->files[m->n_files++] = f;
    } else {
        st = gm_fail(GM_ERR_IO, "%s: no model.safetensors or model.safetensors.index.json in this directory", dir);
    }
done:
    free(single);
    return st;
}

gm_status gm_model_load(const char *dir, const gm_load_options *opt_in, gm_model **out) {
    *out = NULL;
    if (gm_gguf_is_gguf_file(dir)) return gm_model_load_gguf(dir, opt_in, out); /* a .gguf file, not a directory */
    gm_load_options opt = opt_in ? *opt_in : gm_load_options_default();
    char *cfg_path = gm_path_join(dir, "config.json");
    if (!cfg_path) return gm_fail(GM_ERR_NOMEM, "out of memory");
    gm_config cfg;
    gm_status st = gm_config_load(cfg_path, &cfg);
    free(cfg_path);
    if (st) return st;
    gm_model *m;
    expected_tensor *exp;
    int n_exp;
    if ((st = alloc_model(&cfg, &m, &exp, &n_exp))) return st;
    gm_json_doc *index_doc = NULL;
    const gm_json *weight_map = NULL;
    char *index_path = NULL;
    st = open_files(m, dir, &opt, &index_doc, &weight_map, &index_path);
    int norm_slot = 0;
    size_t total_in_files = 0;
    for (int i = 0; i < m->n_files; i++)
        for (size_t j = 0; j < gm_safetensors_count(m->files[i]); j++)
            total_in_files += !ignored_tensor(&cfg, gm_safetensors_tensor(m->files[i], j)->name);
    for (int i = 0; i < n_exp && !st; i++) {
        const expected_tensor *e = &exp[i];
        const gm_st_tensor *t = NULL;
        const char *where = NULL;
        for (int f = 0; f < m->n_files && !t; f++) {
            t = gm_safetensors_find(m->files[f], e->name);
            where = gm_safetensors_path(m->files[f]);
        }
        if (!t) {
            st = gm_fail(GM_ERR_FORMAT, "%s: missing tensor '%s' (required by config.json)", dir, e->name);
            break;
        }
        if (weight_map) {
            const char *listed = gm_json_get_str(weight_map, e->name);
            const char *base = strrchr(where, '/');
            base = base ? base + 1 : where;
            if (!listed || strcmp(listed, base) != 0) {
                st = gm_fail(GM_ERR_FORMAT, "%s: tensor '%s' is in %s but the index maps it to %s", index_path, e->name,
                             base, listed ? listed : "nothing");
                break;
            }
        }
        int ok = t->ndim == e->ndim && t->shape[0] == e->shape[0] && (e->ndim == 1 || t->shape[1] == e->shape[1]);
        if (!ok) {
            char want[64], got[128];
            fmt_shape(want, sizeof want, e->ndim, e->shape);
            fmt_shape(got, sizeof got, t->ndim, t->shape);
            st = gm_fail(GM_ERR_FORMAT, "%s: tensor '%s' has shape %s but config.json implies %s", where, e->name, got, want);
            break;
        }
        st = bind(m, e, t->dtype, t->data, &norm_slot);
        if (st) st = gm_fail_prefix(st, "%s: ", where);
    }
    /* Every tensor in the files must be one we bound: a stray tensor means a config/checkpoint mismatch. */
    if (!st && total_in_files != (size_t)n_exp) {
        for (int f = 0; f < m->n_files && !st; f++) {
            for (size_t i = 0; i < gm_safetensors_count(m->files[f]); i++) {
                const char *name = gm_safetensors_tensor(m->files[f], i)->name;
                int known = ignored_tensor(&cfg, name);
                for (int j = 0; j < n_exp && !known; j++) known = strcmp(exp[j].name, name) == 0;
                if (!known) {
                    st = gm_fail(GM_ERR_FORMAT, "%s: unexpected tensor '%s' (not part of a Gemma model with this config.json)",
                                 gm_safetensors_path(m->files[f]), name);
                    break;
                }
            }
        }
        if (!st) st = gm_fail(GM_ERR_FORMAT, "%s: a tensor appears in more than one shard", dir);
    }
    if (!st && weight_map) {
        size_t listed = 0;
        for (size_t i = 0; i < weight_map->len; i++) listed += !ignored_tensor(&cfg, weight_map->members[i].key);
        if (listed != (size_t)n_exp)
            st = gm_fail(GM_ERR_FORMAT, "%s: weight_map lists %zu tensors but the model has %d", index_path, listed, n_exp);
    }
    gm_json_free(index_doc);
    free(index_path);
    free(exp);
    if (st) {
        gm_model_free(m);
        return st;
    }
    *out = m;
    return GM_OK;
}

/* ---- random model ------------------------------------------------------------------------------ */

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

gm_status gm_model_random(const char *preset, const char *dtype, uint64_t seed, gm_model **out) {
    *out = NULL;
    gm_config cfg;
    gm_status st = gm_config_preset(preset, &cfg);
    if (st) return st;
    gm_dtype dt;
    if (!dtype || strcmp(dtype, "bf16") == 0) dt = GM_DT_BF16;
    else if (strcmp(dtype, "f32") == 0) dt = GM_DT_F32;
    else if (strcmp(dtype, "f16") == 0) dt = GM_DT_F16;
    else return gm_fail(GM_ERR_ARG, "unknown dtype '%s' (use bf16, f16 or f32)", dtype);
    gm_model *m;
    expected_tensor *exp;
    int n_exp;
    if ((st = alloc_model(&cfg, &m, &exp, &n_exp))) return st;
    const gm_dtype_traits *tr = gm_dtype_info(dt);
    size_t total = 0;
    for (int i = 0; i < n_exp; i++)
        total += (size_t)exp[i].shape[0] * (size_t)(exp[i].ndim == 2 ? exp[i].shape[1] : 1) * tr->block_bytes;
    if (!(m->owned = gm_alloc_weights(total))) {
        free(exp);
        gm_model_free(m);
        return gm_fail(GM_ERR_NOMEM, "cannot allocate %zu bytes for a random %s model", total, preset);
    }
    /* Uniform weights scaled by 1/sqrt(fan_in) keep activations O(1) through the layers. */
    float buf[4096];
    unsigned char *p = m->owned;
    int norm_slot = 0;
    for (int i = 0; i < n_exp && !st; i++) {
        size_t n = (size_t)exp[i].shape[0] * (size_t)(exp[i].ndim == 2 ? exp[i].shape[1] : 1);
        float scale = exp[i].ndim == 2 ? 1.7f / sqrtf((float)exp[i].shape[1]) : 0.1f;
        unsigned char *start = p;
        for (size_t off = 0; off < n; off += 4096) {
            size_t k = n - off < 4096 ? n - off : 4096;
            for (size_t j = 0; j < k; j++) buf[j] = scale * ((float)(splitmix(&seed) >> 40) * (2.0f / 16777216.0f) - 1.0f);
            tr->from_f32(buf, p, k);
            p += k * tr->block_bytes;
        }
        st = bind(m, &exp[i], dt, start, &norm_slot);
    }
    free(exp);
    if (st) {
        gm_model_free(m);
        return st;
    }
    *out = m;
    return GM_OK;
}

/* ---- for the other loaders (model_internal.h) --------------------------------------------------- */

int gm_model_expected_tensors(const gm_config *c, gm_expected_tensor **out) { return expected_tensors(c, out); }

gm_status gm_model_alloc(const gm_config *c, gm_model **out, gm_expected_tensor **exp, int *n_exp) {
    return alloc_model(c, out, exp, n_exp);
}

gm_status gm_model_bind(gm_model *m, const gm_expected_tensor *e, gm_dtype dt, const void *data, int *norm_slot,
                        float norm_shift) {
    gm_status st = bind(m, e, dt, data, norm_slot);
    if (st || e->ndim != 1 || norm_shift == 0) return st;
    float *v = m->norm_store + (size_t)(*norm_slot - 1) * (size_t)m->norm_slot;
    for (int64_t i = 0; i < e->shape[0]; i++) v[i] -= norm_shift;
    return GM_OK;
}
