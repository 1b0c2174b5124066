/* Perplexity and bits per byte of a text file with a sliding window over its tokens (see score.h).
 * Every window starts with <bos> (Gemma's perplexity explodes without it) and scores only the tokens
 * the previous window did not, so each token is scored once, with stride..window tokens of context. */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "eval/score.h"

#define PPL_ROWS 32

gm_status gm_eval_perplexity(gm_session *s, const gm_tokenizer *tok, int vocab, const char *text, size_t len, int window,
                             int stride, gm_eval_progress_fn progress, void *user, gm_ppl_result *out) {
    memset(out, 0, sizeof *out);
    int N = gm_session_n_ctx(s);
    if (window <= 0 || window > N) window = N;
    if (window < 2) return gm_fail(GM_ERR_ARG, "a perplexity window needs at least 2 positions (<bos> + 1 token)");
    int W = window - 1; /* text tokens per window */
    if (stride <= 0) stride = W / 2 > 0 ? W / 2 : 1;
    if (stride > W) stride = W;
    int32_t bos = gm_tokenizer_bos(tok);
    if (bos < 0) return gm_fail(GM_ERR_ARG, "the tokenizer has no <bos> token");
    int32_t *toks = NULL;
    size_t nt = 0;
    gm_status st = gm_tokenizer_encode(tok, text, len, 0, &toks, &nt);
    if (st) return st;
    if (nt == 0) {
        free(toks);
        return gm_fail(GM_ERR_ARG, "the text is empty: nothing to score");
    }
    if (nt > (size_t)INT32_MAX / 2) {
        free(toks);
        return gm_fail(GM_ERR_ARG, "the text has too many tokens (%zu)", nt);
    }
    int n = (int)nt;
    int32_t *x = malloc(sizeof *x * (size_t)(W + 1));
    float *rows = malloc(sizeof(float) * (size_t)vocab * PPL_ROWS);
    if (!x || !rows) st = gm_fail(GM_ERR_NOMEM, "out of memory");
    gm_stat loss = {0};
    int prev_end = 0;
    for (long begin = 0; !st; begin += stride) {
        int end = begin + W < n ? (int)begin + W : n;
        int L = end - (int)begin; /* rows 0..L-1: row r reads x[r] and predicts x[r + 1] = toks[begin + r] */
        x[0] = bos;
        memcpy(x + 1, toks + begin, sizeof *x * (size_t)L);
        gm_session_reset(s);
        int a = prev_end - (int)begin; /* rows whose targets an earlier window scored: context only */
        if (a > 0) st = gm_session_eval(s, x, a, NULL);
        for (int off = a; off < L && !st; off += PPL_ROWS) {
            int k = L - off < PPL_ROWS ? L - off : PPL_ROWS;
            st = gm_session_eval(s, x + off, k, rows);
            for (int r = 0; r < k && !st; r++) {
                double lp = gm_logprob(rows + (size_t)r * vocab, vocab, x[off + r + 1], NULL);
                gm_stat_add(&loss, -lp);
            }
        }
        if (st) break;
        out->tokens_evaluated += L;
        out->n_windows++;
        prev_end = end;
        if (progress) progress(user, end, n);
        if (end == n) break;
    }
    free(x);
    free(rows);
    free(toks);
    gm_session_reset(s);
    if (st) return st;
    long words = 0;
    for (size_t i = 0; i < len; i++)
        if (!isspace((unsigned char)text[i]) && (i == 0 || isspace((unsigned char)text[i - 1]))) words++;
    out->n_tokens = n;
    out->n_bytes = (long)len;
    out->n_words = words;
    out->nll = loss.sum;
    double mean = gm_stat_mean(&loss), se = gm_stat_stderr(&loss);
    out->ppl = exp(mean);
    out->ppl_se = out->ppl * se;
    out->bits_per_byte = loss.sum / ((double)len * log(2.0));
    out->bpb_se = se * (double)n / ((double)len * log(2.0));
    out->byte_ppl = exp(loss.sum / (double)len);
    out->word_ppl = words ? exp(loss.sum / (double)words) : 0.0;
    return GM_OK;
}
