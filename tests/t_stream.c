/* t_stream.c — mu record streams: round trips of every dtype and of a > 64 MiB tensor,
 * frames and pipes, concatenation, a stream written by Python (msgpack + zstandard),
 * wrong kind / version / tensor length, hostile msgpack, and the corruption sweep
 * (truncate at every offset, flip every byte: identical records or a clean error). */
#define _GNU_SOURCE
#include "test.h"
#include "cli.h"
#include "stream.h"
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

static char *tpath(const char *name) {
    static char buf[8][4096];
    static int k;
    char *p = buf[k++ & 7];
    snprintf(p, 4096, "%s/%s", mu_test_tmpdir(), name);
    return p;
}

/* Writes raw msgpack bytes as one checksummed zstd frame (for hand-made streams). */
static void spit_zstd(const char *path, const void *b, size_t n) {
    ZSTD_CCtx *c = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
    size_t cap = ZSTD_compressBound(n);
    void *out = malloc(cap);
    size_t k = ZSTD_compress2(c, out, cap, b, n);
    CHECK(!ZSTD_isError(k));
    mu_test_spit(path, out, k);
    free(out);
    ZSTD_freeCCtx(c);
}

static void pack_header(msgpack_packer *pk, const char *kind, int major, int minor) {
    msgpack_pack_map(pk, 3);
    mu_pack_kv_str(pk, "format", "mu-stream");
    mu_pack_str(pk, "version");
    msgpack_pack_array(pk, 2);
    msgpack_pack_int(pk, major);
    msgpack_pack_int(pk, minor);
    mu_pack_kv_str(pk, "kind", kind);
}

/* Serialized records of a stream (to compare streams byte for byte). */
typedef struct { msgpack_sbuffer *rec; long n, cap; int rc; char err[1024]; } readout;

static void readout_free(readout *ro) {
    for (long i = 0; i < ro->n; i++) msgpack_sbuffer_destroy(&ro->rec[i]);
    free(ro->rec);
}

static readout read_all(const char *path, const char *kind) {
    readout ro = {0};
    mu_reader *r = mu_reader_open(path, kind, ro.err, sizeof ro.err);
    if (!r) { ro.rc = -1; return ro; }
    const msgpack_object *o;
    int rc;
    while ((rc = mu_reader_next(r, &o)) == 1) {
        if (ro.n == ro.cap) {
            ro.cap = ro.cap ? 2 * ro.cap : 16;
            ro.rec = realloc(ro.rec, (size_t)ro.cap * sizeof *ro.rec);
        }
        msgpack_sbuffer_init(&ro.rec[ro.n]);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &ro.rec[ro.n], msgpack_sbuffer_write);
        msgpack_pack_object(&pk, *o);
        ro.n++;
        CHECK_EQ_INT(mu_reader_record_index(r), ro.n - 1);
    }
    ro.rc = rc;
    if (rc < 0) snprintf(ro.err, sizeof ro.err, "%s", mu_reader_error(r));
    mu_reader_close(r);
    return ro;
}

static int same_records(const readout *a, const readout *b, long n) {
    for (long i = 0; i < n; i++)
        if (a->rec[i].size != b->rec[i].size || memcmp(a->rec[i].data, b->rec[i].data, a->rec[i].size)) return 0;
    return 1;
}

/* ---------------------------------------------------------------- round trips */

TEST(roundtrip_every_dtype_and_header) {
    mu_cli_init("mu-test", 3, (char *[]){"mu-test", "--x", "y z", NULL});
    const char *p = tpath("d.mpk.zst"), *inp = tpath("input.txt");
    mu_test_spit(inp, "hello input\n", 12);
    mu_writer *w = mu_writer_open(p, "activations");
    mu_writer_add_input(w, "model", inp);
    msgpack_pack_int(mu_writer_meta(w, "layers"), 12);
    mu_pack_str(mu_writer_meta(w, "site"), "mlp_out");
    uint8_t vals[MU_DTYPE_COUNT][128];
    int64_t shapes[MU_DTYPE_COUNT][3];
    for (int t = 0; t < MU_DTYPE_COUNT; t++) {
        size_t es = mu_dtype_size((mu_dtype)t);
        shapes[t][0] = 2; shapes[t][1] = 1 + t % 3; shapes[t][2] = 2;
        size_t n = (size_t)mu_shape_numel(3, shapes[t]);
        for (size_t i = 0; i < n * es; i++) vals[t][i] = (uint8_t)(i * 37 + t * 11 + 1);
        if (t == MU_BOOL) for (size_t i = 0; i < n; i++) vals[t][i] = i & 1;
        if (t == MU_F32) { float f[3] = {NAN, -INFINITY, -0.0f}; memcpy(vals[t], f, sizeof f); }
        msgpack_packer *pk = mu_writer_record(w);
        msgpack_pack_map(pk, 3);
        mu_pack_kv_str(pk, "name", mu_dtype_name((mu_dtype)t));
        mu_pack_kv_int(pk, "pad", t);                  /* varies the byte offsets of the data */
        mu_pack_kv_tensor(pk, "t", (mu_dtype)t, 3, shapes[t], vals[t]);
        mu_writer_end_record(w);
    }
    mu_writer_close(w);

    char err[1024];
    mu_reader *r = mu_reader_open(p, "activations", err, sizeof err);
    CHECK_MSG(r != NULL, "%s", err);
    const msgpack_object *h = mu_reader_header(r);
    CHECK(mu_obj_streq(mu_obj_get(h, "format"), "mu-stream"));
    CHECK_STR(mu_reader_kind(r), "activations");
    const msgpack_object *prod = mu_obj_get(h, "producer");
    CHECK(mu_obj_streq(mu_obj_get(prod, "tool"), "mu-test"));
    const msgpack_object *args = mu_obj_get(prod, "args");
    CHECK(args && args->type == MSGPACK_OBJECT_ARRAY && args->via.array.size == 2);
    CHECK(mu_obj_streq(&args->via.array.ptr[1], "y z"));
    const msgpack_object *ins = mu_obj_get(h, "inputs");
    CHECK(ins && ins->type == MSGPACK_OBJECT_ARRAY && ins->via.array.size == 1);
    char hex[33];
    CHECK(mu_file_digest(inp, hex) == 0);
    CHECK(mu_obj_streq(mu_obj_get(&ins->via.array.ptr[0], "xxh3"), hex));
    CHECK(mu_obj_streq(mu_obj_get(&ins->via.array.ptr[0], "role"), "model"));
    int64_t v;
    CHECK(mu_obj_int(mu_obj_get(&ins->via.array.ptr[0], "size"), &v) == 0 && v == 12);
    CHECK(mu_obj_int(mu_obj_get(mu_obj_get(h, "meta"), "layers"), &v) == 0 && v == 12);
    CHECK(mu_obj_streq(mu_obj_get(mu_obj_get(h, "meta"), "site"), "mlp_out"));
    const msgpack_object *o;
    for (int t = 0; t < MU_DTYPE_COUNT; t++) {
        CHECK_EQ_INT(mu_reader_next(r, &o), 1);
        CHECK(mu_obj_streq(mu_obj_get(o, "name"), mu_dtype_name((mu_dtype)t)));
        mu_tensor_view tv;
        CHECK_MSG(mu_obj_tensor(mu_obj_get(o, "t"), &tv, err, sizeof err) == 0, "%s", err);
        CHECK_EQ_INT(tv.dtype, t);
        CHECK_EQ_INT(tv.ndim, 3);
        for (int d = 0; d < 3; d++) CHECK_EQ_INT(tv.shape[d], shapes[t][d]);
        CHECK_EQ_INT(tv.nbytes, (size_t)mu_shape_numel(3, shapes[t]) * mu_dtype_size((mu_dtype)t));
        CHECK(memcmp(tv.data, vals[t], tv.nbytes) == 0);
        CHECK_MSG(((uintptr_t)tv.data & 7) == 0, "dtype %s data at %p is not 8-aligned", mu_dtype_name((mu_dtype)t), tv.data);
    }
    CHECK_EQ_INT(mu_reader_next(r, &o), 0);
    CHECK_EQ_INT(mu_reader_next(r, &o), 0);             /* end stays end */
    mu_reader_close(r);
}

