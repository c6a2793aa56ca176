#!/usr/bin/env bash
# t_probe.sh — mu-probe end to end on stories260K: labeled JSONL -> mu-tokenize ->
# mu-forward --cache -> mu-probe fit / apply: split sizes, perfect probes on a label the
# last token decides, apply on the training acts gives back fit's hit counts, positions,
# f16, --test, determinism; localize on a label planted in one MLP; then the error cases (exit codes, one-line messages naming
# file and record, no partial output).
. "$(dirname "$0")/lib.sh"
M="$SHARED_DATA/models/stories260K"
if [ ! -d "$M" ]; then skip probe_all "no $M"; exit 0; fi
H="$(cd "$(dirname "$0")/../golden/probe/hostile" && pwd)"
cd "$T"

# 36 records: who saw a {animal}; the label "kind" repeats the animal (the last token
# decides it, so the probes separate it), "size" is unrelated to the text, "n" an integer,
# "other" the next animal for every fourth record (9 of them) and the animal otherwise
names=(Tom Lily Ben Sue Max Anna Tim Mia Sam Zoe Leo Amy)
animals=(cat dog bird)
: >facts.jsonl
i=0
for who in "${names[@]}"; do
  for j in 0 1 2; do
    a=${animals[$j]}
    size=$([ $((i * 7 % 5)) -lt 2 ] && echo big || echo small)
    other=${animals[$(( (j + (i % 4 == 0)) % 3 ))]}
    printf '{"who": "%s", "animal": "%s", "kind": "%s", "size": "%s", "n": %d, "same": "x", "other": "%s"}\n' \
      "$who" "$a" "$a" "$size" $((i % 3)) "$other" >>facts.jsonl
    i=$((i + 1))
  done
done
tok() { mu-tokenize -q --model "$M" --prompt '{who} saw a {animal}' --out "$2" "$1"; }
fwd() { mu-forward -q --model "$M" --cache "$2" --cache-out "$3" ${4:+--cache-dtype $4} "$1" >/dev/null; }
if ! tok facts.jsonl facts.tok || ! fwd facts.tok resid_post:all:last acts.mpk.zst; then
  fail probe_setup "mu-tokenize or mu-forward failed"; exit 0
fi

# every N COND: stdin holds a stream's mu-dump (header line first): exactly N records,
# each satisfying the jq condition COND
every() { tail -n +2 | jq -se --argjson n "$1" "length == \$n and all(.[]; $2)" >/dev/null; }
export -f every

t probe_help bash -c 'mu-probe --help | grep -q "probe_majority_acc"'
t probe_version bash -c 'mu-probe --version | grep -q "^mu-probe (mu) "'
t probe_fit mu-probe fit -q --acts acts.mpk.zst --label kind --out p.mpk.zst
mu-dump p.mpk.zst >p.jsonl
t probe_kind bash -c "head -1 p.jsonl | jq -e '.kind == \"probes\" and .meta.label == \"kind\" and .meta.classes == [\"bird\",\"cat\",\"dog\"] and .meta.position == \"last\"' >/dev/null"
# one probe per layer of stories260K (5), 27 train / 9 test records
t probe_records bash -c "tail -n +2 p.jsonl | jq -se 'map([.site, .layer]) == [[\"resid_post\",0],[\"resid_post\",1],[\"resid_post\",2],[\"resid_post\",3],[\"resid_post\",4]]' >/dev/null"
t probe_split bash -c "every 5 < p.jsonl '(.n_train != 27 or .n_test != 9) | not'"
t probe_shapes bash -c "every 5 < p.jsonl '(.W.shape != [3,64] or .b.shape != [3] or .mean.shape != [64] or .std.shape != [64] or .converged != true) | not'"
# the label is the last token: separable, every probe is perfect on both splits
t probe_separable bash -c "every 5 < p.jsonl '(.train_acc != 1 or .test_acc != 1) | not'"
# majority baseline: the test split's share of the train split's most frequent class
t probe_majority bash -c "every 5 < p.jsonl '(.majority_acc >= 0.6 or .majority_acc <= 0) | not'"

