/* `gemma detokenize`: token ids ("2,651,1234" or "[2, 651]") -> text, written exactly (byte tokens
 * reassembled, control tokens dropped, no newline added) so scripts can compare it with the input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const char *C = "detokenize";

int cmd_detokenize(int argc, char **argv) {
    const char *model = NULL, *tokfile = NULL, *ids_text = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            puts("usage: gemma detokenize (-m MODEL_DIR | --tokenizer FILE) IDS\n"
                 "  IDS like 2,651,1234 or \"[2, 651]\"; prints the text exactly, without a trailing newline");
            return CLI_OK;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && i + 1 < argc) model = argv[++i];
        else if (!strcmp(a, "--tokenizer") && i + 1 < argc) tokfile = argv[++i];
        else if (a[0] == '-' && a[1] && !(a[1] >= '0' && a[1] <= '9'))
            return cli_usage(C, "unknown option or missing value '%s'", a);
        else if (ids_text) return cli_usage(C, "more than one IDS argument (quote it)");
        else ids_text = a;
    }
    if (!!model + !!tokfile != 1) return cli_usage(C, "give exactly one of -m MODEL_DIR or --tokenizer FILE");
    if (!ids_text) return cli_usage(C, "IDS is required");
    int32_t *ids = NULL;
    size_t n = 0;
    const char *p = ids_text;
    while (*p == ' ' || *p == '[' || *p == ']' || *p == '\n') p++;
    if (*p && !cli_parse_ids(ids_text, &ids, &n)) return cli_usage(C, "cannot parse IDS '%s'", ids_text);
    gm_tokenizer *tok;
    if (model ? gm_tokenizer_load_dir(model, &tok) : gm_tokenizer_load(tokfile, &tok)) {
        free(ids);
        return cli_fail(C);
    }
    char *text;
    size_t len;
    int rc = CLI_OK;
    if (gm_tokenizer_decode(tok, ids, n, &text, &len)) {
        rc = cli_fail(C);
    } else {
        if (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0) {
            fprintf(stderr, "gemma %s: error writing the output\n", C);
            rc = CLI_RUNTIME;
        }
        free(text);
    }
    free(ids);
    gm_tokenizer_free(tok);
    return rc;
}
