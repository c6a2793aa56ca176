/* metrics.c — per-record metrics over the fields of "outputs" records. Definitions
 * follow the papers' reference code: TOFU (Maini et al. 2024, aggregate_stat_eval.py),
 * open-unlearning (memorization.py, mia/ attacks), Guo et al. 2024 (choice probability). */
#include "metrics.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <utf8proc.h>

int mu_choice_argmax(const float *lp, int k) {
    if (k <= 0) return -1;
    int best = 0;
    for (int i = 1; i < k; i++) if (lp[i] > lp[best] || (isnan(lp[i]) && !isnan(lp[best]))) best = i;
    return best;
}

/* log(sum_j exp(v[j])) with the max subtracted. */
static double logsumexp(const double *v, int k) {
    double m = -INFINITY;
    for (int i = 0; i < k; i++) if (v[i] > m) m = v[i];
    if (isinf(m)) return m;
    double s = 0;
    for (int i = 0; i < k; i++) s += exp(v[i] - m);
    return m + log(s);
}

/* exp(v[ans]) / sum_j exp(v[j]) computed stably. */
static double softmax_at(const double *v, int k, int ans) {
    double l = logsumexp(v, k);
    if (isinf(l) && l < 0) return NAN; /* every candidate has probability 0 */
    return exp(v[ans] - l);
}

double mu_choice_prob(const float *lp, int k, int ans) {
    if (k <= 0 || ans < 0 || ans >= k) return NAN;
    double *v = malloc((size_t)k * sizeof *v);
    for (int i = 0; i < k; i++) v[i] = lp[i];
    double p = softmax_at(v, k, ans);
    free(v);
    return p;
}

double mu_choice_prob_lennorm(const float *lp, const int32_t *ntok, int k, int ans) {
    if (k <= 0 || ans < 0 || ans >= k) return NAN;
    double *v = malloc((size_t)k * sizeof *v);
    for (int i = 0; i < k; i++) v[i] = ntok[i] > 0 ? (double)lp[i] / ntok[i] : NAN;
    double p = softmax_at(v, k, ans);
    free(v);
    return p;
}

double mu_truth_ratio(const float *lp, const int32_t *ntok, int k, int ans) {
    if (k < 2 || ans < 0 || ans >= k) return NAN;
    double s = 0;
    for (int i = 0; i < k; i++) {
        if (ntok[i] <= 0) return NAN;
        if (i != ans) s += (double)lp[i] / ntok[i];
    }
    return exp(s / (k - 1) - (double)lp[ans] / ntok[ans]);
}

double mu_option_prob(double true_mean_lp, const float *lp, const int32_t *ntok, int k, int ans) {
    if (k <= 0 || ans < 0 || ans >= k) return NAN;
    double *v = malloc((size_t)k * sizeof *v);
    v[0] = true_mean_lp;
    int n = 1;
    for (int i = 0; i < k; i++) {
        if (i == ans) continue;
        v[n++] = ntok[i] > 0 ? (double)lp[i] / ntok[i] : NAN;
    }
    double p = softmax_at(v, n, 0);
    free(v);
    return p;
}

double mu_truth_ratio_forget_stat(const double *r, size_t n) {
    if (n == 0) return NAN;
    double s = 0;
    for (size_t i = 0; i < n; i++) s += fmin(r[i], 1.0 / (r[i] + 1e-10));
    return s / n;
}

double mu_truth_ratio_retain_stat(const double *r, size_t n) {
    if (n == 0) return NAN;
    double s = 0;
    for (size_t i = 0; i < n; i++) s += fmax(0.0, 1.0 - r[i]);
    return s / n;
}

double mu_sum(const float *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += x[i];
    return s;
}

double mu_mean(const float *x, size_t n) { return n ? mu_sum(x, n) / n : NAN; }

double mu_exact_memorization(const int32_t *ranks, size_t m) {
    if (m == 0) return NAN;
    size_t hit = 0;
    for (size_t i = 0; i < m; i++) hit += ranks[i] == 0;
    return (double)hit / m;
}

