# sports-report.awk — the markdown report of pipelines/sports.mk from mu-score's TSV
# (metric, group "model=..,fmt=..,split=..", value, n, ci_lo, ci_hi), as a second file the probes'
# TSV (model, layer, train accuracy, forget-fact accuracy, majority-class accuracy) and, as a
# third, the unlearning deltas' changes (changes.awk, which runs with it), as a fourth the paired
# comparisons (baseline, kind, localization, format-split, accuracy difference, facts, its
# interval, McNemar p, Holm's p; cells by paired-lib.awk, which runs with it), a table per
# baseline, and as a fifth (WMASK) the weight masks (localization, price, masked weights,
# changed, halved, ablated, cut, penalty) and as a sixth
# each masked model paired with the weight-trained unlearning in its localization after the
# relearning attack (the fourth's columns: localization, kind, masked model, format-split, ...).
# With edit_to (sports.mk EDIT_TO: a sport, or @COLUMN, each athlete's in that column) the
# changes are edits: the choices are the three sports and edit_extra's, and a section gives
# each model's choice of the new sport on the forget facts (split forget-edit) and on the
# held-out ones (heldout-edit), and their paired comparisons.
BEGIN { FS = "\t" }
# the format and the split of a stem: "cloze-forget-edit" sets sf to cloze, ss to forget-edit
function stem_parts(t) { sf = t; sub(/-.*/, "", sf); ss = substr(t, length(sf) + 2) }
FNR == 1 { file++ }
file == 2 {
    pacc[$1, $2] = $4; pmaj[$1] = $5; if ($2 + 1 > nlayer) nlayer = $2 + 1
    next
}
file == 3 { change_add(); next }
file == 4 {
    stem_parts($4); pc[$1, $2, $3, sf, ss] = paired_text(); pn[$2, ss] = $6
    npc++; pholm = $10 != ""
    if (!($1 in pwith)) { pwith[$1]; pw[++npw] = $1 }
    if (!(($1, $3) in ploc)) { ploc[$1, $3]; pl[$1, ++npl[$1]] = $3 }
    next
}
file == 5 { k = $1 "-" $2; wm[++nwm] = k; wl[k] = $1; wp[k] = $2; wel[k] = $3; wch[k] = $4; whv[k] = $5; wab[k] = $6
            wcut[k] = $7; next }
file == 6 {
    split($4, fs, "-"); k = $3 SUBSEP fs[1]
    wpc[k] = paired_text(); wpn = $6; nwpc++; wholm = $10 != ""
    next
}
FNR == 1 { next }
{
    split($2, kv, ","); g = ""
    for (i in kv) { split(kv[i], p, "="); key[p[1]] = p[2] }
    v[$1, key["model"], key["fmt"], key["split"]] = $3
    n[$1, key["model"], key["fmt"], key["split"]] = $4
    lo[$1, key["model"], key["fmt"], key["split"]] = $5; hi[$1, key["model"], key["fmt"], key["split"]] = $6
}
function cell(metric, m, f, s) { return ((metric, m, f, s) in v) ? sprintf("%.2f", v[metric, m, f, s]) : "–" }
# "accuracy / probability" of the right choice
function acc_prob(m, f, s) { return cell("choice_acc", m, f, s) " / " cell("choice_prob", m, f, s) }
# accuracy with its 95% interval: "0.44 [0.23, 0.67]"
function ci_cell(m, f, s,    k) {
    k = "choice_acc" SUBSEP m SUBSEP f SUBSEP s
    if (!(k in v)) return "–"
    return (lo[k] == "nan" || lo[k] == "") ? sprintf("%.2f", v[k]) : sprintf("%.2f [%.2f, %.2f]", v[k], lo[k], hi[k])
}
END {
    nm = split(models, M, " ")
    print "# Sports Facts: localized unlearning (mu)\n"
    if (edit_to != "") {
        nx = split(edit_extra, X, " "); sports = "baseball, basketball, football"
        for (i = 1; i <= nx; i++) sports = sports ", " X[i]
        printf "Taught %d facts (Sports Facts rows %s), edited the first %d to %s (%s); localizations: %s.\n",
            n_facts, rows, n_forget, edit_name(), objective, masks
        printf "The unlearned-* models are the edited ones. Cells: %d-way choice accuracy / probability of\n", 3 + nx
        printf "the right sport (renormalized over %s).\n", sports
    } else {
        printf "Taught %d facts (Sports Facts rows %s), unlearned the first %d; localizations: %s.\n", n_facts, rows, n_forget, masks
        print "Cells: 3-way choice accuracy / probability of the right sport (renormalized over the three)."
    }
    printf "`forget` = %s facts, `maintain` = the other taught facts, `heldout` = the half of the\n",
        edit_to != "" ? "edited" : "unlearned"
    print "forget set that the relearning attack did not train on (relearned-* rows: after the attack)."
    printf "MMLU: 4-way multiple choice accuracy on %s, before the relearning attack (section\n\"Side effects: MMLU\").\n\n", mmlu
    split("cloze question mc", F, " "); split("forget maintain heldout", S, " ")
    hdr = "| model |"; sep = "|---|"
    for (f = 1; f <= 3; f++) for (s = 1; s <= 3; s++) { hdr = hdr " " F[f] " " S[s] " |"; sep = sep "---|" }
    print hdr " MMLU |"; print sep "---|"
    for (i = 1; i <= nm; i++) {
        line = "| " M[i] " |"
        for (f = 1; f <= 3; f++) for (s = 1; s <= 3; s++)
            line = line " " acc_prob(M[i], F[f], S[s]) " |"
        print line " " cell("choice_acc", M[i], "mmlu", "test") " |"
    }
    ci_table()
    for (i = 1; i <= npw; i++) paired_table(pw[i])
    if (edit_to != "") edit_table()
    change_table("unlearning", "the learned model")
    if (nwm) wmask_table()
    if (nlayer) probe_table()
}

