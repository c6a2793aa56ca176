/* t_cuda_optim.c — the optimizer ops of the CUDA backend (kernels/cuda/cuda_optim.cu)
 * against the CPU backend, and masked training on the GPU against the CPU. Every test
 * SKIPs when mu was built without CUDA or no device is present; the code is compiled
 * either way.
 *
 * Op tests: elems_sumsq, elems_scale, adamw_step, sgd_step (with and without a momentum
 * buffer), elems_gather and elems_scatter over a dense set (partial last chunk) and a
 * chunked list (an empty chunk, a partial last chunk), same inputs on both backends;
 * elems_gather_add (exact bits) and elems_scatter_bf16 (exact bf16 bits; NaN stays NaN) on
 * both sets, and the four update ops on a packed tensor (the list set's entries, [n]): bit
 * for bit against the same backend on the whole tensor, within 1e-6 of the CPU.
 * The update kernels use round-to-nearest intrinsics in the CPU's order, so values agree
 * to an ulp or two (checked at 1e-6 relative); elements outside the set must keep their
 * bits, and GUARD floats on both sides of every device output must stay untouched.
 * Weight masking ops (wmask_forward/backward): the same bits as the CPU.
 * Training: a few masked steps of lib/train on a tiny random Llama, AdamW, SGD and AdamW
 * over a weight mask (--weight-mask), cuda vs
 * cpu (trained changes agree by normalized error, everything untrained keeps its bits),
 * and a cuda run resumed from a checkpoint ends in the same bits as an uninterrupted one. */
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#include <limits.h>
#include <math.h>
#include "test.h"
#include "gpu_test.h"
#include "kernels.h"
#include "optim.h"
#include "train.h"
#include "model.h"
#include "config.h"
#include "rng.h"
#ifdef MU_HAVE_CUDA
#include "cuda/mu_cuda.h"
#endif

#define gpu_or_skip mu_test_gpu   /* gpu_test.h */


/* got (GPU) vs want (CPU): within 1e-6 relative, and bit-identical where want == base
 * (elements the op must not touch keep their bits). */
static void check_vs_cpu(const char *what, const float *got, const float *want, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        CHECK_MSG(fabsf(got[i] - want[i]) <= 1e-6f * fabsf(want[i]) + 1e-30f,
                  "%s[%lld]: gpu %.9g vs cpu %.9g", what, (long long)i, got[i], want[i]);
}

static void check_untouched(const char *what, const float *got, const float *before,
                            const mu_idxset *s)
{
    int64_t *idx = malloc((size_t)(s->n + 1) * sizeof *idx);
    CHECK(idx);
    mu_idxset_to_list(s, idx);
    for (int64_t i = 0, j = 0; i < s->numel; i++) {
        if (j < s->n && idx[j] == i) { j++; continue; }
        CHECK_MSG(memcmp(&got[i], &before[i], 4) == 0, "%s[%lld]: untrained element changed",
                  what, (long long)i);
    }
    free(idx);
}

/* AdamW scalars of step t: lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0.01. */
static mu_adamw_args adamw_args_at(int t)
{
    float lr = 1e-3f;
    return (mu_adamw_args){ .omb1 = 0.1f, .b2 = 0.999f, .omb2 = (float)(1.0 - 0.999),
                            .eps = 1e-8f, .decay = 1.0f - lr * 0.01f, .decay_on = 1,
                            .step_size = (float)(lr / (1 - pow(0.9, t))),
                            .bc2_sqrt = (float)sqrt(1 - pow(0.999, t)) };
}

/* ---- element sets ------------------------------------------------------------------------ */
/* dense: 2 full chunks and a partial one; list: chunks 0, 2 (every 5th element), chunk 1
 * empty, partial chunk 3 holding only its last element. */
