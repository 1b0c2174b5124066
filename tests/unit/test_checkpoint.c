/* Training checkpoints (src/train/checkpoint.h): a write/read round trip gives back the parameters, both
 * moments and the state bitwise (f32 and bf16 model files); keep-N pruning and the latest link; every
 * damaged checkpoint (truncated file, flipped byte in any file, missing file, a tensor of the wrong
 * shape, another model's layout) is refused with a message naming the file or tensor; config.json reads
 * back to the same config, embedding scale included. Interop (issue check 6): the checkpoint loads
 * through gm_model_load, and gm_session_eval's logits give, at every prefix of two sequences, the loss
 * gm_train_loss computes from the in-memory weights, within 1e-5 relative. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file.h"
#include "base/json.h"
#include "gemma.h"
#include "model/config.h"
#include "testlib.h"
#include "train/adamw.h"
#include "train/checkpoint.h"
#include "train/model_train.h"

#define B 2
#define T 16

/* d 48 (√48 differs in f32 and bf16), MHA-like H·hd = 96 ≠ d, GQA 4/2, ffn 80: no square matrix but o. */
static const char *CFG_JSON =
    "{\"model_type\": \"gemma\", \"vocab_size\": 256, \"hidden_size\": 48, \"num_hidden_layers\": 2,"
    " \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 24, \"intermediate_size\": 80,"
    " \"max_position_embeddings\": 64, \"rms_norm_eps\": 1e-6, \"rope_theta\": 10000.0, \"torch_dtype\": \"%s\"}";

static gm_config make_config(const char *dtype) {
    char text[1024];
    snprintf(text, sizeof text, CFG_JSON, dtype);
    gm_json_doc *doc = NULL;
    gm_config c;
    memset(&c, 0, sizeof c);
    CHECK_OK(gm_json_parse(text, strlen(text), "cfg", &doc));
    if (doc) CHECK_OK(gm_config_from_json(gm_json_root(doc), "cfg", &c));
    gm_json_free(doc);
    return c;
}

static int same_config(const gm_config *a, const gm_config *b) {
    return a->family == b->family && a->vocab_size == b->vocab_size && a->hidden_size == b->hidden_size &&
           a->n_layers == b->n_layers && a->n_heads == b->n_heads && a->n_kv_heads == b->n_kv_heads &&
           a->head_dim == b->head_dim && a->ffn_size == b->ffn_size && a->max_pos == b->max_pos &&
           a->rms_eps == b->rms_eps && a->rope_theta == b->rope_theta && a->query_scale == b->query_scale &&
           a->embed_scale == b->embed_scale && a->bos_id == b->bos_id && a->eos_id == b->eos_id &&
           a->pad_id == b->pad_id;
}

static void rand_tokens(int32_t *tok, int n, uint32_t seed, int vocab) {
    uint32_t s = seed;
    for (int i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        tok[i] = (int32_t)((s >> 8) % (uint32_t)vocab);
    }
}

/* A trained-looking model: init, then a few AdamW steps so the moments are not zero. */
static gm_train_model *trained(const gm_config *c, gm_adamw **opt) {
    gm_train_opts o = gm_train_opts_default(B, T, 2);
    gm_train_model *m = NULL;
    CHECK_OK(gm_train_model_new(c, &o, &m));
    if (!m) return NULL;
    gm_train_init(m, 7, GM_TRAIN_INIT_STD);
    gm_adamw_params p = gm_adamw_params_default();
    CHECK_OK(gm_adamw_new(&p, m, opt));
    int32_t tok[B * (T + 1)];
    for (int s = 0; s < 3 && *opt; s++) {
        float loss;
        rand_tokens(tok, B * (T + 1), 100u + (uint32_t)s, c->vocab_size);
        gm_train_zero_grad(m);
        CHECK_OK(gm_train_forward_backward(m, tok, B, T, &loss));
        gm_step_info info;
        CHECK(gm_adamw_step(*opt, m, 1e-2f, 1.0f, loss, &info) == GM_STEP_TAKEN);
    }
    return m;
}

