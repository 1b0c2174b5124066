/* Vocabulary storage and lookup (see vocab.h): pieces live in one blob, found by an open-addressing
 * hash table (256k pieces load in a few milliseconds), and user-defined / control pieces by a trie so
 * the encoder can take the longest one at any position of the text. */
#include "tokenizer/vocab.h"

#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/utf8.h"

static const char k_unk_surface[] = " \xE2\x81\x87 ";

gm_status gm_vocab_new(gm_vocab **out) {
    *out = NULL;
    gm_vocab *v = calloc(1, sizeof *v);
    if (!v) return gm_fail(GM_ERR_NOMEM, "tokenizer: out of memory");
    /* NormalizerSpec defaults (sentencepiece_model.proto) */
    v->add_dummy_prefix = 1;
    v->remove_extra_whitespaces = 1;
    v->escape_whitespaces = 1;
    v->unk_id = v->bos_id = v->eos_id = v->pad_id = -1;
    for (int i = 0; i < 256; i++) v->byte_id[i] = -1;
    for (int i = 0; i < 256; i++) v->trie_root[i] = -1;
    v->unk_surface = malloc(sizeof k_unk_surface);
    if (!v->unk_surface) {
        free(v);
        return gm_fail(GM_ERR_NOMEM, "tokenizer: out of memory");
    }
    memcpy(v->unk_surface, k_unk_surface, sizeof k_unk_surface);
    *out = v;
    return GM_OK;
}

void gm_vocab_free(gm_vocab *v) {
    if (!v) return;
    free(v->blob);
    free(v->off);
    free(v->len);
    free(v->score);
    free(v->type);
    free(v->flags);
    free(v->unk_surface);
    free(v->slots);
    free(v->slot_hash);
    free(v->trie);
    free(v->pair_bits);
    free(v);
}

static int grow(void **p, size_t elem, size_t need, size_t *cap) {
    if (need <= *cap) return 1;
    size_t nc = *cap ? *cap : 64;
    while (nc < need) {
        if (nc > ((size_t)-1 / 2) / elem) return 0;
        nc *= 2;
    }
    void *q = realloc(*p, nc * elem);
    if (!q) return 0;
    *p = q;
    *cap = nc;
    return 1;
}

gm_status gm_vocab_add(gm_vocab *v, const char *piece, size_t len, float score, int type) {
    /* Offsets are 32-bit to keep 256k pieces compact; no real vocabulary comes near 4 GB of text. */
    if (v->n >= INT32_MAX - 1 || len > UINT32_MAX / 2 || v->blob_len + len + 1 > UINT32_MAX)
        return gm_fail(GM_ERR_FORMAT, "tokenizer: vocabulary too large");
    if (v->n == v->cap) {
        size_t nc = v->cap ? (size_t)v->cap * 2 : 1024;
        if (nc > INT32_MAX) nc = INT32_MAX;
        uint32_t *off = realloc(v->off, nc * sizeof *off);
        if (off) v->off = off;
        uint32_t *ln = realloc(v->len, nc * sizeof *ln);
        if (ln) v->len = ln;
        float *sc = realloc(v->score, nc * sizeof *sc);
        if (sc) v->score = sc;
        uint8_t *ty = realloc(v->type, nc);
        if (ty) v->type = ty;
        uint8_t *fl = realloc(v->flags, nc);
        if (fl) v->flags = fl;
        if (!off || !ln || !sc || !ty || !fl) return gm_fail(GM_ERR_NOMEM, "tokenizer: out of memory");
        v->cap = (int32_t)nc;
    }
    if (!grow((void **)&v->blob, 1, v->blob_len + len + 1, &v->blob_cap))
        return gm_fail(GM_ERR_NOMEM, "tokenizer: out of memory");
    if (len) memcpy(v->blob + v->blob_len, piece, len);
    v->blob[v->blob_len + len] = 0;
    int32_t id = v->n++;
    v->off[id] = (uint32_t)v->blob_len;
    v->len[id] = (uint32_t)len;
    v->score[id] = score;
    v->type[id] = (uint8_t)type;
    v->flags[id] = (type == GM_PIECE_NORMAL || type == GM_PIECE_USER_DEFINED || type == GM_PIECE_UNUSED)
                       ? GM_PIECE_MERGEABLE : 0;
    v->blob_len += len + 1;
    return GM_OK;
}

