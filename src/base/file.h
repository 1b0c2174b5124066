/* Whole-file access: map a file read-only or read it into 64-byte-aligned anonymous memory, with
 * errors that name the file. Weights are held this way exactly once. */
#ifndef GM_BASE_FILE_H
#define GM_BASE_FILE_H

#include <stddef.h>
#include <stdio.h>

#include "gemma.h"

typedef struct gm_file_buf {
    void *data;
    size_t size;
    int mapped; /* 1: munmap on release; 0: free */
} gm_file_buf;

gm_status gm_file_load(const char *path, int use_mmap, gm_file_buf *out);
/* Memory for large, long-lived data read by every token (model weights): from 2 MiB up it is 2 MiB-aligned
 * and advised for transparent huge pages (MADV_HUGEPAGE; Linux's default THP mode is "madvise"), which
 * spares the TLB misses that stall the weight stream in decode. Free with free(). NULL when out of memory. */
void *gm_alloc_weights(size_t size);
void gm_file_release(gm_file_buf *b);
/* Read a whole (small) file into a malloc'd NUL-terminated buffer. */
gm_status gm_file_read_all(const char *path, char **data, size_t *len);
/* The same from an open stream (stdin); `name` is used in error messages. */
gm_status gm_file_read_stream(FILE *f, const char *name, char **data, size_t *len);
int gm_file_exists(const char *path);
/* Join a directory and a file name into a malloc'd path. */
char *gm_path_join(const char *dir, const char *name);

#endif
