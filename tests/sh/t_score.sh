#!/usr/bin/env bash
# t_score.sh — mu-score on a small outputs stream written by tests/gen/gen_metrics_golden.py
# (msgpack + zstandard, as man/mu-stream.5 documents); the numbers are checked against
# tests/golden/metrics/score.expected.json (numpy / scipy / sklearn / rouge_score).
. "$(dirname "$0")/lib.sh"
G="$(cd "$(dirname "$0")/../golden/metrics" && pwd)"
OUTS=$G/score.outputs.mpk.zst REF=$G/score.reference.mpk.zst EXP=$G/score.expected.json

# expected SECTION KEY: value from the golden JSON (SECTION "-" = top level)
expected() { awk -v sec="$1" -v key="\"$2\":" '
  /^"[a-z_]+": \{$/ { cur = substr($1, 2, length($1) - 3); next }
  /^\}/ { cur = "-"; next }
  BEGIN { cur = "-" }
  cur == sec && $1 == key { v = $2; sub(/,$/, "", v); print v; exit }' "$EXP"; }
# got TSV METRIC GROUP: value column of mu-score's TSV
got() { awk -F'\t' -v m="$2" -v g="$3" '$1 == m && $2 == g { print $3 }' "$1"; }
# near NAME GOT WANT: |got - want| <= 1e-9 * max(1, |want|)
near() { local name=$1 g=$2 w=$3
  if [ -z "$g" ] || [ -z "$w" ]; then fail "$name" "missing value (got '$g', want '$w')"; return; fi
  if awk -v a="$g" -v b="$w" 'BEGIN { d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b; if (m < 1) m = 1; exit !(d <= 1e-9 * m) }'
  then ok "$name"; else fail "$name" "got $g, want $w"; fi; }

t score_help bash -c 'mu-score --help | grep -q rougeL_recall && mu-score --help | grep -q mia_min_k_pp'
t score_version bash -c 'mu-score --version | grep -q "^mu-score (mu) "'

if mu-score --by split --reference "$REF" --utility --auc forget:retain --format tsv "$OUTS" >"$T/all.tsv" 2>"$T/err"; then
  ok score_runs
else
  fail score_runs "$(cat "$T/err")"
fi
for split in forget retain; do
  for m in choice_acc choice_prob answer_prob target_prob target_loss text_loss perplexity exact_match \
           rougeL_recall rouge1_recall exact_memorization extraction_strength truth_ratio; do
    near "score_${m}_$split" "$(got "$T/all.tsv" "$m" "split=$split")" "$(expected "$split" "$m")"
  done
  near "score_min_k_$split" "$(got "$T/all.tsv" mia_min_k "split=$split")" "$(expected "$split" min_k)"
done
near score_forget_quality "$(got "$T/all.tsv" forget_quality split=forget)" "$(expected forget forget_quality)"
near score_model_utility "$(got "$T/all.tsv" model_utility -)" "$(expected - model_utility)"
near score_mia_auc "$(got "$T/all.tsv" mia_auc_loss members=forget,nonmembers=retain)" "$(expected - mia_auc_loss)"

# metrics stream round trip, then the curve summary over it
t score_out_stream mu-score --by split --out "$T/orig.mpk.zst" "$OUTS"
t score_out_ref mu-score --by split --out "$T/run1.mpk.zst" "$REF"
if [ -s "$T/orig.mpk.zst" ] && [ ! -e "$T/orig.mpk.zst.tmp" ]; then ok score_out_atomic; else fail score_out_atomic "no output"; fi
mu-score --curve --original "$T/orig.mpk.zst" --format tsv "$T/run1.mpk.zst" >"$T/curve.tsv" 2>&1
near score_aues "$(awk -F'\t' '$1 == "aues" { print $3 }' "$T/curve.tsv")" "$(expected - aues)"
# MU95: a run with the original's utility qualifies, so MU95 is its forget quality
mu-score --by split --reference "$REF" --utility --out "$T/m0.mpk.zst" "$OUTS"
cp "$T/m0.mpk.zst" "$T/m1.mpk.zst"
mu-score --curve --original "$T/m0.mpk.zst" --format tsv "$T/m1.mpk.zst" >"$T/mu95.tsv" 2>&1
near score_mu95 "$(awk -F'\t' '$1 == "mu95" { print $3 }' "$T/mu95.tsv")" "$(expected forget forget_quality)"
near score_aues_identity "$(awk -F'\t' '$1 == "aues" { print $3 }' "$T/mu95.tsv")" 0
# every metrics stream is read once: pipes give the same curve (MU95 needs two lookups in each)
t score_curve_from_pipes bash -c "cmp <(mu-score --curve --original <(cat '$T/m0.mpk.zst') --format tsv <(cat '$T/m1.mpk.zst') |
    sed 's|/dev/fd/[0-9]*|F|') <(mu-score --curve --original '$T/m0.mpk.zst' --format tsv '$T/m1.mpk.zst' | sed 's|$T/m1.mpk.zst|F|')"
