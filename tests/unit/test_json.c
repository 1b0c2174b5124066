/* Unit tests for the JSON reader (src/base/json.c): valid documents decode exactly (escapes, surrogate
 * pairs, int64 limits), and every class of malformed input is rejected with GM_ERR_FORMAT and a message
 * naming the source and the line/column, never a crash (the depth bomb included). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "testlib.h"

/* Parse a NUL-terminated literal; returns the doc or NULL (with a printed failure) on error. */
static gm_json_doc *parse_ok_n(const char *text, size_t len, int line) {
    gm_json_doc *d = NULL;
    gm_status st = gm_json_parse(text, len, "ok.json", &d);
    tl_checks++;
    if (st != GM_OK || !d) {
        tl_failures++;
        fprintf(stderr, "%s:%d: expected valid JSON, got %d: %s\n", __FILE__, line, st, gm_last_error());
        return NULL;
    }
    return d;
}
#define PARSE_OK(t) parse_ok_n((t), strlen(t), __LINE__)

/* Expect a parse failure whose message names the source, carries "line L column C" (when line > 0)
 * and contains `frag`. */
static void expect_err_n(const char *text, size_t len, const char *frag, int want_line, int want_col, int line) {
    gm_json_doc *d = (gm_json_doc *)1;
    gm_clear_error();
    gm_status st = gm_json_parse(text, len, "bad.json", &d);
    tl_checks++;
    if (st != GM_ERR_FORMAT || d != NULL) {
        tl_failures++;
        fprintf(stderr, "%s:%d: expected GM_ERR_FORMAT and NULL doc, got %d (%s)\n", __FILE__, line, st,
                gm_last_error());
        if (st == GM_OK) gm_json_free(d);
        return;
    }
    const char *msg = gm_last_error();
    tl_checks++;
    if (!strstr(msg, "bad.json") || !strstr(msg, frag)) {
        tl_failures++;
        fprintf(stderr, "%s:%d: message lacks 'bad.json' or '%s': %s\n", __FILE__, line, frag, msg);
    }
    if (want_line > 0) {
        char lc[64];
        snprintf(lc, sizeof lc, "line %d column %d", want_line, want_col);
        tl_checks++;
        if (!strstr(msg, lc)) {
            tl_failures++;
            fprintf(stderr, "%s:%d: message lacks '%s': %s\n", __FILE__, line, lc, msg);
        }
    }
}
#define EXPECT_ERR(t, frag) expect_err_n((t), strlen(t), (frag), 0, 0, __LINE__)
#define EXPECT_ERR_AT(t, frag, l, c) expect_err_n((t), strlen(t), (frag), (l), (c), __LINE__)

static void test_valid_nested(void) {
    gm_json_doc *d = PARSE_OK(" {\"a\": [1, 2.5, -3e2, true, false, null, {\"b\": \"c\"}, []], \"e\": {}} \n");
    if (!d) return;
    const gm_json *r = gm_json_root(d);
    CHECK(r->type == GM_JSON_OBJECT && r->len == 2);
    const gm_json *a = gm_json_get(r, "a");
    CHECK(a && a->type == GM_JSON_ARRAY && a->len == 8);
    if (a && a->len == 8) {
        CHECK(a->items[0].type == GM_JSON_NUMBER && a->items[0].is_int && a->items[0].i == 1);
        CHECK(a->items[1].type == GM_JSON_NUMBER && !a->items[1].is_int && a->items[1].num == 2.5);
        CHECK(!a->items[2].is_int && a->items[2].num == -300.0);
        CHECK(a->items[3].type == GM_JSON_BOOL && a->items[3].boolean == 1);
        CHECK(a->items[4].type == GM_JSON_BOOL && a->items[4].boolean == 0);
        CHECK(a->items[5].type == GM_JSON_NULL);
        CHECK(a->items[6].type == GM_JSON_OBJECT && gm_json_get_str(&a->items[6], "b") &&
              strcmp(gm_json_get_str(&a->items[6], "b"), "c") == 0);
        CHECK(a->items[7].type == GM_JSON_ARRAY && a->items[7].len == 0);
    }
    const gm_json *e = gm_json_get(r, "e");
    CHECK(e && e->type == GM_JSON_OBJECT && e->len == 0);
    CHECK(gm_json_get(r, "missing") == NULL);
    CHECK(gm_json_get(a, "a") == NULL); /* lookup on a non-object */
    /* members keep file order */
    CHECK(strcmp(r->members[0].key, "a") == 0 && strcmp(r->members[1].key, "e") == 0);
    gm_json_free(d);

    /* scalars at the top level */
    d = PARSE_OK("42");
    if (d) { CHECK(gm_json_root(d)->is_int && gm_json_root(d)->i == 42); gm_json_free(d); }
    d = PARSE_OK("\"x\"");
    if (d) { CHECK(gm_json_root(d)->type == GM_JSON_STRING && gm_json_root(d)->len == 1); gm_json_free(d); }
    d = PARSE_OK("null");
    if (d) { CHECK(gm_json_root(d)->type == GM_JSON_NULL); gm_json_free(d); }
    /* a UTF-8 BOM is tolerated */
    d = PARSE_OK("\xEF\xBB\xBF{\"k\": 1}");
    if (d) { CHECK(gm_json_get(gm_json_root(d), "k") != NULL); gm_json_free(d); }

    /* a deep but legal nesting (100 levels) parses */
    char deep[256];
    for (int i = 0; i < 100; i++) deep[i] = '[', deep[100 + i] = ']';
    d = parse_ok_n(deep, 200, __LINE__);
    gm_json_free(d);
}

