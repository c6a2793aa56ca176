/* stream.c — mu record streams: zstd frames (content checksums on) holding msgpack
 * objects, a header map then one map per record. See stream.h and man/mu-stream.5.
 *
 * Writing: records are packed straight into a zstd stream (through a small staging
 * buffer); a frame is ended when >= MU_STREAM_FRAME_BYTES are pending or on
 * mu_writer_flush, so a reader downstream in a pipe sees records promptly.
 *
 * Reading: zstd frames are decompressed into one growing buffer. A record is handed out
 * only once (a) an incremental scanner has seen the whole msgpack object in the buffer,
 * so msgpack-c never allocates for lengths or counts that the data does not back, and
 * (b) the zstd frame holding it has ended and its checksum verified (frames larger than
 * MU_STREAM_HOLD_BYTES are released unverified; the error then comes at the frame end).
 * Memory is bounded by the largest record/frame, not by the stream. */
#define _GNU_SOURCE
#include "stream.h"
#include "cli.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>
#include <zstd_errors.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "mu streams store tensors little-endian; this host is big-endian"
#endif

#define MU_STREAM_FRAME_BYTES ((size_t)1 << 20)   /* end a frame after this much */
#define MU_STREAM_HOLD_BYTES ((size_t)256 << 20)  /* verify frames up to this size first */
#define MU_STREAM_MAX_DEPTH 32                    /* msgpack nesting limit (as msgpack-c) */
#define STAGE_BYTES ((size_t)64 << 10)
/* End marker: a zstd skippable frame (ignored by zstd and other readers) written at
 * close: magic, content size 16, "mu-end\0\0", records of this stream (u64 LE). */
#define MU_TRAILER_MAGIC 0x184D2A5Eu
#define MU_TRAILER_BYTES 24
static const char trailer_tag[8] = "mu-end\0";

size_t mu_stream_max_record = (size_t)4 << 30;

/* Incremental check that a whole msgpack object lies in a buffer. pos is relative to
 * the object start; stack[i] counts the items still expected at nesting level i. */
typedef struct {
    size_t pos;
    int depth;
    int done;                   /* pos is the length of a complete object */
    uint64_t stack[MU_STREAM_MAX_DEPTH];
} scan_state;

/* ======================================================================== writer */

typedef struct {
    uint8_t hb[16];             /* header bytes of the item being read */
    int hb_len, depth, bad, is_map;
    long objects;               /* top-level objects begun */
    uint64_t skip;              /* payload bytes still to come */
    uint64_t stack[MU_STREAM_MAX_DEPTH];
} record_check;

struct mu_writer {
    mu_outfile out;
    char *path;                 /* for messages */
    char *kind;
    ZSTD_CCtx *cctx;
    uint8_t *zout;
    size_t zout_cap;
    uint8_t stage[STAGE_BYTES];
    size_t stage_len;
    msgpack_packer pk;          /* packs into the zstd stream */
    msgpack_sbuffer meta, inputs;
    msgpack_packer meta_pk, inputs_pk;
    int nmeta, ninputs;
    int header_written, in_record;
    size_t frame_bytes;         /* uncompressed bytes in the open frame */
    int in_frame;
    int io_errno;               /* first write error */
    long nrecords;
    record_check check;         /* of the record being packed */
};

static void check_feed(record_check *c, const uint8_t *p, size_t n);
static int scan_object(const uint8_t *p, size_t len, scan_state *s, size_t max, char *msg, size_t msglen);

static void zemit(mu_writer *w, const void *src, size_t len, ZSTD_EndDirective mode) {
    ZSTD_inBuffer zi = {src, len, 0};
    for (;;) {
        ZSTD_outBuffer zo = {w->zout, w->zout_cap, 0};
        size_t left = ZSTD_compressStream2(w->cctx, &zo, &zi, mode);
        if (ZSTD_isError(left)) mu_die("%s: zstd compression failed: %s", w->path, ZSTD_getErrorName(left));
        if (zo.pos && fwrite(w->zout, 1, zo.pos, w->out.fp) != zo.pos && !w->io_errno)
            w->io_errno = errno ? errno : EIO;
        if (mode == ZSTD_e_continue ? zi.pos == zi.size : left == 0) break;
    }
}

static void stage_flush(mu_writer *w) {
    if (w->stage_len) zemit(w, w->stage, w->stage_len, ZSTD_e_continue);
    w->stage_len = 0;
}

static int packer_write(void *data, const char *buf, size_t len) {
    mu_writer *w = data;
    if (w->in_record) check_feed(&w->check, (const uint8_t *)buf, len);
    w->frame_bytes += len;
    w->in_frame = 1;
    if (w->stage_len + len > STAGE_BYTES) stage_flush(w);
    if (len >= STAGE_BYTES) {
        zemit(w, buf, len, ZSTD_e_continue);
    } else {
        if (len) memcpy(w->stage + w->stage_len, buf, len); /* buf may be NULL when len is 0 */
        w->stage_len += len;
    }
    return 0;
}

static void end_frame(mu_writer *w) {
    if (!w->in_frame) return;
    stage_flush(w);
    zemit(w, NULL, 0, ZSTD_e_end);
    if (fflush(w->out.fp) != 0 && !w->io_errno) w->io_errno = errno ? errno : EIO;
    w->frame_bytes = 0;
    w->in_frame = 0;
}

static void check_io(mu_writer *w) {
    if (w->io_errno) mu_die("%s: write failed: %s", w->path, strerror(w->io_errno));
}

