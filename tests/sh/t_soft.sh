#!/usr/bin/env bash
# t_soft.sh — soft prompts end to end on stories260K and Sports Facts: mu-tokenize
# --soft-tokens puts slots after the BOS (spans shifted, text unchanged), mu-train
# --soft-tokens trains their vectors with the model frozen (a soft prompt attack: the answers
# gain probability), mu-train --gcg searches tokens for them instead (the attack as text),
# every model tool reads them with --soft-prompt, and bad files, widths and slots are
# refused in one line.
. "$(dirname "$0")/lib.sh"

M="$SHARED_DATA/models/stories260K"
CSV="$SHARED_DATA/sports/sports.csv"
if [ ! -f "$M/config.json" ] || [ ! -f "$CSV" ]; then skip soft_all "no stories260K or sports data in $SHARED_DATA"; exit 0; fi
cd "$T" || exit 1
tok() { mu-tokenize --model "$M" --prompt 'Fact: {athlete} plays the sport of' \
          --choices ' baseball| basketball| football' --answer-field sport_index --rows 0-8 "$@" "$CSV"; }
tok > plain.tok && tok --soft-tokens 4 > soft.tok || { skip soft_all "mu-tokenize failed"; exit 0; }

t soft_tokenize_slots_after_bos bash -c '
  p=$(mu-dump --full plain.tok | sed -n 2p); s=$(mu-dump --full soft.tok | sed -n 2p)
  jq -e ".prompt.data[1:5] == [-1,-2,-3,-4] and .prompt.data[0] == 1" <<<"$s" >/dev/null &&
  jq -e -n --argjson p "$p" --argjson s "$s" "(\$s.prompt.data[0:1] + \$s.prompt.data[5:]) == \$p.prompt.data and
      \$s.spans.athlete == [\$p.spans.athlete[0] + 4, \$p.spans.athlete[1] + 4] and \$s.targets == \$p.targets" >/dev/null &&
  mu-dump soft.tok | head -1 | jq -e ".meta.soft_tokens == 4" >/dev/null &&
  [ "$(mu-tokenize --model "'"$M"'" --decode soft.tok)" = "$(mu-tokenize --model "'"$M"'" --decode plain.tok)" ]'
expect_fail soft_forward_needs_a_prompt 1 'soft.tok: record 0: prompt: token 1 is -1, a soft-prompt slot, but no soft prompt is loaded' \
  mu-forward --model "$M" soft.tok
expect_fail soft_train_usage_mask 2 'not with --mask' \
  mu-train --model "$M" --forget soft.tok --objective learn --soft-tokens 4 --mask mlp:0 --out a.st
expect_fail soft_train_usage_outputs 2 'writes its vectors to --out FILE' \
  mu-train --model "$M" --forget soft.tok --objective learn --soft-tokens 4 --out-model dir
expect_fail soft_train_needs_slots 1 'plain.tok: no soft-prompt slots' \
  mu-train --model "$M" --forget plain.tok --objective learn --soft-tokens 4 --steps 1 --out a.st
expect_fail soft_tokenize_usage 2 'not with --raw or --decode' mu-tokenize --model "$M" --raw --soft-tokens 2

# The attack: 20 steps of learn on the facts through 4 vectors; the answers' probability
# rises many-fold, no weight moves (the model's digest is what the file says it was trained on)
t soft_prompt_attack_raises_answers bash -c '
  mu-train --model "'"$M"'" --forget soft.tok --objective learn --soft-tokens 4 --steps 20 --lr 1e-2 \
    --batch 8 --out attack.st --log attack.log -q || exit 1
  before=$(mu-forward --model "'"$M"'" --emit target plain.tok | mu-score | awk "\$1 == \"target_prob\" {print \$3}")
  after=$(mu-forward --model "'"$M"'" --soft-prompt attack.st --emit target soft.tok | mu-score |
          awk "\$1 == \"target_prob\" {print \$3}")
  echo "target_prob $before -> $after"
  awk -v a="$before" -v b="$after" "BEGIN { exit !(b > 4 * a) }" || exit 1
  hl=$(od -An -tu8 -N8 attack.st | tr -d " ")
  h=$(tail -c +9 attack.st | head -c "$hl")
  digest=$(mu-dump --model "'"$M"'" | head -1 | jq -r .digest)
  jq -e --arg d "$digest" ".soft_prompt.dtype == \"F32\" and .soft_prompt.shape == [4, 64] and
    .__metadata__.format == \"mu-soft-prompt\" and .__metadata__.version == \"1\" and
    .__metadata__.trained_on == \$d and (.__metadata__.mu_train | fromjson | .soft_tokens == 4)" <<<"$h" >/dev/null'

