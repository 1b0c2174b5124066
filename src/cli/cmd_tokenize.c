/* `gemma tokenize`: text -> token ids as a JSON array, for one text, a file, or a JSONL file of
 * {"text": ...} lines (one array per line, so thousands of strings need one process). With
 * --roundtrip-check it instead checks decode(encode(s)) == s for every input and reports failures. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/json.h"
#include "cli/cli.h"

static const char *C = "tokenize";

static void usage_text(FILE *f) {
    fputs("usage: gemma tokenize (-m MODEL_DIR | --tokenizer FILE) [--no-bos] [--special] [--roundtrip-check]\n"
          "                      (TEXT | -f FILE | --jsonl FILE)\n"
          "  prints the ids as a JSON array; --jsonl reads {\"text\": ...} per line and prints one array per line\n"
          "  --no-bos            do not prepend <bos>\n"
          "  --special           text such as \"<start_of_turn>\" or \"<bos>\" becomes its control id\n"
          "  --roundtrip-check   print nothing per input; check that detokenizing gives the text back\n"
          "                      (a literal U+2581 comes back as a space, as in SentencePiece)\n"
          "  FILE may be - for standard input\n",
          f);
}

typedef struct {
    const gm_tokenizer *tok;
    int flags;
    int roundtrip;
    size_t n_ok, n_bad;
} run_ctx;

/* Is `back` the text with every U+2581 turned into a space? SentencePiece escapes ' ' as U+2581, so a
 * literal U+2581 in the input comes back as a space; everything else must come back byte for byte. */
static int same_modulo_ws(const char *text, size_t len, const char *back, size_t blen) {
    size_t i = 0, j = 0;
    while (i < len && j < blen) {
        if (len - i >= 3 && memcmp(text + i, "\xE2\x96\x81", 3) == 0 && back[j] == ' ') {
            i += 3;
            j++;
        } else if (text[i] == back[j]) {
            i++;
            j++;
        } else {
            return 0;
        }
    }
    return i == len && j == blen;
}

/* Encode one text and print its ids (or check the round trip). `where` names the input for messages. */
static int one(run_ctx *c, const char *text, size_t len, const char *where) {
    int32_t *ids;
    size_t n;
    if (gm_tokenizer_encode(c->tok, text, len, c->flags, &ids, &n)) {
        fprintf(stderr, "gemma %s: %s: %s\n", C, where, gm_last_error());
        return CLI_RUNTIME;
    }
    if (c->roundtrip) {
        char *back;
        size_t blen;
        if (gm_tokenizer_decode(c->tok, ids, n, &back, &blen)) {
            free(ids);
            fprintf(stderr, "gemma %s: %s: %s\n", C, where, gm_last_error());
            return CLI_RUNTIME;
        }
        if (same_modulo_ws(text, len, back, blen)) {
            c->n_ok++;
        } else {
            if (c->n_bad < 10)
                fprintf(stderr, "gemma %s: %s: round trip differs: \"%.*s\" -> \"%.*s\"\n", C, where,
                        (int)(len > 80 ? 80 : len), text, (int)(blen > 80 ? 80 : blen), back);
            c->n_bad++;
        }
        free(back);
    } else {
        putchar('[');
        for (size_t i = 0; i < n; i++) printf(i ? ", %ld" : "%ld", (long)ids[i]);
        fputs("]\n", stdout);
    }
    free(ids);
    return CLI_OK;
}

static int run_jsonl(run_ctx *c, const char *path) {
    char *data;
    size_t len;
    if (cli_read_file(path, &data, &len)) return cli_fail(C);
    int rc = CLI_OK;
    size_t line = 0;
    for (size_t i = 0; i < len && rc == CLI_OK;) {
        size_t e = i;
        while (e < len && data[e] != '\n') e++;
        line++;
        size_t b = i;
        i = e + 1;
        while (b < e && (data[b] == ' ' || data[b] == '\t' || data[b] == '\r')) b++;
        if (b == e) continue; /* blank line */
        char where[64 + 4096];
        snprintf(where, sizeof where, "%s line %zu", strcmp(path, "-") ? path : "stdin", line);
        gm_json_doc *doc;
        if (gm_json_parse(data + b, e - b, where, &doc)) {
            rc = cli_fail(C);
            break;
        }
        const gm_json *t = gm_json_get(gm_json_root(doc), "text");
        if (!t || t->type != GM_JSON_STRING) {
            fprintf(stderr, "gemma %s: %s: expected an object with a \"text\" string\n", C, where);
            rc = CLI_RUNTIME;
        } else {
            rc = one(c, t->str, t->len, where);
        }
        gm_json_free(doc);
    }
    free(data);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *tokfile = NULL, *file = NULL, *jsonl = NULL, *text = NULL;
    run_ctx c = {NULL, GM_TOK_ADD_BOS, 0, 0, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage_text(stdout);
            return CLI_OK;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && i + 1 < argc) model = argv[++i];
        else if (!strcmp(a, "--tokenizer") && i + 1 < argc) tokfile = argv[++i];
        else if (!strcmp(a, "-f") && i + 1 < argc) file = argv[++i];
        else if (!strcmp(a, "--jsonl") && i + 1 < argc) jsonl = argv[++i];
        else if (!strcmp(a, "--no-bos")) c.flags &= ~GM_TOK_ADD_BOS;
        else if (!strcmp(a, "--special")) c.flags |= GM_TOK_PARSE_SPECIAL;
        else if (!strcmp(a, "--roundtrip-check")) c.roundtrip = 1;
        else if (!strcmp(a, "--")) {
            if (i + 2 != argc || text) return cli_usage(C, "expected one TEXT after --");
            text = argv[++i];
        } else if (a[0] == '-' && a[1]) return cli_usage(C, "unknown option or missing value '%s'", a);
        else if (text) return cli_usage(C, "more than one TEXT given (quote it)");
        else text = a;
    }
    if (!!model + !!tokfile != 1) return cli_usage(C, "give exactly one of -m MODEL_DIR or --tokenizer FILE");
    if (!!text + !!file + !!jsonl != 1) return cli_usage(C, "give exactly one of TEXT, -f FILE or --jsonl FILE");
    gm_tokenizer *tok;
    if (model ? gm_tokenizer_load_dir(model, &tok) : gm_tokenizer_load(tokfile, &tok)) return cli_fail(C);
    c.tok = tok;
    int rc;
    if (jsonl) {
        rc = run_jsonl(&c, jsonl);
    } else if (file) {
        char *data;
        size_t len;
        if (cli_read_file(file, &data, &len)) {
            rc = cli_fail(C);
        } else {
            rc = one(&c, data, len, strcmp(file, "-") ? file : "stdin");
            free(data);
        }
    } else {
        rc = one(&c, text, strlen(text), "TEXT");
    }
    if (rc == CLI_OK && c.roundtrip) {
        printf("roundtrip: %zu ok, %zu differ\n", c.n_ok, c.n_bad);
        if (c.n_bad) rc = CLI_RUNTIME;
    }
    if (fflush(stdout) != 0 && rc == CLI_OK) {
        fprintf(stderr, "gemma %s: error writing the output\n", C);
        rc = CLI_RUNTIME;
    }
    gm_tokenizer_free(tok);
    return rc;
}
