/* cpu_bf16.c — the bf16-weight ops of the CPU backend (kernels.h, "bf16 weights").
 *
 * The CPU has no bf16 GEMM here, so each call widens its bf16 operands into f32 scratch
 * (exact) and rounds its f32 operands to bf16 and back (X, dY), then runs the f32 sgemm
 * of cpu_ops.c: the same numbers as a GPU bf16 GEMM with f32 accumulation, up to the
 * order of the sums. Scratch buffers grow to the largest call and are kept. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include "cpu.h"
#include "tensor.h"

enum { S_W = 0, S_A, S_B, S_COUNT };
static float *g_scratch[S_COUNT];
static size_t g_cap[S_COUNT];

/* Scratch slot of at least n floats; out of memory is fatal (ops have no error return). */
static float *scratch(int slot, size_t n)
{
    if (g_cap[slot] < n) {
        free(g_scratch[slot]);
        g_scratch[slot] = malloc((n ? n : 1) * sizeof(float));
        if (!g_scratch[slot]) {
            fprintf(stderr, "mu: cpu: out of memory for %zu bf16 scratch values\n", n);
            exit(1);
        }
        g_cap[slot] = n;
    }
    return g_scratch[slot];
}

/* dst[n] = bf16(src[n]) */
void cpu_to_bf16(uint16_t *dst, const float *src, size_t n)
{
    #pragma omp parallel for if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) dst[i] = mu_f32_to_bf16(src[i]);
}

/* out[n] = f32(W[n]) */
static float *widen(int slot, const uint16_t *W, size_t n)
{
    float *out = scratch(slot, n);
    #pragma omp parallel for if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = mu_bf16_to_f32(W[i]);
    return out;
}

/* out[n] = f32(bf16(X[n])) */
static float *round_bf16(int slot, const float *X, size_t n)
{
    float *out = scratch(slot, n);
    #pragma omp parallel for if (n > PAR_MIN)
    for (size_t i = 0; i < n; i++) out[i] = mu_bf16_to_f32(mu_f32_to_bf16(X[i]));
    return out;
}

/* The f32 GEMMs the bf16 ones run on rounded operands: W [M,K] (matmul) or [K,M] (wt) */
typedef void (*gemm_fwd_fn)(float *, const float *, const float *, int, int, int, int);
typedef void (*gemm_bwd_fn)(float *, float *, const float *, const float *, const float *, int, int,
                            int, int);

/* Y[N,M] (+)= bf16(X)[N,K] . W (W bf16 [M,K] or, through matmul_wt, [K,M]) */
static void bf16_fwd(gemm_fwd_fn f32, float *Y, const float *X, const uint16_t *W, int N, int K, int M,
                     int accumulate)
{
    if (N <= 0 || M <= 0) return;
    const float *Wf = widen(S_W, W, (size_t)M * K);
    const float *Xb = round_bf16(S_A, X, (size_t)N * K);
    f32(Y, Xb, Wf, N, K, M, accumulate);
}

/* dX[N,K] (+)= bf16(dY) . W^T-or-W;  dW += bf16(dY)^T . bf16(X) in W's layout */
static void bf16_bwd(gemm_bwd_fn f32, float *dX, float *dW, const float *dY, const float *X,
                     const uint16_t *W, int N, int K, int M, int accumulate_dx)
{
    if (N <= 0 || K <= 0) return;
    const float *dYb = round_bf16(S_A, dY, (size_t)N * M);
    if (dX) f32(dX, NULL, dYb, NULL, widen(S_W, W, (size_t)M * K), N, K, M, accumulate_dx);
    if (dW) f32(NULL, dW, dYb, round_bf16(S_B, X, (size_t)N * K), NULL, N, K, M, 0);
}

void cpu_matmul_bf16(float *Y, const float *X, const uint16_t *W, int N, int K, int M,
                     int accumulate)
{
    bf16_fwd(cpu_matmul, Y, X, W, N, K, M, accumulate);
}

void cpu_matmul_bf16_bwd(float *dX, float *dW, const float *dY, const float *X,
                         const uint16_t *W, int N, int K, int M, int accumulate_dx)
{
    bf16_bwd(cpu_matmul_bwd, dX, dW, dY, X, W, N, K, M, accumulate_dx);
}

void cpu_matmul_wt_bf16(float *Y, const float *X, const uint16_t *W, int N, int K, int M,
                        int accumulate)
{
    bf16_fwd(cpu_matmul_wt, Y, X, W, N, K, M, accumulate);
}

void cpu_matmul_wt_bf16_bwd(float *dX, float *dW, const float *dY, const float *X,
                            const uint16_t *W, int N, int K, int M, int accumulate_dx)
{
    bf16_bwd(cpu_matmul_wt_bwd, dX, dW, dY, X, W, N, K, M, accumulate_dx);
}

/* Y[N,D] = f32(E[ids[n], :]) */
void cpu_embed_bf16(float *Y, const uint16_t *E, const int32_t *ids, int N, int D)
{
    #pragma omp parallel for if ((size_t)N * D > PAR_MIN)
    for (int n = 0; n < N; n++) {
        const uint16_t *e = E + (size_t)ids[n] * D;
        float *y = Y + (size_t)n * D;
        for (int d = 0; d < D; d++) y[d] = mu_bf16_to_f32(e[d]);
    }
}
