/* Training ops: each forward beside its backward (as in llm.c), f32 throughout, on row-major
 * activations of N = B·T rows (row n = b·T + t). Gradients of every op are checked against PyTorch
 * autograd and finite differences (tests/unit/test_train_grad.c).
 *
 * Conventions that keep the model code short:
 *  - backward functions ACCUMULATE (+=) into every gradient they write (dx, dW, dw), so residual
 *    branches, shared inputs (q/k/v from one normed x) and gradient accumulation need no extra adds;
 *    callers zero scratch gradients first. Two exceptions, both in place on a buffer that has no
 *    other consumer: rope_backward rotates its gradient in place, crossentropy_backward writes (=).
 *  - every output element is computed by one worker in a fixed order, so results are bitwise
 *    identical for any thread count (pool may be NULL: one thread). */
#ifndef GM_TRAIN_OPS_H
#define GM_TRAIN_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "base/threads.h"

/* ---- embedding: x[n] = E[ids[n]] · scale ------------------------------------------------------
 * scale is the config's embed_scale: sqrt(d) rounded to the checkpoint's activation dtype, the rule
 * inference uses (exact sqrt(d) for float32 configs, e.g. 45.25 instead of 45.2548 for bf16 d 2048). */
void gm_embedding_forward(float *x, const int32_t *ids, const float *E, int N, int d, float scale, gm_pool *pool);
/* dE[ids[n]] += scale · dx[n]. Rows of repeated ids are summed in n order (split over columns). */
void gm_embedding_backward(float *dE, const float *dx, const int32_t *ids, int N, int d, float scale, gm_pool *pool);

/* ---- RMSNorm: y = x · r · (1 + w), r = 1/sqrt(mean(x²) + eps) (eps inside the sqrt) ------------
 * rstd [N] receives r for the backward. y may equal x. */
void gm_rmsnorm_forward(float *y, float *rstd, const float *x, const float *w, int N, int d, float eps,
                        gm_pool *pool);
/* dx += r(1+w)·dy − x·r³/d · Σ dy(1+w)x;  dw += Σ_n dy·x·r. dx or dw may be NULL. */
void gm_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd,
                         int N, int d, gm_pool *pool);

/* ---- linear: y = x · Wᵀ, W [out, in] (PyTorch layout) ----------------------------------------- */
void gm_matmul_forward(float *y, const float *x, const float *W, int N, int in, int out, gm_pool *pool);
/* dx += dy · W;  dW += dyᵀ · x. Either may be NULL. Blocked register tiles, split over output tiles;
 * each output sums over its k index in ascending order whatever the split. */
void gm_matmul_backward(float *dx, float *dW, const float *dy, const float *x, const float *W, int N, int in,
                        int out, gm_pool *pool);

/* The kernel under matmul_backward, exposed for tests: C[i, j] += Σ_k A(k, i) · B[k·ldb + j] for
 * i < M, j < Nc, k < K, where A(k, i) = A[k·ak + i·ai]. */
void gm_gemm_tn(float *C, size_t ldc, const float *A, size_t ak, size_t ai, const float *B, size_t ldb, int M,
                int Nc, int K, gm_pool *pool);

/* ---- RoPE, rotate-half pairs (i, i + hd/2), position t of each sequence -------------------------
 * Tables: cos/sin [T][hd/2] of t · theta^(−2i/hd), computed in double (as the inference pass). */
void gm_rope_table(float *cos_t, float *sin_t, int T, int hd, double theta);
/* x [B·T, heads·hd], rotated in place. */
void gm_rope_forward(float *x, int B, int T, int heads, int hd, const float *cos_t, const float *sin_t,
                     gm_pool *pool);
/* The transpose rotation, in place on the gradient (dx_pre = Rᵀ dx_post). */
void gm_rope_backward(float *dx, int B, int T, int heads, int hd, const float *cos_t, const float *sin_t,
                      gm_pool *pool);

