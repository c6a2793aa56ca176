#!/usr/bin/env bash
# t_oracle.sh — pipelines/oracle.mk (Lee et al.'s oracle-region experiment) end to end on a
# tiny configuration: a 2-layer mu-init model, 4 TOFU forget rows, 4 retain rows, a few
# steps, two learning rates. Checks the report (one row per mask and objective, numbers in
# [0, 1], MU95 a p-value or n/a), forget quality (the base model 1, the injected model's
# from its stream), the oracle mask (= the region, overlap 1), the complement (overlap 0), the
# overlaps recounted bit by bit (base64, od, awk), masks of equal size, `make -q` up to date after the run, and that
# touching one attribution scores file rebuilds exactly what depends on it.
. "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

if [ ! -f "$SHARED_DATA/tofu/forget01.jsonl" ] || [ ! -f "$SHARED_DATA/tofu/retain90.jsonl" ]; then
    skip oracle_all "no TOFU data in $SHARED_DATA/tofu"; exit 0
fi
for c in python3 jq make awk; do
    command -v $c >/dev/null || { skip oracle_all "needs $c"; exit 0; }
done
# vocabulary 259: the byte tokenizer's size, so greedy generations decode
if ! mu-init --out "$T/model" --layers 2 --d-model 32 --heads 4 --kv-heads 2 --d-ff 64 \
        --vocab 259 --seed 7 -q; then
    fail oracle_all "mu-init failed"; exit 0
fi
R=$T/run
MASKS="oracle random random-11 random-12 complement act wagle memflex grad"
OBJS="graddiff npo"
LRS="1e-3 1e-2"
# the tiny configuration; every run of make gets the same variables
pipe() {
    OMP_NUM_THREADS=1 make --no-print-directory -C "$ROOT" -f pipelines/oracle.mk \
        MU_BIN="$MU_BIN" DATA="$SHARED_DATA" RUN="$R" MODEL="$T/model" \
        FORGET_ROWS=0-4 RETAIN_ROWS=0-4 RETAIN_EVAL_ROWS=4-8 FRAC=0.02 \
        INJECT_STEPS=10 INJECT_BATCH=4 UNLEARN_STEPS=2 UNLEARN_BATCH=2 GEN=8 \
        LRS="$LRS" "$@"
}

if ! out=$(pipe -j2 2>&1); then
    fail oracle_pipeline "$(echo "$out" | tail -3 | tr '\n' ' ')"; exit 0
fi
ok oracle_pipeline