static gm_ckpt_write_opts write_opts(const gm_config *c, gm_train_model *m, gm_adamw *opt, int step, gm_dtype dt) {
    gm_ckpt_write_opts w;
    memset(&w, 0, sizeof w);
    w.cfg = c;
    w.layout = (gm_ckpt_layout){m->tensors, m->n_tensors, m->n_params};
    w.params = m->params, w.exp_avg = gm_adamw_m(opt), w.exp_avg_sq = gm_adamw_v(opt);
    w.dtype = dt;
    w.state = (gm_ckpt_state){step, gm_adamw_steps(opt), 1, 99};
    w.args_json = "{\"seq\": 16, \"data\": \"x\"}";
    static char *tok;
    static size_t tok_len;
    if (!tok) CHECK_OK(gm_file_read_all("models/tiny-gemma/tokenizer.model", &tok, &tok_len));
    w.tokenizer = tok, w.tokenizer_len = tok_len, w.tokenizer_name = "tokenizer.model";
    return w;
}

static int run(const char *cmd) { return system(cmd); }

/* Open + load; returns the status, message in gm_last_error(). */
static gm_status try_load(const char *dir, const gm_ckpt_layout *L, float *p, float *m1, float *m2) {
    gm_ckpt *c = NULL;
    gm_status st = gm_ckpt_open(dir, &c);
    if (!st) st = gm_ckpt_load(c, L, p, m1, m2);
    gm_ckpt_close(c);
    return st;
}

static void expect_refused(const char *what, const char *dir, const gm_ckpt_layout *L, size_t n, const char *needle1,
                           const char *needle2) {
    float *p = calloc(n, sizeof *p), *m1 = calloc(n, sizeof *m1), *m2 = calloc(n, sizeof *m2);
    gm_status st = try_load(dir, L, p, m1, m2);
    const char *msg = gm_last_error();
    CHECKF(st != GM_OK, "%s: a damaged checkpoint was accepted", what);
    printf("refused (%s): %s\n", what, msg);
    CHECKF(strstr(msg, needle1) && (!needle2 || strstr(msg, needle2)), "%s: message '%s' should name '%s' and '%s'",
           what, msg, needle1, needle2 ? needle2 : "");
    free(p);
    free(m1);
    free(m2);
}

static void flip_byte(const char *path, long off) {
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    if (!f) return;
    fseek(f, off, off < 0 ? SEEK_END : SEEK_SET);
    int ch = fgetc(f);
    fseek(f, -1, SEEK_CUR);
    fputc(ch ^ 0x10, f);
    fclose(f);
}

