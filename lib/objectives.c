/* objectives.c — losses and their gradients on logits / activations (see objectives.h). */
#include "objectives.h"
#include "rng.h"
#include <math.h>
#include <stdlib.h>

double mu_logsumexp(const float *z, int V) {
    float mx = z[0];
    for (int j = 1; j < V; j++) if (z[j] > mx) mx = z[j];
    double acc = 0;
    for (int j = 0; j < V; j++) acc += exp((double)z[j] - mx);
    return mx + log(acc);
}

int mu_count_labels(const int32_t *labels, int T) {
    int n = 0;
    for (int t = 0; t < T; t++) n += labels[t] >= 0;
    return n;
}

double mu_log_sigmoid(double x) {
    return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x));
}

static double sigmoid(double x) {
    return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
}

/* d += a * (e_y - p) for one row: the gradient of log p(y) scaled by a. */
static void add_logp_grad(const float *z, int V, double lse, int y, double a, float *d) {
    if (a == 0) return;
    for (int j = 0; j < V; j++) d[j] -= (float)(a * exp((double)z[j] - lse));
    d[y] += (float)a;
}

/* ---- token-level ----
 * Each objective is a function of one labeled row; over_rows runs it on every labeled row
 * (in parallel for large rows) and sums the per-row values in row order, so results do
 * not depend on the number of threads. */

typedef struct {
    double coef, param[2];    /* param: floor (log1mp), beta (wga, undial), beta1 beta2 (satimp) */
    const float *ref;         /* [n, V] reference rows (undial: logits, kl: log-probs) */
    double (*tok)(double logp, const double *param, double *dl);   /* row_tok's loss of log p(y) */
} row_ctx;

/* Loss of row z [V] with target y (k-th labeled row); adds coef * dloss/dz into d. */
typedef double (*row_fn)(const float *z, int V, int y, int k, const row_ctx *c, float *d);

static double over_rows(const float *logits, const int32_t *labels, int T, int V, row_fn fn,
                        const row_ctx *c, float *dlogits) {
    int *k = malloc((size_t)(T ? T : 1) * sizeof *k);
    double *lt = malloc((size_t)(T ? T : 1) * sizeof *lt);
    int n = 0;
    for (int t = 0; t < T; t++) k[t] = labels[t] >= 0 ? n++ : -1;
    #pragma omp parallel for schedule(dynamic, 1) if ((int64_t)n * V >= (1 << 16))
    for (int t = 0; t < T; t++)
        lt[t] = k[t] < 0 ? 0 : fn(logits + (size_t)t * V, V, labels[t], k[t], c,
                                  dlogits ? dlogits + (size_t)t * V : NULL);
    double sum = 0;
    for (int t = 0; t < T; t++) sum += lt[t];
    free(k);
    free(lt);
    return sum;
}

double mu_tok_ce(double logp, double *dl) {
    *dl = -1;
    return -logp;
}

double mu_tok_log1mp(double logp, double floor, double *dl) {
    *dl = 0;
    if (logp < floor) return 0;
    double one_minus_p = -expm1(logp);
    if (one_minus_p < 1e-12) one_minus_p = 1e-12;
    *dl = exp(logp) / one_minus_p;            /* d(-log(1-p))/dlogp = p/(1-p) */
    return -log(one_minus_p);
}

double mu_tok_wga(double logp, double beta, double *dl) {
    double w = exp(beta * logp);              /* p^beta, treated as a constant */
    *dl = w;
    return w * logp;                          /* -w * CE = w * log p */
}

double mu_tok_satimp(double logp, double beta1, double beta2, double *dl) {
    /* p^beta1 (1-p)^beta2, treated as a constant; 1-p as -expm1(log p) */
    double w = exp(beta1 * logp) * pow(-expm1(logp), beta2);
    *dl = w;
    return w * logp;
}

/* A function of log p(y) alone (c->tok): ce, log1mp, wga, satimp, and the sequences' log p
 * itself. */
static double row_tok(const float *z, int V, int y, int k, const row_ctx *c, float *d) {
    (void)k;
    double dl, lse = mu_logsumexp(z, V);
    double loss = c->tok(z[y] - lse, c->param, &dl);
    if (d) add_logp_grad(z, V, lse, y, c->coef * dl, d);
    return loss;
}

static double tok_ce(double logp, const double *param, double *dl) {
    (void)param;
    return mu_tok_ce(logp, dl);
}

static double tok_log1mp(double logp, const double *param, double *dl) {
    return mu_tok_log1mp(logp, param[0], dl);
}

static double tok_wga(double logp, const double *param, double *dl) {
    return mu_tok_wga(logp, param[0], dl);
}

static double tok_satimp(double logp, const double *param, double *dl) {
    return mu_tok_satimp(logp, param[0], param[1], dl);
}

