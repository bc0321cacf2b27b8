"""The memory of a whole run: its process and every process it starts (workers, the report's drawer).

    python -S benchmarks/tree_memory.py COMMAND [ARGUMENT ...]

The other scripts print ru_maxrss, the largest resident size of a single process of the run (the
kernel's own figure, exact, but not the run's total: two workers and the main process each hold
their own memory). This one samples, every 20 ms until the command exits, the run's process tree
(/proc/PID/task/*/children, Linux) and the PSS of each process (/proc/PID/smaps_rollup: its resident
pages, those it shares with others counted in proportion, so that the sum over the tree counts each
shared page once), and prints the largest sum seen, with the RSS sum at the same moments and the
most processes seen at once. PSS also splits a page the run shares with processes outside it (a
library another program has loaded), so the sum can be a little below the run's own resident
memory, even below its largest process's RSS; the RSS sum, which counts a shared page in each
process, bounds it from above. A sample can miss a peak shorter than 20 ms, so both are lower
bounds of the true peaks. Reading the maps costs CPU: time a run with the other scripts, not this one.
Imports nothing but os, sys and time (run it with -S), so that it adds little to the tree it measures.
"""

import os
import sys
import time

INTERVAL_S = 0.02


def children(pid: int) -> list[int]:
    found = []
    try:
        for thread in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{thread}/children") as handle:
                found += [int(child) for child in handle.read().split()]
    except OSError:  # exited meanwhile
        pass
    return found


def process_tree(root: int) -> list[int]:
    pending, tree = [root], []
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending += children(pid)
    return tree


def resident_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in KiB; (0, 0) where it exited meanwhile."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def main() -> int:
    command = sys.argv[1:]
    if not command or not os.path.exists("/proc/self/smaps_rollup"):
        print(__doc__ if not command else "tree_memory.py needs Linux's /proc/PID/smaps_rollup", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        pid = os.posix_spawnp(command[0], command, os.environ)
    except OSError as exc:
        print(f"tree_memory.py: cannot start {command[0]!r}: {exc.strerror}", file=sys.stderr)
        return 127
    peak_pss = rss_then = most = samples = 0
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        tree = process_tree(pid)
        sizes = [resident_kib(member) for member in tree]
        pss = sum(size[1] for size in sizes)
        if pss > peak_pss:
            peak_pss, rss_then = pss, sum(size[0] for size in sizes)
        most, samples = max(most, len(tree)), samples + 1
        time.sleep(INTERVAL_S)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    print(f"status {code}; {wall:.1f} s; {samples} samples; processes at most {most}; "
          f"the tree's PSS at its largest {peak_pss / 1024:.0f} MiB (RSS summed then {rss_then / 1024:.0f} MiB); "
          f"the largest single process (ru_maxrss) {usage.ru_maxrss / 1024:.0f} MiB")
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
