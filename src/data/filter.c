/* The quality rules of `gemma data filter`: one table of rules with their published defaults, one cheap
 * pass for the Gopher quality / C4 / FineWeb measures, and a repetition pass (duplicate lines and
 * paragraphs, top and duplicate word n-grams) that only runs when the cheap rules pass. */
#include "data/filter.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "data/hash.h"
#include "data/text.h"

#define GOPHER "Gopher, Rae et al. 2021, App. A.1.1 (quality filters)"
#define GOPHER_REP "Gopher, Rae et al. 2021, Table A1 (repetition)"
#define C4 "C4, Raffel et al. 2020, Sec. 2.2"

static const gm_filter_rule_info RULES[GM_RULE_COUNT] = {
    [GM_RULE_MIN_WORDS] = {"min_words", GM_CMP_MIN, 50, 1, 1, "words", GOPHER},
    [GM_RULE_MAX_WORDS] = {"max_words", GM_CMP_MAX, 100000, 1, 1, "words", GOPHER},
    [GM_RULE_MIN_MEAN_WORD_LEN] = {"min_mean_word_len", GM_CMP_MIN, 3, 0, 1, "mean word length (characters)", GOPHER},
    [GM_RULE_MAX_MEAN_WORD_LEN] = {"max_mean_word_len", GM_CMP_MAX, 10, 0, 1, "mean word length (characters)", GOPHER},
    [GM_RULE_MAX_HASH_RATIO] = {"max_hash_ratio", GM_CMP_MAX, 0.1, 0, 1, "'#' per word", GOPHER},
    [GM_RULE_MAX_ELLIPSIS_RATIO] = {"max_ellipsis_ratio", GM_CMP_MAX, 0.1, 0, 1, "ellipses per word", GOPHER},
    [GM_RULE_MAX_BULLET_LINES] = {"max_bullet_lines", GM_CMP_MAX, 0.9, 0, 1, "fraction of lines starting with a bullet", GOPHER},
    [GM_RULE_MAX_ELLIPSIS_LINES] = {"max_ellipsis_lines", GM_CMP_MAX, 0.3, 0, 1, "fraction of lines ending with an ellipsis", GOPHER},
    [GM_RULE_MIN_ALPHA_WORDS] = {"min_alpha_words", GM_CMP_MIN, 0.8, 0, 1, "fraction of words with a letter", GOPHER},
    [GM_RULE_MIN_STOP_WORDS] = {"min_stop_words", GM_CMP_MIN, 2, 1, 1, "stop words (the be to of and that have with)", GOPHER},
    [GM_RULE_MAX_DIGIT_FRAC] = {"max_digit_frac", GM_CMP_MAX, 1.0, 0, 0, "digits per non-space character", "none published (off by default)"},
    [GM_RULE_MAX_LOREM_IPSUM] = {"max_lorem_ipsum", GM_CMP_MAX, 0, 1, 1, "occurrences of \"lorem ipsum\"", C4},
    [GM_RULE_MAX_CURLY_BRACKETS] = {"max_curly_brackets", GM_CMP_MAX, 0, 1, 1, "occurrences of '{'", C4},
    [GM_RULE_MIN_SENTENCES] = {"min_sentences", GM_CMP_MIN, 5, 1, 1, "sentences", C4},
    [GM_RULE_MIN_PUNCT_LINES] = {"min_punct_lines", GM_CMP_MIN_EXCL, 0.12, 0, 1, "fraction of lines ending in terminal punctuation (drops at <=)",
                                 "FineWeb, Penedo et al. 2024 (line_punct_thr); the doc-level form of C4's line rule"},
    [GM_RULE_MAX_DUP_PARA_FRAC] = {"max_dup_para_frac", GM_CMP_MAX, 0.30, 0, 1, "duplicate paragraph fraction", GOPHER_REP},
    [GM_RULE_MAX_DUP_PARA_CHAR_FRAC] = {"max_dup_para_char_frac", GM_CMP_MAX, 0.20, 0, 1, "duplicate paragraph character fraction", GOPHER_REP},
    [GM_RULE_MAX_DUP_LINE_FRAC] = {"max_dup_line_frac", GM_CMP_MAX, 0.30, 0, 1, "duplicate line fraction", GOPHER_REP},
    [GM_RULE_MAX_DUP_LINE_CHAR_FRAC] = {"max_dup_line_char_frac", GM_CMP_MAX, 0.20, 0, 1, "duplicate line character fraction", GOPHER_REP},
    [GM_RULE_MAX_TOP_2GRAM] = {"max_top_2gram", GM_CMP_MAX, 0.20, 0, 1, "top 2-gram character fraction", GOPHER_REP},
    [GM_RULE_MAX_TOP_3GRAM] = {"max_top_3gram", GM_CMP_MAX, 0.18, 0, 1, "top 3-gram character fraction", GOPHER_REP},
    [GM_RULE_MAX_TOP_4GRAM] = {"max_top_4gram", GM_CMP_MAX, 0.16, 0, 1, "top 4-gram character fraction", GOPHER_REP},
    [GM_RULE_MAX_DUP_5GRAM] = {"max_dup_5gram", GM_CMP_MAX, 0.15, 0, 1, "duplicate 5-gram character fraction", GOPHER_REP},
    [GM_RULE_MAX_DUP_6GRAM] = {"max_dup_6gram", GM_CMP_MAX, 0.14, 0, 1, "duplicate 6-gram character fraction", GOPHER_REP},
    [GM_RULE_MAX_DUP_7GRAM] = {"max_dup_7gram", GM_CMP_MAX, 0.13, 0, 1, "duplicate 7-gram character fraction", GOPHER_REP},
    [GM_RULE_MAX_DUP_8GRAM] = {"max_dup_8gram", GM_CMP_MAX, 0.12, 0, 1, "duplicate 8-gram character fraction", GOPHER_REP},
    [GM_RULE_MAX_DUP_9GRAM] = {"max_dup_9gram", GM_CMP_MAX, 0.11, 0, 1, "duplicate 9-gram character fraction", GOPHER_REP},
    [GM_RULE_MAX_DUP_10GRAM] = {"max_dup_10gram", GM_CMP_MAX, 0.10, 0, 1, "duplicate 10-gram character fraction", GOPHER_REP},
};

