/* Token shards (see shards.h): the writer streams ids into a temp file and renames it into place once its
 * header is final and its bytes are on disk; the reader maps every shard read-only (shards can be many GB,
 * and the loader touches only the windows it draws) after validating headers, sizes and every id. */
#include "data/shards.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "base/file.h"

/* ---- little-endian helpers (the format is little-endian whatever the host) ------------------------- */

static uint32_t rd32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const unsigned char *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static void wr32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static void wr64(unsigned char *p, uint64_t v) {
    wr32(p, (uint32_t)v);
    wr32(p + 4, (uint32_t)(v >> 32));
}

gm_status gm_shard_header_parse(const void *data, size_t size, const char *path, gm_shard_header *h) {
    const unsigned char *p = data;
    memset(h, 0, sizeof *h);
    if (size < GM_SHARD_HEADER_BYTES)
        return gm_fail(GM_ERR_FORMAT, "%s: %zu bytes, shorter than the %d-byte shard header (truncated?)", path, size,
                       GM_SHARD_HEADER_BYTES);
    if (memcmp(p, GM_SHARD_MAGIC, 8) != 0)
        return gm_fail(GM_ERR_FORMAT, "%s: not a token shard (the file does not start with \"%s\")", path,
                       GM_SHARD_MAGIC);
    h->version = rd32(p + 8);
    h->vocab_size = rd32(p + 12);
    h->n_tokens = rd64(p + 16);
    uint64_t reserved = rd64(p + 24);
    if (h->version != GM_SHARD_VERSION)
        return gm_fail(GM_ERR_FORMAT, "%s: shard version %u is not supported (this build reads version %d)", path,
                       h->version, GM_SHARD_VERSION);
    if (h->vocab_size == 0 || h->vocab_size > (uint32_t)INT32_MAX)
        return gm_fail(GM_ERR_FORMAT, "%s: vocab_size %u is out of range (1..%d)", path, h->vocab_size, INT32_MAX);
    if (reserved != 0)
        return gm_fail(GM_ERR_FORMAT, "%s: reserved header field is %llu, expected 0", path,
                       (unsigned long long)reserved);
    uint64_t body = (uint64_t)size - GM_SHARD_HEADER_BYTES;
    if (body % 4 != 0 || body / 4 != h->n_tokens)
        return gm_fail(GM_ERR_FORMAT,
                       "%s: header says %llu tokens but the file has %zu bytes (expected %d + 4 x tokens: truncated "
                       "or corrupt)",
                       path, (unsigned long long)h->n_tokens, size, GM_SHARD_HEADER_BYTES);
    return GM_OK;
}

long gm_shard_name_index(const char *name) {
    if (strncmp(name, "shard_", 6) != 0) return -1;
    const char *p = name + 6;
    long v = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9') {
        if (++digits > 9) return -1;
        v = v * 10 + (*p++ - '0');
    }
    return digits && strcmp(p, ".bin") == 0 ? v : -1;
}

static char *shard_name(const char *dir, long index, int tmp) {
    char name[48];
    snprintf(name, sizeof name, tmp ? ".shard_%05ld.bin.tmp" : "shard_%05ld.bin", index);
    return gm_path_join(dir, name);
}

/* fsync a directory so a rename in it survives a crash; filesystems that cannot are not an error. */
static void sync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return;
    (void)fsync(fd);
    close(fd);
}

/* ---- writer ------------------------------------------------------------------------------------------ */

#define WBUF_TOKENS 16384

struct gm_shard_writer {
    char *dir;
    uint32_t vocab;
    int32_t bos, eos;
    uint64_t shard_tokens;
    long index;          /* the shard being written (or next to be started) */
    FILE *f;             /* its temp file, NULL between shards */
    char *tmp;
    uint64_t in_shard, tokens, docs;
    gm_status failed;    /* a write failed: every later call repeats it */
    size_t nbuf;
    unsigned char buf[4 * WBUF_TOKENS];
};

