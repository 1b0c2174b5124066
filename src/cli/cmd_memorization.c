/* `gemma memorization`: how much of its training data a model reproduces. Samples documents, prompts with
 * each one's first P tokens, decodes S greedily and counts exact and approximate (edit distance) matches
 * with the true continuation, with Wilson intervals; --pii scans what was memorized. See docs/eval.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "cli/cli.h"
#include "data/docio.h"
#include "data/shards.h"
#include "eval/memorization.h"
#include "eval/pii.h"
#include "eval/score.h"

static const char *C = "memorization";

static const char *HELP =
    "usage: gemma memorization -m MODEL_DIR --data PATH [--data PATH...] [options]\n"
    "  --data PATH         documents: text (.txt and others; documents separated by blank lines) or JSONL\n"
    "                      (.jsonl/.json; one object per line, its --field a string, or an array of token\n"
    "                      ids used as they are), or a directory of token shards (shard_00000.bin...,\n"
    "                      documents split at <bos> / <eos>); - is standard input\n"
    "  --docs N            documents to sample (default 10000; all when there are fewer)\n"
    "  --prefix P          prompt tokens from the start of each document (default 50)\n"
    "  --suffix S          tokens decoded greedily and compared with the document's next S (default 50)\n"
    "  --threshold F       approximate match: edit distance <= F * S tokens (default 0.10)\n"
    "  --pii               scan memorized continuations for personal data (see docs/pii.md)\n"
    "  --pii-types LIST    only these detectors (EMAIL,PHONE,CARD,IBAN,NATIONAL_ID,IPV4,IPV6,PRIVATE_KEY,\n"
    "                      API_KEY)\n"
    "  --seed N            sampling seed (default 1)\n"
    "  --format F          auto (default: shard directories, .jsonl/.json as JSONL, others text), text,\n"
    "                      jsonl or shards\n"
    "  --split S           text: blank (blank-line separated documents, default), file (one per file) or\n"
    "                      line (one per line)\n"
    "  --sep STR           text: documents separated by this string instead (e.g. '<|endoftext|>')\n"
    "  --field NAME        JSONL field holding the text or the ids (default text)\n"
    "  --json              print the results as JSON instead of the table\n"
    "  --out FILE          also write the results as JSON to FILE\n"
    "  --samples FILE      one JSON line per document: prefix, target and generated ids and text, distance\n"
    "  --no-early-stop     decode all S tokens even when the continuation can no longer match (slower;\n"
    "                      the rates are the same, the samples then carry every distance)\n"
    "  -t, --threads N     threads (default: all cores)\n"
    "  --cache-type T      KV cache f32 (default) or bf16\n"
    "  --mmap | --no-mmap  map the weights or read them into memory (default --no-mmap)\n"
    "  -q, --quiet         no progress on stderr\n"
    "exit status: 0 done, 1 runtime error (unreadable data or model), 2 usage error\n";


/* ---- reading documents ------------------------------------------------------------------------- */

typedef struct {
    const gm_tokenizer *tok;
    gm_memo_sample *sample;
    const char *field;
    int32_t *ids;
    size_t cap;
    int32_t bos, eos; /* document boundaries in token shards */
    int quiet;
    double t0, last;  /* reading progress: a line every 5 s on long reads */
} reader_ctx;

