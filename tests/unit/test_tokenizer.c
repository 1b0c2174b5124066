/* Tokenizer unit tests: the protobuf reader on hand-built models (unknown fields, defaults), BPE merge
 * order, byte fallback, user-defined and control pieces, UNUSED pieces, decode round trips, invalid
 * UTF-8, tokenizer.json equivalence, UTF-8 helpers, the chat template byte for byte, and (printed only)
 * the speed of encoding 1 MB with tests/data/tiny.model. With --gemma3-chat FILE it instead checks a
 * formatted conversation against the real Gemma 3 vocabulary (run by tests/cli/test_tok_conformance.sh). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/utf8.h"
#include "gemma.h"
#include "testlib.h"

/* ---- protobuf builder ------------------------------------------------------------------------------ */

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
    b_vfield(&s, 200, 7); /* an extension field: must be skipped */
    b_msg(m, 1, &s);
}

/* ---- temp files --------------------------------------------------------------------------------------- */

static char g_dir[64];

static const char *tmp_write(const char *name, const void *data, size_t n) {
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n) abort();
    fclose(f);
    return path;
}

/* ---- the hand-built model ---------------------------------------------------------------------------- */

enum { NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER = 4, UNUSED = 5, BYTE = 6 };

/* ids: 0 <pad> 1 </s> 2 <s> 3 <unk> 4 <u> 5 a 6 b 7 c 8 d 9 ▁ 10 ab 11 bc 12 abc 13 cd 14 ▁a 15 da(UNUSED)
 * 16 dab, then (with byte_fallback) 17.. <0x00>..<0xFF> */
static buf build_model(int byte_fallback) {
    buf m = {0}, t = {0}, nz = {0}, junk = {0};
    /* normalizer first: field order must not matter */
    b_str(&nz, 1, "identity");
    b_bytes(&nz, 2, "", 0);
    b_vfield(&nz, 3, 0);
    b_vfield(&nz, 4, 0);
    b_vfield(&nz, 6, 1); /* unknown varint field */
    b_msg(&m, 3, &nz);
    piece(&m, "<pad>", 0, CONTROL);
    piece(&m, "</s>", 0, CONTROL);
    piece(&m, "<s>", 0, CONTROL);
    piece(&m, "<unk>", 0, UNKNOWN);
    piece(&m, "<u>", 0, USER);
    piece(&m, "a", -10, NORMAL);
    piece(&m, "b", -10, NORMAL);
    piece(&m, "c", -10, NORMAL);
    piece(&m, "d", -10, NORMAL);
    piece(&m, "\xE2\x96\x81", -10, NORMAL);
    piece(&m, "ab", -1, NORMAL);
    piece(&m, "bc", -1, NORMAL); /* ties with ab: the leftmost pair wins */
    piece(&m, "abc", -2, NORMAL);
    piece(&m, "cd", 0, NORMAL); /* beats bc */
    piece(&m, "\xE2\x96\x81\x61", -3, NORMAL); /* "▁a" */
    piece(&m, "da", 5, UNUSED);
    piece(&m, "dab", -4, NORMAL);
    if (byte_fallback)
        for (int i = 0; i < 256; i++) {
            char name[16];
            snprintf(name, sizeof name, "<0x%02X>", (unsigned)i);
            piece(&m, name, 0, BYTE);
        }
    /* top-level fields of every wire type we do not know */
    b_vfield(&m, 99, 12345);
    b_tag(&m, 98, 1);
    b_put(&m, "12345678", 8);
    b_str(&m, 97, "junk");
    b_tag(&m, 96, 5);
    b_put(&m, "1234", 4);
    b_str(&junk, 1, "self test sample");
    b_msg(&m, 4, &junk); /* self_test_data */
    b_str(&t, 1, "input.txt");      /* repeated input */
    b_vfield(&t, 3, 2);             /* BPE */
    b_vfield(&t, 4, 17);            /* vocab_size */
    b_vfield(&t, 35, (uint64_t)byte_fallback);
    b_vfield(&t, 40, 3);
    b_vfield(&t, 41, 2);
    b_vfield(&t, 42, 1);
    b_vfield(&t, 43, (uint64_t)(int64_t)-1); /* pad_id -1: a 10-byte varint */
    b_str(&t, 46, "<s>");
    b_str(&t, 47, "</s>");
    b_str(&t, 44, "[UNK]"); /* unk_surface */
    b_msg(&m, 2, &t);
    return m;
}