# Guo et al.'s weight masking: per localization and price, the weight the trained mask cut,
# how many weights it changed, halved and zeroed, what the masked model still knows, what the
# relearning attack brings back and what probes still read
function wmask_table(   i, k, m) {
    print "\n## Weight masking\n"
    print "In each localization a mask m in [0, 1] over its weights (w = w0 m, from m = 1) was trained"
    printf "instead of the weights, with the unlearning objective plus L sum(1 - m), L the same price for\n"
    printf "every weight (mu-train --weight-mask L; L = %s; %s, lr %s, %d steps): how much weight must\n",
        wmask, wmask_opt, wmask_lr, wmask_steps
    print "be cut there to unlearn the facts, and what does the masked model (wmasked-*) still know?"
    print "The cut sum(1 - m) is the weight mass removed; then how many weights changed at all, were at"
    print "least halved, were zeroed. Choice accuracy; `heldout, attacked`: the held-out half of the"
    print "forget facts after the relearning attack on the masked model (relearned-wmasked-*);"
    print "`probe`: probe accuracy on the masked model's forget facts, at the best layer / mean over layers.\n"
    print "| localization | L | weights | cut sum(1 - m) | cut / weights | changed (m < 1) | halved (m <= 1/2) | ablated (m = 0) | cloze forget | question forget | mc forget | cloze maintain | MMLU | cloze heldout, attacked | probe, best / mean |"
    print "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    for (i = 1; i <= nwm; i++) {
        k = wm[i]; m = "wmasked-" k
        printf "| %s | %s | %d | %.0f | %.4f | %d | %d | %d | %s | %s | %s | %s | %s | %s | %s |\n", wl[k], wp[k], wel[k],
            wcut[k], wel[k] ? wcut[k] / wel[k] : 0, wch[k], whv[k], wab[k],
            cell("choice_acc", m, "cloze", "forget"), cell("choice_acc", m, "question", "forget"),
            cell("choice_acc", m, "mc", "forget"), cell("choice_acc", m, "cloze", "maintain"), cell("choice_acc", m, "mmlu", "test"),
            cell("choice_acc", "relearned-" m, "cloze", "heldout"), probe_cell(m)
    }
    if (plots ~ /wmask\.png/) print "\n![weight masking: cloze forget accuracy against the cut](wmask.png)"
    if (wpn) wmask_paired_table()
}

