#!/usr/bin/env bash
# bench_tokenize.sh — tokenizer throughput (MB/s, one thread) of mu against Hugging Face
# `tokenizers` on the same >= 10 MB text and the same vocabulary, in the same run.
#   text: the question/answer fields of every TOFU file + every MMLU CSV field (10.6 MB)
#   vocab: GPT-2 (50257 tokens, 50000 merges) from ../shared/data/tokenizers/
#          ggml-vocab-gpt-2.gguf, written out as tokenizer.json by
#          tests/gen/gen_tokenizer_golden.py (needs $MU_PYTHON with `tokenizers`);
#          without it, mu alone on stories260K's tokenizer.json.
# mu's time is `mu-tokenize --raw` on the text minus the same on a tiny text (loading
# the vocabulary and writing the stream are not counted); HF's is Tokenizer.encode on
# the whole text (the same call as --raw; slow in HF for one 10 MB string) and, as HF is
# normally used, encode_batch over the lines. The id counts are printed for comparison.
set -u
cd "$(dirname "$0")/../.."
MU_BIN=${MU_BIN:-$PWD/bin}
PY=${MU_PYTHON:-python3}
D=${MU_SHARED:-$PWD/../shared}/data
W=$(mktemp -d /tmp/mu-bench-tok-XXXXXX)
trap 'rm -rf "$W"' EXIT
if [ ! -d "$D/tofu" ] || [ ! -d "$D/mmlu" ]; then echo "skip: no shared data in $D"; exit 0; fi
export RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1

have_hf=0
"$PY" -c 'import tokenizers' 2>/dev/null && have_hf=1
# ---- the text
if "$PY" -c 'import json, csv' 2>/dev/null; then
  "$PY" - "$D" "$W/text.txt" <<'EOF'
import csv, glob, json, sys
d, out = sys.argv[1], sys.argv[2]
parts = []
for f in sorted(glob.glob(d + "/tofu/*.jsonl")):
    for line in open(f, encoding="utf-8"):
        r = json.loads(line)
        parts += [r.get("question", ""), r.get("answer", "")]
for f in sorted(glob.glob(d + "/mmlu/*/*.csv")):
    for row in csv.reader(open(f, encoding="utf-8")):
        parts += row
open(out, "w", encoding="utf-8").write("\n".join(parts))
EOF
else
  cat "$D"/tofu/*.jsonl "$D"/mmlu/*/*.csv > "$W/text.txt"
fi
bytes=$(wc -c < "$W/text.txt")
printf 'x' > "$W/tiny.txt"

# ---- the vocabulary
if [ $have_hf = 1 ] && "$PY" tests/gen/gen_tokenizer_golden.py bench "$D/tokenizers/ggml-vocab-gpt-2.gguf" "$W/gpt2.json" >/dev/null; then
  TOK=$W/gpt2.json; vname="gpt-2 (50257)"
else
  TOK=$D/models/stories260K/tokenizer.json; vname="stories260K (512)"
fi

now() { date +%s.%N; }
mu_run() { "$MU_BIN/mu-tokenize" --model "$TOK" --raw -o "$W/out.mpk.zst" "$1"; }
best() { # best of 3 wall times of mu_run FILE
  local b=999999 s e t
  for _ in 1 2 3; do s=$(now); mu_run "$1" || return 1; e=$(now); b=$(awk -v s="$s" -v e="$e" -v b="$b" 'BEGIN { t = e - s; print (t < b ? t : b) }'); done
  echo "$b"; }
t_full=$(best "$W/text.txt") || { echo "mu-tokenize failed"; exit 1; }
t_tiny=$(best "$W/tiny.txt")
t_mu=$(awk -v a="$t_full" -v b="$t_tiny" 'BEGIN { print a - b }')
n_mu=$("$MU_BIN/mu-tokenize" --model "$TOK" --raw --ids "$W/text.txt" | wc -w)
mbs_mu=$(awk -v n="$bytes" -v t="$t_mu" 'BEGIN { print n / 1e6 / t }')
printf '%-28s %10s %10s %10s\n' "tokenizer ($vname)" "MB/s" "seconds" "tokens"
printf '%-28s %10.2f %10.3f %10d\n' "mu (1 thread)" "$mbs_mu" "$t_mu" "$n_mu"
if [ $have_hf = 1 ] && [ "$TOK" = "$W/gpt2.json" ]; then
  "$PY" - "$TOK" "$W/text.txt" "$n_mu" <<'EOF'
import sys, time
import tokenizers
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
text = open(sys.argv[2], encoding="utf-8").read()
nbytes = len(text.encode("utf-8"))
lines = text.split("\n")
ver = "HF tokenizers " + tokenizers.__version__
best = 1e9
for _ in range(3):   # the usual way: a batch of records (RAYON_NUM_THREADS=1)
    t0 = time.perf_counter()
    enc = tok.encode_batch(lines, add_special_tokens=False)
    best = min(best, time.perf_counter() - t0)
n = sum(len(e.ids) for e in enc) + len(lines) - 1   # + the newline tokens between lines
print("%-28s %10.2f %10.3f %10d  (per line, + newlines)" % (ver, nbytes / 1e6 / best, best, n))
t0 = time.perf_counter()
ids = tok.encode(text, add_special_tokens=False).ids   # the same call as mu --raw
t = time.perf_counter() - t0
print("%-28s %10.2f %10.3f %10d  (whole text as one string%s)" % (ver, nbytes / 1e6 / t, t, len(ids),
      ", same count as mu" if len(ids) == int(sys.argv[3]) else ", COUNT DIFFERS FROM MU"))
EOF
else
  echo "HF tokenizers: skipped (not importable with $PY, or no GPT-2 vocabulary)"
fi
echo "text: $bytes bytes"
