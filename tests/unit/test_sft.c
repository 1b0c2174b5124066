/* SFT data and loss (train/sft.h), issue 7 checks 1 and 2:
 *  1. every example of tests/data/align/sft_tiny.jsonl (multi-turn with a system message, Alpaca with and
 *     without input, self-instruct instances, GSM8K, Anthropic HH): exact token ids and loss mask against
 *     SentencePiece on the whole formatted text (tools/ref/align_ref.py → tests/golden/align/sft/), the
 *     formatted text itself byte for byte, and the padded batch;
 *  2. the masked loss and every parameter gradient on that batch against float64 PyTorch autograd: per tensor
 *     max|ours − ref| / max|ref| ≤ 1e-4, loss within 1e-5 relative;
 * and the loader's behaviour: bad records named by file:line with what is wrong (stop or skip), JSON arrays,
 * truncation, the held-out split, generation prompts. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/file.h"
#include "base/json.h"
#include "formats/safetensors.h"
#include "gemma.h"
#include "testlib.h"
#include "train/model_train.h"
#include "train/sft.h"

#define GRAD_TOL 1e-4
#define LOSS_TOL 1e-5
#define DATA "tests/data/align/sft_tiny.jsonl"
#define GOLD "tests/golden/align/sft"

static gm_json_doc *read_json(const char *path) {
    char *text = NULL;
    size_t len = 0;
    gm_json_doc *doc = NULL;
    CHECK_OK(gm_file_read_all(path, &text, &len));
    if (text) CHECK_OK(gm_json_parse(text, len, path, &doc));
    free(text);
    return doc;
}

static char tmpdir[256];

static const char *write_tmp(const char *name, const char *text) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    return path;
}

/* per-tensor max relative gradient error against a safetensors file of reference gradients */
static double compare_grads(const gm_train_model *m, const char *path, const char *what) {
    gm_st_file *f = NULL;
    CHECK_OK(gm_safetensors_open(path, 0, &f));
    if (!f) return INFINITY;
    double worst = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const gm_train_tensor *t = &m->tensors[i];
        const gm_st_tensor *rt = gm_safetensors_find(f, t->name);
        CHECKF(rt && rt->dtype == GM_DT_F32 && rt->n_elems == t->numel, "%s: gradient %s missing", what, t->name);
        if (!rt || rt->n_elems != t->numel) continue;
        const float *ref = rt->data, *ours = m->grads + t->offset;
        double md = 0, mr = 0;
        for (size_t k = 0; k < t->numel; k++) {
            double d = fabs((double)ours[k] - ref[k]);
            if (!(d <= md)) md = d;
            mr = fmax(mr, fabs((double)ref[k]));
        }
        double rel = md / mr;
        CHECKF(rel <= GRAD_TOL, "%s: %s max rel error %.3e", what, t->name, rel);
        if (!(rel <= worst)) worst = rel;
    }
    gm_safetensors_close(f);
    return worst;
}

/* ---- 1 + 2: ids, masks, batch, loss and gradients against the reference ---------------------------- */

