"""The leak audit end to end on image files, 1,000 to 100,000: time, peak memory, planted copies.

    python benchmarks/leak_files.py                           # 1,000, 10,000 and 100,000 images
    python benchmarks/leak_files.py --sizes 1000 --workers 2

benchmarks/leaks.py times the audit's search on hash tables; this times what a user with a data set
of image files runs: `python -m harness leaks --train ... --test ... --hashers pHash --threshold
pHash=8`, reading, decoding and hashing every file, searching, and writing every output. The images
are scale.py's (generated 256x256 JPEGs, made once into --data and reused): of N, the first 80% are
train and the rest test, with planted copies of train images added to test (a fifth of N, at most
200; a third each re-encoded at JPEG 70, downscaled 0.5, cropped 5%, made with OpenCV here). For each
size it prints the audit's wall time, time per image, CPU time and peak memory (the command's own,
through benchmarks/peak.py; the ratio of each peak to the first size's), the same command again over
its full hash cache, and an audit from the hash tables the first wrote (which hashes no image).
It checks that each planted copy is flagged exactly when OpenCV's pHash of it and of its source
(cv2.img_hash, computed here) are within the threshold, and that the audit from the hash tables
writes the same leaks.csv: a failed check prints FAILED and exits with status 1. Nothing here
asserts a time.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile

import cv2
import numpy as np
from scale import generate
from timing import child_environment, environment_note, measured

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THRESHOLD = 8
EDITS = ("jpeg70", "down0.5", "crop5")


def image_path(data: str, number: int) -> str:
    return os.path.join(data, f"{number // 1000:03d}", f"{number:06d}.jpg")


def entries(data: str, start: int, stop: int) -> list[str]:
    """Images start..stop-1 as the audit is given them: whole folders of a thousand, else the files."""
    found, number = [], start
    while number < stop:
        if number % 1000 == 0 and number + 1000 <= stop:
            found.append(os.path.dirname(image_path(data, number)))
            number += 1000
        else:
            found.append(image_path(data, number))
            number += 1
    return found


def plant(data: str, train: int, count: int, folder: str) -> list[tuple[str, str, str]]:
    """`count` edited copies of seeded train images in `folder`: (copy, source, edit) each."""
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    planted = []
    for k, number in enumerate(sorted(np.random.default_rng(7).choice(train, count, replace=False))):
        source, edit = image_path(data, int(number)), EDITS[k % 3]
        image = cv2.imread(source)
        if edit == "down0.5":
            image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
        elif edit == "crop5":
            dy, dx = image.shape[0] * 25 // 1000, image.shape[1] * 25 // 1000
            image = image[dy:image.shape[0] - dy, dx:image.shape[1] - dx]
        copy = os.path.join(folder, f"copy{k:03d}_{edit}.jpg")
        cv2.imwrite(copy, image, [cv2.IMWRITE_JPEG_QUALITY, 70 if edit == "jpeg70" else 90])
        planted.append((copy, source, edit))
    return planted


def flagged_pairs(out: str) -> set[frozenset]:
    with open(os.path.join(out, "leaks.csv"), newline="") as handle:
        return {frozenset((os.path.abspath(row["file_a"]), os.path.abspath(row["file_b"])))
                for row in csv.DictReader(handle)}


def audit(command: list[str], label: str) -> tuple:
    usage, done = measured(command, cwd=ROOT, env=child_environment(), capture_output=True, text=True)
    if usage.status != 0:
        print(f"FAILED: {label} exited with status {usage.status}\n{done.stderr}")
        sys.exit(1)
    return usage, done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "harness-scale-images"),
                        help="where the images are kept between runs (scale.py's folder)")
    parser.add_argument("--workers", default="1")
    args = parser.parse_args()
    args.data = os.path.abspath(args.data)  # the audits run in the repository root
    print(f"the leak audit (pHash, threshold {THRESHOLD}, --workers {args.workers}) on N generated 256x256 JPEGs, "
          "80% train, 20% test with planted copies (whole process, every output written)")
    print(environment_note())
    generate(args.data, max(args.sizes))
    phash = cv2.img_hash.PHash_create()
    first_peak = None
    failed = False
    with tempfile.TemporaryDirectory() as scratch:
        for size in args.sizes:
            train = size * 4 // 5
            planted = plant(args.data, train, min(200, size // 5), os.path.join(scratch, "planted"))
            out = os.path.join(scratch, f"audit{size}")
            common = ["--hashers", "pHash", "--threshold", f"pHash={THRESHOLD}", "--workers", args.workers, "--quiet"]
            command = [sys.executable, "-m", "harness", "leaks", "--train", *entries(args.data, 0, train),
                       "--test", *entries(args.data, train, size), os.path.join(scratch, "planted"), *common]
            fresh, _ = audit([*command, "--out", out], "the audit")
            again, _ = audit([*command, "--out", out], "the audit again")
            tables = [os.path.join(out, "hashes", f"{split}.pHash.parquet") for split in ("train", "test")]
            from_tables, _ = audit([sys.executable, "-m", "harness", "leaks", "--train", tables[0], "--test", tables[1],
                                    *common, "--out", out + "-tables"], "the audit from its hash tables")
            first_peak = first_peak or fresh.peak_mib
            files = size + len(planted)
            found = flagged_pairs(out)
            wrong, missed = [], []
            for copy, source, edit in planted:
                distance = int(phash.compare(phash.compute(cv2.imread(copy)), phash.compute(cv2.imread(source))))
                if (frozenset((copy, source)) in found) != (distance <= THRESHOLD):
                    wrong.append(f"{os.path.basename(copy)} at {distance}")
                elif distance > THRESHOLD:
                    missed.append(f"{edit} at {distance}")
            same = found == flagged_pairs(out + "-tables")
            print(f"{files:7d} images | audit {fresh.wall:6.1f} s ({fresh.wall / files * 1000:5.2f} ms/image), "
                  f"CPU {fresh.cpu:6.1f} s | peak {fresh.peak_mib:4.0f} MiB ({fresh.peak_mib / first_peak:.2f}x the first) "
                  f"| again, full cache {again.wall:5.1f} s ({again.wall / fresh.wall:.2f}x) "
                  f"| from its hash tables {from_tables.wall:5.1f} s, peak {from_tables.peak_mib:4.0f} MiB")
            print(f"        planted {len(planted)}: {len(planted) - len(missed) - len(wrong)} flagged, "
                  f"{len(missed)} beyond the threshold ({', '.join(missed) or 'none'}); "
                  f"flagged exactly when within it: {not wrong}; the audit from its hash tables flags the same "
                  f"pairs: {same}")
            if wrong or not same:
                print(f"FAILED: {'; '.join(wrong) or 'the audit from its hash tables flags other pairs'}")
                failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
