#!/usr/bin/env bash
# Peak memory of training steps against the memory check's "every layer's output" figure
# (docs/diagnostics.md, `strata::run::out_of_memory`).
#
# Usage (from the repository root, strata built with `cargo build --release`):
#   scripts/training_peak_memory.sh [--batch B]... [SPEC...]
# Defaults: batches 32 and 256, every spec in specs/examples/. Needs GNU time (/usr/bin/time)
# and python3.
#
# For each spec and batch it runs
#   /usr/bin/time -v strata bench SPEC --batch-size B --steps 2 --repeats 1
# (two training steps and an inference pass on random input) and prints the figure (every
# layer's output for the batch, in f32, without the `identity` layers that pass their input
# on), the peak resident set size, and their ratio. The peak includes the process itself
# (about 60 MiB), which dominates small models.
set -euo pipefail

STRATA=${STRATA:-target/release/strata}
BATCHES=()
SPECS=()
while [ $# -gt 0 ]; do
    case $1 in
        --batch) BATCHES+=("$2"); shift 2 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) SPECS+=("$1"); shift ;;
    esac
done
[ ${#BATCHES[@]} -gt 0 ] || BATCHES=(32 256)
[ ${#SPECS[@]} -gt 0 ] || SPECS=(specs/examples/*.yaml)

printf '%-40s %6s %14s %14s %6s\n' spec batch "outputs MiB" "peak MiB" ratio
for spec in "${SPECS[@]}"; do
    for batch in "${BATCHES[@]}"; do
        outputs=$("$STRATA" summary "$spec" --format json | python3 -c '
import json, math, sys
model = json.load(sys.stdin)
print(sum(math.prod(layer["output_shape"]) for layer in model["layers"]
          if not (layer["kind"] == "identity" and layer["activation"] is None)))')
        peak_kib=$(/usr/bin/time -v "$STRATA" bench "$spec" --batch-size "$batch" --steps 2 \
            --repeats 1 2>&1 >/dev/null | awk '/Maximum resident/ { print $6 }')
        python3 -c "
outputs = $outputs * 4 * $batch / 2**20
peak = $peak_kib / 1024
print(f'{\"$spec\":40s} {$batch:6d} {outputs:14.1f} {peak:14.1f} {peak / outputs:6.2f}')"
    done
done
