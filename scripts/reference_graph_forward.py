#!/usr/bin/env python3
"""Keras reference for strata's forward pass on the five graph example specs.

For each of

    resnet_small       specs/examples/resnet_small.yaml        ResNet (add merges)
    mobilenetv2_small  specs/examples/mobilenetv2_small.yaml   MobileNetV2 (dwconv, relu6)
    inception_small    specs/examples/inception_small.yaml     Inception (concat merges)
    se_sepconv         specs/examples/se_sepconv.yaml          sepconv, squeeze-and-excitation
                                                               (mul), binary head dense1 sigmoid
    densenet_small     specs/examples/densenet_small.yaml      DenseNet (concat merges)

this script builds the Keras model with the builders of scripts/keras_examples.py, gives it
deterministic *formula* weights (no random numbers, so that tests/suite/graph_parity.rs regenerates
exactly the same values in Rust), runs a few formula images through it in inference mode
(`model(x, training=False)`) in float64 and in float32, and writes
tests/data/reference_graph_forward.json: per model the spec path, every checkpoint tensor's
formula parameters, the images' formula parameters and Keras's probabilities. No weights are
stored; the file stays small.

The formula (one per tensor, and per image)
-------------------------------------------
    value[k] = f32( offset + scale * sin(a*k + b + c*(k*k)) )
k is the element's row-major index in strata's checkpoint layout (src/ir/layout.rs): conv
`weight [filters, c_in/groups, kh, kw]`, dwconv `weight [c*m, 1, kh, kw]`, sepconv `depthwise
[c*m, 1, kh, kw]` + `pointwise [filters, c*m, 1, 1]`, dense `weight [units, in]`, vectors `[n]`;
for an image, k is the index in NHWC order (row, column, channel) of that image alone. The
phase is evaluated in IEEE double precision exactly in this order, ((a*k) + b) + (c*(k*k)), with
k converted to double (exact), no fused multiply-add; sin is the C library's (Python's
math.sin, Rust's f64::sin: both glibc on Linux); the result is rounded to f32 once. Every
parameter is a decimal of at most 10 significant digits, so that it parses to the same double
in Python and in Rust (serde_json's exact fast path).

The quadratic "chirp" term c*k*k is there on purpose: with c = 0, any tensor of the form
sin(a*k + b) reshaped to [out, in] is a matrix of rank 2 (sin(x + y) = sin x cos y + cos x sin y),
so every convolution would see only two input directions: a degenerate network whose
activations explode or vanish through 60-100 layers. With c = CHIRP (an irrational-looking
constant) the values behave like uniform-phase noise (mean ~0, variance ~scale^2/2).

Parameters of the tensor `layers.<i>.<p>` (i: the layer's index in `strata summary`, p: the
parameter name, code(p) from PARAM_CODE below):
    a = 0.37 + 0.011*i + 0.05*code(p)       b = 0.5*i + 0.7*code(p)       c = CHIRP
    weight / depthwise / pointwise kernels: offset 0, scale = GAIN[model] * sqrt(3 / fan_in)
        (fan_in: conv c_in/groups*kh*kw, dwconv and sepconv depthwise kh*kw, sepconv
        pointwise c*m, dense in; the model's last layer with parameters, the head, gets
        HEAD_GAIN[model] instead, so that the probabilities are neither uniform nor saturated;
        both tuned with --stats)
    (a, b and scale rounded to 10 significant digits)
    bias: offset 0, scale 0.1         gamma: offset 1, scale 0.25 (in [0.75, 1.25])
    beta: offset 0, scale 0.1         moving_mean: offset 0, scale 0.1
    moving_variance: offset 1, scale 0.5 (in [0.5, 1.5])
Images n = 0, 1, 2 (already rescaled to [0, 1]): see IMAGES below: smooth stripes (c = 0), a
darker chirp and a brighter noisy one.
All of these are written per tensor into the JSON; the Rust test uses only what the JSON says.

How the strata tensors are matched to Keras's
---------------------------------------------
`strata summary --format json SPEC` (built binary target/release/strata, or --strata PATH)
lists every layer with its kind, output shape, activation suffix and inputs. Both graphs are
reduced to the same canonical form (a strata layer with a suffix activation becomes the op then
the activation; strata `identity` and Keras `Reshape` pass their input on; Keras layers in the
order the builder first calls them, recorded while it runs) and compared node by node: kind,
output shape and the nodes each reads, in order. Any difference (a builder that creates its branches
in another order than the spec expands them, a skip connection taken before instead of after an
activation, a wrong shape) fails loudly. Then the layers with parameters are paired in that
order and every converted tensor's shape is asserted against the Keras variable's. The Keras
layers' arguments (kernel, stride, padding, bias, pool windows, bn eps, ...) go into the JSON
too, and tests/suite/graph_parity.rs checks them against strata's compiled IR.

Layout conversions (strata checkpoint -> Keras variables)
    Conv2D kernel [kh, kw, c_in/groups, f]  = weight.transpose(2, 3, 1, 0)
    DepthwiseConv2D kernel [kh, kw, c, m]   = weight.reshape(c, m, kh, kw).transpose(2, 3, 0, 1)
    SeparableConv2D depthwise as above; pointwise [1, 1, c*m, f] = pointwise[:, :, 0, 0].T
    Dense kernel [in, units] = weight.T (after a flatten of an H x W x C image, strata's `in` is
        in channel, row, column order and Keras's in row, column, channel order: permuted)
    BatchNormalization [gamma, beta, moving_mean, moving_variance] as they are.
Binary head (`dense1 sigmoid`): the reference probabilities are [1 - p, p], as strata's
predict reports them.

Float64 and float32
-------------------
The expected probabilities come from a float64 Keras model (keras.config.set_floatx and the
dtype policy set to float64 while building) holding the same f32-rounded weights and images;
the float32 model's probabilities are computed too, and the largest difference between the two
is written to the JSON and printed: it is the noise floor a float32 implementation can expect.

Install (outside the repository, once; /opt/venv-keras already has all of it):
    python3 -m venv ~/venv-keras
    ~/venv-keras/bin/pip install tensorflow-cpu keras numpy pyyaml
Run from the repository root, after `cargo build --release`:
    ~/venv-keras/bin/python scripts/reference_graph_forward.py [--strata target/release/strata]
        [--out tests/data/reference_graph_forward.json] [--stats] [EXAMPLE ...]
(--stats prints the root-mean-square of every layer's output of the first image, to check that
activations stay O(1); naming examples writes only those, so use it for inspection only.)
Then `cargo test --release --test suite graph_parity -- --nocapture`.
"""
import argparse
import json
import math
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

