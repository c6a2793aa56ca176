/* t_cuda.c — the CUDA backend (kernels/cuda) against the CPU backend, op by op and for
 * the whole model. Every test SKIPs when mu was built without CUDA or no device is
 * present (cudaGetDeviceCount fails or returns 0); the code below is compiled either way.
 *
 * Op tests (ggml test-backend-ops style): random inputs, the same call on both backends,
 * outputs compared by normalized MSE  sum (gpu - cpu)^2 / sum cpu^2  against a threshold
 * per dtype (f32: 1e-9; with MU_CUDA_TF32=1 the GEMM-based checks use 1e-5), every output
 * checked finite where the CPU's is, and GUARD floats of a known bit pattern on both sides
 * of every device output buffer checked untouched (out-of-bounds writes).
 * Model tests: logits and every parameter gradient of a random Llama (GQA, q/k/v biases,
 * padded rows) and of stories260K (../shared/data), greedy decoding with the KV cache,
 * and bit-identical gradients from two identical GPU runs. */
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#include <math.h>
#include "test.h"
#include "gpu_test.h"
#include "kernels.h"
#include "model.h"
#include "config.h"
#include "rng.h"
#include "tensor.h"
#ifdef MU_HAVE_CUDA
#include "cuda/mu_cuda.h"
#endif

#define gpu_or_skip mu_test_gpu   /* gpu_test.h */

/* ---- thresholds ------------------------------------------------------------------------- */
#define NMSE_F32 1e-9
static double nmse_gemm(void)
{
    const char *e = getenv("MU_CUDA_TF32");
    return e && !strcmp(e, "1") ? 1e-5 : NMSE_F32;
}

/* want may hold infinities (e.g. lse of a row that sees no key): got must equal them. */
static void check_close(const char *what, const float *got, const float *want, size_t n,
                        double max_nmse)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(want[i])) {
            CHECK_MSG(got[i] == want[i] || (isnan(got[i]) && isnan(want[i])),
                      "%s[%zu]: %g, want %g", what, i, got[i], want[i]);
            continue;
        }
        CHECK_MSG(isfinite(got[i]), "%s[%zu]: %g is not finite (want %g)", what, i, got[i],
                  want[i]);
        double d = (double)got[i] - want[i];
        num += d * d;
        den += (double)want[i] * want[i];
    }
    double nmse = num / (den > 1e-30 ? den : 1e-30);
    CHECK_MSG(nmse <= max_nmse, "%s: normalized MSE %.3g > %.3g over %zu values", what, nmse,
              max_nmse, n);
}

/* Downloads, checks guards and compares with want. */
static void dcheck(const dbuf *d, const float *want, const char *what, double max_nmse)
{
    float *got = fnew(d->n);
    dget(d, got, what);
    check_close(what, got, want, d->n, max_nmse);
    free(got);
}

/* ---- op tests ---------------------------------------------------------------------------- */
typedef void (*mm_fn)(float *Y, const float *X, const float *W, int N, int K, int M, int acc);
typedef void (*mm_bwd_fn)(float *dX, float *dW, const float *dY, const float *X, const float *W,
                          int N, int K, int M, int accumulate_dx);

/* matmul (W [M,K]) or, with wt, matmul_wt (W [K,M]): both hold M*K weights */
static void matmul_case(const mu_backend *g, int wt, int N, int K, int M, uint64_t seed)
{
    const mu_backend *c = mu_backend_cpu();
    mm_fn cf = wt ? c->matmul_wt : c->matmul, gf = wt ? g->matmul_wt : g->matmul;
    mm_bwd_fn cb = wt ? c->matmul_wt_bwd : c->matmul_bwd;
    mm_bwd_fn gb = wt ? g->matmul_wt_bwd : g->matmul_bwd;
    const char *op = wt ? "matmul_wt" : "matmul";
    size_t nx = (size_t)N * K, nw = (size_t)M * K, ny = (size_t)N * M;
    float *X = fnew(nx), *W = fnew(nw), *Y = fnew(ny), *dY = fnew(ny);
    fill(X, nx, seed, 1); fill(W, nw, seed + 1, 0.5f); fill(Y, ny, seed + 2, 1);
    fill(dY, ny, seed + 3, 1);
    char what[96];
    for (int acc = 0; acc < 2; acc++) {
        float *Yc = fdup(Y, ny);
        dbuf dX = dnew(g, X, nx), dW = dnew(g, W, nw), dYb = dnew(g, Y, ny);
        cf(Yc, X, W, N, K, M, acc);
        gf(dYb.p, dX.p, dW.p, N, K, M, acc);
        snprintf(what, sizeof what, "%s %dx%dx%d acc=%d", op, N, K, M, acc);
        dcheck(&dYb, Yc, what, nmse_gemm());
        dfree(&dX); dfree(&dW); dfree(&dYb); free(Yc);
    }
    /* backward: dX (overwrite / accumulate / skipped) and dW (accumulate / skipped) */
    for (int mode = 0; mode < 3; mode++) {
        int acc = mode == 1;
        float *gX = fnew(nx), *gW = fnew(nw);
        fill(gX, nx, seed + 4, 1); fill(gW, nw, seed + 5, 1);
        float *gXc = fdup(gX, nx), *gWc = fdup(gW, nw);
        dbuf dX = dnew(g, X, nx), dW = dnew(g, W, nw), ddY = dnew(g, dY, ny);
        dbuf dgX = dnew(g, gX, nx), dgW = dnew(g, gW, nw);
        cb(mode == 2 ? NULL : gXc, mode == 2 ? gWc : (mode ? NULL : gWc), dY, X, W, N, K, M,
           acc);
        gb(mode == 2 ? NULL : dgX.p, mode == 2 ? dgW.p : (mode ? NULL : dgW.p), ddY.p, dX.p,
           dW.p, N, K, M, acc);
        snprintf(what, sizeof what, "%s_bwd dX %dx%dx%d mode=%d", op, N, K, M, mode);
        dcheck(&dgX, gXc, what, nmse_gemm());
        snprintf(what, sizeof what, "%s_bwd dW %dx%dx%d mode=%d", op, N, K, M, mode);
        dcheck(&dgW, gWc, what, nmse_gemm());
        dfree(&dX); dfree(&dW); dfree(&ddY); dfree(&dgX); dfree(&dgW);
        free(gX); free(gW); free(gXc); free(gWc);
    }
    free(X); free(W); free(Y); free(dY);
}

TEST(cuda_matmul_fwd_bwd_vs_cpu)
{
    const mu_backend *g = gpu_or_skip();
    matmul_case(g, 0, 37, 53, 29, 1);
    matmul_case(g, 0, 1, 64, 300, 2);      /* decode: one row */
    matmul_case(g, 0, 256, 576, 192, 3);
    matmul_case(g, 0, 5, 1, 7, 4);
}

/* W stored [K,M] (GPT-2's Conv1D): the column-major views swap which operand is transposed */
TEST(cuda_matmul_wt_fwd_bwd_vs_cpu)
{
    const mu_backend *g = gpu_or_skip();
    matmul_case(g, 1, 37, 53, 29, 5);
    matmul_case(g, 1, 1, 64, 300, 6);      /* decode: one row (the CPU's sgemv path) */
    matmul_case(g, 1, 300, 97, 131, 7);    /* N above the CPU's dW token chunk (256) */
    matmul_case(g, 1, 5, 1, 7, 8);
    matmul_case(g, 1, 6, 11, 1, 9);        /* one output column */
}

TEST(cuda_bias_and_embedding_vs_cpu)
{
    const mu_backend *g = gpu_or_skip(), *c = mu_backend_cpu();
    const int N = 45, M = 70, V = 13, D = 33;
    float *Y = fnew((size_t)N * M), *b = fnew(M), *db = fnew(M);
    fill(Y, (size_t)N * M, 10, 1); fill(b, M, 11, 1); fill(db, M, 12, 1);
    dbuf dY = dnew(g, Y, (size_t)N * M), dbb = dnew(g, b, M), ddb = dnew(g, db, M);
    float *Yc = fdup(Y, (size_t)N * M), *dbc = fdup(db, M);
    c->bias_add(Yc, b, N, M);
    g->bias_add(dY.p, dbb.p, N, M);
    dcheck(&dY, Yc, "bias_add", NMSE_F32);
    c->bias_add_bwd(dbc, Y, N, M);
    dbuf dY0 = dnew(g, Y, (size_t)N * M);
    g->bias_add_bwd(ddb.p, dY0.p, N, M);
    dcheck(&ddb, dbc, "bias_add_bwd", NMSE_F32);
    dfree(&dY); dfree(&dbb); dfree(&ddb); dfree(&dY0);

    /* embedding with repeated ids (the scatter-add must accumulate them) */
    int32_t ids[45];
    mu_rng r;
    mu_rng_seed(&r, 13);
    for (int n = 0; n < N; n++) ids[n] = (int32_t)mu_rng_below(&r, V);
    ids[3] = ids[7] = ids[40] = 5;
    float *E = fnew((size_t)V * D), *Ye = fnew((size_t)N * D), *dE = fnew((size_t)V * D);
    float *dYe = fnew((size_t)N * D);
    fill(E, (size_t)V * D, 14, 1); fill(dE, (size_t)V * D, 15, 1); fill(dYe, (size_t)N * D, 16, 1);
    dbuf gE = dnew(g, E, (size_t)V * D), gY = dnew(g, NULL, (size_t)N * D);
    c->embed(Ye, E, ids, N, D);
    g->embed(gY.p, gE.p, ids, N, D);
    dcheck(&gY, Ye, "embed", 0.0);           /* a copy: exact */
    dbuf gdE = dnew(g, dE, (size_t)V * D), gdY = dnew(g, dYe, (size_t)N * D);
    c->embed_bwd(dE, dYe, ids, N, D);
    g->embed_bwd(gdE.p, gdY.p, ids, N, D);
    dcheck(&gdE, dE, "embed_bwd", NMSE_F32);
    dfree(&gE); dfree(&gY); dfree(&gdE); dfree(&gdY);
    free(Y); free(b); free(db); free(Yc); free(dbc); free(E); free(Ye); free(dE); free(dYe);
}

