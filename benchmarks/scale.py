"""How time and memory grow with the number of images: 1,000 to 100,000.

    python benchmarks/scale.py                          # 1,000, 10,000 and 100,000 images
    python benchmarks/scale.py --sizes 1000 5000 --workers 2
    python benchmarks/scale.py --sizes 2000 --workers 1 2 --runs 3   # what a second worker gains

Generates distinct photo-like images (256x256 JPEG, generated once into --data and reused),
then runs issue 9's job on the first N of them as a whole process, `python -m harness run`,
report included (4 edits: JPEG 50, downscale 0.5, box blur 3, centre crop 90%; ImageHash's
pHash, aHash and dHash; a seeded sample of 100,000 pairs of different images as impostors;
thresholds at 1% false positives), then rebuilds the report with `python -m harness report`.
It prints wall time, time per image and peak memory (the largest resident size of the process
and its children, from the operating system's accounting) for each size, and the ratio of each
peak to the first. With several --workers values, each size runs with each value in turn,
--runs times (so a slow spell of a shared machine hits each alike); it prints each value's
median and, per run, the time of each against the first value's. A benchmark prints figures;
nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np
from timing import child_environment, environment_note

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIG = """
name: scale
images: [{folder}]
limit: {count}
seed: 0
hashers: [imagehash.phash, imagehash.average_hash, imagehash.dhash]
impostors: {{max_pairs: 100000, transformed: false}}
detection: {{fpr: [0.01]}}
report: {{previews: false}}
sweeps:
  - {{family: jpeg, b: {{jpeg: {{quality: 50}}}}}}
  - {{family: downscale, b: {{scale: {{factor: 0.5}}}}}}
  - {{family: blur, b: {{blur: {{kernel: 3}}}}}}
  - {{family: crop, b: {{center_crop: {{fraction: 0.9}}}}}}
"""


def scene(seed: int, size: int = 256) -> np.ndarray:
    """A distinct photo-like image per seed: a smooth random field and a few discs."""
    rng = np.random.default_rng(seed)
    image = cv2.resize(rng.integers(0, 256, (5, 5, 3), dtype=np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
    for _ in range(6):
        centre = tuple(int(c) for c in rng.integers(0, size, 2))
        cv2.circle(image, centre, int(rng.integers(8, size // 4)), tuple(int(c) for c in rng.integers(0, 256, 3)), -1)
    return image


def generate(folder: str, count: int) -> None:
    """Images 000000.jpg ... up to `count`, keeping those already there."""
    os.makedirs(folder, exist_ok=True)
    started = time.perf_counter()
    made = 0
    for number in range(count):
        path = os.path.join(folder, f"{number // 1000:03d}", f"{number:06d}.jpg")
        if os.path.exists(path):
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        cv2.imwrite(path, scene(number), [cv2.IMWRITE_JPEG_QUALITY, 90])
        made += 1
    if made:
        print(f"generated {made} images in {time.perf_counter() - started:.0f} s", flush=True)


def measure(command: list[str], environment: dict) -> tuple[float, float]:
    """Wall seconds, and the peak resident MiB of the largest single process among the command and
    the worker processes it started (what the kernel reports for a waited-for process)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    stderr = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        sys.exit(f"{' '.join(command)} failed:\n{stderr}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "harness-scale-images"),
                        help="where the generated images are kept between runs")
    parser.add_argument("--workers", nargs="+", default=["auto"],
                        help="as run's --workers (default auto: one per core); with several values, each size "
                             "runs with each of them in turn and their times are compared with the first's")
    parser.add_argument("--runs", type=int, default=1,
                        help="runs per size and --workers value, taken in turn (1); medians are printed")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    generate(args.data, max(args.sizes))
    print(f"issue 9's job, --workers {' / '.join(args.workers)}, on N generated 256x256 JPEGs "
          f"(whole process, report included{'; median of ' + str(args.runs) + ' runs' if args.runs > 1 else ''})")
    print(environment_note())
    environment = child_environment()
    first_peak = None
    with tempfile.TemporaryDirectory() as scratch:
        for count in args.sizes:
            config = os.path.join(scratch, f"scale{count}.yaml")
            with open(config, "w") as handle:
                handle.write(CONFIG.format(folder=args.data, count=count))
            walls = {workers: [] for workers in args.workers}
            peaks = dict.fromkeys(args.workers, 0.0)
            for _ in range(args.runs):
                for workers in args.workers:  # in turn, so that a slow spell of the machine hits each alike
                    out = os.path.join(scratch, f"out{count}")
                    shutil.rmtree(out, ignore_errors=True)  # each run starts from nothing
                    wall, peak = measure([sys.executable, "-m", "harness", "run", config, "--out", out, "--quiet",
                                          "--no-cache", "--workers", str(workers)], environment)
                    walls[workers].append(wall)
                    peaks[workers] = max(peaks[workers], peak)
            rebuild, rebuild_peak = measure([sys.executable, "-m", "harness", "report", out], environment)
            long = sorted(name for name in os.listdir(out) if name.startswith(("distances", "impostors")))
            for workers in args.workers:
                wall, peak = statistics.median(walls[workers]), peaks[workers]
                first_peak = first_peak or peak
                which = f" | --workers {workers}" if len(args.workers) > 1 else ""
                print(f"{count:>7} images{which} | run {wall:7.1f} s ({1000 * wall / count:5.1f} ms/image) | peak "
                      f"{peak:6.0f} MiB ({peak / first_peak:4.2f}x the first) | report rebuilt in {rebuild:5.1f} s, "
                      f"peak {rebuild_peak:5.0f} MiB | {', '.join(long)}", flush=True)
            base = args.workers[0]
            for workers in args.workers[1:]:
                ratios = [x / y for x, y in zip(walls[workers], walls[base])]
                ratio = statistics.median(ratios)
                print(f"{count:>7} images | --workers {workers} / --workers {base}: {ratio:.2f}x the time, "
                      f"{1 / ratio:.2f}x faster (median of the per-run ratios {', '.join(f'{r:.2f}' for r in ratios)})",
                      flush=True)

if __name__ == "__main__":
    main()
