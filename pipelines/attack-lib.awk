# attack-lib.awk — what the report's attack sections share (soft-report.awk, gcg-report.awk):
# reading mu-score's TSV groups and paired_rows, and the held-out accuracy and paired tables.
# Uses the variables formats (F[1..nf]) and the arrays its callers fill: before (scores.tsv:
# "model F split" -> accuracy), after/cnt/lo/hi ("M F" -> the attacked accuracy and its
# interval), pc ("kind w l F" -> the paired comparison's cell, paired-lib.awk), npc (their
# count) and pholm (whether they hold Holm's p), and
# W[1..nw], L[w, 1..nl[w]] (the baselines and localizations the paired rows hold).
function group_of(s,   a, i, k, n2, kv) {     # "model=M,fmt=F[,split=S]" -> "M F S"
    n2 = split(s, a, ",")
    k = ""
    for (i = 1; i <= n2; i++) { split(a[i], kv, "="); k = k (i > 1 ? SUBSEP : "") kv[2] }
    return k
}
# a paired_rows line (baseline, kind, localization, FORMAT-heldout, difference, facts,
# interval, McNemar's p, Holm's p) into pc, npc, pholm, W and L
function read_paired(   k) {
    sub(/-heldout$/, "", $4)
    k = $2 SUBSEP $1 SUBSEP $3 SUBSEP $4
    pc[k] = paired_text(); npc++; pholm = $10 != ""
    if (paired_file == "") { paired_file = FILENAME; sub(/.*\//, "", paired_file) }
    if (!($1 in seen_w)) { seen_w[$1] = 1; W[++nw] = $1 }
    if (!(($1, $3) in seen_l)) { seen_l[$1, $3] = 1; L[$1, ++nl[$1]] = $3 }
}
# a token (jq's @tsv escapes \t \n \r \\ kept, visible) made fit for a table cell
function md_cell(t) { gsub(/\|/, "\\|", t); gsub(/`/, "\\`", t); return t }
# the model an attack attacked: base, or LOC's unlearned model
function model_of(m) { return m == "base" ? m : "unlearned-" m }
function acc_before(m, f,   k) {
    k = model_of(m) SUBSEP f SUBSEP "heldout"
    return (k in before) ? sprintf("%.2f", before[k]) : "–"
}
function acc_after(m, f,   k) {
    k = m SUBSEP f
    return (k in after) ? sprintf("%.2f [%.2f, %.2f]", after[k], lo[k], hi[k]) : "–"
}
function paired(kind, w, l, f,   k) {
    k = kind SUBSEP w SUBSEP l SUBSEP f
    return (k in pc) ? pc[k] : "–"
}
# the models (M[1..nm]) with each format's held-out accuracy before and after the attack
function before_after_table(   i, f, H) {
    for (f = 1; f <= nf; f++) { H[2 * f - 1] = F[f] " before"; H[2 * f] = F[f] " after" }
    printf "\n"
    table_head("model", H, 2 * nf)
    for (i = 1; i <= nm; i++) {
        printf "| %s |", model_of(M[i])
        for (f = 1; f <= nf; f++) printf " %s | %s |", acc_before(M[i], F[f]), acc_after(M[i], F[f])
        printf "\n"
    }
}
# the models (M[1..nm]) with a cell per format from cell ("M F" -> text; "–" where none)
function cells_table(cell,   i, f) {
    printf "\n"
    table_head("model", F, nf)
    for (i = 1; i <= nm; i++) {
        printf "| %s |", model_of(M[i])
        for (f = 1; f <= nf; f++) printf " %s |", ((M[i], F[f]) in cell) ? cell[M[i], F[f]] : "–"
        printf "\n"
    }
}
# each localization's held-out accuracy minus w's, fact by fact (kind's rows), under the
# heading's first line
function paired_table(kind, w, heading,   i, f) {
    printf "\n%s\n", heading
    printf "minus %s's on the same facts, with its 95%% interval (Newcombe's) and McNemar's exact p.\n", w
    if (pholm) print holm_note(npc, paired_file)
    print ""
    table_head("localization", F, nf)
    for (i = 1; i <= nl[w]; i++) {
        printf "| %s |", L[w, i]
        for (f = 1; f <= nf; f++) printf " %s |", paired(kind, w, L[w, i], F[f])
        printf "\n"
    }
}
