/* probe.c — multinomial logistic-regression probes (see probe.h): moments,
 * standardization, the penalized cross-entropy and its gradient, L-BFGS.
 * Every sum runs in a fixed order (rows split among threads only where each output
 * element is summed by one thread, in row order), so results do not depend on the
 * number of threads. */
#include "probe.h"
#include "err.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- features */

void mu_probe_moments(const float *X, int64_t N, int D, double *mean, double *std) {
    #pragma omp parallel for schedule(static)
    for (int j = 0; j < D; j++) {
        double s = 0;
        for (int64_t i = 0; i < N; i++) s += (double)X[i * D + j];
        double m = N > 0 ? s / (double)N : 0;
        double v = 0;
        for (int64_t i = 0; i < N; i++) { double d = (double)X[i * D + j] - m; v += d * d; }
        double sd = N > 0 ? sqrt(v / (double)N) : 0;
        mean[j] = m;
        std[j] = sd > 0 ? sd : 1;
    }
}

void mu_probe_standardize(const float *X, int64_t N, int D, const double *mean,
                          const double *std, double *Z) {
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++)
        for (int j = 0; j < D; j++) Z[i * D + j] = ((double)X[i * D + j] - mean[j]) / std[j];
}

/* ---------------------------------------------------------------- objective */

/* logits[c] = W[c] . z + b[c] */
static void row_logits(const double *theta, int D, int C, const double *z, double *logits) {
    const double *b = theta + (size_t)C * D;
    for (int c = 0; c < C; c++) {
        const double *w = theta + (size_t)c * D;
        double s = b[c];
        for (int j = 0; j < D; j++) s += w[j] * z[j];
        logits[c] = s;
    }
}

/* In place: logits -> probabilities; returns log-sum-exp. */
static double softmax_inplace(double *v, int C) {
    double mx = v[0];
    for (int c = 1; c < C; c++) if (v[c] > mx) mx = v[c];
    double s = 0;
    for (int c = 0; c < C; c++) { v[c] = exp(v[c] - mx); s += v[c]; }
    for (int c = 0; c < C; c++) v[c] /= s;
    return mx + log(s);
}

double mu_probe_objective(const double *Z, const int32_t *y, int64_t N, int D, int C,
                          double l2, const double *theta, double *grad) {
    /* per row: R[i, c] = p_ic - [c == y_i] (the logits' gradient), nll[i] */
    double *R = malloc((size_t)N * C * sizeof *R), *nll = malloc((size_t)N * sizeof *nll);
    if (!R || !nll) { free(R); free(nll); return NAN; }
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) {
        double *r = R + i * C;
        row_logits(theta, D, C, Z + i * D, r);
        double zy = r[y[i]];
        nll[i] = softmax_inplace(r, C) - zy;
        r[y[i]] -= 1;
    }
    double loss = 0;
    for (int64_t i = 0; i < N; i++) loss += nll[i];
    loss /= (double)N;
    double pen = 0;
    for (size_t k = 0; k < (size_t)C * D; k++) pen += theta[k] * theta[k];
    loss += 0.5 * l2 * pen;
    if (grad) {
        /* dW[c, j] = (1/N) sum_i R[i, c] Z[i, j] + l2 W[c, j]: column blocks per thread */
        enum { JB = 64 };
        int nblk = (D + JB - 1) / JB;
        #pragma omp parallel for schedule(static)
        for (int blk = 0; blk < nblk; blk++) {
            int j0 = blk * JB, j1 = j0 + JB < D ? j0 + JB : D;
            for (int c = 0; c < C; c++)
                for (int j = j0; j < j1; j++) grad[(size_t)c * D + j] = 0;
            for (int64_t i = 0; i < N; i++) {
                const double *z = Z + i * D, *r = R + i * C;
                for (int c = 0; c < C; c++) {
                    double rc = r[c];
                    double *g = grad + (size_t)c * D;
                    for (int j = j0; j < j1; j++) g[j] += rc * z[j];
                }
            }
            for (int c = 0; c < C; c++)
                for (int j = j0; j < j1; j++) {
                    size_t k = (size_t)c * D + j;
                    grad[k] = grad[k] / (double)N + l2 * theta[k];
                }
        }
        double *gb = grad + (size_t)C * D;
        for (int c = 0; c < C; c++) gb[c] = 0;
        for (int64_t i = 0; i < N; i++)
            for (int c = 0; c < C; c++) gb[c] += R[i * C + c];
        for (int c = 0; c < C; c++) gb[c] /= (double)N;
    }
    free(R); free(nll);
    return loss;
}

/* ---------------------------------------------------------------- L-BFGS */

void mu_probe_fit_defaults(mu_probe_fit_opts *o) {
    o->max_iter = 10000;
    o->gtol = 1e-10;
    o->memory = 10;
}

static double dot(const double *a, const double *b, size_t n) {
    double s = 0;
    for (size_t k = 0; k < n; k++) s += a[k] * b[k];
    return s;
}

