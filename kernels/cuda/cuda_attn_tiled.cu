/* cuda_attn_tiled.cu — tiled attention kernels of the CUDA backend (forward, dQ, dK/dV)
 * for head dims up to 128; cuda_backend.cu picks them or its warp-per-row kernels
 * (MU_CUDA_ATTENTION, mu_cuda_set_attention). Same contract as kernels.h/mu_attn_shape.
 *
 *  - Geometry: NT = 256 threads (8 warps) per block, a grid-stride loop over work items.
 *    Forward and dQ: an item is (b, h, tile of AQT = 64 queries), each warp owns 8 of
 *    them; key tiles of AKT = 32 rows of K and V are loaded into shared memory by the
 *    whole block. dK/dV: an item is (b, kv head, tile of 32 keys), each warp owns 4
 *    keys; tiles of 32 query rows of Q and dO (plus their lse and delta) are loaded for
 *    every head of the group.
 *  - Inner products over the head dim: lane-per-key (forward, dQ) or lane-per-query
 *    (dK/dV) from shared memory, float4 reads; the other operand is a broadcast read.
 *    Rows read lane-indexed have stride HD + 4 floats (conflict-free 128-bit reads).
 *    Accumulations into outputs: lane-per-dimension (elements lane, lane+32, ... in
 *    registers), the scalar factor (p or ds) of row j broadcast by __shfl_sync.
 *  - Shared tiles are zero-filled past the valid rows and past hd (up to HD = 32, 64,
 *    128: the template), so padding adds exact zeros and never reads garbage.
 *  - Masks: key j is visible to query t iff first_key(b, t) <= j < n_keys(b, t) (causal +
 *    key padding + q_pos0 + sliding window; cuda_common.h; row_sees in the forward and dQ
 *    inner loops). Both bounds are nondecreasing
 *    in t, so forward and dQ run over the keys [first_key(first query), n_keys(last
 *    query)) of their block, and dK/dV over the queries that can see their key tile: from
 *    the first at or past its first key to the last whose window still reaches its last.
 *  - Soft-capping: scores pass through attn_score (capped; as they were when softcap = 0),
 *    their gradients back through attn_score_bwd (cuda_common.h).
 *  - Every output element is written by exactly one thread, once (no atomics): two runs
 *    give the same bits. dQ, dK, dV are overwritten (0 where nothing is visible); rows
 *    with no visible key get O = 0, lse = -inf.
 *  - Shared memory is dynamic (up to 99840 bytes, for dQ at HD = 128), enabled per kernel
 *    with cudaFuncSetAttribute; mu_cu_attn_tiled_fits says whether the device allows it. */
#include <cmath>
#include <cstdint>
#include <cstdio>
#include "cuda_common.h"

#define AQT 64                        /* queries per item (forward, dQ) */
#define AKT 32                        /* keys per tile */
#define QPW (AQT / WARPS)             /* queries per warp (forward, dQ): 8 */
#define KPW (AKT / WARPS)             /* keys per warp (dK/dV): 4 */
#define DQT 32                        /* queries per tile (dK/dV): one per lane */
#define MAX_ITEMS (1u << 20)          /* grid cap; the grid-stride loop does the rest */
static_assert(AQT % WARPS == 0 && AKT % WARPS == 0 && QPW % 4 == 0 && AKT == 32 && DQT == 32,
              "tiles split evenly over the warps; one key or query per lane");

__device__ __forceinline__ float dot4(float4 a, float4 b)
{
    return a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w;
}
__device__ __forceinline__ float4 ld4(const float *p)
{
    return *reinterpret_cast<const float4 *>(p);
}

/* dst[r][c] (row stride ld, a multiple of 4; dst 16-byte aligned) = src[r * sld + c] for
 * r < nrows and c < hd, else 0; rows x HD elements. The whole block (NT threads) takes
 * part; float4 reads when src, sld and hd allow them. */
