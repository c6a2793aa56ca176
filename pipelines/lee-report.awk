# lee-report.awk — functions the reports of oracle.mk and tofu.mk share (awk -f this file
# first). They read the report's globals: c[MASK, OBJ, "aues"] (mu-score --curve AUES),
# M[1..nm] (the masks, in the pipeline's order), and f3(x) (a value to 3 decimals).

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
