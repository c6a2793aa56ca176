/* t_ops.c — every CPU backend op against a double-precision reference: the forward is
 * compared directly, the backward against central finite differences of the reference
 * (loss = sum R * Y with fixed random R, so dY = R). Large inputs are checked on a random
 * subset of coordinates. */
#include <omp.h>
#include <stdint.h>
#include "test.h"
#include "kernels.h"
#include "cpu/fastmath.h"
#include "model.h"
#include "rng.h"
#include "objectives.h"
#include "tensor.h"

static const mu_backend *be(void) { return mu_backend_cpu(); }

/* ---- helpers ---------------------------------------------------------------------------- */
static void fill(mu_rng *r, float *x, size_t n, double scale)
{
    for (size_t i = 0; i < n; i++) x[i] = (float)(scale * mu_rng_normal(r));
}

static double *to_double(const float *x, size_t n)
{
    double *d = malloc(n * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

/* A reference forward: in (double, n_in) -> out (double, n_out). */
typedef void (*ref_fn)(const double *in, double *out, const void *ctx);

static double ref_loss(ref_fn f, const double *in, const double *R, size_t n_out,
                       const void *ctx)
{
    double *out = calloc(n_out, sizeof *out);
    f(in, out, ctx);
    double s = 0;
    for (size_t i = 0; i < n_out; i++) s += R[i] * out[i];
    free(out);
    return s;
}

/* Central difference of the reference loss at coordinate `at` of the packed input. */
static double fd_at(ref_fn f, double *in, size_t at, const double *R, size_t n_out,
                    const void *ctx)
{
    double h = 1e-5 * (fabs(in[at]) > 1 ? fabs(in[at]) : 1), x0 = in[at];
    in[at] = x0 + h;
    double lp = ref_loss(f, in, R, n_out, ctx);
    in[at] = x0 - h;
    double lm = ref_loss(f, in, R, n_out, ctx);
    in[at] = x0;
    return (lp - lm) / (2 * h);
}

/* Compares analytic gradient g[n] (of packed-input segment starting at `off`) with finite
 * differences on up to max_checks coordinates: |g - fd| <= rtol * max|fd| + 1e-6 each. */
static void check_grad(const char *what, ref_fn f, double *in, size_t off, const float *g,
                       size_t n, const double *R, size_t n_out, const void *ctx, int max_checks)
{
    mu_rng r;
    mu_rng_seed(&r, 99);
    size_t checks = n < (size_t)max_checks ? n : (size_t)max_checks;
    double *fd = malloc(checks * sizeof *fd);
    size_t *idx = malloc(checks * sizeof *idx);
    double scale = 0;
    for (size_t c = 0; c < checks; c++) {
        idx[c] = checks == n ? c : mu_rng_below(&r, n);
        fd[c] = fd_at(f, in, off + idx[c], R, n_out, ctx);
        if (fabs(fd[c]) > scale) scale = fabs(fd[c]);
    }
    CHECK_MSG(scale > 1e-8, "%s: finite differences are all zero", what);
    for (size_t c = 0; c < checks; c++)
        CHECK_MSG(fabs(g[idx[c]] - fd[c]) <= 2e-4 * scale + 1e-6,
                  "%s[%zu]: analytic %.8g vs finite difference %.8g (scale %.3g)", what, idx[c],
                  g[idx[c]], fd[c], scale);
    free(fd);
    free(idx);
}

static void check_fwd(const char *what, const float *y, const double *ref, size_t n, double tol)
{
    double scale = 0;
    for (size_t i = 0; i < n; i++) if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
    for (size_t i = 0; i < n; i++)
        CHECK_MSG(fabs(y[i] - ref[i]) <= tol * (scale > 1 ? scale : 1),
                  "%s[%zu]: %.8g vs reference %.8g", what, i, y[i], ref[i]);
}

static double *rand_R(size_t n, uint64_t seed)
{
    mu_rng r;
    mu_rng_seed(&r, seed);
    double *R = malloc(n * sizeof *R);
    for (size_t i = 0; i < n; i++) R[i] = mu_rng_normal(&r);
    return R;
}

static float *R_f32(const double *R, size_t n)
{
    float *f = malloc(n * sizeof *f);
    for (size_t i = 0; i < n; i++) f[i] = (float)R[i];
    return f;
}

/* ---- matmul ----------------------------------------------------------------------------- */
typedef struct { int N, K, M; } mm_ctx;

static void ref_matmul(const double *in, double *out, const void *vc)
{
    const mm_ctx *c = vc;
    const double *X = in, *Wt = in + (size_t)c->N * c->K;
    for (int n = 0; n < c->N; n++)
        for (int m = 0; m < c->M; m++) {
            double s = 0;
            for (int k = 0; k < c->K; k++) s += X[n * c->K + k] * Wt[m * c->K + k];
            out[n * c->M + m] = s;
        }
}

TEST(op_matmul_fwd_bwd)
{
    mm_ctx c = { 7, 13, 5 };
    size_t nx = c.N * c.K, nw = c.M * c.K, ny = c.N * c.M;
    mu_rng r;
    mu_rng_seed(&r, 1);
    float *in = malloc((nx + nw) * sizeof *in), *Y = malloc(ny * sizeof *Y);
    fill(&r, in, nx + nw, 1.0);
    be()->matmul(Y, in, in + nx, c.N, c.K, c.M, 0);
    double *din = to_double(in, nx + nw), *ref = malloc(ny * sizeof *ref);
    ref_matmul(din, ref, &c);
    check_fwd("matmul", Y, ref, ny, 1e-5);
    /* accumulate adds onto Y */
    be()->matmul(Y, in, in + nx, c.N, c.K, c.M, 1);
    for (size_t i = 0; i < ny; i++) CHECK_NEAR(Y[i], 2 * ref[i], 1e-4);

    double *R = rand_R(ny, 2);
    float *dY = R_f32(R, ny), *dX = calloc(nx, sizeof *dX), *dW = calloc(nw, sizeof *dW);
    be()->matmul_bwd(dX, dW, dY, in, in + nx, c.N, c.K, c.M, 0);
    check_grad("matmul dX", ref_matmul, din, 0, dX, nx, R, ny, &c, 1000);
    check_grad("matmul dW", ref_matmul, din, nx, dW, nw, R, ny, &c, 1000);
    /* dW accumulates; accumulate_dx adds; NULL skips */
    float *dX2 = malloc(nx * sizeof *dX2), *dW2 = malloc(nw * sizeof *dW2);
    memcpy(dX2, dX, nx * sizeof *dX2);
    memcpy(dW2, dW, nw * sizeof *dW2);
    be()->matmul_bwd(dX2, dW2, dY, in, in + nx, c.N, c.K, c.M, 1);
    for (size_t i = 0; i < nx; i++) CHECK_NEAR(dX2[i], 2 * dX[i], 1e-4);
    for (size_t i = 0; i < nw; i++) CHECK_NEAR(dW2[i], 2 * dW[i], 1e-4);
    be()->matmul_bwd(NULL, dW2, dY, in, in + nx, c.N, c.K, c.M, 0);
    for (size_t i = 0; i < nw; i++) CHECK_NEAR(dW2[i], 3 * dW[i], 1e-4);
    free(in); free(Y); free(din); free(ref); free(R); free(dY); free(dX); free(dW);
    free(dX2); free(dW2);
}

/* ---- matmul_wt: W stored [in=K, out=M] (GPT-2's Conv1D) --------------------------------- */
static void ref_matmul_wt(const double *in, double *out, const void *vc)
{
    const mm_ctx *c = vc;
    const double *X = in, *W = in + (size_t)c->N * c->K;
    for (int n = 0; n < c->N; n++)
        for (int m = 0; m < c->M; m++) {
            double s = 0;
            for (int k = 0; k < c->K; k++) s += X[n * c->K + k] * W[k * c->M + m];
            out[n * c->M + m] = s;
        }
}

/* out[C,R] = A[R,C]^T (a new array; 2-byte or 4-byte elements) */
static void *transposed(const void *A, size_t elem, int R, int C)
{
    char *out = malloc((size_t)R * C * elem + 1);
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            memcpy(out + ((size_t)c * R + r) * elem, (const char *)A + ((size_t)r * C + c) * elem,
                   elem);
    return out;
}

/* |a - b| <= tol * max(1, max|b|): the same product summed in another order */
static void check_same(const char *what, const float *a, const float *b, size_t n, double tol)
{
    double *d = to_double(b, n);
    check_fwd(what, a, d, n, tol);
    free(d);
}

/* Tolerance 1e-5 of the largest magnitude throughout: f32 GEMMs of at most 300 terms
 * (OpenBLAS kernels in different orders for the two layouts), errors near 1e-7 of it. */
static void matmul_wt_case(int N, int K, int M, uint64_t seed)
{
    mm_ctx c = { N, K, M };
    size_t nx = (size_t)N * K, nw = (size_t)K * M, ny = (size_t)N * M;
    mu_rng r;
    mu_rng_seed(&r, seed);
    float *in = malloc((nx + nw) * sizeof *in), *Y = malloc(ny * sizeof *Y);
    fill(&r, in, nx + nw, 1.0);
    const float *X = in, *W = in + nx;
    float *Wt = transposed(W, sizeof *W, K, M), *Y2 = malloc(ny * sizeof *Y2);
    be()->matmul_wt(Y, X, W, N, K, M, 0);
    double *din = to_double(in, nx + nw), *ref = malloc(ny * sizeof *ref);
    ref_matmul_wt(din, ref, &c);
    check_fwd("matmul_wt", Y, ref, ny, 1e-5);
    be()->matmul(Y2, X, Wt, N, K, M, 0);            /* matmul on W^T [M,K]: the same */
    check_same("matmul_wt vs matmul(W^T)", Y, Y2, ny, 1e-5);
    be()->matmul_wt(Y, X, W, N, K, M, 1);           /* accumulate adds onto Y */
    for (size_t i = 0; i < ny; i++) CHECK_NEAR(Y[i], 2 * ref[i], 1e-4);

    double *R = rand_R(ny, seed + 100);
    float *dY = R_f32(R, ny), *dX = calloc(nx, sizeof *dX), *dW = calloc(nw, sizeof *dW);
    be()->matmul_wt_bwd(dX, dW, dY, X, W, N, K, M, 0);
    check_grad("matmul_wt dX", ref_matmul_wt, din, 0, dX, nx, R, ny, &c, 300);
    check_grad("matmul_wt dW", ref_matmul_wt, din, nx, dW, nw, R, ny, &c, 300);
    /* matmul_bwd on W^T: the same dX, and dW^T */
    float *dXt = calloc(nx, sizeof *dXt), *dWt = calloc(nw, sizeof *dWt);
    be()->matmul_bwd(dXt, dWt, dY, X, Wt, N, K, M, 0);
    float *dWtt = transposed(dWt, sizeof *dWt, M, K);
    check_same("matmul_wt_bwd dX vs matmul_bwd(W^T)", dX, dXt, nx, 1e-5);
    check_same("matmul_wt_bwd dW vs matmul_bwd(W^T)^T", dW, dWtt, nw, 1e-5);
    /* accumulate_dx adds; dW accumulates; NULL dX skips; NULL dW skips, dX overwritten */
    float *dX2 = malloc(nx * sizeof *dX2), *dW2 = malloc(nw * sizeof *dW2);
    memcpy(dX2, dX, nx * sizeof *dX2);
    memcpy(dW2, dW, nw * sizeof *dW2);
    be()->matmul_wt_bwd(dX2, dW2, dY, X, W, N, K, M, 1);
    for (size_t i = 0; i < nx; i++) CHECK_NEAR(dX2[i], 2 * dX[i], 1e-4);
    for (size_t i = 0; i < nw; i++) CHECK_NEAR(dW2[i], 2 * dW[i], 1e-4);
    be()->matmul_wt_bwd(NULL, dW2, dY, X, W, N, K, M, 0);
    for (size_t i = 0; i < nw; i++) CHECK_NEAR(dW2[i], 3 * dW[i], 1e-4);
    for (size_t i = 0; i < nx; i++) dX2[i] = 123.0f;
    be()->matmul_wt_bwd(dX2, NULL, dY, X, W, N, K, M, 0);
    for (size_t i = 0; i < nx; i++) CHECK_NEAR(dX2[i], dX[i], 1e-6);
    free(in); free(Y); free(Y2); free(Wt); free(din); free(ref); free(R); free(dY); free(dX);
    free(dW); free(dXt); free(dWt); free(dWtt); free(dX2); free(dW2);
}

TEST(op_matmul_wt_fwd_bwd)
{
    matmul_wt_case(7, 13, 5, 61);
    matmul_wt_case(1, 9, 6, 62);        /* one row: the matrix-vector path */
    matmul_wt_case(300, 11, 4, 63);     /* more rows than one dW token chunk (256) */
    /* empty sums: K = 0 forward and M = 0 backward overwrite with zeros or add nothing */
    float X[6] = { 1, 2, 3, 4, 5, 6 }, W[6] = { 1, 1, 1, 1, 1, 1 }, Y[6], dY[6] = { 0 };
    for (int acc = 0; acc < 2; acc++) {
        for (int i = 0; i < 6; i++) Y[i] = 5.0f;
        be()->matmul_wt(Y, X, W, 2, 0, 3, acc);
        for (int i = 0; i < 6; i++) CHECK(Y[i] == (acc ? 5.0f : 0.0f));
        for (int i = 0; i < 6; i++) Y[i] = 5.0f;
        be()->matmul_wt_bwd(Y, NULL, dY, X, W, 2, 3, 0, acc);
        for (int i = 0; i < 6; i++) CHECK(Y[i] == (acc ? 5.0f : 0.0f));
    }
}

/* C[R,Cn] = sum_k A[r*ar + k*ak] B[k*bk + c*bc] in double, and Cabs the same sum of |A||B| */
static void ref_gemm(double *C, double *Cabs, const float *A, size_t ar, size_t ak,
                     const float *B, size_t bk, size_t bc, int R, int Cn, int Kn)
{
    for (int i = 0; i < R; i++)
        for (int j = 0; j < Cn; j++) {
            double s = 0, a = 0;
            for (int k = 0; k < Kn; k++) {
                double p = (double)A[i * ar + k * ak] * B[k * bk + j * bc];
                s += p;
                a += fabs(p);
            }
            C[(size_t)i * Cn + j] = s;
            Cabs[(size_t)i * Cn + j] = a;
        }
}

/* Against the f32 operands in double: both operands rounded to bf16 (relative error at most
 * 2^-8 each) move each product by at most (2^-7 + 2^-16) |a b|; f32 sums add far less than
 * the 10% margin. */
static void check_bf16_bound(const char *what, const float *got, const double *ref,
                             const double *abs_ref, size_t n)
{
    for (size_t i = 0; i < n; i++)
        CHECK_MSG(fabs(got[i] - ref[i]) <= 1.1 * 0x1p-7 * abs_ref[i] + 1e-6,
                  "%s[%zu]: %.8g vs f32 reference %.8g (bound %.3g)", what, i, got[i], ref[i],
                  1.1 * 0x1p-7 * abs_ref[i]);
}

static void matmul_wt_bf16_case(int N, int K, int M, uint64_t seed)
{
    size_t nx = (size_t)N * K, nw = (size_t)K * M, ny = (size_t)N * M, nmax = nx + nw + ny;
    mu_rng r;
    mu_rng_seed(&r, seed);
    float *X = malloc(nx * sizeof *X), *Wf = malloc(nw * sizeof *Wf), *dY = malloc(ny * sizeof *dY);
    fill(&r, X, nx, 1.0); fill(&r, Wf, nw, 0.5); fill(&r, dY, ny, 1.0);
    uint16_t *W = malloc(nw * sizeof *W + 1);
    be()->to_bf16(W, Wf, nw);
    uint16_t *Wt = transposed(W, sizeof *W, K, M);           /* [M,K], the same bits */
    float *Y = calloc(ny, sizeof *Y), *Y2 = calloc(ny, sizeof *Y2);
    float *dX = calloc(nx, sizeof *dX), *dW = calloc(nw, sizeof *dW);
    float *dX2 = calloc(nx, sizeof *dX2), *dWt = calloc(nw, sizeof *dWt);
    double *ref = malloc(nmax * sizeof *ref), *refabs = malloc(nmax * sizeof *refabs);

    /* forward: matmul_bf16 on W^T multiplies the same bf16 values (f32 rounding level);
     * the f32 operands within the bf16 bound; the rounding of X really happens */
    be()->matmul_wt_bf16(Y, X, W, N, K, M, 0);
    be()->matmul_bf16(Y2, X, Wt, N, K, M, 0);
    check_same("matmul_wt_bf16 vs matmul_bf16(W^T)", Y, Y2, ny, 1e-5);
    ref_gemm(ref, refabs, X, K, 1, Wf, M, 1, N, M, K);
    check_bf16_bound("matmul_wt_bf16", Y, ref, refabs, ny);
    float *Wb = malloc(nw * sizeof *Wb);
    for (size_t i = 0; i < nw; i++) Wb[i] = mu_bf16_to_f32(W[i]);
    be()->matmul_wt(Y2, X, Wb, N, K, M, 0);
    double dmax = 0, ymax = 0;
    for (size_t i = 0; i < ny; i++) {
        dmax = fmax(dmax, fabs(Y[i] - Y2[i]));
        ymax = fmax(ymax, fabs(Y2[i]));
    }
    CHECK_MSG(dmax > 1e-4 * ymax, "matmul_wt_bf16 equals the f32 GEMM on bf16(W): X not rounded");
    memcpy(Y2, Y, ny * sizeof *Y2);
    be()->matmul_wt_bf16(Y2, X, W, N, K, M, 1);
    for (size_t i = 0; i < ny; i++) CHECK_NEAR(Y2[i], 2 * Y[i], 1e-4);

    /* backward: against matmul_bf16_bwd on W^T (dW transposed back), the f32 bound */
    be()->matmul_wt_bf16_bwd(dX, dW, dY, X, W, N, K, M, 0);
    be()->matmul_bf16_bwd(dX2, dWt, dY, X, Wt, N, K, M, 0);
    float *dWtt = transposed(dWt, sizeof *dWt, M, K);
    check_same("matmul_wt_bf16_bwd dX vs matmul_bf16_bwd(W^T)", dX, dX2, nx, 1e-5);
    check_same("matmul_wt_bf16_bwd dW vs matmul_bf16_bwd(W^T)^T", dW, dWtt, nw, 1e-5);
    ref_gemm(ref, refabs, dY, M, 1, Wf, 1, M, N, K, M);       /* dX[n,k] = sum_m dY W[k,m] */
    check_bf16_bound("matmul_wt_bf16_bwd dX", dX, ref, refabs, nx);
    ref_gemm(ref, refabs, X, 1, K, dY, M, 1, K, M, N);        /* dW[k,m] = sum_n X dY */
    check_bf16_bound("matmul_wt_bf16_bwd dW", dW, ref, refabs, nw);
    /* accumulate_dx with dW NULL; dW accumulates with dX NULL */
    memcpy(dX2, dX, nx * sizeof *dX2);
    be()->matmul_wt_bf16_bwd(dX2, NULL, dY, X, W, N, K, M, 1);
    for (size_t i = 0; i < nx; i++) CHECK_NEAR(dX2[i], 2 * dX[i], 1e-4);
    memcpy(dWt, dW, nw * sizeof *dWt);
    be()->matmul_wt_bf16_bwd(NULL, dWt, dY, X, W, N, K, M, 0);
    for (size_t i = 0; i < nw; i++) CHECK_NEAR(dWt[i], 2 * dW[i], 1e-4);
    free(X); free(Wf); free(dY); free(W); free(Wt); free(Y); free(Y2); free(dX); free(dW);
    free(dX2); free(dWt); free(dWtt); free(ref); free(refabs); free(Wb);
}

TEST(op_matmul_wt_bf16)
{
    matmul_wt_bf16_case(7, 13, 5, 71);
    matmul_wt_bf16_case(1, 9, 6, 72);        /* one row: the matrix-vector path */
    matmul_wt_bf16_case(300, 11, 4, 73);     /* more rows than one dW token chunk */
}

/* ---- bias ------------------------------------------------------------------------------- */
typedef struct { int N, M; } nm_ctx;

static void ref_bias(const double *in, double *out, const void *vc)
{
    const nm_ctx *c = vc;
    for (int n = 0; n < c->N; n++)
        for (int m = 0; m < c->M; m++) out[n * c->M + m] = in[n * c->M + m] + in[c->N * c->M + m];
}

TEST(op_bias_add_fwd_bwd)
{
    nm_ctx c = { 9, 6 };
    size_t ny = c.N * c.M;
    mu_rng r;
    mu_rng_seed(&r, 3);
    float *in = malloc((ny + c.M) * sizeof *in);
    fill(&r, in, ny + c.M, 1.0);
    float *Y = malloc(ny * sizeof *Y);
    memcpy(Y, in, ny * sizeof *Y);
    be()->bias_add(Y, in + ny, c.N, c.M);
    double *din = to_double(in, ny + c.M), *ref = malloc(ny * sizeof *ref);
    ref_bias(din, ref, &c);
    check_fwd("bias_add", Y, ref, ny, 1e-6);
    double *R = rand_R(ny, 4);
    float *dY = R_f32(R, ny), *db = calloc(c.M, sizeof *db);
    be()->bias_add_bwd(db, dY, c.N, c.M);
    check_grad("bias db", ref_bias, din, ny, db, c.M, R, ny, &c, 100);
    free(in); free(Y); free(din); free(ref); free(R); free(dY); free(db);
}

/* ---- embedding -------------------------------------------------------------------------- */
typedef struct { int N, D, V; const int32_t *ids; } emb_ctx;

static void ref_embed(const double *in, double *out, const void *vc)
{
    const emb_ctx *c = vc;
    for (int n = 0; n < c->N; n++)
        for (int d = 0; d < c->D; d++) out[n * c->D + d] = in[c->ids[n] * c->D + d];
}

TEST(op_embed_fwd_bwd)
{
    int32_t ids[] = { 3, 0, 3, 5, 1, 3 };       /* repeated ids accumulate */
    emb_ctx c = { 6, 4, 7, ids };
    size_t ne = c.V * c.D, ny = c.N * c.D;
    mu_rng r;
    mu_rng_seed(&r, 5);
    float *E = malloc(ne * sizeof *E), *Y = malloc(ny * sizeof *Y);
    fill(&r, E, ne, 1.0);
    be()->embed(Y, E, ids, c.N, c.D);
    double *dE_in = to_double(E, ne), *ref = malloc(ny * sizeof *ref);
    ref_embed(dE_in, ref, &c);
    check_fwd("embed", Y, ref, ny, 0);
    double *R = rand_R(ny, 6);
    float *dY = R_f32(R, ny), *dE = calloc(ne, sizeof *dE);
    be()->embed_bwd(dE, dY, ids, c.N, c.D);
    check_grad("embed dE", ref_embed, dE_in, 0, dE, ne, R, ny, &c, 1000);
    free(E); free(Y); free(dE_in); free(ref); free(R); free(dY); free(dE);
}

/* ---- rmsnorm ---------------------------------------------------------------------------- */
typedef struct { int N, D; double eps; } norm_ctx;

static void ref_rmsnorm(const double *in, double *out, const void *vc)
{
    const norm_ctx *c = vc;
    const double *w = in + c->N * c->D;
    for (int n = 0; n < c->N; n++) {
        const double *x = in + n * c->D;
        double ss = 0;
        for (int d = 0; d < c->D; d++) ss += x[d] * x[d];
        double rs = 1 / sqrt(ss / c->D + c->eps);
        for (int d = 0; d < c->D; d++) out[n * c->D + d] = x[d] * rs * w[d];
    }
}

TEST(op_rmsnorm_fwd_bwd)
{
    norm_ctx c = { 5, 12, 1e-5 };
    size_t nx = c.N * c.D;
    mu_rng r;
    mu_rng_seed(&r, 7);
    float *in = malloc((nx + c.D) * sizeof *in), *Y = malloc(nx * sizeof *Y);
    float *rstd = malloc(c.N * sizeof *rstd);
    fill(&r, in, nx + c.D, 1.0);
    be()->rmsnorm(Y, rstd, in, in + nx, c.N, c.D, (float)c.eps);
    double *din = to_double(in, nx + c.D), *ref = malloc(nx * sizeof *ref);
    ref_rmsnorm(din, ref, &c);
    check_fwd("rmsnorm", Y, ref, nx, 1e-5);
    double *R = rand_R(nx, 8);
    float *dY = R_f32(R, nx), *dX = calloc(nx, sizeof *dX), *dw = calloc(c.D, sizeof *dw);
    for (size_t i = 0; i < nx; i++) dX[i] = 0.5f;      /* dX accumulates */
    be()->rmsnorm_bwd(dX, dw, dY, in, in + nx, rstd, c.N, c.D);
    for (size_t i = 0; i < nx; i++) dX[i] -= 0.5f;
    check_grad("rmsnorm dX", ref_rmsnorm, din, 0, dX, nx, R, nx, &c, 1000);
    check_grad("rmsnorm dw", ref_rmsnorm, din, nx, dw, c.D, R, nx, &c, 1000);
    free(in); free(Y); free(rstd); free(din); free(ref); free(R); free(dY); free(dX); free(dw);
}

/* ---- layernorm: torch.nn.LayerNorm (biased variance), optional bias --------------------- */
typedef struct { int N, D; double eps; int bias; } ln_ctx;

/* packed input: X [N,D], w [D], b [D] (b read only when c->bias) */
static void ref_layernorm(const double *in, double *out, const void *vc)
{
    const ln_ctx *c = vc;
    const double *w = in + c->N * c->D, *b = w + c->D;
    for (int n = 0; n < c->N; n++) {
        const double *x = in + n * c->D;
        double m = 0, v = 0;
        for (int d = 0; d < c->D; d++) m += x[d];
        m /= c->D;
        for (int d = 0; d < c->D; d++) v += (x[d] - m) * (x[d] - m);
        double rs = 1 / sqrt(v / c->D + c->eps);
        for (int d = 0; d < c->D; d++)
            out[n * c->D + d] = (x[d] - m) * rs * w[d] + (c->bias ? b[d] : 0);
    }
}

/* X[N,D] ~ N(0,1) plus a row offset (the mean LayerNorm removes), w and b after it */
static float *layernorm_inputs(int N, int D, uint64_t seed)
{
    mu_rng r;
    mu_rng_seed(&r, seed);
    float *in = malloc(((size_t)N * D + 2 * D) * sizeof *in);
    fill(&r, in, (size_t)N * D + 2 * D, 1.0);
    for (int n = 0; n < N; n++)
        for (int d = 0; d < D; d++) in[n * D + d] += 3.0f * (n - N / 2);
    return in;
}

/* forward with and without bias; mean and rstd against the reference's; NULL outputs */
static void layernorm_fwd_case(const float *in, int N, int D, double eps, float *mean,
                               float *rstd)
{
    size_t nx = (size_t)N * D;
    double *din = to_double(in, nx + 2 * D), *ref = malloc(nx * sizeof *ref);
    float *Y = malloc(nx * sizeof *Y), *Y2 = malloc(nx * sizeof *Y2);
    for (int bias = 0; bias < 2; bias++) {
        ln_ctx c = { N, D, eps, bias };
        be()->layernorm(Y, mean, rstd, in, in + nx, bias ? in + nx + D : NULL, N, D, (float)eps);
        ref_layernorm(din, ref, &c);
        check_fwd(bias ? "layernorm" : "layernorm no bias", Y, ref, nx, 1e-5);
        be()->layernorm(Y2, NULL, NULL, in, in + nx, bias ? in + nx + D : NULL, N, D, (float)eps);
        CHECK_MSG(!memcmp(Y, Y2, nx * sizeof *Y), "layernorm: NULL mean/rstd change Y");
    }
    for (int n = 0; n < N; n++) {
        double m = 0, v = 0;
        for (int d = 0; d < D; d++) m += din[n * D + d];
        m /= D;
        for (int d = 0; d < D; d++) v += (din[n * D + d] - m) * (din[n * D + d] - m);
        CHECK_NEAR(mean[n], m, 1e-6 * (fabs(m) > 1 ? fabs(m) : 1));
        CHECK_NEAR(rstd[n], 1 / sqrt(v / D + eps), 1e-6);
    }
    free(din); free(ref); free(Y); free(Y2);
}

TEST(op_layernorm_fwd_bwd)
{
    ln_ctx c = { 5, 12, 1e-5, 1 };
    size_t nx = c.N * c.D;
    float *in = layernorm_inputs(c.N, c.D, 9);
    float *mean = malloc(c.N * sizeof *mean), *rstd = malloc(c.N * sizeof *rstd);
    layernorm_fwd_case(in, c.N, c.D, c.eps, mean, rstd);
    double *din = to_double(in, nx + 2 * c.D), *R = rand_R(nx, 10);
    float *dY = R_f32(R, nx), *dX = malloc(nx * sizeof *dX);
    float *dw = calloc(c.D, sizeof *dw), *db = calloc(c.D, sizeof *db);
    for (size_t i = 0; i < nx; i++) dX[i] = 0.5f;      /* dX accumulates */
    be()->layernorm_bwd(dX, dw, db, dY, in, in + nx, mean, rstd, c.N, c.D);
    for (size_t i = 0; i < nx; i++) dX[i] -= 0.5f;
    check_grad("layernorm dX", ref_layernorm, din, 0, dX, nx, R, nx, &c, 1000);
    check_grad("layernorm dw", ref_layernorm, din, nx, dw, c.D, R, nx, &c, 1000);
    check_grad("layernorm db", ref_layernorm, din, nx + c.D, db, c.D, R, nx, &c, 1000);
    /* NULL dw and db are skipped; each of them (and dX) is the same with or without them;
     * dw and db accumulate */
    float *dX2 = calloc(nx, sizeof *dX2), *dX3 = calloc(nx, sizeof *dX3);
    float *dw2 = calloc(c.D, sizeof *dw2), *db2 = calloc(c.D, sizeof *db2);
    be()->layernorm_bwd(dX2, NULL, NULL, dY, in, in + nx, mean, rstd, c.N, c.D);
    be()->layernorm_bwd(dX3, dw2, NULL, dY, in, in + nx, mean, rstd, c.N, c.D);
    be()->layernorm_bwd(dX3, NULL, db2, dY, in, in + nx, mean, rstd, c.N, c.D);
    for (size_t i = 0; i < nx; i++) CHECK_NEAR(dX2[i], dX[i], 1e-6);
    for (size_t i = 0; i < nx; i++) CHECK_NEAR(dX3[i], 2 * dX2[i], 0);
    CHECK_MSG(!memcmp(dw2, dw, c.D * sizeof *dw), "layernorm dw alone differs");
    CHECK_MSG(!memcmp(db2, db, c.D * sizeof *db), "layernorm db alone differs");
    be()->layernorm_bwd(dX3, dw2, db2, dY, in, in + nx, mean, rstd, c.N, c.D);
    for (int d = 0; d < c.D; d++) CHECK_NEAR(dw2[d], 2 * dw[d], 1e-5);
    for (int d = 0; d < c.D; d++) CHECK_NEAR(db2[d], 2 * db[d], 1e-5);
    free(in); free(mean); free(rstd); free(din); free(R); free(dY); free(dX); free(dw);
    free(db); free(dX2); free(dX3); free(dw2); free(db2);
}

/* ---- strided row copy ------------------------------------------------------------------- */
/* rows x width from src (row stride src_ld) into dst (dst_ld); every other element of dst
 * keeps its value */
static void copy_rows_case(int rows, int width, int dst_ld, int src_ld)
{
    size_t nd = (size_t)rows * dst_ld, ns = (size_t)rows * src_ld;
    float *dst = malloc(nd * sizeof *dst), *src = malloc(ns * sizeof *src);
    for (size_t i = 0; i < ns; i++) src[i] = (float)i + 0.25f;
    for (size_t i = 0; i < nd; i++) dst[i] = -1.0f - (float)i;
    be()->copy_rows(dst, dst_ld, src, src_ld, rows, width);
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < dst_ld; c++) {
            float want = c < width ? src[(size_t)r * src_ld + c] : -1.0f - (float)(r * dst_ld + c);
            CHECK_MSG(dst[(size_t)r * dst_ld + c] == want, "copy_rows %dx%d ld %d/%d [%d,%d]: "
                      "%g, want %g", rows, width, dst_ld, src_ld, r, c,
                      dst[(size_t)r * dst_ld + c], want);
        }
    free(dst); free(src);
}

TEST(op_copy_rows)
{
    copy_rows_case(4, 3, 7, 5);          /* a q/k/v split: part of a wider row */
    copy_rows_case(4, 5, 5, 12);         /* a join: whole narrow rows from a wider source */
    copy_rows_case(1, 9, 9, 9);
    copy_rows_case(600, 256, 300, 768);  /* above PAR_MIN: the parallel loop */
    float x = 1, y = 2;                  /* nothing to copy */
    be()->copy_rows(&y, 1, &x, 1, 0, 1);
    be()->copy_rows(&y, 1, &x, 1, 1, 0);
    CHECK(y == 2);
}

/* ---- rope ------------------------------------------------------------------------------- */
typedef struct { int N, H, hd; const int32_t *pos; const float *inv_freq; } rope_ctx;

/* HF: q * cos + rotate_half(q) * sin, cos/sin of cat(freqs, freqs). */
static void ref_rope(const double *in, double *out, const void *vc)
{
    const rope_ctx *c = vc;
    int half = c->hd / 2;
    for (int n = 0; n < c->N; n++)
        for (int h = 0; h < c->H; h++) {
            const double *x = in + (n * c->H + h) * c->hd;
            double *y = out + (n * c->H + h) * c->hd;
            for (int i = 0; i < c->hd; i++) {
                double a = (double)((float)c->pos[n] * c->inv_freq[i % half]);
                double rot = i < half ? -x[i + half] : x[i - half];
                y[i] = x[i] * cos(a) + rot * sin(a);
            }
        }
}

TEST(op_rope_fwd_bwd)
{
    int32_t pos[] = { 0, 1, 2, 7, 100, 3 };
    mu_config cfg;
    mu_config_init(&cfg);
    cfg.head_dim = 8;
    cfg.rope_theta = 10000;
    float inv_freq[4];
    mu_rope_inv_freq(&cfg, inv_freq);
    CHECK_NEAR(inv_freq[0], 1.0, 1e-7);
    CHECK_NEAR(inv_freq[1], pow(10000, -0.25), 1e-7);
    rope_ctx c = { 6, 3, 8, pos, inv_freq };
    size_t nx = c.N * c.H * c.hd;
    mu_rng r;
    mu_rng_seed(&r, 9);
    float *X = malloc(nx * sizeof *X);
    fill(&r, X, nx, 1.0);
    double *din = to_double(X, nx), *ref = malloc(nx * sizeof *ref);
    ref_rope(din, ref, &c);
    be()->rope(X, pos, inv_freq, c.N, c.H, c.hd);
    check_fwd("rope", X, ref, nx, 1e-5);
    double *R = rand_R(nx, 10);
    float *dX = R_f32(R, nx);
    be()->rope_bwd(dX, pos, inv_freq, c.N, c.H, c.hd);
    check_grad("rope dX", ref_rope, din, 0, dX, nx, R, nx, &c, 1000);
    free(X); free(din); free(ref); free(R); free(dX);
}

TEST(op_rope_llama3_scaling)
{
    /* Llama 3.1: factor 8, low 1, high 4, original 8192, theta 500000, head_dim 128. Values
     * from transformers' _compute_llama3_parameters (hand-evaluated formula). */
    mu_config c;
    mu_config_init(&c);
    c.head_dim = 128; c.rope_theta = 500000;
    snprintf(c.rope_scaling, sizeof c.rope_scaling, "llama3");
    c.rope_factor = 8; c.rope_low_freq = 1; c.rope_high_freq = 4; c.rope_orig_max_pos = 8192;
    float f[64];
    mu_rope_inv_freq(&c, f);
    for (int i = 0; i < 64; i++) {
        double base = 1.0 / pow(500000.0, 2.0 * i / 128), wl = 2 * M_PI / base, want;
        if (wl < 8192.0 / 4) want = base;                       /* high frequency: kept */
        else if (wl > 8192.0 / 1) want = base / 8;              /* low frequency: / factor */
        else {
            double s = (8192.0 / wl - 1) / (4 - 1);
            want = (1 - s) * base / 8 + s * base;
        }
        CHECK_CLOSE(f[i], want, 1e-5, 0);
    }
    CHECK_CLOSE(f[0], 1.0, 1e-6, 0);
    CHECK_CLOSE(f[63], 1.0 / pow(500000.0, 126.0 / 128) / 8, 1e-5, 0);
}

/* ---- attention -------------------------------------------------------------------------- */
typedef struct { mu_attn_shape s; } att_ctx;

/* in = Q [B,Tq,H,hd] | K [B,Tk,Hkv,hd] | V [B,Tk,Hkv,hd]; out = O. */
static void ref_attention(const double *in, double *out, const void *vc)
{
    const mu_attn_shape *s = &((const att_ctx *)vc)->s;
    size_t nq = (size_t)s->B * s->Tq * s->H * s->hd, nk = (size_t)s->B * s->Tk * s->Hkv * s->hd;
    const double *Q = in, *K = in + nq, *V = in + nq + nk;
    double *p = malloc(s->Tk * sizeof *p);
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < s->H; h++)
            for (int t = 0; t < s->Tq; t++) {
                int kh = h / (s->H / s->Hkv), pos = (s->q_pos0 ? s->q_pos0[b] : 0) + t;
                int kl = s->k_len ? s->k_len[b] : s->Tk;
                const double *q = Q + (((size_t)b * s->Tq + t) * s->H + h) * s->hd;
                double *o = out + (((size_t)b * s->Tq + t) * s->H + h) * s->hd;
                double mx = -INFINITY, sum = 0;
                int nk_vis = 0;
                for (int j = 0; j < s->Tk; j++) {
                    if (j > pos || j >= kl || (s->window > 0 && j <= pos - s->window)) {
                        p[j] = -INFINITY;
                        continue;
                    }
                    const double *k = K + (((size_t)b * s->Tk + j) * s->Hkv + kh) * s->hd;
                    double d = 0;
                    for (int i = 0; i < s->hd; i++) d += q[i] * k[i];
                    p[j] = d * s->scale;
                    if (s->softcap > 0) p[j] = s->softcap * tanh(p[j] / s->softcap);
                    if (p[j] > mx) mx = p[j];
                    nk_vis++;
                }
                for (int i = 0; i < s->hd; i++) o[i] = 0;
                if (!nk_vis) continue;
                for (int j = 0; j < s->Tk; j++) { p[j] = p[j] == -INFINITY ? 0 : exp(p[j] - mx); sum += p[j]; }
                for (int j = 0; j < s->Tk; j++) {
                    if (p[j] == 0) continue;
                    const double *v = V + (((size_t)b * s->Tk + j) * s->Hkv + kh) * s->hd;
                    for (int i = 0; i < s->hd; i++) o[i] += p[j] / sum * v[i];
                }
            }
    free(p);
}

