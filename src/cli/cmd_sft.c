/* `gemma sft`: supervised fine-tuning on chat conversations. The examples come from train/sft.h (chat
 * format, loss on the model turns only, packed several to a row with attention kept inside each, or one per
 * row with --no-pack), the loop is the trainer's
 * (train/trainer.h: AdamW over the MPI mesh, held-out loss, CSV + SVG, atomic HF checkpoints that
 * `gemma chat` loads, resume); this file parses flags and feeds it batches. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/file.h"
#include "cli/cli.h"
#include "train/dist.h"
#include "train/sft.h"
#include "train/trainer.h"

static const char *HELP =
    "usage: gemma sft --init MODEL --data FILE.jsonl --out DIR [options]\n"
    "       mpirun -np N gemma sft ...                   (N data ranks; --tp M splits each model over M ranks)\n"
    "Fine-tunes MODEL on conversations; the loss is on the model's turns (and their <end_of_turn>) only.\n"
    "data:\n"
    "  --data FILE        JSONL (or a JSON array) of records, one conversation each:\n"
    "                     {\"messages\": [{\"role\": \"system\"|\"user\"|\"model\"|\"assistant\", \"content\": ...}]}\n"
    "                     {\"instruction\", \"input\", \"output\"} (Alpaca), {\"instruction\", \"instances\": [...]},\n"
    "                     {\"prompt\", \"response\"}, {\"question\", \"answer\"}, {\"chosen\": \"\\n\\nHuman: ...\"}\n"
    "  --on-bad MODE      a malformed record stops the run (stop, default) or is reported and left out (skip)\n"
    "  --eval-frac F      fraction of examples held out for the eval loss (default 0.05; 0 = none)\n"
    "  --seq N            tokens per row, and per example at most (default 512): longer examples are cut, and\n"
    "                     left out when no model token is left\n"
    "  --pack, --no-pack  pack whole examples into rows of --seq tokens (greedy first fit in the epoch's\n"
    "                     seeded order; each attends only to itself, positions restart at 0; the default),\n"
    "                     or put one example per row, padded to the batch's longest\n"
    "  --batch N          rows per micro-batch per data rank (default 8)\n"
    "  --accum N          micro-batches per step (default 1)\n"
    "  --epochs N         passes over the training examples (default 1; --steps overrides)\n"
    "  --steps N          optimizer steps\n"
    "optimizer:\n"
    "  --lr F             peak learning rate (default 2e-5)      --lr-min F   final rate (default lr / 10)\n"
    "  --warmup N         warmup steps (default min(100, steps / 10))\n"
    "  --decay KIND       cosine (default), linear or constant   --wd F       weight decay (default 0)\n"
    "  --clip F           gradient-norm clip (default 1.0)       --seed N     order, split (default 1)\n"
    "output:\n"
    "  --out DIR          checkpoint-STEP/ + latest (an HF model directory: gemma chat -m DIR/latest),\n"
    "                     train_log.csv, loss.svg\n"
    "  --eval-every N     eval loss every N steps and at the end (default 50)\n"
    "  --save-every N     checkpoint every N steps and at the end (default 0: at the end)\n"
    "  --keep N           checkpoints kept (default 2)     --dtype f32|bf16   stored weights (default f32)\n"
    "  --tokenizer FILE   tokenizer (default: MODEL's)     --resume [DIR]     continue an interrupted run\n"
    "                     (give the same flags again)\n"
    "machine:\n"
    "  -t, --threads N    threads per rank   --recompute   less memory   --tp M   model-parallel ranks\n"
    "  --zero 0|1         shard optimizer state over data ranks (default 1)   -q, --quiet   no per-step lines\n";

typedef struct {
    gm_sft_data train, eval;
    int B, accum, dp_rank, dp_size, pack, seq;
    uint64_t seed;
    int *perm;
    long perm_epoch;
    /* packing: the rows of epoch pk_epoch (from that epoch's order), and cum_rows[e] = rows of epochs < e for
     * e <= n_cum (the map from a global row number to its epoch) */
    gm_sft_packing pk, eval_pk;
    long pk_epoch;
    long long *cum_rows;
    long n_cum, cap_cum;
    const gm_sft_example **rows;
    int32_t *in, *tg, *pos;
    double real_tokens, trained_tokens, rows_run, positions_run; /* positions_run: Σ rows · T computed */
} sft_run;

