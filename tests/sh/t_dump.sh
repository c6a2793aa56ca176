#!/usr/bin/env bash
# t_dump.sh — mu-dump on a stream written by Python (tests/golden/stream/python.mpk.zst,
# see tests/gen/gen_stream_golden.py), on hand-made streams (printf + the zstd CLI), and
# on broken input.
. "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=$ROOT/tests/golden/stream/python.mpk.zst

if ! command -v mu-dump >/dev/null; then skip dump "mu-dump not built"; exit 0; fi

# expected lines, checked against tests/golden/stream/python.json (values from numpy/torch)
want_f32='{"name":"f32","t":{"dtype":"f32","shape":[2,3],"first":[405.60675,80.07835,-1956.7013,-1093.073,-1485.8046,417.89398]}}'
want_u64='{"name":"u64","t":{"dtype":"u64","shape":[2],"first":[0,18446744073709551615]}}'
want_plain='{"text":"héllo \"wörld\"\n☃","ints":[-1,0,1099511627776,-1099511627776],"x":0.25,"nested":{"a":[1,[2,[3]]],"b":null,"c":true}}'

t dump_header_first bash -c "mu-dump '$PY' | head -1 | grep -q '^{\"format\":\"mu-stream\",\"version\":\[1,0\],\"kind\":\"tokens\"'"
t dump_all_lines bash -c "[ \$(mu-dump '$PY' | wc -l) = 15 ]"
t dump_f32_values bash -c "mu-dump -H --head 1 '$PY' | grep -qxF '$want_f32'"
t dump_u64_extremes bash -c "mu-dump '$PY' | grep -qxF '$want_u64'"
t dump_strings_escaped bash -c "mu-dump '$PY' | tail -1 | grep -qxF '$(printf '%s' "$want_plain" | sed "s/'/'\\\\''/g")'"
t dump_head bash -c "[ \$(mu-dump --head 2 '$PY' | wc -l) = 3 ] && [ \$(mu-dump --head 0 '$PY' | wc -l) = 1 ]"
t dump_no_header bash -c "[ \$(mu-dump --no-header --head 2 '$PY' | wc -l) = 2 ]"
t dump_stdin bash -c "mu-dump - < '$PY' | cmp -s - <(mu-dump '$PY')"
t dump_concatenation bash -c "[ \$(mu-dump '$PY' '$PY' | wc -l) = 29 ] && [ \$(cat '$PY' '$PY' | mu-dump | wc -l) = 29 ]"
t dump_kind_ok mu-dump --kind tokens --head 0 "$PY"
t dump_out_file bash -c "mu-dump --out '$T/o.jsonl' '$PY' && cmp -s '$T/o.jsonl' <(mu-dump '$PY') && ! ls '$T'/o.jsonl.tmp.* 2>/dev/null"

# --full: more than 8 values
printf '\x83\xa6format\xa9mu-stream\xa7version\x92\x01\x00\xa4kind\xa6scores' > "$T/h.bin"
{ cat "$T/h.bin"; printf '\x81\xa1t\x83\xa5dtype\xa2u8\xa5shape\x91\x0a\xa4data\xc4\x0a\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09'; } | zstd -q -c > "$T/ten.mpk.zst"
t dump_summary_8 bash -c "mu-dump -H '$T/ten.mpk.zst' | grep -qxF '{\"t\":{\"dtype\":\"u8\",\"shape\":[10],\"first\":[0,1,2,3,4,5,6,7]}}'"
t dump_full bash -c "mu-dump -H --full '$T/ten.mpk.zst' | grep -qxF '{\"t\":{\"dtype\":\"u8\",\"shape\":[10],\"data\":[0,1,2,3,4,5,6,7,8,9]}}'"

