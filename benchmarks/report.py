"""What a report costs: `python -m harness report DIR` as a whole process, and each figure.

    python benchmarks/report.py reports/collection              # 5 whole-process runs, then per figure
    python benchmarks/report.py /tmp/run-a /tmp/run-b --runs 9

For each output directory (of `python -m harness run`): the median wall and CPU seconds of
rebuilding its report in a fresh process (imports included), then, in this process, the
seconds each figure takes to build (`harness.figures.*_figure`) and to save (draw and PNG),
and what the rest of the report takes. A rebuild replaces the directory's derived files,
as `harness report` does. A benchmark prints figures; nothing here asserts.
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def whole_process(out_dir: str, runs: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of `python -m harness report DIR` in a fresh interpreter."""
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "harness", "report", out_dir], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def per_figure(out_dir: str) -> None:
    """Build and save times of each figure of one rebuild, in this process."""
    from harness import api, figures, report, storage

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

    for attribute in [a for a in dir(figures) if a.endswith("_figure") and not a.startswith("_")]:
        setattr(figures, attribute, timed(lambda args, a=attribute: f"build {a}", getattr(figures, attribute)))
    save = storage.OutputSet.save_figure
    storage.OutputSet.save_figure = timed(lambda args: f"save  {args[1]}", save)
    try:
        results = api.load(out_dir)  # tables read and metrics computed: not the report's cost
        wall, cpu = time.perf_counter(), time.process_time()
        report.write(results, out_dir, rebuild=True)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        storage.OutputSet.save_figure = save
    print(f"  report.write in one process: {wall:.3f} s wall, {cpu:.3f} s CPU")
    for name, (w, c) in sorted(costs.items(), key=lambda item: -item[1][1]):
        print(f"    {name:44s} {w:7.3f} s wall {c:7.3f} s CPU")
    print(f"    {'the rest (tables, summary.md, files)':44s} {wall - sum(w for w, _ in costs.values()):7.3f} s wall "
          f"{cpu - sum(c for _, c in costs.values()):7.3f} s CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="output directories of runs")
    parser.add_argument("--runs", type=int, default=5, help="whole-process runs per directory (median)")
    args = parser.parse_args()
    for out_dir in args.dirs:
        wall, cpu = whole_process(out_dir, args.runs)
        print(f"{out_dir}: `python -m harness report` {wall:.2f} s wall, {cpu:.2f} s CPU (median of {args.runs})")
        per_figure(out_dir)


if __name__ == "__main__":
    main()