gm_status gm_shard_writer_open(const char *dir, uint32_t vocab_size, int32_t bos, int32_t eos,
                               uint64_t shard_tokens, gm_shard_writer **out) {
    *out = NULL;
    if (vocab_size == 0 || vocab_size > (uint32_t)INT32_MAX)
        return gm_fail(GM_ERR_ARG, "%s: vocabulary size %u is out of range", dir, vocab_size);
    if ((bos >= 0 && (uint32_t)bos >= vocab_size) || (eos >= 0 && (uint32_t)eos >= vocab_size))
        return gm_fail(GM_ERR_ARG, "%s: bos %d / eos %d not below the vocabulary size %u", dir, (int)bos, (int)eos,
                       vocab_size);
    if (shard_tokens == 0 || shard_tokens > ((uint64_t)1 << 40))
        return gm_fail(GM_ERR_ARG, "%s: tokens per shard %llu is out of range (1..2^40)", dir,
                       (unsigned long long)shard_tokens);
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return gm_fail(GM_ERR_IO, "%s: cannot create directory: %s", dir, strerror(errno));
    DIR *d = opendir(dir);
    if (!d) return gm_fail(GM_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    for (struct dirent *e; (e = readdir(d));) {
        if (gm_shard_name_index(e->d_name) >= 0) {
            gm_status st = gm_fail(GM_ERR_IO,
                                   "%s: already holds token shards (%s): remove them or write to another directory",
                                   dir, e->d_name);
            closedir(d);
            return st;
        }
    }
    closedir(d);
    gm_shard_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->dir = strdup(dir))) {
        free(w);
        return gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    w->vocab = vocab_size;
    w->bos = bos;
    w->eos = eos;
    w->shard_tokens = shard_tokens;
    *out = w;
    return GM_OK;
}

static gm_status writer_error(gm_shard_writer *w, const char *what) {
    w->failed = gm_fail(GM_ERR_IO, "%s: %s: %s", w->tmp ? w->tmp : w->dir, what, strerror(errno ? errno : EIO));
    return w->failed;
}

static gm_status flush_buf(gm_shard_writer *w) {
    if (w->nbuf && fwrite(w->buf, 1, w->nbuf, w->f) != w->nbuf) return writer_error(w, "write failed");
    w->nbuf = 0;
    return GM_OK;
}

static gm_status start_shard(gm_shard_writer *w) {
    if (w->index > 999999999L) {
        w->failed = gm_fail(GM_ERR_ARG, "%s: more than 10^9 shards: raise the tokens per shard", w->dir);
        return w->failed;
    }
    w->tmp = shard_name(w->dir, w->index, 1);
    if (!w->tmp) return w->failed = gm_fail(GM_ERR_NOMEM, "out of memory");
    errno = 0;
    w->f = fopen(w->tmp, "wb");
    if (!w->f) return writer_error(w, "cannot create");
    /* The header is written again with the final count when the shard is finished. */
    unsigned char h[GM_SHARD_HEADER_BYTES] = {0};
    if (fwrite(h, 1, sizeof h, w->f) != sizeof h) return writer_error(w, "write failed");
    w->in_shard = 0;
    return GM_OK;
}

/* Header with the final count, data on disk, then rename: a crash leaves either no shard_N.bin or a
 * complete one, never a truncated one under the final name. */
static gm_status finish_shard(gm_shard_writer *w) {
    errno = 0;
    gm_status st = flush_buf(w);
    if (st) return st;
    unsigned char h[GM_SHARD_HEADER_BYTES];
    memcpy(h, GM_SHARD_MAGIC, 8);
    wr32(h + 8, GM_SHARD_VERSION);
    wr32(h + 12, w->vocab);
    wr64(h + 16, w->in_shard);
    wr64(h + 24, 0);
    if (fflush(w->f) != 0 || fseek(w->f, 0, SEEK_SET) != 0 || fwrite(h, 1, sizeof h, w->f) != sizeof h ||
        fflush(w->f) != 0)
        return writer_error(w, "write failed");
    if (fsync(fileno(w->f)) != 0) return writer_error(w, "fsync failed");
    int rc = fclose(w->f);
    w->f = NULL;
    if (rc != 0) return writer_error(w, "close failed");
    char *final = shard_name(w->dir, w->index, 0);
    if (!final) return w->failed = gm_fail(GM_ERR_NOMEM, "out of memory");
    if (rename(w->tmp, final) != 0) {
        w->failed = gm_fail(GM_ERR_IO, "%s: cannot rename to %s: %s", w->tmp, final, strerror(errno));
        free(final);
        return w->failed;
    }
    free(final);
    sync_dir(w->dir);
    free(w->tmp);
    w->tmp = NULL;
    w->index++;
    return GM_OK;
}

static gm_status put_token(gm_shard_writer *w, uint32_t id) {
    if (!w->f) {
        gm_status st = start_shard(w);
        if (st) return st;
    }
    wr32(w->buf + w->nbuf, id);
    w->nbuf += 4;
    w->in_shard++;
    w->tokens++;
    if (w->nbuf == sizeof w->buf) {
        errno = 0;
        gm_status st = flush_buf(w);
        if (st) return st;
    }
    return w->in_shard == w->shard_tokens ? finish_shard(w) : GM_OK;
}

