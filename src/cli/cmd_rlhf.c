/* `gemma rlhf`: REINFORCE with a leave-one-out baseline and a KL penalty to the frozen SFT model
 * (train/rlhf.h), rewarded by a reward model (train/reward.h) or a programmatic reward. Writes HF
 * checkpoints of the policy (OUT/checkpoint-STEP, OUT/latest: `gemma chat -m OUT/latest`), a CSV log, SVG
 * plots of reward, KL and length, and periodic policy-vs-reference samples in the files `gemma sxs` reads. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "base/file.h"
#include "base/utf8.h"
#include "cli/cli.h"
#include "train/adamw.h"
#include "train/checkpoint.h"
#include "train/dist.h"
#include "train/plot.h"
#include "train/reward.h"
#include "train/rlhf.h"
#include "train/sft.h"

static const char *C = "rlhf";

static const char *HELP =
    "usage: gemma rlhf --policy SFT_MODEL (--reward RM | --reward-fn target:ID) --prompts FILE.jsonl --out DIR\n"
    "                  [options]\n"
    "       mpirun -np N gemma rlhf ...       (N data ranks, each with its share of the prompts)\n"
    "For each prompt the policy samples K responses; each gets the reward model's score minus the KL penalty\n"
    "beta * sum_t (log pi - log pi_ref) (folded into the reward) minus an optional length penalty; the policy\n"
    "takes a REINFORCE step with the leave-one-out baseline. The reference is the frozen --policy model.\n"
    "  --policy MODEL     the SFT model (HF directory or .gguf): the start of the policy and the reference\n"
    "  --reward RM        a reward model directory (from gemma reward train)\n"
    "  --reward-fn target:ID   instead: reward = fraction of the response's tokens equal to ID (a synthetic task)\n"
    "  --prompts FILE     {\"prompt\": TEXT or MESSAGES} per line, or any SFT/HH record (cut before its answer)\n"
    "  --on-bad MODE      stop (default) or skip malformed prompt records\n"
    "  --kl BETA          KL coefficient (default 0.05)\n"
    "  --samples K        responses per prompt (default 4, at least 2)\n"
    "  --max-new N        response tokens at most (default 64)\n"
    "  --temp T           sampling temperature (default 1: the estimate is only unbiased at 1)\n"
    "  --len-penalty L    reward minus L per response token (default 0)\n"
    "  --prompts-per-step P   prompts per step per rank (default 4)\n"
    "  --steps N          optimizer steps (default 100)\n"
    "  --lr F             learning rate (default 1e-6), --lr-min F (lr), --warmup N (0), --clip F (1.0), --wd F (0)\n"
    "  --seed N           prompt order and sampling (default 1)\n"
    "  --seq N            longest prompt in tokens (default 448; longer ones are left out)\n"
    "  --sample-every N   every N steps (and at the end) sample the first 4 prompts with the policy and the\n"
    "                     reference: OUT/samples-STEP/{prompts,policy,reference}.jsonl (gemma sxs --prompts\n"
    "                     ... --a policy.jsonl --b reference.jsonl --judge MODEL) and OUT/samples.jsonl (default 20)\n"
    "  --save-every N     checkpoint every N steps and at the end (default 0: at the end)   --keep N (2)\n"
    "  --out DIR          checkpoints, rlhf_log.csv, reward.svg, kl.svg, length.svg, samples\n"
    "  --tokenizer FILE   tokenizer (default: the policy's)\n"
    "  -t, --threads N    threads   --tp M   model-parallel ranks   -q, --quiet   no per-step lines\n"
    "exit status: 0 done, 1 runtime error, 2 usage error\n";

typedef struct {
    gm_reward_model *rm; /* NULL: the target-token reward */
    int32_t target;
} reward_ctx;

static gm_status reward_fn(void *vctx, const int32_t *seq, const int *len, int K, int T, int n_prompt, float *r) {
    reward_ctx *x = vctx;
    if (x->rm) return gm_reward_score(x->rm, seq, len, K, T, r);
    for (int k = 0; k < K; k++) {
        int hit = 0, n = len[k] - n_prompt;
        for (int t = n_prompt; t < len[k]; t++) hit += seq[(size_t)k * T + t] == x->target;
        r[k] = n > 0 ? (float)hit / (float)n : 0.0f;
    }
    return GM_OK;
}


/* A JSON string; bytes that are not UTF-8 (a model can emit half a character) become U+FFFD, so every
 * line stays valid JSON. */
