/* fuzz_stream.c — the stream reader on any bytes: an input that starts with the zstd
 * magic is read as a file as it is (a stream's frames); any other, so that the fuzzer
 * reaches the msgpack layer, is compressed as one frame after a valid header frame.
 * Every record's tensors are validated as the tools do (mu_obj_tensor). */
#include <string.h>
#include <zstd.h>
#include "fuzz.h"
#include "stream.h"

static const char *as_frames(const uint8_t *data, size_t size)
{
    static const uint8_t header[] = {     /* {"format":"mu-stream","version":[1,1],"kind":"tokens"} */
        0x83, 0xa6, 'f', 'o', 'r', 'm', 'a', 't', 0xa9, 'm', 'u', '-', 's', 't', 'r', 'e', 'a', 'm',
        0xa7, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0x92, 0x01, 0x01,
        0xa4, 'k', 'i', 'n', 'd', 0xa6, 't', 'o', 'k', 'e', 'n', 's' };
    size_t cap = ZSTD_compressBound(sizeof header) + ZSTD_compressBound(size);
    uint8_t *buf = malloc(cap);
    ZSTD_CCtx *c = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
    size_t a = ZSTD_compress2(c, buf, cap, header, sizeof header);
    size_t b = ZSTD_compress2(c, buf + a, cap - a, data, size);
    if (ZSTD_isError(a) || ZSTD_isError(b)) abort();
    ZSTD_freeCCtx(c);
    const char *path = fuzz_file(buf, a + b, ".mpk.zst");
    free(buf);
    return path;
}

static void read_all(const char *path)
{
    char err[512] = "";
    mu_reader *r = mu_reader_open(path, NULL, err, sizeof err);
    if (!r) { fuzz_check_err(err, path); return; }
    const msgpack_object *rec;
    int rc;
    while ((rc = mu_reader_next(r, &rec)) == 1) {
        if (rec->type != MSGPACK_OBJECT_MAP) continue;
        for (uint32_t i = 0; i < rec->via.map.size; i++) {
            mu_tensor_view t;
            err[0] = 0;
            if (mu_obj_tensor(&rec->via.map.ptr[i].val, &t, err, sizeof err) && !err[0]) abort();
        }
    }
    if (rc < 0) fuzz_check_err(mu_reader_error(r), path);
    mu_reader_close(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t magic[4] = { 0x28, 0xb5, 0x2f, 0xfd };
    int frames = size >= 4 && !memcmp(data, magic, 4);
    read_all(frames ? fuzz_file(data, size, ".mpk.zst") : as_frames(data, size));
    return 0;
}
