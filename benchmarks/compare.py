"""Whole-process wall time of the harness against plain scripts doing the same job, and of its options.

    python benchmarks/compare.py                       # all seven comparisons, 5 timed pairs each
    python benchmarks/compare.py --only a b --runs 9   # some of them, more pairs
    python benchmarks/compare.py --photos /path/to/opencv-doc/examples/data

  (a) the issue-9 job (benchmarks/configs/issue9_job.yaml) against benchmarks/handwritten_job.py,
      each as a user starts it: the harness with its default --workers (one per core from 32
      images on), the script in one process
  (f) (a) on one core each: the harness with --workers 1 against the script
  (g) (a) on two processes each: the harness with --workers 2 against the script with --workers 2
  (b) the article's 40 pairs with aHash and pHash against benchmarks/article_bare.py
  (c) the issue-9 job with --workers 2 against --workers 1
  (d) the issue-9 job run again over a full hash cache against a first run
  (e) (b) with the bare script drawing the same three figures too, with matplotlib directly
      (article_bare.py --figures): issue 9's "figures included", read as the script's figures

Each side is a separate process, started as printed, timed from start to exit, report
included. The two sides alternate, A B A B ..., after one untimed warm-up pair (it fills
the OS file cache and checks that both sides give the same results; --no-warm-up times
that pair too, a quick check that the script works, as the tests run it). The harness runs of
(a), (b), (c) and (e) use --no-cache, so each does the whole job; (d) runs one command twice,
B then A: the first run starts without its output folder and writes the hash cache, the
rerun finds that cache full. (b) also times, after each pair, a process that only imports
the libraries the report is made with (cv2, pandas, pyarrow, matplotlib): its floor. (c)
also prints its bound: A's CPU time spread over the usable cores, against B's wall time; two
workers cannot beat it however they share the work.
Printed per comparison: the median wall time and CPU time of each side, the median of the
per-pair ratios A/B with their range, and each side's peak RSS (the largest ru_maxrss over
its runs, from os.wait4: the largest single process of the run's process tree, not their
sum; each run started by the small launcher benchmarks/peak.py, so that its peak is its own and
not this script's). The commands run with Python's defaults (benchmarks/timing.py: PYTHONDONTWRITEBYTECODE,
where set, is unset). Run from anywhere; the commands run in the repository root. Nothing
here asserts a speed: it prints figures.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Callable

import photos
from timing import child_environment, cpu_bounds, environment_note, measured, usable_cores

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOB_CONFIG = "benchmarks/configs/issue9_job.yaml"
ARTICLE_CONFIG = "configs/lena.yaml"
ARTICLE_IMAGE = "resources/lena_std.tif"  # read by both sides of (b) when present (never committed)
REPORT_IMPORTS = "import cv2, pandas, pyarrow.parquet, matplotlib.figure, matplotlib.backends.backend_agg"
ORDER = "afgbcde"  # the comparisons, in the order they run and print
COMPARED_FILES = ("distances.csv", "impostors.csv", "thresholds.csv", "detection.csv", "table.csv")


@dataclass
class Side:
    label: str
    argv: list[str]
    fresh: str | None = None  # a folder deleted before each run (not timed), so the run starts from nothing
    # (output folder, copy): after the warm-up run, its output folder is copied, for a check
    # that reads it after the other side has replaced it
    keep: tuple[str, str] | None = None
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    peak_mib: float = 0.0

    def command(self) -> str:
        return shlex.join(self.argv)


@dataclass
class Comparison:
    key: str
    title: str
    a: Side
    b: Side
    same_results: Callable[[], str]  # after the warm-up pair: what was compared, or raises Mismatch
    target: float | None = None  # issue 9's limit on A/B, when it sets one
    b_first: bool = False  # each pair runs B, then A (A needs what B leaves)
    # timed after each pair, against B: a lower bound that any run of A's job must pay
    floor: Side | None = None
    # print A's CPU time spread over the usable cores against B's wall time: no schedule of A's
    # work can make A/B smaller (what (c) asks of two workers needs this bound well under its target)
    cpu_bound: bool = False


class Mismatch(Exception):
    """The two sides of a comparison did not produce the same results."""


class Failed(Exception):
    """A timed command exited with a non-zero status."""


def run_once(side: Side, log_path: str, timed: bool) -> None:
    """Run the side's command as a child process; record its wall time, CPU time and peak RSS."""
    if side.fresh:
        shutil.rmtree(side.fresh, ignore_errors=True)
    with open(log_path, "wb") as log:
        usage, _ = measured(side.argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=child_environment())
    if usage.status != 0:
        with open(log_path, errors="replace") as log:
            tail = log.read()[-2000:]
        raise Failed(f"{side.label} exited with status {usage.status}: {side.command()}\n{tail}")
    if timed:
        side.walls.append(usage.wall)
        side.cpus.append(usage.cpu)  # includes its waited-for children (workers)
        side.peak_mib = max(side.peak_mib, usage.peak_mib)


