#!/usr/bin/env bash
# t_attrib.sh — mu-attrib end to end on a tiny mu-init model that learned a few facts:
# every method writes one record per scored tensor with the right units, runs are
# bit-identical, and bad input is a one-line error with no output left behind.
. "$(dirname "$0")/lib.sh"

t attrib_help bash -c 'mu-attrib --help | grep -q "^Usage: mu-attrib" && mu-attrib --version >/dev/null'
expect_fail attrib_usage_no_forget 2 'forget is required' mu-attrib --model m
expect_fail attrib_usage_bad_method 2 "method: 'nope'" mu-attrib --model m --forget f --method nope
expect_fail attrib_usage_needs_retain 2 'wagle needs --retain' mu-attrib --model m --forget f --method wagle
expect_fail attrib_usage_bad_mu 2 'mu' mu-attrib --model m --forget f --method memflex --retain r --mu 2
expect_fail attrib_usage_trace_needs_subject 2 'causal-trace needs --subject' mu-attrib --model m --forget f --method causal-trace
expect_fail attrib_usage_trace_positions 2 "positions: 'answer' \(prompt, subject_last\)" \
  mu-attrib --model m --forget f --method atp --subject name --positions answer
expect_fail attrib_usage_path_patch_positions 2 "positions: 'prompt' \(path-patch sends from subject_last only\)" \
  mu-attrib --model m --forget f --method path-patch --subject name --positions prompt

cd "$T" || exit 1
if ! mu-init --out tiny --layers 2 --d-model 32 --heads 4 --kv-heads 2 --d-ff 64 --seed 3 >/dev/null 2>&1; then
    skip attrib_all "mu-init failed"; exit 0
fi
printf '%s\n' '{"name": "Ada Quell", "sport": "golf"}' '{"name": "Bo Tarrin", "sport": "tennis"}' > forget.jsonl
printf '%s\n' '{"name": "Di Oyelaran", "sport": "chess"}' '{"name": "Ed Falkner", "sport": "polo"}' > retain.jsonl
tok() { mu-tokenize --model tiny --prompt '{name} plays' --target ' {sport}' "$1" > "$2"; }
if ! tok forget.jsonl forget.mpk.zst || ! tok retain.jsonl retain.mpk.zst; then
    skip attrib_all "mu-tokenize failed"; exit 0
fi
cat forget.mpk.zst retain.mpk.zst > all.mpk.zst
mu-train --model tiny --objective learn --train all.mpk.zst --steps 30 --batch 4 --lr 1e-2 --out learned.st -q