static void make_set(mu_idxset *s, int dense)
{
    if (dense) {
        mu_idxset_init_dense(s, 2 * 65536 + 999);
        return;
    }
    int64_t numel = 3 * 65536 + 1234, n = 0;
    int64_t *idx = malloc((size_t)numel * sizeof *idx);
    CHECK(idx);
    for (int64_t i = 0; i < 3 * 65536; i += 5)
        if ((i >> 16) != 1) idx[n++] = i;
    idx[n++] = numel - 1;
    char err[128];
    CHECK_MSG(mu_idxset_init_list(s, numel, idx, n, err, sizeof err) == 0, "%s", err);
    CHECK_EQ_INT(s->chunk_start[2] - s->chunk_start[1], 0);
    CHECK_EQ_INT(s->chunk_start[4] - s->chunk_start[3], 1);
    free(idx);
}

/* The set as backend be sees it; *own receives the device arrays to free. */
static mu_elems elems_on(const mu_backend *be, const mu_idxset *s, void **own)
{
    mu_elems e = { .numel = s->numel, .n = s->n, .dense = s->dense, .nchunks = s->nchunks };
    own[0] = own[1] = NULL;
    if (s->dense) return e;
    if (be->host_memory) {
        e.chunk_start = s->chunk_start;
        e.off = s->off;
        return e;
    }
    size_t cb = (size_t)(s->nchunks + 1) * sizeof *s->chunk_start, ob = (size_t)s->n * sizeof *s->off;
    own[0] = be->alloc(cb);
    own[1] = be->alloc(ob ? ob : 1);
    CHECK(own[0] && own[1]);
    be->upload(own[0], s->chunk_start, cb);
    be->upload(own[1], s->off, ob);
    e.chunk_start = own[0];
    e.off = own[1];
    return e;
}

/* got[i] and want[i] hold the same 4 bytes, for every i < n. */
static void check_same_bits(const char *what, const float *got, const float *want, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        CHECK_MSG(memcmp(&got[i], &want[i], 4) == 0, "%s[%lld]: %.9g vs %.9g (bits differ)",
                  what, (long long)i, got[i], want[i]);
}

static int bf16_is_nan(uint16_t b) { return (b & 0x7F80) == 0x7F80 && (b & 0x7F) != 0; }

/* elems_scatter_bf16 of random values and rounding cases (ties both ways, subnormal ties,
 * overflow to inf, -0, -inf, a NaN whose upper half alone is inf) into a bf16 weight whose
 * other elements hold a pattern: exact bits against the CPU, pattern and guards kept. A NaN
 * must stay a NaN; its bits may differ (CUDA writes 0x7FFF, the CPU quiets the payload). */
static void check_scatter_bf16(const mu_backend *gpu, const mu_idxset *s, const mu_elems *ec,
                               const mu_elems *eg, int dense)
{
    static const uint32_t special[] = { 0x3F808000u, 0x3F818000u, 0x3F808001u, 0x3F817FFFu,
                                        0xBF808000u, 0x00008000u, 0x00018000u, 0x7F7FFFFFu,
                                        0x80000000u, 0xFF800000u, 0x7F800001u };
    const int nsp = (int)(sizeof special / sizeof special[0]);
    int64_t N = s->numel, n = s->n;
    size_t nf = ((size_t)N + 1) / 2, n16 = 2 * nf;   /* floats holding N bf16 (+ a pad) */
    CHECK(n > nsp);
    float *pc = fnew((size_t)n);
    fill(pc, (size_t)n, dense + 23, 2.0f);
    memcpy(pc, special, sizeof special);
    memcpy(&pc[n - 1], &special[1], 4);              /* the last entry: a tie */
    uint16_t *wc = calloc(n16, 2), *wg = calloc(n16, 2);
    CHECK(wc && wg);
    for (size_t i = 0; i < n16; i++)                  /* a pattern without NaNs */
        wc[i] = (uint16_t)(0x3000u + (i * 40503u) % 0x4000u);
    dbuf d16 = dnew(gpu, (const float *)(const void *)wc, nf), dp = dnew(gpu, pc, (size_t)n);
    mu_backend_cpu()->elems_scatter_bf16(wc, pc, ec);
    gpu->elems_scatter_bf16((uint16_t *)(void *)d16.p, dp.p, eg);
    dget(&d16, (float *)(void *)wg, "scatter_bf16");
    dget(&dp, NULL, "scatter_bf16 source");
    int64_t nan_seen = 0;
    for (size_t i = 0; i < n16; i++) {
        if (bf16_is_nan(wc[i])) {
            nan_seen++;
            CHECK_MSG(bf16_is_nan(wg[i]), "scatter_bf16[%zu]: cuda 0x%04x for a NaN", i, wg[i]);
        } else {
            CHECK_MSG(wg[i] == wc[i], "scatter_bf16[%zu]: cuda 0x%04x, cpu 0x%04x", i, wg[i],
                      wc[i]);
        }
    }
    CHECK_EQ_INT(nan_seen, 1);
    dfree(&d16); dfree(&dp);
    free(pc); free(wc); free(wg);
}

