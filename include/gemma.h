/* gemma.c public API: load a Gemma checkpoint (Hugging Face directory), run it on the CPU, tokenize and
 * format chat turns. All handles are opaque; every call that can fail returns gm_status and leaves a
 * message in gm_last_error() naming the file and the fault. Nothing here calls exit() or abort(). */
#ifndef GEMMA_H
#define GEMMA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors ------------------------------------------------------------------------------------ */

typedef int gm_status;
enum {
    GM_OK = 0,
    GM_ERR_IO = 1,          /* a file could not be opened, read or written */
    GM_ERR_FORMAT = 2,      /* a file's contents are malformed or inconsistent */
    GM_ERR_ARG = 3,         /* a caller's argument is invalid (bad id, prompt past the context...) */
    GM_ERR_NOMEM = 4,       /* an allocation failed */
    GM_ERR_UNSUPPORTED = 5, /* well-formed but not supported (unknown dtype, architecture) */
};

/* The message of the last failure on this thread ("no error" if none). */
const char *gm_last_error(void);
void gm_clear_error(void);

/* ---- model ------------------------------------------------------------------------------------- */

typedef struct gm_model gm_model;
typedef struct gm_session gm_session;

#define GM_MAX_LAYERS 256

typedef struct gm_config {
    int vocab_size;
    int hidden_size;     /* d */
    int n_layers;
    int n_heads;         /* query heads */
    int n_kv_heads;      /* 1 = multi-query, n_heads = multi-head, otherwise grouped-query */
    int head_dim;
    int ffn_size;        /* per gate/up projection */
    int max_pos;         /* context window */
    float rms_eps;
    float rope_theta;
    float query_scale;   /* 1/sqrt(query_pre_attn_scalar or head_dim) */
    float embed_scale;   /* sqrt(d) rounded to the checkpoint's activation dtype */
    int bos_id, eos_id, pad_id;
    /* Gemma 2 / 3 (family 1 = Gemma 1) */
    int family;
    float attn_softcap;   /* s = cap * tanh(s / cap) on attention scores; 0 = none */
    float final_softcap;  /* the same on the output logits; 0 = none */
    int sliding_window;   /* keys a local layer's query sees, itself included; 0 = none */
    float rope_local_theta; /* RoPE base of local (sliding) layers */
    float rope_scale;     /* linear RoPE scaling of global layers (positions / factor); 1 = none */
    int qk_norm;          /* per-head RMSNorm on q and k (Gemma 3) */
    int sandwich_norms;   /* post-attention and post-FFN norms (Gemma 2 / 3) */
    int lm_prefix;        /* weights named language_model.model.* (multimodal Gemma 3 checkpoints) */
    unsigned char layer_global[GM_MAX_LAYERS]; /* 1: full attention, 0: sliding window */
} gm_config;

typedef struct gm_load_options {
    int use_mmap;   /* 1: map the files and use weights in place where possible; 0: read into memory */
    int verbose;    /* 1: progress on stderr while loading */
} gm_load_options;

/* Default options: read into memory (measured faster than mmap here, see bench/RESULTS.md). */
gm_load_options gm_load_options_default(void);

/* Load a Hugging Face model directory (config.json + model.safetensors or sharded safetensors), or a GGUF
 * file (architectures gemma, gemma2, gemma3; see docs/gguf.md). */
gm_status gm_model_load(const char *dir, const gm_load_options *opt, gm_model **out);
/* Build a model with random weights and a named preset's exact shapes ("gemma-2b", "gemma-7b", ...). */
gm_status gm_model_random(const char *preset, const char *dtype, uint64_t seed, gm_model **out);
void gm_model_free(gm_model *m);
const gm_config *gm_model_config(const gm_model *m);
/* Total parameter count and bytes of weight storage. */
uint64_t gm_model_n_params(const gm_model *m);
uint64_t gm_model_weight_bytes(const gm_model *m);
/* Iterate over tensors for `gemma info`: returns 0 past the end. */
int gm_model_tensor_info(const gm_model *m, int i, const char **name, const char **dtype, int *ndim,
                         int64_t shape[4]);

/* A session owns the KV cache and activations for one sequence of up to n_ctx tokens. */
gm_status gm_session_new(gm_model *m, int n_ctx, int n_threads, gm_session **out);

typedef struct gm_session_params {
    int n_ctx;     /* tokens the session can hold (<= the model's context) */
    int n_threads;
    int batch;     /* prompt tokens per forward pass (prefill chunk), default 128 */
    int kv_bf16;   /* 1: keep the KV cache in bf16 (half the memory, ~0.4% rounding of keys and values) */
} gm_session_params;
gm_session_params gm_session_params_default(int n_ctx, int n_threads);
gm_status gm_session_new_ex(gm_model *m, const gm_session_params *p, gm_session **out);
void gm_session_free(gm_session *s);
void gm_session_reset(gm_session *s);
int gm_session_pos(const gm_session *s);
int gm_session_n_ctx(const gm_session *s);
/* Rewind to an earlier position (e.g. to score several continuations of one shared prompt): later
 * positions are forgotten. With sliding-window layers, at most (prefill chunk - 1) positions past the
 * new end may have been written since; otherwise GM_ERR_ARG. Logits must be recomputed after it. */
