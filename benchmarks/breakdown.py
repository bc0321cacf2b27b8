"""Where a run's time goes, per image: decode, transform, hash and bookkeeping, against the floor of
the same library calls made directly.

    python benchmarks/breakdown.py [PHOTOS_DIR]     # issue 9's job on OpenCV's 91 sample photographs

Runs the job of benchmarks/configs/issue9_job.yaml in this process with one worker and no cache,
timing each stage where the runner calls it (the decoder, each transform chain, each hasher's batch);
bookkeeping is the rest of the run (reading files, the cache's digests, distances, tables, impostors
and metrics). Then it makes the same library calls alone, the ones the harness makes for this job
and nothing else: cv2.imdecode with the harness's flags; the four edits as the harness's transforms
make them (JPEG round trip, cv2.resize with INTER_LINEAR to int(side * 0.5), cv2.blur, the centred
window's copy); and per variant one gray PIL image, made as the harness makes the one it shares
between ImageHash's functions (cv2 BGR -> RGBA, Pillow's RGBA -> L), given to the three functions.
It checks that those calls give the run's distances for every image, edit and hasher (else it stops:
the two would not be the same work), and prints both per image, the report and the imports as
whole-run costs, and from them the best that two workers can do (they share the image work only).
A benchmark prints figures; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from photos import folder_or_exit, harness_images, photo_paths_in  # noqa: E402
from timing import child_environment, environment_note  # noqa: E402

CONFIG = os.path.join(ROOT, "benchmarks", "configs", "issue9_job.yaml")


class Timer:
    def __init__(self):
        self.seconds = defaultdict(float)

    def wrap(self, owner, name: str, stage: str):
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - started
        setattr(owner, name, timed)


def harness_stages(folder: str):
    from harness import api, imagework, report
    from harness.hashers.base import Hasher

    import harness.impostors  # noqa: F401  (pandas: imported by the run when it makes its tables; timed apart, below)
    import harness.metrics  # noqa: F401

    timer = Timer()
    timer.wrap(imagework, "decode_source", "decode")
    timer.wrap(imagework, "apply_chain", "transform")
    timer.wrap(Hasher, "hash_images", "hash")
    started = time.perf_counter()
    results = api.evaluate(CONFIG, images=harness_images(folder), workers=1)
    run = time.perf_counter() - started
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        report.write(results, os.path.join(out, "report"))
        written = time.perf_counter() - started
    return timer.seconds, run, written, results


# issue9_job.yaml's four edits, each as the harness's transform makes it (harness/transforms: codecs.jpeg,
# geometry.scale at its default interpolation, filters.blur, geometry.center_crop), keyed by its family.
def _jpeg(image):
    import cv2

    return cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 50])[1], cv2.IMREAD_COLOR)


def _scale(image):
    import cv2

    height, width = image.shape[:2]  # the harness rounds the size down (int), at least 1 px
    return cv2.resize(image, (max(1, int(width * 0.5)), max(1, int(height * 0.5))), interpolation=cv2.INTER_LINEAR)


def _blur(image):
    import cv2

    return cv2.blur(image, (3, 3))


def _centre_crop(image):
    rows, cols = image.shape[:2]
    width, height = max(1, round(cols * 0.9)), max(1, round(rows * 0.9))
    left, top = int((cols - width) * 0.5), int((rows - height) * 0.5)
    return image[top:top + height, left:left + width].copy()


EDITS = {"jpeg": _jpeg, "scale": _scale, "blur": _blur, "crop": _centre_crop}
HASHERS = ("phash", "average_hash", "dhash")


def floor_stages(folder: str) -> tuple[dict, dict]:
    """The same work with the libraries directly: what no tool can do faster in one process. Returns
    the seconds per stage and each (path, family, hasher)'s distance, for the check against the run."""
    import cv2
    import imagehash
    import numpy as np
    from PIL import Image

    functions = [getattr(imagehash, name) for name in HASHERS]
    seconds = defaultdict(float)
    distances = {}
    for path in photo_paths_in(folder):
        with open(path, "rb") as handle:
            data = handle.read()
        started = time.perf_counter()
        # harness.images reads with these flags (ANYDEPTH keeps 16-bit samples; 8-bit ones read the same)
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
        seconds["decode"] += time.perf_counter() - started

        started = time.perf_counter()
        variants = [image] + [edit(image) for edit in EDITS.values()]
        seconds["transform"] += time.perf_counter() - started

        started = time.perf_counter()
        hashes = []
        for variant in variants:
            # One gray image per variant, shared by the three functions, made as harness/hashers/layouts.py
            # makes it (each function's own convert("L") then copies an L image).
            rgba = cv2.cvtColor(variant, cv2.COLOR_BGR2RGBA)
            gray = Image.frombuffer("RGBA", (rgba.shape[1], rgba.shape[0]), rgba, "raw", "RGBA", 0, 1).convert("L")
            hashes.append([function(gray) for function in functions])
        seconds["hash"] += time.perf_counter() - started
        for family, edited in zip(EDITS, hashes[1:]):
            for name, original, copy in zip(HASHERS, hashes[0], edited):
                distances[os.path.realpath(path), family, f"imagehash.{name}"] = float(original - copy)
    return seconds, distances


