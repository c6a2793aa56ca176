#!/usr/bin/env bash
# t_counterfact.sh — pipelines/counterfact.mk (localized editing on CounterFact) wired end to
# end on a tiny configuration: stories260K, 12 pool rows without the knowledge filter (the
# tiny model knows no facts), 4 edits, 4 kept facts, a few steps. Checks the report (one row
# per model, numbers in [0, 1], the base model's efficacy recomputed from its outputs), the
# flattened paraphrase/neighbourhood records against the data (jq), the answers of the token
# sets, that a second run rebuilds nothing, that new attribution scores rebuild only the atp
# localization, and the knowledge filter on its own (every selected fact's true answer wins).
. "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
M="$SHARED_DATA/models/stories260K"
CF="$SHARED_DATA/counterfact/counterfact.jsonl"
if [ ! -d "$M" ] || [ ! -f "$CF" ]; then
  skip counterfact_pipeline "no stories260K or counterfact under $SHARED_DATA"; exit 0
fi
for c in jq make awk; do
  command -v $c >/dev/null || { skip counterfact_pipeline "needs $c"; exit 0; }
done
R="$T/run"
run() { OMP_NUM_THREADS=1 make -C "$ROOT" --no-print-directory -f pipelines/counterfact.mk \
  MU_BIN="$MU_BIN" DATA="$SHARED_DATA" RUN="$R" MODEL="$M" N_POOL=12 KNOWN_FILTER=0 N_EDITS=4 \
  N_KEEP=4 N_NEIGHBOR=3 EDIT_STEPS=3 RELEARN_STEPS=2 BATCH=4 MASK_early=mlp:0-1 MASK_late=mlp:3-4 \
  ATP_LAYERS=2 LOOKUP_LAYERS=2 ATP_SAMPLES=2 "$@"; }
if ! run -j2 >"$T/log" 2>&1; then
  fail counterfact_pipeline_runs "$(tail -3 "$T/log" | tr '\n' ' ')"; exit 0
fi
ok counterfact_pipeline_runs
REP="$R/report.md"

# the table: base and edited-* with five numeric cells, relearned-* with the held-out one
cellre='[01]\.[0-9]{2} / [01]\.[0-9]{2}'
t counterfact_report_rows bash -c "
  [ \$(grep -cE '^\| (base|edited-(early|lookup|late|all|atp|random)) \|( $cellre \|){5}\$' '$REP') = 7 ] &&
  [ \$(grep -cE '^\| relearned-(early|lookup|late|all|atp|random) \|( – \|){4} $cellre \|\$' '$REP') = 6 ] &&
  [ \$(grep -c '^| ' '$REP') = 55 ]"
