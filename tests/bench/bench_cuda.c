/* bench_cuda.c — speed and memory of the model on the CUDA backend next to PyTorch on the
 * same GPU (make bench; scripts/gpu-check.sh). Skips (exit 0, one line) when mu was built
 * without CUDA or no device is present.
 *
 * Shapes, random N(0, 0.02) weights, batch MU_BENCH_B x MU_BENCH_T (8 x 256) tokens:
 *   smollm2-135m  30 layers, width 576, 9 heads / 3 kv, MLP 1536, vocab 49152, tied
 *   llama3-8b/NL  width 4096, 32 heads / 8 kv, head dim 128, MLP 14336, vocab 128256,
 *                 untied, N of its 32 layers (below)
 * For each weight storage in MU_BENCH_DTYPES (default "bf16,f32"; bf16 = GEMM/embedding
 * weights in bf16, f32 accumulation, f32 masters of trained weights) and each shape in
 * MU_BENCH_SHAPES (default "smollm2-135m,llama3-8b"), the passes
 *   forward  inference forward (logits of every position)
 *   train    forward + cross-entropy + backward + AdamW step on the device (mu_optim, every
 *            parameter, dense) + mu_model_param_changed
 *   lora     the step training rank-16 LoRA adapters on every layer matrix, the weights
 *            frozen (mu-train --lora 16: the relearning attack that fits one GPU at 8B);
 *            run last in its group (the adapters stay on the model)
 *   masked   the same step with every layer's mlp.down_proj trainable PACKED (gradient and
 *            f32 master of the masked elements only, as mu-train does), its optimizer set
 *            holding 1% of the MODEL's parameter count as whole value vectors (columns f of
 *            down_proj [D, F], picked by a seeded RNG over all layers' columns)
 * print tokens/s, GFLOP/s and MFU (FLOPs as bench.h counts them: fwd for forward, fwd+bwd
 * for train, fwd + bwd_down for masked) against the peak of that storage (f32:
 * mu_cuda_peak_f32_flops, no tensor cores; bf16: mu_cuda_peak_bf16_flops; both use the
 * max boost clock; MU_BENCH_PEAK_TFLOPS overrides), the time split of a step, and the
 * device memory in use after the pass minus the baseline before the model was created,
 * with parameters+gradients (mu_model_param_bytes) and optimizer state
 * (mu_optim_state_bytes). Best of MU_BENCH_ITERS timed iterations (default 3) after one
 * warm-up.
 * Depth of llama3-8b: bf16 forward and masked at all 32 layers (16 GB of weights), full
 * training at MU_BENCH_8B_FULL_LAYERS (default 16 for bf16, 8 for f32: f32 master +
 * gradient + AdamW moments + the bf16 copy are 18 bytes/parameter, 145 GB at 32 layers);
 * f32 forward and masked at MU_BENCH_8B_F32_LAYERS (default 16). Failures to allocate print
 * one line and the bench goes on with the next case.
 * Order: smollm2-135m in bf16 then f32, then llama3-8b (per storage: full training first,
 * the headline figure, then forward and masked deeper).
 * MU_BENCH_BUDGET_S (default 0 = none): wall-clock budget; a model whose random init
 * (single-threaded on the host: ~2 min for 8 G parameters; rate timed on the first model)
 * would not fit what is left is skipped with one line, and so are the PyTorch runs when
 * under 45 s are left.
 * PyTorch: tests/bench/torch_model.py --device cuda on the same shapes, depths and passes
 * via $MU_PYTHON (MU_BENCH_SKIP_TORCH=1 skips it): f32 for f32, and for bf16 both autocast
 * over f32 weights (the comparison of the mu/torch column) and pure bf16 weights.
 * A markdown table of every figure ends the output.
 * MU_BENCH_CPU_SMOKE=1 runs the whole bench on the CPU backend with a tiny shape (no
 * device figures: MFU and memory 0), to check its logic on a machine without a GPU. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "model.h"
#include "optim.h"
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
enum { P_FORWARD = 1, P_TRAIN = 2, P_MASKED = 4, P_LORA = 8 };
#define LORA_R 16
#define MAX_ROWS 64
#define GIB (1024.0 * 1024.0 * 1024.0)

/* One line of the final table. tokens_s < 0: no figure, note says why. */
typedef struct {
    char label[40], note[300];
    const char *dtype, *pass;
    double tokens_s, mfu, peak_gib, params_gib, optim_gib;
    double torch_tokens_s, torch_peak_gib, torch_pure_tokens_s;   /* 0: none */
} bench_row;