def check_same_work(results, floor: dict) -> str:
    """What was compared, or the script stops: the floor's calls must give the run's distances."""
    origins = dict(zip(results.images["image"], (os.path.realpath(o) for o in results.images["origin"])))
    ran = {(origins[row.image], row.family, row.hasher): row.distance
           for row in results.distances.itertuples() if row.family in EDITS}
    if ran != floor:
        differ = sorted(key for key in ran.keys() | floor.keys() if ran.get(key) != floor.get(key))
        sys.exit(f"error: the library calls alone did not give the run's distances for {len(differ)} of "
                 f"{len(ran)} (image, edit, hasher), first {differ[0]}: {ran.get(differ[0])} in the run, "
                 f"{floor.get(differ[0])} alone; they are not the same work")
    return f"same distances as the run for all {len(ran):,} (image, edit, hasher)"


def import_seconds(modules: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {modules}"], check=True, env=child_environment())
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", metavar="PHOTOS_DIR",
                        help="OpenCV's sample photographs (default: $OPENCV_SAMPLE_DATA, else opencv-doc's folder)")
    folder = folder_or_exit(parser.parse_args().folder)
    stages, run, written, results = harness_stages(folder)
    floor, distances = floor_stages(folder)
    checked = check_same_work(results, distances)
    images = len(results.images)
    bookkeeping = run - sum(stages.values())
    print(f"the same calls alone: {checked}")
    print(f"issue 9's job on {images} photographs, one process, no cache: ms per image (harness | same calls alone)")
    for stage in ("decode", "transform", "hash"):
        mine, theirs = 1000 * stages[stage] / images, 1000 * floor[stage] / images
        print(f"  {stage:<12} {mine:7.1f} | {theirs:7.1f}   ({mine / theirs:4.2f}x)")
    print(f"  {'bookkeeping':<12} {1000 * bookkeeping / images:7.1f} |     0.0   (reading, digests, cache, distances, "
          f"impostors, metrics)")
    print(f"  {'run':<12} {1000 * run / images:7.1f} | {1000 * sum(floor.values()) / images:7.1f}")
    print(f"report (tables, figures, summary): {written:5.2f} s for the run")
    imports = import_seconds('harness.api, harness.report, harness.figures')
    print(f"imports: harness's run and report {imports:4.2f} s; "
          f"cv2, imagehash {import_seconds('cv2, imagehash'):4.2f} s (whole processes, Python's start included)")
    # Two workers share the run's image work only: the imports and the report (already drawn by two
    # processes) stay what they are, so this is the best `--workers 2` can do against one worker.
    one, two = imports + run + written, imports + run / 2 + written
    print(f"two workers, at best (image work halved, imports and report unchanged): {two / one:.2f}x the time "
          f"of one worker ({one:.2f} s -> {two:.2f} s), {one / two:.2f}x faster")
    print(environment_note())


if __name__ == "__main__":
    main()