template <int HD>
__device__ __forceinline__ void load_tile(float *dst, int ld, const float *src, size_t sld,
                                          int nrows, int rows, int hd)
{
    if ((hd & 3) == 0 && (sld & 3) == 0 && ((uintptr_t)src & 15) == 0) {
        constexpr int C4 = HD / 4;
#pragma unroll 2
        for (int i = threadIdx.x; i < rows * C4; i += NT) {
            int r = i / C4, c = (i % C4) * 4;      /* c < hd: c + 3 < hd too */
            float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (r < nrows && c < hd) v = ld4(src + (size_t)r * sld + c);
            *reinterpret_cast<float4 *>(dst + r * ld + c) = v;
        }
        return;
    }
#pragma unroll 2
    for (int i = threadIdx.x; i < rows * HD; i += NT) {
        int r = i / HD, c = i % HD;
        dst[r * ld + c] = r < nrows && c < hd ? src[(size_t)r * sld + c] : 0.0f;
    }
}

/* ---- forward ------------------------------------------------------------------------------- */
/* acc[i][.] = 0: the QPW rows of NPL head-dim elements (lane + 32 k) a lane accumulates */
template <int NPL>
__device__ __forceinline__ void acc_zero(float (&acc)[QPW][NPL])
{
#pragma unroll
    for (int i = 0; i < QPW; i++)
#pragma unroll
        for (int k = 0; k < NPL; k++) acc[i][k] = 0.0f;
}

/* acc[i][k] += sum over tile rows jj < nj of w_i(jj) * R[jj][lane + 32 k], where w_i(jj)
 * is lane jj's w[i] (broadcast by shuffle): lane per dimension. R: tile rows of stride
 * ld in shared memory. */
template <int NPL>
__device__ __forceinline__ void acc_rows(float (&acc)[QPW][NPL], const float (&w)[QPW],
                                         const float *R, int ld, int nj, int lane)
{
    for (int jj = 0; jj < nj; jj++) {
        float r[NPL];
#pragma unroll
        for (int k = 0; k < NPL; k++) r[k] = R[jj * ld + lane + 32 * k];
#pragma unroll
        for (int i = 0; i < QPW; i++) {
            float wj = __shfl_sync(0xffffffffu, w[i], jj);
#pragma unroll
            for (int k = 0; k < NPL; k++) acc[i][k] += wj * r[k];
        }
    }
}

/* Shared: Qs [AQT][HD] (broadcast reads), Ks [AKT][HD+4] (lane j reads row j),
 * Vs [AKT][HD+4] (lane d reads column d). */
template <int HD>
constexpr size_t fwd_smem() { return (size_t)(AQT * HD + 2 * AKT * (HD + 4)) * sizeof(float); }

