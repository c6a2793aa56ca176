/* cpu_attention.c — causal grouped-query attention with key padding on the CPU.
 *
 * Work is split into blocks of (row b, head h, tile of QT queries); each block computes
 * its scores S[QT, kmax] in a per-thread buffer with two sgemm calls (Q K^T, P V), so
 * [B,H,Tq,Tk] is never materialized. Backward recomputes P from Q, K and the saved
 * log-sum-exp (flash-attention style) and is split by (b, kv head) so that dK/dV of a
 * kv head are written by one thread only. Inside OpenMP regions OpenBLAS runs
 * single-threaded. */
#include <math.h>
#include <string.h>
#include <stdlib.h>
#include <cblas.h>
#include "cpu.h"
/* No FP exceptions are relied on: lets the clamps in mu_expf vectorize. */
#pragma GCC optimize("no-trapping-math")
#include "fastmath.h"

#define QT 64   /* queries per block */
#define PAR_MIN_FLOPS 2000000.0   /* below this a call runs on one thread (decoding) */

/* Rough multiply-adds of a call: parallel regions cost more than tiny calls gain. */
static int worth_threads(const mu_attn_shape *s)
{
    return (double)s->B * s->H * s->Tq * s->Tk * s->hd > PAR_MIN_FLOPS;
}

/* Keys visible to query t of row b: key_lo(b, t) <= j < n_keys(b, t). */
static inline int n_keys(const mu_attn_shape *s, int b, int t)
{
    int p = (s->q_pos0 ? s->q_pos0[b] : 0) + t;
    int kl = s->k_len ? s->k_len[b] : s->Tk;
    int n = p + 1 < kl ? p + 1 : kl;
    if (n > s->Tk) n = s->Tk;
    return n < 0 ? 0 : n;
}

/* First key query t of row b sees: 0, or with a sliding window p - window + 1. */
static inline int key_lo(const mu_attn_shape *s, int b, int t)
{
    if (s->window <= 0) return 0;
    int lo = (s->q_pos0 ? s->q_pos0[b] : 0) + t - s->window + 1;
    return lo > 0 ? lo : 0;
}

/* The keys [k0, k0 + kw) a tile of queries t0 .. t0 + nq - 1 sees: kw <= 0 when none. */
static inline int tile_keys(const mu_attn_shape *s, int b, int t0, int nq, int *k0)
{
    *k0 = key_lo(s, b, t0);
    return n_keys(s, b, t0 + nq - 1) - *k0;
}

/* max of x[0..n): 8 running maxima (the compiler keeps them in two vector registers). */
static float row_max(const float *x, int n)
{
    float m[8];
    for (int k = 0; k < 8; k++) m[k] = -INFINITY;
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++) m[k] = x[j + k] > m[k] ? x[j + k] : m[k];
    for (; j < n; j++) m[0] = x[j] > m[0] ? x[j] : m[0];
    float mx = m[0];
    for (int k = 1; k < 8; k++) mx = m[k] > mx ? m[k] : mx;
    return mx;
}

/* Y[n] = cap tanh(Y[n] / cap) */
static void softcap_scores(float *Y, size_t n, float cap)
{
    const float inv = 1.0f / cap;
    #pragma omp simd
    for (size_t i = 0; i < n; i++) Y[i] = cap * mu_tanhf(Y[i] * inv);
}

/* Row t of a block over keys k0 .. k0 + kw - 1: the visible keys [*lo, return value) of its kw columns (empty when
 * the value is <= *lo). */
static inline int row_keys(const mu_attn_shape *s, int b, int t, int k0, int kw, int *lo)
{
    int l = key_lo(s, b, t) - k0, n = n_keys(s, b, t) - k0;
    *lo = l < 0 ? 0 : l;
    return n < kw ? n : kw;
}

/* S[nq, kw] = scale * Q_tile K^T over keys k0 .. k0 + kw - 1 (K points at key k0),
 * soft-capped, with the entries no query sees set to -inf. */
static void block_scores(float *S, const float *Q, const float *K, const mu_attn_shape *s,
                         int b, int t0, int nq, int k0, int kw, int qld, int kld)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, kw, s->hd, s->scale,
                Q, qld, K, kld, 0.0f, S, kw);
    if (s->softcap > 0) softcap_scores(S, (size_t)nq * kw, s->softcap);
    for (int i = 0; i < nq; i++) {
        int lo, nk = row_keys(s, b, t0 + i, k0, kw, &lo);
        float *row = S + (size_t)i * kw;
        for (int j = 0; j < lo && j < kw; j++) row[j] = -INFINITY;
        for (int j = nk > lo ? nk : lo; j < kw; j++) row[j] = -INFINITY;
    }
}

