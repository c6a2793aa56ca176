#!/usr/bin/env bash
# t_maskgen.sh — mu-maskgen end to end on the tiny mu-init model of t_train.sh and a scores
# stream written here by plain python3 (a few lines of msgpack, the zstd CLI; no packages):
# top units against the ranking python makes, the fraction rule, seeded random masks,
# random complements (disjoint, same size), --invert, mu-train --mask accepting the masks,
# and hostile inputs (exit 1/2, one line, no partial output).
. "$(dirname "$0")/lib.sh"

t maskgen_help bash -c 'mu-maskgen --help | grep -q "^Usage: mu-maskgen" && mu-maskgen --version | grep -q "^mu-maskgen (mu) "'
expect_fail maskgen_usage_no_input 2 'give --scores' mu-maskgen --units 3
expect_fail maskgen_usage_fraction_range 2 'fraction' mu-maskgen --scores x --fraction 2
expect_fail maskgen_usage_both_sizes 2 'not both' mu-maskgen --scores x --fraction 0.1 --units 3
expect_fail maskgen_usage_no_size 2 'give --fraction F or --units N' mu-maskgen --scores x
expect_fail maskgen_usage_model_needs_random 2 'add --random' mu-maskgen --model m --tensors mlp:0 --granularity neuron --units 3
expect_fail maskgen_usage_model_needs_tensors 2 'needs --tensors' mu-maskgen --random --model m --units 3
expect_fail maskgen_usage_bad_scope 2 "scope: 'layer'" mu-maskgen --scores x --units 3 --scope layer
expect_fail maskgen_usage_bad_granularity 2 "granularity: 'row'" mu-maskgen --random --model m --tensors all --granularity row --units 3

cd "$T" || exit 1
if ! command -v python3 >/dev/null || ! command -v zstd >/dev/null; then
    skip maskgen_all "needs python3 and the zstd CLI"; exit 0
fi
if ! mu-init --out tiny --layers 2 --d-model 32 --heads 4 --kv-heads 2 --d-ff 64 --seed 3 >/dev/null 2>&1; then
    skip maskgen_all "mu-init failed"; exit 0
fi
# tiny: embed and lm_head 512x32, per layer norms 2x32, q/o 32x32, k/v 16x32, gate/up/down
# 64x32 (down 32x64), final norm 32: 51360 parameters; neurons of 32 elements each
TOTAL=51360

# scores.py OUT [nan]: scores for the 6 MLP tensors (neurons: rows of gate/up, columns of
# down), values with ties; writes OUT (raw msgpack, zstd'd below) and OUT.rank, the
# candidate units ranked by (score desc, record, unit) as "record unit" lines
cat > scores.py <<'EOF'
import struct, sys
def enc(o):
    if isinstance(o, bool): return b'\xc3' if o else b'\xc2'
    if isinstance(o, int): return b'\xd3' + struct.pack('>q', o)
    if isinstance(o, str): b = o.encode(); return b'\xdb' + struct.pack('>I', len(b)) + b
    if isinstance(o, bytes): return b'\xc6' + struct.pack('>I', len(o)) + o
    if isinstance(o, list): return b'\xdd' + struct.pack('>I', len(o)) + b''.join(map(enc, o))
    if isinstance(o, dict): return b'\xdf' + struct.pack('>I', len(o)) + b''.join(enc(k) + enc(v) for k, v in o.items())
    raise TypeError(o)
out, nan = sys.argv[1], len(sys.argv) > 2
recs, rank = [], []
for L in range(2):
    for kind, shape in (("gate", [64, 32]), ("up", [64, 32]), ("down", [32, 64])):
        r = len(recs)
        s = [float((r * 64 + u) * 37 % 23) / 4 for u in range(64)]
        if nan and r == 4: s[9] = float('nan')
        rank += [(-v, r, u) for u, v in enumerate(s)]
        recs.append({"name": "model.layers.%d.mlp.%s_proj.weight" % (L, kind), "shape": shape,
                     "granularity": "neuron", "units": 64,
                     "score": {"dtype": "f32", "shape": [64], "data": struct.pack('<64f', *s)},
                     "extra": {"dtype": "f32", "shape": [64], "data": bytes(256)}})
