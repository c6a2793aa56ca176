/* cuda_common.h — what the .cu files of the CUDA backend share (internal to kernels/cuda):
 * the checked-call macros, the launch geometry, and the hooks by which each file adds its
 * ops to the backend table. See cuda_backend.cu for the conventions. */
#ifndef MU_CUDA_COMMON_H
#define MU_CUDA_COMMON_H
#include <cstddef>
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

/* Blocks for a grid-stride loop over n items, each handled by `per` threads (capped at
 * 32 blocks per SM). */
unsigned mu_cu_grid_for(size_t n, int per);
/* The cuBLAS handle of the backend (valid once mu_backend_cuda() returned non-NULL). */
cublasHandle_t mu_cu_blas(void);

/* Each .cu file besides cuda_backend.cu fills its own entries of the table. */
void mu_cu_fill_bf16(mu_backend *b);     /* cuda_bf16.cu */
void mu_cu_fill_optim(mu_backend *b);    /* cuda_optim.cu */
#endif
