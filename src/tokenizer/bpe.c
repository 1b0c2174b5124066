/* SentencePiece-BPE encoding and decoding (the gm_tokenizer_* API of gemma.h), token for token what
 * SentencePiece's bpe_model.cc does: normalize (space -> U+2581, user-defined pieces passed through),
 * split into characters and user-defined pieces, then repeatedly merge the adjacent pair whose
 * concatenation is the best-scoring piece (ties: leftmost) using a heap with lazy deletion, and finally
 * turn pieces that are not in the vocabulary into <0xXX> byte tokens. */
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/file.h"
#include "formats/gguf.h"
#include "base/utf8.h"
#include "formats/spm_model.h"
#include "formats/tokenizer_json.h"
#include "tokenizer/vocab.h"

struct gm_tokenizer {
    gm_vocab *v;
};

/* ---- loading ------------------------------------------------------------------------------------ */

gm_status gm_tokenizer_from_memory(const void *bytes, size_t len, const char *what, gm_tokenizer **out) {
    const char *data = bytes;
    *out = NULL;
    if (!data && len) return gm_fail(GM_ERR_ARG, "%s: NULL data", what);
    /* tokenizer.json is a JSON object; a ModelProto starts with field 1 (pieces), tag byte 0x0A. */
    size_t i = 0;
    if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0) i = 3;
    while (i < len && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n')) i++;
    gm_vocab *v = NULL;
    gm_status st = (i < len && data[i] == '{') ? gm_tokenizer_json_parse(data, len, what, &v)
                                               : gm_spm_model_parse(data, len, what, &v);
    if (st) return st;
    gm_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        gm_vocab_free(v);
        return gm_fail(GM_ERR_NOMEM, "%s: out of memory", what);
    }
    t->v = v;
    *out = t;
    return GM_OK;
}

gm_status gm_tokenizer_load(const char *path, gm_tokenizer **out) {
    if (!path || !out) return gm_fail(GM_ERR_ARG, "gm_tokenizer_load: NULL argument");
    *out = NULL;
    if (gm_gguf_is_gguf_file(path)) return gm_tokenizer_load_gguf(path, out); /* tokenizer.ggml.* metadata */
    char *data;
    size_t len;
    gm_status st = gm_file_read_all(path, &data, &len);
    if (st) return st;
    st = gm_tokenizer_from_memory(data, len, path, out);
    free(data);
    return st;
}

gm_status gm_tokenizer_load_dir(const char *dir, gm_tokenizer **out) {
    if (!dir || !out) return gm_fail(GM_ERR_ARG, "gm_tokenizer_load_dir: NULL argument");
    *out = NULL;
    if (gm_gguf_is_gguf_file(dir)) return gm_tokenizer_load_gguf(dir, out); /* a GGUF model file */
    /* tokenizer.model first: it is SentencePiece's own description; tokenizer.json is a conversion. */
    const char *names[2] = {"tokenizer.model", "tokenizer.json"};
    for (int i = 0; i < 2; i++) {
        char *p = gm_path_join(dir, names[i]);
        if (!p) return gm_fail(GM_ERR_NOMEM, "%s: out of memory", dir);
        if (gm_file_exists(p)) {
            gm_status st = gm_tokenizer_load(p, out);
            free(p);
            return st;
        }
        free(p);
    }
    return gm_fail(GM_ERR_IO, "%s: no tokenizer.model or tokenizer.json in this directory", dir);
}

void gm_tokenizer_free(gm_tokenizer *t) {
    if (!t) return;
    gm_vocab_free(t->v);
    free(t);
}

int gm_tokenizer_vocab_size(const gm_tokenizer *t) { return t ? t->v->n : 0; }

int32_t gm_tokenizer_piece_id(const gm_tokenizer *t, const char *piece) {
    if (!t || !piece) return -1;
    return gm_vocab_find(t->v, piece, strlen(piece));
}

int32_t gm_tokenizer_bos(const gm_tokenizer *t) { return t ? t->v->bos_id : -1; }
int32_t gm_tokenizer_eos(const gm_tokenizer *t) { return t ? t->v->eos_id : -1; }

/* ---- growable buffers --------------------------------------------------------------------------- */

typedef struct {
    int32_t *a;
    size_t n, cap;
} id_vec;

static int ids_push(id_vec *o, int32_t id) {
    if (o->n == o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 64;
        int32_t *a = realloc(o->a, nc * sizeof *a);
        if (!a) return 0;
        o->a = a;
        o->cap = nc;
    }
    o->a[o->n++] = id;
    return 1;
}

