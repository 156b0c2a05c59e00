#!/usr/bin/env python3
"""Keras reference parameter counts for the model zoo in specs/zoo/.

Builds six `keras.applications` models with their default input shapes (weights=None,
include_top=True, classes=1000, alpha 1.0 where the model has one):

    mobilenet        MobileNet          224x224x3
    mobilenet_v2     MobileNetV2        224x224x3
    resnet50         ResNet50           224x224x3
    densenet121      DenseNet121        224x224x3
    xception         Xception           299x299x3
    efficientnet_b0  EfficientNetB0     224x224x3

and records, per model, the total, trainable and non-trainable parameter counts. For
EfficientNetB0 the input `Normalization` layer (mean, variance and count: 7 non-trainable
weights for 3 channels) is subtracted, because strata specs have no preprocessing layers; the
script prints how much it subtracted.

Writes:
  - tests/data/keras_zoo_params.json (relative to the repository root; `--out` to change):
    {"keras_version", "tensorflow_version", "models": {key: {"total", "trainable",
    "non_trainable", "input": [H, W, C]}}}
  - one text file per model in the layer dump folder (`--layers-dir`, default
    `<system temp dir>/keras_zoo_layers`): every layer that has parameters, as
    `name  class  output_shape  params  trainable  non_trainable`, to help whoever writes the
    equivalent spec find a mismatch.

Install (outside the repository, once):
    python3 -m venv ~/venv-keras && ~/venv-keras/bin/pip install tensorflow-cpu keras pillow numpy
Run (from the repository root; nothing is downloaded; about ten seconds on 2 cores):
    ~/venv-keras/bin/python scripts/keras_zoo.py [--out FILE] [--layers-dir DIR]
"""
import argparse
import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "tests", "data", "keras_zoo_params.json")
DEFAULT_LAYERS_DIR = os.path.join(tempfile.gettempdir(), "keras_zoo_layers")


def builders():
    """Key -> (constructor name in keras.applications, keyword arguments)."""
    common = dict(weights=None, include_top=True, classes=1000)
    return {
        "mobilenet": ("MobileNet", dict(common, alpha=1.0)),
        "mobilenet_v2": ("MobileNetV2", dict(common, alpha=1.0)),
        "resnet50": ("ResNet50", common),
        "densenet121": ("DenseNet121", common),
        "xception": ("Xception", common),
        "efficientnet_b0": ("EfficientNetB0", common),
    }


def weight_count(weights):
    import numpy as np
    return int(sum(int(np.prod(w.shape)) for w in weights))


def layer_counts(layer):
    """(total, trainable, non-trainable) parameters of one layer."""
    trainable = weight_count(layer.trainable_weights)
    non_trainable = weight_count(layer.non_trainable_weights)
    return trainable + non_trainable, trainable, non_trainable


def output_shape(layer):
    """The layer's output shape without the batch axis, as HxWxC or a flat length."""
    shape = layer.output.shape
    dims = [d for d in shape[1:]]
    return "x".join(str(d) for d in dims)


def excluded_layers(key, model):
    """Preprocessing layers strata specs leave out: EfficientNet's input Normalization."""
    import keras
    if key != "efficientnet_b0":
        return []
    return [l for l in model.layers if isinstance(l, keras.layers.Normalization)]


def describe(key, model):
    """The counts of one model (excluded layers subtracted) and its per-layer dump lines."""
    excluded = excluded_layers(key, model)
    total = model.count_params()
    trainable = weight_count(model.trainable_weights)
    non_trainable = weight_count(model.non_trainable_weights)
    for layer in excluded:
        t, tr, nt = layer_counts(layer)
        total, trainable, non_trainable = total - t, trainable - tr, non_trainable - nt
        print(f"  {key}: subtracted {layer.__class__.__name__} '{layer.name}': "
              f"{t} params ({tr} trainable, {nt} non-trainable)")
    assert total == trainable + non_trainable
    lines = [f"# keras.applications {model.name}: total {total}, trainable {trainable}, "
             f"non-trainable {non_trainable}"
             + (" (input Normalization subtracted)" if excluded else ""),
             "# name  class  output_shape  params  trainable  non_trainable"]
    for layer in model.layers:
        t, tr, nt = layer_counts(layer)
        if t == 0:
            continue
        mark = "  # excluded" if layer in excluded else ""
        lines.append(f"{layer.name}  {layer.__class__.__name__}  {output_shape(layer)}  "
                     f"{t}  {tr}  {nt}{mark}")
    shape = [int(d) for d in model.input_shape[1:]]
    counts = {"total": total, "trainable": trainable, "non_trainable": non_trainable,
              "input": shape}
    return counts, lines


def to_json(result):
    """Indented JSON with each model's record on one line, for short diffs."""
    models = ",\n".join(f"    {json.dumps(key)}: {json.dumps(counts)}"
                         for key, counts in result["models"].items())
    return ("{\n"
            f'  "keras_version": {json.dumps(result["keras_version"])},\n'
            f'  "tensorflow_version": {json.dumps(result["tensorflow_version"])},\n'
            '  "models": {\n' + models + "\n  }\n}\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="JSON file to write")
    parser.add_argument("--layers-dir", default=DEFAULT_LAYERS_DIR,
                        help="folder for the per-layer dumps")
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    os.makedirs(args.layers_dir, exist_ok=True)
    models = {}
    for key, (ctor, kwargs) in builders().items():
        model = getattr(keras.applications, ctor)(**kwargs)
        counts, lines = describe(key, model)
        models[key] = counts
        with open(os.path.join(args.layers_dir, f"{key}.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
        print(f"{key:16s} {ctor:15s} input {'x'.join(map(str, counts['input'])):9s} "
              f"total {counts['total']:>10,}  trainable {counts['trainable']:>10,}  "
              f"non-trainable {counts['non_trainable']:>7,}")
        keras.backend.clear_session()
        del model

    result = {"keras_version": keras.__version__, "tensorflow_version": tf.__version__,
              "models": models}
    with open(args.out, "w") as f:
        f.write(to_json(result))
    print(f"wrote {os.path.relpath(args.out)}; layer dumps in {args.layers_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