TEST(cuda_rmsnorm_fwd_bwd_vs_cpu)
{
    const mu_backend *g = gpu_or_skip(), *c = mu_backend_cpu();
    const int shapes[][2] = { { 7, 16 }, { 33, 576 }, { 3, 4096 }, { 1, 5 } };
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int N = shapes[si][0], D = shapes[si][1];
        size_t n = (size_t)N * D;
        float *X = fnew(n), *w = fnew(D), *Y = fnew(n), *r = fnew(N), *dY = fnew(n);
        float *dX = fnew(n), *dw = fnew(D);
        fill(X, n, 20 + si, 2); fill(w, D, 21, 1); fill(dY, n, 22, 1); fill(dX, n, 23, 1);
        fill(dw, D, 24, 1);
        dbuf gX = dnew(g, X, n), gw = dnew(g, w, D), gY = dnew(g, NULL, n), gr = dnew(g, NULL, N);
        dbuf gdY = dnew(g, dY, n), gdX = dnew(g, dX, n), gdw = dnew(g, dw, D);
        c->rmsnorm(Y, r, X, w, N, D, 1e-5f);
        g->rmsnorm(gY.p, gr.p, gX.p, gw.p, N, D, 1e-5f);
        dcheck(&gY, Y, "rmsnorm Y", NMSE_F32);
        dcheck(&gr, r, "rmsnorm rstd", NMSE_F32);
        c->rmsnorm_bwd(dX, dw, dY, X, w, r, N, D);        /* both use the CPU's rstd */
        dbuf gr2 = dnew(g, r, N);
        g->rmsnorm_bwd(gdX.p, gdw.p, gdY.p, gX.p, gw.p, gr2.p, N, D);
        dcheck(&gdX, dX, "rmsnorm_bwd dX (accumulated)", NMSE_F32);
        dcheck(&gdw, dw, "rmsnorm_bwd dw", NMSE_F32);
        dfree(&gX); dfree(&gw); dfree(&gY); dfree(&gr); dfree(&gdY); dfree(&gdX); dfree(&gdw);
        dfree(&gr2);
        free(X); free(w); free(Y); free(r); free(dY); free(dX); free(dw);
    }
}

/* LayerNorm (GPT-NeoX) on rows with a nonzero mean: forward with and without bias (mean
 * and rstd too), backward from the CPU's mean and rstd with dX accumulated, and dw / db
 * each alone (the other NULL) on the second shape pass. */
static void layernorm_case(const mu_backend *g, int N, int D, int bias, int only, uint64_t seed)
{
    const mu_backend *c = mu_backend_cpu();
    size_t n = (size_t)N * D;
    float *X = fnew(n), *w = fnew(D), *b = fnew(D), *Y = fnew(n), *m = fnew(N), *r = fnew(N);
    float *dY = fnew(n), *dX = fnew(n), *dw = fnew(D), *db = fnew(D);
    fill(X, n, seed, 2); fill(w, D, seed + 1, 1); fill(b, D, seed + 2, 1);
    fill(dY, n, seed + 3, 1); fill(dX, n, seed + 4, 1); fill(dw, D, seed + 5, 1);
    fill(db, D, seed + 6, 1);
    for (size_t i = 0; i < n; i++) X[i] += (float)(i / D % 5) - 2.0f;
    dbuf gX = dnew(g, X, n), gw = dnew(g, w, D), gb = dnew(g, b, D), gY = dnew(g, NULL, n);
    dbuf gm = dnew(g, NULL, N), gr = dnew(g, NULL, N);
    c->layernorm(Y, m, r, X, w, bias ? b : NULL, N, D, 1e-5f);
    g->layernorm(gY.p, gm.p, gr.p, gX.p, gw.p, bias ? gb.p : NULL, N, D, 1e-5f);
    char what[96];
    snprintf(what, sizeof what, "layernorm Y %dx%d bias=%d", N, D, bias);
    dcheck(&gY, Y, what, NMSE_F32);
    dcheck(&gm, m, "layernorm mean", NMSE_F32);
    dcheck(&gr, r, "layernorm rstd", NMSE_F32);
    g->layernorm(gY.p, NULL, NULL, gX.p, gw.p, bias ? gb.p : NULL, N, D, 1e-5f);
    dcheck(&gY, Y, "layernorm Y (no mean, rstd)", NMSE_F32);
    dbuf gm2 = dnew(g, m, N), gr2 = dnew(g, r, N);         /* both use the CPU's stats */
    dbuf gdY = dnew(g, dY, n), gdX = dnew(g, dX, n), gdw = dnew(g, dw, D), gdb = dnew(g, db, D);
    c->layernorm_bwd(dX, only == 2 ? NULL : dw, only == 1 ? NULL : db, dY, X, w, m, r, N, D);
    g->layernorm_bwd(gdX.p, only == 2 ? NULL : gdw.p, only == 1 ? NULL : gdb.p, gdY.p, gX.p,
                     gw.p, gm2.p, gr2.p, N, D);
    dcheck(&gdX, dX, "layernorm_bwd dX (accumulated)", NMSE_F32);
    dcheck(&gdw, dw, only == 2 ? "layernorm_bwd dw (NULL: untouched)" : "layernorm_bwd dw",
           NMSE_F32);
    dcheck(&gdb, db, only == 1 ? "layernorm_bwd db (NULL: untouched)" : "layernorm_bwd db",
           NMSE_F32);
    dfree(&gX); dfree(&gw); dfree(&gb); dfree(&gY); dfree(&gm); dfree(&gr); dfree(&gm2);
    dfree(&gr2); dfree(&gdY); dfree(&gdX); dfree(&gdw); dfree(&gdb);
    free(X); free(w); free(b); free(Y); free(m); free(r); free(dY); free(dX); free(dw); free(db);
}

TEST(cuda_layernorm_fwd_bwd_vs_cpu)
{
    const mu_backend *g = gpu_or_skip();
    const int shapes[][2] = { { 7, 16 }, { 33, 576 }, { 3, 4096 }, { 1, 5 } };
    for (int si = 0; si < 4; si++)
        for (int bias = 0; bias < 2; bias++)
            for (int only = 0; only < 3; only++)     /* 0: dw and db, 1: dw only, 2: db only */
                layernorm_case(g, shapes[si][0], shapes[si][1], bias, only, 40 + si);
}

/* copy_rows (q/k/v split and join, partial rotary): exact; the elements of dst outside
 * the copied width keep their values (compared too), guards catch writes past the rows. */
TEST(cuda_copy_rows_vs_cpu)
{
    const mu_backend *g = gpu_or_skip(), *c = mu_backend_cpu();
    /* rows, width, dst_ld, src_ld */
    const int cases[][4] = { { 19, 64, 192, 64 }, { 19, 64, 64, 192 }, { 7, 16, 64, 48 },
                             { 1, 3, 3, 5 }, { 1500, 1000, 1024, 3000 } };  /* > one grid */
    char what[96];
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        int rows = cases[ci][0], width = cases[ci][1], dld = cases[ci][2], sld = cases[ci][3];
        size_t nd = (size_t)rows * dld, ns = (size_t)rows * sld;
        float *dst = fnew(nd), *src = fnew(ns);
        fill(dst, nd, 50 + ci, 1); fill(src, ns, 51 + ci, 1);
        dbuf gd = dnew(g, dst, nd), gs = dnew(g, src, ns);
        c->copy_rows(dst, dld, src, sld, rows, width);
        g->copy_rows(gd.p, dld, gs.p, sld, rows, width);
        snprintf(what, sizeof what, "copy_rows %dx%d ld %d/%d", rows, width, dld, sld);
        dcheck(&gd, dst, what, 0.0);
        dcheck(&gs, src, "copy_rows src (unchanged)", 0.0);
        dfree(&gd); dfree(&gs);
        free(dst); free(src);
    }
}

TEST(cuda_rope_fwd_bwd_vs_cpu)
{
    const mu_backend *g = gpu_or_skip(), *c = mu_backend_cpu();
    const int N = 19, H = 3, hd = 64;
    size_t n = (size_t)N * H * hd;
    int32_t pos[19];
    for (int i = 0; i < N; i++) pos[i] = i * 37 % 2000;   /* large angles too */
    float inv[32];
    for (int i = 0; i < hd / 2; i++) inv[i] = powf(10000.0f, -2.0f * i / hd);
    float *X = fnew(n);
    fill(X, n, 30, 1);
    float *Xc = fdup(X, n);
    dbuf gX = dnew(g, X, n);
    c->rope(Xc, pos, inv, N, H, hd);
    g->rope(gX.p, pos, inv, N, H, hd);
    dcheck(&gX, Xc, "rope", NMSE_F32);
    c->rope_bwd(Xc, pos, inv, N, H, hd);
    g->rope_bwd(gX.p, pos, inv, N, H, hd);
    dcheck(&gX, Xc, "rope_bwd", NMSE_F32);
    check_close("rope then rope_bwd = identity", Xc, X, n, 1e-10);
    dfree(&gX); free(X); free(Xc);
}

/* The attention op tests run once per CUDA kernel variant (mu_cuda_set_attention): the
 * warp-per-row kernels and the tiled ones (head dims <= 128; larger ones fall back to the
 * warp kernels). The fake GPU has one variant: the CPU's. */
static const char *const attn_variants[] = { "warp", "tiled" };
#define N_ATTN_VARIANTS (int)(sizeof attn_variants / sizeof *attn_variants)
static const char *attn_variant_name = "cpu";   /* in failure messages */

/* Selects variant v on g; 0 when g has no variant v to run. */
static int attn_variant(const mu_backend *g, int v)
{
#ifdef MU_HAVE_CUDA
    if (!strcmp(g->name, "cuda")) {
        CHECK(mu_cuda_set_attention(attn_variants[v]) == 0);
        attn_variant_name = attn_variants[v];
        return 1;
    }
#endif
    (void)g;
    attn_variant_name = g->name;
    return v == 0;
}

/* Back to the automatic choice; an unknown name is refused and changes nothing. */
static void attn_variant_reset(const mu_backend *g)
{
#ifdef MU_HAVE_CUDA
    if (!strcmp(g->name, "cuda")) {
        CHECK(mu_cuda_set_attention("flash") == -1);
        CHECK(mu_cuda_set_attention(NULL) == -1);
        CHECK(mu_cuda_set_attention("auto") == 0);
    }
#endif
    (void)g;
    attn_variant_name = "cpu";
}

/* How an attention case scores: soft-cap and sliding window as mu_attn_shape's (0: none),
 * and the spread of Q (a larger one drives scores into a small cap's saturation). */
typedef struct {
    float softcap;
    int window;
    float q_sd;
} attn_opts;

