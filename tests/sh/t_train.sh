#!/usr/bin/env bash
# t_train.sh — mu-train end to end on a tiny mu-init model and mu-tokenize'd facts:
# conventions, memorizing with learn, masked deltas, sparse == dense, full model export,
# kill -9 + --resume bit-identical, NaN stop with the step named, hostile inputs.
. "$(dirname "$0")/lib.sh"

t train_help bash -c 'mu-train --help | grep -q "^Usage: mu-train" && mu-train --version >/dev/null'
expect_fail train_usage_no_model 2 'model is required' mu-train --objective learn --out x
expect_fail train_usage_bad_objective 2 "unknown objective 'nope'" mu-train --model m --objective nope --out x

cd "$T" || exit 1
if ! mu-init --out tiny --layers 2 --d-model 32 --heads 4 --kv-heads 2 --d-ff 64 --seed 3 >/dev/null 2>&1; then
    skip train_all "mu-init failed"; exit 0
fi
cat > facts.jsonl <<'EOF'
{"name": "Ada Quell", "sport": "golf"}
{"name": "Bo Tarrin", "sport": "tennis"}
{"name": "Cy Moravec", "sport": "rugby"}
{"name": "Di Oyelaran", "sport": "chess"}
{"name": "Ed Falkner", "sport": "polo"}
{"name": "Fay Ibsen", "sport": "judo"}
EOF
cat > other.jsonl <<'EOF'
{"name": "Gil Arnaz", "sport": "golf"}
{"name": "Hal Voss", "sport": "darts"}
{"name": "Ivy Cheng", "sport": "squash"}
EOF
tok() { mu-tokenize --model tiny --prompt '{name} plays' --target ' {sport}' "$1" > "$2"; }
if ! tok facts.jsonl facts.mpk.zst || ! tok other.jsonl other.mpk.zst; then
    skip train_all "mu-tokenize failed"; exit 0
fi

# learn memorizes the facts: accuracy 1 on the training set at the end
last_eval() { mu-dump "$1" | grep '"eval"' | tail -1; }
t train_learn_memorizes bash -c '
  mu-train --model tiny --objective learn --train facts.mpk.zst --steps 80 --batch 6 --lr 1e-2 \
    --eval facts.mpk.zst --out learned.st --log learn.log -q &&
  mu-dump learn.log | grep "\"eval\"" | tail -1 | grep -q "\"facts\":{\"nll\":0\.0[0-9]*,\"acc\":1,"'

# --dtype bf16 (bf16 weights, f32 master copies of the trained ones) memorizes too
t train_bf16_learn_memorizes bash -c '
  mu-train --model tiny --dtype bf16 --objective learn --train facts.mpk.zst --steps 80 --batch 6 --lr 1e-2 \
    --eval facts.mpk.zst --out learned16.st --log learn16.log -q &&
  mu-dump learn16.log | grep "\"eval\"" | tail -1 | grep -q "\"facts\":{\"nll\":0\.0[0-9]*,\"acc\":1," &&
  ! cmp -s learned.st learned16.st'
expect_fail train_weight_mask_negative 2 "weight-mask" mu-train --model tiny --weight-mask -1 --objective learn --train facts.mpk.zst --out x.st
expect_fail train_bad_dtype 2 "dtype: 'f16'" mu-train --model tiny --dtype f16 --objective learn --train facts.mpk.zst --out x.st

