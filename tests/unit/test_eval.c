/* Unit tests for the evaluation suite (src/eval/): continuation log-likelihoods against the PyTorch golden
 * logits and against full re-evaluation (prefix reuse, the sliding-window rewind fallback), the runner's
 * per-item numbers against an independent computation, acc / acc_norm / MC2 / stderr on hand-computed
 * values, GSM8K extraction and HellaSwag cleanup against Python's re (tests/data/eval/expected.json, made
 * by make_expected.py), every dataset reader's prompts, perplexity against a per-token brute force, and
 * pass@1 on three tiny programs (passing, failing, an infinite loop). Run from the repository root. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/file.h"
#include "base/json.h"
#include "eval/codeexec.h"
#include "eval/score.h"
#include "eval/tasks.h"
#include "testlib.h"

/* ---- helpers ----------------------------------------------------------------------------------- */

static gm_json_doc *load_json(const char *path) {
    char *text;
    size_t len;
    gm_json_doc *doc = NULL;
    if (gm_file_read_all(path, &text, &len)) return NULL;
    if (gm_json_parse(text, len, path, &doc)) doc = NULL;
    free(text);
    return doc;
}

/* Golden prompt k of a case: ids and [T, vocab] logits. */
static int golden_prompt(const char *name, int k, int32_t *ids, int cap, float **logits) {
    char path[256];
    snprintf(path, sizeof path, "tests/golden/%s/prompts.json", name);
    gm_json_doc *doc = load_json(path);
    if (!doc) return 0;
    const gm_json *pr = &gm_json_root(doc)->items[k];
    const gm_json *jids = gm_json_get(pr, "ids");
    int n = (int)jids->len;
    for (int i = 0; i < n && i < cap; i++) ids[i] = (int32_t)jids->items[i].i;
    snprintf(path, sizeof path, "tests/golden/%s/%s", name, gm_json_get_str(pr, "logits_file"));
    gm_json_free(doc);
    char *raw;
    size_t len;
    if (gm_file_read_all(path, &raw, &len)) return 0;
    *logits = malloc(len);
    memcpy(*logits, raw, len);
    free(raw);
    return n;
}

static double ll_from_rows(const float *rows, int vocab, const int32_t *targets, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += gm_logprob(rows + (size_t)i * vocab, vocab, targets[i], NULL);
    return s;
}

/* log P(cont | ctx) by evaluating ctx + cont[:-1] in one call from an empty session (a fresh one when
 * s is NULL). */
static double full_eval_ll_s(gm_model *m, gm_session *s, const int32_t *ctx, int n_ctx, const int32_t *cont, int m_cont) {
    const gm_config *cfg = gm_model_config(m);
    int V = cfg->vocab_size, T = n_ctx + m_cont - 1;
    gm_session *own = NULL;
    if (!s && gm_session_new(m, T + 1, 2, &own)) return NAN;
    if (!s) s = own;
    gm_session_reset(s);
    int32_t *seq = malloc(sizeof *seq * (size_t)(n_ctx + m_cont));
    memcpy(seq, ctx, sizeof *seq * (size_t)n_ctx);
    memcpy(seq + n_ctx, cont, sizeof *seq * (size_t)m_cont);
    float *all = malloc(sizeof(float) * (size_t)T * V);
    double r = NAN;
    if (!gm_session_eval(s, seq, T, all)) r = ll_from_rows(all + (size_t)(n_ctx - 1) * V, V, seq + n_ctx, m_cont);
    free(all);
    free(seq);
    gm_session_free(own);
    return r;
}
static double full_eval_ll(gm_model *m, const int32_t *ctx, int n_ctx, const int32_t *cont, int m_cont) {
    return full_eval_ll_s(m, NULL, ctx, n_ctx, cont, m_cont);
}

static double max_abs(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(x[i]) > m) m = fabs(x[i]);
    return m;
}

/* ---- scoring against goldens and full re-evaluation -------------------------------------------- */