head = {"format": "mu-stream", "version": [1, 0], "kind": "scores",
        "meta": {"method": "test", "granularity": "neuron", "params_total": 51360}}
with open(out, 'wb') as f:
    f.write(enc(head) + b''.join(enc(r) for r in recs))
with open(out + '.rank', 'w') as f:
    f.writelines("%d %d\n" % (r, u) for _, r, u in sorted(rank))
EOF
# selected MASK: "record unit" lines of the selected units, records numbered as in the
# scores (layer*3 + gate/up/down), from mu-dump's JSON (bits base64, LSB first)
cat > selected.py <<'EOF'
import json, sys, base64
names = ["model.layers.%d.mlp.%s_proj.weight" % (L, k) for L in range(2) for k in ("gate", "up", "down")]
lines = sys.stdin.read().splitlines()
for line in lines[1:]:
    r = json.loads(line)
    bits = base64.b64decode(r["bits"]["base64"])
    for u in range(r["units"]):
        if bits[u >> 3] >> (u & 7) & 1: print(names.index(r["name"]), u)
EOF
selected() { mu-dump "$1" | python3 selected.py | sort; }
meta() { mu-dump --head 0 "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["meta"]["'"$2"'"])'; }
export -f selected meta
if ! { python3 scores.py s.mpk && zstd -q -c s.mpk > s.mpk.zst && python3 scores.py nan.mpk nan &&
       zstd -q -c nan.mpk > nan.mpk.zst; }; then
    fail maskgen_scores_input "python3 scores.py failed"; exit 0
fi

# top units: the first N of python's ranking (ties by record, then unit)
t maskgen_top_units bash -c '
  mu-maskgen --scores s.mpk.zst --units 7 --out top.mpk.zst -q &&
  [ "$(selected top.mpk.zst)" = "$(head -7 s.mpk.rank | sort)" ]'
t maskgen_top_stdout bash -c '
  mu-maskgen --scores s.mpk.zst --units 40 -q > top40.mpk.zst &&
  [ "$(selected top40.mpk.zst)" = "$(head -40 s.mpk.rank | sort)" ]'
t maskgen_lowest bash -c '
  mu-maskgen --scores s.mpk.zst --units 5 --lowest -q --out low.mpk.zst &&
  [ "$(selected low.mpk.zst)" = "$(python3 -c "
import sys
rank = [l.split() for l in open(\"s.mpk.rank\")]
sc = lambda r, u: (int(r) * 64 + int(u)) * 37 % 23
low = sorted(rank, key=lambda x: (sc(*x), int(x[0]), int(x[1])))[:5]
print(\"\n\".join(sorted(\" \".join(x) for x in low)))")" ]'
# --fraction 0.01: round(513.6) = 514 parameters -> 17 neurons of 32 (544)
t maskgen_fraction bash -c '
  mu-maskgen --scores s.mpk.zst --fraction 0.01 --out f.mpk.zst 2> f.err &&
  [ "$(meta f.mpk.zst params_selected)" = 544 ] && [ "$(meta f.mpk.zst params_total)" = '$TOTAL' ] &&
  [ "$(meta f.mpk.zst granularity)" = neuron ] &&
  [ "$(selected f.mpk.zst)" = "$(head -17 s.mpk.rank | sort)" ] &&
  grep -q "17 neuron units, 544 parameters" f.err'
# scope tensor: 20 units over 6 tensors of 64: 3 each, plus one for the first two
t maskgen_scope_tensor bash -c '
  mu-maskgen --scores s.mpk.zst --units 20 --scope tensor -q --out st.mpk.zst &&
  [ "$(selected st.mpk.zst | cut -d" " -f1 | uniq -c | tr -s " " | tr "\n" ,)" = " 4 0, 4 1, 3 2, 3 3, 3 4, 3 5," ] &&
  [ "$(selected st.mpk.zst | head -4)" = "$(grep "^0 " s.mpk.rank | head -4 | sort)" ]'

# random: same seed, same records; another seed, others; from the model's config alike
t maskgen_random_same_seed bash -c '
  mu-maskgen --random --scores s.mpk.zst --units 9 --seed 5 -q --out r1.mpk.zst &&
  mu-maskgen --random --scores s.mpk.zst --units 9 --seed 5 -q --out r2.mpk.zst &&
  mu-maskgen --random --scores s.mpk.zst --units 9 --seed 6 -q --out r3.mpk.zst &&
  cmp -s <(mu-dump r1.mpk.zst | tail -n +2) <(mu-dump r2.mpk.zst | tail -n +2) &&
  ! cmp -s <(selected r1.mpk.zst) <(selected r3.mpk.zst) && [ "$(selected r1.mpk.zst | wc -l)" = 9 ]'
t maskgen_random_model bash -c '
  mu-maskgen --random --model tiny --tensors mlp:all --granularity neuron --fraction 0.01 --seed 1 -q --out rm.mpk.zst &&
  [ "$(meta rm.mpk.zst params_selected)" = 544 ] &&
  mu-maskgen --random --model tiny --tensors mlp:all --granularity neuron --fraction 0.01 --seed 1 -q --out rm2.mpk.zst &&
  cmp -s <(mu-dump rm.mpk.zst | tail -n +2) <(mu-dump rm2.mpk.zst | tail -n +2)'
t maskgen_random_heads bash -c '
  mu-maskgen --random --model tiny --tensors attn:1 --granularity head --units 3 -q --out h.mpk.zst &&
  [ "$(mu-dump h.mpk.zst | grep -c "\"granularity\":\"head\"")" -ge 2 ]'

# random complement of the top mask: disjoint, the same parameters, reproducible
t maskgen_complement bash -c '
  mu-maskgen --complement-of f.mpk.zst --scores s.mpk.zst --seed 2 -q --out c.mpk.zst &&
  [ "$(meta c.mpk.zst params_selected)" = 544 ] &&
  [ -z "$(comm -12 <(selected c.mpk.zst) <(selected f.mpk.zst))" ] &&
  mu-dump --head 0 c.mpk.zst | grep -q "\"role\":\"mask\"" && mu-dump --head 0 c.mpk.zst | grep -q "\"role\":\"scores\""'
t maskgen_complement_model bash -c '
  mu-maskgen --complement-of f.mpk.zst --model tiny --tensors mlp:all --granularity neuron --seed 2 -q --out cm.mpk.zst &&
  [ "$(meta cm.mpk.zst params_selected)" = 544 ] && [ -z "$(comm -12 <(selected cm.mpk.zst) <(selected f.mpk.zst))" ]'
# --invert: every other neuron of the masked tensors; inverting twice gives the mask back
t maskgen_invert bash -c '
  mu-maskgen --invert top.mpk.zst --model tiny -q --out inv.mpk.zst &&
  n=$(mu-dump top.mpk.zst | tail -n +2 | wc -l) &&
  [ "$(meta inv.mpk.zst params_selected)" = $((n * 64 * 32 - 7 * 32)) ] &&
  mu-maskgen --invert inv.mpk.zst --model tiny -q --out inv2.mpk.zst &&
  [ "$(selected inv2.mpk.zst)" = "$(selected top.mpk.zst)" ]'

# mu-train accepts the masks on the model and trains exactly their tensors
cat > facts.jsonl <<'EOF'
{"name": "Ada Quell", "sport": "golf"}
{"name": "Bo Tarrin", "sport": "tennis"}
EOF
if mu-tokenize --model tiny --prompt '{name} plays' --target ' {sport}' facts.jsonl > facts.mpk.zst 2>/dev/null; then
    for m in f c rm h; do
        t "maskgen_train_accepts_$m" bash -c '
          mu-train --model tiny --objective learn --train facts.mpk.zst --mask '$m'.mpk.zst --steps 1 --batch 2 \
            --lr 1e-2 --sparse --out '$m'.st -q &&
          [ "$(grep -ao "model\.[a-z_.0-9]*weight::idx" '$m'.st | sed "s/::idx//" | sort -u)" = \
            "$(mu-dump '$m'.mpk.zst | tail -n +2 | grep -o "\"name\":\"[^\"]*\"" | cut -d\" -f4 | sort -u)" ]'
    done
else
    skip maskgen_train_accepts "mu-tokenize failed"
fi

# the whole chain on real scores: mu-attrib -> mu-maskgen (top 1% and its random complement)
# -> mu-train
if command -v mu-attrib >/dev/null && [ -s facts.mpk.zst ]; then
    t maskgen_attrib_chain bash -c '
      mu-attrib --model tiny --forget facts.mpk.zst --method grad --tensors mlp:all -q --out a.mpk.zst &&
      mu-maskgen --scores a.mpk.zst --fraction 0.01 -q --out am.mpk.zst &&
      mu-maskgen --complement-of am.mpk.zst --scores a.mpk.zst --seed 1 -q --out ac.mpk.zst &&
      [ "$(meta am.mpk.zst params_selected)" = 544 ] && [ "$(meta ac.mpk.zst params_selected)" = 544 ] &&
      mu-train --model tiny --objective ga --forget facts.mpk.zst --mask am.mpk.zst --steps 1 --batch 2 --out am.st -q &&
      mu-train --model tiny --objective ga --forget facts.mpk.zst --mask ac.mpk.zst --steps 1 --batch 2 --out ac.st -q'
else
    skip maskgen_attrib_chain "no mu-attrib"
fi

# hostile inputs: one line naming the file, exit 1, no output left behind
expect_fail maskgen_wrong_kind 1 'f\.mpk\.zst: header: expected kind scores, got mask' \
    mu-maskgen --scores f.mpk.zst --units 3 --out bad.mpk.zst
head -c $(( $(wc -c < s.mpk.zst) / 2 )) s.mpk.zst > trunc.mpk.zst
expect_fail maskgen_truncated 1 'trunc\.mpk\.zst' mu-maskgen --scores trunc.mpk.zst --units 3 --out bad.mpk.zst
expect_fail maskgen_nan 1 'nan\.mpk\.zst: record 4: tensor model\.layers\.1\.mlp\.up_proj\.weight: score of unit 9 is NaN' \
    mu-maskgen --scores nan.mpk.zst --units 3 --out bad.mpk.zst
expect_fail maskgen_too_many_units 1 's\.mpk\.zst: 385 units asked, but only 384 candidate units' \
    mu-maskgen --scores s.mpk.zst --units 385 --out bad.mpk.zst
expect_fail maskgen_fraction_above_candidates 1 'parameters asked, but the candidate units hold only 12288' \
    mu-maskgen --random --scores s.mpk.zst --fraction 0.5 --out bad.mpk.zst
expect_fail maskgen_complement_too_big 1 '378 units asked, but only 377 candidate units' \
    mu-maskgen --complement-of top.mpk.zst --scores s.mpk.zst --units 378 --out bad.mpk.zst
mu-init --out other --layers 3 --d-model 32 --heads 4 --kv-heads 2 --d-ff 64 --seed 3 >/dev/null 2>&1
expect_fail maskgen_complement_other_model 1 'f\.mpk\.zst: params_total 51360, but model other has' \
    mu-maskgen --complement-of f.mpk.zst --model other --tensors mlp:all --granularity neuron --out bad.mpk.zst
expect_fail maskgen_head_on_mlp 1 'head granularity applies to attention tensors' \
    mu-maskgen --random --model tiny --tensors mlp:0 --granularity head --units 1 --out bad.mpk.zst
expect_fail maskgen_missing_scores 1 'nope\.mpk\.zst' mu-maskgen --scores nope.mpk.zst --units 1 --out bad.mpk.zst
t maskgen_no_partial_output bash -c '! ls bad.mpk.zst* 2>/dev/null | grep -q .'
