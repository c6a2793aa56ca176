#!/usr/bin/env bash
# t_terminal.sh — what the tools do on a terminal, when killed and when stdout fails: a
# progress bar on stderr when it is a terminal (a pseudo-terminal from script(1)), none with
# --quiet or when stderr is a file, stdout still only the output; a fatal signal (SIGTERM,
# SIGHUP) mid-output leaves neither the output nor its temporary file, and the tool dies of
# it; output to a full device (/dev/full) is a one-line error and exit 1, never success.
. "$(dirname "$0")/lib.sh"
cd "$T" || exit 1
if ! command -v script >/dev/null; then skip terminal_all "no script(1) (util-linux)"; exit 0; fi
if ! mu-init --out tiny --layers 2 --d-model 32 --heads 4 --d-ff 64 -q >/dev/null 2>&1; then
  skip terminal_all "mu-init failed"; exit 0
fi
for i in $(seq 1 40); do echo "{\"name\": \"Player $i\", \"sport\": \"golf\"}"; done > facts.jsonl
mu-tokenize -q --model tiny --prompt '{name} plays' --target ' {sport}' facts.jsonl > facts.tok || exit 1

# on_tty NAME CMD: runs CMD (a shell line) with stderr on a pseudo-terminal; the
# terminal's bytes land in NAME.tty
on_tty() { script -qefc "$2" "$1.tty" >/dev/null 2>&1; }
# a bar with a total ("train [###.....] 3/5 12/s eta 0s"), a count without one
# ("forward 30 1200/s": streams have no record count up front)
bar='(\[#*\.*\] [0-9]+/[0-9]+|forward [0-9]+) [0-9]+/s'
has_bar() { tr '\r' '\n' < "$1" | grep -qE "$bar"; }

t terminal_forward_bar bash -c "$(declare -f on_tty has_bar); bar='$bar'
  on_tty fw 'mu-forward --model tiny --batch-tokens 16 facts.tok > fw.out' && has_bar fw.tty &&
  mu-dump fw.out | head -1 | jq -e '.kind == \"outputs\"' >/dev/null &&
  [ \"\$(mu-dump fw.out | tail -n +2 | wc -l)\" = 40 ]"
t terminal_train_bar bash -c "$(declare -f on_tty has_bar); bar='$bar'
  on_tty tr 'mu-train --model tiny -O learn --train facts.tok --steps 5 --batch 4 --out tr.st' &&
  has_bar tr.tty && [ -s tr.st ]"
t terminal_quiet_no_bar bash -c "$(declare -f on_tty has_bar); bar='$bar'
  on_tty q 'mu-forward -q --model tiny --batch-tokens 16 facts.tok > q.out' && [ -s q.out ] && ! has_bar q.tty &&
  ! grep -q \$'\\033' q.tty"
t terminal_file_no_bar bash -c "
  mu-forward --model tiny --batch-tokens 16 facts.tok > f.out 2> f.err && [ -s f.out ] && ! grep -q \$'\\r' f.err"

# killed mid-output: the input is a FIFO held open, so the tool is caught waiting for
# more records with its temporary output open
kill_midway() { # SIG STATUS: mu-forward --out k.out, killed by SIG once k.out.tmp.* exists
  rm -f k.out k.out.tmp.* in.fifo; mkfifo in.fifo
  mu-forward -q --model tiny --batch-tokens 16 --out k.out < in.fifo &
  local pid=$!
  exec 3> in.fifo; cat facts.tok >&3
  for _ in $(seq 100); do compgen -G 'k.out.tmp.*' >/dev/null && break; sleep 0.1; done
  if ! compgen -G 'k.out.tmp.*' >/dev/null; then echo "no temporary output"; exec 3>&-; wait; return 1; fi
  kill -s "$1" "$pid"
  wait "$pid"; local rc=$?
  exec 3>&-
  [ "$rc" = "$2" ] || { echo "exit $rc, want $2"; return 1; }
  [ ! -e k.out ] || { echo "k.out exists"; return 1; }
  ! compgen -G 'k.out.tmp.*' >/dev/null || { echo "temporary output left: $(echo k.out.tmp.*)"; return 1; }
}
t terminal_sigterm_no_output kill_midway TERM 143
t terminal_sighup_no_output kill_midway HUP 129

# stdout on a full device: --help of every tool, and each tool's output
if [ -w /dev/full ]; then
  # full NAME CMD...: CMD with stdout on /dev/full exits 1 with one stderr line
  # "TOOL: <stdout>: write failed: ..."
  full() { local name=$1 tool; shift; local err rc; tool=$(basename "$1")
    err=$("$@" 2>&1 >/dev/full </dev/null); rc=$?
    if [ "$rc" = 1 ] && [ "$(printf '%s\n' "$err" | wc -l)" = 1 ] && grep -q "^$tool: <stdout>: write failed" <<<"$err"
    then ok "$name"; else fail "$name" "exit $rc: $err"; fi; }
  for exe in "$MU_BIN"/mu-*; do full "terminal_full_$(basename "$exe")_help" "$exe" --help; done
  full terminal_full_tokenize mu-tokenize -q --model tiny --prompt '{name} plays' --target ' {sport}' facts.jsonl
  full terminal_full_forward mu-forward -q --model tiny facts.tok
  full terminal_full_dump mu-dump facts.tok
  full terminal_full_maskgen mu-maskgen -q --random --model tiny --tensors mlp:0 -g neuron --units 3
  full terminal_full_score mu-score --format tsv fw.out
else
  skip terminal_full "no writable /dev/full"
fi
