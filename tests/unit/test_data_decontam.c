/* Decontamination index: a 13-gram planted from an evaluation item into a training document is found
 * (whatever its case, punctuation and spacing) and reported with its words; 12 shared words are not
 * enough; evaluation files of each format feed the index with their source; compressed files are
 * refused with a message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/error.h"
#include "data/ngram_index.h"
#include "testlib.h"

static const char *EVAL =
    "Which of the following statements best explains why the seasons change on Earth over the course of a year? "
    "The tilt of the axis of rotation relative to the plane of its orbit.";

static void test_planted(void) {
    gm_ngram_index *ix;
    CHECK_OK(gm_ngram_index_new(13, &ix));
    gm_ngram_scratch s = {0};
    CHECK_OK(gm_ngram_index_add_text(ix, &s, EVAL, strlen(EVAL), 3));
    CHECK(gm_ngram_index_count(ix) == 33 - 13 + 1); /* 33 words */

    int found;
    size_t a, b;
    uint16_t src;
    /* 13 consecutive eval words (from "explains" to "year"), planted with other case and punctuation. */
    const char *hit = "Once upon a time a child asked: EXPLAINS WHY the seasons -- change on Earth, over the course of "
                      "a year? Nobody knew.";
    CHECK_OK(gm_ngram_index_match(ix, &s, hit, strlen(hit), &found, &a, &b, &src));
    CHECK(found && src == 3);
    CHECKF(found && b - a == strlen("EXPLAINS WHY the seasons -- change on Earth, over the course of a year") &&
               strncmp(hit + a, "EXPLAINS WHY", 12) == 0,
           "span [%zu, %zu)", a, b);

    /* Only 12 of those words, then a different word: not contaminated. */
    const char *miss = "Once upon a time a child asked: explains why the seasons change on Earth over the course of "
                       "a decade? Nobody knew.";
    CHECK_OK(gm_ngram_index_match(ix, &s, miss, strlen(miss), &found, &a, &b, &src));
    CHECK(!found);
    /* The same 13 words in another order: not an n-gram match. */
    const char *shuffled = "why explains the seasons change on Earth over the course of a year";
    CHECK_OK(gm_ngram_index_match(ix, &s, shuffled, strlen(shuffled), &found, &a, &b, &src));
    CHECK(!found);
    /* Word boundaries matter: "season s" is not "seasons". */
    const char *split = "explains why the season s change on Earth over the course of a year";
    CHECK_OK(gm_ngram_index_match(ix, &s, split, strlen(split), &found, &a, &b, &src));
    CHECK(!found);
    CHECK_OK(gm_ngram_index_match(ix, &s, "", 0, &found, &a, &b, &src));
    CHECK(!found);

    /* With n = 12 the 12-word overlap is found. */
    gm_ngram_index *ix12;
    CHECK_OK(gm_ngram_index_new(12, &ix12));
    CHECK_OK(gm_ngram_index_add_text(ix12, &s, EVAL, strlen(EVAL), 0));
    CHECK_OK(gm_ngram_index_match(ix12, &s, miss, strlen(miss), &found, &a, &b, &src));
    CHECK(found);
    gm_ngram_index_free(ix12);

    /* The first source of an n-gram is kept; the index grows past its first size. */
    CHECK_OK(gm_ngram_index_add_text(ix, &s, EVAL, strlen(EVAL), 9));
    char *big = malloc(200000);
    size_t k = 0;
    for (int i = 0; i < 20000; i++) k += (size_t)sprintf(big + k, "w%d ", i);
    CHECK_OK(gm_ngram_index_add_text(ix, &s, big, k, 4));
    CHECK(gm_ngram_index_count(ix) == 21 + 20000 - 12);
    CHECK_OK(gm_ngram_index_match(ix, &s, hit, strlen(hit), &found, &a, &b, &src));
    CHECK(found && src == 3);
    const char *tail = "x w19987 w19988 w19989 w19990 w19991 w19992 w19993 w19994 w19995 w19996 w19997 w19998 w19999 y";
    CHECK_OK(gm_ngram_index_match(ix, &s, tail, strlen(tail), &found, &a, &b, &src));
    CHECK(found && src == 4);
    free(big);
    gm_ngram_scratch_free(&s);
    gm_ngram_index_free(ix);
    CHECK(gm_ngram_index_new(0, &ix) == GM_ERR_ARG);
}

