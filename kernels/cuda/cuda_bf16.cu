/* cuda_bf16.cu — the bf16-weight ops of the CUDA backend (kernels.h, "bf16 weights").
 *
 * GEMMs are cublasGemmEx with bf16 A and B, f32 C and CUBLAS_COMPUTE_32F (tensor cores,
 * f32 accumulation). The f32 operand of each call (X forward, dY and X backward) is first
 * rounded into a bf16 scratch buffer of the backend (grown as needed; cudaFree of the old
 * one waits for the work that used it). Rounding is __float2bfloat16_rn, the round to
 * nearest even of the CPU backend (NaN payloads may differ). */
#include <cuda_bf16.h>
#include <cstdint>
#include "cuda_common.h"

/* ---- scratch ---------------------------------------------------------------------------- */
enum { SB_A = 0, SB_B, SB_COUNT };
static __nv_bfloat16 *g_buf[SB_COUNT];
static size_t g_cap[SB_COUNT];

static __nv_bfloat16 *scratch16(int slot, size_t n)
{
    if (n == 0) n = 1;
    if (g_cap[slot] < n) {
        if (g_buf[slot]) CK(cudaFree(g_buf[slot]));
        g_buf[slot] = NULL;
        size_t cap = n + n / 4;
        CK(cudaMalloc((void **)&g_buf[slot], cap * sizeof(__nv_bfloat16)));
        g_cap[slot] = cap;
    }
    return g_buf[slot];
}

/* ---- conversion ---------------------------------------------------------------------------- */
__global__ void k_to_bf16(__nv_bfloat16 *dst, const float *src, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[i]);
}

static void to_bf16_dev(__nv_bfloat16 *dst, const float *src, size_t n)
{
    if (!n) return;
    k_to_bf16<<<mu_cu_grid_for(n, 1), NT>>>(dst, src, n);
    KCHECK();
}

static void cu_to_bf16(uint16_t *dst, const float *src, size_t n)
{
    to_bf16_dev((__nv_bfloat16 *)dst, src, n);
}

/* bf16 copy of an f32 operand in scratch slot `slot` */
static const __nv_bfloat16 *rounded(int slot, const float *X, size_t n)
{
    __nv_bfloat16 *d = scratch16(slot, n);
    to_bf16_dev(d, X, n);
    return d;
}

