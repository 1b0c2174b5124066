/* `gemma data`: the pretraining-data pipeline. Subcommands filter (quality rules + an optional model
 * score), dedup (exact + MinHash/LSH near duplicates), decontaminate (13-gram overlap with evaluation
 * sets) and pii (redact or drop personal data, detectors from src/eval/pii.h) stream documents from text
 * or JSONL files through src/data/pipeline.c with per-reason statistics on stderr and optionally in a
 * JSON file. tokenize turns documents into token shards for training (src/data/shards.h), one document
 * at a time. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "base/file.h"
#include "cli/cli.h"
#include "data/docio.h"
#include "data/filter.h"
#include "data/minhash.h"
#include "data/ngram_index.h"
#include "data/pipeline.h"
#include "data/shards.h"
#include "eval/pii.h"

static const char *C = "data";

static void usage_text(FILE *f) {
    fputs("usage: gemma data SUBCOMMAND [options] INPUT...\n"
          "subcommands:\n"
          "  filter          drop documents failing quality rules (Gopher, C4, FineWeb) or a model score\n"
          "  dedup           drop exact duplicates (normalized text) and near duplicates (MinHash + LSH)\n"
          "  decontaminate   drop (or report) documents sharing a word 13-gram with evaluation sets\n"
          "  pii             redact (default), drop or report documents with personal data (gemma pii's detectors)\n"
          "  tokenize        documents to token shards for training (gemma data tokenize --help)\n"
          "input and output (all subcommands):\n"
          "  INPUT...              text or JSONL files; - reads standard input\n"
          "  --format F            auto (default: .jsonl/.json are JSONL, others text), text, jsonl\n"
          "  --split S             text input: file (one document per file, default), blank (blank-line separated)\n"
          "  --sep STR             text input: documents separated by STR (e.g. '<|endoftext|>')\n"
          "  --field NAME          JSONL text field (default text); other fields pass through unchanged\n"
          "  --out FILE            kept documents (default standard output)\n"
          "  --out-format F        jsonl (default) or text\n"
          "  --out-sep STR         text output: written after each document (default a blank line)\n"
          "  --rejected FILE       dropped documents as JSONL with \"gm_reason\" (and details)\n"
          "  --stats FILE          statistics as JSON (per reason: documents and text bytes)\n"
          "  --max-doc-bytes N     longer documents are dropped as \"oversize\" (default 16777216)\n"
          "  -t, --threads N       worker threads (default: online CPUs)\n"
          "  -q, --quiet           no statistics on stderr\n"
          "filter:\n"
          "  --RULE VALUE          set a rule's threshold (and enable it); gemma data filter --list-rules\n"
          "  --disable RULES       comma-separated rule names, or all; --enable RULES turns them back on\n"
          "  --c4-lines            first apply C4's line cleaning (drops lines; changes the text)\n"
          "  --score-field NAME    JSONL numeric field (e.g. a classifier score or perplexity) ...\n"
          "  --min-score X, --max-score X   ... documents outside [X, Y] are dropped as \"score\"\n"
          "  --ppl-model DIR       score = perplexity of the text under this model (serial, slow) ...\n"
          "  --max-ppl X           ... drop above X; --ppl-tokens N scores the first N tokens (default 256)\n"
          "dedup:\n"
          "  --mode M              exact, near or both (default both); the first occurrence is kept\n"
          "  --threshold J         Jaccard similarity of near duplicates (default 0.8)\n"
          "  --shingle K           words per shingle (default 5)\n"
          "  --bands B, --rows R   LSH bands x rows = MinHash size (default 32 x 8)\n"
          "  --seed S              MinHash seed (default 1)\n"
          "decontaminate:\n"
          "  --eval PATHS          evaluation files or directories (comma-separated, repeatable; a directory\n"
          "                        gives its .jsonl .json .csv .tsv .txt files): .jsonl / .json (all strings\n"
          "                        of a record joined), other files as plain text\n"
          "  --ngram N             words per n-gram (default 13)\n"
          "  --action A            drop (default) or report (keep everything, count and list matches)\n"
          "  --matches FILE        JSONL list of matching documents with the shared n-gram\n"
          "pii:\n"
          "  --action A            redact (default: each finding becomes [TYPE]), drop, or report (count only)\n"
          "  --types LIST          detectors: EMAIL,PHONE,CARD,IBAN,NATIONAL_ID,IPV4,IPV6,PRIVATE_KEY,API_KEY\n"
          "  --severity S          personal (default: all findings) or sensitive (IDs, cards, IBANs, keys only)\n"
          "  --skip-local-ip       ignore loopback, private and link-local addresses\n"
          "exit status: 0 ok, 1 runtime error, 2 usage error\n",
          f);
}

/* ---- shared option parsing ------------------------------------------------------------------------- */

typedef struct {
    gm_data_opts o;
    const char **inputs;
    int n_inputs;
    const char *stats_path;
    int quiet;
} common_opts;

/* Parse an option shared by all subcommands at argv[*i]. Returns 1 if consumed, 0 if not ours, -1 on a
 * usage error (already printed). */
static int parse_common(common_opts *c, int argc, char **argv, int *i) {
    const char *a = argv[*i];
#define NEED_VALUE()                                                        \
    do {                                                                    \
        if (*i + 1 >= argc) {                                               \
            cli_usage(C, "%s needs a value", a);                            \
            return -1;                                                      \
        }                                                                   \
    } while (0)
    if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
        c->quiet = 1;
        return 1;
    }
    if (!strcmp(a, "--format") || !strcmp(a, "--out-format")) {
        NEED_VALUE();
        const char *v = argv[++*i];
        gm_doc_format f;
        if (!strcmp(v, "auto") && a[2] == 'f') f = GM_FORMAT_AUTO;
        else if (!strcmp(v, "text")) f = GM_FORMAT_TEXT;
        else if (!strcmp(v, "jsonl")) f = GM_FORMAT_JSONL;
        else {
            cli_usage(C, "%s: unknown format '%s'", a, v);
            return -1;
        }
        if (a[2] == 'f') c->o.format = f;
        else c->o.out_format = f;
        return 1;
    }
    if (!strcmp(a, "--split")) {
        NEED_VALUE();
        const char *v = argv[++*i];
        if (!strcmp(v, "file")) c->o.split = GM_SPLIT_FILE;
        else if (!strcmp(v, "blank")) c->o.split = GM_SPLIT_BLANK;
        else {
            cli_usage(C, "--split: unknown mode '%s' (file or blank; use --sep STR for a separator)", v);
            return -1;
        }
        return 1;
    }
    if (!strcmp(a, "--sep")) {
        NEED_VALUE();
        c->o.sep = argv[++*i];
        if (!*c->o.sep) {
            cli_usage(C, "--sep: empty separator");
            return -1;
        }
        c->o.split = GM_SPLIT_SEP;
        return 1;
    }
    if (!strcmp(a, "--field")) {
        NEED_VALUE();
        c->o.field = argv[++*i];
        return 1;
    }
    if (!strcmp(a, "--out") || !strcmp(a, "-o")) {
        NEED_VALUE();
        c->o.out = argv[++*i];
        return 1;
    }
    if (!strcmp(a, "--out-sep")) {
        NEED_VALUE();
        c->o.out_sep = argv[++*i];
        return 1;
    }
    if (!strcmp(a, "--rejected")) {
        NEED_VALUE();
        c->o.rejected = argv[++*i];
        return 1;
    }
    if (!strcmp(a, "--stats")) {
        NEED_VALUE();
        c->stats_path = argv[++*i];
        return 1;
    }
    if (!strcmp(a, "--max-doc-bytes")) {
        NEED_VALUE();
        long v;
        if (!cli_parse_int(argv[++*i], 1, 1L << 40, &v)) {
            cli_usage(C, "--max-doc-bytes: '%s' is not a positive integer", argv[*i]);
            return -1;
        }
        c->o.max_doc_bytes = (size_t)v;
        return 1;
    }
    if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
        NEED_VALUE();
        long v;
        if (!cli_parse_int(argv[++*i], 1, 256, &v)) {
            cli_usage(C, "%s: '%s' is not a thread count in 1..256", a, argv[*i]);
            return -1;
        }
        c->o.threads = (int)v;
        return 1;
    }
    if (!strcmp(a, "-") || a[0] != '-') {
        c->inputs[c->n_inputs++] = a;
        return 1;
    }
    return 0;
#undef NEED_VALUE
}

static int common_init(common_opts *c, int argc) {
    memset(c, 0, sizeof *c);
    gm_data_opts_default(&c->o);
    c->o.threads = cli_default_threads();
    c->inputs = calloc((size_t)argc + 1, sizeof *c->inputs);
    return c->inputs != NULL;
}