/* One shape, forward against the double reference and backward against its finite
 * differences; softcap and window as in mu_attn_shape (0: none). */
static void attention_case_capped(int B, int Tq, int Tk, int H, int Hkv, int hd,
                                  const int32_t *q_pos0, const int32_t *k_len, float softcap,
                                  int window, uint64_t seed, int max_checks)
{
    att_ctx c = { { B, Tq, Tk, H, Hkv, hd, q_pos0, k_len, 1.0f / sqrtf((float)hd), softcap,
                    window } };
    size_t nq = (size_t)B * Tq * H * hd, nk = (size_t)B * Tk * Hkv * hd, nin = nq + 2 * nk;
    mu_rng r;
    mu_rng_seed(&r, seed);
    float *in = malloc(nin * sizeof *in), *O = malloc(nq * sizeof *O);
    float *lse = malloc((size_t)B * H * Tq * sizeof *lse);
    fill(&r, in, nin, softcap > 0 ? 4.0 : 1.0);       /* capped: scores reach the cap */
    be()->attention(O, lse, in, in + nq, in + nq + nk, &c.s);
    double *din = to_double(in, nin), *ref = malloc(nq * sizeof *ref);
    ref_attention(din, ref, &c);
    check_fwd("attention O", O, ref, nq, 2e-5);
    double *R = rand_R(nq, seed + 1);
    float *dO = R_f32(R, nq), *dQ = malloc(nq * sizeof *dQ);
    float *dK = malloc(nk * sizeof *dK), *dV = malloc(nk * sizeof *dV);
    for (size_t i = 0; i < nk; i++) dK[i] = dV[i] = 7;          /* must be overwritten */
    be()->attention_bwd(dQ, dK, dV, dO, O, lse, in, in + nq, in + nq + nk, &c.s);
    check_grad("attention dQ", ref_attention, din, 0, dQ, nq, R, nq, &c, max_checks);
    check_grad("attention dK", ref_attention, din, nq, dK, nk, R, nq, &c, max_checks);
    check_grad("attention dV", ref_attention, din, nq + nk, dV, nk, R, nq, &c, max_checks);
    free(in); free(O); free(lse); free(din); free(ref); free(R); free(dO); free(dQ); free(dK);
    free(dV);
}

