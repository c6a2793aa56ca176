/* kernels.h — the compute backend interface of mu: a struct of function pointers.
 *
 * The model code (lib/model.c) calls ONLY these functions, so the same model runs on
 * every backend: kernels/cpu (f32, OpenBLAS sgemm, OpenMP loops) and kernels/cuda.
 *
 * Conventions (every backend):
 *  - Buffers ("device pointers") come from be->alloc and hold f32 unless said otherwise.
 *    On the CPU backend they are plain host memory (be->host_memory == 1).
 *  - Integer arrays (token ids, targets, positions, lengths) are ALWAYS host pointers;
 *    a device backend copies them itself. They are small ([N] or [B]).
 *  - Tensors are row-major; shapes are written [rows, cols] with the innermost last.
 *    N = number of token rows (B*T), D = width, V = vocab, H = heads, hd = head dim.
 *  - Backward functions: parameter gradients (dW, db, dw, dE) are always ACCUMULATED
 *    (+=) and skipped when the pointer is NULL (frozen tensor). Whether an input gradient
 *    is overwritten or accumulated is stated per function.
 *  - Calls are ordered (stream semantics); be->sync waits for completion. download
 *    synchronizes implicitly.
 *  - Call a backend from one thread at a time, outside OpenMP parallel regions: the CPU
 *    ops parallelize internally (and run small GEMMs single-threaded by adjusting
 *    OpenBLAS's thread count for the call).
 */
#ifndef MU_KERNELS_H
#define MU_KERNELS_H
#include <stddef.h>
#include <stdint.h>

/* Shape of one attention call. Q and O are [B, Tq, H, hd]; K and V are [B, Tk, Hkv, hd]
 * where Tk is the key CAPACITY per row (the K/V buffers' row stride is Tk*Hkv*hd).
 * Query t of row b sits at absolute position p = q_pos0[b] + t and attends keys j with
 * j <= p and j < k_len[b] (causal + key padding). Head h reads kv head h / (H / Hkv)
 * (grouped-query attention). scale is usually 1/sqrt(hd).
 *  Training / plain forward: q_pos0 = NULL (all 0), k_len = row lengths, Tq == Tk == T.
 *  KV-cache decode: K/V are the cache [B, Tmax, Hkv, hd], q_pos0[b] = tokens already in
 *  the cache for row b, k_len[b] = q_pos0[b] + new tokens of row b.
 * Queries past a row's length (padding) produce finite, meaningless outputs.
 * Sliding window (window > 0; Mistral, Gemma-2's even layers): query p also needs
 * j > p - window (keys [max(0, p - window + 1), p]), as transformers' masks.
 * Soft-capping (softcap > 0; Gemma-2): a score x = scale q.k becomes softcap tanh(x /
 * softcap) before the mask and the softmax; 0: scores as they are. */
typedef struct {
    int B, Tq, Tk;
    int H, Hkv, hd;
    const int32_t *q_pos0;  /* host [B] or NULL (= 0) */
    const int32_t *k_len;   /* host [B] or NULL (= Tk) */
    float scale;
    float softcap;          /* 0: none */
    int window;             /* 0: none */
} mu_attn_shape;

/* The trained elements of one tensor of numel f32 (lib/optim.h's index sets, in backend
 * memory): all of them (dense: entry j is element j), or a sorted list kept in chunks of
 * 2^16 elements: entry j of chunk c (chunk_start[c] <= j < chunk_start[c+1]) is the flat
 * element (c << 16) | off[j]. Per-entry state (moments) is indexed by the entry j, the
 * tensor and its gradient by the flat index — or, when packed is set (a list whose tensor
 * and gradient are kept as [n] arrays of the trained elements only, lib/model.h), by the
 * entry j too; the list then only orders the sum of squares (by chunk, as unpacked), so a
 * packed tensor trains to the same bits as the same set in a whole one. */
#define MU_ELEMS_CHUNK_BITS 16
typedef struct {
    int64_t numel;                /* elements of the tensor */
    int64_t n;                    /* entries (trained elements) */
    int dense;                    /* 1: every element; chunk_start/off unused (may be NULL) */
    int packed;                   /* 1: the optimizer ops index w and g by entry (list sets) */
    int64_t nchunks;              /* ceil(numel / 2^16) */
    const int64_t *chunk_start;   /* backend [nchunks+1] */
    const uint16_t *off;          /* backend [n] */
} mu_elems;

