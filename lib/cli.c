/* cli.c — the conventions every mu tool shares: one-line errors and exit codes,
 * --help/--version/--quiet, a progress bar on a terminal, atomic output files and the
 * registry of temp files removed when the process dies (mu_die or a fatal signal). */
#define _GNU_SOURCE
#include "cli.h"
#include "utf8.h"
#include <float.h>
#include <math.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#ifndef MU_VERSION
#define MU_VERSION "0.0.0"
#endif

const char *mu_tool_name = "mu";
int mu_quiet = 0;
int mu_progress_on = 0;
static int cli_argc;
static char **cli_argv;

/* ---- cleanup registry (async-signal-safe reads: fixed slots, unlink only) ---- */

#define MU_MAX_CLEANUP 64
static char *volatile cleanup_paths[MU_MAX_CLEANUP];
static volatile pid_t cleanup_owner;   /* a forked child never removes its parent's files */

static void cleanup_run(void) {
    if (getpid() != cleanup_owner) return;
    for (int i = 0; i < MU_MAX_CLEANUP; i++) {
        char *p = cleanup_paths[i];
        if (p) unlink(p);
    }
}

static void on_fatal_signal(int sig) {
    cleanup_run();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Only where the disposition is the default: a tool's own handler (e.g. to checkpoint
 * on SIGINT) or an inherited SIG_IGN is left alone. */
static void install_signal_handlers(void) {
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        struct sigaction sa, old;
        if (sigaction(sigs[i], NULL, &old) != 0 || (old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL)
            continue;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_fatal_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESETHAND;
        sigaction(sigs[i], &sa, NULL);
    }
}

void mu_cleanup_register(const char *path) {
    static int handlers_installed;
    if (!handlers_installed) {
        install_signal_handlers();
        atexit(cleanup_run);    /* a temp never committed does not outlive the process */
        handlers_installed = 1;
    }
    if (cleanup_owner != getpid()) {     /* first use, or first use in a forked child */
        for (int i = 0; i < MU_MAX_CLEANUP; i++) cleanup_paths[i] = NULL; /* the parent's */
        cleanup_owner = getpid();
    }
    char *copy = mu_xstrdup(path);
    for (int i = 0; i < MU_MAX_CLEANUP; i++) {
        if (!cleanup_paths[i]) { cleanup_paths[i] = copy; return; }
    }
    free(copy);
    mu_warn("too many temporary files to track; %s will not be removed on abort", path);
}

void mu_cleanup_unregister(const char *path) {
    for (int i = 0; i < MU_MAX_CLEANUP; i++) {
        char *p = cleanup_paths[i];
        if (p && strcmp(p, path) == 0) {
            cleanup_paths[i] = NULL;
            free(p);
            return;
        }
    }
}

/* ---- init and common options ---- */

void mu_cli_init(const char *tool, int argc, char **argv) {
    mu_tool_name = tool;
    cli_argc = argc;
    cli_argv = argv;
    opterr = 0; /* unknown options are reported by mu_cli_common as one line */
    mu_progress_on = isatty(STDERR_FILENO) && !mu_quiet;
}

int mu_cli_argc(void) { return cli_argc; }
char **mu_cli_argv(void) { return cli_argv; }

/* The one-line usage error for getopt's '?' (unknown option; also a missing argument
 * when the optstring does not start with ':') and ':' (missing argument). glibc sets
 * optopt to the option's val for a known long option missing its argument, to 0 for an
 * unknown long option, and to the character for short options. */
static _Noreturn void bad_option(int opt) {
    const char *arg = optind > 0 && optind <= cli_argc && cli_argv ? cli_argv[optind - 1] : NULL;
    if (arg && strncmp(arg, "--", 2) == 0) {
        int n = (int)strcspn(arg, "=");
        if (arg[n] == '=' && optopt != 0) mu_usage_error("option '%.*s' takes no argument (see --help)", n, arg);
        if (opt == ':' || optopt != 0) mu_usage_error("option '%.*s' needs an argument (see --help)", n, arg);
        mu_usage_error("unknown option '%.*s' (see --help)", n, arg);
    }
    if (opt == ':') mu_usage_error("option '-%c' needs an argument (see --help)", optopt);
    /* a short option: without a leading ':' in the optstring, getopt reports a known
     * option at the very end that lacks its argument exactly like an unknown one */
    size_t len = arg ? strlen(arg) : 0;
    if (optind >= cli_argc && len >= 2 && arg[len - 1] == optopt)
        mu_usage_error("option '-%c' is unknown or needs an argument (see --help)", optopt);
    mu_usage_error("unknown option '-%c' (see --help)", optopt);
}

