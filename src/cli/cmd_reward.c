/* `gemma reward train | score`: the Bradley–Terry reward model of train/reward.h. train fits a scalar head
 * (and the backbone) on preference pairs, reports held-out pairwise accuracy, logs CSV + SVG and writes the
 * model in transformers' GemmaForSequenceClassification layout; score prints rewards of conversations or of
 * both sides of pairs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "cli/cli.h"
#include "formats/safetensors.h"
#include "model/config.h"
#include "train/adamw.h"
#include "train/dist.h"
#include "train/plot.h"
#include "train/reward.h"
#include "train/sft.h"

static const char *HELP =
    "usage: gemma reward train --init MODEL --data PAIRS.jsonl --out DIR [options]\n"
    "       gemma reward score -m RM (--data FILE.jsonl | --prompt TEXT --response TEXT) [options]\n"
    "       mpirun -np N gemma reward train ...    (N data ranks)\n"
    "A reward model is MODEL with a scalar head on the last token's final hidden state, trained with the\n"
    "Bradley-Terry loss -log sigmoid(r_chosen - r_rejected). Each side is scored at its final <end_of_turn>.\n"
    "train:\n"
    "  --init MODEL       the backbone: an HF directory or .gguf (usually the SFT model), or a reward model\n"
    "                     to continue training\n"
    "  --data FILE        pairs, one JSON object per line (or a JSON array):\n"
    "                       {\"prompt\": TEXT or MESSAGES, \"chosen\": TEXT or MESSAGES, \"rejected\": ...}\n"
    "                       {\"chosen\": \"\\n\\nHuman: ...\\n\\nAssistant: ...\", \"rejected\": ...}  (Anthropic HH)\n"
    "  --on-bad MODE      stop (default) or skip malformed pairs (each is reported by file:line)\n"
    "  --eval-frac F      held-out fraction for loss and pairwise accuracy (default 0.1)\n"
    "  --seq N            tokens per side at most (default 512; longer pairs are left out and counted)\n"
    "  --batch N          pairs per micro-batch per rank (default 4)   --accum N   micro-batches per step (1)\n"
    "  --epochs N         passes over the pairs (default 1)           --steps N   optimizer steps (overrides)\n"
    "  --lr F             peak learning rate (default 1e-5)   --lr-min F (lr / 10)   --warmup N (steps / 10)\n"
    "  --wd F             weight decay (default 0)   --clip F   gradient-norm clip (default 1.0)\n"
    "  --seed N           split, order and head init (default 1)\n"
    "  --eval-every N     held-out loss and accuracy every N steps and at the end (default 50)\n"
    "  --out DIR          DIR/model (the reward model: config.json, model.safetensors with score.weight [1, d],\n"
    "                     tokenizer), DIR/reward_log.csv, DIR/loss.svg, DIR/accuracy.svg\n"
    "  --tokenizer FILE   tokenizer (default: MODEL's)\n"
    "score:\n"
    "  -m, --model RM     a reward model directory (DIR/model of reward train)\n"
    "  --data FILE        records: pairs (both sides scored, accuracy reported) or conversations (any record\n"
    "                     gemma sft reads); one JSON line out per record\n"
    "  --prompt TEXT --response TEXT   score one exchange\n"
    "  --on-bad MODE      stop (default) or skip\n"
    "common:\n"
    "  -t, --threads N    threads (default: all cores)   -q, --quiet   no per-step lines\n"
    "exit status: 0 done, 1 runtime error (unreadable or malformed files), 2 usage error\n";


/* 1 when dir holds a reward model (model.safetensors has score.weight) */
static int is_reward_dir(const char *dir) {
    char *p = gm_path_join(dir, "model.safetensors");
    gm_st_file *f = NULL;
    int yes = p && gm_file_exists(p) && gm_safetensors_open(p, 1, &f) == GM_OK &&
              gm_safetensors_find(f, GM_REWARD_HEAD) != NULL;
    gm_safetensors_close(f);
    free(p);
    gm_clear_error();
    return yes;
}

