#!/usr/bin/env python3
"""PyTorch equivalents of three block-based example specs in specs/examples/ and the seed specs.

The same networks as scripts/keras_examples.py, written by hand with torch.nn in NCHW layout,
layer for layer as the spec expands (block calls, repeats and merges unrolled):

    resnet_small       specs/examples/resnet_small.yaml        3x32x32, 10 classes
    mobilenetv2_small  specs/examples/mobilenetv2_small.yaml   3x64x64, 10 classes
    fashion_resnet     specs/examples/fashion_resnet.yaml      1x28x28, 10 classes
    logreg_bn          specs/seed/logreg_bn.yaml               3x224x224, 2 classes
    wide_bn            specs/seed/wide_bn.yaml                 3x224x224, 2 classes
    deep_bn            specs/seed/deep_bn.yaml                 3x224x224, 2 classes

Equivalences with the Keras models:
- strata's `bn` / Keras BatchNormalization(epsilon=e, momentum=0.99) =
  BatchNorm2d(eps=e, momentum=0.01) (PyTorch's momentum is the weight of the *new* batch
  statistic). eps is the spec's: 1.001e-5 in resnet_small, Keras's default 1e-3 elsewhere.
  Keras's non-trainable weights are the BN moving mean and variance; here they are the
  `running_mean` / `running_var` buffers (`num_batches_tracked` is not counted).
- `conv…(pad=same)` = TensorFlow's "same" padding, computed from the input size at run time
  (`SameConv2d`): out = ceil(n / stride), total padding max((out - 1) * stride + k - n, 0), the
  smaller half before (top/left) and the larger after (bottom/right). For a 3x3 kernel with
  stride 2 on an even size that is 0 before and 1 after, which PyTorch's symmetric `padding=`
  cannot express, so it is an explicit F.pad; stride 1 with an odd kernel uses padding=k//2.
  An even kernel with stride 1 (deep_bn's conv2x2, pad=same) pads 0 before and 1 after: a zero
  row at the bottom and a zero column on the right.
- `conv…` without `pad` is `valid` (no padding): wide_bn's conv2x2(100) = Conv2d(3, 100, 2),
  224 -> 223. `poolN` = nn.MaxPool2d(N) (stride N, no padding, floor: 223 -> 13 for pool16).
- `bias: false` = bias=False; `dwconv3` = Conv2d(c, c, 3, groups=c, bias=False).
- `dense10 softmax` + categorical cross-entropy = Linear(c, 10) returning logits +
  nn.CrossEntropyLoss (which applies log-softmax). The models here return logits; apply
  torch.softmax for probabilities (scripts/throughput.py does so when timing inference).
- `dropout(0.2)` = nn.Dropout(0.2); `gap` = mean over H and W.
- `flatten` (explicit, or the one strata inserts before a dense layer on images) = Keras's
  Flatten, which reads the image in NHWC order: x.permute(0, 2, 3, 1).flatten(1) (`FlattenHWC`),
  so the dense weights are ordered as in Keras and strata. On a channels_last tensor that is a
  view; on a contiguous (NCHW) one it is a copy.

Prints one JSON line per example,
    {"example", "spec", "total", "trainable", "non_trainable", "output_shape",
     "keras_total", "keras_trainable", "keras_non_trainable"}
and exits with status 1 if a count differs from the Keras count (quoted in the spec headers and
printed by scripts/keras_examples.py; for the seed specs, also what `strata summary` prints).
Nothing is downloaded and no model is trained.

Install (outside the repository, once):
    python3 -m venv ~/venv-torch && ~/venv-torch/bin/pip install torch numpy
(the CPU path of the default wheel works without a GPU; or use PyTorch's CPU wheel index).
Run from the repository root:
    ~/venv-torch/bin/python scripts/torch_examples.py [EXAMPLE…]
"""
import json
import math
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

# Keras counts (total, trainable, non-trainable), as in each spec's header comment and as
# `scripts/keras_examples.py` prints them.
KERAS_COUNTS = {
    "resnet_small": (274_042, 272_474, 1_568),
    "mobilenetv2_small": (453_514, 440_202, 13_312),
    "fashion_resnet": (176_090, 174_970, 1_120),
    # the seed specs: as `strata summary specs/seed/M.yaml` prints them
    "logreg_bn": (301_070, 301_064, 6),
    "wide_bn": (35_114, 35_108, 6),
    "deep_bn": (10_034, 10_028, 6),
}