static void check_round_trip(const char *tmp) {
    gm_config c = make_config("float32");
    gm_adamw *opt = NULL;
    gm_train_model *m = trained(&c, &opt);
    if (!m || !opt) return;
    size_t n = m->n_params;
    char out[512], cmd[2048];
    snprintf(out, sizeof out, "%s/run", tmp);
    gm_ckpt_layout L = {m->tensors, m->n_tensors, n};

    /* three saves with keep 2: the oldest goes, latest names the newest */
    for (int step = 10; step <= 30; step += 10) {
        gm_ckpt_write_opts w = write_opts(&c, m, opt, step, GM_DT_F32);
        char *dir = NULL;
        CHECK_OK(gm_ckpt_save(out, &w, 2, &dir));
        CHECK(dir && strstr(dir, "checkpoint-"));
        free(dir);
    }
    char p10[600], p20[600], p30[600];
    snprintf(p10, sizeof p10, "%s/checkpoint-10", out);
    snprintf(p20, sizeof p20, "%s/checkpoint-20", out);
    snprintf(p30, sizeof p30, "%s/checkpoint-30", out);
    struct stat sb;
    CHECKF(stat(p10, &sb) != 0, "checkpoint-10 should have been pruned (keep 2)");
    CHECK(stat(p20, &sb) == 0 && stat(p30, &sb) == 0);
    char *latest = NULL;
    CHECK_OK(gm_ckpt_resolve(out, &latest));
    CHECKF(latest && strstr(latest, "checkpoint-30"), "latest resolves to %s", latest ? latest : "(null)");
    char first[64];
    CHECK(gm_ckpt_any(out, first, sizeof first) == 1);
    CHECK(gm_ckpt_any(tmp, NULL, 0) == 0);

    /* read back: bitwise */
    float *p = calloc(n, sizeof *p), *m1 = calloc(n, sizeof *m1), *m2 = calloc(n, sizeof *m2);
    gm_ckpt *ck = NULL;
    CHECK_OK(gm_ckpt_open(latest ? latest : p30, &ck));
    if (ck) {
        CHECK_OK(gm_ckpt_load(ck, &L, p, m1, m2));
        CHECK(memcmp(p, m->params, n * sizeof *p) == 0);
        CHECK(memcmp(m1, gm_adamw_m(opt), n * sizeof *p) == 0);
        CHECK(memcmp(m2, gm_adamw_v(opt), n * sizeof *p) == 0);
        const gm_ckpt_state *s = gm_ckpt_get_state(ck);
        CHECK(s->step == 30 && s->updates == 3 && s->skips == 1 && s->seed == 99);
        CHECK(same_config(gm_ckpt_config(ck), &c));
        const gm_json *args = gm_ckpt_args(ck);
        int64_t seq = 0;
        CHECK(args && gm_json_get_int(args, "seq", &seq) && seq == 16);
        CHECK(gm_ckpt_tokenizer(ck) && strstr(gm_ckpt_tokenizer(ck), "tokenizer.model"));
        gm_ckpt_close(ck);
    }
    /* a fresh write over an existing step (a run resumed from before it) replaces it */
    {
        gm_ckpt_write_opts w = write_opts(&c, m, opt, 30, GM_DT_F32);
        w.state.skips = 0;
        CHECK_OK(gm_ckpt_save(out, &w, 2, NULL));
        CHECK_OK(gm_ckpt_open(p30, &ck));
        if (ck) CHECK(gm_ckpt_get_state(ck)->skips == 0);
        gm_ckpt_close(ck);
    }

    /* interop: the inference engine on the checkpoint gives the trainer's loss at every prefix */
    gm_load_options lo = gm_load_options_default();
    gm_model *gm = NULL;
    CHECK_OK(gm_model_load(p30, &lo, &gm));
    if (gm) {
        CHECK(gm_model_config(gm)->embed_scale == c.embed_scale);
        int32_t tok[B * (T + 1)];
        rand_tokens(tok, B * (T + 1), 555u, c.vocab_size);
        float *logits = malloc(sizeof(float) * (T + 1) * (size_t)c.vocab_size);
        double worst = 0;
        for (int b = 0; b < B; b++) {
            gm_session *s = NULL;
            CHECK_OK(gm_session_new(gm, T + 1, 1, &s));
            if (!s) break;
            CHECK_OK(gm_session_eval(s, tok + b * (T + 1), T, logits));
            double nll = 0;
            for (int t = 0; t < T; t++) {
                const float *z = logits + (size_t)t * c.vocab_size;
                double mx = z[0], se = 0;
                for (int v = 1; v < c.vocab_size; v++) mx = fmax(mx, z[v]);
                for (int v = 0; v < c.vocab_size; v++) se += exp(z[v] - mx);
                nll += mx + log(se) - z[tok[b * (T + 1) + t + 1]];
                float ref;
                CHECK_OK(gm_train_loss(m, tok + b * (T + 1), 1, t + 1, &ref)); /* the prefix of t + 1 targets */
                double mine = nll / (t + 1), rel = fabs(mine - ref) / fabs(ref);
                worst = fmax(worst, rel);
            }
            gm_session_free(s);
        }
        printf("checkpoint -> gm_model_load -> gm_session_eval: loss at every prefix within %.2e of gm_train_loss\n",
               worst);
        CHECKF(worst <= 1e-5, "inference loss vs training loss: %g relative (limit 1e-5)", worst);
        free(logits);
        gm_model_free(gm);
    }

    /* damage, each on a fresh copy of checkpoint-30 */
    struct {
        const char *what, *cmd, *n1, *n2;
    } cases[] = {
        {"truncated model", "truncate -s -100 %s/model.safetensors", "model.safetensors", "truncated"},
        {"truncated optimizer", "truncate -s 4096 %s/optimizer.safetensors", "optimizer.safetensors", "truncated"},
        {"missing config", "rm %s/config.json", "config.json", "missing"},
        {"missing model", "rm %s/model.safetensors", "model.safetensors", "missing"},
        {"missing state", "rm %s/trainer_state.json", "trainer_state.json", "missing"},
        {"truncated state", "truncate -s 200 %s/trainer_state.json", "trainer_state.json", NULL},
        {"extra byte", "printf x >> %s/tokenizer.model", "tokenizer.model", NULL},
    };
    char copy[600];
    snprintf(copy, sizeof copy, "%s/copy", tmp);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(cmd, sizeof cmd, "rm -rf %s && cp -r %s %s", copy, p30, copy);
        CHECK(run(cmd) == 0);
        char c2[1024];
        snprintf(c2, sizeof c2, cases[i].cmd, copy);
        CHECK(run(c2) == 0);
        expect_refused(cases[i].what, copy, &L, n, cases[i].n1, cases[i].n2);
    }
    /* a flipped byte in each file, at its start, middle and end */
    const char *files[] = {"model.safetensors", "optimizer.safetensors", "config.json", "tokenizer.model",
                           "trainer_state.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        for (int where = 0; where < 3; where++) {
            snprintf(cmd, sizeof cmd, "rm -rf %s && cp -r %s %s", copy, p30, copy);
            CHECK(run(cmd) == 0);
            char path[800];
            snprintf(path, sizeof path, "%s/%s", copy, files[i]);
            struct stat fs;
            CHECK(stat(path, &fs) == 0);
            long off = where == 0 ? 9 : where == 1 ? (long)fs.st_size / 2 : (long)fs.st_size - 3;
            flip_byte(path, off);
            expect_refused(files[i], copy, &L, n, files[i], "checksum");
        }
    /* a consistent checkpoint of another shape: the layout check names the tensor */
    {
        gm_train_tensor *alt = malloc(sizeof *alt * (size_t)m->n_tensors);
        memcpy(alt, m->tensors, sizeof *alt * (size_t)m->n_tensors);
        gm_train_tensor *q = NULL;
        for (int i = 0; i < m->n_tensors; i++)
            if (!q && alt[i].kind == GM_TT_Q) q = &alt[i];
        q->shape[0] /= 2, q->shape[1] *= 2; /* same size, other shape */
        gm_ckpt_layout L2 = {alt, m->n_tensors, n};
        expect_refused("wrong shape", p30, &L2, n, "self_attn.q_proj.weight", "shape");
        gm_ckpt_layout L3 = {m->tensors, m->n_tensors, n - 1};
        expect_refused("other model", p30, &L3, n, "parameters", NULL);
        free(alt);
    }
    /* not a checkpoint at all: a model directory */
    expect_refused("model dir", "models/tiny-gemma", &L, n, "trainer_state.json", "--init");
    char *none = NULL;
    CHECK(gm_ckpt_resolve("models/tiny-gemma", &none) != GM_OK && strstr(gm_last_error(), "use --init"));
    free(none);
    none = NULL;
    CHECK(gm_ckpt_resolve(tmp, &none) != GM_OK && strstr(gm_last_error(), tmp));
    free(none);

    /* bf16 model file: the master weights come from optimizer.safetensors, bitwise; the model file loads */
    {
        char out2[600];
        snprintf(out2, sizeof out2, "%s/bf16", tmp);
        gm_ckpt_write_opts w = write_opts(&c, m, opt, 5, GM_DT_BF16);
        CHECK_OK(gm_ckpt_save(out2, &w, 0, NULL));
        char d5[700];
        snprintf(d5, sizeof d5, "%s/checkpoint-5", out2);
        memset(p, 0, n * sizeof *p);
        CHECK_OK(try_load(d5, &L, p, NULL, NULL));
        CHECK(memcmp(p, m->params, n * sizeof *p) == 0);
        gm_model *g2 = NULL;
        CHECK_OK(gm_model_load(d5, &lo, &g2));
        if (g2) {
            const char *name, *dt;
            int nd, bf16 = 0;
            int64_t shape[4];
            for (int i = 0; gm_model_tensor_info(g2, i, &name, &dt, &nd, shape); i++) bf16 += !strcmp(dt, "BF16");
            CHECKF(bf16 >= 9, "%d BF16 tensors in the bf16 checkpoint", bf16);
            CHECK(gm_model_config(g2)->embed_scale == c.embed_scale); /* float32: exact sqrt(48) */
        }
        gm_model_free(g2);
    }
    free(p);
    free(m1);
    free(m2);
    free(latest);
    gm_adamw_free(opt);
    gm_train_model_free(m);
}

