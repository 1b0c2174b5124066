/* Unit tests for the HumanEval code sandbox (src/eval/codeexec.c): a passing program, a failing one, an
 * infinite loop killed at the time limit, memory hogs stopped by the address-space limit, a fork bomb
 * held by the process limit, no network and a read-only file system where the kernel grants the
 * namespaces, and a clean error for a missing or bogus interpreter. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eval/codeexec.h"
#include "testlib.h"

static gm_code_result run(const char *py, const char *prog, const gm_code_limits *lim, gm_status *st) {
    gm_code_result r;
    *st = gm_code_run(py, prog, lim, &r);
    return r;
}

int main(void) {
    /* A missing interpreter is a clear error, not a crash or a silent failure. */
    char py[4096];
    gm_clear_error();
    gm_status st = gm_code_find_python("/nonexistent/dir/python3", py, sizeof py);
    CHECK(st == GM_ERR_IO);
    CHECKF(strstr(gm_last_error(), "python") && strstr(gm_last_error(), "not found"), "%s", gm_last_error());
    st = gm_code_find_python("no-such-python-interpreter-xyz", py, sizeof py);
    CHECK(st == GM_ERR_IO);
    CHECKF(strstr(gm_last_error(), "not found in PATH"), "%s", gm_last_error());
    if (access("/bin/false", X_OK) == 0) {
        st = gm_code_find_python("/bin/false", py, sizeof py);
        CHECK(st == GM_ERR_IO);
        CHECKF(strstr(gm_last_error(), "did not run as a Python interpreter"), "%s", gm_last_error());
    }
    gm_code_limits lim = gm_code_limits_default();
    gm_code_result r;
    r = run("/nonexistent/dir/python3", "print(1)\n", &lim, &st);
    CHECK(st == GM_ERR_IO);
    CHECKF(strstr(gm_last_error(), "/nonexistent/dir/python3") && strstr(gm_last_error(), "python3"), "%s",
           gm_last_error());

    /* The system interpreter where there is one: as root, programs run as nobody, who may not reach a
     * python under /root (then the process limit cannot be enforced and its check is skipped). */
    if (gm_code_find_python(access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3", py, sizeof py) != GM_OK) {
        printf("SKIP: no python3 here (%s): only the missing-interpreter checks ran\n", gm_last_error());
        TEST_DONE();
    }
    printf("python: %s\n", py);

    /* Passing program; learn which isolation the kernel grants here. */
    const char *pass_prog = "def add(a, b):\n    return a + b\n\n\ndef check(f):\n    assert f(2, 3) == 5\n\n\ncheck(add)\n";
    r = run(py, pass_prog, &lim, &st);
    if (st == GM_ERR_UNSUPPORTED) {
        printf("NOTE: no network namespace here (%s); running the rest with allow_network\n", gm_last_error());
        lim.allow_network = 1;
        r = run(py, pass_prog, &lim, &st);
    }
    CHECK_OK(st);
    CHECKF(r.outcome == GM_CODE_PASSED, "outcome %s exit %d: %s", gm_code_outcome_name(r.outcome), r.exit_code, r.err_tail);
    printf("isolation: network %d, pid namespace %d, read-only fs %d, process limit %d\n", r.net_isolated,
           r.pid_isolated, r.fs_readonly, r.nproc_enforced);
    int net = r.net_isolated, fs = r.fs_readonly, nproc = r.nproc_enforced;

    /* Failing program: the assertion's traceback is kept. */
    r = run(py, "def add(a, b):\n    return a * b\n\n\nassert add(2, 3) == 5\n", &lim, &st);
    CHECK_OK(st);
    CHECKF(r.outcome == GM_CODE_FAILED && r.exit_code == 1, "outcome %s exit %d", gm_code_outcome_name(r.outcome), r.exit_code);
    CHECKF(strstr(r.err_tail, "AssertionError"), "stderr: %s", r.err_tail);
    r = run(py, "def f(:\n", &lim, &st); /* syntax error */
    CHECK_OK(st);
    CHECK(r.outcome == GM_CODE_FAILED);

    /* Infinite loop: killed at the wall-clock limit, promptly. */
    gm_code_limits quick = lim;
    quick.timeout_s = 1.0;
    r = run(py, "while True:\n    pass\n", &quick, &st);
    CHECK_OK(st);
    CHECKF(r.outcome == GM_CODE_TIMEOUT, "outcome %s", gm_code_outcome_name(r.outcome));
    CHECKF(r.seconds >= 0.9 && r.seconds < 3.0, "killed after %.2f s", r.seconds);
    /* A loop that also ignores SIGTERM and sleeps in a child process: the whole group goes. */
    r = run(py, "import os, signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                "if os.fork() == 0:\n    time.sleep(60)\nwhile True:\n    time.sleep(0.01)\n", &quick, &st);
    CHECK_OK(st);
    CHECKF(r.outcome == GM_CODE_TIMEOUT && r.seconds < 3.0, "outcome %s after %.2f s", gm_code_outcome_name(r.outcome), r.seconds);

    /* Memory hogs: one huge allocation, and steady growth, both stopped by the address-space limit. */
    gm_code_limits small = lim;
    small.mem_mb = 256;
    r = run(py, "x = bytearray(8 * 1024 ** 3)\n", &small, &st);
    CHECK_OK(st);
    CHECKF(r.outcome == GM_CODE_MEMORY, "outcome %s: %s", gm_code_outcome_name(r.outcome), r.err_tail);
    r = run(py, "a = []\nwhile True:\n    a.append(bytearray(10 ** 7))\n", &small, &st);
    CHECK_OK(st);
    CHECKF(r.outcome == GM_CODE_MEMORY && r.seconds < 4.0, "outcome %s after %.2f s", gm_code_outcome_name(r.outcome),
           r.seconds);

    /* Output floods go nowhere and do not block the child. */
    r = run(py, "import sys\nfor i in range(200000):\n    print('x' * 50)\nsys.stderr.write('y' * 100000)\n", &lim, &st);
    CHECK_OK(st);
    CHECKF(r.outcome == GM_CODE_PASSED, "outcome %s", gm_code_outcome_name(r.outcome));
    CHECK(strlen(r.err_tail) > 0 && strlen(r.err_tail) < sizeof r.err_tail);

    /* The process limit holds a fork bomb (enforced inside the user namespace, even for root). */
    if (nproc) {
        gm_code_limits procs = lim;
        procs.max_procs = 8;
        r = run(py,
                "import os, sys, time\nn = 0\ntry:\n    for i in range(64):\n        if os.fork() == 0:\n"
                "            time.sleep(30)\n            os._exit(0)\n        n += 1\nexcept OSError:\n"
                "    sys.exit(0 if n < 64 else 2)\nsys.exit(1)\n",
                &procs, &st);
        CHECK_OK(st);
        CHECKF(r.outcome == GM_CODE_PASSED, "fork bomb not held: outcome %s exit %d: %s", gm_code_outcome_name(r.outcome),
               r.exit_code, r.err_tail);
        CHECK(r.seconds < 3.0); /* the sleeping children did not keep it alive */
    } else {
        printf("NOTE: process limit not enforceable here (root without user namespaces)\n");
    }

    /* No network: a private namespace has only a loopback interface. */
    if (net) {
        r = run(py, "import socket, sys\nnames = [n for _, n in socket.if_nameindex()]\nsys.exit(0 if names == ['lo'] else 1)\n",
                &lim, &st);
        CHECK_OK(st);
        CHECKF(r.outcome == GM_CODE_PASSED, "interfaces visible: %s", r.err_tail);
        r = run(py, "import socket, sys\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\nexcept OSError:\n"
                    "    sys.exit(0)\nsys.exit(1)\n", &lim, &st);
        CHECK_OK(st);
        CHECK(r.outcome == GM_CODE_PASSED);
    }

    /* Read-only file system outside the temporary directory, which stays writable. */
    if (fs) {
        char probe[128], prog[512];
        snprintf(probe, sizeof probe, "/tmp/gemma-sandbox-probe-%d", (int)getpid());
        snprintf(prog, sizeof prog,
                 "import sys\nopen('mine.txt', 'w').write('ok')\ntry:\n    open('%s', 'w').write('escaped')\n"
                 "except OSError:\n    sys.exit(0)\nsys.exit(1)\n",
                 probe);
        r = run(py, prog, &lim, &st);
        CHECK_OK(st);
        CHECKF(r.outcome == GM_CODE_PASSED, "outcome %s: %s", gm_code_outcome_name(r.outcome), r.err_tail);
        CHECK(access(probe, F_OK) != 0);
        unlink(probe);
    }
    TEST_DONE();
}
