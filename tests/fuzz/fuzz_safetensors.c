/* libFuzzer target for the safetensors header parser: arbitrary bytes go to gm_safetensors_parse, and
 * every tensor of a file it accepts is walked and read in full, so a bad bound shows up under ASan.
 * Invariants of an accepted file are checked too (sizes agree, data inside the buffer or an aligned copy). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile unsigned g_acc; /* keeps the reads of tensor bytes from being optimized away */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gm_st_file *f = NULL;
    if (gm_safetensors_parse(data, size, "fuzz.safetensors", &f) != GM_OK) {
        if (f) abort(); /* a failed parse must not hand out a file */
        return 0;
    }
    size_t n = gm_safetensors_count(f);
    for (size_t i = 0; i < n; i++) {
        const gm_st_tensor *t = gm_safetensors_tensor(f, i);
        if (!t || !t->name || t->ndim < 0 || t->ndim > GM_ST_MAX_DIMS) abort();
        size_t elems = 1;
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0) abort();
            elems *= (size_t)t->shape[d]; /* the parser already proved this cannot overflow */
        }
        if (elems != t->n_elems) abort();
        const uint8_t *p = t->data;
        size_t align = t->dtype == GM_DT_F32 ? 4 : 2;
        if (t->nbytes && ((uintptr_t)p % align)) abort(); /* kernels read typed pointers */
        /* In the caller's buffer: the whole span must lie inside it (copies are checked by ASan). */
        if (p >= data && p < data + size && t->nbytes > (size_t)(data + size - p)) abort();
        for (size_t b = 0; b < t->nbytes; b++) g_acc += p[b];
        if (gm_safetensors_find(f, t->name) != t) abort(); /* names are unique */
    }
    if (gm_safetensors_tensor(f, n) != NULL) abort();
    (void)gm_safetensors_path(f);
    gm_safetensors_close(f);
    return 0;
}