/* One attention shape: forward (O, lse) and backward (dQ, dK, dV) vs the CPU. */
static void attention_case_opts(const mu_backend *g, int B, int Tq, int Tk, int H, int Hkv,
                                int hd, const int32_t *q_pos0, const int32_t *k_len,
                                uint64_t seed, attn_opts opt)
{
    const mu_backend *c = mu_backend_cpu();
    mu_attn_shape s = { B, Tq, Tk, H, Hkv, hd, q_pos0, k_len, 1.0f / sqrtf((float)hd),
                        opt.softcap, opt.window };
    size_t nq = (size_t)B * Tq * H * hd, nk = (size_t)B * Tk * Hkv * hd, nl = (size_t)B * H * Tq;
    float *Q = fnew(nq), *K = fnew(nk), *V = fnew(nk), *dO = fnew(nq);
    fill(Q, nq, seed, opt.q_sd); fill(K, nk, seed + 1, 1); fill(V, nk, seed + 2, 1);
    fill(dO, nq, seed + 3, 1);
    float *O = fnew(nq), *L = fnew(nl), *dQ = fnew(nq), *dK = fnew(nk), *dV = fnew(nk);
    c->attention(O, L, Q, K, V, &s);
    c->attention_bwd(dQ, dK, dV, dO, O, L, Q, K, V, &s);

    dbuf gQ = dnew(g, Q, nq), gK = dnew(g, K, nk), gV = dnew(g, V, nk), gdO = dnew(g, dO, nq);
    dbuf gO = dnew(g, NULL, nq), gL = dnew(g, NULL, nl);
    /* outputs start as garbage: the backward must overwrite dQ, dK, dV everywhere */
    float *junk = fnew(nq > nk ? nq : nk);
    fill(junk, nq > nk ? nq : nk, seed + 9, 100);
    dbuf gdQ = dnew(g, junk, nq), gdK = dnew(g, junk, nk), gdV = dnew(g, junk, nk);
    g->attention(gO.p, gL.p, gQ.p, gK.p, gV.p, &s);
    char opts[96] = "", what[160];
    if (opt.softcap > 0 || opt.window > 0)
        snprintf(opts, sizeof opts, " softcap %g window %d", opt.softcap, opt.window);
    snprintf(what, sizeof what, "attention(%s) O B%d Tq%d Tk%d H%d/%d hd%d%s",
             attn_variant_name, B, Tq, Tk, H, Hkv, hd, opts);
    dcheck(&gO, O, what, NMSE_F32);
    snprintf(what, sizeof what, "attention(%s) lse B%d Tq%d Tk%d H%d/%d hd%d%s",
             attn_variant_name, B, Tq, Tk, H, Hkv, hd, opts);
    dcheck(&gL, L, what, NMSE_F32);
    /* backward from the CPU's O and lse, so only the backward is compared */
    dbuf cO = dnew(g, O, nq), cL = dnew(g, L, nl);
    g->attention_bwd(gdQ.p, gdK.p, gdV.p, gdO.p, cO.p, cL.p, gQ.p, gK.p, gV.p, &s);
    snprintf(what, sizeof what, "attention_bwd(%s) dQ B%d Tq%d Tk%d H%d/%d hd%d%s",
             attn_variant_name, B, Tq, Tk, H, Hkv, hd, opts);
    dcheck(&gdQ, dQ, what, NMSE_F32);
    snprintf(what, sizeof what, "attention_bwd(%s) dK B%d Tq%d Tk%d H%d/%d hd%d%s",
             attn_variant_name, B, Tq, Tk, H, Hkv, hd, opts);
    dcheck(&gdK, dK, what, NMSE_F32);
    snprintf(what, sizeof what, "attention_bwd(%s) dV B%d Tq%d Tk%d H%d/%d hd%d%s",
             attn_variant_name, B, Tq, Tk, H, Hkv, hd, opts);
    dcheck(&gdV, dV, what, NMSE_F32);
    dfree(&gQ); dfree(&gK); dfree(&gV); dfree(&gdO); dfree(&gO); dfree(&gL); dfree(&gdQ);
    dfree(&gdK); dfree(&gdV); dfree(&cO); dfree(&cL);
    free(Q); free(K); free(V); free(dO); free(O); free(L); free(dQ); free(dK); free(dV);
    free(junk);
}

/* Causal attention with key padding only: plain scores, no window. */
static void attention_case(const mu_backend *g, int B, int Tq, int Tk, int H, int Hkv, int hd,
                           const int32_t *q_pos0, const int32_t *k_len, uint64_t seed)
{
    attention_case_opts(g, B, Tq, Tk, H, Hkv, hd, q_pos0, k_len, seed, (attn_opts){ 0, 0, 1 });
}

/* The tiled kernels' edges: 64-query and 32-key tiles (T not a multiple of either), head
 * dims 6 (no float4 loads), 32, 64, 96 (padded to 128), 128 and 256 (warp fallback), GQA
 * groups 1, 4 and 8, padded rows of length 0 and 1. */
static void attention_causal_cases(const mu_backend *g)
{
    const int32_t lens3[3] = { 70, 41, 0 };          /* full, padded, empty row */
    attention_case(g, 3, 70, 70, 4, 2, 6, NULL, lens3, 40);
    attention_case(g, 3, 70, 70, 8, 2, 64, NULL, lens3, 41);
    attention_case(g, 3, 70, 70, 4, 1, 128, NULL, lens3, 42);
    attention_case(g, 2, 9, 9, 2, 2, 256, NULL, NULL, 43);    /* largest head dim, MHA */
    const int32_t lens1[1] = { 300 };
    attention_case(g, 1, 300, 300, 9, 3, 64, NULL, lens1, 44);  /* SmolLM2 heads */
    const int32_t lens_e[3] = { 100, 1, 0 };         /* rows of length 100, 1 and 0 */
    attention_case(g, 3, 100, 100, 4, 4, 32, NULL, lens_e, 45);       /* group 1 */
    const int32_t lens_f[3] = { 77, 33, 1 };
    attention_case(g, 3, 77, 77, 8, 2, 64, NULL, lens_f, 46);         /* group 4 */
    const int32_t lens_g[2] = { 45, 0 };
    attention_case(g, 2, 45, 45, 32, 4, 96, NULL, lens_g, 47);        /* group 8 */
    const int32_t lens_h[2] = { 130, 64 };
    attention_case(g, 2, 130, 130, 32, 4, 128, NULL, lens_h, 48);     /* Llama-3-8B heads */
    attention_case(g, 1, 129, 129, 8, 8, 128, NULL, NULL, 49);        /* no lengths */
    const int32_t lens_i[2] = { 40, 1 };
    attention_case(g, 2, 40, 40, 4, 2, 256, NULL, lens_i, 39);        /* fallback, padded */
}

TEST(cuda_attention_causal_gqa_padding_vs_cpu)
{
    const mu_backend *g = gpu_or_skip();
    for (int v = 0; v < N_ATTN_VARIANTS; v++)
        if (attn_variant(g, v)) attention_causal_cases(g);
    attn_variant_reset(g);
}

/* K/V caches with capacity beyond the keys in use (Tk > k_len), q_pos0 > 0. */
static void attention_decode_cases(const mu_backend *g)
{
    const int32_t pos0[3] = { 5, 0, 17 }, klen[3] = { 7, 2, 19 };  /* 2, 2 and 2 new tokens */
    attention_case(g, 3, 2, 24, 4, 2, 32, pos0, klen, 50);
    const int32_t pos1[2] = { 11, 3 }, klen1[2] = { 12, 4 };        /* one new token */
    attention_case(g, 2, 1, 16, 8, 4, 64, pos1, klen1, 51);
    /* Tq = 5: 5, 3 (2 padded queries) and 5 new tokens; the third row's keys end past
     * two key tiles */
    const int32_t pos5[3] = { 37, 0, 70 }, klen5[3] = { 42, 3, 75 };
    attention_case(g, 3, 5, 80, 8, 2, 64, pos5, klen5, 52);
    attention_case(g, 3, 5, 80, 32, 4, 96, pos5, klen5, 53);
    /* Tq = 1 at positions 99 (a full cache), 0, 31 and 64 (a key tile's first key) */
    const int32_t posd[4] = { 99, 0, 31, 64 }, klend[4] = { 100, 1, 32, 65 };
    attention_case(g, 4, 1, 100, 32, 4, 128, posd, klend, 54);
    attention_case(g, 4, 1, 100, 8, 8, 32, posd, klend, 55);
}

TEST(cuda_attention_kv_cache_decode_vs_cpu)
{
    const mu_backend *g = gpu_or_skip();
    for (int v = 0; v < N_ATTN_VARIANTS; v++)
        if (attn_variant(g, v)) attention_decode_cases(g);
    attn_variant_reset(g);
}

/* Sliding windows (Mistral, Gemma-2) and soft-capped scores (Gemma-2): windows of 5 and 40
 * keys over 64-query and 32-key tiles (tiles below a query tile's first key skipped, dK/dV
 * stopping at the last query whose window reaches a key tile), padded rows whose queries
 * past length + window - 1 see no key (O = 0, lse = -inf), K/V caches (q_pos0, k_len < Tk),
 * GQA; caps of 50 (nearly linear) and 2 (Q spread 3: tanh saturates, 1 - (y/cap)^2 near 0),
 * alone and with a window; head dim 256 (the warp kernels in both variants). */
static void attention_window_softcap_cases(const mu_backend *g)
{
    const attn_opts w5 = { 0, 5, 1 }, w40 = { 0, 40, 1 }, c50 = { 50, 0, 1 };
    const attn_opts c2 = { 2, 0, 3 }, c2w40 = { 2, 40, 3 }, c2w5 = { 2, 5, 3 };
    const int32_t lens3[3] = { 70, 41, 0 };
    attention_case_opts(g, 3, 70, 70, 4, 2, 32, NULL, lens3, 90, w5);
    const int32_t lens2[2] = { 130, 64 };
    attention_case_opts(g, 2, 130, 130, 4, 2, 64, NULL, lens2, 91, w40);
    attention_case_opts(g, 1, 129, 129, 2, 1, 6, NULL, NULL, 92, w5);      /* no lengths */
    /* chunked prefill into a cache: 70 queries at positions 30.. and 0.., keys to 100, 50 */
    const int32_t pos9[2] = { 30, 0 }, klen9[2] = { 100, 50 };
    attention_case_opts(g, 2, 70, 128, 4, 1, 64, pos9, klen9, 93, w40);
    /* decode: 5, 3 and 5 new tokens after 37, 0 and 70 cached */
    const int32_t pos5[3] = { 37, 0, 70 }, klen5[3] = { 42, 3, 75 };
    attention_case_opts(g, 3, 5, 80, 8, 2, 64, pos5, klen5, 94, w5);
    const int32_t lens_f[3] = { 77, 33, 1 };
    attention_case_opts(g, 3, 77, 77, 8, 2, 64, NULL, lens_f, 95, c50);
    const int32_t lens_e[2] = { 100, 1 };
    attention_case_opts(g, 2, 100, 100, 4, 4, 32, NULL, lens_e, 96, c2);
    attention_case_opts(g, 2, 70, 128, 4, 2, 96, pos9, klen9, 97, c2w40);
    const int32_t lens_i[2] = { 40, 9 };
    attention_case_opts(g, 2, 40, 40, 2, 1, 256, NULL, lens_i, 98, c2w5);
}

