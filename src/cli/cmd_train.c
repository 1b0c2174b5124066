/* `gemma train`: pretraining from token shards, on one process or under mpirun (data x model ranks).
 * This file parses flags (and, on --resume, takes the unset ones from the checkpoint's run) and hands
 * them to the loop in src/train/trainer.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "cli/cli.h"
#include "model/config.h"
#include "train/checkpoint.h"
#include "train/dist.h"
#include "train/trainer.h"

static const char *HELP =
    "usage: gemma train (--config FILE | --preset NAME | --init MODEL) --data DIR --out DIR [options]\n"
    "       gemma train --out DIR --resume [CHECKPOINT]   (flags not given take the interrupted run's values)\n"
    "       mpirun -np N gemma train ... [--tp M]          (N/M data ranks x M model ranks)\n"
    "model:\n"
    "  --config FILE      a Hugging Face config.json (Gemma 1) to train from scratch\n"
    "  --preset NAME      a preset's shapes (tiny, gemma-2b, gemma-7b)\n"
    "  --init MODEL       continue from a model (HF directory or .gguf), e.g. a checkpoint of another run\n"
    "  --resume [DIR]     continue this run from OUT/latest, or from the checkpoint DIR; the losses are\n"
    "                     bitwise those of an uninterrupted run\n"
    "data:\n"
    "  --data DIR         token shards from `gemma data tokenize` (or a directory of named sources)\n"
    "  --mix SPEC         staged source mixture, e.g. 'web:0.7,books:0.3@0;web:0.4,books:0.6@8000'\n"
    "  --seq N            tokens per sequence (default 256)\n"
    "  --batch N          sequences per micro-batch per data rank (default 8)\n"
    "  --accum N          micro-batches per step, gradients accumulated (default 1)\n"
    "optimizer:\n"
    "  --steps N          optimizer steps (default 1000)\n"
    "  --lr F             peak learning rate (default 3e-4)\n"
    "  --lr-min F         final learning rate (default lr / 10)\n"
    "  --warmup N         linear warmup steps (default min(100, steps / 10))\n"
    "  --decay KIND       cosine, linear or constant after warmup (default cosine)\n"
    "  --wd F             decoupled weight decay on the projection matrices (default 0.1)\n"
    "  --clip F           global gradient-norm clip, 0 = off (default 1.0)\n"
    "  --beta1 F, --beta2 F   AdamW betas (default 0.9, 0.95); --eps F (default 1e-8)\n"
    "  --seed N           init and data order (default 1)\n"
    "  --max-skips N      consecutive non-finite steps (skipped) before stopping with an error (default 5)\n"
    "evaluation and checkpoints:\n"
    "  --eval-every N     held-out loss every N steps and at the end, 0 = only at the end (default 100)\n"
    "  --eval-batches N   micro-batches of held-out sequences per data rank (default 8)\n"
    "  --save-every N     checkpoint every N steps and at the end, 0 = only at the end (default 250)\n"
    "  --keep N           checkpoints to keep, 0 = all (default 2)\n"
    "  --out DIR          checkpoint-STEP/ directories, latest link, train_log.csv, loss.svg\n"
    "  --dtype T          weights in model.safetensors: f32 (default, = the master weights) or bf16\n"
    "  --tokenizer FILE   tokenizer copied into checkpoints (default: --init's, or the data's meta.json's)\n"
    "machine:\n"
    "  -t, --threads N    threads per rank (default: CPUs / ranks on this node)\n"
    "  --recompute        recompute activations in the backward (less memory, ~10% slower)\n"
    "  --tp M             model-parallel ranks (split heads and FFN units; needs MPI)\n"
    "  --zero 0|1         shard optimizer state over data ranks (default 1)\n"
    "  -q, --quiet        no per-step progress lines\n";

/* Flags that take a value, and the boolean ones. */
static const char *const VALUE_FLAGS[] = {
    "--config", "--preset", "--init", "--data", "--mix", "--seq", "--batch", "--accum", "--steps", "--lr",
    "--lr-min", "--warmup", "--decay", "--wd", "--clip", "--beta1", "--beta2", "--eps", "--seed", "--eval-every",
    "--eval-batches", "--save-every", "--keep", "--out", "--threads", "-t", "--tp", "--zero", "--tokenizer",
    "--max-skips", "--dtype"};

