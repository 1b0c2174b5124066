/* libFuzzer target for the GGUF reader: arbitrary bytes go to gm_gguf_parse; for a file it accepts,
 * every key/value pair is read through the typed getters and every array element is touched, every
 * tensor's bytes are read in full (ASan catches a bad bound), the tokenizer metadata is rebuilt and
 * parsed, and the model loader binds the tensors. Invariants of an accepted file are checked too. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"
#include "model/model_internal.h"
#include "tokenizer/vocab.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile unsigned g_acc; /* keeps the reads from being optimized away */

static void walk_kvs(const gm_gguf *g) {
    for (size_t i = 0; i < gm_gguf_n_kv(g); i++) {
        const char *key = gm_gguf_key(g, i);
        if (!key || !*key || gm_gguf_find_key(g, key) != (int64_t)i) abort(); /* keys are unique */
        gm_gguf_type t = gm_gguf_kv_type(g, i), e = gm_gguf_kv_elem_type(g, i);
        uint32_t u;
        int32_t s;
        uint64_t q;
        float f;
        int b;
        const char *str;
        g_acc += !gm_gguf_get_u32(g, key, &u) + !gm_gguf_get_i32(g, key, &s) + !gm_gguf_get_u64(g, key, &q) +
                 !gm_gguf_get_f32(g, key, &f) + !gm_gguf_get_bool(g, key, &b);
        if (!gm_gguf_get_str(g, key, &str)) g_acc += (unsigned)strlen(str);
        if (t != GM_GGUF_ARRAY) {
            if (gm_gguf_kv_count(g, i) != 1) abort();
            continue;
        }
        size_t k;
        uint64_t n;
        if (gm_gguf_get_arr(g, key, e, &k, &n) || k != i) abort();
        for (uint64_t j = 0; j < n && j < 4096; j++) {
            if (e == GM_GGUF_STRING) {
                size_t len;
                const char *p = gm_gguf_arr_str(g, k, j, &len);
                for (size_t c = 0; c < len; c++) g_acc += (unsigned char)p[c];
            } else if (e == GM_GGUF_F32) {
                g_acc += (unsigned)(gm_gguf_arr_f32(g, k, j) > 0);
            } else if (e == GM_GGUF_I32 || e == GM_GGUF_U32) {
                g_acc += (unsigned)gm_gguf_arr_i32(g, k, j);
            }
        }
        if (e != GM_GGUF_STRING && n) {
            static const size_t sizes[GM_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
            const uint8_t *p = gm_gguf_arr_data(g, k);
            g_acc += p[0] + p[sizes[e] * n - 1];
        }
    }
}

static void walk_tensors(const gm_gguf *g, const uint8_t *data, size_t size) {
    uint32_t align = gm_gguf_alignment(g);
    if (!align || (align & (align - 1)) || align > GM_GGUF_MAX_ALIGNMENT) abort();
    for (size_t i = 0; i < gm_gguf_n_tensors(g); i++) {
        const gm_gguf_tensor *t = gm_gguf_tensor_at(g, i);
        if (!t || !t->name || t->ndim < 1 || t->ndim > GM_GGUF_MAX_DIMS || t->offset % align) abort();
        const gm_dtype_traits *tr = gm_dtype_info(t->dtype);
        if (!tr) abort();
        uint64_t elems = 1;
        for (int d = 0; d < GM_GGUF_MAX_DIMS; d++) {
            if (t->ne[d] < 0 || (d >= t->ndim && t->ne[d] != 1)) abort();
            elems *= (uint64_t)t->ne[d]; /* the reader proved this fits */
        }
        if (elems % tr->block_elems || elems / tr->block_elems * tr->block_bytes != t->nbytes) abort();
        const uint8_t *p = t->data;
        if (p >= data && p < data + size && t->nbytes > (size_t)(data + size - p)) abort();
        for (size_t b = 0; b < t->nbytes; b++) g_acc += p[b];
        if (gm_gguf_find_tensor(g, t->name) != t) abort(); /* names are unique */
    }
    if (gm_gguf_tensor_at(g, gm_gguf_n_tensors(g)) != NULL) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gm_gguf *g = NULL;
    if (gm_gguf_parse(data, size, "fuzz.gguf", &g) != GM_OK) {
        if (g) abort(); /* a failed parse must not hand out a handle */
        return 0;
    }
    walk_kvs(g);
    walk_tensors(g, data, size);
    gm_tokenizer *tok = NULL;
    if (gm_tokenizer_from_gguf(g, &tok) == GM_OK) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (gm_tokenizer_encode(tok, "Hello <bos> w\xC3\xB6rld", 17, GM_TOK_ADD_BOS | GM_TOK_PARSE_SPECIAL, &ids, &n) == GM_OK)
            g_acc += (unsigned)n;
        free(ids);
        gm_tokenizer_free(tok);
    } else if (tok) {
        abort();
    }
    gm_model *m = NULL;
    if (gm_model_from_gguf(g, 0, &m) == GM_OK) {
        const gm_config *c = gm_model_config(m);
        if (c->vocab_size < 1 || c->n_layers < 1 || c->head_dim < 2) abort();
        g_acc += (unsigned)gm_model_n_params(m);
        gm_model_free(m);
    } else if (m) {
        abort();
    }
    gm_gguf_close(g);
    return 0;
}