static void test_scorer_golden(void) {
    gm_model *m = NULL;
    CHECK_OK(gm_model_load("tests/golden/mqa_bf16/model", NULL, &m));
    if (!m) return;
    int V = gm_model_config(m)->vocab_size;
    int32_t P[32];
    float *G = NULL;
    int T = golden_prompt("mqa_bf16", 2, P, 32, &G);
    CHECK(T == 17);
    if (T != 17) return;
    double eps = 1e-4 * max_abs(G, (size_t)T * V); /* the golden tests' logit tolerance */
    gm_session *s = NULL;
    CHECK_OK(gm_session_new(m, 256, 2, &s));
    gm_scorer *sc = NULL;
    CHECK_OK(gm_scorer_new(s, V, &sc));
    const int n_ctx = 10;
    int32_t rnd[3] = {5, 77, 300};
    const int32_t *conts[4] = {P + 10, P + 10, rnd, P + 10};
    int n_conts[4] = {7, 3, 3, 1};
    double ll[4];
    int greedy[4];
    CHECK_OK(gm_scorer_loglik(sc, P, n_ctx, 4, conts, n_conts, ll, greedy));
    /* The golden logits give the exact answer for continuations along the golden prompt. */
    for (int c = 0; c < 4; c++) {
        if (conts[c] != P + 10) continue;
        double ref = ll_from_rows(G + (size_t)(n_ctx - 1) * V, V, P + n_ctx, n_conts[c]);
        CHECK_NEAR(ll[c], ref, 2 * eps * n_conts[c] + 1e-6);
    }
    for (int c = 0; c < 4; c++) CHECK_NEAR(ll[c], full_eval_ll(m, P, n_ctx, conts[c], n_conts[c]), 1e-4);
    /* The context ran once; each continuation only for its own tokens (all but the last): 20 of the
     * 16 + 12 + 12 + 10 that scoring each choice from scratch would run. */
    gm_scorer_stats st = gm_scorer_get_stats(sc);
    CHECKF(st.tokens_evaluated == n_ctx + 6 + 2 + 2 + 0 && st.tokens_reused == 30, "evaluated %ld reused %ld",
           st.tokens_evaluated, st.tokens_reused);
    /* A second item that shares the first 10 tokens reuses their cache. */
    const int32_t *c2[1] = {P + 12};
    int n2[1] = {5};
    CHECK_OK(gm_scorer_loglik(sc, P, 12, 1, c2, n2, ll, NULL));
    st = gm_scorer_get_stats(sc);
    CHECKF(st.tokens_reused == 30 + 10 && st.tokens_evaluated == 20 + 2 + 4, "reused %ld evaluated %ld",
           st.tokens_reused, st.tokens_evaluated);
    CHECK_NEAR(ll[0], ll_from_rows(G + 11 * (size_t)V, V, P + 12, 5), 2 * eps * 5 + 1e-6);
    /* The context must fit with the continuation. */
    int big[1] = {250};
    CHECK(gm_scorer_loglik(sc, P, 10, 1, c2, big, ll, NULL) == GM_ERR_ARG);
    gm_scorer_free(sc);
    gm_session_free(s);
    free(G);
    gm_model_free(m);
}

/* Gemma 2 with an 8-token window and a 4-token prefill chunk: the ring keeps 3 positions of slack, so
 * rewinding over a 10-token continuation is refused and the scorer must re-evaluate the context. */
static void test_scorer_sliding(void) {
    gm_model *m = NULL;
    CHECK_OK(gm_model_load("tests/golden/gemma2_tiny/model", NULL, &m));
    if (!m) return;
    int V = gm_model_config(m)->vocab_size;
    int32_t P[64];
    float *G = NULL;
    int T = golden_prompt("gemma2_tiny", 2, P, 64, &G);
    CHECK(T == 30);
    if (T != 30) return;
    double eps = 1e-4 * max_abs(G, (size_t)T * V);
    gm_session_params sp = gm_session_params_default(128, 2);
    sp.batch = 4;
    gm_session *s = NULL;
    CHECK_OK(gm_session_new_ex(m, &sp, &s));
    gm_scorer *sc = NULL;
    CHECK_OK(gm_scorer_new(s, V, &sc));
    int32_t rnd[9] = {9, 200, 31, 47, 5, 180, 66, 250, 3};
    const int32_t *conts[3] = {P + 20, rnd, P + 20};
    int n_conts[3] = {10, 9, 5};
    double ll[3];
    CHECK_OK(gm_scorer_loglik(sc, P, 20, 3, conts, n_conts, ll, NULL));
    gm_scorer_stats st = gm_scorer_get_stats(sc);
    CHECKF(st.rewinds_refused >= 2, "rewinds refused %ld", st.rewinds_refused);
    CHECK_NEAR(ll[0], ll_from_rows(G + 19 * (size_t)V, V, P + 20, 10), 2 * eps * 10 + 1e-6);
    CHECK_NEAR(ll[2], ll_from_rows(G + 19 * (size_t)V, V, P + 20, 5), 2 * eps * 5 + 1e-6);
    for (int c = 0; c < 3; c++) CHECK_NEAR(ll[c], full_eval_ll(m, P, 20, conts[c], n_conts[c]), 1e-3);
    gm_scorer_free(sc);
    gm_session_free(s);
    free(G);
    gm_model_free(m);
}