/* ---- normalization (SentencePiece Normalizer::Normalize, identity rules) ------------------------ */

static const char k_ws[] = "\xE2\x96\x81"; /* U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's space */

/* Normalize s[0..n) into out (capacity >= 3n + 3). Returns the normalized length. */
static size_t normalize(const gm_vocab *v, const char *s, size_t n, char *out) {
    size_t o = 0, i = 0;
    const char *ws = v->escape_whitespaces ? k_ws : " ";
    size_t ws_len = v->escape_whitespaces ? 3 : 1;
    if (v->remove_extra_whitespaces)
        while (i < n && s[i] == ' ') i++;
    if (i == n) return 0;
    if (!v->treat_whitespace_as_suffix && v->add_dummy_prefix) {
        memcpy(out + o, ws, ws_len);
        o += ws_len;
    }
    int prev_space = v->remove_extra_whitespaces;
    while (i < n) {
        /* A user-defined piece is copied as one unit (never split by normalization rules); otherwise
         * one character. */
        int32_t id;
        size_t k = gm_vocab_match(v, s + i, n - i, GM_PIECE_MASK(GM_PIECE_USER_DEFINED), &id);
        if (k == 0) {
            k = gm_utf8_char_len((unsigned char)s[i]);
            if (k > n - i) k = n - i;
        }
        const char *sp = s + i;
        size_t sn = k;
        while (prev_space && sn > 0 && sp[0] == ' ') {
            sp++;
            sn--;
        }
        if (sn > 0) {
            for (size_t j = 0; j < sn; j++) {
                if (v->escape_whitespaces && sp[j] == ' ') {
                    memcpy(out + o, k_ws, 3);
                    o += 3;
                } else {
                    out[o++] = sp[j];
                }
            }
            prev_space = sp[sn - 1] == ' ';
        }
        i += k;
        if (!v->remove_extra_whitespaces) prev_space = 0;
    }
    if (v->remove_extra_whitespaces)
        while (o >= ws_len && memcmp(out + o - ws_len, ws, ws_len) == 0) o -= ws_len;
    if (v->treat_whitespace_as_suffix && v->add_dummy_prefix) {
        memcpy(out + o, ws, ws_len);
        o += ws_len;
    }
    return o;
}

/* ---- BPE ---------------------------------------------------------------------------------------- */

typedef struct {
    int32_t prev, next;
    uint32_t start, len; /* bytes of the normalized text; len 0 = merged away */
    int frozen;          /* user-defined piece: never merged */
} symbol;

typedef struct {
    int32_t left, right;
    float score;
    uint32_t size; /* byte length of the merged piece when queued: detects stale entries */
} pair_entry;

typedef struct {
    pair_entry *a;
    size_t n, cap;
} pair_heap;

/* a before b: higher score first, then the leftmost pair (SentencePiece's SymbolPairComparator). */
static inline int pair_before(const pair_entry *a, const pair_entry *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static int heap_push(pair_heap *h, pair_entry e) {
    if (h->n == h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 256;
        pair_entry *a = realloc(h->a, nc * sizeof *a);
        if (!a) return 0;
        h->a = a;
        h->cap = nc;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!pair_before(&e, &h->a[p])) break;
        h->a[i] = h->a[p];
        i = p;
    }
    h->a[i] = e;
    return 1;
}

static pair_entry heap_pop(pair_heap *h) {
    pair_entry top = h->a[0], last = h->a[--h->n];
    size_t i = 0, n = h->n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && pair_before(&h->a[c + 1], &h->a[c])) c++;
        if (!pair_before(&h->a[c], &last)) break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (n) h->a[i] = last;
    return top;
}

/* SentencePiece's rev_merge: how an UNUSED piece was formed, so it can be split back. Only filled when
 * the vocabulary has UNUSED pieces; keyed by piece id, the latest queued pair wins (as in bpe_model.cc). */
typedef struct {
    int32_t id;
    uint32_t l_start, l_len, r_start, r_len;
} rev_merge;

typedef struct {
    const gm_vocab *v;
    const char *text; /* normalized */
    symbol *sym;
    pair_heap heap;
    rev_merge *rev;
    size_t n_rev, cap_rev;
    int has_unused;
    id_vec *out;
    int last_was_unk;
} bpe_state;