static int ids_eq(const int32_t *a, size_t n, const int32_t *b, size_t m) {
    return n == m && (n == 0 || memcmp(a, b, n * sizeof *a) == 0);
}

static void print_ids(const char *what, const int32_t *a, size_t n) {
    fprintf(stderr, "  %s:", what);
    for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", (int)a[i]);
    fputc('\n', stderr);
}

#define EXPECT_IDS(tok, text, flags, ...)                                                              \
    do {                                                                                               \
        const int32_t want_[] = {__VA_ARGS__};                                                         \
        int32_t *got_ = NULL;                                                                          \
        size_t n_ = 0;                                                                                 \
        CHECK_OK(gm_tokenizer_encode(tok, text, strlen(text), flags, &got_, &n_));                     \
        int ok_ = ids_eq(got_, n_, want_, sizeof want_ / sizeof want_[0]);                             \
        CHECKF(ok_, "encode \"%s\"", text);                                                            \
        if (!ok_) {                                                                                    \
            print_ids("got ", got_, n_);                                                               \
            print_ids("want", want_, sizeof want_ / sizeof want_[0]);                                  \
        }                                                                                              \
        free(got_);                                                                                    \
    } while (0)

static void roundtrip(const gm_tokenizer *t, const char *text, size_t len) {
    int32_t *ids = NULL;
    size_t n = 0;
    char *back = NULL;
    size_t blen = 0;
    CHECK_OK(gm_tokenizer_encode(t, text, len, 0, &ids, &n));
    CHECK_OK(gm_tokenizer_decode(t, ids, n, &back, &blen));
    CHECKF(back && blen == len && memcmp(back, text, len) == 0, "round trip of \"%.*s\" gave \"%s\"", (int)len, text,
           back ? back : "(null)");
    /* token_bytes pieces concatenate to the same text */
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += gm_tokenizer_token_bytes(t, ids[i], NULL, 0);
    CHECK(total == blen);
    free(ids);
    free(back);
}

static void test_hand_model(void) {
    buf m = build_model(0);
    gm_tokenizer *t = NULL;
    CHECK_OK(gm_tokenizer_load(tmp_write("hand.model", m.p, m.n), &t));
    free(m.p);
    if (!t) return;
    CHECK(gm_tokenizer_vocab_size(t) == 17);
    CHECK(gm_tokenizer_bos(t) == 2);
    CHECK(gm_tokenizer_eos(t) == 1);
    CHECK(gm_tokenizer_piece_id(t, "abc") == 12);
    CHECK(gm_tokenizer_piece_id(t, "zzz") == -1);
    EXPECT_IDS(t, "abc", 0, 12);                /* ab (leftmost of a tie) then abc */
    EXPECT_IDS(t, "bcd", 0, 6, 13);             /* cd beats bc */
    EXPECT_IDS(t, "abcd", 0, 10, 13);           /* cd first, then ab; "abcd" is no piece */
    EXPECT_IDS(t, "abc", GM_TOK_ADD_BOS, 2, 12);
    EXPECT_IDS(t, " a", 0, 14);                 /* ' ' -> U+2581, no dummy prefix */
    EXPECT_IDS(t, "a<u>b", 0, 5, 4, 6);         /* user-defined pieces are matched and never merged */
    EXPECT_IDS(t, "<s>", 0, 3);                 /* control text is plain text (no piece: one <unk>) */
    EXPECT_IDS(t, "<s>", GM_TOK_PARSE_SPECIAL, 2);
    EXPECT_IDS(t, "a<s>b", GM_TOK_PARSE_SPECIAL, 5, 2, 6);
    EXPECT_IDS(t, "a<s>b", GM_TOK_PARSE_SPECIAL | GM_TOK_ADD_BOS, 2, 5, 2, 6);
    EXPECT_IDS(t, "xyz", 0, 3);                 /* no byte fallback: a run of unknowns is one <unk> */
    EXPECT_IDS(t, "axa", 0, 5, 3, 5);
    EXPECT_IDS(t, "da", 0, 8, 5);               /* da is UNUSED: merged, then split back */
    EXPECT_IDS(t, "dab", 0, 16);                /* ...but it may still be merged further */
    EXPECT_IDS(t, "", 0);
    EXPECT_IDS(t, "", GM_TOK_ADD_BOS, 2);
    /* decode: control tokens vanish, U+2581 is a space, <unk> is the model's unk_surface */
    const int32_t ids[] = {2, 14, 9, 12, 3, 1};
    char *text = NULL;
    size_t len = 0;
    CHECK_OK(gm_tokenizer_decode(t, ids, 6, &text, &len));
    CHECKF(text && !strcmp(text, " a abc[UNK]") && len == 11, "decode gave \"%s\"", text ? text : "");
    free(text);
    const int32_t bad[] = {5, 17};
    CHECK(gm_tokenizer_decode(t, bad, 2, &text, &len) == GM_ERR_ARG);
    CHECK(strstr(gm_last_error(), "17") != NULL);
    char b4[4];
    CHECK(gm_tokenizer_token_bytes(t, 14, b4, sizeof b4) == 2 && b4[0] == ' ' && b4[1] == 'a');
    CHECK(gm_tokenizer_token_bytes(t, 2, b4, sizeof b4) == 0);
    CHECK(gm_tokenizer_token_bytes(t, 99, b4, sizeof b4) == 0);
    gm_tokenizer_free(t);
}

