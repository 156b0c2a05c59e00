#!/usr/bin/env python3
"""Keras 3's image augmentation layers on small images with fixed factors, for strata's
`data::augment` (tests/suite/augment.rs reads what this writes).

Each case applies one layer's `transform_images` to a fixed image with an explicit
transformation (the flip decision, the angle, the zoom, the shift in pixels, the contrast
factor, the brightness delta), so no random draw is involved; "sequence" applies them all in
strata's order: RandomFlip, RandomRotation, RandomZoom, RandomTranslation, RandomContrast,
RandomBrightness. Rotation, zoom and translation use fill_mode="reflect" and
interpolation="bilinear" (the layers' defaults); contrast and brightness use
value_range=(0, 255) (their defaults). Images are float32 on the 0-255 scale, odd-sized (5x7x3
and 6x4x1) so that centres fall between and on pixels, with factors large enough to reflect
more than once.

Run: /opt/venv-keras/bin/python scripts/reference_augment.py   (Keras 3 with TensorFlow, CPU)
Writes tests/data/reference_augment.json.
"""
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import keras  # noqa: E402
from keras import layers  # noqa: E402


def image(height, width, channels, seed):
    rng = np.random.RandomState(seed)
    return rng.randint(0, 256, (1, height, width, channels)).astype("float32")


def flip(x, mode):
    layer = layers.RandomFlip(mode)
    return layer.transform_images(x, {"flips": np.array([[[[True]]]])}, training=True)


def rotate(x, turns):
    layer = layers.RandomRotation((turns, turns))
    transformation = layer.get_random_transformation(x, training=True)
    assert abs(float(transformation["angle"][0]) - turns * 360.0) < 1e-3
    return layer.transform_images(x, transformation, training=True)


def zoom(x, factor):
    layer = layers.RandomZoom(0.5)
    z = np.array([[factor]], dtype="float32")
    return layer.transform_images(x, {"height_zoom": z, "width_zoom": z}, training=True)


def translate(x, shift_x, shift_y):
    layer = layers.RandomTranslation(0.5, 0.5)
    shifts = np.array([[shift_x, shift_y]], dtype="float32")
    return layer.transform_images(x, {"translations": shifts}, training=True)


def contrast(x, factor):
    layer = layers.RandomContrast(0.5)
    f = np.full((1, 1, 1, 1), factor, dtype="float32")
    return layer.transform_images(x, {"contrast_factor": f}, training=True)


def brightness(x, delta):
    layer = layers.RandomBrightness(0.5)
    d = np.full((1, 1, 1, 1), delta, dtype="float32")
    return layer.transform_images(x, {"rgb_delta": d}, training=True)


def case(name, x, out, **params):
    return {
        "name": name,
        "shape": list(x.shape[1:]),
        "input": np.asarray(x).ravel().tolist(),
        "output": np.asarray(out).ravel().tolist(),
        **params,
    }


def main():
    cases = []
    for shape, seed in [((5, 7, 3), 0), ((6, 4, 1), 1)]:
        x = image(*shape, seed)
        tag = "x".join(map(str, shape))
        for mode in ["horizontal", "vertical", "horizontal_and_vertical"]:
            cases.append(case(f"flip {mode} {tag}", x, flip(x, mode), flip=mode))
        for turns in [0.1, -0.3, 0.5, 0.93]:
            cases.append(case(f"rotation {turns} {tag}", x, rotate(x, turns),
                              angle_degrees=turns * 360.0))
        for factor in [0.6, 1.35, 1.95]:
            cases.append(case(f"zoom {factor} {tag}", x, zoom(x, factor), zoom=factor))
        for shift_x, shift_y in [(2.1, -2.0), (-6.3, 4.0), (0.5, 0.25)]:
            cases.append(case(f"translation {shift_x},{shift_y} {tag}", x,
                              translate(x, shift_x, shift_y), shift_x=shift_x, shift_y=shift_y))
        for factor in [1.8, 0.3]:
            cases.append(case(f"contrast {factor} {tag}", x, contrast(x, factor),
                              contrast=factor))
        for delta in [100.0, -60.0]:
            cases.append(case(f"brightness {delta} {tag}", x, brightness(x, delta),
                              brightness=delta))
        params = dict(flip="horizontal", angle_degrees=0.12 * 360.0, zoom=1.2, shift_x=-1.4,
                      shift_y=0.8, contrast=1.3, brightness=-25.0)
        y = flip(x, "horizontal")
        y = rotate(y, 0.12)
        y = zoom(y, params["zoom"])
        y = translate(y, params["shift_x"], params["shift_y"])
        y = contrast(y, params["contrast"])
        y = brightness(y, params["brightness"])
        cases.append(case(f"sequence {tag}", x, y, **params))
    path = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "reference_augment.json")
    with open(path, "w") as f:
        json.dump({"keras": keras.__version__, "cases": cases}, f, indent=None)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {os.path.normpath(path)}")


if __name__ == "__main__":
    main()
