#!/usr/bin/env bash
# t_tofu.sh — pipelines/tofu.mk (Lee et al.'s TOFU experiment, scored as TOFU) end to end on
# a tiny configuration: a 2-layer mu-init model that learns 4 forget and 4 retain questions,
# two attribution masks, random and complement, NPO at two learning rates. Checks the
# report against the metrics streams, model utility and forget quality against mu-score
# runs on each stream alone (the groups pool an answer stream and a truth-ratio stream),
# MU95 recomputed from the runs, masks of one size, the complement disjoint from its mask,
# `make -q` up to date after the run; then TOFU's full model utility (real authors and
# world facts too) on a smaller run.
. "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

for f in forget01 forget01_perturbed retain90 retain_perturbed; do
    [ -f "$SHARED_DATA/tofu/$f.jsonl" ] || { skip tofu_all "no $SHARED_DATA/tofu/$f.jsonl"; exit 0; }
done
for c in jq make awk; do
    command -v $c >/dev/null || { skip tofu_all "needs $c"; exit 0; }
done
# vocabulary 259: the byte tokenizer's size, so greedy answers decode
if ! mu-init --out "$T/model" --layers 2 --d-model 32 --heads 4 --kv-heads 2 --d-ff 64 \
        --vocab 259 --seed 7 -q; then
    fail tofu_all "mu-init failed"; exit 0
fi
R=$T/run
MASKS="random complement act grad"
LRS="1e-3 1e-2"
pipe() {
    OMP_NUM_THREADS=1 make --no-print-directory -C "$ROOT" -f pipelines/tofu.mk \
        MU_BIN="$MU_BIN" DATA="$SHARED_DATA" RUN="$R" MODEL="$T/model" \
        FORGET_ROWS=0-4 RETAIN_ROWS=0-4 RETAIN_EVAL_ROWS=0-4 FRAC=0.02 \
        LEARN_STEPS=100 LEARN_LR=3e-2 LEARN_BATCH=4 UNLEARN_STEPS=2 UNLEARN_BATCH=2 GEN=32 \
        ATTRIB="act grad" OBJECTIVES=npo LRS="$LRS" NULL_SEEDS= "$@"
}
if ! out=$(pipe -j2 2>&1); then
    fail tofu_pipeline "$(echo "$out" | tail -3 | tr '\n' ' ')"; exit 0
fi
ok tofu_pipeline

metric() {   # metric MODEL NAME [SPLIT]: a value of eval/MODEL.metrics
    mu-dump -H --kind metrics "$R/eval/$1.metrics" |
        jq -r --arg m "$2" --arg s "${3:-}" 'select(.metric == $m and (.group.split // "") == $s) | .value'
}
# score FILES...: mu-score's TSV over the files as one group
score() { mu-score --format tsv "$@" | awk -F'\t' 'NR > 1 { print $1 "\t" $3 }'; }
near() { awk -v a="$1" -v b="$2" -v tol="${3:-1e-9}" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && d <= tol) }'; }

# the fine-tuned model learned the forget set: its forget answers are likelier than the
# retain model's, which never saw them
t tofu_finetuned_learned_forget bash -c "$(declare -f metric); R='$R'"'
    awk -v f="$(metric finetuned answer_prob forget)" -v r="$(metric retained answer_prob forget)" \
        "BEGIN { exit !(f > 2 * r) }"'
# model utility: the harmonic mean of the retain answer probability and ROUGE-L (the answer
# stream alone) and the retain truth-ratio statistic (the truth-ratio stream alone)
for m in finetuned retained act-npo-1e-2; do
    p=$(score "$R/eval/$m/retain.qa.out" | awk -F'\t' '$1 == "answer_prob" { print $2 }')
    r=$(score "$R/eval/$m/retain.qa.out" | awk -F'\t' '$1 == "rougeL_recall" { print $2 }')
    tr=$(score "$R/eval/$m/retain.tr.out" | awk -F'\t' '$1 == "truth_ratio" { print $2 }')
    want=$(awk -v a="$p" -v b="$r" -v c="$tr" 'BEGIN { if (a > 0 && b > 0 && c > 0) printf "%.17g", 3 / (1/a + 1/b + 1/c); else print 0 }')
    got=$(metric "$m" model_utility)
    if near "$got" "$want" 1e-12; then ok "tofu_model_utility_$m"
    else fail "tofu_model_utility_$m" "got $got, want hmean($p, $r, $tr) = $want"; fi