/* A model to create and the passes to run on it. */
typedef struct {
    const char *shape;          /* "smollm2-135m", "llama3-8b", "tiny" */
    int layers;
    mu_weights weights;
    unsigned passes;            /* P_* */
} bench_group;

typedef struct {
    const mu_backend *be;
    int smoke, B, T, iters;
    double peak_override;       /* FLOP/s, 0: the device's */
    double budget_s, t0;        /* wall-clock budget (0: none) and start */
    double init_rate;           /* parameters/s of the random init seen so far, 0: unknown */
    bench_row rows[MAX_ROWS];
    int nrows;
} bench;

/* Host buffers of one group's batch. */
typedef struct {
    mu_batch b;
    int32_t *ids, *targets;
    bench_flops f;
} bench_data;

static int env_int(const char *name, int def)
{
    const char *s = getenv(name);
    return s && *s ? atoi(s) : def;
}

static const char *dtype_name(mu_weights w) { return w == MU_WEIGHTS_BF16 ? "bf16" : "f32"; }

static size_t mem_used(const bench *bn) { return bn->smoke ? 0 : mu_cuda_mem_used(); }

static double peak_flops(const bench *bn, mu_weights w)
{
    if (bn->peak_override > 0) return bn->peak_override;
    return w == MU_WEIGHTS_BF16 ? mu_cuda_peak_bf16_flops() : mu_cuda_peak_f32_flops();
}

static double elapsed(const bench *bn) { return mu_now() - bn->t0; }

static bench_row *add_row(bench *bn, const char *label, mu_weights w, const char *pass)
{
    static bench_row spill;                     /* past MAX_ROWS: figures printed, not tabled */
    bench_row *r = bn->nrows < MAX_ROWS ? &bn->rows[bn->nrows++] : &spill;
    memset(r, 0, sizeof *r);
    snprintf(r->label, sizeof r->label, "%s", label);
    r->dtype = dtype_name(w);
    r->pass = pass;
    r->tokens_s = -1;
    return r;
}

static void shape_config(const char *shape, int layers, mu_config *c)
{
    if (!strcmp(shape, "smollm2-135m")) bench_shape_smollm2(c);
    else if (!strcmp(shape, "llama3-8b")) bench_shape_llama3_8b(c, layers);
    else bench_shape_tiny(c);
    c->n_layer = layers;
}

static void group_label(const bench_group *g, char *out, size_t n)
{
    if (!strcmp(g->shape, "smollm2-135m") && g->layers == 30) snprintf(out, n, "%s", g->shape);
    else snprintf(out, n, "%s/%dL", g->shape, g->layers);
}

static const char *pass_name(unsigned p)
{
    return p == P_FORWARD ? "forward" : p == P_TRAIN ? "train" : p == P_MASKED ? "masked" : "lora";
}

/* ---- one timed pass ------------------------------------------------------------------- */
/* Seconds of the parts of one step: forward, cross-entropy, backward, optimizer step (with
 * the bf16 refresh). The loss gradient stays on the device (mu_model_backward_ce), so the
 * cross-entropy is timed inside the backward and ce is 0. */
typedef struct { double fwd, ce, bwd, opt, total; } step_times;

/* One training step (or a forward alone when opt is NULL); 0, or -1 + err. */
static int run_step(const bench *bn, mu_model *m, bench_data *d, mu_optim *opt, const int *pidx,
                    int np, step_times *st, char *err, size_t errlen)
{
    const mu_backend *be = bn->be;
    mu_fwd_opts o = { .train = 1 };
    double t0 = mu_now(), t1, t2, t3;
    if (mu_model_forward(m, &d->b, opt ? &o : NULL, err, errlen)) return -1;
    be->sync();
    t1 = mu_now();
    if (opt) {
        t2 = t1;
        mu_model_zero_grad(m);
        if (isnan(mu_model_backward_ce(m, d->targets, NULL, 0, NULL, err, errlen))) return -1;
        be->sync();
        t3 = mu_now();
        mu_optim_step(opt, NULL, NULL);
        for (int i = 0; i < np; i++) mu_model_param_changed(m, pidx[i]);
        be->sync();
    } else {
        t2 = t3 = t1;
    }
    double t4 = mu_now();
    *st = (step_times){ t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0 };
    return 0;
}

/* Best of bn->iters steps after one warm-up; 0, or -1 + err. */
static int time_steps(const bench *bn, mu_model *m, bench_data *d, mu_optim *opt,
                      const int *pidx, int np, step_times *best, char *err, size_t errlen)
{
    best->total = 1e30;
    for (int it = 0; it <= bn->iters; it++) {
        step_times st;
        bn->be->sync();
        if (run_step(bn, m, d, opt, pidx, np, &st, err, errlen)) return -1;
        if (it && st.total < best->total) *best = st;
    }
    return 0;
}

