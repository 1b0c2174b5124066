/* `gemma`: one program, one subcommand per file. This file only dispatches and holds the shared
 * helpers declared in cli.h. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/file.h"
#include "cli/cli.h"
#include "formats/gguf.h"
#include "tokenizer/vocab.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} COMMANDS[] = {
    {"generate", cmd_generate, "generate text from a prompt (-p TEXT | --ids 2,651,...)"},
    {"chat", cmd_chat, "interactive multi-turn chat on stdin"},
    {"logits", cmd_logits, "write float32 logits for every position of --ids to a file"},
    {"info", cmd_info, "show a model's config, parameters, tensors and tokenizer"},
    {"bench", cmd_bench, "prefill and decode speed and peak memory"},
    {"tokenize", cmd_tokenize, "text to token ids"},
    {"detokenize", cmd_detokenize, "token ids to text"},
    {"convert", cmd_convert, "convert between a Hugging Face directory and GGUF (or write a random GGUF)"},
    {"pii", cmd_pii, "find personal data in text files (--redact, --json)"},
    {"eval", cmd_eval, "benchmark scores (ARC, HellaSwag, MMLU, GSM8K, HumanEval...) and perplexity"},
    {"data", cmd_data, "pretraining data: tokenize into shards, filter, dedup (exact + MinHash), decontaminate"},
    {"memorization", cmd_memorization, "exact and approximate memorization of training documents (--pii)"},
    {"sxs", cmd_sxs, "side-by-side win rate of two systems' responses, rated by a judge model"},
    {"train", cmd_train, "pretrain a model on token shards (checkpoints, exact resume, mpirun for many ranks)"},
    {"sft", cmd_sft, "supervised fine-tuning on chat conversations (loss on the model's turns)"},
    {"reward", cmd_reward, "reward model on preference pairs: train (Bradley-Terry), score"},
    {"rlhf", cmd_rlhf, "RLHF: REINFORCE with a leave-one-out baseline and a KL penalty to the SFT model"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: gemma COMMAND [options]   (gemma COMMAND --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(f, "  %-12s %s\n", COMMANDS[i].name, COMMANDS[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (!strcmp(argv[1], COMMANDS[i].name)) return COMMANDS[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "gemma: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return CLI_USAGE;
}

int cli_usage(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "gemma %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see gemma %s --help)\n", cmd);
    va_end(ap);
    return CLI_USAGE;
}

int cli_fail(const char *cmd) {
    fprintf(stderr, "gemma %s: error: %s\n", cmd, gm_last_error());
    return CLI_RUNTIME;
}

int cli_parse_int(const char *s, long lo, long hi, long *out) {
    if (!s || !*s) return 0;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

int cli_parse_float(const char *s, double *out) {
    if (!s || !*s) return 0;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || v != v) return 0;
    *out = v;
    return 1;
}

int cli_parse_ids(const char *s, int32_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    size_t cap = 16, k = 0;
    int32_t *a = malloc(cap * sizeof *a);
    if (!a) return 0;
    const char *p = s;
    while (*p == ' ' || *p == '[') p++;
    while (*p && *p != ']') {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX) {
            free(a);
            return 0;
        }
        if (k == cap) {
            int32_t *na = realloc(a, (cap *= 2) * sizeof *a);
            if (!na) {
                free(a);
                return 0;
            }
            a = na;
        }
        a[k++] = (int32_t)v;
        p = end;
        while (*p == ' ') p++;
        if (*p == ',') p++;
        else if (*p && *p != ']') {
            free(a);
            return 0;
        }
        while (*p == ' ') p++;
    }
    if (*p == ']') p++;
    while (*p == ' ' || *p == '\n') p++;
    if (*p || k == 0) {
        free(a);
        return 0;
    }
    *ids = a;
    *n = k;
    return 1;
}

gm_status cli_read_file(const char *path, char **data, size_t *len) {
    return strcmp(path, "-") == 0 ? gm_file_read_stream(stdin, "stdin", data, len) : gm_file_read_all(path, data, len);
}

int cli_default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

int cli_rank_threads(void) {
    const char *e = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    if (!e) e = getenv("MPI_LOCALNRANKS");
    int local = e ? atoi(e) : 1;
    int n = cli_default_threads() / (local > 0 ? local : 1);
    return n < 1 ? 1 : n;
}

int cli_write_report(const char *cmd, const char *path, void (*write)(FILE *f, const void *arg), const void *arg) {
    FILE *f = fopen(path, "w");
    if (f) write(f, arg);
    if (!f || fclose(f) != 0) {
        fprintf(stderr, "gemma %s: error: cannot write %s\n", cmd, path);
        return 0;
    }
    return 1;
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- progress bar ------------------------------------------------------------------------------ */