static void attention_case(int B, int Tq, int Tk, int H, int Hkv, int hd, const int32_t *q_pos0,
                           const int32_t *k_len, uint64_t seed, int max_checks)
{
    attention_case_capped(B, Tq, Tk, H, Hkv, hd, q_pos0, k_len, 0, 0, seed, max_checks);
}

TEST(op_attention_causal_gqa_padding)
{
    int32_t lens[] = { 6, 3, 0 };                 /* a padded row and an empty one */
    attention_case(3, 6, 6, 4, 2, 4, NULL, lens, 11, 2000);
}

TEST(op_attention_multi_tile)
{
    int32_t lens[] = { 70, 41 };                  /* more than one 64-query tile */
    attention_case(2, 70, 70, 2, 1, 4, NULL, lens, 13, 150);
}

TEST(op_attention_kv_cache_layout)
{
    /* 2 new queries per row after 3 and 5 cached keys; key capacity 9 */
    int32_t pos0[] = { 3, 5 }, klen[] = { 5, 7 };
    attention_case(2, 2, 9, 4, 2, 6, pos0, klen, 17, 2000);
}

/* Sliding windows (Mistral, Gemma-2): a window shorter than a tile, one that splits the
 * second 64-query tile, a window of 2, and windows over a KV
 * cache; with padding rows. */
