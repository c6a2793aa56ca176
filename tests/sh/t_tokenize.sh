#!/usr/bin/env bash
# t_tokenize.sh — mu-tokenize end to end: records -> tokens stream -> decode, raw ids,
# stories260K greedy ids, MMLU multiple choice, errors (one line, exit 1), usage (exit 2).
. "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
G=$ROOT/tests/golden/tokenizer
command -v mu-tokenize >/dev/null || { skip tokenize "mu-tokenize not built"; exit 0; }
PY=${MU_PYTHON:-python3}
# span_text STREAM MODEL FIELD: the text of FIELD's token span in the last record
# (via mu-dump --full, no python needed), leading spaces removed.
span_text() { local rec data s e
  rec=$(mu-dump -f -H "$1" | tail -1)
  data=$(grep -o '"prompt":{[^}]*}' <<<"$rec" | sed 's/.*"data":\[\([^]]*\)\].*/\1/')
  read -r s e < <(grep -o "\"$3\":\[[0-9]*,[0-9]*\]" <<<"$rec" | tr -dc '0-9,' | tr ',' ' ')
  cut -d, -f$((s + 1))-"$e" <<<"$data" | tr ',' ' ' | mu-tokenize --model "$2" --decode --ids | sed 's/^ *//'
}
have_py=0; "$PY" -c 'import msgpack, zstandard' 2>/dev/null && have_py=1

# ---- raw mode and decode with the byte-level golden (no shared data needed)
printf 'Hello world' > "$T/hello.txt"
t raw-ids-no-special bash -c "mu-tokenize --model $G/llama3.json --raw --ids $T/hello.txt > $T/hello.ids && [ \"\$(wc -w < $T/hello.ids)\" -ge 2 ]"
t raw-bos-adds-one bash -c "[ \"\$(mu-tokenize --model $G/llama3.json --raw --ids --bos $T/hello.txt | cut -d' ' -f2-)\" = \"\$(cat $T/hello.ids)\" ]"
t decode-ids-roundtrip bash -c "[ \"\$(mu-tokenize --model $G/llama3.json --decode --ids $T/hello.ids)\" = 'Hello world' ]"
t raw-stream-decode bash -c "mu-tokenize --model $G/llama3.json --raw $T/hello.txt -o $T/h.mpk.zst && [ \"\$(mu-tokenize --model $G/llama3.json --decode $T/h.mpk.zst)\" = 'Hello world' ]"

# ---- records: JSONL with a template, spans, meta; decode gives the prompts back
cat > "$T/d.jsonl" <<'EOF'
{"name": "Serena Williams", "sport": "tennis", "extra": 7}
{"name": "Tiger Woods", "sport": "golf", "extra": [1, 2]}
EOF
t records-jsonl mu-tokenize --model $G/llama3.json --prompt 'Fact: {name} plays' --target ' {sport}' "$T/d.jsonl" -o "$T/d.mpk.zst"
t decode-targets bash -c "[ \"\$(mu-tokenize --model $G/llama3.json --decode --field targets $T/d.mpk.zst | tr '\n' '|')\" = ' tennis| golf' ]"
t records-span-text bash -c "$(declare -f span_text); [ \"\$(span_text $T/d.mpk.zst $G/llama3.json name)\" = 'Tiger Woods' ]"
t records-decode bash -c "mu-tokenize --model $G/llama3.json --decode $T/d.mpk.zst > $T/d.txt && [ \"\$(sed -n 2p $T/d.txt)\" = 'Fact: Tiger Woods plays' ]"
if [ $have_py = 1 ]; then
  t records-schema "$PY" - "$T/d.mpk.zst" <<'EOF'