static int common_finish(common_opts *c, const char *sub) {
    if (c->n_inputs == 0) return cli_usage(C, "%s: no input files (use - for standard input)", sub);
    /* Opening an output truncates it: refuse one that is also an input. */
    const char *outs[2] = {c->o.out, c->o.rejected};
    for (int k = 0; k < 2; k++) {
        struct stat so, si;
        if (!outs[k] || !strcmp(outs[k], "-") || stat(outs[k], &so) != 0 || !S_ISREG(so.st_mode)) continue;
        for (int i = 0; i < c->n_inputs; i++)
            if (strcmp(c->inputs[i], "-") && stat(c->inputs[i], &si) == 0 && si.st_dev == so.st_dev && si.st_ino == so.st_ino)
                return cli_usage(C, "%s: output %s is also an input", sub, outs[k]);
    }
    c->o.inputs = c->inputs;
    c->o.n_inputs = c->n_inputs;
    return CLI_OK;
}

static int value_arg(int argc, char **argv, int *i, const char **out) {
    if (*i + 1 >= argc) {
        cli_usage(C, "%s needs a value", argv[*i]);
        return 0;
    }
    *out = argv[++*i];
    return 1;
}

static int float_arg(int argc, char **argv, int *i, double *out) {
    const char *v;
    if (!value_arg(argc, argv, i, &v)) return 0;
    if (!cli_parse_float(v, out) || !isfinite(*out)) {
        cli_usage(C, "%s: '%s' is not a number", argv[*i - 1], v);
        return 0;
    }
    return 1;
}

static int int_arg(int argc, char **argv, int *i, long lo, long hi, long *out) {
    const char *v;
    if (!value_arg(argc, argv, i, &v)) return 0;
    if (!cli_parse_int(v, lo, hi, out)) {
        cli_usage(C, "%s: '%s' is not an integer in %ld..%ld", argv[*i - 1], v, lo, hi);
        return 0;
    }
    return 1;
}

/* Run a stage and report: statistics on stderr (unless quiet) and in --stats. */
static int run_stage(common_opts *c, const char *sub, const gm_data_stage *st, gm_data_stats *stats,
                     void (*print_extra)(void *ctx, FILE *f), void (*json_extra)(void *ctx, gm_buf *b)) {
    gm_status s = gm_data_run(&c->o, st, stats);
    if (s) return cli_fail(C);
    if (!c->quiet) {
        gm_data_stats_print(stderr, sub, stats);
        if (print_extra) print_extra(st->ctx, stderr);
    }
    if (c->stats_path) {
        gm_buf extra = {0};
        if (json_extra) json_extra(st->ctx, &extra);
        s = gm_data_stats_write(c->stats_path, sub, stats, extra.p);
        gm_buf_free(&extra);
        if (s) return cli_fail(C);
    }
    return CLI_OK;
}

/* ---- filter ------------------------------------------------------------------------------------------ */

#define REASON_SCORE GM_RULE_COUNT

typedef struct {
    gm_model *model;
    gm_tokenizer *tok;
    gm_session *sess;
    float *logits;
    int chunk, max_tokens, vocab;
} ppl_scorer;

typedef struct {
    gm_filter_params p;
    const char *reasons[GM_RULE_COUNT + 1];
    int use_score;
    double min_score, max_score;
    ppl_scorer *ppl;
    atomic_ullong c4_lines_removed, c4_bytes_removed;
} filter_ctx;

typedef struct {
    double value; /* the failing rule's measurement, or the score */
} filter_slot;

static void *filter_worker_new(void *ctx) {
    (void)ctx;
    return gm_filter_scratch_new();
}

static void filter_worker_free(void *ctx, void *w) {
    (void)ctx;
    gm_filter_scratch_free(w);
}

static gm_status filter_map(void *vctx, void *scratch, gm_data_doc *d) {
    filter_ctx *fc = vctx;
    const char *text = d->text;
    size_t len = d->len;
    if (fc->p.c4_lines) {
        d->new_text = malloc(len + 1);
        if (!d->new_text) return gm_fail(GM_ERR_NOMEM, "out of memory");
        size_t removed;
        d->new_len = gm_filter_c4_lines(d->text, d->len, d->new_text, &removed);
        d->new_text[d->new_len] = 0;
        if (!removed && d->new_len == d->len && memcmp(d->new_text, d->text, d->len) == 0) {
            free(d->new_text); /* unchanged: keep the record byte for byte */
            d->new_text = NULL;
            d->new_len = 0;
        }
        atomic_fetch_add(&fc->c4_lines_removed, removed);
        atomic_fetch_add(&fc->c4_bytes_removed, d->len - d->new_len);
        if (d->new_text) {
            text = d->new_text;
            len = d->new_len;
        }
    }
    int failed;
    double m[GM_RULE_COUNT];
    gm_status st = gm_filter_check(&fc->p, scratch, text, len, &failed, NULL);
    if (st) return st;
    filter_slot *slot = d->slot;
    if (failed >= 0) {
        /* Measure again with all metrics to report the failing value (only for dropped documents). */
        int f2;
        if (!gm_filter_check(&fc->p, scratch, text, len, &f2, m)) slot->value = m[failed];
        d->reason = failed;
        d->drop = 1;
        return GM_OK;
    }
    if (fc->use_score) {
        if (isnan(d->score))
            return gm_fail(GM_ERR_FORMAT, "%s: line %llu: no numeric score field", d->path, (unsigned long long)d->line);
        if (d->score < fc->min_score || d->score > fc->max_score) {
            slot->value = d->score;
            d->reason = REASON_SCORE;
            d->drop = 1;
        }
    }
    return GM_OK;
}

/* Perplexity of the first max_tokens tokens (with <bos>) under the reference model. */
static gm_status ppl_score(ppl_scorer *p, const char *text, size_t len, double *out) {
    int32_t *ids;
    size_t n;
    gm_status st = gm_tokenizer_encode(p->tok, text, len, GM_TOK_ADD_BOS, &ids, &n);
    if (st) return st;
    if ((int)n > p->max_tokens) n = (size_t)p->max_tokens;
    *out = NAN;
    if (n < 2) {
        free(ids);
        return GM_OK;
    }
    gm_session_reset(p->sess);
    double nll = 0;
    for (size_t off = 0; off + 1 < n; off += (size_t)p->chunk) {
        int m = (int)(n - 1 - off < (size_t)p->chunk ? n - 1 - off : (size_t)p->chunk);
        st = gm_session_eval(p->sess, ids + off, m, p->logits);
        if (st) break;
        for (int t = 0; t < m; t++) {
            const float *z = p->logits + (size_t)t * (size_t)p->vocab;
            float mx = z[0];
            for (int v = 1; v < p->vocab; v++) mx = z[v] > mx ? z[v] : mx;
            double sum = 0;
            for (int v = 0; v < p->vocab; v++) sum += exp((double)(z[v] - mx));
            int32_t next = ids[off + (size_t)t + 1];
            nll += log(sum) + mx - z[next];
        }
    }
    free(ids);
    if (!st) *out = exp(nll / (double)(n - 1));
    return st;
}

static gm_status filter_reduce(void *vctx, gm_data_doc *d) {
    filter_ctx *fc = vctx;
    if (d->drop || !fc->ppl) return GM_OK;
    double ppl;
    gm_status st = ppl_score(fc->ppl, d->new_text ? d->new_text : d->text, d->new_text ? d->new_len : d->len, &ppl);
    if (st) return gm_fail_prefix(st, "%s: line %llu: perplexity: ", d->path, (unsigned long long)d->line);
    if (!isnan(ppl) && ppl > fc->max_score) {
        ((filter_slot *)d->slot)->value = ppl;
        d->reason = REASON_SCORE;
        d->drop = 1;
    }
    return GM_OK;
}

static void filter_annotate(void *vctx, const gm_data_doc *d, gm_buf *out) {
    (void)vctx;
    double v = ((const filter_slot *)d->slot)->value;
    if (isfinite(v)) gm_buf_printf(out, ",\"gm_value\":%.6g", v);
}

static void filter_print_extra(void *vctx, FILE *f) {
    filter_ctx *fc = vctx;
    if (fc->p.c4_lines)
        fprintf(f, "  c4 line cleaning removed %llu lines (%llu bytes) from kept and dropped documents\n",
                (unsigned long long)fc->c4_lines_removed, (unsigned long long)fc->c4_bytes_removed);
}

static void filter_json_extra(void *vctx, gm_buf *b) {
    filter_ctx *fc = vctx;
    gm_buf_str(b, ",\"rules\":{");
    for (int r = 0; r < GM_RULE_COUNT; r++) {
        if (r) gm_buf_str(b, ",");
        gm_buf_printf(b, "\"%s\":{\"enabled\":%s,\"threshold\":%.17g}", gm_filter_rule(r)->name,
                      fc->p.enabled[r] ? "true" : "false", fc->p.threshold[r]);
    }
    gm_buf_str(b, "}");
    if (fc->p.c4_lines)
        gm_buf_printf(b, ",\"c4_lines\":{\"lines_removed\":%llu,\"bytes_removed\":%llu}",
                      (unsigned long long)fc->c4_lines_removed, (unsigned long long)fc->c4_bytes_removed);
}

