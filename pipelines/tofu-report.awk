# tofu-report.awk — the markdown report of pipelines/tofu.mk. Input: tab-separated lines
#   model  NAME  METRIC  SPLIT  VALUE        (mu-score metrics of every model; SPLIT - for
#                                           model_utility)
#   curve  MASK  OBJ  METRIC  GROUP  VALUE  N   (mu-score --curve TSV rows)
# Variables: masks, objectives, lrs (space-separated), objlrs (NAME:LR,LR... each), frac, tensors, model, forget,
# retain_rows, retain_eval, utility, steps, complement_of, objspecs (NAME:SPEC, space-separated),
# plots (the PNG files beside the report). Needs pipelines/lee-report.awk.
BEGIN { FS = "\t" }
$1 == "model" { m[$2, $3, $4] = $5; next }
$1 == "curve" {
    if ($4 == "aues" || $4 == "mu95" || $4 == "mu95_interp") c[$2, $3, $4] = $6
    else curve_point($2, $3, $4, $5, $6)
    next
}
function has(k) { return (k in m) }
function f3(x) { return (x == "" || x == "nan" || x == "-nan") ? "n/a" : sprintf("%.3f", x) }
function val(name, metric, sp) { return has(name SUBSEP metric SUBSEP sp) ? m[name, metric, sp] : "" }
function num(x) { return (x == "" || x == "nan" || x == "-nan") ? "" : x + 0 }
END {
    nm = split(masks, M, " "); no = split(objectives, O, " "); nl = split(lrs, L, " ")
    ns = split(objspecs, S, " "); specs = ""
    for (i = 1; i <= ns; i++) { sub(/:/, " (", S[i]); specs = specs (i > 1 ? ", " : "") S[i] ")" }
    print "# TOFU: does localization inform unlearning? (mu)\n"
    printf "Model `%s`, fine-tuned (every parameter) on the TOFU forget set (%s) and on\n", model, forget
    printf "retain90 rows %s; the retain model on those retain rows only.\n", retain_rows
    printf "Masks, each of %s of the model's parameters in `%s` value vectors: the top units\n", frac, tensors
    printf "of each attribution on the fine-tuned model, random units (`random`) and random units\n"
    printf "outside the `%s` mask (`complement`). Each mask was used to unlearn with each objective\n", complement_of
    printf "(%s) %s, %d steps each, on top of the fine-tuned model.\n", specs, lrs_text(no, O), steps
    print "Forget quality: the KS-test p-value of the forget truth ratios against the retain model's"
    print "(high: indistinguishable from a model that never saw the forget set). Model utility: the"
    printf "harmonic mean of probability, ROUGE-L and truth ratio on %s (retain: rows %s of\n", utility, retain_eval
    print "retain_perturbed, which the models learned).\n"
    print "## The fine-tuned and the retain model\n"
    print "| model | forget answer prob | forget ROUGE-L | forget truth ratio | forget quality | retain answer prob | retain ROUGE-L | model utility |"
    print "|---|---|---|---|---|---|---|---|"
    split("finetuned retained", B, " ")
    for (i = 1; i <= 2; i++)
        printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", B[i], f3(val(B[i], "answer_prob", "forget")),
            f3(val(B[i], "rougeL_recall", "forget")), f3(val(B[i], "truth_ratio", "forget")),
            g3(val(B[i], "forget_quality", "forget")), f3(val(B[i], "answer_prob", "retain")),
            f3(val(B[i], "rougeL_recall", "retain")), f3(val(B[i], "model_utility", "-"))
    u0 = num(val("finetuned", "model_utility", "-"))
    print "\n## Unlearning with masks of equal size\n"
    print "`AUES`: area under the removal–retention curve of the learning-rate sweep (removal of the forget"
    print "answer probability, retention of model utility, relative to the fine-tuned model; mu-score"
    print "--curve). `MU95`: the best forget quality among the runs that keep at least 95% of the"
    print "fine-tuned model's utility (n/a: none does). `runs`: forget quality / model utility at each"
    print "learning rate.\n"
    print "| mask | objective | AUES | MU95 | runs |"
    print "|---|---|---|---|---|"
    for (i = 1; i <= nm; i++) for (j = 1; j <= no; j++) {
        mk = M[i]; o = O[j]; pts = ""; set_lrs(o)
        for (k = 1; k <= nl; k++) {
            r = mk "-" o "-" L[k]
            pts = pts (k > 1 ? ", " : "") g3(val(r, "forget_quality", "forget")) " / " f3(val(r, "model_utility", "-"))
        }
        a = c[mk, o, "aues"]; q = c[mk, o, "mu95"]
        if (num(a) == "") undefined = 1; else sa[mk] += a
        printf "| %s | %s | %s | %s | %s |\n", mk, o, f3(a), g3(q), pts
    }
    plot_images(plots)
    print "\n## What the table shows\n"
    if (undefined) {
        printf "- No removal–retention curve: the fine-tuned model's utility is %s (AUES needs a utility\n", f3(u0)
        print "  and a forget answer probability above 0 to measure their loss)."
        exit
    }
    for (j = 1; j <= no; j++)
        printf "- %s: AUES from %s; random %s, complement %s.\n", O[j], aues_range(O[j]),
            f3(c["random", O[j], "aues"]), f3(c["complement", O[j], "aues"])
    for (j = 1; j <= no; j++) if ((line = null_line(O[j])) != "") { print line; spread = 1 }
    for (j = 1; j <= no; j++) if ((line = sweep_line(O[j])) != "") print line
    for (i = 1; i <= nm; i++) mean[M[i]] = sa[M[i]] / no
    printf "- Masks by mean AUES over the objectives: %s.\n", rank_masks(mean, R)
    best = ""
    for (i = 1; i <= nm; i++) if (R[i] !~ /^random(-[0-9]+)?$/ && R[i] != "complement") { best = R[i]; break }
    if (best != "")
        printf "- The best attribution mask (%s) differs from the random mask by %+.3f in mean AUES and from\n  the complement by %+.3f (%s).\n",
            best, mean[best] - mean["random"], mean[best] - mean["complement"],
            spread ? "read against the random masks' spread above" : "one seed each: no spread is measured"
    printf "- The fine-tuned model's utility is %s; MU95 counts runs at or above %s.\n", f3(u0), f3(0.95 * u0)
}
