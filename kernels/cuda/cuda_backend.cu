/* cuda_backend.cu — the CUDA backend of mu: the mu_backend table of kernels.h on one
 * NVIDIA GPU, f32 storage and f32 arithmetic (see mu-cuda(7)).
 *
 *  - GEMMs: cuBLAS sgemm (row-major problems mapped onto column-major calls; no TF32
 *    unless MU_CUDA_TF32=1 is set, so results follow the CPU backend to f32 rounding).
 *  - Everything else: one kernel per op, grid-stride loops (any size runs on any grid).
 *  - Reductions whose result is a parameter gradient (bias, RMSNorm and LayerNorm weight
 *    and bias, embedding, attention dK/dV) are written by exactly one thread or warp in a
 *    fixed order: no atomics, so two runs give the same bits.
 *  - Attention: head dims up to 128 run the tiled kernels of cuda_attn_tiled.cu (blocks
 *    per query tile or key tile, K/V or Q/dO tiles in shared memory); otherwise (or with
 *    MU_CUDA_ATTENTION=warp) one warp per query row (online softmax over its visible
 *    keys, head dim up to 256 held in registers); backward recomputes probabilities from
 *    the saved log-sum-exp: one warp per query row for dQ, one warp per key row for dK/dV.
 *  - All work runs on the legacy default stream, so kernels, cuBLAS calls and copies are
 *    ordered; download (cudaMemcpy) waits for what came before.
 *  - Host integer arrays (ids, targets, positions, lengths) and inv_freq are copied into
 *    per-argument device scratch buffers that grow as needed (skipped when unchanged).
 *  - Every CUDA and cuBLAS call is checked; a failure prints one line with file:line and
 *    exits with status 1 (the backend interface has no error returns), except alloc,
 *    which returns NULL as kernels.h asks. */
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cstdint>
#include <cmath>
#include <cuda_runtime.h>
#include <cublas_v2.h>
#include "mu_cuda.h"
#include "cuda_common.h"

/* ---- error checks, geometry (cuda_common.h) --------------------------------------------- */
void mu_cu_fail(const char *what, const char *msg, const char *file, int line)
{
    fprintf(stderr, "mu: cuda: %s:%d: %s: %s\n", file, line, what, msg);
    exit(1);
}

static cublasHandle_t g_blas;
static int g_ready;              /* 1: initialized, 2: no device */
static cudaDeviceProp g_prop;
static int g_nsm = 1;

int mu_cu_debug_sync;            /* MU_CUDA_DEBUG=1: KCHECK waits for each kernel */

cublasHandle_t mu_cu_blas(void) { return g_blas; }

#define MAX_HD 256               /* attention head dim held in registers */

/* Blocks for a grid-stride loop over n items, each handled by `per` threads. */
unsigned mu_cu_grid_for(size_t n, int per)
{
    size_t threads = n * (size_t)per;
    size_t b = (threads + NT - 1) / NT;
    size_t cap = (size_t)g_nsm * 32;
    if (b < 1) b = 1;
    if (b > cap) b = cap;
    return (unsigned)b;
}
static unsigned grid_for(size_t n, int per) { return mu_cu_grid_for(n, per); }

/* ---- scratch copies of host arrays ---------------------------------------------------- */
/* SC_TGT: the targets of cross_entropy, target_logprob and logp_grad (a step's calls pass
 * the same ones, so they are copied once); SC_COEF: logp_grad's a[N]; SC_LOGP: the logp[N]
 * of target_logprob on their way to the host. */
enum { SC_IDS = 0, SC_POS, SC_FREQ, SC_QPOS, SC_KLEN, SC_TGT, SC_LOSS, SC_DELTA, SC_COEF,
       SC_LOGP, SC_COUNT };
static void *g_scratch[SC_COUNT];
static size_t g_scratch_cap[SC_COUNT];

static void *scratch(int slot, size_t nbytes)
{
    if (nbytes == 0) nbytes = 4;
    if (g_scratch_cap[slot] < nbytes) {
        size_t cap = nbytes < 4096 ? 4096 : nbytes + nbytes / 2;
        if (g_scratch[slot]) CK(cudaFree(g_scratch[slot]));
        g_scratch[slot] = NULL;
        CK(cudaMalloc(&g_scratch[slot], cap));
        g_scratch_cap[slot] = cap;
    }
    return g_scratch[slot];
}

/* Device copy of a host array (NULL stays NULL). A host copy of what each slot holds
 * skips the transfer when the same contents come again (rope of q then k, every layer's
 * attention lengths). The pageable-memory cudaMemcpy first waits for the stream, so a
 * kernel still reading the previous contents is done before they change. */
static void *g_shadow[SC_COUNT];
static size_t g_shadow_len[SC_COUNT], g_shadow_cap[SC_COUNT];

static const void *to_device(int slot, const void *host, size_t nbytes)
{
    if (!host) return NULL;
    int grew = g_scratch_cap[slot] < (nbytes ? nbytes : 4);
    void *d = scratch(slot, nbytes);
    if (!nbytes) return d;
    if (!grew && g_shadow_len[slot] == nbytes && !memcmp(g_shadow[slot], host, nbytes))
        return d;
    CK(cudaMemcpy(d, host, nbytes, cudaMemcpyHostToDevice));
    if (g_shadow_cap[slot] < nbytes) {
        void *h = realloc(g_shadow[slot], nbytes);
        if (!h) { g_shadow_len[slot] = 0; return d; }     /* no cache: copy every time */
        g_shadow[slot] = h;
        g_shadow_cap[slot] = nbytes;
    }
    memcpy(g_shadow[slot], host, nbytes);
    g_shadow_len[slot] = nbytes;
    return d;
}

/* Device copy of token ids (cuda_common.h): the embedding ops' shared scratch slot. */
const int32_t *mu_cu_ids(const int32_t *ids, int N)
{
    return (const int32_t *)to_device(SC_IDS, ids, (size_t)N * sizeof *ids);
}

/* ---- reductions ----------------------------------------------------------------------- */
/* Sum over the block (blockDim.x == NT) in float or double, in a fixed order (each warp's
 * shuffle tree, then the warps' sums by warp 0); every thread gets the result. */
template <typename T> __device__ T block_sum_of(T v)
{
    __shared__ T sh[WARPS];
    __shared__ T total;
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    v = warp_sum(v);
    __syncthreads();                 /* sh may still be read by a previous call */
    if (lane == 0) sh[w] = v;
    __syncthreads();
    if (w == 0) {
        T t = lane < WARPS ? sh[lane] : (T)0;
        t = warp_sum(t);
        if (lane == 0) total = t;
    }
    __syncthreads();
    return total;
}
__device__ float block_sum(float v) { return block_sum_of(v); }
__device__ float block_max(float v)
{
    __shared__ float sh[WARPS];
    __shared__ float total;
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    if (w == 0) {
        float t = lane < WARPS ? sh[lane] : -INFINITY;
        t = warp_max(t);
        if (lane == 0) total = t;
    }
    __syncthreads();
    return total;
}