static int longest_pair(const gm_pref_pair *const *rows, int P) {
    int T = 1;
    for (int i = 0; i < P; i++) {
        if (rows[i]->n_chosen > T) T = rows[i]->n_chosen;
        if (rows[i]->n_rejected > T) T = rows[i]->n_rejected;
    }
    return T;
}

static gm_status plot(const char *out, const char *file, const char *title, const char *ylabel, const double *x,
                      const double *y1, int n1, const char *l1, const double *x2, const double *y2, int n2,
                      const char *l2) {
    char *path = gm_path_join(out, file);
    if (!path) return gm_fail(GM_ERR_NOMEM, "out of memory");
    gm_plot_series s[2] = {{l1, x, y1, n1, NULL, 0}, {l2, x2, y2, n2, NULL, 1}};
    gm_plot_opts po = {title, "step", ylabel, 0, 0, 0};
    gm_status st = gm_plot_svg(path, &po, s, n2 > 0 ? 2 : 1);
    free(path);
    return st;
}

static int reward_train(int argc, char **argv) {
    const char *C = "reward train";
    gm_dist *d;
    if (gm_dist_init(&argc, &argv, 1, &d)) return cli_fail(C);
    int rank0 = gm_dist_rank(d) == 0, rc = 0, quiet = 0;
    const char *init = NULL, *data = NULL, *out = NULL, *tokenizer = NULL;
    long seq = 512, batch = 4, accum = 1, epochs = 1, steps = 0, warmup = -1, eval_every = 50;
    long threads = cli_rank_threads();
    long seed = 1;
    double eval_frac = 0.1, lr = 1e-5, lr_min = -1, wd = 0, clip = 1.0;
    gm_on_bad on_bad = GM_ON_BAD_STOP;
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) { quiet = 1; continue; }
        if (a[0] != '-') { rc = rank0 ? cli_usage(C, "unexpected argument '%s'", a) : CLI_USAGE; break; }
        if (!v) { rc = rank0 ? cli_usage(C, "%s needs a value (or is unknown)", a) : CLI_USAGE; break; }
        int ok = 1;
        if (!strcmp(a, "--init")) init = v;
        else if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--tokenizer")) tokenizer = v;
        else if (!strcmp(a, "--on-bad")) ok = !strcmp(v, "skip") ? (on_bad = GM_ON_BAD_SKIP, 1) : !strcmp(v, "stop");
        else if (!strcmp(a, "--eval-frac")) ok = cli_parse_float(v, &eval_frac) && eval_frac >= 0 && eval_frac < 1;
        else if (!strcmp(a, "--seq")) ok = cli_parse_int(v, 2, 1 << 20, &seq);
        else if (!strcmp(a, "--batch")) ok = cli_parse_int(v, 1, 1 << 16, &batch);
        else if (!strcmp(a, "--accum")) ok = cli_parse_int(v, 1, 1 << 16, &accum);
        else if (!strcmp(a, "--epochs")) ok = cli_parse_int(v, 1, 1 << 20, &epochs);
        else if (!strcmp(a, "--steps")) ok = cli_parse_int(v, 1, 1 << 30, &steps);
        else if (!strcmp(a, "--warmup")) ok = cli_parse_int(v, 0, 1 << 30, &warmup);
        else if (!strcmp(a, "--eval-every")) ok = cli_parse_int(v, 0, 1 << 30, &eval_every);
        else if (!strcmp(a, "--seed")) ok = cli_parse_int(v, 0, 0x7fffffffffffffffL, &seed);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) ok = cli_parse_int(v, 1, 1024, &threads);
        else if (!strcmp(a, "--lr")) ok = cli_parse_float(v, &lr) && lr >= 0 && lr <= 10;
        else if (!strcmp(a, "--lr-min")) ok = cli_parse_float(v, &lr_min) && lr_min >= 0 && lr_min <= 10;
        else if (!strcmp(a, "--wd")) ok = cli_parse_float(v, &wd) && wd >= 0 && wd <= 10;
        else if (!strcmp(a, "--clip")) ok = cli_parse_float(v, &clip) && clip >= 0;
        else {
            rc = rank0 ? cli_usage(C, "unknown option '%s'", a) : CLI_USAGE;
            break;
        }
        if (!ok) rc = rank0 ? cli_usage(C, "bad value for %s: '%s'", a, v) : CLI_USAGE;
        i++;
    }
    if (!rc && (!init || !data || !out))
        rc = rank0 ? cli_usage(C, "--init MODEL, --data FILE and --out DIR are required") : CLI_USAGE;
    if (!rc && lr_min < 0) lr_min = lr / 10;
    if (rc) {
        gm_dist_finalize(d);
        return rc;
    }

    gm_pref_data tr = {0}, ev = {0};
    gm_reward_model *rm = NULL;
    gm_dist_opt *opt = NULL;
    char *tok_path = NULL, *model_dir = NULL, *csv_path = NULL;
    FILE *csv = NULL;
    gm_tokenizer *tok = NULL;
    int *perm = NULL, *lens = NULL;
    int32_t *in = NULL;
    const gm_pref_pair **rows = NULL;
    double *hx = NULL, *hl = NULL, *ex = NULL, *el = NULL, *ea = NULL, *ha = NULL;
    int n_ev = 0;
    int P = (int)batch, dp = gm_dist_dp_size(d), dpr = gm_dist_dp_rank(d);

    gm_status st = gm_align_tokenizer_path(tokenizer, init, &tok_path);
    if (!st) st = gm_tokenizer_load(tok_path, &tok);
    gm_sft_load_opts lo = {on_bad, (int)seq, rank0 ? stderr : NULL, 20};
    if (!st) st = gm_pref_load(data, tok, &lo, &tr);
    if (!st) st = gm_pref_split(&tr, eval_frac, (uint64_t)seed, &ev);
    if (!st && tr.n == 0) st = gm_fail(GM_ERR_ARG, "%s: every pair went to the held-out split", data);
    gm_train_opts to = gm_train_opts_default(2 * P, (int)seq, (int)threads);
    if (!st) {
        if (is_reward_dir(init)) st = gm_reward_load(init, d, &to, &rm);
        else {
            gm_train_model *m = NULL;
            st = gm_align_load_model(d, init, &to, &m);
            if (!st) st = gm_reward_new(m, (uint64_t)seed, GM_TRAIN_INIT_STD, &rm);
        }
    }
    gm_adamw_params ap = gm_adamw_params_default();
    ap.weight_decay = (float)wd, ap.clip = (float)clip;
    if (!st) st = gm_dist_opt_new(d, &ap, rm->m, 1, &opt);
    long long per_step = (long long)P * dp * accum;
    int n_steps = steps ? (int)steps : (int)((epochs * (long long)(tr.n > 0 ? tr.n : 1) + per_step - 1) / per_step);
    if (n_steps < 1) n_steps = 1;
    int n_warm = warmup >= 0 ? (int)(warmup < n_steps ? warmup : n_steps) : n_steps / 10;
    if (!st) {
        perm = malloc(sizeof(int) * (size_t)tr.n);
        lens = malloc(sizeof(int) * 2 * (size_t)P);
        in = malloc(sizeof(int32_t) * 2 * (size_t)P * (size_t)seq);
        rows = malloc(sizeof *rows * (size_t)P);
        hx = malloc(sizeof(double) * (size_t)n_steps), hl = malloc(sizeof(double) * (size_t)n_steps);
        ha = malloc(sizeof(double) * (size_t)n_steps);
        ex = malloc(sizeof(double) * (size_t)(n_steps + 1)), el = malloc(sizeof(double) * (size_t)(n_steps + 1));
        ea = malloc(sizeof(double) * (size_t)(n_steps + 1));
        model_dir = gm_path_join(out, "model");
        csv_path = gm_path_join(out, "reward_log.csv");
        if (!perm || !lens || !in || !rows || !hx || !hl || !ha || !ex || !el || !ea || !model_dir || !csv_path)
            st = gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    if (!st && rank0) {
        if (mkdir(out, 0755) != 0 && !gm_file_exists(out))
            st = gm_fail(GM_ERR_IO, "%s: cannot create the directory", out);
        else if (!(csv = fopen(csv_path, "w"))) st = gm_fail(GM_ERR_IO, "%s: cannot create", csv_path);
        else fprintf(csv, "step,loss,accuracy,lr,grad_norm,head_grad_norm,eval_loss,eval_accuracy,seconds\n");
    }
    gm_status mine = st;
    st = gm_dist_max_int(d, st);
    if (st) {
        if (mine) fprintf(stderr, "gemma %s: error: %s\n", C, gm_last_error());
        rc = CLI_RUNTIME;
        goto done;
    }
    if (rank0)
        fprintf(stderr, "gemma reward train: %s: %ld records, %d train + %d held-out pairs; %ld bad records skipped, "
                        "%ld pairs longer than %ld tokens left out; %d steps of %d x %d x %ld pairs\n",
                data, tr.n_records, tr.n, ev.n, tr.n_bad, tr.n_too_long, seq, n_steps, dp, P, accum);
    gm_lr_schedule sched = {(float)lr, (float)lr_min, n_warm, n_steps, GM_LR_COSINE};
    long perm_epoch = -1;
    double t0 = cli_now(), tokens = 0;
    for (int step = 0; step < n_steps && !st; step++) {
        double ts = cli_now(), loss_sum = 0;
        int right = 0;
        gm_train_zero_grad(rm->m);
        for (int k = 0; k < accum && !st; k++) {
            long long base = ((long long)step * accum + k) * P * dp + (long long)dpr * P;
            for (int i = 0; i < P; i++) {
                long long g = base + i;
                long epoch = (long)(g / tr.n);
                if (epoch != perm_epoch) {
                    for (int j = 0; j < tr.n; j++) perm[j] = j;
                    uint64_t s = (uint64_t)seed * 0x9E3779B97F4A7C15ull + (uint64_t)epoch + 1;
                    gm_align_shuffle(perm, tr.n, &s);
                    perm_epoch = epoch;
                }
                rows[i] = &tr.p[perm[g % tr.n]];
                tokens += rows[i]->n_chosen + rows[i]->n_rejected;
            }
            int T = longest_pair(rows, P), c = 0;
            float l = 0;
            gm_reward_batch(rows, P, T, rm->m->cfg.pad_id, in, lens);
            st = gm_reward_forward_backward(rm, in, lens, P, T, &l, NULL, &c);
            loss_sum += l, right += c;
        }
        mine = st;
        if ((st = gm_dist_max_int(d, st))) {
            if (mine) fprintf(stderr, "gemma %s: step %d: error: %s\n", C, step + 1, gm_last_error());
            break;
        }
        double loss = gm_dist_sum_dp(d, loss_sum / accum) / dp;
        double acc = gm_dist_sum_dp(d, right) / ((double)P * accum * dp);
        float rate = gm_lr_at(&sched, step);
        gm_step_info info;
        int res = gm_dist_opt_step(opt, rm->m, rate, 1.0f / (float)accum, (float)loss, &info);
        double hn = res == GM_STEP_TAKEN ? gm_reward_head_step(rm, d, &ap, rate, 1.0f / (float)accum) : NAN;
        if (res != GM_STEP_TAKEN) memset(rm->d_head, 0, sizeof(float) * (size_t)rm->d);
        if (res != GM_STEP_TAKEN && rank0) fprintf(stderr, "gemma %s: %s\n", C, info.message);
        hx[step] = step + 1, hl[step] = loss, ha[step] = acc;
        double evl = NAN, eva = NAN;
        int last = step + 1 == n_steps;
        if (ev.n && (last || (eval_every > 0 && (step + 1) % eval_every == 0))) {
            st = gm_reward_eval(rm, ev.p, ev.n, rm->m->cfg.pad_id, &evl, &eva);
            if (!st) ex[n_ev] = step + 1, el[n_ev] = evl, ea[n_ev++] = eva;
        }
        if (rank0 && !st) {
            if (!quiet || last || !isnan(evl))
                fprintf(stderr, "step %5d/%d  loss %.4f  acc %.3f  lr %.2e  grad norm %.3f%s", step + 1, n_steps, loss,
                        acc, (double)rate, info.grad_norm, isnan(evl) ? "\n" : "");
            if (!isnan(evl)) fprintf(stderr, "  held-out loss %.4f  accuracy %.3f\n", evl, eva);
            fprintf(csv, "%d,%.6f,%.6f,%.6g,%.6g,%.6g,%.6f,%.6f,%.3f\n", step + 1, loss, acc, (double)rate,
                    info.grad_norm, hn, evl, eva, cli_now() - ts);
        }
    }
    double secs = cli_now() - t0;
    if (!st && rank0) {
        fclose(csv), csv = NULL;
        st = plot(out, "loss.svg", "gemma reward train: Bradley-Terry loss", "loss", hx, hl, n_steps, "train loss", ex,
                  el, n_ev, "held-out loss");
        if (!st) st = plot(out, "accuracy.svg", "gemma reward train: pairwise accuracy", "accuracy", hx, ha, n_steps,
                           "train batch accuracy", ex, ea, n_ev, "held-out accuracy");
    }
    /* the model: parameters gathered from the ranks, written by rank 0 */
    if (!st) {
        float *full = malloc(sizeof(float) * gm_dist_full_params(d, rm->m));
        st = full ? gm_dist_model_gather(d, rm->m, full) : gm_fail(GM_ERR_NOMEM, "out of memory");
        if (!st && rank0) st = gm_reward_save(rm, full, model_dir, tok_path, init);
        free(full);
    }
    if (st) {
        if (rank0) fprintf(stderr, "gemma %s: error: %s\n", C, gm_last_error());
        rc = CLI_RUNTIME;
    } else if (rank0) {
        fprintf(stderr, "gemma reward train: done in %.1f s (%.0f tokens/s)%s; reward model in %s\n", secs,
                secs > 0 ? tokens * dp / secs : 0, "", model_dir);
        if (n_ev) printf("held-out pairs %d: loss %.4f, pairwise accuracy %.4f\n", ev.n, el[n_ev - 1], ea[n_ev - 1]);
    }
done:
    if (csv) fclose(csv);
    gm_dist_opt_free(opt);
    gm_reward_free(rm);
    gm_tokenizer_free(tok);
    gm_pref_data_free(&tr);
    gm_pref_data_free(&ev);
    free(tok_path);
    free(model_dir);
    free(csv_path);
    free(perm);
    free(lens);
    free(in);
    free(rows);
    free(hx), free(hl), free(ha), free(ex), free(el), free(ea);
    gm_dist_finalize(d);
    return rc;
}

