#!/usr/bin/env bash
# t_forward.sh — mu-forward end to end: the stories260K greedy run (llama2.c's own expected
# text), Sports Facts choices scored by mu-score, batching invariance, activation cache and
# patching through the tool, sampling reproducibility, bad inputs (one-line errors, exit 1/2).
. "$(dirname "$0")/lib.sh"
S="$SHARED_DATA/models/stories260K"

t forward_help bash -c 'mu-forward --help | grep -q -- --intervene'
t forward_version bash -c 'mu-forward --version | grep -q "^mu-forward (mu) "'

# a small random model with a byte tokenizer (no shared data needed)
mu-init --out "$T/m" --layers 2 --d-model 32 --heads 4 --d-ff 64 --vocab 300 --seed 3 --std 0.2 >/dev/null
printf '{"q":"The cat sat on","a":" the mat","b":" a hat"}\n{"q":"One two","a":" three","b":" four five"}\n{"q":"x","a":" y","b":" zz"}\n' >"$T/d.jsonl"
mu-tokenize --model "$T/m" --prompt '{q}' --choices '{a}|{b}' "$T/d.jsonl" -o "$T/tok.mpk.zst"

# same_within FILE1 FILE2: the same tokens, numbers equal within 1e-5 * max(1, |x|)
same_within() { paste <(tr ',:[]{}' '\n\n\n\n\n\n' <"$1") <(tr ',:[]{}' '\n\n\n\n\n\n' <"$2") | awk -F'\t' '
  { if ($1 == $2) next
    if ($1 ~ /^-?[0-9.]+(e[-+]?[0-9]+)?$/ && $2 ~ /^-?[0-9.]+(e[-+]?[0-9]+)?$/) {
      d = $1 - $2; if (d < 0) d = -d; m = $1 < 0 ? -$1 : $1; if (m < 1) m = 1
      if (d <= 1e-5 * m) next }
    print "differ: " $1 " vs " $2; bad = 1; exit }
  END { exit bad }'; }

# batching: budgets 1 and 4096 give the same values (mu-dump --full of the records)
mu-forward --model "$T/m" -e all-scores --topk 3 -b 1 "$T/tok.mpk.zst" | mu-dump --full -H >"$T/b1.json"
mu-forward --model "$T/m" -e all-scores --topk 3 -b 4096 "$T/tok.mpk.zst" | mu-dump --full -H >"$T/b4096.json"
t forward_batch_invariant same_within "$T/b1.json" "$T/b4096.json"
# one-token candidates: a record whose candidates are one token each is scored by one row, the
# prompt alone (its last position's logits); its choice, target, rank and top-k values and its
# cached activations are those of a row per candidate, which --row-per-candidate and
# --emit text (it reads past the prompt) force; the second record (a two-token candidate) has
# a row per candidate in every run
printf '{"q":"The cat","a":"s","b":"t","c":"u"}\n{"q":"One two","a":"x","b":"yz","c":"w"}\n{"q":"Q","a":"1","b":"2","c":"3","answer":2}\n' > "$T/one.jsonl"
mu-tokenize --model "$T/m" --prompt '{q}' --choices '{a}|{b}|{c}' "$T/one.jsonl" -o "$T/one.tok"
t forward_one_row_choices bash -c "$(declare -f same_within)
  [ \"\$(mu-dump -H '$T/one.tok' | jq -c '[.targets[] | .shape[0]]' | tr '\n' ' ')\" = '[1,1,1] [1,2,1] [1,1,1] ' ] &&
  mu-forward --model '$T/m' -e choices,target,ranks,topk --topk 3 --cache resid_post:all:last --cache-out '$T/one1.acts' '$T/one.tok' |
    mu-dump --full -H > '$T/one1.json' &&
  mu-forward --model '$T/m' -e choices,target,ranks,topk,text --topk 3 --cache resid_post:all:last --cache-out '$T/one2.acts' '$T/one.tok' |
    mu-dump --full -H | jq -c 'del(.text_logprobs)' > '$T/one2.json' &&
  mu-forward --model '$T/m' -e choices,target,ranks,topk --topk 3 --row-per-candidate '$T/one.tok' | mu-dump --full -H > '$T/one3.json' &&
  [ \$(grep -c '\"choice_logprobs\"' '$T/one1.json') = 3 ] && same_within '$T/one1.json' '$T/one2.json' &&
  same_within '$T/one1.json' '$T/one3.json' &&
  same_within <(mu-dump --full -H '$T/one1.acts') <(mu-dump --full -H '$T/one2.acts')"
t forward_batch_same_shape bash -c "[ \$(wc -l <'$T/b1.json') = 3 ] && [ \$(wc -c <'$T/b1.json') -gt 500 ]"
t forward_records_in_order bash -c "[ \"\$(grep -o '^{\"id\":[0-9]*' '$T/b1.json' | tr '\n' ' ')\" = '{\"id\":0 {\"id\":1 {\"id\":2 ' ]"
t forward_header_traces_inputs bash -c "mu-forward --model '$T/m' -e text '$T/tok.mpk.zst' | mu-dump -n 0 | grep -q '\"role\":\"tokens\".*\"role\":\"model\".*\"xxh3\"'"

t forward_header_traces_piped_data bash -c "mu-forward --model '$T/m' -e text <'$T/tok.mpk.zst' | mu-dump -n 0 | grep -q '\"tokens\":{\"producer\":{\"tool\":\"mu-tokenize\".*\"role\":\"data\",\"path\":\"[^\"]*d.jsonl\",\"size\":[0-9]*,\"xxh3\":\"[0-9a-f]\{32\}\"'"

# a <(...) input is read once: its header entry has no size or digest (not those of the
# empty rest of the pipe), and the records are those of the file
t forward_header_process_substitution bash -c "
  mu-forward --model '$T/m' -e text <(cat '$T/tok.mpk.zst') > '$T/ps.out' &&
  mu-dump -n 0 '$T/ps.out' | jq -e '.inputs[0] | .role == \"tokens\" and .size == null and .xxh3 == null' >/dev/null &&
  cmp <(mu-dump '$T/ps.out' | tail -n +2) <(mu-forward --model '$T/m' -e text '$T/tok.mpk.zst' | mu-dump | tail -n +2)"

# cache + patch: the clean resid_post:0 patched into a noised run restores the clean text log-probs
printf 'hello world, a longer plain text line\n' | mu-tokenize --model "$T/m" --raw -o "$T/raw.mpk.zst"
mu-forward --model "$T/m" -e text --cache 'resid_post:0:all' --cache-out "$T/acts.mpk.zst" "$T/raw.mpk.zst" | mu-dump --full -H >"$T/clean.json"
mu-forward --model "$T/m" -e text -i 'embed::0,1,2=noise=3' --seed 9 "$T/raw.mpk.zst" | mu-dump --full -H >"$T/noised.json"
mu-forward --model "$T/m" -e text -i 'embed::0,1,2=noise=3' -i "resid_post:0:all=patch=$T/acts.mpk.zst" --seed 9 "$T/raw.mpk.zst" |
  mu-dump --full -H >"$T/patched.json"
t forward_cache_kind bash -c "mu-dump -k activations -n 0 '$T/acts.mpk.zst' | grep -q 'resid_post:0:all'"
t forward_noise_changes bash -c "! cmp -s '$T/clean.json' '$T/noised.json'"
t forward_patch_restores same_within "$T/clean.json" "$T/patched.json"
t forward_cache_f16 bash -c "mu-forward --model '$T/m' --cache 'mlp_post:1:last' --cache-dtype f16 --cache-out '$T/a16.mpk.zst' '$T/raw.mpk.zst' >/dev/null && mu-dump '$T/a16.mpk.zst' | grep -q '\"dtype\":\"f16\",\"shape\":\\[1,64\\]'"

# --delta: a delta learned on the targets raises their log-probs; the header names it
mu-tokenize --model "$T/m" --prompt '{q}' --target '{a}' "$T/d.jsonl" -o "$T/tgt.mpk.zst"
loss() { mu-forward --model "$T/m" "$@" -e target "$T/tgt.mpk.zst" | mu-score --metrics target_loss --format tsv - | awk -F'\t' '$1 == "target_loss" { print $3 }'; }
if mu-train --model "$T/m" --objective learn --train "$T/tgt.mpk.zst" --steps 20 --batch 3 --lr 1e-2 --out "$T/learn.st" -q 2>"$T/train.err"; then
  base=$(loss) tuned=$(loss --delta "$T/learn.st")
  if awk -v b="$base" -v d="$tuned" 'BEGIN { exit !(b != "" && d != "" && d < b - 0.1) }'; then ok "forward_delta_applied ($base -> $tuned)"
  else fail forward_delta_applied "target_loss base '$base', with delta '$tuned'"; fi
  t forward_delta_in_header bash -c "mu-forward --model '$T/m' --delta '$T/learn.st' '$T/tgt.mpk.zst' | mu-dump -n 0 | grep -q '\"role\":\"delta\",\"path\":\"[^\"]*learn.st\"'"
else fail forward_delta_applied "mu-train: $(cat "$T/train.err")"; fi
expect_fail forward_delta_missing 1 'nope.st' mu-forward --model "$T/m" --delta "$T/nope.st" "$T/tgt.mpk.zst"
# a checkpoint that disagrees with its config.json (intermediate_size 48 for 64-row MLP
# weights), and one whose weight is stored as integers (the header's dtype I32, same bytes)
cp -r "$T/m" "$T/m48" && jq '.intermediate_size = 48' "$T/m/config.json" >"$T/m48/config.json"
expect_fail forward_shape_mismatch 1 'm48: tensor model.layers.0.mlp.gate_proj.weight: shape \[64,32\] but config needs \[48,32\]$' \
  mu-forward --model "$T/m48" --out "$T/m48.out" "$T/tok.mpk.zst"
cp -r "$T/m" "$T/mi32" && perl -0777 -pi -e 's/("model.layers.0.self_attn.q_proj.weight":\{"dtype":")F32"/$1I32"/' "$T/mi32/model.safetensors"
expect_fail forward_weight_not_float 1 'mi32: tensor model.layers.0.self_attn.q_proj.weight: dtype i32 is not a float type$' \
  mu-forward --model "$T/mi32" --out "$T/mi32.out" "$T/tok.mpk.zst"
t forward_bad_checkpoint_no_output bash -c "[ -z \"\$(ls '$T' | grep -E '^(m48|mi32)\.out')\" ]"

# --dtype bf16: the same records, log-probs near the f32 ones (bf16 weights and GEMM
# inputs) but not equal to them; stderr stays empty on the CPU
mu-forward --model "$T/m" -e target "$T/tgt.mpk.zst" | mu-dump --full -H >"$T/f32.json"
mu-forward --model "$T/m" --dtype bf16 -e target "$T/tgt.mpk.zst" 2>"$T/bf16.err" | mu-dump --full -H >"$T/bf16.json"
t forward_bf16_differs bash -c "! cmp -s '$T/f32.json' '$T/bf16.json'"
t forward_bf16_near_f32 bash -c "paste <(grep -o '\"target_logprobs\":{[^}]*}' '$T/f32.json' | grep -o '\[.*\]' | tr -d '[]' | tr ',' '\n') \
  <(grep -o '\"target_logprobs\":{[^}]*}' '$T/bf16.json' | grep -o '\[.*\]' | tr -d '[]' | tr ',' '\n') |
  awk '{ n++; d = \$1 - \$2; if (d < 0) d = -d; if (d > 0.05) bad = 1 } END { exit !(n >= 3 && !bad) }'"
t forward_bf16_quiet_on_cpu bash -c "[ ! -s '$T/bf16.err' ]"
expect_fail forward_bad_dtype 2 "dtype: 'f8'" mu-forward --model "$T/m" --dtype f8 "$T/tgt.mpk.zst"

# sampling: same seed -> same generation
g() { mu-forward --model "$T/m" --generate 12 --temperature 1.0 --top-p 0.9 --seed "$1" "$T/raw.mpk.zst" | mu-dump --full -H; }
t forward_sampling_reproducible bash -c "[ \"\$($(declare -f g); T='$T'; g 4)\" = \"\$($(declare -f g); T='$T'; g 4)\" ]"

# a vocabulary padded beyond the tokenizer's (mu-init's default 512 over its 259 tokens, as
# Qwen2's): generated ids past the tokenizer have no text and decode to nothing, as in
# transformers; the text is that of the other ids (decoded by mu-tokenize --decode --ids), and
# mu-tokenize --decode of the generation gives it too
if mu-init --out "$T/pad" --layers 1 --d-model 16 --heads 2 --d-ff 32 --seed 5 -q &&
   echo '{"name": "Ada"}' | mu-tokenize --model "$T/pad" --prompt '{name} plays' - > "$T/pad.tok"; then
  padded_generation() {
    mu-forward --model "$T/pad" --generate 24 "$T/pad.tok" | mu-dump --full -H > "$T/pad.json" || return 1
    local ids want
    ids=$(jq -r '.generation.data // .generation | .[]' "$T/pad.json")
    [ "$(awk '$1 >= 259' <<< "$ids" | wc -l)" -gt 0 ] || { echo "no padded id generated"; return 1; }
    want=$(awk '$1 < 259' <<< "$ids" | paste -sd' ' | mu-tokenize --model "$T/pad" --decode --ids) || return 1
    [ "$(jq -r .generation_text "$T/pad.json")" = "$want" ] || return 1
    # mu-tokenize --decode of the whole generation (it reads the model's vocabulary) agrees
    [ "$(mu-forward --model "$T/pad" --generate 24 "$T/pad.tok" | mu-tokenize --model "$T/pad" --decode)" = "$want" ]
  }
  t forward_padded_vocab_generation padded_generation
else
  fail forward_padded_vocab_generation "mu-init or mu-tokenize failed"
fi

# bad inputs
expect_fail forward_wrong_kind 1 'acts.mpk.zst: header: expected kind tokens, got activations' mu-forward --model "$T/m" "$T/acts.mpk.zst"
expect_fail forward_choices_without_targets 1 'raw.mpk.zst: record 0: --emit choices needs candidate targets' mu-forward --model "$T/m" -e choices "$T/raw.mpk.zst"
expect_fail forward_cache_out_missing 2 'needs --cache-out' mu-forward --model "$T/m" --cache resid_post:0:last "$T/raw.mpk.zst"
expect_fail forward_bad_site 1 "bad site spec" mu-forward --model "$T/m" --cache nowhere:0:last --cache-out "$T/x.mpk.zst" "$T/raw.mpk.zst"
# --intervene's actions and activation files (the defective streams of
# tests/gen/gen_probe_hostile.py: record 8 broken; their vectors 4 wide)
PH="$(cd "$(dirname "$0")/../golden/probe/hostile" && pwd)"
expect_fail forward_intervene_bad_noise 1 "--intervene 'resid_post:0:last=noise=-1': noise wants a standard deviation >= 0" \
  mu-forward --model "$T/m" -i 'resid_post:0:last=noise=-1' "$T/tok.mpk.zst"
expect_fail forward_intervene_unknown_action 1 "--intervene 'resid_post:0:last=blur': unknown action 'blur'" \
  mu-forward --model "$T/m" -i 'resid_post:0:last=blur' "$T/tok.mpk.zst"
expect_fail forward_intervene_entry_not_map 1 'entry_not_map.mpk.zst: record 8: acts: "site" is not a site name$' \
  mu-forward --model "$T/m" -i "resid_post:0:last=patch=$PH/entry_not_map.mpk.zst" "$T/tok.mpk.zst"
expect_fail forward_intervene_x_not_2d 1 'x_not_2d.mpk.zst: record 8: acts: x must be f32/f16/bf16 \[P, D\] with P = 1$' \
  mu-forward --model "$T/m" -i "resid_post:0:last=add=$PH/x_not_2d.mpk.zst" "$T/tok.mpk.zst"
expect_fail forward_intervene_positions_rows 1 'positions_rows.mpk.zst: record 8: acts: x must be f32/f16/bf16 \[P, D\] with P = 2$' \
  mu-forward --model "$T/m" -i "resid_post:0:last=patch=$PH/positions_rows.mpk.zst" "$T/tok.mpk.zst"
expect_fail forward_intervene_x_int 1 'x_int.mpk.zst: record 8: acts: x must be f32/f16/bf16 \[P, D\] with P = 1$' \
  mu-forward --model "$T/m" -i "resid_post:0:last=patch=$PH/x_int.mpk.zst" "$T/tok.mpk.zst"
expect_fail forward_intervene_mean_width 1 'good.mpk.zst: no resid_post:0 vectors of width 32$' \
  mu-forward --model "$T/m" -i "resid_post:0:last=mean=$PH/good.mpk.zst" "$T/tok.mpk.zst"
expect_fail forward_bad_emit 2 "unknown emit 'bogus'" mu-forward --model "$T/m" -e bogus "$T/raw.mpk.zst"
expect_fail forward_patch_id_missing 1 'no record with this id' mu-forward --model "$T/m" -i "resid_post:0:all=patch=$T/acts.mpk.zst" "$T/tok.mpk.zst"
t forward_no_partial_output bash -c "! mu-forward --model '$T/m' -e choices '$T/raw.mpk.zst' -o '$T/never.mpk.zst' 2>/dev/null && [ ! -e '$T/never.mpk.zst' ] && ! ls '$T'/never.mpk.zst.tmp.* 2>/dev/null"

if [ -f "$S/model.safetensors" ]; then
  # llama2.c's expectation: greedy decoding from <s> (the text has no final newline; --decode adds one)
  # byte for byte, trailing newline included (issue: prints exactly greedy_200.txt)
  t forward_stories_greedy_200 bash -c "printf '' | mu-tokenize --model '$S' --raw --bos | mu-forward --model '$S' --generate 200 | mu-tokenize --model '$S' --decode | cmp - '$S/greedy_200.txt'"
  t forward_stories_generation_text bash -c "printf '' | mu-tokenize --model '$S' --raw --bos | mu-forward --model '$S' --generate 20 | mu-dump | grep -q '\"generation_text\":\"Once upon a time'"
  expect_fail forward_token_outside_vocab 1 'record 0: prompt: token [0-9]+ is [0-9]+, outside the model.s vocabulary of 300' \
    bash -c "printf 'zebra quantum\n' | mu-tokenize --model '$S' --raw | mu-forward --model '$T/m'"
  SP="$SHARED_DATA/sports/sports.csv"
  if [ -f "$SP" ]; then
    mu-tokenize --model "$S" "$SP" --rows 0-32 --prompt 'Fact: Tiger Woods plays the sport of golf\nFact: {athlete} plays the sport of' \
      --target ' {sport}' --choices ' football| baseball| basketball' -o "$T/sports.mpk.zst"
    mu-forward --model "$S" --emit choices "$T/sports.mpk.zst" -o "$T/sports.out.mpk.zst"
    t forward_sports_subject_cache bash -c "mu-forward --model '$S' -e choices --cache resid_post:all:subject_last --subject athlete --cache-out '$T/sa.mpk.zst' '$T/sports.mpk.zst' >/dev/null &&
      [ \"\$(mu-dump -n 1 -H '$T/sa.mpk.zst' | grep -o '\"positions\":{[^}]*}' | sort -u)\" = '\"positions\":{\"dtype\":\"i32\",\"shape\":[1],\"first\":[44]}' ] &&
      [ \$(mu-dump -n 1 -H '$T/sa.mpk.zst' | grep -o '\"layer\":[0-9]' | wc -l) = 5 ]"
    expect_fail forward_sports_no_subject_span 1 'sports.mpk.zst: record 0: resid_post:0:subject_last: .*subject' \
      mu-forward --model "$S" --cache resid_post:0:subject_last --cache-out "$T/sb.mpk.zst" "$T/sports.mpk.zst"
    acc=$(mu-score --metrics choice_acc --format tsv "$T/sports.out.mpk.zst" | awk -F'\t' '$1 == "choice_acc" { print $3 }')
    if awk -v a="$acc" 'BEGIN { exit !(a != "" && a >= 0 && a <= 1) }'; then ok "forward_sports_choice_acc ($acc)"
    else fail forward_sports_choice_acc "choice_acc '$acc' not in [0,1]"; fi
  else skip forward_sports_choice_acc "no $SP"; fi
else
  skip forward_stories "no $S (../shared/data absent)"
fi
