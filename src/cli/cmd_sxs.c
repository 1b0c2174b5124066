/* `gemma sxs`: side-by-side preference of two systems' responses, rated by a judge model that sees each pair
 * in both orders (position bias cancelled); win / tie / loss rates of A over B with 95% intervals, per
 * category too. See docs/eval.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/error.h"
#include "base/json.h"
#include "cli/cli.h"
#include "eval/score.h"
#include "eval/sxs.h"

static const char *C = "sxs";

static const char *HELP =
    "usage: gemma sxs --prompts P.jsonl --a A.jsonl --b B.jsonl --judge MODEL_DIR [options]\n"
    "  --prompts FILE      one JSON object per line: \"prompt\", optional \"category\" and \"id\"\n"
    "  --a FILE, --b FILE  the two systems' responses, line by line in the prompts' order: objects with\n"
    "                      \"response\" (or \"output\", \"completion\", \"text\"), or bare JSON strings; when\n"
    "                      both a prompt and its response carry \"id\" they must match\n"
    "  --judge MODEL_DIR   the judge (an instruction-tuned Gemma; its tokenizer is needed)\n"
    "  --rubric FILE       the judging prompt, with {prompt}, {first} and {second} (default: built in,\n"
    "                      see docs/eval.md); the judge answers A (first) or B (second)\n"
    "  --no-chat           do not wrap the rubric in Gemma's turn format; end it with \"\\n\\nAnswer:\"\n"
    "  --limit N           only the first N prompts\n"
    "  --json              print the results as JSON instead of the table\n"
    "  --out FILE          also write the results as JSON to FILE\n"
    "  --samples FILE      one JSON line per prompt: both orders' log-odds, the verdict\n"
    "  -c, --ctx N         judge context (default: the model's, at most 8192)\n"
    "  -t, --threads N     threads (default: all cores)\n"
    "  --cache-type T      KV cache f32 (default) or bf16\n"
    "  --mmap | --no-mmap  map the weights or read them into memory (default --no-mmap)\n"
    "  -q, --quiet         no progress on stderr\n"
    "exit status: 0 done, 1 runtime error (unreadable or mismatched files, model), 2 usage error\n";


static void on_skip(void *user, int item, const char *why) {
    const char *path = user;
    fprintf(stderr, "gemma sxs: warning: %s: prompt %d skipped: %s\n", path, item + 1, why);
}

/* ---- reading ----------------------------------------------------------------------------------- */

typedef struct {
    char *text, *id, *category;
    long line;
} record;

typedef struct {
    record *r;
    int n;
} records;

static void records_free(records *rs) {
    for (int i = 0; i < rs->n; i++) free(rs->r[i].text), free(rs->r[i].id), free(rs->r[i].category);
    free(rs->r);
    memset(rs, 0, sizeof *rs);
}

static char *dup_json_str(const gm_json *v) {
    if (!v || v->type != GM_JSON_STRING) return NULL;
    char *s = malloc(v->len + 1);
    if (s) memcpy(s, v->str, v->len), s[v->len] = 0;
    return s;
}

/* "id" as text, whether a string or an integer (NULL when absent). */
static char *dup_id(const gm_json *obj) {
    const gm_json *v = gm_json_get(obj, "id");
    if (!v) return NULL;
    if (v->type == GM_JSON_NUMBER && v->is_int) {
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", (long long)v->i);
        return strdup(buf);
    }
    return dup_json_str(v);
}

/* Read a JSONL file: prompts (prompt, category, id) or responses (response/output/completion/text or a bare
 * string, id). At most limit records (0 = all). */
