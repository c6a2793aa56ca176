/* cuda_common.h — what the .cu files of the CUDA backend share (internal to kernels/cuda):
 * the checked-call macros, the launch geometry, and the hooks by which each file adds its
 * ops to the backend table. See cuda_backend.cu for the conventions. */
#ifndef MU_CUDA_COMMON_H
#define MU_CUDA_COMMON_H
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cuda_runtime.h>
#include <cublas_v2.h>
extern "C" {
#include "kernels.h"
}

/* One line "mu: cuda: FILE:LINE: CALL: MESSAGE" on stderr, then exit(1). */
void mu_cu_fail(const char *what, const char *msg, const char *file, int line);
#define CK(call) do { cudaError_t e_ = (call); \
    if (e_ != cudaSuccess) mu_cu_fail(#call, cudaGetErrorString(e_), __FILE__, __LINE__); } while (0)
#define CB(call) do { cublasStatus_t s_ = (call); \
    if (s_ != CUBLAS_STATUS_SUCCESS) mu_cu_fail(#call, cublasGetStatusString(s_), __FILE__, __LINE__); } while (0)
/* After every kernel launch: launch errors (bad configuration) are caught here. With
 * MU_CUDA_DEBUG=1 in the environment it also waits for the kernel, so a fault inside it
 * (an illegal address, ...) is reported at this file:line instead of at a later call. */
extern int mu_cu_debug_sync;
#define KCHECK() do { CK(cudaGetLastError()); \
    if (mu_cu_debug_sync) CK(cudaDeviceSynchronize()); } while (0)

#define NT 256                   /* threads per block */
#define WARPS (NT / 32)

/* Sum / maximum over the 32 lanes of a warp (all lanes active); every lane gets it. */
static __device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
static __device__ __forceinline__ double warp_sum(double v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
static __device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Blocks for a grid-stride loop over n items, each handled by `per` threads (capped at
 * 32 blocks per SM). */
unsigned mu_cu_grid_for(size_t n, int per);
/* Device copy of host token ids [N], in a scratch buffer of the backend that is reused
 * (and not copied again when the same ids come again); valid until the next call. */
const int32_t *mu_cu_ids(const int32_t *ids, int N);
/* The cuBLAS handle of the backend (valid once mu_backend_cuda() returned non-NULL). */
cublasHandle_t mu_cu_blas(void);

/* ---- attention (cuda_backend.cu: warp-per-row kernels; cuda_attn_tiled.cu: tiled) ---- */
/* mu_attn_shape with q_pos0 and k_len in device memory (or NULL). */
struct attn_dev {
    int B, Tq, Tk, H, Hkv, hd;
    const int32_t *q_pos0, *k_len;   /* device or NULL */
    float scale;
    float softcap;                   /* 0: none */
    int window;                      /* 0: none */
};

/* keys visible to query t of row b: first_key <= j < n_keys (as
 * kernels/cpu/cpu_attention.c); both nondecreasing in t, none when first_key >= n_keys */
__device__ __forceinline__ int n_keys(const attn_dev &s, int b, int t)
{
    int p = (s.q_pos0 ? s.q_pos0[b] : 0) + t;
    int kl = s.k_len ? s.k_len[b] : s.Tk;
    int n = p + 1 < kl ? p + 1 : kl;
    if (n > s.Tk) n = s.Tk;
    return n < 0 ? 0 : n;
}
/* the sliding window's first key: max(0, p - window + 1) at position p; 0 without one */
__device__ __forceinline__ int first_key(const attn_dev &s, int b, int t)
{
    if (s.window <= 0) return 0;
    int lo = (s.q_pos0 ? s.q_pos0[b] : 0) + t - s.window + 1;
    return lo > 0 ? lo : 0;
}

/* 1 when query t of row b sees some key */
__device__ __forceinline__ bool sees_any(const attn_dev &s, int b, int t)
{
    return n_keys(s, b, t) > first_key(s, b, t);
}
/* Row b's mask by positions, for inner loops (fewer registers than first_key and n_keys
 * per query): query t sees key j >= 0 iff 0 <= pos0 + t - j < span (causal, and the window
 * when there is one) and j < kend. */
struct attn_row {
    int pos0, kend;                  /* q_pos0[b]; min(k_len[b], Tk) */
    unsigned span;                   /* window, or INT_MAX without one */
};
__device__ __forceinline__ attn_row attn_row_of(const attn_dev &s, int b)
{
    int kl = s.k_len ? s.k_len[b] : s.Tk;
    return { s.q_pos0 ? s.q_pos0[b] : 0, kl < s.Tk ? kl : s.Tk,
             s.window > 0 ? (unsigned)s.window : 0x7fffffffu };
}
__device__ __forceinline__ bool row_sees(attn_row r, int t, int j)
{
    return (unsigned)(r.pos0 + t - j) < r.span && j < r.kend;   /* j > p: wraps past span */
}

/* The score y the softmax sees for qk = q . k: x = scale qk, then softcap tanh(x /
 * softcap) when soft-capped (plain x otherwise: no tanh). */
__device__ __forceinline__ float attn_score(const attn_dev &s, float qk)
{
    float x = s.scale * qk;
    return s.softcap > 0.0f ? s.softcap * tanhf(x / s.softcap) : x;
}
/* dy (the gradient at score y) carried back through the cap: dy (1 - (y / softcap)^2);
 * dy itself when not capped */
__device__ __forceinline__ float attn_score_bwd(const attn_dev &s, float dy, float y)
{
    if (s.softcap <= 0.0f) return dy;
    float r = y / s.softcap;
    return dy * (1.0f - r * r);
}

/* cuda_attn_tiled.cu: 1 when the tiled kernels can run head dim hd on this device
 * (hd <= 128 and their shared memory fits the device's opt-in limit). */
int mu_cu_attn_tiled_fits(int hd);
/* O, lse (may be NULL) as kernels.h attention; a.hd must pass mu_cu_attn_tiled_fits. */
void mu_cu_attention_tiled(float *O, float *lse, const float *Q, const float *K,
                           const float *V, const attn_dev &a);
/* dQ, dK, dV OVERWRITTEN as kernels.h attention_bwd; delta[B,H,Tq] = rowsum(dO * O). */
void mu_cu_attention_bwd_tiled(float *dQ, float *dK, float *dV, const float *dO,
                               const float *lse, const float *delta, const float *Q,
                               const float *K, const float *V, const attn_dev &a);

/* Each .cu file besides cuda_backend.cu fills its own entries of the table. */
void mu_cu_fill_bf16(mu_backend *b);     /* cuda_bf16.cu */
void mu_cu_fill_optim(mu_backend *b);    /* cuda_optim.cu */
#endif