import sys, io, msgpack, zstandard
d = zstandard.ZstdDecompressor().stream_reader(open(sys.argv[1], 'rb')).read()
objs = list(msgpack.Unpacker(io.BytesIO(d), raw=False))
h, recs = objs[0], objs[1:]
assert h['kind'] == 'tokens' and len(recs) == 2, h
r = recs[1]
assert r['id'] == 1 and r['prompt']['dtype'] == 'i32'
assert len(r['targets']) == 1 and r['targets'][0]['dtype'] == 'i32'
assert r['spans']['name'][1] > r['spans']['name'][0]
assert r['meta'] == {'extra': [1, 2]}, r['meta']
assert r['prompt']['shape'][0] == len(r['prompt']['data']) // 4
EOF
else skip records-schema "no python with msgpack+zstandard ($PY)"; fi

# ---- errors: one line naming file and record, exit 1; usage exit 2
printf '{"model": {"type": "BPE", "vocab": {"a": 0,' > "$T/bad.json"
expect_fail bad-tokenizer 1 "bad.json" mu-tokenize --model "$T/bad.json" --raw --ids "$T/hello.txt"
expect_fail missing-field 1 "d.jsonl: record 0: template field \{nope\}" mu-tokenize --model $G/llama3.json --prompt '{nope}' "$T/d.jsonl" -o "$T/x.mpk.zst"
t missing-field-no-output test ! -e "$T/x.mpk.zst"
printf 'a,b\n1,ok\n2,\xff\xfe\n' > "$T/u.csv"
expect_fail invalid-utf8-data 1 "u.csv: record 1 .*invalid UTF-8" mu-tokenize --model $G/llama3.json --prompt '{b}' "$T/u.csv" -o "$T/y.mpk.zst"
printf 'ab\xc3(' > "$T/u.txt"
expect_fail invalid-utf8-raw 1 "u.txt: invalid UTF-8 at byte 2" mu-tokenize --model $G/llama3.json --raw --ids "$T/u.txt"
expect_fail no-model 2 "--model is required" mu-tokenize --raw
expect_fail bad-template 2 "--prompt: template" mu-tokenize --model $G/llama3.json --prompt '{open' "$T/d.jsonl"
expect_fail chat-without-template 1 "no chat template" mu-tokenize --model $G/llama3.json --chat "$T/d.jsonl"

# ---- chat template (ChatML from tokenizer_config.json), a list field of candidates, --eos
mkdir -p "$T/chat"; cp "$G/qwen2.json" "$T/chat/tokenizer.json"
cat > "$T/chat/tokenizer_config.json" <<'EOF'
{"eos_token": "<|im_end|>", "chat_template": "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"}
EOF
cat > "$T/qa.jsonl" <<'EOF'
{"question": "Who wrote it?", "paraphrased_answer": "Ann did.", "perturbed_answer": ["Bob did.", "Cy did."], "answer": "Ann wrote it."}
EOF
t chat-tokenize mu-tokenize --model "$T/chat" --chat --prompt '{question}' --target ' {paraphrased_answer}' --choices-field perturbed_answer --eos "$T/qa.jsonl" -o "$T/qa.mpk.zst"
printf '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWho wrote it?<|im_end|>\n<|im_start|>assistant\n' > "$T/qa.want"
t chat-prompt-text bash -c "mu-tokenize --model $T/chat --decode --keep-special $T/qa.mpk.zst | cmp - $T/qa.want"
t chat-span-text bash -c "$(declare -f span_text); [ \"\$(span_text $T/qa.mpk.zst $T/chat question)\" = 'Who wrote it?' ]"
t chat-system-option bash -c "mu-tokenize --model $T/chat --chat --system 'Be brief.' --prompt '{question}' $T/qa.jsonl | mu-tokenize --model $T/chat --decode --keep-special | head -1 | grep -qx '<|im_start|>system'"
if [ $have_py = 1 ]; then
  t chat-spans-targets "$PY" - "$T/qa.mpk.zst" "$MU_BIN/mu-tokenize" "$T/chat" <<'EOF'