static gm_status read_jsonl(const char *path, int prompts, long limit, records *out) {
    memset(out, 0, sizeof *out);
    char *data;
    size_t len;
    gm_status st = cli_read_file(path, &data, &len);
    if (st) return st;
    static const char *const resp_keys[] = {"response", "output", "completion", "text"};
    long line = 0;
    for (size_t pos = 0; pos < len && !st && (!limit || out->n < limit);) {
        size_t e = pos;
        while (e < len && data[e] != '\n') e++;
        line++;
        size_t a = pos;
        pos = e + 1;
        while (a < e && (data[a] == ' ' || data[a] == '\t' || data[a] == '\r')) a++;
        if (a == e) continue;
        gm_json_doc *doc;
        char what[600];
        snprintf(what, sizeof what, "%s: line %ld", path, line);
        if ((st = gm_json_parse(data + a, e - a, what, &doc))) break;
        const gm_json *root = gm_json_root(doc);
        record r = {NULL, NULL, NULL, line};
        if (prompts) {
            r.text = dup_json_str(gm_json_get(root, "prompt"));
            if (!r.text) st = gm_fail(GM_ERR_FORMAT, "%s: line %ld: no \"prompt\" string", path, line);
            const gm_json *c = gm_json_get(root, "category");
            if (!st && c && c->type != GM_JSON_NULL && !(r.category = dup_json_str(c)))
                st = gm_fail(GM_ERR_FORMAT, "%s: line %ld: \"category\" is not a string", path, line);
        } else if (root->type == GM_JSON_STRING) {
            r.text = dup_json_str(root);
        } else {
            for (int k = 0; k < 4 && !r.text; k++) r.text = dup_json_str(gm_json_get(root, resp_keys[k]));
            if (!r.text)
                st = gm_fail(GM_ERR_FORMAT, "%s: line %ld: no \"response\" (or \"output\", \"completion\", \"text\") "
                                            "string", path, line);
        }
        if (!st && root->type == GM_JSON_OBJECT) r.id = dup_id(root);
        gm_json_free(doc);
        if (!st) {
            record *nr = realloc(out->r, sizeof *nr * (size_t)(out->n + 1));
            if (!nr) st = gm_fail(GM_ERR_NOMEM, "out of memory");
            else out->r = nr, out->r[out->n++] = r;
        }
        if (st) free(r.text), free(r.id), free(r.category);
    }
    free(data);
    if (!st && out->n == 0) st = gm_fail(GM_ERR_FORMAT, "%s: no records", path);
    if (st) records_free(out);
    return st;
}

/* ---- output ------------------------------------------------------------------------------------ */

static void json_num(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.6g", v);
    else fputs("null", f);
}

static void json_ci(FILE *f, const char *name, double v, double lo, double hi) {
    fprintf(f, ", \"%s\": {\"value\": ", name);
    json_num(f, v);
    fputs(", \"ci95\": [", f);
    json_num(f, lo);
    fputs(", ", f);
    json_num(f, hi);
    fputs("]}", f);
}

static void json_group(FILE *f, const gm_sxs_counts *c) {
    gm_sxs_rates r;
    gm_sxs_rates_of(c, &r);
    fprintf(f, "{\"n\": %ld, \"win\": %ld, \"tie\": %ld, \"loss\": %ld", c->n, c->win, c->tie, c->loss);
    json_ci(f, "win_rate", r.win, r.win_lo, r.win_hi);
    json_ci(f, "tie_rate", r.tie, r.tie_lo, r.tie_hi);
    json_ci(f, "loss_rate", r.loss, r.loss_lo, r.loss_hi);
    json_ci(f, "score", r.score, r.score_lo, r.score_hi);
    fputs(", \"mean_preference\": ", f);
    json_num(f, r.mean_pref);
    fputs(", \"first_position_rate\": ", f);
    json_num(f, r.first_rate);
    fputc('}', f);
}

typedef struct {
    const char *judge, *prompts, *a, *b, *rubric;
    int chat;
    long ctx, threads, evaluated, reused;
    double seconds;
    const gm_sxs_result *res;
} report;

