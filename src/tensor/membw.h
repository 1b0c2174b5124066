/* A quick STREAM-style read-bandwidth probe, so benchmarks can state decode speed as a share of what
 * this machine's memory delivers right now. It reads the way decode reads weights: with this CPU's vector
 * kernels from memory allocated like model weights (gm_alloc_weights: huge pages where the OS gives them). */
#ifndef GM_TENSOR_MEMBW_H
#define GM_TENSOR_MEMBW_H

#include <stddef.h>

/* Read `bytes` (≫ last-level cache) with n_threads, best of `passes`; returns GB/s (1e9 bytes), or 0
 * if the buffer cannot be allocated. */
double gm_read_bandwidth(int n_threads, size_t bytes, int passes);

#endif
