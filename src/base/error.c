/* Thread-local last-error message (see error.h). */
#include "base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char g_msg[1024];

const char *gm_last_error(void) { return g_msg[0] ? g_msg : "no error"; }

void gm_clear_error(void) { g_msg[0] = 0; }

gm_status gm_fail(gm_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    return code;
}

gm_status gm_fail_prefix(gm_status code, const char *fmt, ...) {
    char old[sizeof g_msg], pre[512];
    memcpy(old, g_msg, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    /* Truncation is acceptable for an error message; the length check keeps gcc's -Wformat-truncation quiet. */
    size_t np = strlen(pre);
    if (np >= sizeof g_msg) np = sizeof g_msg - 1;
    memcpy(g_msg, pre, np);
    size_t no = strlen(old);
    if (no > sizeof g_msg - 1 - np) no = sizeof g_msg - 1 - np;
    memcpy(g_msg + np, old, no);
    g_msg[np + no] = 0;
    return code;
}
