/* cli.h — conventions every mu tool shares: errors, exit codes, --help/--version,
 * progress on a terminal, atomic output files.
 *   exit 0: ok; 1: failure (bad input, I/O); 2: usage error.
 *   Errors are one line on stderr: "mu-tool: file: record 12: what went wrong". */
#ifndef MU_CLI_H
#define MU_CLI_H
#include <stdio.h>
#include <stdint.h>

#define MU_EXIT_OK 0
#define MU_EXIT_FAIL 1
#define MU_EXIT_USAGE 2

extern const char *mu_tool_name;  /* "mu-dump" */
extern int mu_quiet;              /* --quiet given */
extern int mu_progress_on;        /* stderr is a terminal and not --quiet */

/* Records the tool name and argv (for stream headers). Call first in main(). */
void mu_cli_init(const char *tool, int argc, char **argv);
int mu_cli_argc(void);
char **mu_cli_argv(void);

/* Handles the options every tool has, given getopt_long's result:
 * 'h' (--help: print usage to stdout, exit 0), 'V' (--version), 'q' (--quiet).
 * Also '?' and ':' from getopt (unknown option / missing argument): a one-line usage
 * error and exit 2 (mu_cli_init sets opterr = 0 so getopt itself prints nothing;
 * put ':' first in the optstring to get ':' for a missing argument).
 * Returns 1 if handled. usage is the full --help text. */
int mu_cli_common(int opt, const char *usage);
/* getopt_long entries for the common options; append to each tool's table. */
#define MU_COMMON_LONGOPTS \
    {"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'}, {"quiet", no_argument, 0, 'q'}

_Noreturn void mu_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Flushes stdout; a failed write (a full disk, a closed pipe) dies with
 * "<stdout>: write failed: REASON". */
void mu_stdout_flush_or_die(void);
_Noreturn void mu_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void mu_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void mu_info(const char *fmt, ...) __attribute__((format(printf, 1, 2))); /* silenced by --quiet */

/* Progress bar on stderr, only when mu_progress_on. total 0 = unknown. */
void mu_progress(const char *label, uint64_t done, uint64_t total);
void mu_progress_done(void);

/* Atomic output: writes go to "<path>.tmp.<pid>", renamed onto path by
 * mu_out_commit. "-" means stdout (no rename); an existing path that is neither a regular
 * file nor a directory (/dev/null, /dev/stdout, a FIFO) is written in place. If the process dies (mu_die, signal)
 * the temp file is removed, so make never sees a partial artifact. */
typedef struct {
    char *path;       /* final path, NULL for stdout or a device/pipe written in place */
    char *tmp;        /* temp path */
    FILE *fp;
} mu_outfile;
int mu_out_open(mu_outfile *o, const char *path);   /* 0 ok, -1 errno set */
void mu_out_open_or_die(mu_outfile *o, const char *path);
int mu_out_commit(mu_outfile *o);                    /* fflush+fsync+rename; 0 ok */
void mu_out_commit_or_die(mu_outfile *o);
void mu_out_abort(mu_outfile *o);                    /* close and unlink temp */

/* Temp files registered here are unlinked on mu_die or a fatal signal. */
void mu_cleanup_register(const char *path);
void mu_cleanup_unregister(const char *path);

/* Option values: die with a usage error (exit 2) naming the option unless s is an
 * integer in [lo, hi] / a finite number in [lo, hi]. */
long mu_parse_int(const char *opt, const char *s, long lo, long hi);
double mu_parse_real(const char *opt, const char *s, double lo, double hi);
/* An option's S=FILE (a scale, then a path: mu-train --out-scaled, --scaled-delta): sets
 * *scale to S (a number in [-1e6, 1e6]) and returns FILE; a usage error naming opt if arg is
 * not of that form. */
const char *mu_parse_scaled(const char *opt, const char *arg, double *scale);

/* Utilities */
void *mu_xmalloc(size_t n);      /* dies on failure */
void *mu_xcalloc(size_t n, size_t sz);
void *mu_xrealloc(void *p, size_t n);
char *mu_xstrdup(const char *s);
int mu_str_ends_with(const char *s, const char *suffix);
double mu_now(void);             /* monotonic seconds */
#endif
