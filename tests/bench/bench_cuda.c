/* bench_cuda.c — speed of the model on the CUDA backend (make bench). Skips (exit 0, one
 * line) when mu was built without CUDA or no device is present.
 *
 * Shapes, random weights, batch 8 x 256 tokens:
 *   smollm2-135m  30 layers, width 576, 9 heads / 3 kv, MLP 1536, vocab 49152, tied
 *   llama3-8b     width 4096, 32 heads / 8 kv, head dim 128, MLP 14336, vocab 128256,
 *                 untied, with MU_BENCH_8B_LAYERS layers (default 4 of 32: f32 weights,
 *                 gradients and activations of all 32 would not fit in 80 GB)
 * For each: forward tokens/s (inference), training tokens/s (forward + cross-entropy +
 * backward, every parameter trainable; the optimizer step runs on the host and is not
 * included), the FLOP/s reached (counted as bench_model.c counts them: 2*N*K*M per GEMM,
 * causal attention pairs once, backward = 2x GEMMs + 2.5x attention) and the MFU against
 * the device's f32 peak without tensor cores (mu_cuda_peak_f32_flops; override with
 * MU_BENCH_PEAK_TFLOPS). Best of MU_BENCH_ITERS timed runs (default 2) after a warm-up.
 * Then PyTorch on the same shapes on the same GPU: tests/bench/torch_model.py --device
 * cuda --dtype float32 via $MU_PYTHON (MU_BENCH_SKIP_TORCH=1 skips it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "model.h"
#include "rng.h"
#ifdef MU_HAVE_CUDA
#include "cuda/mu_cuda.h"
#endif

#ifndef MU_HAVE_CUDA
int main(void)
{
    printf("bench_cuda: skipped (built without CUDA: nvcc not found, or make CUDA=0)\n");
    return 0;
}
#else
static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct { double fwd, bwd; } flops;

static flops count_flops(const mu_config *c, int B, int T)
{
    double N = (double)B * T, D = c->d_model, qd = (double)c->n_head * c->head_dim;
    double kd = (double)c->n_kv_head * c->head_dim, F = c->d_ff, V = c->vocab;
    double linear = 2 * N * (D * qd + 2 * D * kd + qd * D + 3 * D * F);
    double attn = 4.0 * c->head_dim * B * c->n_head * (T * (T + 1.0) / 2);
    double head = 2 * N * D * V;
    flops f;
    f.fwd = c->n_layer * (linear + attn) + head;
    f.bwd = 2 * (c->n_layer * linear + head) + 2.5 * c->n_layer * attn;
    return f;
}

/* Times forward and forward+CE+backward of m at B x T; prints one line each. */
static int bench_model(const char *label, mu_model *m, int B, int T, int iters, double peak)
{
    const mu_backend *be = mu_model_backend(m);
    const mu_config *c = mu_model_config(m);
    int N = B * T;
    int32_t *ids = malloc(sizeof *ids * N), *targets = malloc(sizeof *targets * N);
    float *dl = malloc(sizeof(float) * (size_t)N * c->vocab);
    if (!ids || !targets || !dl) { printf("%s: out of host memory\n", label); return -1; }
    mu_rng r;
    mu_rng_seed(&r, 1);
    for (int i = 0; i < N; i++) ids[i] = (int32_t)mu_rng_below(&r, c->vocab);
    for (int i = 0; i < N; i++) targets[i] = (i + 1) % T ? ids[i + 1] : -1;
    char err[256];
    mu_batch b = { B, T, ids, NULL };
    flops f = count_flops(c, B, T);
    double best = 1e30;
    for (int it = 0; it <= iters; it++) {               /* iteration 0 warms up */
        be->sync();
        double t = now();
        if (mu_model_forward(m, &b, NULL, err, sizeof err)) { printf("%s: %s\n", label, err); return -1; }
        be->sync();
        t = now() - t;
        if (it && t < best) best = t;
    }
    printf("%-14s forward  %9.0f tokens/s  %8.1f GFLOP/s  MFU %5.1f%%\n", label, N / best,
           f.fwd / best / 1e9, peak > 0 ? 100 * f.fwd / best / peak : 0.0);
    if (mu_model_set_all_trainable(m, 1)) { printf("%s: out of device memory for gradients\n", label); return -1; }
    mu_cuda_print_memory("weights + gradients");
    mu_fwd_opts o = { .train = 1};
    best = 1e30;
    for (int it = 0; it <= iters; it++) {
        be->sync();
        double t = now();
        if (mu_model_forward(m, &b, &o, err, sizeof err)) { printf("%s: %s\n", label, err); return -1; }
        mu_model_cross_entropy(m, targets, dl, NULL);
        if (mu_model_backward(m, dl, NULL, 0, err, sizeof err)) { printf("%s: %s\n", label, err); return -1; }
        be->sync();
        t = now() - t;
        if (it && t < best) best = t;
    }
    printf("%-14s training %9.0f tokens/s  %8.1f GFLOP/s  MFU %5.1f%%\n", label, N / best,
           (f.fwd + f.bwd) / best / 1e9, peak > 0 ? 100 * (f.fwd + f.bwd) / best / peak : 0.0);
    mu_cuda_print_memory("after training step");
    mu_model_set_all_trainable(m, 0);
    free(ids); free(targets); free(dl);
    return 0;
}

