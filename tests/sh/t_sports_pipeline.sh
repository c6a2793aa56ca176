#!/usr/bin/env bash
# t_sports_pipeline.sh — pipelines/sports.mk (the `make demo` job) wired end to end on a tiny
# configuration: stories260K, 16 facts, a few steps. Checks the report's tables (every model,
# the path-patching, probe and attribution-patching localizations and the random one, the probes, where the
# unlearning moved the weights), that a second run rebuilds nothing, and
# that a changed attribution rebuilds only what depends on it.
. "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
M="$SHARED_DATA/models/stories260K"
if [ ! -d "$M" ] || [ ! -f "$SHARED_DATA/sports/sports.csv" ] || [ ! -d "$SHARED_DATA/mmlu" ]; then
  skip sports_pipeline "no stories260K, sports or mmlu under $SHARED_DATA"; exit 0
fi
run() { make -C "$ROOT" --no-print-directory -f pipelines/sports.mk MU_BIN="$MU_BIN" RUN="$T/run" \
  DATA="$SHARED_DATA" MODEL="$M" N_FACTS=16 N_FORGET=8 LEARN_STEPS=10 UNLEARN_STEPS=5 RELEARN_STEPS=3 \
  BATCH=8 MMLU_N=8 MASK_early=mlp:1-2 MASK_late=mlp:3-4 ATP_LAYERS=2 LOOKUP_LAYERS=2 PROBE_LAYERS=2 ATP_SAMPLES=2 "$@"; }
if ! run >"$T/log" 2>&1; then
  fail sports_pipeline_runs "$(tail -3 "$T/log" | tr '\n' ' ')"; exit 0
fi
ok sports_pipeline_runs
R="$T/run/report.md"
t sports_pipeline_model_rows bash -c "[ \$(grep -cE '^\| (base|learned|(un|re)learned-(early|lookup|probe|late|all|atp|random)) \| [01]\.[0-9]{2} / ' '$R') = 16 ]"
# the forget accuracies with their 95% intervals: a row per model, each cell lo <= acc <= hi
# in [0, 1], over the 8 forget facts and 4 held-out ones (the tables before the first section)
t sports_pipeline_ci_rows bash -c "
  sed -n '1,/^## /p' '$R' | grep -E '^\| (base|learned|(un|re)learned-(early|lookup|probe|late|all|atp)) \| [01]\.[0-9]{2} \[' |
    awk -F' *\\| *' '{ n++; for (i = 3; i <= 6; i++) { split(\$i, a, /[][, ]+/)
        if (!(a[2] >= 0 && a[2] <= a[1] + 0.005 && a[1] <= a[3] + 0.005 && a[3] <= 1)) bad = 1 } }
      END { exit bad || n != 14 }' &&
  grep -q 'Wilson; 8 forget facts, 4 held out' '$R'"
