"""Where a run's time goes, per image: decode, transform, hash and bookkeeping, against the floor of
the same library calls made directly.

    python benchmarks/breakdown.py [PHOTOS_DIR]     # issue 9's job on OpenCV's 91 sample photographs

Runs the job of benchmarks/configs/issue9_job.yaml in this process with one worker and no cache,
timing each stage where the runner calls it (the decoder, each transform chain, each hasher's batch);
bookkeeping is the rest of the run (reading files, the cache's digests, distances, tables, impostors
and metrics). Then it makes the same library calls alone, as a plain script would (cv2.imdecode;
the four edits with cv2; ImageHash's three functions on one PIL image per variant), and prints both
per image, and the report and the imports as whole-run costs, and from them the best that two
workers can do (they share the image work only). A benchmark prints figures; nothing here asserts.
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


def harness_stages(folder: str) -> tuple[dict, float, float, int]:
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
    return timer.seconds, run, written, len(results.images)


def floor_stages(folder: str) -> dict:
    """The same work with the libraries directly: what no tool can do faster in one process."""
    import cv2
    import imagehash
    import numpy as np
    from PIL import Image

    seconds = defaultdict(float)
    for path in photo_paths_in(folder):
        with open(path, "rb") as handle:
            data = handle.read()
        started = time.perf_counter()
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        seconds["decode"] += time.perf_counter() - started

        started = time.perf_counter()
        height, width = image.shape[:2]
        variants = [image, cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 50])[1], cv2.IMREAD_COLOR),
                    cv2.resize(image, (max(1, round(width * 0.5)), max(1, round(height * 0.5))),
                               interpolation=cv2.INTER_AREA),
                    cv2.blur(image, (3, 3))]
        crop_h, crop_w = round(height * 0.9), round(width * 0.9)
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
        variants.append(image[top:top + crop_h, left:left + crop_w].copy())
        seconds["transform"] += time.perf_counter() - started

        started = time.perf_counter()
        for variant in variants:
            pil = Image.fromarray(cv2.cvtColor(variant, cv2.COLOR_BGR2RGB))
            for function in (imagehash.phash, imagehash.average_hash, imagehash.dhash):
                function(pil)
        seconds["hash"] += time.perf_counter() - started
    return seconds


def import_seconds(modules: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {modules}"], check=True, env=child_environment())
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", metavar="PHOTOS_DIR",
                        help="OpenCV's sample photographs (default: $OPENCV_SAMPLE_DATA, else opencv-doc's folder)")
    folder = folder_or_exit(parser.parse_args().folder)
    stages, run, written, images = harness_stages(folder)
    floor = floor_stages(folder)
    bookkeeping = run - sum(stages.values())
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
