/* The pretraining loop (see trainer.h). Rank 0 reads every file (config, --init model, checkpoint) and
 * broadcasts what the others need, so ranks never depend on a shared file system for input; each
 * collective is preceded by an agreement on errors (gm_dist_max_int) so one rank's failure never leaves
 * the others waiting. */
#include "train/trainer.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "model/config.h"
#include "model/model.h"
#include "train/checkpoint.h"
#include "train/loader.h"
#include "train/plot.h"

#define AGREE_MSG "stopped because another rank failed (its message is above)"
#define CSV_HEADER "step,loss,lr,grad_norm,tokens_per_s,val_loss"

struct gm_trainer {
    gm_trainer_opts o;
    gm_dist *d;
    int rank, dp_rank, dp_size;
    gm_config cfg;
    gm_train_model *m;
    gm_dist_opt *opt;
    gm_loader *loader;
    gm_train_tensor *full; /* the full layout (checkpoints) */
    int n_full;
    size_t n_full_params;
    gm_lr_schedule sched;
    int step;  /* steps completed */
    int skips; /* consecutive skipped steps */
    int32_t *tokens;
    char *tokenizer; /* copied into checkpoints (rank 0): its path, and its bytes read at the start */
    char *tok_data;
    size_t tok_len;
    char *args_json;
    char *csv_path, *svg_path;
    FILE *csv;
    double *h_step, *h_loss, *h_val; /* logged steps, for the plot (rank 0) */
    int h_n, h_cap;
    double mark;                     /* end of the last trainer call: a step's time runs from here */
    double time_sum;                 /* seconds of the steps taken by this process, for the ETA */
    int n_timed;
    double tokens_per_step;
    int nan_lo, nan_hi;              /* test hook GM_TEST_NAN_STEP */
    int kill_at;                     /* test hook GM_TEST_KILL_AT_STEP */
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static gm_status agree(gm_dist *d, gm_status st) {
    int g = gm_dist_max_int(d, st);
    if (g && !st) return gm_fail(g, AGREE_MSG);
    return st;
}

gm_trainer_opts gm_trainer_opts_default(void) {
    gm_trainer_opts o;
    memset(&o, 0, sizeof o);
    o.seq = 256, o.batch = 8, o.accum = 1, o.steps = 1000;
    o.lr = 3e-4f, o.lr_min = 3e-5f, o.warmup = -1, o.decay = GM_LR_COSINE;
    o.adam = gm_adamw_params_default();
    o.seed = 1;
    o.eval_every = 100, o.eval_batches = 8, o.save_every = 250, o.keep = 2;
    o.threads = 1, o.tp = 1, o.zero = 1;
    o.max_skips = 5;
    o.save_dtype = GM_DT_F32;
    return o;
}

int gm_trainer_steps_done(const gm_trainer *t) { return t->step; }
gm_train_model *gm_trainer_model(gm_trainer *t) { return t->m; }

void gm_trainer_free(gm_trainer *t) {
    if (!t) return;
    if (t->csv) fclose(t->csv);
    gm_loader_free(t->loader);
    gm_dist_opt_free(t->opt);
    gm_train_model_free(t->m);
    free(t->full);
    free(t->tokens);
    free(t->tokenizer);
    free(t->tok_data);
    free(t->args_json);
    free(t->csv_path);
    free(t->svg_path);
    free(t->h_step);
    free(t->h_loss);
    free(t->h_val);
    free(t);
}

/* ---- pieces of gm_trainer_new ------------------------------------------------------------------ */

static const char *decay_name(gm_lr_decay d) {
    return d == GM_LR_COSINE ? "cosine" : d == GM_LR_LINEAR ? "linear" : "constant";
}

/* a string or null */
static void json_str(FILE *f, const char *s) {
    if (s) gm_json_write_str(f, s);
    else fputs("null", f);
}

/* The arguments a checkpoint records: what a resumed run is compared against. */
static gm_status make_args_json(gm_trainer *t) {
    const gm_trainer_opts *o = &t->o;
    size_t len;
    FILE *f = open_memstream(&t->args_json, &len);
    if (!f) return gm_fail(GM_ERR_NOMEM, "out of memory");
    fprintf(f, "{\"data\": ");
    json_str(f, o->data);
    fprintf(f, ", \"mix\": ");
    json_str(f, o->mix);
    fprintf(f, ", \"seq\": %d, \"batch\": %d, \"accum\": %d, \"dp_size\": %d, \"tp\": %d, \"zero\": %d, \"steps\": %d",
            o->seq, o->batch, o->accum, t->dp_size, o->tp, o->zero, o->steps);
    fprintf(f, ", \"lr\": %.9g, \"lr_min\": %.9g, \"warmup\": %d, \"decay\": \"%s\"", (double)o->lr, (double)o->lr_min,
            t->sched.warmup, decay_name(o->decay));
    fprintf(f, ", \"wd\": %.9g, \"clip\": %.9g, \"beta1\": %.9g, \"beta2\": %.9g, \"eps\": %.9g",
            (double)o->adam.weight_decay, (double)o->adam.clip, (double)o->adam.beta1, (double)o->adam.beta2,
            (double)o->adam.eps);
    fprintf(f, ", \"seed\": %llu, \"eval_every\": %d, \"eval_batches\": %d, \"save_every\": %d, \"keep\": %d",
            (unsigned long long)o->seed, o->eval_every, o->eval_batches, o->save_every, o->keep);
    fprintf(f, ", \"max_skips\": %d, \"recompute\": %d, \"dtype\": \"%s\"}", o->max_skips, o->recompute,
            o->save_dtype == GM_DT_BF16 ? "bf16" : "f32");
    if (fclose(f) != 0 || !t->args_json) return gm_fail(GM_ERR_NOMEM, "out of memory");
    return GM_OK;
}

/* On resume: say which settings differ from the interrupted run's (they break the bitwise equality
 * with an uninterrupted run, which is fine when meant: a longer schedule, another mixture). */
static void compare_args(const gm_trainer *t, const gm_json *saved) {
    if (!saved || !t->args_json) return;
    gm_json_doc *doc;
    if (gm_json_parse(t->args_json, strlen(t->args_json), "args", &doc)) {
        gm_clear_error();
        return;
    }
    const gm_json *cur = gm_json_root(doc);
    static const char *const KEYS[] = {"data", "mix", "seq", "batch", "accum", "dp_size", "steps", "lr", "lr_min",
                                       "warmup", "decay", "wd", "clip", "beta1", "beta2", "eps", "seed"};
    for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++) {
        const gm_json *a = gm_json_get(saved, KEYS[i]), *b = gm_json_get(cur, KEYS[i]);
        if (!a || !b) continue;
        int same = a->type == b->type;
        char va[256] = "null", vb[256] = "null";
        if (same && a->type == GM_JSON_STRING) same = !strcmp(a->str, b->str);
        else if (same && a->type == GM_JSON_NUMBER) same = a->num == b->num;
        if (a->type == GM_JSON_STRING) snprintf(va, sizeof va, "%s", a->str);
        else if (a->type == GM_JSON_NUMBER) snprintf(va, sizeof va, "%.9g", a->num);
        if (b->type == GM_JSON_STRING) snprintf(vb, sizeof vb, "%s", b->str);
        else if (b->type == GM_JSON_NUMBER) snprintf(vb, sizeof vb, "%.9g", b->num);
        if (!same)
            fprintf(stderr, "gemma train: note: %s is %s now, %s in the checkpoint's run: the losses will differ from "
                            "an uninterrupted run's\n", KEYS[i], vb, va);
    }
    gm_json_free(doc);
}