static void check_golden(const gm_tokenizer *tok) {
    gm_json_doc *doc = read_json(GOLD "/sft.json");
    if (!doc) return;
    const gm_json *r = gm_json_root(doc), *ex = gm_json_get(r, "examples");
    int64_t B = 0, T = 0;
    double ref_loss = 0;
    gm_json_get_int(r, "B", &B);
    gm_json_get_int(r, "T", &T);
    gm_json_get_num(r, "loss", &ref_loss);
    gm_sft_load_opts lo = {GM_ON_BAD_STOP, 0, NULL, 0};
    gm_sft_data d;
    CHECK_OK(gm_sft_load(DATA, tok, &lo, &d));
    CHECKF(d.n == B && ex && (int64_t)ex->len == B, "%d examples, reference has %lld", d.n, (long long)B);
    if (d.n != B) {
        gm_json_free(doc);
        gm_sft_data_free(&d);
        return;
    }
    long masked = 0;
    for (int i = 0; i < d.n; i++) {
        const gm_json *e = &ex->items[i], *ids = gm_json_get(e, "ids"), *mask = gm_json_get(e, "mask");
        int64_t line = 0;
        gm_json_get_int(e, "line", &line);
        CHECKF(d.ex[i].line == line, "example %d: line %ld, reference %lld", i, d.ex[i].line, (long long)line);
        CHECKF((size_t)d.ex[i].n == ids->len, "example %d (line %ld): %d ids, SentencePiece gives %zu", i,
               d.ex[i].line, d.ex[i].n, ids->len);
        int bad_id = -1, bad_mask = -1;
        for (int t = 0; t < d.ex[i].n && (size_t)t < ids->len; t++) {
            if (bad_id < 0 && d.ex[i].ids[t] != ids->items[t].i) bad_id = t;
            if (bad_mask < 0 && d.ex[i].mask[t] != mask->items[t].i) bad_mask = t;
            masked += d.ex[i].mask[t];
        }
        CHECKF(bad_id < 0, "example %d (line %ld): id %d differs from SentencePiece (%d vs %lld)", i, d.ex[i].line,
               bad_id, bad_id >= 0 ? d.ex[i].ids[bad_id] : 0, bad_id >= 0 ? (long long)ids->items[bad_id].i : 0LL);
        CHECKF(bad_mask < 0, "example %d (line %ld): loss mask differs at token %d", i, d.ex[i].line, bad_mask);
    }
    /* the formatter's text of the multi-turn record (system fold, trim, "assistant" as model) is the reference's */
    gm_chat_message msgs[5] = {{"system", "You answer in one line."}, {"user", "  What is 2 + 2?\n"},
                               {"model", "4.  "}, {"user", "And in words? Keep <eos> and <bos> as text: ÿ ñ 🙂"},
                               {"assistant", "Four.\n\nThat is all."}};
    char *text = NULL;
    size_t len = 0;
    CHECK_OK(gm_chat_format(msgs, 5, 0, &text, &len));
    const char *want = gm_json_get_str(&ex->items[0], "formatted");
    CHECKF(text && want && !strcmp(text, want), "formatted text differs:\n%s\nreference:\n%s", text ? text : "",
           want ? want : "");
    free(text);

    /* the padded batch */
    const gm_sft_example **rows = malloc(sizeof *rows * (size_t)B);
    for (int i = 0; i < B; i++) rows[i] = &d.ex[i];
    int32_t *in = malloc(sizeof(int32_t) * (size_t)(B * T)), *tg = malloc(sizeof(int32_t) * (size_t)(B * T));
    gm_sft_batch(rows, (int)B, (int)T, 0, in, tg);
    const gm_json *gi = gm_json_get(r, "inputs"), *gt = gm_json_get(r, "targets");
    int diff = 0, counted = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            diff += in[b * T + t] != gi->items[b].items[t].i || tg[b * T + t] != gt->items[b].items[t].i;
            counted += tg[b * T + t] >= 0;
        }
    CHECKF(diff == 0, "%d batch entries differ from the reference", diff);
    CHECKF(counted == masked && counted == (int)d.n_loss_tokens, "%d targets counted, %ld mask bits, %zu",
           counted, masked, d.n_loss_tokens);

    /* loss and gradients */
    gm_model *src = NULL;
    gm_load_options o = gm_load_options_default();
    CHECK_OK(gm_model_load(GOLD "/model", &o, &src));
    gm_train_opts to = gm_train_opts_default((int)B, (int)T, 1);
    gm_train_model *m = NULL;
    if (src) CHECK_OK(gm_train_model_from_model(src, &to, &m));
    gm_model_free(src);
    if (m) {
        float loss = 0;
        gm_train_zero_grad(m);
        CHECK_OK(gm_train_forward_backward_masked(m, in, tg, (int)B, (int)T, &loss));
        double lrel = fabs(loss - ref_loss) / fabs(ref_loss);
        CHECKF(lrel <= LOSS_TOL, "SFT loss %.7f vs reference %.7f", loss, ref_loss);
        CHECK(m->last_targets == counted);
        double worst = compare_grads(m, GOLD "/grads.safetensors", "sft");
        printf("check 1: %d examples, %zu tokens, %d trained, ids and masks identical to SentencePiece\n", d.n,
               d.n_tokens, counted);
        printf("check 2: SFT loss %.7f (ref %.7f, rel %.1e), worst gradient rel error %.2e (limit %.0e)\n", loss,
               ref_loss, lrel, worst, GRAD_TOL);
        gm_train_model_free(m);
    }
    free(rows);
    free(in);
    free(tg);
    gm_sft_data_free(&d);
    gm_json_free(doc);
}

/* ---- loader behaviour ------------------------------------------------------------------------------ */

static const char *BAD =
    "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"model\", \"content\": \"yo\"}]}\n"
    "{\"messages\": [}\n"                                                                               /* 2 */
    "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"user\", \"content\": \"b\"}]}\n"  /* 3 */
    "{\"messages\": [{\"role\": \"bot\", \"content\": \"a\"}]}\n"                                       /* 4 */
    "{\"messages\": [{\"role\": \"user\", \"content\": \"only a question\"}]}\n"                       /* 5 */
    "\n"                                                                                                 /* 6 */
    "{\"messages\": [{\"role\": \"user\", \"content\": 7}]}\n"                                          /* 7 */
    "{\"foo\": 1}\n"                                                                                    /* 8 */
    "{\"instruction\": \"x\"}\n"                                                                        /* 9 */
    "{\"chosen\": \"hello\"}\n"                                                                         /* 10 */
    "{\"chosen\": \"\\n\\nHuman: a\\n\\nHuman: b\"}\n"                                                  /* 11 */
    "[1, 2]\n"                                                                                          /* 12 */
    "{\"instruction\": \"Say yes.\", \"input\": 3, \"output\": \"yes\"}\n"                              /* 13 */
    "{\"question\": \"1+1?\", \"answer\": \"2\"}\n";                                                    /* 14 */