def measure(comparison: Comparison, runs: int, logs: str, warm_up: bool = True) -> str:
    """One warm-up pair and its result check, then `runs` timed pairs, A then B (or B then A).
    Without `warm_up` (a quick check that the script works, as the tests run it), the first pair is
    timed too and checked: `runs` pairs in all, the first with cold caches."""
    log = os.path.join(logs, comparison.key + ".log")
    pair = (comparison.b, comparison.a) if comparison.b_first else (comparison.a, comparison.b)
    sides = pair + ((comparison.floor,) if comparison.floor else ())
    for side in sides:  # a side two comparisons share
        side.walls, side.cpus, side.peak_mib = [], [], 0.0
    for side in pair:
        run_once(side, log, timed=not warm_up)
        if side.keep:
            shutil.rmtree(side.keep[1], ignore_errors=True)
            shutil.copytree(*side.keep)
    if not warm_up and comparison.floor:
        run_once(comparison.floor, log, timed=True)
    checked = comparison.same_results()
    for _ in range(runs if warm_up else runs - 1):
        for side in sides:
            run_once(side, log, timed=True)
    return checked


# --- result checks: both sides must have done the same job ----------------------------------

def read_csv(path: str) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def job_results_agree(harness_out: str, script_csv: str) -> str:
    """The harness's thresholds and per-edit detection counts equal the hand-written script's."""
    thresholds = {row["hasher"]: row for row in read_csv(os.path.join(harness_out, "thresholds.csv"))}
    detection = {(row["hasher"], row["family"]): row for row in read_csv(os.path.join(harness_out, "detection.csv"))}
    script = read_csv(script_csv)
    for row in script:
        ours = thresholds.get(row["hasher"])
        theirs = detection.get((row["hasher"], row["edit"]))
        if ours is None or theirs is None:
            raise Mismatch(f"the harness has no result for {row['hasher']} / {row['edit']}")
        got = (float(ours["threshold"]), ours["impostor_pairs"], ours["false_matches"],
               theirs["genuine_pairs"], theirs["detected"])
        want = (float(row["threshold"]), row["impostor_pairs"], row["false_matches"],
                row["genuine_pairs"], row["detected"])
        if got != want:
            raise Mismatch(f"{row['hasher']} / {row['edit']}: harness (threshold, impostor pairs, false matches, "
                           f"genuine pairs, detected) = {got}, hand-written script {want}")
    if len(script) != len(detection):
        raise Mismatch(f"the harness has {len(detection)} detection rows, the script {len(script)}")
    return (f"same thresholds, impostor pairs, false matches and detection counts "
            f"({len(thresholds)} hashers x {len(script) // max(1, len(thresholds))} edits)")


def article_results_agree(harness_out: str, script_csv: str) -> str:
    """The harness's table.csv equals the bare script's distances for aHash and pHash, pair by pair."""
    def rows(path):
        return [(r["family"], r["value"], r["aHash"], r["pHash"]) for r in read_csv(path)]

    table, bare = rows(os.path.join(harness_out, "table.csv")), rows(script_csv)
    if table != bare:
        first = next((i for i, (x, y) in enumerate(zip(table, bare)) if x != y), min(len(table), len(bare)))
        raise Mismatch(f"table.csv and the bare script differ at pair {first + 1}: "
                       f"{table[first:first + 1]} against {bare[first:first + 1]} ({len(table)} and {len(bare)} rows)")
    return f"same aHash and pHash distances for all {len(table)} pairs as table.csv"