static int is_value_flag(const char *a) {
    for (size_t i = 0; i < sizeof VALUE_FLAGS / sizeof VALUE_FLAGS[0]; i++)
        if (!strcmp(a, VALUE_FLAGS[i])) return 1;
    return 0;
}

typedef struct {
    int rank0;
    int lr_min_set;
} parse_ctx;

/* One flag with its value into o; 0 = ok, else a usage error (printed on rank 0 only). */
static int apply_flag(gm_trainer_opts *o, parse_ctx *pc, const char *a, const char *v) {
    long n;
    double f;
#define INT(flag, lo, hi, field)                                                                                       \
    if (!strcmp(a, flag)) {                                                                                           \
        if (!cli_parse_int(v, lo, hi, &n)) goto bad;                                                                  \
        o->field = (int)n;                                                                                            \
        return 0;                                                                                                     \
    }
#define FLT(flag, lo, hi, field)                                                                                       \
    if (!strcmp(a, flag)) {                                                                                           \
        if (!cli_parse_float(v, &f) || !(f >= lo && f <= hi)) goto bad;                                               \
        o->field = (float)f;                                                                                          \
        return 0;                                                                                                     \
    }
    if (!strcmp(a, "--config")) o->config = v;
    else if (!strcmp(a, "--preset")) o->preset = v;
    else if (!strcmp(a, "--init")) o->init = v;
    else if (!strcmp(a, "--data")) o->data = v;
    else if (!strcmp(a, "--mix")) o->mix = v;
    else if (!strcmp(a, "--out")) o->out = v;
    else if (!strcmp(a, "--tokenizer")) o->tokenizer = v;
    else if (!strcmp(a, "--decay")) {
        if (!strcmp(v, "cosine")) o->decay = GM_LR_COSINE;
        else if (!strcmp(v, "linear")) o->decay = GM_LR_LINEAR;
        else if (!strcmp(v, "constant")) o->decay = GM_LR_CONSTANT;
        else goto bad;
    } else if (!strcmp(a, "--dtype")) {
        if (!strcmp(v, "f32")) o->save_dtype = GM_DT_F32;
        else if (!strcmp(v, "bf16")) o->save_dtype = GM_DT_BF16;
        else goto bad;
    } else if (!strcmp(a, "--seed")) {
        if (!cli_parse_int(v, 0, 0x7fffffffffffffffL, &n)) goto bad;
        o->seed = (uint64_t)n;
    } else if (!strcmp(a, "--lr-min")) {
        if (!cli_parse_float(v, &f) || !(f >= 0 && f <= 10)) goto bad;
        o->lr_min = (float)f;
        pc->lr_min_set = 1;
    } else if (!strcmp(a, "-t")) {
        return apply_flag(o, pc, "--threads", v);
    } else if (!strcmp(a, "--recompute")) { /* a value only when it comes from a checkpoint's arguments */
        o->recompute = v ? atoi(v) != 0 : 1;
    } else {
        INT("--seq", 1, 1 << 20, seq)
        INT("--batch", 1, 1 << 20, batch)
        INT("--accum", 1, 1 << 20, accum)
        INT("--steps", 1, 1 << 30, steps)
        INT("--warmup", 0, 1 << 30, warmup)
        INT("--eval-every", 0, 1 << 30, eval_every)
        INT("--eval-batches", 0, 1 << 20, eval_batches)
        INT("--save-every", 0, 1 << 30, save_every)
        INT("--keep", 0, 1 << 20, keep)
        INT("--threads", 1, 1024, threads)
        INT("--tp", 1, 1 << 16, tp)
        INT("--zero", 0, 1, zero)
        INT("--max-skips", 1, 1 << 30, max_skips)
        FLT("--lr", 0, 10, lr)
        FLT("--wd", 0, 10, adam.weight_decay)
        FLT("--clip", 0, 1e9, adam.clip)
        FLT("--beta1", 0, 0.999999, adam.beta1)
        FLT("--beta2", 0, 0.999999999, adam.beta2)
        FLT("--eps", 1e-30, 1, adam.eps)
        if (pc->rank0) cli_usage("train", "unknown option '%s'", a);
        return CLI_USAGE;
    }
    return 0;
#undef INT
#undef FLT
bad:
    if (pc->rank0) cli_usage("train", "bad value for %s: '%s'", a, v ? v : "");
    return CLI_USAGE;
}

