#!/usr/bin/env bash
# strata against PyTorch and Keras on the three seed specs (specs/seed/: logreg_bn, wide_bn,
# deep_bn, 224x224x3, 2 classes), back to back on one machine: training and inference images/s
# per model and batch size, the ratios strata / max(PyTorch, Keras), the parameter counts of
# all three, and batch-1 latency.
#
# Usage (from the repository root, strata built with `cargo build --release`):
#   scripts/compare_seed_throughput.sh [--batch B]... [--threads 2] [--warmup 5] [--steps 30]
#                                      [--repeats 3] [--memory-format F] [--no-latency]
#                                      [--out DIR] [MODEL...]
# MODEL: logreg_bn wide_bn deep_bn (the default: all three) — specs/seed/MODEL.yaml, with its
# hand-written equivalents in scripts/keras_examples.py and scripts/torch_examples.py.
# --batch: each one given is measured (default 10, 32 and 64: `--batch 10 --batch 32`).
#
# Environment:
#   STRATA     the strata binary (default target/release/strata)
#   KERAS_PY   python with keras + tensorflow-cpu (default /opt/venv-keras/bin/python)
#   TORCH_PY   python with torch (default /opt/venv-torch/bin/python)
#   JEMALLOC   libjemalloc.so.2 preloaded into PyTorch (default: the one `ldconfig -p` lists;
#              set JEMALLOC= to run PyTorch on glibc's allocator)
#
# Each measurement is its own process, run in turn (never in parallel): for every model and
# batch size B
#   RAYON_NUM_THREADS=T strata bench specs/seed/MODEL.yaml --batch-size B --steps S \
#       --repeats R --warmup W --format json
#   $TORCH_PY scripts/throughput.py torch MODEL --batch B --threads T --jemalloc $JEMALLOC ...
#   $KERAS_PY scripts/throughput.py keras MODEL --batch B --threads T ...
# with the same protocol everywhere (random input, W warm-up steps, median of R runs of S steps,
# Adam with the spec's learning rate; see scripts/throughput.py), each wrapped in
# `/usr/bin/time -v` for its peak RSS (recorded in summary.json). PyTorch's layout is
# throughput.py's default for the model, the faster one measured on a 2-core VM: channels_last
# for wide_bn and deep_bn (training 1.4-2.8x and inference 1.6-3x faster than contiguous NCHW),
# contiguous for logreg_bn (training 1.7-4x faster than channels_last, whose BatchNorm over 3
# channels is slow; inference a tie); `--memory-format channels_last|contiguous` forces one.
#
# Then, per model (unless --no-latency), batch-1 latency: the median and p90 milliseconds of
# 100 one-image predictions after 10 warm-up ones,
#   RAYON_NUM_THREADS=T strata bench specs/seed/MODEL.yaml --latency --format json
#       (only when `strata bench --help` mentions --latency; otherwise strata's column is left
#       out)
#   $TORCH_PY scripts/latency.py torch MODEL --threads T --jemalloc $JEMALLOC
#   $KERAS_PY scripts/latency.py keras MODEL --threads T
# and the parameter counts: `strata summary SPEC --format json` against the `params` that
# throughput.py records (a mismatch is flagged with "!" and a warning).
#
# Prints two markdown tables (images/s, the medians; ratio = strata / the faster peer, > 1 when
# strata is faster, the peer named; latency ratio = the faster peer's median / strata's, > 1
# when strata is faster). Raw outputs and summary.json go to DIR (default: a new temporary
# folder).
#
# Measure on an otherwise idle machine: on a busy one the numbers swing by 2x or more, and
# PyTorch's OpenMP threads, which spin while they wait, can lose 10x (OMP_WAIT_POLICY=PASSIVE,
# passed through from the environment, avoids that but is not how PyTorch runs by default).
# The script prints the load average first and warns when it is high.
set -euo pipefail

cd "$(dirname "$0")/.."

THREADS=2 WARMUP=5 STEPS=30 REPEATS=3 OUT="" MEMORY_FORMAT="" LATENCY=1
BATCHES=() MODELS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --batch) BATCHES+=("$2"); shift 2 ;;
        --threads) THREADS=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --steps) STEPS=$2; shift 2 ;;
        --repeats) REPEATS=$2; shift 2 ;;
        --memory-format) MEMORY_FORMAT=$2; shift 2 ;;
        --no-latency) LATENCY=0; shift ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "unknown option: $1" >&2; exit 2 ;;
        *) MODELS+=("$1"); shift ;;
    esac