static void run_op_tests(const mu_backend *gpu, int dense)
{
    const mu_backend *cpu = mu_backend_cpu();
    mu_idxset s;
    make_set(&s, dense);
    int64_t N = s.numel, n = s.n;
    void *own[2];
    mu_elems ec = elems_on(cpu, &s, own), eg = elems_on(gpu, &s, own);
    float *w0 = malloc((size_t)N * 4), *g0 = malloc((size_t)N * 4), *got = malloc((size_t)N * 4);
    CHECK(w0 && g0 && got);
    fill(w0, N, dense + 1, 0.5f);
    fill(g0, N, dense + 11, 0.01f);

    /* sum of squares, scale */
    dbuf g = dnew(gpu, g0, N);
    double ss_c = cpu->elems_sumsq(g0, &ec), ss_g = gpu->elems_sumsq(g.p, &eg);
    CHECK_MSG(ss_c > 0, "empty sum of squares");
    CHECK_CLOSE(ss_g, ss_c, 1e-12, 0);
    CHECK_MSG(gpu->elems_sumsq(g.p, &eg) == ss_g, "sumsq differs between two GPU calls");
    float *gc = fdup(g0, N);
    cpu->elems_scale(gc, 0.375f, &ec);
    gpu->elems_scale(g.p, 0.375f, &eg);
    dget(&g, got, "scaled g");
    check_vs_cpu("scaled g", got, gc, N);
    check_untouched("scaled g", got, g0, &s);
    gpu->upload(g.p, g0, (size_t)N * 4);

    /* AdamW, three steps with weight decay */
    float *wc = fdup(w0, N), *mc = calloc((size_t)n, 4), *vc = calloc((size_t)n, 4);
    float *mh = malloc((size_t)n * 4);
    dbuf w = dnew(gpu, w0, N), m = dnew(gpu, NULL, n), v = dnew(gpu, NULL, n);
    for (int t = 1; t <= 3; t++) {
        mu_adamw_args a = adamw_args_at(t);
        cpu->adamw_step(wc, g0, mc, vc, &ec, &a);
        gpu->adamw_step(w.p, g.p, m.p, v.p, &eg, &a);
    }
    dget(&w, got, "adamw w");
    check_vs_cpu("adamw w", got, wc, N);
    check_untouched("adamw w", got, w0, &s);
    dget(&m, mh, "adamw m");
    check_vs_cpu("adamw m", mh, mc, n);
    dget(&v, mh, "adamw v");
    check_vs_cpu("adamw v", mh, vc, n);
    dget(&g, got, "adamw g");
    CHECK_MSG(memcmp(got, g0, (size_t)N * 4) == 0, "adamw changed the gradient");

    /* SGD with momentum and weight decay (two steps), then without a buffer */
    memcpy(wc, w0, (size_t)N * 4);
    gpu->upload(w.p, w0, (size_t)N * 4);
    memset(mc, 0, (size_t)n * 4);
    dbuf buf = dnew(gpu, NULL, n);
    for (int t = 1; t <= 2; t++) {
        mu_sgd_args a = { .lr = 0.05f, .wd = 0.02f, .momentum = 0.9f, .first = t == 1 };
        cpu->sgd_step(wc, g0, mc, &ec, &a);
        gpu->sgd_step(w.p, g.p, buf.p, &eg, &a);
    }
    mu_sgd_args plain = { .lr = 0.1f, .wd = 0, .momentum = 0, .first = 0 };
    cpu->sgd_step(wc, g0, NULL, &ec, &plain);
    gpu->sgd_step(w.p, g.p, NULL, &eg, &plain);
    dget(&w, got, "sgd w");
    check_vs_cpu("sgd w", got, wc, N);
    check_untouched("sgd w", got, w0, &s);
    dget(&buf, mh, "sgd buf");
    check_vs_cpu("sgd buf", mh, mc, n);

    /* gather / scatter */
    dbuf packed = dnew(gpu, NULL, n);
    float *pc = malloc((size_t)n * 4);
    cpu->elems_gather(pc, wc, &ec);
    gpu->elems_gather(packed.p, w.p, &eg);
    dget(&packed, mh, "gathered");
    check_vs_cpu("gathered", mh, pc, n);
    for (int64_t j = 0; j < n; j++) pc[j] = (float)j - 0.5f;
    gpu->upload(w.p, w0, (size_t)N * 4);
    gpu->upload(packed.p, pc, (size_t)n * 4);
    memcpy(wc, w0, (size_t)N * 4);
    cpu->elems_scatter(wc, pc, &ec);
    gpu->elems_scatter(w.p, packed.p, &eg);
    dget(&w, got, "scattered w");
    CHECK_MSG(memcmp(got, wc, (size_t)N * 4) == 0, "scatter differs from the CPU's");
    check_untouched("scattered w", got, w0, &s);

    /* gather_add: packed += g at the set's elements, twice (it accumulates), the second
     * time with e->packed set (ignored). One f32 add per entry: the same bits. */
    fill(pc, n, dense + 21, 1.0f);
    gpu->upload(packed.p, pc, (size_t)n * 4);
    for (int rep = 0; rep < 2; rep++) {
        ec.packed = eg.packed = rep;
        cpu->elems_gather_add(pc, g0, &ec);
        gpu->elems_gather_add(packed.p, g.p, &eg);
    }
    ec.packed = eg.packed = 0;
    dget(&packed, mh, "gather_add");
    check_same_bits("gather_add", mh, pc, n);
    dget(&g, got, "gather_add g");
    CHECK_MSG(memcmp(got, g0, (size_t)N * 4) == 0, "gather_add changed its source");
    check_scatter_bf16(gpu, &s, &ec, &eg, dense);

    dfree(&g); dfree(&w); dfree(&m); dfree(&v); dfree(&buf); dfree(&packed);
    gpu->free(own[0]);
    gpu->free(own[1]);
    free(w0); free(g0); free(got); free(gc); free(wc); free(mc); free(vc); free(mh); free(pc);
    mu_idxset_free(&s);
}

