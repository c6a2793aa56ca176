/* objectives.h — training objectives as functions of logits (and of activations), each
 * a loss plus its exact gradient. Used by mu-train; documented with formulas in
 * man/mu-train.1. Formulas follow the open-unlearning reference implementations.
 *
 * Layout: one sequence (a batch row) at a time. logits [T, V] (f32, row t predicts the
 * token at t+1); labels [T]: the target token of row t, or -1 where there is none (prompt,
 * padding). "Labeled positions" are the rows with labels >= 0, in increasing t.
 * Token-level functions return the SUM over labeled positions of the per-token loss and,
 * when dlogits is not NULL, ADD coef * d(sum)/d(logits) into dlogits [T, V]. The caller
 * divides (coef = weight / tokens in the batch) to get a mean. Internals are in double.
 *
 * Notation: p_t = softmax(z_t), y_t = labels[t], s = sum_t log p_t(y_t) (sequence log-prob),
 * n = number of labeled positions, sigma = logistic function. */
#ifndef MU_OBJECTIVES_H
#define MU_OBJECTIVES_H
#include <stddef.h>
#include <stdint.h>

/* log sum_j exp(z_j) of one row of V logits (double, max-shifted). */
double mu_logsumexp(const float *z, int V);
/* Number of labeled positions in labels [T]. */
int mu_count_labels(const int32_t *labels, int T);

/* ---- token-level objectives ---------------------------------------------------------- */
/* Each as a function of one labeled row's target log-probability logp = log p_t(y_t): the
 * row's loss, and *dl = d loss / d logp. (With the backend's target_logprob and logp_grad the
 * trainer then never needs the logits on the host; the mu_obj_* below apply the same
 * functions to host logits.) */
double mu_tok_ce(double logp, double *dl);                    /* -logp */
double mu_tok_log1mp(double logp, double floor, double *dl);  /* -log(1-p), 0 below floor */
double mu_tok_wga(double logp, double beta, double *dl);      /* p^beta logp, p^beta detached */
/* p^beta1 (1-p)^beta2 logp, the weight detached */
double mu_tok_satimp(double logp, double beta1, double beta2, double *dl);

/* Cross-entropy  sum_t -log p_t(y_t).  learn, edit, retain-ce, general-lm; ga and
 * graddiff use it with a negative coef. */
double mu_obj_ce(const float *logits, const int32_t *labels, int T, int V,
                 double coef, float *dlogits);
/* log1mp (Mechanistic Unlearning):  sum_t -log(1 - p_t(y_t)) over positions with
 * log p_t(y_t) >= floor (others contribute 0 and no gradient). 1-p is computed as
 * -expm1(log p) and floored at 1e-12. */
double mu_obj_log1mp(const float *logits, const int32_t *labels, int T, int V,
                     double floor, double coef, float *dlogits);
/* WGA (weighted gradient ascent):  sum_t -w_t * CE_t with w_t = p_t(y_t)^beta held
 * constant (detached), as open-unlearning's compute_wga_loss. */
double mu_obj_wga(const float *logits, const int32_t *labels, int T, int V,
                  double beta, double coef, float *dlogits);
/* SatImp (saturation and importance reweighting, Yang et al. 2025):  sum_t -w_t * CE_t with
 * w_t = p_t^beta1 (1 - p_t)^beta2 held constant, as open-unlearning's compute_satimp_loss. */
double mu_obj_satimp(const float *logits, const int32_t *labels, int T, int V,
                     double beta1, double beta2, double coef, float *dlogits);
/* ME (maximum entropy, Yuan et al. 2024):  sum_t KL(p_t || uniform) = sum_t (sum_j p_tj
 * log p_tj + log V) over the labeled positions (the targets themselves are not read). */
double mu_obj_me(const float *logits, const int32_t *labels, int T, int V, double coef, float *dlogits);
/* UNDIAL (self-distillation with adjusted logits): target q_t = softmax(r_t - beta*e_{y_t})
 * from the reference model's logits r_t; loss sum_t -sum_j q_tj log p_tj.
 * ref_logits: [n, V], one row per labeled position, in order. */
