/* A quick STREAM-style read-bandwidth probe, so benchmarks can state decode speed as a share of what
 * this machine's memory delivers right now. */
#ifndef GM_BASE_MEMBW_H
#define GM_BASE_MEMBW_H

#include <stddef.h>

/* Read `bytes` (≫ last-level cache) with n_threads, best of `passes`; returns GB/s (1e9 bytes), or 0
 * if the buffer cannot be allocated. */
double gm_read_bandwidth(int n_threads, size_t bytes, int passes);

#endif