static void write_json(FILE *f, const void *arg) {
    const report *p = arg;
    const gm_sxs_result *r = p->res;
    const char *keys[4] = {"judge", "prompts", "a", "b"}, *vals[4] = {p->judge, p->prompts, p->a, p->b};
    for (int i = 0; i < 4; i++) {
        fprintf(f, "%s\"%s\": ", i ? ",\n  " : "{\n  ", keys[i]);
        gm_json_write_str(f, vals[i]);
    }
    fputs(",\n  \"rubric\": ", f);
    gm_json_write_str(f, p->rubric ? p->rubric : "default");
    fprintf(f, ",\n  \"chat\": %s,\n  \"n\": %ld,\n  \"skipped\": %ld,\n  \"overall\": ", p->chat ? "true" : "false",
            r->all.n, r->skipped);
    json_group(f, &r->all);
    fputs(",\n  \"categories\": {", f);
    for (int g = 0; g < r->n_groups; g++) {
        fputs(g ? ",\n    " : "\n    ", f);
        gm_json_write_str(f, r->groups[g].name);
        fputs(": ", f);
        json_group(f, &r->groups[g].c);
    }
    fputs(r->n_groups ? "\n  },\n" : "},\n", f);
    fputs("  \"verdict\": \"both orders: A wins if preferred in both, loses if B is, else a tie\",\n"
          "  \"interval\": \"rates: Wilson score 95%; score (win + tie/2): normal 95%, sample sd\"", f);
    fprintf(f, ",\n  \"tokens_evaluated\": %ld,\n  \"tokens_reused\": %ld,\n  \"context\": %ld,\n  \"threads\": %ld,"
               "\n  \"seconds\": ", p->evaluated, p->reused, p->ctx, p->threads);
    json_num(f, p->seconds);
    fputs(",\n  \"pairs_per_second\": ", f);
    json_num(f, p->seconds > 0 ? (double)(r->all.n + r->skipped) / p->seconds : 0.0);
    fputs("\n}\n", f);
}

static void table_row(const char *name, const gm_sxs_counts *c) {
    gm_sxs_rates r;
    gm_sxs_rates_of(c, &r);
    char cell[4][48];
    double v[4][3] = {{r.win, r.win_lo, r.win_hi}, {r.tie, r.tie_lo, r.tie_hi}, {r.loss, r.loss_lo, r.loss_hi},
                      {r.score, r.score_lo, r.score_hi}};
    for (int k = 0; k < 4; k++) snprintf(cell[k], sizeof cell[k], "%.3f [%.3f, %.3f]", v[k][0], v[k][1], v[k][2]);
    printf("| %-16.16s | %5ld | %5ld | %5ld | %5ld | %-21s | %-21s | %-21s | %-21s |\n", name, c->n, c->win, c->tie,
           c->loss, cell[0], cell[1], cell[2], cell[3]);
}

static void write_table(const report *p) {
    const gm_sxs_result *r = p->res;
    printf("A = %s, B = %s, judge = %s (both orders; a split verdict is a tie)\n\n", p->a, p->b, p->judge);
    printf("| %-16s | %5s | %5s | %5s | %5s | %-21s | %-21s | %-21s | %-21s |\n", "category", "n", "win", "tie",
           "loss", "win rate [95% CI]", "tie rate [95% CI]", "loss rate [95% CI]", "win + tie/2 [95% CI]");
    printf("|------------------|------:|------:|------:|------:|-----------------------|-----------------------|"
           "-----------------------|-----------------------|\n");
    table_row("all", &r->all);
    for (int g = 0; g < r->n_groups; g++) table_row(r->groups[g].name, &r->groups[g].c);
    if (r->all.n) {
        gm_sxs_rates x;
        gm_sxs_rates_of(&r->all, &x);
        printf("\nmean P(A better) over both orders %.3f; the judge preferred the first-shown response in %.1f%% "
               "of the %ld single-order judgments\n", x.mean_pref, 100 * x.first_rate, 2 * r->all.n);
    }
    if (r->skipped) printf("%ld prompts skipped (see the warnings)\n", r->skipped);
}

/* ---- command ----------------------------------------------------------------------------------- */