TEST(op_attention_sliding_window)
{
    int32_t lens[] = { 9, 6 }, lens70[] = { 70, 52 };
    attention_case_capped(2, 9, 9, 4, 2, 4, NULL, lens, 0, 3, 61, 2000);
    attention_case_capped(2, 9, 9, 2, 1, 4, NULL, lens, 0, 2, 62, 2000);
    attention_case_capped(2, 70, 70, 2, 1, 4, NULL, lens70, 0, 40, 63, 150);
    int32_t pos0[] = { 3, 5 }, klen[] = { 5, 7 };
    attention_case_capped(2, 2, 9, 4, 2, 6, pos0, klen, 0, 3, 64, 2000);
}

/* Soft-capped scores (Gemma-2: 50): a cap the scores reach (tanh saturates, so the
 * (1 - y^2 / cap^2) factor of the backward matters), alone and with a window. */
TEST(op_attention_softcap)
{
    int32_t lens[] = { 7, 4 }, lens70[] = { 70, 33 };
    attention_case_capped(2, 7, 7, 4, 2, 8, NULL, lens, 2.0f, 0, 65, 2000);
    attention_case_capped(2, 70, 70, 2, 1, 4, NULL, lens70, 3.0f, 20, 66, 150);
    int32_t pos0[] = { 3, 5 }, klen[] = { 5, 7 };
    attention_case_capped(2, 2, 9, 4, 2, 6, pos0, klen, 2.0f, 4, 67, 2000);
}

