/* bench_memory — device memory of a training step: full training vs a 1% mask, with the
 * masked tensors kept whole (every gradient and bf16 master [numel]) or packed (gradient
 * and master of the masked elements only: mu_model_set_trainable_elems, what mu-train
 * does).
 *
 * Counted, not timed, and without a GPU: the CPU backend posing as a device (host_memory
 * = 0, so the model takes every device path) with alloc and free wrapped by counters of
 * the bytes live and their peak. Not counted: scratch a backend allocates for itself
 * (the CUDA backend's bf16 operand copies and reduction partials; the CPU backend's
 * host-side scratch), which is the same in every column.
 * A step: forward with logits at every position, mean cross-entropy on the next token,
 * backward, AdamW (mu_optim) and mu_model_param_changed; two steps, the peak over both.
 * The mask: 1% of the model's parameter count as whole value vectors (columns f of every
 * layer's mlp.down_proj [D, F], seeded), the mu use case, as bench_cuda's masked pass.
 * Shapes (tests/bench/bench.h): SmolLM2-135M (30 layers) in f32 and bf16, batch 4 x 128;
 * the Llama-3-8B shape at MU_BENCH_MEMORY_8B_LAYERS (default 2) in bf16, masked only
 * (full training of its embeddings alone needs 14 GB here), batch 1 x 128.
 * MU_BENCH_SHAPES (default "smollm2-135m,llama3-8b") picks the shapes.
 * And LoRA: rank-16 adapters on every layer matrix, the weights frozen (mu-train --lora 16).
 * Prints per case the peak MiB and its split: parameters + gradients + masters (+ adapters)
 * (mu_model_param_bytes), optimizer state (mu_optim_state_bytes), and the rest
 * (activations, logits, workspace). */
#include "model.h"
#include "optim.h"
#include "cli.h"
#include "bench.h"
#include "rng.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#define HDR 64   /* bytes before each counted buffer: its size (keeps 64-byte alignment) */
#define MIB (1024.0 * 1024.0)

static mu_backend counting;
static const mu_backend *cpu;
static size_t live, peak;

static void *count_alloc(size_t n)
{
    char *p = cpu->alloc(n + HDR);
    if (!p) return NULL;
    memcpy(p, &n, sizeof n);
    live += n;
    if (live > peak) peak = live;
    return p + HDR;
}

static void count_free(void *q)
{
    if (!q) return;
    char *p = (char *)q - HDR;
    size_t n;
    memcpy(&n, p, sizeof n);
    live -= n;
    cpu->free(p);
}

/* The CPU backend as a device whose allocations are counted. */
static const mu_backend *counting_backend(void)
{
    cpu = mu_backend_cpu();
    counting = *cpu;
    counting.name = "cpu-as-device";
    counting.host_memory = 0;
    counting.alloc = count_alloc;
    counting.free = count_free;
    return &counting;
}

typedef enum { FULL, MASKED_WHOLE, MASKED_PACKED, LORA16 } train_mode;
static const char *const MODE_NAMES[] = { "full", "1% whole", "1% packed", "LoRA r16" };
#define LORA_R 16

/* Rank-16 LoRA adapters on every layer matrix (mu-train --lora 16), A and B registered. */
static int setup_lora(mu_model *m, mu_optim *o)
{
    mu_rng r;
    mu_rng_seed(&r, 7);
    for (int i = 0; i < mu_model_n_params(m); i++) {
        if (!mu_model_lora_eligible(m, i)) continue;
        int in, out;
        mu_model_matrix_dims(m, i, &in, &out);
        float *ab = calloc((size_t)LORA_R * (in + out), sizeof *ab);   /* A random, B 0, as mu-train */
        for (int64_t e = 0; e < (int64_t)LORA_R * in; e++) ab[e] = (float)(0.01 * mu_rng_normal(&r));
        int rc = mu_model_add_lora(m, i, LORA_R, 1.0f, ab, ab + (size_t)LORA_R * in);
        free(ab);
        const mu_lora *a = mu_model_lora(m, i);
        mu_idxset sa, sb;
        mu_idxset_init_dense(&sa, (int64_t)a->r * a->K);
        mu_idxset_init_dense(&sb, (int64_t)a->M * a->r);
        if (rc || mu_optim_add(o, "A", a->A, a->gA, &sa) < 0 || mu_optim_add(o, "B", a->B, a->gB, &sb) < 0)
            return -1;
    }
    return 0;
}