static void list_rules(FILE *f) {
    fprintf(f, "%-24s %-5s %-10s %s\n", "rule (flag --RULE)", "on", "default", "drops when ... / source");
    for (int r = 0; r < GM_RULE_COUNT; r++) {
        const gm_filter_rule_info *ri = gm_filter_rule(r);
        const char *cmp = ri->cmp == GM_CMP_MIN ? "<" : ri->cmp == GM_CMP_MAX ? ">" : "<=";
        fprintf(f, "%-24s %-5s %-10g %s %s default; %s\n", ri->name, ri->on ? "yes" : "no", ri->def, ri->what, cmp,
                ri->source);
    }
    fprintf(f, "%-24s %-5s %-10s %s\n", "score", "no", "-", "--score-field/--min-score/--max-score or --ppl-model/--max-ppl");
}

static int set_rules_enabled(filter_ctx *fc, const char *list, int on) {
    char *dup = strdup(list);
    if (!dup) return 0;
    int ok = 1;
    for (char *save = NULL, *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (!strcmp(t, "all")) {
            for (int r = 0; r < GM_RULE_COUNT; r++) fc->p.enabled[r] = (unsigned char)on;
            continue;
        }
        int r = gm_filter_rule_find(t);
        if (r < 0) {
            cli_usage(C, "unknown rule '%s' (gemma data filter --list-rules)", t);
            ok = 0;
            break;
        }
        fc->p.enabled[r] = (unsigned char)on;
    }
    free(dup);
    return ok;
}

static void ppl_free(ppl_scorer *p) {
    if (!p) return;
    gm_session_free(p->sess);
    gm_tokenizer_free(p->tok);
    gm_model_free(p->model);
    free(p->logits);
    free(p);
}

static gm_status ppl_new(const char *dir, int max_tokens, int threads, ppl_scorer **out) {
    *out = NULL;
    ppl_scorer *p = calloc(1, sizeof *p);
    if (!p) return gm_fail(GM_ERR_NOMEM, "out of memory");
    gm_status st = cli_load_model(dir, 0, 1, &p->model);
    if (!st) st = gm_tokenizer_load_dir(dir, &p->tok);
    if (!st) {
        const gm_config *cfg = gm_model_config(p->model);
        if (max_tokens > cfg->max_pos) max_tokens = cfg->max_pos;
        p->max_tokens = max_tokens;
        p->vocab = cfg->vocab_size;
        p->chunk = 64;
        st = gm_session_new(p->model, max_tokens, threads, &p->sess);
    }
    if (!st) {
        p->logits = malloc((size_t)p->chunk * (size_t)p->vocab * sizeof *p->logits);
        if (!p->logits) st = gm_fail(GM_ERR_NOMEM, "out of memory for logits");
    }
    if (st) {
        ppl_free(p);
        return st;
    }
    *out = p;
    return GM_OK;
}

static int cmd_filter(int argc, char **argv) {
    common_opts c;
    filter_ctx *fc = calloc(1, sizeof *fc);
    if (!fc || !common_init(&c, argc)) {
        free(fc);
        fprintf(stderr, "gemma data: out of memory\n");
        return CLI_RUNTIME;
    }
    gm_filter_params_default(&fc->p);
    fc->min_score = -INFINITY;
    fc->max_score = INFINITY;
    const char *ppl_dir = NULL;
    long ppl_tokens = 256;
    int rc = CLI_OK;
    for (int i = 1; i < argc && rc == CLI_OK; i++) {
        const char *a = argv[i];
        int k = parse_common(&c, argc, argv, &i);
        if (k == 1) continue;
        if (k < 0) {
            rc = CLI_USAGE;
            break;
        }
        const char *v;
        double x;
        long n;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage_text(stdout);
            goto done;
        } else if (!strcmp(a, "--list-rules")) {
            list_rules(stdout);
            goto done;
        } else if (!strcmp(a, "--c4-lines")) {
            fc->p.c4_lines = 1;
        } else if (!strcmp(a, "--disable") || !strcmp(a, "--enable")) {
            if (!value_arg(argc, argv, &i, &v) || !set_rules_enabled(fc, v, a[2] == 'e')) rc = CLI_USAGE;
        } else if (!strcmp(a, "--score-field")) {
            if (!value_arg(argc, argv, &i, &c.o.score_field)) rc = CLI_USAGE;
        } else if (!strcmp(a, "--min-score")) {
            if (!float_arg(argc, argv, &i, &fc->min_score)) rc = CLI_USAGE;
        } else if (!strcmp(a, "--max-score") || !strcmp(a, "--max-ppl")) {
            if (!float_arg(argc, argv, &i, &fc->max_score)) rc = CLI_USAGE;
        } else if (!strcmp(a, "--ppl-model")) {
            if (!value_arg(argc, argv, &i, &ppl_dir)) rc = CLI_USAGE;
        } else if (!strcmp(a, "--ppl-tokens")) {
            if (!int_arg(argc, argv, &i, 2, 1 << 20, &ppl_tokens)) rc = CLI_USAGE;
        } else if (!strncmp(a, "--", 2) && gm_filter_rule_find(a + 2) >= 0) {
            int r = gm_filter_rule_find(a + 2);
            if (gm_filter_rule(r)->is_int) {
                if (!int_arg(argc, argv, &i, 0, 1L << 40, &n)) rc = CLI_USAGE;
                else x = (double)n;
            } else if (!float_arg(argc, argv, &i, &x)) {
                rc = CLI_USAGE;
            }
            if (rc == CLI_OK) {
                fc->p.threshold[r] = x;
                fc->p.enabled[r] = 1;
            }
        } else {
            rc = cli_usage(C, "filter: unknown option '%s'", a);
        }
    }
    if (rc != CLI_OK) goto done;
    if ((rc = common_finish(&c, "filter")) != CLI_OK) goto done;
    if (ppl_dir && c.o.score_field) {
        rc = cli_usage(C, "filter: --ppl-model and --score-field are two sources of one score: pick one");
        goto done;
    }
    if (c.o.score_field && fc->min_score == -INFINITY && fc->max_score == INFINITY) {
        rc = cli_usage(C, "filter: --score-field needs --min-score and/or --max-score");
        goto done;
    }
    if (ppl_dir && fc->max_score == INFINITY) {
        rc = cli_usage(C, "filter: --ppl-model needs --max-ppl");
        goto done;
    }
    fc->use_score = c.o.score_field != NULL;
    if (ppl_dir && ppl_new(ppl_dir, (int)ppl_tokens, c.o.threads, &fc->ppl)) {
        rc = cli_fail(C);
        goto done;
    }
    for (int r = 0; r < GM_RULE_COUNT; r++) fc->reasons[r] = gm_filter_rule(r)->name;
    fc->reasons[REASON_SCORE] = "score";
    gm_data_stage st = {"filter", GM_RULE_COUNT + 1, fc->reasons, sizeof(filter_slot), fc, filter_worker_new,
                        filter_worker_free, filter_map, fc->ppl ? filter_reduce : NULL, filter_annotate};
    gm_data_stats stats;
    rc = run_stage(&c, "filter", &st, &stats, filter_print_extra, filter_json_extra);
done:
    ppl_free(fc->ppl);
    free(fc);
    free(c.inputs);
    return rc;
}

/* ---- dedup ------------------------------------------------------------------------------------------- */

enum { DEDUP_EXACT = 1, DEDUP_NEAR = 2 };

typedef struct {
    int mode;
    gm_minhash *mh;
    gm_lsh *lsh;
    gm_keyset *keys;
    int perms;
} dedup_ctx;

typedef struct {
    uint64_t key[2];
    uint64_t dup_of;
    double similarity;
    size_t n_shingles;
    uint32_t sig[]; /* perms values */
} dedup_slot;

static void *dedup_worker_new(void *ctx) {
    (void)ctx;
    return calloc(1, sizeof(gm_minhash_scratch));
}

static void dedup_worker_free(void *ctx, void *w) {
    (void)ctx;
    gm_minhash_scratch_free(w);
    free(w);
}

static gm_status dedup_map(void *vctx, void *scratch, gm_data_doc *d) {
    dedup_ctx *dc = vctx;
    dedup_slot *s = d->slot;
    if (dc->mode & DEDUP_EXACT) gm_text_exact_key(d->text, d->len, s->key);
    s->n_shingles = 0;
    if (dc->mode & DEDUP_NEAR) return gm_minhash_sign_text(dc->mh, scratch, d->text, d->len, s->sig, &s->n_shingles);
    return GM_OK;
}

static gm_status dedup_reduce(void *vctx, gm_data_doc *d) {
    dedup_ctx *dc = vctx;
    dedup_slot *s = d->slot;
    if ((dc->mode & DEDUP_EXACT) && gm_keyset_find(dc->keys, s->key, &s->dup_of)) {
        d->reason = 0;
        d->drop = 1;
        return GM_OK;
    }
    if ((dc->mode & DEDUP_NEAR) && s->n_shingles && gm_lsh_query(dc->lsh, s->sig, &s->dup_of, &s->similarity)) {
        d->reason = 1;
        d->drop = 1;
        return GM_OK;
    }
    gm_status st = GM_OK;
    if (dc->mode & DEDUP_EXACT) st = gm_keyset_insert(dc->keys, s->key, d->index);
    if (!st && (dc->mode & DEDUP_NEAR) && s->n_shingles) st = gm_lsh_insert(dc->lsh, s->sig, d->index);
    return st;
}

