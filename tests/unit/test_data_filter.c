/* Quality rules of `gemma data filter`: every rule just inside and just past its default threshold (each
 * rule alone, so the document is charged to it), the measured values, the first-failure attribution
 * with all rules on, the C4 line cleaning, and the defaults against the published values. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/filter.h"
#include "testlib.h"

/* ---- a tiny string builder ---------------------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t n, cap;
} sb;

static void sb_add(sb *b, const char *s) {
    size_t k = strlen(s);
    if (b->n + k + 1 > b->cap) {
        b->cap = (b->n + k + 1) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    memcpy(b->p + b->n, s, k + 1);
    b->n += k;
}

static void sb_fmt(sb *b, const char *fmt, ...) {
    char tmp[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    sb_add(b, tmp);
}

static void sb_reset(sb *b) {
    b->n = 0;
    if (b->p) b->p[0] = 0;
}

/* A distinct lowercase filler word of exactly len letters (len 1..30), number i; starts with 'z' when
 * len > 1 so it never equals a pattern word below. */
static void filler(char *out, int i, int len) {
    out[0] = len > 1 ? 'z' : (char)('k' + i % 10);
    for (int k = len - 1; k >= 1; k--) {
        out[k] = (char)('a' + i % 26);
        i /= 26;
    }
    out[len] = 0;
}

/* ---- harness -------------------------------------------------------------------------------------------- */

static gm_filter_scratch *S;

/* Evaluate with only `rule` enabled (at its default threshold unless t is given); returns the failing rule. */
static int only(int rule, const char *text, double *value) {
    gm_filter_params p;
    gm_filter_params_default(&p);
    for (int r = 0; r < GM_RULE_COUNT; r++) p.enabled[r] = 0;
    p.enabled[rule] = 1;
    int failed = -2;
    double m[GM_RULE_COUNT];
    CHECK_OK(gm_filter_check(&p, S, text, strlen(text), &failed, m));
    if (value) *value = m[rule];
    return failed;
}

/* The rule passes `pass_text` and fails `fail_text`, each measured as expected. */
static void boundary(int rule, const char *pass_text, double pass_v, const char *fail_text, double fail_v) {
    const char *name = gm_filter_rule(rule)->name;
    double v = -1;
    int f = only(rule, pass_text, &v);
    CHECKF(f == -1, "%s: the document just inside the threshold failed (value %.6g)", name, v);
    CHECKF(v == pass_v, "%s: inside value %.9g, want %.9g", name, v, pass_v);
    f = only(rule, fail_text, &v);
    CHECKF(f == rule, "%s: the document just past the threshold was not dropped by it (value %.6g, failed %d)", name, v, f);
    CHECKF(v == fail_v, "%s: past value %.9g, want %.9g", name, v, fail_v);
}

/* n copies of word separated by spaces. */
static void words(sb *b, const char *word, int n) {
    for (int i = 0; i < n; i++) {
        if (i) sb_add(b, " ");
        sb_add(b, word);
    }
}

/* ---- Gopher quality rules ------------------------------------------------------------------------------- */

static void test_word_counts(void) {
    sb a = {0}, b = {0};
    words(&a, "word", 50);
    words(&b, "word", 49);
    boundary(GM_RULE_MIN_WORDS, a.p, 50, b.p, 49);
    /* Pure punctuation tokens are not words. */
    sb_add(&b, " -- ... !!");
    CHECK(only(GM_RULE_MIN_WORDS, b.p, NULL) == GM_RULE_MIN_WORDS);
    sb_reset(&a);
    sb_reset(&b);
    words(&a, "ab", 100000);
    words(&b, "ab", 100001);
    boundary(GM_RULE_MAX_WORDS, a.p, 100000, b.p, 100001);
    free(a.p);
    free(b.p);
}

