"""paired_ci.py — Newcombe's interval of a paired difference of proportions (his method 10,
Stat Med 1998;17:2635), the reference for lib/ci.c's mu_ci_paired_diff, used by
gen_ci_golden.py and gen_metrics_golden.py.

The Wilson intervals come from statsmodels; the square-and-add step follows Fagerland,
Lydersen and Laake, Statistical Analysis of Contingency Tables (2017), ch. 8, and is checked
on import against their worked example (Cavo et al. 2012: table [[59, 6], [16, 80]], the
estimate -0.0621 with 95% interval -0.1186 to -0.0046, as the R package contingencytables
prints it in tests/testthat/test-ch8.R).
"""
import math

from statsmodels.stats.proportion import proportion_confint


def newcombe_paired(n11, b, c, n00, level):
    """Interval of p_a - p_b: n11 right under both, b under a only, c under b only, n00
    under neither."""
    n = n11 + b + c + n00
    pa, pb = (n11 + b) / n, (n11 + c) / n
    la, ua = proportion_confint(n11 + b, n, alpha=1 - level, method="wilson")
    lb, ub = proportion_confint(n11 + c, n, alpha=1 - level, method="wilson")
    margins = (n11 + b) * (c + n00) * (n11 + c) * (b + n00)
    phi = 0.0
    if margins:
        a = n11 * n00 - b * c
        a = a - n / 2 if a > n / 2 else (0 if a >= 0 else a)
        phi = a / math.sqrt(margins)
    lo = pa - pb - math.sqrt((pa - la) ** 2 + (ub - pb) ** 2 - 2 * phi * (pa - la) * (ub - pb))
    hi = pa - pb + math.sqrt((pb - lb) ** 2 + (ua - pa) ** 2 - 2 * phi * (pb - lb) * (ua - pa))
    return float(lo), float(hi)


_lo, _hi = newcombe_paired(59, 6, 16, 80, 0.95)
assert (round(_lo, 4), round(_hi, 4)) == (-0.1186, -0.0046), (_lo, _hi)
