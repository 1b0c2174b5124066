/* Generation loop (see generate.h). Decoded bytes are held back until they form whole UTF-8
 * characters, so a multi-byte character split over byte-fallback tokens is printed once, intact. */
#include "generate/generate.h"

#include <string.h>

#include "base/error.h"
#include "base/utf8.h"

/* Malformed bytes (a model can emit any byte token) become U+FFFD, as SentencePiece's decoder does,
 * so what we print is always valid UTF-8. out must hold 3 * n bytes. */
static size_t sanitize(const char *in, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t k = gm_utf8_decode(in + i, n - i, NULL);
        if (k) {
            memcpy(out + o, in + i, k);
            o += k, i += k;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3, i++;
        }
    }
    return o;
}

gm_status gm_generate(gm_session *s, gm_sampler *smp, const gm_tokenizer *tok, const int32_t *prompt,
                      size_t n_prompt, const gm_generate_params *gp, gm_token_fn fn, void *user, int *n_out,
                      int *stopped) {
    *n_out = 0;
    *stopped = 0;
    gm_status st;
    if (n_prompt > 0 && (st = gm_session_eval(s, prompt, (int)n_prompt, NULL))) return st;
    if (!gm_session_logits(s)) return gm_fail(GM_ERR_ARG, "nothing to generate from: empty prompt");
    char pend[256], clean[3 * sizeof pend];
    size_t np = 0;
    for (int i = 0; i < gp->max_new; i++) {
        int32_t id = gm_sampler_sample(smp, gm_session_logits(s));
        for (int j = 0; j < gp->n_stop; j++)
            if (gp->stop[j] == id) {
                *stopped = 1;
                break;
            }
        if (*stopped) break;
        (*n_out)++;
        size_t emit = 0;
        if (tok) {
            char piece[128];
            size_t len = gm_tokenizer_token_bytes(tok, id, piece, sizeof piece);
            if (len > sizeof piece) len = sizeof piece;
            if (np + len > sizeof pend) { /* cannot happen with real pieces; flush rather than overflow */
                if (fn && fn(user, id, clean, sanitize(pend, np, clean))) return GM_OK;
                np = 0;
            }
            memcpy(pend + np, piece, len);
            np += len;
            emit = gm_utf8_complete_prefix(pend, np);
        }
        int stop = fn ? fn(user, id, clean, sanitize(pend, emit, clean)) : 0;
        memmove(pend, pend + emit, np - emit);
        np -= emit;
        if (stop) break;
        if (i + 1 == gp->max_new) break;
        if (gm_session_pos(s) >= gm_session_n_ctx(s)) {
            if (np && fn) fn(user, -1, clean, sanitize(pend, np, clean));
            return gm_fail(GM_ERR_ARG, "context of %d tokens is full", gm_session_n_ctx(s));
        }
        if ((st = gm_session_eval(s, &id, 1, NULL))) return st;
    }
    /* Bytes left over are an incomplete character at the very end: emit them as they are. */
    if (np && fn) fn(user, -1, clean, sanitize(pend, np, clean));
    return GM_OK;
}
