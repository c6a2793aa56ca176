/* cuda_emu.h — the CUDA subset that mu's CUDA sources (kernels/cuda) use, emulated on the
 * CPU so the backend's own source runs in the tests (tests/emu/emu.cpp; mu-cuda(7), TESTS).
 *
 * Device side: every thread of a block is a fiber; blocks run one after another (in a
 * random order), the threads of a block under a randomized schedule (warps at different
 * speeds). __syncthreads and the warp shuffles are real barriers: a barrier that not every
 * thread reaches, or reached from two different lines, is reported as an error and the
 * process aborts. Shared memory (static and dynamic) starts as NaN in every block.
 * Host side: cudaMalloc & co. on host memory (new allocations are NaN-filled), synchronous
 * copies, a small device ("emulated", 2 SMs, 48 KB shared memory per block, 227 KB opt-in),
 * cuBLAS sgemm/GemmEx as plain loops after cuBLAS's argument checks.
 *
 * The .cu files are compiled as C++ after tests/emu/transform.sh rewrote
 *   kernel<<<grid, block[, smem[, stream]]>>>(args)  ->  EMU_LAUNCH(kernel, grid, block...)(args)
 *   extern __shared__ T name[];                      ->  T *name = emu_dyn_smem<T>();
 *   __shared__ T decl;                               ->  static T decl; (NaN-filled per block)
 */
#ifndef MU_CUDA_EMU_H
#define MU_CUDA_EMU_H
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <tuple>
#include <utility>
#include <type_traits>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__

/* ---- vector types, indices ------------------------------------------------------------- */
struct uint3 { unsigned x, y, z; };
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct __attribute__((aligned(8))) float2 { float x, y; };
static inline float4 make_float4(float a, float b, float c, float d) { return float4{a, b, c, d}; }
static inline float2 make_float2(float a, float b) { return float2{a, b}; }

extern uint3 emu_tid, emu_bid;
extern dim3 emu_bdim, emu_gdim;
#define threadIdx (static_cast<const uint3 &>(emu_tid))
#define blockIdx (static_cast<const uint3 &>(emu_bid))
#define blockDim (static_cast<const dim3 &>(emu_bdim))
#define gridDim (static_cast<const dim3 &>(emu_gdim))

/* CUDA's integer and float min/max overloads */
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }

/* round-to-nearest arithmetic (the emulated files are built with -ffp-contract=off) */
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __fsqrt_rn(float a) { return sqrtf(a); }
static inline float __frcp_rn(float a) { return 1.0f / a; }

/* ---- barriers and warp shuffles (emu.cpp) ----------------------------------------------- */
void emu_syncthreads(const char *file, int line);
#define __syncthreads() emu_syncthreads(__FILE__, __LINE__)
/* lane's 8-byte value exchanged through the warp; src computed per lane by the caller */
uint64_t emu_shfl(unsigned mask, uint64_t v, int src, int width, int xor_mask, const char *file,
                  int line);
template <class T>
static inline T emu_shfl_t(unsigned mask, T v, int src, int width, int xor_mask,
                           const char *file, int line)
{
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of <= 8 bytes");
    uint64_t u = 0;
    memcpy(&u, &v, sizeof v);
    u = emu_shfl(mask, u, src, width, xor_mask, file, line);
    T r;
    memcpy(&r, &u, sizeof r);
    return r;
}
#define __shfl_sync(mask, v, src, ...) \
    emu_shfl_t((mask), (v), (src), emu_width(__VA_ARGS__ + 0), -1, __FILE__, __LINE__)
#define __shfl_xor_sync(mask, v, lm, ...) \
    emu_shfl_t((mask), (v), 0, emu_width(__VA_ARGS__ + 0), (lm), __FILE__, __LINE__)
static inline int emu_width(int w) { return w == 0 ? 32 : w; }

/* shared memory: the block's dynamic shared memory (NaN at block start) */
void *emu_dyn_smem_ptr(void);
template <class T> static inline T *emu_dyn_smem(void) { return (T *)emu_dyn_smem_ptr(); }
/* a static __shared__ variable: NaN-filled the first time a block reaches it */
void emu_shared_nan(void *p, size_t n);

/* ---- bf16 ------------------------------------------------------------------------------- */
struct __nv_bfloat16 { uint16_t __x; };
typedef __nv_bfloat16 nv_bfloat16;
static inline __nv_bfloat16 __float2bfloat16_rn(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    __nv_bfloat16 r;
    if ((u & 0x7fffffffu) > 0x7f800000u) { r.__x = 0x7fff; return r; }   /* NaN as CUDA's */
    u += 0x7fffu + ((u >> 16) & 1u);                                       /* nearest even */
    r.__x = (uint16_t)(u >> 16);
    return r;
}
static inline float __bfloat162float(__nv_bfloat16 h)
{
    uint32_t u = (uint32_t)h.__x << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---- runtime API --------------------------------------------------------------------------- */
typedef enum cudaError {
    cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2,
    cudaErrorInitializationError = 3, cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevicePointer = 17, cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorNoDevice = 100, cudaErrorInvalidDevice = 101,
    cudaErrorLaunchOutOfResources = 701, cudaErrorLaunchFailure = 719,
} cudaError_t;
enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0, cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3, cudaMemcpyDefault = 4
};
enum cudaDeviceAttr {
    cudaDevAttrMaxThreadsPerBlock = 1, cudaDevAttrMaxSharedMemoryPerBlock = 8,
    cudaDevAttrWarpSize = 10, cudaDevAttrClockRate = 13, cudaDevAttrMultiProcessorCount = 16,
    cudaDevAttrComputeCapabilityMajor = 75, cudaDevAttrComputeCapabilityMinor = 76,
    cudaDevAttrMaxSharedMemoryPerBlockOptin = 97
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
typedef struct CUstream_st *cudaStream_t;
struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem, sharedMemPerBlock, sharedMemPerBlockOptin;
    int warpSize, maxThreadsPerBlock, clockRate, multiProcessorCount, major, minor;
};