/* Weight masking ops, n not a multiple of the block: the same bits as the CPU, masks out
 * of [0, 1] projected, guards untouched. */
static void run_wmask_tests(const mu_backend *gpu)
{
    const mu_backend *cpu = mu_backend_cpu();
    const int64_t n = 70001;
    float *m0 = malloc(n * 4), *w0 = malloc(n * 4), *g0 = malloc(n * 4);
    float *mc = malloc(n * 4), *wc = malloc(n * 4), *gc = malloc(n * 4), *got = malloc(n * 4);
    CHECK(m0 && w0 && g0 && mc && wc && gc && got);
    fill(m0, n, 31, 0.8f);
    for (int64_t j = 0; j < n; j++) m0[j] += 0.5f;          /* about a third out of [0, 1] */
    m0[5] = NAN;
    fill(w0, n, 32, 0.3f);
    fill(g0, n, 33, 0.01f);
    memcpy(mc, m0, n * 4);
    cpu->wmask_forward(wc, mc, w0, n);
    cpu->wmask_backward(gc, g0, w0, 3e-4f, n);
    dbuf m = dnew(gpu, m0, n), w = dnew(gpu, NULL, n), w0d = dnew(gpu, w0, n), g = dnew(gpu, g0, n),
         gm = dnew(gpu, NULL, n);
    gpu->wmask_forward(w.p, m.p, w0d.p, n);
    gpu->wmask_backward(gm.p, g.p, w0d.p, 3e-4f, n);
    dget(&m, got, "wmask m");
    check_same_bits("wmask m", got, mc, n);
    dget(&w, got, "wmask w");
    CHECK_MSG(isnan(got[5]) && isnan(wc[5]), "a NaN mask must give a NaN weight");
    got[5] = wc[5] = 0;                    /* a NaN's payload may differ between backends */
    check_same_bits("wmask w", got, wc, n);
    dget(&gm, got, "wmask gm");
    check_same_bits("wmask gm", got, gc, n);
    dget(&w0d, got, "wmask w0");
    CHECK_MSG(memcmp(got, w0, n * 4) == 0, "wmask_forward changed w0");
    /* the cut sum(1 - m): NaN with the NaN mask, else the CPU's to rounding (the order
     * within a chunk differs) */
    CHECK(isnan(gpu->wmask_cut(m.p, n)) && isnan(cpu->wmask_cut(mc, n)));
    double cut_g = gpu->wmask_cut(m.p + 6, n - 6), cut_c = cpu->wmask_cut(mc + 6, n - 6);
    CHECK_MSG(cut_c > 1000 && fabs(cut_g - cut_c) <= 1e-12 * cut_c, "cut %.17g, cpu %.17g", cut_g, cut_c);
    CHECK(gpu->wmask_cut(m.p, 0) == 0);
    dfree(&m); dfree(&w); dfree(&w0d); dfree(&g); dfree(&gm);
    free(m0); free(w0); free(g0); free(mc); free(wc); free(gc); free(got);
}