int cmd_sxs(int argc, char **argv) {
    const char *prompts_path = NULL, *a_path = NULL, *b_path = NULL, *judge = NULL, *rubric_path = NULL,
               *out_path = NULL, *samples_path = NULL;
    long limit = 0, threads = cli_default_threads(), ctx = 0;
    int chat = 1, json = 0, quiet = 0, use_mmap = 0, kv_bf16 = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_ARG() do { if (!v) return cli_usage(C, "option %s needs a value", a); i++; } while (0)
#define INT_ARG(var, lo, hi) do { NEED_ARG(); if (!cli_parse_int(v, lo, hi, &var)) \
    return cli_usage(C, "bad value for %s: '%s'", a, v); } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(HELP, stdout); return CLI_OK; }
        else if (!strcmp(a, "--prompts")) { NEED_ARG(); prompts_path = v; }
        else if (!strcmp(a, "--a")) { NEED_ARG(); a_path = v; }
        else if (!strcmp(a, "--b")) { NEED_ARG(); b_path = v; }
        else if (!strcmp(a, "--judge") || !strcmp(a, "-m")) { NEED_ARG(); judge = v; }
        else if (!strcmp(a, "--rubric")) { NEED_ARG(); rubric_path = v; }
        else if (!strcmp(a, "--out")) { NEED_ARG(); out_path = v; }
        else if (!strcmp(a, "--samples")) { NEED_ARG(); samples_path = v; }
        else if (!strcmp(a, "--limit")) INT_ARG(limit, 1, 1L << 30);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) INT_ARG(threads, 1, 256);
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) INT_ARG(ctx, 8, 1 << 24);
        else if (!strcmp(a, "--cache-type")) {
            NEED_ARG();
            if (strcmp(v, "f32") && strcmp(v, "bf16")) return cli_usage(C, "--cache-type must be f32 or bf16");
            kv_bf16 = !strcmp(v, "bf16");
        } else if (!strcmp(a, "--no-chat")) chat = 0;
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--mmap")) use_mmap = 1;
        else if (!strcmp(a, "--no-mmap")) use_mmap = 0;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) quiet = 1;
        else return cli_usage(C, "unknown option '%s'", a);
