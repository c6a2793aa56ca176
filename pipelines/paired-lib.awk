# paired-lib.awk — what the reports say of a paired comparison (sports-report.awk,
# counterfact-report.awk, pool-report.awk, attack-lib.awk's callers): a row of a
# paired-comparisons TSV (pipelines/common.mk paired_rows, then holm.awk: baseline, kind,
# localization, stem, difference, records, interval low, high, McNemar's exact p, Holm's p)
# as a table cell, and the sentence that reads it; the header of the reports' tables; the
# group column of mu-score's TSV rows (strength-report.awk, mmlu-report.awk).
# the current row as "difference [low, high] (p P, Holm H)", with d decimals (default 2);
# without a tenth column (a file made before holm.awk), "(p P)"
function paired_text(d,   f) {
    f = sprintf("%%+.%df", d == "" ? 2 : d)
    return sprintf(f " [" f ", " f "] (p %.2g%s)", $5, $7, $8, $9, $10 == "" ? "" : sprintf(", Holm %.2g", $10))
}
# the "k=v,k=v" group of the current row into G
function group(   n, a, i, kv) {
    split("", G)
    n = split($2, a, ",")
    for (i = 1; i <= n; i++) { split(a[i], kv, "="); G[kv[1]] = kv[2] }
}
# the sentence that says what "Holm" is: McNemar's p adjusted over the n comparisons of file
function holm_note(n, file) {
    return sprintf("\"Holm\": that p adjusted by Holm's step-down method over the %d comparisons of %s\n" \
                   "(pipelines/holm.awk), which keeps the chance of any false finding among them at 5%% when\n" \
                   "read against 0.05.", n, file)
}
# a markdown table's header: the leading columns' names lead ("a | b" for two), the columns
# H[1..n], then the separator row
function table_head(lead, H, n,   i, nlead) {
    nlead = gsub(/\|/, "|", lead) + 1
    printf "| %s |", lead
    for (i = 1; i <= n; i++) printf " %s |", H[i]
    printf "\n"
    for (i = 1; i <= nlead + n; i++) printf "|---"
    printf "|\n"
}