template <int HD>
__global__ void __launch_bounds__(NT, 2) k_attn_fwd_tiled(float *O, float *lse, const float *Q,
                                                       const float *K, const float *V,
                                                       attn_dev s)
{
    constexpr int NPL = HD / 32, KLD = HD + 4;
    extern __shared__ float4 smem4[];
    float *Qs = reinterpret_cast<float *>(smem4);
    float *Ks = Qs + AQT * HD, *Vs = Ks + AKT * KLD;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, group = s.H / s.Hkv;
    const int hd4 = (s.hd + 3) & ~3;
    const size_t qld = (size_t)s.H * s.hd, kld = (size_t)s.Hkv * s.hd;
    const int ntile = (s.Tq + AQT - 1) / AQT;
    const size_t items = (size_t)s.B * s.H * ntile;
    for (size_t it = blockIdx.x; it < items; it += gridDim.x) {
        const int tile = ntile - 1 - (int)(it % ntile);          /* longest tiles first */
        const int h = (int)((it / ntile) % s.H);
        const int b = (int)(it / ((size_t)ntile * s.H));
        const int t0 = tile * AQT, nq = min(AQT, s.Tq - t0);
        const int kmin = first_key(s, b, t0);                    /* keys any query sees: */
        const int kmax = n_keys(s, b, t0 + nq - 1);              /* [kmin, kmax) */
        const attn_row row = attn_row_of(s, b);
        __syncthreads();                         /* the previous item is done with smem */
        load_tile<HD>(Qs, HD, Q + ((size_t)b * s.Tq + t0) * qld + (size_t)h * s.hd, qld, nq,
                      AQT, s.hd);
        const int tw = t0 + warp * QPW;          /* this warp's first query */
        /* lane i < QPW holds the running max and sum of query tw + i */
        float mreg = -INFINITY, lreg = 0.0f, acc[QPW][NPL];
        acc_zero<NPL>(acc);
        const float *qw = Qs + warp * QPW * HD, *kr = Ks + lane * KLD;
        for (int j0 = kmin; j0 < kmax; j0 += AKT) {
            const int nj = min(AKT, kmax - j0);
            const size_t koff = ((size_t)b * s.Tk + j0) * kld + (size_t)(h / group) * s.hd;
            __syncthreads();                     /* previous tile read; Qs written */
            load_tile<HD>(Ks, KLD, K + koff, kld, nj, AKT, s.hd);
            load_tile<HD>(Vs, KLD, V + koff, kld, nj, AKT, s.hd);
            __syncthreads();
            float p[QPW];                        /* lane j: score, then probability of key j0+j */
#pragma unroll
            for (int i = 0; i < QPW; i++) p[i] = 0.0f;
#pragma unroll
            for (int g = 0; g < QPW; g += 4)     /* 4 queries a pass: fewer loads in flight */
#pragma unroll 1
                for (int d = 0; d < hd4; d += 4) {
                    float4 k4 = ld4(kr + d);
#pragma unroll
                    for (int i = g; i < g + 4; i++) p[i] += dot4(ld4(qw + i * HD + d), k4);
                }
            const int j = j0 + lane;
#pragma unroll
            for (int i = 0; i < QPW; i++) {      /* online softmax, one tile at a time */
                const bool sees = tw + i < s.Tq && row_sees(row, tw + i, j);
                float x = sees ? attn_score(s, p[i]) : -INFINITY;
                float mi = __shfl_sync(0xffffffffu, mreg, i);
                float mn = fmaxf(mi, warp_max(x));
                /* mn = -inf: nothing visible yet, nothing changes (no inf - inf) */
                float corr = mn == -INFINITY ? 1.0f : expf(mi - mn);
                p[i] = x == -INFINITY ? 0.0f : expf(x - mn);
                float ps = warp_sum(p[i]);
#pragma unroll
                for (int k = 0; k < NPL; k++) acc[i][k] *= corr;
                if (lane == i) { mreg = mn; lreg = lreg * corr + ps; }
            }
            acc_rows<NPL>(acc, p, Vs, KLD, nj, lane);   /* acc += p_j V_j */
        }
#pragma unroll
        for (int i = 0; i < QPW; i++) {
            const int t = tw + i;
            if (t >= s.Tq) continue;             /* warp-uniform */
            const bool any = sees_any(s, b, t);
            float mi = __shfl_sync(0xffffffffu, mreg, i);
            float lt = __shfl_sync(0xffffffffu, lreg, i);
            float inv = any ? 1.0f / lt : 0.0f;
            float *o = O + ((size_t)b * s.Tq + t) * qld + (size_t)h * s.hd;
#pragma unroll
            for (int k = 0; k < NPL; k++) {
                int d = lane + 32 * k;
                if (d < s.hd) o[d] = acc[i][k] * inv;
            }
            if (lse && lane == 0)
                lse[((size_t)b * s.H + h) * s.Tq + t] = any ? mi + logf(lt) : -INFINITY;
        }
    }
}

/* ---- backward: dQ -------------------------------------------------------------------------- */
/* dQ_t = scale * sum_j dS_tj K_j, dS_tj = P_tj (dO_t . V_j - delta_t) (times 1 - (y_tj /
 * softcap)^2 when capped, y: the capped score).  Shared: Qs, dOs [AQT][HD]
 * (broadcast reads), Ks, Vs [AKT][HD+4] (lane j reads row j; lane d reads Ks column d),
 * Ls, Ds [AQT] (lse and delta of the tile's queries). */
template <int HD>
constexpr size_t dq_smem()
{
    return (size_t)(2 * AQT * HD + 2 * AKT * (HD + 4) + 2 * AQT) * sizeof(float);
}

