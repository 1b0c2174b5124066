/* Sandboxed execution of model-written Python (see codeexec.h). The child makes itself a session leader,
 * enters private user/mount/network/PID namespaces where the kernel allows it (Linux, unprivileged user
 * namespaces or root), remounts everything read-only except its temporary directory, sets rlimits,
 * drops privileges and execs python3 -I -B. The parent kills the whole process group at the timeout;
 * in a PID namespace, killing its init (the interpreter) also takes every descendant with it. */
#include "eval/codeexec.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef __linux__
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#endif

#include "base/error.h"

gm_code_limits gm_code_limits_default(void) {
    gm_code_limits l = {5.0, 1024, 16, 16, 0};
    return l;
}

const char *gm_code_outcome_name(gm_code_outcome o) {
    switch (o) {
    case GM_CODE_PASSED: return "passed";
    case GM_CODE_FAILED: return "failed";
    case GM_CODE_TIMEOUT: return "timeout";
    case GM_CODE_MEMORY: return "memory";
    case GM_CODE_KILLED: return "killed";
    }
    return "?";
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {}
}

/* ---- finding the interpreter ------------------------------------------------------------------- */

static int find_in_path(const char *name, char *out, size_t cap) {
    if (strchr(name, '/')) {
        if (access(name, X_OK) != 0) return 0;
        snprintf(out, cap, "%s", name);
        return strlen(name) < cap;
    }
    const char *path = getenv("PATH");
    if (!path || !*path) path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        const char *e = strchr(path, ':');
        size_t n = e ? (size_t)(e - path) : strlen(path);
        if (n > 0 && (size_t)snprintf(out, cap, "%.*s/%s", (int)n, path, name) < cap && access(out, X_OK) == 0) return 1;
        path += n;
        if (*path == ':') path++;
    }
    return 0;
}

gm_status gm_code_find_python(const char *name, char *out, size_t cap) {
    char exe[4096];
    if (!name || !*name) name = "python3";
    if (!find_in_path(name, exe, sizeof exe))
        return gm_fail(GM_ERR_IO,
                       "python interpreter '%s' not found%s: HumanEval runs the model's code against its tests with "
                       "python3; install python3 or pass --python PATH",
                       name, strchr(name, '/') ? "" : " in PATH");
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return gm_fail(GM_ERR_IO, "pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]), close(fds[1]);
        return gm_fail(GM_ERR_IO, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        dup2(fds[1], 1);
        int dn = open("/dev/null", O_RDWR);
        if (dn >= 0) dup2(dn, 0), dup2(dn, 2);
        char *argv[] = {exe, "-I", "-c", "import sys; sys.stdout.write(sys.executable or '')", NULL};
        execv(exe, argv);
        _exit(127);
    }
    close(fds[1]);
    char buf[4096];
    size_t n = 0;
    double t0 = now_s();
    int fl = fcntl(fds[0], F_GETFL);
    fcntl(fds[0], F_SETFL, fl | O_NONBLOCK);
    int status = 0, done = 0;
    while (!done) {
        ssize_t r = read(fds[0], buf + n, sizeof buf - 1 - n);
        if (r > 0) {
            n += (size_t)r;
            if (n == sizeof buf - 1) break;
            continue;
        }
        if (r == 0) break;
        if (errno != EAGAIN && errno != EINTR) break;
        if (now_s() - t0 > 30) {
            kill(pid, SIGKILL);
            break;
        }
        sleep_s(0.002);
    }
    close(fds[0]);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    buf[n] = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || n == 0)
        return gm_fail(GM_ERR_IO, "'%s' did not run as a Python interpreter (%s %d); install python3 or pass --python PATH",
                       exe, WIFEXITED(status) ? "exit status" : "signal",
                       WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    if (n + 1 > cap) return gm_fail(GM_ERR_ARG, "python path too long");
    memcpy(out, buf, n + 1);
    return GM_OK;
}

/* ---- the child --------------------------------------------------------------------------------- */

enum { MSG_READY = 1, MSG_FAIL = 2, MSG_NO_NET = 3 };

typedef struct {
    int kind;
    int err;        /* errno for MSG_FAIL */
    int step;       /* which step failed */
    int net, pid, fs, nproc;
} child_msg;

static const char *STEPS[] = {"?", "open /dev/null", "open stderr file", "chdir", "setrlimit", "fork", "exec",
                              "dropping root to nobody"};

static void send_msg(int fd, const child_msg *m) {
    ssize_t r;
    do r = write(fd, m, sizeof *m);
    while (r < 0 && errno == EINTR);
}

static void child_fail(int fd, int step, int err) {
    child_msg m = {MSG_FAIL, err, step, 0, 0, 0, 0};
    send_msg(fd, &m);
    _exit(127);
}

#ifdef __linux__
static int write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    size_t n = strlen(text);
    int ok = write(fd, text, n) == (ssize_t)n;
    close(fd);
    return ok;
}