TEST(cuda_optim_weight_mask_ops) { run_wmask_tests(gpu_or_skip()); }
TEST(cuda_optim_ops_dense) { run_op_tests(gpu_or_skip(), 1); }
TEST(cuda_optim_ops_list) { run_op_tests(gpu_or_skip(), 0); }

/* ---- packed tensors (e->packed: w and g hold the list set's entries, [n]) ---------------- */
/* dp (packed) against the whole tensor dw on the same backend (gathered: the same bits)
 * and against the CPU's packed result cpu_packed (1e-6 relative); guards of both. */
static void check_packed(const char *what, const dbuf *dp, const dbuf *dw, const int64_t *idx,
                         const float *cpu_packed, int64_t n)
{
    float *p = fnew((size_t)n), *whole = fnew(dw->n), *gathered = fnew((size_t)n);
    dget(dp, p, what);
    dget(dw, whole, what);
    for (int64_t j = 0; j < n; j++) gathered[j] = whole[idx[j]];
    check_same_bits(what, p, gathered, n);
    check_vs_cpu(what, p, cpu_packed, n);
    free(p); free(whole); free(gathered);
}

/* The four update ops on a packed tensor: sum of squares (== the whole tensor's), scale,
 * AdamW (weight decay, three steps), SGD (momentum and weight decay, two steps, then no
 * buffer), on the device's whole tensor, its packed copy, and the CPU's packed copy. */