static void write_file(const char *path, const char *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(fwrite(data, 1, n, f) == n);
    fclose(f);
}

static void test_files(void) {
    char dir[] = "/tmp/gm_decontam_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char p1[128], p2[128], p3[128], p4[128], p5[128];
    snprintf(p1, sizeof p1, "%s/eval.jsonl", dir);
    snprintf(p2, sizeof p2, "%s/eval.json", dir);
    snprintf(p3, sizeof p3, "%s/eval.csv", dir);
    snprintf(p4, sizeof p4, "%s/eval.jsonl.gz", dir);
    snprintf(p5, sizeof p5, "%s/bad.jsonl", dir);
    /* JSONL: the strings of one record are joined, so an n-gram may span the question and its choices. */
    const char *jl = "{\"id\": 1, \"question\": \"What gas do plants take in from the air\", \"choices\": "
                     "{\"text\": [\"carbon dioxide for photosynthesis\", \"oxygen\"]}}\n\n"
                     "{\"id\": 2, \"question\": \"short one\"}\n";
    write_file(p1, jl, strlen(jl));
    const char *js = "[{\"q\": \"alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi\"}, {\"q\": \"x\"}]";
    write_file(p2, js, strlen(js));
    const char *csv = "question,choice0,answer\n\"one two three four five six seven\",eight nine ten eleven twelve thirteen,0\n";
    write_file(p3, csv, strlen(csv));
    write_file(p4, "\x1f\x8b\x08\x00", 4);
    const char *bad = "{\"q\": \"fine\"}\n{\"q\": oops}\n";
    write_file(p5, bad, strlen(bad));

    gm_ngram_index *ix;
    CHECK_OK(gm_ngram_index_new(13, &ix));
    size_t items;
    CHECK_OK(gm_ngram_index_add_file(ix, p1, 0, &items));
    CHECK(items == 2);
    CHECK_OK(gm_ngram_index_add_file(ix, p2, 1, &items));
    CHECK(items == 2);
    CHECK_OK(gm_ngram_index_add_file(ix, p3, 2, &items));
    CHECK(items == 1);

    gm_ngram_scratch s = {0};
    int found;
    size_t a, b;
    uint16_t src = 99;
    const char *t1 = "Q: what gas do plants take in from the air? Carbon dioxide, for photosynthesis!";
    CHECK_OK(gm_ngram_index_match(ix, &s, t1, strlen(t1), &found, &a, &b, &src));
    CHECK(found && src == 0);
    const char *t2 = "greek: Alpha, Beta, Gamma, Delta, Epsilon, Zeta, Eta, Theta, Iota, Kappa, Lambda, Mu, Nu.";
    CHECK_OK(gm_ngram_index_match(ix, &s, t2, strlen(t2), &found, &a, &b, &src));
    CHECK(found && src == 1);
    const char *t3 = "count: one two three four five six seven eight nine ten eleven twelve thirteen";
    CHECK_OK(gm_ngram_index_match(ix, &s, t3, strlen(t3), &found, &a, &b, &src));
    CHECK(found && src == 2);

    CHECK(gm_ngram_index_add_file(ix, p4, 3, &items) == GM_ERR_UNSUPPORTED);
    CHECK(strstr(gm_last_error(), "compressed") && strstr(gm_last_error(), p4));
    CHECK(gm_ngram_index_add_file(ix, p5, 3, &items) == GM_ERR_FORMAT);
    CHECKF(strstr(gm_last_error(), p5) && strstr(gm_last_error(), "line 2"), "%s", gm_last_error());
    char missing[160];
    snprintf(missing, sizeof missing, "%s/none.jsonl", dir);
    CHECK(gm_ngram_index_add_file(ix, missing, 3, &items) == GM_ERR_IO);

    gm_ngram_scratch_free(&s);
    gm_ngram_index_free(ix);
    unlink(p1);
    unlink(p2);
    unlink(p3);
    unlink(p4);
    unlink(p5);
    rmdir(dir);
}

int main(void) {
    test_planted();
    test_files();
    TEST_DONE();
}
