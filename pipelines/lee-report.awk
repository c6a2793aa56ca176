# lee-report.awk — functions the reports of oracle.mk and tofu.mk share (awk -f this file
# first). They read the report's globals: c[MASK, OBJ, "aues"] (mu-score --curve AUES),
# M[1..nm] (the masks, in the pipeline's order), L[1..nl] (the learning rates), rem[MASK,
# OBJ, LR] and ret[MASK, OBJ, LR] (each run's removal and retention, relative to the model
# unlearned from: curve_point), and f3(x) (a value to 3 decimals).

# forget quality spans many orders of magnitude (a p-value): 3 significant digits
function g3(x) { return (x == "" || x == "nan" || x == "-nan") ? "n/a" : sprintf("%.3g", x) }

# The images of plots (space-separated curves-OBJ.png names), one line each, the first
# after a blank line.
function plot_images(plots,    np, P, i, o) {
    np = split(plots, P, " ")
    for (i = 1; i <= np; i++) { o = P[i]; sub(/^curves-/, "", o); sub(/\.png$/, "", o)
        printf "%s![%s: removal against retention, one curve per mask](%s)\n", i == 1 ? "\n" : "", o, P[i] }
}

# "LO (mask) to HI (mask)": objective o's smallest and largest AUES over the masks.
function aues_range(o,    i, hi, lo) {
    hi = lo = M[1]
    for (i = 2; i <= nm; i++) {
        if (c[M[i], o, "aues"] > c[hi, o, "aues"]) hi = M[i]
        if (c[M[i], o, "aues"] < c[lo, o, "aues"]) lo = M[i]
    }
    return sprintf("%s (%s) to %s (%s)", f3(c[lo, o, "aues"]), lo, f3(c[hi, o, "aues"]), hi)
}

# R[1..nm]: the masks by mean[mask], largest first (stable); returns "A x > B y > ...".
function rank_masks(mean, R,    i, k, t, rank) {
    for (i = 1; i <= nm; i++) R[i] = M[i]
    for (i = 2; i <= nm; i++) for (k = i; k > 1 && mean[R[k]] > mean[R[k - 1]]; k--) { t = R[k]; R[k] = R[k - 1]; R[k - 1] = t }
    rank = ""
    for (i = 1; i <= nm; i++) rank = rank sprintf("%s%s %s", i > 1 ? " > " : "", R[i], f3(mean[R[i]]))
    return rank
}

# The random masks (random, random-S of NULL_SEEDS): objective o's AUES over them into
# R[1..k]; returns k.
function random_aues(o, R,    i, k, x) {
    k = 0
    for (i = 1; i <= nm; i++) {
        x = c[M[i], o, "aues"]
        if (M[i] ~ /^random(-[0-9]+)?$/ && x != "" && x != "nan") R[++k] = x + 0
    }
    return k
}

# L[1..nl]: objective o's learning rates (objlrs: NAME:LR,LR... for each objective), else
# those of lrs; returns nl.
function set_lrs(o,    n, P, i) {
    n = split(objlrs, P, " ")
    for (i = 1; i <= n; i++)
        if (index(P[i], o ":") == 1) return nl = split(substr(P[i], length(o) + 2), L, ",")
    return nl = split(lrs, L, " ")
}

# Objective o's learning rates, space-separated ("": lrs's).
function lrs_joined(o,    k, t) {
    set_lrs(o)
    t = L[1]
    for (k = 2; k <= nl; k++) t = t " " L[k]
    return t
}

# "at learning rates LRS", or each objective's where they differ (the report's header).
function lrs_text(no, O,    j, t, all, same) {
    all = lrs_joined("")
    same = 1
    for (j = 1; j <= no; j++) {
        if (lrs_joined(O[j]) != all) same = 0
        t = t (j > 1 ? "; " : "") O[j] " at " lrs_joined(O[j])
    }
    return same ? "at learning rates " all : "at learning rates (" t ")"
}

# A run's point from a mu-score --curve row of mask mk and objective o (metric forget_strength
# or retention, group run=LR): into rem[mk, o, LR] or ret[mk, o, LR].
function curve_point(mk, o, metric, group, v) {
    sub(/^run=/, "", group)
    if (metric == "forget_strength") rem[mk, o, group] = v
    else if (metric == "retention") ret[mk, o, group] = v
}

# A line on how far objective o's sweep reaches (every mask, every learning rate): the most
# removal and the least retention of its runs; "" without points. When every run keeps >= 95%
# retention the sweep stops short of the trade-off: its AUES reads removal alone, and the
# random masks' spread is narrow.
function sweep_line(o,    i, k, n, lo, hi, line) {
    set_lrs(o)
    lo = 2; hi = -1
    for (i = 1; i <= nm; i++) for (k = 1; k <= nl; k++) {
        if (!((M[i], o, L[k]) in ret) || !((M[i], o, L[k]) in rem)) continue
        n++
        if (ret[M[i], o, L[k]] + 0 < lo) lo = ret[M[i], o, L[k]] + 0
        if (rem[M[i], o, L[k]] + 0 > hi) hi = rem[M[i], o, L[k]] + 0
    }
    if (!n) return ""
    line = sprintf("- %s: the sweep reaches at most %.2f removal and at least %.2f retention", o, hi, lo)
    if (lo >= 0.95)
        line = line "; every run keeps >= 95% retention, so the\n  sweep stops short of the trade-off: AUES " \
               "reads removal alone, and z-scores against a narrow\n  spread mean little (raise LRS)"
    return line "."
}

# One line on objective o: the random masks' AUES (mean ± sd, range), then each other mask's
# AUES with its z-score against them (how many random-mask sds it lies away); "" with fewer
# than two random masks (no spread to read the others against).
function null_line(o,    R, k, i, s, ss, mean, sd, lo, hi, line, x, sep) {
    k = random_aues(o, R)
    if (k < 2) return ""
    s = 0; lo = hi = R[1]
    for (i = 1; i <= k; i++) { s += R[i]; if (R[i] < lo) lo = R[i]; if (R[i] > hi) hi = R[i] }
    mean = s / k; ss = 0
    for (i = 1; i <= k; i++) ss += (R[i] - mean) * (R[i] - mean)
    sd = sqrt(ss / (k - 1))
    line = sprintf("- %s: the %d random masks have AUES %.3f ± %.3f (mean ± sd, %.3f to %.3f); against them", o, k, mean, sd, lo, hi)
    sep = " "
    for (i = 1; i <= nm; i++) {
        x = c[M[i], o, "aues"]
        if (M[i] ~ /^random(-[0-9]+)?$/ || x == "" || x == "nan") continue
        line = line sep sprintf("%s %s", M[i], f3(x)) (sd > 0 ? sprintf(" (z %+.1f)", (x - mean) / sd) : "")
        sep = ", "
    }
    return line "."
}