import numpy as np

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import keras  # noqa: E402
from keras.src.layers.layer import Layer as _KerasLayer  # noqa: E402

import keras_examples  # noqa: E402

EXAMPLES = ["resnet_small", "mobilenetv2_small", "inception_small", "se_sepconv",
            "densenet_small"]
SPECS = {key: f"specs/examples/{key}.yaml" for key in EXAMPLES}
BUILDERS = keras_examples.EXAMPLES  # key -> function returning the Keras model
TOLERANCE = 2e-4
IMAGE_COUNT = 3
CHIRP = 0.7548776662
# Chosen (with --stats) so that activations stay O(1) to O(10) and the probabilities are spread
# (largest 0.4-0.95 per image, none below 1e-6).
GAIN = {"resnet_small": 0.9, "mobilenetv2_small": 1.0, "inception_small": 1.0,
        "se_sepconv": 1.0, "densenet_small": 1.0}
HEAD_GAIN = {"resnet_small": 0.6, "mobilenetv2_small": 0.6, "inception_small": 2.5,
             "se_sepconv": 1.5, "densenet_small": 6.0}
PARAM_CODE = {"weight": 0, "bias": 1, "gamma": 2, "beta": 3, "moving_mean": 4,
              "moving_variance": 5, "depthwise": 6, "pointwise": 7}
VECTOR_FORMULA = {  # name: (offset, scale)
    "bias": (0.0, 0.1),
    "gamma": (1.0, 0.25),
    "beta": (0.0, 0.1),
    "moving_mean": (0.0, 0.1),
    "moving_variance": (1.0, 0.5),
}
IMAGES = [  # per image: a, b, c, offset, scale (values in [offset - scale, offset + scale])
    (0.013, 0.3, 0.0, 0.5, 0.5),        # smooth stripes over [0, 1]
    (0.37, 1.1, 0.00001, 0.35, 0.35),   # a chirp, darker: [0, 0.7]
    (0.91, 2.0, CHIRP, 0.6, 0.4),       # noise, brighter: [0.2, 1]
]
FORMULA_TEXT = ("value[k] = f32(offset + scale * sin(((a*k) + b) + (c*(k*k)))) in f64, k the "
                "row-major index in the checkpoint layout (images: NHWC index within the image)")