gm_status gm_session_truncate(gm_session *s, int pos);
/* Bytes held by the KV cache (sliding-window layers keep only a ring of recent positions). */
size_t gm_session_cache_bytes(const gm_session *s);
/* Run n tokens through the model at the current position (batched prefill when n > 1).
 * If all_logits is non-NULL it receives [n, vocab] logits; the last position's logits are always
 * available from gm_session_logits(). Fails (GM_ERR_ARG) if pos + n exceeds the context. */
gm_status gm_session_eval(gm_session *s, const int32_t *ids, int n, float *all_logits);
const float *gm_session_logits(const gm_session *s);

/* ---- sampling ---------------------------------------------------------------------------------- */

typedef struct gm_sampler_params {
    float temperature; /* 0 = greedy */
    int top_k;         /* 0 = off */
    float top_p;       /* 1 = off */
    uint64_t seed;
} gm_sampler_params;

typedef struct gm_sampler gm_sampler;
gm_status gm_sampler_new(const gm_sampler_params *p, int vocab_size, gm_sampler **out);
void gm_sampler_free(gm_sampler *s);
int32_t gm_sampler_sample(gm_sampler *s, const float *logits);

/* ---- tokenizer --------------------------------------------------------------------------------- */

typedef struct gm_tokenizer gm_tokenizer;

enum {
    GM_TOK_ADD_BOS = 1,       /* prepend <bos> */
    GM_TOK_PARSE_SPECIAL = 2, /* text such as "<start_of_turn>" or "<bos>" becomes its control id */
};

/* Load tokenizer.model (SentencePiece protobuf), tokenizer.json (Hugging Face) or a GGUF file's
 * tokenizer.ggml.* metadata, chosen by content. */
gm_status gm_tokenizer_load(const char *path, gm_tokenizer **out);
/* Load from a model directory (tokenizer.model if present, else tokenizer.json) or a GGUF model file. */
gm_status gm_tokenizer_load_dir(const char *dir, gm_tokenizer **out);
void gm_tokenizer_free(gm_tokenizer *t);
int gm_tokenizer_vocab_size(const gm_tokenizer *t);
/* Id of a piece given by its exact text ("<end_of_turn>"), or -1. */
int32_t gm_tokenizer_piece_id(const gm_tokenizer *t, const char *piece);
int32_t gm_tokenizer_bos(const gm_tokenizer *t);
int32_t gm_tokenizer_eos(const gm_tokenizer *t);
/* Encode UTF-8 text (invalid UTF-8 is GM_ERR_ARG). *ids is malloc'd; the caller frees it. */
gm_status gm_tokenizer_encode(const gm_tokenizer *t, const char *text, size_t len, int flags, int32_t **ids,
                              size_t *n_ids);
/* Decode ids to text (byte tokens reassembled, '▁' back to ' ', control tokens dropped). Byte tokens that
 * do not form valid UTF-8 are returned as the raw bytes (SentencePiece substitutes U+FFFD), so decoding
 * token by token and all at once agree. *text is malloc'd, NUL-terminated. */
gm_status gm_tokenizer_decode(const gm_tokenizer *t, const int32_t *ids, size_t n_ids, char **text, size_t *len);
/* The bytes one token contributes to decoded text (control tokens contribute nothing).
 * Writes at most cap bytes and returns the full length. */
size_t gm_tokenizer_token_bytes(const gm_tokenizer *t, int32_t id, char *buf, size_t cap);

/* ---- chat format ------------------------------------------------------------------------------- */

typedef struct gm_chat_message {
    const char *role;    /* "user", "model" (or "assistant"), "system" */
    const char *content;
} gm_chat_message;

/* Render a conversation in Gemma's turn format (starts with "<bos>"; with add_generation_prompt ends with
 * "<start_of_turn>model\n"). Content is trimmed like the official template's |trim; a leading system
 * message is folded, untrimmed, into the first user turn as system + "\n\n" + user. Roles must alternate
 * user/model (GM_ERR_ARG otherwise). Encode it with GM_TOK_PARSE_SPECIAL; the CLI drops the leading
 * "<bos>" text and adds GM_TOK_ADD_BOS instead, which also works for tokenizers whose bos piece has
 * another name (SentencePiece's default "<s>"). *out is malloc'd. */
gm_status gm_chat_format(const gm_chat_message *msgs, size_t n, int add_generation_prompt, char **out,
                         size_t *len);

#ifdef __cplusplus
}
#endif
#endif