/* f16/bf16 tensors made with the conversion helpers keep their known bit patterns. */
TEST(roundtrip_half_tensors_known_bits) {
    static const float x[6] = {1.0f, -2.0f, 0.1f, 65504.0f, 5.9604645e-8f, -INFINITY};
    static const uint16_t want16[6] = {0x3c00, 0xc000, 0x2e66, 0x7bff, 0x0001, 0xfc00};
    static const uint16_t wantbf[6] /* checked with torch */ = {0x3f80, 0xc000, 0x3dcd, 0x4780, 0x3380, 0xff80};
    uint16_t h[6], b[6];
    for (int i = 0; i < 6; i++) { h[i] = mu_f32_to_f16(x[i]); b[i] = mu_f32_to_bf16(x[i]); }
    const char *p = tpath("half.mpk.zst");
    mu_writer *w = mu_writer_open(p, "activations");
    int64_t shape[2] = {2, 3};
    msgpack_packer *pk = mu_writer_record(w);
    msgpack_pack_map(pk, 2);
    mu_pack_kv_tensor(pk, "h", MU_F16, 2, shape, h);
    mu_pack_kv_tensor(pk, "b", MU_BF16, 2, shape, b);
    mu_writer_end_record(w);
    mu_writer_close(w);
    char err[1024];
    mu_reader *r = mu_reader_open(p, "activations", err, sizeof err);
    CHECK_MSG(r, "%s", err);
    const msgpack_object *o;
    CHECK_EQ_INT(mu_reader_next(r, &o), 1);
    mu_tensor_view th, tb;
    CHECK(mu_obj_tensor(mu_obj_get(o, "h"), &th, err, sizeof err) == 0);
    CHECK(mu_obj_tensor(mu_obj_get(o, "b"), &tb, err, sizeof err) == 0);
    CHECK(th.dtype == MU_F16 && tb.dtype == MU_BF16 && th.nbytes == 12 && tb.nbytes == 12);
    const uint8_t *ph = th.data, *pb = tb.data;
    for (int i = 0; i < 6; i++) {   /* little-endian bytes on disk */
        CHECK_EQ_INT(ph[2 * i] | ph[2 * i + 1] << 8, want16[i]);
        CHECK_EQ_INT(pb[2 * i] | pb[2 * i + 1] << 8, wantbf[i]);
        float back = mu_f16_to_f32(((const uint16_t *)th.data)[i]);
        if (i != 2) CHECK(back == x[i]);                  /* exact in f16 */
        else CHECK_NEAR(back, 0.1, 1e-4);
    }
    mu_reader_close(r);
}

