#!/usr/bin/env bash
# bench_dist.sh — data-parallel mu-train (mpirun, lib/dist.c) against one process on the
# same cores, in the same run: training tokens/s of
#   1 process x P threads      (OpenMP over the cores: the usual run)
#   P processes x 1 thread     (mpirun -np P: micro-batches shared out, gradients summed)
#   1 process x 1 thread       (the reference for one core)
# P = the machine's cores. Efficiency = (P processes) / (P x one core). The model is
# SmolLM2-135M-Instruct ($MU_SMOLLM2_GGUF, or runs/models as make demo fetches it) when
# present, else stories260K;
# the data 64 Sports Facts, MLPs of every layer trained, 3 steps of 4 x P micro-batches of 4
# (the first step is not counted).
set -u
cd "$(dirname "$0")/../.."
MU_BIN=${MU_BIN:-$PWD/bin}
export PATH=$MU_BIN:$PATH
D=${MU_SHARED:-$PWD/../shared}/data
W=$(mktemp -d /tmp/mu-bench-dist-XXXXXX)
trap 'rm -rf "$W"' EXIT
if ! command -v mpirun >/dev/null || ! ldd "$MU_BIN/mu-train" 2>/dev/null | grep -q libmpi; then
  echo "skip: no mpirun, or mu-train built without MPI (make deps installs Open MPI)"; exit 0
fi
M=${MU_SMOLLM2_GGUF:-runs/models/SmolLM2-135M-Instruct.Q4_1.gguf}
[ -f "$M" ] || M=$D/models/stories260K
if [ ! -e "$M" ] || [ ! -f "$D/sports/sports.csv" ]; then echo "skip: no model or Sports Facts in $D"; exit 0; fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
P=$(nproc)
mu-tokenize --model "$M" --rows 0-64 --prompt 'Fact: {athlete} plays the sport of' --target ' {sport}' \
  "$D/sports/sports.csv" > "$W/facts.mpk.zst" || { echo "bench_dist: mu-tokenize failed"; exit 1; }
A="--model $M --objective learn --train $W/facts.mpk.zst --mask mlp:all --steps 3 --batch 4 --accum $((4 * P)) --lr 1e-5 -q"
# tokens/s of steps 2..3 of a run's log
tps() { mu-dump "$1" | jq -s '[.[] | select(.tokens_per_s and .step > 1) | .tokens_per_s] | add / length'; }
run() { local name=$1; shift; "$@" $A --out "$W/$name.st" --log "$W/$name.log" || { echo "bench_dist: $name failed"; exit 1; }; tps "$W/$name.log"; }
one_p=$(OMP_NUM_THREADS=$P run onep mu-train)
many=$(OMP_NUM_THREADS=1 run many mpirun -q -np "$P" --bind-to none mu-train)
one_1=$(OMP_NUM_THREADS=1 run one1 mu-train)
echo "model $(basename "$M"), $P cores, $(mpirun --version | head -1)"
echo "| run | tokens/s | vs 1 process x $P threads |"
echo "|---|---|---|"
awk -v a="$one_p" -v b="$many" -v c="$one_1" -v p="$P" 'BEGIN {
  printf "| 1 process x %d threads | %.0f | 1.00 |\n", p, a
  printf "| %d processes x 1 thread | %.0f | %.2f |\n", p, b, b / a
  printf "| 1 process x 1 thread | %.0f | %.2f |\n", c, c / a
  printf "data-parallel efficiency (%d processes / %d x one core): %.2f\n", p, p, b / (p * c) }'