/* Shapes two configs must share to be the same model. */
static int same_shape(const gm_config *a, const gm_config *b) {
    return a->family == b->family && a->vocab_size == b->vocab_size && a->hidden_size == b->hidden_size &&
           a->n_layers == b->n_layers && a->n_heads == b->n_heads && a->n_kv_heads == b->n_kv_heads &&
           a->head_dim == b->head_dim && a->ffn_size == b->ffn_size;
}

static void describe_config(const gm_config *c, char *buf, size_t n) {
    snprintf(buf, n, "Gemma %d: d %d, %d layers, %d heads / %d kv x %d, ffn %d, vocab %d, context %d", c->family,
             c->hidden_size, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->ffn_size, c->vocab_size,
             c->max_pos);
}

/* The config from --config / --preset / --init (the latter's config.json, or the GGUF's metadata by
 * loading it). */
static gm_status source_config(const gm_trainer_opts *o, gm_config *c, gm_model **init_model) {
    if (init_model) *init_model = NULL;
    if (o->config) return gm_config_load(o->config, c);
    if (o->preset) return gm_config_preset(o->preset, c);
    if (o->init) {
        gm_load_options lo = gm_load_options_default();
        lo.use_mmap = 1; /* read once, converted to f32 right away */
        gm_model *mm;
        gm_status st = gm_model_load(o->init, &lo, &mm);
        if (st) return st;
        *c = *gm_model_config(mm);
        if (init_model) *init_model = mm;
        else gm_model_free(mm);
        return GM_OK;
    }
    return gm_fail(GM_ERR_ARG, "no model: give --config FILE, --preset NAME or --init MODEL");
}