static void dedup_annotate(void *vctx, const gm_data_doc *d, gm_buf *out) {
    (void)vctx;
    const dedup_slot *s = d->slot;
    gm_buf_printf(out, ",\"gm_dup_of\":%llu", (unsigned long long)s->dup_of);
    if (d->reason == 1) gm_buf_printf(out, ",\"gm_similarity\":%.4f", s->similarity);
}

static void dedup_print_extra(void *vctx, FILE *f) {
    dedup_ctx *dc = vctx;
    fprintf(f, "  index memory: exact %.1f MB, minhash/LSH %.1f MB (%zu documents indexed)\n",
            dc->keys ? (double)gm_keyset_bytes(dc->keys) / 1e6 : 0.0, dc->lsh ? (double)gm_lsh_bytes(dc->lsh) / 1e6 : 0.0,
            dc->lsh ? gm_lsh_count(dc->lsh) : 0);
}

static void dedup_json_extra(void *vctx, gm_buf *b) {
    dedup_ctx *dc = vctx;
    gm_buf_printf(b, ",\"index_bytes\":{\"exact\":%zu,\"near\":%zu}", dc->keys ? gm_keyset_bytes(dc->keys) : 0,
                  dc->lsh ? gm_lsh_bytes(dc->lsh) : 0);
}

static int cmd_dedup(int argc, char **argv) {
    common_opts c;
    if (!common_init(&c, argc)) {
        fprintf(stderr, "gemma data: out of memory\n");
        return CLI_RUNTIME;
    }
    dedup_ctx dc = {DEDUP_EXACT | DEDUP_NEAR, NULL, NULL, NULL, 0};
    gm_minhash_params mp = gm_minhash_params_default();
    int rc = CLI_OK;
    for (int i = 1; i < argc && rc == CLI_OK; i++) {
        const char *a = argv[i], *v;
        long n;
        int k = parse_common(&c, argc, argv, &i);
        if (k == 1) continue;
        if (k < 0) {
            rc = CLI_USAGE;
            break;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage_text(stdout);
            goto done;
        } else if (!strcmp(a, "--mode")) {
            if (!value_arg(argc, argv, &i, &v)) rc = CLI_USAGE;
            else if (!strcmp(v, "exact")) dc.mode = DEDUP_EXACT;
            else if (!strcmp(v, "near")) dc.mode = DEDUP_NEAR;
            else if (!strcmp(v, "both")) dc.mode = DEDUP_EXACT | DEDUP_NEAR;
            else rc = cli_usage(C, "--mode: '%s' is not exact, near or both", v);
        } else if (!strcmp(a, "--threshold")) {
            if (!float_arg(argc, argv, &i, &mp.threshold)) rc = CLI_USAGE;
            else if (!(mp.threshold > 0 && mp.threshold <= 1)) rc = cli_usage(C, "--threshold must be in (0, 1]");
        } else if (!strcmp(a, "--shingle")) {
            if (!int_arg(argc, argv, &i, 1, 64, &n)) rc = CLI_USAGE;
            else mp.shingle = (int)n;
        } else if (!strcmp(a, "--bands")) {
            if (!int_arg(argc, argv, &i, 1, 1024, &n)) rc = CLI_USAGE;
            else mp.bands = (int)n;
        } else if (!strcmp(a, "--rows")) {
            if (!int_arg(argc, argv, &i, 1, 64, &n)) rc = CLI_USAGE;
            else mp.rows = (int)n;
        } else if (!strcmp(a, "--seed")) {
            if (!int_arg(argc, argv, &i, 0, 0x7fffffffL, &n)) rc = CLI_USAGE;
            else mp.seed = (uint64_t)n;
        } else {
            rc = cli_usage(C, "dedup: unknown option '%s'", a);
        }
    }
    if (rc != CLI_OK) goto done;
    if ((rc = common_finish(&c, "dedup")) != CLI_OK) goto done;
    if (mp.bands * mp.rows > 4096) {
        rc = cli_usage(C, "dedup: --bands x --rows must be at most 4096");
        goto done;
    }
    if (gm_minhash_new(&mp, &dc.mh) || gm_lsh_new(dc.mh, &dc.lsh) || gm_keyset_new(&dc.keys)) {
        rc = cli_fail(C);
        goto done;
    }
    dc.perms = gm_minhash_perms(dc.mh);
    static const char *const reasons[] = {"exact_duplicate", "near_duplicate"};
    gm_data_stage st = {"dedup", 2, reasons, sizeof(dedup_slot) + (size_t)dc.perms * sizeof(uint32_t), &dc,
                        dedup_worker_new, dedup_worker_free, dedup_map, dedup_reduce, dedup_annotate};
    gm_data_stats stats;
    rc = run_stage(&c, "dedup", &st, &stats, dedup_print_extra, dedup_json_extra);
done:
    gm_keyset_free(dc.keys);
    gm_lsh_free(dc.lsh);
    gm_minhash_free(dc.mh);
    free(c.inputs);
    return rc;
}

/* ---- decontaminate ------------------------------------------------------------------------------------- */

typedef struct {
    gm_ngram_index *ix;
    int report;
    char **evals;
    int n_evals;
    uint64_t *eval_docs, *eval_text;
    FILE *matches;
    const char *matches_path;
    gm_buf mb;
} decon_ctx;

typedef struct {
    int found;
    size_t start, end;
    uint16_t src;
} decon_slot;

static void *decon_worker_new(void *ctx) {
    (void)ctx;
    return calloc(1, sizeof(gm_ngram_scratch));
}

static void decon_worker_free(void *ctx, void *w) {
    (void)ctx;
    gm_ngram_scratch_free(w);
    free(w);
}

static gm_status decon_map(void *vctx, void *scratch, gm_data_doc *d) {
    decon_ctx *dc = vctx;
    decon_slot *s = d->slot;
    return gm_ngram_index_match(dc->ix, scratch, d->text, d->len, &s->found, &s->start, &s->end, &s->src);
}

static void decon_fields(decon_ctx *dc, const gm_data_doc *d, gm_buf *b) {
    const decon_slot *s = d->slot;
    gm_buf_str(b, ",\"gm_eval\":");
    gm_json_write_string(b, dc->evals[s->src], strlen(dc->evals[s->src]));
    gm_buf_str(b, ",\"gm_ngram\":");
    gm_json_write_string(b, d->text + s->start, s->end - s->start);
}

static gm_status decon_reduce(void *vctx, gm_data_doc *d) {
    decon_ctx *dc = vctx;
    decon_slot *s = d->slot;
    if (!s->found) return GM_OK;
    d->reason = 0;
    d->drop = !dc->report;
    dc->eval_docs[s->src]++;
    dc->eval_text[s->src] += d->len;
    if (dc->matches) {
        dc->mb.n = 0;
        gm_buf_printf(&dc->mb, "{\"doc\":%llu,\"input\":", (unsigned long long)d->index);
        gm_json_write_string(&dc->mb, d->path, strlen(d->path));
        gm_buf_printf(&dc->mb, ",\"line\":%llu", (unsigned long long)d->line);
        decon_fields(dc, d, &dc->mb);
        gm_buf_str(&dc->mb, "}\n");
        if (dc->mb.oom) return gm_fail(GM_ERR_NOMEM, "out of memory");
        if (fwrite(dc->mb.p, 1, dc->mb.n, dc->matches) != dc->mb.n)
            return gm_fail(GM_ERR_IO, "%s: write error", dc->matches_path);
    }
    return GM_OK;
}

static void decon_annotate(void *vctx, const gm_data_doc *d, gm_buf *out) {
    if (((const decon_slot *)d->slot)->found) decon_fields(vctx, d, out);
}

static void decon_print_extra(void *vctx, FILE *f) {
    decon_ctx *dc = vctx;
    fprintf(f, "  index: %zu distinct %d-grams from %d evaluation files (%.1f MB)%s\n", gm_ngram_index_count(dc->ix),
            gm_ngram_index_n(dc->ix), dc->n_evals, (double)gm_ngram_index_bytes(dc->ix) / 1e6,
            dc->report ? "; report mode: matching documents were kept" : "");
    for (int e = 0; e < dc->n_evals; e++)
        if (dc->eval_docs[e])
            fprintf(f, "  %-50s %8llu docs %12llu text bytes\n", dc->evals[e], (unsigned long long)dc->eval_docs[e],
                    (unsigned long long)dc->eval_text[e]);
}

