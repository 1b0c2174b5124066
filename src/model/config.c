/* config.json parsing and presets. Every number is range-checked here, once, so later code can size
 * buffers from the config without overflow checks of its own. */
#include "model/config.h"

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "base/file.h"
#include "tensor/dtype.h"

/* Limits far above any published Gemma yet small enough that products of two fit comfortably. */
#define MAX_DIM (1 << 20)
#define MAX_VOCAB (1 << 22)
#define MAX_LAYERS GM_MAX_LAYERS
#define MAX_POS (1 << 24)

static gm_status get_pos_int(const gm_json *root, const char *what, const char *key, int required, int64_t lo,
                             int64_t hi, int *out) {
    const gm_json *v = gm_json_get(root, key);
    if (!v || v->type == GM_JSON_NULL) {
        if (required) return gm_fail(GM_ERR_FORMAT, "%s: missing required field '%s'", what, key);
        return GM_OK;
    }
    if (v->type != GM_JSON_NUMBER || !v->is_int)
        return gm_fail(GM_ERR_FORMAT, "%s: field '%s' must be an integer", what, key);
    if (v->i < lo || v->i > hi)
        return gm_fail(GM_ERR_FORMAT, "%s: field '%s' = %lld is out of range [%lld, %lld]", what, key, (long long)v->i,
                       (long long)lo, (long long)hi);
    *out = (int)v->i;
    return GM_OK;
}

static float round_to_dtype(float x, const char *dtype) {
    if (dtype && strcmp(dtype, "bfloat16") == 0) return gm_bf16_to_f32(gm_f32_to_bf16(x));
    if (dtype && strcmp(dtype, "float16") == 0) return gm_f16_to_f32(gm_f32_to_f16(x));
    return x;
}

static void finish(gm_config *c, double qpas, const char *act_dtype) {
    c->query_scale = (float)(1.0 / sqrt(qpas > 0 ? qpas : (double)c->head_dim));
    /* The references compute sqrt(d) in the activation dtype (HF: hidden_states.dtype; gemma.cpp: bf16). */
    c->embed_scale = round_to_dtype((float)sqrt((double)c->hidden_size), act_dtype);
}

/* Which layers attend globally, by each family's published rule (an explicit layer_types list wins). */
static void default_layer_kinds(gm_config *c, int pattern) {
    for (int l = 0; l < c->n_layers; l++) {
        if (c->family == 1) c->layer_global[l] = 1;
        else if (c->family == 2) c->layer_global[l] = l % 2 == 1; /* layer 0 slides */
        else c->layer_global[l] = (l + 1) % pattern == 0;
    }
}

/* Values a Gemma 2/3 config.json may leave out: transformers fills them from its config classes, and the
 * sparse text_config of multimodal Gemma 3 checkpoints relies on that. */
typedef struct {
    int vocab, d, ffn, layers, heads, kv, hd, max_pos, window, pattern;
    double theta, local_theta, qpas, attn_cap, final_cap;
} family_defaults;

static const family_defaults G2_DEFAULTS = {256000, 2304, 9216, 26, 8, 4, 256, 8192, 4096, 2, 10000, 10000, 256, 50, 30};
static const family_defaults G3_DEFAULTS = {262208, 2304, 9216, 26, 8, 4, 256, 131072, 4096, 6, 1e6, 1e4, 256, 0, 0};

/* A soft-cap key: absent → the family default, null → none, number → that cap. */
static gm_status get_cap(const gm_json *t, const char *what, const char *key, double def, float *out) {
    const gm_json *v = gm_json_get(t, key);
    if (!v) { *out = (float)def; return GM_OK; }
    if (v->type == GM_JSON_NULL) { *out = 0; return GM_OK; }
    if (v->type != GM_JSON_NUMBER || !(v->num >= 0 && v->num < 1e6))
        return gm_fail(GM_ERR_FORMAT, "%s: field '%s' must be a non-negative number or null", what, key);
    *out = (float)v->num;
    return GM_OK;
}