/* One AdamW update (torch.optim.AdamW), scalars already rounded to f32 by the caller:
 *   w' = decay_on ? w * decay : w;   m += omb1 * (g - m);   v = v * b2 + omb2 * (g * g);
 *   w  = w' - step_size * (m / (sqrt(v) / bc2_sqrt + eps))
 * each operation rounded to f32 in this order (no fused multiply-add). */
typedef struct {
    float omb1, b2, omb2, eps;    /* 1-beta1, beta2, 1-beta2, eps */
    float decay;                  /* 1 - lr*weight_decay */
    int decay_on;                 /* weight_decay != 0 */
    float step_size;              /* lr / (1 - beta1^t) */
    float bc2_sqrt;               /* sqrt(1 - beta2^t) */
} mu_adamw_args;

/* One SGD update (torch.optim.SGD):  d = g (+ wd * w when wd != 0);
 * with a momentum buffer: buf = first ? d : buf * momentum + d, d = buf;  w -= lr * d. */
typedef struct {
    float lr, wd, momentum;
    int first;                    /* 1 on the first update (the buffer starts as d) */
} mu_sgd_args;

typedef struct mu_backend mu_backend;
struct mu_backend {
    const char *name;       /* "cpu", "cuda" */
    int host_memory;        /* 1: buffers are host memory, hooks may use them in place */

    /* ---- memory ---------------------------------------------------------------- */
    void *(*alloc)(size_t nbytes);                 /* zero-filled; NULL on failure */
    void (*free)(void *p);                         /* NULL ok */
    void (*upload)(void *dst, const void *host_src, size_t nbytes);
    void (*download)(void *host_dst, const void *src, size_t nbytes);
    void (*zero)(void *p, size_t nbytes);
    void (*copy)(void *dst, const void *src, size_t nbytes);   /* buffer to buffer */
    void (*sync)(void);
    /* One line on stderr with the device memory in use ("mu: cuda: WHEN: U MiB used,
     * ..."); NULL on backends with host memory. */
    void (*mem_report)(const char *when);

    /* ---- linear ---------------------------------------------------------------- */
    /* Y[N,M] = X[N,K] · W[M,K]^T            (accumulate: Y += X · W^T)
     * W is a PyTorch Linear weight [out=M, in=K]. */
    void (*matmul)(float *Y, const float *X, const float *W, int N, int K, int M,
                   int accumulate);
    /* dX[N,K] = dY[N,M] · W[M,K]            (accumulate_dx: dX +=; dX NULL: skipped)
     * dW[M,K] += dY[N,M]^T · X[N,K]          (dW NULL: skipped — frozen weight)   */
    void (*matmul_bwd)(float *dX, float *dW, const float *dY, const float *X,
                       const float *W, int N, int K, int M, int accumulate_dx);
    /* The same with W stored transposed, [in=K, out=M] (GPT-2's Conv1D weights, kept as
     * stored so masks and deltas index them as the checkpoint does):
     * Y[N,M] = X[N,K] · W[K,M]               (accumulate: Y += X · W)
     * dX[N,K] = dY[N,M] · W[K,M]^T           (accumulate_dx: dX +=; dX NULL: skipped)
     * dW[K,M] += X[N,K]^T · dY[N,M]           (dW NULL: skipped) */
    void (*matmul_wt)(float *Y, const float *X, const float *W, int N, int K, int M,
                      int accumulate);
    void (*matmul_wt_bwd)(float *dX, float *dW, const float *dY, const float *X,
                          const float *W, int N, int K, int M, int accumulate_dx);
    /* Y[N,M] += b[M] */
    void (*bias_add)(float *Y, const float *b, int N, int M);
    /* db[M] += sum_n dY[n,M] */
    void (*bias_add_bwd)(float *db, const float *dY, int N, int M);

    /* ---- embedding ------------------------------------------------------------- */
    /* Y[N,D] = E[ids[n], :]    ids host [N], each in [0, V) (the caller checks) */
    void (*embed)(float *Y, const float *E, const int32_t *ids, int N, int D);
    /* dE[ids[n], :] += dY[n, :]   (scatter-add; repeated ids accumulate) */
    void (*embed_bwd)(float *dE, const float *dY, const int32_t *ids, int N, int D);

    /* ---- RMSNorm (Llama: y = x / sqrt(mean(x^2) + eps) * w) ---------------------- */
    /* Y[N,D], rstd[N] = 1/sqrt(mean_d X^2 + eps) (saved for backward; may be NULL) */
    void (*rmsnorm)(float *Y, float *rstd, const float *X, const float *w, int N, int D,
                    float eps);
    /* dX[N,D] += dX contribution (ACCUMULATES: it feeds the residual stream gradient)
     * dw[D]   += sum_n dY * X * rstd           (dw NULL: skipped) */
    void (*rmsnorm_bwd)(float *dX, float *dw, const float *dY, const float *X,
                        const float *w, const float *rstd, int N, int D);

