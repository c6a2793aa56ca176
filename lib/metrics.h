/* metrics.h — evaluation metrics for unlearning/editing: pure functions over the
 * fields of "outputs" records (see man/mu-stream.5) and over per-record values.
 *
 * Per-record metrics (one value per record, averaged over a group by mu-score):
 *   choice accuracy, renormalized choice probability (Mechanistic Unlearning),
 *   length-normalized option probability and truth ratio (TOFU), target
 *   probability, exact match, extraction strength and exact memorization
 *   (open-unlearning), membership-inference scores (LOSS, ZLib, Min-K%, Min-K%++).
 * Group statistics: harmonic mean, ROC AUC (sklearn), two-sample KS test (scipy),
 *   removal–retention curve summaries (AUES, MU95).
 * Text: ROUGE-1/ROUGE-L exactly as Google's rouge_score (with its Porter stemmer,
 *   nltk's NLTK_EXTENSIONS mode).
 * All functions are pure; none exits. Invalid arguments give NaN or -1. */
#ifndef MU_METRICS_H
#define MU_METRICS_H
#include <stddef.h>
#include <stdint.h>

/* ---- choices: lp[k] = summed log-prob of candidate k, ntok[k] its token count ---- */
/* Index of the largest lp (first one on ties, like numpy.argmax); -1 if k <= 0. */
int mu_choice_argmax(const float *lp, int k);
/* exp(lp[ans]) / sum_j exp(lp[j]) — the continuous accuracy of Guo et al. 2024. */
double mu_choice_prob(const float *lp, int k, int ans);
/* Length-normalized: p_j = exp(lp[j]/ntok[j]); returns p_ans / sum_j p_j. */
double mu_choice_prob_lennorm(const float *lp, const int32_t *ntok, int k, int ans);
/* TOFU truth ratio R = P(perturbed) / P(paraphrased) with per-token normalized
 * probabilities; the perturbed ones are averaged in log space as TOFU does:
 * R = exp(mean_{j != ans}(lp[j]/ntok[j]) - lp[ans]/ntok[ans]). NaN if k < 2. */
double mu_truth_ratio(const float *lp, const int32_t *ntok, int k, int ans);
/* TOFU "Prob." on real authors / world facts (probability_w_options): the true answer's
 * normalized probability exp(true_mean_lp) against the perturbed candidates:
 * p_true / (p_true + sum_{j != ans} exp(lp[j]/ntok[j])). */
double mu_option_prob(double true_mean_lp, const float *lp, const int32_t *ntok, int k, int ans);
/* Statistics TOFU reports from a group of truth ratios (arrays of R):
 *   forget sets: mean(min(R, 1/R))  ("closer to 1 is better");
 *   other sets:  mean(max(0, 1 - R)) ("true is better"). */
double mu_truth_ratio_forget_stat(const double *r, size_t n);
double mu_truth_ratio_retain_stat(const double *r, size_t n);

/* ---- token log-probs ---- */
double mu_sum(const float *x, size_t n);            /* double-precision sum */
double mu_mean(const float *x, size_t n);           /* NaN if n == 0 */
/* Fraction of target tokens predicted by argmax (rank 0). NaN if m == 0. */
double mu_exact_memorization(const int32_t *ranks, size_t m);
/* open-unlearning's extraction strength: 1 - k/m with k the smallest index such that
 * every target token from k on is the argmax (k = m-1 when none is). NaN if m == 0. */
double mu_extraction_strength(const int32_t *ranks, size_t m);
/* 1 if generation and target are equal after stripping surrounding whitespace. */
int mu_exact_match(const char *generation, const char *target);

/* ---- membership inference (higher score = less likely a member, like a loss) ---- */
/* Min-K%: -mean of the max(1, floor(m*k)) smallest log-probs. */
double mu_min_k(const float *lp, size_t m, double k);
/* Min-K%++: token scores (lp - mu)/sqrt(max(var, 1e-6)) where var = sigma^2 is the
 * variance of log p over the vocabulary; -mean of the k-fraction lowest. */
double mu_min_k_pp(const float *lp, const float *mu, const float *sigma, size_t m, double k);
/* Length of zlib.compress(text) (level 6, as Python's default); -1 on error. */
long mu_zlib_length(const char *text, size_t len);
/* ZLib score: mean NLL / zlib length of the text (Carlini et al. 2021). */
double mu_zlib_score(double mean_nll, const char *text, size_t len);

/* ---- group statistics ---- */
/* Harmonic mean (scipy.stats.hmean): 0 if any value is 0; NaN if any is < 0 or n == 0. */
double mu_hmean(const double *x, size_t n);
/* ROC AUC exactly as sklearn.metrics.roc_auc_score for binary labels (0/1): the
 * Mann–Whitney statistic with tied scores counted one half. NaN if a class is empty. */
double mu_roc_auc(const double *score, const int *label, size_t n);
/* Two-sample two-sided Kolmogorov–Smirnov test as scipy.stats.ks_2samp(method='auto'):
 * exact p-value when max(n1, n2) <= 10000 (falling back to the asymptotic one when
 * the exact computation overflows), else kstwo.sf(D, round(n1*n2/(n1+n2))).
 * Returns 0 (ok) or -1 (empty sample or NaN value). *exact tells which branch ran. */