TEST(reads_python_written_stream) {
    char jp[4096], sp[4096], err[1024];
    snprintf(jp, sizeof jp, "%s/tests/golden/stream/python.json", mu_test_root());
    snprintf(sp, sizeof sp, "%s/tests/golden/stream/python.mpk.zst", mu_test_root());
    json_error_t je;
    json_t *j = json_load_file(jp, 0, &je);
    CHECK_MSG(j, "%s: %s", jp, je.text);
    mu_reader *r = mu_reader_open(sp, "tokens", err, sizeof err);
    CHECK_MSG(r, "%s", err);
    json_t *recs = json_object_get(j, "records");
    const msgpack_object *o;
    for (size_t i = 0; i < json_array_size(recs); i++) {
        json_t *e = json_array_get(recs, i);
        CHECK_EQ_INT(mu_reader_next(r, &o), 1);
        const char *name = json_string_value(json_object_get(e, "name"));
        CHECK(mu_obj_streq(mu_obj_get(o, "name"), name));
        mu_tensor_view t;
        CHECK_MSG(mu_obj_tensor(mu_obj_get(o, "t"), &t, err, sizeof err) == 0, "%s: %s", name, err);
        CHECK_STR(mu_dtype_name(t.dtype), name);
        json_t *shape = json_object_get(e, "shape"), *vals = json_object_get(e, "values");
        CHECK_EQ_INT(t.ndim, json_array_size(shape));
        for (int d = 0; d < t.ndim; d++) CHECK_EQ_INT(t.shape[d], json_integer_value(json_array_get(shape, d)));
        size_t n = t.nbytes / mu_dtype_size(t.dtype);
        CHECK_EQ_INT(n, json_array_size(vals));
        CHECK(((uintptr_t)t.data & 7) == 0);
        for (size_t k = 0; k < n; k++) {
            json_t *ev = json_array_get(vals, k);
            const uint8_t *p = (const uint8_t *)t.data + k * mu_dtype_size(t.dtype);
            switch (t.dtype) {
            case MU_F32: CHECK(((const float *)t.data)[k] == (float)json_real_value(ev)); break;
            case MU_F64: CHECK(((const double *)t.data)[k] == json_real_value(ev)); break;
            case MU_F16: CHECK(mu_f16_to_f32(((const uint16_t *)t.data)[k]) == (float)json_number_value(ev)); break;
            case MU_BF16: CHECK(mu_bf16_to_f32(((const uint16_t *)t.data)[k]) == (float)json_number_value(ev)); break;
            case MU_BOOL: CHECK(p[0] == (json_is_true(ev) ? 1 : 0)); break;
            default: {
                const char *s = json_string_value(ev);
                CHECK(s != NULL);
                char got[32];
                switch (t.dtype) {
                case MU_I8: snprintf(got, sizeof got, "%d", ((const int8_t *)t.data)[k]); break;
                case MU_U8: snprintf(got, sizeof got, "%u", ((const uint8_t *)t.data)[k]); break;
                case MU_I16: snprintf(got, sizeof got, "%d", ((const int16_t *)t.data)[k]); break;
                case MU_U16: snprintf(got, sizeof got, "%u", ((const uint16_t *)t.data)[k]); break;
                case MU_I32: snprintf(got, sizeof got, "%d", ((const int32_t *)t.data)[k]); break;
                case MU_U32: snprintf(got, sizeof got, "%u", ((const uint32_t *)t.data)[k]); break;
                case MU_I64: snprintf(got, sizeof got, "%lld", (long long)((const int64_t *)t.data)[k]); break;
                case MU_U64: snprintf(got, sizeof got, "%llu", (unsigned long long)((const uint64_t *)t.data)[k]); break;
                default: CHECK(0);
                }
                CHECK_MSG(strcmp(got, s) == 0, "%s[%zu]: %s vs %s", name, k, got, s);
            }
            }
        }
    }
    CHECK_EQ_INT(mu_reader_next(r, &o), 1);            /* the plain-values record */
    json_t *plain = json_object_get(j, "plain");
    char *text = mu_obj_strdup(mu_obj_get(o, "text"));
    CHECK_STR(text, json_string_value(json_object_get(plain, "text")));
    free(text);
    const msgpack_object *ints = mu_obj_get(o, "ints");
    CHECK(ints && ints->type == MSGPACK_OBJECT_ARRAY && ints->via.array.size == 4);
    for (int k = 0; k < 4; k++) {
        int64_t v;
        CHECK(mu_obj_int(&ints->via.array.ptr[k], &v) == 0);
        CHECK_EQ_INT(v, json_integer_value(json_array_get(json_object_get(plain, "ints"), (size_t)k)));
    }
    double x;
    CHECK(mu_obj_f64(mu_obj_get(o, "x"), &x) == 0 && x == 0.25);
    CHECK_EQ_INT(mu_reader_next(r, &o), 0);
    CHECK_EQ_INT(mu_reader_record_index(r) + 1, json_integer_value(json_object_get(j, "nrecords")));
    mu_reader_close(r);
    json_decref(j);
}

static uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

TEST(roundtrip_large_tensor_over_64mib) {
    const char *p = tpath("big.mpk.zst");
    int64_t n = (int64_t)17 << 20;                     /* 17 Mi floats = 68 MiB */
    float *x = malloc((size_t)n * sizeof *x);
    CHECK(x);
    for (int64_t i = 0; i < n; i++) x[i] = (float)(int32_t)(mix((uint64_t)i) >> 40) * 1e-3f;
    mu_writer *w = mu_writer_open(p, "activations");
    msgpack_packer *pk = mu_writer_record(w);
    msgpack_pack_map(pk, 1);
    mu_pack_kv_tensor(pk, "x", MU_F32, 1, &n, x);
    mu_writer_end_record(w);
    pk = mu_writer_record(w);
    msgpack_pack_map(pk, 1);
    mu_pack_kv_int(pk, "after", 1);
    mu_writer_end_record(w);
    mu_writer_close(w);
    char err[1024];
    mu_reader *r = mu_reader_open(p, NULL, err, sizeof err);
    CHECK_MSG(r, "%s", err);
    const msgpack_object *o;
    CHECK_EQ_INT(mu_reader_next(r, &o), 1);
    mu_tensor_view t;
    CHECK_MSG(mu_obj_tensor(mu_obj_get(o, "x"), &t, err, sizeof err) == 0, "%s", err);
    CHECK_EQ_INT(t.shape[0], n);
    CHECK(memcmp(t.data, x, (size_t)n * 4) == 0);
    CHECK_EQ_INT(mu_reader_next(r, &o), 1);
    int64_t v;
    CHECK(mu_obj_int(mu_obj_get(o, "after"), &v) == 0 && v == 1);
    CHECK_EQ_INT(mu_reader_next(r, &o), 0);
    mu_reader_close(r);
    free(x);
}

static long count_frames(const char *path) {
    size_t n;
    uint8_t *b = mu_test_slurp(path, &n);
    long frames = 0;
    for (size_t off = 0; off < n;) {
        size_t k = ZSTD_findFrameCompressedSize(b + off, n - off);
        CHECK(!ZSTD_isError(k));
        uint32_t magic = (uint32_t)b[off] | (uint32_t)b[off + 1] << 8 | (uint32_t)b[off + 2] << 16 | (uint32_t)b[off + 3] << 24;
        if ((magic & 0xFFFFFFF0u) != 0x184D2A50u) frames++;   /* data frames, not the end marker */
        off += k;
    }
    free(b);
    return frames;
}

TEST(many_records_and_frame_flushes) {
    const char *p = tpath("many.mpk.zst"), *q = tpath("auto.mpk.zst");
    mu_writer *w = mu_writer_open(p, "scores");
    long nrec = 50000;
    for (long i = 0; i < nrec; i++) {
        msgpack_packer *pk = mu_writer_record(w);
        msgpack_pack_map(pk, 2);
        mu_pack_kv_int(pk, "i", i);
        mu_pack_kv_f64(pk, "s", (double)mix((uint64_t)i) / 3.0);
        mu_writer_end_record(w);
        if (i % 1000 == 999) mu_writer_flush(w);
    }
    mu_writer_close(w);
    CHECK_EQ_INT(count_frames(p), 50);                 /* one frame per explicit flush */
    readout ro = read_all(p, "scores");
    CHECK_MSG(ro.rc == 0, "%s", ro.err);
    CHECK_EQ_INT(ro.n, nrec);
    readout_free(&ro);
    char err[1024];
    mu_reader *r = mu_reader_open(p, "scores", err, sizeof err);
    const msgpack_object *o;
    for (long i = 0; i < nrec; i++) {
        CHECK_EQ_INT(mu_reader_next(r, &o), 1);
        int64_t v;
        double s;
        CHECK(mu_obj_int(mu_obj_get(o, "i"), &v) == 0 && v == i);
        CHECK(mu_obj_f64(mu_obj_get(o, "s"), &s) == 0 && s == (double)mix((uint64_t)i) / 3.0);
    }
    CHECK_EQ_INT(mu_reader_next(r, &o), 0);
    mu_reader_close(r);

    /* without explicit flushes, a frame ends after every ~1 MiB of records */
    w = mu_writer_open(q, "scores");
    uint8_t blob[4096];
    for (int i = 0; i < 1280; i++) {                   /* 5 MiB */
        for (size_t k = 0; k < sizeof blob; k++) blob[k] = (uint8_t)mix((uint64_t)i * 4096 + k);
        msgpack_packer *pk = mu_writer_record(w);
        msgpack_pack_map(pk, 1);
        mu_pack_str(pk, "b");
        msgpack_pack_bin(pk, sizeof blob);
        msgpack_pack_bin_body(pk, blob, sizeof blob);
        mu_writer_end_record(w);
    }
    mu_writer_close(w);
    long frames = count_frames(q);
    CHECK_MSG(frames >= 5 && frames <= 6, "%ld frames", frames);
    ro = read_all(q, "scores");
    CHECK_MSG(ro.rc == 0 && ro.n == 1280, "%s", ro.err);
    readout_free(&ro);
}

