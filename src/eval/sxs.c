/* Side-by-side evaluation: combining the two orders of a judgment into a verdict, the rates with their
 * intervals, and a model judge that reads its preference off the log-likelihoods of "A" and "B" after a
 * rubric prompt (scored with the eval scorer, so the rubric's tokens are evaluated once). */
#include "eval/sxs.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "eval/memorization.h"
#include "eval/score.h"

gm_sxs_verdict gm_sxs_combine(double logit_ab, double logit_ba) {
    if (logit_ab > 0 && logit_ba < 0) return GM_SXS_WIN;
    if (logit_ab < 0 && logit_ba > 0) return GM_SXS_LOSS;
    return GM_SXS_TIE;
}

static double sigmoid(double x) { return x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)); }

double gm_sxs_pref_a(double logit_ab, double logit_ba) { return 0.5 * (sigmoid(logit_ab) + sigmoid(-logit_ba)); }

void gm_sxs_counts_add(gm_sxs_counts *c, double logit_ab, double logit_ba) {
    gm_sxs_verdict v = gm_sxs_combine(logit_ab, logit_ba);
    c->n++;
    c->win += v == GM_SXS_WIN;
    c->tie += v == GM_SXS_TIE;
    c->loss += v == GM_SXS_LOSS;
    c->first_preferred += (logit_ab > 0) + (logit_ba > 0);
    c->pref_sum += gm_sxs_pref_a(logit_ab, logit_ba);
}

void gm_sxs_rates_of(const gm_sxs_counts *c, gm_sxs_rates *r) {
    memset(r, 0, sizeof *r);
    double n = (double)c->n;
    gm_wilson_interval(c->win, c->n, GM_Z95, &r->win_lo, &r->win_hi);
    gm_wilson_interval(c->tie, c->n, GM_Z95, &r->tie_lo, &r->tie_hi);
    gm_wilson_interval(c->loss, c->n, GM_Z95, &r->loss_lo, &r->loss_hi);
    r->score_lo = 0, r->score_hi = 1;
    if (c->n == 0) {
        r->win = r->tie = r->loss = r->score = r->mean_pref = r->first_rate = NAN;
        return;
    }
    r->win = (double)c->win / n, r->tie = (double)c->tie / n, r->loss = (double)c->loss / n;
    r->score = ((double)c->win + 0.5 * (double)c->tie) / n;
    r->mean_pref = c->pref_sum / n;
    r->first_rate = (double)c->first_preferred / (2 * n);
    if (c->n >= 2) {
        double m = r->score, ss = (double)c->win * (1 - m) * (1 - m) + (double)c->tie * (0.5 - m) * (0.5 - m) +
                                  (double)c->loss * m * m;
        double half = GM_Z95 * sqrt(ss / (n - 1)) / sqrt(n);
        r->score_lo = fmax(0, m - half), r->score_hi = fmin(1, m + half);
    }
}

/* ---- running a set ----------------------------------------------------------------------------- */

void gm_sxs_result_free(gm_sxs_result *r) {
    for (int g = 0; g < r->n_groups; g++) free(r->groups[g].name);
    free(r->groups);
    free(r->logit_ab);
    free(r->logit_ba);
    memset(r, 0, sizeof *r);
}

static gm_sxs_counts *group_of(gm_sxs_result *r, const char *name) {
    for (int g = 0; g < r->n_groups; g++)
        if (!strcmp(r->groups[g].name, name)) return &r->groups[g].c;
    gm_sxs_group *ng = realloc(r->groups, sizeof *ng * (size_t)(r->n_groups + 1));
    if (!ng) return NULL;
    r->groups = ng;
    memset(&ng[r->n_groups], 0, sizeof *ng);
    if (!(ng[r->n_groups].name = strdup(name))) return NULL;
    return &ng[r->n_groups++].c;
}

