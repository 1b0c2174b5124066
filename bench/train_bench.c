/* Training-step benchmark: full steps (zero_grad + forward/backward + AdamW with clipping) of a Gemma 1
 * model from Gemma's init on deterministic random tokens, f32; tokens/s is B·T over the median step
 * after the warm-up steps. Goes through train/dist.h, so under mpirun in an MPI build the global batch is
 * split over the data ranks; a plain build is the single-process trainer (gm_train_forward_backward +
 * gm_adamw_step). --dump DIR writes the initial weights, the tokens and the per-step losses for
 * bench/train_torch.py --check, which replays the same steps in PyTorch.
 * Usage: train_bench [-d 256 -l 8 --heads 4 --kv-heads 1 --head-dim 64 --ffn 1024 --vocab 8192
 *                     -s 128 -b 4 -t 1 -n 5 -w 1] [--json] [--dump DIR] (all flags: --help). */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "gemma.h"
#include "train/adamw.h"
#include "train/dist.h"
#include "train/model_train.h"

typedef struct {
    int d, layers, heads, kv_heads, head_dim, ffn, vocab, seq, batch, threads, steps, warmup, recompute, zero, tp;
    int json;
    float lr;
    uint64_t seed;
    const char *dump;
} bench_args;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts x[0..n). */
static double median(double *x, int n) {
    qsort(x, (size_t)n, sizeof *x, cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

static double peak_rss_mib(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (double)ru.ru_maxrss / 1024.0; /* Linux: KiB */
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: train_bench [options]\n"
            "  -d, --dim N        hidden size (256)\n"
            "  -l, --layers N     layers (8)\n"
            "      --heads N      query heads (4)\n"
            "      --kv-heads N   key/value heads (1 = MQA)\n"
            "      --head-dim N   head dimension (64)\n"
            "      --ffn N        GeGLU width (1024)\n"
            "      --vocab N      vocabulary (8192)\n"
            "  -s, --seq N        tokens per sequence T (128)\n"
            "  -b, --batch N      sequences per step B, split over the data ranks under MPI (4)\n"
            "  -t, --threads N    threads per process (1)\n"
            "  -n, --steps N      timed steps (5)\n"
            "  -w, --warmup N     untimed steps first (1)\n"
            "      --lr X         constant learning rate (3e-4)\n"
            "      --seed N       init and token seed (1)\n"
            "      --recompute    recompute normed inputs and GeGLU in the backward\n"
            "      --zero         ZeRO-shard the optimizer state over data ranks (MPI builds)\n"
            "      --tp N         model-parallel ranks (MPI builds; the others split the batch) (1)\n"
            "      --json         one JSON object on stdout instead of text\n"
            "      --dump DIR     write DIR/{meta.json,params.f32,tokens.i32} for train_torch.py --check\n");
}

static int parse_int(const char *flag, const char *v, int lo, int *out) {
    char *end = NULL;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || errno || *end || x < lo || x > 1 << 30) {
        fprintf(stderr, "train_bench: %s needs an integer >= %d (got %s)\n", flag, lo, v ? v : "nothing");
        return 0;
    }
    *out = (int)x;
    return 1;
}