/* ---- score ----------------------------------------------------------------------------------------- */

typedef struct {
    gm_reward_model *rm;
    const gm_tokenizer *tok;
    int max_len;
    long n_pairs, n_right, n_conv;
    double sum;
} score_ctx;

static gm_status score_ids(score_ctx *x, const int32_t *ids, int n, float *r) {
    if (n > x->max_len) return gm_fail(GM_ERR_ARG, "%d tokens, more than the model's context %d", n, x->max_len);
    return gm_reward_score(x->rm, ids, &n, 1, n, r);
}

static gm_status score_record(void *vctx, const gm_json *rec, const char *where, long line) {
    score_ctx *x = vctx;
    gm_sft_conv c = {0};
    gm_sft_example e[2] = {{0}};
    gm_status st = GM_OK;
    int pair = rec->type == GM_JSON_OBJECT && gm_json_get(rec, "chosen") && gm_json_get(rec, "rejected");
    float r[2] = {0, 0};
    for (int s = 0; s < (pair ? 2 : 1) && !st; s++) {
        gm_sft_conv_clear(&c);
        if (pair) st = gm_sft_pref_conv(rec, s ? "rejected" : "chosen", &c);
        else if (gm_sft_record_conv(rec, 0, &c) < 0) st = GM_ERR_FORMAT;
        if (!st) st = gm_sft_encode(x->tok, c.msgs, c.n, 1, &e[s]);
        if (!st) st = score_ids(x, e[s].ids, e[s].n, &r[s]);
    }
    gm_sft_conv_clear(&c);
    gm_sft_example_free(&e[0]);
    gm_sft_example_free(&e[1]);
    if (st) return st == GM_ERR_NOMEM ? st : gm_fail_prefix(GM_ERR_FORMAT, "%s: ", where);
    if (pair) {
        x->n_pairs++, x->n_right += r[0] > r[1];
        printf("{\"line\": %ld, \"chosen\": %.6g, \"rejected\": %.6g, \"margin\": %.6g}\n", line, (double)r[0],
               (double)r[1], (double)r[0] - r[1]);
    } else {
        x->n_conv++, x->sum += r[0];
        printf("{\"line\": %ld, \"reward\": %.6g}\n", line, (double)r[0]);
    }
    return GM_OK;
}