/* Fills row r with the figures of a pass that took st at `flops` per step. */
static void record(bench *bn, bench_row *r, const step_times *st, double flops, mu_weights w,
                   size_t base, const mu_model *m, const mu_optim *opt)
{
    int N = bn->B * bn->T;
    double peak = peak_flops(bn, w), used = (double)mem_used(bn);
    r->tokens_s = N / st->total;
    r->mfu = peak > 0 ? 100 * flops / st->total / peak : 0;
    r->peak_gib = used > (double)base ? (used - (double)base) / GIB : 0;
    r->params_gib = mu_model_param_bytes(m) / GIB;
    r->optim_gib = opt ? mu_optim_state_bytes(opt) / GIB : 0;
    printf("%-16s %-4s %-7s %9.0f tokens/s %9.1f GFLOP/s  MFU %5.1f%%  mem %6.2f GiB "
           "(params+grads %.2f, optimizer %.2f)\n", r->label, r->dtype, r->pass, r->tokens_s,
           flops / st->total / 1e9, r->mfu, r->peak_gib, r->params_gib, r->optim_gib);
    if (opt)
        printf("%-16s %-4s %-7s step %.1f ms: forward %.1f, cross-entropy %.1f, backward %.1f, "
               "optimizer %.1f\n", r->label, r->dtype, r->pass, 1e3 * st->total, 1e3 * st->fwd,
               1e3 * st->ce, 1e3 * st->bwd, 1e3 * st->opt);
    fflush(stdout);
}

static void fail_row(bench_row *r, const char *fmt, const char *what)
{
    snprintf(r->note, sizeof r->note, fmt, what);
    printf("%-16s %-4s %-7s %s\n", r->label, r->dtype, r->pass, r->note);
    fflush(stdout);
}

/* ---- optimizers of the two training passes ------------------------------------------- */
/* Every parameter trainable, dense AdamW sets. NULL + err on out of memory. pidx gets
 * the parameter indices in the order added (n_params of them). */
static mu_optim *dense_optimizer(const bench *bn, mu_model *m, int *pidx, int *np, char *err,
                                 size_t errlen)
{
    mu_optim_config oc;
    mu_optim_config_default(&oc);
    if (mu_model_set_all_trainable(m, 1)) { snprintf(err, errlen, "out of device memory for the gradients"); return NULL; }
    mu_optim *o = mu_optim_new(&oc, bn->be);
    *np = 0;
    for (int i = 0; o && i < mu_model_n_params(m); i++) {
        mu_param *p = mu_model_param(m, i);
        mu_idxset set;
        mu_idxset_init_dense(&set, p->numel);
        if (mu_optim_add(o, p->info.name, p->w, p->g, &set) < 0) {
            snprintf(err, errlen, "out of device memory for the AdamW state of %s", p->info.name);
            mu_optim_free(o);
            return NULL;
        }
        pidx[(*np)++] = i;
    }
    if (!o) snprintf(err, errlen, "out of memory for the optimizer");
    return o;
}

/* Picks k of the L*F columns of the down_proj weights with a seeded partial shuffle;
 * per[l] receives how many of layer l's, cols (sorted per layer, layer-major) which. */
static int pick_columns(int L, int F, int64_t k, int64_t *per, int64_t *cols)
{
    int64_t n = (int64_t)L * F;
    int64_t *all = malloc(sizeof *all * (size_t)n);
    char *hit = calloc((size_t)n, 1);
    if (!all || !hit) { free(all); free(hit); return -1; }
    mu_rng r;
    mu_rng_seed(&r, 7);
    for (int64_t i = 0; i < n; i++) all[i] = i;
    for (int64_t i = 0; i < k; i++) {
        int64_t j = i + (int64_t)mu_rng_below(&r, (uint64_t)(n - i));
        int64_t t = all[i]; all[i] = all[j]; all[j] = t;
        hit[all[i]] = 1;
    }
    int64_t w = 0;
    for (int l = 0; l < L; l++) {
        per[l] = 0;
        for (int f = 0; f < F; f++)
            if (hit[(int64_t)l * F + f]) { cols[w++] = f; per[l]++; }
    }
    free(all); free(hit);
    return 0;
}