cli_progress cli_progress_start(const char *unit, int quiet) {
    cli_progress p = {unit, cli_now(), 0, isatty(2), quiet, -1};
    return p;
}

static void fmt_eta(double s, char *buf, size_t cap) {
    if (!(s >= 0) || s > 1e7) snprintf(buf, cap, "--:--");
    else if (s >= 3600) snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
}

void cli_progress_update(void *progress, long done, long total) {
    cli_progress *p = progress;
    if (p->quiet) return;
    double t = cli_now(), el = t - p->t0;
    int finished = done >= total;
    double rate = el > 0 ? (double)done / el : 0, eta = rate > 0 ? (double)(total - done) / rate : -1;
    char e[32];
    fmt_eta(eta, e, sizeof e);
    if (p->tty) {
        if (!finished && t - p->last < 0.1) return;
        p->last = t;
        int w = 30, fill = total ? (int)((double)w * (double)done / (double)total) : w;
        char bar[64];
        for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '.';
        bar[w] = 0;
        fprintf(stderr, "\r[%s] %ld/%ld %5.1f%%  %.2f %s/s  ETA %s ", bar, done, total,
                total ? 100.0 * (double)done / (double)total : 100.0, rate, p->unit, e);
        if (finished) fputc('\n', stderr);
    } else {
        int dec = total ? (int)(10 * done / total) : 10;
        if (dec == p->last_decile) return;
        p->last_decile = dec;
        fprintf(stderr, "%ld/%ld (%.0f%%)  %.2f %s/s  ETA %s\n", done, total,
                total ? 100.0 * (double)done / (double)total : 100.0, rate, p->unit, e);
    }
    fflush(stderr);
}

gm_status cli_load_model(const char *dir, int use_mmap, int quiet, gm_model **m) {
    gm_load_options o = gm_load_options_default();
    o.use_mmap = use_mmap;
    o.verbose = !quiet;
    double t0 = cli_now();
    if (!quiet) fprintf(stderr, "loading %s (%s)...\n", dir, use_mmap ? "mmap" : "read into memory");
    gm_status st = gm_model_load(dir, &o, m);
    if (st) return st;
    if (!quiet)
        fprintf(stderr, "loaded %.1f M parameters, %.1f MB of weights in %.2f s\n", (double)gm_model_n_params(*m) / 1e6,
                (double)gm_model_weight_bytes(*m) / 1e6, cli_now() - t0);
    return GM_OK;
}

gm_status cli_load_tokenizer_opt(const char *dir, gm_tokenizer **tok) {
    *tok = NULL;
    if (gm_gguf_is_gguf_file(dir)) { /* a GGUF model carries its tokenizer in tokenizer.ggml.* */
        gm_gguf *g;
        gm_status st = gm_gguf_open(dir, 1, &g);
        if (st) return st;
        if (gm_gguf_has(g, "tokenizer.ggml.tokens")) st = gm_tokenizer_from_gguf(g, tok);
        gm_gguf_close(g);
        return st;
    }
    char *a = gm_path_join(dir, "tokenizer.model"), *b = gm_path_join(dir, "tokenizer.json");
    int any = (a && gm_file_exists(a)) || (b && gm_file_exists(b));
    free(a);
    free(b);
    if (!any) return GM_OK;
    return gm_tokenizer_load_dir(dir, tok);
}
