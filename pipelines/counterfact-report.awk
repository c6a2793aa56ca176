# counterfact-report.awk — the markdown report of pipelines/counterfact.mk from mu-score's TSV
# (header line, then metric, group "model=..,split=..", value, n, ci_lo, ci_hi) and, as a second file,
# the changes TSV of the edit deltas (pipelines/changes.awk), as a third the paired comparisons
# (baseline, kind, localization, split, accuracy difference, prompts, its interval, McNemar p;
# common.mk paired_list), a table per baseline.
# Variables: models (the row order),
# n_edits, n_keep, pool_rows, known, filter, n_neighbor, train, masks.
BEGIN { FS = "\t" }
FNR == 1 { file++ }
file == 2 { change_add(); next }   # the edit deltas' changes (changes.awk, which runs with it)
file == 3 {
    pc[$1, $2, $3, $4] = paired_text(); pn[$2, $4] = $6; npc++; pholm = $10 != ""
    if (!($1 in pwith)) { pwith[$1]; pw[++npw] = $1 }
    if (!(($1, $3) in ploc)) { ploc[$1, $3]; pl[$1, ++npl[$1]] = $3 }
    next
}
NR == 1 { next }
{
    delete key
    split($2, kv, ",")
    for (i in kv) { split(kv[i], p, "="); key[p[1]] = p[2] }
    v[$1, key["model"], key["split"]] = $3
    n[key["model"], key["split"]] = $4
    lo[$1, key["model"], key["split"]] = $5; hi[$1, key["model"], key["split"]] = $6
}
function has(metric, m, s) { return (metric, m, s) in v }
function num(metric, m, s) { return v[metric, m, s] + 0 }
function cell(m, s) {
    if (!has("choice_acc", m, s)) return "–"
    return sprintf("%.2f / %.2f", num("choice_acc", m, s), num("choice_prob", m, s))
}
END {
    nm = split(models, M, " ")
    ns = split("edit para neighbor keep heldout", S, " ")
    print "# CounterFact: localized knowledge editing (mu)\n"
    if (filter == 1)
        printf "Known facts (true answer beats the edit target on the prompt): %d of rows %s; ", known, pool_rows
    else
        printf "No knowledge filter (rows %s); ", pool_rows
    printf "edited the first %d, kept the next %d unchanged (retain).\n", n_edits, n_keep
    printf "Training: %s. Localizations: %s.\n", train, masks
    print "Cells: 2-way choice accuracy / probability renormalized over {true, new} target, of the"
    print "NEW target for `efficacy` (edit prompts), `paraphrase` and `heldout` (the half of the edit"
    print "facts the relearning attack did not train on), of the TRUE target for `neighbourhood`"
    printf "(other subjects, same relation and answer; %s per fact) and `retain` (kept facts).\n", (n_neighbor == "" ? "all" : "the first " n_neighbor)
    print "relearned-* rows: after the attack (fine-tuning on the true answers of the other half).\n"
    print "| model | efficacy | paraphrase | neighbourhood | retain | heldout |"
    print "|---|---|---|---|---|---|"
    for (i = 1; i <= nm; i++) {
        line = "| " M[i] " |"
        for (s = 1; s <= ns; s++) line = line " " cell(M[i], S[s]) " |"
        print line
    }
    ci_table()
    for (i = 1; i <= npw; i++) paired_table(pw[i])
    summary()
    change_table("editing", "the base model")
}
# accuracy with its 95% interval: "0.44 [0.23, 0.67]"
function ci_cell(m, s,    k) {
    k = "choice_acc" SUBSEP m SUBSEP s
    if (!(k in v)) return "–"
    return (lo[k] == "nan" || lo[k] == "") ? sprintf("%.2f", v[k]) : sprintf("%.2f [%.2f, %.2f]", v[k], lo[k], hi[k])
}
# efficacy, neighbourhood and held-out accuracy again, with their 95% intervals (Wilson;
# mu-score --ci): how large a difference between two localizations the sets can measure
function ci_table(   i) {
    if (!(("base", "edit") in n)) return
    printf "\nAccuracy with its 95%% interval (Wilson; %d edit prompts, %d neighbourhood prompts, %d held out):\n",
        n["base", "edit"], n["base", "neighbor"], n[M[nm], "heldout"]
    print "localizations whose intervals overlap are not told apart by these sets.\n"
    print "| model | efficacy | neighbourhood | heldout |"
    print "|---|---|---|---|"
    for (i = 1; i <= nm; i++)
        printf "| %s | %s | %s | %s |\n", M[i], ci_cell(M[i], "edit"), ci_cell(M[i], "neighbor"), ci_cell(M[i], "heldout")
}
# each localization against the baseline w on the same prompts (mu-score --paired)
function paired_cell(w, k, l, s) {
    return ((w, k, l, s) in pc) ? pc[w, k, l, s] : "–"
}
function paired_table(w,   i) {
    printf "\nPaired with %s, prompt by prompt: each localization's accuracy minus %s's on the same\n", w, w
    printf "prompts (%d edit prompts, %d neighbourhood prompts, %d held-out prompts after the attack),\n",
        pn["edited", "edit"], pn["edited", "neighbor"], pn["relearned", "heldout"]
    print "with its 95% interval (Newcombe's for paired proportions) and McNemar's exact p (mu-score --paired)."
    if (pholm) print holm_note(npc, "paired.tsv")
    print ""
    print "| localization | efficacy | paraphrase | neighbourhood | retain | heldout, attacked |"
    print "|---|---|---|---|---|---|"
    for (i = 1; i <= npl[w]; i++)
        printf "| %s | %s | %s | %s | %s | %s |\n", pl[w, i], paired_cell(w, "edited", pl[w, i], "edit"),
            paired_cell(w, "edited", pl[w, i], "para"), paired_cell(w, "edited", pl[w, i], "neighbor"),
            paired_cell(w, "edited", pl[w, i], "keep"), paired_cell(w, "relearned", pl[w, i], "heldout")
}
# two sentences, each only restating numbers of the table
function summary(   i, l, best, worst, bl, wl, lo, hi, s2, first) {
    best = -1; worst = 2
    for (i = 1; i <= nm; i++) {
        if (M[i] !~ /^edited-/ || !has("choice_acc", M[i], "edit")) continue
        l = substr(M[i], 8)
        if (num("choice_acc", M[i], "edit") > best) { best = num("choice_acc", M[i], "edit"); bl = l }
        if (num("choice_acc", M[i], "edit") < worst) { worst = num("choice_acc", M[i], "edit"); wl = l }
        if (lo == "" || num("choice_acc", M[i], "neighbor") < lo) lo = num("choice_acc", M[i], "neighbor")
        if (hi == "" || num("choice_acc", M[i], "neighbor") > hi) hi = num("choice_acc", M[i], "neighbor")
    }
    if (best < 0) return
    print "\n## What the numbers show\n"
    printf "Edit efficacy (accuracy) was %s against %.2f for the base model, " \
        "while neighbourhood accuracy went from %.2f (base) to %s after editing. ",
        (sprintf("%.2f", worst) == sprintf("%.2f", best) ? sprintf("%.2f in every localization", best) : \
            sprintf("from %.2f (%s) to %.2f (%s)", worst, wl, best, bl)),
        num("choice_acc", "base", "edit"), num("choice_acc", "base", "neighbor"),
        (sprintf("%.2f", lo) == sprintf("%.2f", hi) ? sprintf("%.2f", lo) : sprintf("between %.2f and %.2f", lo, hi))
    s2 = ""; first = 1
    for (i = 1; i <= nm; i++) {
        if (M[i] !~ /^relearned-/) continue
        l = substr(M[i], 11)
        if (!has("choice_acc", M[i], "heldout") || !has("choice_acc", "edited-" l, "heldout")) continue
        s2 = s2 (first ? "" : ", ") sprintf("%s %.2f → %.2f", l, num("choice_acc", "edited-" l, "heldout"),
                                             num("choice_acc", M[i], "heldout"))
        first = 0
    }
    if (s2 != "")
        printf "The relearning attack moved held-out efficacy (accuracy, edited → relearned) as follows: %s.\n", s2
    else
        print ""
}