template <int HD>
__global__ void __launch_bounds__(NT, 2) k_attn_dq_tiled(float *dQ, const float *dO,
                                                      const float *lse, const float *delta,
                                                      const float *Q, const float *K,
                                                      const float *V, attn_dev s)
{
    constexpr int NPL = HD / 32, KLD = HD + 4;
    extern __shared__ float4 smem4[];
    float *Qs = reinterpret_cast<float *>(smem4);
    float *dOs = Qs + AQT * HD, *Ks = dOs + AQT * HD, *Vs = Ks + AKT * KLD;
    float *Ls = Vs + AKT * KLD, *Ds = Ls + AQT;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, group = s.H / s.Hkv;
    const int hd4 = (s.hd + 3) & ~3;
    const size_t qld = (size_t)s.H * s.hd, kld = (size_t)s.Hkv * s.hd;
    const int ntile = (s.Tq + AQT - 1) / AQT;
    const size_t items = (size_t)s.B * s.H * ntile;
    for (size_t it = blockIdx.x; it < items; it += gridDim.x) {
        const int tile = ntile - 1 - (int)(it % ntile);
        const int h = (int)((it / ntile) % s.H);
        const int b = (int)(it / ((size_t)ntile * s.H));
        const int t0 = tile * AQT, nq = min(AQT, s.Tq - t0);
        const int kmin = first_key(s, b, t0), kmax = n_keys(s, b, t0 + nq - 1);
        const attn_row row = attn_row_of(s, b);
        const size_t qoff = ((size_t)b * s.Tq + t0) * qld + (size_t)h * s.hd;
        const float *kg = K + (size_t)b * s.Tk * kld + (size_t)(h / group) * s.hd;
        const float *vg = V + (size_t)b * s.Tk * kld + (size_t)(h / group) * s.hd;
        __syncthreads();
        load_tile<HD>(Qs, HD, Q + qoff, qld, nq, AQT, s.hd);
        load_tile<HD>(dOs, HD, dO + qoff, qld, nq, AQT, s.hd);
        for (int r = threadIdx.x; r < AQT; r += NT) {   /* rows that see nothing: 0 */
            const bool live = r < nq && sees_any(s, b, t0 + r);
            const size_t li = ((size_t)b * s.H + h) * s.Tq + t0 + r;
            Ls[r] = live ? lse[li] : 0.0f;
            Ds[r] = live ? delta[li] : 0.0f;
        }
        const int tw = t0 + warp * QPW;          /* this warp's first query */
        float acc[QPW][NPL];
        acc_zero<NPL>(acc);
        const float *qw = Qs + warp * QPW * HD, *ow = dOs + warp * QPW * HD;
        const float *kr = Ks + lane * KLD, *vr = Vs + lane * KLD;
        for (int j0 = kmin; j0 < kmax; j0 += AKT) {
            const int nj = min(AKT, kmax - j0);
            __syncthreads();
            load_tile<HD>(Ks, KLD, kg + (size_t)j0 * kld, kld, nj, AKT, s.hd);
            load_tile<HD>(Vs, KLD, vg + (size_t)j0 * kld, kld, nj, AKT, s.hd);
            __syncthreads();
            float sc[QPW], dp[QPW];              /* lane j: q . k_j and dO . v_j */
#pragma unroll
            for (int i = 0; i < QPW; i++) { sc[i] = 0.0f; dp[i] = 0.0f; }
#pragma unroll 1
            for (int d = 0; d < hd4; d += 4) {   /* two passes: fewer loads in flight */
                float4 k4 = ld4(kr + d);
#pragma unroll
                for (int i = 0; i < QPW; i++) sc[i] += dot4(ld4(qw + i * HD + d), k4);
            }
#pragma unroll 1
            for (int d = 0; d < hd4; d += 4) {
                float4 v4 = ld4(vr + d);
#pragma unroll
                for (int i = 0; i < QPW; i++) dp[i] += dot4(ld4(ow + i * HD + d), v4);
            }
            const int j = j0 + lane;
#pragma unroll
            for (int i = 0; i < QPW; i++) {      /* sc becomes scale * dS */
                const bool sees = tw + i < s.Tq && row_sees(row, tw + i, j);
                const int r = warp * QPW + i;
                float y = attn_score(s, sc[i]);
                float p = sees ? expf(y - Ls[r]) : 0.0f;
                sc[i] = attn_score_bwd(s, p * (dp[i] - Ds[r]), y) * s.scale;
            }
            acc_rows<NPL>(acc, sc, Ks, KLD, nj, lane);  /* acc += ds_j K_j */
        }
#pragma unroll
        for (int i = 0; i < QPW; i++) {
            const int t = tw + i;
            if (t >= s.Tq) continue;
            float *dq = dQ + ((size_t)b * s.Tq + t) * qld + (size_t)h * s.hd;
#pragma unroll
            for (int k = 0; k < NPL; k++) {
                int d = lane + 32 * k;
                if (d < s.hd) dq[d] = acc[i][k];
            }
        }
    }
}

