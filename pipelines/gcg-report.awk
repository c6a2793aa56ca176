# gcg-report.awk — the report's GCG attack section (pipelines/sports.mk, GCG=N).
# Files: scores.tsv (held-out accuracy of each model before the attack), gcg.tsv (after
# it: mu-score metric, group "model=M,fmt=F", value, n, interval), gcg-paired.tsv
# (paired_rows, kinds gcgattacked and gcgtyped), gcg-found.tsv ("M LOSS_START LOSS_KEPT
# TEXT IDS SAME PROMPTS": the relearn prompts' mean answer NLL with the starting tokens and
# the kept ones, the kept tokens as text, jq @tsv, their ids, how many held-out cloze
# prompts typed as text keep those ids, of how many) and gcg-typed.tsv (as gcg.tsv, the
# prompts led by the text instead).
# Variables: n, steps, topk, cand, models (those attacked), formats. With attack-lib.awk.
BEGIN { FS = "\t"; nf = split(formats, F, " "); nm = split(models, M, " ") }
FILENAME == ARGV[1] && $1 == "choice_acc" { before[group_of($2)] = $3; next }
FILENAME == ARGV[2] && $1 == "choice_acc" { k = group_of($2); after[k] = $3; cnt[k] = $4; lo[k] = $5; hi[k] = $6; next }
FILENAME == ARGV[3] && ($2 == "gcgattacked" || $2 == "gcgtyped") { read_paired(); next }
FILENAME == ARGV[4] { loss0[$1] = $2; loss1[$1] = $3; text[$1] = $4; same[$1] = $6 " of " $7; next }
FILENAME == ARGV[5] && $1 == "choice_acc" { k = group_of($2); typed[k] = sprintf("%.2f [%.2f, %.2f]", $3, $5, $6); next }
END {
    printf "\n## GCG attack\n\n"
    printf "%d real tokens before every prompt (after the BOS), searched with every weight frozen by\n", n
    printf "greedy coordinate gradient (mu-train --soft-tokens %d --gcg: learn, %d steps, each trying %d\n", n, steps, cand
    printf "single-token swaps drawn from the top %d tokens of each slot by the gradient; printable-ASCII\n", topk
    print "tokens only) on the relearn half of the forget facts (cloze and question prompts), then"
    print "tested on the held-out half: is there text someone could type that brings the facts back?"
    print "The tokens kept are those of the step that gave the relearn prompts the lowest loss."
    print "Held-out accuracy before the attack, and after it with its 95% interval (Wilson):"
    before_after_table()
    printf "\nWhat each search found: the relearn prompts' mean answer NLL with the starting tokens and\n"
    print "with those kept, the kept tokens decoded together, and how many held-out cloze prompts, led"
    print "by that text and tokenized anew, hold exactly the tokens searched:"
    printf "\n| model | loss start → kept | tokens | same ids typed |\n|---|---|---|---|\n"
    for (i = 1; i <= nm; i++) {
        m = M[i]
        if (!(m in text)) { printf "| %s | – | – | – |\n", model_of(m); continue }
        printf "| %s | %.3f → %.3f | `%s` | %s |\n", model_of(m), loss0[m], loss1[m], md_cell(text[m]), same[m]
    }
    printf "\nThe attack as typed text (each held-out prompt led by the tokens' text, tokenized anew):\n"
    print "held-out accuracy with its 95% interval (Wilson):"
    cells_table(typed)
    for (w = 1; w <= nw; w++)
        paired_table("gcgattacked", W[w], "Paired with " W[w] " after the GCG attack, fact by fact: each localization's held-out accuracy")
    for (w = 1; w <= nw; w++)
        paired_table("gcgtyped", W[w], "Paired with " W[w] ", the GCG attack typed as text, fact by fact: each localization's held-out accuracy")
}