mu_writer *mu_writer_open(const char *path, const char *kind) {
    if (strcmp(path, "-") == 0 && isatty(STDOUT_FILENO))
        mu_die("refusing to write a binary %s stream to a terminal (use --out FILE or a pipe)", kind);
    mu_writer *w = mu_xcalloc(1, sizeof *w);
    mu_out_open_or_die(&w->out, path);
    w->path = mu_xstrdup(strcmp(path, "-") == 0 ? "<stdout>" : path);
    w->kind = mu_xstrdup(kind);
    w->cctx = ZSTD_createCCtx();
    if (!w->cctx) mu_die("out of memory (zstd)");
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, 3);
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1);
    w->zout_cap = ZSTD_CStreamOutSize();
    w->zout = mu_xmalloc(w->zout_cap);
    msgpack_packer_init(&w->pk, w, packer_write);
    msgpack_sbuffer_init(&w->meta);
    msgpack_sbuffer_init(&w->inputs);
    msgpack_packer_init(&w->meta_pk, &w->meta, msgpack_sbuffer_write);
    msgpack_packer_init(&w->inputs_pk, &w->inputs, msgpack_sbuffer_write);
    return w;
}

static int digest_path(const char *path, XXH3_state_t *st, uint64_t *size, int depth);

/* Digest of a regular file, or of a directory: its entries (sorted, hidden ones
 * skipped) as name, NUL, the entry's 16-byte digest. */
static int digest_into(const char *path, uint8_t out[16], uint64_t *size, int depth) {
    XXH3_state_t *st = XXH3_createState();
    if (!st) { errno = ENOMEM; return -1; }
    XXH3_128bits_reset(st);
    int rc = digest_path(path, st, size, depth);
    if (rc == 0) {
        XXH128_canonical_t c;
        XXH128_canonicalFromHash(&c, XXH3_128bits_digest(st));
        memcpy(out, c.digest, 16);
    }
    int e = errno;
    XXH3_freeState(st);
    errno = e;
    return rc;
}

static int digest_path(const char *path, XXH3_state_t *st, uint64_t *size, int depth) {
    struct stat sb;
    if (stat(path, &sb) != 0) return -1;
    if (S_ISDIR(sb.st_mode)) {
        if (depth > 8) { errno = ELOOP; return -1; }
        struct dirent **ents;
        int n = scandir(path, &ents, NULL, alphasort);
        if (n < 0) return -1;
        int rc = 0;
        for (int i = 0; i < n; i++) {
            const char *name = ents[i]->d_name;
            if (rc == 0 && name[0] != '.') {
                size_t len = strlen(path) + strlen(name) + 2;
                char *sub = mu_xmalloc(len);
                snprintf(sub, len, "%s/%s", path, name);
                uint8_t d[16];
                rc = digest_into(sub, d, size, depth + 1);
                free(sub);
                XXH3_128bits_update(st, name, strlen(name) + 1);
                XXH3_128bits_update(st, d, 16);
            }
            free(ents[i]);
        }
        free(ents);
        return rc;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t cap = (size_t)1 << 20;
    uint8_t *buf = mu_xmalloc(cap);
    int rc = 0;
    for (;;) {
        ssize_t k = read(fd, buf, cap);
        if (k < 0) { if (errno == EINTR) continue; rc = -1; break; }
        if (k == 0) break;
        XXH3_128bits_update(st, buf, (size_t)k);
        *size += (uint64_t)k;
    }
    int e = errno;
    free(buf);
    close(fd);
    errno = e;
    return rc;
}

static void hex16(const uint8_t d[16], char out[33]) {
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) { out[2 * i] = hx[d[i] >> 4]; out[2 * i + 1] = hx[d[i] & 15]; }
    out[32] = 0;
}

int mu_file_digest(const char *path, char out[33]) {
    uint8_t d[16];
    uint64_t size = 0;
    if (digest_into(path, d, &size, 0) != 0) return -1;
    hex16(d, out);
    return 0;
}

/* A pipe, socket or terminal (stdin, /dev/fd/N of a shell's <(...)): read once, by the tool;
 * a digest would consume it, or hash what is left of it. */
static int is_stream_path(const char *path) {
    struct stat sb;
    if (!strcmp(path, "-")) return 1;
    return stat(path, &sb) == 0 && (S_ISFIFO(sb.st_mode) || S_ISCHR(sb.st_mode) || S_ISSOCK(sb.st_mode));
}

void mu_writer_add_input(mu_writer *w, const char *role, const char *path) {
    mu_writer_add_input_scaled(w, role, path, 1);
}

void mu_writer_add_input_scaled(mu_writer *w, const char *role, const char *path, double scale) {
    if (w->header_written) mu_die("internal error: %s: input added after the first record", w->path);
    msgpack_packer *pk = &w->inputs_pk;
    msgpack_pack_map(pk, scale == 1 ? 4 : 5);
    if (scale != 1) mu_pack_kv_f64(pk, "scale", scale);
    mu_pack_kv_str(pk, "role", role);
    mu_pack_kv_str(pk, "path", path);
    if (is_stream_path(path)) {
        mu_pack_str(pk, "size"); msgpack_pack_nil(pk);
        mu_pack_str(pk, "xxh3"); msgpack_pack_nil(pk);
    } else {
        uint8_t d[16];
        uint64_t size = 0;
        char hex[33];
        if (digest_into(path, d, &size, 0) != 0) mu_die("%s: cannot read input: %s", path, strerror(errno));
        hex16(d, hex);
        mu_pack_kv_int(pk, "size", (int64_t)size);
        mu_pack_kv_str(pk, "xxh3", hex);
    }
    w->ninputs++;
}

msgpack_packer *mu_writer_meta(mu_writer *w, const char *key) {
    if (w->header_written) mu_die("internal error: %s: meta[%s] set after the first record", w->path, key);
    mu_pack_str(&w->meta_pk, key);
    w->nmeta++;
    return &w->meta_pk;
}

/* Number of complete msgpack objects in p[0..n), or -1 if the bytes do not end on an
 * object boundary or are not msgpack. */
static long count_objects(const uint8_t *p, size_t n) {
    long count = 0;
    for (size_t off = 0; off < n; count++) {
        scan_state st;
        char msg[128];
        memset(&st, 0, sizeof st);
        if (scan_object(p + off, n - off, &st, SIZE_MAX, msg, sizeof msg) != 1) return -1;
        off += st.pos;
    }
    return count;
}

