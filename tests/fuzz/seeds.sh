#!/usr/bin/env bash
# seeds.sh TARGET — the seed inputs of fuzz target TARGET (tests/fuzz/TARGET.c), one path
# per line: real files of the kind it reads, from tests/golden and ../shared/data (where
# present), then the inputs that once failed (tests/fuzz/regress/TARGET/). Used by
# `make fuzz` (the starting corpus) and `make check` (replayed with tests/fuzz/replay.c).
set -u
cd "$(dirname "$0")/../.." || exit 1
shared=${MU_SHARED:-../shared}/data
case "${1:-}" in
  fuzz_safetensors) ls tests/golden/*.safetensors tests/fuzz/seeds/fuzz_safetensors/* ;;
  fuzz_gguf)        ls tests/golden/tiny_llama.gguf tests/golden/kquants*.gguf tests/golden/iquants.gguf tests/golden/gguf_meta/*.gguf tests/golden/tokenizer/*.gguf \
                       tests/golden/parity_*/model.gguf ;;
  fuzz_tokenizer)   ls tests/golden/tokenizer/{gemma,gpt2,llama3,qwen2,smollm,spm}.json
                    ls tests/golden/tokenizer/components/*.json | grep -v /expected.json
                    ls "$shared"/models/stories260K/tokenizer.json 2>/dev/null ;;
  fuzz_dataset)     ls "$shared"/tofu/forget01.jsonl "$shared"/tofu/real_authors.jsonl \
                       "$shared"/sports/sports.csv 2>/dev/null ;;
  fuzz_stream)      ls tests/golden/*/*.mpk.zst ;;
  fuzz_records)     ls tests/fuzz/seeds/fuzz_records/* ;;
  fuzz_config)      ls tests/golden/*/config.json ;;
  fuzz_delta)       ls tests/fuzz/seeds/fuzz_delta/* tests/golden/parity/peft_adapter/adapter_model.safetensors \
                       tests/golden/parity/peft_embed_adapter/adapter_model.safetensors ;;
  *) echo "seeds.sh: unknown target '${1:-}'" >&2; exit 2 ;;
esac
ls -d tests/fuzz/regress/"$1"/* 2>/dev/null
exit 0