/* Bytes of the adapters, their values and gradients. */
static double lora_bytes(const mu_model *m)
{
    double b = 0;
    for (int i = 0; i < mu_model_n_params(m); i++) {
        const mu_lora *a = mu_model_lora(m, i);
        if (a) b += 2.0 * sizeof(float) * a->r * ((double)a->K + a->M);
    }
    return b;
}

/* The set of down_proj [D, F] columns of layer l that the seeded 1% mask picks: each of
 * the model's L*F value vectors is kept with probability k / (L*F), k = 1% of the
 * parameter count / D. 0, or -1 (no column picked). */
static int column_set(const mu_config *c, int l, mu_idxset *s)
{
    int64_t D = c->d_model, F = c->d_ff;
    double k = 0.01 * bench_param_count(c) / (double)D, p = k / ((double)c->n_layer * F);
    mu_rng r;
    mu_rng_seed2(&r, 2024, (uint64_t)l);
    int64_t *cols = malloc(sizeof *cols * (size_t)F), nc = 0;
    for (int64_t f = 0; f < F; f++)
        if (mu_rng_uniform(&r) < p) cols[nc++] = f;
    int64_t *idx = malloc(sizeof *idx * (size_t)(D * nc + 1));
    for (int64_t d = 0, w = 0; d < D; d++)
        for (int64_t j = 0; j < nc; j++) idx[w++] = d * F + cols[j];
    char err[160];
    int rc = nc > 0 ? mu_idxset_init_list(s, D * F, idx, D * nc, err, sizeof err) : -1;
    free(cols); free(idx);
    return rc;
}

/* Makes the mode's tensors trainable and registers them with o. */
static int setup(mu_model *m, mu_optim *o, train_mode mode)
{
    const mu_config *c = mu_model_config(m);
    if (mode == LORA16) return setup_lora(m, o);
    if (mode == FULL) {
        for (int i = 0; i < mu_model_n_params(m); i++) {
            mu_param *p = mu_model_param(m, i);
            mu_idxset s;
            mu_idxset_init_dense(&s, p->numel);
            if (mu_model_set_trainable(m, i, 1) || mu_optim_add(o, p->info.name, p->w, p->g, &s) < 0)
                return -1;
        }
        return 0;
    }
    for (int l = 0; l < c->n_layer; l++) {
        char name[96];
        snprintf(name, sizeof name, "model.layers.%d.mlp.down_proj.weight", l);
        int i = mu_model_find(m, name);
        mu_param *p = mu_model_param(m, i);
        mu_idxset s;
        if (!p || column_set(c, l, &s)) continue;
        int rc = mode == MASKED_PACKED
                     ? mu_model_set_trainable_elems(m, i, &s) ||
                           mu_optim_add_packed(o, name, p->wp, p->g, &s, &p->el) < 0
                     : mu_model_set_trainable(m, i, 1) || mu_optim_add(o, name, p->w, p->g, &s) < 0;
        if (rc) return -1;
    }
    return 0;
}

typedef struct { double peak, params, optim, trained; } usage;