/* The harness's request encoding, on the demo tokenizer. */
static void test_encode(void) {
    gm_tokenizer *tok = NULL;
    CHECK_OK(gm_tokenizer_load("models/tiny-gemma/tokenizer.model", &tok));
    if (!tok) return;
    char *choices[2] = {"yes", "no, never"};
    int32_t *ctx, **conts;
    int n_ctx, *n_conts;
    /* trailing whitespace of the context moves to the continuation */
    CHECK_OK(gm_eval_encode_mc(tok, "Question: Is it?\nAnswer: ", " ", choices, 2, &ctx, &n_ctx, &conts, &n_conts));
    int32_t *want = NULL, *whole = NULL;
    size_t nw = 0, nwh = 0;
    CHECK_OK(gm_tokenizer_encode(tok, "Question: Is it?\nAnswer:", 24, GM_TOK_ADD_BOS, &want, &nw));
    CHECK(n_ctx == (int)nw && !memcmp(ctx, want, nw * sizeof *ctx));
    CHECK(ctx[0] == gm_tokenizer_bos(tok));
    const char *wholes[2] = {"Question: Is it?\nAnswer:  yes", "Question: Is it?\nAnswer:  no, never"};
    for (int c = 0; c < 2; c++) {
        CHECK_OK(gm_tokenizer_encode(tok, wholes[c], strlen(wholes[c]), GM_TOK_ADD_BOS, &whole, &nwh));
        CHECK(n_conts[c] == (int)nwh - n_ctx && !memcmp(conts[c], whole + n_ctx, sizeof *whole * (size_t)n_conts[c]));
        free(whole);
        free(conts[c]);
    }
    free(conts);
    free(n_conts);
    free(ctx);
    free(want);
    gm_tokenizer_free(tok);
}

/* ---- the runner against an independent computation --------------------------------------------- */

static void test_runner_mc(void) {
    gm_model *m = NULL;
    gm_tokenizer *tok = NULL;
    CHECK_OK(gm_model_load("models/tiny-gemma", NULL, &m));
    CHECK_OK(gm_tokenizer_load("models/tiny-gemma/tokenizer.model", &tok));
    if (!m || !tok) return;
    int V = gm_model_config(m)->vocab_size;
    const char *files[3] = {"tests/data/eval/arc/ARC-Easy-test.jsonl", "tests/data/eval/truthfulqa/mc_task.json",
                            "tests/data/eval/mmlu"};
    gm_task tasks[3] = {GM_TASK_ARC_EASY, GM_TASK_TRUTHFULQA_MC2, GM_TASK_MMLU};
    for (int k = 0; k < 3; k++) {
        gm_eval_set *set = NULL;
        gm_eval_load_opts lo = {-1, NULL, k == 2 ? 2 : 0}; /* MMLU: 2 per subject, each prompt ~1000 tokens */
        CHECK_OK(gm_eval_load(tasks[k], files[k], &lo, &set));
        if (!set) continue;
        gm_session *s = NULL, *ref = NULL;
        CHECK_OK(gm_session_new(m, 2048, 2, &s));
        CHECK_OK(gm_session_new(m, 2048, 2, &ref));
        FILE *samples = tmpfile();
        gm_eval_run_opts o;
        memset(&o, 0, sizeof o);
        o.session = s, o.tok = tok, o.vocab = V, o.samples = samples;
        gm_eval_result res;
        CHECK_OK(gm_eval_run(set, &o, &res));
        CHECK(res.n == set->n);
        /* Recompute every item from scratch: encode, full evaluation per choice, the metrics by hand. */
        rewind(samples);
        char line[65536];
        gm_stat acc = {0}, accn = {0};
        double max_diff = 0;
        for (int i = 0; i < set->n && fgets(line, sizeof line, samples); i++) {
            const gm_eval_item *it = &set->items[i];
            gm_json_doc *doc = NULL;
            CHECK_OK(gm_json_parse(line, strlen(line), "samples", &doc));
            if (!doc) break;
            const gm_json *jll = gm_json_get(gm_json_root(doc), "ll");
            int32_t *ctx, **conts;
            int n_ctx, *n_conts;
            CHECK_OK(gm_eval_encode_mc(tok, it->context, " ", it->choices, it->n_choices, &ctx, &n_ctx, &conts, &n_conts));
            double ll[64], len[64];
            for (int c = 0; c < it->n_choices; c++) {
                ll[c] = full_eval_ll_s(m, ref, ctx, n_ctx, conts[c], n_conts[c]);
                double d = fabs(ll[c] - jll->items[c].num);
                if (d > max_diff) max_diff = d;
                len[c] = (double)gm_eval_char_len(it->choices[c]);
                free(conts[c]);
            }
            int best = 0, bestn = 0;
            for (int c = 1; c < it->n_choices; c++) {
                if (ll[c] > ll[best]) best = c;
                if (ll[c] / len[c] > ll[bestn] / len[bestn]) bestn = c;
            }
            if (tasks[k] == GM_TASK_TRUTHFULQA_MC2) {
                double t = 0, all = 0;
                int split = 0;
                while (it->labels[split]) split++;
                for (int c = 0; c < it->n_choices; c++) {
                    all += exp(ll[c]);
                    if (c < split) t += exp(ll[c]);
                }
                gm_stat_add(&acc, t / all);
            } else gm_stat_add(&acc, best == it->gold);
            gm_stat_add(&accn, bestn == it->gold);
            free(conts);
            free(n_conts);
            free(ctx);
            gm_json_free(doc);
        }
        CHECKF(max_diff < 2e-4, "task %d: prefix-reused log-likelihoods differ from full evaluation by %g", k, max_diff);
        CHECK_NEAR(res.metrics[0].value, gm_stat_mean(&acc), 1e-4);
        CHECK_NEAR(res.metrics[0].se, gm_stat_stderr(&acc), 1e-4);
        if (k == 0) {
            CHECK(res.n_metrics == 2 && !strcmp(res.metrics[1].name, "acc_norm"));
            CHECK_NEAR(res.metrics[1].value, gm_stat_mean(&accn), 1e-9);
        }
        if (k == 2) { /* MMLU: the 5-shot preamble of a subject is evaluated once and reused */
            CHECK(res.n_groups == 2 && res.n == 4 && !strcmp(res.groups[0].name, "abstract_algebra"));
            CHECKF(res.stats.tokens_reused > res.stats.tokens_evaluated / 2, "reused %ld evaluated %ld",
                   res.stats.tokens_reused, res.stats.tokens_evaluated);
        }
        fclose(samples);
        gm_eval_result_free(&res);
        gm_session_free(ref);
        gm_session_free(s);
        gm_eval_set_free(set);
    }
    gm_tokenizer_free(tok);
    gm_model_free(m);
}