/* --resume: the interrupted run's arguments as flags (rank 0 reads them, every rank gets the text). */
static char *saved_args(gm_dist *d, const char *resume, const char *out) {
    char *text = NULL;
    size_t len = 0;
    if (gm_dist_rank(d) == 0) {
        char *dir = NULL;
        char *sp = NULL;
        if (!gm_ckpt_resolve(resume && resume[0] ? resume : out, &dir) &&
            (sp = gm_path_join(dir, "trainer_state.json")) && gm_file_exists(sp) && gm_file_read_all(sp, &text, &len)) {
            text = NULL, len = 0;
        }
        gm_clear_error(); /* a missing or broken checkpoint is reported by the trainer, with its checks */
        free(sp);
        free(dir);
    }
    uint64_t n = len;
    gm_dist_bcast(d, &n, sizeof n);
    if (n == 0) {
        free(text);
        return NULL;
    }
    if (gm_dist_rank(d) != 0 && !(text = malloc(n + 1))) return NULL; /* the trainer fails the same way later */
    gm_dist_bcast(d, text, n);
    text[n] = 0;
    return text;
}

static int apply_saved(gm_trainer_opts *o, parse_ctx *pc, const char *state_text, char **given, int n_given,
                       char ***keep_strings, int *n_keep) {
    gm_json_doc *doc;
    if (gm_json_parse(state_text, strlen(state_text), "trainer_state.json", &doc)) {
        gm_clear_error();
        return 0;
    }
    const gm_json *args = gm_json_get(gm_json_root(doc), "args");
    int rc = 0;
    for (size_t i = 0; args && args->type == GM_JSON_OBJECT && i < args->len && !rc; i++) {
        const gm_json_member *m = &args->members[i];
        char flag[64];
        snprintf(flag, sizeof flag, "--%s", m->key);
        for (char *p = flag + 2; *p; p++)
            if (*p == '_') *p = '-';
        if (!strcmp(flag, "--dp-size") || !strcmp(flag, "--tp")) continue; /* the mesh is the command's */
        if (strcmp(flag, "--recompute") && !is_value_flag(flag)) continue;
        int seen = 0;
        for (int k = 0; k < n_given && !seen; k++) seen = !strcmp(given[k], flag);
        if (seen) continue;
        char val[64];
        const char *v = NULL;
        if (m->value.type == GM_JSON_STRING) v = m->value.str;
        else if (m->value.type == GM_JSON_NUMBER && m->value.is_int)
            snprintf(val, sizeof val, "%lld", (long long)m->value.i), v = val;
        else if (m->value.type == GM_JSON_NUMBER) snprintf(val, sizeof val, "%.9g", m->value.num), v = val;
        if (!v) continue;
        char *copy = strdup(v); /* the options point at it after doc is freed */
        char **ks = realloc(*keep_strings, sizeof *ks * (size_t)(*n_keep + 1));
        if (!copy || !ks) {
            free(copy);
            if (ks) *keep_strings = ks;
            break;
        }
        *keep_strings = ks;
        ks[(*n_keep)++] = copy;
        rc = apply_flag(o, pc, flag, copy);
        if (!strcmp(flag, "--lr-min")) pc->lr_min_set = 1;
    }
    gm_json_free(doc);
    return rc;
}