static const char *BAD_WHY[] = {
    NULL, NULL, ":2: malformed JSON", ":3: ", ":4: ", ":5: the conversation ends with a user turn", NULL,
    ":7: \"messages\"[0] (user) has no \"content\" string", ":8: no known fields", ":9: \"output\" is missing",
    ":10: \"chosen\": Anthropic HH text must start with", ":11: \"chosen\": Anthropic HH turn 2 is from the Human",
    ":12: the record is an array, not a JSON object", ":13: \"input\" is a number, not a string", NULL};

static void check_bad_records(const gm_tokenizer *tok) {
    const char *path = write_tmp("bad.jsonl", BAD);
    char logpath[512];
    snprintf(logpath, sizeof logpath, "%s/log.txt", tmpdir);
    /* stop: the first bad record is the error, by file:line */
    gm_sft_load_opts lo = {GM_ON_BAD_STOP, 0, NULL, 0};
    gm_sft_data d;
    CHECK(gm_sft_load(path, tok, &lo, &d) == GM_ERR_FORMAT);
    CHECKF(strstr(gm_last_error(), "bad.jsonl:2: malformed JSON") != NULL, "stop message: %s", gm_last_error());
    CHECK(strncmp(gm_last_error(), path, strlen(path)) == 0);
    /* skip: every bad record listed with its line and reason, the good ones kept */
    FILE *log = fopen(logpath, "w+");
    lo.on_bad = GM_ON_BAD_SKIP, lo.log = log;
    CHECK_OK(gm_sft_load(path, tok, &lo, &d));
    CHECKF(d.n == 2 && d.n_bad == 11 && d.n_records == 13, "kept %d, bad %ld of %ld records", d.n, d.n_bad,
           d.n_records);
    CHECK(d.n == 2 && d.ex[0].line == 1 && d.ex[1].line == 14);
    gm_sft_data_free(&d);
    fflush(log);
    rewind(log);
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, log);
    buf[n] = 0;
    fclose(log);
    for (int line = 2; line <= 13; line++) {
        if (!BAD_WHY[line]) continue;
        char key[64];
        snprintf(key, sizeof key, "%s:%d: ", path + strlen(tmpdir) + 1, line);
        char *at = strstr(buf, key);
        CHECKF(at != NULL, "line %d not reported:\n%s", line, buf);
        if (at) {
            char *eol = strchr(at, '\n');
            if (eol) *eol = 0;
            CHECKF(strstr(at, BAD_WHY[line]) != NULL && strstr(at, "skipped"), "line %d reported as: %s (want %s)",
                   line, at, BAD_WHY[line]);
            if (eol) *eol = '\n';
        }
    }
    CHECKF(strstr(buf, "alternate") && strstr(buf, "role \"bot\""), "role faults not explained:\n%s", buf);
    /* nothing usable at all is an error even when skipping */
    path = write_tmp("none.jsonl", "{\"foo\": 1}\n");
    lo.log = NULL;
    CHECK(gm_sft_load(path, tok, &lo, &d) == GM_ERR_FORMAT && strstr(gm_last_error(), "no usable examples"));
    CHECK(gm_sft_load("/nonexistent/x.jsonl", tok, &lo, &d) == GM_ERR_IO);
}

