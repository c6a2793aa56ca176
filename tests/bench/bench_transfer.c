/* bench_transfer — bytes between host and device per step of mu-train's loop.
 *
 * On a GPU the host <-> device traffic of a training step can cost more than its arithmetic
 * (a [B*T, V] logits tensor is 0.2 GB per pass for a Llama-3 vocabulary at 512 tokens). This
 * counts it exactly, without a GPU: the CPU backend posing as a device (host_memory = 0, so
 * the model and trainer take every device path) with upload and download wrapped by
 * counters. Sports-Facts-like data: B = 16 rows of a 14-token prompt and a 2-token answer,
 * loss on the answer. Shape: SmolLM2-135M's width and vocabulary (576, 49152) with 2 layers
 * (the logits traffic does not depend on depth). Every parameter trained (AdamW on the
 * "device"); a frozen reference model where the objective needs one.
 * Prints, per objective, MiB uploaded and downloaded per step (mean over the timed steps,
 * after one step that allocates). Deterministic: not a timing. Not counted: the small host
 * arrays that kernels.h ops take as arguments (token ids, targets, per-row coefficients and
 * log-probs: a few bytes per token), which a device backend copies inside the op. */
#include "train.h"
#include "model.h"
#include "cli.h"
#include "bench.h"
#include "rng.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { BATCH = 16, PROMPT = 14, ANSWER = 2, STEPS = 3 };

static mu_backend counting;
static const mu_backend *cpu;
static size_t up_bytes, down_bytes;

static void count_upload(void *dst, const void *src, size_t n) { up_bytes += n; cpu->upload(dst, src, n); }
static void count_download(void *dst, const void *src, size_t n) { down_bytes += n; cpu->download(dst, src, n); }

/* The CPU backend as a device whose transfers are counted. */
static const mu_backend *counting_backend(void) {
    cpu = mu_backend_cpu();
    counting = *cpu;
    counting.name = "cpu-as-device";
    counting.host_memory = 0;
    counting.upload = count_upload;
    counting.download = count_download;
    return &counting;
}

/* n random sequences of PROMPT + ANSWER tokens, trained on the answer. */
static void fact_set(mu_train_set *set, int n, int vocab, uint64_t seed) {
    mu_rng r;
    mu_rng_seed(&r, seed);
    int32_t **ids = malloc(n * sizeof *ids);
    int *len = malloc(n * sizeof *len), *pl = malloc(n * sizeof *pl);
    for (int i = 0; i < n; i++) {
        ids[i] = malloc((PROMPT + ANSWER) * sizeof(int32_t));
        for (int k = 0; k < PROMPT + ANSWER; k++) ids[i][k] = (int32_t)mu_rng_below(&r, (uint64_t)vocab);
        len[i] = PROMPT + ANSWER;
        pl[i] = PROMPT;
    }
    mu_train_set_from_arrays(set, n, ids, len, pl);
    for (int i = 0; i < n; i++) free(ids[i]);
    free(ids); free(len); free(pl);
}

/* Trains STEPS + 1 steps of `spec`; *up, *down = MiB per timed step. */
static int measure(const char *spec, const mu_config *c, double *up, double *down) {
    char err[512];
    const mu_backend *be = counting_backend();
    mu_model *m = mu_model_init_random(c, 1, 0.02f, be, err, sizeof err);
    mu_model *ref = mu_model_init_random(c, 1, 0.02f, be, err, sizeof err);
    if (!m || !ref) { fprintf(stderr, "%s\n", err); return -1; }
    mu_train_opts o;
    mu_train_opts_default(&o);
    if (mu_objective_parse(spec, o.coef, err, sizeof err)) { fprintf(stderr, "%s\n", err); return -1; }
    o.batch = BATCH;
    o.steps = 1;
    o.opt.lr = 1e-4;
    mu_trainer *t = mu_trainer_new(m, ref, NULL, &o, err, sizeof err);
    if (!t) { fprintf(stderr, "%s\n", err); return -1; }
    mu_train_set f, r;
    fact_set(&f, BATCH * (STEPS + 1), c->vocab, 11);
    fact_set(&r, BATCH * (STEPS + 1), c->vocab, 12);
    mu_trainer_set_data(t, MU_DATA_FORGET, &f);
    mu_trainer_set_data(t, MU_DATA_RETAIN, &r);
    int rc = mu_trainer_run(t, NULL, err, sizeof err);      /* allocations, reference caches */
    up_bytes = down_bytes = 0;
    mu_trainer_set_steps(t, 1 + STEPS);
    if (!rc) rc = mu_trainer_run(t, NULL, err, sizeof err);
    if (rc) fprintf(stderr, "%s: %s\n", spec, err);
    *up = (double)up_bytes / STEPS / 1048576.0;
    *down = (double)down_bytes / STEPS / 1048576.0;
    mu_trainer_free(t);
    mu_model_free(m);
    mu_model_free(ref);
    return rc;
}

int main(void) {
    mu_config c;
    bench_shape_smollm2(&c);
    c.n_layer = 2;
    static const char *const specs[] = {
        "learn=1", "log1mp=1,retain-ce=1", "ga=1,retain-ce=1", "npo=1,retain-ce=1",
        "wga=1,retain-kl=1", "undial=1", "me=1,retain-ce=1",
    };
    double logits = (double)BATCH * (PROMPT + ANSWER) * c.vocab * 4 / 1048576.0;
    printf("bench_transfer: host <-> device MiB per training step of mu-train's loop (counted on the\n"
           "CPU backend posing as a device): d_model %d, vocab %d, %d layers, batch %d x (%d prompt +\n"
           "%d answer) tokens, every parameter trained. One [B*T, V] f32 logits tensor: %.1f MiB.\n",
           c.d_model, c.vocab, c.n_layer, BATCH, PROMPT, ANSWER, logits);
    printf("%-24s %12s %12s\n", "objective", "up MiB", "down MiB");
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) {
        double up, down;
        if (measure(specs[i], &c, &up, &down)) { printf("%-24s failed\n", specs[i]); continue; }
        printf("%-24s %12.2f %12.2f\n", specs[i], up, down);
        fflush(stdout);
    }
    return 0;
}
