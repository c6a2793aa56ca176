/* ci.c — confidence intervals of a group's mean (metrics.h): the Student t interval of a
 * mean and the Wilson score interval of a proportion; Newcombe's interval of a paired
 * difference of proportions and the paired tests of two models on the same records
 * (McNemar's exact, the paired t-test); the quantile functions they
 * need (normal: Newton on erfc; Student t: the regularized incomplete beta by its
 * continued fraction, inverted by bisection and Newton, or the Cornish–Fisher expansion
 * from 1e5 degrees of freedom on). Checked against scipy.stats and statsmodels
 * (tests/gen/gen_ci_golden.py): quantiles to 1e-9 relative, the t CDF to 1e-10. */
#include "metrics.h"
#include <math.h>

/* The continued fraction of I_x(a, b) (modified Lentz), used where it converges fast:
 * x < (a + 1) / (a + b + 2); y = 1 - x. */
static double betainc_fraction(double a, double b, double x, double y)
{
    const double tiny = 1e-300, eps = 1e-16;
    /* 1 - (a + b) x / (a + 1), without its cancellation when x is near 1 */
    double c = 1, d = (1 - b + (a + b) * y) / (a + 1);
    if (fabs(d) < tiny) d = tiny;
    d = 1 / d;
    double f = d;
    for (int m = 1; m <= 10000; m++) {
        for (int odd = 0; odd < 2; odd++) {
            double num = odd ? -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
                             : m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m));
            d = 1 + num * d; if (fabs(d) < tiny) d = tiny; d = 1 / d;
            c = 1 + num / c; if (fabs(c) < tiny) c = tiny;
            f *= c * d;
            if (odd && fabs(c * d - 1) < eps) return f;
        }
    }
    return f;
}

/* lgamma(a + b) - lgamma(a), without the cancellation of two large lgammas when a is
 * large (Student t with many degrees of freedom): Stirling's series of both. */
static double lgamma_ratio(double a, double b)
{
    if (a < 100) return lgamma(a + b) - lgamma(a);
    double c = a + b;
    double series = (1 / (12 * c) - 1 / (360 * c * c * c) + 1 / (1260 * pow(c, 5))) -
                    (1 / (12 * a) - 1 / (360 * a * a * a) + 1 / (1260 * pow(a, 5)));
    return (a - 0.5) * log1p(b / a) + b * log(c) - b + series;
}

/* log B(a, b) */
static double lbeta(double a, double b)
{
    double big = a > b ? a : b, small = a > b ? b : a;
    return lgamma(small) - lgamma_ratio(big, small);
}

/* I_x(a, b) with y = 1 - x given separately (no cancellation near x = 1). */
static double betainc(double a, double b, double x, double y)
{
    if (x <= 0) return 0;
    if (y <= 0) return 1;
    double lx = x > 0.5 ? log1p(-y) : log(x), ly = y > 0.5 ? log1p(-x) : log(y);
    double lfront = a * lx + b * ly - lbeta(a, b);
    if (x < (a + 1) / (a + b + 2)) return exp(lfront) * betainc_fraction(a, b, x, y) / a;
    return 1 - exp(lfront) * betainc_fraction(b, a, y, x) / b;
}

/* P(T > |t|): the tail, computed as it is (no 1 - cdf cancellation) */
static double t_tail(double t, double df)
{
    double t2 = t * t;
    return 0.5 * betainc(df / 2, 0.5, df / (df + t2), t2 / (df + t2));
}

double mu_t_cdf(double t, double df)
{
    if (isnan(t) || !(df > 0)) return NAN;
    if (isinf(t)) return t > 0 ? 1 : 0;
    double tail = t_tail(t, df);
    return t > 0 ? 1 - tail : tail;
}

/* density of Student's t */
static double t_pdf(double t, double df)
{
    return exp(lgamma_ratio(df / 2, 0.5) - 0.5 * log(df * M_PI) - (df + 1) / 2 * log1p(t * t / df));
}

double mu_norm_ppf(double p)
{
    if (!(p > 0 && p < 1)) return p == 0 ? -INFINITY : p == 1 ? INFINITY : NAN;
    double q = p < 0.5 ? p : 1 - p, s = sqrt(-2 * log(q));
    /* Abramowitz & Stegun 26.2.23 (|error| < 4.5e-4), then Newton on the upper tail */
    double z = s - (2.515517 + s * (0.802853 + s * 0.010328)) /
                   (1 + s * (1.432788 + s * (0.189269 + s * 0.001308)));
    for (int i = 0; i < 6; i++) {
        double f = 0.5 * erfc(z / M_SQRT2) - q, pdf = exp(-z * z / 2) / sqrt(2 * M_PI);
        double step = f / pdf;
        z += step;
        if (fabs(step) < 1e-15 * fabs(z)) break;
    }
    return p < 0.5 ? -z : z;
}