# paired with late and with random, fact by fact: a table each, a row per other
# localization; each difference is the
# difference of the two models' accuracies in scores.tsv (the same facts), inside its
# interval, which lies in [-1, 1] and has a width; each p in [0, 1], and Holm's over the file
# beside it; the report says what Holm's p is
P="$T/run/paired.tsv"
t sports_pipeline_paired bash -c "$(declare -f holm_ok)
  holm_ok '$P' && grep -q 'Holm.s step-down method over the 72 comparisons of paired.tsv' '$R' &&
  [ \$(grep -cE '^\| (early|lookup|probe|late|all|atp|random) \|( [+-][01]\.[0-9]{2} \[[+-][01]\.[0-9]{2}, [+-][01]\.[0-9]{2}\] \(p [0-9.e-]+, Holm [0-9.e-]+\) \|){6}\$' '$R') = 12 ] &&
  grep -q 'Paired with late, fact by fact' '$R' && grep -q 'Paired with random, fact by fact' '$R' &&
  [ \$(wc -l < '$P') = 72 ] && [ \"\$(cut -f1 '$P' | uniq | tr '\n' ' ')\" = 'late random ' ] &&
  awk -F'\t' 'NR == FNR { split(\$2, g, /[,=]/); if (\$1 == \"choice_acc\") acc[g[2], g[4], g[6]] = \$3; next }
    { split(\$4, fs, \"-\"); want = acc[\$2 \"-\" \$3, fs[1], fs[2]] - acc[\$2 \"-\" \$1, fs[1], fs[2]]; d = \$5 - want
      if (d > 1e-9 || d < -1e-9 || !(\$9 >= 0 && \$9 <= 1) || \$6 != (fs[2] == \"forget\" ? 8 : 4) || \$3 == \$1 ||
          !(-1 <= \$7 && \$7 <= \$5 && \$5 <= \$8 && \$8 <= 1 && \$7 < \$8)) bad = 1 }
    END { exit bad }' '$T/run/scores.tsv' '$P'"
t sports_pipeline_atp_layers grep -qE 'atp=mlp:[0-4](,[0-4])? ' "$R"
# FACTS_FROM moves the window of facts: rows 40-56 of sports.csv, forget 40-48 (relearn
# 40-44, held out 44-48), maintain 48-56, the evaluated splits tokenized in the three
# formats, the trained ones (all, relearn) in cloze and question; the report names the
# rows it used
run -n FACTS_FROM=40 > "$T/plan4" 2>&1
t sports_pipeline_facts_from bash -c "
  for w in all:40-56:2 forget:40-48:3 maintain:48-56:3 relearn:40-44:2 heldout:44-48:3; do
    IFS=: read -r split rows n <<< \"\$w\"
    [ \$(grep -cE \"^mu-tokenize .*--rows \$rows .*--out [^ ]*/tok/(cloze|question|mc)-\$split\.tok \" '$T/plan4') = \$n ] || exit 1
  done && [ \$(grep -c '^mu-tokenize' '$T/plan4') = 13 ] &&
  grep -q '^Taught 16 facts (Sports Facts rows 0-16), unlearned the first 8;' '$R'"
# RANDOM_SEEDS adds random draws: random-2 is drawn with seed 2, unlearned, attacked and
# paired with late and random, while the first random mask stays as it is
run -n RANDOM_SEEDS=2 > "$T/plan3" 2>&1
t sports_pipeline_random_seeds bash -c "
  [ \$(grep -c '^mu-maskgen.* --seed 2 --out [^ ]*/masks/random-2.mask' '$T/plan3') = 1 ] &&
  ! grep -q 'masks/random.mask\$' '$T/plan3' &&
  [ \$(grep -cE '^(pipelines/job.sh )?mu-train.*unlearn-random-2\.st' '$T/plan3') = 2 ] &&
  grep -q 'out-random-2\|relearned-random-2/' '$T/plan3'"
# the random mask is made from the model (its config): a fresh run that fetches the model
# must not draw it first (make -W: what if the config were new)
t sports_pipeline_random_needs_model bash -c "$(declare -f run); T='$T'; ROOT='$ROOT'; MU_BIN='$MU_BIN'; SHARED_DATA='$SHARED_DATA'; M='$M'
  run -n -W '$M/config.json' '$T/run/masks/random.mask' | grep -q '^mu-maskgen.* --random '"
# the random localization: as many MLP matrices as lookup's (2 layers: 6), named one by one
# unless they make whole MLPs
t sports_pipeline_random_mask bash -c "
  [ \$(mu-dump '$T/run/masks/random.mask' | jq -s '[.[] | select(.name)] | map(select(.name | test(\"mlp\\\\.(gate|up|down)_proj\"))) | length') = 6 ] &&
  grep -qE 'random=mlp:[0-9]+(\.(gate|up|down))?(,[0-9]+(\.(gate|up|down))?)*\.\$' '$R'"
t sports_pipeline_lookup_layers grep -qE 'lookup=mlp:[0-4],[0-4] ' "$R"
t sports_pipeline_probe_layers grep -qE 'probe=mlp:[0-4],[0-4] ' "$R"
# the probe localization's mask is the two MLPs of largest gain in the probes' scores
t sports_pipeline_probe_mask bash -c "
  top=\$(mu-dump '$T/run/attrib/probe.scores' | head -1 | jq -r '.meta.mlp_effect | to_entries | sort_by(-.value) | .[0:2] | map(.key) | sort | join(\",\")')
  grep -qE \"probe=mlp:\$top \" '$R'"
t sports_pipeline_probe_rows bash -c "[ \$(grep -cE '^\| (base|learned|unlearned-(early|lookup|probe|late|all|atp|random)) \| [0-9] \| [01]\.[0-9]{2} \|' '$R') = 9 ]"
# where unlearning moved the weights: only the tensors of each localization's MLPs, each by a
# non-zero amount; a report row per localization
C="$T/run/changes.tsv"
t sports_pipeline_changes_local bash -c "
  awk -F'\t' '\$1 == \"early\" && (\$3 < 1 || \$3 > 2) { bad = 1 } \$1 == \"late\" && (\$3 < 3 || \$3 > 4) { bad = 1 }
    \$4 !~ /^(gate|up|down)\$/ || !(\$5 > 0 && \$6 > 0) { bad = 1 } { n[\$1]++ }
    END { exit bad || n[\"early\"] != 6 || n[\"late\"] != 6 || n[\"all\"] != 15 || n[\"atp\"] + 0 == 0 || n[\"random\"] != 6 }' '$C' &&
  [ \$(grep -cE '^\| (early|lookup|probe|late|all|atp|random) \| [0-9]+ \([0-9]+\) \| [0-9.e-]+ \| [0-9.e-]+ \| [0-9]+\.(gate|up|down) ' '$R') = 7 ]"
# MMLU (one subject, its first 8 questions): the records are the CSV's rows as Python's csv
# module reads them, after MMLU's header, each id its row; each unlearned model paired with
# the learned one on them, in accuracy (mmlu-paired.tsv) and in the probability of the right
# answer (mmlu-prob-paired.tsv): each difference is the two models' means in mmlu.tsv
# subtracted (scores.tsv's accuracies), Holm's over each file's 7; the report's section
# prints each model's accuracy and probability and each difference, and no table by subject
t sports_pipeline_mmlu_records bash -c "mu-dump '$T/run/tok/mmlu.tok' | tail -n +2 | python3 -c '
import csv, json, sys
got = [(r[\"id\"], r[\"prompt_text\"], r[\"answer\"], r[\"meta\"]) for r in map(json.loads, sys.stdin)]
rows = list(csv.reader(open(sys.argv[1], newline=\"\")))[:8]
head = \"The following are multiple choice questions (with answers) about high school geography.\\n\\n\"
want = [(i, head + \"%s\\nA. %s\\nB. %s\\nC. %s\\nD. %s\\nAnswer:\" % tuple(r[:5]), \"ABCD\".index(r[5]),
         {\"subject\": \"high_school_geography\"}) for i, r in enumerate(rows)]
sys.exit(got != want)' '$SHARED_DATA/mmlu/test/high_school_geography_test.csv'"
t sports_pipeline_mmlu_paired bash -c "$(declare -f holm_ok)
  holm_ok '$T/run/mmlu-paired.tsv' && holm_ok '$T/run/mmlu-prob-paired.tsv' &&
  S=\$(sed -n '/^## Side effects: MMLU/,\$p' '$R') &&
  awk -F'\t' 'FNR == 1 { f++ } { split(\$2, g, /[,=]/) }
    f == 1 { if (\$1 == \"choice_acc\" && g[4] == \"mmlu\") acc[g[2]] = \$3; next }
    f == 2 { if (\$1 == \"choice_acc\" && g[3] == \"\" && \$3 != acc[g[2]]) bad = 1; if (\$1 == \"choice_prob\" && g[3] == \"\") prob[g[2]] = \$3; next }
    f <= 4 { m = f == 3 ? \"acc\" : \"prob\"; v = f == 3 ? acc[\"unlearned-\" \$3] - acc[\"learned\"] : prob[\"unlearned-\" \$3] - prob[\"learned\"]
      d = \$5 - v; cell[m, \$3] = f == 3 ? sprintf(\"%+.2f [%+.2f, %+.2f]\", \$5, \$7, \$8) : sprintf(\"%+.3f [%+.3f, %+.3f]\", \$5, \$7, \$8)
      if (d > 1e-9 || d < -1e-9 || \$1 != \"learned\" || \$2 != \"unlearned\" || \$4 != \"mmlu\" || \$6 != 8 || !(\$9 >= 0 && \$9 <= 1)) bad = 1
      n[f]++; next }
    /^\| unlearned-/ { split(\$0, c, / *\| */); l = c[2]; sub(/^unlearned-/, \"\", l)
      if (index(c[4], cell[\"acc\", l] \" (p \") != 1 || index(c[6], cell[\"prob\", l] \" (p \") != 1 ||
          c[3] != sprintf(\"%.2f\", acc[c[2]]) substr(c[3], 5) || c[5] != sprintf(\"%.3f\", prob[c[2]])) bad = 1; r++ }
    END { exit bad || n[3] != 7 || n[4] != 7 || r != 7 }' '$T/run/scores.tsv' '$T/run/mmlu.tsv' '$T/run/mmlu-paired.tsv' \
      '$T/run/mmlu-prob-paired.tsv' <(echo; printf '%s\n' \"\$S\") &&
  grep -q 'over the 7 comparisons of its file' <<< \"\$S\" &&
  grep -q '^MMLU high_school_geography, its first 8 test questions: ' <<< \"\$S\" && ! grep -q '^By subject' <<< \"\$S\""
# nothing is stale after a run: the only recipe left is the report's cat
t sports_pipeline_up_to_date bash -c "[ \"\$($(declare -f run); T='$T'; ROOT='$ROOT'; MU_BIN='$MU_BIN'; SHARED_DATA='$SHARED_DATA'; M='$M'; run -n | grep -cE '^(pipelines/job.sh )?mu-')\" = 0 ]"
# the relearning attacks' dense deltas are intermediate (pipelines/common.mk): gone after the
# run, their logs and evaluations there (and nothing stale without them: the test above);
# KEEP_RELEARN=1 keeps them, so set on this run it plans the 7 attacks again
run KEEP_RELEARN=1 -n > "$T/plan_keep" 2>&1
t sports_pipeline_relearn_deltas_intermediate bash -c "
  ! ls '$T/run'/relearn-*.st >/dev/null 2>&1 && [ \$(ls '$T/run'/relearn-*.log | wc -l) = 7 ] &&
  [ \$(ls '$T/run'/out/relearned-*/cloze-heldout.out | wc -l) = 7 ] && [ \$(ls '$T/run'/unlearn-*.st | wc -l) = 7 ] &&
  [ \$(grep -cE '^(pipelines/job.sh )?mu-train.*relearn\.tok' '$T/plan_keep') = 7 ]"
# RELEARN_MASK narrows the attacks and RELEARN_LORA trains adapters there (knobs: the 7 are
# planned again, masked, with LoRA, and nothing else trains)
run RELEARN_MASK=mlp:0-1 RELEARN_LORA=4 -n > "$T/plan_rmask" 2>&1
t sports_pipeline_relearn_mask bash -c "
  [ \$(grep -cE '^(pipelines/job.sh )?mu-train.* --mask mlp:0-1 --lora 4 --objective learn --train [^ ]*/relearn\.tok' '$T/plan_rmask') = 7 ] &&
  [ \$(grep -cE '^(pipelines/job.sh )?mu-train' '$T/plan_rmask') = 7 ]"
# new attribution scores: the atp mask, its unlearning and relearning, their evaluations and
# probes are redone, nothing of the hand-picked localizations
touch "$T/run/attrib/atp.scores"
run -n > "$T/plan" 2>&1
t sports_pipeline_rebuilds_only_atp bash -c "
  grep -q '^mu-maskgen' '$T/plan' && [ \$(grep -cE '^(pipelines/job.sh )?mu-train' '$T/plan') = 2 ] &&
  ! grep -qE 'unlearn-(early|lookup|late|all)\.st|learned\.st --objective learn' <(grep -E '^(pipelines/job.sh )?mu-train' '$T/plan') &&
  ! grep -q 'path-patch' '$T/plan'"
# the plots, where gnuplot is installed (make demo installs it): PNG files the report shows
if command -v gnuplot >/dev/null; then
  t sports_pipeline_plots bash -c "
    for p in probes atp lookup probe; do
      [ \"\$(head -c 8 '$T/run/'\$p.png | od -An -tx1 | tr -d ' \n')\" = 89504e470d0a1a0a ] &&
      grep -q \"(\$p.png)\" '$R' || exit 1
    done"
else
  skip sports_pipeline_plots "gnuplot not installed"
fi
# a changed knob (pipelines/knobs.mk): UNLEARN_LR redoes the seven unlearning runs and what
# depends on them (relearning, evaluations, probes), not the learned model, the attributions
# or the tokens
run UNLEARN_LR=2e-4 -n > "$T/plan2" 2>&1
t sports_pipeline_knob_rebuilds bash -c "
  [ \$(grep -c -- '--lr 2e-4 ' '$T/plan2') = 7 ] &&
  [ \$(grep -cE '^(pipelines/job.sh )?mu-train.*relearn\.tok' '$T/plan2') = 7 ] &&
  ! grep -qE '^(pipelines/job.sh )?mu-(attrib|tokenize)|--train [^ ]*/tok/learn\.tok' '$T/plan2'"
# pooling replications (pipelines/pool.mk): a second run on rows 16-32 and the comparisons
# of both runs over their records together
pool() { make -C "$ROOT" --no-print-directory -f pipelines/pool.mk MU_BIN="$MU_BIN" "$@"; }
if run RUN="$T/run2" FACTS_FROM=16 > "$T/log5" 2>&1 &&
   pool RUNS="$T/run $T/run2" POOL="$T/pool" > "$T/log6" 2>&1; then
  PP="$T/pool/paired.tsv"
  # each pooled comparison: the records of both runs (n = n1 + n2), the difference their
  # n-weighted mean, inside its interval; the same 72 comparisons as each run's
  t sports_pool_sums bash -c "$(declare -f holm_ok)
    [ \$(wc -l < '$PP') = 72 ] &&
    awk -F'\t' 'FILENAME != \"$PP\" { k = \$1 SUBSEP \$2 SUBSEP \$3 SUBSEP \$4; n[k] += \$6; dn[k] += \$5 * \$6; next }
      { k = \$1 SUBSEP \$2 SUBSEP \$3 SUBSEP \$4; e = \$5 * \$6 - dn[k]
        if (\$6 != n[k] || e > 1e-9 || e < -1e-9 || !(\$7 <= \$5 && \$5 <= \$8) || !(\$9 >= 0 && \$9 <= 1)) bad = 1; rows++ }
      END { exit bad || rows != 72 }' '$T/run/paired.tsv' '$T/run2/paired.tsv' '$PP' && holm_ok '$PP' &&
    grep -q 'over the 72 comparisons of the pooled paired.tsv' '$T/pool/report.md'"
  # McNemar's exact p from the records themselves: per athlete of both runs, right or
  # wrong (argmax of the choice log-probs, mu-dump and jq), paired by id with late's;
  # b, c the discordant pairs, p = min(1, 2 P(X <= min(b, c))), X ~ Bin(b + c, 1/2); for
  # every localization, kind and stem (36 comparisons, some with discordant pairs)
  t sports_pool_mcnemar bash -c "
    right() { for r in '$T/run' '$T/run2'; do mu-dump -H --full \"\$r/out/\$1/\$2.out\"; done |
      jq -r '[.id, (if (.choice_logprobs.data | index(max)) == .answer then 1 else 0 end)] | @tsv' | sort; }
    for ks in unlearned:{cloze,question,mc}-forget relearned:{cloze,question,mc}-heldout; do
      k=\${ks%%:*} s=\${ks#*:}
      for l in early lookup probe all atp random; do
        join <(right \$k-\$l \$s) <(right \$k-late \$s) |
          awk -v key=\"\$k \$l \$s\" '{ n++; if (\$2 && !\$3) b++; if (!\$2 && \$3) c++ }
            END { m = b + c; j = b < c ? b : c; t = 0; q = 1; for (i = 0; i <= j; i++) { t += q; q = q * (m - i) / (i + 1) }
                  p = m ? 2 * t / 2 ^ m : 1; if (p > 1) p = 1; printf \"%s %.12g %.12g %d %d\n\", key, (b - c) / n, p, n, m }'
      done
    done | sort > '$T/pool-want.txt'
    awk -F'\t' '\$1 == \"late\" { printf \"%s %s %s %.12g %.12g %d\n\", \$2, \$3, \$4, \$5, \$9, \$6 }' '$PP' | sort > '$T/pool-got.txt'
    [ \$(wc -l < '$T/pool-got.txt') = 36 ] && cut -d' ' -f1-6 '$T/pool-want.txt' | diff - '$T/pool-got.txt' &&
    awk '\$7 > 0 { n++ } END { exit n < 3 }' '$T/pool-want.txt'"
  t sports_pool_report bash -c "
    grep -q '^- \`$T/run2\`: Taught 16 facts (Sports Facts rows 16-32)' '$T/pool/report.md' &&
    [ \$(grep -cE '^\| (early|lookup|probe|late|all|atp|random) \|( [+-][01]\.[0-9]{2} \[[+-][01]\.[0-9]{2}, [+-][01]\.[0-9]{2}\] \(p [0-9.e-]+, Holm [0-9.e-]+\) \|){6}\$' '$T/pool/report.md') = 12 ] &&
    grep -q '^## Paired with random' '$T/pool/report.md'"
else
  fail sports_pool_runs "$(tail -3 "$T/log5" "$T/log6" 2>/dev/null | tr '\n' ' ')"
fi
# a run pooled with itself (the same facts) is refused by record id, with nothing left;
# a run whose comparisons differ is refused by name
pool RUNS="$T/run $T/run" POOL="$T/pool2" > "$T/log7" 2>&1
t sports_pool_same_facts_refused bash -c "
  grep -qE 'mu-score: .*record id [0-9]+ appears twice' '$T/log7' && [ ! -e '$T/pool2/paired.tsv' ] &&
  [ ! -e '$T/pool2/paired.tsv.tmp' ]"
# MMLU's comparisons ask the same questions in every run: refused before anything is made
t sports_pool_mmlu_refused bash -c "$(declare -f pool); T='$T'; ROOT='$ROOT'; MU_BIN='$MU_BIN'
  ! pool RUNS='$T/run $T/run2' POOL='$T/pool-mmlu' PAIRED=mmlu-paired.tsv > '$T/logm' 2>&1 && [ ! -e '$T/pool-mmlu' ] &&
  [ \$(grep -c . '$T/logm') = 1 ] && grep -q 'PAIRED=mmlu-paired.tsv: every run asks the same MMLU questions' '$T/logm'"
mkdir -p "$T/run3" && ln -s "$T/run2/out" "$T/run3/out" && head -n 10 "$T/run2/paired.tsv" > "$T/run3/paired.tsv"
pool RUNS="$T/run $T/run3" POOL="$T/pool3" > "$T/log8" 2>&1
t sports_pool_other_comparisons_refused bash -c "
  grep -q '^$T/run3/paired.tsv: other comparisons than $T/run/paired.tsv' '$T/log8' && [ ! -e '$T/pool3/paired.tsv' ]"
# COMMON=1 pools the comparisons both runs hold: run3's 10 (its records run2's), each row
# that of the full pool of run and run2, and the report counts the 62 left out; runs with no
# comparison in common are refused, with nothing left
pool RUNS="$T/run $T/run3" POOL="$T/pool3" COMMON=1 > "$T/log9" 2>&1
mkdir -p "$T/run4" && printf 'late\tunlearned\tnone\tcloze-forget\t0\t1\t0\t0\t1\n' > "$T/run4/paired.tsv"
pool RUNS="$T/run $T/run4" POOL="$T/pool4" COMMON=1 > "$T/log10" 2>&1
t sports_pool_common bash -c "
  [ \$(wc -l < '$T/pool3/paired.tsv') = 10 ] && head -n 10 '$T/pool/paired.tsv' | cmp - '$T/pool3/paired.tsv' &&
  grep -q \"the comparisons all of them hold in their paired.tsv (62 of the first run's left out)\" '$T/pool3/report.md' &&
  grep -q '^$T/run/paired.tsv $T/run4/paired.tsv: no comparison in common' '$T/log10' && [ ! -e '$T/pool4/comparisons.tsv' ] &&
  [ ! -e '$T/pool4/paired.tsv' ]"
# weight masking (WMASK) at two prices: a mask per localization and price trained over its
# weights; the report's table counts what each changed, as mu-dump --stats counts it in the
# sparse delta, which touches only the localization's MLP matrices; the higher price cuts
# less; the masked models are scored in every format and the curve (cut, forget accuracy)
# is plotted; each masked model meets the relearning attack (its held-out cell is that of
# relearned-wmasked-* in scores.tsv) and the probes (its cell the best layer's and the mean
# over layers in probes.tsv) and is paired, fact by fact after the attack, with the weight-trained
# unlearning in its localization (each difference that of the two models' accuracies in
# scores.tsv); then nothing is stale, and a third price redoes its seven masks and their
# attacks only
if run WMASK='1e-5 1e-3' WMASK_STEPS=3 > "$T/wlog" 2>&1; then
  t sports_pipeline_weight_mask bash -c "$(declare -f holm_ok)
    [ \$(grep -cE '^\| (early|lookup|probe|late|all|atp|random) \| 1e-[35] \| [0-9]+ \| [0-9]+ \| [01]\.[0-9]{4} \| [0-9]+ \| [0-9]+ \| [0-9]+ \|( [01]\.[0-9]{2} \|){6} [01]\.[0-9]{2} / [01]\.[0-9]{2} \|\$' '$R') = 14 ] &&
    [ \$(grep -cE '^\| wmasked-(early|lookup|probe|late|all|atp|random)-1e-[35] \| [01]\.[0-9]{2} / ' '$R') = 14 ] &&
    [ \$(grep -cE '^\| relearned-wmasked-(early|lookup|probe|late|all|atp|random)-1e-[35] \| [01]\.[0-9]{2} / ' '$R') = 14 ] &&
    [ -s '$T/run/relearn-wmask-atp-1e-3.log' ] && [ ! -e '$T/run/relearn-wmask-atp-1e-3.st' ] &&
    a=\$(awk -F'\t' '\$1 == \"choice_acc\" && \$2 == \"model=relearned-wmasked-atp-1e-3,fmt=cloze,split=heldout\" { printf \"%.2f\", \$3 }' '$T/run/scores.tsv') &&
    b=\$(awk -F'\t' '\$1 == \"wmasked-atp-1e-3\" { n++; s += \$4; if (\$4 > b) b = \$4 } END { if (n == 5) printf \"%.2f / %.2f\", b, s / n }' '$T/run/probes.tsv') &&
    [ -n \"\$a\" ] && [ -n \"\$b\" ] && grep -qE \"^\\| atp \\| 1e-3 \\| .* \\| \$a \\| \$b \\|\\\$\" '$R' &&
    [ \$(grep -cE '^\| (early|lookup|probe|late|all|atp|random) \| 1e-[35] \|( [+-][01]\.[0-9]{2} \[[+-][01]\.[0-9]{2}, [+-][01]\.[0-9]{2}\] \(p [0-9.e-]+, Holm [0-9.e-]+\) \|){3}\$' '$R') = 14 ] &&
    [ \$(wc -l < '$T/run/wmask-paired.tsv') = 42 ] && holm_ok '$T/run/wmask-paired.tsv' &&
    grep -q 'over the 42 comparisons of wmask-paired.tsv' '$R' &&
    awk -F'\t' 'NR == FNR { split(\$2, g, /[,=]/); if (\$1 == \"choice_acc\") acc[g[2], g[4], g[6]] = \$3; next }
      { split(\$4, fs, \"-\"); want = acc[\"relearned-\" \$3, fs[1], fs[2]] - acc[\"relearned-\" \$1, fs[1], fs[2]]; d = \$5 - want
        if (d > 1e-9 || d < -1e-9 || \$2 != \"relearned\" || \$3 !~ \"^wmasked-\" \$1 \"-1e-[35]\$\" || fs[2] != \"heldout\" || \$6 != 4 ||
            !(\$9 >= 0 && \$9 <= 1 && -1 <= \$7 && \$7 <= \$5 && \$5 <= \$8 && \$8 <= 1)) bad = 1; n++ }
      END { exit bad || n != 42 }' '$T/run/scores.tsv' '$T/run/wmask-paired.tsv' &&
    mu-dump --model '$M' --delta '$T/run/learned.st' --delta '$T/run/wmask-early-1e-5.st' --stats | sed -n '2,\$p' |
      jq -r 'select(.delta_elems[1] > 0) | [.layer, .role, .delta_elems[1]] | @tsv' > '$T/wm-early.tsv' &&
    awk -F'\t' '\$1 < 1 || \$1 > 2 || \$2 !~ /^(gate|up|down)\$/ { bad = 1 } { n += \$3 } END { print n; exit bad }' '$T/wm-early.tsv' > '$T/wm-early.n' &&
    awk -F'\t' -v n=\$(cat '$T/wm-early.n') '\$1 == \"early\" && \$2 == \"1e-5\" { ok = \$4 == n && n > 0 && \$4 <= \$3 &&
      \$3 == 2 * 3 * 172 * 64 && \$6 <= \$5 && \$5 <= \$4 && \$7 > 0 && \$7 < \$4 } END { exit !ok }' '$T/run/wmask.tsv' &&
    grep -qE '^\| early \| 1e-5 \| 66048 \| [0-9]+ \| [01]\.[0-9]{4} \| '\$(cat '$T/wm-early.n')' \| ' '$R' &&
    awk -F'\t' '{ c[\$2] += \$7; n++ } END { exit !(n == 14 && c[\"1e-3\"] < c[\"1e-5\"]) }' '$T/run/wmask.tsv' &&
    [ \$(wc -l < '$T/run/wmask-curve.tsv') = 14 ]"
  if command -v gnuplot >/dev/null; then
    t sports_pipeline_weight_mask_plot bash -c "
      [ \"\$(head -c 8 '$T/run/wmask.png' | od -An -tx1 | tr -d ' \n')\" = 89504e470d0a1a0a ] && grep -q '(wmask.png)' '$R'"
  fi
  t sports_pipeline_weight_mask_knobs bash -c "$(declare -f run); T='$T'; ROOT='$ROOT'; MU_BIN='$MU_BIN'; SHARED_DATA='$SHARED_DATA'; M='$M'
    [ \$(run WMASK='1e-5 1e-3' WMASK_STEPS=3 -n | grep -cE '^(pipelines/job.sh )?mu-') = 0 ] &&
    run WMASK='1e-5 2e-5' WMASK_STEPS=3 -n > '$T/wplan' &&
    [ \$(grep -cE '^(pipelines/job.sh )?mu-train .*--weight-mask 2e-5 --steps 3 --optimizer sgd --lr 3 ' '$T/wplan') = 7 ] &&
    [ \$(grep -cE '^(pipelines/job.sh )?mu-train .*--delta [^ ]*/wmask-[a-z]+-2e-5\.st --objective learn --train [^ ]*/relearn\.tok ' '$T/wplan') = 7 ] &&
    [ \$(grep -cE '^(pipelines/job.sh )?mu-train' '$T/wplan') = 14 ]"
  # the masks against weight training pooled over two runs (pool.mk PAIRED=wmask-paired.tsv):
  # the 42 comparisons, each over both runs' held-out facts (4 + 4), the difference their
  # n-weighted mean; a table per localization, a row per masked model
  if run RUN="$T/run2" FACTS_FROM=16 WMASK='1e-5 1e-3' WMASK_STEPS=3 > "$T/wlog2" 2>&1 &&
     pool RUNS="$T/run $T/run2" POOL="$T/poolw" PAIRED=wmask-paired.tsv > "$T/wlog3" 2>&1; then
    t sports_pool_weight_mask bash -c "
      awk -F'\t' 'FILENAME != \"$T/poolw/paired.tsv\" { k = \$1 SUBSEP \$2 SUBSEP \$3 SUBSEP \$4; n[k] += \$6; dn[k] += \$5 * \$6; next }
        { k = \$1 SUBSEP \$2 SUBSEP \$3 SUBSEP \$4; e = \$5 * \$6 - dn[k]
          if (\$6 != 8 || \$6 != n[k] || e > 1e-9 || e < -1e-9 || !(\$7 <= \$5 && \$5 <= \$8) || \$3 !~ /^wmasked-/) bad = 1; rows++ }
        END { exit bad || rows != 42 }' '$T/run/wmask-paired.tsv' '$T/run2/wmask-paired.tsv' '$T/poolw/paired.tsv' &&
      grep -q \"the comparisons of each one's wmask-paired.tsv\" '$T/poolw/report.md' &&
      [ \$(grep -c '^## Paired with ' '$T/poolw/report.md') = 7 ] &&
      [ \$(grep -cE '^\| wmasked-(early|lookup|probe|late|all|atp|random)-1e-[35] \|( [+-][01]\.[0-9]{2} \[[+-][01]\.[0-9]{2}, [+-][01]\.[0-9]{2}\] \(p [0-9.e-]+, Holm [0-9.e-]+\) \|){3}\$' '$T/poolw/report.md') = 14 ]"
  else
    fail sports_pool_weight_mask "$(tail -3 "$T/wlog2" "$T/wlog3" 2>/dev/null | tr '\n' ' ')"
  fi
else
  fail sports_pipeline_weight_mask "$(tail -3 "$T/wlog" | tr '\n' ' ')"
fi
# general text (GENERAL): its next-token loss joins the unlearning objective; the tokenized
# text is a new prerequisite, so the unlearning run is redone, with a general-lm term each step
printf 'The quick brown fox jumps over the lazy dog. %.0s' $(seq 40) > "$T/general.txt"
if run GENERAL="$T/general.txt" "$T/run/unlearn-early.st" > "$T/glog" 2>&1; then
  t sports_pipeline_general_loss bash -c "
    mu-dump -H --kind log '$T/run/unlearn-early.log' |
      jq -e -s '[.[] | select(.step)] | length == 5 and all(.[]; .terms[\"general-lm\"] > 0)' >/dev/null"
else
  fail sports_pipeline_general_loss "$(tail -3 "$T/glog" | tr '\n' ' ')"
fi
# SOFT=2: the soft prompt attack on the base model and every unlearned one (2 vectors, 3
# steps; nothing else trains), its report section (a row per model, its before cell the
# held-out accuracy of scores.tsv, its after cell inside its interval), its paired tables
# (a row per other localization, with the vectors and as a hard prompt), where the vectors
# lie (soft-near.tsv: a line per model and per vector, cosines in [-1, 1]; the report's mean
# cosine per model is theirs) and the attack as a hard prompt (a --soft-project forward per
# model and format, the table's cells those of soft-projected.tsv); without SOFT again the
# report drops the section
run > /dev/null 2>&1     # what the tests above left stale (the touched attribution's stages)
run SOFT=2 SOFT_STEPS=3 > "$T/soft.log" 2>&1 || fail sports_pipeline_soft "$(tail -3 "$T/soft.log" | tr '\n' ' ')"
t sports_pipeline_soft bash -c "
  [ \$(grep -cE '^(pipelines/job.sh )?mu-train' '$T/soft.log') = 8 ] &&
  [ \$(grep -cE '^(pipelines/job.sh )?mu-train.* --soft-tokens 2 --objective learn --train [^ ]*/soft-relearn\.tok --steps 3 ' '$T/soft.log') = 8 ] &&
  grep -q '^## Soft prompt attack' '$R' &&
  awk -F' *\\| *' 'NR == FNR { if (\$0 ~ /^choice_acc\tmodel=[^,]*,fmt=[a-z]*,split=heldout/) {
                                   split(\$0, c, /\t/); split(c[2], g, /[,=]/); acc[g[2], g[4]] = sprintf(\"%.2f\", c[3]) }; next }
      /^## Soft prompt attack/ { on = 1 } /^Where the vectors lie/ { on = 0 } !on { next }
      /^\| (base|unlearned-(early|lookup|probe|late|all|atp|random)) \|/ { n++
        for (i = 3; i <= 7; i += 2) { f = (i == 3 ? \"cloze\" : i == 5 ? \"question\" : \"mc\")
          if (\$i != acc[\$2, f]) bad = 1
          split(\$(i + 1), a, /[][, ]+/); if (!(a[2] <= a[1] + 0.005 && a[1] <= a[3] + 0.005 && a[2] >= 0 && a[3] <= 1)) bad = 1 } }
      END { exit bad || n != 8 }' '$T/run/scores.tsv' '$R' &&
  [ \$(sed -n '/^## Soft prompt attack/,\$p' '$R' |
       grep -cE '^\| (early|lookup|probe|late|all|atp|random) \|( [+-][01]\.[0-9]{2} \[[+-][01]\.[0-9]{2}, [+-][01]\.[0-9]{2}\] \(p [0-9.e-]+, Holm [0-9.e-]+\) \|){3}\$') = 24 ] &&
  [ \$(grep -c \$'\tembedding\t' '$T/run/soft-near.tsv') = 8 ] && [ \$(grep -c \$'\tvector\t' '$T/run/soft-near.tsv') = 16 ] &&
  awk -F'\t' '\$2 == \"vector\" { m = \$1; n[m]++; s[m] += \$5; if (\$5 < -1 || \$5 > 1.00001 || \$4 <= 0) bad = 1 }
      END { for (m in n) printf \"%s %.2f\n\", m, s[m] / n[m]; exit bad }' '$T/run/soft-near.tsv' > '$T/near.want' &&
  sed -n '/^| model | vector norm/,/^\$/p' '$R' | grep -E '^\| (base|unlearned-)' |
    awk -F' *\\| *' '{ m = \$2; sub(/^unlearned-/, \"\", m); split(\$4, c, \" \"); print m, c[1]
                        if (\$5 !~ /^\"[^\"]*\" \"[^\"]*\"\$/) exit 1 }' | sort > '$T/near.got' &&
  sort '$T/near.want' | cmp -s - '$T/near.got' &&
  [ \$(grep -cE '^(pipelines/job.sh )?mu-forward.* --soft-prompt [^ ]*/soft-[a-z]+\.st --soft-project --emit choices ' '$T/soft.log') = 24 ] &&
  awk -F' *\\| *' 'NR == FNR { if (\$0 ~ /^choice_acc\t/) { split(\$0, c, /\t/); split(c[2], g, /[,=]/)
                                 want[g[2], g[4]] = sprintf(\"%.2f [%.2f, %.2f]\", c[3], c[5], c[6]) }; next }
      /^The attack as a hard prompt/ { on = 1 } /^Paired with/ { on = 0 } !on { next }
      /^\| (base|unlearned-[a-z]+) \|/ { n++; m = \$2; sub(/^unlearned-/, \"\", m)
        if (\$3 != want[m, \"cloze\"] || \$4 != want[m, \"question\"] || \$5 != want[m, \"mc\"]) bad = 1 }
      END { exit bad || n != 8 }' '$T/run/soft-projected.tsv' '$R'"
# GCG=2 on three models (base, late, random; 2 steps of 4 candidates from each slot's top 8):
# one search per model and a forward per model and format with its tokens, nothing else
# trains; the report's GCG section has a row per model (before: scores.tsv's held-out
# accuracy; after: inside its interval), what each search found (the losses of
# gcg-found.tsv, themselves the log's first and least evaluated NLL, the tokens kept by
# --keep-best; the text the file's gcg_text) and late and random paired with each other
run GCG=2 GCG_STEPS=2 GCG_TOPK=8 GCG_CANDIDATES=4 GCG_MODELS='base late random' > "$T/gcg.log" 2>&1 ||
  fail sports_pipeline_gcg "$(tail -3 "$T/gcg.log" | tr '\n' ' ')"
t sports_pipeline_gcg bash -c "$(declare -f holm_ok)
  [ \$(grep -cE '^(pipelines/job.sh )?mu-train' '$T/gcg.log') = 3 ] &&
  [ \$(grep -cE '^(pipelines/job.sh )?mu-train.* --soft-tokens 2 --gcg --gcg-topk 8 --gcg-candidates 4 --objective learn --train [^ ]*/gcg-relearn\.tok --steps 2 ' '$T/gcg.log') = 3 ] &&
  [ \$(grep -cE '^(pipelines/job.sh )?mu-forward.* --soft-prompt [^ ]*/gcg-(base|late|random)\.st --emit choices ' '$T/gcg.log') = 9 ] &&
  grep -q '^## GCG attack' '$R' &&
  awk -F' *\\| *' 'NR == FNR { if (\$0 ~ /^choice_acc\tmodel=[^,]*,fmt=[a-z]*,split=heldout/) {
                                   split(\$0, c, /\t/); split(c[2], g, /[,=]/); acc[g[2], g[4]] = sprintf(\"%.2f\", c[3]) }; next }
      /^## GCG attack/ { on = 1 } /^What each search found/ { on = 0 } !on { next }
      /^\| (base|unlearned-[a-z]+) \|/ { n++
        for (i = 3; i <= 7; i += 2) { f = (i == 3 ? \"cloze\" : i == 5 ? \"question\" : \"mc\")
          if (\$i != acc[\$2, f]) bad = 1
          split(\$(i + 1), a, /[][, ]+/); if (!(a[2] <= a[1] + 0.005 && a[1] <= a[3] + 0.005 && a[2] >= 0 && a[3] <= 1)) bad = 1 } }
      END { exit bad || n != 3 }' '$T/run/scores.tsv' '$R' &&
  for m in base late random; do
    mu-dump '$T/run/gcg-'\$m'.log' | jq -r -s --arg m \$m '[.[] | select(.eval) | .eval[\"gcg-relearn\"].nll] |
      [\$m, .[0], min] | @tsv'
  done > '$T/gcg.want' && cut -f1-3 '$T/run/gcg-found.tsv' | cmp -s - '$T/gcg.want' &&
  [ \$(grep -cE '^(pipelines/job.sh )?mu-train.* --eval [^ ]*/gcg-relearn\.tok --eval-every 1 --keep-best gcg-relearn\.nll:min ' '$T/gcg.log') = 3 ] &&
  for m in base late random; do
    name=\$m; [ \$m = base ] || name=unlearned-\$m
    TEXT=\$(mu-dump --soft-prompt '$T/run/gcg-'\$m'.st' | head -1 | jq -r '[.metadata.mu_train.gcg_text] | @tsv' |
           sed 's/|/\\\\|/g; s/\`/\\\\\`/g') awk -F'\t' -v m=\$m -v name=\$name \
      '\$1 == m { printf \"| %s | %.3f → %.3f | \`%s\` | \", name, \$2, \$3, ENVIRON[\"TEXT\"] }' '$T/gcg.want'
    awk -F'\t' -v m=\$m '\$1 == m { print \$6 \" of \" \$7 \" |\" }' '$T/run/gcg-found.tsv'
  done > '$T/found.want' &&
  sed -n '/^What each search found/,/^The attack as typed/p' '$R' | grep -E '^\| (base|unlearned-)' | cmp -s - '$T/found.want' &&
  [ \$(wc -l < '$T/run/gcg-paired.tsv') = 12 ] && holm_ok '$T/run/gcg-paired.tsv' &&
  grep -q 'over the 12 comparisons of gcg-paired.tsv' '$R' &&
  [ \"\$(cut -f1-3 '$T/run/gcg-paired.tsv' | sort -u | tr '\t\n' ': ')\" = 'late:gcgattacked:random late:gcgtyped:random random:gcgattacked:late random:gcgtyped:late ' ] &&
  [ \$(sed -n '/^## GCG attack/,\$p' '$R' |
       grep -cE '^\| (late|random) \|( [+-][01]\.[0-9]{2} \[[+-][01]\.[0-9]{2}, [+-][01]\.[0-9]{2}\] \(p [0-9.e-]+, Holm [0-9.e-]+\) \|){3}\$') = 4 ] &&
  [ \$(grep -cE '^(pipelines/job.sh )?mu-forward.* --emit choices --out [^ ]*/gcgtyped-(base|late|random)/(cloze|question|mc)-heldout\.out [^ ]*/(cloze|question|mc)-heldout-typed-(base|late|random)\.tok' '$T/gcg.log') = 9 ] &&
  awk -F' *\\| *' 'NR == FNR { if (\$0 ~ /^choice_acc\t/) { split(\$0, c, /\t/); split(c[2], g, /[,=]/)
                                 want[g[2], g[4]] = sprintf(\"%.2f [%.2f, %.2f]\", c[3], c[5], c[6]) }; next }
      /^The attack as typed text/ { on = 1 } /^Paired with/ { on = 0 } !on { next }
      /^\| (base|unlearned-[a-z]+) \|/ { n++; m = \$2; sub(/^unlearned-/, \"\", m)
        if (\$3 != want[m, \"cloze\"] || \$4 != want[m, \"question\"] || \$5 != want[m, \"mc\"]) bad = 1 }
      END { exit bad || n != 3 }' '$T/run/gcg-typed.tsv' '$R' &&
  for m in base late random; do
    mu-tokenize --model '$M' --decode '$T/run/tok/cloze-heldout-typed-'\$m'.tok' | head -1 > '$T/typed.txt'
    text=\$(mu-dump --soft-prompt '$T/run/gcg-'\$m'.st' | head -1 | jq -r .metadata.mu_train.gcg_text)
    case \"\$(cat '$T/typed.txt')\" in \"\$text\"Fact:*) ;; *) exit 1 ;; esac
  done"
# SCALES: each unlearning delta read at other strengths (mu-forward --scaled-delta S=...): at
# S = 1 the records are the unlearned model's byte for byte; the report's table has a row per
# localization, S = 0 the learned model's cloze forget / maintained accuracy (scores.tsv), S = 1
# the unlearned one's, 0.5 strength.tsv's; strength-paired.tsv holds each localization against
# late and random at S = 1 and 0.5 on the forget and maintained facts (2 x 6 x 2 x 2 = 48 rows),
# at S = 1 paired.tsv's, and the report prints them (strength_paired_ok)
if run SCALES='1 0.5' > "$T/scales.log" 2>&1; then
  t sports_pipeline_scales bash -c "$(declare -f holm_ok strength_paired_ok)
    [ \$(grep -cE '^(pipelines/job.sh )?mu-forward.* --scaled-delta (1|0\.5)=[^ ]*/unlearn-[a-z]+\.st --emit choices' '$T/scales.log') = 28 ] &&
    for l in early lookup probe late all atp random; do for p in forget maintain; do
      mu-dump -H '$T/run/out/scaled-1-'\$l'/cloze-'\$p'.out' > '$T/s1.txt' && mu-dump -H '$T/run/out/unlearned-'\$l'/cloze-'\$p'.out' |
        cmp -s - '$T/s1.txt' || { echo \"scaled-1-\$l \$p differs\"; exit 1; }; done; done &&
    grep -q '^| localization | S = 0 | S = 0.5 | S = 1 |\$' '$R' &&
    awk -F'\t' 'FILENAME ~ /scores/ && \$1 == \"choice_acc\" { split(\$2, g, /[,=]/); a[g[2], g[4] \"-\" g[6]] = \$3; next }
        FILENAME ~ /strength/ && \$1 == \"choice_acc\" { split(\$2, g, /[,=]/); a[\"s\" g[4] \"-\" g[2], g[6]] = \$3; next }
        function c(m) { return sprintf(\"%.2f / %.2f\", a[m, \"cloze-forget\"], a[m, \"cloze-maintain\"]) }
        /^\| (early|lookup|probe|late|all|atp|random) \|/ { split(\$0, f, / *\| */); n++
          if (f[3] != c(\"learned\") || f[4] != c(\"s0.5-\" f[2]) || f[5] != c(\"unlearned-\" f[2]) || !((\"s0.5-\" f[2], \"cloze-forget\") in a)) bad = 1 }
        END { exit bad || n != 7 }' '$T/run/scores.tsv' '$T/run/strength.tsv' FS='|' <(sed -n '/^## Strength of the unlearning/,/^Prompts per cell/p' '$R') &&
    [ \$(wc -l < '$T/run/strength-paired.tsv') = 48 ] && strength_paired_ok '$T/run' '$R' unlearned"
else
  fail sports_pipeline_scales "$(tail -3 "$T/scales.log" | tr '\n' ' ')"
fi
run > /dev/null 2>&1
t sports_pipeline_soft_off bash -c "! grep -q 'Soft prompt attack' '$R' && ! grep -q 'GCG attack' '$R' && ! grep -q 'Strength of the unlearning' '$R'"
# EDIT_TO: Guo et al.'s Sports Facts editing, on its own run: the early and late MLPs edited
# to each athlete's pre-drawn sport of sports.csv's inject_sport_with_golf (golf among them),
# with SCALES=0.5
E="$T/edit"
if run RUN="$E" LOCS='early late' PAIRED_WITH=late EDIT_TO=@inject_sport_with_golf UNLEARN_LR=1e-3 SCALES=0.5 \
     > "$T/edit.log" 2>&1; then
  # every stream offers the four sports (the mc prompt lists golf as D); the edit splits read
  # the facts with their new sport's index; the edits train on the cloze edit prompts
  t sports_pipeline_edit_streams bash -c "
    [ \$(grep '^mu-tokenize' '$T/edit.log' | grep -vc -e '--mc ') = 19 ] &&
    [ \$(grep '^mu-tokenize' '$T/edit.log' | grep -v -e '--mc ' | grep -vcE -e \"--choices ' (baseball\| basketball\| football\| golf|A\| B\| C\| D)' \") = 0 ] &&
    [ \$(grep '^mu-tokenize' '$T/edit.log' | grep -cF 'football\nD. golf\nAnswer:') = 5 ] &&
    [ \$(grep -cE '^mu-tokenize .*--answer-field edit_index --out [^ ]*/tok/(cloze|question|mc)-(forget|heldout)-edit\.tok [^ ]*/edit-facts\.jsonl\$' '$T/edit.log') = 6 ] &&
    [ \$(grep -cE '^(pipelines/job.sh )?mu-train .*--objective edit=1,retain-ce=1 --forget [^ ]*/tok/cloze-forget-edit\.tok ' '$T/edit.log') = 2 ]"
  # the edit prompts' answers against sports.csv read by Python's csv module: rows 0-8 (held
  # out 4-8), ids kept, each answer the index of the row's inject_sport_with_golf among
  # baseball, basketball, football, golf, never the athlete's sport; not all golf
  t sports_pipeline_edit_answers bash -c "
    for s in heldout:4:8 forget:0:8; do IFS=: read -r split a b <<< \"\$s\"
      mu-dump -H '$E/tok/mc-'\$split'-edit.tok' | jq -r '[.id, .answer, .meta.sport] | @tsv' > '$T/edit-got.tsv' &&
      python3 -c 'import csv, sys
rows = list(csv.DictReader(open(sys.argv[1], newline=\"\")))
c = [\"baseball\", \"basketball\", \"football\", \"golf\"]
for i in range(int(sys.argv[2]), int(sys.argv[3])):
    r = rows[i]
    assert r[\"inject_sport_with_golf\"] != r[\"sport\"]
    print(i, c.index(r[\"inject_sport_with_golf\"]), r[\"sport\"], sep=\"\t\")' '$SHARED_DATA/sports/sports.csv' \$a \$b |
        cmp -s - '$T/edit-got.tsv' || exit 1
    done && [ \$(cut -f2 '$T/edit-got.tsv' | sort -u | wc -l) -ge 2 ]"
  # each model's edit accuracy in scores.tsv is its records' share whose highest choice
  # log-prob is the new sport's (jq on the outputs); the edits took: every edited model puts
  # more probability on the new sport in cloze than the learned model, by 0.2 at least
  t sports_pipeline_edit_scores bash -c "
    for m in base learned unlearned-early unlearned-late relearned-early relearned-late; do
      for f in cloze question mc; do for s in forget-edit heldout-edit; do
        want=\$(mu-dump -H '$E/out/'\$m/\$f-\$s.out | jq -s '[.[] | .choice_logprobs.first as \$l |
          ([range(\$l | length)] | max_by(\$l[.])) == .answer] | (map(select(.)) | length) / length')
        got=\$(awk -F'\t' -v g=\"model=\$m,fmt=\$f,split=\$s\" '\$1 == \"choice_acc\" && \$2 == g { print \$3 }' '$E/scores.tsv')
        awk -v a=\"\$want\" -v b=\"\$got\" 'BEGIN { d = a - b; exit !(b != \"\" && d < 1e-9 && d > -1e-9) }' || { echo \"\$m \$f \$s: \$got, want \$want\"; exit 1; }
      done; done
    done &&
    awk -F'\t' '\$1 == \"choice_prob\" && \$2 ~ /fmt=cloze,split=forget-edit\$/ { split(\$2, g, /[,=]/); p[g[2]] = \$3 }
      END { exit !(p[\"unlearned-early\"] > p[\"learned\"] + 0.2 && p[\"unlearned-late\"] > p[\"learned\"] + 0.2) }' '$E/scores.tsv'"
  # the report: 4-way cells, the edit's table (a row per model, each cell scores.tsv's
  # accuracy / probability), its paired table (early against late on the 12 stems of
  # paired.tsv: Holm's over them), the edit's strength (the new sport's rate at S = 0.5)
  t sports_pipeline_edit_report bash -c "$(declare -f holm_ok)
    ER='$E/report.md'
    grep -q '^Taught 16 facts (Sports Facts rows 0-16), edited the first 8 to each athlete.s sport in column inject_sport_with_golf of sports.csv (edit=1,retain-ce=1);' \"\$ER\" &&
    grep -q '^The unlearned-\* models are the edited ones. Cells: 4-way choice accuracy' \"\$ER\" &&
    awk -F'\t' 'FILENAME ~ /scores/ { split(\$2, g, /[,=]/); v[\$1, g[2], g[4] \"-\" g[6]] = \$3; next }
      function c(m, s) { return sprintf(\"%.2f / %.2f\", v[\"choice_acc\", m, s], v[\"choice_prob\", m, s]) }
      /^\| [a-z-]+ \|/ && !/^\| model / { split(\$0, f, / *\| */); n++
        if (f[3] != c(f[2], \"cloze-forget-edit\") || f[5] != c(f[2], \"mc-forget-edit\") || f[8] != c(f[2], \"mc-heldout-edit\")) bad = 1 }
      END { exit bad || n != 6 }' '$E/scores.tsv' FS='|' <(sed -n '/^## The edit: /,/^The edit paired with/p' \"\$ER\") &&
    holm_ok '$E/paired.tsv' && [ \$(wc -l < '$E/paired.tsv') = 12 ] &&
    [ \$(awk -F'\t' '\$4 ~ /-edit\$/' '$E/paired.tsv' | wc -l) = 6 ] &&
    sed -n '/^The edit paired with late/,\$p' \"\$ER\" | grep -qE '^\| early \|( [+-][01]\.[0-9]{2} \[[+-][01]\.[0-9]{2}, [+-][01]\.[0-9]{2}\] \(p [0-9.e-]+, Holm [0-9.e-]+\) \|){6}\$' &&
    grep -q '^## Strength of the edit' \"\$ER\" &&
    [ \$(grep -c '^choice_acc.loc=[a-z]*,scale=0.5,split=cloze-forget-edit' '$E/strength.tsv') = 2 ]"
else
  fail sports_pipeline_edit "$(tail -3 "$T/edit.log" | tr '\n' ' ')"
fi
# EDIT_TO=@inject_sport_without_golf: each athlete to another of the three sports; the choices
# stay three (the mc prompt as unlearning's), and the probes of each model are also read
# against the new sport (probes-new.tsv: model, layer, accuracy): a row per model and layer;
# the new sport is never the old, so at each layer the two accuracies sum to at most 1; the
# report's column is each model's best / mean over layers of those rows
E2="$T/edit2"
if run RUN="$E2" LOCS='early late' PAIRED_WITH=late EDIT_TO=@inject_sport_without_golf UNLEARN_LR=1e-3 \
     > "$T/edit2.log" 2>&1; then
  t sports_pipeline_edit_probes_new bash -c "
    [ \$(grep '^mu-tokenize' '$T/edit2.log' | grep -v -e '--mc ' | grep -vcE -e \"--choices ' (baseball\| basketball\| football|A\| B\| C)' \") = 0 ] &&
    [ \$(grep '^mu-tokenize' '$T/edit2.log' | grep -cF 'C. football\nAnswer:') = 5 ] &&
    [ \$(grep -c -e '--label inject_sport_without_golf' '$T/edit2.log') = 1 ] &&
    [ \$(wc -l < '$E2/probes-new.tsv') = 20 ] &&
    awk -F'\t' 'FILENAME ~ /new/ { n[\$1, \$2] = \$3; k++; next } (\$1, \$2) in n { j++; if (\$4 + n[\$1, \$2] > 1 + 1e-9) bad = 1 }
      END { exit bad || j != 20 || k != 20 }' '$E2/probes-new.tsv' '$E2/probes.tsv' &&
    awk -F'\t' 'FILENAME ~ /tsv\$/ { if (!(\$1 in b) || \$3 > b[\$1]) b[\$1] = \$3; s[\$1] += \$3; c[\$1]++; next }
      /^\| (base|learned|unlearned-(early|late)) \|/ { split(\$0, f, / *\| */); m++
        if (f[7] != sprintf(\"%.2f / %.2f\", b[f[2]], s[f[2]] / c[f[2]])) bad = 1 }
      END { exit bad || m != 4 }' '$E2/probes-new.tsv' <(sed -n '/^## Latent knowledge/,/^## Side effects/p' '$E2/report.md') &&
    grep -q '| majority class | new sport, best / mean |\$' '$E2/report.md'"
else
  fail sports_pipeline_edit_probes_new "$(tail -3 "$T/edit2.log" | tr '\n' ' ')"
fi
# an edit to a sport the athletes play, to a column sports.csv lacks or to a malformed name:
# one line naming the file, make stops before it writes anything
t sports_pipeline_edit_refused bash -c "$(declare -f run); T='$T'; ROOT='$ROOT'; MU_BIN='$MU_BIN'; SHARED_DATA='$SHARED_DATA'; M='$M'
  for e in football:'EDIT_TO=football: the edit needs a sport none of the athletes plays' \
           @nope:\"EDIT_TO=@nope: no column 'nope'\" 'go lf':'edit target \"go lf\" is not a sport.s name'; do
    v=\${e%%:*}; msg=\${e#*:}
    ! run RUN='$T/edit-bad' EDIT_TO=\"\$v\" > '$T/bad.log' 2>&1 && [ ! -e '$T/edit-bad' ] &&
      grep -q \"^sports-edit.py: $SHARED_DATA/sports/sports.csv: .*\$msg\" '$T/bad.log' || { cat '$T/bad.log'; exit 1; }
  done"
# MMLU_SUBJECTS and MMLU_SHOTS on the main run: only the MMLU stages are redone (the picked
# questions, their tokens, the forward of each model before the attack; no training); the
# records are the first 8 of each subject, each after 2 worked examples; each model's pooled
# accuracy in scores.tsv is mmlu.tsv's and the mean of its two subjects' there, whose cells the
# report's table by subject prints; a subject MMLU lacks, or a count that is not a number,
# stops make before it writes anything
if run MMLU_SUBJECTS='anatomy high_school_geography' MMLU_SHOTS=2 > "$T/mmlu2.log" 2>&1; then
  t sports_pipeline_mmlu_subjects bash -c "
    ! grep -qE '^(pipelines/job.sh )?mu-(train|attrib|probe) ' '$T/mmlu2.log' &&
    [ \$(grep -c '^mu-tokenize ' '$T/mmlu2.log') = 1 ] &&
    [ \$(grep -cE '^(pipelines/job.sh )?mu-forward .*/tok/mmlu\.tok\$' '$T/mmlu2.log') = 9 ] &&
    [ \"\$(jq -r .subject '$T/run/mmlu.jsonl' | uniq -c | awk '{ printf \"%s %s \", \$1, \$2 }')\" = '8 anatomy 8 high_school_geography ' ] &&
    [ \$(jq -r .context '$T/run/mmlu.jsonl' | grep -c '^Answer: [ABCD]\$') = 32 ] &&
    awk -F'\t' 'FNR == 1 { f++; next } { split(\$2, g, /[,=]/) }
      f == 1 { if (\$1 == \"choice_acc\" && g[4] == \"mmlu\") { pool[g[2]] = \$3; np++ }; next }
      f == 2 && \$1 != \"choice_acc\" { next }
      f == 2 && g[3] != \"subject\" { if (\$3 != pool[g[2]] || \$4 != 16) bad = 1; nt++; next }
      f == 2 { s[g[2]] += \$3 / 2; acc[g[2], g[4]] = sprintf(\"%.2f\", \$3); if (\$4 != 8) bad = 1; n++; next }
      /^\| subject \| questions \|/ { nh = split(\$0, H, / *\| */); next }
      nh && /^\| (anatomy|high_school_geography) \| 8 \|/ { split(\$0, c, / *\| */); r++
        for (i = 4; i < nh; i++) { k++; if (c[i] != acc[H[i], c[2]]) bad = 1 } }
      END { for (m in pool) { d = pool[m] - s[m]; if (d > 1e-9 || d < -1e-9) bad = 1 }
            exit bad || n != 18 || np != 9 || nt != 9 || r != 2 || k != 18 }' '$T/run/scores.tsv' '$T/run/mmlu.tsv' '$R' &&
    grep -q \"^MMLU's 2 subjects, the first 8 test questions of each, each after 2 worked examples from the subject's dev set: \" '$R'"
else
  fail sports_pipeline_mmlu_subjects "$(tail -3 "$T/mmlu2.log" | tr '\n' ' ')"
fi
t sports_pipeline_mmlu_refused bash -c "$(declare -f run); T='$T'; ROOT='$ROOT'; MU_BIN='$MU_BIN'; SHARED_DATA='$SHARED_DATA'; M='$M'
  ! run RUN='$T/mmlu-bad' MMLU_SUBJECTS='anatomy nope' > '$T/mbad.log' 2>&1 && [ ! -e '$T/mmlu-bad' ] &&
  [ \$(grep -c . '$T/mbad.log') = 1 ] &&
  grep -q \"$SHARED_DATA/mmlu/test/nope_test.csv: no such file (MMLU_SUBJECTS=anatomy nope: \" '$T/mbad.log' &&
  ! run RUN='$T/mmlu-bad' MMLU_N=ten > '$T/mbad.log' 2>&1 && [ ! -e '$T/mmlu-bad' ] && [ \$(grep -c . '$T/mbad.log') = 1 ] &&
  grep -q 'MMLU_N=ten MMLU_SHOTS=0: MMLU_N wants a whole number of questions >= 1' '$T/mbad.log'"
