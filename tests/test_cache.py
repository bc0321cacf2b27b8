"""The hash cache holds data, never code, and nothing in it can break a run.

Every hasher's output round-trips exactly; a cache file that is damaged, foreign or hostile is
set aside with a note (never a traceback, never code run); entries that do not check out are
recomputed; and a full disk ends in one line with the previous outputs intact.
"""

import contextlib
import json
import os
import pickle
import re
import shutil
import sqlite3
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.__main__ import main
from harness.cache import Entry, FileRecord, HashCache
from harness.hashers import HASHERS
from harness.hashing import from_entries, hash_safely, to_entries
from tests.conftest import ROOT, make_scene, make_synthetic

TABLES = ("distances.csv", "impostors.csv", "table.csv", "thresholds.csv", "detection.csv", "images.csv",
          "errors.csv")

# Every registered hasher, built small where it can be (the CNNs with random weights).
BUILD = {name: {} for name in HASHERS}
BUILD.update({name: {"weights": None, "input_size": 32} for name in ("ResNet50", "MobileNetV3Small",
                                                                      "EfficientNetB0", "keras")})
BUILD["imagehash.whash"] = {"mode": "db4", "image_scale": 64}


@pytest.fixture(scope="module")
def built():
    hashers = {}
    for name, params in BUILD.items():
        hasher = HASHERS.get(name)(**params)
        hasher.prepare()
        hashers[name] = hasher
    return hashers


def roundtrip(hasher, images, tmp_path):
    hashed = hash_safely(hasher, images)
    cache = HashCache(str(tmp_path / "c.sqlite"))
    entries = to_entries(hasher, hashed)
    cache.put_image(("digest", "salt", FileRecord("0123456789ab", 10, 10, ())),
                    {"key": {str(k): e for k, e in enumerate(entries)}}, "0123456789ab")
    cache.close()
    again = HashCache(str(tmp_path / "c.sqlite"))
    found = again.get_image("key", "0123456789ab")
    again.close()
    os.remove(tmp_path / "c.sqlite")
    return hashed, from_entries(hasher, [found[str(k)] for k in range(len(images))])


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), height=st.integers(8, 300), width=st.integers(8, 300))
def test_every_hashers_output_round_trips_exactly(built, tmp_path, seed, height, width):
    images = [make_scene(seed, height, width), make_synthetic(height, width), np.zeros((height, width, 3), np.uint8)]
    for name, hasher in built.items():
        hashed, back = roundtrip(hasher, images, tmp_path)
        assert np.array_equal(hashed.rows, back.rows) and hashed.errors == back.errors, name
        if hashed.array is None:
            continue
        if hashed.array.dtype == object:  # crop_resistant_hash: ImageMultiHash objects
            assert [str(h) for h in hashed.array] == [str(h) for h in back.array], name
        else:
            assert hashed.array.dtype == back.array.dtype and np.array_equal(hashed.array, back.array), name
        ok = np.flatnonzero(hashed.rows >= 0)
        a = hashed.array[hashed.rows[ok]]
        assert np.array_equal(hasher.distance(a, a[::-1]), hasher.distance(back.array[back.rows[ok]], a[::-1]),
                              equal_nan=True), name
        for key, values in hashed.extras.items():
            assert np.array_equal(values, back.extras[key]), (name, key)


def test_entries_are_plain_arrays_never_pickles(tmp_path):
    hasher = HASHERS.get("imagehash.crop_resistant_hash")()
    hashed, _ = roundtrip(hasher, [make_synthetic()], tmp_path)
    cache = HashCache(str(tmp_path / "c.sqlite"))
    cache.put_image(None, {"k": {"x": to_entries(hasher, hashed)[0]}}, "0123456789ab")
    cache.close()
    with sqlite3.connect(tmp_path / "c.sqlite") as db:
        dtype, shape, data = db.execute("SELECT dtype, shape, data FROM hashes").fetchone()
    assert dtype == "|b1" and len(data) == np.prod(eval(shape))  # booleans, one byte each; no pickle opcodes
    assert not data.startswith(b"\x80")


# --- runs with caches that do not check out ---------------------------------------------

# crop_resistant_hash for a hash whose rows vary in shape from image to image (its segments: 3 to 6
# of them here), segmented at 96 px rather than its default 300: the same kind of rows at a ninth of
# its pure-Python segmentation's time (4 of the 6.7 s a run of this job took).
CONFIG = """
images: [{folder}]
seed: 4
hashers: [aHash, pHash, {{name: imagehash.crop_resistant_hash, id: CropResistant, segmentation_image_size: 96,
          min_segment_size: 60}}]
impostors: {{transformed: true, per_variant: 2}}
sweeps:
  - {{family: jpeg, b: {{jpeg: {{quality: $value}}}}, values: [60, 20]}}
  - {{family: blur, b: {{blur: {{kernel: 5}}}}}}
"""


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    root = tmp_path_factory.mktemp("cachejob")
    folder = root / "images"
    folder.mkdir()
    for seed in range(5):
        cv2.imwrite(str(folder / f"{seed}.png"), make_scene(seed, 160, 200))
    config = root / "c.yaml"
    config.write_text(CONFIG.format(folder=folder))
    reference = root / "reference"
    assert main(["run", str(config), "--out", str(reference), "--quiet", "--no-cache"]) == 0
    return config, reference


def same_tables(a, b):
    return all((a / name).read_bytes() == (b / name).read_bytes() for name in TABLES)


def marker_payload(marker) -> bytes:
    class Boom:
        def __reduce__(self):
            return (open, (str(marker), "w"))
    return pickle.dumps(Boom())


def old_format_cache(path, marker):
    """A cache of the earlier format (pickled values), holding a pickle that creates `marker`."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE hashes (hasher TEXT, image TEXT, item TEXT, value BLOB, "
                   "PRIMARY KEY (hasher, image, item))")
        db.execute("INSERT INTO hashes VALUES ('h', 'i', 'source', ?)", (marker_payload(marker),))


def hostile_view_cache(path, marker):
    """The right tables' names, but `hashes` a view that never ends."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        db.execute("INSERT INTO meta VALUES ('format', 'imghash-harness hash cache 2')")
        db.execute("CREATE TABLE files (digest TEXT, salt TEXT, image TEXT, info TEXT, PRIMARY KEY (digest, salt))")
        db.execute("CREATE VIEW hashes AS WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) "
                   "SELECT 'h' AS hasher, 'i' AS image, x AS item, 'x' AS dtype, '[]' AS shape, NULL AS data, "
                   "'{}' AS extras FROM n")


