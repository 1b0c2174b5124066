/* Log-likelihood scoring with KV-cache prefix reuse, the harness's metrics, and the task runner
 * (see score.h). Conventions follow lm-evaluation-harness so that numbers are comparable: " " between
 * context and continuation, acc_norm by the continuation's length in characters, standard errors as
 * sample standard deviation / sqrt(n), exact match after its regexes_to_ignore. */
#include "eval/score.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/json.h"
#include "generate/generate.h"

#define SC_ROWS 32 /* continuation positions per forward call when their logits are needed */

struct gm_scorer {
    gm_session *s;
    int vocab;
    int32_t *cached; /* tokens known to sit at positions 0..n_cached of the session */
    int n_cached, cap;
    float *ctx_logits; /* [vocab]: after the last context token */
    float *rows;       /* [SC_ROWS][vocab] */
    gm_scorer_stats st;
};

gm_status gm_scorer_new(gm_session *s, int vocab, gm_scorer **out) {
    *out = NULL;
    if (vocab <= 0) return gm_fail(GM_ERR_ARG, "vocabulary size %d", vocab);
    gm_scorer *sc = calloc(1, sizeof *sc);
    if (!sc) return gm_fail(GM_ERR_NOMEM, "out of memory");
    sc->s = s;
    sc->vocab = vocab;
    sc->ctx_logits = malloc(sizeof(float) * (size_t)vocab);
    sc->rows = malloc(sizeof(float) * (size_t)vocab * SC_ROWS);
    if (!sc->ctx_logits || !sc->rows) {
        gm_scorer_free(sc);
        return gm_fail(GM_ERR_NOMEM, "out of memory for %d x %d logits", SC_ROWS, vocab);
    }
    gm_session_reset(s);
    *out = sc;
    return GM_OK;
}

void gm_scorer_free(gm_scorer *sc) {
    if (!sc) return;
    free(sc->cached);
    free(sc->ctx_logits);
    free(sc->rows);
    free(sc);
}

gm_scorer_stats gm_scorer_get_stats(const gm_scorer *sc) { return sc->st; }

void gm_scorer_forget_after(gm_scorer *sc, int n) {
    if (n < sc->n_cached) sc->n_cached = n < 0 ? 0 : n;
}

static int reserve(gm_scorer *sc, int n) {
    if (n <= sc->cap) return 1;
    int cap = sc->cap ? sc->cap : 256;
    while (cap < n) cap *= 2;
    int32_t *p = realloc(sc->cached, sizeof *p * (size_t)cap);
    if (!p) return 0;
    sc->cached = p, sc->cap = cap;
    return 1;
}

double gm_logprob(const float *z, int vocab, int32_t tok, int *is_max) {
    float mx = z[0];
    int am = 0;
    for (int i = 1; i < vocab; i++)
        if (z[i] > mx) mx = z[i], am = i;
    double s = 0;
    for (int i = 0; i < vocab; i++) s += exp((double)z[i] - (double)mx);
    if (is_max) *is_max = am == tok;
    return (double)z[tok] - (double)mx - log(s);
}

/* Rewind to pos, or start over when a sliding-window ring cannot rewind that far. Returns the position
 * the session is at afterwards (pos or 0). */
static int rewind_to(gm_scorer *sc, int pos) {
    if (gm_session_pos(sc->s) == pos) return pos;
    if (gm_session_truncate(sc->s, pos) == GM_OK) return pos;
    gm_clear_error();
    gm_session_reset(sc->s);
    sc->st.rewinds_refused++;
    sc->n_cached = 0;
    return 0;
}