# bins, invalid UTF-8, non-string keys, NaN: always valid JSON
{ cat "$T/h.bin"; printf '\x84\xa1b\xc4\x03abc\xa1s\xa3a\xffz\x07\xc0\xa1f\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00'; } | zstd -q -c > "$T/odd.mpk.zst"
t dump_odd_values bash -c "mu-dump -H '$T/odd.mpk.zst' | grep -qxF '{\"b\":{\"bin_bytes\":3,\"base64\":\"YWJj\"},\"s\":\"a\\u00ffz\",\"7\":null,\"f\":\"nan\"}'"
if command -v jq >/dev/null; then
  t dump_valid_json bash -c "mu-dump '$T/odd.mpk.zst' '$T/odd.mpk.zst' | jq -e . >/dev/null && mu-dump '$PY' | jq -e . >/dev/null"
elif command -v python3 >/dev/null; then
  t dump_valid_json bash -c "mu-dump '$T/odd.mpk.zst' | python3 -c 'import json,sys; [json.loads(l) for l in sys.stdin]'"
else
  skip dump_valid_json "neither jq nor python3"
fi

# --model: the checkpoint as mu reads it, against its own files (config.json, the safetensors
# header read with od + jq) and against what make_kquants.py wrote into the GGUF
S=$SHARED_DATA/models/stories260K
KQ=$ROOT/tests/golden/kquants_llama.gguf
if ! command -v jq >/dev/null; then
  skip dump_model "jq not installed"
elif [ ! -f "$S/model.safetensors" ]; then
  skip dump_model "$S absent"
