/* safetensors.h — the safetensors format: an mmap'd reader that validates everything
 * before handing out a pointer, and an atomic writer.
 * Format: u64 LE header length N, N bytes of JSON {"name":{"dtype":"F32","shape":[..],
 * "data_offsets":[b,e]}, ..., "__metadata__":{"k":"v"}}, then the data bytes (offsets
 * relative to the end of the header). */
#ifndef MU_SAFETENSORS_H
#define MU_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>
#include "tensor.h"

typedef struct mu_st mu_st;

/* Opens and mmaps path. Checks: header length within the file, valid JSON object,
 * known dtypes (F32 F16 BF16 F64 I8 U8 I16 U16 I32 U32 I64 U64 BOOL), ndim <= MU_MAX_DIMS,
 * shape product without overflow, data_offsets within the data section, equal to
 * numel*dtype_size, no overlap, no duplicate names. NULL + "path: what" in err on failure. */
mu_st *mu_st_open(const char *path, char *err, size_t errlen);
int mu_st_count(const mu_st *s);
const char *mu_st_name(const mu_st *s, int i);
int mu_st_find(const mu_st *s, const char *name);   /* index or -1 */
/* Any output pointer may be NULL. shape has room for MU_MAX_DIMS. data points into the
 * mapping (valid until mu_st_close). 0 ok, -1 bad index. */
int mu_st_info(const mu_st *s, int i, mu_dtype *dt, int *ndim, int64_t *shape,
               const void **data, size_t *nbytes);
const char *mu_st_metadata(const mu_st *s, const char *key); /* __metadata__ value or NULL */
const char *mu_st_metadata_key(const mu_st *s, int i);       /* i-th key in file order, NULL past the end */
const char *mu_st_path(const mu_st *s);
/* Converts tensor i (F32/F16/BF16/F64) to f32 into dst (n elements = numel). 0 ok, -1 err. */
int mu_st_read_f32(const mu_st *s, int i, float *dst, size_t n, char *err, size_t errlen);
void mu_st_close(mu_st *s);

typedef struct mu_st_writer mu_st_writer;
mu_st_writer *mu_st_writer_new(void);
/* Adds a tensor. data is REFERENCED, not copied: it must stay valid and unchanged until
 * mu_st_writer_write returns. shape is copied. Tensors are written in the order added. */
void mu_st_writer_add(mu_st_writer *w, const char *name, mu_dtype dt, int ndim,
                      const int64_t *shape, const void *data);
/* Same, but copies data (numel*dtype_size bytes) now. */
void mu_st_writer_add_copy(mu_st_writer *w, const char *name, mu_dtype dt, int ndim,
                           const int64_t *shape, const void *data);
void mu_st_writer_meta(mu_st_writer *w, const char *key, const char *val); /* key replaced if set */
/* Writes path ("-" not allowed) atomically: temp file in the same directory, fsync, rename.
 * Fails on duplicate names. 0 ok, -1 + err. */
int mu_st_writer_write(mu_st_writer *w, const char *path, char *err, size_t errlen);
void mu_st_writer_free(mu_st_writer *w);
#endif
