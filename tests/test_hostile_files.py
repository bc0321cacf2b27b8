"""Files an image folder can hold that must not hang, exhaust or crash a run.

Each is a row of errors.csv and the run goes on: a FIFO named like an image (opening it for
reading would wait for a writer forever), a link to /dev/zero (endless bytes), a 3 GB file (read
only up to the limit tied to max_pixels: here, not at all), a name that is not valid UTF-8 (it
used to crash the run at the very end, when the tables were written), and links that loop.
Every file is read once, so one replaced during a run cannot give two different pictures.
"""

import os
import stat
import subprocess
import sys

import cv2
import pandas as pd
import pytest

from harness.__main__ import main
from tests.conftest import ROOT, make_scene

CONFIG = """
images: [{folder}]
seed: 1
hashers: [aHash, pHash]
sweeps:
  - {{family: jpeg, b: {{jpeg: {{quality: 40}}}}}}
  - {{family: blur, b: {{blur: {{kernel: 5}}}}}}
"""


@pytest.fixture
def hostile(tmp_path):
    folder = tmp_path / "scraped"
    folder.mkdir()
    for seed in range(3):
        cv2.imwrite(str(folder / f"good{seed}.png"), make_scene(seed))
    os.mkfifo(folder / "pipe.jpg")
    os.symlink("/dev/zero", folder / "zero.jpg")
    with open(folder / "huge.jpg", "wb") as handle:  # sparse: 3 GB long, no disk used
        handle.truncate(3 * 1024 ** 3)
    name = os.fsencode(str(folder)) + b"/caf\xe9 \xff.png"  # Latin-1, not UTF-8
    with open(name, "wb") as handle:
        handle.write(cv2.imencode(".png", make_scene(7))[1].tobytes())
    (folder / "loop").mkdir()
    os.symlink("..", folder / "loop" / "up")
    os.symlink("..", folder / "loop" / "again")
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG.format(folder=folder))
    return config, folder


def test_hostile_files_are_rows_of_errors(hostile, tmp_path):
    config, folder = hostile
    out = tmp_path / "out"
    # A subprocess with a time limit: a hang fails the test instead of stopping the suite.
    done = subprocess.run([sys.executable, "-m", "harness", "run", str(config), "--out", str(out), "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr  # finished, with problems
    assert "Traceback" not in done.stderr
    errors = pd.read_csv(out / "errors.csv", keep_default_na=False)
    reasons = dict(zip(errors["image"].map(os.path.basename), errors["reason"]))
    assert "not a regular file (a FIFO)" in reasons["pipe.jpg"]
    assert "not a regular file (a character device)" in reasons["zero.jpg"]
    assert "3221225472 bytes, more than an image within max_pixels can take" in reasons["huge.jpg"]
    images = pd.read_csv(out / "images.csv", keep_default_na=False)
    assert sorted(images["image"]) == ["caf\\xe9 \\xff", "good0", "good1", "good2"]
    assert "\\xe9" in (out / "summary.md").read_text(encoding="utf-8")


def test_each_file_is_read_once(hostile, tmp_path, monkeypatch):
    config, folder = hostile
    from harness import images

    reads = []
    original = images.read_file
    monkeypatch.setattr(images, "read_file", lambda path, limit: reads.append(path) or original(path, limit))
    assert main(["run", str(config), "--out", str(tmp_path / "out"), "--quiet", "--no-cache"]) == 1
    readable = [p for p in reads if os.path.basename(p).startswith(("good", "caf"))]
    assert len(readable) == len(set(readable)) == 4


def test_an_output_set_follows_the_umask_of_the_moment(tmp_path):
    """A session may set its umask after importing harness: the set's folder is made as a plain
    mkdir would make it then, like the files in it."""
    from harness import storage

    before = os.umask(0o077)
    try:
        output = storage.OutputSet(str(tmp_path / "private"))
        output.write_text("note.txt", "x\n")
        output.commit()
    finally:
        os.umask(before)
    assert stat.S_IMODE((tmp_path / "private").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "private" / "note.txt").stat().st_mode) == 0o600
