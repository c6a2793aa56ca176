/* cpu_ops.c — CPU forward/backward of the non-attention ops (f32). GEMMs go through
 * OpenBLAS cblas_sgemm; other loops are OpenMP-parallel when large enough.
 * Shapes and accumulate/overwrite rules: kernels.h. */
#include <math.h>
#include <string.h>
#include <stdlib.h>
#include <omp.h>
#include <cblas.h>
#include "cpu.h"
/* No FP exceptions are relied on: lets the clamps in mu_expf vectorize. */
#pragma GCC optimize("no-trapping-math")
#include "fastmath.h"

#define BLAS_PAR_MIN (1 << 20)  /* multiply-adds below which a GEMM runs on one thread */

/* OpenBLAS would split even tiny products (decoding a small model) across threads; a
 * parallel region costs more than such a call, and much more on a busy machine. These
 * bracket a small BLAS call with one thread (called outside parallel regions only). */
static int blas_begin(double macs)
{
    int nt = openblas_get_num_threads();
    if (macs >= BLAS_PAR_MIN || nt == 1) return 0;
    openblas_set_num_threads(1);
    return nt;
}

static void blas_end(int saved)
{
    if (saved) openblas_set_num_threads(saved);
}

/* ---- matmul: Y[N,M] = X[N,K] W[M,K]^T -------------------------------------------------- */
void cpu_matmul(float *Y, const float *X, const float *W, int N, int K, int M, int accumulate)
{
    if (N <= 0 || M <= 0) return;
    if (K <= 0) { if (!accumulate) memset(Y, 0, (size_t)N * M * sizeof *Y); return; }
    int saved = blas_begin((double)N * K * M);
    if (N == 1)         /* decoding: a matrix-vector product (sgemm would pack all of W) */
        cblas_sgemv(CblasRowMajor, CblasNoTrans, M, K, 1.0f, W, K, X, 1,
                    accumulate ? 1.0f : 0.0f, Y, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, M, K, 1.0f, X, K, W, K,
                    accumulate ? 1.0f : 0.0f, Y, M);
    blas_end(saved);
}

/* Rows of dY and X per dW GEMM. OpenBLAS sums a product whose inner dimension is longer
 * than its K block (GEMM_Q, 256 to 768 floats across x86 kernels) in an order that depends
 * on the thread count (measured with 0.3.21: inner dimension 900 differs between 1 and 2
 * threads, 768 does not). dW = dY^T X has the tokens as its inner dimension, so it is
 * summed in fixed chunks of tokens, in order: the gradient, and the model a training run
 * ends with, are then the same for any OMP_NUM_THREADS. Chunks this long cost no speed. */
#define DW_TOKEN_CHUNK 256

/* G[R,C] += A[N,R]^T B[N,C], token chunk by token chunk (the weight gradients:
 * matmul's dW[M,K] += dY^T X, matmul_wt's dW[K,M] += X^T dY) */
static void dw_by_token_chunks(float *G, const float *A, const float *B, int N, int R, int C)
{
    for (int n0 = 0; n0 < N; n0 += DW_TOKEN_CHUNK) {
        int nn = N - n0 < DW_TOKEN_CHUNK ? N - n0 : DW_TOKEN_CHUNK;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, R, C, nn, 1.0f,
                    A + (size_t)n0 * R, R, B + (size_t)n0 * C, C, 1.0f, G, C);
    }
}

/* dX[N,K] (+)= dY[N,M] W[M,K];  dW[M,K] += dY^T X */
void cpu_matmul_bwd(float *dX, float *dW, const float *dY, const float *X, const float *W,
                    int N, int K, int M, int accumulate_dx)
{
    if (N <= 0 || K <= 0) return;
    int saved = blas_begin((double)N * K * M);
    if (N == 1) {
        if (dX)
            cblas_sgemv(CblasRowMajor, CblasTrans, M, K, 1.0f, W, K, dY, 1,
                        accumulate_dx ? 1.0f : 0.0f, dX, 1);
        if (dW && M > 0) cblas_sger(CblasRowMajor, M, K, 1.0f, dY, 1, X, 1, dW, K);
    } else {
        if (dX)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, K, M, 1.0f, dY, M, W, K,
                        accumulate_dx ? 1.0f : 0.0f, dX, K);
        if (dW && M > 0) dw_by_token_chunks(dW, dY, X, N, M, K);
    }
    blas_end(saved);
}

