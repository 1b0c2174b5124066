/* `gemma convert`: Hugging Face directory or GGUF in, GGUF file or Hugging Face directory out.
 *
 *   gemma convert HF_DIR OUT.gguf [--dtype T]    llama.cpp's layout (convert_hf_to_gguf.py, Gemma classes)
 *   gemma convert IN.gguf OUT.gguf [--dtype T]   re-type a GGUF
 *   gemma convert IN.gguf OUT_DIR [--dtype T]    config.json + model.safetensors (+ tokenizer.model)
 *   gemma convert --random PRESET --dtype T --out F.gguf [--seed N]   benchmark file with a preset's shapes
 *                                                and a placeholder vocabulary (placeholder_vocab)
 *
 * The conversions themselves are gm_model_save_gguf / gm_model_save_hf (src/model/model_gguf.c, which
 * lists the llama.cpp conventions followed); this file parses arguments and loads the input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "base/utf8.h"
#include "cli/cli.h"
#include "formats/gguf.h"
#include "formats/spm_model.h"
#include "formats/tokenizer_json.h"
#include "model/model_internal.h"
#include "tokenizer/vocab.h"

static const char *HELP =
    "usage: gemma convert IN OUT [--dtype T]\n"
    "       gemma convert --random PRESET --dtype T --out FILE.gguf [--seed N]\n"
    "  IN     a Hugging Face model directory or a .gguf file\n"
    "  OUT    a .gguf file (llama.cpp's GGUF layout), or a directory to receive config.json,\n"
    "         model.safetensors and tokenizer.model (IN must then be a GGUF file)\n"
    "  --dtype T   GGUF: f32, f16, bf16, q8_0 or q4_0 for the matrices (norms stay f32);\n"
    "              directory: f32, f16 or bf16 (quantized weights are dequantized).\n"
    "              Default: the input's embedding dtype when it is f32, f16 or bf16, else f32\n"
    "  --random PRESET   random weights with a preset's exact shapes (for benchmarks) and a\n"
    "              placeholder vocabulary (specials, 256 byte pieces, fillers) so llama.cpp loads it\n"
    "  --seed N    random seed (default 1)\n"
    "  -q, --quiet no per-tensor progress on stderr\n";

typedef struct {
    const char *name; /* what --dtype says */
    gm_dtype dt;
} out_type;

static const out_type OUT_TYPES[] = {
    {"f32", GM_DT_F32}, {"f16", GM_DT_F16}, {"bf16", GM_DT_BF16}, {"q8_0", GM_DT_Q8_0}, {"q4_0", GM_DT_Q4_0},
};

static const char *base_name(const char *path, char *buf, size_t cap) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && path[b - 1] != '/') b--;
    snprintf(buf, cap, "%.*s", (int)(n - b), path + b);
    return buf;
}

/* ---- the command ------------------------------------------------------------------------------- */

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* The tokenizer of a GGUF file or a model directory as a vocabulary, or NULL (GM_OK) if there is none. */
static gm_status load_vocab(const char *in, int in_gguf, gm_vocab **v) {
    *v = NULL;
    gm_status st = GM_OK;
    if (in_gguf) {
        gm_gguf *g;
        if ((st = gm_gguf_open(in, 1, &g))) return st;
        if (gm_gguf_has(g, "tokenizer.ggml.tokens")) {
            unsigned char *proto;
            size_t len;
            if (!(st = gm_gguf_tokenizer_to_spm(g, &proto, &len))) {
                st = gm_spm_model_parse(proto, len, in, v);
                free(proto);
            }
        }
        gm_gguf_close(g);
        return st;
    }
    const char *names[2] = {"tokenizer.model", "tokenizer.json"};
    for (int i = 0; i < 2; i++) {
        char *p = gm_path_join(in, names[i]);
        if (!p) return gm_fail(GM_ERR_NOMEM, "out of memory");
        if (gm_file_exists(p)) {
            char *data;
            size_t len;
            if (!(st = gm_file_read_all(p, &data, &len))) {
                st = i == 0 ? gm_spm_model_parse(data, len, p, v) : gm_tokenizer_json_parse(data, len, p, v);
                free(data);
            }
            free(p);
            return st;
        }
        free(p);
    }
    return GM_OK;
}

/* The vocabulary of a --random file, so that llama.cpp (which refuses a GGUF without tokenizer.ggml.*)
 * and our own tokenizer load it: "<pad>", "<eos>", "<bos>" (CONTROL) at the config's ids, "<unk>" at 3,
 * "<start_of_turn>" / "<end_of_turn>" (CONTROL) at 106 / 107 as in every Gemma vocabulary (Gemma 1 GGUF
 * files name 107 the end-of-turn token), "▁" (a space, which would otherwise decode as the bytes of
 * "▁"), the 256 byte pieces "<0x00>".."<0xFF>" in the next free ids (byte fallback: any text encodes),
 * then NORMAL filler pieces "▁t<id>" (score -id; never produced, as no merge can build "▁t") up to
 * vocab_size. (bench/llama_bench.mjs gives files written before this a vocabulary of the same kind.) */