static void decon_json_extra(void *vctx, gm_buf *b) {
    decon_ctx *dc = vctx;
    gm_buf_printf(b, ",\"action\":\"%s\",\"ngram\":%d,\"index_ngrams\":%zu,\"index_bytes\":%zu,\"evals\":{",
                  dc->report ? "report" : "drop", gm_ngram_index_n(dc->ix), gm_ngram_index_count(dc->ix),
                  gm_ngram_index_bytes(dc->ix));
    for (int e = 0; e < dc->n_evals; e++) {
        if (e) gm_buf_str(b, ",");
        gm_json_write_string(b, dc->evals[e], strlen(dc->evals[e]));
        gm_buf_printf(b, ":{\"docs\":%llu,\"text_bytes\":%llu}", (unsigned long long)dc->eval_docs[e],
                      (unsigned long long)dc->eval_text[e]);
    }
    gm_buf_str(b, "}");
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Files taken from an --eval directory: data, not its README or licence. */
static int is_eval_name(const char *name) {
    return ends_with(name, ".jsonl") || ends_with(name, ".json") || ends_with(name, ".csv") ||
           ends_with(name, ".tsv") || ends_with(name, ".txt");
}

/* Add an --eval path: a file, or the .jsonl/.json/.csv/.tsv/.txt files of a directory (sorted, not
 * recursive). */
static int add_eval_path(decon_ctx *dc, int *cap, const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "gemma data: error: %s: cannot open evaluation set\n", path);
        return CLI_RUNTIME;
    }
    char **names = NULL;
    int n = 0;
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        if (!d) {
            fprintf(stderr, "gemma data: error: %s: cannot read directory\n", path);
            return CLI_RUNTIME;
        }
        int ncap = 0;
        for (struct dirent *e; (e = readdir(d));) {
            if (e->d_name[0] == '.' || !is_eval_name(e->d_name)) continue;
            size_t len = strlen(path) + strlen(e->d_name) + 2;
            char *full = malloc(len);
            if (!full) break;
            snprintf(full, len, "%s/%s", path, e->d_name);
            struct stat fs;
            if (stat(full, &fs) != 0 || !S_ISREG(fs.st_mode)) {
                free(full);
                continue;
            }
            if (n == ncap) {
                ncap = ncap ? ncap * 2 : 64;
                char **nn = realloc(names, (size_t)ncap * sizeof *nn);
                if (!nn) {
                    free(full);
                    break;
                }
                names = nn;
            }
            names[n++] = full;
        }
        closedir(d);
        if (n) qsort(names, (size_t)n, sizeof *names, cmp_str);
    } else {
        names = malloc(sizeof *names);
        if (names && (names[0] = strdup(path))) n = 1;
    }
    int rc = CLI_OK;
    for (int k = 0; k < n; k++) {
        if (rc == CLI_OK && dc->n_evals >= 65535) rc = cli_usage(C, "decontaminate: more than 65535 evaluation files");
        if (rc != CLI_OK) {
            free(names[k]);
            continue;
        }
        if (dc->n_evals == *cap) {
            *cap = *cap ? *cap * 2 : 16;
            char **ne = realloc(dc->evals, (size_t)*cap * sizeof *ne);
            if (!ne) {
                free(names[k]);
                rc = CLI_RUNTIME;
                continue;
            }
            dc->evals = ne;
        }
        dc->evals[dc->n_evals++] = names[k];
    }
    free(names);
    return rc;
}

static int cmd_decontaminate(int argc, char **argv) {
    common_opts c;
    if (!common_init(&c, argc)) {
        fprintf(stderr, "gemma data: out of memory\n");
        return CLI_RUNTIME;
    }
    decon_ctx dc;
    memset(&dc, 0, sizeof dc);
    int eval_cap = 0, rc = CLI_OK;
    long ngram = 13;
    for (int i = 1; i < argc && rc == CLI_OK; i++) {
        const char *a = argv[i], *v;
        int k = parse_common(&c, argc, argv, &i);
        if (k == 1) continue;
        if (k < 0) {
            rc = CLI_USAGE;
            break;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage_text(stdout);
            goto done;
        } else if (!strcmp(a, "--eval")) {
            if (!value_arg(argc, argv, &i, &v)) {
                rc = CLI_USAGE;
                break;
            }
            char *dup = strdup(v);
            if (!dup) {
                rc = CLI_RUNTIME;
                break;
            }
            for (char *save = NULL, *t = strtok_r(dup, ",", &save); t && rc == CLI_OK; t = strtok_r(NULL, ",", &save))
                rc = add_eval_path(&dc, &eval_cap, t);
            free(dup);
        } else if (!strcmp(a, "--ngram")) {
            if (!int_arg(argc, argv, &i, 1, 64, &ngram)) rc = CLI_USAGE;
        } else if (!strcmp(a, "--action")) {
            if (!value_arg(argc, argv, &i, &v)) rc = CLI_USAGE;
            else if (!strcmp(v, "drop")) dc.report = 0;
            else if (!strcmp(v, "report")) dc.report = 1;
            else rc = cli_usage(C, "--action: '%s' is not drop or report", v);
        } else if (!strcmp(a, "--matches")) {
            if (!value_arg(argc, argv, &i, &dc.matches_path)) rc = CLI_USAGE;
        } else {
            rc = cli_usage(C, "decontaminate: unknown option '%s'", a);
        }
    }
    if (rc != CLI_OK) goto done;
    if ((rc = common_finish(&c, "decontaminate")) != CLI_OK) goto done;
    if (dc.n_evals == 0) {
        rc = cli_usage(C, "decontaminate: --eval FILES is required");
        goto done;
    }
    dc.eval_docs = calloc((size_t)dc.n_evals, sizeof *dc.eval_docs);
    dc.eval_text = calloc((size_t)dc.n_evals, sizeof *dc.eval_text);
    if (!dc.eval_docs || !dc.eval_text || gm_ngram_index_new((int)ngram, &dc.ix)) {
        rc = cli_fail(C);
        goto done;
    }
    for (int e = 0; e < dc.n_evals; e++) {
        size_t items;
        if (gm_ngram_index_add_file(dc.ix, dc.evals[e], (uint16_t)e, &items)) {
            rc = cli_fail(C);
            goto done;
        }
    }
    if (dc.matches_path) {
        dc.matches = fopen(dc.matches_path, "wb");
        if (!dc.matches) {
            gm_fail(GM_ERR_IO, "%s: cannot create", dc.matches_path);
            rc = cli_fail(C);
            goto done;
        }
    }
    static const char *const reasons[] = {"contaminated"};
    gm_data_stage st = {"decontaminate", 1, reasons, sizeof(decon_slot), &dc, decon_worker_new, decon_worker_free,
                        decon_map, decon_reduce, decon_annotate};
    gm_data_stats stats;
    rc = run_stage(&c, "decontaminate", &st, &stats, decon_print_extra, decon_json_extra);
done:
    if (dc.matches && fclose(dc.matches) && rc == CLI_OK) {
        fprintf(stderr, "gemma data: error: %s: write error\n", dc.matches_path);
        rc = CLI_RUNTIME;
    }
    gm_buf_free(&dc.mb);
    gm_ngram_index_free(dc.ix);
    for (int e = 0; e < dc.n_evals; e++) free(dc.evals[e]);
    free(dc.evals);
    free(dc.eval_docs);
    free(dc.eval_text);
    free(c.inputs);
    return rc;
}

/* ---- pii ------------------------------------------------------------------------------------------------ */

enum { PII_REDACT, PII_DROP, PII_REPORT };

/* A document is charged to its most severe finding, in the detectors' own precedence order. */
static const gm_pii_type PII_RANK[GM_PII_N_TYPES] = {GM_PII_PRIVATE_KEY, GM_PII_API_KEY, GM_PII_IBAN,
                                                     GM_PII_NATIONAL_ID, GM_PII_CARD,    GM_PII_EMAIL,
                                                     GM_PII_IPV6,        GM_PII_IPV4,    GM_PII_PHONE};

typedef struct {
    int action;
    gm_pii_options opt;
    int min_severity;
    const char *reasons[GM_PII_N_TYPES];
    atomic_ullong findings[GM_PII_N_TYPES];
} pii_ctx;

typedef struct {
    uint32_t count[GM_PII_N_TYPES];
} pii_slot;

static gm_status pii_map(void *vctx, void *scratch, gm_data_doc *d) {
    (void)scratch;
    pii_ctx *pc = vctx;
    pii_slot *slot = d->slot;
    memset(slot, 0, sizeof *slot);
    gm_pii_finding *f;
    size_t n;
    gm_status st = gm_pii_scan(d->text, d->len, &pc->opt, &f, &n);
    if (st) return st;
    size_t k = 0; /* keep the findings at or above the severity floor */
    for (size_t i = 0; i < n; i++)
        if ((int)f[i].severity >= pc->min_severity) f[k++] = f[i];
    n = k;
    for (size_t i = 0; i < n; i++) {
        slot->count[f[i].type]++;
        atomic_fetch_add(&pc->findings[f[i].type], 1);
    }
    if (n) {
        for (int r = 0; r < GM_PII_N_TYPES && d->reason < 0; r++)
            if (slot->count[PII_RANK[r]]) d->reason = (int)PII_RANK[r];
        if (pc->action == PII_DROP) d->drop = 1;
        if (pc->action == PII_REDACT) st = gm_pii_redact(d->text, d->len, f, n, &d->new_text, &d->new_len);
    }
    free(f);
    return st;
}