/* ---- matmul_wt: Y[N,M] = X[N,K] W[K,M]  (W stored [in, out]) ---------------------------- */
void cpu_matmul_wt(float *Y, const float *X, const float *W, int N, int K, int M,
                   int accumulate)
{
    if (N <= 0 || M <= 0) return;
    if (K <= 0) { if (!accumulate) memset(Y, 0, (size_t)N * M * sizeof *Y); return; }
    int saved = blas_begin((double)N * K * M);
    if (N == 1)         /* y[M] = W[K,M]^T x[K] */
        cblas_sgemv(CblasRowMajor, CblasTrans, K, M, 1.0f, W, M, X, 1,
                    accumulate ? 1.0f : 0.0f, Y, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, M, K, 1.0f, X, K, W, M,
                    accumulate ? 1.0f : 0.0f, Y, M);
    blas_end(saved);
}

/* dX[N,K] (+)= dY[N,M] W[K,M]^T;  dW[K,M] += X[N,K]^T dY[N,M] */
void cpu_matmul_wt_bwd(float *dX, float *dW, const float *dY, const float *X, const float *W,
                       int N, int K, int M, int accumulate_dx)
{
    if (N <= 0 || K <= 0) return;
    if (M <= 0) {       /* an empty sum (and W's leading dimension M would be invalid) */
        if (dX && !accumulate_dx) memset(dX, 0, (size_t)N * K * sizeof *dX);
        return;
    }
    int saved = blas_begin((double)N * K * M);
    if (N == 1) {
        if (dX)         /* dx[K] = W[K,M] dy[M] */
            cblas_sgemv(CblasRowMajor, CblasNoTrans, K, M, 1.0f, W, M, dY, 1,
                        accumulate_dx ? 1.0f : 0.0f, dX, 1);
        if (dW) cblas_sger(CblasRowMajor, K, M, 1.0f, X, 1, dY, 1, dW, M);
    } else {
        if (dX)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, K, M, 1.0f, dY, M, W, M,
                        accumulate_dx ? 1.0f : 0.0f, dX, K);
        if (dW) dw_by_token_chunks(dW, X, dY, N, K, M);
    }
    blas_end(saved);
}

/* ---- bias: Y[N,M] += b[M] --------------------------------------------------------------- */
void cpu_bias_add(float *Y, const float *b, int N, int M)
{
    #pragma omp parallel for if ((size_t)N * M > PAR_MIN)
    for (int n = 0; n < N; n++) {
        float *y = Y + (size_t)n * M;
        for (int j = 0; j < M; j++) y[j] += b[j];
    }
}

/* db[M] += sum_n dY[n,M]: columns split across threads, rows summed in order. */
void cpu_bias_add_bwd(float *db, const float *dY, int N, int M)
{
    if (!db) return;
    #pragma omp parallel for if ((size_t)N * M > PAR_MIN)
    for (int j = 0; j < M; j++) {
        double s = 0;
        for (int n = 0; n < N; n++) s += dY[(size_t)n * M + j];
        db[j] += (float)s;
    }
}

/* ---- embedding: Y[N,D] = E[ids[n]] ----------------------------------------------------- */
void cpu_embed(float *Y, const float *E, const int32_t *ids, int N, int D)
{
    #pragma omp parallel for if ((size_t)N * D > PAR_MIN)
    for (int n = 0; n < N; n++)
        memcpy(Y + (size_t)n * D, E + (size_t)ids[n] * D, (size_t)D * sizeof *Y);
}

/* dE[ids[n]] += dY[n]: serial over rows (repeated ids), columns split across threads. */
void cpu_embed_bwd(float *dE, const float *dY, const int32_t *ids, int N, int D)
{
    if (!dE) return;
    int nt = (size_t)N * D > PAR_MIN ? omp_get_max_threads() : 1;
    #pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        int c0 = (int)((int64_t)D * t / T), c1 = (int)((int64_t)D * (t + 1) / T);
        for (int n = 0; n < N; n++) {
            float *e = dE + (size_t)ids[n] * D;
            const float *g = dY + (size_t)n * D;
            for (int j = c0; j < c1; j++) e[j] += g[j];
        }
    }
}