/* Example order: a fresh seeded permutation per epoch, indexed by the global example number, so a batch is a
 * pure function of (seed, step, micro, rank) and a resumed run sees what an uninterrupted one would. */
static void epoch_order(sft_run *r, long epoch) {
    if (epoch == r->perm_epoch) return;
    gm_sft_epoch_order(r->train.n, r->seed, epoch, r->perm);
    r->perm_epoch = epoch;
}

static const gm_sft_example *pick(sft_run *r, long long g) {
    int n = r->train.n;
    epoch_order(r, (long)(g / n));
    return &r->train.ex[r->perm[g % n]];
}

/* Packed rows: epoch e's order packed first-fit; its rows follow the previous epochs', so a row too is a pure
 * function of (seed, global row number). */
static gm_status epoch_packing(sft_run *r, long epoch) {
    if (epoch == r->pk_epoch) return GM_OK;
    epoch_order(r, epoch);
    gm_sft_packing_free(&r->pk);
    r->pk_epoch = -1;
    gm_status st = gm_sft_pack(r->train.ex, r->perm, r->train.n, r->seq, &r->pk);
    if (!st) r->pk_epoch = epoch;
    return st;
}

/* cum_rows up to epoch `upto` (each epoch's row count found by packing it once). */
static gm_status count_epochs(sft_run *r, long upto) {
    if (!r->cum_rows) {
        r->cum_rows = calloc(8, sizeof *r->cum_rows);
        if (!r->cum_rows) return gm_fail(GM_ERR_NOMEM, "out of memory");
        r->cap_cum = 8, r->n_cum = 0;
    }
    while (r->n_cum < upto) {
        if (r->n_cum + 1 >= r->cap_cum) {
            long long *c = realloc(r->cum_rows, sizeof *c * (size_t)r->cap_cum * 2);
            if (!c) return gm_fail(GM_ERR_NOMEM, "out of memory");
            r->cum_rows = c, r->cap_cum *= 2;
        }
        gm_status st = epoch_packing(r, r->n_cum);
        if (st) return st;
        r->cum_rows[r->n_cum + 1] = r->cum_rows[r->n_cum] + r->pk.n_rows;
        r->n_cum++;
    }
    return GM_OK;
}

/* The epoch and row of global row g. */
static gm_status locate_row(sft_run *r, long long g, long *epoch, int *row) {
    gm_status st = count_epochs(r, 1);
    while (!st && r->cum_rows[r->n_cum] <= g) st = count_epochs(r, r->n_cum + 1);
    if (st) return st;
    long e = 0;
    while (r->cum_rows[e + 1] <= g) e++;
    *epoch = e, *row = (int)(g - r->cum_rows[e]);
    return GM_OK;
}

/* Rows written at stride seq, then moved down to stride T (T <= seq: each row's new place starts at or before
 * its old one, and the rows before it have moved already). */
static void compact_rows(int32_t *buf, int rows, int seq, int T) {
    for (int i = 1; i < rows && T < seq; i++)
        memmove(buf + (size_t)i * T, buf + (size_t)i * seq, sizeof(int32_t) * (size_t)T);
}

static gm_status sft_micro_packed(sft_run *r, gm_train_model *m, long long base, float *loss) {
    int T = 1;
    for (int i = 0; i < r->B; i++) {
        long e;
        int row;
        gm_status st = locate_row(r, base + i, &e, &row);
        if (!st) st = epoch_packing(r, e);
        if (st) return st;
        size_t at = (size_t)i * r->seq;
        gm_sft_pack_row(r->train.ex, &r->pk, row, r->seq, m->cfg.pad_id, r->in + at, r->tg + at, r->pos + at);
        if (r->pk.row_len[row] > T) T = r->pk.row_len[row];
        r->real_tokens += r->pk.row_len[row];
    }
    compact_rows(r->in, r->B, r->seq, T);
    compact_rows(r->tg, r->B, r->seq, T);
    compact_rows(r->pos, r->B, r->seq, T);
    for (int i = 0; i < r->B * T; i++) r->trained_tokens += r->tg[i] >= 0;
    r->rows_run += r->B, r->positions_run += (double)r->B * T;
    return gm_train_forward_backward_packed(m, r->in, r->tg, r->pos, r->B, T, loss);
}