DAMAGE = {
    "garbage": lambda path, marker: path.write_bytes(os.urandom(5000)),
    "text": lambda path, marker: path.write_text("not a database\n" * 100),
    "old-pickles": old_format_cache,
    "hostile-view": hostile_view_cache,
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_or_hostile_cache_is_replaced_with_a_note(job, tmp_path, capsys, damage):
    config, reference = job
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text("{}")  # a harness output directory
    marker = tmp_path / "code-ran"
    DAMAGE[damage](out / "hash-cache.sqlite", marker)
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    assert same_tables(out, reference)
    assert not marker.exists(), "data in the cache ran code"
    err = capsys.readouterr().err
    assert "Traceback" not in err and "not usable" in err and "replaced by a fresh one" in err
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0  # and the fresh cache works
    assert "not usable" not in capsys.readouterr().err


def test_a_damaged_cache_elsewhere_is_left_alone(job, tmp_path, capsys):
    config, reference = job
    mine = tmp_path / "my-database.sqlite"
    mine.write_text("my own data, not a cache")
    assert main(["run", str(config), "--out", str(tmp_path / "out"), "--quiet", "--cache", str(mine)]) == 0
    assert mine.read_text() == "my own data, not a cache"
    assert "left as it is" in capsys.readouterr().err
    assert same_tables(tmp_path / "out", reference)


def test_a_cache_that_cannot_be_made_is_said_so(job, tmp_path):
    """A new cache in a folder this process cannot write in: the note said the (absent) file 'was
    left as it is'. As root, permissions bind only without the override capabilities."""
    config, reference = job
    prefix = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root, and no setpriv to drop the permission override")
        prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
    (tmp_path / "shut").mkdir()
    cache = tmp_path / "shut" / "c.sqlite"
    (tmp_path / "shut").chmod(0o555)
    try:
        done = subprocess.run([*prefix, sys.executable, "-m", "harness", "run", str(config), "--out",
                               str(tmp_path / "out"), "--quiet", "--cache", str(cache)], cwd=ROOT,
                              capture_output=True, text=True, timeout=120, check=False)
    finally:
        (tmp_path / "shut").chmod(0o755)
    if prefix and "setpriv" in done.stderr:
        pytest.skip(f"setpriv cannot drop capabilities here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert (f"note: hash cache {cache} cannot be made (unable to open database file: is its folder writable?); "
            "this run keeps no cache") in done.stderr
    assert "left as it is" not in done.stderr and not cache.exists()
    assert same_tables(tmp_path / "out", reference)


def test_a_directory_or_truncated_cache(job, tmp_path, capsys):
    config, reference = job
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    data = (out / "hash-cache.sqlite").read_bytes()
    for name in ("hash-cache.sqlite-wal", "hash-cache.sqlite-shm"):
        (out / name).unlink(missing_ok=True)
    (out / "hash-cache.sqlite").write_bytes(data[: len(data) // 2])
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    assert same_tables(out, reference)
    as_dir = tmp_path / "dir-cache"
    as_dir.mkdir()
    capsys.readouterr()
    # A directory given as the cache is refused before any work (the run went on without a cache,
    # which from the Python API nothing showed).
    assert main(["run", str(config), "--out", str(tmp_path / "o2"), "--quiet", "--cache", str(as_dir)]) == 2
    assert "is a directory; name the cache file itself" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()


def test_entries_that_do_not_check_out_are_recomputed(job, tmp_path, capsys):
    config, reference = job
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    with sqlite3.connect(out / "hash-cache.sqlite") as db:
        rows = db.execute("SELECT rowid FROM hashes ORDER BY rowid").fetchall()
        spoil = [
            "UPDATE hashes SET dtype='|O' WHERE rowid=?",  # objects: would need pickle
            "UPDATE hashes SET shape='[3, 99]' WHERE rowid=?",  # does not match the bytes
            "UPDATE hashes SET data=X'00' WHERE rowid=?",
            "UPDATE hashes SET extras='{\"quality\": NaN}' WHERE rowid=?",
            "UPDATE hashes SET extras='[1, 2]' WHERE rowid=?",
            "UPDATE hashes SET dtype='<f8', shape='[1]', data=zeroblob(8) WHERE rowid=?",  # of another type
            "UPDATE hashes SET dtype='>c16' WHERE rowid=?",
        ]
        for sql, (rowid,) in zip(spoil, rows[::7]):
            db.execute(sql, (rowid,))
        deep = "[" * 100_000 + "]" * 100_000  # JSON nested past Python's recursion limit
        db.execute("UPDATE hashes SET extras=? WHERE rowid=?", (deep, rows[1][0]))
        db.execute("UPDATE files SET info='{\"height\": -1}'")
        db.execute("UPDATE files SET info=? WHERE rowid=(SELECT MIN(rowid) FROM files)", (deep,))
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    assert same_tables(out, reference)
    assert "Traceback" not in capsys.readouterr().err


def test_a_cached_rerun_decodes_nothing(job, tmp_path, monkeypatch):
    config, reference = job
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    from harness import imagework

    def must_not_run(*args, **kwargs):
        raise AssertionError("a cached image was decoded again")

    # The first image is decoded for its previews; no other.
    decoded = []
    original = imagework.decode_source
    monkeypatch.setattr(imagework, "decode_source", lambda *a, **k: decoded.append(a[0]) or original(*a, **k))
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    assert len(decoded) == 1
    assert same_tables(out, reference)


def test_a_rerun_with_another_max_side_decodes_its_files_anew(tmp_path):
    """A cached file is the image it decoded to under the run's reading rules, max_side among them: a
    rerun on the same cache with another max_side (64, then none, then 64 again) gives what a run
    without a cache gives, not the image decoded under the other limit."""
    import harness

    config = {"images": ["builtin:astronaut", "builtin:camera"], "hashers": ["pHash"],
              "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": 50}}}]}
    cache = tmp_path / "c.sqlite"
    for max_side in (64, None, 64):
        cached = harness.evaluate({**config, "max_side": max_side}, cache=cache)
        fresh = harness.evaluate({**config, "max_side": max_side})
        assert cached.images.equals(fresh.images), max_side
        assert cached.distances.equals(fresh.distances) and cached.impostors.equals(fresh.impostors), max_side
        assert (cached.images["width"].max() == 64) == (max_side == 64)


