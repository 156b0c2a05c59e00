#!/usr/bin/env bash
# strata against Keras and PyTorch on the graph (block) example specs, back to back on one
# machine: training and inference images/s and peak resident memory per model, and the ratios
# strata / max(Keras, PyTorch).
#
# Usage (from the repository root, strata built with `cargo build --release`):
#   scripts/compare_graph_throughput.sh [--batch 32] [--threads 2] [--warmup 5] [--steps 30]
#                                       [--repeats 3] [--rounds 1] [--out DIR] [MODEL...]
# MODEL: resnet_small mobilenetv2_small (the default) or fashion_resnet — specs/examples/MODEL.yaml,
# with its hand-written equivalents in scripts/keras_examples.py and scripts/torch_examples.py.
#
# Environment:
#   STRATA     the strata binary (default target/release/strata)
#   KERAS_PY   python with keras + tensorflow-cpu (default /opt/venv-keras/bin/python)
#   TORCH_PY   python with torch (default /opt/venv-torch/bin/python)
#   JEMALLOC   libjemalloc.so.2 preloaded into PyTorch (default: the one `ldconfig -p` lists;
#              set JEMALLOC= to run PyTorch on glibc's allocator)
#
# Each measurement is its own process, run in turn (never in parallel): for every model
#   RAYON_NUM_THREADS=T strata bench specs/examples/MODEL.yaml --batch-size B --steps S \
#       --repeats R --warmup W --format json
#   $KERAS_PY scripts/throughput.py keras MODEL --batch B --threads T ...
#   $TORCH_PY scripts/throughput.py torch MODEL --batch B --threads T --jemalloc $JEMALLOC ...
# with the same protocol everywhere (random input, W warm-up steps, median of R runs of S steps;
# see scripts/throughput.py), each wrapped in `/usr/bin/time -v` for its peak RSS (the
# "Maximum resident set size"; without /usr/bin/time the Python scripts' own ru_maxrss is used
# and strata's is left blank). Raw outputs go to DIR (default: a new temporary folder).
#
# --rounds N runs the whole sequence (every model: strata, Keras, PyTorch) N times over and
# prints each round's row and, per model, the median of the rounds' ratios: a machine whose
# speed drifts between one process and the next moves a single round's ratio by a quarter or
# more, and a ratio taken within a round and then over rounds moves less.
#
# Measure on an otherwise idle machine: on a busy one the numbers swing by 2x or more, and
# PyTorch's OpenMP threads, which spin while they wait, can lose 10x (OMP_WAIT_POLICY=PASSIVE,
# passed through from the environment, avoids that but is not how PyTorch runs by default).
# The script prints the load average first and warns when it is high.
set -euo pipefail

cd "$(dirname "$0")/.."

BATCH=32 THREADS=2 WARMUP=5 STEPS=30 REPEATS=3 ROUNDS=1 OUT=""
MODELS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --batch) BATCH=$2; shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --steps) STEPS=$2; shift 2 ;;
        --repeats) REPEATS=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "unknown option: $1" >&2; exit 2 ;;
        *) MODELS+=("$1"); shift ;;
    esac
