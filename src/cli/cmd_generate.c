/* `gemma generate`: prompt in (text or ids), tokens out, streamed as text or printed as a JSON id array. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "generate/generate.h"

static const char *HELP =
    "usage: gemma generate -m MODEL_DIR (-p TEXT | --ids 2,651,...) [options]\n"
    "  -n, --n-predict N   tokens to generate (default 128)\n"
    "  --temp T            temperature, 0 = greedy (default 0.8)\n"
    "  --top-k K           keep the K most likely tokens, 0 = off (default 40)\n"
    "  --top-p P           nucleus sampling, 1 = off (default 0.95)\n"
    "  --seed S            random seed (default: from the clock, printed)\n"
    "  -t, --threads N     threads (default: all cores)\n"
    "  --chat              wrap the prompt in Gemma's chat turn format\n"
    "  --output-ids        print the generated ids as one JSON array instead of text\n"
    "  -c, --ctx N         context size (default: prompt + N, at most the model's)\n"
    "  --cache-type T      KV cache f32 (default) or bf16 (half the memory)\n"
    "  --mmap | --no-mmap  map the weights or read them into memory (default --no-mmap)\n"
    "  -q, --quiet         no progress on stderr\n";

typedef struct {
    int32_t *ids;
    int n, cap;
    int print_text;
} out_state;

static int on_token(void *user, int32_t id, const char *text, size_t len) {
    out_state *o = user;
    if (id >= 0 && o->n < o->cap) o->ids[o->n++] = id;
    if (o->print_text && len) {
        fwrite(text, 1, len, stdout);
        fflush(stdout);
    }
    return 0;
}

int cmd_generate(int argc, char **argv) {
    const char *C = "generate", *model = NULL, *prompt = NULL, *ids_arg = NULL;
    long n_predict = 128, threads = cli_default_threads(), ctx = 0, top_k = 40;
    double temp = 0.8, top_p = 0.95;
    unsigned long long seed = (unsigned long long)time(NULL);
    int seed_given = 0, chat = 0, output_ids = 0, use_mmap = 0, quiet = 0, kv_bf16 = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_ARG() do { if (!v) return cli_usage(C, "option %s needs a value", a); i++; } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(HELP, stdout); return CLI_OK; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { NEED_ARG(); model = v; }
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) { NEED_ARG(); prompt = v; }
        else if (!strcmp(a, "--ids")) { NEED_ARG(); ids_arg = v; }
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            NEED_ARG();
            if (!cli_parse_int(v, 0, 1 << 24, &n_predict)) return cli_usage(C, "bad value for %s: '%s'", a, v);
        } else if (!strcmp(a, "--temp")) {
            NEED_ARG();
            if (!cli_parse_float(v, &temp) || temp < 0) return cli_usage(C, "bad value for --temp: '%s'", v);
        } else if (!strcmp(a, "--top-k")) {
            NEED_ARG();
            if (!cli_parse_int(v, 0, 1 << 24, &top_k)) return cli_usage(C, "bad value for --top-k: '%s'", v);
        } else if (!strcmp(a, "--top-p")) {
            NEED_ARG();
            if (!cli_parse_float(v, &top_p) || !(top_p > 0 && top_p <= 1))
                return cli_usage(C, "bad value for --top-p: '%s' (want 0 < P <= 1)", v);
        } else if (!strcmp(a, "--seed")) {
            NEED_ARG();
            char *end;
            seed = strtoull(v, &end, 10);
            if (*end || !*v) return cli_usage(C, "bad value for --seed: '%s'", v);
            seed_given = 1;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            NEED_ARG();
            if (!cli_parse_int(v, 1, 256, &threads)) return cli_usage(C, "bad value for %s: '%s'", a, v);
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) {
            NEED_ARG();
            if (!cli_parse_int(v, 1, 1 << 24, &ctx)) return cli_usage(C, "bad value for %s: '%s'", a, v);
        } else if (!strcmp(a, "--cache-type")) {
            NEED_ARG();
            if (strcmp(v, "f32") && strcmp(v, "bf16")) return cli_usage(C, "--cache-type must be f32 or bf16");
            kv_bf16 = !strcmp(v, "bf16");
        } else if (!strcmp(a, "--chat")) chat = 1;
        else if (!strcmp(a, "--output-ids")) output_ids = 1;
        else if (!strcmp(a, "--mmap")) use_mmap = 1;
        else if (!strcmp(a, "--no-mmap")) use_mmap = 0;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) quiet = 1;
        else return cli_usage(C, "unknown option '%s'", a);
#undef NEED_ARG
    }
    if (!model) return cli_usage(C, "-m MODEL_DIR is required");
    if (!prompt == !ids_arg) return cli_usage(C, "give exactly one of -p TEXT or --ids LIST");
    if (chat && !prompt) return cli_usage(C, "--chat needs -p TEXT");
    int32_t *prompt_ids = NULL;
    size_t n_prompt = 0;
    if (ids_arg && !cli_parse_ids(ids_arg, &prompt_ids, &n_prompt))
        return cli_usage(C, "--ids must be a list of non-negative integers like 2,651,1234");

    int rc = CLI_RUNTIME;
    gm_model *m = NULL;
    gm_tokenizer *tok = NULL;
    gm_session *s = NULL;
    gm_sampler *smp = NULL;
    out_state o = {0};
    if (cli_load_model(model, use_mmap, quiet, &m) || cli_load_tokenizer_opt(model, &tok)) goto fail;
    const gm_config *cfg = gm_model_config(m);
    if (prompt) {
        if (!tok) {
            fprintf(stderr, "gemma generate: error: %s has no tokenizer.model or tokenizer.json; use --ids\n", model);
            goto out;
        }
        char *text = NULL;
        size_t text_len = strlen(prompt);
        int flags = GM_TOK_ADD_BOS;
        if (chat) {
            gm_chat_message msg = {"user", prompt};
            if (gm_chat_format(&msg, 1, 1, &text, &text_len)) goto fail;
            /* The turn markers are parsed as pieces; the leading "<bos>" text becomes the tokenizer's own bos
             * id, whatever its piece is called (SentencePiece's default is "<s>"). */
            flags = GM_TOK_PARSE_SPECIAL | GM_TOK_ADD_BOS;
        }
        const char *body = text ? text : prompt;
        if (chat && !strncmp(body, "<bos>", 5)) body += 5, text_len -= 5;
        gm_status st = gm_tokenizer_encode(tok, body, text_len, flags, &prompt_ids, &n_prompt);
        free(text);
        if (st) goto fail;
    }
    if (n_prompt == 0) {
        fprintf(stderr, "gemma generate: error: the prompt is empty\n");
        goto out;
    }
    long limit = ctx ? ctx : cfg->max_pos;
    if (limit > cfg->max_pos) limit = cfg->max_pos;
    if ((long)n_prompt > limit) {
        fprintf(stderr, "gemma generate: error: the prompt has %zu tokens but the context holds %ld (%s)\n", n_prompt,
                limit, ctx ? "--ctx" : "the model's max_position_embeddings");
        goto out;
    }
    long n_ctx = ctx ? ctx : (long)n_prompt + n_predict;
    if (n_ctx > limit) n_ctx = limit;
    gm_session_params sprm = gm_session_params_default((int)n_ctx, (int)threads);
    sprm.kv_bf16 = kv_bf16;
    if (gm_session_new_ex(m, &sprm, &s)) goto fail;
    gm_sampler_params sp = {(float)temp, (int)top_k, (float)top_p, seed};
    if (gm_sampler_new(&sp, cfg->vocab_size, &smp)) goto fail;
    if (!quiet && !seed_given && temp > 0) fprintf(stderr, "seed %llu\n", seed);
    int32_t stop[3];
    int n_stop = 0;
    stop[n_stop++] = cfg->eos_id;
    if (tok) {
        int32_t e = gm_tokenizer_eos(tok), eot = gm_tokenizer_piece_id(tok, "<end_of_turn>");
        if (e >= 0 && e != cfg->eos_id) stop[n_stop++] = e;
        if (eot >= 0) stop[n_stop++] = eot;
    }
    o.cap = (int)n_predict;
    o.ids = malloc(sizeof(int32_t) * (size_t)(n_predict + 1));
    o.print_text = tok && !output_ids;
    if (!o.ids) goto out;
    gm_generate_params gp = {(int)n_predict, stop, n_stop};
    int n_out = 0, stopped = 0;
    double t0 = cli_now();
    gm_status st = gm_generate(s, smp, tok, prompt_ids, n_prompt, &gp, on_token, &o, &n_out, &stopped);
    double dt = cli_now() - t0;
    if (o.print_text) fputc('\n', stdout);
    fflush(stdout); /* before the stderr summary, so the two don't interleave */
    if (st) goto fail;
    if (!o.print_text) {
        fputc('[', stdout);
        for (int i = 0; i < o.n; i++) printf(i ? ", %d" : "%d", o.ids[i]);
        fputs("]\n", stdout);
    }
    if (!quiet)
        fprintf(stderr, "%zu prompt tokens, %d generated in %.2f s (%.2f tokens/s)%s\n", n_prompt, n_out, dt,
                dt > 0 ? (double)(n_prompt + (size_t)n_out) / dt : 0.0, stopped ? ", stopped at end of turn" : "");
    rc = CLI_OK;
    goto out;
fail:
    rc = cli_fail(C);
out:
    free(o.ids);
    free(prompt_ids);
    gm_sampler_free(smp);
    gm_session_free(s);
    gm_tokenizer_free(tok);
    gm_model_free(m);
    return rc;
}