/* The index set of columns cols[0..nc) of a [D, F] row-major matrix: d*F + f, ascending. */
static int column_set(int64_t D, int64_t F, const int64_t *cols, int64_t nc, mu_idxset *set,
                      char *err, size_t errlen)
{
    int64_t *idx = malloc(sizeof *idx * (size_t)(D * nc));
    if (!idx) { snprintf(err, errlen, "out of host memory for an index set"); return -1; }
    for (int64_t d = 0, w = 0; d < D; d++)
        for (int64_t j = 0; j < nc; j++) idx[w++] = d * F + cols[j];
    int rc = mu_idxset_init_list(set, D * F, idx, D * nc, err, errlen);
    free(idx);
    return rc;
}

/* Every layer's mlp.down_proj trainable, AdamW sets of whole columns holding 1% of the
 * model's parameter count. NULL + err on failure. */
static mu_optim *masked_optimizer(const bench *bn, mu_model *m, int *pidx, int *np, char *err,
                                  size_t errlen)
{
    const mu_config *c = mu_model_config(m);
    int L = c->n_layer, F = c->d_ff, D = c->d_model;
    double total = 0;
    for (int i = 0; i < mu_model_n_params(m); i++) total += (double)mu_model_param(m, i)->numel;
    int64_t k = (int64_t)(0.01 * total / D + 0.999999);
    if (k > (int64_t)L * F) k = (int64_t)L * F;
    int64_t *per = malloc(sizeof *per * (size_t)L), *cols = malloc(sizeof *cols * (size_t)(k + 1));
    if (!per || !cols || pick_columns(L, F, k, per, cols)) {
        free(per); free(cols);
        snprintf(err, errlen, "out of host memory for the mask");
        return NULL;
    }
    mu_optim_config oc;
    mu_optim_config_default(&oc);
    mu_optim *o = mu_optim_new(&oc, bn->be);
    int64_t at = 0;
    *np = 0;
    for (int l = 0; o && l < L; at += per[l], l++) {
        char name[96];
        snprintf(name, sizeof name, "model.layers.%d.mlp.down_proj.weight", l);
        int i = mu_model_find(m, name);
        mu_param *p = i >= 0 ? mu_model_param(m, i) : NULL;
        mu_idxset set;
        if (!p || p->info.shape[0] != D || p->info.shape[1] != F) {
            snprintf(err, errlen, "%s: missing or not [%d, %d]", name, D, F);
        } else if (per[l] == 0) {
            continue;
        } else if (column_set(D, F, cols + at, per[l], &set, err, errlen) == 0) {
            if (mu_model_set_trainable_elems(m, i, &set)) {   /* packed, as mu-train does */
                mu_idxset_free(&set);
                snprintf(err, errlen, "out of device memory for the gradient of %s", name);
            } else if (mu_optim_add_packed(o, name, p->wp, p->g, &set, &p->el) >= 0) {
                pidx[(*np)++] = i;
                continue;
            } else {
                snprintf(err, errlen, "out of device memory for the AdamW state of %s", name);
            }
        }
        mu_optim_free(o);
        o = NULL;
    }
    free(per); free(cols);
    if (o) {
        printf("masked: %lld value vectors of %d (%.2f%% of %.0f parameters) over %d layers\n",
               (long long)k, D, 100.0 * k * D / total, total, L);
    } else if (!*err) {
        snprintf(err, errlen, "out of memory for the optimizer");
    }
    return o;
}

/* Rank-16 LoRA adapters (mu-train --lora 16) on every layer matrix, the weights frozen: A
 * small random, B 0, AdamW sets over A and B. NULL + err on failure. The adapters stay on
 * the model (the LoRA pass runs last). */
static mu_optim *lora_optimizer(const bench *bn, mu_model *m, char *err, size_t errlen)
{
    mu_optim_config oc;
    mu_optim_config_default(&oc);
    mu_optim *o = mu_optim_new(&oc, bn->be);
    mu_rng r;
    mu_rng_seed(&r, 9);
    for (int i = 0; o && i < mu_model_n_params(m); i++) {
        if (!mu_model_lora_eligible(m, i)) continue;
        mu_param *p = mu_model_param(m, i);
        int in, out;
        mu_model_matrix_dims(m, i, &in, &out);
        size_t na = (size_t)LORA_R * in, nb = (size_t)LORA_R * out;
        float *ab = calloc(na + nb, sizeof *ab);
        for (size_t e = 0; ab && e < na; e++) ab[e] = (float)(0.01 * mu_rng_normal(&r));
        int rc = ab ? mu_model_add_lora(m, i, LORA_R, 2.0f, ab, ab + na) : -1;
        free(ab);
        const mu_lora *a = rc ? NULL : mu_model_lora(m, i);
        mu_idxset sa, sb;
        if (a) {
            mu_idxset_init_dense(&sa, (int64_t)a->r * a->K);
            mu_idxset_init_dense(&sb, (int64_t)a->M * a->r);
        }
        if (!a || mu_optim_add(o, "lora_A", a->A, a->gA, &sa) < 0 || mu_optim_add(o, "lora_B", a->B, a->gB, &sb) < 0) {
            snprintf(err, errlen, "out of memory for the LoRA adapter of %s", p->info.name);
            mu_optim_free(o);
            return NULL;
        }
    }
    if (!o) snprintf(err, errlen, "out of memory for the optimizer");
    return o;
}

