#!/usr/bin/env python3
"""Training and inference throughput of an example model in Keras or PyTorch, on random input.

    throughput.py keras|torch MODEL [--batch 32] [--threads 2] [--out out.json]
                  [--warmup 5] [--steps 30] [--repeats 3] [--jemalloc PATH]

MODEL is one of resnet_small, mobilenetv2_small, fashion_resnet (specs/examples/MODEL.yaml) or
logreg_bn, wide_bn, deep_bn (the seed models, specs/seed/MODEL.yaml, 224x224x3, 2 classes): the
hand-written equivalents in scripts/keras_examples.py (Keras, NHWC) and
scripts/torch_examples.py (PyTorch, NCHW), with the same parameter counts as `strata summary`
(recorded as `params`). Compare with `strata bench SPEC --batch-size 32 --steps 30` on the same
machine, back to back (scripts/compare_graph_throughput.sh and
scripts/compare_seed_throughput.sh do all three); numbers from different machines, or even
different hours on one cloud VM, are not comparable — compare ratios taken in one run.

Protocol (the same for both frameworks):
- `--threads` compute threads (default 2): Keras/TensorFlow intra-op 2, inter-op 1; PyTorch
  torch.set_num_threads(2), set_num_interop_threads(1); OMP_NUM_THREADS=2 in both.
- PyTorch layout: `--memory-format channels_last` (model and inputs converted with
  `.to(memory_format=torch.channels_last)`, PyTorch's advice for CNNs on CPU) or `contiguous`
  (plain NCHW). The default is the faster of the two for the model, measured on a 2-core VM
  (torch 2.15, jemalloc, A/B in one process, best step of each): channels_last for the
  example models (several times faster than NCHW) and for wide_bn and deep_bn (training 1.4-2.8x,
  inference 1.6-3x faster at batch 10 and 32); contiguous for logreg_bn (training 1.7-4x faster
  at batch 10-64: BatchNorm over 3 channels is slow in channels_last; inference a tie).
- Input: a pool of 8 random batches (uniform [0, 1) images of the model's input shape, random
  labels), made before timing and cycled, so no data loading is timed.
- Training step: forward + categorical cross-entropy + backward + Adam update (epsilon 1e-7,
  Keras's default; lr 1e-3, Keras's default, for the example models, and the spec's `train.lr`
  for the seed models, as `strata bench` uses it: 0.01 logreg_bn and deep_bn, 0.001 wide_bn;
  recorded as `lr`), BN in training mode. Keras: model.train_on_batch on one-hot
  labels (the model compiled with loss="categorical_crossentropy", metrics=["accuracy"]; Keras
  runs its compiled tf.function train step); the loss is read back every step, which waits for
  the step to finish. PyTorch: model.train(), zero_grad(set_to_none=True), logits ->
  nn.CrossEntropyLoss (softmax + cross-entropy in one) -> backward -> Adam(eps=1e-7).step(),
  loss.item() every step.
- Inference step: Keras model.predict_on_batch (BN in inference mode, dropout off), the result
  read back; PyTorch model.eval() under torch.inference_mode(), softmax of the logits, read back.
- `--warmup` untimed steps (5), then `--repeats` (3) timed runs of `--steps` (30) steps each;
  images/s of each run = steps * batch / seconds; the median is reported (each run's rate too).
- peak_rss_mib: the process's peak resident memory (resource.getrusage ru_maxrss) at the end,
  in MiB — it includes the framework itself (TensorFlow alone is several hundred MiB).

PyTorch on a 2-core VM loses up to half its time to page faults with glibc's allocator. With
`--jemalloc PATH` (or the JEMALLOC environment variable) naming libjemalloc.so.2 (Debian/Ubuntu:
`apt-get install libjemalloc2`; `ldconfig -p | grep jemalloc` finds it) the script re-executes
itself with LD_PRELOAD=PATH and
MALLOC_CONF=oversize_threshold:0,background_thread:false,dirty_decay_ms:-1,muzzy_decay_ms:-1
(unless LD_PRELOAD is set already); the JSON records the allocator used. Keras runs as it is.

Prints one JSON line (also written to --out when given):
    {"framework", "model", "batch", "train_ips", "infer_ips", "peak_rss_mib", "threads",
     "params", "lr", "memory_format", "train_ips_runs", "infer_ips_runs", "warmup", "steps",
     "repeats", "first_loss", "last_loss", "version", "allocator", "omp_wait_policy"}

Measure on an otherwise idle machine. PyTorch's OpenMP worker threads spin while they wait; when
other processes compete for the cores they lose 10x or more (seen here: resnet_small training
8 images/s with the default policy against 132 with OMP_WAIT_POLICY=PASSIVE, on 2 cores with a
compiler running). OMP_WAIT_POLICY is recorded in the JSON; leave it unset for idle-machine
numbers.

Install (outside the repository, once):
    python3 -m venv ~/venv-keras && ~/venv-keras/bin/pip install tensorflow-cpu keras pillow numpy
    python3 -m venv ~/venv-torch && ~/venv-torch/bin/pip install torch numpy
Run from the repository root:
    ~/venv-keras/bin/python scripts/throughput.py keras resnet_small
    ~/venv-torch/bin/python scripts/throughput.py torch resnet_small \\
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
MODELS = ("resnet_small", "mobilenetv2_small", "fashion_resnet", "logreg_bn", "wide_bn", "deep_bn")
JEMALLOC_CONF = "oversize_threshold:0,background_thread:false,dirty_decay_ms:-1,muzzy_decay_ms:-1"
POOL = 8
LR = 1e-3
# Adam's learning rate where the spec sets one (specs/seed/*.yaml `train.lr`); LR elsewhere.
SPEC_LR = {"logreg_bn": 0.01, "wide_bn": 0.001, "deep_bn": 0.01}


def learning_rate(model):
    return SPEC_LR.get(model, LR)


def default_memory_format(model):
    """PyTorch's faster layout for MODEL on CPU here (measured; see the docstring)."""
    return "contiguous" if model == "logreg_bn" else "channels_last"