static void write_header(mu_writer *w) {
    long nobj = count_objects((const uint8_t *)w->meta.data, w->meta.size);
    if (nobj != 2L * w->nmeta)
        mu_die("internal error: %s: header meta has %d keys but %s", w->path, w->nmeta,
               nobj < 0 ? "an unfinished value" : nobj < 2L * w->nmeta ? "a key without a value" : "extra values");
    msgpack_packer *pk = &w->pk;
    msgpack_pack_map(pk, 7);
    mu_pack_kv_str(pk, "format", MU_STREAM_FORMAT);
    mu_pack_str(pk, "version");
    msgpack_pack_array(pk, 2);
    msgpack_pack_int(pk, MU_STREAM_MAJOR);
    msgpack_pack_int(pk, MU_STREAM_MINOR);
    mu_pack_kv_str(pk, "kind", w->kind);
    mu_pack_str(pk, "producer");
    msgpack_pack_map(pk, 3);
    mu_pack_kv_str(pk, "tool", mu_tool_name);
    mu_pack_kv_str(pk, "version", MU_VERSION);
    mu_pack_str(pk, "args");
    int argc = mu_cli_argc();
    char **argv = mu_cli_argv();
    msgpack_pack_array(pk, argc > 1 ? (size_t)(argc - 1) : 0);
    for (int i = 1; i < argc; i++) mu_pack_str(pk, argv[i]);
    mu_pack_str(pk, "inputs");
    msgpack_pack_array(pk, (size_t)w->ninputs);
    packer_write(w, w->inputs.data, w->inputs.size);
    mu_pack_str(pk, "meta");
    msgpack_pack_map(pk, (size_t)w->nmeta);
    packer_write(w, w->meta.data, w->meta.size);
    mu_pack_str(pk, "trailer");           /* an end marker follows the last frame */
    msgpack_pack_true(pk);
    w->header_written = 1;
}

msgpack_packer *mu_writer_record(mu_writer *w) {
    if (w->in_record) mu_die("internal error: %s: record begun twice", w->path);
    if (!w->header_written) write_header(w);
    memset(&w->check, 0, sizeof w->check);
    w->in_record = 1;
    return &w->pk;
}

void mu_writer_end_record(mu_writer *w) {
    if (!w->in_record) mu_die("internal error: %s: end of a record never begun", w->path);
    w->in_record = 0;
    const record_check *c = &w->check;
    if (c->bad || c->objects != 1 || !c->is_map || c->depth || c->skip || c->hb_len)
        mu_die("internal error: %s: record %ld is not exactly one msgpack map (%ld objects%s)", w->path,
               w->nrecords, c->objects, c->objects == 1 && !c->is_map ? ", not a map" : c->depth || c->skip || c->hb_len ? ", unfinished" : "");
    w->nrecords++;
    if (w->frame_bytes >= MU_STREAM_FRAME_BYTES) end_frame(w);
    check_io(w);
}

void mu_writer_flush(mu_writer *w) {
    if (!w->header_written) write_header(w);
    end_frame(w);
    check_io(w);
}

static void writer_free(mu_writer *w) {
    ZSTD_freeCCtx(w->cctx);
    msgpack_sbuffer_destroy(&w->meta);
    msgpack_sbuffer_destroy(&w->inputs);
    free(w->zout);
    free(w->path);
    free(w->kind);
    free(w);
}

static void write_trailer(mu_writer *w) {
    uint8_t t[MU_TRAILER_BYTES];
    uint32_t magic = MU_TRAILER_MAGIC, size = 16;
    uint64_t n = (uint64_t)w->nrecords;
    memcpy(t, &magic, 4);                 /* little-endian host (checked above) */
    memcpy(t + 4, &size, 4);
    memcpy(t + 8, trailer_tag, 8);
    memcpy(t + 16, &n, 8);
    if (fwrite(t, 1, sizeof t, w->out.fp) != sizeof t && !w->io_errno) w->io_errno = errno ? errno : EIO;
}

void mu_writer_close(mu_writer *w) {
    if (w->in_record) mu_die("internal error: %s: closed inside a record", w->path);
    if (!w->header_written) write_header(w);
    end_frame(w);
    write_trailer(w);
    check_io(w);
    mu_out_commit_or_die(&w->out);
    writer_free(w);
}

/* ---- packing helpers ---- */