/* Column-major C[m,n] = op(A) op(B) with bf16 A/B, f32 C, f32 accumulation. */
static void gemm_bf16(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                      const void *A, int lda, const void *B, int ldb, float beta, float *C,
                      int ldc)
{
    const float one = 1.0f;
    CB(cublasGemmEx(mu_cu_blas(), ta, tb, m, n, k, &one, A, CUDA_R_16BF, lda, B, CUDA_R_16BF,
                    ldb, &beta, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

/* ---- GEMMs ---------------------------------------------------------------------------------- */
/* Y[N,M] (+)= bf16(X)[N,K] W[M,K]^T  <=>  Y^T (MxN) = W (MxK, stored KxM col-major)^T X^T
 * wt (W bf16 stored [K,M], column-major M x K, ld M):  Y^T (MxN) = W^T (MxK) bf16(X)^T (KxN) */
static void bf16_fwd(float *Y, const float *X, const uint16_t *W, int N, int K, int M, int accumulate,
                     int wt)
{
    if (N <= 0 || M <= 0) return;
    if (K <= 0) {
        if (!accumulate) CK(cudaMemsetAsync(Y, 0, (size_t)N * M * sizeof *Y, 0));
        return;
    }
    const __nv_bfloat16 *Xb = rounded(SB_A, X, (size_t)N * K);
    gemm_bf16(wt ? CUBLAS_OP_N : CUBLAS_OP_T, CUBLAS_OP_N, M, N, K, W, wt ? M : K, Xb, K,
              accumulate ? 1.0f : 0.0f, Y, M);
}

/* dX[N,K] (+)= bf16(dY)[N,M] W[M,K]   <=>  dX^T (KxN) = W^T (KxM) dY^T (MxN)
 * dW[M,K] += bf16(dY)^T bf16(X)       <=>  dW^T (KxM) = X^T (KxN) (dY^T)^T
 * wt: dX^T (KxN) = op_T(W^T as MxK) bf16(dY)^T (MxN);
 *     dW^T (MxK) += bf16(dY)^T (MxN) op_T(bf16(X)^T as KxN) */
static void bf16_bwd(float *dX, float *dW, const float *dY, const float *X, const uint16_t *W, int N,
                     int K, int M, int accumulate_dx, int wt)
{
    if (N <= 0 || K <= 0) return;
    if (M <= 0) {
        if (dX && !accumulate_dx) CK(cudaMemsetAsync(dX, 0, (size_t)N * K * sizeof *dX, 0));
        return;
    }
    const __nv_bfloat16 *dYb = rounded(SB_A, dY, (size_t)N * M);
    if (dX)
        gemm_bf16(wt ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, K, N, M, W, wt ? M : K, dYb, M,
                  accumulate_dx ? 1.0f : 0.0f, dX, K);
    if (!dW) return;
    const __nv_bfloat16 *Xb = rounded(SB_B, X, (size_t)N * K);
    if (wt) gemm_bf16(CUBLAS_OP_N, CUBLAS_OP_T, M, K, N, dYb, M, Xb, K, 1.0f, dW, M);
    else gemm_bf16(CUBLAS_OP_N, CUBLAS_OP_T, K, M, N, Xb, K, dYb, M, 1.0f, dW, K);
}

static void cu_matmul_bf16(float *Y, const float *X, const uint16_t *W, int N, int K, int M,
                           int accumulate)
{
    bf16_fwd(Y, X, W, N, K, M, accumulate, 0);
}
static void cu_matmul_bf16_bwd(float *dX, float *dW, const float *dY, const float *X,
                               const uint16_t *W, int N, int K, int M, int accumulate_dx)
{
    bf16_bwd(dX, dW, dY, X, W, N, K, M, accumulate_dx, 0);
}
static void cu_matmul_wt_bf16(float *Y, const float *X, const uint16_t *W, int N, int K, int M,
                              int accumulate)
{
    bf16_fwd(Y, X, W, N, K, M, accumulate, 1);
}
static void cu_matmul_wt_bf16_bwd(float *dX, float *dW, const float *dY, const float *X,
                                  const uint16_t *W, int N, int K, int M, int accumulate_dx)
{
    bf16_bwd(dX, dW, dY, X, W, N, K, M, accumulate_dx, 1);
}

/* ---- embedding ---------------------------------------------------------------------------- */
__global__ void k_embed_bf16(float *Y, const __nv_bfloat16 *E, const int32_t *ids, int N, int D)
{
    size_t n = (size_t)N * D;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t row = i / D, col = i % D;
        Y[i] = __bfloat162float(E[(size_t)ids[row] * D + col]);
    }
}

static void cu_embed_bf16(float *Y, const uint16_t *E, const int32_t *ids, int N, int D)
{
    if (N <= 0 || D <= 0) return;
    size_t n = (size_t)N * D;
    k_embed_bf16<<<mu_cu_grid_for(n, 1), NT>>>(Y, (const __nv_bfloat16 *)E, mu_cu_ids(ids, N), N, D);
    KCHECK();
}

void mu_cu_fill_bf16(mu_backend *b)
{
    b->to_bf16 = cu_to_bf16;
    b->matmul_bf16 = cu_matmul_bf16;
    b->matmul_bf16_bwd = cu_matmul_bf16_bwd;
    b->matmul_wt_bf16 = cu_matmul_wt_bf16;
    b->matmul_wt_bf16_bwd = cu_matmul_wt_bf16_bwd;
    b->embed_bf16 = cu_embed_bf16;
}