static int maybe_add_pair(bpe_state *b, int32_t l, int32_t r) {
    if (l < 0 || r < 0 || b->sym[l].frozen || b->sym[r].frozen) return 1;
    uint32_t start = b->sym[l].start, size = b->sym[l].len + b->sym[r].len;
    int32_t id = gm_vocab_find(b->v, b->text + start, size);
    if (id < 0 || !(b->v->flags[id] & GM_PIECE_MERGEABLE)) return 1;
    pair_entry e = {l, r, b->v->score[id], size};
    if (!heap_push(&b->heap, e)) return 0;
    if (b->has_unused && b->v->type[id] == GM_PIECE_UNUSED) {
        size_t k = 0;
        while (k < b->n_rev && b->rev[k].id != id) k++;
        if (k == b->n_rev) {
            if (b->n_rev == b->cap_rev) {
                size_t nc = b->cap_rev ? b->cap_rev * 2 : 16;
                rev_merge *a = realloc(b->rev, nc * sizeof *a);
                if (!a) return 0;
                b->rev = a;
                b->cap_rev = nc;
            }
            b->n_rev++;
        }
        rev_merge m = {id, b->sym[l].start, b->sym[l].len, b->sym[r].start, b->sym[r].len};
        b->rev[k] = m;
    }
    return 1;
}

static gm_status nomem(void) { return gm_fail(GM_ERR_NOMEM, "tokenizer: out of memory while encoding"); }

static gm_status unknown_text(const bpe_state *b, uint32_t s, uint32_t n) {
    return gm_fail(GM_ERR_ARG, "tokenizer: \"%.*s\" has no piece and the vocabulary has neither byte pieces nor "
                   "an unknown piece", (int)(n > 40 ? 40 : n), b->text + s);
}

/* Emit one final piece (SentencePieceProcessor::PopulateSentencePieceText): known pieces by id, UNUSED
 * pieces split back into what formed them, unknown text as UTF-8 byte tokens (or <unk>). */
static gm_status emit_piece(bpe_state *b, uint32_t start, uint32_t len) {
    const gm_vocab *v = b->v;
    /* explicit stack instead of SentencePiece's recursion: pieces may be long */
    uint32_t stack_s[64], stack_l[64];
    int sp = 0;
    stack_s[sp] = start;
    stack_l[sp++] = len;
    while (sp > 0) {
        sp--;
        uint32_t s = stack_s[sp], n = stack_l[sp];
        int32_t id = gm_vocab_find(v, b->text + s, n);
        if (id >= 0 && v->type[id] == GM_PIECE_UNUSED && sp + 2 <= 64) {
            size_t k = 0;
            while (k < b->n_rev && b->rev[k].id != id) k++;
            if (k < b->n_rev) {
                /* right first, so left pops first */
                stack_s[sp] = b->rev[k].r_start;
                stack_l[sp++] = b->rev[k].r_len;
                stack_s[sp] = b->rev[k].l_start;
                stack_l[sp++] = b->rev[k].l_len;
                continue;
            }
        }
        if (id < 0 || v->type[id] == GM_PIECE_UNKNOWN) {
            if (v->byte_fallback) {
                for (uint32_t i = 0; i < n; i++) {
                    int32_t bid = v->byte_id[(unsigned char)b->text[s + i]];
                    if (bid < 0) bid = v->unk_id;
                    if (bid < 0) return unknown_text(b, s, n);
                    if (!ids_push(b->out, bid)) return nomem();
                }
                b->last_was_unk = 0;
                continue;
            }
            if (v->unk_id < 0) return unknown_text(b, s, n);
            if (v->fuse_unk && b->last_was_unk) continue;
            if (!ids_push(b->out, v->unk_id)) return nomem();
            b->last_was_unk = 1;
            continue;
        }
        if (!ids_push(b->out, id)) return nomem();
        b->last_was_unk = 0;
    }
    return GM_OK;
}

/* Encode one stretch of raw text that contains no special-token matches. scratch holds >= 3n + 3 bytes
 * and (n + 1) symbols. */