/* ---- passes -------------------------------------------------------------------------- */
static void pass_forward(bench *bn, mu_model *m, bench_data *d, const char *label,
                         mu_weights w, size_t base)
{
    char err[256];
    step_times st;
    bench_row *r = add_row(bn, label, w, "forward");
    if (time_steps(bn, m, d, NULL, NULL, 0, &st, err, sizeof err)) { fail_row(r, "%s", err); return; }
    record(bn, r, &st, d->f.fwd, w, base, m, NULL);
}

/* MU_BENCH_CPU_SMOKE: every layer's down_proj weight, host [L]: as mu_model_get_param reads
 * it (f32 [D*F]; with an adapter the merged weight), or with `stored` the bytes the GEMMs
 * read (bf16 or f32). NULL on no memory. */
static void **snapshot_down(mu_model *m, int stored)
{
    const mu_config *c = mu_model_config(m);
    void **w = calloc((size_t)c->n_layer, sizeof *w);
    for (int l = 0; w && l < c->n_layer; l++) {
        char name[96];
        snprintf(name, sizeof name, "model.layers.%d.mlp.down_proj.weight", l);
        int i = mu_model_find(m, name);
        const mu_param *p = mu_model_param(m, i);
        size_t nb = (size_t)p->numel * (stored && p->w16 ? 2 : 4);
        if (!(w[l] = malloc(nb))) return NULL;
        if (stored) memcpy(w[l], p->w16 ? (const void *)p->w16 : (const void *)p->w, nb);
        else if (mu_model_get_param(m, i, w[l])) return NULL;
    }
    return w;
}

/* MU_BENCH_CPU_SMOKE: after LoRA steps the down_proj weights are stored as before and every
 * adapter's B moved off 0. 0 ok, -1 with a line saying what is wrong. */
static int check_lora(mu_model *m, void **before)
{
    const mu_config *c = mu_model_config(m);
    void **after = snapshot_down(m, 1);
    int bad = !before || !after, moved = 0, adapters = 0;
    for (int i = 0; !bad && i < mu_model_n_params(m); i++) {
        const mu_lora *a = mu_model_lora(m, i);
        if (!a) continue;
        adapters++;
        for (int64_t e = 0; e < (int64_t)a->M * a->r; e++)
            if (a->B[e] != 0) { moved++; break; }
    }
    size_t nb = (size_t)c->d_model * c->d_ff * (mu_model_weights(m) == MU_WEIGHTS_BF16 ? 2 : 4);
    for (int l = 0; !bad && l < c->n_layer; l++) bad = memcmp(before[l], after[l], nb) != 0;
    for (int l = 0; l < c->n_layer; l++) { if (before) free(before[l]); if (after) free(after[l]); }
    free(before); free(after);
    if (bad || moved != adapters || adapters == 0) {
        printf("lora check: FAILED (%d of %d adapters moved, weights %s)\n", moved, adapters, bad ? "changed" : "kept");
        return -1;
    }
    printf("lora check: ok (%d adapters moved, the weights kept)\n", adapters);
    return 0;
}

/* MU_BENCH_CPU_SMOKE: after masked steps every down_proj column either changed in all D
 * elements (trained) or in none, and the trained ones hold 1% of the parameters (the
 * figure masked_optimizer printed). 0 ok, -1 with a line saying what is wrong. */
