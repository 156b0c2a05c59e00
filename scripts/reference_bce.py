#!/usr/bin/env python3
"""Keras's binary cross-entropy on a `Dense(1, activation="sigmoid")` head, for strata's
`backend::ops::loss` (tests/suite/loss_bce.rs reads what this writes).

Keras 3 computes two different things under the name `binary_crossentropy`:

- "fit": what `model.fit` / `model.evaluate` compute on the sigmoid output of a model. On the
  TensorFlow backend, `activations.sigmoid` tags its output with `_keras_logits`, and
  `binary_crossentropy` then uses `tf.nn.sigmoid_cross_entropy_with_logits` on those logits,
  without clipping, whatever `from_logits` says (keras/src/backend/tensorflow/nn.py,
  `sigmoid` and `_get_logits`).
- "clipped": `keras.losses.binary_crossentropy(y, p)` on a plain probability tensor
  (`p = tf.math.sigmoid(z)` in eager mode, and every backend but TensorFlow's): `p` clipped to
  [1e-7, 1 - 1e-7], `-(y log p + (1 - y) log(1 - p))`; the clip passes no gradient outside.

For each case (logits z, labels y) it records the mean loss and its gradient with respect to
each logit in both ways, the model's probabilities and Keras's binary accuracy (p > 0.5). The
model is `Input((1,)) -> Dense(1, sigmoid)` with kernel 1 and bias 0, so its input is the logit
and the gradient with respect to the input is the gradient with respect to the logit.

Run: /opt/venv-keras/bin/python scripts/reference_bce.py   (Keras 3 with TensorFlow, CPU)
Writes tests/data/reference_bce.json and prints it.
"""
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402

CASES = [
    # Extreme logits on both sides, right and wrong (the clip matters), z = 0 with label 1
    # (p = 0.5 is class 0 for binary accuracy), and ordinary values.
    ([-20.0, 20.0, -20.0, 20.0, 0.5, -3.0, 0.0, 2.25, -0.125, 9.0],
     [1, 0, 0, 1, 1, 0, 1, 0, 0, 1]),
    ([1.5, -0.7, 4.0], [1, 1, 0]),
    # Only saturated logits, all right: the clipped loss is log(1 / (1 - 1e-7)), no gradient.
    ([20.0, -20.0, 30.0], [1, 0, 1]),
    # Saturated and wrong: the clipped loss is capped near -log(1e-7) = 16.1.
    ([-25.0, 18.0], [1, 0]),
]


def model():
    m = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, activation="sigmoid")])
    m.layers[0].set_weights([np.ones((1, 1), np.float32), np.zeros((1,), np.float32)])
    m.compile(optimizer=keras.optimizers.SGD(0.0), loss="binary_crossentropy",
              metrics=["accuracy"])
    return m


def floats(t):
    return [float(v) for v in np.asarray(t, dtype=np.float32).ravel()]


def case(m, logits, labels):
    z = np.array(logits, np.float32).reshape(-1, 1)
    y = np.array(labels, np.float32).reshape(-1, 1)
    # "fit": the model's own loss on its sigmoid output.
    x = tf.constant(z)
    with tf.GradientTape() as tape:
        tape.watch(x)
        p = m(x, training=True)
        fit_loss = m.compute_loss(x=x, y=y, y_pred=p)
    fit_grad = tape.gradient(fit_loss, x)
    history = m.fit(z, y, batch_size=len(z), epochs=1, verbose=0, shuffle=False)
    accuracy = keras.metrics.binary_accuracy(y, p)
    # "clipped": the loss function on plain probabilities.
    v = tf.Variable(z)
    with tf.GradientTape() as tape:
        clipped_loss = tf.reduce_mean(
            keras.losses.binary_crossentropy(y, tf.math.sigmoid(v)))
    clipped_grad = tape.gradient(clipped_loss, v)
    return {
        "logits": floats(z),
        "labels": labels,
        "probabilities": floats(p),
        "correct": int(round(float(tf.reduce_sum(accuracy)))),
        "fit": {"loss": float(fit_loss), "grad": floats(fit_grad),
                "loss_from_fit": float(history.history["loss"][0])},
        "clipped": {"loss": float(clipped_loss), "grad": floats(clipped_grad)},
    }


def main():
    m = model()
    out = {
        "generator": "scripts/reference_bce.py",
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "cases": [case(m, z, y) for z, y in CASES],
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data",
                        "reference_bce.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(json.dumps(out, indent=1))
    print("wrote", os.path.normpath(path))


if __name__ == "__main__":
    main()
