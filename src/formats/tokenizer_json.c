/* Hugging Face tokenizer.json -> gm_vocab. The merge list's order becomes the piece score (earlier merge =
 * higher priority), added tokens become control (special) or user-defined pieces, and the normalizer /
 * pre-tokenizer must be one of the SentencePiece-equivalent forms (Replace " "->"▁", Prepend "▁",
 * Metaspace without splitting, Split on " " after the Replace); anything else is reported as unsupported
 * rather than encoded wrongly. */
#include "formats/tokenizer_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/json.h"

#define WS "\xE2\x96\x81"

typedef struct {
    int escape, prepend; /* seen Replace(" " -> "▁"), Prepend("▁") */
} norm_flags;

static int str_is(const gm_json *j, const char *s) {
    return j && j->type == GM_JSON_STRING && j->len == strlen(s) && memcmp(j->str, s, j->len) == 0;
}

static gm_status read_normalizer(const gm_json *n, norm_flags *f, const char *what, int depth) {
    if (!n || n->type == GM_JSON_NULL) return GM_OK;
    if (n->type != GM_JSON_OBJECT || depth > 8) return gm_fail(GM_ERR_FORMAT, "%s: normalizer is not an object", what);
    const char *type = gm_json_get_str(n, "type");
    if (!type) return gm_fail(GM_ERR_FORMAT, "%s: normalizer has no \"type\"", what);
    if (!strcmp(type, "Sequence")) {
        const gm_json *list = gm_json_get(n, "normalizers");
        if (!list || list->type != GM_JSON_ARRAY)
            return gm_fail(GM_ERR_FORMAT, "%s: normalizer Sequence has no \"normalizers\" array", what);
        for (size_t i = 0; i < list->len; i++) {
            gm_status st = read_normalizer(&list->items[i], f, what, depth + 1);
            if (st) return st;
        }
        return GM_OK;
    }
    if (!strcmp(type, "Replace")) {
        const gm_json *pat = gm_json_get(n, "pattern");
        if (pat && str_is(gm_json_get(pat, "String"), " ") && str_is(gm_json_get(n, "content"), WS)) {
            f->escape = 1;
            return GM_OK;
        }
        return gm_fail(GM_ERR_UNSUPPORTED, "%s: normalizer Replace other than \" \" -> \"\\u2581\" is not supported",
                       what);
    }
    if (!strcmp(type, "Prepend")) {
        if (str_is(gm_json_get(n, "prepend"), WS)) {
            f->prepend = 1;
            return GM_OK;
        }
        return gm_fail(GM_ERR_UNSUPPORTED, "%s: normalizer Prepend other than \"\\u2581\" is not supported", what);
    }
    return gm_fail(GM_ERR_UNSUPPORTED, "%s: normalizer \"%s\" is not supported (only Replace, Prepend, Sequence)",
                   what, type);
}

static gm_status read_pre_tokenizer(const gm_json *p, norm_flags *f, const char *what) {
    if (!p || p->type == GM_JSON_NULL) return GM_OK;
    const char *type = gm_json_get_str(p, "type");
    if (type && !strcmp(type, "Metaspace")) {
        /* Metaspace(replacement "▁", split false) is the same as Replace + optional Prepend. */
        int split = 1;
        gm_json_get_bool(p, "split", &split);
        const char *rep = gm_json_get_str(p, "replacement");
        if (split || (rep && strcmp(rep, WS) != 0))
            return gm_fail(GM_ERR_UNSUPPORTED, "%s: pre_tokenizer Metaspace with split or a replacement other "
                           "than \"\\u2581\" is not supported", what);
        const char *scheme = gm_json_get_str(p, "prepend_scheme");
        int add = 1;
        gm_json_get_bool(p, "add_prefix_space", &add);
        if (scheme) add = strcmp(scheme, "never") != 0;
        f->escape = 1;
        if (add) f->prepend = 1;
        return GM_OK;
    }
    if (type && !strcmp(type, "Split")) {
        /* Gemma 3: Split on the string " " after a Replace(" " -> "▁") normalizer. The pre-tokenizer sees the
         * normalized text, which has no space left, so the split never happens: the whole text is one piece,
         * as SentencePiece wants. Without that normalizer it would really split, which we do not do. */
        const gm_json *pat = gm_json_get(p, "pattern");
        int invert = 0;
        gm_json_get_bool(p, "invert", &invert);
        if (pat && str_is(gm_json_get(pat, "String"), " ") && !invert && f->escape) return GM_OK;
        return gm_fail(GM_ERR_UNSUPPORTED, "%s: pre_tokenizer Split is supported only on the string \" \", not "
                       "inverted, after a normalizer that replaces \" \" with \"\\u2581\" (then it splits nothing)",
                       what);
    }
    return gm_fail(GM_ERR_UNSUPPORTED, "%s: pre_tokenizer \"%s\" is not supported (SentencePiece-style BPE runs "
                   "on the whole text)", what, type ? type : "?");
}

