# soft-report.awk — the report's soft prompt attack section (pipelines/sports.mk, SOFT=N).
# Files: scores.tsv (held-out accuracy of each model before the attack), soft.tsv (after
# it: mu-score metric, group "model=M,fmt=F", value, n, interval) and soft-paired.tsv
# (paired_rows: baseline, kind, localization, FORMAT-heldout, difference, facts, interval,
# McNemar's p) and soft-near.tsv (each attack's vectors beside the tokens: "M embedding
# MEAN MIN MAX" and "M vector SLOT NORM COS TOKEN", the token as jq's @tsv writes it) and
# soft-projected.tsv (as soft.tsv, with each vector replaced by its nearest token's row).
# Variables: n, steps, lr, models (base and the localizations), formats. With attack-lib.awk.
BEGIN { FS = "\t"; nf = split(formats, F, " "); nm = split(models, M, " ") }
FILENAME == ARGV[1] && $1 == "choice_acc" { before[group_of($2)] = $3; next }
FILENAME == ARGV[2] && $1 == "choice_acc" { k = group_of($2); after[k] = $3; cnt[k] = $4; lo[k] = $5; hi[k] = $6; next }
FILENAME == ARGV[3] && ($2 == "softattacked" || $2 == "softprojected") { read_paired(); next }
FILENAME == ARGV[5] && $1 == "choice_acc" { k = group_of($2); proj[k] = sprintf("%.2f [%.2f, %.2f]", $3, $5, $6); next }
FILENAME == ARGV[4] && $2 == "embedding" { emb[$1] = $3; next }
FILENAME == ARGV[4] && $2 == "vector" {
    nv[$1]++; vnorm[$1] += $4; vcos[$1] += $5
    if (!($1 in cmin) || $5 < cmin[$1]) cmin[$1] = $5
    if (!($1 in cmax) || $5 > cmax[$1]) cmax[$1] = $5
    toks[$1] = toks[$1] (nv[$1] > 1 ? " " : "") "\"" md_cell($6) "\""
    next
}
END {
    printf "\n## Soft prompt attack\n\n"
    printf "%d vectors before every prompt (after the BOS), trained with every weight frozen (mu-train\n", n
    printf "--soft-tokens %d: learn, %d steps at lr %s) on the relearn half of the forget facts (cloze and\n", n, steps, lr
    print "question prompts), then tested on the held-out half: does some input bring back facts the"
    print "unlearning removed, without changing a weight? The base model (never taught the facts) meets"
    print "the same attack: what a soft prompt gets without the facts. Held-out accuracy before the"
    print "attack, and after it with its 95% interval (Wilson):"
    before_after_table()
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
    cells_table(proj)
    for (w = 1; w <= nw; w++)
        paired_table("softattacked", W[w], "Paired with " W[w] " after the attack, fact by fact: each localization's held-out accuracy")
    for (w = 1; w <= nw; w++)
        paired_table("softprojected", W[w], "Paired with " W[w] ", the attack as a hard prompt, fact by fact: each localization's held-out accuracy")
}
