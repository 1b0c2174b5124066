/* `gemma pii`: find personal data in text files (e-mail, phone, cards, IBANs, national IDs, IPs,
 * credentials) and list it, print it as JSON lines, or print the text redacted. The rules are in
 * src/eval/pii.h; docs/pii.md has the measured precision and recall. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/json.h"
#include "cli/cli.h"
#include "eval/pii.h"

static const char *C = "pii";

static void usage_text(FILE *f) {
    fputs("usage: gemma pii [--redact | --json] [--types T,T...] [--skip-local-ip] FILE...\n"
          "  finds e-mail addresses, phone numbers, payment cards, IBANs, national IDs, IPv4/IPv6 addresses,\n"
          "  private keys and API keys; FILE may be - for standard input. Offsets are bytes.\n"
          "  (default)        one line per finding: FILE:START-END TYPE SEVERITY RULE, then a count per file\n"
          "  --json           one JSON object per finding: file, type, severity, start, end, rule\n"
          "  --redact         print the text with each finding replaced by [TYPE]\n"
          "  --types LIST     only these detectors: EMAIL,PHONE,CARD,IBAN,NATIONAL_ID,IPV4,IPV6,\n"
          "                   PRIVATE_KEY,API_KEY\n"
          "  --skip-local-ip  do not report loopback, private, link-local or unspecified addresses\n"
          "  exit status: 0 done (findings or not), 1 a file could not be read, 2 usage error\n",
          f);
}



/* "EMAIL,IPV4" -> type mask; 0 on an unknown name. */
static uint32_t parse_types(const char *list) {
    uint32_t mask = 0;
    char buf[256];
    if (strlen(list) >= sizeof buf) return 0;
    strcpy(buf, list);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        int t = gm_pii_type_from_name(tok);
        if (t < 0) return 0;
        mask |= 1u << t;
    }
    return mask;
}

enum { MODE_LIST, MODE_JSON, MODE_REDACT };

static int one_file(const char *path, int mode, const gm_pii_options *opt) {
    const char *name = strcmp(path, "-") ? path : "stdin";
    char *data;
    size_t len;
    if (cli_read_file(path, &data, &len)) return cli_fail(C);
    gm_pii_finding *f;
    size_t n;
    if (gm_pii_scan(data, len, opt, &f, &n)) {
        free(data);
        gm_fail_prefix(GM_ERR_NOMEM, "%s: ", name);
        return cli_fail(C);
    }
    int rc = CLI_OK;
    if (mode == MODE_REDACT) {
        char *red;
        size_t rlen;
        if (gm_pii_redact(data, len, f, n, &red, &rlen)) {
            gm_fail_prefix(GM_ERR_NOMEM, "%s: ", name);
            rc = cli_fail(C);
        } else {
            fwrite(red, 1, rlen, stdout);
            free(red);
        }
    } else {
        size_t n_sens = 0;
        for (size_t i = 0; i < n; i++) {
            n_sens += f[i].severity == GM_PII_SENSITIVE;
            if (mode == MODE_JSON) {
                fputs("{\"file\": ", stdout);
                gm_json_write_str(stdout, name);
                printf(", \"type\": \"%s\", \"severity\": \"%s\", \"start\": %zu, \"end\": %zu, \"rule\": \"%s\"}\n",
                       gm_pii_type_name(f[i].type), gm_pii_severity_name(f[i].severity), f[i].start, f[i].end,
                       f[i].rule);
            } else {
                printf("%s:%zu-%zu %s %s %s\n", name, f[i].start, f[i].end, gm_pii_type_name(f[i].type),
                       gm_pii_severity_name(f[i].severity), f[i].rule);
            }
        }
        if (mode == MODE_LIST)
            printf("%s: %zu finding%s (%zu sensitive, %zu personal) in %zu bytes\n", name, n, n == 1 ? "" : "s",
                   n_sens, n - n_sens, len);
    }
    free(f);
    free(data);
    return rc;
}

int cmd_pii(int argc, char **argv) {
    int mode = MODE_LIST, n_files = 0, stdin_used = 0;
    gm_pii_options opt = {0, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage_text(stdout);
            return CLI_OK;
        } else if (!strcmp(a, "--json") || !strcmp(a, "--redact")) {
            int m = a[2] == 'j' ? MODE_JSON : MODE_REDACT;
            if (mode != MODE_LIST && mode != m) return cli_usage(C, "--json and --redact exclude each other");
            mode = m;
        } else if (!strcmp(a, "--types")) {
            if (i + 1 >= argc) return cli_usage(C, "--types needs a value");
            opt.types = parse_types(argv[++i]);
            if (!opt.types) return cli_usage(C, "--types: unknown type in '%s'", argv[i]);
        } else if (!strcmp(a, "--skip-local-ip")) {
            opt.skip_local_ip = 1;
        } else if (!strcmp(a, "--")) {
            n_files += argc - i - 1;
            break;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage(C, "unknown option '%s'", a);
        } else {
            if (!strcmp(a, "-") && stdin_used++) return cli_usage(C, "standard input (-) given twice");
            n_files++;
        }
    }
    if (n_files == 0) return cli_usage(C, "no FILE given (use - for standard input)");
    int rc = CLI_OK, files_only = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!files_only) {
            if (!strcmp(a, "--")) {
                files_only = 1;
                continue;
            }
            if (!strcmp(a, "--types")) {
                i++;
                continue;
            }
            if (a[0] == '-' && a[1]) continue;
        }
        if (one_file(a, mode, &opt) != CLI_OK) rc = CLI_RUNTIME;
    }
    if (fflush(stdout) != 0 && rc == CLI_OK) {
        fprintf(stderr, "gemma %s: error writing the output\n", C);
        rc = CLI_RUNTIME;
    }
    return rc;
}
