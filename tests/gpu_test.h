/* gpu_test.h — how the CUDA tests (t_cuda*.c) pick their device backend.
 *
 * mu_test_gpu() returns the CUDA backend, or SKIPs the calling test (with the reason)
 * when mu was built without CUDA or no device is usable.
 * MU_TEST_FAKE_GPU=1 returns the CPU backend posing as a device instead (buffers flagged
 * as device memory, so every code path that copies to and from a device runs): it checks
 * the tests' own logic (guards, copies, bookkeeping) on a machine without a GPU; every
 * comparison is then CPU against CPU. */
#ifndef MU_GPU_TEST_H
#define MU_GPU_TEST_H
#include <stdlib.h>
#include <string.h>
#include "test.h"
#include "kernels.h"
#ifdef MU_HAVE_CUDA
#include "cuda/mu_cuda.h"
#endif

static inline const mu_backend *mu_test_fake_gpu(void)
{
    static mu_backend fake;
    fake = *mu_backend_cpu();
    fake.name = "fake-gpu";
    fake.host_memory = 0;
    return &fake;
}

static inline const mu_backend *mu_test_gpu(void)
{
    const char *f = getenv("MU_TEST_FAKE_GPU");
    if (f && !strcmp(f, "1")) return mu_test_fake_gpu();
#ifndef MU_HAVE_CUDA
    SKIP("built without CUDA (nvcc not found, or make CUDA=0)");
#else
    if (mu_cuda_device_count() <= 0)
        SKIP("no CUDA device (cudaGetDeviceCount failed or returned 0)");
    const mu_backend *be = mu_backend_cuda();
    if (!be) SKIP("CUDA device present but the backend could not start");
    return be;
#endif
}
#endif