expect_fail score_curve_selector 1 'match nope' mu-score --curve --original "$T/m0.mpk.zst" --forget nope "$T/m1.mpk.zst"
# --out without a terminal: nothing on stdout
t score_out_quiet_stdout bash -c "[ -z \"\$(mu-score --by split --out $T/x.mpk.zst $OUTS)\" ]"
# Min-K%++ from token_mu/token_sigma (mu-forward --emit mu-sigma) per split at two k, and
# its membership AUC (numpy, sklearn: gen_metrics_golden.py)
MKPP=$G/score.minkpp.mpk.zst
for k in 0.2 0.5; do
  mu-score --by split --k $k --metrics mia_min_k_pp --format tsv "$MKPP" > "$T/mkpp$k.tsv" 2>&1
  for split in forget retain; do
    near "score_min_k_pp_${split}_$k" "$(got "$T/mkpp$k.tsv" mia_min_k_pp "split=$split")" "$(expected min_k_pp "$split@$k")"
  done
done
mu-score --by split --auc forget:retain --format tsv "$MKPP" > "$T/mkppauc.tsv" 2>&1
near score_auc_min_k_pp "$(got "$T/mkppauc.tsv" mia_auc_min_k_pp "members=forget,nonmembers=retain")" \
  "$(expected - mia_auc_min_k_pp)"
# the table (the default on a terminal or with --format table) holds the TSV's rows, values
# to 6 significant digits, and the intervals
t score_table_matches_tsv bash -c "
  mu-score --by split --auc forget:retain --format table '$MKPP' > '$T/table.txt' &&
  head -1 '$T/table.txt' | grep -qE '^metric +group +value +n +95% CI\$' &&
  diff <(tail -n +2 '$T/table.txt' | awk '{ printf \"%s %s %s %s\\n\", \$1, \$2, \$3, \$4 }') \
       <(tail -n +2 '$T/mkppauc.tsv' | awk -F'\t' '{ printf \"%s %s %.6g %s\\n\", \$1, \$2, \$3, \$4 }') &&
  grep -E '^mia_min_k_pp +split=forget ' '$T/table.txt' | grep -qF \"[\$(awk -F'\t' '\$1 == \"mia_min_k_pp\" && \$2 == \"split=forget\" { printf \"%.4g, %.4g\", \$5, \$6 }' '$T/mkppauc.tsv')]\""

# --paired: differences to another model's outputs on the same records, matched by id
# (score.paired holds the reference's records in reverse order): the mean difference, its
# t interval and McNemar's exact p (choice_acc) or the paired t-test's (answer_prob,
# target_loss), per split, against scipy and statsmodels (gen_metrics_golden.py)
PAIRED=$G/score.paired.mpk.zst
mu-score --by split --paired "$PAIRED" --metrics choice_acc,answer_prob,target_loss --format tsv "$OUTS" \
  > "$T/paired.tsv" 2>&1
