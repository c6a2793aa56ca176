# paired-lib.awk — what the reports say of a paired comparison (sports-report.awk,
# counterfact-report.awk, pool-report.awk, attack-lib.awk's callers): a row of a
# paired-comparisons TSV (pipelines/common.mk paired_rows, then holm.awk: baseline, kind,
# localization, stem, difference, records, interval low, high, McNemar's exact p, Holm's p)
# as a table cell, and the sentence that reads it; and the header of the reports' tables.
# the current row as "difference [low, high] (p P, Holm H)"; without a tenth column (a file
# made before holm.awk), "(p P)"
function paired_text() {
    if ($10 == "") return sprintf("%+.2f [%+.2f, %+.2f] (p %.2g)", $5, $7, $8, $9)
    return sprintf("%+.2f [%+.2f, %+.2f] (p %.2g, Holm %.2g)", $5, $7, $8, $9, $10)
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
