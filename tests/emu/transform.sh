#!/bin/sh
# transform.sh IN.cu OUT.cpp — the mechanical rewrite that lets g++ compile a CUDA source of
# kernels/cuda against the emulator (tests/emu/cuda_emu.h); line numbers are kept, and
# #line makes messages name the .cu file:
#   kernel<<<grid, block[, smem[, stream]]>>>(args)  ->  EMU_LAUNCH(kernel, grid, block...)(args)
#   extern __shared__ T name[];                      ->  T *name = emu_dyn_smem<T>();
#   __shared__ T decl;                               ->  static T decl; emu_shared_nan(...)
#   NULL on a launch line                            ->  nullptr (arguments keep their type)
#   __launch_bounds__(N, ...) NAME(                  ->  (kept) + at the end of the file,
#                                                        emu_bounds_reg emu_lb_NAME("NAME", N)
set -eu
in=$1; out=$2
[ -r "$in" ] || { echo "transform.sh: $in: cannot read" >&2; exit 1; }
tmp="$out.tmp.$$"
{
  printf '#line 1 "%s"\n' "$in"
  perl -pe '
    s/\bextern\s+__shared__\s+(\w+)\s+(\w+)\s*\[\s*\]\s*;/$1 *$2 = emu_dyn_smem<$1>();/;
    s/^(\s*)__shared__\s+([^;]*?)\s*\b(\w+)(\s*\[[^\]]*\])?\s*;/${1}static $2 $3$4; emu_shared_nan(&$3, sizeof $3);/;
    if (s/\b(\w+(?:<[^<>;]*>)?)<<<(.*?)>>>/EMU_LAUNCH($1, $2)/g) { s/\bNULL\b/nullptr/g; }
    push @lb, "static emu_bounds_reg emu_lb_$2(\"$2\", $1);\n"
        if /__launch_bounds__\(([^,)]+)[^)]*\)\s+(\w+)\s*\(/;
    END { print @lb }
  ' "$in"
} > "$tmp"
# nothing CUDA-only may be left behind
if grep -n '<<<\|>>>\|__shared__' "$tmp" | grep -v '^[0-9]*:\s*\(/\*\|\*\)' >&2; then
  echo "transform.sh: $in: launch or __shared__ syntax left untransformed" >&2
  rm -f "$tmp"; exit 1
fi
mv "$tmp" "$out"