/* ---- RMSNorm: Y = X * rstd * w, rstd = 1/sqrt(mean(X^2) + eps) ------------------------- */
void cpu_rmsnorm(float *Y, float *rstd, const float *X, const float *w, int N, int D, float eps)
{
    #pragma omp parallel for if ((size_t)N * D > PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *x = X + (size_t)n * D;
        float *y = Y + (size_t)n * D;
        double ss = 0;
        for (int j = 0; j < D; j++) ss += (double)x[j] * x[j];
        float r = (float)(1.0 / sqrt(ss / D + eps));
        if (rstd) rstd[n] = r;
        for (int j = 0; j < D; j++) y[j] = x[j] * r * w[j];
    }
}

/* dX += r*w*dY - r^3/D * X * sum_j(dY_j w_j X_j): rows in parallel. */
static void rmsnorm_bwd_dx(float *dX, const float *dY, const float *X, const float *w,
                           const float *rstd, int N, int D)
{
    #pragma omp parallel for if ((size_t)N * D > PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *x = X + (size_t)n * D, *dy = dY + (size_t)n * D;
        float *dx = dX + (size_t)n * D;
        float r = rstd[n];
        double dot = 0;
        for (int j = 0; j < D; j++) dot += (double)dy[j] * w[j] * x[j];
        float c = (float)(dot * r * r * r / D);
        for (int j = 0; j < D; j++) dx[j] += r * w[j] * dy[j] - c * x[j];
    }
}

/* The norms' weight (and bias) gradients, sums over rows: row(g, n, c0, c1) adds row n's
 * terms to the columns [c0, c1). */
typedef struct { float *dw, *db; const float *dY, *X, *mean, *rstd; int D; } norm_grad;
typedef void (*norm_grad_row)(const norm_grad *g, int n, int c0, int c1);

/* Columns split across threads, each thread's rows in order, so the sums do not depend on
 * the thread count. */
static void by_column_blocks(const norm_grad *g, int N, norm_grad_row row)
{
    int D = g->D, nt = (size_t)N * D > PAR_MIN ? omp_get_max_threads() : 1;
    #pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        int c0 = (int)((int64_t)D * t / T), c1 = (int)((int64_t)D * (t + 1) / T);
        for (int n = 0; n < N; n++) row(g, n, c0, c1);
    }
}

/* RMSNorm: dw[j] += dY x r */
static void rmsnorm_dw_row(const norm_grad *g, int n, int c0, int c1)
{
    const float *x = g->X + (size_t)n * g->D, *dy = g->dY + (size_t)n * g->D;
    float r = g->rstd[n];
    for (int j = c0; j < c1; j++) g->dw[j] += dy[j] * x[j] * r;
}

/* dw[D] += sum_n dY*X*r */
static void rmsnorm_bwd_dw(float *dw, const float *dY, const float *X, const float *rstd,
                           int N, int D)
{
    norm_grad g = { dw, NULL, dY, X, NULL, rstd, D };
    by_column_blocks(&g, N, rmsnorm_dw_row);
}

void cpu_rmsnorm_bwd(float *dX, float *dw, const float *dY, const float *X, const float *w,
                     const float *rstd, int N, int D)
{
    rmsnorm_bwd_dx(dX, dY, X, w, rstd, N, D);
    if (dw) rmsnorm_bwd_dw(dw, dY, X, rstd, N, D);
}

/* ---- LayerNorm: Y = (X - mean) * rstd * w + b, rstd = 1/sqrt(var + eps) ---------------- */
/* mean and biased variance of one row x[D], two passes in double; returns rstd */
static float row_mean_rstd(const float *x, int D, float eps, float *mean)
{
    double s = 0;
    for (int j = 0; j < D; j++) s += x[j];
    double m = s / D, ss = 0;
    for (int j = 0; j < D; j++) {
        double c = x[j] - m;
        ss += c * c;
    }
    *mean = (float)m;
    return (float)(1.0 / sqrt(ss / D + eps));
}

