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
#define MAX_LAYERS 1024
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

gm_status gm_config_from_json(const gm_json *root, const char *what, gm_config *c) {
    memset(c, 0, sizeof *c);
    if (root->type != GM_JSON_OBJECT) return gm_fail(GM_ERR_FORMAT, "%s: not a JSON object", what);
    const char *mt = gm_json_get_str(root, "model_type");
    if (!mt) return gm_fail(GM_ERR_FORMAT, "%s: missing string field 'model_type'", what);
    if (strcmp(mt, "gemma") != 0)
        return gm_fail(GM_ERR_UNSUPPORTED, "%s: model_type '%s' is not supported yet (supported: gemma)", what, mt);
    gm_status st;
    if ((st = get_pos_int(root, what, "vocab_size", 1, 1, MAX_VOCAB, &c->vocab_size))) return st;
    if ((st = get_pos_int(root, what, "hidden_size", 1, 1, MAX_DIM, &c->hidden_size))) return st;
    if ((st = get_pos_int(root, what, "num_hidden_layers", 1, 1, MAX_LAYERS, &c->n_layers))) return st;
    if ((st = get_pos_int(root, what, "num_attention_heads", 1, 1, 4096, &c->n_heads))) return st;
    c->n_kv_heads = c->n_heads;
    if ((st = get_pos_int(root, what, "num_key_value_heads", 0, 1, 4096, &c->n_kv_heads))) return st;
    c->head_dim = c->hidden_size / c->n_heads;
    if ((st = get_pos_int(root, what, "head_dim", 0, 2, 65536, &c->head_dim))) return st;
    /* The default (hidden_size / heads) bypasses the range check above: 0 would make query_scale infinite. */
    if (c->head_dim < 2)
        return gm_fail(GM_ERR_FORMAT, "%s: head_dim %d (hidden_size / num_attention_heads, as head_dim is absent) must be at least 2",
                       what, c->head_dim);
    if ((st = get_pos_int(root, what, "intermediate_size", 1, 1, MAX_DIM, &c->ffn_size))) return st;
    c->max_pos = 8192;
    if ((st = get_pos_int(root, what, "max_position_embeddings", 0, 1, MAX_POS, &c->max_pos))) return st;
    c->bos_id = 2, c->eos_id = 1, c->pad_id = 0;
    if ((st = get_pos_int(root, what, "bos_token_id", 0, 0, MAX_VOCAB, &c->bos_id))) return st;
    if ((st = get_pos_int(root, what, "pad_token_id", 0, 0, MAX_VOCAB, &c->pad_id))) return st;
    const gm_json *eos = gm_json_get(root, "eos_token_id");
    if (eos && eos->type == GM_JSON_ARRAY && eos->len > 0 && eos->items[0].type == GM_JSON_NUMBER && eos->items[0].is_int &&
        eos->items[0].i >= 0 && eos->items[0].i < MAX_VOCAB)
        c->eos_id = (int)eos->items[0].i;
    else if ((st = get_pos_int(root, what, "eos_token_id", 0, 0, MAX_VOCAB, &c->eos_id)))
        return st;
    if (c->head_dim % 2)
        return gm_fail(GM_ERR_FORMAT, "%s: head_dim %d must be even for rotary embeddings", what, c->head_dim);
    if (c->n_heads % c->n_kv_heads)
        return gm_fail(GM_ERR_FORMAT, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", what,
                       c->n_heads, c->n_kv_heads);
    if ((int64_t)c->n_heads * c->head_dim > MAX_DIM)
        return gm_fail(GM_ERR_FORMAT, "%s: num_attention_heads x head_dim is too large", what);
    double d;
    c->rms_eps = 1e-6f;
    if (gm_json_get_num(root, "rms_norm_eps", &d)) {
        if (!(d > 0 && d < 1)) return gm_fail(GM_ERR_FORMAT, "%s: rms_norm_eps %g out of range (0, 1)", what, d);
        c->rms_eps = (float)d;
    }
    c->rope_theta = 10000.f;
    if (gm_json_get_num(root, "rope_theta", &d)) {
        if (!(d > 1 && d < 1e12)) return gm_fail(GM_ERR_FORMAT, "%s: rope_theta %g out of range", what, d);
        c->rope_theta = (float)d;
    }
    double qpas = 0;
    if (gm_json_get_num(root, "query_pre_attn_scalar", &d)) {
        if (!(d > 0 && d < 1e9)) return gm_fail(GM_ERR_FORMAT, "%s: query_pre_attn_scalar %g out of range", what, d);
        qpas = d;
    }
    const char *act = gm_json_get_str(root, "hidden_activation");
    if (act && strcmp(act, "gelu_pytorch_tanh") != 0 && strcmp(act, "gelu") != 0)
        return gm_fail(GM_ERR_UNSUPPORTED, "%s: hidden_activation '%s' is not supported (Gemma uses gelu_pytorch_tanh)",
                       what, act);
    int tie = 1;
    if (gm_json_get_bool(root, "tie_word_embeddings", &tie) && !tie)
        return gm_fail(GM_ERR_UNSUPPORTED, "%s: untied embeddings (tie_word_embeddings false) are not Gemma", what);
    const char *dtype = gm_json_get_str(root, "torch_dtype");
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
    int vocab, d, layers, heads, kv, hd, ffn, ctx;
} preset;

/* Shapes from the published Hugging Face configs (docs/DESIGN.md §3). */
static const preset PRESETS[] = {
    {"gemma-2b", 256000, 2048, 18, 8, 1, 256, 16384, 8192},
    {"gemma-7b", 256000, 3072, 28, 16, 16, 256, 24576, 8192},
    {"tiny", 512, 128, 2, 4, 1, 32, 256, 2048},
};

const char *gm_config_preset_names(void) { return "gemma-2b, gemma-7b, tiny"; }

gm_status gm_config_preset(const char *name, gm_config *c) {
    for (size_t i = 0; i < sizeof PRESETS / sizeof PRESETS[0]; i++) {
        const preset *p = &PRESETS[i];
        if (strcmp(p->name, name) != 0) continue;
        memset(c, 0, sizeof *c);
        c->vocab_size = p->vocab, c->hidden_size = p->d, c->n_layers = p->layers, c->n_heads = p->heads;
        c->n_kv_heads = p->kv, c->head_dim = p->hd, c->ffn_size = p->ffn, c->max_pos = p->ctx;
        c->rms_eps = 1e-6f, c->rope_theta = 10000.f;
        c->bos_id = 2, c->eos_id = 1, c->pad_id = 0;
        finish(c, 0, "bfloat16");
        return GM_OK;
    }
    return gm_fail(GM_ERR_ARG, "unknown preset '%s' (known: %s)", name, gm_config_preset_names());
}
