/* tensor.c — dtype table and f16/bf16 <-> f32 conversions (IEEE 754 binary16 and
 * bfloat16, round to nearest even; NaN stays NaN, overflow goes to infinity). */
#include "tensor.h"
#include <stdio.h>
#include <string.h>

static const struct { const char *name; size_t size; } dtypes[MU_DTYPE_COUNT] = {
    [MU_F32] = {"f32", 4}, [MU_F16] = {"f16", 2}, [MU_BF16] = {"bf16", 2}, [MU_F64] = {"f64", 8},
    [MU_I8] = {"i8", 1},   [MU_U8] = {"u8", 1},   [MU_I16] = {"i16", 2},  [MU_U16] = {"u16", 2},
    [MU_I32] = {"i32", 4}, [MU_U32] = {"u32", 4}, [MU_I64] = {"i64", 8},  [MU_U64] = {"u64", 8},
    [MU_BOOL] = {"bool", 1},
};

size_t mu_dtype_size(mu_dtype t) {
    return (unsigned)t < MU_DTYPE_COUNT ? dtypes[t].size : 0;
}

const char *mu_dtype_name(mu_dtype t) {
    return (unsigned)t < MU_DTYPE_COUNT ? dtypes[t].name : "?";
}

int mu_dtype_parse(const char *name, size_t len, mu_dtype *out) {
    for (int t = 0; t < MU_DTYPE_COUNT; t++) {
        if (strlen(dtypes[t].name) == len && memcmp(dtypes[t].name, name, len) == 0) {
            *out = (mu_dtype)t;
            return 0;
        }
    }
    return -1;
}

int64_t mu_shape_numel(int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > MU_MAX_DIMS) return -1;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return -1;
        if (shape[i] != 0 && n > INT64_MAX / shape[i]) return -1;
        n *= shape[i];
    }
    return n;
}

int mu_shape_equal(int n1, const int64_t *s1, int n2, const int64_t *s2) {
    if (n1 != n2) return 0;
    for (int d = 0; d < n1; d++)
        if (s1[d] != s2[d]) return 0;
    return 1;
}

void mu_shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && o < n; d++) o += (size_t)snprintf(buf + o, n - o, d ? ",%lld" : "%lld", (long long)shape[d]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

int mu_dtype_is_float(mu_dtype t) { return t == MU_F32 || t == MU_F16 || t == MU_BF16 || t == MU_F64; }

static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float mu_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f)                       /* inf / NaN (payload kept, quiet bit set) */
        return bits_f32(sign | 0x7f800000u | (man << 13) | (man ? 0x400000u : 0));
    if (exp == 0) {
        if (man == 0) return bits_f32(sign);
        /* subnormal: value = man * 2^-24, exact in f32 */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t mu_f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t exp = (u >> 23) & 0xff, man = u & 0x7fffff;
    if (exp == 0xff) return sign | 0x7c00 | (man ? (0x200 | (man >> 13)) : 0);
    int e = (int)exp - 127 + 15;
    if (e >= 0x1f) return sign | 0x7c00;                 /* overflow -> inf */
    if (e <= 0) {                                        /* subnormal or zero */
        if (e < -10) return sign;                        /* below half the smallest subnormal */
        man |= 0x800000;                                 /* implicit bit */
        int shift = 14 - e;                              /* 14..24 */
        uint32_t q = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return sign | (uint16_t)q;                       /* q may carry into the exponent: fine */
    }
    uint32_t q = ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (q & 1))) q++; /* may carry to inf: correct */
    return sign | (uint16_t)q;
}

float mu_bf16_to_f32(uint16_t b) { return bits_f32((uint32_t)b << 16); }

uint16_t mu_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

int mu_to_f32(mu_dtype dt, const void *src, size_t n, float *dst) {
    const uint8_t *p = src;
    switch (dt) {
    case MU_F32: if (n) memcpy(dst, p, n * 4); return 0;
    case MU_F16:
        for (size_t i = 0; i < n; i++) dst[i] = mu_f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        return 0;
    case MU_BF16:
        for (size_t i = 0; i < n; i++) dst[i] = mu_bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        return 0;
    case MU_F64:
        for (size_t i = 0; i < n; i++) { double d; memcpy(&d, p + 8 * i, 8); dst[i] = (float)d; }
        return 0;
    default: return -1;
    }
}
