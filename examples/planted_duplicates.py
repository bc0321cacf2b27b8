"""Probable duplicates inside a collection: two copies planted among scikit-image's photographs.

    python -m examples.planted_duplicates

Writes 12 of the bundled photographs as PNG files into a temporary folder, with two of them
planted again under other names: a JPEG-80 copy of `astronaut` and a copy of `coffee` cropped
to 96% of each side (8% of its surface). Runs configs/collection.yaml's edits over the 14 files
with aHash, pHash, PDQ and imagehash.dhash, and prints the pairs listed as probable duplicates
(and by how many of the four hashers), then aHash's threshold at a 1% false-positive rate before
and after the two pairs are listed in `impostors.duplicates` (the README's "Impostor hygiene"
quotes these lines). Nothing is written outside the temporary folder.
"""

from __future__ import annotations

import os
import tempfile

import cv2

from harness import evaluate
from harness.images import BUILTIN_IMAGES, load_builtin
from harness.safe_yaml import read_config
from harness.transforms import apply_chain

HASHERS = ["aHash", "pHash", "PDQ", "imagehash.dhash"]
PHOTOGRAPHS = BUILTIN_IMAGES[:12]
PLANTED = (("astronaut", "astronaut_copy", [("jpeg", {"quality": 80})]),
           ("coffee", "coffee_copy", [("crop_fraction", {"fraction": 0.96})]))


def write_images(folder: str) -> list[str]:
    paths = []
    for name in PHOTOGRAPHS:
        paths.append(os.path.join(folder, name + ".png"))
        cv2.imwrite(paths[-1], load_builtin(name))
    for source, name, chain in PLANTED:
        paths.append(os.path.join(folder, name + ".png"))
        cv2.imwrite(paths[-1], apply_chain(load_builtin(source), chain))
    return paths


def main() -> None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    config = read_config(os.path.join(root, "configs", "collection.yaml"))
    config["hashers"] = HASHERS
    config.pop("output", None)
    with tempfile.TemporaryDirectory(prefix="planted-") as folder:
        config["images"] = write_images(folder)
        cache = os.path.join(folder, "hash-cache.sqlite")  # the second run rehashes nothing
        found = evaluate(config, cache=cache)
        print(f"{len(config['images'])} images ({', '.join(PHOTOGRAPHS)}, and "
              f"{' and '.join(name for _, name, _ in PLANTED)}); hashers {', '.join(HASHERS)}")
        print("probable duplicates:")
        for row in found.metrics.duplicates.itertuples():
            print(f"  {row.image} ~ {row.other}: flagged by {row.hashers} of {len(HASHERS)} ({row.flagged_by})")
        config["impostors"] = {**config.get("impostors", {}),
                               "duplicates": [[source, name] for source, name, _ in PLANTED]}
        listed = evaluate(config, cache=cache)
        for label, results in (("as found", found), ("with the two pairs listed", listed)):
            rows = results.thresholds
            row = rows[(rows["hasher"] == "aHash") & (rows["operating_point"] == "fpr=0.01")].iloc[0]
            print(f"aHash's threshold at 1% false positives, {label}: {row['threshold']:g}")


if __name__ == "__main__":
    main()
