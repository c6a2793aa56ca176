/* replay.c — runs a fuzz target (tests/fuzz/fuzz_*.c) over the files named on the command
 * line, without libFuzzer: `make check` builds every target with it (gcc, and ASan+UBSan
 * with SANITIZE=1) and replays the seeds and the inputs that once failed
 * (tests/fuzz/regress/TARGET/), so a fixed loader bug stays fixed. Prints "ok FILE" per
 * input; a contract violation aborts (the target's own checks, or a sanitizer). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t *slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;)
        if ((n += got) == cap) buf = realloc(buf, cap *= 2);
    fclose(f);
    *size = n;
    return buf;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        size_t size;
        uint8_t *data = slurp(argv[i], &size);
        if (!data) { fprintf(stderr, "replay: %s: cannot read\n", argv[i]); return 1; }
        LLVMFuzzerTestOneInput(data, size);
        free(data);
        printf("ok %s\n", argv[i]);
    }
    return 0;
}