/* Two training steps of shape c, weights w, mode; the peak device bytes and the split. */
static int measure(const mu_config *c, mu_weights w, train_mode mode, int B, int T, usage *u)
{
    char err[512];
    const mu_backend *be = counting_backend();
    live = peak = 0;
    mu_model *m = mu_model_init_random_as(c, 1, 0.02f, be, w, err, sizeof err);
    if (!m) { fprintf(stderr, "bench_memory: %s\n", err); return -1; }
    mu_optim_config oc;
    mu_optim_config_default(&oc);
    mu_optim *o = mu_optim_new(&oc, be);
    int rc = setup(m, o, mode);
    int32_t *ids = malloc(sizeof *ids * (size_t)B * T), *tg = malloc(sizeof *tg * (size_t)B * T);
    mu_rng r;
    mu_rng_seed(&r, 5);
    for (int n = 0; n < B * T; n++) ids[n] = (int32_t)mu_rng_below(&r, (uint64_t)c->vocab);
    for (int n = 0; n < B * T; n++) tg[n] = (n + 1) % T ? ids[n + 1] : -1;
    mu_batch b = { B, T, ids, NULL };
    mu_fwd_opts fo = { .train = 1 };
    for (int step = 0; !rc && step < 2; step++) {
        mu_model_zero_grad(m);
        rc = mu_model_forward(m, &b, &fo, err, sizeof err);
        if (!rc && isnan(mu_model_backward_ce(m, tg, NULL, 0, NULL, err, sizeof err))) rc = -1;
        if (rc) break;
        mu_optim_step(o, NULL, NULL);
        for (int i = 0; i < mu_model_n_params(m); i++)
            if (mu_model_param(m, i)->trainable) mu_model_param_changed(m, i);
    }
    if (rc) fprintf(stderr, "bench_memory: %s\n", *err ? err : "out of memory");
    u->peak = (double)peak;
    u->params = (double)mu_model_param_bytes(m) + lora_bytes(m);
    u->optim = (double)mu_optim_state_bytes(o);
    u->trained = 0;
    for (int i = 0; i < mu_optim_count(o); i++) u->trained += (double)mu_optim_set(o, i)->n;
    free(ids); free(tg);
    mu_optim_free(o);
    mu_model_free(m);
    return rc;
}

static void run_case(const char *shape, const mu_config *c, mu_weights w, train_mode mode, int B,
                     int T)
{
    usage u;
    if (measure(c, w, mode, B, T, &u)) {
        printf("| %s | %s | %s | failed | | | | |\n", shape, w == MU_WEIGHTS_BF16 ? "bf16" : "f32",
               MODE_NAMES[mode]);
        return;
    }
    printf("| %s | %s | %s | %.2fM | %.1f | %.1f | %.1f | %.1f |\n", shape,
           w == MU_WEIGHTS_BF16 ? "bf16" : "f32", MODE_NAMES[mode], u.trained / 1e6, u.peak / MIB,
           u.params / MIB, u.optim / MIB, (u.peak - u.params - u.optim) / MIB);
    fflush(stdout);
}

int main(void)
{
    mu_config c;
    bench_shape_smollm2(&c);
    printf("bench_memory: device memory of a training step (counted on the CPU backend posing as\n"
           "a device): full training vs 1%% of the parameter count as down_proj value vectors, the\n"
           "masked tensors whole (dense gradient and bf16 master) or packed (masked elements only),\n"
           "and rank-16 LoRA adapters on every layer matrix (params+grads: the adapters' too).\n\n");
    printf("| shape | weights | trained | elements | peak MiB | params+grads MiB | optimizer MiB | "
           "rest MiB |\n|---|---|---|---|---|---|---|---|\n");
    const char *sh = getenv("MU_BENCH_SHAPES");
    if (!sh) sh = "smollm2-135m,llama3-8b";
    for (int wi = 0; strstr(sh, "smollm2") && wi < 2; wi++)
        for (int mode = 0; mode <= LORA16; mode++)
            run_case("smollm2-135m 4x128", &c, wi ? MU_WEIGHTS_BF16 : MU_WEIGHTS_F32,
                     (train_mode)mode, 4, 128);
    const char *e = getenv("MU_BENCH_MEMORY_8B_LAYERS");
    int layers = e ? atoi(e) : 2;
    if (layers > 0 && strstr(sh, "llama3-8b")) {
        bench_shape_llama3_8b(&c, layers);
        char shape[64];
        snprintf(shape, sizeof shape, "llama3-8b (%d layers) 1x128", layers);
        run_case(shape, &c, MU_WEIGHTS_BF16, MASKED_WHOLE, 1, 128);
        run_case(shape, &c, MU_WEIGHTS_BF16, MASKED_PACKED, 1, 128);
        run_case(shape, &c, MU_WEIGHTS_BF16, LORA16, 1, 128);
    }
    return 0;
}
