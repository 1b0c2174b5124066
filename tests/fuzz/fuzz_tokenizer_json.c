/* libFuzzer target for the HF tokenizer.json reader: arbitrary bytes -> JSON -> vocabulary, merges and
 * added tokens; an accepted tokenizer then encodes and decodes a few fixed texts and every id, so bad
 * lengths, ids or tries in the loaded vocabulary show up under ASan/UBSan. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gemma.h"
#include "tokenizer/vocab.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *k_texts[] = {"", "Hello world", "  \t\n\n<s></s><bos><start_of_turn>x<unk>",
                                "\xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80", "\xE2\x96\x81\xE2\x96\x81 a", "<0x41>"};

/* Same as fuzz_spm_model.c: exercise everything an accepted tokenizer offers. */
static void exercise(const gm_tokenizer *t, const uint8_t *data, size_t size) {
    for (size_t i = 0; i < sizeof k_texts / sizeof k_texts[0]; i++) {
        for (int flags = 0; flags < 4; flags++) {
            int32_t *ids = NULL;
            size_t n = 0;
            gm_status st = gm_tokenizer_encode(t, k_texts[i], strlen(k_texts[i]), flags, &ids, &n);
            if (st != GM_OK) {
                if (ids) abort();
                continue;
            }
            for (size_t k = 0; k < n; k++)
                if (ids[k] < 0 || ids[k] >= gm_tokenizer_vocab_size(t)) abort();
            char *text = NULL;
            size_t len = 0;
            if (gm_tokenizer_decode(t, ids, n, &text, &len) != GM_OK || !text || text[len] != 0) abort();
            free(text);
            free(ids);
        }
    }
    /* the input itself as text (usually invalid UTF-8: must be rejected cleanly) */
    int32_t *ids = NULL;
    size_t n = 0;
    if (gm_tokenizer_encode(t, (const char *)data, size < 256 ? size : 256, 0, &ids, &n) == GM_OK) free(ids);
    char buf[64];
    int vs = gm_tokenizer_vocab_size(t);
    for (int32_t id = 0; id < vs && id < 2048; id++) {
        size_t k = gm_tokenizer_token_bytes(t, id, buf, sizeof buf);
        (void)k;
    }
    (void)gm_tokenizer_piece_id(t, "<bos>");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* the seeds are JSON documents, so mutants mostly keep their leading "{" and take the JSON path */
    if (size == 0 || data[0] != '{') return 0;
    gm_tokenizer *t = NULL;
    if (gm_tokenizer_from_memory(data, size, "fuzz.json", &t) != GM_OK) {
        if (t) abort();
        return 0;
    }
    exercise(t, data, size);
    gm_tokenizer_free(t);
    return 0;
}