static void test_byte_fallback(void) {
    buf m = build_model(1);
    gm_tokenizer *t = NULL;
    CHECK_OK(gm_tokenizer_load(tmp_write("bytes.model", m.p, m.n), &t));
    free(m.p);
    if (!t) return;
    CHECK(gm_tokenizer_vocab_size(t) == 17 + 256);
    CHECK(gm_tokenizer_piece_id(t, "<0x41>") == 17 + 0x41);
    EXPECT_IDS(t, "xab", 0, 17 + 'x', 10);
    EXPECT_IDS(t, "\xC3\xA9", 0, 17 + 0xC3, 17 + 0xA9); /* é -> its two UTF-8 bytes */
    EXPECT_IDS(t, "\xF0\x9F\x98\x80\x61", 0, 17 + 0xF0, 17 + 0x9F, 17 + 0x98, 17 + 0x80, 5);
    EXPECT_IDS(t, "\t\n", 0, 17 + 9, 17 + 10);
    const char *rt[] = {"", "abc", "  a  b\t\tc\n\n", "\xC3\xA9t\xC3\xA9 \xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\xA4\x97",
                        "<u><u>x<s></s>"};
    for (size_t i = 0; i < sizeof rt / sizeof rt[0]; i++) roundtrip(t, rt[i], strlen(rt[i]));
    /* text with NUL bytes and every ASCII character */
    char all[128];
    for (int i = 0; i < 128; i++) all[i] = (char)i;
    roundtrip(t, all, sizeof all);
    /* a literal U+2581 decodes as a space, as in SentencePiece */
    int32_t *ids = NULL;
    size_t n = 0;
    char *back = NULL;
    CHECK_OK(gm_tokenizer_encode(t, "\xE2\x96\x81\x61", 4, 0, &ids, &n));
    CHECK_OK(gm_tokenizer_decode(t, ids, n, &back, NULL));
    CHECK(back && !strcmp(back, " a"));
    free(ids);
    free(back);
    /* byte tokens of a character split across tokens are reassembled */
    const int32_t e_acute[] = {17 + 0xC3, 17 + 0xA9};
    CHECK_OK(gm_tokenizer_decode(t, e_acute, 2, &back, NULL));
    CHECK(back && !strcmp(back, "\xC3\xA9"));
    free(back);
    /* invalid UTF-8 is an argument error naming the offset */
    const char *bad[] = {"ab\xC3(", "\xFF", "abc\xED\xA0\x80", "\xC0\xAF", "ok\xF4\x90\x80\x80", "x\xE2\x82"};
    const char *off[] = {"offset 2", "offset 0", "offset 3", "offset 0", "offset 2", "offset 1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ids = NULL;
        CHECK(gm_tokenizer_encode(t, bad[i], strlen(bad[i]), 0, &ids, &n) == GM_ERR_ARG);
        CHECKF(strstr(gm_last_error(), off[i]) != NULL, "message \"%s\" lacks \"%s\"", gm_last_error(), off[i]);
        CHECK(ids == NULL);
    }
    gm_tokenizer_free(t);
}

