/* Malformed tokenizer files: every truncation of tests/data/tiny.model, hand-made protobufs with one fault
 * each, and broken tokenizer.json documents must fail with GM_ERR_FORMAT (or IO / UNSUPPORTED where that
 * is the honest answer) and a message that names the file and the fault, never crash or leak. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gemma.h"
#include "testlib.h"

typedef struct {
    unsigned char *p;
    size_t n, cap;
} buf;

static void b_put(buf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        unsigned char *q = realloc(b->p, b->cap);
        if (!q) abort();
        b->p = q;
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void b_varint(buf *b, uint64_t v) {
    do {
        unsigned char c = (unsigned char)(v & 0x7F);
        v >>= 7;
        if (v) c |= 0x80;
        b_put(b, &c, 1);
    } while (v);
}
static void b_tag(buf *b, unsigned f, int wt) { b_varint(b, (uint64_t)f << 3 | (unsigned)wt); }
static void b_vfield(buf *b, unsigned f, uint64_t v) {
    b_tag(b, f, 0);
    b_varint(b, v);
}
static void b_bytes(buf *b, unsigned f, const void *d, size_t n) {
    b_tag(b, f, 2);
    b_varint(b, n);
    b_put(b, d, n);
}
static void b_str(buf *b, unsigned f, const char *s) { b_bytes(b, f, s, strlen(s)); }
static void b_float(buf *b, unsigned f, float x) {
    b_tag(b, f, 5);
    uint32_t u;
    memcpy(&u, &x, 4);
    unsigned char c[4] = {(unsigned char)u, (unsigned char)(u >> 8), (unsigned char)(u >> 16), (unsigned char)(u >> 24)};
    b_put(b, c, 4);
}
static void b_msg(buf *b, unsigned f, buf *sub) {
    b_bytes(b, f, sub->p, sub->n);
    free(sub->p);
    memset(sub, 0, sizeof *sub);
}
static void piece(buf *m, const char *text, float score, int type) {
    buf s = {0};
    b_str(&s, 1, text);
    b_float(&s, 2, score);
    if (type != 1) b_vfield(&s, 3, (uint64_t)type);
    b_msg(m, 1, &s);
}

static char g_dir[64];
static char g_path[256];

static const char *tmp_write(const char *name, const void *data, size_t n) {
    snprintf(g_path, sizeof g_path, "%s/%s", g_dir, name);
    FILE *f = fopen(g_path, "wb");
    if (!f || fwrite(data, 1, n, f) != n) abort();
    fclose(f);
    return g_path;
}

/* Load `data` as file `name`; expect status `want` and a message naming the file and containing `fault`. */
static void expect_fail(const char *name, const void *data, size_t n, gm_status want, const char *fault) {
    const char *path = tmp_write(name, data, n);
    gm_tokenizer *t = NULL;
    gm_status st = gm_tokenizer_load(path, &t);
    CHECKF(st == want, "%s: status %d, want %d (%s)", name, st, want, gm_last_error());
    CHECKF(t == NULL, "%s: handle set on failure", name);
    CHECKF(strstr(gm_last_error(), path) != NULL, "%s: message \"%s\" does not name the file", name, gm_last_error());
    CHECKF(!fault || strstr(gm_last_error(), fault) != NULL, "%s: message \"%s\" lacks \"%s\"", name, gm_last_error(),
           fault);
    gm_tokenizer_free(t);
    unlink(path);
}

enum { NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER = 4, UNUSED = 5, BYTE = 6 };