/* Row softmax of srow's visible keys [lo, nk) in place (0 elsewhere in [0, kw)); returns
 * the log-sum-exp, -inf when nothing is visible. */
static float row_softmax(float *srow, int lo, int nk, int kw)
{
    if (nk <= lo) {
        memset(srow, 0, (size_t)kw * sizeof *srow);
        return -INFINITY;
    }
    float mx = row_max(srow + lo, nk - lo);
    float sum = 0;
    #pragma omp simd reduction(+:sum)
    for (int j = lo; j < nk; j++) { srow[j] = mu_expf(srow[j] - mx); sum += srow[j]; }
    float inv = 1.0f / sum;
    #pragma omp simd
    for (int j = lo; j < nk; j++) srow[j] *= inv;
    for (int j = 0; j < lo; j++) srow[j] = 0;
    for (int j = nk; j < kw; j++) srow[j] = 0;
    return mx + logf(sum);
}

void cpu_attention(float *O, float *lse, const float *Q, const float *K, const float *V,
                   const mu_attn_shape *s)
{
    const int H = s->H, hd = s->hd, group = s->H / s->Hkv, ntile = (s->Tq + QT - 1) / QT;
    const int qld = H * hd, kld = s->Hkv * hd;
    if (s->B <= 0 || s->Tq <= 0) return;
    #pragma omp parallel if (worth_threads(s))
    {
        size_t rows = s->Tq < QT ? (size_t)s->Tq : QT;     /* decode: one query row */
        float *S = malloc(rows * (s->Tk > 0 ? s->Tk : 1) * sizeof *S);
        if (!S) abort();
        #pragma omp for collapse(3) schedule(dynamic)
        for (int b = 0; b < s->B; b++)
            for (int h = 0; h < H; h++)
                for (int tile = 0; tile < ntile; tile++) {
                    int t0 = tile * QT, nq = s->Tq - t0 < QT ? s->Tq - t0 : QT, k0;
                    int kw = tile_keys(s, b, t0, nq, &k0);
                    const float *q = Q + ((size_t)b * s->Tq + t0) * qld + (size_t)h * hd;
                    float *o = O + ((size_t)b * s->Tq + t0) * qld + (size_t)h * hd;
                    size_t koff = ((size_t)b * s->Tk + (kw > 0 ? k0 : 0)) * kld + (size_t)(h / group) * hd;
                    float *l = lse ? lse + ((size_t)b * H + h) * s->Tq + t0 : NULL;
                    if (kw <= 0) {          /* nothing visible: zero output */
                        for (int i = 0; i < nq; i++) {
                            memset(o + (size_t)i * qld, 0, (size_t)hd * sizeof *o);
                            if (l) l[i] = -INFINITY;
                        }
                        continue;
                    }
                    block_scores(S, q, K + koff, s, b, t0, nq, k0, kw, qld, kld);
                    for (int i = 0; i < nq; i++) {   /* row softmax, keep log-sum-exp */
                        int lo, nk = row_keys(s, b, t0 + i, k0, kw, &lo);
                        float li = row_softmax(S + (size_t)i * kw, lo, nk, kw);
                        if (l) l[i] = li;
                    }
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, kw, 1.0f,
                                S, kw, V + koff, kld, 0.0f, o, qld);
                }
        free(S);
    }
}

/* Row of a block's backward, in place: srow holds the capped scores y of keys [0, kw),
 * dprow dP = dO V^T; on return srow = P = exp(y - li) and dprow = scale * dS over the
 * visible keys [lo, nk), dS = P (dP - ds) (times 1 - (y / cap)^2, the soft-cap's
 * derivative, when capped); 0 elsewhere. */
static void row_backward(float *srow, float *dprow, int lo, int nk, int kw, float li, float ds,
                         const mu_attn_shape *s)
{
    const float sc = s->scale, cap = s->softcap;
    if (cap > 0) {
        const float inv = 1.0f / cap;
        #pragma omp simd
        for (int j = lo; j < nk; j++) {
            float y = srow[j] * inv, p = mu_expf(srow[j] - li);
            srow[j] = p;
            dprow[j] = p * (dprow[j] - ds) * (1.0f - y * y) * sc;
        }
    } else {
        #pragma omp simd
        for (int j = lo; j < nk; j++) {
            float p = mu_expf(srow[j] - li);
            srow[j] = p;                                  /* P */
            dprow[j] = p * (dprow[j] - ds) * sc;          /* dS * scale */
        }
    }
    for (int j = 0; j < lo && j < kw; j++) srow[j] = dprow[j] = 0;
    for (int j = nk > lo ? nk : lo; j < kw; j++) srow[j] = dprow[j] = 0;
}

