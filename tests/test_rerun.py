"""A rerun of an unchanged run: it keeps the set already in its directory (tables and figures, not
drawn again) only when it computed its results with that directory's own hash cache; otherwise it
trusts nothing it finds there."""

import os
import subprocess
import sys

CONFIG = """
name: rerun
images: [builtin:astronaut, builtin:camera, builtin:coffee]
hashers: [aHash, pHash]
detection: {fpr: [FPR]}
sweeps:
  - {family: jpeg, b: {jpeg: {quality: $value}}, values: [80, 20]}
"""

# The command line in a process that says, at the end, whether it loaded matplotlib (drew a figure).
RUN = """
import runpy, sys
sys.argv = ["harness", *sys.argv[1:]]
code = 0
try:
    runpy.run_module("harness", run_name="__main__")
except SystemExit as stop:
    code = stop.code
print("matplotlib loaded:", "matplotlib" in sys.modules)
sys.exit(code)
"""

FIGURE = os.path.join("figures", "detection.png")


def run(tmp_path, out, *options, fpr="0.1") -> bool:
    config = tmp_path / "rerun.yaml"
    config.write_text(CONFIG.replace("FPR", fpr))
    done = subprocess.run([sys.executable, "-c", RUN, "run", str(config), "--out", str(out), "--quiet",
                           "--workers", "1", *options], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1] == "matplotlib loaded: True"


def read(out, name) -> bytes:
    return (out / name).read_bytes()


def test_an_unchanged_rerun_keeps_its_tables_and_figures_and_draws_nothing(tmp_path):
    out = tmp_path / "out"
    assert run(tmp_path, out)  # the first run draws
    first = {name: read(out, name) for name in ("distances.csv", "thresholds.csv", FIGURE)}
    assert not run(tmp_path, out)  # the same results from the cache: nothing to draw
    assert {name: read(out, name) for name in first} == first
    assert (out / "summary.md").is_file() and (out / "run.json").is_file()


def test_a_changed_config_draws_again(tmp_path):
    out = tmp_path / "out"
    run(tmp_path, out)
    thresholds = read(out, "thresholds.csv")
    assert run(tmp_path, out, fpr="0.5")
    assert read(out, "thresholds.csv") != thresholds


def test_without_its_own_cache_a_rerun_keeps_nothing_it_finds(tmp_path):
    out = tmp_path / "out"
    run(tmp_path, out)
    first = {name: read(out, name) for name in ("distances.csv", FIGURE)}
    # Someone changes a table and a figure, and leaves run.json (and its fingerprint) as it was.
    lines = first["distances.csv"].decode().splitlines()
    lines[1] = lines[1].rsplit(",", 3)[0] + ",63,0.984375,"
    (out / "distances.csv").write_text("\n".join(lines) + "\n")
    (out / FIGURE).write_bytes(b"not the figure")
    for options in (["--no-cache"], ["--cache", str(tmp_path / "elsewhere.sqlite")]):
        assert run(tmp_path, out, *options)  # drawn again
        assert {name: read(out, name) for name in first} == first