/* A valid small model; `fault` selects one defect. */
static buf model_with(int fault) {
    buf m = {0}, t = {0}, nz = {0};
    piece(&m, "<pad>", 0, CONTROL);
    piece(&m, "</s>", 0, CONTROL);
    piece(&m, "<s>", 0, CONTROL);
    if (fault != 1) piece(&m, "<unk>", 0, UNKNOWN);           /* 1: no unknown piece */
    piece(&m, "a", -1, NORMAL);
    if (fault == 2) piece(&m, "a", -2, NORMAL);               /* 2: duplicate */
    if (fault == 3) piece(&m, "", -2, NORMAL);                /* 3: empty piece */
    if (fault == 4) piece(&m, "b", -2, 9);                    /* 4: unknown type */
    if (fault == 5) piece(&m, "b", 0.0f / 0.0f, NORMAL);      /* 5: NaN score */
    if (fault == 6) piece(&m, "<0xZZ>", 0, BYTE);             /* 6: bad byte piece */
    if (fault == 7) piece(&m, "<0x41>", 0, BYTE);             /* 7: byte piece without byte_fallback */
    if (fault == 8 || fault == 9)                              /* 8: 255 of 256 bytes; 9: all 256 */
        for (int i = 0; i < (fault == 8 ? 255 : 256); i++) {
            char name[16];
            snprintf(name, sizeof name, "<0x%02X>", (unsigned)i);
            piece(&m, name, 0, BYTE);
        }
    if (fault == 10) piece(&m, "<unk2>", 0, UNKNOWN);         /* 10: two unknown pieces */
    b_vfield(&t, 3, fault == 11 ? 1 : fault == 12 ? 7 : 2);   /* 11: unigram; 12: unknown model type */
    b_vfield(&t, 35, fault == 8 || fault == 9);
    b_msg(&m, 2, &t);
    b_str(&nz, 1, fault == 13 ? "nmt_nfkc" : "identity");
    if (fault == 13) b_bytes(&nz, 2, "\x01\x02\x03\x04", 4);  /* 13: precompiled charsmap */
    b_vfield(&nz, 3, 0);
    b_msg(&m, 3, &nz);
    return m;
}