pexp() { jq -r --arg k "$1" --arg f "$2" '.paired[$k] | if $f == "lo" then .ci[0] elif $f == "hi" then .ci[1] else .[$f] end' "$EXP"; }
pgot() { awk -F'\t' -v m="$1" -v g="split=$2" -v c="$3" 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
         $1 == m && $2 == g { print $col[c] }' "$T/paired.tsv"; }
for m in choice_acc answer_prob target_loss; do
  for split in forget retain; do
    near "score_paired_${m}_${split}" "$(pgot $m $split value)" "$(pexp "$m@$split" value)"
    near "score_paired_${m}_${split}_p" "$(pgot $m $split p_value)" "$(pexp "$m@$split" p)"
    near "score_paired_${m}_${split}_ci_lo" "$(pgot $m $split ci_lo)" "$(pexp "$m@$split" lo)"
    near "score_paired_${m}_${split}_ci_hi" "$(pgot $m $split ci_hi)" "$(pexp "$m@$split" hi)"
  done
done
t score_paired_tests_named bash -c "[ \"\$(awk -F'\t' 'NR > 1 { print \$1, \$8 }' '$T/paired.tsv' | sort -u | tr '\n' ,)\" = \
  'answer_prob ttest_rel,choice_acc mcnemar,target_loss ttest_rel,' ]"
# a model against itself: differences 0; the stream carries the tests
t score_paired_self bash -c "mu-score --paired '$OUTS' --metrics choice_acc,answer_prob --out '$T/self.mpk.zst' '$OUTS' &&
  mu-dump '$T/self.mpk.zst' | tail -n +2 | jq -s -e 'length == 2 and all(.[]; .value == 0) and
    (map(select(.metric == \"choice_acc\"))[0] | .test == \"mcnemar\" and .p_value == 1) and
    (map(select(.metric == \"answer_prob\"))[0] | .test == \"ttest_rel\")' >/dev/null"
# B lacks A's records 18..23 (ids 0..17)
expect_fail score_paired_missing_id 1 'score.minkpp.mpk.zst: no record with id 18 and mia_min_k' \
  mu-score --paired "$MKPP" --metrics mia_min_k "$OUTS"
expect_fail score_paired_with_auc 2 'paired' mu-score --paired "$PAIRED" --auc forget:retain --by split "$OUTS"

# labels group whole files; JSON output parses as one array
t score_label bash -c "mu-score --label split=all --by split --metrics choice_acc --format tsv $OUTS | grep -q 'split=all'"
t score_json bash -c "mu-score --metrics choice_acc --format json $OUTS | grep -q '\"metric\": \"choice_acc\"'"
# stdin
t score_stdin bash -c "mu-score --metrics choice_acc --format tsv - < $OUTS | grep -q choice_acc"

# errors: one line naming file and record, exit 1; usage errors exit 2
expect_fail score_missing_field 1 'score.outputs.mpk.zst: record [0-9]+: no field "token_mu"' \
  mu-score --metrics mia_min_k_pp "$OUTS"
expect_fail score_wrong_kind 1 'orig.mpk.zst' mu-score "$T/orig.mpk.zst"
# records with one defect each (tests/gen/gen_score_hostile.py -> tests/golden/metrics/hostile):
# one line naming the file, the record and the field, exit 1, no output
H=$G/hostile
expect_fail score_token_mu_count 1 'mu_count.mpk.zst: record 0: token_mu has 3 values, the log-probs 2$' \
  mu-score --metrics mia_min_k_pp "$H/mu_count.mpk.zst"
expect_fail score_token_sigma_count 1 'sigma_count.mpk.zst: record 0: token_sigma has 1 values, the log-probs 2$' \
  mu-score --metrics mia_min_k_pp "$H/sigma_count.mpk.zst"
expect_fail score_empty_logprobs 1 'empty_logprobs.mpk.zst: record 1: target_logprobs is empty$' \
  mu-score --metrics target_loss "$H/empty_logprobs.mpk.zst"
expect_fail score_empty_ranks 1 'empty_ranks.mpk.zst: record 1: target_ranks is empty$' \
  mu-score --metrics exact_memorization "$H/empty_ranks.mpk.zst"
expect_fail score_invalid_utf8 1 'bad_utf8.mpk.zst: record 0: generation_text or target_text is not valid UTF-8$' \
  mu-score --metrics rougeL_recall "$H/bad_utf8.mpk.zst"
expect_fail score_meta_not_scalar 1 'meta_list.mpk.zst: record 0: meta field "split" is not a string, number or boolean$' \
  mu-score --by split "$H/meta_list.mpk.zst"
expect_fail score_paired_no_id 1 'no_id.mpk.zst: record 0: no integer "id" \(--paired matches records by id\)$' \
  mu-score --paired "$H/no_id.mpk.zst" "$H/no_id.mpk.zst"
t score_hostile_no_output bash -c "! mu-score --metrics target_loss --out '$T/h.mpk.zst' '$H/empty_logprobs.mpk.zst' 2>/dev/null &&
  [ ! -e '$T/h.mpk.zst' ] && [ -z \"\$(ls '$T' | grep '^h\.mpk\.zst')\" ]"
# --by over meta values of each scalar kind: a group each, named by the value as text
t score_by_meta_kinds bash -c "[ \"\$(mu-score --by k --metrics target_loss --format tsv '$H/meta_kinds.mpk.zst' | cut -f2 | tail -n +2 | tr '\n' ' ')\" = 'k=3 k=-2 k=true k=0.5 k=x ' ]"
head -c 700 "$OUTS" >"$T/trunc.mpk.zst"
expect_fail score_truncated 1 'trunc.mpk.zst' mu-score --out "$T/t.mpk.zst" "$T/trunc.mpk.zst"
if [ -e "$T/t.mpk.zst" ]; then fail score_no_partial "partial output left"; else ok score_no_partial; fi
expect_fail score_unknown_metric 2 "unknown metric 'nope'" mu-score --metrics nope "$OUTS"
expect_fail score_no_reference 1 'no meta field "sport"' mu-score --by sport "$OUTS"
expect_fail score_bad_k 2 'fraction in' mu-score --k 2 "$OUTS"
expect_fail score_no_input 1 '<stdin>: header: empty file' mu-score </dev/null

# confidence intervals (--ci, default 0.95): per split, choice_acc's Wilson interval and
# choice_prob's and answer_prob's t intervals, as statsmodels and scipy give them on the
# same records (tests/gen/gen_ci_golden.py); the stream carries the same interval; --ci 0
# leaves them out
ci_rows() { mu-score --by split --metrics choice_acc,choice_prob,answer_prob --format tsv "$@" "$OUTS" |
            awk -F'\t' 'NR > 1 { sub(/^split=/, "", $2); print $1, $2, $5, $6 }'; }
t score_ci_scipy_statsmodels bash -c "$(declare -f ci_rows); OUTS='$OUTS'"'
    diff <(ci_rows) <(jq -r ".score[] | \"\(.[0]) \(.[1]) \(.[2]) \(.[3])\"" "'"$G/ci.json"'") |
      awk '\''/^[<>]/ { side = $1; k = $2 " " $3; if (side == "<") { lo[k] = $4; hi[k] = $5 } else { glo[k] = $4; ghi[k] = $5 } }
        END { for (k in glo) { d1 = lo[k] - glo[k]; d2 = hi[k] - ghi[k]; if (d1 < 0) d1 = -d1; if (d2 < 0) d2 = -d2
                if (!(k in lo) || d1 > 1e-9 || d2 > 1e-9) { print "differs: " k; bad = 1 } }
              for (k in lo) if (!(k in glo)) { print "extra: " k; bad = 1 }
              exit bad }'\'' && [ "$(ci_rows | wc -l)" = 6 ]'
t score_ci_in_stream bash -c "
    mu-score --by split --metrics choice_acc --out '$T/ci.mpk.zst' '$OUTS' &&
    [ \"\$(mu-dump -H '$T/ci.mpk.zst' | jq -r 'select(.group.split == \"forget\") | .ci[0]')\" = \"\$(mu-score --by split --metrics choice_acc --format json '$OUTS' | jq -r '.[] | select(.group.split == \"forget\") | .ci[0]')\" ] &&
    mu-score --ci 0 --by split --metrics choice_acc --format tsv '$OUTS' | awk -F'\t' 'NR > 1 && \$5 != \"nan\" { exit 1 }'"
expect_fail score_ci_bad_level 2 "--ci 1: expected a level in \[0, 1\)" mu-score --ci 1 "$OUTS"

# Holm's adjustment of a file's McNemar p-values (pipelines/holm.awk, column 9 -> column 10)
# against statsmodels' multipletests(method='holm') on the families of
# tests/golden/metrics/holm.tsv (tests/gen/gen_holm_golden.py); each row kept as it came
HOLM="$(cd "$(dirname "$0")/../../pipelines" && pwd)/holm.awk"
t score_holm_statsmodels bash -c "
  for f in \$(cut -f1 '$G/holm.tsv' | uniq); do
    awk -F'\t' -v f=\$f -v OFS='\t' '\$1 == f { print \"late\", \"unlearned\", \"l\" NR, \"cloze-forget\", 0, 8, 0, 0, \$2 }' '$G/holm.tsv' |
      awk -f '$HOLM' > '$T/holm.got' || exit 1
    awk -F'\t' -v f=\$f '\$1 == f' '$G/holm.tsv' | paste - '$T/holm.got' |
      awk -F'\t' '{ d = \$13 - \$3; if (d < 0) d = -d; if (d > 1e-12 * \$3 + 1e-300 || \$12 != \$2) bad = 1 }
        END { exit bad || NR == 0 }' || { echo \"family \$f differs\"; exit 1; }
  done"
printf 'a\tb\tc\td\t0\t1\t0\t0\t0.5\na\tb\tc\td\t0\t1\t0\t0\tnan\n' > "$T/holm-bad.tsv"
expect_fail score_holm_not_a_p 1 "holm-bad.tsv:2: McNemar p nan is not a probability" awk -f "$HOLM" "$T/holm-bad.tsv"