/* config.json reads back to the same config, with the dtype that keeps the embedding scale. */
static void check_config_json(void) {
    const char *dts[2] = {"float32", "bfloat16"};
    for (int i = 0; i < 2; i++) {
        gm_config c = make_config(dts[i]);
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        CHECK_OK(gm_ckpt_write_config(f, &c, "my \"model\"", "float32"));
        fclose(f);
        CHECKF(strstr(text, dts[i]) != NULL, "config for a %s scale says: %s", dts[i], text);
        CHECK(strstr(text, "\"model_type\": \"gemma\"") && strstr(text, "GemmaForCausalLM"));
        gm_json_doc *doc = NULL;
        gm_config back;
        CHECK_OK(gm_json_parse(text, len, "written", &doc));
        if (doc) CHECK_OK(gm_config_from_json(gm_json_root(doc), "written", &back));
        if (doc) CHECK(same_config(&c, &back));
        CHECK(doc && !strcmp(gm_json_get_str(gm_json_root(doc), "_name_or_path"), "my \"model\""));
        gm_json_free(doc);
        free(text);
    }
    /* presets of every family read back the same (soft-caps, windows, layer kinds, RoPE bases, scales) */
    const char *presets[] = {"gemma-7b", "gemma2-2b", "gemma2-27b", "gemma3-1b", "gemma3-4b"};
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        gm_config c, back;
        CHECK_OK(gm_config_preset(presets[i], &c));
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        CHECK_OK(gm_ckpt_write_config(f, &c, NULL, "float32"));
        fclose(f);
        gm_json_doc *doc = NULL;
        CHECK_OK(gm_json_parse(text, len, presets[i], &doc));
        if (doc) CHECK_OK(gm_config_from_json(gm_json_root(doc), presets[i], &back));
        CHECKF(doc && same_config(&c, &back) && c.attn_softcap == back.attn_softcap &&
                   c.final_softcap == back.final_softcap && c.sliding_window == back.sliding_window &&
                   c.rope_local_theta == back.rope_local_theta && c.rope_scale == back.rope_scale &&
                   c.qk_norm == back.qk_norm && c.sandwich_norms == back.sandwich_norms &&
                   !memcmp(c.layer_global, back.layer_global, sizeof c.layer_global),
               "%s: config.json does not read back to the same config:\n%s", presets[i], text);
        gm_json_free(doc);
        free(text);
    }
    /* CRC-32 as zlib computes it */
    CHECK(gm_crc32(0, "123456789", 9) == 0xCBF43926u);
    CHECK(gm_crc32(gm_crc32(0, "12345", 5), "6789", 4) == 0xCBF43926u);
}

int main(void) {
    char tmp[] = "/tmp/gm_ckpt_XXXXXX";
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 1;
    }
    check_config_json();
    check_round_trip(tmp);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (run(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    TEST_DONE();
}