/* ---- memory --------------------------------------------------------------------------- */
static void *cu_alloc(size_t nbytes)
{
    void *p = NULL;
    if (nbytes == 0) nbytes = 1;
    size_t rounded = (nbytes + 255) / 256 * 256;
    if (cudaMalloc(&p, rounded) != cudaSuccess) {
        cudaGetLastError();          /* clear the sticky-free error state */
        return NULL;
    }
    CK(cudaMemsetAsync(p, 0, rounded, 0));
    return p;
}
static void cu_free(void *p) { if (p) CK(cudaFree(p)); }
static void cu_upload(void *dst, const void *src, size_t n)
{
    if (n) CK(cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice));
}
static void cu_download(void *dst, const void *src, size_t n)
{
    if (n) CK(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost));
}
static void cu_zero(void *p, size_t n) { if (n) CK(cudaMemsetAsync(p, 0, n, 0)); }
static void cu_copy(void *dst, const void *src, size_t n)
{
    if (n && dst != src) CK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, 0));
}
static void cu_sync(void) { CK(cudaDeviceSynchronize()); }

/* ---- matmul (cuBLAS, column-major view of row-major arrays) --------------------------- *
 * A row-major [r, c] array is a column-major c x r matrix with leading dimension c. */

/* Y[N,M] (+)= X[N,K] W[M,K]^T  <=>  Y^T (MxN) = op_T(W^T as KxM) * X^T (KxN)
 * wt (W stored transposed, [K,M]: column-major M x K, ld M):
 * Y[N,M] (+)= X[N,K] W[K,M]    <=>  Y^T (MxN) = W^T (MxK) * X^T (KxN) */
static void sgemm_fwd(float *Y, const float *X, const float *W, int N, int K, int M,
                      int accumulate, int wt)
{
    if (N <= 0 || M <= 0) return;
    if (K <= 0) { if (!accumulate) cu_zero(Y, (size_t)N * M * sizeof *Y); return; }
    const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    CB(cublasSgemm(g_blas, wt ? CUBLAS_OP_N : CUBLAS_OP_T, CUBLAS_OP_N, M, N, K, &one, W, wt ? M : K,
                   X, K, &beta, Y, M));
}

/* dX[N,K] (+)= dY[N,M] W[M,K]  <=>  dX^T (KxN) = W^T (KxM) * dY^T (MxN)
 * dW[M,K] += dY^T X            <=>  dW^T (KxM) = X^T (KxN) * op_T(dY^T as MxN)
 * wt: dX^T (KxN) = op_T(W^T as MxK) * dY^T (MxN);  dW[K,M] += X^T dY  <=>
 *     dW^T (MxK) = dY^T (MxN) * op_T(X^T as KxN) */
static void sgemm_bwd(float *dX, float *dW, const float *dY, const float *X, const float *W,
                      int N, int K, int M, int accumulate_dx, int wt)
{
    if (N <= 0 || K <= 0) return;
    const float one = 1.0f, bx = accumulate_dx ? 1.0f : 0.0f;
    if (dX) {
        if (M <= 0) { if (!accumulate_dx) cu_zero(dX, (size_t)N * K * sizeof *dX); }
        else CB(cublasSgemm(g_blas, wt ? CUBLAS_OP_T : CUBLAS_OP_N, CUBLAS_OP_N, K, N, M, &one, W,
                            wt ? M : K, dY, M, &bx, dX, K));
    }
    if (dW && M > 0) {
        if (wt) CB(cublasSgemm(g_blas, CUBLAS_OP_N, CUBLAS_OP_T, M, K, N, &one, dY, M, X, K, &one, dW, M));
        else CB(cublasSgemm(g_blas, CUBLAS_OP_N, CUBLAS_OP_T, K, M, N, &one, X, K, dY, M, &one, dW, K));
    }
}

static void cu_matmul(float *Y, const float *X, const float *W, int N, int K, int M, int accumulate)
{
    sgemm_fwd(Y, X, W, N, K, M, accumulate, 0);
}
static void cu_matmul_bwd(float *dX, float *dW, const float *dY, const float *X,
                          const float *W, int N, int K, int M, int accumulate_dx)
{
    sgemm_bwd(dX, dW, dY, X, W, N, K, M, accumulate_dx, 0);
}
static void cu_matmul_wt(float *Y, const float *X, const float *W, int N, int K, int M, int accumulate)
{
    sgemm_fwd(Y, X, W, N, K, M, accumulate, 1);
}
static void cu_matmul_wt_bwd(float *dX, float *dW, const float *dY, const float *X,
                             const float *W, int N, int K, int M, int accumulate_dx)
{
    sgemm_bwd(dX, dW, dY, X, W, N, K, M, accumulate_dx, 1);
}

/* ---- bias ------------------------------------------------------------------------------ */
__global__ void k_bias_add(float *Y, const float *b, int N, int M)
{
    size_t n = (size_t)N * M;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        Y[i] += b[i % M];
}
static void cu_bias_add(float *Y, const float *b, int N, int M)
{
    if (N <= 0 || M <= 0) return;
    k_bias_add<<<grid_for((size_t)N * M, 1), NT>>>(Y, b, N, M);
    KCHECK();
}

/* out[j] += scale_j * sum_n A[n,j] (* B[n,j]) (* r[n]): one thread per column, rows in
 * order (deterministic). Used for bias, RMSNorm weight gradients. */
__global__ void k_col_sum(float *out, const float *A, const float *Bm, const float *r, int N,
                          int M)
{
    for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < M; j += gridDim.x * blockDim.x) {
        double s = 0;
        for (int n = 0; n < N; n++) {
            size_t i = (size_t)n * M + j;
            float v = A[i];
            if (Bm) v *= Bm[i];
            if (r) v *= r[n];
            s += v;
        }
        out[j] += (float)s;
    }
}
static void cu_bias_add_bwd(float *db, const float *dY, int N, int M)
{
    if (!db || N <= 0 || M <= 0) return;
    k_col_sum<<<grid_for((size_t)M, 1), NT>>>(db, dY, NULL, NULL, N, M);
    KCHECK();
}

/* ---- embedding ------------------------------------------------------------------------- */
__global__ void k_embed(float *Y, const float *E, const int32_t *ids, int N, int D)
{
    size_t n = (size_t)N * D;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t row = i / D, d = i % D;
        Y[i] = E[(size_t)ids[row] * D + d];
    }
}
static void cu_embed(float *Y, const float *E, const int32_t *ids, int N, int D)
{
    if (N <= 0 || D <= 0) return;
    const int32_t *d_ids = mu_cu_ids(ids, N);
    k_embed<<<grid_for((size_t)N * D, 1), NT>>>(Y, E, d_ids, N, D);
    KCHECK();
}

/* One thread per column, rows in order: repeated ids accumulate without atomics. */
__global__ void k_embed_bwd(float *dE, const float *dY, const int32_t *ids, int N, int D)
{
    for (int d = blockIdx.x * blockDim.x + threadIdx.x; d < D; d += gridDim.x * blockDim.x)
        for (int n = 0; n < N; n++)
            dE[(size_t)ids[n] * D + d] += dY[(size_t)n * D + d];
}
static void cu_embed_bwd(float *dE, const float *dY, const int32_t *ids, int N, int D)
{
    if (!dE || N <= 0 || D <= 0) return;
    const int32_t *d_ids = mu_cu_ids(ids, N);
    k_embed_bwd<<<grid_for((size_t)D, 1), NT>>>(dE, dY, d_ids, N, D);
    KCHECK();
}

