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
#include <stdint.h>
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
/* ---- host arrays and guarded device buffers (ggml test-backend-ops style) ------------------ */
#include "rng.h"

/* x[n] ~ N(0, sd^2), seeded */
static inline void fill(float *x, size_t n, uint64_t seed, float sd)
{
    mu_rng r;
    mu_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) x[i] = (float)(sd * mu_rng_normal(&r));
}

static inline float *fnew(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof *p);
    CHECK(p);
    return p;
}

static inline float *fdup(const float *x, size_t n)
{
    float *p = fnew(n);
    memcpy(p, x, n * sizeof *p);
    return p;
}

/* A device buffer of n floats with GUARD floats of a known bit pattern on each side;
 * dget checks them (out-of-bounds writes). */
#define GUARD 64                          /* floats each side (256 bytes: keeps alignment) */
#define GUARD_BITS 0xDEADBEEFu

typedef struct {
    const mu_backend *be;
    float *base, *p;                      /* p = base + GUARD */
    size_t n;
} dbuf;

static inline dbuf dnew(const mu_backend *be, const float *host, size_t n)
{
    dbuf d = { be, NULL, NULL, n };
    size_t tot = n + 2 * GUARD;
    d.base = be->alloc(tot * sizeof(float));
    CHECK_MSG(d.base != NULL, "alloc of %zu floats failed", tot);
    uint32_t *h = calloc(tot, sizeof *h);
    CHECK(h);
    for (size_t i = 0; i < GUARD; i++) h[i] = h[tot - 1 - i] = GUARD_BITS;
    if (host) memcpy(h + GUARD, host, n * sizeof(float));
    be->upload(d.base, h, tot * sizeof(float));
    free(h);
    d.p = d.base + GUARD;
    return d;
}

/* Downloads the contents into host (if not NULL) and checks both guards. */
static inline void dget(const dbuf *d, float *host, const char *what)
{
    size_t tot = d->n + 2 * GUARD;
    uint32_t *h = calloc(tot, sizeof *h);
    CHECK(h);
    d->be->download(h, d->base, tot * sizeof(float));
    for (size_t i = 0; i < GUARD; i++) {
        CHECK_MSG(h[i] == GUARD_BITS, "%s: guard before the buffer overwritten at -%zu", what,
                  GUARD - i);
        CHECK_MSG(h[tot - 1 - i] == GUARD_BITS, "%s: guard after the buffer overwritten at +%zu",
                  what, GUARD - 1 - i);
    }
    if (host) memcpy(host, h + GUARD, d->n * sizeof(float));
    free(h);
}

static inline void dfree(dbuf *d) { d->be->free(d->base); d->base = d->p = NULL; }
#endif
