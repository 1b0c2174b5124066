/* Forward/backward pairs of every Gemma 1 training op, side by side (ops.h states the conventions).
 * Parallel work is always split so that each output element is owned by one worker and summed in a
 * fixed order: gradients come out bitwise identical for any number of threads. */
#include "train/ops.h"

#include <math.h>
#include <string.h>

#include "tensor/cpu.h"
#include "tensor/matmul.h"
#include "tensor/vec.h"

/* ---- embedding ------------------------------------------------------------------------------- */

typedef struct {
    float *x;
    float *dE;
    const float *E, *dx;
    const int32_t *ids;
    int N, d;
    float scale;
} embed_job;

static void embed_fwd_task(void *ctx, int w, int nw) {
    embed_job *j = ctx;
    size_t b, e;
    gm_pool_chunk((size_t)j->N, 1, w, nw, &b, &e);
    for (size_t n = b; n < e; n++) {
        const float *row = j->E + (size_t)j->ids[n] * (size_t)j->d;
        float *x = j->x + n * (size_t)j->d;
        for (int i = 0; i < j->d; i++) x[i] = row[i] * j->scale;
    }
}

void gm_embedding_forward(float *x, const int32_t *ids, const float *E, int N, int d, float scale, gm_pool *pool) {
    embed_job j = {x, NULL, E, NULL, ids, N, d, scale};
    gm_pool_run(pool, embed_fwd_task, &j);
}

/* Split over columns: a token id repeated in the batch adds to one row, always in n order. */
static void embed_bwd_task(void *ctx, int w, int nw) {
    embed_job *j = ctx;
    size_t b, e;
    gm_pool_chunk((size_t)j->d, 16, w, nw, &b, &e);
    for (int n = 0; n < j->N; n++) {
        float *row = j->dE + (size_t)j->ids[n] * (size_t)j->d;
        const float *dx = j->dx + (size_t)n * (size_t)j->d;
        for (size_t i = b; i < e; i++) row[i] += j->scale * dx[i];
    }
}

void gm_embedding_backward(float *dE, const float *dx, const int32_t *ids, int N, int d, float scale, gm_pool *pool) {
    embed_job j = {NULL, dE, NULL, dx, ids, N, d, scale};
    gm_pool_run(pool, embed_bwd_task, &j);
}

/* ---- RMSNorm --------------------------------------------------------------------------------- */

typedef struct {
    float *y, *rstd, *dx, *dw;
    const float *x, *w, *dy, *rs;
    int N, d;
    float eps;
} norm_job;

/* The sum of squares in double, as the inference pass does, so r does not depend on d's size. */
static void norm_fwd_task(void *ctx, int wk, int nw) {
    norm_job *j = ctx;
    size_t b, e;
    gm_pool_chunk((size_t)j->N, 1, wk, nw, &b, &e);
    int d = j->d;
    for (size_t n = b; n < e; n++) {
        const float *x = j->x + n * (size_t)d;
        float *y = j->y + n * (size_t)d;
        double ss = 0;
        for (int i = 0; i < d; i++) ss += (double)x[i] * x[i];
        float r = (float)(1.0 / sqrt(ss / d + (double)j->eps));
        j->rstd[n] = r;
        for (int i = 0; i < d; i++) y[i] = x[i] * r * (1.0f + j->w[i]);
    }
}

void gm_rmsnorm_forward(float *y, float *rstd, const float *x, const float *w, int N, int d, float eps,
                        gm_pool *pool) {
    norm_job j = {y, rstd, NULL, NULL, x, w, NULL, NULL, N, d, eps};
    gm_pool_run(pool, norm_fwd_task, &j);
}

/* dx = r(1+w)dy − x r³/d Σ_i dy_i (1+w_i) x_i: the second term is the gradient through r. */
static void norm_bwd_dx_task(void *ctx, int wk, int nw) {
    norm_job *j = ctx;
    size_t b, e;
    gm_pool_chunk((size_t)j->N, 1, wk, nw, &b, &e);
    int d = j->d;
    for (size_t n = b; n < e; n++) {
        const float *x = j->x + n * (size_t)d, *dy = j->dy + n * (size_t)d;
        float *dx = j->dx + n * (size_t)d;
        double dot = 0;
        for (int i = 0; i < d; i++) dot += (double)dy[i] * (1.0f + j->w[i]) * x[i];
        float r = j->rs[n];
        float c = (float)(dot * (double)r * r * r / d);
        for (int i = 0; i < d; i++) dx[i] += r * (1.0f + j->w[i]) * dy[i] - x[i] * c;
    }
}