/* ---- RMSNorm ---------------------------------------------------------------------------- */
/* one block per row (grid-stride over rows) */
__global__ void k_rmsnorm(float *Y, float *rstd, const float *X, const float *w, int N, int D,
                          float eps)
{
    for (int n = blockIdx.x; n < N; n += gridDim.x) {
        const float *x = X + (size_t)n * D;
        float *y = Y + (size_t)n * D;
        float ss = 0;
        for (int j = threadIdx.x; j < D; j += blockDim.x) ss += x[j] * x[j];
        ss = block_sum(ss);
        float r = 1.0f / sqrtf(ss / D + eps);
        if (rstd && threadIdx.x == 0) rstd[n] = r;
        for (int j = threadIdx.x; j < D; j += blockDim.x) y[j] = x[j] * r * w[j];
    }
}
static void cu_rmsnorm(float *Y, float *rstd, const float *X, const float *w, int N, int D,
                       float eps)
{
    if (N <= 0 || D <= 0) return;
    k_rmsnorm<<<grid_for((size_t)N, NT), NT>>>(Y, rstd, X, w, N, D, eps);
    KCHECK();
}

/* dX += r w dY - (r^3/D) X sum_j(dY_j w_j X_j), one block per row */
__global__ void k_rmsnorm_bwd_dx(float *dX, const float *dY, const float *X, const float *w,
                                 const float *rstd, int N, int D)
{
    for (int n = blockIdx.x; n < N; n += gridDim.x) {
        const float *x = X + (size_t)n * D, *dy = dY + (size_t)n * D;
        float *dx = dX + (size_t)n * D;
        float r = rstd[n], dot = 0;
        for (int j = threadIdx.x; j < D; j += blockDim.x) dot += dy[j] * w[j] * x[j];
        dot = block_sum(dot);
        float c = dot * r * r * r / D;
        for (int j = threadIdx.x; j < D; j += blockDim.x) dx[j] += r * w[j] * dy[j] - c * x[j];
    }
}
static void cu_rmsnorm_bwd(float *dX, float *dw, const float *dY, const float *X,
                           const float *w, const float *rstd, int N, int D)
{
    if (N <= 0 || D <= 0) return;
    if (dX) {
        k_rmsnorm_bwd_dx<<<grid_for((size_t)N, NT), NT>>>(dX, dY, X, w, rstd, N, D);
        KCHECK();
    }
    if (dw) {                         /* dw[j] += sum_n dY[n,j] X[n,j] r[n] */
        k_col_sum<<<grid_for((size_t)D, 1), NT>>>(dw, dY, X, rstd, N, D);
        KCHECK();
    }
}

/* ---- LayerNorm ------------------------------------------------------------------------- */
/* one block per row (grid-stride over rows): the mean, then the biased variance around it */
__global__ void k_layernorm(float *Y, float *mean, float *rstd, const float *X, const float *w,
                            const float *b, int N, int D, float eps)
{
    for (int n = blockIdx.x; n < N; n += gridDim.x) {
        const float *x = X + (size_t)n * D;
        float *y = Y + (size_t)n * D;
        float s = 0, ss = 0;
        for (int j = threadIdx.x; j < D; j += blockDim.x) s += x[j];
        float m = block_sum(s) / D;
        for (int j = threadIdx.x; j < D; j += blockDim.x) ss += (x[j] - m) * (x[j] - m);
        float r = 1.0f / sqrtf(block_sum(ss) / D + eps);
        if (threadIdx.x == 0) {
            if (mean) mean[n] = m;
            if (rstd) rstd[n] = r;
        }
        for (int j = threadIdx.x; j < D; j += blockDim.x)
            y[j] = (x[j] - m) * r * w[j] + (b ? b[j] : 0.0f);
    }
}
static void cu_layernorm(float *Y, float *mean, float *rstd, const float *X, const float *w,
                         const float *b, int N, int D, float eps)
{
    if (N <= 0 || D <= 0) return;
    k_layernorm<<<grid_for((size_t)N, NT), NT>>>(Y, mean, rstd, X, w, b, N, D, eps);
    KCHECK();
}

/* dX += r (g - mean_j g - xhat mean_j(g xhat)), g = dY w, xhat = (X - mean) r; one block
 * per row */
__global__ void k_layernorm_bwd_dx(float *dX, const float *dY, const float *X, const float *w,
                                   const float *mean, const float *rstd, int N, int D)
{
    for (int n = blockIdx.x; n < N; n += gridDim.x) {
        const float *x = X + (size_t)n * D, *dy = dY + (size_t)n * D;
        float *dx = dX + (size_t)n * D;
        float m = mean[n], r = rstd[n], sg = 0, sgx = 0;
        for (int j = threadIdx.x; j < D; j += blockDim.x) {
            float g = dy[j] * w[j];
            sg += g;
            sgx += g * ((x[j] - m) * r);
        }
        float mg = block_sum(sg) / D, mgx = block_sum(sgx) / D;
        for (int j = threadIdx.x; j < D; j += blockDim.x)
            dx[j] += r * (dy[j] * w[j] - mg - (x[j] - m) * r * mgx);
    }
}

/* dw[j] += sum_n dY xhat, db[j] += sum_n dY (either may be NULL): one thread per column,
 * rows in order, double sums (deterministic, as k_col_sum) */
__global__ void k_layernorm_bwd_dwdb(float *dw, float *db, const float *dY, const float *X,
                                     const float *mean, const float *rstd, int N, int D)
{
    for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < D; j += gridDim.x * blockDim.x) {
        double sw = 0, sb = 0;
        for (int n = 0; n < N; n++) {
            size_t i = (size_t)n * D + j;
            sw += dY[i] * ((X[i] - mean[n]) * rstd[n]);
            sb += dY[i];
        }
        if (dw) dw[j] += (float)sw;
        if (db) db[j] += (float)sb;
    }
}
static void cu_layernorm_bwd(float *dX, float *dw, float *db, const float *dY, const float *X,
                             const float *w, const float *mean, const float *rstd, int N, int D)
{
    if (N <= 0 || D <= 0) return;
    if (dX) {
        k_layernorm_bwd_dx<<<grid_for((size_t)N, NT), NT>>>(dX, dY, X, w, mean, rstd, N, D);
        KCHECK();
    }
    if (dw || db) {
        k_layernorm_bwd_dwdb<<<grid_for((size_t)D, 1), NT>>>(dw, db, dY, X, mean, rstd, N, D);
        KCHECK();
    }
}

/* ---- strided row copy: dst[r*dst_ld + c] = src[r*src_ld + c], one thread per element ---- */
__global__ void k_copy_rows(float *dst, int dst_ld, const float *src, int src_ld, int rows,
                            int width)
{
    size_t n = (size_t)rows * width;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / width, c = i % width;
        dst[r * dst_ld + c] = src[r * src_ld + c];
    }
}
static void cu_copy_rows(float *dst, int dst_ld, const float *src, int src_ld, int rows,
                         int width)
{
    if (rows <= 0 || width <= 0) return;
    k_copy_rows<<<grid_for((size_t)rows * width, 1), NT>>>(dst, dst_ld, src, src_ld, rows, width);
    KCHECK();
}