static gm_status offer(reader_ctx *rc, const int32_t *ids, size_t n) {
    gm_status st = gm_memo_sample_add(rc->sample, ids, n);
    if (!rc->quiet && (rc->sample->seen & 1023) == 0) {
        double t = cli_now();
        if (t - rc->last >= 5) {
            rc->last = t;
            fprintf(stderr, "reading: %llu documents, %llu long enough, %.0f s\n", (unsigned long long)rc->sample->seen,
                    (unsigned long long)rc->sample->eligible, t - rc->t0);
        }
    }
    return st;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

static gm_status add_text(reader_ctx *rc, const char *path, uint64_t line, const char *text, size_t len) {
    while (len && is_space(*text)) text++, len--;
    while (len && is_space(text[len - 1])) len--;
    if (!rc->tok)
        return gm_fail(GM_ERR_ARG,
                       "%s: line %llu: text documents need the model's tokenizer (tokenizer.model or tokenizer.json), "
                       "or JSONL with arrays of token ids", path, (unsigned long long)line);
    int32_t *ids = NULL;
    size_t n = 0;
    gm_status st = gm_tokenizer_encode(rc->tok, text, len, 0, &ids, &n);
    if (st) return gm_fail_prefix(st, "%s: line %llu: ", path, (unsigned long long)line);
    st = offer(rc, ids, n);
    free(ids);
    return st;
}

static gm_status add_json(reader_ctx *rc, const char *path, uint64_t line, const char *rec, size_t len) {
    size_t k = 0;
    while (k < len && is_space(rec[k])) k++;
    if (k == len) return GM_OK; /* blank line */
    gm_json_doc *doc;
    char what[64];
    snprintf(what, sizeof what, "line %llu", (unsigned long long)line);
    gm_status st = gm_json_parse(rec, len, what, &doc);
    if (st) return gm_fail_prefix(st, "%s: ", path);
    const gm_json *v = gm_json_get(gm_json_root(doc), rc->field);
    if (v && v->type == GM_JSON_STRING) st = add_text(rc, path, line, v->str, v->len);
    else if (v && v->type == GM_JSON_ARRAY) {
        if (v->len > rc->cap) {
            int32_t *ni = realloc(rc->ids, sizeof(int32_t) * v->len);
            if (!ni) st = gm_fail(GM_ERR_NOMEM, "out of memory");
            else rc->ids = ni, rc->cap = v->len;
        }
        for (size_t i = 0; i < v->len && !st; i++) {
            const gm_json *x = &v->items[i];
            if (x->type != GM_JSON_NUMBER || !x->is_int || x->i < 0 || x->i > INT32_MAX)
                st = gm_fail(GM_ERR_FORMAT, "%s: line %llu: \"%s\"[%zu] is not a token id", path,
                             (unsigned long long)line, rc->field, i);
            else rc->ids[i] = (int32_t)x->i;
        }
        if (!st) st = offer(rc, rc->ids, v->len);
    } else
        st = gm_fail(GM_ERR_FORMAT, "%s: line %llu: no \"%s\" field holding a string or an array of token ids", path,
                     (unsigned long long)line, rc->field);
    gm_json_free(doc);
    return st;
}

static gm_status read_file(reader_ctx *rc, const char *path, int jsonl, gm_doc_split split, const char *sep) {
    gm_doc_reader *r;
    gm_status st = gm_doc_reader_open(path, jsonl ? GM_SPLIT_LINE : split, sep, (size_t)1 << 30, &r);
    if (st) return st;
    const char *name = strcmp(path, "-") ? path : "stdin";
    for (;;) {
        const char *rec;
        size_t len;
        uint64_t line;
        int oversize;
        if ((st = gm_doc_reader_next(r, &rec, &len, &line, &oversize)) || !rec) break;
        if (oversize) {
            st = gm_fail(GM_ERR_FORMAT, "%s: line %llu: a document over 1 GiB", name, (unsigned long long)line);
            break;
        }
        if (jsonl) st = add_json(rc, name, line, rec, len);
        else {
            size_t k = 0;
            while (k < len && is_space(rec[k])) k++;
            if (k < len) st = add_text(rc, name, line, rec, len);
        }
        if (st) break;
    }
    gm_doc_reader_close(r);
    return st;
}

/* Token shards (src/data/shards.h): the stream is split into documents at <bos> and after <eos>, which are
 * not part of them; only each document's first len tokens are kept, so memory stays constant. */
static gm_status read_shards(reader_ctx *rc, const char *dir) {
    gm_shards *sh;
    gm_status st = gm_shards_open(dir, &sh);
    if (st) return st;
    enum { CHUNK = 1 << 16 };
    int len = rc->sample->len;
    int32_t *chunk = malloc(sizeof(int32_t) * CHUNK), *doc = malloc(sizeof(int32_t) * (size_t)len);
    if (!chunk || !doc) st = gm_fail(GM_ERR_NOMEM, "out of memory");
    uint64_t total = gm_shards_n_tokens(sh), n_doc = 0;
    for (uint64_t pos = 0; pos < total && !st; pos += CHUNK) {
        size_t n = total - pos < CHUNK ? (size_t)(total - pos) : CHUNK;
        if ((st = gm_shards_read(sh, pos, n, chunk))) break;
        for (size_t i = 0; i < n && !st; i++) {
            int32_t t = chunk[i];
            if (t == rc->bos || t == rc->eos) {
                if (n_doc) st = offer(rc, doc, (size_t)n_doc);
                n_doc = 0;
            } else {
                if (n_doc < (uint64_t)len) doc[n_doc] = t;
                n_doc++;
            }
        }
    }
    if (!st && n_doc) st = offer(rc, doc, (size_t)n_doc);
    free(chunk);
    free(doc);
    gm_shards_close(sh);
    return st;
}

static int is_shard_dir(const char *path) {
    char *p = gm_path_join(path, "shard_00000.bin");
    int yes = p && gm_file_exists(p);
    free(p);
    return yes;
}

/* ---- output ------------------------------------------------------------------------------------ */

static void json_num(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.6g", v);
    else fputs("null", f);
}

static void json_rate(FILE *f, const char *name, long k, long n) {
    double lo, hi;
    gm_wilson_interval(k, n, GM_Z95, &lo, &hi);
    fprintf(f, ",\n  \"%s\": {\"count\": %ld, \"n\": %ld, \"rate\": ", name, k, n);
    json_num(f, n ? (double)k / (double)n : NAN);
    fputs(", \"ci95\": [", f);
    json_num(f, lo);
    fputs(", ", f);
    json_num(f, hi);
    fputs("]}", f);
}

typedef struct {
    const char *model;
    const char *const *data;
    int n_data;
    long docs, threads, ctx;
    unsigned long long seed;
    int pii, early_stop;
    double seconds;
    const gm_memo_opts *mo;
    const gm_memo_sample *sample;
    const gm_memo_result *r;
} report;

static void write_json(FILE *f, const void *arg) {
    const report *p = arg;
    const gm_memo_result *r = p->r;
    fputs("{\n  \"model\": ", f);
    gm_json_write_str(f, p->model);
    fputs(",\n  \"data\": [", f);
    for (int i = 0; i < p->n_data; i++) {
        if (i) fputs(", ", f);
        gm_json_write_str(f, p->data[i]);
    }
    fprintf(f, "],\n  \"docs_requested\": %ld,\n  \"docs_seen\": %llu,\n  \"docs_eligible\": %llu,"
               "\n  \"docs_too_short\": %llu,\n  \"n\": %ld,\n  \"seed\": %llu,\n  \"prefix\": %d,\n  \"suffix\": %d,"
               "\n  \"threshold\": ",
            p->docs, (unsigned long long)p->sample->seen, (unsigned long long)p->sample->eligible,
            (unsigned long long)(p->sample->seen - p->sample->eligible), r->n, p->seed, p->mo->prefix, p->mo->suffix);
    json_num(f, p->mo->threshold);
    fprintf(f, ",\n  \"max_distance\": %d", gm_memo_max_distance(p->mo->suffix, p->mo->threshold));
    json_rate(f, "exact", r->exact, r->n);
    json_rate(f, "approximate", r->approx, r->n);
    fprintf(f, ",\n  \"approximate_only\": %ld", r->approx - r->exact);
    if (p->pii) {
        fprintf(f, ",\n  \"pii\": {\"exact\": %ld, \"approximate\": %ld, \"sensitive\": %ld, \"by_type\": {",
                r->pii_exact, r->pii_approx, r->pii_sensitive);
        for (int t = 0; t < GM_PII_N_TYPES; t++)
            fprintf(f, "%s\"%s\": %ld", t ? ", " : "", gm_pii_type_name((gm_pii_type)t), r->pii_by_type[t]);
        fputs("}}", f);
    }
    fputs(",\n  \"interval\": \"Wilson score, 95%\"", f);
    fprintf(f, ",\n  \"early_stop\": %s,\n  \"tokens_generated\": %ld,\n  \"early_stops\": %ld",
            p->early_stop ? "true" : "false", r->tokens_generated, r->early_stops);
    fprintf(f, ",\n  \"context\": %ld,\n  \"threads\": %ld,\n  \"seconds\": ", p->ctx, p->threads);
    json_num(f, p->seconds);
    fputs(",\n  \"docs_per_second\": ", f);
    json_num(f, p->seconds > 0 ? (double)r->n / p->seconds : 0.0);
    fputs("\n}\n", f);
}

static void table_row(const char *name, long k, long n) {
    double lo, hi;
    gm_wilson_interval(k, n, GM_Z95, &lo, &hi);
    printf("| %-31s | %7ld | %7ld | %6.4f | [%6.4f, %6.4f] |\n", name, k, n, n ? (double)k / (double)n : 0.0, lo, hi);
}

static void write_table(const report *p) {
    const gm_memo_result *r = p->r;
    printf("| %-31s | %7s | %7s | %6s | %-16s |\n", "measure", "count", "n", "rate", "95% CI (Wilson)");
    printf("|---------------------------------|--------:|--------:|-------:|------------------|\n");
    table_row("exact", r->exact, r->n);
    char name[64];
    snprintf(name, sizeof name, "approximate (distance <= %d)", gm_memo_max_distance(p->mo->suffix, p->mo->threshold));
    table_row(name, r->approx, r->n);
    if (p->pii) {
        table_row("memorized with PII", r->pii_approx, r->approx);
        table_row("  exact with PII", r->pii_exact, r->exact);
        table_row("  with sensitive PII", r->pii_sensitive, r->approx);
        for (int t = 0; t < GM_PII_N_TYPES; t++)
            if (r->pii_by_type[t]) {
                snprintf(name, sizeof name, "  with %s", gm_pii_type_name((gm_pii_type)t));
                table_row(name, r->pii_by_type[t], r->approx);
            }
    }
}

/* ---- command ----------------------------------------------------------------------------------- */

int cmd_memorization(int argc, char **argv) {
    const char *model = NULL, *field = "text", *sep = NULL, *out_path = NULL, *samples_path = NULL, *fmt = "auto";
    const char **data = calloc((size_t)argc, sizeof *data);
    if (!data) {
        fprintf(stderr, "gemma %s: error: out of memory\n", C);
        return CLI_RUNTIME;
    }
    int n_data = 0, quiet = 0, use_mmap = 0, kv_bf16 = 0, json = 0, pii = 0, early_stop = 1, rc = CLI_USAGE;
    long docs = 10000, prefix = 50, suffix = 50, threads = cli_default_threads();
    unsigned long long seed = 1;
    double threshold = 0.10;
    gm_doc_split split = GM_SPLIT_BLANK;
    gm_pii_options pii_opt = {0, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_ARG() do { if (!v) { rc = cli_usage(C, "option %s needs a value", a); goto out; } i++; } while (0)
#define INT_ARG(var, lo, hi) do { NEED_ARG(); if (!cli_parse_int(v, lo, hi, &var)) { \
    rc = cli_usage(C, "bad value for %s: '%s'", a, v); goto out; } } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(HELP, stdout);
            rc = CLI_OK;
            goto out;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { NEED_ARG(); model = v; }
        else if (!strcmp(a, "--data")) { NEED_ARG(); data[n_data++] = v; }
        else if (!strcmp(a, "--docs")) INT_ARG(docs, 1, 100000000);
        else if (!strcmp(a, "--prefix")) INT_ARG(prefix, 1, 1 << 20);
        else if (!strcmp(a, "--suffix")) INT_ARG(suffix, 1, 1 << 20);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) INT_ARG(threads, 1, 256);
        else if (!strcmp(a, "--threshold")) {
            NEED_ARG();
            if (!cli_parse_float(v, &threshold) || !(threshold >= 0 && threshold <= 1)) {
                rc = cli_usage(C, "bad value for --threshold: '%s' (want 0 <= F <= 1)", v);
                goto out;
            }
        } else if (!strcmp(a, "--seed")) {
            NEED_ARG();
            char *end;
            seed = strtoull(v, &end, 10);
            if (!*v || *end || *v == '-') {
                rc = cli_usage(C, "bad value for --seed: '%s'", v);
                goto out;
            }
        } else if (!strcmp(a, "--format")) {
            NEED_ARG();
            if (strcmp(v, "auto") && strcmp(v, "text") && strcmp(v, "jsonl") && strcmp(v, "shards")) {
                rc = cli_usage(C, "--format must be auto, text, jsonl or shards");
                goto out;
            }
            fmt = v;
        } else if (!strcmp(a, "--split")) {
            NEED_ARG();
            if (!strcmp(v, "blank")) split = GM_SPLIT_BLANK;
            else if (!strcmp(v, "file")) split = GM_SPLIT_FILE;
            else if (!strcmp(v, "line")) split = GM_SPLIT_LINE;
            else {
                rc = cli_usage(C, "--split must be blank, file or line (or --sep STR)");
                goto out;
            }
        } else if (!strcmp(a, "--sep")) {
            NEED_ARG();
            if (!*v) {
                rc = cli_usage(C, "--sep needs a non-empty string");
                goto out;
            }
            sep = v, split = GM_SPLIT_SEP;
        } else if (!strcmp(a, "--field")) { NEED_ARG(); field = v; }
        else if (!strcmp(a, "--out")) { NEED_ARG(); out_path = v; }
        else if (!strcmp(a, "--samples")) { NEED_ARG(); samples_path = v; }
        else if (!strcmp(a, "--pii-types")) {
            NEED_ARG();
            char buf[256];
            if (strlen(v) >= sizeof buf) { rc = cli_usage(C, "--pii-types: list too long"); goto out; }
            strcpy(buf, v);
            for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
                int ty = gm_pii_type_from_name(t);
                if (ty < 0) { rc = cli_usage(C, "--pii-types: unknown type '%s'", t); goto out; }
                pii_opt.types |= 1u << ty;
            }
            pii = 1;
        } else if (!strcmp(a, "--cache-type")) {
            NEED_ARG();
            if (strcmp(v, "f32") && strcmp(v, "bf16")) {
                rc = cli_usage(C, "--cache-type must be f32 or bf16");
                goto out;
            }
            kv_bf16 = !strcmp(v, "bf16");
        } else if (!strcmp(a, "--pii")) pii = 1;
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--no-early-stop")) early_stop = 0;
        else if (!strcmp(a, "--mmap")) use_mmap = 1;
        else if (!strcmp(a, "--no-mmap")) use_mmap = 0;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) quiet = 1;
        else { rc = cli_usage(C, "unknown option '%s'", a); goto out; }