const gm_filter_rule_info *gm_filter_rule(int rule) {
    return rule >= 0 && rule < GM_RULE_COUNT ? &RULES[rule] : NULL;
}

int gm_filter_rule_find(const char *name) {
    for (int r = 0; r < GM_RULE_COUNT; r++) {
        const char *a = RULES[r].name, *b = name;
        while (*a && (*a == *b || (*a == '_' && *b == '-'))) {
            a++;
            b++;
        }
        if (!*a && !*b) return r;
    }
    return -1;
}

int gm_filter_rule_fails(int rule, double v, double t) {
    switch (RULES[rule].cmp) {
    case GM_CMP_MIN: return v < t;
    case GM_CMP_MAX: return v > t;
    case GM_CMP_MIN_EXCL: return v <= t;
    }
    return 0;
}

void gm_filter_params_default(gm_filter_params *p) {
    memset(p, 0, sizeof *p);
    for (int r = 0; r < GM_RULE_COUNT; r++) {
        p->threshold[r] = RULES[r].def;
        p->enabled[r] = (unsigned char)RULES[r].on;
    }
}

/* ---- scratch ---------------------------------------------------------------------------------- */

struct gm_filter_scratch {
    gm_words words;
    uint64_t *ngram;     /* n-gram hashes, one per position */
    size_t ngram_cap;
    unsigned char *mark; /* words covered by a repeated n-gram occurrence */
    size_t mark_cap;
    size_t *cand;        /* positions starting a repeated n-gram */
    size_t cand_cap;
    uint64_t *keys;      /* open-addressing table: key 0 = empty */
    uint32_t *vals;
    size_t tab_cap;
};