/* mu_tanhf (kernels/cpu/fastmath.h, the CPU soft-caps' tanh) against libm's double tanh on a
 * sweep across both of its branches, its clamp, the odd symmetry and subnormals: relative
 * error below 3e-7 (absolute for |tanh| < 1e-30), NaN kept. */
TEST(op_fast_tanh_accuracy)
{
    double worst = 0;
    for (int i = -200000; i <= 200000; i++) {
        float x = (float)(i * 1e-4) * (i % 3 ? 1.0f : 1.37f);
        for (int k = 0; k < 3; k++, x *= 1e-20f) {
            double want = tanh((double)x), got = mu_tanhf(x);
            double err = fabs(got - want) / fmax(fabs(want), 1e-30);
            if (err > worst) worst = err;
        }
    }
    CHECK_MSG(worst < 3e-7, "mu_tanhf: max relative error %.3g", worst);
    CHECK(mu_tanhf(30.0f) == 1.0f && mu_tanhf(-30.0f) == -1.0f && mu_tanhf(0.0f) == 0.0f);
    CHECK(isnan(mu_tanhf(NAN)));
}

/* ---- softcap: Y = cap tanh(X / cap) ------------------------------------------------------- */
typedef struct { size_t n; double cap; } softcap_case;
static void ref_softcap(const double *in, double *out, const void *vc)
{
    const softcap_case *c = vc;
    for (size_t i = 0; i < c->n; i++) out[i] = c->cap * tanh(in[i] / c->cap);
}