static double max_abs(const double *a, size_t n) {
    double m = 0;
    for (size_t k = 0; k < n; k++) if (fabs(a[k]) > m) m = fabs(a[k]);
    return m;
}

/* L-BFGS history: pairs (s, y) in a ring, rho = 1 / (s . y). */
typedef struct {
    int m, count, head;
    size_t n;
    double *s, *y, *rho, *alpha;
} lbfgs_mem;

/* d = -H g by the two-loop recursion (H0 = (s.y / y.y) I of the newest pair). */
static void lbfgs_direction(const lbfgs_mem *h, const double *g, double *d) {
    size_t n = h->n;
    for (size_t k = 0; k < n; k++) d[k] = -g[k];
    for (int t = 0; t < h->count; t++) {
        int i = (h->head - 1 - t + h->m) % h->m;
        h->alpha[i] = h->rho[i] * dot(h->s + (size_t)i * n, d, n);
        const double *yi = h->y + (size_t)i * n;
        for (size_t k = 0; k < n; k++) d[k] -= h->alpha[i] * yi[k];
    }
    if (h->count) {
        int i = (h->head - 1 + h->m) % h->m;
        const double *yi = h->y + (size_t)i * n;
        double gamma = 1.0 / (h->rho[i] * dot(yi, yi, n));
        for (size_t k = 0; k < n; k++) d[k] *= gamma;
    }
    for (int t = h->count - 1; t >= 0; t--) {
        int i = (h->head - 1 - t + h->m) % h->m;
        double beta = h->rho[i] * dot(h->y + (size_t)i * n, d, n);
        const double *si = h->s + (size_t)i * n;
        for (size_t k = 0; k < n; k++) d[k] += (h->alpha[i] - beta) * si[k];
    }
}

static void lbfgs_push(lbfgs_mem *h, const double *s, const double *y, double sy) {
    memcpy(h->s + (size_t)h->head * h->n, s, h->n * sizeof *s);
    memcpy(h->y + (size_t)h->head * h->n, y, h->n * sizeof *y);
    h->rho[h->head] = 1.0 / sy;
    h->head = (h->head + 1) % h->m;
    if (h->count < h->m) h->count++;
}

static int check_fit_args(const double *Z, const int32_t *y, int64_t N, int D, int C,
                          double l2, char *err, size_t errlen) {
    if (C < 2) { mu_set_err(err, errlen, "a probe needs at least 2 classes, got %d", C); return -1; }
    if (N < 1 || D < 1) { mu_set_err(err, errlen, "no training data (%lld rows of width %d)", (long long)N, D); return -1; }
    if (!(l2 > 0) || !isfinite(l2)) { mu_set_err(err, errlen, "l2 must be a positive number, got %g", l2); return -1; }
    for (int64_t i = 0; i < N; i++) {
        if (y[i] < 0 || y[i] >= C) { mu_set_err(err, errlen, "row %lld: class %d out of range [0, %d)", (long long)i, y[i], C); return -1; }
        for (int j = 0; j < D; j++)
            if (!isfinite(Z[i * D + j])) { mu_set_err(err, errlen, "row %lld: feature %d is not finite", (long long)i, j); return -1; }
    }
    return 0;
}

/* One line search along d from x (f, g, gd = g.d): backtracking with the Armijo
 * condition (and a strict decrease of f), halving the step. Near the optimum, where f
 * no longer resolves the decrease, a step that lowers max |gradient| without raising f
 * beyond rounding is accepted too; so every accepted step makes progress. Writes xn,
 * fn, gn; returns 0, or -1 when no step was accepted. */
static int line_search(const double *Z, const int32_t *y, int64_t N, int D, int C, double l2,
                       const double *x, double f, const double *g, const double *d, double gd,
                       double step, double *xn, double *fn, double *gn) {
    size_t n = (size_t)C * D + C;
    double gmax = max_abs(g, n);
    for (int tries = 0; tries < 60; tries++, step *= 0.5) {
        for (size_t k = 0; k < n; k++) xn[k] = x[k] + step * d[k];
        *fn = mu_probe_objective(Z, y, N, D, C, l2, xn, gn);
        if (!isfinite(*fn)) continue;
        if (*fn < f && *fn <= f + 1e-4 * step * gd) return 0;
        if (*fn <= f + 1e-14 * fabs(f) && max_abs(gn, n) < gmax) return 0;
    }
    return -1;
}

