/* GGUF reader and writer (see gguf.h). Format facts were checked against llama.cpp's ggml/src/gguf.cpp
 * (gguf_init_from_reader, gguf_write_out) and gguf-py/gguf/constants.py; the code is our own.
 *
 * The reader walks the header once with a bounds-checked cursor. Counts are compared with the bytes
 * that remain before any array is sized from them (a key/value pair takes at least 14 bytes, a tensor
 * info at least 33), strings are not copied except keys, tensor names and scalar string values (into
 * one arena), and string arrays get one offset per element -- so memory stays proportional to the file. */
#include "formats/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "base/file.h"

#define GGUF_MAGIC "GGUF"
#define MIN_KV_BYTES 14     /* u64 key length + 1 key byte + u32 type + 1 value byte */
#define MIN_TENSOR_BYTES 33 /* u64 name length + 1 byte + u32 n_dims + one i64 dim + u32 type + u64 offset */
#define MAX_KV ((uint64_t)1 << 20)
#define MAX_TENSORS ((uint64_t)1 << 20)

/* ---- value types ------------------------------------------------------------------------------- */

static const size_t TYPE_SIZE[GM_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
static const char *const TYPE_NAME[GM_GGUF_TYPE_COUNT] = {"u8",  "i8",   "u16",    "i16",   "u32", "i32", "f32",
                                                          "bool", "string", "array", "u64", "i64", "f64"};

const char *gm_gguf_type_name(gm_gguf_type t) {
    return (unsigned)t < GM_GGUF_TYPE_COUNT ? TYPE_NAME[t] : "?";
}

static int is_int_type(gm_gguf_type t) {
    return t == GM_GGUF_U8 || t == GM_GGUF_I8 || t == GM_GGUF_U16 || t == GM_GGUF_I16 || t == GM_GGUF_U32 ||
           t == GM_GGUF_I32 || t == GM_GGUF_U64 || t == GM_GGUF_I64;
}

/* ---- little-endian decoding -------------------------------------------------------------------- */

static uint64_t le(const unsigned char *p, size_t n) {
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;) v = (v << 8) | p[i];
    return v;
}

/* ---- the parsed file --------------------------------------------------------------------------- */

typedef struct {
    const char *key;
    size_t key_off, key_len; /* arena offset while parsing */
    gm_gguf_type type;       /* GM_GGUF_ARRAY for arrays */
    gm_gguf_type elem;       /* element type (the type itself for scalars) */
    uint64_t n;              /* element count, 1 for scalars */
    size_t val;              /* buffer offset of the payload (string arrays: of the first length prefix) */
    const char *sval;        /* scalar strings: NUL-terminated copy */
    size_t sval_off;
    uint64_t *soff; /* string arrays: buffer offset of each element's length prefix */
} kv_rec;

struct gm_gguf {
    char *path;
    gm_file_buf buf;
    const unsigned char *base;
    size_t size;
    uint32_t version, alignment;
    size_t data_off;
    kv_rec *kv;
    size_t n_kv;
    gm_gguf_tensor *t;
    size_t *t_name_off;
    size_t n_t;
    char *arena;
    size_t arena_len, arena_cap;
    int32_t *kslots, *tslots;
    size_t kmask, tmask;
    void **copies;
    size_t n_copies;
};

typedef struct {
    gm_gguf *g;
    size_t pos;
    const char *what;
} cursor;

static size_t remain(const cursor *c) { return c->g->size - c->pos; }

static gm_status truncated(const cursor *c, const char *item, size_t need) {
    return gm_fail(GM_ERR_FORMAT, "%s: truncated GGUF file: %s at byte %zu needs %zu bytes, %zu remain", c->what, item,
                   c->pos, need, remain(c));
}

static gm_status rd_u32(cursor *c, const char *item, uint32_t *out) {
    if (remain(c) < 4) return truncated(c, item, 4);
    *out = (uint32_t)le(c->g->base + c->pos, 4);
    c->pos += 4;
    return GM_OK;
}

static gm_status rd_u64(cursor *c, const char *item, uint64_t *out) {
    if (remain(c) < 8) return truncated(c, item, 8);
    *out = le(c->g->base + c->pos, 8);
    c->pos += 8;
    return GM_OK;
}

/* A length-prefixed string: its buffer offset and length, checked against the file. */
static gm_status rd_str(cursor *c, const char *item, size_t *off, size_t *len) {
    uint64_t n;
    size_t at = c->pos;
    gm_status st = rd_u64(c, item, &n);
    if (st) return st;
    if (n > (uint64_t)remain(c))
        return gm_fail(GM_ERR_FORMAT, "%s: %s at byte %zu has length %llu, past the end of the file (%zu bytes remain)",
                       c->what, item, at, (unsigned long long)n, remain(c));
    *off = c->pos;
    *len = (size_t)n;
    c->pos += (size_t)n;
    return GM_OK;
}

static gm_status arena_add(gm_gguf *g, const unsigned char *s, size_t n, size_t *off) {
    size_t need;
    if (!gm_add_size(g->arena_len, n + 1, &need)) return gm_fail(GM_ERR_NOMEM, "%s: out of memory", g->path);
    if (need > g->arena_cap) {
        size_t cap = g->arena_cap ? g->arena_cap : 1024;
        while (cap < need) cap *= 2;
        char *a = realloc(g->arena, cap);
        if (!a) return gm_fail(GM_ERR_NOMEM, "%s: out of memory", g->path);
        g->arena = a;
        g->arena_cap = cap;
    }
    if (n) memcpy(g->arena + g->arena_len, s, n);
    g->arena[g->arena_len + n] = 0;
    *off = g->arena_len;
    g->arena_len = need;
    return GM_OK;
}

static uint64_t hash_bytes(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    return h ^ (h >> 31);
}

static size_t table_size(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    return cap;
}

/* Insert id (whose text is s[0..n)) unless an equal text is present: returns the existing id or -1. */
static int32_t table_insert(int32_t *slots, size_t mask, const char *arena, const size_t *offs, size_t stride,
                            const size_t *lens, const void *s, size_t n, int32_t id) {
    for (size_t i = hash_bytes(s, n) & mask;; i = (i + 1) & mask) {
        int32_t o = slots[i];
        if (o < 0) {
            slots[i] = id;
            return -1;
        }
        size_t ooff = *(const size_t *)((const char *)offs + (size_t)o * stride);
        size_t olen = lens ? *(const size_t *)((const char *)lens + (size_t)o * stride) : strlen(arena + ooff);
        if (olen == n && memcmp(arena + ooff, s, n) == 0) return o;
    }
}