static void test_mean_word_length(void) {
    sb a = {0}, b = {0};
    /* 50 words of 3 letters (with punctuation, which is stripped): mean 3 exactly, kept. */
    words(&a, "cat,", 25);
    sb_add(&a, " ");
    words(&a, "(dog)", 25);
    /* 49 of 3 letters and one of 2: mean 2.98, dropped. */
    words(&b, "cat", 49);
    sb_add(&b, " it");
    boundary(GM_RULE_MIN_MEAN_WORD_LEN, a.p, 3.0, b.p, 149.0 / 50);
    sb_reset(&a);
    sb_reset(&b);
    words(&a, "abcdefghij", 50);
    words(&b, "abcdefghij", 49);
    sb_add(&b, " abcdefghijk");
    boundary(GM_RULE_MAX_MEAN_WORD_LEN, a.p, 10.0, b.p, 501.0 / 50);
    /* Characters are code points, not bytes: "ééé" is 3 characters. */
    sb_reset(&a);
    words(&a, "\xC3\xA9\xC3\xA9\xC3\xA9", 50);
    double v;
    CHECK(only(GM_RULE_MIN_MEAN_WORD_LEN, a.p, &v) == -1);
    CHECK_NEAR(v, 3.0, 0);
    free(a.p);
    free(b.p);
}

static void test_symbol_ratios(void) {
    sb a = {0}, b = {0};
    /* 100 tokens, 10 of them with '#': ratio 0.1 (kept); 11: 0.11 (dropped). */
    words(&a, "#tag", 10);
    sb_add(&a, " ");
    words(&a, "word", 90);
    words(&b, "#tag", 11);
    sb_add(&b, " ");
    words(&b, "word", 89);
    boundary(GM_RULE_MAX_HASH_RATIO, a.p, 0.1, b.p, 0.11);
    sb_reset(&a);
    sb_reset(&b);
    /* Ellipses: "..." and "…" both count. */
    words(&a, "wait...", 5);
    sb_add(&a, " ");
    words(&a, "wait\xE2\x80\xA6", 5);
    sb_add(&a, " ");
    words(&a, "word", 90);
    words(&b, "wait...", 6);
    sb_add(&b, " ");
    words(&b, "wait\xE2\x80\xA6", 5);
    sb_add(&b, " ");
    words(&b, "word", 89);
    boundary(GM_RULE_MAX_ELLIPSIS_RATIO, a.p, 0.1, b.p, 0.11);
    free(a.p);
    free(b.p);
}

/* n lines, the first k of them made by `special`, the rest plain. */
static void lines(sb *b, int n, int k, const char *special, const char *plain) {
    for (int i = 0; i < n; i++) sb_fmt(b, "%s\n", i < k ? special : plain);
}

static void test_line_rules(void) {
    sb a = {0}, b = {0};
    /* Bullets: 9 of 10 lines (0.9) kept, 19 of 21 (0.905) dropped; blank lines do not count. */
    lines(&a, 10, 9, "  \xE2\x80\xA2 item one", "plain line");
    sb_add(&a, "\n\n\n");
    lines(&b, 21, 19, "- item two", "plain line");
    boundary(GM_RULE_MAX_BULLET_LINES, a.p, 0.9, b.p, 19.0 / 21);
    sb_reset(&a);
    sb_reset(&b);
    /* Ellipsis lines: 30 of 100 kept, 31 of 100 dropped. */
    lines(&a, 100, 30, "and then...  ", "a line.");
    lines(&b, 100, 31, "and then\xE2\x80\xA6", "a line.");
    boundary(GM_RULE_MAX_ELLIPSIS_LINES, a.p, 0.3, b.p, 0.31);
    sb_reset(&a);
    sb_reset(&b);
    /* Terminal punctuation (FineWeb: dropped at <= 0.12): 13 of 100 kept, 12 of 100 dropped. */
    lines(&a, 100, 13, "It ended.", "no end here");
    lines(&b, 100, 12, "\"It ended!\"", "no end here");
    boundary(GM_RULE_MIN_PUNCT_LINES, a.p, 0.13, b.p, 0.12);
    free(a.p);
    free(b.p);
}

