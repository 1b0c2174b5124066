/* libFuzzer target for the PII scanners: arbitrary bytes -> gm_pii_scan must not crash, and every finding
 * must be in bounds, non-empty, sorted, non-overlapping, of a valid type with its severity and a rule name;
 * redacting with those findings must give exactly the text with each span replaced by "[TYPE]". The input is
 * copied into an exact-size buffer so a read past the end shows up under ASan. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eval/pii.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size ? size : 1);
    if (!text) return 0;
    if (size) memcpy(text, data, size);
    gm_pii_options opt = {0, 0};
    if (size && (data[0] & 0x80)) { /* the first byte picks a detector subset and the local-IP switch */
        opt.types = data[0] & 0x7F ? (uint32_t)(data[0] & 0x7F) << (data[0] & 1 ? 2 : 0) : 0;
        opt.skip_local_ip = data[0] & 1;
    }
    gm_pii_finding *f = NULL;
    size_t n = 0;
    if (gm_pii_scan(text, size, &opt, &f, &n) != GM_OK) abort(); /* only out-of-memory may fail */
    size_t want = size;
    for (size_t i = 0; i < n; i++) {
        if (f[i].start >= f[i].end || f[i].end > size) abort();
        if (i && f[i].start < f[i - 1].end) abort();
        if ((unsigned)f[i].type >= GM_PII_N_TYPES || !f[i].rule) abort();
        if (f[i].severity != gm_pii_type_severity(f[i].type)) abort();
        if (opt.types && !((opt.types >> f[i].type) & 1u)) abort();
        want = want - (f[i].end - f[i].start) + strlen(gm_pii_type_name(f[i].type)) + 2;
    }
    char *red = NULL;
    size_t rlen = 0;
    if (gm_pii_redact(text, size, f, n, &red, &rlen) != GM_OK) abort();
    if (rlen != want || red[rlen] != 0) abort();
    /* the text between findings is copied unchanged */
    size_t pos = 0, w = 0;
    for (size_t i = 0; i <= n; i++) {
        size_t s = i < n ? f[i].start : size;
        if (memcmp(red + w, text + pos, s - pos)) abort();
        w += s - pos;
        if (i < n) {
            const char *name = gm_pii_type_name(f[i].type);
            size_t nl = strlen(name);
            if (red[w] != '[' || memcmp(red + w + 1, name, nl) || red[w + 1 + nl] != ']') abort();
            w += nl + 2;
            pos = f[i].end;
        }
    }
    free(red);
    free(f);
    free(text);
    return 0;
}
