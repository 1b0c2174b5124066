/* Character classes, lowercasing, normalized words and their n-gram hashes: the one definition of
 * "word" that dedup (MinHash shingles), decontamination (13-grams) and the repetition rules share. */
#include "data/text.h"

#include <stdlib.h>

#include "base/error.h"
#include "base/utf8.h"
#include "data/hash.h"

size_t gm_text_decode(const char *s, size_t n, size_t i, uint32_t *cp) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t k = gm_utf8_decode(s + i, n - i, cp);
    if (k == 0) {
        *cp = 0xFFFD;
        return 1;
    }
    return k;
}

int gm_text_is_space(uint32_t cp) {
    if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

int gm_text_is_punct(uint32_t cp) {
    if (cp < 0x80) return (cp >= 0x21 && cp <= 0x2F) || (cp >= 0x3A && cp <= 0x40) || (cp >= 0x5B && cp <= 0x60) ||
                          (cp >= 0x7B && cp <= 0x7E);
    if (cp >= 0xA1 && cp <= 0xBF) return 1;
    if (cp == 0xD7 || cp == 0xF7) return 1;
    if (cp >= 0x2010 && cp <= 0x2027) return 1;
    if (cp >= 0x2030 && cp <= 0x205E) return 1;
    if (cp >= 0x20A0 && cp <= 0x20CF) return 1; /* currency */
    if (cp >= 0x2100 && cp <= 0x214F) return 1; /* letterlike symbols */
    if (cp >= 0x2190 && cp <= 0x2BFF) return 1; /* arrows, math, technical, box drawing, shapes, dingbats */
    if (cp >= 0x3001 && cp <= 0x303F) return 1;
    if (cp >= 0xFE10 && cp <= 0xFE1F) return 1;
    if (cp >= 0xFE30 && cp <= 0xFE6F) return 1;
    if ((cp >= 0xFF01 && cp <= 0xFF0F) || (cp >= 0xFF1A && cp <= 0xFF20) || (cp >= 0xFF3B && cp <= 0xFF40) ||
        (cp >= 0xFF5B && cp <= 0xFF65))
        return 1;
    if (cp == 0xFFFD) return 1;
    if (cp >= 0x1F000 && cp <= 0x1FAFF) return 1; /* emoji and pictographs */
    return 0;
}

int gm_text_is_digit(uint32_t cp) { return cp >= '0' && cp <= '9'; }

int gm_text_is_alpha(uint32_t cp) {
    if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
    if (cp < 0xC0) return 0;
    if (cp >= 0x0300 && cp <= 0x036F) return 0; /* combining marks: part of a word, not letters */
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    if (cp >= 0xE000 && cp <= 0xF8FF) return 0; /* private use */
    return !gm_text_is_space(cp) && !gm_text_is_punct(cp) && !(cp >= 0x2000 && cp <= 0x206F);
}

uint32_t gm_text_lower(uint32_t cp) {
    if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
    if (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7) return cp + 32;
    if (cp >= 0x100 && cp <= 0x17F) {
        if (cp == 0x130) return 'i';
        if (cp == 0x178) return 0xFF;
        if ((cp <= 0x137 || (cp >= 0x14A && cp <= 0x177)) && !(cp & 1)) return cp + 1;
        if (((cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17E)) && (cp & 1)) return cp + 1;
        return cp;
    }
    if (cp >= 0x391 && cp <= 0x3A9 && cp != 0x3A2) return cp + 32; /* Greek */
    if (cp >= 0x410 && cp <= 0x42F) return cp + 32;                 /* Cyrillic */
    if (cp >= 0x400 && cp <= 0x40F) return cp + 80;
    return cp;
}

static int is_word_cp(uint32_t cp) {
    if (cp < 0x80) return ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') || (cp >= '0' && cp <= '9');
    return gm_text_is_alpha(cp) || (cp >= 0x0300 && cp <= 0x036F);
}

#define FNV_PRIME 0x100000001b3ULL

/* ASCII letters and digits. */
static const unsigned char ascii_word[128] = {
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1,
    ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1,
    ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1,
    ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1,
    ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

gm_status gm_text_words(const char *s, size_t n, gm_words *out) {
    out->n = 0;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80 && !ascii_word[c]) { /* the common case: ASCII space or punctuation */
            i++;
            continue;
        }
        size_t k = gm_text_decode(s, n, i, &cp);
        if (!is_word_cp(cp)) {
            i += k;
            continue;
        }
        size_t start = i;
        uint64_t h = 0xcbf29ce484222325ULL, len = 0;
        while (i < n) {
            c = (unsigned char)s[i];
            if (c < 0x80) {
                if (!ascii_word[c]) break;
                h = (h ^ (uint32_t)((c >= 'A' && c <= 'Z') ? c + 32 : c)) * FNV_PRIME;
                len++;
                i++;
                continue;
            }
            k = gm_text_decode(s, n, i, &cp);
            if (!is_word_cp(cp)) break;
            h = (h ^ gm_text_lower(cp)) * FNV_PRIME;
            len++;
            i += k;
        }
        if (out->n == out->cap) {
            size_t cap = out->cap ? out->cap * 2 : 256;
            gm_word *w = realloc(out->w, cap * sizeof *w);
            if (!w) return gm_fail(GM_ERR_NOMEM, "out of memory splitting a document into words");
            out->w = w;
            out->cap = cap;
        }
        out->w[out->n++] = (gm_word){start, i, gm_mix64(h ^ len)};
    }
    return GM_OK;
}

