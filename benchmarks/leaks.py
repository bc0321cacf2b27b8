"""How long the leak audit's exact search takes, and how much memory it needs.

    python benchmarks/leaks.py                     # cases a, b, c: ~6 CPU-minutes of search, plus checks
    python benchmarks/leaks.py --cases a --engines faiss numpy
    python benchmarks/leaks.py --cases a --clustered    # clustered hashes instead of uniform ones
    python benchmarks/leaks.py --cases w --train 300000 # within one set

Cases (sizes can be changed with --train and --test):
  a  1,000,000 train x 100,000 test 64-bit hashes, pairs within 8 bits
  b  100,000 x 100,000 256-bit (PDQ-sized) hashes, pairs within 31 bits
  c  the exact histogram of all distances of a and of b
  w  pairs within 8 bits inside the train set of a (i < j), and its histogram
  audit  the whole command on a's hashes given as Parquet hash tables: `python -m harness leaks
     --train train.parquet --test test.parquet --hashers pHash --threshold 8`, which also searches
     inside each split (5 x 10^11 pairs inside train) and writes every output

Each case runs in a fresh process started by this small one (about 30 MiB), so the peak memory printed (its own
ru_maxrss) is that case's alone; the resident memory before the search (the hashes) is printed
beside it. The audit case's command is started by benchmarks/peak.py, a launcher of about 10 MiB,
not by the process that made its hashes, and its peak is read from os.wait4 there: a process
started from a large one is charged the large one's peak. CPU time
is printed beside wall time: on a machine shared with other work the wall time grows,
the CPU time much less. The load average says how busy the machine was.

Every run plants near-copies (test hashes made from train hashes by flipping 0..threshold
bits, each count equally often) and checks that every one is found at its distance;
checks the pairs of a sample of test rows against brute force written here
independently; and checks that the histogram's count of distances <= threshold equals
the number of pairs found. Random uniform hashes are the hard case for an index that
prunes; the brute force here costs the same for any hashes, and --clustered shows it.
A benchmark prints figures; a failed check prints FAILED and exits with status 1.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness import search  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from timing import measured  # noqa: E402

CASES = {
    # name: (bits, threshold, train, test)
    "a": (64, 8, 1_000_000, 100_000),
    "b": (256, 31, 100_000, 100_000),
}
PLANTED = 1_000
CHECKED_ROWS = 50
SEED = 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=["a", "b", "c", "audit"], choices=["a", "b", "c", "w", "audit"])
    parser.add_argument("--engines", nargs="+", default=["auto"], choices=["auto", "faiss", "numpy"])
    parser.add_argument("--train", type=int, help="train hashes (default: the case's)")
    parser.add_argument("--test", type=int, help="test hashes (default: the case's)")
    parser.add_argument("--clustered", action="store_true",
                        help="hashes drawn around 10,000 centres (each bit flipped with p=0.15)")
    parser.add_argument("--run", help=argparse.SUPPRESS)  # internal: one job in this process
    args = parser.parse_args()
    if args.run:
        return run_job(args, *args.run.split(":"))
    print(f"{os.cpu_count()} cores; numpy {np.__version__}; faiss {faiss_version()}; "
          f"load average {os.getloadavg()[0]:.1f} at the start")
    jobs = []
    for case in args.cases:
        for engine in args.engines:
            if case in ("a", "b"):
                jobs.append(f"pairs:{case}:{engine}")
            elif case == "c":
                jobs += [f"histogram:a:{engine}", f"histogram:b:{engine}"]
            elif case == "audit":
                jobs.append(f"audit:a:{engine}")
            else:
                jobs += [f"within:a:{engine}", f"within-histogram:a:{engine}"]
    failed = False
    for job in jobs:
        command = [sys.executable, os.path.abspath(__file__), "--run", job]
        for flag in ("train", "test"):
            if getattr(args, flag):
                command += [f"--{flag}", str(getattr(args, flag))]
        if args.clustered:
            command.append("--clustered")
        failed |= subprocess.run(command).returncode != 0
    return 1 if failed else 0


def faiss_version() -> str:
    try:
        import faiss
    except ImportError:
        return "not installed"
    return faiss.__version__


def run_job(args, kind: str, case: str, engine: str) -> int:
    nbits, threshold, n_train, n_test = CASES[case]
    n_train, n_test = args.train or n_train, args.test or n_test
    rng = np.random.default_rng(SEED)
    train, test, planted = make_sets(rng, n_train, n_test, nbits, threshold, args.clustered)
    within = kind.startswith("within")
    label = (f"{kind} {case}: {n_train:,} {'train (one set)' if within else f'train x {n_test:,} test'} "
             f"{nbits}-bit{' clustered' if args.clustered else ''}, threshold {threshold}, engine {engine}")
    if kind == "audit":
        return run_audit(train, test, planted, threshold)
    rss_before = resident_mib()
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    if kind == "pairs":
        result = search.hamming_pairs(test, train, threshold, engine=engine)
    elif kind == "within":
        result = search.hamming_pairs_within(train, threshold, engine=engine)
    elif kind == "histogram":
        result = search.hamming_histogram(test, train, engine=engine)
    else:
        result = search.hamming_histogram_within(train, engine=engine)
    wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    pairs_compared = n_train * (n_train - 1) // 2 if within else n_train * n_test
    print(f"{label}\n  wall {wall:.1f} s, CPU {cpu:.1f} s ({wall / pairs_compared * 1e9:.2f} and "
          f"{cpu / pairs_compared * 1e9:.2f} ns a pair), "
          f"peak memory {peak:,.0f} MiB ({rss_before:,.0f} MiB before the search), "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)

    problems = []
    if kind == "pairs":
        problems += check_pairs(result, train, test, planted, threshold, rng, nbits, n_train, n_test)
    elif kind == "within":
        problems += check_within(result, train, threshold, rng, nbits)
    else:
        problems += check_histogram(result, train, test, threshold, engine, within)
    for problem in problems:
        print(f"  FAILED: {problem}")
    return 1 if problems else 0


def run_audit(train: np.ndarray, test: np.ndarray, planted, threshold: int) -> int:
    """The whole leaks command on hash tables of these hashes, as a separate process."""
    import tempfile

    import pandas as pd

    with tempfile.TemporaryDirectory() as scratch:
        tables = {}
        for name, hashes in (("train", train), ("test", test)):
            tables[name] = os.path.join(scratch, f"{name}.parquet")
            pd.DataFrame({"file": [f"{name}/{k:07d}.jpg" for k in range(len(hashes))],
                          "hash": [row.tobytes().hex() for row in hashes]}).to_parquet(tables[name], index=False)
        out = os.path.join(scratch, "audit")
        command = [sys.executable, "-m", "harness", "leaks", "--train", tables["train"], "--test", tables["test"],
                   "--hashers", "pHash", "--threshold", str(threshold), "--out", out, "--no-cache", "--quiet"]
        # Started by the small launcher, not from this process: this one holds the hashes (hundreds of
        # MiB), and a process started from it would be charged this one's peak (see peak.py).
        usage, _ = measured(command, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        print(f"audit a: `python -m harness leaks` on Parquet hash tables of {len(train):,} train and {len(test):,} "
              f"test 64-bit hashes, threshold {threshold} (across the splits and inside each, outputs written)\n"
              f"  wall {usage.wall:.1f} s, CPU {usage.cpu:.1f} s, peak memory "
              f"{usage.peak_mib:,.0f} MiB, load average {os.getloadavg()[0]:.1f}", flush=True)
        if usage.status != 0:
            print("  FAILED: the command failed")
            return 1
        leaks = pd.read_csv(os.path.join(out, "leaks.csv"))
        found = set(zip(leaks["file_a"], leaks["file_b"]))
        i, j, _ = planted
        missing = [(a, b) for a, b in zip(j, i) if (f"train/{a:07d}.jpg", f"test/{b:07d}.jpg") not in found]
        print(f"  {len(found):,} flagged pairs; planted pairs found: {len(i) - len(missing)} of {len(i)}")
        if missing:
            print(f"  FAILED: {len(missing)} planted pairs missing")
            return 1
    return 0


def make_sets(rng, n_train: int, n_test: int, nbits: int, threshold: int, clustered: bool):
    """Train and test hashes; the first PLANTED test rows are near-copies of train rows."""
    nbytes = nbits // 8
    if clustered:
        centres = rng.integers(0, 256, (10_000, nbytes), dtype=np.uint8)
        def draw(count):
            # In chunks, so that the random floats do not set the peak memory measured.
            out = centres[rng.integers(0, len(centres), count)]
            for start in range(0, count, 65_536):
                stop = min(start + 65_536, count)
                out[start:stop] ^= np.packbits(rng.random((stop - start, nbits)) < 0.15, axis=1)
            return out
    else:
        def draw(count):
            return rng.integers(0, 256, (count, nbytes), dtype=np.uint8)
    train, test = draw(n_train), draw(n_test)
    planted = min(PLANTED, n_test, n_train)
    sources = rng.choice(n_train, planted, replace=False)
    flips = np.arange(planted) % (threshold + 1)  # 0..threshold bits, each as often
    bits = np.unpackbits(train[sources], axis=1)
    for row, count in zip(bits, flips):
        row[rng.choice(nbits, count, replace=False)] ^= 1
    test[:planted] = np.packbits(bits, axis=1)
    return train, test, (np.arange(planted), sources, flips)


def brute_row(query: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Hamming distances of one hash to all, written independently of harness.search."""
    return np.bitwise_count(np.bitwise_xor(hashes, query)).sum(axis=1, dtype=np.int64)


