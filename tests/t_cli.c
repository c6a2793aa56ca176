/* t_cli.c — tool conventions (atomic outputs, cleanup on mu_die and on signals, common
 * options, one-line errors), dtypes, f16/bf16 conversions (vs PyTorch goldens and the
 * compiler's _Float16), file digests (vs the xxhash Python package). */
#define _GNU_SOURCE
#include "test.h"
#include "cli.h"
#include "stream.h"
#include "tensor.h"
#include "utf8.h"
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int exists(const char *p) { struct stat st; return stat(p, &st) == 0; }

static json_t *load_golden(const char *rel) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", mu_test_root(), rel);
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    CHECK_MSG(j != NULL, "cannot load %s: %s", path, e.text);
    return j;
}

static float f32_from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t bits_of(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* ---------------------------------------------------------------- dtypes */

TEST(dtype_table) {
    static const struct { mu_dtype t; const char *name; size_t size; } want[] = {
        {MU_F32, "f32", 4}, {MU_F16, "f16", 2}, {MU_BF16, "bf16", 2}, {MU_F64, "f64", 8},
        {MU_I8, "i8", 1}, {MU_U8, "u8", 1}, {MU_I16, "i16", 2}, {MU_U16, "u16", 2},
        {MU_I32, "i32", 4}, {MU_U32, "u32", 4}, {MU_I64, "i64", 8}, {MU_U64, "u64", 8}, {MU_BOOL, "bool", 1}};
    CHECK_EQ_INT(sizeof want / sizeof *want, MU_DTYPE_COUNT);
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        CHECK_STR(mu_dtype_name(want[i].t), want[i].name);
        CHECK_EQ_INT(mu_dtype_size(want[i].t), want[i].size);
        mu_dtype got;
        CHECK(mu_dtype_parse(want[i].name, strlen(want[i].name), &got) == 0);
        CHECK_EQ_INT(got, want[i].t);
    }
    mu_dtype got;
    CHECK(mu_dtype_parse("f3", 2, &got) == -1);
    CHECK(mu_dtype_parse("f32x", 4, &got) == -1);
    CHECK(mu_dtype_parse("f32", 2, &got) == -1);   /* "f3" */
    CHECK(mu_dtype_parse("", 0, &got) == -1);
    CHECK_EQ_INT(mu_dtype_size((mu_dtype)99), 0);
}

TEST(shape_numel) {
    int64_t s1[] = {2, 3, 4};
    CHECK_EQ_INT(mu_shape_numel(3, s1), 24);
    CHECK_EQ_INT(mu_shape_numel(0, s1), 1);            /* a scalar */
    int64_t s2[] = {5, 0, 7};
    CHECK_EQ_INT(mu_shape_numel(3, s2), 0);
    int64_t s3[] = {2, -1};
    CHECK_EQ_INT(mu_shape_numel(2, s3), -1);
    int64_t s4[] = {INT64_MAX / 2, 3};
    CHECK_EQ_INT(mu_shape_numel(2, s4), -1);           /* overflow */
    int64_t s5[] = {1 << 20, 1 << 20, 1 << 20, 1 << 20};
    CHECK_EQ_INT(mu_shape_numel(4, s5), -1);
    CHECK_EQ_INT(mu_shape_numel(MU_MAX_DIMS + 1, s1), -1);
}

/* ---------------------------------------------------------------- f16 / bf16 */

