/* The distributed-training layer (train/dist.h). One code path for every mesh: a build without MPI, or
 * a run not under mpirun, is the mesh 1 × 1 and every collective below is a no-op (the single-process
 * trainer, bitwise: test_dist checks gm_dist_opt_step against gm_adamw_step).
 *
 * Layouts. A rank's model (train/model_train.h) is shard tp_rank of tp: its tensors in HF order with the
 * shard's shapes, in one flat buffer of n floats padded to GM_TRAIN_PAD. ZeRO cuts that buffer into
 * data-parallel slices of whole GM_TRAIN_PAD blocks; since MPI counts are ints, a buffer over ~2^30 floats
 * is cut in rounds of at most GM_DIST_ROUND floats, and in each round every data rank owns one slice, so a
 * rank's optimizer state is its slices of all rounds, one after the other.
 *
 * Determinism. Every sum MPI does is a reduce-scatter: each element is added up once, on one rank, and
 * then copied (all-gather) to the ranks that need it, so the model ranks see bitwise the same activations
 * and replicated parameters, and the data ranks the same update. Scalars (the squared gradient norm, the
 * loss) are all-gathered and added in rank order. The order of the additions inside MPI's reduce-scatter
 * is MPI's own (fixed for a given size and rank count), which is why runs on different meshes agree to
 * rounding (1e-5 relative over 20 steps, tests/cli/test_mpi.sh) rather than bitwise. */
#include "train/dist.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

#ifdef GM_HAVE_MPI
#include <mpi.h>
#endif

/* Sanitizer builds: OpenMPI keeps memory it allocates (at init, and lazily on first use of a collective)
 * until the process ends, much of it from plugins it unloads at MPI_Finalize, so LeakSanitizer can neither
 * suppress it by library nor tell it from ours; allocations made inside MPI calls on this thread are left
 * out of the leak check. (OpenMPI's own threads are covered by tests/mpi/lsan.supp.) */
#if defined(__SANITIZE_ADDRESS__)
#define GM_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GM_LSAN 1
#endif
#endif
#if defined(GM_HAVE_MPI) && defined(GM_LSAN)
#include <sanitizer/lsan_interface.h>
#define MPI_QUIET(call) do { __lsan_disable(); call; __lsan_enable(); } while (0)
#else
#define MPI_QUIET(call) do { call; } while (0)
#endif

/* Floats per collective round (2^30, a multiple of GM_TRAIN_PAD): keeps every MPI count an int. */
#define GM_DIST_ROUND ((size_t)1 << 30)

struct gm_dist {
    int rank, world, tp, dp, tp_rank, dp_rank;
    int own_mpi; /* gm_dist_init started MPI, so gm_dist_finalize ends it */
    int *cnts, *displs; /* scratch for one collective: max(dp, tp) ints each */
    float *scratch;     /* the model-group sum's reduce-scatter block */
    size_t scratch_cap;
#ifdef GM_HAVE_MPI
    MPI_Comm dp_comm, tp_comm; /* same tp_rank (ordered by dp_rank); same dp_rank (ordered by tp_rank) */
#endif
};

