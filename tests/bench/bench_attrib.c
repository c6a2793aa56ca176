/* bench_attrib — output tracing (mu-attrib --method causal-trace / path-patch) on the
 * SmolLM2-135M shape, random weights: a record is a 16-token prompt whose tokens 4..6 are the
 * subject and a 1-token answer; each sample costs one noised run and 2 x 30 patched runs.
 * The patched runs go through the model --batch at a time as rows of one forward; batch 1 is
 * one forward per block (the previous way), the reference of the same run. Records/s and
 * the speedup over batch 1, for path-patch and causal-trace, on every block's tensors and on
 * the MLPs' only (mlp:all, as the pipelines ask: L patched runs a sample instead of 2L).
 * Environment: BENCH_ATTRIB_RECORDS (default 2). Not a test: prints a table. */
#define _GNU_SOURCE
#include "attrib.h"
#include "bench.h"
#include "cli.h"
#include "config.h"
#include "rng.h"
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { PROMPT = 16, SUBJ0 = 4, SUBJ1 = 7 };

/* n random records of PROMPT + 1 tokens (the last is the answer). */
static void random_records(mu_train_set *set, int n, int vocab) {
    mu_rng r;
    mu_rng_seed(&r, 99);
    int32_t **ids = malloc((size_t)n * sizeof *ids);
    int *len = malloc((size_t)n * sizeof *len), *pl = malloc((size_t)n * sizeof *pl);
    for (int i = 0; i < n; i++) {
        ids[i] = malloc((PROMPT + 1) * sizeof(int32_t));
        for (int k = 0; k <= PROMPT; k++) ids[i][k] = (int32_t)mu_rng_below(&r, (uint64_t)vocab);
        len[i] = PROMPT + 1;
        pl[i] = PROMPT;
    }
    mu_train_set_from_arrays(set, n, ids, len, pl);
    for (int i = 0; i < n; i++) free(ids[i]);
    free(ids); free(len); free(pl);
}

/* Seconds of one mu_attrib_run of method over set with `batch` patched runs per forward. */
static double time_trace(mu_model *m, const mu_mask *tensors, const mu_train_set *set, mu_attr_method method,
                         int batch, const int32_t *s0, const int32_t *s1) {
    mu_attr_opts o;
    mu_attr_opts_default(&o);
    o.method = method;
    o.gran = MU_GRAN_MATRIX;
    o.samples = 1;
    o.batch = batch;
    o.restore_all = method != MU_ATTR_PATH_PATCH;
    o.subj_start = s0;
    o.subj_end = s1;
    mu_attr_result r;
    char err[512];
    double t0 = mu_now();
    if (mu_attrib_run(m, tensors, set, NULL, &o, &r, err, sizeof err)) { fprintf(stderr, "%s\n", err); exit(1); }
    double dt = mu_now() - t0;
    mu_attr_result_free(&r);
    return dt;
}

int main(void) {
    const char *env = getenv("BENCH_ATTRIB_RECORDS");
    int n = env ? atoi(env) : 2;
    if (n < 1) n = 1;
    mu_config c;
    bench_shape_smollm2(&c);
    char err[512];
    mu_model *m = mu_model_init_random(&c, 1, 0.02f, mu_backend_cpu(), err, sizeof err);
    if (!m) { fprintf(stderr, "%s\n", err); return 1; }
    int np = mu_model_n_params(m);
    mu_param_info *info = mu_model_param_infos(m);
    const char *specs[2] = {"mlp:all+attn:all", "mlp:all"};
    mu_mask tensors[2];
    for (int i = 0; i < 2; i++)
        if (mu_mask_from_spec(specs[i], info, np, &tensors[i], err, sizeof err)) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
    free(info);
    mu_train_set set;
    random_records(&set, n, c.vocab);
    int32_t *s0 = malloc((size_t)n * sizeof *s0), *s1 = malloc((size_t)n * sizeof *s1);
    for (int i = 0; i < n; i++) { s0[i] = SUBJ0; s1[i] = SUBJ1; }
    printf("bench_attrib: SmolLM2-135M shape, random init, %d records of %d prompt tokens, 1 sample,\n"
           "2 x %d patched runs a sample (%d on mlp:all); %d threads\n", n, PROMPT, c.n_layer, c.n_layer,
           omp_get_max_threads());
    printf("%-13s %-17s %6s %12s %10s\n", "method", "tensors", "batch", "records/s", "vs batch 1");
    const mu_attr_method ms[2] = {MU_ATTR_PATH_PATCH, MU_ATTR_CAUSAL_TRACE};
    const int batches[3] = {1, 8, 2 * c.n_layer};
    for (int k = 0; k < 2; k++) {
        double base = 0;
        for (int t = 0; t < 2; t++)
            for (int b = t; b < 3; b++) {   /* batch 1 on every block: the reference */
                double dt = time_trace(m, &tensors[t], &set, ms[k], batches[b], s0, s1);
                if (b == 0) base = dt;
                printf("%-13s %-17s %6d %12.2f %9.2fx\n", mu_attr_method_name(ms[k]), specs[t], batches[b],
                       n / dt, base / dt);
            }
    }
    free(s0); free(s1);
    mu_train_set_free(&set);
    for (int i = 0; i < 2; i++) mu_mask_free(&tensors[i]);
    mu_model_free(m);
    return 0;
}