TEST(f16_known_bits) {
    CHECK_EQ_INT(mu_f32_to_f16(1.0f), 0x3c00);
    CHECK_EQ_INT(mu_f32_to_f16(-2.0f), 0xc000);
    CHECK_EQ_INT(mu_f32_to_f16(0.0f), 0x0000);
    CHECK_EQ_INT(mu_f32_to_f16(-0.0f), 0x8000);
    CHECK_EQ_INT(mu_f32_to_f16(65504.0f), 0x7bff);       /* largest finite */
    CHECK_EQ_INT(mu_f32_to_f16(65520.0f), 0x7c00);       /* tie rounds to even: inf */
    CHECK_EQ_INT(mu_f32_to_f16(65519.0f), 0x7bff);
    CHECK_EQ_INT(mu_f32_to_f16(0.1f), 0x2e66);
    CHECK_EQ_INT(mu_f32_to_f16(ldexpf(1, -24)), 0x0001); /* smallest subnormal */
    CHECK_EQ_INT(mu_f32_to_f16(ldexpf(1, -25)), 0x0000); /* tie to even: 0 */
    CHECK_EQ_INT(mu_f32_to_f16(ldexpf(3, -25)), 0x0002); /* 1.5 ulp: tie to even 2 */
    CHECK_EQ_INT(mu_f32_to_f16(ldexpf(1, -14)), 0x0400); /* smallest normal */
    CHECK_EQ_INT(mu_f32_to_f16(INFINITY), 0x7c00);
    CHECK_EQ_INT(mu_f32_to_f16(-INFINITY), 0xfc00);
    uint16_t nan = mu_f32_to_f16(NAN);
    CHECK((nan & 0x7c00) == 0x7c00 && (nan & 0x3ff) != 0);
    CHECK(isnan(mu_f16_to_f32(0x7e00)));
    CHECK(mu_f16_to_f32(0x3c00) == 1.0f);
    CHECK(mu_f16_to_f32(0x0001) == ldexpf(1, -24));
    CHECK(mu_f16_to_f32(0x7bff) == 65504.0f);
    CHECK(mu_f16_to_f32(0xfc00) == -INFINITY);
    CHECK(bits_of(mu_f16_to_f32(0x8000)) == 0x80000000u);
}

TEST(bf16_known_bits) {
    CHECK_EQ_INT(mu_f32_to_bf16(1.0f), 0x3f80);
    CHECK_EQ_INT(mu_f32_to_bf16(-2.0f), 0xc000);
    CHECK_EQ_INT(mu_f32_to_bf16(f32_from_bits(0x3f808000)), 0x3f80); /* tie, even stays */
    CHECK_EQ_INT(mu_f32_to_bf16(f32_from_bits(0x3f818000)), 0x3f82); /* tie, odd rounds up */
    CHECK_EQ_INT(mu_f32_to_bf16(f32_from_bits(0x3f808001)), 0x3f81);
    CHECK_EQ_INT(mu_f32_to_bf16(f32_from_bits(0x7f7fffff)), 0x7f80); /* FLT_MAX -> inf */
    CHECK_EQ_INT(mu_f32_to_bf16(INFINITY), 0x7f80);
    uint16_t nan = mu_f32_to_bf16(f32_from_bits(0x7f800001));          /* NaN with a low payload */
    CHECK((nan & 0x7f80) == 0x7f80 && (nan & 0x7f) != 0);               /* stays NaN, not inf */
    CHECK(mu_bf16_to_f32(0x3f80) == 1.0f);
    CHECK(bits_of(mu_bf16_to_f32(0xc0a0)) == 0xc0a00000u);
}

/* Every f16 value converts to f32 exactly and back to the same bits. */
TEST(f16_roundtrip_all_65536) {
    for (uint32_t h = 0; h < 65536; h++) {
        float f = mu_f16_to_f32((uint16_t)h);
        if (isnan(f)) { CHECK_MSG((h & 0x7c00) == 0x7c00 && (h & 0x3ff), "0x%04x became NaN", h); continue; }
        CHECK_MSG(mu_f32_to_f16(f) == h, "0x%04x -> %g -> 0x%04x", h, f, mu_f32_to_f16(f));
#ifdef __FLT16_MAX__
        _Float16 ref;
        uint16_t hb = (uint16_t)h;
        memcpy(&ref, &hb, 2);
        CHECK_MSG(bits_of((float)ref) == bits_of(f), "0x%04x: %g vs compiler %g", h, f, (float)ref);
#endif
    }
}

