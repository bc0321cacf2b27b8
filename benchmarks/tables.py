"""What writing a long table as CSV costs: the harness's writer against pandas' to_csv.

    python benchmarks/tables.py                      # 910 images: 300,000 impostor rows
    python benchmarks/tables.py --images 3000 --runs 5

Makes the two long tables of issue 9's job (ImageHash's pHash, aHash and dHash) on N images, in
the form a run holds them (`storage.normalise`: names as categories, distances to 6 digits;
seeded): the impostor table of min(all, 100,000) pairs of different images, and the distance
table of 4 edits per image, once with plain labels and once with a chained edit's label that
holds a comma ("Downscale x0.5, JPEG 10", which only pandas writes as pandas does). Each is
written with `storage._to_csv` (pyarrow's CSV writer where it gives pandas' bytes, else pandas)
and with pandas' `to_csv` at the harness's settings (no index, "\\n", "%.6g"), in turns; the
script checks that both files are the same bytes and prints the median seconds of each, their
ratio, and which writer the harness used. In this process, after one untimed write of each
(imports and first calls). A benchmark prints figures; a failed check prints FAILED and exits
with status 1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

HASHERS = ["imagehash.phash", "imagehash.average_hash", "imagehash.dhash"]
EDITS = [("jpeg", "50", "JPEG quality 50"), ("scale", "0.5", "Downscale to 1/2"), ("blur", "3", "Box blur 3x3"),
         ("crop", "0.9", "Centre crop 90%")]


def tables(images: int, seed: int = 0):
    """(impostors, distances, distances with a comma in a label) for `images` images."""
    import pandas as pd

    from harness import storage

    rng = np.random.default_rng(seed)
    names = np.array([f"photo_{number:06d}" for number in range(images)], dtype=object)
    ids = np.array([f"{value:012x}" for value in rng.integers(0, 1 << 48, images)], dtype=object)
    pairs = min(images * (images - 1) // 2, 100_000)
    first = rng.integers(0, images, pairs * 2)
    second = (first + rng.integers(1, images, pairs * 2)) % images  # never the same image
    first, second = first[:pairs], second[:pairs]
    impostors = pd.DataFrame({
        "hasher": np.repeat(HASHERS, pairs), "kind": "source", "family": "", "value": "",
        "image": np.tile(names[first], 3), "other": np.tile(names[second], 3),
        "image_id": np.tile(ids[first], 3), "other_id": np.tile(ids[second], 3),
        "distance": rng.integers(0, 64, pairs * 3).astype(np.float64)})
    rows = images * len(EDITS) * len(HASHERS)
    edit = np.tile(np.repeat(np.arange(len(EDITS)), len(HASHERS)), images)
    distance = rng.integers(0, 20, rows).astype(np.float64)
    distances = pd.DataFrame({
        "image": np.repeat(names, len(EDITS) * len(HASHERS)), "image_id": np.repeat(ids, len(EDITS) * len(HASHERS)),
        "family": [EDITS[e][0] for e in edit], "value": [EDITS[e][1] for e in edit],
        "label": [EDITS[e][2] for e in edit], "hasher": np.tile(HASHERS, images * len(EDITS)),
        "distance": distance, "distance_norm": distance / 64, "error": ""})
    chained = distances.assign(label=distances["label"].where(distances["family"] != "scale", "Downscale x0.5, JPEG 10"))
    return (storage.normalise(storage.IMPOSTORS, impostors), storage.normalise(storage.DISTANCES, distances),
            storage.normalise(storage.DISTANCES, chained))


def pandas_csv(frame, path: str) -> None:
    from harness import storage

    frame.to_csv(path, index=False, lineterminator="\n", float_format=storage.FLOAT_FORMAT)


def measure(name: str, frame, folder: str, runs: int) -> bool:
    from harness import storage

    ours, theirs = os.path.join(folder, "harness.csv"), os.path.join(folder, "pandas.csv")
    storage._to_csv(frame, ours)  # untimed: imports and first calls
    pandas_csv(frame, theirs)
    with open(ours, "rb") as a, open(theirs, "rb") as b:
        same = a.read() == b.read()
    times: dict[str, list[float]] = {"harness": [], "pandas": []}
    for _ in range(runs):
        for label, write, path in (("harness", storage._to_csv, ours), ("pandas", pandas_csv, theirs)):
            start = time.perf_counter()
            write(frame, path)
            times[label].append(time.perf_counter() - start)
    ours_s, theirs_s = statistics.median(times["harness"]), statistics.median(times["pandas"])
    writer = "pyarrow" if storage._csv_columns(frame) is not None else "pandas"
    print(f"  {name:32s} {len(frame):>9,} rows | harness {ours_s:6.3f} s (by {writer:7s}) | pandas to_csv "
          f"{theirs_s:6.3f} s | {ours_s / theirs_s:5.2f}x | same bytes: {same}{'' if same else '  FAILED'}")
    return same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=910)
    parser.add_argument("--runs", type=int, default=3, help="timed writes of each (median)")
    args = parser.parse_args()
    import pandas as pd
    import pyarrow as pa

    print(f"long tables of issue 9's job on {args.images:,} images, written as CSV (median of {args.runs}); "
          f"pandas {pd.__version__}, pyarrow {pa.__version__}")
    impostors, distances, chained = tables(args.images)
    ok = True
    with tempfile.TemporaryDirectory() as folder:
        ok &= measure("impostors", impostors, folder, args.runs)
        ok &= measure("distances", distances, folder, args.runs)
        ok &= measure("distances, a label with a comma", chained, folder, args.runs)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