/* dw over columns, each summed over rows in n order. */
static void norm_bwd_dw_task(void *ctx, int wk, int nw) {
    norm_job *j = ctx;
    size_t b, e;
    gm_pool_chunk((size_t)j->d, 16, wk, nw, &b, &e);
    int d = j->d;
    for (int n = 0; n < j->N; n++) {
        const float *x = j->x + (size_t)n * d, *dy = j->dy + (size_t)n * d;
        float r = j->rs[n];
        for (size_t i = b; i < e; i++) j->dw[i] += dy[i] * x[i] * r;
    }
}

void gm_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd,
                         int N, int d, gm_pool *pool) {
    norm_job j = {NULL, NULL, dx, dw, x, w, dy, rstd, N, d, 0};
    if (dx) gm_pool_run(pool, norm_bwd_dx_task, &j);
    if (dw) gm_pool_run(pool, norm_bwd_dw_task, &j);
}

/* ---- matmul ---------------------------------------------------------------------------------- */

void gm_matmul_forward(float *y, const float *x, const float *W, int N, int in, int out, gm_pool *pool) {
    gm_matmul(y, x, W, GM_DT_F32, N, in, out, pool);
}

/* C += Aᵀ·B in register tiles of MR rows × NR columns, k blocked by GM_KC so the A and B panels stay in
 * cache. A tile is stored between k blocks and reloaded, which leaves the order of the additions
 * unchanged: results depend neither on the blocking nor on the split of tiles over workers. Kernels per
 * instruction set, picked at run time like the inference kernels (GM_CPU overrides): AVX-512 6×32 and
 * AVX2 6×16 with FMA (12 accumulators: enough independent chains to hide the FMA latency), and a
 * portable 4×16 one in the GCC/clang vector extension. Rows past M in the last tile row go through a
 * local buffer; columns past Nc (widths that are not a multiple of NR) take the scalar edge loop. */
#define GM_KC 256

typedef struct gemm_job {
    float *C;
    const float *A, *B;
    size_t ldc, ak, ai, ldb;
    int M, Nc, K;
    int mr, nr, tiles_c; /* tile shape of the kernel; tiles per row of C */
} gemm_job;

/* The scalar sums of one tile for k in [k0, k1): columns at the right edge, and the generic fallback. */
static void gemm_tile_scalar(const gemm_job *g, int i0, int j0, int k0, int k1) {
    int mi = g->M - i0 < g->mr ? g->M - i0 : g->mr, nj = g->Nc - j0 < g->nr ? g->Nc - j0 : g->nr;
    for (int r = 0; r < mi; r++)
        for (int c = 0; c < nj; c++) {
            float *cp = g->C + (size_t)(i0 + r) * g->ldc + (size_t)(j0 + c);
            float acc = *cp;
            const float *a = g->A + (size_t)(i0 + r) * g->ai, *b = g->B + (size_t)(j0 + c);
            for (int k = k0; k < k1; k++) acc += b[(size_t)k * g->ldb] * a[(size_t)k * g->ak];
            *cp = acc;
        }
}

/* Row pointers of a tile: rows past M write a scratch row that is thrown away. The A values come from
 * the packed panel ap[k·MR + r] (pack_a), so the inner loop reads them contiguously. */
#define GM_TILE_ROWS(MR, NR)                                                                         \
    float spare[NR];                                                                                 \
    float *crow[MR];                                                                                 \
    for (int r = 0; r < MR; r++) {                                                                   \
        int ok = i0 + r < g->M;                                                                      \
        crow[r] = ok ? g->C + (size_t)(i0 + r) * g->ldc + (size_t)j0 : spare;                        \
        if (!ok) memset(spare, 0, sizeof spare);                                                     \
    }

/* Copy A(k, i0 + r) for k in [k0, k1) into ap[(k − k0)·mr + r] (rows past M repeat row i0): A is read
 * with a large stride when it is dyᵀ (dW = dyᵀ·x walks dy down its columns), once per tile row and k
 * block instead of once per tile. */
static void pack_a(const gemm_job *g, float *ap, int i0, int k0, int k1) {
    for (int r = 0; r < g->mr; r++) {
        const float *a = g->A + (size_t)(i0 + r < g->M ? i0 + r : i0) * g->ai;
        for (int k = k0; k < k1; k++) ap[(size_t)(k - k0) * g->mr + r] = a[(size_t)k * g->ak];
    }
}