static void test_typed_getters(void) {
    gm_json_doc *d = PARSE_OK("{\"i\": 7, \"f\": 0.5, \"b\": true, \"s\": \"str\", \"n\": null}");
    if (!d) return;
    const gm_json *r = gm_json_root(d);
    int64_t i = 0;
    double f = 0;
    int b = 0;
    CHECK(gm_json_get_int(r, "i", &i) && i == 7);
    CHECK(!gm_json_get_int(r, "f", &i));  /* a float is not an int */
    CHECK(!gm_json_get_int(r, "s", &i));
    CHECK(gm_json_get_num(r, "f", &f) && f == 0.5);
    CHECK(gm_json_get_num(r, "i", &f) && f == 7.0);
    CHECK(gm_json_get_bool(r, "b", &b) && b == 1);
    CHECK(!gm_json_get_bool(r, "n", &b));
    CHECK(gm_json_get_str(r, "s") && strcmp(gm_json_get_str(r, "s"), "str") == 0);
    CHECK(gm_json_get_str(r, "i") == NULL);
    CHECK(gm_json_get_str(r, "zzz") == NULL);
    gm_json_free(d);
}

static void test_escapes(void) {
    gm_json_doc *d = PARSE_OK("[\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\", \"\\u0041\\u00e9\\u20AC\", \"\\ud83d\\ude00\", "
                              "\"x\\u0000y\", \"caf\xC3\xA9 \xF0\x9F\x98\x80\"]");
    if (!d) return;
    const gm_json *a = gm_json_root(d);
    CHECK(a->len == 5);
    if (a->len == 5) {
        CHECK(a->items[0].len == 12 && memcmp(a->items[0].str, "a\"b\\c/d\b\f\n\r\t", 12) == 0);
        /* A, é (2 bytes), € (3 bytes) */
        CHECK(a->items[1].len == 6 && memcmp(a->items[1].str, "A\xC3\xA9\xE2\x82\xAC", 6) == 0);
        /* U+1F600 from a surrogate pair */
        CHECK(a->items[2].len == 4 && memcmp(a->items[2].str, "\xF0\x9F\x98\x80", 4) == 0);
        /* an escaped NUL is kept; the length says so */
        CHECK(a->items[3].len == 3 && a->items[3].str[1] == 0 && a->items[3].str[2] == 'y' && a->items[3].str[3] == 0);
        /* raw multi-byte UTF-8 passes through unchanged */
        CHECK(a->items[4].len == 10 && memcmp(a->items[4].str, "caf\xC3\xA9 \xF0\x9F\x98\x80", 10) == 0);
    }
    gm_json_free(d);
    /* escapes in keys decode too */
    d = PARSE_OK("{\"k\\u0065y\": 1}");
    if (d) { CHECK(gm_json_get(gm_json_root(d), "key") != NULL); gm_json_free(d); }
}