def test_two_runs_making_one_new_cache_at_once_share_it(tmp_path):
    """Another run is making the cache (its tables written, not yet committed) as this one opens it:
    this one waits and uses it. It used to find it empty, fail to make its tables ("table meta
    already exists"), call the file damaged and delete it, the other run's hashes with it."""
    import threading
    import time

    from harness.cache import FORMAT, SCHEMA

    path = tmp_path / "hash-cache.sqlite"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("PRAGMA journal_mode=WAL")
    other.execute("BEGIN IMMEDIATE")
    for sql in SCHEMA.values():
        other.execute(sql)
    other.execute("INSERT INTO meta VALUES ('format', ?)", (FORMAT,))
    other.execute("INSERT INTO files VALUES ('digest', 'salt', 'image', '{}')")
    opened = {}
    opening = threading.Thread(target=lambda: opened.setdefault("cache", HashCache(str(path))))
    opening.start()
    time.sleep(1.0)  # it reads the schema (empty, as committed) and waits for the write lock
    other.execute("COMMIT")
    opening.join(60)
    cache = opened["cache"]
    assert cache.active and cache.summary_notes() == []
    assert other.execute("SELECT count(*) FROM files").fetchone() == (1,)  # the other run's entry is there
    cache.close()
    other.close()


def _open_at_the_barrier(path, barrier, results):
    barrier.wait()
    cache = HashCache(path)
    results.put((cache.active, cache.summary_notes()))
    cache.close()


