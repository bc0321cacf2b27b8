"""Runs that survive bad input and interruption and lose nothing."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from harness.__main__ import main
from tests.conftest import ROOT, make_scene

OUTPUTS = ("distances.csv", "impostors.csv", "table.csv", "thresholds.csv", "detection.csv", "roc.csv",
           "images.csv", "errors.csv", "hashers.csv")


def bad_corpus(folder):
    """Good images and every kind of bad file a scraped folder holds."""
    folder.mkdir()
    for seed in range(4):
        cv2.imwrite(str(folder / f"good {seed}.png"), make_scene(seed))
    (folder / "empty.jpg").write_bytes(b"")
    ok, jpeg = cv2.imencode(".jpg", make_scene(9))
    (folder / "truncated.jpg").write_bytes(jpeg.tobytes()[: len(jpeg) // 2])
    (folder / "page.jpg").write_text("<!DOCTYPE html><html><body>404 not found</body></html>")
    (folder / "tiny.png").write_bytes(cv2.imencode(".png", np.full((1, 1, 3), 200, np.uint8))[1].tobytes())
    frames = [Image.fromarray(make_scene(20 + k)[..., ::-1]) for k in range(3)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:])
    cv2.imwrite(str(folder / "deep.png"), (make_scene(30).astype(np.uint16) * 257))
    Image.new("L", (30000, 20000)).save(folder / "bomb.png")  # compressed it is small; decoded 600 Mpx
    (folder / "ünïcode name.png").write_bytes(cv2.imencode(".png", make_scene(40))[1].tobytes())
    return folder


CONFIG = """
images: [{folder}]
seed: 1
hashers: [aHash, pHash]
impostors: {{transformed: true, per_variant: 2}}
sweeps:
  - {{family: jpeg, b: {{jpeg: {{quality: $value}}}}, values: [70, 20]}}
  - {{family: crop, b: {{crop: {{x: 0, y: 0, width: 100, height: 100}}}}}}
  - {{family: blur, b: {{blur: {{kernel: $value}}}}, values: [3, 9]}}
"""


def test_bad_images_become_errors_not_crashes(tmp_path, capsys):
    folder = bad_corpus(tmp_path / "scraped")
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG.format(folder=folder))
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 1  # finished, with problems
    errors = pd.read_csv(out / "errors.csv", keep_default_na=False)
    read = errors[errors["stage"] == "read"].set_index("image")["reason"]
    assert set(os.path.basename(p) for p in read.index) == {"empty.jpg", "truncated.jpg", "page.jpg", "bomb.png"}
    assert read[str(folder / "empty.jpg")].endswith("empty file (0 bytes)")
    assert "truncated" in read[str(folder / "truncated.jpg")]
    assert "not an image" in read[str(folder / "page.jpg")]
    assert "exceeds the limit" in read[str(folder / "bomb.png")]
    # the crop is larger than the 1x1 image: one transform error, recorded for that image
    assert ((errors["stage"] == "transform") & (errors["image"] == "tiny")).sum() == 1
    distances = pd.read_csv(out / "distances.csv", keep_default_na=False)
    assert set(distances["image"]) == {"good 0", "good 1", "good 2", "good 3", "tiny", "animated", "deep",
                                       "ünïcode name"}
    images = pd.read_csv(out / "images.csv", keep_default_na=False).set_index("image")
    assert "first frame of 3" in images.loc["animated", "notes"]
    assert "16-bit" in images.loc["deep", "notes"]
    summary = (out / "summary.md").read_text()
    assert "## Problems" in summary and "empty file" in summary
    assert "see errors.csv" in capsys.readouterr().err


def test_no_readable_image_is_one_line_error(tmp_path, capsys):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"")
    config = tmp_path / "c.yaml"
    config.write_text(f"images: [{folder}]\nhashers: [aHash]\nsweeps: [{{family: identity}}]\n")
    assert main(["run", str(config), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: none of the 1 images could be read; first: {folder / 'a.png'}: empty file (0 bytes)"]


def test_unwritable_output_stops_before_work(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the output directory should go")
    config = tmp_path / "c.yaml"
    config.write_text("images: [builtin:astronaut]\nhashers: [aHash]\nsweeps: [{family: identity}]\n")
    assert main(["run", str(config), "--out", str(blocker / "out"), "--quiet"]) == 2
    assert "output directory is not writable" in capsys.readouterr().err


# --- interruption -----------------------------------------------------------------

SLOW = """
images: [{folder}]
seed: 2
hashers: [aHash, pHash, imagehash.dhash]
sweeps:
  - {{family: jpeg, b: {{jpeg: {{quality: $value}}}}, values: [90, 70, 50, 30, 10]}}
  - {{family: blur, b: {{gaussian_blur: {{sigma: $value}}}}, values: [1, 2, 4, 8]}}
  - {{family: rotate, b: {{rotate: {{angle: $value}}}}, values: [1, 3, 10]}}
  - {{family: noise, b: {{gaussian_noise: {{sigma: $value}}}}, values: [5, 20]}}