    /* ---- LayerNorm (GPT-NeoX: y = (x - mean(x)) / sqrt(var(x) + eps) * w + b) ------ */
    /* Y[N,D]; mean[N], rstd[N] = 1/sqrt(mean_d (X - mean)^2 + eps) (the biased variance, as
     * torch.nn.LayerNorm), saved for backward (both may be NULL). b may be NULL (no bias). */
    void (*layernorm)(float *Y, float *mean, float *rstd, const float *X, const float *w,
                      const float *b, int N, int D, float eps);
    /* dX[N,D] += dX contribution (ACCUMULATES, as rmsnorm_bwd):
     *   xhat = (X - mean) rstd, g = dY w,  dX += rstd (g - mean_d(g) - xhat mean_d(g xhat))
     * dw[D] += sum_n dY xhat  (NULL: skipped);  db[D] += sum_n dY  (NULL: skipped) */
    void (*layernorm_bwd)(float *dX, float *dw, float *db, const float *dY, const float *X,
                          const float *w, const float *mean, const float *rstd, int N, int D);

    /* ---- strided row copy (fused q/k/v split and join, partial rotary) -------------- */
    /* dst[r*dst_ld + c] = src[r*src_ld + c] for r < rows, c < width (dst and src do not
     * overlap). Its own backward: the same copy from the gradient of dst into that of src. */
    void (*copy_rows)(float *dst, int dst_ld, const float *src, int src_ld, int rows,
                      int width);

    /* ---- rotary position embedding (HF rotate_half layout) ----------------------- */
    /* In place on X[N, H, hd]: for i < hd/2, with a = pos[n] * inv_freq[i]:
     *   x1 = X[..i], x2 = X[..i+hd/2];  X[..i] = x1 cos a - x2 sin a;
     *   X[..i+hd/2] = x2 cos a + x1 sin a.
     * pos host [N]; inv_freq host [hd/2] (already includes llama3/linear scaling). */
    void (*rope)(float *X, const int32_t *pos, const float *inv_freq, int N, int H, int hd);
    /* In place on dX[N, H, hd]: the transpose (rotation by -a). */
    void (*rope_bwd)(float *dX, const int32_t *pos, const float *inv_freq, int N, int H,
                     int hd);

    /* ---- causal GQA attention with key padding (see mu_attn_shape) ---------------- */
    /* O[B,Tq,H,hd] = softmax(scale Q K^T + mask) V;  lse[B,H,Tq] = log-sum-exp of the
     * scaled, masked scores (saved for backward; may be NULL). Never materializes
     * [B,H,Tq,Tk]: blocks per (b, h, query tile). */
    void (*attention)(float *O, float *lse, const float *Q, const float *K, const float *V,
                      const mu_attn_shape *s);
    /* dQ[B,Tq,H,hd], dK, dV [B,Tk,Hkv,hd]: OVERWRITTEN (dK/dV zero where no query
     * attends). Recomputes probabilities from Q, K and lse. */
    void (*attention_bwd)(float *dQ, float *dK, float *dV, const float *dO, const float *O,
                          const float *lse, const float *Q, const float *K, const float *V,
                          const mu_attn_shape *s);

    /* ---- SwiGLU MLP activation ---------------------------------------------------- */
    /* A[n] = silu(G[n]) * U[n],  silu(g) = g / (1 + exp(-g)); n elements */
    void (*swiglu)(float *A, const float *G, const float *U, size_t n);
    /* dG, dU OVERWRITTEN: dG = dA * U * silu'(G), dU = dA * silu(G) */
    void (*swiglu_bwd)(float *dG, float *dU, const float *dA, const float *G,
                       const float *U, size_t n);

    /* ---- GeGLU MLP activation (Gemma) ---------------------------------------------- */
    /* A[n] = gelu(G[n]) * U[n]; tanh_form 1: gelu(g) = g/2 (1 + tanh(sqrt(2/pi) (g +
     * 0.044715 g^3))) (PyTorch's gelu(approximate='tanh'), HF "gelu_pytorch_tanh"), 0: the
     * exact g/2 (1 + erf(g / sqrt 2)) (HF "gelu") */
    void (*geglu)(float *A, const float *G, const float *U, size_t n, int tanh_form);
    /* dG, dU OVERWRITTEN: dG = dA * U * gelu'(G), dU = dA * gelu(G) */
    void (*geglu_bwd)(float *dG, float *dU, const float *dA, const float *G,
                      const float *U, size_t n, int tanh_form);