static gm_status placeholder_vocab(const gm_config *c, gm_vocab **out) {
    static const struct {
        const char *piece;
        int type;
    } SPECIAL[] = {{"<pad>", GM_PIECE_CONTROL},           {"<eos>", GM_PIECE_CONTROL},
                   {"<bos>", GM_PIECE_CONTROL},           {"<unk>", GM_PIECE_UNKNOWN},
                   {"<start_of_turn>", GM_PIECE_CONTROL}, {"<end_of_turn>", GM_PIECE_CONTROL},
                   {"\xE2\x96\x81", GM_PIECE_NORMAL}};
    enum { N_SPECIAL = sizeof SPECIAL / sizeof SPECIAL[0] };
    const int n = c->vocab_size;
    const int want[N_SPECIAL] = {c->pad_id, c->eos_id, c->bos_id, 3, 106, 107, -1};
    *out = NULL;
    if (n < N_SPECIAL)
        return gm_fail(GM_ERR_ARG, "vocabulary size %d is too small for a placeholder vocabulary", n);
    /* what each id holds: a byte (0..255), a special (256 + k), or -1 for a filler */
    int *slot = malloc((size_t)n * sizeof *slot);
    if (!slot) return gm_fail(GM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) slot[i] = -1;
    int n_free = n, next = 0;
    for (int k = 0; k < N_SPECIAL; k++) { /* at its id if that is free, else at the first free id */
        int id = want[k];
        if (id < 0 || id >= n || slot[id] != -1)
            for (id = 0; slot[id] != -1; id++) {
            }
        slot[id] = 256 + k;
        n_free--;
    }
    if (n_free >= 256)
        for (int b = 0; b < 256; b++) {
            while (slot[next] != -1) next++;
            slot[next] = b;
        }
    gm_vocab *v;
    gm_status st = gm_vocab_new(&v);
    if (st) {
        free(slot);
        return st;
    }
    v->add_dummy_prefix = 0; /* Gemma's normalizer: keep whitespace as is, no dummy prefix */
    v->remove_extra_whitespaces = 0;
    v->byte_fallback = n_free >= 256;
    char buf[32];
    for (int i = 0; i < n && !st; i++) {
        const char *piece = buf;
        int type = GM_PIECE_NORMAL;
        float score = 0.0f;
        if (slot[i] >= 256) {
            int k = slot[i] - 256;
            piece = SPECIAL[k].piece, type = SPECIAL[k].type;
            if (k == 0) v->pad_id = i;
            if (k == 1) v->eos_id = i;
            if (k == 2) v->bos_id = i;
        } else if (slot[i] >= 0) {
            snprintf(buf, sizeof buf, "<0x%02X>", (unsigned)slot[i]);
            type = GM_PIECE_BYTE;
        } else {
            snprintf(buf, sizeof buf, "\xE2\x96\x81t%d", i); /* U+2581, SentencePiece's space */
            score = -(float)i;
        }
        st = gm_vocab_add(v, piece, strlen(piece), score, type);
    }
    free(slot);
    if (!st) st = gm_vocab_finalize(v, "the placeholder vocabulary");
    if (st) {
        gm_vocab_free(v);
        return st;
    }
    *out = v;
    return GM_OK;
}

/* general.name: config.json's _name_or_path when present (so GGUF -> HF -> GGUF keeps it), else the
 * directory's name. */
static void model_name(const char *in, int in_gguf, char *buf, size_t cap) {
    base_name(in, buf, cap);
    if (in_gguf) {
        gm_gguf *g;
        const char *nm;
        if (!gm_gguf_open(in, 1, &g)) {
            if (gm_gguf_has(g, "general.name") && !gm_gguf_get_str(g, "general.name", &nm)) snprintf(buf, cap, "%s", nm);
            gm_gguf_close(g);
        }
        gm_clear_error();
        return;
    }
    char *p = gm_path_join(in, "config.json"), *text = NULL;
    size_t len;
    gm_json_doc *doc = NULL;
    if (p && !gm_file_read_all(p, &text, &len) && !gm_json_parse(text, len, p, &doc)) {
        const char *nm = gm_json_get_str(gm_json_root(doc), "_name_or_path");
        if (nm && *nm) snprintf(buf, cap, "%s", nm);
    }
    gm_clear_error();
    gm_json_free(doc);
    free(text);
    free(p);
}

