/* `gemma eval`: score a model on a benchmark's original files (ARC, HellaSwag, PIQA, MMLU, TruthfulQA,
 * GSM8K, HumanEval) the way lm-evaluation-harness does, or the perplexity of a text file; a progress bar
 * with ETA on stderr, a results table on stdout and optionally JSON. See docs/eval.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/json.h"
#include "cli/cli.h"
#include "eval/codeexec.h"
#include "eval/score.h"
#include "eval/tasks.h"

static const char *HELP =
    "usage: gemma eval -m MODEL_DIR --task NAME --data PATH [options]\n"
    "  --task NAME         arc_easy | arc_challenge | hellaswag | piqa | mmlu | truthfulqa_mc1 |\n"
    "                      truthfulqa_mc2 | gsm8k | humaneval | perplexity\n"
    "  --data PATH         the dataset's file (for mmlu its directory or one *_test.csv; for perplexity\n"
    "                      any UTF-8 text). gzip/bzip2 files must be unpacked first (gzip -dk, bzip2 -dk)\n"
    "  --shots K           few-shot examples per prompt (default: mmlu 5, gsm8k 5, others 0)\n"
    "  --fewshot PATH      where the examples come from (default: beside --data: ARC *-train.jsonl,\n"
    "                      GSM8K train.jsonl, MMLU dev/); the first K are used\n"
    "  --limit N           only the first N items (per subject for an MMLU directory)\n"
    "  --out FILE          write the results as JSON\n"
    "  --samples FILE      write one JSON line per item (log-likelihoods, completions, outcomes)\n"
    "  --max-gen-toks N    gsm8k / humaneval: tokens per answer (default 256 / 512)\n"
    "  --python PATH       humaneval: the interpreter (default python3 from PATH)\n"
    "  --timeout S         humaneval: wall-clock seconds per program (default 5)\n"
    "  --mem-mb N          humaneval: address-space limit per program (default 1024)\n"
    "  --allow-network     humaneval: run even where no private network namespace can be made\n"
    "  --window N          perplexity: positions per window, <bos> included (default: the context)\n"
    "  --stride N          perplexity: tokens each window advances (default: half a window)\n"
    "  -c, --ctx N         context size (default: the model's, at most 8192)\n"
    "  -t, --threads N     threads (default: all cores)\n"
    "  --cache-type T      KV cache f32 (default) or bf16\n"
    "  --mmap | --no-mmap  map the weights or read them into memory (default --no-mmap)\n"
    "  -q, --quiet         no progress on stderr\n"
    "exit status: 0 done, 1 runtime error (bad data, model, sandbox), 2 usage error\n";

/* ---- output ------------------------------------------------------------------------------------ */

static void json_num(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.6g", v);
    else fputs("null", f);
}

static void json_opt_str(FILE *f, const char *s) {
    if (s) gm_json_write_str(f, s);
    else fputs("null", f);
}

static void table_header(void) {
    printf("| %-14s | %6s | %5s | %-28s | %8s |   | %8s |\n", "task", "n", "shots", "metric", "value", "stderr");
    printf("|%s|%s|%s|%s|%s|---|%s|\n", "----------------", "-------:", "------:", "------------------------------",
           "---------:", "---------:");
}

static void table_row(const char *task, long n, int shots, const char *metric, double v, double se) {
    if (fabs(v) < 1e5 && fabs(se) < 1e5) printf("| %-14s | %6ld | %5d | %-28s | %8.4f | ± | %8.4f |\n", task, n, shots, metric, v, se);
    else printf("| %-14s | %6ld | %5d | %-28s | %8.3g | ± | %8.3g |\n", task, n, shots, metric, v, se);
}