/* Walk the tiles [t0, t1) block by block; TILE(g, ap, i0, j0, k0, k1) does one full-width tile. */
#define GM_GEMM_DRIVER(TILE)                                                                         \
    float ap[GM_KC * 8];                                                                             \
    for (int k0 = 0; k0 < g->K; k0 += GM_KC) {                                                       \
        int k1 = k0 + GM_KC < g->K ? k0 + GM_KC : g->K, packed = -1;                                 \
        for (size_t tile = t0; tile < t1; tile++) {                                                  \
            int i0 = (int)(tile / (size_t)g->tiles_c) * g->mr, j0 = (int)(tile % (size_t)g->tiles_c) * g->nr; \
            if (j0 + g->nr > g->Nc) {                                                                \
                gemm_tile_scalar(g, i0, j0, k0, k1);                                                 \
                continue;                                                                            \
            }                                                                                        \
            if (packed != i0) pack_a(g, ap, i0, k0, k1), packed = i0;                                \
            TILE(g, ap, i0, j0, k0, k1);                                                             \
        }                                                                                            \
    }

typedef float gm_v16 __attribute__((vector_size(64)));

static void gemm_tile_generic(const gemm_job *g, const float *ap, int i0, int j0, int k0, int k1) {
    GM_TILE_ROWS(4, 16)
    gm_v16 c0, c1, c2, c3, b;
    memcpy(&c0, crow[0], sizeof c0), memcpy(&c1, crow[1], sizeof c1);
    memcpy(&c2, crow[2], sizeof c2), memcpy(&c3, crow[3], sizeof c3);
    const float *bp = g->B + (size_t)k0 * g->ldb + (size_t)j0;
    for (const float *a = ap, *end = ap + (size_t)(k1 - k0) * 4; a < end; a += 4, bp += g->ldb) {
        memcpy(&b, bp, sizeof b);
        c0 += b * a[0], c1 += b * a[1], c2 += b * a[2], c3 += b * a[3];
    }
    memcpy(crow[0], &c0, sizeof c0), memcpy(crow[1], &c1, sizeof c1);
    memcpy(crow[2], &c2, sizeof c2), memcpy(crow[3], &c3, sizeof c3);
}

static void gemm_generic(const gemm_job *g, size_t t0, size_t t1) { GM_GEMM_DRIVER(gemm_tile_generic) }

#if defined(GM_HAVE_X86)
#include <immintrin.h>

#define GM_FMA_ROW512(r)                                                                             \
    {                                                                                                \
        __m512 av = _mm512_set1_ps(a[r]);                                                      \
        c##r##0 = _mm512_fmadd_ps(av, b0, c##r##0);                                                   \
        c##r##1 = _mm512_fmadd_ps(av, b1, c##r##1);                                                   \
    }

__attribute__((target("avx512f"))) static void gemm_tile_avx512(const gemm_job *g, const float *ap, int i0, int j0, int k0,
                                                     int k1) {
    GM_TILE_ROWS(6, 32)
    __m512 c00 = _mm512_loadu_ps(crow[0]), c01 = _mm512_loadu_ps(crow[0] + 16);
    __m512 c10 = _mm512_loadu_ps(crow[1]), c11 = _mm512_loadu_ps(crow[1] + 16);
    __m512 c20 = _mm512_loadu_ps(crow[2]), c21 = _mm512_loadu_ps(crow[2] + 16);
    __m512 c30 = _mm512_loadu_ps(crow[3]), c31 = _mm512_loadu_ps(crow[3] + 16);
    __m512 c40 = _mm512_loadu_ps(crow[4]), c41 = _mm512_loadu_ps(crow[4] + 16);
    __m512 c50 = _mm512_loadu_ps(crow[5]), c51 = _mm512_loadu_ps(crow[5] + 16);
    const float *bp = g->B + (size_t)k0 * g->ldb + (size_t)j0;
    for (const float *a = ap, *end = ap + (size_t)(k1 - k0) * 6; a < end; a += 6, bp += g->ldb) {
        __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16);
        GM_FMA_ROW512(0) GM_FMA_ROW512(1) GM_FMA_ROW512(2) GM_FMA_ROW512(3) GM_FMA_ROW512(4) GM_FMA_ROW512(5)
    }
    _mm512_storeu_ps(crow[0], c00), _mm512_storeu_ps(crow[0] + 16, c01);
    _mm512_storeu_ps(crow[1], c10), _mm512_storeu_ps(crow[1] + 16, c11);
    _mm512_storeu_ps(crow[2], c20), _mm512_storeu_ps(crow[2] + 16, c21);
    _mm512_storeu_ps(crow[3], c30), _mm512_storeu_ps(crow[3] + 16, c31);
    _mm512_storeu_ps(crow[4], c40), _mm512_storeu_ps(crow[4] + 16, c41);
    _mm512_storeu_ps(crow[5], c50), _mm512_storeu_ps(crow[5] + 16, c51);
}