TEST(empty_stream_is_header_only) {
    const char *p = tpath("e.mpk.zst");
    mu_writer *w = mu_writer_open(p, "metrics");
    mu_pack_str(mu_writer_meta(w, "note"), "nothing");
    mu_writer_close(w);
    CHECK_EQ_INT(count_frames(p), 1);
    readout ro = read_all(p, "metrics");
    CHECK_MSG(ro.rc == 0, "%s", ro.err);
    CHECK_EQ_INT(ro.n, 0);
}

/* A writer in another process flushes; the reader gets the record while the writer
 * still waits (a stalled pipe would hang: alarm turns that into a failure). */
TEST(pipe_reader_sees_flushed_records) {
    int data[2], go[2];
    CHECK(pipe(data) == 0 && pipe(go) == 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(data[0]); close(go[1]);
        dup2(data[1], 1);
        close(data[1]);
        mu_cli_init("mu-test", 0, NULL);
        mu_writer *w = mu_writer_open("-", "log");
        msgpack_packer *pk = mu_writer_record(w);
        msgpack_pack_map(pk, 1);
        mu_pack_kv_int(pk, "step", 1);
        mu_writer_end_record(w);
        mu_writer_flush(w);
        char c;
        if (read(go[0], &c, 1) != 1) _exit(3);      /* wait until the reader has record 0 */
        pk = mu_writer_record(w);
        msgpack_pack_map(pk, 1);
        mu_pack_kv_int(pk, "step", 2);
        mu_writer_end_record(w);
        mu_writer_close(w);
        _exit(0);
    }
    close(data[1]); close(go[0]);
    dup2(data[0], 0);
    close(data[0]);
    alarm(20);
    char err[1024];
    mu_reader *r = mu_reader_open("-", "log", err, sizeof err);
    CHECK_MSG(r, "%s", err);
    CHECK_STR(mu_reader_path(r), "<stdin>");
    const msgpack_object *o;
    int64_t v;
    CHECK_EQ_INT(mu_reader_next(r, &o), 1);
    CHECK(mu_obj_int(mu_obj_get(o, "step"), &v) == 0 && v == 1);
    CHECK(write(go[1], "x", 1) == 1);
    CHECK_EQ_INT(mu_reader_next(r, &o), 1);
    CHECK(mu_obj_int(mu_obj_get(o, "step"), &v) == 0 && v == 2);
    CHECK_EQ_INT(mu_reader_next(r, &o), 0);
    mu_reader_close(r);
    int st;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    alarm(0);
}

static void write_counting(const char *path, const char *kind, int from, int to) {
    mu_writer *w = mu_writer_open(path, kind);
    for (int i = from; i < to; i++) {
        msgpack_packer *pk = mu_writer_record(w);
        msgpack_pack_map(pk, 1);
        mu_pack_kv_int(pk, "i", i);
        mu_writer_end_record(w);
    }
    mu_writer_close(w);
}

TEST(concatenated_streams_read_as_one) {
    const char *a = tpath("a.mpk.zst"), *b = tpath("b.mpk.zst"), *c = tpath("c.mpk.zst"), *m = tpath("m.mpk.zst");
    write_counting(a, "tokens", 0, 3);
    write_counting(b, "tokens", 3, 5);
    size_t na, nb;
    uint8_t *ba = mu_test_slurp(a, &na), *bb = mu_test_slurp(b, &nb);
    uint8_t *cat = malloc(na + nb);
    memcpy(cat, ba, na);
    memcpy(cat + na, bb, nb);
    mu_test_spit(c, cat, na + nb);
    char err[1024];
    mu_reader *r = mu_reader_open(c, "tokens", err, sizeof err);
    CHECK_MSG(r, "%s", err);
    const msgpack_object *o;
    for (int i = 0; i < 5; i++) {
        CHECK_EQ_INT(mu_reader_next(r, &o), 1);
        int64_t v;
        CHECK(mu_obj_int(mu_obj_get(o, "i"), &v) == 0 && v == i);
        CHECK_EQ_INT(mu_reader_record_index(r), i);
    }
    CHECK_EQ_INT(mu_reader_next(r, &o), 0);
    mu_reader_close(r);

    /* a later header of another kind is an error at that point */
    write_counting(m, "mask", 0, 2);
    size_t nm;
    uint8_t *bm = mu_test_slurp(m, &nm);
    cat = realloc(cat, na + nm);
    memcpy(cat + na, bm, nm);
    mu_test_spit(c, cat, na + nm);
    readout ro = read_all(c, "tokens");
    CHECK_EQ_INT(ro.rc, -1);
    CHECK_EQ_INT(ro.n, 3);
    char want[4200];
    snprintf(want, sizeof want, "%s: record 3: concatenated stream of kind mask, expected tokens", c);
    CHECK_STR(ro.err, want);
    readout_free(&ro);

    /* after an end marker, only a new header may follow */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    mu_pack_kv_int(&pk, "i", 99);
    const char *x = tpath("x.zst");
    spit_zstd(x, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    size_t nx;
    uint8_t *bx = mu_test_slurp(x, &nx);
    cat = realloc(cat, na + nx);
    memcpy(cat + na, bx, nx);
    mu_test_spit(c, cat, na + nx);
    ro = read_all(c, "tokens");
    snprintf(want, sizeof want, "%s: record 3: corrupt: a record after the end marker of its stream", c);
    CHECK_STR(ro.err, want);
    CHECK_EQ_INT(ro.n, 3);
    readout_free(&ro);
    free(bx);
    free(ba); free(bb); free(bm); free(cat);
}

/* ---------------------------------------------------------------- errors */

TEST(wrong_kind_names_file_and_kinds) {
    const char *p = tpath("k.mpk.zst");
    write_counting(p, "mask", 0, 1);
    char err[1024], want[4200];
    CHECK(mu_reader_open(p, "tokens", err, sizeof err) == NULL);
    snprintf(want, sizeof want, "%s: header: expected kind tokens, got mask", p);
    CHECK_STR(err, want);
}

TEST(unknown_major_version) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack_header(&pk, "tokens", 2, 0);
    msgpack_pack_map(&pk, 0);
    const char *p = tpath("v2.mpk.zst");
    spit_zstd(p, sb.data, sb.size);
    char err[1024], want[4200];
    CHECK(mu_reader_open(p, NULL, err, sizeof err) == NULL);
    snprintf(want, sizeof want, "%s: header: unsupported stream version 2.0 (this mu reads 1.x)", p);
    CHECK_STR(err, want);
    /* a newer minor version of major 1 is read */
    msgpack_sbuffer_clear(&sb);
    pack_header(&pk, "tokens", 1, 9);
    msgpack_pack_map(&pk, 0);
    spit_zstd(p, sb.data, sb.size);
    readout ro = read_all(p, "tokens");
    CHECK_MSG(ro.rc == 0 && ro.n == 1, "%s", ro.err);
    readout_free(&ro);
    msgpack_sbuffer_destroy(&sb);
}

