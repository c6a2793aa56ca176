/* cpu_backend.c — the CPU backend: host memory, the op table, and the backend registry
 * (mu_backend_by_name). */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include "cpu.h"

/* Buffers are 64-byte aligned (AVX-512 friendly) and zero-filled. */
static void *cpu_alloc(size_t nbytes)
{
    if (nbytes == 0) nbytes = 1;
    size_t rounded = (nbytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, rounded);
    if (p) memset(p, 0, rounded);
    return p;
}

static void cpu_free(void *p) { free(p); }
static void cpu_memcpy(void *dst, const void *src, size_t nbytes)
{
    if (nbytes && dst != src) memcpy(dst, src, nbytes);
}
static void cpu_zero(void *p, size_t nbytes) { if (nbytes) memset(p, 0, nbytes); }
static void cpu_sync(void) {}

static const mu_backend cpu_backend = {
    .name = "cpu",
    .host_memory = 1,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_memcpy,
    .download = cpu_memcpy,
    .zero = cpu_zero,
    .copy = cpu_memcpy,
    .sync = cpu_sync,
    .matmul = cpu_matmul,
    .matmul_bwd = cpu_matmul_bwd,
    .matmul_wt = cpu_matmul_wt,
    .matmul_wt_bwd = cpu_matmul_wt_bwd,
    .bias_add = cpu_bias_add,
    .bias_add_bwd = cpu_bias_add_bwd,
    .embed = cpu_embed,
    .embed_bwd = cpu_embed_bwd,
    .rmsnorm = cpu_rmsnorm,
    .rmsnorm_bwd = cpu_rmsnorm_bwd,
    .layernorm = cpu_layernorm,
    .layernorm_bwd = cpu_layernorm_bwd,
    .copy_rows = cpu_copy_rows,
    .rope = cpu_rope,
    .rope_bwd = cpu_rope_bwd,
    .attention = cpu_attention,
    .attention_bwd = cpu_attention_bwd,
    .swiglu = cpu_swiglu,
    .swiglu_bwd = cpu_swiglu_bwd,
    .geglu = cpu_geglu,
    .geglu_bwd = cpu_geglu_bwd,
    .gelu = cpu_gelu,
    .gelu_bwd = cpu_gelu_bwd,
    .softcap = cpu_softcap,
    .softcap_bwd = cpu_softcap_bwd,
    .add = cpu_add,
    .scale = cpu_scale,
    .log_softmax = cpu_log_softmax,
    .cross_entropy = cpu_cross_entropy,
    .target_logprob = cpu_target_logprob,
    .logp_grad = cpu_logp_grad,
    .to_bf16 = cpu_to_bf16,
    .matmul_bf16 = cpu_matmul_bf16,
    .matmul_bf16_bwd = cpu_matmul_bf16_bwd,
    .matmul_wt_bf16 = cpu_matmul_wt_bf16,
    .matmul_wt_bf16_bwd = cpu_matmul_wt_bf16_bwd,
    .embed_bf16 = cpu_embed_bf16,
    .elems_sumsq = cpu_elems_sumsq,
    .elems_scale = cpu_elems_scale,
    .adamw_step = cpu_adamw_step,
    .sgd_step = cpu_sgd_step,
    .elems_gather = cpu_elems_gather,
    .elems_scatter = cpu_elems_scatter,
    .elems_gather_add = cpu_elems_gather_add,
    .elems_scatter_bf16 = cpu_elems_scatter_bf16,
    .wmask_forward = cpu_wmask_forward,
    .wmask_backward = cpu_wmask_backward,
    .wmask_cut = cpu_wmask_cut,
};

const mu_backend *mu_backend_cpu(void) { return &cpu_backend; }

const mu_backend *mu_backend_by_name(const char *name, char *err, size_t errlen)
{
    if (!name || !strcmp(name, "cpu")) return &cpu_backend;
    if (!strcmp(name, "cuda") || !strcmp(name, "auto")) {
#ifdef MU_HAVE_CUDA
        const mu_backend *be = mu_backend_cuda();
        if (be) return be;
        if (!strcmp(name, "auto")) return &cpu_backend;
        snprintf(err, errlen, "cuda: no device");
        return NULL;
#else
        if (!strcmp(name, "auto")) return &cpu_backend;
        snprintf(err, errlen, "cuda: not built with CUDA");
        return NULL;
#endif
    }
    snprintf(err, errlen, "unknown device '%s' (expected cpu, cuda or auto)", name);
    return NULL;
}