TEST(op_softcap_fwd_bwd)
{
    size_t n = 40;
    softcap_case c = { n, 3.0 };
    mu_rng r;
    mu_rng_seed(&r, 68);
    float *X = malloc(n * sizeof *X);
    fill(&r, X, n, 8.0);                          /* up to well past the cap */
    double *din = to_double(X, n), *ref = malloc(n * sizeof *ref);
    be()->softcap(X, n, 3.0f);
    ref_softcap(din, ref, &c);
    check_fwd("softcap", X, ref, n, 1e-6);
    double *R = rand_R(n, 69);
    float *dX = R_f32(R, n);
    be()->softcap_bwd(dX, X, n, 3.0f);              /* Y = X, the capped values */
    check_grad("softcap dX", ref_softcap, din, 0, dX, n, R, n, &c, 100);
    free(X); free(din); free(ref); free(R); free(dX);
}

/* ---- swiglu ----------------------------------------------------------------------------- */
static void ref_swiglu(const double *in, double *out, const void *vc)
{
    size_t n = *(const size_t *)vc;
    for (size_t i = 0; i < n; i++) out[i] = in[i] / (1 + exp(-in[i])) * in[n + i];
}

TEST(op_swiglu_fwd_bwd)
{
    size_t n = 40;
    mu_rng r;
    mu_rng_seed(&r, 19);
    float *in = malloc(2 * n * sizeof *in), *A = malloc(n * sizeof *A);
    fill(&r, in, 2 * n, 3.0);
    be()->swiglu(A, in, in + n, n);
    double *din = to_double(in, 2 * n), *ref = malloc(n * sizeof *ref);
    ref_swiglu(din, ref, &n);
    check_fwd("swiglu", A, ref, n, 1e-6);
    double *R = rand_R(n, 20);
    float *dA = R_f32(R, n), *dG = malloc(n * sizeof *dG), *dU = malloc(n * sizeof *dU);
    be()->swiglu_bwd(dG, dU, dA, in, in + n, n);
    check_grad("swiglu dG", ref_swiglu, din, 0, dG, n, R, n, &n, 100);
    check_grad("swiglu dU", ref_swiglu, din, n, dU, n, R, n, &n, 100);
    free(in); free(A); free(din); free(ref); free(R); free(dA); free(dG); free(dU);
}

/* ---- geglu: both forms of gelu, as PyTorch's gelu(approximate='tanh'|'none') ------------- */
typedef struct { size_t n; int tanh_form; } geglu_case;
static void ref_geglu(const double *in, double *out, const void *vc)
{
    const geglu_case *c = vc;
    for (size_t i = 0; i < c->n; i++) {
        double g = in[i];
        double gelu = c->tanh_form ? 0.5 * g * (1 + tanh(sqrt(2 / M_PI) * (g + 0.044715 * g * g * g)))
                                   : 0.5 * g * (1 + erf(g / sqrt(2.0)));
        out[i] = gelu * in[c->n + i];
    }
}

TEST(op_geglu_fwd_bwd)
{
    size_t n = 40;
    for (int tf = 0; tf < 2; tf++) {
        geglu_case c = {n, tf};
        mu_rng r;
        mu_rng_seed(&r, 23);
        float *in = malloc(2 * n * sizeof *in), *A = malloc(n * sizeof *A);
        fill(&r, in, 2 * n, 3.0);
        be()->geglu(A, in, in + n, n, tf);
        double *din = to_double(in, 2 * n), *ref = malloc(n * sizeof *ref);
        ref_geglu(din, ref, &c);
        check_fwd(tf ? "geglu tanh" : "geglu erf", A, ref, n, 1e-6);
        double *R = rand_R(n, 24);
        float *dA = R_f32(R, n), *dG = malloc(n * sizeof *dG), *dU = malloc(n * sizeof *dU);
        be()->geglu_bwd(dG, dU, dA, in, in + n, n, tf);
        check_grad("geglu dG", ref_geglu, din, 0, dG, n, R, n, &c, 100);
        check_grad("geglu dU", ref_geglu, din, n, dU, n, R, n, &c, 100);
        free(in); free(A); free(din); free(ref); free(R); free(dA); free(dG); free(dU);
    }
    /* the two forms differ by up to 4.7e-4, at |g| = 2.7: each op computes its own */
    float g = 2.7f, u = 1.0f, a_tanh, a_erf;
    be()->geglu(&a_tanh, &g, &u, 1, 1);
    be()->geglu(&a_erf, &g, &u, 1, 0);
    CHECK_NEAR(a_erf, 0.5 * 2.7 * (1 + erf(2.7 / sqrt(2.0))), 1e-6);
    CHECK(fabs(a_tanh - a_erf) > 4e-4);
}

/* ---- gelu: geglu's gelu alone (GPT-NeoX's MLP) ----------------------------------------- */
static void ref_gelu(const double *in, double *out, const void *vc)
{
    const geglu_case *c = vc;
    for (size_t i = 0; i < c->n; i++) {
        double g = in[i];
        out[i] = c->tanh_form ? 0.5 * g * (1 + tanh(sqrt(2 / M_PI) * (g + 0.044715 * g * g * g)))
                              : 0.5 * g * (1 + erf(g / sqrt(2.0)));
    }
}

TEST(op_gelu_fwd_bwd)
{
    size_t n = 40;
    for (int tf = 0; tf < 2; tf++) {
        geglu_case c = {n, tf};
        mu_rng r;
        mu_rng_seed(&r, 25);
        float *X = malloc(n * sizeof *X), *A = malloc(n * sizeof *A), *ones = malloc(n * sizeof *ones);
        fill(&r, X, n, 3.0);
        for (size_t i = 0; i < n; i++) ones[i] = 1.0f;
        be()->gelu(A, X, n, tf);
        double *din = to_double(X, n), *ref = malloc(n * sizeof *ref);
        ref_gelu(din, ref, &c);
        check_fwd(tf ? "gelu tanh" : "gelu erf", A, ref, n, 1e-6);
        double *R = rand_R(n, 26);
        float *dA = R_f32(R, n), *dX = malloc(n * sizeof *dX);
        be()->gelu_bwd(dX, dA, X, n, tf);
        check_grad(tf ? "gelu tanh dX" : "gelu erf dX", ref_gelu, din, 0, dX, n, R, n, &c, 100);
        /* the same formulas as geglu's: geglu with U = 1 gives the same bits */
        float *Ag = malloc(n * sizeof *Ag), *dG = malloc(n * sizeof *dG), *dU = malloc(n * sizeof *dU);
        be()->geglu(Ag, X, ones, n, tf);
        be()->geglu_bwd(dG, dU, dA, X, ones, n, tf);
        CHECK_MSG(!memcmp(A, Ag, n * sizeof *A), "gelu != geglu with U = 1 (tanh_form %d)", tf);
        CHECK_MSG(!memcmp(dX, dG, n * sizeof *dX), "gelu_bwd != geglu_bwd dG with U = 1 "
                  "(tanh_form %d)", tf);
        free(X); free(A); free(ones); free(din); free(ref); free(R); free(dA); free(dX);
        free(Ag); free(dG); free(dU);
    }
}

/* ---- elementwise ------------------------------------------------------------------------ */
TEST(op_add_scale)
{
    float y[5] = { 1, 2, 3, 4, 5 }, x[5] = { 0.5f, -1, 2, 0, 1e-3f };
    be()->add(y, x, 5);
    CHECK_NEAR(y[0], 1.5, 0); CHECK_NEAR(y[1], 1, 0); CHECK_NEAR(y[4], 5.001, 1e-6);
    be()->scale(y, -2, 5);
    CHECK_NEAR(y[0], -3, 0); CHECK_NEAR(y[2], -10, 0);
}

/* ---- log-softmax and cross-entropy ------------------------------------------------------ */
typedef struct { int N, V; const int32_t *targets; } ce_ctx;

static void ref_log_softmax(const double *in, double *out, const void *vc)
{
    const ce_ctx *c = vc;
    for (int n = 0; n < c->N; n++) {
        const double *x = in + n * c->V;
        double mx = -INFINITY, s = 0;
        for (int j = 0; j < c->V; j++) if (x[j] > mx) mx = x[j];
        for (int j = 0; j < c->V; j++) s += exp(x[j] - mx);
        for (int j = 0; j < c->V; j++) out[n * c->V + j] = x[j] - mx - log(s);
    }
}

/* out[n] = -log_softmax(x_n)[target_n] (0 for ignored rows) */
static void ref_ce(const double *in, double *out, const void *vc)
{
    const ce_ctx *c = vc;
    double *ls = malloc((size_t)c->N * c->V * sizeof *ls);
    ref_log_softmax(in, ls, c);
    for (int n = 0; n < c->N; n++) out[n] = c->targets[n] < 0 ? 0 : -ls[n * c->V + c->targets[n]];
    free(ls);
}