__attribute__((target("avx512f"))) static void gemm_avx512(const gemm_job *g, size_t t0, size_t t1) {
    GM_GEMM_DRIVER(gemm_tile_avx512)
}

#define GM_FMA_ROW256(r)                                                                             \
    {                                                                                                \
        __m256 av = _mm256_broadcast_ss(&a[r]);                                                \
        c##r##0 = _mm256_fmadd_ps(av, b0, c##r##0);                                                   \
        c##r##1 = _mm256_fmadd_ps(av, b1, c##r##1);                                                   \
    }

__attribute__((target("avx2,fma"))) static void gemm_tile_avx2(const gemm_job *g, const float *ap, int i0, int j0, int k0,
                                                     int k1) {
    GM_TILE_ROWS(6, 16)
    __m256 c00 = _mm256_loadu_ps(crow[0]), c01 = _mm256_loadu_ps(crow[0] + 8);
    __m256 c10 = _mm256_loadu_ps(crow[1]), c11 = _mm256_loadu_ps(crow[1] + 8);
    __m256 c20 = _mm256_loadu_ps(crow[2]), c21 = _mm256_loadu_ps(crow[2] + 8);
    __m256 c30 = _mm256_loadu_ps(crow[3]), c31 = _mm256_loadu_ps(crow[3] + 8);
    __m256 c40 = _mm256_loadu_ps(crow[4]), c41 = _mm256_loadu_ps(crow[4] + 8);
    __m256 c50 = _mm256_loadu_ps(crow[5]), c51 = _mm256_loadu_ps(crow[5] + 8);
    const float *bp = g->B + (size_t)k0 * g->ldb + (size_t)j0;
    for (const float *a = ap, *end = ap + (size_t)(k1 - k0) * 6; a < end; a += 6, bp += g->ldb) {
        __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);
        GM_FMA_ROW256(0) GM_FMA_ROW256(1) GM_FMA_ROW256(2) GM_FMA_ROW256(3) GM_FMA_ROW256(4) GM_FMA_ROW256(5)
    }
    _mm256_storeu_ps(crow[0], c00), _mm256_storeu_ps(crow[0] + 8, c01);
    _mm256_storeu_ps(crow[1], c10), _mm256_storeu_ps(crow[1] + 8, c11);
    _mm256_storeu_ps(crow[2], c20), _mm256_storeu_ps(crow[2] + 8, c21);
    _mm256_storeu_ps(crow[3], c30), _mm256_storeu_ps(crow[3] + 8, c31);
    _mm256_storeu_ps(crow[4], c40), _mm256_storeu_ps(crow[4] + 8, c41);
    _mm256_storeu_ps(crow[5], c50), _mm256_storeu_ps(crow[5] + 8, c51);
}

__attribute__((target("avx2,fma"))) static void gemm_avx2(const gemm_job *g, size_t t0, size_t t1) {
    GM_GEMM_DRIVER(gemm_tile_avx2)
}
#endif

typedef void (*gemm_fn)(const gemm_job *g, size_t t0, size_t t1);

typedef struct {
    gemm_job g;
    gemm_fn fn;
    size_t tiles;
} gemm_task_ctx;

static void gemm_task(void *ctx, int w, int nw) {
    gemm_task_ctx *t = ctx;
    size_t b, e;
    gm_pool_chunk(t->tiles, 1, w, nw, &b, &e);
    if (b < e) t->fn(&t->g, b, e);
}