def figures_drawn(harness_out: str, script_figures: str) -> str:
    """Both sides drew the three figures of the article's run (the harness, in its own places)."""
    expected = [os.path.join(harness_out, name) for name in ("figures/families.png", "figures/heatmap.png",
                                                             "previews.png")]
    expected += [os.path.join(script_figures, name) for name in ("families.png", "heatmap.png", "previews.png")]
    missing = [path for path in expected if not os.path.isfile(path)]
    if missing:
        raise Mismatch(f"figures not drawn: {', '.join(missing)}")
    return "both drew families.png, heatmap.png and previews.png"


def outputs_identical(first: str, second: str) -> str:
    """The harness's tables are byte-identical in two output folders."""
    names = [name for name in COMPARED_FILES if os.path.exists(os.path.join(first, name))]
    for name in names:
        with open(os.path.join(first, name), "rb") as x, open(os.path.join(second, name), "rb") as y:
            if x.read() != y.read():
                raise Mismatch(f"{name} differs between {first} and {second}")
    return f"byte-identical {', '.join(names)}"


# --- the comparisons --------------------------------------------------------------------------

def comparisons(folder: str, work: str) -> dict[str, Comparison]:
    python = sys.executable
    job = [python, "-m", "harness", "run", JOB_CONFIG, "--images", *photos.harness_images(folder)]
    article = [python, "-m", "harness", "run", ARTICLE_CONFIG, "--hashers", "aHash,pHash"]

    def out(name: str) -> str:
        return os.path.join(work, name)

    harness_job = Side("harness", [*job, "--out", out("job"), "--quiet", "--no-cache"], fresh=out("job"))
    script_job = Side("hand-written script",
                      [python, "benchmarks/handwritten_job.py", folder, "--out", out("handwritten_job.csv")])
    script_two = Side("hand-written script --workers 2",
                      [python, "benchmarks/handwritten_job.py", folder, "--out", out("handwritten_job-w2.csv"),
                       "--workers", "2"])
    harness_article = Side("harness", [*article, "--out", out("article"), "--quiet", "--no-cache"],
                           fresh=out("article"))
    script_article = Side("bare OpenCV script",
                          [python, "benchmarks/article_bare.py", "--out", out("article_bare.csv")])
    harness_figures = Side("harness", [*article, "--out", out("article-e"), "--quiet", "--no-cache"],
                           fresh=out("article-e"))
    script_figures = Side("bare OpenCV script + figures",
                          [python, "benchmarks/article_bare.py", "--out", out("article_bare_figures.csv"),
                           "--figures", out("article_bare_figures")], fresh=out("article_bare_figures"))
    # The libraries a report is made with (tables with pandas, figures with matplotlib), imported
    # and nothing else: what the harness's article job pays before any of its own work.
    report_imports = Side("imports alone", [python, "-c", REPORT_IMPORTS])
    two = Side("--workers 2", [*job, "--out", out("job-w2"), "--quiet", "--no-cache", "--workers", "2"],
               fresh=out("job-w2"))
    one = Side("--workers 1", [*job, "--out", out("job-w1"), "--quiet", "--no-cache", "--workers", "1"],
               fresh=out("job-w1"))
    # (d): the same command twice. The first run starts without the folder, so it writes the
    # cache; the rerun finds the folder, and its cache full, as the previous run left it.
    cached = [*job, "--out", out("job-cached"), "--quiet"]
    rerun = Side("rerun, full cache", cached)
    first = Side("first run", cached, fresh=out("job-cached"), keep=(out("job-cached"), out("job-first")))
    return {
        "a": Comparison("a", "the issue-9 job: harness (A) against a hand-written cv2 + imagehash script (B)",
                        harness_job, script_job, lambda: job_results_agree(out("job"), out("handwritten_job.csv")),
                        target=1.0),
        "f": Comparison("f", "the issue-9 job on one core each: harness --workers 1 (A) against the hand-written "
                             "script (B)", one, script_job,
                        lambda: job_results_agree(out("job-w1"), out("handwritten_job.csv"))),
        "g": Comparison("g", "the issue-9 job on two processes each: harness --workers 2 (A) against the hand-written "
                             "script --workers 2 (B)", two, script_two,
                        lambda: job_results_agree(out("job-w2"), out("handwritten_job-w2.csv"))),
        "b": Comparison("b", "the article's 40 pairs, aHash and pHash: harness (A) against a bare OpenCV script (B)",
                        harness_article, script_article,
                        lambda: article_results_agree(out("article"), out("article_bare.csv")), target=3.0,
                        floor=report_imports),
        "c": Comparison("c", "the issue-9 job: --workers 2 (A) against --workers 1 (B)", two, one,
                        lambda: outputs_identical(out("job-w2"), out("job-w1")), cpu_bound=True),
        # B (the first run) goes first in each pair, so the rerun always finds the cache it left.
        "d": Comparison("d", "the issue-9 job: rerun over a full hash cache (A) against a first run (B)",
                        rerun, first, lambda: outputs_identical(out("job-cached"), out("job-first")),
                        b_first=True),
        "e": Comparison("e", "the article's 40 pairs, aHash and pHash: harness (A) against the bare OpenCV script "
                             "drawing the same three figures with matplotlib (B)", harness_figures, script_figures,
                        lambda: article_results_agree(out("article-e"), out("article_bare_figures.csv")) + "; "
                        + figures_drawn(out("article-e"), out("article_bare_figures"))),
    }