static int longest(const gm_sft_example *const *rows, int n, int T) {
    int t = 1;
    for (int i = 0; i < n; i++)
        if (rows[i]->n - 1 > t) t = rows[i]->n - 1;
    return t < T ? t : T;
}

/* Micro-batch rows are numbered globally (examples without packing), rank after rank. */
static gm_status sft_micro(void *ctx, gm_train_model *m, int step, int micro, float *loss) {
    sft_run *r = ctx;
    long long base = ((long long)step * r->accum + micro) * r->B * r->dp_size + (long long)r->dp_rank * r->B;
    if (r->pack) return sft_micro_packed(r, m, base, loss);
    for (int i = 0; i < r->B; i++) r->rows[i] = pick(r, base + i);
    int T = longest(r->rows, r->B, m->opt.max_seq);
    gm_sft_batch(r->rows, r->B, T, m->cfg.pad_id, r->in, r->tg);
    /* real tokens as packing counts them: the positions an example fills (its last id is a target only) */
    for (int i = 0; i < r->B; i++) r->real_tokens += gm_sft_positions(r->rows[i], T);
    for (int i = 0; i < r->B * T; i++) r->trained_tokens += r->tg[i] >= 0;
    r->rows_run += r->B, r->positions_run += (double)r->B * T;
    return gm_train_forward_backward_masked(m, r->in, r->tg, r->B, T, loss);
}

/* The held-out rows of this rank, packed as training packs them (in file order), B at a time. */
static gm_status sft_eval_packed(sft_run *r, gm_train_model *m, double *sum, double *count) {
    int n = r->eval_pk.n_rows;
    int lo = (int)((long long)r->dp_rank * n / r->dp_size), hi = (int)((long long)(r->dp_rank + 1) * n / r->dp_size);
    for (int i = lo; i < hi; i += r->B) {
        int k = hi - i < r->B ? hi - i : r->B, T = 1, c = 0;
        for (int j = 0; j < k; j++) {
            size_t at = (size_t)j * r->seq;
            gm_sft_pack_row(r->eval.ex, &r->eval_pk, i + j, r->seq, m->cfg.pad_id, r->in + at, r->tg + at,
                            r->pos + at);
            if (r->eval_pk.row_len[i + j] > T) T = r->eval_pk.row_len[i + j];
        }
        compact_rows(r->in, k, r->seq, T);
        compact_rows(r->tg, k, r->seq, T);
        compact_rows(r->pos, k, r->seq, T);
        for (int j = 0; j < k * T; j++) c += r->tg[j] >= 0;
        float loss = 0;
        gm_status st = gm_train_loss_packed(m, r->in, r->tg, r->pos, k, T, &loss);
        if (st) return st;
        *sum += (double)loss * c, *count += c;
    }
    return GM_OK;
}

/* token-weighted: the sum of the held-out targets' losses and their count, this rank's share */
static gm_status sft_eval(void *ctx, gm_train_model *m, double *sum, double *count) {
    sft_run *r = ctx;
    *sum = 0, *count = 0;
    if (r->pack) return sft_eval_packed(r, m, sum, count);
    int n = r->eval.n;
    int lo = (int)((long long)r->dp_rank * n / r->dp_size), hi = (int)((long long)(r->dp_rank + 1) * n / r->dp_size);
    for (int i = lo; i < hi; i += r->B) {
        int k = hi - i < r->B ? hi - i : r->B;
        for (int j = 0; j < k; j++) r->rows[j] = &r->eval.ex[i + j];
        int T = longest(r->rows, k, m->opt.max_seq), c = 0;
        gm_sft_batch(r->rows, k, T, m->cfg.pad_id, r->in, r->tg);
        for (int j = 0; j < k * T; j++) c += r->tg[j] >= 0;
        float loss = 0;
        gm_status st = gm_train_loss_masked(m, r->in, r->tg, k, T, &loss);
        if (st) return st;
        *sum += (double)loss * c, *count += c;
    }
    return GM_OK;
}