/* Perplexity against a per-token brute force: token j is scored by the window that starts at the
 * largest multiple of the stride with j inside its first W tokens, given <bos> + the tokens before it. */
static void test_perplexity(void) {
    gm_model *m = NULL;
    gm_tokenizer *tok = NULL;
    CHECK_OK(gm_model_load("models/tiny-gemma", NULL, &m));
    CHECK_OK(gm_tokenizer_load("models/tiny-gemma/tokenizer.model", &tok));
    if (!m || !tok) return;
    int V = gm_model_config(m)->vocab_size;
    const char *text = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n";
    size_t len = strlen(text);
    int32_t *toks;
    size_t n;
    CHECK_OK(gm_tokenizer_encode(tok, text, len, 0, &toks, &n));
    gm_session *s = NULL;
    CHECK_OK(gm_session_new(m, 256, 2, &s));
    const int window = 17, W = window - 1, stride = 5;
    gm_ppl_result r;
    CHECK_OK(gm_eval_perplexity(s, tok, V, text, len, window, stride, NULL, NULL, &r));
    CHECK(r.n_tokens == (long)n && r.n_bytes == (long)len && r.n_words == 13);
    double nll = 0;
    int32_t *seq = malloc(sizeof *seq * (n + 1));
    for (int j = 0; j < (int)n; j++) {
        int b = 0;
        while (b + W <= j) b += stride; /* the first window whose end passes j scores it */
        seq[0] = gm_tokenizer_bos(tok);
        memcpy(seq + 1, toks + b, sizeof *seq * (size_t)(j - b));
        gm_session *f = NULL;
        gm_session_new(m, 64, 1, &f);
        gm_session_eval(f, seq, j - b + 1, NULL);
        nll -= gm_logprob(gm_session_logits(f), V, toks[j], NULL);
        gm_session_free(f);
    }
    CHECK_NEAR(r.nll, nll, 1e-3);
    CHECK_NEAR(r.ppl, exp(nll / (double)n), 1e-3 * r.ppl);
    CHECK_NEAR(r.bits_per_byte, nll / ((double)len * log(2.0)), 1e-5);
    CHECK(r.ppl_se > 0 && r.bpb_se > 0);
    /* One window holding the whole text: exactly the full evaluation of <bos> + text. */
    gm_ppl_result one;
    CHECK_OK(gm_eval_perplexity(s, tok, V, text, len, 0, 0, NULL, NULL, &one));
    seq[0] = gm_tokenizer_bos(tok);
    memcpy(seq + 1, toks, sizeof *seq * n);
    float *all = malloc(sizeof(float) * n * (size_t)V);
    gm_session_reset(s);
    CHECK_OK(gm_session_eval(s, seq, (int)n, all));
    CHECK_NEAR(one.nll, -ll_from_rows(all, V, seq + 1, (int)n), 1e-3);
    CHECK(one.n_windows == 1 && r.n_windows > 1);
    CHECK(gm_eval_perplexity(s, tok, V, "", 0, 0, 0, NULL, NULL, &one) == GM_ERR_ARG);
    free(all);
    free(seq);
    free(toks);
    gm_session_free(s);
    gm_tokenizer_free(tok);
    gm_model_free(m);
}