void gm_words_free(gm_words *w) {
    free(w->w);
    w->w = NULL;
    w->n = w->cap = 0;
}

#define ROLL_P 0x2545f4914f6cdd1dULL /* odd: multiplication by it is a bijection mod 2^64 */

void gm_text_ngram_hashes(const gm_word *w, size_t n, int k, uint64_t *out) {
    if (k < 1 || n < (size_t)k) return;
    uint64_t pk = 1; /* P^(k-1) */
    for (int j = 1; j < k; j++) pk *= ROLL_P;
    uint64_t h = 0;
    for (int j = 0; j < k; j++) h = h * ROLL_P + w[j].hash;
    uint64_t salt = gm_mix64((uint64_t)k);
    out[0] = gm_mix64(h ^ salt);
    for (size_t i = 1; i + (size_t)k <= n; i++) {
        h = (h - w[i - 1].hash * pk) * ROLL_P + w[i + (size_t)k - 1].hash;
        out[i] = gm_mix64(h ^ salt);
    }
}

void gm_text_exact_key(const char *s, size_t n, uint64_t key[2]) {
    gm_hash128 st;
    gm_hash128_init(&st, 0x5eed0fdedb1a5ULL);
    int pending_space = 0, any = 0;
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            i++;
            if (c == ' ' || (c >= 0x09 && c <= 0x0D)) {
                pending_space = any;
                continue;
            }
            if (pending_space) gm_hash128_byte(&st, ' ');
            pending_space = 0;
            any = 1;
            gm_hash128_byte(&st, (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c);
            continue;
        }
        uint32_t cp;
        size_t k = gm_text_decode(s, n, i, &cp);
        if (gm_text_is_space(cp)) {
            pending_space = any;
            i += k;
            continue;
        }
        if (pending_space) gm_hash128_byte(&st, ' ');
        pending_space = 0;
        any = 1;
        if (cp == 0xFFFD && k == 1) {
            gm_hash128_byte(&st, (unsigned char)s[i]); /* keep invalid bytes distinct */
        } else {
            char enc[4];
            size_t m = gm_utf8_encode(gm_text_lower(cp), enc);
            for (size_t j = 0; j < m; j++) gm_hash128_byte(&st, (unsigned char)enc[j]);
        }
        i += k;
    }
    gm_hash128_final(&st, key);
}
