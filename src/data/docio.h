/* Streaming document input and output for the data pipeline. The reader splits a file (or stdin) into
 * records with bounded memory: the whole file, blank-line separated documents, documents separated by a
 * literal string (e.g. "<|endoftext|>"), or lines (JSONL). A record longer than max_doc_bytes is returned
 * cut at that length and flagged, and the rest of it is skipped, so memory never depends on the input.
 * The JSON helpers write escaped strings and whole values for JSONL output. */
#ifndef GM_DATA_DOCIO_H
#define GM_DATA_DOCIO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/json.h"
#include "gemma.h"

/* A growable byte buffer. */
typedef struct gm_buf {
    char *p;
    size_t n, cap;
    int oom; /* an append failed: the contents are incomplete */
} gm_buf;

void gm_buf_add(gm_buf *b, const char *s, size_t n);
void gm_buf_str(gm_buf *b, const char *s);
void gm_buf_printf(gm_buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void gm_buf_free(gm_buf *b);

/* Append s[0..n) as a JSON string literal (quotes included). Invalid UTF-8 bytes become \ufffd. */
void gm_json_write_string(gm_buf *b, const char *s, size_t n);
/* Append a parsed JSON value; with replace_key non-NULL, that member of the top-level object is written
 * with the string value (rs, rn) instead of its own. Numbers that are not integers are written with %.17g. */
void gm_json_write_value(gm_buf *b, const gm_json *v, const char *replace_key, const char *rs, size_t rn);

typedef enum {
    GM_SPLIT_FILE,  /* the whole input is one record */
    GM_SPLIT_BLANK, /* records separated by one or more blank (whitespace-only) lines */
    GM_SPLIT_SEP,   /* records separated by a literal string */
    GM_SPLIT_LINE,  /* one record per line (JSONL) */
} gm_doc_split;

typedef struct gm_doc_reader gm_doc_reader;

/* Open path ("-" = standard input). sep is used with GM_SPLIT_SEP (non-empty). */
gm_status gm_doc_reader_open(const char *path, gm_doc_split split, const char *sep, size_t max_doc_bytes,
                             gm_doc_reader **out);
void gm_doc_reader_close(gm_doc_reader *r);

/* Next record: rec and len point into the reader's buffer, valid until the next call. *line is the
 * 1-based line number where the record starts, *oversize is 1 when the record was longer than
 * max_doc_bytes (only its first max_doc_bytes are returned). Returns GM_OK with rec set to NULL at the end. */
gm_status gm_doc_reader_next(gm_doc_reader *r, const char **rec, size_t *len, uint64_t *line, int *oversize);
/* Bytes read from the file so far. */
uint64_t gm_doc_reader_bytes(const gm_doc_reader *r);

#endif
