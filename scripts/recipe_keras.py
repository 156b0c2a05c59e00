#!/usr/bin/env python3
"""Train the Keras equivalent of examples/fashion-mini.yaml with or without augmentation and
weight decay: the Keras side of scripts/recipe_study.py.

    recipe_keras.py TRAIN_DIR VALIDATION_DIR [--epochs 30] [--seed 0] [--augment]
                    [--weight-decay W] [--threads 2] [--out out.json]

TRAIN_DIR and VALIDATION_DIR hold one subfolder per class of 28x28 grayscale images (for the
study: examples/fashion-mini/train and the 10,000 Fashion-MNIST test images).

The model is `fashion_mini()` of scripts/keras_examples.py (105,870 parameters, as
`strata summary examples/fashion-mini.yaml` counts), trained as the spec trains it: Adam with
learning rate 0.002 (epsilon 1e-7), batch 32, categorical cross-entropy, the training set
shuffled every epoch, keras.utils.set_random_seed(SEED), pixels times float32(1/255). Images
are decoded once, up front (scripts/fashion_resnet_keras.py's `load`).

- `--augment`: the spec's `augment: { flip: horizontal, zoom: 0.1, translation: 0.1 }` as
  Keras layers in front of the model, in strata's order: RandomFlip("horizontal"),
  RandomZoom(0.1, fill_mode="reflect"), RandomTranslation(0.1, 0.1, fill_mode="reflect")
  (bilinear, Keras's default); they act in training only.
- `--weight-decay W`: keras.optimizers.AdamW(weight_decay=W) instead of Adam (the spec's
  `optimizer: adamw, weight_decay: W`).

Prints one JSON object (and writes it to --out): {"framework", "seed", "augment",
"weight_decay", "epochs": [{"epoch", "loss", "accuracy", "val_loss", "val_accuracy"}, ...]},
the columns of strata's history.json.

Install (outside the repository, once):
    python3 -m venv ~/venv-keras && ~/venv-keras/bin/pip install tensorflow-cpu keras pillow numpy
"""
import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = os.path.dirname(os.path.abspath(__file__))


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("train")
    p.add_argument("validation")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--augment", action="store_true")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out")
    return p.parse_args(argv)


def main(argv):
    args = parse(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import numpy as np
    from PIL import Image
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras
    from keras import layers
    sys.path.insert(0, HERE)
    import keras_examples
    from fashion_resnet_keras import load

    classes, x_train, y_train = load(args.train, None, np, Image)
    val_classes, x_val, y_val = load(args.validation, None, np, Image)
    if val_classes != classes:
        print(f"error: validation classes {val_classes} differ from {classes}", file=sys.stderr)
        return 2

    keras.utils.set_random_seed(args.seed)
    model = keras_examples.fashion_mini()
    if args.augment:
        inputs = keras.Input((28, 28, 1))
        x = layers.RandomFlip("horizontal")(inputs)
        x = layers.RandomZoom(0.1, fill_mode="reflect")(x)
        x = layers.RandomTranslation(0.1, 0.1, fill_mode="reflect")(x)
        model = keras.Model(inputs, model(x), name="fashion_mini_augmented")
    if args.weight_decay is None:
        optimizer = keras.optimizers.Adam(learning_rate=0.002, epsilon=1e-7)
    else:
        optimizer = keras.optimizers.AdamW(learning_rate=0.002, epsilon=1e-7,
                                           weight_decay=args.weight_decay)
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
    fit = model.fit(x_train, y_train, batch_size=32, epochs=args.epochs, shuffle=True,
                    validation_data=(x_val, y_val), validation_batch_size=256, verbose=0)
    h = fit.history
    rows = [{"epoch": i + 1, "loss": h["loss"][i], "accuracy": h["accuracy"][i],
             "val_loss": h["val_loss"][i], "val_accuracy": h["val_accuracy"][i]}
            for i in range(len(h["loss"]))]
    result = {"framework": "keras", "version": keras.__version__, "seed": args.seed,
              "augment": args.augment, "weight_decay": args.weight_decay, "epochs": rows}
    text = json.dumps(result)
    print(text, flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