double mu_obj_ce(const float *logits, const int32_t *labels, int T, int V,
                 double coef, float *dlogits) {
    row_ctx c = {.coef = coef, .tok = tok_ce};
    return over_rows(logits, labels, T, V, row_tok, &c, dlogits);
}

double mu_obj_log1mp(const float *logits, const int32_t *labels, int T, int V,
                     double floor, double coef, float *dlogits) {
    row_ctx c = {.coef = coef, .param = {floor}, .tok = tok_log1mp};
    return over_rows(logits, labels, T, V, row_tok, &c, dlogits);
}

double mu_obj_wga(const float *logits, const int32_t *labels, int T, int V,
                  double beta, double coef, float *dlogits) {
    row_ctx c = {.coef = coef, .param = {beta}, .tok = tok_wga};
    return over_rows(logits, labels, T, V, row_tok, &c, dlogits);
}

double mu_obj_satimp(const float *logits, const int32_t *labels, int T, int V,
                     double beta1, double beta2, double coef, float *dlogits) {
    row_ctx c = {.coef = coef, .param = {beta1, beta2}, .tok = tok_satimp};
    return over_rows(logits, labels, T, V, row_tok, &c, dlogits);
}

/* KL(p || U) = sum_j p_j log p_j + log V of row z; d/dz_j = p_j (log p_j - sum_i p_i log p_i). */
static double row_me(const float *z, int V, int y, int k, const row_ctx *c, float *d) {
    (void)y; (void)k;
    double lse = mu_logsumexp(z, V), s = 0;
    for (int j = 0; j < V; j++) {
        double lp = (double)z[j] - lse;
        s += exp(lp) * lp;
    }
    if (d && c->coef != 0)
        for (int j = 0; j < V; j++) {
            double lp = (double)z[j] - lse;
            d[j] += (float)(c->coef * exp(lp) * (lp - s));
        }
    return s + log((double)V);
}

double mu_obj_me(const float *logits, const int32_t *labels, int T, int V, double coef, float *dlogits) {
    row_ctx c = {.coef = coef};
    return over_rows(logits, labels, T, V, row_me, &c, dlogits);
}

static double row_undial(const float *z, int V, int y, int k, const row_ctx *c, float *d) {
    const float *r = c->ref + (size_t)k * V;
    double beta = c->param[0];
    /* q = softmax(r - beta e_y), computed with the shift in double */
    double mx = -INFINITY;
    for (int j = 0; j < V; j++) {
        double a = r[j] - (j == y ? beta : 0);
        if (a > mx) mx = a;
    }
    double qs = 0;
    for (int j = 0; j < V; j++) qs += exp(r[j] - (j == y ? beta : 0) - mx);
    double lq = mx + log(qs), lse = mu_logsumexp(z, V), loss = 0;
    for (int j = 0; j < V; j++) {
        double q = exp(r[j] - (j == y ? beta : 0) - lq);
        double logp = z[j] - lse;
        loss -= q * logp;
        if (d) d[j] += (float)(c->coef * (exp(logp) - q));  /* d/dz: p - q */
    }
    return loss;
}

double mu_obj_undial(const float *logits, const int32_t *labels, int T, int V,
                     const float *ref_logits, double beta, double coef, float *dlogits) {
    row_ctx c = {.coef = coef, .param = {beta}, .ref = ref_logits};
    return over_rows(logits, labels, T, V, row_undial, &c, dlogits);
}

static double row_kl(const float *z, int V, int y, int k, const row_ctx *c, float *d) {
    (void)y;
    const float *lr = c->ref + (size_t)k * V;
    double lse = mu_logsumexp(z, V), loss = 0;
    for (int j = 0; j < V; j++) {
        double r = exp((double)lr[j]);
        double logp = z[j] - lse;
        if (r > 0) loss += r * (lr[j] - logp);
        if (d) d[j] += (float)(c->coef * (exp(logp) - r));   /* d/dz: p - r */
    }
    return loss;
}

double mu_obj_kl(const float *logits, const int32_t *labels, int T, int V,
                 const float *ref_logp, double coef, float *dlogits) {
    row_ctx c = {.coef = coef, .ref = ref_logp};
    return over_rows(logits, labels, T, V, row_kl, &c, dlogits);
}

/* ---- sequence-level ---- */

static double tok_logp(double logp, const double *param, double *dl) {
    (void)param;
    *dl = 1;
    return logp;
}

double mu_seq_logprob(const float *logits, const int32_t *labels, int T, int V, int *n_out) {
    row_ctx c = {.tok = tok_logp};
    if (n_out) *n_out = mu_count_labels(labels, T);
    return over_rows(logits, labels, T, V, row_tok, &c, NULL);
}

