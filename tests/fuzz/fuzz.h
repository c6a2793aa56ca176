/* fuzz.h — shared by the libFuzzer targets (tests/fuzz, `make fuzz`): the input bytes
 * written to a file, since mu's loaders take paths (mmap, as in the tools). */
#ifndef MU_FUZZ_H
#define MU_FUZZ_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Writes data to a per-process file under $TMPDIR (default /tmp) named with suffix (the
 * loaders look at extensions) and returns its path (static storage). Aborts on I/O error. */
static const char *fuzz_file(const uint8_t *data, size_t size, const char *suffix)
{
    static char path[512];
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/mu-fuzz-%ld%s", dir && *dir ? dir : "/tmp", (long)getpid(),
             suffix);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f)) abort();
    return path;
}

/* Checks the loaders' contract on a failure: a message that names the file. (The tools
 * print it on one line, control bytes escaped: lib/cli.c.) */
static void fuzz_check_err(const char *err, const char *path)
{
    if (!err[0]) { fprintf(stderr, "failure without a message\n"); abort(); }
    if (!strstr(err, path)) { fprintf(stderr, "message does not name the file: %s\n", err); abort(); }
}
#endif