static void test_alpha_and_stop_words(void) {
    sb a = {0}, b = {0};
    /* 80 of 100 tokens with a letter: kept; 79: dropped. Digits and symbols have no letter. */
    words(&a, "word", 80);
    sb_add(&a, " ");
    words(&a, "1234", 20);
    words(&b, "w0rd", 79);
    sb_add(&b, " ");
    words(&b, "12.5", 11);
    sb_add(&b, " ");
    words(&b, "--", 10);
    boundary(GM_RULE_MIN_ALPHA_WORDS, a.p, 0.8, b.p, 0.79);
    /* Stop words: two occurrences (any case, punctuation stripped) kept; one dropped. */
    boundary(GM_RULE_MIN_STOP_WORDS, "word The, word; word and!", 2, "word word The word thee", 1);
    CHECK(only(GM_RULE_MIN_STOP_WORDS, "the the", NULL) == -1); /* occurrences, not distinct words */
    free(a.p);
    free(b.p);
}

static void test_digits(void) {
    /* Off by default (no published default); enabled with a threshold it drops past it. */
    CHECK(!gm_filter_rule(GM_RULE_MAX_DIGIT_FRAC)->on);
    gm_filter_params p;
    gm_filter_params_default(&p);
    for (int r = 0; r < GM_RULE_COUNT; r++) p.enabled[r] = 0;
    p.enabled[GM_RULE_MAX_DIGIT_FRAC] = 1;
    p.threshold[GM_RULE_MAX_DIGIT_FRAC] = 0.5;
    int f;
    double m[GM_RULE_COUNT];
    CHECK_OK(gm_filter_check(&p, S, "ab 12", 5, &f, m)); /* 2 of 4 non-space characters */
    CHECK(f == -1 && m[GM_RULE_MAX_DIGIT_FRAC] == 0.5);
    CHECK_OK(gm_filter_check(&p, S, "ab 123", 6, &f, m));
    CHECK(f == GM_RULE_MAX_DIGIT_FRAC && m[GM_RULE_MAX_DIGIT_FRAC] == 0.6);
}

/* ---- C4 ----------------------------------------------------------------------------------------------- */

static void test_c4_rules(void) {
    boundary(GM_RULE_MAX_LOREM_IPSUM, "lorem and ipsum are words", 0, "Some text. LOREM Ipsum dolor sit amet.", 1);
    boundary(GM_RULE_MAX_CURLY_BRACKETS, "no brackets (here) [at] all", 0, "int main() { return 0; }", 1);
    /* Sentences: terminal runs followed by space or the end; closing quotes belong to the sentence. */
    boundary(GM_RULE_MIN_SENTENCES, "One. Two! Three? \"Four.\" Five...", 5, "One. Two! Three? Four", 4);
    double v;
    only(GM_RULE_MIN_SENTENCES, "Version 3.14 is out. ... !", &v); /* no break inside 3.14; bare marks count nothing */
    CHECK_NEAR(v, 1, 0);
    only(GM_RULE_MIN_SENTENCES, "", &v);
    CHECK_NEAR(v, 0, 0);
}

static void test_c4_lines(void) {
    const char *in = "  A proper sentence is here.  \n"
                     "no terminal punctuation\n"
                     "Too short.\n"
                     "Please enable JavaScript to continue.\n"
                     "This site uses cookies to work.\n"
                     "And so it goes...\n"
                     "\"Quoted lines end here too,\" she said.\n"
                     "\n"
                     "Last line has three words!";
    char out[512];
    size_t removed;
    size_t n = gm_filter_c4_lines(in, strlen(in), out, &removed);
    out[n] = 0;
    CHECKF(strcmp(out, "A proper sentence is here.\n\"Quoted lines end here too,\" she said.\nLast line has three words!") == 0,
           "got [%s]", out);
    CHECK(removed == 5);
}

/* ---- Gopher repetition ---------------------------------------------------------------------------------- */

/* Pieces separated by sep: `dup` copies of piece A then `uniq` distinct pieces of `ulen` bytes. */
static void pieces(sb *b, const char *sep, const char *A, int dup, int uniq, int ulen) {
    int first = 1;
    for (int i = 0; i < dup; i++) {
        if (!first) sb_add(b, sep);
        sb_add(b, A);
        first = 0;
    }
    for (int i = 0; i < uniq; i++) {
        char w[32];
        filler(w, i, ulen);
        if (!first) sb_add(b, sep);
        sb_add(b, w);
        first = 0;
    }
}

