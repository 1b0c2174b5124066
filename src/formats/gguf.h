/* GGUF (llama.cpp's model file format, versions 2 and 3, little-endian) reader and writer.
 *
 * Layout: "GGUF", u32 version, u64 tensor count, u64 key/value count; the key/value pairs (u64-length
 * string key, u32 value type, value; arrays are u32 element type + u64 count + elements); the tensor
 * infos (name, u32 n_dims, n_dims x i64 dims in ggml order -- innermost first, so {cols, rows} --, u32
 * ggml type, u64 offset into the data section); padding to the alignment (key general.alignment, u32,
 * default 32); the data section, each tensor at an aligned offset.
 *
 * The reader trusts nothing: every count and length is checked against the bytes that remain before
 * anything is allocated, so memory stays proportional to the file size; tensors must have 1-4 dims whose
 * product does not overflow, a type of the dtype table, an aligned offset whose bytes lie inside the
 * data section, and must not overlap; keys and tensor names must be unique. Errors name the file. */
#ifndef GM_FORMATS_GGUF_H
#define GM_FORMATS_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "gemma.h"
#include "tensor/dtype.h"

#define GM_GGUF_MAX_DIMS 4
#define GM_GGUF_DEFAULT_ALIGNMENT 32u
#define GM_GGUF_MAX_ALIGNMENT (1u << 20)
#define GM_GGUF_MAX_NAME 63 /* ggml's GGML_MAX_NAME (64) less the NUL */

/* Value types, numbered as in the GGUF specification (gguf_type). */
typedef enum {
    GM_GGUF_U8 = 0,
    GM_GGUF_I8 = 1,
    GM_GGUF_U16 = 2,
    GM_GGUF_I16 = 3,
    GM_GGUF_U32 = 4,
    GM_GGUF_I32 = 5,
    GM_GGUF_F32 = 6,
    GM_GGUF_BOOL = 7,
    GM_GGUF_STRING = 8,
    GM_GGUF_ARRAY = 9,
    GM_GGUF_U64 = 10,
    GM_GGUF_I64 = 11,
    GM_GGUF_F64 = 12,
    GM_GGUF_TYPE_COUNT = 13,
} gm_gguf_type;

/* "u32", "string", "array", ...; "?" for an unknown value. */
const char *gm_gguf_type_name(gm_gguf_type t);

typedef struct gm_gguf_tensor {
    const char *name;
    gm_dtype dtype;
    uint32_t ggml_type;
    int ndim;                       /* 1..4 */
    int64_t ne[GM_GGUF_MAX_DIMS];   /* ggml order (ne[0] innermost); unused dims are 1 */
    uint64_t offset;                /* from the start of the data section */
    size_t nbytes;
    const void *data;               /* in the file's buffer (or an aligned copy) */
} gm_gguf_tensor;

typedef struct gm_gguf gm_gguf;

/* ---- reading ----------------------------------------------------------------------------------- */

/* Open and validate. use_mmap: 1 maps the file read-only, 0 reads it into anonymous memory. */
gm_status gm_gguf_open(const char *path, int use_mmap, gm_gguf **out);
/* Parse and validate a caller-owned buffer (no copy; it must outlive the handle). `what` names it. */
gm_status gm_gguf_parse(const void *buf, size_t size, const char *what, gm_gguf **out);
void gm_gguf_close(gm_gguf *g);
/* 1 if path is a regular file whose name ends in ".gguf" or whose first bytes are the GGUF magic. */
int gm_gguf_is_gguf_file(const char *path);

const char *gm_gguf_path(const gm_gguf *g);
uint32_t gm_gguf_version(const gm_gguf *g);
uint32_t gm_gguf_alignment(const gm_gguf *g);
size_t gm_gguf_data_offset(const gm_gguf *g); /* file offset of the data section */

/* Key/value pairs, in file order. */
size_t gm_gguf_n_kv(const gm_gguf *g);
const char *gm_gguf_key(const gm_gguf *g, size_t i);
/* Index of a key or -1. */
int64_t gm_gguf_find_key(const gm_gguf *g, const char *key);
int gm_gguf_has(const gm_gguf *g, const char *key);
/* GM_GGUF_ARRAY for arrays; then gm_gguf_kv_elem_type gives the element type and gm_gguf_kv_count the
 * count (1 for scalars). */
gm_gguf_type gm_gguf_kv_type(const gm_gguf *g, size_t i);
gm_gguf_type gm_gguf_kv_elem_type(const gm_gguf *g, size_t i);
uint64_t gm_gguf_kv_count(const gm_gguf *g, size_t i);

/* Typed scalar getters: GM_OK, or GM_ERR_FORMAT naming the file and key when the key is missing or has
 * another type. Integer getters accept any integer type whose value fits; f32 accepts f32 and f64;
 * bool and string accept only their own type. */