void mu_pack_str(msgpack_packer *pk, const char *s) {
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

void mu_pack_kv_str(msgpack_packer *pk, const char *key, const char *val) {
    mu_pack_str(pk, key);
    mu_pack_str(pk, val);
}

void mu_pack_kv_int(msgpack_packer *pk, const char *key, int64_t val) {
    mu_pack_str(pk, key);
    msgpack_pack_int64(pk, val);
}

void mu_pack_kv_f64(msgpack_packer *pk, const char *key, double val) {
    mu_pack_str(pk, key);
    msgpack_pack_double(pk, val);
}

void mu_pack_tensor(msgpack_packer *pk, mu_dtype dt, int ndim, const int64_t *shape, const void *data) {
    int64_t numel = mu_shape_numel(ndim, shape);
    if (numel < 0 || mu_dtype_size(dt) == 0) mu_die("internal error: packing a tensor with a bad shape or dtype");
    uint64_t nbytes = (uint64_t)numel * mu_dtype_size(dt);
    if (numel > 0 && nbytes / (uint64_t)numel != mu_dtype_size(dt)) mu_die("internal error: tensor too large");
    if (nbytes > UINT32_MAX) mu_die("tensor of %llu bytes is too large for one stream record (max 4 GiB)",
                                    (unsigned long long)nbytes);
    msgpack_pack_map(pk, 3);
    mu_pack_kv_str(pk, "dtype", mu_dtype_name(dt));
    mu_pack_str(pk, "shape");
    msgpack_pack_array(pk, (size_t)ndim);
    for (int i = 0; i < ndim; i++) msgpack_pack_int64(pk, shape[i]);
    mu_pack_str(pk, "data");
    msgpack_pack_bin(pk, (size_t)nbytes);
    msgpack_pack_bin_body(pk, data, (size_t)nbytes);
}

void mu_pack_kv_tensor(msgpack_packer *pk, const char *key, mu_dtype dt, int ndim,
                       const int64_t *shape, const void *data) {
    mu_pack_str(pk, key);
    mu_pack_tensor(pk, dt, ndim, shape, data);
}

/* ======================================================================== reader */

static uint64_t be(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

/* Decodes the header of one msgpack item at q (avail bytes). 1: *hdr header bytes, then
 * *payload bytes of data, or *items child items when *container; 0: needs more bytes;
 * -1: not a msgpack type byte. */
static int item_header(const uint8_t *q, size_t avail, size_t *hdr, uint64_t *payload,
                       uint64_t *items, int *container) {
    if (avail == 0) return 0;
    uint8_t b = q[0];
    *hdr = 1;
    *payload = 0;
    *items = 0;
    *container = 0;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) return 1;
    if ((b & 0xf0) == 0x80) { *items = 2u * (b & 0x0f); *container = 1; return 1; }
    if ((b & 0xf0) == 0x90) { *items = b & 0x0f; *container = 1; return 1; }
    if ((b & 0xe0) == 0xa0) { *payload = b & 0x1f; return 1; }
    int lenbytes = 0, ext = 0, per_item = 0;
    switch (b) {
    case 0xc4: case 0xd9: lenbytes = 1; break;               /* bin8, str8 */
    case 0xc5: case 0xda: lenbytes = 2; break;               /* bin16, str16 */
    case 0xc6: case 0xdb: lenbytes = 4; break;               /* bin32, str32 */
    case 0xc7: lenbytes = 1; ext = 1; break;                 /* ext8/16/32: len, type */
    case 0xc8: lenbytes = 2; ext = 1; break;
    case 0xc9: lenbytes = 4; ext = 1; break;
    case 0xca: *payload = 4; return 1;
    case 0xcb: *payload = 8; return 1;
    case 0xcc: case 0xd0: *payload = 1; return 1;
    case 0xcd: case 0xd1: *payload = 2; return 1;
    case 0xce: case 0xd2: *payload = 4; return 1;
    case 0xcf: case 0xd3: *payload = 8; return 1;
    case 0xd4: *payload = 2; return 1;                       /* fixext: type + data */
    case 0xd5: *payload = 3; return 1;
    case 0xd6: *payload = 5; return 1;
    case 0xd7: *payload = 9; return 1;
    case 0xd8: *payload = 17; return 1;
    case 0xdc: lenbytes = 2; per_item = 1; break;            /* array16/32, map16/32 */
    case 0xdd: lenbytes = 4; per_item = 1; break;
    case 0xde: lenbytes = 2; per_item = 2; break;
    case 0xdf: lenbytes = 4; per_item = 2; break;
    default: return -1;                                      /* 0xc1, never used */
    }
    *hdr = 1 + (size_t)lenbytes + (size_t)ext;
    if (avail < *hdr) return 0;
    uint64_t n = be(q + 1, lenbytes);
    if (per_item) { *items = n * (uint64_t)per_item; *container = 1; }
    else *payload = n;
    return 1;
}

/* 1: complete (s->pos = object length); 0: needs more bytes; -1: invalid (msg set). */
static int scan_object(const uint8_t *p, size_t len, scan_state *s, size_t max, char *msg, size_t msglen) {
    if (s->done) return 1;
    for (;;) {
        size_t hdr;
        uint64_t payload, items;
        int container;
        size_t avail = s->pos < len ? len - s->pos : 0;
        int h = item_header(p + s->pos, avail, &hdr, &payload, &items, &container);
        if (h < 0) {
            snprintf(msg, msglen, "invalid msgpack (byte 0x%02x)", p[s->pos]);
            return -1;
        }
        if (h == 0) return 0;
        if (s->pos + hdr + payload > max) {
            snprintf(msg, msglen, "record larger than the limit of %zu bytes", max);
            return -1;
        }
        if (avail < hdr + payload) return 0;
        s->pos += hdr + payload;
        if (container && items > 0) {
            if (s->depth == MU_STREAM_MAX_DEPTH) {
                snprintf(msg, msglen, "msgpack nested deeper than %d levels", MU_STREAM_MAX_DEPTH);
                return -1;
            }
            s->stack[s->depth++] = items;
            continue;
        }
        /* one item finished; close every container it completes */
        while (s->depth > 0 && --s->stack[s->depth - 1] == 0) s->depth--;
        if (s->depth == 0) { s->done = 1; return 1; }
    }
}

/* ---- writer-side check that each record is exactly one msgpack map ---- */

static void check_item_done(record_check *c) {
    while (c->depth > 0 && --c->stack[c->depth - 1] == 0) c->depth--;
}

/* Follows the bytes a caller packs, however the packer splits them into writes. */
static void check_feed(record_check *c, const uint8_t *p, size_t n) {
    while (n > 0 && !c->bad) {
        if (c->skip) {
            size_t k = c->skip < n ? (size_t)c->skip : n;
            c->skip -= k; p += k; n -= k;
            if (!c->skip) check_item_done(c);
            continue;
        }
        c->hb[c->hb_len++] = *p++;
        n--;
        size_t hdr;
        uint64_t payload, items;
        int container;
        int h = item_header(c->hb, (size_t)c->hb_len, &hdr, &payload, &items, &container);
        if (h < 0) { c->bad = 1; return; }
        if (h == 0) continue;
        if (c->depth == 0 && ++c->objects == 1) c->is_map = container && (c->hb[0] & 0xf0) != 0x90 && c->hb[0] != 0xdc && c->hb[0] != 0xdd;
        c->hb_len = 0;
        if (container && items > 0) {
            if (c->depth == MU_STREAM_MAX_DEPTH) { c->bad = 1; return; }
            c->stack[c->depth++] = items;
        } else if (payload) {
            c->skip = payload;
        } else {
            check_item_done(c);
        }
    }
}

struct mu_reader {
    char *path;                 /* display name */
    int fd, own_fd;
    ZSTD_DCtx *dctx;
    uint8_t *in;
    size_t in_cap, in_pos, in_len;
    int in_eof;
    uint64_t total_in;
    uint8_t *buf;               /* decompressed: [start, end) not yet handed out */
    size_t cap, start, end, verified;
    int in_frame;
    size_t frame_bytes;
    scan_state sc;
    msgpack_unpacked cur;
    size_t cur_len;
    int have_cur;
    void *arena;                /* realigned bins of the current record */
    msgpack_zone *hdr_zone;
    char *hdr_bytes;
    msgpack_object hdr;
    char *kind;
    long major;
    long index;                 /* records handed out - 1 */
    long seg_records;           /* records since the latest header */
    int seg_trailer;            /* the latest header announces an end marker */
    int seg_sealed;             /* ... and it has been read */
    int after_trailer;          /* data follows an end marker: must start with a header */
    int failed;
    char err[1024];
};

static int reader_fail(mu_reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int reader_fail(mu_reader *r, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!r->kind) snprintf(r->err, sizeof r->err, "%s: header: %s", r->path, msg);
    else snprintf(r->err, sizeof r->err, "%s: record %ld: %s", r->path, r->index + 1, msg);
    r->failed = 1;
    return -1;
}

static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

/* Makes at least n input bytes available at in_pos unless the input ends first.
 * 0 ok (check in_len - in_pos), -1 read error. */
static int in_ensure(mu_reader *r, size_t n) {
    if (r->in_len - r->in_pos >= n || r->in_eof) return 0;
    memmove(r->in, r->in + r->in_pos, r->in_len - r->in_pos);
    r->in_len -= r->in_pos;
    r->in_pos = 0;
    while (r->in_len < n && !r->in_eof) {
        ssize_t k;
        do k = read(r->fd, r->in + r->in_len, r->in_cap - r->in_len); while (k < 0 && errno == EINTR);
        if (k < 0) return reader_fail(r, "read error: %s", strerror(errno));
        if (k == 0) r->in_eof = 1;
        r->in_len += (size_t)k;
        r->total_in += (uint64_t)k;
    }
    return 0;
}

/* The end marker after the last frame of a stream written by mu: checks the record
 * count of the stream segment it closes. 1 ok, -1 error. */
static int read_trailer(mu_reader *r) {
    if (in_ensure(r, MU_TRAILER_BYTES) < 0) return -1;
    const uint8_t *t = r->in + r->in_pos;
    if (r->in_len - r->in_pos < MU_TRAILER_BYTES) return reader_fail(r, "truncated: the end marker is cut");
    if (le32(t + 4) != 16 || memcmp(t + 8, trailer_tag, 8) != 0) return reader_fail(r, "corrupt: bad end marker");
    if (!r->kind) return reader_fail(r, "an end marker before the header");
    if (r->end > r->start) return reader_fail(r, "truncated: a msgpack object is cut at the end marker");
    uint64_t n;
    memcpy(&n, t + 16, 8);
    if (r->seg_sealed) return reader_fail(r, "corrupt: a second end marker");
    if (n != (uint64_t)r->seg_records)
        return reader_fail(r, "corrupt: the end marker counts %llu records, the stream holds %ld (data lost?)",
                           (unsigned long long)n, r->seg_records);
    r->seg_sealed = 1;
    r->in_pos += MU_TRAILER_BYTES;
    return 1;
}

/* Decompresses more input. 1: progress; 0: clean end of input; -1: error. */
static int reader_fill(mu_reader *r) {
    if (r->cap - r->end < ZSTD_DStreamOutSize()) {
        if (r->start > 0) {
            memmove(r->buf, r->buf + r->start, r->end - r->start);
            r->end -= r->start;
            r->verified = r->verified > r->start ? r->verified - r->start : 0;
            r->start = 0;
        }
        if (r->cap - r->end < ZSTD_DStreamOutSize()) {
            size_t ncap = r->cap * 2;
            if (ncap < r->end + ZSTD_DStreamOutSize()) ncap = r->end + ZSTD_DStreamOutSize();
            uint8_t *nb = realloc(r->buf, ncap);
            if (!nb) return reader_fail(r, "out of memory (%zu bytes buffered)", ncap);
            r->buf = nb;
            r->cap = ncap;
        }
    }
    /* between frames, look for the end marker: that needs its first 8 bytes in hand */
    if (in_ensure(r, r->in_frame ? 1 : 8) < 0) return -1;
    if (r->in_pos == r->in_len) {
        if (r->total_in == 0) return reader_fail(r, "empty file, not a mu stream");
        if (r->in_frame) return reader_fail(r, "truncated: the file ends inside a zstd frame");
        if (r->end > r->start) return reader_fail(r, "truncated: the stream ends inside a msgpack object");
        if (r->seg_trailer && !r->seg_sealed)
            return reader_fail(r, "truncated: the stream ends without its end marker "
                                  "(the writer did not finish)");
        return 0;
    }
    if (!r->in_frame && r->in_len - r->in_pos >= 4 && le32(r->in + r->in_pos) == MU_TRAILER_MAGIC)
        return read_trailer(r);
    if (r->seg_sealed && !r->in_frame && r->kind)
        r->after_trailer = 1;           /* whatever comes next must be a new header */
    int frame_start = !r->in_frame;
    ZSTD_inBuffer zi = {r->in, r->in_len, r->in_pos};
    ZSTD_outBuffer zo = {r->buf + r->end, r->cap - r->end, 0};
    size_t ret = ZSTD_decompressStream(r->dctx, &zo, &zi);
    if (ZSTD_isError(ret)) {
        ZSTD_ErrorCode code = ZSTD_getErrorCode(ret);
        if (code == ZSTD_error_prefix_unknown && frame_start && r->total_in == r->in_len && r->in_pos == 0)
            return reader_fail(r, "not a mu stream (no zstd frame magic)");
        if (code == ZSTD_error_prefix_unknown && frame_start)
            return reader_fail(r, "corrupt: data after a zstd frame is not a zstd frame");
        if (code == ZSTD_error_checksum_wrong)
            return reader_fail(r, "corrupt: zstd frame checksum mismatch");
        if (code == ZSTD_error_frameParameter_windowTooLarge)
            return reader_fail(r, "zstd frame needs a window over 128 MiB (compressed with --long?): "
                                  "recompress with plain zstd");
        return reader_fail(r, "corrupt zstd data: %s", ZSTD_getErrorName(ret));
    }
    r->in_pos = zi.pos;
    r->end += zo.pos;
    r->frame_bytes += zo.pos;
    if (ret == 0) {
        r->in_frame = 0;
        r->verified = r->end;
        r->frame_bytes = 0;
    } else {
        r->in_frame = 1;
    }
    return 1;
}

static size_t release_limit(const mu_reader *r) {
    return r->in_frame && r->frame_bytes <= MU_STREAM_HOLD_BYTES ? r->verified : r->end;
}

static void release_current(mu_reader *r) {
    if (!r->have_cur) return;
    msgpack_unpacked_destroy(&r->cur);
    r->start += r->cur_len;
    r->have_cur = 0;
    free(r->arena);
    r->arena = NULL;
}

/* Next raw object into r->cur. 1: got one; 0: clean end; -1: error. */
static int next_object(mu_reader *r) {
    if (r->failed) return -1;
    release_current(r);
    for (;;) {
        char msg[256];
        int s = scan_object(r->buf + r->start, r->end - r->start, &r->sc, mu_stream_max_record, msg, sizeof msg);
        if (s < 0) return reader_fail(r, "%s", msg);
        if (s == 1 && r->start + r->sc.pos <= release_limit(r)) {
            size_t len = r->sc.pos, off = 0;
            memset(&r->sc, 0, sizeof r->sc);
            msgpack_unpacked_init(&r->cur);
            msgpack_unpack_return ur = msgpack_unpack_next(&r->cur, (const char *)r->buf + r->start, len, &off);
            r->have_cur = 1;
            r->cur_len = len;
            if (ur != MSGPACK_UNPACK_SUCCESS || off != len) {
                release_current(r);
                return reader_fail(r, ur == MSGPACK_UNPACK_NOMEM_ERROR ? "out of memory decoding msgpack"
                                                                       : "invalid msgpack");
            }
            return 1;
        }
        int f = reader_fill(r);
        if (f < 0) return -1;
        if (f == 0) {
            if (r->end > r->start) return reader_fail(r, "truncated: the stream ends inside a msgpack object");
            return 0;
        }
    }
}

static const char *type_name(msgpack_object_type t) {
    switch (t) {
    case MSGPACK_OBJECT_NIL: return "nil";
    case MSGPACK_OBJECT_BOOLEAN: return "boolean";
    case MSGPACK_OBJECT_POSITIVE_INTEGER: case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "integer";
    case MSGPACK_OBJECT_FLOAT32: case MSGPACK_OBJECT_FLOAT64: return "float";
    case MSGPACK_OBJECT_STR: return "string";
    case MSGPACK_OBJECT_ARRAY: return "array";
    case MSGPACK_OBJECT_MAP: return "map";
    case MSGPACK_OBJECT_BIN: return "bin";
    case MSGPACK_OBJECT_EXT: return "ext";
    }
    return "unknown";
}

/* Checks a header map; fills kind/major. -1 with msg on a problem. */
static int check_header(const msgpack_object *h, const char *expect_kind, char **kind, long *major,
                        char *msg, size_t msglen) {
    const msgpack_object *fmt = mu_obj_get(h, "format");
    if (h->type != MSGPACK_OBJECT_MAP || !mu_obj_streq(fmt, MU_STREAM_FORMAT)) {
        snprintf(msg, msglen, "not a mu stream (no \"format\":\"%s\" header)", MU_STREAM_FORMAT);
        return -1;
    }
    const msgpack_object *v = mu_obj_get(h, "version");
    int64_t maj, min;
    if (!v || v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size < 2 ||
        mu_obj_int(&v->via.array.ptr[0], &maj) || mu_obj_int(&v->via.array.ptr[1], &min)) {
        snprintf(msg, msglen, "header has no valid \"version\":[major,minor]");
        return -1;
    }
    if (maj != MU_STREAM_MAJOR) {
        snprintf(msg, msglen, "unsupported stream version %lld.%lld (this mu reads %d.x)",
                 (long long)maj, (long long)min, MU_STREAM_MAJOR);
        return -1;
    }
    char *k = mu_obj_strdup(mu_obj_get(h, "kind"));
    if (!k) {
        snprintf(msg, msglen, "header has no \"kind\" string");
        return -1;
    }
    if (expect_kind && strcmp(k, expect_kind) != 0) {
        snprintf(msg, msglen, "expected kind %s, got %s", expect_kind, k);
        free(k);
        return -1;
    }
    *kind = k;
    *major = (long)maj;
    return 0;
}

static int header_has_trailer(const msgpack_object *h) {
    const msgpack_object *t = mu_obj_get(h, "trailer");
    return t && t->type == MSGPACK_OBJECT_BOOLEAN && t->via.boolean;
}

/* Bins in records may sit at any byte offset; tensor data is copied to an aligned
 * arena when misaligned so that callers can read it as float/int64 directly. */
static size_t misaligned_bytes(const msgpack_object *o) {
    size_t n = 0;
    if (o->type == MSGPACK_OBJECT_BIN && o->via.bin.size > 1 && ((uintptr_t)o->via.bin.ptr & 7))
        n += (o->via.bin.size + 7) & ~(size_t)7;
    else if (o->type == MSGPACK_OBJECT_ARRAY)
        for (uint32_t i = 0; i < o->via.array.size; i++) n += misaligned_bytes(&o->via.array.ptr[i]);
    else if (o->type == MSGPACK_OBJECT_MAP)
        for (uint32_t i = 0; i < o->via.map.size; i++) n += misaligned_bytes(&o->via.map.ptr[i].val);
    return n;
}

static void realign(msgpack_object *o, uint8_t **dst) {
    if (o->type == MSGPACK_OBJECT_BIN && o->via.bin.size > 1 && ((uintptr_t)o->via.bin.ptr & 7)) {
        memcpy(*dst, o->via.bin.ptr, o->via.bin.size);
        o->via.bin.ptr = (const char *)*dst;
        *dst += (o->via.bin.size + 7) & ~(size_t)7;
    } else if (o->type == MSGPACK_OBJECT_ARRAY) {
        for (uint32_t i = 0; i < o->via.array.size; i++) realign(&o->via.array.ptr[i], dst);
    } else if (o->type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < o->via.map.size; i++) realign(&o->via.map.ptr[i].val, dst);
    }
}

