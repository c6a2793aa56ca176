#!/usr/bin/env bash
# bench_choices.sh — mu-forward --emit choices where every candidate is one token: the
# prompt's own row scoring all candidates (the default) against a row per candidate
# (--row-per-candidate, the reference), on the same records, model and thread, in the same
# run. Records per second, best of 3 wall times each (model loading included in both), and
# the ratio; the largest difference of a choice log-prob between the two.
#   streams: MMLU (4 letters; the first 20 questions of 4 subjects, after MMLU's header) and
#            Sports Facts in cloze (3 sports; the first 128 athletes)
#   model:   SmolLM2-135M-Instruct's GGUF when runs/models holds it (make demo fetches it;
#            or MU_SMOLLM2_GGUF), else stories260K from ../shared
set -u
cd "$(dirname "$0")/../.."
MU_BIN=${MU_BIN:-$PWD/bin}
D=${MU_SHARED:-$PWD/../shared}/data
W=$(mktemp -d /tmp/mu-bench-choices-XXXXXX)
trap 'rm -rf "$W"' EXIT
if [ ! -d "$D/mmlu" ] || [ ! -f "$D/sports/sports.csv" ]; then echo "skip: no shared data in $D"; exit 0; fi
export OMP_NUM_THREADS=1
M=${MU_SMOLLM2_GGUF:-$PWD/runs/models/SmolLM2-135M-Instruct.Q4_1.gguf}
[ -f "$M" ] || M=$D/models/stories260K

python3 pipelines/mmlu-pick.py --out "$W/mmlu.jsonl" --n 20 "$D/mmlu" anatomy astronomy high_school_geography marketing || exit 1
"$MU_BIN/mu-tokenize" -q --model "$M" --mc --prompt '{context}{question}' --id-field id -o "$W/mmlu.tok" "$W/mmlu.jsonl" || exit 1
"$MU_BIN/mu-tokenize" -q --model "$M" --rows 0-128 --prompt 'Fact: {athlete} plays the sport of' \
  --choices ' baseball| basketball| football' --answer-field sport_index -o "$W/sports.tok" "$D/sports/sports.csv" || exit 1

now() { date +%s.%N; }
best() { # best of 3 wall times of mu-forward on STREAM with ARGS...; the outputs in $W/out
  local tok=$1 b=999999 s e; shift
  for _ in 1 2 3; do
    s=$(now); "$MU_BIN/mu-forward" -q --model "$M" --emit choices "$@" -o "$W/out" "$tok" || return 1; e=$(now)
    b=$(awk -v s="$s" -v e="$e" -v b="$b" 'BEGIN { t = e - s; print (t < b ? t : b) }')
  done
  echo "$b"; }
echo "model: $(basename "$M"), one thread"
printf '%-8s %8s %14s %14s %7s %12s\n' stream records "one row rec/s" "per cand rec/s" ratio "max |dlp|"
for s in mmlu sports; do
  n=$("$MU_BIN/mu-dump" -H "$W/$s.tok" | wc -l)
  t1=$(best "$W/$s.tok") || { echo "mu-forward failed"; exit 1; }
  "$MU_BIN/mu-dump" --full -H "$W/out" | jq -c '.choice_logprobs.data' > "$W/a.txt"
  t2=$(best "$W/$s.tok" --row-per-candidate) || { echo "mu-forward failed"; exit 1; }
  "$MU_BIN/mu-dump" --full -H "$W/out" | jq -c '.choice_logprobs.data' > "$W/b.txt"
  d=$(paste "$W/a.txt" "$W/b.txt" | tr -d '[]' | awk -F'[\t,]' '{ h = NF / 2; for (i = 1; i <= h; i++) { x = $i - $(i + h); if (x < 0) x = -x; if (x > m) m = x } } END { printf "%.2g", m }')
  awk -v n="$n" -v a="$t1" -v b="$t2" -v s="$s" -v d="$d" 'BEGIN { printf "%-8s %8d %14.1f %14.1f %6.2fx %12s\n", s, n, n / a, n / b, b / a, d }'
done
