/* cuda_optim.cu — the optimizer ops of the CUDA backend (kernels.h, mu_elems): AdamW and
 * SGD updates, gradient sum of squares and scaling, gather/scatter of trained elements
 * (the update ops find entry j of a packed tensor at j, of a whole one at its flat index).
 *
 *  - Per-entry ops are fused kernels over the entries of one tensor: a grid-stride loop
 *    over elements for dense sets; for chunked lists one block per chunk of 2^16 elements
 *    (grid-stride over chunks), its threads striding over the chunk's entries. Each entry
 *    is read and written by exactly one thread.
 *  - The update arithmetic is written with round-to-nearest intrinsics (__fmul_rn,
 *    __fadd_rn, __fdiv_rn, __fsqrt_rn), which the compiler never contracts into FMAs, in
 *    the order of the CPU backend (cpu_optim.c): the same inputs give the same f32 bits.
 *  - Sum of squares: one block per chunk (dense: elements [c*2^16, (c+1)*2^16)) sums its
 *    entries' squares in double and reduces them through shared memory in a fixed tree;
 *    the per-chunk partials are downloaded and added on the host in chunk order. No
 *    atomics: two runs give the same bits, whatever the grid size. */
#include <cstdint>
#include <cstdlib>
#include <cuda_bf16.h>
#include "cuda_common.h"

#define CHUNK_BITS MU_ELEMS_CHUNK_BITS
#define CHUNK ((int64_t)1 << CHUNK_BITS)

/* ---- one kernel shape for every per-entry op -------------------------------------------- */
template <class Op>
__global__ void k_dense_entries(int64_t numel, Op op)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < numel;
         i += (int64_t)gridDim.x * blockDim.x)
        op(i, i);
}

template <class Op>
__global__ void k_list_entries(int64_t nchunks, const int64_t *chunk_start, const uint16_t *off,
                               Op op)
{
    for (int64_t c = blockIdx.x; c < nchunks; c += gridDim.x) {
        int64_t end = chunk_start[c + 1];
        for (int64_t j = chunk_start[c] + threadIdx.x; j < end; j += blockDim.x)
            op(j, (c << CHUNK_BITS) | off[j]);
    }
}

/* Runs op(j, flat) for every entry j of e (flat: its element index). */
template <class Op>
static void for_each_entry(const mu_elems *e, Op op)
{
    if (e->dense) {
        if (e->numel <= 0) return;
        k_dense_entries<<<mu_cu_grid_for((size_t)e->numel, 1), NT>>>(e->numel, op);
    } else {
        if (e->nchunks <= 0 || e->n <= 0) return;
        k_list_entries<<<mu_cu_grid_for((size_t)e->nchunks, NT), NT>>>(e->nchunks,
                                                                     e->chunk_start, e->off, op);
    }
    KCHECK();
}

/* Where an update op finds entry j (element flat) in w and g. */
__device__ __forceinline__ int64_t at_of(int packed, int64_t j, int64_t flat)
{
    return packed ? j : flat;
}

/* ---- the per-entry ops ------------------------------------------------------------------ */
struct op_scale {
    float *g;
    float s;
    int packed;
    __device__ void operator()(int64_t j, int64_t flat) const
    {
        int64_t at = at_of(packed, j, flat);
        g[at] = __fmul_rn(g[at], s);
    }
};

struct op_gather {
    float *packed;
    const float *w;
    __device__ void operator()(int64_t j, int64_t flat) const { packed[j] = w[flat]; }
};

struct op_scatter {
    float *w;
    const float *packed;
    __device__ void operator()(int64_t j, int64_t flat) const { w[flat] = packed[j]; }
};

struct op_gather_add {
    float *packed;
    const float *g;
    __device__ void operator()(int64_t j, int64_t flat) const
    {
        packed[j] = __fadd_rn(packed[j], g[flat]);
    }
};

struct op_scatter_bf16 {
    __nv_bfloat16 *w16;
    const float *packed;
    __device__ void operator()(int64_t j, int64_t flat) const
    {
        w16[flat] = __float2bfloat16_rn(packed[j]);
    }
};