# every method: 2 records (down_proj of layers 0 and 1), 64 value vectors each, finite scores
for m in act act-contrast grad wagle memflex; do
  t "attrib_${m}_records" bash -c "
    mu-attrib --model tiny --delta learned.st --forget forget.mpk.zst --retain retain.mpk.zst \
      --method $m --out $m.mpk.zst -q &&
    mu-dump $m.mpk.zst | jq -e -s '
      (.[0].kind == \"scores\") and (.[0].meta.method == \"$m\") and (length == 3) and
      ([.[1:][] | .units] == [64, 64]) and
      ([.[1:][] | .name] == [\"model.layers.0.mlp.down_proj.weight\", \"model.layers.1.mlp.down_proj.weight\"])' >/dev/null"
done
# the same run twice: the same records (the headers differ in --out)
t attrib_deterministic bash -c '
  mu-attrib --model tiny --delta learned.st --forget forget.mpk.zst --retain retain.mpk.zst --method wagle --out w2.mpk.zst -q &&
  cmp <(mu-dump wagle.mpk.zst | tail -n +2) <(mu-dump w2.mpk.zst | tail -n +2)'
# head granularity over o_proj: 4 heads; element granularity over a norm: 32 units
t attrib_heads_and_elements bash -c '
  mu-attrib --model tiny --forget forget.mpk.zst --tensors attn.o:1 -g head -q > h.mpk.zst &&
  mu-attrib --model tiny --forget forget.mpk.zst --tensors norms:0 -g element -q > e.mpk.zst &&
  [ "$(mu-dump h.mpk.zst | jq -s "[.[1:][] | .units]" -c)" = "[4]" ] &&
  [ "$(mu-dump e.mpk.zst | jq -s "[.[1:][] | .units]" -c)" = "[32,32]" ]'

# output tracing: one matrix unit per attention/MLP tensor (2 layers: 2 x (4 + 3) tensors),
# the per-layer effects in the header, the same scores for a tensor and its block
for m in causal-trace atp path-patch; do
  t "attrib_${m}_blocks" bash -c "
    mu-attrib --model tiny --delta learned.st --forget forget.mpk.zst --subject name --method $m \
      --samples 2 --out $m.mpk.zst -q &&
    mu-dump $m.mpk.zst | jq -e -s '
      (.[0].meta.mlp_effect | length == 2) and (.[0].meta.attn_effect | length == 2) and
      (length == 15) and ([.[1:][] | .units] | all(. == 1))' >/dev/null"
done
# causal-trace and path-patch patch only the blocks of --tensors: MLPs only here, the
# attention effects are nan (mu-dump's "nan"), the MLP ones those of the run over every block
t attrib_path_patch_mlp_blocks_only bash -c "
  mu-attrib --model tiny --delta learned.st --forget forget.mpk.zst --subject name --method path-patch \
    --tensors mlp:all --samples 2 --out pp-mlp.mpk.zst -q &&
  mu-dump pp-mlp.mpk.zst | jq -e -s --slurpfile all <(mu-dump path-patch.mpk.zst | head -1) '
    (.[0].meta.attn_effect == [\"nan\", \"nan\"]) and (length == 7) and
    ([.[0].meta.mlp_effect, \$all[0].meta.mlp_effect] | transpose | all(.[0] - .[1] | fabs < 1e-6))' >/dev/null"
# path-patch sends from the subject's last token ('Quell', 'Tarrin' are followed by
# ' plays'): the header says so, and the probabilities are those of clean and noised runs
t attrib_path_patch_header bash -c "
  mu-dump path-patch.mpk.zst | jq -e -s '.[0].meta | (.positions == \"subject_last\") and
    (.p_clean > 0) and (.p_clean <= 1) and (.p_corrupt > 0) and (.p_corrupt != .p_clean)' >/dev/null"
# the subject spans come in the same pass as the records: the forget set may be a pipe
t attrib_path_patch_forget_from_pipe bash -c "
  cat forget.mpk.zst | mu-attrib --model tiny --delta learned.st --forget - --subject name \
    --method path-patch --samples 2 -q > pp-pipe.mpk.zst &&
  cmp <(mu-dump pp-pipe.mpk.zst | tail -n +2) <(mu-dump path-patch.mpk.zst | tail -n +2) &&
  mu-dump pp-pipe.mpk.zst | jq -e -s '.[0].meta.attn_effect == (\$ARGS.positional[0] | fromjson)' \
    --args \"\$(mu-dump path-patch.mpk.zst | head -1 | jq -c .meta.attn_effect)\" >/dev/null"
expect_fail attrib_trace_span_cut 1 'forget.mpk.zst: record 0: the "name" span \[0, 9\) is outside the prompt as trained \(15 tokens cut by --max-len\)' \
  mu-attrib --model tiny --forget forget.mpk.zst --subject name --method path-patch --max-len 4 --out bad6.mpk.zst
expect_fail attrib_trace_no_span 1 'forget.mpk.zst: record 0: no span .* field "sport"' \
  mu-attrib --model tiny --forget forget.mpk.zst --subject sport --method atp --out bad5.mpk.zst

# an answer longer than --max-len keeps all its tokens (none of the prompt): still scored
t attrib_answer_longer_than_max_len bash -c '
  mu-attrib --model tiny --forget forget.mpk.zst --max-len 3 -q > ml1.mpk.zst &&
  mu-attrib --model tiny --forget forget.mpk.zst --max-len 3 --method act --positions answer -q > ml2.mpk.zst &&
  [ "$(mu-dump ml1.mpk.zst | jq -s ".[0].meta.tokens_f")" -gt 0 ]'

# bad input: one line naming the problem, exit 1, no output file
expect_fail attrib_act_needs_mlp 1 'q_proj.weight: act scores MLP neurons only' \
  mu-attrib --model tiny --forget forget.mpk.zst --method act --tensors attn.q:0 --out bad1.mpk.zst
expect_fail attrib_trace_needs_matrices 1 'tensor model.layers.0.self_attn.q_proj.weight: causal-trace scores the tensors of attention and MLP blocks as whole matrices \(granularity matrix\)$' \
  mu-attrib --model tiny --forget forget.mpk.zst --subject name --method causal-trace -g neuron --out bad7.mpk.zst
expect_fail attrib_forget_wrong_kind 1 'wagle.mpk.zst' \
  mu-attrib --model tiny --forget wagle.mpk.zst --out bad2.mpk.zst
head -c 40 forget.mpk.zst > trunc.mpk.zst
expect_fail attrib_forget_truncated 1 'trunc.mpk.zst' \
  mu-attrib --model tiny --forget trunc.mpk.zst --out bad3.mpk.zst
expect_fail attrib_bad_tensors 1 'tensors' \
  mu-attrib --model tiny --forget forget.mpk.zst --tensors mlp:9 --out bad4.mpk.zst
t attrib_no_partial_output bash -c '! ls bad*.mpk.zst* 2>/dev/null | grep -q .'