done
[ ${#MODELS[@]} -gt 0 ] || MODELS=(resnet_small mobilenetv2_small)

STRATA=${STRATA:-target/release/strata}
KERAS_PY=${KERAS_PY:-/opt/venv-keras/bin/python}
TORCH_PY=${TORCH_PY:-/opt/venv-torch/bin/python}
if [ -z "${JEMALLOC+set}" ]; then
    JEMALLOC=$(ldconfig -p 2>/dev/null | grep -o '/[^ ]*libjemalloc\.so\.2' | head -n 1 || true)
fi
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/strata-compare.XXXXXX")}
mkdir -p "$OUT"

for exe in "$STRATA" "$KERAS_PY" "$TORCH_PY"; do
    [ -x "$exe" ] || { echo "not executable: $exe" >&2; exit 2; }
done
TIME=""
[ -x /usr/bin/time ] && TIME="/usr/bin/time -v"

cores=$(nproc)
load=$(cut -d' ' -f1 /proc/loadavg)
echo "machine: $cores cores, load average $load; batch $BATCH, $THREADS threads," \
     "$WARMUP warm-up steps, median of $REPEATS x $STEPS steps" >&2
echo "jemalloc for PyTorch: ${JEMALLOC:-none}; raw outputs in $OUT" >&2
if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
    echo "warning: load average $load — other work is running; these numbers will not be reliable" >&2
fi

# run NAME CMD...: stdout to $OUT/NAME.json, stderr (with /usr/bin/time's report) to $OUT/NAME.err
run() {
    local name=$1; shift
    echo "  $name" >&2
    if ! $TIME "$@" >"$OUT/$name.json" 2>"$OUT/$name.err"; then
        echo "failed: $* (see $OUT/$name.err)" >&2
        tail -n 20 "$OUT/$name.err" >&2
        exit 1
    fi
}

[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "--rounds takes a whole number from 1" >&2; exit 2; }
for model in "${MODELS[@]}"; do
    [ -f "specs/examples/$model.yaml" ] || { echo "no such spec: specs/examples/$model.yaml" >&2; exit 2; }
done

# The raw outputs of round R of MODEL: MODEL.FRAMEWORK (one round) or MODEL.rR.FRAMEWORK.
prefix() { if [ "$ROUNDS" -eq 1 ]; then echo "$1"; else echo "$1.r$2"; fi; }
# The Python peers' options, the same for every model and round.
common=(--batch "$BATCH" --threads "$THREADS" --warmup "$WARMUP" --steps "$STEPS"
        --repeats "$REPEATS")

for round in $(seq "$ROUNDS"); do
    [ "$ROUNDS" -eq 1 ] || echo "round $round of $ROUNDS" >&2
    for model in "${MODELS[@]}"; do
        spec=specs/examples/$model.yaml
        name=$(prefix "$model" "$round")
        echo "$model:" >&2
        run "$name.strata" env RAYON_NUM_THREADS="$THREADS" "$STRATA" bench "$spec" \
            --batch-size "$BATCH" --steps "$STEPS" --repeats "$REPEATS" --warmup "$WARMUP" \
            --format json
        run "$name.keras" "$KERAS_PY" scripts/throughput.py keras "$model" "${common[@]}"
        run "$name.torch" env JEMALLOC="$JEMALLOC" "$TORCH_PY" scripts/throughput.py torch \
            "$model" "${common[@]}"
    done
done

python3 - "$OUT" "$ROUNDS" "${MODELS[@]}" <<'EOF'
import json, re, statistics, sys

out, rounds, models = sys.argv[1], int(sys.argv[2]), sys.argv[3:]


def last_json(path):
    lines = [l for l in open(path).read().splitlines() if l.startswith("{")]
    return json.loads(lines[-1])


def peak_rss_mib(err_path, fallback=None):
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(err_path).read())
    return int(m.group(1)) / 1024 if m else fallback


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def prefix(model, r):
    return model if rounds == 1 else f"{model}.r{r}"


summary = []
for r in range(1, rounds + 1):
    for model in models:
        name = prefix(model, r)
        s = last_json(f"{out}/{name}.strata.json")
        k = last_json(f"{out}/{name}.keras.json")
        t = last_json(f"{out}/{name}.torch.json")
        rec = {"model": model, "round": r,
               "strata": {"train_ips": s["train_images_per_s"],
                          "infer_ips": s["infer_images_per_s"], "threads": s["threads"],
                          "peak_rss_mib": peak_rss_mib(f"{out}/{name}.strata.err")},
               "keras": {"train_ips": k["train_ips"], "infer_ips": k["infer_ips"],
                         "peak_rss_mib": peak_rss_mib(f"{out}/{name}.keras.err",
                                                      k["peak_rss_mib"])},
               "torch": {"train_ips": t["train_ips"], "infer_ips": t["infer_ips"],
                         "allocator": t["allocator"],
                         "peak_rss_mib": peak_rss_mib(f"{out}/{name}.torch.err",
                                                      t["peak_rss_mib"])}}
        best_train = max(k["train_ips"], t["train_ips"])
        best_infer = max(k["infer_ips"], t["infer_ips"])
        rec["train_ratio"] = s["train_images_per_s"] / best_train
        rec["infer_ratio"] = s["infer_images_per_s"] / best_infer
        summary.append(rec)

head = ("model", "strata train", "keras train", "torch train", "ratio",
        "strata infer", "keras infer", "torch infer", "ratio",
        "RSS MiB strata/keras/torch")
if rounds > 1:
    head = ("round",) + head
print("images/s (median); ratio = strata / max(keras, torch)")
print(" | ".join(head))
print(" | ".join("---" for _ in head))
for r in summary:
    s, k, t = r["strata"], r["keras"], r["torch"]
    rss = "/".join(fmt(x["peak_rss_mib"], ".0f") for x in (s, k, t))
    row = [r["model"],
           fmt(s["train_ips"], ".1f"), fmt(k["train_ips"], ".1f"),
           fmt(t["train_ips"], ".1f"), fmt(r["train_ratio"], ".2f"),
           fmt(s["infer_ips"], ".1f"), fmt(k["infer_ips"], ".1f"),
           fmt(t["infer_ips"], ".1f"), fmt(r["infer_ratio"], ".2f"), rss]
    print(" | ".join(([str(r["round"])] if rounds > 1 else []) + row))
medians = {}
if rounds > 1:
    print(f"median of the {rounds} rounds' ratios, training / inference:")
    for model in models:
        recs = [r for r in summary if r["model"] == model]
        train = statistics.median(r["train_ratio"] for r in recs)
        infer = statistics.median(r["infer_ratio"] for r in recs)
        medians[model] = {"train_ratio": train, "infer_ratio": infer}
        print(f"  {model}: {train:.2f} / {infer:.2f}")
with open(f"{out}/summary.json", "w") as f:
    json.dump({"rounds": summary, "medians": medians} if rounds > 1 else summary, f, indent=1)
print(f"(raw outputs and summary.json in {out})")
EOF