static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t k = gm_utf8_decode(s + i, n - i, NULL);
        if (!k) {
            fputs("\\ufffd", f);
            i++;
            continue;
        }
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c == '\r') fputs("\\r", f);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fwrite(s + i, 1, k, f);
        i += k;
    }
    fputc('"', f);
}

/* Text of row 0's response (without its stop token). */
static char *response_text(const gm_tokenizer *tok, const gm_rlhf_group *g, const gm_rlhf_opts *o) {
    int n = gm_rlhf_resp_len(g, 0);
    const int32_t *r = g->seq + g->n_prompt;
    if (n > 0 && (r[n - 1] == o->stop[0] || r[n - 1] == o->stop[1])) n--;
    char *text = NULL;
    size_t len = 0;
    if (gm_tokenizer_decode(tok, r, (size_t)n, &text, &len)) {
        gm_clear_error();
        return strdup("");
    }
    return text;
}

/* Side-by-side samples: the first prompts, one response each from policy and reference drawn with the same
 * random stream, their rewards; the three files gemma sxs reads, and one log line per prompt. */
static gm_status write_samples(const char *out, int step, gm_train_model *pol, gm_train_model *ref,
                               const gm_rlhf_prompts *pr, int n, const gm_rlhf_opts *o, gm_rlhf_group *g,
                               reward_ctx *rx, const gm_tokenizer *tok, uint64_t seed) {
    char dir[1024], path[1100];
    snprintf(dir, sizeof dir, "%s/samples-%d", out, step);
    if (mkdir(dir, 0755) != 0 && !gm_file_exists(dir)) return gm_fail(GM_ERR_IO, "%s: cannot create", dir);
    const char *names[3] = {"prompts.jsonl", "policy.jsonl", "reference.jsonl"};
    FILE *f[4] = {NULL, NULL, NULL, NULL};
    gm_status st = GM_OK;
    for (int i = 0; i < 3 && !st; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (!(f[i] = fopen(path, "w"))) st = gm_fail(GM_ERR_IO, "%s: cannot create", path);
    }
    snprintf(path, sizeof path, "%s/samples.jsonl", out);
    if (!st && !(f[3] = fopen(path, "a"))) st = gm_fail(GM_ERR_IO, "%s: cannot open", path);
    for (int i = 0; i < n && !st; i++) {
        char *text[2] = {NULL, NULL};
        float rw[2] = {0, 0};
        for (int w = 0; w < 2 && !st; w++) {
            uint64_t s = seed + (uint64_t)i; /* the same draws for both models */
            st = gm_rlhf_sample(w ? ref : pol, pr->ids[i], pr->n[i], o, &s, g);
            int T = 0;
            for (int k = 0; k < g->K; k++) T = g->len[k] > T ? g->len[k] : T;
            if (!st) {
                int32_t *rows = malloc(sizeof(int32_t) * (size_t)g->K * (size_t)T);
                if (!rows) st = gm_fail(GM_ERR_NOMEM, "out of memory");
                for (int k = 0; k < g->K && !st; k++)
                    for (int t = 0; t < T; t++)
                        rows[(size_t)k * T + t] = t < g->len[k] ? g->seq[(size_t)k * g->cap + t] : o->pad;
                if (!st) st = reward_fn(rx, rows, g->len, g->K, T, g->n_prompt, g->reward);
                free(rows);
            }
            if (!st) text[w] = response_text(tok, g, o), rw[w] = g->reward[0];
        }
        if (!st) {
            fprintf(f[0], "{\"id\": %d, \"prompt\": ", i);
            json_str(f[0], pr->text[i]);
            fputs("}\n", f[0]);
            for (int w = 0; w < 2; w++) {
                fprintf(f[1 + w], "{\"id\": %d, \"response\": ", i);
                json_str(f[1 + w], text[w] ? text[w] : "");
                fprintf(f[1 + w], ", \"reward\": %.6g}\n", (double)rw[w]);
            }
            fprintf(f[3], "{\"step\": %d, \"prompt\": ", step);
            json_str(f[3], pr->text[i]);
            fputs(", \"policy\": ", f[3]);
            json_str(f[3], text[0] ? text[0] : "");
            fputs(", \"reference\": ", f[3]);
            json_str(f[3], text[1] ? text[1] : "");
            fprintf(f[3], ", \"reward_policy\": %.6g, \"reward_reference\": %.6g}\n", (double)rw[0], (double)rw[1]);
        }
        free(text[0]);
        free(text[1]);
    }
    for (int i = 0; i < 4; i++)
        if (f[i] && fclose(f[i]) != 0 && !st) st = gm_fail(GM_ERR_IO, "%s: write failed", out);
    return st;
}