TEST(cuda_attention_window_softcap_vs_cpu)
{
    const mu_backend *g = gpu_or_skip();
    for (int v = 0; v < N_ATTN_VARIANTS; v++)
        if (attn_variant(g, v)) attention_window_softcap_cases(g);
    attn_variant_reset(g);
}

/* softcap and softcap_bwd (Gemma-2's final logits): caps of 30 (Gemma-2's) and 1 on inputs
 * of spread 20 (saturated, 1 - (Y/cap)^2 near 0), grid-stride sizes; the backward from the
 * CPU's Y, so only the backward is compared. */
TEST(cuda_softcap_fwd_bwd_vs_cpu)
{
    const mu_backend *g = gpu_or_skip(), *c = mu_backend_cpu();
    const size_t sizes[] = { 1, 1000, 3000001 };   /* more than one grid covers */
    const float caps[] = { 30.0f, 1.0f };
    char what[96];
    for (size_t si = 0; si < 3; si++)
        for (int ci = 0; ci < 2; ci++) {
            size_t n = sizes[si];
            float cap = caps[ci], *X = fnew(n), *dX = fnew(n);
            fill(X, n, 100 + si, 20); fill(dX, n, 101 + si, 1);
            dbuf gX = dnew(g, X, n), gdX = dnew(g, dX, n);
            c->softcap(X, n, cap);
            g->softcap(gX.p, n, cap);
            snprintf(what, sizeof what, "softcap n%zu cap %g", n, cap);
            dcheck(&gX, X, what, NMSE_F32);
            dbuf cY = dnew(g, X, n);
            c->softcap_bwd(dX, X, n, cap);
            g->softcap_bwd(gdX.p, cY.p, n, cap);
            snprintf(what, sizeof what, "softcap_bwd n%zu cap %g", n, cap);
            dcheck(&gdX, dX, what, NMSE_F32);
            dfree(&gX); dfree(&gdX); dfree(&cY);
            free(X); free(dX);
        }
}

TEST(cuda_glu_elementwise_vs_cpu)
{
    const mu_backend *g = gpu_or_skip(), *c = mu_backend_cpu();
    /* more elements than one grid covers: exercises the grid-stride loops */
    const size_t sizes[] = { 1, 1000, 3000001 };
    for (size_t si = 0; si < 3; si++) {
        size_t n = sizes[si];
        float *G = fnew(n), *U = fnew(n), *dA = fnew(n), *A = fnew(n), *dG = fnew(n);
        float *dU = fnew(n);
        fill(G, n, 60, 3); fill(U, n, 61, 1); fill(dA, n, 62, 1);
        dbuf gG = dnew(g, G, n), gU = dnew(g, U, n), gdA = dnew(g, dA, n), gA = dnew(g, NULL, n);
        dbuf gdG = dnew(g, NULL, n), gdU = dnew(g, NULL, n);
        c->swiglu(A, G, U, n);
        g->swiglu(gA.p, gG.p, gU.p, n);
        dcheck(&gA, A, "swiglu", NMSE_F32);
        c->swiglu_bwd(dG, dU, dA, G, U, n);
        g->swiglu_bwd(gdG.p, gdU.p, gdA.p, gG.p, gU.p, n);
        dcheck(&gdG, dG, "swiglu_bwd dG", NMSE_F32);
        dcheck(&gdU, dU, "swiglu_bwd dU", NMSE_F32);
        for (int tf = 0; tf < 2; tf++) {
            c->gelu(A, G, n, tf);
            g->gelu(gA.p, gG.p, n, tf);
            dcheck(&gA, A, "gelu", NMSE_F32);
            c->gelu_bwd(dG, dA, G, n, tf);
            g->gelu_bwd(gdG.p, gdA.p, gG.p, n, tf);
            dcheck(&gdG, dG, "gelu_bwd dX", NMSE_F32);
            c->geglu(A, G, U, n, tf);
            g->geglu(gA.p, gG.p, gU.p, n, tf);
            dcheck(&gA, A, "geglu", NMSE_F32);
            c->geglu_bwd(dG, dU, dA, G, U, n, tf);
            g->geglu_bwd(gdG.p, gdU.p, gdA.p, gG.p, gU.p, n, tf);
            dcheck(&gdG, dG, "geglu_bwd dG", NMSE_F32);
            dcheck(&gdU, dU, "geglu_bwd dU", NMSE_F32);
        }
        c->add(G, U, n);
        g->add(gG.p, gU.p, n);
        dcheck(&gG, G, "add", 0.0);
        c->scale(G, -0.37f, n);
        g->scale(gG.p, -0.37f, n);
        dcheck(&gG, G, "scale", 0.0);
        /* zero and copy */
        g->copy(gA.p, gG.p, n * sizeof(float));
        dcheck(&gA, G, "copy", 0.0);
        g->zero(gA.p, n * sizeof(float));
        memset(A, 0, n * sizeof(float));
        dcheck(&gA, A, "zero", 0.0);
        dfree(&gG); dfree(&gU); dfree(&gdA); dfree(&gA); dfree(&gdG); dfree(&gdU);
        free(G); free(U); free(dA); free(A); free(dG); free(dU);
    }
}

TEST(cuda_log_softmax_cross_entropy_vs_cpu)
{
    const mu_backend *g = gpu_or_skip(), *c = mu_backend_cpu();
    const int N = 11, V = 49152;
    size_t n = (size_t)N * V;
    float *X = fnew(n), *Y = fnew(n), *d = fnew(n), loss_c[11], loss_g[11];
    fill(X, n, 70, 4);
    X[5] = 80.0f;                                      /* a large logit: overflow-safe? */
    int32_t t[11] = { 0, 5, V - 1, -1, 17, V, 3, 3, -100, 49000, 1 };  /* ignored: -1, V, -100 */
    dbuf gX = dnew(g, X, n), gY = dnew(g, NULL, n), gd = dnew(g, NULL, n);
    c->log_softmax(Y, X, N, V);
    g->log_softmax(gY.p, gX.p, N, V);
    dcheck(&gY, Y, "log_softmax", NMSE_F32);
    g->log_softmax(gX.p, gX.p, N, V);                  /* in place */
    dcheck(&gX, Y, "log_softmax in place", NMSE_F32);
    dbuf gX2 = dnew(g, X, n);
    c->cross_entropy(loss_c, d, X, t, N, V, 0.125f);
    g->cross_entropy(loss_g, gd.p, gX2.p, t, N, V, 0.125f);
    check_close("cross_entropy loss", loss_g, loss_c, N, NMSE_F32);
    for (int i = 0; i < N; i++)
        if (t[i] < 0 || t[i] >= V) CHECK_MSG(loss_g[i] == 0.0f, "ignored row %d: loss %g", i, loss_g[i]);
    dcheck(&gd, d, "cross_entropy dlogits", NMSE_F32);
    g->cross_entropy(loss_g, NULL, gX2.p, t, N, V, 1.0f);   /* loss only */
    check_close("cross_entropy loss (no dlogits)", loss_g, loss_c, N, NMSE_F32);
    dfree(&gX); dfree(&gY); dfree(&gd); dfree(&gX2);
    free(X); free(Y); free(d);
}

/* target_logprob and logp_grad: logp in double (GPU exp and summation order differ from the
 * CPU's by rounding only: ~1e-15 relative), dlogits accumulated onto random values, rows
 * with ignored targets (-1, V, -100) or a[n] == 0 left bit for bit as they were. */
static void logp_case(const mu_backend *g, int N, int V, uint64_t seed)
{
    const mu_backend *c = mu_backend_cpu();
    size_t n = (size_t)N * V;
    float *X = fnew(n), *D = fnew(n);
    fill(X, n, seed, 4);
    fill(D, n, seed + 1, 1);
    int32_t *t = calloc((size_t)N, sizeof *t);
    double *a = calloc((size_t)N, sizeof *a), *lc = calloc((size_t)N, sizeof *lc);
    double *lg = calloc((size_t)N, sizeof *lg), *lg2 = calloc((size_t)N, sizeof *lg2);
    CHECK(t && a && lc && lg && lg2);
    mu_rng r;
    mu_rng_seed(&r, seed + 2);
    for (int i = 0; i < N; i++) {
        t[i] = (int32_t)mu_rng_below(&r, (uint64_t)V);
        a[i] = 2 * mu_rng_normal(&r);
        lg[i] = lg2[i] = NAN;                          /* every entry must be written */
    }
    static const int32_t ignored[3] = { -1, 0, -100 };  /* 0 stands for V */
    for (int k = 0; k < 3 && 3 * k + 2 < N; k++) t[3 * k + 2] = ignored[k] ? ignored[k] : V;
    if (N > 4) a[4] = 0.0;                             /* untouched */
    if (N > 1 && V > 1) {          /* row 1: p(y) = 1 - ~e^-16, logp ~ -1.1e-7 */
        double rest = 0;
        for (int j = 0; j < V; j++) if (j != t[1]) rest += exp((double)X[(size_t)V + j]);
        X[(size_t)V + t[1]] = (float)(log(rest) + 16);
    }
    char what[96];
    dbuf gX = dnew(g, X, n), gD = dnew(g, D, n);
    c->target_logprob(lc, X, t, N, V);
    g->target_logprob(lg, gX.p, t, N, V);
    g->target_logprob(lg2, gX.p, t, N, V);
    CHECK_MSG(!memcmp(lg, lg2, (size_t)N * sizeof *lg), "target_logprob N%d V%d: two runs differ",
              N, V);
    for (int i = 0; i < N; i++) {
        if (t[i] < 0 || t[i] >= V) {
            CHECK_MSG(lg[i] == 0.0, "target_logprob N%d V%d: ignored row %d: %g", N, V, i, lg[i]);
            continue;
        }
        CHECK_MSG(isfinite(lg[i]) && fabs(lg[i] - lc[i]) <= 1e-12 * (1 + fabs(lc[i])),
                  "target_logprob N%d V%d row %d: cuda %.17g, cpu %.17g", N, V, i, lg[i], lc[i]);
    }
    if (N > 1 && V > 1) {
        /* relative accuracy near p = 1 against a long double reference; the CPU's sequential
         * sum of V terms onto ~1 carries ~sqrt(V) roundings of 1e-16 (1e-6 relative here) */
        const float *z = X + (size_t)V;
        long double mx = z[0], s = 0;
        for (int j = 1; j < V; j++) if (z[j] > mx) mx = z[j];
        for (int j = 0; j < V; j++) s += expl((long double)z[j] - mx);
        double ref = (double)((long double)z[t[1]] - mx - logl(s));
        CHECK_MSG(ref < -1e-8 && ref > -1e-6, "target_logprob: reference %g", ref);
        CHECK_MSG(fabs(lg[1] - ref) <= 1e-5 * fabs(ref) && fabs(lc[1] - ref) <= 1e-5 * fabs(ref),
                  "target_logprob N%d V%d: p close to 1: cuda %.17g, cpu %.17g, reference %.17g",
                  N, V, lg[1], lc[1], ref);
    }

    float *Dc = fdup(D, n), *Dg = fnew(n);
    c->logp_grad(Dc, X, t, a, N, V);
    g->logp_grad(gD.p, gX.p, t, a, N, V);
    snprintf(what, sizeof what, "logp_grad N%d V%d", N, V);
    dget(&gD, Dg, what);
    check_close(what, Dg, Dc, n, NMSE_F32);
    for (int i = 0; i < N; i++)
        if (t[i] < 0 || t[i] >= V || a[i] == 0)
            CHECK_MSG(!memcmp(Dg + (size_t)i * V, D + (size_t)i * V, (size_t)V * sizeof *D),
                      "%s: row %d (target %d, a %g) changed", what, i, t[i], a[i]);
    /* elementwise too: the f32 results may differ by a rounding of a * p only */
    for (size_t i = 0; i < n; i++)
        CHECK_MSG(fabsf(Dg[i] - Dc[i]) <= 2e-7f * (1 + fabsf(Dc[i]) + 2 * fabsf((float)a[i / V])),
                  "%s [%zu]: cuda %.9g, cpu %.9g", what, i, Dg[i], Dc[i]);
    /* accumulates: a second call adds the same again */
    c->logp_grad(Dc, X, t, a, N, V);
    g->logp_grad(gD.p, gX.p, t, a, N, V);
    snprintf(what, sizeof what, "logp_grad N%d V%d (twice)", N, V);
    dcheck(&gD, Dc, what, NMSE_F32);
    dfree(&gX); dfree(&gD);
    free(X); free(D); free(t); free(a); free(lc); free(lg); free(lg2); free(Dc); free(Dg);
}

