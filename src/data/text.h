/* Text normalization shared by the filters, dedup and decontamination: character classes on code points,
 * simple lowercasing (Latin, Greek, Cyrillic), normalized words (maximal runs of letters and digits,
 * lowercased, punctuation dropped) with their hashes, and rolling word n-gram hashes over them. Invalid
 * UTF-8 bytes are read as U+FFFD (a symbol), one byte at a time, so every input makes progress. */
#ifndef GM_DATA_TEXT_H
#define GM_DATA_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "gemma.h"

/* Decode the character at s[i..n): returns its length (>= 1) and stores the code point. */
size_t gm_text_decode(const char *s, size_t n, size_t i, uint32_t *cp);

int gm_text_is_space(uint32_t cp);  /* ASCII whitespace and the Unicode space separators */
int gm_text_is_punct(uint32_t cp);  /* punctuation and symbols (ASCII, Latin-1, general punctuation, arrows,
                                       math, box drawing, dingbats, CJK and fullwidth punctuation, emoji) */
int gm_text_is_digit(uint32_t cp);  /* ASCII digits */
int gm_text_is_alpha(uint32_t cp);  /* letters: ASCII letters and every other non-space, non-punctuation,
                                       non-control character from U+00C0 up (an approximation of isalpha) */
uint32_t gm_text_lower(uint32_t cp);

/* One normalized word of a text: bytes [start, end) of the original, and the hash of its lowercased
 * form (the same for "The", "the" and "THE"). */
typedef struct gm_word {
    size_t start, end;
    uint64_t hash;
} gm_word;

/* A growable array of words, reused across documents (memory grows to the largest document seen). */
typedef struct gm_words {
    gm_word *w;
    size_t n, cap;
} gm_words;

/* Split s[0..n) into normalized words (runs of letters/digits; everything else separates words).
 * Replaces the contents of `out`. GM_ERR_NOMEM on allocation failure. */
gm_status gm_text_words(const char *s, size_t n, gm_words *out);
void gm_words_free(gm_words *w);

/* Hash of the k-gram of word hashes w[i..i+k) for every i in [0, n - k]: writes n - k + 1 values to out
 * (nothing when n < k). A rolling polynomial hash, then a final mix, so each value costs O(1). */
void gm_text_ngram_hashes(const gm_word *w, size_t n, int k, uint64_t *out);

/* 128-bit key of the text with ASCII/Unicode whitespace runs collapsed to one space, the ends trimmed
 * and letters lowercased: the key of exact deduplication. */
void gm_text_exact_key(const char *s, size_t n, uint64_t key[2]);

#endif
