#!/usr/bin/env bash
# t_archs.sh — every model tool on the architectures beyond Llama's layout, from mu-init
# --arch: Gemma (GeGLU, RMSNorm by 1 + w, scaled embeddings, tied head), Gemma-2 (norms on
# both sides of the blocks, soft-caps, sliding windows), Gemma-3 text (q/k norms per head,
# a rotary base of the sliding layers' own), OLMo-2 (norms on the blocks' outputs, q/k
# norms), Qwen3 (q/k norms per head) and GPT-NeoX (LayerNorms with biases, fused q/k/v,
# partial rotary, parallel residual, plain GELU MLP, biases everywhere) and GPT-2 (learned
# positions, Conv1D weights stored [in, out], fused c_attn in blocks) and Phi (GPT-NeoX's
# LayerNorms and biases with one input norm for both parallel branches, separate q/k/v, a bias
# on lm_head) and Phi-3 (Llama's layout with qkv_proj and gate_up_proj fused). Per architecture: the config mu-init writes, choice
# scores, masked training whose dense and sparse deltas and exported model directory give
# the same outputs bit for bit (Gemma's norms are stored as w, held as 1 + w), an attribution and path
# patching over the MLPs. The numerics are checked against transformers in t_model.c.
G3=$(cd "$(dirname "$0")/../golden/parity_gemma3mm" && pwd)   # a multimodal Gemma-3 (below)
. "$(dirname "$0")/lib.sh"
cd "$T"
printf '{"name": "Ada", "sport": 0}\n{"name": "Bo", "sport": 1}\n{"name": "Cy", "sport": 2}\n{"name": "Di", "sport": 0}\n' >facts.jsonl

# same_choices A B: the choice log-probabilities of two outputs streams are identical
same_choices() { cmp <(mu-dump "$1" | tail -n +2 | jq -c .choice_logprobs) <(mu-dump "$2" | tail -n +2 | jq -c .choice_logprobs); }
export -f same_choices