gm_status gm_scorer_prefill(gm_scorer *sc, const int32_t *toks, int n) {
    if (n <= 0) return gm_fail(GM_ERR_ARG, "empty prompt");
    if (n > gm_session_n_ctx(sc->s))
        return gm_fail(GM_ERR_ARG, "a prompt of %d tokens exceeds the context of %d", n, gm_session_n_ctx(sc->s));
    /* Keep the longest cached prefix, but always run at least the last token: its logits are needed. */
    int lim = sc->n_cached < n - 1 ? sc->n_cached : n - 1, keep = 0;
    while (keep < lim && sc->cached[keep] == toks[keep]) keep++;
    keep = rewind_to(sc, keep);
    if (!reserve(sc, n)) return gm_fail(GM_ERR_NOMEM, "out of memory");
    sc->n_cached = keep;
    gm_status st = gm_session_eval(sc->s, toks + keep, n - keep, NULL);
    if (st) {
        gm_session_reset(sc->s);
        sc->n_cached = 0;
        return st;
    }
    memcpy(sc->cached + keep, toks + keep, sizeof *toks * (size_t)(n - keep));
    sc->n_cached = n;
    sc->st.tokens_reused += keep;
    sc->st.tokens_evaluated += n - keep;
    memcpy(sc->ctx_logits, gm_session_logits(sc->s), sizeof(float) * (size_t)sc->vocab);
    return GM_OK;
}

gm_status gm_scorer_loglik(gm_scorer *sc, const int32_t *ctx, int n_ctx, int n_choices, const int32_t *const *conts,
                           const int *n_conts, double *ll, int *greedy) {
    int N = gm_session_n_ctx(sc->s);
    for (int c = 0; c < n_choices; c++) {
        if (n_conts[c] < 1) return gm_fail(GM_ERR_ARG, "choice %d has no tokens", c);
        if (n_ctx + n_conts[c] - 1 > N)
            return gm_fail(GM_ERR_ARG, "context %d + continuation %d tokens exceed the context of %d", n_ctx, n_conts[c], N);
    }
    /* tokens_reused counts what scoring each choice from scratch would have run on top of what ran */
    long naive = 0, r0 = sc->st.tokens_reused, e0 = sc->st.tokens_evaluated;
    for (int c = 0; c < n_choices; c++) naive += n_ctx + n_conts[c] - 1;
    gm_status st = gm_scorer_prefill(sc, ctx, n_ctx);
    if (st) return st;
    const int V = sc->vocab;
    for (int c = 0; c < n_choices; c++) {
        const int32_t *t = conts[c];
        int m = n_conts[c], g = 1, gi;
        double l = gm_logprob(sc->ctx_logits, V, t[0], &g);
        if (m > 1) {
            if (rewind_to(sc, n_ctx) != n_ctx) {
                /* the ring refused: evaluate the context again (its logits are unchanged) */
                if ((st = gm_scorer_prefill(sc, ctx, n_ctx))) return st;
            }
            if (!reserve(sc, n_ctx + m)) return gm_fail(GM_ERR_NOMEM, "out of memory");
            sc->n_cached = n_ctx;
            for (int off = 0; off < m - 1; off += SC_ROWS) {
                int k = m - 1 - off < SC_ROWS ? m - 1 - off : SC_ROWS;
                if ((st = gm_session_eval(sc->s, t + off, k, sc->rows))) {
                    gm_session_reset(sc->s);
                    sc->n_cached = 0;
                    return st;
                }
                memcpy(sc->cached + n_ctx + off, t + off, sizeof *t * (size_t)k);
                sc->n_cached = n_ctx + off + k;
                sc->st.tokens_evaluated += k;
                for (int r = 0; r < k; r++) {
                    l += gm_logprob(sc->rows + (size_t)r * V, V, t[off + r + 1], &gi);
                    g &= gi;
                }
            }
        }
        ll[c] = l;
        if (greedy) greedy[c] = g;
    }
    sc->st.tokens_reused = r0 + naive - (sc->st.tokens_evaluated - e0);
    return GM_OK;
}

/* ---- encoding ---------------------------------------------------------------------------------- */

static char *concat3(const char *a, size_t na, const char *b, const char *c) {
    size_t nb = strlen(b), nc = strlen(c);
    char *p = malloc(na + nb + nc + 1);
    if (!p) return NULL;
    memcpy(p, a, na);
    memcpy(p + na, b, nb);
    memcpy(p + na + nb, c, nc + 1);
    return p;
}

