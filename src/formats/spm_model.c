/* SentencePiece ModelProto (sentencepiece_model.proto, proto2) decoded by hand: varints, length-delimited
 * submessages and fixed32 floats, every length checked against the bytes that remain. We read what the
 * encoder needs and skip the rest (self_test_data, denormalizer_spec, extensions, future fields). */
#include "formats/spm_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_SGROUP = 3, WT_EGROUP = 4, WT_I32 = 5 };
enum { MODEL_UNIGRAM = 1, MODEL_BPE = 2, MODEL_WORD = 3, MODEL_CHAR = 4 };

typedef struct {
    const unsigned char *p, *end, *start; /* start: for offsets in messages */
    const char *what;
    const char *ctx; /* the message being read, for error text */
} pb_reader;

static gm_status pb_err(const pb_reader *r, const char *fault) {
    return gm_fail(GM_ERR_FORMAT, "%s: malformed protobuf in %s at byte %zu: %s", r->what, r->ctx,
                   (size_t)(r->p - r->start), fault);
}

static gm_status pb_varint(pb_reader *r, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) return pb_err(r, "truncated varint");
        unsigned char b = *r->p++;
        /* the tenth byte may only carry the top bit of a 64-bit value */
        if (shift == 63 && b > 1) return pb_err(r, "varint overflows 64 bits");
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return GM_OK;
        }
    }
    return pb_err(r, "varint longer than 10 bytes");
}

static gm_status pb_tag(pb_reader *r, uint32_t *field, int *wt) {
    uint64_t t;
    gm_status st = pb_varint(r, &t);
    if (st) return st;
    if ((t >> 3) == 0 || (t >> 3) > 0x1FFFFFFF) return pb_err(r, "invalid field number");
    *field = (uint32_t)(t >> 3);
    *wt = (int)(t & 7);
    return GM_OK;
}

/* A length-delimited payload: the sub-range it covers. */
static gm_status pb_bytes(pb_reader *r, const unsigned char **p, size_t *n) {
    uint64_t len;
    gm_status st = pb_varint(r, &len);
    if (st) return st;
    if (len > (uint64_t)(r->end - r->p)) return pb_err(r, "length runs past the end of the data");
    *p = r->p;
    *n = (size_t)len;
    r->p += len;
    return GM_OK;
}

static gm_status pb_skip(pb_reader *r, int wt) {
    uint64_t v = 0;
    const unsigned char *p = NULL;
    size_t n = 0;
    switch (wt) {
    case WT_VARINT: return pb_varint(r, &v);
    case WT_I64:
        if (r->end - r->p < 8) return pb_err(r, "truncated fixed64");
        r->p += 8;
        return GM_OK;
    case WT_LEN: return pb_bytes(r, &p, &n);
    case WT_I32:
        if (r->end - r->p < 4) return pb_err(r, "truncated fixed32");
        r->p += 4;
        return GM_OK;
    default: return pb_err(r, "unsupported wire type (groups are not used by SentencePiece)");
    }
}

static gm_status pb_expect(pb_reader *r, int wt, int want, uint32_t field) {
    if (wt == want) return GM_OK;
    char msg[96];
    snprintf(msg, sizeof msg, "field %u has wire type %d, expected %d", (unsigned)field, wt, want);
    return pb_err(r, msg);
}

static gm_status pb_float(pb_reader *r, float *out) {
    if (r->end - r->p < 4) return pb_err(r, "truncated float");
    uint32_t u = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 | (uint32_t)r->p[3] << 24;
    memcpy(out, &u, 4);
    r->p += 4;
    return GM_OK;
}

static pb_reader sub_reader(const pb_reader *parent, const unsigned char *p, size_t n, const char *ctx) {
    pb_reader s = {p, p + n, parent->start, parent->what, ctx};
    return s;
}

typedef struct {
    int model_type;
    int byte_fallback;
    int treat_ws_suffix;
    int64_t unk_id, bos_id, eos_id, pad_id;
    const unsigned char *piece_text[4]; /* unk, bos, eos, pad piece names */
    size_t piece_len[4];
    const unsigned char *unk_surface;
    size_t unk_surface_len;
    int has_unk_surface;
    /* normalizer */
    const unsigned char *norm_name;
    size_t norm_name_len;
    size_t charsmap_len;
    int add_dummy_prefix, remove_extra_ws, escape_ws;
} spm_specs;

