/* Whole-file access (see file.h). Reading goes through read(2) in large pieces so a multi-GB
 * checkpoint lands in anonymous memory, which decodes faster than page-cache-backed mappings here. */
#include "base/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"

gm_status gm_file_load(const char *path, int use_mmap, gm_file_buf *out) {
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return gm_fail(GM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return gm_fail(GM_ERR_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    if (size == 0) {
        close(fd);
        out->data = NULL;
        return GM_OK;
    }
    if (use_mmap) {
        void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        close(fd);
        if (p == MAP_FAILED) return gm_fail(GM_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
        out->data = p;
        out->size = size;
        out->mapped = 1;
        return GM_OK;
    }
    void *p = gm_alloc_weights(size);
    if (!p) {
        close(fd);
        return gm_fail(GM_ERR_NOMEM, "%s: cannot allocate %zu bytes to read it", path, size);
    }
    size_t got = 0;
    while (got < size) {
        size_t want = size - got;
        if (want > ((size_t)1 << 30)) want = (size_t)1 << 30;
        ssize_t r = read(fd, (char *)p + got, want);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = errno;
            free(p);
            close(fd);
            return gm_fail(GM_ERR_IO, "%s: read failed after %zu of %zu bytes: %s", path, got, size,
                           r == 0 ? "unexpected end of file" : strerror(e));
        }
        got += (size_t)r;
    }
    close(fd);
    out->data = p;
    out->size = size;
    return GM_OK;
}

void gm_file_release(gm_file_buf *b) {
    if (!b || !b->data) return;
    if (b->mapped) munmap(b->data, b->size); else free(b->data);
    memset(b, 0, sizeof *b);
}

gm_status gm_file_read_stream(FILE *f, const char *name, char **data, size_t *len) {
    *data = NULL;
    if (len) *len = 0;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf) return gm_fail(GM_ERR_NOMEM, "%s: out of memory", name);
    for (;;) {
        if (cap - n < 4096) {
            if (cap > ((size_t)1 << 40)) { free(buf); return gm_fail(GM_ERR_IO, "%s: too large", name); }
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); return gm_fail(GM_ERR_NOMEM, "%s: out of memory", name); }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    if (ferror(f)) { free(buf); return gm_fail(GM_ERR_IO, "%s: read error", name); }
    buf[n] = 0;
    *data = buf;
    if (len) *len = n;
    return GM_OK;
}

gm_status gm_file_read_all(const char *path, char **data, size_t *len) {
    *data = NULL;
    if (len) *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return gm_fail(GM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    gm_status st = gm_file_read_stream(f, path, data, len);
    fclose(f);
    return st;
}

int gm_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

char *gm_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t n = a;
    if (a && dir[a - 1] != '/') p[n++] = '/';
    memcpy(p + n, name, b + 1);
    return p;
}

void *gm_alloc_weights(size_t size) {
    const size_t huge = (size_t)2 << 20;
    void *p = NULL;
    if (size < huge) return posix_memalign(&p, 64, size ? size : 1) == 0 ? p : NULL;
    if (posix_memalign(&p, huge, size) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    /* advice only: without THP support the pages stay 4 KiB and nothing else changes */
    (void)madvise(p, size / huge * huge, MADV_HUGEPAGE); /* whole huge pages inside the block only */
#endif
    return p;
}
