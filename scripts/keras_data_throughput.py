#!/usr/bin/env python3
"""Decode + resize throughput of Keras's image folder pipeline: the reference for
`strata data bench DIR`.

    keras_data_throughput.py DIR [--size 224] [--batch 32] [--threads 2] [--repeats 3]

Times `keras.utils.image_dataset_from_directory(DIR, image_size=(size, size), batch_size=batch,
shuffle=False)` iterated once to the end, `--repeats` times (each pass decodes every file again:
the dataset has no cache), and prints images/s of each pass and their median as one JSON line.
Listing the folder (done once, when the dataset is made) is not timed, as `strata data bench`
does not time its scan. Threads: TensorFlow intra-op `--threads`, inter-op 1, OMP_NUM_THREADS
the same; tf.data's own pool sizes itself to the machine's cores. Run it back to back with
`strata data bench DIR --size 224` on the same machine and compare the ratio.
"""
import argparse
import json
import os
import statistics
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import keras

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    dataset = keras.utils.image_dataset_from_directory(
        args.dir, image_size=(args.size, args.size), batch_size=args.batch, shuffle=False,
        verbose=False)
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        n_images = 0
        for images, _labels in dataset:
            n_images += int(images.shape[0])
        rates.append(n_images / (time.perf_counter() - start))
    print(json.dumps({"framework": "keras", "images": n_images, "size": args.size,
                      "batch": args.batch, "threads": args.threads,
                      "images_per_s": [round(r, 1) for r in rates],
                      "median_images_per_s": round(statistics.median(rates), 1)}))


if __name__ == "__main__":
    main()