# the table rows: "| mask | objective | overlap | AUES | AUES rouge | drop@95 | MU95 | runs |"
rows() { awk -F' *\\| *' -v masks="$MASKS" '
    BEGIN { split(masks, M, " "); for (i in M) ok[M[i]] = 1 }
    NF >= 9 && ($2 in ok) { print $2, $3, $4, $5, $6, $7, $8, $9 }' "$R/report.md"; }
t oracle_report_rows bash -c '
    want=$(for m in '"$MASKS"'; do for o in '"$OBJS"'; do echo "$m $o"; done; done)
    got=$('"$(declare -f rows)"'; MASKS="'"$MASKS"'" R="'"$R"'"; rows | cut -d" " -f1,2)
    [ "$got" = "$want" ] || { echo "rows: $got"; exit 1; }'
# overlap, AUES (prob), drop@95 and every forget drop / retention point in [0, 1]; AUES
# (ROUGE-L) in [0, 1] or n/a (undefined when the tiny injected model's ROUGE-L is 0); MU95
# a p-value in [0, 1] or n/a (no run keeps 95% of the retain probability)
t oracle_report_numbers bash -c "$(declare -f rows); MASKS='$MASKS' R='$R'"'
    rows | awk '\''
      function unit(x) { return x ~ /^[0-9.]+$/ && x + 0 >= 0 && x + 0 <= 1 }
      { n++
        if (!unit($3) || !unit($4) || !unit($6) || !(unit($5) || $5 == "n/a")) { print "bad: " $0; bad = 1 }
        if (!($7 ~ /^[0-9.]+(e-[0-9]+)?$/ && $7 + 0 <= 1 || $7 == "n/a")) { print "bad MU95: " $0; bad = 1 }
        for (i = 8; i <= NF; i++) { v = $i; sub(/,$/, "", v); split(v, p, "/")
          if (!unit(p[1]) || !unit(p[2])) { print "bad point: " $0; bad = 1 } } }
      END { exit bad || n != 18 }'\'
# the injected model: its numbers are in the report, from its metrics stream
t oracle_report_injected bash -c '
    p=$(mu-dump -H --kind metrics "'"$R"'/eval/injected.metrics" |
        jq -r "select(.metric == \"answer_prob\" and .group.split == \"forget\") | .value")
    grep -q "^| injected | $(printf %.4f "$p") |" "'"$R"'/report.md"'
# forget quality (KS test of the forget truth ratios against the base model's): 1 for the
# base model itself, the injected model's from its metrics stream, below 1 (it learned them)
t oracle_report_forget_quality bash -c '
    q=$(mu-dump -H --kind metrics "'"$R"'/eval/injected.metrics" |
        jq -r "select(.metric == \"forget_quality\" and .group.split == \"forget\") | .value")
    awk -v q="$q" "BEGIN { exit !(q >= 0 && q < 1) }" &&
    grep -qE "^\| base \|( [0-9.]+ \|){3} 1 \|" "'"$R"'/report.md" &&
    grep -qE "^\| injected \|( [0-9.]+ \|){3} $(printf %.3g "$q") \|" "'"$R"'/report.md"'
# the random masks' spread (NULL_SEEDS: random, random-11, random-12): per objective, their
# AUES mean and sd recomputed from the curve files, and the oracle's z-score against them
aues_of() { awk -F'\t' '$1 == "aues" { print $3 }' "$R/curve/$1-$2.tsv"; }
null_want() {   # OBJ: "- OBJ: the 3 random masks have AUES M ± SD" and "oracle X (z Z)"
    for m in random random-11 random-12; do aues_of $m $1; done |
      awk -v o=$1 -v x="$(aues_of oracle $1)" '{ v[++k] = $1; s += $1 }
        END { m = s / k; for (i = 1; i <= k; i++) ss += (v[i] - m) ^ 2; sd = sqrt(ss / (k - 1))
              printf "- %s: the 3 random masks have AUES %.3f ± %.3f\n", o, m, sd
              if (sd > 0) printf "oracle %.3f (z %+.1f)\n", x, (x - m) / sd }'
}
null_line_ok() {
    local o want line
    for o in $OBJS; do
        line=$(grep -F -- "- $o: the 3 random masks" "$R/report.md") || { echo "no line for $o"; return 1; }
        while IFS= read -r want; do
            grep -qF -- "$want" <<< "$line" || { echo "'$want' not in: $line"; return 1; }
        done < <(null_want $o)
    done
}
t oracle_null_line null_line_ok
# the sweep line: for each objective, the most removal and the least retention of its runs
# (the curve files), with the short-sweep warning exactly when every run's retention is >= 0.95;
# and on a synthetic curve input, the warning when every run keeps 0.97, none when one keeps 0.94
short_ok() {
    local o all has want
    for o in $OBJS; do
        want=$(for m in $MASKS; do awk -F'\t' '$1 == "retention" || $1 == "forget_strength" { print $1, $3 }' \
                 "$R/curve/$m-$o.tsv"; done |
               awk -v o=$o '$1 == "retention" && (lo == "" || $2 < lo) { lo = $2 } $1 != "retention" && (hi == "" || $2 > hi) { hi = $2 }
                 END { printf "- %s: the sweep reaches at most %.2f removal and at least %.2f retention\n", o, hi, lo }')
        grep -qF -- "$want" "$R/report.md" || { echo "no '$want'"; return 1; }
        all=$(for m in $MASKS; do awk -F'\t' '$1 == "retention" { print $3 }' "$R/curve/$m-$o.tsv"; done |
              awk '{ n++ } $1 < 0.95 { bad = 1 } END { print (n && !bad) ? 1 : 0 }')
        has=$(grep -F -- "$want" "$R/report.md" | grep -cF "every run keeps >= 95% retention")
        [ "$all" = "$has" ] || { echo "$o: every run kept 95%: $all, warning: $has"; return 1; }
    done
    synth() {
        for m in oracle random random-11; do for l in 1e-3 1e-2; do
            r=0.97; [ $m$l = oracle1e-2 ] && r=$1
            printf 'curve\t%s\tx\tretention\trun=%s\t%s\t4\n' $m $l $r
            printf 'curve\t%s\tx\tforget_strength\trun=%s\t0.5\t4\n' $m $l
        done; printf 'curve\t%s\tx\taues\tall\t0.5\t4\n' $m; done |
        awk -f "$ROOT/pipelines/lee-report.awk" -f "$ROOT/pipelines/oracle-report.awk" -v masks='oracle random random-11' \
            -v objectives=x -v lrs='1e-3 1e-2' -v objspecs=x:x=1
    }
    synth 0.97 | grep -qF -- '- x: the sweep reaches at most 0.50 removal and at least 0.97 retention; every run keeps' &&
    synth 0.94 | grep -qxF -- '- x: the sweep reaches at most 0.50 removal and at least 0.94 retention.'
}
t oracle_short_sweep_line short_ok
t oracle_random_masks_differ bash -c "! cmp -s '$R/mask/random.mask' '$R/mask/random-11.mask' &&
    ! cmp -s '$R/mask/random-11.mask' '$R/mask/random-12.mask'"
t oracle_mask_is_region cmp "$R/mask/oracle.mask" "$R/mask/region.mask"
t oracle_overlap_oracle_1 bash -c '[ "$(cut -f1 "'"$R"'/overlap/oracle.tsv")" = 1.000000 ]'
t oracle_overlap_complement_0 bash -c '[ "$(cut -f1,2 "'"$R"'/overlap/complement.tsv")" = "$(printf "0.000000\t0")" ]'
# an independent check of the overlaps: the bits in both masks (lib.sh's mask_common; units
# of 32 parameters here): none for the complement, all of them for the oracle, the overlap
# file's count for the random mask
t oracle_overlap_independent bash -c "$(declare -f mask_bytes mask_common); R='$R'"'
    [ "$(mask_common $R/mask/region.mask $R/mask/complement.mask)" = 0 ] &&
    [ "$(mask_common $R/mask/region.mask $R/mask/oracle.mask)" = "$(cut -f3 $R/overlap/oracle.tsv)" ] &&
    [ "$(mask_common $R/mask/region.mask $R/mask/random.mask)" = "$(cut -f2 $R/overlap/random.tsv)" ] &&
    [ "$(mask_common $R/mask/region.mask $R/mask/act.mask)" = "$(cut -f2 $R/overlap/act.tsv)" ]'
t oracle_overlap_in_report bash -c "$(declare -f rows); MASKS='$MASKS' R='$R'"'
    for m in '"$MASKS"'; do
      want=$(printf %.3f "$(cut -f1 "$R/overlap/$m.tsv")")
      rows | awk -v m=$m -v w=$want '\''$1 == m && $3 != w { exit 1 }'\'' || { echo "$m"; exit 1; }
    done'
# every mask has the region's size (units of 32 parameters here, so the same count)
t oracle_masks_equal_size bash -c '
    [ "$(for m in '"$MASKS"'; do cut -f3 "'"$R"'/overlap/$m.tsv"; done | sort -u | wc -l)" = 1 ] &&
    [ "$(cut -f3 "'"$R"'/overlap/oracle.tsv")" = "$(mu-dump "'"$R"'/mask/region.mask" | head -1 | jq .meta.params_selected)" ]'

# the removal-retention plots (lee.mk), where gnuplot is installed: PNGs the report shows
if command -v gnuplot >/dev/null; then
  t oracle_plots bash -c "for o in $OBJS; do
      [ \"\$(head -c 8 '$R'/curves-\$o.png | od -An -tx1 | tr -d ' \n')\" = 89504e470d0a1a0a ] &&
      grep -q \"(curves-\$o.png)\" '$R/report.md' || exit 1; done"
else
  skip oracle_plots "gnuplot not installed"
fi
# nothing is stale after the run
t oracle_make_q_up_to_date pipe -q

# touching one scores file rebuilds its mask, overlap, runs, their evaluations and curves,
# and the report: exactly those files are newer afterwards
touch "$T/stamp"; sleep 0.01; touch "$R/scores/act.scores"
if ! out=$(pipe -j2 2>&1); then
    fail oracle_touch_rebuild "$(echo "$out" | tail -3 | tr '\n' ' ')"
else
    want=$( { echo scores/act.scores mask/act.mask overlap/act.tsv report.md
              for o in $OBJS; do echo curve/act-$o.tsv; command -v gnuplot >/dev/null && echo curves-$o.png
                for l in $LRS; do echo unlearn/act-$o-$l.st unlearn/act-$o-$l.log \
                  eval/act-$o-$l.forget.out eval/act-$o-$l.retain.out eval/act-$o-$l.forget.tr.out \
                  eval/act-$o-$l.metrics; done
              done; } | tr ' ' '\n' | sort)
    got=$(cd "$R" && find . -type f -newer "$T/stamp" | sed 's|^\./||' | sort)
    if [ "$got" = "$want" ]; then ok oracle_touch_rebuild
    else fail oracle_touch_rebuild "rebuilt: $(echo $got)"; fi
fi
t oracle_make_q_after_rebuild pipe -q
