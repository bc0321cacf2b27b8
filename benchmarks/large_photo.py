"""Peak memory with one large photograph: `configs/collection.yaml` on scikit-image's 18 photographs,
with and without a generated 13.5-megapixel JPEG (4240 x 3180) among them.

    python benchmarks/large_photo.py

Each run is a whole process, `python -m harness run configs/collection.yaml --no-cache --quiet`
(its 46 edited copies of every image, previews included); the peak is the largest resident size of
a single process among the run and its children, from the operating system's accounting (the run is
started by the small launcher benchmarks/peak.py, so that the peak is its own: scale.measure).
Issue 9 asks that such a
photograph keep the peak under 600 MiB: its edited copies are made and hashed in batches bounded by
their pixels, never all at once. The config's ResNet50 runs only where its ImageNet weights are
in Keras' cache or can be downloaded; a last line says which hashers ran and why any did not, as each
run's `hashers.csv` records it. A benchmark prints figures; nothing here asserts.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from scale import measure  # noqa: E402
from timing import child_environment, environment_note  # noqa: E402


def large_photo(path: str, height: int = 3180, width: int = 4240) -> None:
    """A photo-like picture: a smooth random field, sensor-like noise and discs (JPEG quality 92)."""
    rng = np.random.default_rng(1)
    image = cv2.resize(rng.integers(0, 256, (8, 10, 3), dtype=np.uint8), (width, height),
                       interpolation=cv2.INTER_CUBIC)
    image = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
    for _ in range(40):
        centre = tuple(int(c) for c in rng.integers(0, (width, height)))
        cv2.circle(image, centre, int(rng.integers(50, 600)), tuple(int(c) for c in rng.integers(0, 256, 3)), -1)
    cv2.imwrite(path, image, [cv2.IMWRITE_JPEG_QUALITY, 92])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--make", metavar="PATH", help="only write the 13.5-megapixel JPEG to PATH (the script makes it "
                        "so, in a process of its own, for its second run)")
    args = parser.parse_args()
    if args.make:
        large_photo(args.make)
        return
    with tempfile.TemporaryDirectory() as scratch:
        photo = os.path.join(scratch, "large.jpg")
        # Made in a process of its own: a process started from this one may be charged this one's
        # peak (the kernel's accounting keeps the peak of the memory a child starts in).
        subprocess.run([sys.executable, __file__, "--make", photo], check=True)
        print("configs/collection.yaml (aHash, pHash; ResNet50 where its weights are installed), whole process")
        print(environment_note())
        environment = child_environment()
        ran = []
        for name, images in (("18 photographs", ["builtin:skimage"]),
                             ("18 photographs + one 4240x3180 JPEG", ["builtin:skimage", photo])):
            out = os.path.join(scratch, "out-" + str(len(images)))
            wall, peak, cpu, _ = measure([sys.executable, "-m", "harness", "run", "configs/collection.yaml",
                                          "--images", *images, "--out", out, "--no-cache", "--quiet"], environment)
            print(f"  {name:<38} {wall:6.1f} s (CPU {cpu:5.1f} s)   peak {peak:5.0f} MiB", flush=True)
            ran.append(hashers_note(out))
        # The run's own notes go to stderr, which measure() keeps out of sight: without this line a
        # figure measured without the CNN reads as one measured with it.
        print(ran[0] if len(set(ran)) == 1 else "\n".join(f"run {i + 1}: {note}" for i, note in enumerate(ran)))


def hashers_note(out: str) -> str:
    """One line: the hashers a run's `hashers.csv` says ran, and those it could not, with the reason."""
    with open(os.path.join(out, "hashers.csv"), newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    done = [row["hasher"] for row in rows if row["status"] != "unavailable"]
    skipped = [f"{row['hasher']} ({row['reason']})" for row in rows if row["status"] == "unavailable"]
    return f"hashers run: {', '.join(done) or 'none'}; skipped: {'; '.join(skipped) or 'none'}"


if __name__ == "__main__":
    main()