int cmd_convert(int argc, char **argv) {
    const char *C = "convert", *in = NULL, *out = NULL, *dtype = NULL, *preset = NULL;
    long seed = 1;
    int quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(HELP, stdout);
            return CLI_OK;
        } else if (!strcmp(a, "--dtype") && v) dtype = v, i++;
        else if (!strcmp(a, "--random") && v) preset = v, i++;
        else if (!strcmp(a, "--out") && v) out = v, i++;
        else if (!strcmp(a, "--seed") && v) {
            if (!cli_parse_int(v, 0, 0x7fffffffL, &seed)) return cli_usage(C, "bad value for --seed: '%s'", v);
            i++;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) quiet = 1;
        else if (a[0] == '-' && a[1]) return cli_usage(C, "unknown option or missing value '%s'", a);
        else if (!in && !preset) in = a;
        else if (!out) out = a;
        else return cli_usage(C, "unexpected argument '%s'", a);
    }
    if (preset && in) return cli_usage(C, "--random takes no input model ('%s')", in);
    if (!preset && !in) return cli_usage(C, "an input (model directory or .gguf file) is required");
    if (!out) return cli_usage(C, "an output (.gguf file or directory) is required");
    const out_type *ot = NULL;
    if (dtype) {
        for (size_t i = 0; i < sizeof OUT_TYPES / sizeof OUT_TYPES[0]; i++)
            if (!strcmp(dtype, OUT_TYPES[i].name)) ot = &OUT_TYPES[i];
        if (!ot) return cli_usage(C, "unknown --dtype '%s' (f32, f16, bf16, q8_0, q4_0)", dtype);
    }
    int out_gguf = ends_with(out, ".gguf");
    int in_gguf = in && gm_gguf_is_gguf_file(in);
    if (preset && !out_gguf) return cli_usage(C, "--random writes a GGUF file: --out must end in .gguf");
    if (!out_gguf && !in_gguf)
        return cli_usage(C, "OUT '%s' is a directory: the input must then be a .gguf file", out);
    if (!out_gguf && ot && ot->dt != GM_DT_F32 && ot->dt != GM_DT_F16 && ot->dt != GM_DT_BF16)
        return cli_usage(C, "a Hugging Face directory holds f32, f16 or bf16 weights, not %s", ot->name);
    if (preset && !ot) return cli_usage(C, "--random needs --dtype");

    gm_model *m = NULL;
    gm_vocab *vocab = NULL;
    gm_status st;
    if (preset) {
        const char *base = ot->dt == GM_DT_F32 ? "f32" : ot->dt == GM_DT_F16 ? "f16" : "bf16";
        st = gm_model_random(preset, base, (uint64_t)seed, &m);
        if (!st) st = placeholder_vocab(&m->cfg, &vocab);
    } else {
        gm_load_options o = gm_load_options_default();
        o.use_mmap = 1; /* read once, sequentially */
        st = gm_model_load(in, &o, &m);
        if (!st) st = load_vocab(in, in_gguf, &vocab);
    }
    if (st) goto fail;
    if (!ot) { /* default: the input's embedding dtype */
        const char *want = "f32";
        if (m->embed.dt == GM_DT_BF16) want = "bf16";
        else if (m->embed.dt == GM_DT_F16) want = "f16";
        for (size_t i = 0; i < sizeof OUT_TYPES / sizeof OUT_TYPES[0]; i++)
            if (!strcmp(want, OUT_TYPES[i].name)) ot = &OUT_TYPES[i];
    }
    char name[256];
    if (preset) snprintf(name, sizeof name, "random-%s", preset);
    else model_name(in, in_gguf, name, sizeof name);
    if (!gm_utf8_valid(name, strlen(name), NULL)) snprintf(name, sizeof name, "model"); /* it goes into JSON */
    if (out_gguf) {
        if (!quiet && preset)
            fprintf(stderr, "gemma convert: note: random weights get a placeholder vocabulary (%d pieces: specials, "
                            "256 bytes, fillers)\n", m->cfg.vocab_size);
        else if (!vocab && !quiet)
            fprintf(stderr, "gemma convert: note: %s has no tokenizer; the GGUF will have none\n", in);
        st = gm_model_save_gguf(m, vocab, name, ot->dt, out, !quiet);
    } else { /* GGUF in: its tokenizer metadata becomes a SentencePiece tokenizer.model */
        unsigned char *proto = NULL;
        size_t len = 0;
        gm_gguf *g;
        if (!(st = gm_gguf_open(in, 1, &g))) {
            if (gm_gguf_has(g, "tokenizer.ggml.tokens")) st = gm_gguf_tokenizer_to_spm(g, &proto, &len);
            gm_gguf_close(g);
        }
        if (!st) st = gm_model_save_hf(m, ot->dt, name, out, proto, len, !quiet);
        free(proto);
    }
    if (st) goto fail;
    if (!quiet) fprintf(stderr, "wrote %s\n", out);
    gm_vocab_free(vocab);
    gm_model_free(m);
    return CLI_OK;
fail:
    gm_vocab_free(vocab);
    gm_model_free(m);
    return cli_fail(C);
}
