/* Driver of tests/cli/test_mpi.sh: trains a tiny Gemma through train/dist.h on a fixed synthetic token
 * stream with a fixed global batch, so runs on any mesh (mpirun -np N, --tp M) can be compared:
 *
 *   step S loss L norm G          (rank 0, every step: the global mean loss, the pre-clip gradient norm)
 *   rank R dp i/n tp j/m opt_bytes B params P   (every rank: its optimizer state and parameter count)
 *   params_consistent 1           (rank 0: every rank assembles bitwise the same full parameters)
 *   logp_sum X hidden_sum Y probe_norm Z weighted_norm W   (with --hooks: the alignment hooks under the mesh)
 *   tokens_per_s T                (rank 0, with --bench: global tokens per second over the timed steps)
 *
 * --out FILE: rank 0 writes the final parameters in the full layout (raw f32); --ref FILE: rank 0 compares
 * them with such a file and prints "params_max_diff D max_abs M" (the largest |Δ| and the largest |w|).
 * --reload-at S: after step S every rank gathers the parameters and the optimizer moments to the full
 * layout, frees its model and optimizer, builds new ones from those buffers and goes on: the losses must not
 * change at all. Flags: --tp M, --zero 0|1, --steps N, --kv K (KV heads of 4), --accum A, --batch GLOBAL,
 * --seq T, --threads N, --hooks, --bench (a ~3.5M-parameter config: d 256, 4 layers, vocab 4096). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gemma.h"
#include "train/adamw.h"
#include "train/dist.h"
#include "train/model_train.h"

typedef struct {
    int tp, zero, steps, kv, accum, batch, seq, threads, reload_at, hooks, bench;
    const char *out, *ref;
} args_t;

static gm_dist *g_dist;

static void die(const char *what) {
    fprintf(stderr, "mpi_train_check: %s: %s\n", what, gm_last_error());
    gm_dist_abort(g_dist, 1);
}

static gm_config make_config(const args_t *a) {
    gm_config c;
    memset(&c, 0, sizeof c);
    int big = a->bench;
    c.family = 1, c.vocab_size = big ? 4096 : 256, c.hidden_size = big ? 256 : 64, c.n_layers = big ? 4 : 2;
    c.n_heads = 4, c.n_kv_heads = a->kv, c.head_dim = big ? 64 : 16, c.ffn_size = big ? 1024 : 128;
    c.max_pos = 256, c.rms_eps = 1e-6f, c.rope_theta = 10000, c.rope_local_theta = 10000, c.rope_scale = 1;
    c.query_scale = 1.0f / sqrtf((float)c.head_dim), c.embed_scale = sqrtf((float)c.hidden_size);
    c.bos_id = 2, c.eos_id = 1, c.pad_id = 0;
    for (int l = 0; l < c.n_layers; l++) c.layer_global[l] = 1;
    return c;
}

/* Token t of global sequence i at step s: a noisy affine walk, learnable but not trivial. */
static int32_t token(int s, int i, int t, int V) {
    uint64_t h = (uint64_t)s * 0x9E3779B97F4A7C15ull ^ (uint64_t)i * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 29;
    int x = (int)(h % (uint64_t)(V - 3)) + 3;
    for (int k = 0; k < t; k++) {
        h = h * 6364136223846793005ull + 1442695040888963407ull;
        x = 3 + (x * 5 + 7 + (int)((h >> 60) & 3)) % (V - 3);
    }
    return x;
}

static uint32_t fnv(const void *p, size_t n) {
    const unsigned char *b = p;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 16777619u;
    return h;
}