static int parse_args(int argc, char **argv, bench_args *a) {
    *a = (bench_args){256, 8, 4, 1, 64, 1024, 8192, 128, 4, 1, 5, 1, 0, 0, 1, 0, 3e-4f, 1, NULL};
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        struct { const char *s, *l; int *dst, lo; } ints[] = {
            {"-d", "--dim", &a->d, 2},       {"-l", "--layers", &a->layers, 1},   {NULL, "--heads", &a->heads, 1},
            {NULL, "--kv-heads", &a->kv_heads, 1}, {NULL, "--head-dim", &a->head_dim, 2},
            {NULL, "--ffn", &a->ffn, 1},     {NULL, "--vocab", &a->vocab, 4},     {"-s", "--seq", &a->seq, 1},
            {"-b", "--batch", &a->batch, 1}, {"-t", "--threads", &a->threads, 1}, {"-n", "--steps", &a->steps, 1},
            {"-w", "--warmup", &a->warmup, 0}, {NULL, "--tp", &a->tp, 1},
        };
        int done = 0;
        for (size_t k = 0; k < sizeof ints / sizeof *ints && !done; k++)
            if ((ints[k].s && !strcmp(f, ints[k].s)) || !strcmp(f, ints[k].l)) {
                if (!parse_int(f, v, ints[k].lo, ints[k].dst)) return 0;
                i++, done = 1;
            }
        if (done) continue;
        if (!strcmp(f, "--json")) a->json = 1;
        else if (!strcmp(f, "--recompute")) a->recompute = 1;
        else if (!strcmp(f, "--zero")) a->zero = 1;
        else if (!strcmp(f, "--lr") && v) a->lr = strtof(v, NULL), i++;
        else if (!strcmp(f, "--seed") && v) a->seed = strtoull(v, NULL, 10), i++;
        else if (!strcmp(f, "--dump") && v) a->dump = v, i++;
        else if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            usage(stdout);
            exit(0);
        } else {
            fprintf(stderr, "train_bench: unknown or incomplete option %s\n", f);
            usage(stderr);
            return 0;
        }
    }
    if (a->heads % a->kv_heads || a->head_dim % 2) {
        fprintf(stderr, "train_bench: heads must be a multiple of kv-heads and head-dim even\n");
        return 0;
    }
    return 1;
}

static gm_config make_config(const bench_args *a) {
    gm_config c;
    memset(&c, 0, sizeof c);
    c.family = 1, c.vocab_size = a->vocab, c.hidden_size = a->d, c.n_layers = a->layers;
    c.n_heads = a->heads, c.n_kv_heads = a->kv_heads, c.head_dim = a->head_dim, c.ffn_size = a->ffn;
    c.max_pos = a->seq, c.rms_eps = 1e-6f, c.rope_theta = 10000, c.rope_local_theta = 10000, c.rope_scale = 1;
    c.query_scale = 1.0f / sqrtf((float)a->head_dim);
    c.embed_scale = sqrtf((float)a->d); /* a float32 config: √d unrounded, as train_ref.py */
    c.bos_id = 2, c.eos_id = 1, c.pad_id = 0;
    for (int l = 0; l < c.n_layers && l < GM_MAX_LAYERS; l++) c.layer_global[l] = 1;
    return c;
}

/* Step s's global batch [B][T+1]: <bos>, then ids uniform in [3, vocab), from splitmix64(seed, s). */
static void make_tokens(int32_t *tok, int B, int T, int vocab, uint64_t seed, int step) {
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + (uint64_t)step * 0xD1B54A32D192ED03ull + 1;
    for (int b = 0; b < B; b++)
        for (int t = 0; t <= T; t++) {
            x += 0x9E3779B97F4A7C15ull;
            uint64_t z = x;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
            z ^= z >> 31;
            tok[(size_t)b * (T + 1) + t] = t == 0 ? 2 : 3 + (int32_t)(z % (uint64_t)(vocab - 3));
        }
}

static int write_file(const char *dir, const char *name, const void *buf, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "train_bench: cannot write %s: %s\n", path, strerror(errno));
        if (f) fclose(f);
        return 0;
    }
    return 1;
}

/* meta.json: the config, the step's settings, the tensor table of params.f32 and the losses of every step
 * (warm-up included), for train_torch.py --check. */
