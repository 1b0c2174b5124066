/* `gemma chat`: interactive multi-turn chat on stdin. The KV cache is kept across turns: each turn feeds
 * only the new tokens (closing the model's turn, the user's turn, and the opening of the next model turn). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "generate/generate.h"

static const char *HELP =
    "usage: gemma chat -m MODEL_DIR [-n N] [--temp T] [--top-k K] [--top-p P] [--seed S] [-t N] [-c CTX] [--mmap]\n"
    "                  [--cache-type f32|bf16]\n"
    "  reads one user message per line from stdin; an empty line or end of input ends the chat\n";

typedef struct {
    int32_t last;
} chat_state;

static int on_token(void *user, int32_t id, const char *text, size_t len) {
    chat_state *c = user;
    if (id >= 0) c->last = id;
    if (len) {
        fwrite(text, 1, len, stdout);
        fflush(stdout);
    }
    return 0;
}

int cmd_chat(int argc, char **argv) {
    const char *C = "chat", *model = NULL;
    long n_predict = 512, threads = cli_default_threads(), ctx = 4096, top_k = 40;
    double temp = 0.8, top_p = 0.95;
    unsigned long long seed = (unsigned long long)time(NULL);
    int use_mmap = 0, kv_bf16 = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(HELP, stdout); return CLI_OK; }
        if (!strcmp(a, "--mmap")) { use_mmap = 1; continue; }
        if (!strcmp(a, "--no-mmap")) { use_mmap = 0; continue; }
        if (!v) return cli_usage(C, "unknown option or missing value '%s'", a);
        i++;
        int ok = 1;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) ok = cli_parse_int(v, 1, 1 << 24, &n_predict);
        else if (!strcmp(a, "--temp")) ok = cli_parse_float(v, &temp) && temp >= 0;
        else if (!strcmp(a, "--top-k")) ok = cli_parse_int(v, 0, 1 << 24, &top_k);
        else if (!strcmp(a, "--top-p")) ok = cli_parse_float(v, &top_p) && top_p > 0 && top_p <= 1;
        else if (!strcmp(a, "--seed")) { char *e; seed = strtoull(v, &e, 10); ok = !*e && *v; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) ok = cli_parse_int(v, 1, 256, &threads);
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) ok = cli_parse_int(v, 16, 1 << 24, &ctx);
        else if (!strcmp(a, "--cache-type")) ok = !strcmp(v, "f32") || (kv_bf16 = !strcmp(v, "bf16"));
        else return cli_usage(C, "unknown option '%s'", a);
        if (!ok) return cli_usage(C, "bad value for %s: '%s'", a, v);
    }
    if (!model) return cli_usage(C, "-m MODEL_DIR is required");
    int rc = CLI_RUNTIME;
    gm_model *m = NULL;
    gm_tokenizer *tok = NULL;
    gm_session *s = NULL;
    gm_sampler *smp = NULL;
    char *line = NULL;
    size_t cap = 0;
    if (cli_load_model(model, use_mmap, 0, &m) || cli_load_tokenizer_opt(model, &tok)) goto fail;
    if (!tok) {
        fprintf(stderr, "gemma chat: error: %s has no tokenizer.model or tokenizer.json\n", model);
        goto out;
    }
    const gm_config *cfg = gm_model_config(m);
    if (ctx > cfg->max_pos) ctx = cfg->max_pos;
    gm_session_params sprm = gm_session_params_default((int)ctx, (int)threads);
    sprm.kv_bf16 = kv_bf16;
    if (gm_session_new_ex(m, &sprm, &s)) goto fail;
    gm_sampler_params sp = {(float)temp, (int)top_k, (float)top_p, seed};
    if (gm_sampler_new(&sp, cfg->vocab_size, &smp)) goto fail;
    int32_t stop[2] = {cfg->eos_id, gm_tokenizer_piece_id(tok, "<end_of_turn>")};
    int n_stop = stop[1] >= 0 ? 2 : 1;
    int first = 1;
    for (;;) {
        fputs("> ", stderr);
        ssize_t r = getline(&line, &cap, stdin);
        if (r <= 0) break;
        while (r > 0 && (line[r - 1] == '\n' || line[r - 1] == '\r')) line[--r] = 0;
        if (r == 0) break;
        gm_chat_message msg = {"user", line};
        char *turn = NULL;
        size_t turn_len;
        if (gm_chat_format(&msg, 1, 1, &turn, &turn_len)) goto fail;
        /* Later turns: drop the leading <bos> and first close the model's previous turn, whose <end_of_turn>
         * ended generation without being fed to the model. */
        const char *body = turn;
        if (!strncmp(body, "<bos>", 5)) body += 5; /* bos goes in by id (GM_TOK_ADD_BOS), whatever its piece */
        size_t blen = strlen(body);
        char *text = malloc(blen + 32);
        if (!text) { free(turn); goto out; }
        snprintf(text, blen + 32, "%s%s", first ? "" : "<end_of_turn>\n", body);
        free(turn);
        int32_t *ids = NULL;
        size_t n_ids = 0;
        gm_status st = gm_tokenizer_encode(tok, text, strlen(text), GM_TOK_PARSE_SPECIAL | (first ? GM_TOK_ADD_BOS : 0),
                                           &ids, &n_ids);
        free(text);
        if (st) {
            fprintf(stderr, "gemma chat: %s\n", gm_last_error()); /* e.g. invalid UTF-8: ask again */
            continue;
        }
        if ((long)n_ids + gm_session_pos(s) >= ctx) {
            free(ids);
            fprintf(stderr, "gemma chat: error: the conversation has filled the context of %ld tokens (use -c)\n", ctx);
            goto out;
        }
        first = 0;
        chat_state cs = {-1};
        gm_generate_params gp = {(int)n_predict, stop, n_stop};
        int n_out, stopped;
        st = gm_generate(s, smp, tok, ids, n_ids, &gp, on_token, &cs, &n_out, &stopped);
        free(ids);
        fputc('\n', stdout);
        fflush(stdout);
        if (st) goto fail;
        /* A reply cut by -n left its last token unfed: feed it so the cache matches what was shown. */
        if (!stopped && cs.last >= 0 && gm_session_pos(s) < ctx && gm_session_eval(s, &cs.last, 1, NULL)) goto fail;
    }
    rc = CLI_OK;
    goto out;
fail:
    rc = cli_fail(C);
out:
    free(line);
    gm_sampler_free(smp);
    gm_session_free(s);
    gm_tokenizer_free(tok);
    gm_model_free(m);
    return rc;
}
