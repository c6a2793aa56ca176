#!/usr/bin/env bash
# t_conventions.sh — every built tool in $MU_BIN follows the conventions: --help on
# stdout with exit 0, --version with exit 0, an unknown option is a one-line usage
# error with exit 2, and a man page man/<tool>.1 that renders without warnings; messages
# quoting hostile bytes stay one printable line.
. "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
shopt -s nullglob
tools=("$MU_BIN"/mu-*)
if [ ${#tools[@]} -eq 0 ]; then skip conventions "no tools built in $MU_BIN"; exit 0; fi
have_groff=0; command -v groff >/dev/null && have_groff=1

for exe in "${tools[@]}"; do
  [ -x "$exe" ] || continue
  tool=$(basename "$exe")
  out=$("$exe" --help 2>"$T/err"); rc=$?
  if [ $rc -ne 0 ]; then fail "$tool-help" "exit $rc"
  elif [ -z "$out" ]; then fail "$tool-help" "nothing on stdout"
  elif [ -s "$T/err" ]; then fail "$tool-help" "wrote to stderr: $(head -1 "$T/err")"
  elif ! grep -q "$tool" <<<"$out"; then fail "$tool-help" "help does not name the tool"
  else ok "$tool-help"; fi

  out=$("$exe" --version 2>/dev/null); rc=$?
  if [ $rc -ne 0 ]; then fail "$tool-version" "exit $rc"
  elif ! grep -qE "^$tool .*[0-9]+\.[0-9]+" <<<"$out"; then fail "$tool-version" "'$out' lacks the tool name and a version"
  else ok "$tool-version"; fi

  expect_fail "$tool-unknown-option" 2 "^$tool: .*no-such-option" "$exe" --no-such-option-xyz </dev/null

  man=$ROOT/man/$tool.1
  if [ ! -f "$man" ]; then fail "$tool-man" "man/$tool.1 missing"
  elif [ $have_groff = 0 ]; then skip "$tool-man" "groff not installed"
  else
    warn=$(groff -man -Tutf8 -ww -z "$man" 2>&1)
    if [ -n "$warn" ]; then fail "$tool-man" "groff: $(head -2 <<<"$warn" | tr '\n' ' ')"
    elif ! grep -q '^\.SH NAME' "$man" || ! grep -q '^\.SH SYNOPSIS' "$man"; then fail "$tool-man" "no NAME or SYNOPSIS section"
    else ok "$tool-man"; fi
  fi
done

# section 5: the stream format
if [ -f "$ROOT/man/mu-stream.5" ] && [ $have_groff = 1 ]; then
  warn=$(groff -man -Tutf8 -ww -z "$ROOT/man/mu-stream.5" 2>&1)
  if [ -n "$warn" ]; then fail mu-stream.5 "groff: $(head -2 <<<"$warn" | tr '\n' ' ')"; else ok mu-stream.5; fi
elif [ ! -f "$ROOT/man/mu-stream.5" ]; then fail mu-stream.5 "man/mu-stream.5 missing"
else skip mu-stream.5 "groff not installed"; fi
# the other file formats and overviews (mu-delta.5, mu-soft-prompt.5, mu-cuda.7, ...)
for page in "$ROOT"/man/*.5 "$ROOT"/man/*.7; do
  name=$(basename "$page")
  [ "$name" = mu-stream.5 ] && continue
  if [ $have_groff = 0 ]; then skip "$name" "groff not installed"; continue; fi
  warn=$(groff -man -Tutf8 -ww -z "$page" 2>&1)
  if [ -n "$warn" ]; then fail "$name" "groff: $(head -2 <<<"$warn" | tr '\n' ' ')"
  elif ! grep -q '^\.SH NAME' "$page"; then fail "$name" "no NAME section"
  else ok "$name"; fi
done

# messages stay one printable line when they quote a hostile file's or argument's bytes:
# a GGUF key with a terminal escape, a newline and an invalid byte; a template field name
# with the same. The bytes are shown escaped (\x1b, \n, \xff), nothing raw reaches stderr.
cd "$T" || exit 1
printf 'GGUF\x03\0\0\0\0\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\x0c\0\0\0\0\0\0\0ke\x1b[2Jy\n\xffxyz\x63\0\0\0' > evil.gguf
echo '{"name": "Ada"}' > one.jsonl
raw_free() { ! LC_ALL=C grep -q "$(printf '[\001-\010\013-\037\177\200-\377]')" "$1"; }
printable() { local name=$1 pat=$2; shift 2; local rc
  "$@" >/dev/null 2>err.txt; rc=$?
  if [ $rc -ne 1 ]; then fail "$name" "exit $rc, want 1"
  elif [ "$(wc -l < err.txt)" -ne 1 ]; then fail "$name" "$(wc -l < err.txt) lines on stderr"
  elif ! raw_free err.txt; then fail "$name" "raw control or invalid bytes on stderr"
  elif ! grep -qF -- "$pat" err.txt; then fail "$name" "'$(cat err.txt)' lacks '$pat'"
  else ok "$name"; fi; }
printable messages_escape_gguf_key 'evil.gguf: metadata 0 (ke\x1b[2Jy\n\xffxyz): unknown value type 99' \
  mu-tokenize --model evil.gguf --prompt x one.jsonl
if mu-init --out tiny --layers 1 --d-model 16 --heads 2 --d-ff 32 >/dev/null 2>&1; then
  printable messages_escape_template_field 'template field {na\x1bme\n}: not in the record' \
    mu-tokenize --model tiny --prompt "$(printf '{na\033me\n} plays')" one.jsonl
else fail messages_escape_template_field "mu-init failed"; fi