static int valid_name_bytes(const unsigned char *s, size_t n) { return n > 0 && memchr(s, 0, n) == NULL; }

static gm_status parse_kv(cursor *c, kv_rec *kv, size_t index) {
    gm_gguf *g = c->g;
    size_t at = c->pos, koff, klen;
    gm_status st = rd_str(c, "a key", &koff, &klen);
    if (st) return st;
    if (!valid_name_bytes(g->base + koff, klen))
        return gm_fail(GM_ERR_FORMAT, "%s: key %zu at byte %zu is empty or contains a NUL byte", c->what, index, at);
    if ((st = arena_add(g, g->base + koff, klen, &kv->key_off))) return st;
    kv->key_len = klen;
    const char *key = g->arena + kv->key_off;
    uint32_t type;
    if ((st = rd_u32(c, "a value type", &type))) return st;
    if (type >= GM_GGUF_TYPE_COUNT)
        return gm_fail(GM_ERR_FORMAT, "%s: key '%s' has unknown value type %u", c->what, key, (unsigned)type);
    kv->type = kv->elem = (gm_gguf_type)type;
    kv->n = 1;
    if (type == GM_GGUF_ARRAY) {
        uint32_t elem;
        uint64_t n;
        if ((st = rd_u32(c, "an array element type", &elem)) || (st = rd_u64(c, "an array length", &n))) return st;
        if (elem >= GM_GGUF_TYPE_COUNT)
            return gm_fail(GM_ERR_FORMAT, "%s: key '%s' is an array of unknown value type %u", c->what, key,
                           (unsigned)elem);
        if (elem == GM_GGUF_ARRAY)
            return gm_fail(GM_ERR_UNSUPPORTED, "%s: key '%s' is an array of arrays (not supported)", c->what, key);
        kv->elem = (gm_gguf_type)elem;
        kv->n = n;
        kv->val = c->pos;
        if (elem == GM_GGUF_STRING) {
            /* every element has an 8-byte length prefix: that bounds the count by the bytes left */
            if (n > (uint64_t)remain(c) / 8)
                return gm_fail(GM_ERR_FORMAT, "%s: key '%s': array of %llu strings cannot fit in the %zu bytes left",
                               c->what, key, (unsigned long long)n, remain(c));
            kv->soff = malloc((size_t)(n ? n : 1) * sizeof *kv->soff);
            if (!kv->soff) return gm_fail(GM_ERR_NOMEM, "%s: out of memory", c->what);
            for (uint64_t i = 0; i < n; i++) {
                size_t off, len;
                kv->soff[i] = c->pos;
                if ((st = rd_str(c, "an array string", &off, &len)))
                    return gm_fail_prefix(st, "key '%s' element %llu: ", key, (unsigned long long)i);
            }
        } else {
            size_t es = TYPE_SIZE[elem];
            if (n > (uint64_t)remain(c) / es)
                return gm_fail(GM_ERR_FORMAT, "%s: key '%s': array of %llu %s values runs past the end of the file (%zu bytes left)",
                               c->what, key, (unsigned long long)n, TYPE_NAME[elem], remain(c));
            c->pos += (size_t)n * es;
        }
        return GM_OK;
    }
    kv->val = c->pos;
    if (type == GM_GGUF_STRING) {
        size_t off, len;
        if ((st = rd_str(c, "a string value", &off, &len))) return gm_fail_prefix(st, "key '%s': ", key);
        kv->val = off;
        /* keep a NUL-terminated copy; a value with an embedded NUL is refused by the getter */
        if ((st = arena_add(g, g->base + off, len, &kv->sval_off))) return st;
        if (memchr(g->base + off, 0, len)) kv->sval_off = (size_t)-1;
        return GM_OK;
    }
    size_t es = TYPE_SIZE[type];
    if (remain(c) < es) return truncated(c, "a value", es);
    c->pos += es;
    return GM_OK;
}

static gm_status parse_tensor_info(cursor *c, gm_gguf_tensor *t, size_t *name_off, size_t index) {
    gm_gguf *g = c->g;
    size_t at = c->pos, off, len;
    gm_status st = rd_str(c, "a tensor name", &off, &len);
    if (st) return st;
    if (!valid_name_bytes(g->base + off, len))
        return gm_fail(GM_ERR_FORMAT, "%s: tensor %zu at byte %zu has an empty name or one with a NUL byte", c->what,
                       index, at);
    if (len > GM_GGUF_MAX_NAME)
        return gm_fail(GM_ERR_FORMAT, "%s: tensor %zu has a %zu-byte name (at most %d)", c->what, index, len,
                       GM_GGUF_MAX_NAME);
    if ((st = arena_add(g, g->base + off, len, name_off))) return st;
    const char *name = g->arena + *name_off;
    uint32_t nd;
    if ((st = rd_u32(c, "n_dims", &nd))) return st;
    if (nd < 1 || nd > GM_GGUF_MAX_DIMS)
        return gm_fail(GM_ERR_FORMAT, "%s: tensor '%s' has %u dimensions (1 to %d supported)", c->what, name,
                       (unsigned)nd, GM_GGUF_MAX_DIMS);
    t->ndim = (int)nd;
    uint64_t n_elems = 1;
    for (int i = 0; i < GM_GGUF_MAX_DIMS; i++) {
        uint64_t d = 1;
        if (i < (int)nd && (st = rd_u64(c, "a tensor dimension", &d))) return st;
        if (d > (uint64_t)INT64_MAX)
            return gm_fail(GM_ERR_FORMAT, "%s: tensor '%s' dimension %d is negative (%lld)", c->what, name, i,
                           (long long)(int64_t)d);
        t->ne[i] = (int64_t)d;
        if (d != 0 && n_elems > (uint64_t)INT64_MAX / d)
            return gm_fail(GM_ERR_FORMAT, "%s: tensor '%s': the product of its dimensions overflows", c->what, name);
        n_elems *= d;
    }
    uint32_t type;
    if ((st = rd_u32(c, "a tensor type", &type))) return st;
    t->ggml_type = type;
    if (!gm_dtype_from_ggml(type, &t->dtype))
        return gm_fail(GM_ERR_UNSUPPORTED, "%s: tensor '%s' has ggml type %u, which is not supported", c->what, name,
                       (unsigned)type);
    const gm_dtype_traits *tr = gm_dtype_info(t->dtype);
    if ((uint64_t)t->ne[0] % tr->block_elems)
        return gm_fail(GM_ERR_FORMAT, "%s: tensor '%s' of type %s has rows of %lld elements, not a multiple of its block (%zu)",
                       c->what, name, tr->name, (long long)t->ne[0], tr->block_elems);
    uint64_t blocks = n_elems / tr->block_elems;
    if (blocks > (uint64_t)SIZE_MAX / tr->block_bytes)
        return gm_fail(GM_ERR_FORMAT, "%s: tensor '%s': its size in bytes overflows", c->what, name);
    t->nbytes = (size_t)blocks * tr->block_bytes;
    return rd_u64(c, "a tensor offset", &t->offset);
}

