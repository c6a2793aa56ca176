/* gguf.h — mmap'd GGUF (v2/v3) reader; every count, length and offset is bounds-checked
 * against the file before use, so a hostile file gives an error, never a crash.
 * Layout: magic "GGUF", u32 version, u64 n_tensors, u64 n_kv, then n_kv (string key,
 * u32 type, value), then n_tensors (string name, u32 n_dims, u64 ne[n_dims], u32 ggml type,
 * u64 offset), padding to general.alignment (default 32), then the tensor data.
 * Strings are u64 length + bytes (not NUL-terminated in the file). ne[0] is the innermost
 * (fastest-varying) dimension: a PyTorch [rows, cols] matrix has ne = {cols, rows}. */
#ifndef MU_GGUF_H
#define MU_GGUF_H
#include <stddef.h>
#include <stdint.h>

/* metadata value types */
enum {
    GGUF_TYPE_UINT8 = 0, GGUF_TYPE_INT8 = 1, GGUF_TYPE_UINT16 = 2, GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4, GGUF_TYPE_INT32 = 5, GGUF_TYPE_FLOAT32 = 6, GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8, GGUF_TYPE_ARRAY = 9, GGUF_TYPE_UINT64 = 10, GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12, GGUF_TYPE_COUNT
};

/* ggml tensor types with known block layouts (ggml_quants.c; sizes are checked for all of
 * them, so any file llama.cpp writes opens; dequantization covers F32 F16 BF16 F64, Q4_0 Q4_1
 * Q5_0 Q5_1 Q8_0 Q8_1, the k-quants Q2_K..Q6_K, the i-quants IQ1_S IQ1_M IQ2_XXS IQ2_XS IQ2_S
 * IQ3_XXS IQ3_S IQ4_NL IQ4_XS, the ternary TQ1_0 TQ2_0 and the FP4 MXFP4 NVFP4) */
enum {
    MU_GGML_F32 = 0, MU_GGML_F16 = 1, MU_GGML_Q4_0 = 2, MU_GGML_Q4_1 = 3,
    MU_GGML_Q5_0 = 6, MU_GGML_Q5_1 = 7, MU_GGML_Q8_0 = 8, MU_GGML_Q8_1 = 9,
    MU_GGML_Q2_K = 10, MU_GGML_Q3_K = 11, MU_GGML_Q4_K = 12, MU_GGML_Q5_K = 13,
    MU_GGML_Q6_K = 14, MU_GGML_Q8_K = 15, MU_GGML_IQ2_XXS = 16, MU_GGML_IQ2_XS = 17,
    MU_GGML_IQ3_XXS = 18, MU_GGML_IQ1_S = 19, MU_GGML_IQ4_NL = 20, MU_GGML_IQ3_S = 21,
    MU_GGML_IQ2_S = 22, MU_GGML_IQ4_XS = 23, MU_GGML_I8 = 24, MU_GGML_I16 = 25,
    MU_GGML_I32 = 26, MU_GGML_I64 = 27, MU_GGML_F64 = 28, MU_GGML_IQ1_M = 29, MU_GGML_BF16 = 30,
    MU_GGML_TQ1_0 = 34, MU_GGML_TQ2_0 = 35, MU_GGML_MXFP4 = 39, MU_GGML_NVFP4 = 40,
    MU_GGML_Q1_0 = 41
};
#define MU_GGUF_MAX_DIMS 4

typedef struct mu_gguf mu_gguf;

/* NULL + "path: what" in err on failure. */
mu_gguf *mu_gguf_open(const char *path, char *err, size_t errlen);
void mu_gguf_close(mu_gguf *g);
const char *mu_gguf_path(const mu_gguf *g);
uint32_t mu_gguf_version(const mu_gguf *g);

/* ---- metadata ---- all return 0 ok / -1 absent or wrong type (or out of range) */
int mu_gguf_n_kv(const mu_gguf *g);
const char *mu_gguf_key(const mu_gguf *g, int i);          /* NUL-terminated copy */
int mu_gguf_kv_type(const mu_gguf *g, const char *key);     /* GGUF_TYPE_* or -1 */
/* s points into the mapping, NOT NUL-terminated: use len. */
int mu_gguf_get_str(const mu_gguf *g, const char *key, const char **s, size_t *len);
int mu_gguf_get_u32(const mu_gguf *g, const char *key, uint32_t *v); /* any int type in range */
int mu_gguf_get_i64(const mu_gguf *g, const char *key, int64_t *v);  /* any int type in range */
int mu_gguf_get_f32(const mu_gguf *g, const char *key, float *v);    /* F32, F64 or int */
int mu_gguf_get_bool(const mu_gguf *g, const char *key, int *v);
int mu_gguf_arr_len(const mu_gguf *g, const char *key, uint64_t *n, int *elem_type);
/* Element access, O(1) (string arrays are indexed at open). */
int mu_gguf_arr_str(const mu_gguf *g, const char *key, uint64_t i, const char **s, size_t *len);
int mu_gguf_arr_f32(const mu_gguf *g, const char *key, uint64_t i, float *v);  /* F32/F64/int */
int mu_gguf_arr_i32(const mu_gguf *g, const char *key, uint64_t i, int32_t *v); /* any int in range */

/* ---- tensors ---- */
int mu_gguf_n_tensors(const mu_gguf *g);
const char *mu_gguf_tensor_name(const mu_gguf *g, int i);
int mu_gguf_find_tensor(const mu_gguf *g, const char *name);   /* index or -1 */
/* Any output may be NULL. ne has room for MU_GGUF_MAX_DIMS (unused dims set to 1).
 * data points into the mapping. 0 ok, -1 bad index. */
int mu_gguf_tensor_info(const mu_gguf *g, int i, int *ggml_type, int *n_dims, int64_t *ne,
                        const void **data, size_t *nbytes);
const char *mu_gguf_type_name(int ggml_type);      /* "f32", "q4_0", ... or "unknown" */
/* Dequantizes tensor `name` into dst (n must equal its element count), in ggml order
 * (ne[0] fastest = row-major [.., ne[1], ne[0]]). Types: see above. 0 ok, -1 + "path: tensor X: what" in err. */
int mu_gguf_tensor_f32(const mu_gguf *g, const char *name, float *dst, size_t n,
                       char *err, size_t errlen);
/* Dequantizes n elements of one ggml type from raw bytes (n a multiple of the block size). */
int mu_ggml_dequant(int ggml_type, const void *src, size_t src_bytes, float *dst, size_t n);
int mu_ggml_can_dequant(int ggml_type);            /* 1 if mu_ggml_dequant handles the type */
/* Elements per block and bytes per block of a ggml type: 0, or -1 for an unknown type. */
int mu_ggml_block(int ggml_type, int *block, int *bytes);
#endif