/* A JSON array of records gives the same examples as JSONL (Code Alpaca ships arrays). */
static void check_array_and_prompt(const gm_tokenizer *tok) {
    const char *path = write_tmp("arr.json", "[{\"instruction\": \"Translate to English.\", \"input\": \"hola\", "
                                             "\"output\": \"hello\"},\n {\"question\": \"1+1?\", \"answer\": \"2\"}]");
    gm_sft_load_opts lo = {GM_ON_BAD_STOP, 0, NULL, 0};
    gm_sft_data a, b;
    CHECK_OK(gm_sft_load(path, tok, &lo, &a));
    CHECK_OK(gm_sft_load(DATA, tok, &lo, &b));
    CHECK(a.n == 2 && a.ex[0].line == 1 && a.ex[1].line == 2);
    if (a.n == 2 && b.n > 1)
        CHECK(a.ex[0].n == b.ex[1].n && !memcmp(a.ex[0].ids, b.ex[1].ids, sizeof(int32_t) * (size_t)a.ex[0].n) &&
              !memcmp(a.ex[0].mask, b.ex[1].mask, (size_t)a.ex[0].n));
    /* the generation prompt is exactly the example's tokens before its first trained token */
    if (b.n > 1) {
        gm_chat_message m[1] = {{"user", "Translate to English.\n\nhola"}};
        int32_t *ids = NULL;
        int n = 0;
        CHECK_OK(gm_sft_encode_prompt(tok, m, 1, &ids, &n));
        int first = 0;
        while (first < b.ex[1].n && !b.ex[1].mask[first]) first++;
        CHECKF(n == first && ids && !memcmp(ids, b.ex[1].ids, sizeof(int32_t) * (size_t)n),
               "prompt has %d tokens, the example's answer starts at %d", n, first);
        free(ids);
        gm_chat_message m2[2] = {{"user", "q"}, {"model", "a"}};
        CHECK(gm_sft_encode_prompt(tok, m2, 2, &ids, &n) == GM_ERR_FORMAT && strstr(gm_last_error(), "user turn"));
    }
    gm_sft_data_free(&a);
    gm_sft_data_free(&b);
    /* invalid JSON as a whole array is one located error */
    path = write_tmp("broken.json", "[{\"instruction\": \"a\", \"output\": \"b\"},");
    CHECK(gm_sft_load(path, tok, &lo, &a) == GM_ERR_FORMAT && strstr(gm_last_error(), "broken.json"));
}

static void check_truncate_split(const gm_tokenizer *tok) {
    gm_sft_load_opts lo = {GM_ON_BAD_STOP, 0, NULL, 0};
    gm_sft_data full, cut;
    CHECK_OK(gm_sft_load(DATA, tok, &lo, &full));
    /* cut at 40 tokens: longer examples keep their first 40 if a trained token is among them */
    lo.max_len = 40;
    CHECK_OK(gm_sft_load(DATA, tok, &lo, &cut));
    int want_kept = 0, want_cut = 0, want_gone = 0;
    for (int i = 0; i < full.n; i++) {
        if (full.ex[i].n <= 40) { want_kept++; continue; }
        int left = 0;
        for (int t = 0; t < 40; t++) left += full.ex[i].mask[t];
        if (left) want_kept++, want_cut++;
        else want_gone++;
    }
    CHECKF(cut.n == want_kept && cut.n_truncated == want_cut && cut.n_too_long == want_gone,
           "kept %d cut %ld dropped %ld; want %d %d %d", cut.n, cut.n_truncated, cut.n_too_long, want_kept, want_cut,
           want_gone);
    CHECK(want_cut > 0 && want_gone > 0); /* the data exercises both */
    for (int i = 0; i < cut.n; i++) CHECK(cut.ex[i].n <= 40 && cut.ex[i].n_loss > 0);
    /* held-out split: disjoint, complete, seeded */
    gm_sft_data ev, full2, ev2;
    size_t tok_all = full.n_tokens;
    int n_all = full.n;
    CHECK_OK(gm_sft_split(&full, 0.3, 9, &ev));
    CHECKF(ev.n == 2 && full.n == n_all - 2, "split %d + %d of %d", full.n, ev.n, n_all);
    CHECK(full.n_tokens + ev.n_tokens == tok_all);
    long seen = 0;
    for (int i = 0; i < full.n; i++) seen |= 1L << full.ex[i].line;
    for (int i = 0; i < ev.n; i++) seen |= 1L << ev.ex[i].line; /* lines can repeat (instances); OR is enough */
    CHECK(seen == 0x7e); /* lines 1..6 all present */
    for (int i = 1; i < full.n; i++) CHECK(full.ex[i - 1].line <= full.ex[i].line); /* file order kept */
    lo.max_len = 0;
    CHECK_OK(gm_sft_load(DATA, tok, &lo, &full2));
    CHECK_OK(gm_sft_split(&full2, 0.3, 9, &ev2));
    CHECK(ev2.n == ev.n && ev2.ex[0].n == ev.ex[0].n && ev2.ex[1].n == ev.ex[1].n);
    gm_sft_data ev3;
    CHECK(gm_sft_split(&full2, 1.5, 9, &ev3) == GM_ERR_ARG && ev3.n == 0);
    gm_sft_data_free(&full);
    gm_sft_data_free(&cut);
    gm_sft_data_free(&ev);
    gm_sft_data_free(&full2);
    gm_sft_data_free(&ev2);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/gm_test_sft.XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    gm_tokenizer *tok = NULL;
    CHECK_OK(gm_tokenizer_load("tests/data/tiny.model", &tok));
    if (tok) {
        check_golden(tok);
        check_bad_records(tok);
        check_array_and_prompt(tok);
        check_truncate_split(tok);
    }
    gm_tokenizer_free(tok);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    TEST_DONE();
}