def short(x):
    """The double nearest a decimal of at most 10 significant digits (parses exactly in Rust)."""
    return float(f"{x:.10g}")


def formula(n, a, b, c, scale, offset):
    """The formula's n values as float32 (see the header), computed element by element with
    math.sin so that the phase and the sine are those Rust computes."""
    out = np.empty(n, dtype=np.float32)
    for k in range(n):
        kf = float(k)
        out[k] = offset + scale * math.sin(a * kf + b + c * (kf * kf))
    return out


# --- strata's side ---------------------------------------------------------------------------

def strata_summary(strata, spec):
    result = subprocess.run([strata, "summary", "--format", "json", spec], cwd=ROOT,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"`{strata} summary --format json {spec}` failed:\n{result.stderr}")
    return json.loads(result.stdout)


STRATA_ACTIVATIONS = {"relu", "relu6", "sigmoid", "tanh", "softmax", "gelu", "silu", "swish",
                      "hardswish", "hardsigmoid", "elu", "leakyrelu"}


def strata_canonical(summary):
    """strata's layers as canonical nodes: (kind, output shape, input node ids); plus, per layer
    index, the node id of its op (before the suffix activation)."""
    nodes, out_of, op_node = [], {"input": -1}, {}
    for layer in summary["layers"]:
        ins = [out_of[name] for name in layer["inputs"]]
        kind, shape = layer["kind"], list(layer["output_shape"])
        if kind == "identity":
            out_of[layer["name"]] = ins[0]
            continue
        kind = {"maxpool": "pool", "globalavgpool": "gap"}.get(kind, kind)
        if kind in STRATA_ACTIVATIONS:
            kind = "act:" + kind
        nodes.append((kind, shape, ins))
        op_node[layer["index"]] = len(nodes) - 1
        if layer.get("activation"):
            nodes.append(("act:" + layer["activation"], shape, [len(nodes) - 1]))
        out_of[layer["name"]] = len(nodes) - 1
    return nodes, op_node


# --- Keras's side ----------------------------------------------------------------------------

KERAS_KIND = {
    "Conv2D": "conv", "DepthwiseConv2D": "dwconv", "SeparableConv2D": "sepconv",
    "Dense": "dense", "BatchNormalization": "bn", "MaxPooling2D": "pool",
    "AveragePooling2D": "avgpool", "GlobalAveragePooling2D": "gap", "Add": "add",
    "Concatenate": "concat", "Multiply": "mul", "Dropout": "dropout", "Flatten": "flatten",
}


def build_recorded(key, dtype):
    """Builds example `key` with every variable and computation in `dtype`; returns the model
    and its layers in creation (first call) order."""
    keras.backend.clear_session()
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    created = []
    original = _KerasLayer.__call__

    def recording_call(self, *args, **kwargs):
        if not any(layer is self for layer in created):
            created.append(self)
        return original(self, *args, **kwargs)

    _KerasLayer.__call__ = recording_call
    try:
        model = BUILDERS[key]()
    finally:
        _KerasLayer.__call__ = original
        keras.config.set_floatx("float32")
        keras.config.set_dtype_policy("float32")
    in_model = {id(layer) for layer in model.layers}
    return model, [layer for layer in created if id(layer) in in_model]


def keras_activation_name(layer):
    cls = layer.__class__.__name__
    if cls == "ReLU":
        cfg = layer.get_config()
        if cfg["negative_slope"] or cfg["threshold"]:
            raise SystemExit(f"{layer.name}: a ReLU with a slope or threshold has no strata match")
        if cfg["max_value"] is None:
            return "relu"
        if float(cfg["max_value"]) == 6.0:
            return "relu6"
        raise SystemExit(f"{layer.name}: ReLU(max_value={cfg['max_value']}) has no strata match")
    name = layer.get_config()["activation"]
    if not isinstance(name, str):
        raise SystemExit(f"{layer.name}: activation {name!r} is not a plain name")
    return {"swish": "silu"}.get(name, name)