import sys, io, struct, subprocess, msgpack, zstandard
d = zstandard.ZstdDecompressor().stream_reader(open(sys.argv[1], 'rb')).read()
h, r = list(msgpack.Unpacker(io.BytesIO(d), raw=False))
ids = struct.unpack('<%di' % r['prompt']['shape'][0], r['prompt']['data'])
s, e = r['spans']['question']
dec = lambda x: subprocess.run([sys.argv[2], '--model', sys.argv[3], '--decode', '--ids'], input=' '.join(map(str, x)),
                               capture_output=True, text=True, check=True).stdout
assert dec(ids[s:e]) == 'Who wrote it?', dec(ids[s:e])
assert r['target_texts'] == [' Ann did.', 'Bob did.', 'Cy did.'] and r['answer'] == 0
eos = h['meta']['eos']
for t in r['targets']:
    assert struct.unpack('<%di' % t['shape'][0], t['data'])[-1] == eos
assert r['meta'] == {'answer': 'Ann wrote it.'}
EOF
else skip chat-spans-targets "no python with msgpack+zstandard ($PY)"; fi

# ---- --span: a field's value located in a ready-made prompt (CounterFact style)
cat > "$T/cf.jsonl" <<'EOF'
{"prompt": "The mother tongue of Danielle Darrieux is", "subject": "Danielle Darrieux", "target_true": " French"}
EOF
t span-field mu-tokenize --model $G/llama3.json --span subject --target '{target_true}' "$T/cf.jsonl" -o "$T/cf.mpk.zst"
t span-field-text bash -c "$(declare -f span_text); [ \"\$(span_text $T/cf.mpk.zst $G/llama3.json subject)\" = 'Danielle Darrieux' ]"
expect_fail span-missing 1 "cf.jsonl: record 0: --span target_true: .*does not occur" mu-tokenize --model $G/llama3.json --span target_true "$T/cf.jsonl" -o "$T/cf2.mpk.zst"
if [ $have_py = 1 ]; then
  t span-field-decodes "$PY" - "$T/cf.mpk.zst" "$MU_BIN/mu-tokenize" "$G/llama3.json" <<'EOF'
import sys, io, struct, subprocess, msgpack, zstandard
d = zstandard.ZstdDecompressor().stream_reader(open(sys.argv[1], 'rb')).read()
h, r = list(msgpack.Unpacker(io.BytesIO(d), raw=False))
ids = struct.unpack('<%di' % r['prompt']['shape'][0], r['prompt']['data'])
s, e = r['spans']['subject']
out = subprocess.run([sys.argv[2], '--model', sys.argv[3], '--decode', '--ids'], input=' '.join(map(str, ids[s:e])),
                     capture_output=True, text=True, check=True).stdout
assert out.strip() == 'Danielle Darrieux', out
assert r['meta']['subject'] == 'Danielle Darrieux'
EOF
else skip span-field-decodes "no python with msgpack+zstandard ($PY)"; fi

# ---- shared data: stories260K greedy ids, Sports Facts, MMLU
D=$SHARED_DATA
if [ -d "$D/models/stories260K" ]; then
  M=$D/models/stories260K
  want=$(tr -d '[] ' < "$M/greedy_200.json" | sed 's/.*"greedy_ids"://; s/}//' | tr ',' ' ')
  t stories-encode-greedy bash -c "[ \"\$(mu-tokenize --model $M --raw --ids --bos $M/greedy_200.txt)\" = \"$want\" ]"
  t stories-decode-greedy bash -c "echo '$want' | mu-tokenize --model $M --decode --ids > $T/g.txt && cmp $M/greedy_200.txt $T/g.txt"
  if [ -f "$D/sports/sports.csv" ]; then
    t sports-choices mu-tokenize --model "$M" "$D/sports/sports.csv" --prompt 'Fact: Tiger Woods plays the sport of golf\nFact: {athlete} plays the sport of' --target ' {sport}' --choices ' football| baseball| basketball' -o "$T/s.mpk.zst"
    if [ $have_py = 1 ]; then
      t sports-answers "$PY" - "$T/s.mpk.zst" "$D/sports/sports.csv" <<'EOF'