static void run_packed_update_tests(const mu_backend *gpu)
{
    const mu_backend *cpu = mu_backend_cpu();
    mu_idxset s;
    make_set(&s, 0);
    int64_t N = s.numel, n = s.n;
    int64_t *idx = malloc((size_t)n * sizeof *idx);
    CHECK(idx);
    mu_idxset_to_list(&s, idx);
    void *own[2];
    mu_elems ec = elems_on(cpu, &s, own), eg = elems_on(gpu, &s, own);
    mu_elems ecp = ec, egp = eg;
    ecp.packed = egp.packed = 1;
    float *w0 = fnew((size_t)N), *g0 = fnew((size_t)N), *pw0 = fnew((size_t)n);
    float *pgc = fnew((size_t)n);
    fill(w0, (size_t)N, 7, 0.5f);
    fill(g0, (size_t)N, 17, 0.01f);
    for (int64_t j = 0; j < n; j++) { pw0[j] = w0[idx[j]]; pgc[j] = g0[idx[j]]; }
    dbuf W = dnew(gpu, w0, (size_t)N), G = dnew(gpu, g0, (size_t)N);
    dbuf P = dnew(gpu, pw0, (size_t)n), PG = dnew(gpu, pgc, (size_t)n);

    double ssw = gpu->elems_sumsq(G.p, &eg), ssp = gpu->elems_sumsq(PG.p, &egp);
    CHECK_MSG(ssp == ssw, "packed sumsq %.17g, whole %.17g", ssp, ssw);
    CHECK_CLOSE(ssp, cpu->elems_sumsq(pgc, &ecp), 1e-12, 0);
    gpu->elems_scale(G.p, 0.375f, &eg);
    gpu->elems_scale(PG.p, 0.375f, &egp);
    cpu->elems_scale(pgc, 0.375f, &ecp);
    check_packed("packed scaled g", &PG, &G, idx, pgc, n);

    /* AdamW, three steps with weight decay */
    float *pwc = fdup(pw0, (size_t)n), *mc = fnew((size_t)n), *vc = fnew((size_t)n);
    dbuf m = dnew(gpu, NULL, (size_t)n), v = dnew(gpu, NULL, (size_t)n);
    dbuf pm = dnew(gpu, NULL, (size_t)n), pv = dnew(gpu, NULL, (size_t)n);
    for (int t = 1; t <= 3; t++) {
        mu_adamw_args a = adamw_args_at(t);
        gpu->adamw_step(W.p, G.p, m.p, v.p, &eg, &a);
        gpu->adamw_step(P.p, PG.p, pm.p, pv.p, &egp, &a);
        cpu->adamw_step(pwc, pgc, mc, vc, &ecp, &a);
    }
    check_packed("packed adamw w", &P, &W, idx, pwc, n);
    float *hw = fnew((size_t)n), *hp = fnew((size_t)n);
    dget(&m, hw, "adamw m");
    dget(&pm, hp, "packed adamw m");
    check_same_bits("packed adamw m", hp, hw, n);
    check_vs_cpu("packed adamw m", hp, mc, n);
    dget(&v, hw, "adamw v");
    dget(&pv, hp, "packed adamw v");
    check_same_bits("packed adamw v", hp, hw, n);
    check_vs_cpu("packed adamw v", hp, vc, n);

    /* SGD with momentum and weight decay (two steps), then without a buffer */
    gpu->upload(W.p, w0, (size_t)N * 4);
    gpu->upload(P.p, pw0, (size_t)n * 4);
    memcpy(pwc, pw0, (size_t)n * 4);
    memset(mc, 0, (size_t)n * 4);
    dbuf b = dnew(gpu, NULL, (size_t)n), pb = dnew(gpu, NULL, (size_t)n);
    for (int t = 1; t <= 2; t++) {
        mu_sgd_args a = { .lr = 0.05f, .wd = 0.02f, .momentum = 0.9f, .first = t == 1 };
        gpu->sgd_step(W.p, G.p, b.p, &eg, &a);
        gpu->sgd_step(P.p, PG.p, pb.p, &egp, &a);
        cpu->sgd_step(pwc, pgc, mc, &ecp, &a);
    }
    dget(&b, hw, "sgd buf");
    dget(&pb, hp, "packed sgd buf");
    check_same_bits("packed sgd buf", hp, hw, n);
    check_vs_cpu("packed sgd buf", hp, mc, n);
    mu_sgd_args plain = { .lr = 0.1f, .wd = 0, .momentum = 0, .first = 0 };
    gpu->sgd_step(W.p, G.p, NULL, &eg, &plain);
    gpu->sgd_step(P.p, PG.p, NULL, &egp, &plain);
    cpu->sgd_step(pwc, pgc, NULL, &ecp, &plain);
    check_packed("packed sgd w", &P, &W, idx, pwc, n);
    check_packed("packed g after the updates", &PG, &G, idx, pgc, n);

    dfree(&W); dfree(&G); dfree(&P); dfree(&PG); dfree(&m); dfree(&v); dfree(&pm);
    dfree(&pv); dfree(&b); dfree(&pb);
    gpu->free(own[0]);
    gpu->free(own[1]);
    free(idx); free(w0); free(g0); free(pw0); free(pgc); free(pwc); free(mc); free(vc);
    free(hw); free(hp);
    mu_idxset_free(&s);
}