void mu_stdout_flush_or_die(void) {
    errno = 0;
    if (fflush(stdout) != 0 || ferror(stdout))
        mu_die("<stdout>: write failed: %s", strerror(errno ? errno : EIO));
}

int mu_cli_common(int opt, const char *usage) {
    switch (opt) {
    case 'h':
        fputs(usage, stdout);
        mu_stdout_flush_or_die();
        exit(MU_EXIT_OK);
    case 'V':
        printf("%s (mu) %s\n", mu_tool_name, MU_VERSION);
        mu_stdout_flush_or_die();
        exit(MU_EXIT_OK);
    case 'q':
        mu_quiet = 1;
        mu_progress_on = 0;
        return 1;
    case '?':
    case ':':
        bad_option(opt);
    default:
        return 0;
    }
}

/* ---- messages ---- */

/* One line on stderr: "tool: [what: ]message", after clearing a progress bar. */
static void vmessage(const char *what, const char *fmt, va_list ap) {
    char buf[4096], line[4096];
    vsnprintf(buf, sizeof buf, fmt, ap);
    /* one printable line: a file's bytes quoted in a message (a key, a name) could hold
     * newlines or terminal escapes; they are shown as \n, \x1b, ... */
    mu_utf8_printable(line, sizeof line, buf);
    if (mu_progress_on) fputs("\r\033[K", stderr);
    fprintf(stderr, "%s: %s%s\n", mu_tool_name, what, line);
    fflush(stderr);
}

void mu_die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmessage("", fmt, ap);
    va_end(ap);
    cleanup_run();
    exit(MU_EXIT_FAIL);
}

void mu_usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmessage("", fmt, ap);
    va_end(ap);
    cleanup_run();
    exit(MU_EXIT_USAGE);
}

void mu_warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmessage("warning: ", fmt, ap);
    va_end(ap);
}

void mu_info(const char *fmt, ...) {
    if (mu_quiet) return;
    va_list ap;
    va_start(ap, fmt);
    vmessage("", fmt, ap);
    va_end(ap);
}

/* ---- progress ---- */

static double progress_last, progress_start;
static int progress_drawn;

void mu_progress(const char *label, uint64_t done, uint64_t total) {
    if (!mu_progress_on) return;
    double now = mu_now();
    if (!progress_drawn) progress_start = now;
    if (progress_drawn && now - progress_last < 0.1 && (total == 0 || done < total)) return;
    progress_last = now;
    progress_drawn = 1;
    double el = now - progress_start, rate = el > 0 ? (double)done / el : 0;
    if (total) {
        int width = 30, fill = (int)((double)width * (double)done / (double)total);
        if (fill > width) fill = width;
        char bar[64];
        memset(bar, '#', (size_t)fill);
        memset(bar + fill, '.', (size_t)(width - fill));
        bar[width] = 0;
        double eta = rate > 0 && done <= total ? (double)(total - done) / rate : 0;
        fprintf(stderr, "\r\033[K%s [%s] %llu/%llu %.0f/s eta %.0fs", label, bar,
                (unsigned long long)done, (unsigned long long)total, rate, eta);
    } else {
        fprintf(stderr, "\r\033[K%s %llu %.0f/s", label, (unsigned long long)done, rate);
    }
    fflush(stderr);
}

void mu_progress_done(void) {
    if (!mu_progress_on || !progress_drawn) return;
    fputs("\r\033[K", stderr);
    fflush(stderr);
    progress_drawn = 0;
}

/* ---- atomic output ---- */

