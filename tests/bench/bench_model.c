/* bench_model.c — forward and forward+backward speed of the CPU model (make bench).
 *
 * For a SmolLM2-135M-shaped random model (30 layers, width 576, 9 heads, 3 kv heads,
 * MLP 1536, vocab 49152, tied) and stories260K (if ../shared is present), at batch 8 x 256
 * tokens, plus greedy KV-cache decoding speed: tokens/s (best of MU_BENCH_ITERS timed runs after a warm-up), the GFLOP/s reached (2*N*K*M per GEMM, causal attention pairs counted
 * once, backward = 2x the GEMMs + 2.5x attention), the machine's sgemm GFLOP/s measured in
 * the same run (a large square cblas_sgemm) as the ceiling, and the ratio. Then PyTorch's
 * figures on the same shapes via $MU_PYTHON tests/bench/torch_model.py (MU_PYTHON defaults
 * to python3; "torch: not available" when it cannot import torch).
 * Environment: MU_BENCH_ITERS (timed iterations, default 1), MU_BENCH_SKIP_TORCH=1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cblas.h>
#include <omp.h>
#include "model.h"
#include "cli.h"
#include "bench.h"
#include "rng.h"

typedef struct { const char *label; double fwd_tps, fwd_gf, fb_tps, fb_gf; int ok; } result;

/* Times forward (inference) and forward + cross-entropy + backward (all parameters
 * trainable) at B x T; best of iters runs after one warm-up run. */
static result run(const char *label, mu_model *m, int B, int T, int iters)
{
    result res = { label, 0, 0, 0, 0, 0 };
    const mu_config *c = mu_model_config(m);
    int N = B * T;
    int32_t *ids = malloc(sizeof *ids * N), *targets = malloc(sizeof *targets * N);
    float *dl = malloc(sizeof(float) * (size_t)N * c->vocab);
    if (!ids || !targets || !dl) { printf("%s: out of memory\n", label); return res; }
    bench_random_tokens(c, B, T, ids, targets);
    char err[256];
    mu_batch b = { B, T, ids, NULL };
    bench_flops f = bench_count_flops(c, B, T);
    double best = 1e30;
    for (int it = 0; it <= iters; it++) {               /* iteration 0 warms up */
        double t = mu_now();
        if (mu_model_forward(m, &b, NULL, err, sizeof err)) { printf("%s: %s\n", label, err); return res; }
        t = mu_now() - t;
        if (it && t < best) best = t;
    }
    res.fwd_tps = N / best;
    res.fwd_gf = f.fwd / best / 1e9;
    mu_model_set_all_trainable(m, 1);
    mu_fwd_opts o = { .train = 1};
    best = 1e30;
    for (int it = 0; it <= iters; it++) {
        double t = mu_now();
        if (mu_model_forward(m, &b, &o, err, sizeof err)) { printf("%s: %s\n", label, err); return res; }
        mu_model_cross_entropy(m, targets, dl, NULL);
        if (mu_model_backward(m, dl, NULL, 0, err, sizeof err)) { printf("%s: %s\n", label, err); return res; }
        t = mu_now() - t;
        if (it && t < best) best = t;
    }
    res.fb_tps = N / best;
    res.fb_gf = (f.fwd + f.bwd) / best / 1e9;
    res.ok = 1;
    mu_model_set_all_trainable(m, 0);
    free(ids); free(targets); free(dl);
    return res;
}

/* Greedy decoding with the KV cache: milliseconds per generated token after a prompt. */
static double decode_ms(mu_model *m, int n_prompt, int n_new)
{
    int32_t prompt[64], out[256];
    for (int i = 0; i < n_prompt; i++) prompt[i] = 1 + i;
    char err[256];
    double t = mu_now();
    int n = mu_model_greedy(m, prompt, n_prompt, n_new, -1, out, err, sizeof err);
    t = mu_now() - t;
    return n > 0 ? 1000 * t / n : -1;
}

static void print_result(const result *r, double ceiling)
{
    if (!r->ok) return;
    printf("%-12s forward  %9.0f tokens/s  %7.1f GFLOP/s  %5.1f%% of sgemm\n", r->label,
           r->fwd_tps, r->fwd_gf, 100 * r->fwd_gf / ceiling);
    printf("%-12s fwd+bwd  %9.0f tokens/s  %7.1f GFLOP/s  %5.1f%% of sgemm\n", r->label,
           r->fb_tps, r->fb_gf, 100 * r->fb_gf / ceiling);
}

int main(void)
{
    int iters = getenv("MU_BENCH_ITERS") ? atoi(getenv("MU_BENCH_ITERS")) : 1;
    if (iters < 1) iters = 1;
    int B = 8, T = 256;
    printf("threads %d, batch %d x %d tokens\n", omp_get_max_threads(), B, T);
    /* The machine may be shared: the ceiling is measured before and after each model and
     * the highest figure is used, so the ratios are conservative. */
    double ceil[3];
    ceil[0] = bench_sgemm_ceiling();

    mu_config c;
    bench_shape_smollm2(&c);
    char err[256];
    mu_model *m = mu_model_init_random(&c, 1, 0.02f, mu_backend_cpu(), err, sizeof err);
    if (!m) { fprintf(stderr, "bench_model: %s\n", err); return 1; }
    result res[2] = { { 0 }, { 0 } };
    res[0] = run("smollm2-135m", m, B, T, iters);
    double dec = decode_ms(m, 8, 64);
    mu_model_free(m);
    ceil[1] = bench_sgemm_ceiling();

    const char *shared = getenv("MU_SHARED") ? getenv("MU_SHARED") : "../shared";
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/data/models/stories260K", shared);
    m = mu_model_load(dir, NULL, 0, mu_backend_cpu(), err, sizeof err);
    int have_stories = m != NULL;
    if (m) {
        res[1] = run("stories260K", m, B, T, iters * 5);
        mu_model_free(m);
    }
    ceil[2] = bench_sgemm_ceiling();
    double ceiling = ceil[0];
    for (int i = 1; i < 3; i++) if (ceil[i] > ceiling) ceiling = ceil[i];
    printf("sgemm ceiling (3000^3 cblas_sgemm, best of 4): %.1f GFLOP/s "
           "(measured %.1f / %.1f / %.1f)\n", ceiling, ceil[0], ceil[1], ceil[2]);
    print_result(&res[0], ceiling);
    printf("%-12s decode   %9.1f ms/token (greedy, KV cache, 64 tokens after 8)\n",
           "smollm2-135m", dec);
    if (have_stories) print_result(&res[1], ceiling);
    else printf("stories260K: not available (%s)\n", err);

    char args[1200];
    snprintf(args, sizeof args, "--batch %d --seq %d --iters %d%s%s", B, T, iters,
             have_stories ? " --stories " : "", have_stories ? dir : "");
    bench_torch_figures(args);
    return 0;
}