double mu_t_ppf(double p, double df)
{
    if (!(p > 0 && p < 1) || !(df > 0)) return p == 0 ? -INFINITY : p == 1 ? INFINITY : NAN;
    if (p == 0.5) return 0;
    if (df >= 1e5) {                          /* Cornish–Fisher: the error is O(z^9 / df^4) */
        double z = mu_norm_ppf(p), z2 = z * z, v = df;
        return z + z * (z2 + 1) / (4 * v) + z * ((5 * z2 + 16) * z2 + 3) / (96 * v * v) +
               z * (((3 * z2 + 19) * z2 + 17) * z2 - 15) / (384 * v * v * v);
    }
    double q = p < 0.5 ? p : 1 - p;           /* solve the upper tail: t > 0 */
    double lo = 0, hi = 1;
    while (t_tail(hi, df) > q && hi < 1e300) hi *= 2;
    for (int i = 0; i < 200 && hi - lo > 1e-12 * hi; i++) {
        double mid = 0.5 * (lo + hi);
        if (t_tail(mid, df) > q) lo = mid; else hi = mid;
    }
    double t = 0.5 * (lo + hi);
    for (int i = 0; i < 3; i++) {             /* Newton polish */
        double step = (t_tail(t, df) - q) / t_pdf(t, df);
        if (!isfinite(step)) break;
        t += step;
    }
    return p < 0.5 ? -t : t;
}

void mu_ci_mean(double mean, double sd, long n, double level, double *lo, double *hi)
{
    if (n < 2 || !(level > 0 && level < 1) || isnan(mean) || isnan(sd)) { *lo = *hi = NAN; return; }
    double h = mu_t_ppf((1 + level) / 2, (double)(n - 1)) * sd / sqrt((double)n);
    *lo = mean - h; *hi = mean + h;
}

void mu_ci_wilson(double k, long n, double level, double *lo, double *hi)
{
    if (n < 1 || !(level > 0 && level < 1)) { *lo = *hi = NAN; return; }
    double z = mu_norm_ppf((1 + level) / 2), p = k / (double)n, z2n = z * z / (double)n;
    double center = (p + z2n / 2) / (1 + z2n);
    double half = z / (1 + z2n) * sqrt(p * (1 - p) / (double)n + z2n / (4.0 * (double)n));
    *lo = center - half; *hi = center + half;
    if (*lo < 0) *lo = 0;
    if (*hi > 1) *hi = 1;
}

/* Newcombe's estimate of the correlation of p_a and p_b: (n11 n00 - b c), less n/2 where
 * it exceeds n/2 and 0 where it lies in [0, n/2], over the root of the margins' product. */
static double paired_phi(double n11, double b, double c, double n00)
{
    double n = n11 + b + c + n00, margins = (n11 + b) * (c + n00) * (n11 + c) * (b + n00);
    if (margins == 0) return 0;
    double a = n11 * n00 - b * c;
    a = a > n / 2 ? a - n / 2 : a >= 0 ? 0 : a;
    return a / sqrt(margins);
}

void mu_ci_paired_diff(long n11, long b, long c, long n00, double level, double *lo, double *hi)
{
    long n = n11 + b + c + n00;
    if (n11 < 0 || b < 0 || c < 0 || n00 < 0 || n < 1 || !(level > 0 && level < 1)) { *lo = *hi = NAN; return; }
    double pa = (double)(n11 + b) / (double)n, pb = (double)(n11 + c) / (double)n, la, ua, lb, ub;
    mu_ci_wilson((double)(n11 + b), n, level, &la, &ua);
    mu_ci_wilson((double)(n11 + c), n, level, &lb, &ub);
    double phi = paired_phi((double)n11, (double)b, (double)c, (double)n00);
    double below_a = pa - la, above_a = ua - pa, below_b = pb - lb, above_b = ub - pb;
    *lo = pa - pb - sqrt(below_a * below_a + above_b * above_b - 2 * phi * below_a * above_b);
    *hi = pa - pb + sqrt(below_b * below_b + above_a * above_a - 2 * phi * below_b * above_a);
}

double mu_mcnemar_exact_p(long b, long c)
{
    long n = b + c, k = b < c ? b : c;
    if (b < 0 || c < 0) return NAN;
    double cdf = 0, lnf = lgamma((double)n + 1) - (double)n * M_LN2;
    for (long i = 0; i <= k; i++)
        cdf += exp(lnf - lgamma((double)i + 1) - lgamma((double)(n - i) + 1));
    return fmin(1.0, 2 * cdf);
}

double mu_ttest_rel_p(double mean, double sd, long n)
{
    if (n < 2) return NAN;
    if (sd == 0) return mean == 0 ? NAN : 0;
    double t = mean / (sd / sqrt((double)n));
    return 2 * mu_t_cdf(-fabs(t), (double)(n - 1));
}
