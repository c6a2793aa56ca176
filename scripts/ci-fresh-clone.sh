#!/usr/bin/env bash
# ci-fresh-clone.sh — runs .ci/run on a fresh clone of this checkout's HEAD (what CI
# sees: only committed files), with ../shared linked beside the clone when it exists.
#   scripts/ci-fresh-clone.sh [DIR]     (default /tmp/mu-ci)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-/tmp/mu-ci}
rm -rf "$dir"
git clone -q "$src" "$dir"
if [ -d "$src/../shared" ] && [ ! -e "$(dirname "$dir")/shared" ]; then
  ln -s "$(cd "$src/../shared" && pwd)" "$(dirname "$dir")/shared"
fi
cd "$dir"
CI=true bash .ci/run