#undef INT_ARG
#undef NEED_ARG
    }
    if (!model) { rc = cli_usage(C, "-m MODEL_DIR is required"); goto out; }
    if (!n_data) { rc = cli_usage(C, "--data PATH is required"); goto out; }
    rc = CLI_RUNTIME;

    gm_tokenizer *tok = NULL;
    gm_model *m = NULL;
    gm_session *s = NULL;
    gm_memo_sample *sample = NULL;
    FILE *samples = NULL;
    reader_ctx rctx = {0};
    gm_memo_result res;
    memset(&res, 0, sizeof res);

    /* The tokenizer and the documents first: bad data fails before the weights load. */
    if (cli_load_tokenizer_opt(model, &tok)) goto fail;
    if (pii && !tok) {
        fprintf(stderr, "gemma %s: error: %s has no tokenizer.model or tokenizer.json (--pii decodes the text)\n", C,
                model);
        goto done;
    }
    if (gm_memo_sample_new((int)docs, (int)(prefix + suffix), seed, &sample)) goto fail;
    rctx.tok = tok, rctx.sample = sample, rctx.field = field;
    rctx.bos = tok ? gm_tokenizer_bos(tok) : 2, rctx.eos = tok ? gm_tokenizer_eos(tok) : 1; /* Gemma's ids */
    double t_read = cli_now();
    rctx.quiet = quiet, rctx.t0 = rctx.last = t_read;
    for (int i = 0; i < n_data; i++) {
        int auto_fmt = !strcmp(fmt, "auto");
        if (!strcmp(fmt, "shards") || (auto_fmt && is_shard_dir(data[i]))) {
            if (read_shards(&rctx, data[i])) goto fail;
            continue;
        }
        int jsonl = !strcmp(fmt, "jsonl") ||
                    (auto_fmt && (ends_with(data[i], ".jsonl") || ends_with(data[i], ".json")));
        if (read_file(&rctx, data[i], jsonl, split, sep)) goto fail;
    }
    if (gm_memo_sample_finish(sample)) goto fail;
    if (!quiet)
        fprintf(stderr, "read %llu documents in %.2f s: %llu with at least %ld tokens, %d sampled (seed %llu)\n",
                (unsigned long long)sample->seen, cli_now() - t_read, (unsigned long long)sample->eligible,
                prefix + suffix, sample->n, seed);
    if (sample->n == 0) {
        fprintf(stderr, "gemma %s: error: no document has the %ld tokens needed (prefix %ld + suffix %ld)\n", C,
                prefix + suffix, prefix, suffix);
        goto done;
    }
    if (samples_path && !(samples = fopen(samples_path, "w"))) {
        fprintf(stderr, "gemma %s: error: cannot write %s\n", C, samples_path);
        goto done;
    }

    if (cli_load_model(model, use_mmap, quiet, &m)) goto fail;
    const gm_config *cfg = gm_model_config(m);
    for (int i = 0; i < sample->n; i++)
        for (int k = 0; k < sample->len; k++) {
            int32_t id = sample->toks[(size_t)i * (size_t)sample->len + (size_t)k];
            if (id >= cfg->vocab_size) {
                fprintf(stderr, "gemma %s: error: document %llu: token id %d is past the model's vocabulary of %d\n",
                        C, (unsigned long long)sample->index[i], (int)id, cfg->vocab_size);
                goto done;
            }
        }
    long n_ctx = prefix + suffix + 1;
    if (n_ctx > cfg->max_pos) {
        fprintf(stderr, "gemma %s: error: prefix %ld + suffix %ld + <bos> exceed the model's context of %d\n", C,
                prefix, suffix, cfg->max_pos);
        goto done;
    }
    gm_session_params sp = gm_session_params_default((int)n_ctx, (int)threads);
    sp.kv_bf16 = kv_bf16;
    if (gm_session_new_ex(m, &sp, &s)) goto fail;

    gm_memo_run_opts ro;
    memset(&ro, 0, sizeof ro);
    ro.doc = gm_memo_opts_default(cfg->vocab_size, tok ? gm_tokenizer_bos(tok) : cfg->bos_id);
    ro.doc.prefix = (int)prefix, ro.doc.suffix = (int)suffix, ro.doc.threshold = threshold;
    ro.doc.early_stop = early_stop;
    ro.session = s, ro.tok = tok, ro.pii = pii, ro.pii_opt = pii_opt, ro.samples = samples;
    cli_progress pb = cli_progress_start("documents", quiet);
    ro.progress = cli_progress_update, ro.progress_user = &pb;
    if (!quiet)
        fprintf(stderr, "memorization: %d documents, prefix %ld, suffix %ld, approximate at edit distance <= %d\n",
                sample->n, prefix, suffix, gm_memo_max_distance((int)suffix, threshold));
    double t0 = cli_now();
    if (gm_memo_run(sample, &ro, &res)) {
        if (!quiet && pb.tty) fputc('\n', stderr);
        goto fail;
    }
    double dt = cli_now() - t0;
    if (samples) {
        int bad = fclose(samples) != 0;
        samples = NULL;
        if (bad) {
            fprintf(stderr, "gemma %s: error: cannot write %s\n", C, samples_path);
            goto done;
        }
    }
    if (!quiet)
        fprintf(stderr, "%ld documents in %.2f s: %.2f docs/s, %ld tokens decoded (%ld documents stopped early)\n",
                res.n, dt, dt > 0 ? (double)res.n / dt : 0.0, res.tokens_generated, res.early_stops);

    report rep = {model, data, n_data, docs, threads, n_ctx, seed, pii, early_stop, dt, &ro.doc, sample, &res};
    if (json) write_json(stdout, &rep);
    else write_table(&rep);
    fflush(stdout);
    if (out_path && !cli_write_report(C, out_path, write_json, &rep)) goto done;
    rc = CLI_OK;
    goto done;
fail:
    rc = cli_fail(C);
done:
    if (samples) fclose(samples);
    free(rctx.ids);
    gm_memo_sample_free(sample);
    gm_session_free(s);
    gm_model_free(m);
    gm_tokenizer_free(tok);
out:
    free(data);
    return rc;
}
