"""The benchmark scripts run end to end, at the smallest sizes, and print the lines the README
quotes. Nothing here checks a time: a benchmark prints figures. What it does check is what the
scripts check themselves before they time anything (the hand-written scripts give the harness's
results; a rerun gives byte-identical tables), and that a change to a shared helper has not left a
script that no longer starts (large_photo.py called scale.measure with an argument too few for
a while, unnoticed)."""

import os
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tests.conftest import ROOT

RATIO = r"\d+\.\d\dx"


def run_benchmark(script: str, *args: str, scratch) -> str:
    """Run benchmarks/SCRIPT in the repository root with its temporary files under `scratch`; its output."""
    environment = dict(os.environ, TMPDIR=str(scratch))
    done = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", script), *args], cwd=ROOT,
                          env=environment, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{script} {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def photographs(tmp_path_factory):
    """Twelve small photograph-like pictures (smooth colour fields and discs), JPEG and PNG as
    OpenCV's sample folder has, standing in for it."""
    folder = tmp_path_factory.mktemp("photographs")
    rng = np.random.default_rng(0)
    for number in range(12):
        image = cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (320, 240),
                           interpolation=cv2.INTER_CUBIC)
        for _ in range(8):
            centre = tuple(int(c) for c in rng.integers(0, (320, 240)))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            cv2.circle(image, centre, int(rng.integers(10, 80)), colour, -1)
        cv2.imwrite(str(folder / f"photo{number:02d}.{'png' if number % 3 == 0 else 'jpg'}"), image)
    return str(folder)


def test_compare_checks_both_sides_agree_and_prints_each_ratio(photographs, tmp_path):
    out = run_benchmark("compare.py", "--photos", photographs, "--only", "a", "b", "d", "e", "f", "g", "--runs", "1",
                        "--no-warm-up", scratch=tmp_path)
    assert "results: same thresholds, impostor pairs, false matches and detection counts" in out
    assert "results: same aHash and pHash distances for all 40 pairs as table.csv" in out
    assert "results: byte-identical distances.csv" in out  # (d): the rerun over a full cache
    assert "both drew families.png, heatmap.png and previews.png" in out  # (e)
    for line in (rf"\(a\) harness / hand-written script: {RATIO} \(", rf"\(b\) harness / bare OpenCV script: {RATIO}",
                 rf"imports alone / bare OpenCV script: {RATIO} \(the floor of \(b\)\)",
                 rf"\(d\) rerun, full cache / first run: {RATIO}",
                 rf"\(e\) harness / bare OpenCV script \+ figures: {RATIO}",
                 rf"\(f\) --workers 1 / hand-written script: {RATIO}",
                 rf"\(g\) --workers 2 / hand-written script --workers 2: {RATIO}"):
        assert re.search(line, out), (line, out)


def test_scale_compares_worker_counts_and_rebuilds_the_report(tmp_path):
    out = run_benchmark("scale.py", "--sizes", "24", "--workers", "1", "2", "--data", str(tmp_path / "images"),
                        scratch=tmp_path)
    for workers in ("1", "2"):
        assert re.search(rf"24 images \| --workers {workers} \| run +\d+\.\d s .*CPU +\d+\.\d s \(system +\d+\.\d s\) "
                         r"\| peak +\d+ MiB .*\| report rebuilt in +\d+\.\d s, peak +\d+ MiB \| "
                         r"distances\.csv, distances\.parquet, impostors\.csv, impostors\.parquet", out), out
    assert re.search(rf"24 images \| --workers 2 / --workers 1: {RATIO} the time, {RATIO} faster", out), out
    assert re.search(rf"--workers 2's CPU time / \d+ cores / --workers 1's time: {RATIO}", out), out


def test_scale_stops_when_a_run_skipped_images(photographs, tmp_path):
    """A run that exits with status 1 (an image it could not read) did less than the job: the script
    says how many failed and prints no figure for it."""
    folder = tmp_path / "with-a-damaged-one"
    shutil.copytree(photographs, folder)
    whole = (folder / "photo01.jpg").read_bytes()
    (folder / "zz-damaged.jpg").write_bytes(whole[:len(whole) // 2])  # its header reads; its data is cut
    environment = dict(os.environ, TMPDIR=str(tmp_path))
    done = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "scale.py"), "--photos", str(folder),
                           "--sizes", "13", "--workers", "1", "--data", str(tmp_path / "images")], cwd=ROOT,
                          env=environment, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0, done.stdout
    # (the damaged photograph is the 9th of the images the script copies, 000008.jpg)
    assert re.search(r"exited with status 1: 1 failure\(s\) over 1 image\(s\) \(see \S+errors\.csv\), the first: "
                     r"\S+000008\.jpg: truncated JPEG", done.stderr), done.stderr
    assert " 13 images | run" not in done.stdout, done.stdout


def test_a_measured_peak_is_the_commands_own_not_its_parents():
    """Linux charges a process started from a large one that one's peak: scale.measure (which
    large_photo.py and, by the same launcher, compare.py and leaks.py's audit use) must read the
    command's own. Here a parent holding 300 MiB measures a Python that does nothing (about 10 MiB)."""
    holder = ("import os, sys; sys.path.insert(0, 'benchmarks'); import scale\n"
              "held = bytearray(300 << 20)\n"
              "for i in range(0, len(held), 4096): held[i] = 1  # resident, not only reserved\n"
              "print(scale.measure([sys.executable, '-c', 'pass'], dict(os.environ))[1])")
    done = subprocess.run([sys.executable, "-c", holder], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=True)
    assert float(done.stdout) < 100, done.stdout