int cmd_sft(int argc, char **argv) {
    const char *C = "sft";
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(HELP, stdout);
            return CLI_OK;
        }
    long tp = 1;
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--tp") && !cli_parse_int(argv[i + 1], 1, 1 << 16, &tp))
            return cli_usage(C, "bad value for --tp: '%s'", argv[i + 1]);
    gm_dist *d;
    if (gm_dist_init(&argc, &argv, (int)tp, &d)) return cli_fail(C);
    int rank0 = gm_dist_rank(d) == 0;

    gm_trainer_opts o = gm_trainer_opts_default();
    o.threads = cli_rank_threads();
    o.seq = 512, o.batch = 8, o.accum = 1, o.lr = 2e-5f, o.eval_every = 50, o.save_every = 0;
    o.adam.weight_decay = 0;
    const char *data = NULL, *tokenizer = NULL;
    double eval_frac = 0.05;
    long epochs = 1, steps = 0;
    int lr_min_set = 0, rc = 0, pack = 1;
    gm_on_bad on_bad = GM_ON_BAD_STOP;
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        double f;
        int takes = 1;
        if (!strcmp(a, "--resume")) {
            o.resume = "";
            if (v && v[0] != '-') o.resume = v, i++;
            continue;
        }
        if (!strcmp(a, "--recompute")) { o.recompute = 1; continue; }
        if (!strcmp(a, "--pack")) { pack = 1; continue; }
        if (!strcmp(a, "--no-pack")) { pack = 0; continue; }
        if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) { o.quiet = 1; continue; }
        if (!v) {
            rc = rank0 ? cli_usage(C, a[0] == '-' ? "%s needs a value (or is unknown)" : "unexpected argument '%s'", a)
                       : CLI_USAGE;
            break;
        }
#define INT(flag, lo, hi, dst) else if (!strcmp(a, flag)) { if (!cli_parse_int(v, lo, hi, &n)) goto bad; dst = (int)n; }
#define FLT(flag, lo, hi, dst) \
    else if (!strcmp(a, flag)) { if (!cli_parse_float(v, &f) || !(f >= lo && f <= hi)) goto bad; dst = (float)f; }
        if (!strcmp(a, "--init")) o.init = v;
        else if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--out")) o.out = v;
        else if (!strcmp(a, "--tokenizer")) tokenizer = v;
        else if (!strcmp(a, "--on-bad")) {
            if (!strcmp(v, "skip")) on_bad = GM_ON_BAD_SKIP;
            else if (!strcmp(v, "stop")) on_bad = GM_ON_BAD_STOP;
            else goto bad;
        } else if (!strcmp(a, "--decay")) {
            if (!strcmp(v, "cosine")) o.decay = GM_LR_COSINE;
            else if (!strcmp(v, "linear")) o.decay = GM_LR_LINEAR;
            else if (!strcmp(v, "constant")) o.decay = GM_LR_CONSTANT;
            else goto bad;
        } else if (!strcmp(a, "--dtype")) {
            if (!strcmp(v, "f32")) o.save_dtype = GM_DT_F32;
            else if (!strcmp(v, "bf16")) o.save_dtype = GM_DT_BF16;
            else goto bad;
        } else if (!strcmp(a, "--eval-frac")) {
            if (!cli_parse_float(v, &eval_frac) || !(eval_frac >= 0 && eval_frac < 1)) goto bad;
        } else if (!strcmp(a, "--seed")) {
            if (!cli_parse_int(v, 0, 0x7fffffffffffffffL, &n)) goto bad;
            o.seed = (uint64_t)n;
        } else if (!strcmp(a, "--lr-min")) {
            if (!cli_parse_float(v, &f) || !(f >= 0 && f <= 10)) goto bad;
            o.lr_min = (float)f, lr_min_set = 1;
        } else if (!strcmp(a, "--epochs")) {
            if (!cli_parse_int(v, 1, 1 << 20, &epochs)) goto bad;
        } else if (!strcmp(a, "--steps")) {
            if (!cli_parse_int(v, 1, 1 << 30, &steps)) goto bad;
        }
        INT("--seq", 1, 1 << 20, o.seq)
        INT("--batch", 1, 1 << 20, o.batch)
        INT("--accum", 1, 1 << 20, o.accum)
        INT("--warmup", 0, 1 << 30, o.warmup)
        INT("--eval-every", 0, 1 << 30, o.eval_every)
        INT("--save-every", 0, 1 << 30, o.save_every)
        INT("--keep", 0, 1 << 20, o.keep)
        INT("--threads", 1, 1024, o.threads)
        INT("-t", 1, 1024, o.threads)
        INT("--tp", 1, 1 << 16, o.tp)
        INT("--zero", 0, 1, o.zero)
        FLT("--lr", 0, 10, o.lr)
        FLT("--wd", 0, 10, o.adam.weight_decay)
        FLT("--clip", 0, 1e9, o.adam.clip)
        FLT("--beta1", 0, 0.999999, o.adam.beta1)
        FLT("--beta2", 0, 0.999999999, o.adam.beta2)
        else {
            rc = rank0 ? cli_usage(C, "unknown option '%s'", a) : CLI_USAGE;
            break;
        }