static int realign_record(mu_reader *r) {
    size_t n = misaligned_bytes(&r->cur.data);
    if (!n) return 0;
    uint8_t *a = aligned_alloc(64, (n + 63) & ~(size_t)63);
    if (!a) return reader_fail(r, "out of memory (%zu bytes)", n);
    r->arena = a;
    realign(&r->cur.data, &a);
    return 0;
}

static int reader_open_fd(mu_reader *r, const char *expect_kind) {
    r->dctx = ZSTD_createDCtx();
    r->in_cap = ZSTD_DStreamInSize();
    r->in = malloc(r->in_cap);
    r->cap = (size_t)1 << 20;
    r->buf = malloc(r->cap);
    r->index = -1;
    if (!r->dctx || !r->in || !r->buf) return reader_fail(r, "out of memory");
    int got = next_object(r);
    if (got < 0) return -1;
    if (got == 0) return reader_fail(r, "no header: the stream is empty");
    char msg[256];
    char *kind;
    long major;
    if (check_header(&r->cur.data, expect_kind, &kind, &major, msg, sizeof msg) != 0)
        return reader_fail(r, "%s", msg);
    /* keep a private copy of the header: the buffer moves */
    r->hdr_bytes = mu_xmalloc(r->cur_len);
    memcpy(r->hdr_bytes, r->buf + r->start, r->cur_len);
    r->hdr_zone = msgpack_zone_new(MSGPACK_ZONE_CHUNK_SIZE);
    if (!r->hdr_zone || msgpack_unpack(r->hdr_bytes, r->cur_len, NULL, r->hdr_zone, &r->hdr) != MSGPACK_UNPACK_SUCCESS) {
        free(kind);
        return reader_fail(r, "out of memory");
    }
    r->kind = kind;
    r->major = major;
    r->seg_trailer = header_has_trailer(&r->cur.data);
    return 0;
}

