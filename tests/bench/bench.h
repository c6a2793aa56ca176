/* bench.h — what the benchmarks share: the model shapes they time, the FLOP count
 * their GFLOP/s and MFU figures use, and the PyTorch reference run. Header-only
 * (each C file under tests/bench is its own program). Time with mu_now() (cli.h). */
#ifndef MU_BENCH_H
#define MU_BENCH_H
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <cblas.h>
#include "cli.h"
#include "config.h"
#include "rng.h"

/* GFLOP/s of a large square sgemm (n = 3000: a power-of-two stride would alias in the
 * caches and understate it), best of 4 runs: the ceiling the model's GEMMs can reach. */
static inline double bench_sgemm_ceiling(void)
{
    const int n = 3000;
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n);
    float *c = malloc(sizeof(float) * n * n);
    for (size_t i = 0; i < (size_t)n * n; i++) { a[i] = (float)(i % 7) * 0.1f; b[i] = (float)(i % 5) * 0.1f; }
    double best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        double t = mu_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        t = mu_now() - t;
        if (rep && t < best) best = t;          /* first run warms up */
    }
    free(a); free(b); free(c);
    return 2.0 * n * n * n / best / 1e9;
}

/* SmolLM2-135M: 30 layers, width 576, 9 heads / 3 kv heads of 64, MLP 1536, vocab 49152, tied. */
static inline void bench_shape_smollm2(mu_config *c)
{
    mu_config_init(c);
    c->n_layer = 30; c->d_model = 576; c->n_head = 9; c->n_kv_head = 3; c->head_dim = 64;
    c->d_ff = 1536; c->vocab = 49152; c->max_pos = 2048; c->rms_eps = 1e-5f;
    c->rope_theta = 100000; c->tie_embeddings = 1;
}

/* Llama-3-8B with `layers` of its 32 layers (f32 weights + gradients of all 32 do not fit
 * one 80 GB GPU). */
static inline void bench_shape_llama3_8b(mu_config *c, int layers)
{
    mu_config_init(c);
    c->n_layer = layers; c->d_model = 4096; c->n_head = 32; c->n_kv_head = 8; c->head_dim = 128;
    c->d_ff = 14336; c->vocab = 128256; c->max_pos = 8192; c->rms_eps = 1e-5f;
    c->rope_theta = 500000; c->tie_embeddings = 0;
}

/* A tiny Llama (2 layers of width 64, 4 heads / 2 kv of 16, MLP 128, vocab 512, untied)
 * that runs anywhere in a second: MU_BENCH_CPU_SMOKE=1 of bench_cuda. */
static inline void bench_shape_tiny(mu_config *c)
{
    mu_config_init(c);
    c->n_layer = 2; c->d_model = 64; c->n_head = 4; c->n_kv_head = 2; c->head_dim = 16;
    c->d_ff = 128; c->vocab = 512; c->max_pos = 1024; c->rms_eps = 1e-5f;
    c->rope_theta = 10000; c->tie_embeddings = 0;
}

/* Parameters of a config (no biases): embeddings (+ lm_head when untied), per layer the
 * q/k/v/o and gate/up/down matrices and two norms, the final norm. */
static inline double bench_param_count(const mu_config *c)
{
    double D = c->d_model, qd = (double)c->n_head * c->head_dim;
    double kd = (double)c->n_kv_head * c->head_dim, F = c->d_ff, V = c->vocab;
    double layer = D * qd + 2 * D * kd + qd * D + 3 * D * F + 2 * D;
    return V * D * (c->tie_embeddings ? 1 : 2) + c->n_layer * layer + D;
}

/* FLOPs of one forward and one backward over B x T tokens: 2·N·K·M per GEMM (q, k, v, o,
 * gate, up, down, lm_head), causal attention (QK^T and PV over the lower triangle);
 * backward = 2x the GEMMs (dX and dW) and 2.5x attention (recomputed probabilities).
 * bwd_down: the backward when only the mlp.down_proj weights train (masked training):
 * every dX GEMM and the attention backward down to layer 0, dW of down_proj only.
 * bwd_data: no weight's dW (LoRA training; the adapters' own GEMMs, about r/D of the
 * layers', are not counted). */