gm_filter_scratch *gm_filter_scratch_new(void) {
    gm_filter_scratch *s = calloc(1, sizeof *s);
    if (!s) gm_fail(GM_ERR_NOMEM, "out of memory for filter scratch");
    return s;
}

void gm_filter_scratch_free(gm_filter_scratch *s) {
    if (!s) return;
    gm_words_free(&s->words);
    free(s->ngram);
    free(s->mark);
    free(s->cand);
    free(s->keys);
    free(s->vals);
    free(s);
}

/* Make the table hold at least 2 * items slots (a power of two) and clear it. */
static gm_status table_reset(gm_filter_scratch *s, size_t items) {
    size_t cap = 64;
    while (cap < 2 * items + 2) cap *= 2;
    if (cap > s->tab_cap) {
        uint64_t *k = malloc(cap * sizeof *k);
        uint32_t *v = malloc(cap * sizeof *v);
        if (!k || !v) {
            free(k);
            free(v);
            return gm_fail(GM_ERR_NOMEM, "out of memory for filter tables");
        }
        free(s->keys);
        free(s->vals);
        s->keys = k;
        s->vals = v;
        s->tab_cap = cap;
    }
    memset(s->keys, 0, cap * sizeof *s->keys);
    return GM_OK;
}

/* Count one more occurrence of key in a table of `cap` slots; returns the new count. */
static uint32_t table_add(gm_filter_scratch *s, size_t cap, uint64_t key) {
    if (key == 0) key = 1;
    size_t mask = cap - 1, i = (size_t)(key * 0x9e3779b97f4a7c15ULL >> 20) & mask;
    while (s->keys[i] && s->keys[i] != key) i = (i + 1) & mask;
    if (!s->keys[i]) {
        s->keys[i] = key;
        s->vals[i] = 0;
    }
    return ++s->vals[i];
}

static size_t table_cap_for(size_t items) {
    size_t cap = 64;
    while (cap < 2 * items + 2) cap *= 2;
    return cap;
}

/* ---- the cheap pass ---------------------------------------------------------------------------- */

static int is_ascii_space(unsigned char c) { return c == ' ' || (c >= 0x09 && c <= 0x0D); }

static int is_bullet(uint32_t cp) {
    return cp == '-' || cp == '*' || cp == 0x2022 || cp == 0x2023 || cp == 0x25E6 || cp == 0x25AA || cp == 0x25CF ||
           cp == 0x2043;
}

/* Trim whitespace from both ends of s[*a..*b). */
static void trim(const char *s, size_t *a, size_t *b) {
    while (*a < *b) {
        uint32_t cp;
        size_t k = gm_text_decode(s, *b, *a, &cp);
        if (!gm_text_is_space(cp)) break;
        *a += k;
    }
    while (*b > *a) {
        unsigned char c = (unsigned char)s[*b - 1];
        if (is_ascii_space(c)) {
            (*b)--;
            continue;
        }
        if (c < 0x80) break;
        size_t st = *b - 1;
        while (st > *a && ((unsigned char)s[st] & 0xC0) == 0x80 && *b - st < 4) st--;
        uint32_t cp;
        size_t k = gm_text_decode(s, *b, st, &cp);
        if (st + k != *b || !gm_text_is_space(cp)) break;
        *b = st;
    }
}

static int ends_with(const char *s, size_t a, size_t b, const char *suf) {
    size_t n = strlen(suf);
    return b - a >= n && memcmp(s + b - n, suf, n) == 0;
}

static int ends_with_ellipsis(const char *s, size_t a, size_t b) {
    return ends_with(s, a, b, "...") || ends_with(s, a, b, "\xE2\x80\xA6");
}