TEST(op_log_softmax_cross_entropy)
{
    int32_t targets[] = { 2, -1, 0, 9, 4 };
    ce_ctx c = { 5, 10, targets };
    size_t nx = c.N * c.V;
    mu_rng r;
    mu_rng_seed(&r, 21);
    float *X = malloc(nx * sizeof *X), *Y = malloc(nx * sizeof *Y);
    fill(&r, X, nx, 4.0);
    X[3] = 80;                                  /* large logit: stable */
    double *din = to_double(X, nx), *ref = malloc(nx * sizeof *ref);
    be()->log_softmax(Y, X, c.N, c.V);
    ref_log_softmax(din, ref, &c);
    check_fwd("log_softmax", Y, ref, nx, 1e-6);
    float loss[5], *dl = malloc(nx * sizeof *dl);
    double refl[5];
    ref_ce(din, refl, &c);
    be()->cross_entropy(loss, dl, X, targets, c.N, c.V, 1.0f);
    for (int n = 0; n < c.N; n++) CHECK_CLOSE(loss[n], refl[n], 1e-6, 1e-6);
    CHECK(loss[1] == 0);
    double R[5] = { 1, 1, 1, 1, 1 };
    check_grad("cross_entropy dlogits", ref_ce, din, 0, dl, nx, R, c.N, &c, 1000);
    /* dscale scales the gradient; ignored rows are zero */
    float *dl2 = malloc(nx * sizeof *dl2);
    be()->cross_entropy(loss, dl2, X, targets, c.N, c.V, 0.25f);
    for (size_t i = 0; i < nx; i++) CHECK_NEAR(dl2[i], 0.25 * dl[i], 1e-7);
    for (int j = 0; j < c.V; j++) CHECK(dl2[c.V + j] == 0);
    free(X); free(Y); free(din); free(ref); free(dl); free(dl2);
}

/* ---- target log-probability and its gradient ------------------------------------------- */
/* log softmax(x_n)[y_n] in long double (independent of the ops' double arithmetic); 0 where
 * y_n is outside [0, V) */
static long double ref_logp_row(const double *x, int V, int y)
{
    long double mx = x[0], s = 0;
    for (int j = 1; j < V; j++) if (x[j] > mx) mx = x[j];
    for (int j = 0; j < V; j++) s += expl((long double)x[j] - mx);
    return (long double)x[y] - mx - logl(s);
}

static void ref_target_logprob(const double *in, double *out, const void *vc)
{
    const ce_ctx *c = vc;
    for (int n = 0; n < c->N; n++) {
        int y = c->targets[n];
        out[n] = y < 0 || y >= c->V ? 0 : (double)ref_logp_row(in + (size_t)n * c->V, c->V, y);
    }
}

/* Rows of V logits ~ N(0, 3^2), except row 1, whose target holds nearly all the mass:
 * every other logit sits log(1e-7 / (V-1)) below it (p_y = 1 - 1e-7, logp ~ -1e-7). */
enum { LP_N = 7, LP_V = 23 };
static const int32_t lp_targets[LP_N] = { 4, 9, -1, 0, LP_V, LP_V - 1, 12 };
static void lp_logits(float *X)
{
    mu_rng r;
    mu_rng_seed(&r, 41);
    fill(&r, X, (size_t)LP_N * LP_V, 3.0);
    float *z = X + LP_V;
    float low = (float)(7.5 + log(1e-7 / (LP_V - 1)));
    for (int j = 0; j < LP_V; j++) z[j] = low + (float)(0.01 * mu_rng_normal(&r));
    z[lp_targets[1]] = 7.5f;
}

TEST(op_target_logprob_vs_long_double)
{
    float X[LP_N * LP_V];
    lp_logits(X);
    ce_ctx c = { LP_N, LP_V, lp_targets };
    double *din = to_double(X, (size_t)LP_N * LP_V), ref[LP_N], logp[LP_N];
    ref_target_logprob(din, ref, &c);
    for (int n = 0; n < LP_N; n++) logp[n] = NAN;            /* every entry is written */
    be()->target_logprob(logp, X, lp_targets, LP_N, LP_V);
    for (int n = 0; n < LP_N; n++) {
        int y = lp_targets[n];
        if (y < 0 || y >= LP_V) {
            CHECK_MSG(logp[n] == 0, "ignored row %d: %g", n, logp[n]);
            continue;
        }
        CHECK_MSG(fabs(logp[n] - ref[n]) <= 1e-13 * (1 + fabs(ref[n])),
                  "row %d: logp %.17g vs reference %.17g", n, logp[n], ref[n]);
    }
    /* p close to 1: relative accuracy (an f32 result would be off by ~1e-6 / 1e-7 = 10) */
    CHECK_MSG(ref[1] < -0.9e-7 && ref[1] > -1.1e-7, "row 1: reference %.3g", ref[1]);
    CHECK_MSG(fabs(logp[1] - ref[1]) <= 1e-7 * fabs(ref[1]), "row 1: logp %.17g vs %.17g",
              logp[1], ref[1]);
    /* V = 1: log 1 = 0; N = 0 and V = 0 write nothing / zeros */
    int32_t t0 = 0;
    double one = NAN;
    be()->target_logprob(&one, X, &t0, 1, 1);
    CHECK(one == 0);
    be()->target_logprob(logp, X, lp_targets, 0, LP_V);
    double z2[2] = { NAN, NAN };
    be()->target_logprob(z2, X, lp_targets, 2, 0);
    CHECK(z2[0] == 0 && z2[1] == 0);
    free(din);
}

TEST(op_logp_grad_fd_accumulate_untouched_rows)
{
    const size_t nx = (size_t)LP_N * LP_V;
    float X[LP_N * LP_V];
    lp_logits(X);
    ce_ctx c = { LP_N, LP_V, lp_targets };
    /* a: row 3 has a = 0 (untouched), rows 2 and 4 are ignored by their targets */
    double a[LP_N] = { 0.7, -2.5, 5.0, 0.0, -1.0, 1.25, -0.3 };
    mu_rng r;
    mu_rng_seed(&r, 43);
    float D0[LP_N * LP_V], D[LP_N * LP_V];
    fill(&r, D0, nx, 1.0);
    memcpy(D, D0, sizeof D);
    be()->logp_grad(D, X, lp_targets, a, LP_N, LP_V);
    for (int n = 0; n < LP_N; n++) {
        int y = lp_targets[n];
        int untouched = y < 0 || y >= LP_V || a[n] == 0;
        const float *d = D + (size_t)n * LP_V, *d0 = D0 + (size_t)n * LP_V;
        if (untouched) {
            CHECK_MSG(!memcmp(d, d0, LP_V * sizeof *d), "row %d changed", n);
            continue;
        }
        /* accumulated: d = d0 + a (onehot - p), p in long double */
        double *x = to_double(X + (size_t)n * LP_V, LP_V);
        long double lp = ref_logp_row(x, LP_V, y), lse = x[y] - lp;
        for (int j = 0; j < LP_V; j++) {
            long double want = d0[j] + a[n] * ((j == y) - expl(x[j] - lse));
            CHECK_MSG(fabsl(d[j] - want) <= 4e-7L * (1 + fabsl(want) + fabs(a[n])),
                      "row %d [%d]: %.9g vs %.9Lg", n, j, d[j], want);
        }
        free(x);
    }
    /* the gradient of sum_n a[n] logp[n] by finite differences of the reference */
    float G[LP_N * LP_V];
    for (size_t i = 0; i < nx; i++) G[i] = 0;
    be()->logp_grad(G, X, lp_targets, a, LP_N, LP_V);
    double *din = to_double(X, nx);
    check_grad("logp_grad dlogits", ref_target_logprob, din, 0, G, nx, a, LP_N, &c, 1000);
    /* N = 0 and V = 0 touch nothing */
    be()->logp_grad(D, X, lp_targets, a, 0, LP_V);
    be()->logp_grad(D, X, lp_targets, a, LP_N, 0);
    free(din);
}

/* The ops equal lib/objectives.c's host path bit for bit (the trainer's goldens were made
 * through it): target_logprob vs z[y] - mu_logsumexp and mu_seq_logprob; logp_grad vs
 * mu_seq_logprob_grad (a = coef), mu_obj_ce (a = -coef) and mu_obj_log1mp (a[n] from logp[n]
 * as its row function computes it). T * V is above the op's OpenMP threshold. */
