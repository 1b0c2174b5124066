/* Shared pieces of the `gemma` command-line program: one file per subcommand (cmd_NAME.c defines
 * cmd_NAME), exit codes 0 = ok, 1 = runtime error, 2 = usage error. */
#ifndef GM_CLI_H
#define GM_CLI_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "gemma.h"

enum { CLI_OK = 0, CLI_RUNTIME = 1, CLI_USAGE = 2 };

int cmd_generate(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_pii(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_memorization(int argc, char **argv);
int cmd_sxs(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_sft(int argc, char **argv);
int cmd_reward(int argc, char **argv);
int cmd_rlhf(int argc, char **argv);

/* Print "gemma CMD: message" to stderr and return CLI_USAGE. */
int cli_usage(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Print "gemma CMD: " + gm_last_error() to stderr and return CLI_RUNTIME. */
int cli_fail(const char *cmd);
/* Parse helpers: return 1 on success, 0 if the text is not a valid number in range. */
int cli_parse_int(const char *s, long lo, long hi, long *out);
int cli_parse_float(const char *s, double *out);
/* Parse "2,651,1234" or "[2, 651]" into a malloc'd id array; 0 on syntax error. */
int cli_parse_ids(const char *s, int32_t **ids, size_t *n);
/* Read a whole file ("-" = standard input) into a malloc'd NUL-terminated buffer; GM_ERR_IO naming the
 * file on failure. */
gm_status cli_read_file(const char *path, char **data, size_t *len);
/* Load a model directory, printing progress to stderr unless quiet. */
gm_status cli_load_model(const char *dir, int use_mmap, int quiet, gm_model **m);
/* Load the tokenizer files of a model directory; *tok = NULL (and GM_OK) when it has none. */
gm_status cli_load_tokenizer_opt(const char *dir, gm_tokenizer **tok);
/* Monotonic time in seconds. */
double cli_now(void);
/* Default thread count: the number of online CPUs. */
int cli_default_threads(void);
/* Default threads for one of several MPI ranks on this node: the CPUs split between the ranks that
 * OpenMPI (OMPI_COMM_WORLD_LOCAL_SIZE) or MPICH (MPI_LOCALNRANKS) say share it; at least 1. */
int cli_rank_threads(void);
/* Writes a report to `path` with write(f, arg); on failure prints "gemma CMD: error: cannot write PATH" and
 * returns 0 (1 on success). */
int cli_write_report(const char *cmd, const char *path, void (*write)(FILE *f, const void *arg), const void *arg);

/* A progress report on stderr for long runs: on a terminal a bar redrawn at most every 0.1 s, otherwise a
 * line per tenth of the work; rate in `unit`/s and ETA. cli_progress_update has the signature of the
 * library's progress callbacks (void *user, long done, long total). */
typedef struct cli_progress {
    const char *unit;
    double t0, last;
    int tty, quiet, last_decile;
} cli_progress;
cli_progress cli_progress_start(const char *unit, int quiet);
void cli_progress_update(void *progress, long done, long total);

#endif