def test_runs_opening_one_new_cache_at_the_same_moment_all_use_it(tmp_path):
    """Four processes open one new cache at once, twenty times over. SQLite answers one of them
    "database is locked" at once (switching a new file to WAL), which was called damage: the
    cache was replaced, deleted under the others (3 rounds in 30 in a review). It is a busy cache."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    for round_ in range(20):
        path = str(tmp_path / f"{round_}" / "hash-cache.sqlite")
        os.makedirs(os.path.dirname(path))
        barrier, results = context.Barrier(4), context.Queue()
        processes = [context.Process(target=_open_at_the_barrier, args=(path, barrier, results)) for _ in range(4)]
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=60) for _ in processes]
        for process in processes:
            process.join(timeout=60)
        assert outcomes == [(True, [])] * 4, (round_, outcomes)


READ_ONLY = """
set -e
mount --bind {folder} {folder}
mount -o remount,ro,bind {folder}
set +e
{python} -m harness run {config} --out {out} --quiet --cache {cache} 2> {stderr}
echo $? > {status}
{python} -m harness run {config2} --out {out2} --quiet --cache {cache} 2> {stderr2}
echo $? >> {status}
"""


def test_a_read_only_cache_is_read_and_left_unchanged(job, tmp_path):
    """A shared cache on a read-only mount (a private mount namespace, where the machine allows one):
    SQLite cannot open it as usual (its write-ahead log needs files beside it), but its hashes are
    used; new ones are not stored, and the notes say so."""
    if not shutil.which("unshare") or subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode:
        pytest.skip("cannot mount here: unshare -rm (user and mount namespaces) is not allowed")
    config, reference = job
    folder = tmp_path / "shared"
    folder.mkdir()  # a cache's folder is the user's to make (--cache makes none)
    cache = folder / "hashes.sqlite"
    assert main(["run", str(config), "--out", str(tmp_path / "first"), "--quiet", "--cache", str(cache)]) == 0
    before = sorted((path.name, path.read_bytes()) for path in folder.iterdir())
    config2 = tmp_path / "c2.yaml"  # another edit too: one new result per image
    config2.write_text(config.read_text().replace("[60, 20]", "[60, 20, 10]"))
    assert "[60, 20, 10]" in config2.read_text()
    names = {name: tmp_path / name for name in ("out", "out2", "stderr", "stderr2", "status")}
    script = READ_ONLY.format(folder=folder, python=sys.executable, config=config, config2=config2, cache=cache,
                              **names)
    done = subprocess.run(["unshare", "-rm", "bash", "-c", textwrap.dedent(script)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    if "mount" in done.stderr and done.returncode:
        pytest.skip(f"cannot mount read-only here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert names["status"].read_text().split() == ["0", "0"], names["stderr"].read_text() + names["stderr2"].read_text()
    assert f"note: hash cache {cache} is read-only here: it was read, and held every hash this run needed\n" in \
        names["stderr"].read_text()
    assert same_tables(names["out"], reference)
    assert f"note: hash cache {cache} is read-only here: it was read, and the new results of 5 images were not " \
           "stored in it\n" in names["stderr2"].read_text()
    assert sorted((path.name, path.read_bytes()) for path in folder.iterdir()) == before  # no log files, no change
    # run.json's record and the summary's line say the cache was only read, and what came from it.
    stored = json.loads((tmp_path / "first" / "run.json").read_text())["cache"]["hashes_computed"]
    records = [json.loads((names[out] / "run.json").read_text())["cache"] for out in ("out", "out2")]
    assert [{key: record[key] for key in record if key not in ("path", "absolute_path")} for record in records] == [
        {"opened": True, "read_only": True, "images_from_cache": 5, "images_computed": 0,
         "hashes_from_cache": stored, "hashes_computed": 0, "entries_rejected": 0},
        {"opened": True, "read_only": True, "images_from_cache": 0, "images_computed": 5,
         "hashes_from_cache": stored, "hashes_computed": 5 * 3, "entries_rejected": 0}]  # JPEG 10, three hashers
    assert f"read from the hash cache `{cache}` (read-only) (images: 5 hashed in this run" in \
        (names["out2"] / "summary.md").read_text()


FULL_DISK = """
set -e
mount -t tmpfs -o size={size} tmpfs {mount}
{python} -m harness run {config} --out {mount}/out --quiet
cp -r {mount}/out {saved}
# Fill the disk, then run again (another seed: new hashes for the cache, new tables for the outputs).
cat /dev/zero > {mount}/filler 2>/dev/null || true
set +e
{python} -m harness run {config2} --out {mount}/out --quiet 2> {stderr}
echo $? > {status}
diff -r -x 'hash-cache*' {saved} {mount}/out > {diff} 2>&1
echo $? > {diff}.status
# New output folders, and a new --cache file, that the full disk left without a hash: none is left behind.
cat /dev/zero >> {mount}/filler 2>/dev/null || true
{python} -m harness run {config2} --out {mount}/new --quiet 2> {stderr}.new
echo $? > {status}.new
{python} -m harness run {config2} --cache {mount}/c.sqlite --out {mount}/new2 --quiet 2>> {stderr}.new
echo $? >> {status}.new
ls -A {mount} > {listing}
"""


def test_a_full_disk_ends_in_one_line_and_keeps_the_outputs(job, tmp_path):
    """On a small tmpfs, mounted in a private mount namespace (unshare) where the machine allows it."""
    if not shutil.which("unshare") or subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here: unshare -rm (user and mount namespaces) is not allowed")
    config, _ = job
    config2 = tmp_path / "c2.yaml"
    config2.write_text(config.read_text().replace("seed: 4", "seed: 5").replace("[60, 20]", "[60, 20, 10]"))
    mount = tmp_path / "small"
    mount.mkdir()
    script = FULL_DISK.format(size="3m", mount=mount, python=sys.executable, config=config, config2=config2,
                              saved=tmp_path / "saved", stderr=tmp_path / "stderr", status=tmp_path / "status",
                              diff=tmp_path / "diff", listing=tmp_path / "listing")
    done = subprocess.run(["unshare", "-rm", "bash", "-c", textwrap.dedent(script)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    if "mount" in done.stderr and done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    status = int((tmp_path / "status").read_text())
    stderr = (tmp_path / "stderr").read_text()
    assert status == 2, stderr
    assert "Traceback" not in stderr
    error = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "disk is full" in error[0] and "previous outputs are unchanged" in error[0], stderr
    assert stderr.splitlines()[-1] == error[0]  # last, after the notes of the pass
    assert any(line.startswith("note: hash cache") and "keeps no cache" in line for line in stderr.splitlines()), \
        stderr  # the cache went with the disk: the error line alone would promise what it no longer keeps
    # The mount is gone with the namespace: the script compared the outputs with a copy made before.
    assert (tmp_path / "saved" / "summary.md").exists()
    assert (tmp_path / "diff.status").read_text().strip() == "0", (tmp_path / "diff").read_text()
    assert (tmp_path / "status.new").read_text().split() == ["2", "2"], (tmp_path / "stderr.new").read_text()
    assert (tmp_path / "listing").read_text().split() == ["filler", "out"], (tmp_path / "stderr.new").read_text()


KEPT_ON_FULL_DISK = """
set -e
mount -t tmpfs -o size={size} tmpfs {mount}
{python} -m harness run {config} --out {mount}/out --quiet
{python} -c "{count}" {mount}/out/hash-cache.sqlite > {counts}
cat /dev/zero > {mount}/filler 2>/dev/null || true
set +e
{python} -m harness run {config2} --out {mount}/out --quiet 2> {stderr}
echo $? > {status}
set -e
{python} -c "{count}" {mount}/out/hash-cache.sqlite >> {counts}
rm {mount}/filler
{python} -m harness run {config} --out {mount}/out --quiet 2> {stderr}.again
"""
# Read as immutable: on the full disk SQLite cannot make the -shm file a usual reader needs (each run
# closes its cache with its log checkpointed, so the file alone holds every entry).
COUNT = ("import sqlite3, sys; db = sqlite3.connect('file:' + sys.argv[1] + '?immutable=1', uri=True); "
         "print(db.execute('SELECT COUNT(*) FROM sqlite_master WHERE name=?', ('hashes',)).fetchone()[0] "
         "and db.execute('SELECT COUNT(*) FROM hashes').fetchone()[0])")


def test_a_full_disk_at_the_start_of_a_rerun_keeps_the_cache(job, tmp_path):
    """A rerun that starts on a disk already full (SQLite cannot make the -shm file the cache's
    write-ahead log needs, 'disk I/O error') leaves the cache as it is: it deleted it as if it were
    damaged, losing every hash computed before, so the rerun after space was freed hashed it all again."""
    if not shutil.which("unshare") or subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here: unshare -rm (user and mount namespaces) is not allowed")
    config, _ = job
    config2 = tmp_path / "c2.yaml"  # another seed: a run that needs the cache, not the kept set
    config2.write_text(config.read_text().replace("seed: 4", "seed: 5"))
    mount = tmp_path / "small"
    mount.mkdir()
    names = {name: tmp_path / name for name in ("counts", "stderr", "status")}
    script = KEPT_ON_FULL_DISK.format(size="3m", mount=mount, python=sys.executable, config=config, config2=config2,
                                      count=COUNT, **names)
    done = subprocess.run(["unshare", "-rm", "bash", "-c", textwrap.dedent(script)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    if "mount" in done.stderr and done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    stderr = names["stderr"].read_text()
    assert names["status"].read_text().strip() == "2", stderr
    before, after = names["counts"].read_text().split()
    assert int(before) > 0 and after == before, stderr  # every hash still there for the next run
    assert f"note: hash cache {mount}/out/hash-cache.sqlite cannot be opened here" in stderr, stderr
    assert "hash cache" not in (tmp_path / "stderr.again").read_text()


NEW_CACHE_ON_FULL_DISK = """
set -e
mount -t tmpfs -o size=1m tmpfs {mount}
touch {mount}/mine.sqlite
for free in 0 16; do
  rm -f {mount}/filler
  cat /dev/zero > {mount}/filler 2>/dev/null || true
  if [ $free -gt 0 ]; then truncate -s -${{free}}K {mount}/filler; fi
  {python} -c "{open}" {mount}/new.sqlite {mount}/mine.sqlite
  ls -A {mount} | tr '\\n' ' '; echo
