/* objectives.c — losses and their gradients on logits / activations (see objectives.h). */
#include "objectives.h"
#include "rng.h"
#include <math.h>

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

/* ---- token-level ---- */

double mu_obj_ce(const float *logits, const int32_t *labels, int T, int V,
                 double coef, float *dlogits) {
    double loss = 0;
    for (int t = 0; t < T; t++) {
        if (labels[t] < 0) continue;
        const float *z = logits + (size_t)t * V;
        double lse = mu_logsumexp(z, V);
        loss += lse - z[labels[t]];
        if (dlogits) add_logp_grad(z, V, lse, labels[t], -coef, dlogits + (size_t)t * V);
    }
    return loss;
}

double mu_obj_log1mp(const float *logits, const int32_t *labels, int T, int V,
                     double floor, double coef, float *dlogits) {
    double loss = 0;
    for (int t = 0; t < T; t++) {
        if (labels[t] < 0) continue;
        const float *z = logits + (size_t)t * V;
        double lse = mu_logsumexp(z, V);
        double logp = z[labels[t]] - lse;
        if (logp < floor) continue;
        double one_minus_p = -expm1(logp);
        if (one_minus_p < 1e-12) one_minus_p = 1e-12;
        loss += -log(one_minus_p);
        /* d(-log(1-p))/dz = p/(1-p) * (e_y - p_vec) */
        if (dlogits) add_logp_grad(z, V, lse, labels[t], coef * exp(logp) / one_minus_p,
                                   dlogits + (size_t)t * V);
    }
    return loss;
}

double mu_obj_wga(const float *logits, const int32_t *labels, int T, int V,
                  double beta, double coef, float *dlogits) {
    double loss = 0;
    for (int t = 0; t < T; t++) {
        if (labels[t] < 0) continue;
        const float *z = logits + (size_t)t * V;
        double lse = mu_logsumexp(z, V);
        double logp = z[labels[t]] - lse;
        double w = exp(beta * logp);          /* p^beta, treated as a constant */
        loss += w * logp;                     /* -w * CE = w * log p */
        if (dlogits) add_logp_grad(z, V, lse, labels[t], coef * w, dlogits + (size_t)t * V);
    }
    return loss;
}

double mu_obj_undial(const float *logits, const int32_t *labels, int T, int V,
                     const float *ref_logits, double beta, double coef, float *dlogits) {
    double loss = 0;
    int k = 0;
    for (int t = 0; t < T; t++) {
        if (labels[t] < 0) continue;
        const float *z = logits + (size_t)t * V;
        const float *r = ref_logits + (size_t)k++ * V;
        int y = labels[t];
        /* q = softmax(r - beta e_y), computed with the shift in double */
        double mx = -INFINITY;
        for (int j = 0; j < V; j++) {
            double a = r[j] - (j == y ? beta : 0);
            if (a > mx) mx = a;
        }
        double qs = 0;
        for (int j = 0; j < V; j++) qs += exp(r[j] - (j == y ? beta : 0) - mx);
        double lq = mx + log(qs);
        double lse = mu_logsumexp(z, V);
        float *d = dlogits ? dlogits + (size_t)t * V : NULL;
        for (int j = 0; j < V; j++) {
            double q = exp(r[j] - (j == y ? beta : 0) - lq);
            double logp = z[j] - lse;
            loss -= q * logp;
            if (d) d[j] += (float)(coef * (exp(logp) - q));  /* d/dz: p - q */
        }
    }
    return loss;
}

double mu_obj_kl(const float *logits, const int32_t *labels, int T, int V,
                 const float *ref_logp, double coef, float *dlogits) {
    double loss = 0;
    int k = 0;
    for (int t = 0; t < T; t++) {
        if (labels[t] < 0) continue;
        const float *z = logits + (size_t)t * V;
        const float *lr = ref_logp + (size_t)k++ * V;
        double lse = mu_logsumexp(z, V);
        float *d = dlogits ? dlogits + (size_t)t * V : NULL;
        for (int j = 0; j < V; j++) {
            double r = exp((double)lr[j]);
            double logp = z[j] - lse;
            if (r > 0) loss += r * (lr[j] - logp);
            if (d) d[j] += (float)(coef * (exp(logp) - r));   /* d/dz: p - r */
        }
    }
    return loss;
}

/* ---- sequence-level ---- */

double mu_seq_logprob(const float *logits, const int32_t *labels, int T, int V, int *n_out) {
    double s = 0;
    int n = 0;
    for (int t = 0; t < T; t++) {
        if (labels[t] < 0) continue;
        const float *z = logits + (size_t)t * V;
        s += z[labels[t]] - mu_logsumexp(z, V);
        n++;
    }
    if (n_out) *n_out = n;
    return s;
}

void mu_seq_logprob_grad(const float *logits, const int32_t *labels, int T, int V,
                         double coef, float *dlogits) {
    for (int t = 0; t < T; t++) {
        if (labels[t] < 0) continue;
        const float *z = logits + (size_t)t * V;
        add_logp_grad(z, V, mu_logsumexp(z, V), labels[t], coef, dlogits + (size_t)t * V);
    }
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
