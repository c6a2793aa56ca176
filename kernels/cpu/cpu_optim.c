/* cpu_optim.c — the optimizer ops of the CPU backend (kernels.h, mu_elems): AdamW and SGD
 * updates, gradient sum of squares and scaling, gather/scatter over the trained elements
 * of one tensor (whole tensors indexed by flat element, packed ones by entry: AT). OpenMP
 * over chunks (list sets) or elements (dense); every entry is written by exactly one
 * thread, and the sum of squares adds per-chunk double partials in chunk order, so results
 * do not depend on the thread count. */
#include <math.h>
#include <stdlib.h>
#include "cpu.h"
#include "tensor.h"

#define CHUNK ((int64_t)1 << MU_ELEMS_CHUNK_BITS)

/* Runs body with j (entry) and flat (element index) for every entry of e. */
#define FOR_EACH_ENTRY(e, j, flat, body)                                            \
    do {                                                                            \
        const mu_elems *e_ = (e);                                                   \
        if (e_->dense) {                                                            \
            _Pragma("omp parallel for schedule(static)")                            \
            for (int64_t j = 0; j < e_->numel; j++) { int64_t flat = j; body; }     \
        } else {                                                                    \
            _Pragma("omp parallel for schedule(dynamic, 1)")                        \
            for (int64_t c_ = 0; c_ < e_->nchunks; c_++)                            \
                for (int64_t j = e_->chunk_start[c_]; j < e_->chunk_start[c_ + 1]; j++) { \
                    int64_t flat = (c_ << MU_ELEMS_CHUNK_BITS) | e_->off[j]; body;  \
                }                                                                   \
        }                                                                           \
    } while (0)

/* Where the update ops find entry j (flat element `flat`) in w and g. */
#define AT(e, j, flat) ((e)->packed ? (j) : (flat))

/* The term entry x adds to a chunk sum: x^2 (elems_sumsq), or with cut 1 - x (wmask_cut). */
static inline double chunk_term(float x, int cut) { return cut ? 1.0 - (double)x : (double)x * x; }

/* Sum of the terms of g over chunk c's entries, in entry order. */
static double chunk_sum(const float *g, const mu_elems *e, int64_t c, int cut)
{
    double acc = 0;
    if (e->dense) {
        int64_t end = (c + 1) * CHUNK < e->numel ? (c + 1) * CHUNK : e->numel;
        for (int64_t i = c * CHUNK; i < end; i++) acc += chunk_term(g[i], cut);
    } else {
        for (int64_t j = e->chunk_start[c]; j < e->chunk_start[c + 1]; j++)
            acc += chunk_term(g[AT(e, j, (c << MU_ELEMS_CHUNK_BITS) | e->off[j])], cut);
    }
    return acc;
}

/* The sum over every entry of e: one partial per chunk (in parallel), added in chunk order. */
static double chunks_total(const float *g, const mu_elems *e, int cut)
{
    int64_t nblk = e->dense ? (e->numel + CHUNK - 1) / CHUNK : e->nchunks;
    if (nblk <= 0) return 0;
    double *part = malloc((size_t)nblk * sizeof *part);
    if (!part) abort();
    #pragma omp parallel for schedule(dynamic, 1)
    for (int64_t c = 0; c < nblk; c++) part[c] = chunk_sum(g, e, c, cut);
    double total = 0;
    for (int64_t c = 0; c < nblk; c++) total += part[c];
    free(part);
    return total;
}

double cpu_elems_sumsq(const float *g, const mu_elems *e) { return chunks_total(g, e, 0); }

void cpu_elems_scale(float *g, float s, const mu_elems *e)
{
    FOR_EACH_ENTRY(e, j, flat, { g[AT(e, j, flat)] *= s; });
}

void cpu_adamw_step(float *w, const float *g, float *m, float *v, const mu_elems *e,
                    const mu_adamw_args *a)
{
    const float omb1 = a->omb1, b2 = a->b2, omb2 = a->omb2, eps = a->eps, decay = a->decay;
    const float step_size = a->step_size, bc2_sqrt = a->bc2_sqrt;
    const int decay_on = a->decay_on;
    FOR_EACH_ENTRY(e, j, flat, {
        int64_t at = AT(e, j, flat);
        float gi = g[at];
        float wi = w[at];
        if (decay_on) wi *= decay;
        m[j] += omb1 * (gi - m[j]);         /* torch: exp_avg.lerp_(grad, 1-b1) */
        v[j] = v[j] * b2 + omb2 * (gi * gi);
        float denom = sqrtf(v[j]) / bc2_sqrt + eps;
        w[at] = wi - step_size * (m[j] / denom);
    });
}

void cpu_sgd_step(float *w, const float *g, float *buf, const mu_elems *e, const mu_sgd_args *a)
{
    const float lr = a->lr, wd = a->wd, mom = a->momentum;
    const int first = a->first;
    FOR_EACH_ENTRY(e, j, flat, {
        int64_t at = AT(e, j, flat);
        float d = g[at];
        if (wd != 0) d += wd * w[at];
        if (buf) {
            buf[j] = first ? d : buf[j] * mom + d;
            d = buf[j];
        }
        w[at] -= lr * d;
    });
}

void cpu_elems_gather(float *packed, const float *w, const mu_elems *e)
{
    FOR_EACH_ENTRY(e, j, flat, { packed[j] = w[flat]; });
}

void cpu_elems_scatter(float *w, const float *packed, const mu_elems *e)
{
    FOR_EACH_ENTRY(e, j, flat, { w[flat] = packed[j]; });
}

void cpu_elems_gather_add(float *packed, const float *g, const mu_elems *e)
{
    FOR_EACH_ENTRY(e, j, flat, { packed[j] += g[flat]; });
}

void cpu_elems_scatter_bf16(uint16_t *w16, const float *packed, const mu_elems *e)
{
    FOR_EACH_ENTRY(e, j, flat, { w16[flat] = mu_f32_to_bf16(packed[j]); });
}

/* ---- weight masking (kernels.h) ---- */
void cpu_wmask_forward(float *w, float *m, const float *w0, int64_t n)
{
    #pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < n; j++) {
        float mj = m[j] < 0 ? 0.0f : m[j] > 1 ? 1.0f : m[j];   /* NaN stays NaN */
        m[j] = mj;
        w[j] = w0[j] * mj;
    }
}

void cpu_wmask_backward(float *gm, const float *g, const float *w0, float lam, int64_t n)
{
    #pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < n; j++) {
        float gw = g[j] * w0[j];
        gm[j] = gw - lam;
    }
}

/* sum_j (1 - m[j]) over the [n] mask, as a dense set of n entries */
double cpu_wmask_cut(const float *m, int64_t n)
{
    const mu_elems e = { .numel = n, .n = n, .dense = 1 };
    return chunks_total(m, &e, 1);
}