def check_pairs(result, train, test, planted, threshold, rng, nbits, n_train, n_test) -> list[str]:
    problems = []
    rows, sources, flips = planted
    found = dict(zip(zip(result.i.tolist(), result.j.tolist()), result.distance.tolist()))
    missing = sum((int(i), int(j)) not in found for i, j in zip(rows, sources))
    wrong = sum(found.get((int(i), int(j))) not in (None, float(d)) for i, j, d in zip(rows, sources, flips))
    if missing or wrong:
        problems.append(f"{missing} of {len(rows)} planted pairs missing, {wrong} with a wrong distance")
    # By chance, a pair of uniform random hashes is within the threshold with probability p.
    p = sum(math.comb(nbits, k) for k in range(threshold + 1)) / 2 ** nbits
    print(f"  found {len(result):,} pairs: {len(rows):,} planted (all found: {not missing and not wrong}), "
          f"{len(result) - len(rows):,} others (uniform hashes expect {p * n_train * n_test:.1f} by chance)")
    sample = rng.choice(n_test, CHECKED_ROWS, replace=False)
    start = time.perf_counter()
    mismatches = 0
    for row in sample:
        distances = brute_row(test[row], train)
        expected = np.flatnonzero(distances <= threshold)
        at = slice(*np.searchsorted(result.i, [row, row + 1]))
        if not (np.array_equal(result.j[at], expected) and np.array_equal(result.distance[at], distances[expected])):
            mismatches += 1
    if mismatches:
        problems.append(f"{mismatches} of {CHECKED_ROWS} sampled test rows differ from brute force")
    print(f"  brute force on {CHECKED_ROWS} sampled test rows x all train: "
          f"{'identical' if not mismatches else 'DIFFERENT'} ({time.perf_counter() - start:.1f} s)")
    return problems


