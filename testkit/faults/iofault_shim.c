/*
 * iofault_shim: an LD_PRELOAD library that makes write-family calls and fsync/fdatasync fail
 * (or write short) for ONE file, so a store meets EIO/ENOSPC exactly where a test wants it.
 *
 * Built at test time by testkit.faults.ioshim (gcc -shared -fPIC -O2 ... -ldl). Configured by
 * environment variables read once per process:
 *   TESTKIT_IOFAULT_PATH         substring of the file path to hit (required, else the shim is inert)
 *   TESTKIT_IOFAULT_OPS          comma list of: write,pwrite,writev,fsync,fdatasync
 *   TESTKIT_IOFAULT_ERRNO        errno number to fail with (default EIO)
 *   TESTKIT_IOFAULT_MODE         "error" (fail the call) or "short" (write about half, no error)
 *   TESTKIT_IOFAULT_AFTER_CALLS  let this many matching calls OF EACH OP through first (default 0): every op
 *                                has its own counter, so fsync of a new file and fdatasync of a group are
 *                                aimed at separately
 *   TESTKIT_IOFAULT_AFTER_BYTES  let this many bytes of matching writes through first; the write that
 *                                crosses the boundary is cut short at it, like a disk filling up (-1: off)
 *   TESTKIT_IOFAULT_TIMES        inject at most this many times, then pass through (0: unlimited)
 *   TESTKIT_IOFAULT_LOG          file that gets one line per injection: the proof the fault happened
 *   TESTKIT_IOFAULT_CALLS_LOG    file that gets one line per process at its normal exit: the matching calls of
 *                                each op and the bytes of matching writes it saw, so that a test can tell "the
 *                                store never made the call the fault waits for" from "the shim did not inject"
 *
 * The path is learned from /proc/self/fd/N at each call rather than by wrapping open(): that also
 * covers descriptors from fopen, dup, openat2, inheritance, and costs one readlink per call.
 * Counters are per process and per op. Only libc entry points are seen (not raw syscalls, not io_uring).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum op { OP_WRITE = 1, OP_PWRITE = 2, OP_WRITEV = 4, OP_FSYNC = 8, OP_FDATASYNC = 16 };
static const char *const op_names[] = {"write", "pwrite", "writev", "fsync", "fdatasync"};

static struct {
    char path[PATH_MAX];
    int enabled, ops, err, short_mode, log_fd;
    char calls_log[PATH_MAX];
    long long after_calls, after_bytes, times;
} cfg;

static long long matched_calls[5], matched_bytes, injected;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);

static long long env_ll(const char *name, long long fallback) {
    const char *v = getenv(name);
    return (v && *v) ? strtoll(v, NULL, 10) : fallback;
}

static void init(void) {
    real_write = dlsym(RTLD_NEXT, "write");
    real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
    real_writev = dlsym(RTLD_NEXT, "writev");
    real_fsync = dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");

    const char *path = getenv("TESTKIT_IOFAULT_PATH");
    if (!path || !*path) return;
    strncpy(cfg.path, path, sizeof cfg.path - 1);
    const char *ops = getenv("TESTKIT_IOFAULT_OPS");
    for (unsigned i = 0; ops && i < sizeof op_names / sizeof *op_names; i++) {
        const char *hit = ops;
        size_t n = strlen(op_names[i]);
        while ((hit = strstr(hit, op_names[i])) != NULL) {
            int starts = hit == ops || hit[-1] == ',';
            int ends = hit[n] == '\0' || hit[n] == ',';
            if (starts && ends) cfg.ops |= 1 << i;
            hit += n;
        }
    }
    cfg.err = (int)env_ll("TESTKIT_IOFAULT_ERRNO", EIO);
    const char *mode = getenv("TESTKIT_IOFAULT_MODE");
    cfg.short_mode = mode && strcmp(mode, "short") == 0;
    cfg.after_calls = env_ll("TESTKIT_IOFAULT_AFTER_CALLS", 0);
    cfg.after_bytes = env_ll("TESTKIT_IOFAULT_AFTER_BYTES", -1);
    cfg.times = env_ll("TESTKIT_IOFAULT_TIMES", 0);
    const char *log = getenv("TESTKIT_IOFAULT_LOG");
    cfg.log_fd = (log && *log) ? open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600) : -1;
    const char *calls_log = getenv("TESTKIT_IOFAULT_CALLS_LOG");
    if (calls_log) strncpy(cfg.calls_log, calls_log, sizeof cfg.calls_log - 1);
    cfg.enabled = cfg.ops != 0;
}

static void ensure_init(void) { pthread_once(&once, init); }

/* Does this call on fd hit the target? Fills path for the log. errno is left untouched. */
static int matches(int fd, enum op op, char *path, size_t size) {
    if (!cfg.enabled || !(cfg.ops & op)) return 0;
    int saved = errno;
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, size - 1);
    errno = saved;
    if (n < 0) return 0;
    path[n] = '\0';
    return strstr(path, cfg.path) != NULL;
}

static unsigned op_index(enum op op) {
    for (unsigned i = 0; i < sizeof op_names / sizeof *op_names; i++)
        if ((int)op == 1 << i) return i;
    return 0;
}

static const char *op_name(enum op op) { return op_names[op_index(op)]; }

/* The call number of this matching call among calls of the same op (1-based). */
static long long count_call(enum op op) { return __atomic_add_fetch(&matched_calls[op_index(op)], 1, __ATOMIC_SEQ_CST); }