void gm_gemm_tn(float *C, size_t ldc, const float *A, size_t ak, size_t ai, const float *B, size_t ldb, int M,
                int Nc, int K, gm_pool *pool) {
    if (M <= 0 || Nc <= 0 || K <= 0) return;
    gemm_task_ctx t;
    t.g = (gemm_job){C, A, B, ldc, ak, ai, ldb, M, Nc, K, 4, 16, 0};
    t.fn = gemm_generic;
#if defined(GM_HAVE_X86)
    gm_isa isa = gm_cpu_isa();
    if (isa == GM_ISA_AVX512) t.fn = gemm_avx512, t.g.mr = 6, t.g.nr = 32;
    else if (isa == GM_ISA_AVX2) t.fn = gemm_avx2, t.g.mr = 6, t.g.nr = 16;
#endif
    t.g.tiles_c = (Nc + t.g.nr - 1) / t.g.nr;
    t.tiles = (size_t)((M + t.g.mr - 1) / t.g.mr) * (size_t)t.g.tiles_c;
    gm_pool_run(pool, gemm_task, &t);
}

void gm_matmul_backward(float *dx, float *dW, const float *dy, const float *x, const float *W, int N, int in,
                        int out, gm_pool *pool) {
    /* dx[n, i] += Σ_o dy[n, o] W[o, i]: A(k = o, i = n) = dy[n·out + o] */
    if (dx) gm_gemm_tn(dx, (size_t)in, dy, 1, (size_t)out, W, (size_t)in, N, in, out, pool);
    /* dW[o, i] += Σ_n dy[n, o] x[n, i]: A(k = n, i = o) = dy[n·out + o] */
    if (dW) gm_gemm_tn(dW, (size_t)in, dy, (size_t)out, 1, x, (size_t)in, out, in, N, pool);
}

/* ---- RoPE ------------------------------------------------------------------------------------ */

void gm_rope_table(float *cos_t, float *sin_t, int T, int hd, double theta) {
    int half = hd / 2;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            double a = (double)t * pow(theta, -2.0 * (double)i / (double)hd);
            cos_t[(size_t)t * half + i] = (float)cos(a);
            sin_t[(size_t)t * half + i] = (float)sin(a);
        }
}

typedef struct {
    float *x;
    const float *cs, *sn;
    const int32_t *pos; /* NULL: position t of the row */
    int B, T, heads, hd;
    float sign; /* +1 forward rotation, −1 its transpose */
} rope_job;

static void rope_task(void *ctx, int w, int nw) {
    rope_job *j = ctx;
    size_t b, e;
    gm_pool_chunk((size_t)j->B * (size_t)j->T, 1, w, nw, &b, &e);
    int half = j->hd / 2;
    for (size_t n = b; n < e; n++) {
        size_t t = j->pos ? (size_t)j->pos[n] : n % (size_t)j->T;
        const float *cs = j->cs + t * (size_t)half, *sn = j->sn + t * (size_t)half;
        for (int h = 0; h < j->heads; h++) {
            float *v = j->x + (n * (size_t)j->heads + (size_t)h) * (size_t)j->hd;
            for (int i = 0; i < half; i++) {
                float a = v[i], c = v[i + half], s = j->sign * sn[i];
                v[i] = a * cs[i] - c * s;
                v[i + half] = c * cs[i] + a * s;
            }
        }
    }
}

void gm_rope_forward_pos(float *x, const int32_t *pos, int B, int T, int heads, int hd, const float *cos_t,
                         const float *sin_t, gm_pool *pool) {
    rope_job j = {x, cos_t, sin_t, pos, B, T, heads, hd, 1.0f};
    gm_pool_run(pool, rope_task, &j);
}

/* A rotation's transpose is the rotation by the opposite angle. */
void gm_rope_backward_pos(float *dx, const int32_t *pos, int B, int T, int heads, int hd, const float *cos_t,
                          const float *sin_t, gm_pool *pool) {
    rope_job j = {dx, cos_t, sin_t, pos, B, T, heads, hd, -1.0f};
    gm_pool_run(pool, rope_task, &j);
}

void gm_rope_forward(float *x, int B, int T, int heads, int hd, const float *cos_t, const float *sin_t,
                     gm_pool *pool) {
    gm_rope_forward_pos(x, NULL, B, T, heads, hd, cos_t, sin_t, pool);
}

void gm_rope_backward(float *dx, int B, int T, int heads, int hd, const float *cos_t, const float *sin_t,
                      gm_pool *pool) {
    gm_rope_backward_pos(dx, NULL, B, T, heads, hd, cos_t, sin_t, pool);
}

/* ---- attention ------------------------------------------------------------------------------- */

typedef struct {
    const gm_attn_shape *s;
    float *out, *lse, *dq, *dk, *dv, *scratch;
    const float *q, *k, *v, *dout, *o, *lse_in;
    const int32_t *pos; /* NULL: one segment per row */
    const gm_vec_ops *vo;
} attn_job;