static int check_masked(mu_model *m, void **before_v, const mu_optim *o)
{
    const mu_config *c = mu_model_config(m);
    float **before = (float **)before_v, **after = (float **)snapshot_down(m, 0);
    int D = c->d_model, F = c->d_ff, bad = !before || !after;
    int64_t cols = 0, set_n = 0;
    for (int i = 0; i < mu_optim_count(o); i++) set_n += mu_optim_set(o, i)->n;
    for (int l = 0; !bad && l < c->n_layer; l++)
        for (int f = 0; f < F; f++) {
            int changed = 0;
            for (int d = 0; d < D; d++) changed += before[l][(size_t)d * F + f] != after[l][(size_t)d * F + f];
            if (changed != 0 && changed != D) bad = 1;
            cols += changed == D;
        }
    for (int l = 0; l < c->n_layer; l++) { if (before) free(before[l]); if (after) free(after[l]); }
    free(before); free(after);
    if (bad || cols * D != set_n) {
        printf("masked check: FAILED (%lld whole columns changed, %lld elements in the sets)\n",
               (long long)cols, (long long)set_n);
        return -1;
    }
    printf("masked check: ok (%lld columns of %d changed, no other element)\n", (long long)cols, D);
    return 0;
}

/* A training pass (P_TRAIN: dense, P_MASKED: 1% of value vectors, P_LORA: rank-16 adapters,
 * left on m); leaves m's weights frozen. */
static void pass_train(bench *bn, mu_model *m, bench_data *d, const char *label, mu_weights w,
                       size_t base, unsigned pass)
{
    char err[256] = "";
    step_times st;
    int np = 0, *pidx = malloc(sizeof *pidx * (size_t)mu_model_n_params(m));
    bench_row *r = add_row(bn, label, w, pass_name(pass));
    mu_optim *o = !pidx ? NULL : pass == P_TRAIN ? dense_optimizer(bn, m, pidx, &np, err, sizeof err)
                 : pass == P_MASKED ? masked_optimizer(bn, m, pidx, &np, err, sizeof err)
                                    : lora_optimizer(bn, m, err, sizeof err);
    void **before = o && bn->smoke && pass != P_TRAIN ? snapshot_down(m, pass == P_LORA) : NULL;
    double bwd = pass == P_TRAIN ? d->f.bwd : pass == P_MASKED ? d->f.bwd_down : d->f.bwd_data;
    if (!o) fail_row(r, "%s", pidx ? err : "out of host memory");
    else if (time_steps(bn, m, d, o, pidx, np, &st, err, sizeof err)) fail_row(r, "%s", err);
    else record(bn, r, &st, d->f.fwd + bwd, w, base, m, o);
    if (o && bn->smoke && pass == P_MASKED && check_masked(m, before, o)) exit(1);
    if (o && bn->smoke && pass == P_LORA && check_lora(m, before)) exit(1);
    mu_optim_free(o);
    mu_model_set_all_trainable(m, 0);
    free(pidx);
}

/* ---- PyTorch ------------------------------------------------------------------------- */
/* Copies torch's figures for rows [first, bn->nrows) of this group. */
static void merge_torch(bench *bn, int first, const bench_torch_row *t, int nt)
{
    for (int i = first; i < bn->nrows; i++) {
        bench_row *r = &bn->rows[i];
        for (int j = 0; j < nt; j++) {
            if (strcmp(t[j].pass, r->pass)) continue;
            if (!strcmp(t[j].mode, "pure")) r->torch_pure_tokens_s = t[j].tokens_s;
            else { r->torch_tokens_s = t[j].tokens_s; r->torch_peak_gib = t[j].peak_gib; }
        }
    }
}

static void torch_group(bench *bn, const bench_group *g, int first)
{
    if (bn->budget_s > 0 && bn->budget_s - elapsed(bn) < 45) {
        printf("torch %s/%dL: skipped (under 45 s of MU_BENCH_BUDGET_S left)\n", g->shape, g->layers);
        return;
    }
    char passes[64] = "", args[512];
    for (unsigned p = P_FORWARD; p <= P_LORA; p <<= 1)
        if (g->passes & p) snprintf(passes + strlen(passes), sizeof passes - strlen(passes),
                                    "%s%s", *passes ? "," : "", pass_name(p));
    int bf16 = g->weights == MU_WEIGHTS_BF16;
    for (int pure = 0; pure <= bf16; pure++) {
        bench_torch_row t[8];
        snprintf(args, sizeof args, "--device %s --dtype %s%s --batch %d --seq %d --iters %d "
                 "--shape %s --layers %d --passes %s", bn->smoke ? "cpu" : "cuda",
                 bf16 ? "bfloat16" : "float32", pure ? " --pure-bf16" : "", bn->B, bn->T,
                 bn->iters, g->shape, g->layers, passes);
        int nt = bench_torch_run(args, t, 8);
        if (nt > 0) merge_torch(bn, first, t, nt);
    }
}