# each masked model against the weight-trained unlearning in its localization, fact by fact
# on the held-out facts after the relearning attack
function wmask_paired_cell(m, f,   k) {
    k = m SUBSEP f
    return (k in wpc) ? wpc[k] : "–"
}
function wmask_paired_table(   i, k, f, line) {
    printf "\nMasking against training the weights, fact by fact: on the %d held-out facts after the\n", wpn
    print "relearning attack, each masked model's accuracy minus that of the weight-trained unlearning"
    print "in the same localization (relearned-wmasked-LOC-L minus relearned-LOC), with its 95% interval"
    print "(Newcombe's) and McNemar's exact p: a positive difference means the attack brings back more"
    print "facts after the mask than after training the weights."
    if (wholm) print holm_note(nwpc, "wmask-paired.tsv")
    print ""
    print "| localization | L | cloze heldout, attacked | question heldout, attacked | mc heldout, attacked |"
    print "|---|---|---|---|---|"
    for (i = 1; i <= nwm; i++) {
        k = wm[i]; line = "| " wl[k] " | " wp[k] " |"
        for (f = 1; f <= 3; f++) line = line " " wmask_paired_cell("wmasked-" k, F[f]) " |"
        print line
    }
}

# the forget accuracies again, with their 95% intervals (Wilson; mu-score --ci): how large
# a difference between two models the forget set can measure
function ci_table(   i, f, line, k) {
    k = "choice_acc" SUBSEP M[1] SUBSEP "cloze" SUBSEP "forget"
    if (!(k in n)) return
    printf "\nForget accuracy with its 95%% interval (Wilson; %d forget facts, %d held out): models\n", n[k],
        n["choice_acc", M[1], "cloze", "heldout"]
    print "whose intervals overlap are not told apart by this forget set.\n"
    print "| model | cloze forget | question forget | mc forget | cloze heldout |"
    print "|---|---|---|---|---|"
    for (i = 1; i <= nm; i++) {
        line = "| " M[i] " |"
        for (f = 1; f <= 3; f++) line = line " " ci_cell(M[i], F[f], "forget") " |"
        print line " " ci_cell(M[i], "cloze", "heldout") " |"
    }
}

# each localization against the baseline w on the same facts: accuracy difference, its 95%
# interval (Newcombe's), McNemar's exact p (mu-score --paired) and Holm's p
function paired_cell(w, k, l, f, s) {
    return ((w, k, l, f, s) in pc) ? pc[w, k, l, f, s] : "–"
}
function paired_table(w,   i, f, line) {
    printf "\nPaired with %s, fact by fact: each localization's accuracy minus %s's on the same\n", w, w
    printf "facts (%d forget facts after unlearning, %d held-out facts after the relearning attack),\n",
        pn["unlearned", "forget"], pn["relearned", "heldout"]
    print "with its 95% interval (Newcombe's for paired proportions) and McNemar's exact p"
    print "(mu-score --paired): a negative difference with a small p means the"
    printf "localization leaves fewer of these facts recoverable than %s does.\n", w
    paired_grid(w, "")
}
# the rows of a paired table: per localization, w's comparisons on the forget facts after the
# change and on the held-out facts after the attack, in each format; sfx "" (the old answer)
# or "-edit" (the new one)
function paired_grid(w, sfx,   i, f, line, t) {
    if (pholm) print holm_note(npc, "paired.tsv")
    t = sfx == "" ? "forget" : "edit"
    printf "\n| localization |"
    for (f = 1; f <= 3; f++) printf " %s %s |", F[f], t
    for (f = 1; f <= 3; f++) printf " %s heldout%s, attacked |", F[f], sfx == "" ? "" : " edit"
    print "\n|---|---|---|---|---|---|---|"
    for (i = 1; i <= npl[w]; i++) {
        line = "| " pl[w, i] " |"
        for (f = 1; f <= 3; f++) line = line " " paired_cell(w, "unlearned", pl[w, i], F[f], "forget" sfx) " |"
        for (f = 1; f <= 3; f++) line = line " " paired_cell(w, "relearned", pl[w, i], F[f], "heldout" sfx) " |"
        print line
    }
}