static void test_dup_lines_and_paragraphs(void) {
    sb a = {0}, b = {0};
    /* Count fractions: 10 pieces with 3 repeats of an earlier one (0.3) kept; 4 (0.4) dropped. */
    pieces(&a, "\n\n", "same para", 4, 6, 9);
    pieces(&b, "\n\n", "same para", 5, 5, 9);
    boundary(GM_RULE_MAX_DUP_PARA_FRAC, a.p, 0.3, b.p, 0.4);
    sb_reset(&a);
    sb_reset(&b);
    pieces(&a, "\n", "same line", 4, 6, 9);
    pieces(&b, "\n", "same line", 5, 5, 9);
    boundary(GM_RULE_MAX_DUP_LINE_FRAC, a.p, 0.3, b.p, 0.4);
    /* Character fractions: a 20-byte piece twice plus 60 bytes of distinct pieces = 20/100 (kept);
     * a 21-byte piece: 21/102 (dropped). Separators and surrounding whitespace do not count. */
    sb_reset(&a);
    sb_reset(&b);
    pieces(&a, "\n\n", "abcdefghij klmnopqrs", 2, 3, 20);
    pieces(&b, " \n \n", "abcdefghij klmnopqrst", 2, 3, 20);
    boundary(GM_RULE_MAX_DUP_PARA_CHAR_FRAC, a.p, 0.2, b.p, 21.0 / 102);
    sb_reset(&a);
    sb_reset(&b);
    pieces(&a, "\n", "abcdefghij klmnopqrs", 2, 3, 20);
    pieces(&b, "\r\n", "abcdefghij klmnopqrst", 2, 3, 20);
    boundary(GM_RULE_MAX_DUP_LINE_CHAR_FRAC, a.p, 0.2, b.p, 21.0 / 102);
    free(a.p);
    free(b.p);
}

/* `c` occurrences of the word sequence pat, each followed by a distinct filler word, then more fillers,
 * for `total` bytes of word characters in all (fillers of 4 letters plus one shorter remainder). */
static void ngram_doc(sb *b, const char *const *pat, int np, int c, int total) {
    int plen = 0;
    for (int j = 0; j < np; j++) plen += (int)strlen(pat[j]);
    int rest = total - c * plen, fi = 0;
    char w[16];
    for (int i = 0; i < c; i++) {
        for (int j = 0; j < np; j++) sb_fmt(b, "%s ", pat[j]);
        int len = rest >= 8 || rest == 4 ? 4 : rest;
        filler(w, fi++, len);
        sb_fmt(b, "%s ", w);
        rest -= len;
    }
    while (rest > 0) {
        int len = rest >= 8 || rest == 4 ? 4 : rest;
        filler(w, fi++, len);
        sb_fmt(b, "%s ", w);
        rest -= len;
    }
}

static void test_top_ngrams(void) {
    static const char *const p2[] = {"aa", "bb"}, *const p3[] = {"aa", "bb", "cc"}, *const p4[] = {"aa", "bb", "cc", "dd"};
    sb a = {0}, b = {0};
    /* top 2-gram: 5 x 4 bytes of 100 = 0.20 kept, of 99 dropped. Punctuation and case do not matter. */
    ngram_doc(&a, p2, 2, 5, 100);
    ngram_doc(&b, p2, 2, 5, 99);
    boundary(GM_RULE_MAX_TOP_2GRAM, a.p, 0.2, b.p, 20.0 / 99);
    sb_reset(&a);
    sb_reset(&b);
    ngram_doc(&a, p3, 3, 3, 100);
    ngram_doc(&b, p3, 3, 3, 99);
    boundary(GM_RULE_MAX_TOP_3GRAM, a.p, 0.18, b.p, 18.0 / 99);
    sb_reset(&a);
    sb_reset(&b);
    ngram_doc(&a, p4, 4, 2, 100);
    ngram_doc(&b, p4, 4, 2, 99);
    boundary(GM_RULE_MAX_TOP_4GRAM, a.p, 0.16, b.p, 16.0 / 99);
    /* An n-gram that occurs once is not repetition. */
    double v;
    CHECK(only(GM_RULE_MAX_TOP_2GRAM, "aa bb", &v) == -1);
    CHECK_NEAR(v, 0, 0);
    free(a.p);
    free(b.p);
}

