# pool-report.awk — the markdown report of pipelines/pool.mk: as a first file the runs
# (run directory, the line of its report that names its facts), as a second the pooled
# comparisons (baseline, kind, localization, stem, difference, records, ci_lo, ci_hi,
# McNemar p, Holm's p over them; paired: the runs' file they came from; cells by
# paired-lib.awk, which runs with it), a table per baseline: a row per
# localization, a column per kind:stem (the kinds in the order they come, e.g. unlearned
# before relearned).
BEGIN { FS = "\t" }
FNR == 1 { file++ }
file == 1 { run[++nrun] = $1; about[nrun] = $2; next }
{
    if (!($1 in with)) { with[$1]; W[++nw] = $1 }
    if (!(($1, $3) in loc)) { loc[$1, $3]; L[$1, ++nl[$1]] = $3 }
    c = $2 ":" $4
    if (!($2 in kind)) { kind[$2]; K[++nk] = $2 }
    if (!(c in col)) { col[c]; ck[++nc0] = $2; cs[nc0] = c; recs[c] = $6 }
    pc[$1, $3, c] = paired_text(); npc++; pholm = $10 != ""
}
function cell(w, l, c) { return ((w, l, c) in pc) ? pc[w, l, c] : "–" }
END {
    for (i = 1; i <= nk; i++) for (j = 1; j <= nc0; j++) if (ck[j] == K[i]) C[++nc] = cs[j]   # columns by kind
    print "# Pooled paired comparisons (mu)\n"
    if (left > 0)
        printf "%d runs, the comparisons all of them hold in their %s (%d of the first run's left out),\ntheir records read as one set (matched by record id):\n\n", nrun, paired, left
    else
        printf "%d runs, the comparisons of each one's %s, their records read as one set (matched by\nrecord id):\n\n", nrun, paired
    for (i = 1; i <= nrun; i++) printf "- `%s`: %s\n", run[i], about[i]
    print "\nEach cell: a localization's accuracy minus the baseline's on the same records of all"
    print "the runs, its 95% interval (Newcombe's for paired proportions) and McNemar's exact p"
    print "(mu-score --paired). Records per column: " records()
    if (pholm) print holm_note(npc, "the pooled paired.tsv")
    for (i = 1; i <= nw; i++) {
        printf "\n## Paired with %s\n\n", W[i]
        table_head("localization", C, nc)
        for (k = 1; k <= nl[W[i]]; k++) {
            printf "| %s |", L[W[i], k]
            for (j = 1; j <= nc; j++) printf " %s |", cell(W[i], L[W[i], k], C[j])
            print ""
        }
    }
}
function records(   j, s) {
    for (j = 1; j <= nc; j++) s = s (j > 1 ? ", " : "") C[j] " " recs[C[j]]
    return s "."
}