def keras_canonical(layers_in_order):
    """Keras's layers as canonical nodes, like strata_canonical; plus, per Keras layer name, the
    node id of its op."""
    nodes, out_of, op_node = [], {}, {}
    for layer in layers_in_order:
        cls = layer.__class__.__name__
        ins = []
        for tensor in layer._inbound_nodes[0].input_tensors:
            producer = tensor._keras_history.operation
            ins.append(-1 if producer.__class__.__name__ == "InputLayer"
                       else out_of[producer.name])
        shape = [int(d) for d in layer.output.shape[1:]]
        if cls == "Reshape":
            out_of[layer.name] = ins[0]
            continue
        if cls in ("Activation", "ReLU"):
            kind = "act:" + keras_activation_name(layer)
        elif cls in KERAS_KIND:
            kind = KERAS_KIND[cls]
        else:
            raise SystemExit(f"{layer.name}: Keras layer {cls} has no strata match here")
        nodes.append((kind, shape, ins))
        op_node[layer.name] = len(nodes) - 1
        if cls in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense"):
            act = layer.get_config()["activation"]
            if act != "linear":
                nodes.append(("act:" + keras_activation_name(layer), shape, [len(nodes) - 1]))
        out_of[layer.name] = len(nodes) - 1
    return nodes, op_node


def compare_graphs(key, s_nodes, k_nodes):
    problems = []
    for idx in range(max(len(s_nodes), len(k_nodes))):
        s = s_nodes[idx] if idx < len(s_nodes) else None
        k = k_nodes[idx] if idx < len(k_nodes) else None
        if s != k:
            problems.append(f"  node {idx}: strata {s} / keras {k}")
    if problems:
        raise SystemExit(f"{key}: the Keras builder does not match the spec (canonical node: "
                         f"kind, output shape, inputs):\n" + "\n".join(problems[:12]))


def keras_args(layer):
    """The Keras layer's arguments as tests/suite/graph_parity.rs compares them with strata's op."""
    cfg = layer.get_config()
    cls = layer.__class__.__name__
    pair = lambda v: [int(v[0]), int(v[1])]  # noqa: E731
    if cls == "Conv2D":
        assert tuple(cfg["dilation_rate"]) == (1, 1), layer.name
        return {"op": "conv", "filters": cfg["filters"], "kernel": pair(cfg["kernel_size"]),
                "stride": pair(cfg["strides"]), "pad": cfg["padding"],
                "bias": cfg["use_bias"], "groups": cfg["groups"]}
    if cls == "DepthwiseConv2D":
        return {"op": "dwconv", "multiplier": cfg["depth_multiplier"],
                "kernel": pair(cfg["kernel_size"]), "stride": pair(cfg["strides"]),
                "pad": cfg["padding"], "bias": cfg["use_bias"]}
    if cls == "SeparableConv2D":
        return {"op": "sepconv", "filters": cfg["filters"],
                "multiplier": cfg["depth_multiplier"], "kernel": pair(cfg["kernel_size"]),
                "stride": pair(cfg["strides"]), "pad": cfg["padding"], "bias": cfg["use_bias"]}
    if cls == "Dense":
        return {"op": "dense", "units": cfg["units"], "bias": cfg["use_bias"]}
    if cls == "BatchNormalization":
        assert cfg["center"] and cfg["scale"] and cfg["axis"] in (-1, 3, [3], [-1]), layer.name
        return {"op": "bn", "eps": cfg["epsilon"], "momentum": cfg["momentum"]}
    if cls in ("MaxPooling2D", "AveragePooling2D"):
        return {"op": "pool" if cls == "MaxPooling2D" else "avgpool",
                "size": pair(cfg["pool_size"]), "stride": pair(cfg["strides"]),
                "pad": cfg["padding"]}
    if cls == "GlobalAveragePooling2D":
        return {"op": "gap"}
    return None


# --- weights ---------------------------------------------------------------------------------