/* ---- RoPE --------------------------------------------------------------------------------- */
__global__ void k_rope(float *X, const int32_t *pos, const float *inv_freq, int N, int H, int hd,
                       float sign)
{
    int half = hd / 2;
    size_t n_items = (size_t)N * H * half;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n_items;
         i += (size_t)gridDim.x * blockDim.x) {
        int k = (int)(i % half);
        size_t nh = i / half;                 /* n * H + h */
        int n = (int)(nh / H);
        float a = (float)pos[n] * inv_freq[k];
        float c = cosf(a), s = sign * sinf(a);
        float *x = X + nh * hd;
        float x1 = x[k], x2 = x[k + half];
        x[k] = x1 * c - x2 * s;
        x[k + half] = x2 * c + x1 * s;
    }
}
static void rope_launch(float *X, const int32_t *pos, const float *inv_freq, int N, int H,
                        int hd, float sign)
{
    if (N <= 0 || H <= 0 || hd < 2) return;
    const int32_t *d_pos = (const int32_t *)to_device(SC_POS, pos, (size_t)N * sizeof *pos);
    const float *d_f = (const float *)to_device(SC_FREQ, inv_freq, (size_t)(hd / 2) * sizeof *inv_freq);
    k_rope<<<grid_for((size_t)N * H * (hd / 2), 1), NT>>>(X, d_pos, d_f, N, H, hd, sign);
    KCHECK();
}
static void cu_rope(float *X, const int32_t *pos, const float *inv_freq, int N, int H, int hd)
{
    rope_launch(X, pos, inv_freq, N, H, hd, 1.0f);
}
static void cu_rope_bwd(float *dX, const int32_t *pos, const float *inv_freq, int N, int H,
                        int hd)
{
    rope_launch(dX, pos, inv_freq, N, H, hd, -1.0f);
}

/* ---- attention -------------------------------------------------------------------------- */
/* struct attn_dev and n_keys: cuda_common.h. Head dims up to 128 run the tiled kernels of
 * cuda_attn_tiled.cu unless MU_CUDA_ATTENTION=warp or mu_cuda_set_attention("warp"). */
enum { ATTN_AUTO = 0, ATTN_WARP, ATTN_TILED };
static int g_attn_variant = ATTN_AUTO;
static int g_attn_variant_set;   /* mu_cuda_set_attention was called: the environment yields */

static int attn_variant_parse(const char *v)
{
    if (!strcmp(v, "auto")) return ATTN_AUTO;
    if (!strcmp(v, "warp")) return ATTN_WARP;
    if (!strcmp(v, "tiled")) return ATTN_TILED;
    return -1;
}

extern "C" int mu_cuda_set_attention(const char *variant)
{
    int v = variant ? attn_variant_parse(variant) : -1;
    if (v < 0) return -1;
    g_attn_variant = v;
    g_attn_variant_set = 1;
    return 0;
}

/* "auto" and "tiled" both take the tiled kernels wherever they can run (head dim <= 128
 * and their shared memory fits the device); "warp" never does. */
static int attn_use_tiled(int hd)
{
    return g_attn_variant != ATTN_WARP && mu_cu_attn_tiled_fits(hd);
}

/* Attention kernels are templates on NPL = head-dim elements per lane (1, 2, 4 or 8:
 * head dims up to 32, 64, 128, 256), so registers and unrolled loops fit the head. */

/* lane's slice of a head vector: elements lane, lane+32, ... */
template <int NPL>
__device__ __forceinline__ void load_vec(float *r, const float *src, int hd, int lane)
{
#pragma unroll
    for (int i = 0; i < NPL; i++) {
        int d = lane + 32 * i;
        r[i] = d < hd ? src[d] : 0.0f;
    }
}
template <int NPL>
__device__ __forceinline__ float dot_vec(const float *r, const float *src, int hd, int lane)
{
    float s = 0;
#pragma unroll
    for (int i = 0; i < NPL; i++) {
        int d = lane + 32 * i;
        if (d < hd) s += r[i] * src[d];
    }
    return warp_sum(s);
}

/* one warp per query row (b, t, h): online softmax over the visible keys [lo, nk) */
template <int NPL>
__global__ void k_attention(float *O, float *lse, const float *Q, const float *K, const float *V,
                            attn_dev s)
{
    const int lane = threadIdx.x & 31, group = s.H / s.Hkv;
    const size_t qld = (size_t)s.H * s.hd, kld = (size_t)s.Hkv * s.hd;
    const size_t rows = (size_t)s.B * s.Tq * s.H;
    const size_t wstride = (size_t)gridDim.x * (blockDim.x / 32);
    for (size_t row = blockIdx.x * (size_t)(blockDim.x / 32) + (threadIdx.x >> 5); row < rows;
         row += wstride) {
        int h = (int)(row % s.H);
        int t = (int)((row / s.H) % s.Tq);
        int b = (int)(row / ((size_t)s.H * s.Tq));
        const float *q = Q + ((size_t)b * s.Tq + t) * qld + (size_t)h * s.hd;
        float *o = O + ((size_t)b * s.Tq + t) * qld + (size_t)h * s.hd;
        const float *k = K + (size_t)b * s.Tk * kld + (size_t)(h / group) * s.hd;
        const float *v = V + (size_t)b * s.Tk * kld + (size_t)(h / group) * s.hd;
        const int lo = first_key(s, b, t), nk = n_keys(s, b, t);
        float qr[NPL], acc[NPL];
        load_vec<NPL>(qr, q, s.hd, lane);
#pragma unroll
        for (int i = 0; i < NPL; i++) acc[i] = 0.0f;
        float m = -INFINITY, l = 0.0f;
        for (int j = lo; j < nk; j++) {
            float sc = attn_score(s, dot_vec<NPL>(qr, k + (size_t)j * kld, s.hd, lane));
            float mn = fmaxf(m, sc);
            float corr = expf(m - mn), p = expf(sc - mn);   /* m = -inf at j = lo: corr 0 */
            l = l * corr + p;
            const float *vj = v + (size_t)j * kld;
#pragma unroll
            for (int i = 0; i < NPL; i++) {
                int d = lane + 32 * i;
                acc[i] = acc[i] * corr + (d < s.hd ? p * vj[d] : 0.0f);
            }
            m = mn;
        }
        float inv = nk > lo ? 1.0f / l : 0.0f;
#pragma unroll
        for (int i = 0; i < NPL; i++) {
            int d = lane + 32 * i;
            if (d < s.hd) o[d] = acc[i] * inv;
        }
        if (lse && lane == 0)
            lse[((size_t)b * s.H + h) * s.Tq + t] = nk > lo ? m + logf(l) : -INFINITY;
    }
}

static attn_dev attn_to_device(const mu_attn_shape *s)
{
    attn_dev a;
    a.B = s->B; a.Tq = s->Tq; a.Tk = s->Tk; a.H = s->H; a.Hkv = s->Hkv; a.hd = s->hd;
    a.scale = s->scale;
    a.softcap = s->softcap;
    a.window = s->window;
    a.q_pos0 = (const int32_t *)to_device(SC_QPOS, s->q_pos0, (size_t)s->B * sizeof(int32_t));
    a.k_len = (const int32_t *)to_device(SC_KLEN, s->k_len, (size_t)s->B * sizeof(int32_t));
    return a;
}

static int npl_for(int hd)
{
    return hd <= 32 ? 1 : hd <= 64 ? 2 : hd <= 128 ? 4 : 8;
}

static void attn_check_shape(const mu_attn_shape *s)
{
    if (s->hd > MAX_HD || s->Hkv <= 0 || s->H % s->Hkv) {
        fprintf(stderr, "mu: cuda: attention: unsupported shape (head_dim %d > %d or %d heads "
                "not a multiple of %d kv heads)\n", s->hd, MAX_HD, s->H, s->Hkv);
        exit(1);
    }
}