/* ---- packed rows: several sequences (segments) per row ------------------------------------------
 * pos [B·T] is each token's position within its segment: a segment starts where pos == 0 and counts up by
 * one (pos[n] == 0 or pos[n] == pos[n−1] + 1 inside a row, so pos[n] <= n mod T: train/model_train.c checks
 * it). RoPE rotates token n by the angle of position pos[n] (HF's position_ids for packed SFT), and
 * attention keeps each query inside its segment: the first key it sees is row n − pos[n] (with a window, the
 * later of that and the window's first). pos NULL is one segment per row (pos = t), bitwise the functions
 * above; so is pos = 0..T−1 in every row. */
void gm_rope_forward_pos(float *x, const int32_t *pos, int B, int T, int heads, int hd, const float *cos_t,
                         const float *sin_t, gm_pool *pool);
void gm_rope_backward_pos(float *dx, const int32_t *pos, int B, int T, int heads, int hd, const float *cos_t,
                          const float *sin_t, gm_pool *pool);

/* ---- causal self-attention, MQA/GQA/MHA ---------------------------------------------------------
 * q [N, H·hd] (after RoPE), k, v [N, K·hd]; query head h reads kv head h / (H/K). Scores are
 * scale · q·k, optionally soft-capped (cap·tanh(s/cap), Gemma 2) and windowed (a query at t sees keys
 * t−W+1..t; 0 = no window); softmax in f32 with a double sum. Only the log-sum-exp per (row, head) is
 * saved: the backward recomputes the probabilities (flash-attention style), so memory is O(N·H),
 * not O(B·H·T²). */
typedef struct gm_attn_shape {
    int B, T, H, K, hd;
    float scale;   /* query scale, 1/sqrt(head_dim) for Gemma 1 */
    float softcap; /* 0 = none */
    int window;    /* 0 = none */
} gm_attn_shape;

/* Scratch floats the attention functions need for a pool of n_workers. */
size_t gm_attention_scratch_floats(const gm_attn_shape *s, int n_workers);
/* out [N, H·hd], lse [N, H]. */
void gm_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                          const gm_attn_shape *s, float *scratch, gm_pool *pool);
/* dq, dk, dv += ...; two passes, each parallel and deterministic: queries (dq) then keys (dk, dv),
 * each recomputing the probabilities it needs. */
void gm_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                           const float *v, const float *out, const float *lse, const gm_attn_shape *s,
                           float *scratch, gm_pool *pool);
/* The same on packed rows (pos as for gm_rope_forward_pos; NULL = the calls above). The loops start at the
 * segment's first key (and the key pass stops at the segment's last query), so a packed row costs
 * Σ segment² rather than T². */
void gm_attention_forward_pos(float *out, float *lse, const float *q, const float *k, const float *v,
                              const int32_t *pos, const gm_attn_shape *s, float *scratch, gm_pool *pool);
void gm_attention_backward_pos(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                               const float *v, const float *out, const float *lse, const int32_t *pos,
                               const gm_attn_shape *s, float *scratch, gm_pool *pool);

/* ---- GeGLU: h = gelu_tanh(gate) ⊙ up (tanh approximation, always) ----------------------------- */
void gm_geglu_forward(float *h, const float *gate, const float *up, size_t n, gm_pool *pool);
/* dgate += dh·up·gelu'(gate);  dup += dh·gelu(gate). */
void gm_geglu_backward(float *dgate, float *dup, const float *dh, const float *gate, const float *up, size_t n,
                       gm_pool *pool);

/* ---- cross-entropy over logits [N, V] ----------------------------------------------------------
 * loss_row[n] = logsumexp(z_n) − z_n[target_n]; a target of −1 is ignored (loss_row 0; SFT masks
 * prompts this way). lse [N] is kept for the backward. Returns the number of counted targets. */
int gm_crossentropy_forward(float *loss_row, float *lse, const float *logits, const int32_t *targets, int N, int V,
                            gm_pool *pool);
/* dlogits = dloss · (softmax(z) − onehot(target)), 0 on ignored rows. dloss is 1/(counted targets)
 * for a mean. WRITES, and may run in place (dlogits == logits): the chunked classifier relies on it. */
void gm_crossentropy_backward(float *dlogits, const float *logits, const float *lse, const int32_t *targets, int N,
                              int V, float dloss, gm_pool *pool);

#endif