static void pii_annotate(void *vctx, const gm_data_doc *d, gm_buf *out) {
    (void)vctx;
    const pii_slot *s = d->slot;
    gm_buf_str(out, ",\"gm_pii\":{");
    int first = 1;
    for (int t = 0; t < GM_PII_N_TYPES; t++)
        if (s->count[t]) {
            gm_buf_printf(out, "%s\"%s\":%u", first ? "" : ",", gm_pii_type_name((gm_pii_type)t), s->count[t]);
            first = 0;
        }
    gm_buf_str(out, "}");
}

static void pii_print_extra(void *vctx, FILE *f) {
    pii_ctx *pc = vctx;
    fprintf(f, "  findings (%s):", pc->action == PII_REDACT ? "redacted" : pc->action == PII_DROP ? "dropped" : "reported");
    for (int t = 0; t < GM_PII_N_TYPES; t++)
        fprintf(f, " %s %llu", gm_pii_type_name((gm_pii_type)t), (unsigned long long)pc->findings[t]);
    fputc('\n', f);
}

static void pii_json_extra(void *vctx, gm_buf *b) {
    pii_ctx *pc = vctx;
    gm_buf_printf(b, ",\"action\":\"%s\",\"findings\":{",
                  pc->action == PII_REDACT ? "redact" : pc->action == PII_DROP ? "drop" : "report");
    for (int t = 0; t < GM_PII_N_TYPES; t++)
        gm_buf_printf(b, "%s\"%s\":%llu", t ? "," : "", gm_pii_type_name((gm_pii_type)t),
                      (unsigned long long)pc->findings[t]);
    gm_buf_str(b, "}");
}

static int cmd_data_pii(int argc, char **argv) {
    common_opts c;
    pii_ctx *pc = calloc(1, sizeof *pc);
    if (!pc || !common_init(&c, argc)) {
        free(pc);
        fprintf(stderr, "gemma data: out of memory\n");
        return CLI_RUNTIME;
    }
    pc->min_severity = GM_PII_PERSONAL;
    int rc = CLI_OK;
    for (int i = 1; i < argc && rc == CLI_OK; i++) {
        const char *a = argv[i], *v;
        int k = parse_common(&c, argc, argv, &i);
        if (k == 1) continue;
        if (k < 0) {
            rc = CLI_USAGE;
            break;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage_text(stdout);
            goto done;
        } else if (!strcmp(a, "--action")) {
            if (!value_arg(argc, argv, &i, &v)) rc = CLI_USAGE;
            else if (!strcmp(v, "redact")) pc->action = PII_REDACT;
            else if (!strcmp(v, "drop")) pc->action = PII_DROP;
            else if (!strcmp(v, "report")) pc->action = PII_REPORT;
            else rc = cli_usage(C, "--action: '%s' is not redact, drop or report", v);
        } else if (!strcmp(a, "--types")) {
            if (!value_arg(argc, argv, &i, &v)) {
                rc = CLI_USAGE;
                break;
            }
            char *dup = strdup(v);
            if (!dup) {
                rc = CLI_RUNTIME;
                break;
            }
            for (char *save = NULL, *t = strtok_r(dup, ",", &save); t && rc == CLI_OK; t = strtok_r(NULL, ",", &save)) {
                int ty = gm_pii_type_from_name(t);
                if (ty < 0) rc = cli_usage(C, "--types: unknown detector '%s'", t);
                else pc->opt.types |= 1u << ty;
            }
            free(dup);
        } else if (!strcmp(a, "--severity")) {
            if (!value_arg(argc, argv, &i, &v)) rc = CLI_USAGE;
            else if (!strcmp(v, "personal")) pc->min_severity = GM_PII_PERSONAL;
            else if (!strcmp(v, "sensitive")) pc->min_severity = GM_PII_SENSITIVE;
            else rc = cli_usage(C, "--severity: '%s' is not personal or sensitive", v);
        } else if (!strcmp(a, "--skip-local-ip")) {
            pc->opt.skip_local_ip = 1;
        } else {
            rc = cli_usage(C, "pii: unknown option '%s'", a);
        }
    }
    if (rc != CLI_OK) goto done;
    if ((rc = common_finish(&c, "pii")) != CLI_OK) goto done;
    for (int t = 0; t < GM_PII_N_TYPES; t++) pc->reasons[t] = gm_pii_type_name((gm_pii_type)t);
    gm_data_stage st = {"pii", GM_PII_N_TYPES, pc->reasons, sizeof(pii_slot), pc, NULL, NULL, pii_map, NULL,
                        pii_annotate};
    gm_data_stats stats;
    rc = run_stage(&c, "pii", &st, &stats, pii_print_extra, pii_json_extra);
done:
    free(pc);
    free(c.inputs);
    return rc;
}

/* ---- tokenize: text -> token shards ------------------------------------------------------------------ */

enum { TOK_AUTO, TOK_TEXT, TOK_JSONL, TOK_IDS };

typedef struct {
    const char *path;
    int format;
    uint64_t bytes, docs, tokens, empty;
} tok_input;

typedef struct {
    gm_tokenizer *tok;
    gm_shard_writer *w;
    int32_t bos, eos;
    uint32_t vocab;
    int flags;             /* gm_tokenizer_encode flags */
    const char *key;       /* JSONL member: text (or ids for --format ids) */
    const char *doc_sep;   /* NULL: one document per text file */
    size_t max_doc_bytes;
    int progress;          /* stderr is a terminal: a line every second */
    double t0, next_report;
    uint64_t bytes_total, bytes_before, docs, tokens;
    int32_t *ids;          /* --format ids: the document being built */
    size_t ids_cap;
} tok_ctx;

