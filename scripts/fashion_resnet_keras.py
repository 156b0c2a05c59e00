#!/usr/bin/env python3
"""Train the Keras equivalent of specs/examples/fashion_resnet.yaml on Fashion-MNIST folders.

    fashion_resnet_keras.py FOLDERS [--epochs 10] [--out out.json] [--limit N] [--test-limit N]
                            [--threads 2] [--no-plateau]

FOLDERS holds `train/` (60,000 images) and `test/` (10,000), one subfolder per class, 28x28
grayscale PNGs — the layout `strata train specs/examples/fashion_resnet.yaml --data FOLDERS`
reads (the test set is used for validation). The model is `fashion_resnet()` of
scripts/keras_examples.py (176,090 parameters, as `strata summary` counts).

What it does, to match strata's training of the spec:
- Data: every PNG is decoded once, up front, into memory (not timed): grayscale, classes in
  sorted folder-name order, files sorted by path, pixels multiplied by float32(1/255) (the
  spec's `rescale: 1/255`, strata's default) to [0, 1]. strata decodes its images in its own
  loader, so the per-epoch seconds here exclude all image decoding.
- Training: Adam (learning rate 1e-3, epsilon 1e-7), categorical cross-entropy on one-hot
  labels, batch 64, the training set shuffled every epoch, keras.utils.set_random_seed(0)
  (weights and shuffling); one model.fit call with validation_data = the test set (batch 64).
- The spec's `reduce_lr_on_plateau: {monitor: val_loss, factor: 0.3, patience: 1}` as
  keras.callbacks.ReduceLROnPlateau with the same settings (Keras's defaults otherwise:
  min_delta 1e-4, cooldown 0, min_lr 0); `--no-plateau` keeps the rate at 1e-3 throughout.
- `--threads` (default 2): TensorFlow intra-op threads (inter-op 1, OMP_NUM_THREADS the same).
- `--limit N` / `--test-limit N`: a random subset (seed 0) of N training / test images, for a
  quick check; the default is all of them.

Per epoch it prints and records: seconds (the training part of the epoch: from the epoch's
start to the start of its evaluation, the first epoch including Keras's tracing of the train
step), eval_seconds (evaluating the test set), train_loss (Keras's mean over the epoch's
batches, as strata's `loss` column), test_loss, test_acc, and the learning rate used.
Output JSON (stdout at the end, and --out when given):
    {"model", "framework", "train_images", "test_images", "batch", "threads", "load_seconds",
     "params", "epochs": [{"epoch", "seconds", "train_loss", "test_acc", "test_loss",
     "eval_seconds", "lr"}, ...]}

Install (outside the repository, once):
    python3 -m venv ~/venv-keras && ~/venv-keras/bin/pip install tensorflow-cpu keras pillow numpy
Run from the repository root:
    ~/venv-keras/bin/python scripts/fashion_resnet_keras.py fashion-mnist --out keras_fashion.json
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = os.path.dirname(os.path.abspath(__file__))
BATCH = 64
LR = 1e-3


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folders")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--out")
    p.add_argument("--limit", type=int, help="use N random training images")
    p.add_argument("--test-limit", type=int, help="use N random test images")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-plateau", action="store_true",
                   help="no ReduceLROnPlateau (the spec has one)")
    return p.parse_args(argv)


def list_folder(root):
    """(classes, [(path, label)]): classes sorted by name, files sorted by path per class."""
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    files = []
    for label, c in enumerate(classes):
        found = []
        for dirpath, _, names in os.walk(os.path.join(root, c)):
            found += [os.path.join(dirpath, n) for n in names
                      if n.lower().endswith((".png", ".jpg", ".jpeg", ".bmp", ".gif"))]
        files += [(path, label) for path in sorted(found)]
    return classes, files


def load(root, limit, np, Image):
    classes, files = list_folder(root)
    if limit is not None and limit < len(files):
        keep = np.random.default_rng(0).choice(len(files), size=limit, replace=False)
        files = [files[i] for i in sorted(keep)]
    x = np.empty((len(files), 28, 28, 1), dtype=np.float32)
    y = np.zeros((len(files), len(classes)), dtype=np.float32)
    scale = np.float32(1.0 / 255.0)
    for i, (path, label) in enumerate(files):
        with Image.open(path) as im:
            im = im.convert("L")
            if im.size != (28, 28):
                im = im.resize((28, 28), Image.BILINEAR)
            x[i, :, :, 0] = np.asarray(im, dtype=np.float32) * scale
        y[i, label] = 1.0
    return classes, x, y


def main(argv):
    args = parse(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import numpy as np
    from PIL import Image
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras
    sys.path.insert(0, HERE)
    import keras_examples

    t0 = time.perf_counter()
    classes, x_train, y_train = load(os.path.join(args.folders, "train"), args.limit, np, Image)
    test_classes, x_test, y_test = load(os.path.join(args.folders, "test"), args.test_limit,
                                        np, Image)
    if test_classes != classes:
        print(f"error: test classes {test_classes} differ from train classes {classes}",
              file=sys.stderr)
        return 2
    load_seconds = time.perf_counter() - t0
    print(f"loaded {len(x_train)} training and {len(x_test)} test images "
          f"({len(classes)} classes) in {load_seconds:.1f} s", file=sys.stderr, flush=True)

    keras.utils.set_random_seed(0)
    model = keras_examples.fashion_resnet()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=LR, epsilon=1e-7),
                  loss="categorical_crossentropy", metrics=["accuracy"])

    rows = []

    class Recorder(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            self.t_begin = time.perf_counter()
            self.t_test = None

        def on_test_begin(self, logs=None):
            self.t_test = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            t_end = time.perf_counter()
            t_test = self.t_test or t_end
            row = {"epoch": epoch + 1,
                   "seconds": round(t_test - self.t_begin, 3),
                   "train_loss": float(logs["loss"]),
                   "test_acc": float(logs["val_accuracy"]),
                   "test_loss": float(logs["val_loss"]),
                   "eval_seconds": round(t_end - t_test, 3),
                   "lr": self.lr}
            rows.append(row)
            print(f"epoch {row['epoch']}: {row['seconds']:.1f} s (+{row['eval_seconds']:.1f} s "
                  f"eval), loss {row['train_loss']:.4f}, test loss {row['test_loss']:.4f}, "
                  f"test acc {row['test_acc']:.4f}, lr {row['lr']:.2e}",
                  file=sys.stderr, flush=True)

    # the recorder first: it reads the rate before ReduceLROnPlateau changes it
    callbacks = [Recorder()]
    if not args.no_plateau:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3,
                                                           patience=1))
    model.fit(x_train, y_train, batch_size=BATCH, epochs=args.epochs, shuffle=True,
              validation_data=(x_test, y_test), validation_batch_size=BATCH,
              callbacks=callbacks, verbose=0)

    result = {"model": "fashion_resnet", "framework": "keras",
              "version": f"keras {keras.__version__}, tensorflow {tf.__version__}",
              "train_images": len(x_train), "test_images": len(x_test), "batch": BATCH,
              "threads": args.threads, "reduce_lr_on_plateau": not args.no_plateau,
              "load_seconds": round(load_seconds, 3), "params": int(model.count_params()),
              "epochs": rows}
    text = json.dumps(result)
    print(text, flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
