/* ggml_quants.c — ggml tensor types: block layouts of every type llama.cpp writes, and
 * dequantization of the ones mu reads (the layouts and arithmetic of ggml-quants.c's
 * dequantize_row_* functions; tested against llama.cpp's gguf.quants, tests/gen/make_kquants.py). */
#include "gguf.h"
#include "tensor.h"
#include <stdint.h>
#include <string.h>

#define QK_K 256

typedef struct { int type; const char *name; int block; int bytes; } ggml_type_info;
static const ggml_type_info ggml_types[] = {
    {MU_GGML_F32, "f32", 1, 4},          {MU_GGML_F16, "f16", 1, 2},          {MU_GGML_Q4_0, "q4_0", 32, 18},
    {MU_GGML_Q4_1, "q4_1", 32, 20},      {MU_GGML_Q5_0, "q5_0", 32, 22},      {MU_GGML_Q5_1, "q5_1", 32, 24},
    {MU_GGML_Q8_0, "q8_0", 32, 34},      {MU_GGML_Q8_1, "q8_1", 32, 36},      {MU_GGML_Q2_K, "q2_k", 256, 84},
    {MU_GGML_Q3_K, "q3_k", 256, 110},    {MU_GGML_Q4_K, "q4_k", 256, 144},    {MU_GGML_Q5_K, "q5_k", 256, 176},
    {MU_GGML_Q6_K, "q6_k", 256, 210},    {MU_GGML_Q8_K, "q8_k", 256, 292},    {MU_GGML_IQ2_XXS, "iq2_xxs", 256, 66},
    {MU_GGML_IQ2_XS, "iq2_xs", 256, 74}, {MU_GGML_IQ3_XXS, "iq3_xxs", 256, 98}, {MU_GGML_IQ1_S, "iq1_s", 256, 50},
    {MU_GGML_IQ4_NL, "iq4_nl", 32, 18},  {MU_GGML_IQ3_S, "iq3_s", 256, 110},  {MU_GGML_IQ2_S, "iq2_s", 256, 82},
    {MU_GGML_IQ4_XS, "iq4_xs", 256, 136}, {MU_GGML_I8, "i8", 1, 1},           {MU_GGML_I16, "i16", 1, 2},
    {MU_GGML_I32, "i32", 1, 4},          {MU_GGML_I64, "i64", 1, 8},          {MU_GGML_F64, "f64", 1, 8},
    {MU_GGML_IQ1_M, "iq1_m", 256, 56},   {MU_GGML_BF16, "bf16", 1, 2},        {MU_GGML_TQ1_0, "tq1_0", 256, 54},
    {MU_GGML_TQ2_0, "tq2_0", 256, 66},   {MU_GGML_MXFP4, "mxfp4", 32, 17},
};

static const ggml_type_info *ggml_info(int type) {
    for (size_t i = 0; i < sizeof ggml_types / sizeof *ggml_types; i++)
        if (ggml_types[i].type == type) return &ggml_types[i];
    return NULL;
}

const char *mu_gguf_type_name(int t) {
    const ggml_type_info *ti = ggml_info(t);
    return ti ? ti->name : "unknown";
}

int mu_ggml_block(int type, int *block, int *bytes) {
    const ggml_type_info *ti = ggml_info(type);
    if (!ti) return -1;
    *block = ti->block;
    *bytes = ti->bytes;
    return 0;
}

static float f16_at(const uint8_t *p) { return mu_f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

/* ---------------------------------------------------------------- 32-element blocks */

/* Q4_0: d f16, qs[16] (low nibbles: elements 0..15, high: 16..31), x = (q - 8) d. */
static void dq_q4_0(const uint8_t *b, float *y) {
    float d = f16_at(b);
    for (int j = 0; j < 16; j++) {
        y[j] = (float)((b[2 + j] & 0xF) - 8) * d;
        y[j + 16] = (float)((b[2 + j] >> 4) - 8) * d;
    }
}

/* Q4_1: d f16, m f16, qs[16], x = q d + m. */
static void dq_q4_1(const uint8_t *b, float *y) {
    float d = f16_at(b), m = f16_at(b + 2);
    for (int j = 0; j < 16; j++) {
        y[j] = (float)(b[4 + j] & 0xF) * d + m;
        y[j + 16] = (float)(b[4 + j] >> 4) * d + m;
    }
}

/* Q5_0 / Q5_1: d f16 [m f16] qh u32 qs[16]; the fifth bits in qh. */
static void dq_q5(const uint8_t *b, float *y, int has_min) {
    float d = f16_at(b), m = has_min ? f16_at(b + 2) : 0;
    const uint8_t *qhp = b + (has_min ? 4 : 2), *qs = qhp + 4;
    uint32_t qh = (uint32_t)qhp[0] | (uint32_t)qhp[1] << 8 | (uint32_t)qhp[2] << 16 | (uint32_t)qhp[3] << 24;
    int off = has_min ? 0 : 16;
    for (int j = 0; j < 16; j++) {
        int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
        y[j] = (float)(((qs[j] & 0xF) | h0) - off) * d + m;
        y[j + 16] = (float)(((qs[j] >> 4) | h1) - off) * d + m;
    }
}

/* Q8_0: d f16, qs int8[32] (Q8_1: d, s f16 first: hdr 4). */
static void dq_q8_0(const uint8_t *b, float *y, int hdr) {
    float d = f16_at(b);
    for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)b[hdr + j] * d;
}