/* Y[N,D]; mean[N], rstd[N] (each may be NULL); b[D] may be NULL */
void cpu_layernorm(float *Y, float *mean, float *rstd, const float *X, const float *w,
                   const float *b, int N, int D, float eps)
{
    #pragma omp parallel for if ((size_t)N * D > PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *x = X + (size_t)n * D;
        float *y = Y + (size_t)n * D;
        float m, r = row_mean_rstd(x, D, eps, &m);
        if (mean) mean[n] = m;
        if (rstd) rstd[n] = r;
        for (int j = 0; j < D; j++) y[j] = (x[j] - m) * r * w[j] + (b ? b[j] : 0.0f);
    }
}

/* dX += r (g - mean_j g - xhat mean_j(g xhat)), g = dY w, xhat = (X - mean) r: rows in
 * parallel, the two row means in double. */
static void layernorm_bwd_dx(float *dX, const float *dY, const float *X, const float *w,
                             const float *mean, const float *rstd, int N, int D)
{
    #pragma omp parallel for if ((size_t)N * D > PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *x = X + (size_t)n * D, *dy = dY + (size_t)n * D;
        float *dx = dX + (size_t)n * D;
        float m = mean[n], r = rstd[n];
        double sg = 0, sgx = 0;
        for (int j = 0; j < D; j++) {
            float g = dy[j] * w[j];
            sg += g;
            sgx += (double)g * ((x[j] - m) * r);
        }
        float mg = (float)(sg / D), mgx = (float)(sgx / D);
        for (int j = 0; j < D; j++)
            dx[j] += r * (dy[j] * w[j] - mg - (x[j] - m) * r * mgx);
    }
}

/* LayerNorm: dw[j] += dY xhat, db[j] += dY (either may be NULL) */
static void layernorm_dwdb_row(const norm_grad *g, int n, int c0, int c1)
{
    const float *x = g->X + (size_t)n * g->D, *dy = g->dY + (size_t)n * g->D;
    float m = g->mean[n], r = g->rstd[n];
    if (g->dw) for (int j = c0; j < c1; j++) g->dw[j] += dy[j] * ((x[j] - m) * r);
    if (g->db) for (int j = c0; j < c1; j++) g->db[j] += dy[j];
}

/* dw[D] += sum_n dY xhat, db[D] += sum_n dY (either may be NULL) */
static void layernorm_bwd_dwdb(float *dw, float *db, const float *dY, const float *X,
                               const float *mean, const float *rstd, int N, int D)
{
    norm_grad g = { dw, db, dY, X, mean, rstd, D };
    by_column_blocks(&g, N, layernorm_dwdb_row);
}

void cpu_layernorm_bwd(float *dX, float *dw, float *db, const float *dY, const float *X,
                       const float *w, const float *mean, const float *rstd, int N, int D)
{
    if (N <= 0 || D <= 0) return;
    if (dX) layernorm_bwd_dx(dX, dY, X, w, mean, rstd, N, D);
    if (dw || db) layernorm_bwd_dwdb(dw, db, dY, X, mean, rstd, N, D);
}

/* ---- strided row copy: dst[r, :width] = src[r, :width] ----------------------------------- */
void cpu_copy_rows(float *dst, int dst_ld, const float *src, int src_ld, int rows, int width)
{
    if (rows <= 0 || width <= 0) return;
    #pragma omp parallel for if ((size_t)rows * width > PAR_MIN)
    for (int r = 0; r < rows; r++)
        memcpy(dst + (size_t)r * dst_ld, src + (size_t)r * src_ld, (size_t)width * sizeof *dst);
}

/* ---- RoPE (HF rotate_half): pairs (i, i + hd/2) rotated by pos * inv_freq[i] ----------- */
static void rope_rotate(float *X, const int32_t *pos, const float *inv_freq, int N, int H,
                        int hd, float sign)
{
    int half = hd / 2;
    #pragma omp parallel for if ((size_t)N * H * hd > PAR_MIN)
    for (int n = 0; n < N; n++) {
        for (int i = 0; i < half; i++) {
            float a = (float)pos[n] * inv_freq[i];
            float c = cosf(a), s = sign * sinf(a);
            for (int h = 0; h < H; h++) {
                float *x = X + ((size_t)n * H + h) * hd;
                float x1 = x[i], x2 = x[i + half];
                x[i] = x1 * c - x2 * s;
                x[i + half] = x2 * c + x1 * s;
            }
        }
    }
}