static void cu_attention(float *O, float *lse, const float *Q, const float *K, const float *V,
                         const mu_attn_shape *s)
{
    if (s->B <= 0 || s->Tq <= 0 || s->H <= 0) return;
    attn_check_shape(s);
    attn_dev a = attn_to_device(s);
    if (attn_use_tiled(s->hd)) {
        mu_cu_attention_tiled(O, lse, Q, K, V, a);
        return;
    }
    size_t rows = (size_t)s->B * s->Tq * s->H;
    switch (npl_for(s->hd)) {
    case 1: k_attention<1><<<grid_for(rows, 32), NT>>>(O, lse, Q, K, V, a); break;
    case 2: k_attention<2><<<grid_for(rows, 32), NT>>>(O, lse, Q, K, V, a); break;
    case 4: k_attention<4><<<grid_for(rows, 32), NT>>>(O, lse, Q, K, V, a); break;
    default: k_attention<8><<<grid_for(rows, 32), NT>>>(O, lse, Q, K, V, a); break;
    }
    KCHECK();
}

/* delta[b,h,t] = dO . O (the softmax backward's row term), one warp per row */
__global__ void k_attn_delta(float *delta, const float *dO, const float *O, attn_dev s)
{
    const int lane = threadIdx.x & 31;
    const size_t qld = (size_t)s.H * s.hd, rows = (size_t)s.B * s.Tq * s.H;
    const size_t wstride = (size_t)gridDim.x * (blockDim.x / 32);
    for (size_t row = blockIdx.x * (size_t)(blockDim.x / 32) + (threadIdx.x >> 5); row < rows;
         row += wstride) {
        int h = (int)(row % s.H);
        int t = (int)((row / s.H) % s.Tq);
        int b = (int)(row / ((size_t)s.H * s.Tq));
        size_t off = ((size_t)b * s.Tq + t) * qld + (size_t)h * s.hd;
        float acc = 0;
        for (int d = lane; d < s.hd; d += 32) acc += dO[off + d] * O[off + d];
        acc = warp_sum(acc);
        if (lane == 0) delta[((size_t)b * s.H + h) * s.Tq + t] = acc;
    }
}

/* dQ[b,t,h] = scale * sum_j dS_tj K_j over the visible keys j, one warp per query row:
 * dS_tj = P_tj (dO_t . V_j - delta_t), times 1 - (y_tj / softcap)^2 when capped (y: the
 * capped score) */
template <int NPL>
__global__ void k_attn_dq(float *dQ, const float *dO, const float *lse, const float *delta,
                          const float *Q, const float *K, const float *V, attn_dev s)
{
    const int lane = threadIdx.x & 31, group = s.H / s.Hkv;
    const size_t qld = (size_t)s.H * s.hd, kld = (size_t)s.Hkv * s.hd;
    const size_t rows = (size_t)s.B * s.Tq * s.H;
    const size_t wstride = (size_t)gridDim.x * (blockDim.x / 32);
    for (size_t row = blockIdx.x * (size_t)(blockDim.x / 32) + (threadIdx.x >> 5); row < rows;
         row += wstride) {
        int h = (int)(row % s.H);
        int t = (int)((row / s.H) % s.Tq);
        int b = (int)(row / ((size_t)s.H * s.Tq));
        size_t qoff = ((size_t)b * s.Tq + t) * qld + (size_t)h * s.hd;
        const float *k = K + (size_t)b * s.Tk * kld + (size_t)(h / group) * s.hd;
        const float *v = V + (size_t)b * s.Tk * kld + (size_t)(h / group) * s.hd;
        size_t li = ((size_t)b * s.H + h) * s.Tq + t;
        float L = lse[li], Dt = delta[li];
        const int lo = first_key(s, b, t), nk = n_keys(s, b, t);
        float qr[NPL], dor[NPL], acc[NPL];
        load_vec<NPL>(qr, Q + qoff, s.hd, lane);
        load_vec<NPL>(dor, dO + qoff, s.hd, lane);
#pragma unroll
        for (int i = 0; i < NPL; i++) acc[i] = 0.0f;
        for (int j = lo; j < nk; j++) {
            const float *kj = k + (size_t)j * kld;
            float y = attn_score(s, dot_vec<NPL>(qr, kj, s.hd, lane)), p = expf(y - L);
            float dy = p * (dot_vec<NPL>(dor, v + (size_t)j * kld, s.hd, lane) - Dt);
            float ds = attn_score_bwd(s, dy, y) * s.scale;
#pragma unroll
            for (int i = 0; i < NPL; i++) {
                int d = lane + 32 * i;
                if (d < s.hd) acc[i] += ds * kj[d];
            }
        }
#pragma unroll
        for (int i = 0; i < NPL; i++) {
            int d = lane + 32 * i;
            if (d < s.hd) dQ[qoff + d] = acc[i];
        }
    }
}

/* dK[b,j,kh] = scale * sum_{h in group, t sees j} dS_tj Q_t  (dS_tj as k_attn_dq's)
 * dV[b,j,kh] = sum P_tj dO_t;  one warp per key row (written once: overwrite). The
 * queries that see j are contiguous: past the window's end (first_key > j) none does. */
template <int NPL>
__global__ void k_attn_dkv(float *dK, float *dV, const float *dO, const float *lse,
                           const float *delta, const float *Q, const float *K, const float *V,
                           attn_dev s)
{
    const int lane = threadIdx.x & 31, group = s.H / s.Hkv;
    const size_t qld = (size_t)s.H * s.hd, kld = (size_t)s.Hkv * s.hd;
    const size_t rows = (size_t)s.B * s.Tk * s.Hkv;
    const size_t wstride = (size_t)gridDim.x * (blockDim.x / 32);
    for (size_t row = blockIdx.x * (size_t)(blockDim.x / 32) + (threadIdx.x >> 5); row < rows;
         row += wstride) {
        int kh = (int)(row % s.Hkv);
        int j = (int)((row / s.Hkv) % s.Tk);
        int b = (int)(row / ((size_t)s.Hkv * s.Tk));
        size_t koff = ((size_t)b * s.Tk + j) * kld + (size_t)kh * s.hd;
        float kr[NPL], vr[NPL], dk[NPL], dv[NPL];
        load_vec<NPL>(kr, K + koff, s.hd, lane);
        load_vec<NPL>(vr, V + koff, s.hd, lane);
#pragma unroll
        for (int i = 0; i < NPL; i++) { dk[i] = 0.0f; dv[i] = 0.0f; }
        for (int h = kh * group; h < (kh + 1) * group; h++)
            for (int t = 0; t < s.Tq; t++) {
                if (j < first_key(s, b, t)) break;
                if (j >= n_keys(s, b, t)) continue;
                size_t qoff = ((size_t)b * s.Tq + t) * qld + (size_t)h * s.hd;
                size_t li = ((size_t)b * s.H + h) * s.Tq + t;
                const float *q = Q + qoff, *dout = dO + qoff;
                float y = attn_score(s, dot_vec<NPL>(kr, q, s.hd, lane)), p = expf(y - lse[li]);
                float dy = p * (dot_vec<NPL>(vr, dout, s.hd, lane) - delta[li]);
                float ds = attn_score_bwd(s, dy, y) * s.scale;
#pragma unroll
                for (int i = 0; i < NPL; i++) {
                    int d = lane + 32 * i;
                    if (d < s.hd) { dk[i] += ds * q[d]; dv[i] += p * dout[d]; }
                }
            }
#pragma unroll
        for (int i = 0; i < NPL; i++) {
            int d = lane + 32 * i;
            if (d < s.hd) { dK[koff + d] = dk[i]; dV[koff + d] = dv[i]; }
        }
    }
}