mu_reader *mu_reader_open(const char *path, const char *expect_kind, char *err, size_t errlen) {
    mu_reader *r = calloc(1, sizeof *r);
    if (!r) { snprintf(err, errlen, "%s: out of memory", path); return NULL; }
    int is_stdin = strcmp(path, "-") == 0;
    r->path = strdup(is_stdin ? "<stdin>" : path);
    if (!r->path) { free(r); snprintf(err, errlen, "%s: out of memory", path); return NULL; }
    if (is_stdin) {
        r->fd = STDIN_FILENO;
    } else {
        r->fd = open(path, O_RDONLY | O_CLOEXEC);
        if (r->fd < 0) {
            snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
            free(r->path);
            free(r);
            return NULL;
        }
        r->own_fd = 1;
    }
    if (reader_open_fd(r, expect_kind) != 0) {
        snprintf(err, errlen, "%s", r->err);
        mu_reader_close(r);
        return NULL;
    }
    return r;
}

const msgpack_object *mu_reader_header(const mu_reader *r) { return &r->hdr; }
const char *mu_reader_kind(const mu_reader *r) { return r->kind; }
const char *mu_reader_path(const mu_reader *r) { return r->path; }
const char *mu_reader_error(const mu_reader *r) { return r->err; }
long mu_reader_record_index(const mu_reader *r) { return r->index; }