/* tokenizer.json equivalent of the hand model (no UNUSED pieces in HF): must encode identically. */
static void test_tokenizer_json(void) {
    static const char *json =
        "{\"version\":\"1.0\",\"added_tokens\":["
        "{\"id\":0,\"content\":\"<pad>\",\"special\":true},{\"id\":1,\"content\":\"</s>\",\"special\":true},"
        "{\"id\":2,\"content\":\"<s>\",\"special\":true},{\"id\":3,\"content\":\"<unk>\",\"special\":true},"
        "{\"id\":4,\"content\":\"<u>\",\"special\":false}],"
        "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},"
        "\"content\":\"\\u2581\"}]},\"pre_tokenizer\":null,"
        "\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"fuse_unk\":true,\"byte_fallback\":false,"
        "\"vocab\":{\"<pad>\":0,\"</s>\":1,\"<s>\":2,\"<unk>\":3,\"<u>\":4,\"a\":5,\"b\":6,\"c\":7,\"d\":8,"
        "\"\\u2581\":9,\"ab\":10,\"bc\":11,\"abc\":12,\"cd\":13,\"\\u2581a\":14},"
        "\"merges\":[\"c d\",[\"a\",\"b\"],\"b c\",\"ab c\",\"\\u2581 a\"]}}";
    gm_tokenizer *t = NULL;
    CHECK_OK(gm_tokenizer_load(tmp_write("tokenizer.json", json, strlen(json)), &t));
    if (!t) return;
    CHECK(gm_tokenizer_vocab_size(t) == 15);
    CHECK(gm_tokenizer_bos(t) == 2 && gm_tokenizer_eos(t) == 1);
    EXPECT_IDS(t, "abc", 0, 12);
    EXPECT_IDS(t, "bcd", 0, 6, 13);
    EXPECT_IDS(t, "abcd", 0, 10, 13);
    EXPECT_IDS(t, " a", GM_TOK_ADD_BOS, 2, 14);
    EXPECT_IDS(t, "a<u>b", 0, 5, 4, 6);
    EXPECT_IDS(t, "<s>", 0, 3);
    EXPECT_IDS(t, "a<s>b", GM_TOK_PARSE_SPECIAL, 5, 2, 6);
    EXPECT_IDS(t, "xyz", 0, 3);
    gm_tokenizer_free(t);
    /* Prepend("▁") is SentencePiece's dummy prefix */
    static const char *json2 =
        "{\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\\u2581\"},"
        "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"}]},"
        "\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"vocab\":{\"<unk>\":0,\"a\":1,\"\\u2581\":2,"
        "\"\\u2581a\":3},\"merges\":[\"\\u2581 a\"]}}";
    CHECK_OK(gm_tokenizer_load(tmp_write("prepend.json", json2, strlen(json2)), &t));
    if (!t) return;
    EXPECT_IDS(t, "a", 0, 3);
    EXPECT_IDS(t, "a a", 0, 3, 3);
    gm_tokenizer_free(t);
    /* load_dir prefers tokenizer.model */
    buf m = build_model(0);
    tmp_write("tokenizer.model", m.p, m.n);
    free(m.p);
    CHECK_OK(gm_tokenizer_load_dir(g_dir, &t));
    CHECK(t && gm_tokenizer_vocab_size(t) == 17);
    gm_tokenizer_free(t);
}

/* A tokenizer.json shaped like Gemma 3's: a Split(" ") pre-tokenizer after Replace(" " -> "▁"), merges in
 * the newer converter's order (the score-0 block sorted by length, not id), score-0 pieces that are not
 * added tokens (must be inferred user-defined, as for Gemma 1's tab runs) and a special added token past
 * model.vocab (Gemma 3's <image_soft_token>: a control piece).
 * ids: 0 <pad> 1 <eos> 2 <bos> 3 <unk> 4..259 <0x00>..<0xFF> 260 ▁t (first normal piece) 261 in 262 zza
 * 263 zzz 264 zz 265 ▁ 266 t 267 i 268 n 269 z 270 a, added only: 271 <img> */
