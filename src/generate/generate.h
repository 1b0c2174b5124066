/* The generation loop: prefill a prompt, then sample token by token until a stop token or the limit,
 * streaming text that never splits a UTF-8 character. */
#ifndef GM_GENERATE_GENERATE_H
#define GM_GENERATE_GENERATE_H

#include "gemma.h"

/* Called for each generated token with the complete UTF-8 text that became available (possibly empty);
 * return non-zero to stop. */
typedef int (*gm_token_fn)(void *user, int32_t id, const char *text, size_t len);

typedef struct gm_generate_params {
    int max_new;          /* tokens to generate at most */
    const int32_t *stop;  /* stop ids (not emitted as text, not fed to the model) */
    int n_stop;
} gm_generate_params;

/* Feed prompt[0..n_prompt) (may be 0 if the session already holds logits), then generate.
 * tok may be NULL (then text is empty). *n_out receives the number of generated tokens,
 * *stopped whether a stop id ended it. */
gm_status gm_generate(gm_session *s, gm_sampler *smp, const gm_tokenizer *tok, const int32_t *prompt,
                      size_t n_prompt, const gm_generate_params *gp, gm_token_fn fn, void *user, int *n_out,
                      int *stopped);

#endif
