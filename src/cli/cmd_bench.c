/* `gemma bench`: prefill (ppN) and decode (tgN) speed in tokens/s with mean ± sd over repetitions, as a
 * llama-bench-style table, plus peak resident memory. Works on a checkpoint or a random preset model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "tensor/membw.h"

static const char *HELP =
    "usage: gemma bench (-m MODEL_DIR | --random PRESET [--dtype bf16|f16|f32]) [options]\n"
    "  -p, --n-prompt LIST  prefill sizes (default 128,512)\n"
    "  -n, --n-gen LIST     decode lengths (default 64,128)\n"
    "  -r, --reps N         repetitions per test (default 3)\n"
    "  -t, --threads LIST   thread counts (default: all cores)\n"
    "  --mmap               map the checkpoint instead of reading it into memory\n"
    "  --kv-ctx LIST        also report KV-cache memory at these context sizes (default 8192,32768)\n"
    "  --json               one JSON object per result line instead of the table\n"
    "  --cache-type T       KV cache f32 (default) or bf16\n"
    "  --no-bw              skip the read-bandwidth probe (decode as a share of bandwidth)\n"
    "presets: gemma-2b, gemma-7b, tiny (exact shapes of the published configs)\n";

static int parse_list(const char *s, long *out, int max) {
    int n = 0;
    const char *p = s;
    while (*p && n < max) {
        char buf[32];
        size_t k = strcspn(p, ",");
        if (k == 0 || k >= sizeof buf) return 0;
        memcpy(buf, p, k);
        buf[k] = 0;
        if (!cli_parse_int(buf, 1, 1 << 20, &out[n])) return 0;
        n++;
        p += k;
        if (*p == ',') p++;
    }
    return *p ? 0 : n;
}

static uint64_t rng_state = 88172645463325252ull;
static int32_t rand_id(int vocab) {
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (int32_t)(rng_state % (uint64_t)vocab);
}

static double probe_in_child(int threads) {
    int fd[2];
    if (pipe(fd) != 0) return 0;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        double bw = gm_read_bandwidth(threads, (size_t)1 << 30, 3);
        ssize_t w = write(fd[1], &bw, sizeof bw);
        _exit(w == (ssize_t)sizeof bw ? 0 : 1);
    }
    close(fd[1]);
    double bw = 0;
    if (pid < 0 || read(fd[0], &bw, sizeof bw) != (ssize_t)sizeof bw) bw = 0;
    close(fd[0]);
    if (pid > 0) waitpid(pid, NULL, 0);
    return bw;
}

int cmd_bench(int argc, char **argv) {
    const char *C = "bench", *model = NULL, *preset = NULL, *dtype = "bf16";
    long pp[16] = {128, 512}, tg[16] = {64, 128}, th[16] = {cli_default_threads()}, reps = 3, kv[16] = {8192, 32768};
    int n_pp = 2, n_tg = 2, n_th = 1, n_kv = 2, use_mmap = 0, json = 0, probe_bw = 1, kv_bf16 = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(HELP, stdout); return CLI_OK; }
        if (!strcmp(a, "--mmap")) { use_mmap = 1; continue; }
        if (!strcmp(a, "--json")) { json = 1; continue; }
        if (!strcmp(a, "--no-bw")) { probe_bw = 0; continue; }
        if (!v) return cli_usage(C, "unknown option or missing value '%s'", a);
        i++;
        int ok = 1;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--random")) preset = v;
        else if (!strcmp(a, "--dtype")) dtype = v;
        else if (!strcmp(a, "--cache-type")) ok = !strcmp(v, "f32") || (kv_bf16 = !strcmp(v, "bf16"));
        else if (!strcmp(a, "-p") || !strcmp(a, "--n-prompt")) ok = (n_pp = parse_list(v, pp, 16)) > 0 || !strcmp(v, "0");
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-gen")) ok = (n_tg = parse_list(v, tg, 16)) > 0 || !strcmp(v, "0");
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) ok = (n_th = parse_list(v, th, 16)) > 0;
        else if (!strcmp(a, "-r") || !strcmp(a, "--reps")) ok = cli_parse_int(v, 1, 1000, &reps);
        else if (!strcmp(a, "--kv-ctx")) ok = (n_kv = parse_list(v, kv, 16)) > 0 || !strcmp(v, "0");
        else return cli_usage(C, "unknown option '%s'", a);
        if (!ok) return cli_usage(C, "bad value for %s: '%s'", a, v);
    }
    if (!model == !preset) return cli_usage(C, "give exactly one of -m MODEL_DIR or --random PRESET");
    /* Probe bandwidth in a child process, so the probe's buffer does not count in our peak RSS. */
    double bw_of[16] = {0};
    for (int i = 0; i < n_th && probe_bw && n_tg > 0; i++) bw_of[i] = probe_in_child((int)th[i]);
    gm_model *m = NULL;
    double t0 = cli_now();
    if (preset) {
        fprintf(stderr, "building random %s model (%s)...\n", preset, dtype);
        if (gm_model_random(preset, dtype, 1234, &m)) return cli_fail(C);
    } else if (cli_load_model(model, use_mmap, 0, &m)) {
        return cli_fail(C);
    }
    const double load_s = cli_now() - t0;
    fprintf(stderr, "ready in %.1f s\n", load_s);
    const gm_config *c = gm_model_config(m);
    long max_len = 1;
    for (int i = 0; i < n_pp; i++) if (pp[i] > max_len) max_len = pp[i];
    for (int i = 0; i < n_tg; i++) if (tg[i] > max_len) max_len = tg[i];
    if (max_len > c->max_pos) {
        gm_model_free(m);
        fprintf(stderr, "gemma bench: error: a test of %ld tokens exceeds the context of %d\n", max_len, c->max_pos);
        return CLI_RUNTIME;
    }
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)max_len);
    if (!ids) { gm_model_free(m); return CLI_RUNTIME; }
    char label[64];
    snprintf(label, sizeof label, "%s %s", preset ? preset : "gemma", preset ? dtype : "");
    if (!json) {
        printf("| %-18s | %9s | %8s | %7s | %7s | %16s |\n", "model", "size", "params", "threads", "test", "t/s");
        printf("| %-18s | %9s | %8s | %7s | %7s | %16s |\n", "------------------", "---------", "--------", "-------",
               "-------", "----------------");
    }
    char notes[16][256];
    int n_notes = 0;
    size_t kv_max = 0; /* the largest KV cache allocated: peak RSS is compared with weights + this */
    int rc = CLI_OK;
    for (int ti = 0; ti < n_th && rc == CLI_OK; ti++) {
        gm_session *s = NULL;
        gm_session_params sp = gm_session_params_default((int)max_len, (int)th[ti]);
        sp.kv_bf16 = kv_bf16;
        if (gm_session_new_ex(m, &sp, &s)) { rc = cli_fail(C); break; }
        if (gm_session_cache_bytes(s) > kv_max) kv_max = gm_session_cache_bytes(s);
        for (int kind = 0; kind < 2 && rc == CLI_OK; kind++) {
            int n_tests = kind == 0 ? n_pp : n_tg;
            for (int k = 0; k < n_tests && rc == CLI_OK; k++) {
                long len = kind == 0 ? pp[k] : tg[k];
                if (kind == 0 && n_pp == 0) break;
                double sum = 0, sum2 = 0;
                for (long r = -1; r < reps; r++) { /* r = -1 is a warm-up run */
                    for (long i = 0; i < len; i++) ids[i] = rand_id(c->vocab_size);
                    gm_session_reset(s);
                    double a = cli_now();
                    gm_status st = GM_OK;
                    if (kind == 0) st = gm_session_eval(s, ids, (int)len, NULL);
                    else for (long i = 0; i < len && !st; i++) st = gm_session_eval(s, &ids[i], 1, NULL);
                    double dt = cli_now() - a;
                    if (st) { rc = cli_fail(C); break; }
                    if (r < 0) continue;
                    double tps = (double)len / dt;
                    sum += tps, sum2 += tps * tps;
                }
                if (rc != CLI_OK) break;
                double mean = sum / (double)reps, var = sum2 / (double)reps - mean * mean, sd = var > 0 ? sqrt(var) : 0.0;
                char test[16];
                snprintf(test, sizeof test, "%s%ld", kind == 0 ? "pp" : "tg", len);
                /* Decode reads every weight once per token, plus the keys and values each layer attends to. */
                double bytes_tok = 0, bw = 0;
                if (kind == 1) {
                    double kv = 0;
                    size_t kvd = (size_t)c->n_kv_heads * (size_t)c->head_dim;
                    for (long p = 0; p < len; p++)
                        for (int l = 0; l < c->n_layers; l++) {
                            long seen = p + 1;
                            if (!c->layer_global[l] && c->sliding_window > 0 && seen > c->sliding_window) seen = c->sliding_window;
                            kv += 2.0 * (kv_bf16 ? 2.0 : 4.0) * (double)kvd * (double)seen;
                        }
                    bytes_tok = (double)gm_model_weight_bytes(m) + kv / (double)len;
                    bw = bw_of[ti];
                }
                if (json) {
                    printf("{\"model\": \"%s\", \"size_bytes\": %llu, \"params\": %llu, \"threads\": %ld, \"test\": \"%s\", "
                           "\"tokens_per_s\": %.4f, \"sd\": %.4f, \"reps\": %ld",
                           label, (unsigned long long)gm_model_weight_bytes(m), (unsigned long long)gm_model_n_params(m),
                           th[ti], test, mean, sd, reps);
                    if (kind == 1) printf(", \"bytes_per_token\": %.0f", bytes_tok);
                    if (bw > 0) printf(", \"read_bandwidth_gbs\": %.2f, \"bandwidth_share\": %.4f", bw, mean * bytes_tok / 1e9 / bw);
                    printf("}\n");
                } else {
                    printf("| %-18s | %6.2f GB | %6.2f B | %7ld | %7s | %7.2f ± %6.2f |\n", label,
                           (double)gm_model_weight_bytes(m) / 1e9, (double)gm_model_n_params(m) / 1e9, th[ti], test, mean, sd);
                    if (kind == 1 && n_notes < 16) {
                        int k = snprintf(notes[n_notes], sizeof notes[0], "%s, %ld threads: %.3f GB read per token, %.1f GB/s",
                                         test, th[ti], bytes_tok / 1e9, mean * bytes_tok / 1e9);
                        if (bw > 0 && k > 0 && (size_t)k < sizeof notes[0])
                            snprintf(notes[n_notes] + k, sizeof notes[0] - (size_t)k,
                                     " = %.1f%% of the measured %.1f GB/s read bandwidth", 100.0 * mean * bytes_tok / 1e9 / bw, bw);
                        n_notes++;
                    }
                }
                fflush(stdout);
            }
        }
        gm_session_free(s);
    }
    for (int i = 0; i < n_notes; i++) printf("%s\n", notes[i]);
    /* KV-cache memory: sliding-window layers keep a ring, so only global layers grow with the context. */
    for (int i = 0; i < n_kv && rc == CLI_OK; i++) {
        size_t kvd = (size_t)c->n_kv_heads * (size_t)c->head_dim;
        double full = 2.0 * 4.0 * (double)c->n_layers * (double)kv[i] * (double)kvd / (1 << 20);
        if (kv[i] > c->max_pos) {
            if (json) {
                printf("{\"kv_cache_tokens\": %ld, \"beyond_context\": %d, \"full_cache_bytes\": %.0f}\n", kv[i], c->max_pos,
                       full * (1 << 20));
                continue;
            }
            printf("KV cache (f32) at %ld tokens: beyond the model's context of %d (a full cache would be %.0f MiB)\n",
                   kv[i], c->max_pos, full);
            continue;
        }
        gm_session *s = NULL;
        gm_session_params sp = gm_session_params_default((int)kv[i], 1);
        sp.kv_bf16 = kv_bf16;
        if (gm_session_new_ex(m, &sp, &s)) { rc = cli_fail(C); break; }
        if (gm_session_cache_bytes(s) > kv_max) kv_max = gm_session_cache_bytes(s);
        if (json)
            printf("{\"kv_cache_tokens\": %ld, \"kv_cache_bytes\": %zu, \"full_cache_bytes\": %.0f}\n", kv[i],
                   gm_session_cache_bytes(s), full * (1 << 20));
        else
            printf("KV cache (%s) at %ld tokens: %.1f MiB (a full f32 cache for every layer would be %.1f MiB)\n",
                   kv_bf16 ? "bf16" : "f32", kv[i],
                   (double)gm_session_cache_bytes(s) / (1 << 20), full);
        gm_session_free(s);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    /* Memory against what a run must hold: the weights (the file less its metadata) and the KV cache. */
    const double rss = (double)ru.ru_maxrss * 1024.0, wbytes = (double)gm_model_weight_bytes(m);
    const char *how = preset ? "built in memory" : use_mmap ? "mmap" : "read into memory";
    if (json) {
        printf("{\"load_s\": %.3f, \"load\": \"%s\"}\n", load_s, how);
        printf("{\"peak_rss_bytes\": %.0f, \"weight_bytes\": %.0f, \"kv_cache_bytes\": %zu, \"rss_ratio\": %.4f}\n", rss,
               wbytes, kv_max, rss / (wbytes + (double)kv_max));
    } else {
        printf("load %.2f s (%s)\n", load_s, how);
        printf("peak RSS %.1f MB = %.3f x (weights %.1f MB + largest KV cache %.1f MB)\n", rss / 1e6,
               rss / (wbytes + (double)kv_max), wbytes / 1e6, (double)kv_max / 1e6);
    }
    free(ids);
    gm_model_free(m);
    return rc;
}
