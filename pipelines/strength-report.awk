# strength-report.awk — the report's section on the strength of each localization's change
# (SCALES; pipelines/common.mk strength_report): as a first file scores.tsv (mu-score rows
# grouped by model[,fmt],split: S = 0 is the model `zero`, S = 1 each `one`LOC), as a second
# strength.tsv (rows grouped by loc, scale, split, the split a token stream's stem, e.g.
# cloze-forget or edit). Variables: locs, scales (as given), stems (the columns of a cell),
# zero, one, job (sports: an unlearning; sports-edit, counterfact: an edit). A row per localization, a
# column per strength in increasing order, each cell the stems' choice accuracies. As a third
# file strength-paired.tsv (common.mk paired_rows, kind scaled-S; cells by paired-lib.awk,
# which runs with it): a table per baseline, a row per localization and stem, a column per
# strength, each cell the difference from the baseline at that strength.
BEGIN {
    FS = "\t"; nl = split(locs, L, " "); nt = split(stems, T, " ")
    for (i = 1; i <= nt; i++) stem[T[i]]
}
FILENAME == ARGV[1] && $1 == "choice_acc" {
    group()
    t = ("fmt" in G) ? G["fmt"] "-" G["split"] : G["split"]
    if (!(t in stem)) next
    if (G["model"] == zero) for (i = 1; i <= nl; i++) acc[L[i], 0, t] = $3
    if (index(G["model"], one) == 1) acc[substr(G["model"], length(one) + 1), 1, t] = $3
    next
}
FILENAME == ARGV[2] && $1 == "choice_acc" {
    group()
    acc[G["loc"], G["scale"] + 0, G["split"]] = $3
    cnt[G["split"]] = $4
    if ($5 != "nan" && $5 != "" && ($6 - $5) / 2 > half) half = ($6 - $5) / 2   # Wilson, mu-score --ci
    next
}
FILENAME == ARGV[3] {
    if (!($1 in with)) { with[$1]; W[++nw] = $1 }
    s = substr($2, length("scaled-") + 1) + 0
    pc[$1, $3, $4, s] = paired_text(); pscale[s]; npc++; pholm = $10 != ""
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
function cell(l, s,   i, c) {
    for (i = 1; i <= nt; i++) {
        if (!((l, s, T[i]) in acc)) return "–"
        c = c (i > 1 ? " / " : "") sprintf("%.2f", acc[l, s, T[i]])
    }
    return c
}
function intro() {
    if (job == "counterfact") {
        print "\n## Strength of the edit\n"
        print "Each localization's edit applied at strength S when the model is loaded (mu-forward"
        print "--scaled-delta S=edit-LOC.st: every weight it changed set to w0 + S (w - w0), w0 the base"
        print "model's; S = 0 is the base model, 1 the edited one): 2-way accuracy on the " stems_text() "."
        print "How much of its change does an edit need, and what does going further cost the neighbours?\n"
        return
    }
    if (job == "sports-edit") {
        print "\n## Strength of the edit\n"
        print "Each localization's edit applied at strength S when the model is loaded (mu-forward"
        print "--scaled-delta S=unlearn-LOC.st: every weight it changed set to w0 + S (w - w0), w0 the"
        print "learned model's; S = 0 is the learned model, 1 the edited one): choice accuracy on the"
        print stems_text() " (cloze-forget-edit: the rate of choosing the new"
        print "sport). How much of its change does an edit need, and what does going further cost the"
        print "facts it should keep?\n"
        return
    }
    print "\n## Strength of the unlearning\n"
    print "Each localization's unlearning delta applied at strength S when the model is loaded"
    print "(mu-forward --scaled-delta S=unlearn-LOC.st: every weight it changed set to w0 + S (w - w0),"
    print "w0 the learned model's; S = 0 is the learned model, 1 the unlearned one): choice accuracy on"
    print "the " stems_text() ". How much of its change does a localization's removal"
    print "need, and what does going further cost the facts it should keep?\n"
}
function stems_text(   i, s) {
    for (i = 1; i <= nt; i++) s = s (i > 1 ? " / " : "") T[i]
    return s " prompts"
}
END {
    strengths()
    intro()
    for (j = 1; j <= ns; j++) H[j] = sprintf("S = %g", S[j])
    table_head("localization", H, ns)
    for (i = 1; i <= nl; i++) {
        printf "| %s |", L[i]
        for (j = 1; j <= ns; j++) printf " %s |", cell(L[i], S[j])
        printf "\n"
    }
    printf "\nPrompts per cell: %s. The widest 95%% interval (Wilson) of a scaled model's accuracy\n", counts()
    printf "is ±%.2f: cells closer than that are not told apart by these prompts.\n", half
    if (nw) paired_tables()
}
# strength-paired.tsv's comparisons: a table per baseline, the strengths it holds as columns
function paired_tables(   i, j, k, n, t, P, H) {
    for (j = 1; j <= ns; j++) if (S[j] in pscale) { P[++n] = S[j]; H[n] = sprintf("S = %g", S[j]) }
    print "\nEach localization against a baseline at the same strength, prompt by prompt"
    print "(strength-paired.tsv, mu-score --paired): its accuracy minus the baseline's, the 95%"
    print "interval (Newcombe's for paired proportions) and McNemar's exact p."
    if (pholm) print holm_note(npc, "strength-paired.tsv")
    for (i = 1; i <= nw; i++) {
        printf "\nAgainst %s:\n\n", W[i]
        table_head("localization | prompts", H, n)
        for (k = 1; k <= nl; k++) {
            if (L[k] == W[i]) continue
            for (t = 1; t <= nt; t++) {
                printf "| %s | %s |", L[k], T[t]
                for (j = 1; j <= n; j++) printf " %s |", pcell(W[i], L[k], T[t], P[j])
                printf "\n"
            }
        }
    }
}
function pcell(w, l, t, s) { return ((w, l, t, s) in pc) ? pc[w, l, t, s] : "–" }
function counts(   i, s) {
    for (i = 1; i <= nt; i++) s = s (i > 1 ? " / " : "") cnt[T[i]]
    return s
}
