#!/usr/bin/env bash
# Runs the C unit tests, then every tests/sh/*.sh (each prints "ok"/"FAIL"/"skip" lines
# through tests/sh/lib.sh), and prints one closing line with the totals.
set -u
cd "$(dirname "$0")/.."
export MU_ROOT=$PWD
# Sanitized builds (make check SANITIZE=1): tools are short-lived processes that leave
# their memory to exit(), and LeakSanitizer's report at exit would change their exit
# status and stderr (which the tests check), so leak checking is off unless MU_LSAN=1.
# Every ASan/UBSan error still aborts the process (UBSan: -fno-sanitize-recover).
if [ "${MU_LSAN:-0}" = 1 ]; then lsan=1; else lsan=0; fi
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=$lsan:abort_on_error=0:exitcode=99}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
runner=$1
pass=0; fail=0; skip=0
tally() { # reads runner output, echoes it, counts
  while IFS= read -r line; do
    echo "$line"
    case "$line" in
      "ok "*) pass=$((pass+1));; "FAIL "*) fail=$((fail+1));; "skip "*) skip=$((skip+1));;
    esac
  done
}
tally < <("$runner" 2>&1 | grep -v '^c-tests:')
# the CUDA tests' own logic and the model's device-memory paths, with the CPU backend
# posing as a device (tests/gpu_test.h); names get a "fake-gpu:" prefix
tally < <(MU_TEST_FAKE_GPU=1 "$runner" cuda 2>&1 | grep -v '^c-tests:' |
          sed -E 's/^(ok|FAIL|skip) +/\1 fake-gpu:/')
# the CUDA backend's own source on the CPU (tests/emu: the CUDA emulator, built where
# ucontext exists): the emulator's attention harness, then the CUDA tests against the
# emulated backend (MU_CUDA_EMU=1 in their environment); names get an "emu:" prefix. Each
# process lists the kernels it launched (MU_EMU_COVERAGE): every __global__ function of
# kernels/cuda must have run.
emu_cov=
if [ -n "${MU_EMU_TESTS:-}${MU_EMU_ATTN:-}" ]; then emu_cov=$(mktemp); fi
if [ -n "${MU_EMU_ATTN:-}" ] && [ -x "$MU_EMU_ATTN" ]; then
  tally < <(MU_EMU_COVERAGE=$emu_cov "$MU_EMU_ATTN" 2>&1 | grep -v '^emu-attn: [0-9]* failure' |
            sed -E 's/^(ok|FAIL|skip) +emu-attn: /\1 emu:attn: /'; rc=${PIPESTATUS[0]}
            [ "$rc" -eq 0 ] || echo "FAIL emu:attn: emu-attn exited with status $rc")
fi
# Under ASan+UBSan (build/san) the emulated attention op tests and the stories260K model
# test take minutes: there the tiled attention kernels are covered by emu-attn above, the
# warp kernels by the random-Llama model tests run with MU_CUDA_ATTENTION=warp, and the
# model by those tests; the plain build runs every emulated test.
emu_filters=(cuda)
case "$runner" in
  */san/*) emu_filters=(cuda_matmul cuda_bias cuda_rmsnorm cuda_layernorm cuda_copy_rows
                        cuda_rope cuda_glu cuda_softcap cuda_log_softmax cuda_to_bf16
                        cuda_embed cuda_optim cuda_model_random cuda_model_bf16
                        cuda_model_backward cuda_backend_by_name) ;;
esac
if [ -n "${MU_EMU_TESTS:-}" ] && [ -x "$MU_EMU_TESTS" ]; then
  for f in "${emu_filters[@]}"; do
    attn=auto
    [ "${#emu_filters[@]}" -gt 1 ] && [ "$f" = cuda_model_random ] && attn=warp
    tally < <(MU_CUDA_EMU=1 MU_EMU_COVERAGE=$emu_cov OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} \
              MU_CUDA_ATTENTION=$attn "$MU_EMU_TESTS" "$f" 2>&1 | grep -v '^c-tests:' | sed -E 's/^(ok|FAIL|skip) +/\1 emu:/'
              rc=${PIPESTATUS[0]}   # 1: failed tests (their lines say so); else a crash
              [ "$rc" -eq 0 ] || [ "$rc" -eq 1 ] || echo "FAIL emu: run-tests-emu $f exited with status $rc")
  done
  emu_all=$(perl -ne 'print "$1\n" if /^\s*__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s+)?(\w+)\s*\(/' \
            kernels/cuda/*.cu | sort -u)
  emu_ran=$(comm -12 <(echo "$emu_all") <(sed 's/<.*//' "$emu_cov" | sort -u))
  emu_missing=$(comm -23 <(echo "$emu_all") <(echo "$emu_ran") | tr '\n' ' ')
  emu_inst=$(sort -u "$emu_cov" |
             while IFS= read -r k; do grep -qxF "${k%%<*}" <<< "$emu_ran" && echo "$k"; done | wc -l)
  n_all=$(grep -c . <<< "$emu_all"); n_ran=$(grep -c . <<< "$emu_ran")
  if [ "$n_ran" -eq "$n_all" ] && [ "$n_all" -gt 0 ]; then
    tally <<< "ok emu:coverage: $n_ran of $n_all kernels launched ($emu_inst instantiations)"
  else
    tally <<< "FAIL emu:coverage: $n_ran of $n_all kernels launched; never: $emu_missing"
  fi
fi
[ -z "$emu_cov" ] || rm -f "$emu_cov"
# the fuzz targets (tests/fuzz) replayed on their seeds and on the inputs that once failed;
# a target aborts (its checks, or a sanitizer with SANITIZE=1) on a violated contract
for replay in ${MU_FUZZ_REPLAY:-}; do
  name=${replay##*/replay_}
  mapfile -t inputs < <(tests/fuzz/seeds.sh "$name")
  if out=$("$replay" "${inputs[@]}" 2>&1); then
    tally <<< "ok fuzz:$name: ${#inputs[@]} inputs replayed"
  else
    tally <<< "FAIL fuzz:$name: $(grep -v '^ok ' <<< "$out" | head -3 | tr '\n' ' ') after $(grep -c '^ok ' <<< "$out") inputs"
  fi
done
# a hung shell test script is killed (MU_SH_TIMEOUT seconds, default 1800) and counted
for t in tests/sh/t_*.sh; do
  [ -e "$t" ] || continue
  tally < <(timeout -k 10 "${MU_SH_TIMEOUT:-1800}" bash "$t" 2>&1
            rc=$?; [ $rc -eq 124 ] || [ $rc -eq 137 ] && echo "FAIL $t: killed after ${MU_SH_TIMEOUT:-1800} s (MU_SH_TIMEOUT)")
done
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