done
"""
OPEN = ("import sys; from harness.cache import HashCache\n"
        "for path in sys.argv[1:]:\n    cache = HashCache(path); cache.close(); print(*cache.notes)")


def test_a_new_cache_that_a_full_disk_leaves_unmade_is_removed_again(tmp_path):
    """A new --cache on a full disk: the run kept no cache, but left the file SQLite had made (empty,
    or a header page with its -wal and -shm files where a few KiB were free) and said it 'was left as
    it is', as if it were the user's. It is removed again; a file that was there before the run (an
    empty one the user made) is left."""
    if not shutil.which("unshare") or subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here: unshare -rm (user and mount namespaces) is not allowed")
    mount = tmp_path / "small"
    mount.mkdir()
    script = NEW_CACHE_ON_FULL_DISK.format(mount=mount, python=sys.executable, open=OPEN)
    done = subprocess.run(["unshare", "-rm", "bash", "-c", textwrap.dedent(script)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    if "mount" in done.stderr and done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 6, done.stdout
    for new, mine, listing in (lines[:3], lines[3:]):
        assert re.fullmatch(rf"hash cache {mount}/new.sqlite cannot be made \((database or disk is full|disk I/O "
                            r"error)\); this run keeps no cache", new), done.stdout
        assert mine.startswith(f"hash cache {mount}/mine.sqlite cannot be opened here") or "left as it is" in mine, \
            done.stdout
        names = listing.split()  # (SQLite's side files of mine.sqlite may stay: not this run's to judge)
        assert "mine.sqlite" in names and not any(name.startswith("new.sqlite") for name in names), done.stdout


def run_with_its_cache(config, out):
    """A run, its cache's log moved into the file (so that the file's bytes are the cache): the
    file's path, its page size, its hash entries, and the root page of the hashes' index."""
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    path = out / "hash-cache.sqlite"
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = db.execute("PRAGMA page_size").fetchone()[0]
        stored = db.execute("SELECT COUNT(*) FROM hashes").fetchone()[0]
        root = db.execute("SELECT rootpage FROM sqlite_master WHERE type='index' AND tbl_name='hashes'").fetchone()[0]
    finally:
        db.close()
    return path, page, stored, root


def test_an_entry_damaged_on_disk_is_recomputed_and_the_cache_kept(job, tmp_path, capsys):
    """Bytes of one entry's text overwritten in the file (text SQLite hands over undecoded): that
    entry is recomputed and stored again, the rest of the cache still serves the run, and the
    next run finds everything."""
    config, reference = job
    out = tmp_path / "out"
    path, *_ = run_with_its_cache(config, out)
    data = bytearray(path.read_bytes())
    dtype = re.search(rb"[0-9a-f]{64}([<>|][fiub]\d)", data).start(1)  # a row's shape follows its digest key
    data[dtype:dtype + 3] = b"\xff" * 3
    path.write_bytes(bytes(data))
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "1 entries did not check out and were recomputed" in err and "keeps no cache" not in err, err
    assert same_tables(out, reference)
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    assert "hash cache" not in capsys.readouterr().err  # repaired: nothing recomputed


def test_a_damaged_index_is_left_behind_in_a_fresh_cache_with_the_entries_that_read(job, tmp_path, capsys):
    """Pages of the hashes' index overwritten (no write repairs an index that no longer matches its
    table), with one entry's text spoiled too (what makes the cache check the file): the cache is
    copied, entry by entry, into a fresh file, the run's tables are unchanged, and the next run
    finds everything."""
    config, reference = job
    out = tmp_path / "out"
    path, page, _, root = run_with_its_cache(config, out)
    with contextlib.closing(sqlite3.connect(path)) as db:  # one entry far along: the repair reads rows, not rowids
        db.execute("UPDATE hashes SET rowid = ? WHERE rowid = (SELECT max(rowid) FROM hashes)", (1 << 62,))
        db.commit()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    dtype = re.search(rb"[0-9a-f]{64}([<>|][fiub]\d)", data).start(1)
    data[dtype:dtype + 3] = b"\xff" * 3
    start = (root - 1) * page + 12  # past the page's header: its cells point nowhere now
    data[start:root * page] = b"\x00" * (page - 12)
    path.write_bytes(bytes(data))
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "readable entries were kept in a fresh file" in err, err
    assert same_tables(out, reference)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    assert "hash cache" not in capsys.readouterr().err


def test_a_damaged_table_page_costs_only_its_rows(job, tmp_path, capsys):
    """A page of the hashes table overwritten: reading it fails as "malformed". The repair copied
    the table in one scan, which stopped at that page, lost everything, and left the damaged file
    to fail every later run; it reads by ranges of rows now, and keeps the rows of other pages."""
    config, reference = job
    out = tmp_path / "out"
    path, page, stored, _ = run_with_its_cache(config, out)
    data = bytearray(path.read_bytes())
    row = re.search(rb"[0-9a-f]{64}([<>|][fiub]\d)", data).start(1)  # inside a leaf page of the hashes table
    leaf = row // page * page
    assert data[leaf] == 0x0D  # a table's leaf page
    data[leaf:leaf + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    kept = int(re.search(r"its (\d+) readable entries were kept in a fresh file", err).group(1))
    assert stored // 2 < kept < stored, err  # the damaged page's rows only are computed again
    assert same_tables(out, reference)
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    assert "hash cache" not in capsys.readouterr().err


def test_entries_that_do_not_check_out_are_counted_once(job, tmp_path):
    """A row of undecodable text makes the cache check the file and read the image's rows again:
    the rows rejected before it were counted twice."""
    config, _ = job
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    path = out / "hash-cache.sqlite"
    with sqlite3.connect(path) as db:
        hasher, image = db.execute("SELECT hasher, image FROM hashes GROUP BY hasher, image "
                                   "HAVING COUNT(*) >= 2 LIMIT 1").fetchone()
        first, second = [row[0] for row in db.execute("SELECT rowid FROM hashes WHERE hasher=? AND image=? "
                                                      "ORDER BY rowid LIMIT 2", (hasher, image))]
        db.execute("UPDATE hashes SET extras='not json' WHERE rowid=?", (first,))
        db.execute("UPDATE hashes SET item=CAST(X'FF' AS TEXT) WHERE rowid=?", (second,))
    cache = HashCache(str(path))
    try:
        cache.get_image(hasher, image)
        assert cache.rejected == 2
    finally:
        cache.close()


def test_a_damaged_root_page_ends_the_repair_with_a_fresh_cache(job, tmp_path, capsys):
    """Every read of the hashes table fails: the repair ends (a version of it read on for good,
    counting only empty reads) with a fresh cache, and the next run fills it."""
    config, reference = job
    out = tmp_path / "out"
    path, page, _, _ = run_with_its_cache(config, out)
    with contextlib.closing(sqlite3.connect(path)) as db:
        root = db.execute("SELECT rootpage FROM sqlite_master WHERE type='table' AND name='hashes'").fetchone()[0]
    data = bytearray(path.read_bytes())
    data[(root - 1) * page:(root - 1) * page + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    assert "its 0 readable entries were kept in a fresh file" in capsys.readouterr().err
    assert same_tables(out, reference)
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    assert "hash cache" not in capsys.readouterr().err


# --- entries of another form than their hasher's -----------------------------------------

def reshape_one_image(path, shape="[9]", width=9) -> int:
    """One image's entries of one of its bit hashers (8 bytes a row) made rows of `width` bytes,
    each entry self-consistent (its shape matches its bytes): how many entries were changed."""
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        hasher, image = db.execute("SELECT hasher, image FROM hashes WHERE shape='[8]' ORDER BY hasher, image "
                                   "LIMIT 1").fetchone()
        return db.execute("UPDATE hashes SET shape=?, data=zeroblob(?) WHERE hasher=? AND image=?",
                          (shape, width, hasher, image)).rowcount


def stored_forms(path) -> set:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return set(db.execute("SELECT dtype, shape, length(data) FROM hashes WHERE dtype != 'error'"))


def test_entries_of_another_shape_than_their_hasher_gives_are_recomputed(job, tmp_path, capsys):
    """An image's entries that check out by themselves but are not what their hasher gives (9 bytes
    where aHash and pHash give 8) are computed again and stored again: they crashed the run, their rows
    meeting the other images' (exit 3, "could not broadcast input array from shape (1,8) into (1,9)")."""
    config, reference = job
    out = tmp_path / "out"
    path, *_ = run_with_its_cache(config, out)
    before = stored_forms(path)
    changed = reshape_one_image(path)
    assert changed > 1
    capsys.readouterr()
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"{changed} entries did not check out and were recomputed" in err and "Traceback" not in err, err
    assert same_tables(out, reference)
    assert stored_forms(path) == before  # rewritten as the hasher gives them
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    assert "hash cache" not in capsys.readouterr().err  # nothing left to recompute


