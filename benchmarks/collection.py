"""How the cost of a collection run grows with the number of images.

    python benchmarks/collection.py                 # 100 and 1,000 images, then 10,000 hashes
    python benchmarks/collection.py --sizes 100 300 --hashers aHash pHash PDQ

Generates distinct photo-like images (256x256 PNG) into a temporary folder, runs
a config of four edits plus the shift with transformed impostors, and prints the
wall time of each stage and the peak memory. Then it times the impostor distances
alone for 10,000 images' hashes: every pair (50 million) in row blocks, and the
default sampled 100,000 pairs. A benchmark prints figures; nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness import impostors, report, runner  # noqa: E402
from harness.config import parse_config  # noqa: E402
from harness.hashers import HASHERS  # noqa: E402

CONFIG = """
name: benchmark
images: [{folder}]
hashers: {hashers}
impostors: {{max_pairs: 100000, transformed: true, per_variant: 5}}
report: {{previews: false}}
sweeps:
  - family: jpeg
    b: {{jpeg: {{quality: 50}}}}
  - family: blur
    b: {{blur: {{kernel: 5}}}}
  - family: scale
    b: {{scale: {{factor: 0.5}}}}
  - family: gamma
    b: {{gamma: {{gamma: 1.5}}}}
  - family: shift
    a: {{center_crop: {{fraction: 0.5}}}}
    b: {{center_crop: {{fraction: 0.5, dx: 0.03, dy: 0.03}}}}
"""


def scene(seed: int, size: int = 256) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = cv2.resize(rng.integers(0, 256, (5, 5, 3), dtype=np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
    for _ in range(5):
        centre = tuple(int(c) for c in rng.integers(0, size, 2))
        cv2.circle(image, centre, int(rng.integers(10, size // 4)), tuple(int(c) for c in rng.integers(0, 256, 3)), -1)
    return image


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_collection(count: int, hashers: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        for seed in range(count):
            cv2.imwrite(os.path.join(folder, f"{seed:05d}.png"), scene(seed))
        made = time.perf_counter() - start
        config = parse_config(__import__("yaml").safe_load(CONFIG.format(folder=folder, hashers=hashers)),
                              "benchmark.yaml")
        start = time.perf_counter()
        result = runner.run(config, progress=False)
        computed = time.perf_counter() - start
        start = time.perf_counter()
        report.write_run(result, os.path.join(folder, "out"), {"command": ["benchmark"]})
        written = time.perf_counter() - start
    genuine = len(result.distances)
    impostors = len(result.impostors)
    print(f"{count:>6} images | run {computed:7.2f} s ({1000 * computed / count:6.1f} ms/image) | "
          f"report {written:6.2f} s | {genuine:>7} genuine + {impostors:>8} impostor distances | "
          f"peak RSS {peak_mib():7.0f} MiB | (images generated in {made:.1f} s)")


def time_impostors(count: int, names: list[str]) -> None:
    rng = np.random.default_rng(0)
    images = [scene(seed, 64) for seed in range(200)]  # real hashes, tiled to `count` rows
    for name in names:
        hasher = HASHERS.get(name)()
        hasher.prepare()
        base = hasher.hash_batch(images)
        hashes = base[rng.integers(0, len(base), count)]
        start = time.perf_counter()
        total = 0.0
        for row in range(0, count, 256):  # every pair, in row blocks: memory stays bounded
            total += hasher.cross_distance(hashes[row:row + 256], hashes).sum()
        every = time.perf_counter() - start
        start = time.perf_counter()
        i, j = impostors.sample_pairs(count, 100_000, rng)
        impostors.pair_distances(hasher, hashes, hashes, i, j)
        sampled = time.perf_counter() - start
        pairs = count * count
        print(f"{name:>8}: {count} x {count} = {pairs / 1e6:.0f}M distances in {every:6.2f} s "
              f"({pairs / every / 1e6:6.1f} M/s); 100,000 sampled pairs in {1000 * sampled:6.1f} ms "
              f"| peak RSS {peak_mib():7.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000], help="collection sizes to time")
    parser.add_argument("--hashers", nargs="+", default=["aHash", "pHash"], help="hashers to run")
    parser.add_argument("--impostor-images", type=int, default=10_000, help="hashes for the impostor timing")
    args = parser.parse_args()
    print(f"collection runs with {', '.join(args.hashers)}; 5 pairs per image, 5 transformed impostors per edit")
    for count in args.sizes:
        time_collection(count, args.hashers)
    print("impostor distances alone")
    time_impostors(args.impostor_images, args.hashers)


if __name__ == "__main__":
    main()
