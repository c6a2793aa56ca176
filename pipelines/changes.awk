# changes.awk — the report table of where a pipeline's training moved the weights, shared by
# its report scripts (awk -f pipelines/changes.awk -f pipelines/X-report.awk). Its input: the
# changes TSV of changes_recipe (pipelines/common.mk; mu-dump --stats): localization, tensor,
# layer, role, L2 norm of the change, that over the L2 norm of the values before it.

# Takes one row of the changes TSV ($1..$6).
function change_add() {
    nch[$1]++; ch2[$1] += $5 * $5
    if ($6 > 0) before2[$1] += ($5 / $6) * ($5 / $6)
    chl[$1, nch[$1]] = $3 "." $4; chr[$1, nch[$1]] = $6 + 0
    if (!(($1, $3) in chlayer)) { chlayer[$1, $3] = 1; nchl[$1]++ }
}

# The three tensors of localization l that moved most relative to their norm: "5.down 0.005, ..."
function change_top(l,   top, j, best, line, used) {
    for (top = 1; top <= 3 && top <= nch[l]; top++) {
        best = 0
        for (j = 1; j <= nch[l]; j++)
            if (!(j in used) && (!best || chr[l, j] > chr[l, best])) best = j
        used[best] = 1
        line = line (top > 1 ? ", " : "") sprintf("%s %.3g", chl[l, best], chr[l, best])
    }
    return line
}

# Per localization (in the order of masks, "l=desc l=desc ..."): how many tensors (of how many
# layers) the training changed, the L2 norm of the whole change and that relative to those
# tensors' norm, and the tensors that moved most. what: "unlearning", on_top: what it trained on.
function change_table(what, on_top,   ML, i, kv, l) {
    if (!length(nch)) return
    printf "\n## Where %s moved the weights\n\n", what
    printf "The %s delta of each localization, on top of %s (`mu-dump --stats`): the tensors\n", what, on_top
    print "it changed, the L2 norm of the whole change and that relative to their norm, and the"
    print "three tensors that moved most relative to their norm (layer.role relative change).\n"
    print "| localization | tensors (layers) | change L2 | relative | moved most |"
    print "|---|---|---|---|---|"
    split(masks, ML, " ")
    for (i = 1; i in ML; i++) {
        split(ML[i], kv, "="); l = kv[1]
        if (!(l in nch)) continue
        printf "| %s | %d (%d) | %.3g | %.3g | %s |\n", l, nch[l], nchl[l], sqrt(ch2[l]),
            (before2[l] > 0 ? sqrt(ch2[l] / before2[l]) : 0), change_top(l)
    }
}