TEST(op_logp_ops_bit_identical_to_objectives)
{
    enum { T = 9, V = 20011 };
    const size_t n = (size_t)T * V;
    int32_t labels[T] = { -1, 17, 0, V - 1, -1, 20000, 3, 555, -1 };
    float *X = malloc(n * sizeof *X), *D0 = malloc(n * sizeof *D0);
    float *d1 = malloc(n * sizeof *d1), *d2 = malloc(n * sizeof *d2);
    mu_rng r;
    mu_rng_seed(&r, 47);
    fill(&r, X, n, 2.5);
    X[(size_t)3 * V + V - 1] = 30;                /* a target with p close to 1 */
    X[(size_t)6 * V + 3] = 9;                     /* p near 1/2: log1mp's gradient is large */
    fill(&r, D0, n, 0.1);
    double logp[T];
    be()->target_logprob(logp, X, labels, T, V);
    double sum = 0;
    for (int t = 0; t < T; t++) {
        const float *z = X + (size_t)t * V;
        double want = labels[t] < 0 ? 0 : z[labels[t]] - mu_logsumexp(z, V);
        CHECK_MSG(logp[t] == want, "row %d: %.17g vs objectives %.17g", t, logp[t], want);
        sum += logp[t];
    }
    CHECK(logp[3] > -1e-6 && logp[3] < 0);
    CHECK(sum == mu_seq_logprob(X, labels, T, V, NULL));

    double coef = -0.37, a[T];
    for (int t = 0; t < T; t++) a[t] = labels[t] < 0 ? 0 : coef;
    memcpy(d1, D0, n * sizeof *d1);
    memcpy(d2, D0, n * sizeof *d2);
    mu_seq_logprob_grad(X, labels, T, V, coef, d1);
    be()->logp_grad(d2, X, labels, a, T, V);
    CHECK_MSG(!memcmp(d1, d2, n * sizeof *d1), "logp_grad != mu_seq_logprob_grad");
    CHECK(memcmp(d1, D0, n * sizeof *d1) != 0);

    for (int t = 0; t < T; t++) a[t] = -0.125;      /* ignored rows: their targets say so */
    memcpy(d1, D0, n * sizeof *d1);
    memcpy(d2, D0, n * sizeof *d2);
    mu_obj_ce(X, labels, T, V, 0.125, d1);
    be()->logp_grad(d2, X, labels, a, T, V);
    CHECK_MSG(!memcmp(d1, d2, n * sizeof *d1), "logp_grad != mu_obj_ce's gradient");

    /* log1mp, floor -8: a[n] = coef p / (1 - p), 1 - p = max(-expm1(logp), 1e-12) */
    double floor_ = -8, c2 = 0.5;
    int active = 0;
    for (int t = 0; t < T; t++) {
        a[t] = 0;
        if (labels[t] < 0 || logp[t] < floor_) continue;
        double omp = -expm1(logp[t]);
        if (omp < 1e-12) omp = 1e-12;
        a[t] = c2 * exp(logp[t]) / omp;
        active++;
    }
    CHECK(active >= 2 && active < mu_count_labels(labels, T));   /* the floor drops some */
    memcpy(d1, D0, n * sizeof *d1);
    memcpy(d2, D0, n * sizeof *d2);
    mu_obj_log1mp(X, labels, T, V, floor_, c2, d1);
    be()->logp_grad(d2, X, labels, a, T, V);
    CHECK_MSG(!memcmp(d1, d2, n * sizeof *d1), "logp_grad != mu_obj_log1mp's gradient");
    free(X); free(D0); free(d1); free(d2);
}

TEST(op_backend_registry)
{
    char err[128];
    CHECK(mu_backend_by_name("cpu", err, sizeof err) == mu_backend_cpu());
    CHECK(mu_backend_by_name("auto", err, sizeof err) != NULL);
    CHECK(mu_backend_by_name("tpu", err, sizeof err) == NULL);
    CHECK(strstr(err, "tpu") != NULL);
    float *p = be()->alloc(100);
    for (int i = 0; i < 25; i++) CHECK(p[i] == 0);
    be()->free(p);
}

TEST(op_matmul_single_row)
{
    /* N = 1 takes the matrix-vector path: same results as a row of the general case */
    mm_ctx c = { 1, 9, 6 };
    size_t nx = c.K, nw = c.M * c.K, ny = c.M;
    mu_rng r;
    mu_rng_seed(&r, 31);
    float *in = malloc((nx + nw) * sizeof *in), Y[6];
    fill(&r, in, nx + nw, 1.0);
    be()->matmul(Y, in, in + nx, 1, c.K, c.M, 0);
    double *din = to_double(in, nx + nw), ref[6];
    ref_matmul(din, ref, &c);
    check_fwd("matmul N=1", Y, ref, ny, 1e-5);
    be()->matmul(Y, in, in + nx, 1, c.K, c.M, 1);
    for (size_t i = 0; i < ny; i++) CHECK_NEAR(Y[i], 2 * ref[i], 1e-4);
    double *R = rand_R(ny, 32);
    float *dY = R_f32(R, ny), *dX = calloc(nx, sizeof *dX), *dW = calloc(nw, sizeof *dW);
    be()->matmul_bwd(dX, dW, dY, in, in + nx, 1, c.K, c.M, 0);
    check_grad("matmul N=1 dX", ref_matmul, din, 0, dX, nx, R, ny, &c, 1000);
    check_grad("matmul N=1 dW", ref_matmul, din, nx, dW, nw, R, ny, &c, 1000);
    be()->matmul_bwd(dX, dW, dY, in, in + nx, 1, c.K, c.M, 1);
    float *dX1 = calloc(nx, sizeof *dX1), *dW1 = calloc(nw, sizeof *dW1);
    be()->matmul_bwd(dX1, dW1, dY, in, in + nx, 1, c.K, c.M, 0);
    for (size_t i = 0; i < nx; i++) CHECK_NEAR(dX[i], 2 * dX1[i], 1e-5);
    for (size_t i = 0; i < nw; i++) CHECK_NEAR(dW[i], 2 * dW1[i], 1e-5);
    free(in); free(din); free(R); free(dY); free(dX); free(dW); free(dX1); free(dW1);
}

/* ---- thread count ----------------------------------------------------------------------
 * The backward sums over tokens (dW of a matmul and of a matmul_wt, dw of RMSNorm, dw and
 * db of LayerNorm) come out bit-identical with 1 and 3 threads, at sizes where the old code
 * differed: OpenBLAS summed a 2000-token dW in a thread-dependent order, RMSNorm's dw added
 * per-thread partial sums. */
typedef struct { float *dX, *dW, *dXw, *dWw, *dXn, *dw, *dXl, *dwl, *dbl; } bwd_out;

static bwd_out backward_sums(int threads, const float *in, int N, int K, int M)
{
    bwd_out o;
    const float *X = in, *W = in + (size_t)N * K, *dY = W + (size_t)M * K;
    const float *w = dY + (size_t)N * M;
    float *rstd = malloc((size_t)N * sizeof *rstd), *Y = malloc((size_t)N * K * sizeof *Y);
    o.dX = calloc((size_t)N * K, sizeof *o.dX);
    o.dW = calloc((size_t)M * K, sizeof *o.dW);
    o.dXw = calloc((size_t)N * K, sizeof *o.dXw);
    o.dWw = calloc((size_t)K * M, sizeof *o.dWw);
    o.dXn = calloc((size_t)N * K, sizeof *o.dXn);
    o.dw = calloc((size_t)K, sizeof *o.dw);
    o.dXl = calloc((size_t)N * K, sizeof *o.dXl);
    o.dwl = calloc((size_t)K, sizeof *o.dwl);
    o.dbl = calloc((size_t)K, sizeof *o.dbl);
    float *mean = malloc((size_t)N * sizeof *mean);
    int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    be()->matmul_bwd(o.dX, o.dW, dY, X, W, N, K, M, 0);
    be()->matmul_wt_bwd(o.dXw, o.dWw, dY, X, W, N, K, M, 0);   /* W read as [K,M] */
    be()->rmsnorm(Y, rstd, X, w, N, K, 1e-5f);
    be()->rmsnorm_bwd(o.dXn, o.dw, o.dX, X, w, rstd, N, K);
    be()->layernorm(Y, mean, rstd, X, w, w, N, K, 1e-5f);
    be()->layernorm_bwd(o.dXl, o.dwl, o.dbl, o.dX, X, w, mean, rstd, N, K);
    omp_set_num_threads(saved);
    free(rstd); free(Y); free(mean);
    return o;
}

TEST(op_backward_sums_independent_of_thread_count)
{
    const int N = 2000, K = 128, M = 64;       /* N*K above PAR_MIN; N above GEMM_Q */
    size_t n = (size_t)N * K + (size_t)M * K + (size_t)N * M + K;
    float *in = malloc(n * sizeof *in);
    mu_rng r;
    mu_rng_seed(&r, 11);
    fill(&r, in, n, 1.0);
    bwd_out a = backward_sums(1, in, N, K, M), b = backward_sums(3, in, N, K, M);
    CHECK_MSG(!memcmp(a.dX, b.dX, (size_t)N * K * sizeof *a.dX), "matmul dX differs");
    CHECK_MSG(!memcmp(a.dW, b.dW, (size_t)M * K * sizeof *a.dW), "matmul dW differs");
    CHECK_MSG(!memcmp(a.dXw, b.dXw, (size_t)N * K * sizeof *a.dXw), "matmul_wt dX differs");
    CHECK_MSG(!memcmp(a.dWw, b.dWw, (size_t)K * M * sizeof *a.dWw), "matmul_wt dW differs");
    CHECK_MSG(!memcmp(a.dXn, b.dXn, (size_t)N * K * sizeof *a.dXn), "rmsnorm dX differs");
    CHECK_MSG(!memcmp(a.dw, b.dw, (size_t)K * sizeof *a.dw), "rmsnorm dw differs");
    CHECK_MSG(!memcmp(a.dXl, b.dXl, (size_t)N * K * sizeof *a.dXl), "layernorm dX differs");
    CHECK_MSG(!memcmp(a.dwl, b.dwl, (size_t)K * sizeof *a.dwl), "layernorm dw differs");
    CHECK_MSG(!memcmp(a.dbl, b.dbl, (size_t)K * sizeof *a.dbl), "layernorm db differs");
    float *p[] = { a.dX, a.dW, a.dXw, a.dWw, a.dXn, a.dw, a.dXl, a.dwl, a.dbl,
                   b.dX, b.dW, b.dXw, b.dWw, b.dXn, b.dw, b.dXl, b.dwl, b.dbl, in };
    for (size_t i = 0; i < sizeof p / sizeof *p; i++) free(p[i]);
}