/* ---- backward: dK, dV ---------------------------------------------------------------------- */
/* The queries of row b that can see a key of [j0, j1): t in [*t_first, *t_end), none when
 * *t_first >= *t_end. Before t_first a query's position is below j0 (causal), or the row's
 * keys end at or before j0 (t_first = Tq); with a window, from t_end on a query's first
 * key is past j1 - 1 (its position p > j1 - 1 + window - 1). */
__device__ __forceinline__ void queries_seeing(const attn_dev &s, int b, int j0, int j1,
                                               int *t_first, int *t_end)
{
    const int p0 = s.q_pos0 ? s.q_pos0[b] : 0, kl = s.k_len ? s.k_len[b] : s.Tk;
    *t_first = kl <= j0 ? s.Tq : max(0, j0 - p0);
    *t_end = s.Tq;
    if (s.window > 0) {
        long long end = (long long)j1 - 1 + s.window - p0;    /* p <= j1 - 1 + window - 1 */
        if (end < *t_end) *t_end = end < 0 ? 0 : (int)end;
    }
}

/* dK_j = scale * sum_{h in group, t sees j} dS_tj Q_t (dS as k_attn_dq_tiled's),
 * dV_j = sum P_tj dO_t.  Shared: Ks, Vs [AKT][HD] (broadcast reads), Qs, dOs [DQT][HD+4]
 * (lane t reads row t; lane d reads column d), Ls, Ds [DQT]. */
template <int HD>
constexpr size_t dkv_smem()
{
    return (size_t)(2 * AKT * HD + 2 * DQT * (HD + 4) + 2 * DQT) * sizeof(float);
}