/* Named for the filters of tests/check.sh, which run the cuda_log_softmax tests in the
 * emulator under ASan+UBSan. */
TEST(cuda_log_softmax_target_logprob_logp_grad_vs_cpu)
{
    const mu_backend *g = gpu_or_skip();
    logp_case(g, 13, 50257, 80);      /* a vocabulary like GPT-2's: not a multiple of NT */
    logp_case(g, 301, 37, 81);        /* more rows than the emulator's grid: grid-stride */
    logp_case(g, 5, 1, 82);           /* V = 1: logp = 0, gradient a - a */
    logp_case(g, 2, 300, 83);
    /* N = 0 and V = 0: nothing happens; V = 0 gives logp = 0 */
    int32_t t2[2] = { 0, 1 };
    double a2[2] = { 1, 1 }, l2[2] = { NAN, NAN };
    g->target_logprob(l2, NULL, t2, 0, 5);
    CHECK(isnan(l2[0]));
    g->target_logprob(l2, NULL, t2, 2, 0);
    CHECK(l2[0] == 0 && l2[1] == 0);
    g->logp_grad(NULL, NULL, t2, a2, 0, 5);
    g->logp_grad(NULL, NULL, t2, a2, 2, 0);
}

/* ---- bf16 weights ------------------------------------------------------------------------- */
/* Both backends multiply the same bf16 values exactly and sum in f32: they differ only in
 * summation order (and the tensor cores' f32 accumulation), far below bf16 rounding. */
#define NMSE_BF16_GEMM 1e-8

/* A device buffer of n bf16 values with guards; host copy in. */
static dbuf d16new(const mu_backend *be, const uint16_t *host, size_t n)
{
    float *tmp = fnew((n + 1) / 2);
    if (host) memcpy(tmp, host, n * sizeof *host);
    dbuf d = dnew(be, tmp, (n + 1) / 2);
    free(tmp);
    return d;
}

static void round_all(uint16_t *out, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = mu_f32_to_bf16(x[i]);
}

TEST(cuda_to_bf16_rounds_like_cpu)
{
    const mu_backend *g = gpu_or_skip(), *c = mu_backend_cpu();
    enum { N = 4096 };
    float *x = fnew(N);
    fill(x, N, 31, 3);
    /* ties (even and odd), values next to ties, subnormals, huge values, infinities */
    const float special[] = { 1.00390625f, 1.01171875f, 1.0039063f, 1.0039062f, 1e-40f, -3e-39f,
                              3.3e38f, -3.39e38f, INFINITY, -INFINITY, 0.0f, -0.0f };
    memcpy(x, special, sizeof special);
    uint16_t *want = calloc(N, sizeof *want), *got = calloc(N, sizeof *got);
    CHECK(want && got);
    c->to_bf16(want, x, N);
    dbuf dx = dnew(g, x, N), dout = d16new(g, NULL, N);
    g->to_bf16((uint16_t *)dout.p, dx.p, N);
    float *tmp = fnew(N / 2);
    dget(&dout, tmp, "to_bf16");
    memcpy(got, tmp, N * sizeof *got);
    for (int i = 0; i < N; i++)
        CHECK_MSG(got[i] == want[i], "to_bf16(%.9g): cuda 0x%04x, cpu 0x%04x", x[i], got[i],
                  want[i]);
    free(tmp); free(x); free(want); free(got);
    dfree(&dx); dfree(&dout);
}

typedef void (*mm16_fn)(float *Y, const float *X, const uint16_t *W, int N, int K, int M,
                        int acc);
typedef void (*mm16_bwd_fn)(float *dX, float *dW, const float *dY, const float *X,
                            const uint16_t *W, int N, int K, int M, int accumulate_dx);

/* matmul_bf16 (W [M,K]) or, with wt, matmul_wt_bf16 (W [K,M]) */
static void matmul_bf16_case(const mu_backend *g, int wt, int N, int K, int M, uint64_t seed)
{
    const mu_backend *c = mu_backend_cpu();
    mm16_fn cf = wt ? c->matmul_wt_bf16 : c->matmul_bf16;
    mm16_fn gf = wt ? g->matmul_wt_bf16 : g->matmul_bf16;
    mm16_bwd_fn cb = wt ? c->matmul_wt_bf16_bwd : c->matmul_bf16_bwd;
    mm16_bwd_fn gb = wt ? g->matmul_wt_bf16_bwd : g->matmul_bf16_bwd;
    const char *op = wt ? "matmul_wt_bf16" : "matmul_bf16";
    size_t nx = (size_t)N * K, nw = (size_t)M * K, ny = (size_t)N * M;
    float *X = fnew(nx), *Wf = fnew(nw), *Y = fnew(ny), *dY = fnew(ny);
    fill(X, nx, seed, 1); fill(Wf, nw, seed + 1, 0.5f); fill(Y, ny, seed + 2, 1);
    fill(dY, ny, seed + 3, 1);
    uint16_t *W = calloc(nw ? nw : 1, sizeof *W);
    CHECK(W);
    round_all(W, Wf, nw);
    dbuf dW = d16new(g, W, nw), dX = dnew(g, X, nx), ddY = dnew(g, dY, ny);
    const uint16_t *gW = (const uint16_t *)dW.p;
    char what[96];
    for (int acc = 0; acc < 2; acc++) {
        float *Yc = fdup(Y, ny);
        dbuf dYo = dnew(g, Y, ny);
        cf(Yc, X, W, N, K, M, acc);
        gf(dYo.p, dX.p, gW, N, K, M, acc);
        snprintf(what, sizeof what, "%s %dx%dx%d acc=%d", op, N, K, M, acc);
        dcheck(&dYo, Yc, what, NMSE_BF16_GEMM);
        dfree(&dYo); free(Yc);
    }
    for (int mode = 0; mode < 3; mode++) {   /* dX overwrite + dW, dX accumulate, dW only */
        int acc = mode == 1;
        float *gX = fnew(nx), *gWg = fnew(nw);
        fill(gX, nx, seed + 4, 1); fill(gWg, nw, seed + 5, 1);
        float *gXc = fdup(gX, nx), *gWc = fdup(gWg, nw);
        dbuf dgX = dnew(g, gX, nx), dgW = dnew(g, gWg, nw);
        cb(mode == 2 ? NULL : gXc, mode == 1 ? NULL : gWc, dY, X, W, N, K, M, acc);
        gb(mode == 2 ? NULL : dgX.p, mode == 1 ? NULL : dgW.p, ddY.p, dX.p, gW, N, K, M, acc);
        snprintf(what, sizeof what, "%s_bwd dX %dx%dx%d mode=%d", op, N, K, M, mode);
        dcheck(&dgX, gXc, what, NMSE_BF16_GEMM);
        snprintf(what, sizeof what, "%s_bwd dW %dx%dx%d mode=%d", op, N, K, M, mode);
        dcheck(&dgW, gWc, what, NMSE_BF16_GEMM);
        dfree(&dgX); dfree(&dgW);
        free(gX); free(gWg); free(gXc); free(gWc);
    }
    /* the bf16 GEMM really rounds X: it differs from the f32 GEMM on the same weights */
    float *Y32 = fnew(ny), *Y16 = fnew(ny);
    for (size_t i = 0; i < nw; i++) Wf[i] = mu_bf16_to_f32(W[i]);
    (wt ? c->matmul_wt : c->matmul)(Y32, X, Wf, N, K, M, 0);
    cf(Y16, X, W, N, K, M, 0);
    double num = 0, den = 0;
    for (size_t i = 0; i < ny; i++) { num += (Y32[i] - Y16[i]) * (Y32[i] - Y16[i]); den += Y32[i] * Y32[i]; }
    CHECK_MSG(ny == 0 || num / den > 100 * NMSE_BF16_GEMM, "%s equals the f32 GEMM (nmse %.3g)",
              op, num / den);
    dfree(&dW); dfree(&dX); dfree(&ddY);
    free(X); free(Wf); free(W); free(Y); free(dY); free(Y32); free(Y16);
}