void mu_seq_logprob_grad(const float *logits, const int32_t *labels, int T, int V,
                         double coef, float *dlogits) {
    row_ctx c = {.coef = coef, .tok = tok_logp};
    over_rows(logits, labels, T, V, row_tok, &c, dlogits);
}

void mu_ref_logp_rows(const float *logits, const int32_t *labels, int T, int V, float *out) {
    for (int t = 0; t < T; t++) {
        if (labels[t] < 0) continue;
        const float *z = logits + (size_t)t * V;
        double lse = mu_logsumexp(z, V);
        for (int j = 0; j < V; j++) out[j] = (float)(z[j] - lse);
        out += V;
    }
}

void mu_ref_logit_rows(const float *logits, const int32_t *labels, int T, int V, float *out) {
    for (int t = 0; t < T; t++) {
        if (labels[t] < 0) continue;
        const float *z = logits + (size_t)t * V;
        for (int j = 0; j < V; j++) out[j] = z[j];
        out += V;
    }
}

double mu_npo_loss(double s, double s_ref, double beta, double *dL_ds) {
    double x = -beta * (s - s_ref);
    if (dL_ds) *dL_ds = 2.0 * sigmoid(-x);
    return -(2.0 / beta) * mu_log_sigmoid(x);
}

double mu_simnpo_loss(double s, int n, double beta, double delta, double *dL_ds) {
    double a = (n > 0 ? -s / n : 0) - delta;    /* mean NLL minus the margin */
    double x = beta * a;
    if (dL_ds) *dL_ds = n > 0 ? 2.0 * sigmoid(-x) / n : 0;
    return -(2.0 / beta) * mu_log_sigmoid(x);
}

double mu_dpo_loss(double w, double w_ref, double l, double l_ref, double beta,
                   double *dL_dw, double *dL_dl) {
    double x = beta * ((w - w_ref) - (l - l_ref));
    double g = 2.0 * sigmoid(-x);
    if (dL_dw) *dL_dw = -g;
    if (dL_dl) *dL_dl = g;
    return -(2.0 / beta) * mu_log_sigmoid(x);
}

double mu_obj_npo(const float *logits, const int32_t *labels, int T, int V, double s_ref,
                  double beta, double coef, float *dlogits) {
    double g, s = mu_seq_logprob(logits, labels, T, V, NULL);
    double loss = mu_npo_loss(s, s_ref, beta, &g);
    if (dlogits) mu_seq_logprob_grad(logits, labels, T, V, coef * g, dlogits);
    return loss;
}

double mu_obj_simnpo(const float *logits, const int32_t *labels, int T, int V, double beta,
                     double delta, double coef, float *dlogits) {
    int n;
    double g, s = mu_seq_logprob(logits, labels, T, V, &n);
    double loss = mu_simnpo_loss(s, n, beta, delta, &g);
    if (dlogits) mu_seq_logprob_grad(logits, labels, T, V, coef * g, dlogits);
    return loss;
}

double mu_obj_dpo(const float *wlogits, const int32_t *wlabels, int wT, double w_ref,
                  const float *logits, const int32_t *labels, int T, double l_ref, int V,
                  double beta, double coef, float *dwlogits, float *dlogits) {
    double gw, gl;
    double w = mu_seq_logprob(wlogits, wlabels, wT, V, NULL);
    double l = mu_seq_logprob(logits, labels, T, V, NULL);
    double loss = mu_dpo_loss(w, w_ref, l, l_ref, beta, &gw, &gl);
    if (dwlogits) mu_seq_logprob_grad(wlogits, wlabels, wT, V, coef * gw, dwlogits);
    if (dlogits) mu_seq_logprob_grad(logits, labels, T, V, coef * gl, dlogits);
    return loss;
}

/* ---- activations ---- */

double mu_obj_mse(const float *x, const float *target, const float *cvec, int D, int64_t n,
                  double coef, float *dx) {
    if (n <= 0) return 0;
    double acc = 0, g = 2.0 * coef / (double)n;
    for (int64_t i = 0; i < n; i++) {
        double tv = target ? target[i] : cvec[i % D];
        double diff = (double)x[i] - tv;
        acc += diff * diff;
        if (dx) dx[i] += (float)(g * diff);
    }
    return acc / (double)n;
}

void mu_rmu_control(float *out, int D, double c, uint64_t seed) {
    mu_rng r;
    mu_rng_seed2(&r, seed, 0x524d55 /* "RMU" */);
    double ss = 0;
    for (int i = 0; i < D; i++) {
        out[i] = (float)mu_rng_uniform(&r);
        ss += (double)out[i] * out[i];
    }
    double k = c / sqrt(ss > 0 ? ss : 1);
    for (int i = 0; i < D; i++) out[i] = (float)(out[i] * k);
}
