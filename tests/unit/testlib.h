/* Minimal assertion helpers for unit tests: every CHECK that fails prints where and why, and the
 * test exits non-zero at the end (TEST_DONE) so one run reports all failures. */
#ifndef GM_TESTLIB_H
#define GM_TESTLIB_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int tl_failures = 0, tl_checks = 0;

#define CHECK(cond) do { tl_checks++; if (!(cond)) { tl_failures++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECKF(cond, ...) do { tl_checks++; if (!(cond)) { tl_failures++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)
#define CHECK_OK(expr) do { gm_status st_ = (expr); tl_checks++; if (st_ != GM_OK) { tl_failures++; \
    fprintf(stderr, "%s:%d: %s failed (%d): %s\n", __FILE__, __LINE__, #expr, st_, gm_last_error()); } } while (0)
#define CHECK_NEAR(a, b, tol) CHECKF(fabs((double)(a) - (double)(b)) <= (tol), "%g vs %g (tol %g)", \
    (double)(a), (double)(b), (double)(tol))
#define TEST_DONE() do { printf("%d checks, %d failed\n", tl_checks, tl_failures); \
    return tl_failures ? 1 : 0; } while (0)
#endif
