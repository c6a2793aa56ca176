#!/usr/bin/env bash
# t_bench.sh — the CUDA benchmark's own logic on the CPU (MU_BENCH_CPU_SMOKE=1: a tiny
# model, every pass, the masked step's "only the chosen columns changed" check, the LoRA
# step's "adapters moved, weights kept" check, the final
# table). Speed is not tested here (make bench measures it).
. "$(dirname "$0")/lib.sh"
B="$MU_BIN/../bench/bench_cuda"
if [ ! -x "$B" ]; then skip bench_cuda_smoke "no $B (make all-tests builds it)"; exit 0; fi
MU_PYTHON=/nonexistent MU_BENCH_CPU_SMOKE=1 OMP_NUM_THREADS=1 "$B" >"$T/out.txt" 2>&1
rc=$?
if grep -q '^bench_cuda: skipped (built without CUDA' "$T/out.txt"; then
  for n in exit masked_check lora_check table; do skip "bench_cuda_smoke_$n" "bench_cuda built without CUDA (its smoke mode is part of the CUDA build)"; done
  exit 0
fi
t bench_cuda_smoke_exit test "$rc" = 0
t bench_cuda_smoke_masked_check bash -c "[ \$(grep -c '^masked check: ok' '$T/out.txt') = 2 ]"
t bench_cuda_smoke_lora_check bash -c "[ \$(grep -c '^lora check: ok' '$T/out.txt') = 2 ]"
t bench_cuda_smoke_table bash -c "grep -q '^| shape | dtype | pass |' '$T/out.txt' &&
  [ \$(grep -c '^| tiny/' '$T/out.txt') = 8 ] && [ \$(grep -c '^| tiny/2L | [a-z0-9]* | lora |' '$T/out.txt') = 2 ]"