int mu_out_open(mu_outfile *o, const char *path) {
    memset(o, 0, sizeof *o);
    if (strcmp(path, "-") == 0) {
        o->fp = stdout;
        return 0;
    }
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
        /* a device or a pipe (/dev/null, /dev/stdout, a FIFO): written in place, never
         * replaced by a renamed temp file */
        o->fp = fopen(path, "wb");
        return o->fp ? 0 : -1;
    }
    size_t n = strlen(path) + 32;
    o->path = mu_xstrdup(path);
    o->tmp = mu_xmalloc(n);
    snprintf(o->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    mu_cleanup_register(o->tmp);
    o->fp = fopen(o->tmp, "wb");
    if (!o->fp) {
        int e = errno;
        mu_cleanup_unregister(o->tmp);
        free(o->path); free(o->tmp);
        memset(o, 0, sizeof *o);
        errno = e;
        return -1;
    }
    return 0;
}

void mu_out_open_or_die(mu_outfile *o, const char *path) {
    if (mu_out_open(o, path) != 0) mu_die("%s: cannot create: %s", path, strerror(errno));
}

static void out_free(mu_outfile *o) {
    free(o->path);
    free(o->tmp);
    memset(o, 0, sizeof *o);
}

int mu_out_commit(mu_outfile *o) {
    if (!o->fp) { errno = EBADF; return -1; }
    if (!o->path) { /* stdout, or a device or pipe written in place */
        int bad = fflush(o->fp) != 0 || ferror(o->fp);
        int e = errno;
        if (o->fp != stdout && fclose(o->fp) != 0 && !bad) { bad = 1; e = errno; }
        o->fp = NULL;
        if (bad) { errno = e ? e : EIO; return -1; }
        return 0;
    }
    int bad = fflush(o->fp) != 0 || ferror(o->fp);
    int e = errno;
    if (!bad && fsync(fileno(o->fp)) != 0 && errno != EINVAL && errno != EROFS) { bad = 1; e = errno; }
    if (fclose(o->fp) != 0 && !bad) { bad = 1; e = errno; }
    o->fp = NULL;
    if (!bad && rename(o->tmp, o->path) != 0) { bad = 1; e = errno; }
    if (bad) {
        unlink(o->tmp);
        mu_cleanup_unregister(o->tmp);
        out_free(o);
        errno = e ? e : EIO;
        return -1;
    }
    mu_cleanup_unregister(o->tmp);
    out_free(o);
    return 0;
}

void mu_out_commit_or_die(mu_outfile *o) {
    char *path = mu_xstrdup(o->path ? o->path : "<stdout>");
    if (mu_out_commit(o) != 0) mu_die("%s: write failed: %s", path, strerror(errno));
    free(path);
}

void mu_out_abort(mu_outfile *o) {
    if (o->path) {
        if (o->fp) fclose(o->fp);
        unlink(o->tmp);
        mu_cleanup_unregister(o->tmp);
    } else if (o->fp) {
        fflush(o->fp);
        if (o->fp != stdout) fclose(o->fp);
    }
    out_free(o);
}

/* ---- utilities ---- */

void *mu_xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) mu_die("out of memory (%zu bytes)", n);
    return p;
}

void *mu_xcalloc(size_t n, size_t sz) {
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p) mu_die("out of memory (%zu x %zu bytes)", n, sz);
    return p;
}

void *mu_xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) mu_die("out of memory (%zu bytes)", n);
    return q;
}

char *mu_xstrdup(const char *s) {
    char *p = strdup(s);
    if (!p) mu_die("out of memory");
    return p;
}

int mu_str_ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

double mu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

long mu_parse_int(const char *opt, const char *s, long lo, long hi) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        mu_usage_error("%s: '%s' is not an integer in [%ld, %ld]", opt, s, lo, hi);
    return v;
}

double mu_parse_real(const char *opt, const char *s, double lo, double hi) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || !(v >= lo) || !(v <= hi)) {
        if (lo == -DBL_MAX && hi == DBL_MAX) mu_usage_error("%s: '%s' is not a finite number", opt, s);
        mu_usage_error("%s: '%s' is not a number in [%g, %g]", opt, s, lo, hi);
    }
    return v;
}

const char *mu_parse_scaled(const char *opt, const char *arg, double *scale) {
    const char *eq = strchr(arg, '=');
    char num[64];
    if (!eq || eq == arg || !eq[1] || (size_t)(eq - arg) >= sizeof num)
        mu_usage_error("%s '%s': expected S=FILE, e.g. -1=negated.st", opt, arg);
    memcpy(num, arg, (size_t)(eq - arg));
    num[eq - arg] = '\0';
    *scale = mu_parse_real(opt, num, -1e6, 1e6);
    return eq + 1;
}
