#!/usr/bin/env python3
"""Checks `strata export --format onnx` against ONNX Runtime, and compares their speed.

    scripts/onnx_check.py [--only check|trained|bench] [--images 4] [--epochs 3]
                          [--steps 20] [--repeats 3] [--warmup 5] [--out results.json] [SPEC...]

Needs Python with onnx, onnxruntime, numpy and pillow, for example
    python3 -m venv /opt/venv-onnx && /opt/venv-onnx/bin/pip install onnx onnxruntime numpy pillow
and strata built (`cargo build --release`); the script builds the `random_checkpoint` example
itself. Run it from the repository root. STRATA names another strata binary.

check   every spec under specs/ and tests/fixtures/export/every_op.yaml (every layer, merge and
        activation; or the SPECs given) with random weights
        (examples/random_checkpoint.rs: Keras-initialised kernels, random biases and batch-norm
        statistics), exported twice (float32 input, and uint8 with --raw-input);
        onnx.checker.check_model(full_check=True) on both; random PNG images of the input size
        classified by `strata predict --format json` and by ONNX Runtime; the largest absolute
        difference between their probabilities must be at most 1e-5, and the largest relative
        one (to the larger of the probability and 1e-6) at most 1e-4: a 1000-class model's
        probabilities are near 1e-3.
trained the bundled example (examples/fashion-mini.yaml) trained for --epochs epochs, exported,
        and the same comparison on its validation images.
bench   `strata bench SPEC` inference images/s against ONNX Runtime running the exported model,
        both on 2 threads (RAYON_NUM_THREADS=2; intra_op_num_threads=2, inter_op 1), the same
        batch size (the spec's), random input, warm-up then the median of --repeats runs of
        --steps batches, for the seed models (specs/seed/) and the example. The two run back to
        back in one process tree; on a shared machine compare the ratio, not the absolute rates.

Prints one line per model and a table; exits 1 when a check fails.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from PIL import Image

TOLERANCE = 1e-5
RELATIVE_TOLERANCE = 1e-4
ROOT = Path(__file__).resolve().parent.parent
STRATA = os.environ.get("STRATA", str(ROOT / "target/release/strata"))
EVERY_OP = Path("tests/fixtures/export/every_op.yaml")
RANDOM_CHECKPOINT = ROOT / "target/release/examples/random_checkpoint"
ENV = dict(os.environ, RAYON_NUM_THREADS="2", NO_COLOR="1")


def run(args, **kwargs):
    """Runs a command; its stdout, or exits with its output when it fails."""
    done = subprocess.run(args, capture_output=True, text=True, env=ENV, **kwargs)
    if done.returncode != 0:
        sys.exit(f"{' '.join(map(str, args))} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout


def random_checkpoint(spec, out):
    run([RANDOM_CHECKPOINT, spec, out])


def export(checkpoint, out, raw=False):
    run([STRATA, "export", checkpoint, "--format", "onnx", "--out", out] + (["--raw-input"] if raw else []))
    onnx.checker.check_model(str(out), full_check=True)
    return {p.key: p.value for p in onnx.load(str(out), load_external_data=False).metadata_props}


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def predict(checkpoint, images):
    """`strata predict --format json`: {path: [p per class]}, classes in output order."""
    out = run([STRATA, "predict", checkpoint, *images, "--format", "json"])
    result = {}
    for line in out.splitlines():
        obj = json.loads(line)
        result[obj["path"]] = list(obj["probabilities"].values())
    return result


def pixels(path, channels):
    image = Image.open(path).convert("L" if channels == 1 else "RGB")
    array = np.asarray(image, dtype=np.uint8)
    return array.reshape(array.shape[0], array.shape[1], channels)


def differences(got, want):
    """The largest absolute and relative difference."""
    diff = np.abs(got - want)
    return float(diff.max()), float((diff / np.maximum(np.abs(want), 1e-6)).max())


def compare(checkpoint, float_model, raw_model, images, meta):
    """Largest |ORT - strata predict| (absolute, relative) for the float and raw-input models,
    over `images`."""
    h, w, c = json.loads(meta["strata.input_shape"])
    rescale = np.float32(float(meta["strata.rescale"]))
    expected = predict(checkpoint, images)
    raw = []
    for path in images:
        array = pixels(path, c)
        if array.shape[:2] != (h, w):
            sys.exit(f"{path} is {array.shape[1]}x{array.shape[0]}, not the model's {w}x{h}")
        raw.append(array)
    raw = np.stack(raw)
    want = np.array([expected[str(p)] for p in images], dtype=np.float32)
    got_float = session(float_model).run(None, {"input": raw.astype(np.float32) * rescale})[0]
    got_raw = session(raw_model).run(None, {"input": raw})[0]
    return differences(got_float, want), differences(got_raw, want)


def random_images(folder, meta, count, seed):
    h, w, c = json.loads(meta["strata.input_shape"])
    rng = np.random.default_rng(seed)
    paths = []
    for idx in range(count):
        data = rng.integers(0, 256, size=(h, w, c), dtype=np.uint8)
        image = Image.fromarray(data[:, :, 0] if c == 1 else data, "L" if c == 1 else "RGB")
        path = Path(folder) / f"image{idx}.png"
        image.save(path)
        paths.append(path)
    return paths


def passes(diffs):
    return all(d[0] <= TOLERANCE and d[1] <= RELATIVE_TOLERANCE for d in diffs.values())


def describe(diffs):
    return ", ".join(f"max |ORT - predict| {d[0]:.2e} (relative {d[1]:.2e}) with {kind} input"
                     for kind, d in diffs.items())


def check_spec(spec, count):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkpoint = tmp / "random.safetensors"
        random_checkpoint(spec, checkpoint)
        meta = export(checkpoint, tmp / "float.onnx")
        export(checkpoint, tmp / "raw.onnx", raw=True)
        images = random_images(tmp, meta, count, seed=len(str(spec)))
        float_diff, raw_diff = compare(checkpoint, tmp / "float.onnx", tmp / "raw.onnx", images, meta)
        return {"float32": float_diff, "uint8": raw_diff}


def check_trained(epochs):
    spec = ROOT / "examples/fashion-mini.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run([STRATA, "train", spec, "--epochs", str(epochs), "--out", tmp / "run", "--quiet"])
        meta = export(tmp / "run", tmp / "float.onnx")
        export(tmp / "run", tmp / "raw.onnx", raw=True)
        images = sorted((ROOT / "examples/fashion-mini/validation").rglob("*.png"))
        float_diff, raw_diff = compare(tmp / "run", tmp / "float.onnx", tmp / "raw.onnx", images, meta)
        return len(images), {"float32": float_diff, "uint8": raw_diff}


def ort_images_per_s(model, shape, steps, repeats, warmup):
    sess = session(model)
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    for _ in range(warmup):
        sess.run(None, {"input": x})
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            sess.run(None, {"input": x})
        rates.append(steps * shape[0] / (time.perf_counter() - start))
    return statistics.median(rates)


def bench(spec, steps, repeats, warmup):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        random_checkpoint(spec, tmp / "random.safetensors")
        meta = export(tmp / "random.safetensors", tmp / "model.onnx")
        out = run([STRATA, "bench", spec, "--format", "json", "--steps", str(steps),
                   "--repeats", str(repeats), "--warmup", str(warmup)])
        strata = json.loads(out.strip().splitlines()[-1])
        batch = strata["batch_size"]
        shape = (batch, *json.loads(meta["strata.input_shape"]))
        onnxrt = ort_images_per_s(tmp / "model.onnx", shape, steps, repeats, warmup)
        return batch, strata["infer_images_per_s"], onnxrt, strata["threads"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("specs", nargs="*", type=Path)
    parser.add_argument("--only", choices=["check", "trained", "bench"])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    os.chdir(ROOT)
    subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "random_checkpoint"], check=True)
    results, failed = {"check": {}, "bench": {}}, False
    if args.only in (None, "check"):
        specs = args.specs or sorted(Path("specs").rglob("*.yaml")) + [EVERY_OP]
        for spec in specs:
            diffs = check_spec(spec, args.images)
            ok = passes(diffs)
            failed |= not ok
            results["check"][str(spec)] = diffs
            print(f"{spec}: checker ok; {describe(diffs)}{'' if ok else '  FAIL'}", flush=True)
    if args.only in (None, "trained"):
        count, diffs = check_trained(args.epochs)
        ok = passes(diffs)
        failed |= not ok
        results["trained"] = {"images": count, **diffs}
        print(f"trained examples/fashion-mini.yaml ({args.epochs} epochs, {count} validation "
              f"images): checker ok; {describe(diffs)}{'' if ok else '  FAIL'}", flush=True)
    if args.only in (None, "bench"):
        specs = sorted(Path("specs/seed").glob("*.yaml")) + [Path("examples/fashion-mini.yaml")]
        rows = []
        for spec in specs:
            batch, mine, theirs, threads = bench(spec, args.steps, args.repeats, args.warmup)
            results["bench"][str(spec)] = {"batch": batch, "strata": mine, "onnxruntime": theirs,
                                           "strata_threads": threads}
            rows.append(f"| {spec} | {batch} | {mine:.1f} | {theirs:.1f} | {mine / theirs:.2f} |")
            print(rows[-1], flush=True)
        print(f"\n| model | batch | strata img/s | ONNX Runtime {ort.__version__} img/s | strata / ORT |")
        print("|---|---|---|---|---|")
        print("\n".join(rows))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