gm_status gm_gguf_get_u32(const gm_gguf *g, const char *key, uint32_t *out);
gm_status gm_gguf_get_i32(const gm_gguf *g, const char *key, int32_t *out);
gm_status gm_gguf_get_u64(const gm_gguf *g, const char *key, uint64_t *out);
gm_status gm_gguf_get_f32(const gm_gguf *g, const char *key, float *out);
gm_status gm_gguf_get_bool(const gm_gguf *g, const char *key, int *out);
/* NUL-terminated (a value holding a NUL byte is rejected as malformed). */
gm_status gm_gguf_get_str(const gm_gguf *g, const char *key, const char **out);

/* Arrays: checks that the key is an array whose elements are exactly `elem` (no conversion: a caller
 * expecting f32 scores gets GM_ERR_FORMAT "wrong type" for u8 scores) and returns its index and count. */
gm_status gm_gguf_get_arr(const gm_gguf *g, const char *key, gm_gguf_type elem, size_t *kv_index, uint64_t *n);
/* Element access on an array checked with gm_gguf_get_arr (i < n; unchecked beyond that). */
float gm_gguf_arr_f32(const gm_gguf *g, size_t kv_index, uint64_t i);
int32_t gm_gguf_arr_i32(const gm_gguf *g, size_t kv_index, uint64_t i);
uint32_t gm_gguf_arr_u32(const gm_gguf *g, size_t kv_index, uint64_t i);
/* A string element: bytes (not NUL-terminated) and length. */
const char *gm_gguf_arr_str(const gm_gguf *g, size_t kv_index, uint64_t i, size_t *len);
/* Raw little-endian bytes of a numeric array (possibly unaligned). */
const void *gm_gguf_arr_data(const gm_gguf *g, size_t kv_index);

/* Tensors, in file order. */
size_t gm_gguf_n_tensors(const gm_gguf *g);
const gm_gguf_tensor *gm_gguf_tensor_at(const gm_gguf *g, size_t i);
const gm_gguf_tensor *gm_gguf_find_tensor(const gm_gguf *g, const char *name);

/* ---- writing ----------------------------------------------------------------------------------- */

typedef struct gm_gguf_writer gm_gguf_writer;

/* Produce a tensor's bytes at write time (dst holds nbytes) so converters need not keep every converted
 * tensor in memory. */
typedef gm_status (*gm_gguf_fill_fn)(void *ctx, void *dst, size_t nbytes);

gm_status gm_gguf_writer_new(gm_gguf_writer **out);
void gm_gguf_writer_free(gm_gguf_writer *w);
/* Data alignment (power of two, at most 1 MiB); a value other than 32 is also written as general.alignment. */
gm_status gm_gguf_writer_set_alignment(gm_gguf_writer *w, uint32_t alignment);

/* Keys must be unique (GM_ERR_ARG otherwise). Arrays are copied. */
gm_status gm_gguf_add_u32(gm_gguf_writer *w, const char *key, uint32_t v);
gm_status gm_gguf_add_i32(gm_gguf_writer *w, const char *key, int32_t v);
gm_status gm_gguf_add_u64(gm_gguf_writer *w, const char *key, uint64_t v);
gm_status gm_gguf_add_f32(gm_gguf_writer *w, const char *key, float v);
gm_status gm_gguf_add_bool(gm_gguf_writer *w, const char *key, int v);
gm_status gm_gguf_add_str(gm_gguf_writer *w, const char *key, const char *v);
/* Numeric array of n elements of a fixed-size type, host layout. */
gm_status gm_gguf_add_arr(gm_gguf_writer *w, const char *key, gm_gguf_type elem, const void *data, size_t n);
/* String array: strs[i] of lens[i] bytes (lens NULL: NUL-terminated). */
gm_status gm_gguf_add_arr_str(gm_gguf_writer *w, const char *key, const char *const *strs, const size_t *lens,
                              size_t n);

/* A tensor of dtype dt with ndim dims ne[] in ggml order. `data` (nbytes) is referenced, not copied: it
 * must stay valid until the write. */
gm_status gm_gguf_add_tensor(gm_gguf_writer *w, const char *name, gm_dtype dt, int ndim, const int64_t *ne,
                             const void *data);
/* The same with bytes produced by fill(ctx, dst, nbytes) during the write. */
gm_status gm_gguf_add_tensor_fn(gm_gguf_writer *w, const char *name, gm_dtype dt, int ndim, const int64_t *ne,
                                gm_gguf_fill_fn fill, void *ctx);
/* Write the file atomically: a temporary file in the same directory, fsync, rename over path. */
gm_status gm_gguf_writer_write(gm_gguf_writer *w, const char *path);

#endif
