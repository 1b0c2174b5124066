/* The vocabulary shared by both tokenizer loaders (SentencePiece tokenizer.model and HF tokenizer.json):
 * pieces with scores and types, normalizer flags, special ids, a hash table from piece text to id and a
 * small trie for longest-match of user-defined / control pieces in raw text. */
#ifndef GM_TOKENIZER_VOCAB_H
#define GM_TOKENIZER_VOCAB_H

#include <stddef.h>
#include <stdint.h>

#include "gemma.h"

/* Piece types, numbered as in SentencePiece's ModelProto.SentencePiece.Type. */
enum {
    GM_PIECE_NORMAL = 1,
    GM_PIECE_UNKNOWN = 2,
    GM_PIECE_CONTROL = 3,
    GM_PIECE_USER_DEFINED = 4,
    GM_PIECE_UNUSED = 5,
    GM_PIECE_BYTE = 6,
};
#define GM_PIECE_MASK(t) (1u << (t))

/* Per-piece flag: BPE may produce this piece by merging two adjacent symbols. SentencePiece allows it
 * for NORMAL, USER_DEFINED and UNUSED pieces; for tokenizer.json, for pieces some merge rule produces. */
#define GM_PIECE_MERGEABLE 1u

typedef struct gm_vocab_trie_node {
    int32_t child;   /* first child, -1 if none */
    int32_t sibling; /* next sibling, -1 if none */
    int32_t id;      /* piece ending here, -1 if none */
    uint8_t byte;
} gm_vocab_trie_node;

typedef struct gm_vocab {
    int32_t n;           /* number of pieces (ids 0..n-1) */
    char *blob;          /* all piece texts, each followed by a NUL */
    size_t blob_len, blob_cap;
    uint32_t *off, *len; /* piece i = blob[off[i] .. off[i]+len[i]) */
    float *score;
    uint8_t *type;
    uint8_t *flags;
    int32_t cap;

    /* normalizer (SentencePiece NormalizerSpec / TrainerSpec semantics) */
    int add_dummy_prefix;
    int remove_extra_whitespaces;
    int escape_whitespaces;
    int treat_whitespace_as_suffix;
    int byte_fallback;
    int fuse_unk;        /* tokenizer.json "fuse_unk": consecutive unknowns become one <unk> */
    char *unk_surface;   /* what <unk> decodes to (SentencePiece default " \xE2\x81\x87 ") */

    int32_t unk_id, bos_id, eos_id, pad_id;
    int32_t byte_id[256]; /* id of "<0xXX>", -1 if absent */
    int n_byte_pieces;    /* how many of the 256 exist */
    int has_unused;       /* some piece is UNUSED: the encoder must track how such pieces were merged */

    /* open-addressing hash: slot -> id or -1 */
    int32_t *slots;
    uint32_t *slot_hash;
    size_t mask;

    /* Bloom filter of adjacent character pairs inside mergeable pieces: if the pair at a boundary between
     * two characters of the text is not in it, no merge can ever cross that boundary (false positives only
     * cost speed). Lets the encoder run BPE word by word with small heaps, exactly. */
    uint64_t *pair_bits;
    uint64_t pair_mask; /* number of bits - 1 */

    /* trie over USER_DEFINED, CONTROL and UNKNOWN pieces; root children indexed by first byte */
    gm_vocab_trie_node *trie;
    int32_t trie_n, trie_cap;
    int32_t trie_root[256];
} gm_vocab;

/* Empty vocabulary with SentencePiece's default flags and no special ids. */
gm_status gm_vocab_new(gm_vocab **out);
void gm_vocab_free(gm_vocab *v);
/* Append a piece (id = v->n). */
gm_status gm_vocab_add(gm_vocab *v, const char *piece, size_t len, float score, int type);
/* Build the hash table, byte table and trie, and check the invariants SentencePiece checks
 * (no empty or duplicate pieces, byte pieces well-formed, 256 of them with byte_fallback, ids in
 * range). `what` names the file in messages. */
gm_status gm_vocab_finalize(gm_vocab *v, const char *what);

/* 0 if no mergeable piece contains the bytes s[0..n) (two adjacent characters) contiguously; 1 if one
 * may. */
int gm_vocab_pair_may_merge(const gm_vocab *v, const char *s, size_t n);

/* Id of the piece with exactly these bytes, or -1. */
int32_t gm_vocab_find(const gm_vocab *v, const char *s, size_t len);
/* Longest piece whose type is in type_mask (GM_PIECE_MASK bits; trie types only) that is a prefix of
 * s[0..n): returns its length and sets *id, or returns 0. */
size_t gm_vocab_match(const gm_vocab *v, const char *s, size_t n, unsigned type_mask, int32_t *id);

static inline const char *gm_vocab_piece(const gm_vocab *v, int32_t id) { return v->blob + v->off[id]; }

/* 0-255 if piece is exactly "<0xXX>" with upper-case hex digits (SentencePiece's spelling), else -1. */
int gm_vocab_byte_of_piece(const char *s, size_t len);

/* Build a tokenizer from the bytes of a tokenizer.model or tokenizer.json (chosen by content), as
 * gm_tokenizer_load does for a file; `what` names the source in messages. Used by the fuzz targets. */
gm_status gm_tokenizer_from_memory(const void *data, size_t len, const char *what, gm_tokenizer **out);

/* GGUF tokenizer metadata (tokenizer.ggml.*, SentencePiece model "llama"), vocab_gguf.c. The metadata is
 * validated and rebuilt as a SentencePiece ModelProto, so the vocabulary is the one gm_spm_model_parse
 * builds. */
struct gm_gguf;
struct gm_gguf_writer;
gm_status gm_tokenizer_load_gguf(const char *path, gm_tokenizer **out);
gm_status gm_tokenizer_from_gguf(const struct gm_gguf *g, gm_tokenizer **out);
/* The serialized ModelProto (a tokenizer.model file's bytes); *proto is malloc'd. */
gm_status gm_gguf_tokenizer_to_spm(const struct gm_gguf *g, unsigned char **proto, size_t *len);
/* Write v as tokenizer.ggml.* keys with exactly n_tokens tokens (the model's vocabulary size), the way
 * llama.cpp's converter does: missing ids become "[PAD<id>]" UNUSED pieces with score -10000, pieces past
 * n_tokens are dropped. eot_id >= 0 adds tokenizer.ggml.eot_token_id. */
gm_status gm_vocab_to_gguf(const gm_vocab *v, int n_tokens, int eot_id, struct gm_gguf_writer *w);

#endif
