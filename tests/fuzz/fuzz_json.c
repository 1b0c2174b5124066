/* libFuzzer target for the JSON reader: arbitrary bytes → gm_json_parse; an accepted document is walked
 * completely (every string read to its stated length and checked for its NUL, every member looked up by
 * key), so a wrong length or pointer in the tree shows up under ASan. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile unsigned g_acc;

static void walk(const gm_json *v, int depth) {
    if (depth > 300) abort(); /* the parser caps nesting at 256 */
    switch (v->type) {
    case GM_JSON_STRING:
        if (!v->str || v->str[v->len] != 0) abort();
        for (size_t i = 0; i < v->len; i++) g_acc += (unsigned char)v->str[i];
        break;
    case GM_JSON_ARRAY:
        if (v->len && !v->items) abort();
        for (size_t i = 0; i < v->len; i++) walk(&v->items[i], depth + 1);
        break;
    case GM_JSON_OBJECT:
        if (v->len && !v->members) abort();
        for (size_t i = 0; i < v->len; i++) {
            const gm_json_member *m = &v->members[i];
            if (!m->key || m->key[m->key_len] != 0) abort();
            /* lookup finds some member with this key (the first, if duplicated) unless it holds a NUL */
            if (strlen(m->key) == m->key_len && !gm_json_get(v, m->key)) abort();
            walk(&m->value, depth + 1);
        }
        break;
    case GM_JSON_NUMBER:
        if (v->is_int && (double)v->i != v->num && v->i > -(1LL << 53) && v->i < (1LL << 53)) abort();
        break;
    case GM_JSON_BOOL:
        if (v->boolean != 0 && v->boolean != 1) abort();
        break;
    case GM_JSON_NULL:
        break;
    default:
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gm_json_doc *doc = NULL;
    if (gm_json_parse((const char *)data, size, "fuzz.json", &doc) != GM_OK) {
        if (doc) abort();
        return 0;
    }
    walk(gm_json_root(doc), 0);
    gm_json_free(doc);
    return 0;
}
