/* libFuzzer target for the token-shard reader. Input: one byte choosing how many shard files (1-3), then
 * the bytes of those files back to back (split into equal parts). They are written to a private temp
 * directory and opened with gm_shards_open; an accepted set is read in full and its invariants checked
 * (every id below the vocabulary, sizes agree), then driven through the training loader. A rejected set
 * must leave a message naming a file or the directory. gm_shard_header_parse also sees the raw bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/shards.h"
#include "train/loader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char g_dir[64];

static void cleanup(void) {
    char path[128];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/shard_%05d.bin", g_dir, i);
        unlink(path);
    }
    rmdir(g_dir);
}

static void write_file(const char *path, const uint8_t *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (n && fwrite(p, 1, n, f) != n) abort();
    if (fclose(f) != 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_dir[0]) {
        snprintf(g_dir, sizeof g_dir, "/tmp/gm_fuzz_shard.XXXXXX");
        if (!mkdtemp(g_dir)) abort();
        atexit(cleanup);
    }
    gm_shard_header h;
    if (gm_shard_header_parse(data, size, "raw.bin", &h) == GM_OK && (size - 32) / 4 != h.n_tokens) abort();
    if (size < 1) return 0;
    int k = data[0] % 3 + 1;
    const uint8_t *body = data + 1;
    size_t rest = size - 1, part = rest / (size_t)k;
    char path[128];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/shard_%05d.bin", g_dir, i);
        if (i < k) write_file(path, body + (size_t)i * part, i == k - 1 ? rest - (size_t)i * part : part);
        else unlink(path);
    }
    gm_shards *s = NULL;
    gm_status st = gm_shards_open(g_dir, &s);
    if (st != GM_OK) {
        if (s || !strstr(gm_last_error(), g_dir)) abort();
        return 0;
    }
    uint64_t n = gm_shards_n_tokens(s);
    uint32_t vocab = gm_shards_vocab_size(s);
    if (n > rest / 4 || gm_shards_count(s) != k || vocab == 0) abort();
    int32_t *ids = malloc((size_t)n * sizeof *ids + 4);
    if (!ids) abort();
    if (gm_shards_read(s, 0, (size_t)n, ids) != GM_OK) abort();
    for (uint64_t i = 0; i < n; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= vocab) abort();
    if (n > 0 && gm_shards_read(s, n - 1, 2, ids) == GM_OK) abort(); /* past the end */
    free(ids);
    gm_shards_close(s);

    /* The loader on whatever the shards hold: windows of 4 tokens, or a clean refusal when too few. */
    gm_loader_opts o = {g_dir, NULL, 3, 2, 2, 0, 1, data[0]};
    gm_loader *l = NULL;
    if (gm_loader_open(&o, &l) == GM_OK) {
        int32_t t[2 * 4];
        if (gm_loader_batch(l, 0, 1, t) != GM_OK || gm_loader_batch(l, 3, 0, t) != GM_OK) abort();
        for (int i = 0; i < 8; i++)
            if (t[i] < 0 || t[i] >= gm_loader_vocab_size(l)) abort();
        if (gm_loader_val_count(l) > 0 && gm_loader_val(l, 0, 1, t) != GM_OK) abort();
        char buf[256];
        gm_loader_describe(l, buf, sizeof buf);
        gm_loader_free(l);
    } else if (l) {
        abort();
    }
    return 0;
}