TEST(cuda_optim_packed_updates_list) { run_packed_update_tests(gpu_or_skip()); }

/* ---- masked training, cuda vs cpu ------------------------------------------------------- */
static mu_config tiny_cfg(void)
{
    mu_config c;
    mu_config_init(&c);
    c.n_layer = 2; c.d_model = 32; c.n_head = 4; c.n_kv_head = 2; c.head_dim = 8;
    c.d_ff = 64; c.vocab = 40; c.max_pos = 64;
    return c;
}

static void facts(mu_train_set *set, int n, uint64_t seed)
{
    mu_rng r;
    mu_rng_seed(&r, seed);
    int32_t *ids[16];
    int len[16], pl[16];
    for (int i = 0; i < n; i++) {
        len[i] = 5 + (i % 2);
        pl[i] = 4;
        ids[i] = malloc(sizeof(int32_t) * (size_t)len[i]);
        ids[i][0] = 1;
        for (int k = 1; k < len[i]; k++) ids[i][k] = 2 + (int32_t)mu_rng_below(&r, 38);
    }
    mu_train_set_from_arrays(set, n, ids, len, pl);
    for (int i = 0; i < n; i++) free(ids[i]);
}

/* up_proj rows 3 and 40 (neurons), o_proj columns of head 1, every 7th embedding element,
 * all of layer 1's down_proj; everything else frozen. */
static void make_mask(mu_model *m, mu_mask *mask)
{
    char err[256];
    mu_mask_init(mask, "mixed", 0);
    mu_param *p = mu_model_param(m, mu_model_find(m, "model.layers.0.mlp.up_proj.weight"));
    mu_mask_tensor *t = mu_mask_add(mask, p->info.name, 2, p->info.shape, MU_GRAN_NEURON, 64,
                                    err, sizeof err);
    CHECK_MSG(t, "%s", err);
    mu_mask_set(t, 3, 1); mu_mask_set(t, 40, 1);
    p = mu_model_param(m, mu_model_find(m, "model.layers.1.self_attn.o_proj.weight"));
    t = mu_mask_add(mask, p->info.name, 2, p->info.shape, MU_GRAN_HEAD, 4, err, sizeof err);
    CHECK_MSG(t, "%s", err);
    mu_mask_set(t, 1, 1);
    p = mu_model_param(m, mu_model_find(m, "model.embed_tokens.weight"));
    t = mu_mask_add(mask, p->info.name, 2, p->info.shape, MU_GRAN_ELEMENT, p->numel, err, sizeof err);
    CHECK_MSG(t, "%s", err);
    for (int64_t u = 0; u < p->numel; u += 7) mu_mask_set(t, u, 1);
    p = mu_model_param(m, mu_model_find(m, "model.layers.1.mlp.down_proj.weight"));
    t = mu_mask_add(mask, p->info.name, 2, p->info.shape, MU_GRAN_MATRIX, 1, err, sizeof err);
    CHECK_MSG(t, "%s", err);
    mu_mask_set(t, 0, 1);
}

static float **snapshot(mu_model *m)
{
    int np = mu_model_n_params(m);
    float **s = calloc((size_t)np, sizeof *s);
    CHECK(s);
    for (int i = 0; i < np; i++) {
        s[i] = malloc((size_t)mu_model_param(m, i)->numel * sizeof(float));
        CHECK(s[i]);
        mu_model_get_param(m, i, s[i]);
    }
    return s;
}

static void free_snapshot(int np, float **s)
{
    for (int i = 0; i < np; i++) free(s[i]);
    free(s);
}

/* Trains 4 steps on backend be (resume: from ckpt, written at step 2 by an earlier run
 * with every = 2) and returns the parameters. */
