/* probe.h — linear probes: multinomial logistic regression with an L2 penalty on
 * standardized features, fitted in double precision by L-BFGS (deterministic: the
 * same inputs give the same bits on any thread count).
 *
 * Shapes: X is [N, D] row-major (f32 features, one sample per row), Z the standardized
 * copy (double), y [N] class indices in [0, C). Parameters theta are one double array
 * of C*D + C entries: W [C, D] row-major, then b [C].
 *
 * Objective (the sklearn LogisticRegression(C=1/(l2*N)) problem, same minimizer):
 *   f(W, b) = (1/N) sum_i -log softmax(W z_i + b)[y_i]  +  (l2/2) ||W||_F^2
 * (the bias is not penalized; it is reported centred, sum_c b_c = 0, which changes no
 * probability). */
#ifndef MU_PROBE_H
#define MU_PROBE_H
#include <stddef.h>
#include <stdint.h>

/* Feature moments over the N rows: mean and population standard deviation (ddof 0,
 * as sklearn's StandardScaler); a zero deviation becomes 1 (the feature is centred
 * only). */
void mu_probe_moments(const float *X, int64_t N, int D, double *mean, double *std);
/* Z[i, j] = (X[i, j] - mean[j]) / std[j]. */
void mu_probe_standardize(const float *X, int64_t N, int D, const double *mean,
                          const double *std, double *Z);

/* f(theta) as above; the gradient into grad[C*D + C] when grad is not NULL. */
double mu_probe_objective(const double *Z, const int32_t *y, int64_t N, int D, int C,
                          double l2, const double *theta, double *grad);

typedef struct {
    int max_iter;     /* L-BFGS iterations (default 10000) */
    double gtol;      /* stop when max |gradient| <= gtol (default 1e-10) */
    int memory;       /* L-BFGS history pairs (default 10) */
} mu_probe_fit_opts;
void mu_probe_fit_defaults(mu_probe_fit_opts *o);

typedef struct {
    int iterations;   /* L-BFGS iterations made */
    int converged;    /* 1: max |gradient| <= gtol (or no further decrease possible
                         at double precision with a gradient below 1e-6) */
    double loss;      /* final objective */
    double grad_max;  /* final max |gradient| */
} mu_probe_fit_info;

/* Minimizes f from theta = 0 and writes the minimizer into theta[C*D + C] (bias
 * centred). 0 ok; -1 with a message in err (C < 2, N < 1, l2 <= 0, non-finite data). */
int mu_probe_fit(const double *Z, const int32_t *y, int64_t N, int D, int C, double l2,
                 const mu_probe_fit_opts *o, double *theta, mu_probe_fit_info *info,
                 char *err, size_t errlen);

/* Class probabilities softmax(W z + b) of one standardized row into p[C]. */
void mu_probe_proba(const double *theta, int D, int C, const double *z, double *p);
/* argmax_c (W z + b)_c (the lowest index among ties). */
int mu_probe_predict(const double *theta, int D, int C, const double *z);
/* -log softmax(W z + b)[y] of one standardized row (natural log). */
double mu_probe_nll(const double *theta, int D, int C, const double *z, int y);
/* Mean of that over the N rows (sklearn.metrics.log_loss; NaN when N == 0), summed in row
 * order whatever the thread count. */
double mu_probe_log_loss(const double *theta, const double *Z, const int32_t *y,
                         int64_t N, int D, int C);
/* Fraction of the N rows whose prediction equals y (NaN when N == 0). */
double mu_probe_accuracy(const double *theta, const double *Z, const int32_t *y,
                         int64_t N, int D, int C);
#endif