/* The 16 non-linear levels of IQ4_NL and IQ4_XS. */
static const int8_t kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                         1,    13,   25,  38,  53,  69,  89,  113};

/* 32 elements from 16 bytes of 4-bit indices into kvalues_iq4nl, scaled by d. */
static void iq4_32(const uint8_t *qs, float d, float *y) {
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)kvalues_iq4nl[qs[j] & 0xF];
        y[j + 16] = d * (float)kvalues_iq4nl[qs[j] >> 4];
    }
}

/* IQ4_NL: d f16, qs[16]. */
static void dq_iq4_nl(const uint8_t *b, float *y) { iq4_32(b + 2, f16_at(b), y); }

/* ---------------------------------------------------------------- 256-element k-quants */

/* Q2_K: scales[16] (low nibble scale, high nibble min, per 16 elements), qs[64] (2 bits),
 * d f16, dmin f16. Each 128-element half: 4 shifts x (16 + 16) elements. */
static void dq_q2_k(const uint8_t *b, float *y) {
    const uint8_t *sc = b, *q = b + 16;
    float d = f16_at(b + 80), dmin = f16_at(b + 82);
    int is = 0;
    for (int n = 0; n < QK_K; n += 128) {
        for (int shift = 0; shift < 8; shift += 2) {
            for (int half = 0; half < 2; half++) {
                uint8_t s = sc[is++];
                float dl = d * (float)(s & 0xF), ml = dmin * (float)(s >> 4);
                for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[l + 16 * half] >> shift) & 3) - ml;
            }
        }
        q += 32;
    }
}

/* Q3_K's 16 six-bit scales (minus 32), packed in 12 bytes: low nibbles in bytes 0..7, the
 * two high bits in bytes 8..11. */
static void q3_k_scales(const uint8_t *p, int8_t *s) {
    for (int j = 0; j < 16; j++) {
        int lo = j < 8 ? p[j] & 0xF : p[j - 8] >> 4;
        int hi = (p[8 + j % 4] >> (2 * (j / 4))) & 3;
        s[j] = (int8_t)((lo | hi << 4) - 32);
    }
}

/* Q3_K: hmask[32] (third bit, inverted: set = no -4), qs[64] (2 bits), scales[12], d f16. */
static void dq_q3_k(const uint8_t *b, float *y) {
    const uint8_t *hm = b, *q = b + 32;
    int8_t s[16];
    q3_k_scales(b + 96, s);
    float d = f16_at(b + 108);
    int is = 0;
    uint8_t m = 1;
    for (int n = 0; n < QK_K; n += 128) {
        for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
            for (int half = 0; half < 2; half++) {
                float dl = d * (float)s[is++];
                for (int l = 16 * half; l < 16 * half + 16; l++)
                    *y++ = dl * (float)(((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
            }
        }
        q += 32;
    }
}

/* Q4_K and Q5_K's 8 six-bit (scale, min) pairs packed in 12 bytes. */
static void k_scale_min(int j, const uint8_t *q, int *sc, int *mn) {
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Q4_K / Q5_K: d f16, dmin f16, scales[12], [qh[32] (fifth bits) for Q5_K], qs[128].
 * Each 64 elements: 32 low nibbles with pair 2i, 32 high nibbles with pair 2i+1. */
static void dq_q45_k(const uint8_t *b, float *y, int five) {
    float d = f16_at(b), dmin = f16_at(b + 2);
    const uint8_t *scales = b + 4, *qh = b + 16, *ql = b + (five ? 48 : 16);
    for (int j = 0, bit = 0; j < QK_K; j += 64, ql += 32) {
        for (int nib = 0; nib < 2; nib++, bit++) {
            int sc, mn;
            k_scale_min(2 * (j / 64) + nib, scales, &sc, &mn);
            float d1 = d * (float)sc, m1 = dmin * (float)mn;
            for (int l = 0; l < 32; l++) {
                int q = (ql[l] >> (4 * nib)) & 0xF;
                if (five) q |= ((qh[l] >> bit) & 1) << 4;
                *y++ = d1 * (float)q - m1;
            }
        }
    }
}

/* Q6_K: ql[128] qh[64] scales int8[16] d f16. */
static void dq_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = f16_at(b + 208);
    for (int n = 0; n < QK_K; n += 128) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l] & 0xF) | ((qh[l] >> 0 & 3) << 4)) - 32;
            int q2 = ((ql[l + 32] & 0xF) | ((qh[l] >> 2 & 3) << 4)) - 32;
            int q3 = ((ql[l] >> 4) | ((qh[l] >> 4 & 3) << 4)) - 32;
            int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6 & 3) << 4)) - 32;
            y[l] = d * sc[is] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