static int tensor_err(const char *dtype, int ndim, const int64_t *shape, size_t nbytes, char *err, size_t errlen) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    mu_pack_kv_str(&pk, "dtype", dtype);
    mu_pack_str(&pk, "shape");
    msgpack_pack_array(&pk, (size_t)ndim);
    for (int i = 0; i < ndim; i++) msgpack_pack_int64(&pk, shape[i]);
    mu_pack_str(&pk, "data");
    static char zeros[64];
    msgpack_pack_bin(&pk, nbytes);
    msgpack_pack_bin_body(&pk, zeros, nbytes);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    CHECK(msgpack_unpack_next(&u, sb.data, sb.size, &off) == MSGPACK_UNPACK_SUCCESS);
    mu_tensor_view t;
    int rc = mu_obj_tensor(&u.data, &t, err, errlen);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

TEST(tensor_validation_errors) {
    char err[512];
    int64_t s3[] = {3}, s23[] = {2, 3}, neg[] = {2, -3}, big[] = {INT64_MAX / 2, 4};
    int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    CHECK(tensor_err("f32", 1, s3, 12, err, sizeof err) == 0);
    CHECK(tensor_err("f32", 1, s3, 8, err, sizeof err) == -1);
    CHECK_STR(err, "tensor data is 8 bytes but shape [3] of f32 needs 12");
    CHECK(tensor_err("bf16", 2, s23, 13, err, sizeof err) == -1);
    CHECK_STR(err, "tensor data is 13 bytes but shape [2,3] of bf16 needs 12");
    CHECK(tensor_err("f31", 1, s3, 12, err, sizeof err) == -1);
    CHECK_STR(err, "tensor dtype \"f31\" is unknown");
    CHECK(tensor_err("f32", 2, neg, 0, err, sizeof err) == -1);
    CHECK_STR(err, "tensor shape[1] is not a non-negative integer");
    CHECK(tensor_err("f64", 2, big, 0, err, sizeof err) == -1);
    CHECK(strstr(err, "too large") != NULL);
    CHECK(tensor_err("u8", 9, nine, 1, err, sizeof err) == -1);
    CHECK_STR(err, "tensor has 9 dimensions (at most 8)");
    CHECK(tensor_err("i64", 0, s3, 8, err, sizeof err) == 0); /* a scalar */
    mu_tensor_view t;
    msgpack_object nil = {.type = MSGPACK_OBJECT_NIL};
    CHECK(mu_obj_tensor(&nil, &t, err, sizeof err) == -1);
    CHECK(mu_obj_tensor(NULL, &t, err, sizeof err) == -1);
}

static void die_on_bad_tensor(const char *path) {
    mu_cli_init("mu-test", 0, NULL);
    mu_reader *r = mu_reader_open_or_die(path, "tokens");
    const msgpack_object *o = mu_reader_next_or_die(r);
    mu_tensor_view t;
    mu_reader_tensor_or_die(r, o, "good", &t);
    if (t.nbytes != 12) _exit(5);
    mu_reader_tensor_or_die(r, o, "bad", &t);
    _exit(0);
}

TEST(tensor_or_die_names_file_record_key) {
    const char *p = tpath("bad.mpk.zst");
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack_header(&pk, "tokens", 1, 0);
    msgpack_pack_map(&pk, 2);
    int64_t s3[1] = {3};
    float x[3] = {1, 2, 3};
    mu_pack_kv_tensor(&pk, "good", MU_F32, 1, s3, x);
    mu_pack_str(&pk, "bad");
    msgpack_pack_map(&pk, 3);
    mu_pack_kv_str(&pk, "dtype", "i64");
    mu_pack_str(&pk, "shape");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_int(&pk, 2);
    mu_pack_str(&pk, "data");
    msgpack_pack_bin(&pk, 12);
    msgpack_pack_bin_body(&pk, x, 12);
    spit_zstd(p, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    int fds[2];
    CHECK(pipe(fds) == 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) { dup2(fds[1], 2); close(fds[0]); die_on_bad_tensor(p); }
    close(fds[1]);
    char err[1024];
    ssize_t n = read(fds[0], err, sizeof err - 1);
    err[n > 0 ? n : 0] = 0;
    int st;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    char want[4200];
    snprintf(want, sizeof want, "mu-test: %s: record 0: bad: tensor data is 12 bytes but shape [2] of i64 needs 16\n", p);
    CHECK_STR(err, want);
}

static int bad_record_mode;
static void write_bad_record(const char *path) {
    mu_cli_init("mu-test", 0, NULL);
    mu_writer *w = mu_writer_open(path, "log");
    msgpack_packer *pk = mu_writer_record(w);            /* record 0 is fine */
    msgpack_pack_map(pk, 1);
    mu_pack_kv_str(pk, "k", "v");
    mu_writer_end_record(w);
    pk = mu_writer_record(w);
    switch (bad_record_mode) {
    case 0: msgpack_pack_array(pk, 1); msgpack_pack_int(pk, 1); break;      /* not a map */
    case 1: msgpack_pack_map(pk, 0); msgpack_pack_map(pk, 0); break;        /* two objects */
    case 2: msgpack_pack_map(pk, 2); mu_pack_kv_int(pk, "a", 1); break;     /* one entry short */
    case 3: break;                                                          /* nothing */
    }
    mu_writer_end_record(w);
    mu_writer_close(w);
    _exit(0);
}

/* A tool that packs a record wrongly learns it at once, not from a reader later; and no
 * file is left behind. */
TEST(writer_rejects_records_that_are_not_one_map) {
    static const char *want[] = {"(1 objects, not a map)", "(2 objects)", "(1 objects, unfinished)", "(0 objects)"};
    for (bad_record_mode = 0; bad_record_mode < 4; bad_record_mode++) {
        const char *p = tpath("w.mpk.zst");
        int fds[2];
        CHECK(pipe(fds) == 0);
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) { dup2(fds[1], 2); close(fds[0]); write_bad_record(p); }
        close(fds[1]);
        char err[1024];
        ssize_t n = read(fds[0], err, sizeof err - 1);
        err[n > 0 ? n : 0] = 0;
        close(fds[0]);
        int st;
        waitpid(pid, &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1);
        char line[4300];
        snprintf(line, sizeof line, "mu-test: internal error: %s: record 1 is not exactly one msgpack map %s\n", p,
                 want[bad_record_mode]);
        CHECK_STR(err, line);
        char cmd[4500];
        snprintf(cmd, sizeof cmd, "test -z \"$(ls -A %s)\"", mu_test_tmpdir());
        CHECK_MSG(system(cmd) == 0, "files left behind in %s", mu_test_tmpdir());
    }
}