static int write_meta(const char *dir, const bench_args *a, const gm_train_model *m, const gm_adamw_params *p,
                      const float *losses, const double *norms, int n_steps) {
    char path[4096];
    snprintf(path, sizeof path, "%s/meta.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "train_bench: cannot write %s: %s\n", path, strerror(errno));
        return 0;
    }
    fprintf(f, "{\"hidden_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
               "\"num_key_value_heads\": %d, \"head_dim\": %d, \"intermediate_size\": %d, \"vocab_size\": %d,\n",
            a->d, a->layers, a->heads, a->kv_heads, a->head_dim, a->ffn, a->vocab);
    fprintf(f, " \"B\": %d, \"T\": %d, \"steps\": %d, \"lr\": %.9g, \"beta1\": %.9g, \"beta2\": %.9g, \"eps\": %.9g, "
               "\"weight_decay\": %.9g, \"clip\": %.9g, \"seed\": %llu, \"n_params\": %zu,\n",
            a->batch, a->seq, n_steps, (double)a->lr, (double)p->beta1, (double)p->beta2, (double)p->eps,
            (double)p->weight_decay, (double)p->clip, (unsigned long long)a->seed, m->n_params);
    fprintf(f, " \"tensors\": [");
    for (int i = 0; i < m->n_tensors; i++) {
        const gm_train_tensor *t = &m->tensors[i];
        fprintf(f, "%s\n  {\"name\": \"%s\", \"shape\": [%lld", i ? "," : "", t->name, (long long)t->shape[0]);
        if (t->ndim == 2) fprintf(f, ", %lld", (long long)t->shape[1]);
        fprintf(f, "], \"offset\": %zu, \"numel\": %zu}", t->offset, t->numel);
    }
    fprintf(f, "],\n \"losses\": [");
    for (int s = 0; s < n_steps; s++) fprintf(f, "%s%.9g", s ? ", " : "", (double)losses[s]);
    fprintf(f, "],\n \"grad_norms\": [");
    for (int s = 0; s < n_steps; s++) fprintf(f, "%s%.9g", s ? ", " : "", norms[s]);
    fprintf(f, "]}\n");
    if (fclose(f) != 0) {
        fprintf(stderr, "train_bench: cannot write %s\n", path);
        return 0;
    }
    return 1;
}