gm_status gm_config_from_json(const gm_json *root, const char *what, gm_config *c) {
    memset(c, 0, sizeof *c);
    if (root->type != GM_JSON_OBJECT) return gm_fail(GM_ERR_FORMAT, "%s: not a JSON object", what);
    const char *mt = gm_json_get_str(root, "model_type");
    if (!mt) return gm_fail(GM_ERR_FORMAT, "%s: missing string field 'model_type'", what);
    const gm_json *t = root; /* where the text model's fields live */
    const family_defaults *fd = NULL;
    if (strcmp(mt, "gemma") == 0) {
        c->family = 1;
    } else if (strcmp(mt, "gemma2") == 0) {
        c->family = 2, fd = &G2_DEFAULTS;
    } else if (strcmp(mt, "gemma3_text") == 0) {
        c->family = 3, fd = &G3_DEFAULTS;
    } else if (strcmp(mt, "gemma3") == 0) {
        c->family = 3, fd = &G3_DEFAULTS;
        c->lm_prefix = 1;
        t = gm_json_get(root, "text_config");
        if (!t || t->type != GM_JSON_OBJECT)
            return gm_fail(GM_ERR_FORMAT, "%s: model_type 'gemma3' needs a 'text_config' object", what);
    } else {
        return gm_fail(GM_ERR_UNSUPPORTED,
                       "%s: model_type '%s' is not supported (supported: gemma, gemma2, gemma3_text, gemma3)", what, mt);
    }
    int req = fd == NULL; /* Gemma 1 configs always spell everything out */
    gm_status st;
    c->vocab_size = fd ? fd->vocab : 0, c->hidden_size = fd ? fd->d : 0, c->n_layers = fd ? fd->layers : 0;
    c->n_heads = fd ? fd->heads : 0, c->ffn_size = fd ? fd->ffn : 0;
    if ((st = get_pos_int(t, what, "vocab_size", req, 1, MAX_VOCAB, &c->vocab_size))) return st;
    if ((st = get_pos_int(t, what, "hidden_size", req, 1, MAX_DIM, &c->hidden_size))) return st;
    if ((st = get_pos_int(t, what, "num_hidden_layers", req, 1, MAX_LAYERS, &c->n_layers))) return st;
    if ((st = get_pos_int(t, what, "num_attention_heads", req, 1, 4096, &c->n_heads))) return st;
    c->n_kv_heads = fd ? fd->kv : c->n_heads;
    if ((st = get_pos_int(t, what, "num_key_value_heads", 0, 1, 4096, &c->n_kv_heads))) return st;
    c->head_dim = fd ? fd->hd : c->hidden_size / c->n_heads;
    if ((st = get_pos_int(t, what, "head_dim", 0, 2, 65536, &c->head_dim))) return st;
    /* The default (hidden_size / heads) bypasses the range check above: 0 would make query_scale infinite. */
    if (c->head_dim < 2)
        return gm_fail(GM_ERR_FORMAT, "%s: head_dim %d (hidden_size / num_attention_heads, as head_dim is absent) must be at least 2",
                       what, c->head_dim);
    if ((st = get_pos_int(t, what, "intermediate_size", req, 1, MAX_DIM, &c->ffn_size))) return st;
    c->max_pos = fd ? fd->max_pos : 8192;
    if ((st = get_pos_int(t, what, "max_position_embeddings", 0, 1, MAX_POS, &c->max_pos))) return st;
    c->bos_id = 2, c->eos_id = 1, c->pad_id = 0;
    const gm_json *ids_src[2] = {root, t};
    for (int k = 0; k < 2; k++) { /* the text config's own ids win over a wrapper's */
        const gm_json *src = ids_src[k];
        if (k == 1 && src == root) break;
        if ((st = get_pos_int(src, what, "bos_token_id", 0, 0, MAX_VOCAB, &c->bos_id))) return st;
        if ((st = get_pos_int(src, what, "pad_token_id", 0, 0, MAX_VOCAB, &c->pad_id))) return st;
        const gm_json *eos = gm_json_get(src, "eos_token_id");
        if (eos && eos->type == GM_JSON_ARRAY) { /* [eos, end_of_turn]: the first is <eos> */
            if (eos->len == 0 || eos->items[0].type != GM_JSON_NUMBER || !eos->items[0].is_int || eos->items[0].i < 0 ||
                eos->items[0].i >= MAX_VOCAB)
                return gm_fail(GM_ERR_FORMAT, "%s: eos_token_id must hold valid token ids", what);
            c->eos_id = (int)eos->items[0].i;
        } else if ((st = get_pos_int(src, what, "eos_token_id", 0, 0, MAX_VOCAB, &c->eos_id))) {
            return st;
        }
    }
    if (c->head_dim % 2)
        return gm_fail(GM_ERR_FORMAT, "%s: head_dim %d must be even for rotary embeddings", what, c->head_dim);
    if (c->n_heads % c->n_kv_heads)
        return gm_fail(GM_ERR_FORMAT, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", what,
                       c->n_heads, c->n_kv_heads);
    if ((int64_t)c->n_heads * c->head_dim > MAX_DIM)
        return gm_fail(GM_ERR_FORMAT, "%s: num_attention_heads x head_dim is too large", what);
    double d;
    c->rms_eps = 1e-6f;
    if (gm_json_get_num(t, "rms_norm_eps", &d)) {
        /* (float)d too: a positive double below float's range would become an eps of 0 */
        if (!(d > 0 && d < 1) || !((float)d > 0))
            return gm_fail(GM_ERR_FORMAT, "%s: rms_norm_eps %g out of range (0, 1)", what, d);
        c->rms_eps = (float)d;
    }
    c->rope_theta = fd ? (float)fd->theta : 10000.f;
    if (gm_json_get_num(t, "rope_theta", &d)) {
        if (!(d > 1 && d < 1e12)) return gm_fail(GM_ERR_FORMAT, "%s: rope_theta %g out of range", what, d);
        c->rope_theta = (float)d;
    }
    c->rope_local_theta = c->family == 3 ? (float)fd->local_theta : c->rope_theta;
    if (c->family == 3 && gm_json_get_num(t, "rope_local_base_freq", &d)) {
        if (!(d > 1 && d < 1e12)) return gm_fail(GM_ERR_FORMAT, "%s: rope_local_base_freq %g out of range", what, d);
        c->rope_local_theta = (float)d;
    }
    c->rope_scale = 1;
    const gm_json *rs = gm_json_get(t, "rope_scaling");
    if (rs && rs->type != GM_JSON_NULL) {
        const char *rt = gm_json_get_str(rs, "rope_type");
        if (!rt) rt = gm_json_get_str(rs, "type");
        if (rs->type != GM_JSON_OBJECT || !rt || strcmp(rt, "linear") != 0 || !gm_json_get_num(rs, "factor", &d) ||
            !(d >= 1 && d < 1e6))
            return gm_fail(GM_ERR_UNSUPPORTED, "%s: rope_scaling must be null or {\"rope_type\": \"linear\", \"factor\": F >= 1}",
                           what);
        c->rope_scale = (float)d;
    }
    double qpas = fd ? fd->qpas : 0;
    if (gm_json_get_num(t, "query_pre_attn_scalar", &d)) {
        if (!(d > 0 && d < 1e9)) return gm_fail(GM_ERR_FORMAT, "%s: query_pre_attn_scalar %g out of range", what, d);
        qpas = d;
    }
    if (fd) {
        if ((st = get_cap(t, what, "attn_logit_softcapping", fd->attn_cap, &c->attn_softcap))) return st;
        if ((st = get_cap(t, what, "final_logit_softcapping", fd->final_cap, &c->final_softcap))) return st;
        c->sliding_window = fd->window;
        const gm_json *sw = gm_json_get(t, "sliding_window");
        if (sw && sw->type != GM_JSON_NULL && (st = get_pos_int(t, what, "sliding_window", 0, 1, MAX_POS, &c->sliding_window)))
            return st;
        int pattern = fd->pattern;
        if ((st = get_pos_int(t, what, "sliding_window_pattern", 0, 1, MAX_LAYERS, &pattern))) return st;
        default_layer_kinds(c, pattern);
        const gm_json *lt = gm_json_get(t, "layer_types");
        if (lt && lt->type != GM_JSON_NULL) {
            if (lt->type != GM_JSON_ARRAY || lt->len != (size_t)c->n_layers)
                return gm_fail(GM_ERR_FORMAT, "%s: layer_types must list one entry per layer (%d)", what, c->n_layers);
            for (int l = 0; l < c->n_layers; l++) {
                const gm_json *e = &lt->items[l];
                if (e->type == GM_JSON_STRING && !strcmp(e->str, "full_attention")) c->layer_global[l] = 1;
                else if (e->type == GM_JSON_STRING && !strcmp(e->str, "sliding_attention")) c->layer_global[l] = 0;
                else return gm_fail(GM_ERR_FORMAT, "%s: layer_types[%d] must be \"full_attention\" or \"sliding_attention\"", what, l);
            }
        }
        c->sandwich_norms = 1;
        c->qk_norm = c->family == 3;
    } else {
        default_layer_kinds(c, 1);
    }
    const char *act = gm_json_get_str(t, "hidden_activation");
    if (act && strcmp(act, "gelu_pytorch_tanh") != 0 && strcmp(act, "gelu") != 0)
        return gm_fail(GM_ERR_UNSUPPORTED, "%s: hidden_activation '%s' is not supported (Gemma uses gelu_pytorch_tanh)",
                       what, act);
    int tie = 1;
    if (gm_json_get_bool(t, "tie_word_embeddings", &tie) && !tie)
        return gm_fail(GM_ERR_UNSUPPORTED, "%s: untied embeddings (tie_word_embeddings false) are not Gemma", what);
    const char *dtype = gm_json_get_str(t, "torch_dtype");
    if (!dtype) dtype = gm_json_get_str(root, "torch_dtype");
    if (!dtype) dtype = gm_json_get_str(t, "dtype");
    if (!dtype) dtype = gm_json_get_str(root, "dtype");
    if (!dtype) dtype = "bfloat16"; /* every published Gemma checkpoint is bf16 */
    finish(c, qpas, dtype);
    return GM_OK;
}