static void write_bad_meta(const char *path) {
    mu_cli_init("mu-test", 0, NULL);
    mu_writer *w = mu_writer_open(path, "log");
    msgpack_pack_int(mu_writer_meta(w, "a"), 1);
    mu_writer_meta(w, "b");                               /* forgot the value */
    mu_writer_close(w);
    _exit(0);
}

TEST(writer_rejects_meta_key_without_value) {
    const char *p = tpath("m.mpk.zst");
    int fds[2];
    CHECK(pipe(fds) == 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) { dup2(fds[1], 2); close(fds[0]); write_bad_meta(p); }
    close(fds[1]);
    char err[1024];
    ssize_t n = read(fds[0], err, sizeof err - 1);
    err[n > 0 ? n : 0] = 0;
    int st;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    char want[4300];
    snprintf(want, sizeof want, "mu-test: internal error: %s: header meta has 2 keys but a key without a value\n", p);
    CHECK_STR(err, want);
}

TEST(object_accessors) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    mu_pack_kv_int(&pk, "neg", -5);
    mu_pack_str(&pk, "huge");
    msgpack_pack_uint64(&pk, UINT64_MAX);
    mu_pack_kv_f64(&pk, "f", 2.5);
    mu_pack_kv_str(&pk, "s", "abc");
    msgpack_pack_int(&pk, 7);                          /* a non-string key */
    msgpack_pack_int(&pk, 8);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    CHECK(msgpack_unpack_next(&u, sb.data, sb.size, &off) == MSGPACK_UNPACK_SUCCESS);
    const msgpack_object *m = &u.data;
    int64_t v;
    double d;
    CHECK(mu_obj_int(mu_obj_get(m, "neg"), &v) == 0 && v == -5);
    CHECK(mu_obj_int(mu_obj_get(m, "huge"), &v) == -1);   /* does not fit int64 */
    CHECK(mu_obj_int(mu_obj_get(m, "f"), &v) == -1);
    CHECK(mu_obj_f64(mu_obj_get(m, "f"), &d) == 0 && d == 2.5);
    CHECK(mu_obj_f64(mu_obj_get(m, "neg"), &d) == 0 && d == -5);
    CHECK(mu_obj_f64(mu_obj_get(m, "s"), &d) == -1);
    CHECK(mu_obj_get(m, "missing") == NULL);
    CHECK(mu_obj_get(mu_obj_get(m, "s"), "x") == NULL);   /* not a map */
    CHECK(mu_obj_streq(mu_obj_get(m, "s"), "abc"));
    CHECK(!mu_obj_streq(mu_obj_get(m, "s"), "ab"));
    CHECK(!mu_obj_streq(mu_obj_get(m, "neg"), "-5"));
    char *s = mu_obj_strdup(mu_obj_get(m, "s"));
    CHECK_STR(s, "abc");
    free(s);
    CHECK(mu_obj_strdup(mu_obj_get(m, "f")) == NULL);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
}

static void expect_open_error(const char *path, const char *what) {
    char err[1024], want[4200];
    mu_reader *r = mu_reader_open(path, NULL, err, sizeof err);
    CHECK_MSG(r == NULL, "opened %s", path);
    snprintf(want, sizeof want, "%s: %s", path, what);
    CHECK_STR(err, want);
}

TEST(not_a_stream_errors) {
    const char *p = tpath("x");
    mu_test_spit(p, "", 0);
    expect_open_error(p, "header: empty file, not a mu stream");
    mu_test_spit(p, "hello world, not zstd at all", 28);
    expect_open_error(p, "header: not a mu stream (no zstd frame magic)");
    expect_open_error(tpath("missing"), "cannot open: No such file or directory");
    spit_zstd(p, "", 0);                               /* a valid zstd frame, no objects */
    expect_open_error(p, "header: no header: the stream is empty");
    spit_zstd(p, "\x93\x01\x02\x03", 4);               /* msgpack, but an array */
    expect_open_error(p, "header: not a mu stream (no \"format\":\"mu-stream\" header)");
    spit_zstd(p, "\x81\xa6" "format" "\xa3" "abc", 12);
    expect_open_error(p, "header: not a mu stream (no \"format\":\"mu-stream\" header)");
    /* a mu-stream header without a version, with a version of one number, without a kind */
    spit_zstd(p, "\x81\xa6" "format" "\xa9" "mu-stream", 18);
    expect_open_error(p, "header: header has no valid \"version\":[major,minor]");
    spit_zstd(p, "\x82\xa6" "format" "\xa9" "mu-stream" "\xa7" "version" "\x91\x01", 28);
    expect_open_error(p, "header: header has no valid \"version\":[major,minor]");
    spit_zstd(p, "\x82\xa6" "format" "\xa9" "mu-stream" "\xa7" "version" "\x92\x01\x00", 29);
    expect_open_error(p, "header: header has no \"kind\" string");

    /* records that are not maps */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack_header(&pk, "tokens", 1, 0);
    msgpack_pack_map(&pk, 0);
    msgpack_pack_array(&pk, 0);
    spit_zstd(p, sb.data, sb.size);
    readout ro = read_all(p, NULL);
    CHECK_EQ_INT(ro.rc, -1);
    CHECK_EQ_INT(ro.n, 1);
    char want[4200];
    snprintf(want, sizeof want, "%s: record 1: not a map (a array)", p);
    CHECK_STR(ro.err, want);
    readout_free(&ro);

    /* garbage after a complete frame */
    size_t n;
    write_counting(p, "tokens", 0, 2);
    uint8_t *b = mu_test_slurp(p, &n);
    b = realloc(b, n + 8);
    memcpy(b + n, "GARBAGE!", 8);
    mu_test_spit(p, b, n + 8);
    ro = read_all(p, NULL);
    CHECK_EQ_INT(ro.rc, -1);
    CHECK_EQ_INT(ro.n, 2);
    snprintf(want, sizeof want, "%s: record 2: corrupt: data after a zstd frame is not a zstd frame", p);
    CHECK_STR(ro.err, want);
    readout_free(&ro);
    free(b);
    msgpack_sbuffer_destroy(&sb);
}