int mu_reader_next(mu_reader *r, const msgpack_object **rec) {
    for (;;) {
        int got = next_object(r);
        if (got <= 0) return got;
        const msgpack_object *o = &r->cur.data;
        if (o->type != MSGPACK_OBJECT_MAP)
            return reader_fail(r, "not a map (a %s)", type_name(o->type));
        if (mu_obj_get(o, "format")) { /* header of a concatenated stream */
            char msg[256], *kind;
            long major;
            if (check_header(o, NULL, &kind, &major, msg, sizeof msg) != 0)
                return reader_fail(r, "concatenated stream: %s", msg);
            int same = strcmp(kind, r->kind) == 0;
            if (!same) {
                reader_fail(r, "concatenated stream of kind %s, expected %s", kind, r->kind);
                free(kind);
                return -1;
            }
            free(kind);
            if (r->seg_trailer && !r->seg_sealed)
                return reader_fail(r, "truncated: a stream ends without its end marker before the next "
                                      "concatenated one (its writer did not finish)");
            r->seg_trailer = header_has_trailer(o);
            r->seg_sealed = 0;
            r->seg_records = 0;
            r->after_trailer = 0;
            continue;
        }
        if (r->after_trailer) return reader_fail(r, "corrupt: a record after the end marker of its stream");
        if (realign_record(r) != 0) return -1;
        r->seg_records++;
        r->index++;
        *rec = &r->cur.data;
        return 1;
    }
}

void mu_reader_close(mu_reader *r) {
    if (!r) return;
    if (r->have_cur) msgpack_unpacked_destroy(&r->cur);
    free(r->arena);
    if (r->hdr_zone) msgpack_zone_free(r->hdr_zone);
    free(r->hdr_bytes);
    free(r->kind);
    if (r->own_fd) close(r->fd);
    ZSTD_freeDCtx(r->dctx);
    free(r->in);
    free(r->buf);
    free(r->path);
    free(r);
}

mu_reader *mu_reader_open_or_die(const char *path, const char *expect_kind) {
    char err[1024];
    mu_reader *r = mu_reader_open(path, expect_kind, err, sizeof err);
    if (!r) mu_die("%s", err);
    return r;
}

const msgpack_object *mu_reader_next_or_die(mu_reader *r) {
    const msgpack_object *rec;
    int got = mu_reader_next(r, &rec);
    if (got < 0) mu_die("%s", r->err);
    return got ? rec : NULL;
}