template <int HD>
__global__ void __launch_bounds__(NT, 2) k_attn_dkv_tiled(float *dK, float *dV, const float *dO,
                                                       const float *lse, const float *delta,
                                                       const float *Q, const float *K,
                                                       const float *V, attn_dev s)
{
    constexpr int NPL = HD / 32, QLD = HD + 4;
    extern __shared__ float4 smem4[];
    float *Ks = reinterpret_cast<float *>(smem4);
    float *Vs = Ks + AKT * HD, *Qs = Vs + AKT * HD, *dOs = Qs + DQT * QLD;
    float *Ls = dOs + DQT * QLD, *Ds = Ls + DQT;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, group = s.H / s.Hkv;
    const int hd4 = (s.hd + 3) & ~3;
    const size_t qld = (size_t)s.H * s.hd, kld = (size_t)s.Hkv * s.hd;
    const int ntile = (s.Tk + AKT - 1) / AKT;
    const size_t items = (size_t)s.B * s.Hkv * ntile;
    for (size_t it = blockIdx.x; it < items; it += gridDim.x) {
        const int tile = (int)(it % ntile);      /* early keys (most queries) first */
        const int kh = (int)((it / ntile) % s.Hkv);
        const int b = (int)(it / ((size_t)ntile * s.Hkv));
        const int j0 = tile * AKT, nj = min(AKT, s.Tk - j0);
        const size_t koff = ((size_t)b * s.Tk + j0) * kld + (size_t)kh * s.hd;
        int t_first, t_end;                      /* the queries that see a key of the tile */
        queries_seeing(s, b, j0, j0 + nj, &t_first, &t_end);
        __syncthreads();
        load_tile<HD>(Ks, HD, K + koff, kld, nj, AKT, s.hd);
        load_tile<HD>(Vs, HD, V + koff, kld, nj, AKT, s.hd);
        float dk[KPW][NPL], dv[KPW][NPL];
#pragma unroll
        for (int c = 0; c < KPW; c++)
#pragma unroll
            for (int k = 0; k < NPL; k++) { dk[c][k] = 0.0f; dv[c][k] = 0.0f; }
        const float *kw = Ks + warp * KPW * HD, *vw = Vs + warp * KPW * HD;
        const float *qr = Qs + lane * QLD, *orow = dOs + lane * QLD;
        for (int h = kh * group; h < (kh + 1) * group; h++)
            for (int tq0 = t_first; tq0 < t_end; tq0 += DQT) {
                const int nt = min(DQT, t_end - tq0);
                const size_t qoff = ((size_t)b * s.Tq + tq0) * qld + (size_t)h * s.hd;
                const size_t loff = ((size_t)b * s.H + h) * s.Tq + tq0;
                __syncthreads();                 /* previous query tile read; Ks, Vs written */
                load_tile<HD>(Qs, QLD, Q + qoff, qld, nt, DQT, s.hd);
                load_tile<HD>(dOs, QLD, dO + qoff, qld, nt, DQT, s.hd);
                if (threadIdx.x < DQT) {
                    int r = threadIdx.x;
                    Ls[r] = r < nt ? lse[loff + r] : 0.0f;
                    Ds[r] = r < nt ? delta[loff + r] : 0.0f;
                }
                __syncthreads();
                const int t = tq0 + lane;        /* this lane's query: keys [loq, nkq) */
                const int loq = lane < nt ? first_key(s, b, t) : 0;
                const int nkq = lane < nt ? n_keys(s, b, t) : 0;
                float sc[KPW], dp[KPW];          /* q_t . k_c and dO_t . v_c */
#pragma unroll
                for (int c = 0; c < KPW; c++) { sc[c] = 0.0f; dp[c] = 0.0f; }
#pragma unroll 1
                for (int d = 0; d < hd4; d += 4) {   /* two passes: fewer loads in flight */
                    float4 q4 = ld4(qr + d);
#pragma unroll
                    for (int c = 0; c < KPW; c++) sc[c] += dot4(q4, ld4(kw + c * HD + d));
                }
#pragma unroll 1
                for (int d = 0; d < hd4; d += 4) {
                    float4 o4 = ld4(orow + d);
#pragma unroll
                    for (int c = 0; c < KPW; c++) dp[c] += dot4(o4, ld4(vw + c * HD + d));
                }
                const float Lt = Ls[lane], Dt = Ds[lane];
#pragma unroll
                for (int c = 0; c < KPW; c++) {  /* sc becomes P, dp becomes scale * dS */
                    int j = j0 + warp * KPW + c;
                    float y = attn_score(s, sc[c]);
                    float p = j >= loq && j < nkq ? expf(y - Lt) : 0.0f;
                    sc[c] = p;
                    dp[c] = attn_score_bwd(s, p * (dp[c] - Dt), y) * s.scale;
                }
                for (int i = 0; i < nt; i++) {   /* dK += ds Q_i, dV += p dO_i, lane per dim */
                    float pi[KPW], dsi[KPW], qv[NPL], ov[NPL];
#pragma unroll
                    for (int c = 0; c < KPW; c++) {
                        pi[c] = __shfl_sync(0xffffffffu, sc[c], i);
                        dsi[c] = __shfl_sync(0xffffffffu, dp[c], i);
                    }
#pragma unroll
                    for (int k = 0; k < NPL; k++) {
                        qv[k] = Qs[i * QLD + lane + 32 * k];
                        ov[k] = dOs[i * QLD + lane + 32 * k];
                    }
#pragma unroll
                    for (int c = 0; c < KPW; c++)
#pragma unroll
                        for (int k = 0; k < NPL; k++) {
                            dk[c][k] += dsi[c] * qv[k];
                            dv[c][k] += pi[c] * ov[k];
                        }
                }
            }
#pragma unroll
        for (int c = 0; c < KPW; c++) {
            const int r = warp * KPW + c;
            if (r >= nj) continue;               /* warp-uniform */
            const size_t off = koff + (size_t)r * kld;
#pragma unroll
            for (int k = 0; k < NPL; k++) {
                int d = lane + 32 * k;
                if (d < s.hd) { dK[off + d] = dk[c][k]; dV[off + d] = dv[c][k]; }
            }
        }
    }
}

