/* libFuzzer target for config.json: bytes → gm_json_parse → gm_config_from_json. An accepted config must
 * satisfy the invariants later code sizes buffers from (positive dims, heads divisible by kv heads, even
 * head_dim, finite scales), so a range check that slips shows up here as an abort. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "base/json.h"
#include "model/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gm_json_doc *doc = NULL;
    if (gm_json_parse((const char *)data, size, "config.json", &doc) != GM_OK) {
        if (doc) abort();
        return 0;
    }
    gm_config c;
    if (gm_config_from_json(gm_json_root(doc), "config.json", &c) == GM_OK) {
        if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.n_layers <= 0 || c.n_heads <= 0 || c.n_kv_heads <= 0 ||
            c.head_dim <= 0 || c.ffn_size <= 0 || c.max_pos <= 0)
            abort();
        if (c.n_heads % c.n_kv_heads || c.head_dim % 2) abort();
        /* products the model allocates from must fit comfortably in 64 bits */
        if ((uint64_t)c.vocab_size * (uint64_t)c.hidden_size > ((uint64_t)1 << 50)) abort();
        if ((uint64_t)c.n_heads * (uint64_t)c.head_dim > ((uint64_t)1 << 31)) abort();
        if (!isfinite(c.rms_eps) || !(c.rms_eps > 0) || !isfinite(c.rope_theta) || !(c.rope_theta > 0) ||
            !isfinite(c.query_scale) || !(c.query_scale > 0) || !isfinite(c.embed_scale) || !(c.embed_scale > 0))
            abort();
        if (c.bos_id < 0 || c.eos_id < 0 || c.pad_id < 0) abort();
    }
    gm_json_free(doc);
    return 0;
}
