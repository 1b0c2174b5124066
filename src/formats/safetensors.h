/* Safetensors reader: validates the header of a .safetensors file against the file itself (sizes,
 * offsets, dtypes, overlap) and exposes each tensor's bytes, mapped or read into memory. */
#ifndef GM_FORMATS_SAFETENSORS_H
#define GM_FORMATS_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "gemma.h"
#include "tensor/dtype.h"

#define GM_ST_MAX_DIMS 8

typedef struct gm_st_tensor {
    const char *name;
    gm_dtype dtype;
    int ndim;
    int64_t shape[GM_ST_MAX_DIMS];
    size_t n_elems;
    size_t nbytes;
    const void *data; /* inside the file's mapping or buffer, aligned to the element size */
} gm_st_tensor;

typedef struct gm_st_file gm_st_file;

/* Open and validate. use_mmap: 1 maps the file read-only, 0 reads it into anonymous memory. */
gm_status gm_safetensors_open(const char *path, int use_mmap, gm_st_file **out);
/* Parse and validate from a caller-owned buffer (used by the fuzzer; no copy is made). */
gm_status gm_safetensors_parse(const void *buf, size_t size, const char *what, gm_st_file **out);
void gm_safetensors_close(gm_st_file *f);
size_t gm_safetensors_count(const gm_st_file *f);
const gm_st_tensor *gm_safetensors_tensor(const gm_st_file *f, size_t i);
const gm_st_tensor *gm_safetensors_find(const gm_st_file *f, const char *name);
const char *gm_safetensors_path(const gm_st_file *f);

#endif
