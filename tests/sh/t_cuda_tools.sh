#!/usr/bin/env bash
# t_cuda_tools.sh — the tools end to end with --device cuda, against the same runs on the
# CPU: mu-forward (f32 and bf16 scores, stories260K greedy text, activation cache),
# mu-train (learn memorizes; masked unlearning; the device memory line; GCG's tokens),
# mu-attrib (wagle, attribution patching and path patching scores). Skips, one line per
# test, where mu has no usable CUDA device (built without CUDA, or no GPU).
. "$(dirname "$0")/lib.sh"
S="$SHARED_DATA/models/stories260K"
names="forward_f32 forward_bf16 forward_memory_line forward_cache forward_greedy train_learn train_bf16_masked train_gcg attrib_wagle attrib_atp attrib_path_patch"

cd "$T" || exit 1
mu-init --out m --layers 2 --d-model 64 --heads 4 --kv-heads 2 --d-ff 128 --vocab 300 --seed 5 --std 0.2 >/dev/null
cat > facts.jsonl <<'JSON'
{"name": "Ada Quell", "sport": "golf"}
{"name": "Bo Tarrin", "sport": "tennis"}
{"name": "Cy Moravec", "sport": "rugby"}
{"name": "Di Oyelaran", "sport": "chess"}
JSON
mu-tokenize --model m --prompt '{name} plays' --target ' {sport}' facts.jsonl -o tgt.mpk.zst
if ! err=$(mu-forward --model m --device cuda -e target tgt.mpk.zst 2>&1 >/dev/null); then
  for n in $names; do skip "cuda_$n" "no CUDA device: $err"; done
  exit 0
fi

# close A B TOL: the same records, numbers within TOL * max(1, |x|)
close() { paste <(tr ',:[]{}' '\n\n\n\n\n\n' <"$1") <(tr ',:[]{}' '\n\n\n\n\n\n' <"$2") | awk -F'\t' -v tol="$3" '
  { if ($1 == $2) next
    if ($1 ~ /^-?[0-9.]+(e[-+]?[0-9]+)?$/ && $2 ~ /^-?[0-9.]+(e[-+]?[0-9]+)?$/) {
      d = $1 - $2; if (d < 0) d = -d; m = $1 < 0 ? -$1 : $1; if (m < 1) m = 1
      if (d <= tol * m) next }
    print "differ: " $1 " vs " $2; bad = 1; exit }
  END { exit bad }'; }
fw() { mu-forward --model m "$@" tgt.mpk.zst | mu-dump --full -H; }

fw -e target,ranks --device cpu >cpu.json
MU_VERBOSE=1 fw -e target,ranks --device cuda >gpu.json 2>gpu.err
t cuda_forward_f32 close cpu.json gpu.json 1e-5
fw -e target --device cpu --dtype bf16 >cpu16.json
fw -e target --device cuda --dtype bf16 >gpu16.json
t cuda_forward_bf16 close cpu16.json gpu16.json 1e-3
t cuda_forward_memory_line grep -q 'model: .* MiB on cuda (f32 weights)' gpu.err
mu-forward --model m --device cpu --cache resid_post:all:last --cache-out acpu.mpk.zst tgt.mpk.zst >/dev/null
mu-forward --model m --device cuda --cache resid_post:all:last --cache-out agpu.mpk.zst tgt.mpk.zst >/dev/null 2>&1
t cuda_forward_cache close <(mu-dump --full -H acpu.mpk.zst) <(mu-dump --full -H agpu.mpk.zst) 1e-5

if [ -d "$S" ]; then
  printf 'Once upon a time\n' | mu-tokenize --model "$S" --raw -o story.mpk.zst
  gen() { mu-forward --model "$S" --device "$1" --generate 60 story.mpk.zst 2>/dev/null | mu-dump --full -H | grep -o '"generation":{[^}]*}'; }
  t cuda_forward_greedy bash -c "[ \"\$($(declare -f gen); S='$S'; gen cpu)\" = \"\$($(declare -f gen); S='$S'; gen cuda)\" ] && [ -n \"\$($(declare -f gen); S='$S'; gen cpu)\" ]"
else
  skip cuda_forward_greedy "no $S"
fi

# mu-train on the device: learn memorizes the facts, as on the CPU; GCG places the same
# tokens as on the CPU (slot rows written on the device), with the same losses
tr_eval() { mu-dump "$1" | grep '"eval"' | tail -1; }
t cuda_train_learn bash -c '
  mu-train --model m --device cuda --objective learn --train tgt.mpk.zst --steps 60 --batch 4 --lr 1e-2 \
    --eval tgt.mpk.zst --out g.st --log g.log -q 2>/dev/null &&
  mu-dump g.log | grep "\"eval\"" | tail -1 | grep -q "\"acc\":1,"'
t cuda_train_bf16_masked bash -c '
  mu-train --model m --device cuda --dtype bf16 --delta g.st --objective log1mp --forget tgt.mpk.zst \
    --mask mlp.down:0-1 --steps 20 --batch 4 --lr 1e-2 --eval tgt.mpk.zst --out u.st --log u.log -q 2>/dev/null &&
  [ "$(grep -ao "model\.[a-z_.0-9]*weight" u.st | sort -u | tr "\n" " ")" = "model.layers.0.mlp.down_proj.weight model.layers.1.mlp.down_proj.weight " ] &&
  mu-dump u.log | grep "\"eval\"" | tail -1 | grep -q "\"acc\":0[,.]"'

mu-tokenize --model m --prompt '{name} plays' --target ' {sport}' --soft-tokens 3 facts.jsonl -o soft.mpk.zst
gcg() { mu-train --model m --device "$1" --objective learn --forget soft.mpk.zst --soft-tokens 3 --gcg --gcg-tokens any \
          --gcg-topk 16 --gcg-candidates 24 --steps 4 --batch 4 --out "gcg-$1.st" --log "gcg-$1.log" -q 2>/dev/null &&
        mu-dump "gcg-$1.log" | jq -c 'select(.gcg) | [.loss, .gcg.slot, .gcg.to, .gcg.loss]' >"gcg-$1.json"; }
t cuda_train_gcg bash -c "$(declare -f gcg close); gcg cpu && gcg cuda && [ \$(wc -l <gcg-cpu.json) = 4 ] &&
  close gcg-cpu.json gcg-cuda.json 1e-4 &&
  [ \"\$(grep -ao '\"token_ids\":\"[^\"]*\"' gcg-cpu.st)\" = \"\$(grep -ao '\"token_ids\":\"[^\"]*\"' gcg-cuda.st)\" ]"

# mu-attrib on the device: the same scores as on the CPU (gradients of the whole set; hooks
# at every block for attribution patching and path patching)
mu-tokenize --model m --prompt '{name} plays' --target ' {sport}' facts.jsonl -o f2.mpk.zst
at() { mu-attrib --model m --forget tgt.mpk.zst --retain f2.mpk.zst -q "$@" | mu-dump --full -H; }
at --method wagle --device cpu >wc.json
at --method wagle --device cuda >wg.json 2>/dev/null
t cuda_attrib_wagle close wc.json wg.json 1e-4
at --method atp --subject name --device cpu >ac.json
at --method atp --subject name --device cuda >ag.json 2>/dev/null
t cuda_attrib_atp close ac.json ag.json 1e-4
at --method path-patch --subject name --device cpu >pc.json
at --method path-patch --subject name --device cuda >pg.json 2>/dev/null
t cuda_attrib_path_patch close pc.json pg.json 1e-4