def tf_same_padding(size, k, stride):
    """(before, after) zero padding of TensorFlow's "same" for one spatial axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Module):
    """Conv2d with TensorFlow / Keras padding="same" (dilation 1)."""

    def __init__(self, cin, cout, k, stride=1, groups=1, bias=False):
        super().__init__()
        self.k, self.stride = k, stride
        # stride 1 with an odd kernel pads k // 2 on every side: PyTorch's own padding will do
        self.symmetric = stride == 1 and k % 2 == 1
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, groups=groups, bias=bias,
                              padding=k // 2 if self.symmetric else 0)

    def forward(self, x):
        if not self.symmetric:
            top, bottom = tf_same_padding(x.shape[-2], self.k, self.stride)
            left, right = tf_same_padding(x.shape[-1], self.k, self.stride)
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom))
        return self.conv(x)


def bn(c, eps=1e-3):
    return nn.BatchNorm2d(c, eps=eps, momentum=0.01)


class Head(nn.Module):
    """gap [-> dropout] -> dense (logits)."""

    def __init__(self, c, classes, dropout=0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.dense = nn.Linear(c, classes)

    def forward(self, x):
        return self.dense(self.dropout(x.mean(dim=(2, 3))))


# --- resnet_small / fashion_resnet ----------------------------------------------------------

class Basic(nn.Module):
    """basic(f): add(identity, conv3(f) -> bn relu -> conv3(f) -> bn) relu."""

    def __init__(self, f, eps):
        super().__init__()
        self.conv1, self.bn1 = SameConv2d(f, f, 3), bn(f, eps)
        self.conv2, self.bn2 = SameConv2d(f, f, 3), bn(f, eps)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(x + y)


class Down(nn.Module):
    """down(f): add(conv1(f, stride=2) -> bn, conv3(f, stride=2) -> bn relu -> conv3(f) -> bn) relu."""

    def __init__(self, cin, f, eps):
        super().__init__()
        self.proj, self.proj_bn = SameConv2d(cin, f, 1, stride=2), bn(f, eps)
        self.conv1, self.bn1 = SameConv2d(cin, f, 3, stride=2), bn(f, eps)
        self.conv2, self.bn2 = SameConv2d(f, f, 3), bn(f, eps)

    def forward(self, x):
        shortcut = self.proj_bn(self.proj(x))
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(shortcut + y)


class Stem(nn.Module):
    """conv3(f) -> bn relu."""

    def __init__(self, cin, f, eps):
        super().__init__()
        self.conv, self.bn = SameConv2d(cin, f, 3), bn(f, eps)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def resnet_small():
    """conv3(16) bn relu -> basic(16)x3 -> down(32) -> basic(32)x2 -> down(64) -> basic(64)x2."""
    eps = 1.001e-5
    blocks = [Stem(3, 16, eps)] + [Basic(16, eps) for _ in range(3)]
    for cin, f in ((16, 32), (32, 64)):
        blocks += [Down(cin, f, eps)] + [Basic(f, eps) for _ in range(2)]
    return nn.Sequential(*blocks, Head(64, 10))


def fashion_resnet():
    """conv3(16) bn relu -> basic(16)x2 -> down(32) -> basic(32) -> down(64) -> basic(64)."""
    eps = 1e-3
    blocks = [Stem(1, 16, eps)] + [Basic(16, eps) for _ in range(2)]
    for cin, f in ((16, 32), (32, 64)):
        blocks += [Down(cin, f, eps), Basic(f, eps)]
    return nn.Sequential(*blocks, Head(64, 10))


# --- mobilenetv2_small ----------------------------------------------------------------------

class Inverted(nn.Module):
    """conv1(cin*t) -> bn relu6 -> dwconv3(stride) -> bn relu6 -> conv1(cout) -> bn [+ x]."""

    def __init__(self, cin, cout, t=6, stride=1, residual=False):
        super().__init__()
        mid = cin * t
        self.residual = residual
        self.expand, self.bn1 = SameConv2d(cin, mid, 1), bn(mid)
        self.dw, self.bn2 = SameConv2d(mid, mid, 3, stride=stride, groups=mid), bn(mid)
        self.project, self.bn3 = SameConv2d(mid, cout, 1), bn(cout)

    def forward(self, x):
        y = F.relu6(self.bn1(self.expand(x)))
        y = F.relu6(self.bn2(self.dw(y)))
        y = self.bn3(self.project(y))
        return x + y if self.residual else y


def mb(cin, cout, t=6, stride=1):
    return Inverted(cin, cout, t, stride)


def mbres(c, t=6):
    return Inverted(c, c, t, 1, residual=True)


class ConvBnRelu6(nn.Module):
    def __init__(self, cin, f, k, stride=1):
        super().__init__()
        self.conv, self.bn = SameConv2d(cin, f, k, stride=stride), bn(f)

    def forward(self, x):
        return F.relu6(self.bn(self.conv(x)))


def mobilenetv2_small():
    """Inverted residual blocks mb(cin, cout, t, stride) / mbres(c, t) with relu6, 64x64x3."""
    return nn.Sequential(
        ConvBnRelu6(3, 32, 3, stride=2),          # 32x32x32
        mb(32, 16, 1),                            # 32x32x16
        mb(16, 24, 6, 2), mbres(24),              # 16x16x24
        mb(24, 32, 6, 2), mbres(32), mbres(32),   # 8x8x32
        mb(32, 64, 6, 2), mbres(64), mbres(64),   # 4x4x64
        mb(64, 96, 6), mbres(96),                 # 4x4x96
        ConvBnRelu6(96, 640, 1),                  # 4x4x640
        Head(640, 10, dropout=0.2),
    )


# --- seed models (specs/seed/) ---------------------------------------------------------------

class FlattenHWC(nn.Module):
    """Keras's Flatten of an NHWC image: the features in (H, W, C) order."""

    def forward(self, x):
        return x.permute(0, 2, 3, 1).flatten(1)


