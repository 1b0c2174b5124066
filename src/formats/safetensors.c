/* Safetensors reader (see safetensors.h). The 8-byte header length, every offset, shape and dtype come
 * from an untrusted file, so each is checked against the file size with overflow-safe arithmetic
 * before any tensor pointer is formed; tensors that overlap each other are rejected. */
#include "formats/safetensors.h"

#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/file.h"
#include "base/json.h"

/* Headers of real checkpoints are well under 1 MB; the format's own reference caps them at 100 MB. */
#define ST_MAX_HEADER ((uint64_t)100 << 20)

struct gm_st_file {
    char *path;
    gm_file_buf buf;  /* owned file contents (empty when parsing a caller's buffer) */
    gm_json_doc *doc; /* names point into it */
    gm_st_tensor *tensors;
    size_t n;
    void **copies; /* tensors whose offset was misaligned get an aligned copy */
    size_t n_copies;
};

static int cmp_by_offset(const void *a, const void *b) {
    const gm_st_tensor *x = a, *y = b;
    uintptr_t px = (uintptr_t)x->data, py = (uintptr_t)y->data;
    return px < py ? -1 : px > py;
}

static gm_status parse(gm_st_file *f, const unsigned char *base, size_t size, const char *what) {
    if (size < 8) return gm_fail(GM_ERR_FORMAT, "%s: truncated safetensors file (%zu bytes, need at least 8)", what, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | base[i];
    if (hlen > size - 8)
        return gm_fail(GM_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%zu bytes)", what,
                       (unsigned long long)hlen, size);
    if (hlen > ST_MAX_HEADER)
        return gm_fail(GM_ERR_FORMAT, "%s: header length %llu is larger than the 100 MB limit", what,
                       (unsigned long long)hlen);
    if (hlen < 2) return gm_fail(GM_ERR_FORMAT, "%s: header too short (%llu bytes)", what, (unsigned long long)hlen);
    gm_status st = gm_json_parse((const char *)base + 8, (size_t)hlen, what, &f->doc);
    if (st) return gm_fail_prefix(st, "%s: in the safetensors header: ", what);
    const gm_json *root = gm_json_root(f->doc);
    if (root->type != GM_JSON_OBJECT) return gm_fail(GM_ERR_FORMAT, "%s: safetensors header is not a JSON object", what);
    const unsigned char *data = base + 8 + hlen;
    size_t data_size = size - 8 - (size_t)hlen;

    f->tensors = calloc(root->len ? root->len : 1, sizeof *f->tensors);
    f->copies = calloc(root->len ? root->len : 1, sizeof *f->copies);
    if (!f->tensors || !f->copies) return gm_fail(GM_ERR_NOMEM, "%s: out of memory", what);
    for (size_t i = 0; i < root->len; i++) {
        const gm_json_member *m = &root->members[i];
        if (strcmp(m->key, "__metadata__") == 0) {
            if (m->value.type != GM_JSON_OBJECT)
                return gm_fail(GM_ERR_FORMAT, "%s: __metadata__ is not an object", what);
            continue;
        }
        const gm_json *v = &m->value;
        if (m->key_len == 0 || strlen(m->key) != m->key_len)
            return gm_fail(GM_ERR_FORMAT, "%s: a tensor has an empty name or a name with a NUL byte", what);
        for (size_t j = 0; j < f->n; j++)
            if (strcmp(f->tensors[j].name, m->key) == 0)
                return gm_fail(GM_ERR_FORMAT, "%s: tensor '%s' is listed twice", what, m->key);
        if (v->type != GM_JSON_OBJECT) return gm_fail(GM_ERR_FORMAT, "%s: tensor '%s': entry is not an object", what, m->key);
        const char *dt = gm_json_get_str(v, "dtype");
        const gm_json *shape = gm_json_get(v, "shape");
        const gm_json *offs = gm_json_get(v, "data_offsets");
        if (!dt) return gm_fail(GM_ERR_FORMAT, "%s: tensor '%s': missing string field 'dtype'", what, m->key);
        if (!shape || shape->type != GM_JSON_ARRAY)
            return gm_fail(GM_ERR_FORMAT, "%s: tensor '%s': missing array field 'shape'", what, m->key);
        if (!offs || offs->type != GM_JSON_ARRAY || offs->len != 2)
            return gm_fail(GM_ERR_FORMAT, "%s: tensor '%s': 'data_offsets' must be an array of two integers", what, m->key);
        gm_st_tensor *t = &f->tensors[f->n];
        t->name = m->key;
        if (!gm_dtype_from_name(dt, &t->dtype))
            return gm_fail(GM_ERR_UNSUPPORTED, "%s: tensor '%s': unsupported dtype '%s' (supported: F32, F16, BF16)", what,
                           m->key, dt);
        if (shape->len > GM_ST_MAX_DIMS)
            return gm_fail(GM_ERR_FORMAT, "%s: tensor '%s': %zu dimensions (at most %d supported)", what, m->key,
                           shape->len, GM_ST_MAX_DIMS);
        t->ndim = (int)shape->len;
        size_t n_elems = 1;
        for (size_t d = 0; d < shape->len; d++) {
            const gm_json *e = &shape->items[d];
            if (e->type != GM_JSON_NUMBER || !e->is_int || e->i < 0)
                return gm_fail(GM_ERR_FORMAT, "%s: tensor '%s': shape[%zu] is not a non-negative integer", what, m->key, d);
            t->shape[d] = e->i;
            if ((uint64_t)e->i > (uint64_t)SIZE_MAX || !gm_mul_size(n_elems, (size_t)e->i, &n_elems))
                return gm_fail(GM_ERR_FORMAT, "%s: tensor '%s': shape dimensions overflow when multiplied", what, m->key);
        }
        const gm_dtype_traits *tr = gm_dtype_info(t->dtype);
        size_t nbytes;
        if (n_elems % tr->block_elems != 0 || !gm_mul_size(n_elems / tr->block_elems, tr->block_bytes, &nbytes))
            return gm_fail(GM_ERR_FORMAT, "%s: tensor '%s': shape x dtype size overflows", what, m->key);
        const gm_json *b = &offs->items[0], *e = &offs->items[1];
        if (b->type != GM_JSON_NUMBER || !b->is_int || e->type != GM_JSON_NUMBER || !e->is_int || b->i < 0 || e->i < 0)
            return gm_fail(GM_ERR_FORMAT, "%s: tensor '%s': data_offsets are not non-negative integers", what, m->key);
        if (b->i > e->i)
            return gm_fail(GM_ERR_FORMAT, "%s: tensor '%s': data_offsets begin %lld is after end %lld", what, m->key,
                           (long long)b->i, (long long)e->i);
        if ((uint64_t)e->i > (uint64_t)data_size)
            return gm_fail(GM_ERR_FORMAT,
                           "%s: tensor '%s': data_offsets [%lld, %lld] run past the data section (%zu bytes); file truncated?",
                           what, m->key, (long long)b->i, (long long)e->i, data_size);
        if ((uint64_t)(e->i - b->i) != (uint64_t)nbytes)
            return gm_fail(GM_ERR_FORMAT, "%s: tensor '%s': shape x dtype is %zu bytes but data_offsets span %lld", what,
                           m->key, nbytes, (long long)(e->i - b->i));
        t->n_elems = n_elems;
        t->nbytes = nbytes;
        t->data = data + b->i;
        f->n++;
    }
    /* Overlap check on the file offsets, before any realignment copy moves pointers. */
    gm_st_tensor *sorted = malloc((f->n ? f->n : 1) * sizeof *sorted);
    if (!sorted) return gm_fail(GM_ERR_NOMEM, "%s: out of memory", what);
    memcpy(sorted, f->tensors, f->n * sizeof *sorted);
    qsort(sorted, f->n, sizeof *sorted, cmp_by_offset);
    /* Compare each tensor with the non-empty one before it in offset order (not merely its neighbour:
     * an empty tensor between two overlapping ones must not hide the overlap). */
    const gm_st_tensor *prev = NULL;
    for (size_t i = 0; i < f->n; i++) {
        if (!sorted[i].nbytes) continue;
        if (prev && (const unsigned char *)sorted[i].data < (const unsigned char *)prev->data + prev->nbytes) {
            gm_status s2 = gm_fail(GM_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap in the file", what,
                                   prev->name, sorted[i].name);
            free(sorted);
            return s2;
        }
        /* Sorted by start, so the furthest-reaching earlier tensor is the one to keep comparing with. */
        if (!prev || (const unsigned char *)sorted[i].data + sorted[i].nbytes >
                         (const unsigned char *)prev->data + prev->nbytes)
            prev = &sorted[i];
    }
    free(sorted);
    /* Kernels read elements through typed pointers: give misaligned tensors an aligned copy. */
    for (size_t i = 0; i < f->n; i++) {
        gm_st_tensor *t = &f->tensors[i];
        size_t align = t->dtype == GM_DT_F32 ? 4 : 2;
        if (((uintptr_t)t->data % align) != 0 && t->nbytes) {
            void *c = NULL;
            if (posix_memalign(&c, 64, t->nbytes) != 0) return gm_fail(GM_ERR_NOMEM, "%s: out of memory", what);
            memcpy(c, t->data, t->nbytes);
            f->copies[f->n_copies++] = c;
            t->data = c;
        }
    }
    return GM_OK;
}