void cpu_rope(float *X, const int32_t *pos, const float *inv_freq, int N, int H, int hd)
{
    rope_rotate(X, pos, inv_freq, N, H, hd, 1.0f);
}

/* The rotation is orthogonal: its transpose is the rotation by -angle. */
void cpu_rope_bwd(float *dX, const int32_t *pos, const float *inv_freq, int N, int H, int hd)
{
    rope_rotate(dX, pos, inv_freq, N, H, hd, -1.0f);
}

/* ---- SwiGLU: A = silu(G) * U ------------------------------------------------------------ */
static inline float sigmoidf(float g) { return 1.0f / (1.0f + mu_expf(-g)); }

void cpu_swiglu(float *A, const float *G, const float *U, size_t n)
{
    #pragma omp parallel for simd if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) A[i] = G[i] * sigmoidf(G[i]) * U[i];
}

/* silu'(g) = s (1 + g (1 - s)), s = sigmoid(g) */
void cpu_swiglu_bwd(float *dG, float *dU, const float *dA, const float *G, const float *U,
                    size_t n)
{
    #pragma omp parallel for simd if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float g = G[i], s = sigmoidf(g);
        dU[i] = dA[i] * g * s;
        dG[i] = dA[i] * U[i] * s * (1.0f + g * (1.0f - s));
    }
}

/* ---- GeGLU: A = gelu_tanh(G) * U --------------------------------------------------------- */
#define GELU_C 0.7978845608028654f   /* sqrt(2 / pi) */
#define GELU_K 0.044715f
#define SQRT1_2 0.7071067811865476f
#define INV_SQRT_2PI 0.3989422804014327f

/* gelu(g) and gelu'(g): tanh form, (1 + t) / 2 + g/2 (1 - t^2) sqrt(2/pi) (1 + 3 k g^2) with
 * t = tanh(sqrt(2/pi) (g + k g^3)); erf form, Phi(g) + g phi(g) */
static inline float gelu_d(float g, int tanh_form, float *d)
{
    if (tanh_form) {
        float t = tanhf(GELU_C * (g + GELU_K * g * g * g));
        *d = 0.5f * (1.0f + t) + 0.5f * g * (1.0f - t * t) * GELU_C * (1.0f + 3.0f * GELU_K * g * g);
        return 0.5f * g * (1.0f + t);
    }
    float Phi = 0.5f * (1.0f + erff(g * SQRT1_2));
    *d = Phi + g * INV_SQRT_2PI * expf(-0.5f * g * g);
    return g * Phi;
}

void cpu_geglu(float *A, const float *G, const float *U, size_t n, int tanh_form)
{
    #pragma omp parallel for if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float d;
        A[i] = gelu_d(G[i], tanh_form, &d) * U[i];
    }
}

void cpu_geglu_bwd(float *dG, float *dU, const float *dA, const float *G, const float *U,
                   size_t n, int tanh_form)
{
    #pragma omp parallel for if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float d, gelu = gelu_d(G[i], tanh_form, &d);
        dU[i] = dA[i] * gelu;
        dG[i] = dA[i] * U[i] * d;
    }
}

/* ---- plain GELU: A = gelu(X), gelu_d's two forms ---------------------------------------- */
void cpu_gelu(float *A, const float *X, size_t n, int tanh_form)
{
    #pragma omp parallel for if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float d;
        A[i] = gelu_d(X[i], tanh_form, &d);
    }
}

/* dX = dA gelu'(X) */
void cpu_gelu_bwd(float *dX, const float *dA, const float *X, size_t n, int tanh_form)
{
    #pragma omp parallel for if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float d;
        gelu_d(X[i], tanh_form, &d);
        dX[i] = dA[i] * d;
    }
}

/* ---- logit soft-capping ------------------------------------------------------------------ */
void cpu_softcap(float *X, size_t n, float cap)
{
    const float inv = 1.0f / cap;
    #pragma omp parallel for if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) X[i] = cap * mu_tanhf(X[i] * inv);
}

