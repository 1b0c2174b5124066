/* Training checkpoints: a Hugging Face model directory (config.json, model.safetensors, tokenizer) that
 * gm_model_load, transformers and llama.cpp's converter read as it is, with the optimizer moments
 * (optimizer.safetensors) and the trainer's state (trainer_state.json: step, update count, arguments,
 * and the size + CRC-32 of every other file) beside it. A checkpoint is written into a temporary
 * directory, every file fsynced, then renamed into place, so a run killed at any moment leaves either the
 * whole checkpoint or none; reading verifies every size and checksum before anything is used.
 *
 *   OUT/checkpoint-STEP/{config.json, model.safetensors, tokenizer.model, optimizer.safetensors,
 *                        trainer_state.json}
 *   OUT/latest -> checkpoint-STEP   (a relative symlink, replaced atomically)
 *
 * All buffers are in the "full layout" of train/dist.h (the parameter layout of gm_train_model_new on the
 * unsharded config): the caller gathers them from the ranks first. */
#ifndef GM_TRAIN_CHECKPOINT_H
#define GM_TRAIN_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/json.h"
#include "gemma.h"
#include "tensor/dtype.h"
#include "train/model_train.h"

/* The tensors of the full layout (names, shapes, offsets in floats) and their total size. */
typedef struct gm_ckpt_layout {
    const gm_train_tensor *tensors;
    int n_tensors;
    size_t n_params;
} gm_ckpt_layout;

/* What the trainer keeps between runs besides the tensors. */
typedef struct gm_ckpt_state {
    int step;      /* steps completed (the next step's 0-based index; the data position) */
    int updates;   /* optimizer updates taken (skipped steps do not count) */
    int skips;     /* consecutive skipped steps just before this checkpoint */
    uint64_t seed;
} gm_ckpt_state;

typedef struct gm_ckpt_write_opts {
    const gm_config *cfg;
    gm_ckpt_layout layout;
    const float *params, *exp_avg, *exp_avg_sq; /* full layout, n_params floats each */
    gm_dtype dtype;         /* model.safetensors: GM_DT_F32 (the master weights themselves) or GM_DT_BF16;
                               with BF16 the f32 master weights also go into optimizer.safetensors */
    gm_ckpt_state state;
    const char *args_json;  /* the trainer's arguments as one JSON object (written verbatim), or NULL */
    const void *tokenizer;  /* the bytes of a tokenizer file to copy in (read once when the run starts, so
                               a pruned checkpoint it came from does not matter), or NULL */
    size_t tokenizer_len;
    const char *tokenizer_name; /* "tokenizer.model" (SentencePiece) or "tokenizer.json" */
    const char *name;       /* config.json's _name_or_path, or NULL */
} gm_ckpt_write_opts;

/* Write OUT/checkpoint-STEP atomically (a checkpoint of that step already there is replaced), then point
 * OUT/latest at it and remove all but the newest `keep` checkpoints (keep <= 0 keeps all). *written
 * (optional) receives the checkpoint's path, malloc'd. */
gm_status gm_ckpt_save(const char *out_dir, const gm_ckpt_write_opts *o, int keep, char **written);
/* Write one checkpoint directory at `dir` (it must not exist) atomically: no latest link, no pruning. */
gm_status gm_ckpt_write_dir(const char *dir, const gm_ckpt_write_opts *o);

/* The checkpoint `path` names: a checkpoint directory itself, or an output directory whose `latest` link
 * names one. *dir is malloc'd. GM_ERR_IO naming the path when there is none. */
gm_status gm_ckpt_resolve(const char *path, char **dir);
/* 1 if out_dir holds any checkpoint-N directory (a fresh run there would mix two runs). */
int gm_ckpt_any(const char *out_dir, char *first, size_t cap);
/* Remove leftovers of interrupted writes (.checkpoint-*.tmp, .latest.tmp) in out_dir. */
void gm_ckpt_clean_tmp(const char *out_dir);

typedef struct gm_ckpt gm_ckpt;

/* Open and verify a checkpoint directory: trainer_state.json (which checks itself), then the size and
 * CRC-32 of every file it lists, then config.json. Nothing of a checkpoint that fails any check is
 * returned: the error names the file and the fault. */
gm_status gm_ckpt_open(const char *dir, gm_ckpt **out);
void gm_ckpt_close(gm_ckpt *c);
const gm_config *gm_ckpt_config(const gm_ckpt *c);
const gm_ckpt_state *gm_ckpt_get_state(const gm_ckpt *c);
/* The saved trainer arguments as a JSON object (NULL if none were saved); valid until gm_ckpt_close. */
const gm_json *gm_ckpt_args(const gm_ckpt *c);
/* Path of the tokenizer file in the checkpoint, or NULL. */
const char *gm_ckpt_tokenizer(const gm_ckpt *c);
/* Read the parameters and moments (any of the three may be NULL) into full-layout buffers, checking
 * every tensor's presence, dtype and shape against the layout. The parameters come from the f32 master
 * copy (model.safetensors when it is F32). */
gm_status gm_ckpt_load(gm_ckpt *c, const gm_ckpt_layout *layout, float *params, float *exp_avg, float *exp_avg_sq);

/* config.json for c in Hugging Face's key names (GemmaConfig, Gemma2Config, Gemma3TextConfig), with the
 * torch_dtype that makes a loader give back c's embedding scale (√d exact for float32, rounded for
 * bfloat16): gm_config_from_json reads it back to c. prefer_dtype ("float32"/"bfloat16") wins when
 * both give the same scale. */
gm_status gm_ckpt_write_config(FILE *f, const gm_config *c, const char *name, const char *prefer_dtype);

/* CRC-32 (zlib's, as Python's zlib.crc32): crc = gm_crc32(crc, data, n), starting from 0. */
uint32_t gm_crc32(uint32_t crc, const void *data, size_t n);

#endif
