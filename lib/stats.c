/* stats.c — group statistics: harmonic mean, ROC AUC (as sklearn), the two-sample
 * Kolmogorov–Smirnov test (as scipy.stats.ks_2samp, method='auto', two-sided) with the
 * one-sample Kolmogorov distribution it falls back on (scipy.stats.kstwo.sf), and the
 * removal–retention curve summaries AUES and MU95. */
#include "metrics.h"
#include <math.h>
#include <fenv.h>
#include <stdlib.h>
#include <string.h>

double mu_hmean(const double *x, size_t n) {
    if (n == 0) return NAN;
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(x[i] >= 0)) return NAN;
        if (x[i] == 0) return 0;
        s += 1.0 / x[i];
    }
    return (double)n / s;
}

/* ---------------- ROC AUC ---------------- */

typedef struct { double v; int label; } scored;
static int cmp_scored(const void *a, const void *b) {
    double x = ((const scored *)a)->v, y = ((const scored *)b)->v;
    return (x > y) - (x < y);
}

/* AUC = (sum of average ranks of positives - n1(n1+1)/2) / (n1 n0): identical to the
 * trapezoidal area under sklearn's ROC curve (ties give diagonal segments). */
double mu_roc_auc(const double *score, const int *label, size_t n) {
    scored *s = malloc((n ? n : 1) * sizeof *s);
    size_t npos = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(score[i])) { free(s); return NAN; }
        s[i].v = score[i]; s[i].label = label[i] != 0; npos += s[i].label;
    }
    size_t nneg = n - npos;
    if (npos == 0 || nneg == 0) { free(s); return NAN; }
    qsort(s, n, sizeof *s, cmp_scored);
    double rank_sum = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && s[j].v == s[i].v) j++;
        double avg = (double)(i + 1 + j) / 2.0; /* ranks i+1..j */
        for (size_t k = i; k < j; k++) if (s[k].label) rank_sum += avg;
        i = j;
    }
    free(s);
    return (rank_sum - (double)npos * (npos + 1) / 2.0) / ((double)npos * nneg);
}

/* ---------------- Kolmogorov–Smirnov ---------------- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Pr(D_{n,n} >= h/n), Horner-like alternating sum (scipy _compute_prob_outside_square). */
double mu_ks_prob_outside_square(long n, long h) {
    double P = 0.0;
    long k = (long)floor((double)n / (double)h);
    while (k >= 0) {
        double p1 = 1.0;
        for (long j = 0; j < h; j++)
            p1 = (double)(n - k * h - j) * p1 / (double)(n + k * h + j + 1);
        P = p1 * (1.0 - P);
        k--;
    }
    return 2 * P;
}

/* Proportion of lattice paths (0,0)->(m,n) not staying strictly inside
 * |x/m - y/n| < h/lcm (Hodges' inside method computing 1-p directly, Viehmann 2021),
 * as scipy's _compute_outer_prob_inside_method. */
double mu_ks_outer_prob_inside(long m, long n, long g, long h) {
    if (m < n) { long t = m; m = n; n = t; }
    long mg = m / g, ng = n / g;
    long minj = 0, maxj = (long)ceil((double)h / (double)mg);
    if (maxj > n + 1) maxj = n + 1;
    long curlen = maxj - minj;
    long lenA = 2 * maxj + 2 < n + 1 ? 2 * maxj + 2 : n + 1;
    double *A = malloc((size_t)(lenA > 0 ? lenA : 1) * sizeof *A);
    for (long j = 0; j < lenA; j++) A[j] = 1.0;
    for (long j = minj; j < maxj && j < lenA; j++) A[j] = 0.0;
    for (long i = 1; i <= m; i++) {
        long lastminj = minj, lastlen = curlen;
        minj = (long)floor((double)(ng * i - h) / (double)mg) + 1;
        if (minj < 0) minj = 0;
        if (minj > n) minj = n;
        maxj = (long)ceil((double)(ng * i + h) / (double)mg);
        if (maxj > n + 1) maxj = n + 1;
        if (maxj <= minj) { free(A); return 1.0; }
        double val = minj == 0 ? 0.0 : 1.0;
        for (long jj = 0; jj < maxj - minj; jj++) {
            long j = jj + minj;
            val = (A[jj + minj - lastminj] * (double)i + val * (double)j) / (double)(i + j);
            A[jj] = val;
        }
        curlen = maxj - minj;
        if (lastlen > curlen)
            for (long t = maxj - minj; t < maxj - minj + (lastlen - curlen) && t < lenA; t++) A[t] = 1.0;
    }
    double r = A[maxj - minj - 1];
    free(A);
    return r;
}

