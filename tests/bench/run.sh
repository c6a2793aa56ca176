#!/usr/bin/env bash
# make bench: runs every benchmark binary built from tests/bench/*.c (in $BENCH_DIR) and
# every tests/bench/*.sh other than this one. Each prints its own table; speed is always
# reported next to a reference measured in the same run (sgemm ceiling, PyTorch, HF tokenizers).
# MU_PYTHON: a python with torch/tokenizers for the reference figures (default: python3).
set -u
cd "$(dirname "$0")/../.."
export MU_PYTHON=${MU_PYTHON:-python3}
for b in "$BENCH_DIR"/*; do
  [ -x "$b" ] || continue
  echo "== $(basename "$b")"; "$b" || echo "(benchmark $(basename "$b") failed: exit $?)"
done
for s in tests/bench/*.sh; do
  [ "$(basename "$s")" = run.sh ] && continue
  echo "== $(basename "$s")"; bash "$s" || echo "(benchmark $(basename "$s") failed: exit $?)"
done