done
[ ${#MODELS[@]} -gt 0 ] || MODELS=(logreg_bn wide_bn deep_bn)
[ ${#BATCHES[@]} -gt 0 ] || BATCHES=(10 32 64)
case "$MEMORY_FORMAT" in
    ""|channels_last|contiguous) ;;
    *) echo "--memory-format: channels_last or contiguous, not $MEMORY_FORMAT" >&2; exit 2 ;;
esac

STRATA=${STRATA:-target/release/strata}
KERAS_PY=${KERAS_PY:-/opt/venv-keras/bin/python}
TORCH_PY=${TORCH_PY:-/opt/venv-torch/bin/python}
if [ -z "${JEMALLOC+set}" ]; then
    JEMALLOC=$(ldconfig -p 2>/dev/null | grep -o '/[^ ]*libjemalloc\.so\.2' | head -n 1 || true)
fi
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/strata-seed-compare.XXXXXX")}
mkdir -p "$OUT"

for exe in "$STRATA" "$KERAS_PY" "$TORCH_PY"; do
    [ -x "$exe" ] || { echo "not executable: $exe" >&2; exit 2; }
done
TIME=""
[ -x /usr/bin/time ] && TIME="/usr/bin/time -v"
STRATA_LATENCY=0
if [ "$LATENCY" = 1 ] && "$STRATA" bench --help 2>/dev/null | grep -q -- '--latency'; then
    STRATA_LATENCY=1
fi

cores=$(nproc)
load=$(cut -d' ' -f1 /proc/loadavg)
echo "machine: $cores cores, load average $load; batches ${BATCHES[*]}, $THREADS threads," \
     "$WARMUP warm-up steps, median of $REPEATS x $STEPS steps" >&2
echo "jemalloc for PyTorch: ${JEMALLOC:-none}; PyTorch layout:" \
     "${MEMORY_FORMAT:-per model, throughput.py default}; raw outputs in $OUT" >&2
if [ "$LATENCY" = 1 ] && [ "$STRATA_LATENCY" = 0 ]; then
    echo "$STRATA bench has no --latency: strata's latency column is left out" >&2
fi
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

torch_opts=()
[ -n "$MEMORY_FORMAT" ] && torch_opts=(--memory-format "$MEMORY_FORMAT")
for model in "${MODELS[@]}"; do
    spec=specs/seed/$model.yaml
    [ -f "$spec" ] || { echo "no such spec: $spec" >&2; exit 2; }
    echo "$model:" >&2
    "$STRATA" summary "$spec" --format json >"$OUT/$model.strata-summary.json" 2>/dev/null
    for batch in "${BATCHES[@]}"; do
        run "$model.b$batch.strata" env RAYON_NUM_THREADS="$THREADS" "$STRATA" bench "$spec" \
            --batch-size "$batch" --steps "$STEPS" --repeats "$REPEATS" --warmup "$WARMUP" \
            --format json
        common=(--batch "$batch" --threads "$THREADS" --warmup "$WARMUP" --steps "$STEPS"
                --repeats "$REPEATS")
        run "$model.b$batch.torch" env JEMALLOC="$JEMALLOC" "$TORCH_PY" scripts/throughput.py \
            torch "$model" "${common[@]}" ${torch_opts[@]+"${torch_opts[@]}"}
        run "$model.b$batch.keras" "$KERAS_PY" scripts/throughput.py keras "$model" "${common[@]}"
    done
    if [ "$LATENCY" = 1 ]; then
        if [ "$STRATA_LATENCY" = 1 ]; then
            run "$model.latency.strata" env RAYON_NUM_THREADS="$THREADS" "$STRATA" bench "$spec" \
                --latency --format json
        fi
        run "$model.latency.torch" env JEMALLOC="$JEMALLOC" "$TORCH_PY" scripts/latency.py \
            torch "$model" --threads "$THREADS" ${torch_opts[@]+"${torch_opts[@]}"}
        run "$model.latency.keras" "$KERAS_PY" scripts/latency.py keras "$model" \
            --threads "$THREADS"
    fi
done

python3 - "$OUT" "$LATENCY" "$STRATA_LATENCY" "${#BATCHES[@]}" "${BATCHES[@]}" "${MODELS[@]}" \
    <<'EOF'
import json, re, sys

out, latency, strata_latency = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1"
nb = int(sys.argv[4])
batches, models = sys.argv[5:5 + nb], sys.argv[5 + nb:]


def json_lines(path):
    return [json.loads(l) for l in open(path).read().splitlines() if l.startswith("{")]


def last_json(path):
    return json_lines(path)[-1]


def peak_rss_mib(err_path, fallback=None):
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(err_path).read())
    return int(m.group(1)) / 1024 if m else fallback


def flat(d, prefix=""):
    """{"a": {"b": 1}} -> {"a_b": 1}: numbers only, keys lower-cased."""
    items = {}
    for k, v in d.items():
        key = f"{prefix}{k}".lower()
        if isinstance(v, dict):
            items.update(flat(v, key + "_"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            items[key] = v
    return items


def strata_latency_ms(path):
    """(median, p90) milliseconds from `strata bench --latency --format json`, whatever the key
    spelling (median_ms, latency_median_ms, latency_ms: {median, p90}, p50_ms, ...)."""
    median = p90 = None
    for record in json_lines(path):
        f = flat(record)
        for k, v in f.items():
            if "ms" not in k and "millis" not in k:
                continue
            if median is None and ("median" in k or "p50" in k):
                median = v
            if p90 is None and "p90" in k:
                p90 = v
        if median is None and isinstance(f.get("latency_ms"), (int, float)):
            median = f["latency_ms"]
    if median is None:
        keys = sorted({k for r in json_lines(path) for k in flat(r)})
        print(f"warning: no median latency in {path} (keys: {', '.join(keys)})", file=sys.stderr)
    return median, p90


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def table(head, rows):
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


summary, rows, lat_rows = [], [], []
for model in models:
    # the summary's JSON line (lint findings are JSON lines too)
    s_sum = next((r for r in json_lines(f"{out}/{model}.strata-summary.json")
                  if "total_params" in r), {})
    rec = {"model": model, "params": {"strata": s_sum.get("total_params")}, "batches": []}
    for b in batches:
        s = last_json(f"{out}/{model}.b{b}.strata.json")
        t = last_json(f"{out}/{model}.b{b}.torch.json")
        k = last_json(f"{out}/{model}.b{b}.keras.json")
        rec["params"]["torch"], rec["params"]["keras"] = t["params"], k["params"]
        peers = {"torch": t, "keras": k}
        best_train = max(peers, key=lambda p: peers[p]["train_ips"])
        best_infer = max(peers, key=lambda p: peers[p]["infer_ips"])
        row = {"batch": int(b),
               "strata": {"train_ips": s["train_images_per_s"],
                          "infer_ips": s["infer_images_per_s"], "threads": s["threads"],
                          "peak_rss_mib": peak_rss_mib(f"{out}/{model}.b{b}.strata.err")},
               "torch": {"train_ips": t["train_ips"], "infer_ips": t["infer_ips"],
                         "memory_format": t.get("memory_format"), "allocator": t["allocator"],
                         "peak_rss_mib": peak_rss_mib(f"{out}/{model}.b{b}.torch.err",
                                                      t["peak_rss_mib"])},
               "keras": {"train_ips": k["train_ips"], "infer_ips": k["infer_ips"],
                         "peak_rss_mib": peak_rss_mib(f"{out}/{model}.b{b}.keras.err",
                                                      k["peak_rss_mib"])},
               "train_ratio": s["train_images_per_s"] / peers[best_train]["train_ips"],
               "train_peer": best_train,
               "infer_ratio": s["infer_images_per_s"] / peers[best_infer]["infer_ips"],
               "infer_peer": best_infer}
        rec["batches"].append(row)
        rows.append([model, b,
                     fmt(row["strata"]["train_ips"], ".1f"), fmt(row["strata"]["infer_ips"], ".1f"),
                     fmt(t["train_ips"], ".1f"), fmt(t["infer_ips"], ".1f"),
                     fmt(k["train_ips"], ".1f"), fmt(k["infer_ips"], ".1f"),
                     f"{row['train_ratio']:.2f} ({best_train})",
                     f"{row['infer_ratio']:.2f} ({best_infer})"])
    p = rec["params"]
    mismatch = len({p["strata"], p.get("torch"), p.get("keras")}) > 1
    if mismatch:
        print(f"warning: {model}: parameter counts differ: {p}", file=sys.stderr)
    params = "/".join(fmt(p.get(x), ",") for x in ("strata", "torch", "keras"))
    params += " !" if mismatch else ""
    if latency:
        lat = {}
        for fw in ("torch", "keras"):
            r = last_json(f"{out}/{model}.latency.{fw}.json")
            lat[fw] = {"median_ms": r["median_ms"], "p90_ms": r["p90_ms"]}
        if strata_latency:
            median, p90 = strata_latency_ms(f"{out}/{model}.latency.strata.json")
            lat["strata"] = {"median_ms": median, "p90_ms": p90}
        rec["latency"] = lat
        best = min(("torch", "keras"), key=lambda fw: lat[fw]["median_ms"])
        cells = [model, params]
        if strata_latency:
            cells.append(f"{fmt(lat['strata']['median_ms'], '.2f')} "
                         f"({fmt(lat['strata']['p90_ms'], '.2f')})")
        cells += [f"{lat[fw]['median_ms']:.2f} ({lat[fw]['p90_ms']:.2f})"
                  for fw in ("torch", "keras")]
        if strata_latency:
            m = lat["strata"]["median_ms"]
            rec["latency_ratio"] = lat[best]["median_ms"] / m if m else None
            rec["latency_peer"] = best
            cells.append(f"{fmt(rec['latency_ratio'], '.2f')} ({best})")
        lat_rows.append(cells)
    else:
        lat_rows.append([model, params])
    summary.append(rec)

print("images/s (median); ratio = strata / the faster of PyTorch and Keras (named)")
print()
table(("model", "batch", "strata train", "strata infer", "PyTorch train", "PyTorch infer",
       "Keras train", "Keras infer", "train ratio", "infer ratio"), rows)
print()
if latency:
    print("batch-1 latency, ms: median (p90); ratio = the faster peer's median / strata's")
    print()
    head = ["model", "params strata/PyTorch/Keras"]
    head += ["strata"] if strata_latency else []
    head += ["PyTorch", "Keras"]
    head += ["latency ratio"] if strata_latency else []
    table(head, lat_rows)
else:
    table(("model", "params strata/PyTorch/Keras"), lat_rows)
with open(f"{out}/summary.json", "w") as f:
    json.dump(summary, f, indent=1)
print()
print(f"(raw outputs and summary.json in {out})")
EOF