gm_status gm_eval_encode_mc(const gm_tokenizer *tok, const char *context, const char *delim, char *const *choices,
                            int n, int32_t **ctx_out, int *n_ctx_out, int32_t ***conts_out, int **n_conts_out) {
    *ctx_out = NULL, *conts_out = NULL, *n_conts_out = NULL;
    *n_ctx_out = 0;
    size_t cl = strlen(context), kept = cl;
    while (kept && (context[kept - 1] == ' ' || context[kept - 1] == '\t' || context[kept - 1] == '\n' ||
                    context[kept - 1] == '\r' || context[kept - 1] == '\v' || context[kept - 1] == '\f'))
        kept--;
    const char *moved = context + kept; /* trailing whitespace, moved to the continuation */
    int32_t *ctx = NULL;
    size_t n_ctx = 0;
    gm_status st = gm_tokenizer_encode(tok, context, kept, GM_TOK_ADD_BOS, &ctx, &n_ctx);
    if (st) return st;
    int32_t **conts = calloc((size_t)n, sizeof *conts);
    int *n_conts = calloc((size_t)n, sizeof *n_conts);
    if (!conts || !n_conts) st = gm_fail(GM_ERR_NOMEM, "out of memory");
    for (int c = 0; c < n && !st; c++) {
        char *cont = concat3(moved, strlen(moved), delim, choices[c]);
        char *whole = cont ? concat3(context, kept, cont, "") : NULL;
        int32_t *w = NULL;
        size_t nw = 0;
        if (!whole) st = gm_fail(GM_ERR_NOMEM, "out of memory");
        else st = gm_tokenizer_encode(tok, whole, strlen(whole), GM_TOK_ADD_BOS, &w, &nw);
        if (!st && nw > n_ctx) {
            n_conts[c] = (int)(nw - n_ctx);
            conts[c] = malloc(sizeof(int32_t) * (nw - n_ctx));
            if (!conts[c]) st = gm_fail(GM_ERR_NOMEM, "out of memory");
            else memcpy(conts[c], w + n_ctx, sizeof(int32_t) * (nw - n_ctx));
        } else if (!st) { /* merges swallowed the continuation: encode it on its own */
            size_t nc = 0;
            st = gm_tokenizer_encode(tok, cont, strlen(cont), 0, &conts[c], &nc);
            if (!st && nc == 0) st = gm_fail(GM_ERR_ARG, "choice %d encodes to no tokens", c);
            n_conts[c] = (int)nc;
        }
        free(w);
        free(whole);
        free(cont);
    }
    if (st) {
        for (int c = 0; conts && c < n; c++) free(conts[c]);
        free(conts);
        free(n_conts);
        free(ctx);
        return st;
    }
    *ctx_out = ctx, *n_ctx_out = (int)n_ctx, *conts_out = conts, *n_conts_out = n_conts;
    return GM_OK;
}

/* ---- metrics ----------------------------------------------------------------------------------- */

void gm_stat_add(gm_stat *s, double x) {
    s->sum += x;
    s->sumsq += x * x;
    s->n++;
}
double gm_stat_mean(const gm_stat *s) { return s->n ? s->sum / (double)s->n : 0.0; }
double gm_stat_stderr(const gm_stat *s) {
    if (s->n < 2) return 0.0;
    double mean = s->sum / (double)s->n;
    double var = (s->sumsq - (double)s->n * mean * mean) / (double)(s->n - 1);
    return var > 0 ? sqrt(var / (double)s->n) : 0.0;
}

size_t gm_eval_char_len(const char *s) {
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) n++;
    return n;
}

void gm_mc_acc(const double *ll, const double *len, int n, int gold, int *acc, int *acc_norm) {
    int best = 0, best_n = 0;
    for (int i = 1; i < n; i++) {
        if (ll[i] > ll[best]) best = i;
        if (ll[i] / len[i] > ll[best_n] / len[best_n]) best_n = i;
    }
    *acc = best == gold;
    *acc_norm = best_n == gold;
}

double gm_mc2_score(const double *ll, const unsigned char *labels, int n) {
    int split = n;
    for (int i = 0; i < n; i++)
        if (!labels[i]) {
            split = i;
            break;
        }
    double mx = ll[0];
    for (int i = 1; i < n; i++)
        if (ll[i] > mx) mx = ll[i];
    double t = 0, all = 0;
    for (int i = 0; i < n; i++) {
        double p = exp(ll[i] - mx);
        all += p;
        if (i < split) t += p;
    }
    return all > 0 ? t / all : 0.0;
}

