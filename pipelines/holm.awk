# holm.awk — Holm's step-down adjustment of a paired-comparisons TSV's p-values (column 9,
# McNemar's exact p; pipelines/common.mk paired_rows): each row printed with a tenth column,
# its p adjusted over all the rows of the input (one family: the comparisons of one file),
# so that rejecting where it is below alpha keeps the family-wise error rate at alpha:
#   sort the m p-values ascending, p(1) <= ... <= p(m); adjusted p(k) =
#   min(1, max over j <= k of (m - j + 1) p(j))   (statsmodels multipletests method='holm')
# A row whose p is not a number in [0, 1] is an error: one line, exit 1, nothing printed.
BEGIN { FS = OFS = "\t" }
{
    row[++m] = $0
    if ($9 !~ /^([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$/ || $9 + 0 > 1) {
        printf "%s:%d: McNemar p %s is not a probability\n", FILENAME == "" ? "-" : FILENAME, FNR, $9 > "/dev/stderr"
        bad = 1
        exit 1
    }
    p[m] = $9 + 0
}
# order[1..m]: the rows by p ascending, ties in input order (insertion sort: m is a few hundred)
function sort_by_p(   i, j, t) {
    for (i = 1; i <= m; i++) {
        t = i
        for (j = i - 1; j >= 1 && p[order[j]] > p[t]; j--) order[j + 1] = order[j]
        order[j + 1] = t
    }
}
END {
    if (bad) exit 1
    sort_by_p()
    run = 0
    for (k = 1; k <= m; k++) {
        a = (m - k + 1) * p[order[k]]
        if (a > run) run = a
        adj[order[k]] = run < 1 ? run : 1
    }
    for (i = 1; i <= m; i++) printf "%s\t%.17g\n", row[i], adj[i]
}