static void test_tokenizer_json_gemma3_style(void) {
    static char json[16384];
    size_t o = 0;
#define J(...) (o += (size_t)snprintf(json + o, sizeof json - o, __VA_ARGS__))
    J("{\"added_tokens\":[{\"id\":0,\"content\":\"<pad>\",\"special\":true},"
      "{\"id\":1,\"content\":\"<eos>\",\"special\":true},{\"id\":2,\"content\":\"<bos>\",\"special\":true},"
      "{\"id\":3,\"content\":\"<unk>\",\"special\":true},{\"id\":271,\"content\":\"<img>\",\"special\":true}],"
      "\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"},"
      "\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"String\":\" \"},\"behavior\":\"MergedWithPrevious\","
      "\"invert\":false},"
      "\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\",\"fuse_unk\":true,\"byte_fallback\":true,\"vocab\":{"
      "\"<pad>\":0,\"<eos>\":1,\"<bos>\":2,\"<unk>\":3");
    for (int b = 0; b < 256; b++) J(",\"<0x%02X>\":%d", b, 4 + b);
    J(",\"\\u2581t\":260,\"in\":261,\"zza\":262,\"zzz\":263,\"zz\":264,\"\\u2581\":265,\"t\":266,\"i\":267,"
      "\"n\":268,\"z\":269,\"a\":270},"
      "\"merges\":[[\"zz\",\"z\"],[\"\\u2581\",\"t\"],[\"z\",\"z\"],[\"i\",\"n\"],[\"zz\",\"a\"]]}}");
#undef J
    CHECK(o < sizeof json);
    gm_tokenizer *t = NULL;
    CHECK_OK(gm_tokenizer_load(tmp_write("g3style.json", json, strlen(json)), &t));
    if (!t) return;
    CHECK(gm_tokenizer_vocab_size(t) == 272);
    CHECK(gm_tokenizer_bos(t) == 2 && gm_tokenizer_eos(t) == 1);
    EXPECT_IDS(t, " tin", 0, 260, 261);   /* the Split pre-tokenizer splits nothing */
    EXPECT_IDS(t, "zza", 0, 264, 270);    /* zz is user-defined (frozen): no zz + a -> zza */
    EXPECT_IDS(t, "zzzz", 0, 263, 269);   /* longest user-defined match first */
    EXPECT_IDS(t, "azza", 0, 270, 264, 270);
    EXPECT_IDS(t, "<img>", 0, 64, 267, 113, 107, 66);   /* a control piece: characters without special parsing */
    EXPECT_IDS(t, "<img>", GM_TOK_PARSE_SPECIAL, 271);
    EXPECT_IDS(t, "<bos>in", GM_TOK_PARSE_SPECIAL, 2, 261);
    gm_tokenizer_free(t);
}

/* tests/data/tiny.model (spm_train with Gemma's options): ids from SentencePiece 0.1.97. */
static gm_tokenizer *test_tiny(void) {
    gm_tokenizer *t = NULL;
    CHECK_OK(gm_tokenizer_load("tests/data/tiny.model", &t));
    if (!t) return NULL;
    CHECK(gm_tokenizer_vocab_size(t) == 1024);
    CHECK(gm_tokenizer_bos(t) == 2 && gm_tokenizer_eos(t) == 1);
    CHECK(gm_tokenizer_piece_id(t, "<start_of_turn>") == 4);
    EXPECT_IDS(t, "Hello world", 0, 1000, 412, 963, 868);
    EXPECT_IDS(t, "  two  spaces", 0, 960, 758, 963, 960, 414, 964, 978, 284);
    EXPECT_IDS(t, "First Citizen:\nBefore we proceed", 0, 674, 424, 940, 983, 16, 776, 551, 336, 587, 314, 321);
    EXPECT_IDS(t, "<start_of_turn>user\nhi<end_of_turn>", 0, 4, 392, 278, 16, 376, 5);
    EXPECT_IDS(t, "<s>x</s>", 0, 66, 966, 68, 1015, 66, 53, 966, 68);
    EXPECT_IDS(t, "<s>x</s>", GM_TOK_PARSE_SPECIAL, 2, 1015, 1);
    EXPECT_IDS(t, "\xE2\x88\x91\xF0\x9F\x98\x80", 0, 232, 142, 151, 246, 165, 158, 134);
    EXPECT_IDS(t, "12345", 0, 55, 56, 1021, 58, 59);
    EXPECT_IDS(t, "Hello", GM_TOK_ADD_BOS, 2, 1000, 412, 963);
    return t;
}

