/* Batched streaming driver for `gemma data` (see pipeline.h): reader -> parallel map -> ordered reduce
 * -> ordered writer, with per-reason statistics. */
#include "data/pipeline.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "base/error.h"
#include "base/json.h"
#include "base/threads.h"

#define BATCH_DOCS 4096

void gm_data_opts_default(gm_data_opts *o) {
    memset(o, 0, sizeof *o);
    o->format = GM_FORMAT_AUTO;
    o->split = GM_SPLIT_FILE;
    o->field = "text";
    o->max_doc_bytes = (size_t)16 << 20;
    o->out_format = GM_FORMAT_AUTO;
    o->threads = 1;
    o->batch_bytes = (size_t)8 << 20;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_s(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru)) return 0;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec + 1e-6 * (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static int has_suffix(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* ---- the parallel step ------------------------------------------------------------------------------ */

typedef struct {
    const gm_data_opts *o;
    const gm_data_stage *st;
    gm_data_doc *docs;
    size_t n;
    atomic_size_t next;
    void **scratch;
} map_job;

/* Decode a JSONL record: the text field (copied: the parse tree is freed at once, since the JSON reader's
 * arena is sized for big documents) and the optional score field. */
static gm_status decode_jsonl(const gm_data_opts *o, gm_data_doc *d) {
    char what[64];
    snprintf(what, sizeof what, "line %llu", (unsigned long long)d->line);
    gm_json_doc *doc;
    gm_status st = gm_json_parse(d->raw, d->raw_len, what, &doc);
    if (st) return gm_fail_prefix(st, "%s: ", d->path);
    const gm_json *root = gm_json_root(doc), *t = gm_json_get(root, o->field);
    if (root->type != GM_JSON_OBJECT || !t || t->type != GM_JSON_STRING) {
        gm_json_free(doc);
        return gm_fail(GM_ERR_FORMAT, "%s: line %llu: not a JSON object with a string \"%s\" field", d->path,
                       (unsigned long long)d->line, o->field);
    }
    d->text_buf = malloc(t->len + 1);
    if (!d->text_buf) {
        gm_json_free(doc);
        return gm_fail(GM_ERR_NOMEM, "%s: line %llu: out of memory", d->path, (unsigned long long)d->line);
    }
    memcpy(d->text_buf, t->str, t->len);
    d->text_buf[t->len] = 0;
    d->text = d->text_buf;
    d->len = t->len;
    if (o->score_field) {
        const gm_json *s = gm_json_get(root, o->score_field);
        if (s && s->type == GM_JSON_NUMBER) d->score = s->num;
    }
    gm_json_free(doc);
    return GM_OK;
}

static void map_task(void *ctx, int worker, int n_workers) {
    (void)n_workers;
    map_job *j = ctx;
    for (;;) {
        size_t i = atomic_fetch_add(&j->next, 1);
        if (i >= j->n) break;
        gm_data_doc *d = &j->docs[i];
        if (d->oversize) continue;
        gm_status st = GM_OK;
        if (d->jsonl) st = decode_jsonl(j->o, d);
        if (!st && j->st->map) st = j->st->map(j->st->ctx, j->scratch ? j->scratch[worker] : NULL, d);
        if (st) {
            d->status = st;
            d->error = strdup(gm_last_error());
        }
    }
}

/* ---- output ----------------------------------------------------------------------------------------- */

/* One record of a document: JSONL (with extra members for the rejected file) or text. */
static gm_status write_record(const gm_data_opts *o, const gm_data_doc *d, int as_text, const char *extra,
                              size_t extra_len, gm_buf *b) {
    const char *text = d->new_text ? d->new_text : d->text;
    size_t len = d->new_text ? d->new_len : d->len;
    if (as_text) {
        gm_buf_add(b, text, len);
        gm_buf_str(b, o->out_sep ? o->out_sep : "\n\n");
        return GM_OK;
    }
    if (d->jsonl && !d->new_text && !d->oversize) {
        size_t n = d->raw_len;
        while (n && is_ws(d->raw[n - 1])) n--;
        if (!extra_len) {
            gm_buf_add(b, d->raw, n);
        } else {
            /* The record is an object (decode_jsonl checked): splice the members in before its '}'. */
            gm_buf_add(b, d->raw, n - 1);
            gm_buf_add(b, extra, extra_len);
            gm_buf_add(b, "}", 1);
        }
    } else if (d->jsonl && !d->oversize) {
        gm_json_doc *doc;
        gm_status st = gm_json_parse(d->raw, d->raw_len, d->path, &doc);
        if (st) return st;
        size_t mark = b->n;
        gm_json_write_value(b, gm_json_root(doc), o->field, text, len);
        gm_json_free(doc);
        if (extra_len && b->n > mark) {
            b->n--; /* drop the '}' */
            gm_buf_add(b, extra, extra_len);
            gm_buf_add(b, "}", 1);
        }
    } else {
        gm_buf_add(b, "{", 1);
        gm_json_write_string(b, o->field, strlen(o->field));
        gm_buf_add(b, ":", 1);
        gm_json_write_string(b, text, len);
        gm_buf_add(b, extra, extra_len);
        gm_buf_add(b, "}", 1);
    }
    gm_buf_add(b, "\n", 1);
    return GM_OK;
}

static gm_status flush_buf(gm_buf *b, FILE *f, const char *name) {
    if (b->oom) return gm_fail(GM_ERR_NOMEM, "%s: out of memory building the output", name);
    if (b->n && fwrite(b->p, 1, b->n, f) != b->n) return gm_fail(GM_ERR_IO, "%s: write error: %s", name, strerror(errno));
    b->n = 0;
    return GM_OK;
}

/* ---- the driver ------------------------------------------------------------------------------------- */

typedef struct {
    const gm_data_opts *o;
    const gm_data_stage *st;
    gm_data_stats *stats;
    gm_pool *pool;
    void **scratch;
    gm_data_doc *docs;
    size_t n;
    char *arena;
    size_t arena_used, arena_cap;
    unsigned char *slots;
    FILE *out, *rej;
    const char *out_name;
    gm_buf ob, rb, extra;
    int oversize_reason;
} run_state;

static void free_docs(run_state *rs) {
    for (size_t i = 0; i < rs->n; i++) {
        free(rs->docs[i].new_text);
        free(rs->docs[i].error);
        free(rs->docs[i].text_buf);
    }
    rs->n = 0;
    rs->arena_used = 0;
}

static gm_status process_batch(run_state *rs) {
    if (rs->n == 0) return GM_OK;
    const gm_data_stage *st = rs->st;
    map_job job = {rs->o, st, rs->docs, rs->n, 0, rs->scratch};
    gm_pool_run(rs->pool, map_task, &job);
    gm_data_stats *s = rs->stats;
    int as_text = rs->o->out_format == GM_FORMAT_TEXT;
    gm_status status = GM_OK;
    for (size_t i = 0; i < rs->n && !status; i++) {
        gm_data_doc *d = &rs->docs[i];
        if (d->status) {
            status = gm_fail(d->status, "%s", d->error ? d->error : "out of memory");
            break;
        }
        if (d->oversize) {
            d->reason = rs->oversize_reason;
            d->drop = 1;
        } else if (st->reduce) {
            status = st->reduce(st->ctx, d);
            if (status) break;
        }
        s->docs_in++;
        s->text_in += d->len;
        if (d->reason >= 0 && d->reason < s->n_reasons) {
            s->reason_docs[d->reason]++;
            s->reason_text[d->reason] += d->len;
        }
        if (d->drop) {
            s->docs_dropped++;
            s->text_dropped += d->len;
            if (rs->rej) {
                rs->extra.n = 0;
                gm_buf_str(&rs->extra, ",\"gm_reason\":");
                const char *rn = d->reason >= 0 && d->reason < s->n_reasons ? s->reason_name[d->reason] : "dropped";
                gm_json_write_string(&rs->extra, rn, strlen(rn));
                if (st->annotate && !d->oversize) st->annotate(st->ctx, d, &rs->extra);
                status = write_record(rs->o, d, 0, rs->extra.p, rs->extra.n, &rs->rb);
            }
        } else {
            s->docs_out++;
            s->text_out += d->new_text ? d->new_len : d->len;
            status = write_record(rs->o, d, as_text, NULL, 0, &rs->ob);
        }
    }
    if (!status) status = flush_buf(&rs->ob, rs->out, rs->out_name);
    if (!status && rs->rej) status = flush_buf(&rs->rb, rs->rej, rs->o->rejected);
    free_docs(rs);
    return status;
}

/* Add one record to the batch (processing the batch first when it is full). */
static gm_status add_record(run_state *rs, const char *path, const char *rec, size_t len, uint64_t line, int oversize,
                            int jsonl, uint64_t index) {
    if (rs->n == BATCH_DOCS || (rs->n > 0 && rs->arena_used + len + 1 > rs->arena_cap)) {
        gm_status st = process_batch(rs);
        if (st) return st;
    }
    if (len + 1 > rs->arena_cap) { /* only ever with an empty batch */
        char *a = realloc(rs->arena, len + 1);
        if (!a) return gm_fail(GM_ERR_NOMEM, "%s: out of memory for a %zu-byte document", path, len);
        rs->arena = a;
        rs->arena_cap = len + 1;
    }
    char *dst = rs->arena + rs->arena_used;
    memcpy(dst, rec, len);
    dst[len] = 0;
    rs->arena_used += len + 1;
    gm_data_doc *d = &rs->docs[rs->n];
    memset(d, 0, sizeof *d);
    d->index = index;
    d->path = path;
    d->line = line;
    d->raw = dst;
    d->raw_len = len;
    d->text = dst;
    d->len = jsonl && !oversize ? 0 : len; /* a JSONL record's text is decoded in the map step */
    d->jsonl = jsonl;
    d->oversize = oversize;
    d->score = NAN;
    d->reason = -1;
    if (rs->st->slot_bytes) d->slot = rs->slots + rs->n * rs->st->slot_bytes;
    rs->n++;
    return GM_OK;
}

gm_status gm_data_run(const gm_data_opts *o, const gm_data_stage *st, gm_data_stats *stats) {
    memset(stats, 0, sizeof *stats);
    if (st->n_reasons + 1 > 64) return gm_fail(GM_ERR_ARG, "too many reasons");
    for (int r = 0; r < st->n_reasons; r++) stats->reason_name[r] = st->reasons[r];
    stats->reason_name[st->n_reasons] = "oversize";
    stats->n_reasons = st->n_reasons + 1;
    double t0 = now_s(), c0 = cpu_s();

    run_state rs;
    memset(&rs, 0, sizeof rs);
    rs.o = o;
    rs.st = st;
    rs.stats = stats;
    rs.oversize_reason = st->n_reasons;
    gm_status status = GM_OK;
    int nt = o->threads < 1 ? 1 : o->threads;
    rs.pool = gm_pool_new(nt);
    rs.docs = calloc(BATCH_DOCS, sizeof *rs.docs);
    rs.arena_cap = o->batch_bytes ? o->batch_bytes : ((size_t)8 << 20);
    rs.arena = malloc(rs.arena_cap);
    rs.scratch = calloc((size_t)nt, sizeof *rs.scratch);
    if (st->slot_bytes) rs.slots = calloc(BATCH_DOCS, st->slot_bytes);
    if (!rs.pool) status = GM_ERR_NOMEM; /* message set by gm_pool_new */
    else if (!rs.docs || !rs.arena || !rs.scratch || (st->slot_bytes && !rs.slots))
        status = gm_fail(GM_ERR_NOMEM, "out of memory for the document batch");
    for (int w = 0; w < nt && !status && st->worker_new; w++)
        if (!(rs.scratch[w] = st->worker_new(st->ctx))) status = gm_fail(GM_ERR_NOMEM, "out of memory for thread scratch");

    rs.out_name = o->out && strcmp(o->out, "-") ? o->out : "stdout";
    if (!status) {
        if (o->out && strcmp(o->out, "-")) {
            rs.out = fopen(o->out, "wb");
            if (!rs.out) status = gm_fail(GM_ERR_IO, "%s: cannot create: %s", o->out, strerror(errno));
        } else {
            rs.out = stdout;
        }
    }
    if (!status && o->rejected) {
        rs.rej = fopen(o->rejected, "wb");
        if (!rs.rej) status = gm_fail(GM_ERR_IO, "%s: cannot create: %s", o->rejected, strerror(errno));
    }

    uint64_t index = 0;
    for (int f = 0; f < o->n_inputs && !status; f++) {
        const char *path = o->inputs[f];
        int jsonl = o->format == GM_FORMAT_JSONL ||
                    (o->format == GM_FORMAT_AUTO && (has_suffix(path, ".jsonl") || has_suffix(path, ".json")));
        gm_doc_reader *r;
        status = gm_doc_reader_open(path, jsonl ? GM_SPLIT_LINE : o->split, o->sep, o->max_doc_bytes, &r);
        if (status) break;
        for (;;) {
            const char *rec;
            size_t len;
            uint64_t line;
            int oversize;
            status = gm_doc_reader_next(r, &rec, &len, &line, &oversize);
            if (status || !rec) break;
            /* Text documents are trimmed; blank records (and blank JSONL lines) are not documents. */
            size_t a = 0, b = len;
            while (a < b && is_ws(rec[a])) {
                if (rec[a] == '\n') line++;
                a++;
            }
            while (b > a && is_ws(rec[b - 1]) && !oversize) b--;
            if (a == b) continue;
            if (!jsonl) {
                rec += a;
                len = b - a;
            }
            status = add_record(&rs, path, rec, len, line, oversize, jsonl, index++);
            if (status) break;
        }
        stats->input_bytes += gm_doc_reader_bytes(r);
        gm_doc_reader_close(r);
    }
    if (!status) status = process_batch(&rs);
    free_docs(&rs);

    if (rs.out && rs.out != stdout) {
        if (fclose(rs.out) && !status) status = gm_fail(GM_ERR_IO, "%s: write error: %s", o->out, strerror(errno));
    } else if (rs.out && fflush(rs.out) && !status) {
        status = gm_fail(GM_ERR_IO, "stdout: write error: %s", strerror(errno));
    }
    if (rs.rej && fclose(rs.rej) && !status) status = gm_fail(GM_ERR_IO, "%s: write error: %s", o->rejected, strerror(errno));
    for (int w = 0; w < nt && rs.scratch; w++)
        if (rs.scratch[w] && st->worker_free) st->worker_free(st->ctx, rs.scratch[w]);
    free(rs.scratch);
    free(rs.slots);
    free(rs.arena);
    free(rs.docs);
    gm_buf_free(&rs.ob);
    gm_buf_free(&rs.rb);
    gm_buf_free(&rs.extra);
    gm_pool_free(rs.pool);
    stats->seconds = now_s() - t0;
    stats->cpu_seconds = cpu_s() - c0;
    return status;
}

/* ---- statistics -------------------------------------------------------------------------------------- */

static double mb(uint64_t b) { return (double)b / 1e6; }

void gm_data_stats_print(FILE *f, const char *cmd, const gm_data_stats *s) {
    double secs = s->seconds > 0 ? s->seconds : 1e-9;
    fprintf(f, "gemma data %s: %llu documents (%.2f MB of text, %.2f MB read) in %.2f s = %.1f MB/s (%.2f s CPU)\n",
            cmd, (unsigned long long)s->docs_in, mb(s->text_in), mb(s->input_bytes), s->seconds,
            mb(s->input_bytes) / secs, s->cpu_seconds);
    fprintf(f, "  kept %llu (%.2f MB), dropped %llu (%.2f MB)\n", (unsigned long long)s->docs_out, mb(s->text_out),
            (unsigned long long)s->docs_dropped, mb(s->text_dropped));
    int any = 0;
    for (int r = 0; r < s->n_reasons; r++) {
        if (!s->reason_docs[r]) continue;
        if (!any) fprintf(f, "  %-28s %10s %14s\n", "reason", "docs", "text bytes");
        any = 1;
        fprintf(f, "  %-28s %10llu %14llu\n", s->reason_name[r], (unsigned long long)s->reason_docs[r],
                (unsigned long long)s->reason_text[r]);
    }
}

gm_status gm_data_stats_write(const char *path, const char *cmd, const gm_data_stats *s, const char *extra) {
    gm_buf b = {0};
    double secs = s->seconds > 0 ? s->seconds : 1e-9;
    gm_buf_printf(&b, "{\"command\":\"%s\",\"seconds\":%.6f,\"cpu_seconds\":%.6f,\"mb_per_s\":%.3f,\"mb_per_cpu_s\":%.3f,", cmd,
                  s->seconds, s->cpu_seconds, mb(s->input_bytes) / secs,
                  mb(s->input_bytes) / (s->cpu_seconds > 0 ? s->cpu_seconds : 1e-9));
    gm_buf_printf(&b, "\"input\":{\"docs\":%llu,\"bytes\":%llu,\"text_bytes\":%llu},", (unsigned long long)s->docs_in,
                  (unsigned long long)s->input_bytes, (unsigned long long)s->text_in);
    gm_buf_printf(&b, "\"kept\":{\"docs\":%llu,\"text_bytes\":%llu},", (unsigned long long)s->docs_out,
                  (unsigned long long)s->text_out);
    gm_buf_printf(&b, "\"dropped\":{\"docs\":%llu,\"text_bytes\":%llu},\"reasons\":{", (unsigned long long)s->docs_dropped,
                  (unsigned long long)s->text_dropped);
    for (int r = 0; r < s->n_reasons; r++) {
        if (r) gm_buf_str(&b, ",");
        gm_json_write_string(&b, s->reason_name[r], strlen(s->reason_name[r]));
        gm_buf_printf(&b, ":{\"docs\":%llu,\"text_bytes\":%llu}", (unsigned long long)s->reason_docs[r],
                      (unsigned long long)s->reason_text[r]);
    }
    gm_buf_str(&b, "}");
    if (extra) gm_buf_str(&b, extra);
    gm_buf_str(&b, "}\n");
    gm_status st = GM_OK;
    if (b.oom) {
        st = gm_fail(GM_ERR_NOMEM, "%s: out of memory", path);
    } else {
        FILE *f = fopen(path, "wb");
        if (!f) st = gm_fail(GM_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        else {
            size_t w = fwrite(b.p, 1, b.n, f);
            if (fclose(f) || w != b.n) st = gm_fail(GM_ERR_IO, "%s: write error", path);
        }
    }
    gm_buf_free(&b);
    return st;
}