/* A header then raw bytes as the next object. */
static readout read_hostile(const void *raw, size_t n) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack_header(&pk, "tokens", 1, 0);
    msgpack_sbuffer_write(&sb, raw, n);
    const char *p = tpath("hostile.mpk.zst");
    spit_zstd(p, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    return read_all(p, NULL);
}

static void expect_hostile(const void *raw, size_t n, const char *what) {
    readout ro = read_hostile(raw, n);
    CHECK_EQ_INT(ro.rc, -1);
    CHECK_EQ_INT(ro.n, 0);
    CHECK_MSG(strstr(ro.err, what) != NULL, "'%s' lacks '%s'", ro.err, what);
    CHECK_MSG(strstr(ro.err, "hostile.mpk.zst: record 0: ") != NULL, "%s", ro.err);
    readout_free(&ro);
}

/* Lengths and counts that the data does not back never turn into allocations
 * (under ASan a huge malloc would abort the test). */
TEST(hostile_msgpack_fails_cleanly) {
    expect_hostile("\x81\xa1x\xc6\xff\xff\xff\xff" "abc", 11, "record larger than the limit");   /* 4 GiB bin */
    expect_hostile("\x81\xa1x\xc6\x7f\xff\xff\xf0" "abc", 11, "truncated");                      /* 2 GiB bin, 3 bytes */
    expect_hostile("\x81\xa1x\xdd\xff\xff\xff\xff\x01\x02", 10, "truncated");                   /* 4G-item array */
    expect_hostile("\xdf\x7f\xff\xff\xff\x01\x02", 7, "truncated");                               /* 2G-pair map */
    expect_hostile("\x81\xa1x\xc1", 4, "invalid msgpack (byte 0xc1)");
    expect_hostile("\x81\xa1x\xdb\xff\xff\xff\xff", 8, "record larger than the limit");          /* 4 GiB str */
    uint8_t deep[200];
    memset(deep, 0x91, sizeof deep);                   /* [[[[...]]]] 200 deep */
    deep[199] = 0x01;
    expect_hostile(deep, sizeof deep, "nested deeper than 32");
    /* a record over the configured limit */
    mu_stream_max_record = 1000;
    uint8_t rec[2000];
    rec[0] = 0x81; rec[1] = 0xa1; rec[2] = 'x'; rec[3] = 0xc5; rec[4] = 0x07; rec[5] = 0xc0;
    memset(rec + 6, 7, sizeof rec - 6);
    expect_hostile(rec, 6 + 0x7c0, "record larger than the limit of 1000 bytes");
    mu_stream_max_record = (size_t)4 << 30;
    readout ro = read_hostile(rec, 6 + 0x7c0);
    CHECK_MSG(ro.rc == 0 && ro.n == 1, "%s", ro.err);
    readout_free(&ro);
}

/* Bounded memory: reading 48 MiB of 12 KiB records keeps the peak RSS far below the
 * stream size (skipped under ASan, whose quarantine holds freed memory). */
TEST(reading_memory_is_bounded_by_record_size) {
#if defined(__SANITIZE_ADDRESS__)
    SKIP("RSS is not meaningful under AddressSanitizer");
#else
    const char *p = tpath("mem.mpk.zst");
    mu_writer *w = mu_writer_open(p, "activations");
    static uint64_t blob[1536];                        /* 12 KiB, incompressible */
    for (int i = 0; i < 4096; i++) {
        for (int k = 0; k < 1536; k++) blob[k] = mix((uint64_t)i * 1536 + (uint64_t)k);
        int64_t shape[1] = {1536};
        msgpack_packer *pk = mu_writer_record(w);
        msgpack_pack_map(pk, 1);
        mu_pack_kv_tensor(pk, "x", MU_U64, 1, shape, blob);
        mu_writer_end_record(w);
    }
    mu_writer_close(w);
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    char err[1024];
    mu_reader *r = mu_reader_open(p, NULL, err, sizeof err);
    CHECK_MSG(r, "%s", err);
    const msgpack_object *o;
    long n = 0;
    uint64_t sum = 0;
    while (mu_reader_next(r, &o) == 1) {
        mu_tensor_view t;
        CHECK(mu_obj_tensor(mu_obj_get(o, "x"), &t, err, sizeof err) == 0);
        sum += ((const uint64_t *)t.data)[1535];
        n++;
    }
    mu_reader_close(r);
    getrusage(RUSAGE_SELF, &ru1);
    CHECK_EQ_INT(n, 4096);
    long grew_kib = ru1.ru_maxrss - ru0.ru_maxrss;
    CHECK_MSG(grew_kib < 16 * 1024, "peak RSS grew by %ld KiB reading a 48 MiB stream", grew_kib);
    (void)sum;
#endif
}

/* ---------------------------------------------------------------- corruption sweep */

#define MU_TEST_TRAILER_BYTES 24

static const char *write_small_stream(void) {
    const char *p = tpath("small.mpk.zst");
    mu_writer *w = mu_writer_open(p, "probes");
    msgpack_pack_int(mu_writer_meta(w, "n"), 5);
    for (int i = 0; i < 5; i++) {
        msgpack_packer *pk = mu_writer_record(w);
        float x[4] = {(float)i, 0.5f, -1.25f, 1e-3f * (float)i};
        int64_t shape[1] = {4};
        msgpack_pack_map(pk, 3);
        mu_pack_kv_int(pk, "i", i * 1000);
        mu_pack_kv_str(pk, "name", i % 2 ? "odd" : "even record");
        mu_pack_kv_tensor(pk, "x", MU_F32, 1, shape, x);
        mu_writer_end_record(w);
        if (i == 1 || i == 3) mu_writer_flush(w);      /* three frames */
    }
    mu_writer_close(w);
    return p;
}

