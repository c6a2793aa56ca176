# strength-report.awk — the report's section on the unlearning's strength (pipelines/sports.mk,
# SCALES): as a first file scores.tsv (the learned model, S = 0, and each unlearned-LOC, S = 1),
# as a second strength.tsv (mu-score rows: choice_acc, "loc=L,scale=S,split=P", value, ...).
# Variables: locs, scales (as given). A row per localization, a column per strength in
# increasing order, each cell "forget / maintained" cloze accuracy.
BEGIN { FS = "\t"; nl = split(locs, L, " ") }
FILENAME == ARGV[1] && $1 == "choice_acc" {
    split($2, g, /[,=]/)                      # model=M,fmt=F,split=P
    if (g[4] != "cloze") next
    if (g[2] == "learned") for (i = 1; i <= nl; i++) acc[L[i], 0, g[6]] = $3
    if (g[2] ~ /^unlearned-/) acc[substr(g[2], 11), 1, g[6]] = $3
    next
}
FILENAME == ARGV[2] && $1 == "choice_acc" {
    split($2, g, /[,=]/)                      # loc=L,scale=S,split=P
    acc[g[2], g[4] + 0, g[6]] = $3
    next
}
# S[1..ns]: 0, 1 and the scales, each once, in increasing order
function strengths(   a, n, i, j, t, seen) {
    n = split(scales, a, " ")
    ns = 0
    a[++n] = 0; a[++n] = 1
    for (i = 1; i <= n; i++) {
        t = a[i] + 0
        if (t in seen) continue
        seen[t]
        for (j = ns; j >= 1 && S[j] > t; j--) S[j + 1] = S[j]
        S[j + 1] = t
        ns++
    }
}
function cell(l, s) {
    if (!((l, s, "forget") in acc) || !((l, s, "maintain") in acc)) return "–"
    return sprintf("%.2f / %.2f", acc[l, s, "forget"], acc[l, s, "maintain"])
}
END {
    strengths()
    print "\n## Strength of the unlearning\n"
    print "Each localization's unlearning delta applied at strength S when the model is loaded"
    print "(mu-forward --scaled-delta S=unlearn-LOC.st: every weight it changed set to w0 + S (w - w0),"
    print "w0 the learned model's; S = 0 is the learned model, 1 the unlearned one): cloze accuracy on"
    print "the forget facts / on the maintained facts. How much of its change does a localization's"
    print "removal need, and what does going further cost the facts it should keep?\n"
    printf "| localization |"
    for (j = 1; j <= ns; j++) printf " S = %g |", S[j]
    printf "\n|---|"
    for (j = 1; j <= ns; j++) printf "---|"
    printf "\n"
    for (i = 1; i <= nl; i++) {
        printf "| %s |", L[i]
        for (j = 1; j <= ns; j++) printf " %s |", cell(L[i], S[j])
        printf "\n"
    }
}