typedef struct {
    uint64_t off;
    size_t nbytes, idx;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

static const kv_rec *find_kv(const gm_gguf *g, const char *key) {
    if (!g->kslots) return NULL;
    size_t n = strlen(key);
    for (size_t i = hash_bytes(key, n) & g->kmask;; i = (i + 1) & g->kmask) {
        int32_t o = g->kslots[i];
        if (o < 0) return NULL;
        if (g->kv[o].key_len == n && memcmp(g->kv[o].key, key, n) == 0) return &g->kv[o];
    }
}

static gm_status parse(gm_gguf *g, const char *what) {
    cursor c = {g, 0, what};
    gm_status st;
    if (g->size < 4 || memcmp(g->base, GGUF_MAGIC, 4) != 0)
        return gm_fail(GM_ERR_FORMAT, "%s: not a GGUF file (no \"GGUF\" magic at the start)", what);
    c.pos = 4;
    if ((st = rd_u32(&c, "the version", &g->version))) return st;
    if (g->version != 2 && g->version != 3) {
        if ((g->version & 0xFFFFu) == 0)
            return gm_fail(GM_ERR_UNSUPPORTED, "%s: GGUF version 0x%08x: a big-endian file? only little-endian GGUF is supported",
                           what, (unsigned)g->version);
        if (g->version == 1)
            return gm_fail(GM_ERR_UNSUPPORTED, "%s: GGUF version 1 is not supported (only 2 and 3)", what);
        return gm_fail(GM_ERR_UNSUPPORTED, "%s: GGUF version %u is not supported (only 2 and 3)", what,
                       (unsigned)g->version);
    }
    uint64_t n_t, n_kv;
    if ((st = rd_u64(&c, "the tensor count", &n_t)) || (st = rd_u64(&c, "the key/value count", &n_kv))) return st;
    /* Counts must fit in what remains before anything is sized from them. */
    if (n_kv > (uint64_t)remain(&c) / MIN_KV_BYTES)
        return gm_fail(GM_ERR_FORMAT, "%s: key/value count %llu cannot fit in the %zu bytes of the file", what,
                       (unsigned long long)n_kv, g->size);
    if (n_t > (uint64_t)remain(&c) / MIN_TENSOR_BYTES || n_t * MIN_TENSOR_BYTES > (uint64_t)remain(&c) - n_kv * MIN_KV_BYTES)
        return gm_fail(GM_ERR_FORMAT, "%s: tensor count %llu cannot fit in the %zu bytes of the file", what,
                       (unsigned long long)n_t, g->size);
    if (n_kv > MAX_KV || n_t > MAX_TENSORS)
        return gm_fail(GM_ERR_FORMAT, "%s: %llu keys and %llu tensors: more than the %llu supported", what,
                       (unsigned long long)n_kv, (unsigned long long)n_t, (unsigned long long)MAX_KV);

    /* key/value pairs */
    g->kv = calloc((size_t)(n_kv ? n_kv : 1), sizeof *g->kv);
    g->kmask = table_size((size_t)n_kv) - 1;
    g->kslots = malloc((g->kmask + 1) * sizeof *g->kslots);
    if (!g->kv || !g->kslots) return gm_fail(GM_ERR_NOMEM, "%s: out of memory", what);
    memset(g->kslots, 0xFF, (g->kmask + 1) * sizeof *g->kslots);
    for (size_t i = 0; i < (size_t)n_kv; i++) {
        kv_rec *kv = &g->kv[i];
        g->n_kv = i + 1; /* so close() frees a partly parsed pair */
        if ((st = parse_kv(&c, kv, i))) return st;
        int32_t dup = table_insert(g->kslots, g->kmask, g->arena, &g->kv[0].key_off, sizeof *kv, &g->kv[0].key_len,
                                   g->arena + kv->key_off, kv->key_len, (int32_t)i);
        if (dup >= 0)
            return gm_fail(GM_ERR_FORMAT, "%s: key '%s' appears twice (pairs %d and %zu)", what, g->arena + kv->key_off,
                           (int)dup, i);
    }

    /* tensor infos */
    g->t = calloc((size_t)(n_t ? n_t : 1), sizeof *g->t);
    g->t_name_off = calloc((size_t)(n_t ? n_t : 1), sizeof *g->t_name_off);
    g->tmask = table_size((size_t)n_t) - 1;
    g->tslots = malloc((g->tmask + 1) * sizeof *g->tslots);
    if (!g->t || !g->t_name_off || !g->tslots) return gm_fail(GM_ERR_NOMEM, "%s: out of memory", what);
    memset(g->tslots, 0xFF, (g->tmask + 1) * sizeof *g->tslots);
    for (size_t i = 0; i < (size_t)n_t; i++) {
        if ((st = parse_tensor_info(&c, &g->t[i], &g->t_name_off[i], i))) return st;
        g->n_t = i + 1;
        const char *name = g->arena + g->t_name_off[i];
        int32_t dup = table_insert(g->tslots, g->tmask, g->arena, g->t_name_off, sizeof(size_t), NULL, name,
                                   strlen(name), (int32_t)i);
        if (dup >= 0) return gm_fail(GM_ERR_FORMAT, "%s: tensor '%s' is listed twice", what, name);
    }

    /* pointers into the arena are stable from here on */
    for (size_t i = 0; i < g->n_kv; i++) {
        g->kv[i].key = g->arena + g->kv[i].key_off;
        if (g->kv[i].type == GM_GGUF_STRING && g->kv[i].sval_off != (size_t)-1) g->kv[i].sval = g->arena + g->kv[i].sval_off;
    }
    for (size_t i = 0; i < g->n_t; i++) g->t[i].name = g->arena + g->t_name_off[i];

    g->alignment = GM_GGUF_DEFAULT_ALIGNMENT;
    const kv_rec *al = find_kv(g, "general.alignment");
    if (al) {
        if (al->type != GM_GGUF_U32)
            return gm_fail(GM_ERR_FORMAT, "%s: general.alignment has type %s, must be u32", what, TYPE_NAME[al->type]);
        uint32_t a = (uint32_t)le(g->base + al->val, 4);
        if (a == 0 || (a & (a - 1)) != 0)
            return gm_fail(GM_ERR_FORMAT, "%s: general.alignment %u is not a power of two", what, (unsigned)a);
        if (a > GM_GGUF_MAX_ALIGNMENT)
            return gm_fail(GM_ERR_FORMAT, "%s: general.alignment %u is larger than the 1 MiB limit", what, (unsigned)a);
        g->alignment = a;
    }

    /* data section: starts at the next aligned offset after the infos */
    size_t data_off = c.pos;
    if (g->n_t > 0) {
        size_t pad = (g->alignment - c.pos % g->alignment) % g->alignment;
        if (pad > remain(&c))
            return gm_fail(GM_ERR_FORMAT, "%s: the data section would start at byte %zu, past the end of the file (%zu bytes)",
                           what, c.pos + pad, g->size);
        data_off = c.pos + pad;
    }
    g->data_off = data_off;
    size_t data_size = g->size - data_off;
    span *sp = malloc((g->n_t ? g->n_t : 1) * sizeof *sp);
    if (!sp) return gm_fail(GM_ERR_NOMEM, "%s: out of memory", what);
    for (size_t i = 0; i < g->n_t; i++) {
        gm_gguf_tensor *t = &g->t[i];
        if (t->offset % g->alignment) {
            free(sp);
            return gm_fail(GM_ERR_FORMAT, "%s: tensor '%s' has offset %llu, not a multiple of the alignment %u", what,
                           t->name, (unsigned long long)t->offset, (unsigned)g->alignment);
        }
        if (t->offset > (uint64_t)data_size || t->nbytes > data_size - (size_t)t->offset) {
            free(sp);
            return gm_fail(GM_ERR_FORMAT,
                           "%s: tensor '%s' (%zu bytes at offset %llu) runs past the end of the data section (%zu bytes); file truncated?",
                           what, t->name, t->nbytes, (unsigned long long)t->offset, data_size);
        }
        t->data = g->base + data_off + (size_t)t->offset;
        sp[i].off = t->offset, sp[i].nbytes = t->nbytes, sp[i].idx = i;
    }
    qsort(sp, g->n_t, sizeof *sp, cmp_span);
    /* compare with the furthest-reaching earlier non-empty tensor (an empty one must not hide an overlap) */
    const span *prev = NULL;
    for (size_t i = 0; i < g->n_t; i++) {
        if (!sp[i].nbytes) continue;
        if (prev && sp[i].off < prev->off + prev->nbytes) {
            st = gm_fail(GM_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap in the data section", what,
                         g->t[prev->idx].name, g->t[sp[i].idx].name);
            free(sp);
            return st;
        }
        if (!prev || sp[i].off + sp[i].nbytes > prev->off + prev->nbytes) prev = &sp[i];
    }
    free(sp);
    /* Kernels read elements through typed pointers: a buffer placed at an odd address (a caller's
     * buffer, or an alignment below the element size) gets aligned copies. */
    g->copies = calloc(g->n_t ? g->n_t : 1, sizeof *g->copies);
    if (!g->copies) return gm_fail(GM_ERR_NOMEM, "%s: out of memory", what);
    for (size_t i = 0; i < g->n_t; i++) {
        gm_gguf_tensor *t = &g->t[i];
        size_t bb = gm_dtype_info(t->dtype)->block_bytes, need = bb & (~bb + 1);
        if (need > 4) need = 4;
        if (t->nbytes && (uintptr_t)t->data % need) {
            void *p = NULL;
            if (posix_memalign(&p, 64, t->nbytes) != 0) return gm_fail(GM_ERR_NOMEM, "%s: out of memory", what);
            memcpy(p, t->data, t->nbytes);
            g->copies[g->n_copies++] = p;
            t->data = p;
        }
    }
    return GM_OK;
}

static gm_status finish_open(gm_gguf *g, gm_status st, gm_gguf **out) {
    if (st) {
        gm_gguf_close(g);
        return st;
    }
    *out = g;
    return GM_OK;
}

gm_status gm_gguf_parse(const void *buf, size_t size, const char *what, gm_gguf **out) {
    *out = NULL;
    if (!buf && size) return gm_fail(GM_ERR_ARG, "gm_gguf_parse: NULL buffer");
    gm_gguf *g = calloc(1, sizeof *g);
    if (!g) return gm_fail(GM_ERR_NOMEM, "out of memory");
    g->path = strdup(what ? what : "gguf");
    if (!g->path) return finish_open(g, gm_fail(GM_ERR_NOMEM, "out of memory"), out);
    g->base = buf;
    g->size = size;
    return finish_open(g, parse(g, g->path), out);
}

gm_status gm_gguf_open(const char *path, int use_mmap, gm_gguf **out) {
    *out = NULL;
    gm_gguf *g = calloc(1, sizeof *g);
    if (!g) return gm_fail(GM_ERR_NOMEM, "out of memory");
    g->path = strdup(path);
    if (!g->path) return finish_open(g, gm_fail(GM_ERR_NOMEM, "out of memory"), out);
    gm_status st = gm_file_load(path, use_mmap, &g->buf);
    if (st) return finish_open(g, st, out);
    g->base = g->buf.data;
    g->size = g->buf.size;
    return finish_open(g, parse(g, path), out);
}

void gm_gguf_close(gm_gguf *g) {
    if (!g) return;
    for (size_t i = 0; i < g->n_kv; i++) free(g->kv[i].soff);
    for (size_t i = 0; i < g->n_copies; i++) free(g->copies[i]);
    free(g->copies);
    free(g->kv);
    free(g->t);
    free(g->t_name_off);
    free(g->kslots);
    free(g->tslots);
    free(g->arena);
    gm_file_release(&g->buf);
    free(g->path);
    free(g);
}

int gm_gguf_is_gguf_file(const char *path) {
    struct stat sb;
    if (!path || stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) return 0;
    size_t n = strlen(path);
    if (n >= 5 && strcmp(path + n - 5, ".gguf") == 0) return 1;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char m[4];
    int ok = fread(m, 1, 4, f) == 4 && memcmp(m, GGUF_MAGIC, 4) == 0;
    fclose(f);
    return ok;
}

const char *gm_gguf_path(const gm_gguf *g) { return g->path; }
uint32_t gm_gguf_version(const gm_gguf *g) { return g->version; }
uint32_t gm_gguf_alignment(const gm_gguf *g) { return g->alignment; }
size_t gm_gguf_data_offset(const gm_gguf *g) { return g->data_off; }
size_t gm_gguf_n_kv(const gm_gguf *g) { return g->n_kv; }
const char *gm_gguf_key(const gm_gguf *g, size_t i) { return i < g->n_kv ? g->kv[i].key : NULL; }
gm_gguf_type gm_gguf_kv_type(const gm_gguf *g, size_t i) { return g->kv[i].type; }
gm_gguf_type gm_gguf_kv_elem_type(const gm_gguf *g, size_t i) { return g->kv[i].elem; }
uint64_t gm_gguf_kv_count(const gm_gguf *g, size_t i) { return g->kv[i].n; }

int64_t gm_gguf_find_key(const gm_gguf *g, const char *key) {
    const kv_rec *kv = find_kv(g, key);
    return kv ? (int64_t)(kv - g->kv) : -1;
}

int gm_gguf_has(const gm_gguf *g, const char *key) { return find_kv(g, key) != NULL; }

/* ---- typed getters ----------------------------------------------------------------------------- */

static gm_status missing(const gm_gguf *g, const char *key) {
    return gm_fail(GM_ERR_FORMAT, "%s: missing key '%s'", g->path, key);
}

static gm_status wrong_type(const gm_gguf *g, const kv_rec *kv, const char *want) {
    if (kv->type == GM_GGUF_ARRAY)
        return gm_fail(GM_ERR_FORMAT, "%s: key '%s' has the wrong type: an array of %s, expected %s", g->path, kv->key,
                       TYPE_NAME[kv->elem], want);
    return gm_fail(GM_ERR_FORMAT, "%s: key '%s' has the wrong type: %s, expected %s", g->path, kv->key,
                   TYPE_NAME[kv->type], want);
}

/* An integer scalar as a signed 128-bit-free pair: value fits in [lo, hi] checked by the callers. */
static gm_status get_int(const gm_gguf *g, const char *key, const char *want, int *neg, uint64_t *mag) {
    const kv_rec *kv = find_kv(g, key);
    if (!kv) return missing(g, key);
    if (!is_int_type(kv->type)) return wrong_type(g, kv, want);
    size_t n = TYPE_SIZE[kv->type];
    uint64_t v = le(g->base + kv->val, n);
    int is_signed = kv->type == GM_GGUF_I8 || kv->type == GM_GGUF_I16 || kv->type == GM_GGUF_I32 || kv->type == GM_GGUF_I64;
    *neg = 0;
    if (is_signed && (v >> (8 * n - 1)) & 1) { /* negative: magnitude of the two's complement value */
        uint64_t ext = n == 8 ? v : v | (~(uint64_t)0 << (8 * n));
        *neg = 1;
        *mag = ~ext + 1;
    } else {
        *mag = v;
    }
    return GM_OK;
}

static gm_status out_of_range(const gm_gguf *g, const char *key, int neg, uint64_t mag, const char *want) {
    return gm_fail(GM_ERR_FORMAT, "%s: key '%s' = %s%llu is out of range for %s", g->path, key, neg ? "-" : "",
                   (unsigned long long)mag, want);
}

gm_status gm_gguf_get_u32(const gm_gguf *g, const char *key, uint32_t *out) {
    int neg;
    uint64_t mag;
    gm_status st = get_int(g, key, "u32", &neg, &mag);
    if (st) return st;
    if (neg || mag > UINT32_MAX) return out_of_range(g, key, neg, mag, "u32");
    *out = (uint32_t)mag;
    return GM_OK;
}

gm_status gm_gguf_get_i32(const gm_gguf *g, const char *key, int32_t *out) {
    int neg;
    uint64_t mag;
    gm_status st = get_int(g, key, "i32", &neg, &mag);
    if (st) return st;
    if ((!neg && mag > (uint64_t)INT32_MAX) || (neg && mag > (uint64_t)INT32_MAX + 1)) return out_of_range(g, key, neg, mag, "i32");
    *out = neg ? (int32_t)(-(int64_t)mag) : (int32_t)mag;
    return GM_OK;
}

gm_status gm_gguf_get_u64(const gm_gguf *g, const char *key, uint64_t *out) {
    int neg;
    uint64_t mag;
    gm_status st = get_int(g, key, "u64", &neg, &mag);
    if (st) return st;
    if (neg) return out_of_range(g, key, neg, mag, "u64");
    *out = mag;
    return GM_OK;
}

gm_status gm_gguf_get_f32(const gm_gguf *g, const char *key, float *out) {
    const kv_rec *kv = find_kv(g, key);
    if (!kv) return missing(g, key);
    if (kv->type == GM_GGUF_F32) {
        *out = gm_bits_f32((uint32_t)le(g->base + kv->val, 4));
    } else if (kv->type == GM_GGUF_F64) {
        uint64_t u = le(g->base + kv->val, 8);
        double d;
        memcpy(&d, &u, 8);
        *out = (float)d;
    } else {
        return wrong_type(g, kv, "f32");
    }
    return GM_OK;
}

gm_status gm_gguf_get_bool(const gm_gguf *g, const char *key, int *out) {
    const kv_rec *kv = find_kv(g, key);
    if (!kv) return missing(g, key);
    if (kv->type != GM_GGUF_BOOL) return wrong_type(g, kv, "bool");
    *out = g->base[kv->val] != 0;
    return GM_OK;
}

gm_status gm_gguf_get_str(const gm_gguf *g, const char *key, const char **out) {
    const kv_rec *kv = find_kv(g, key);
    if (!kv) return missing(g, key);
    if (kv->type != GM_GGUF_STRING) return wrong_type(g, kv, "string");
    if (!kv->sval) return gm_fail(GM_ERR_FORMAT, "%s: key '%s': the string contains a NUL byte", g->path, key);
    *out = kv->sval;
    return GM_OK;
}

gm_status gm_gguf_get_arr(const gm_gguf *g, const char *key, gm_gguf_type elem, size_t *kv_index, uint64_t *n) {
    const kv_rec *kv = find_kv(g, key);
    if (!kv) return missing(g, key);
    if (kv->type != GM_GGUF_ARRAY || kv->elem != elem) {
        char want[40];
        snprintf(want, sizeof want, "an array of %s", gm_gguf_type_name(elem));
        return wrong_type(g, kv, want);
    }
    *kv_index = (size_t)(kv - g->kv);
    *n = kv->n;
    return GM_OK;
}

float gm_gguf_arr_f32(const gm_gguf *g, size_t k, uint64_t i) {
    return gm_bits_f32((uint32_t)le(g->base + g->kv[k].val + (size_t)i * 4, 4));
}

int32_t gm_gguf_arr_i32(const gm_gguf *g, size_t k, uint64_t i) {
    uint32_t u = (uint32_t)le(g->base + g->kv[k].val + (size_t)i * 4, 4);
    int32_t v;
    memcpy(&v, &u, 4);
    return v;
}

uint32_t gm_gguf_arr_u32(const gm_gguf *g, size_t k, uint64_t i) {
    return (uint32_t)le(g->base + g->kv[k].val + (size_t)i * 4, 4);
}

const char *gm_gguf_arr_str(const gm_gguf *g, size_t k, uint64_t i, size_t *len) {
    size_t off = (size_t)g->kv[k].soff[i];
    *len = (size_t)le(g->base + off, 8);
    return (const char *)g->base + off + 8;
}

const void *gm_gguf_arr_data(const gm_gguf *g, size_t k) { return g->base + g->kv[k].val; }

size_t gm_gguf_n_tensors(const gm_gguf *g) { return g->n_t; }
const gm_gguf_tensor *gm_gguf_tensor_at(const gm_gguf *g, size_t i) { return i < g->n_t ? &g->t[i] : NULL; }

const gm_gguf_tensor *gm_gguf_find_tensor(const gm_gguf *g, const char *name) {
    if (!g->tslots) return NULL;
    size_t n = strlen(name);
    for (size_t i = hash_bytes(name, n) & g->tmask;; i = (i + 1) & g->tmask) {
        int32_t o = g->tslots[i];
        if (o < 0) return NULL;
        if (strcmp(g->t[o].name, name) == 0) return &g->t[o];
    }
}

/* ---- writer ------------------------------------------------------------------------------------ */

typedef struct {
    char *name;
    gm_dtype dt;
    uint32_t ggml_type;
    int ndim;
    int64_t ne[GM_GGUF_MAX_DIMS];
    size_t nbytes;
    uint64_t offset;
    const void *data;
    gm_gguf_fill_fn fill;
    void *ctx;
} wtensor;

struct gm_gguf_writer {
    unsigned char *kv; /* serialized key/value pairs */
    size_t kv_len, kv_cap;
    uint64_t n_kv;
    char **keys;
    size_t n_keys, keys_cap;
    wtensor *t;
    size_t n_t, t_cap;
    uint32_t alignment;
};

gm_status gm_gguf_writer_new(gm_gguf_writer **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return gm_fail(GM_ERR_NOMEM, "out of memory");
    (*out)->alignment = GM_GGUF_DEFAULT_ALIGNMENT;
    return GM_OK;
}

void gm_gguf_writer_free(gm_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_keys; i++) free(w->keys[i]);
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->keys);
    free(w->t);
    free(w->kv);
    free(w);
}

