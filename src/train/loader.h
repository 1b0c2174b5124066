/* The training data loader: token shards (src/data/shards.h) cut into windows of seq+1 tokens, drawn
 * through a seeded, staged mixture of named sources. Every batch is a pure function of (data, mix, seed,
 * seq, global batch, step, micro), so data-parallel ranks, restarts and resumes all see the same
 * sequences; a fixed held-out slice of each source is the validation set. See docs/data.md, "Token
 * shards", for the semantics. One loader per thread (it caches draw counts). */
#ifndef GM_TRAIN_LOADER_H
#define GM_TRAIN_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "gemma.h"

typedef struct gm_loader gm_loader;

typedef struct gm_loader_opts {
    const char *data;     /* a shard dir, or a dir whose subdirs are shard dirs = named sources */
    const char *mix;      /* NULL = sources weighted by token count;
                           * else "web:0.7,books:0.3@0;web:0.4,books:0.6@8000" */
    int seq;              /* T: each sequence is T+1 tokens (inputs + shifted targets) */
    int batch;            /* sequences per micro-batch per data rank */
    int accum;            /* micro-batches per step */
    int dp_rank, dp_size; /* data-parallel split: the global batch is dp_size*batch sequences per micro-batch */
    uint64_t seed;
} gm_loader_opts;

gm_status gm_loader_open(const gm_loader_opts *o, gm_loader **out);
void gm_loader_free(gm_loader *l);
/* tokens[batch][seq+1] for (step, micro) on this rank: a pure function of (data, mix, seed, seq, global batch, step,
 * micro) — identical whatever dp_size is as long as dp_size*batch is the same (rank r gets sequences
 * r*batch .. r*batch+batch-1 of the global micro-batch), and the same whether steps are asked in order or after a
 * restart (resume = just ask step s). */
gm_status gm_loader_batch(gm_loader *l, int step, int micro, int32_t *tokens);
/* Held-out sequences (never returned by gm_loader_batch): tokens[n][seq+1] for held-out sequence i..i+n-1
 * (fixed order). */
int gm_loader_val_count(const gm_loader *l);
gm_status gm_loader_val(gm_loader *l, int first, int n, int32_t *tokens);
int gm_loader_vocab_size(const gm_loader *l);
/* A line describing sources, tokens, windows, train/val split, current mixture (for the trainer's startup
 * banner). */
void gm_loader_describe(const gm_loader *l, char *buf, size_t n);

#endif