static const char *const k_bos[] = {"<bos>", "<s>"}, *const k_eos[] = {"<eos>", "</s>"};

static int is_marker(const char *s) {
    return !strcmp(s, k_bos[0]) || !strcmp(s, k_bos[1]) || !strcmp(s, k_eos[0]) || !strcmp(s, k_eos[1]) ||
           !strcmp(s, "<pad>");
}

static int is_unused_name(const char *s, size_t n) {
    if (n < 9 || memcmp(s, "<unused", 7) != 0 || s[n - 1] != '>') return 0;
    for (size_t i = 7; i + 1 < n; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return 1;
}

/* A tokenizer.json converted from a SentencePiece BPE model (HF's SentencePieceExtractor) lists merges
 * sorted by the merged piece's score. Normal pieces score -(id - first normal id), so after a leading
 * block their first merges appear in increasing id order; that leading block holds the score-0 pieces,
 * i.e. SentencePiece's user-defined pieces (in Gemma: newline, space and tab runs), plus the first
 * normal piece (the one right after the byte pieces), whose score is -0.0. Inside the block the order
 * depends on the converter (Gemma 1: by id; Gemma 3: by length), so the block is what precedes the
 * longest id-increasing suffix, and that suffix must start right after the byte pieces. HF forgets to
 * list some of them (Gemma 1's tab runs) as added tokens, yet SentencePiece matches them whole before
 * merging, so they must be user-defined here too or the two loaders disagree. order[] = merged piece
 * ids by first merge rank. */
static void infer_user_defined(gm_vocab *v, const int32_t *order, size_t n) {
    if (n < 2) return;
    size_t head = n - 1;
    while (head > 0 && order[head - 1] < order[head]) head--;
    if (head == 0) return;
    int32_t last_byte = -1;
    for (int b = 0; b < 256; b++)
        if (v->byte_id[b] > last_byte) last_byte = v->byte_id[b];
    if (last_byte < 0) return;
    /* the signature: the increasing tail starts at the first normal piece, or just after it when that one
     * sorted into the score-0 block; otherwise leave the types alone */
    int first_in_head = 0;
    for (size_t k = 0; k < head; k++) first_in_head |= order[k] == last_byte + 1;
    if (!(order[head] == last_byte + 1 || (first_in_head && order[head] == last_byte + 2))) return;
    for (size_t k = 0; k < head; k++) {
        int32_t id = order[k];
        if (v->type[id] != GM_PIECE_NORMAL || id == last_byte + 1) continue;
        v->type[id] = GM_PIECE_USER_DEFINED;
    }
}

/* Piece texts indexed by id, before they go into the vocabulary. */
typedef struct {
    const char *s;
    size_t len;
    int type;
    int in_vocab; /* listed in model.vocab (not only in added_tokens) */
} slot;

gm_status gm_tokenizer_json_parse(const char *text, size_t len, const char *what, gm_vocab **out) {
    *out = NULL;
    gm_json_doc *doc = NULL;
    gm_vocab *v = NULL;
    slot *slots = NULL;
    char *cat = NULL;
    int32_t *order = NULL;
    gm_status st = gm_json_parse(text, len, what, &doc);
    if (st) return st;
    const gm_json *root = gm_json_root(doc);
    const gm_json *model = gm_json_get(root, "model");
    if (!model || model->type != GM_JSON_OBJECT) {
        st = gm_fail(GM_ERR_FORMAT, "%s: no \"model\" object: not a tokenizer.json", what);
        goto done;
    }
    const char *mtype = gm_json_get_str(model, "type");
    if (!mtype || strcmp(mtype, "BPE") != 0) {
        st = gm_fail(GM_ERR_UNSUPPORTED, "%s: model.type \"%s\" is not supported, only BPE", what,
                     mtype ? mtype : "(missing)");
        goto done;
    }
    norm_flags nf = {0, 0};
    if ((st = read_normalizer(gm_json_get(root, "normalizer"), &nf, what, 0))) goto done;
    if ((st = read_pre_tokenizer(gm_json_get(root, "pre_tokenizer"), &nf, what))) goto done;
    const gm_json *vocab = gm_json_get(model, "vocab");
    if (!vocab || vocab->type != GM_JSON_OBJECT || vocab->len == 0) {
        st = gm_fail(GM_ERR_FORMAT, "%s: model.vocab is missing or not a non-empty object", what);
        goto done;
    }
    const gm_json *added = gm_json_get(root, "added_tokens");
    if (added && added->type != GM_JSON_ARRAY && added->type != GM_JSON_NULL) {
        st = gm_fail(GM_ERR_FORMAT, "%s: added_tokens is not an array", what);
        goto done;
    }
    size_t n_added = added && added->type == GM_JSON_ARRAY ? added->len : 0;
    /* Ids must cover 0..n-1 exactly once; added tokens may extend past model.vocab (HF allows it). */
    int64_t max_id = -1;
    for (size_t i = 0; i < vocab->len; i++) {
        const gm_json *idj = &vocab->members[i].value;
        if (idj->type != GM_JSON_NUMBER || !idj->is_int || idj->i < 0 || idj->i >= INT32_MAX / 2) {
            st = gm_fail(GM_ERR_FORMAT, "%s: model.vocab[\"%.40s\"] is not a valid id", what, vocab->members[i].key);
            goto done;
        }
        if (idj->i > max_id) max_id = idj->i;
    }
    for (size_t i = 0; i < n_added; i++) {
        int64_t id;
        const gm_json *a = &added->items[i];
        if (!gm_json_get_int(a, "id", &id) || id < 0 || id >= INT32_MAX / 2 || !gm_json_get_str(a, "content")) {
            st = gm_fail(GM_ERR_FORMAT, "%s: added_tokens[%zu] lacks a valid \"id\" or \"content\"", what, i);
            goto done;
        }
        if (id > max_id) max_id = id;
    }
    size_t n = (size_t)max_id + 1;
    if (n > vocab->len + n_added) {
        st = gm_fail(GM_ERR_FORMAT, "%s: ids go up to %lld but there are only %zu pieces: ids have gaps", what,
                     (long long)max_id, vocab->len + n_added);
        goto done;
    }
    slots = calloc(n, sizeof *slots);
    if (!slots) {
        st = gm_fail(GM_ERR_NOMEM, "%s: out of memory", what);
        goto done;
    }
    for (size_t i = 0; i < vocab->len; i++) {
        size_t id = (size_t)vocab->members[i].value.i;
        if (slots[id].s) {
            st = gm_fail(GM_ERR_FORMAT, "%s: model.vocab gives id %zu to both \"%.40s\" and \"%.40s\"", what, id,
                         slots[id].s, vocab->members[i].key);
            goto done;
        }
        slots[id].s = vocab->members[i].key;
        slots[id].len = vocab->members[i].key_len;
        slots[id].type = GM_PIECE_NORMAL;
        slots[id].in_vocab = 1;
    }
    const char *unk = gm_json_get_str(model, "unk_token");
    for (size_t i = 0; i < n_added; i++) {
        const gm_json *a = &added->items[i];
        const gm_json *c = gm_json_get(a, "content");
        int64_t id64;
        gm_json_get_int(a, "id", &id64);
        size_t id = (size_t)id64;
        int special = 0;
        gm_json_get_bool(a, "special", &special);
        if (slots[id].s && (slots[id].len != c->len || memcmp(slots[id].s, c->str, c->len) != 0)) {
            st = gm_fail(GM_ERR_FORMAT, "%s: added token %zu \"%.40s\" differs from model.vocab's \"%.40s\"", what, id,
                         c->str, slots[id].s);
            goto done;
        }
        slots[id].s = c->str;
        slots[id].len = c->len;
        /* Added tokens are user-defined pieces (matched anywhere in the text, as HF matches every added
         * token), except the sequence markers, which are SentencePiece control pieces (matched only with
         * GM_TOK_PARSE_SPECIAL) and the unknown piece. That is how they are typed in Gemma's (and Llama's)
         * tokenizer.model: <start_of_turn> (and Gemma 3's <start_of_image>) is user-defined there although
         * HF flags it special. A special added token that model.vocab lacks (Gemma 3's <image_soft_token>,
         * id 262144) is no piece of the SentencePiece model at all: it becomes a control piece, so plain
         * text encodes the same from either file. */
        slots[id].type = special && (is_marker(c->str) || !slots[id].in_vocab) ? GM_PIECE_CONTROL
                                                                               : GM_PIECE_USER_DEFINED;
        if (unk && !strcmp(unk, c->str)) slots[id].type = GM_PIECE_UNKNOWN;
    }
    for (size_t i = 0; i < n; i++) {
        if (!slots[i].s) {
            st = gm_fail(GM_ERR_FORMAT, "%s: no piece has id %zu (ids must be 0..%zu without gaps)", what, i, n - 1);
            goto done;
        }
    }
    int byte_fallback = 0;
    gm_json_get_bool(model, "byte_fallback", &byte_fallback);
    /* HF's Gemma converter renamed byte piece "<0x09>" to "\t". Inside the block of <0xXX> pieces, a piece
     * equal to the raw byte itself is that byte's piece: name it back so byte fallback finds it. The id
     * and the decoded text are unchanged. */
    int32_t b0 = -1;
    for (size_t i = 0; i < n && b0 < 0; i++)
        if (slots[i].len == 6 && !memcmp(slots[i].s, "<0x00>", 6)) b0 = (int32_t)i;
    char byte_names[256][7]; /* must outlive the gm_vocab_add calls below, which copy */
    if (byte_fallback && b0 >= 0 && (size_t)b0 + 256 <= n) {
        for (int b = 0; b < 256; b++) {
            slot *sl = &slots[b0 + b];
            if (sl->len == 1 && (unsigned char)sl->s[0] == b && sl->type == GM_PIECE_NORMAL) {
                snprintf(byte_names[b], sizeof byte_names[b], "<0x%02X>", b);
                sl->s = byte_names[b];
                sl->len = 6;
            }
        }
    }
    if ((st = gm_vocab_new(&v))) goto done;
    v->byte_fallback = byte_fallback;
    v->add_dummy_prefix = nf.prepend;
    v->remove_extra_whitespaces = 0;
    v->escape_whitespaces = nf.escape;
    int fuse = 0;
    gm_json_get_bool(model, "fuse_unk", &fuse);
    v->fuse_unk = fuse;
    for (size_t i = 0; i < n; i++) {
        int type = slots[i].type;
        if (type == GM_PIECE_NORMAL && byte_fallback && gm_vocab_byte_of_piece(slots[i].s, slots[i].len) >= 0)
            type = GM_PIECE_BYTE;
        if (type == GM_PIECE_NORMAL && unk && slots[i].len == strlen(unk) && !memcmp(slots[i].s, unk, slots[i].len))
            type = GM_PIECE_UNKNOWN;
        /* Gemma's tokenizer.model has every <unusedN> and "[toxicity=0]" as user-defined pieces; HF's Gemma 1
         * tokenizer.json forgets <unused99> and [toxicity=0] in added_tokens (its Gemma 2 file lists them). */
        if (type == GM_PIECE_NORMAL && (is_unused_name(slots[i].s, slots[i].len) ||
                                        (slots[i].len == 12 && !memcmp(slots[i].s, "[toxicity=0]", 12))))
            type = GM_PIECE_USER_DEFINED;
        if ((st = gm_vocab_add(v, slots[i].s, slots[i].len, 0.0f, type))) goto done;
        /* only pieces that some merge produces may be formed by merging (set below) */
        v->flags[i] = 0;
    }
    if ((st = gm_vocab_finalize(v, what))) goto done;
    /* Merges: rank r gives the merged piece score -r, kept at its first (best) rank. */
    const gm_json *merges = gm_json_get(model, "merges");
    if (!merges || merges->type != GM_JSON_ARRAY) {
        st = gm_fail(GM_ERR_FORMAT, "%s: model.merges is missing or not an array", what);
        goto done;
    }
    if (merges->len > (1u << 24)) {
        /* float scores represent ranks exactly only up to 2^24 */
        st = gm_fail(GM_ERR_UNSUPPORTED, "%s: %zu merges: more than 2^24 are not supported", what, merges->len);
        goto done;
    }
    size_t cat_cap = 256, n_order = 0;
    order = calloc((size_t)v->n, sizeof *order);
    cat = malloc(cat_cap);
    if (!order || !cat) {
        st = gm_fail(GM_ERR_NOMEM, "%s: out of memory", what);
        goto done;
    }
    for (size_t r = 0; r < merges->len; r++) {
        const gm_json *m = &merges->items[r];
        const char *a, *b;
        size_t la, lb;
        if (m->type == GM_JSON_STRING) {
            const char *sp = memchr(m->str, ' ', m->len);
            if (!sp || memchr(sp + 1, ' ', m->len - (size_t)(sp + 1 - m->str))) {
                st = gm_fail(GM_ERR_FORMAT, "%s: merges[%zu] \"%.40s\" is not two pieces separated by one space",
                             what, r, m->str);
                goto done;
            }
            a = m->str;
            la = (size_t)(sp - m->str);
            b = sp + 1;
            lb = m->len - la - 1;
        } else if (m->type == GM_JSON_ARRAY && m->len == 2 && m->items[0].type == GM_JSON_STRING &&
                   m->items[1].type == GM_JSON_STRING) {
            a = m->items[0].str;
            la = m->items[0].len;
            b = m->items[1].str;
            lb = m->items[1].len;
        } else {
            st = gm_fail(GM_ERR_FORMAT, "%s: merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", what, r);
            goto done;
        }
        if (la == 0 || lb == 0) {
            st = gm_fail(GM_ERR_FORMAT, "%s: merges[%zu] has an empty side", what, r);
            goto done;
        }
        if (la + lb > cat_cap) {
            cat_cap = 2 * (la + lb);
            char *c2 = realloc(cat, cat_cap);
            if (!c2) {
                st = gm_fail(GM_ERR_NOMEM, "%s: out of memory", what);
                goto done;
            }
            cat = c2;
        }
        memcpy(cat, a, la);
        memcpy(cat + la, b, lb);
        int32_t id = gm_vocab_find(v, cat, la + lb);
        if (id < 0) {
            st = gm_fail(GM_ERR_FORMAT, "%s: merges[%zu] makes \"%.*s\", which is not in model.vocab", what, r,
                         (int)(la + lb > 60 ? 60 : la + lb), cat);
            goto done;
        }
        if (!(v->flags[id] & GM_PIECE_MERGEABLE)) {
            v->flags[id] |= GM_PIECE_MERGEABLE;
            v->score[id] = -(float)r;
            order[n_order++] = id;
        }
    }
    /* again: types may have changed, and the encoder's pair filter depends on the merge flags */
    infer_user_defined(v, order, n_order);
    if ((st = gm_vocab_finalize(v, what))) goto done;
    /* Special ids: Gemma's names first, then the Llama-style ones. */
    for (int i = 0; i < 2; i++) {
        int32_t id = gm_vocab_find(v, k_bos[i], strlen(k_bos[i]));
        if (v->bos_id < 0 && id >= 0) v->bos_id = id;
        id = gm_vocab_find(v, k_eos[i], strlen(k_eos[i]));
        if (v->eos_id < 0 && id >= 0) v->eos_id = id;
    }
    v->pad_id = gm_vocab_find(v, "<pad>", 5);
    *out = v;
    v = NULL;
done:
    free(order);
    free(cat);
    free(slots);
    gm_vocab_free(v);
    gm_json_free(doc);
    return st;
}