# paired with late and with random, prompt by prompt: a table each, a row per other
# localization with five cells; each
# difference is that of the two accuracies in scores.tsv (the same prompts), inside its
# interval, which lies in [-1, 1] and has a width; each p in [0, 1], and Holm's over the file
# beside it
t counterfact_paired bash -c "$(declare -f holm_ok)
  holm_ok '$R/paired.tsv' && grep -q 'over the 50 comparisons of paired.tsv' '$REP' &&
  [ \$(grep -cE '^\| (early|lookup|late|all|atp|random) \|( [+-][01]\.[0-9]{2} \[[+-][01]\.[0-9]{2}, [+-][01]\.[0-9]{2}\] \(p [0-9.e-]+, Holm [0-9.e-]+\) \|){5}\$' '$REP') = 10 ] &&
  grep -q 'Paired with late, prompt by prompt' '$REP' && grep -q 'Paired with random, prompt by prompt' '$REP' &&
  [ \$(wc -l < '$R/paired.tsv') = 50 ] &&
  awk -F'\t' 'NR == FNR { split(\$2, g, /[,=]/); if (\$1 == \"choice_acc\") acc[g[2], g[4]] = \$3; next }
    { d = \$5 - (acc[\$2 \"-\" \$3, \$4] - acc[\$2 \"-\" \$1, \$4])
      if (d > 1e-9 || d < -1e-9 || !(\$9 >= 0 && \$9 <= 1) || \$3 == \$1 || !(-1 <= \$7 && \$7 <= \$5 && \$5 <= \$8 && \$8 <= 1 && \$7 < \$8)) bad = 1 }
    END { exit bad }' '$R/scores.tsv' '$R/paired.tsv'"
# side effects on MMLU (high_school_geography, its first 40 questions): each edited model
# paired with the base model question by question (mmlu-paired.tsv): each difference is the
# two accuracies of mmlu.tsv subtracted, Holm's over the 6; the report's section prints each
# edited model's accuracy and its difference, and no model after the attack; the probability
# of the right answer likewise (mmlu-prob-paired.tsv: the two means subtracted, the report's
# fifth column)
t counterfact_mmlu bash -c "$(declare -f holm_ok)
  holm_ok '$R/mmlu-paired.tsv' && holm_ok '$R/mmlu-prob-paired.tsv' &&
  awk -F'\t' 'FNR == 1 { f++ } f == 1 { split(\$2, g, /[,=]/); if (\$1 == \"choice_prob\" && g[3] == \"\") p[g[2]] = \$3; next }
    { d = \$5 - (p[\"edited-\" \$3] - p[\"base\"]); if (d > 1e-9 || d < -1e-9 || \$1 != \"base\" || \$6 != 40) bad = 1; n++ }
    END { exit bad || n != 6 }' '$R/mmlu.tsv' '$R/mmlu-prob-paired.tsv' && S=\$(sed -n '/^## Side effects: MMLU/,/^## /p' '$REP') &&
  awk -F'\t' 'FNR == 1 { f++; if (f != 2) next } f == 1 { split(\$2, g, /[,=]/); if (g[3] == \"\" && \$1 == \"choice_acc\") { acc[g[2]] = \$3; if (\$4 != 40) bad = 1 }; next }
    f == 2 { d = \$5 - (acc[\"edited-\" \$3] - acc[\"base\"]); cell[\$3] = sprintf(\"%+.2f [%+.2f, %+.2f]\", \$5, \$7, \$8)
      if (d > 1e-9 || d < -1e-9 || \$1 != \"base\" || \$2 != \"edited\" || \$4 != \"mmlu\" || \$6 != 40) bad = 1; n++; next }
    /^\| edited-/ { split(\$0, c, / *\| */); l = substr(c[2], 8)
      if (index(c[4], cell[l] \" (p \") != 1 || substr(c[3], 1, 4) != sprintf(\"%.2f\", acc[c[2]])) bad = 1; r++ }
    END { exit bad || n != 6 || r != 6 }' '$R/mmlu.tsv' '$R/mmlu-paired.tsv' <(echo; printf '%s\n' \"\$S\") &&
  grep -q 'over the 6 comparisons of its file' <<< \"\$S\" && grep -q '^| base | [01]\.[0-9][0-9] \[' <<< \"\$S\" &&
  ! grep -q '^| relearned' <<< \"\$S\" && grep -q '^MMLU high_school_geography, its first 40 test questions: ' <<< \"\$S\""
# where editing moved the weights: only each localization's MLPs, by a non-zero amount, and a
# report row per localization
t counterfact_changes_local bash -c "
  awk -F'\t' '\$1 == \"early\" && (\$3 < 0 || \$3 > 1) { bad = 1 } \$1 == \"late\" && (\$3 < 3 || \$3 > 4) { bad = 1 }
    \$4 !~ /^(gate|up|down)\$/ || !(\$5 > 0 && \$6 > 0) { bad = 1 } { n[\$1]++ }
    END { exit bad || n[\"early\"] != 6 || n[\"late\"] != 6 || n[\"all\"] != 15 || n[\"random\"] != 6 }' '$R/changes.tsv' &&
  sed -n '/^## Where editing moved the weights/,\$p' '$REP' |
    grep -cE '^\| (early|lookup|late|all|atp|random) \| [0-9]+ \([0-9]+\) \| ' | grep -qx 6"
# every number of the table is in [0, 1]
t counterfact_report_unit bash -c "
  grep -E '^\| (base|edited|relearned).* / ' '$REP' | grep -oE '[0-9]+\.[0-9]+' |
  awk '{ n++; if (\$1 < 0 || \$1 > 1) bad = 1 } END { exit bad || n != 2 * (7 * 5 + 6) }'"
# the accuracies with their 95% intervals: every model a row, base and edited-* with three
# intervals, relearned-* with the held-out one; lo <= accuracy <= hi, all in [0, 1]
t counterfact_report_ci bash -c "
  sed -n '/^Accuracy with its 95% interval/,/^## /p' '$REP' | grep -E '^\| (base|edited|relearned)' |
    awk -F' *\\| *' '{ n++; for (i = 3; i <= 5; i++) { if (\$i == \"–\") continue; k++; split(\$i, a, /[][, ]+/)
        if (!(a[2] >= 0 && a[2] <= a[1] + 0.005 && a[1] <= a[3] + 0.005 && a[3] <= 1)) bad = 1 } }
      END { exit bad || n != 13 || k != 7 * 3 + 6 }'"
t counterfact_report_atp_layers grep -qE 'atp=mlp:[0-4],[0-4] ' "$REP"
t counterfact_report_lookup_layers grep -qE 'lookup=mlp:[0-4],[0-4] ' "$REP"
# the base model's efficacy cell recomputed from its outputs without mu-score: the fraction
# of edit prompts where the new target (candidate 1) wins, and mean p(new) over the two
t counterfact_efficacy_recomputed bash -c "
  want=\$(mu-dump -H --full '$R/out/base/edit.out' | jq -s -r '
    [.[] | .choice_logprobs.data] as \$l | (\$l | length) as \$n |
    [(\$l | map(select(.[1] > .[0])) | length) / \$n,
     (\$l | map(1 / (1 + ((.[0] - .[1]) | exp))) | add) / \$n] | @tsv' |
    awk -F'\t' '{ printf \"%.2f / %.2f\", \$1, \$2 }')
  grep -qF \"| base | \$want |\" '$REP' || { echo \"want \$want\"; exit 1; }"
# the flattened prompts: one record per paraphrase prompt and per first N_NEIGHBOR
# neighbourhood prompts of each edit fact (rows 0-3 without the filter), with its targets
# and its record id
t counterfact_flatten bash -c "
  for f in paraphrase_prompts:para:99 neighborhood_prompts:neighbor:3; do
    IFS=: read -r field name k <<< \"\$f\"
    want=\$(head -n 4 '$CF' | jq -c --argjson k \$k --arg field \$field '. as \$r | .[\$field][0:\$k][] |
      [\$r.case_id, ., \$r.target_true, \$r.target_false]')
    got=\$(jq -c '[.case_id, .prompt, .target_true, .target_false]' '$R/data/'\$name.jsonl)
    [ -n \"\$want\" ] && [ \"\$want\" = \"\$got\" ] || { echo \"\$name differs\"; exit 1; }
    # record ids: 100 case_id + the prompt's index within its case, in the tokens too
    ids=\$(head -n 4 '$CF' | jq -r --argjson k \$k --arg field \$field '.case_id as \$c | .[\$field][0:\$k] | keys[] | 100 * \$c + .')
    [ \"\$ids\" = \"\$(mu-dump -H '$R/tok/'\$name.tok | jq -r .id)\" ] || { echo \"\$name ids differ\"; exit 1; }
  done"
# answers: the new target (candidate 1) for edit, paraphrase and held-out prompts, the true
# one (candidate 0) for neighbourhood, kept and relearning records; the candidates are the
# data's target_true and target_false of the record's case
t counterfact_answers bash -c "
  head -n 12 '$CF' | jq -s 'map({key: (.case_id | tostring), value: [.target_true, .target_false]}) | from_entries' > '$T/targets.json'
  for s in edit:1 para:1 heldout:1 neighbor:0 keep:0 relearn:0 true:0; do
    f=\${s%:*} a=\${s#*:}
    mu-dump -H '$R/tok/'\$f.tok | jq -e -s --argjson a \$a --slurpfile t '$T/targets.json' \
      'length > 0 and all(.answer == \$a and .target_texts == \$t[0][.meta.case_id | tostring])' >/dev/null ||
      { echo \"\$f\"; exit 1; }
  done"
t counterfact_rows bash -c "
  [ \"\$(cat '$R/idx/edit.idx' | tr '\n' ' ')\" = '0 1 2 3 ' ] &&
  [ \"\$(cat '$R/idx/keep.idx' | tr '\n' ' ')\" = '4 5 6 7 ' ] &&
  [ \"\$(cat '$R/idx/relearn.idx' | tr '\n' ' ')\" = '0 1 ' ] &&
  [ \"\$(cat '$R/idx/heldout.idx' | tr '\n' ' ')\" = '2 3 ' ]"

# nothing is stale after a run
t counterfact_up_to_date run -q "$R/report.md"
t counterfact_nothing_to_run bash -c "[ \"\$($(declare -f run); R='$R' ROOT='$ROOT' MU_BIN='$MU_BIN' SHARED_DATA='$SHARED_DATA' M='$M'; run -n | grep -cE '^(pipelines/job.sh )?mu-')\" = 0 ]"
# the attacks' dense deltas are intermediate (pipelines/common.mk): gone, their evaluations there
t counterfact_relearn_deltas_intermediate bash -c "
  ! ls '$R'/relearn-*.st >/dev/null 2>&1 && [ \$(ls '$R'/edit-*.st | wc -l) = 6 ] &&
  [ \$(ls '$R'/out/relearned-*/heldout.out | wc -l) = 6 ]"
# RELEARN_LORA: the six attacks train LoRA adapters (a knob: planned again; nothing else trains)
run RELEARN_LORA=4 -n > "$T/plan_lora" 2>&1
t counterfact_relearn_lora bash -c "
  [ \$(grep -cE '^(pipelines/job.sh )?mu-train.* --lora 4 .*--train [^ ]*/relearn\.tok' '$T/plan_lora') = 6 ] &&
  [ \$(grep -cE '^(pipelines/job.sh )?mu-train' '$T/plan_lora') = 6 ]"
# a changed knob (pipelines/knobs.mk): EDIT_LR redoes the six edits and what depends on them
# (the attacks, the evaluations), not the pool, the sets, the tokens or the attributions
run EDIT_LR=9e-4 -n > "$T/plan2" 2>&1
t counterfact_knob_rebuilds bash -c "
  [ \$(grep -c -- '--lr 9e-4 ' '$T/plan2') = 6 ] && [ \$(grep -cE '^(pipelines/job.sh )?mu-train.*relearn\.tok' '$T/plan2') = 6 ] &&
  ! grep -qE '^(pipelines/job.sh )?mu-(attrib|tokenize|maskgen)|pool\.(tok|out)' '$T/plan2'"

# new attribution scores: the atp mask, its edit and attack are redone, no other edit
touch "$R/attrib/atp.scores"
run -n > "$T/plan" 2>&1
t counterfact_rebuilds_only_atp bash -c "
  grep -q '^mu-maskgen' '$T/plan' && [ \$(grep -cE '^(pipelines/job.sh )?mu-train' '$T/plan') = 2 ] &&
  [ \$(grep -E '^(pipelines/job.sh )?mu-train' '$T/plan' | grep -c 'edit-atp.st') = 2 ]"

# the knowledge filter: every selected row's true answer beats the edit target in the pool
R2="$T/filter"
if ! run RUN="$R2" KNOWN_FILTER=1 N_POOL=40 N_EDITS=2 N_KEEP=2 "$R2/idx/edit.idx" "$R2/idx/keep.idx" >"$T/log2" 2>&1; then
  if grep -q 'known facts in rows 0-40' "$T/log2"; then
    skip counterfact_known_filter "stories260K knows fewer than 4 of the first 40 facts"
  else
    fail counterfact_known_filter "$(tail -3 "$T/log2" | tr '\n' ' ')"
  fi
else
  t counterfact_known_filter bash -c "
    mu-dump -H --full '$R2/out/base/pool.out' |
      jq -r '[.id, (.choice_logprobs.data[0] > .choice_logprobs.data[1])] | @tsv' > '$T/pool.tsv'
    want=\$(awk '\$2 == \"true\" { print \$1 }' '$T/pool.tsv' | head -n 4 | tr '\n' ' ')
    got=\$(cat '$R2/idx/edit.idx' '$R2/idx/keep.idx' | tr '\n' ' ')
    [ \"\$want\" = \"\$got\" ] && [ \$(wc -l < '$T/pool.tsv') = 40 ]"
fi
# POOL_FROM moves the pool: rows 100-108 (ids 100..107), the edit facts the first 4 of
# them, their paraphrases those of CounterFact's rows 100-103 (read by jq from the file);
# the report names the rows of its pool
run RUN="$T/from" KNOWN_FILTER=0 N_POOL=8 POOL_FROM=100 N_EDITS=4 N_KEEP=4 \
  "$T/from/idx/edit.idx" "$T/from/idx/keep.idx" "$T/from/data/para.jsonl" >"$T/log4" 2>&1
t counterfact_pool_from bash -c "
  [ \"\$(mu-dump -H '$T/from/tok/pool.tok' | jq -r .id | tr '\n' ' ')\" = '100 101 102 103 104 105 106 107 ' ] &&
  [ \"\$(tr '\n' ' ' < '$T/from/idx/edit.idx')\" = '100 101 102 103 ' ] &&
  [ \"\$(tr '\n' ' ' < '$T/from/idx/keep.idx')\" = '104 105 106 107 ' ] &&
  [ \"\$(jq -r .case_id '$T/from/data/para.jsonl' | uniq | tr '\n' ' ')\" = \"\$(jq -s -r '.[100:104][].case_id' '$CF' | tr '\n' ' ')\" ] &&
  grep -q '^No knowledge filter (rows 0-12); edited the first 4, kept the next 4' '$REP'"
# too few known facts: make fails with the pipeline's one line naming the file, and no
# known.idx is left behind
run RUN="$T/few" KNOWN_FILTER=0 N_POOL=3 "$T/few/known.idx" >"$T/log3" 2>&1
t counterfact_too_few bash -c "
  [ \$(grep -cE 'known.idx: only 3 known facts in rows 0-3, need N_EDITS \+ N_KEEP = 8\$' '$T/log3') = 1 ] &&
  [ ! -e '$T/few/known.idx' ] && [ ! -e '$T/few/known.idx.tmp' ]"
# SCALES: each edit read at other strengths (mu-forward --scaled-delta S=edit-LOC.st): at S = 1
# the records are the edited model's byte for byte; the report's table has a row per
# localization, S = 0 the base model's efficacy / paraphrase / neighbourhood accuracy, S = 1
# the edited one's (scores.tsv), 0.5 strength.tsv's; strength-paired.tsv holds each localization
# against late and random at S = 1 and 0.5 on the three splits (2 x 5 x 2 x 3 = 60 rows), at
# S = 1 paired.tsv's, and the report prints them (strength_paired_ok)
if run SCALES='1 0.5' > "$T/scales.log" 2>&1; then
  t counterfact_scales bash -c "$(declare -f holm_ok strength_paired_ok)
    [ \$(grep -cE '^(pipelines/job.sh )?mu-forward.* --scaled-delta (1|0\.5)=[^ ]*/edit-[a-z]+\.st --emit choices' '$T/scales.log') = 36 ] &&
    for l in early lookup late all atp random; do for p in edit para neighbor; do
      mu-dump -H '$R/out/scaled-1-'\$l'/'\$p'.out' > '$T/s1.txt' && mu-dump -H '$R/out/edited-'\$l'/'\$p'.out' |
        cmp -s - '$T/s1.txt' || { echo \"scaled-1-\$l \$p differs\"; exit 1; }; done; done &&
    grep -q '^## Strength of the edit' '$REP' && grep -q '^| localization | S = 0 | S = 0.5 | S = 1 |\$' '$REP' &&
    awk -F'\t' 'FILENAME ~ /scores/ && \$1 == \"choice_acc\" { split(\$2, g, /[,=]/); a[g[2], g[4]] = \$3; next }
        FILENAME ~ /strength/ && \$1 == \"choice_acc\" { split(\$2, g, /[,=]/); a[\"s\" g[4] \"-\" g[2], g[6]] = \$3; next }
        function c(m) { return sprintf(\"%.2f / %.2f / %.2f\", a[m, \"edit\"], a[m, \"para\"], a[m, \"neighbor\"]) }
        /^\| (early|lookup|late|all|atp|random) \|/ { split(\$0, f, / *\| */); n++
          if (f[3] != c(\"base\") || f[4] != c(\"s0.5-\" f[2]) || f[5] != c(\"edited-\" f[2]) || !((\"s0.5-\" f[2], \"edit\") in a)) bad = 1 }
        END { exit bad || n != 6 }' '$R/scores.tsv' '$R/strength.tsv' <(sed -n '/^## Strength of the edit/,/^Prompts per cell/p' '$REP') &&
    n=\$(awk -F'\t' '\$2 ~ /^loc=early,scale=0.5,split=/ { s = s (s == \"\" ? \"\" : \" / \") \$4 } END { print s }' '$R/strength.tsv') &&
    w=\$(awk -F'\t' 'NR > 1 && (\$6 - \$5) / 2 > h { h = (\$6 - \$5) / 2 } END { printf \"%.2f\", h }' '$R/strength.tsv') &&
    grep -q \"^Prompts per cell: \$n. The widest 95% interval (Wilson)\" '$REP' && grep -q \"^is ±\$w: \" '$REP' &&
    [ \$(wc -l < '$R/strength-paired.tsv') = 60 ] && strength_paired_ok '$R' '$REP' edited"
  # a strength dropped from SCALES leaves the paired comparisons too (the knob, not the files,
  # tells make: every remaining output is older than the file)
  if run SCALES='1' "$R/strength-paired.tsv" > "$T/scales1.log" 2>&1; then
    t counterfact_scales_dropped bash -c "[ \$(wc -l < '$R/strength-paired.tsv') = 30 ] &&
      [ \"\$(cut -f2 '$R/strength-paired.tsv' | sort -u)\" = scaled-1 ]"
  else fail counterfact_scales_dropped "$(tail -3 "$T/scales1.log" | tr '\n' ' ')"; fi
else
  fail counterfact_scales "$(tail -3 "$T/scales.log" | tr '\n' ' ')"
fi
# a localization dropped from LOCS leaves the paired comparisons too (their knob names LOCS):
# 2 baselines x 4 others x 5 kinds of split
if run LOCS='early lookup late all random' "$R/paired.tsv" > "$T/locs.log" 2>&1; then
  t counterfact_locs_dropped bash -c "[ \$(wc -l < '$R/paired.tsv') = 40 ] && ! cut -f1,3 '$R/paired.tsv' | grep -q atp"
else fail counterfact_locs_dropped "$(tail -3 "$T/locs.log" | tr '\n' ' ')"; fi