#undef INT
#undef FLT
        i += takes;
        continue;
    bad:
        rc = rank0 ? cli_usage(C, "bad value for %s: '%s'", a, v) : CLI_USAGE;
    }
    if (!rc && !o.init) rc = rank0 ? cli_usage(C, "--init MODEL is required (the model to fine-tune)") : CLI_USAGE;
    if (!rc && !data) rc = rank0 ? cli_usage(C, "--data FILE is required") : CLI_USAGE;
    if (!rc && !o.out) rc = rank0 ? cli_usage(C, "--out DIR is required") : CLI_USAGE;
    if (!rc && !lr_min_set) o.lr_min = o.lr / 10;
    if (!rc && o.lr_min > o.lr) rc = rank0 ? cli_usage(C, "--lr-min is above --lr") : CLI_USAGE;
    if (rc) {
        gm_dist_finalize(d);
        return rc;
    }

    /* every rank reads and tokenizes the data itself (deterministic), so nothing large is broadcast */
    sft_run r;
    memset(&r, 0, sizeof r);
    r.perm_epoch = -1, r.pk_epoch = -1;
    char *tok_path = NULL;
    gm_tokenizer *tok = NULL;
    gm_status st = gm_align_tokenizer_path(tokenizer, o.init, &tok_path);
    if (!st) st = gm_tokenizer_load(tok_path, &tok);
    gm_sft_load_opts lo = {on_bad, o.seq + 1, rank0 ? stderr : NULL, 20};
    if (!st) st = gm_sft_load(data, tok, &lo, &r.train);
    gm_tokenizer_free(tok);
    if (!st) st = gm_sft_split(&r.train, eval_frac, o.seed, &r.eval);
    if (!st && r.train.n == 0) st = gm_fail(GM_ERR_ARG, "%s: every example went to the held-out split", data);
    r.B = o.batch, r.accum = o.accum, r.seed = o.seed, r.pack = pack, r.seq = o.seq;
    r.dp_rank = gm_dist_dp_rank(d), r.dp_size = gm_dist_dp_size(d);
    if (!st) {
        r.perm = malloc(sizeof(int) * (size_t)r.train.n);
        r.rows = malloc(sizeof *r.rows * (size_t)r.B);
        r.in = malloc(sizeof(int32_t) * (size_t)r.B * (size_t)o.seq);
        r.tg = malloc(sizeof(int32_t) * (size_t)r.B * (size_t)o.seq);
        r.pos = malloc(sizeof(int32_t) * (size_t)r.B * (size_t)o.seq);
        if (!r.perm || !r.rows || !r.in || !r.tg || !r.pos) st = gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    /* packed: the rows of every epoch asked for (each packs its own order), and the held-out rows */
    long long rows_total = r.train.n * (long long)epochs;
    double positions = 0; /* real tokens per epoch */
    if (!st && pack) {
        st = count_epochs(&r, epochs);
        if (!st && r.eval.n) st = gm_sft_pack(r.eval.ex, NULL, r.eval.n, o.seq, &r.eval_pk);
        if (!st) rows_total = r.cum_rows[epochs];
        for (int i = 0; i < r.train.n; i++) positions += gm_sft_positions(&r.train.ex[i], o.seq);
    }
    if (!st) {
        long long per_step = (long long)r.B * r.dp_size * o.accum;
        o.steps = steps ? (int)steps : (int)((rows_total + per_step - 1) / per_step);
        if (o.steps < 1) o.steps = 1;
        if (o.warmup > o.steps) o.warmup = o.steps;
        o.micro_fn = sft_micro, o.fn_ctx = &r, o.tokenizer = tok_path;
        o.eval_fn = r.eval.n ? sft_eval : NULL;
        if (rank0) {
            fprintf(stderr,
                    "gemma sft: %s: %ld records, %d train + %d held-out examples (%zu tokens, %zu trained); %ld bad "
                    "records skipped, %ld examples cut to %d tokens, %ld left out (no model token in the first %d)\n",
                    data, r.train.n_records, r.train.n, r.eval.n, r.train.n_tokens + r.eval.n_tokens,
                    r.train.n_loss_tokens + r.eval.n_loss_tokens, r.train.n_bad, r.train.n_truncated, o.seq + 1,
                    r.train.n_too_long, o.seq + 1);
            if (pack)
                fprintf(stderr, "gemma sft: packed %d examples into %.1f rows of %d tokens per epoch: packing "
                                "efficiency %.1f%% (real tokens / (rows x seq)); %d held-out rows\n", r.train.n,
                        (double)rows_total / epochs, o.seq, 100 * positions * epochs / ((double)rows_total * o.seq),
                        r.eval_pk.n_rows);
            fprintf(stderr, "gemma sft: %d steps of %d x %d x %d %s (%.2f epochs)\n", o.steps, r.dp_size, r.B,
                    o.accum, pack ? "packed rows" : "examples",
                    (double)o.steps * per_step / (rows_total / (double)epochs));
        }
    }
    gm_status mine = st;
    st = gm_dist_max_int(d, st);
    if (st) {
        if (mine) fprintf(stderr, "gemma sft: error: %s\n", gm_last_error());
        rc = CLI_RUNTIME;
    } else {
        gm_trainer *t = NULL;
        double t0 = cli_now();
        st = gm_trainer_new(d, &o, &t);
        if (!st) st = gm_trainer_run(t);
        double secs = cli_now() - t0;
        if (!st && rank0) {
            /* real tokens: the examples' own positions, padding not counted (this rank's times the data ranks) */
            double real = gm_dist_world(d) > 1 ? r.real_tokens * gm_dist_dp_size(d) : r.real_tokens;
            double slots = r.rows_run * o.seq;
            fprintf(stderr,
                    "gemma sft: done: %.0f real tokens (%.0f trained) in %.1f s; %s: %.1f%% of rows x seq real, %.1f%% "
                    "of the positions computed; %.0f tokens/s; chat with it: gemma chat -m %s/latest\n",
                    real, r.trained_tokens * gm_dist_dp_size(d), secs, pack ? "packed" : "one example per row",
                    slots > 0 ? 100 * r.real_tokens / slots : 0,
                    r.positions_run > 0 ? 100 * r.real_tokens / r.positions_run : 0, secs > 0 ? real / secs : 0, o.out);
        }
        gm_trainer_free(t);
        if (st) {
            const char *msg = gm_last_error();
            if (rank0 || strstr(msg, "another rank failed") == NULL) fprintf(stderr, "gemma sft: error: %s\n", msg);
            rc = CLI_RUNTIME;
        }
    }
    gm_sft_data_free(&r.train);
    gm_sft_data_free(&r.eval);
    free(r.perm);
    free(r.rows);
    free(r.in);
    free(r.tg);
    free(r.pos);
    free(r.cum_rows);
    gm_sft_packing_free(&r.pk);
    gm_sft_packing_free(&r.eval_pk);
    free(tok_path);
    gm_dist_finalize(d);
    return rc;
}
