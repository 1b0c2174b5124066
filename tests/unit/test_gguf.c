/* GGUF round trips: every value type through the writer and reader; the golden checkpoints converted to
 * GGUF f32 give the reference logits (1e-4 relative, as test_golden); GGUF -> HF -> GGUF is byte-stable
 * for f32 and bf16; the tokenizer survives GGUF metadata (same ids as tokenizer.model, same vocabulary);
 * Q8_0 / Q4_0 files take llama.cpp's per-tensor types and stay close to the bf16 model. */
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file.h"
#include "base/json.h"
#include "formats/gguf.h"
#include "formats/spm_model.h"
#include "gemma.h"
#include "model/model_internal.h"
#include "testlib.h"
#include "tokenizer/vocab.h"

static char g_root[64];

static const char *tmp_path(const char *name) {
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_root, name);
    return buf[k];
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static int contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

/* ---- 1. every value type, tensors, alignment ---------------------------------------------------- */

static void test_values(void) {
    gm_gguf_writer *w;
    CHECK_OK(gm_gguf_writer_new(&w));
    if (!w) return;
    CHECK_OK(gm_gguf_writer_set_alignment(w, 64));
    CHECK_OK(gm_gguf_add_u32(w, "a.u32", 4000000000u));
    CHECK_OK(gm_gguf_add_i32(w, "a.i32", -7));
    CHECK_OK(gm_gguf_add_u64(w, "a.u64", 1ull << 40));
    CHECK_OK(gm_gguf_add_f32(w, "a.f32", 1.5f));
    CHECK_OK(gm_gguf_add_bool(w, "a.bool", 1));
    CHECK_OK(gm_gguf_add_str(w, "a.str", "hello"));
    uint8_t u8[3] = {1, 2, 255};
    int8_t i8[2] = {-1, 5};
    uint16_t u16[2] = {65535, 3};
    int16_t i16[2] = {-300, 300};
    int32_t i32[3] = {-1, 0, 2147483647};
    uint32_t u32[2] = {7, 8};
    float f32[2] = {0.25f, -3.0f};
    uint64_t u64[1] = {~0ull};
    int64_t i64[1] = {-5};
    double f64[1] = {2.5};
    uint8_t bools[2] = {0, 1};
    CHECK_OK(gm_gguf_add_arr(w, "arr.u8", GM_GGUF_U8, u8, 3));
    CHECK_OK(gm_gguf_add_arr(w, "arr.i8", GM_GGUF_I8, i8, 2));
    CHECK_OK(gm_gguf_add_arr(w, "arr.u16", GM_GGUF_U16, u16, 2));
    CHECK_OK(gm_gguf_add_arr(w, "arr.i16", GM_GGUF_I16, i16, 2));
    CHECK_OK(gm_gguf_add_arr(w, "arr.i32", GM_GGUF_I32, i32, 3));
    CHECK_OK(gm_gguf_add_arr(w, "arr.u32", GM_GGUF_U32, u32, 2));
    CHECK_OK(gm_gguf_add_arr(w, "arr.f32", GM_GGUF_F32, f32, 2));
    CHECK_OK(gm_gguf_add_arr(w, "arr.u64", GM_GGUF_U64, u64, 1));
    CHECK_OK(gm_gguf_add_arr(w, "arr.i64", GM_GGUF_I64, i64, 1));
    CHECK_OK(gm_gguf_add_arr(w, "arr.f64", GM_GGUF_F64, f64, 1));
    CHECK_OK(gm_gguf_add_arr(w, "arr.bool", GM_GGUF_BOOL, bools, 2));
    CHECK_OK(gm_gguf_add_arr(w, "arr.empty", GM_GGUF_F32, NULL, 0));
    const char *strs[3] = {"x", "", "z\xE2\x96\x81"};
    CHECK_OK(gm_gguf_add_arr_str(w, "arr.str", strs, NULL, 3));
    /* writer misuse */
    CHECK(gm_gguf_add_u32(w, "a.u32", 1) == GM_ERR_ARG);
    CHECK(gm_gguf_add_u32(w, "", 1) == GM_ERR_ARG);
    CHECK(gm_gguf_writer_set_alignment(w, 48) == GM_ERR_ARG);
    CHECK(gm_gguf_add_arr(w, "arr.bad", GM_GGUF_STRING, NULL, 0) == GM_ERR_ARG);

    float t0[6] = {1, 2, 3, 4, 5, 6};
    uint16_t t1[5] = {0x3f80, 0x4000, 0x4040, 0x4080, 0x40a0};
    float q[64];
    for (int i = 0; i < 64; i++) q[i] = (float)i / 8 - 4;
    unsigned char t2[2 * 34];
    gm_dtype_info(GM_DT_Q8_0)->from_f32(q, t2, 64);
    int64_t ne0[2] = {3, 2}, ne1[1] = {5}, ne2[2] = {32, 2}, ne_odd[2] = {33, 1};
    CHECK_OK(gm_gguf_add_tensor(w, "t.f32", GM_DT_F32, 2, ne0, t0));
    CHECK_OK(gm_gguf_add_tensor(w, "t.bf16", GM_DT_BF16, 1, ne1, t1));
    CHECK_OK(gm_gguf_add_tensor(w, "t.q8", GM_DT_Q8_0, 2, ne2, t2));
    CHECK(gm_gguf_add_tensor(w, "t.f32", GM_DT_F32, 2, ne0, t0) == GM_ERR_ARG);
    CHECK(gm_gguf_add_tensor(w, "t.odd", GM_DT_Q8_0, 2, ne_odd, t2) == GM_ERR_ARG);
    CHECK(gm_gguf_add_tensor(w, "0123456789012345678901234567890123456789012345678901234567890123", GM_DT_F32, 2, ne0,
                             t0) == GM_ERR_ARG);
    const char *path = tmp_path("values.gguf");
    CHECK_OK(gm_gguf_writer_write(w, path));
    gm_gguf_writer_free(w);

    for (int mode = 0; mode < 3; mode++) {
        gm_gguf *g = NULL;
        gm_file_buf fb = {0};
        unsigned char *shifted = NULL;
        if (mode < 2) {
            CHECK_OK(gm_gguf_open(path, mode, &g));
        } else { /* a buffer at an odd address: tensors get aligned copies */
            CHECK_OK(gm_file_load(path, 0, &fb));
            shifted = malloc(fb.size + 1);
            memcpy(shifted + 1, fb.data, fb.size);
            CHECK_OK(gm_gguf_parse(shifted + 1, fb.size, "shifted", &g));
        }
        if (!g) continue;
        CHECK(gm_gguf_version(g) == 3);
        CHECK(gm_gguf_alignment(g) == 64);
        CHECK(gm_gguf_data_offset(g) % 64 == 0);
        uint32_t u;
        int32_t i;
        uint64_t q64;
        float f;
        int b;
        const char *s;
        CHECK_OK(gm_gguf_get_u32(g, "a.u32", &u));
        CHECK(u == 4000000000u);
        CHECK_OK(gm_gguf_get_i32(g, "a.i32", &i));
        CHECK(i == -7);
        CHECK_OK(gm_gguf_get_u64(g, "a.u64", &q64));
        CHECK(q64 == 1ull << 40);
        CHECK_OK(gm_gguf_get_f32(g, "a.f32", &f));
        CHECK(f == 1.5f);
        CHECK_OK(gm_gguf_get_bool(g, "a.bool", &b));
        CHECK(b == 1);
        CHECK_OK(gm_gguf_get_str(g, "a.str", &s));
        CHECK(!strcmp(s, "hello"));
        CHECK_OK(gm_gguf_get_u32(g, "general.alignment", &u));
        CHECK(u == 64);
        /* integer getters convert when the value fits, refuse when it does not */
        CHECK(gm_gguf_get_u32(g, "a.i32", &u) == GM_ERR_FORMAT && contains(gm_last_error(), "out of range"));
        CHECK(gm_gguf_get_i32(g, "a.u32", &i) == GM_ERR_FORMAT);
        CHECK_OK(gm_gguf_get_u64(g, "a.u32", &q64));
        CHECK(gm_gguf_get_f32(g, "a.u32", &f) == GM_ERR_FORMAT && contains(gm_last_error(), "wrong type"));
        CHECK(gm_gguf_get_str(g, "a.u32", &s) == GM_ERR_FORMAT && contains(gm_last_error(), "wrong type"));
        CHECK(gm_gguf_get_u32(g, "no.such", &u) == GM_ERR_FORMAT && contains(gm_last_error(), "missing key 'no.such'"));
        size_t k;
        uint64_t n;
        CHECK_OK(gm_gguf_get_arr(g, "arr.i32", GM_GGUF_I32, &k, &n));
        CHECK(n == 3 && gm_gguf_arr_i32(g, k, 0) == -1 && gm_gguf_arr_i32(g, k, 2) == 2147483647);
        CHECK_OK(gm_gguf_get_arr(g, "arr.u32", GM_GGUF_U32, &k, &n));
        CHECK(n == 2 && gm_gguf_arr_u32(g, k, 1) == 8);
        CHECK_OK(gm_gguf_get_arr(g, "arr.f32", GM_GGUF_F32, &k, &n));
        CHECK(n == 2 && gm_gguf_arr_f32(g, k, 0) == 0.25f && gm_gguf_arr_f32(g, k, 1) == -3.0f);
        CHECK_OK(gm_gguf_get_arr(g, "arr.empty", GM_GGUF_F32, &k, &n));
        CHECK(n == 0);
        CHECK_OK(gm_gguf_get_arr(g, "arr.u16", GM_GGUF_U16, &k, &n));
        const unsigned char *raw = gm_gguf_arr_data(g, k);
        CHECK(n == 2 && raw[0] == 0xFF && raw[1] == 0xFF && raw[2] == 3);
        CHECK_OK(gm_gguf_get_arr(g, "arr.f64", GM_GGUF_F64, &k, &n));
        double d;
        memcpy(&d, gm_gguf_arr_data(g, k), 8);
        CHECK(n == 1 && d == 2.5);
        CHECK_OK(gm_gguf_get_arr(g, "arr.bool", GM_GGUF_BOOL, &k, &n));
        CHECK(n == 2 && ((const unsigned char *)gm_gguf_arr_data(g, k))[1] == 1);
        CHECK_OK(gm_gguf_get_arr(g, "arr.str", GM_GGUF_STRING, &k, &n));
        size_t len;
        const char *e = gm_gguf_arr_str(g, k, 2, &len);
        CHECK(n == 3 && len == 4 && !memcmp(e, "z\xE2\x96\x81", 4));
        gm_gguf_arr_str(g, k, 1, &len);
        CHECK(len == 0);
        /* arrays: the element type must be exactly the caller's */
        CHECK(gm_gguf_get_arr(g, "arr.u8", GM_GGUF_F32, &k, &n) == GM_ERR_FORMAT && contains(gm_last_error(), "wrong type") &&
              contains(gm_last_error(), "an array of u8"));
        CHECK(gm_gguf_get_arr(g, "a.u32", GM_GGUF_U32, &k, &n) == GM_ERR_FORMAT);
        int64_t ki = gm_gguf_find_key(g, "arr.i16");
        CHECK(ki >= 0 && gm_gguf_kv_type(g, (size_t)ki) == GM_GGUF_ARRAY && gm_gguf_kv_elem_type(g, (size_t)ki) == GM_GGUF_I16 &&
              gm_gguf_kv_count(g, (size_t)ki) == 2);
        CHECK(gm_gguf_n_tensors(g) == 3);
        const gm_gguf_tensor *a = gm_gguf_find_tensor(g, "t.f32"), *bt = gm_gguf_find_tensor(g, "t.bf16"),
                             *c = gm_gguf_find_tensor(g, "t.q8");
        CHECK(a && bt && c && !gm_gguf_find_tensor(g, "t.none"));
        if (a && bt && c) {
            CHECK(a->dtype == GM_DT_F32 && a->ndim == 2 && a->ne[0] == 3 && a->ne[1] == 2 && a->ne[2] == 1 && a->nbytes == 24);
            CHECK(!memcmp(a->data, t0, sizeof t0));
            CHECK(bt->dtype == GM_DT_BF16 && bt->ggml_type == 30 && bt->ndim == 1 && !memcmp(bt->data, t1, sizeof t1));
            CHECK(c->dtype == GM_DT_Q8_0 && c->ggml_type == 8 && c->nbytes == sizeof t2 && !memcmp(c->data, t2, sizeof t2));
            CHECK(a->offset % 64 == 0 && bt->offset % 64 == 0 && c->offset % 64 == 0);
            CHECK((uintptr_t)a->data % 4 == 0 && (uintptr_t)bt->data % 2 == 0);
        }
        gm_gguf_close(g);
        free(shifted);
        gm_file_release(&fb);
    }
}

