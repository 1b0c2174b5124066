/* Token shards: the training data on disk. A shard directory holds shard_00000.bin, shard_00001.bin, ...
 * each a 32-byte little-endian header {"GMTOKENS", u32 version = 1, u32 vocab_size, u64 n_tokens,
 * u64 reserved = 0} followed by n_tokens uint32 ids. Documents are <bos> ids... <eos> back to back and may
 * straddle shards; the shards concatenated in index order are one token stream. The writer makes each
 * shard atomically (temp file, fsync, rename); the reader validates everything before use. */
#ifndef GM_DATA_SHARDS_H
#define GM_DATA_SHARDS_H

#include <stddef.h>
#include <stdint.h>

#include "gemma.h"

#define GM_SHARD_MAGIC "GMTOKENS"
#define GM_SHARD_VERSION 1
#define GM_SHARD_HEADER_BYTES 32
/* Default tokens per shard (400 MB files), as llm.c's and nanoGPT's 100M-token shards. */
#define GM_SHARD_DEFAULT_TOKENS 100000000ull

typedef struct gm_shard_header {
    uint32_t version;
    uint32_t vocab_size;
    uint64_t n_tokens;
} gm_shard_header;

/* Check a shard's header against the file's size: magic, version, vocab_size > 0, reserved == 0 and
 * size == 32 + 4 * n_tokens. `path` names the file in the error message. Ids are not looked at. */
gm_status gm_shard_header_parse(const void *data, size_t size, const char *path, gm_shard_header *h);

/* The shard number of a file name "shard_" + 1..9 digits + ".bin", else -1. */
long gm_shard_name_index(const char *name);

/* ---- writer ---------------------------------------------------------------------------------------- */

typedef struct gm_shard_writer gm_shard_writer;

typedef struct gm_shard_summary {
    uint64_t docs, tokens; /* tokens include each document's <bos> and <eos> */
    int n_shards;          /* shard i holds shard_tokens tokens, the last one the rest */
    uint64_t shard_tokens;
} gm_shard_summary;

/* Start writing shards into dir (created if missing; refused if it already holds shard files, so two
 * runs never mix). Each document is written as bos ids... eos (bos or eos < 0: not added); a new shard
 * starts after shard_tokens tokens. */
gm_status gm_shard_writer_open(const char *dir, uint32_t vocab_size, int32_t bos, int32_t eos,
                               uint64_t shard_tokens, gm_shard_writer **out);
/* Append one document. Every id must be in [0, vocab_size) (GM_ERR_ARG otherwise, nothing written). */
gm_status gm_shard_writer_add_doc(gm_shard_writer *w, const int32_t *ids, size_t n);
/* Finish the last shard and free the writer (also on failure). sum may be NULL. No document at all
 * writes no shard. If a write failed (now or earlier), the shards written so far are deleted too. */
gm_status gm_shard_writer_close(gm_shard_writer *w, gm_shard_summary *sum);
/* Give up: delete the shards written so far and the temp file, free the writer. */
void gm_shard_writer_abort(gm_shard_writer *w);

/* ---- reader ---------------------------------------------------------------------------------------- */

typedef struct gm_shards gm_shards;

/* Open every shard_NNNNN.bin of dir (numbered 0..N-1 without gaps). Each file is mapped read-only and
 * checked: header (gm_shard_header_parse), one vocabulary size for all, and every id below it (one
 * sequential pass at open). Any fault is GM_ERR_FORMAT (GM_ERR_IO if unreadable) naming the file. */
gm_status gm_shards_open(const char *dir, gm_shards **out);
void gm_shards_close(gm_shards *s);
uint64_t gm_shards_n_tokens(const gm_shards *s);
uint32_t gm_shards_vocab_size(const gm_shards *s);
int gm_shards_count(const gm_shards *s);
const char *gm_shards_dir(const gm_shards *s);
/* Copy tokens [pos, pos + n) of the concatenated stream into out (crossing shards as needed).
 * GM_ERR_ARG past the end; GM_ERR_FORMAT naming the file if an id is out of range (a file changed under
 * the mapping). Thread-safe: the reader is immutable after open. */
gm_status gm_shards_read(const gm_shards *s, uint64_t pos, size_t n, int32_t *out);

#endif
