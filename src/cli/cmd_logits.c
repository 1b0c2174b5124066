/* `gemma logits`: float32 little-endian logits for every position of a token sequence, shape [T, vocab],
 * written atomically (temp file + rename) — the file the golden tests compare with the reference. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const char *HELP =
    "usage: gemma logits -m MODEL_DIR --ids 2,651,... --out FILE [-t THREADS] [--mmap]\n"
    "  writes float32 little-endian logits of shape [T, vocab] and prints \"T vocab\"\n";

int cmd_logits(int argc, char **argv) {
    const char *C = "logits", *model = NULL, *ids_arg = NULL, *out = NULL;
    long threads = cli_default_threads();
    int use_mmap = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(HELP, stdout); return CLI_OK; }
        int takes = !strcmp(a, "-m") || !strcmp(a, "--model") || !strcmp(a, "--ids") || !strcmp(a, "--out") ||
                    !strcmp(a, "-o") || !strcmp(a, "-t") || !strcmp(a, "--threads");
        if (takes && !v) return cli_usage(C, "option %s needs a value", a);
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model = v, i++;
        else if (!strcmp(a, "--ids")) ids_arg = v, i++;
        else if (!strcmp(a, "--out") || !strcmp(a, "-o")) out = v, i++;
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!cli_parse_int(v, 1, 256, &threads)) return cli_usage(C, "bad value for %s: '%s'", a, v);
            i++;
        } else if (!strcmp(a, "--mmap")) use_mmap = 1;
        else if (!strcmp(a, "--no-mmap")) use_mmap = 0;
        else return cli_usage(C, "unknown option '%s'", a);
    }
    if (!model || !ids_arg || !out) return cli_usage(C, "-m, --ids and --out are required");
    int32_t *ids;
    size_t n;
    if (!cli_parse_ids(ids_arg, &ids, &n)) return cli_usage(C, "--ids must be a list of non-negative integers");
    int rc = CLI_RUNTIME;
    gm_model *m = NULL;
    gm_session *s = NULL;
    float *logits = NULL;
    char *tmp = NULL;
    FILE *f = NULL;
    if (cli_load_model(model, use_mmap, 1, &m)) goto fail;
    const gm_config *c = gm_model_config(m);
    if ((long)n > c->max_pos) {
        fprintf(stderr, "gemma logits: error: %zu tokens exceed the model's context of %d\n", n, c->max_pos);
        goto out;
    }
    if (gm_session_new(m, (int)n, (int)threads, &s)) goto fail;
    logits = malloc(sizeof(float) * n * (size_t)c->vocab_size);
    if (!logits) {
        fprintf(stderr, "gemma logits: error: out of memory for %zu x %d logits\n", n, c->vocab_size);
        goto out;
    }
    if (gm_session_eval(s, ids, (int)n, logits)) goto fail;
    tmp = malloc(strlen(out) + 16);
    if (!tmp) goto out;
    sprintf(tmp, "%s.tmp", out);
    f = fopen(tmp, "wb");
    if (!f || fwrite(logits, sizeof(float), n * (size_t)c->vocab_size, f) != n * (size_t)c->vocab_size ||
        fclose(f) != 0) {
        fprintf(stderr, "gemma logits: error: %s: cannot write: %s\n", out, strerror(errno));
        f = NULL;
        remove(tmp);
        goto out;
    }
    f = NULL;
    if (rename(tmp, out) != 0) {
        fprintf(stderr, "gemma logits: error: %s: cannot rename into place: %s\n", out, strerror(errno));
        remove(tmp);
        goto out;
    }
    printf("%zu %d\n", n, c->vocab_size);
    rc = CLI_OK;
    goto out;
fail:
    rc = cli_fail(C);
out:
    free(tmp);
    free(logits);
    free(ids);
    gm_session_free(s);
    gm_model_free(m);
    return rc;
}