/* FNV-1a: short keys, good enough spread for piece texts, and no alignment assumptions. */
static uint32_t hash_bytes(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

static uint64_t hash64(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

int gm_vocab_pair_may_merge(const gm_vocab *v, const char *s, size_t n) {
    if (!v->pair_bits) return 1;
    uint64_t h = hash64(s, n), a = h & v->pair_mask, b = (h >> 32) & v->pair_mask;
    return (v->pair_bits[a >> 6] >> (a & 63) & 1) && (v->pair_bits[b >> 6] >> (b & 63) & 1);
}

/* Fill the pair filter from every mergeable piece of two or more characters. */
static gm_status build_pair_filter(gm_vocab *v, const char *what) {
    size_t pairs = 0;
    for (int32_t id = 0; id < v->n; id++) {
        if (!(v->flags[id] & GM_PIECE_MERGEABLE)) continue;
        const char *p = gm_vocab_piece(v, id);
        for (size_t i = 0, n = v->len[id]; i < n; i += gm_utf8_char_len((unsigned char)p[i])) pairs++;
    }
    /* ~16 bits per pair and two probes: about 1-2% false positives */
    uint64_t bits = 1 << 16;
    while (bits < (uint64_t)pairs * 16 && bits < ((uint64_t)1 << 30)) bits <<= 1;
    free(v->pair_bits);
    v->pair_bits = calloc((size_t)(bits / 64), sizeof *v->pair_bits);
    if (!v->pair_bits) return gm_fail(GM_ERR_NOMEM, "%s: out of memory for the vocabulary", what);
    v->pair_mask = bits - 1;
    for (int32_t id = 0; id < v->n; id++) {
        if (!(v->flags[id] & GM_PIECE_MERGEABLE)) continue;
        const char *p = gm_vocab_piece(v, id);
        size_t n = v->len[id];
        size_t a = 0, b = a + gm_utf8_char_len((unsigned char)p[0]);
        while (b < n) {
            size_t c = b + gm_utf8_char_len((unsigned char)p[b]);
            if (c > n) c = n;
            uint64_t h = hash64(p + a, c - a), x = h & v->pair_mask, y = (h >> 32) & v->pair_mask;
            v->pair_bits[x >> 6] |= (uint64_t)1 << (x & 63);
            v->pair_bits[y >> 6] |= (uint64_t)1 << (y & 63);
            a = b;
            b = c;
        }
    }
    return GM_OK;
}

int32_t gm_vocab_find(const gm_vocab *v, const char *s, size_t len) {
    if (!v->slots) return -1;
    uint32_t h = hash_bytes(s, len);
    for (size_t i = h & v->mask;; i = (i + 1) & v->mask) {
        int32_t id = v->slots[i];
        if (id < 0) return -1;
        if (v->slot_hash[i] == h && v->len[id] == len && memcmp(v->blob + v->off[id], s, len) == 0) return id;
    }
}

int gm_vocab_byte_of_piece(const char *s, size_t len) {
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int b = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return -1;
        b = b * 16 + d;
    }
    return b;
}

static gm_status trie_insert(gm_vocab *v, int32_t id) {
    const unsigned char *s = (const unsigned char *)gm_vocab_piece(v, id);
    size_t n = v->len[id];
    int32_t *link = &v->trie_root[s[0]];
    int32_t node = -1;
    for (size_t i = 0; i < n; i++) {
        /* link points at the head of the sibling list that should contain byte s[i] */
        int32_t cur = *link;
        while (cur >= 0 && v->trie[cur].byte != s[i]) cur = v->trie[cur].sibling;
        if (cur < 0) {
            if (v->trie_n == v->trie_cap) {
                size_t cap = (size_t)v->trie_cap;
                /* `link` may point into the array being moved: remember it as an index */
                ptrdiff_t rel = (link >= &v->trie_root[0] && link < &v->trie_root[256]) ? -1
                                : (ptrdiff_t)((char *)link - (char *)v->trie);
                if (v->trie_n >= INT32_MAX / 2 || !grow((void **)&v->trie, sizeof *v->trie, cap + 1, &cap))
                    return gm_fail(GM_ERR_NOMEM, "tokenizer: out of memory");
                v->trie_cap = (int32_t)cap;
                if (rel >= 0) link = (int32_t *)((char *)v->trie + rel);
            }
            cur = v->trie_n++;
            v->trie[cur].byte = s[i];
            v->trie[cur].child = -1;
            v->trie[cur].id = -1;
            /* root lists are one node per first byte; deeper levels chain siblings */
            v->trie[cur].sibling = i == 0 ? -1 : *link;
            *link = cur;
        }
        node = cur;
        if (i + 1 < n) link = &v->trie[node].child;
    }
    if (node >= 0 && v->trie[node].id < 0) v->trie[node].id = id;
    return GM_OK;
}

size_t gm_vocab_match(const gm_vocab *v, const char *s, size_t n, unsigned type_mask, int32_t *id) {
    if (n == 0) return 0;
    const unsigned char *u = (const unsigned char *)s;
    int32_t node = v->trie_root[u[0]];
    size_t best = 0;
    for (size_t i = 0; node >= 0;) {
        int32_t t = v->trie[node].id;
        if (t >= 0 && (type_mask & GM_PIECE_MASK(v->type[t]))) {
            best = i + 1;
            *id = t;
        }
        if (++i >= n) break;
        int32_t c = v->trie[node].child;
        while (c >= 0 && v->trie[c].byte != u[i]) c = v->trie[c].sibling;
        node = c;
    }
    return best;
}

gm_status gm_vocab_finalize(gm_vocab *v, const char *what) {
    if (v->n <= 0) return gm_fail(GM_ERR_FORMAT, "%s: the vocabulary has no pieces", what);
    size_t cap = 1024;
    while (cap < (size_t)v->n * 2) cap *= 2;
    free(v->slots);
    free(v->slot_hash);
    v->slots = malloc(cap * sizeof *v->slots);
    v->slot_hash = malloc(cap * sizeof *v->slot_hash);
    if (!v->slots || !v->slot_hash) return gm_fail(GM_ERR_NOMEM, "%s: out of memory for the vocabulary", what);
    memset(v->slots, 0xFF, cap * sizeof *v->slots);
    v->mask = cap - 1;
    for (int i = 0; i < 256; i++) v->byte_id[i] = -1;
    /* finalize may run again after types change (tokenizer.json): start the derived tables afresh */
    for (int i = 0; i < 256; i++) v->trie_root[i] = -1;
    v->trie_n = 0;
    v->has_unused = 0;
    int n_bytes = 0;
    for (int32_t id = 0; id < v->n; id++) {
        const char *p = gm_vocab_piece(v, id);
        size_t len = v->len[id];
        if (len == 0) return gm_fail(GM_ERR_FORMAT, "%s: piece %d is empty", what, (int)id);
        uint32_t h = hash_bytes(p, len);
        size_t i = h & v->mask;
        for (; v->slots[i] >= 0; i = (i + 1) & v->mask) {
            int32_t o = v->slots[i];
            if (v->slot_hash[i] == h && v->len[o] == len && memcmp(gm_vocab_piece(v, o), p, len) == 0)
                return gm_fail(GM_ERR_FORMAT, "%s: piece %d \"%.40s\" duplicates piece %d", what, (int)id, p,
                               (int)o);
        }
        v->slots[i] = id;
        v->slot_hash[i] = h;
        int t = v->type[id];
        if (t == GM_PIECE_UNUSED) v->has_unused = 1;
        if (t < GM_PIECE_NORMAL || t > GM_PIECE_BYTE)
            return gm_fail(GM_ERR_FORMAT, "%s: piece %d has unknown type %d", what, (int)id, t);
        if (t == GM_PIECE_BYTE) {
            int b = gm_vocab_byte_of_piece(p, len);
            if (b < 0) return gm_fail(GM_ERR_FORMAT, "%s: byte piece %d \"%.40s\" is not <0xXX>", what, (int)id, p);
            if (!v->byte_fallback)
                return gm_fail(GM_ERR_FORMAT, "%s: byte piece %d \"%s\" found although byte_fallback is off", what,
                               (int)id, p);
            if (v->byte_id[b] < 0) n_bytes++;
            v->byte_id[b] = id;
        }
        if (t == GM_PIECE_UNKNOWN) {
            if (v->unk_id >= 0 && v->unk_id != id && v->type[v->unk_id] == GM_PIECE_UNKNOWN)
                return gm_fail(GM_ERR_FORMAT, "%s: more than one unknown piece (%d and %d)", what, (int)v->unk_id,
                               (int)id);
            v->unk_id = id;
        }
        if (t == GM_PIECE_USER_DEFINED || t == GM_PIECE_CONTROL || t == GM_PIECE_UNKNOWN) {
            gm_status st = trie_insert(v, id);
            if (st) return gm_fail_prefix(st, "%s: ", what);
        }
    }
    v->n_byte_pieces = n_bytes;
    gm_status st = build_pair_filter(v, what);
    if (st) return st;
    if (v->unk_id >= v->n || v->bos_id >= v->n || v->eos_id >= v->n || v->pad_id >= v->n)
        return gm_fail(GM_ERR_FORMAT, "%s: a special id (unk %d, bos %d, eos %d, pad %d) is past the %d pieces",
                       what, (int)v->unk_id, (int)v->bos_id, (int)v->eos_id, (int)v->pad_id, (int)v->n);
    return GM_OK;
}