TEST(cuda_matmul_bf16_fwd_bwd_vs_cpu)
{
    const mu_backend *g = gpu_or_skip();
    matmul_bf16_case(g, 0, 37, 53, 29, 41);
    matmul_bf16_case(g, 0, 1, 64, 300, 42);     /* decode: one row */
    matmul_bf16_case(g, 0, 256, 576, 192, 43);
    matmul_bf16_case(g, 0, 7, 4096, 96, 44);    /* long reductions */
}

TEST(cuda_matmul_wt_bf16_fwd_bwd_vs_cpu)
{
    const mu_backend *g = gpu_or_skip();
    matmul_bf16_case(g, 1, 37, 53, 29, 45);
    matmul_bf16_case(g, 1, 1, 64, 300, 46);     /* decode: one row */
    matmul_bf16_case(g, 1, 300, 97, 131, 47);   /* N above the CPU's dW token chunk */
    matmul_bf16_case(g, 1, 7, 4096, 96, 48);    /* long reductions */
    matmul_bf16_case(g, 1, 64, 11, 1, 49);      /* one output column */
}

TEST(cuda_embed_bf16_vs_cpu)
{
    const mu_backend *g = gpu_or_skip(), *c = mu_backend_cpu();
    const int V = 50, D = 37, N = 23;
    float *Ef = fnew((size_t)V * D);
    fill(Ef, (size_t)V * D, 51, 1);
    uint16_t *E = calloc((size_t)V * D, sizeof *E);
    CHECK(E);
    round_all(E, Ef, (size_t)V * D);
    int32_t ids[23];
    for (int i = 0; i < N; i++) ids[i] = (i * 17 + 3) % V;
    ids[5] = ids[9];                          /* repeated id */
    float *Yc = fnew((size_t)N * D);
    c->embed_bf16(Yc, E, ids, N, D);
    dbuf dE = d16new(g, E, (size_t)V * D), dY = dnew(g, NULL, (size_t)N * D);
    g->embed_bf16(dY.p, (const uint16_t *)dE.p, ids, N, D);
    dcheck(&dY, Yc, "embed_bf16", 0.0);
    dfree(&dE); dfree(&dY);
    free(Ef); free(E); free(Yc);
}

/* ---- whole model ------------------------------------------------------------------------- */
enum { MB = 3, MT = 9 };
static const int32_t m_lens[MB] = { 9, 5, 1 };

static void model_batch(int32_t *ids, int32_t *targets, int V, uint64_t seed)
{
    mu_rng r;
    mu_rng_seed(&r, seed);
    for (int b = 0; b < MB; b++)
        for (int t = 0; t < MT; t++)
            ids[b * MT + t] = t < m_lens[b] ? (int32_t)mu_rng_below(&r, V) : 0;
    for (int b = 0; b < MB; b++)
        for (int t = 0; t < MT; t++)
            targets[b * MT + t] = t + 1 < m_lens[b] ? ids[b * MT + t + 1] : -1;
}

/* Forward (train), mean cross-entropy, backward with every parameter trainable.
 * Returns the loss; logits (host [MB*MT*V]) and grads[i] (host, malloc'd) filled. */
static double model_run(mu_model *m, const int32_t *ids, const int32_t *targets, float *logits,
                         float **grads)
{
    char err[256];
    int V = mu_model_config(m)->vocab, n = mu_model_n_params(m);
    CHECK(mu_model_set_all_trainable(m, 1) == 0);
    mu_model_zero_grad(m);
    mu_batch b = { MB, MT, ids, m_lens };
    mu_fwd_opts o = { .train = 1};
    CHECK_MSG(mu_model_forward(m, &b, &o, err, sizeof err) == 0, "forward: %s", err);
    memcpy(logits, mu_model_logits(m), sizeof(float) * MB * MT * V);
    float *dl = fnew((size_t)MB * MT * V);
    double loss = mu_model_cross_entropy(m, targets, dl, NULL);
    CHECK_MSG(mu_model_backward(m, dl, NULL, 0, err, sizeof err) == 0, "backward: %s", err);
    for (int i = 0; i < n; i++) {
        mu_param *p = mu_model_param(m, i);
        grads[i] = fnew((size_t)p->numel);
        mu_model_get_grad(m, i, grads[i]);
    }
    free(dl);
    return loss;
}

/* Same weights on both backends (GPU model gets the CPU model's parameters). */
static void compare_models(mu_model *mc, mu_model *mg, uint64_t seed, double logit_nmse,
                           double grad_nmse)
{
    int n = mu_model_n_params(mc), V = mu_model_config(mc)->vocab;
    CHECK_EQ_INT(n, mu_model_n_params(mg));
    for (int i = 0; i < n; i++) {
        mu_param *p = mu_model_param(mc, i);
        float *w = fnew((size_t)p->numel);
        mu_model_get_param(mc, i, w);
        mu_model_set_param(mg, i, w);
        free(w);
    }
    int32_t ids[MB * MT], targets[MB * MT];
    model_batch(ids, targets, V, seed);
    float *lc = fnew((size_t)MB * MT * V), *lg = fnew((size_t)MB * MT * V);
    float **gc = calloc(n, sizeof *gc), **gg = calloc(n, sizeof *gg);
    double Lc = model_run(mc, ids, targets, lc, gc);
    double Lg = model_run(mg, ids, targets, lg, gg);
    CHECK_CLOSE(Lg, Lc, 1e-5, 1e-6);
    /* compare valid positions only (padding logits are meaningless) */
    for (int b = 0; b < MB; b++)
        check_close("logits", lg + (size_t)b * MT * V, lc + (size_t)b * MT * V,
                    (size_t)m_lens[b] * V, logit_nmse);
    for (int i = 0; i < n; i++) {
        mu_param *p = mu_model_param(mc, i);
        check_close(p->info.name, gg[i], gc[i], (size_t)p->numel, grad_nmse);
        free(gc[i]); free(gg[i]);
    }
    free(gc); free(gg); free(lc); free(lg);
}

static mu_config random_llama(void)
{
    mu_config c;
    mu_config_init(&c);
    c.n_layer = 2; c.d_model = 64; c.n_head = 4; c.n_kv_head = 2; c.head_dim = 16;
    c.d_ff = 96; c.vocab = 101; c.max_pos = 128; c.rms_eps = 1e-5f; c.rope_theta = 10000;
    c.tie_embeddings = 0; c.qkv_bias = 1;
    return c;
}

/* A random Llama on both backends (untied with q/k/v biases, then tied without), the
 * GPU model given the CPU model's parameters. */
static void random_llama_vs_cpu(mu_weights weights, uint64_t seed, double logit_nmse,
                                double grad_nmse)
{
    const mu_backend *g = gpu_or_skip();
    char err[256];
    for (int tied = 0; tied < 2; tied++) {
        mu_config c = random_llama();
        c.tie_embeddings = tied;
        c.qkv_bias = !tied;
        mu_model *mc = mu_model_init_random_as(&c, seed + tied, 0.3f, mu_backend_cpu(), weights,
                                               err, sizeof err);
        CHECK_MSG(mc, "%s", err);
        mu_model *mg = mu_model_init_random_as(&c, 99, 0.3f, g, weights, err, sizeof err);
        CHECK_MSG(mg, "%s", err);
        compare_models(mc, mg, 123 + seed + tied, logit_nmse, grad_nmse);
        mu_model_free(mc);
        mu_model_free(mg);
    }
}

TEST(cuda_model_random_llama_logits_grads_vs_cpu)
{
    random_llama_vs_cpu(MU_WEIGHTS_F32, 7, 1e-9, 1e-7);
}

/* A random Gemma on both backends: GeGLU (tanh, then erf form), RMSNorm by 1 + w,
 * embeddings times sqrt(d_model), tied head; then a random OLMo-2: norms on the blocks'
 * outputs, q and k normed over all heads; then a random Gemma-2: norms on both sides,
 * attention scores and logits soft-capped to caps they reach, a window of 3 on layer 0,
 * query_pre_attn_scalar 24; then a random Gemma-3: q and k normed per head, layer 0 sliding
 * with its own rotary base. */
TEST(cuda_model_random_gemma_olmo2_logits_grads_vs_cpu)
{
    const mu_backend *g = gpu_or_skip();
    char err[256];
    const char *acts[] = { "gelu_pytorch_tanh", "gelu", "silu", "gelu_pytorch_tanh", "gelu_pytorch_tanh" };
    const char *types[] = { "gemma", "gemma", "olmo2", "gemma2", "gemma3_text" };
    for (int k = 0; k < 5; k++) {
        mu_config c = random_llama();
        c.tie_embeddings = 0;
        CHECK(mu_config_set_model_type(&c, types[k]) == 0);
        strcpy(c.hidden_act, acts[k]);
        c.qkv_bias = 0;
        if (k == 3) {
            c.attn_softcap = 1.5f; c.final_softcap = 2.5f;
            c.sliding_window = 3; c.query_scalar = 24;
        }
        if (k == 4) {                     /* q/k normed per head, local rope on layer 0 */
            c.sliding_window = 3; c.global_every = 2; c.rope_local_theta = 100;
        }
        mu_model *mc = mu_model_init_random_as(&c, 17 + k, 0.3f, mu_backend_cpu(), MU_WEIGHTS_F32, err, sizeof err);
        CHECK_MSG(mc, "%s", err);
        mu_model *mg = mu_model_init_random_as(&c, 99, 0.3f, g, MU_WEIGHTS_F32, err, sizeof err);
        CHECK_MSG(mg, "%s", err);
        compare_models(mc, mg, 140 + k, 1e-9, 1e-7);
        mu_model_free(mc);
        mu_model_free(mg);
    }
}

/* A random GPT-NeoX, GPT-2 or Phi config: 4 heads splitting d_model, as they have. */
static mu_config random_gpt(const char *type)
{
    mu_config c = random_llama();
    CHECK(mu_config_set_model_type(&c, type) == 0);
    c.n_kv_head = c.n_head = 4;
    c.head_dim = c.d_model / c.n_head;
    return c;
}

/* c on both backends (weights wt), the GPU model given the CPU model's parameters. */
static void config_vs_cpu(const mu_config *c, mu_weights wt, uint64_t seed, double logit_nmse,
                          double grad_nmse)
{
    const mu_backend *g = gpu_or_skip();
    char err[256];
    mu_model *mc = mu_model_init_random_as(c, seed, 0.3f, mu_backend_cpu(), wt, err, sizeof err);
    CHECK_MSG(mc, "%s", err);
    mu_model *mg = mu_model_init_random_as(c, 99, 0.3f, g, wt, err, sizeof err);
    CHECK_MSG(mg, "%s", err);
    compare_models(mc, mg, seed + 100, logit_nmse, grad_nmse);
    mu_model_free(mc);
    mu_model_free(mg);
}

