#!/usr/bin/env bash
# run.sh TARGET... — `make fuzz`: runs each libFuzzer target built in $FUZZ_DIR for
# $FUZZ_SECONDS, its corpus in $FUZZ_DIR/corpus/TARGET (kept between runs, started from
# tests/fuzz/seeds.sh). A failure stops the run: the input is left in
# $FUZZ_DIR/failures/TARGET/ and the exit status is 1. One summary line per target.
set -u
cd "$(dirname "$0")/../.." || exit 1
dir=${FUZZ_DIR:-build/fuzz}; secs=${FUZZ_SECONDS:-60}
status=0
for t in "$@"; do
  exe=$dir/$t
  if [ ! -x "$exe" ]; then echo "fuzz: $exe: not built" >&2; exit 1; fi
  corpus=$dir/corpus/$t; failures=$dir/failures/$t; log=$dir/$t.log
  mkdir -p "$corpus" "$failures"
  tests/fuzz/seeds.sh "$t" | while IFS= read -r f; do cp -n "$f" "$corpus/" 2>/dev/null; done
  # inputs up to the largest seed (at least 64 KiB, so that no seed is cut short); 4 GiB of
  # memory: a loader must refuse a huge claimed size, not try it
  maxlen=$(tests/fuzz/seeds.sh "$t" | xargs -r stat -c %s | sort -n | tail -1)
  [ "${maxlen:-0}" -ge 65536 ] || maxlen=65536
  "$exe" -max_total_time="$secs" -max_len="$maxlen" -rss_limit_mb=4096 -timeout=20 \
         -artifact_prefix="$failures/" -print_final_stats=1 "$corpus" > "$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
  if [ $rc -eq 0 ]; then
    echo "ok   fuzz $t: ${runs:-?} inputs in ${secs} s, ${cov:-cov: ?}, corpus $(ls "$corpus" | wc -l)"
  else
    echo "FAIL fuzz $t: exit $rc; input: $(ls -t "$failures" | head -1 | sed "s|^|$failures/|"); log: $log"
    grep -m1 -E 'ERROR|runtime error|abort' "$log" | sed 's/^/     /'
    status=1
  fi
done
exit $status
