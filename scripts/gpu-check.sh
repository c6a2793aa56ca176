#!/usr/bin/env bash
# gpu-check.sh — the one script a session with a lent GPU runs through the device tool:
#   run(command="bash scripts/gpu-check.sh", carry=[".gpu.tgz"])  (scripts/gpu-bundle.sh; the
#   script unpacks it into .gpu/ first)
# Stages, each under its own `timeout`, each writing a file into $OUT (else ./gpu-out):
#   env.txt         machine, compilers, git revision, python/torch/transformers versions
#   nvidia-smi.txt  nvidia-smi before and after
#   build.txt       the CUDA build: `make -j16` (skipped when .gpu/bin from gpu-bundle.sh runs
#                   here; --build forces it, against .gpu/include and .gpu/lib if present)
#   tests.txt       run-tests cuda (MU_CUDA_DEBUG=1: a fault is reported at its kernel), the
#                   model tests again with the warp attention kernels
#                   (MU_CUDA_ATTENTION=warp), then the whole run-tests
#   tools.txt       tests/sh/t_cuda_tools.sh: mu-forward and mu-train --device cuda against
#                   the same runs on the CPU
#   check.txt       only with --check: the whole suite with the shell tests (make check)
#   bench.txt       bench_cuda (tests/bench/bench_cuda.c): mu next to PyTorch, ends in a
#                   markdown table; MU_BENCH_BUDGET_S (default 240) bounds it (timeout: 60 s
#                   more). Every MU_BENCH_* variable passes through, e.g. the 32-layer 8B
#                   cases that a 240 s budget skips (their random init alone is ~2 min):
#                   MU_BENCH_SHAPES=llama3-8b MU_BENCH_DTYPES=bf16 MU_BENCH_BUDGET_S=420 \
#                     bash scripts/gpu-check.sh --no-tests
#   summary.txt     what is printed at the end: each stage's status and time, the test
#                   totals, the bench table
# Target: under 8 minutes on an H200 without --check. Options: --check, --build, --no-tests,
# --no-bench. MU_PYTHON: the python for the PyTorch figures (default python3, which must
# import torch and transformers; said in bench.txt and the summary when it cannot).
set -u
cd "$(dirname "$0")/.." || exit 1
root=$PWD
out=${OUT:-$root/gpu-out}
mkdir -p "$out"
do_check=0; force_build=0; do_tests=1; do_bench=1
for a in "$@"; do
  case $a in
    --check) do_check=1 ;;
    --build) force_build=1 ;;
    --no-tests) do_tests=0 ;;
    --no-bench) do_bench=0 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "gpu-check: unknown option $a (see --help)" >&2; exit 2 ;;
  esac
done
summary=()
t_start=$SECONDS
# the bundle travels packed (scripts/gpu-bundle.sh): unpack it once
if [ -f .gpu.tgz ] && { [ ! -d .gpu ] || [ .gpu.tgz -nt .gpu ]; }; then
  rm -rf .gpu && tar -xzf .gpu.tgz && touch .gpu || { echo "gpu-check: cannot unpack .gpu.tgz" >&2; exit 1; }
fi

# stage NAME SECONDS FILE CMD...: runs CMD under timeout, appending to FILE; notes the result.
stage() {
  local name=$1 secs=$2 file=$3 t0=$SECONDS rc
  shift 3
  echo "== $name: $*" | tee -a "$file"
  timeout -k 10 "$secs" "$@" >>"$file" 2>&1
  rc=$?
  local how="ok"
  [ "$rc" -ne 0 ] && how="FAILED (exit $rc)"
  [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && how="TIMED OUT after ${secs} s"
  summary+=("$(printf '%-12s %-26s %4d s  %s' "$name" "$how" $((SECONDS - t0)) "$file")")
  echo "   $how in $((SECONDS - t0)) s"
  return "$rc"
}

write_env() {
  {
    date -u; uname -a; nproc; free -g
    git rev-parse HEAD 2>/dev/null; git status --short 2>/dev/null | head -20
    gcc --version | head -1
    if command -v nvcc >/dev/null; then nvcc --version | tail -2; else echo "nvcc: not found"; fi
    "$py" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.is_available() and torch.cuda.get_device_name(0))' 2>&1
    "$py" -c 'import transformers; print("transformers", transformers.__version__)' 2>&1
    ls .gpu 2>/dev/null && echo "(.gpu bundle present)"
  } >"$out/env.txt" 2>&1
}

write_smi() {
  {
    echo "== $1"
    if command -v nvidia-smi >/dev/null; then
      nvidia-smi
      nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.max.sm,clocks.sm,power.limit,temperature.gpu --format=csv
    else
      echo "nvidia-smi: not found"
    fi
  } >>"$out/nvidia-smi.txt" 2>&1
}

