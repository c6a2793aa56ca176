/* stream.h — mu record streams: zstd frames (content checksums on) holding msgpack
 * objects. The first object is the header map:
 *   {"format":"mu-stream", "version":[1,0], "kind":"tokens", "producer":{"tool":..,
 *    "version":.., "args":[..]}, "inputs":[{"role":..,"path":..,"size":..,"xxh3":..}],
 *    "meta":{...kind-specific...}}
 * then one msgpack map per record. Records never have a top-level "format" key.
 * Concatenated streams of the same kind read as one (later headers are checked and
 * skipped). See man/mu-stream.5. Tensors are maps {"dtype":"f32","shape":[..],"data":bin}. */
#ifndef MU_STREAM_H
#define MU_STREAM_H
#include <msgpack.h>
#include <jansson.h>
#include "tensor.h"

#define MU_STREAM_FORMAT "mu-stream"
#define MU_STREAM_MAJOR 1
#define MU_STREAM_MINOR 1

/* ---- writing ---- */
typedef struct mu_writer mu_writer;

/* Opens path ("-" = stdout) for a stream of the given kind; atomic for files (temp +
 * rename at close; the temp is removed on mu_die, a fatal signal or exit without close).
 * Dies when the file cannot be created, or when "-" is a terminal. */
mu_writer *mu_writer_open(const char *path, const char *kind);
/* Before the first record: note an input (role e.g. "model", "forget") with its digest. */
void mu_writer_add_input(mu_writer *w, const char *role, const char *path);
/* The same with "scale": scale when it is not 1 (a delta applied at that strength:
 * --scaled-delta). */
void mu_writer_add_input_scaled(mu_writer *w, const char *role, const char *path, double scale);
/* Before the first record: returns a packer for the value of header meta[key];
 * the caller packs exactly one msgpack object into it. */
msgpack_packer *mu_writer_meta(mu_writer *w, const char *key);
/* Begin a record: the caller packs exactly one map into the packer, then calls end
 * (which dies with an internal error naming the record if it was not exactly one map).
 * A frame ends by itself after ~1 MiB of records. */
msgpack_packer *mu_writer_record(mu_writer *w);
void mu_writer_end_record(mu_writer *w);
/* Ends the current zstd frame so a reader downstream sees everything so far. */
void mu_writer_flush(mu_writer *w);
/* Finishes, fsyncs and renames into place; frees w. Dies on I/O error. */
void mu_writer_close(mu_writer *w);

/* Packing helpers (keys and values for maps). */
void mu_pack_str(msgpack_packer *pk, const char *s);
void mu_pack_kv_str(msgpack_packer *pk, const char *key, const char *val);
/* A JSON value as the same msgpack value (objects as maps, in their order). */
void mu_pack_json(msgpack_packer *pk, json_t *v);
void mu_pack_kv_int(msgpack_packer *pk, const char *key, int64_t val);
void mu_pack_kv_f64(msgpack_packer *pk, const char *key, double val);
/* Packs a tensor map; data holds numel*dtype_size bytes, little-endian. */
void mu_pack_tensor(msgpack_packer *pk, mu_dtype dt, int ndim, const int64_t *shape, const void *data);
void mu_pack_kv_tensor(msgpack_packer *pk, const char *key, mu_dtype dt, int ndim,
                       const int64_t *shape, const void *data);

/* ---- reading ---- */
typedef struct mu_reader mu_reader;

/* Largest msgpack object (record) a reader accepts, in bytes (default 4 GiB); a larger
 * one, even merely claimed by a length prefix, is an error, never an allocation. */
extern size_t mu_stream_max_record;

/* Opens path ("-" = stdin). expect_kind NULL accepts any kind. On failure returns NULL
 * and writes a one-line message ("file: what") into err. */
mu_reader *mu_reader_open(const char *path, const char *expect_kind, char *err, size_t errlen);
const msgpack_object *mu_reader_header(const mu_reader *r);
const char *mu_reader_kind(const mu_reader *r);
const char *mu_reader_path(const mu_reader *r);
/* 1: *rec is the next record (valid until the next call; bins of 2+ bytes are 8-byte
 * aligned, so tensor data can be read in place); 0: end; -1: error. A record is handed
 * out only after the zstd checksum of its frame has been verified. */
int mu_reader_next(mu_reader *r, const msgpack_object **rec);
const char *mu_reader_error(const mu_reader *r); /* "file: record 12: what" */
long mu_reader_record_index(const mu_reader *r); /* 0-based index of the last record */
void mu_reader_close(mu_reader *r);

/* Tool-side wrappers that print the error and exit 1. */
mu_reader *mu_reader_open_or_die(const char *path, const char *expect_kind);
const msgpack_object *mu_reader_next_or_die(mu_reader *r); /* NULL at end */
/* The tensor at rec[key] (rec itself when key is NULL), validated by mu_obj_tensor;
 * dies with "file: record N: key: what" when it is missing or invalid. */
void mu_reader_tensor_or_die(const mu_reader *r, const msgpack_object *rec, const char *key,
                             mu_tensor_view *t);
/* Dies with "file: record N: <msg>" for a semantic problem in the current record. */
_Noreturn void mu_reader_die(const mu_reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- msgpack object access (NULL / -1 when absent or wrong type) ---- */
const msgpack_object *mu_obj_get(const msgpack_object *map, const char *key);
int mu_obj_int(const msgpack_object *o, int64_t *out);     /* int or uint */
int mu_obj_f64(const msgpack_object *o, double *out);      /* float or int */
/* Copies a str into a NUL-terminated malloc'd string (caller frees); NULL if not str. */
char *mu_obj_strdup(const msgpack_object *o);
int mu_obj_streq(const msgpack_object *o, const char *s);
/* Validates a tensor map: known dtype, sane shape, bin length == numel*size. */
int mu_obj_tensor(const msgpack_object *o, mu_tensor_view *t, char *err, size_t errlen);

/* File digest (XXH3-128 as 32 hex chars) into out[33]; 0 ok, -1 error. */
int mu_file_digest(const char *path, char out[33]);
#endif