/* ---- groups -------------------------------------------------------------------------- */
/* 1 when the model of c can be created within the budget; else a row per pass saying so. */
static int budget_allows(bench *bn, const bench_group *g, const char *label, double params)
{
    double left = bn->budget_s - elapsed(bn), need = bn->init_rate > 0 ? params / bn->init_rate : 0;
    if (bn->budget_s <= 0 || 1.2 * need + 45 < left) return 1;
    char why[128];
    snprintf(why, sizeof why, "random init of %.2f G parameters ~%.0f s, %.0f s of MU_BENCH_BUDGET_S left",
             params / 1e9, need, left);
    for (unsigned p = P_FORWARD; p <= P_LORA; p <<= 1)
        if (g->passes & p) fail_row(add_row(bn, label, g->weights, pass_name(p)), "skipped: %s", why);
    return 0;
}

static int data_new(const bench *bn, const mu_config *c, bench_data *d)
{
    int N = bn->B * bn->T;
    d->ids = malloc(sizeof *d->ids * N);
    d->targets = malloc(sizeof *d->targets * N);
    if (!d->ids || !d->targets) return -1;
    bench_random_tokens(c, bn->B, bn->T, d->ids, d->targets);
    d->b = (mu_batch){ bn->B, bn->T, d->ids, NULL };
    d->f = bench_count_flops(c, bn->B, bn->T);
    return 0;
}

static void data_free(bench_data *d) { free(d->ids); free(d->targets); }

static void run_group(bench *bn, const bench_group *g)
{
    char label[40], err[256];
    mu_config c;
    shape_config(g->shape, g->layers, &c);
    group_label(g, label, sizeof label);
    if (!budget_allows(bn, g, label, bench_param_count(&c))) return;
    int first = bn->nrows;
    size_t base = mem_used(bn);
    double t = mu_now();
    mu_model *m = mu_model_init_random_as(&c, 1, 0.02f, bn->be, g->weights, err, sizeof err);
    t = mu_now() - t;
    bench_data d = { 0 };
    if (m && data_new(bn, &c, &d) == 0) {
        bn->init_rate = bench_param_count(&c) / (t > 1e-3 ? t : 1e-3);
        printf("%s %s: %.3f G parameters (%.2f GiB on the device), random init %.1f s\n", label,
               dtype_name(g->weights), bench_param_count(&c) / 1e9, mu_model_param_bytes(m) / GIB, t);
        if (g->passes & P_FORWARD) pass_forward(bn, m, &d, label, g->weights, base);
        if (g->passes & P_MASKED) pass_train(bn, m, &d, label, g->weights, base, P_MASKED);
        if (g->passes & P_TRAIN) pass_train(bn, m, &d, label, g->weights, base, P_TRAIN);
        if (g->passes & P_LORA) pass_train(bn, m, &d, label, g->weights, base, P_LORA);   /* last: its adapters stay */
    } else {
        for (unsigned p = P_FORWARD; p <= P_LORA; p <<= 1)
            if (g->passes & p) fail_row(add_row(bn, label, g->weights, pass_name(p)), "%s",
                                        m ? "out of host memory for the batch" : err);
    }
    data_free(&d);
    mu_model_free(m);
    if (m) torch_group(bn, g, first);
}

/* The groups of one shape and storage type, in the order they run: for llama3-8b the
 * full training first (the headline figure), then forward and masked deeper. */
static int plan_shape(const bench *bn, const char *shape, mu_weights w, bench_group *out)
{
    int n = 0, bf16 = w == MU_WEIGHTS_BF16;
    if (bn->smoke) {                           /* both layouts of the 8B plan, tiny */
        out[n++] = (bench_group){ "tiny", 1, w, P_TRAIN };
        out[n++] = (bench_group){ "tiny", 2, w, P_FORWARD | P_MASKED | P_LORA };
    } else if (!strcmp(shape, "smollm2-135m")) {
        out[n++] = (bench_group){ "smollm2-135m", 30, w, P_FORWARD | P_MASKED | P_TRAIN | P_LORA };
    } else {
        int deep = bf16 ? 32 : env_int("MU_BENCH_8B_F32_LAYERS", 16);
        int full = env_int("MU_BENCH_8B_FULL_LAYERS", bf16 ? 16 : 8);
        if (deep < 1 || deep > 32) deep = bf16 ? 32 : 16;
        if (full < 1 || full > 32) full = bf16 ? 16 : 8;
        if (full == deep) out[n++] = (bench_group){ "llama3-8b", deep, w, P_FORWARD | P_MASKED | P_TRAIN | P_LORA };
        else {
            out[n++] = (bench_group){ "llama3-8b", full, w, P_TRAIN };
            out[n++] = (bench_group){ "llama3-8b", deep, w, P_FORWARD | P_MASKED | P_LORA };
        }
    }
    return n;
}