int mu_ks_2samp(const double *a, size_t na, const double *b, size_t nb,
                double *statistic, double *pvalue, int *exact);
/* The pieces, exposed for tests: */
double mu_ks_prob_outside_square(long n, long h);           /* n1 == n2 */
double mu_ks_outer_prob_inside(long m, long n, long g, long h); /* n1 != n2 */
double mu_kolmogorov_sf(long n, double x);                  /* scipy kstwo.sf(x, n) */
double mu_smirnov_sf(long n, double x);                     /* scipy.special.smirnov */

/* ---- confidence intervals of a group's mean (lib/ci.c) ---- */
/* Quantiles (scipy.stats.norm.ppf, scipy.stats.t.ppf) and Student's t CDF (t.cdf). */
double mu_norm_ppf(double p);
double mu_t_ppf(double p, double df);
double mu_t_cdf(double t, double df);
/* Student t interval of a mean at confidence level (e.g. 0.95), as
 * scipy.stats.t.interval(level, n - 1, mean, sd / sqrt(n)) with sd the sample standard
 * deviation (ddof 1); NaN when n < 2. */
void mu_ci_mean(double mean, double sd, long n, double level, double *lo, double *hi);
/* Wilson score interval of a proportion k / n, as statsmodels'
 * proportion_confint(k, n, 1 - level, method='wilson'); NaN when n < 1. */
void mu_ci_wilson(double k, long n, double level, double *lo, double *hi);

/* ---- paired tests: two models on the same records (mu-score --paired) ---- */
/* Interval of the difference p_a - p_b of two 0/1 values on the same records: n11 right
 * under both, b only under a, c only under b, n00 under neither. Newcombe's hybrid score
 * interval (his method 10, Stat Med 1998;17:2635): Wilson intervals of p_a and p_b at
 * level, squared and added with their correlation phi (continuity-corrected, 0 when a
 * margin is empty), as Fagerland, Lydersen and Laake's Newcombe_square_and_add_CI_paired_2x2;
 * NaN when n < 1. */
void mu_ci_paired_diff(long n11, long b, long c, long n00, double level, double *lo, double *hi);
/* McNemar's exact test of b records right only under the first model and c only under the
 * second: two-sided binomial p = min(1, 2 P(X <= min(b, c))), X ~ Bin(b + c, 1/2), as
 * statsmodels' mcnemar([[., b], [c, .]], exact=True).pvalue. */
double mu_mcnemar_exact_p(long b, long c);
/* Paired t-test of n per-record differences with mean and sample standard deviation sd
 * (ddof 1, as mu_ci_mean takes them): two-sided p of t = mean / (sd / sqrt(n)) with n - 1
 * degrees of freedom, as scipy.stats.ttest_rel; NaN when n < 2 or every difference is 0,
 * 0 when all are one nonzero value (sd 0). */
double mu_ttest_rel_p(double mean, double sd, long n);

/* ---- removal–retention curves over a sweep (see mu-score(1) for the definitions) ---- */
typedef struct { double forget, retain; } mu_curve_point;
/* Area under the retention–removal curve. Each run i gives forget strength
 * x_i = clip((f0 - f_i)/f0, 0, 1) (fraction of the original forget score removed) and
 * retention y_i = clip(r_i / r0, 0, 1); with the original model (0, 1) the points are
 * sorted by x and the trapezoid area is taken over [0, max x]. In [0, 1]. */
double mu_aues(const mu_curve_point *runs, size_t n, double f0, double r0);
/* MU95: best (largest) forget quality among runs whose utility >= 0.95 * u0; with
 * interp, runs are sorted by utility and the forget quality is also linearly
 * interpolated at utility exactly 0.95*u0 between neighbours straddling it.
 * NaN if no run qualifies. quality[i], utility[i] per run. */
double mu_mu95(const double *quality, const double *utility, size_t n, double u0, int interp);

/* ---- ROUGE (rouge_score.rouge_scorer.RougeScorer) ---- */
typedef struct { double precision, recall, fmeasure; } mu_rouge;
/* Tokens as rouge_score's tokenize: lowercase, non-[a-z0-9] -> space, split,
 * stem (Porter, NLTK_EXTENSIONS) tokens longer than 3 when stem != 0.
 * Returns the count (tokens malloc'd into *out, free with mu_rouge_free_tokens),
 * or -1 on invalid UTF-8. */
int mu_rouge_tokenize(const char *text, int stem, char ***out);
void mu_rouge_free_tokens(char **tok, int n);
/* score(target, prediction); 0 ok, -1 invalid UTF-8 in either. */
int mu_rouge_l(const char *target, const char *prediction, int stem, mu_rouge *out);
int mu_rouge_1(const char *target, const char *prediction, int stem, mu_rouge *out);
/* nltk.stem.porter.PorterStemmer().stem(word) for a lowercase ASCII word; returns a
 * malloc'd string. */
char *mu_porter_stem(const char *word);
#endif
