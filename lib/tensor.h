/* tensor.h — dtypes and a plain tensor view shared by streams, loaders and kernels. */
#ifndef MU_TENSOR_H
#define MU_TENSOR_H
#include <stddef.h>
#include <stdint.h>

typedef enum {
    MU_F32 = 0, MU_F16, MU_BF16, MU_F64,
    MU_I8, MU_U8, MU_I16, MU_U16, MU_I32, MU_U32, MU_I64, MU_U64, MU_BOOL,
    MU_DTYPE_COUNT
} mu_dtype;

#define MU_MAX_DIMS 8

/* A borrowed view: data is not owned. Bytes are little-endian, row-major. */
typedef struct {
    mu_dtype dtype;
    int ndim;
    int64_t shape[MU_MAX_DIMS];
    const void *data;
    size_t nbytes;
} mu_tensor_view;

size_t mu_dtype_size(mu_dtype t);             /* bytes per element */
const char *mu_dtype_name(mu_dtype t);        /* "f32", "bf16", "i32", ... */
int mu_dtype_parse(const char *name, size_t len, mu_dtype *out); /* 0 ok, -1 unknown */
int64_t mu_shape_numel(int ndim, const int64_t *shape); /* -1 on overflow or negative dim */
int mu_shape_equal(int n1, const int64_t *s1, int n2, const int64_t *s2);
void mu_shape_str(char *buf, size_t n, int ndim, const int64_t *shape);   /* "[a,b]" */
int mu_dtype_is_float(mu_dtype t);             /* F32, F16, BF16 or F64 */

/* Converts n elements of a float dtype (f32, f64, f16, bf16; unaligned little-endian
 * bytes) to f32. 0 ok, -1 for any other dtype. */
int mu_to_f32(mu_dtype dt, const void *src, size_t n, float *dst);

float mu_f16_to_f32(uint16_t h);
uint16_t mu_f32_to_f16(float f);              /* round to nearest even */
float mu_bf16_to_f32(uint16_t b);
uint16_t mu_f32_to_bf16(float f);             /* round to nearest even, NaN kept */
#endif