LEAK_TABLES = ("leaks.csv", "groups.csv", "estimates.csv", "errors.csv")


def test_a_leak_audits_entry_of_another_shape_is_recomputed(tmp_path, capsys):
    """The same for a leak audit, whose rows of the images are stacked (exit 3, "all input arrays
    must have the same shape")."""
    for split, seeds in (("train", range(4)), ("test", (1, 7, 8))):
        (tmp_path / split).mkdir()
        for seed in seeds:
            cv2.imwrite(str(tmp_path / split / f"{seed}.png"), make_scene(seed, 120, 160))

    def audit(out, *cache):
        return main(["leaks", "--train", str(tmp_path / "train"), "--test", str(tmp_path / "test"),
                     "--hashers", "aHash", "--threshold", "6", "--out", str(out), "--quiet", *cache])

    assert audit(tmp_path / "reference", "--no-cache") == 0
    path = tmp_path / "h2.sqlite"
    assert audit(tmp_path / "first", "--cache", str(path)) == 0
    before = stored_forms(path)
    assert reshape_one_image(path) == 1
    capsys.readouterr()
    assert audit(tmp_path / "out", "--cache", str(path)) == 0
    err = capsys.readouterr().err
    assert "1 entries did not check out and were recomputed" in err and "Traceback" not in err, err
    for name in LEAK_TABLES:
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "reference" / name).read_bytes(), name
    assert stored_forms(path) == before


def test_every_hashers_rows_have_the_form_it_declares(built, tmp_path):
    """Hasher.row_form, which the cache holds entries to, is what each hasher gives (None: any length)."""
    from harness.cache import fits
    from harness.hashing import row_form

    images = [make_scene(1, 90, 120), make_synthetic(200, 60)]
    for name, hasher in built.items():
        form = row_form(hasher)
        assert form is not None, name
        hashed = hash_safely(hasher, images)
        assert not hashed.errors, name
        assert all(fits(entry.row, form) for entry in to_entries(hasher, hashed)), (name, form)


PLUGIN_CONFIG = """
images: [builtin:camera, builtin:coffee, builtin:astronaut]
hashers: [examples.plugins:ColorHistogram]
sweeps: [{family: jpeg, b: {jpeg: {quality: 50}}}]
"""


@pytest.mark.parametrize("which", ["later", "first"])
def test_a_hasher_that_declares_no_form_is_held_to_its_first_rows(tmp_path, capsys, which):
    """A plugin that declares no row form (its rows stacked as they are): its rows are held to the form
    of its hash of a made-up image, so an image's cached rows of another shape are computed again,
    the first image's too (held to the first row seen, the first image's would have made every other
    image a failure). Both crashed the run."""
    config = tmp_path / "c.yaml"
    config.write_text(PLUGIN_CONFIG)

    def run(out, *cache):
        return main(["run", str(config), "--out", str(out), "--quiet", "--workers", "1", *cache])

    assert run(tmp_path / "reference", "--no-cache") == 0
    path = tmp_path / "h.sqlite"
    assert run(tmp_path / "out", "--cache", str(path)) == 0
    before = stored_forms(path)
    changed = reshape_one_images_rows(path, which)
    capsys.readouterr()
    status = run(tmp_path / "out", "--cache", str(path))
    err = capsys.readouterr().err
    assert "Traceback" not in err and "a bug in harness" not in err, err
    assert status == 0 and f"{changed} entries did not check out and were recomputed" in err, err
    assert same_tables(tmp_path / "out", tmp_path / "reference")
    assert stored_forms(path) == before


def reshape_one_images_rows(path, which: str) -> int:
    """Give the cache's rows of its first or last image ("first", "later") another shape, of
    consistent length (3 float64s); returns how many rows changed."""
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        order = "DESC" if which == "later" else "ASC"
        (image,) = db.execute(f"SELECT image FROM files ORDER BY rowid {order} LIMIT 1").fetchone()
        return db.execute("UPDATE hashes SET shape='[3]', data=zeroblob(24) WHERE image=?", (image,)).rowcount


@pytest.mark.parametrize("which", ["later", "first"])
def test_a_leak_audits_hasher_that_declares_no_form_is_held_to_its_first_rows(tmp_path, capsys, which):
    """The same in a leak audit, whose rows of the images are stacked and compared across splits."""
    for split, seeds in (("train", range(3)), ("test", (1, 7))):
        (tmp_path / split).mkdir()
        for seed in seeds:
            cv2.imwrite(str(tmp_path / split / f"{seed}.png"), make_scene(seed, 120, 160))

    def audit(out, *cache):
        return main(["leaks", "--train", str(tmp_path / "train"), "--test", str(tmp_path / "test"), "--hashers",
                     "examples.plugins:ColorHistogram", "--threshold", "0.1", "--out", str(out), "--quiet",
                     "--workers", "1", *cache])

    assert audit(tmp_path / "reference", "--no-cache") == 0
    path = tmp_path / "h.sqlite"
    assert audit(tmp_path / "first", "--cache", str(path)) == 0
    before = stored_forms(path)
    reshape_one_images_rows(path, which)
    capsys.readouterr()
    status = audit(tmp_path / "out", "--cache", str(path))
    err = capsys.readouterr().err
    assert "Traceback" not in err and "a bug in harness" not in err, err
    assert status == 0 and "1 entries did not check out and were recomputed" in err, err
    for name in LEAK_TABLES:
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "reference" / name).read_bytes(), name
    assert stored_forms(path) == before


