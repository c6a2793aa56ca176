#!/usr/bin/env bash
# mu-init: seeded model directories (see man/mu-init.1).
. "$(dirname "$0")/lib.sh"

t init_help bash -c 'mu-init --help | grep -q "^Usage: mu-init"'
t init_version bash -c 'mu-init --version | grep -q "^mu-init (mu) "'

small=(--layers 2 --d-model 64 --heads 4 --kv-heads 2 --d-ff 128 --vocab 512)
t init_writes_dir mu-init --out "$T/a" "${small[@]}" --seed 3
t init_files bash -c "ls '$T/a' | tr '\n' ' ' | grep -qx 'config.json model.safetensors tokenizer.json tokenizer_config.json '"
mu-init --out "$T/b" "${small[@]}" --seed 3 2>/dev/null
t init_same_seed_same_bytes bash -c "for f in config.json model.safetensors tokenizer.json tokenizer_config.json; do cmp '$T/a/'\$f '$T/b/'\$f || exit 1; done"
mu-init --out "$T/c" "${small[@]}" --seed 4 2>/dev/null
t init_other_seed_other_weights bash -c "! cmp -s '$T/a/model.safetensors' '$T/c/model.safetensors' && cmp -s '$T/a/config.json' '$T/c/config.json'"
t init_config_keys bash -c "grep -q '\"architectures\": \\[' '$T/a/config.json' && grep -q '\"LlamaForCausalLM\"' '$T/a/config.json' && grep -q '\"num_key_value_heads\": 2' '$T/a/config.json' && grep -q '\"bos_token_id\": 256' '$T/a/config.json'"
# size: params = 2*512*64 (embed, lm_head) + 2 layers * (q 64*64, k,v 32*64, o 64*64, 3*128*64, 2 norms 64)
# + final norm 64 = 139584 f32 = 558336 bytes of data, plus 8 + a JSON header under 8 KiB
t init_size bash -c "s=\$(stat -c %s '$T/a/model.safetensors'); test \$s -gt 558344 && test \$s -lt \$((558344 + 8192))"
mu-init --out "$T/bf" "${small[@]}" --dtype bf16 --tied 2>/dev/null
t init_bf16_tied bash -c "head -c 4000 '$T/bf/model.safetensors' | grep -aq '\"BF16\"' && ! head -c 4000 '$T/bf/model.safetensors' | grep -aq lm_head && grep -q '\"torch_dtype\": \"bfloat16\"' '$T/bf/config.json' && grep -q '\"tie_word_embeddings\": true' '$T/bf/config.json'"
mu-init --out "$T/q" "${small[@]}" --qkv-bias 2>/dev/null
t init_qkv_bias_is_qwen2 bash -c "grep -q Qwen2ForCausalLM '$T/q/config.json' && head -c 8000 '$T/q/model.safetensors' | grep -aq 'q_proj.bias'"
# replacing an existing model directory is atomic (swap), and leaves no temp dirs
t init_replaces_dir mu-init --out "$T/a" "${small[@]}" --seed 4
t init_replaced_content cmp "$T/a/model.safetensors" "$T/c/model.safetensors"
t init_no_temp_left bash -c "! ls '$T' | grep -q tmp"

expect_fail init_needs_out 2 'out DIR is required' mu-init "${small[@]}"
expect_fail init_bad_arch 2 "arch: 'bloom'" mu-init --out "$T/x" --arch bloom
expect_fail init_arch_qkv_bias 2 'qkv-bias goes with --arch llama' mu-init --out "$T/x" --arch gemma --qkv-bias
expect_fail init_small_vocab 2 'vocab' mu-init --out "$T/x" --vocab 100
expect_fail init_bad_dtype 2 'dtype' mu-init --out "$T/x" --dtype f8
expect_fail init_heads_not_divisor 2 'multiple of --heads' mu-init --out "$T/x" --d-model 64 --heads 3
expect_fail init_kv_not_divisor 2 'kv heads' mu-init --out "$T/x" --heads 4 --kv-heads 3
expect_fail init_unknown_option 2 'unknown option' mu-init --out "$T/x" --frobnicate
# the families' head layouts: GPT-2's Conv1D heads span d_model, GPT-NeoX rotates a quarter
# and Phi half of each head (an even number of dims)
expect_fail init_gpt2_head_dim 2 '--arch gpt2 needs --head-dim = d-model/heads \(4\)$' \
  mu-init --out "$T/x" --arch gpt2 --d-model 32 --heads 4 --head-dim 4
expect_fail init_neox_head_dim 2 '--arch gpt_neox needs --head-dim = d-model/heads, a multiple of 8 \(4\)$' \
  mu-init --out "$T/x" --arch gpt_neox --d-model 16 --heads 4
expect_fail init_phi_head_dim 2 '--arch phi needs --head-dim = d-model/heads, a multiple of 4 \(2\)$' \
  mu-init --out "$T/x" --arch phi --d-model 16 --heads 8
expect_fail init_bad_tokenizer 2 "--tokenizer: 'words' unknown \(bytes\)$" mu-init --out "$T/x" --tokenizer words
expect_fail init_bad_number 2 'layers' mu-init --out "$T/x" --layers 2x
expect_fail init_no_parent 1 "$T/nodir/m" mu-init --out "$T/nodir/m"
mkdir -p "$T/hasdir/sub"
expect_fail init_refuses_nonmodel_dir 1 'not a model directory' mu-init --out "$T/hasdir"
t init_failed_left_nothing bash -c "test -d '$T/hasdir/sub' && ! ls '$T' | grep -q tmp"
echo data > "$T/afile"
expect_fail init_refuses_file 1 'afile' mu-init --out "$T/afile"
t init_file_untouched grep -qx data "$T/afile"