int cmd_train(int argc, char **argv) {
    const char *C = "train";
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(HELP, stdout);
            return CLI_OK;
        }
    long tp = 1; /* the mesh first: MPI starts before anything else happens */
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--tp") && !cli_parse_int(argv[i + 1], 1, 1 << 16, &tp))
            return cli_usage(C, "bad value for --tp: '%s'", argv[i + 1]);
    gm_dist *d;
    if (gm_dist_init(&argc, &argv, (int)tp, &d)) return cli_fail(C);
    parse_ctx pc = {gm_dist_rank(d) == 0, 0};

    gm_trainer_opts o = gm_trainer_opts_default();
    o.threads = cli_rank_threads();
    char **given = calloc((size_t)argc + 1, sizeof *given), **kept = NULL;
    int n_given = 0, n_kept = 0, rc = 0, resume = 0;
    const char *resume_dir = NULL;
    if (!given) {
        gm_dist_finalize(d);
        return cli_fail(C);
    }
    /* pass 1: find --resume and --out (the saved arguments come before the command line's) */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--resume")) {
            resume = 1;
            if (i + 1 < argc && argv[i + 1][0] != '-') resume_dir = argv[++i];
        } else if (is_value_flag(a)) {
            if (i + 1 >= argc) {
                rc = pc.rank0 ? cli_usage(C, "%s needs a value", a) : CLI_USAGE;
                break;
            }
            if (!strcmp(a, "--out")) o.out = argv[i + 1];
            given[n_given++] = !strcmp(a, "-t") ? "--threads" : argv[i];
            i++;
        } else if (!strcmp(a, "--recompute")) {
            given[n_given++] = argv[i];
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            o.quiet = 1;
        } else {
            const char *fmt = a[0] == '-' ? "unknown option '%s'" : "unexpected argument '%s'";
            rc = pc.rank0 ? cli_usage(C, fmt, a) : CLI_USAGE;
            break;
        }
    }
    if (!rc && !o.out) rc = pc.rank0 ? cli_usage(C, "--out DIR is required") : CLI_USAGE;
    char *state_text = NULL;
    if (!rc && resume) {
        o.resume = resume_dir ? resume_dir : "";
        if ((state_text = saved_args(d, resume_dir, o.out)))
            rc = apply_saved(&o, &pc, state_text, given, n_given, &kept, &n_kept);
    }
    /* pass 2: the command line's flags */
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--resume")) {
            if (i + 1 < argc && argv[i + 1][0] != '-') i++;
        } else if (is_value_flag(a)) {
            rc = apply_flag(&o, &pc, a, argv[i + 1]);
            i++;
        } else if (!strcmp(a, "--recompute")) {
            o.recompute = 1;
        }
    }
    if (!rc && !pc.lr_min_set) o.lr_min = o.lr / 10;
    if (!rc && o.lr_min > o.lr)
        rc = pc.rank0 ? cli_usage(C, "--lr-min %g is above --lr %g", (double)o.lr_min, (double)o.lr) : CLI_USAGE;
    if (!rc && o.warmup > o.steps)
        rc = pc.rank0 ? cli_usage(C, "--warmup %d is longer than --steps %d", o.warmup, o.steps) : CLI_USAGE;
    if (!rc && !resume && !o.config && !o.preset && !o.init)
        rc = pc.rank0 ? cli_usage(C, "no model: give --config FILE, --preset NAME or --init MODEL (or --resume)")
                      : CLI_USAGE;
    if (!rc && !resume && !o.data) rc = pc.rank0 ? cli_usage(C, "--data DIR is required") : CLI_USAGE;

    if (!rc) {
        gm_trainer *t = NULL;
        gm_status st = gm_trainer_new(d, &o, &t);
        if (!st) st = gm_trainer_run(t);
        gm_trainer_free(t);
        if (st) {
            const char *msg = gm_last_error();
            if (pc.rank0 || strstr(msg, "another rank failed") == NULL) {
                if (gm_dist_world(d) > 1) fprintf(stderr, "gemma train: rank %d: error: %s\n", gm_dist_rank(d), msg);
                else fprintf(stderr, "gemma train: error: %s\n", msg);
            }
            rc = CLI_RUNTIME;
        }
    }
    free(state_text);
    for (int i = 0; i < n_kept; i++) free(kept[i]);
    free(kept);
    free(given);
    gm_dist_finalize(d);
    return rc;
}