static float **train_on(const mu_backend *be, mu_opt_kind kind, int wmask, const char *ckpt,
                        int every, int resume, int *np)
{
    mu_config c = tiny_cfg();
    char err[512];
    mu_model *m = mu_model_init_random(&c, 17, 0.2f, be, err, sizeof err);
    CHECK_MSG(m, "%s", err);
    mu_mask mask;
    make_mask(m, &mask);
    mu_train_opts o;
    mu_train_opts_default(&o);
    CHECK(mu_objective_parse("learn=1,ga=0.2", o.coef, err, sizeof err) == 0);
    o.steps = 4; o.batch = 3; o.seed = 3;
    o.opt.kind = kind;
    o.opt.lr = kind == MU_OPT_ADAMW ? 1e-2 : 0.05;
    o.opt.eps = 1e-4;          /* the AdamW step is smooth in g near 0 (no sign amplification) */
    o.opt.momentum = 0.9;
    o.opt.weight_decay = 0.05;
    o.opt.clip = 1.0;
    o.checkpoint = ckpt;
    o.checkpoint_every = every;
    if (wmask) {               /* weight masking: the mask trains, w = w0 * m */
        o.weight_mask = 1;
        o.weight_mask_lambda = 1e-3;
        o.opt.lr = 0.05;
        o.opt.weight_decay = 0;
    }
    mu_trainer *t = mu_trainer_new(m, NULL, &mask, &o, err, sizeof err);
    CHECK_MSG(t, "%s", err);
    CHECK_EQ_INT(mu_trainer_n_trained(t), 4);
    mu_train_set f;
    facts(&f, 6, 23);
    mu_trainer_set_data(t, MU_DATA_FORGET, &f);
    CHECK_MSG(mu_trainer_run(t, resume ? ckpt : NULL, err, sizeof err) == 0, "%s", err);
    CHECK_EQ_INT(mu_trainer_step(t), 4);
    float **s = snapshot(m);
    *np = mu_model_n_params(m);
    mu_trainer_free(t);
    mu_mask_free(&mask);
    mu_model_free(m);
    return s;
}

TEST(cuda_optim_masked_training_matches_cpu) {
    const mu_backend *gpu = gpu_or_skip();
    mu_config c = tiny_cfg();
    char err[512], ckpt[PATH_MAX];
    snprintf(ckpt, sizeof ckpt, "%s/state.mpk.zst", mu_test_tmpdir());
    mu_model *m0 = mu_model_init_random(&c, 17, 0.2f, mu_backend_cpu(), err, sizeof err);
    CHECK_MSG(m0, "%s", err);
    float **init = snapshot(m0);
    for (int kind = 0; kind < 3; kind++) {
        mu_opt_kind k = kind == 1 ? MU_OPT_SGD : MU_OPT_ADAMW;
        const char *kn = kind == 1 ? "sgd" : kind ? "adamw weight-mask" : "adamw";
        int np, wm = kind == 2;
        float **cpu = train_on(mu_backend_cpu(), k, wm, NULL, 0, 0, &np);
        float **gg = train_on(gpu, k, wm, ckpt, 2, 0, &np);
        float **res = train_on(gpu, k, wm, ckpt, 0, 1, &np);
        int changed = 0;
        for (int i = 0; i < np; i++) {
            const mu_param *p = mu_model_param(m0, i);
            size_t nb = (size_t)p->numel * 4;
            CHECK_MSG(memcmp(gg[i], res[i], nb) == 0, "%s %s: resumed cuda run differs from "
                      "the uninterrupted one", kn, p->info.name);
            double num = 0, den = 0;
            for (int64_t e = 0; e < p->numel; e++) {
                double dc = (double)cpu[i][e] - init[i][e], dg = (double)gg[i][e] - init[i][e];
                if (dc == 0)
                    CHECK_MSG(memcmp(&gg[i][e], &init[i][e], 4) == 0,
                              "%s %s[%lld]: untrained on the cpu, changed on cuda", kn,
                              p->info.name, (long long)e);
                num += (dg - dc) * (dg - dc);
                den += dc * dc;
            }
            if (den == 0) continue;
            changed++;
            CHECK_MSG(num / den <= 1e-6, "%s %s: normalized error of the update %.3g",
                      kn, p->info.name, num / den);
        }
        CHECK_EQ_INT(changed, 4);
        free_snapshot(np, cpu);
        free_snapshot(np, gg);
        free_snapshot(np, res);
    }
    free_snapshot(mu_model_n_params(m0), init);
    mu_model_free(m0);
}