/* ---- metrics ----------------------------------------------------------------------------------- */

static void test_metrics(void) {
    /* acc picks the largest log-likelihood, acc_norm the largest per character. */
    double ll[3] = {-10, -12, -9.5}, len[3] = {10, 20, 5};
    int a, an;
    gm_mc_acc(ll, len, 3, 1, &a, &an); /* per char: -1, -0.6, -1.9 */
    CHECK(a == 0 && an == 1);
    gm_mc_acc(ll, len, 3, 2, &a, &an);
    CHECK(a == 1 && an == 0);
    double tie[2] = {-3, -3}, tl[2] = {3, 3};
    gm_mc_acc(tie, tl, 2, 0, &a, &an); /* ties go to the first, like numpy argmax */
    CHECK(a == 1 && an == 1);
    CHECK(gm_eval_char_len("caf\xc3\xa9") == 4 && gm_eval_char_len("") == 0);
    /* MC2: normalized mass on the true answers (those before the first false one). */
    double p[4] = {log(0.2), log(0.1), log(0.3), log(0.4)};
    unsigned char lab[4] = {1, 1, 0, 0};
    CHECK_NEAR(gm_mc2_score(p, lab, 4), 0.3, 1e-12);
    double q[3] = {-1, -2, -3};
    unsigned char lq[3] = {1, 0, 0};
    CHECK_NEAR(gm_mc2_score(q, lq, 3), exp(-1) / (exp(-1) + exp(-2) + exp(-3)), 1e-12);
    unsigned char late[3] = {1, 0, 1}; /* a true answer after a false one counts as false, as the harness */
    CHECK_NEAR(gm_mc2_score(q, late, 3), exp(-1) / (exp(-1) + exp(-2) + exp(-3)), 1e-12);
    double tiny[2] = {-900, -901}; /* no underflow to 0/0 */
    unsigned char lt[2] = {1, 0};
    CHECK_NEAR(gm_mc2_score(tiny, lt, 2), 1 / (1 + exp(-1)), 1e-12);
    /* stderr = sample standard deviation / sqrt(n) */
    gm_stat s = {0};
    double xs[4] = {1, 0, 1, 1};
    for (int i = 0; i < 4; i++) gm_stat_add(&s, xs[i]);
    CHECK_NEAR(gm_stat_mean(&s), 0.75, 1e-12);
    CHECK_NEAR(gm_stat_stderr(&s), 0.25, 1e-12);
    gm_stat one = {0};
    gm_stat_add(&one, 1);
    CHECK(gm_stat_stderr(&one) == 0);
}

static void test_gsm8k_and_preprocess(const gm_json *exp_root) {
    const gm_json *cases = gm_json_get(exp_root, "gsm8k_cases");
    CHECK(cases && cases->len >= 15);
    for (size_t i = 0; cases && i < cases->len; i++) {
        const gm_json *c = &cases->items[i];
        const char *text = gm_json_get_str(c, "text"), *ref = gm_json_get_str(c, "ref");
        char a[256], b[256];
        gm_gsm8k_extract_strict(text, a, sizeof a);
        gm_gsm8k_extract_flexible(text, b, sizeof b);
        CHECKF(!strcmp(a, gm_json_get_str(c, "strict")), "strict(%s) = '%s', Python re: '%s'", text, a,
               gm_json_get_str(c, "strict"));
        CHECKF(!strcmp(b, gm_json_get_str(c, "flexible")), "flexible(%s) = '%s', Python re: '%s'", text, b,
               gm_json_get_str(c, "flexible"));
        int so, fo;
        gm_json_get_bool(c, "strict_ok", &so);
        gm_json_get_bool(c, "flexible_ok", &fo);
        CHECKF(gm_gsm8k_match(a, ref) == so && gm_gsm8k_match(b, ref) == fo, "match of '%s' vs '%s'", text, ref);
    }
    char n[64];
    gm_gsm8k_normalize("Work...\n#### 1,234.", n, sizeof n);
    CHECK(!strcmp(n, "1234"));
    const gm_json *hs = gm_json_get(exp_root, "hellaswag_preprocess");
    for (size_t i = 0; hs && i < hs->len; i++) {
        char *o = gm_hellaswag_preprocess(gm_json_get_str(&hs->items[i], "in"));
        CHECKF(o && !strcmp(o, gm_json_get_str(&hs->items[i], "out")), "preprocess('%s') = '%s'",
               gm_json_get_str(&hs->items[i], "in"), o);
        free(o);
    }
}