# --- printing -------------------------------------------------------------------------------


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    return f"{usable_cores()} usable cores ({cpu}); load average (1 / 5 / 15 min) {load()} at start"


def versions() -> str:
    import cv2
    import imagehash
    import numpy
    import PIL
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip() or "unknown"
    return (f"Python {platform.python_version()}, OpenCV {cv2.__version__}, ImageHash {imagehash.__version__}, "
            f"Pillow {PIL.__version__}, NumPy {numpy.__version__}; harness at git {commit}")


def load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"


def busy_note() -> str:
    """A warning when other processes compete for the cores: wall times then include waiting."""
    usable = usable_cores()
    if hasattr(os, "getloadavg") and os.getloadavg()[1] > usable + 0.5:
        return (f"    warning: the 5-minute load average ({os.getloadavg()[1]:.1f}) exceeds the {usable} cores: other "
                f"processes competed for the CPU, so wall times are inflated and noisy; CPU times much less so")
    return ""


def summary(comparison: Comparison, checked: str, runs: int) -> list[str]:
    a, b = comparison.a, comparison.b
    ratios = [x / y for x, y in zip(a.walls, b.walls)]
    ratio = statistics.median(ratios)
    cpu_ratios = [x / y for x, y in zip(a.cpus, b.cpus)]
    target = ""
    if comparison.target is not None:
        verdict = "met" if ratio <= comparison.target else "not met"
        target = f"; issue 9 asks for at most {comparison.target:.1f}x: {verdict}"
    width = max(len(a.label), len(b.label))
    lines = [f"({comparison.key}) {comparison.title}",
             f"    A: {a.command()}" + (f"    [{a.fresh} deleted before each run]" if a.fresh else ""),
             f"    B: {b.command()}" + (f"    [{b.fresh} deleted before each run]" if b.fresh else ""),
             *(["    order: B, then A, in each pair"] if comparison.b_first else []),
             f"    results: {checked}",
             f"    {'':{width + 4}}  median wall  median CPU (user+sys)  peak RSS"]
    for name, side in (("A", a), ("B", b)):
        lines.append(f"    {name}  {side.label:{width}}  {statistics.median(side.walls):9.2f} s  "
                     f"{statistics.median(side.cpus):17.2f} s  {side.peak_mib:7.0f} MiB")
    lines.append(f"    A/B: median of {runs} per-pair ratios {ratio:.2f}x (min {min(ratios):.2f}x, "
                 f"max {max(ratios):.2f}x){target}")
    lines.append(f"    CPU A/B: median of per-pair ratios {statistics.median(cpu_ratios):.2f}x "
                 f"(min {min(cpu_ratios):.2f}x, max {max(cpu_ratios):.2f}x)")
    if comparison.floor is not None:
        floor = comparison.floor
        floor_ratios = [x / y for x, y in zip(floor.walls, b.walls)]
        lines.append(f"    floor: {floor.label}, timed after each pair: {floor.command()}")
        lines.append(f"    floor/B: median {statistics.median(floor_ratios):.2f}x (min {min(floor_ratios):.2f}x, "
                     f"max {max(floor_ratios):.2f}x; {statistics.median(floor.walls):.2f} s), before any work")
    if comparison.cpu_bound:
        bounds = cpu_bounds(comparison.a.cpus, comparison.b.walls)
        lines.append(f"    bound: A's CPU time spread over the {usable_cores()} usable cores, against B's wall time: "
                     f"median {statistics.median(bounds):.2f}x (min {min(bounds):.2f}x, max {max(bounds):.2f}x); "
                     f"A/B cannot be smaller, however A's work is scheduled")
    lines.append(f"    wall times A: {', '.join(f'{w:.2f}' for w in a.walls)} s")
    lines.append(f"    wall times B: {', '.join(f'{w:.2f}' for w in b.walls)} s")
    lines.append(f"    load average (1 / 5 / 15 min) at the end: {load()}")
    return [line for line in [*lines, busy_note()] if line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--only", nargs="+", choices=ORDER, default=list(ORDER), metavar="X",
                        help=f"the comparisons to run: {' '.join(ORDER)} (default: all)")
    parser.add_argument("--runs", type=int, default=5, help="timed A B pairs per comparison, after a warm-up (5)")
    parser.add_argument("--no-warm-up", dest="warm_up", action="store_false",
                        help="time the first pair too (a quick check that the script works; its figures then "
                        "include a first run's cold caches, so do not quote them)")
    parser.add_argument("--photos", metavar="DIR", help="the folder of OpenCV's sample photographs "
                        f"(default: ${photos.ENV_VAR}, else {photos.PACKAGE_FOLDER})")
    parser.add_argument("--work", metavar="DIR", help="keep the runs' outputs and logs here (default: a "
                        "temporary folder, removed at the end)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    folder = os.path.abspath(photos.folder_or_exit(args.photos))
    if args.work:
        os.makedirs(args.work, exist_ok=True)
    work = os.path.abspath(args.work) if args.work else tempfile.mkdtemp(prefix="harness-compare-")
    order = [key for key in ORDER if key in args.only]
    table = comparisons(folder, work)
    print(f"machine: {machine()}")
    print(f"versions: {versions()}")
    print(environment_note())
    print(f"photographs: {len(photos.photo_paths_in(folder))} in {folder}")
    if "b" in order or "e" in order:
        image = ARTICLE_IMAGE if os.path.exists(os.path.join(ROOT, ARTICLE_IMAGE)) else "builtin:astronaut (stand-in)"
        print(f"article image: {image}")
    print(f"each comparison: {'1 untimed warm-up pair, then ' if args.warm_up else 'no warm-up (--no-warm-up): '}"
          f"{args.runs} timed pairs; commands run in {ROOT}")
    print()
    quotable = []
    try:
        for key in order:
            comparison = table[key]
            checked = measure(comparison, args.runs, work, args.warm_up)
            for line in summary(comparison, checked, args.runs):
                print(line, flush=True)
            print(flush=True)
            a, b = comparison.a, comparison.b
            ratios = [x / y for x, y in zip(a.walls, b.walls)]
            cpu = statistics.median([x / y for x, y in zip(a.cpus, b.cpus)])
            quotable.append(f"({key}) {a.label} / {b.label}: {statistics.median(ratios):.2f}x "
                            f"({min(ratios):.2f}-{max(ratios):.2f}x over {args.runs} pairs; "
                            f"{statistics.median(a.walls):.2f} s against {statistics.median(b.walls):.2f} s; "
                            f"CPU time {cpu:.2f}x)")
            if comparison.floor is not None:
                floor = statistics.median([x / y for x, y in zip(comparison.floor.walls, b.walls)])
                quotable.append(f"    {comparison.floor.label} / {b.label}: {floor:.2f}x (the floor of ({key}))")
            if comparison.cpu_bound:
                bound = statistics.median(cpu_bounds(a.cpus, b.walls))
                quotable.append(f"    {a.label}'s CPU time / {usable_cores()} cores / {b.label}: {bound:.2f}x "
                                f"(the bound of ({key}))")
    except (Mismatch, Failed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print("summary (median of the per-pair wall-time ratios, their min-max, the median wall times; "
          "median of the per-pair CPU-time ratios):")
    for line in quotable:
        print("  " + line)


if __name__ == "__main__":
    main()