void mu_reader_tensor_or_die(const mu_reader *r, const msgpack_object *rec, const char *key,
                             mu_tensor_view *t) {
    const msgpack_object *o = key ? mu_obj_get(rec, key) : rec;
    char err[512];
    if (!o) mu_reader_die(r, "no tensor \"%s\"", key);
    if (mu_obj_tensor(o, t, err, sizeof err) != 0) {
        if (key) mu_reader_die(r, "%s: %s", key, err);
        mu_reader_die(r, "%s", err);
    }
}

void mu_reader_die(const mu_reader *r, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (r->index < 0) mu_die("%s: header: %s", r->path, msg);
    mu_die("%s: record %ld: %s", r->path, r->index, msg);
}

/* ======================================================================== objects */

const msgpack_object *mu_obj_get(const msgpack_object *map, const char *key) {
    if (!map || map->type != MSGPACK_OBJECT_MAP) return NULL;
    size_t n = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n && memcmp(k->via.str.ptr, key, n) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

int mu_obj_int(const msgpack_object *o, int64_t *out) {
    if (!o) return -1;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > (uint64_t)INT64_MAX) return -1;
        *out = (int64_t)o->via.u64;
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) { *out = o->via.i64; return 0; }
    return -1;
}

int mu_obj_f64(const msgpack_object *o, double *out) {
    if (!o) return -1;
    switch (o->type) {
    case MSGPACK_OBJECT_FLOAT32: case MSGPACK_OBJECT_FLOAT64: *out = o->via.f64; return 0;
    case MSGPACK_OBJECT_POSITIVE_INTEGER: *out = (double)o->via.u64; return 0;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: *out = (double)o->via.i64; return 0;
    default: return -1;
    }
}

char *mu_obj_strdup(const msgpack_object *o) {
    if (!o || o->type != MSGPACK_OBJECT_STR) return NULL;
    char *s = mu_xmalloc((size_t)o->via.str.size + 1);
    memcpy(s, o->via.str.ptr, o->via.str.size);
    s[o->via.str.size] = 0;
    return s;
}

int mu_obj_streq(const msgpack_object *o, const char *s) {
    if (!o || o->type != MSGPACK_OBJECT_STR) return 0;
    size_t n = strlen(s);
    return o->via.str.size == n && memcmp(o->via.str.ptr, s, n) == 0;
}

int mu_obj_tensor(const msgpack_object *o, mu_tensor_view *t, char *err, size_t errlen) {
    memset(t, 0, sizeof *t);
    if (!o || o->type != MSGPACK_OBJECT_MAP) {
        snprintf(err, errlen, "tensor is not a map");
        return -1;
    }
    const msgpack_object *dt = mu_obj_get(o, "dtype"), *sh = mu_obj_get(o, "shape"), *d = mu_obj_get(o, "data");
    if (!dt || dt->type != MSGPACK_OBJECT_STR) { snprintf(err, errlen, "tensor has no \"dtype\" string"); return -1; }
    if (mu_dtype_parse(dt->via.str.ptr, dt->via.str.size, &t->dtype) != 0) {
        snprintf(err, errlen, "tensor dtype \"%.*s\" is unknown", (int)(dt->via.str.size > 32 ? 32 : dt->via.str.size),
                 dt->via.str.ptr);
        return -1;
    }
    if (!sh || sh->type != MSGPACK_OBJECT_ARRAY) { snprintf(err, errlen, "tensor has no \"shape\" array"); return -1; }
    if (sh->via.array.size > MU_MAX_DIMS) {
        snprintf(err, errlen, "tensor has %u dimensions (at most %d)", sh->via.array.size, MU_MAX_DIMS);
        return -1;
    }
    t->ndim = (int)sh->via.array.size;
    for (int i = 0; i < t->ndim; i++) {
        if (mu_obj_int(&sh->via.array.ptr[i], &t->shape[i]) != 0 || t->shape[i] < 0) {
            snprintf(err, errlen, "tensor shape[%d] is not a non-negative integer", i);
            return -1;
        }
    }
    if (!d || d->type != MSGPACK_OBJECT_BIN) { snprintf(err, errlen, "tensor has no \"data\" bin"); return -1; }
    int64_t numel = mu_shape_numel(t->ndim, t->shape);
    size_t esz = mu_dtype_size(t->dtype);
    char shape_txt[200] = "";
    for (int i = 0, n = 0; i < t->ndim && n < (int)sizeof shape_txt - 24; i++)
        n += snprintf(shape_txt + n, sizeof shape_txt - (size_t)n, "%s%lld", i ? "," : "", (long long)t->shape[i]);
    if (numel < 0 || (numel > 0 && (uint64_t)numel > SIZE_MAX / esz)) {
        snprintf(err, errlen, "tensor shape [%s] is too large", shape_txt);
        return -1;
    }
    size_t need = (size_t)numel * esz;
    if (d->via.bin.size != need) {
        snprintf(err, errlen, "tensor data is %u bytes but shape [%s] of %s needs %zu", d->via.bin.size,
                 shape_txt, mu_dtype_name(t->dtype), need);
        return -1;
    }
    t->data = d->via.bin.ptr;
    t->nbytes = need;
    return 0;
}

void mu_pack_json(msgpack_packer *pk, json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *x;
        msgpack_pack_map(pk, json_object_size(v));
        json_object_foreach(v, k, x) { mu_pack_str(pk, k); mu_pack_json(pk, x); }
        break;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *x;
        msgpack_pack_array(pk, json_array_size(v));
        json_array_foreach(v, i, x) mu_pack_json(pk, x);
        break;
    }
    case JSON_STRING: msgpack_pack_str(pk, json_string_length(v)); msgpack_pack_str_body(pk, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER: msgpack_pack_int64(pk, json_integer_value(v)); break;
    case JSON_REAL: msgpack_pack_double(pk, json_real_value(v)); break;
    case JSON_TRUE: msgpack_pack_true(pk); break;
    case JSON_FALSE: msgpack_pack_false(pk); break;
    default: msgpack_pack_nil(pk); break;
    }
}
