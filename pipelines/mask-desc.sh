#!/bin/sh
# mask-desc.sh MASK — a mask file's MLP tensors as the reports name them: "mlp:L,L,..." when
# it takes whole MLPs (gate, up and down of each of its layers), else every matrix,
# "mlp:L.gate,L.up,L.down,..." (e.g. the random localization's); layers in order.
set -e
mu-dump "$1" | jq -r 'select(.name) | .name' |
  sed -nE 's/.*layers\.([0-9]+)\.mlp\.(gate|up|down)_proj.*/\1 \2/p' | sort -k1,1n -k2,2 -u |
  awk '{ n[$1]++; item[++k] = $1 "." $2; if (!($1 in seen)) { seen[$1] = 1; layer[++nl] = $1 } }
       END {
         whole = 1
         for (i = 1; i <= nl; i++) if (n[layer[i]] != 3) whole = 0
         s = "mlp:"
         if (whole) for (i = 1; i <= nl; i++) s = s (i > 1 ? "," : "") layer[i]
         else for (i = 1; i <= k; i++) s = s (i > 1 ? "," : "") item[i]
         print s
       }'