static void test_dup_ngrams(void) {
    /* A run of n distinct words (total 100 * threshold bytes) occurs twice among distinct fillers: the
     * second occurrence's words are duplicate characters. Total 100 bytes: at the threshold, kept; 99:
     * just past it, dropped. */
    static const char *const runs[6][10] = {
        {"aaa", "bbb", "ccc", "ddd", "eee"},                      /* 5 words, 15 bytes */
        {"aa", "bb", "cc", "dd", "eee", "fff"},                   /* 6, 14 */
        {"aa", "bb", "cc", "dd", "ee", "ff", "g"},                /* 7, 13 */
        {"a", "b", "c", "d", "ee", "ff", "gg", "hh"},             /* 8, 12 */
        {"a", "b", "c", "d", "e", "f", "g", "hh", "ii"},          /* 9, 11 */
        {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"},       /* 10, 10 */
    };
    for (int n = 5; n <= 10; n++) {
        int rule = GM_RULE_MAX_DUP_5GRAM + (n - 5), bytes = 20 - n;
        sb a = {0}, b = {0};
        for (int t = 0; t < 2; t++) {
            sb *d = t ? &b : &a;
            int total = t ? 99 : 100, rest = total - 2 * bytes, fi = 0;
            char w[16];
            for (int occ = 0; occ < 2; occ++) {
                for (int j = 0; j < n; j++) sb_fmt(d, "%s ", runs[n - 5][j]);
                filler(w, fi++, 4);
                sb_fmt(d, "%s ", w);
                rest -= 4;
            }
            while (rest > 0) {
                int len = rest >= 8 || rest == 4 ? 4 : rest;
                filler(w, fi++, len);
                sb_fmt(d, "%s ", w);
                rest -= len;
            }
        }
        boundary(rule, a.p, bytes / 100.0, b.p, bytes / 99.0);
        free(a.p);
        free(b.p);
    }
    /* Overlapping repeats count each word once: "x y z w v" x 3 in a row repeats 10 of 15 words. */
    double v;
    only(GM_RULE_MAX_DUP_5GRAM, "x y z w v x y z w v x y z w v", &v);
    CHECK_NEAR(v, 10.0 / 15, 1e-12);
}

/* ---- defaults, attribution, a real document ------------------------------------------------------------- */

static void test_defaults(void) {
    /* The published values (docs/data.md lists the sources). */
    static const struct {
        int rule;
        double v;
    } want[] = {
        {GM_RULE_MIN_WORDS, 50},           {GM_RULE_MAX_WORDS, 100000},     {GM_RULE_MIN_MEAN_WORD_LEN, 3},
        {GM_RULE_MAX_MEAN_WORD_LEN, 10},   {GM_RULE_MAX_HASH_RATIO, 0.1},   {GM_RULE_MAX_ELLIPSIS_RATIO, 0.1},
        {GM_RULE_MAX_BULLET_LINES, 0.9},   {GM_RULE_MAX_ELLIPSIS_LINES, 0.3}, {GM_RULE_MIN_ALPHA_WORDS, 0.8},
        {GM_RULE_MIN_STOP_WORDS, 2},       {GM_RULE_MIN_SENTENCES, 5},      {GM_RULE_MIN_PUNCT_LINES, 0.12},
        {GM_RULE_MAX_DUP_PARA_FRAC, 0.3},  {GM_RULE_MAX_DUP_PARA_CHAR_FRAC, 0.2}, {GM_RULE_MAX_DUP_LINE_FRAC, 0.3},
        {GM_RULE_MAX_DUP_LINE_CHAR_FRAC, 0.2}, {GM_RULE_MAX_TOP_2GRAM, 0.2}, {GM_RULE_MAX_TOP_3GRAM, 0.18},
        {GM_RULE_MAX_TOP_4GRAM, 0.16},     {GM_RULE_MAX_DUP_5GRAM, 0.15},   {GM_RULE_MAX_DUP_6GRAM, 0.14},
        {GM_RULE_MAX_DUP_7GRAM, 0.13},     {GM_RULE_MAX_DUP_8GRAM, 0.12},   {GM_RULE_MAX_DUP_9GRAM, 0.11},
        {GM_RULE_MAX_DUP_10GRAM, 0.10},    {GM_RULE_MAX_LOREM_IPSUM, 0},    {GM_RULE_MAX_CURLY_BRACKETS, 0},
    };
    gm_filter_params p;
    gm_filter_params_default(&p);
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        CHECKF(p.threshold[want[i].rule] == want[i].v, "%s default %g", gm_filter_rule(want[i].rule)->name,
               p.threshold[want[i].rule]);
        CHECK(p.enabled[want[i].rule]);
    }
    for (int r = 0; r < GM_RULE_COUNT; r++) {
        CHECK(gm_filter_rule_find(gm_filter_rule(r)->name) == r);
        CHECK(gm_filter_rule(r)->source && gm_filter_rule(r)->source[0]);
    }
    CHECK(gm_filter_rule_find("max-dup-10gram") == GM_RULE_MAX_DUP_10GRAM);
    CHECK(gm_filter_rule_find("nope") == -1);
}

