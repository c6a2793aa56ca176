#!/usr/bin/env bash
# scripts/coverage.sh BUILD: after `make COVERAGE=1 all-tests` (make coverage), the share
# of lines the tests ran in each C source of lib/, kernels/cpu/ and tools/ (gcov, from the
# counters under BUILD), the total, and the functions no test ran. Writes
# BUILD/coverage/files.tsv (file, lines, lines run, percent) and
# BUILD/coverage/unrun.tsv (file, function, lines); prints the table on stdout.
set -euo pipefail
build=${1:?usage: scripts/coverage.sh BUILD}
cd "$(dirname "$0")/.."
[ -d "$build/lib" ] || { echo "coverage.sh: $build/lib: no coverage build (run make coverage)" >&2; exit 1; }
out=$build/coverage
mkdir -p "$out"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for src in lib/*.c kernels/cpu/*.c tools/*.c; do
  obj=$build/${src%.c}.o              # the object itself may be gone (make deletes tools'
  [ -f "${obj%.o}.gcno" ] || continue  # objects as intermediates); its .gcno stays
  # -n: no .gcov files; -f: per-function summaries before the file's own
  gcov -n -f -o "$obj" "$src" 2>/dev/null | awk -v src="$src" -v tmp="$tmp" '
    /^Function / { fn = $2; gsub(/\047/, "", fn); next }
    /^File /     { f = $2; gsub(/\047/, "", f); fn = ""; next }
    /^Lines executed:/ {
      split($0, a, /[:% ]+/)          # Lines executed:P% of N -> a[3]=P, a[5]=N
      pct = a[3] + 0; n = a[5] + 0
      if (fn != "") { if (pct == 0 && n > 0) printf "%s\t%s\t%d\n", src, fn, n >> (tmp "/unrun") ; fn = ""; next }
      if (f == src) printf "%s\t%d\t%d\t%.1f\n", src, n, int(n * pct / 100 + 0.5), pct >> (tmp "/files")
      f = ""                          # gcov ends with a total line of its own
    }'
done
{ printf 'file\tlines\trun\tpercent\n'; sort -t$'\t' -k4,4n "$tmp/files"; } > "$out/files.tsv.tmp"
mv "$out/files.tsv.tmp" "$out/files.tsv"
# gcov also names the inline functions of included headers (msgpack's packers): keep the
# functions the source itself defines
touch "$tmp/unrun"
{ printf 'file\tfunction\tlines\n'
  sort "$tmp/unrun" | while IFS=$'\t' read -r src fn n; do
    grep -qE "^[A-Za-z_].*[^A-Za-z0-9_]$fn\(" "$src" && printf '%s\t%s\t%s\n' "$src" "$fn" "$n"
    :
  done; } > "$out/unrun.tsv.tmp"
mv "$out/unrun.tsv.tmp" "$out/unrun.tsv"
awk -F'\t' 'NR > 1 { printf "%-28s %6d lines %6.1f%%\n", $1, $2, $4; n += $2; r += $3 }
            END { printf "%-28s %6d lines %6.1f%%\n", "total", n, (n ? 100 * r / n : 0) }' "$out/files.tsv"
echo "functions no test ran: $(($(wc -l < "$out/unrun.tsv") - 1)) (list: $out/unrun.tsv)"