cudaError_t emu_malloc(void **p, size_t n);
template <class T> static inline cudaError_t cudaMalloc(T **p, size_t n)
{
    return emu_malloc((void **)p, n);
}
cudaError_t cudaFree(void *p);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind,
                            cudaStream_t stream = 0);
cudaError_t cudaMemset(void *p, int v, size_t n);
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t stream = 0);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDevice(int *d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d);
cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int d);
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b);
const char *cudaGetErrorString(cudaError_t e);
cudaError_t emu_func_set_attribute(const void *fn, cudaFuncAttribute a, int v);
template <class T>
static inline cudaError_t cudaFuncSetAttribute(T *fn, cudaFuncAttribute a, int v)
{
    return emu_func_set_attribute((const void *)fn, a, v);
}

/* ---- launches ---------------------------------------------------------------------------- */
/* Runs body(thread) for every thread of the grid; returns nonzero (and sets the last error)
 * for a bad configuration. fn: the kernel's address where it has one (NULL for a template
 * whose arguments are deduced), for its cudaFuncSetAttribute limit. */
int emu_run_grid(const char *name, const void *fn, dim3 grid, dim3 block, size_t smem,
                 const std::function<void()> &body);
/* __launch_bounds__(max_threads, ...) of a kernel (registered by transform.sh): launches of
 * it with more threads per block fail as on CUDA */
void emu_register_bounds(const char *kernel, int max_threads);
struct emu_bounds_reg {
    emu_bounds_reg(const char *kernel, int max_threads) { emu_register_bounds(kernel, max_threads); }
};
/* checks a pointer argument of a kernel: NULL or inside a device allocation */
void emu_check_arg_ptr(const char *kernel, int index, const void *p);

template <class A> static inline void emu_check_arg(const char *k, int i, const A &a)
{
    if constexpr (std::is_pointer<A>::value) emu_check_arg_ptr(k, i, (const void *)a);
}

template <class L> struct emu_launcher {
    const char *name;
    const void *fn;
    L call;
    dim3 grid, block;
    size_t smem;
    template <class... A> void operator()(A &&...args)
    {
        /* arguments are evaluated once, on the host, then copied into every thread */
        std::tuple<std::decay_t<A>...> tup(std::forward<A>(args)...);
        int i = 0;
        std::apply([&](const auto &...a) { (emu_check_arg(name, i++, a), ...); }, tup);
        emu_run_grid(name, fn, grid, block, smem, [&] {
            auto copy = tup;
            std::apply(call, copy);
        });
    }
};
template <class L>
static inline emu_launcher<L> emu_make_launch(const char *name, const void *fn, L call, dim3 g,
                                              dim3 b, size_t smem = 0, cudaStream_t = 0)
{
    return emu_launcher<L>{name, fn, call, g, b, smem};
}
/* the kernel's address when the name has one (not a template with deduced arguments) */
#define EMU_KADDR(K) ([&](auto...) -> const void * { \
        if constexpr (requires { (const void *)(K); }) return (const void *)(K); \
        else return nullptr; }())
#define EMU_LAUNCH(K, ...) \
    emu_make_launch(#K, EMU_KADDR(K), [&](auto... emu_a) { K(emu_a...); }, __VA_ARGS__)

/* ---- cuBLAS ------------------------------------------------------------------------------- */
typedef struct cublasContext *cublasHandle_t;
typedef enum {
    CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_NOT_INITIALIZED = 1, CUBLAS_STATUS_ALLOC_FAILED = 3,
    CUBLAS_STATUS_INVALID_VALUE = 7, CUBLAS_STATUS_ARCH_MISMATCH = 8,
    CUBLAS_STATUS_EXECUTION_FAILED = 13, CUBLAS_STATUS_INTERNAL_ERROR = 14,
    CUBLAS_STATUS_NOT_SUPPORTED = 15
} cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 } cublasOperation_t;
typedef enum {
    CUBLAS_DEFAULT_MATH = 0, CUBLAS_TENSOR_OP_MATH = 1, CUBLAS_PEDANTIC_MATH = 2,
    CUBLAS_TF32_TENSOR_OP_MATH = 3
} cublasMath_t;
typedef enum { CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_16BF = 14 } cudaDataType;
typedef cudaDataType cudaDataType_t;
typedef enum { CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_FAST_TF32 = 77 } cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT = -1 } cublasGemmAlgo_t;

cublasStatus_t cublasCreate(cublasHandle_t *h);
cublasStatus_t cublasDestroy(cublasHandle_t h);
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode);
const char *cublasGetStatusString(cublasStatus_t s);
cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                           int n, int k, const float *alpha, const float *A, int lda,
                           const float *B, int ldb, const float *beta, float *C, int ldc);
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void *alpha, const void *A, cudaDataType Atype,
                            int lda, const void *B, cudaDataType Btype, int ldb,
                            const void *beta, void *C, cudaDataType Ctype, int ldc,
                            cublasComputeType_t ctype, cublasGemmAlgo_t algo);
#endif