int cmd_eval(int argc, char **argv) {
    const char *C = "eval", *model = NULL, *task_name = NULL, *data = NULL, *fewshot = NULL, *out_path = NULL,
               *samples_path = NULL, *python_arg = "python3";
    long shots = -1, limit = 0, max_gen = 0, threads = cli_default_threads(), ctx = 0, window = 0, stride = 0, mem_mb = 1024;
    double timeout = 5.0;
    int use_mmap = 0, quiet = 0, kv_bf16 = 0, allow_net = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_ARG() do { if (!v) return cli_usage(C, "option %s needs a value", a); i++; } while (0)
#define INT_ARG(var, lo, hi) do { NEED_ARG(); if (!cli_parse_int(v, lo, hi, &var)) \
    return cli_usage(C, "bad value for %s: '%s'", a, v); } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(HELP, stdout); return CLI_OK; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { NEED_ARG(); model = v; }
        else if (!strcmp(a, "--task")) { NEED_ARG(); task_name = v; }
        else if (!strcmp(a, "--data")) { NEED_ARG(); data = v; }
        else if (!strcmp(a, "--fewshot")) { NEED_ARG(); fewshot = v; }
        else if (!strcmp(a, "--out")) { NEED_ARG(); out_path = v; }
        else if (!strcmp(a, "--samples")) { NEED_ARG(); samples_path = v; }
        else if (!strcmp(a, "--python")) { NEED_ARG(); python_arg = v; }
        else if (!strcmp(a, "--shots")) INT_ARG(shots, 0, 1000);
        else if (!strcmp(a, "--limit")) INT_ARG(limit, 1, 1L << 30);
        else if (!strcmp(a, "--max-gen-toks")) INT_ARG(max_gen, 1, 1 << 20);
        else if (!strcmp(a, "--mem-mb")) INT_ARG(mem_mb, 64, 1 << 20);
        else if (!strcmp(a, "--window")) INT_ARG(window, 2, 1 << 24);
        else if (!strcmp(a, "--stride")) INT_ARG(stride, 1, 1 << 24);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) INT_ARG(threads, 1, 256);
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) INT_ARG(ctx, 2, 1 << 24);
        else if (!strcmp(a, "--timeout")) {
            NEED_ARG();
            if (!cli_parse_float(v, &timeout) || !(timeout > 0 && timeout <= 3600))
                return cli_usage(C, "bad value for --timeout: '%s' (want 0 < S <= 3600)", v);
        } else if (!strcmp(a, "--cache-type")) {
            NEED_ARG();
            if (strcmp(v, "f32") && strcmp(v, "bf16")) return cli_usage(C, "--cache-type must be f32 or bf16");
            kv_bf16 = !strcmp(v, "bf16");
        } else if (!strcmp(a, "--allow-network")) allow_net = 1;
        else if (!strcmp(a, "--mmap")) use_mmap = 1;
        else if (!strcmp(a, "--no-mmap")) use_mmap = 0;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) quiet = 1;
        else return cli_usage(C, "unknown option '%s'", a);