"""


@pytest.fixture(scope="module")
def slow_config(tmp_path_factory):
    root = tmp_path_factory.mktemp("slow")
    folder = root / "images"
    folder.mkdir()
    for seed in range(40):
        cv2.imwrite(str(folder / f"{seed:02d}.png"), make_scene(seed, 300, 400))
    config = root / "slow.yaml"
    config.write_text(SLOW.format(folder=folder))
    reference = root / "reference"
    assert main(["run", str(config), "--out", str(reference), "--quiet", "--no-cache"]) == 0
    return config, reference


def command(config, out, *extra):
    return [sys.executable, "-m", "harness", "run", str(config), "--out", str(out), "--quiet", *extra]


def assert_same_outputs(a, b):
    for name in OUTPUTS:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def cached_entries(out) -> int:
    path = out / "hash-cache.sqlite"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM hashes").fetchone()[0]
    except sqlite3.OperationalError:  # the table is not created yet
        return 0


def stop_when(process, out, entries: int, sig) -> None:
    """Send `sig` once the run has cached `entries` hashes (a point in its progress, not a time)."""
    deadline = time.monotonic() + 120
    while process.poll() is None and cached_entries(out) < entries and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(sig)
    process.wait(timeout=60)


# 40 images x 3 hashers x 15 items (the untouched image and 14 edited copies): 45 entries an image,
# written together as each image is done
@pytest.mark.parametrize("sig,points", [(signal.SIGKILL, [45, 450, 900]), (signal.SIGTERM, [450]),
                                        (signal.SIGINT, [450])])
def test_killed_runs_resume_to_identical_outputs(slow_config, tmp_path, sig, points):
    config, reference = slow_config
    out = tmp_path / "out"
    for entries in points:  # stop it several times, each time further on
        process = subprocess.Popen(command(config, out), cwd=ROOT, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        stop_when(process, out, entries, sig)
        assert process.returncode != 0, "the run finished before it could be stopped"
        for name in OUTPUTS:  # never a half-written table: absent, or whole
            path = out / name
            assert not path.exists() or path.read_bytes() == (reference / name).read_bytes(), name
        assert not [p for p in os.listdir(out) if p.startswith(".tmp-")]
    assert cached_entries(out) >= points[-1], "the stopped runs left their work for the next one"
    done = subprocess.run(command(config, out), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert_same_outputs(out, reference)


def test_worker_processes_give_identical_tables(slow_config, tmp_path):
    config, reference = slow_config
    out = tmp_path / "two"
    assert main(["run", str(config), "--out", str(out), "--quiet", "--workers", "2", "--no-cache"]) == 0
    assert_same_outputs(out, reference)


def test_added_hasher_costs_only_the_new_work(slow_config, tmp_path, monkeypatch):
    config, reference = slow_config
    out = tmp_path / "cached"
    first = tmp_path / "first.yaml"
    first.write_text(config.read_text().replace("hashers: [aHash, pHash, imagehash.dhash]", "hashers: [aHash, pHash]"))
    assert main(["run", str(first), "--out", str(out), "--quiet"]) == 0

    from harness.hashers.opencv import AverageHash, PHash

    def must_not_run(self, images):
        raise AssertionError("cached hashes were computed again")

    monkeypatch.setattr(AverageHash, "hash_batch", must_not_run)
    monkeypatch.setattr(PHash, "hash_batch", must_not_run)
    # In this process (the patches do not reach worker processes): adds imagehash.dhash
    assert main(["run", str(config), "--out", str(out), "--quiet", "--workers", "1"]) == 0
    assert_same_outputs(out, reference)


def test_pixel_limit_is_configurable(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "small.png"), make_scene(1, 40, 50))
    cv2.imwrite(str(folder / "large.png"), make_scene(2, 200, 300))
    config = tmp_path / "c.yaml"
    config.write_text(f"images: [{folder}]\nmax_pixels: 10000\nhashers: [aHash]\nsweeps: [{{family: identity}}]\n")
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 1
    errors = pd.read_csv(out / "errors.csv")
    assert errors["reason"].tolist() == [f"{folder / 'large.png'}: 300 x 200 = 60000 pixels exceeds the limit of "
                                         "10000 (raise max_pixels to allow it)"]


def test_added_sweep_hashes_only_the_new_copies(tmp_path, monkeypatch):
    folder = tmp_path / "images"
    folder.mkdir()
    for seed in range(3):
        cv2.imwrite(str(folder / f"{seed}.png"), make_scene(seed))
    base = f"images: [{folder}]\nhashers: [pHash]\nsweeps:\n  - {{family: jpeg, b: {{jpeg: {{quality: $value}}}}, values: [80, 40]}}\n"
    config = tmp_path / "c.yaml"
    config.write_text(base)
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0

    from harness.hashers.opencv import PHash
    hashed = []
    original = PHash.hash_batch
    monkeypatch.setattr(PHash, "hash_batch", lambda self, images: hashed.append(len(images)) or original(self, images))
    config.write_text(base + "  - {family: blur, b: {blur: {kernel: 5}}}\n")
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    assert hashed == [1, 1, 1], "only the one new edited copy of each image is hashed"
    fresh = tmp_path / "fresh"
    assert main(["run", str(config), "--out", str(fresh), "--quiet", "--no-cache"]) == 0
    for name in ("distances.csv", "impostors.csv", "table.csv"):
        assert (out / name).read_bytes() == (fresh / name).read_bytes(), name


def test_partial_cache_of_a_cnn_recomputes_whole_batches(tmp_path):
    """A CNN's floats can move with its batch: with part of its cache lost, the rerun must
    recompute whole batches and still give the same bytes."""
    folder = tmp_path / "images"
    folder.mkdir()
    for seed in range(3):
        cv2.imwrite(str(folder / f"{seed}.png"), make_scene(seed))
    config = tmp_path / "c.yaml"
    config.write_text(f"images: [{folder}]\nhashers: [{{name: ResNet50, weights: null, input_size: 32}}]\n"
                      "sweeps:\n  - {family: jpeg, b: {jpeg: {quality: $value}}, values: [80, 40, 10]}\n")
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    first = {name: (out / name).read_bytes() for name in ("distances.csv", "impostors.csv")}
    with sqlite3.connect(out / "hash-cache.sqlite") as db:
        db.execute("DELETE FROM hashes WHERE rowid % 2 = 0")
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    for name, content in first.items():
        assert (out / name).read_bytes() == content, name


FUSSY_PLUGIN = '''
from dataclasses import dataclass

import numpy as np

from harness.hashers.base import Hasher


@dataclass(frozen=True)
class Fussy(Hasher):
    """The mean of each channel, and an error (as a library's would be) for images under 100 rows."""
    name = "fussyplug:Fussy"
    description = "fails on small images"
    distance_kind = "L1"
    distance_max = 765.0

    def hash_batch(self, images):
        if any(image.shape[0] < 100 for image in images):
            raise RuntimeError("std::bad_array_new_length")
        return np.array([image.reshape(-1, 3).mean(axis=0) for image in images])

    def distance(self, a, b):
        return np.abs(a - b).sum(axis=1)
'''


def test_a_hasher_failing_on_an_image_hashed_alone_costs_that_image_only(tmp_path, monkeypatch, capsys):
    """With nothing but the source to hash, each image is a batch of one: its failure is its own
    row of errors.csv, the run goes on (exit 1), and the other images and hashers are all there."""
    (tmp_path / "fussyplug.py").write_text(FUSSY_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    folder = tmp_path / "images"
    folder.mkdir()
    for seed, rows in ((1, 160), (2, 60), (3, 160)):
        cv2.imwrite(str(folder / f"{seed}.png"), make_scene(seed, rows, 200))
    config = tmp_path / "c.yaml"
    config.write_text(f"images: [{folder}]\nhashers: [aHash, fussyplug:Fussy]\nsweeps: [{{family: id}}]\n")
    assert main(["run", str(config), "--out", str(tmp_path / "out"), "--quiet", "--workers", "1"]) == 1
    errors = pd.read_csv(tmp_path / "out" / "errors.csv", keep_default_na=False)
    assert len(errors) == 1 and str(errors["image"][0]) == "2"
    assert "fussyplug:Fussy failed: RuntimeError: std::bad_array_new_length" in errors["reason"][0]
    distances = pd.read_csv(tmp_path / "out" / "distances.csv", keep_default_na=False)
    assert len(distances[distances["error"] == ""]) == 5  # aHash on 3 images, Fussy on 2


HOLD_PLUGIN = """
import os, time

def hold_the_large_one(image):
    # The one larger image waits (ten minutes at most, past the test's own deadline: the test
    # always leaves the marker, and the run kills its workers when stopped) for the test's
    # marker: until the run is stopped.
    if image.shape[0] > 64:
        for _ in range(6000):
            if os.path.exists({marker!r}):
                break
            time.sleep(0.1)
    return image
"""


def test_results_back_before_an_earlier_image_are_cached_when_the_run_stops(tmp_path):
    """With two workers, images finished while an earlier one still runs are kept in the cache as
    they come back: Ctrl-C then loses only the unfinished one (the results waited for their turn,
    and a stopped run had cached none of them). The workers ignore Ctrl-C and are stopped by the
    run: no traceback of theirs (and no pool left stuck, waiting for them)."""
    folder, marker = tmp_path / "images", tmp_path / "marker"
    folder.mkdir()
    cv2.imwrite(str(folder / "00.png"), make_scene(0, 96, 96))  # sent first: the largest, and first
    for seed in range(1, 7):
        cv2.imwrite(str(folder / f"{seed:02d}.png"), make_scene(seed, 64, 64))
    (tmp_path / "hold_plugin.py").write_text(HOLD_PLUGIN.format(marker=str(marker)))
    config = tmp_path / "hold.yaml"
    config.write_text(f"images: [{folder}]\nhashers: [aHash]\n"
                      "sweeps: [{family: held, b: 'hold_plugin:hold_the_large_one'}]\n")
    out, cache = tmp_path / "out", tmp_path / "cache.sqlite"
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), ROOT])}
    process = subprocess.Popen(command(config, out, "--workers", "2", "--cache", str(cache)), cwd=ROOT,
                               env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while process.poll() is None and time.monotonic() < deadline:
            if cache.exists():
                try:
                    with sqlite3.connect(f"file:{cache}?mode=ro", uri=True, timeout=5) as db:
                        if db.execute("SELECT COUNT(*) FROM files").fetchone()[0] >= 6:
                            break
                except sqlite3.OperationalError:  # not created yet
                    pass
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGINT)  # as Ctrl-C in a terminal: to the run and its workers
        _, err = process.communicate(timeout=60)
    finally:
        marker.touch()  # the held worker lets go, whatever happened
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "Traceback" not in err and err.endswith("interrupted\n"), err  # the workers ignore Ctrl-C
    with sqlite3.connect(f"file:{cache}?mode=ro", uri=True) as db:
        assert db.execute("SELECT COUNT(*) FROM files").fetchone()[0] == 6  # all but the held one


# A signal to this process just after an output set is swapped in (or just before, "before"), in the
# command line's process (process.enable) or in a Python session's (not).
SIGNAL_AT_COMMIT = """
import os, signal, sys
from harness import process, storage
if sys.argv[2] == "command line":
    process.enable()
try:
    with storage.OutputSet(sys.argv[1]) as output:
        output.write_text("a.txt", "done")
        if sys.argv[3] == "before":
            os.kill(os.getpid(), getattr(signal, sys.argv[4]))
        output.commit()
        os.kill(os.getpid(), getattr(signal, sys.argv[4]))
    print("finished")
except KeyboardInterrupt:
    print("interrupted")
print("outputs", sorted(os.listdir(sys.argv[1])) if os.path.isdir(sys.argv[1]) else None)
"""


@pytest.mark.parametrize("caller, when, sig, expected", [
    ("command line", "after", "SIGINT", ["finished", "outputs ['a.txt']"]),
    ("command line", "after", "SIGTERM", ["finished", "outputs ['a.txt']"]),
    ("command line", "before", "SIGINT", ["interrupted", "outputs None"]),
    ("Python", "after", "SIGINT", ["interrupted", "outputs ['a.txt']"]),
])
def test_a_signal_once_the_outputs_are_in_place_does_not_stop_the_command(tmp_path, caller, when, sig, expected):
    """Ctrl-C just after the new set was swapped in made the command say 'interrupted' (status 130)
    of a run whose outputs were complete, and one while the interpreter exited killed it silently
    with status 130 or 143. A Python session's own Ctrl-C handling is left as it is."""
    done = subprocess.run([sys.executable, "-c", SIGNAL_AT_COMMIT, str(tmp_path / "out"), caller, when, sig],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.stdout.splitlines() == expected, (done.stdout, done.stderr)
    assert done.returncode == 0


# The command line, with the signal sent to itself at the moment numpy's C extension imports
# `datetime` (PyCapsule_Import): the KeyboardInterrupt raised there comes out of numpy's import as an
# ImportError, as it did when Ctrl-C or `kill` came during that import.
SIGNAL_IN_NUMPY_IMPORT = """
import os, runpy, signal, sys

SIGNAL = getattr(signal, sys.argv[1])

class StopInside:
    def find_spec(self, name, path=None, target=None):
        if name == "datetime":
            sys.meta_path.remove(self)
            print("signal sent", file=sys.stderr)
            os.kill(os.getpid(), SIGNAL)
        return None

sys.meta_path.insert(0, StopInside())
sys.argv = ["harness", "run", "configs/collection.yaml", "--images", "builtin:skimage", "--hashers", "aHash",
            "--out", sys.argv[2], "--quiet"]
runpy.run_module("harness", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("sig, status, said", [("SIGTERM", 143, "terminated"), ("SIGINT", 130, "interrupted")])
def test_a_signal_a_library_turns_into_its_own_error_still_stops_the_command(tmp_path, sig, status, said):
    """Ctrl-C or SIGTERM while numpy was being imported ended the command as 'a bug in harness'
    (status 3, an ImportError, a traceback file in /tmp); while matplotlib drew a figure, as a
    ValueError ('Invalid bounding box'). It is the interruption it is, in one line."""
    (tmp_path / "tmp").mkdir()
    done = subprocess.run([sys.executable, "-c", SIGNAL_IN_NUMPY_IMPORT, sig, str(tmp_path / "out")], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, TMPDIR=str(tmp_path / "tmp")))
    assert done.stderr.splitlines() == ["signal sent", said], done.stderr
    assert done.returncode == status
    assert os.listdir(tmp_path / "tmp") == [] and not (tmp_path / "out").exists()  # no bug report, no folder


# A plugin edit that, once, sends the signal to its own process from a destructor: Python runs the
# handler there, and a KeyboardInterrupt raised in a __del__ is printed ("Exception ignored in") and
# dropped, as it was when Ctrl-C came while the collector ran one (a leak audit, 1 s in).
SIGNAL_IN_A_DESTRUCTOR = """
import os, signal

SENT = []


class Goodbye:
    def __del__(self):
        if not SENT:
            SENT.append(True)
            os.kill(os.getpid(), signal.{sig})


def brighter(image):
    Goodbye()  # gone at once
    return image // 2 + 100
"""


@pytest.mark.parametrize("sig, status, said", [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")])
def test_a_signal_python_drops_still_stops_the_command_before_its_outputs(tmp_path, sig, status, said):
    """The run went on to the end, exit 0, its outputs swapped in over the previous ones, as if
    nobody had pressed Ctrl-C. It stops before the swap, as an interrupted run does."""
    (tmp_path / "plugin_stop.py").write_text(SIGNAL_IN_A_DESTRUCTOR.format(sig=sig))
    config = tmp_path / "c.yaml"
    config.write_text("images: [builtin:astronaut, builtin:camera]\nhashers: [aHash]\n"
                      "sweeps:\n  - {family: brighter, b: plugin_stop:brighter}\n")
    done = subprocess.run([sys.executable, "-m", "harness", "run", str(config), "--out", str(tmp_path / "out"),
                           "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert "Exception ignored in" in done.stderr  # Python dropped the KeyboardInterrupt
    assert done.stderr.splitlines()[-1] == said, done.stderr
    assert done.returncode == status
    assert not (tmp_path / "out" / "run.json").exists()


def test_an_edit_that_fails_on_one_image_is_one_error_row_and_the_run_goes_on():
    """A 550 x 300 crop fits the 600 x 400 coffee but not the 512 x 512 camera: the camera's crop pairs
    carry the transform's error (for each hasher) where the other cells hold distances, errors.csv has
    one row for it (once per image and stage, not once per hasher), and Results counts the 2 failed
    distances and that row."""
    import harness

    results = harness.evaluate({
        "name": "x", "images": ["builtin:coffee", "builtin:camera"], "hashers": ["aHash", "pHash"],
        "sweeps": [{"family": "gray", "b": "grayscale"},
                   {"family": "crop", "b": {"crop": {"x": 0, "y": 0, "width": 550, "height": 300}}}]})
    reason = "crop window 550x300 at (x=0, y=0) does not fit in a 512x512 image"
    assert results.errors[["image", "stage", "reason"]].values.tolist() == [["camera", "transform", reason]]
    table = results.distances.astype({"image": str, "family": str, "hasher": str, "error": str})
    failed = table[table["error"] != ""]
    assert failed[["image", "family", "hasher"]].values.tolist() == [["camera", "crop", "aHash"],
                                                                    ["camera", "crop", "pHash"]]
    assert set(failed["error"]) == {f"transform: {reason}"} and failed["distance"].isna().all()
    assert len(table) == 8 and table.loc[table["error"] == "", "distance"].notna().all()
    assert results.failures == 3


def test_each_distinct_chain_is_planned_once_in_config_order():
    """A chain is made once per image whichever pairs and sides use it: grayscale is side b of one
    pair and side a of another, and its pixels are reused, not made twice; the untouched image is
    no chain to make."""
    from harness.config import parse_config
    from harness.runner import make_plan

    config = parse_config({"name": "x", "images": ["builtin:coffee"], "hashers": ["aHash"], "sweeps": [
        {"family": "identity"},
        {"family": "gray", "b": "grayscale"},
        {"family": "gray jpeg", "a": "grayscale", "b": ["grayscale", {"jpeg": {"quality": 50}}]},
        {"family": "jpeg", "b": {"jpeg": {"quality": "$value"}}, "values": [50, 70]}]}, "c.yaml")
    plan = make_plan(config, config.hashers, salt="")
    gray, jpeg = ("grayscale", ()), lambda quality: ("jpeg", (("quality", quality),))
    assert plan.chains == ((gray,), (gray, jpeg(50)), (jpeg(50),), (jpeg(70),))
    assert len(set(plan.chain_keys)) == 4
