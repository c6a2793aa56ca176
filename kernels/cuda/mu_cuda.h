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

#ifdef __cplusplus
}
#endif
#endif
