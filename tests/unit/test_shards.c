/* Token shards: write documents across many small shards and read the concatenated stream back exactly
 * (random ranges across shard boundaries), the on-disk header byte for byte, the writer's refusals and
 * abort, and every hostile file variant refused by gm_shards_open with a message naming the file. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "data/shards.h"
#include "testlib.h"

static char g_root[64];

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

static void sub(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", g_root, name); }

static int write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static unsigned char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc((size_t)sz + 1);
    if (p && fread(p, 1, (size_t)sz, f) != (size_t)sz) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *n = (size_t)sz;
    return p;
}

static uint64_t rng = 0x12345678;
static uint32_t next_rand(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng >> 33);
}

/* A shard image: header + ids. */
static unsigned char *make_shard(uint32_t version, uint32_t vocab, uint64_t n, const uint32_t *ids, size_t *size) {
    *size = 32 + 4 * n;
    unsigned char *p = calloc(1, *size);
    memcpy(p, "GMTOKENS", 8);
    for (int i = 0; i < 4; i++) {
        p[8 + i] = (unsigned char)(version >> (8 * i));
        p[12 + i] = (unsigned char)(vocab >> (8 * i));
    }
    for (int i = 0; i < 8; i++) p[16 + i] = (unsigned char)(n >> (8 * i));
    for (uint64_t k = 0; k < n; k++)
        for (int i = 0; i < 4; i++) p[32 + 4 * k + (uint64_t)i] = (unsigned char)(ids[k] >> (8 * i));
    return p;
}

static void test_round_trip(void) {
    char dir[128];
    sub(dir, sizeof dir, "rt");
    const uint32_t V = 50, ST = 7;
    gm_shard_writer *w;
    CHECK_OK(gm_shard_writer_open(dir, V, 2, 1, ST, &w));
    int32_t *expect = malloc(4096 * sizeof *expect);
    size_t ne = 0, docs = 0;
    for (int d = 0; d < 60; d++) {
        int32_t ids[40];
        size_t n = next_rand() % 25; /* empty documents included: just <bos><eos> */
        for (size_t i = 0; i < n; i++) ids[i] = 3 + (int32_t)(next_rand() % (V - 3));
        CHECK_OK(gm_shard_writer_add_doc(w, ids, n));
        expect[ne++] = 2;
        memcpy(expect + ne, ids, n * sizeof *ids);
        ne += n;
        expect[ne++] = 1;
        docs++;
    }
    /* An id past the vocabulary is refused and writes nothing. */
    int32_t bad[3] = {5, (int32_t)V, 6};
    gm_status st = gm_shard_writer_add_doc(w, bad, 3);
    CHECKF(st == GM_ERR_ARG && strstr(gm_last_error(), "not in [0, 50)"), "%d %s", st, gm_last_error());
    int32_t neg[1] = {-1};
    CHECK(gm_shard_writer_add_doc(w, neg, 1) == GM_ERR_ARG);
    gm_shard_summary sum;
    CHECK_OK(gm_shard_writer_close(w, &sum));
    CHECK(sum.docs == docs);
    CHECK(sum.tokens == ne);
    CHECKF(sum.n_shards == (int)((ne + ST - 1) / ST), "%d shards for %zu tokens", sum.n_shards, ne);

    /* The files: full shards of 7 tokens, header fields little-endian, no temp file left. */
    char p[256];
    snprintf(p, sizeof p, "%s/shard_00000.bin", dir);
    size_t sz;
    unsigned char *b = read_file(p, &sz);
    CHECK(b && sz == 32 + 4 * ST);
    if (b) {
        CHECK(memcmp(b, "GMTOKENS", 8) == 0);
        CHECK(b[8] == 1 && b[9] == 0 && b[10] == 0 && b[11] == 0);
        CHECK(b[12] == V && b[13] == 0);
        CHECK(b[16] == ST && b[17] == 0 && b[23] == 0);
        for (int i = 24; i < 32; i++) CHECK(b[i] == 0);
        CHECK(b[32] == 2 && b[33] == 0); /* the first document's <bos> */
    }
    free(b);
    snprintf(p, sizeof p, "%s/shard_%05d.bin", dir, sum.n_shards - 1);
    b = read_file(p, &sz);
    CHECK(b && sz == 32 + 4 * (ne - (size_t)(sum.n_shards - 1) * ST));
    free(b);
    snprintf(p, sizeof p, "%s/.shard_%05d.bin.tmp", dir, sum.n_shards);
    CHECK(access(p, F_OK) != 0);

    gm_shards *s;
    CHECK_OK(gm_shards_open(dir, &s));
    if (s) {
        CHECK(gm_shards_n_tokens(s) == ne);
        CHECK(gm_shards_vocab_size(s) == V);
        CHECK(gm_shards_count(s) == sum.n_shards);
        int32_t *got = malloc(ne * sizeof *got);
        CHECK_OK(gm_shards_read(s, 0, ne, got));
        CHECK(memcmp(got, expect, ne * sizeof *got) == 0);
        int bad_ranges = 0;
        for (int r = 0; r < 500; r++) { /* random ranges, most crossing one or more shard boundaries */
            uint64_t pos = next_rand() % ne;
            size_t n = next_rand() % (ne - pos + 1);
            memset(got, 0xff, ne * sizeof *got);
            if (gm_shards_read(s, pos, n, got) || memcmp(got, expect + pos, n * sizeof *got) != 0) bad_ranges++;
        }
        CHECKF(bad_ranges == 0, "%d of 500 ranges differ", bad_ranges);
        CHECK_OK(gm_shards_read(s, ne, 0, got));
        st = gm_shards_read(s, ne - 3, 4, got);
        CHECKF(st == GM_ERR_ARG && strstr(gm_last_error(), dir), "%d %s", st, gm_last_error());
        free(got);
        gm_shards_close(s);
    }

    /* A second run into the same directory is refused rather than mixed with the first. */
    st = gm_shard_writer_open(dir, V, 2, 1, ST, &w);
    CHECKF(st == GM_ERR_IO && strstr(gm_last_error(), "already holds token shards"), "%d %s", st, gm_last_error());
    free(expect);
}