def preload_jemalloc(path, script, argv):
    """Re-executes `script argv` with LD_PRELOAD=path (jemalloc) unless it is preloaded already.

    Returns only when nothing is to be done (no path, or already preloaded); 2 when the file is
    missing; otherwise the process is replaced."""
    if not path or path in os.environ.get("LD_PRELOAD", ""):
        return None
    if not os.path.exists(path):
        print(f"error: no such file: {path}", file=sys.stderr)
        return 2
    env = dict(os.environ, LD_PRELOAD=path,
               MALLOC_CONF=os.environ.get("MALLOC_CONF", JEMALLOC_CONF))
    os.execve(sys.executable, [sys.executable, os.path.abspath(script)] + argv, env)


def allocator():
    """The allocator this process runs on, as recorded in the JSON."""
    preload = os.environ.get("LD_PRELOAD", "")
    if "jemalloc" in preload:
        return f"jemalloc ({preload}; MALLOC_CONF={os.environ.get('MALLOC_CONF', '')})"
    return "default"


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("framework", choices=("keras", "torch"))
    p.add_argument("model", choices=MODELS)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--jemalloc", default=os.environ.get("JEMALLOC") or None,
                   help="libjemalloc.so path to preload for PyTorch (default: $JEMALLOC)")
    p.add_argument("--memory-format", choices=("channels_last", "contiguous"), default=None,
                   help="PyTorch tensor layout (default: the faster for MODEL, "
                        "see default_memory_format)")
    p.add_argument("--out")
    args = p.parse_args(argv)
    args.memory_format = args.memory_format or default_memory_format(args.model)
    return args


def timed(step, args):
    """Images/s of each timed run, after the warm-up."""
    for i in range(args.warmup):
        step(i)
    rates = []
    for _ in range(max(args.repeats, 1)):
        t0 = time.perf_counter()
        for i in range(args.steps):
            step(i)
        rates.append(args.steps * args.batch / (time.perf_counter() - t0))
    return rates