static double clip01(double p) { return p < 0 ? 0 : p > 1 ? 1 : p; }

/* log(n!/n^n) by Stirling's series (scipy _log_nfactorial_div_n_pow_n). */
static double log_nfact_div_npown(double n) {
    static const double c[] = {-2.955065359477124183e-2, 6.4102564102564102564e-3,
                               -1.9175269175269175269e-3, 8.4175084175084175084e-4,
                               -5.952380952380952381e-4, 7.9365079365079365079e-4,
                               -2.7777777777777777778e-3, 8.3333333333333333333e-2};
    double rn = 1.0 / n, x = rn / n, p = 0;
    for (int i = 0; i < 8; i++) p = p * x + c[i];
    return log(n) / 2 - n + log(2 * M_PI) / 2 + rn * p;
}

/* One-sided Smirnov sf Pr(D_n^+ >= x) by the Birnbaum–Tingey sum, in log space:
 * x * sum_{j=0}^{floor(n(1-x))} C(n,j) (1-x-j/n)^(n-j) (x+j/n)^(j-1). */
double mu_smirnov_sf(long n, double x) {
    if (!(x > 0)) return 1.0;
    if (x >= 1) return 0.0;
    if (n == 1) return 1 - x;
    double nx = n * x;
    if (nx >= n - 1) return pow(1 - x, (double)n);
    long jmax = (long)floor(n * (1 - x));
    if (jmax > n) jmax = n;
    double lgn1 = lgamma((double)n + 1), s = 0;
    for (long j = 0; j <= jmax; j++) {
        double a = 1 - x - (double)j / n, b = x + (double)j / n;
        if (a <= 0) { if (n - j == 0) a = 1; else continue; }
        double lt = lgn1 - lgamma((double)j + 1) - lgamma((double)(n - j) + 1) +
                    (double)(n - j) * log(a) + (double)(j - 1) * log(b);
        s += exp(lt);
    }
    return clip01(x * s);
}

static void matmul(const double *a, const double *b, double *c, int m) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < m; j++) {
            double s = 0;
            for (int k = 0; k < m; k++) s += a[i * m + k] * b[k * m + j];
            c[i * m + j] = s;
        }
}

/* Pr(D_n <= d), Durbin matrix (Marsaglia–Tsang–Wang), scipy _kolmogn_DMTW. */
static double kolmogn_dmtw_cdf(long n, double d) {
    if (d >= 1.0) return 1.0;
    double nd = n * d;
    if (nd <= 0.5) return 0.0;
    int k = (int)ceil(nd);
    double h = k - nd;
    int m = 2 * k - 1;
    size_t mm = (size_t)m * m;
    double *H = calloc(mm, sizeof *H), *P = calloc(mm, sizeof *P), *T = malloc(mm * sizeof *T);
    double *v = malloc((size_t)m * sizeof *v), *w = malloc((size_t)m * sizeof *w);
    double fac = 1.0;
    for (int j = 1; j <= m; j++) {
        w[j - 1] = fac;
        fac /= j;
        v[j - 1] = (1.0 - pow(h, j)) * fac;
    }
    double tt = pow(fmax(2 * h - 1.0, 0), m) - 2 * pow(h, m);
    v[m - 1] = (1.0 + tt) * fac;
    for (int i = 1; i < m; i++)
        for (int r = i - 1; r < m; r++) H[r * m + i] = w[r - (i - 1)];
    for (int r = 0; r < m; r++) H[r * m] = v[r];
    for (int c = 0; c < m; c++) H[(m - 1) * m + c] = v[m - 1 - c];
    for (int i = 0; i < m; i++) P[i * m + i] = 1.0;
    long nn = n;
    int expnt = 0, Hexpnt = 0;
    const double ep128 = ldexp(1.0, 128);
    while (nn > 0) {
        if (nn % 2) { matmul(P, H, T, m); memcpy(P, T, mm * sizeof *T); expnt += Hexpnt; }
        matmul(H, H, T, m); memcpy(H, T, mm * sizeof *T);
        Hexpnt *= 2;
        if (fabs(H[(k - 1) * m + (k - 1)]) > ep128) {
            for (size_t i = 0; i < mm; i++) H[i] /= ep128;
            Hexpnt += 128;
        }
        nn /= 2;
    }
    double p = P[(k - 1) * m + (k - 1)];
    const double em128 = ldexp(1.0, -128);
    for (long i = 1; i <= n; i++) {
        p = (double)i * p / (double)n;
        if (fabs(p) < em128) { p *= ep128; expnt -= 128; }
    }
    if (expnt != 0) p = ldexp(p, expnt);
    free(H); free(P); free(T); free(v); free(w);
    return clip01(p);
}