static gm_status encode_segment(const gm_vocab *v, const char *s, size_t n, char *norm, symbol *sym, bpe_state *b) {
    size_t nn = normalize(v, s, n, norm);
    if (nn == 0) return GM_OK;
    b->text = norm;
    b->sym = sym;
    b->heap.n = 0;
    b->n_rev = 0;
    /* Split into user-defined pieces (longest match, on the normalized text) and single characters. */
    int32_t count = 0;
    for (size_t i = 0; i < nn;) {
        int32_t id;
        size_t k = gm_vocab_match(v, norm + i, nn - i, GM_PIECE_MASK(GM_PIECE_USER_DEFINED), &id);
        int frozen = k > 0;
        if (!k) {
            k = gm_utf8_char_len((unsigned char)norm[i]);
            if (k > nn - i) k = nn - i;
        }
        symbol *y = &sym[count];
        y->prev = count - 1;
        y->next = i + k < nn ? count + 1 : -1;
        y->start = (uint32_t)i;
        y->len = (uint32_t)k;
        y->frozen = frozen;
        count++;
        i += k;
    }
    /* User-defined symbols never merge, and no merge crosses a boundary between two characters that no
     * mergeable piece has side by side (the vocabulary's pair filter: in Gemma, a letter before U+2581).
     * The runs between such boundaries are independent: merging each with its own small heap gives the
     * same result as SentencePiece's one global heap (order only matters between pairs that share a
     * symbol) and keeps the heap cache-resident. With UNUSED
     * pieces the order of queued pairs decides how they are split back (rev_merge), so then we keep
     * SentencePiece's single queue. */
    for (int32_t a = 0; a < count;) {
        int32_t e = a;
        if (b->has_unused) e = count - 1;
        if (!sym[a].frozen || b->has_unused) {
            while (e + 1 < count && !sym[e + 1].frozen &&
                   (b->has_unused ||
                    gm_vocab_pair_may_merge(v, norm + sym[e].start, sym[e].len + sym[e + 1].len)))
                e++;
            b->heap.n = 0;
            for (int32_t i = a + 1; i <= e; i++)
                if (!maybe_add_pair(b, i - 1, i)) goto nomem;
            while (b->heap.n > 0) {
                pair_entry top = heap_pop(&b->heap);
                symbol *l = &sym[top.left], *r = &sym[top.right];
                /* stale: one side was merged away, or grew since the pair was queued */
                if (l->len == 0 || r->len == 0 || l->len + r->len != top.size) continue;
                l->len += r->len;
                l->next = r->next;
                if (r->next >= 0) sym[r->next].prev = top.left;
                r->len = 0;
                if (!maybe_add_pair(b, l->prev, top.left) || !maybe_add_pair(b, top.left, l->next)) goto nomem;
            }
        }
        a = e + 1;
    }
    for (int32_t i = 0; i >= 0; i = sym[i].next) {
        gm_status st = emit_piece(b, sym[i].start, sym[i].len);
        if (st) return st;
    }
    return GM_OK;
nomem:
    return gm_fail(GM_ERR_NOMEM, "tokenizer: out of memory encoding %zu bytes", n);
}

gm_status gm_tokenizer_encode(const gm_tokenizer *t, const char *text, size_t len, int flags, int32_t **ids,
                              size_t *n_ids) {
    if (!t || !ids || !n_ids || (!text && len)) return gm_fail(GM_ERR_ARG, "gm_tokenizer_encode: NULL argument");
    *ids = NULL;
    *n_ids = 0;
    const gm_vocab *v = t->v;
    size_t bad;
    if (!gm_utf8_valid(text, len, &bad))
        return gm_fail(GM_ERR_ARG, "tokenizer: input is not valid UTF-8 at byte offset %zu (byte 0x%02X)", bad,
                       (unsigned)(unsigned char)text[bad]);
    if (len > UINT32_MAX / 4) return gm_fail(GM_ERR_ARG, "tokenizer: input of %zu bytes is too long", len);
    if ((flags & GM_TOK_ADD_BOS) && v->bos_id < 0)
        return gm_fail(GM_ERR_ARG, "tokenizer: GM_TOK_ADD_BOS but the vocabulary has no <bos> piece");
    id_vec out = {0};
    bpe_state b = {0};
    b.v = v;
    b.out = &out;
    b.has_unused = v->has_unused;
    char *norm = malloc(3 * len + 8);
    symbol *sym = malloc((len + 2) * sizeof *sym);
    gm_status st = GM_OK;
    if (!norm || !sym || !ids_push(&out, 0)) {
        st = gm_fail(GM_ERR_NOMEM, "tokenizer: out of memory encoding %zu bytes", len);
        goto done;
    }
    out.n = 0;
    if (flags & GM_TOK_ADD_BOS) ids_push(&out, v->bos_id);
    size_t seg = 0;
    if (flags & GM_TOK_PARSE_SPECIAL) {
        /* Control (and unknown) pieces are cut out of the raw text first, longest match at each position;
         * the text between them is encoded on its own, so no merge crosses a special token. */
        unsigned mask = GM_PIECE_MASK(GM_PIECE_CONTROL) | GM_PIECE_MASK(GM_PIECE_UNKNOWN);
        for (size_t i = 0; i < len;) {
            int32_t id;
            size_t k = v->trie_root[(unsigned char)text[i]] >= 0 ? gm_vocab_match(v, text + i, len - i, mask, &id) : 0;
            if (!k) {
                i += gm_utf8_char_len((unsigned char)text[i]); /* valid UTF-8: never past len */
                continue;
            }
            if ((st = encode_segment(v, text + seg, i - seg, norm, sym, &b))) goto done;
            if (!ids_push(&out, id)) {
                st = gm_fail(GM_ERR_NOMEM, "tokenizer: out of memory");
                goto done;
            }
            b.last_was_unk = 0;
            i += k;
            seg = i;
        }
    }
    st = encode_segment(v, text + seg, len - seg, norm, sym, &b);
done:
    free(norm);
    free(sym);
    free(b.heap.a);
    free(b.rev);
    if (st) {
        free(out.a);
        return st;
    }
    *ids = out.a;
    *n_ids = out.n;
    return GM_OK;
}

