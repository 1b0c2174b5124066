/* Strict UTF-8 (RFC 3629) decoding, validation and the streaming "complete prefix" cut used when
 * printing tokens one at a time: byte-fallback tokens can split a character across several tokens. */
#include "base/utf8.h"

size_t gm_utf8_char_len(unsigned char c) {
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 1;
}

/* Allowed range of the second byte after lead byte c (excludes overlongs, surrogates, > U+10FFFF). */
static void second_range(unsigned char c, unsigned char *lo, unsigned char *hi) {
    *lo = 0x80;
    *hi = 0xBF;
    if (c == 0xE0) *lo = 0xA0;
    if (c == 0xED) *hi = 0x9F;
    if (c == 0xF0) *lo = 0x90;
    if (c == 0xF4) *hi = 0x8F;
}

size_t gm_utf8_decode(const char *s, size_t n, uint32_t *cp) {
    if (n == 0) return 0;
    const unsigned char *u = (const unsigned char *)s;
    unsigned char c = u[0];
    if (c < 0x80) {
        if (cp) *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v;
    unsigned char lo, hi;
    second_range(c, &lo, &hi);
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        v = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        v = c & 0x07;
    } else {
        return 0;
    }
    if (n < len) return 0;
    if (u[1] < lo || u[1] > hi) return 0;
    v = (v << 6) | (u[1] & 0x3F);
    for (size_t i = 2; i < len; i++) {
        if ((u[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (u[i] & 0x3F);
    }
    if (cp) *cp = v;
    return len;
}

int gm_utf8_valid(const char *s, size_t n, size_t *bad_offset) {
    size_t i = 0;
    while (i < n) {
        /* ASCII fast path: most text is ASCII and this keeps validation of 1 MB inputs negligible. */
        if ((unsigned char)s[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = gm_utf8_decode(s + i, n - i, NULL);
        if (k == 0) {
            if (bad_offset) *bad_offset = i;
            return 0;
        }
        i += k;
    }
    return 1;
}

size_t gm_utf8_complete_prefix(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    /* Look back at most 3 bytes for the lead byte of the last character. */
    size_t back = 0;
    while (back < 3 && back < n && (u[n - 1 - back] & 0xC0) == 0x80) back++;
    if (back == n) return n; /* only continuation bytes: garbage, do not hold it */
    size_t lead = n - 1 - back, have = back + 1;
    size_t need = gm_utf8_char_len(u[lead]);
    if (need == 1 || have >= need) return n; /* ASCII, complete, or not a lead byte at all */
    /* Hold the partial character back only if the bytes so far can still become a valid one. */
    if (have >= 2) {
        unsigned char lo, hi;
        second_range(u[lead], &lo, &hi);
        if (u[lead + 1] < lo || u[lead + 1] > hi) return n;
    }
    return lead;
}

size_t gm_utf8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp > 0x10FFFF) return 0;
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}
