"""What the report costs: whole processes, and each figure.

    python benchmarks/report.py reports/collection                 # rebuild a run's report
    python benchmarks/report.py --run configs/lena.yaml --hashers aHash,pHash
    python benchmarks/report.py /tmp/run-a /tmp/run-b --runs 9

For each output directory (of `python -m harness run`): the median wall and CPU seconds of
`python -m harness report DIR` in a fresh process (imports included), then, in this process,
the seconds each figure takes to build (`harness.figures.*_figure`) and to save (draw and
PNG), and what the rest of the report takes. Here every figure is drawn in this process (a
run or `report` draws some in a forked copy of itself), after matplotlib's import and first
fonts, which are timed apart (a run loads them while its workers hash). A rebuild replaces
the directory's derived files, as `harness report` does.

With --run CONFIG: the same for `python -m harness run CONFIG --no-cache --quiet` into a
temporary directory (the whole process the user waits for, previews included), then the
report's share of one run in this process: `report.write` after `harness.evaluate`.

A benchmark prints figures; nothing here asserts.
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def whole_process(arguments: list[str], runs: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of `python -m harness ARGUMENTS` in a fresh interpreter."""
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "harness", *arguments], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def per_figure(results, out_dir: str, rebuild: bool) -> None:
    """Build and save times of each figure of one `report.write`, every figure in this process: the
    report would otherwise draw some in a forked copy of it (report.draw), whose figures no wrapper
    here would see."""
    from harness import figures, report, storage

    # matplotlib's import and its first fonts, which a run loads while its workers hash: apart, not in
    # the first figure's time.
    wall = time.perf_counter()
    figures.warm_up()
    print(f"  matplotlib loaded and warmed up (figures.warm_up): {time.perf_counter() - wall:.3f} s wall")
    costs: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])  # name -> [wall, cpu]

    def timed(name, call):
        def wrapper(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return call(*args, **kwargs)
            finally:
                costs[name(args)][0] += time.perf_counter() - wall
                costs[name(args)][1] += time.process_time() - cpu
        return wrapper

    originals = {a: getattr(figures, a) for a in dir(figures) if a.endswith("_figure") and not a.startswith("_")}
    for attribute, function in originals.items():
        setattr(figures, attribute, timed(lambda args, a=attribute: f"build {a}", function))
    save, can_fork = storage.OutputSet.save_figure, report.can_fork
    storage.OutputSet.save_figure = timed(lambda args: f"save  {args[1]}", save)
    report.can_fork = lambda: False
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        report.write(results, out_dir, rebuild=rebuild)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        storage.OutputSet.save_figure, report.can_fork = save, can_fork
        for attribute, function in originals.items():
            setattr(figures, attribute, function)
    print(f"  report.write in one process, every figure drawn in it: {wall:.3f} s wall, {cpu:.3f} s CPU")
    for name, (w, c) in sorted(costs.items(), key=lambda item: -item[1][1]):
        print(f"    {name:44s} {w:7.3f} s wall {c:7.3f} s CPU")
    print(f"    {'the rest (tables, summary.md, files)':44s} {wall - sum(w for w, _ in costs.values()):7.3f} s wall "
          f"{cpu - sum(c for _, c in costs.values()):7.3f} s CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="*", metavar="DIR", help="output directories of runs")
    parser.add_argument("--run", metavar="CONFIG", help="time `harness run CONFIG` instead")
    parser.add_argument("--hashers", metavar="NAME[,NAME...]", help="with --run: only these hashers")
    parser.add_argument("--runs", type=int, default=5, help="whole-process runs (median)")
    args = parser.parse_args()
    from harness import api

    if args.run:
        with tempfile.TemporaryDirectory() as folder:
            out_dir = os.path.join(folder, "out")
            selection = ["--hashers", args.hashers] if args.hashers else []
            wall, cpu = whole_process(["run", args.run, "--out", out_dir, "--no-cache", "--quiet", *selection],
                                      args.runs)
            print(f"{args.run}: `python -m harness run --no-cache` {wall:.2f} s wall, {cpu:.2f} s CPU "
                  f"(median of {args.runs})")
            wall, cpu = time.perf_counter(), time.process_time()
            results = api.evaluate(args.run, hashers=args.hashers.split(",") if args.hashers else None)
            print(f"  harness.evaluate in one process: {time.perf_counter() - wall:.3f} s wall, "
                  f"{time.process_time() - cpu:.3f} s CPU")
            per_figure(results, out_dir, rebuild=False)
    for out_dir in args.dirs:
        wall, cpu = whole_process(["report", out_dir], args.runs)
        print(f"{out_dir}: `python -m harness report` {wall:.2f} s wall, {cpu:.2f} s CPU (median of {args.runs})")
        per_figure(api.load(out_dir), out_dir, rebuild=True)  # loading and metrics: not the report's cost


if __name__ == "__main__":
    main()