static void test_numbers(void) {
    gm_json_doc *d = PARSE_OK("[0, -0, 9223372036854775807, -9223372036854775808, 9223372036854775808, "
                              "-9223372036854775809, 18446744073709551616, 123456789012345678901234567890, "
                              "1.5e3, 1E-2, -0.25, 2e+2, 1e400, 1.0]");
    if (!d) return;
    const gm_json *a = gm_json_root(d);
    CHECK(a->len == 14);
    if (a->len == 14) {
        CHECK(a->items[0].is_int && a->items[0].i == 0);
        CHECK(a->items[1].is_int && a->items[1].i == 0);
        CHECK(a->items[2].is_int && a->items[2].i == INT64_MAX);
        CHECK(a->items[3].is_int && a->items[3].i == INT64_MIN);
        /* one past the int64 limits: still a number, but not an exact int */
        CHECK(a->items[4].type == GM_JSON_NUMBER && !a->items[4].is_int && a->items[4].num > 9.2e18);
        CHECK(a->items[5].type == GM_JSON_NUMBER && !a->items[5].is_int && a->items[5].num < -9.2e18);
        CHECK(!a->items[6].is_int && a->items[6].num > 1.8e19);  /* past uint64 */
        CHECK(!a->items[7].is_int && a->items[7].num > 1e29);
        CHECK(!a->items[8].is_int && a->items[8].num == 1500.0);
        CHECK(!a->items[9].is_int && a->items[9].num == 0.01);
        CHECK(!a->items[10].is_int && a->items[10].num == -0.25);
        CHECK(!a->items[11].is_int && a->items[11].num == 200.0);
        CHECK(a->items[12].type == GM_JSON_NUMBER && !a->items[12].is_int); /* overflows double: inf, no crash */
        CHECK(!a->items[13].is_int && a->items[13].num == 1.0);  /* "1.0" is a float literal */
    }
    gm_json_free(d);
    /* a number longer than the parser's stack buffer */
    char big[400];
    memset(big, '7', sizeof big - 1);
    big[sizeof big - 1] = 0;
    d = PARSE_OK(big);
    if (d) { CHECK(!gm_json_root(d)->is_int && gm_json_root(d)->num > 1e300); gm_json_free(d); }
    /* a number running to the very end of an unterminated buffer (no NUL after it) */
    char raw[3] = {'1', '2', '3'};
    d = parse_ok_n(raw, 3, __LINE__);
    if (d) { CHECK(gm_json_root(d)->is_int && gm_json_root(d)->i == 123); gm_json_free(d); }
}

