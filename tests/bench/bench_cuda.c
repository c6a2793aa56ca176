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
#include "cli.h"
#include "bench.h"
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
/* Times forward and forward+CE+backward of m at B x T; prints one line each. */
static int bench_model(const char *label, mu_model *m, int B, int T, int iters, double peak)
{
    const mu_backend *be = mu_model_backend(m);
    const mu_config *c = mu_model_config(m);
    int N = B * T;
    int32_t *ids = malloc(sizeof *ids * N), *targets = malloc(sizeof *targets * N);
    float *dl = malloc(sizeof(float) * (size_t)N * c->vocab);
    if (!ids || !targets || !dl) { printf("%s: out of host memory\n", label); return -1; }
    bench_random_tokens(c, B, T, ids, targets);
    char err[256];
    mu_batch b = { B, T, ids, NULL };
    bench_flops f = bench_count_flops(c, B, T);
    double best = 1e30;
    for (int it = 0; it <= iters; it++) {               /* iteration 0 warms up */
        be->sync();
        double t = mu_now();
        if (mu_model_forward(m, &b, NULL, err, sizeof err)) { printf("%s: %s\n", label, err); return -1; }
        be->sync();
        t = mu_now() - t;
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
        double t = mu_now();
        if (mu_model_forward(m, &b, &o, err, sizeof err)) { printf("%s: %s\n", label, err); return -1; }
        mu_model_cross_entropy(m, targets, dl, NULL);
        if (mu_model_backward(m, dl, NULL, 0, err, sizeof err)) { printf("%s: %s\n", label, err); return -1; }
        be->sync();
        t = mu_now() - t;
        if (it && t < best) best = t;
    }
    printf("%-14s training %9.0f tokens/s  %8.1f GFLOP/s  MFU %5.1f%%\n", label, N / best,
           (f.fwd + f.bwd) / best / 1e9, peak > 0 ? 100 * (f.fwd + f.bwd) / best / peak : 0.0);
    mu_cuda_print_memory("after training step");
    mu_model_set_all_trainable(m, 0);
    free(ids); free(targets); free(dl);
    return 0;
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
    bench_shape_smollm2(&c);
    mu_model *m = mu_model_init_random(&c, 1, 0.02f, be, err, sizeof err);
    if (!m) printf("smollm2-135m: %s\n", err);
    else {
        bench_model("smollm2-135m", m, B, T, iters, peak);
        mu_model_free(m);
    }
    snprintf(args, sizeof args, "--device cuda --dtype float32 --batch %d --seq %d --iters %d "
             "--shape smollm2-135m", B, T, iters);
    bench_torch_figures(args);

    bench_shape_llama3_8b(&c, layers8b);
    snprintf(label, sizeof label, "llama3-8b/%dL", layers8b);
    m = mu_model_init_random(&c, 2, 0.02f, be, err, sizeof err);
    if (!m) printf("%s: %s\n", label, err);
    else {
        bench_model(label, m, B, T, iters, peak);
        mu_model_free(m);
    }
    snprintf(args, sizeof args, "--device cuda --dtype float32 --batch %d --seq %d --iters %d "
             "--shape llama3-8b --layers %d", B, T, iters, layers8b);
    bench_torch_figures(args);
    return 0;
}
#endif
