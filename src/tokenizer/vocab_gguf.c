/* GGUF tokenizer metadata <-> the SentencePiece vocabulary (see vocab.h).
 *
 * Reading: tokenizer.ggml.model must be "llama" (llama.cpp's name for SentencePiece); tokens (string
 * array), scores (f32 array, optional), token_type (i32 array, optional; SentencePiece's numbering:
 * 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte), the special ids (u32) and
 * add_space_prefix (bool, llama.cpp's default true; Gemma files say false) are checked in GGUF terms, then
 * written out as a SentencePiece ModelProto (BPE, identity normalizer, byte fallback when byte tokens
 * exist) and parsed by the same code as a tokenizer.model, so both paths build the same vocabulary.
 *
 * Writing follows llama.cpp's convert_hf_to_gguf.py (_set_vocab_sentencepiece + SpecialVocab + the
 * Gemma classes): model "llama", pre "default", exactly vocab_size tokens padded with "[PAD<id>]"
 * (UNUSED, score -10000), the special ids, add_bos_token true, add_eos_token false, add_space_prefix. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "formats/gguf.h"
#include "tokenizer/vocab.h"

#define MAX_TOKENS (1 << 24)

/* ---- protobuf output --------------------------------------------------------------------------- */

typedef struct {
    unsigned char *p;
    size_t len, cap;
    int oom;
} pbuf;

static void pb_raw(pbuf *b, const void *s, size_t n) {
    if (b->oom) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (cap < b->len + n) cap *= 2;
        unsigned char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static size_t varint_len(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) v >>= 7, n++;
    return n;
}