def strata_tensors(layer, summary_layer):
    """The strata tensors (name, shape, fan_in) of a Keras layer with parameters, in strata's
    checkpoint order."""
    cls = layer.__class__.__name__
    i = summary_layer["index"]
    if cls == "Conv2D":
        kh, kw, cg, f = (int(d) for d in layer.kernel.shape)
        out = [("weight", [f, cg, kh, kw], cg * kh * kw)]
        if layer.use_bias:
            out.append(("bias", [f], None))
    elif cls == "DepthwiseConv2D":
        kh, kw, c, m = (int(d) for d in layer.kernel.shape)
        out = [("weight", [c * m, 1, kh, kw], kh * kw)]
        if layer.use_bias:
            out.append(("bias", [c * m], None))
    elif cls == "SeparableConv2D":
        kh, kw, c, m = (int(d) for d in layer.depthwise_kernel.shape)
        f = int(layer.pointwise_kernel.shape[3])
        out = [("depthwise", [c * m, 1, kh, kw], kh * kw),
               ("pointwise", [f, c * m, 1, 1], c * m)]
        if layer.use_bias:
            out.append(("bias", [f], None))
    elif cls == "Dense":
        n_in, units = (int(d) for d in layer.kernel.shape)
        out = [("weight", [units, n_in], n_in)]
        if layer.use_bias:
            out.append(("bias", [units], None))
    elif cls == "BatchNormalization":
        c = int(layer.gamma.shape[0])
        out = [(name, [c], None) for name in ("gamma", "beta", "moving_mean", "moving_variance")]
    else:
        raise SystemExit(f"{layer.name}: {cls} has parameters strata does not know")
    count = sum(int(np.prod(shape)) for _, shape, _ in out)
    if count != summary_layer["params"]:
        raise SystemExit(f"layer {i} `{summary_layer['name']}`: strata counts "
                         f"{summary_layer['params']} parameters, Keras's {layer.name} {count}")
    return out


def tensor_formula(key, index, name, shape, fan_in, is_head):
    code = PARAM_CODE[name]
    a = short(0.37 + 0.011 * index + 0.05 * code)
    b = short(0.5 * index + 0.7 * code)
    if name in VECTOR_FORMULA:
        offset, scale = VECTOR_FORMULA[name]
    else:
        gain = HEAD_GAIN.get(key, 1.0) if is_head else GAIN.get(key, 1.0)
        offset, scale = 0.0, short(gain * math.sqrt(3.0 / fan_in))
    return {"name": f"layers.{index}.{name}", "shape": shape, "a": a, "b": b, "c": CHIRP,
            "scale": scale, "offset": offset}


def values_of(entry):
    n = int(np.prod(entry["shape"]))
    flat = formula(n, entry["a"], entry["b"], entry["c"], entry["scale"], entry["offset"])
    return flat.reshape(entry["shape"])


def to_keras(layer, named, flatten_from):
    """Keras's variable values (in get_weights order) from strata's tensors."""
    cls = layer.__class__.__name__
    if cls == "Conv2D":
        out = [named["weight"].transpose(2, 3, 1, 0)]
    elif cls == "DepthwiseConv2D":
        kh, kw, c, m = (int(d) for d in layer.kernel.shape)
        out = [named["weight"].reshape(c, m, kh, kw).transpose(2, 3, 0, 1)]
    elif cls == "SeparableConv2D":
        kh, kw, c, m = (int(d) for d in layer.depthwise_kernel.shape)
        out = [named["depthwise"].reshape(c, m, kh, kw).transpose(2, 3, 0, 1),
               named["pointwise"][:, :, 0, 0].T[None, None, :, :]]
    elif cls == "Dense":
        w = named["weight"]
        if flatten_from is not None:  # strata: (c, h, w) order; Keras: (h, w, c)
            h, wd, c = flatten_from
            w = w.reshape(w.shape[0], c, h, wd).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
        out = [w.T]
    elif cls == "BatchNormalization":
        return [named[n] for n in ("gamma", "beta", "moving_mean", "moving_variance")]
    else:
        raise SystemExit(f"{layer.name}: {cls}")
    if "bias" in named:
        out.append(named["bias"])
    return out


def flatten_input_shape(layer):
    """The image shape a Dense layer's input was flattened from (a Flatten right before it)."""
    producer = layer._inbound_nodes[0].input_tensors[0]._keras_history.operation
    if producer.__class__.__name__ == "Flatten":
        return [int(d) for d in producer.input.shape[1:]]
    return None


def set_weights(pairs, tensors_by_layer):
    for layer, summary_layer in pairs:
        named = {e["name"].split(".", 2)[2]: values_of(e)
                 for e in tensors_by_layer[summary_layer["index"]]}
        new = to_keras(layer, named, flatten_input_shape(layer) if
                       layer.__class__.__name__ == "Dense" else None)
        old = layer.get_weights()
        if [tuple(w.shape) for w in old] != [tuple(w.shape) for w in new]:
            raise SystemExit(f"{layer.name} (strata layer {summary_layer['index']}): Keras shapes "
                             f"{[w.shape for w in old]}, converted {[w.shape for w in new]}")
        layer.set_weights([w.astype(old[j].dtype) for j, w in enumerate(new)])