gm_status gm_shard_writer_add_doc(gm_shard_writer *w, const int32_t *ids, size_t n) {
    if (w->failed) return w->failed;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= w->vocab)
            return gm_fail(GM_ERR_ARG, "%s: document %llu: token %zu is id %ld, not in [0, %u)", w->dir,
                           (unsigned long long)w->docs, i, (long)ids[i], w->vocab);
    gm_status st = GM_OK;
    if (w->bos >= 0) st = put_token(w, (uint32_t)w->bos);
    for (size_t i = 0; i < n && !st; i++) st = put_token(w, (uint32_t)ids[i]);
    if (!st && w->eos >= 0) st = put_token(w, (uint32_t)w->eos);
    if (!st) w->docs++;
    return st;
}

static void writer_free(gm_shard_writer *w) {
    if (w->f) fclose(w->f);
    if (w->tmp) unlink(w->tmp);
    free(w->tmp);
    free(w->dir);
    free(w);
}

static void remove_shards(gm_shard_writer *w) {
    for (long i = 0; i < w->index; i++) {
        char *p = shard_name(w->dir, i, 0);
        if (p) unlink(p);
        free(p);
    }
}

gm_status gm_shard_writer_close(gm_shard_writer *w, gm_shard_summary *sum) {
    if (!w) return GM_OK;
    gm_status st = w->failed;
    if (!st && w->f) st = finish_shard(w);
    if (st) remove_shards(w); /* an incomplete data set must not pass for a complete one */
    if (sum) {
        sum->docs = w->docs;
        sum->tokens = w->tokens;
        sum->n_shards = st ? 0 : (int)w->index;
        sum->shard_tokens = w->shard_tokens;
    }
    writer_free(w);
    return st;
}

void gm_shard_writer_abort(gm_shard_writer *w) {
    if (!w) return;
    remove_shards(w);
    writer_free(w);
}

/* ---- reader ------------------------------------------------------------------------------------------ */

typedef struct {
    char *path;
    const unsigned char *map; /* the whole file, read-only */
    size_t size;
    uint64_t start, n;        /* its tokens' positions in the concatenated stream */
} shard_file;

struct gm_shards {
    char *dir;
    shard_file *f;
    int n;
    uint64_t total;
    uint32_t vocab;
};

void gm_shards_close(gm_shards *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) {
        if (s->f[i].map) munmap((void *)s->f[i].map, s->f[i].size);
        free(s->f[i].path);
    }
    free(s->f);
    free(s->dir);
    free(s);
}

static int cmp_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