static int kv_reserve(gm_gguf_writer *w, size_t n) {
    size_t need;
    if (!gm_add_size(w->kv_len, n, &need)) return 0;
    if (need <= w->kv_cap) return 1;
    size_t cap = w->kv_cap ? w->kv_cap : 4096;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) return 0;
        cap *= 2;
    }
    unsigned char *p = realloc(w->kv, cap);
    if (!p) return 0;
    w->kv = p;
    w->kv_cap = cap;
    return 1;
}

static void put_le(unsigned char *p, uint64_t v, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void kv_put(gm_gguf_writer *w, uint64_t v, size_t n) { /* space reserved by the caller */
    put_le(w->kv + w->kv_len, v, n);
    w->kv_len += n;
}

static void kv_put_bytes(gm_gguf_writer *w, const void *s, size_t n) {
    if (n) memcpy(w->kv + w->kv_len, s, n);
    w->kv_len += n;
}

/* Check the key is new, remember it and write it with the value type. payload: bytes that will follow. */
static gm_status kv_begin(gm_gguf_writer *w, const char *key, gm_gguf_type type, size_t payload) {
    if (!key || !*key) return gm_fail(GM_ERR_ARG, "GGUF writer: empty key");
    for (size_t i = 0; i < w->n_keys; i++)
        if (strcmp(w->keys[i], key) == 0) return gm_fail(GM_ERR_ARG, "GGUF writer: key '%s' added twice", key);
    if (w->n_keys == w->keys_cap) {
        size_t cap = w->keys_cap ? w->keys_cap * 2 : 32;
        char **k = realloc(w->keys, cap * sizeof *k);
        if (!k) return gm_fail(GM_ERR_NOMEM, "out of memory");
        w->keys = k;
        w->keys_cap = cap;
    }
    size_t kl = strlen(key), need;
    if (!gm_add_size(12 + kl, payload, &need) || !kv_reserve(w, need)) return gm_fail(GM_ERR_NOMEM, "out of memory");
    char *copy = strdup(key);
    if (!copy) return gm_fail(GM_ERR_NOMEM, "out of memory");
    w->keys[w->n_keys++] = copy;
    kv_put(w, kl, 8);
    kv_put_bytes(w, key, kl);
    kv_put(w, (uint64_t)type, 4);
    w->n_kv++;
    return GM_OK;
}

gm_status gm_gguf_add_u32(gm_gguf_writer *w, const char *key, uint32_t v) {
    gm_status st = kv_begin(w, key, GM_GGUF_U32, 4);
    if (!st) kv_put(w, v, 4);
    return st;
}

gm_status gm_gguf_add_i32(gm_gguf_writer *w, const char *key, int32_t v) {
    gm_status st = kv_begin(w, key, GM_GGUF_I32, 4);
    if (!st) kv_put(w, (uint32_t)v, 4);
    return st;
}

gm_status gm_gguf_add_u64(gm_gguf_writer *w, const char *key, uint64_t v) {
    gm_status st = kv_begin(w, key, GM_GGUF_U64, 8);
    if (!st) kv_put(w, v, 8);
    return st;
}

gm_status gm_gguf_add_f32(gm_gguf_writer *w, const char *key, float v) {
    gm_status st = kv_begin(w, key, GM_GGUF_F32, 4);
    if (!st) kv_put(w, gm_f32_bits(v), 4);
    return st;
}

gm_status gm_gguf_add_bool(gm_gguf_writer *w, const char *key, int v) {
    gm_status st = kv_begin(w, key, GM_GGUF_BOOL, 1);
    if (!st) kv_put(w, v ? 1 : 0, 1);
    return st;
}

gm_status gm_gguf_add_str(gm_gguf_writer *w, const char *key, const char *v) {
    size_t n = strlen(v);
    gm_status st = kv_begin(w, key, GM_GGUF_STRING, 8 + n);
    if (!st) {
        kv_put(w, n, 8);
        kv_put_bytes(w, v, n);
    }
    return st;
}

gm_status gm_gguf_add_arr(gm_gguf_writer *w, const char *key, gm_gguf_type elem, const void *data, size_t n) {
    if ((unsigned)elem >= GM_GGUF_TYPE_COUNT || !TYPE_SIZE[elem])
        return gm_fail(GM_ERR_ARG, "GGUF writer: key '%s': arrays of %s need gm_gguf_add_arr_str", key, gm_gguf_type_name(elem));
    size_t es = TYPE_SIZE[elem], bytes;
    if (!gm_mul_size(n, es, &bytes) || bytes > SIZE_MAX - 12) return gm_fail(GM_ERR_NOMEM, "out of memory");
    gm_status st = kv_begin(w, key, GM_GGUF_ARRAY, 12 + bytes);
    if (st) return st;
    kv_put(w, (uint64_t)elem, 4);
    kv_put(w, n, 8);
    const unsigned char *s = data;
    for (size_t i = 0; i < n; i++) { /* host -> little-endian, element by element */
        uint64_t v = 0;
        if (es == 1) v = s[i];
        else if (es == 2) { uint16_t x; memcpy(&x, s + i * 2, 2); v = x; }
        else if (es == 4) { uint32_t x; memcpy(&x, s + i * 4, 4); v = x; }
        else memcpy(&v, s + i * 8, 8);
        kv_put(w, v, es);
    }
    return GM_OK;
}

gm_status gm_gguf_add_arr_str(gm_gguf_writer *w, const char *key, const char *const *strs, const size_t *lens, size_t n) {
    size_t bytes = 12;
    for (size_t i = 0; i < n; i++) {
        size_t l = lens ? lens[i] : strlen(strs[i]);
        if (!gm_add_size(bytes, 8 + l, &bytes)) return gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    gm_status st = kv_begin(w, key, GM_GGUF_ARRAY, bytes);
    if (st) return st;
    kv_put(w, GM_GGUF_STRING, 4);
    kv_put(w, n, 8);
    for (size_t i = 0; i < n; i++) {
        size_t l = lens ? lens[i] : strlen(strs[i]);
        kv_put(w, l, 8);
        kv_put_bytes(w, strs[i], l);
    }
    return GM_OK;
}

gm_status gm_gguf_writer_set_alignment(gm_gguf_writer *w, uint32_t a) {
    if (a == 0 || (a & (a - 1)) || a > GM_GGUF_MAX_ALIGNMENT)
        return gm_fail(GM_ERR_ARG, "GGUF writer: alignment %u must be a power of two up to 1 MiB", (unsigned)a);
    w->alignment = a;
    return GM_OK;
}

static gm_status add_tensor(gm_gguf_writer *w, const char *name, gm_dtype dt, int ndim, const int64_t *ne,
                            const void *data, gm_gguf_fill_fn fill, void *ctx) {
    size_t nl = name ? strlen(name) : 0;
    if (nl == 0 || nl > GM_GGUF_MAX_NAME)
        return gm_fail(GM_ERR_ARG, "GGUF writer: tensor name '%s' must have 1 to %d bytes", name ? name : "", GM_GGUF_MAX_NAME);
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0) return gm_fail(GM_ERR_ARG, "GGUF writer: tensor '%s' added twice", name);
    uint32_t gt;
    const gm_dtype_traits *tr = gm_dtype_info(dt);
    if (!tr || !gm_dtype_to_ggml(dt, &gt))
        return gm_fail(GM_ERR_ARG, "GGUF writer: tensor '%s': dtype has no ggml type", name);
    if (ndim < 1 || ndim > GM_GGUF_MAX_DIMS)
        return gm_fail(GM_ERR_ARG, "GGUF writer: tensor '%s': %d dimensions", name, ndim);
    wtensor t;
    memset(&t, 0, sizeof t);
    size_t n = 1;
    for (int i = 0; i < GM_GGUF_MAX_DIMS; i++) {
        t.ne[i] = i < ndim ? ne[i] : 1;
        if (t.ne[i] < 0 || !gm_mul_size(n, (size_t)t.ne[i], &n))
            return gm_fail(GM_ERR_ARG, "GGUF writer: tensor '%s': bad dimensions", name);
    }
    if ((size_t)t.ne[0] % tr->block_elems || !gm_mul_size(n / tr->block_elems, tr->block_bytes, &t.nbytes))
        return gm_fail(GM_ERR_ARG, "GGUF writer: tensor '%s': rows of %lld are not whole %s blocks", name,
                       (long long)t.ne[0], tr->name);
    if (w->n_t == w->t_cap) {
        size_t cap = w->t_cap ? w->t_cap * 2 : 64;
        wtensor *p = realloc(w->t, cap * sizeof *p);
        if (!p) return gm_fail(GM_ERR_NOMEM, "out of memory");
        w->t = p;
        w->t_cap = cap;
    }
    t.name = strdup(name);
    if (!t.name) return gm_fail(GM_ERR_NOMEM, "out of memory");
    t.dt = dt, t.ggml_type = gt, t.ndim = ndim, t.data = data, t.fill = fill, t.ctx = ctx;
    w->t[w->n_t++] = t;
    return GM_OK;
}

gm_status gm_gguf_add_tensor(gm_gguf_writer *w, const char *name, gm_dtype dt, int ndim, const int64_t *ne,
                             const void *data) {
    if (!data) return gm_fail(GM_ERR_ARG, "GGUF writer: tensor '%s' has no data", name ? name : "");
    return add_tensor(w, name, dt, ndim, ne, data, NULL, NULL);
}

gm_status gm_gguf_add_tensor_fn(gm_gguf_writer *w, const char *name, gm_dtype dt, int ndim, const int64_t *ne,
                                gm_gguf_fill_fn fill, void *ctx) {
    if (!fill) return gm_fail(GM_ERR_ARG, "GGUF writer: tensor '%s' has no fill function", name ? name : "");
    return add_tensor(w, name, dt, ndim, ne, NULL, fill, ctx);
}

typedef struct {
    FILE *f;
    uint64_t written;
    int failed;
} sink;

static void sink_bytes(sink *s, const void *p, size_t n) {
    if (s->failed || !n) return;
    if (fwrite(p, 1, n, s->f) != n) s->failed = errno ? errno : EIO;
    s->written += n;
}

static void sink_le(sink *s, uint64_t v, size_t n) {
    unsigned char b[8];
    put_le(b, v, n);
    sink_bytes(s, b, n);
}

static void sink_pad(sink *s, uint32_t alignment) {
    static const unsigned char zeros[4096];
    uint64_t pad = (alignment - s->written % alignment) % alignment;
    while (pad) {
        size_t k = pad > sizeof zeros ? sizeof zeros : (size_t)pad;
        sink_bytes(s, zeros, k);
        pad -= k;
    }
}

gm_status gm_gguf_writer_write(gm_gguf_writer *w, const char *path) {
    /* general.alignment is written when it differs from the default (llama.cpp reads it back) */
    int have_align = 0;
    for (size_t i = 0; i < w->n_keys; i++) have_align |= strcmp(w->keys[i], "general.alignment") == 0;
    if (w->alignment != GM_GGUF_DEFAULT_ALIGNMENT && !have_align) {
        gm_status st = gm_gguf_add_u32(w, "general.alignment", w->alignment);
        if (st) return st;
    }
    uint64_t off = 0;
    size_t max_fill = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        w->t[i].offset = off;
        off += w->t[i].nbytes + (w->alignment - w->t[i].nbytes % w->alignment) % w->alignment;
        if (w->t[i].fill && w->t[i].nbytes > max_fill) max_fill = w->t[i].nbytes;
    }
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 16);
    if (!tmp) return gm_fail(GM_ERR_NOMEM, "out of memory");
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd >= 0) { /* mkstemp makes 0600: give the file the mode an ordinary create would */
        mode_t um = umask(0);
        umask(um);
        (void)fchmod(fd, 0666 & ~um);
    }
    if (fd < 0) {
        gm_status st = gm_fail(GM_ERR_IO, "%s: cannot create a temporary file next to it: %s", path, strerror(errno));
        free(tmp);
        return st;
    }
    sink s = {fdopen(fd, "wb"), 0, 0};
    void *scratch = NULL;
    gm_status st = GM_OK;
    if (!s.f) {
        st = gm_fail(GM_ERR_IO, "%s: fdopen failed: %s", tmp, strerror(errno));
        close(fd);
        goto fail;
    }
    setvbuf(s.f, NULL, _IOFBF, 1 << 20);
    if (max_fill && posix_memalign(&scratch, 64, max_fill) != 0) {
        scratch = NULL;
        st = gm_fail(GM_ERR_NOMEM, "%s: cannot allocate %zu bytes to convert a tensor", path, max_fill);
        goto fail;
    }
    sink_bytes(&s, GGUF_MAGIC, 4);
    sink_le(&s, 3, 4);
    sink_le(&s, w->n_t, 8);
    sink_le(&s, w->n_kv, 8);
    sink_bytes(&s, w->kv, w->kv_len);
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        size_t nl = strlen(t->name);
        sink_le(&s, nl, 8);
        sink_bytes(&s, t->name, nl);
        sink_le(&s, (uint64_t)t->ndim, 4);
        for (int d = 0; d < t->ndim; d++) sink_le(&s, (uint64_t)t->ne[d], 8);
        sink_le(&s, t->ggml_type, 4);
        sink_le(&s, t->offset, 8);
    }
    sink_pad(&s, w->alignment);
    for (size_t i = 0; i < w->n_t && !s.failed; i++) {
        const wtensor *t = &w->t[i];
        const void *p = t->data;
        if (t->fill) {
            if ((st = t->fill(t->ctx, scratch, t->nbytes))) {
                st = gm_fail_prefix(st, "%s: tensor '%s': ", path, t->name);
                goto fail;
            }
            p = scratch;
        }
        sink_bytes(&s, p, t->nbytes);
        sink_pad(&s, w->alignment);
    }
    if (!s.failed && fflush(s.f) != 0) s.failed = errno ? errno : EIO;
    if (!s.failed && fsync(fileno(s.f)) != 0) s.failed = errno ? errno : EIO;
    if (s.failed) {
        st = gm_fail(GM_ERR_IO, "%s: write failed: %s", path, strerror(s.failed));
        goto fail;
    }
    if (fclose(s.f) != 0) {
        s.f = NULL;
        st = gm_fail(GM_ERR_IO, "%s: close failed: %s", path, strerror(errno));
        goto fail;
    }
    s.f = NULL;
    if (rename(tmp, path) != 0) {
        st = gm_fail(GM_ERR_IO, "%s: cannot rename %s over it: %s", path, tmp, strerror(errno));
        goto fail;
    }
    /* make the rename itself durable */
    char *dir = strdup(path);
    if (dir) {
        char *slash = strrchr(dir, '/');
        if (slash) slash[slash == dir ? 1 : 0] = 0;
        int dfd = open(slash ? dir : ".", O_RDONLY);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
        free(dir);
    }
    free(scratch);
    free(tmp);
    return GM_OK;
fail:
    if (s.f) fclose(s.f);
    unlink(tmp);
    free(scratch);
    free(tmp);
    return st;
}
