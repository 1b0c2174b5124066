/* The streaming driver behind every `gemma data` subcommand: read documents in batches (bounded bytes),
 * run the stage's map step on all of a batch's documents in parallel on the thread pool, then its reduce
 * step on each in input order (where order-dependent state such as a dedup index lives), then write the
 * kept documents (and optionally the rejected ones) in input order. Output therefore never depends on
 * the thread count. Memory: one batch, one read buffer, per-thread scratch, plus whatever index the
 * stage keeps. Statistics count documents and text bytes per reason. */
#ifndef GM_DATA_PIPELINE_H
#define GM_DATA_PIPELINE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "data/docio.h"
#include "gemma.h"

typedef enum { GM_FORMAT_AUTO, GM_FORMAT_TEXT, GM_FORMAT_JSONL } gm_doc_format;

typedef struct gm_data_doc {
    uint64_t index;         /* position among the input documents (empty ones are skipped), from 0 */
    const char *path;       /* input file */
    uint64_t line;          /* 1-based line where the record starts */
    const char *raw;        /* the record as read (a JSONL line, or the text document trimmed) */
    size_t raw_len;
    const char *text;       /* the document text */
    size_t len;
    int jsonl;              /* came from a JSONL record */
    int oversize;           /* longer than max_doc_bytes (then dropped by the pipeline) */
    double score;           /* the score field (opts.score_field), NaN when absent */
    int reason;             /* -1, or the stage reason it was flagged with */
    int drop;               /* 1: not written to the output */
    char *new_text;         /* replacement text set by the stage (malloc'd; the pipeline frees it) */
    size_t new_len;
    void *slot;             /* stage's per-document memory (stage->slot_bytes), from map to reduce */
    gm_status status;       /* a map failure, reported in order */
    char *error;
    char *text_buf;         /* internal: the decoded JSONL text */
} gm_data_doc;

typedef struct gm_data_stage {
    const char *name;
    int n_reasons;
    const char *const *reasons;
    size_t slot_bytes;
    void *ctx;
    /* Per-thread scratch (optional). */
    void *(*worker_new)(void *ctx);
    void (*worker_free)(void *ctx, void *scratch);
    /* Parallel, any order, any thread: decide what can be decided from the document alone. */
    gm_status (*map)(void *ctx, void *scratch, gm_data_doc *d);
    /* Serial, input order (optional): decisions that depend on earlier documents. */
    gm_status (*reduce)(void *ctx, gm_data_doc *d);
    /* Extra JSON members (",\"key\":value...") for a flagged document's record in the rejected file. */
    void (*annotate)(void *ctx, const gm_data_doc *d, gm_buf *out);
} gm_data_stage;

typedef struct gm_data_opts {
    const char *const *inputs;
    int n_inputs;
    gm_doc_format format;   /* AUTO: .jsonl / .json files are JSONL, everything else text */
    gm_doc_split split;     /* for text input (GM_SPLIT_FILE by default) */
    const char *sep;        /* separator for GM_SPLIT_SEP */
    const char *field;      /* JSONL text field ("text") */
    const char *score_field;/* JSONL numeric field read into doc.score (optional) */
    size_t max_doc_bytes;
    const char *out;        /* NULL or "-" = stdout */
    gm_doc_format out_format; /* AUTO = JSONL */
    const char *out_sep;    /* text output: written after each document (NULL: "\n\n") */
    const char *rejected;   /* optional JSONL file of dropped documents, with "gm_reason" */
    int threads;
    size_t batch_bytes;
} gm_data_opts;

void gm_data_opts_default(gm_data_opts *o);

typedef struct gm_data_stats {
    uint64_t input_bytes;          /* bytes read from the input files */
    uint64_t docs_in, text_in;     /* documents and their text bytes */
    uint64_t docs_out, text_out;   /* written to the output */
    uint64_t docs_dropped, text_dropped;
    int n_reasons;                 /* stage reasons + 1 ("oversize") */
    const char *reason_name[64];
    uint64_t reason_docs[64], reason_text[64]; /* flagged (dropped or, in report mode, kept) */
    double seconds;                /* wall time of the run */
    double cpu_seconds;            /* process CPU time (all threads) during the run */
} gm_data_stats;

gm_status gm_data_run(const gm_data_opts *o, const gm_data_stage *st, gm_data_stats *stats);

/* Human-readable summary (stderr) and a JSON object (for --stats FILE). `extra` is appended inside the
 * JSON object verbatim (",\"key\":value..." or NULL). */
void gm_data_stats_print(FILE *f, const char *cmd, const gm_data_stats *s);
gm_status gm_data_stats_write(const char *path, const char *cmd, const gm_data_stats *s, const char *extra);

#endif