/* ---- readers ----------------------------------------------------------------------------------- */

static void check_item(const char *what, const gm_eval_item *it, const gm_json *want) {
    const char *ctx = gm_json_get_str(want, "context");
    CHECKF(ctx && !strcmp(it->context, ctx), "%s: context\n--- got ---\n%s\n--- want ---\n%s", what, it->context, ctx);
    const gm_json *ch = gm_json_get(want, "choices");
    if (ch) {
        CHECKF(it->n_choices == (int)ch->len, "%s: %d choices, want %zu", what, it->n_choices, ch->len);
        for (int c = 0; c < it->n_choices && c < (int)ch->len; c++)
            CHECKF(!strcmp(it->choices[c], ch->items[c].str), "%s: choice %d '%s' want '%s'", what, c, it->choices[c],
                   ch->items[c].str);
    }
    int64_t g;
    if (gm_json_get_int(want, "gold", &g)) CHECKF(it->gold == g, "%s: gold %d want %lld", what, it->gold, (long long)g);
    const gm_json *labels = gm_json_get(want, "labels");
    if (labels && it->labels)
        for (size_t c = 0; c < labels->len; c++) CHECK(it->labels[c] == labels->items[c].i);
    const char *target = gm_json_get_str(want, "target");
    if (target) CHECK(it->target && !strcmp(it->target, target));
}

static void check_set(const gm_json *exp_root, const char *key, gm_task task, const char *path, int shots) {
    const gm_json *w = gm_json_get(exp_root, key);
    gm_eval_set *set = NULL;
    gm_eval_load_opts lo = {shots, NULL, 0};
    gm_status st = gm_eval_load(task, path, &lo, &set);
    CHECKF(st == GM_OK, "%s: %s", key, gm_last_error());
    if (!set || !w) return;
    int64_t n;
    gm_json_get_int(w, "n", &n);
    CHECKF(set->n == n, "%s: %d items, want %lld", key, set->n, (long long)n);
    check_item(key, &set->items[0], gm_json_get(w, "first"));
    check_item(key, &set->items[set->n - 1], gm_json_get(w, "last"));
    gm_eval_set_free(set);
}