    /* ---- plain GELU MLP activation (GPT-NeoX: down(gelu(up x))) --------------------- */
    /* A[n] = gelu(X[n]), the two forms as geglu's (tanh_form) */
    void (*gelu)(float *A, const float *X, size_t n, int tanh_form);
    /* dX OVERWRITTEN: dX = dA * gelu'(X) */
    void (*gelu_bwd)(float *dX, const float *dA, const float *X, size_t n, int tanh_form);

    /* ---- logit soft-capping (Gemma-2's final logits) ------------------------------- */
    /* X[n] = cap tanh(X[n] / cap), in place */
    void (*softcap)(float *X, size_t n, float cap);
    /* dX[n] *= 1 - (Y[n] / cap)^2, in place: the backward through Y = softcap(X) */
    void (*softcap_bwd)(float *dX, const float *Y, size_t n, float cap);

    /* ---- elementwise -------------------------------------------------------------- */
    /* Y[n] += X[n]  (residual add; also its backward: the gradient passes through) */
    void (*add)(float *Y, const float *X, size_t n);
    /* Y[n] *= alpha */
    void (*scale)(float *Y, float alpha, size_t n);

    /* ---- losses ------------------------------------------------------------------- */
    /* Y[N,V] = log_softmax(X[N,V]) row-wise (Y may equal X) */
    void (*log_softmax)(float *Y, const float *X, int N, int V);
    /* Cross-entropy per row: loss[n] = -log softmax(logits[n])[targets[n]] (host [N]
     * output, 0 where targets[n] < 0 = ignored). If dlogits != NULL it is OVERWRITTEN:
     * dlogits[n,:] = dscale * (softmax(logits[n]) - onehot(targets[n])), 0 for ignored
     * rows. (dscale = 1/count for a mean loss.) targets host [N]. */
    void (*cross_entropy)(float *loss, float *dlogits, const float *logits,
                          const int32_t *targets, int N, int V, float dscale);
    /* Log-probability of each row's target, in double (host [N] output; 0 where targets[n] is
     * outside [0, V)):  logp[n] = (double)z[y] - (mx + log(acc)),  z = logits[n,:],
     * mx = max_j z_j (f32), acc = sum_j exp((double)z_j - mx) (double). targets host [N]. */
    void (*target_logprob)(double *logp, const float *logits, const int32_t *targets, int N,
                           int V);
    /* dlogits[n,:] += a[n] * (onehot(targets[n]) - softmax(logits[n,:]))  — the gradient of
     * sum_n a[n] * logp[n]. ACCUMULATES. Per element: d[j] -= (float)(a * exp((double)z_j - lse)),
     * then d[y] += (float)a, with lse = mx + log(acc) as in target_logprob. Rows with targets[n]
     * outside [0, V) or a[n] == 0 are untouched. a, targets host [N]. */
    void (*logp_grad)(float *dlogits, const float *logits, const int32_t *targets,
                      const double *a, int N, int V);

    /* ---- bf16 weights (mixed precision: --dtype bf16) ------------------------------
     * A bf16 buffer holds uint16 values: the upper half of the f32 bit pattern, rounded
     * to nearest even (NaN stays NaN; its payload bits may differ between backends).
     * Weights stored in bf16 are read by the GEMMs and the embedding; activations stay
     * f32 between ops; each GEMM rounds its f32 operands (X, dY) to bf16 and accumulates
     * products in f32 (bf16 x bf16 products are exact in f32), so backends differ only
     * by summation order. Trained weights keep an f32 master copy (the optimizer updates
     * it; to_bf16 refreshes the bf16 copy; packed ones: elems_scatter_bf16). */
    /* dst[n] = bf16(src[n]) */
    void (*to_bf16)(uint16_t *dst, const float *src, size_t n);
    /* Y[N,M] = bf16(X)[N,K] . W[M,K]^T  (accumulate: Y +=), W bf16, f32 accumulation */
    void (*matmul_bf16)(float *Y, const float *X, const uint16_t *W, int N, int K, int M,
                        int accumulate);
    /* dX[N,K] = bf16(dY)[N,M] . W[M,K]         (accumulate_dx: dX +=; dX NULL: skipped)
     * dW[M,K] += bf16(dY)^T . bf16(X)  (f32 gradient of the f32 master; NULL: skipped) */
    void (*matmul_bf16_bwd)(float *dX, float *dW, const float *dY, const float *X,
                            const uint16_t *W, int N, int K, int M, int accumulate_dx);
    /* matmul_wt's bf16 forms: W bf16 [K, M]; operands rounded as matmul_bf16's */
    void (*matmul_wt_bf16)(float *Y, const float *X, const uint16_t *W, int N, int K, int M,
                           int accumulate);
    void (*matmul_wt_bf16_bwd)(float *dX, float *dW, const float *dY, const float *X,
                               const uint16_t *W, int N, int K, int M, int accumulate_dx);
    /* Y[N,D] = f32(E[ids[n], :])   E bf16 [V, D], ids host [N] */
    void (*embed_bf16)(float *Y, const uint16_t *E, const int32_t *ids, int N, int D);