static void pb_varint(pbuf *b, uint64_t v) {
    unsigned char t[10];
    size_t n = 0;
    while (v >= 0x80) {
        t[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    t[n++] = (unsigned char)v;
    pb_raw(b, t, n);
}

static void pb_tag(pbuf *b, uint32_t field, int wt) { pb_varint(b, (uint64_t)field << 3 | (uint64_t)wt); }
static void pb_uint(pbuf *b, uint32_t field, uint64_t v) { pb_tag(b, field, 0), pb_varint(b, v); }
/* int32 fields: negative values are sign-extended to ten bytes */
static void pb_int32(pbuf *b, uint32_t field, int32_t v) { pb_tag(b, field, 0), pb_varint(b, (uint64_t)(int64_t)v); }
static void pb_bytes(pbuf *b, uint32_t field, const void *s, size_t n) {
    pb_tag(b, field, 2);
    pb_varint(b, n);
    pb_raw(b, s, n);
}
static void pb_float(pbuf *b, uint32_t field, float f) {
    uint32_t u = gm_f32_bits(f);
    unsigned char t[4] = {(unsigned char)u, (unsigned char)(u >> 8), (unsigned char)(u >> 16), (unsigned char)(u >> 24)};
    pb_tag(b, field, 5);
    pb_raw(b, t, 4);
}

/* ---- reading ----------------------------------------------------------------------------------- */

typedef struct {
    const gm_gguf *g;
    const char *path;
    size_t tok_k, score_k, type_k;
    uint64_t n;
    int have_scores, have_types;
} tok_meta;

static int token_type(const tok_meta *t, uint64_t i) {
    return t->have_types ? (int)gm_gguf_arr_i32(t->g, t->type_k, i) : GM_PIECE_NORMAL;
}

/* A special id key: -1 when absent (then dflt if it is a valid id), checked against the vocabulary. */
static gm_status special(const tok_meta *t, const char *key, int64_t dflt, int64_t *out) {
    *out = dflt >= 0 && (uint64_t)dflt < t->n ? dflt : -1;
    if (!gm_gguf_has(t->g, key)) return GM_OK;
    uint32_t v;
    gm_status st = gm_gguf_get_u32(t->g, key, &v);
    if (st) return st;
    if ((uint64_t)v >= t->n)
        return gm_fail(GM_ERR_FORMAT, "%s: %s = %u is past the %llu tokens", t->path, key, (unsigned)v,
                       (unsigned long long)t->n);
    *out = v;
    return GM_OK;
}

static gm_status opt_bool(const gm_gguf *g, const char *key, int dflt, int *out) {
    *out = dflt;
    return gm_gguf_has(g, key) ? gm_gguf_get_bool(g, key, out) : GM_OK;
}

gm_status gm_gguf_tokenizer_to_spm(const gm_gguf *g, unsigned char **proto, size_t *len) {
    *proto = NULL;
    *len = 0;
    tok_meta t = {g, gm_gguf_path(g), 0, 0, 0, 0, 0, 0};
    const char *model;
    gm_status st = gm_gguf_get_str(g, "tokenizer.ggml.model", &model);
    if (st) return gm_fail_prefix(st, "no tokenizer in the GGUF metadata: ");
    if (strcmp(model, "llama") != 0)
        return gm_fail(GM_ERR_UNSUPPORTED, "%s: tokenizer.ggml.model '%s' is not supported (only SentencePiece, 'llama')",
                       t.path, model);
    if ((st = gm_gguf_get_arr(g, "tokenizer.ggml.tokens", GM_GGUF_STRING, &t.tok_k, &t.n))) return st;
    if (t.n == 0 || t.n > MAX_TOKENS)
        return gm_fail(GM_ERR_FORMAT, "%s: tokenizer.ggml.tokens has %llu tokens (1 to %d supported)", t.path,
                       (unsigned long long)t.n, MAX_TOKENS);
    uint64_t n2;
    if (gm_gguf_has(g, "tokenizer.ggml.scores")) {
        if ((st = gm_gguf_get_arr(g, "tokenizer.ggml.scores", GM_GGUF_F32, &t.score_k, &n2))) return st;
        if (n2 != t.n)
            return gm_fail(GM_ERR_FORMAT, "%s: tokenizer.ggml.scores has %llu entries for %llu tokens", t.path,
                           (unsigned long long)n2, (unsigned long long)t.n);
        t.have_scores = 1;
    }
    if (gm_gguf_has(g, "tokenizer.ggml.token_type")) {
        if ((st = gm_gguf_get_arr(g, "tokenizer.ggml.token_type", GM_GGUF_I32, &t.type_k, &n2))) return st;
        if (n2 != t.n)
            return gm_fail(GM_ERR_FORMAT, "%s: tokenizer.ggml.token_type has %llu entries for %llu tokens", t.path,
                           (unsigned long long)n2, (unsigned long long)t.n);
        t.have_types = 1;
    }
    int64_t unk, bos, eos, pad;
    if ((st = special(&t, "tokenizer.ggml.unknown_token_id", 0, &unk)) ||
        (st = special(&t, "tokenizer.ggml.bos_token_id", 1, &bos)) ||
        (st = special(&t, "tokenizer.ggml.eos_token_id", 2, &eos)) ||
        (st = special(&t, "tokenizer.ggml.padding_token_id", -1, &pad)))
        return st;
    int add_space, remove_ws;
    if ((st = opt_bool(g, "tokenizer.ggml.add_space_prefix", 1, &add_space)) ||
        (st = opt_bool(g, "tokenizer.ggml.remove_extra_whitespaces", 0, &remove_ws)))
        return st;

    /* check every token in GGUF terms, so messages name the key */
    int n_unknown = 0, n_bytes = 0;
    for (uint64_t i = 0; i < t.n; i++) {
        size_t l;
        const char *s = gm_gguf_arr_str(g, t.tok_k, i, &l);
        int ty = token_type(&t, i);
        if (l == 0) return gm_fail(GM_ERR_FORMAT, "%s: tokenizer.ggml.tokens[%llu] is empty", t.path, (unsigned long long)i);
        if (ty < GM_PIECE_NORMAL || ty > GM_PIECE_BYTE)
            return gm_fail(GM_ERR_FORMAT, "%s: tokenizer.ggml.token_type[%llu] = %d is not a token type (1-6)", t.path,
                           (unsigned long long)i, ty);
        if (ty == GM_PIECE_BYTE && gm_vocab_byte_of_piece(s, l) < 0)
            return gm_fail(GM_ERR_FORMAT, "%s: tokenizer.ggml.tokens[%llu] \"%.*s\" has type BYTE but is not <0xHH>", t.path,
                           (unsigned long long)i, (int)(l > 40 ? 40 : l), s);
        if (t.have_scores && !isfinite(gm_gguf_arr_f32(g, t.score_k, i)))
            return gm_fail(GM_ERR_FORMAT, "%s: tokenizer.ggml.scores[%llu] is not finite", t.path, (unsigned long long)i);
        n_unknown += ty == GM_PIECE_UNKNOWN;
        n_bytes += ty == GM_PIECE_BYTE;
    }
    if (n_unknown != 1)
        return gm_fail(GM_ERR_FORMAT, "%s: tokenizer.ggml.token_type marks %d tokens UNKNOWN (SentencePiece needs exactly one)",
                       t.path, n_unknown);
    if (n_bytes != 0 && n_bytes != 256)
        return gm_fail(GM_ERR_FORMAT, "%s: %d byte tokens; byte fallback needs all 256 <0xHH> tokens", t.path, n_bytes);

    pbuf b = {0};
    for (uint64_t i = 0; i < t.n; i++) { /* ModelProto.pieces (1): piece (1), score (2), type (3) */
        size_t l;
        const char *s = gm_gguf_arr_str(g, t.tok_k, i, &l);
        int ty = token_type(&t, i);
        size_t body = 1 + varint_len(l) + l + 1 + 4 + 1 + varint_len((uint64_t)ty);
        pb_tag(&b, 1, 2);
        pb_varint(&b, body);
        pb_bytes(&b, 1, s, l);
        pb_float(&b, 2, t.have_scores ? gm_gguf_arr_f32(g, t.score_k, i) : 0.0f);
        pb_uint(&b, 3, (uint64_t)ty);
    }
    /* TrainerSpec (2): model_type BPE, byte_fallback, the special ids and their pieces (an absent one gets
     * an empty piece name, which matches nothing, so it stays unset) */
    pbuf ts = {0};
    pb_uint(&ts, 3, 2);
    pb_uint(&ts, 35, n_bytes == 256);
    int64_t ids[4] = {unk, bos, eos, pad};
    for (int i = 0; i < 4; i++) pb_int32(&ts, 40 + (uint32_t)i, (int32_t)ids[i]);
    for (int i = 0; i < 4; i++) {
        size_t l = 0;
        const char *s = ids[i] >= 0 ? gm_gguf_arr_str(g, t.tok_k, (uint64_t)ids[i], &l) : "";
        pb_bytes(&ts, 45 + (uint32_t)i, s, l);
    }
    /* NormalizerSpec (3): identity, add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces */
    pbuf ns = {0};
    pb_bytes(&ns, 1, "identity", 8);
    pb_uint(&ns, 3, (uint64_t)add_space);
    pb_uint(&ns, 4, (uint64_t)remove_ws);
    pb_uint(&ns, 5, 1);
    if (!ts.oom) pb_bytes(&b, 2, ts.p, ts.len);
    if (!ns.oom) pb_bytes(&b, 3, ns.p, ns.len);
    int oom = b.oom || ts.oom || ns.oom;
    free(ts.p);
    free(ns.p);
    if (oom) {
        free(b.p);
        return gm_fail(GM_ERR_NOMEM, "%s: out of memory for the tokenizer", t.path);
    }
    *proto = b.p;
    *len = b.len;
    return GM_OK;
}

gm_status gm_tokenizer_from_gguf(const gm_gguf *g, gm_tokenizer **out) {
    *out = NULL;
    unsigned char *proto;
    size_t len;
    gm_status st = gm_gguf_tokenizer_to_spm(g, &proto, &len);
    if (st) return st;
    char what[600];
    snprintf(what, sizeof what, "%s (tokenizer.ggml metadata)", gm_gguf_path(g));
    st = gm_tokenizer_from_memory(proto, len, what, out);
    free(proto);
    return st;
}

gm_status gm_tokenizer_load_gguf(const char *path, gm_tokenizer **out) {
    if (!path || !out) return gm_fail(GM_ERR_ARG, "gm_tokenizer_load_gguf: NULL argument");
    *out = NULL;
    gm_gguf *g;
    gm_status st = gm_gguf_open(path, 1, &g); /* mapped: only the metadata pages are touched */
    if (st) return st;
    st = gm_tokenizer_from_gguf(g, out);
    gm_gguf_close(g);
    return st;
}

/* ---- writing ----------------------------------------------------------------------------------- */

gm_status gm_vocab_to_gguf(const gm_vocab *v, int n_tokens, int eot_id, gm_gguf_writer *w) {
    if (n_tokens <= 0) return gm_fail(GM_ERR_ARG, "gm_vocab_to_gguf: %d tokens", n_tokens);
    size_t n = (size_t)n_tokens;
    const char **strs = calloc(n, sizeof *strs);
    size_t *lens = calloc(n, sizeof *lens);
    float *scores = calloc(n, sizeof *scores);
    int32_t *types = calloc(n, sizeof *types);
    char *pads = NULL;
    size_t n_pad = n > (size_t)v->n ? n - (size_t)v->n : 0;
    if (n_pad) pads = malloc(n_pad * 32);
    gm_status st = GM_OK;
    if (!strs || !lens || !scores || !types || (n_pad && !pads)) {
        st = gm_fail(GM_ERR_NOMEM, "out of memory for the vocabulary");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        if (i < (size_t)v->n) {
            strs[i] = gm_vocab_piece(v, (int32_t)i);
            lens[i] = v->len[i];
            scores[i] = v->score[i];
            types[i] = v->type[i];
        } else {
            char *p = pads + (i - (size_t)v->n) * 32;
            snprintf(p, 32, "[PAD%zu]", i);
            strs[i] = p;
            lens[i] = strlen(p);
            scores[i] = -10000.0f;
            types[i] = GM_PIECE_UNUSED;
        }
    }
    const int32_t ids[4] = {v->bos_id, v->eos_id, v->unk_id, v->pad_id};
    const char *keys[4] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
                           "tokenizer.ggml.padding_token_id"};
    if ((st = gm_gguf_add_str(w, "tokenizer.ggml.model", "llama")) ||
        (st = gm_gguf_add_str(w, "tokenizer.ggml.pre", "default")) ||
        (st = gm_gguf_add_arr_str(w, "tokenizer.ggml.tokens", strs, lens, n)) ||
        (st = gm_gguf_add_arr(w, "tokenizer.ggml.scores", GM_GGUF_F32, scores, n)) ||
        (st = gm_gguf_add_arr(w, "tokenizer.ggml.token_type", GM_GGUF_I32, types, n)))
        goto done;
    for (int i = 0; i < 4; i++)
        if (ids[i] >= 0 && ids[i] < n_tokens && (st = gm_gguf_add_u32(w, keys[i], (uint32_t)ids[i]))) goto done;
    if ((st = gm_gguf_add_bool(w, "tokenizer.ggml.add_bos_token", 1)) ||
        (st = gm_gguf_add_bool(w, "tokenizer.ggml.add_eos_token", 0)) ||
        (st = gm_gguf_add_bool(w, "tokenizer.ggml.add_space_prefix", v->add_dummy_prefix)))
        goto done;
    if (v->remove_extra_whitespaces && (st = gm_gguf_add_bool(w, "tokenizer.ggml.remove_extra_whitespaces", 1))) goto done;
    if (eot_id >= 0 && eot_id < n_tokens) st = gm_gguf_add_u32(w, "tokenizer.ggml.eot_token_id", (uint32_t)eot_id);
done:
    free(strs);
    free(lens);
    free(scores);
    free(types);
    free(pads);
    return st;
}
