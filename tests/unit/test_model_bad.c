/* Bad model directories: each case writes a small HF-layout directory under a mkdtemp() folder (config.json
 * + safetensors bytes written here, shaped like tests/golden/mqa_bf16) with one fault, and asserts that
 * gm_model_load fails with the right status and a message naming the file and the fault. Also session limits. */
#include <ftw.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gemma.h"
#include "testlib.h"

#define GOLDEN "tests/golden/mqa_bf16/model"
#define GOLDEN_SHARDED "tests/golden/mha_f32/model"

static char g_root[64];
static char *g_config; /* the golden config.json text */

/* ---- files ------------------------------------------------------------------------------------- */

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) { free(s); s = NULL; }
    if (s) s[n] = 0;
    fclose(f);
    return s;
}

static void write_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(data, 1, len, f) != len)) { perror(path); exit(2); }
    fclose(f);
}

static const char *path_in(const char *dir, const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

/* A fresh case directory holding the golden config.json (or `config` when given). */
static const char *case_dir(const char *tag, const char *config) {
    static char buf[256];
    snprintf(buf, sizeof buf, "%s/%s", g_root, tag);
    if (mkdir(buf, 0755) != 0) { perror(buf); exit(2); }
    const char *c = config ? config : g_config;
    write_bytes(path_in(buf, "config.json"), c, strlen(c));
    return buf;
}

/* The golden config with one substring replaced (a missing substring is a test bug: exit). */
static char *config_with(const char *from, const char *to) {
    const char *p = strstr(g_config, from);
    if (!p) { fprintf(stderr, "config_with: '%s' not in config.json\n", from); exit(2); }
    size_t a = (size_t)(p - g_config), n = strlen(g_config) - strlen(from) + strlen(to);
    char *s = malloc(n + 1);
    memcpy(s, g_config, a);
    strcpy(s + a, to);
    strcat(s, p + strlen(from));
    return s;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

/* ---- safetensors writer ------------------------------------------------------------------------ */

typedef struct {
    char name[96];
    char dtype[32];
    char shape[160]; /* JSON text of the shape array */
    char offs[80];   /* JSON text of data_offsets; empty = "[b, e]" */
    long long b, e;
} spec;

typedef struct {
    spec t[40];
    int n;
    size_t data_size;
} st_desc;

static void add(st_desc *d, const char *name, int64_t r, int64_t c) {
    spec *s = &d->t[d->n++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    strcpy(s->dtype, "BF16");
    long long n = c ? r * c : r;
    if (c) snprintf(s->shape, sizeof s->shape, "[%lld, %lld]", (long long)r, (long long)c);
    else snprintf(s->shape, sizeof s->shape, "[%lld]", (long long)r);
    s->b = (long long)d->data_size;
    s->e = s->b + 2 * n;
    d->data_size = (size_t)s->e;
}

/* Every tensor the golden mqa_bf16 config implies: vocab 384, d 96, 2 layers, 4 heads / 1 kv of 32, FFN 192. */
static void valid_desc(st_desc *d) {
    memset(d, 0, sizeof *d);
    const int V = 384, D = 96, Q = 128, KV = 32, F = 192;
    add(d, "model.embed_tokens.weight", V, D);
    for (int l = 0; l < 2; l++) {
        char n[96];
#define L(fmt, r, c) (snprintf(n, sizeof n, "model.layers.%d." fmt, l), add(d, n, r, c))
        L("input_layernorm.weight", D, 0);
        L("self_attn.q_proj.weight", Q, D);
        L("self_attn.k_proj.weight", KV, D);
        L("self_attn.v_proj.weight", KV, D);
        L("self_attn.o_proj.weight", D, Q);
        L("post_attention_layernorm.weight", D, 0);
        L("mlp.gate_proj.weight", F, D);
        L("mlp.up_proj.weight", F, D);
        L("mlp.down_proj.weight", D, F);
#undef L
    }
    add(d, "model.norm.weight", D, 0);
}

static spec *find_spec(st_desc *d, const char *name) {
    for (int i = 0; i < d->n; i++)
        if (strcmp(d->t[i].name, name) == 0) return &d->t[i];
    fprintf(stderr, "find_spec: no tensor %s\n", name);
    exit(2);
}

static void drop_spec(st_desc *d, const char *name) {
    spec *s = find_spec(d, name);
    int i = (int)(s - d->t);
    memmove(&d->t[i], &d->t[i + 1], (size_t)(d->n - i - 1) * sizeof *s);
    d->n--;
}

/* The JSON header for tensors [from, to) of d, offsets shifted by -base (shards restart at 0). */
static char *header_json(const st_desc *d, int from, int to, long long base) {
    size_t cap = 64 + (size_t)(to - from) * 512, k = 0;
    char *h = malloc(cap);
    k += (size_t)snprintf(h + k, cap - k, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = from; i < to; i++) {
        const spec *s = &d->t[i];
        char offs[80];
        if (s->offs[0]) snprintf(offs, sizeof offs, "%s", s->offs);
        else snprintf(offs, sizeof offs, "[%lld,%lld]", s->b - base, s->e - base);
        k += (size_t)snprintf(h + k, cap - k, ",\"%s\":{\"dtype\":%s%s%s,\"shape\":%s,\"data_offsets\":%s}", s->name,
                              s->dtype[0] == '#' ? "" : "\"", s->dtype[0] == '#' ? s->dtype + 1 : s->dtype,
                              s->dtype[0] == '#' ? "" : "\"", s->shape, offs);
    }
    snprintf(h + k, cap - k, "}");
    return h;
}

/* Write 8-byte LE header length (hlen_field, or the real length when ~0) + header + data_size zero bytes,
 * then cut the file to `keep` bytes when keep < its length. */
static void write_st_raw(const char *path, const char *hdr, uint64_t hlen_field, size_t data_size, size_t keep) {
    size_t hl = strlen(hdr), n = 8 + hl + data_size;
    unsigned char *b = calloc(1, n);
    uint64_t v = hlen_field == ~(uint64_t)0 ? hl : hlen_field;
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
    memcpy(b + 8, hdr, hl);
    write_bytes(path, b, keep < n ? keep : n);
    free(b);
}

static void write_st(const char *dir, const st_desc *d) {
    char *h = header_json(d, 0, d->n, 0);
    write_st_raw(path_in(dir, "model.safetensors"), h, ~(uint64_t)0, d->data_size, SIZE_MAX);
    free(h);
}

/* A directory with the golden config and safetensors from d. */
static const char *st_case(const char *tag, const st_desc *d) {
    const char *dir = case_dir(tag, NULL);
    write_st(dir, d);
    return dir;
}

/* ---- sharded directories ----------------------------------------------------------------------- */

#define SHARD1 "model-00001-of-00002.safetensors"
#define SHARD2 "model-00002-of-00002.safetensors"

/* Two shards (tensors [0, split) and [split, n)) and an index mapping each tensor to its shard; entries
 * named in over_name get over_val as their raw JSON value instead. */
static const char *sharded_case(const char *tag, const st_desc *d, const char *over_name, const char *over_val) {
    const char *dir = case_dir(tag, NULL);
    int split = d->n / 2;
    long long base = d->t[split].b;
    char *h1 = header_json(d, 0, split, 0), *h2 = header_json(d, split, d->n, base);
    write_st_raw(path_in(dir, SHARD1), h1, ~(uint64_t)0, (size_t)base, SIZE_MAX);
    write_st_raw(path_in(dir, SHARD2), h2, ~(uint64_t)0, d->data_size - (size_t)base, SIZE_MAX);
    free(h1);
    free(h2);
    size_t cap = 256 + (size_t)d->n * 160, k = 0;
    char *ix = malloc(cap);
    k += (size_t)snprintf(ix + k, cap - k, "{\"metadata\": {\"total_size\": %zu}, \"weight_map\": {", d->data_size);
    for (int i = 0; i < d->n; i++) {
        const char *val = i < split ? "\"" SHARD1 "\"" : "\"" SHARD2 "\"";
        if (over_name && strcmp(over_name, d->t[i].name) == 0) val = over_val;
        k += (size_t)snprintf(ix + k, cap - k, "%s\"%s\": %s", i ? ", " : "", d->t[i].name, val);
    }
    snprintf(ix + k, cap - k, "}}");
    write_bytes(path_in(dir, "model.safetensors.index.json"), ix, strlen(ix));
    free(ix);
    return dir;
}

/* ---- assertions -------------------------------------------------------------------------------- */

/* Load `dir` (read and mmap); expect status `want`, no model, and a message with both fragments. */
static void expect_fail_at(const char *dir, gm_status want, const char *file_frag, const char *fault_frag, int line) {
    for (int mm = 0; mm < 2; mm++) {
        gm_load_options o = gm_load_options_default();
        o.use_mmap = mm;
        gm_model *m = (gm_model *)1;
        gm_clear_error();
        gm_status st = gm_model_load(dir, &o, &m);
        const char *msg = gm_last_error();
        tl_checks++;
        if (st != want || m != NULL) {
            tl_failures++;
            fprintf(stderr, "%s:%d: %s (mmap %d): want status %d, got %d: %s\n", __FILE__, line, dir, mm, want, st, msg);
            if (st == GM_OK) gm_model_free(m);
            continue;
        }
        tl_checks++;
        if (!strcasestr(msg, file_frag) || !strcasestr(msg, fault_frag)) {
            tl_failures++;
            fprintf(stderr, "%s:%d: %s: message lacks '%s' or '%s': %s\n", __FILE__, line, dir, file_frag, fault_frag, msg);
        }
    }
}
#define EXPECT_FAIL(dir, want, file_frag, fault_frag) expect_fail_at((dir), (want), (file_frag), (fault_frag), __LINE__)

/* ---- cases ------------------------------------------------------------------------------------- */

static void test_control(void) {
    st_desc d;
    valid_desc(&d);
    const char *dir = st_case("valid", &d);
    for (int mm = 0; mm < 2; mm++) {
        gm_load_options o = gm_load_options_default();
        o.use_mmap = mm;
        gm_model *m = NULL;
        CHECK_OK(gm_model_load(dir, &o, &m));
        if (m) {
            const gm_config *c = gm_model_config(m);
            CHECK(c->vocab_size == 384 && c->hidden_size == 96 && c->n_layers == 2 && c->n_heads == 4 &&
                  c->n_kv_heads == 1 && c->head_dim == 32 && c->ffn_size == 192 && c->max_pos == 256);
            CHECK(gm_model_n_params(m) == d.data_size / 2);
        }
        gm_model_free(m);
    }
    /* the same tensors split over two shards with an index */
    dir = sharded_case("valid_sharded", &d, NULL, NULL);
    gm_model *m = NULL;
    CHECK_OK(gm_model_load(dir, NULL, &m));
    gm_model_free(m);
    /* and the checked-in goldens, single file and sharded */
    m = NULL;
    CHECK_OK(gm_model_load(GOLDEN, NULL, &m));
    gm_model_free(m);
    m = NULL;
    CHECK_OK(gm_model_load(GOLDEN_SHARDED, NULL, &m));
    gm_model_free(m);
}

static void test_safetensors_framing(void) {
    st_desc d;
    valid_desc(&d);
    char *h = header_json(&d, 0, d.n, 0);
    const char *dir;

    /* shorter than the 8-byte length field */
    dir = case_dir("short5", NULL);
    write_bytes(path_in(dir, "model.safetensors"), "\x10\0\0\0\0", 5);
    EXPECT_FAIL(dir, GM_ERR_FORMAT, "model.safetensors", "truncated");

    /* an empty file */
    dir = case_dir("empty", NULL);
    write_bytes(path_in(dir, "model.safetensors"), "", 0);
    EXPECT_FAIL(dir, GM_ERR_FORMAT, "model.safetensors", "truncated");

    /* header length one past the end of the file */
    dir = case_dir("hlen_past", NULL);
    write_st_raw(path_in(dir, "model.safetensors"), h, strlen(h) + 1, 0, SIZE_MAX);
    EXPECT_FAIL(dir, GM_ERR_FORMAT, "model.safetensors", "past the end");

    /* header length 2^63 (would overflow 8 + hlen) */
    dir = case_dir("hlen_huge", NULL);
    write_st_raw(path_in(dir, "model.safetensors"), h, (uint64_t)1 << 63, d.data_size, SIZE_MAX);
    EXPECT_FAIL(dir, GM_ERR_FORMAT, "model.safetensors", "past the end");

    /* header length all ones */
    dir = case_dir("hlen_max", NULL);
    write_st_raw(path_in(dir, "model.safetensors"), h, ~(uint64_t)0 - 1, d.data_size, SIZE_MAX);
    EXPECT_FAIL(dir, GM_ERR_FORMAT, "model.safetensors", "past the end");

    /* header length 1: too short to be a JSON object */
    dir = case_dir("hlen_one", NULL);
    write_st_raw(path_in(dir, "model.safetensors"), "{", ~(uint64_t)0, 64, SIZE_MAX);
    EXPECT_FAIL(dir, GM_ERR_FORMAT, "model.safetensors", "too short");

    /* file cut in the middle of the header */
    dir = case_dir("cut_header", NULL);
    write_st_raw(path_in(dir, "model.safetensors"), h, ~(uint64_t)0, d.data_size, 8 + strlen(h) / 2);
    EXPECT_FAIL(dir, GM_ERR_FORMAT, "model.safetensors", "past the end");

    /* file cut in the middle of the tensor data */
    dir = case_dir("cut_data", NULL);
    write_st_raw(path_in(dir, "model.safetensors"), h, ~(uint64_t)0, d.data_size, 8 + strlen(h) + d.data_size - 100);
    EXPECT_FAIL(dir, GM_ERR_FORMAT, "model.safetensors", "truncated");

    /* header not JSON */
    dir = case_dir("hdr_not_json", NULL);
    write_st_raw(path_in(dir, "model.safetensors"), "{\"a\": nope}", ~(uint64_t)0, 0, SIZE_MAX);
    EXPECT_FAIL(dir, GM_ERR_FORMAT, "model.safetensors", "JSON");

    /* header binary garbage (invalid UTF-8 inside a string) */
    dir = case_dir("hdr_garbage", NULL);
    write_st_raw(path_in(dir, "model.safetensors"), "{\"\xff\xfe\": 1}", ~(uint64_t)0, 0, SIZE_MAX);
    EXPECT_FAIL(dir, GM_ERR_FORMAT, "model.safetensors", "UTF-8");

    /* header JSON but not an object */
    dir = case_dir("hdr_array", NULL);
    write_st_raw(path_in(dir, "model.safetensors"), "[1, 2, 3]", ~(uint64_t)0, 0, SIZE_MAX);
    EXPECT_FAIL(dir, GM_ERR_FORMAT, "model.safetensors", "not a JSON object");

    /* a tensor entry that is not an object */
    dir = case_dir("entry_not_object", NULL);
    write_st_raw(path_in(dir, "model.safetensors"), "{\"model.norm.weight\": 5}", ~(uint64_t)0, 0, SIZE_MAX);
    EXPECT_FAIL(dir, GM_ERR_FORMAT, "model.safetensors", "not an object");

    /* __metadata__ that is not an object */
    dir = case_dir("meta_not_object", NULL);
    write_st_raw(path_in(dir, "model.safetensors"), "{\"__metadata__\": [1]}", ~(uint64_t)0, 0, SIZE_MAX);
    EXPECT_FAIL(dir, GM_ERR_FORMAT, "model.safetensors", "__metadata__");

    /* the same tensor name twice */
    dir = case_dir("dup_name", NULL);
    write_st_raw(path_in(dir, "model.safetensors"),
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                 ~(uint64_t)0, 8, SIZE_MAX);
    EXPECT_FAIL(dir, GM_ERR_FORMAT, "model.safetensors", "listed twice");
    free(h);
}

static void test_safetensors_offsets(void) {
    st_desc d;

    /* data_offsets past the data section (span still matches the shape) */
    valid_desc(&d);
    spec *s = find_spec(&d, "model.norm.weight");
    s->b += 2, s->e += 2;
    EXPECT_FAIL(st_case("offs_past", &d), GM_ERR_FORMAT, "model.safetensors", "past the data");

    /* offsets near INT64_MAX */
    valid_desc(&d);
    snprintf(find_spec(&d, "model.norm.weight")->offs, 80, "[9223372036854775615, 9223372036854775807]");
    EXPECT_FAIL(st_case("offs_huge", &d), GM_ERR_FORMAT, "model.safetensors", "past the data");

    /* begin > end */
    valid_desc(&d);
    s = find_spec(&d, "model.norm.weight");
    snprintf(s->offs, sizeof s->offs, "[%lld, %lld]", s->e, s->b);
    EXPECT_FAIL(st_case("offs_reversed", &d), GM_ERR_FORMAT, "model.safetensors", "after end");

    /* negative, non-integer and malformed offsets */
    valid_desc(&d);
    snprintf(find_spec(&d, "model.norm.weight")->offs, 80, "[-2, 190]");
    EXPECT_FAIL(st_case("offs_negative", &d), GM_ERR_FORMAT, "model.safetensors", "data_offsets");
    valid_desc(&d);
    snprintf(find_spec(&d, "model.norm.weight")->offs, 80, "[0.5, 192.5]");
    EXPECT_FAIL(st_case("offs_float", &d), GM_ERR_FORMAT, "model.safetensors", "data_offsets");
    valid_desc(&d);
    snprintf(find_spec(&d, "model.norm.weight")->offs, 80, "[0]");
    EXPECT_FAIL(st_case("offs_one", &d), GM_ERR_FORMAT, "model.safetensors", "data_offsets");

    /* two tensors overlapping: a norm placed inside the embedding's bytes */
    valid_desc(&d);
    s = find_spec(&d, "model.layers.0.input_layernorm.weight");
    s->b = 1000, s->e = 1192;
    EXPECT_FAIL(st_case("overlap", &d), GM_ERR_FORMAT, "model.safetensors", "overlap");

    /* an overlap with an empty tensor sorted between the two overlapping ones */
    valid_desc(&d);
    add(&d, "z", 0, 0);
    s = &d.t[d.n - 1];
    s->b = s->e = 100;
    s = find_spec(&d, "model.layers.0.input_layernorm.weight");
    s->b = 200, s->e = 392;
    EXPECT_FAIL(st_case("overlap_around_empty", &d), GM_ERR_FORMAT, "model.safetensors", "overlap");

    /* shape x dtype != span: span one element short */
    valid_desc(&d);
    find_spec(&d, "model.norm.weight")->e -= 2;
    EXPECT_FAIL(st_case("span_short", &d), GM_ERR_FORMAT, "model.safetensors", "data_offsets span");

    /* shape x dtype != span: F32 dtype over BF16-sized bytes */
    valid_desc(&d);
    strcpy(find_spec(&d, "model.norm.weight")->dtype, "F32");
    EXPECT_FAIL(st_case("span_dtype", &d), GM_ERR_FORMAT, "model.safetensors", "data_offsets span");
}

static void test_safetensors_dtype_shape(void) {
    st_desc d;

    /* a real safetensors dtype we do not support */
    valid_desc(&d);
    strcpy(find_spec(&d, "model.norm.weight")->dtype, "I64");
    EXPECT_FAIL(st_case("dtype_i64", &d), GM_ERR_UNSUPPORTED, "model.safetensors", "dtype 'I64'");

    /* garbage dtype names */
    valid_desc(&d);
    strcpy(find_spec(&d, "model.norm.weight")->dtype, "bf16x\\u00e9");
    EXPECT_FAIL(st_case("dtype_garbage", &d), GM_ERR_UNSUPPORTED, "model.safetensors", "dtype");
    valid_desc(&d);
    strcpy(find_spec(&d, "model.norm.weight")->dtype, "");
    EXPECT_FAIL(st_case("dtype_empty", &d), GM_ERR_UNSUPPORTED, "model.safetensors", "dtype");
    /* dtype not a string */
    valid_desc(&d);
    strcpy(find_spec(&d, "model.norm.weight")->dtype, "#16");
    EXPECT_FAIL(st_case("dtype_number", &d), GM_ERR_FORMAT, "model.safetensors", "dtype");

    /* negative dimension */
    valid_desc(&d);
    strcpy(find_spec(&d, "model.norm.weight")->shape, "[-96]");
    EXPECT_FAIL(st_case("shape_negative", &d), GM_ERR_FORMAT, "model.safetensors", "shape[0]");

    /* non-integer dimension */
    valid_desc(&d);
    strcpy(find_spec(&d, "model.norm.weight")->shape, "[96.0]");
    EXPECT_FAIL(st_case("shape_float", &d), GM_ERR_FORMAT, "model.safetensors", "shape[0]");
    valid_desc(&d);
    strcpy(find_spec(&d, "model.norm.weight")->shape, "[\"96\"]");
    EXPECT_FAIL(st_case("shape_string", &d), GM_ERR_FORMAT, "model.safetensors", "shape[0]");

    /* dimension past int64 */
    valid_desc(&d);
    strcpy(find_spec(&d, "model.norm.weight")->shape, "[18446744073709551616]");
    EXPECT_FAIL(st_case("shape_past_int64", &d), GM_ERR_FORMAT, "model.safetensors", "shape[0]");

    /* dimensions whose product overflows 64 bits */
    valid_desc(&d);
    strcpy(find_spec(&d, "model.norm.weight")->shape, "[4294967296, 4294967296, 4294967296]");
    EXPECT_FAIL(st_case("shape_overflow", &d), GM_ERR_FORMAT, "model.safetensors", "overflow");

    /* elements fit but bytes (x 2 for BF16) overflow */
    valid_desc(&d);
    strcpy(find_spec(&d, "model.norm.weight")->shape, "[9223372036854775807]");
    EXPECT_FAIL(st_case("shape_bytes_overflow", &d), GM_ERR_FORMAT, "model.safetensors", "overflow");

    /* too many dimensions */
    valid_desc(&d);
    strcpy(find_spec(&d, "model.norm.weight")->shape, "[1, 1, 1, 1, 1, 1, 1, 1, 96]");
    EXPECT_FAIL(st_case("shape_many_dims", &d), GM_ERR_FORMAT, "model.safetensors", "dimensions");

    /* shape missing / not an array */
    valid_desc(&d);
    strcpy(find_spec(&d, "model.norm.weight")->shape, "96");
    EXPECT_FAIL(st_case("shape_scalar", &d), GM_ERR_FORMAT, "model.safetensors", "shape");
}

static void test_tensor_set(void) {
    st_desc d;

    /* a required tensor missing */
    valid_desc(&d);
    drop_spec(&d, "model.layers.1.mlp.up_proj.weight");
    EXPECT_FAIL(st_case("missing_tensor", &d), GM_ERR_FORMAT, "model.layers.1.mlp.up_proj.weight", "missing tensor");

    /* an extra tensor (an untied lm_head) */
    valid_desc(&d);
    add(&d, "lm_head.weight", 384, 96);
    EXPECT_FAIL(st_case("extra_tensor", &d), GM_ERR_FORMAT, "model.safetensors", "unexpected tensor 'lm_head.weight'");

    /* a layer past num_hidden_layers */
    valid_desc(&d);
    add(&d, "model.layers.2.input_layernorm.weight", 96, 0);
    EXPECT_FAIL(st_case("extra_layer", &d), GM_ERR_FORMAT, "model.safetensors", "unexpected tensor");

    /* shape mismatch with config.json: q_proj transposed (same byte count) */
    valid_desc(&d);
    strcpy(find_spec(&d, "model.layers.0.self_attn.q_proj.weight")->shape, "[96, 128]");
    EXPECT_FAIL(st_case("q_transposed", &d), GM_ERR_FORMAT, "model.safetensors", "shape [96, 128]");

    /* a norm stored as a 2-D [96, 1] matrix */
    valid_desc(&d);
    strcpy(find_spec(&d, "model.layers.1.post_attention_layernorm.weight")->shape, "[96, 1]");
    EXPECT_FAIL(st_case("norm_2d", &d), GM_ERR_FORMAT, "model.safetensors", "shape");

    /* embedding for a different vocabulary than config.json says */
    valid_desc(&d);
    strcpy(find_spec(&d, "model.embed_tokens.weight")->shape, "[768, 48]");
    EXPECT_FAIL(st_case("embed_shape", &d), GM_ERR_FORMAT, "model.safetensors", "embed_tokens");
}

static void test_config(void) {
    st_desc d;
    valid_desc(&d);
    char *c;
    const char *dir;
#define CONFIG_CASE(tag, text, want, fault)                     \
    do {                                                        \
        dir = case_dir(tag, text);                              \
        write_st(dir, &d);                                      \
        EXPECT_FAIL(dir, want, "config.json", fault);           \
    } while (0)

    CONFIG_CASE("cfg_malformed", "{\"model_type\": \"gemma\", \"hidden_size\": 96,", GM_ERR_FORMAT, "JSON");
    CONFIG_CASE("cfg_trailing_comma", (c = config_with("\"vocab_size\": 384", "\"vocab_size\": 384,")), GM_ERR_FORMAT,
                "JSON");
    free(c);
    CONFIG_CASE("cfg_empty", "", GM_ERR_FORMAT, "JSON");
    CONFIG_CASE("cfg_not_object", "[1, 2]", GM_ERR_FORMAT, "not a JSON object");
    CONFIG_CASE("cfg_no_hidden", (c = config_with("\"hidden_size\": 96,", "")), GM_ERR_FORMAT, "hidden_size");
    free(c);
    CONFIG_CASE("cfg_hidden_string", (c = config_with("\"hidden_size\": 96", "\"hidden_size\": \"96\"")),
                GM_ERR_FORMAT, "hidden_size");
    free(c);
    CONFIG_CASE("cfg_kv_not_divisor", (c = config_with("\"num_key_value_heads\": 1", "\"num_key_value_heads\": 3")),
                GM_ERR_FORMAT, "multiple");
    free(c);
    CONFIG_CASE("cfg_kv_zero", (c = config_with("\"num_key_value_heads\": 1", "\"num_key_value_heads\": 0")),
                GM_ERR_FORMAT, "num_key_value_heads");
    free(c);
    CONFIG_CASE("cfg_hidden_1e12", (c = config_with("\"hidden_size\": 96", "\"hidden_size\": 1e12")), GM_ERR_FORMAT,
                "hidden_size");
    free(c);
    CONFIG_CASE("cfg_hidden_huge", (c = config_with("\"hidden_size\": 96", "\"hidden_size\": 1000000000000")),
                GM_ERR_FORMAT, "out of range");
    free(c);
    CONFIG_CASE("cfg_hidden_neg", (c = config_with("\"hidden_size\": 96", "\"hidden_size\": -96")), GM_ERR_FORMAT,
                "out of range");
    free(c);
    CONFIG_CASE("cfg_vocab_zero", (c = config_with("\"vocab_size\": 384", "\"vocab_size\": 0")), GM_ERR_FORMAT,
                "vocab_size");
    free(c);
    CONFIG_CASE("cfg_layers_huge", (c = config_with("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 2147483648")),
                GM_ERR_FORMAT, "num_hidden_layers");
    free(c);
    CONFIG_CASE("cfg_ctx_neg", (c = config_with("\"max_position_embeddings\": 256", "\"max_position_embeddings\": -1")),
                GM_ERR_FORMAT, "max_position_embeddings");
    free(c);
    CONFIG_CASE("cfg_head_dim_odd", (c = config_with("\"head_dim\": 32", "\"head_dim\": 33")), GM_ERR_FORMAT,
                "head_dim");
    free(c);
    /* head_dim absent and hidden_size < heads: the implied head_dim is 0 (found by fuzz_config) */
    {
        char *c1 = config_with("\"head_dim\": 32,", "");
        char *save = g_config;
        g_config = c1;
        c = config_with("\"hidden_size\": 96", "\"hidden_size\": 2");
        g_config = save;
        free(c1);
    }
    CONFIG_CASE("cfg_head_dim_zero", c, GM_ERR_FORMAT, "head_dim");
    free(c);
    CONFIG_CASE("cfg_eps_neg", (c = config_with("\"rms_norm_eps\": 1e-06", "\"rms_norm_eps\": -1")), GM_ERR_FORMAT,
                "rms_norm_eps");
    free(c);
    /* positive as a double, 0 as a float (found by fuzz.config) */
    CONFIG_CASE("cfg_eps_underflow", (c = config_with("\"rms_norm_eps\": 1e-06", "\"rms_norm_eps\": 1e-86")),
                GM_ERR_FORMAT, "rms_norm_eps");
    free(c);
    CONFIG_CASE("cfg_llama", (c = config_with("\"model_type\": \"gemma\"", "\"model_type\": \"llama\"")),
                GM_ERR_UNSUPPORTED, "llama");
    free(c);
    CONFIG_CASE("cfg_no_type", (c = config_with("\"model_type\": \"gemma\",", "")), GM_ERR_FORMAT, "model_type");
    free(c);
    /* a consistent but different config: the checkpoint's shapes no longer match it */
    dir = case_dir("cfg_vs_tensors", (c = config_with("\"intermediate_size\": 192", "\"intermediate_size\": 256")));
    free(c);
    write_st(dir, &d);
    EXPECT_FAIL(dir, GM_ERR_FORMAT, "model.safetensors", "config.json implies");

    /* config.json absent, or a directory */
    dir = case_dir("cfg_absent", NULL);
    write_st(dir, &d);
    remove(path_in(dir, "config.json"));
    EXPECT_FAIL(dir, GM_ERR_IO, "config.json", "cannot open");
    dir = case_dir("cfg_is_dir", NULL);
    write_st(dir, &d);
    remove(path_in(dir, "config.json"));
    mkdir(path_in(dir, "config.json"), 0755);
    EXPECT_FAIL(dir, GM_ERR_IO, "config.json", "");
#undef CONFIG_CASE
}

static void test_files(void) {
    /* no weights at all */
    const char *dir = case_dir("no_weights", NULL);
    EXPECT_FAIL(dir, GM_ERR_IO, "model.safetensors", "no model.safetensors");
    /* a directory that does not exist */
    char missing[128];
    snprintf(missing, sizeof missing, "%s/does-not-exist", g_root);
    EXPECT_FAIL(missing, GM_ERR_IO, "does-not-exist/config.json", "cannot open");
}

static void test_index(void) {
    st_desc d;
    valid_desc(&d);
    const char *dir;
    const char *IX = "model.safetensors.index.json";

    /* malformed index JSON */
    dir = sharded_case("ix_malformed", &d, NULL, NULL);
    write_bytes(path_in(dir, IX), "{\"weight_map\": {", 16);
    EXPECT_FAIL(dir, GM_ERR_FORMAT, IX, "JSON");

    /* index without a weight_map object */
    dir = sharded_case("ix_no_map", &d, NULL, NULL);
    write_bytes(path_in(dir, IX), "{\"weight_map\": []}", 18);
    EXPECT_FAIL(dir, GM_ERR_FORMAT, IX, "weight_map");

    /* weight_map pointing to a shard that does not exist */
    dir = sharded_case("ix_missing_shard", &d, "model.norm.weight", "\"model-00003-of-00003.safetensors\"");
    EXPECT_FAIL(dir, GM_ERR_IO, "model-00003-of-00003.safetensors", "cannot open");

    /* weight_map escaping the model directory */
    dir = sharded_case("ix_dotdot", &d, "model.norm.weight", "\"../" SHARD2 "\"");
    EXPECT_FAIL(dir, GM_ERR_FORMAT, IX, "model directory");
    dir = sharded_case("ix_abs", &d, "model.norm.weight", "\"/etc/passwd\"");
    EXPECT_FAIL(dir, GM_ERR_FORMAT, IX, "model directory");
    dir = sharded_case("ix_dotdot_only", &d, "model.norm.weight", "\"..\"");
    EXPECT_FAIL(dir, GM_ERR_FORMAT, IX, "model directory");

    /* weight_map value that is not a string */
    dir = sharded_case("ix_number", &d, "model.norm.weight", "7");
    EXPECT_FAIL(dir, GM_ERR_FORMAT, IX, "weight_map entry");

    /* a tensor listed in the wrong shard (it is in shard 2, the index says shard 1) */
    dir = sharded_case("ix_wrong_shard", &d, "model.norm.weight", "\"" SHARD1 "\"");
    EXPECT_FAIL(dir, GM_ERR_FORMAT, IX, "maps it to");

    /* a tensor the index omits entirely */
    dir = sharded_case("ix_omitted", &d, NULL, NULL);
    {
        char *ix = read_text(path_in(dir, IX));
        char *p = ix ? strstr(ix, ", \"model.norm.weight\": \"" SHARD2 "\"") : NULL;
        if (p) memmove(p, p + strlen(", \"model.norm.weight\": \"" SHARD2 "\""), strlen(p) - strlen(", \"model.norm.weight\": \"" SHARD2 "\"") + 1);
        CHECK(p != NULL);
        if (ix) write_bytes(path_in(dir, IX), ix, strlen(ix));
        free(ix);
    }
    EXPECT_FAIL(dir, GM_ERR_FORMAT, IX, "nothing");

    /* a shard that is itself corrupt: the fault names the shard */
    dir = sharded_case("ix_bad_shard", &d, NULL, NULL);
    write_bytes(path_in(dir, SHARD2), "\x01\x02", 2);
    EXPECT_FAIL(dir, GM_ERR_FORMAT, SHARD2, "truncated");

    /* a shard holding a tensor the index does not list and the model does not use */
    {
        st_desc e = d;
        add(&e, "model.extra.weight", 4, 0);
        dir = sharded_case("ix_stray", &e, "model.extra.weight", "\"" SHARD2 "\"");
        /* drop the stray tensor from the index again so only the shard carries it */
        char *ix = read_text(path_in(dir, IX));
        char *p = ix ? strstr(ix, ", \"model.extra.weight\"") : NULL;
        if (p) strcpy(p, "}}");
        CHECK(p != NULL);
        if (ix) write_bytes(path_in(dir, IX), ix, strlen(ix));
        free(ix);
        EXPECT_FAIL(dir, GM_ERR_FORMAT, SHARD2, "unexpected tensor 'model.extra.weight'");
    }

    /* the same tensor stored in both shards */
    {
        st_desc e = d;
        /* duplicate the first tensor of shard 1 at the end (so it lands in shard 2) */
        spec first = e.t[0];
        first.b = (long long)e.data_size, first.e = first.b + (d.t[0].e - d.t[0].b);
        e.t[e.n++] = first;
        e.data_size = (size_t)first.e;
        /* the valid index (case_dir's buffer is reused, so take the text before making this case's dir) */
        char *ix = read_text(path_in(sharded_case("ix_dup_src", &d, NULL, NULL), IX));
        /* keep the split where it was so shard 1 still holds the original */
        dir = case_dir("ix_dup_across", NULL);
        int split = d.n / 2;
        long long base = e.t[split].b;
        char *h1 = header_json(&e, 0, split, 0), *h2 = header_json(&e, split, e.n, base);
        write_st_raw(path_in(dir, SHARD1), h1, ~(uint64_t)0, (size_t)base, SIZE_MAX);
        write_st_raw(path_in(dir, SHARD2), h2, ~(uint64_t)0, e.data_size - (size_t)base, SIZE_MAX);
        free(h1);
        free(h2);
        if (ix) write_bytes(path_in(dir, IX), ix, strlen(ix));
        free(ix);
        EXPECT_FAIL(dir, GM_ERR_FORMAT, "", "more than one shard");
    }
}

static void test_session_limits(void) {
    gm_model *m = NULL;
    CHECK_OK(gm_model_load(GOLDEN, NULL, &m));
    if (!m) return;
    gm_session *s = NULL;
    /* a context larger than max_position_embeddings (256), or empty */
    CHECK(gm_session_new(m, 257, 1, &s) == GM_ERR_ARG && s == NULL);
    CHECK(gm_session_new(m, 0, 1, &s) == GM_ERR_ARG && s == NULL);
    CHECK_OK(gm_session_new(m, 8, 1, &s));
    if (s) {
        int32_t ids[16];
        for (int i = 0; i < 16; i++) ids[i] = 2 + i;
        /* more tokens than the session's context */
        gm_status st = gm_session_eval(s, ids, 9, NULL);
        CHECKF(st == GM_ERR_ARG && strstr(gm_last_error(), "context"), "%d: %s", st, gm_last_error());
        CHECK(gm_session_pos(s) == 0);
        /* out-of-range token ids: past the vocabulary, and negative */
        ids[3] = 384;
        st = gm_session_eval(s, ids, 4, NULL);
        CHECKF(st == GM_ERR_ARG && strstr(gm_last_error(), "384"), "%d: %s", st, gm_last_error());
        ids[3] = -1;
        CHECK(gm_session_eval(s, ids, 4, NULL) == GM_ERR_ARG);
        ids[3] = 5;
        CHECK(gm_session_eval(s, ids, 0, NULL) == GM_ERR_ARG);
        CHECK(gm_session_pos(s) == 0);
        /* filling the context in steps: the step that would pass it fails and leaves the position alone */
        CHECK_OK(gm_session_eval(s, ids, 5, NULL));
        CHECK(gm_session_eval(s, ids, 4, NULL) == GM_ERR_ARG);
        CHECK(gm_session_pos(s) == 5);
        CHECK_OK(gm_session_eval(s, ids, 3, NULL));
        CHECK(gm_session_pos(s) == 8);
        CHECK(gm_session_eval(s, ids, 1, NULL) == GM_ERR_ARG);
        const float *lg = gm_session_logits(s);
        CHECK(lg != NULL);
    }
    gm_session_free(s);
    gm_model_free(m);
}

int main(void) {
    g_config = read_text(GOLDEN "/config.json");
    if (!g_config) {
        fprintf(stderr, "cannot read %s/config.json (run from the repository root)\n", GOLDEN);
        return 1;
    }
    strcpy(g_root, "/tmp/gm_model_bad_XXXXXX");
    if (!mkdtemp(g_root)) {
        perror("mkdtemp");
        return 1;
    }
    test_control();
    test_safetensors_framing();
    test_safetensors_offsets();
    test_safetensors_dtype_shape();
    test_tensor_set();
    test_config();
    test_files();
    test_index();
    test_session_limits();
    if (!getenv("GM_KEEP_TMP")) nftw(g_root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    else fprintf(stderr, "kept %s\n", g_root);
    free(g_config);
    TEST_DONE();
}
