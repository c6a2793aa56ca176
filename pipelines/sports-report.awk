# sports-report.awk — the markdown report of pipelines/sports.mk from mu-score's TSV
# (metric, group "model=..,fmt=..,split=..", value, n).
BEGIN { FS = "\t" }
NR == 1 { next }
{
    split($2, kv, ","); g = ""
    for (i in kv) { split(kv[i], p, "="); key[p[1]] = p[2] }
    v[$1, key["model"], key["fmt"], key["split"]] = $3
}
function cell(metric, m, f, s) { return ((metric, m, f, s) in v) ? sprintf("%.2f", v[metric, m, f, s]) : "–" }
END {
    nm = split(models, M, " ")
    print "# Sports Facts: localized unlearning (mu)\n"
    printf "Taught %d facts, unlearned the first %d; localizations: %s.\n", n_facts, n_forget, masks
    print "Cells: 3-way choice accuracy / probability of the right sport (renormalized over the three)."
    print "`forget` = unlearned facts, `maintain` = the other taught facts, `heldout` = the half of the"
    print "forget set that the relearning attack did not train on (relearned-* rows: after the attack)."
    printf "MMLU: %s, 4-way multiple choice accuracy.\n\n", mmlu
    split("cloze question mc", F, " "); split("forget maintain heldout", S, " ")
    hdr = "| model |"; sep = "|---|"
    for (f = 1; f <= 3; f++) for (s = 1; s <= 3; s++) { hdr = hdr " " F[f] " " S[s] " |"; sep = sep "---|" }
    print hdr " MMLU |"; print sep "---|"
    for (i = 1; i <= nm; i++) {
        line = "| " M[i] " |"
        for (f = 1; f <= 3; f++) for (s = 1; s <= 3; s++)
            line = line " " cell("choice_acc", M[i], F[f], S[s]) " / " cell("choice_prob", M[i], F[f], S[s]) " |"
        print line " " cell("choice_acc", M[i], "mmlu", "test") " |"
    }
}