def test_rows_that_do_not_fit_the_first_ones_are_failures_never_a_crash():
    """Where a hasher's form is not known before its rows meet (it declares none, and its hash of the
    made-up image failed), rows of another form than the first image's are that image's failure, in
    a run and in a leak audit: a crash where the rows are gathered before."""
    from harness.leaks import _decoded
    from harness.runner import Collector

    hasher = HASHERS.get("aHash")()
    good, wide = Entry(np.zeros(8, np.uint8)), Entry(np.zeros(9, np.uint8))
    form = (np.dtype(np.uint8), (8,))
    assert Collector._decode(hasher, [good, good], form).rows.tolist() == [0, 1]
    hashed = Collector._decode(hasher, [wide, wide], form)
    assert hashed.array is None and "uint8 (9,), where the first image's are uint8 (8,)" in hashed.errors[0]
    assert _decoded(hasher, good, form).rows.tolist() == [0]
    hashed = _decoded(hasher, wide, form)
    assert hashed.array is None and "uint8 (9,), where the first file's is uint8 (8,)" in hashed.errors[0]


def test_a_name_that_is_not_a_path_is_never_looked_for_on_disk(tmp_path, monkeypatch):
    """weights: imagenet and an overlay's builtin:logo are names: a folder `imagenet` where the run
    starts neither changes ResNet50's cache key nor is a file a Dask worker must hold; a path is both."""
    from harness.config import HasherSpec
    from harness.imagework import plan_files
    from harness.runner import hasher_key

    resnet = HASHERS.get("ResNet50")()
    monkeypatch.chdir(tmp_path)
    before = hasher_key(resnet, {})
    (tmp_path / "imagenet").mkdir()
    (tmp_path / "builtin:logo").write_bytes(b"not the logo")
    assert hasher_key(resnet, {}) == before
    assert plan_files((HasherSpec("ResNet50", "ResNet50", ()),),
                      ((("overlay_image", (("source", "builtin:logo"),)),),)) == ()
    weights = tmp_path / "w.h5"
    weights.write_bytes(b"weights")
    named = plan_files((HasherSpec("ResNet50", "ResNet50", (("weights", str(weights)),)),), ())
    assert [(key, path) for key, path, *_ in named] == [("weights of hasher ResNet50", str(weights))]


@pytest.fixture(scope="module")
def quick_job(tmp_path_factory):
    """A small run (three images, two fast hashers) and its tables without a cache."""
    root = tmp_path_factory.mktemp("quickjob")
    folder = root / "images"
    folder.mkdir()
    for seed in range(3):
        cv2.imwrite(str(folder / f"{seed}.png"), make_scene(seed, 96, 128))
    config = root / "c.yaml"
    config.write_text(f"images: [{folder}]\nseed: 4\nhashers: [aHash, pHash]\n"
                      "sweeps: [{family: jpeg, b: {jpeg: {quality: $value}}, values: [60, 20]}]\n")
    reference = root / "reference"
    assert main(["run", str(config), "--out", str(reference), "--quiet", "--no-cache"]) == 0
    return config, reference


def dead_pid() -> int:
    """The id of a process that has ended (a child reaped here: its id is free, and reused only
    after the kernel has gone through the whole range)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def leave_salvage(out, pid, content: bytes) -> list:
    """What a repair killed midway leaves beside the cache in `out`: its fresh file and SQLite's log."""
    fresh = out / f"hash-cache.sqlite.salvage-{pid}"
    fresh.write_bytes(content)
    (out / f"hash-cache.sqlite.salvage-{pid}-wal").write_bytes(b"")
    return sorted(path.name for path in out.iterdir() if ".salvage-" in path.name)


def test_a_repair_killed_midway_leaves_nothing_that_stops_the_next_run(quick_job, tmp_path, capsys):
    """A run killed (kill -9) while it repaired a damaged cache left hash-cache.sqlite.salvage-PID
    beside it, and every later run refused the output directory as holding a file it did not write.
    A dead process's leftovers are removed with a note, also when the cache is damaged again and
    repaired by this run, and with --no-cache (they go with the old set)."""
    config, reference = quick_job
    out = tmp_path / "out"
    path, page, _, root = run_with_its_cache(config, out)
    assert leave_salvage(out, dead_pid(), path.read_bytes())
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "removed what a repair of it, stopped before it ended, left beside it (hash-cache.sqlite.salvage-" in err
    assert not [p for p in out.iterdir() if ".salvage-" in p.name] and same_tables(out, reference)
    assert "deleted or replaced" not in err, err

    # Damaged again (an index page overwritten, one entry's text spoiled): this run's repair goes on.
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    dtype = re.search(rb"[0-9a-f]{64}([<>|][fiub]\d)", data).start(1)
    data[dtype:dtype + 3] = b"\xff" * 3
    data[(root - 1) * page + 12:root * page] = b"\x00" * (page - 12)
    path.write_bytes(bytes(data))
    leave_salvage(out, dead_pid(), b"")
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "removed what a repair of it" in err and "readable entries were kept in a fresh file" in err, err
    assert "deleted or replaced" not in err, err  # the repair's own new file is the cache the run closes
    assert not [p for p in out.iterdir() if ".salvage-" in p.name] and same_tables(out, reference)
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    leave_salvage(out, dead_pid(), b"")
    assert main(["run", str(config), "--out", str(out), "--quiet", "--no-cache"]) == 0
    assert not [p for p in out.iterdir() if ".salvage-" in p.name] and same_tables(out, reference)