size_t gm_attention_scratch_floats(const gm_attn_shape *s, int n_workers) {
    size_t fwd = (size_t)(n_workers > 0 ? n_workers : 1) * (size_t)s->T;
    size_t bwd = (size_t)s->B * (size_t)s->T * (size_t)s->H; /* D = rowsum(dout ⊙ out) per (row, head) */
    return fwd > bwd ? fwd : bwd;
}

/* First key the query of row n (position t of its row) sees: the window's first, or its segment's first
 * when that is later. */
static int first_key(const attn_job *j, size_t n, int t) {
    const gm_attn_shape *s = j->s;
    int w0 = s->window > 0 && t - s->window + 1 > 0 ? t - s->window + 1 : 0;
    int s0 = j->pos ? t - j->pos[n] : 0;
    return s0 > w0 ? s0 : w0;
}

/* Last query that sees the key of row m (position key of its row): the window's last, or the last of the
 * key's segment when that is earlier. Scanning to the next segment start costs no more than the loop over
 * those queries that follows. */
static int last_query(const attn_job *j, size_t m, int key) {
    const gm_attn_shape *s = j->s;
    int T = s->T, last = s->window > 0 && key + s->window - 1 < T - 1 ? key + s->window - 1 : T - 1;
    if (j->pos)
        for (int t = key + 1; t <= last; t++)
            if (j->pos[m + (size_t)(t - key)] == 0) return t - 1;
    return last;
}

/* The score as the softmax sees it (scaled, soft-capped). */
static float attn_score(const attn_job *j, const float *q, const float *k) {
    const gm_attn_shape *s = j->s;
    float v = j->vo->dot(q, k, s->hd) * s->scale;
    if (s->softcap > 0) v = s->softcap * tanhf(v / s->softcap);
    return v;
}

/* One (row, head) pair per work item. */
static void attn_fwd_task(void *ctx, int w, int nw) {
    attn_job *j = ctx;
    const gm_attn_shape *s = j->s;
    int H = s->H, K = s->K, hd = s->hd, T = s->T, group = H / K;
    size_t qd = (size_t)H * hd, kvd = (size_t)K * hd;
    size_t b, e;
    gm_pool_chunk((size_t)s->B * T * H, 1, w, nw, &b, &e);
    float *sc = j->scratch + (size_t)w * (size_t)T;
    for (size_t item = b; item < e; item++) {
        size_t n = item / (size_t)H;
        int h = (int)(item % (size_t)H), t = (int)(n % (size_t)T), kvh = h / group;
        size_t row0 = n - (size_t)t; /* row of position 0 of this sequence */
        const float *q = j->q + n * qd + (size_t)h * hd;
        int j0 = first_key(j, n, t), nk = t - j0 + 1;
        float mx = -INFINITY;
        for (int i = 0; i < nk; i++) {
            sc[i] = attn_score(j, q, j->k + (row0 + (size_t)(j0 + i)) * kvd + (size_t)kvh * hd);
            if (sc[i] > mx) mx = sc[i];
        }
        double sum = 0;
        for (int i = 0; i < nk; i++) {
            sc[i] = expf(sc[i] - mx);
            sum += sc[i];
        }
        float inv = (float)(1.0 / sum);
        float *o = j->out + n * qd + (size_t)h * hd;
        memset(o, 0, sizeof(float) * (size_t)hd);
        for (int i = 0; i < nk; i++)
            j->vo->axpy(o, sc[i] * inv, j->v + (row0 + (size_t)(j0 + i)) * kvd + (size_t)kvh * hd, hd);
        j->lse[n * (size_t)H + (size_t)h] = mx + (float)log(sum);
    }
}

void gm_attention_forward_pos(float *out, float *lse, const float *q, const float *k, const float *v,
                              const int32_t *pos, const gm_attn_shape *s, float *scratch, gm_pool *pool) {
    attn_job j = {s, out, lse, NULL, NULL, NULL, scratch, q, k, v, NULL, NULL, NULL, pos, gm_vec()};
    gm_pool_run(pool, attn_fwd_task, &j);
}

void gm_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                          const gm_attn_shape *s, float *scratch, gm_pool *pool) {
    gm_attention_forward_pos(out, lse, q, k, v, NULL, s, scratch, pool);
}