struct gm_mount_attr {
    uint64_t attr_set, attr_clr, propagation, userns_fd;
};
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#define GM_MOUNT_ATTR_RDONLY 0x1

static int set_rdonly(const char *path, int recursive, int rdonly) {
    struct gm_mount_attr a = {0, 0, 0, 0};
    if (rdonly) a.attr_set = GM_MOUNT_ATTR_RDONLY;
    else a.attr_clr = GM_MOUNT_ATTR_RDONLY;
    return syscall(SYS_mount_setattr, AT_FDCWD, path, recursive ? AT_RECURSIVE : 0, &a, sizeof a) == 0;
}

/* Enter the namespaces the kernel grants; report which. */
static void isolate(const char *dir, uid_t uid, gid_t gid, child_msg *m) {
    int userns = 0, got = 0;
    const int NS = CLONE_NEWNS, NET = CLONE_NEWNET, PID = CLONE_NEWPID;
    if (unshare(CLONE_NEWUSER | NS | NET | PID) == 0) userns = 1, got = NS | NET | PID;
    else if (unshare(NS | NET | PID) == 0) got = NS | NET | PID; /* privileged, no user namespaces */
    else if (unshare(CLONE_NEWUSER | NET) == 0) userns = 1, got = NET;
    else if (unshare(NET) == 0) got = NET;
    if (userns) {
        /* Map our uid to a non-root id inside, so exec drops the namespace's capabilities (the
         * interpreter cannot undo the read-only mounts) while files stay ours. */
        char map[64];
        unsigned inner = uid ? (unsigned)uid : 1000u, ginner = gid ? (unsigned)gid : 1000u;
        write_file("/proc/self/setgroups", "deny");
        snprintf(map, sizeof map, "%u %u 1\n", inner, (unsigned)uid);
        write_file("/proc/self/uid_map", map);
        snprintf(map, sizeof map, "%u %u 1\n", ginner, (unsigned)gid);
        write_file("/proc/self/gid_map", map);
    }
    m->net = (got & NET) != 0;
    m->pid = (got & PID) != 0;
    if (got & NS) {
        int ok = mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0;
        ok = ok && mount(dir, dir, NULL, MS_BIND | MS_REC, NULL) == 0;
        ok = ok && set_rdonly("/", 1, 1) && set_rdonly(dir, 0, 0);
        m->fs = ok;
    }
}
#endif

#define NOBODY 65534

static void run_child(int fd, const char *dir, const char *python, const gm_code_limits *lim, uid_t uid, gid_t gid,
                      int drop_root) {
    child_msg m = {MSG_READY, 0, 0, 0, 0, 0, 0};
    setsid();
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    signal(SIGPIPE, SIG_DFL);
    int dn = open("/dev/null", O_RDWR);
    if (dn < 0) child_fail(fd, 1, errno);
    char errpath[1100];
    snprintf(errpath, sizeof errpath, "%s/stderr.txt", dir);
    int ef = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (ef < 0) child_fail(fd, 2, errno);
    dup2(dn, 0), dup2(dn, 1), dup2(ef, 2);
    close(dn), close(ef);
    if (uid == 0 && drop_root) {
        /* Root is exempt from RLIMIT_NPROC and could write anywhere the mounts allow: run as nobody. */
        if (chown(dir, NOBODY, NOBODY) != 0 || setgroups(0, NULL) != 0 || setresgid(NOBODY, NOBODY, NOBODY) != 0 ||
            setresuid(NOBODY, NOBODY, NOBODY) != 0)
            child_fail(fd, 7, errno);
        uid = NOBODY, gid = NOBODY;
    }
    m.nproc = uid != 0; /* RLIMIT_NPROC never binds root */
#ifdef __linux__
    isolate(dir, uid, gid, &m);
#else
    (void)gid;
#endif
    if (!m.net && !lim->allow_network) {
        m.kind = MSG_NO_NET;
        send_msg(fd, &m);
        _exit(127);
    }
    if (chdir(dir) != 0) child_fail(fd, 3, errno);
    struct rlimit r;
    rlim_t cpu = (rlim_t)lim->timeout_s + 2;
    r.rlim_cur = cpu, r.rlim_max = cpu + 1;
    int ok = setrlimit(RLIMIT_CPU, &r) == 0;
    r.rlim_cur = r.rlim_max = (rlim_t)lim->mem_mb << 20;
    ok = ok && setrlimit(RLIMIT_AS, &r) == 0;
    r.rlim_cur = r.rlim_max = (rlim_t)lim->file_mb << 20;
    ok = ok && setrlimit(RLIMIT_FSIZE, &r) == 0;
    r.rlim_cur = r.rlim_max = 0;
    ok = ok && setrlimit(RLIMIT_CORE, &r) == 0;
    r.rlim_cur = r.rlim_max = 64;
    ok = ok && setrlimit(RLIMIT_NOFILE, &r) == 0;
    if (!ok) child_fail(fd, 4, errno);
#ifdef __linux__
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    if (m.pid) {
        /* The first child in the new PID namespace is its init: when it dies, so does everything it
         * started. This process only relays its exit status. */
        pid_t c = fork();
        if (c < 0) child_fail(fd, 5, errno);
        if (c > 0) {
            close(fd);
            int status;
            while (waitpid(c, &status, 0) < 0 && errno == EINTR) {}
            if (WIFEXITED(status)) _exit(WEXITSTATUS(status));
            signal(WTERMSIG(status), SIG_DFL);
            raise(WTERMSIG(status));
            _exit(128 + WTERMSIG(status));
        }
    }
#endif
    r.rlim_cur = r.rlim_max = (rlim_t)(lim->max_procs > 0 ? lim->max_procs : 1);
    if (setrlimit(RLIMIT_NPROC, &r) != 0) child_fail(fd, 4, errno);
    send_msg(fd, &m);
    char home[1100], tmp[1100];
    snprintf(home, sizeof home, "HOME=%s", dir);
    snprintf(tmp, sizeof tmp, "TMPDIR=%s", dir);
    char *envp[] = {"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", home, tmp, NULL};
    char *argv[] = {(char *)python, "-I", "-B", "program.py", NULL};
    execve(python, argv, envp);
    child_fail(fd, 6, errno);
}