/* Rank 0: which tokenizer file goes into checkpoints. */
static gm_status pick_tokenizer(gm_trainer *t, const char *from_ckpt) {
    const gm_trainer_opts *o = &t->o;
    char *p = NULL;
    if (o->tokenizer) {
        if (!gm_file_exists(o->tokenizer)) return gm_fail(GM_ERR_IO, "%s: --tokenizer: no such file", o->tokenizer);
        p = strdup(o->tokenizer);
    } else if (from_ckpt) {
        p = strdup(from_ckpt);
    } else if (o->init) {
        const char *names[2] = {"tokenizer.model", "tokenizer.json"};
        for (int i = 0; i < 2 && !p; i++) {
            char *q = gm_path_join(o->init, names[i]);
            if (q && gm_file_exists(q)) p = q;
            else free(q);
        }
    }
    if (!p && o->data) { /* gemma data tokenize records its tokenizer in meta.json */
        char *mp = gm_path_join(o->data, "meta.json"), *text = NULL;
        size_t len;
        gm_json_doc *doc = NULL;
        if (mp && gm_file_exists(mp) && !gm_file_read_all(mp, &text, &len) && !gm_json_parse(text, len, mp, &doc)) {
            const char *tk = gm_json_get_str(gm_json_root(doc), "tokenizer");
            if (tk && *tk) {
                char *q = tk[0] == '/' ? strdup(tk) : gm_path_join(o->data, tk);
                if (q && gm_file_exists(q)) p = q;
                else if (q && tk[0] != '/' && gm_file_exists(tk)) free(q), p = strdup(tk);
                else free(q);
            }
        }
        gm_clear_error();
        gm_json_free(doc);
        free(text);
        free(mp);
    }
    t->tokenizer = p;
    if (!p) return GM_OK;
    gm_status st = gm_file_read_all(p, &t->tok_data, &t->tok_len);
    if (st) return gm_fail_prefix(st, "the tokenizer for checkpoints: ");
    gm_tokenizer *tok;
    st = gm_tokenizer_load(p, &tok);
    if (st) return gm_fail_prefix(st, "the tokenizer for checkpoints: ");
    int tv = gm_tokenizer_vocab_size(tok);
    gm_tokenizer_free(tok);
    if (tv > t->cfg.vocab_size)
        return gm_fail(GM_ERR_ARG, "%s: the tokenizer has %d pieces, more than the model's vocab_size %d", p, tv,
                       t->cfg.vocab_size);
    return GM_OK;
}

