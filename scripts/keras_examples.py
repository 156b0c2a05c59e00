#!/usr/bin/env python3
"""Keras equivalents of the block-based example specs in specs/examples/ and the seed specs.

One function per spec, written by hand with the Keras functional API, layer for layer as the
spec expands (block calls, repeats and merges unrolled; `pad=same` as padding="same", strata's
bn as BatchNormalization with the spec's eps, a flat gate in `mul` as Reshape((1,1,c)) before
Multiply; the Flatten that strata inserts before a dense layer on images written out):

    resnet_small       specs/examples/resnet_small.yaml        32x32x3,   10 classes
    mobilenetv2_small  specs/examples/mobilenetv2_small.yaml   64x64x3,   10 classes
    inception_small    specs/examples/inception_small.yaml     64x64x3,   10 classes
    se_sepconv         specs/examples/se_sepconv.yaml          128x128x3, binary (dense1 sigmoid)
    densenet_small     specs/examples/densenet_small.yaml      64x64x3,   10 classes
    fashion_resnet     specs/examples/fashion_resnet.yaml      28x28x1,   10 classes
    fashion_mini       examples/fashion-mini.yaml              28x28x1,   10 classes
    logreg_bn          specs/seed/logreg_bn.yaml               224x224x3, 2 classes
    wide_bn            specs/seed/wide_bn.yaml                 224x224x3, 2 classes
    deep_bn            specs/seed/deep_bn.yaml                 224x224x3, 2 classes

The seed models use the language's defaults: `conv` pads `valid` unless told (wide_bn's
conv2x2(100) is valid, 224 -> 223; deep_bn's `defaults: conv: { filters: 20, pad: same }` makes
its seven conv2x2 `same`), `poolN` is a max pool of size N with stride N and `valid` padding
(floor), `bn` is momentum 0.99, eps 1e-3 (Keras's defaults).

Prints one JSON line per example:
    {"example", "spec", "total", "trainable", "non_trainable",
     "layers": [{"name", "class", "output_shape", "params"}, ...]}
(output shapes without the batch axis; every layer, including those without parameters).
The totals are the ones quoted in each example spec's header comment, and the ones
`strata summary specs/seed/M.yaml` prints for the seed specs. Nothing is downloaded and no model
is trained.

Install (outside the repository, once):
    python3 -m venv ~/venv-keras && ~/venv-keras/bin/pip install tensorflow-cpu keras pillow numpy
Run from the repository root:
    ~/venv-keras/bin/python scripts/keras_examples.py [EXAMPLE…]
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

import keras
from keras import layers


# --- resnet_small ---------------------------------------------------------------------------

def resnet_small():
    """conv3(16) bn relu -> basic(16)x3 -> down(32) -> basic(32)x2 -> down(64) -> basic(64)x2."""
    eps = 1.001e-5

    def conv(x, f, k, stride=1):
        return layers.Conv2D(f, k, strides=stride, padding="same", use_bias=False)(x)

    def bn(x):
        return layers.BatchNormalization(epsilon=eps)(x)

    def relu(x):
        return layers.Activation("relu")(x)

    def basic(x, f):
        y = relu(bn(conv(x, f, 3)))
        y = bn(conv(y, f, 3))
        return relu(layers.Add()([x, y]))

    def down(x, f):
        shortcut = bn(conv(x, f, 1, stride=2))
        y = relu(bn(conv(x, f, 3, stride=2)))
        y = bn(conv(y, f, 3))
        return relu(layers.Add()([shortcut, y]))

    inputs = keras.Input((32, 32, 3))
    x = relu(bn(conv(inputs, 16, 3)))
    for _ in range(3):
        x = basic(x, 16)
    for f in (32, 64):
        x = down(x, f)
        for _ in range(2):
            x = basic(x, f)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="resnet_small")


# --- mobilenetv2_small ----------------------------------------------------------------------

def mobilenetv2_small():
    """Inverted residual blocks mb(cin, cout, t, stride) / mbres(c, t) with relu6, 64x64x3."""

    def conv1(x, f):
        return layers.Conv2D(f, 1, padding="same", use_bias=False)(x)

    def bn(x):
        return layers.BatchNormalization()(x)

    def relu6(x):
        return layers.ReLU(6.0)(x)

    def inverted(x, cin, cout, t, stride):
        y = relu6(bn(conv1(x, cin * t)))
        y = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(y)
        y = relu6(bn(y))
        return bn(conv1(y, cout))

    def mb(x, cin, cout, t=6, stride=1):
        return inverted(x, cin, cout, t, stride)

    def mbres(x, c, t=6):
        return layers.Add()([x, inverted(x, c, c, t, 1)])

    inputs = keras.Input((64, 64, 3))
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False)(inputs)
    x = relu6(bn(x))
    x = mb(x, 32, 16, 1)
    x = mbres(mb(x, 16, 24, 6, 2), 24)
    x = mb(x, 24, 32, 6, 2)
    for _ in range(2):
        x = mbres(x, 32)
    x = mb(x, 32, 64, 6, 2)
    for _ in range(2):
        x = mbres(x, 64)
    x = mbres(mb(x, 64, 96, 6), 96)
    x = relu6(bn(conv1(x, 640)))
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="mobilenetv2_small")


# --- inception_small ------------------------------------------------------------------------

def inception_small():
    """Inception modules concat(1x1, 1x1->3x3, 1x1->5x5, pool->1x1), conv-bn-relu, 64x64x3."""

    def cbr(x, f, k=1):
        x = layers.Conv2D(f, k, padding="same", use_bias=False)(x)
        return layers.Activation("relu")(layers.BatchNormalization()(x))

    def inception(x, a, b, c, d, e, g):
        b1 = cbr(x, a)
        b2 = cbr(cbr(x, b), c, 3)
        b3 = cbr(cbr(x, d), e, 5)
        b4 = cbr(layers.MaxPooling2D(3, strides=1, padding="same")(x), g)
        return layers.Concatenate()([b1, b2, b3, b4])

    def pool(x):
        return layers.MaxPooling2D(3, strides=2, padding="same")(x)

    inputs = keras.Input((64, 64, 3))
    x = layers.MaxPooling2D(2)(cbr(inputs, 32, 3))
    x = cbr(x, 64, 3)
    x = inception(x, 32, 48, 64, 8, 16, 16)
    x = inception(x, 64, 64, 96, 16, 48, 32)
    x = pool(x)
    x = inception(x, 96, 48, 104, 8, 24, 32)
    x = inception(x, 96, 64, 128, 16, 32, 32)
    x = pool(x)
    x = inception(x, 128, 80, 160, 16, 48, 48)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.4)(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="inception_small")


# --- se_sepconv -----------------------------------------------------------------------------

def se_sepconv():
    """keras.io "image classification from scratch" style, with SE, binary head, 128x128x3."""

    def bn(x):
        return layers.BatchNormalization()(x)

    def relu(x):
        return layers.Activation("relu")(x)

    def down(x, f):
        y = layers.SeparableConv2D(f, 3, padding="same")(relu(x))
        y = relu(bn(y))
        y = bn(layers.SeparableConv2D(f, 3, padding="same")(y))
        y = layers.MaxPooling2D(3, strides=2, padding="same")(y)
        residual = layers.Conv2D(f, 1, strides=2, padding="same")(x)
        return layers.Add()([y, residual])

    def se(x, c, r=16):
        s = layers.GlobalAveragePooling2D()(x)
        s = layers.Dense(c // r, activation="relu")(s)
        s = layers.Dense(c, activation="sigmoid")(s)
        s = layers.Reshape((1, 1, c))(s)
        return layers.Multiply()([x, s])

    inputs = keras.Input((128, 128, 3))
    x = layers.Conv2D(32, 3, strides=2, padding="same")(inputs)
    x = relu(bn(x))
    for f in (64, 128, 256):
        x = down(x, f)
    x = relu(bn(layers.SeparableConv2D(512, 3, padding="same")(x)))
    x = se(x, 512)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.25)(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs, name="se_sepconv")


# --- densenet_small -------------------------------------------------------------------------

def densenet_small():
    """DenseNet-BC: growth 12, three dense blocks of 6 bottleneck layers, 64x64x3."""

    def bn_relu(x):
        return layers.Activation("relu")(layers.BatchNormalization()(x))

    def conv(x, f, k):
        return layers.Conv2D(f, k, padding="same", use_bias=False)(x)

    def grow(x, k=12):
        y = conv(bn_relu(x), 4 * k, 1)
        y = conv(bn_relu(y), k, 3)
        return layers.Concatenate()([x, y])

    def dense_block(x, n, k=12):
        for _ in range(n):
            x = grow(x, k)
        return x

    def transition(x, c):
        return layers.AveragePooling2D(2)(conv(bn_relu(x), c, 1))

    inputs = keras.Input((64, 64, 3))
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False)(inputs)
    x = transition(dense_block(x, 6), 52)
    x = transition(dense_block(x, 6), 62)
    x = dense_block(x, 6)
    x = layers.GlobalAveragePooling2D()(bn_relu(x))
    outputs = layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="densenet_small")


# --- fashion_resnet -------------------------------------------------------------------------

def fashion_resnet():
    """conv3(16) bn relu -> basic(16)x2 -> down(32) -> basic(32) -> down(64) -> basic(64), 28x28x1."""

    def conv(x, f, k, stride=1):
        return layers.Conv2D(f, k, strides=stride, padding="same", use_bias=False)(x)

    def bn(x):
        return layers.BatchNormalization()(x)

    def relu(x):
        return layers.Activation("relu")(x)

    def basic(x, f):
        y = relu(bn(conv(x, f, 3)))
        y = bn(conv(y, f, 3))
        return relu(layers.Add()([x, y]))

    def down(x, f):
        shortcut = bn(conv(x, f, 1, stride=2))
        y = relu(bn(conv(x, f, 3, stride=2)))
        y = bn(conv(y, f, 3))
        return relu(layers.Add()([shortcut, y]))

    inputs = keras.Input((28, 28, 1))
    x = relu(bn(conv(inputs, 16, 3)))
    for _ in range(2):
        x = basic(x, 16)
    for f in (32, 64):
        x = basic(down(x, f), f)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="fashion_resnet")


# --- fashion_mini (the README's bundled example) ---------------------------------------------

def fashion_mini():
    """bn -> conv3(16, pad=same) relu -> pool2 -> conv3(32, pad=same) relu -> pool2
    -> dense64 relu -> dense10 softmax, 28x28x1."""
    inputs = keras.Input((28, 28, 1))
    x = layers.BatchNormalization()(inputs)
    x = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu")(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="fashion_mini")


# --- seed models (specs/seed/) ---------------------------------------------------------------

def logreg_bn():
    """bn -> flatten -> dense2 softmax, 224x224x3."""
    inputs = keras.Input((224, 224, 3))
    x = layers.BatchNormalization()(inputs)
    x = layers.Flatten()(x)
    outputs = layers.Dense(2, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="logreg_bn")


def wide_bn():
    """bn -> conv2x2(100) relu -> pool16 -> dense2 softmax, 224x224x3 (the conv is `valid`)."""
    inputs = keras.Input((224, 224, 3))
    x = layers.BatchNormalization()(inputs)
    x = layers.Conv2D(100, 2, padding="valid", activation="relu")(x)   # 223x223x100
    x = layers.MaxPooling2D(16)(x)                                     # 13x13x100
    x = layers.Flatten()(x)
    outputs = layers.Dense(2, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="wide_bn")


def deep_bn():
    """bn -> (conv2x2(20, pad=same) relu -> pool2)x7 -> dense2 softmax, 224x224x3."""
    inputs = keras.Input((224, 224, 3))
    x = layers.BatchNormalization()(inputs)
    for _ in range(7):                                                 # 224 -> 112 -> ... -> 1
        x = layers.Conv2D(20, 2, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(2, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="deep_bn")


EXAMPLES = {
    "resnet_small": resnet_small,
    "mobilenetv2_small": mobilenetv2_small,
    "inception_small": inception_small,
    "se_sepconv": se_sepconv,
    "densenet_small": densenet_small,
    "fashion_resnet": fashion_resnet,
    "fashion_mini": fashion_mini,
    "logreg_bn": logreg_bn,
    "wide_bn": wide_bn,
    "deep_bn": deep_bn,
}

SEED = ("logreg_bn", "wide_bn", "deep_bn")


def spec_path(key):
    """The spec file an example mirrors, relative to the repository root."""
    if key == "fashion_mini":
        return "examples/fashion-mini.yaml"
    return f"specs/{'seed' if key in SEED else 'examples'}/{key}.yaml"


def weight_count(weights):
    total = 0
    for w in weights:
        n = 1
        for d in w.shape:
            n *= int(d)
        total += n
    return total


def describe(key, model):
    """The JSON record of one example: counts and every layer's output shape."""
    trainable = weight_count(model.trainable_weights)
    non_trainable = weight_count(model.non_trainable_weights)
    return {
        "example": key,
        "spec": spec_path(key),
        "total": trainable + non_trainable,
        "trainable": trainable,
        "non_trainable": non_trainable,
        "layers": [{"name": layer.name, "class": layer.__class__.__name__,
                    "output_shape": [int(d) for d in layer.output.shape[1:]],
                    "params": layer.count_params()}
                   for layer in model.layers],
    }


def main(argv):
    keys = argv or list(EXAMPLES)
    unknown = [k for k in keys if k not in EXAMPLES]
    if unknown:
        print(f"unknown example(s): {', '.join(unknown)}; known: {', '.join(EXAMPLES)}",
              file=sys.stderr)
        return 2
    for key in keys:
        model = EXAMPLES[key]()
        print(json.dumps(describe(key, model)), flush=True)
        keras.backend.clear_session()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