static void test_real_document_and_order(void) {
    const char *doc =
        "The history of the lighthouse begins with fires lit on hilltops to guide ships home. Later, towers were built "
        "with wood and then with stone, and their keepers had to tend the flame through every night of the year.\n"
        "By the nineteenth century, lenses designed by Augustin Fresnel made the light visible for many miles. These "
        "lenses used rings of glass to bend the light into a narrow beam that swept across the water.\n"
        "Today most lighthouses are automated, and few keepers remain. Still, the towers stand as reminders of a time "
        "when a single lamp could mean the difference between a safe harbor and a wreck on the rocks.";
    gm_filter_params p;
    gm_filter_params_default(&p);
    int f;
    double m[GM_RULE_COUNT];
    CHECK_OK(gm_filter_check(&p, S, doc, strlen(doc), &f, m));
    CHECKF(f == -1, "a clean document failed rule %s", f >= 0 ? gm_filter_rule(f)->name : "?");
    CHECK_OK(gm_filter_check(&p, S, doc, strlen(doc), &f, NULL));
    CHECK(f == -1);
    /* A short document with a curly bracket is charged to the first rule in table order (min_words). */
    CHECK_OK(gm_filter_check(&p, S, "x = { 1 };", 10, &f, NULL));
    CHECK(f == GM_RULE_MIN_WORDS);
    CHECK_OK(gm_filter_check(&p, S, "", 0, &f, m));
    CHECK(f == GM_RULE_MIN_WORDS);
    /* Invalid UTF-8 is measured, never rejected or overrun. */
    const char bad[] = "abc \xff\xfe def \xe2\x82 ghi";
    CHECK_OK(gm_filter_check(&p, S, bad, sizeof bad - 1, &f, m));
    CHECK(f == GM_RULE_MIN_WORDS && m[GM_RULE_MIN_WORDS] == 3); /* the invalid runs are symbols */
}

int main(void) {
    S = gm_filter_scratch_new();
    CHECK(S != NULL);
    test_word_counts();
    test_mean_word_length();
    test_symbol_ratios();
    test_line_rules();
    test_alpha_and_stop_words();
    test_digits();
    test_c4_rules();
    test_c4_lines();
    test_dup_lines_and_paragraphs();
    test_top_ngrams();
    test_dup_ngrams();
    test_defaults();
    test_real_document_and_order();
    gm_filter_scratch_free(S);
    TEST_DONE();
}
