#!/usr/bin/env bash
# Runs the C unit tests, then every tests/sh/*.sh (each prints "ok"/"FAIL"/"skip" lines
# through tests/sh/lib.sh), and prints one closing line with the totals.
set -u
cd "$(dirname "$0")/.."
export MU_ROOT=$PWD
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
for t in tests/sh/t_*.sh; do
  [ -e "$t" ] || continue
  tally < <(bash "$t" 2>&1)
done
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