/* GPT-NeoX on both backends: LayerNorms with biases, fused q/k/v split and joined by
 * strided copies, a quarter of each head rotating (copied out and back), the parallel
 * residual (and, second, the sequential one with gelu's tanh form), plain GELU MLP. */
TEST(cuda_model_random_neox_logits_grads_vs_cpu)
{
    mu_config c = random_gpt("gpt_neox");
    c.rotary_dim = c.head_dim / 4;
    config_vs_cpu(&c, MU_WEIGHTS_F32, 23, 1e-9, 1e-7);
    c.parallel_residual = 0;
    strcpy(c.hidden_act, "gelu_new");
    config_vs_cpu(&c, MU_WEIGHTS_F32, 24, 1e-9, 1e-7);
}

/* GPT-2 on both backends: learned positions, Conv1D weights through matmul_wt (f32, then bf16
 * weights as cuda_model_bf16_logits_grads_vs_cpu bounds them), fused c_attn in blocks;
 * untied, then tied. */
TEST(cuda_model_random_gpt2_logits_grads_vs_cpu)
{
    mu_config c = random_gpt("gpt2");
    c.tie_embeddings = 0;
    config_vs_cpu(&c, MU_WEIGHTS_F32, 31, 1e-9, 1e-7);
    c.tie_embeddings = 1;
    config_vs_cpu(&c, MU_WEIGHTS_BF16, 32, 1e-6, 3e-5);
}

/* Phi on both backends: one LayerNorm feeding both parallel branches (its gradient from both),
 * separate q/k/v over 2 kv heads, half of each head rotating, a bias on lm_head; untied in
 * f32, then tied with bf16 weights. */
TEST(cuda_model_random_phi_logits_grads_vs_cpu)
{
    mu_config c = random_gpt("phi");
    c.n_kv_head = 2;
    c.rotary_dim = c.head_dim / 2;
    c.tie_embeddings = 0;
    config_vs_cpu(&c, MU_WEIGHTS_F32, 41, 1e-9, 1e-7);
    c.tie_embeddings = 1;
    config_vs_cpu(&c, MU_WEIGHTS_BF16, 42, 1e-6, 3e-5);
}

/* Phi-3 on both backends: qkv_proj over 2 kv heads split in blocks and joined, gate_up_proj
 * split and joined; f32, then bf16 weights with half of each head rotating, then longrope. */
TEST(cuda_model_random_phi3_logits_grads_vs_cpu)
{
    mu_config c = random_llama();
    CHECK(mu_config_set_model_type(&c, "phi3") == 0);
    c.qkv_bias = 0;
    c.n_kv_head = c.n_head / 2;
    config_vs_cpu(&c, MU_WEIGHTS_F32, 51, 1e-9, 1e-7);
    c.rotary_dim = c.head_dim / 2;
    config_vs_cpu(&c, MU_WEIGHTS_BF16, 52, 1e-6, 3e-5);
    strcpy(c.rope_scaling, "longrope");      /* past an original length of 4: the long factors */
    c.rope_pairs = c.rotary_dim / 2;
    c.rope_orig_max_pos = 4;
    c.rope_attn = 1.3f;
    for (int i = 0; i < c.rope_pairs; i++) c.rope_short[i] = 1.0f + 0.1f * i, c.rope_long[i] = 2.0f + i;
    config_vs_cpu(&c, MU_WEIGHTS_F32, 53, 1e-9, 1e-7);
}

/* Adapters of rank 3 (scale 0.7) with the same random A and B on every layer matrix of mc
 * and mg, the base weights frozen (mg's given mc's values); forward, mean cross-entropy,
 * backward: logits, the loss and every dA, dB compared. */
/* A random model of config c on the CPU (ms[0], from seed) and on device g (ms[1]) with the
 * same parameters. 0, or -1 after a failed CHECK. */
static int model_pair(const mu_config *c, mu_weights wt, uint64_t seed, const mu_backend *g, mu_model *ms[2])
{
    char err[256];
    ms[0] = mu_model_init_random_as(c, seed, 0.3f, mu_backend_cpu(), wt, err, sizeof err);
    CHECK_MSG(ms[0], "%s", err);
    ms[1] = ms[0] ? mu_model_init_random_as(c, 99, 0.3f, g, wt, err, sizeof err) : NULL;
    CHECK_MSG(ms[1], "%s", err);
    if (!ms[1]) { mu_model_free(ms[0]); return -1; }
    for (int i = 0; i < mu_model_n_params(ms[0]); i++) {
        mu_param *p = mu_model_param(ms[0], i);
        float *w = fnew((size_t)p->numel);
        mu_model_get_param(ms[0], i, w);
        mu_model_set_param(ms[1], i, w);
        free(w);
    }
    return 0;
}

/* One training step of the batch on the CPU model ms[0] and the device model ms[1] (zeroed
 * gradients, forward, mean cross-entropy, backward): the same loss, and logits (lg[k],
 * malloc'd host [MB*MT*V]) within logit_nmse at the rows' valid positions. */
static void train_step_both(mu_model *ms[2], const int32_t *ids, const int32_t *targets, float *lg[2],
                            double logit_nmse)
{
    char err[256];
    int V = mu_model_config(ms[0])->vocab;
    float *dl = fnew((size_t)MB * MT * V);
    double loss[2];
    for (int k = 0; k < 2; k++) {
        mu_model_zero_grad(ms[k]);
        mu_batch b = { MB, MT, ids, m_lens };
        mu_fwd_opts o = { .train = 1 };
        CHECK_MSG(mu_model_forward(ms[k], &b, &o, err, sizeof err) == 0, "forward: %s", err);
        lg[k] = fnew((size_t)MB * MT * V);
        memcpy(lg[k], mu_model_logits(ms[k]), sizeof(float) * MB * MT * V);
        loss[k] = mu_model_cross_entropy(ms[k], targets, dl, NULL);
        CHECK_MSG(mu_model_backward(ms[k], dl, NULL, 0, err, sizeof err) == 0, "backward: %s", err);
    }
    free(dl);
    CHECK_CLOSE(loss[1], loss[0], 1e-5, 1e-6);
    for (int b = 0; b < MB; b++)
        check_close("logits", lg[1] + (size_t)b * MT * V, lg[0] + (size_t)b * MT * V, (size_t)m_lens[b] * V, logit_nmse);
}

static void lora_vs_cpu(const mu_config *c, mu_weights wt, uint64_t seed, double logit_nmse, double grad_nmse)
{
    const mu_backend *g = gpu_or_skip();
    mu_model *ms[2];
    if (model_pair(c, wt, seed, g, ms)) return;
    int n = mu_model_n_params(ms[0]), V = c->vocab;
    mu_rng r;
    mu_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        if (!mu_model_lora_eligible(ms[0], i)) continue;
        int in, out;
        mu_model_matrix_dims(ms[0], i, &in, &out);
        float *AB = fnew(3 * ((size_t)in + out));      /* A [3, in], then B [out, 3] */
        for (size_t e = 0; e < 3 * ((size_t)in + out); e++) AB[e] = (float)(0.2 * mu_rng_normal(&r));
        for (int k = 0; k < 2; k++) CHECK(mu_model_add_lora(ms[k], i, 3, 0.7f, AB, AB + (size_t)3 * in) == 0);
        free(AB);
    }
    int32_t ids[MB * MT], targets[MB * MT];
    model_batch(ids, targets, V, seed + 1);
    float *lg[2];
    train_step_both(ms, ids, targets, lg, logit_nmse);
    int adapted = 0;
    for (int i = 0; i < n; i++) {
        const mu_lora *a[2] = { mu_model_lora(ms[0], i), mu_model_lora(ms[1], i) };
        if (!a[0]) continue;
        adapted++;
        size_t na = (size_t)a[0]->r * a[0]->K, nb = (size_t)a[0]->M * a[0]->r;
        float *h[2][2];
        for (int k = 0; k < 2; k++) {
            h[k][0] = fnew(na); h[k][1] = fnew(nb);
            (k ? g : mu_backend_cpu())->download(h[k][0], a[k]->gA, na * 4);
            (k ? g : mu_backend_cpu())->download(h[k][1], a[k]->gB, nb * 4);
        }
        check_close("dA", h[1][0], h[0][0], na, grad_nmse);
        check_close("dB", h[1][1], h[0][1], nb, grad_nmse);
        for (int k = 0; k < 2; k++) { free(h[k][0]); free(h[k][1]); }
    }
    CHECK(adapted >= 2 * 4);
    for (int k = 0; k < 2; k++) { free(lg[k]); mu_model_free(ms[k]); }
}

/* LoRA on both backends: a random Llama (f32), GPT-2 (Conv1D weights, fused c_attn) and a
 * bf16 Llama (the adapters in f32 beside bf16 GEMMs). */
TEST(cuda_model_lora_logits_grads_vs_cpu)
{
    mu_config c = random_llama();
    lora_vs_cpu(&c, MU_WEIGHTS_F32, 41, 1e-9, 1e-7);
    mu_config c2 = random_gpt("gpt2");
    lora_vs_cpu(&c2, MU_WEIGHTS_F32, 42, 1e-9, 1e-7);
    lora_vs_cpu(&c, MU_WEIGHTS_BF16, 43, 1e-6, 3e-5);
}

/* A soft prompt on both backends: the slots of a padded batch (two runs in row 0, one in
 * row 1, vector 2 read twice) read the same vectors; logits and d loss / d vectors agree,
 * on a frozen model (f32 Llama, bf16 Llama, GPT-2 with its learned positions). */
static void soft_prompt_vs_cpu(const mu_config *c, mu_weights wt, uint64_t seed, double logit_nmse,
                               double grad_nmse)
{
    const mu_backend *g = gpu_or_skip();
    mu_model *ms[2];
    if (model_pair(c, wt, seed, g, ms)) return;
    int V = c->vocab, D = c->d_model, ns = 4;
    mu_rng r;
    mu_rng_seed(&r, seed);
    float *P = fnew((size_t)ns * D);
    for (int e = 0; e < ns * D; e++) P[e] = (float)(0.5 * mu_rng_normal(&r));
    for (int k = 0; k < 2; k++) CHECK(mu_model_set_soft_prompt(ms[k], ns, P, 1) == 0);
    int32_t ids[MB * MT], targets[MB * MT];
    model_batch(ids, targets, V, seed + 1);
    ids[1] = -1; ids[2] = -2; ids[3] = -3; ids[6] = -3; ids[MT + 2] = -4;
    float *lg[2], *dP[2];
    train_step_both(ms, ids, targets, lg, logit_nmse);
    for (int k = 0; k < 2; k++) {
        dP[k] = fnew((size_t)ns * D);
        (k ? g : mu_backend_cpu())->download(dP[k], mu_model_soft_prompt(ms[k])->g, (size_t)ns * D * 4);
    }
    check_close("d soft prompt", dP[1], dP[0], (size_t)ns * D, grad_nmse);
    double norm = 0;
    for (int e = 0; e < ns * D; e++) norm += (double)dP[0][e] * dP[0][e];
    CHECK(norm > 0);
    for (int k = 0; k < 2; k++) { free(lg[k]); free(dP[k]); mu_model_free(ms[k]); }
    free(P);
}