static gm_status map_shard(shard_file *sf) {
    int fd = open(sf->path, O_RDONLY);
    if (fd < 0) return gm_fail(GM_ERR_IO, "%s: cannot open: %s", sf->path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return gm_fail(GM_ERR_IO, "%s: not a regular file", sf->path);
    }
    sf->size = (size_t)sb.st_size;
    if (sf->size < GM_SHARD_HEADER_BYTES) {
        close(fd);
        return gm_fail(GM_ERR_FORMAT, "%s: %zu bytes, shorter than the %d-byte shard header (truncated?)", sf->path,
                       sf->size, GM_SHARD_HEADER_BYTES);
    }
    void *p = mmap(NULL, sf->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return gm_fail(GM_ERR_IO, "%s: mmap failed: %s", sf->path, strerror(errno));
    sf->map = p;
    return GM_OK;
}

/* Every id below the vocabulary: one pass, so a hostile shard fails at open rather than mid-training. */
static gm_status check_ids(const shard_file *sf, uint32_t vocab) {
    const unsigned char *p = sf->map + GM_SHARD_HEADER_BYTES;
    for (uint64_t i = 0; i < sf->n; i++) {
        uint32_t id = rd32(p + 4 * i);
        if (id >= vocab)
            return gm_fail(GM_ERR_FORMAT, "%s: token %llu is id %u, not below the vocabulary size %u", sf->path,
                           (unsigned long long)i, id, vocab);
    }
    return GM_OK;
}

gm_status gm_shards_open(const char *dir, gm_shards **out) {
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d) return gm_fail(GM_ERR_IO, "%s: cannot open shard directory: %s", dir, strerror(errno));
    long *idx = NULL;
    size_t n = 0, cap = 0;
    gm_status st = GM_OK;
    for (struct dirent *e; (e = readdir(d));) {
        long k = gm_shard_name_index(e->d_name);
        if (k < 0) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            long *ni = realloc(idx, cap * sizeof *ni);
            if (!ni) {
                st = gm_fail(GM_ERR_NOMEM, "out of memory");
                break;
            }
            idx = ni;
        }
        idx[n++] = k;
    }
    closedir(d);
    if (!st && n == 0) st = gm_fail(GM_ERR_FORMAT, "%s: no token shards (shard_00000.bin, ...)", dir);
    if (!st && n > (size_t)INT32_MAX) st = gm_fail(GM_ERR_FORMAT, "%s: too many shards", dir);
    if (st) {
        free(idx);
        return st;
    }
    qsort(idx, n, sizeof *idx, cmp_long);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && idx[i] == idx[i - 1]) {
            st = gm_fail(GM_ERR_FORMAT, "%s: two files claim shard %ld (shard_%05ld.bin written two ways)", dir,
                         idx[i], idx[i]);
            break;
        }
        if (idx[i] != (long)i) {
            st = gm_fail(GM_ERR_FORMAT,
                         "%s: shard_%05zu.bin is missing (found shard_%05ld.bin): shards are numbered from 0 without "
                         "gaps",
                         dir, i, idx[i]);
            break;
        }
    }
    free(idx);
    if (st) return st;

    gm_shards *s = calloc(1, sizeof *s);
    if (!s || !(s->dir = strdup(dir)) || !(s->f = calloc(n, sizeof *s->f))) {
        gm_shards_close(s);
        return gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    s->n = (int)n;
    for (size_t i = 0; i < n && !st; i++) {
        shard_file *sf = &s->f[i];
        if (!(sf->path = shard_name(dir, (long)i, 0))) {
            st = gm_fail(GM_ERR_NOMEM, "out of memory");
            break;
        }
        gm_shard_header h;
        st = map_shard(sf);
        if (!st) st = gm_shard_header_parse(sf->map, sf->size, sf->path, &h);
        if (st) break;
        if (i == 0) s->vocab = h.vocab_size;
        if (h.vocab_size != s->vocab) {
            st = gm_fail(GM_ERR_FORMAT, "%s: vocab_size %u differs from %s's %u: shards of one directory share one "
                         "vocabulary", sf->path, h.vocab_size, s->f[0].path, s->vocab);
            break;
        }
        sf->n = h.n_tokens;
        sf->start = s->total;
        s->total += h.n_tokens;
        st = check_ids(sf, s->vocab);
    }
    if (st) {
        gm_shards_close(s);
        return st;
    }
    *out = s;
    return GM_OK;
}

uint64_t gm_shards_n_tokens(const gm_shards *s) { return s->total; }
uint32_t gm_shards_vocab_size(const gm_shards *s) { return s->vocab; }
int gm_shards_count(const gm_shards *s) { return s->n; }
const char *gm_shards_dir(const gm_shards *s) { return s->dir; }

gm_status gm_shards_read(const gm_shards *s, uint64_t pos, size_t n, int32_t *out) {
    if (pos > s->total || n > s->total - pos)
        return gm_fail(GM_ERR_ARG, "%s: tokens %llu..%llu requested, the shards hold %llu", s->dir,
                       (unsigned long long)pos, (unsigned long long)pos + n, (unsigned long long)s->total);
    if (n == 0) return GM_OK;
    /* The last shard starting at or before pos (empty shards share their start with the next one). */
    int lo = 0, hi = s->n - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (s->f[mid].start <= pos) lo = mid;
        else hi = mid - 1;
    }
    size_t done = 0;
    for (int i = lo; done < n; i++) {
        const shard_file *sf = &s->f[i];
        uint64_t off = pos + done - sf->start;
        size_t take = (size_t)(sf->n - off < n - done ? sf->n - off : n - done);
        const unsigned char *p = sf->map + GM_SHARD_HEADER_BYTES + 4 * off;
        for (size_t k = 0; k < take; k++) {
            uint32_t id = rd32(p + 4 * k);
            if (id >= s->vocab) /* checked at open: only a file rewritten under the mapping gets here */
                return gm_fail(GM_ERR_FORMAT, "%s: token %llu is id %u, not below the vocabulary size %u", sf->path,
                               (unsigned long long)(off + k), id, s->vocab);
            out[done + k] = (int32_t)id;
        }
        done += take;
    }
    return GM_OK;
}
