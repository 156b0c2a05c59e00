#!/usr/bin/env bash
# Data-parallel scaling on one machine (docs/distributed.md, "Measured"): for each workload,
# the same training epochs as
#   1x1  one process, one thread     RAYON_NUM_THREADS=1 strata train …
#   2x1  two MPI ranks, one thread   mpirun -n 2 -x RAYON_NUM_THREADS=1 strata train …
#   1x2  one process, two threads    RAYON_NUM_THREADS=2 strata train …
# run in turn (never at the same time), `--repeats` times round-robin so that the machine's
# drift hits all three alike. Reported per workload: the median seconds of the last epoch
# (earlier ones decode images; the last reads the cache) and images/s (with the slowest and
# fastest of the repeats); the scaling efficiency
# of two ranks, images/s(2x1) / (2 x images/s(1x1)); two ranks against two threads,
# images/s(2x1) / images/s(1x2); and what the all-reduce cost rank 0 per step (calls, KB,
# milliseconds, share of the training time; the time includes waiting for the other rank),
# from the line rank 0 prints under each epoch.
#
# Usage (from the repository root, after `cargo build --release --features mpi`):
#   scripts/mpi_scaling.sh [--repeats 5] [--epochs 3] [--out DIR] [WORKLOAD...]
# WORKLOAD (default: fashion deep_bn):
#   fashion    examples/fashion-mini.yaml on all of FMNIST_TRAIN (60,000 28x28 images; batch 32)
#   deep_bn    specs/seed/deep_bn.yaml (224x224x3, batch 10) on SEED_DATA
#   wide_bn    specs/seed/wide_bn.yaml on SEED_DATA
#   logreg_bn  specs/seed/logreg_bn.yaml on SEED_DATA (301k weights: the all-reduce-heavy one)
#
# Environment:
#   STRATA       the strata binary, built with `--features mpi` (default target/release/strata)
#   MPIRUN       mpirun with its flags (default `mpirun --allow-run-as-root --oversubscribe`)
#   FMNIST_TRAIN Fashion-MNIST's training images, one folder per class (default /work/fmnist/train)
#   SEED_DATA    two class folders for the seed specs (default: SEED_IMAGES (500) images of
#                each of two Fashion-MNIST classes, linked into the output folder; the loader
#                resizes them to 224x224x3, which is all the throughput depends on)
set -euo pipefail
cd "$(dirname "$0")/.."

repeats=5
epochs=3
out=runs/mpi-scaling
workloads=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --repeats) repeats="$2"; shift 2 ;;
        --epochs) epochs="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
        *) workloads+=("$1"); shift ;;
    esac
done
[[ ${#workloads[@]} -gt 0 ]] || workloads=(fashion deep_bn)

strata="${STRATA:-target/release/strata}"
mpirun_cmd="${MPIRUN:-mpirun --allow-run-as-root --oversubscribe}"
fmnist="${FMNIST_TRAIN:-/work/fmnist/train}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

seed_data="${SEED_DATA:-}"
if [[ -z "$seed_data" ]]; then
    seed_data="$out/seed-data"
    if [[ ! -d "$seed_data" ]]; then
        for class in Bag Sneaker; do
            mkdir -p "$seed_data/$class"
            mapfile -t images < <(find "$fmnist/$class" -name '*.png' | sort)
            for image in "${images[@]:0:${SEED_IMAGES:-500}}"; do
                ln -s "$image" "$seed_data/$class/"
            done
        done
    fi
fi

spec_of() {
    case "$1" in
        fashion) echo "examples/fashion-mini.yaml $fmnist" ;;
        deep_bn|wide_bn|logreg_bn) echo "specs/seed/$1.yaml $seed_data" ;;
        *) echo "unknown workload $1" >&2; exit 2 ;;
    esac
}

run_one() { # workload config repeat
    local workload="$1" config="$2" repeat="$3"
    read -r spec data < <(spec_of "$workload")
    local dir="$out/$workload/$config-$repeat"
    rm -rf "$dir"
    local args=(train "$spec" --data "$data" --epochs "$epochs" --out "$dir")
    case "$config" in
        1x1) RAYON_NUM_THREADS=1 "$strata" "${args[@]}" --quiet ;;
        1x2) RAYON_NUM_THREADS=2 "$strata" "${args[@]}" --quiet ;;
        # Not --quiet: rank 0's epoch lines carry the all-reduce cost.
        2x1) RAYON_NUM_THREADS=1 $mpirun_cmd -n 2 -x RAYON_NUM_THREADS=1 \
                 "$strata" "${args[@]}" > "$out/$workload/$config-$repeat.log" ;;
    esac
}

for workload in "${workloads[@]}"; do
    mkdir -p "$out/$workload"
    for repeat in $(seq 1 "$repeats"); do
        for config in 1x1 2x1 1x2; do
            echo "$workload $config repeat $repeat" >&2
            run_one "$workload" "$config" "$repeat"
        done
    done
done

python3 - "$out" "$repeats" "${workloads[@]}" <<'EOF'
import json, re, statistics, sys
out, repeats, workloads = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
summary = {}
print(f"{'workload':10} {'images':>7} {'steps':>6} {'1x1 img/s':>17} {'2x1 img/s':>17} "
      f"{'1x2 img/s':>17} {'eff 2x1':>8} {'2x1/1x2':>8}  all-reduce per step (rank 0)")
for workload in workloads:
    row = {}
    for config in ["1x1", "2x1", "1x2"]:
        seconds = []
        for r in range(1, repeats + 1):
            run = f"{out}/{workload}/{config}-{r}"
            history = json.load(open(f"{run}/history.json"))
            seconds.append(history[-1]["seconds"])
        row[config] = {"seconds": seconds, "median": statistics.median(seconds)}
    state = json.load(open(f"{out}/{workload}/1x1-1/state.json"))
    steps = state["steps_per_epoch"]
    images = None
    lines = []
    for r in range(1, repeats + 1):
        log = open(f"{out}/{workload}/2x1-{r}.log").read()
        found = re.findall(r"all-reduce per step: ([0-9.]+) calls?, ([0-9.]+) KB, ([0-9.]+) ms \(([0-9.]+)% of", log)
        if found:
            lines.append([float(x) for x in found[-1]])
        m = re.search(r": ([0-9]+) training images", log)
        if m:
            images = int(m.group(1))
    ips = {c: images / row[c]["median"] for c in row}
    eff = ips["2x1"] / (2 * ips["1x1"])
    vs = ips["2x1"] / ips["1x2"]
    calls, kb, ms, share = (statistics.median(v) for v in zip(*lines))
    summary[workload] = {"images": images, "steps_per_epoch": steps, "runs": row,
                         "images_per_s": ips, "efficiency_2x1": eff, "ratio_2x1_1x2": vs,
                         "allreduce": {"calls": calls, "kb": kb, "ms": ms, "share_percent": share}}
    def spread(c):
        lo, hi = images / max(row[c]["seconds"]), images / min(row[c]["seconds"])
        return f"{ips[c]:6.0f} ({lo:.0f}-{hi:.0f})"
    print(f"{workload:10} {images:7d} {steps:6d} {spread('1x1'):>17} {spread('2x1'):>17} "
          f"{spread('1x2'):>17} {eff:8.2f} {vs:8.2f}  {calls:.0f} call(s), {kb:.1f} KB, "
          f"{ms:.3f} ms ({share:.1f}%)")
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
print(f"(medians of {repeats}; raw runs and summary.json in {out})")
EOF