for arch in gemma gemma2 gemma3_text olmo2 qwen3 gpt_neox gpt2 phi phi3; do
  M=m_$arch
  heads='--heads 4 --kv-heads 2 --head-dim 16' mlp_tensors=3
  [ $arch = gpt_neox ] && heads='--heads 2' mlp_tensors=4    # head dim 32/2; up, down and their biases
  [ $arch = gpt2 ] && heads='--heads 4 --max-pos 64' mlp_tensors=4
  [ $arch = phi ] && heads='--heads 4 --kv-heads 2' mlp_tensors=4      # fc1, fc2 and their biases
  [ $arch = phi3 ] && mlp_tensors=2                                       # gate_up_proj, down_proj
  if ! mu-init -q --arch $arch --out $M --layers 2 --d-model 32 $heads \
       --d-ff 64 --vocab 259 --std 0.2 --seed 5; then
    fail archs_${arch}_init "mu-init --arch $arch failed"; continue
  fi
  case $arch in
    gemma) want='.model_type == "gemma" and .architectures == ["GemmaForCausalLM"] and .hidden_act == "gelu_pytorch_tanh" and .tie_word_embeddings == true' ;;
    gemma2) want='.model_type == "gemma2" and .architectures == ["Gemma2ForCausalLM"] and .hidden_activation == "gelu_pytorch_tanh" and .tie_word_embeddings == true and .attn_logit_softcapping == 50 and .final_logit_softcapping == 30 and .sliding_window == 4096 and .query_pre_attn_scalar == 16' ;;
    gemma3_text) want='.model_type == "gemma3_text" and .architectures == ["Gemma3ForCausalLM"] and .sliding_window_pattern == 6 and .rope_local_base_freq == 10000 and .attn_logit_softcapping == null' ;;
    qwen3) want='.model_type == "qwen3" and .architectures == ["Qwen3ForCausalLM"] and .head_dim == 16 and .hidden_act == "silu"' ;;
    olmo2) want='.model_type == "olmo2" and .architectures == ["Olmo2ForCausalLM"] and .hidden_act == "silu"' ;;
    gpt2) want='.model_type == "gpt2" and .architectures == ["GPT2LMHeadModel"] and .activation_function == "gelu_new" and .n_positions == 64 and .n_embd == 32 and .n_inner == 64 and .tie_word_embeddings == true' ;;
    phi3) want='.model_type == "phi3" and .architectures == ["Phi3ForCausalLM"] and .hidden_act == "silu" and .num_key_value_heads == 2 and .head_dim == 16 and .partial_rotary_factor == 1 and .tie_word_embeddings == false' ;;
    phi) want='.model_type == "phi" and .architectures == ["PhiForCausalLM"] and .hidden_act == "gelu_new" and .partial_rotary_factor == 0.5 and .num_key_value_heads == 2 and .qk_layernorm == false and .tie_word_embeddings == false' ;;
    gpt_neox) want='.model_type == "gpt_neox" and .architectures == ["GPTNeoXForCausalLM"] and .hidden_act == "gelu" and .rotary_pct == 0.25 and .use_parallel_residual == true and .attention_bias == true and .tie_word_embeddings == false' ;;
  esac
  t archs_${arch}_config jq -e "$want" $M/config.json
  # the architecture's own tensors: OLMo-2's output and q/k norms, none on the inputs
  if [ $arch = olmo2 ]; then
    t archs_olmo2_tensors bash -c "head -c 20000 $M/model.safetensors | grep -aq post_feedforward_layernorm &&
      head -c 20000 $M/model.safetensors | grep -aq self_attn.q_norm && ! head -c 20000 $M/model.safetensors | grep -aq input_layernorm"
  fi
  if [ $arch = gpt_neox ]; then
    t archs_gpt_neox_tensors bash -c "head -c 20000 $M/model.safetensors | grep -aq attention.query_key_value.bias &&
      head -c 20000 $M/model.safetensors | grep -aq final_layer_norm.bias && head -c 20000 $M/model.safetensors | grep -aq embed_out"
  fi
  if [ $arch = phi ]; then       # one input norm per layer, a bias on lm_head
    t archs_phi_tensors bash -c "head -c 20000 $M/model.safetensors | grep -aq lm_head.bias &&
      head -c 20000 $M/model.safetensors | grep -aq self_attn.dense.bias && ! head -c 20000 $M/model.safetensors | grep -aq post_attention_layernorm"
  fi
  if [ $arch = phi3 ]; then      # q/k/v and gate/up fused: qkv_proj [16 x 4 + 2 x 16 x 2, 32]
    t archs_phi3_tensors bash -c "mu-dump --model $M | jq -e -s 'map(select(.name == \"model.layers.1.self_attn.qkv_proj.weight\"))[0].shape == [128, 32]' >/dev/null &&
      head -c 20000 $M/model.safetensors | grep -aq mlp.gate_up_proj && ! head -c 20000 $M/model.safetensors | grep -aq q_proj"
  fi
  if [ $arch = gpt2 ]; then      # Conv1D weights as GPT-2 stores them: c_fc [in = 32, out = 64]
    t archs_gpt2_tensors bash -c "mu-dump --model $M | jq -e -s 'map(select(.name == \"transformer.h.1.mlp.c_fc.weight\"))[0].shape == [32, 64]' >/dev/null &&
      head -c 20000 $M/model.safetensors | grep -aq transformer.wpe.weight"
  fi
  if [ $arch = gemma2 ]; then
    t archs_gemma2_tensors bash -c "head -c 20000 $M/model.safetensors | grep -aq pre_feedforward_layernorm &&
      head -c 20000 $M/model.safetensors | grep -aq post_attention_layernorm && head -c 20000 $M/model.safetensors | grep -aq input_layernorm"
  fi
  mu-tokenize -q --model $M --prompt '{name} plays' --choices ' golf| chess| polo' --answer-field sport \
    --out f_$arch.tok facts.jsonl
  t archs_${arch}_forward bash -c "mu-forward -q --model $M --emit choices --out base_$arch.out f_$arch.tok &&
    mu-dump base_$arch.out | tail -n +2 | jq -s -e 'length == 4 and all(.[]; .choice_logprobs | length == 3)' >/dev/null"
  t archs_${arch}_train mu-train -q --model $M --objective learn --train f_$arch.tok --mask 'norms:1+mlp:0' \
    --steps 5 --batch 4 --lr 1e-2 --seed 1 --out d_$arch.st --out-model md_$arch
  mu-train -q --model $M --objective learn --train f_$arch.tok --mask 'norms:1+mlp:0' \
    --steps 5 --batch 4 --lr 1e-2 --seed 1 --sparse --out s_$arch.st
  mu-forward -q --model $M --delta d_$arch.st --emit choices --out delta_$arch.out f_$arch.tok
  mu-forward -q --model $M --delta s_$arch.st --emit choices --out sparse_$arch.out f_$arch.tok
  mu-forward -q --model md_$arch --emit choices --out dir_$arch.out f_$arch.tok
  t archs_${arch}_delta_equals_dir same_choices delta_$arch.out dir_$arch.out
  t archs_${arch}_sparse_equals_dense same_choices delta_$arch.out sparse_$arch.out
  t archs_${arch}_training_moved bash -c "! same_choices base_$arch.out delta_$arch.out"
  t archs_${arch}_dir_config jq -e "$want" md_$arch/config.json
  # an attribution over value vectors and path patching over the MLP blocks
  t archs_${arch}_attrib_act bash -c "mu-attrib -q --model $M --forget f_$arch.tok --method act --out act_$arch.scores &&
    mu-maskgen -q --scores act_$arch.scores --fraction 0.01 --out act_$arch.mask"
  if [ $arch = phi3 ]; then      # act over the fused gate_up_proj: gate row j and up row d_ff + j score neuron j
    t archs_phi3_attrib_act_gate_up bash -c "mu-attrib -q --model $M --forget f_$arch.tok --method act \
        --tensors mlp.gate_up:all --out actgu.scores &&
      mu-dump --full actgu.scores | tail -n +2 | jq -r 'select(.name | test(\"layers[.]1[.]mlp\")) | .score.data[]' > gu.txt &&
      mu-dump --full act_$arch.scores | tail -n +2 | jq -r 'select(.name | test(\"layers[.]1[.]mlp\")) | .score.data[]' > dn.txt &&
      n=\$(wc -l < dn.txt) && [ \$n -gt 8 ] && [ \$(wc -l < gu.txt) = \$((2 * n)) ] &&
      cat dn.txt dn.txt | cmp - gu.txt && awk '\$1 > 0 { p++ } END { exit p < 8 }' dn.txt"
  fi
  t archs_${arch}_path_patch bash -c "mu-attrib -q --model $M --forget f_$arch.tok --subject name --method path-patch \
    --tensors mlp:all --samples 2 --out pp_$arch.scores && mu-dump pp_$arch.scores | tail -n +2 | jq -s -e 'length == 2 * $mlp_tensors' >/dev/null"
done

# A multimodal Gemma-3 checkpoint (tests/golden/parity_gemma3mm: text_config, tensors named
# language_model.*), given a byte tokenizer: trained, its delta and its exported model
# directory (a text-only gemma3_text) give the same outputs.
mkdir -p mm && cp "$G3/config.json" "$G3/model.safetensors" mm/ && cp m_gemma/tokenizer*.json mm/
t archs_gemma3mm_train_export bash -c "mu-tokenize -q --model mm --prompt '{name} plays' --choices ' golf| chess| polo' \
    --answer-field sport --out f_mm.tok facts.jsonl &&
  mu-train -q --model mm --objective learn --train f_mm.tok --mask 'norms:1+mlp:0' --steps 3 --batch 4 --lr 1e-2 \
    --seed 1 --out d_mm.st --out-model md_mm &&
  jq -e '.model_type == \"gemma3_text\" and .architectures == [\"Gemma3ForCausalLM\"]' md_mm/config.json >/dev/null &&
  mu-forward -q --model mm --delta d_mm.st --emit choices --out delta_mm.out f_mm.tok &&
  mu-forward -q --model md_mm --emit choices --out dir_mm.out f_mm.tok && same_choices delta_mm.out dir_mm.out"