static void pomeranz_j1j2(long i, long n, long ll, long ceilf, long roundf, long *j1o, long *j2o) {
    long j1, j2;
    if (i == 0) { j1 = -ll - ceilf - 1; j2 = ll + ceilf - 1; }
    else {
        long ip1div2 = (i + 1) / 2, ip1mod2 = (i + 1) % 2;
        if (ip1mod2 == 0) {
            if (ip1div2 == n + 1) { j1 = n - ll - ceilf - 1; j2 = n + ll + ceilf - 1; }
            else { j1 = ip1div2 - 1 - ll - roundf - 1; j2 = ip1div2 + ll - 1 + ceilf - 1; }
        } else { j1 = ip1div2 - 1 - ll - 1; j2 = ip1div2 + ll + roundf - 1; }
    }
    *j1o = j1 + 2 > 0 ? j1 + 2 : 0;
    *j2o = j2 < n ? j2 : n;
}

/* Pr(D_n <= x) by the Pomeranz recursion (scipy _kolmogn_Pomeranz). */
static double kolmogn_pomeranz_cdf(long n, double x) {
    double t = n * x;
    long ll = (long)floor(t);
    double f = t - ll, g = fmin(f, 1.0 - f);
    long ceilf = f > 0, roundf = f > 0.5;
    long npwrs = 2 * (ll + 1);
    double *gp = malloc((size_t)npwrs * sizeof(double)), *tgp = malloc((size_t)npwrs * sizeof(double));
    double *o2p = malloc((size_t)npwrs * sizeof(double));
    double *V0 = calloc((size_t)npwrs, sizeof(double)), *V1 = calloc((size_t)npwrs, sizeof(double));
    double *conv = malloc((size_t)(2 * npwrs) * sizeof(double));
    gp[0] = tgp[0] = o2p[0] = 1.0;
    for (long m = 1; m < npwrs; m++) {
        gp[m] = gp[m - 1] * (g / n) / m;
        tgp[m] = tgp[m - 1] * (2 * g / n) / m;
        o2p[m] = o2p[m - 1] * ((1 - 2 * g) / n) / m;
    }
    const double ep128 = ldexp(1.0, 128), em128 = ldexp(1.0, -128);
    int expnt = 0;
    V1[0] = 1;
    long V0s = 0, V1s = 0, j1, j2;
    pomeranz_j1j2(0, n, ll, ceilf, roundf, &j1, &j2);
    for (long i = 1; i < 2 * n + 2; i++) {
        long k1 = j1;
        double *tmp = V0; V0 = V1; V1 = tmp;
        long ts = V0s; V0s = V1s; V1s = ts;
        memset(V1, 0, (size_t)npwrs * sizeof(double));
        pomeranz_j1j2(i, n, ll, ceilf, roundf, &j1, &j2);
        const double *pw = (i == 1 || i == 2 * n + 1) ? gp : (i % 2 ? tgp : o2p);
        long ln2 = j2 - k1 + 1;
        if (ln2 > 0) {
            /* full convolution of V0[k1-V0s .. +ln2) with pw[0..ln2) */
            const double *a = V0 + (k1 - V0s);
            for (long c = 0; c < 2 * ln2 - 1; c++) {
                double s = 0;
                for (long p = c - ln2 + 1 > 0 ? c - ln2 + 1 : 0; p <= c && p < ln2; p++) s += a[p] * pw[c - p];
                conv[c] = s;
            }
            long cs = j1 - k1, cl = j2 - j1 + 1;
            double mx = 0;
            for (long c = 0; c < cl; c++) { V1[c] = conv[cs + c]; if (V1[c] > mx) mx = V1[c]; }
            if (mx > 0 && mx < em128) {
                for (long c = 0; c < npwrs; c++) V1[c] *= ep128;
                expnt -= 128;
            }
            V1s = V0s + j1 - k1;
        }
    }
    double ans = V1[n - V1s];
    for (long m = 1; m <= n; m++) {
        if (fabs(ans) > ep128) { ans *= em128; expnt += 128; }
        ans *= (double)m;
    }
    if (expnt != 0) ans = ldexp(ans, expnt);
    free(gp); free(tgp); free(o2p); free(V0); free(V1); free(conv);
    return clip01(ans);
}