static void parse(int argc, char **argv, args_t *a) {
    *a = (args_t){1, 1, 20, 1, 1, 8, 16, 1, -1, 0, 0, NULL, NULL};
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int *dst = !strcmp(f, "--tp")       ? &a->tp
                   : !strcmp(f, "--zero")    ? &a->zero
                   : !strcmp(f, "--steps")   ? &a->steps
                   : !strcmp(f, "--kv")      ? &a->kv
                   : !strcmp(f, "--accum")   ? &a->accum
                   : !strcmp(f, "--batch")   ? &a->batch
                   : !strcmp(f, "--seq")     ? &a->seq
                   : !strcmp(f, "--threads") ? &a->threads
                   : !strcmp(f, "--reload-at") ? &a->reload_at
                                             : NULL;
        if (!strcmp(f, "--hooks")) a->hooks = 1;
        else if (!strcmp(f, "--bench")) a->bench = 1;
        else if (!strcmp(f, "--out") && v) a->out = argv[++i];
        else if (!strcmp(f, "--ref") && v) a->ref = argv[++i];
        else if (dst && v) *dst = atoi(argv[++i]);
        else {
            fprintf(stderr, "mpi_train_check: unknown or incomplete flag %s\n", f);
            exit(2);
        }
    }
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    args_t a;
    parse(argc, argv, &a);
    gm_dist *d = NULL;
    if (gm_dist_init(&argc, &argv, a.tp, &d) != GM_OK) {
        fprintf(stderr, "mpi_train_check: %s\n", gm_last_error());
        return 1;
    }
    g_dist = d;
    int dp = gm_dist_dp_size(d), dpr = gm_dist_dp_rank(d), rank = gm_dist_rank(d);
    if (a.batch % (dp * a.accum)) {
        fprintf(stderr, "mpi_train_check: batch %d is not divisible by %d data ranks x %d micro-batches\n", a.batch,
                dp, a.accum);
        gm_dist_abort(d, 2);
    }
    int Bm = a.batch / dp / a.accum, T = a.seq; /* sequences per micro-batch */
    gm_config c = make_config(&a);
    gm_train_opts o = gm_train_opts_default(Bm, T, a.threads);
    gm_adamw_params p = gm_adamw_params_default();
    p.weight_decay = 0.1f, p.clip = 1.0f;
    gm_lr_schedule sched = {a.bench ? 1e-3f : 1e-2f, 1e-3f, 5, a.steps, GM_LR_COSINE};

    gm_train_model *m = NULL;
    gm_dist_opt *opt = NULL;
    if (gm_dist_model_new(d, &c, &o, &m)) die("model");
    gm_train_init(m, 1234, GM_TRAIN_INIT_STD);
    if (gm_dist_opt_new(d, &p, m, a.zero, &opt)) die("optimizer");
    size_t n_full = gm_dist_full_params(d, m);
    float *full = malloc(sizeof(float) * n_full), *mf = malloc(sizeof(float) * n_full);
    float *vf = malloc(sizeof(float) * n_full);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)Bm * (T + 1));
    if (!full || !mf || !vf || !tok) {
        fprintf(stderr, "mpi_train_check: out of memory\n");
        gm_dist_abort(d, 1);
    }
    printf("rank %d dp %d/%d tp %d/%d opt_bytes %zu params %zu\n", rank, dpr, dp, gm_dist_tp_rank(d),
           gm_dist_tp_size(d), gm_dist_opt_state_bytes(opt), m->n_params);
    fflush(stdout);
    gm_dist_barrier(d);

    double t0 = 0;
    int timed_from = a.bench ? 1 : 0; /* the first step warms the caches and the pool */
    for (int s = 0; s < a.steps; s++) {
        if (s == timed_from) t0 = now();
        gm_train_zero_grad(m);
        double loss_sum = 0;
        for (int mb = 0; mb < a.accum; mb++) {
            int first = dpr * (a.batch / dp) + mb * Bm; /* global index of the micro-batch's first sequence */
            for (int b = 0; b < Bm; b++)
                for (int t = 0; t <= T; t++) tok[b * (T + 1) + t] = token(s, first + b, t, c.vocab_size);
            float loss = 0;
            if (gm_train_forward_backward(m, tok, Bm, T, &loss)) die("forward/backward");
            loss_sum += loss;
        }
        float loss = (float)(gm_dist_sum_dp(d, loss_sum / a.accum) / dp);
        gm_step_info info;
        int r = gm_dist_opt_step(opt, m, gm_lr_at(&sched, s), 1.0f / (float)a.accum, loss, &info);
        if (rank == 0) {
            printf("step %d loss %.9g norm %.9g%s%s\n", s + 1, (double)loss, info.grad_norm,
                   r == GM_STEP_TAKEN ? "" : " ", r == GM_STEP_TAKEN ? "" : info.message);
            fflush(stdout);
        }
        if (s + 1 == a.reload_at) { /* a checkpoint round trip through the full layout */
            int steps = 0;
            if (gm_dist_model_gather(d, m, full) || gm_dist_opt_export(opt, mf, vf, &steps)) die("export");
            gm_dist_opt_free(opt);
            gm_train_model_free(m);
            opt = NULL, m = NULL;
            if (gm_dist_model_new(d, &c, &o, &m) || gm_dist_model_scatter(d, m, full)) die("reload model");
            if (gm_dist_opt_new(d, &p, m, a.zero, &opt) || gm_dist_opt_import(opt, mf, vf, steps)) die("reload opt");
        }
    }
    if (a.bench && rank == 0 && a.steps > timed_from) {
        double dt = now() - t0;
        printf("tokens_per_s %.1f (%d steps of %d x %d tokens in %.3f s)\n",
               (double)(a.steps - timed_from) * a.batch * T / dt, a.steps - timed_from, a.batch, T, dt);
    }

    if (gm_dist_model_gather(d, m, full)) die("gather");
    uint32_t h = fnv(full, sizeof(float) * n_full) & 0x7fffffffu;
    int hi = gm_dist_max_int(d, (int)h), lo = -gm_dist_max_int(d, -(int)h);
    if (rank == 0) printf("params_consistent %d\n", hi == lo);
    if (rank == 0 && a.out) {
        FILE *f = fopen(a.out, "wb");
        if (!f || fwrite(full, sizeof(float), n_full, f) != n_full || fclose(f)) {
            fprintf(stderr, "mpi_train_check: cannot write %s\n", a.out);
            gm_dist_abort(d, 1);
        }
    }
    if (rank == 0 && a.ref) { /* mf is free now: it holds the reference */
        FILE *f = fopen(a.ref, "rb");
        if (!f || fread(mf, sizeof(float), n_full, f) != n_full || fgetc(f) != EOF) {
            fprintf(stderr, "mpi_train_check: %s is not %zu floats\n", a.ref, n_full);
            gm_dist_abort(d, 1);
        }
        fclose(f);
        double diff = 0, big = 0;
        for (size_t i = 0; i < n_full; i++) {
            double e = fabs((double)full[i] - mf[i]);
            diff = e > diff ? e : diff;
            big = fabs(mf[i]) > big ? fabs(mf[i]) : big;
        }
        printf("params_max_diff %.9g max_abs %.9g\n", diff, big);
    }

    if (a.hooks) { /* one sequence, on every data rank, so the data-parallel mean is that sequence's */
        int Bh = 1, N = T, dm = c.hidden_size;
        for (int t = 0; t <= T; t++) tok[t] = token(1000, 0, t, c.vocab_size);
        int32_t *in = malloc(sizeof(int32_t) * N), *tg = malloc(sizeof(int32_t) * N);
        float *logp = malloc(sizeof(float) * N), *w = malloc(sizeof(float) * N);
        float *dh = malloc(sizeof(float) * (size_t)N * dm);
        if (!in || !tg || !logp || !w || !dh) die("hooks");
        for (int n = 0; n < N; n++) {
            in[n] = tok[n], tg[n] = n % 4 == 0 ? -1 : tok[n + 1];
            w[n] = (float)sin(0.3 * n) / (float)N;
        }
        for (int n = 0; n < N; n++)
            for (int i = 0; i < dm; i++) dh[(size_t)n * dm + i] = (float)cos(0.1 * i + 0.01 * n);
        if (gm_train_logprobs(m, in, tg, Bh, T, logp)) die("logprobs");
        double lsum = 0, hsum = 0;
        for (int n = 0; n < N; n++) lsum += logp[n];
        const float *hid = NULL;
        if (gm_train_hidden(m, in, Bh, T, &hid)) die("hidden");
        for (size_t i = 0; i < (size_t)N * dm; i++) hsum += hid[i];
        gm_step_info i1, i2;
        gm_train_zero_grad(m);
        if (gm_train_hidden_backward(m, in, Bh, T, dh)) die("hidden backward");
        gm_dist_opt_step(opt, m, 0.0f, 1.0f, 0.0f, &i1); /* lr 0: only the global gradient norm matters */
        gm_train_zero_grad(m);
        float wl = 0;
        if (gm_train_forward_backward_weighted(m, in, tg, w, Bh, T, NULL, &wl)) die("weighted");
        gm_dist_opt_step(opt, m, 0.0f, 1.0f, wl, &i2);
        if (rank == 0)
            printf("logp_sum %.9g hidden_sum %.9g probe_norm %.9g weighted_norm %.9g\n", lsum, hsum, i1.grad_norm,
                   i2.grad_norm);
        free(in), free(tg), free(logp), free(w), free(dh);
    }
    fflush(stdout);
    free(full), free(mf), free(vf), free(tok);
    gm_dist_opt_free(opt);
    gm_train_model_free(m);
    gm_dist_finalize(d);
    return 0;
}