done
# forget quality: the KS test of the forget truth ratios against the retain model's, as
# mu-score gives it on the two truth-ratio streams alone; 1 for the retain model itself
t tofu_forget_quality_finetuned bash -c "$(declare -f metric near); R='$R'"'
    want=$(mu-score --format tsv --by split --label split=forget "$R/eval/finetuned/forget.tr.out" \
             --label split=forget --reference "$R/eval/retained/forget.tr.out" |
           awk -F"\t" "\$1 == \"forget_quality\" { print \$3 }")
    near "$(metric finetuned forget_quality forget)" "$want" 1e-12'
t tofu_forget_quality_retained bash -c "$(declare -f metric near); R='$R'; "'near "$(metric retained forget_quality forget)" 1'

# the report: the fine-tuned row from its metrics stream, one row per mask, AUES in [0, 1],
# MU95 in [0, 1] or n/a (no run keeps 95% of the utility: the tiny model's utility can fall
# to 0 at both rates, as it does in the sanitized build's rounding), and MU95 recomputed from
# the runs' metrics: the best forget quality among the runs with at least 95% of the
# fine-tuned model's utility
t tofu_report_finetuned bash -c "$(declare -f metric); R='$R'"'
    grep -q "^| finetuned | $(printf %.3f "$(metric finetuned answer_prob forget)") | " "$R/report.md"'
rows() { awk -F' *\\| *' '$3 == "npo" { print $2, $4, $5 }' "$R/report.md"; }
t tofu_report_rows bash -c "$(declare -f rows); R='$R'; "'[ "$(rows | cut -d" " -f1 | tr "\n" " ")" = "'"$MASKS"' " ]'
t tofu_report_numbers bash -c "$(declare -f rows); R='$R'"'
    rows | awk "{ for (i = 2; i <= 3; i++) if (!(\$i ~ /^[0-9.e-]+\$/ && \$i + 0 >= 0 && \$i + 0 <= 1) && !(i == 3 && \$i == \"n/a\")) bad = 1 }
                END { exit bad || NR != 4 }"'
for mk in $MASKS; do
    u0=$(metric finetuned model_utility)
    want=$(for l in $LRS; do echo "$(metric "$mk-npo-$l" forget_quality forget) $(metric "$mk-npo-$l" model_utility)"; done |
           awk -v u0="$u0" '$2 >= 0.95 * u0 && (best == "" || $1 > best) { best = $1 } END { print best == "" ? "nan" : best }')
    got=$(awk -F'\t' '$1 == "mu95" { print $3 }' "$R/curve/$mk-npo.tsv")
    if [ "$want" = nan ] && [ "$got" = nan ] || near "$got" "$want" 1e-12; then ok "tofu_mu95_$mk"
    else fail "tofu_mu95_$mk" "curve $got, runs give $want"; fi