/* Pelz–Good approximation of Pr(D_n <= x) (scipy _kolmogn_PelzGood, cdf=True). */
static double kolmogn_pelzgood_cdf(long n, double x) {
    if (x <= 0.0) return 0.0;
    if (x >= 1.0) return 1.0;
    const double pi2 = M_PI * M_PI, pi4 = pi2 * pi2, pi6 = pi4 * pi2;
    double z = sqrt((double)n) * x;
    double z2 = z * z, z3 = z2 * z, z4 = z2 * z2, z6 = z4 * z2;
    double qlog = -pi2 / 8 / z2;
    if (qlog < -708) return 0.0;
    double q = exp(qlog);
    double k1a = -z2, k1b = pi2 / 4;
    double k2a = 6 * z6 + 2 * z4, k2b = (2 * z4 - 5 * z2) * pi2 / 4, k2c = pi4 * (1 - 2 * z2) / 16;
    double k3d = pi6 * (5 - 30 * z2) / 64, k3c = pi4 * (-60 * z2 + 212 * z4) / 16;
    double k3b = pi2 * (135 * z4 - 96 * z6) / 4, k3a = -30 * z6 - 90 * pow(z, 8);
    double K[4] = {0, 0, 0, 0};
    int maxk = (int)ceil(16 * z / M_PI);
    for (int k = maxk; k > 0; k--) {
        double m = 2 * k - 1, m2 = m * m, m4 = m2 * m2, m6 = m4 * m2;
        double qp = pow(q, 8 * k);
        double c[4] = {1.0, k1a + k1b * m2, k2a + k2b * m2 + k2c * m4,
                       k3a + k3b * m2 + k3c * m4 + k3d * m6};
        for (int i = 0; i < 4; i++) K[i] = K[i] * qp + c[i];
    }
    double sq2pi = sqrt(2 * M_PI);
    double den[4] = {z, 6 * z4, 72 * pow(z, 7), 6480 * pow(z, 10)};
    for (int i = 0; i < 4; i++) K[i] = K[i] * q * sq2pi / den[i];
    q = exp(-pi2 / 2 / z2);
    double k2extra = 0, k3extra = 0, s3z = sqrt(3.0) * z;
    for (int k = maxk; k > 0; k--) {
        double ks2 = (double)k * k, qp = pow(q, ks2), kspi = M_PI * k;
        k2extra += ks2 * qp;
        k3extra += (s3z + kspi) * (s3z - kspi) * ks2 * qp;
    }
    K[2] += k2extra * pi2 * sq2pi / (-36 * z3);
    K[3] += k3extra * pi2 * sq2pi / (216 * z6);
    double sum = 0;
    for (int i = 0; i < 4; i++) sum += K[i] / pow((double)n, i / 2.0);
    return sum;
}

/* scipy.stats.kstwo.sf(x, n) = _kolmogn(n, x, cdf=False). */
double mu_kolmogorov_sf(long n, double x) {
    if (n <= 0 || isnan(x)) return NAN;
    if (x >= 1.0) return 0.0;
    if (x <= 0.0) return 1.0;
    double t = n * x;
    if (t <= 1.0) {
        if (t <= 0.5) return 1.0;
        double prob;
        if (n <= 140) { prob = 1; for (long i = 1; i <= n; i++) prob *= i * (1.0 / n) * (2 * t - 1); }
        else prob = exp(log_nfact_div_npown((double)n) + n * log(2 * t - 1));
        return clip01(1.0 - prob);
    }
    if (t >= n - 1) return clip01(2 * pow(1.0 - x, (double)n));
    if (x >= 0.5) return clip01(2 * mu_smirnov_sf(n, x));
    double nx2 = t * x;
    if (n <= 140) {
        if (nx2 <= 0.754693) return clip01(1.0 - kolmogn_dmtw_cdf(n, x));
        if (nx2 <= 4) return clip01(1.0 - kolmogn_pomeranz_cdf(n, x));
        return clip01(2 * mu_smirnov_sf(n, x));
    }
    if (nx2 >= 370.0) return 0.0;
    if (nx2 >= 2.2) return clip01(2 * mu_smirnov_sf(n, x));
    double cdf;
    if (nx2 >= 18.0) cdf = 1.0;
    else if (n <= 100000 && n * pow(x, 1.5) <= 1.4) cdf = kolmogn_dmtw_cdf(n, x);
    else cdf = kolmogn_pelzgood_cdf(n, x);
    return clip01(1.0 - cdf);
}

static long gcd_long(long a, long b) { while (b) { long t = a % b; a = b; b = t; } return a; }