/* ---- the parent -------------------------------------------------------------------------------- */

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    remove(p);
    return 0;
}

static void read_tail(const char *dir, char *out, size_t cap) {
    out[0] = 0;
    char path[1100];
    snprintf(path, sizeof path, "%s/stderr.txt", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return;
    long want = (long)cap - 1;
    if (fseek(f, 0, SEEK_END) == 0) {
        long size = ftell(f);
        fseek(f, size > want ? size - want : 0, SEEK_SET);
    }
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = 0;
    fclose(f);
}

/* As root, programs run as nobody unless the interpreter turned out not to be reachable for nobody
 * (say, under /root): then as root, with the process limit unenforced (res->nproc_enforced = 0). */
static char g_no_drop[1024]; /* the interpreter nobody could not run */

static gm_status run_once(const char *python, const char *program, const gm_code_limits *lim_in, gm_code_result *res,
                          int drop_root, int *drop_failed);

gm_status gm_code_run(const char *python, const char *program, const gm_code_limits *lim, gm_code_result *res) {
    int drop_failed = 0;
    gm_status st = run_once(python, program, lim, res, getuid() == 0 && strcmp(python, g_no_drop) != 0, &drop_failed);
    if (drop_failed) {
        snprintf(g_no_drop, sizeof g_no_drop, "%s", python);
        gm_clear_error();
        st = run_once(python, program, lim, res, 0, &drop_failed);
    }
    return st;
}

static gm_status run_once(const char *python, const char *program, const gm_code_limits *lim_in, gm_code_result *res,
                          int drop_root, int *drop_failed) {
    memset(res, 0, sizeof *res);
    *drop_failed = 0;
    gm_code_limits lim = lim_in ? *lim_in : gm_code_limits_default();
    if (!(lim.timeout_s > 0) || lim.timeout_s > 86400) return gm_fail(GM_ERR_ARG, "code timeout must be in (0, 86400] s");
    if (lim.mem_mb < 16) lim.mem_mb = 16;
    if (lim.file_mb < 1) lim.file_mb = 1;
    if (access(python, X_OK) != 0)
        return gm_fail(GM_ERR_IO, "cannot run python interpreter '%s': %s (install python3 or pass --python PATH)", python,
                       strerror(errno));
    const char *tmpbase = getenv("TMPDIR");
    if (!tmpbase || !*tmpbase) tmpbase = "/tmp";
    if (strlen(tmpbase) > 900) tmpbase = "/tmp";
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/gemma-code-XXXXXX", tmpbase);
    if (!mkdtemp(dir)) return gm_fail(GM_ERR_IO, "cannot create a temporary directory in %s: %s", tmpbase, strerror(errno));
    gm_status st = GM_OK;
    char prog[1100];
    snprintf(prog, sizeof prog, "%s/program.py", dir);
    FILE *f = fopen(prog, "wb");
    if (!f || fputs(program, f) < 0) st = gm_fail(GM_ERR_IO, "cannot write %s", prog);
    if (f && fclose(f) != 0 && !st) st = gm_fail(GM_ERR_IO, "cannot write %s", prog);
    int fds[2] = {-1, -1};
    if (!st && pipe2(fds, O_CLOEXEC) != 0) st = gm_fail(GM_ERR_IO, "pipe: %s", strerror(errno));
    pid_t pid = -1;
    double t0 = now_s();
    if (!st) {
        uid_t uid = getuid();
        gid_t gid = getgid();
        fflush(NULL);
        pid = fork();
        if (pid < 0) st = gm_fail(GM_ERR_IO, "fork: %s", strerror(errno));
        else if (pid == 0) {
            close(fds[0]);
            run_child(fds[1], dir, python, &lim, uid, gid, drop_root);
            _exit(127);
        }
        close(fds[1]);
    }
    if (!st) {
        /* Messages until EOF: the pipe closes on exec. */
        child_msg m, got = {0, 0, 0, 0, 0, 0, 0};
        ssize_t r;
        size_t have = 0;
        while ((r = read(fds[0], (char *)&m + have, sizeof m - have)) != 0) {
            if (r < 0) {
                if (errno == EINTR) continue;
                break;
            }
            have += (size_t)r;
            if (have == sizeof m) {
                if (got.kind != MSG_FAIL && got.kind != MSG_NO_NET) got = m;
                have = 0;
            }
        }
        close(fds[0]);
        if (got.kind != MSG_READY) {
            int status;
            kill(-pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
            if (got.kind == MSG_NO_NET)
                st = gm_fail(GM_ERR_UNSUPPORTED,
                             "cannot isolate the code sandbox from the network (no network namespace: unprivileged user "
                             "namespaces are disabled here); pass --allow-network to run model-written code anyway");
            else if (drop_root && got.kind == MSG_FAIL && (got.step == 7 || (got.step == 6 && (got.err == EACCES || got.err == EPERM)))) {
                *drop_failed = 1;
                st = gm_fail(GM_ERR_IO, "cannot run python as nobody");
            } else if (got.kind == MSG_FAIL && got.step == 6)
                st = gm_fail(GM_ERR_IO, "cannot run python interpreter '%s': %s (install python3 or pass --python PATH)",
                             python, strerror(got.err));
            else if (got.kind == MSG_FAIL)
                st = gm_fail(GM_ERR_IO, "code sandbox: %s failed: %s", STEPS[got.step >= 0 && got.step < 8 ? got.step : 0],
                             strerror(got.err));
            else st = gm_fail(GM_ERR_IO, "code sandbox: the child exited before running python");
        } else {
            res->net_isolated = got.net;
            res->pid_isolated = got.pid;
            res->fs_readonly = got.fs;
            res->nproc_enforced = got.nproc;
        }
    }
    if (!st) {
        int status = 0, timed_out = 0;
        double deadline = t0 + lim.timeout_s, nap = 0.0005;
        /* Wait without reaping (WNOWAIT): while the zombie exists its pid, and so the process-group id we
         * kill, cannot be reused by an unrelated process. */
        for (;;) {
            siginfo_t si;
            memset(&si, 0, sizeof si);
            int r = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT);
            if (r == 0 && si.si_pid == pid) break;
            if (r < 0 && errno != EINTR) break;
            if (now_s() >= deadline) {
                timed_out = 1;
                break;
            }
            sleep_s(nap);
            if (nap < 0.01) nap *= 1.5;
        }
        kill(-pid, SIGKILL); /* the whole group: on timeout, and stragglers (without a PID namespace) */
        if (timed_out) kill(pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        res->seconds = now_s() - t0;
        read_tail(dir, res->err_tail, sizeof res->err_tail);
        if (WIFEXITED(status)) res->exit_code = WEXITSTATUS(status);
        if (WIFSIGNALED(status)) res->term_signal = WTERMSIG(status);
        int memerr = strstr(res->err_tail, "MemoryError") != NULL;
        if (timed_out) res->outcome = GM_CODE_TIMEOUT;
        else if (WIFEXITED(status) && res->exit_code == 0) res->outcome = GM_CODE_PASSED;
        else if (WIFEXITED(status)) res->outcome = memerr ? GM_CODE_MEMORY : GM_CODE_FAILED;
        else if (res->term_signal == SIGXCPU || res->term_signal == SIGKILL) res->outcome = GM_CODE_TIMEOUT;
        else if (memerr || res->term_signal == SIGSEGV || res->term_signal == SIGBUS) res->outcome = GM_CODE_MEMORY;
        else res->outcome = GM_CODE_KILLED;
    }
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return st;
}