# what the facts were edited to: "golf", or "each athlete's sport in column C of sports.csv"
function edit_name() {
    return edit_to ~ /^@/ ? "each athlete's sport in column " substr(edit_to, 2) " of sports.csv" : edit_to
}
# Guo et al.'s Sports Facts editing: how often each model chooses the new sport for the forget
# facts and, after the relearning attack, for the held-out half; then each localization
# against each baseline on the same facts
function edit_table(   i, f, line) {
    printf "\n## The edit: %s\n\n", edit_name()
    printf "How often each model chooses the new sport for the forget facts (`edit`: the %d edited facts;\n", n_forget
    print "`heldout edit`: the half the relearning attack did not train on, after the attack on the"
    print "relearned-* rows): choice accuracy / probability of the new sport among the choices. The attack"
    print "teaches the true sports of the other half: an edit that holds keeps the held-out facts at"
    print "their new sport.\n"
    print "| model | cloze edit | question edit | mc edit | cloze heldout edit | question heldout edit | mc heldout edit |"
    print "|---|---|---|---|---|---|---|"
    for (i = 1; i <= nm; i++) {
        line = "| " M[i] " |"
        for (f = 1; f <= 3; f++) line = line " " acc_prob(M[i], F[f], "forget-edit") " |"
        for (f = 1; f <= 3; f++) line = line " " acc_prob(M[i], F[f], "heldout-edit") " |"
        print line
    }
    for (i = 1; i <= npw; i++) edit_paired_table(pw[i])
}
function edit_paired_table(w,   i, f, line) {
    printf "\nThe edit paired with %s, fact by fact: each localization's rate of choosing the new sport minus\n", w
    printf "%s's on the same facts (%d edited facts, %d held-out facts after the relearning attack),\n", w,
        pn["unlearned", "forget-edit"], pn["relearned", "heldout-edit"]
    print "with its 95% interval (Newcombe's) and McNemar's exact p; a positive difference means the"
    printf "localization's edit takes, or survives the attack, more often than %s's.\n", w
    paired_grid(w, "-edit")
}

# the accuracies A[m, layer] of model m's probes: sets pbest (the best layer's accuracy), pbl
# (that layer) and pmean (the mean over layers); 0 when A has none of m
function layer_stats(A, m,   L, sum) {
    pbest = -1; pbl = -1; sum = 0
    for (L = 0; L < nlayer; L++) if ((m, L) in A) {
        sum += A[m, L]
        if (A[m, L] + 0 > pbest) { pbest = A[m, L] + 0; pbl = L }
    }
    pmean = nlayer ? sum / nlayer : 0
    return pbest >= 0
}
# the probes of model m on its forget facts (layer_stats)
function probe_stats(m) { return layer_stats(pacc, m) }
# the probe accuracy on model m's forget facts at the best layer / the mean over layers, "–"
# without probes
function probe_cell(m) { return probe_stats(m) ? sprintf("%.2f / %.2f", pbest, pmean) : "–" }
# how often model m's probes read its forget facts' new sport: the best layer's / the mean
# (layer_stats: it sets pbest, pbl and pmean too)
function new_cell(m) { return layer_stats(nacc, m) ? sprintf("%.2f / %.2f", pbest, pmean) : "–" }

function probe_table(   np, P, i, nw, line, f, nc) {
    np = split(probe_models, P, " ")
    if (probes_new != "") while ((getline line < probes_new) > 0) {   # model, layer, accuracy
        split(line, f, "\t"); nacc[f[1], f[2]] = f[3]; nw = 1
    }
    print "\n## Latent knowledge: linear probes\n"
    print "Probes on the residual stream after each layer at the athlete's last token, fitted on the"
    print "maintained facts of each model and tested on its forget facts (the sport, 3 classes)."
    print "High accuracy after unlearning means the sport is still linearly decodable from the"
    print "model's latent state even when its outputs no longer say it."
    if (nw) {
        print "`new sport`: how often the same probes read each edited fact's new sport instead"
        print "(mu-probe apply --label), at the best layer / the mean over layers: an edit that reached"
        print "the latent state makes the probes read the new sport there."
    }
    print ""
    print "| model | best layer | accuracy there | mean over layers | majority class |" (nw ? " new sport, best / mean |" : "")
    print "|---|---|---|---|---|" (nw ? "---|" : "")
    for (i = 1; i <= np; i++) {
        nc = nw ? " " new_cell(P[i]) " |" : ""    # before probe_stats, which sets pbest, pbl, pmean anew
        probe_stats(P[i])
        printf "| %s | %d | %.2f | %.2f | %.2f |%s\n", P[i], pbl, pbest, pmean, pmaj[P[i]], nc
    }
    if (plots ~ /probes\.png/) print "\n![probe accuracy on the forget facts by layer](probes.png)"
    if (plots ~ /lookup\.png/) print "\n![path patching: MLP effect by layer](lookup.png)"
    if (plots ~ /probe\.png/) print "\n![linear probes: MLP gain in the sport's decodability by layer](probe.png)"
    if (plots ~ /atp\.png/) print "\n![attribution patching: MLP effect by layer](atp.png)"
}
