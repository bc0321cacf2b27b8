"""How time and memory grow with the number of images: 1,000 to 100,000.

    python benchmarks/scale.py                          # 1,000, 10,000 and 100,000 images
    python benchmarks/scale.py --sizes 1000 5000 --workers 2
    python benchmarks/scale.py --sizes 2000 --workers 1 2 --runs 3   # what a second worker gains
    python benchmarks/scale.py --photos --sizes 91 910 --workers 1 2 --runs 3   # on photographs

Generates distinct photo-like images (256x256 JPEG, generated once into --data and reused),
or with --photos takes OpenCV's 91 sample photographs (benchmarks/photos.py) and, past the
91, cuts more from them (see cut_photo). Then runs issue 9's job on the first N of them as a
whole process, `python -m harness run`, report included (4 edits: JPEG 50, downscale 0.5, box
blur 3, centre crop 90%; ImageHash's pHash, aHash and dHash; a seeded sample of 100,000 pairs
of different images as impostors; thresholds at 1% false positives), then rebuilds the report
with `python -m harness report`. It prints wall time, time per image, CPU time (of the process
and the processes it waited for; the system's share of it apart) and peak memory (the largest
resident size of a single process among the run and its workers, from the operating system's
accounting, the run started by a small launcher so that the peak is its own: benchmarks/peak.py) for
each size, and the ratio of each peak to the first. A run that exits with status 1 (some images could
not be read, edited or hashed) stops the script, saying how many: its figure would be for less work. With several --workers values, each size runs with each value in turn,
--runs times (so a slow spell of a shared machine hits each alike); it prints each value's
median and, per run, the time of each against the first value's, and the bound no sharing of
the work can beat: the CPU time spread over the usable cores, against the first value's time.
With several values each size starts with one untimed run (cold files and bytecode are not one
value's alone), and every other run takes the values in the reverse order.
Thread settings in the environment (OPENCV_FOR_THREADS_NUM=1, say) reach the timed runs, and the
header names them. A benchmark prints figures; nothing here asserts.
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
import photos
from timing import child_environment, cpu_bounds, environment_note, measured, usable_cores

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


def fill(folder: str, count: int, extension, write) -> int:
    """Images 000000 ... up to `count` in `folder` (a subfolder per thousand), keeping those already
    there: write(number, path) makes each missing one, named with extension(number). Returns how
    many were made."""
    made = 0
    for number in range(count):
        path = os.path.join(folder, f"{number // 1000:03d}", f"{number:06d}{extension(number)}")
        if os.path.exists(path):
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write(number, path)
        made += 1
    return made


def generate(folder: str, count: int) -> None:
    """Images 000000.jpg ... up to `count`, keeping those already there."""
    started = time.perf_counter()
    made = fill(folder, count, lambda number: ".jpg",
                lambda number, path: cv2.imwrite(path, scene(number), [cv2.IMWRITE_JPEG_QUALITY, 90]))
    if made:
        print(f"generated {made} images in {time.perf_counter() - started:.0f} s", flush=True)


def cut_photo(image: np.ndarray, cut: int) -> np.ndarray:
    """The `cut`-th image cut from a photograph (cut >= 1): a window of 70 to 95% of each side at a
    seeded place, mirrored every other cut. Its pixels differ from the photograph's and from every
    other cut's, so the harness counts it as an image of its own, and it keeps the photograph's
    content and about its size (what a photograph costs to decode, edit and hash)."""
    rng = np.random.default_rng(cut)
    rows, cols = image.shape[:2]
    fraction = rng.uniform(0.70, 0.95)
    height, width = max(1, round(rows * fraction)), max(1, round(cols * fraction))
    top, left = int(rng.integers(0, rows - height + 1)), int(rng.integers(0, cols - width + 1))
    window = image[top:top + height, left:left + width]
    return np.ascontiguousarray(window[:, ::-1] if cut % 2 else window)


def from_photos(folder: str, sources: list[str], count: int) -> None:
    """Images 000000 ... up to `count` (those already there are kept): the photographs themselves,
    copied as they are, then for each further round over them one cut each (cut_photo), written in
    the photograph's own format (JPEG at quality 95, or PNG). They stay outside the project: the
    photographs' licences vary."""
    def source(number: int) -> str:
        return sources[number % len(sources)]

    def write(number: int, path: str) -> None:
        if number < len(sources):
            shutil.copyfile(source(number), path)
        else:
            image = cv2.imread(source(number), cv2.IMREAD_UNCHANGED)
            cv2.imwrite(path, cut_photo(image, number // len(sources)), [cv2.IMWRITE_JPEG_QUALITY, 95])

    started = time.perf_counter()
    made = fill(folder, count, lambda number: os.path.splitext(source(number))[1].lower(), write)
    if made:
        print(f"made {made} images from {len(sources)} photographs in {time.perf_counter() - started:.0f} s",
              flush=True)


def measure(command: list[str], environment: dict) -> tuple[float, float, float, float]:
    """Wall seconds; the peak resident MiB of the largest single process among the command and the
    worker processes it started; and CPU seconds (user + system), and system seconds alone, of the
    command and the processes it waited for (its workers, the report's second process): what the
    kernel reports for a waited-for process, the command started by a small launcher (timing.measured)
    so that its peak is its own, not this process's. System time is mostly the kernel's share of
    threads waking each other (OpenCV's thread pool), of pipes to the workers and of file reads.

    Any status but 0 stops the script: 1 (some images, edits or hashes failed) says how many, from
    the run's errors.csv; a figure for a run that skipped work is not a figure for the job."""
    usage, done = measured(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment)
    if usage.status == 1 and "--out" in command:
        out = command[command.index("--out") + 1]
        sys.exit(f"error: {' '.join(command)} exited with status 1: {failures(out)}; a figure for a run that "
                 "skipped them is not issue 9's job, so none is printed")
    if usage.status != 0:
        sys.exit(f"{' '.join(command)} failed (status {usage.status}):\n{done.stderr.decode(errors='replace')}")
    return usage.wall, usage.peak_mib, usage.cpu, usage.system


def failures(out: str) -> str:
    """What a run that exited with status 1 could not do, from its errors.csv (one row per image, edit
    or hash that failed; a failed distance, the rest of what status 1 counts, has its row in
    distances.csv)."""
    import csv

    try:
        with open(os.path.join(out, "errors.csv"), newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        return f"its errors.csv could not be read ({exc})"
    if not rows:
        return f"no row in {out}/errors.csv: some distances failed (their error column in distances.csv)"
    images = {row["image"] for row in rows}
    return (f"{len(rows)} failure(s) over {len(images)} image(s) (see {out}/errors.csv), the first: "
            f"{rows[0]['reason']}")  # the reason names the image


def median_pixels(folder: str, count: int) -> int:
    """The median of the first `count` images' pixels (their headers, read with Pillow); a file whose
    header Pillow cannot read is left out of the median (the run reports it in errors.csv)."""
    from PIL import Image

    paths = sorted(os.path.join(root, name) for root, _, names in os.walk(folder) for name in names)[:count]
    sizes = []
    for path in paths:
        try:
            with Image.open(path) as image:
                sizes.append(image.size[0] * image.size[1])
        except (OSError, SyntaxError, ValueError):  # Pillow's errors for an unreadable or unknown header
            continue
    return round(statistics.median(sizes)) if sizes else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--photos", nargs="?", const="", metavar="FOLDER",
                        help="use OpenCV's sample photographs (FOLDER, else as benchmarks/photos.py finds them), "
                             "and cuts of them past the 91, instead of generated images")
    parser.add_argument("--data", help="where the images are kept between runs (default: harness-scale-images, "
                                       "or harness-scale-photos with --photos, in the temporary folder)")
    parser.add_argument("--workers", nargs="+", default=["auto"],
                        help="as run's --workers (default auto: one per core); with several values, each size "
                             "runs with each of them in turn and their times are compared with the first's")
    parser.add_argument("--runs", type=int, default=1,
                        help="runs per size and --workers value, taken in turn (1); medians are printed")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.photos is None:
        data = args.data or os.path.join(tempfile.gettempdir(), "harness-scale-images")
        generate(data, max(args.sizes))
        images = "N generated 256x256 JPEGs"
    else:
        folder = photos.folder_or_exit(args.photos or None)
        sources = photos.photo_paths_in(folder)
        data = args.data or os.path.join(tempfile.gettempdir(), "harness-scale-photos")
        from_photos(data, sources, max(args.sizes))
        images = (f"N images: the {len(sources)} photographs of {folder}, then cuts of them (a median of "
                  f"{median_pixels(data, max(args.sizes)):,} pixels over the first {max(args.sizes):,})")
    print(f"issue 9's job, --workers {' / '.join(args.workers)}, on {images} "
          f"(whole process, report included{'; median of ' + str(args.runs) + ' runs' if args.runs > 1 else ''})")
    print(environment_note())
    environment = child_environment()
    first_peak = None
    with tempfile.TemporaryDirectory() as scratch:
        for count in args.sizes:
            config = os.path.join(scratch, f"scale{count}.yaml")
            with open(config, "w") as handle:
                handle.write(CONFIG.format(folder=data, count=count))
            walls = {workers: [] for workers in args.workers}
            cpus = {workers: [] for workers in args.workers}
            systems = {workers: [] for workers in args.workers}
            peaks = dict.fromkeys(args.workers, 0.0)
            out = os.path.join(scratch, f"out{count}")

            def run(workers):
                shutil.rmtree(out, ignore_errors=True)  # each run starts from nothing
                return measure([sys.executable, "-m", "harness", "run", config, "--out", out, "--quiet", "--no-cache",
                                "--workers", str(workers)], environment)

            if len(args.workers) > 1:  # untimed: the first timed run would pay cold files and bytecode alone
                run(args.workers[0])
            for number in range(args.runs):
                # in turn, so that a slow spell of the machine hits each alike, in the other order every other run
                for workers in args.workers[::-1] if number % 2 else args.workers:
                    wall, peak, cpu, system = run(workers)
                    walls[workers].append(wall)
                    cpus[workers].append(cpu)
                    systems[workers].append(system)
                    peaks[workers] = max(peaks[workers], peak)
            rebuild, rebuild_peak, _, _ = measure([sys.executable, "-m", "harness", "report", out], environment)
            long = sorted(name for name in os.listdir(out) if name.startswith(("distances", "impostors")))
            for workers in args.workers:
                wall, peak = statistics.median(walls[workers]), peaks[workers]
                first_peak = first_peak or peak
                which = f" | --workers {workers}" if len(args.workers) > 1 else ""
                cpu, system = statistics.median(cpus[workers]), statistics.median(systems[workers])
                print(f"{count:>7} images{which} | run {wall:7.1f} s ({1000 * wall / count:5.1f} ms/image), "
                      f"CPU {cpu:7.1f} s (system {system:5.1f} s) | peak "
                      f"{peak:6.0f} MiB ({peak / first_peak:4.2f}x the first) | report rebuilt in {rebuild:5.1f} s, "
                      f"peak {rebuild_peak:5.0f} MiB | {', '.join(long)}", flush=True)
            base = args.workers[0]
            for workers in args.workers[1:]:
                ratios = [x / y for x, y in zip(walls[workers], walls[base])]
                ratio = statistics.median(ratios)
                print(f"{count:>7} images | --workers {workers} / --workers {base}: {ratio:.2f}x the time, "
                      f"{1 / ratio:.2f}x faster (median of the per-run ratios {', '.join(f'{r:.2f}' for r in ratios)})",
                      flush=True)
                bounds = cpu_bounds(cpus[workers], walls[base])
                print(f"{count:>7} images | --workers {workers}'s CPU time / {usable_cores()} cores / --workers "
                      f"{base}'s time: {statistics.median(bounds):.2f}x (per run "
                      f"{', '.join(f'{b:.2f}' for b in bounds)}): no sharing of the work goes below it", flush=True)


if __name__ == "__main__":
    main()
