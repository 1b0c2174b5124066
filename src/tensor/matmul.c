/* Matmul front end: the scalar reference kernel, the generic fallback for dtypes without SIMD kernels,
 * kernel-family dispatch and the split of work over the thread pool. The SIMD families live in
 * matmul_avx2.c, matmul_avx512.c and matmul_neon.c. */
#include "tensor/matmul.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "tensor/cpu.h"
#include "tensor/quant.h"

/* ---- scalar reference ------------------------------------------------------------------------ */

/* Eight partial sums: keeps the reference reasonably fast without SIMD and its rounding comparable
 * to the vector kernels (a single running sum drifts further on long rows). */
#define GM_SCALAR_DOT(LOAD)                                                                              \
    do {                                                                                             \
        float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                       \
        int i = 0;                                                                                   \
        for (; i + 8 <= in; i += 8)                                                                  \
            for (int j = 0; j < 8; j++) s[j] += xr[i + j] * LOAD(i + j);                             \
        for (; i < in; i++) s[i & 7] += xr[i] * LOAD(i);                                             \
        acc = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));                     \
    } while (0)

void gm_matmul_range_scalar(const gm_mm_args *a, int t0, int t1, int o0, int o1) {
    const int in = a->in;
    for (int o = o0; o < o1; o++) {
        size_t row = (size_t)o * (size_t)in;
        for (int t = t0; t < t1; t++) {
            const float *xr = a->x + (size_t)t * (size_t)in;
            float acc;
            if (a->wt == GM_DT_F32) {
                const float *wr = (const float *)a->w + row;
#define LD(i) wr[i]
                GM_SCALAR_DOT(LD);
#undef LD
            } else if (a->wt == GM_DT_BF16) {
                const uint16_t *wr = (const uint16_t *)a->w + row;
#define LD(i) gm_bf16_to_f32(wr[i])
                GM_SCALAR_DOT(LD);
#undef LD
            } else {
                const uint16_t *wr = (const uint16_t *)a->w + row;
#define LD(i) gm_f16_to_f32(wr[i])
                GM_SCALAR_DOT(LD);
#undef LD
            }
            a->y[(size_t)t * (size_t)a->out + (size_t)o] = acc;
        }
    }
}

/* ---- any dtype through its traits row: one W row converted a chunk at a time -------------------- */

#define GM_GENERIC_CHUNK 4096

static void matmul_range_generic(const gm_mm_args *a, int t0, int t1, int o0, int o1) {
    const gm_dtype_traits *tr = gm_dtype_info(a->wt);
    size_t be = tr ? tr->block_elems : 0;
    size_t chunk = be ? (GM_GENERIC_CHUNK / be) * be : 0;
    size_t in = (size_t)a->in, row_bytes = 0;
    if (!tr || chunk == 0 || !gm_dtype_row_bytes(a->wt, in, &row_bytes)) {
        /* Not representable (unknown dtype, or rows not whole blocks): make the fault visible. */
        for (int t = t0; t < t1; t++)
            for (int o = o0; o < o1; o++) a->y[(size_t)t * (size_t)a->out + (size_t)o] = NAN;
        return;
    }
    float buf[GM_GENERIC_CHUNK];
    for (int o = o0; o < o1; o++) {
        const unsigned char *wr = (const unsigned char *)a->w + (size_t)o * row_bytes;
        for (size_t k0 = 0; k0 < in; k0 += chunk) {
            size_t kc = in - k0 < chunk ? in - k0 : chunk;
            tr->to_f32(wr + k0 / be * tr->block_bytes, buf, kc);
            for (int t = t0; t < t1; t++) {
                const float *xr = a->x + (size_t)t * in + k0;
                float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
                for (size_t i = 0; i < kc; i++) s[i & 7] += xr[i] * buf[i];
                float part = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
                float *yo = &a->y[(size_t)t * (size_t)a->out + (size_t)o];
                *yo = k0 == 0 ? part : *yo + part;
            }
        }
    }
}

/* ---- dispatch -------------------------------------------------------------------------------- */

static atomic_int g_forced = -1; /* gm_isa set by gm_matmul_set_isa, or -1 for gm_cpu_isa() */
static atomic_int g_amx = -1;    /* 1 "amx" asked for, 0 another family named, -1 auto */

static gm_isa current_isa(void) {
    int f = atomic_load_explicit(&g_forced, memory_order_relaxed);
    return f >= 0 ? (gm_isa)f : gm_cpu_isa();
}

/* AMX tiles on top of the avx512 family: asked for by name, or by default where they can run. */
static int amx_on(void) {
#ifdef GM_HAVE_X86
    int a = atomic_load_explicit(&g_amx, memory_order_relaxed);
    if (a >= 0) return a;
    if (current_isa() != GM_ISA_AVX512) return 0;
    const char *env = getenv("GM_AMX");
    return !(env && strcmp(env, "0") == 0) && gm_amx_usable();
#else
    return 0;
#endif
}