    /* ---- optimizer over the trained elements of one tensor (mu_elems) --------------
     * All pointers are backend buffers: w, g [numel] ([n] when e->packed, for the four
     * update ops); m, v, buf, packed [n]. gather/scatter ops ignore e->packed. Each entry
     * is written by exactly one thread, so results do not depend on the thread count. */
    /* sum over entries of (double)g^2, in a fixed order: one double partial per chunk of
     * 2^16 elements (dense: elements [c*2^16, (c+1)*2^16)), partials added in chunk
     * order. Waits for the result. */
    double (*elems_sumsq)(const float *g, const mu_elems *e);
    /* g[flat] *= s for every entry */
    void (*elems_scale)(float *g, float s, const mu_elems *e);
    /* AdamW (mu_adamw_args) on every entry: reads g, updates w, m, v */
    void (*adamw_step)(float *w, const float *g, float *m, float *v, const mu_elems *e,
                       const mu_adamw_args *a);
    /* SGD (mu_sgd_args) on every entry; buf NULL: no momentum */
    void (*sgd_step)(float *w, const float *g, float *buf, const mu_elems *e,
                     const mu_sgd_args *a);
    /* packed[j] = w[flat(j)]  (gather the trained elements) */
    void (*elems_gather)(float *packed, const float *w, const mu_elems *e);
    /* w[flat(j)] = packed[j]  (scatter them back; other elements untouched) */
    void (*elems_scatter)(float *w, const float *packed, const mu_elems *e);
    /* packed[j] += g[flat(j)]  (a whole tensor's gradient into a packed one) */
    void (*elems_gather_add)(float *packed, const float *g, const mu_elems *e);
    /* w16[flat(j)] = bf16(packed[j])  (packed f32 masters into a bf16 weight) */
    void (*elems_scatter_bf16)(uint16_t *w16, const float *packed, const mu_elems *e);

    /* ---- weight masking (mu-train --weight-mask: Guo et al.'s learned weight masks) ---
     * The n trained elements of a tensor (entry order: [n] arrays, like a packed tensor's
     * master and gradient) are w = w0 * m, the mask m in [0, 1] trained in their place
     * (from 1) under the penalty lambda * sum(1 - m) over every masked element.
     * forward:  m[j] = min(max(m[j], 0), 1), a NaN kept (in place: the projection after an update);
     *           w[j] = w0[j] * m[j]
     * backward: gm[j] = g[j] * w0[j] - lam   (g = dL/dw; lam = lambda, the penalty's slope)
     * one f32 operation each, in this order: the backends agree bit for bit. */
    void (*wmask_forward)(float *w, float *m, const float *w0, int64_t n);
    void (*wmask_backward)(float *gm, const float *g, const float *w0, float lam, int64_t n);
    /* The cut sum_j (1 - (double)m[j]) of a mask [n] (the penalty is lambda times it), in a
     * fixed order: one double partial per 2^16 entries, partials added in order (backends
     * agree to rounding within a partial; NaN when an m is). Waits for the result: the
     * per-step loss reads it without moving the mask off the device. */
    double (*wmask_cut)(const float *m, int64_t n);
};

/* The CPU backend (always available). */
const mu_backend *mu_backend_cpu(void);
#ifdef MU_HAVE_CUDA
/* The CUDA backend, or NULL with no usable device (kernels/cuda). */
const mu_backend *mu_backend_cuda(void);
#endif
/* "cpu", "cuda", or "auto" (cuda if available, else cpu). NULL + err when unknown or
 * unavailable ("cuda: not built with CUDA" / "cuda: no device"). */
const mu_backend *mu_backend_by_name(const char *name, char *err, size_t errlen);
#endif