static void torch_figures(const char *args)
{
    if (getenv("MU_BENCH_SKIP_TORCH")) { printf("torch: skipped (MU_BENCH_SKIP_TORCH)\n"); return; }
    const char *py = getenv("MU_PYTHON") ? getenv("MU_PYTHON") : "python3";
    char cmd[2600];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import torch, transformers' >/dev/null 2>&1", py);
    if (system(cmd) != 0) { printf("torch: not available (%s cannot import torch/transformers)\n", py); return; }
    snprintf(cmd, sizeof cmd, "'%s' tests/bench/torch_model.py %s", py, args);
    fflush(stdout);
    if (system(cmd) != 0) printf("torch: failed (%s)\n", cmd);
}

static void shape_smollm2(mu_config *c)
{
    mu_config_init(c);
    c->n_layer = 30; c->d_model = 576; c->n_head = 9; c->n_kv_head = 3; c->head_dim = 64;
    c->d_ff = 1536; c->vocab = 49152; c->max_pos = 2048; c->rms_eps = 1e-5f;
    c->rope_theta = 100000; c->tie_embeddings = 1;
}

static void shape_llama3_8b(mu_config *c, int layers)
{
    mu_config_init(c);
    c->n_layer = layers; c->d_model = 4096; c->n_head = 32; c->n_kv_head = 8; c->head_dim = 128;
    c->d_ff = 14336; c->vocab = 128256; c->max_pos = 8192; c->rms_eps = 1e-5f;
    c->rope_theta = 500000; c->tie_embeddings = 0;
}

int main(void)
{
    if (mu_cuda_device_count() <= 0) {
        printf("bench_cuda: skipped (no CUDA device)\n");
        return 0;
    }
    const mu_backend *be = mu_backend_cuda();
    if (!be) { printf("bench_cuda: skipped (the CUDA backend could not start)\n"); return 0; }
    int iters = getenv("MU_BENCH_ITERS") ? atoi(getenv("MU_BENCH_ITERS")) : 2;
    if (iters < 1) iters = 1;
    int layers8b = getenv("MU_BENCH_8B_LAYERS") ? atoi(getenv("MU_BENCH_8B_LAYERS")) : 4;
    if (layers8b < 1 || layers8b > 32) layers8b = 4;
    double peak = mu_cuda_peak_f32_flops();
    if (getenv("MU_BENCH_PEAK_TFLOPS")) peak = atof(getenv("MU_BENCH_PEAK_TFLOPS")) * 1e12;
    const int B = 8, T = 256;
    printf("device %s, f32 peak %.1f TFLOP/s (no tensor cores), batch %d x %d tokens\n",
           mu_cuda_device_name(), peak / 1e12, B, T);

    char err[256], label[64], args[256];
    mu_config c;
    shape_smollm2(&c);
    mu_model *m = mu_model_init_random(&c, 1, 0.02f, be, err, sizeof err);
    if (!m) printf("smollm2-135m: %s\n", err);
    else {
        bench_model("smollm2-135m", m, B, T, iters, peak);
        mu_model_free(m);
    }
    snprintf(args, sizeof args, "--device cuda --dtype float32 --batch %d --seq %d --iters %d "
             "--shape smollm2-135m", B, T, iters);
    torch_figures(args);

    shape_llama3_8b(&c, layers8b);
    snprintf(label, sizeof label, "llama3-8b/%dL", layers8b);
    m = mu_model_init_random(&c, 2, 0.02f, be, err, sizeof err);
    if (!m) printf("%s: %s\n", label, err);
    else {
        bench_model(label, m, B, T, iters, peak);
        mu_model_free(m);
    }
    snprintf(args, sizeof args, "--device cuda --dtype float32 --batch %d --seq %d --iters %d "
             "--shape llama3-8b --layers %d", B, T, iters, layers8b);
    torch_figures(args);
    return 0;
}
#endif