static gm_status save_policy(gm_dist *d, const char *out, gm_train_model *pol, gm_dist_opt *opt, int step,
                             uint64_t seed, const void *tok, size_t tok_len, const char *tok_name, const char *name,
                             int keep) {
    size_t n = gm_dist_full_params(d, pol);
    float *p = malloc(sizeof(float) * n), *m1 = malloc(sizeof(float) * n), *m2 = malloc(sizeof(float) * n);
    gm_status st = p && m1 && m2 ? GM_OK : gm_fail(GM_ERR_NOMEM, "cannot allocate a checkpoint's %zu floats", 3 * n);
    int updates = 0;
    if (!st) st = gm_dist_model_gather(d, pol, p);
    if (!st) st = gm_dist_opt_export(opt, m1, m2, &updates);
    if (!st && gm_dist_rank(d) == 0) {
        gm_ckpt_write_opts w;
        memset(&w, 0, sizeof w);
        w.cfg = &pol->cfg;
        w.layout.tensors = pol->full_tensors ? pol->full_tensors : pol->tensors;
        w.layout.n_tensors = pol->full_tensors ? pol->n_full_tensors : pol->n_tensors;
        w.layout.n_params = n;
        w.params = p, w.exp_avg = m1, w.exp_avg_sq = m2, w.dtype = GM_DT_F32;
        w.state.step = step, w.state.updates = updates, w.state.seed = seed;
        w.tokenizer = tok, w.tokenizer_len = tok_len, w.tokenizer_name = tok_name, w.name = name;
        char *written = NULL;
        st = gm_ckpt_save(out, &w, keep, &written);
        if (!st) fprintf(stderr, "gemma rlhf: saved %s\n", written);
        free(written);
    }
    free(p);
    free(m1);
    free(m2);
    return st;
}

static gm_status plot(const char *out, const char *file, const char *title, const char *ylabel, const double *x,
                      const double *a, const char *la, const double *b, const char *lb, int n) {
    char *path = gm_path_join(out, file);
    if (!path) return gm_fail(GM_ERR_NOMEM, "out of memory");
    gm_plot_series s[2] = {{la, x, a, n, NULL, 0}, {lb, x, b, n, NULL, 0}};
    gm_plot_opts po = {title, "step", ylabel, 0, 0, 0};
    gm_status st = gm_plot_svg(path, &po, s, b ? 2 : 1);
    free(path);
    return st;
}

