#!/usr/bin/env python3
"""End-to-end Keras parity through the `strata predict` command line.

For each example spec (default: the five of scripts/reference_graph_forward.py), this script
  1. writes the formula checkpoint of reference_graph_forward.py as a real safetensors file
     (float32 tensors `layers.<i>.<param>` in strata's layouts, metadata `strata.spec` = the spec
     file's text and `strata.classes` = the JSON array ["c0", "c1", ...]);
  2. writes the formula images as 8-bit RGB PNGs (round(255 * v)), so the images strata reads
     are exactly representable; the Keras side uses those quantised images too, converted as
     strata's loader does: f32(byte) * f32(rescale), rescale 1/255 unless the spec sets
     `data: {rescale: ...}`;
  3. runs `target/release/strata predict CHECKPOINT IMAGE... --format json`;
  4. compares its probabilities with Keras's float64 ones (binary head: [1 - p, p]) and prints
     the largest difference per model.
It exits 0 when every model agrees within 2e-4, 1 when one differs or strata fails, and 3 when
strata only refused models it cannot run yet (the backend's graph support is not finished).

Install (outside the repository, once; /opt/venv-keras already has it but safetensors):
    python3 -m venv ~/venv-keras
    ~/venv-keras/bin/pip install tensorflow-cpu keras numpy pyyaml pillow safetensors
Run from the repository root after `cargo build --release`:
    ~/venv-keras/bin/python scripts/parity_cli.py [--strata target/release/strata]
        [--workdir DIR] [--tolerance 2e-4] [EXAMPLE ...]
Without --workdir the checkpoint and PNGs go to a temporary folder that is deleted afterwards;
with it they are kept (DIR/<example>/model.safetensors, DIR/<example>/image<n>.png).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import yaml
from PIL import Image
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_graph_forward as ref  # noqa: E402


def spec_rescale(text):
    data = (yaml.safe_load(text) or {}).get("data") or {}
    value = data.get("rescale", "1/255")
    if isinstance(value, str) and "/" in value:
        num, den = value.split("/")
        return float(num) / float(den)
    return float(value)


def one_example(key, strata, folder, tolerance):
    """Returns (status, message): status "ok", "differs", "refused" or "failed"."""
    spec = ref.SPECS[key]
    with open(os.path.join(ref.ROOT, spec)) as f:
        text = f.read()
    summary = ref.strata_summary(strata, spec)
    h, w, c = summary["input"]
    if c != 3:
        return "failed", f"{key}: only RGB inputs are written as PNG here (input has {c} channels)"

    # The formula images, quantised to bytes and read back as strata's loader reads them.
    raw = ref.images_for(summary)[1]
    as_bytes = np.clip(np.rint(raw.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    rescale = np.float32(spec_rescale(text))
    x = as_bytes.astype(np.float32) * rescale
    paths = []
    for n, img in enumerate(as_bytes):
        path = os.path.join(folder, f"image{n}.png")
        Image.fromarray(img).save(path)
        paths.append(path)

    # Keras's reference (and every check of reference_graph_forward.py) on those images.
    r = ref.reference(key, strata, images_override=x)
    tensors = {e["name"]: ref.values_of(e).astype(np.float32) for e in r["tensors"]}
    checkpoint = os.path.join(folder, "model.safetensors")
    save_file(tensors, checkpoint,
              metadata={"strata.spec": text, "strata.classes": json.dumps(r["classes"])})

    run = subprocess.run([strata, "predict", checkpoint, *paths, "--format", "json"],
                         cwd=ref.ROOT, capture_output=True, text=True)
    if run.returncode != 0:
        message = (run.stderr or run.stdout).strip()
        status = ("refused" if "cannot be trained or run yet" in message
                  or "not supported" in message else "failed")
        return status, f"{key}: strata predict exited {run.returncode}: {message}"
    rows = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    if len(rows) != len(paths):
        return "failed", f"{key}: {len(rows)} predictions for {len(paths)} images:\n{run.stdout}"
    expected = np.asarray(r["probabilities"])
    worst = 0.0
    for n, (row, want) in enumerate(zip(rows, expected)):
        if os.path.basename(row["path"]) != os.path.basename(paths[n]):
            return "failed", f"{key}: prediction {n} is for {row['path']}, expected {paths[n]}"
        got = np.asarray([row["probabilities"][name] for name in r["classes"]], dtype=np.float64)
        worst = max(worst, float(np.max(np.abs(got - want))))
    status = "ok" if worst <= tolerance else "differs"
    return status, (f"{key}: max |strata predict - keras| = {worst:.3e} over {len(paths)} PNG "
                    f"images (tolerance {tolerance:g}; Keras float32 vs float64 "
                    f"{r['float32_vs_float64_max_abs_diff']:.1e})")


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("examples", nargs="*", default=ref.EXAMPLES)
    parser.add_argument("--strata", default=os.path.join(ref.ROOT, "target", "release", "strata"))
    parser.add_argument("--workdir")
    parser.add_argument("--tolerance", type=float, default=ref.TOLERANCE)
    args = parser.parse_args(argv)
    unknown = [k for k in args.examples if k not in ref.SPECS]
    if unknown:
        parser.error(f"unknown example(s) {unknown}; known: {ref.EXAMPLES}")
    base = args.workdir or tempfile.mkdtemp(prefix="strata-parity-")
    statuses = []
    try:
        for key in args.examples:
            folder = os.path.join(base, key)
            os.makedirs(folder, exist_ok=True)
            status, message = one_example(key, args.strata, folder, args.tolerance)
            statuses.append(status)
            print(f"[{status}] {message}", flush=True)
    finally:
        if not args.workdir:
            shutil.rmtree(base, ignore_errors=True)
    if all(s == "ok" for s in statuses):
        return 0
    if all(s in ("ok", "refused") for s in statuses):
        return 3
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
