# mmlu-report.awk — the report's section on side effects measured by MMLU (pipelines/mmlu.mk):
# as a first file mmlu.tsv (mu-score rows "metric, group, value, n, ci_lo, ci_hi", grouped by
# model, then by model, subject), as a second mmlu-paired.tsv (common.mk paired_rows: before,
# kind, the localization, mmlu, the accuracy difference, questions, its interval, McNemar p,
# Holm's p; cells by paired-lib.awk, which runs with it), as a third mmlu-prob-paired.tsv (the
# same columns for the probability of the right answer: a t interval, the paired t-test). Variables: models (the models shown, in
# order), before (the model the changed ones are paired with), kind (the changed models are
# kind-LOC), desc (the questions, in words), job (unlearning or edit). A row per model: its
# accuracy with its 95% interval, its probability of the right answer and, for a changed model,
# the differences of both from before's question by question; with more than one subject, a row per subject, a column per model.
BEGIN { FS = "\t" }
FNR == 1 { file++; if (file == 1) next }   # mu-score's header row
file == 1 && $1 == "choice_prob" { group(); prob[G["model"]] = $3; next }
file == 1 && $1 == "choice_acc" {
    group()
    if (!("subject" in G)) { acc[G["model"]] = $3; lo[G["model"]] = $5; hi[G["model"]] = $6; next }
    if (!(G["subject"] in subj)) { subj[G["subject"]]; S[++ns] = G["subject"] }
    sacc[G["model"], G["subject"]] = $3; sn[G["subject"]] = $4
    next
}
file == 2 { pc[$3] = paired_text(); npc++; pholm = $10 != ""; next }
file == 3 { pp[$3] = paired_text(3); next }
# "0.27 [0.23, 0.32]"
function acc_ci(m) {
    if (!(m in acc)) return "–"
    return (lo[m] == "nan" || lo[m] == "") ? sprintf("%.2f", acc[m]) : sprintf("%.2f [%.2f, %.2f]", acc[m], lo[m], hi[m])
}
END {
    nm = split(models, M, " ")
    print "\n## Side effects: MMLU\n"
    printf "%s: 4-way multiple choice accuracy (chance 0.25), with its 95%% interval (Wilson's).\n", desc
    print "The probability of the right answer (renormalized over A-D) moves where the accuracy cannot,"
    print "as in a model that answers near chance."
    printf "Each %s-* model is paired with %s question by question: its accuracy minus %s's on the\n", kind, before, before
    print "same questions (Newcombe's interval, McNemar's exact p) and its probability of the right answer"
    printf "minus %s's (Student's t interval, the paired t-test); a negative difference with a small p\n", before
    printf "is a side effect of the %s.\n", job
    if (pholm) printf "\"Holm\": each p adjusted by Holm's step-down method over the %d comparisons of its file\n" \
                      "(mmlu-paired.tsv, mmlu-prob-paired.tsv; pipelines/holm.awk), which keeps the chance of any\n" \
                      "false finding among them at 5%% when read against 0.05.\n", npc
    printf "\n| model | MMLU accuracy | against %s | probability | against %s |\n|---|---|---|---|---|\n", before, before
    for (i = 1; i <= nm; i++) {
        l = substr(M[i], length(kind) + 2); changed = index(M[i], kind "-") == 1
        printf "| %s | %s | %s | %s | %s |\n", M[i], acc_ci(M[i]), (changed && l in pc) ? pc[l] : "",
            (M[i] in prob) ? sprintf("%.3f", prob[M[i]]) : "–", (changed && l in pp) ? pp[l] : ""
    }
    if (ns < 2) exit
    printf "\nBy subject (accuracy; its questions in the second column):\n\n| subject | questions |"
    for (j = 1; j <= nm; j++) printf " %s |", M[j]
    printf "\n|---|---|"
    for (j = 1; j <= nm; j++) printf "---|"
    printf "\n"
    for (s = 1; s <= ns; s++) {
        printf "| %s | %d |", S[s], sn[S[s]]
        for (j = 1; j <= nm; j++) printf " %s |", ((M[j], S[s]) in sacc) ? sprintf("%.2f", sacc[M[j], S[s]]) : "–"
        printf "\n"
    }
}
