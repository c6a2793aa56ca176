/* harness.c — runner for TEST()s: forks one process per test, reports, sums up. */
#define _GNU_SOURCE
#include "test.h"
#include <stdarg.h>
#include <unistd.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <limits.h>
#include <time.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <errno.h>

#define MAX_TESTS 4096
#define EXIT_SKIP 77
static struct { const char *name, *file; mu_test_fn fn; } tests[MAX_TESTS];
static int ntests;
static char tmpdir[PATH_MAX];
static int msg_fd = -1;

void mu_test_register(const char *name, const char *file, mu_test_fn fn) {
    if (ntests == MAX_TESTS) { fprintf(stderr, "too many tests\n"); exit(1); }
    tests[ntests].name = name; tests[ntests].file = file; tests[ntests].fn = fn; ntests++;
}

static void send_msg(const char *prefix, const char *fmt, va_list ap) {
    char buf[2048];
    int n = snprintf(buf, sizeof buf, "%s", prefix);
    vsnprintf(buf + n, sizeof buf - n, fmt, ap);
    if (msg_fd >= 0 && write(msg_fd, buf, strlen(buf)) < 0) { /* best effort */ }
}

/* A test's process ends with _exit (no atexit handlers, no stdio flush of the parent's
 * buffers); a coverage build (make coverage) first writes its gcov counters. */
#ifdef MU_COVERAGE
void __gcov_dump(void);
__attribute__((noreturn)) static void child_exit(int code) { __gcov_dump(); _exit(code); }
#else
__attribute__((noreturn)) static void child_exit(int code) { _exit(code); }
#endif

void mu_test_fail(const char *file, int line, const char *fmt, ...) {
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s:%d: ", file, line);
    va_list ap; va_start(ap, fmt); send_msg(prefix, fmt, ap); va_end(ap);
    child_exit(1);
}

void mu_test_skip(const char *fmt, ...) {
    va_list ap; va_start(ap, fmt); send_msg("", fmt, ap); va_end(ap);
    child_exit(EXIT_SKIP);
}

const char *mu_test_shared_data(void) {
    static char path[PATH_MAX];
    const char *s = getenv("MU_SHARED");
    snprintf(path, sizeof path, "%s/data", s && *s ? s : "../shared");
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? path : NULL;
}

const char *mu_test_root(void) {
    const char *r = getenv("MU_ROOT");
    return r && *r ? r : ".";
}

const char *mu_test_tmpdir(void) { return tmpdir; }

unsigned char *mu_test_slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    CHECK_MSG(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    CHECK_MSG(b && fread(b, 1, (size_t)n, f) == (size_t)n, "cannot read %s", path);
    fclose(f);
    b[n] = 0;
    *len = (size_t)n;
    return b;
}

void mu_test_spit(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK_MSG(f && fwrite(b, 1, n, f) == n && fclose(f) == 0, "cannot write %s", path);
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw; return remove(p);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int run_one(int i, char *msg, size_t msglen) {
    int fds[2];
    if (pipe(fds) != 0) { perror("pipe"); exit(1); }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/mu-test-%d-XXXXXX", (int)getpid());
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); exit(1); }
    fflush(stdout); fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); exit(1); }
    if (pid == 0) {
        close(fds[0]); msg_fd = fds[1];
        tests[i].fn();
        child_exit(0);
    }
    close(fds[1]);
    /* watchdog: a test that hangs is killed and fails (MU_TEST_TIMEOUT seconds, default
     * 900; this bounds hangs, it does not time anything) */
    const char *ts = getenv("MU_TEST_TIMEOUT");
    double limit = ts && *ts ? atof(ts) : 900, start = now_s();
    int timed_out = 0;
    size_t got = 0; ssize_t n;
    for (;;) {
        struct pollfd pfd = {fds[0], POLLIN, 0};
        int left_ms = (int)((limit - (now_s() - start)) * 1000);
        if (left_ms <= 0) { timed_out = 1; break; }
        int pr = poll(&pfd, 1, left_ms);
        if (pr < 0 && errno == EINTR) continue;
        if (pr == 0) { timed_out = 1; break; }
        n = read(fds[0], msg + got, msglen - 1 - got);
        if (n <= 0 || got + (size_t)n >= msglen - 1) { if (n > 0) got += (size_t)n; break; }
        got += (size_t)n;
    }
    msg[got] = 0;
    close(fds[0]);
    if (timed_out) kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (timed_out) {
        snprintf(msg + got, msglen - got, "%shung: killed after %g s (MU_TEST_TIMEOUT)", got ? "; " : "", limit);
        return 1;
    }
    if (WIFSIGNALED(status)) {
        snprintf(msg + got, msglen - got, "%scrashed with signal %d", got ? "; " : "", WTERMSIG(status));
        return 1;
    }
    int code = WEXITSTATUS(status);
    if (code == EXIT_SKIP) return 2;
    if (code != 0 && !got) snprintf(msg, msglen, "exit status %d", code);
    return code == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    int pass = 0, fail = 0, skip = 0;
    char msg[4096];
    for (int i = 0; i < ntests; i++) {
        int want = argc < 2;
        for (int a = 1; a < argc; a++) if (strstr(tests[i].name, argv[a])) want = 1;
        if (!want) continue;
        int r = run_one(i, msg, sizeof msg);
        if (r == 0) { pass++; printf("ok   %s\n", tests[i].name); }
        else if (r == 2) { skip++; printf("skip %s: %s\n", tests[i].name, msg); }
        else { fail++; printf("FAIL %s: %s\n", tests[i].name, msg); }
        fflush(stdout);
    }
    printf("c-tests: %d passed, %d failed, %d skipped\n", pass, fail, skip);
    return fail ? 1 : 0;
}