int main(int argc, char **argv) {
    bench_args a;
    if (!parse_args(argc, argv, &a)) return 2;
    gm_dist *dist = NULL;
    if (gm_dist_init(&argc, &argv, a.tp, &dist) != GM_OK) {
        fprintf(stderr, "train_bench: %s\n", gm_last_error());
        return 1;
    }
    int rank = gm_dist_rank(dist), dp = gm_dist_dp_size(dist), dpr = gm_dist_dp_rank(dist);
    if (a.batch % dp || (a.dump && gm_dist_world(dist) != 1)) {
        if (rank == 0)
            fprintf(stderr, "train_bench: %s\n", a.batch % dp ? "the batch does not split over the data ranks"
                                                              : "--dump needs a single process");
        gm_dist_finalize(dist);
        return 2;
    }
    const int B = a.batch, T = a.seq, Bl = B / dp, n_steps = a.warmup + a.steps;
    gm_config cfg = make_config(&a);
    gm_train_opts o = gm_train_opts_default(Bl, T, a.threads);
    o.recompute = a.recompute;
    gm_train_model *m = NULL;
    gm_dist_opt *opt = NULL;
    gm_adamw_params p = gm_adamw_params_default();
    int32_t *tok = malloc(sizeof *tok * (size_t)B * (T + 1));
    int32_t *all_tok = a.dump ? malloc(sizeof *all_tok * (size_t)n_steps * B * (T + 1)) : NULL;
    float *losses = malloc(sizeof *losses * (size_t)n_steps);
    double *norms = malloc(sizeof *norms * (size_t)n_steps), *times = malloc(sizeof *times * (size_t)n_steps);
    double *t_fb = malloc(sizeof *t_fb * (size_t)n_steps), *t_opt = malloc(sizeof *t_opt * (size_t)n_steps);
    int rc = 1;
    if (!tok || !losses || !norms || !times || !t_fb || !t_opt || (a.dump && !all_tok)) {
        fprintf(stderr, "train_bench: out of memory\n");
        goto done;
    }
    if (gm_dist_model_new(dist, &cfg, &o, &m) != GM_OK || gm_dist_opt_new(dist, &p, m, a.zero, &opt) != GM_OK) {
        fprintf(stderr, "train_bench: %s\n", gm_last_error());
        if (gm_dist_world(dist) > 1) gm_dist_abort(dist, 1); /* the other ranks would wait in a collective */
        goto done;
    }
    gm_train_init(m, a.seed, GM_TRAIN_INIT_STD); /* each rank its shard of the same full model */
    if (a.dump && rank == 0) {
        if (mkdir(a.dump, 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "train_bench: cannot create %s: %s\n", a.dump, strerror(errno));
            goto done;
        }
        if (!write_file(a.dump, "params.f32", m->params, sizeof(float) * m->n_params)) goto done;
    }
    for (int s = 0; s < n_steps; s++) {
        make_tokens(tok, B, T, a.vocab, a.seed, s);
        if (all_tok) memcpy(all_tok + (size_t)s * B * (T + 1), tok, sizeof *tok * (size_t)B * (T + 1));
        gm_dist_barrier(dist);
        double t0 = now_s();
        float loss = 0;
        gm_step_info info;
        gm_train_zero_grad(m);
        double t1 = now_s();
        if (gm_train_forward_backward(m, tok + (size_t)dpr * Bl * (T + 1), Bl, T, &loss) != GM_OK) {
            fprintf(stderr, "train_bench: %s\n", gm_last_error());
            gm_dist_abort(dist, 1);
        }
        loss = (float)(gm_dist_sum_dp(dist, loss) / dp);
        double t2 = now_s();
        int r = gm_dist_opt_step(opt, m, a.lr, 1.0f, loss, &info);
        double t3 = now_s();
        times[s] = t3 - t0, t_fb[s] = t2 - t1, t_opt[s] = t3 - t2;
        losses[s] = loss, norms[s] = info.grad_norm;
        if (r != GM_STEP_TAKEN && rank == 0) fprintf(stderr, "train_bench: %s\n", info.message);
        if (!a.json && rank == 0)
            fprintf(stderr, "step %d%s: loss %.6f, grad norm %.4f, %.3f s (forward+backward %.3f, AdamW %.3f)\n", s,
                    s < a.warmup ? " (warm-up)" : "", (double)loss, info.grad_norm, times[s], t_fb[s], t_opt[s]);
    }
    if (a.dump && rank == 0) {
        if (!write_file(a.dump, "tokens.i32", all_tok, sizeof *all_tok * (size_t)n_steps * B * (T + 1)) ||
            !write_meta(a.dump, &a, m, &p, losses, norms, n_steps))
            goto done;
    }
    {
        double *timed = times + a.warmup, med = median(timed, a.steps);
        double fb = median(t_fb + a.warmup, a.steps), op = median(t_opt + a.warmup, a.steps);
        double tok_s = (double)B * T / med, rss = peak_rss_mib();
        int rss_max = gm_dist_max_int(dist, (int)(rss + 0.5));
        size_t full = gm_dist_full_params(dist, m); /* the whole model's, also under --tp */
        if (rank == 0 && a.json) {
            printf("{\"impl\": \"gemma.c\", \"d\": %d, \"layers\": %d, \"heads\": %d, \"kv_heads\": %d, "
                   "\"head_dim\": %d, \"ffn\": %d, \"vocab\": %d, \"seq\": %d, \"batch\": %d, \"threads\": %d, "
                   "\"ranks\": %d, \"mpi\": %d, \"params\": %zu, \"steps\": %d, \"warmup\": %d, "
                   "\"step_s_median\": %.6f, \"step_s_min\": %.6f, \"step_s_max\": %.6f, \"fwd_bwd_s_median\": %.6f, "
                   "\"adamw_s_median\": %.6f, \"tok_s\": %.2f, \"first_loss\": %.7f, "
                   "\"peak_rss_mib\": %.1f, \"peak_rss_mib_max_rank\": %d}\n",
                   a.d, a.layers, a.heads, a.kv_heads, a.head_dim, a.ffn, a.vocab, T, B, a.threads,
                   gm_dist_world(dist), gm_dist_have_mpi(), full, a.steps, a.warmup, med, timed[0],
                   timed[a.steps - 1], fb, op, tok_s, (double)losses[0], rss, rss_max);
        } else if (rank == 0) {
            printf("gemma.c train step: %.2fM params, B %d x T %d, %d thread(s) x %d rank(s): %.1f tok/s "
                   "(median of %d steps, %.3f s = forward+backward %.3f + AdamW %.3f + zero_grad; min %.3f max "
                   "%.3f), first loss %.6f, peak RSS %.0f MiB\n",
                   (double)full / 1e6, B, T, a.threads, gm_dist_world(dist), tok_s, a.steps, med, fb, op, timed[0],
                   timed[a.steps - 1], (double)losses[0], rss);
        }
    }
    rc = 0;
done:
    free(tok), free(all_tok), free(losses), free(norms), free(times), free(t_fb), free(t_opt);
    gm_dist_opt_free(opt);
    gm_train_model_free(m);
    gm_dist_finalize(dist);
    return rc;
}