static void cu_attention_bwd(float *dQ, float *dK, float *dV, const float *dO, const float *O,
                             const float *lse, const float *Q, const float *K, const float *V,
                             const mu_attn_shape *s)
{
    if (s->B <= 0 || s->H <= 0) return;
    attn_check_shape(s);
    if (s->Tq <= 0) {                 /* no queries: dK = dV = 0 */
        size_t kn = (size_t)s->B * s->Tk * s->Hkv * s->hd * sizeof(float);
        cu_zero(dK, kn); cu_zero(dV, kn);
        return;
    }
    attn_dev a = attn_to_device(s);
    size_t qrows = (size_t)s->B * s->Tq * s->H, krows = (size_t)s->B * s->Tk * s->Hkv;
    float *delta = (float *)scratch(SC_DELTA, qrows * sizeof(float));
    k_attn_delta<<<grid_for(qrows, 32), NT>>>(delta, dO, O, a);
    KCHECK();
    if (attn_use_tiled(s->hd)) {
        mu_cu_attention_bwd_tiled(dQ, dK, dV, dO, lse, delta, Q, K, V, a);
        return;
    }
    unsigned gq = grid_for(qrows, 32), gk = grid_for(krows, 32);
    switch (npl_for(s->hd)) {
#define ATTN_BWD(P) \
        k_attn_dq<P><<<gq, NT>>>(dQ, dO, lse, delta, Q, K, V, a); \
        KCHECK(); \
        if (krows) k_attn_dkv<P><<<gk, NT>>>(dK, dV, dO, lse, delta, Q, K, V, a); \
        break;
    case 1: ATTN_BWD(1)
    case 2: ATTN_BWD(2)
    case 4: ATTN_BWD(4)
    default: ATTN_BWD(8)
#undef ATTN_BWD
    }
    KCHECK();
}

/* ---- SwiGLU, GeGLU, soft-capping and elementwise ------------------------------------------ */
#define GRID_STRIDE(i, n) \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); \
         i += (size_t)gridDim.x * blockDim.x)

__device__ __forceinline__ float sigmoid_f(float g) { return 1.0f / (1.0f + expf(-g)); }

__global__ void k_swiglu(float *A, const float *G, const float *U, size_t n)
{
    GRID_STRIDE(i, n) A[i] = G[i] * sigmoid_f(G[i]) * U[i];
}
static void cu_swiglu(float *A, const float *G, const float *U, size_t n)
{
    if (!n) return;
    k_swiglu<<<grid_for(n, 1), NT>>>(A, G, U, n);
    KCHECK();
}

/* silu'(g) = s (1 + g (1 - s)) */
__global__ void k_swiglu_bwd(float *dG, float *dU, const float *dA, const float *G,
                             const float *U, size_t n)
{
    GRID_STRIDE(i, n) {
        float g = G[i], s = sigmoid_f(g), da = dA[i], u = U[i];
        dU[i] = da * g * s;
        dG[i] = da * u * s * (1.0f + g * (1.0f - s));
    }
}
static void cu_swiglu_bwd(float *dG, float *dU, const float *dA, const float *G,
                          const float *U, size_t n)
{
    if (!n) return;
    k_swiglu_bwd<<<grid_for(n, 1), NT>>>(dG, dU, dA, G, U, n);
    KCHECK();
}

/* GeGLU with gelu's tanh form (kernels.h) */
#define GELU_C 0.7978845608028654f
#define GELU_K 0.044715f
/* gelu(g), and gelu'(g) into *d: the tanh or the erf form */
__device__ __forceinline__ float gelu_d(float g, int tanh_form, float *d)
{
    if (tanh_form) {
        float t = tanhf(GELU_C * (g + GELU_K * g * g * g));
        *d = 0.5f * (1.0f + t) + 0.5f * g * (1.0f - t * t) * GELU_C * (1.0f + 3.0f * GELU_K * g * g);
        return 0.5f * g * (1.0f + t);
    }
    float Phi = 0.5f * (1.0f + erff(g * 0.7071067811865476f));
    *d = Phi + g * 0.3989422804014327f * expf(-0.5f * g * g);
    return g * Phi;
}
__global__ void k_geglu(float *A, const float *G, const float *U, size_t n, int tanh_form)
{
    GRID_STRIDE(i, n) {
        float d;
        A[i] = gelu_d(G[i], tanh_form, &d) * U[i];
    }
}
static void cu_geglu(float *A, const float *G, const float *U, size_t n, int tanh_form)
{
    if (!n) return;
    k_geglu<<<grid_for(n, 1), NT>>>(A, G, U, n, tanh_form);
    KCHECK();
}

__global__ void k_geglu_bwd(float *dG, float *dU, const float *dA, const float *G,
                            const float *U, size_t n, int tanh_form)
{
    GRID_STRIDE(i, n) {
        float d, gelu = gelu_d(G[i], tanh_form, &d), da = dA[i];
        dU[i] = da * gelu;
        dG[i] = da * U[i] * d;
    }
}
static void cu_geglu_bwd(float *dG, float *dU, const float *dA, const float *G,
                         const float *U, size_t n, int tanh_form)
{
    if (!n) return;
    k_geglu_bwd<<<grid_for(n, 1), NT>>>(dG, dU, dA, G, U, n, tanh_form);
    KCHECK();
}

/* plain GELU (kernels.h): A = gelu(X), dX = dA gelu'(X), gelu_d's two forms */
__global__ void k_gelu(float *A, const float *X, size_t n, int tanh_form)
{
    GRID_STRIDE(i, n) {
        float d;
        A[i] = gelu_d(X[i], tanh_form, &d);
    }
}
static void cu_gelu(float *A, const float *X, size_t n, int tanh_form)
{
    if (!n) return;
    k_gelu<<<grid_for(n, 1), NT>>>(A, X, n, tanh_form);
    KCHECK();
}

__global__ void k_gelu_bwd(float *dX, const float *dA, const float *X, size_t n, int tanh_form)
{
    GRID_STRIDE(i, n) {
        float d;
        gelu_d(X[i], tanh_form, &d);
        dX[i] = dA[i] * d;
    }
}
static void cu_gelu_bwd(float *dX, const float *dA, const float *X, size_t n, int tanh_form)
{
    if (!n) return;
    k_gelu_bwd<<<grid_for(n, 1), NT>>>(dX, dA, X, n, tanh_form);
    KCHECK();
}

/* logit soft-capping (kernels.h): X = cap tanh(X / cap) in place */
__global__ void k_softcap(float *X, size_t n, float cap)
{
    GRID_STRIDE(i, n) X[i] = cap * tanhf(X[i] / cap);
}
static void cu_softcap(float *X, size_t n, float cap)
{
    if (!n) return;
    k_softcap<<<grid_for(n, 1), NT>>>(X, n, cap);
    KCHECK();
}

/* its backward from the capped output Y: dX *= 1 - (Y / cap)^2 in place */
__global__ void k_softcap_bwd(float *dX, const float *Y, size_t n, float cap)
{
    GRID_STRIDE(i, n) {
        float r = Y[i] / cap;
        dX[i] *= 1.0f - r * r;
    }
}
static void cu_softcap_bwd(float *dX, const float *Y, size_t n, float cap)
{
    if (!n) return;
    k_softcap_bwd<<<grid_for(n, 1), NT>>>(dX, Y, n, cap);
    KCHECK();
}