#undef INT_ARG
#undef NEED_ARG
    }
    if (!prompts_path || !a_path || !b_path) return cli_usage(C, "--prompts, --a and --b are required");
    if (!judge) return cli_usage(C, "--judge MODEL_DIR is required");

    int rc = CLI_RUNTIME;
    records P = {0}, A = {0}, B = {0};
    char *rubric = NULL;
    size_t rubric_len = 0;
    gm_sxs_item *items = NULL;
    gm_model *m = NULL;
    gm_tokenizer *tok = NULL;
    gm_session *s = NULL;
    gm_sxs_model_judge *mj = NULL;
    gm_sxs_result res;
    memset(&res, 0, sizeof res);

    /* Files first: a mismatch fails before the weights load. */
    if (read_jsonl(prompts_path, 1, limit, &P) || read_jsonl(a_path, 0, limit, &A) || read_jsonl(b_path, 0, limit, &B))
        goto fail;
    if (A.n != P.n || B.n != P.n) {
        fprintf(stderr, "gemma %s: error: %d prompts in %s but %d responses in %s and %d in %s\n", C, P.n,
                prompts_path, A.n, a_path, B.n, b_path);
        goto out;
    }
    for (int i = 0; i < P.n; i++) {
        const records *R[2] = {&A, &B};
        const char *paths[2] = {a_path, b_path};
        for (int k = 0; k < 2; k++)
            if (P.r[i].id && R[k]->r[i].id && strcmp(P.r[i].id, R[k]->r[i].id)) {
                fprintf(stderr,
                        "gemma %s: error: %s: line %ld has id \"%s\" but the prompt (%s: line %ld) has \"%s\"\n", C,
                        paths[k], R[k]->r[i].line, R[k]->r[i].id, prompts_path, P.r[i].line, P.r[i].id);
                goto out;
            }
    }
    if (rubric_path) {
        if (cli_read_file(rubric_path, &rubric, &rubric_len)) goto fail;
        if (!strstr(rubric, "{prompt}") || !strstr(rubric, "{first}") || !strstr(rubric, "{second}")) {
            fprintf(stderr, "gemma %s: error: %s: the rubric must contain {prompt}, {first} and {second}\n", C,
                    rubric_path);
            goto out;
        }
    }
    if (!(items = calloc((size_t)P.n, sizeof *items))) {
        gm_fail(GM_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < P.n; i++) items[i] = (gm_sxs_item){P.r[i].text, A.r[i].text, B.r[i].text, P.r[i].category};

    if (cli_load_tokenizer_opt(judge, &tok)) goto fail;
    if (!tok) {
        fprintf(stderr, "gemma %s: error: %s has no tokenizer.model or tokenizer.json (the judge reads text)\n", C,
                judge);
        goto out;
    }
    if (cli_load_model(judge, use_mmap, quiet, &m)) goto fail;
    const gm_config *cfg = gm_model_config(m);
    long n_ctx = ctx ? ctx : (cfg->max_pos < 8192 ? cfg->max_pos : 8192);
    if (n_ctx > cfg->max_pos) {
        fprintf(stderr, "gemma %s: error: --ctx %ld exceeds the model's context of %d\n", C, n_ctx, cfg->max_pos);
        goto out;
    }
    gm_session_params sp = gm_session_params_default((int)n_ctx, (int)threads);
    sp.kv_bf16 = kv_bf16;
    if (gm_session_new_ex(m, &sp, &s)) goto fail;
    if (gm_sxs_model_judge_new(s, tok, cfg->vocab_size, rubric, chat, &mj)) goto fail;

    cli_progress pb = cli_progress_start("pairs", quiet);
    gm_sxs_run_opts ro = {gm_sxs_model_judge_fn, mj, cli_progress_update, &pb, on_skip, (void *)prompts_path};
    if (!quiet) fprintf(stderr, "sxs: %d prompts, each judged in both orders, context %ld\n", P.n, n_ctx);
    double t0 = cli_now();
    if (gm_sxs_run(items, P.n, &ro, &res)) {
        if (!quiet && pb.tty) fputc('\n', stderr);
        goto fail;
    }
    double dt = cli_now() - t0;
    long evaluated, reused;
    gm_sxs_model_judge_stats(mj, &evaluated, &reused);
    if (!quiet)
        fprintf(stderr, "%d pairs in %.2f s: %.2f pairs/s; %ld tokens evaluated, %ld more saved by the cached rubric\n",
                P.n, dt, dt > 0 ? (double)P.n / dt : 0.0, evaluated, reused);

    if (samples_path) {
        FILE *f = fopen(samples_path, "w");
        if (!f) {
            fprintf(stderr, "gemma %s: error: cannot write %s\n", C, samples_path);
            goto out;
        }
        static const char *const names[3] = {"loss", "tie", "win"};
        for (int i = 0; i < P.n; i++) {
            double ab = res.logit_ab[i], ba = res.logit_ba[i];
            fprintf(f, "{\"index\": %d, \"id\": ", i);
            if (P.r[i].id) gm_json_write_str(f, P.r[i].id);
            else fputs("null", f);
            fputs(", \"category\": ", f);
            if (P.r[i].category) gm_json_write_str(f, P.r[i].category);
            else fputs("null", f);
            fputs(", \"logit_a_first\": ", f);
            json_num(f, ab);
            fputs(", \"logit_b_first\": ", f);
            json_num(f, ba);
            fputs(", \"pref_a\": ", f);
            json_num(f, isnan(ab) ? NAN : gm_sxs_pref_a(ab, ba));
            fprintf(f, ", \"verdict\": \"%s\"}\n", isnan(ab) ? "skipped" : names[gm_sxs_combine(ab, ba)]);
        }
        if (fclose(f) != 0) {
            fprintf(stderr, "gemma %s: error: cannot write %s\n", C, samples_path);
            goto out;
        }
    }
    report rep = {judge, prompts_path, a_path, b_path, rubric_path, chat, n_ctx, threads, evaluated, reused, dt, &res};
    if (json) write_json(stdout, &rep);
    else write_table(&rep);
    fflush(stdout);
    if (out_path && !cli_write_report(C, out_path, write_json, &rep)) goto out;
    rc = CLI_OK;
    goto out;
fail:
    rc = cli_fail(C);
out:
    gm_sxs_result_free(&res);
    gm_sxs_model_judge_free(mj);
    gm_session_free(s);
    gm_model_free(m);
    gm_tokenizer_free(tok);
    free(items);
    free(rubric);
    records_free(&P);
    records_free(&A);
    records_free(&B);
    return rc;
}