int mu_probe_fit(const double *Z, const int32_t *y, int64_t N, int D, int C, double l2,
                 const mu_probe_fit_opts *o, double *theta, mu_probe_fit_info *info,
                 char *err, size_t errlen) {
    mu_probe_fit_opts defaults;
    if (!o) { mu_probe_fit_defaults(&defaults); o = &defaults; }
    if (check_fit_args(Z, y, N, D, C, l2, err, errlen)) return -1;
    size_t n = (size_t)C * D + C;
    int m = o->memory > 0 ? o->memory : 10;
    lbfgs_mem h = {.m = m, .n = n};
    h.s = calloc((size_t)m * n, sizeof *h.s);
    h.y = calloc((size_t)m * n, sizeof *h.y);
    h.rho = calloc((size_t)m, sizeof *h.rho);
    h.alpha = calloc((size_t)m, sizeof *h.alpha);
    double *g = calloc(n, sizeof *g), *d = calloc(n, sizeof *d), *xn = calloc(n, sizeof *xn),
           *gn = calloc(n, sizeof *gn), *sv = calloc(n, sizeof *sv), *yv = calloc(n, sizeof *yv);
    if (!h.s || !h.y || !h.rho || !h.alpha || !g || !d || !xn || !gn || !sv || !yv) {
        mu_set_err(err, errlen, "out of memory for a probe of %zu parameters", n);
        free(h.s); free(h.y); free(h.rho); free(h.alpha);
        free(g); free(d); free(xn); free(gn); free(sv); free(yv);
        return -1;
    }
    memset(theta, 0, n * sizeof *theta);
    double f = mu_probe_objective(Z, y, N, D, C, l2, theta, g);
    int it = 0, converged = 0;
    for (; it < o->max_iter; it++) {
        if (max_abs(g, n) <= o->gtol) { converged = 1; break; }
        lbfgs_direction(&h, g, d);
        double gd = dot(g, d, n);
        if (!(gd < 0)) { /* not a descent direction: forget the history */
            h.count = 0;
            for (size_t k = 0; k < n; k++) d[k] = -g[k];
            gd = -dot(g, g, n);
        }
        double step = h.count ? 1.0 : fmin(1.0, 1.0 / sqrt(-gd));
        double fn;
        if (line_search(Z, y, N, D, C, l2, theta, f, g, d, gd, step, xn, &fn, gn)) {
            if (h.count) { h.count = 0; it--; continue; } /* retry along -g */
            converged = max_abs(g, n) <= 1e-6;            /* f cannot decrease further */
            break;
        }
        for (size_t k = 0; k < n; k++) { sv[k] = xn[k] - theta[k]; yv[k] = gn[k] - g[k]; }
        double sy = dot(sv, yv, n);
        if (sy > 1e-300 && sy > 1e-12 * sqrt(dot(sv, sv, n) * dot(yv, yv, n))) lbfgs_push(&h, sv, yv, sy);
        memcpy(theta, xn, n * sizeof *theta);
        memcpy(g, gn, n * sizeof *g);
        f = fn;
    }
    if (!converged && max_abs(g, n) <= o->gtol) converged = 1;
    /* centre the bias: softmax is unchanged by a common shift */
    double *b = theta + (size_t)C * D, mb = 0;
    for (int c = 0; c < C; c++) mb += b[c];
    mb /= C;
    for (int c = 0; c < C; c++) b[c] -= mb;
    if (info) {
        info->iterations = it;
        info->converged = converged;
        info->loss = mu_probe_objective(Z, y, N, D, C, l2, theta, g);
        info->grad_max = max_abs(g, n);
    }
    free(h.s); free(h.y); free(h.rho); free(h.alpha);
    free(g); free(d); free(xn); free(gn); free(sv); free(yv);
    return 0;
}

/* ---------------------------------------------------------------- prediction */

void mu_probe_proba(const double *theta, int D, int C, const double *z, double *p) {
    row_logits(theta, D, C, z, p);
    softmax_inplace(p, C);
}

int mu_probe_predict(const double *theta, int D, int C, const double *z) {
    const double *b = theta + (size_t)C * D;
    int best = 0;
    double bv = -INFINITY;
    for (int c = 0; c < C; c++) {
        const double *w = theta + (size_t)c * D;
        double s = b[c];
        for (int j = 0; j < D; j++) s += w[j] * z[j];
        if (s > bv) { bv = s; best = c; }
    }
    return best;
}

double mu_probe_nll(const double *theta, int D, int C, const double *z, int y) {
    double small[64], *logits = C <= 64 ? small : malloc((size_t)C * sizeof *logits);
    if (!logits) return NAN;
    row_logits(theta, D, C, z, logits);
    double y_logit = logits[y], nll = softmax_inplace(logits, C) - y_logit;
    if (logits != small) free(logits);
    return nll;
}

double mu_probe_log_loss(const double *theta, const double *Z, const int32_t *y,
                         int64_t N, int D, int C) {
    if (N <= 0) return NAN;
    double *nll = malloc((size_t)N * sizeof *nll);
    if (!nll) return NAN;
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < N; i++) nll[i] = mu_probe_nll(theta, D, C, Z + i * D, y[i]);
    double s = 0;
    for (int64_t i = 0; i < N; i++) s += nll[i];   /* in row order: any thread count */
    free(nll);
    return s / (double)N;
}

double mu_probe_accuracy(const double *theta, const double *Z, const int32_t *y,
                         int64_t N, int D, int C) {
    if (N <= 0) return NAN;
    int64_t right = 0;
    #pragma omp parallel for schedule(static) reduction(+ : right)
    for (int64_t i = 0; i < N; i++) right += mu_probe_predict(theta, D, C, Z + i * D) == y[i];
    return (double)right / (double)N;
}
