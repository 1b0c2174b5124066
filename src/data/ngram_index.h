/* The decontamination index: 64-bit hashes of every word n-gram (default 13, as in GPT-3's filtering,
 * Brown et al. 2020, App. C) of the evaluation sets, over normalized words (gm_text_words: lowercase,
 * punctuation dropped), each tagged with the evaluation file it came from. Held in memory: 10 bytes per
 * slot at load <= 0.5, so about 20-40 bytes per distinct evaluation n-gram. Two different n-grams share a
 * hash with probability 2^-64 per pair, so false matches are negligible (the matched words are reported
 * and can be checked). Evaluation items shorter than n words contribute nothing. */
#ifndef GM_DATA_NGRAM_INDEX_H
#define GM_DATA_NGRAM_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "data/text.h"
#include "gemma.h"

typedef struct gm_ngram_index gm_ngram_index;

typedef struct gm_ngram_scratch {
    gm_words words;
    uint64_t *h;
    size_t cap;
} gm_ngram_scratch;
void gm_ngram_scratch_free(gm_ngram_scratch *s);

gm_status gm_ngram_index_new(int n, gm_ngram_index **out);
void gm_ngram_index_free(gm_ngram_index *ix);
int gm_ngram_index_n(const gm_ngram_index *ix);
size_t gm_ngram_index_count(const gm_ngram_index *ix); /* distinct n-grams */
size_t gm_ngram_index_bytes(const gm_ngram_index *ix);

/* Add every n-gram of text[0..len) under source `src` (an n-gram already present keeps its first source). */
gm_status gm_ngram_index_add_text(gm_ngram_index *ix, gm_ngram_scratch *s, const char *text, size_t len, uint16_t src);

/* Add an evaluation file: .jsonl (each line a JSON value; all its strings joined by spaces are one item),
 * .json (one document; each element of a top-level array is an item, otherwise the whole document),
 * anything else as plain text (one item). Compressed files are refused (decompress them first).
 * *items receives the number of items read. */
gm_status gm_ngram_index_add_file(gm_ngram_index *ix, const char *path, uint16_t src, size_t *items);

/* Find the first n-gram of text[0..len) present in the index. Returns 1 with the byte span
 * [*start, *end) of its words in text and its source, else 0. Read-only: safe from many threads. */
gm_status gm_ngram_index_match(const gm_ngram_index *ix, gm_ngram_scratch *s, const char *text, size_t len,
                               int *found, size_t *start, size_t *end, uint16_t *src);

#endif