static gm_status read_trainer_spec(pb_reader *r, spm_specs *s) {
    while (r->p < r->end) {
        uint32_t f = 0;
        int wt = 0;
        gm_status st = pb_tag(r, &f, &wt);
        if (st) return st;
        uint64_t v = 0;
        const unsigned char *p = NULL;
        size_t n = 0;
        switch (f) {
        case 3: /* model_type */
        case 24: /* treat_whitespace_as_suffix */
        case 35: /* byte_fallback */
        case 40: case 41: case 42: case 43: /* unk_id, bos_id, eos_id, pad_id */
            if ((st = pb_expect(r, wt, WT_VARINT, f)) || (st = pb_varint(r, &v))) return st;
            if (f == 3) s->model_type = v <= 100 ? (int)v : -1;
            else if (f == 24) s->treat_ws_suffix = v != 0;
            else if (f == 35) s->byte_fallback = v != 0;
            else {
                /* int32 fields: negative values arrive sign-extended to 64 bits */
                int64_t iv = (int64_t)v;
                if (iv < INT32_MIN || iv > INT32_MAX) return pb_err(r, "special id out of int32 range");
                if (f == 40) s->unk_id = iv;
                if (f == 41) s->bos_id = iv;
                if (f == 42) s->eos_id = iv;
                if (f == 43) s->pad_id = iv;
            }
            break;
        case 44: case 45: case 46: case 47: case 48: /* unk_surface, unk/bos/eos/pad_piece */
            if ((st = pb_expect(r, wt, WT_LEN, f)) || (st = pb_bytes(r, &p, &n))) return st;
            if (f == 44) {
                s->unk_surface = p;
                s->unk_surface_len = n;
                s->has_unk_surface = 1;
            } else {
                s->piece_text[f - 45] = p;
                s->piece_len[f - 45] = n;
            }
            break;
        default:
            if ((st = pb_skip(r, wt))) return st;
        }
    }
    return GM_OK;
}

static gm_status read_normalizer_spec(pb_reader *r, spm_specs *s) {
    while (r->p < r->end) {
        uint32_t f = 0;
        int wt = 0;
        gm_status st = pb_tag(r, &f, &wt);
        if (st) return st;
        uint64_t v = 0;
        const unsigned char *p = NULL;
        size_t n = 0;
        switch (f) {
        case 1: case 2: /* name, precompiled_charsmap */
            if ((st = pb_expect(r, wt, WT_LEN, f)) || (st = pb_bytes(r, &p, &n))) return st;
            if (f == 1) {
                s->norm_name = p;
                s->norm_name_len = n;
            } else {
                s->charsmap_len = n;
            }
            break;
        case 3: case 4: case 5:
            if ((st = pb_expect(r, wt, WT_VARINT, f)) || (st = pb_varint(r, &v))) return st;
            if (f == 3) s->add_dummy_prefix = v != 0;
            if (f == 4) s->remove_extra_ws = v != 0;
            if (f == 5) s->escape_ws = v != 0;
            break;
        default:
            if ((st = pb_skip(r, wt))) return st;
        }
    }
    return GM_OK;
}

static gm_status read_piece(pb_reader *r, gm_vocab *v) {
    const unsigned char *text = NULL;
    size_t text_len = 0;
    float score = 0;
    uint64_t type = GM_PIECE_NORMAL;
    while (r->p < r->end) {
        uint32_t f = 0;
        int wt = 0;
        gm_status st = pb_tag(r, &f, &wt);
        if (st) return st;
        if (f == 1) {
            if ((st = pb_expect(r, wt, WT_LEN, f)) || (st = pb_bytes(r, &text, &text_len))) return st;
        } else if (f == 2) {
            if ((st = pb_expect(r, wt, WT_I32, f)) || (st = pb_float(r, &score))) return st;
        } else if (f == 3) {
            if ((st = pb_expect(r, wt, WT_VARINT, f)) || (st = pb_varint(r, &type))) return st;
            if (type < GM_PIECE_NORMAL || type > GM_PIECE_BYTE) {
                char msg[64];
                snprintf(msg, sizeof msg, "unknown piece type %llu", (unsigned long long)type);
                return pb_err(r, msg);
            }
        } else if ((st = pb_skip(r, wt))) {
            return st;
        }
    }
    if (!text || text_len == 0) return pb_err(r, "piece has no text (SentencePiece requires non-empty pieces)");
    if (score != score) return pb_err(r, "piece score is NaN");
    return gm_vocab_add(v, (const char *)text, text_len, score, (int)type);
}

static int32_t find_named(const gm_vocab *v, const unsigned char *p, size_t n, const char *dflt) {
    if (p) return gm_vocab_find(v, (const char *)p, n);
    return gm_vocab_find(v, dflt, strlen(dflt));
}

