/* Run model-written Python against its tests in a sandboxed python3 subprocess: a fresh temporary
 * directory, CPU / address-space / process / file-size limits, a wall-clock timeout that kills the whole
 * process group, and (on Linux, where the kernel allows unprivileged namespaces) no network, a private
 * PID namespace and a read-only view of the file system except the temporary directory. */
#ifndef GM_EVAL_CODEEXEC_H
#define GM_EVAL_CODEEXEC_H

#include <stddef.h>

#include "gemma.h"

typedef struct gm_code_limits {
    double timeout_s;  /* wall clock; the CPU limit is this rounded up + 1 s */
    long mem_mb;       /* address space (RLIMIT_AS) */
    int max_procs;     /* RLIMIT_NPROC: enforced inside the private user namespace (even for root) */
    long file_mb;      /* largest file the program may write (RLIMIT_FSIZE) */
    int allow_network; /* 0: refuse to run unless a private network namespace could be made */
} gm_code_limits;

/* 5 s, 1024 MB, 16 processes, 16 MB files, no network. */
gm_code_limits gm_code_limits_default(void);

typedef enum {
    GM_CODE_PASSED,  /* exit status 0 */
    GM_CODE_FAILED,  /* non-zero exit (an assertion, an exception, a syntax error) */
    GM_CODE_TIMEOUT, /* killed at the wall-clock or CPU limit */
    GM_CODE_MEMORY,  /* MemoryError or killed by the address-space limit */
    GM_CODE_KILLED,  /* ended by another signal */
} gm_code_outcome;

const char *gm_code_outcome_name(gm_code_outcome o);

typedef struct gm_code_result {
    gm_code_outcome outcome;
    int exit_code;       /* when it exited */
    int term_signal;     /* when a signal ended it (0 otherwise) */
    double seconds;      /* wall clock */
    char err_tail[512];  /* the end of its stderr, for diagnostics */
    /* the isolation that was in force */
    int net_isolated, pid_isolated, fs_readonly, nproc_enforced;
} gm_code_result;

/* Find a Python interpreter: `name` is a path or a command looked up in PATH ("python3"). *out receives
 * the real executable (sys.executable, so launcher shims such as pyenv's are resolved once). A missing
 * or broken interpreter is GM_ERR_IO with a message that says so. */
gm_status gm_code_find_python(const char *name, char *out, size_t cap);

/* Run `program` (Python source) with `python` under the limits. Returns GM_OK whenever the program ran,
 * whatever its outcome (see res); an error only when it could not be run (no interpreter, no temporary
 * directory, no network namespace while allow_network is 0). */
gm_status gm_code_run(const char *python, const char *program, const gm_code_limits *lim, gm_code_result *res);

#endif