static gm_mm_range_fn isa_kernel(gm_isa isa) {
    switch (isa) {
#ifdef GM_HAVE_X86
    case GM_ISA_AVX2: return gm_matmul_range_avx2;
    case GM_ISA_AVX512: return gm_matmul_range_avx512;
#endif
#ifdef GM_HAVE_NEON
    case GM_ISA_NEON: return gm_matmul_range_neon;
#endif
    default: return gm_matmul_range_scalar;
    }
}

static gm_mm_range_fn isa_qkernel(gm_isa isa) {
    switch (isa) {
#ifdef GM_HAVE_X86
    case GM_ISA_AVX2: return gm_qmatmul_range_avx2;
    case GM_ISA_AVX512:
        return gm_cpu_features_get()->avx512vnni ? gm_qmatmul_range_avx512 : gm_qmatmul_range_avx2;
#endif
#ifdef GM_HAVE_NEON
    case GM_ISA_NEON: return gm_qmatmul_range_neon;
#endif
    default: return gm_qmatmul_range_scalar;
    }
}

static gm_xq_fn isa_xq(gm_isa isa) {
    switch (isa) {
#ifdef GM_HAVE_X86
    case GM_ISA_AVX2: return gm_xq_quantize_row_avx2;
    case GM_ISA_AVX512:
        return gm_cpu_features_get()->avx512vnni ? gm_xq_quantize_row_avx512 : gm_xq_quantize_row_avx2;
#endif
#ifdef GM_HAVE_NEON
    case GM_ISA_NEON: return gm_xq_quantize_row_neon;
#endif
    default: return gm_xq_quantize_row;
    }
}

int gm_matmul_set_isa(const char *name) {
    gm_isa isa;
    if (name && strcmp(name, "auto") == 0) {
        atomic_store(&g_forced, -1);
        atomic_store(&g_amx, -1);
        return 1;
    }
#ifdef GM_HAVE_X86
    if (name && strcmp(name, "amx") == 0) {
        if (!gm_cpu_isa_available(GM_ISA_AVX512) || !gm_amx_usable()) return 0;
        atomic_store(&g_forced, (int)GM_ISA_AVX512);
        atomic_store(&g_amx, 1);
        return 1;
    }
#endif
    if (!gm_cpu_isa_from_name(name, &isa) || !gm_cpu_isa_available(isa)) return 0;
    atomic_store(&g_forced, (int)isa);
    atomic_store(&g_amx, 0);
    return 1;
}

const char *gm_matmul_isa(void) { return amx_on() ? "amx" : gm_cpu_isa_name(current_isa()); }

/* ---- threading ------------------------------------------------------------------------------- */

/* Work goes out in chunks taken from a shared counter rather than one fixed share per worker: on
 * shared machines one CPU is often slowed for a while (measured here: a vCPU at 2/3 speed for
 * seconds), and a fixed split would wait for it. Which worker computes a chunk never changes the
 * bits. Chunk boundaries: multiples of 32 outputs (a whole tile in every family, whole cache lines
 * of y) or of 24 rows of x (a multiple of every family's row block). */
#define GM_MM_ALIGN_O 32
#define GM_MM_ALIGN_T 24
#define GM_MM_CHUNKS_PER_WORKER 8
#define GM_MM_CHUNKS_PER_WORKER_AMX 2
/* Below this many multiply-adds the pool's wake-up costs more than it saves. */
#define GM_MM_MIN_PARALLEL_WORK 65536.0

/* Quantizing the rows of x: split by rows over the pool (each row's bytes depend on that row only). */
typedef struct {
    const float *x;
    unsigned char *xq;
    size_t stride;
    gm_dtype wt;
    int T, in;
    gm_xq_fn fn;
} gm_xq_job;

static void xq_task(void *ctx, int worker, int n_workers) {
    gm_xq_job *j = ctx;
    size_t b, e;
    gm_pool_chunk((size_t)j->T, 1, worker, n_workers, &b, &e);
    for (size_t t = b; t < e; t++) j->fn(j->x + t * (size_t)j->in, j->wt, j->in, j->xq + t * j->stride);
}

#ifdef GM_HAVE_X86
/* Rounding x to bf16 tiles for AMX: split by blocks of 16 rows. */
typedef struct {
    const float *x;
    uint16_t *xb;
    int T, in, nsplit;
} gm_xb_job;

static void xb_task(void *ctx, int worker, int n_workers) {
    gm_xb_job *j = ctx;
    size_t b, e;
    gm_pool_chunk((size_t)(j->T + 15) / 16, 1, worker, n_workers, &b, &e);
    if (b < e) gm_amx_pack_x(j->x, j->T, j->in, j->nsplit, j->xb, (int)b, (int)e);
}
#endif

