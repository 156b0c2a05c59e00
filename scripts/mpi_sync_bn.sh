#!/usr/bin/env bash
# `train.sync_bn` in numbers (docs/distributed.md): two models with batch norms on the bundled
# Fashion-MNIST slice (examples/fashion-mini: 2,000 training, 500 validation images), each
# trained four ways with the same global batch (32) and seed:
#   one      one process
#   sync     mpirun -n 2, `sync_bn: true`
#   local    mpirun -n 2, `sync_bn: false` (each rank normalises its 16 images, as Horovod and
#            PyTorch DDP do by default)
#   nudged   one process with the learning rate one float step higher (0.002 -> 0.0020000003):
#            how far rounding-sized differences alone carry this training
# The models: `linear` is the seed's first model on these images (bn -> flatten -> dense10),
# 10 epochs; `cnn` is the bundled example with a batch norm after each convolution, 10 epochs.
# Prints each run's loss per epoch and the largest difference from `one` in training and
# validation loss.
#
# Usage (from the repository root, after `cargo build --release --features mpi`):
#   scripts/mpi_sync_bn.sh [--out DIR] [MODEL...]      (MODEL: linear cnn; default both)
# Environment: STRATA (default target/release/strata), MPIRUN (default
# `mpirun --allow-run-as-root --oversubscribe`).
set -euo pipefail
cd "$(dirname "$0")/.."

out=runs/mpi-sync-bn
models=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --out) out="$2"; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) models+=("$1"); shift ;;
    esac
done
[[ ${#models[@]} -gt 0 ]] || models=(linear cnn)
strata="$(realpath "${STRATA:-target/release/strata}")"
mpirun_cmd="${MPIRUN:-mpirun --allow-run-as-root --oversubscribe}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
data="$(realpath examples/fashion-mini)"

spec() { # model sync_bn
    local model epochs
    case "$1" in
        linear) model="bn -> flatten -> dense10 softmax"; epochs=10 ;;
        cnn) model="bn -> conv3(16, pad=same) -> bn relu -> pool2 -> conv3(32, pad=same) -> bn relu -> pool2 -> dense64 relu -> dense10 softmax"; epochs=10 ;;
        *) echo "unknown model $1" >&2; exit 2 ;;
    esac
    cat <<EOF
name: fashion-$1
input: 28x28x1
classes: 10
model: $model
train: { optimizer: adam, lr: 0.002, epochs: $epochs, batch_size: 32, seed: 0, sync_bn: $2 }
data: { train: $data/train, validation: $data/validation }
EOF
}

for model in "${models[@]}"; do
    dir="$out/$model"
    rm -rf "$dir"
    mkdir -p "$dir"
    spec "$model" true > "$dir/sync.yaml"
    spec "$model" false > "$dir/local.yaml"
    "$strata" train "$dir/sync.yaml" --out "$dir/one" --quiet
    $mpirun_cmd -n 2 "$strata" train "$dir/sync.yaml" --out "$dir/sync" --quiet
    $mpirun_cmd -n 2 "$strata" train "$dir/local.yaml" --out "$dir/local" --quiet
    "$strata" train "$dir/sync.yaml" --out "$dir/nudged" --quiet --lr 0.0020000003
    python3 - "$dir" "$model" <<'EOF'
import json, sys
dir, model = sys.argv[1], sys.argv[2]
names = ["one", "sync", "local", "nudged"]
runs = {name: json.load(open(f"{dir}/{name}/history.json")) for name in names}
print(f"{model}: training loss per epoch (|difference from one process|)")
print(f"{'epoch':>5} {'one':>9} {'sync':>9} {'local':>9} {'nudged':>9}")
for i, one in enumerate(runs["one"]):
    diffs = [abs(runs[n][i]["loss"] - one["loss"]) for n in names[1:]]
    print(f"{one['epoch']:5} {one['loss']:9.6f} " + " ".join(f"{d:9.1e}" for d in diffs))
for name in names[1:]:
    d = max(abs(x["loss"] - y["loss"]) for x, y in zip(runs["one"], runs[name]))
    v = max(abs(x["val_loss"] - y["val_loss"]) for x, y in zip(runs["one"], runs[name]))
    print(f"  {name:6}: max |Δloss| per epoch {d:.1e}, max |Δval_loss| {v:.1e}")
EOF
done