import sys, io, csv, msgpack, zstandard
d = zstandard.ZstdDecompressor().stream_reader(open(sys.argv[1], 'rb')).read()
recs = list(msgpack.Unpacker(io.BytesIO(d), raw=False))[1:]
rows = list(csv.DictReader(open(sys.argv[2], encoding='utf-8')))
assert len(recs) == len(rows) == 1559
order = [' football', ' baseball', ' basketball']
for r, row in zip(recs, rows):
    assert r['target_texts'] == order
    assert order[r['answer']] == ' ' + row['sport'], (r['answer'], row['sport'])
    assert r['prompt']['data'][:4] == b'\x01\x00\x00\x00'  # BOS (id 1) by the model's default
    assert r['prompt_text'] == row['prompt']
EOF
    else skip sports-answers "no python with msgpack+zstandard ($PY)"; fi
  fi
else skip stories "no shared stories260K"; fi
if [ -f "$D/mmlu/test/anatomy_test.csv" ]; then
  t mmlu-mc mu-tokenize --model $G/llama3.json --columns question,A,B,C,D,answer --mc --prompt '{question}' "$D/mmlu/test/anatomy_test.csv" -o "$T/m.mpk.zst"
  t mmlu-mc-decode bash -c "mu-tokenize --model $G/llama3.json --decode $T/m.mpk.zst | grep -c '^Answer:\$' | grep -qx 135"
else skip mmlu "no shared MMLU"; fi
# --rows: a slice of the records, ids stay the global record index
if [ -f "$D/sports/sports.csv" ]; then
  t rows-slice bash -c "mu-tokenize --model $G/llama3.json --target ' {sport}' --rows 16-20 '$D/sports/sports.csv' | mu-dump | sed 1d | grep -o '\"id\":[0-9]*' | tr '\n' ' ' | grep -qx '\"id\":16 \"id\":17 \"id\":18 \"id\":19 '"
  t rows-open-end bash -c "[ \$(mu-tokenize --model $G/llama3.json --target ' {sport}' --rows 1557- '$D/sports/sports.csv' | mu-dump | sed 1d | wc -l) = 2 ]"
  expect_fail rows-bad 2 'rows' mu-tokenize --model $G/llama3.json --rows 5-2 "$D/sports/sports.csv"
fi
if [ -f "$D/sports/sports.csv" ]; then
  printf '7 3\n1200\n' > "$T/sel.txt"
  t select-ids bash -c "mu-tokenize --model $G/llama3.json --target ' {sport}' --select $T/sel.txt '$D/sports/sports.csv' | mu-dump | sed 1d | grep -o '\"id\":[0-9]*' | tr '\n' ' ' | grep -qx '\"id\":3 \"id\":7 \"id\":1200 '"
  printf '3 x\n' > "$T/sel-bad.txt"
  expect_fail select-bad 1 'sel-bad.txt: entry 2' mu-tokenize --model $G/llama3.json --target ' {sport}' --select $T/sel-bad.txt "$D/sports/sports.csv"
  printf '99999\n' > "$T/sel-big.txt"
  expect_fail select-range 1 'sel-big.txt: entry 1: record 99999' mu-tokenize --model $G/llama3.json --target ' {sport}' --select $T/sel-big.txt "$D/sports/sports.csv"
fi
if [ -f "$D/sports/sports.csv" ]; then
  # CSV fields are strings: --answer-field takes a string of digits too (sport_index)
  t answer-field-digits bash -c "mu-tokenize --model $G/llama3.json --rows 0-3 --prompt '{athlete} plays' --choices ' baseball| basketball| football' --answer-field sport_index '$D/sports/sports.csv' | mu-dump | sed 1d | grep -o '\"answer\":[0-9]' | tr '\n' ' ' | grep -qx '\"answer\":2 \"answer\":2 \"answer\":0 '"
fi