#undef INT_ARG
#undef NEED_ARG
    }
    if (!model) return cli_usage(C, "-m MODEL_DIR is required");
    if (!task_name) return cli_usage(C, "--task NAME is required");
    int task = gm_task_by_name(task_name);
    if (task < 0)
        return cli_usage(C, "unknown task '%s' (arc_easy, arc_challenge, hellaswag, piqa, mmlu, truthfulqa_mc1, "
                            "truthfulqa_mc2, gsm8k, humaneval, perplexity)", task_name);
    if (!data) return cli_usage(C, "--data PATH is required");
    const gm_task_info *ti = gm_task_get((gm_task)task);
    if (ti->kind == GM_KIND_TEXT && (shots > 0 || fewshot || limit))
        return cli_usage(C, "--shots, --fewshot and --limit do not apply to perplexity");
    if (ti->kind != GM_KIND_TEXT && (window || stride)) return cli_usage(C, "--window and --stride are for perplexity");
    if (shots > 0 && (task == GM_TASK_TRUTHFULQA_MC1 || task == GM_TASK_TRUTHFULQA_MC2 || task == GM_TASK_HUMANEVAL))
        return cli_usage(C, "%s takes no --shots (TruthfulQA carries its fixed 6-shot QA preamble; HumanEval is 0-shot)",
                         ti->name);

    int rc = CLI_RUNTIME;
    char python[4096] = {0};
    gm_eval_set *set = NULL;
    gm_model *m = NULL;
    gm_tokenizer *tok = NULL;
    gm_session *s = NULL;
    FILE *samples = NULL;
    char *text = NULL;
    gm_eval_result res;
    memset(&res, 0, sizeof res);
    gm_ppl_result ppl;
    memset(&ppl, 0, sizeof ppl);

    /* Everything that can fail fast (interpreter, dataset) before the model loads. */
    if (ti->kind == GM_KIND_CODE && gm_code_find_python(python_arg, python, sizeof python)) goto fail;
    size_t text_len = 0;
    if (ti->kind == GM_KIND_TEXT) {
        if (cli_read_file(data, &text, &text_len)) goto fail;
    } else {
        gm_eval_load_opts lo = {(int)shots, fewshot, (int)limit};
        if (gm_eval_load((gm_task)task, data, &lo, &set)) goto fail;
    }
    if (samples_path && !(samples = fopen(samples_path, "w"))) {
        fprintf(stderr, "gemma eval: error: cannot write %s\n", samples_path);
        goto out;
    }
    if (cli_load_model(model, use_mmap, quiet, &m) || cli_load_tokenizer_opt(model, &tok)) goto fail;
    if (!tok) {
        fprintf(stderr, "gemma eval: error: %s has no tokenizer.model or tokenizer.json (evaluation needs text)\n", model);
        goto out;
    }
    const gm_config *cfg = gm_model_config(m);
    long n_ctx = ctx ? ctx : (cfg->max_pos < 8192 ? cfg->max_pos : 8192);
    if (n_ctx > cfg->max_pos) {
        fprintf(stderr, "gemma eval: error: --ctx %ld exceeds the model's context of %d\n", n_ctx, cfg->max_pos);
        goto out;
    }
    gm_session_params sp = gm_session_params_default((int)n_ctx, (int)threads);
    sp.kv_bf16 = kv_bf16;
    if (gm_session_new_ex(m, &sp, &s)) goto fail;

    cli_progress pb = cli_progress_start(ti->kind == GM_KIND_TEXT ? "tokens" : "examples", quiet);
    double t0 = cli_now(), dt;
    if (ti->kind == GM_KIND_TEXT) {
        if (!quiet) fprintf(stderr, "perplexity of %s (%zu bytes), context %ld\n", data, text_len, n_ctx);
        if (gm_eval_perplexity(s, tok, cfg->vocab_size, text, text_len, (int)window, (int)stride, cli_progress_update, &pb, &ppl))
            goto fail;
        dt = cli_now() - t0;
    } else {
        if (!quiet)
            fprintf(stderr, "%s: %d items from %s, %d-shot%s%s, context %ld\n", ti->name, set->n, data, set->shots,
                    set->fewshot_source ? " from " : "", set->fewshot_source ? set->fewshot_source : "", n_ctx);
        int32_t stop[3];
        int n_stop = 0;
        stop[n_stop++] = cfg->eos_id;
        int32_t e = gm_tokenizer_eos(tok), eot = gm_tokenizer_piece_id(tok, "<end_of_turn>");
        if (e >= 0 && e != cfg->eos_id) stop[n_stop++] = e;
        if (eot >= 0) stop[n_stop++] = eot;
        gm_eval_run_opts ro;
        memset(&ro, 0, sizeof ro);
        ro.session = s;
        ro.tok = tok;
        ro.vocab = cfg->vocab_size;
        ro.max_gen_toks = (int)max_gen;
        ro.stop_ids = stop;
        ro.n_stop_ids = n_stop;
        ro.python = python[0] ? python : NULL;
        ro.limits = gm_code_limits_default();
        ro.limits.timeout_s = timeout;
        ro.limits.mem_mb = mem_mb;
        ro.limits.allow_network = allow_net;
        ro.progress = cli_progress_update;
        ro.progress_user = &pb;
        ro.samples = samples;
        gm_status st = gm_eval_run(set, &ro, &res);
        dt = cli_now() - t0;
        if (st) {
            if (!quiet && pb.tty) fputc('\n', stderr);
            goto fail;
        }
    }

    /* table */
    long n_items = ti->kind == GM_KIND_TEXT ? ppl.n_tokens : res.n;
    table_header();
    if (ti->kind == GM_KIND_TEXT) {
        table_row(ti->name, ppl.n_tokens, 0, "token_perplexity", ppl.ppl, ppl.ppl_se);
        table_row(ti->name, ppl.n_tokens, 0, "byte_perplexity", ppl.byte_ppl, ppl.byte_ppl * ppl.bpb_se * log(2.0));
        table_row(ti->name, ppl.n_tokens, 0, "bits_per_byte", ppl.bits_per_byte, ppl.bpb_se);
        if (ppl.n_words)
            table_row(ti->name, ppl.n_tokens, 0, "word_perplexity", ppl.word_ppl,
                      ppl.word_ppl * ppl.ppl_se / ppl.ppl * (double)ppl.n_tokens / (double)ppl.n_words);
    } else {
        for (int i = 0; i < res.n_metrics; i++)
            table_row(ti->name, res.n, set->shots, res.metrics[i].name, res.metrics[i].value, res.metrics[i].se);
        for (int g = 0; g < res.n_groups; g++) {
            char name[64];
            snprintf(name, sizeof name, " - %s", res.groups[g].name);
            printf("| %-14.14s | %6ld | %5d | %-28.28s | %8.4f | ± | %8.4f |\n", "", res.groups[g].acc.n, set->shots,
                   name, gm_stat_mean(&res.groups[g].acc), gm_stat_stderr(&res.groups[g].acc));
        }
    }
    fflush(stdout);
    if (!quiet) {
        if (ti->kind == GM_KIND_TEXT)
            fprintf(stderr, "%ld tokens (%ld windows) in %.2f s: %.1f tokens/s\n", ppl.n_tokens, ppl.n_windows, dt,
                    dt > 0 ? (double)ppl.tokens_evaluated / dt : 0.0);
        else
            fprintf(stderr,
                    "%ld examples in %.2f s: %.2f examples/s; %ld tokens evaluated, %ld more saved by reusing the "
                    "shared prompt's cache%s\n",
                    res.n, dt, dt > 0 ? (double)res.n / dt : 0.0, res.stats.tokens_evaluated, res.stats.tokens_reused,
                    res.truncated ? " (some prompts cut on the left to fit the context)" : "");
        if (ti->kind == GM_KIND_CODE)
            fprintf(stderr, "programs: %ld passed, %ld failed, %ld timed out, %ld out of memory, %ld killed%s\n",
                    res.code_outcomes[GM_CODE_PASSED], res.code_outcomes[GM_CODE_FAILED],
                    res.code_outcomes[GM_CODE_TIMEOUT], res.code_outcomes[GM_CODE_MEMORY],
                    res.code_outcomes[GM_CODE_KILLED], res.sandbox_net ? "" : " (WARNING: network not isolated)");
    }

    if (out_path) {
        FILE *f = fopen(out_path, "w");
        if (!f) {
            fprintf(stderr, "gemma eval: error: cannot write %s\n", out_path);
            goto out;
        }
        fputs("{\n  \"task\": ", f);
        gm_json_write_str(f, ti->name);
        fputs(",\n  \"model\": ", f);
        gm_json_write_str(f, model);
        fputs(",\n  \"data\": ", f);
        gm_json_write_str(f, data);
        fprintf(f, ",\n  \"n\": %ld", n_items);
        fputs(",\n  \"prompt_format\": ", f);
        gm_json_write_str(f, ti->format);
        fputs(",\n  \"metrics\": {", f);
        if (ti->kind == GM_KIND_TEXT) {
            const char *names[4] = {"token_perplexity", "byte_perplexity", "bits_per_byte", "word_perplexity"};
            double vals[4] = {ppl.ppl, ppl.byte_ppl, ppl.bits_per_byte, ppl.word_ppl};
            double ses[4] = {ppl.ppl_se, ppl.byte_ppl * ppl.bpb_se * log(2.0), ppl.bpb_se,
                             ppl.n_words ? ppl.word_ppl * ppl.ppl_se / ppl.ppl * (double)ppl.n_tokens / (double)ppl.n_words : 0};
            for (int i = 0; i < 4; i++) {
                fprintf(f, "%s\n    \"%s\": {\"value\": ", i ? "," : "", names[i]);
                json_num(f, vals[i]);
                fputs(", \"stderr\": ", f);
                json_num(f, ses[i]);
                fputc('}', f);
            }
            fprintf(f, "\n  },\n  \"tokens\": %ld,\n  \"bytes\": %ld,\n  \"words\": %ld,\n  \"windows\": %ld,\n  \"nll\": ",
                    ppl.n_tokens, ppl.n_bytes, ppl.n_words, ppl.n_windows);
            json_num(f, ppl.nll);
            long win = window && window < n_ctx ? window : n_ctx, str = stride ? stride : (win - 1) / 2;
            if (str > win - 1) str = win - 1;
            if (str < 1) str = 1;
            fprintf(f, ",\n  \"window\": %ld,\n  \"stride\": %ld", win, str);
            fprintf(f, ",\n  \"tokens_evaluated\": %ld", ppl.tokens_evaluated);
        } else {
            for (int i = 0; i < res.n_metrics; i++) {
                fprintf(f, "%s\n    ", i ? "," : "");
                gm_json_write_str(f, res.metrics[i].name);
                fputs(": {\"value\": ", f);
                json_num(f, res.metrics[i].value);
                fputs(", \"stderr\": ", f);
                json_num(f, res.metrics[i].se);
                fputc('}', f);
            }
            fputs("\n  }", f);
            if (res.n_groups) {
                fputs(",\n  \"groups\": {", f);
                for (int g = 0; g < res.n_groups; g++) {
                    fprintf(f, "%s\n    ", g ? "," : "");
                    gm_json_write_str(f, res.groups[g].name);
                    fprintf(f, ": {\"n\": %ld, \"acc\": ", res.groups[g].acc.n);
                    json_num(f, gm_stat_mean(&res.groups[g].acc));
                    fputs(", \"stderr\": ", f);
                    json_num(f, gm_stat_stderr(&res.groups[g].acc));
                    fputc('}', f);
                }
                fputs("\n  }", f);
            }
            fprintf(f, ",\n  \"shots\": %d,\n  \"fewshot_source\": ", set->shots);
            json_opt_str(f, set->fewshot_source);
            fprintf(f, ",\n  \"limit\": %ld", limit);
            if (ti->kind == GM_KIND_CODE)
                fprintf(f,
                        ",\n  \"programs\": {\"passed\": %ld, \"failed\": %ld, \"timeout\": %ld, \"memory\": %ld, "
                        "\"killed\": %ld},\n  \"sandbox\": {\"python\": ",
                        res.code_outcomes[0], res.code_outcomes[1], res.code_outcomes[2], res.code_outcomes[3],
                        res.code_outcomes[4]);
            if (ti->kind == GM_KIND_CODE) {
                gm_json_write_str(f, python);
                fprintf(f,
                        ", \"timeout_s\": %g, \"mem_mb\": %ld, \"network_isolated\": %s, \"pid_namespace\": %s, "
                        "\"readonly_fs\": %s, \"nproc_limit\": %s}",
                        timeout, mem_mb, res.sandbox_net ? "true" : "false", res.sandbox_pid ? "true" : "false",
                        res.sandbox_fs ? "true" : "false", res.sandbox_nproc ? "true" : "false");
            }
            if (ti->kind != GM_KIND_MC) fprintf(f, ",\n  \"generated_tokens\": %ld", res.generated_tokens);
            fprintf(f, ",\n  \"truncated_prompts\": %ld,\n  \"tokens_evaluated\": %ld,\n  \"tokens_reused\": %ld,"
                       "\n  \"rewinds_refused\": %ld",
                    res.truncated, res.stats.tokens_evaluated, res.stats.tokens_reused, res.stats.rewinds_refused);
        }
        fprintf(f, ",\n  \"context\": %ld,\n  \"threads\": %ld,\n  \"seconds\": ", n_ctx, threads);
        json_num(f, dt);
        fprintf(f, ",\n  \"%s_per_second\": ", ti->kind == GM_KIND_TEXT ? "tokens" : "examples");
        json_num(f, dt > 0 ? (double)(ti->kind == GM_KIND_TEXT ? ppl.tokens_evaluated : res.n) / dt : 0.0);
        fputs("\n}\n", f);
        if (fclose(f) != 0) {
            fprintf(stderr, "gemma eval: error: cannot write %s\n", out_path);
            goto out;
        }
    }
    rc = CLI_OK;
    goto out;
fail:
    rc = cli_fail(C);
out:
    if (samples) fclose(samples);
    gm_eval_result_free(&res);
    free(text);
    gm_eval_set_free(set);
    gm_session_free(s);
    gm_tokenizer_free(tok);
    gm_model_free(m);
    return rc;
}