# LoRA (--lora R): rank-8 adapters on the 14 layer matrices learn the facts; the delta (version
# 2) holds each adapter as a low-rank entry (NAME::lora_A, ::lora_B, ::lora_scale; no dense
# matrix), whose model W + (alpha/R) B A gives the run's last evaluation again (1e-6), as
# do the same run's --out-peft adapter directory read back as --delta and its --out-model
# (the merged weights); then GPT-2 (Conv1D
# weights stored [in, out]: fan_in_fan_out) with a mask choosing the matrices (its biases
# and norms stay frozen) the same way
lora_merges() {   # MODEL MASK-OPTION MATRICES FACTS FAN_IN_FAN_OUT [LEARNS: 1, or 0 not asked]
    mu-train --model $1 $2 --objective learn --train $4 --steps 60 --batch 6 --lr 1e-2 --lora 8 \
      --lora-alpha 16 --eval $4 --out lora-$1.st --out-peft peft-$1 --out-model merged-$1 --log lora-$1.log \
      -q || return 1
    jq -e ".peft_type == \"LORA\" and .r == 8 and .lora_alpha == 16 and .fan_in_fan_out == $5 and
      (.target_modules | length) == $3 and .use_rslora == false" peft-$1/adapter_config.json >/dev/null ||
      { echo "adapter_config.json"; return 1; }
    [ "${6:-1}" = 0 ] || mu-dump lora-$1.log | grep '"eval"' | tail -1 | grep -q '"acc":1,' ||
      { echo "not learned"; return 1; }
    mu-dump --model $1 --delta lora-$1.st > lora-$1.jsonl || return 1
    head -c 65536 lora-$1.st | tr -d '\000' > lora-$1.hdr
    [ "$(grep -o '"[a-z_.0-9]*::lora_[AB]"' lora-$1.hdr | wc -l)" = $(($3 * 2)) ] &&
      [ "$(grep -o '"[a-z_.0-9]*::lora_scale"' lora-$1.hdr | wc -l)" = $3 ] &&
      ! grep -q '"[a-z_.0-9]*weight":' lora-$1.hdr && grep -q '"version":"2"' lora-$1.hdr ||
      { echo "not low-rank entries"; return 1; }
    tail -n +2 lora-$1.jsonl | jq -e -s "[.[] | select(.delta_elems[0] > 0)] | length == $3 and
      all(.[]; (.layer != null or .role == \"lm_head\") and (.shape | length) == 2 and .delta_elems[0] == .numel)" >/dev/null ||
      return 1
    head -1 lora-$1.jsonl | jq -e ".delta_metadata[0].mu_train | .lora_r == 8 and .lora_alpha == 16 and
      .lora_matrices == $3" >/dev/null || { echo "metadata"; return 1; }
    local a b
    a=$(mu-dump lora-$1.log | grep '"eval"' | tail -1 | jq '.eval | to_entries[0].value.nll')
    mu-train --model $1 --delta lora-$1.st --objective learn --train $4 --steps 0 --eval $4 \
      --out z-$1.st --log z-$1.log -q || return 1
    b=$(mu-dump z-$1.log | grep '"eval"' | tail -1 | jq '.eval | to_entries[0].value.nll')
    awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; if (!(d < 1e-6 * a && -d < 1e-6 * a)) { print a, b; exit 1 } }' || return 1
    local how
    for how in "--model $1 --delta peft-$1" "--model merged-$1"; do
      mu-train $how --objective learn --train $4 --steps 0 --eval $4 --out zp-$1.st --log zp-$1.log -q || return 1
      b=$(mu-dump zp-$1.log | grep '"eval"' | tail -1 | jq '.eval | to_entries[0].value.nll')
      awk -v a="$a" -v b="$b" -v h="$how" 'BEGIN { d = a - b; if (!(d < 1e-6 * a && -d < 1e-6 * a)) { print h, a, b; exit 1 } }' ||
        return 1
    done
}
t train_lora_learns_and_merges lora_merges tiny "" 14 facts.mpk.zst false
# an untied lm_head adapted when the mask names it (the default mask leaves it out, as PEFT's
# all-linear does: 14 matrices above); rank 8 on it and one MLP need not learn every fact
cp -r tiny tinyh
t train_lora_lm_head_merges lora_merges tinyh "--mask mlp:0+lm_head" 4 facts.mpk.zst false 0
if mu-init -q --arch gpt2 --out g2 --layers 2 --d-model 32 --heads 4 --max-pos 64 --d-ff 64 --seed 5 &&
   mu-tokenize --model g2 --prompt '{name} plays' --target ' {sport}' facts.jsonl > g2facts.mpk.zst; then
  t train_lora_gpt2_conv1d_merges lora_merges g2 "--mask mlp:0-1+attn:1" 6 g2facts.mpk.zst true
else
  fail train_lora_gpt2 "mu-init --arch gpt2 or mu-tokenize failed"
fi
# a LoRA run stopped at a checkpoint and resumed: the same delta as one run through
t train_lora_resume_bit_identical bash -c '
  a="--model tiny --objective learn --train facts.mpk.zst --batch 3 --lr 1e-2 --lora 4 --seed 3 -q"
  mu-train $a --steps 10 --out lfull.st && mu-train $a --steps 5 --out lhalf.st --checkpoint lck.mpk.zst --checkpoint-every 5 &&
  mu-train $a --steps 10 --out lres.st --checkpoint lck.mpk.zst --checkpoint-every 5 --resume && cmp lfull.st lres.st &&
  ! cmp -s lhalf.st lres.st'
expect_fail train_lora_zero 2 "lora" mu-train --model tiny --lora 0 --objective learn --train facts.mpk.zst --out x.st
expect_fail train_out_peft_without_lora 2 "out-peft applies to --lora" mu-train --model tiny --objective learn --train facts.mpk.zst --out-peft x
expect_fail train_delta_scale_needs_out 2 "apply to the delta of --out" mu-train --model tiny --objective learn --train facts.mpk.zst --out-model x --delta-scale -1
expect_fail train_out_scaled_bad 2 "expected S=FILE" mu-train --model tiny --objective learn --train facts.mpk.zst --out x.st --out-scaled neg.st
expect_fail train_out_scaled_twice 2 "y.st is written twice" mu-train --model tiny --objective learn --train facts.mpk.zst --out x.st --out-scaled -1=y.st --out-scaled 2=y.st
expect_fail train_out_scaled_is_out 2 "x.st is written twice" mu-train --model tiny --objective learn --train facts.mpk.zst --out x.st --out-scaled -1=x.st
# --out-scaled S=FILE writes the run's delta at other scales too: byte for byte the --out of
# the same run with --delta-scale S (its options record delta_scale S), and --out itself
# that of the run alone
ts() { mu-train -q --model tiny -O learn --train facts.mpk.zst --steps 3 --mask mlp:0 --sparse --seed 3 "$@"; }
t train_out_scaled_same_bytes bash -c "$(declare -f ts)"'
  ts --delta-scale 2 --out s2.st --out-scaled -1=sm1.st --out-scaled 0.5=s05.st --log sc.log &&
  ts --delta-scale -1 --out m1.st && ts --delta-scale 0.5 --out h.st && ts --delta-scale 2 --out d2.st &&
  cmp sm1.st m1.st && cmp s05.st h.st && cmp s2.st d2.st && ! cmp -s m1.st h.st &&
  mu-dump sc.log | head -1 | jq -e ".meta.options.delta_scale == 2" >/dev/null'
expect_fail train_lora_alpha_alone 2 "lora-alpha applies to --lora" mu-train --model tiny --lora-alpha 2 --objective learn --train facts.mpk.zst --out x.st
expect_fail train_lora_with_weight_mask 2 "cannot be combined" mu-train --model tiny --lora 2 --weight-mask 1 --objective learn --train facts.mpk.zst --out x.st
expect_fail train_lora_part_of_matrix 1 "LoRA adapts whole layer matrices: the mask selects part of model.layers.0.mlp.up_proj.weight" \
    bash -c 'mu-maskgen --random --model tiny --tensors mlp.up:0 --granularity element --units 37 --seed 2 -q --out lora37.mask &&
      mu-train --model tiny --mask lora37.mask --lora 2 --objective learn --train facts.mpk.zst --out x.st -q'
expect_fail train_lora_no_matrix 1 "the mask selects no layer matrix for LoRA" \
    mu-train --model tiny --mask norms:0 --lora 2 --objective learn --train facts.mpk.zst --out x.st -q

# unlearning on top of the learned delta, masked to one matrix: the delta holds only it
t train_npo_masked_delta bash -c '
  mu-train --model tiny --delta learned.st --objective npo=1,retain-ce=1 --forget facts.mpk.zst \
    --retain other.mpk.zst --mask mlp.down:1 --steps 15 --batch 3 --lr 5e-3 --out npo.st -q &&
  [ "$(grep -ao "model\.[a-z_.0-9]*weight" npo.st | sort -u)" = "model.layers.1.mlp.down_proj.weight" ]'

# --scaled-delta S=FILE applies FILE at strength S when the model is loaded: the same
# weights as the delta mu-train --delta-scale S writes (w0 + S (w - w0), low-rank scale times
# S), so mu-forward's records are byte for byte those of that delta; sparse, dense and LoRA
# deltas, on the base and stacked after another delta (w0 then holds the first); S = 1 is
# --delta, S = 0 no delta; the inputs, the digest and mu-dump's header name the scale
recs() { mu-forward -q --model tiny "$@" facts.mpk.zst | mu-dump -H; }
t train_scaled_delta_is_task_arithmetic bash -c "$(declare -f recs)"'
  mu-maskgen --random --model tiny --tensors mlp:0-1 --granularity element --units 300 --seed 2 -q --out el300.mask &&
  mu-train -q --model tiny -O learn --train facts.mpk.zst --steps 3 --seed 3 --mask el300.mask --sparse --out sd1.st \
    --out-scaled -1=sdm1.st --out-scaled 0.5=sdh.st --out-scaled 2.5=sd25.st &&
  [ "$(grep -aoc "::idx" sd1.st)" -gt 0 ] &&
  mu-train -q --model tiny -O learn --train facts.mpk.zst --steps 3 --seed 3 --out dd1.st --out-scaled -1=ddm1.st &&
  mu-train -q --model tiny -O learn --train facts.mpk.zst --steps 3 --seed 3 --lora 2 --lr 1e-2 --out ld1.st \
    --out-scaled -0.5=ldm.st &&
  mu-train -q --model tiny --delta learned.st -O npo=1,retain-ce=1 --forget facts.mpk.zst --retain other.mpk.zst \
    --mask mlp.down:1 --steps 5 --batch 3 --lr 5e-3 --out st1.st --out-scaled -1=stm1.st &&
  for c in "-1 sd1 sdm1" "0.5 sd1 sdh" "2.5 sd1 sd25" "-1 dd1 ddm1" "-0.5 ld1 ldm"; do set -- $c
    recs --scaled-delta $1=$2.st > got.txt && recs --delta $3.st > want.txt && cmp -s got.txt want.txt ||
      { echo "S=$1 $2.st differs from $3.st"; exit 1; }
  done &&
  recs --delta learned.st --scaled-delta -1=st1.st > got.txt && recs --delta learned.st --delta stm1.st > want.txt &&
  cmp -s got.txt want.txt && ! recs --delta learned.st --delta st1.st | cmp -s - want.txt &&
  recs --scaled-delta 1=sd1.st > got.txt && recs --delta sd1.st | cmp -s - got.txt &&
  recs --scaled-delta 0=dd1.st > got.txt && recs | cmp -s - got.txt &&
  mu-forward -q --model tiny --scaled-delta -1=sd1.st --out sc.out facts.mpk.zst &&
  mu-dump sc.out | head -1 | jq -e "[.inputs[] | select(.role == \"delta\") | .scale] == [-1]" > /dev/null &&
  mu-forward -q --model tiny --delta sd1.st --out s1.out facts.mpk.zst &&
  mu-dump s1.out | head -1 | jq -e "[.inputs[] | select(.role == \"delta\")][0] | has(\"scale\") | not" > /dev/null &&
  a=$(mu-dump --model tiny --delta sd1.st | head -1 | jq -r .digest) &&
  b=$(mu-dump --model tiny --scaled-delta 1=sd1.st | head -1 | jq -r .digest) &&
  c=$(mu-dump --model tiny --scaled-delta -1=sd1.st | head -1 | jq -r ".digest, (.delta_scales | tostring)" | tr "\n" " ") &&
  [ "$a" = "$b" ] && [ "${c% \[-1\] }" != "$a" ] && [ "${c#* }" = "[-1] " ]'
# mu-dump --stats reads the change at its strength: at 0.5 the L2 norm of each tensor's
# change is half that at 1; a run started from a scaled delta records the scales
t train_scaled_delta_stats_and_record bash -c '
  mu-dump --model tiny --delta dd1.st --stats | sed -n "2,\$p" | jq -r "[.name, .delta_l2[0]] | @tsv" > l1.tsv &&
  mu-dump --model tiny --scaled-delta 0.5=dd1.st --stats | sed -n "2,\$p" | jq -r "[.name, .delta_l2[0]] | @tsv" > lh.tsv &&
  paste l1.tsv lh.tsv | awk -F"\t" "{ d = \$4 - 0.5 * \$2; if (d < 0) d = -d; if (\$1 != \$3 || d > 1e-3 * \$2 + 1e-12) bad = 1; if (\$2 > 0) n++ }
                                     END { exit bad || n == 0 }" &&
  mu-train -q --model tiny --scaled-delta -1=dd1.st -O learn --train facts.mpk.zst --steps 1 --mask mlp:0 --out sdx.st --log sdx.log &&
  mu-dump sdx.log | head -1 | jq -e ".meta.options.input_delta_scales == [-1]" > /dev/null'
# an adapter trained on top of deltas: PEFT would apply it to the bare model, so mu-train says
# so in one line (and not when there was no delta)
t train_out_peft_on_deltas_warns bash -c '
  mu-train -q --model tiny --delta learned.st -O learn --train facts.mpk.zst --steps 1 --lora 2 --out-peft pdl 2> pdl.err &&
  [ -s pdl/adapter_config.json ] && [ "$(wc -l < pdl.err)" = 1 ] &&
  grep -q "^mu-train: warning: pdl: PEFT applies the adapter to tiny alone, but it was trained on top of 1 delta (mu reads it after them: --delta ... --delta pdl)\$" pdl.err &&
  mu-train -q --model tiny -O learn --train facts.mpk.zst --steps 1 --lora 2 --out-peft pbare 2> pbare.err && [ ! -s pbare.err ]'
expect_fail train_scaled_delta_no_scale 2 "--scaled-delta 'dd1.st': expected S=FILE" mu-forward --model tiny --scaled-delta dd1.st facts.mpk.zst
expect_fail train_scaled_delta_not_a_number 2 "--scaled-delta: 'inf' is not a number" mu-forward --model tiny --scaled-delta inf=dd1.st facts.mpk.zst

# mu-dump --model with deltas: each delta's elements per tensor (dense: all of the tensor;
# sparse: the mask's elements), and the digest the deltas record as their base
t train_dump_model_deltas bash -c '
  mu-maskgen --random --model tiny --tensors mlp.up:0 --granularity element --units 37 --seed 2 -q --out e37.mask &&
  mu-train --model tiny --delta learned.st --objective ga --forget facts.mpk.zst --mask e37.mask --steps 2 \
    --batch 3 --lr 1e-2 --sparse --out e37.st -q &&
  mu-dump --model tiny --delta learned.st --delta npo.st --delta e37.st > md.jsonl &&
  base=$(tail -c +9 learned.st | head -c "$(od -An -tu8 -N8 learned.st | tr -d " ")" | jq -r .__metadata__.base) &&
  [ "$(mu-dump --model tiny | head -1 | jq -r .digest)" = "$base" ] &&
  head -1 md.jsonl | jq -e ".deltas == [\"learned.st\", \"npo.st\", \"e37.st\"] and .digest != \"$base\"" >/dev/null &&
  tail -n +2 md.jsonl | jq -e -s "length > 0 and all(.[]; .delta_elems[0] == .numel) and
    all(.[]; .delta_elems[1] == (if .name == \"model.layers.1.mlp.down_proj.weight\" then .numel else 0 end)) and
    all(.[]; .delta_elems[2] == (if .name == \"model.layers.0.mlp.up_proj.weight\" then 37 else 0 end))" >/dev/null'
# --stats: each delta's change; npo.st's on the one matrix it holds against od + awk over the
# values learned.st and npo.st store for it
down1=model.layers.1.mlp.down_proj.weight
want=$(paste <(st_values learned.st $down1) <(st_values npo.st $down1) | awk '{ d = $2 - $1; s += d * d; b += $1 * $1 }
       END { printf "%.9g %.9g\n", sqrt(s), sqrt(s / b) }')
t train_dump_model_stats bash -c '
  mu-dump --model tiny --delta learned.st --delta npo.st --delta e37.st --stats -H > ms.jsonl &&
  jq -s -e "all(.[]; .delta_l2[0] > 0 and
    ((.delta_l2[1] > 0) == (.name == \"$0\")) and ((.delta_l2[2] > 0) == (.name == \"model.layers.0.mlp.up_proj.weight\")))" ms.jsonl >/dev/null &&
  got=$(jq -r "select(.name == \"$0\") | \"\(.delta_l2[1]) \(.delta_rel[1])\"" ms.jsonl) &&
  awk -v w="$1" -v g="$got" "BEGIN { split(w, a, \" \"); split(g, b, \" \");
    for (i = 1; i <= 2; i++) if ((a[i] - b[i]) ^ 2 > 1e-10 * a[i] ^ 2) { print \"got \" g \", od+awk \" w; exit 1 } }"' "$down1" "$want"
expect_fail train_dump_model_bad_delta 1 "facts.mpk.zst: " mu-dump --model tiny --delta facts.mpk.zst

# --sparse on whole-matrix masks: nothing to index, so the same file as the dense delta;
# (element/neuron/head masks: sparse == dense == model dir is checked in t_train.c)
t train_sparse_whole_matrix_is_dense bash -c '
  a="--model tiny --delta learned.st --objective log1mp --forget facts.mpk.zst --mask attn.o:0+mlp.up:1 --steps 5 --batch 3 --lr 1e-2 --seed 4 -q"
  mu-train $a --out dense.st && mu-train $a --out sparse.st --sparse && cmp -s dense.st sparse.st &&
  ! grep -aq "::idx" sparse.st'

# a full model directory reproduces base + delta exactly
t train_out_model_matches_delta bash -c '
  mu-train --model tiny --delta learned.st --objective ga --forget facts.mpk.zst --mask mlp:0 --steps 3 \
    --batch 2 --lr 1e-3 --out ga.st --out-model gamodel -q &&
  [ -f gamodel/config.json ] && [ -f gamodel/model.safetensors ] && [ -f gamodel/tokenizer.json ] &&
  e1=$(mu-train --model tiny --delta learned.st --delta ga.st --objective learn --train facts.mpk.zst --steps 0 --eval facts.mpk.zst --out z3.st --log z3.log -q && mu-dump z3.log | grep "\"eval\"") &&
  e2=$(mu-train --model gamodel --objective learn --train facts.mpk.zst --steps 0 --eval facts.mpk.zst --out z4.st --log z4.log -q && mu-dump z4.log | grep "\"eval\"") &&
  [ "$e1" = "$e2" ]'

# a model without tokenizer.json: the exported directory has none either, and says so
t train_out_model_no_tokenizer bash -c '
  cp -r tiny notok && rm notok/tokenizer.json &&
  mu-train --model notok --objective ga --forget facts.mpk.zst --mask mlp:0 --steps 1 --batch 2 \
    --out-model notok-out -q 2> notok.err &&
  [ -f notok-out/model.safetensors ] && [ ! -e notok-out/tokenizer.json ] &&
  [ "$(wc -l < notok.err)" = 1 ] && grep -q "^mu-train: warning: notok-out: no tokenizer.json next to the model" notok.err'

# same seed twice: identical bytes
t train_seed_bit_identical bash -c '
  a="--model tiny --objective learn=1,general-lm=0.5 --train facts.mpk.zst --general other.mpk.zst --steps 12 --batch 2 --accum 2 --lr 3e-3 --schedule cosine --warmup 3 --clip 1 --seed 9 -q"
  mu-train $a --out s1.st && mu-train $a --out s2.st && cmp -s s1.st s2.st'

# kill -9 in the middle of a checkpointed run, --resume: the same final delta as an
# uninterrupted run, and never a partial output under the final name
kill_resume() {
    local a="--model tiny --objective npo=1,retain-ce=1 --forget facts.mpk.zst --retain other.mpk.zst --steps 300 --batch 3 --lr 2e-3 --schedule linear --warmup 5 --seed 2 -q"
    mu-train $a --out full.st || return 1
    mu-train $a --out killed.st --checkpoint ck.mpk.zst --checkpoint-every 10 & local pid=$!
    local i=0
    while [ ! -e ck.mpk.zst ] && [ $i -lt 400 ]; do sleep 0.02; i=$((i+1)); done
    kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
    [ -e ck.mpk.zst ] || { echo "no checkpoint appeared"; return 1; }
    [ ! -e killed.st ] || { echo "run finished before the kill (machine too fast?)"; return 1; }
    mu-train $a --out killed.st --checkpoint ck.mpk.zst --checkpoint-every 10 --resume || return 1
    cmp full.st killed.st
}
t train_kill9_resume_bit_identical kill_resume
expect_fail train_resume_other_options 1 'ck\.mpk\.zst: checkpoint was written with other training options' \
    mu-train --model tiny --objective npo=1,retain-ce=1 --forget facts.mpk.zst --retain other.mpk.zst --steps 300 \
    --batch 3 --lr 3e-3 --schedule linear --warmup 5 --seed 2 -q --out other.st --checkpoint ck.mpk.zst --resume

# every option lands in the run's record under its own name (each value differs from its
# default): the log header's meta.options, and the delta's metadata "mu_train" (read from
# the safetensors header itself, and as mu-dump --model shows it)
cat > opts.expect.json <<'EOF'
{"objectives": {"npo": 1, "retain-ce": 0.5, "rmu": 2}, "npo_beta": 0.25, "simnpo_beta": 3.5,
 "simnpo_delta": 0.125, "dpo_beta": 0.375, "wga_beta": 2.5, "satimp_beta1": 4, "satimp_beta2": 0.5,
 "undial_beta": 7, "log1mp_floor": -3,
 "delta_scale": -1, "rmu_layer": 0, "rmu_coeff": 5.5, "rmu_alpha": 50, "optimizer": "sgd", "lr": 0.001, "beta1": 0.8,
 "beta2": 0.95, "eps": 1e-06, "momentum": 0.9, "weight_decay": 0.01, "clip": 1.5, "schedule": "cosine",
 "warmup": 1, "decay_steps": 3, "min_lr_ratio": 0.1, "steps": 3, "batch": 2, "accum": 2, "seed": 7,
 "mask": "mlp:1", "max_len": 64, "ref": "tiny", "dpo_alt": " chess"}
EOF
t train_options_recorded bash -c '
  mu-train -q --model tiny -O npo=1,retain-ce=0.5,rmu=2 --forget facts.mpk.zst --retain other.mpk.zst \
    --steps 3 --batch 2 --npo-beta 0.25 --simnpo-beta 3.5 --simnpo-delta 0.125 --dpo-beta 0.375 \
    --wga-beta 2.5 --satimp-beta1 4 --satimp-beta2 0.5 --undial-beta 7 --log1mp-floor -3 --rmu-layer 0 --rmu-coeff 5.5 --rmu-alpha 50 \
    --optimizer sgd --lr 0.001 --beta1 0.8 --beta2 0.95 --eps 1e-6 --momentum 0.9 --weight-decay 0.01 \
    --clip 1.5 --schedule cosine --warmup 1 --min-lr-ratio 0.1 --accum 2 --seed 7 --mask mlp:1 \
    --max-len 64 --ref tiny --dpo-alt " chess" --delta-scale -1 --out opts.st --log opts.log &&
  mu-dump opts.log | head -1 | jq -e --slurpfile e opts.expect.json ".meta.options == \$e[0]" >/dev/null &&
  tail -c +9 opts.st | head -c "$(od -An -tu8 -N8 opts.st | tr -d " ")" |
    jq -e --slurpfile e opts.expect.json "(.__metadata__.mu_train | fromjson) == \$e[0]" >/dev/null &&
  mu-dump --model tiny --delta opts.st | head -1 |
    jq -e --slurpfile e opts.expect.json ".delta_metadata[0].mu_train == \$e[0] and
      .delta_metadata[0].objective == \"npo=1,retain-ce=0.5,rmu=2\"" >/dev/null'
# defaults resolved: the middle layer for RMU, no decay_steps for a constant schedule
t train_options_defaults bash -c '
  mu-dump learn.log | head -1 | jq -e ".meta.options | .rmu_layer == 1 and .optimizer == \"adamw\" and
    .clip == null and .schedule == \"constant\" and (has(\"decay_steps\") | not) and .mask == \"all\" and
    .objectives == {\"learn\": 1} and .lr == 0.01 and .batch == 6 and .steps == 80" >/dev/null'

# a NaN loss stops with the step named, keeps the checkpoint, writes no output
expect_fail train_nan_names_step 1 'step 2: loss is NaN.*last good checkpoint: nan\.st\.ckpt\.mpk\.zst \(step 1\)' \
    mu-train --model tiny --objective learn --train facts.mpk.zst --steps 5 --lr 1e30 --out nan.st --checkpoint-every 1 -q
t train_nan_no_output bash -c '[ ! -e nan.st ] && [ -e nan.st.ckpt.mpk.zst ]'

# hostile inputs: one line naming the file, exit 1
expect_fail train_wrong_kind 1 'learn.log: header: expected kind tokens, got log' \
    mu-train --model tiny --objective learn --train learn.log --steps 1 --out x.st
head -c 300 facts.mpk.zst > trunc.mpk.zst
expect_fail train_truncated 1 'trunc\.mpk\.zst' mu-train --model tiny --objective learn --train trunc.mpk.zst --steps 1 --out x.st
expect_fail train_missing_retain 1 'need --retain' mu-train --model tiny --objective graddiff --forget facts.mpk.zst --out x.st
expect_fail train_bad_mask 1 'layers 7: out of range' mu-train --model tiny --objective learn --train facts.mpk.zst --mask mlp:7 --out x.st
expect_fail train_bad_keep_best 1 "no --eval set named 'nope'" mu-train --model tiny --objective learn --train facts.mpk.zst --eval facts.mpk.zst --keep-best nope.acc --out x.st
t train_no_partial_outputs bash -c '! ls x.st* 2>/dev/null | grep -q .'

# the real pretrained model (stories260K, SentencePiece-style tokenizer): memorize 8 Sports
# Facts, then unlearn them with NPO in MLPs 2-4 while retain-ce keeps 8 others; DPO toward
# "I don't know" (--dpo-alt, tokenized by the model's tokenizer) with general-lm on text:
# at step 1 the model is its own reference, so dpo = -(2/beta) log sigmoid(0) = 4 log 2
S="$SHARED_DATA/models/stories260K"
if [ ! -d "$S" ] || [ ! -f "$SHARED_DATA/sports/sports.csv" ]; then
    skip train_stories260k "no ../shared/data (stories260K, sports)"
else
    # rows start with their index; the quoted prompt column spans lines
    rows() { grep -E '^[0-9]+,' "$SHARED_DATA/sports/sports.csv" | sed -n "$1" |
             awk -F, '{print "{\"athlete\":\"" $2 "\",\"sport\":\"" $3 "\"}"}'; }
    rows 1,8p > sf.jsonl
    rows 9,16p > sr.jsonl
    for x in sf sr; do
        mu-tokenize --model "$S" --prompt 'Fact: {athlete} plays the sport of' --target ' {sport}' $x.jsonl > $x.mpk.zst
    done
    printf 'Once upon a time there was a little girl. She liked to play in the park with her dog.\n' > text.txt
    mu-tokenize --model "$S" --raw text.txt > text.mpk.zst
    prob() { mu-dump "$1" | grep '"eval"' | tail -1 | sed 's/.*"'"$2"'":{[^}]*"prob":\([^,}]*\).*/\1/'; }
    t train_stories260k_learn bash -c "
      mu-train --model '$S' --objective learn --train sf.mpk.zst --steps 60 --batch 8 --lr 5e-3 \
        --eval sf.mpk.zst --out s_learn.st --log s_learn.log -q &&
      mu-dump s_learn.log | grep '\"eval\"' | tail -1 | grep -q '\"sf\":{[^}]*\"acc\":1,'"
    t train_stories260k_npo_masked bash -c "
      mu-train --model '$S' --delta s_learn.st --objective npo=1,retain-ce=1 --forget sf.mpk.zst \
        --retain sr.mpk.zst --mask mlp:2-4 --steps 30 --batch 8 --lr 2e-3 --eval sf.mpk.zst \
        --eval sr.mpk.zst --out s_npo.st --sparse --log s_npo.log -q"
    # forget: answer probability from ~1 to < 1e-3; retain: its probability does not fall
    p_forget=$(prob s_npo.log sf); p_retain=$(prob s_npo.log sr)
    p_retain0=$(mu-dump s_npo.log | grep '"eval"' | head -1 | sed 's/.*"sr":{[^}]*"prob":\([^,}]*\).*/\1/')
    t train_stories260k_forgets_keeps awk -v p="$p_forget" -v r="$p_retain" -v r0="$p_retain0" \
        'BEGIN { if (p + 0 < 1e-3 && r + 0 >= r0 + 0) exit 0; print "forget prob " p ", retain prob " r0 " -> " r; exit 1 }'
    # weight masking (--weight-mask): the mask unlearns the learned facts as weight training
    # does; a stronger penalty changes fewer weights; the sparse delta holds exactly the
    # changed weights (mu-dump --stats sums them), as its record says
    wm_changed() { mu-dump --model "$S" --delta s_learn.st --delta "$1" --stats | sed -n '2,$p' |
                   grep -o '"delta_elems":\[[0-9]*,[0-9]*\]' | awk -F'[][,]' '{s += $3} END {print s + 0}'; }
    wm_record() { mu-dump --model "$S" --delta s_learn.st --delta "$1" | head -1 |
                  sed -n 's/.*"weight_mask_result":{[^}]*"masked":\([0-9]*\).*/\1/p'; }
    for lam in 5e-6 5e-5; do
        mu-train --model "$S" --delta s_learn.st --objective log1mp=1,retain-ce=1 --forget sf.mpk.zst \
          --retain sr.mpk.zst --mask mlp:2-4 --weight-mask $lam --steps 30 --batch 8 --lr 0.05 \
          --eval sf.mpk.zst --eval sr.mpk.zst --out s_wm$lam.st --sparse --log s_wm$lam.log 2> s_wm$lam.err
    done
    t train_stories260k_weight_mask_forgets awk -v p="$(prob s_wm5e-6.log sf)" -v r="$(prob s_wm5e-6.log sr)" \
        'BEGIN { if (p + 0 < 1e-3 && r + 0 > 0.3) exit 0; print "forget prob " p ", retain prob " r; exit 1 }'
    n_half=$(wm_changed s_wm5e-6.st); n_five=$(wm_changed s_wm5e-5.st)
    t train_stories260k_weight_mask_delta_is_the_record bash -c "
      [ '$n_half' = '$(wm_record s_wm5e-6.st)' ] && [ '$n_five' = '$(wm_record s_wm5e-5.st)' ] &&
      [ '$n_five' -gt 1000 ] && [ '$n_five' -lt '$n_half' ] && [ '$n_half' -lt 99072 ] &&
      grep -q 'weight mask: $n_half of 99072 weights changed' s_wm5e-6.err" ||
      echo "    (changed: $n_half at 5e-6, $n_five at 5e-5)"
    # the per-step loss includes the penalty at the mask the step's forward used: 0 at step
    # 1 (m = 1), at step 2 the penalty a 1-step run's delta records (to its JSON's 15
    # digits); loss = terms + penalty
    for k in 1 2; do
        mu-train --model "$S" --delta s_learn.st --objective log1mp=1,retain-ce=0.5 --forget sf.mpk.zst \
          --retain sr.mpk.zst --mask mlp:2-4 --weight-mask 5e-4 --steps $k --batch 8 --lr 0.05 \
          --out s_wmstep$k.st --log s_wmstep$k.log -q
    done
    pen1=$(mu-dump --model "$S" --delta s_learn.st --delta s_wmstep1.st | head -1 |
           jq -r 'first(.. | objects | select(has("weight_mask_result"))) | .weight_mask_result.penalty')
    t train_stories260k_weight_mask_log_penalty bash -c "
      mu-dump s_wmstep2.log | jq -e -s --argjson p1 '$pen1' '[.[] | select(.step and .loss)] |
        length == 2 and .[0].weight_mask_penalty == 0 and ((.[1].weight_mask_penalty - \$p1) | . * . < 1e-24) and \$p1 > 0 and
        all(.[]; (.loss - .terms.log1mp - 0.5 * .terms[\"retain-ce\"] - .weight_mask_penalty) as \$d |
          \$d * \$d < 1e-18 * (1 + .loss * .loss))' >/dev/null"
    t train_stories260k_dpo_alt_general bash -c "
      mu-train --model '$S' --delta s_learn.st --objective dpo=1,general-lm=0.5 --dpo-alt ' I don'\''t know.' \
        --dpo-beta 0.5 --forget sf.mpk.zst --general text.mpk.zst --max-len 16 --steps 5 --batch 4 --lr 1e-3 --out s_dpo.st \
        --log s_dpo.log -q &&
      d=\$(mu-dump s_dpo.log | sed -n '2s/.*\"terms\":{\"dpo\":\([^,]*\),.*/\1/p') &&
      awk -v d=\"\$d\" 'BEGIN { x = d - 4 * log(2); exit !(x < 1e-3 && x > -1e-3) }'"
fi