static void test_models(void) {
    struct {
        int fault;
        gm_status want;
        const char *msg;
    } cases[] = {
        {1, GM_ERR_FORMAT, "UNKNOWN"},       {2, GM_ERR_FORMAT, "duplicates"},  {3, GM_ERR_FORMAT, "no text"},
        {4, GM_ERR_FORMAT, "piece type 9"},  {5, GM_ERR_FORMAT, "NaN"},         {6, GM_ERR_FORMAT, "<0xXX>"},
        {7, GM_ERR_FORMAT, "byte_fallback"}, {8, GM_ERR_FORMAT, "255 of the 256"}, {10, GM_ERR_FORMAT, "more than one"},
        {11, GM_ERR_UNSUPPORTED, "unigram"}, {12, GM_ERR_UNSUPPORTED, "model_type"},
        {13, GM_ERR_UNSUPPORTED, "nmt_nfkc"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf m = model_with(cases[i].fault);
        char name[32];
        snprintf(name, sizeof name, "fault%d.model", cases[i].fault);
        expect_fail(name, m.p, m.n, cases[i].want, cases[i].msg);
        free(m.p);
    }
    /* the fault-free variants load */
    for (int f = 0; f <= 9; f += 9) {
        buf m = model_with(f);
        gm_tokenizer *t = NULL;
        CHECK_OK(gm_tokenizer_load(tmp_write("good.model", m.p, m.n), &t));
        gm_tokenizer_free(t);
        free(m.p);
    }
    /* wire-level faults */
    static const unsigned char varint11[] = {0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01};
    expect_fail("varint.model", varint11, sizeof varint11, GM_ERR_FORMAT, "varint");
    static const unsigned char trunc_varint[] = {0x50, 0xFF}; /* field 10, varint, cut short */
    expect_fail("tvarint.model", trunc_varint, sizeof trunc_varint, GM_ERR_FORMAT, "truncated varint");
    static const unsigned char past_end[] = {0x0A, 0x7F, 0x0A, 0x01, 'a'};
    expect_fail("len.model", past_end, sizeof past_end, GM_ERR_FORMAT, "past the end");
    static const unsigned char group[] = {0x0B, 0x0C};
    expect_fail("group.model", group, sizeof group, GM_ERR_FORMAT, "wire type");
    static const unsigned char field0[] = {0x02, 0x00};
    expect_fail("field0.model", field0, sizeof field0, GM_ERR_FORMAT, "field number");
    static const unsigned char wrongwt[] = {0x08, 0x01};
    expect_fail("wrongwt.model", wrongwt, sizeof wrongwt, GM_ERR_FORMAT, "wire type 0");
    static const unsigned char fixed32[] = {0x0A, 0x03, 0x15, 0x00, 0x00};
    expect_fail("f32.model", fixed32, sizeof fixed32, GM_ERR_FORMAT, "truncated");
    static const unsigned char fixed64[] = {0x79, 1, 2, 3};
    expect_fail("f64.model", fixed64, sizeof fixed64, GM_ERR_FORMAT, "fixed64");
    expect_fail("empty.model", "", 0, GM_ERR_FORMAT, "empty");
    static const unsigned char only_trainer[] = {0x12, 0x02, 0x18, 0x02};
    expect_fail("nopieces.model", only_trainer, sizeof only_trainer, GM_ERR_FORMAT, "no pieces");
    buf m = {0};
    piece(&m, "<unk>", 0, UNKNOWN);
    expect_fail("notrainer.model", m.p, m.n, GM_ERR_FORMAT, "trainer_spec");
    free(m.p);
    /* a missing file is an I/O error naming it */
    gm_tokenizer *t = NULL;
    snprintf(g_path, sizeof g_path, "%s/does-not-exist.model", g_dir);
    CHECK(gm_tokenizer_load(g_path, &t) == GM_ERR_IO && t == NULL);
    CHECK(strstr(gm_last_error(), "does-not-exist.model") != NULL);
    CHECK(gm_tokenizer_load_dir(g_dir, &t) == GM_ERR_IO && t == NULL);
    CHECK(strstr(gm_last_error(), g_dir) != NULL);
}

/* Every prefix of tiny.model that cuts into the pieces or the trainer_spec must fail cleanly. */
static void test_truncations(void) {
    FILE *f = fopen("tests/data/tiny.model", "rb");
    CHECK(f != NULL);
    if (!f) return;
    static unsigned char data[1 << 16];
    size_t n = fread(data, 1, sizeof data, f);
    fclose(f);
    CHECK(n > 1000 && n < sizeof data);
    /* end of the trainer_spec field: walk the top-level fields (all length-delimited) */
    size_t pos = 0, trainer_end = 0;
    while (pos < n) {
        unsigned tag = data[pos++];
        uint64_t len = 0;
        for (int s = 0; pos < n; s += 7) {
            unsigned char c = data[pos++];
            len |= (uint64_t)(c & 0x7F) << s;
            if (!(c & 0x80)) break;
        }
        pos += (size_t)len;
        if ((tag >> 3) == 2) trainer_end = pos;
    }
    CHECK(trainer_end > 0);
    int failed = 0, loaded = 0;
    for (size_t k = 0; k < n; k += (k < 64 || k + 64 > n) ? 1 : 37) {
        const char *path = tmp_write("trunc.model", data, k);
        gm_tokenizer *t = NULL;
        gm_status st = gm_tokenizer_load(path, &t);
        if (k < trainer_end) {
            CHECKF(st == GM_ERR_FORMAT, "prefix %zu: status %d (%s)", k, st, gm_last_error());
            CHECKF(strstr(gm_last_error(), path) != NULL, "prefix %zu: message lacks the path", k);
        } else {
            /* only a cut inside normalizer_spec remains: it must fail, or load if at a field boundary */
            CHECKF(st == GM_ERR_FORMAT || st == GM_OK, "prefix %zu: status %d", k, st);
        }
        failed += st != GM_OK;
        loaded += st == GM_OK;
        gm_tokenizer_free(t);
    }
    CHECK(failed > 100);
    printf("truncations of tiny.model: %d rejected, %d loaded (cut at a field boundary in normalizer_spec)\n", failed,
           loaded);
    unlink(g_path);
}

static void test_json(void) {
    struct {
        const char *name, *json;
        gm_status want;
        const char *msg;
    } cases[] = {
        {"trunc.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0", GM_ERR_FORMAT, NULL},
        {"nomodel.json", "{\"version\": \"1.0\"}", GM_ERR_FORMAT, "\"model\""},
        {"unigram.json", "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", GM_ERR_UNSUPPORTED, "Unigram"},
        {"novocab.json", "{\"model\": {\"type\": \"BPE\", \"merges\": []}}", GM_ERR_FORMAT, "model.vocab"},
        {"badid.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []}}", GM_ERR_FORMAT,
         "valid id"},
        {"floatid.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0.5}, \"merges\": []}}", GM_ERR_FORMAT,
         "valid id"},
        {"dupid.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}}",
         GM_ERR_FORMAT, NULL},
        {"gap.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 2}, \"merges\": []}}",
         GM_ERR_FORMAT, "gaps"},
        {"dupkey.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"a\": 1}, \"merges\": []}}",
         GM_ERR_FORMAT, NULL},
        {"nomerges.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}", GM_ERR_FORMAT, "merges"},
        {"merge3.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"aa\": 1}, \"merges\": [\"a a a\"]}}",
         GM_ERR_FORMAT, "merges[0]"},
        {"mergenum.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [7]}}", GM_ERR_FORMAT,
         "merges[0]"},
        {"mergeoov.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}",
         GM_ERR_FORMAT, "not in model.vocab"},
        {"mergeempty.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [[\"\", \"a\"]]}}",
         GM_ERR_FORMAT, "empty"},
        {"emptypiece.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"\": 0}, \"merges\": []}}",
         GM_ERR_FORMAT, "empty"},
        {"added.json",
         "{\"added_tokens\": [{\"id\": 0, \"content\": \"x\"}], \"model\": {\"type\": \"BPE\", \"vocab\": "
         "{\"a\": 0}, \"merges\": []}}",
         GM_ERR_FORMAT, "differs"},
        {"addednoid.json",
         "{\"added_tokens\": [{\"content\": \"x\"}], \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, "
         "\"merges\": []}}",
         GM_ERR_FORMAT, "added_tokens[0]"},
        {"nfkc.json",
         "{\"normalizer\": {\"type\": \"NFKC\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
         GM_ERR_UNSUPPORTED, "NFKC"},
        {"bytelevel.json",
         "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, "
         "\"merges\": []}}",
         GM_ERR_UNSUPPORTED, "ByteLevel"},
        {"splitnorm.json",
         "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, \"behavior\": "
         "\"MergedWithPrevious\", \"invert\": false}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, "
         "\"merges\": []}}",
         GM_ERR_UNSUPPORTED, "Split"},
        {"splitregex.json",
         "{\"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\\u2581\"}, "
         "\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s+\"}, \"behavior\": "
         "\"Isolated\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
         GM_ERR_UNSUPPORTED, "Split"},
        {"notjson.json", "{ this is not json", GM_ERR_FORMAT, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_fail(cases[i].name, cases[i].json, strlen(cases[i].json), cases[i].want, cases[i].msg);
    /* a minimal valid one loads; a vocabulary without byte pieces or <unk> fails only when encoding needs it */
    const char *ok = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\"]}}";
    gm_tokenizer *t = NULL;
    CHECK_OK(gm_tokenizer_load(tmp_write("ok.json", ok, strlen(ok)), &t));
    if (t) {
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK_OK(gm_tokenizer_encode(t, "ab", 2, 0, &ids, &n));
        CHECK(n == 1 && ids && ids[0] == 2);
        free(ids);
        ids = NULL;
        CHECK(gm_tokenizer_encode(t, "abc", 3, 0, &ids, &n) == GM_ERR_ARG && ids == NULL);
        CHECK(gm_tokenizer_encode(t, "a", 1, GM_TOK_ADD_BOS, &ids, &n) == GM_ERR_ARG);
        gm_tokenizer_free(t);
    }
    unlink(g_path);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/gm_tokbad_XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_models();
    test_truncations();
    test_json();
    snprintf(g_path, sizeof g_path, "%s/good.model", g_dir);
    unlink(g_path);
    rmdir(g_dir);
    TEST_DONE();
}