int gm_dist_have_mpi(void) {
#ifdef GM_HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

static gm_status mesh_new(int rank, int world, int tp, gm_dist **out) {
    gm_dist *d = calloc(1, sizeof *d);
    int n = world > 1 ? world : 1;
    if (!d || !(d->cnts = calloc((size_t)n, sizeof(int))) || !(d->displs = calloc((size_t)n, sizeof(int)))) {
        if (d) free(d->cnts);
        free(d);
        return gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    d->rank = rank, d->world = world, d->tp = tp, d->dp = world / tp;
    d->tp_rank = rank % tp, d->dp_rank = rank / tp;
    *out = d;
    return GM_OK;
}

#ifdef GM_HAVE_MPI
/* 1 when a launcher started this process as one of several ranks: Open MPI's mpirun, or PMI/PMIx launchers
 * (MPICH's hydra, Slurm's srun). */
static int launched_by_mpi(void) {
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}
#endif

gm_status gm_dist_init(int *argc, char ***argv, int tp, gm_dist **out) {
    *out = NULL;
    if (tp < 1) return gm_fail(GM_ERR_ARG, "--tp %d: the model-parallel size must be at least 1", tp);
#ifndef GM_HAVE_MPI
    (void)argc, (void)argv;
    if (tp != 1) return gm_fail(GM_ERR_UNSUPPORTED, "--tp %d needs a build with MPI run under mpirun", tp);
    return mesh_new(0, 1, 1, out);
#else
    int inited = 0, finalized = 0, own = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (finalized) return gm_fail(GM_ERR_UNSUPPORTED, "MPI was already finalized in this process");
    if (!inited && !launched_by_mpi()) {
        /* a plain run: one rank without starting MPI at all (a singleton MPI_Init would spawn a daemon and
         * needs a working MPI runtime for nothing); every collective is skipped for groups of one */
        if (tp != 1)
            return gm_fail(GM_ERR_ARG, "--tp %d needs %d or a multiple of %d ranks: run under mpirun -np N", tp, tp, tp);
        gm_status st = mesh_new(0, 1, 1, out);
        if (!st) (*out)->dp_comm = MPI_COMM_NULL, (*out)->tp_comm = MPI_COMM_NULL;
        return st;
    }
    if (!inited) {
        /* FUNNELED: the pool's worker threads exist but only the thread that called init talks MPI */
        int provided = 0;
        int rc;
        MPI_QUIET(rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
        if (rc != MPI_SUCCESS) return gm_fail(GM_ERR_IO, "MPI_Init_thread failed");
        own = 1;
        if (provided < MPI_THREAD_FUNNELED) {
            MPI_QUIET(MPI_Finalize());
            return gm_fail(GM_ERR_UNSUPPORTED, "the MPI library gives thread level %d, the trainer needs FUNNELED (%d)",
                           provided, MPI_THREAD_FUNNELED);
        }
    }
    int rank = 0, world = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    gm_status st = GM_OK;
    if (world % tp) st = gm_fail(GM_ERR_ARG, "--tp %d must divide the number of ranks (%d)", tp, world);
    gm_dist *d = NULL;
    if (!st) st = mesh_new(rank, world, tp, &d);
    if (st) {
        if (own) MPI_QUIET(MPI_Finalize()); /* every rank sees the same sizes, so all of them end here */
        return st;
    }
    d->own_mpi = own;
    MPI_QUIET(MPI_Comm_split(MPI_COMM_WORLD, d->tp_rank, d->dp_rank, &d->dp_comm));
    MPI_QUIET(MPI_Comm_split(MPI_COMM_WORLD, d->dp_rank, d->tp_rank, &d->tp_comm));
    *out = d;
    return GM_OK;
#endif
}

void gm_dist_finalize(gm_dist *d) {
    if (!d) return;
#ifdef GM_HAVE_MPI
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && d->dp_comm != MPI_COMM_NULL) {
        MPI_QUIET(MPI_Comm_free(&d->dp_comm));
        MPI_QUIET(MPI_Comm_free(&d->tp_comm));
        if (d->own_mpi) MPI_QUIET(MPI_Finalize());
    }
#endif
    free(d->cnts);
    free(d->displs);
    free(d->scratch);
    free(d);
}

void gm_dist_abort(gm_dist *d, int rc) {
    (void)d;
#ifdef GM_HAVE_MPI
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (inited && !finalized) MPI_Abort(MPI_COMM_WORLD, rc);
#endif
    exit(rc);
}

int gm_dist_rank(const gm_dist *d) { return d->rank; }
int gm_dist_world(const gm_dist *d) { return d->world; }
int gm_dist_dp_rank(const gm_dist *d) { return d->dp_rank; }
int gm_dist_dp_size(const gm_dist *d) { return d->dp; }
int gm_dist_tp_rank(const gm_dist *d) { return d->tp_rank; }
int gm_dist_tp_size(const gm_dist *d) { return d->tp; }

/* ---- collectives --------------------------------------------------------------------------------- */

/* Splits len floats (a multiple of GM_TRAIN_PAD) into `ranks` slices of whole blocks, the first ones no
 * smaller: rank j's slice is [displs[j], displs[j] + cnts[j]). */
static void split_blocks(size_t len, int ranks, int *cnts, int *displs) {
    size_t nb = len / GM_TRAIN_PAD;
    for (int j = 0; j < ranks; j++) {
        size_t b0 = nb * (size_t)j / (size_t)ranks, b1 = nb * (size_t)(j + 1) / (size_t)ranks;
        displs[j] = (int)(b0 * GM_TRAIN_PAD), cnts[j] = (int)((b1 - b0) * GM_TRAIN_PAD);
    }
}

#ifdef GM_HAVE_MPI
static float *scratch(gm_dist *d, size_t n) {
    if (n > d->scratch_cap) {
        float *p = realloc(d->scratch, sizeof(float) * n);
        if (!p) {
            fprintf(stderr, "gemma: out of memory for a %zu-float communication buffer\n", n);
            gm_dist_abort(d, 1);
        }
        d->scratch = p, d->scratch_cap = n;
    }
    return d->scratch;
}
#endif

/* buf[0..n) summed over the model group, the same bits on every model rank (gm_train_sum_fn). */
static void tp_sum(void *ctx, float *buf, size_t n) {
    gm_dist *d = ctx;
    if (d->tp == 1) return;
#ifdef GM_HAVE_MPI
    for (size_t done = 0; done < n; done += GM_DIST_ROUND) {
        size_t len = n - done < GM_DIST_ROUND ? n - done : GM_DIST_ROUND;
        for (int j = 0; j < d->tp; j++) {
            size_t e0 = len * (size_t)j / (size_t)d->tp, e1 = len * (size_t)(j + 1) / (size_t)d->tp;
            d->displs[j] = (int)e0, d->cnts[j] = (int)(e1 - e0);
        }
        float *blk = scratch(d, len / (size_t)d->tp + 1);
        MPI_QUIET(MPI_Reduce_scatter(buf + done, blk, d->cnts, MPI_FLOAT, MPI_SUM, d->tp_comm));
        MPI_QUIET(MPI_Allgatherv(blk, d->cnts[d->tp_rank], MPI_FLOAT, buf + done, d->cnts, d->displs, MPI_FLOAT,
                                 d->tp_comm));
    }
#else
    (void)buf, (void)n;
#endif
}

/* Sum of x over a group (this rank's data group, its model group, or the world), added in rank order on
 * every rank so all of them get the same bits. */
typedef enum { GROUP_DP, GROUP_TP, GROUP_WORLD } group_t;

static double sum_double(gm_dist *d, group_t g, double x) {
#ifdef GM_HAVE_MPI
    int n = g == GROUP_DP ? d->dp : g == GROUP_TP ? d->tp : d->world;
    if (n == 1) return x;
    double *all = malloc(sizeof(double) * (size_t)n);
    if (!all) {
        fprintf(stderr, "gemma: out of memory\n");
        gm_dist_abort(d, 1);
    }
    MPI_Comm comm = g == GROUP_DP ? d->dp_comm : g == GROUP_TP ? d->tp_comm : MPI_COMM_WORLD;
    MPI_QUIET(MPI_Allgather(&x, 1, MPI_DOUBLE, all, 1, MPI_DOUBLE, comm));
    double s = 0;
    for (int i = 0; i < n; i++) s += all[i];
    free(all);
    return s;
#else
    (void)d, (void)g;
    return x;
#endif
}

static int min_int_world(gm_dist *d, int x) {
#ifdef GM_HAVE_MPI
    if (d->world > 1) {
        int r = x;
        MPI_QUIET(MPI_Allreduce(&x, &r, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
        return r;
    }
#endif
    (void)d;
    return x;
}

/* Round k of a padded buffer of n_pad floats: [*base, *base + *len). */
static int n_rounds(size_t n_pad) { return n_pad ? (int)((n_pad + GM_DIST_ROUND - 1) / GM_DIST_ROUND) : 0; }
static void round_at(size_t n_pad, int k, size_t *base, size_t *len) {
    *base = (size_t)k * GM_DIST_ROUND;
    *len = n_pad - *base < GM_DIST_ROUND ? n_pad - *base : GM_DIST_ROUND;
}

double gm_dist_sum_dp(gm_dist *d, double x) { return sum_double(d, GROUP_DP, x); }

int gm_dist_max_int(gm_dist *d, int x) {
#ifdef GM_HAVE_MPI
    if (d->world > 1) {
        int r = x;
        MPI_QUIET(MPI_Allreduce(&x, &r, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
        return r;
    }
#endif
    (void)d;
    return x;
}

void gm_dist_bcast(gm_dist *d, void *buf, size_t n) {
#ifdef GM_HAVE_MPI
    for (size_t done = 0; d->world > 1 && done < n; done += (size_t)1 << 30) {
        size_t len = n - done < ((size_t)1 << 30) ? n - done : (size_t)1 << 30;
        MPI_QUIET(MPI_Bcast((char *)buf + done, (int)len, MPI_BYTE, 0, MPI_COMM_WORLD));
    }
#else
    (void)d, (void)buf, (void)n;
#endif
}

void gm_dist_barrier(gm_dist *d) {
#ifdef GM_HAVE_MPI
    if (d->world > 1) MPI_QUIET(MPI_Barrier(MPI_COMM_WORLD));
#else
    (void)d;
#endif
}

/* ---- model --------------------------------------------------------------------------------------- */

gm_status gm_dist_model_new(gm_dist *d, const gm_config *c, const gm_train_opts *o, gm_train_model **out) {
    gm_status st = gm_train_model_new_shard(c, o, d->tp_rank, d->tp, out);
    if (!st && d->tp > 1) (*out)->tp_sum = tp_sum, (*out)->tp_ctx = d;
    return st;
}

gm_status gm_dist_model_from_model(gm_dist *d, const gm_model *src, const gm_train_opts *o, gm_train_model **out) {
    gm_status st = gm_train_model_from_model_shard(src, o, d->tp_rank, d->tp, out);
    if (!st && d->tp > 1) (*out)->tp_sum = tp_sum, (*out)->tp_ctx = d;
    return st;
}

size_t gm_dist_full_params(const gm_dist *d, const gm_train_model *m) {
    (void)d;
    return m->n_full_params;
}

gm_status gm_dist_model_scatter(gm_dist *d, gm_train_model *m, const float *full) {
    (void)d;
    /* shard_copy reads full only, in this direction */
    for (int i = 0; i < m->n_tensors; i++) gm_train_shard_copy(m, i, (float *)full, m->params, 1);
    return GM_OK;
}

/* The full layout on every rank from each model rank's shard `local` (a buffer in m's layout, the same on
 * every data rank of one model rank). Row-parallel tensors all-gather straight into place (model ranks
 * hold consecutive row blocks); column-parallel ones through a buffer; replicated ones are copied. */
static gm_status assemble_full(gm_dist *d, const gm_train_model *m, const float *local, float *full) {
    if (d->tp == 1) {
        memcpy(full, local, sizeof(float) * m->n_params);
        return GM_OK;
    }
#ifdef GM_HAVE_MPI
    for (int i = 0; i < m->n_tensors; i++) {
        const gm_train_tensor *S = &m->tensors[i], *F = &m->full_tensors[i];
        if (S->numel == F->numel) {
            memcpy(full + F->offset, local + S->offset, sizeof(float) * S->numel);
            continue;
        }
        if (S->numel > INT_MAX)
            return gm_fail(GM_ERR_UNSUPPORTED, "%s: a shard of %zu floats is more than one MPI message carries",
                           S->name, S->numel);
        int col_par = S->shape[1] != F->shape[1];
        float *dst = full + F->offset;
        if (col_par && !(dst = malloc(sizeof(float) * F->numel))) return gm_fail(GM_ERR_NOMEM, "out of memory");
        MPI_QUIET(MPI_Allgather(local + S->offset, (int)S->numel, MPI_FLOAT, dst, (int)S->numel, MPI_FLOAT,
                                d->tp_comm));
        if (col_par) { /* dst is [tp][rows][cols]: interleave the column blocks into rows */
            size_t rows = (size_t)S->shape[0], cols = (size_t)S->shape[1];
            for (int r = 0; r < d->tp; r++)
                for (size_t y = 0; y < rows; y++)
                    memcpy(full + F->offset + y * (size_t)F->shape[1] + (size_t)r * cols,
                           dst + (size_t)r * S->numel + y * cols, sizeof(float) * cols);
            free(dst);
        }
    }
    return GM_OK;
#else
    return gm_fail(GM_ERR_UNSUPPORTED, "model parallelism needs a build with MPI");
#endif
}

gm_status gm_dist_model_gather(gm_dist *d, const gm_train_model *m, float *full) {
    return assemble_full(d, m, m->params, full);
}

/* ---- optimizer ----------------------------------------------------------------------------------- */

struct gm_dist_opt {
    gm_dist *d;
    gm_train_model *m;
    gm_adamw_params p;
    int zero;       /* moments sharded over the data ranks */
    int t;          /* updates taken */
    size_t n, n_pad; /* the shard's parameters, and padded to GM_TRAIN_PAD */
    unsigned char *decay, *counted; /* per tensor; counted: this rank adds it to the global norm */
    float *mom_m, *mom_v;           /* this rank's moments: its slice of every round (ZeRO), or all n_pad */
    size_t n_mom;
    float *g_slice; /* the reduce-scattered gradient of the slices (data ranks > 1) */
    double *partial;
};

/* The spans of the layout this rank updates: round k's own slice with ZeRO, else the whole buffer once.
 * *mom is where the span's moments (and its reduced gradient) start in mom_m / g_slice. */
static int own_spans(const gm_dist_opt *o) { return o->zero && o->d->dp > 1 ? n_rounds(o->n_pad) : 1; }
static void own_span(gm_dist_opt *o, int k, size_t *begin, size_t *end, size_t *mom) {
    if (!(o->zero && o->d->dp > 1)) {
        *begin = 0, *end = o->n_pad, *mom = 0;
        return;
    }
    size_t base, len, before = 0;
    for (int r = 0; r <= k; r++) {
        round_at(o->n_pad, r, &base, &len);
        split_blocks(len, o->d->dp, o->d->cnts, o->d->displs);
        if (r < k) before += (size_t)o->d->cnts[o->d->dp_rank];
    }
    *begin = base + (size_t)o->d->displs[o->d->dp_rank];
    *end = *begin + (size_t)o->d->cnts[o->d->dp_rank];
    *mom = before;
}

/* Where span k's gradient is: the reduce-scattered slice, or the model's own buffer. */
static const float *span_grad(gm_dist_opt *o, size_t begin, size_t mom) {
    return o->zero && o->d->dp > 1 ? o->g_slice + mom : o->m->grads + begin;
}

gm_status gm_dist_opt_new(gm_dist *d, const gm_adamw_params *p, gm_train_model *m, int zero, gm_dist_opt **out) {
    *out = NULL;
    gm_status st = gm_adamw_params_check(p);
    if (st) return st;
    gm_dist_opt *o = calloc(1, sizeof *o);
    if (!o) return gm_fail(GM_ERR_NOMEM, "out of memory");
    o->d = d, o->m = m, o->p = *p, o->zero = zero != 0;
    o->n = m->n_params;
    o->n_pad = (m->n_params + GM_TRAIN_PAD - 1) / GM_TRAIN_PAD * GM_TRAIN_PAD;
    for (int k = 0; k < own_spans(o); k++) {
        size_t b, e, mom;
        own_span(o, k, &b, &e, &mom);
        o->n_mom = mom + (e - b);
    }
    size_t g_need = 0; /* reduce-scatter target: the slices (ZeRO), or one round's largest slice */
    if (d->dp > 1) g_need = o->zero ? o->n_mom : (GM_DIST_ROUND / (size_t)d->dp / GM_TRAIN_PAD + 1) * GM_TRAIN_PAD;
    if (g_need > o->n_pad) g_need = o->n_pad;
    o->mom_m = calloc(o->n_mom ? o->n_mom : 1, sizeof(float));
    o->mom_v = calloc(o->n_mom ? o->n_mom : 1, sizeof(float));
    o->g_slice = g_need ? malloc(sizeof(float) * g_need) : NULL;
    o->decay = calloc((size_t)m->n_tensors + 1, 1);
    o->counted = calloc((size_t)m->n_tensors + 1, 1);
    o->partial = calloc(gm_adamw_norm_chunks(o->n_pad), sizeof(double));
    if (!o->mom_m || !o->mom_v || (g_need && !o->g_slice) || !o->decay || !o->counted || !o->partial) {
        gm_dist_opt_free(o);
        return gm_fail(GM_ERR_NOMEM, "cannot allocate AdamW moments for %zu parameters", o->n_mom);
    }
    for (int i = 0; i < m->n_tensors; i++) {
        o->decay[i] = (unsigned char)gm_adamw_tensor_decays(p, &m->tensors[i]);
        /* a tensor every model rank holds whole has the same gradient on all of them: count it once */
        o->counted[i] = d->tp_rank == 0 || m->tensors[i].numel != m->full_tensors[i].numel;
    }
    *out = o;
    return GM_OK;
}

void gm_dist_opt_free(gm_dist_opt *o) {
    if (!o) return;
    free(o->mom_m);
    free(o->mom_v);
    free(o->g_slice);
    free(o->decay);
    free(o->counted);
    free(o->partial);
    free(o);
}

/* MQA's KV projections under model parallelism: every model rank holds them whole, but each one's gradient
 * covers only that rank's query heads. Adjacent tensors (k then v) go in one sum. */
static void sum_partial_kv(gm_dist_opt *o) {
    gm_train_model *m = o->m;
    if (o->d->tp == 1) return;
    for (int i = 0; i < m->n_tensors; i++) {
        const gm_train_tensor *t = &m->tensors[i];
        if (!((t->kind == GM_TT_K || t->kind == GM_TT_V) && t->numel == m->full_tensors[i].numel)) continue;
        size_t off = t->offset, n = t->numel;
        while (i + 1 < m->n_tensors && m->tensors[i + 1].kind == GM_TT_V && m->tensors[i + 1].offset == off + n &&
               m->tensors[i + 1].numel == m->full_tensors[i + 1].numel)
            n += m->tensors[++i].numel;
        tp_sum(o->d, m->grads + off, n);
    }
}

/* Data-parallel gradient sum: each rank gets the sum of its slices (ZeRO), or everyone gets all of it. */
static void sum_grads_dp(gm_dist_opt *o) {
    gm_dist *d = o->d;
    if (d->dp == 1) return;
#ifdef GM_HAVE_MPI
    size_t mom = 0;
    for (int k = 0; k < n_rounds(o->n_pad); k++) {
        size_t base, len;
        round_at(o->n_pad, k, &base, &len);
        split_blocks(len, d->dp, d->cnts, d->displs);
        float *dst = o->zero ? o->g_slice + mom : o->g_slice;
        MPI_QUIET(MPI_Reduce_scatter(o->m->grads + base, dst, d->cnts, MPI_FLOAT, MPI_SUM, d->dp_comm));
        if (o->zero) mom += (size_t)d->cnts[d->dp_rank];
        else
            MPI_QUIET(MPI_Allgatherv(dst, d->cnts[d->dp_rank], MPI_FLOAT, o->m->grads + base, d->cnts, d->displs,
                                     MPI_FLOAT, d->dp_comm));
    }
#endif
}

/* ZeRO: every data rank's updated slices to all of them. */
static void gather_params_dp(gm_dist_opt *o) {
    gm_dist *d = o->d;
    if (d->dp == 1 || !o->zero) return;
#ifdef GM_HAVE_MPI
    for (int k = 0; k < n_rounds(o->n_pad); k++) {
        size_t base, len;
        round_at(o->n_pad, k, &base, &len);
        split_blocks(len, d->dp, d->cnts, d->displs);
        MPI_QUIET(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, o->m->params + base, d->cnts, d->displs,
                                 MPI_FLOAT, d->dp_comm));
    }
#endif
}

/* Σ (scale·g)² over the counted tensors of this rank's spans: counted runs that are contiguous in memory
 * are summed as one range, so a 1 × 1 mesh sums exactly as gm_adamw_step does. */
static double local_sumsq(gm_dist_opt *o, float scale) {
    gm_train_model *m = o->m;
    double ss = 0;
    const float *run = NULL;
    size_t run_len = 0;
    for (int k = 0; k < own_spans(o); k++) {
        size_t b, e, mom;
        own_span(o, k, &b, &e, &mom);
        const float *g = span_grad(o, b, mom);
        for (int i = 0; i < m->n_tensors; i++) {
            const gm_train_tensor *t = &m->tensors[i];
            size_t t0 = t->offset > b ? t->offset : b, t1 = t->offset + t->numel < e ? t->offset + t->numel : e;
            if (t0 >= t1 || !o->counted[i]) continue;
            const float *p = g + (t0 - b);
            if (run && run + run_len == p) {
                run_len += t1 - t0;
                continue;
            }
            if (run) ss += gm_adamw_sumsq(run, run_len, scale, o->partial, m->pool);
            run = p, run_len = t1 - t0;
        }
    }
    if (run) ss += gm_adamw_sumsq(run, run_len, scale, o->partial, m->pool);
    return ss;
}

/* Index of the first tensor with a non-finite gradient in this rank's spans, or n_tensors. */
static int first_nonfinite(gm_dist_opt *o) {
    gm_train_model *m = o->m;
    int first = m->n_tensors;
    for (int k = 0; k < own_spans(o); k++) {
        size_t b, e, mom;
        own_span(o, k, &b, &e, &mom);
        const float *g = span_grad(o, b, mom);
        for (int i = 0; i < m->n_tensors && i < first; i++) {
            const gm_train_tensor *t = &m->tensors[i];
            size_t t0 = t->offset > b ? t->offset : b, t1 = t->offset + t->numel < e ? t->offset + t->numel : e;
            for (size_t j = t0; j < t1; j++)
                if (!isfinite(g[j - b])) {
                    first = i;
                    break;
                }
        }
    }
    return first;
}

int gm_dist_opt_step(gm_dist_opt *o, gm_train_model *m, float lr, float grad_scale, float loss, gm_step_info *info) {
    gm_step_info local;
    if (!info) info = &local;
    /* the loss is the same on every rank, so every rank skips here or none does */
    if (!isfinite(loss)) return gm_adamw_skip_loss(info, o->t, lr, loss);
    sum_partial_kv(o);
    sum_grads_dp(o);
    /* the data ranks' gradients are each of a mean loss: their mean is the global batch's */
    float scale = grad_scale / (float)o->d->dp;
    double ss = sum_double(o->d, o->zero ? GROUP_WORLD : GROUP_TP, local_sumsq(o, scale));
    double norm = sqrt(ss);
    if (!isfinite(norm)) {
        int first = min_int_world(o->d, first_nonfinite(o));
        return gm_adamw_skip_grad(info, o->t, lr, norm, first < m->n_tensors ? m->tensors[first].name : "?", loss);
    }
    memset(info, 0, sizeof *info);
    info->lr = lr;
    info->grad_norm = norm;
    info->clip_coef = gm_adamw_clip_coef(&o->p, norm);
    o->t++;
    for (int k = 0; k < own_spans(o); k++) {
        size_t b, e, mom;
        own_span(o, k, &b, &e, &mom);
        if (e > o->n) e = o->n > b ? o->n : b; /* the padding past the last tensor stays zero */
        gm_adamw_span sp = {m->tensors, m->n_tensors, o->decay, b, e, m->params + b, o->mom_m + mom,
                            o->mom_v + mom, span_grad(o, b, mom)};
        gm_adamw_update(&o->p, &sp, lr, scale * info->clip_coef, o->t, m->pool);
    }
    gather_params_dp(o);
    info->result = GM_STEP_TAKEN;
    return GM_STEP_TAKEN;
}

size_t gm_dist_opt_state_bytes(const gm_dist_opt *o) { return 2 * sizeof(float) * o->n_mom; }
int gm_dist_opt_steps(const gm_dist_opt *o) { return o->t; }

/* One moment buffer in the full layout: the data ranks' slices all-gathered into the shard's layout, then
 * the model ranks' shards assembled. */
static gm_status export_moment(gm_dist_opt *o, const float *mom, float *full) {
    gm_dist *d = o->d;
    if (!(o->zero && d->dp > 1)) return assemble_full(d, o->m, mom, full);
#ifndef GM_HAVE_MPI
    return gm_fail(GM_ERR_UNSUPPORTED, "data parallelism needs a build with MPI");
#else
    float *shard = malloc(sizeof(float) * o->n_pad);
    if (!shard) return gm_fail(GM_ERR_NOMEM, "cannot allocate %zu floats to gather the optimizer state", o->n_pad);
    size_t at = 0;
    for (int k = 0; k < n_rounds(o->n_pad); k++) {
        size_t base, len;
        round_at(o->n_pad, k, &base, &len);
        split_blocks(len, d->dp, d->cnts, d->displs);
        MPI_QUIET(MPI_Allgatherv(mom + at, d->cnts[d->dp_rank], MPI_FLOAT, shard + base, d->cnts, d->displs,
                                 MPI_FLOAT, d->dp_comm));
        at += (size_t)d->cnts[d->dp_rank];
    }
    gm_status st = assemble_full(d, o->m, shard, full);
    free(shard);
    return st;
#endif
}

gm_status gm_dist_opt_export(gm_dist_opt *o, float *m_full, float *v_full, int *steps) {
    gm_status st = export_moment(o, o->mom_m, m_full);
    if (!st) st = export_moment(o, o->mom_v, v_full);
    *steps = o->t;
    return st;
}

/* This rank's moments from a full-layout buffer: the shard's part, then its slices. */
static gm_status import_moment(gm_dist_opt *o, const float *full, float *mom) {
    gm_train_model *m = o->m;
    float *shard = calloc(o->n_pad, sizeof(float));
    if (!shard) return gm_fail(GM_ERR_NOMEM, "cannot allocate %zu floats to restore the optimizer state", o->n_pad);
    for (int i = 0; i < m->n_tensors; i++) gm_train_shard_copy(m, i, (float *)full, shard, 1);
    for (int k = 0; k < own_spans(o); k++) {
        size_t b, e, at;
        own_span(o, k, &b, &e, &at);
        memcpy(mom + at, shard + b, sizeof(float) * (e - b));
    }
    free(shard);
    return GM_OK;
}

gm_status gm_dist_opt_import(gm_dist_opt *o, const float *m_full, const float *v_full, int steps) {
    gm_status st = import_moment(o, m_full, o->mom_m);
    if (!st) st = import_moment(o, v_full, o->mom_v);
    o->t = steps < 0 ? 0 : steps;
    return st;
}