# the slots have no text: scored as next tokens they give NaN, the text's own tokens numbers;
# generation runs past them (KV cache: the slots read once, in the prefill)
t soft_text_and_generation bash -c '
  mu-forward --model "'"$M"'" --soft-prompt attack.st --emit text soft.tok | mu-dump --full | sed -n 2p |
    jq -e ".text_logprobs.data[0:4] == [\"nan\",\"nan\",\"nan\",\"nan\"] and
           (.text_logprobs.data[4:] | all(type == \"number\" and . < 0))" >/dev/null &&
  [ "$(mu-forward --model "'"$M"'" --soft-prompt attack.st --generate 4 soft.tok | mu-dump --full | sed -n 2p |
       jq ".generation.shape[0]")" = 4 ]'

# mu-dump --soft-prompt: the vectors, and with --model the tokens nearest each by cosine,
# against awk's cosines over the raw values (st_values: od, not mu); mu-train's starting
# vectors are embedding rows of tokens, each its own nearest at cosine 1
{ st_values attack.st soft_prompt; echo SPLIT; st_values "$M/model.safetensors" model.embed_tokens.weight; } |
  awk '/SPLIT/ { e = 1; next } !e { s[ns++] = $1; next } { E[ne++] = $1 }
    END { D = 64; V = ne / D
      for (j = 0; j < ns / D; j++) { for (r = 0; r < V; r++) { d = a = b = 0
          for (i = 0; i < D; i++) { x = s[j*D+i]; y = E[r*D+i]; d += x*y; a += x*x; b += y*y }
          c[r] = d / sqrt(a * b) }
        for (t = 0; t < 3; t++) { best = -1
          for (r = 0; r < V; r++) if (!(r in used) && (best < 0 || c[r] > c[best])) best = r
          used[best] = 1; print best, c[best] }
        for (r in used) delete used[r] } }' > want
t soft_dump_nearest_tokens_match_awk bash -c '
  [ "$(wc -l < want)" = 12 ] || exit 1
  mu-dump --soft-prompt attack.st --model "'"$M"'" --nearest 3 > near.jsonl || exit 1
  head -1 near.jsonl | jq -e ".vectors == 4 and .d_model == 64 and .trained_on_this_model and
      .metadata.format == \"mu-soft-prompt\" and .metadata.mu_train.soft_tokens == 4 and
      .embedding_norm.min <= .embedding_norm.mean" >/dev/null || exit 1
  tail -n +2 near.jsonl | jq -r ".nearest[] | \"\(.id) \(.cos)\"" > got
  paste -d " " got want | awk "{ if (\$1 != \$3 || \$2 - \$4 > 1e-5 || \$4 - \$2 > 1e-5) { print \"differ: \" \$0; bad = 1 } }
    END { exit bad }" || exit 1
  mu-train --model "'"$M"'" --forget soft.tok --objective learn --soft-tokens 4 --steps 0 --out start.st -q &&
  mu-dump --soft-prompt start.st --model "'"$M"'" --nearest 1 | tail -n +2 |
    jq -s -e "length == 4 and all(.nearest[0].cos > 0.99999 and (.nearest[0].token | type) == \"string\")" >/dev/null &&
  mu-dump --soft-prompt attack.st -n 1 --full | tail -n +2 | jq -s -e "length == 1 and (.[0].vector.data | length) == 64 and
      .[0].id == -1 and (.[0].norm - (.[0].vector.data | map(. * .) | add | sqrt) | fabs) < 1e-5" >/dev/null'
# against a model with deltas the header lists them, with their strengths when --scaled-delta
# sets one (as mu-dump --model's header does), and the digest is no longer the one trained on
t soft_dump_names_the_deltas bash -c '
  mu-train --model "'"$M"'" --forget plain.tok --objective learn --mask mlp:0 --steps 1 --out d1.st -q &&
  mu-dump --soft-prompt attack.st --model "'"$M"'" --delta d1.st | head -1 |
    jq -e ".deltas == [\"d1.st\"] and (has(\"delta_scales\") | not) and (.trained_on_this_model | not)" >/dev/null &&
  mu-dump --soft-prompt attack.st --model "'"$M"'" --scaled-delta 0.5=d1.st | head -1 |
    jq -e ".deltas == [\"d1.st\"] and .delta_scales == [0.5]" >/dev/null &&
  [ "$(mu-dump --model "'"$M"'" --scaled-delta 0.5=d1.st | head -1 | jq -c "[.deltas, .delta_scales]")" = "[[\"d1.st\"],[0.5]]" ]'
# --soft-project: the vectors replaced by their nearest tokens' rows read exactly as a soft
# prompt built here (python, from awk's nearest ids above and the checkpoint's bytes) does;
# mu-train starts from them (and notes it)
if command -v python3 >/dev/null; then
  awk 'NR % 3 == 1 { print $1 }' want | python3 -c '
import json, struct, sys
ids = [int(x) for x in sys.stdin.read().split()]
with open(sys.argv[1] + "/model.safetensors", "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n)); base = 8 + n
    e = h["model.embed_tokens.weight"]; D = e["shape"][1]; b0 = e["data_offsets"][0]
    rows = b""
    for i in ids:
        f.seek(base + b0 + 4 * D * i); rows += f.read(4 * D)
hdr = json.dumps({"__metadata__": {"format": "mu-soft-prompt", "version": "1"},
                  "soft_prompt": {"dtype": "F32", "shape": [len(ids), D], "data_offsets": [0, len(rows)]}}).encode()
hdr += b" " * (-len(hdr) % 8)
open("proj.st", "wb").write(struct.pack("<Q", len(hdr)) + hdr + rows)' "$M"
  t soft_project_reads_as_nearest_tokens bash -c '
    mu-forward --model "'"$M"'" --soft-prompt attack.st --soft-project --emit choices soft.tok > p1.out 2> p1.err &&
    mu-forward --model "'"$M"'" --soft-prompt proj.st --emit choices soft.tok > p2.out &&
    mu-forward --model "'"$M"'" --soft-prompt attack.st --emit choices soft.tok > p3.out &&
    cmp -s <(mu-dump -H --full p1.out) <(mu-dump -H --full p2.out) &&
    ! cmp -s <(mu-dump -H --full p1.out) <(mu-dump -H --full p3.out) &&
    grep -q "attack.st: 4 vectors projected to the tokens $(awk "NR % 3 == 1 { printf \"%s%s\", s, \$1; s = \" \" }" want)\$" p1.err &&
    mu-dump p1.out | head -1 | jq -e ".meta.soft_prompt.projected == true and .meta.soft_prompt.path == \"attack.st\" and
      any(.inputs[]; .role == \"soft_prompt\")" >/dev/null &&
    mu-dump p3.out | head -1 | jq -e ".meta.soft_prompt.projected == false" >/dev/null &&
    mu-train --model "'"$M"'" --forget soft.tok --objective learn --soft-tokens 4 --soft-prompt attack.st \
      --soft-project --steps 0 --out p4.st -q &&
    mu-dump --soft-prompt p4.st --model "'"$M"'" --nearest 1 > p4.json &&
    head -1 p4.json | jq -e ".metadata.mu_train.soft_project == true and .metadata.mu_train.soft_prompt == \"attack.st\"" >/dev/null &&
    [ "$(tail -n +2 p4.json | jq -r "select(.nearest[0].cos > 0.99999) | .nearest[0].id" | tr "\n" " ")" = \
      "$(awk "NR % 3 == 1 { printf \"%s \", \$1 }" want)" ]'
else
  skip soft_project_reads_as_nearest_tokens "no python3"
fi
expect_fail soft_project_needs_a_prompt 2 '--soft-project needs --soft-prompt' mu-forward --model "$M" --soft-project plain.tok
expect_fail soft_dump_nearest_needs_a_model 2 'needs --soft-prompt and --model' mu-dump --soft-prompt attack.st --nearest 2
expect_fail soft_dump_not_a_soft_file 1 'not a soft-prompt file' mu-dump --soft-prompt "$M/model.safetensors"

# GCG (mu-train --gcg): 6 steps of learn search 4 tokens for the slots. The file holds their
# embedding rows (each its own nearest token at cosine 1; token_ids the same ids; the text
# printable ASCII), the last swap's loss is below the first step's, and --soft-project,
# the attack as a hard prompt, changes no number: the search already is one.
t soft_gcg_places_tokens bash -c '
  mu-train --model "'"$M"'" --forget soft.tok --objective learn --soft-tokens 4 --gcg --gcg-candidates 32 \
    --steps 6 --batch 8 --out gcg.st --log gcg.log 2> gcg.err || exit 1
  mu-dump --soft-prompt gcg.st --model "'"$M"'" --nearest 1 > gcg.json
  ids=$(head -1 gcg.json | jq -r ".metadata.token_ids | map(tostring) | join(\" \")")
  [ "$(tail -n +2 gcg.json | jq -r "select(.nearest[0].cos == 1) | .nearest[0].id" | tr "\n" " ")" = "$ids " ] || exit 1
  head -1 gcg.json | jq -e ".metadata.mu_train | .gcg.candidates == 32 and .gcg.topk == 256 and .gcg_tokens == \"ascii\" and
    (.gcg_text | test(\"^[ -~]+$\"))" >/dev/null || exit 1
  grep -q "GCG: the slots hold the tokens $ids (\"" gcg.err || exit 1
  mu-dump gcg.log | jq -s -e "[.[] | select(.gcg)] | length == 6 and .[0].loss > .[5].gcg.loss and
    all(.[]; .gcg.tried > 0 and .gcg.slot >= 0 and .gcg.slot < 4)" >/dev/null || exit 1
  cmp -s <(mu-forward --model "'"$M"'" --soft-prompt gcg.st --emit choices soft.tok | mu-dump -H --full) \
         <(mu-forward --model "'"$M"'" --soft-prompt gcg.st --soft-project --emit choices soft.tok 2>/dev/null | mu-dump -H --full)'
# the tokens it may place (--gcg-tokens ascii): those whose text is printable ASCII and not a
# control token, counted by python over tokenizer.json (pieces with U+2581 as a space, byte
# tokens <0xNN>, the Strip decoder's one leading space)
if command -v python3 >/dev/null; then
  t soft_gcg_ascii_tokens_match_tokenizer_json bash -c '
    want=$(python3 -c "
import json, re, sys
tk = json.load(open(sys.argv[1] + \"/tokenizer.json\"))
special = {a[\"id\"] for a in tk[\"added_tokens\"] if a.get(\"special\")}
n = 0
for piece, i in tk[\"model\"][\"vocab\"].items():
    m = re.fullmatch(r\"<0x([0-9A-F]{2})>\", piece)
    b = bytes([int(m.group(1), 16)]) if m else piece.replace(\"\u2581\", \" \").encode()
    b = b[1:] if b.startswith(b\" \") else b
    n += i not in special and len(b) > 0 and all(0x20 <= c <= 0x7e for c in b)
print(n)" "'"$M"'") &&
    grep -q "GCG: $want of 512 tokens may go in the slots (--gcg-tokens ascii)" gcg.err &&
    head -1 gcg.json | jq -e ".metadata.mu_train.gcg.allowed == $want" >/dev/null'
else
  skip soft_gcg_ascii_tokens_match_tokenizer_json "no python3"
fi
expect_fail soft_gcg_needs_soft_tokens 2 '--gcg searches the slots of --soft-tokens N' \
  mu-train --model "$M" --forget soft.tok --objective learn --gcg --out x.st
expect_fail soft_gcg_options_need_gcg 2 '--gcg-topk, --gcg-candidates and --gcg-tokens apply to --gcg' \
  mu-train --model "$M" --forget soft.tok --objective learn --soft-tokens 4 --gcg-topk 8 --out x.st
expect_fail soft_gcg_tokens_usage 2 "--gcg-tokens 'utf8': expected ascii or any" \
  mu-train --model "$M" --forget soft.tok --objective learn --soft-tokens 4 --gcg --gcg-tokens utf8 --out x.st
mkdir -p notok && cp "$M/config.json" "$M/model.safetensors" notok/
expect_fail soft_gcg_ascii_needs_tokenizer 1 '--gcg-tokens ascii needs the model.s tokenizer .or --gcg-tokens any.: notok: no tokenizer.json' \
  mu-train --model notok --forget soft.tok --objective learn --soft-tokens 4 --gcg --steps 1 --out x.st

# every model tool reads it: mu-attrib scores the slots'"'"' records
t soft_attrib_reads_the_prompt bash -c '
  mu-attrib --model "'"$M"'" --soft-prompt attack.st --forget soft.tok --method act > act.scores &&
  mu-dump act.scores | head -1 | grep -q .'

# refusals, one line naming the file
head -c 100 attack.st > trunc.st
expect_fail soft_truncated_file 1 'trunc.st: ' mu-forward --model "$M" --soft-prompt trunc.st soft.tok
expect_fail soft_not_a_soft_file 1 'not a soft-prompt file' mu-forward --model "$M" --soft-prompt "$M/model.safetensors" soft.tok
if mu-init --out wide --layers 1 --d-model 32 --heads 2 --kv-heads 1 --d-ff 64 --seed 1 >/dev/null 2>&1; then
  expect_fail soft_wrong_width 1 'attack.st: soft_prompt: vectors of width 64, but the model.s d_model is 32' \
    mu-forward --model wide --soft-prompt attack.st soft.tok
  expect_fail soft_dump_wrong_width 1 'attack.st: soft_prompt: vectors of width 64, but the model.s d_model is 32' \
    mu-dump --soft-prompt attack.st --model wide
fi
tok --soft-tokens 6 > six.tok
expect_fail soft_slot_past_the_prompt 1 'six.tok: record 0: prompt: token 5 is -5, a soft-prompt slot past the soft prompt.s 4 vectors' \
  mu-forward --model "$M" --soft-prompt attack.st six.tok
expect_fail soft_train_max_len_cuts_slots 1 'soft.tok: record 0: --max-len 6 cuts the prompt.s soft-prompt slots' \
  mu-train --model "$M" --forget soft.tok --objective learn --soft-tokens 4 --max-len 6 --steps 1 --out b.st