# --- an independent float64 forward pass in numpy, on strata's layouts -------------------------

def _same_pad(size, k, stride):
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return out, total // 2, total - total // 2


def _windows(x, kernel, stride, pad, fill):
    """Padded input and, per tap (i, j), the strided view [n, ho, wo, c]."""
    n, h, w, c = x.shape
    (kh, kw), (sh, sw) = kernel, stride
    if pad == "same":
        ho, top, bottom = _same_pad(h, kh, sh)
        wo, left, right = _same_pad(w, kw, sw)
    else:
        ho, wo, top, bottom, left, right = (h - kh) // sh + 1, (w - kw) // sw + 1, 0, 0, 0, 0
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=fill)
    for i in range(kh):
        for j in range(kw):
            yield i, j, xp[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw, :]


def _conv(x, w, stride, pad, groups):
    f, cg, kh, kw = w.shape
    fg = f // groups
    out = 0.0
    for i, j, view in _windows(x, (kh, kw), stride, pad, 0.0):
        parts = [np.einsum("nhwc,fc->nhwf", view[..., g * cg:(g + 1) * cg],
                           w[g * fg:(g + 1) * fg, :, i, j]) for g in range(groups)]
        out = out + np.concatenate(parts, axis=-1)
    return out


def _depthwise(x, w, stride, pad):
    m = w.shape[0] // x.shape[-1]
    x = np.repeat(x, m, axis=-1)  # output channel i*m + j reads input channel i
    out = 0.0
    for i, j, view in _windows(x, w.shape[2:], stride, pad, 0.0):
        out = out + view * w[:, 0, i, j]
    return out


def _pool(x, kind, size, stride, pad):
    views = [v for _, _, v in _windows(x, size, stride, pad,
                                       -np.inf if kind == "pool" else np.nan)]
    stack = np.stack(views)
    if kind == "pool":
        return stack.max(axis=0)
    return np.nanmean(stack, axis=0)  # Keras averages over the valid elements only


def _activation(x, name):
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "relu6":
        return np.minimum(np.maximum(x, 0.0), 6.0)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if name == "tanh":
        return np.tanh(x)
    if name == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    if name in ("silu", "swish"):
        return x / (1.0 + np.exp(-x))
    raise SystemExit(f"numpy check: activation {name} not implemented")


def numpy_forward(summary, args_by_index, tensors_by_layer, x):
    """strata's semantics (checkpoint layouts, NHWC activations, Keras's padding) written out
    again in numpy, float64: a check of the layout conversions above that shares nothing with
    Keras but the layer arguments."""
    outs = {"input": np.asarray(x, dtype=np.float64)}
    for layer in summary["layers"]:
        i, kind = layer["index"], layer["kind"]
        ins = [outs[name] for name in layer["inputs"]]
        t = {e["name"].split(".", 2)[2]: values_of(e).astype(np.float64)
             for e in tensors_by_layer.get(i, [])}
        a = args_by_index.get(i, {})
        y = ins[0]
        if kind == "conv":
            y = _conv(y, t["weight"], a["stride"], a["pad"], a["groups"])
        elif kind == "dwconv":
            y = _depthwise(y, t["weight"], a["stride"], a["pad"])
        elif kind == "sepconv":
            y = _depthwise(y, t["depthwise"], a["stride"], a["pad"])
            y = np.einsum("nhwc,fc->nhwf", y, t["pointwise"][:, :, 0, 0])
        elif kind == "dense":
            if y.ndim == 4:  # strata flattens in channel, row, column order
                y = y.transpose(0, 3, 1, 2).reshape(len(y), -1)
            y = y @ t["weight"].T
        elif kind == "bn":
            y = (y - t["moving_mean"]) / np.sqrt(t["moving_variance"] + a["eps"]) * t["gamma"] \
                + t["beta"]
        elif kind in ("pool", "maxpool", "avgpool"):
            y = _pool(y, "avgpool" if kind == "avgpool" else "pool", a["size"], a["stride"],
                      a["pad"])
        elif kind in ("gap", "globalavgpool"):
            y = y.mean(axis=(1, 2))
        elif kind == "flatten":
            y = y.transpose(0, 3, 1, 2).reshape(len(y), -1)
        elif kind == "add":
            y = sum(ins[1:], ins[0])
        elif kind == "mul":
            y = ins[0]
            for other in ins[1:]:
                y = y * (other[:, None, None, :] if other.ndim == 2 and y.ndim == 4 else other)
        elif kind == "concat":
            y = np.concatenate(ins, axis=-1)
        elif kind in STRATA_ACTIVATIONS:
            y = _activation(y, kind)
        elif kind not in ("identity", "dropout"):
            raise SystemExit(f"numpy check: layer kind {kind} not implemented")
        if "bias" in t:
            y = y + t["bias"]
        if layer.get("activation"):
            y = _activation(y, layer["activation"])
        outs[layer["name"]] = y
    return outs[summary["layers"][-1]["name"]]