/* ---- 2. golden checkpoints through GGUF --------------------------------------------------------- */

static double max_abs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i]));
    return m;
}

/* Worst over positions of max|a - b| / max|ref| per position. */
static double rel_err(const float *a, const float *ref, int T, int V) {
    double worst = 0;
    for (int t = 0; t < T; t++) {
        double m = 0, s = max_abs(ref + (size_t)t * V, (size_t)V);
        for (int i = 0; i < V; i++) {
            double d = fabs((double)a[(size_t)t * V + i] - (double)ref[(size_t)t * V + i]);
            if (!(d <= m)) m = d;
        }
        if (!(m / s <= worst)) worst = m / s;
    }
    return worst;
}

static float *eval(gm_model *m, const int32_t *ids, int T) {
    const gm_config *c = gm_model_config(m);
    float *out = malloc(sizeof(float) * (size_t)T * (size_t)c->vocab_size);
    gm_session *s = NULL;
    CHECK_OK(gm_session_new(m, c->max_pos, 2, &s));
    if (s) CHECK_OK(gm_session_eval(s, ids, T, out));
    gm_session_free(s);
    return out;
}

static void check_against_golden(const char *name, gm_model *m, double tol) {
    char path[512];
    snprintf(path, sizeof path, "tests/golden/%s/prompts.json", name);
    char *text;
    size_t len;
    gm_json_doc *doc = NULL;
    CHECK_OK(gm_file_read_all(path, &text, &len));
    CHECK_OK(gm_json_parse(text, len, path, &doc));
    free(text);
    if (!doc) return;
    const gm_json *root = gm_json_root(doc);
    int V = gm_model_config(m)->vocab_size;
    for (size_t p = 0; p < root->len; p++) {
        const gm_json *jids = gm_json_get(&root->items[p], "ids");
        const char *lf = gm_json_get_str(&root->items[p], "logits_file");
        int T = (int)jids->len;
        int32_t *ids = malloc(sizeof(int32_t) * (size_t)T);
        for (int i = 0; i < T; i++) ids[i] = (int32_t)jids->items[i].i;
        snprintf(path, sizeof path, "tests/golden/%s/%s", name, lf);
        gm_file_buf ref;
        CHECK_OK(gm_file_load(path, 0, &ref));
        float *ours = eval(m, ids, T);
        double e = rel_err(ours, ref.data, T, V);
        CHECKF(e <= tol, "%s via GGUF, prompt %zu (T=%d): rel error %.3g > %g", name, p, T, e, tol);
        printf("%-16s GGUF f32  T=%-4d max|ours-ref|/max|ref| = %.2e\n", name, T, e);
        free(ours);
        free(ids);
        gm_file_release(&ref);
    }
    gm_json_free(doc);
}