/* All bf16 values convert to f32 and back to the same bits. */
TEST(bf16_roundtrip_all_65536) {
    for (uint32_t b = 0; b < 65536; b++) {
        float f = mu_bf16_to_f32((uint16_t)b);
        CHECK(bits_of(f) == b << 16);
        if (!isnan(f)) CHECK_MSG(mu_f32_to_bf16(f) == b, "0x%04x", b);
    }
}

#ifdef __FLT16_MAX__
/* f32 -> f16 against the compiler's conversion over a sweep of bit patterns. */
TEST(f16_vs_compiler_float16) {
    uint32_t step = 4099; /* odd stride: hits all exponents, mantissas, ties nearby */
    long checked = 0;
    for (uint64_t u = 0; u < 0x100000000ull; u += step) {
        float f = f32_from_bits((uint32_t)u);
        if (isnan(f)) continue;
        _Float16 ref = (_Float16)f;
        uint16_t rb;
        memcpy(&rb, &ref, 2);
        CHECK_MSG(mu_f32_to_f16(f) == rb, "f32 0x%08x: 0x%04x vs compiler 0x%04x", (uint32_t)u, mu_f32_to_f16(f), rb);
        checked++;
    }
    CHECK(checked > 1000000);
}
#endif

static void check_half_golden(const char *key, uint16_t (*conv)(float)) {
    json_t *j = load_golden("tests/golden/stream/halfs.json");
    json_t *in = json_object_get(j, "f32_bits"), *out = json_object_get(j, key);
    CHECK(json_is_array(in) && json_is_array(out) && json_array_size(in) == json_array_size(out));
    CHECK(json_array_size(in) > 5000);
    for (size_t i = 0; i < json_array_size(in); i++) {
        uint32_t u = (uint32_t)json_integer_value(json_array_get(in, i));
        uint16_t want = (uint16_t)json_integer_value(json_array_get(out, i));
        uint16_t got = conv(f32_from_bits(u));
        CHECK_MSG(got == want, "%s of f32 0x%08x (%g): 0x%04x, torch 0x%04x", key, u, f32_from_bits(u), got, want);
    }
    json_decref(j);
}

TEST(f16_vs_torch_golden) { check_half_golden("f16_bits", mu_f32_to_f16); }
TEST(bf16_vs_torch_golden) { check_half_golden("bf16_bits", mu_f32_to_bf16); }

/* ---------------------------------------------------------------- atomic outputs */

TEST(outfile_commit_renames) {
    char path[4096];
    snprintf(path, sizeof path, "%s/out.txt", mu_test_tmpdir());
    mu_outfile o;
    CHECK(mu_out_open(&o, path) == 0);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s", o.tmp);
    CHECK(strncmp(tmp, path, strlen(path)) == 0);    /* same directory: rename is atomic */
    fputs("hello\n", o.fp);
    CHECK(!exists(path));                             /* nothing at the final path yet */
    CHECK(exists(tmp));
    CHECK(mu_out_commit(&o) == 0);
    CHECK(exists(path));
    CHECK(!exists(tmp));
    FILE *f = fopen(path, "r");
    char buf[64] = {0};
    CHECK(f && fgets(buf, sizeof buf, f));
    fclose(f);
    CHECK_STR(buf, "hello\n");
}

TEST(outfile_abort_removes_temp) {
    char path[4096];
    snprintf(path, sizeof path, "%s/out.txt", mu_test_tmpdir());
    mu_outfile o;
    CHECK(mu_out_open(&o, path) == 0);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s", o.tmp);
    fputs("partial", o.fp);
    mu_out_abort(&o);
    CHECK(!exists(tmp));
    CHECK(!exists(path));
}