static int in_num_set(char c) { return (c >= '0' && c <= '9') || c == '.' || c == ','; }
static int in_flex_set(char c) { return in_num_set(c) || c == '$'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int put_span(const char *b, size_t n, char *out, size_t cap) {
    if (cap == 0) return 1;
    if (n >= cap) n = cap - 1;
    memcpy(out, b, n);
    out[n] = 0;
    return 1;
}

static void put_invalid(char *out, size_t cap) {
    if (cap) snprintf(out, cap, "%s", "[invalid]");
}

int gm_gsm8k_extract_strict(const char *text, char *out, size_t cap) {
    for (const char *p = strstr(text, "#### "); p; p = strstr(p + 1, "#### ")) {
        const char *q = p + 5, *b = q;
        if (*q == '-' && in_num_set(q[1])) q++;
        if (!in_num_set(*q)) continue;
        while (in_num_set(*q)) q++;
        return put_span(b, (size_t)(q - b), out, cap);
    }
    put_invalid(out, cap);
    return 0;
}

int gm_gsm8k_extract_flexible(const char *text, char *out, size_t cap) {
    const char *lb = NULL;
    size_t ln = 0;
    for (const char *p = text; *p;) {
        size_t run;
        /* alternative 1: -?[$0-9.,]{2,} (greedy; "-" is tried first) */
        if (*p == '-') {
            for (run = 0; in_flex_set(p[1 + run]); run++) {}
            if (run >= 2) {
                lb = p, ln = run + 1, p += ln;
                continue;
            }
        }
        for (run = 0; in_flex_set(p[run]); run++) {}
        if (run >= 2) {
            lb = p, ln = run, p += ln;
            continue;
        }
        /* alternative 2: -?[0-9]+ */
        const char *d = *p == '-' ? p + 1 : p;
        if (is_digit(*d)) {
            for (run = 0; is_digit(d[run]); run++) {}
            lb = p, ln = (size_t)(d - p) + run, p += ln;
            continue;
        }
        p++;
    }
    if (!lb) {
        put_invalid(out, cap);
        return 0;
    }
    return put_span(lb, ln, out, cap);
}

void gm_gsm8k_normalize(const char *in, char *out, size_t cap) {
    if (!cap) return;
    /* regexes_to_ignore in the harness's order: ",", "\$", "(?s).*#### ", "\.$"; then lowercase */
    size_t o = 0;
    for (const char *p = in; *p && o + 1 < cap; p++)
        if (*p != ',' && *p != '$') out[o++] = *p;
    out[o] = 0;
    const char *last = NULL;
    for (const char *p = strstr(out, "#### "); p; p = strstr(p + 1, "#### ")) last = p;
    if (last) {
        o = strlen(last + 5);
        memmove(out, last + 5, o + 1);
    }
    if (o && out[o - 1] == '.') out[--o] = 0; /* "$" also matches before one final newline */
    else if (o >= 2 && out[o - 1] == '\n' && out[o - 2] == '.') {
        out[o - 2] = '\n';
        out[--o] = 0;
    }
    for (size_t i = 0; i < o; i++)
        if (out[i] >= 'A' && out[i] <= 'Z') out[i] = (char)(out[i] - 'A' + 'a');
}

int gm_gsm8k_match(const char *extracted, const char *reference) {
    char a[256], b[256];
    gm_gsm8k_normalize(extracted, a, sizeof a);
    gm_gsm8k_normalize(reference, b, sizeof b);
    return !strcmp(a, b);
}

char *gm_humaneval_program(const gm_eval_item *it, const char *completion) {
    size_t n = strlen(it->context) + strlen(completion) + strlen(it->target) + strlen(it->entry_point) + 16;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s%s\n%s\ncheck(%s)\n", it->context, completion, it->target, it->entry_point);
    return p;
}

/* ---- runner ------------------------------------------------------------------------------------ */

typedef struct {
    char *s;
    size_t n, cap;
    const char *const *stops;
    int n_stops;
    int oom;
} gen_text;

static int on_gen(void *user, int32_t id, const char *text, size_t len) {
    gen_text *g = user;
    (void)id;
    if (g->n + len + 1 > g->cap) {
        size_t cap = g->cap ? g->cap : 1024;
        while (cap < g->n + len + 1) cap *= 2;
        char *p = realloc(g->s, cap);
        if (!p) {
            g->oom = 1;
            return 1;
        }
        g->s = p, g->cap = cap;
    }
    for (size_t i = 0; i < len; i++)
        if (text[i]) g->s[g->n++] = text[i]; /* a NUL byte token would end the string early */
    g->s[g->n] = 0;
    char *cut = NULL;
    for (int i = 0; i < g->n_stops; i++) {
        char *h = strstr(g->s, g->stops[i]);
        if (h && (!cut || h < cut)) cut = h;
    }
    if (cut) {
        *cut = 0;
        g->n = (size_t)(cut - g->s);
        return 1;
    }
    return 0;
}

static const char *const GSM8K_STOPS[] = {"Question:", "</s>", "<|im_end|>"};
static const char *const HUMANEVAL_STOPS[] = {"\nclass", "\ndef", "\n#", "\nif", "\nprint"};

/* Keep <bos> and the last n - 1 tokens: prompts longer than the context are cut on the left. */
static void cut_left(int32_t *ids, int *n, int keep) {
    int cut = *n - keep;
    memmove(ids + 1, ids + 1 + cut, sizeof *ids * (size_t)(keep - 1));
    *n = keep;
}

static gm_status run_mc(const gm_eval_set *set, const gm_eval_run_opts *o, gm_scorer *sc, gm_eval_result *res) {
    gm_task t = set->task;
    int is_mc2 = t == GM_TASK_TRUTHFULQA_MC2;
    int has_norm = t == GM_TASK_ARC_EASY || t == GM_TASK_ARC_CHALLENGE || t == GM_TASK_HELLASWAG || t == GM_TASK_PIQA;
    gm_stat acc = {0}, acc_norm = {0};
    int N = gm_session_n_ctx(o->session);
    gm_status st = GM_OK;
    for (int i = 0; i < set->n && !st; i++) {
        const gm_eval_item *it = &set->items[i];
        int32_t *ctx = NULL, **conts = NULL;
        int n_ctx = 0, *n_conts = NULL, nc = it->n_choices;
        double *ll = malloc(sizeof(double) * (size_t)nc * 2);
        int *gr = malloc(sizeof(int) * (size_t)nc);
        if (!ll || !gr) st = gm_fail(GM_ERR_NOMEM, "out of memory");
        if (!st) st = gm_eval_encode_mc(o->tok, it->context, " ", it->choices, nc, &ctx, &n_ctx, &conts, &n_conts);
        if (!st) {
            int max_m = 0;
            for (int c = 0; c < nc; c++)
                if (n_conts[c] > max_m) max_m = n_conts[c];
            if (n_ctx + max_m - 1 > N) {
                int keep = N - max_m + 1;
                if (keep < 2) st = gm_fail(GM_ERR_ARG, "item %s: a choice of %d tokens does not fit the context of %d", it->id, max_m, N);
                else {
                    cut_left(ctx, &n_ctx, keep);
                    res->truncated++;
                }
            }
        }
        if (!st) st = gm_scorer_loglik(sc, ctx, n_ctx, nc, (const int32_t *const *)conts, n_conts, ll, gr);
        if (!st) {
            double *len = ll + nc;
            for (int c = 0; c < nc; c++) {
                size_t l = gm_eval_char_len(it->choices[c]);
                len[c] = l ? (double)l : 1.0;
            }
            int a, an;
            gm_mc_acc(ll, len, nc, it->gold, &a, &an);
            double mc2 = is_mc2 ? gm_mc2_score(ll, it->labels, nc) : 0;
            gm_stat_add(&acc, is_mc2 ? mc2 : a);
            gm_stat_add(&acc_norm, an);
            if (it->group) {
                if (!res->n_groups || strcmp(res->groups[res->n_groups - 1].name, it->group)) {
                    gm_eval_group *g = realloc(res->groups, sizeof *g * (size_t)(res->n_groups + 1));
                    if (!g) st = gm_fail(GM_ERR_NOMEM, "out of memory");
                    else {
                        res->groups = g;
                        memset(&g[res->n_groups], 0, sizeof *g);
                        g[res->n_groups].name = strdup(it->group);
                        if (!g[res->n_groups].name) st = gm_fail(GM_ERR_NOMEM, "out of memory");
                        res->n_groups++;
                    }
                }
                if (!st) gm_stat_add(&res->groups[res->n_groups - 1].acc, a);
            }
            if (o->samples) {
                FILE *f = o->samples;
                fputs("{\"id\": ", f);
                gm_json_write_str(f, it->id);
                fprintf(f, ", \"gold\": %d, \"ll\": [", it->gold);
                for (int c = 0; c < nc; c++) fprintf(f, c ? ", %.6f" : "%.6f", ll[c]);
                fputs("], \"tokens\": [", f);
                for (int c = 0; c < nc; c++) fprintf(f, c ? ", %d" : "%d", n_conts[c]);
                fprintf(f, "], \"acc\": %d, \"acc_norm\": %d", a, an);
                if (is_mc2) fprintf(f, ", \"mc2\": %.6f", mc2);
                fputs("}\n", f);
            }
        }
        for (int c = 0; conts && c < nc; c++) free(conts[c]);
        free(conts);
        free(n_conts);
        free(ctx);
        free(ll);
        free(gr);
        res->n = i + 1;
        if (!st && o->progress) o->progress(o->progress_user, i + 1, set->n);
    }
    if (st) return st;
    res->metrics[res->n_metrics++] = (gm_eval_metric){"acc", gm_stat_mean(&acc), gm_stat_stderr(&acc)};
    if (has_norm) res->metrics[res->n_metrics++] = (gm_eval_metric){"acc_norm", gm_stat_mean(&acc_norm), gm_stat_stderr(&acc_norm)};
    return GM_OK;
}

static gm_status run_gen(const gm_eval_set *set, const gm_eval_run_opts *o, gm_scorer *sc, gm_eval_result *res) {
    int code = set->task == GM_TASK_HUMANEVAL;
    int max_gen = o->max_gen_toks > 0 ? o->max_gen_toks : code ? 512 : 256;
    int N = gm_session_n_ctx(o->session);
    gm_sampler_params sp = {0.0f, 0, 1.0f, 0};
    gm_sampler *smp = NULL;
    gm_status st = gm_sampler_new(&sp, o->vocab, &smp);
    if (st) return st;
    gm_stat strict = {0}, flex = {0}, pass = {0};
    res->sandbox_net = res->sandbox_pid = res->sandbox_fs = res->sandbox_nproc = 1;
    for (int i = 0; i < set->n && !st; i++) {
        const gm_eval_item *it = &set->items[i];
        int32_t *ids = NULL;
        size_t nid = 0;
        st = gm_tokenizer_encode(o->tok, it->context, strlen(it->context), GM_TOK_ADD_BOS, &ids, &nid);
        if (st) break;
        int n = (int)nid, room = N - max_gen;
        if (room < N / 2) room = N / 2;
        if (room < 2) room = 2;
        if (n > room) {
            cut_left(ids, &n, room);
            res->truncated++;
        }
        int max_new = N - n < max_gen ? N - n : max_gen;
        gen_text g = {NULL, 0, 0, code ? HUMANEVAL_STOPS : GSM8K_STOPS, code ? 5 : 3, 0};
        int n_out = 0, stopped = 0;
        st = gm_scorer_prefill(sc, ids, n);
        if (!st && max_new > 0) {
            gm_generate_params gp = {max_new, o->stop_ids, o->n_stop_ids};
            st = gm_generate(o->session, smp, o->tok, NULL, 0, &gp, on_gen, &g, &n_out, &stopped);
            gm_scorer_forget_after(sc, n);
            res->generated_tokens += n_out;
        }
        if (!st && g.oom) st = gm_fail(GM_ERR_NOMEM, "out of memory");
        const char *completion = g.s ? g.s : "";
        if (!st && !code) {
            char a[256], b[256];
            gm_gsm8k_extract_strict(completion, a, sizeof a);
            gm_gsm8k_extract_flexible(completion, b, sizeof b);
            int ms = gm_gsm8k_match(a, it->target), mf = gm_gsm8k_match(b, it->target);
            gm_stat_add(&strict, ms);
            gm_stat_add(&flex, mf);
            if (o->samples) {
                FILE *f = o->samples;
                fputs("{\"id\": ", f);
                gm_json_write_str(f, it->id);
                fputs(", \"completion\": ", f);
                gm_json_write_str(f, completion);
                fputs(", \"strict\": ", f);
                gm_json_write_str(f, a);
                fputs(", \"flexible\": ", f);
                gm_json_write_str(f, b);
                fprintf(f, ", \"exact_strict\": %d, \"exact_flexible\": %d}\n", ms, mf);
            }
        } else if (!st) {
            char *prog = gm_humaneval_program(it, completion);
            gm_code_result cr;
            if (!prog) st = gm_fail(GM_ERR_NOMEM, "out of memory");
            else {
                st = gm_code_run(o->python, prog, &o->limits, &cr);
                free(prog);
            }
            if (!st) {
                int ok = cr.outcome == GM_CODE_PASSED;
                gm_stat_add(&pass, ok);
                res->code_outcomes[cr.outcome]++;
                res->sandbox_net &= cr.net_isolated;
                res->sandbox_pid &= cr.pid_isolated;
                res->sandbox_fs &= cr.fs_readonly;
                res->sandbox_nproc &= cr.nproc_enforced;
                if (o->samples) {
                    FILE *f = o->samples;
                    fputs("{\"id\": ", f);
                    gm_json_write_str(f, it->id);
                    fputs(", \"completion\": ", f);
                    gm_json_write_str(f, completion);
                    fprintf(f, ", \"outcome\": \"%s\", \"seconds\": %.3f}\n", gm_code_outcome_name(cr.outcome), cr.seconds);
                }
            }
        }
        free(g.s);
        free(ids);
        res->n = i + 1;
        if (!st && o->progress) o->progress(o->progress_user, i + 1, set->n);
    }
    gm_sampler_free(smp);
    if (st) return st;
    if (code) {
        res->metrics[res->n_metrics++] = (gm_eval_metric){"pass@1", gm_stat_mean(&pass), gm_stat_stderr(&pass)};
    } else {
        res->metrics[res->n_metrics++] =
            (gm_eval_metric){"exact_match,strict-match", gm_stat_mean(&strict), gm_stat_stderr(&strict)};
        res->metrics[res->n_metrics++] =
            (gm_eval_metric){"exact_match,flexible-extract", gm_stat_mean(&flex), gm_stat_stderr(&flex)};
    }
    return GM_OK;
}

gm_status gm_eval_run(const gm_eval_set *set, const gm_eval_run_opts *o, gm_eval_result *res) {
    memset(res, 0, sizeof *res);
    const gm_task_info *ti = gm_task_get(set->task);
    if (!ti || ti->kind == GM_KIND_TEXT) return gm_fail(GM_ERR_ARG, "not a dataset task");
    if (!o->tok) return gm_fail(GM_ERR_ARG, "evaluation needs the model's tokenizer");
    if (ti->kind == GM_KIND_CODE && !o->python) return gm_fail(GM_ERR_ARG, "HumanEval needs a python interpreter");
    gm_scorer *sc = NULL;
    gm_status st = gm_scorer_new(o->session, o->vocab, &sc);
    if (st) return st;
    st = ti->kind == GM_KIND_MC ? run_mc(set, o, sc, res) : run_gen(set, o, sc, res);
    res->stats = gm_scorer_get_stats(sc);
    gm_scorer_free(sc);
    return st;
}

void gm_eval_result_free(gm_eval_result *r) {
    for (int i = 0; i < r->n_groups; i++) free(r->groups[i].name);
    free(r->groups);
    r->groups = NULL;
    r->n_groups = 0;
}