static void test_malformed(void) {
    EXPECT_ERR("", "unexpected end of input");
    EXPECT_ERR("   \n  ", "unexpected end of input");
    EXPECT_ERR("\"abc", "unterminated string");
    EXPECT_ERR("\"abc\\", "unterminated string");
    EXPECT_ERR("[1, 2", "unterminated array");
    EXPECT_ERR("[1, 2,", "unexpected end of input");
    EXPECT_ERR("{\"a\": 1", "unterminated object");
    EXPECT_ERR("{\"a\"", "expected ':'");
    EXPECT_ERR("{\"a\": 1,", "expected a string key");
    EXPECT_ERR("{a: 1}", "expected a string key");
    EXPECT_ERR("{\"a\" 1}", "expected ':'");
    EXPECT_ERR("[1 2]", "expected ',' or ']'");
    EXPECT_ERR("{\"a\": 1 \"b\": 2}", "expected ',' or '}'");
    EXPECT_ERR("[1,]", "unexpected character");
    EXPECT_ERR("\"a\\qb\"", "bad escape");
    EXPECT_ERR("\"\\u12G4\"", "bad \\u escape");
    EXPECT_ERR("\"\\u12\"", "bad \\u escape");
    EXPECT_ERR("\"\\ud83d\"", "unpaired surrogate");          /* high surrogate alone */
    EXPECT_ERR("\"\\ud83dx\"", "unpaired surrogate");
    EXPECT_ERR("\"\\ud83d\\u0041\"", "unpaired surrogate");   /* high + non-low */
    EXPECT_ERR("\"\\ude00\"", "unpaired surrogate");          /* low surrogate alone */
    EXPECT_ERR("\"a\tb\"", "control character");
    EXPECT_ERR("\"a\nb\\n\"", "control character");           /* escaped path too */
    EXPECT_ERR("\"\xFF\"", "invalid UTF-8");
    EXPECT_ERR("\"\xC3\"", "invalid UTF-8");                  /* truncated sequence */
    EXPECT_ERR("\"\xC0\xAF\"", "invalid UTF-8");              /* overlong */
    EXPECT_ERR("\"\xED\xA0\x80\"", "invalid UTF-8");          /* UTF-8-encoded surrogate */
    EXPECT_ERR("\"\xF4\x90\x80\x80\"", "invalid UTF-8");      /* past U+10FFFF */
    EXPECT_ERR("\"\\n\xFF\"", "invalid UTF-8");               /* escaped path */
    EXPECT_ERR("{} x", "trailing characters");
    EXPECT_ERR("[1] [2]", "trailing characters");
    EXPECT_ERR("01", "leading zero");
    EXPECT_ERR("-01", "leading zero");
    EXPECT_ERR("-", "bad number");
    EXPECT_ERR("1.", "bad fraction");
    EXPECT_ERR("1.e5", "bad fraction");
    EXPECT_ERR("1e", "bad exponent");
    EXPECT_ERR("1e+", "bad exponent");
    EXPECT_ERR("+1", "unexpected character");
    EXPECT_ERR("tru", "unexpected token");
    EXPECT_ERR("nul", "unexpected token");
    EXPECT_ERR("falsy", "unexpected token");
    EXPECT_ERR("NaN", "unexpected character");
    EXPECT_ERR("'a'", "unexpected character");
    /* the position points at the fault: line 3, column 8 is the 'x' */
    EXPECT_ERR_AT("{\n  \"a\": 1,\n  \"b\": x\n}", "unexpected character", 3, 8);
    EXPECT_ERR_AT("[1,\n2,\n3 4]", "expected ',' or ']'", 3, 3);
    /* a NUL inside the buffer is not whitespace */
    expect_err_n("{}\0", 3, "trailing characters", 1, 3, __LINE__);
}

static void test_depth_bomb(void) {
    /* 100000 '[' must fail cleanly (depth limit), not overflow the stack. */
    size_t n = 100000;
    char *s = malloc(n);
    if (!s) { CHECK(0); return; }
    memset(s, '[', n);
    expect_err_n(s, n, "nesting", 1, 257, __LINE__); /* the 257th '[' */
    /* the same with objects */
    for (size_t i = 0; i + 5 <= n; i += 5) memcpy(s + i, "{\"a\":", 5);
    expect_err_n(s, n, "nesting", 0, 0, __LINE__);
    free(s);
    /* exactly at the limit (256) is allowed, one more is not */
    char lim[600];
    for (int i = 0; i < 256; i++) lim[i] = '[', lim[256 + i] = ']';
    gm_json_doc *d = parse_ok_n(lim, 512, __LINE__);
    gm_json_free(d);
    for (int i = 0; i < 257; i++) lim[i] = '[', lim[257 + i] = ']';
    expect_err_n(lim, 514, "nesting", 0, 0, __LINE__);
}

static void test_large_array(void) {
    /* Many items and nested arrays exercise the scratch stacks' growth and restoration. */
    size_t n = 5000, cap = n * 32 + 16, k = 0;
    char *s = malloc(cap);
    if (!s) { CHECK(0); return; }
    s[k++] = '[';
    for (size_t i = 0; i < n; i++) k += (size_t)snprintf(s + k, cap - k, i ? ",[%zu,{\"v\":%zu}]" : "[%zu,{\"v\":%zu}]", i, i);
    s[k++] = ']';
    gm_json_doc *d = parse_ok_n(s, k, __LINE__);
    if (d) {
        const gm_json *r = gm_json_root(d);
        CHECK(r->len == n);
        int ok = 1;
        for (size_t i = 0; i < r->len && ok; i++) {
            int64_t v = -1;
            ok = r->items[i].len == 2 && r->items[i].items[0].i == (int64_t)i &&
                 gm_json_get_int(&r->items[i].items[1], "v", &v) && v == (int64_t)i;
        }
        CHECK(ok);
        gm_json_free(d);
    }
    free(s);
}

int main(void) {
    test_valid_nested();
    test_typed_getters();
    test_escapes();
    test_numbers();
    test_malformed();
    test_depth_bomb();
    test_large_array();
    gm_json_free(NULL); /* allowed */
    TEST_DONE();
}