static int ends_with_terminal(const char *s, size_t a, size_t b) {
    if (b == a) return 0;
    char c = s[b - 1];
    if (c == '.' || c == '!' || c == '?' || c == '"' || c == '\'') return 1;
    return ends_with(s, a, b, "\xE2\x80\x9D") || ends_with(s, a, b, "\xE2\x80\x99"); /* ” ’ */
}

static const char *const STOP_WORDS[] = {"the", "be", "to", "of", "and", "that", "have", "with"};
static const size_t STOP_LEN[] = {3, 2, 2, 2, 3, 4, 4, 4};

typedef struct {
    size_t tokens, words, word_chars, alpha_tokens, stop_words, digits, nonspace;
    size_t hashes, ellipses, lines, bullet_lines, ellipsis_lines, punct_lines, curly, lorem, sentences;
} cheap_counts;

static void count_token(const char *s, size_t a, size_t b, cheap_counts *c) {
    size_t ncp = 0, first = (size_t)-1, last = 0, sa = b, sb = a;
    int alpha = 0;
    for (size_t i = a; i < b;) {
        uint32_t cp;
        size_t k;
        int is_punct;
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x80) { /* ASCII fast path */
            k = 1;
            int letter = (ch | 0x20) >= 'a' && (ch | 0x20) <= 'z', digit = ch >= '0' && ch <= '9';
            alpha |= letter;
            c->digits += (size_t)digit;
            is_punct = !letter && !digit && ch > 0x20 && ch < 0x7F;
        } else {
            k = gm_text_decode(s, b, i, &cp);
            if (gm_text_is_alpha(cp)) alpha = 1;
            is_punct = gm_text_is_punct(cp);
        }
        if (!is_punct) {
            if (first == (size_t)-1) {
                first = ncp;
                sa = i;
            }
            last = ncp;
            sb = i + k;
        }
        ncp++;
        i += k;
    }
    c->nonspace += ncp;
    c->tokens++;
    c->alpha_tokens += (size_t)alpha;
    if (first == (size_t)-1) return; /* all punctuation or symbols: not a word */
    c->words++;
    c->word_chars += last - first + 1;
    size_t n = sb - sa;
    if (n >= 2 && n <= 4) {
        char low[4];
        for (size_t i = 0; i < n; i++) {
            char ch = s[sa + i];
            low[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
        }
        for (size_t w = 0; w < sizeof STOP_WORDS / sizeof *STOP_WORDS; w++)
            if (STOP_LEN[w] == n && memcmp(low, STOP_WORDS[w], n) == 0) {
                c->stop_words++;
                break;
            }
    }
}

static void count_line(const char *s, size_t a, size_t b, cheap_counts *c) {
    trim(s, &a, &b);
    if (a == b) return;
    c->lines++;
    uint32_t cp;
    gm_text_decode(s, b, a, &cp);
    if (is_bullet(cp)) c->bullet_lines++;
    if (ends_with_ellipsis(s, a, b)) c->ellipsis_lines++;
    if (ends_with_terminal(s, a, b)) c->punct_lines++;
}

static int is_sentence_end_char(uint32_t cp) { return cp == '.' || cp == '!' || cp == '?' || cp == 0x2026; }
static int is_closer(uint32_t cp) {
    return cp == '"' || cp == '\'' || cp == ')' || cp == ']' || cp == 0x201D || cp == 0x2019;
}

/* Sentences: runs of . ! ? … (then closing quotes or brackets) followed by whitespace or the end, each
 * after at least one letter or digit; unterminated trailing text with a letter or digit counts as one. */
static size_t count_sentences(const char *s, size_t n) {
    size_t count = 0, i = 0;
    int content = 0;
    while (i < n) {
        uint32_t cp;
        size_t k = gm_text_decode(s, n, i, &cp);
        if (!is_sentence_end_char(cp)) {
            if (gm_text_is_alpha(cp) || gm_text_is_digit(cp)) content = 1;
            i += k;
            continue;
        }
        size_t j = i + k;
        while (j < n) {
            k = gm_text_decode(s, n, j, &cp);
            if (!is_sentence_end_char(cp) && !is_closer(cp)) break;
            j += k;
        }
        int boundary = j >= n;
        if (!boundary) {
            gm_text_decode(s, n, j, &cp);
            boundary = gm_text_is_space(cp);
        }
        if (boundary && content) {
            count++;
            content = 0;
        }
        i = j;
    }
    return count + (size_t)content;
}