void cpu_softcap_bwd(float *dX, const float *Y, size_t n, float cap)
{
    const float inv = 1.0f / cap;
    #pragma omp parallel for if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float y = Y[i] * inv;
        dX[i] *= 1.0f - y * y;
    }
}

/* ---- elementwise ------------------------------------------------------------------------ */
void cpu_add(float *Y, const float *X, size_t n)
{
    #pragma omp parallel for if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) Y[i] += X[i];
}

void cpu_scale(float *Y, float alpha, size_t n)
{
    #pragma omp parallel for if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) Y[i] *= alpha;
}

/* ---- log-softmax and cross-entropy ------------------------------------------------------ */
static double row_logsumexp(const float *x, int V)
{
    float mx = -INFINITY;
    for (int j = 0; j < V; j++) if (x[j] > mx) mx = x[j];
    double s = 0;
    for (int j = 0; j < V; j++) s += exp((double)x[j] - mx);
    return mx + log(s);
}

void cpu_log_softmax(float *Y, const float *X, int N, int V)
{
    #pragma omp parallel for if ((size_t)N * V > PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *x = X + (size_t)n * V;
        float *y = Y + (size_t)n * V;
        double lse = row_logsumexp(x, V);
        for (int j = 0; j < V; j++) y[j] = (float)(x[j] - lse);
    }
}

void cpu_cross_entropy(float *loss, float *dlogits, const float *logits, const int32_t *targets,
                       int N, int V, float dscale)
{
    #pragma omp parallel for if ((size_t)N * V > PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * V;
        float *d = dlogits ? dlogits + (size_t)n * V : NULL;
        int y = targets[n];
        if (y < 0 || y >= V) {
            loss[n] = 0;
            if (d) memset(d, 0, (size_t)V * sizeof *d);
            continue;
        }
        if (!d) {
            loss[n] = (float)(row_logsumexp(x, V) - x[y]);
            continue;
        }
        /* one exp pass: d = exp(x - max), then scaled to dscale * softmax */
        float mx = -INFINITY;
        for (int j = 0; j < V; j++) if (x[j] > mx) mx = x[j];
        double sum = 0;
        #pragma omp simd reduction(+:sum)
        for (int j = 0; j < V; j++) { d[j] = mu_expf(x[j] - mx); sum += d[j]; }
        loss[n] = (float)(mx + log(sum) - x[y]);
        float sc = (float)(dscale / sum);
        for (int j = 0; j < V; j++) d[j] *= sc;
        d[y] -= dscale;
    }
}

/* ---- target log-probability and its gradient -------------------------------------------
 * These two are bit-identical to lib/objectives.c (mu_logsumexp and add_logp_grad), through
 * which the trainer's goldens were made: the same operations in the same order, the sum
 * sequential in j (no simd reduction), exp in double. Rows run in parallel; each row is
 * computed by one thread, so results do not depend on the thread count. row_logsumexp is
 * mu_logsumexp's arithmetic (its -INFINITY start gives the same maximum for V >= 1). */

void cpu_target_logprob(double *logp, const float *logits, const int32_t *targets, int N, int V)
{
    #pragma omp parallel for if ((size_t)N * V > PAR_MIN)
    for (int n = 0; n < N; n++) {
        int y = targets[n];
        if (y < 0 || y >= V) { logp[n] = 0; continue; }
        const float *z = logits + (size_t)n * V;
        logp[n] = z[y] - row_logsumexp(z, V);
    }
}

/* d[j] -= a p_j for every j (y included), then d[y] += a: add_logp_grad's order */
void cpu_logp_grad(float *dlogits, const float *logits, const int32_t *targets, const double *a,
                   int N, int V)
{
    #pragma omp parallel for if ((size_t)N * V > PAR_MIN)
    for (int n = 0; n < N; n++) {
        int y = targets[n];
        double an = a[n];
        if (y < 0 || y >= V || an == 0) continue;
        const float *z = logits + (size_t)n * V;
        float *d = dlogits + (size_t)n * V;
        double lse = row_logsumexp(z, V);
        for (int j = 0; j < V; j++) d[j] -= (float)(an * exp((double)z[j] - lse));
        d[y] += (float)an;
    }
}