/* ds = dL/d(score before the cap and the scale) for one (query, key) pair, and p. With
 * D = dout·out, dL/dsc = p (dout·v − D); the cap's derivative is 1 − tanh² = 1 − (sc/cap)². */
static float attn_ds(const attn_job *j, const float *q, const float *k, const float *v, const float *dout,
                     float lse, float D, float *p_out) {
    const gm_attn_shape *s = j->s;
    float sc = attn_score(j, q, k);
    float p = expf(sc - lse);
    float ds = p * (j->vo->dot(dout, v, s->hd) - D);
    if (s->softcap > 0) {
        float th = sc / s->softcap;
        ds *= 1.0f - th * th;
    }
    *p_out = p;
    return ds * s->scale;
}

/* Pass 1: per (row, head): D, then dq += Σ_keys ds·k. */
static void attn_bwd_q_task(void *ctx, int w, int nw) {
    attn_job *j = ctx;
    const gm_attn_shape *s = j->s;
    int H = s->H, K = s->K, hd = s->hd, T = s->T, group = H / K;
    size_t qd = (size_t)H * hd, kvd = (size_t)K * hd;
    size_t b, e;
    gm_pool_chunk((size_t)s->B * T * H, 1, w, nw, &b, &e);
    for (size_t item = b; item < e; item++) {
        size_t n = item / (size_t)H;
        int h = (int)(item % (size_t)H), t = (int)(n % (size_t)T), kvh = h / group;
        size_t row0 = n - (size_t)t, at = n * qd + (size_t)h * hd;
        const float *q = j->q + at, *dout = j->dout + at;
        float D = j->vo->dot(dout, j->o + at, hd);
        j->scratch[item] = D;
        float lse = j->lse_in[item], *dq = j->dq + at;
        for (int key = first_key(j, n, t); key <= t; key++) {
            size_t kat = (row0 + (size_t)key) * kvd + (size_t)kvh * hd;
            float p;
            float ds = attn_ds(j, q, j->k + kat, j->v + kat, dout, lse, D, &p);
            j->vo->axpy(dq, ds, j->k + kat, hd);
        }
    }
}

/* Pass 2: per (key row, kv head): dk, dv summed over the group's query heads and the queries that see
 * the key, heads then positions ascending. */
static void attn_bwd_kv_task(void *ctx, int w, int nw) {
    attn_job *j = ctx;
    const gm_attn_shape *s = j->s;
    int H = s->H, K = s->K, hd = s->hd, T = s->T, group = H / K;
    size_t qd = (size_t)H * hd, kvd = (size_t)K * hd;
    size_t b, e;
    gm_pool_chunk((size_t)s->B * T * K, 1, w, nw, &b, &e);
    for (size_t item = b; item < e; item++) {
        size_t m = item / (size_t)K;
        int kvh = (int)(item % (size_t)K), key = (int)(m % (size_t)T);
        size_t row0 = m - (size_t)key, kat = m * kvd + (size_t)kvh * hd;
        int last = last_query(j, m, key);
        float *dk = j->dk + kat, *dv = j->dv + kat;
        for (int h = kvh * group; h < (kvh + 1) * group; h++)
            for (int t = key; t <= last; t++) {
                size_t n = row0 + (size_t)t, at = n * qd + (size_t)h * hd;
                size_t hi = n * (size_t)H + (size_t)h;
                float p;
                float ds = attn_ds(j, j->q + at, j->k + kat, j->v + kat, j->dout + at, j->lse_in[hi], j->scratch[hi], &p);
                j->vo->axpy(dv, p, j->dout + at, hd);
                j->vo->axpy(dk, ds, j->q + at, hd);
            }
    }
}

void gm_attention_backward_pos(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                               const float *v, const float *out, const float *lse, const int32_t *pos,
                               const gm_attn_shape *s, float *scratch, gm_pool *pool) {
    attn_job j = {s, NULL, NULL, dq, dk, dv, scratch, q, k, v, dout, out, lse, pos, gm_vec()};
    gm_pool_run(pool, attn_bwd_q_task, &j);
    gm_pool_run(pool, attn_bwd_kv_task, &j);
}

void gm_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                           const float *v, const float *out, const float *lse, const gm_attn_shape *s,
                           float *scratch, gm_pool *pool) {
    gm_attention_backward_pos(dq, dk, dv, dout, q, k, v, out, lse, NULL, s, scratch, pool);
}

/* ---- GeGLU ----------------------------------------------------------------------------------- */

