"""The article's 40 pairs with aHash and pHash, written as a bare OpenCV script.

    python benchmarks/article_bare.py [--out article_bare.csv]

The same edits as configs/lena.yaml (made with cv2 exactly as the harness's transforms
make them), hashed with cv2.img_hash and compared with its compare(). The image is
resources/lena_std.tif when present, else scikit-image's astronaut, as the harness does.
compare.py times it against `python -m harness run configs/lena.yaml --hashers aHash,pHash`.
"""
import argparse
import csv
import os

import cv2
import numpy as np

IMAGE = "resources/lena_std.tif"


def text(image, scale):
    out = image.copy()
    cv2.putText(out, "Text", (10, round(30 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                max(1, round(3 * scale)), cv2.LINE_AA)
    return out


def gamma(image, value):
    return cv2.LUT(image, np.clip((np.arange(256) / 255.0) ** value * 255.0, 0, 255).astype(np.uint8))


def jpeg(image, quality):
    return cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_COLOR)


def scale(image, factor):
    rows, cols = image.shape[:2]
    return cv2.resize(image, (max(1, int(cols * factor)), max(1, int(rows * factor))), interpolation=cv2.INTER_LINEAR)


def crop(image, d):
    return image[128 + d:384 + d, 128 + d:384 + d]


def pairs(image):
    """(family, value, side a, side b) in the config's order."""
    yield "identity", "", image, image
    yield "grayscale", "", image, cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    for factor in (0.5, 0.25, 0.125, 0.0625):
        yield "scale", factor, image, scale(image, factor)
    for kernel in range(3, 12, 2):
        yield "blur", kernel, image, cv2.blur(image, (kernel, kernel))
    for size in range(1, 8):
        yield "text", size, image, text(image, size)
    for quality in range(10, 100, 10):
        yield "jpeg", quality, image, jpeg(image, quality)
    for value in (0.2, 0.5, 0.8, 1.2, 1.5, 2.0):
        yield "gamma", value, image, gamma(image, value)
    for d in (1, 2, 4, 8, 16, 32, 64):
        yield "shift", d, crop(image, 0), crop(image, d)


parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--out", default="article_bare.csv", help="the CSV written")
args = parser.parse_args()

if os.path.exists(IMAGE):
    image = cv2.imread(IMAGE, cv2.IMREAD_COLOR)
else:
    import skimage.data
    image = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
hashers = {"aHash": cv2.img_hash.AverageHash_create(), "pHash": cv2.img_hash.PHash_create()}

with open(args.out, "w", newline="") as file:
    out = csv.writer(file, lineterminator="\n")
    out.writerow(["family", "value", *hashers])
    for family, value, a, b in pairs(image):
        distances = [h.compare(h.compute(a), h.compute(b)) for h in hashers.values()]
        out.writerow([family, value, *(f"{d:g}" for d in distances)])
