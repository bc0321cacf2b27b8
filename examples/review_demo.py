"""A sample leak-review page, made from scikit-image's freely licensed photographs.

    python -m examples.review_demo OUT_DIR [--no-screenshot]

writes OUT_DIR/data/{train,test}/*.png (ten photographs in train; the other eight and
edited copies of six train photographs in test), OUT_DIR/review.html (the pairs that
pHash, PDQ and ImageHash's dHash flag between the splits) and OUT_DIR/review.png, a
screenshot of the page's top made with headless Chromium (`screenshot`, usable on any page).

The distances are real: every file of train is hashed and compared with every file of test.
Each hasher flags a pair at a distance below every distance between two *different*
photographs of the eighteen, so on these photographs it has no false match.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from harness.hashers import HASHERS
from harness.images import BUILTIN_IMAGES, load_builtin
from harness.review import make_thumbnail, review_page
from harness.transforms import apply_chain

TRAIN = ("astronaut", "coffee", "chelsea", "rocket", "camera", "motorcycle", "clock", "coins", "brick", "grass")
# Edited copies of train photographs that land in test: (source, file name, transform chain).
COPIES = (
    ("astronaut", "astronaut_q30.png", [("jpeg", {"quality": 30})]),
    ("astronaut", "astronaut_meme.png", [("caption", {"text": "WHEN THE TEST SET LEAKS", "height": 0.1})]),
    ("coffee", "coffee_small.png", [("scale", {"factor": 0.4}), ("jpeg", {"quality": 70})]),
    ("chelsea", "chelsea_mirrored.png", [("hflip", {})]),
    ("chelsea", "chelsea_rotated.png", [("rotate", {"angle": 5, "crop": True})]),
    ("rocket", "rocket_cropped.png", [("crop_fraction", {"fraction": 0.8, "x": 0.3})]),
    ("camera", "camera_bright.png", [("gamma", {"gamma": 0.7}), ("gaussian_blur", {"sigma": 1.5})]),
    ("motorcycle", "motorcycle_crop.png", [("crop_fraction", {"fraction": 0.9})]),
    ("clock", "clock_small.png", [("resize_max", {"size": 200}), ("jpeg", {"quality": 40})]),
    ("coins", "coins_bright.png", [("brightness", {"delta": 40})]),
)
HASHER_NAMES = ("pHash", "PDQ", "imagehash.dhash")
WINDOW = (1280, 1100)  # the screenshot's size in CSS pixels: the header, the legend and the first rows


def write_data(root: Path) -> dict[str, np.ndarray]:
    """The two splits as PNG files under root/data; returns file (relative to root) -> pixels."""
    photos = {name: load_builtin(name) for name in BUILTIN_IMAGES}
    files = {}
    for name, pixels in photos.items():
        files[f"data/{'train' if name in TRAIN else 'test'}/{name}.png"] = pixels
    for source, name, chain in COPIES:
        files[f"data/test/{name}"] = apply_chain(photos[source], chain)
    for file, pixels in files.items():
        (root / file).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / file), pixels)
    return files


def flagged_pairs(files: dict[str, np.ndarray]) -> tuple[pd.DataFrame, dict[str, float], dict[str, float]]:
    """(pairs, distance_max per hasher, threshold per hasher) for every train x test pair that a hasher flags."""
    train = sorted(f for f in files if f.startswith("data/train/"))
    test = sorted(f for f in files if f.startswith("data/test/"))
    originals = [files[f] for f in sorted(files) if Path(f).stem in BUILTIN_IMAGES]
    pairs = pd.DataFrame([(a, b) for a in train for b in test], columns=["file_a", "file_b"])
    scales, thresholds = {}, {}
    for name in HASHER_NAMES:
        hasher = HASHERS.get(name)()
        # Distances between different photographs: the hasher flags only below all of them.
        hashes = hasher.hash_images(originals)
        impostors = hasher.cross_distance(hashes, hashes)[np.triu_indices(len(originals), 1)]
        thresholds[name] = float(impostors.min() - 1)  # bit hashes: integer distances
        scales[name] = float(hasher.distance_max)
        cross = hasher.cross_distance(hasher.hash_images([files[f] for f in train]),
                                      hasher.hash_images([files[f] for f in test]))
        distance = cross.ravel()  # row-major: the order of `pairs`
        pairs[name] = np.where(distance <= thresholds[name], distance, np.nan)
    pairs["agree"] = pairs[list(HASHER_NAMES)].notna().sum(axis=1)
    pairs = pairs[pairs["agree"] > 0].assign(split_a="train", split_b="test")
    return pairs[["split_a", "file_a", "split_b", "file_b", *HASHER_NAMES, "agree"]], scales, thresholds


def screenshot(page: str | os.PathLike, png: str | os.PathLike, *, window: tuple[int, int] = WINDOW,
               browser: str | None = None) -> None:
    """A PNG of the top `window` (width, height) of an HTML file, made with headless Chromium.

    Chromium's own --screenshot, so no Python package is needed. The sandbox is off because
    Chromium refuses to start with it as root (CI's user); the page is a local file with no script.
    """
    browser = browser or shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        raise RuntimeError("no Chromium found (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:  # a throwaway profile: nothing written to ~
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--force-device-scale-factor=1", "--no-first-run", "--disable-extensions",
                        f"--user-data-dir={profile}", f"--window-size={window[0]},{window[1]}",
                        f"--screenshot={Path(png).resolve()}", Path(page).resolve().as_uri()],
                       check=True, capture_output=True, timeout=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for data/, review.html and review.png")
    parser.add_argument("--no-screenshot", action="store_true", help="write review.html only")
    args = parser.parse_args(argv)
    files = write_data(args.out)
    pairs, scales, thresholds = flagged_pairs(files)
    found = set(pairs["file_b"])
    missed = [name for _, name, _ in COPIES if f"data/test/{name}" not in found]
    notes = [f"{len(found)} files in test look like copies of files in train ({len(pairs)} flagged pairs).",
             f"The demo put {len(COPIES)} edited copies of train photographs into test; the hashers missed "
             f"{len(missed)}: {', '.join(missed) or 'none'}. Each hasher flags a pair below the smallest "
             f"distance between two different photographs (scikit-image's {len(BUILTIN_IMAGES)})."]
    page = review_page(pairs, lambda file: make_thumbnail(str(args.out / file)), hashers=scales,
                       title="Leak review: train vs test", notes=notes, thresholds=thresholds)
    (args.out / "review.html").write_text(page, encoding="utf-8")
    if not args.no_screenshot:
        screenshot(args.out / "review.html", args.out / "review.png")
    print(f"wrote {args.out / 'review.html'}: {len(pairs)} pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