static int reward_score(int argc, char **argv) {
    const char *C = "reward score";
    const char *model = NULL, *data = NULL, *prompt = NULL, *response = NULL;
    long threads = cli_default_threads(), seq = 0;
    gm_on_bad on_bad = GM_ON_BAD_STOP;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) continue;
        if (!v) return cli_usage(C, a[0] == '-' ? "%s needs a value (or is unknown)" : "unexpected argument '%s'", a);
        int ok = 1;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--prompt")) prompt = v;
        else if (!strcmp(a, "--response")) response = v;
        else if (!strcmp(a, "--on-bad")) ok = !strcmp(v, "skip") ? (on_bad = GM_ON_BAD_SKIP, 1) : !strcmp(v, "stop");
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) ok = cli_parse_int(v, 1, 1024, &threads);
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) ok = cli_parse_int(v, 2, 1 << 20, &seq);
        else return cli_usage(C, "unknown option '%s'", a);
        if (!ok) return cli_usage(C, "bad value for %s: '%s'", a, v);
        i++;
    }
    if (!model) return cli_usage(C, "-m RM (a reward model directory) is required");
    if (!data == !(prompt && response)) return cli_usage(C, "give --data FILE, or --prompt TEXT with --response TEXT");
    gm_config cfg;
    char *cfg_path = gm_path_join(model, "config.json"), *tok_path = NULL;
    gm_status st = cfg_path ? gm_config_load(cfg_path, &cfg) : gm_fail(GM_ERR_NOMEM, "out of memory");
    free(cfg_path);
    int T = seq ? (int)seq : cfg.max_pos < 2048 ? cfg.max_pos : 2048;
    gm_train_opts to = gm_train_opts_default(2, T, (int)threads);
    score_ctx x = {0};
    gm_tokenizer *tok = NULL;
    if (!st) st = gm_reward_load(model, NULL, &to, &x.rm);
    if (!st) st = gm_align_tokenizer_path(NULL, model, &tok_path);
    if (!st) st = gm_tokenizer_load(tok_path, &tok);
    x.tok = tok, x.max_len = T;
    if (!st && data) {
        gm_sft_load_opts lo = {on_bad, 0, stderr, 20};
        long n_rec = 0, n_bad = 0;
        st = gm_align_each_record(data, &lo, score_record, &x, &n_rec, &n_bad);
        if (!st) {
            if (x.n_pairs)
                fprintf(stderr, "%ld pairs: pairwise accuracy %.4f\n", x.n_pairs, (double)x.n_right / x.n_pairs);
            if (x.n_conv) fprintf(stderr, "%ld conversations: mean reward %.4f\n", x.n_conv, x.sum / x.n_conv);
            if (n_bad) fprintf(stderr, "%ld bad records skipped\n", n_bad);
        }
    } else if (!st) {
        gm_chat_message m[2] = {{"user", prompt}, {"model", response}};
        gm_sft_example e;
        float r = 0;
        st = gm_sft_encode(tok, m, 2, 1, &e);
        if (!st) st = score_ids(&x, e.ids, e.n, &r);
        if (!st) printf("%.6g\n", (double)r);
        if (!st) gm_sft_example_free(&e);
    }
    gm_reward_free(x.rm);
    gm_tokenizer_free(tok);
    free(tok_path);
    if (st) return cli_fail(C);
    return CLI_OK;
}

int cmd_reward(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fputs(HELP, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(HELP, stdout);
            return CLI_OK;
        }
    if (!strcmp(argv[1], "train")) return reward_train(argc - 1, argv + 1);
    if (!strcmp(argv[1], "score")) return reward_score(argc - 1, argv + 1);
    return cli_usage("reward", "unknown subcommand '%s' (train or score)", argv[1]);
}