int cmd_rlhf(int argc, char **argv) {
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
    int rank0 = gm_dist_rank(d) == 0, rc = 0, quiet = 0;
    const char *policy = NULL, *rm_dir = NULL, *rfn = NULL, *prompts = NULL, *out = NULL, *tokenizer = NULL;
    long K = 4, max_new = 64, P = 4, steps = 100, warmup = 0, seed = 1, seq = 448, sample_every = 20, save_every = 0;
    long keep = 2, threads = cli_rank_threads(), target = -1;
    double beta = 0.05, temp = 1.0, len_pen = 0, lr = 1e-6, lr_min = -1, clip = 1.0, wd = 0;
    gm_on_bad on_bad = GM_ON_BAD_STOP;
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) { quiet = 1; continue; }
        if (a[0] != '-') { rc = rank0 ? cli_usage(C, "unexpected argument '%s'", a) : CLI_USAGE; break; }
        if (!v) { rc = rank0 ? cli_usage(C, "%s needs a value (or is unknown)", a) : CLI_USAGE; break; }
        int ok = 1;
        if (!strcmp(a, "--policy")) policy = v;
        else if (!strcmp(a, "--reward")) rm_dir = v;
        else if (!strcmp(a, "--reward-fn")) {
            rfn = v;
            ok = !strncmp(v, "target:", 7) && cli_parse_int(v + 7, 0, 1 << 30, &target);
        } else if (!strcmp(a, "--prompts")) prompts = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--tokenizer")) tokenizer = v;
        else if (!strcmp(a, "--on-bad")) ok = !strcmp(v, "skip") ? (on_bad = GM_ON_BAD_SKIP, 1) : !strcmp(v, "stop");
        else if (!strcmp(a, "--kl")) ok = cli_parse_float(v, &beta) && beta >= 0;
        else if (!strcmp(a, "--samples")) ok = cli_parse_int(v, 2, 4096, &K);
        else if (!strcmp(a, "--max-new")) ok = cli_parse_int(v, 1, 1 << 20, &max_new);
        else if (!strcmp(a, "--temp")) ok = cli_parse_float(v, &temp) && temp > 0;
        else if (!strcmp(a, "--len-penalty")) ok = cli_parse_float(v, &len_pen) && len_pen >= 0;
        else if (!strcmp(a, "--prompts-per-step")) ok = cli_parse_int(v, 1, 1 << 20, &P);
        else if (!strcmp(a, "--steps")) ok = cli_parse_int(v, 1, 1 << 30, &steps);
        else if (!strcmp(a, "--lr")) ok = cli_parse_float(v, &lr) && lr >= 0 && lr <= 10;
        else if (!strcmp(a, "--lr-min")) ok = cli_parse_float(v, &lr_min) && lr_min >= 0 && lr_min <= 10;
        else if (!strcmp(a, "--warmup")) ok = cli_parse_int(v, 0, 1 << 30, &warmup);
        else if (!strcmp(a, "--clip")) ok = cli_parse_float(v, &clip) && clip >= 0;
        else if (!strcmp(a, "--wd")) ok = cli_parse_float(v, &wd) && wd >= 0;
        else if (!strcmp(a, "--seed")) ok = cli_parse_int(v, 0, 0x7fffffffffffffffL, &seed);
        else if (!strcmp(a, "--seq")) ok = cli_parse_int(v, 2, 1 << 20, &seq);
        else if (!strcmp(a, "--sample-every")) ok = cli_parse_int(v, 0, 1 << 30, &sample_every);
        else if (!strcmp(a, "--save-every")) ok = cli_parse_int(v, 0, 1 << 30, &save_every);
        else if (!strcmp(a, "--keep")) ok = cli_parse_int(v, 0, 1 << 20, &keep);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) ok = cli_parse_int(v, 1, 1024, &threads);
        else if (!strcmp(a, "--tp")) ok = 1;
        else {
            rc = rank0 ? cli_usage(C, "unknown option '%s'", a) : CLI_USAGE;
            break;
        }
        if (!ok) rc = rank0 ? cli_usage(C, "bad value for %s: '%s'", a, v) : CLI_USAGE;
        i++;
    }
    if (!rc && (!policy || !prompts || !out))
        rc = rank0 ? cli_usage(C, "--policy MODEL, --prompts FILE and --out DIR are required") : CLI_USAGE;
    if (!rc && !rm_dir == !rfn)
        rc = rank0 ? cli_usage(C, "give one of --reward RM and --reward-fn target:ID") : CLI_USAGE;
    if (!rc && lr_min < 0) lr_min = lr;
    if (rc) {
        gm_dist_finalize(d);
        return rc;
    }
    if (rank0 && temp != 1.0)
        fprintf(stderr, "gemma rlhf: note: --temp %g: the samples are not drawn from the policy itself, so the "
                        "gradient estimate is biased\n", temp);

    gm_rlhf_prompts pr = {0};
    gm_train_model *pol = NULL, *ref = NULL;
    gm_dist_opt *opt = NULL;
    gm_tokenizer *tok = NULL;
    reward_ctx rx = {NULL, (int32_t)target};
    gm_rlhf_group g = {0};
    char *tok_path = NULL, *tok_data = NULL, *csv_path = NULL;
    size_t tok_len = 0;
    FILE *csv = NULL;
    int *perm = NULL, dp = gm_dist_dp_size(d), dpr = gm_dist_dp_rank(d);
    const int32_t **pp = NULL;
    int *np = NULL;
    uint64_t *seeds = NULL;
    double *hx = NULL, *hr = NULL, *hs = NULL, *hk = NULL, *he = NULL, *hl = NULL;

    gm_status st = gm_align_tokenizer_path(tokenizer, policy, &tok_path);
    if (!st) st = gm_tokenizer_load(tok_path, &tok);
    if (!st) st = gm_file_read_all(tok_path, &tok_data, &tok_len);
    gm_sft_load_opts lo = {on_bad, (int)seq, rank0 ? stderr : NULL, 20};
    if (!st) st = gm_rlhf_load_prompts(prompts, tok, &lo, &pr);
    int longest = 1;
    for (int i = 0; i < pr.count; i++) longest = pr.n[i] > longest ? pr.n[i] : longest;
    int cap = longest + (int)max_new;
    gm_train_opts to = gm_train_opts_default((int)K, cap, (int)threads);
    if (!st) st = gm_align_load_model(d, policy, &to, &pol);
    if (!st) st = gm_align_load_model(d, policy, &to, &ref);
    if (!st && pol->cfg.max_pos < cap)
        st = gm_fail(GM_ERR_ARG, "prompts of up to %d tokens + %ld new exceed the model's context %d", longest, max_new,
                     pol->cfg.max_pos);
    if (!st && rm_dir) st = gm_reward_load(rm_dir, d, &to, &rx.rm);
    if (!st && rfn && target >= pol->cfg.vocab_size)
        st = gm_fail(GM_ERR_ARG, "--reward-fn target:%ld is past the vocabulary (%d)", target, pol->cfg.vocab_size);
    gm_adamw_params ap = gm_adamw_params_default();
    ap.weight_decay = (float)wd, ap.clip = (float)clip;
    if (!st) st = gm_dist_opt_new(d, &ap, pol, 1, &opt);
    if (!st) st = gm_rlhf_group_new(&g, (int)K, cap);
    if (!st) {
        perm = malloc(sizeof(int) * (size_t)pr.count);
        pp = malloc(sizeof *pp * (size_t)P);
        np = malloc(sizeof *np * (size_t)P);
        seeds = malloc(sizeof *seeds * (size_t)P);
        hx = malloc(sizeof(double) * (size_t)steps), hr = malloc(sizeof(double) * (size_t)steps);
        hs = malloc(sizeof(double) * (size_t)steps), hk = malloc(sizeof(double) * (size_t)steps);
        he = malloc(sizeof(double) * (size_t)steps), hl = malloc(sizeof(double) * (size_t)steps);
        csv_path = gm_path_join(out, "rlhf_log.csv");
        if (!perm || !pp || !np || !seeds || !hx || !hr || !hs || !hk || !he || !hl || !csv_path)
            st = gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    if (!st && rank0) {
        if (mkdir(out, 0755) != 0 && !gm_file_exists(out))
            st = gm_fail(GM_ERR_IO, "%s: cannot create the directory", out);
        else if (!(csv = fopen(csv_path, "w"))) st = gm_fail(GM_ERR_IO, "%s: cannot create", csv_path);
        else fprintf(csv, "step,reward,reward_std,kl,entropy,length,score,loss,grad_norm,lr,samples_per_s,seconds\n");
    }
    gm_status mine = st;
    st = gm_dist_max_int(d, st);
    if (st) {
        if (mine) fprintf(stderr, "gemma rlhf: error: %s\n", gm_last_error());
        rc = CLI_RUNTIME;
        goto done;
    }
    gm_rlhf_opts o = gm_rlhf_opts_default();
    o.K = (int)K, o.max_new = (int)max_new, o.temperature = (float)temp, o.beta = (float)beta;
    o.len_penalty = (float)len_pen, o.pad = pol->cfg.pad_id;
    o.stop[0] = gm_tokenizer_piece_id(tok, "<end_of_turn>"), o.stop[1] = pol->cfg.eos_id;
    if (rank0)
        fprintf(stderr, "gemma rlhf: %s: %d prompts (%ld records, %ld bad, %ld longer than %ld tokens); %ld steps of "
                        "%d x %ld prompts x %ld samples, up to %ld new tokens; beta %g; reward: %s\n",
                prompts, pr.count, pr.n_records, pr.n_bad, pr.n_too_long, seq, steps, dp, P, K, max_new, beta,
                rm_dir ? rm_dir : rfn);
    gm_lr_schedule sched = {(float)lr, (float)lr_min, (int)(warmup < steps ? warmup : steps), (int)steps, GM_LR_COSINE};
    long perm_epoch = -1;
    int n_sample = pr.count < 4 ? pr.count : 4;
    double t0 = cli_now(), samples = 0;
    for (int step = 0; step < steps && !st; step++) {
        for (int i = 0; i < P; i++) {
            long long gi = ((long long)step * dp + dpr) * P + i;
            long epoch = (long)(gi / pr.count);
            if (epoch != perm_epoch) {
                for (int j = 0; j < pr.count; j++) perm[j] = j;
                uint64_t s = (uint64_t)seed * 0x9E3779B97F4A7C15ull + (uint64_t)epoch + 1;
                gm_align_shuffle(perm, pr.count, &s);
                perm_epoch = epoch;
            }
            int k = perm[gi % pr.count];
            pp[i] = pr.ids[k], np[i] = pr.n[k];
            seeds[i] = gm_rlhf_seed((uint64_t)seed, step, gi); /* the same draws whichever rank has the prompt */
        }
        float rate = gm_lr_at(&sched, step);
        gm_rlhf_stats s;
        st = gm_rlhf_step(pol, ref, d, opt, &o, pp, np, (int)P, reward_fn, &rx, rate, seeds, &g, &s);
        if (st) {
            if (rank0 || !strstr(gm_last_error(), "another rank")) fprintf(stderr, "gemma rlhf: step %d: error: %s\n",
                                                                           step + 1, gm_last_error());
            break;
        }
        samples += s.samples * dp;
        hx[step] = step + 1, hr[step] = s.reward, hs[step] = s.score, hk[step] = s.kl, he[step] = s.entropy;
        hl[step] = s.length;
        double sps = s.seconds > 0 ? s.samples * dp / s.seconds : 0;
        if (rank0) {
            if (s.result != GM_STEP_TAKEN)
                fprintf(stderr, "gemma rlhf: step %d skipped (non-finite loss or gradient)\n", step + 1);
            if (!quiet)
                fprintf(stderr, "step %4d/%ld  reward %.4f ± %.4f  kl %.4f  entropy %.3f  length %.1f  score %.4f  "
                                "grad %.3f  %.1f samples/s\n", step + 1, steps, s.reward, s.reward_std, s.kl, s.entropy,
                        s.length, s.score, s.grad_norm, sps);
            fprintf(csv, "%d,%.6f,%.6f,%.6f,%.6f,%.3f,%.6f,%.6g,%.6g,%.6g,%.3f,%.3f\n", step + 1, s.reward,
                    s.reward_std, s.kl, s.entropy, s.length, s.score, s.loss, s.grad_norm, (double)rate, sps,
                    s.seconds);
            fflush(csv);
        }
        int last = step + 1 == steps;
        if ((last || (sample_every > 0 && (step + 1) % sample_every == 0)) && rank0) {
            /* only rank 0 samples here: nothing collective happens inside (TP ranks would need to join) */
            if (gm_dist_tp_size(d) == 1)
                st = write_samples(out, step + 1, pol, ref, &pr, n_sample, &o, &g, &rx, tok, (uint64_t)seed + 1000);
        }
        if (!st && rank0 && (last || (sample_every > 0 && (step + 1) % sample_every == 0))) {
            st = plot(out, "reward.svg", "gemma rlhf: reward", "reward", hx, hr, "reward (mean)", hs,
                      "reward - KL penalty - length penalty", step + 1);
            if (!st) st = plot(out, "kl.svg", "gemma rlhf: KL to the reference and entropy", "nats", hx, hk,
                               "KL per response", he, "entropy per token", step + 1);
            if (!st) st = plot(out, "length.svg", "gemma rlhf: response length", "tokens", hx, hl, "mean length", NULL,
                               NULL, step + 1);
        }
        mine = st;
        if ((st = gm_dist_max_int(d, st))) {
            if (mine) fprintf(stderr, "gemma rlhf: error: %s\n", gm_last_error());
            break;
        }
        if (last || (save_every > 0 && (step + 1) % save_every == 0)) {
            const char *tn = tok_len && tok_data[0] == '{' ? "tokenizer.json" : "tokenizer.model";
            st = save_policy(d, out, pol, opt, step + 1, (uint64_t)seed, tok_data, tok_len, tn, policy, (int)keep);
            mine = st;
            if ((st = gm_dist_max_int(d, st)) && mine) fprintf(stderr, "gemma rlhf: error: %s\n", gm_last_error());
        }
    }
    if (st) rc = CLI_RUNTIME;
    else if (rank0) {
        double secs = cli_now() - t0;
        fprintf(stderr, "gemma rlhf: done: %.0f samples in %.1f s (%.1f samples/s); chat with it: gemma chat -m "
                        "%s/latest\n", samples, secs, secs > 0 ? samples / secs : 0, out);
    }
done:
    if (csv) fclose(csv);
    gm_rlhf_group_free(&g);
    gm_dist_opt_free(opt);
    gm_train_model_free(pol);
    gm_train_model_free(ref);
    gm_reward_free(rx.rm);
    gm_tokenizer_free(tok);
    gm_rlhf_prompts_free(&pr);
    free(tok_path);
    free(tok_data);
    free(csv_path);
    free(perm);
    free(pp);
    free(np);
    free(seeds);
    free(hx), free(hr), free(hs), free(hk), free(he), free(hl);
    gm_dist_finalize(d);
    return rc;
}