gm_status gm_config_load(const char *path, gm_config *out) {
    char *text;
    size_t len;
    gm_status st = gm_file_read_all(path, &text, &len);
    if (st) return st;
    gm_json_doc *doc;
    st = gm_json_parse(text, len, path, &doc);
    free(text);
    if (st) return st;
    st = gm_config_from_json(gm_json_root(doc), path, out);
    gm_json_free(doc);
    return st;
}

typedef struct {
    const char *name;
    int family, vocab, d, layers, heads, kv, hd, ffn, ctx, window;
    double qpas, theta, local_theta, rope_scale, attn_cap, final_cap;
} preset;

/* Shapes from the published Hugging Face configs (docs/DESIGN.md §3, shared/docs/PEERS.md §1.3). */
static const preset PRESETS[] = {
    {"gemma-2b", 1, 256000, 2048, 18, 8, 1, 256, 16384, 8192, 0, 256, 1e4, 1e4, 1, 0, 0},
    {"gemma-7b", 1, 256000, 3072, 28, 16, 16, 256, 24576, 8192, 0, 256, 1e4, 1e4, 1, 0, 0},
    {"gemma2-2b", 2, 256000, 2304, 26, 8, 4, 256, 9216, 8192, 4096, 256, 1e4, 1e4, 1, 50, 30},
    {"gemma2-9b", 2, 256000, 3584, 42, 16, 8, 256, 14336, 8192, 4096, 256, 1e4, 1e4, 1, 50, 30},
    {"gemma2-27b", 2, 256000, 4608, 46, 32, 16, 128, 36864, 8192, 4096, 144, 1e4, 1e4, 1, 50, 30},
    {"gemma3-1b", 3, 262144, 1152, 26, 4, 1, 256, 6912, 32768, 512, 256, 1e6, 1e4, 1, 0, 0},
    {"gemma3-4b", 3, 262208, 2560, 34, 8, 4, 256, 10240, 131072, 1024, 256, 1e6, 1e4, 8, 0, 0},
    {"tiny", 1, 512, 128, 2, 4, 1, 32, 256, 2048, 0, 32, 1e4, 1e4, 1, 0, 0},
};