static void test_speed(const gm_tokenizer *t) {
    /* ~1 MB of English-like text: words from a fixed list, deterministic */
    static const char *words[] = {"the", "king", "shall", "speak", "unto", "thee,", "and", "my", "lord", "Citizen:",
                                  "before", "we", "proceed", "any", "further", "hear", "me.\n", "resolved", "rather",
                                  "to", "die", "than", "famish?\n\n", "You", "are", "all"};
    size_t cap = 1 << 20, n = 0;
    char *text = malloc(cap + 32);
    uint32_t r = 12345;
    while (n < cap) {
        r = r * 1103515245u + 12345u;
        const char *w = words[(r >> 16) % (sizeof words / sizeof words[0])];
        size_t k = strlen(w);
        memcpy(text + n, w, k);
        n += k;
        if (w[k - 1] != '\n') text[n++] = ' ';
    }
    int32_t *ids = NULL;
    size_t n_ids = 0;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    CHECK_OK(gm_tokenizer_encode(t, text, n, 0, &ids, &n_ids));
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
    printf("encode %.2f MB with tiny.model: %zu tokens in %.3f s (%.1f MB/s)\n", (double)n / 1e6, n_ids, s,
           (double)n / 1e6 / s);
    char *back = NULL;
    size_t blen = 0;
    CHECK_OK(gm_tokenizer_decode(t, ids, n_ids, &back, &blen));
    CHECK(back && blen == n && memcmp(back, text, n) == 0);
    free(back);
    free(ids);
    free(text);
}

static void test_utf8(void) {
    uint32_t cp = 0;
    CHECK(gm_utf8_decode("A", 1, &cp) == 1 && cp == 'A');
    CHECK(gm_utf8_decode("\xC3\xA9", 2, &cp) == 2 && cp == 0xE9);
    CHECK(gm_utf8_decode("\xE2\x96\x81", 3, &cp) == 3 && cp == 0x2581);
    CHECK(gm_utf8_decode("\xF0\x9F\x98\x80", 4, &cp) == 4 && cp == 0x1F600);
    CHECK(gm_utf8_decode("\xF0\x9F\x98", 3, &cp) == 0);     /* cut short */
    CHECK(gm_utf8_decode("\xE0\x80\x80", 3, &cp) == 0);     /* overlong */
    CHECK(gm_utf8_decode("\xED\xA0\x80", 3, &cp) == 0);     /* surrogate */
    CHECK(gm_utf8_decode("\xF4\x90\x80\x80", 4, &cp) == 0); /* > U+10FFFF */
    CHECK(gm_utf8_decode("\x80", 1, &cp) == 0);
    size_t off = 99;
    CHECK(gm_utf8_valid("", 0, &off));
    CHECK(gm_utf8_valid("h\xC3\xA9llo", 6, &off));
    CHECK(!gm_utf8_valid("h\xC3\xA9l\xC3", 5, &off) && off == 4);
    /* complete prefix: hold back only a partial character at the end */
    CHECK(gm_utf8_complete_prefix("abc", 3) == 3);
    CHECK(gm_utf8_complete_prefix("ab\xC3", 3) == 2);
    CHECK(gm_utf8_complete_prefix("ab\xC3\xA9", 4) == 4);
    CHECK(gm_utf8_complete_prefix("a\xF0\x9F\x98", 4) == 1);
    CHECK(gm_utf8_complete_prefix("a\xF0\x9F", 3) == 1);
    CHECK(gm_utf8_complete_prefix("a\xF0", 2) == 1);
    CHECK(gm_utf8_complete_prefix("a\xF0\x9F\x98\x80", 5) == 5);
    CHECK(gm_utf8_complete_prefix("a\x80", 2) == 2);         /* stray continuation: pass through */
    CHECK(gm_utf8_complete_prefix("a\xE0\x80", 3) == 3);     /* can never be valid: pass through */
    CHECK(gm_utf8_complete_prefix("a\xFF", 2) == 2);
    CHECK(gm_utf8_complete_prefix("", 0) == 0);
    CHECK(gm_utf8_complete_prefix("\xE2", 1) == 0);
    char out[4];
    CHECK(gm_utf8_encode(0x2581, out) == 3 && !memcmp(out, "\xE2\x96\x81", 3));
    CHECK(gm_utf8_encode(0xD800, out) == 0 && gm_utf8_encode(0x110000, out) == 0);
}