def test_breakdown_splits_each_images_cost(photographs, tmp_path):
    out = run_benchmark("breakdown.py", photographs, scratch=tmp_path)
    # Its floor makes the run's library calls (its resize once had another interpolation): checked by
    # the script, which stops when they give other distances than the run's.
    assert "the same calls alone: same distances as the run for all 144 (image, edit, hasher)" in out, out
    assert "issue 9's job on 12 photographs" in out
    for stage in ("decode", "transform", "hash"):
        assert re.search(rf"^  {stage} +\d+\.\d \| +\d+\.\d +\({RATIO}\)$", out, re.MULTILINE), (stage, out)
    assert re.search(r"^  run +\d+\.\d \| +\d+\.\d$", out, re.MULTILINE), out
    assert re.search(rf"two workers, at best .*, {RATIO} faster", out), out


def test_large_photo_prints_both_peaks(tmp_path):
    out = run_benchmark("large_photo.py", scratch=tmp_path)
    for name in ("18 photographs", r"18 photographs \+ one 4240x3180 JPEG"):
        assert re.search(rf"^  {name} +\d+\.\d s \(CPU +\d+\.\d s\) +peak +\d+ MiB$", out, re.MULTILINE), (name, out)
    # and which hashers those peaks include: ResNet50 runs or is named with the reason it did not
    # (its ImageNet weights are on some machines, not on others)
    last = out.strip().splitlines()[-1]
    assert re.fullmatch(r"hashers run: aHash, pHash(, ResNet50; skipped: none|; skipped: ResNet50 \(.+\))", last), out


def test_report_times_every_figure_in_one_process(photographs, tmp_path):
    out = str(tmp_path / "run")
    subprocess.run([sys.executable, "-m", "harness", "run", "benchmarks/configs/issue9_job.yaml", "--images",
                    os.path.join(photographs, "*.jpg"), os.path.join(photographs, "*.png"), "--out", out,
                    "--quiet", "--no-cache"], cwd=ROOT, check=True, timeout=600)
    drawn = sorted(os.listdir(os.path.join(out, "figures")))
    report = run_benchmark("report.py", out, "--runs", "1", scratch=tmp_path)
    assert "report.write in one process, every figure drawn in it:" in report
    # Each figure is timed, none drawn out of sight in the report's forked copy.
    assert sorted(re.findall(r"save  figures/(\S+\.png) ", report)) == drawn, report


def test_leaks_finds_every_planted_copy_and_agrees_with_brute_force(tmp_path):
    out = run_benchmark("leaks.py", "--cases", "a", "b", "c", "w", "audit", "--train", "4000", "--test", "400",
                        scratch=tmp_path)
    assert out.count("400 planted (all found: True)") == 2, out  # pairs a (64-bit) and b (256-bit)
    assert out.count("brute force on 50 sampled test rows x all train: identical") == 2, out
    assert out.count("as many as the range search found") == 3, out  # histograms a, b and within a
    assert "brute force on 50 sampled rows: identical" in out, out  # within a
    assert "planted pairs found: 400 of 400" in out, out  # the whole leaks command


def test_leak_files_audits_image_files_and_checks_the_planted_copies(tmp_path):
    out = run_benchmark("leak_files.py", "--sizes", "40", "--data", str(tmp_path / "images"), scratch=tmp_path)
    assert re.search(r"48 images \| audit +\d+\.\d s \( *\d+\.\d\d ms/image\), CPU +\d+\.\d s \| peak +\d+ MiB "
                     rf"\(1\.00x the first\) \| again, full cache +\d+\.\d s \({RATIO}\) \| from its hash tables +\d+\.\d s, "
                     r"peak +\d+ MiB", out), out
    assert ("planted 8: 8 flagged, 0 beyond the threshold (none); flagged exactly when within it: True; "
            "the audit from its hash tables flags the same pairs: True") in out, out

def test_tables_writes_each_long_table_as_pandas_does(tmp_path):
    out = run_benchmark("tables.py", "--images", "30", "--runs", "1", scratch=tmp_path)
    assert out.count("same bytes: True") == 3, out
    # the plain tables by pyarrow, the one whose label holds a comma by pandas
    assert re.search(r"impostors +1,305 rows \| harness +\S+ s \(by pyarrow\)", out), out
    assert re.search(r"distances, a label with a comma +360 rows \| harness +\S+ s \(by pandas", out), out
    assert re.search(rf"\| +{RATIO} \| same bytes", out), out


def test_cache_size_reads_a_real_runs_cache(tmp_path):
    out = run_benchmark("cache_size.py", "--images", "4", scratch=tmp_path)
    assert "on 4 generated images: 60 cached 64-bit hashes" in out, out
    assert re.search(r"^  [\d,]+ bytes on disk: \d+ bytes per cached hash, [\d,]+ per image$", out, re.MULTILINE), out


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps_rollup"), reason="needs Linux's /proc/PID/smaps_rollup")
def test_tree_memory_sums_the_processes_a_command_starts(tmp_path):
    """Two processes of 60 MB each: ru_maxrss gives one of them, the tree's sum both."""
    hold = "x = bytearray(60_000_000); x[::4096] = b'1' * len(x[::4096]); import time; time.sleep(1.5)"
    child = f"import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', {hold!r}]); exec({hold!r}); p.wait()"
    done = subprocess.run([sys.executable, "-S", os.path.join(ROOT, "benchmarks", "tree_memory.py"), sys.executable,
                           "-c", child], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    found = re.fullmatch(r"status 0; [\d.]+ s; \d+ samples; processes at most 2; the tree's PSS at its largest (\d+) "
                         r"MiB \(RSS summed then (\d+) MiB\); the largest single process \(ru_maxrss\) (\d+) MiB\n",
                         done.stdout)
    assert found, done.stdout
    tree_pss, _, largest = map(int, found.groups())
    assert tree_pss >= 110 and 57 <= largest < 100, done.stdout
