/* fuzz_records.c — the readers of the tools' record streams on any msgpack: the input's
 * first byte picks the reader, the rest (a header and records, uncompressed) is written
 * as one zstd frame, so the fuzzer works on the msgpack itself. Readers: a tokens stream
 * as mu-train reads it (answers, general text, subject spans), a mask stream, a scores
 * stream (mu-maskgen). On a failure each must name the file. */
#include <string.h>
#include <zstd.h>
#include "fuzz.h"
#include "mask.h"
#include "maskgen.h"
#include "train.h"

static const char *one_frame(const uint8_t *data, size_t size)
{
    size_t cap = ZSTD_compressBound(size);
    uint8_t *buf = malloc(cap);
    ZSTD_CCtx *c = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
    size_t n = ZSTD_compress2(c, buf, cap, data, size);
    if (ZSTD_isError(n)) abort();
    ZSTD_freeCCtx(c);
    const char *path = fuzz_file(buf, n, ".mpk.zst");
    free(buf);
    return path;
}

static void read_tokens(const char *path, int how, char *err, size_t len)
{
    mu_train_set set;
    memset(&set, 0, sizeof set);
    int32_t *s = NULL, *e = NULL, alt[2] = { 3, 5 };
    int rc = how == 2 ? mu_train_set_read_spans(path, 40, 300, 4, "name", &set, &s, &e, err, len)
                      : mu_train_set_read(path, how, 40, 300, how ? 0 : 4, how ? NULL : alt, how ? 0 : 2,
                                          &set, err, len);
    if (rc == 0) {
        for (int i = 0; s && i < set.n; i++)
            if (s[i] < 0 || s[i] > e[i]) abort();
        mu_train_set_free(&set);
    }
    free(s); free(e);
    if (rc) fuzz_check_err(err, path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    char err[512] = "";
    int which = data[0] % 5;
    const char *path = one_frame(data + 1, size - 1);
    if (which < 3) { read_tokens(path, which, err, sizeof err); return 0; }
    if (which == 3) {
        mu_mask m;
        if (mu_mask_read(path, &m, err, sizeof err)) fuzz_check_err(err, path);
        else mu_mask_free(&m);
        return 0;
    }
    mu_cands c;
    memset(&c, 0, sizeof c);
    if (mu_cands_read_scores(path, &c, err, sizeof err)) fuzz_check_err(err, path);
    else mu_cands_free(&c);
    return 0;
}