TEST(outfile_replaces_existing_only_on_commit) {
    char path[4096];
    snprintf(path, sizeof path, "%s/out.txt", mu_test_tmpdir());
    FILE *f = fopen(path, "w");
    fputs("old\n", f);
    fclose(f);
    mu_outfile o;
    CHECK(mu_out_open(&o, path) == 0);
    fputs("new\n", o.fp);
    f = fopen(path, "r");
    char buf[16] = {0};
    CHECK(fgets(buf, sizeof buf, f) != NULL);
    fclose(f);
    CHECK_STR(buf, "old\n");                          /* untouched until commit */
    mu_out_abort(&o);
    f = fopen(path, "r");
    CHECK(fgets(buf, sizeof buf, f) != NULL);
    fclose(f);
    CHECK_STR(buf, "old\n");
}

/* An existing device or pipe (here a FIFO; /dev/null in use) is written in place: making a
 * temp file and renaming it over /dev/null would replace the device with a regular file. */
TEST(outfile_writes_pipes_and_devices_in_place) {
    char fifo[1200];
    snprintf(fifo, sizeof fifo, "%s/pipe", mu_test_tmpdir());
    CHECK(mkfifo(fifo, 0600) == 0);
    int rd = open(fifo, O_RDWR | O_NONBLOCK);   /* a reader, so the writer's open does not block */
    CHECK(rd >= 0);
    mu_outfile o;
    CHECK(mu_out_open(&o, fifo) == 0);
    fputs("through the pipe", o.fp);
    CHECK(mu_out_commit(&o) == 0);
    struct stat st;
    CHECK(stat(fifo, &st) == 0 && S_ISFIFO(st.st_mode));
    char buf[64] = {0};
    CHECK(read(rd, buf, sizeof buf - 1) == 16);
    CHECK_STR(buf, "through the pipe");
    char tmp[1300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", fifo, (long)getpid());
    CHECK(!exists(tmp));
    close(rd);
}

TEST(outfile_open_fails_cleanly) {
    mu_outfile o;
    CHECK(mu_out_open(&o, "/nonexistent-dir-mu/x.out") == -1);
    CHECK(errno == ENOENT);
}

/* Runs fn in a child with stderr captured; returns the wait status. */
static int run_child(void (*fn)(const char *), const char *arg, char *err, size_t errlen) {
    int fds[2];
    CHECK(pipe(fds) == 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        fn(arg);
        _exit(0);
    }
    close(fds[1]);
    size_t got = 0;
    ssize_t n;
    while (got + 1 < errlen && (n = read(fds[0], err + got, errlen - 1 - got)) > 0) got += (size_t)n;
    err[got] = 0;
    close(fds[0]);
    int st;
    waitpid(pid, &st, 0);
    return st;
}

static void die_with_outfile(const char *path) {
    mu_cli_init("mu-test", 0, NULL);
    mu_outfile o;
    mu_out_open_or_die(&o, path);
    fputs("partial", o.fp);
    fflush(o.fp);
    mu_die("%s: record %d: something wrong", "in.mpk.zst", 12);
}

TEST(die_removes_temp_and_prints_one_line) {
    char path[4096], err[4096];
    snprintf(path, sizeof path, "%s/out.bin", mu_test_tmpdir());
    int st = run_child(die_with_outfile, path, err, sizeof err);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    CHECK_STR(err, "mu-test: in.mpk.zst: record 12: something wrong\n");
    CHECK(!exists(path));
    /* no temp file of any pid left in the directory */
    char cmd[4500];
    snprintf(cmd, sizeof cmd, "ls %s | grep -q tmp", mu_test_tmpdir());
    CHECK(system(cmd) != 0);
}

static void die_with_writer(const char *path) {
    mu_cli_init("mu-test", 0, NULL);
    mu_writer *w = mu_writer_open(path, "log");
    for (int i = 0; i < 100000; i++) {       /* several frames reach the temp file */
        msgpack_packer *pk = mu_writer_record(w);
        msgpack_pack_map(pk, 1);
        mu_pack_kv_int(pk, "i", i * 2654435761u);
        mu_writer_end_record(w);
    }
    mu_die("boom");
}

TEST(die_removes_stream_temp) {
    char path[4096], err[4096];
    snprintf(path, sizeof path, "%s/s.mpk.zst", mu_test_tmpdir());
    int st = run_child(die_with_writer, path, err, sizeof err);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    CHECK_STR(err, "mu-test: boom\n");
    char cmd[4500];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A %s)\"", mu_test_tmpdir());
    CHECK_MSG(system(cmd) == 0, "files left behind in %s", mu_test_tmpdir());
}