/* cpu_adamw_step, operation by operation */
struct op_adamw {
    float *w, *m, *v;
    const float *g;
    mu_adamw_args a;
    int packed;
    __device__ void operator()(int64_t j, int64_t flat) const
    {
        int64_t at = at_of(packed, j, flat);
        float gi = g[at];
        float wi = w[at];
        if (a.decay_on) wi = __fmul_rn(wi, a.decay);
        float mj = __fadd_rn(m[j], __fmul_rn(a.omb1, __fsub_rn(gi, m[j])));
        float vj = __fadd_rn(__fmul_rn(v[j], a.b2), __fmul_rn(a.omb2, __fmul_rn(gi, gi)));
        m[j] = mj;
        v[j] = vj;
        float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vj), a.bc2_sqrt), a.eps);
        w[at] = __fsub_rn(wi, __fmul_rn(a.step_size, __fdiv_rn(mj, denom)));
    }
};

/* cpu_sgd_step, operation by operation */
struct op_sgd {
    float *w, *buf;
    const float *g;
    mu_sgd_args a;
    int packed;
    __device__ void operator()(int64_t j, int64_t flat) const
    {
        int64_t at = at_of(packed, j, flat);
        float d = g[at];
        if (a.wd != 0.0f) d = __fadd_rn(d, __fmul_rn(a.wd, w[at]));
        if (buf) {
            float b = a.first ? d : __fadd_rn(__fmul_rn(buf[j], a.momentum), d);
            buf[j] = b;
            d = b;
        }
        w[at] = __fsub_rn(w[at], __fmul_rn(a.lr, d));
    }
};

static void cu_elems_scale(float *g, float s, const mu_elems *e)
{
    for_each_entry(e, op_scale{g, s, e->packed});
}

static void cu_elems_gather(float *packed, const float *w, const mu_elems *e)
{
    for_each_entry(e, op_gather{packed, w});
}

static void cu_elems_scatter(float *w, const float *packed, const mu_elems *e)
{
    for_each_entry(e, op_scatter{w, packed});
}

static void cu_elems_gather_add(float *packed, const float *g, const mu_elems *e)
{
    for_each_entry(e, op_gather_add{packed, g});
}

static void cu_elems_scatter_bf16(uint16_t *w16, const float *packed, const mu_elems *e)
{
    for_each_entry(e, op_scatter_bf16{(__nv_bfloat16 *)w16, packed});
}

static void cu_adamw_step(float *w, const float *g, float *m, float *v, const mu_elems *e,
                          const mu_adamw_args *a)
{
    for_each_entry(e, op_adamw{w, m, v, g, *a, e->packed});
}

static void cu_sgd_step(float *w, const float *g, float *buf, const mu_elems *e,
                        const mu_sgd_args *a)
{
    for_each_entry(e, op_sgd{w, buf, g, *a, e->packed});
}

/* ---- weight masking (kernels.h; [n] arrays, one thread per element) --------------------- */
struct op_wmask_forward {
    float *w, *m;
    const float *w0;
    __device__ void operator()(int64_t j, int64_t) const
    {
        float mj = m[j] < 0 ? 0.0f : m[j] > 1 ? 1.0f : m[j];   /* NaN stays NaN, as on the CPU */
        m[j] = mj;
        w[j] = __fmul_rn(w0[j], mj);
    }
};

struct op_wmask_backward {
    float *gm;
    const float *g, *w0;
    float lam;
    __device__ void operator()(int64_t j, int64_t) const
    {
        gm[j] = __fsub_rn(__fmul_rn(g[j], w0[j]), lam);
    }
};

/* [n] arrays as a dense set of n entries: for_each_entry runs op(j, j) for j in [0, n) */
static mu_elems dense_entries(int64_t n)
{
    mu_elems e = {};
    e.numel = e.n = n;
    e.dense = 1;
    return e;
}

static void cu_wmask_forward(float *w, float *m, const float *w0, int64_t n)
{
    const mu_elems e = dense_entries(n);
    for_each_entry(&e, op_wmask_forward{w, m, w0});
}

static void cu_wmask_backward(float *gm, const float *g, const float *w0, float lam, int64_t n)
{
    const mu_elems e = dense_entries(n);
    for_each_entry(&e, op_wmask_backward{gm, g, w0, lam});
}