/* Each mutated file must read as the original records (a prefix only when cut exactly
 * at a frame boundary) or fail with a message naming the file. */
static void check_mutant(const char *path, const readout *orig, int prefix_ok, const char *what, size_t off) {
    readout ro = read_all(path, "probes");
    if (ro.rc < 0) {
        CHECK_MSG(strncmp(ro.err, path, strlen(path)) == 0 && strlen(ro.err) > strlen(path) + 4,
                  "%s at %zu: bad message '%s'", what, off, ro.err);
        CHECK_MSG(ro.n <= orig->n && same_records(&ro, orig, ro.n), "%s at %zu: wrong record before the error", what, off);
    } else {
        CHECK_MSG(ro.n == orig->n || (prefix_ok && ro.n < orig->n),
                  "%s at %zu: read %ld records silently, want %ld", what, off, ro.n, orig->n);
        CHECK_MSG(same_records(&ro, orig, ro.n), "%s at %zu: different records returned silently", what, off);
    }
    readout_free(&ro);
}

TEST(corruption_truncate_every_offset) {
    const char *p = write_small_stream();
    readout orig = read_all(p, "probes");
    CHECK_MSG(orig.rc == 0 && orig.n == 5, "%s", orig.err);
    size_t n;
    uint8_t *b = mu_test_slurp(p, &n);
    CHECK(count_frames(p) == 3);
    size_t bounds[3], off = 0;
    for (int f = 0; f < 3; f++) { off += ZSTD_findFrameCompressedSize(b + off, n - off); bounds[f] = off; }
    const char *m = tpath("cut.mpk.zst");
    long errors = 0;
    for (size_t cut = 0; cut < n; cut++) {
        mu_test_spit(m, b, cut);
        check_mutant(m, &orig, 0, "truncation", cut);
        readout ro = read_all(m, "probes");
        errors += ro.rc < 0;
        readout_free(&ro);
    }
    CHECK_EQ_INT(errors, (long)n);                     /* every cut, frame boundaries too */
    /* cut exactly after the last frame (before the end marker) */
    mu_test_spit(m, b, bounds[2]);
    readout ro = read_all(m, "probes");
    char want[4200];
    snprintf(want, sizeof want, "%s: record 5: truncated: the stream ends without its end marker (the writer did not finish)", m);
    CHECK_STR(ro.err, want);
    CHECK_EQ_INT(ro.n, 5);
    readout_free(&ro);
    /* a middle frame lost: the end marker's count disagrees */
    uint8_t *holed = malloc(n);
    memcpy(holed, b, bounds[0]);
    memcpy(holed + bounds[0], b + bounds[1], n - bounds[1]);
    mu_test_spit(m, holed, bounds[0] + n - bounds[1]);
    ro = read_all(m, "probes");
    snprintf(want, sizeof want, "%s: record 3: corrupt: the end marker counts 5 records, the stream holds 3 (data lost?)", m);
    CHECK_STR(ro.err, want);
    readout_free(&ro);
    free(holed);
    CHECK_EQ_INT(n - bounds[2], MU_TEST_TRAILER_BYTES);
    free(b);
    readout_free(&orig);
}

TEST(corruption_flip_every_byte) {
    const char *p = write_small_stream();
    readout orig = read_all(p, "probes");
    CHECK_MSG(orig.rc == 0 && orig.n == 5, "%s", orig.err);
    size_t n;
    uint8_t *b = mu_test_slurp(p, &n);
    const char *m = tpath("flip.mpk.zst");
    static const uint8_t patterns[] = {0xff, 0x01, 0x80};
    long errors = 0, total = 0;
    for (size_t k = 0; k < sizeof patterns; k++) {
        for (size_t i = 0; i < n; i++) {
            b[i] ^= patterns[k];
            mu_test_spit(m, b, n);
            b[i] ^= patterns[k];
            char what[32];
            snprintf(what, sizeof what, "xor 0x%02x", patterns[k]);
            check_mutant(m, &orig, 0, what, i);
            readout ro = read_all(m, "probes");
            errors += ro.rc < 0;
            total++;
            readout_free(&ro);
        }
    }
    CHECK_MSG(errors > total * 9 / 10, "only %ld of %ld flips detected", errors, total);
    free(b);
    readout_free(&orig);
}

/* Random msgpack-like bytes inside valid, checksummed frames after a good header: the
 * reader returns maps or a clean error naming the file and record, never crashes (run
 * under ASan by make check SANITIZE=1). Seeded, so a failure reproduces. */
TEST(fuzz_random_msgpack_in_valid_frames) {
    static const uint8_t typical[] = {0x80, 0x81, 0x82, 0x90, 0x91, 0x92, 0xa1, 0xa3, 0xc0, 0xc2, 0xc4, 0xc5,
                                      0xc6, 0xc7, 0xca, 0xcb, 0xcc, 0xd0, 0xd4, 0xd8, 0xd9, 0xdc, 0xdd, 0xde,
                                      0xdf, 0x00, 0x7f, 0xff, 0xc1};
    const char *p = tpath("fuzz.mpk.zst");
    uint64_t state = 12345;
    long ok_records = 0, errors = 0;
    for (int iter = 0; iter < 3000; iter++) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        pack_header(&pk, "tokens", 1, 0);
        int len = 1 + (int)(mix(state++) % 64);
        uint8_t junk[64];
        for (int k = 0; k < len; k++) {
            uint64_t r = mix(state++);
            junk[k] = r % 3 == 0 ? typical[(r >> 8) % sizeof typical] : (uint8_t)(r >> 16);
        }
        if (iter % 2) junk[0] = 0x81 + (uint8_t)(mix(state++) % 3);   /* start like a record */
        msgpack_sbuffer_write(&sb, (const char *)junk, (size_t)len);
        spit_zstd(p, sb.data, sb.size);
        msgpack_sbuffer_destroy(&sb);
        char err[1024];
        mu_reader *r = mu_reader_open(p, "tokens", err, sizeof err);
        CHECK_MSG(r, "iter %d: header rejected: %s", iter, err);
        const msgpack_object *o;
        int rc;
        while ((rc = mu_reader_next(r, &o)) == 1) {
            CHECK(o->type == MSGPACK_OBJECT_MAP);
            ok_records++;
        }
        if (rc < 0) {
            errors++;
            const char *e = mu_reader_error(r);
            CHECK_MSG(strncmp(e, p, strlen(p)) == 0 && strstr(e, ": record "), "iter %d: '%s'", iter, e);
        }
        mu_reader_close(r);
    }
    CHECK(errors > 1000);                                 /* most junk is rejected... */
    CHECK(ok_records > 0);                                /* ...some is a valid map */
}