/* IQ4_XS: d f16, scales_h u16 (2 high bits per 32), scales_l[4] (4 low bits per 32), qs[128]. */
static void dq_iq4_xs(const uint8_t *b, float *y) {
    float d = f16_at(b);
    unsigned sh = (unsigned)(b[2] | b[3] << 8);
    const uint8_t *sl = b + 4, *qs = b + 8;
    for (int ib = 0; ib < QK_K / 32; ib++) {
        int ls = ((sl[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((sh >> (2 * ib)) & 3) << 4);
        iq4_32(qs + 16 * ib, d * (float)(ls - 32), y + 32 * ib);
    }
}

/* ---------------------------------------------------------------- rows */

int mu_ggml_can_dequant(int type) {
    switch (type) {
    case MU_GGML_F32: case MU_GGML_F16: case MU_GGML_BF16: case MU_GGML_F64: case MU_GGML_Q4_0:
    case MU_GGML_Q4_1: case MU_GGML_Q5_0: case MU_GGML_Q5_1: case MU_GGML_Q8_0: case MU_GGML_Q8_1:
    case MU_GGML_Q2_K: case MU_GGML_Q3_K: case MU_GGML_Q4_K: case MU_GGML_Q5_K: case MU_GGML_Q6_K:
    case MU_GGML_IQ4_NL: case MU_GGML_IQ4_XS: return 1;
    default: return 0;
    }
}

static void dq_block(int type, const uint8_t *b, float *y) {
    switch (type) {
    case MU_GGML_Q4_0: dq_q4_0(b, y); break;
    case MU_GGML_Q4_1: dq_q4_1(b, y); break;
    case MU_GGML_Q5_0: dq_q5(b, y, 0); break;
    case MU_GGML_Q5_1: dq_q5(b, y, 1); break;
    case MU_GGML_Q8_0: dq_q8_0(b, y, 2); break;
    case MU_GGML_Q8_1: dq_q8_0(b, y, 4); break;
    case MU_GGML_Q2_K: dq_q2_k(b, y); break;
    case MU_GGML_Q3_K: dq_q3_k(b, y); break;
    case MU_GGML_Q4_K: dq_q45_k(b, y, 0); break;
    case MU_GGML_Q5_K: dq_q45_k(b, y, 1); break;
    case MU_GGML_Q6_K: dq_q6_k(b, y); break;
    case MU_GGML_IQ4_NL: dq_iq4_nl(b, y); break;
    case MU_GGML_IQ4_XS: dq_iq4_xs(b, y); break;
    }
}

/* Serial on purpose: on a busy machine an OpenMP team here was 3-4x slower than one thread
 * (SmolLM2-135M: 1.4 s vs 0.37 s); callers may read different tensors in parallel. */
int mu_ggml_dequant(int type, const void *src, size_t src_bytes, float *dst, size_t n) {
    const ggml_type_info *ti = ggml_info(type);
    if (!ti || !mu_ggml_can_dequant(type) || n % (size_t)ti->block) return -1;
    size_t nb = n / (size_t)ti->block;
    if (nb > src_bytes / (size_t)ti->bytes) return -1;
    const uint8_t *p = src;
    switch (type) {
    case MU_GGML_F32: memcpy(dst, p, n * 4); return 0;
    case MU_GGML_F16:
        for (size_t i = 0; i < n; i++) dst[i] = f16_at(p + 2 * i);
        return 0;
    case MU_GGML_BF16:
        for (size_t i = 0; i < n; i++) dst[i] = mu_bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        return 0;
    case MU_GGML_F64:
        for (size_t i = 0; i < n; i++) { double d; memcpy(&d, p + 8 * i, 8); dst[i] = (float)d; }
        return 0;
    default: break;
    }
    for (size_t i = 0; i < nb; i++) dq_block(type, p + i * (size_t)ti->bytes, dst + i * (size_t)ti->block);
    return 0;
}
