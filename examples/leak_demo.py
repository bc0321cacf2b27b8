"""A leak audit of two splits made from scikit-image's freely licensed photographs.

    python -m examples.leak_demo OUT_DIR [--no-screenshot]

writes OUT_DIR/data/{train,test}/*.png (ten photographs in train; the other eight and
edited copies of train photographs in test), then runs the audit as `python -m harness
leaks` would (aHash and pHash at the 1% false-positive thresholds the committed run
reports/collection measured on the eighteen photographs, a pair flagged when either hasher
flags it) into OUT_DIR/audit/, and takes a screenshot of its review.html with headless
Chromium (OUT_DIR/audit/review.png; `screenshot` works on any page).
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

from harness.images import BUILTIN_IMAGES, load_builtin
from harness.leaks import find_leaks
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
HASHER_NAMES = ("aHash", "pHash")  # the hashers of reports/collection, the calibration run
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
    parser.add_argument("out", type=Path, help="folder for data/ and audit/")
    parser.add_argument("--calibration", default=os.path.relpath(os.path.join(ROOT, "reports", "collection")),
                        help="the run whose thresholds and impostors calibrate the audit")
    parser.add_argument("--no-screenshot", action="store_true", help="write the audit only")
    args = parser.parse_args(argv)
    write_data(args.out)
    audit = find_leaks({"name": "leak-demo", "splits": {"train": [str(args.out / "data" / "train")],
                                                        "test": [str(args.out / "data" / "test")]},
                        "hashers": list(HASHER_NAMES), "calibration": args.calibration})
    # The screenshot of an earlier demo is this script's, not the audit's: a saved audit replaces only
    # the files it lists, and refuses to delete any other.
    (args.out / "audit" / "review.png").unlink(missing_ok=True)
    audit.save(str(args.out / "audit"))
    found = set(audit.leaks["file_b"])
    missed = [name for _, name, _ in COPIES if str(args.out / "data" / "test" / name) not in found]
    if not args.no_screenshot:
        screenshot(args.out / "audit" / "review.html", args.out / "audit" / "review.png")
    print(audit.answer)
    print(f"the demo put {len(COPIES)} edited copies of train photographs into test; missed: {', '.join(missed) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
