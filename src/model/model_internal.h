/* What model.c shares with the other checkpoint loaders (model_gguf.c): the list of tensors a config
 * implies, allocation, binding one tensor to its slot, and a release hook for storage a loader owns. */
#ifndef GM_MODEL_MODEL_INTERNAL_H
#define GM_MODEL_MODEL_INTERNAL_H

#include "model/model.h"

/* Tensor kinds of the expected list. */
enum {
    K_EMBED, K_FINAL_NORM, K_ATTN_NORM, K_POST_ATTN_NORM, K_FFN_NORM, K_POST_FFN_NORM, K_Q_NORM, K_K_NORM,
    K_Q, K_K, K_V, K_O, K_GATE, K_UP, K_DOWN
};

/* One tensor a config implies: its Hugging Face name, kind, layer (-1 for global tensors) and PyTorch
 * shape ([out, in] for matrices, [n] for norm vectors). */
typedef struct gm_expected_tensor {
    char name[96];
    int kind, layer, ndim;
    int64_t shape[2];
} gm_expected_tensor;

/* The tensors config c implies (*out malloc'd); the count, or -1 when out of memory. */
int gm_model_expected_tensors(const gm_config *c, gm_expected_tensor **out);
/* A model with its layer and norm storage for config c, and the tensors c implies (*exp, malloc'd). */
gm_status gm_model_alloc(const gm_config *c, gm_model **out, gm_expected_tensor **exp, int *n_exp);
/* Attach a tensor (e->name is what `gemma info` shows). Norm vectors are converted to f32 and
 * norm_shift is subtracted (GGUF stores 1 + w; the forward pass wants w). */
gm_status gm_model_bind(gm_model *m, const gm_expected_tensor *e, gm_dtype dt, const void *data, int *norm_slot,
                        float norm_shift);
/* fn(ctx) runs when the model is freed (a loader's file handle). */
void gm_model_set_release(gm_model *m, void (*fn)(void *), void *ctx);

/* ---- GGUF checkpoints (architectures gemma, gemma2, gemma3), model_gguf.c ---- */
struct gm_gguf;
struct gm_vocab;
gm_status gm_model_load_gguf(const char *path, const gm_load_options *opt, gm_model **out);
/* The same from a parsed file; own: the model closes g when freed (and on failure). */
gm_status gm_model_from_gguf(struct gm_gguf *g, int own, gm_model **out);
/* Write m as a GGUF file in llama.cpp's layout (model_gguf.c explains the conventions): matrices as
 * `matrices` (F32, F16, BF16, Q8_0 or Q4_0), norms F32 holding 1 + w; vocab (may be NULL) becomes the
 * tokenizer.ggml.* keys; name is general.name. Atomic (temporary file + fsync + rename). */
gm_status gm_model_save_gguf(const gm_model *m, const struct gm_vocab *vocab, const char *name, gm_dtype matrices,
                             const char *path, int verbose);
/* Write m as a Hugging Face directory (created if needed): model.safetensors in dt (F32, F16 or BF16;
 * quantized weights are dequantized), config.json (with _name_or_path = name) and, when spm_proto is
 * given, tokenizer.model. */
gm_status gm_model_save_hf(const gm_model *m, gm_dtype dt, const char *name, const char *dir, const void *spm_proto,
                           size_t proto_len, int verbose);
/* The query scale llama.cpp derives when a GGUF has no {arch}.attention.scale key. */
float gm_gguf_default_query_scale(const gm_config *c);

#endif