static void expect_chat(const gm_chat_message *m, size_t n, int gen, const char *want) {
    char *out = NULL;
    size_t len = 0;
    CHECK_OK(gm_chat_format(m, n, gen, &out, &len));
    CHECKF(out && !strcmp(out, want) && len == strlen(want), "chat gave \"%s\"", out ? out : "(null)");
    free(out);
}

static void test_chat(void) {
    gm_chat_message one[] = {{"user", "Hello"}};
    expect_chat(one, 1, 1, "<bos><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n");
    expect_chat(one, 1, 0, "<bos><start_of_turn>user\nHello<end_of_turn>\n");
    gm_chat_message two[] = {{"user", "  Hi there\n"}, {"assistant", "Hello! How can I help?"}};
    expect_chat(two, 2, 0,
                "<bos><start_of_turn>user\nHi there<end_of_turn>\n"
                "<start_of_turn>model\nHello! How can I help?<end_of_turn>\n");
    gm_chat_message three[] = {{"user", "a"}, {"model", "b"}, {"user", "c\n\n"}};
    expect_chat(three, 3, 1,
                "<bos><start_of_turn>user\na<end_of_turn>\n<start_of_turn>model\nb<end_of_turn>\n"
                "<start_of_turn>user\nc<end_of_turn>\n<start_of_turn>model\n");
    gm_chat_message sys[] = {{"system", "Be brief."}, {"user", "Why?"}, {"assistant", "Because."}, {"user", "OK"}};
    expect_chat(sys, 4, 1,
                "<bos><start_of_turn>user\nBe brief.\n\nWhy?<end_of_turn>\n<start_of_turn>model\nBecause.<end_of_turn>\n"
                "<start_of_turn>user\nOK<end_of_turn>\n<start_of_turn>model\n");
    /* trim uses Python's whitespace set (Jinja's |trim): NBSP and ideographic space go, ZWSP stays */
    gm_chat_message ws[] = {{"user", "\xC2\xA0\xE3\x80\x80x y\t\xE2\x80\x8B"}};
    expect_chat(ws, 1, 0, "<bos><start_of_turn>user\nx y\t\xE2\x80\x8B<end_of_turn>\n");
    gm_chat_message empty[] = {{"user", ""}};
    expect_chat(empty, 1, 0, "<bos><start_of_turn>user\n<end_of_turn>\n");
    expect_chat(NULL, 0, 1, "<bos><start_of_turn>model\n");
    char *out = NULL;
    size_t len;
    gm_chat_message bad1[] = {{"model", "x"}};
    CHECK(gm_chat_format(bad1, 1, 1, &out, &len) == GM_ERR_ARG && out == NULL);
    gm_chat_message bad2[] = {{"user", "x"}, {"user", "y"}};
    CHECK(gm_chat_format(bad2, 2, 1, &out, &len) == GM_ERR_ARG);
    CHECK(strstr(gm_last_error(), "alternate") != NULL);
    gm_chat_message bad3[] = {{"user", "x"}, {"system", "y"}};
    CHECK(gm_chat_format(bad3, 2, 1, &out, &len) == GM_ERR_ARG);
    gm_chat_message bad4[] = {{"user", "x"}, {"robot", "y"}};
    CHECK(gm_chat_format(bad4, 2, 1, &out, &len) == GM_ERR_ARG);
    gm_chat_message bad5[] = {{"system", "x"}};
    CHECK(gm_chat_format(bad5, 1, 1, &out, &len) == GM_ERR_ARG);
    gm_chat_message bad6[] = {{"system", "x"}, {"model", "y"}};
    CHECK(gm_chat_format(bad6, 2, 1, &out, &len) == GM_ERR_ARG);
}

/* `test_tokenizer --gemma3-chat FILE`: run by tests/cli/test_tok_conformance.sh with the real Gemma 3
 * tokenizer.model / tokenizer.json (fetched there). A system + 3-turn conversation is formatted by
 * gm_chat_format, checked byte for byte (the system text folded into the first user turn), encoded as the
 * engine does (special parsing on, no extra <bos>) and compared with SentencePiece's ids on the same text
 * (<bos> = 2 split out as a control token, the rest encoded by SentencePiece 0.1.97 on the rebuilt Gemma 3
 * tokenizer.model; tests/golden/TOKENIZER.md): <start_of_turn> = 105, <end_of_turn> = 106, the lone tab the
 * user-defined piece 255968. */