static size_t count_lorem(const char *s, size_t n) {
    static const char pat[] = "lorem ipsum";
    size_t m = sizeof pat - 1, count = 0;
    for (size_t i = 0; i + m <= n; i++) {
        if ((s[i] | 0x20) != 'l') continue;
        size_t j = 1;
        while (j < m && ((pat[j] == ' ') ? s[i + j] == ' ' : (s[i + j] | 0x20) == pat[j])) j++;
        if (j == m) count++;
    }
    return count;
}

static void cheap_pass(const char *s, size_t n, cheap_counts *c) {
    memset(c, 0, sizeof *c);
    size_t tok = (size_t)-1, line = 0;
    for (size_t i = 0; i < n;) {
        unsigned char ch = (unsigned char)s[i];
        size_t k = 1;
        int space;
        if (ch < 0x80) {
            space = is_ascii_space(ch);
            if (ch == '#') c->hashes++;
            else if (ch == '{') c->curly++;
            else if (ch == '.' && i + 2 < n && s[i + 1] == '.' && s[i + 2] == '.') {
                c->ellipses++;
                if (tok == (size_t)-1) tok = i;
                i += 3;
                continue;
            }
        } else {
            uint32_t cp;
            k = gm_text_decode(s, n, i, &cp);
            space = gm_text_is_space(cp);
            if (cp == 0x2026) c->ellipses++;
        }
        if (space) {
            if (tok != (size_t)-1) count_token(s, tok, i, c);
            tok = (size_t)-1;
        } else if (tok == (size_t)-1) {
            tok = i;
        }
        if (ch == '\n') {
            count_line(s, line, i, c);
            line = i + 1;
        }
        i += k;
    }
    if (tok != (size_t)-1) count_token(s, tok, n, c);
    count_line(s, line, n, c);
    c->lorem = count_lorem(s, n);
    c->sentences = count_sentences(s, n);
}

static double ratio(size_t a, size_t b) { return b ? (double)a / (double)b : 0.0; }

static void cheap_metrics(const cheap_counts *c, double *m) {
    m[GM_RULE_MIN_WORDS] = m[GM_RULE_MAX_WORDS] = (double)c->words;
    m[GM_RULE_MIN_MEAN_WORD_LEN] = m[GM_RULE_MAX_MEAN_WORD_LEN] = ratio(c->word_chars, c->words);
    m[GM_RULE_MAX_HASH_RATIO] = ratio(c->hashes, c->tokens);
    m[GM_RULE_MAX_ELLIPSIS_RATIO] = ratio(c->ellipses, c->tokens);
    m[GM_RULE_MAX_BULLET_LINES] = ratio(c->bullet_lines, c->lines);
    m[GM_RULE_MAX_ELLIPSIS_LINES] = ratio(c->ellipsis_lines, c->lines);
    m[GM_RULE_MIN_ALPHA_WORDS] = ratio(c->alpha_tokens, c->tokens);
    m[GM_RULE_MIN_STOP_WORDS] = (double)c->stop_words;
    m[GM_RULE_MAX_DIGIT_FRAC] = ratio(c->digits, c->nonspace);
    m[GM_RULE_MAX_LOREM_IPSUM] = (double)c->lorem;
    m[GM_RULE_MAX_CURLY_BRACKETS] = (double)c->curly;
    m[GM_RULE_MIN_SENTENCES] = (double)c->sentences;
    m[GM_RULE_MIN_PUNCT_LINES] = ratio(c->punct_lines, c->lines);
}