#define GM_GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GM_GELU_C 0.044715f

typedef struct {
    float *h, *dgate, *dup;
    const float *gate, *up, *dh;
    size_t n;
} geglu_job;

static void geglu_fwd_task(void *ctx, int w, int nw) {
    geglu_job *j = ctx;
    size_t b, e;
    gm_pool_chunk(j->n, 64, w, nw, &b, &e);
    for (size_t i = b; i < e; i++) {
        float x = j->gate[i];
        j->h[i] = 0.5f * x * (1.0f + tanhf(GM_GELU_K * (x + GM_GELU_C * x * x * x))) * j->up[i];
    }
}

void gm_geglu_forward(float *h, const float *gate, const float *up, size_t n, gm_pool *pool) {
    geglu_job j = {h, NULL, NULL, gate, up, NULL, n};
    gm_pool_run(pool, geglu_fwd_task, &j);
}

/* gelu'(x) = ½(1 + t) + ½x(1 − t²)·k(1 + 3c x²), t = tanh(k(x + c x³)). */
static void geglu_bwd_task(void *ctx, int w, int nw) {
    geglu_job *j = ctx;
    size_t b, e;
    gm_pool_chunk(j->n, 64, w, nw, &b, &e);
    for (size_t i = b; i < e; i++) {
        float x = j->gate[i];
        float t = tanhf(GM_GELU_K * (x + GM_GELU_C * x * x * x));
        float g = 0.5f * x * (1.0f + t);
        float dg = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * GM_GELU_K * (1.0f + 3.0f * GM_GELU_C * x * x);
        j->dgate[i] += j->dh[i] * j->up[i] * dg;
        j->dup[i] += j->dh[i] * g;
    }
}

void gm_geglu_backward(float *dgate, float *dup, const float *dh, const float *gate, const float *up, size_t n,
                       gm_pool *pool) {
    geglu_job j = {NULL, dgate, dup, gate, up, dh, n};
    gm_pool_run(pool, geglu_bwd_task, &j);
}

/* ---- cross-entropy --------------------------------------------------------------------------- */

typedef struct {
    float *loss, *lse, *dl;
    const float *z, *lse_in;
    const int32_t *tg;
    int N, V;
    float dloss;
} ce_job;

static void ce_fwd_task(void *ctx, int w, int nw) {
    ce_job *j = ctx;
    size_t b, e;
    gm_pool_chunk((size_t)j->N, 1, w, nw, &b, &e);
    for (size_t n = b; n < e; n++) {
        const float *z = j->z + n * (size_t)j->V;
        float mx = -INFINITY;
        for (int v = 0; v < j->V; v++) mx = z[v] > mx ? z[v] : mx;
        double sum = 0;
        for (int v = 0; v < j->V; v++) sum += expf(z[v] - mx);
        float lse = mx + (float)log(sum);
        j->lse[n] = lse;
        j->loss[n] = j->tg[n] < 0 ? 0.0f : lse - z[j->tg[n]];
    }
}

int gm_crossentropy_forward(float *loss_row, float *lse, const float *logits, const int32_t *targets, int N, int V,
                            gm_pool *pool) {
    ce_job j = {loss_row, lse, NULL, logits, NULL, targets, N, V, 0};
    gm_pool_run(pool, ce_fwd_task, &j);
    int counted = 0;
    for (int n = 0; n < N; n++) counted += targets[n] >= 0;
    return counted;
}

static void ce_bwd_task(void *ctx, int w, int nw) {
    ce_job *j = ctx;
    size_t b, e;
    gm_pool_chunk((size_t)j->N, 1, w, nw, &b, &e);
    for (size_t n = b; n < e; n++) {
        const float *z = j->z + n * (size_t)j->V;
        float *dl = j->dl + n * (size_t)j->V;
        int tg = j->tg[n];
        if (tg < 0) {
            memset(dl, 0, sizeof(float) * (size_t)j->V);
            continue;
        }
        float lse = j->lse_in[n];
        for (int v = 0; v < j->V; v++) dl[v] = j->dloss * (expf(z[v] - lse) - (v == tg ? 1.0f : 0.0f));
    }
}

void gm_crossentropy_backward(float *dlogits, const float *logits, const float *lse, const int32_t *targets, int N,
                              int V, float dloss, gm_pool *pool) {
    ce_job j = {NULL, NULL, dlogits, logits, lse, targets, N, V, dloss};
    gm_pool_run(pool, ce_bwd_task, &j);
}