static int gemma3_chat(const char *path) {
    gm_tokenizer *t = NULL;
    CHECK_OK(gm_tokenizer_load(path, &t));
    if (!t) TEST_DONE();
    CHECK(gm_tokenizer_vocab_size(t) == 262144 || gm_tokenizer_vocab_size(t) == 262145);
    CHECK(gm_tokenizer_bos(t) == 2 && gm_tokenizer_eos(t) == 1);
    CHECK(gm_tokenizer_piece_id(t, "<start_of_turn>") == 105 && gm_tokenizer_piece_id(t, "<end_of_turn>") == 106);
    gm_chat_message msgs[] = {{"system", "You are a helpful assistant."},
                              {"user", "  Hi there!\n"},
                              {"assistant", "Hello! How can I help?"},
                              {"user", "Write\ta   haiku\nabout <b>tabs</b>."}};
    static const char want_text[] =
        "<bos><start_of_turn>user\nYou are a helpful assistant.\n\nHi there!<end_of_turn>\n"
        "<start_of_turn>model\nHello! How can I help?<end_of_turn>\n"
        "<start_of_turn>user\nWrite\ta   haiku\nabout <b>tabs</b>.<end_of_turn>\n<start_of_turn>model\n";
    static const int32_t want[] = {2,     105,    2364,  107,   3048,   659,    496,    11045, 16326, 236761,
                                   108,   10979,  993,   236888, 106,   107,    105,    4368,  107,   9259,
                                   236888, 2088,  740,   564,   1601,   236881, 106,    107,   105,   2364,
                                   107,   6974,   255968, 236746, 139,  2118,   20517,  107,   9869,  236743,
                                   200,   39218,  209,   236761, 106,   107,    105,    4368,  107};
    char *text = NULL;
    size_t len = 0;
    CHECK_OK(gm_chat_format(msgs, 4, 1, &text, &len));
    CHECKF(text && len == strlen(want_text) && !memcmp(text, want_text, len), "chat gave \"%s\"",
           text ? text : "(null)");
    int32_t *ids = NULL;
    size_t n = 0;
    if (text) CHECK_OK(gm_tokenizer_encode(t, text, len, GM_TOK_PARSE_SPECIAL, &ids, &n));
    size_t n_want = sizeof want / sizeof want[0];
    int ok = ids_eq(ids, n, want, n_want);
    CHECKF(ok, "Gemma 3 chat ids from %s", path);
    if (!ok) {
        print_ids("got ", ids, n);
        print_ids("want", want, n_want);
    }
    size_t starts = 0, ends = 0;
    for (size_t i = 0; i < n; i++) {
        starts += ids[i] == 105;
        ends += ids[i] == 106;
    }
    CHECK(n > 0 && ids[0] == 2 && starts == 4 && ends == 3);
    /* decoding gives the text back, less <bos> (a control token decodes to nothing) */
    char *back = NULL;
    size_t blen = 0;
    if (ids) CHECK_OK(gm_tokenizer_decode(t, ids, n, &back, &blen));
    CHECKF(back && text && blen == len - 5 && !memcmp(back, text + 5, blen), "decode gave \"%s\"",
           back ? back : "(null)");
    free(back);
    free(ids);
    free(text);
    gm_tokenizer_free(t);
    printf("gemma3 chat (%s): ", path);
    TEST_DONE();
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--gemma3-chat")) return gemma3_chat(argv[2]);
    if (argc != 1) {
        fprintf(stderr, "usage: test_tokenizer [--gemma3-chat TOKENIZER_FILE]\n");
        return 2;
    }
    snprintf(g_dir, sizeof g_dir, "/tmp/gm_tok_XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_utf8();
    test_hand_model();
    test_byte_fallback();
    test_tokenizer_json();
    test_tokenizer_json_gemma3_style();
    gm_tokenizer *tiny = test_tiny();
    if (tiny) test_speed(tiny);
    gm_tokenizer_free(tiny);
    test_chat();
    const char *files[] = {"hand.model", "bytes.model", "tokenizer.json", "prepend.json", "g3style.json",
                           "tokenizer.model"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char p[256];
        snprintf(p, sizeof p, "%s/%s", g_dir, files[i]);
        unlink(p);
    }
    rmdir(g_dir);
    TEST_DONE();
}
