/* libFuzzer target for the encoder: arbitrary bytes encoded with tests/data/tiny.model (first byte picks
 * the flags). Invalid UTF-8 must be rejected with GM_ERR_ARG; valid text must decode back to itself
 * (U+2581 as a space), and token_bytes must agree with decode and with gm_utf8_complete_prefix. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/utf8.h"
#include "gemma.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static gm_tokenizer *g_tok;

static void load_once(void) {
    if (g_tok) return;
    /* ctest runs from the source root; elsewhere find the model next to this source file */
    if (gm_tokenizer_load("tests/data/tiny.model", &g_tok) == GM_OK) return;
    char path[4096];
    const char *f = __FILE__, *slash = strrchr(f, '/');
    snprintf(path, sizeof path, "%.*s/../data/tiny.model", slash ? (int)(slash - f) : 1, slash ? f : ".");
    if (gm_tokenizer_load(path, &g_tok) != GM_OK) {
        fprintf(stderr, "fuzz_encode: cannot load tiny.model: %s\n", gm_last_error());
        abort();
    }
}

static int same_modulo_ws(const char *text, size_t len, const char *back, size_t blen) {
    size_t i = 0, j = 0;
    while (i < len && j < blen) {
        if (len - i >= 3 && !memcmp(text + i, "\xE2\x96\x81", 3) && back[j] == ' ') {
            i += 3;
            j++;
        } else if (text[i] == back[j]) {
            i++;
            j++;
        } else {
            return 0;
        }
    }
    return i == len && j == blen;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    load_once();
    if (size == 0) return 0;
    int flags = data[0] & 3;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    int32_t *ids = NULL;
    size_t n = 0;
    size_t bad = 0;
    int valid = gm_utf8_valid(text, len, &bad);
    gm_status st = gm_tokenizer_encode(g_tok, text, len, flags, &ids, &n);
    if (!valid) {
        if (st != GM_ERR_ARG || ids) abort();
        return 0;
    }
    if (st != GM_OK) abort();
    if ((flags & GM_TOK_ADD_BOS) && (n == 0 || ids[0] != gm_tokenizer_bos(g_tok))) abort();
    char *back = NULL;
    size_t blen = 0;
    if (gm_tokenizer_decode(g_tok, ids, n, &back, &blen) != GM_OK) abort();
    /* control text (<s>, </s>, ...) vanishes with special parsing; otherwise the text must come back */
    if (!(flags & GM_TOK_PARSE_SPECIAL) && !same_modulo_ws(text, len, back, blen)) abort();
    /* streaming: concatenated token bytes equal decode, and every complete prefix is valid UTF-8 */
    char *acc = malloc(blen + 8);
    size_t alen = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = gm_tokenizer_token_bytes(g_tok, ids[i], acc + alen, blen + 8 - alen);
        if (alen + k > blen) abort();
        alen += k;
        size_t cut = gm_utf8_complete_prefix(acc, alen);
        if (cut > alen || !gm_utf8_valid(acc, cut, NULL)) abort();
    }
    if (alen != blen || memcmp(acc, back, blen) != 0) abort();
    if (gm_utf8_complete_prefix(acc, alen) != alen) abort();
    free(acc);
    free(back);
    free(ids);
    return 0;
}