typedef struct { double fwd, bwd, bwd_down, bwd_data; } bench_flops;
static inline bench_flops bench_count_flops(const mu_config *c, int B, int T)
{
    double N = (double)B * T, D = c->d_model, qd = (double)c->n_head * c->head_dim;
    double kd = (double)c->n_kv_head * c->head_dim, F = c->d_ff, V = c->vocab;
    double linear = 2 * N * (D * qd + 2 * D * kd + qd * D + 3 * D * F);
    double attn = 4.0 * c->head_dim * B * c->n_head * (T * (T + 1.0) / 2);
    double head = 2 * N * D * V;
    bench_flops f;
    f.fwd = c->n_layer * (linear + attn) + head;
    f.bwd = 2 * (c->n_layer * linear + head) + 2.5 * c->n_layer * attn;
    f.bwd_down = c->n_layer * (linear + 2 * N * D * F) + head + 2.5 * c->n_layer * attn;
    f.bwd_data = c->n_layer * linear + head + 2.5 * c->n_layer * attn;
    return f;
}

/* Seeded random ids [B*T] and next-token targets (-1 at each row's end) for timing. */
static inline void bench_random_tokens(const mu_config *c, int B, int T, int32_t *ids, int32_t *targets)
{
    mu_rng r;
    mu_rng_seed(&r, 1);
    for (int i = 0; i < B * T; i++) ids[i] = (int32_t)mu_rng_below(&r, c->vocab);
    for (int i = 0; i < B * T; i++) targets[i] = (i + 1) % T ? ids[i + 1] : -1;
}

/* One figure of tests/bench/torch_model.py, from its machine-readable lines
 *   torch-result shape=S layers=L mode=M pass=P tokens_s=X gflops=Y peak_gib=Z
 * mode: f32, autocast (bf16 autocast over f32 weights), pure (bf16 weights); pass:
 * forward, fwdbwd, train, masked; peak_gib: torch.cuda.max_memory_allocated (0 on a CPU). */
typedef struct {
    char shape[32], mode[16], pass[16];
    int layers;
    double tokens_s, gflops, peak_gib;
} bench_torch_row;

/* Parses one "torch-result ..." line into r; 0, or -1 when the line is not one. */
static inline int bench_torch_parse(const char *line, bench_torch_row *r)
{
    memset(r, 0, sizeof *r);
    if (strncmp(line, "torch-result ", 13)) return -1;
    int n = sscanf(line + 13, "shape=%31s layers=%d mode=%15s pass=%15s tokens_s=%lf gflops=%lf "
                   "peak_gib=%lf", r->shape, &r->layers, r->mode, r->pass, &r->tokens_s,
                   &r->gflops, &r->peak_gib);
    return n == 7 ? 0 : -1;
}

/* Runs tests/bench/torch_model.py ARGS with $MU_PYTHON (default python3) when it can
 * import torch and transformers, echoing its human-readable lines; says why not
 * otherwise. Up to max parsed figures go to rows (may be NULL). Returns how many, or -1
 * when torch could not run. */
static inline int bench_torch_run(const char *args, bench_torch_row *rows, int max)
{
    if (getenv("MU_BENCH_SKIP_TORCH")) { printf("torch: skipped (MU_BENCH_SKIP_TORCH)\n"); return -1; }
    const char *py = getenv("MU_PYTHON") ? getenv("MU_PYTHON") : "python3";
    char cmd[2600], line[1024];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import torch, transformers' >/dev/null 2>&1", py);
    if (system(cmd) != 0) { printf("torch: not available (%s cannot import torch/transformers)\n", py); return -1; }
    snprintf(cmd, sizeof cmd, "'%s' tests/bench/torch_model.py %s", py, args);
    fflush(stdout);
    FILE *f = popen(cmd, "r");
    if (!f) { printf("torch: cannot start (%s)\n", cmd); return -1; }
    int n = 0;
    bench_torch_row r;
    while (fgets(line, sizeof line, f)) {
        if (bench_torch_parse(line, &r) == 0) { if (rows && n < max) rows[n++] = r; }
        else { fputs(line, stdout); fflush(stdout); }
    }
    if (pclose(f) != 0) { printf("torch: failed (%s)\n", cmd); return n ? n : -1; }
    return n;
}

/* bench_torch_run without collecting the figures (the CPU bench prints them as they come). */
static inline void bench_torch_figures(const char *args)
{
    bench_torch_run(args, NULL, 0);
}
#endif