typedef struct {
    gm_mm_args a;
    gm_mm_range_fn fn;
    int split_t;
    size_t total, chunk, n_chunks;
    atomic_size_t next;
} gm_mm_job;

static void mm_task(void *ctx, int worker, int n_workers) {
    gm_mm_job *j = ctx;
    (void)worker, (void)n_workers;
    for (;;) {
        size_t c = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (c >= j->n_chunks) break;
        size_t b = c * j->chunk, e = b + j->chunk < j->total ? b + j->chunk : j->total;
        if (j->split_t) j->fn(&j->a, (int)b, (int)e, 0, j->a.out);
        else j->fn(&j->a, 0, j->a.T, (int)b, (int)e);
    }
}

void gm_matmul(float *y, const float *x, const void *w, gm_dtype wt, int T, int in, int out, gm_pool *pool) {
    if (T <= 0 || out <= 0) return;
    if (in <= 0) {
        memset(y, 0, (size_t)T * (size_t)out * sizeof(float));
        return;
    }
    gm_mm_job j;
    memset(&j, 0, sizeof j);
    j.a = (gm_mm_args){y, x, w, wt, T, in, out, NULL, 0, NULL, 0};
    int n = gm_pool_size(pool);
    /* x prepared once per call for the kernels (8-bit rows or AMX tiles), split over the pool when large */
    void *scratch = NULL;
    const int spread = n > 1 && (double)T * (double)in >= GM_MM_MIN_PARALLEL_WORK;
    size_t align_t = GM_MM_ALIGN_T;
#ifdef GM_HAVE_X86
    const int nsplit = gm_amx_splits(wt);
    const int amx = T >= GM_AMX_MIN_T && in % 32 == 0 &&
                    (wt == GM_DT_BF16 || (gm_dtype_is_quant(wt) && in % (int)gm_dtype_info(wt)->block_elems == 0)) &&
                    amx_on();
    if (amx && posix_memalign(&scratch, 64, gm_amx_xb_bytes(T, in, nsplit)) != 0) scratch = NULL; /* then below */
    if (scratch) {
        gm_xb_job q = {x, scratch, T, in, nsplit};
        if (spread) gm_pool_run(pool, xb_task, &q);
        else xb_task(&q, 0, 1);
        j.a.xb = scratch;
        j.a.xsplit = nsplit;
        j.fn = gm_matmul_range_amx;
        align_t = 32; /* whole pairs of 16-row tiles per chunk */
    } else
#endif
    if (wt == GM_DT_F32 || wt == GM_DT_F16 || wt == GM_DT_BF16) {
        j.fn = isa_kernel(current_isa());
    } else if (gm_dtype_is_quant(wt) && in % (int)gm_dtype_info(wt)->block_elems == 0) {
        size_t stride = gm_xq_row_bytes(wt, in), total;
        if (gm_mul_size(stride, (size_t)T, &total) && posix_memalign(&scratch, 64, total) == 0) {
            gm_xq_job q = {x, scratch, stride, wt, T, in, isa_xq(current_isa())};
            if (spread) gm_pool_run(pool, xq_task, &q);
            else xq_task(&q, 0, 1);
            j.a.xq = scratch;
            j.a.xq_stride = stride;
            j.fn = isa_qkernel(current_isa());
        } else {
            scratch = NULL;
            j.fn = matmul_range_generic; /* out of memory: dequantize row by row instead */
        }
    } else {
        j.fn = matmul_range_generic;
    }
    if (n <= 1 || (double)T * (double)in * (double)out < GM_MM_MIN_PARALLEL_WORK) {
        j.fn(&j.a, 0, T, 0, out);
        free(scratch);
        return;
    }
    /* Split the rows of x only when there are too few output tiles to go round. */
    size_t o_units = ((size_t)out + GM_MM_ALIGN_O - 1) / GM_MM_ALIGN_O;
    j.split_t = o_units < 2 * (size_t)n && (size_t)T >= 2 * align_t;
    size_t align = j.split_t ? align_t : GM_MM_ALIGN_O;
    j.total = j.split_t ? (size_t)T : (size_t)out;
    /* The AMX tiles re-read x (from L3 when the rows are long) for every chunk of outputs: fewer chunks */
    size_t units = (j.total + align - 1) / align,
           want = (size_t)n * (j.a.xb ? GM_MM_CHUNKS_PER_WORKER_AMX : GM_MM_CHUNKS_PER_WORKER);
    j.chunk = (units + want - 1) / want * align;
    j.n_chunks = (j.total + j.chunk - 1) / j.chunk;
    atomic_init(&j.next, 0);
    gm_pool_run(pool, mm_task, &j);
    free(scratch);
}