static int configs_match(const gm_config *a, const gm_config *b) {
    int ok = a->family == b->family && a->vocab_size == b->vocab_size && a->hidden_size == b->hidden_size &&
             a->n_layers == b->n_layers && a->n_heads == b->n_heads && a->n_kv_heads == b->n_kv_heads &&
             a->head_dim == b->head_dim && a->ffn_size == b->ffn_size && a->max_pos == b->max_pos &&
             a->rms_eps == b->rms_eps && a->rope_theta == b->rope_theta && a->rope_local_theta == b->rope_local_theta &&
             a->rope_scale == b->rope_scale && a->attn_softcap == b->attn_softcap && a->final_softcap == b->final_softcap &&
             a->qk_norm == b->qk_norm && a->sandwich_norms == b->sandwich_norms && fabsf(a->query_scale - b->query_scale) <= 1e-7f &&
             a->bos_id == b->bos_id && a->eos_id == b->eos_id && a->pad_id == b->pad_id;
    int any_sliding = 0;
    for (int l = 0; l < a->n_layers; l++) {
        ok &= a->layer_global[l] == b->layer_global[l];
        any_sliding |= !a->layer_global[l];
    }
    if (any_sliding) ok &= a->sliding_window == b->sliding_window;
    return ok;
}

static void test_goldens(void) {
    static const struct {
        const char *name;
        double tol;
    } cases[] = {
        {"mqa_bf16", 1e-4}, {"gemma2_tiny", 1e-4}, {"gemma3_tiny", 1e-4}, {"gqa_f16", 1e-4}, {"gemma3_mm_prefix", 1e-4},
        /* torch_dtype float32 and d = 80: the reference scales embeddings by sqrt(80) exactly, GGUF loading
         * by sqrt(80) rounded to bf16 (8.9375 vs 8.944), a 7e-4 relative change */
        {"mha_f32", 2e-3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char dir[256], gg[64];
        snprintf(dir, sizeof dir, "tests/golden/%s/model", cases[i].name);
        snprintf(gg, sizeof gg, "%s.gguf", cases[i].name);
        gm_model *hf = NULL, *m = NULL, *mm = NULL;
        CHECK_OK(gm_model_load(dir, NULL, &hf));
        if (!hf) continue;
        CHECK_OK(gm_model_save_gguf(hf, NULL, cases[i].name, GM_DT_F32, tmp_path(gg), 0));
        gm_load_options o = gm_load_options_default();
        CHECK_OK(gm_model_load(tmp_path(gg), &o, &m));
        o.use_mmap = 1;
        CHECK_OK(gm_model_load(tmp_path(gg), &o, &mm));
        if (m && mm) {
            gm_config a = *gm_model_config(hf), b = *gm_model_config(m);
            CHECKF(configs_match(&a, &b), "%s: the GGUF's config differs from config.json's", cases[i].name);
            CHECK(b.embed_scale == gm_bf16_to_f32(gm_f32_to_bf16(sqrtf((float)b.hidden_size))));
            check_against_golden(cases[i].name, m, cases[i].tol);
            /* mapped and read agree exactly */
            int32_t ids[5] = {2, 7, 9, 11, 3};
            float *x = eval(m, ids, 5), *y = eval(mm, ids, 5);
            CHECK(!memcmp(x, y, sizeof(float) * 5 * (size_t)b.vocab_size));
            free(x);
            free(y);
        }
        gm_model_free(hf);
        gm_model_free(m);
        gm_model_free(mm);
    }
}

/* ---- 3. GGUF -> HF -> GGUF byte stability ------------------------------------------------------- */

static int files_equal(const char *a, const char *b) {
    gm_file_buf x, y;
    if (gm_file_load(a, 0, &x)) return 0;
    if (gm_file_load(b, 0, &y)) {
        gm_file_release(&x);
        return 0;
    }
    int eq = x.size == y.size && !memcmp(x.data, y.data, x.size);
    gm_file_release(&x);
    gm_file_release(&y);
    return eq;
}

static void round_trip(const char *src_dir, const gm_vocab *vocab, gm_dtype dt, const char *tag) {
    char a[64], b[64], hfd[64];
    snprintf(a, sizeof a, "rt_%s_a.gguf", tag);
    snprintf(b, sizeof b, "rt_%s_b.gguf", tag);
    snprintf(hfd, sizeof hfd, "rt_%s_hf", tag);
    gm_model *hf = NULL, *g1 = NULL, *hf2 = NULL;
    CHECK_OK(gm_model_load(src_dir, NULL, &hf));
    if (!hf) return;
    CHECK_OK(gm_model_save_gguf(hf, vocab, "rt-model", dt, tmp_path(a), 0));
    CHECK_OK(gm_model_load(tmp_path(a), NULL, &g1));
    unsigned char *proto = NULL;
    size_t len = 0;
    if (vocab) {
        gm_gguf *g;
        CHECK_OK(gm_gguf_open(tmp_path(a), 1, &g));
        if (g) CHECK_OK(gm_gguf_tokenizer_to_spm(g, &proto, &len));
        gm_gguf_close(g);
    }
    if (g1) CHECK_OK(gm_model_save_hf(g1, dt, "rt-model", tmp_path(hfd), proto, len, 0));
    CHECK_OK(gm_model_load(tmp_path(hfd), NULL, &hf2));
    gm_vocab *v2 = NULL;
    if (vocab) {
        char p[600];
        snprintf(p, sizeof p, "%s/tokenizer.model", tmp_path(hfd));
        char *data;
        size_t n;
        CHECK_OK(gm_file_read_all(p, &data, &n));
        CHECK_OK(gm_spm_model_parse(data, n, p, &v2));
        free(data);
    }
    if (hf2) CHECK_OK(gm_model_save_gguf(hf2, v2, "rt-model", dt, tmp_path(b), 0));
    CHECKF(files_equal(tmp_path(a), tmp_path(b)), "%s: GGUF -> HF -> GGUF is not byte-identical", tag);
    free(proto);
    gm_vocab_free(v2);
    gm_model_free(hf);
    gm_model_free(g1);
    gm_model_free(hf2);
}

static gm_vocab *tiny_vocab(void) {
    char *data;
    size_t n;
    gm_vocab *v = NULL;
    CHECK_OK(gm_file_read_all("tests/data/tiny.model", &data, &n));
    if (data) CHECK_OK(gm_spm_model_parse(data, n, "tests/data/tiny.model", &v));
    free(data);
    return v;
}

static void test_byte_stable(void) {
    gm_vocab *v = tiny_vocab();
    round_trip("tests/golden/mqa_bf16/model", NULL, GM_DT_F32, "mqa_f32");
    round_trip("tests/golden/mqa_bf16/model", NULL, GM_DT_BF16, "mqa_bf16");
    round_trip("tests/golden/gemma2_tiny/model", NULL, GM_DT_F32, "g2_f32");
    round_trip("tests/golden/gemma2_tiny/model", NULL, GM_DT_BF16, "g2_bf16");
    round_trip("tests/golden/gemma3_tiny/model", NULL, GM_DT_F32, "g3_f32");
    round_trip("tests/golden/gemma3_mm_prefix/model", NULL, GM_DT_BF16, "g3mm_bf16");
    round_trip("models/tiny-gemma", v, GM_DT_BF16, "tiny_bf16");
    round_trip("models/tiny-gemma", v, GM_DT_F32, "tiny_f32");
    gm_vocab_free(v);
}

/* ---- 4. tokenizer through GGUF metadata --------------------------------------------------------- */

static void test_tokenizer(void) {
    gm_vocab *v = tiny_vocab();
    if (!v) return;
    gm_gguf_writer *w;
    CHECK_OK(gm_gguf_writer_new(&w));
    CHECK_OK(gm_vocab_to_gguf(v, v->n + 3, -1, w));
    const char *path = tmp_path("tok.gguf");
    CHECK_OK(gm_gguf_writer_write(w, path));
    gm_gguf_writer_free(w);

    gm_tokenizer *a = NULL, *b = NULL;
    CHECK_OK(gm_tokenizer_load("tests/data/tiny.model", &a));
    CHECK_OK(gm_tokenizer_load_gguf(path, &b));
    if (a && b) {
        CHECK(gm_tokenizer_vocab_size(b) == v->n + 3);
        CHECK(gm_tokenizer_bos(a) == gm_tokenizer_bos(b) && gm_tokenizer_eos(a) == gm_tokenizer_eos(b));
        CHECK(gm_tokenizer_piece_id(b, "[PAD1025]") == v->n + 1);
        static const char *texts[] = {"ROMEO:", "Hello world", "  two  spaces\tand tab\n", "<start_of_turn>user\nhi<end_of_turn>",
                                      "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80", "", "1234567 numbers", "<bos>x"};
        for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
            for (int flags = 0; flags < 4; flags++) {
                int32_t *x = NULL, *y = NULL;
                size_t nx = 0, ny = 0;
                CHECK_OK(gm_tokenizer_encode(a, texts[i], strlen(texts[i]), flags, &x, &nx));
                CHECK_OK(gm_tokenizer_encode(b, texts[i], strlen(texts[i]), flags, &y, &ny));
                CHECKF(nx == ny && (nx == 0 || !memcmp(x, y, nx * sizeof *x)), "text %zu flags %d: ids differ", i, flags);
                char *tx = NULL, *ty = NULL;
                size_t lx, ly;
                CHECK_OK(gm_tokenizer_decode(a, x, nx, &tx, &lx));
                CHECK_OK(gm_tokenizer_decode(b, y, ny, &ty, &ly));
                CHECK(tx && ty && lx == ly && !memcmp(tx, ty, lx));
                free(x), free(y), free(tx), free(ty);
            }
    }
    gm_tokenizer_free(a);
    gm_tokenizer_free(b);

    /* the rebuilt ModelProto gives the same vocabulary, piece for piece */
    gm_gguf *g = NULL;
    CHECK_OK(gm_gguf_open(path, 0, &g));
    unsigned char *proto = NULL;
    size_t len = 0;
    gm_vocab *v2 = NULL;
    if (g) CHECK_OK(gm_gguf_tokenizer_to_spm(g, &proto, &len));
    if (proto) CHECK_OK(gm_spm_model_parse(proto, len, "proto", &v2));
    if (v2) {
        CHECK(v2->n == v->n + 3);
        int same = 1;
        for (int32_t i = 0; i < v->n; i++)
            same &= v->len[i] == v2->len[i] && !memcmp(gm_vocab_piece(v, i), gm_vocab_piece(v2, i), v->len[i]) &&
                    v->score[i] == v2->score[i] && v->type[i] == v2->type[i] && v->flags[i] == v2->flags[i];
        CHECK(same);
        CHECK(v2->type[v->n] == GM_PIECE_UNUSED && v2->score[v->n] == -10000.0f);
        CHECK(v->unk_id == v2->unk_id && v->bos_id == v2->bos_id && v->eos_id == v2->eos_id && v->pad_id == v2->pad_id);
        CHECK(v->add_dummy_prefix == v2->add_dummy_prefix && v->remove_extra_whitespaces == v2->remove_extra_whitespaces &&
              v->escape_whitespaces == v2->escape_whitespaces && v->byte_fallback == v2->byte_fallback &&
              v->n_byte_pieces == v2->n_byte_pieces);
    }
    /* the keys llama.cpp's converter writes */
    const char *s;
    int bflag;
    if (g) {
        CHECK(!gm_gguf_get_str(g, "tokenizer.ggml.model", &s) && !strcmp(s, "llama"));
        CHECK(!gm_gguf_get_str(g, "tokenizer.ggml.pre", &s) && !strcmp(s, "default"));
        CHECK(!gm_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &bflag) && bflag == 1);
        CHECK(!gm_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &bflag) && bflag == 0);
        CHECK(!gm_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &bflag) && bflag == v->add_dummy_prefix);
        uint32_t id;
        CHECK(!gm_gguf_get_u32(g, "tokenizer.ggml.unknown_token_id", &id) && (int32_t)id == v->unk_id);
    }
    free(proto);
    gm_vocab_free(v2);
    gm_gguf_close(g);
    gm_vocab_free(v);
}

