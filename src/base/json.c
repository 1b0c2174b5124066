/* JSON reader (see json.h). Two passes would be simpler to bound, but one recursive-descent pass into
 * growable arrays held by a chunked arena is fast enough for a 30 MB tokenizer.json and keeps every
 * pointer stable. Depth is capped so a hostile "[[[[..." cannot exhaust the stack. */
#include "base/json.h"

#include <stdlib.h>
#include <string.h>

#include "base/error.h"

#define JSON_MAX_DEPTH 256

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} arena_chunk;

struct gm_json_doc {
    arena_chunk *chunks;
    gm_json root;
};

typedef struct {
    const char *p, *end, *start;
    const char *what;
    gm_json_doc *doc;
    int depth;
    /* scratch stacks for items/members while an array/object is being read */
    gm_json *items;
    size_t n_items, cap_items;
    gm_json_member *mem;
    size_t n_mem, cap_mem;
} parser;

static void *arena_alloc(gm_json_doc *doc, size_t n) {
    n = (n + 15) & ~(size_t)15;
    arena_chunk *c = doc->chunks;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > (1u << 20) ? n : (1u << 20);
        c = malloc(sizeof(arena_chunk) + cap);
        if (!c) return NULL;
        c->next = doc->chunks;
        c->used = 0;
        c->cap = cap;
        doc->chunks = c;
    }
    void *r = c->data + c->used;
    c->used += n;
    return r;
}

static gm_status perr(parser *ps, const char *msg) {
    /* Report line and column so people can find the fault in a large file. */
    size_t line = 1, col = 1;
    for (const char *q = ps->start; q < ps->p && q < ps->end; q++) {
        if (*q == '\n') { line++; col = 1; } else col++;
    }
    return gm_fail(GM_ERR_FORMAT, "%s: malformed JSON at line %zu column %zu: %s", ps->what, line, col, msg);
}

static void skip_ws(parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) ps->p++;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int read_hex4(parser *ps, unsigned *out) {
    if (ps->end - ps->p < 4) return 0;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(ps->p[i]);
        if (h < 0) return 0;
        v = v * 16 + (unsigned)h;
    }
    ps->p += 4;
    *out = v;
    return 1;
}