# --- one example -----------------------------------------------------------------------------

def images_for(summary):
    h, w, c = summary["input"]
    entries, arrays = [], []
    for a, b, cc, offset, scale in IMAGES[:IMAGE_COUNT]:
        entries.append({"a": a, "b": b, "c": cc, "scale": scale, "offset": offset})
        arrays.append(formula(h * w * c, a, b, cc, scale, offset).reshape(h, w, c))
    return entries, np.stack(arrays)


def probabilities(model, x, head):
    p = np.asarray(model(x, training=False))
    if head == "sigmoid":
        p = np.concatenate([1.0 - p, p], axis=1)
    return p


def layer_stats(model, layers_in_order, x):
    probe = keras.Model(model.inputs, [layer.output for layer in layers_in_order])
    outs = probe(x[:1], training=False)
    for layer, out in zip(layers_in_order, outs):
        v = np.asarray(out, dtype=np.float64)
        print(f"    {layer.name:28s} rms {math.sqrt(float(np.mean(v * v))):9.4f} "
              f"max {float(np.max(np.abs(v))):9.4f}", file=sys.stderr)


def reference(key, strata, stats=False, images_override=None):
    """Everything about one example; `images_override` replaces the formula images (used by
    parity_cli.py with 8-bit quantised ones)."""
    spec = SPECS[key]
    summary = strata_summary(strata, spec)
    last = summary["layers"][-1]
    head = ("sigmoid" if last["kind"] == "dense" and last["output_shape"] == [1]
            and last.get("activation") == "sigmoid" else "softmax")
    classes = 2 if head == "sigmoid" else last["output_shape"][0]

    s_nodes, s_op = strata_canonical(summary)
    built = {}
    for dtype in ("float64", "float32"):
        model, layers_in_order = build_recorded(key, dtype)
        k_nodes, k_op = keras_canonical(layers_in_order)
        compare_graphs(key, s_nodes, k_nodes)
        built[dtype] = (model, layers_in_order, k_op)

    # Pair every strata layer with parameters (or arguments) with its Keras layer, by node.
    node_to_strata = {node: idx for idx, node in s_op.items()}
    by_index = {layer["index"]: layer for layer in summary["layers"]}

    def pair(layers_in_order, k_op):
        args, params = [], []
        for layer in layers_in_order:
            idx = node_to_strata.get(k_op.get(layer.name))
            if idx is None:
                continue
            a = keras_args(layer)
            if a is not None:
                args.append({"index": idx, "keras": layer.__class__.__name__, **a})
            if layer.weights:
                params.append((layer, by_index[idx]))
        return args, params

    pairs_args, param_pairs = pair(*built["float64"][1:])
    with_params = [layer["index"] for layer in summary["layers"] if layer["params"] > 0]
    if [s["index"] for _, s in param_pairs] != with_params:
        raise SystemExit(f"{key}: strata layers with parameters {with_params} but Keras pairs "
                         f"{[s['index'] for _, s in param_pairs]}")

    tensors, tensors_by_layer = [], {}
    head_index = with_params[-1]
    for layer, s in param_pairs:
        entries = [tensor_formula(key, s["index"], name, shape, fan_in, s["index"] == head_index)
                   for name, shape, fan_in in strata_tensors(layer, s)]
        for e in entries:
            e["sum"] = float(f"{np.sum(values_of(e).astype(np.float64)):.12g}")
        tensors_by_layer[s["index"]] = entries
        tensors.extend(entries)
    total = sum(int(np.prod(e["shape"])) for e in tensors)
    if total != summary["total_params"]:
        raise SystemExit(f"{key}: {total} values in the tensors, strata counts "
                         f"{summary['total_params']}")

    image_entries, x = images_for(summary)
    if images_override is not None:
        x = images_override
    for e, img in zip(image_entries, x):
        e["sum"] = float(f"{np.sum(img.astype(np.float64)):.12g}")

    probs = {}
    for dtype, (model, layers_in_order, k_op) in built.items():
        set_weights(pair(layers_in_order, k_op)[1], tensors_by_layer)
        probs[dtype] = probabilities(model, x.astype(dtype), head)
        if stats and dtype == "float64":
            print(f"  {key}: per-layer output of image 0", file=sys.stderr)
            layer_stats(model, layers_in_order, x.astype(dtype))
    diff = float(np.max(np.abs(probs["float64"] - probs["float32"].astype(np.float64))))
    ours = numpy_forward(summary, {e["index"]: e for e in pairs_args}, tensors_by_layer, x)
    if head == "sigmoid":
        ours = np.concatenate([1.0 - ours, ours], axis=1)
    numpy_diff = float(np.max(np.abs(ours - probs["float64"])))
    if not numpy_diff < 1e-9:
        raise SystemExit(f"{key}: the numpy forward pass on strata's layouts differs from Keras's "
                         f"float64 one by {numpy_diff:.3e}: a layout conversion is wrong")
    return {
        "example": key,
        "spec": spec,
        "head": head,
        "classes": [f"c{j}" for j in range(classes)],
        "total_params": summary["total_params"],
        "tensors": tensors,
        "inputs": {"shape": summary["input"], "layout": "NHWC", "count": len(x),
                   "images": image_entries},
        "keras_layers": pairs_args,
        "probabilities": probs["float64"].tolist(),
        "probabilities_float32": probs["float32"].tolist(),
        "float32_vs_float64_max_abs_diff": diff,
        "numpy_vs_keras_float64_max_abs_diff": numpy_diff,
    }