gm_status gm_spm_model_parse(const void *data, size_t len, const char *what, gm_vocab **out) {
    *out = NULL;
    gm_vocab *v;
    gm_status st = gm_vocab_new(&v);
    if (st) return st;
    pb_reader r = {data, (const unsigned char *)data + len, data, what, "ModelProto"};
    /* proto2 defaults of the fields we use */
    spm_specs s = {.model_type = MODEL_UNIGRAM, .unk_id = 0, .bos_id = 1, .eos_id = 2, .pad_id = -1,
                   .add_dummy_prefix = 1, .remove_extra_ws = 1, .escape_ws = 1};
    int have_trainer = 0;
    if (len == 0) {
        st = gm_fail(GM_ERR_FORMAT, "%s: empty file, expected a SentencePiece model", what);
        goto fail;
    }
    while (r.p < r.end) {
        uint32_t f = 0;
        int wt = 0;
        if ((st = pb_tag(&r, &f, &wt))) goto fail;
        if (f >= 1 && f <= 3) {
            const unsigned char *p = NULL;
            size_t n = 0;
            if ((st = pb_expect(&r, wt, WT_LEN, f)) || (st = pb_bytes(&r, &p, &n))) goto fail;
            if (f == 1) {
                pb_reader sr = sub_reader(&r, p, n, "piece");
                if ((st = read_piece(&sr, v))) goto fail;
            } else if (f == 2) {
                pb_reader sr = sub_reader(&r, p, n, "trainer_spec");
                if ((st = read_trainer_spec(&sr, &s))) goto fail;
                have_trainer = 1;
            } else {
                pb_reader sr = sub_reader(&r, p, n, "normalizer_spec");
                if ((st = read_normalizer_spec(&sr, &s))) goto fail;
            }
        } else if ((st = pb_skip(&r, wt))) {
            goto fail;
        }
    }
    if (v->n == 0) {
        st = gm_fail(GM_ERR_FORMAT, "%s: no pieces: not a SentencePiece model", what);
        goto fail;
    }
    if (!have_trainer) {
        st = gm_fail(GM_ERR_FORMAT, "%s: no trainer_spec: cannot tell the model type", what);
        goto fail;
    }
    if (s.model_type != MODEL_BPE) {
        const char *names[] = {"?", "unigram", "BPE", "word", "char"};
        st = gm_fail(GM_ERR_UNSUPPORTED, "%s: model_type %s (%d) is not supported, only BPE (2)", what,
                     s.model_type >= 1 && s.model_type <= 4 ? names[s.model_type] : "unknown", s.model_type);
        goto fail;
    }
    /* Identity normalization is all Gemma uses; an NFKC-style charsmap would need its double-array
     * trie, which we do not implement. */
    int identity = s.norm_name_len == 8 && memcmp(s.norm_name, "identity", 8) == 0;
    if (s.charsmap_len > 0 && !identity) {
        st = gm_fail(GM_ERR_UNSUPPORTED, "%s: normalizer \"%.*s\" uses a precompiled_charsmap (%zu bytes); only "
                     "identity normalization is supported", what, (int)(s.norm_name_len > 64 ? 64 : s.norm_name_len),
                     s.norm_name ? (const char *)s.norm_name : "", s.charsmap_len);
        goto fail;
    }
    v->add_dummy_prefix = s.add_dummy_prefix;
    v->remove_extra_whitespaces = s.remove_extra_ws;
    v->escape_whitespaces = s.escape_ws;
    v->treat_whitespace_as_suffix = s.treat_ws_suffix;
    v->byte_fallback = s.byte_fallback;
    /* SentencePiece joins a run of unknown pieces into one <unk> (PopulateSentencePieceText) */
    v->fuse_unk = 1;
    if (s.has_unk_surface) {
        char *u = malloc(s.unk_surface_len + 1);
        if (!u) {
            st = gm_fail(GM_ERR_NOMEM, "%s: out of memory", what);
            goto fail;
        }
        memcpy(u, s.unk_surface, s.unk_surface_len);
        u[s.unk_surface_len] = 0;
        free(v->unk_surface);
        v->unk_surface = u;
    }
    if ((st = gm_vocab_finalize(v, what))) goto fail;
    /* SentencePiece requires exactly one UNKNOWN piece and all 256 byte pieces with byte_fallback. */
    if (v->unk_id < 0) {
        st = gm_fail(GM_ERR_FORMAT, "%s: no piece of type UNKNOWN (SentencePiece requires one)", what);
        goto fail;
    }
    if (v->byte_fallback && v->n_byte_pieces != 256) {
        st = gm_fail(GM_ERR_FORMAT, "%s: byte_fallback is on but only %d of the 256 <0xXX> byte pieces exist", what,
                     v->n_byte_pieces);
        goto fail;
    }
    /* Like SentencePiece, special ids come from the piece names (trainer_spec bos_piece etc., defaulting
     * to <s>, </s>, <pad>) and must be CONTROL pieces; the numeric ids are the fallback. */
    int64_t ids[3] = {s.bos_id, s.eos_id, s.pad_id};
    const char *dflt[3] = {"<s>", "</s>", "<pad>"};
    int32_t *dst[3] = {&v->bos_id, &v->eos_id, &v->pad_id};
    for (int i = 0; i < 3; i++) {
        int32_t id = find_named(v, s.piece_text[i + 1], s.piece_len[i + 1], dflt[i]);
        if (id < 0 && ids[i] >= 0 && ids[i] < v->n) id = (int32_t)ids[i];
        if (id >= 0 && v->type[id] != GM_PIECE_CONTROL) id = -1;
        *dst[i] = id;
    }
    *out = v;
    return GM_OK;
fail:
    gm_vocab_free(v);
    return st;
}