else
  mu-dump --model "$S" > "$T/m.jsonl"
  keys='["hidden_size","intermediate_size","num_hidden_layers","num_attention_heads","num_key_value_heads","head_dim","vocab_size","max_position_embeddings","rms_norm_eps","rope_theta","tie_word_embeddings","bos_token_id","eos_token_id"]'
  t dump_model_config_is_config_json bash -c "
    cmp <(head -1 '$T/m.jsonl' | jq -c --argjson k '$keys' '[.config[\$k[]]]') <(jq -c --argjson k '$keys' '[.[\$k[]]]' '$S/config.json')"
  hlen=$(od -An -tu8 -N8 "$S/model.safetensors" | tr -d ' ')
  tail -c +9 "$S/model.safetensors" | head -c "$hlen" |
    jq -c 'del(.__metadata__) | to_entries | map([.key, .value.shape, (.value.dtype | ascii_downcase)]) | sort' > "$T/st.json"
  t dump_model_tensors_are_the_files bash -c "
    cmp <(tail -n +2 '$T/m.jsonl' | jq -s -c 'map([.name, .shape, .stored]) | sort') '$T/st.json' &&
    head -1 '$T/m.jsonl' | jq -e --argjson n \"\$(jq length '$T/st.json')\" \\
      --argjson e \"\$(jq '[.[][1] | reduce .[] as \$d (1; . * \$d)] | add' '$T/st.json')\" \\
      '.params == \$n and .numel == \$e and .format == \"safetensors\" and .deltas == [] and (.digest | test(\"^[0-9a-f]{32}\$\"))' >/dev/null"
  t dump_model_roles bash -c "
    [ \"\$(tail -n +2 '$T/m.jsonl' | jq -r 'select(.layer == 4) | [.role, .block] | join(\":\")' | tr '\n' ' ')\" = \\
      'attn_norm:attention q:attention k:attention v:attention o:attention mlp_norm:mlp gate:mlp up:mlp down:mlp ' ]"
  t dump_model_head_no_header bash -c "
    [ \"\$(mu-dump --model '$S' -H -n 2 | jq -r .name | tr '\n' ' ')\" = 'model.embed_tokens.weight model.layers.0.input_layernorm.weight ' ]"
  t dump_model_gguf_types bash -c "
    [ \"\$(mu-dump --model '$KQ' | tail -n +2 | jq -r .stored | tr '\n' ' ')\" = 'q4_k f32 q4_k q2_k q6_k iq4_xs f32 q5_k q3_k q6_k f32 q4_k ' ] &&
    mu-dump --model '$KQ' | head -1 | jq -e '.format == \"gguf\" and .config.hidden_size == 256 and .config.num_key_value_heads == 2' >/dev/null"
  # --stats: the RMS of a tensor's values, against od + awk over the file's bytes
  want=$(st_values "$S/model.safetensors" model.layers.3.post_attention_layernorm.weight |
         awk '{ s += $1 * $1; n++ } END { print sqrt(s / n) }')
  got=$(mu-dump --model "$S" --stats | jq -r 'select(.name == "model.layers.3.post_attention_layernorm.weight") | .rms')
  t dump_model_stats_rms awk -v w="$want" -v g="$got" 'BEGIN { d = w - g; if (w > 0 && d * d < 1e-12 * w * w) exit 0; print "rms " g ", od+awk " w; exit 1 }'
  t dump_model_stats_every_tensor bash -c "mu-dump --model '$S' --stats -H | jq -s -e 'length == 47 and all(.[]; .rms > 0 and (has(\"delta_l2\") | not))' >/dev/null"
  t dump_model_out_file bash -c "mu-dump --model '$S' -o '$T/m2.jsonl' && cmp -s '$T/m.jsonl' '$T/m2.jsonl'"
fi
expect_fail dump_model_missing 1 "nope: " mu-dump --model "$T/nope"
expect_fail dump_model_gguf_truncated 1 "trunc.gguf: tensor token_embd.weight: data .* past the end of the file" bash -c "head -c 3000 '$KQ' > '$T/trunc.gguf' && mu-dump --model '$T/trunc.gguf'"
expect_fail dump_model_with_file 2 "takes no FILE" mu-dump --model "$KQ" "$PY"
expect_fail dump_delta_without_model 2 "--delta, --scaled-delta and --stats need --model" mu-dump --delta x.st
# a PEFT adapter directory as --delta (tests/gen/gen_lora_parity.py): its config is the
# delta's metadata, and the 8 Conv1D matrices it adapts (fan_in_fan_out) change whole
G2=$ROOT/tests/golden/parity_gpt2
t dump_peft_adapter_delta bash -c "mu-dump --model '$G2' --delta '$G2/peft_adapter' --stats > '$T/peft.jsonl' &&
  head -1 '$T/peft.jsonl' | jq -e '.delta_metadata[0] | .format == \"peft\" and .adapter_config.r == 3 and
    .adapter_config.fan_in_fan_out' >/dev/null &&
  tail -n +2 '$T/peft.jsonl' | jq -s -e '[.[] | select(.delta_elems[0] > 0)] as \$a | (\$a | length) == 8 and
    all(\$a[]; .delta_elems[0] == .numel and .delta_rel[0] > 0 and (.name | test(\"c_(attn|proj|fc).weight\$\")))' >/dev/null"
expect_fail dump_peft_adapter_dora 1 "dora/adapter_config.json: use_dora is set" bash -c "
  mkdir -p '$T/dora' && cp '$G2/peft_adapter/adapter_model.safetensors' '$T/dora/' &&
  jq '.use_dora = true' '$G2/peft_adapter/adapter_config.json' > '$T/dora/adapter_config.json' &&
  mu-dump --model '$G2' --delta '$T/dora'"

# errors: one line naming the file, exit 1; usage errors exit 2
expect_fail dump_kind_mismatch 1 "python.mpk.zst: header: expected kind mask, got tokens" mu-dump --kind mask "$PY"
head -c 200 "$PY" > "$T/trunc.mpk.zst"
expect_fail dump_truncated 1 "trunc.mpk.zst: .*truncated" mu-dump "$T/trunc.mpk.zst"
cp "$PY" "$T/flip.mpk.zst"
printf '\x00' | dd of="$T/flip.mpk.zst" bs=1 seek=300 conv=notrunc status=none
expect_fail dump_corrupt_first_frame 1 "flip.mpk.zst: header: corrupt" mu-dump "$T/flip.mpk.zst"
cp "$PY" "$T/flip2.mpk.zst"
printf '\x00' | dd of="$T/flip2.mpk.zst" bs=1 seek=$(( $(stat -c %s "$PY") - 2 )) conv=notrunc status=none
expect_fail dump_corrupt_checksum 1 "flip2.mpk.zst: record 6: corrupt: zstd frame checksum mismatch" mu-dump "$T/flip2.mpk.zst"
t dump_corrupt_no_unverified_records bash -c "[ \$(mu-dump '$T/flip2.mpk.zst' 2>/dev/null | wc -l) = 7 ]"
printf 'not a stream' > "$T/text.txt"
expect_fail dump_not_zstd 1 "text.txt: header: not a mu stream" mu-dump "$T/text.txt"
: > "$T/empty"
expect_fail dump_empty 1 "empty: header: empty file" mu-dump "$T/empty"
expect_fail dump_missing 1 "nope.mpk.zst: cannot open" mu-dump "$T/nope.mpk.zst"
{ cat "$T/h.bin"; printf '\x81\xa1t\x83\xa5dtype\xa3f32\xa5shape\x91\x03\xa4data\xc4\x08\x00\x00\x00\x00\x00\x00\x00\x00'; } | zstd -q -c > "$T/badlen.mpk.zst"
expect_fail dump_tensor_length 1 "badlen.mpk.zst: record 0: t: tensor data is 8 bytes but shape \[3\] of f32 needs 12" mu-dump "$T/badlen.mpk.zst"
printf '\x83\xa6format\xa9mu-stream\xa7version\x92\x02\x00\xa4kind\xa6scores' | zstd -q -c > "$T/v2.mpk.zst"
expect_fail dump_unknown_major 1 "v2.mpk.zst: header: unsupported stream version 2.0" mu-dump "$T/v2.mpk.zst"
cat "$T/h.bin" | zstd -q --long=30 -c > "$T/long.mpk.zst"
expect_fail dump_window_too_large 1 "long.mpk.zst: header: zstd frame needs a window over 128 MiB" mu-dump "$T/long.mpk.zst"
expect_fail dump_mixed_kinds 1 "ten.mpk.zst: header: expected kind tokens, got scores" mu-dump "$PY" "$T/ten.mpk.zst"
expect_fail dump_no_partial_out 1 "badlen.mpk.zst" mu-dump --out "$T/partial.jsonl" "$T/badlen.mpk.zst"
t dump_no_partial_left bash -c "! ls '$T'/partial.jsonl* 2>/dev/null"
expect_fail dump_bad_option 2 "unknown option '--bogus'" mu-dump --bogus
expect_fail dump_bad_head 2 "--head wants a count" mu-dump --head x "$PY"
t dump_help bash -c "mu-dump --help | grep -q '^Usage: mu-dump'"
t dump_version bash -c "mu-dump --version | grep -q '^mu-dump (mu) '"

# streams written by another mu tool (when built): read through a pipe; without the
# end marker (cut after the last frame) the stream is reported as unfinished
if command -v mu-init >/dev/null && command -v mu-tokenize >/dev/null &&
   mu-init --out "$T/tiny" --layers 1 --d-model 16 --heads 2 --d-ff 32 -q >/dev/null 2>&1; then
  printf '{"name":"Ada","sport":"golf"}\n{"name":"Bo","sport":"polo"}\n' > "$T/f.jsonl"
  t dump_tool_stream_via_pipe bash -c "mu-tokenize --model '$T/tiny' --prompt '{name} plays' --target ' {sport}' '$T/f.jsonl' | mu-dump --kind tokens - > '$T/tok.jsonl' && [ \$(wc -l < '$T/tok.jsonl') = 3 ]"
  mu-tokenize --model "$T/tiny" --prompt '{name} plays' --target ' {sport}' --out "$T/tok.mpk.zst" "$T/f.jsonl" 2>/dev/null
  head -c -24 "$T/tok.mpk.zst" > "$T/unsealed.mpk.zst"
  expect_fail dump_missing_end_marker 1 "unsealed.mpk.zst: record 2: truncated: the stream ends without its end marker" mu-dump "$T/unsealed.mpk.zst"
else
  skip dump_tool_streams "mu-init or mu-tokenize not built"
fi
