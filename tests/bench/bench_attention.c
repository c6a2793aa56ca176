/* bench_attention.c — the CPU attention op (kernels/cpu/cpu_attention.c) with the options
 * Gemma-2 and Mistral add: a sliding window and soft-capped scores (make bench).
 *
 * One row of T = 4096 tokens, 8 heads over 2 kv heads of 64 (a 1B-model layer), forward
 * and backward: full causal attention, soft-capped at 50, a sliding window of 512, and
 * both. Each case: milliseconds (best of MU_BENCH_ITERS runs, default 3, after a warm-up),
 * the query-key pairs it must compute (the window's are about a seventh of the causal
 * triangle's), the GFLOP/s over those pairs (4 hd per pair forward, 2.5x that backward, as
 * bench.h counts attention), that as a share of the machine's sgemm GFLOP/s measured in the
 * same run, and the time relative to full causal attention: the window's work is skipped
 * per query tile, so its time should fall with its pairs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "kernels.h"
#include "bench.h"

enum { T = 4096, H = 8, HKV = 2, HD = 64, WINDOW = 512 };

/* Visible query-key pairs of one row and head: causal, within the window when > 0. */
static double visible_pairs(int window)
{
    double n = 0;
    for (int t = 0; t < T; t++) n += window > 0 && t + 1 > window ? window : t + 1;
    return n;
}

typedef struct { const char *label; float softcap; int window; } att_case;

/* Best forward + backward time in seconds over iters runs after a warm-up. */
static double time_case(const mu_backend *be, const att_case *c, const float *Q, const float *K,
                        const float *V, const float *dO, float *O, float *lse, float *dQ,
                        float *dK, float *dV, int iters)
{
    int32_t len = T;
    mu_attn_shape s = { 1, T, T, H, HKV, HD, NULL, &len, 1.0f / sqrtf((float)HD), c->softcap,
                        c->window };
    double best = 1e30;
    for (int it = 0; it <= iters; it++) {
        double t0 = mu_now();
        be->attention(O, lse, Q, K, V, &s);
        be->attention_bwd(dQ, dK, dV, dO, O, lse, Q, K, V, &s);
        double t = mu_now() - t0;
        if (it && t < best) best = t;          /* the first run warms up */
    }
    return best;
}

int main(void)
{
    const char *e = getenv("MU_BENCH_ITERS");
    int iters = e && atoi(e) > 0 ? atoi(e) : 3;
    const mu_backend *be = mu_backend_cpu();
    size_t nq = (size_t)T * H * HD, nk = (size_t)T * HKV * HD;
    float *Q = malloc(nq * sizeof *Q), *K = malloc(nk * sizeof *K), *V = malloc(nk * sizeof *V);
    float *dO = malloc(nq * sizeof *dO), *O = malloc(nq * sizeof *O), *dQ = malloc(nq * sizeof *dQ);
    float *dK = malloc(nk * sizeof *dK), *dV = malloc(nk * sizeof *dV);
    float *lse = malloc((size_t)H * T * sizeof *lse);
    if (!Q || !K || !V || !dO || !O || !dQ || !dK || !dV || !lse) { fprintf(stderr, "bench_attention: out of memory\n"); return 1; }
    mu_rng r;
    mu_rng_seed(&r, 1);
    for (size_t i = 0; i < nq; i++) { Q[i] = (float)mu_rng_normal(&r); dO[i] = (float)mu_rng_normal(&r); }
    for (size_t i = 0; i < nk; i++) { K[i] = (float)mu_rng_normal(&r); V[i] = (float)mu_rng_normal(&r); }
    double ceiling = bench_sgemm_ceiling();
    printf("CPU attention, one row of %d tokens, %d heads / %d kv heads of %d, forward + backward "
           "(best of %d); sgemm %.1f GFLOP/s\n", T, H, HKV, HD, iters, ceiling);
    printf("| case | ms | pairs (M) | GFLOP/s | of sgemm | time vs causal |\n|---|---|---|---|---|---|\n");
    const att_case cases[] = { { "causal", 0, 0 }, { "softcap 50", 50, 0 }, { "window 512", 0, WINDOW },
                               { "window 512 + softcap 50", 50, WINDOW } };
    double base = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        double t = time_case(be, &cases[i], Q, K, V, dO, O, lse, dQ, dK, dV, iters);
        double pairs = visible_pairs(cases[i].window) * H;
        double gf = 3.5 * 4.0 * HD * pairs / t / 1e9;       /* forward 1x + backward 2.5x */
        if (i == 0) base = t;
        printf("| %s | %.1f | %.1f | %.1f | %.1f%% | %.2f |\n", cases[i].label, 1e3 * t, pairs / 1e6, gf,
               100 * gf / ceiling, t / base);
    }
    free(Q); free(K); free(V); free(dO); free(O); free(dQ); free(dK); free(dV); free(lse);
    return 0;
}