/* ---- the repetition pass ----------------------------------------------------------------------- */

/* Duplicate lines (paras = 0: split at '\n') or paragraphs (paras = 1: split at blank lines): count and
 * bytes of the trimmed pieces that repeat an earlier piece, over all non-empty pieces. */
static gm_status dup_pieces(gm_filter_scratch *s, const char *t, size_t n, int paras, double *frac, double *char_frac) {
    size_t pieces = 0;
    for (size_t i = 0; i < n; i++) pieces += t[i] == '\n';
    gm_status st = table_reset(s, pieces + 1);
    if (st) return st;
    size_t cap = table_cap_for(pieces + 1);
    size_t count = 0, dup = 0, bytes = 0, dup_bytes = 0;
    size_t a = 0;
    while (a <= n) {
        /* find the end of this piece */
        size_t b = a, next;
        if (!paras) {
            while (b < n && t[b] != '\n') b++;
            next = b + 1;
        } else {
            for (;;) {
                while (b < n && t[b] != '\n') b++;
                if (b >= n) {
                    next = n + 1;
                    break;
                }
                size_t j = b + 1; /* blank line ahead? */
                while (j < n && t[j] != '\n' && is_ascii_space((unsigned char)t[j])) j++;
                if (j >= n || t[j] == '\n') {
                    next = j + 1;
                    break;
                }
                b = j;
            }
        }
        size_t pa = a, pb = b < n ? b : n;
        trim(t, &pa, &pb);
        if (pb > pa) {
            count++;
            bytes += pb - pa;
            if (table_add(s, cap, gm_hash_bytes(t + pa, pb - pa, 0x11)) > 1) {
                dup++;
                dup_bytes += pb - pa;
            }
        }
        a = next;
    }
    *frac = ratio(dup, count);
    *char_frac = ratio(dup_bytes, bytes);
    return GM_OK;
}

static gm_status ensure_ngram(gm_filter_scratch *s, size_t n) {
    if (n <= s->ngram_cap && n <= s->mark_cap && n <= s->cand_cap) return GM_OK;
    size_t cap = n < 256 ? 256 : n;
    uint64_t *g = realloc(s->ngram, cap * sizeof *g);
    if (!g) return gm_fail(GM_ERR_NOMEM, "out of memory for n-gram hashes");
    s->ngram = g;
    s->ngram_cap = cap;
    unsigned char *m = realloc(s->mark, cap);
    if (!m) return gm_fail(GM_ERR_NOMEM, "out of memory for n-gram marks");
    s->mark = m;
    s->mark_cap = cap;
    size_t *c = realloc(s->cand, cap * sizeof *c);
    if (!c) return gm_fail(GM_ERR_NOMEM, "out of memory for n-gram positions");
    s->cand = c;
    s->cand_cap = cap;
    return GM_OK;
}

static uint64_t ngram_key(const gm_word *w, size_t i, int n) {
    uint64_t h = (uint64_t)n;
    for (int j = 0; j < n; j++) h = h * 0x2545f4914f6cdd1dULL + w[i + (size_t)j].hash;
    h = gm_mix64(h);
    return h ? h : 1;
}

/* Slot of key in a table of cap slots (present or the empty slot where it would go). */
static size_t table_slot(const gm_filter_scratch *s, size_t cap, uint64_t key) {
    size_t mask = cap - 1, i = (size_t)(key * 0x9e3779b97f4a7c15ULL >> 20) & mask;
    while (s->keys[i] && s->keys[i] != key) i = (i + 1) & mask;
    return i;
}

#define SEEN_FLAG 0x80000000u

/* The word n-gram rules, n = 2..10. top n-gram (n <= 4): characters (bytes) of the most frequent n-gram
 * occurring at least twice, times its count. duplicate n-gram (n >= 5): bytes of words inside any
 * occurrence after the first of a repeated n-gram, each word counted once. Both over the bytes of all
 * words. Only positions starting a repeated n-gram can start a repeated (n+1)-gram, so each n looks at
 * the previous n's repeated positions only: the chain costs little more than its first step. */
