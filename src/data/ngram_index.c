/* Decontamination index: a set of evaluation-set word n-gram hashes (open addressing, linear probing)
 * with the evaluation file each came from, filled from JSONL / JSON / text files and probed with the
 * n-grams of each training document. */
#include "data/ngram_index.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/file.h"
#include "base/json.h"

struct gm_ngram_index {
    int n;
    uint64_t *keys; /* 0 = empty (a hash of 0 is stored as 1) */
    uint16_t *src;
    size_t cap, count;
};

void gm_ngram_scratch_free(gm_ngram_scratch *s) {
    gm_words_free(&s->words);
    free(s->h);
    s->h = NULL;
    s->cap = 0;
}

gm_status gm_ngram_index_new(int n, gm_ngram_index **out) {
    *out = NULL;
    if (n < 1 || n > 64) return gm_fail(GM_ERR_ARG, "decontamination n-gram size %d not in 1..64", n);
    gm_ngram_index *ix = calloc(1, sizeof *ix);
    if (!ix) return gm_fail(GM_ERR_NOMEM, "out of memory");
    ix->n = n;
    ix->cap = 1 << 12;
    ix->keys = calloc(ix->cap, sizeof *ix->keys);
    ix->src = calloc(ix->cap, sizeof *ix->src);
    if (!ix->keys || !ix->src) {
        gm_ngram_index_free(ix);
        return gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    *out = ix;
    return GM_OK;
}

void gm_ngram_index_free(gm_ngram_index *ix) {
    if (!ix) return;
    free(ix->keys);
    free(ix->src);
    free(ix);
}

int gm_ngram_index_n(const gm_ngram_index *ix) { return ix->n; }
size_t gm_ngram_index_count(const gm_ngram_index *ix) { return ix->count; }
size_t gm_ngram_index_bytes(const gm_ngram_index *ix) { return ix->cap * (sizeof *ix->keys + sizeof *ix->src); }

static size_t home(uint64_t key, size_t cap) { return (size_t)(key * 0x9e3779b97f4a7c15ULL >> 17) & (cap - 1); }

static void put(uint64_t *keys, uint16_t *src, size_t cap, uint64_t key, uint16_t s, size_t *count) {
    size_t i = home(key, cap);
    while (keys[i] && keys[i] != key) i = (i + 1) & (cap - 1);
    if (keys[i]) return;
    keys[i] = key;
    src[i] = s;
    (*count)++;
}

static gm_status grow(gm_ngram_index *ix, size_t more) {
    if (2 * (ix->count + more) <= ix->cap) return GM_OK;
    size_t nc = ix->cap;
    while (2 * (ix->count + more) > nc) nc *= 2;
    uint64_t *k = calloc(nc, sizeof *k);
    uint16_t *s = calloc(nc, sizeof *s);
    if (!k || !s) {
        free(k);
        free(s);
        return gm_fail(GM_ERR_NOMEM, "out of memory for the decontamination index (%zu n-grams)", ix->count);
    }
    size_t cnt = 0;
    for (size_t i = 0; i < ix->cap; i++)
        if (ix->keys[i]) put(k, s, nc, ix->keys[i], ix->src[i], &cnt);
    free(ix->keys);
    free(ix->src);
    ix->keys = k;
    ix->src = s;
    ix->cap = nc;
    return GM_OK;
}

/* n-gram hashes of a text into s->h; returns their count. */
static gm_status hashes(int n, gm_ngram_scratch *s, const char *text, size_t len, size_t *count) {
    *count = 0;
    gm_status st = gm_text_words(text, len, &s->words);
    if (st) return st;
    if (s->words.n < (size_t)n) return GM_OK;
    size_t m = s->words.n - (size_t)n + 1;
    if (m > s->cap) {
        size_t cap = m < 1024 ? 1024 : m;
        uint64_t *h = realloc(s->h, cap * sizeof *h);
        if (!h) return gm_fail(GM_ERR_NOMEM, "out of memory for n-gram hashes");
        s->h = h;
        s->cap = cap;
    }
    gm_text_ngram_hashes(s->words.w, s->words.n, n, s->h);
    *count = m;
    return GM_OK;
}

gm_status gm_ngram_index_add_text(gm_ngram_index *ix, gm_ngram_scratch *s, const char *text, size_t len, uint16_t src) {
    size_t m;
    gm_status st = hashes(ix->n, s, text, len, &m);
    if (st) return st;
    if ((st = grow(ix, m))) return st;
    for (size_t i = 0; i < m; i++) put(ix->keys, ix->src, ix->cap, s->h[i] ? s->h[i] : 1, src, &ix->count);
    return GM_OK;
}

gm_status gm_ngram_index_match(const gm_ngram_index *ix, gm_ngram_scratch *s, const char *text, size_t len,
                               int *found, size_t *start, size_t *end, uint16_t *src) {
    *found = 0;
    size_t m;
    gm_status st = hashes(ix->n, s, text, len, &m);
    if (st) return st;
    for (size_t i = 0; i < m; i++) {
        uint64_t key = s->h[i] ? s->h[i] : 1;
        size_t j = home(key, ix->cap);
        while (ix->keys[j] && ix->keys[j] != key) j = (j + 1) & (ix->cap - 1);
        if (!ix->keys[j]) continue;
        *found = 1;
        *start = s->words.w[i].start;
        *end = s->words.w[i + (size_t)ix->n - 1].end;
        *src = ix->src[j];
        return GM_OK;
    }
    return GM_OK;
}

/* ---- evaluation files ----------------------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t n, cap;
} strbuf;

static int sb_add(strbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 1;
}

/* Every string in v (keys excluded), in document order, each followed by a space. */
static int collect_strings(const gm_json *v, strbuf *b) {
    switch (v->type) {
    case GM_JSON_STRING: return sb_add(b, v->str, v->len) && sb_add(b, " ", 1);
    case GM_JSON_ARRAY:
        for (size_t i = 0; i < v->len; i++)
            if (!collect_strings(&v->items[i], b)) return 0;
        return 1;
    case GM_JSON_OBJECT:
        for (size_t i = 0; i < v->len; i++)
            if (!collect_strings(&v->members[i].value, b)) return 0;
        return 1;
    default: return 1;
    }
}

static int has_suffix(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static gm_status add_item(gm_ngram_index *ix, gm_ngram_scratch *s, const gm_json *v, strbuf *b, uint16_t src,
                          const char *path) {
    b->n = 0;
    if (!collect_strings(v, b)) return gm_fail(GM_ERR_NOMEM, "%s: out of memory", path);
    return gm_ngram_index_add_text(ix, s, b->p ? b->p : "", b->n, src);
}

gm_status gm_ngram_index_add_file(gm_ngram_index *ix, const char *path, uint16_t src, size_t *items) {
    *items = 0;
    char *data;
    size_t len;
    gm_status st = gm_file_read_all(path, &data, &len);
    if (st) return st;
    if ((len >= 2 && (unsigned char)data[0] == 0x1f && (unsigned char)data[1] == 0x8b) ||
        (len >= 3 && memcmp(data, "BZh", 3) == 0) || (len >= 6 && memcmp(data, "\xFD" "7zXZ", 5) == 0)) {
        free(data);
        return gm_fail(GM_ERR_UNSUPPORTED, "%s: compressed file; decompress it first (e.g. gzip -dk / bzip2 -dk)", path);
    }
    gm_ngram_scratch s = {0};
    strbuf b = {0};
    if (has_suffix(path, ".jsonl")) {
        size_t a = 0, line = 0;
        while (a < len && !st) {
            size_t e = a;
            while (e < len && data[e] != '\n') e++;
            line++;
            size_t x = a;
            while (x < e && (data[x] == ' ' || data[x] == '\t' || data[x] == '\r')) x++;
            if (x < e) {
                char what[64];
                snprintf(what, sizeof what, "line %zu", line);
                gm_json_doc *doc;
                st = gm_json_parse(data + a, e - a, what, &doc);
                if (st) {
                    gm_fail_prefix(st, "%s: ", path);
                    break;
                }
                st = add_item(ix, &s, gm_json_root(doc), &b, src, path);
                gm_json_free(doc);
                (*items)++;
            }
            a = e + 1;
        }
    } else if (has_suffix(path, ".json")) {
        gm_json_doc *doc;
        st = gm_json_parse(data, len, path, &doc);
        if (!st) {
            const gm_json *root = gm_json_root(doc);
            if (root->type == GM_JSON_ARRAY) {
                for (size_t i = 0; i < root->len && !st; i++) st = add_item(ix, &s, &root->items[i], &b, src, path);
                *items = root->len;
            } else {
                st = add_item(ix, &s, root, &b, src, path);
                *items = 1;
            }
            gm_json_free(doc);
        }
    } else {
        st = gm_ngram_index_add_text(ix, &s, data, len, src);
        *items = 1;
    }
    free(b.p);
    gm_ngram_scratch_free(&s);
    free(data);
    return st;
}
