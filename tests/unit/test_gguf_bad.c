/* Hostile GGUF files: one case per fault class of the reader (header, counts, strings, arrays, value
 * types, keys, alignment, tensor infos, offsets), of the model loader (metadata and tensors) and of the
 * tokenizer metadata. Each must fail with the right status and a message naming the file and the fault,
 * without a crash, and huge counts in small files must fail at once (nothing is sized from them). */
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "formats/gguf.h"
#include "gemma.h"
#include "model/model_internal.h"
#include "testlib.h"
#include "tokenizer/vocab.h"

static char g_root[64];

/* ---- a byte builder for hand-made files --------------------------------------------------------- */

typedef struct {
    unsigned char *p;
    size_t n, cap;
} bb;

static void put(bb *b, const void *s, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}
static void u32(bb *b, uint32_t v) {
    unsigned char t[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
    put(b, t, 4);
}
static void u64(bb *b, uint64_t v) {
    u32(b, (uint32_t)v);
    u32(b, (uint32_t)(v >> 32));
}
static void str(bb *b, const char *s) {
    u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void header(bb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    put(b, "GGUF", 4);
    u32(b, version);
    u64(b, n_tensors);
    u64(b, n_kv);
}
static void kv_u32(bb *b, const char *key, uint32_t v) {
    str(b, key);
    u32(b, GM_GGUF_U32);
    u32(b, v);
}
static void tensor(bb *b, const char *name, uint32_t nd, const uint64_t *ne, uint32_t type, uint64_t off) {
    str(b, name);
    u32(b, nd);
    for (uint32_t i = 0; i < nd; i++) u64(b, ne[i]);
    u32(b, type);
    u64(b, off);
}
static void pad(bb *b, size_t a) {
    while (b->n % a) put(b, "", 1);
}
static void zeros(bb *b, size_t n) {
    for (size_t i = 0; i < n; i++) put(b, "", 1);
}

/* Parse b as "NAME.gguf": expect status `want` and every needle in the message (the name is always one). */
static void expect(bb *b, const char *name, gm_status want, const char *n1, const char *n2) {
    char what[64];
    snprintf(what, sizeof what, "%s.gguf", name);
    gm_gguf *g = NULL;
    clock_t t0 = clock();
    gm_status st = gm_gguf_parse(b->p, b->n, what, &g);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    const char *msg = gm_last_error();
    CHECKF(st == want, "%s: status %d, want %d (%s)", name, st, want, msg);
    CHECKF(g == NULL, "%s: a handle came back with an error", name);
    CHECKF(strstr(msg, what) != NULL, "%s: message does not name the file: %s", name, msg);
    CHECKF(!n1 || strstr(msg, n1), "%s: message lacks '%s': %s", name, n1, msg);
    CHECKF(!n2 || strstr(msg, n2), "%s: message lacks '%s': %s", name, n2, msg);
    CHECKF(secs < 0.5, "%s: took %.2f s to fail", name, secs);
    gm_gguf_close(g);
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---- reader faults -------------------------------------------------------------------------------- */

static void test_header(void) {
    bb b = {0};
    put(&b, "GGUX", 4), u32(&b, 3), u64(&b, 0), u64(&b, 0);
    expect(&b, "magic", GM_ERR_FORMAT, "not a GGUF file", NULL);
    put(&b, "GG", 2);
    expect(&b, "tiny", GM_ERR_FORMAT, "not a GGUF file", NULL);
    header(&b, 1, 0, 0);
    expect(&b, "v1", GM_ERR_UNSUPPORTED, "version 1", NULL);
    header(&b, 4, 0, 0);
    expect(&b, "v4", GM_ERR_UNSUPPORTED, "version 4", NULL);
    header(&b, 0x03000000u, 0, 0);
    expect(&b, "bigendian", GM_ERR_UNSUPPORTED, "big-endian", NULL);
    put(&b, "GGUF", 4), u32(&b, 3), u32(&b, 0);
    expect(&b, "truncated", GM_ERR_FORMAT, "truncated", "tensor count");
    /* counts far beyond what a 100-byte file can hold fail before anything is allocated */
    header(&b, 3, 0, (uint64_t)1 << 40);
    zeros(&b, 76);
    expect(&b, "kv_count", GM_ERR_FORMAT, "key/value count 1099511627776", "cannot fit");
    header(&b, 3, (uint64_t)1 << 40, 0);
    zeros(&b, 76);
    expect(&b, "tensor_count", GM_ERR_FORMAT, "tensor count 1099511627776", "cannot fit");
    header(&b, 3, ~(uint64_t)0, ~(uint64_t)0);
    expect(&b, "counts_max", GM_ERR_FORMAT, "cannot fit", NULL);
    header(&b, 2, 0, 1); /* version 2 is read like 3 */
    kv_u32(&b, "k", 1);
    gm_gguf *g = NULL;
    CHECK_OK(gm_gguf_parse(b.p, b.n, "v2.gguf", &g));
    CHECK(g && gm_gguf_version(g) == 2 && gm_gguf_n_kv(g) == 1);
    gm_gguf_close(g);
    free(b.p);
}

static void test_strings_arrays(void) {
    bb b = {0};
    header(&b, 3, 0, 1);
    u64(&b, 1000), put(&b, "key", 3), zeros(&b, 16);
    expect(&b, "key_len", GM_ERR_FORMAT, "length 1000", "past the end");
    header(&b, 3, 0, 1);
    u64(&b, (uint64_t)1 << 63), put(&b, "key", 3), zeros(&b, 16);
    expect(&b, "key_len_2p63", GM_ERR_FORMAT, "length 9223372036854775808", NULL);
    header(&b, 3, 0, 1);
    u64(&b, ~(uint64_t)0), put(&b, "key", 3), zeros(&b, 16);
    expect(&b, "key_len_max", GM_ERR_FORMAT, "past the end", NULL);
    header(&b, 3, 0, 1);
    str(&b, "s"), u32(&b, GM_GGUF_STRING), u64(&b, 99), put(&b, "abc", 3);
    expect(&b, "value_len", GM_ERR_FORMAT, "key 's'", "past the end");
    header(&b, 3, 0, 1);
    u64(&b, 0), u32(&b, GM_GGUF_U32), u32(&b, 1);
    expect(&b, "empty_key", GM_ERR_FORMAT, "empty", NULL);
    header(&b, 3, 0, 1);
    u64(&b, 3), put(&b, "a\0b", 3), u32(&b, GM_GGUF_U32), u32(&b, 1);
    expect(&b, "nul_key", GM_ERR_FORMAT, "NUL", NULL);
    header(&b, 3, 0, 2);
    kv_u32(&b, "dup", 1), kv_u32(&b, "dup", 2);
    expect(&b, "dup_key", GM_ERR_FORMAT, "'dup' appears twice", NULL);
    header(&b, 3, 0, 1);
    str(&b, "t"), u32(&b, 13), u32(&b, 0);
    expect(&b, "value_type", GM_ERR_FORMAT, "unknown value type 13", NULL);
    header(&b, 3, 0, 1);
    str(&b, "a"), u32(&b, GM_GGUF_ARRAY), u32(&b, 77), u64(&b, 1), u32(&b, 0);
    expect(&b, "elem_type", GM_ERR_FORMAT, "unknown value type 77", NULL);
    header(&b, 3, 0, 1);
    str(&b, "a"), u32(&b, GM_GGUF_ARRAY), u32(&b, GM_GGUF_ARRAY), u64(&b, 1), u32(&b, GM_GGUF_U8), u64(&b, 0);
    expect(&b, "nested", GM_ERR_UNSUPPORTED, "array of arrays", NULL);
    header(&b, 3, 0, 1); /* 2^62 f32 elements: the byte count would overflow */
    str(&b, "a"), u32(&b, GM_GGUF_ARRAY), u32(&b, GM_GGUF_F32), u64(&b, (uint64_t)1 << 62), zeros(&b, 16);
    expect(&b, "arr_len", GM_ERR_FORMAT, "array of 4611686018427387904 f32", "past the end");
    header(&b, 3, 0, 1); /* 2^40 strings in a few bytes: refused before the offset table is sized */
    str(&b, "a"), u32(&b, GM_GGUF_ARRAY), u32(&b, GM_GGUF_STRING), u64(&b, (uint64_t)1 << 40), zeros(&b, 64);
    expect(&b, "arr_strings", GM_ERR_FORMAT, "array of 1099511627776 strings", "cannot fit");
    header(&b, 3, 0, 1);
    str(&b, "a"), u32(&b, GM_GGUF_ARRAY), u32(&b, GM_GGUF_STRING), u64(&b, 2), str(&b, "ok"), u64(&b, 1 << 20);
    expect(&b, "arr_str_len", GM_ERR_FORMAT, "element 1", "past the end");
    header(&b, 3, 0, 1);
    str(&b, "x"), u32(&b, GM_GGUF_U64), u32(&b, 1);
    expect(&b, "scalar_trunc", GM_ERR_FORMAT, "truncated", NULL);
}

static void test_alignment(void) {
    static const struct {
        const char *name;
        uint32_t type, value;
        const char *needle;
    } cases[] = {
        {"align_npot", GM_GGUF_U32, 48, "not a power of two"},
        {"align_zero", GM_GGUF_U32, 0, "not a power of two"},
        {"align_huge", GM_GGUF_U32, 1u << 21, "1 MiB"},
        {"align_type", GM_GGUF_I32, 32, "must be u32"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bb b = {0};
        header(&b, 3, 0, 1);
        str(&b, "general.alignment"), u32(&b, cases[i].type), u32(&b, cases[i].value);
        expect(&b, cases[i].name, GM_ERR_FORMAT, cases[i].needle, NULL);
    }
}

/* One tensor info after a general.alignment of 32, then `data` bytes of zeros. */
static void one_tensor(bb *b, const char *name, uint32_t nd, const uint64_t *ne, uint32_t type, uint64_t off, size_t data) {
    header(b, 3, 1, 0);
    tensor(b, name, nd, ne, type, off);
    pad(b, 32);
    zeros(b, data);
}

static void test_tensors(void) {
    bb b = {0};
    uint64_t ne[5] = {4, 2, 1, 1, 1};
    one_tensor(&b, "t", 0, ne, 0, 0, 32);
    expect(&b, "ndims0", GM_ERR_FORMAT, "0 dimensions", NULL);
    one_tensor(&b, "t", 5, ne, 0, 0, 32);
    expect(&b, "ndims5", GM_ERR_FORMAT, "5 dimensions", NULL);
    uint64_t big[2] = {(uint64_t)1 << 32, (uint64_t)1 << 32};
    one_tensor(&b, "t", 2, big, 0, 0, 32);
    expect(&b, "dims_overflow", GM_ERR_FORMAT, "product of its dimensions overflows", NULL);
    uint64_t neg[2] = {4, (uint64_t)-3};
    one_tensor(&b, "t", 2, neg, 0, 0, 32);
    expect(&b, "dims_negative", GM_ERR_FORMAT, "negative", NULL);
    uint64_t bytes_ovf[2] = {(uint64_t)1 << 31, (uint64_t)1 << 31};
    one_tensor(&b, "t", 2, bytes_ovf, 0, 0, 32); /* 2^62 elements x 4 bytes */
    expect(&b, "bytes_overflow", GM_ERR_FORMAT, "overflows", NULL);
    one_tensor(&b, "t", 2, ne, 99, 0, 32);
    expect(&b, "type_unknown", GM_ERR_UNSUPPORTED, "ggml type 99", NULL);
    one_tensor(&b, "t", 2, ne, 3 /* Q4_1 */, 0, 32);
    expect(&b, "type_q4_1", GM_ERR_UNSUPPORTED, "ggml type 3", NULL);
    uint64_t q_odd[2] = {33, 1};
    one_tensor(&b, "t", 2, q_odd, 8 /* Q8_0 */, 0, 64);
    expect(&b, "q8_row", GM_ERR_FORMAT, "not a multiple of its block (32)", NULL);
    one_tensor(&b, "t", 2, ne, 0, 0, 16); /* needs 32 bytes */
    expect(&b, "data_short", GM_ERR_FORMAT, "runs past the end of the data section", NULL);
    one_tensor(&b, "t", 2, ne, 0, (uint64_t)1 << 62, 32);
    expect(&b, "offset_huge", GM_ERR_FORMAT, "runs past the end", NULL);
    one_tensor(&b, "t", 2, ne, 0, 8, 64);
    expect(&b, "offset_misaligned", GM_ERR_FORMAT, "not a multiple of the alignment 32", NULL);
    header(&b, 3, 1, 0); /* no room for the data section after the infos */
    tensor(&b, "t", 2, ne, 0, 0);
    expect(&b, "no_data", GM_ERR_FORMAT, "past the end", NULL);
    header(&b, 3, 2, 0);
    uint64_t ne64[1] = {16};
    tensor(&b, "a", 1, ne64, 0, 0);
    tensor(&b, "b", 1, ne64, 0, 32); /* a covers [0, 64) */
    pad(&b, 32), zeros(&b, 128);
    expect(&b, "overlap", GM_ERR_FORMAT, "'a' and 'b' overlap", NULL);
    header(&b, 3, 2, 0);
    tensor(&b, "a", 2, ne, 0, 0);
    tensor(&b, "a", 2, ne, 0, 32);
    pad(&b, 32), zeros(&b, 64);
    expect(&b, "dup_tensor", GM_ERR_FORMAT, "'a' is listed twice", NULL);
    char longname[80];
    memset(longname, 'n', 64), longname[64] = 0;
    one_tensor(&b, longname, 2, ne, 0, 0, 32);
    expect(&b, "long_name", GM_ERR_FORMAT, "64-byte name", NULL);
    one_tensor(&b, "", 2, ne, 0, 0, 32);
    expect(&b, "empty_name", GM_ERR_FORMAT, "empty name", NULL);
}

/* Typed getters: a key of another type is "wrong type", never reinterpreted. */
static void test_getters(void) {
    bb b = {0};
    header(&b, 3, 0, 3);
    str(&b, "tokenizer.ggml.scores"), u32(&b, GM_GGUF_ARRAY), u32(&b, GM_GGUF_U8), u64(&b, 3), put(&b, "\1\2\3", 3);
    str(&b, "neg"), u32(&b, GM_GGUF_I32), u32(&b, (uint32_t)-5);
    str(&b, "s"), u32(&b, GM_GGUF_STRING), u64(&b, 3), put(&b, "a\0b", 3);
    gm_gguf *g = NULL;
    CHECK_OK(gm_gguf_parse(b.p, b.n, "getters.gguf", &g));
    if (g) {
        size_t k;
        uint64_t n;
        uint32_t u;
        const char *s;
        CHECK(gm_gguf_get_arr(g, "tokenizer.ggml.scores", GM_GGUF_F32, &k, &n) == GM_ERR_FORMAT &&
              strstr(gm_last_error(), "getters.gguf") && strstr(gm_last_error(), "wrong type") &&
              strstr(gm_last_error(), "tokenizer.ggml.scores"));
        CHECK(gm_gguf_get_u32(g, "neg", &u) == GM_ERR_FORMAT && strstr(gm_last_error(), "-5 is out of range"));
        CHECK(gm_gguf_get_str(g, "s", &s) == GM_ERR_FORMAT && strstr(gm_last_error(), "NUL"));
        CHECK(gm_gguf_get_str(g, "tokenizer.ggml.scores", &s) == GM_ERR_FORMAT);
    }
    gm_gguf_close(g);
    free(b.p);
}

/* A real file: the path is in the message. */
static void test_open(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/truncated.gguf", g_root);
    FILE *f = fopen(path, "wb");
    fwrite("GGUF\3\0\0\0\1\0", 1, 10, f);
    fclose(f);
    gm_gguf *g = NULL;
    CHECK(gm_gguf_open(path, 1, &g) == GM_ERR_FORMAT && !g && strstr(gm_last_error(), path) &&
          strstr(gm_last_error(), "truncated"));
    CHECK(gm_gguf_open("/nonexistent/x.gguf", 0, &g) == GM_ERR_IO && strstr(gm_last_error(), "/nonexistent/x.gguf"));
    gm_model *m = NULL;
    CHECK(gm_model_load(path, NULL, &m) == GM_ERR_FORMAT && !m && strstr(gm_last_error(), path));
}

/* ---- model metadata and tensors ----------------------------------------------------------------- */

enum {
    F_NONE, F_NO_BLOCKS, F_D_STRING, F_ARCH, F_NO_TENSOR, F_SHAPE, F_EXTRA, F_KV_HEADS, F_NORM_Q8, F_TOKENS_N,
    F_VLEN, F_ROPE_TYPE, F_EPS_RANGE, F_NO_EMBED,
};

/* A small gemma file (d 32, 1 layer, 2 heads, 1 kv head, hd 16, ffn 64, vocab 8) with one fault. */
static gm_status write_model(const char *path, int fault) {
    static float buf[8192];
    static unsigned char q8[34 * 64];
    gm_gguf_writer *w;
    gm_status st = gm_gguf_writer_new(&w);
    if (st) return st;
    gm_gguf_add_str(w, "general.architecture", fault == F_ARCH ? "llama" : "gemma");
    gm_gguf_add_u32(w, "gemma.context_length", 64);
    if (fault == F_D_STRING) gm_gguf_add_str(w, "gemma.embedding_length", "32");
    else gm_gguf_add_u32(w, "gemma.embedding_length", 32);
    if (fault != F_NO_BLOCKS) gm_gguf_add_u32(w, "gemma.block_count", 1);
    gm_gguf_add_u32(w, "gemma.feed_forward_length", 64);
    gm_gguf_add_u32(w, "gemma.attention.head_count", 2);
    gm_gguf_add_u32(w, "gemma.attention.head_count_kv", fault == F_KV_HEADS ? 3 : 1);
    gm_gguf_add_f32(w, "gemma.attention.layer_norm_rms_epsilon", fault == F_EPS_RANGE ? 3.0f : 1e-6f);
    gm_gguf_add_u32(w, "gemma.attention.key_length", 16);
    gm_gguf_add_u32(w, "gemma.attention.value_length", fault == F_VLEN ? 32 : 16);
    if (fault == F_ROPE_TYPE) gm_gguf_add_str(w, "gemma.rope.scaling.type", "yarn");
    if (fault == F_TOKENS_N) {
        const char *toks[3] = {"<unk>", "a", "b"};
        gm_gguf_add_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, 3);
    }
    for (int i = 0; i < 8192; i++) buf[i] = 0.01f * (float)(i % 7);
    int64_t emb[2] = {32, 8}, d1[1] = {32}, q[2] = {32, 32}, kv[2] = {32, 16}, o[2] = {32, 32}, up[2] = {32, 64},
            down[2] = {64, 32}, bad[2] = {32, 9};
    if (fault != F_NO_EMBED) gm_gguf_add_tensor(w, "token_embd.weight", GM_DT_F32, 2, emb, buf);
    if (fault == F_NORM_Q8) gm_gguf_add_tensor(w, "blk.0.attn_norm.weight", GM_DT_Q8_0, 1, d1, q8);
    else gm_gguf_add_tensor(w, "blk.0.attn_norm.weight", GM_DT_F32, 1, d1, buf);
    gm_gguf_add_tensor(w, "blk.0.attn_q.weight", GM_DT_F32, 2, fault == F_SHAPE ? bad : q, buf);
    gm_gguf_add_tensor(w, "blk.0.attn_k.weight", GM_DT_F32, 2, kv, buf);
    gm_gguf_add_tensor(w, "blk.0.attn_v.weight", GM_DT_F32, 2, kv, buf);
    gm_gguf_add_tensor(w, "blk.0.attn_output.weight", GM_DT_F32, 2, o, buf);
    gm_gguf_add_tensor(w, "blk.0.ffn_norm.weight", GM_DT_F32, 1, d1, buf);
    gm_gguf_add_tensor(w, "blk.0.ffn_gate.weight", GM_DT_F32, 2, up, buf);
    gm_gguf_add_tensor(w, "blk.0.ffn_up.weight", GM_DT_F32, 2, up, buf);
    if (fault != F_NO_TENSOR) gm_gguf_add_tensor(w, "blk.0.ffn_down.weight", GM_DT_F32, 2, down, buf);
    gm_gguf_add_tensor(w, "output_norm.weight", GM_DT_F32, 1, d1, buf);
    if (fault == F_EXTRA) gm_gguf_add_tensor(w, "output.weight", GM_DT_F32, 2, emb, buf);
    st = gm_gguf_writer_write(w, path);
    gm_gguf_writer_free(w);
    return st;
}

static void test_model(void) {
    static const struct {
        int fault;
        gm_status want;
        const char *n1, *n2;
    } cases[] = {
        {F_NO_BLOCKS, GM_ERR_FORMAT, "missing key 'gemma.block_count'", NULL},
        {F_D_STRING, GM_ERR_FORMAT, "gemma.embedding_length", "wrong type"},
        {F_ARCH, GM_ERR_UNSUPPORTED, "general.architecture 'llama'", NULL},
        {F_NO_TENSOR, GM_ERR_FORMAT, "missing tensor 'blk.0.ffn_down.weight'", NULL},
        {F_SHAPE, GM_ERR_FORMAT, "'blk.0.attn_q.weight'", "{32, 9}"},
        {F_EXTRA, GM_ERR_FORMAT, "unexpected tensor 'output.weight'", NULL},
        {F_KV_HEADS, GM_ERR_FORMAT, "not a multiple of head_count_kv 3", NULL},
        {F_NORM_Q8, GM_ERR_UNSUPPORTED, "norm tensor 'blk.0.attn_norm.weight' is Q8_0", NULL},
        {F_TOKENS_N, GM_ERR_FORMAT, "3 tokens but token_embd.weight has 8 rows", NULL},
        {F_VLEN, GM_ERR_UNSUPPORTED, "value_length 32", NULL},
        {F_ROPE_TYPE, GM_ERR_UNSUPPORTED, "'yarn'", NULL},
        {F_EPS_RANGE, GM_ERR_FORMAT, "layer_norm_rms_epsilon", "out of range"},
        {F_NO_EMBED, GM_ERR_FORMAT, "missing tensor 'token_embd.weight'", NULL},
    };
    char path[128];
    snprintf(path, sizeof path, "%s/model.gguf", g_root);
    CHECK_OK(write_model(path, F_NONE));
    gm_model *m = NULL;
    CHECK_OK(gm_model_load(path, NULL, &m));
    if (m) CHECK(gm_model_config(m)->vocab_size == 8 && gm_model_config(m)->head_dim == 16);
    gm_model_free(m);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(path, sizeof path, "%s/model_%d.gguf", g_root, cases[i].fault);
        CHECK_OK(write_model(path, cases[i].fault));
        m = NULL;
        gm_status st = gm_model_load(path, NULL, &m);
        const char *msg = gm_last_error();
        CHECKF(st == cases[i].want && !m, "fault %d: status %d want %d (%s)", cases[i].fault, st, cases[i].want, msg);
        CHECKF(strstr(msg, path) != NULL, "fault %d: message does not name the file: %s", cases[i].fault, msg);
        CHECKF(strstr(msg, cases[i].n1) != NULL, "fault %d: message lacks '%s': %s", cases[i].fault, cases[i].n1, msg);
        CHECKF(!cases[i].n2 || strstr(msg, cases[i].n2), "fault %d: message lacks '%s': %s", cases[i].fault, cases[i].n2, msg);
        gm_model_free(m);
    }
}

/* ---- tokenizer metadata ------------------------------------------------------------------------- */

enum { T_OK, T_MODEL, T_BYTE_TEXT, T_TYPE_RANGE, T_SCORES_U8, T_SCORES_N, T_TWO_UNK, T_BOS_RANGE, T_EMPTY, T_SOME_BYTES, T_NAN };

static gm_status write_tok(const char *path, int fault) {
    const char *toks[262];
    char bytes[256][8];
    float scores[262];
    int32_t types[262];
    int n = 0;
    toks[n] = "<pad>", types[n++] = 3;
    toks[n] = "<eos>", types[n++] = 3;
    toks[n] = "<bos>", types[n++] = 3;
    toks[n] = fault == T_EMPTY ? "" : "<unk>", types[n++] = 2;
    for (int i = 0; i < 256; i++) {
        snprintf(bytes[i], sizeof bytes[i], "<0x%02X>", i);
        toks[n] = bytes[i], types[n++] = 6;
    }
    toks[n] = "\xE2\x96\x81" "a", types[n++] = 1;
    toks[n] = "b", types[n++] = 1;
    for (int i = 0; i < n; i++) scores[i] = -(float)i;
    if (fault == T_BYTE_TEXT) toks[4 + 0x41] = "<0x4g>";
    if (fault == T_TYPE_RANGE) types[260] = 9;
    if (fault == T_TWO_UNK) types[261] = 2;
    if (fault == T_NAN) scores[5] = NAN;
    int nt = n;
    if (fault == T_SOME_BYTES) { /* byte tokens 250..255 become normal pieces */
        for (int i = 250; i < 256; i++) types[4 + i] = 1;
    }
    gm_gguf_writer *w;
    gm_status st = gm_gguf_writer_new(&w);
    if (st) return st;
    gm_gguf_add_str(w, "tokenizer.ggml.model", fault == T_MODEL ? "gpt2" : "llama");
    gm_gguf_add_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, (size_t)nt);
    if (fault == T_SCORES_U8) {
        unsigned char u8[262] = {0};
        gm_gguf_add_arr(w, "tokenizer.ggml.scores", GM_GGUF_U8, u8, (size_t)nt);
    } else {
        gm_gguf_add_arr(w, "tokenizer.ggml.scores", GM_GGUF_F32, scores, (size_t)(fault == T_SCORES_N ? nt - 1 : nt));
    }
    gm_gguf_add_arr(w, "tokenizer.ggml.token_type", GM_GGUF_I32, types, (size_t)nt);
    gm_gguf_add_u32(w, "tokenizer.ggml.bos_token_id", fault == T_BOS_RANGE ? 5000 : 2);
    gm_gguf_add_u32(w, "tokenizer.ggml.eos_token_id", 1);
    gm_gguf_add_u32(w, "tokenizer.ggml.unknown_token_id", 3);
    gm_gguf_add_u32(w, "tokenizer.ggml.padding_token_id", 0);
    gm_gguf_add_bool(w, "tokenizer.ggml.add_space_prefix", 0);
    st = gm_gguf_writer_write(w, path);
    gm_gguf_writer_free(w);
    return st;
}

static void test_tokenizer(void) {
    static const struct {
        int fault;
        gm_status want;
        const char *n1, *n2;
    } cases[] = {
        {T_MODEL, GM_ERR_UNSUPPORTED, "tokenizer.ggml.model 'gpt2'", NULL},
        {T_BYTE_TEXT, GM_ERR_FORMAT, "tokenizer.ggml.tokens[69]", "is not <0xHH>"},
        {T_TYPE_RANGE, GM_ERR_FORMAT, "tokenizer.ggml.token_type[260] = 9", NULL},
        {T_SCORES_U8, GM_ERR_FORMAT, "tokenizer.ggml.scores", "wrong type"},
        {T_SCORES_N, GM_ERR_FORMAT, "tokenizer.ggml.scores has 261 entries for 262 tokens", NULL},
        {T_TWO_UNK, GM_ERR_FORMAT, "marks 2 tokens UNKNOWN", NULL},
        {T_BOS_RANGE, GM_ERR_FORMAT, "tokenizer.ggml.bos_token_id = 5000", NULL},
        {T_EMPTY, GM_ERR_FORMAT, "tokenizer.ggml.tokens[3] is empty", NULL},
        {T_SOME_BYTES, GM_ERR_FORMAT, "250 byte tokens", NULL},
        {T_NAN, GM_ERR_FORMAT, "tokenizer.ggml.scores[5] is not finite", NULL},
    };
    char path[128];
    snprintf(path, sizeof path, "%s/tok.gguf", g_root);
    CHECK_OK(write_tok(path, T_OK));
    gm_tokenizer *t = NULL;
    CHECK_OK(gm_tokenizer_load_gguf(path, &t));
    if (t) {
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK_OK(gm_tokenizer_encode(t, "ab\x01", 3, GM_TOK_ADD_BOS, &ids, &n));
        /* no dummy prefix (so no "▁a"); "a" falls back to <0x61>, "b" is a piece, \x01 is <0x01> */
        CHECK(n == 4 && ids[0] == 2 && ids[1] == 4 + 'a' && ids[2] == 261 && ids[3] == 4 + 1);
        free(ids);
    }
    gm_tokenizer_free(t);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(path, sizeof path, "%s/tok_%d.gguf", g_root, cases[i].fault);
        CHECK_OK(write_tok(path, cases[i].fault));
        t = NULL;
        gm_status st = gm_tokenizer_load_gguf(path, &t);
        const char *msg = gm_last_error();
        CHECKF(st == cases[i].want && !t, "tokenizer fault %d: status %d want %d (%s)", cases[i].fault, st, cases[i].want, msg);
        CHECKF(strstr(msg, path) != NULL, "tokenizer fault %d: message does not name the file: %s", cases[i].fault, msg);
        CHECKF(strstr(msg, cases[i].n1) != NULL, "tokenizer fault %d: message lacks '%s': %s", cases[i].fault, cases[i].n1, msg);
        CHECKF(!cases[i].n2 || strstr(msg, cases[i].n2), "tokenizer fault %d: message lacks '%s': %s", cases[i].fault,
               cases[i].n2, msg);
        gm_tokenizer_free(t);
    }
    /* a file without tokenizer metadata */
    snprintf(path, sizeof path, "%s/model.gguf", g_root);
    CHECK(gm_tokenizer_load_gguf(path, &t) == GM_ERR_FORMAT && strstr(gm_last_error(), "tokenizer.ggml.model"));
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

int main(void) {
    snprintf(g_root, sizeof g_root, "/tmp/gm_gguf_bad.XXXXXX");
    if (!mkdtemp(g_root)) {
        perror("mkdtemp");
        return 2;
    }
    test_header();
    test_strings_arrays();
    test_alignment();
    test_tensors();
    test_getters();
    test_open();
    test_model();
    test_tokenizer();
    nftw(g_root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    TEST_DONE();
}
