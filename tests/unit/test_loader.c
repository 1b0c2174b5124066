/* The training data loader on synthetic sources whose every token tells where it came from (source
 * base + stream position), so each returned row can be traced to its source and window and checked token
 * for token: determinism, data-parallel splits, restarts, epochs without repeats, the held-out slice never
 * drawn, mixture proportions (binomial 4-sigma) and stage switches, and refused mixture specs. */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "data/shards.h"
#include "testlib.h"
#include "train/loader.h"

#define VOCAB (1u << 20)
#define BOS 2
#define EOS 1
#define T 16

static char g_root[64];

typedef struct {
    const char *name;
    int32_t base;  /* content token at stream position p is base + p */
    int n_content; /* one document: <bos> base+1 ... base+n <eos> */
    uint64_t n_tokens, n_windows, n_val, n_train;
} src_spec;

/* books: 2002 tokens -> 125 windows of 17 at stride 16: 2 held out, 123 train.
 * web:   6002 tokens -> 375 windows: 4 held out, 371 train. */
static src_spec SRC[2] = {{"books", 100000, 2000, 0, 0, 0, 0}, {"web", 300000, 6000, 0, 0, 0, 0}};

static void rm_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) rm_tree(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static gm_status write_source(const char *dir, uint32_t vocab, int32_t base, int n, uint64_t shard_tokens) {
    gm_shard_writer *w;
    gm_status st = gm_shard_writer_open(dir, vocab, BOS, EOS, shard_tokens, &w);
    if (st) return st;
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    for (int i = 0; i < n; i++) ids[i] = base + 1 + i;
    st = gm_shard_writer_add_doc(w, ids, (size_t)n);
    free(ids);
    if (st) {
        gm_shard_writer_abort(w);
        return st;
    }
    return gm_shard_writer_close(w, NULL);
}

/* Which source and window a row is, after checking every token of it against the stream; -1 if it is
 * not a well-formed window of either source. */
static int trace_row(const int32_t *row, int *src, uint64_t *window) {
    int32_t x = row[1];
    int j = x >= SRC[1].base ? 1 : 0;
    const src_spec *s = &SRC[j];
    int64_t p1 = (int64_t)x - s->base; /* stream position of row[1] */
    if (p1 < 1 || (p1 - 1) % T != 0) return -1;
    uint64_t w = (uint64_t)(p1 - 1) / T;
    if (w >= s->n_windows) return -1;
    for (int t = 0; t <= T; t++) {
        uint64_t p = w * T + (uint64_t)t;
        int32_t want = p == 0 ? BOS : p == (uint64_t)s->n_content + 1 ? EOS : s->base + (int32_t)p;
        if (row[t] != want) return -1;
    }
    *src = j;
    *window = w;
    return 0;
}

static gm_loader *open_loader(const char *data, const char *mix, int batch, int accum, int rank, int size,
                              uint64_t seed) {
    gm_loader_opts o = {data, mix, T, batch, accum, rank, size, seed};
    gm_loader *l = NULL;
    gm_status st = gm_loader_open(&o, &l);
    CHECKF(st == GM_OK, "open %s mix %s: %s", data, mix ? mix : "(default)", gm_last_error());
    return l;
}

static void test_open_describe(const char *data, const char *books) {
    gm_loader *l = open_loader(data, NULL, 4, 1, 0, 1, 1);
    if (!l) return;
    CHECK(gm_loader_vocab_size(l) == (int)VOCAB);
    CHECK(gm_loader_val_count(l) == (int)(SRC[0].n_val + SRC[1].n_val));
    char buf[1024];
    gm_loader_describe(l, buf, sizeof buf);
    printf("describe: %s\n", buf);
    CHECKF(strstr(buf, "2 sources") && strstr(buf, "books 2002 tok 123+2") && strstr(buf, "web 6002 tok 371+4") &&
               strstr(buf, "494 train + 6 val"),
           "%s", buf);
    char tiny[8];
    gm_loader_describe(l, tiny, sizeof tiny); /* truncates safely */
    CHECK(strlen(tiny) == 7);
    gm_loader_free(l);
    /* One shard directory is one source, named after it. */
    l = open_loader(books, NULL, 4, 1, 0, 1, 1);
    if (!l) return;
    gm_loader_describe(l, buf, sizeof buf);
    CHECKF(strstr(buf, "1 source,") && strstr(buf, "books:1.000@0"), "%s", buf);
    CHECK(gm_loader_val_count(l) == 2);
    gm_loader_free(l);
}

/* Same options, same batches; another seed, other batches; every row a real window. */
static void test_determinism(const char *data) {
    enum { B = 4, A = 2, STEPS = 6 };
    gm_loader *l1 = open_loader(data, NULL, B, A, 0, 1, 42), *l2 = open_loader(data, NULL, B, A, 0, 1, 42);
    gm_loader *l3 = open_loader(data, NULL, B, A, 0, 1, 43);
    if (!l1 || !l2 || !l3) goto out;
    int32_t x[B * (T + 1)], y[B * (T + 1)], z[B * (T + 1)];
    int same = 1, differ = 0, bad_rows = 0;
    for (int s = 0; s < STEPS; s++)
        for (int m = 0; m < A; m++) {
            CHECK_OK(gm_loader_batch(l1, s, m, x));
            CHECK_OK(gm_loader_batch(l2, s, m, y));
            CHECK_OK(gm_loader_batch(l3, s, m, z));
            same &= memcmp(x, y, sizeof x) == 0;
            differ += memcmp(x, z, sizeof x) != 0;
            for (int i = 0; i < B; i++) {
                int j;
                uint64_t w;
                bad_rows += trace_row(x + i * (T + 1), &j, &w) != 0;
            }
        }
    CHECK(same);
    CHECKF(differ == STEPS * A, "seed 43 equals seed 42 on %d of %d micro-batches", STEPS * A - differ, STEPS * A);
    CHECK(bad_rows == 0);
    /* Bad arguments. */
    CHECK(gm_loader_batch(l1, 0, A, x) == GM_ERR_ARG);
    CHECK(gm_loader_batch(l1, -1, 0, x) == GM_ERR_ARG);
    CHECK(gm_loader_val(l1, gm_loader_val_count(l1), 1, x) == GM_ERR_ARG);
out:
    gm_loader_free(l1);
    gm_loader_free(l2);
    gm_loader_free(l3);
}

/* dp_size 1 x batch 4 == ranks 0 and 1 of dp_size 2 x batch 2, concatenated; also with a mixture switch. */
static void test_data_parallel(const char *data, const char *mix) {
    enum { A = 3, STEPS = 12 };
    gm_loader *one = open_loader(data, mix, 4, A, 0, 1, 7);
    gm_loader *r0 = open_loader(data, mix, 2, A, 0, 2, 7), *r1 = open_loader(data, mix, 2, A, 1, 2, 7);
    gm_loader *q[4];
    for (int r = 0; r < 4; r++) q[r] = open_loader(data, mix, 1, A, r, 4, 7);
    int ok = one && r0 && r1 && q[0] && q[1] && q[2] && q[3], mismatch = 0;
    for (int s = 0; ok && s < STEPS; s++)
        for (int m = 0; m < A; m++) {
            int32_t a[4 * (T + 1)], b[4 * (T + 1)], c[4 * (T + 1)];
            CHECK_OK(gm_loader_batch(one, s, m, a));
            CHECK_OK(gm_loader_batch(r0, s, m, b));
            CHECK_OK(gm_loader_batch(r1, s, m, b + 2 * (T + 1)));
            for (int r = 0; r < 4; r++) CHECK_OK(gm_loader_batch(q[r], s, m, c + r * (T + 1)));
            mismatch += memcmp(a, b, sizeof a) != 0;
            mismatch += memcmp(a, c, sizeof a) != 0;
        }
    CHECKF(ok && mismatch == 0, "mix %s: %d of %d micro-batches differ across dp splits", mix ? mix : "-", mismatch,
           2 * STEPS * A);
    gm_loader_free(one);
    gm_loader_free(r0);
    gm_loader_free(r1);
    for (int r = 0; r < 4; r++) gm_loader_free(q[r]);
}

/* A fresh loader asked step s directly (a resume), and a loader going back, give the in-order batches. */
static void test_restart(const char *data, const char *mix) {
    enum { B = 3, A = 2, STEPS = 40 };
    gm_loader *l = open_loader(data, mix, B, A, 1, 2, 99);
    if (!l) return;
    int32_t *all = malloc((size_t)STEPS * A * B * (T + 1) * sizeof *all);
    for (int s = 0; s < STEPS; s++)
        for (int m = 0; m < A; m++) CHECK_OK(gm_loader_batch(l, s, m, all + ((size_t)s * A + (size_t)m) * B * (T + 1)));
    int32_t x[B * (T + 1)];
    int resume_ok = 1, back_ok = 1;
    const int probes[] = {37, 0, 25, 25, 3, 39, 12};
    for (size_t k = 0; k < sizeof probes / sizeof probes[0]; k++) {
        int s = probes[k];
        gm_loader *f = open_loader(data, mix, B, A, 1, 2, 99);
        if (!f) break;
        for (int m = A - 1; m >= 0; m--) { /* micro-batches asked out of order too */
            CHECK_OK(gm_loader_batch(f, s, m, x));
            resume_ok &= memcmp(x, all + ((size_t)s * A + (size_t)m) * B * (T + 1), sizeof x) == 0;
        }
        gm_loader_free(f);
        CHECK_OK(gm_loader_batch(l, s, 1, x)); /* the long-lived loader, asked backwards and repeatedly */
        back_ok &= memcmp(x, all + ((size_t)s * A + 1) * B * (T + 1), sizeof x) == 0;
    }
    CHECK(resume_ok);
    CHECK(back_ok);
    free(all);
    gm_loader_free(l);
}

/* Draw 2.5 epochs of every source: each block of n_train consecutive draws from a source is a permutation
 * of its training windows (no repeats within an epoch, none left out), consecutive epochs are ordered
 * differently, and no held-out window is ever drawn. The held-out sequences are the last windows. */
static void test_epochs_and_val(const char *data) {
    enum { B = 8, A = 1 };
    gm_loader *l = open_loader(data, "books:1,web:1", B, A, 0, 1, 5);
    if (!l) return;
    uint64_t need = (uint64_t)(2.5 * (double)SRC[1].n_train);
    uint64_t *draws[2];
    uint64_t nd[2] = {0, 0};
    for (int j = 0; j < 2; j++) draws[j] = malloc(8 * need * sizeof *draws[j]);
    int32_t x[B * (T + 1)];
    int bad_rows = 0, val_drawn = 0;
    for (int s = 0; nd[0] < need || nd[1] < need; s++) {
        CHECK_OK(gm_loader_batch(l, s, 0, x));
        for (int i = 0; i < B; i++) {
            int j;
            uint64_t w;
            if (trace_row(x + i * (T + 1), &j, &w)) {
                bad_rows++;
                continue;
            }
            if (w >= SRC[j].n_train) val_drawn++;
            if (nd[j] < 8 * need) draws[j][nd[j]++] = w;
        }
    }
    CHECK(bad_rows == 0);
    CHECKF(val_drawn == 0, "%d held-out windows drawn for training", val_drawn);
    for (int j = 0; j < 2; j++) {
        uint64_t W = SRC[j].n_train;
        unsigned char *seen = malloc(W);
        int repeats = 0, epochs = 0, same_order = 0;
        for (uint64_t e = 0; (e + 1) * W <= nd[j]; e++, epochs++) {
            memset(seen, 0, W);
            for (uint64_t k = e * W; k < (e + 1) * W; k++) {
                uint64_t w = draws[j][k];
                if (w >= W || seen[w]) repeats++;
                else seen[w] = 1;
            }
            if (e > 0) same_order += memcmp(draws[j] + e * W, draws[j] + (e - 1) * W, W * sizeof *draws[j]) == 0;
        }
        CHECKF(epochs >= 2 && repeats == 0, "%s: %d epochs, %d repeats", SRC[j].name, epochs, repeats);
        CHECKF(same_order == 0, "%s: an epoch repeats the previous order", SRC[j].name);
        /* And the permutation is not the identity or a plain reversal. */
        uint64_t in_place = 0;
        for (uint64_t k = 0; k < W; k++) in_place += draws[j][k] == k;
        CHECKF(in_place < W / 10, "%s: %llu of %llu windows in place", SRC[j].name, (unsigned long long)in_place,
               (unsigned long long)W);
        free(seen);
        free(draws[j]);
    }
    /* Held-out: source order (books, web), then window order: the last windows of each. */
    int nv = gm_loader_val_count(l);
    CHECK(nv == 6);
    int32_t *v = malloc((size_t)nv * (T + 1) * sizeof *v);
    CHECK_OK(gm_loader_val(l, 0, nv, v));
    const int want_src[6] = {0, 0, 1, 1, 1, 1};
    const uint64_t want_w[6] = {123, 124, 371, 372, 373, 374};
    for (int i = 0; i < nv; i++) {
        int j = -1;
        uint64_t w = 0;
        int t = trace_row(v + (size_t)i * (T + 1), &j, &w);
        CHECKF(t == 0 && j == want_src[i] && w == want_w[i], "val %d: source %d window %llu", i, j,
               (unsigned long long)w);
    }
    int32_t one[T + 1];
    CHECK_OK(gm_loader_val(l, 3, 1, one));
    CHECK(memcmp(one, v + 3 * (T + 1), sizeof one) == 0);
    CHECK(gm_loader_val(l, 5, 2, v) == GM_ERR_ARG);
    free(v);
    gm_loader_free(l);
}

/* Count draws per source over steps [s0, s1) and check the share of source 0 against p within 4 sigma. */
static void check_share(gm_loader *l, int B, int A, int s0, int s1, double p, const char *what) {
    int32_t *x = malloc((size_t)B * (T + 1) * sizeof *x);
    uint64_t n = 0, c0 = 0;
    for (int s = s0; s < s1; s++)
        for (int m = 0; m < A; m++) {
            CHECK_OK(gm_loader_batch(l, s, m, x));
            for (int i = 0; i < B; i++) {
                int j;
                uint64_t w;
                if (trace_row(x + (size_t)i * (T + 1), &j, &w) == 0) {
                    n++;
                    c0 += j == 0;
                }
            }
        }
    double mean = (double)n * p, sd = sqrt((double)n * p * (1 - p));
    CHECKF(n == (uint64_t)(s1 - s0) * (uint64_t)A * (uint64_t)B && fabs((double)c0 - mean) <= 4 * sd + 1e-9,
           "%s: books drawn %llu of %llu times, expected %.1f +- 4 x %.1f", what, (unsigned long long)c0,
           (unsigned long long)n, mean, sd);
    printf("%s: books %llu of %llu (expected %.1f, sd %.1f)\n", what, (unsigned long long)c0, (unsigned long long)n,
           mean, sd);
    free(x);
}

static void test_mixture(const char *data) {
    enum { B = 16, A = 4 };
    /* Two stages: books 25% for steps 0..99, then 90% from step 100 (weights need not sum to 1). */
    gm_loader *l = open_loader(data, " books : 1 , web:3 @0 ; books:9,web:1@100", B, A, 0, 1, 11);
    if (l) {
        check_share(l, B, A, 0, 100, 0.25, "stage 1");
        check_share(l, B, A, 100, 200, 0.9, "stage 2");
        gm_loader_free(l);
    }
    /* Default: proportional to training windows, 123 : 371. */
    l = open_loader(data, NULL, B, A, 0, 1, 12);
    if (l) {
        check_share(l, B, A, 0, 100, 123.0 / 494.0, "by token count");
        gm_loader_free(l);
    }
    /* The switch happens exactly at the stage's step: books only before step 30, web only from it. */
    l = open_loader(data, "books:1@0;web:1@30", 2, 3, 0, 1, 13);
    if (l) {
        int32_t x[2 * (T + 1)];
        int wrong = 0;
        for (int s = 0; s < 60; s++)
            for (int m = 0; m < 3; m++) {
                CHECK_OK(gm_loader_batch(l, s, m, x));
                for (int i = 0; i < 2; i++) {
                    int j = -1;
                    uint64_t w;
                    trace_row(x + i * (T + 1), &j, &w);
                    wrong += j != (s < 30 ? 0 : 1);
                }
            }
        CHECKF(wrong == 0, "%d sequences from the wrong stage", wrong);
        /* Asking step 45 first (a resume after the switch) gives what the in-order run gave. */
        gm_loader *f = open_loader(data, "books:1@0;web:1@30", 2, 3, 0, 1, 13);
        if (f) {
            int32_t y[2 * (T + 1)];
            CHECK_OK(gm_loader_batch(f, 45, 2, y));
            CHECK_OK(gm_loader_batch(l, 45, 2, x));
            CHECK(memcmp(x, y, sizeof x) == 0);
            gm_loader_free(f);
        }
        gm_loader_free(l);
    }
    /* A source left out of a stage is never drawn then; a zero weight is allowed. */
    l = open_loader(data, "web:1,books:0", 8, 1, 0, 1, 14);
    if (l) {
        check_share(l, 8, 1, 0, 50, 0.0, "books weight 0");
        gm_loader_free(l);
    }
}

static void expect_bad(const char *data, const char *mix, int seq, gm_status code, const char *what) {
    gm_loader_opts o = {data, mix, seq, 2, 1, 0, 1, 1};
    gm_loader *l = NULL;
    gm_status st = gm_loader_open(&o, &l);
    CHECKF(st == code && strstr(gm_last_error(), what), "mix '%s': status %d, \"%s\" (want %d, \"%s\")",
           mix ? mix : "(null)", st, gm_last_error(), code, what);
    CHECK(l == NULL);
    gm_loader_free(l);
}

static void test_bad(const char *data, const char *tiny_data, const char *mixed_vocab) {
    expect_bad(data, "web:0.5,news:0.5", T, GM_ERR_ARG, "unknown source 'news' (the sources are: books, web)");
    expect_bad(data, "web:-0.5,books:1", T, GM_ERR_ARG, "weight '-0.5' of 'web' is not a non-negative number");
    expect_bad(data, "web:x", T, GM_ERR_ARG, "weight 'x' of 'web'");
    expect_bad(data, "web:inf", T, GM_ERR_ARG, "weight 'inf'");
    expect_bad(data, "web:0,books:0", T, GM_ERR_ARG, "weights summing to 0");
    expect_bad(data, "web:1@0;books:1@0", T, GM_ERR_ARG, "stage 2 starts at step 0, not after stage 1's 0");
    expect_bad(data, "web:1@0;books:1@500;web:1@100", T, GM_ERR_ARG, "stage starts must increase");
    expect_bad(data, "web:1@100", T, GM_ERR_ARG, "the first stage starts at step 100: it must start at @0");
    expect_bad(data, "web:1;books:1", T, GM_ERR_ARG, "stage 2 has no @STEP");
    expect_bad(data, "web:1@-5", T, GM_ERR_ARG, "'@-5' is not a step number");
    expect_bad(data, "web:1@", T, GM_ERR_ARG, "is not a step number");
    expect_bad(data, "web", T, GM_ERR_ARG, "'web' is not NAME:WEIGHT");
    expect_bad(data, "web:1,web:2", T, GM_ERR_ARG, "names 'web' twice");
    expect_bad(data, ";", T, GM_ERR_ARG, "no stages");
    expect_bad(data, "@0", T, GM_ERR_ARG, "stage 1 is empty");
    /* Sizes. */
    expect_bad(data, NULL, 0, GM_ERR_ARG, "need positive sizes");
    gm_loader_opts o = {data, NULL, T, 2, 1, 2, 2, 1};
    gm_loader *l = NULL;
    CHECK(gm_loader_open(&o, &l) == GM_ERR_ARG && l == NULL);
    /* Too few tokens for one window: refused when the source is drawn from, fine when it is not. */
    expect_bad(tiny_data, NULL, T, GM_ERR_FORMAT, "source tiny");
    expect_bad(tiny_data, NULL, T, GM_ERR_FORMAT, "fewer than one window of seq+1 = 17 tokens");
    expect_bad(tiny_data, "books:1,tiny:0.1", T, GM_ERR_FORMAT, "source tiny");
    l = open_loader(tiny_data, "books:1,tiny:0", 2, 1, 0, 1, 1);
    gm_loader_free(l);
    /* Sources of different vocabularies; a directory without shards. */
    expect_bad(mixed_vocab, NULL, T, GM_ERR_FORMAT, "all sources need one tokenizer");
    char empty[128];
    snprintf(empty, sizeof empty, "%s/empty", g_root);
    mkdir(empty, 0777);
    expect_bad(empty, NULL, T, GM_ERR_FORMAT, "no token shards here or in a subdirectory");
    expect_bad("/nonexistent/gm_data", NULL, T, GM_ERR_IO, "/nonexistent/gm_data");
}

int main(void) {
    snprintf(g_root, sizeof g_root, "/tmp/gm_test_loader.XXXXXX");
    if (!mkdtemp(g_root)) {
        perror("mkdtemp");
        return 1;
    }
    char data[128], dir[192], tiny[128], mixed[128];
    snprintf(data, sizeof data, "%s/mix", g_root);
    mkdir(data, 0777);
    for (int j = 0; j < 2; j++) {
        src_spec *s = &SRC[j];
        s->n_tokens = (uint64_t)s->n_content + 2;
        s->n_windows = (s->n_tokens - 1) / T;
        s->n_val = (s->n_windows + 99) / 100;
        s->n_train = s->n_windows - s->n_val;
        snprintf(dir, sizeof dir, "%s/%s", data, s->name);
        CHECK_OK(write_source(dir, VOCAB, s->base, s->n_content, 500 + 333 * (uint64_t)j)); /* many shards */
    }
    CHECK(SRC[0].n_train == 123 && SRC[0].n_val == 2 && SRC[1].n_train == 371 && SRC[1].n_val == 4);
    snprintf(dir, sizeof dir, "%s/notes", data); /* a subdirectory without shards is not a source */
    mkdir(dir, 0777);
    snprintf(tiny, sizeof tiny, "%s/tiny", g_root);
    mkdir(tiny, 0777);
    snprintf(dir, sizeof dir, "%s/books", tiny);
    CHECK_OK(write_source(dir, VOCAB, SRC[0].base, SRC[0].n_content, 1000));
    snprintf(dir, sizeof dir, "%s/tiny", tiny);
    CHECK_OK(write_source(dir, VOCAB, 500000, 10, 1000)); /* 12 tokens < 17 */
    snprintf(mixed, sizeof mixed, "%s/mixed", g_root);
    mkdir(mixed, 0777);
    snprintf(dir, sizeof dir, "%s/a", mixed);
    CHECK_OK(write_source(dir, VOCAB, 100, 100, 1000));
    snprintf(dir, sizeof dir, "%s/b", mixed);
    CHECK_OK(write_source(dir, VOCAB / 2, 100, 100, 1000));

    char books[192];
    snprintf(books, sizeof books, "%s/books/", data); /* trailing slash: still named books */
    test_open_describe(data, books);
    test_determinism(data);
    test_data_parallel(data, NULL);
    test_data_parallel(data, "books:0.2,web:0.8@0;books:0.7,web:0.3@5");
    test_restart(data, NULL);
    test_restart(data, "books:0.5,web:0.5@0;web:1@10;books:1,web:1@20");
    test_epochs_and_val(data);
    test_mixture(data);
    test_bad(data, tiny, mixed);
    rm_tree(g_root);
    TEST_DONE();
}