static void test_writer_edges(void) {
    char dir[128], p[256];
    gm_shard_writer *w;
    gm_shard_summary sum;
    /* No documents: no shard, and the reader says so. */
    sub(dir, sizeof dir, "empty");
    CHECK_OK(gm_shard_writer_open(dir, 10, 2, 1, 100, &w));
    CHECK_OK(gm_shard_writer_close(w, &sum));
    CHECK(sum.n_shards == 0 && sum.tokens == 0);
    gm_shards *s = NULL;
    gm_status st = gm_shards_open(dir, &s);
    CHECKF(st == GM_ERR_FORMAT && strstr(gm_last_error(), dir) && strstr(gm_last_error(), "no token shards"), "%s",
           gm_last_error());
    CHECK(s == NULL);

    /* Exactly full shards: no empty trailing shard. bos/eos -1 = not added. */
    sub(dir, sizeof dir, "exact");
    CHECK_OK(gm_shard_writer_open(dir, 10, -1, -1, 4, &w));
    int32_t ids[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    CHECK_OK(gm_shard_writer_add_doc(w, ids, 8));
    CHECK_OK(gm_shard_writer_close(w, &sum));
    CHECK(sum.n_shards == 2 && sum.tokens == 8);
    snprintf(p, sizeof p, "%s/shard_00002.bin", dir);
    CHECK(access(p, F_OK) != 0);

    /* Abort removes what was written. */
    sub(dir, sizeof dir, "abort");
    CHECK_OK(gm_shard_writer_open(dir, 10, 2, 1, 3, &w));
    CHECK_OK(gm_shard_writer_add_doc(w, ids, 8));
    snprintf(p, sizeof p, "%s/shard_00001.bin", dir);
    CHECK(access(p, F_OK) == 0);
    gm_shard_writer_abort(w);
    CHECK(access(p, F_OK) != 0);
    snprintf(p, sizeof p, "%s/shard_00000.bin", dir);
    CHECK(access(p, F_OK) != 0);

    /* A write failure (the next temp file cannot be created: a directory holds its name) is reported with
     * the file, repeated by later calls, and close then deletes the complete shards too. */
    sub(dir, sizeof dir, "failing");
    CHECK_OK(gm_shard_writer_open(dir, 10, 2, 1, 3, &w));
    CHECK_OK(gm_shard_writer_add_doc(w, ids, 4)); /* 6 tokens: shards 0 and 1, both finished */
    snprintf(p, sizeof p, "%s/.shard_00002.bin.tmp", dir);
    mkdir(p, 0777);
    st = gm_shard_writer_add_doc(w, ids, 1);
    CHECKF(st == GM_ERR_IO && strstr(gm_last_error(), p) && strstr(gm_last_error(), "cannot create"), "%d %s", st,
           gm_last_error());
    CHECK(gm_shard_writer_add_doc(w, ids, 1) == GM_ERR_IO);
    snprintf(p, sizeof p, "%s/shard_00001.bin", dir);
    CHECK(access(p, F_OK) == 0);
    CHECK(gm_shard_writer_close(w, &sum) == GM_ERR_IO);
    CHECK(sum.n_shards == 0);
    CHECK(access(p, F_OK) != 0);

    /* Bad writer arguments. */
    CHECK(gm_shard_writer_open(dir, 0, 2, 1, 3, &w) == GM_ERR_ARG);
    CHECK(gm_shard_writer_open(dir, 10, 10, 1, 3, &w) == GM_ERR_ARG);
    CHECK(gm_shard_writer_open(dir, 10, 2, 1, 0, &w) == GM_ERR_ARG);
    CHECK(gm_shard_writer_open("/proc/gm_no_such/x", 10, 2, 1, 3, &w) == GM_ERR_IO);
}

/* Write shard files into a fresh directory and expect gm_shards_open to refuse them with `code` and a
 * message naming `who` (a file, or the directory) and containing `what`. */
typedef struct {
    const char *name;
    const void *data;
    size_t size;
} file_spec;

static void expect_refused(const char *label, const file_spec *files, int n, gm_status code, const char *who,
                           const char *what) {
    char dir[128];
    sub(dir, sizeof dir, label);
    mkdir(dir, 0777);
    for (int i = 0; i < n; i++) {
        char p[256];
        snprintf(p, sizeof p, "%s/%s", dir, files[i].name);
        write_file(p, files[i].data, files[i].size);
    }
    gm_shards *s = NULL;
    gm_status st = gm_shards_open(dir, &s);
    char want_who[256];
    snprintf(want_who, sizeof want_who, "%s%s%s", dir, who[0] ? "/" : "", who);
    CHECKF(st == code && strstr(gm_last_error(), want_who) && strstr(gm_last_error(), what),
           "%s: status %d, message \"%s\" (want %d, \"%s\", \"%s\")", label, st, gm_last_error(), code, want_who, what);
    CHECK(s == NULL);
    gm_shards_close(s);
}

static void test_hostile(void) {
    uint32_t ids[6] = {2, 5, 6, 7, 1, 2};
    size_t n0, n1;
    unsigned char *good = make_shard(1, 16, 6, ids, &n0);
    unsigned char *good1 = make_shard(1, 16, 6, ids, &n1);
    file_spec f[3];

    /* The good pair opens: the variants below differ from it in one fault each. */
    {
        char dir[128];
        sub(dir, sizeof dir, "good");
        mkdir(dir, 0777);
        char p[256];
        snprintf(p, sizeof p, "%s/shard_00000.bin", dir);
        write_file(p, good, n0);
        snprintf(p, sizeof p, "%s/shard_00001.bin", dir);
        write_file(p, good1, n1);
        snprintf(p, sizeof p, "%s/notes.txt", dir); /* other files are ignored */
        write_file(p, "x", 1);
        gm_shards *s;
        CHECK_OK(gm_shards_open(dir, &s));
        if (s) {
            CHECK(gm_shards_n_tokens(s) == 12);
            int32_t got[12];
            CHECK_OK(gm_shards_read(s, 4, 4, got));
            CHECK(got[0] == 1 && got[1] == 2 && got[2] == 2 && got[3] == 5);
            gm_shards_close(s);
        }
    }

    unsigned char *v = malloc(n0);
#define VARIANT(label, mutate, code, what)                                       \
    do {                                                                         \
        memcpy(v, good, n0);                                                     \
        size_t vn = n0;                                                          \
        mutate;                                                                  \
        f[0] = (file_spec){"shard_00000.bin", v, vn};                            \
        expect_refused(label, f, 1, code, "shard_00000.bin", what);              \
    } while (0)
    VARIANT("magic", v[0] = 'X', GM_ERR_FORMAT, "not a token shard");
    VARIANT("version", v[8] = 2, GM_ERR_FORMAT, "version 2 is not supported");
    VARIANT("truncated", vn = n0 - 2, GM_ERR_FORMAT, "truncated");
    VARIANT("short_header", vn = 20, GM_ERR_FORMAT, "shorter than the 32-byte shard header");
    VARIANT("zero_bytes", vn = 0, GM_ERR_FORMAT, "shorter than the 32-byte shard header");
    VARIANT("count_high", v[16] = 7, GM_ERR_FORMAT, "header says 7 tokens");
    VARIANT("count_low", v[16] = 5, GM_ERR_FORMAT, "header says 5 tokens");
    VARIANT("count_huge", v[23] = 0x40, GM_ERR_FORMAT, "truncated or corrupt");
    VARIANT("id_past_vocab", v[32 + 4 * 3] = 16, GM_ERR_FORMAT, "token 3 is id 16, not below the vocabulary size 16");
    VARIANT("id_huge", v[32 + 4 * 5 + 3] = 0x80, GM_ERR_FORMAT, "token 5 is id");
    VARIANT("vocab_zero", v[12] = 0, GM_ERR_FORMAT, "vocab_size 0 is out of range");
    VARIANT("vocab_huge", v[15] = 0x80, GM_ERR_FORMAT, "is out of range");
    VARIANT("reserved", v[30] = 1, GM_ERR_FORMAT, "reserved header field");
#undef VARIANT

    /* Two shards that disagree on the vocabulary (ids valid in both). */
    unsigned char *other = make_shard(1, 17, 6, ids, &n1);
    f[0] = (file_spec){"shard_00000.bin", good, n0};
    f[1] = (file_spec){"shard_00001.bin", other, n1};
    expect_refused("mixed_vocab", f, 2, GM_ERR_FORMAT, "shard_00001.bin", "vocab_size 17 differs");
    free(other);
    /* Numbering: a gap, a missing first shard, one shard under two names. */
    f[0] = (file_spec){"shard_00000.bin", good, n0};
    f[1] = (file_spec){"shard_00002.bin", good1, n1};
    expect_refused("gap", f, 2, GM_ERR_FORMAT, "", "shard_00001.bin is missing");
    f[0] = (file_spec){"shard_00001.bin", good, n0};
    expect_refused("no_first", f, 1, GM_ERR_FORMAT, "", "shard_00000.bin is missing");
    f[0] = (file_spec){"shard_00000.bin", good, n0};
    f[1] = (file_spec){"shard_0.bin", good1, n1};
    expect_refused("twice", f, 2, GM_ERR_FORMAT, "", "two files claim shard 0");
    /* A directory under a shard's name; a directory that does not exist. */
    {
        char dir[128], p[256];
        sub(dir, sizeof dir, "dir_shard");
        mkdir(dir, 0777);
        snprintf(p, sizeof p, "%s/shard_00000.bin", dir);
        mkdir(p, 0777);
        gm_shards *s = NULL;
        gm_status st = gm_shards_open(dir, &s);
        CHECKF(st == GM_ERR_IO && strstr(gm_last_error(), p), "%d %s", st, gm_last_error());
        sub(dir, sizeof dir, "does_not_exist");
        st = gm_shards_open(dir, &s);
        CHECKF(st == GM_ERR_IO && strstr(gm_last_error(), dir), "%d %s", st, gm_last_error());
    }

    /* gm_shard_header_parse on its own. */
    gm_shard_header h;
    CHECK_OK(gm_shard_header_parse(good, n0, "x.bin", &h));
    CHECK(h.version == 1 && h.vocab_size == 16 && h.n_tokens == 6);
    CHECK(gm_shard_header_parse(good, n0 + 4, "x.bin", &h) == GM_ERR_FORMAT);
    CHECK(strstr(gm_last_error(), "x.bin") != NULL);
    free(v);
    free(good);
    free(good1);
}

int main(void) {
    snprintf(g_root, sizeof g_root, "/tmp/gm_test_shards.XXXXXX");
    if (!mkdtemp(g_root)) {
        perror("mkdtemp");
        return 1;
    }
    test_round_trip();
    test_writer_edges();
    test_hostile();
    rm_tree(g_root);
    TEST_DONE();
}
