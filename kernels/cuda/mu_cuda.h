/* mu_cuda.h — extras of the CUDA backend (kernels/cuda) beyond the mu_backend table of
 * kernels.h. Only declared when mu is built with CUDA (MU_HAVE_CUDA). See mu-cuda(7).
 *
 *   const mu_backend *be = mu_backend_by_name("auto", err, sizeof err);   // cuda if usable
 *   ... mu_model_load(dir, NULL, 0, be, err, sizeof err) ...
 *   if (!be->host_memory) mu_cuda_print_memory("after load");            // stderr
 */
#ifndef MU_MU_CUDA_H
#define MU_MU_CUDA_H
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable CUDA devices (0 when the driver or the device is missing); never
 * initializes cuBLAS and never exits. */
int mu_cuda_device_count(void);
/* One line on stderr: "mu: cuda: WHEN: U MiB used, F MiB free of T MiB (DEVICE)"
 * from cudaMemGetInfo. Does nothing when the backend was not initialized. */
void mu_cuda_print_memory(const char *when);
/* Name of the device in use ("" before the backend started). */
const char *mu_cuda_device_name(void);
/* Peak f32 FLOP/s of the device without tensor cores (SMs x FP32 lanes per SM x 2 x
 * clock), for MFU figures; 0 when unknown. */
double mu_cuda_peak_f32_flops(void);
/* Attention kernels: "tiled" (head dims up to 128 where the device's shared memory allows;
 * larger ones still run the warp kernels), "warp" (one warp per row), "auto" (= tiled
 * where possible). Overrides MU_CUDA_ATTENTION; may be called before or after the
 * backend started. Returns 0, or -1 for another name (nothing changes). */
int mu_cuda_set_attention(const char *variant);
/* Peak dense bf16 tensor-core FLOP/s (f32 accumulation, no sparsity): SMs x clock x
 * FLOPs/clock/SM (4096 on sm_90, 2048 on sm_80, 1024 on sm_86/87/89); 0 for other devices
 * or before the backend started. The clock is the device's maximum boost clock (1.98 GHz
 * on H100/H200 SXM against the 1.83 GHz of NVIDIA's 989 TFLOP/s): the peak runs high, so
 * MFU figures against it are conservative. */
double mu_cuda_peak_bf16_flops(void);
/* Bytes of device memory in use (cudaMemGetInfo total - free; the CUDA context and other
 * processes included, so take differences); 0 before the backend started. */
size_t mu_cuda_mem_used(void);

#ifdef __cplusplus
}
#endif
#endif
