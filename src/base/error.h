/* Error reporting for the whole library: functions that can fail return a gm_status and leave a
 * human-readable message (naming the file, the field and the fault) in a thread-local buffer. */
#ifndef GM_BASE_ERROR_H
#define GM_BASE_ERROR_H

#include "gemma.h"

/* Record a formatted message and return `code` so call sites read `return gm_fail(GM_ERR_FORMAT, ...)`. */
gm_status gm_fail(gm_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Prefix the current message with more context ("model.safetensors: " + old message). */
gm_status gm_fail_prefix(gm_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Overflow-safe size arithmetic: return 0 on overflow, 1 on success. */
static inline int gm_mul_size(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > (size_t)-1 / a) return 0;
    *out = a * b;
    return 1;
}
static inline int gm_add_size(size_t a, size_t b, size_t *out) {
    if (b > (size_t)-1 - a) return 0;
    *out = a + b;
    return 1;
}

#endif