__global__ void k_add(float *Y, const float *X, size_t n) { GRID_STRIDE(i, n) Y[i] += X[i]; }
static void cu_add(float *Y, const float *X, size_t n)
{
    if (!n) return;
    k_add<<<grid_for(n, 1), NT>>>(Y, X, n);
    KCHECK();
}

__global__ void k_scale(float *Y, float alpha, size_t n) { GRID_STRIDE(i, n) Y[i] *= alpha; }
static void cu_scale(float *Y, float alpha, size_t n)
{
    if (!n) return;
    k_scale<<<grid_for(n, 1), NT>>>(Y, alpha, n);
    KCHECK();
}

/* ---- log-softmax and cross-entropy: one block per row ------------------------------------- */
__device__ void row_max_sum(const float *x, int V, float *mx_out, float *sum_out)
{
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < V; j += blockDim.x) mx = fmaxf(mx, x[j]);
    mx = block_max(mx);
    float s = 0;
    for (int j = threadIdx.x; j < V; j += blockDim.x) s += expf(x[j] - mx);
    *sum_out = block_sum(s);
    *mx_out = mx;
}

__global__ void k_log_softmax(float *Y, const float *X, int N, int V)
{
    for (int n = blockIdx.x; n < N; n += gridDim.x) {
        const float *x = X + (size_t)n * V;
        float *y = Y + (size_t)n * V;
        float mx, sum;
        row_max_sum(x, V, &mx, &sum);   /* every read of x is done (block barrier) */
        float lse = mx + logf(sum);
        for (int j = threadIdx.x; j < V; j += blockDim.x) y[j] = x[j] - lse;
    }
}
static void cu_log_softmax(float *Y, const float *X, int N, int V)
{
    if (N <= 0 || V <= 0) return;
    k_log_softmax<<<grid_for((size_t)N, NT), NT>>>(Y, X, N, V);
    KCHECK();
}

__global__ void k_cross_entropy(float *loss, float *dlogits, const float *logits,
                                const int32_t *targets, int N, int V, float dscale)
{
    for (int n = blockIdx.x; n < N; n += gridDim.x) {
        const float *x = logits + (size_t)n * V;
        float *d = dlogits ? dlogits + (size_t)n * V : NULL;
        int y = targets[n];
        if (y < 0 || y >= V) {
            if (threadIdx.x == 0) loss[n] = 0.0f;
            if (d) for (int j = threadIdx.x; j < V; j += blockDim.x) d[j] = 0.0f;
            continue;                 /* uniform per block: no barrier is skipped unevenly */
        }
        float mx, sum;
        row_max_sum(x, V, &mx, &sum);
        if (threadIdx.x == 0) loss[n] = mx + logf(sum) - x[y];
        if (d) {
            float sc = dscale / sum;
            for (int j = threadIdx.x; j < V; j += blockDim.x)
                d[j] = expf(x[j] - mx) * sc - (j == y ? dscale : 0.0f);
        }
    }
}
static void cu_cross_entropy(float *loss, float *dlogits, const float *logits,
                             const int32_t *targets, int N, int V, float dscale)
{
    if (N <= 0) return;
    if (V <= 0) {
        memset(loss, 0, (size_t)N * sizeof *loss);
        return;
    }
    const int32_t *d_t = (const int32_t *)to_device(SC_TGT, targets, (size_t)N * sizeof *targets);
    float *d_loss = (float *)scratch(SC_LOSS, (size_t)N * sizeof(float));
    k_cross_entropy<<<grid_for((size_t)N, NT), NT>>>(d_loss, dlogits, logits, d_t, N, V, dscale);
    KCHECK();
    CK(cudaMemcpy(loss, d_loss, (size_t)N * sizeof(float), cudaMemcpyDeviceToHost));
}

/* ---- target log-probability and its gradient: one block per row -------------------------
 * As kernels/cpu/cpu_ops.c: mx = the f32 maximum, acc = sum_j exp((double)z_j - mx) in
 * double, lse = mx + log(acc); the gradient's exp in double too. acc is reduced in a fixed
 * order (each thread's strided partial, a shuffle tree per warp, the warps' sums by warp 0),
 * so two runs give the same bits; it differs from the CPU's sequential sum by rounding only. */
/* log sum_j exp(x_j) of one row x [V], max-shifted by the f32 maximum; every thread gets it */
__device__ double row_lse_d(const float *x, int V)
{
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < V; j += blockDim.x) mx = fmaxf(mx, x[j]);
    mx = block_max(mx);
    double s = 0;
    for (int j = threadIdx.x; j < V; j += blockDim.x) s += exp((double)x[j] - (double)mx);
    return (double)mx + log(block_sum_of(s));
}

__global__ void k_target_logprob(double *logp, const float *logits, const int32_t *targets,
                                 int N, int V)
{
    for (int n = blockIdx.x; n < N; n += gridDim.x) {
        int y = targets[n];
        if (y < 0 || y >= V) {
            if (threadIdx.x == 0) logp[n] = 0.0;
            continue;                 /* uniform per block: no barrier is skipped unevenly */
        }
        const float *x = logits + (size_t)n * V;
        double lse = row_lse_d(x, V);
        if (threadIdx.x == 0) logp[n] = (double)x[y] - lse;
    }
}
static void cu_target_logprob(double *logp, const float *logits, const int32_t *targets, int N,
                              int V)
{
    if (N <= 0) return;
    if (V <= 0) {                     /* every target is outside [0, V) */
        memset(logp, 0, (size_t)N * sizeof *logp);
        return;
    }
    const int32_t *d_t = (const int32_t *)to_device(SC_TGT, targets, (size_t)N * sizeof *targets);
    double *d_lp = (double *)scratch(SC_LOGP, (size_t)N * sizeof(double));
    k_target_logprob<<<grid_for((size_t)N, NT), NT>>>(d_lp, logits, d_t, N, V);
    KCHECK();
    CK(cudaMemcpy(logp, d_lp, (size_t)N * sizeof(double), cudaMemcpyDeviceToHost));
}

/* d[j] -= (float)(a p_j), then d[y] += (float)a, in that order in f32 (the thread of j == y
 * does both, as the CPU's two passes would) */
__global__ void k_logp_grad(float *dlogits, const float *logits, const int32_t *targets,
                            const double *a, int N, int V)
{
    for (int n = blockIdx.x; n < N; n += gridDim.x) {
        int y = targets[n];
        double an = a[n];
        if (y < 0 || y >= V || an == 0.0) continue;   /* uniform per block */
        const float *x = logits + (size_t)n * V;
        float *d = dlogits + (size_t)n * V;
        double lse = row_lse_d(x, V);
        float fa = (float)an;
        for (int j = threadIdx.x; j < V; j += blockDim.x) {
            float v = d[j] - (float)(an * exp((double)x[j] - lse));
            if (j == y) v += fa;
            d[j] = v;
        }
    }
}
static void cu_logp_grad(float *dlogits, const float *logits, const int32_t *targets,
                         const double *a, int N, int V)
{
    if (N <= 0 || V <= 0) return;
    const int32_t *d_t = (const int32_t *)to_device(SC_TGT, targets, (size_t)N * sizeof *targets);
    const double *d_a = (const double *)to_device(SC_COEF, a, (size_t)N * sizeof *a);
    k_logp_grad<<<grid_for((size_t)N, NT), NT>>>(dlogits, logits, d_t, d_a, N, V);
    KCHECK();
}