static gm_status ngram_rules(const gm_filter_params *p, gm_filter_scratch *s, int all, double *m, int *fail) {
    const gm_word *w = s->words.w;
    size_t nw = s->words.n, total = 0, nc = nw;
    for (size_t i = 0; i < nw; i++) {
        total += w[i].end - w[i].start;
        s->cand[i] = i;
    }
    for (int n = 2; n <= 10; n++) {
        int r = n <= 4 ? GM_RULE_MAX_TOP_2GRAM + (n - 2) : GM_RULE_MAX_DUP_5GRAM + (n - 5);
        size_t k = 0; /* candidates long enough for n words */
        for (size_t c = 0; c < nc; c++)
            if (s->cand[c] + (size_t)n <= nw) s->cand[k++] = s->cand[c];
        nc = k;
        m[r] = 0;
        if (nc < 2 || total == 0) {
            nc = 0;
            continue;
        }
        gm_status st = table_reset(s, nc);
        if (st) return st;
        size_t cap = table_cap_for(nc);
        for (size_t c = 0; c < nc; c++) {
            uint64_t key = s->ngram[c] = ngram_key(w, s->cand[c], n);
            size_t slot = table_slot(s, cap, key);
            if (!s->keys[slot]) {
                s->keys[slot] = key;
                s->vals[slot] = 0;
            }
            s->vals[slot]++;
        }
        size_t keep = 0, best = 0, dup = 0;
        if (n >= 5) memset(s->mark, 0, nw);
        for (size_t c = 0; c < nc; c++) {
            size_t slot = table_slot(s, cap, s->ngram[c]), i = s->cand[c];
            uint32_t count = s->vals[slot] & ~SEEN_FLAG;
            if (count < 2) continue;
            s->cand[keep++] = i;
            if (n <= 4) {
                size_t len = 0;
                for (int j = 0; j < n; j++) len += w[i + (size_t)j].end - w[i + (size_t)j].start;
                if ((size_t)count * len > best) best = (size_t)count * len;
            } else if (!(s->vals[slot] & SEEN_FLAG)) {
                s->vals[slot] |= SEEN_FLAG; /* the first occurrence is not a duplicate */
            } else {
                for (size_t j = i; j < i + (size_t)n; j++)
                    if (!s->mark[j]) {
                        s->mark[j] = 1;
                        dup += w[j].end - w[j].start;
                    }
            }
        }
        m[r] = ratio(n <= 4 ? best : dup, total);
        nc = keep;
        if (*fail < 0 && p->enabled[r] && gm_filter_rule_fails(r, m[r], p->threshold[r])) {
            *fail = r;
            if (!all) return GM_OK;
        }
    }
    return GM_OK;
}

static int any_enabled(const gm_filter_params *p, int from, int to, const double *metrics) {
    if (metrics) return 1;
    for (int r = from; r <= to; r++)
        if (p->enabled[r]) return 1;
    return 0;
}

/* First enabled rule in [from, to] that m fails, or -1. */
static int first_fail(const gm_filter_params *p, const double *m, int from, int to) {
    for (int r = from; r <= to; r++)
        if (p->enabled[r] && gm_filter_rule_fails(r, m[r], p->threshold[r])) return r;
    return -1;
}