def write_json(path, results):
    """One tensor, layer or row per line: small and diff-friendly."""
    def dump(v):
        return json.dumps(v, separators=(",", ":"))

    lines = ["{",
             ' "generated_by": "scripts/reference_graph_forward.py",',
             f' "keras": {dump(keras.__version__)},',
             f' "backend": {dump(keras.backend.backend())},',
             f' "tolerance": {TOLERANCE},',
             f' "formula": {dump(FORMULA_TEXT)},',
             ' "models": [']
    for m_idx, r in enumerate(results):
        lines.append("  {")
        for k in ("example", "spec", "head", "classes", "total_params",
                  "float32_vs_float64_max_abs_diff", "numpy_vs_keras_float64_max_abs_diff"):
            lines.append(f'   "{k}": {dump(r[k])},')
        lines.append(f'   "inputs": {dump(r["inputs"])},')
        for k in ("tensors", "keras_layers"):
            lines.append(f'   "{k}": [')
            lines.append(",\n".join("    " + dump(e) for e in r[k]))
            lines.append("   ],")
        lines.append(f'   "probabilities_float32": {dump(r["probabilities_float32"])},')
        lines.append(f'   "probabilities": {dump(r["probabilities"])}')
        lines.append("  }" + ("," if m_idx + 1 < len(results) else ""))
    lines.append(" ]")
    lines.append("}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("examples", nargs="*", default=EXAMPLES)
    parser.add_argument("--strata", default=os.path.join(ROOT, "target", "release", "strata"))
    parser.add_argument("--out", default=os.path.join(ROOT, "tests", "data",
                                                      "reference_graph_forward.json"))
    parser.add_argument("--stats", action="store_true")
    args = parser.parse_args(argv)
    unknown = [k for k in args.examples if k not in EXAMPLES]
    if unknown:
        parser.error(f"unknown example(s) {unknown}; known: {EXAMPLES}")
    results = []
    for key in args.examples:
        r = reference(key, args.strata, stats=args.stats)
        p = np.asarray(r["probabilities"])
        print(f"{key}: {len(r['tensors'])} tensors, max probability {p.max():.4f}, "
              f"min {p.min():.2e}; Keras float32 vs float64 max |diff| "
              f"{r['float32_vs_float64_max_abs_diff']:.3e}; numpy (strata layouts) vs Keras "
              f"float64 {r['numpy_vs_keras_float64_max_abs_diff']:.1e}", flush=True)
        results.append(r)
    write_json(args.out, results)
    print("wrote", os.path.relpath(args.out, ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