static size_t put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of a valid UTF-8 sequence starting at p (1..4), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end) {
    unsigned c = p[0];
    size_t n;
    unsigned min;
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) { n = 2; min = 0x80; c &= 0x1F; }
    else if ((c & 0xF0) == 0xE0) { n = 3; min = 0x800; c &= 0x0F; }
    else if ((c & 0xF8) == 0xF0) { n = 4; min = 0x10000; c &= 0x07; }
    else return 0;
    if ((size_t)(end - p) < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        c = (c << 6) | (p[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
    return n;
}

static gm_status parse_string(parser *ps, const char **out, size_t *out_len) {
    ps->p++; /* opening quote */
    /* Fast path: find the closing quote; the unescaped text is never longer than the source. */
    const char *q = ps->p;
    int has_escape = 0;
    while (q < ps->end && *q != '"') {
        /* A trailing backslash must not step q two past the end (pointer arithmetic past the buffer is UB). */
        if (*q == '\\') { has_escape = 1; if (++q >= ps->end) break; }
        q++;
    }
    if (q >= ps->end) return perr(ps, "unterminated string");
    size_t src_len = (size_t)(q - ps->p);
    char *o = arena_alloc(ps->doc, src_len + 1);
    if (!o) return gm_fail(GM_ERR_NOMEM, "%s: out of memory parsing JSON", ps->what);
    size_t n = 0;
    if (!has_escape) {
        const unsigned char *u = (const unsigned char *)ps->p, *ue = (const unsigned char *)q;
        while (u < ue) {
            if (*u < 0x20) return perr(ps, "control character in string");
            if (*u < 0x80) { u++; continue; }
            size_t k = utf8_seq(u, ue);
            if (!k) { ps->p = (const char *)u; return perr(ps, "invalid UTF-8 in string"); }
            u += k;
        }
        memcpy(o, ps->p, src_len);
        n = src_len;
        ps->p = q + 1;
    } else {
        while (ps->p < q) {
            unsigned char c = (unsigned char)*ps->p;
            if (c == '\\') {
                ps->p++;
                char e = *ps->p++;
                switch (e) {
                case '"': o[n++] = '"'; break;
                case '\\': o[n++] = '\\'; break;
                case '/': o[n++] = '/'; break;
                case 'b': o[n++] = '\b'; break;
                case 'f': o[n++] = '\f'; break;
                case 'n': o[n++] = '\n'; break;
                case 'r': o[n++] = '\r'; break;
                case 't': o[n++] = '\t'; break;
                case 'u': {
                    unsigned cp;
                    if (!read_hex4(ps, &cp)) return perr(ps, "bad \\u escape");
                    if (cp >= 0xD800 && cp <= 0xDBFF) {
                        unsigned lo;
                        if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u')
                            return perr(ps, "unpaired surrogate in \\u escape");
                        ps->p += 2;
                        if (!read_hex4(ps, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                            return perr(ps, "unpaired surrogate in \\u escape");
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                        return perr(ps, "unpaired surrogate in \\u escape");
                    }
                    /* A \u escape's UTF-8 is at most as long as the escape itself (6 or 12 bytes). */
                    n += put_utf8(o + n, cp);
                    break;
                }
                default: ps->p--; return perr(ps, "bad escape in string");
                }
            } else if (c < 0x20) {
                return perr(ps, "control character in string");
            } else if (c < 0x80) {
                o[n++] = (char)c;
                ps->p++;
            } else {
                size_t k = utf8_seq((const unsigned char *)ps->p, (const unsigned char *)q);
                if (!k) return perr(ps, "invalid UTF-8 in string");
                memcpy(o + n, ps->p, k);
                n += k;
                ps->p += k;
            }
        }
        ps->p = q + 1;
    }
    o[n] = 0;
    *out = o;
    *out_len = n;
    return GM_OK;
}

static gm_status parse_number(parser *ps, gm_json *v) {
    const char *s = ps->p;
    const char *p = s;
    int neg = 0;
    if (p < ps->end && *p == '-') { neg = 1; p++; }
    if (p >= ps->end || *p < '0' || *p > '9') return perr(ps, "bad number");
    if (*p == '0' && p + 1 < ps->end && p[1] >= '0' && p[1] <= '9') return perr(ps, "leading zero in number");
    uint64_t mag = 0;
    int overflow = 0;
    while (p < ps->end && *p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p - '0');
        if (mag > (UINT64_MAX - d) / 10) overflow = 1; else mag = mag * 10 + d;
        p++;
    }
    int is_int = 1;
    if (p < ps->end && *p == '.') {
        is_int = 0;
        p++;
        if (p >= ps->end || *p < '0' || *p > '9') return perr(ps, "bad fraction in number");
        while (p < ps->end && *p >= '0' && *p <= '9') p++;
    }
    if (p < ps->end && (*p == 'e' || *p == 'E')) {
        is_int = 0;
        p++;
        if (p < ps->end && (*p == '+' || *p == '-')) p++;
        if (p >= ps->end || *p < '0' || *p > '9') return perr(ps, "bad exponent in number");
        while (p < ps->end && *p >= '0' && *p <= '9') p++;
    }
    /* strtod needs a NUL-terminated copy: the source buffer may not be terminated. */
    char buf[64];
    size_t len = (size_t)(p - s);
    if (len < sizeof buf) {
        memcpy(buf, s, len);
        buf[len] = 0;
        v->num = strtod(buf, NULL);
    } else {
        char *tmp = malloc(len + 1);
        if (!tmp) return gm_fail(GM_ERR_NOMEM, "%s: out of memory", ps->what);
        memcpy(tmp, s, len);
        tmp[len] = 0;
        v->num = strtod(tmp, NULL);
        free(tmp);
    }
    v->type = GM_JSON_NUMBER;
    if (is_int && !overflow && (neg ? mag <= (uint64_t)INT64_MAX + 1 : mag <= (uint64_t)INT64_MAX)) {
        v->is_int = 1;
        v->i = neg ? (mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag) : (int64_t)mag;
    }
    ps->p = p;
    return GM_OK;
}

static gm_status parse_value(parser *ps, gm_json *v);

static gm_status parse_array(parser *ps, gm_json *v) {
    ps->p++;
    size_t base = ps->n_items;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
    } else {
        for (;;) {
            gm_json item;
            gm_status st = parse_value(ps, &item);
            if (st) return st;
            if (ps->n_items == ps->cap_items) {
                size_t nc = ps->cap_items ? ps->cap_items * 2 : 256;
                gm_json *ni = realloc(ps->items, nc * sizeof *ni);
                if (!ni) return gm_fail(GM_ERR_NOMEM, "%s: out of memory parsing JSON", ps->what);
                ps->items = ni;
                ps->cap_items = nc;
            }
            ps->items[ps->n_items++] = item;
            skip_ws(ps);
            if (ps->p >= ps->end) return perr(ps, "unterminated array");
            if (*ps->p == ',') { ps->p++; continue; }
            if (*ps->p == ']') { ps->p++; break; }
            return perr(ps, "expected ',' or ']' in array");
        }
    }
    size_t n = ps->n_items - base;
    v->type = GM_JSON_ARRAY;
    v->len = n;
    v->items = NULL;
    if (n) {
        v->items = arena_alloc(ps->doc, n * sizeof(gm_json));
        if (!v->items) return gm_fail(GM_ERR_NOMEM, "%s: out of memory parsing JSON", ps->what);
        memcpy(v->items, ps->items + base, n * sizeof(gm_json));
    }
    ps->n_items = base;
    return GM_OK;
}

static gm_status parse_object(parser *ps, gm_json *v) {
    ps->p++;
    size_t base = ps->n_mem;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
    } else {
        for (;;) {
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != '"') return perr(ps, "expected a string key in object");
            gm_json_member m;
            memset(&m, 0, sizeof m);
            gm_status st = parse_string(ps, &m.key, &m.key_len);
            if (st) return st;
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') return perr(ps, "expected ':' after object key");
            ps->p++;
            st = parse_value(ps, &m.value);
            if (st) return st;
            if (ps->n_mem == ps->cap_mem) {
                size_t nc = ps->cap_mem ? ps->cap_mem * 2 : 256;
                gm_json_member *nm = realloc(ps->mem, nc * sizeof *nm);
                if (!nm) return gm_fail(GM_ERR_NOMEM, "%s: out of memory parsing JSON", ps->what);
                ps->mem = nm;
                ps->cap_mem = nc;
            }
            ps->mem[ps->n_mem++] = m;
            skip_ws(ps);
            if (ps->p >= ps->end) return perr(ps, "unterminated object");
            if (*ps->p == ',') { ps->p++; continue; }
            if (*ps->p == '}') { ps->p++; break; }
            return perr(ps, "expected ',' or '}' in object");
        }
    }
    size_t n = ps->n_mem - base;
    v->type = GM_JSON_OBJECT;
    v->len = n;
    v->members = NULL;
    if (n) {
        v->members = arena_alloc(ps->doc, n * sizeof(gm_json_member));
        if (!v->members) return gm_fail(GM_ERR_NOMEM, "%s: out of memory parsing JSON", ps->what);
        memcpy(v->members, ps->mem + base, n * sizeof(gm_json_member));
    }
    ps->n_mem = base;
    return GM_OK;
}