static void log_injection(enum op op, int fd, const char *path, const char *action, long long requested,
                          long long returned, long long call) {
    if (cfg.log_fd < 0) return;
    char line[PATH_MAX + 256];
    int n = snprintf(line, sizeof line, "%d\t%s\t%d\t%s\t%lld\t%lld\t%lld\t%s\n", (int)getpid(), op_name(op), fd,
                     action, requested, returned, call, path);
    if (n > (int)sizeof line) n = sizeof line;
    if (n > 0) real_write(cfg.log_fd, line, (size_t)n); /* one O_APPEND write: lines never interleave */
}

/* Claim one injection if the budget allows. */
static int take_injection(void) {
    if (cfg.times <= 0) return 1;
    return __atomic_add_fetch(&injected, 1, __ATOMIC_SEQ_CST) <= cfg.times;
}

/*
 * Decide what a matching write of `count` bytes does: returns the number of bytes to really write
 * (== count: untouched), or -1 to fail with cfg.err. Sets *action for the log.
 */
static long long plan_write(size_t count, long long call, const char **action) {
    *action = NULL;
    long long before = __atomic_fetch_add(&matched_bytes, (long long)count, __ATOMIC_SEQ_CST);
    if (cfg.after_bytes >= 0) {
        if (before + (long long)count <= cfg.after_bytes) return (long long)count;
        if (before < cfg.after_bytes && take_injection()) {
            *action = "short";
            return cfg.after_bytes - before;
        }
    } else if (call <= cfg.after_calls) {
        return (long long)count;
    }
    if (!take_injection()) return (long long)count;
    if (cfg.short_mode) {
        if (count < 2) return (long long)count;
        *action = "short";
        return (long long)(count / 2);
    }
    *action = "error";
    return -1;
}

static ssize_t faulty_write(enum op op, int fd, const void *buf, size_t count, off_t offset) {
    char path[PATH_MAX];
    if (!matches(fd, op, path, sizeof path)) goto pass;
    long long call = count_call(op);
    const char *action;
    long long allowed = plan_write(count, call, &action);
    if (!action) goto pass;
    if (allowed < 0) {
        log_injection(op, fd, path, "error", (long long)count, -1, call);
        errno = cfg.err;
        return -1;
    }
    ssize_t done = op == OP_PWRITE ? real_pwrite64(fd, buf, (size_t)allowed, offset)
                                   : real_write(fd, buf, (size_t)allowed);
    log_injection(op, fd, path, "short", (long long)count, (long long)done, call);
    return done;
pass:
    return op == OP_PWRITE ? real_pwrite64(fd, buf, count, offset) : real_write(fd, buf, count);
}

ssize_t write(int fd, const void *buf, size_t count) {
    ensure_init();
    return faulty_write(OP_WRITE, fd, buf, count, 0);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    ensure_init();
    return faulty_write(OP_PWRITE, fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset) {
    ensure_init();
    return faulty_write(OP_PWRITE, fd, buf, count, offset);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
    ensure_init();
    char path[PATH_MAX];
    if (!matches(fd, OP_WRITEV, path, sizeof path)) return real_writev(fd, iov, iovcnt);
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++) total += iov[i].iov_len;
    long long call = count_call(OP_WRITEV);
    const char *action;
    long long allowed = plan_write(total, call, &action);
    if (!action) return real_writev(fd, iov, iovcnt);
    if (allowed < 0) {
        log_injection(OP_WRITEV, fd, path, "error", (long long)total, -1, call);
        errno = cfg.err;
        return -1;
    }
    struct iovec *cut = malloc(sizeof *cut * (size_t)(iovcnt > 0 ? iovcnt : 1));
    if (!cut) return real_writev(fd, iov, iovcnt);
    int used = 0;
    size_t left = (size_t)allowed;
    for (int i = 0; i < iovcnt && left > 0; i++, used++) {
        cut[i] = iov[i];
        if (cut[i].iov_len > left) cut[i].iov_len = left;
        left -= cut[i].iov_len;
    }
    ssize_t done = used ? real_writev(fd, cut, used) : 0;
    int saved = errno;
    free(cut);
    errno = saved;
    log_injection(OP_WRITEV, fd, path, "short", (long long)total, (long long)done, call);
    return done;
}

static int faulty_sync(enum op op, int fd) {
    char path[PATH_MAX];
    int (*real)(int) = op == OP_FSYNC ? real_fsync : real_fdatasync;
    if (!matches(fd, op, path, sizeof path) || cfg.short_mode) return real(fd);
    long long call = count_call(op);
    if (call <= cfg.after_calls || !take_injection()) return real(fd);
    log_injection(op, fd, path, "error", 0, -1, call);
    errno = cfg.err;
    return -1;
}

int fsync(int fd) {
    ensure_init();
    return faulty_sync(OP_FSYNC, fd);
}

int fdatasync(int fd) {
    ensure_init();
    return faulty_sync(OP_FDATASYNC, fd);
}

/* At a normal exit (exit(), not _exit() or a signal): "pid<TAB>write=N<TAB>...<TAB>bytes=N", one O_APPEND write. */
__attribute__((destructor)) static void report_calls(void) {
    ensure_init();
    if (!cfg.enabled || !cfg.calls_log[0]) return;
    int fd = open(cfg.calls_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) return;
    char line[512];
    int n = snprintf(line, sizeof line, "%d", (int)getpid());
    for (unsigned i = 0; i < sizeof op_names / sizeof *op_names && n < (int)sizeof line; i++)
        n += snprintf(line + n, sizeof line - (size_t)n, "\t%s=%lld", op_names[i],
                      __atomic_load_n(&matched_calls[i], __ATOMIC_SEQ_CST));
    if (n < (int)sizeof line)
        n += snprintf(line + n, sizeof line - (size_t)n, "\tbytes=%lld\n", __atomic_load_n(&matched_bytes, __ATOMIC_SEQ_CST));
    if (n > 0 && n < (int)sizeof line) real_write(fd, line, (size_t)n);
    close(fd);
}
