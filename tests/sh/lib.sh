# lib.sh — helpers for shell tests of the tools. Source it; call `t NAME CMD...`;
# each test prints "ok NAME" or "FAIL NAME: why" (counted by tests/check.sh).
set -u
: "${MU_BIN:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/bin}"
: "${MU_SHARED:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/../shared}"
export PATH="$MU_BIN:$PATH"
SHARED_DATA="$MU_SHARED/data"
T=$(mktemp -d /tmp/mu-sh-XXXXXX)
trap 'rm -rf "$T"' EXIT
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