KILLED_AT_THE_RENAME = """
import os, signal, sys

def hook(event, args):  # kill -9 as the repair puts its fresh file in the cache's place
    if event == "os.rename" and ".salvage-" in str(args[0]):
        os.kill(os.getpid(), signal.SIGKILL)

sys.addaudithook(hook)
from harness.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_repair_killed_at_its_last_step_loses_no_hash(quick_job, tmp_path, capsys):
    """The repair deleted the damaged cache, then renamed its fresh file into its place: killed between
    the two, the cache was gone, and its entries only in the leftover file, which the next run
    removes. The fresh file now replaces the damaged one in one rename: killed there, the damaged
    cache is still in place, and the next run repairs it again, computing nothing it had."""
    config, reference = quick_job
    out = tmp_path / "out"
    path, page, _, root = run_with_its_cache(config, out)
    data = bytearray(path.read_bytes())
    dtype = re.search(rb"[0-9a-f]{64}([<>|][fiub]\d)", data).start(1)
    data[dtype:dtype + 3] = b"\xff" * 3
    data[(root - 1) * page + 12:root * page] = b"\x00" * (page - 12)
    path.write_bytes(bytes(data))
    killed = subprocess.run([sys.executable, "-c", KILLED_AT_THE_RENAME, "run", str(config), "--out", str(out),
                             "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    assert path.exists() and [p for p in out.iterdir() if ".salvage-" in p.name], sorted(out.iterdir())
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "removed what a repair of it" in err and "readable entries were kept in a fresh file" in err, err
    # Only the image of the spoiled entry is hashed again (the old order: all three, the cache being gone).
    assert "(images: 1 hashed in this run, wholly or partly, 2 read wholly from the cache)" in \
        (out / "summary.md").read_text()
    assert same_tables(out, reference)


def test_a_live_repairs_file_is_never_touched(quick_job, tmp_path, capsys):
    """Another run repairing the cache (its process alive, or, where its id is not seen here, holding
    the lock a repair holds on its file) keeps its file: this run refuses the directory, naming it."""
    from harness.cache import stale_salvage_files

    config, _ = quick_job
    out = tmp_path / "out"
    run_with_its_cache(config, out)
    with subprocess.Popen(["sleep", "60"]) as other:
        try:
            names = leave_salvage(out, other.pid, b"")
            assert main(["run", str(config), "--out", str(out), "--quiet"]) == 2
            assert f"(it holds {names[0]}, {names[1]})" in capsys.readouterr().err
            assert sorted(p.name for p in out.iterdir() if ".salvage-" in p.name) == names
        finally:
            other.kill()
    for name in names:
        os.remove(out / name)
    names = leave_salvage(out, dead_pid(), b"")
    with open(out / names[0], "rb") as held:
        import fcntl

        fcntl.flock(held, fcntl.LOCK_EX)
        assert stale_salvage_files(str(out / "hash-cache.sqlite")) == []
    assert stale_salvage_files(str(out / "hash-cache.sqlite")) == names
    for name in names:
        os.remove(out / name)
    (out / f"hash-cache.sqlite.salvage-{dead_pid()}").mkdir()  # a repair makes files only: this is the user's
    assert stale_salvage_files(str(out / "hash-cache.sqlite")) == []


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_cache_deleted_during_the_run_is_said_so(tmp_path, how):
    """`rm` of the cache while a run works: SQLite goes on writing to the deleted file without an error,
    and the run's hashes went with it, unsaid. The note says so; a cache left in place gets none."""
    from harness.cache import in_use

    path = str(tmp_path / "c.sqlite")
    record = ("digest", "salt", FileRecord("0123456789ab", 10, 10, ()))
    entry = {"key": {"source": Entry(np.zeros(8, np.uint8))}}
    kept = HashCache(path)
    kept.put_image(record, entry, "0123456789ab")
    kept.close()
    assert kept.summary_notes() == []
    cache = HashCache(path)
    cache.put_image(record, entry, "0123456789ab")
    os.remove(path)
    if how == "replaced":  # another run made a new cache there meanwhile
        HashCache(path).close()
    cache.put_image(record, entry, "123456789abc")
    assert cache.summary_notes() == []
    cache.close()
    assert cache.summary_notes() == [f"hash cache {path} was deleted or replaced by another process during the run: "
                                     "what this run stored in it after that was not kept (a rerun computes it again)"]


def test_a_repaired_cache_is_held_as_the_first_was(tmp_path):
    """The repair closed the damaged file, and with it the lock that tells another run the cache is in
    use (in_use: a run that stops removes a new cache it made that holds nothing), and never took it
    again on the fresh file. Nor is the fresh file, the run's own, taken for a cache deleted under it."""
    from harness.cache import in_use

    cache = HashCache(str(tmp_path / "hash-cache.sqlite"))
    cache.put_image(("digest", "salt", FileRecord("0123456789ab", 10, 10, ())),
                    {"key": {"source": Entry(np.zeros(8, np.uint8))}}, "0123456789ab")
    cache._salvage("a test")  # what a damaged page leads to (the runs above damage one)
    assert in_use(cache.path)
    assert cache.get_image("key", "0123456789ab")["source"].row.tolist() == [0] * 8
    cache.close()
    assert not in_use(cache.path)
    assert cache.summary_notes() == [f"hash cache {cache.path}: damaged (a test); its 1 readable entries were kept in "
                                     "a fresh file, the rest are computed again"]


UNLINKER = """
import os


def unlink_cache(image, k: int = 1):
    path = os.environ.get("HARNESS_TEST_UNLINK", "")
    if os.path.exists(path):  # at the first image's edit: what `rm` of the cache while the run works does
        os.remove(path)
    return image.copy()
"""


def test_a_run_says_its_cache_was_deleted_under_it(quick_job, tmp_path, monkeypatch, capsys):
    """End to end: the note reaches the run's notes and its summary."""
    config, _ = quick_job
    module = f"unlinker_{os.getpid()}_{tmp_path.name}".replace("-", "_")
    (tmp_path / f"{module}.py").write_text(UNLINKER)
    monkeypatch.syspath_prepend(str(tmp_path))
    cache = tmp_path / "c.sqlite"
    monkeypatch.setenv("HARNESS_TEST_UNLINK", str(cache))
    mine = tmp_path / "c.yaml"
    mine.write_text(config.read_text().replace("sweeps: [", f"sweeps: [{{family: u, b: '{module}:unlink_cache'}}, "))
    try:
        assert main(["run", str(mine), "--out", str(tmp_path / "out"), "--quiet", "--cache", str(cache)]) == 0
    finally:
        sys.modules.pop(module, None)
    note = "was deleted or replaced by another process during the run: what this run stored in it after that was not kept"
    assert f"note: hash cache {cache} {note}" in capsys.readouterr().err
    assert note in (tmp_path / "out" / "summary.md").read_text()  # (where the path is Markdown, _ escaped)
    assert not cache.exists()