/* ---- decoding ----------------------------------------------------------------------------------- */

/* Bytes of one token with U+2581 turned back into ' '. strip_ws drops a leading U+2581 (SentencePiece
 * removes the dummy prefix at the start of the text when the model adds one). */
static size_t token_text(const gm_vocab *v, int32_t id, int strip_ws, char *buf, size_t cap) {
    int t = v->type[id];
    if (t == GM_PIECE_CONTROL) return 0;
    if (t == GM_PIECE_BYTE) {
        if (cap > 0) buf[0] = (char)gm_vocab_byte_of_piece(gm_vocab_piece(v, id), v->len[id]);
        return 1;
    }
    const char *p = t == GM_PIECE_UNKNOWN ? v->unk_surface : gm_vocab_piece(v, id);
    size_t n = t == GM_PIECE_UNKNOWN ? strlen(v->unk_surface) : v->len[id];
    size_t i = 0, o = 0;
    if (strip_ws && t != GM_PIECE_UNKNOWN && n >= 3 && memcmp(p, k_ws, 3) == 0) i = 3;
    while (i < n) {
        if (t != GM_PIECE_UNKNOWN && n - i >= 3 && memcmp(p + i, k_ws, 3) == 0) {
            if (o < cap) buf[o] = ' ';
            o++;
            i += 3;
        } else {
            if (o < cap) buf[o] = p[i];
            o++;
            i++;
        }
    }
    return o;
}

size_t gm_tokenizer_token_bytes(const gm_tokenizer *t, int32_t id, char *buf, size_t cap) {
    if (!t || id < 0 || id >= t->v->n) return 0;
    return token_text(t->v, id, 0, buf, cap);
}

gm_status gm_tokenizer_decode(const gm_tokenizer *t, const int32_t *ids, size_t n_ids, char **text, size_t *len) {
    if (!t || !text || (!ids && n_ids)) return gm_fail(GM_ERR_ARG, "gm_tokenizer_decode: NULL argument");
    *text = NULL;
    if (len) *len = 0;
    const gm_vocab *v = t->v;
    size_t total = 0;
    int strip = v->add_dummy_prefix || v->remove_extra_whitespaces;
    for (size_t i = 0; i < n_ids; i++) {
        if (ids[i] < 0 || ids[i] >= v->n)
            return gm_fail(GM_ERR_ARG, "tokenizer: id %ld at position %zu is outside the vocabulary (0..%d)",
                           (long)ids[i], i, (int)v->n - 1);
        size_t k = token_text(v, ids[i], 0, NULL, 0);
        if (!gm_add_size(total, k, &total)) return gm_fail(GM_ERR_ARG, "tokenizer: decoded text too long");
    }
    char *buf = malloc(total + 1);
    if (!buf) return gm_fail(GM_ERR_NOMEM, "tokenizer: out of memory decoding %zu ids", n_ids);
    size_t o = 0;
    /* SentencePiece strips a leading U+2581 from every piece decoded while the text is still empty */
    for (size_t i = 0; i < n_ids; i++) o += token_text(v, ids[i], o == 0 && strip, buf + o, total - o);
    buf[o] = 0;
    *text = buf;
    if (len) *len = o;
    return GM_OK;
}