static void test_readers(const gm_json *e) {
    const char *D = "tests/data/eval";
    char p[256];
    snprintf(p, sizeof p, "%s/arc/ARC-Easy-test.jsonl", D);
    check_set(e, "arc_easy", GM_TASK_ARC_EASY, p, -1);
    check_set(e, "arc_easy_2shot", GM_TASK_ARC_EASY, p, 2); /* exemplars from ARC-Easy-train.jsonl beside it */
    snprintf(p, sizeof p, "%s/arc/ARC-Challenge-test.jsonl", D);
    check_set(e, "arc_challenge", GM_TASK_ARC_CHALLENGE, p, 0);
    snprintf(p, sizeof p, "%s/hellaswag/hellaswag_val_sample.txt", D);
    check_set(e, "hellaswag", GM_TASK_HELLASWAG, p, -1);
    snprintf(p, sizeof p, "%s/piqa/valid.jsonl", D);
    check_set(e, "piqa", GM_TASK_PIQA, p, -1);
    snprintf(p, sizeof p, "%s/mmlu/test/high_school_computer_science_test.csv", D);
    check_set(e, "mmlu_hscs_5shot", GM_TASK_MMLU, p, -1);
    snprintf(p, sizeof p, "%s/mmlu", D);
    check_set(e, "mmlu_dir_5shot", GM_TASK_MMLU, p, 5);
    snprintf(p, sizeof p, "%s/truthfulqa/mc_task.json", D);
    check_set(e, "truthfulqa_mc1", GM_TASK_TRUTHFULQA_MC1, p, -1);
    check_set(e, "truthfulqa_mc2", GM_TASK_TRUTHFULQA_MC2, p, -1);
    snprintf(p, sizeof p, "%s/gsm8k/test.jsonl", D);
    check_set(e, "gsm8k_5shot", GM_TASK_GSM8K, p, -1);

    /* ARC items whose labels are 1-4 or run to E */
    gm_eval_set *set = NULL;
    gm_eval_load_opts lo = {-1, NULL, 0};
    CHECK_OK(gm_eval_load(GM_TASK_ARC_EASY, "tests/data/eval/arc/ARC-Easy-test.jsonl", &lo, &set));
    if (set) {
        CHECK(set->items[8].n_choices == 5 && set->items[8].gold == 1);
        CHECK(set->items[9].n_choices == 4 && set->items[9].gold == 1); /* answerKey "2" among labels 1-4 */
        gm_eval_set_free(set);
    }
    /* --limit, HumanEval fields, MMLU per-subject limit */
    gm_eval_load_opts lim = {-1, NULL, 2};
    CHECK_OK(gm_eval_load(GM_TASK_HUMANEVAL, "tests/data/eval/humaneval/HumanEval.jsonl", &lim, &set));
    if (set) {
        CHECK(set->n == 2 && !strcmp(set->items[0].id, "HumanEval/0") &&
              !strcmp(set->items[0].entry_point, "has_close_elements") && strstr(set->items[0].target, "def check("));
        gm_eval_set_free(set);
    }
    CHECK_OK(gm_eval_load(GM_TASK_MMLU, "tests/data/eval/mmlu", &lim, &set));
    if (set) {
        CHECK(set->n == 4 && !strcmp(set->items[2].group, "high_school_computer_science"));
        gm_eval_set_free(set);
    }
    /* HellaSwag in its original JSONL layout gets the harness's preprocessing, ctx_b capitalized. */
    char tmpl[] = "/tmp/gm_test_hsXXXXXX";
    int fd = mkstemp(tmpl);
    const char *hs = "{\"ind\": 24, \"activity_label\": \"Roof shingle removal\", \"ctx_a\": \"A man is sitting on a roof.\", "
                     "\"ctx_b\": \"he\", \"label\": 3, \"endings\": [\"is using wrap to wrap a pair of skis.\", "
                     "\"is ripping level tiles off.\", \"is holding a rubik's cube.\", \"starts pulling up roofing on a roof.\"]}\n"
                     "{\"activity_label\": \"Home\", \"ctx_a\": \"[header] How to x [title] Step one.\", \"ctx_b\": \"\", "
                     "\"label\": \"0\", \"endings\": [\"[step] Do  it.\", \"b\"]}\n";
    if (fd >= 0 && write(fd, hs, strlen(hs)) == (ssize_t)strlen(hs)) {
        close(fd);
        CHECK_OK(gm_eval_load(GM_TASK_HELLASWAG, tmpl, &lo, &set));
        if (set) {
            CHECK(!strcmp(set->items[0].context, "Roof shingle removal: A man is sitting on a roof. He"));
            CHECK(set->items[0].gold == 3 && !strcmp(set->items[0].choices[3], "starts pulling up roofing on a roof."));
            CHECKF(!strcmp(set->items[1].context, "Home: How to x. Step one."), "'%s'", set->items[1].context);
            CHECK(!strcmp(set->items[1].choices[0], " Do it.") && set->items[1].gold == 0); /* strip runs first */
            gm_eval_set_free(set);
        }
    }
    unlink(tmpl);

    /* Errors name the file and the fault. */
    char gz[] = "/tmp/gm_test_gzXXXXXX";
    fd = mkstemp(gz);
    if (fd >= 0 && write(fd, "\x1f\x8b\x08\x00rest", 8) == 8) {
        close(fd);
        CHECK(gm_eval_load(GM_TASK_HUMANEVAL, gz, &lo, &set) == GM_ERR_FORMAT);
        CHECKF(strstr(gm_last_error(), "gzip -dk"), "%s", gm_last_error());
    }
    unlink(gz);
    char bad[] = "/tmp/gm_test_badXXXXXX";
    fd = mkstemp(bad);
    const char *arc_bad = "{\"id\":\"x\",\"question\":\"q\",\"choices\":{\"text\":[\"a\",\"b\"],\"label\":[\"A\",\"B\"]},\"answerKey\":\"C\"}\n";
    if (fd >= 0 && write(fd, arc_bad, strlen(arc_bad)) == (ssize_t)strlen(arc_bad)) {
        close(fd);
        CHECK(gm_eval_load(GM_TASK_ARC_EASY, bad, &lo, &set) == GM_ERR_FORMAT);
        CHECKF(strstr(gm_last_error(), "answerKey") && strstr(gm_last_error(), bad), "%s", gm_last_error());
        CHECK(gm_eval_load(GM_TASK_HELLASWAG, bad, &lo, &set) != GM_OK); /* JSONL without HellaSwag fields */
    }
    unlink(bad);
    gm_eval_load_opts three = {3, NULL, 0};
    CHECK(gm_eval_load(GM_TASK_TRUTHFULQA_MC1, "tests/data/eval/truthfulqa/mc_task.json", &three, &set) == GM_ERR_ARG);
    CHECK(gm_eval_load(GM_TASK_PIQA, "tests/data/eval/piqa/valid.jsonl", &three, &set) == GM_ERR_ARG); /* no exemplars */
    CHECKF(strstr(gm_last_error(), "--fewshot"), "%s", gm_last_error());
    CHECK(gm_eval_load(GM_TASK_ARC_EASY, "tests/data/eval/no-such-file.jsonl", &lo, &set) == GM_ERR_IO);
}