/* ---- the backend table and its initialization ------------------------------------------- */
static mu_backend g_backend;

static void fill_table(mu_backend *b)
{
    memset(b, 0, sizeof *b);
    b->name = "cuda";
    b->host_memory = 0;
    b->alloc = cu_alloc;
    b->free = cu_free;
    b->upload = cu_upload;
    b->download = cu_download;
    b->zero = cu_zero;
    b->copy = cu_copy;
    b->sync = cu_sync;
    b->mem_report = mu_cuda_print_memory;
    b->matmul = cu_matmul;
    b->matmul_bwd = cu_matmul_bwd;
    b->matmul_wt = cu_matmul_wt;
    b->matmul_wt_bwd = cu_matmul_wt_bwd;
    b->bias_add = cu_bias_add;
    b->bias_add_bwd = cu_bias_add_bwd;
    b->embed = cu_embed;
    b->embed_bwd = cu_embed_bwd;
    b->rmsnorm = cu_rmsnorm;
    b->rmsnorm_bwd = cu_rmsnorm_bwd;
    b->layernorm = cu_layernorm;
    b->layernorm_bwd = cu_layernorm_bwd;
    b->copy_rows = cu_copy_rows;
    b->rope = cu_rope;
    b->rope_bwd = cu_rope_bwd;
    b->attention = cu_attention;
    b->attention_bwd = cu_attention_bwd;
    b->swiglu = cu_swiglu;
    b->swiglu_bwd = cu_swiglu_bwd;
    b->geglu = cu_geglu;
    b->geglu_bwd = cu_geglu_bwd;
    b->gelu = cu_gelu;
    b->gelu_bwd = cu_gelu_bwd;
    b->softcap = cu_softcap;
    b->softcap_bwd = cu_softcap_bwd;
    b->add = cu_add;
    b->scale = cu_scale;
    b->log_softmax = cu_log_softmax;
    b->cross_entropy = cu_cross_entropy;
    b->target_logprob = cu_target_logprob;
    b->logp_grad = cu_logp_grad;
    mu_cu_fill_bf16(b);
    mu_cu_fill_optim(b);
}

extern "C" int mu_cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

extern "C" void mu_cuda_print_memory(const char *when)
{
    if (g_ready != 1) return;
    size_t fr = 0, tot = 0;
    CK(cudaMemGetInfo(&fr, &tot));
    fprintf(stderr, "mu: cuda: %s: %zu MiB used, %zu MiB free of %zu MiB (%s)\n",
            when ? when : "memory", (tot - fr) >> 20, fr >> 20, tot >> 20, g_prop.name);
}

extern "C" const char *mu_cuda_device_name(void)
{
    return g_ready == 1 ? g_prop.name : "";
}

/* FP32 lanes per SM: 64 on sm_60/sm_80 (A100), 128 on sm_86/89/90 and later. */
extern "C" double mu_cuda_peak_f32_flops(void)
{
    if (g_ready != 1) return 0;
    int dev = 0, khz = 0;
    CK(cudaGetDevice(&dev));
    if (cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, dev) != cudaSuccess || khz <= 0) {
        cudaGetLastError();
        return 0;
    }
    int lanes = (g_prop.major == 8 && g_prop.minor == 0) || g_prop.major < 8 ? 64 : 128;
    return (double)g_nsm * lanes * 2.0 * khz * 1e3;
}

/* The backend, initialized on first use (device 0, or $MU_CUDA_DEVICE, or else the
 * process's $MU_LOCAL_RANK modulo the visible devices); NULL when no device is usable. */
extern "C" const mu_backend *mu_backend_cuda(void)
{
    if (g_ready == 1) return &g_backend;
    if (g_ready == 2) return NULL;
    int n = mu_cuda_device_count();
    if (n <= 0) { g_ready = 2; return NULL; }
    int dev = 0;
    const char *e = getenv("MU_CUDA_DEVICE"), *lr = getenv("MU_LOCAL_RANK");
    if (e && *e) dev = atoi(e);
    else if (lr && *lr) dev = atoi(lr) % n;   /* data parallelism (lib/dist.h): a GPU per process */
    if (dev < 0 || dev >= n) {
        fprintf(stderr, "mu: cuda: MU_CUDA_DEVICE=%s: only %d device(s)\n", e, n);
        g_ready = 2;
        return NULL;
    }
    if (cudaSetDevice(dev) != cudaSuccess || cudaGetDeviceProperties(&g_prop, dev) != cudaSuccess) {
        cudaGetLastError();
        g_ready = 2;
        return NULL;
    }
    g_nsm = g_prop.multiProcessorCount > 0 ? g_prop.multiProcessorCount : 1;
    if (cublasCreate(&g_blas) != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "mu: cuda: cublasCreate failed on %s\n", g_prop.name);
        g_ready = 2;
        return NULL;
    }
    const char *dbg = getenv("MU_CUDA_DEBUG");
    mu_cu_debug_sync = dbg && !strcmp(dbg, "1");
    const char *av = getenv("MU_CUDA_ATTENTION");
    if (av && *av && !g_attn_variant_set) {
        int v = attn_variant_parse(av);
        if (v < 0)
            fprintf(stderr, "mu: cuda: MU_CUDA_ATTENTION=%s: not warp, tiled or auto; "
                    "using auto\n", av);
        g_attn_variant = v < 0 ? ATTN_AUTO : v;
    }
    const char *tf = getenv("MU_CUDA_TF32");
    CB(cublasSetMathMode(g_blas, tf && !strcmp(tf, "1") ? CUBLAS_TF32_TENSOR_OP_MATH
                                                       : CUBLAS_DEFAULT_MATH));
    fill_table(&g_backend);
    g_ready = 1;
    return &g_backend;
}

/* Dense bf16 tensor-core FLOPs per clock per SM (f32 accumulation, no sparsity): 4096 on
 * sm_90 (H100/H200), 2048 on sm_80 (A100), 1024 on sm_86/87/89; 0 for other devices. */
static int bf16_flops_per_clock_per_sm(int major, int minor)
{
    if (major == 9 && minor == 0) return 4096;
    if (major == 8 && minor == 0) return 2048;
    if (major == 8 && (minor == 6 || minor == 7 || minor == 9)) return 1024;
    return 0;
}

/* SMs x clock x dense bf16 FLOPs/clock/SM. The clock is cudaDevAttrClockRate, the maximum
 * boost clock (1.98 GHz on H100/H200 SXM, above the 1.83 GHz behind NVIDIA's 989 TFLOP/s
 * figure): the peak is on the high side, so an MFU against it is conservative. */
extern "C" double mu_cuda_peak_bf16_flops(void)
{
    if (g_ready != 1) return 0;
    int per = bf16_flops_per_clock_per_sm(g_prop.major, g_prop.minor);
    int dev = 0, khz = 0;
    if (per == 0) return 0;
    CK(cudaGetDevice(&dev));
    if (cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, dev) != cudaSuccess || khz <= 0) {
        cudaGetLastError();
        return 0;
    }
    return (double)g_nsm * per * khz * 1e3;
}

/* Device memory in use (cudaMemGetInfo: total - free), every process and the context
 * included; 0 before the backend started. */
extern "C" size_t mu_cuda_mem_used(void)
{
    if (g_ready != 1) return 0;
    size_t fr = 0, tot = 0;
    CK(cudaMemGetInfo(&fr, &tot));
    return tot - fr;
}