double mu_obj_undial(const float *logits, const int32_t *labels, int T, int V,
                     const float *ref_logits, double beta, double coef, float *dlogits);
/* retain-kl:  sum_t KL(ref_t || p_t) = sum_t sum_j r_tj (log r_tj - log p_tj).
 * ref_logp: [n, V] reference log-probabilities, one row per labeled position. */
double mu_obj_kl(const float *logits, const int32_t *labels, int T, int V,
                 const float *ref_logp, double coef, float *dlogits);

/* ---- sequence log-probs and sequence-level objectives -------------------------------- */
/* s = sum over labeled positions of log p_t(y_t); *n_out (may be NULL) = n. */
double mu_seq_logprob(const float *logits, const int32_t *labels, int T, int V, int *n_out);
/* dlogits += coef * ds/dlogits  (= coef * (e_{y_t} - p_t) at labeled rows). */
void mu_seq_logprob_grad(const float *logits, const int32_t *labels, int T, int V,
                         double coef, float *dlogits);
/* Reference log-probs [n, V] of the labeled rows (for retain-kl caching). */
void mu_ref_logp_rows(const float *logits, const int32_t *labels, int T, int V, float *out);
/* Copies the labeled rows' logits [n, V] (for undial caching). */
void mu_ref_logit_rows(const float *logits, const int32_t *labels, int T, int V, float *out);

/* NPO:    L = -(2/beta) log sigma(-beta (s - s_ref));        dL/ds = 2 sigma(beta (s - s_ref)) */
double mu_npo_loss(double s, double s_ref, double beta, double *dL_ds);
/* SimNPO: L = -(2/beta) log sigma(beta (-s/n - delta));      dL/ds = 2 sigma(-beta(-s/n - delta)) / n */
double mu_simnpo_loss(double s, int n, double beta, double delta, double *dL_ds);
/* DPO with w = preferred (alternative) answer, l = forget answer:
 *   L = -(2/beta) log sigma(beta ((w - w_ref) - (l - l_ref)))
 *   dL/dw = -2 sigma(-x), dL/dl = +2 sigma(-x), x = beta((w - w_ref) - (l - l_ref)). */
double mu_dpo_loss(double w, double w_ref, double l, double l_ref, double beta,
                   double *dL_dw, double *dL_dl);

/* The same applied to one sequence's logits: return the loss of the row and add
 * coef * dL/dlogits (dlogits may be NULL). s_ref etc. come from the reference model. */
double mu_obj_npo(const float *logits, const int32_t *labels, int T, int V, double s_ref,
                  double beta, double coef, float *dlogits);
double mu_obj_simnpo(const float *logits, const int32_t *labels, int T, int V, double beta,
                     double delta, double coef, float *dlogits);
/* w*: the preferred answer's row (its own T, labels); l*: the forget answer's row. */
double mu_obj_dpo(const float *wlogits, const int32_t *wlabels, int wT, double w_ref,
                  const float *logits, const int32_t *labels, int T, double l_ref, int V,
                  double beta, double coef, float *dwlogits, float *dlogits);

/* ---- activation objectives (rmu, mlp-l2) --------------------------------------------- */
/* Mean squared error over n values: L = (1/n) sum_i (x_i - target_i)^2; target NULL means
 * the constant vector `cvec` of width D repeated (x is [n/D, D]); dx += coef * dL/dx
 * when dx is not NULL. */
double mu_obj_mse(const float *x, const float *target, const float *cvec, int D, int64_t n,
                  double coef, float *dx);
/* RMU's control vector: c * u, u uniform in [0,1)^D (seeded) normalized to unit length,
 * as in the WMDP reference implementation. */
void mu_rmu_control(float *out, int D, double c, uint64_t seed);

/* log sigma(x), numerically stable. */
double mu_log_sigmoid(double x);
#endif