const char *gm_config_preset_names(void) {
    return "gemma-2b, gemma-7b, gemma2-2b, gemma2-9b, gemma2-27b, gemma3-1b, gemma3-4b, tiny";
}

gm_status gm_config_preset(const char *name, gm_config *c) {
    for (size_t i = 0; i < sizeof PRESETS / sizeof PRESETS[0]; i++) {
        const preset *p = &PRESETS[i];
        if (strcmp(p->name, name) != 0) continue;
        memset(c, 0, sizeof *c);
        c->family = p->family;
        c->vocab_size = p->vocab, c->hidden_size = p->d, c->n_layers = p->layers, c->n_heads = p->heads;
        c->n_kv_heads = p->kv, c->head_dim = p->hd, c->ffn_size = p->ffn, c->max_pos = p->ctx;
        c->rms_eps = 1e-6f, c->rope_theta = (float)p->theta, c->rope_local_theta = (float)p->local_theta;
        c->rope_scale = (float)p->rope_scale, c->sliding_window = p->window;
        c->attn_softcap = (float)p->attn_cap, c->final_softcap = (float)p->final_cap;
        c->sandwich_norms = p->family >= 2, c->qk_norm = p->family == 3;
        c->bos_id = 2, c->eos_id = 1, c->pad_id = 0;
        default_layer_kinds(c, 6);
        finish(c, p->qpas, "bfloat16");
        return GM_OK;
    }
    return gm_fail(GM_ERR_ARG, "unknown preset '%s' (known: %s)", name, gm_config_preset_names());
}
