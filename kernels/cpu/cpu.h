/* cpu.h — the CPU backend's op functions (the files of kernels/cpu), gathered into the
 * mu_backend table by cpu_backend.c. Semantics and shapes: kernels.h. */
#ifndef MU_CPU_H
#define MU_CPU_H
#include "kernels.h"

#define PAR_MIN 131072  /* elements below which a loop stays serial */

void cpu_matmul(float *Y, const float *X, const float *W, int N, int K, int M, int accumulate);
void cpu_matmul_bwd(float *dX, float *dW, const float *dY, const float *X, const float *W,
                    int N, int K, int M, int accumulate_dx);
void cpu_matmul_wt(float *Y, const float *X, const float *W, int N, int K, int M,
                   int accumulate);
void cpu_matmul_wt_bwd(float *dX, float *dW, const float *dY, const float *X, const float *W,
                       int N, int K, int M, int accumulate_dx);
void cpu_bias_add(float *Y, const float *b, int N, int M);
void cpu_bias_add_bwd(float *db, const float *dY, int N, int M);
void cpu_embed(float *Y, const float *E, const int32_t *ids, int N, int D);
void cpu_embed_bwd(float *dE, const float *dY, const int32_t *ids, int N, int D);
void cpu_rmsnorm(float *Y, float *rstd, const float *X, const float *w, int N, int D, float eps);
void cpu_rmsnorm_bwd(float *dX, float *dw, const float *dY, const float *X, const float *w,
                     const float *rstd, int N, int D);
void cpu_layernorm(float *Y, float *mean, float *rstd, const float *X, const float *w,
                   const float *b, int N, int D, float eps);
void cpu_layernorm_bwd(float *dX, float *dw, float *db, const float *dY, const float *X,
                       const float *w, const float *mean, const float *rstd, int N, int D);
void cpu_copy_rows(float *dst, int dst_ld, const float *src, int src_ld, int rows, int width);
void cpu_rope(float *X, const int32_t *pos, const float *inv_freq, int N, int H, int hd);
void cpu_rope_bwd(float *dX, const int32_t *pos, const float *inv_freq, int N, int H, int hd);
void cpu_attention(float *O, float *lse, const float *Q, const float *K, const float *V,
                   const mu_attn_shape *s);
void cpu_attention_bwd(float *dQ, float *dK, float *dV, const float *dO, const float *O,
                       const float *lse, const float *Q, const float *K, const float *V,
                       const mu_attn_shape *s);
void cpu_swiglu(float *A, const float *G, const float *U, size_t n);
void cpu_geglu(float *A, const float *G, const float *U, size_t n, int tanh_form);
void cpu_geglu_bwd(float *dG, float *dU, const float *dA, const float *G, const float *U,
                   size_t n, int tanh_form);
void cpu_gelu(float *A, const float *X, size_t n, int tanh_form);
void cpu_gelu_bwd(float *dX, const float *dA, const float *X, size_t n, int tanh_form);
void cpu_softcap(float *X, size_t n, float cap);
void cpu_softcap_bwd(float *dX, const float *Y, size_t n, float cap);
void cpu_swiglu_bwd(float *dG, float *dU, const float *dA, const float *G, const float *U,
                    size_t n);
void cpu_add(float *Y, const float *X, size_t n);
void cpu_scale(float *Y, float alpha, size_t n);
void cpu_log_softmax(float *Y, const float *X, int N, int V);
void cpu_cross_entropy(float *loss, float *dlogits, const float *logits, const int32_t *targets,
                       int N, int V, float dscale);
void cpu_target_logprob(double *logp, const float *logits, const int32_t *targets, int N, int V);
void cpu_logp_grad(float *dlogits, const float *logits, const int32_t *targets, const double *a,
                   int N, int V);
/* cpu_bf16.c */
void cpu_to_bf16(uint16_t *dst, const float *src, size_t n);
void cpu_matmul_bf16(float *Y, const float *X, const uint16_t *W, int N, int K, int M,
                     int accumulate);
void cpu_matmul_bf16_bwd(float *dX, float *dW, const float *dY, const float *X,
                         const uint16_t *W, int N, int K, int M, int accumulate_dx);
void cpu_matmul_wt_bf16(float *Y, const float *X, const uint16_t *W, int N, int K, int M,
                        int accumulate);
void cpu_matmul_wt_bf16_bwd(float *dX, float *dW, const float *dY, const float *X,
                            const uint16_t *W, int N, int K, int M, int accumulate_dx);
void cpu_embed_bf16(float *Y, const uint16_t *E, const int32_t *ids, int N, int D);
/* cpu_optim.c */
double cpu_elems_sumsq(const float *g, const mu_elems *e);
void cpu_elems_scale(float *g, float s, const mu_elems *e);
void cpu_adamw_step(float *w, const float *g, float *m, float *v, const mu_elems *e,
                    const mu_adamw_args *a);
void cpu_sgd_step(float *w, const float *g, float *buf, const mu_elems *e, const mu_sgd_args *a);
void cpu_elems_gather(float *packed, const float *w, const mu_elems *e);
void cpu_elems_scatter(float *w, const float *packed, const mu_elems *e);
void cpu_elems_gather_add(float *packed, const float *g, const mu_elems *e);
void cpu_elems_scatter_bf16(uint16_t *w16, const float *packed, const mu_elems *e);
void cpu_wmask_forward(float *w, float *m, const float *w0, int64_t n);
void cpu_wmask_backward(float *gm, const float *g, const float *w0, float lam, int64_t n);
double cpu_wmask_cut(const float *m, int64_t n);
#endif
