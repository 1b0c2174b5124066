/* Session internals shared with tests and benchmarks: a session with a chosen prefill chunk size (the
 * sliding-window ring holds W + batch - 1 positions, so small batches make the ring wrap early). */
#ifndef GM_MODEL_SESSION_H
#define GM_MODEL_SESSION_H

#include "gemma.h"

gm_status gm_session_new_batched(gm_model *m, int n_ctx, int n_threads, int batch, gm_session **out);

#endif