done
# the sweep line (lee-report.awk): the least retention is the least utility of the runs'
# metrics over the fine-tuned model's, and the short-sweep warning is there exactly when every
# run keeps >= 95% of it
t tofu_sweep_line bash -c "$(declare -f metric); R='$R'"'
    u0=$(metric finetuned model_utility)
    read -r lo all < <(for mk in '"$MASKS"'; do for l in '"$LRS"'; do metric "$mk-npo-$l" model_utility; done; done |
          awk -v u0="$u0" "{ n++; r = \$1 / u0; if (lo == \"\" || r < lo) lo = r } r < 0.95 { bad = 1 }
                           END { printf \"%.2f %d\n\", lo, (n == 8 && !bad) }")
    line=$(grep -E -- "^- npo: the sweep reaches at most [01]\.[0-9]{2} removal and at least $lo retention" "$R/report.md") &&
    [ "$all" = "$(grep -cF "every run keeps >= 95% retention" <<< "$line")" ]'

# masks of one size (the fraction of the model), the complement outside the act mask
t tofu_masks_equal_size bash -c '
    [ "$(for m in '"$MASKS"'; do mu-dump "'"$R"'/mask/$m.mask" | head -1 | jq .meta.params_selected; done | sort -u | wc -l)" = 1 ]'
t tofu_complement_disjoint bash -c "$(declare -f mask_bytes mask_common); R='$R'"'
    [ "$(mask_common $R/mask/act.mask $R/mask/complement.mask)" = 0 ] &&
    [ "$(mask_common $R/mask/act.mask $R/mask/act.mask)" -gt 0 ]'
# the removal-retention plot, where gnuplot is installed: a PNG the report shows
if command -v gnuplot >/dev/null; then
  t tofu_plot bash -c "[ \"\$(head -c 8 '$R/curves-npo.png' | od -An -tx1 | tr -d ' \n')\" = 89504e470d0a1a0a ] &&
    grep -q '(curves-npo.png)' '$R/report.md'"
else
  skip tofu_plot "gnuplot not installed"
fi
t tofu_make_q_up_to_date pipe -q
# a changed knob (pipelines/knobs.mk): UNLEARN_STEPS redoes the 8 unlearning runs and their
# evaluations, not the fine-tuned or retain model, the attributions or the masks
pipe UNLEARN_STEPS=3 -n > "$T/plan" 2>&1
t tofu_knob_rebuilds bash -c "
  [ \$(grep -c -- '--steps 3 ' '$T/plan') = 8 ] && [ \$(grep -cE '^(pipelines/job.sh )?mu-train' '$T/plan') = 8 ] &&
  ! grep -qE '^(pipelines/job.sh )?mu-(attrib|maskgen|tokenize)' '$T/plan'"
# ... and that dry run wrote no knob stamp: with the knobs of the run, nothing is stale
t tofu_dry_run_keeps_stamps pipe -q

# TOFU's full model utility: the harmonic mean of nine values, the real authors' and world
# facts' option probability, ROUGE-L and truth ratio (one stream each) with the retain ones;
# DPO and IdkNLL (lee.mk's OPTS_dpo and OPTS_idk: a refusal as the preferred answer) as the
# objectives, IdkNLL at learning rates of its own (LRS_idk)
R2=$T/run2
if ! out=$(pipe RUN="$R2" ATTRIB=act LRS=1e-2 LRS_idk='1e-2 3e-2' OBJECTIVES='dpo idk' UTILITY_SETS="retain real_authors world_facts" \
             UTILITY_ROWS=0-4 -j2 2>&1); then
    fail tofu_full_utility_pipeline "$(echo "$out" | tail -3 | tr '\n' ' ')"; exit 0
fi
ok tofu_full_utility_pipeline
t tofu_dpo_rows bash -c "[ \$(grep -c '^| [a-z]* | dpo | ' '$R2/report.md') = 3 ]"
t tofu_idk_rows bash -c "[ \$(grep -c '^| [a-z]* | idk | [^|]* | [^|]* | [^,]*, [^,]* |\$' '$R2/report.md') = 3 ] &&
  [ \$(grep -c '^| [a-z]* | dpo | [^|]* | [^|]* | [^,]* |\$' '$R2/report.md') = 3 ] &&
  grep -qF 'at learning rates (dpo at 1e-2; idk at 1e-2 3e-2)' '$R2/report.md' && [ -s '$R2/unlearn/act-idk-3e-2.st' ] &&
  [ ! -e '$R2/unlearn/act-dpo-3e-2.st' ] &&
  mu-dump '$R2/unlearn/act-idk-1e-2.log' | head -1 |
    jq -e '.meta.options.objectives == {\"idk\": 1, \"retain-ce\": 1} and (.meta.options.dpo_alt | startswith(\"I don\"))' >/dev/null"
# each group's values in the model's metrics stream are those of mu-score on its streams
# alone, and model utility is their harmonic mean (0 here: the tiny model's ROUGE-L on the
# real authors' and world facts' short answers is 0)
vals() {   # vals MODEL: SPLIT METRIC VALUE of the nine, from mu-score on each stream alone
    local d=$R2/eval/$1
    score "$d/retain.qa.out" | awk -F'\t' '$1 == "answer_prob" || $1 == "rougeL_recall" { print "retain", $1, $2 }'
    score "$d/retain.tr.out" | awk -F'\t' '$1 == "truth_ratio" { print "retain", $1, $2 }'
    for s in real_authors world_facts; do
        score "$d/$s.out" | awk -F'\t' -v s=$s '$1 == "option_prob" || $1 == "rougeL_recall" || $1 == "truth_ratio" { print s, $1, $2 }'
    done
}
for m in finetuned retained; do
    bad=$(vals "$m" | while read -r sp name v; do
              g=$(mu-dump -H --kind metrics "$R2/eval/$m.metrics" |
                  jq -r --arg s "$sp" --arg n "$name" 'select(.metric == $n and .group.split == $s) | .value')
              near "$g" "$v" 1e-12 || echo "$sp $name: $g, alone $v"
          done)
    want=$(vals "$m" | awk '{ n++; if ($3 > 0) s += 1 / $3; else zero = 1 } END { if (n != 9) print "n=" n; else if (zero) print 0; else printf "%.17g", n / s }')
    got=$(mu-dump -H --kind metrics "$R2/eval/$m.metrics" | jq -r 'select(.metric == "model_utility") | .value')
    if [ -z "$bad" ] && near "$got" "$want" 1e-12; then ok "tofu_full_utility_$m"
    else fail "tofu_full_utility_$m" "utility $got, want $want; $bad"; fi
done