/* ---- host side ----------------------------------------------------------------------------- */
/* Largest dynamic shared memory a block may opt into on the current device (cached). */
static size_t smem_optin(void)
{
    static int cached = -1;
    if (cached < 0) {
        int dev = 0, v = 0;
        CK(cudaGetDevice(&dev));
        CK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
        cached = v;
    }
    return (size_t)cached;
}

static int hd_tile(int hd) { return hd <= 32 ? 32 : hd <= 64 ? 64 : 128; }

int mu_cu_attn_tiled_fits(int hd)
{
    if (hd <= 0 || hd > 128) return 0;
    size_t need = hd <= 32 ? dq_smem<32>() : hd <= 64 ? dq_smem<64>() : dq_smem<128>();
    return need <= smem_optin();   /* dQ needs the most of the three */
}

/* Launches kernel on a grid for `items` work items with `smem` bytes of dynamic shared
 * memory; the opt-in above 48 KB is made once per kernel (`ready`). */
template <typename Kernel, typename... Args>
static void launch(Kernel kernel, int *ready, size_t smem, size_t items, Args... args)
{
    if (items == 0) return;
    if (!*ready) {
        CK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)smem));
        *ready = 1;
    }
    unsigned grid = items < MAX_ITEMS ? (unsigned)items : MAX_ITEMS;
    kernel<<<grid, NT, smem>>>(args...);
    KCHECK();
}

template <int HD>
static void fwd_launch(float *O, float *lse, const float *Q, const float *K, const float *V,
                       const attn_dev &a)
{
    static int ready;
    size_t items = (size_t)a.B * a.H * ((a.Tq + AQT - 1) / AQT);
    launch(k_attn_fwd_tiled<HD>, &ready, fwd_smem<HD>(), items, O, lse, Q, K, V, a);
}

template <int HD>
static void bwd_launch(float *dQ, float *dK, float *dV, const float *dO, const float *lse,
                       const float *delta, const float *Q, const float *K, const float *V,
                       const attn_dev &a)
{
    static int ready_dq, ready_dkv;
    size_t qitems = (size_t)a.B * a.H * ((a.Tq + AQT - 1) / AQT);
    size_t kitems = (size_t)a.B * a.Hkv * ((a.Tk + AKT - 1) / AKT);
    launch(k_attn_dq_tiled<HD>, &ready_dq, dq_smem<HD>(), qitems, dQ, dO, lse, delta, Q, K, V,
           a);
    launch(k_attn_dkv_tiled<HD>, &ready_dkv, dkv_smem<HD>(), kitems, dK, dV, dO, lse, delta,
           Q, K, V, a);
}

void mu_cu_attention_tiled(float *O, float *lse, const float *Q, const float *K,
                           const float *V, const attn_dev &a)
{
    switch (hd_tile(a.hd)) {
    case 32: fwd_launch<32>(O, lse, Q, K, V, a); break;
    case 64: fwd_launch<64>(O, lse, Q, K, V, a); break;
    default: fwd_launch<128>(O, lse, Q, K, V, a); break;
    }
}

void mu_cu_attention_bwd_tiled(float *dQ, float *dK, float *dV, const float *dO,
                               const float *lse, const float *delta, const float *Q,
                               const float *K, const float *V, const attn_dev &a)
{
    switch (hd_tile(a.hd)) {
    case 32: bwd_launch<32>(dQ, dK, dV, dO, lse, delta, Q, K, V, a); break;
    case 64: bwd_launch<64>(dQ, dK, dV, dO, lse, delta, Q, K, V, a); break;
    default: bwd_launch<128>(dQ, dK, dV, dO, lse, delta, Q, K, V, a); break;
    }
}
