/* The loaded model: configuration plus views of every weight, bound by name from the checkpoint's
 * tensors. Matrices keep the stored dtype and PyTorch layout [out, in]; norm vectors are converted
 * to f32 once at load because they are tiny and read for every token. */
#ifndef GM_MODEL_MODEL_H
#define GM_MODEL_MODEL_H

#include "gemma.h"
#include "base/threads.h"
#include "tensor/dtype.h"

typedef struct gm_wmat {
    gm_dtype dt;
    const void *data;
    int rows; /* output features */
    int cols; /* input features */
} gm_wmat;

typedef struct gm_layer {
    /* norm vectors hold the stored w (used as 1 + w); NULL where the family has none */
    const float *attn_norm;      /* input_layernorm */
    const float *post_attn_norm; /* Gemma 2/3: post_attention_layernorm, on the attention output */
    const float *ffn_norm;       /* Gemma 1: post_attention_layernorm (!); Gemma 2/3: pre_feedforward_layernorm */
    const float *post_ffn_norm;  /* Gemma 2/3: post_feedforward_layernorm, on the FFN output */
    const float *q_norm, *k_norm; /* Gemma 3: per-head RMSNorm over head_dim */
    gm_wmat wq, wk, wv, wo, wgate, wup, wdown;
} gm_layer;

typedef struct gm_named_tensor {
    char *name;
    gm_dtype dt;
    int ndim;
    int64_t shape[2];
    const void *data;
} gm_named_tensor;

struct gm_model {
    gm_config cfg;
    gm_wmat embed; /* [vocab, d], also the tied output projection */
    const float *final_norm;
    gm_layer *layers;
    gm_named_tensor *tensors; /* every bound tensor, for `gemma info` */
    int n_tensors;
    uint64_t n_params, weight_bytes;
    float *norm_store;        /* f32 copies of all norm vectors, one slot of norm_slot floats each */
    int norm_slot;
    void **files;             /* gm_st_file* of each shard */
    int n_files;
    void *owned;              /* random-model weight storage */
};

#endif