/* Every group: shapes in order (smollm2-135m first: cheap), each in bf16 then f32. */
static int plan(const bench *bn, bench_group *out, int max)
{
    const char *dtypes = getenv("MU_BENCH_DTYPES") ? getenv("MU_BENCH_DTYPES") : "bf16,f32";
    const char *shapes = getenv("MU_BENCH_SHAPES") ? getenv("MU_BENCH_SHAPES") : "smollm2-135m,llama3-8b";
    const char *names[2] = { "smollm2-135m", "llama3-8b" };
    const mu_weights ws[2] = { MU_WEIGHTS_BF16, MU_WEIGHTS_F32 };
    int n = 0;
    for (int s = 0; s < (bn->smoke ? 1 : 2); s++) {
        if (!bn->smoke && !strstr(shapes, names[s])) continue;
        for (int k = 0; k < 2; k++)
            if (strstr(dtypes, dtype_name(ws[k])) && n + 2 <= max)
                n += plan_shape(bn, names[s], ws[k], out + n);
    }
    return n;
}

/* ---- the table ----------------------------------------------------------------------- */
static void print_table(const bench *bn)
{
    printf("\n| shape | dtype | pass | mu tokens/s | MFU | peak GiB | torch tokens/s | mu/torch "
           "| torch peak GiB | torch pure-bf16 tokens/s |\n"
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < bn->nrows; i++) {
        const bench_row *r = &bn->rows[i];
        printf("| %s | %s | %s | ", r->label, r->dtype, r->pass);
        if (r->tokens_s < 0) printf("%s | | | ", r->note);
        else printf("%.0f | %.1f%% | %.2f | ", r->tokens_s, r->mfu, r->peak_gib);
        if (r->torch_tokens_s > 0) printf("%.0f | ", r->torch_tokens_s);
        else printf("- | ");
        if (r->torch_tokens_s > 0 && r->tokens_s > 0) printf("%.2f | ", r->tokens_s / r->torch_tokens_s);
        else printf("- | ");
        if (r->torch_peak_gib > 0) printf("%.2f | ", r->torch_peak_gib);
        else printf("- | ");
        if (r->torch_pure_tokens_s > 0) printf("%.0f |\n", r->torch_pure_tokens_s);
        else printf("- |\n");
    }
}

/* Starts the backend (or says why the bench skips); 0 to go on, 1 to skip. */
static int start(bench *bn)
{
    memset(bn, 0, sizeof *bn);
    bn->smoke = env_int("MU_BENCH_CPU_SMOKE", 0) == 1;
    if (bn->smoke) bn->be = mu_backend_cpu();
    else if (mu_cuda_device_count() <= 0) { printf("bench_cuda: skipped (no CUDA device)\n"); return 1; }
    else if (!(bn->be = mu_backend_cuda())) { printf("bench_cuda: skipped (the CUDA backend could not start)\n"); return 1; }
    bn->iters = env_int("MU_BENCH_ITERS", 3);
    if (bn->iters < 1) bn->iters = 1;
    bn->B = env_int("MU_BENCH_B", 8);
    bn->T = env_int("MU_BENCH_T", 256);
    if (bn->B < 1) bn->B = 8;
    if (bn->T < 2) bn->T = 256;
    if (getenv("MU_BENCH_PEAK_TFLOPS")) bn->peak_override = atof(getenv("MU_BENCH_PEAK_TFLOPS")) * 1e12;
    if (getenv("MU_BENCH_BUDGET_S")) bn->budget_s = atof(getenv("MU_BENCH_BUDGET_S"));
    bn->t0 = mu_now();
    printf("device %s, peak f32 %.1f / bf16 %.1f TFLOP/s%s, batch %d x %d tokens, best of %d\n",
           bn->smoke ? "cpu (MU_BENCH_CPU_SMOKE)" : mu_cuda_device_name(),
           peak_flops(bn, MU_WEIGHTS_F32) / 1e12, peak_flops(bn, MU_WEIGHTS_BF16) / 1e12,
           bn->peak_override > 0 ? " (MU_BENCH_PEAK_TFLOPS)" : "", bn->B, bn->T, bn->iters);
    return 0;
}

int main(void)
{
    static bench bn;
    if (start(&bn)) return 0;
    bench_group g[8];
    int n = plan(&bn, g, 8);
    for (int i = 0; i < n; i++) run_group(&bn, &g[i]);
    print_table(&bn);
    printf("\nbench_cuda: %.0f s\n", elapsed(&bn));
    return 0;
}
#endif