def run_keras(args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras
    sys.path.insert(0, HERE)
    import keras_examples

    keras.utils.set_random_seed(0)
    model = keras_examples.EXAMPLES[args.model]()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate(args.model),
                                                  epsilon=1e-7),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    shape = tuple(int(d) for d in model.input_shape[1:])
    classes = int(model.output_shape[-1])
    rng = np.random.default_rng(1234)
    xs = [tf.constant(rng.random((args.batch,) + shape, dtype=np.float32)) for _ in range(POOL)]
    ys = [tf.constant(np.eye(classes, dtype=np.float32)[rng.integers(0, classes, args.batch)])
          for _ in range(POOL)]

    losses = []

    def train(i):
        res = model.train_on_batch(xs[i % POOL], ys[i % POOL], return_dict=True)
        losses.append(float(res["loss"]))

    def infer(i):
        p = model.predict_on_batch(xs[i % POOL])
        _ = float(np.asarray(p)[0, 0])

    train_rates = timed(train, args)
    infer_rates = timed(infer, args)
    return {"train": train_rates, "infer": infer_rates, "losses": losses,
            "params": int(model.count_params()),
            "version": f"keras {keras.__version__}, tensorflow {tf.__version__}",
            "allocator": "default"}


def run_torch(args):
    import numpy as np  # noqa: F401  (torch warns without numpy on some builds)
    import torch
    import torch.nn as nn
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    sys.path.insert(0, HERE)
    import torch_examples

    torch.manual_seed(0)
    model = torch_examples.EXAMPLES[args.model]()
    shape = torch_examples.INPUT_SHAPES[args.model]
    classes = torch_examples.CLASSES[args.model]
    # a generator of its own: with the init seed, inputs and weights would share one stream
    g = torch.Generator().manual_seed(1234)
    xs = [torch.rand(args.batch, *shape, generator=g) for _ in range(POOL)]
    ys = [torch.randint(0, classes, (args.batch,), generator=g) for _ in range(POOL)]
    if args.memory_format == "channels_last":
        # PyTorch's advice for CNNs on CPU: NHWC kernels (oneDNN) instead of NCHW; measured
        # here several times faster than NCHW on the conv models (not logreg_bn: see the
        # docstring).
        model = model.to(memory_format=torch.channels_last)
        xs = [x.contiguous(memory_format=torch.channels_last) for x in xs]
    opt = torch.optim.Adam(model.parameters(), lr=learning_rate(args.model), eps=1e-7)
    lossf = nn.CrossEntropyLoss()
    losses = []

    def train(i):
        opt.zero_grad(set_to_none=True)
        loss = lossf(model(xs[i % POOL]), ys[i % POOL])
        loss.backward()
        opt.step()
        losses.append(loss.item())

    def infer(i):
        with torch.inference_mode():
            p = torch.softmax(model(xs[i % POOL]), dim=1)
            _ = p[0, 0].item()

    model.train()
    train_rates = timed(train, args)
    model.eval()
    infer_rates = timed(infer, args)
    return {"train": train_rates, "infer": infer_rates, "losses": losses,
            "params": torch_examples.counts(model)[0],
            "version": f"torch {torch.__version__} ({args.memory_format})",
            "allocator": allocator()}


def main(argv):
    args = parse(argv)
    if args.framework == "torch":
        failed = preload_jemalloc(args.jemalloc, __file__, argv)
        if failed:
            return failed
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    res = (run_keras if args.framework == "keras" else run_torch)(args)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    record = {
        "framework": args.framework,
        "model": args.model,
        "batch": args.batch,
        "train_ips": statistics.median(res["train"]),
        "infer_ips": statistics.median(res["infer"]),
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "threads": args.threads,
        "params": res["params"],
        "lr": learning_rate(args.model),
        "memory_format": args.memory_format if args.framework == "torch" else "NHWC",
        "train_ips_runs": res["train"],
        "infer_ips_runs": res["infer"],
        "warmup": args.warmup,
        "steps": args.steps,
        "repeats": args.repeats,
        "first_loss": res["losses"][0] if res["losses"] else None,
        "last_loss": res["losses"][-1] if res["losses"] else None,
        "version": res["version"],
        "allocator": res["allocator"],
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
    }
    line = json.dumps(record)
    print(line, flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