static int match_lit(parser *ps, const char *lit) {
    size_t n = strlen(lit);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, lit, n) != 0) return 0;
    ps->p += n;
    return 1;
}

static gm_status parse_value(parser *ps, gm_json *v) {
    memset(v, 0, sizeof *v);
    skip_ws(ps);
    if (ps->p >= ps->end) return perr(ps, "unexpected end of input");
    gm_status st;
    switch (*ps->p) {
    case '{':
    case '[':
        if (++ps->depth > JSON_MAX_DEPTH) return perr(ps, "nesting deeper than 256 levels");
        st = *ps->p == '{' ? parse_object(ps, v) : parse_array(ps, v);
        ps->depth--;
        return st;
    case '"':
        v->type = GM_JSON_STRING;
        return parse_string(ps, &v->str, &v->len);
    case 't':
        if (!match_lit(ps, "true")) return perr(ps, "unexpected token");
        v->type = GM_JSON_BOOL;
        v->boolean = 1;
        return GM_OK;
    case 'f':
        if (!match_lit(ps, "false")) return perr(ps, "unexpected token");
        v->type = GM_JSON_BOOL;
        return GM_OK;
    case 'n':
        if (!match_lit(ps, "null")) return perr(ps, "unexpected token");
        v->type = GM_JSON_NULL;
        return GM_OK;
    default:
        if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9')) return parse_number(ps, v);
        return perr(ps, "unexpected character");
    }
}