double mu_extraction_strength(const int32_t *ranks, size_t m) {
    if (m == 0) return NAN;
    /* smallest k with ranks[k..m) all zero; open-unlearning's loop leaves k = m-1
     * when even the last token is missed */
    size_t k = m;
    while (k > 0 && ranks[k - 1] == 0) k--;
    if (k == m) k = m - 1;
    return 1.0 - (double)k / m;
}

/* Python's str.isspace() for one code point: general category Zs, or bidirectional
 * class WS, B or S. */
static int py_space(utf8proc_int32_t cp) {
    const utf8proc_property_t *p = utf8proc_get_property(cp);
    return p->category == UTF8PROC_CATEGORY_ZS || p->bidi_class == UTF8PROC_BIDI_CLASS_WS ||
           p->bidi_class == UTF8PROC_BIDI_CLASS_B || p->bidi_class == UTF8PROC_BIDI_CLASS_S;
}

/* Span of s without leading/trailing whitespace, as Python's str.strip(). Invalid
 * UTF-8 bytes count as non-space. */
static void strip_span(const char *s, const char **b, size_t *n) {
    const utf8proc_uint8_t *u = (const utf8proc_uint8_t *)s;
    size_t len = strlen(s), i = 0, end = 0;
    int seen = 0;
    while (i < len) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t l = utf8proc_iterate(u + i, (utf8proc_ssize_t)(len - i), &cp);
        if (l <= 0) { l = 1; cp = -1; }
        int sp = cp >= 0 && py_space(cp);
        if (!sp) { if (!seen) { *b = s + i; seen = 1; } end = i + (size_t)l; }
        i += (size_t)l;
    }
    if (!seen) { *b = s; *n = 0; return; }
    *n = end - (size_t)(*b - s);
}

int mu_exact_match(const char *generation, const char *target) {
    const char *a, *b; size_t na, nb;
    strip_span(generation, &a, &na);
    strip_span(target, &b, &nb);
    return na == nb && memcmp(a, b, na) == 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* -mean of the max(1, floor(m*k)) smallest of v (sorted in place). */
static double neg_mean_lowest(double *v, size_t m, double k) {
    size_t num = (size_t)((double)m * k);
    if (num < 1) num = 1;
    if (num > m) num = m;
    qsort(v, m, sizeof *v, cmp_double);
    double s = 0;
    for (size_t i = 0; i < num; i++) s += v[i];
    return -s / num;
}

double mu_min_k(const float *lp, size_t m, double k) {
    if (m == 0) return 0; /* open-unlearning scores an empty target 0 */
    double *v = malloc(m * sizeof *v);
    for (size_t i = 0; i < m; i++) v[i] = lp[i];
    double r = neg_mean_lowest(v, m, k);
    free(v);
    return r;
}

double mu_min_k_pp(const float *lp, const float *mu, const float *sigma, size_t m, double k) {
    if (m == 0) return 0;
    double *v = malloc(m * sizeof *v);
    for (size_t i = 0; i < m; i++) {
        double var = (double)sigma[i] * sigma[i];
        if (var < 1e-6) var = 1e-6;
        v[i] = ((double)lp[i] - mu[i]) / sqrt(var);
    }
    double r = neg_mean_lowest(v, m, k);
    free(v);
    return r;
}

long mu_zlib_length(const char *text, size_t len) {
    uLongf cap = compressBound((uLong)len);
    Bytef *buf = malloc(cap ? cap : 1);
    if (!buf) return -1;
    int rc = compress2(buf, &cap, (const Bytef *)text, (uLong)len, Z_DEFAULT_COMPRESSION);
    free(buf);
    return rc == Z_OK ? (long)cap : -1;
}

double mu_zlib_score(double mean_nll, const char *text, size_t len) {
    long z = mu_zlib_length(text, len);
    return z > 0 ? mean_nll / (double)z : NAN;
}
