#!/usr/bin/env bash
# t_dist.sh — data-parallel mu-train under mpirun (lib/dist.h): 2 processes train what 1
# process with the same --accum trains (float sum order aside), the same bits run to run,
# rank 0 alone writes and reports, a rank that fails takes the job down, refusals.
. "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

if ! command -v mpirun >/dev/null; then skip dist_all "no mpirun (make deps installs openmpi-bin)"; exit 0; fi
if ! ldd "$MU_BIN/mu-train" 2>/dev/null | grep -q libmpi; then skip dist_all "mu-train built without MPI"; exit 0; fi
# Open MPI: root may run it (CI runs as root); 2 processes on any number of cores
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMP_NUM_THREADS=1
mpi2() { timeout 120 mpirun -q -np 2 "$@"; }

cd "$T" || exit 1
if ! mu-init --out tiny --layers 2 --d-model 32 --heads 4 --kv-heads 2 --d-ff 64 --seed 3 >/dev/null 2>&1; then
    skip dist_all "mu-init failed"; exit 0
fi
for i in 0 1 2 3 4 5 6 7 8; do
    printf '{"name": "Player %s Quell", "sport": "%s"}\n' "$i" "$(echo golf tennis rugby chess polo judo darts squash sumo | cut -d' ' -f$((i + 1)))"
done > facts.jsonl
if ! mu-tokenize --model tiny --prompt '{name} plays' --target ' {sport}' facts.jsonl > facts.mpk.zst; then
    skip dist_all "mu-tokenize failed"; exit 0
fi

# npo (reference log-probs shared out), retain-ce, an evaluation of 9 records in batches of
# 2 (5 batches: 3 + 2), 4 micro-batches per step
A="--model tiny --objective npo=1,retain-ce=1 --forget facts.mpk.zst --retain facts.mpk.zst --steps 4"
A+=" --batch 2 --accum 4 --lr 1e-2 --mask mlp:0-1 --eval facts.mpk.zst --eval-every 2"
# close DELTA_A DELTA_B: every tensor B changes differs from A's by < 1e-5 of its norm, and
# A changed the model (mu-dump --stats: the second delta's change on top of the first)
close() { mu-dump --model tiny --delta "$1" --delta "$2" --stats |
          jq -e -s '[.[1:][] | select(.delta_elems[0] > 0)] | length > 0 and
                    all(.delta_rel[0] > 0.01 and .delta_rel[1] < 1e-5)' >/dev/null; }
export -f mpi2 close
t dist_two_processes_train_what_one_does bash -c "
  mu-train $A --out one.st --log one.log -q && mpi2 mu-train $A --out two.st --log two.log -q &&
  close one.st two.st &&
  awk -v a=\$(mu-dump one.log | tail -1 | jq .eval.facts.nll) -v b=\$(mu-dump two.log | tail -1 | jq .eval.facts.nll) \
    'BEGIN { d = a - b; exit !(a > 0 && (d < 0 ? -d : d) < 1e-6 * a) }' &&
  [ \"\$(mu-dump one.log | jq -c 'select(.step == 4 and .tokens) | .tokens')\" = \
    \"\$(mu-dump two.log | jq -c 'select(.step == 4 and .tokens) | .tokens')\" ] &&
  mu-dump two.log | head -1 | jq -e '.meta.options.processes == 2' >/dev/null"
t dist_same_bits_run_to_run bash -c "mpi2 mu-train $A --out two-b.st -q && cmp two.st two-b.st"

# weight masking (the penalty counted once) and LoRA (adapters summed like weights): the
# same last loss and evaluation as one process (low-rank deltas add, so the logs compare)
same_log() { mu-dump "$1" "$2" | jq -s -e '[.[] | select(.step == 4 and .loss)] as $l |
             [.[] | select(.step == 4 and .eval) | .eval.facts.nll] as $e |
             ($l | length) == 2 and ($e | length) == 2 and
             ($l[0].loss - $l[1].loss | fabs) < 1e-6 * $l[0].loss and ($e[0] - $e[1] | fabs) < 1e-6 * $e[0]' >/dev/null; }
export -f same_log
t dist_weight_mask_and_lora bash -c "
  for how in '--weight-mask 1e-6' '--lora 2'; do
    mu-train $A \$how --out w1.st --log w1.log -q && mpi2 mu-train $A \$how --out w2.st --log w2.log -q &&
      same_log w1.log w2.log || exit 1
  done && mu-dump --model tiny --delta w2.st --stats | jq -s -e 'any(.[]; .delta_rel[0]? > 0.01)' >/dev/null"

# rank 0 alone reports (one 'trained' line, one '2 processes' line) and writes
t dist_rank0_reports_once bash -c "
  mpi2 mu-train $A --out r.st 2> r.err && [ \$(grep -c 'trained 6 tensors' r.err) = 1 ] &&
  [ \$(grep -c '2 processes' r.err) = 1 ] && ! ls .r.st* 2>/dev/null | grep -q ."

# rank 0 cannot write its checkpoint: the job ends (no rank waits in a sum), exit != 0
t dist_failing_rank_ends_the_job bash -c "
  mpi2 mu-train $A --steps 50 --out f.st --checkpoint nodir/ck.mpk.zst --checkpoint-every 1 -q 2> f.err
  rc=\$?; [ \$rc != 0 ] && [ \$rc != 124 ] && grep -q 'mu-train\[0/2\]: .*nodir/ck' f.err && [ ! -e f.st ]"

expect_fail dist_accum_below_processes 2 'accum 1: 2 processes need at least one micro-batch each' \
  mpi2 mu-train $A --accum 1 --out x.st -q

# a pipeline's mu-train steps through TRAIN_LAUNCH with ACCUM=2 (pipelines/tiny.mk): run by
# 2 processes, with the outcome of the same ACCUM here. Over 80 + 40 steps at lr 1e-2 the
# float-order differences grow (1e-7 after 2 steps, 3e-4 after 40: training amplifies
# them), so the final evaluations are compared: same accuracies, nll within 2%.
tiny() { make --no-print-directory -C "$ROOT" -f pipelines/tiny.mk MU_BIN="$MU_BIN" ACCUM=2 "$@" >/dev/null 2>&1; }
final_evals() { mu-dump "$1" "$2" | jq -s -e '[.[] | select(.eval) | .eval] | .[length / 2 - 1] as $a | .[-1] as $b |
                ($a | keys) == ($b | keys) and all($a | keys[]; $a[.].acc == $b[.].acc and
                (($a[.].nll - $b[.].nll) | fabs) < 0.02 * $a[.].nll)' >/dev/null; }
export -f final_evals
if tiny OUT="$T/p1" && tiny OUT="$T/p2" TRAIN_LAUNCH="timeout 120 mpirun -q -np 2"; then
  t dist_pipeline_train_launch bash -c "
    mu-dump '$T/p2/unlearn.log.mpk.zst' | head -1 | jq -e '.meta.options | .processes == 2 and .accum == 2' >/dev/null &&
    final_evals '$T/p1/learn.log.mpk.zst' '$T/p2/learn.log.mpk.zst' &&
    final_evals '$T/p1/unlearn.log.mpk.zst' '$T/p2/unlearn.log.mpk.zst'"
else
  fail dist_pipeline_train_launch "make -f pipelines/tiny.mk ACCUM=2 (TRAIN_LAUNCH=mpirun) failed"
fi