/* Exact branch of ks_2samp; 0 ok, -1 when the computation over/underflowed. */
static int ks_exact(long n1, long n2, double *d, double *p) {
    long g = gcd_long(n1, n2);
    double lcm = (double)(n1 / g) * (double)n2;
    long h = (long)nearbyint(*d * lcm);
    *d = (double)h / lcm;
    if (h == 0) { *p = 1.0; return 0; }
    feclearexcept(FE_OVERFLOW | FE_INVALID);
    double prob = n1 == n2 ? mu_ks_prob_outside_square(n1, h) : mu_ks_outer_prob_inside(n1, n2, g, h);
    if (fetestexcept(FE_OVERFLOW | FE_INVALID) || !(prob >= 0 && prob <= 1)) return -1;
    *p = prob;
    return 0;
}

int mu_ks_2samp(const double *a, size_t na, const double *b, size_t nb,
                double *statistic, double *pvalue, int *exact) {
    if (na == 0 || nb == 0) return -1;
    double *x = malloc(na * sizeof *x), *y = malloc(nb * sizeof *y);
    for (size_t i = 0; i < na; i++) { if (isnan(a[i])) goto bad; x[i] = a[i]; }
    for (size_t i = 0; i < nb; i++) { if (isnan(b[i])) goto bad; y[i] = b[i]; }
    qsort(x, na, sizeof *x, cmp_double);
    qsort(y, nb, sizeof *y, cmp_double);
    /* max |F1 - F2| over all data points; ECDFs with side='right' */
    double dmax = 0, dmin = 0;
    size_t i = 0, j = 0;
    while (i < na || j < nb) {
        double v = i < na && (j >= nb || x[i] <= y[j]) ? x[i] : y[j];
        while (i < na && x[i] <= v) i++;
        while (j < nb && y[j] <= v) j++;
        double diff = (double)i / na - (double)j / nb;
        if (diff > dmax) dmax = diff;
        if (diff < dmin) dmin = diff;
    }
    double d = -dmin > dmax ? -dmin : dmax;
    int ex = 0;
    double p = NAN;
    if ((na > nb ? na : nb) <= 10000) ex = ks_exact((long)na, (long)nb, &d, &p) == 0;
    if (!ex) {
        double m = (double)(na > nb ? na : nb), n = (double)(na > nb ? nb : na);
        double en = m * n / (m + n);
        p = mu_kolmogorov_sf((long)nearbyint(en), d);
    }
    *statistic = d;
    *pvalue = clip01(p);
    if (exact) *exact = ex;
    free(x); free(y);
    return 0;
bad:
    free(x); free(y);
    return -1;
}

/* ---------------- removal–retention curves ---------------- */

static int cmp_point(const void *a, const void *b) {
    const mu_curve_point *p = a, *q = b;
    if (p->forget != q->forget) return (p->forget > q->forget) - (p->forget < q->forget);
    return (p->retain < q->retain) - (p->retain > q->retain); /* higher retention first */
}

double mu_aues(const mu_curve_point *runs, size_t n, double f0, double r0) {
    if (!(f0 > 0) || !(r0 > 0)) return NAN;
    mu_curve_point *p = malloc((n + 1) * sizeof *p);
    p[0].forget = 0; p[0].retain = 1;
    for (size_t i = 0; i < n; i++) {
        if (isnan(runs[i].forget) || isnan(runs[i].retain)) { free(p); return NAN; }
        p[i + 1].forget = clip01((f0 - runs[i].forget) / f0);
        p[i + 1].retain = clip01(runs[i].retain / r0);
    }
    qsort(p, n + 1, sizeof *p, cmp_point);
    double area = 0;
    for (size_t i = 1; i <= n; i++)
        area += (p[i].forget - p[i - 1].forget) * (p[i].retain + p[i - 1].retain) / 2;
    free(p);
    return area;
}

typedef struct { double q, u; } qu;
static int cmp_qu(const void *a, const void *b) {
    double x = ((const qu *)a)->u, y = ((const qu *)b)->u;
    return (x > y) - (x < y);
}

double mu_mu95(const double *quality, const double *utility, size_t n, double u0, int interp) {
    double thr = 0.95 * u0, best = NAN;
    for (size_t i = 0; i < n; i++)
        if (utility[i] >= thr && !isnan(quality[i]) && (isnan(best) || quality[i] > best)) best = quality[i];
    if (!interp || n < 2) return best;
    qu *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) { v[i].q = quality[i]; v[i].u = utility[i]; }
    qsort(v, n, sizeof *v, cmp_qu);
    for (size_t i = 1; i < n; i++) {
        if (v[i - 1].u < thr && v[i].u > thr) {
            double t = (thr - v[i - 1].u) / (v[i].u - v[i - 1].u);
            double q = v[i - 1].q + t * (v[i].q - v[i - 1].q);
            if (!isnan(q) && (isnan(best) || q > best)) best = q;
        }
    }
    free(v);
    return best;
}