def logreg_bn():
    """bn -> flatten -> dense2 softmax, 3x224x224."""
    return nn.Sequential(bn(3), FlattenHWC(), nn.Linear(224 * 224 * 3, 2))


def wide_bn():
    """bn -> conv2x2(100) relu -> pool16 -> dense2 softmax, 3x224x224 (the conv is `valid`)."""
    return nn.Sequential(
        bn(3),
        nn.Conv2d(3, 100, 2), nn.ReLU(),          # 100x223x223
        nn.MaxPool2d(16),                         # 100x13x13
        FlattenHWC(), nn.Linear(13 * 13 * 100, 2),
    )


def deep_bn():
    """bn -> (conv2x2(20, pad=same) relu -> pool2)x7 -> dense2 softmax, 3x224x224."""
    blocks, c = [bn(3)], 3
    for _ in range(7):                            # 224 -> 112 -> 56 -> 28 -> 14 -> 7 -> 3 -> 1
        blocks += [SameConv2d(c, 20, 2, bias=True), nn.ReLU(), nn.MaxPool2d(2)]
        c = 20
    return nn.Sequential(*blocks, FlattenHWC(), nn.Linear(20, 2))


EXAMPLES = {
    "resnet_small": resnet_small,
    "mobilenetv2_small": mobilenetv2_small,
    "fashion_resnet": fashion_resnet,
    "logreg_bn": logreg_bn,
    "wide_bn": wide_bn,
    "deep_bn": deep_bn,
}

# Input shape (C, H, W) of each example.
INPUT_SHAPES = {
    "resnet_small": (3, 32, 32),
    "mobilenetv2_small": (3, 64, 64),
    "fashion_resnet": (1, 28, 28),
    "logreg_bn": (3, 224, 224),
    "wide_bn": (3, 224, 224),
    "deep_bn": (3, 224, 224),
}

CLASSES = {"resnet_small": 10, "mobilenetv2_small": 10, "fashion_resnet": 10,
           "logreg_bn": 2, "wide_bn": 2, "deep_bn": 2}

SEED = ("logreg_bn", "wide_bn", "deep_bn")


def spec_path(key):
    """The spec file an example mirrors, relative to the repository root."""
    return f"specs/{'seed' if key in SEED else 'examples'}/{key}.yaml"


def counts(model):
    """(total, trainable, non_trainable) counted as Keras counts them."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    buffers = sum(b.numel() for name, b in model.named_buffers()
                  if not name.endswith("num_batches_tracked"))
    return trainable + frozen + buffers, trainable, frozen + buffers


def describe(key, model):
    total, trainable, non_trainable = counts(model)
    model.eval()
    with torch.inference_mode():
        out = model(torch.zeros(1, *INPUT_SHAPES[key]))
    k_total, k_trainable, k_non = KERAS_COUNTS[key]
    return {
        "example": key,
        "spec": spec_path(key),
        "total": total,
        "trainable": trainable,
        "non_trainable": non_trainable,
        "output_shape": list(out.shape[1:]),
        "keras_total": k_total,
        "keras_trainable": k_trainable,
        "keras_non_trainable": k_non,
    }


def main(argv):
    keys = argv or list(EXAMPLES)
    unknown = [k for k in keys if k not in EXAMPLES]
    if unknown:
        print(f"unknown example(s): {', '.join(unknown)}; known: {', '.join(EXAMPLES)}",
              file=sys.stderr)
        return 2
    failed = False
    for key in keys:
        record = describe(key, EXAMPLES[key]())
        print(json.dumps(record), flush=True)
        got = (record["total"], record["trainable"], record["non_trainable"])
        if got != KERAS_COUNTS[key]:
            print(f"{key}: parameter counts {got} differ from Keras {KERAS_COUNTS[key]}",
                  file=sys.stderr)
            failed = True
        assert record["output_shape"] == [CLASSES[key]], record["output_shape"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