# Puts the directory of the CUDA runtime and cuBLAS (13) on LD_LIBRARY_PATH when the
# binaries' rpath (/usr/local/cuda/lib64) does not hold them on this machine.
find_cuda_libs() {
  local d
  for d in /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
           $("$py" -c 'import nvidia, os; print(" ".join(os.path.join(p, q, "lib") for p in nvidia.__path__ for q in os.listdir(p)))' 2>/dev/null); do
    if [ -e "$d/libcublas.so.13" ] || [ -e "$d/libcudart.so.13" ]; then
      export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$d"
    fi
  done
  echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}" >>"$out/env.txt"
}

# Chooses the binaries: the bundle's when they start here, else a build of build/rel.
# Sets run_tests, bench, tools_dir; returns non-zero when neither is usable.
choose_binaries() {
  if [ "$force_build" = 0 ] && [ -x .gpu/bin/run-tests ]; then
    export LD_LIBRARY_PATH="$root/.gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    if .gpu/bin/run-tests nosuchtest >/dev/null 2>&1; then
      run_tests=.gpu/bin/run-tests; bench=.gpu/bin/bench_cuda; tools_dir=$root/.gpu/bin
      [ -d .gpu/shared/data ] && export MU_SHARED="$root/.gpu/shared"
      summary+=("binaries     .gpu/bin (gpu-bundle.sh)")
      return 0
    fi
    echo "gpu-check: .gpu/bin/run-tests does not start here; building" | tee -a "$out/build.txt"
  fi
  local vars=()
  if [ -d .gpu/lib ] && [ -d .gpu/include ]; then    # no -dev packages on the machine
    vars=(PKG_CFLAGS="-I$root/.gpu/include"
          PKG_LIBS="$(printf '%s ' "$root"/.gpu/lib/*.so*) -Wl,-rpath,$root/.gpu/lib")
  fi
  stage build 300 "$out/build.txt" make -j16 "${vars[@]}" all build/rel/tests/run-tests \
    build/rel/bench/bench_cuda || return 1
  grep -q 'cuda=on' "$out/build.txt" || echo "gpu-check: warning: the build did not enable CUDA" | tee -a "$out/build.txt"
  run_tests=build/rel/tests/run-tests; bench=build/rel/bench/bench_cuda; tools_dir=$root/build/rel/bin
  [ -d ../shared/data ] && export MU_SHARED="$root/../shared"
  return 0
}

run_checks() {
  if [ -d .gpu/bin ] && [ "$run_tests" = .gpu/bin/run-tests ]; then
    MU_BIN=$tools_dir stage check 420 "$out/check.txt" tests/check.sh "$run_tests"
  else
    stage check 420 "$out/check.txt" make -j16 check
  fi
}

run_bench() {
  if ! "$py" -c 'import torch' >/dev/null 2>&1; then
    echo "gpu-check: $py cannot import torch: the PyTorch figures will be skipped" | tee -a "$out/bench.txt"
  elif ! "$py" -c 'import transformers' >/dev/null 2>&1; then
    echo "gpu-check: $py has torch but not transformers: the PyTorch figures will be skipped" | tee -a "$out/bench.txt"
  fi
  local budget=${MU_BENCH_BUDGET_S:-240}
  MU_PYTHON=$py MU_BENCH_BUDGET_S=$budget \
    stage bench $(( ${budget%.*} + 60 )) "$out/bench.txt" "$bench"
}

print_summary() {
  {
    echo "gpu-check: $(date -u), $((SECONDS - t_start)) s in all, output in $out"
    printf '%s\n' "${summary[@]}"
    grep -h '^c-tests:\|^FAIL' "$out/tests.txt" 2>/dev/null | head -20
    grep -h '^ok\|^FAIL\|^skip' "$out/tools.txt" 2>/dev/null
    [ -f "$out/check.txt" ] && tail -3 "$out/check.txt"
    if [ -f "$out/bench.txt" ]; then
      grep -h '^device \|^bench_cuda: \|^torch: \|^gpu-check: ' "$out/bench.txt" | sort -u
      sed -n '/^| shape |/,$p' "$out/bench.txt"
    fi
  } | tee "$out/summary.txt"
}

py=${MU_PYTHON:-python3}
write_env
find_cuda_libs
write_smi "before"
run_tests=""; bench=""; tools_dir=""
if choose_binaries; then
  if [ "$do_tests" = 1 ]; then
    MU_CUDA_DEBUG=1 stage cuda-tests 150 "$out/tests.txt" "$run_tests" cuda
    MU_CUDA_ATTENTION=warp stage cuda-warp 90 "$out/tests.txt" "$run_tests" cuda_
    stage all-tests 180 "$out/tests.txt" "$run_tests"
    MU_BIN=$tools_dir stage tools 120 "$out/tools.txt" bash tests/sh/t_cuda_tools.sh
  fi
  [ "$do_check" = 1 ] && run_checks
  [ "$do_bench" = 1 ] && run_bench
fi
write_smi "after"
print_summary