static int is_space_char(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* A progress line every second on a terminal (overwritten in place); final = end it with a newline. */
static void tok_progress(tok_ctx *t, uint64_t bytes_now, int final) {
    if (!t->progress) return;
    if (final) {
        if (t->next_report > t->t0 + 1.0) fputc('\n', stderr); /* only if a line was printed */
        return;
    }
    double now = cli_now();
    if (now < t->next_report) return;
    t->next_report = now + 1.0;
    double rate = (double)t->tokens / (now - t->t0 > 1e-9 ? now - t->t0 : 1e-9);
    double done = (double)(t->bytes_before + bytes_now) / 1e6;
    if (t->bytes_total)
        fprintf(stderr, "\r  %.1f / %.1f MB (%.0f%%), %llu docs, %llu tokens, %.0f tokens/s   ", done,
                (double)t->bytes_total / 1e6, 100.0 * done * 1e6 / (double)t->bytes_total,
                (unsigned long long)t->docs, (unsigned long long)t->tokens, rate);
    else
        fprintf(stderr, "\r  %.1f MB, %llu docs, %llu tokens, %.0f tokens/s   ", done, (unsigned long long)t->docs,
                (unsigned long long)t->tokens, rate);
}

static gm_status tok_add(tok_ctx *t, tok_input *in, const int32_t *ids, size_t n) {
    gm_status st = gm_shard_writer_add_doc(t->w, ids, n);
    if (st) return st;
    size_t added = n + (t->bos >= 0) + (t->eos >= 0);
    in->docs++;
    in->tokens += added;
    t->docs++;
    t->tokens += added;
    return GM_OK;
}

static gm_status tok_text(tok_ctx *t, tok_input *in, const char *text, size_t len, uint64_t line) {
    int32_t *ids;
    size_t n;
    gm_status st = gm_tokenizer_encode(t->tok, text, len, t->flags, &ids, &n);
    if (st) return gm_fail_prefix(st, "%s: line %llu: ", in->path, (unsigned long long)line);
    st = tok_add(t, in, ids, n);
    free(ids);
    return st;
}

/* {"ids": [...]}: every element an integer id below the vocabulary. A leading <bos> or trailing <eos> is
 * not doubled (control ids never come out of encoding text, so they can only be the framing). */
static gm_status tok_ids(tok_ctx *t, tok_input *in, const gm_json *arr, uint64_t line) {
    if (arr->len > t->ids_cap) {
        size_t cap = arr->len < 1024 ? 1024 : arr->len;
        int32_t *p = realloc(t->ids, cap * sizeof *p);
        if (!p) return gm_fail(GM_ERR_NOMEM, "out of memory");
        t->ids = p;
        t->ids_cap = cap;
    }
    for (size_t i = 0; i < arr->len; i++) {
        const gm_json *v = &arr->items[i];
        if (v->type != GM_JSON_NUMBER || !v->is_int || v->i < 0 || v->i >= (int64_t)t->vocab)
            return gm_fail(GM_ERR_FORMAT, "%s: line %llu: \"%s\"[%zu] is not an integer id in [0, %u)", in->path,
                           (unsigned long long)line, t->key, i, t->vocab);
        t->ids[i] = (int32_t)v->i;
    }
    size_t a = 0, b = arr->len;
    if (b > a && t->bos >= 0 && t->ids[a] == t->bos) a++;
    if (b > a && t->eos >= 0 && t->ids[b - 1] == t->eos) b--;
    if (a == b) {
        in->empty++;
        return GM_OK;
    }
    return tok_add(t, in, t->ids + a, b - a);
}

static gm_status tok_jsonl_record(tok_ctx *t, tok_input *in, const char *rec, size_t len, uint64_t line) {
    gm_json_doc *doc;
    char where[4200];
    snprintf(where, sizeof where, "%s: line %llu", in->path, (unsigned long long)line);
    gm_status st = gm_json_parse(rec, len, where, &doc);
    if (st) return st;
    const gm_json *v = gm_json_get(gm_json_root(doc), t->key);
    if (in->format == TOK_IDS) {
        if (!v || v->type != GM_JSON_ARRAY)
            st = gm_fail(GM_ERR_FORMAT, "%s: expected an object with an \"%s\" array of token ids", where, t->key);
        else
            st = tok_ids(t, in, v, line);
    } else if (!v || v->type != GM_JSON_STRING) {
        st = gm_fail(GM_ERR_FORMAT, "%s: expected an object with a \"%s\" string (--text-key NAME for another member)",
                     where, t->key);
    } else if (v->len == 0) {
        in->empty++;
    } else {
        st = tok_text(t, in, v->str, v->len, line);
    }
    gm_json_free(doc);
    return st;
}

static gm_status tok_file(tok_ctx *t, tok_input *in) {
    int lines = in->format != TOK_TEXT;
    gm_doc_reader *r;
    gm_status st = gm_doc_reader_open(in->path, lines ? GM_SPLIT_LINE : t->doc_sep ? GM_SPLIT_SEP : GM_SPLIT_FILE,
                                      t->doc_sep, t->max_doc_bytes, &r);
    if (st) return st;
    for (;;) {
        const char *rec;
        size_t len;
        uint64_t line;
        int oversize;
        st = gm_doc_reader_next(r, &rec, &len, &line, &oversize);
        if (st || !rec) break;
        if (oversize) {
            st = gm_fail(GM_ERR_FORMAT, "%s: line %llu: %s longer than %zu bytes (raise --max-doc-bytes, or split the "
                         "text with --doc-sep)", in->path, (unsigned long long)line,
                         lines ? "a line is" : "a document is", t->max_doc_bytes);
            break;
        }
        /* Text documents are trimmed, as in the other `gemma data` commands; blank ones are not documents. */
        size_t a = 0, b = len;
        while (a < b && is_space_char(rec[a])) {
            if (rec[a] == '\n') line++;
            a++;
        }
        while (b > a && is_space_char(rec[b - 1])) b--;
        if (a == b) {
            if (!lines) in->empty++;
            continue;
        }
        st = lines ? tok_jsonl_record(t, in, rec + a, b - a, line) : tok_text(t, in, rec + a, b - a, line);
        if (st) break;
        tok_progress(t, gm_doc_reader_bytes(r), 0);
    }
    in->bytes = gm_doc_reader_bytes(r);
    t->bytes_before += in->bytes;
    gm_doc_reader_close(r);
    return st;
}

/* meta.json beside the shards, written like them: temp file, fsync, rename. */
static gm_status tok_write_meta(const char *dir, const tok_ctx *t, const gm_shard_summary *sum, const char *tokenizer,
                                const tok_input *in, int n_in, double seconds) {
    static const char *const fmt_name[] = {"auto", "text", "jsonl", "ids"};
    gm_buf b = {0};
    gm_buf_printf(&b, "{\n  \"format\": \"gemma.c token shards\",\n  \"version\": %d,\n  \"vocab_size\": %u,\n"
                  "  \"bos_id\": %ld,\n  \"eos_id\": %ld,\n  \"tokenizer\": ", GM_SHARD_VERSION, t->vocab, (long)t->bos,
                  (long)t->eos);
    if (tokenizer) gm_json_write_string(&b, tokenizer, strlen(tokenizer));
    else gm_buf_str(&b, "null");
    gm_buf_printf(&b, ",\n  \"docs\": %llu,\n  \"tokens\": %llu,\n  \"shard_tokens\": %llu,\n  \"shards\": [",
                  (unsigned long long)sum->docs, (unsigned long long)sum->tokens,
                  (unsigned long long)sum->shard_tokens);
    for (int i = 0; i < sum->n_shards; i++) {
        uint64_t n = i + 1 < sum->n_shards ? sum->shard_tokens : sum->tokens - (uint64_t)i * sum->shard_tokens;
        gm_buf_printf(&b, "%s\n    {\"file\": \"shard_%05d.bin\", \"tokens\": %llu}", i ? "," : "", i,
                      (unsigned long long)n);
    }
    gm_buf_str(&b, "\n  ],\n  \"sources\": [");
    for (int i = 0; i < n_in; i++) {
        gm_buf_str(&b, i ? ",\n    {\"path\": " : "\n    {\"path\": ");
        gm_json_write_string(&b, in[i].path, strlen(in[i].path));
        gm_buf_printf(&b, ", \"format\": \"%s\", \"bytes\": %llu, \"docs\": %llu, \"tokens\": %llu, \"empty\": %llu}",
                      fmt_name[in[i].format], (unsigned long long)in[i].bytes, (unsigned long long)in[i].docs,
                      (unsigned long long)in[i].tokens, (unsigned long long)in[i].empty);
    }
    gm_buf_str(&b, "\n  ],\n  \"doc_sep\": ");
    if (t->doc_sep) gm_json_write_string(&b, t->doc_sep, strlen(t->doc_sep));
    else gm_buf_str(&b, "null");
    gm_buf_printf(&b, ",\n  \"seconds\": %.3f\n}\n", seconds);
    if (b.oom) {
        gm_buf_free(&b);
        return gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    char *path = gm_path_join(dir, "meta.json"), *tmp = gm_path_join(dir, ".meta.json.tmp");
    gm_status st = GM_OK;
    FILE *f = path && tmp ? fopen(tmp, "wb") : NULL;
    if (!path || !tmp) st = gm_fail(GM_ERR_NOMEM, "out of memory");
    else if (!f) st = gm_fail(GM_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    else {
        int bad = fwrite(b.p, 1, b.n, f) != b.n || fflush(f) != 0 || fsync(fileno(f)) != 0;
        if (fclose(f) != 0) bad = 1;
        if (bad) st = gm_fail(GM_ERR_IO, "%s: write failed", tmp);
        else if (rename(tmp, path) != 0)
            st = gm_fail(GM_ERR_IO, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
        if (st) unlink(tmp);
    }
    free(path);
    free(tmp);
    gm_buf_free(&b);
    return st;
}

static void tokenize_usage(FILE *f) {
    fputs("usage: gemma data tokenize (-m MODEL | --tokenizer FILE) INPUT... --out DIR [options]\n"
          "  turns documents into token shards DIR/shard_NNNNN.bin (<bos> ids <eos> per document) and DIR/meta.json\n"
          "  INPUT...              text, JSONL or ids files (- reads standard input)\n"
          "  --out DIR             output directory (created; refused if it already holds shards)\n"
          "  --format F            auto (default: .jsonl/.json are JSONL, others text), text, jsonl, or ids\n"
          "                        (JSONL lines {\"ids\": [...]}, already tokenized; no tokenizer needed)\n"
          "  --doc-sep STR         text: documents separated by STR (default '<|endoftext|>', as in TinyStories;\n"
          "                        a file without it is one document); --doc-sep '' = one document per file\n"
          "  --text-key NAME       JSONL member holding the text (default text; for --format ids, default ids)\n"
          "  --shard-tokens N      tokens per shard (default 100000000, 400 MB files)\n"
          "  --vocab-size N        --format ids without a tokenizer: the vocabulary size (required then)\n"
          "  --bos ID, --eos ID    framing ids (default the tokenizer's; without one 2 and 1, Gemma's); -1 = none\n"
          "  --special             text such as \"<start_of_turn>\" becomes its control id (default: plain text)\n"
          "  --max-doc-bytes N     longer documents or lines are an error (default 67108864)\n"
          "  -q, --quiet           no summary line\n"
          "  progress (bytes, tokens/s) on stderr every second when it is a terminal; a summary line at the end\n",
          f);
}

static int cmd_tokenize_shards(int argc, char **argv) {
    const char *model = NULL, *tokfile = NULL, *out = NULL, *key = NULL, *v;
    const char *doc_sep = "<|endoftext|>";
    long shard_tokens = (long)GM_SHARD_DEFAULT_TOKENS, vocab = 0, bos = LONG_MIN, eos = LONG_MIN;
    long max_doc = 64L << 20;
    int format = TOK_AUTO, quiet = 0, special = 0, rc = CLI_OK;
    tok_input *in = calloc((size_t)argc + 1, sizeof *in);
    int n_in = 0;
    tok_ctx t;
    memset(&t, 0, sizeof t);
    if (!in) {
        fprintf(stderr, "gemma data: out of memory\n");
        return CLI_RUNTIME;
    }
    for (int i = 1; i < argc && rc == CLI_OK; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            tokenize_usage(stdout);
            goto done;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!value_arg(argc, argv, &i, &model)) rc = CLI_USAGE;
        } else if (!strcmp(a, "--tokenizer")) {
            if (!value_arg(argc, argv, &i, &tokfile)) rc = CLI_USAGE;
        } else if (!strcmp(a, "--out") || !strcmp(a, "-o")) {
            if (!value_arg(argc, argv, &i, &out)) rc = CLI_USAGE;
        } else if (!strcmp(a, "--format")) {
            if (!value_arg(argc, argv, &i, &v)) rc = CLI_USAGE;
            else if (!strcmp(v, "auto")) format = TOK_AUTO;
            else if (!strcmp(v, "text")) format = TOK_TEXT;
            else if (!strcmp(v, "jsonl")) format = TOK_JSONL;
            else if (!strcmp(v, "ids")) format = TOK_IDS;
            else rc = cli_usage(C, "tokenize: --format '%s' is not auto, text, jsonl or ids", v);
        } else if (!strcmp(a, "--doc-sep")) {
            if (!value_arg(argc, argv, &i, &doc_sep)) rc = CLI_USAGE;
        } else if (!strcmp(a, "--text-key")) {
            if (!value_arg(argc, argv, &i, &key)) rc = CLI_USAGE;
        } else if (!strcmp(a, "--shard-tokens")) {
            if (!int_arg(argc, argv, &i, 1, 1L << 40, &shard_tokens)) rc = CLI_USAGE;
        } else if (!strcmp(a, "--vocab-size")) {
            if (!int_arg(argc, argv, &i, 1, INT32_MAX, &vocab)) rc = CLI_USAGE;
        } else if (!strcmp(a, "--bos")) {
            if (!int_arg(argc, argv, &i, -1, INT32_MAX, &bos)) rc = CLI_USAGE;
        } else if (!strcmp(a, "--eos")) {
            if (!int_arg(argc, argv, &i, -1, INT32_MAX, &eos)) rc = CLI_USAGE;
        } else if (!strcmp(a, "--max-doc-bytes")) {
            if (!int_arg(argc, argv, &i, 1, 1L << 40, &max_doc)) rc = CLI_USAGE;
        } else if (!strcmp(a, "--special")) {
            special = 1;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (!strcmp(a, "-") || a[0] != '-') {
            in[n_in++].path = a;
        } else {
            rc = cli_usage(C, "tokenize: unknown option '%s'", a);
        }
    }
    if (rc != CLI_OK) goto done;
    if (!out) {
        rc = cli_usage(C, "tokenize: --out DIR is required");
        goto done;
    }
    if (n_in == 0) {
        rc = cli_usage(C, "tokenize: no input files (use - for standard input)");
        goto done;
    }
    if (model && tokfile) {
        rc = cli_usage(C, "tokenize: give one of -m MODEL or --tokenizer FILE, not both");
        goto done;
    }
    for (int i = 0; i < n_in; i++) {
        in[i].format = format != TOK_AUTO ? format
                       : ends_with(in[i].path, ".jsonl") || ends_with(in[i].path, ".json") ? TOK_JSONL
                                                                                             : TOK_TEXT;
        if (in[i].format != TOK_IDS && !model && !tokfile) {
            rc = cli_usage(C, "tokenize: %s is %s: give -m MODEL or --tokenizer FILE (only --format ids needs none)",
                           in[i].path, in[i].format == TOK_JSONL ? "JSONL text" : "text");
            goto done;
        }
    }
    if (format == TOK_IDS && !model && !tokfile && !vocab) {
        rc = cli_usage(C, "tokenize: --format ids without a tokenizer needs --vocab-size N");
        goto done;
    }
    if (model || tokfile) {
        if (model ? gm_tokenizer_load_dir(model, &t.tok) : gm_tokenizer_load(tokfile, &t.tok)) {
            rc = cli_fail(C);
            goto done;
        }
        t.vocab = (uint32_t)gm_tokenizer_vocab_size(t.tok);
        t.bos = gm_tokenizer_bos(t.tok);
        t.eos = gm_tokenizer_eos(t.tok);
        if (vocab && (uint32_t)vocab != t.vocab) {
            rc = cli_usage(C, "tokenize: --vocab-size %ld differs from the tokenizer's %u", vocab, t.vocab);
            goto done;
        }
    } else {
        t.vocab = (uint32_t)vocab;
        t.bos = 2;
        t.eos = 1;
    }
    if (bos != LONG_MIN) t.bos = (int32_t)bos;
    if (eos != LONG_MIN) t.eos = (int32_t)eos;
    if ((t.bos >= 0 && (uint32_t)t.bos >= t.vocab) || (t.eos >= 0 && (uint32_t)t.eos >= t.vocab) ||
        (t.eos < 0 && eos == LONG_MIN) || (t.bos < 0 && bos == LONG_MIN)) {
        rc = cli_usage(C, "tokenize: bos %ld / eos %ld: need ids below the vocabulary size %u (the tokenizer has none? "
                       "give --bos/--eos)", (long)t.bos, (long)t.eos, t.vocab);
        goto done;
    }
    t.flags = special ? GM_TOK_PARSE_SPECIAL : 0;
    t.key = key ? key : format == TOK_IDS ? "ids" : "text";
    t.doc_sep = doc_sep && *doc_sep ? doc_sep : NULL;
    t.max_doc_bytes = (size_t)max_doc;
    t.progress = !quiet && isatty(2);
    for (int i = 0; i < n_in; i++) {
        struct stat sb;
        if (strcmp(in[i].path, "-") && stat(in[i].path, &sb) == 0) {
            if (S_ISDIR(sb.st_mode)) {
                fprintf(stderr, "gemma data: error: %s: is a directory (give the files)\n", in[i].path);
                rc = CLI_RUNTIME;
                goto done;
            }
            if (S_ISREG(sb.st_mode)) t.bytes_total += (uint64_t)sb.st_size;
        }
    }
    if (gm_shard_writer_open(out, t.vocab, t.bos, t.eos, (uint64_t)shard_tokens, &t.w)) {
        rc = cli_fail(C);
        goto done;
    }
    t.t0 = cli_now();
    t.next_report = t.t0 + 1.0;
    gm_status st = GM_OK;
    for (int i = 0; i < n_in && !st; i++) st = tok_file(&t, &in[i]);
    tok_progress(&t, 0, 1);
    gm_shard_summary sum;
    if (!st && t.docs == 0) st = gm_fail(GM_ERR_FORMAT, "%s: no documents in the input (all empty?)", in[0].path);
    if (st) {
        gm_shard_writer_abort(t.w);
        t.w = NULL;
        rc = cli_fail(C);
        goto done;
    }
    st = gm_shard_writer_close(t.w, &sum);
    t.w = NULL;
    double secs = cli_now() - t.t0;
    if (!st) st = tok_write_meta(out, &t, &sum, model ? model : tokfile, in, n_in, secs);
    if (st) {
        rc = cli_fail(C);
        goto done;
    }
    if (!quiet)
        fprintf(stderr, "tokenized %llu docs, %.1f MB -> %llu tokens in %d shard%s in %s (%.2f s, %.0f tokens/s)\n",
                (unsigned long long)sum.docs, (double)t.bytes_before / 1e6, (unsigned long long)sum.tokens,
                sum.n_shards, sum.n_shards == 1 ? "" : "s", out, secs,
                (double)sum.tokens / (secs > 1e-9 ? secs : 1e-9));
done:
    gm_shard_writer_abort(t.w);
    gm_tokenizer_free(t.tok);
    free(t.ids);
    free(in);
    return rc;
}

/* ---- dispatch ------------------------------------------------------------------------------------------ */

int cmd_data(int argc, char **argv) {
    if (argc < 2) {
        usage_text(stderr);
        return CLI_USAGE;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "-h") || !strcmp(sub, "--help") || !strcmp(sub, "help")) {
        usage_text(stdout);
        return CLI_OK;
    }
    if (!strcmp(sub, "filter")) return cmd_filter(argc - 1, argv + 1);
    if (!strcmp(sub, "dedup")) return cmd_dedup(argc - 1, argv + 1);
    if (!strcmp(sub, "decontaminate") || !strcmp(sub, "decontam")) return cmd_decontaminate(argc - 1, argv + 1);
    if (!strcmp(sub, "pii")) return cmd_data_pii(argc - 1, argv + 1);
    if (!strcmp(sub, "tokenize")) return cmd_tokenize_shards(argc - 1, argv + 1);
    return cli_usage(C, "unknown subcommand '%s' (filter, dedup, decontaminate, pii, tokenize)", sub);
}