/* ---- sums over entries: per-chunk double partials --------------------------------------- */
/* the term each entry x adds: its square (elems_sumsq), or 1 - x (wmask_cut) */
struct term_sq {
    __device__ double operator()(float x) const { return (double)x * (double)x; }
};
struct term_cut {
    __device__ double operator()(float x) const { return 1.0 - (double)x; }
};

/* part[c] = sum over chunk c's entries of term(g); blockDim.x must be NT. */
template <class Term>
__global__ void k_chunk_sum(double *part, const float *g, int64_t nblk, int64_t numel,
                            int dense, int packed, const int64_t *chunk_start,
                            const uint16_t *off, Term term)
{
    __shared__ double sh[NT];
    for (int64_t c = blockIdx.x; c < nblk; c += gridDim.x) {   /* uniform in the block */
        double acc = 0;
        if (dense) {
            int64_t end = (c + 1) * CHUNK < numel ? (c + 1) * CHUNK : numel;
            for (int64_t i = c * CHUNK + threadIdx.x; i < end; i += NT) acc += term(g[i]);
        } else {
            int64_t end = chunk_start[c + 1];
            for (int64_t j = chunk_start[c] + threadIdx.x; j < end; j += NT)
                acc += term(g[packed ? j : ((c << CHUNK_BITS) | off[j])]);
        }
        sh[threadIdx.x] = acc;
        __syncthreads();
        for (int s = NT / 2; s > 0; s >>= 1) {
            if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
            __syncthreads();
        }
        if (threadIdx.x == 0) part[c] = sh[0];
        __syncthreads();                       /* sh is reused by the next chunk */
    }
}

/* Device and host arrays for the partials, grown as needed (the backend is used by one
 * thread at a time). */
static double *g_part_dev, *g_part_host;
static size_t g_part_cap;

static void part_reserve(size_t n)
{
    if (n <= g_part_cap) return;
    if (g_part_dev) CK(cudaFree(g_part_dev));
    free(g_part_host);
    CK(cudaMalloc((void **)&g_part_dev, n * sizeof(double)));
    g_part_host = (double *)malloc(n * sizeof(double));
    if (!g_part_host) mu_cu_fail("malloc", "out of host memory", __FILE__, __LINE__);
    g_part_cap = n;
}

/* sum over the entries of e of term(g): the chunks' partials, added on the host in order */
template <class Term>
static double chunk_sum(const float *g, const mu_elems *e, Term term)
{
    int64_t nblk = e->dense ? (e->numel + CHUNK - 1) / CHUNK : e->nchunks;
    if (nblk <= 0) return 0;
    part_reserve((size_t)nblk);
    k_chunk_sum<<<mu_cu_grid_for((size_t)nblk, NT), NT>>>(g_part_dev, g, nblk, e->numel,
                                                          e->dense, e->packed, e->chunk_start,
                                                          e->off, term);
    KCHECK();
    CK(cudaMemcpy(g_part_host, g_part_dev, (size_t)nblk * sizeof(double),
                  cudaMemcpyDeviceToHost));
    double total = 0;
    for (int64_t c = 0; c < nblk; c++) total += g_part_host[c];
    return total;
}

static double cu_elems_sumsq(const float *g, const mu_elems *e)
{
    return chunk_sum(g, e, term_sq{});
}

static double cu_wmask_cut(const float *m, int64_t n)
{
    const mu_elems e = dense_entries(n);
    return chunk_sum(m, &e, term_cut{});
}

void mu_cu_fill_optim(mu_backend *b)
{
    b->elems_sumsq = cu_elems_sumsq;
    b->elems_scale = cu_elems_scale;
    b->adamw_step = cu_adamw_step;
    b->sgd_step = cu_sgd_step;
    b->elems_gather = cu_elems_gather;
    b->elems_scatter = cu_elems_scatter;
    b->elems_gather_add = cu_elems_gather_add;
    b->elems_scatter_bf16 = cu_elems_scatter_bf16;
    b->wmask_forward = cu_wmask_forward;
    b->wmask_backward = cu_wmask_backward;
    b->wmask_cut = cu_wmask_cut;
}
