/* Document quality rules (Gopher quality + repetition, C4, FineWeb's line-punctuation rule): each rule
 * measures one number on a document and drops it past a threshold. Rules live in one table (name,
 * direction, default, source) so the CLI flags, the statistics and docs/data.md all follow it. A
 * document is charged to the first rule it fails, in table order, so per-rule drops add up. */
#ifndef GM_DATA_FILTER_H
#define GM_DATA_FILTER_H

#include <stddef.h>

#include "gemma.h"

enum {
    GM_RULE_MIN_WORDS,           /* words (whitespace tokens with a non-punctuation character) */
    GM_RULE_MAX_WORDS,
    GM_RULE_MIN_MEAN_WORD_LEN,   /* mean characters per word, leading/trailing punctuation stripped */
    GM_RULE_MAX_MEAN_WORD_LEN,
    GM_RULE_MAX_HASH_RATIO,      /* '#' per token */
    GM_RULE_MAX_ELLIPSIS_RATIO,  /* ("..." + "…") per token */
    GM_RULE_MAX_BULLET_LINES,    /* fraction of non-empty lines starting with a bullet */
    GM_RULE_MAX_ELLIPSIS_LINES,  /* fraction of non-empty lines ending with an ellipsis */
    GM_RULE_MIN_ALPHA_WORDS,     /* fraction of tokens with an alphabetic character */
    GM_RULE_MIN_STOP_WORDS,      /* occurrences of the, be, to, of, and, that, have, with */
    GM_RULE_MAX_DIGIT_FRAC,      /* digits per non-space character (off by default) */
    GM_RULE_MAX_LOREM_IPSUM,     /* occurrences of "lorem ipsum" (any case) */
    GM_RULE_MAX_CURLY_BRACKETS,  /* occurrences of '{' */
    GM_RULE_MIN_SENTENCES,
    GM_RULE_MIN_PUNCT_LINES,     /* fraction of non-empty lines ending in . ! ? " ' ” ’ (drops at <=) */
    GM_RULE_MAX_DUP_PARA_FRAC,   /* repetition: paragraphs (blank-line separated) repeating an earlier one */
    GM_RULE_MAX_DUP_PARA_CHAR_FRAC,
    GM_RULE_MAX_DUP_LINE_FRAC,
    GM_RULE_MAX_DUP_LINE_CHAR_FRAC,
    GM_RULE_MAX_TOP_2GRAM,       /* characters in the most frequent repeated word n-gram */
    GM_RULE_MAX_TOP_3GRAM,
    GM_RULE_MAX_TOP_4GRAM,
    GM_RULE_MAX_DUP_5GRAM,       /* characters in repeated occurrences of word n-grams, each counted once */
    GM_RULE_MAX_DUP_6GRAM,
    GM_RULE_MAX_DUP_7GRAM,
    GM_RULE_MAX_DUP_8GRAM,
    GM_RULE_MAX_DUP_9GRAM,
    GM_RULE_MAX_DUP_10GRAM,
    GM_RULE_COUNT
};

typedef enum {
    GM_CMP_MIN,      /* drop when value <  threshold */
    GM_CMP_MAX,      /* drop when value >  threshold */
    GM_CMP_MIN_EXCL, /* drop when value <= threshold */
} gm_filter_cmp;

typedef struct gm_filter_rule_info {
    const char *name;   /* statistics key; the CLI flag is "--" + name with '_' as '-' */
    gm_filter_cmp cmp;
    double def;         /* default threshold */
    int is_int;
    int on;             /* enabled by default */
    const char *what;
    const char *source; /* where the default comes from */
} gm_filter_rule_info;

const gm_filter_rule_info *gm_filter_rule(int rule);
/* Rule index by name ("min_words" or "min-words"), or -1. */
int gm_filter_rule_find(const char *name);
/* 1 if `value` fails rule `rule` at threshold t. */
int gm_filter_rule_fails(int rule, double value, double t);

typedef struct gm_filter_params {
    double threshold[GM_RULE_COUNT];
    unsigned char enabled[GM_RULE_COUNT];
    int c4_lines; /* apply C4's line cleaning first (changes the text; see gm_filter_c4_lines) */
} gm_filter_params;

void gm_filter_params_default(gm_filter_params *p);

/* Per-thread working memory (grows to the largest document seen). */
typedef struct gm_filter_scratch gm_filter_scratch;
gm_filter_scratch *gm_filter_scratch_new(void);
void gm_filter_scratch_free(gm_filter_scratch *s);

/* Evaluate the enabled rules on text[0..len): *failed = the first failing rule, or -1 if it passes.
 * With metrics non-NULL every rule's measured value is stored there (metrics[GM_RULE_COUNT]) and no rule
 * is skipped; otherwise evaluation stops at the first failure. GM_ERR_NOMEM only. */
gm_status gm_filter_check(const gm_filter_params *p, gm_filter_scratch *s, const char *text, size_t len,
                          int *failed, double *metrics);

/* C4's line cleaning (Raffel et al. 2020, as in TFDS c4_utils): keep a line only if, trimmed, it ends in
 * . ? ! " ' (but not "..."), has at least 3 words, has no word over 1000 characters, and mentions neither
 * "javascript" nor a cookie/terms-of-use phrase. Kept lines are trimmed and joined with '\n' into out
 * (capacity >= len); returns the new length and the number of removed lines in *removed. */
size_t gm_filter_c4_lines(const char *text, size_t len, char *out, size_t *removed);

#endif