/* Rank 0: keep the CSV rows of the steps up to `step` (a resumed run rewrites the rest), or start it. */
static gm_status open_log(gm_trainer *t, int resumed) {
    t->csv_path = gm_path_join(t->o.out, "train_log.csv");
    t->svg_path = gm_path_join(t->o.out, "loss.svg");
    if (!t->csv_path || !t->svg_path) return gm_fail(GM_ERR_NOMEM, "out of memory");
    char *old = NULL;
    size_t len = 0;
    if (resumed && gm_file_exists(t->csv_path) && gm_file_read_all(t->csv_path, &old, &len)) gm_clear_error();
    char *tmp = malloc(strlen(t->csv_path) + 8);
    if (!tmp) {
        free(old);
        return gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    sprintf(tmp, "%s.tmp", t->csv_path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        gm_status st = gm_fail(GM_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        free(old);
        return st;
    }
    fprintf(f, "%s\n", CSV_HEADER);
    if (old && !strncmp(old, CSV_HEADER "\n", strlen(CSV_HEADER) + 1)) {
        char *p = old + strlen(CSV_HEADER) + 1;
        int prev = 0;
        for (char *nl; (nl = strchr(p, '\n')); p = nl + 1) { /* complete rows only, in order, up to step */
            *nl = 0;
            char *end;
            long s = strtol(p, &end, 10);
            if (end == p || *end != ',' || s <= prev || s > t->step) break;
            prev = (int)s;
            fprintf(f, "%s\n", p);
            /* loss and val_loss back into the plot's history */
            double loss = NAN, val = NAN;
            char *c1 = strchr(p, ','), *c5 = c1;
            if (c1) loss = strtod(c1 + 1, NULL);
            for (int k = 0; k < 4 && c5; k++) c5 = strchr(c5 + 1, ',');
            if (c5 && c5[1]) val = strtod(c5 + 1, NULL);
            if (t->h_n == t->h_cap) {
                int nc = t->h_cap ? 2 * t->h_cap : 256;
                double *a = realloc(t->h_step, nc * sizeof *a), *b = a ? realloc(t->h_loss, nc * sizeof *b) : NULL;
                if (a) t->h_step = a;
                if (b) t->h_loss = b;
                double *c = b ? realloc(t->h_val, nc * sizeof *c) : NULL;
                if (c) t->h_val = c;
                if (!c) break;
                t->h_cap = nc;
            }
            t->h_step[t->h_n] = (double)s, t->h_loss[t->h_n] = loss, t->h_val[t->h_n] = val;
            t->h_n++;
        }
    }
    free(old);
    int bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
    if (fclose(f) != 0) bad = 1;
    gm_status st = GM_OK;
    if (bad || rename(tmp, t->csv_path) != 0)
        st = gm_fail(GM_ERR_IO, "%s: write failed: %s", t->csv_path, strerror(errno));
    free(tmp);
    if (st) return st;
    t->csv = fopen(t->csv_path, "a");
    if (!t->csv) return gm_fail(GM_ERR_IO, "%s: cannot open: %s", t->csv_path, strerror(errno));
    return GM_OK;
}

static void parse_nan_hook(gm_trainer *t) {
    /* Test hook (docs/training.md): GM_TEST_NAN_STEP=K or K-L makes the loss of steps K..L NaN */
    const char *e = getenv("GM_TEST_NAN_STEP");
    t->nan_lo = t->nan_hi = -1;
    if (!e || !*e) return;
    char *end;
    long a = strtol(e, &end, 10), b = a;
    if (*end == '-') b = strtol(end + 1, &end, 10);
    if (*end || a < 1 || b < a) return;
    t->nan_lo = (int)a, t->nan_hi = (int)b;
}

static void parse_kill_hook(gm_trainer *t) {
    /* Test hook (docs/training.md): GM_TEST_KILL_AT_STEP=K sends SIGKILL to rank 0 as step K starts */
    const char *e = getenv("GM_TEST_KILL_AT_STEP");
    t->kill_at = e && t->rank == 0 ? atoi(e) : 0;
}

static void banner(const gm_trainer *t, int resumed_step) {
    const gm_trainer_opts *o = &t->o;
    char cfgs[256], data[1024] = "";
    describe_config(&t->cfg, cfgs, sizeof cfgs);
    if (t->loader) gm_loader_describe(t->loader, data, sizeof data);
    fprintf(stderr, "gemma train: %.3f M parameters (%s)\n", (double)t->n_full_params / 1e6, cfgs);
    if (t->loader) fprintf(stderr, "  data: %s\n", data);
    fprintf(stderr, "  tokens per step: %d seq x %d tokens x %d micro-batches x %d data ranks = %.0f; %d steps\n",
            o->batch, o->seq, o->accum, t->dp_size, t->tokens_per_step, o->steps);
    fprintf(stderr, "  AdamW: lr %g -> %g (%s, warmup %d), wd %g, clip %g, betas %g/%g\n", (double)o->lr,
            (double)o->lr_min, decay_name(o->decay), t->sched.warmup, (double)o->adam.weight_decay,
            (double)o->adam.clip, (double)o->adam.beta1, (double)o->adam.beta2);
    fprintf(stderr, "  ranks: %d (data %d x model %d), ZeRO %d, %d threads each%s\n", gm_dist_world(t->d), t->dp_size,
            gm_dist_tp_size(t->d), o->zero, o->threads, o->recompute ? ", recomputing activations" : "");
    char every[96], eval[64];
    if (o->save_every) snprintf(every, sizeof every, "a checkpoint every %d steps", o->save_every);
    else snprintf(every, sizeof every, "a checkpoint at the end");
    if (o->eval_every) snprintf(eval, sizeof eval, "held-out loss every %d steps", o->eval_every);
    else snprintf(eval, sizeof eval, "held-out loss at the end");
    fprintf(stderr, "  out: %s (%s, keep %d; %s)\n", o->out, every, o->keep, eval);
    fprintf(stderr, "  tokenizer for checkpoints: %s\n", t->tokenizer ? t->tokenizer : "none (give --tokenizer FILE)");
    if (resumed_step >= 0) fprintf(stderr, "  resumed at step %d\n", resumed_step);
}

gm_status gm_trainer_new(gm_dist *d, const gm_trainer_opts *o, gm_trainer **out) {
    *out = NULL;
    gm_trainer *t = calloc(1, sizeof *t);
    if (!t) return gm_fail(GM_ERR_NOMEM, "out of memory");
    t->o = *o;
    t->d = d;
    t->rank = gm_dist_rank(d), t->dp_rank = gm_dist_dp_rank(d), t->dp_size = gm_dist_dp_size(d);
    parse_nan_hook(t);
    parse_kill_hook(t);
    gm_status st = GM_OK;
    int n_src = !!o->config + !!o->preset + !!o->init;
    if (o->seq < 1 || o->batch < 1 || o->accum < 1 || o->steps < 1 || o->threads < 1 || o->max_skips < 1 ||
        o->eval_batches < 0 || o->eval_every < 0 || o->save_every < 0 || o->keep < 0)
        st = gm_fail(GM_ERR_ARG, "seq, batch, accum, steps, threads and max-skips must be positive");
    else if (!o->out) st = gm_fail(GM_ERR_ARG, "no output directory (--out DIR)");
    else if (n_src > 1) st = gm_fail(GM_ERR_ARG, "give one of --config, --preset and --init, not several");
    else if (!n_src && !o->resume)
        st = gm_fail(GM_ERR_ARG, "no model: give --config FILE, --preset NAME or --init MODEL");
    else if (!o->micro_fn && !o->data) st = gm_fail(GM_ERR_ARG, "no training data (--data DIR)");
    else if (o->save_dtype != GM_DT_F32 && o->save_dtype != GM_DT_BF16)
        st = gm_fail(GM_ERR_ARG, "checkpoints hold f32 or bf16 weights");
    if (st) {
        gm_trainer_free(t);
        return st;
    }

    /* rank 0 reads: the checkpoint (verified whole) or the model source, giving the config */
    gm_ckpt *ck = NULL;
    gm_model *init_model = NULL;
    gm_ckpt_state state = {0, 0, 0, o->seed};
    char *ckdir = NULL;
    if (t->rank == 0) {
        if (o->resume) {
            st = gm_ckpt_resolve(o->resume[0] ? o->resume : o->out, &ckdir);
            if (!st) st = gm_ckpt_open(ckdir, &ck);
            if (!st) {
                t->cfg = *gm_ckpt_config(ck);
                state = *gm_ckpt_get_state(ck);
                if (n_src) { /* the flags' model must be the checkpoint's */
                    gm_config want;
                    char *cp = o->init ? gm_path_join(o->init, "config.json") : NULL;
                    if (o->init && cp && gm_file_exists(cp)) st = gm_config_load(cp, &want);
                    else if (o->init) want = t->cfg; /* a GGUF: not re-read just to compare */
                    else st = source_config(o, &want, NULL);
                    free(cp);
                    if (!st && !same_shape(&want, &t->cfg)) {
                        char a[256], b[256];
                        describe_config(&t->cfg, a, sizeof a);
                        describe_config(&want, b, sizeof b);
                        st = gm_fail(GM_ERR_ARG, "%s holds a different model (%s) than the flags name (%s)", ckdir, a,
                                     b);
                    }
                }
                if (!st && state.step > o->steps)
                    st = gm_fail(GM_ERR_ARG, "%s is at step %d, past --steps %d", ckdir, state.step, o->steps);
            }
        } else {
            st = source_config(o, &t->cfg, &init_model);
        }
    }
    st = agree(d, st);
    if (!st) {
        gm_dist_bcast(d, &t->cfg, sizeof t->cfg);
        gm_dist_bcast(d, &state, sizeof state);
    }

    /* the full layout, and the full parameters on every rank: a fresh init (computed everywhere, it is
     * deterministic), or the init model / checkpoint read by rank 0 and broadcast */
    gm_train_model *L = NULL;
    float *mom1 = NULL, *mom2 = NULL;
    if (!st) {
        gm_train_opts lo = gm_train_opts_default(1, 1, 1);
        st = gm_train_model_new(&t->cfg, &lo, &L);
    }
    st = agree(d, st);
    if (!st) {
        t->n_full = L->n_tensors, t->n_full_params = L->n_params;
        t->full = malloc(sizeof *t->full * (size_t)L->n_tensors);
        if (!t->full) st = gm_fail(GM_ERR_NOMEM, "out of memory");
        else memcpy(t->full, L->tensors, sizeof *t->full * (size_t)L->n_tensors);
        if (!st && o->resume) {
            mom1 = malloc(sizeof(float) * L->n_params), mom2 = malloc(sizeof(float) * L->n_params);
            if (!mom1 || !mom2)
                st = gm_fail(GM_ERR_NOMEM, "cannot allocate the optimizer state (%zu floats)", L->n_params);
        }
    }
    if (!st && t->rank == 0) {
        gm_ckpt_layout lay = {t->full, t->n_full, t->n_full_params};
        if (ck) st = gm_ckpt_load(ck, &lay, L->params, mom1, mom2);
        else if (init_model) {
            gm_train_opts lo = gm_train_opts_default(1, 1, o->threads);
            gm_train_model *im;
            if (!(st = gm_train_model_from_model(init_model, &lo, &im))) {
                memcpy(L->params, im->params, sizeof(float) * L->n_params);
                gm_train_model_free(im);
            }
        }
    }
    gm_model_free(init_model);
    st = agree(d, st);
    if (!st && !o->resume && !o->init) gm_train_init(L, o->seed, GM_TRAIN_INIT_STD);
    else if (!st) {
        gm_dist_bcast(d, L->params, sizeof(float) * L->n_params);
        if (mom1) {
            gm_dist_bcast(d, mom1, sizeof(float) * L->n_params);
            gm_dist_bcast(d, mom2, sizeof(float) * L->n_params);
        }
    }

    /* this rank's model and optimizer */
    if (!st) {
        gm_train_opts to = gm_train_opts_default(o->batch, o->seq, o->threads);
        to.recompute = o->recompute;
        /* agreed after each call: any of them may be collective under MPI */
        st = agree(d, gm_dist_model_new(d, &t->cfg, &to, &t->m));
        if (!st) st = agree(d, gm_dist_model_scatter(d, t->m, L->params));
        if (!st) st = agree(d, gm_dist_opt_new(d, &o->adam, t->m, o->zero, &t->opt));
        if (!st && mom1) st = agree(d, gm_dist_opt_import(t->opt, mom1, mom2, state.updates));
    }
    gm_train_model_free(L);
    free(mom1);
    free(mom2);
    t->step = state.step, t->skips = state.skips;

    /* data */
    if (!st && !o->micro_fn) {
        gm_loader_opts lo = {o->data, o->mix, o->seq, o->batch, o->accum, t->dp_rank, t->dp_size, o->seed};
        st = gm_loader_open(&lo, &t->loader);
        if (!st) {
            int dv = gm_loader_vocab_size(t->loader);
            if (dv > t->cfg.vocab_size)
                st = gm_fail(GM_ERR_ARG, "%s was tokenized with a vocabulary of %d, but the model's vocab_size is %d: "
                             "use the model's tokenizer (or a config with vocab_size %d)", o->data, dv,
                             t->cfg.vocab_size, dv);
            else if (dv < t->cfg.vocab_size && t->rank == 0)
                fprintf(stderr, "gemma train: note: the data's vocabulary (%d) is smaller than the model's (%d)\n", dv,
                        t->cfg.vocab_size);
        }
        if (!st && !(t->tokens = malloc(sizeof(int32_t) * (size_t)o->batch * (size_t)(o->seq + 1))))
            st = gm_fail(GM_ERR_NOMEM, "out of memory");
        st = agree(d, st);
    }

    int warm = o->warmup >= 0 ? o->warmup : (o->steps / 10 < 100 ? o->steps / 10 : 100);
    t->sched = (gm_lr_schedule){o->lr, o->lr_min, warm, o->steps, o->decay};
    t->tokens_per_step = (double)o->batch * o->seq * o->accum * t->dp_size;

    /* rank 0: tokenizer, output directory, log */
    if (!st && t->rank == 0) {
        st = pick_tokenizer(t, ck ? gm_ckpt_tokenizer(ck) : NULL);
        if (!st) st = make_args_json(t);
        if (!st && mkdir(o->out, 0755) != 0 && errno != EEXIST)
            st = gm_fail(GM_ERR_IO, "%s: cannot create the output directory: %s", o->out, strerror(errno));
        char first[64];
        if (!st && !o->resume && gm_ckpt_any(o->out, first, sizeof first))
            st = gm_fail(GM_ERR_ARG, "%s already holds checkpoints (%s): add --resume to continue that run, or choose "
                         "another --out", o->out, first);
        if (!st) gm_ckpt_clean_tmp(o->out);
        if (!st) st = open_log(t, o->resume != NULL);
        if (!st && ck) compare_args(t, gm_ckpt_args(ck));
    }
    gm_ckpt_close(ck);
    free(ckdir);
    st = agree(d, st);
    if (st) {
        gm_trainer_free(t);
        return st;
    }
    if (t->rank == 0) banner(t, o->resume ? t->step : -1);
    t->mark = now();
    *out = t;
    return GM_OK;
}

/* ---- the step ---------------------------------------------------------------------------------- */

gm_status gm_trainer_apply(gm_trainer *t, double local_loss_sum, int micro, gm_trainer_stats *s) {
    memset(s, 0, sizeof *s);
    if (micro < 1) return gm_fail(GM_ERR_ARG, "gm_trainer_apply: %d micro-batches", micro);
    double global = gm_dist_sum_dp(t->d, local_loss_sum / micro) / t->dp_size;
    int step1 = t->step + 1;
    if (step1 >= t->nan_lo && step1 <= t->nan_hi) global = NAN; /* test hook */
    gm_step_info info;
    float lr = gm_lr_at(&t->sched, t->step);
    int r = gm_dist_opt_step(t->opt, t->m, lr, 1.0f / (float)micro, (float)global, &info);
    t->step++;
    t->skips = r == GM_STEP_TAKEN ? 0 : t->skips + 1;
    double tn = now();
    s->step = t->step, s->loss = (float)global, s->lr = lr, s->grad_norm = info.grad_norm, s->result = r;
    s->skips = t->skips;
    s->seconds = tn - t->mark;
    s->tokens_per_s = s->seconds > 0 ? t->tokens_per_step / s->seconds : 0;
    s->val_loss = NAN;
    snprintf(s->message, sizeof s->message, "%s", info.message);
    t->time_sum += s->seconds, t->n_timed++;
    t->mark = tn;
    if (r != GM_STEP_TAKEN && t->skips >= t->o.max_skips)
        return gm_fail(GM_ERR_FORMAT, "%d steps in a row skipped for non-finite values (--max-skips %d); the last: %s",
                       t->skips, t->o.max_skips, info.message);
    return GM_OK;
}

gm_status gm_trainer_step(gm_trainer *t, gm_trainer_stats *s) {
    const gm_trainer_opts *o = &t->o;
    if (t->kill_at == t->step + 1) raise(SIGKILL); /* test hook: dies as `kill -9` would, mid-run */
    gm_train_zero_grad(t->m);
    double sum = 0;
    gm_status st = GM_OK;
    for (int k = 0; k < o->accum && !st; k++) {
        float loss = 0;
        if (o->micro_fn) st = o->micro_fn(o->fn_ctx, t->m, t->step, k, &loss);
        else {
            st = gm_loader_batch(t->loader, t->step, k, t->tokens);
            if (!st) st = gm_train_forward_backward(t->m, t->tokens, o->batch, o->seq, &loss);
        }
        sum += loss;
    }
    st = agree(t->d, st);
    if (st) return gm_fail_prefix(st, "step %d: ", t->step + 1);
    return gm_trainer_apply(t, sum, o->accum, s);
}

gm_status gm_trainer_eval(gm_trainer *t, double *val_loss) {
    const gm_trainer_opts *o = &t->o;
    double sum = 0, cnt = 0;
    gm_status st = GM_OK;
    if (o->eval_fn) st = o->eval_fn(o->fn_ctx, t->m, &sum, &cnt);
    else if (t->loader) {
        long long want = (long long)o->eval_batches * o->batch * t->dp_size, have = gm_loader_val_count(t->loader);
        long long n = want < have ? want : have;
        long long lo = t->dp_rank * n / t->dp_size, hi = (t->dp_rank + 1) * n / t->dp_size;
        for (long long i = lo; i < hi && !st; i += o->batch) {
            int k = (int)(hi - i < o->batch ? hi - i : o->batch);
            float loss = 0;
            st = gm_loader_val(t->loader, (int)i, k, t->tokens);
            if (!st) st = gm_train_loss(t->m, t->tokens, k, o->seq, &loss);
            sum += (double)loss * k, cnt += k;
        }
    }
    st = agree(t->d, st);
    if (st) return st;
    sum = gm_dist_sum_dp(t->d, sum);
    cnt = gm_dist_sum_dp(t->d, cnt);
    *val_loss = cnt > 0 ? sum / cnt : NAN;
    t->mark = now();
    return GM_OK;
}

gm_status gm_trainer_save(gm_trainer *t) {
    size_t n = t->n_full_params;
    float *p = malloc(sizeof(float) * n), *m1 = malloc(sizeof(float) * n), *m2 = malloc(sizeof(float) * n);
    gm_status st = p && m1 && m2 ? GM_OK : gm_fail(GM_ERR_NOMEM, "cannot allocate %zu floats for a checkpoint", 3 * n);
    st = agree(t->d, st);
    int updates = 0;
    if (!st) st = agree(t->d, gm_dist_model_gather(t->d, t->m, p));
    if (!st) st = agree(t->d, gm_dist_opt_export(t->opt, m1, m2, &updates));
    if (!st && t->rank == 0) {
        if (t->csv && fflush(t->csv) == 0) (void)fsync(fileno(t->csv));
        gm_ckpt_write_opts w = {0};
        w.cfg = &t->cfg;
        w.layout = (gm_ckpt_layout){t->full, t->n_full, n};
        w.params = p, w.exp_avg = m1, w.exp_avg_sq = m2;
        w.dtype = t->o.save_dtype;
        w.state = (gm_ckpt_state){t->step, updates, t->skips, t->o.seed};
        w.args_json = t->args_json;
        if (t->tok_data) {
            size_t tl = strlen(t->tokenizer);
            w.tokenizer = t->tok_data, w.tokenizer_len = t->tok_len;
            int json = tl >= 5 && !strcmp(t->tokenizer + tl - 5, ".json");
            w.tokenizer_name = json ? "tokenizer.json" : "tokenizer.model";
        }
        char *dir = NULL;
        st = gm_ckpt_save(t->o.out, &w, t->o.keep, &dir);
        if (!st && !t->o.quiet) fprintf(stderr, "saved %s\n", dir);
        free(dir);
    }
    free(p);
    free(m1);
    free(m2);
    st = agree(t->d, st);
    t->mark = now();
    return st;
}

/* ---- logging ----------------------------------------------------------------------------------- */

static void fmt_eta(char *buf, size_t n, double s) {
    if (!isfinite(s) || s < 0) s = 0;
    long v = (long)(s + 0.5);
    snprintf(buf, n, "%ld:%02ld:%02ld", v / 3600, v / 60 % 60, v % 60);
}

gm_status gm_trainer_log(gm_trainer *t, const gm_trainer_stats *s) {
    if (t->rank != 0) return GM_OK;
    if (t->h_n == t->h_cap) {
        int nc = t->h_cap ? 2 * t->h_cap : 256;
        double *a = realloc(t->h_step, nc * sizeof *a);
        if (a) t->h_step = a;
        double *b = a ? realloc(t->h_loss, nc * sizeof *b) : NULL;
        if (b) t->h_loss = b;
        double *c = b ? realloc(t->h_val, nc * sizeof *c) : NULL;
        if (c) t->h_val = c;
        if (!c) return gm_fail(GM_ERR_NOMEM, "out of memory");
        t->h_cap = nc;
    }
    t->h_step[t->h_n] = s->step, t->h_loss[t->h_n] = s->loss, t->h_val[t->h_n] = s->val_loss;
    t->h_n++;
    if (!t->o.quiet) {
        char eta[32], tps[32];
        fmt_eta(eta, sizeof eta, (t->o.steps - s->step) * (t->n_timed ? t->time_sum / t->n_timed : 0));
        if (s->tokens_per_s >= 1e4) snprintf(tps, sizeof tps, "%.1fk", s->tokens_per_s / 1e3);
        else snprintf(tps, sizeof tps, "%.0f", s->tokens_per_s);
        int w = snprintf(NULL, 0, "%d", t->o.steps);
        if (s->result == GM_STEP_TAKEN)
            fprintf(stderr, "step %*d/%d | loss %.6f | lr %.2e | norm %.4f | %s tok/s | ETA %s", w, s->step, t->o.steps,
                    s->loss, (double)s->lr, s->grad_norm, tps, eta);
        else
            fprintf(stderr, "step %*d/%d | skipped (%d in a row, limit %d): %s", w, s->step, t->o.steps, s->skips,
                    t->o.max_skips, s->message);
        if (isfinite(s->val_loss)) fprintf(stderr, " | val %.6f", s->val_loss);
        fputc('\n', stderr);
    }
    if (t->csv) {
        fprintf(t->csv, "%d,%.9g,%.9g,%.9g,%.1f,", s->step, s->loss, (double)s->lr, s->grad_norm, s->tokens_per_s);
        if (isfinite(s->val_loss)) fprintf(t->csv, "%.9g", s->val_loss);
        fputc('\n', t->csv);
        /* flushed row by row: a killed run's log is complete up to its last step */
        if (fflush(t->csv) != 0) return gm_fail(GM_ERR_IO, "%s: write failed: %s", t->csv_path, strerror(errno));
    }
    return GM_OK;
}

gm_status gm_trainer_plot(gm_trainer *t) {
    if (t->rank != 0 || !t->svg_path) return GM_OK;
    double *vx = malloc(sizeof(double) * (size_t)(t->h_n + 1)), *vy = malloc(sizeof(double) * (size_t)(t->h_n + 1));
    if (!vx || !vy) {
        free(vx);
        free(vy);
        return gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    int nv = 0;
    for (int i = 0; i < t->h_n; i++)
        if (isfinite(t->h_val[i])) vx[nv] = t->h_step[i], vy[nv++] = t->h_val[i];
    gm_plot_series s[2] = {{"train loss", t->h_step, t->h_loss, t->h_n, NULL, 0}, {"val loss", vx, vy, nv, NULL, 1}};
    char title[512];
    snprintf(title, sizeof title, "gemma train: %s", t->o.out);
    gm_plot_opts po = {title, "step", "loss", 0, 0, 0};
    gm_status st = gm_plot_svg(t->svg_path, &po, s, nv ? 2 : 1);
    free(vx);
    free(vy);
    t->mark = now();
    return st;
}

gm_status gm_trainer_run(gm_trainer *t) {
    const gm_trainer_opts *o = &t->o;
    if (t->step >= o->steps) {
        if (t->rank == 0) fprintf(stderr, "gemma train: nothing to do: already at step %d of %d\n", t->step, o->steps);
        return GM_OK;
    }
    int have_val = o->eval_fn || (t->loader && gm_loader_val_count(t->loader) > 0 && o->eval_batches > 0);
    if (!have_val && t->rank == 0 && o->eval_every > 0)
        fprintf(stderr, "gemma train: note: no held-out data to evaluate on\n");
    while (t->step < o->steps) {
        gm_trainer_stats s;
        memset(&s, 0, sizeof s);
        gm_status st = gm_trainer_step(t, &s);
        if (st) {
            if (s.step && s.step == t->step) gm_trainer_log(t, &s); /* the last skipped step, then the error */
            return st;
        }
        int last = t->step == o->steps;
        int save = last || (o->save_every > 0 && t->step % o->save_every == 0);
        int eval = have_val && (last || (o->eval_every > 0 && t->step % o->eval_every == 0));
        if (eval && (st = gm_trainer_eval(t, &s.val_loss))) return st;
        if ((st = gm_trainer_log(t, &s))) return st;
        if (save && (st = gm_trainer_save(t))) return st;
        if ((eval || save) && (st = gm_trainer_plot(t))) return st;
    }
    return GM_OK;
}