def check_within(result, train, threshold, rng, nbits) -> list[str]:
    sample = rng.choice(len(train), CHECKED_ROWS, replace=False)
    mismatches = 0
    for row in sample:
        distances = brute_row(train[row], train)
        expected = np.flatnonzero(distances <= threshold)
        expected = expected[expected > row]
        at = slice(*np.searchsorted(result.i, [row, row + 1]))
        mismatches += not np.array_equal(result.j[at], expected)
    p = sum(math.comb(nbits, k) for k in range(threshold + 1)) / 2 ** nbits
    n = len(train)
    print(f"  found {len(result):,} pairs (uniform hashes expect {p * n * (n - 1) / 2:.1f} by chance); "
          f"brute force on {CHECKED_ROWS} sampled rows: {'identical' if not mismatches else 'DIFFERENT'}")
    return [f"{mismatches} of {CHECKED_ROWS} sampled rows differ from brute force"] if mismatches else []


def check_histogram(histogram, train, test, threshold, engine, within) -> list[str]:
    problems = []
    n = len(train)
    total = n * (n - 1) // 2 if within else len(train) * len(test)
    if histogram.sum() != total:
        problems.append(f"the histogram counts {histogram.sum():,} pairs, not {total:,}")
    # Cross-check two algorithms: the histogram's pairs within the threshold are the range search's.
    start = time.perf_counter()
    pairs = (search.hamming_pairs_within(train, threshold, engine=engine) if within
             else search.hamming_pairs(test, train, threshold, engine=engine))
    within_threshold = int(histogram[:threshold + 1].sum())
    if within_threshold != len(pairs):
        problems.append(f"the histogram has {within_threshold} pairs <= {threshold}, the search found {len(pairs)}")
    if not within:
        # The first rows' histogram against brute force's np.bincount.
        rows = test[:CHECKED_ROWS]
        expected = np.zeros(len(histogram), dtype=np.int64)
        for row in rows:
            expected += np.bincount(brute_row(row, train), minlength=len(histogram))
        if not np.array_equal(search.hamming_histogram(rows, train, engine=engine), expected):
            problems.append(f"the histogram of the first {CHECKED_ROWS} test rows differs from brute force")
    mean = (np.arange(len(histogram)) * histogram).sum() / max(total, 1)
    print(f"  {total:,} pairs counted (mean distance {mean:.2f}); {within_threshold:,} within {threshold}, "
          f"as many as the range search found; brute force on {CHECKED_ROWS} rows "
          f"{'not run (within)' if within else 'identical' if not problems else 'checked'} "
          f"({time.perf_counter() - start:.1f} s of checks)")
    return problems


def resident_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


if __name__ == "__main__":
    sys.exit(main())