gm_status gm_safetensors_parse(const void *buf, size_t size, const char *what, gm_st_file **out) {
    *out = NULL;
    gm_st_file *f = calloc(1, sizeof *f);
    if (!f) return gm_fail(GM_ERR_NOMEM, "out of memory");
    f->path = strdup(what ? what : "safetensors");
    gm_status st = f->path ? parse(f, buf, size, f->path) : gm_fail(GM_ERR_NOMEM, "out of memory");
    if (st) {
        gm_safetensors_close(f);
        return st;
    }
    *out = f;
    return GM_OK;
}

gm_status gm_safetensors_open(const char *path, int use_mmap, gm_st_file **out) {
    *out = NULL;
    gm_st_file *f = calloc(1, sizeof *f);
    if (!f) return gm_fail(GM_ERR_NOMEM, "out of memory");
    f->path = strdup(path);
    gm_status st = f->path ? gm_file_load(path, use_mmap, &f->buf) : gm_fail(GM_ERR_NOMEM, "out of memory");
    if (!st) st = parse(f, f->buf.data, f->buf.size, path);
    if (st) {
        gm_safetensors_close(f);
        return st;
    }
    *out = f;
    return GM_OK;
}

void gm_safetensors_close(gm_st_file *f) {
    if (!f) return;
    for (size_t i = 0; i < f->n_copies; i++) free(f->copies[i]);
    free(f->copies);
    free(f->tensors);
    gm_json_free(f->doc);
    gm_file_release(&f->buf);
    free(f->path);
    free(f);
}

size_t gm_safetensors_count(const gm_st_file *f) { return f->n; }
const gm_st_tensor *gm_safetensors_tensor(const gm_st_file *f, size_t i) { return i < f->n ? &f->tensors[i] : NULL; }
const char *gm_safetensors_path(const gm_st_file *f) { return f->path; }

const gm_st_tensor *gm_safetensors_find(const gm_st_file *f, const char *name) {
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}
