#!/usr/bin/env python3
"""Writes a folder of photo-like JPEGs for `strata data bench` and the Keras reference
(`keras_data_throughput.py`): random crops of scikit-image's sample photos, 300 to 500 px a
side, JPEG quality 75 to 95 (Pillow's default 4:2:0 chroma), in two classes `a` and `b`.

    pip install scikit-image pillow numpy
    make_photo_crops.py OUT_DIR [N]        # N images, 3,000 by default; seed 0

The "Decoding JPEGs" measurements in docs/performance.md were taken on the 3,000 this writes.
"""
import os
import sys

import numpy as np
from PIL import Image
from skimage import data

SOURCES = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry",
           "hubble_deep_field", "colorwheel", "cat", "retina"]


def main():
    out = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    photos = [Image.fromarray(getattr(data, name)()[..., :3]) for name in SOURCES]
    rng = np.random.default_rng(0)
    for name in "ab":
        os.makedirs(os.path.join(out, name), exist_ok=True)
    for i in range(n):
        photo = photos[rng.integers(len(photos))]
        width, height = int(rng.integers(300, 501)), int(rng.integers(300, 501))
        scale = max(width / photo.size[0], height / photo.size[1]) * rng.uniform(1.0, 1.6)
        big = photo.resize((max(width, int(photo.size[0] * scale) + 1),
                            max(height, int(photo.size[1] * scale) + 1)), Image.BICUBIC)
        left = int(rng.integers(0, big.size[0] - width + 1))
        top = int(rng.integers(0, big.size[1] - height + 1))
        crop = big.crop((left, top, left + width, top + height))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        crop.save(os.path.join(out, "ab"[i % 2], f"{i:05d}.jpg"),
                  quality=int(rng.integers(75, 96)))


if __name__ == "__main__":
    main()