/* For one (b, h, tile) over keys [k0, k0 + kw) (k, v, dk, dv point at key k0):
 * P = exp(S - lse); dP = dO V^T; dS = P (dP - rowsum(dO o O));
 * dQ = scale dS K;  dK += scale dS^T Q;  dV += P^T dO. */
static void block_backward(float *S, float *dP, const float *q, const float *k, const float *v,
                           const float *o, const float *dout, const float *l, float *dq,
                           float *dk, float *dv, const mu_attn_shape *s, int b, int t0, int nq,
                           int k0, int kw, int qld, int kld)
{
    const int hd = s->hd;
    block_scores(S, q, k, s, b, t0, nq, k0, kw, qld, kld);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, kw, hd, 1.0f, dout, qld,
                v, kld, 0.0f, dP, kw);
    for (int i = 0; i < nq; i++) {
        int lo, nk = row_keys(s, b, t0 + i, k0, kw, &lo);
        double dsum = 0;
        for (int d = 0; d < hd; d++) dsum += (double)dout[(size_t)i * qld + d] * o[(size_t)i * qld + d];
        row_backward(S + (size_t)i * kw, dP + (size_t)i * kw, lo, nk, kw, l[i], (float)dsum, s);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, kw, 1.0f, dP, kw,
                k, kld, 0.0f, dq, qld);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kw, hd, nq, 1.0f, dP, kw,
                q, qld, 1.0f, dk, kld);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kw, hd, nq, 1.0f, S, kw,
                dout, qld, 1.0f, dv, kld);
}

void cpu_attention_bwd(float *dQ, float *dK, float *dV, const float *dO, const float *O,
                       const float *lse, const float *Q, const float *K, const float *V,
                       const mu_attn_shape *s)
{
    const int H = s->H, hd = s->hd, group = s->H / s->Hkv, ntile = (s->Tq + QT - 1) / QT;
    const int qld = H * hd, kld = s->Hkv * hd;
    if (s->B <= 0) return;
    if (s->Tk <= 0) {                                             /* no key: dQ = 0 */
        if (s->Tq > 0) memset(dQ, 0, (size_t)s->B * s->Tq * qld * sizeof *dQ);
        return;
    }
    memset(dK, 0, (size_t)s->B * s->Tk * kld * sizeof *dK);      /* no query: zero */
    memset(dV, 0, (size_t)s->B * s->Tk * kld * sizeof *dV);
    if (s->Tq <= 0) return;
    #pragma omp parallel if (worth_threads(s))
    {
        size_t sz = (s->Tq < QT ? (size_t)s->Tq : QT) * (s->Tk > 0 ? s->Tk : 1);
        float *S = malloc(sz * sizeof *S), *dP = malloc(sz * sizeof *dP);
        if (!S || !dP) abort();
        #pragma omp for collapse(2) schedule(dynamic)
        for (int b = 0; b < s->B; b++)
            for (int kh = 0; kh < s->Hkv; kh++) {
                size_t koff = (size_t)b * s->Tk * kld + (size_t)kh * hd;
                for (int h = kh * group; h < (kh + 1) * group; h++)
                    for (int tile = 0; tile < ntile; tile++) {
                        int t0 = tile * QT, nq = s->Tq - t0 < QT ? s->Tq - t0 : QT, k0;
                        int kw = tile_keys(s, b, t0, nq, &k0);
                        size_t qoff = ((size_t)b * s->Tq + t0) * qld + (size_t)h * hd;
                        if (kw <= 0) {
                            for (int i = 0; i < nq; i++)
                                memset(dQ + qoff + (size_t)i * qld, 0, (size_t)hd * sizeof *dQ);
                            continue;
                        }
                        size_t ko = koff + (size_t)k0 * kld;
                        block_backward(S, dP, Q + qoff, K + ko, V + ko, O + qoff, dO + qoff,
                                       lse + ((size_t)b * H + h) * s->Tq + t0, dQ + qoff,
                                       dK + ko, dV + ko, s, b, t0, nq, k0, kw, qld, kld);
                    }
            }
        free(S); free(dP);
    }
}
