#!/usr/bin/env python3
"""Batch-1 latency of an example model in Keras or PyTorch: milliseconds per one-image prediction.

    latency.py keras|torch MODEL [--threads 2] [--warmup 10] [--runs 100] [--out out.json]
               [--memory-format channels_last|contiguous] [--jemalloc PATH]
               [--keras-call KIND]

MODEL is any of scripts/throughput.py's (resnet_small, mobilenetv2_small, fashion_resnet,
logreg_bn, wide_bn, deep_bn), built from scripts/keras_examples.py or scripts/torch_examples.py.
strata's side is `strata bench SPEC --latency --format json`; scripts/compare_seed_throughput.sh
runs all three back to back. Compare numbers taken in one run on one machine only.

Protocol (the same for both frameworks, and the thread settings of scripts/throughput.py):
- `--threads` compute threads (default 2): Keras/TensorFlow intra-op 2, inter-op 1; PyTorch
  torch.set_num_threads(2), set_num_interop_threads(1); OMP_NUM_THREADS=2 in both.
- The model is built once (seed 0) and put in inference mode (BN uses its moving statistics,
  dropout off); no training and no weights loaded — latency does not depend on the values.
- Input: a pool of 8 random single images (uniform [0, 1), batch axis 1), made before timing
  and cycled, so no data loading or conversion is timed.
- One prediction: input -> class probabilities -> the first probability read back as a Python
  float (which waits for the result). Keras: `--keras-call predict_on_batch` (the default:
  Keras's compiled predict function, as scripts/throughput.py times inference) or `call`
  (model(x, training=False), run eagerly op by op); on the seed models here predict_on_batch
  was the faster. PyTorch: model.eval(), under torch.inference_mode(), torch.softmax of the
  logits, .item(); layout as `--memory-format` (default: the model's default in
  scripts/throughput.py, the faster for training and batched inference — contiguous for
  logreg_bn, channels_last for the others; model and input pool converted once, before timing).
- `--warmup` (10) untimed predictions, then `--runs` (100) timed one by one with
  time.perf_counter; reported: the median and the 90th percentile (linear interpolation between
  the closest ranks, statistics.quantiles' "inclusive" method), and the mean, min and max, in
  milliseconds.

PyTorch runs on jemalloc with `--jemalloc PATH` (or the JEMALLOC environment variable), the
process re-executed with LD_PRELOAD as in scripts/throughput.py; the JSON records the
allocator. Keras runs as it is.

Prints one JSON line (also written to --out when given):
    {"framework", "model", "median_ms", "p90_ms", "mean_ms", "min_ms", "max_ms", "threads",
     "params", "warmup", "runs", "call", "memory_format", "version", "allocator",
     "omp_wait_policy", "peak_rss_mib"}

Measure on an otherwise idle machine (see scripts/throughput.py on OMP_WAIT_POLICY).
Run from the repository root:
    ~/venv-keras/bin/python scripts/latency.py keras deep_bn
    ~/venv-torch/bin/python scripts/latency.py torch deep_bn \\
        --jemalloc /usr/lib/x86_64-linux-gnu/libjemalloc.so.2
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import throughput  # noqa: E402  (MODELS, the jemalloc re-exec and the allocator record)

POOL = 8


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("framework", choices=("keras", "torch"))
    p.add_argument("model", choices=throughput.MODELS)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--jemalloc", default=os.environ.get("JEMALLOC") or None,
                   help="libjemalloc.so path to preload for PyTorch (default: $JEMALLOC)")
    p.add_argument("--memory-format", choices=("channels_last", "contiguous"), default=None,
                   help="PyTorch tensor layout (default: scripts/throughput.py's for MODEL)")
    p.add_argument("--keras-call", choices=("predict_on_batch", "call"),
                   default="predict_on_batch",
                   help="how Keras predicts: the compiled predict_on_batch (default) or "
                        "model(x, training=False)")
    p.add_argument("--out")
    args = p.parse_args(argv)
    args.memory_format = args.memory_format or throughput.default_memory_format(args.model)
    return args


def timed(predict, args):
    """Milliseconds of each timed prediction, after the warm-up."""
    for i in range(args.warmup):
        predict(i)
    times = []
    for i in range(max(args.runs, 1)):
        t0 = time.perf_counter()
        predict(i)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def run_keras(args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras
    import keras_examples

    keras.utils.set_random_seed(0)
    model = keras_examples.EXAMPLES[args.model]()
    shape = tuple(int(d) for d in model.input_shape[1:])
    rng = np.random.default_rng(1234)
    xs = [tf.constant(rng.random((1,) + shape, dtype=np.float32)) for _ in range(POOL)]

    if args.keras_call == "predict_on_batch":
        def predict(i):
            p = model.predict_on_batch(xs[i % POOL])
            _ = float(np.asarray(p)[0, 0])
    else:
        def predict(i):
            p = model(xs[i % POOL], training=False)
            _ = float(p[0, 0])

    return {"times": timed(predict, args), "params": int(model.count_params()),
            "call": args.keras_call, "memory_format": "NHWC",
            "version": f"keras {keras.__version__}, tensorflow {tf.__version__}",
            "allocator": "default"}


def run_torch(args):
    import numpy as np  # noqa: F401  (torch warns without numpy on some builds)
    import torch
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    import torch_examples

    torch.manual_seed(0)
    model = torch_examples.EXAMPLES[args.model]()
    shape = torch_examples.INPUT_SHAPES[args.model]
    g = torch.Generator().manual_seed(1234)
    xs = [torch.rand(1, *shape, generator=g) for _ in range(POOL)]
    if args.memory_format == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        xs = [x.contiguous(memory_format=torch.channels_last) for x in xs]
    model.eval()

    def predict(i):
        with torch.inference_mode():
            p = torch.softmax(model(xs[i % POOL]), dim=1)
            _ = p[0, 0].item()

    return {"times": timed(predict, args), "params": torch_examples.counts(model)[0],
            "call": "eval + inference_mode", "memory_format": args.memory_format,
            "version": f"torch {torch.__version__}", "allocator": throughput.allocator()}


def main(argv):
    args = parse(argv)
    if args.framework == "torch":
        failed = throughput.preload_jemalloc(args.jemalloc, __file__, argv)
        if failed:
            return failed
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    res = (run_keras if args.framework == "keras" else run_torch)(args)
    times = res["times"]
    p90 = (statistics.quantiles(times, n=10, method="inclusive")[8] if len(times) > 1
           else times[0])
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    record = {
        "framework": args.framework,
        "model": args.model,
        "median_ms": statistics.median(times),
        "p90_ms": p90,
        "mean_ms": statistics.fmean(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "threads": args.threads,
        "params": res["params"],
        "warmup": args.warmup,
        "runs": len(times),
        "call": res["call"],
        "memory_format": res["memory_format"],
        "version": res["version"],
        "allocator": res["allocator"],
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "peak_rss_mib": round(peak_kib / 1024, 1),
    }
    line = json.dumps(record)
    print(line, flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