static void exit_without_commit(const char *path) {
    mu_cli_init("mu-test", 0, NULL);
    mu_outfile o;
    mu_out_open_or_die(&o, path);
    fputs("partial", o.fp);
    exit(0);                                           /* forgot mu_out_commit */
}

TEST(exit_without_commit_leaves_nothing) {
    char path[4096], err[256];
    snprintf(path, sizeof path, "%s/out.bin", mu_test_tmpdir());
    int st = run_child(exit_without_commit, path, err, sizeof err);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char cmd[4500];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A %s)\"", mu_test_tmpdir());
    CHECK_MSG(system(cmd) == 0, "files left behind in %s", mu_test_tmpdir());
}

TEST(sigterm_removes_temp) {
    char path[4096];
    snprintf(path, sizeof path, "%s/out.bin", mu_test_tmpdir());
    int ready[2];
    CHECK(pipe(ready) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        mu_cli_init("mu-test", 0, NULL);
        mu_outfile o;
        mu_out_open_or_die(&o, path);
        fputs("partial", o.fp);
        fflush(o.fp);
        if (write(ready[1], "x", 1) != 1) _exit(3);
        for (;;) pause();
    }
    char c;
    CHECK(read(ready[0], &c, 1) == 1);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)pid);
    CHECK(exists(tmp));
    kill(pid, SIGTERM);
    int st;
    waitpid(pid, &st, 0);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM);  /* dies by the signal, as expected */
    CHECK(!exists(tmp));
    CHECK(!exists(path));
}

/* ---------------------------------------------------------------- common options */

static const char test_usage[] = "Usage: mu-test [--flag]\n";

static void parse_args(const char *joined) {
    /* joined: space-separated arguments */
    int colon = strncmp(joined, "NOCOLON ", 8) != 0;   /* optstring without a leading ':' */
    if (!colon) joined += 8;
    char *copy = strdup(joined), *argv[16] = {"mu-test"};
    int argc = 1;
    for (char *t = strtok(copy, " "); t && argc < 15; t = strtok(NULL, " ")) argv[argc++] = t;
    argv[argc] = NULL;
    mu_cli_init("mu-test", argc, argv);
    static const struct option lo[] = {{"num", required_argument, 0, 'n'}, MU_COMMON_LONGOPTS, {0, 0, 0, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, colon ? ":n:hVq" : "n:hVq", lo, NULL)) != -1) {
        if (opt == 'n') continue;
        if (!mu_cli_common(opt, test_usage)) _exit(9);
    }
    fprintf(stderr, "quiet=%d", mu_quiet);
    _exit(0);
}