static void test_csv(void) {
    const char *t = "\xEF\xBB\xBFq,a\r\n\"x, \"\"y\"\"\nz\",2\n\nlast,\"\"\n";
    gm_csv_row *rows;
    int n;
    CHECK_OK(gm_csv_parse(t, strlen(t), "t.csv", &rows, &n));
    CHECK(n == 3);
    if (n == 3) {
        CHECK(rows[0].n == 2 && !strcmp(rows[0].f[0], "q") && !strcmp(rows[0].f[1], "a"));
        CHECK(rows[1].n == 2 && !strcmp(rows[1].f[0], "x, \"y\"\nz") && !strcmp(rows[1].f[1], "2"));
        CHECK(rows[2].n == 2 && !strcmp(rows[2].f[1], ""));
    }
    gm_csv_free(rows, n);
    CHECK(gm_csv_parse("\"open,1\n", 8, "u.csv", &rows, &n) == GM_ERR_FORMAT);
    CHECKF(strstr(gm_last_error(), "u.csv") && strstr(gm_last_error(), "unterminated"), "%s", gm_last_error());
    CHECK(gm_csv_parse("\"a\"b,1\n", 7, "v.csv", &rows, &n) == GM_ERR_FORMAT);
}

/* pass@1 on three tiny problems: a correct completion, a wrong one, and one that never returns. */
static void test_pass_at_1(void) {
    char py[4096];
    if (gm_code_find_python(access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3", py, sizeof py)) {
        printf("SKIP pass@1: %s\n", gm_last_error());
        return;
    }
    gm_eval_item it = {0};
    it.context = "def add(a, b):\n    \"\"\"Return a + b.\"\"\"\n";
    it.target = "\n\ndef check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n";
    it.entry_point = "add";
    const char *completions[3] = {"    return a + b\n", "    return a - b\n", "    while True:\n        pass\n"};
    gm_code_outcome want[3] = {GM_CODE_PASSED, GM_CODE_FAILED, GM_CODE_TIMEOUT};
    gm_code_limits lim = gm_code_limits_default();
    lim.timeout_s = 1.0;
    gm_stat pass = {0};
    for (int i = 0; i < 3; i++) {
        char *prog = gm_humaneval_program(&it, completions[i]);
        CHECK(prog && strstr(prog, "check(add)\n"));
        gm_code_result r;
        gm_status st = gm_code_run(py, prog, &lim, &r);
        if (st == GM_ERR_UNSUPPORTED) {
            lim.allow_network = 1;
            st = gm_code_run(py, prog, &lim, &r);
        }
        CHECK_OK(st);
        CHECKF(r.outcome == want[i], "problem %d: %s (%s)", i, gm_code_outcome_name(r.outcome), r.err_tail);
        if (i == 2) CHECK(r.seconds < 3.0);
        gm_stat_add(&pass, r.outcome == GM_CODE_PASSED);
        free(prog);
    }
    CHECK_NEAR(gm_stat_mean(&pass), 1.0 / 3, 1e-12);
    CHECK_NEAR(gm_stat_stderr(&pass), 1.0 / 3, 1e-12);
}

int main(void) {
    gm_json_doc *exp_doc = load_json("tests/data/eval/expected.json");
    CHECKF(exp_doc, "tests/data/eval/expected.json: %s (run from the repository root)", gm_last_error());
    test_metrics();
    test_csv();
    if (exp_doc) {
        test_gsm8k_and_preprocess(gm_json_root(exp_doc));
        test_readers(gm_json_root(exp_doc));
    }
    test_scorer_golden();
    test_scorer_sliding();
    test_encode();
    test_runner_mc();
    test_perplexity();
    test_pass_at_1();
    gm_json_free(exp_doc);
    TEST_DONE();
}
