# lib.sh — helpers for shell tests of the tools. Source it; call `t NAME CMD...`;
# each test prints "ok NAME" or "FAIL NAME: why" (counted by tests/check.sh).
set -u
: "${MU_BIN:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/bin}"
: "${MU_SHARED:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/../shared}"
export PATH="$MU_BIN:$PATH"
SHARED_DATA="$MU_SHARED/data"
T=$(mktemp -d /tmp/mu-sh-XXXXXX)
# MU_KEEP_TMP=1 keeps the scratch directory (to read a failed test's files)
trap '[ -n "${MU_KEEP_TMP:-}" ] || rm -rf "$T"' EXIT
ok()   { echo "ok   $1"; }
fail() { echo "FAIL $1: $2"; }
skip() { echo "skip $1: $2"; }
# t NAME CMD...: passes when CMD exits 0; the output of a failing CMD is shown.
t() { local name=$1; shift; local out
  if out=$("$@" 2>&1); then ok "$name"; else fail "$name" "$(echo "$out" | tail -3 | tr '\n' ' ')"; fi; }
# expect_fail NAME STATUS PATTERN CMD...: CMD must exit STATUS with one stderr line matching PATTERN.
expect_fail() { local name=$1 want=$2 pat=$3; shift 3; local err rc
  err=$("$@" 2>&1 >/dev/null); rc=$?
  if [ "$rc" != "$want" ]; then fail "$name" "exit $rc, want $want: $err"; return; fi
  if ! grep -qE -- "$pat" <<<"$err"; then fail "$name" "stderr '$err' lacks /$pat/"; return; fi
  if [ "$(printf '%s\n' "$err" | wc -l)" -gt 1 ]; then fail "$name" "error is more than one line: $err"; return; fi
  ok "$name"; }
# holm_ok FILE: a paired-comparisons TSV's tenth column is its ninth (McNemar's p) adjusted by
# Holm's method over all its rows, computed here on its own: sort(1) ranks the p-values, the
# k-th smallest of m is multiplied by m - k + 1, a running maximum, capped at 1
holm_ok() { local m; m=$(wc -l < "$1")
  awk -F'\t' '{ print $9 "\t" $10 }' "$1" | sort -g -k1,1 |
    awk -F'\t' -v m="$m" '{ a = (m - NR + 1) * $1; if (a > run) run = a; w = run < 1 ? run : 1
                           d = w - $2; if (d < 0) d = -d; if (d > 1e-12 * w + 1e-300 || $2 < $1) bad = 1 }
                         END { exit bad || NR != m || m == 0 }'; }
# strength_paired_ok RUN REPORT KIND: RUN/strength-paired.tsv (each localization against a
# baseline at each strength, kind scaled-S) against what it is made of: Holm's column
# (holm_ok); at S = 1 each row that RUN/paired.tsv holds for the changed model (kind KIND) is
# that row; each difference is the two localizations' accuracies in RUN/strength.tsv
# subtracted; and REPORT's tables ("Against W:") print each row once, in its cell
strength_paired_ok() { local f=$1/strength-paired.tsv
  holm_ok "$f" && grep -q "over the $(wc -l < "$f") comparisons of strength-paired.tsv" "$2" &&
  awk -F'\t' -v kind="$3" '
    FNR == 1 { file++ }
    file == 1 { if ($2 == kind) p[$1, $3, $4] = $5 FS $6 FS $7 FS $8 FS $9; next }
    file == 2 { if ($1 == "choice_acc") { split($2, g, /[,=]/); a[g[2], g[4], g[6]] = $3 }; next }
    file == 3 { s = substr($2, length("scaled-") + 1); n++
      if (s == "1" && (($1, $3, $4) in p)) { one++; if (p[$1, $3, $4] != $5 FS $6 FS $7 FS $8 FS $9) bad = bad "S = 1: " $0 "; " }
      if (!(($3, s, $4) in a) || !(($1, s, $4) in a)) bad = bad "no accuracy: " $0 "; "
      d = a[$3, s, $4] - a[$1, s, $4]; if (d - $5 > 1e-9 || $5 - d > 1e-9) bad = bad "difference: " $0 "; "
      want[$1, $3, $4, s] = sprintf("%+.2f [%+.2f, %+.2f] (p %.2g, Holm %.2g)", $5, $7, $8, $9, $10); next }
    /^Against [^ ]+:$/ { w = substr($0, 9, length($0) - 9); next }
    w != "" && /^\| localization \| prompts \|/ { nc = split($0, f, / *\| */); for (i = 4; i < nc; i++) sc[i] = substr(f[i], 5); tab = 1; next }
    w != "" && /^\| [a-z]/ { nc = split($0, f, / *\| */)
      for (i = 4; i < nc; i++) { seen++; if (want[w, f[2], f[3], sc[i]] != f[i]) bad = bad "cell " w " " f[2] " " f[3] " " sc[i] ": " f[i] "; " } }
    /^$/ && tab { w = ""; tab = 0 }
    END { if (bad != "" || one == 0 || seen != n || n == 0) { print bad " one=" one " cells=" seen " rows=" n; exit 1 } }' \
    "$1/paired.tsv" "$1/strength.tsv" "$f" "$2"; }
# mask_bytes MASK: per tensor of a mask stream, its name and its bitset's bytes (base64(1),
# od(1)); mask_common A B: the parameters in both masks, counted bit by bit by awk (each
# bit a unit of UNIT parameters, default 32)
mask_bytes() { mu-dump --full -H --kind mask "$1" | jq -r '[.name, .bits.base64] | @tsv' |
               while IFS=$'\t' read -r name b64; do
                   echo "$name $(printf %s "$b64" | base64 -d | od -An -tu1 -v | tr -s ' \n' '  ')"
               done; }
mask_common() { { mask_bytes "$1"; echo; mask_bytes "$2"; } | awk -v unit="${UNIT:-32}" '
    NF == 0 { second = 1; next }
    !second { for (i = 2; i <= NF; i++) a[$1, i] = $i; next }
    { for (i = 2; i <= NF; i++) for (k = 0; k < 8; k++)
          n += int(a[$1, i] / 2 ^ k) % 2 * (int($i / 2 ^ k) % 2) }
    END { print n * unit }'; }
# st_values FILE NAME: the values of F32 tensor NAME of safetensors FILE, one per line
# (header length and offsets by od and jq, values by od -tf4: independent of mu)
st_values() { local hlen off
  hlen=$(od -An -tu8 -N8 "$1" | tr -d ' ')
  off=$(tail -c +9 "$1" | head -c "$hlen" | jq -r --arg n "$2" '.[$n] | select(.dtype == "F32") | .data_offsets | "\(.[0]) \(.[1])"')
  [ -n "$off" ] || { echo "st_values: $1: no F32 tensor $2" >&2; return 1; }
  set -- "$1" $off
  od -An -v -tf4 -j $((8 + hlen + $2)) -N $(($3 - $2)) "$1" | tr -s ' ' '\n' | sed '/^$/d'; }