static int run_args(const char *args, char *out, size_t outlen, char *err, size_t errlen) {
    int o[2], e[2];
    CHECK(pipe(o) == 0 && pipe(e) == 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(o[1], 1); dup2(e[1], 2);
        close(o[0]); close(e[0]);
        parse_args(args);
    }
    close(o[1]); close(e[1]);
    ssize_t n = read(o[0], out, outlen - 1); out[n > 0 ? n : 0] = 0;
    n = read(e[0], err, errlen - 1); err[n > 0 ? n : 0] = 0;
    close(o[0]); close(e[0]);
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

TEST(cli_common_options) {
    char out[1024], err[1024];
    CHECK_EQ_INT(run_args("--help", out, sizeof out, err, sizeof err), 0);
    CHECK_STR(out, test_usage);
    CHECK_STR(err, "");
    CHECK_EQ_INT(run_args("--version", out, sizeof out, err, sizeof err), 0);
    CHECK(strncmp(out, "mu-test (mu) ", 13) == 0);
    CHECK_EQ_INT(run_args("-q", out, sizeof out, err, sizeof err), 0);
    CHECK_STR(err, "quiet=1");
    CHECK_EQ_INT(run_args("--bogus", out, sizeof out, err, sizeof err), 2);
    CHECK_STR(err, "mu-test: unknown option '--bogus' (see --help)\n");
    CHECK_STR(out, "");
    CHECK_EQ_INT(run_args("-z -q", out, sizeof out, err, sizeof err), 2);
    CHECK_STR(err, "mu-test: unknown option '-z' (see --help)\n");
    /* last on the line, getopt's '?' cannot tell unknown from a missing argument */
    CHECK_EQ_INT(run_args("-z", out, sizeof out, err, sizeof err), 2);
    CHECK_STR(err, "mu-test: option '-z' is unknown or needs an argument (see --help)\n");
    CHECK_EQ_INT(run_args("--num", out, sizeof out, err, sizeof err), 2);
    CHECK_STR(err, "mu-test: option '--num' needs an argument (see --help)\n");
    CHECK_EQ_INT(run_args("-n", out, sizeof out, err, sizeof err), 2);
    CHECK_STR(err, "mu-test: option '-n' needs an argument (see --help)\n");
    CHECK_EQ_INT(run_args("--bogus=3", out, sizeof out, err, sizeof err), 2);
    CHECK_STR(err, "mu-test: unknown option '--bogus' (see --help)\n");
    CHECK_EQ_INT(run_args("--help=3", out, sizeof out, err, sizeof err), 2);
    CHECK_STR(err, "mu-test: option '--help' takes no argument (see --help)\n");
    /* tools whose optstring lacks the leading ':' */
    CHECK_EQ_INT(run_args("NOCOLON --num", out, sizeof out, err, sizeof err), 2);
    CHECK_STR(err, "mu-test: option '--num' needs an argument (see --help)\n");
    CHECK_EQ_INT(run_args("NOCOLON --bogus", out, sizeof out, err, sizeof err), 2);
    CHECK_STR(err, "mu-test: unknown option '--bogus' (see --help)\n");
    CHECK_EQ_INT(run_args("NOCOLON -n", out, sizeof out, err, sizeof err), 2);
    CHECK_STR(err, "mu-test: option '-n' is unknown or needs an argument (see --help)\n");
    CHECK_EQ_INT(run_args("NOCOLON -z -n 3", out, sizeof out, err, sizeof err), 2);
    CHECK_STR(err, "mu-test: unknown option '-z' (see --help)\n");
    CHECK_EQ_INT(run_args("NOCOLON -n 3 -q", out, sizeof out, err, sizeof err), 0);
    CHECK_STR(err, "quiet=1");
}

/* ---------------------------------------------------------------- digests */

TEST(file_digest_matches_python_xxhash) {
    json_t *j = load_golden("tests/golden/stream/python.json");
    char path[4096], hex[33];
    snprintf(path, sizeof path, "%s/tests/golden/stream/python.mpk.zst", mu_test_root());
    CHECK(mu_file_digest(path, hex) == 0);
    CHECK_STR(hex, json_string_value(json_object_get(j, "xxh3")));
    json_decref(j);
    CHECK(mu_file_digest("/nonexistent/file", hex) == -1);
}

TEST(directory_digest_covers_names_and_contents) {
    const char *d = mu_test_tmpdir();
    char p[4096], h1[33], h2[33], h3[33];
    snprintf(p, sizeof p, "%s/a", d);
    FILE *f = fopen(p, "w"); fputs("one", f); fclose(f);
    snprintf(p, sizeof p, "%s/b", d);
    f = fopen(p, "w"); fputs("two", f); fclose(f);
    CHECK(mu_file_digest(d, h1) == 0);
    f = fopen(p, "w"); fputs("twp", f); fclose(f);
    CHECK(mu_file_digest(d, h2) == 0);
    CHECK(strcmp(h1, h2) != 0);
    char q[4096];
    snprintf(q, sizeof q, "%s/c", d);
    CHECK(rename(p, q) == 0);
    CHECK(mu_file_digest(d, h3) == 0);
    CHECK(strcmp(h2, h3) != 0);
    CHECK(mu_file_digest(d, h1) == 0);
    CHECK_STR(h1, h3);                                 /* deterministic */
}

/* ---- printable messages ----------------------------------------------------------------
 * A message quoting a hostile file's bytes stays one printable line: newlines, terminal
 * escapes (C0 and C1 controls), DEL and invalid UTF-8 are escaped, valid UTF-8 is kept. */
TEST(utf8_printable_escapes_controls_and_bad_bytes) {
    char out[128];
    CHECK_STR(mu_utf8_printable(out, sizeof out, "a\nb\r\tc"), "a\\nb\\r\\tc");
    CHECK_STR(mu_utf8_printable(out, sizeof out, "\x1b[2J\x7f"), "\\x1b[2J\\x7f");
    CHECK_STR(mu_utf8_printable(out, sizeof out, "caf\xc3\xa9 \xe2\x80\x94 \xf0\x9f\x98\x80"),
              "caf\xc3\xa9 \xe2\x80\x94 \xf0\x9f\x98\x80");
    CHECK_STR(mu_utf8_printable(out, sizeof out, "\xc2\x9b" "31m \xc2\xa0"), "\\xc2\\x9b31m \xc2\xa0");
    CHECK_STR(mu_utf8_printable(out, sizeof out, "\xff\xc3(\xed\xa0\x80\xe0\x80\xaf"),
              "\\xff\\xc3(\\xed\\xa0\\x80\\xe0\\x80\\xaf");
    CHECK_STR(mu_utf8_printable(out, sizeof out, "\xf4\x90\x80\x80 \xf0\x8f\xbf\xbf"),
              "\\xf4\\x90\\x80\\x80 \\xf0\\x8f\\xbf\\xbf");
    /* cuts: never inside an escape or a character */
    CHECK_STR(mu_utf8_printable(out, 5, "abc\ndef"), "abc");
    CHECK_STR(mu_utf8_printable(out, 6, "abc\ndef"), "abc\\n");
    CHECK_STR(mu_utf8_printable(out, 6, "abcd\xc3\xa9"), "abcd");
    CHECK_STR(mu_utf8_printable(out, 7, "abcd\xc3\xa9"), "abcd\xc3\xa9");
    CHECK_STR(mu_utf8_printable(out, 1, "abc"), "");
}

TEST(utf8_seq_len_strict) {
    static const struct { const char *s; size_t len; } c[] = {
        { "A", 1 }, { "\xc3\xa9", 2 }, { "\xe2\x82\xac", 3 }, { "\xf0\x9f\x98\x80", 4 },
        { "\xc0\x80", 0 }, { "\xc1\xbf", 0 }, { "\xe0\x9f\xbf", 0 }, { "\xed\xa0\x80", 0 },
        { "\xf0\x8f\xbf\xbf", 0 }, { "\xf4\x90\x80\x80", 0 }, { "\xf5\x80\x80\x80", 0 },
        { "\x80", 0 }, { "\xc3", 0 }, { "\xe2\x82", 0 }, { "\xc3(", 0 },
        { "\xef\xbf\xbf", 3 }, { "\xf4\x8f\xbf\xbf", 4 }, { "\xed\x9f\xbf", 3 },
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++)
        CHECK_MSG(mu_utf8_seq_len((const unsigned char *)c[i].s, strlen(c[i].s)) == c[i].len,
                  "case %zu: %zu, want %zu", i,
                  mu_utf8_seq_len((const unsigned char *)c[i].s, strlen(c[i].s)), c[i].len);
}