gm_status gm_sxs_run(const gm_sxs_item *items, int n, const gm_sxs_run_opts *o, gm_sxs_result *res) {
    memset(res, 0, sizeof *res);
    if (n < 0) return gm_fail(GM_ERR_ARG, "sxs: negative item count");
    res->logit_ab = malloc(sizeof(double) * (size_t)(n ? n : 1));
    res->logit_ba = malloc(sizeof(double) * (size_t)(n ? n : 1));
    if (!res->logit_ab || !res->logit_ba) {
        gm_sxs_result_free(res);
        return gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    gm_status st = GM_OK;
    for (int i = 0; i < n && !st; i++) {
        const gm_sxs_item *it = &items[i];
        double ab = NAN, ba = NAN;
        st = o->judge(o->judge_user, it->prompt, it->a, it->b, &ab);
        if (!st) st = o->judge(o->judge_user, it->prompt, it->b, it->a, &ba);
        if (st == GM_ERR_ARG) { /* the judge cannot take this item: skip it, say why */
            if (o->on_skip) o->on_skip(o->skip_user, i, gm_last_error());
            res->skipped++;
            st = GM_OK;
            ab = ba = NAN;
        } else if (!st) {
            gm_sxs_counts_add(&res->all, ab, ba);
            if (it->category) {
                gm_sxs_counts *c = group_of(res, it->category);
                if (!c) st = gm_fail(GM_ERR_NOMEM, "out of memory");
                else gm_sxs_counts_add(c, ab, ba);
            }
        }
        res->logit_ab[i] = ab, res->logit_ba[i] = ba;
        if (o->progress) o->progress(o->progress_user, i + 1, n);
    }
    if (st) gm_sxs_result_free(res);
    return st;
}

/* ---- model judge ------------------------------------------------------------------------------- */

const char *const GM_SXS_DEFAULT_RUBRIC =
    "Please act as an impartial judge and evaluate the two responses below to the user's prompt. Choose the "
    "response that follows the user's instructions and answers the prompt better, considering helpfulness, "
    "correctness, relevance, depth and clarity. Do not let the order of the responses, their length or the "
    "assistants' names influence your decision.\n\n"
    "[User prompt]\n{prompt}\n\n"
    "[Response A]\n{first}\n\n"
    "[Response B]\n{second}\n\n"
    "Which response is better? Answer with a single letter: A or B.";

struct gm_sxs_model_judge {
    gm_session *session;
    gm_scorer *sc;
    const gm_tokenizer *tok;
    char *rubric;
    int chat;
    int32_t *head, *tail, *conts[2];
    size_t n_head, n_tail;
    int n_conts[2];
};

static int has_all_placeholders(const char *r) {
    return strstr(r, "{prompt}") && strstr(r, "{first}") && strstr(r, "{second}");
}

void gm_sxs_model_judge_free(gm_sxs_model_judge *j) {
    if (!j) return;
    gm_scorer_free(j->sc);
    free(j->rubric);
    free(j->head);
    free(j->tail);
    free(j->conts[0]);
    free(j->conts[1]);
    free(j);
}

gm_status gm_sxs_model_judge_new(gm_session *s, const gm_tokenizer *tok, int vocab, const char *rubric, int chat,
                                 gm_sxs_model_judge **out) {
    *out = NULL;
    if (!rubric) rubric = GM_SXS_DEFAULT_RUBRIC;
    if (!has_all_placeholders(rubric))
        return gm_fail(GM_ERR_ARG, "sxs: the rubric must contain {prompt}, {first} and {second}");
    if (chat && (gm_tokenizer_piece_id(tok, "<start_of_turn>") < 0 || gm_tokenizer_piece_id(tok, "<end_of_turn>") < 0))
        return gm_fail(GM_ERR_ARG, "sxs: the judge's tokenizer has no <start_of_turn>/<end_of_turn> pieces (not a "
                                   "Gemma chat vocabulary); judge without the chat format instead");
    gm_sxs_model_judge *j = calloc(1, sizeof *j);
    if (!j) return gm_fail(GM_ERR_NOMEM, "out of memory");
    j->session = s, j->tok = tok, j->chat = chat;
    gm_status st = gm_scorer_new(s, vocab, &j->sc);
    if (!st && !(j->rubric = strdup(rubric))) st = gm_fail(GM_ERR_NOMEM, "out of memory");
    const char *head = chat ? "<start_of_turn>user\n" : "", *tail = chat ? "<end_of_turn>\n<start_of_turn>model\n"
                                                                        : "\n\nAnswer:";
    const char *letters[2] = {chat ? "A" : " A", chat ? "B" : " B"};
    if (!st)
        st = gm_tokenizer_encode(tok, head, strlen(head), GM_TOK_ADD_BOS | GM_TOK_PARSE_SPECIAL, &j->head, &j->n_head);
    if (!st) st = gm_tokenizer_encode(tok, tail, strlen(tail), GM_TOK_PARSE_SPECIAL, &j->tail, &j->n_tail);
    for (int c = 0; c < 2 && !st; c++) {
        size_t n = 0;
        st = gm_tokenizer_encode(tok, letters[c], strlen(letters[c]), 0, &j->conts[c], &n);
        if (!st && n == 0) st = gm_fail(GM_ERR_ARG, "sxs: the answer '%s' encodes to no tokens", letters[c]);
        j->n_conts[c] = (int)n;
    }
    if (st) {
        gm_sxs_model_judge_free(j);
        return st;
    }
    *out = j;
    return GM_OK;
}

/* The rubric with its placeholders replaced (malloc'd). */
static char *fill(const char *rubric, const char *prompt, const char *first, const char *second) {
    const char *names[3] = {"{prompt}", "{first}", "{second}"}, *vals[3] = {prompt, first, second};
    size_t cap = strlen(rubric) + 1;
    for (int i = 0; i < 3; i++) {
        size_t k = 0;
        for (const char *p = rubric; (p = strstr(p, names[i])); p += strlen(names[i])) k++;
        cap += k * strlen(vals[i]);
    }
    char *out = malloc(cap), *o = out;
    if (!out) return NULL;
    for (const char *p = rubric; *p;) {
        int hit = -1;
        for (int i = 0; i < 3 && hit < 0; i++)
            if (!strncmp(p, names[i], strlen(names[i]))) hit = i;
        if (hit < 0) {
            *o++ = *p++;
            continue;
        }
        size_t l = strlen(vals[hit]);
        memcpy(o, vals[hit], l);
        o += l;
        p += strlen(names[hit]);
    }
    *o = 0;
    return out;
}

/* SentencePiece matches user-defined pieces such as <start_of_turn> wherever their text appears, special
 * parsing or not; so that a prompt or a response cannot open or close a turn, the text is encoded in
 * pieces cut just after the '<' of every control token's spelling (the '<' and the rest then encode as
 * plain text). */
static const char *const CONTROL_TEXT[] = {"<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "<pad>", "<unk>",
                                           "<mask>", "<start_of_image>", "<end_of_image>", "<s>", "</s>"};

static gm_status encode_plain(const gm_tokenizer *tok, const char *text, int32_t **ids, size_t *n) {
    *ids = NULL, *n = 0;
    size_t len = strlen(text), cap = 0, cnt = 0;
    int32_t *all = NULL;
    gm_status st = GM_OK;
    for (size_t start = 0; start < len && !st;) {
        size_t end = start + 1;
        for (; end < len; end++) {
            int cut = 0;
            if (text[end - 1] == '<')
                for (size_t k = 0; k < sizeof CONTROL_TEXT / sizeof CONTROL_TEXT[0] && !cut; k++)
                    cut = !strncmp(text + end - 1, CONTROL_TEXT[k], strlen(CONTROL_TEXT[k]));
            if (cut) break;
        }
        int32_t *part = NULL;
        size_t np = 0;
        if ((st = gm_tokenizer_encode(tok, text + start, end - start, 0, &part, &np))) break;
        if (cnt + np > cap) {
            cap = (cnt + np) * 2;
            int32_t *na = realloc(all, sizeof(int32_t) * cap);
            if (!na) st = gm_fail(GM_ERR_NOMEM, "out of memory");
            else all = na;
        }
        if (!st && np) memcpy(all + cnt, part, sizeof(int32_t) * np), cnt += np;
        free(part);
        start = end;
    }
    if (st) {
        free(all);
        return st;
    }
    *ids = all, *n = cnt;
    return GM_OK;
}

gm_status gm_sxs_model_judge_tokens(const gm_sxs_model_judge *j, const char *prompt, const char *first,
                                    const char *second, int32_t **ids, size_t *n) {
    *ids = NULL, *n = 0;
    char *text = fill(j->rubric, prompt, first, second);
    if (!text) return gm_fail(GM_ERR_NOMEM, "out of memory");
    int32_t *body = NULL;
    size_t n_body = 0;
    gm_status st = encode_plain(j->tok, text, &body, &n_body);
    free(text);
    if (st) return st;
    size_t total = j->n_head + n_body + j->n_tail;
    int32_t *ctx = malloc(sizeof(int32_t) * total);
    if (!ctx) {
        free(body);
        return gm_fail(GM_ERR_NOMEM, "out of memory");
    }
    memcpy(ctx, j->head, sizeof(int32_t) * j->n_head);
    if (n_body) memcpy(ctx + j->n_head, body, sizeof(int32_t) * n_body);
    memcpy(ctx + j->n_head + n_body, j->tail, sizeof(int32_t) * j->n_tail);
    free(body);
    *ids = ctx, *n = total;
    return GM_OK;
}

gm_status gm_sxs_model_judge_fn(void *user, const char *prompt, const char *first, const char *second,
                                double *logit_first) {
    gm_sxs_model_judge *j = user;
    *logit_first = 0;
    int32_t *ctx = NULL;
    size_t n = 0;
    gm_status st = gm_sxs_model_judge_tokens(j, prompt, first, second, &ctx, &n);
    if (st) return st;
    int longest = j->n_conts[0] > j->n_conts[1] ? j->n_conts[0] : j->n_conts[1];
    int n_ctx = gm_session_n_ctx(j->session);
    if (n + (size_t)longest - 1 > (size_t)n_ctx)
        st = gm_fail(GM_ERR_ARG, "the judging prompt has %zu tokens, more than the context of %d allows", n, n_ctx);
    double ll[2];
    if (!st) st = gm_scorer_loglik(j->sc, ctx, (int)n, 2, (const int32_t *const *)j->conts, j->n_conts, ll, NULL);
    if (!st) *logit_first = ll[0] - ll[1];
    free(ctx);
    return st;
}

void gm_sxs_model_judge_stats(const gm_sxs_model_judge *j, long *evaluated, long *reused) {
    gm_scorer_stats s = gm_scorer_get_stats(j->sc);
    *evaluated = s.tokens_evaluated;
    *reused = s.tokens_reused;
}