gm_status gm_filter_check(const gm_filter_params *p, gm_filter_scratch *s, const char *text, size_t len,
                          int *failed, double *metrics) {
    double local[GM_RULE_COUNT] = {0}, *m = metrics ? metrics : local;
    int all = metrics != NULL, fail = -1;
    *failed = -1;
    cheap_counts c;
    cheap_pass(text, len, &c);
    cheap_metrics(&c, m);
    fail = first_fail(p, m, 0, GM_RULE_MIN_PUNCT_LINES);
    if (fail >= 0 && !all) {
        *failed = fail;
        return GM_OK;
    }
    gm_status st;
    if (any_enabled(p, GM_RULE_MAX_DUP_PARA_FRAC, GM_RULE_MAX_DUP_PARA_CHAR_FRAC, metrics)) {
        st = dup_pieces(s, text, len, 1, &m[GM_RULE_MAX_DUP_PARA_FRAC], &m[GM_RULE_MAX_DUP_PARA_CHAR_FRAC]);
        if (st) return st;
    }
    if (any_enabled(p, GM_RULE_MAX_DUP_LINE_FRAC, GM_RULE_MAX_DUP_LINE_CHAR_FRAC, metrics)) {
        st = dup_pieces(s, text, len, 0, &m[GM_RULE_MAX_DUP_LINE_FRAC], &m[GM_RULE_MAX_DUP_LINE_CHAR_FRAC]);
        if (st) return st;
    }
    if (fail < 0) fail = first_fail(p, m, GM_RULE_MAX_DUP_PARA_FRAC, GM_RULE_MAX_DUP_LINE_CHAR_FRAC);
    if (fail >= 0 && !all) {
        *failed = fail;
        return GM_OK;
    }
    if (any_enabled(p, GM_RULE_MAX_TOP_2GRAM, GM_RULE_MAX_DUP_10GRAM, metrics)) {
        st = gm_text_words(text, len, &s->words);
        if (st) return st;
        st = ensure_ngram(s, s->words.n + 1);
        if (st) return st;
        st = ngram_rules(p, s, all, m, &fail);
        if (st) return st;
    }
    *failed = fail;
    return GM_OK;
}

/* ---- C4 line cleaning --------------------------------------------------------------------------- */

static int contains_ci(const char *s, size_t a, size_t b, const char *pat) {
    size_t m = strlen(pat);
    for (size_t i = a; i + m <= b; i++) {
        size_t j = 0;
        while (j < m && (char)(((unsigned char)s[i + j] >= 'A' && (unsigned char)s[i + j] <= 'Z') ? s[i + j] + 32 : s[i + j]) == pat[j]) j++;
        if (j == m) return 1;
    }
    return 0;
}

static const char *const POLICY[] = {"terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies",
                                     "use cookies"};

static int c4_keep_line(const char *s, size_t a, size_t b) {
    if (a == b) return 0;
    if (!(s[b - 1] == '.' || s[b - 1] == '?' || s[b - 1] == '!' || s[b - 1] == '"' || s[b - 1] == '\'')) return 0;
    if (ends_with(s, a, b, "...")) return 0;
    size_t words = 0, wlen = 0;
    int in = 0;
    for (size_t i = a; i < b;) {
        uint32_t cp;
        size_t k = gm_text_decode(s, b, i, &cp);
        if (gm_text_is_space(cp)) {
            in = 0;
        } else {
            if (!in) {
                words++;
                wlen = 0;
            }
            in = 1;
            if (++wlen > 1000) return 0;
        }
        i += k;
    }
    if (words < 3) return 0;
    if (contains_ci(s, a, b, "javascript")) return 0;
    for (size_t p = 0; p < sizeof POLICY / sizeof *POLICY; p++)
        if (contains_ci(s, a, b, POLICY[p])) return 0;
    return 1;
}

size_t gm_filter_c4_lines(const char *text, size_t len, char *out, size_t *removed) {
    size_t o = 0, a = 0, rm = 0;
    while (a <= len) {
        size_t b = a;
        while (b < len && text[b] != '\n') b++;
        size_t pa = a, pb = b;
        trim(text, &pa, &pb);
        if (pb > pa) {
            if (c4_keep_line(text, pa, pb)) {
                if (o) out[o++] = '\n';
                memmove(out + o, text + pa, pb - pa);
                o += pb - pa;
            } else {
                rm++;
            }
        }
        a = b + 1;
    }
    *removed = rm;
    return o;
}