TEST(cuda_model_soft_prompt_logits_grads_vs_cpu)
{
    mu_config c = random_llama();
    soft_prompt_vs_cpu(&c, MU_WEIGHTS_F32, 51, 1e-9, 1e-7);
    soft_prompt_vs_cpu(&c, MU_WEIGHTS_BF16, 52, 1e-6, 3e-5);
    mu_config c2 = random_gpt("gpt2");
    soft_prompt_vs_cpu(&c2, MU_WEIGHTS_F32, 53, 1e-9, 1e-7);
}

/* bf16 weights on both backends: same bf16 values, f32 everything else. Rounding an
 * operand to bf16 can flip where the two backends' f32 sums straddle a rounding
 * boundary, and gradient flips compound downwards, so the bounds are looser than f32's
 * but far below the f32-vs-bf16 distance (logits ~1e-3, gradients ~2e-4 NMSE). */
TEST(cuda_model_bf16_logits_grads_vs_cpu)
{
    random_llama_vs_cpu(MU_WEIGHTS_BF16, 17, 1e-6, 3e-5);
}

/* mu-train's path: logits at a subset of positions (logit_rows), target log-probs from the
 * backend (target_logprob) and the gradient made there from per-row coefficients
 * (mu_model_backward_logp, logp_grad), plus host dlogits for whole-row terms; f32 and bf16
 * weights, GPU vs CPU. */
static void logit_rows_case(const mu_backend *g, mu_weights weights, double grad_nmse)
{
    char err[256];
    mu_config c = random_llama();
    mu_model *mc = mu_model_init_random_as(&c, 31, 0.3f, mu_backend_cpu(), weights, err, sizeof err);
    mu_model *mg = mu_model_init_random_as(&c, 32, 0.3f, g, weights, err, sizeof err);
    CHECK_MSG(mc && mg, "%s", err);
    int n = mu_model_n_params(mc), V = c.vocab, R = 0;
    int32_t ids[MB * MT], targets[MB * MT], rows[MB * MT], tg[MB * MT];
    model_batch(ids, targets, V, 77);
    for (int i = 0; i < MB * MT; i++)
        if (targets[i] >= 0 && i % 4 != 2) { rows[R] = i; tg[R++] = targets[i]; }
    double a[MB * MT], lp[2][MB * MT];
    for (int r = 0; r < R; r++) a[r] = 0.07 * (r % 5) - 0.12;
    float *dl = fnew((size_t)R * V), **gr[2];
    for (size_t i = 0; i < (size_t)R * V; i++) dl[i] = 0.01f * (float)((i * 7919) % 13) - 0.06f;
    mu_model *ms[2] = { mc, mg };
    for (int k = 0; k < 2; k++) {
        mu_model *m = ms[k];
        if (k) for (int i = 0; i < n; i++) {
            mu_param *p = mu_model_param(mc, i);
            float *w = fnew((size_t)p->numel);
            mu_model_get_param(mc, i, w);
            mu_model_set_param(mg, i, w);
            free(w);
        }
        CHECK(mu_model_set_all_trainable(m, 1) == 0);
        mu_batch b = { MB, MT, ids, m_lens };
        mu_fwd_opts o = { .train = 1, .logit_rows = rows, .n_logit_rows = R };
        CHECK_MSG(mu_model_forward(m, &b, &o, err, sizeof err) == 0, "%s", err);
        CHECK_EQ_INT(mu_model_logit_rows(m), R);
        CHECK(mu_model_target_logprobs(m, tg, lp[k], err, sizeof err) == 0);
        CHECK_MSG(mu_model_backward_logp(m, tg, a, dl, NULL, 0, err, sizeof err) == 0, "%s", err);
        gr[k] = calloc(n, sizeof *gr[k]);
        for (int i = 0; i < n; i++) {
            gr[k][i] = fnew((size_t)mu_model_param(m, i)->numel);
            mu_model_get_grad(m, i, gr[k][i]);
        }
    }
    for (int r = 0; r < R; r++) CHECK_CLOSE(lp[1][r], lp[0][r], 1e-5, 1e-6);
    for (int i = 0; i < n; i++) {
        mu_param *p = mu_model_param(mc, i);
        check_close(p->info.name, gr[1][i], gr[0][i], (size_t)p->numel, grad_nmse);
        free(gr[0][i]); free(gr[1][i]);
    }
    free(gr[0]); free(gr[1]); free(dl);
    mu_model_free(mc);
    mu_model_free(mg);
}

TEST(cuda_model_random_llama_logit_rows_logp_vs_cpu)
{
    const mu_backend *g = gpu_or_skip();
    logit_rows_case(g, MU_WEIGHTS_F32, 1e-7);
    logit_rows_case(g, MU_WEIGHTS_BF16, 3e-5);
}

TEST(cuda_model_stories260k_logits_grads_greedy_vs_cpu)
{
    const mu_backend *g = gpu_or_skip();
    const char *shared = mu_test_shared_data();
    if (!shared) SKIP("../shared/data absent: stories260K not available");
    char dir[1024], err[512];
    snprintf(dir, sizeof dir, "%s/models/stories260K", shared);
    mu_model *mc = mu_model_load(dir, NULL, 0, mu_backend_cpu(), err, sizeof err);
    CHECK_MSG(mc, "%s", err);
    mu_model *mg = mu_model_load(dir, NULL, 0, g, err, sizeof err);
    CHECK_MSG(mg, "%s", err);
    compare_models(mc, mg, 321, 1e-9, 1e-7);
    /* greedy decoding through the KV cache: same tokens */
    int32_t prompt[3] = { 1, 403, 407 }, oc[100], og[100];
    int nc = mu_model_greedy(mc, prompt, 3, 100, -1, oc, err, sizeof err);
    CHECK_MSG(nc == 100, "cpu greedy: %s", err);
    int ng = mu_model_greedy(mg, prompt, 3, 100, -1, og, err, sizeof err);
    CHECK_MSG(ng == 100, "cuda greedy: %s", err);
    for (int i = 0; i < 100; i++)
        CHECK_MSG(oc[i] == og[i], "greedy token %d: cuda %d, cpu %d", i, og[i], oc[i]);
    mu_model_free(mc);
    mu_model_free(mg);
}

TEST(cuda_model_backward_is_deterministic)
{
    const mu_backend *g = gpu_or_skip();
    char err[256];
    mu_config c = random_llama();
    mu_model *m = mu_model_init_random(&c, 5, 0.3f, g, err, sizeof err);
    CHECK_MSG(m, "%s", err);
    int n = mu_model_n_params(m), V = c.vocab;
    int32_t ids[MB * MT], targets[MB * MT];
    model_batch(ids, targets, V, 77);
    float *l1 = fnew((size_t)MB * MT * V), *l2 = fnew((size_t)MB * MT * V);
    float **g1 = calloc(n, sizeof *g1), **g2 = calloc(n, sizeof *g2);
    model_run(m, ids, targets, l1, g1);
    model_run(m, ids, targets, l2, g2);
    CHECK_MSG(memcmp(l1, l2, sizeof(float) * MB * MT * V) == 0, "logits differ between runs");
    for (int i = 0; i < n; i++) {
        mu_param *p = mu_model_param(m, i);
        CHECK_MSG(memcmp(g1[i], g2[i], sizeof(float) * p->numel) == 0,
                  "%s: gradient differs between identical runs", p->info.name);
        free(g1[i]); free(g2[i]);
    }
    free(g1); free(g2); free(l1); free(l2);
    mu_model_free(m);
}

/* The registry: "cpu" always works, "auto" gives a backend, "cuda" fails with a clear
 * reason when there is no device or no CUDA build. Runs everywhere. */
TEST(cuda_backend_by_name_selection)
{
    char err[128] = "";
    CHECK(mu_backend_by_name("cpu", err, sizeof err) == mu_backend_cpu());
    const mu_backend *a = mu_backend_by_name("auto", err, sizeof err);
    CHECK(a != NULL);
    const mu_backend *cu = mu_backend_by_name("cuda", err, sizeof err);
#ifdef MU_HAVE_CUDA
    if (mu_cuda_device_count() > 0) {
        CHECK(cu != NULL && !strcmp(cu->name, "cuda") && a == cu);
    } else {
        CHECK(cu == NULL);
        CHECK_STR(err, "cuda: no device");
        CHECK(a == mu_backend_cpu());
    }
#else
    CHECK(cu == NULL);
    CHECK_STR(err, "cuda: not built with CUDA");
    CHECK(a == mu_backend_cpu());
#endif
    CHECK(mu_backend_by_name("tpu", err, sizeof err) == NULL);
    CHECK(strstr(err, "unknown device 'tpu'") != NULL);
}

/* Data parallelism: without MU_CUDA_DEVICE, the device is MU_LOCAL_RANK (mu-train's rank on
 * its machine, lib/dist.c) modulo the visible devices, so more ranks than devices still
 * start: rank 4 * count + 1 starts, on device 1 % count. (On the fake GPU: nothing to pick.) */
TEST(cuda_local_rank_picks_the_device_modulo_the_count)
{
    const char *f = getenv("MU_TEST_FAKE_GPU");
    if (f && !strcmp(f, "1")) SKIP("the fake GPU has no devices to pick from");
#ifndef MU_HAVE_CUDA
    SKIP("built without CUDA (nvcc not found, or make CUDA=0)");
#else
    int n = mu_cuda_device_count();
    if (n <= 0) SKIP("no CUDA device (cudaGetDeviceCount failed or returned 0)");
    char rank[32];
    snprintf(rank, sizeof rank, "%d", 4 * n + 1);
    unsetenv("MU_CUDA_DEVICE");
    setenv("MU_LOCAL_RANK", rank, 1);   /* before the backend's first use in this test's process */
    const mu_backend *be = mu_backend_cuda();
    CHECK_MSG(be != NULL, "MU_LOCAL_RANK=%s with %d device(s): the backend did not start", rank, n);
#endif
}
