/* Bounded-memory record reader (whole file, blank lines, a separator string, or lines) and the JSON
 * writing helpers used for JSONL output. */
#include "data/docio.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/utf8.h"

/* ---- buffers and JSON ------------------------------------------------------------------------------ */

static int buf_reserve(gm_buf *b, size_t more) {
    if (b->oom) return 0;
    if (b->n + more + 1 <= b->cap) return 1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + more + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return 0;
    }
    b->p = p;
    b->cap = cap;
    return 1;
}

void gm_buf_add(gm_buf *b, const char *s, size_t n) {
    if (!buf_reserve(b, n)) return;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void gm_buf_str(gm_buf *b, const char *s) { gm_buf_add(b, s, strlen(s)); }

void gm_buf_printf(gm_buf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if ((size_t)k < sizeof tmp) {
        gm_buf_add(b, tmp, (size_t)k);
        return;
    }
    if (!buf_reserve(b, (size_t)k)) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

void gm_buf_free(gm_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

void gm_json_write_string(gm_buf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    if (!buf_reserve(b, n + 2)) return;
    gm_buf_add(b, "\"", 1);
    size_t run = 0, i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            i++;
            continue;
        }
        size_t k = 1;
        if (c >= 0x80) {
            k = gm_utf8_decode(s + i, n - i, NULL);
            if (k) {
                i += k;
                continue;
            }
        }
        gm_buf_add(b, s + run, i - run);
        switch (c) {
        case '"': gm_buf_add(b, "\\\"", 2); break;
        case '\\': gm_buf_add(b, "\\\\", 2); break;
        case '\n': gm_buf_add(b, "\\n", 2); break;
        case '\r': gm_buf_add(b, "\\r", 2); break;
        case '\t': gm_buf_add(b, "\\t", 2); break;
        case '\b': gm_buf_add(b, "\\b", 2); break;
        case '\f': gm_buf_add(b, "\\f", 2); break;
        default:
            if (c >= 0x80) {
                gm_buf_add(b, "\\ufffd", 6);
            } else {
                char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                gm_buf_add(b, e, 6);
            }
        }
        i += 1;
        run = i;
    }
    gm_buf_add(b, s + run, i - run);
    gm_buf_add(b, "\"", 1);
}

void gm_json_write_value(gm_buf *b, const gm_json *v, const char *replace_key, const char *rs, size_t rn) {
    switch (v->type) {
    case GM_JSON_NULL: gm_buf_str(b, "null"); break;
    case GM_JSON_BOOL: gm_buf_str(b, v->boolean ? "true" : "false"); break;
    case GM_JSON_NUMBER:
        if (v->is_int) {
            gm_buf_printf(b, "%lld", (long long)v->i);
        } else {
            /* The shortest of %.15g..%.17g that reads back as the same double (0.9, not 0.90000000000000002). */
            char tmp[40];
            for (int prec = 15; prec <= 17; prec++) {
                snprintf(tmp, sizeof tmp, "%.*g", prec, v->num);
                if (strtod(tmp, NULL) == v->num) break;
            }
            gm_buf_str(b, tmp);
        }
        break;
    case GM_JSON_STRING: gm_json_write_string(b, v->str, v->len); break;
    case GM_JSON_ARRAY:
        gm_buf_add(b, "[", 1);
        for (size_t i = 0; i < v->len; i++) {
            if (i) gm_buf_add(b, ",", 1);
            gm_json_write_value(b, &v->items[i], NULL, NULL, 0);
        }
        gm_buf_add(b, "]", 1);
        break;
    case GM_JSON_OBJECT:
        gm_buf_add(b, "{", 1);
        for (size_t i = 0; i < v->len; i++) {
            const gm_json_member *m = &v->members[i];
            if (i) gm_buf_add(b, ",", 1);
            gm_json_write_string(b, m->key, m->key_len);
            gm_buf_add(b, ":", 1);
            if (replace_key && strlen(replace_key) == m->key_len && memcmp(replace_key, m->key, m->key_len) == 0)
                gm_json_write_string(b, rs, rn);
            else
                gm_json_write_value(b, &m->value, NULL, NULL, 0);
        }
        gm_buf_add(b, "}", 1);
        break;
    }
}

/* ---- the reader ---------------------------------------------------------------------------------------- */

#define CHUNK ((size_t)1 << 20)

struct gm_doc_reader {
    FILE *f;
    int own;
    char *path;
    gm_doc_split split;
    char *sep;
    size_t seplen, max;
    char *buf;
    size_t cap, start, end, scan; /* unread data is buf[start..end); no boundary starts in [start, scan) */
    int eof, skipping;
    uint64_t line, bytes;
};

gm_status gm_doc_reader_open(const char *path, gm_doc_split split, const char *sep, size_t max_doc_bytes,
                             gm_doc_reader **out) {
    *out = NULL;
    if (split == GM_SPLIT_SEP && (!sep || !*sep)) return gm_fail(GM_ERR_ARG, "empty document separator");
    if (max_doc_bytes < 1) return gm_fail(GM_ERR_ARG, "max document size must be positive");
    gm_doc_reader *r = calloc(1, sizeof *r);
    if (!r) return gm_fail(GM_ERR_NOMEM, "out of memory");
    r->split = split;
    r->max = max_doc_bytes;
    r->line = 1;
    r->path = strdup(path);
    r->sep = sep ? strdup(sep) : NULL;
    r->seplen = sep ? strlen(sep) : 0;
    r->cap = 2 * CHUNK;
    r->buf = malloc(r->cap);
    if (!r->path || (sep && !r->sep) || !r->buf) {
        gm_doc_reader_close(r);
        return gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    if (strcmp(path, "-") == 0) {
        r->f = stdin;
    } else {
        r->f = fopen(path, "rb");
        r->own = 1;
        if (!r->f) {
            gm_status st = gm_fail(GM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
            gm_doc_reader_close(r);
            return st;
        }
    }
    *out = r;
    return GM_OK;
}

void gm_doc_reader_close(gm_doc_reader *r) {
    if (!r) return;
    if (r->own && r->f) fclose(r->f);
    free(r->path);
    free(r->sep);
    free(r->buf);
    free(r);
}

uint64_t gm_doc_reader_bytes(const gm_doc_reader *r) { return r->bytes; }

/* Look for the first record boundary at or after r->scan: 1 with the record's end and the next record's
 * start, or 0 (then r->scan advances as far as is safe). */
static int find_boundary(gm_doc_reader *r, size_t *rec_end, size_t *next) {
    char *b = r->buf;
    switch (r->split) {
    case GM_SPLIT_FILE: r->scan = r->end; return 0;
    case GM_SPLIT_LINE: {
        char *p = memchr(b + r->scan, '\n', r->end - r->scan);
        if (!p) {
            r->scan = r->end;
            return 0;
        }
        *rec_end = (size_t)(p - b);
        *next = *rec_end + 1;
        return 1;
    }
    case GM_SPLIT_SEP: {
        if (r->end - r->scan >= r->seplen) {
            char *p = memmem(b + r->scan, r->end - r->scan, r->sep, r->seplen);
            if (p) {
                *rec_end = (size_t)(p - b);
                *next = *rec_end + r->seplen;
                return 1;
            }
            r->scan = r->end - (r->seplen - 1);
        }
        return 0;
    }
    case GM_SPLIT_BLANK: {
        size_t i = r->scan;
        for (;;) {
            char *p = memchr(b + i, '\n', r->end - i);
            if (!p) {
                r->scan = r->end;
                return 0;
            }
            size_t nl = (size_t)(p - b), j = nl + 1;
            while (j < r->end && (b[j] == ' ' || b[j] == '\t' || b[j] == '\r' || b[j] == '\f' || b[j] == '\v')) j++;
            if (j >= r->end) {
                r->scan = nl; /* cannot tell yet */
                return 0;
            }
            if (b[j] == '\n') {
                *rec_end = nl;
                *next = j + 1;
                return 1;
            }
            i = j;
        }
    }
    }
    return 0;
}

static uint64_t count_nl(const char *s, size_t n) {
    uint64_t c = 0;
    const char *e = s + n;
    while (s < e && (s = memchr(s, '\n', (size_t)(e - s)))) {
        c++;
        s++;
    }
    return c;
}

gm_status gm_doc_reader_next(gm_doc_reader *r, const char **rec, size_t *len, uint64_t *line, int *oversize) {
    *rec = NULL;
    *len = 0;
    *oversize = 0;
    for (;;) {
        size_t rec_end, next;
        if (find_boundary(r, &rec_end, &next)) {
            size_t start = r->start, n = rec_end - start;
            *line = r->line;
            r->line += count_nl(r->buf + start, next - start);
            r->start = r->scan = next;
            if (r->skipping) {
                r->skipping = 0;
                continue;
            }
            *rec = r->buf + start;
            *len = n > r->max ? r->max : n;
            *oversize = n > r->max;
            return GM_OK;
        }
        if (r->eof) {
            if (r->start < r->end && !r->skipping) {
                size_t start = r->start, n = r->end - start;
                *line = r->line;
                r->line += count_nl(r->buf + start, n);
                r->start = r->scan = r->end;
                *rec = r->buf + start;
                *len = n > r->max ? r->max : n;
                *oversize = n > r->max;
                return GM_OK;
            }
            r->start = r->scan = r->end;
            r->skipping = 0;
            return GM_OK;
        }
        if (!r->skipping && r->end - r->start > r->max) {
            /* No boundary within max bytes: hand out the head now, skip the rest up to the next boundary. */
            *rec = r->buf + r->start;
            *len = r->max;
            *oversize = 1;
            *line = r->line;
            r->skipping = 1;
            return GM_OK;
        }
        if (r->skipping) {
            r->line += count_nl(r->buf + r->start, r->scan - r->start);
            r->start = r->scan;
            if (r->end - r->start > r->max) r->start = r->scan = r->end; /* a giant whitespace run: give up on it */
        }
        /* Refill: slide the unread bytes to the front, grow if full, read a chunk. */
        if (r->start > 0) {
            memmove(r->buf, r->buf + r->start, r->end - r->start);
            r->end -= r->start;
            r->scan -= r->start;
            r->start = 0;
        }
        if (r->cap - r->end < CHUNK / 2) {
            size_t nc = r->cap * 2;
            char *nb = realloc(r->buf, nc);
            if (!nb) return gm_fail(GM_ERR_NOMEM, "%s: out of memory for a %zu-byte read buffer", r->path, nc);
            r->buf = nb;
            r->cap = nc;
        }
        size_t k = fread(r->buf + r->end, 1, r->cap - r->end, r->f);
        r->end += k;
        r->bytes += k;
        if (k == 0) {
            if (ferror(r->f)) return gm_fail(GM_ERR_IO, "%s: read error: %s", r->path, strerror(errno));
            r->eof = 1;
        }
    }
}
