# soft-report.awk — the report's soft prompt attack section (pipelines/sports.mk, SOFT=N).
# Files: scores.tsv (held-out accuracy of each model before the attack), soft.tsv (after
# it: mu-score metric, group "model=M,fmt=F", value, n, interval) and soft-paired.tsv
# (paired_rows: baseline, kind, localization, FORMAT-heldout, difference, facts, interval,
# McNemar's p) and soft-near.tsv (each attack's vectors beside the tokens: "M embedding
# MEAN MIN MAX" and "M vector SLOT NORM COS TOKEN", the token as jq's @tsv writes it) and
# soft-projected.tsv (as soft.tsv, with each vector replaced by its nearest token's row).
# Variables: n, steps, lr, models (base and the localizations), formats.
BEGIN { FS = "\t"; nf = split(formats, F, " "); nm = split(models, M, " ") }
function group_of(s,   a, i, k, n2, kv) {     # "model=M,fmt=F[,split=S]" -> "M F S"
    n2 = split(s, a, ",")
    k = ""
    for (i = 1; i <= n2; i++) { split(a[i], kv, "="); k = k (i > 1 ? SUBSEP : "") kv[2] }
    return k
}
FILENAME == ARGV[1] && $1 == "choice_acc" { before[group_of($2)] = $3; next }
FILENAME == ARGV[2] && $1 == "choice_acc" { k = group_of($2); after[k] = $3; cnt[k] = $4; lo[k] = $5; hi[k] = $6; next }
FILENAME == ARGV[3] && ($2 == "softattacked" || $2 == "softprojected") {
    sub(/-heldout$/, "", $4)
    k = $2 SUBSEP $1 SUBSEP $3 SUBSEP $4
    pd[k] = $5; plo[k] = $7; phi[k] = $8; pp[k] = $9
    if (!($1 in seen_w)) { seen_w[$1] = 1; W[++nw] = $1 }
    if (!(($1, $3) in seen_l)) { seen_l[$1, $3] = 1; L[$1, ++nl[$1]] = $3 }
}
FILENAME == ARGV[5] && $1 == "choice_acc" { k = group_of($2); proj[k] = sprintf("%.2f [%.2f, %.2f]", $3, $5, $6); next }
FILENAME == ARGV[4] && $2 == "embedding" { emb[$1] = $3; next }
FILENAME == ARGV[4] && $2 == "vector" {
    nv[$1]++; vnorm[$1] += $4; vcos[$1] += $5
    if (!($1 in cmin) || $5 < cmin[$1]) cmin[$1] = $5
    if (!($1 in cmax) || $5 > cmax[$1]) cmax[$1] = $5
    toks[$1] = toks[$1] (nv[$1] > 1 ? " " : "") "\"" md_cell($6) "\""
    next
}
# a token (jq's @tsv escapes \t \n \r \\ kept, visible) made fit for a table cell
function md_cell(t) { gsub(/\|/, "\\|", t); gsub(/`/, "\\`", t); return t }
# the model a soft prompt attacked: base, or LOC's unlearned model
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
    return (k in pd) ? sprintf("%+.2f [%+.2f, %+.2f] (p %.2g)", pd[k], plo[k], phi[k], pp[k]) : "–"
}
END {
    printf "\n## Soft prompt attack\n\n"
    printf "%d vectors before every prompt (after the BOS), trained with every weight frozen (mu-train\n", n
    printf "--soft-tokens %d: learn, %d steps at lr %s) on the relearn half of the forget facts (cloze and\n", n, steps, lr
    print "question prompts), then tested on the held-out half: does some input bring back facts the"
    print "unlearning removed, without changing a weight? The base model (never taught the facts) meets"
    print "the same attack: what a soft prompt gets without the facts. Held-out accuracy before the"
    print "attack, and after it with its 95% interval (Wilson):"
    printf "\n| model |"
    for (f = 1; f <= nf; f++) printf " %s before | %s after |", F[f], F[f]
    printf "\n|---|"
    for (f = 1; f <= nf; f++) printf "---|---|"
    printf "\n"
    for (i = 1; i <= nm; i++) {
        printf "| %s |", model_of(M[i])
        for (f = 1; f <= nf; f++) printf " %s | %s |", acc_before(M[i], F[f]), acc_after(M[i], F[f])
        printf "\n"
    }
    printf "\nWhere the vectors lie (mu-dump --soft-prompt --model): their mean L2 norm beside the mean\n"
    print "of the input embedding's rows, the cosine of each vector with the row of its nearest token"
    print "(mean [least, greatest]; near 1: a token could stand in for the vector), and those tokens,"
    print "one per vector, in slot order:"
    printf "\n| model | vector norm (rows) | nearest-token cosine | nearest tokens |\n|---|---|---|---|\n"
    for (i = 1; i <= nm; i++) {
        m = M[i]
        if (!nv[m]) { printf "| %s | – | – | – |\n", model_of(m); continue }
        printf "| %s | %.2f (%.2f) | %.2f [%.2f, %.2f] | %s |\n", model_of(m), vnorm[m] / nv[m], emb[m],
               vcos[m] / nv[m], cmin[m], cmax[m], toks[m]
    }
    printf "\nThe attack as a hard prompt (mu-forward --soft-project: each vector replaced by its nearest\n"
    print "token's row, an input anyone could type): held-out accuracy with its 95% interval (Wilson)."
    print "Where it falls back to the accuracy before the attack, the attack worked through directions"
    print "no token has:"
    printf "\n| model |"
    for (f = 1; f <= nf; f++) printf " %s |", F[f]
    printf "\n|---|"
    for (f = 1; f <= nf; f++) printf "---|"
    printf "\n"
    for (i = 1; i <= nm; i++) {
        printf "| %s |", model_of(M[i])
        for (f = 1; f <= nf; f++) printf " %s |", ((M[i], F[f]) in proj) ? proj[M[i], F[f]] : "–"
        printf "\n"
    }
    for (kk = 1; kk <= 2; kk++)
        for (w = 1; w <= nw; w++) paired_table(kk == 1 ? "softattacked" : "softprojected", W[w])
}
# each localization's held-out accuracy minus w's, fact by fact, after the attack (kind
# softattacked) or with the attack as a hard prompt (softprojected)
function paired_table(kind, w,   i, f) {
    if (kind == "softattacked") printf "\nPaired with %s after the attack, fact by fact: each localization's held-out accuracy\n", w
    else printf "\nPaired with %s, the attack as a hard prompt, fact by fact: each localization's held-out accuracy\n", w
    printf "minus %s's on the same facts, with its 95%% interval (Newcombe's) and McNemar's exact p.\n\n", w
    printf "| localization |"
    for (f = 1; f <= nf; f++) printf " %s |", F[f]
    printf "\n|---|"
    for (f = 1; f <= nf; f++) printf "---|"
    printf "\n"
    for (i = 1; i <= nl[w]; i++) {
        printf "| %s |", L[w, i]
        for (f = 1; f <= nf; f++) printf " %s |", paired(kind, w, L[w, i], F[f])
        printf "\n"
    }
}
