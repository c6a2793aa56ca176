/* ggml_quants.c — ggml tensor types: block layouts of every type llama.cpp writes, and
 * dequantization of the ones mu reads (the layouts and arithmetic of ggml-quants.c's
 * dequantize_row_* functions; tested against llama.cpp's gguf.quants, tests/gen/make_kquants.py).
 * Every type gguf.quants dequantizes is read here; Q1_0 (no reference there) is refused by name. */
#include "gguf.h"
#include "ggml_iq_grids.h"
#include "tensor.h"
#include <math.h>
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
    {MU_GGML_TQ2_0, "tq2_0", 256, 66},   {MU_GGML_MXFP4, "mxfp4", 32, 17},    {MU_GGML_NVFP4, "nvfp4", 64, 36},
    {MU_GGML_Q1_0, "q1_0", 128, 18},
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

/* ---------------------------------------------------------------- i-quants with codebooks */

static uint32_t u32_at(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static unsigned u16_at(const uint8_t *p) { return (unsigned)(p[0] | p[1] << 8); }

/* The 8 sign bits of a 7-bit sign index: its own 7 bits and their parity (ggml's ksigns_iq2xs). */
static unsigned ksign(unsigned i) { return i | (unsigned)(__builtin_popcount(i) & 1) << 7; }

/* n elements of one codebook row, scaled by db; bit k of signs set: element k negated.
 * The row packs n indices of `bits` bits into levels (ggml_iq_grids.h). */
static void grid_row(float db, uint16_t row, const float *levels, int bits, int n, unsigned signs, float *y) {
    for (int k = 0; k < n; k++) {
        float v = db * levels[(row >> (bits * k)) & ((1u << bits) - 1)];
        y[k] = (signs >> k) & 1 ? -v : v;
    }
}

/* IQ2_XXS: d f16, then per 32 elements two u32: 4 grid indices (bytes), and 4 x 7 sign bits
 * with the 4-bit scale on top; x = d (0.5 + s) / 4 * grid * sign. */
static void dq_iq2_xxs(const uint8_t *b, float *y) {
    float d = f16_at(b);
    for (int ib = 0; ib < QK_K / 32; ib++, y += 32) {
        const uint8_t *q = b + 2 + 8 * ib;
        uint32_t aux = u32_at(q + 4);
        float db = d * (0.5f + (float)(aux >> 28)) * 0.25f;
        for (int l = 0; l < 4; l++)
            grid_row(db, iq2xxs_grid[q[l]], iq2xxs_levels, 2, 8, ksign((aux >> (7 * l)) & 127), y + 8 * l);
    }
}

/* The 4-bit scale of 8-element group g of IQ2_XS / IQ2_S: two groups of 8 per nibble. */
static float iq2_group_scale(float d, const uint8_t *scales, int g) {
    return d * (0.5f + (float)((scales[g / 4] >> (4 * ((g / 2) % 2))) & 0xF)) * 0.25f;
}

/* IQ2_XS: d f16, qs u16[32] (9-bit grid index, 7-bit sign index), scales[8]. */
static void dq_iq2_xs(const uint8_t *b, float *y) {
    float d = f16_at(b);
    for (int g = 0; g < QK_K / 8; g++) {
        unsigned q = u16_at(b + 2 + 2 * g);
        grid_row(iq2_group_scale(d, b + 66, g), iq2xs_grid[q & 511], iq2xs_levels, 2, 8, ksign(q >> 9), y + 8 * g);
    }
}

/* IQ2_S: d f16, qs[32] (low 8 index bits), signs[32], qh[8] (2 high index bits each), scales[8]. */
static void dq_iq2_s(const uint8_t *b, float *y) {
    float d = f16_at(b);
    const uint8_t *qs = b + 2, *signs = b + 34, *qh = b + 66;
    for (int g = 0; g < QK_K / 8; g++) {
        unsigned idx = qs[g] | ((qh[g / 4] >> (2 * (g % 4))) & 3u) << 8;
        grid_row(iq2_group_scale(d, b + 74, g), iq2s_grid[idx], iq2s_levels, 2, 8, signs[g], y + 8 * g);
    }
}

/* IQ3_XXS: d f16, qs[64] (grid indices, 4 elements each), then per 32 elements a u32 of
 * 4 x 7 sign bits and the 4-bit scale on top; x = d (0.5 + s) / 2 * grid * sign. */
static void dq_iq3_xxs(const uint8_t *b, float *y) {
    float d = f16_at(b);
    const uint8_t *qs = b + 2;
    for (int ib = 0; ib < QK_K / 32; ib++) {
        uint32_t aux = u32_at(b + 66 + 4 * ib);
        float db = d * (0.5f + (float)(aux >> 28)) * 0.5f;
        for (int l = 0; l < 4; l++, y += 8) {
            unsigned s = ksign((aux >> (7 * l)) & 127);
            grid_row(db, iq3xxs_grid[qs[8 * ib + 2 * l]], iq3xxs_levels, 3, 4, s, y);
            grid_row(db, iq3xxs_grid[qs[8 * ib + 2 * l + 1]], iq3xxs_levels, 3, 4, s >> 4, y + 4);
        }
    }
}

/* IQ3_S: d f16, qs[64] (low 8 index bits), qh[8] (ninth bits), signs[32], scales[4]
 * (a nibble per 32 elements); x = d (1 + 2 s) * grid * sign. */
static void dq_iq3_s(const uint8_t *b, float *y) {
    float d = f16_at(b);
    const uint8_t *qs = b + 2, *qh = b + 66, *signs = b + 74, *scales = b + 106;
    for (int i = 0; i < QK_K / 4; i++) {
        float db = d * (float)(1 + 2 * ((scales[i / 16] >> (4 * ((i / 8) % 2))) & 0xF));
        unsigned idx = qs[i] | ((qh[i / 8] >> (i % 8)) & 1u) << 8;
        grid_row(db, iq3s_grid[idx], iq3s_levels, 3, 4, (unsigned)signs[i / 2] >> (4 * (i % 2)), y + 4 * i);
    }
}

/* 8 elements of an IQ1 codebook row: dl * (grid + delta). */
static void iq1_row(float dl, unsigned idx, float delta, float *y) {
    for (int k = 0; k < 8; k++) y[k] = dl * (iq1s_levels[(iq1s_grid[idx] >> (2 * k)) & 3] + delta);
}

/* IQ1_S: d f16, qs[32] (low 8 index bits), qh u16[8] per 32 elements: 4 x 3 high index bits,
 * a 3-bit scale, the delta's sign on top; x = d (2 s + 1) (grid +- 1/8). */
static void dq_iq1_s(const uint8_t *b, float *y) {
    float d = f16_at(b);
    for (int ib = 0; ib < QK_K / 32; ib++) {
        unsigned h = u16_at(b + 34 + 2 * ib);
        float dl = d * (float)(2 * ((h >> 12) & 7) + 1), delta = h & 0x8000 ? -0.125f : 0.125f;
        for (int l = 0; l < 4; l++, y += 8) iq1_row(dl, b[2 + 4 * ib + l] | ((h >> (3 * l)) & 7) << 8, delta, y);
    }
}

/* IQ1_M: qs[32], qh[16] (a nibble per 8 elements: 3 high index bits, the delta's sign),
 * scales u16[4]: 3-bit scales per 16 elements, and d's f16 bits in their top nibbles. */
static void dq_iq1_m(const uint8_t *b, float *y) {
    unsigned sc[4];
    for (int k = 0; k < 4; k++) sc[k] = u16_at(b + 48 + 2 * k);
    unsigned dbits = (sc[0] >> 12) | ((sc[1] >> 8) & 0xF0) | ((sc[2] >> 4) & 0xF00) | (sc[3] & 0xF000);
    float d = mu_f16_to_f32((uint16_t)dbits);
    for (int g = 0; g < QK_K / 8; g++) {
        int j = g / 2;
        float dl = d * (float)(2 * ((sc[j / 4] >> (3 * (j % 4))) & 7) + 1);
        unsigned nib = (unsigned)b[32 + g / 2] >> (4 * (g % 2));
        iq1_row(dl, b[g] | (nib & 7) << 8, nib & 8 ? -0.125f : 0.125f, y + 8 * g);
    }
}

/* ---------------------------------------------------------------- ternary and 4-bit float */

/* One trit of a TQ1_0 byte: the byte times 3^m (mod 256), its top trit; -1, 0 or 1. */
static float tq1_trit(uint8_t q, unsigned pow3) { return (float)((((uint8_t)(q * pow3)) * 3 >> 8) - 1); }

/* TQ1_0: qs[48] (5 trits per byte: 32 bytes x 5, then 16 bytes x 5), qh[4] (4 trits per
 * byte), d f16. */
static void dq_tq1_0(const uint8_t *b, float *y) {
    float d = f16_at(b + 52);
    for (unsigned m = 0, p = 1; m < 5; m++, p *= 3) {
        for (int j = 0; j < 32; j++) y[32 * m + j] = d * tq1_trit(b[j], p);
        for (int j = 0; j < 16; j++) y[160 + 16 * m + j] = d * tq1_trit(b[32 + j], p);
        if (m < 4)
            for (int j = 0; j < 4; j++) y[240 + 4 * m + j] = d * tq1_trit(b[48 + j], p);
    }
}

/* TQ2_0: qs[64] (2 bits per element, q - 1), d f16. */
static void dq_tq2_0(const uint8_t *b, float *y) {
    float d = f16_at(b + 64);
    for (int c = 0; c < 2; c++)
        for (int s = 0; s < 4; s++)
            for (int j = 0; j < 32; j++)
                y[128 * c + 32 * s + j] = d * (float)((int)((b[32 * c + j] >> (2 * s)) & 3) - 1);
}

/* E2M1 values, doubled (the scales below are halved to match). */
static const int8_t kvalues_fp4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

/* 2n elements from n bytes of FP4 codes: low nibbles first, then high nibbles. */
static void fp4_run(const uint8_t *qs, int n, float d, float *y) {
    for (int j = 0; j < n; j++) {
        y[j] = d * (float)kvalues_fp4[qs[j] & 0xF];
        y[j + n] = d * (float)kvalues_fp4[qs[j] >> 4];
    }
}

/* MXFP4: e (E8M0 scale) then qs[16]; the scale is 2^(e - 127) halved. */
static void dq_mxfp4(const uint8_t *b, float *y) {
    uint32_t bits = b[0] < 2 ? 0x00200000u << b[0] : (uint32_t)(b[0] - 1) << 23;
    float d;
    memcpy(&d, &bits, 4);
    fp4_run(b + 1, 16, d, y);
}

/* An unsigned E4M3 scale (bias 7; 0x7F reads as 0), halved. */
static float ue4m3_half(uint8_t x) {
    if (x == 0 || x == 0x7F) return 0;
    int e = (x >> 3) & 0xF, m = x & 7;
    return 0.5f * (e ? ldexpf(1.0f + (float)m / 8.0f, e - 7) : ldexpf((float)m, -9));
}

/* NVFP4: 4 UE4M3 scales (one per 16 elements), then qs[32]. */
static void dq_nvfp4(const uint8_t *b, float *y) {
    for (int s = 0; s < 4; s++) fp4_run(b + 4 + 8 * s, 8, ue4m3_half(b[s]), y + 16 * s);
}

/* ---------------------------------------------------------------- rows */

int mu_ggml_can_dequant(int type) {
    switch (type) {
    case MU_GGML_F32: case MU_GGML_F16: case MU_GGML_BF16: case MU_GGML_F64: case MU_GGML_Q4_0:
    case MU_GGML_Q4_1: case MU_GGML_Q5_0: case MU_GGML_Q5_1: case MU_GGML_Q8_0: case MU_GGML_Q8_1:
    case MU_GGML_Q2_K: case MU_GGML_Q3_K: case MU_GGML_Q4_K: case MU_GGML_Q5_K: case MU_GGML_Q6_K:
    case MU_GGML_IQ4_NL: case MU_GGML_IQ4_XS: case MU_GGML_IQ2_XXS: case MU_GGML_IQ2_XS: case MU_GGML_IQ2_S:
    case MU_GGML_IQ3_XXS: case MU_GGML_IQ3_S: case MU_GGML_IQ1_S: case MU_GGML_IQ1_M: case MU_GGML_TQ1_0:
    case MU_GGML_TQ2_0: case MU_GGML_MXFP4: case MU_GGML_NVFP4: return 1;
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
    case MU_GGML_IQ2_XXS: dq_iq2_xxs(b, y); break;
    case MU_GGML_IQ2_XS: dq_iq2_xs(b, y); break;
    case MU_GGML_IQ2_S: dq_iq2_s(b, y); break;
    case MU_GGML_IQ3_XXS: dq_iq3_xxs(b, y); break;
    case MU_GGML_IQ3_S: dq_iq3_s(b, y); break;
    case MU_GGML_IQ1_S: dq_iq1_s(b, y); break;
    case MU_GGML_IQ1_M: dq_iq1_m(b, y); break;
    case MU_GGML_TQ1_0: dq_tq1_0(b, y); break;
    case MU_GGML_TQ2_0: dq_tq2_0(b, y); break;
    case MU_GGML_MXFP4: dq_mxfp4(b, y); break;
    case MU_GGML_NVFP4: dq_nvfp4(b, y); break;
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
