# oracle-report.awk — the markdown report of pipelines/oracle.mk. Input: tab-separated lines
#   base|injected  METRIC  SPLIT  VALUE  N        (the models' mu-score metrics)
#   log  STEP  FORGET_ACC  FORGET_NLL  RETAIN_ACC  RETAIN_NLL   (the injection's evaluations)
#   overlap  MASK  FRACTION  INSIDE  PARAMS       (pipelines/oracle-overlap.py)
#   curve  MASK  OBJ  METRIC  GROUP  VALUE  N     (mu-score --curve TSV rows)
# Variables: masks, objectives, lrs (space-separated), objlrs (NAME:LR,LR... each), frac, tensors, model, forget, steps,
# objspecs (NAME:SPEC, space-separated), plots (the PNG files beside the report). Needs
# pipelines/lee-report.awk.
BEGIN { FS = "\t" }
$1 == "base" || $1 == "injected" { m[$1, $2, $3] = $4; cnt[$3] = $5; next }
$1 == "log" { if (!nlog++) first = $0; last = $0; next }
$1 == "overlap" { ov[$2] = $3; ovin[$2] = $4; ovn[$2] = $5; next }
$1 == "curve" {
    if ($4 == "aues" || $4 == "aues_rouge" || $4 == "mu95") c[$2, $3, $4] = $6
    else if ($4 == "forget_strength" || $4 == "retention") curve_point($2, $3, $4, $5, $6)
    next
}
function num(k) { return (k in m) ? sprintf("%.4f", m[k]) : "–" }
function f2(x) { return sprintf("%.2f", x) }
function f3(x) { return (x == "nan") ? "n/a" : sprintf("%.3f", x) }
# the largest forget strength among the runs that keep >= 95% of the retain probability
# (0: the injected model itself)
function best95(mk, o,    i, x, b) {
    b = 0
    for (i = 1; i <= nl; i++)
        if (ret[mk, o, L[i]] >= 0.95 && (x = rem[mk, o, L[i]]) > b) b = x
    return b
}
function logline(s, what,    f) { split(s, f, "\t"); return sprintf("step %d: forget token accuracy %.3f (NLL %.3f), held-out retain %.3f (NLL %.3f)", f[2], f[3], f[4], f[5], f[6]) }
END {
    nm = split(masks, M, " "); no = split(objectives, O, " "); nl = split(lrs, L, " ")
    ns = split(objspecs, S, " "); specs = ""
    for (i = 1; i <= ns; i++) { sub(/:/, " (", S[i]); specs = specs (i > 1 ? ", " : "") S[i] ")" }
    print "# Oracle region: does localization inform unlearning? (mu)\n"
    printf "Model `%s`. Region: a random %s of the model's parameters in `%s` value vectors.\n", model, frac, tensors
    printf "The TOFU forget set (%s: %d questions) was injected there (mu-train learn +\n", forget, cnt["forget"]
    print "retain-kl, masked to the region). Each mask below has the region's size; each was used to"
    printf "unlearn with each objective (%s) %s, %d steps each, on top\n", specs, lrs_text(no, O), steps
    printf "of the injected model. Retention is measured on %d held-out retain questions.\n\n", cnt["retain"]
    print "## The injected model\n"
    print "Forget quality: the KS-test p-value of the forget truth ratios against the base model's"
    print "(high: indistinguishable from the model that never saw the forget set; 1 for the base).\n"
    print "| model | forget answer prob | forget ROUGE-L | forget truth ratio | forget quality | held-out retain answer prob |"
    print "|---|---|---|---|---|---|"
    split("base injected", MM, " ")
    for (i = 1; i <= 2; i++)
        printf "| %s | %s | %s | %s | %s | %s |\n", MM[i], num(MM[i] SUBSEP "answer_prob" SUBSEP "forget"),
            num(MM[i] SUBSEP "rougeL_recall" SUBSEP "forget"), num(MM[i] SUBSEP "truth_ratio" SUBSEP "forget"),
            g3(m[MM[i], "forget_quality", "forget"]), num(MM[i] SUBSEP "answer_prob" SUBSEP "retain")
    if (nlog) printf "\nInjection (mu-train --eval): %s; %s.\n", logline(first), logline(last)
    print "\n## Unlearning with masks of equal size\n"
    print "`overlap`: the fraction of the mask's parameters inside the region (localization precision)."
    print "`AUES`: area under the removal–retention curve of the learning-rate sweep (mu-score --curve;"
    print "forget score the forget answer probability, or ROUGE-L of a greedy generation; retention the"
    print "held-out retain answer probability; relative to the injected model). `drop@95`: the largest"
    print "fraction of the forget answer probability removed by a run that keeps >= 95% of the retain"
    print "probability. `MU95`: the best forget quality among those runs (n/a: none keeps 95%). `runs`:"
    print "forget drop / retention of each learning rate.\n"
    print "| mask | objective | overlap | AUES (prob) | AUES (ROUGE-L) | drop@95 | MU95 | runs |"
    print "|---|---|---|---|---|---|---|---|"
    for (i = 1; i <= nm; i++) for (j = 1; j <= no; j++) {
        mk = M[i]; o = O[j]; pts = ""; set_lrs(o)
        for (k = 1; k <= nl; k++) {
            pts = pts (k > 1 ? ", " : "") f2(rem[mk, o, L[k]]) "/" f2(ret[mk, o, L[k]])
        }
        b = best95(mk, o); sum[mk] += c[mk, o, "aues"]; drop[mk] += b
        printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", mk, o, (mk in ov) ? f3(ov[mk]) : "–",
            f3(c[mk, o, "aues"]), f3(c[mk, o, "aues_rouge"]), f3(b), g3(c[mk, o, "mu95"]), pts
    }
    plot_images(plots)
    print "\n## What the table shows\n"
    for (j = 1; j <= no; j++)
        printf "- %s: AUES (prob) from %s; oracle %s, random %s, complement %s.\n", O[j], aues_range(O[j]),
            f3(c["oracle", O[j], "aues"]), f3(c["random", O[j], "aues"]), f3(c["complement", O[j], "aues"])
    for (j = 1; j <= no; j++)
        printf "- %s: MU95 oracle %s, random %s, complement %s (the injected model's forget quality %s).\n", O[j],
            g3(c["oracle", O[j], "mu95"]), g3(c["random", O[j], "mu95"]), g3(c["complement", O[j], "mu95"]),
            g3(m["injected", "forget_quality", "forget"])
    line = "- Overlap with the region:"
    for (i = 1; i <= nm; i++) if (M[i] in ov) line = line sprintf(" %s %s%s", M[i], f3(ov[M[i]]), i < nm ? "," : ".")
    print line
    for (j = 1; j <= no; j++) if ((line = null_line(O[j])) != "") { print line; spread = 1 }
    for (j = 1; j <= no; j++) if ((line = sweep_line(O[j])) != "") print line
    for (i = 1; i <= nm; i++) mean[M[i]] = sum[M[i]] / no
    printf "- Masks by mean AUES (prob) over the objectives: %s.\n", rank_masks(mean, R)
    for (i = 1; i <= nm; i++) if (R[i] == "oracle") pos = i
    printf "- The oracle region ranks %d of %d; its mean AUES differs from the random mask's by %+.3f and from\n", pos, nm, mean["oracle"] - mean["random"]
    printf "  the complement's by %+.3f (%s).\n", mean["oracle"] - mean["complement"],
        spread ? "one region; read against the random masks' spread above" : "one region, one seed: no spread is measured"
}