gm_status gm_json_parse(const char *text, size_t len, const char *what, gm_json_doc **out) {
    *out = NULL;
    gm_json_doc *doc = calloc(1, sizeof *doc);
    if (!doc) return gm_fail(GM_ERR_NOMEM, "%s: out of memory", what);
    parser ps;
    memset(&ps, 0, sizeof ps);
    ps.p = ps.start = text;
    ps.end = text + len;
    ps.what = what ? what : "JSON";
    ps.doc = doc;
    /* A UTF-8 byte-order mark is tolerated: some editors write one into config.json. */
    if (len >= 3 && (unsigned char)text[0] == 0xEF && (unsigned char)text[1] == 0xBB && (unsigned char)text[2] == 0xBF)
        ps.p += 3;
    gm_status st = parse_value(&ps, &doc->root);
    if (!st) {
        skip_ws(&ps);
        if (ps.p != ps.end) st = perr(&ps, "trailing characters after the JSON value");
    }
    free(ps.items);
    free(ps.mem);
    if (st) {
        gm_json_free(doc);
        return st;
    }
    *out = doc;
    return GM_OK;
}

void gm_json_free(gm_json_doc *doc) {
    if (!doc) return;
    arena_chunk *c = doc->chunks;
    while (c) {
        arena_chunk *n = c->next;
        free(c);
        c = n;
    }
    free(doc);
}

const gm_json *gm_json_root(const gm_json_doc *doc) { return &doc->root; }

const gm_json *gm_json_get(const gm_json *obj, const char *key) {
    if (!obj || obj->type != GM_JSON_OBJECT) return NULL;
    size_t kl = strlen(key);
    for (size_t i = 0; i < obj->len; i++)
        if (obj->members[i].key_len == kl && memcmp(obj->members[i].key, key, kl) == 0) return &obj->members[i].value;
    return NULL;
}

int gm_json_get_int(const gm_json *obj, const char *key, int64_t *out) {
    const gm_json *v = gm_json_get(obj, key);
    if (!v || v->type != GM_JSON_NUMBER || !v->is_int) return 0;
    *out = v->i;
    return 1;
}

int gm_json_get_num(const gm_json *obj, const char *key, double *out) {
    const gm_json *v = gm_json_get(obj, key);
    if (!v || v->type != GM_JSON_NUMBER) return 0;
    *out = v->num;
    return 1;
}

int gm_json_get_bool(const gm_json *obj, const char *key, int *out) {
    const gm_json *v = gm_json_get(obj, key);
    if (!v || v->type != GM_JSON_BOOL) return 0;
    *out = v->boolean;
    return 1;
}

const char *gm_json_get_str(const gm_json *obj, const char *key) {
    const gm_json *v = gm_json_get(obj, key);
    return v && v->type == GM_JSON_STRING ? v->str : NULL;
}

void gm_json_write_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20) fprintf(f, "\\u%04x", *p);
            else fputc(*p, f);
        }
    }
    fputc('"', f);
}