# apply on the same acts: accuracy over all 36 records = (train hits + test hits) / 36
t probe_apply mu-probe apply -q --probes p.mpk.zst --acts acts.mpk.zst --out m.mpk.zst
mu-dump m.mpk.zst >m.jsonl
t probe_apply_kind bash -c "head -1 m.jsonl | jq -e '.kind == \"metrics\" and .meta.by == [\"site\",\"layer\"]' >/dev/null"
ok_all=1
for l in 0 1 2 3 4; do
  want=$(tail -n +2 p.jsonl | jq -r "select(.layer == $l) | (.train_acc * .n_train + .test_acc * .n_test) / (.n_train + .n_test)")
  got=$(tail -n +2 m.jsonl | jq -r "select(.metric == \"probe_acc\" and .group.layer == \"$l\") | .value")
  n=$(tail -n +2 m.jsonl | jq -r "select(.metric == \"probe_acc\" and .group.layer == \"$l\") | .n")
  awk -v a="$got" -v b="$want" 'BEGIN { d = a - b; exit !(d < 1e-12 && d > -1e-12) }' && [ "$n" = 36 ] || { ok_all=0; fail probe_apply_same_acc "layer $l: apply $got (n $n), fit $want"; }
done
[ $ok_all = 1 ] && ok probe_apply_same_acc
# --label: the same probes read against another field of the records; they are perfect on
# kind, so on "other" they hit the 27 records where it is the animal, at every layer; the
# metrics' header names the field; --label kind gives apply's own bytes back
t probe_apply_label bash -c "mu-probe apply -q --probes p.mpk.zst --acts acts.mpk.zst --label other | mu-dump > mo.jsonl &&
  head -1 mo.jsonl | jq -e '.meta.label == \"other\"' >/dev/null &&
  [ \"\$(tail -n +2 mo.jsonl | jq -r 'select(.metric == \"probe_acc\") | \"\(.value * .n | round) \(.n)\"' | sort -u)\" = '27 36' ] &&
  [ \$(tail -n +2 mo.jsonl | jq -r 'select(.metric == \"probe_acc\")' | jq -s length) = 5 ] &&
  mu-probe apply -q --probes p.mpk.zst --acts acts.mpk.zst --label kind | mu-dump | tail -n +2 | cmp -s - <(tail -n +2 m.jsonl)"
expect_fail probe_apply_label_missing 1 'acts.mpk.zst: record 0: no meta field "nope"' \
  mu-probe apply --probes p.mpk.zst --acts acts.mpk.zst --label nope --out e-nope.mpk.zst

# an unrelated label: fit and apply agree on the same acts (counts, not a separable case)
t probe_fit_size mu-probe fit -q --acts acts.mpk.zst --label size --seed 3 --l2 0.1 --out ps.mpk.zst
mu-probe apply -q --probes ps.mpk.zst --acts acts.mpk.zst --out ms.mpk.zst
mu-dump ps.mpk.zst >ps.jsonl; mu-dump ms.mpk.zst >ms.jsonl
ok_all=1
for l in 0 2 4; do
  hits_fit=$(tail -n +2 ps.jsonl | jq -r "select(.layer == $l) | (.train_acc * .n_train + .test_acc * .n_test) | round")
  hits_apply=$(tail -n +2 ms.jsonl | jq -r "select(.metric == \"probe_acc\" and .group.layer == \"$l\") | .value * .n | round")
  [ "$hits_fit" = "$hits_apply" ] || { ok_all=0; fail probe_apply_same_acc_size "layer $l: fit $hits_fit, apply $hits_apply hits"; }
done
[ $ok_all = 1 ] && ok probe_apply_same_acc_size
# integer labels become strings; deterministic: same command, same bytes
t probe_int_label bash -c "mu-probe fit -q --acts acts.mpk.zst --label n --out pn.mpk.zst && mu-dump pn.mpk.zst | head -1 | jq -e '.meta.classes == [\"0\",\"1\",\"2\"]' >/dev/null"
cp ps.mpk.zst ps1.mpk.zst
mu-probe fit -q --acts acts.mpk.zst --label size --seed 3 --l2 0.1 --out ps.mpk.zst
t probe_deterministic cmp ps.mpk.zst ps1.mpk.zst
OMP_NUM_THREADS=1 mu-probe fit -q --acts acts.mpk.zst --label size --seed 3 --l2 0.1 --out ps.mpk.zst
t probe_deterministic_threads cmp ps.mpk.zst ps1.mpk.zst
# another seed, another split
mu-probe fit -q --acts acts.mpk.zst --label size --seed 4 --l2 0.1 --out ps4.mpk.zst
t probe_seed_changes_split bash -c "! cmp -s <(mu-dump ps4.mpk.zst | tail -n +2 | jq -c .mean) <(mu-dump ps1.mpk.zst | tail -n +2 | jq -c .mean)"

# positions: mean and all (every token of each prompt a sample)
fwd facts.tok resid_post:0,4:all acts_all.mpk.zst
ntok=$(mu-dump acts_all.mpk.zst | tail -n +2 | jq -s 'map(.acts[0].positions.shape[0]) | add')
t probe_position_all bash -c "mu-probe fit -q --acts acts_all.mpk.zst --label kind --position all --out pa.mpk.zst &&
  [ \$(mu-dump pa.mpk.zst | tail -n +2 | jq -s 'map(.n_train + .n_test) | unique | .[0]') = $ntok ]"
t probe_position_mean bash -c "mu-probe fit -q --acts acts_all.mpk.zst --label kind --position mean --out pm.mpk.zst &&
  mu-dump pm.mpk.zst | every 2 '(.n_train + .n_test != 36) | not'"
t probe_position_apply bash -c "mu-probe apply -q --probes pa.mpk.zst --acts acts_all.mpk.zst | mu-dump | every 6 '(.n != $ntok) | not'"

# f16 activations read like f32 ones (the separable probes stay perfect)
fwd facts.tok resid_post:all:last acts16.mpk.zst f16
t probe_f16 bash -c "mu-probe fit -q --acts acts16.mpk.zst --label kind | mu-dump | every 5 '(.test_acc != 1) | not'"

# --test FILE: train on the first 24 records (Tom..Amy minus the last four), test on the rest
head -24 facts.jsonl >train.jsonl; tail -12 facts.jsonl >test.jsonl
tok train.jsonl train.tok; tok test.jsonl test.tok
fwd train.tok resid_post:all:last tr.mpk.zst; fwd test.tok resid_post:all:last te.mpk.zst
t probe_test_file bash -c "mu-probe fit -q --acts tr.mpk.zst --test te.mpk.zst --label kind | mu-dump |
  every 5 '(.n_train != 24 or .n_test != 12 or .test_acc != 1) | not'"
t probe_test_fraction_0 bash -c "mu-probe fit -q --acts tr.mpk.zst --test-fraction 0 --label kind | mu-dump |
  every 5 '(.n_train != 24 or .n_test != 0) | not'"

# localize: a label planted in one MLP. "size" is unrelated to the prompt '{who} saw a
# {animal}', except that MLP 2's output at the last token gets a vector that depends on it
# (mlp_out of '{who} saw a sun' for big, '... red' for small, added by --intervene): the
# probes can read size after MLP 2 only, and localize must score that MLP far above the
# others, each score being the gain in minus the test cross-entropy across the block.
lnames=(Tom Lily Ben Sue Max Anna Tim Mia Sam Zoe Leo Amy Bob Kim Dan Eve Jack Lucy Ned Ola Pam Rex Sid Tess)
: >plant.jsonl
i=0
for who in "${lnames[@]}"; do
  for a in cat dog ball; do   # the words are 3 tokens each, like sun and red: same positions
    size=$([ $((i * 7 % 5)) -lt 2 ] && echo big || echo small)
    printf '{"who": "%s", "animal": "%s", "size": "%s", "sw": "%s"}\n' "$who" "$a" "$size" \
      "$([ $size = big ] && echo sun || echo red)" >>plant.jsonl
    i=$((i + 1))
  done
done
if mu-tokenize -q --model "$M" --prompt '{who} saw a {animal}' --out plant.tok plant.jsonl &&
   mu-tokenize -q --model "$M" --prompt '{who} saw a {sw}' --out steer.tok plant.jsonl &&
   fwd steer.tok mlp_out:2:last steer.mpk.zst &&
   mu-forward -q --model "$M" --intervene 'mlp_out:2:last=add=steer.mpk.zst' --cache resid_mid:all:last \
     --cache resid_post:all:last --cache-out plant.mpk.zst plant.tok >/dev/null &&
   mu-probe fit -q --acts plant.mpk.zst --label size --l2 0.1 --out pp.mpk.zst; then
  t probe_localize mu-probe localize -q --probes pp.mpk.zst --model "$M" --tensors mlp:all+attn:1-4 --out ls.mpk.zst
  mu-dump pp.mpk.zst >pp.jsonl; mu-dump ls.mpk.zst >ls.jsonl
  t probe_localize_kind bash -c "head -1 ls.jsonl | jq -e '.kind == \"scores\" and .meta.method == \"probe\" and
    .meta.granularity == \"matrix\" and .meta.params_total == 260032 and .meta.label == \"size\" and .meta.by == \"loss\"' >/dev/null"
  # one matrix record per tensor of the spec: 5 layers x (gate, up, down) + 4 x (q, k, v, o)
  t probe_localize_records bash -c "every 31 < ls.jsonl '(.units != 1 or .granularity != \"matrix\") | not'"
  # the planted MLP: far above every other block
  t probe_localize_planted bash -c "head -1 ls.jsonl | jq -e '.meta.mlp_effect as \$m | .meta.attn_effect as \$a |
    \$m[2] > 0.5 and ([\$m[0], \$m[1], \$m[3], \$m[4], \$a[1], \$a[2], \$a[3], \$a[4]] | map(fabs) | max) < \$m[2] / 10' >/dev/null"
  # the scores are the probes' test losses: MLP L = loss(resid_mid L) - loss(resid_post L),
  # attention L = loss(resid_post L-1) - loss(resid_mid L); every tensor carries its block's
  t probe_localize_values bash -c "jq -s -e '
      (.[0] | map(select(.site) | {key: \"\(.site) \(.layer)\", value: .test_loss}) | from_entries) as \$loss |
      (.[1] | .[0].meta) as \$meta | (.[1] | .[1:]) as \$recs |
      all(range(5); (\$meta.mlp_effect[.] - (\$loss[\"resid_mid \(.)\"] - \$loss[\"resid_post \(.)\"]) | fabs) < 1e-12) and
      all(range(1; 5); (\$meta.attn_effect[.] - (\$loss[\"resid_post \(. - 1)\"] - \$loss[\"resid_mid \(.)\"]) | fabs) < 1e-12) and
      all(\$recs[]; (.name | capture(\"layers\\\\.(?<l>[0-9]+)\\\\.(?<b>mlp|self_attn)\")) as \$c |
        (.score.first[0] - (if \$c.b == \"mlp\" then \$meta.mlp_effect else \$meta.attn_effect end)[\$c.l | tonumber] | fabs) < 1e-6)
    ' <(tail -n +2 pp.jsonl | jq -s .) <(jq -s . ls.jsonl) >/dev/null"
  # mu-maskgen takes the scores: the top 3 matrices are MLP 2's gate, up and down
  t probe_localize_mask bash -c "mu-maskgen -q --scores ls.mpk.zst --units 3 | mu-dump | tail -n +2 |
    jq -s -e 'map(select(.selected == 1) | .name) | sort == [\"model.layers.2.mlp.down_proj.weight\",
      \"model.layers.2.mlp.gate_proj.weight\", \"model.layers.2.mlp.up_proj.weight\"]' >/dev/null"
  # by test accuracy: the planted MLP alone moves it
  t probe_localize_by_acc bash -c "mu-probe localize -q --by acc --probes pp.mpk.zst --model '$M' | mu-dump | head -1 |
    jq -e '.meta.by == \"acc\" and .meta.mlp_effect[2] > 0.5 and (.meta.mlp_effect | to_entries | map(select(.key != 2) | .value | fabs) | max) < 0.1' >/dev/null"
  # errors: attention 0 has no probe before it; no test split; probes of resid_post only
  expect_fail probe_localize_no_site 1 'pp.mpk.zst: tensor model.layers.0.self_attn.q_proj.weight needs probes at resid_mid and resid_pre' \
    mu-probe localize --probes pp.mpk.zst --model "$M" --tensors attn:0 --out e12.mpk.zst
  mu-probe fit -q --acts plant.mpk.zst --label size --test-fraction 0 --out pnt.mpk.zst
  expect_fail probe_localize_no_test 1 'pnt.mpk.zst: record 0: resid_mid layer 0: no test samples' \
    mu-probe localize --probes pnt.mpk.zst --model "$M" --out e13.mpk.zst
  expect_fail probe_localize_missing 1 'p.mpk.zst: tensor model.layers.0.mlp.gate_proj.weight needs probes at resid_mid and resid_post layer 0' \
    mu-probe localize --probes p.mpk.zst --model "$M" --out e14.mpk.zst
  expect_fail probe_localize_wrong_kind 1 'acts.mpk.zst: header: expected kind probes, got activations' \
    mu-probe localize --probes acts.mpk.zst --model "$M" --out e15.mpk.zst
  expect_fail probe_localize_bad_model 1 'nomodel' mu-probe localize --probes pp.mpk.zst --model nomodel --out e16.mpk.zst
  expect_fail probe_localize_bad_tensors 2 '--tensors' mu-probe localize --probes pp.mpk.zst --model "$M" --tensors mlp:9 --out e17.mpk.zst
else
  fail probe_localize_setup "mu-tokenize, mu-forward --intervene or mu-probe fit failed"
fi

# errors: one line naming the file (and record), exit 1, no output left behind
expect_fail probe_wrong_kind 1 'facts.tok: header: expected kind activations, got tokens' \
  mu-probe fit --acts facts.tok --label kind --out e1.mpk.zst
expect_fail probe_no_label 1 'acts.mpk.zst: record 0: no meta field "animal"' \
  mu-probe fit --acts acts.mpk.zst --label animal --out e2.mpk.zst
expect_fail probe_one_class 1 'acts.mpk.zst: label "same" has 1 distinct value; a probe needs at least 2' \
  mu-probe fit --acts acts.mpk.zst --label same --out e3.mpk.zst
grep -v bird train.jsonl >nobird.jsonl; tok nobird.jsonl nobird.tok; fwd nobird.tok resid_post:all:last nb.mpk.zst
expect_fail probe_class_missing_from_train 1 'nb.mpk.zst: class "bird" of label "kind" has no record in the train split' \
  mu-probe fit --acts nb.mpk.zst --test te.mpk.zst --label kind --out e4.mpk.zst
expect_fail probe_apply_unknown_class 1 'acts.mpk.zst: record 2: label "bird" is not one of the classes' \
  bash -c "mu-probe fit -q --acts nb.mpk.zst --label kind --out pnb.mpk.zst && mu-probe apply --probes pnb.mpk.zst --acts acts.mpk.zst --out e5.mpk.zst"
# widths differ: a 32-wide random model's activations, as a test set and concatenated
if mu-init -q --out m32 --layers 5 --d-model 32 --heads 4 --d-ff 64 --seed 2 >/dev/null 2>&1 &&
   mu-tokenize -q --model m32 --prompt '{who} saw a {animal}' --out t32.tok test.jsonl &&
   mu-forward -q --model m32 --cache resid_post:all:last --cache-out a32.mpk.zst t32.tok >/dev/null; then
  expect_fail probe_test_width 1 'a32.mpk.zst: record 0: resid_post layer 0: width 32, expected 64' \
    mu-probe fit --acts tr.mpk.zst --test a32.mpk.zst --label kind --out e6.mpk.zst
  cat tr.mpk.zst a32.mpk.zst >mixed.mpk.zst
  expect_fail probe_mixed_width 1 'mixed.mpk.zst: record 24: resid_post layer 0: width 32, expected 64' \
    mu-probe fit --acts mixed.mpk.zst --label kind --out e7.mpk.zst
  expect_fail probe_apply_width 1 'a32.mpk.zst: record 0: resid_post layer 0: width 32, expected 64' \
    mu-probe apply --probes p.mpk.zst --acts a32.mpk.zst --out e8.mpk.zst
else
  fail probe_width_setup "mu-init/mu-tokenize/mu-forward on a 32-wide model failed"
fi
fwd facts.tok resid_post:1:last l1.mpk.zst
expect_fail probe_apply_missing_site 1 'l1.mpk.zst: record 0: no activations at resid_post layer 0' \
  mu-probe apply --probes p.mpk.zst --acts l1.mpk.zst --out e9.mpk.zst
expect_fail probe_apply_wrong_kind 1 'acts.mpk.zst: header: expected kind probes, got activations' \
  mu-probe apply --probes acts.mpk.zst --acts acts.mpk.zst --out e10.mpk.zst
head -c 3000 acts.mpk.zst >trunc.mpk.zst
expect_fail probe_truncated 1 'trunc.mpk.zst: .*truncated' mu-probe fit --acts trunc.mpk.zst --label kind --out e11.mpk.zst
# streams with one defect each (tests/gen/gen_probe_hostile.py -> tests/golden/probe/hostile):
# activations whose record 8 is broken, probes with a bad field
expect_fail probe_entry_not_map 1 'entry_not_map.mpk.zst: record 8: acts: an entry is not a map$' \
  mu-probe fit --acts "$H/entry_not_map.mpk.zst" --label kind --out e20.mpk.zst
expect_fail probe_x_not_2d 1 'x_not_2d.mpk.zst: record 8: resid_post layer 0: x must be \[P, D\] with P, D >= 1$' \
  mu-probe fit --acts "$H/x_not_2d.mpk.zst" --label kind --out e21.mpk.zst
expect_fail probe_positions_rows 1 'positions_rows.mpk.zst: record 8: resid_post layer 0: 2 positions for 1 rows of x$' \
  mu-probe fit --acts "$H/positions_rows.mpk.zst" --label kind --out e22.mpk.zst
expect_fail probe_x_int 1 'x_int.mpk.zst: record 8: resid_post layer 0: x has dtype i32, expected a float dtype$' \
  mu-probe fit --acts "$H/x_int.mpk.zst" --label kind --out e23.mpk.zst
expect_fail probe_label_list 1 'label_list.mpk.zst: record 8: meta field "kind" is not a string, integer or bool$' \
  mu-probe fit --acts "$H/label_list.mpk.zst" --label kind --out e24.mpk.zst
expect_fail probe_w_shape 1 "probes_w_shape.mpk.zst: record 0: W: shape does not match the probe's classes and width\$" \
  mu-probe apply --probes "$H/probes_w_shape.mpk.zst" --acts "$H/good.mpk.zst" --out e25.mpk.zst
expect_fail probe_std_zero 1 'probes_std_zero.mpk.zst: record 0: std: entry 1 is not a positive finite number$' \
  mu-probe apply --probes "$H/probes_std_zero.mpk.zst" --acts "$H/good.mpk.zst" --out e26.mpk.zst
expect_fail probe_twice 1 'probes_twice.mpk.zst: record 1: resid_post layer 0: a second probe for it$' \
  mu-probe apply --probes "$H/probes_twice.mpk.zst" --acts "$H/good.mpk.zst" --out e27.mpk.zst
expect_fail probe_localize_twice 1 'probes_twice.mpk.zst: record 1: resid_post layer 0: a second probe for it$' \
  mu-probe localize --probes "$H/probes_twice.mpk.zst" --model "$M" --tensors mlp:0 --out e28.mpk.zst
expect_fail probe_localize_no_n_test 1 'probes_no_n_test.mpk.zst: record 0: expected a probe record \(site, layer, n_test\)$' \
  mu-probe localize --probes "$H/probes_no_n_test.mpk.zst" --model "$M" --tensors mlp:0 --out e29.mpk.zst
expect_fail probe_localize_old_stream 1 'probes_no_test_loss.mpk.zst: record 0: no test_loss \(a probes stream of an older mu-probe: fit again\)$' \
  mu-probe localize --probes "$H/probes_no_test_loss.mpk.zst" --model "$M" --tensors mlp:0 --out e30.mpk.zst
# the same stream read well: the probe applies (the template of the broken ones is sound);
# labels that are integers or booleans are classes by their text
t probe_hostile_template_applies mu-probe apply -q --probes "$H/probes_good.mpk.zst" --acts "$H/good.mpk.zst" --out good-applied.mpk.zst
t probe_int_and_bool_labels bash -c "
  mu-probe fit -q --acts '$H/int_labels.mpk.zst' --label kind --out pint.mpk.zst &&
  mu-probe fit -q --acts '$H/bool_labels.mpk.zst' --label kind --out pbool.mpk.zst &&
  [ \"\$(mu-dump pint.mpk.zst | head -1 | jq -c .meta.classes)\" = '[\"-3\",\"7\"]' ] &&
  [ \"\$(mu-dump pbool.mpk.zst | head -1 | jq -c .meta.classes)\" = '[\"false\",\"true\"]' ]"
left=$(ls e*.mpk.zst* 2>/dev/null | tr '\n' ' ')
if [ -z "$left" ]; then ok probe_no_partial; else fail probe_no_partial "left: $left"; fi
# usage errors: exit 2
expect_fail probe_no_command 2 'expected a command' mu-probe --acts acts.mpk.zst
expect_fail probe_bad_command 2 "unknown command 'train'" mu-probe train
expect_fail probe_bad_l2 2 '--l2' mu-probe fit --acts acts.mpk.zst --label kind --l2 0
expect_fail probe_bad_position 2 '--position first' mu-probe fit --acts acts.mpk.zst --label kind --position first
expect_fail probe_apply_fit_option 2 '--position is not an option of apply' mu-probe apply --probes p.mpk.zst --acts acts.mpk.zst --position mean
expect_fail probe_fit_localize_option 2 '--model is not an option of fit' mu-probe fit --acts acts.mpk.zst --label kind --model "$M"
expect_fail probe_localize_no_model 2 'localize needs --model' mu-probe localize --probes p.mpk.zst
expect_fail probe_localize_bad_by 2 '--by f1' mu-probe localize --probes p.mpk.zst --model "$M" --by f1
expect_fail probe_fit_no_label 2 'fit needs --label' mu-probe fit --acts acts.mpk.zst