/* ---- 5. quantized files and GGUF -> HF dequantization -------------------------------------------- */

static void test_quantized(void) {
    gm_model *ref = NULL;
    CHECK_OK(gm_model_load("models/tiny-gemma", NULL, &ref));
    if (!ref) return;
    int32_t ids[6] = {2, 858, 983, 17, 400, 5};
    float *want = eval(ref, ids, 6);
    int V = gm_model_config(ref)->vocab_size;
    static const struct {
        gm_dtype dt;
        const char *file;
        gm_dtype embed; /* d = 128: not whole Q6_K blocks, so Q4_0 falls back to Q8_0 for token_embd */
        double tol;
    } q[] = {{GM_DT_Q8_0, "tiny_q8_0.gguf", GM_DT_Q8_0, 0.2}, {GM_DT_Q4_0, "tiny_q4_0.gguf", GM_DT_Q8_0, 0.8}};
    /* The random tiny model is sensitive: dequantized Q8_0 weights alone move its logits by up to 6%,
     * quantized activations (tensor/matmul.h) about as much again. Q8_0 must keep every argmax. */
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        CHECK_OK(gm_model_save_gguf(ref, NULL, "tiny", q[i].dt, tmp_path(q[i].file), 0));
        gm_gguf *g = NULL;
        CHECK_OK(gm_gguf_open(tmp_path(q[i].file), 0, &g));
        if (g) {
            const gm_gguf_tensor *e = gm_gguf_find_tensor(g, "token_embd.weight"), *wq = gm_gguf_find_tensor(g, "blk.0.attn_q.weight"),
                                 *n = gm_gguf_find_tensor(g, "blk.0.attn_norm.weight");
            CHECK(e && e->dtype == q[i].embed && wq && wq->dtype == q[i].dt && n && n->dtype == GM_DT_F32);
            uint32_t ft;
            CHECK(!gm_gguf_get_u32(g, "general.file_type", &ft) && ft == (q[i].dt == GM_DT_Q8_0 ? 7u : 2u));
            gm_gguf_close(g);
        }
        gm_model *m = NULL, *hf = NULL;
        CHECK_OK(gm_model_load(tmp_path(q[i].file), NULL, &m));
        if (!m) continue;
        float *got = eval(m, ids, 6);
        double e = rel_err(got, want, 6, V);
        CHECKF(e <= q[i].tol, "%s: rel error %.3g vs the bf16 model", q[i].file, e);
        for (int t = 0; t < 6 && q[i].dt == GM_DT_Q8_0; t++) {
            int am = 0, bm = 0;
            for (int j = 1; j < V; j++) {
                if (got[(size_t)t * V + j] > got[(size_t)t * V + am]) am = j;
                if (want[(size_t)t * V + j] > want[(size_t)t * V + bm]) bm = j;
            }
            CHECKF(am == bm, "Q8_0 position %d: argmax %d, bf16 model %d", t, am, bm);
        }
        printf("tiny-gemma %-5s max|q-bf16|/max|bf16| = %.2e\n", gm_dtype_info(q[i].dt)->name, e);
        free(got);
        /* dequantized to an f32 directory: the same weights, exactly */
        char hfd[64];
        snprintf(hfd, sizeof hfd, "deq_%zu", i);
        CHECK_OK(gm_model_save_hf(m, GM_DT_F32, "tiny", tmp_path(hfd), NULL, 0, 0));
        CHECK_OK(gm_model_load(tmp_path(hfd), NULL, &hf));
        if (hf) {
            const gm_wmat *a = &m->layers[1].wdown, *b = &hf->layers[1].wdown;
            float *row = malloc(sizeof(float) * (size_t)a->cols);
            gm_dtype_info(a->dt)->to_f32(a->data, row, (size_t)a->cols);
            CHECK(b->dt == GM_DT_F32 && !memcmp(row, b->data, sizeof(float) * (size_t)a->cols));
            free(row);
            CHECK(!memcmp(m->layers[0].attn_norm, hf->layers[0].attn_norm, sizeof(float) * 128));
        }
        gm_model_free(hf);
        gm_model_free(m);
    }
    free(want);
    gm_model_free(ref);

    /* a random preset's shapes survive */
    gm_model *r = NULL, *rg = NULL;
    CHECK_OK(gm_model_random("tiny", "bf16", 3, &r));
    if (r) CHECK_OK(gm_model_save_gguf(r, NULL, "random-tiny", GM_DT_Q8_0, tmp_path("random.gguf"), 0));
    CHECK_OK(gm_model_load(tmp_path("random.gguf"), NULL, &rg));
    if (r && rg) CHECK(configs_match(gm_model_config(r), gm_model_config(rg)) && gm_model_n_params(r) == gm_model_n_params(rg));
    gm_model_free(r);
    gm_model_free(rg);
}

int main(void) {
    snprintf(g_root, sizeof g_root, "/tmp/gm_gguf.XXXXXX");
    if (!mkdtemp(g_root)) {
        perror("mkdtemp");
        return 2;
    }
    test_values();
    test_goldens();
    test_byte_stable();
    test_tokenizer();
    test_quantized();
    nftw(g_root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    TEST_DONE();
}
