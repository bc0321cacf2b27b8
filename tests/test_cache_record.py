"""run.json's `cache` record: which hash cache a run used, and how many of its images and hashes it
read from there rather than computed (README, "Outputs"). Real runs, small: aHash on a few images.

The counts follow the cache's state alone: not the number of workers, nor a Dask cluster; and the
record never decides whether a rerun keeps its set (`inputs` and `fingerprint` leave it out)."""

import contextlib
import json
import shutil
import sqlite3

import cv2
import pytest

from harness.__main__ import main
from tests.conftest import make_scene

CONFIG = """
name: record
images: [IMAGES]
hashers: [aHash]
sweeps:
  - {family: jpeg, b: {jpeg: {quality: $value}}, values: [80, 30]}
  - {family: blur, b: {gaussian_blur: {sigma: 2}}}
"""
ITEMS = 4  # the source and its three edited copies: one aHash hash each


def config_file(tmp_path, images, name="record.yaml"):
    path = tmp_path / name
    path.write_text(CONFIG.replace("IMAGES", ", ".join(map(str, images))))
    return path


def run(config, out, *options, status=0, quiet=True):
    assert main(["run", str(config), "--out", str(out), *(["--quiet"] if quiet else []), *map(str, options)]) == status
    return json.loads((out / "run.json").read_text())


def counts(record: dict) -> dict:
    return {key: value for key, value in record.items() if key not in ("path", "absolute_path")}


def provenance_section(out) -> str:
    return (out / "summary.md").read_text().rpartition("## Provenance")[2]


def test_a_first_run_computes_every_hash_and_an_unchanged_rerun_reads_every_one(tmp_path, capsys):
    config = config_file(tmp_path, ["builtin:astronaut", "builtin:camera", "builtin:coffee"])
    out = tmp_path / "out"
    first = run(config, out)
    cache = str(out / "hash-cache.sqlite")
    assert first["cache"] == {"path": cache, "absolute_path": cache, "opened": True, "read_only": False,
                              "images_from_cache": 0, "images_computed": 3, "hashes_from_cache": 0,
                              "hashes_computed": 3 * ITEMS, "entries_rejected": 0}
    assert f"Hashes: 12 computed in this run, 0 read from the hash cache `{cache}` (images: 3 hashed in this " \
           "run, wholly or partly, 0 read wholly from the cache)." in provenance_section(out)
    capsys.readouterr()
    again = run(config, out, quiet=False)
    # The set is kept (the same inputs and fingerprint), though the record differs from the first's.
    assert f"kept {out}/: the same images" in capsys.readouterr().out
    assert (again["inputs"], again["fingerprint"], again["files"]) == (first["inputs"], first["fingerprint"],
                                                                      first["files"])
    assert counts(again["cache"]) == {"opened": True, "read_only": False, "images_from_cache": 3,
                                      "images_computed": 0, "hashes_from_cache": 12, "hashes_computed": 0,
                                      "entries_rejected": 0}
    assert f"Hashes: 0 computed in this run, 12 read from the hash cache `{cache}`" in provenance_section(out)
    # `report DIR` and `load` read it back; so does the API's own run.
    import harness

    assert harness.load(out).provenance["cache"] == again["cache"]
    assert main(["report", str(out)]) == 0
    assert json.loads((out / "run.json").read_text())["cache"] == again["cache"]
    assert "12 read from the hash cache" in provenance_section(out)
    results = harness.evaluate(config, cache=cache)
    assert counts(results.provenance["cache"]) == counts(again["cache"])
    saved = tmp_path / "saved"
    results.save(saved)
    assert json.loads((saved / "run.json").read_text())["cache"] == results.provenance["cache"]


def test_no_cache_records_none_and_every_hash_computed(tmp_path):
    config = config_file(tmp_path, ["builtin:astronaut", "builtin:camera"])
    out = tmp_path / "out"
    record = run(config, out, "--no-cache")["cache"]
    assert record == {"path": None, "absolute_path": None, "opened": False, "read_only": False,
                      "images_from_cache": 0, "images_computed": 2, "hashes_from_cache": 0, "hashes_computed": 8,
                      "entries_rejected": 0}
    assert "Hashes: 8 computed in this run; no hash cache was used." in provenance_section(out)
    import harness

    assert harness.evaluate(config).provenance["cache"] == record  # cache=None, the API's default


def test_an_added_image_is_the_only_one_computed(tmp_path):
    cache = tmp_path / "shared.sqlite"
    run(config_file(tmp_path, ["builtin:astronaut", "builtin:camera"]), tmp_path / "two", "--cache", cache)
    relative = tmp_path / "shared.sqlite"
    record = run(config_file(tmp_path, ["builtin:astronaut", "builtin:camera", "builtin:coffee"]),
                 tmp_path / "three", "--cache", relative)["cache"]
    assert record["path"] == str(relative) and record["absolute_path"] == str(cache.resolve())
    assert counts(record) == {"opened": True, "read_only": False, "images_from_cache": 2, "images_computed": 1,
                              "hashes_from_cache": 8, "hashes_computed": 4, "entries_rejected": 0}


def test_an_entry_that_does_not_check_out_is_counted_and_computed_again(tmp_path):
    config = config_file(tmp_path, ["builtin:astronaut", "builtin:camera"])
    cache = tmp_path / "cache.sqlite"
    run(config, tmp_path / "first", "--cache", cache)
    with contextlib.closing(sqlite3.connect(cache)) as db, db:  # closed: its log goes into the file
        db.execute("UPDATE hashes SET data=X'00' WHERE rowid=(SELECT min(rowid) FROM hashes)")
    out = tmp_path / "second"
    record = run(config, out, "--cache", cache)["cache"]
    assert counts(record) == {"opened": True, "read_only": False, "images_from_cache": 1, "images_computed": 1,
                              "hashes_from_cache": 7, "hashes_computed": 1, "entries_rejected": 1}
    assert "1 of its entries did not check out and were computed again" in provenance_section(out)


def images_with_a_copy(folder, count: int = 12) -> list:
    """`count` distinct scenes, and copies of two of them under other names: a copy is one image,
    counted once (as the tables hold it once), whether its first is being hashed when the copy is
    looked up (workers) or stored before (this process)."""
    folder.mkdir()
    paths = []
    for seed in range(count):
        paths.append(folder / f"{seed:02d}.png")
        cv2.imwrite(str(paths[-1]), make_scene(seed))
    for seed in (3, 8):
        shutil.copyfile(folder / f"{seed:02d}.png", folder / f"{seed:02d}_copy.png")
    return paths


@pytest.fixture
def partial_cache(tmp_path):
    """A folder of images with copies, and a cache holding the hashes of a third of them, one entry
    of which does not check out: a state whose counts a run with workers could get wrong."""
    paths = images_with_a_copy(tmp_path / "images")
    cache = tmp_path / "partial.sqlite"
    run(config_file(tmp_path, paths[::3], "some.yaml"), tmp_path / "some", "--cache", cache)
    with contextlib.closing(sqlite3.connect(cache)) as db, db:  # closed: its log goes into the file
        db.execute("UPDATE hashes SET data=X'00' WHERE rowid=(SELECT max(rowid) FROM hashes)")
    return config_file(tmp_path, [tmp_path / "images"]), cache


def test_the_counts_do_not_depend_on_the_number_of_workers(partial_cache, tmp_path):
    config, cache = partial_cache
    records = {}
    for workers in (1, 2):
        copy = tmp_path / f"cache-{workers}.sqlite"
        shutil.copyfile(cache, copy)
        out = tmp_path / f"workers-{workers}"
        record = run(config, out, "--cache", copy, "--workers", workers)
        assert record["engine"] == ("this process" if workers == 1 else "2 local worker processes")
        records[workers] = counts(record["cache"])
    assert records[1] == records[2] == {"opened": True, "read_only": False, "images_from_cache": 3,
                                        "images_computed": 9, "hashes_from_cache": 15, "hashes_computed": 33,
                                        "entries_rejected": 1}


def test_report_on_a_set_without_the_record_says_nothing_of_the_cache(tmp_path):
    """A set of an older version has no `cache` in its run.json: `report DIR` and `load` still work."""
    import harness

    out = tmp_path / "out"
    record = run(config_file(tmp_path, ["builtin:astronaut", "builtin:camera"]), out)
    del record["cache"]
    (out / "run.json").write_text(json.dumps(record, indent=2) + "\n")
    assert main(["report", str(out)]) == 0
    assert "Hashes:" not in (out / "summary.md").read_text()
    assert "cache" not in json.loads((out / "run.json").read_text())
    assert "cache" not in harness.load(out).provenance


@pytest.mark.parametrize("key, value, expected", [
    ("hashes_computed", -1, "cache.hashes_computed: expected a whole number of at least 0, got -1"),
    ("images_from_cache", "3", "cache.images_from_cache: expected a whole number of at least 0, got '3'"),
    ("path", 7, "cache.path: expected a string or null, got 7"),
])
def test_a_damaged_record_is_one_line_naming_its_key(tmp_path, capsys, key, value, expected):
    out = tmp_path / "out"
    record = run(config_file(tmp_path, ["builtin:astronaut", "builtin:camera"]), out, "--no-cache")
    record["cache"][key] = value
    (out / "run.json").write_text(json.dumps(record, indent=2) + "\n")
    capsys.readouterr()
    assert main(["report", str(out)]) == 2
    assert capsys.readouterr().err == f"error: {out / 'run.json'}: {expected}\n"


def leak_images(root):
    """train: 6 scenes; test: 4 others and a copy of a train scene (under another name)."""
    for split, seeds in (("train", range(6)), ("test", range(10, 14))):
        (root / split).mkdir(parents=True)
        for seed in seeds:
            cv2.imwrite(str(root / split / f"{seed:02d}.png"), make_scene(seed))
    shutil.copyfile(root / "train" / "02.png", root / "test" / "copy.png")


def audit(root, out, *options):
    assert main(["leaks", "--train", str(root / "train"), "--test", str(root / "test"), "--hashers", "aHash",
                 "--threshold", "4", "--out", str(out), "--quiet", *map(str, options)]) == 0
    return json.loads((out / "run.json").read_text())["cache"]


def test_the_leak_audit_records_its_cache_too(tmp_path):
    root = tmp_path / "data"
    leak_images(root)
    out = tmp_path / "audit"
    cache = str(out / "hash-cache.sqlite")
    # The copy in test is the train image's own hash: one image, counted once.
    assert audit(root, out) == {"path": cache, "absolute_path": cache, "opened": True, "read_only": False,
                                "images_from_cache": 0, "images_computed": 10, "hashes_from_cache": 0,
                                "hashes_computed": 10, "entries_rejected": 0}
    assert counts(audit(root, out)) == {"opened": True, "read_only": False, "images_from_cache": 10,
                                        "images_computed": 0, "hashes_from_cache": 10, "hashes_computed": 0,
                                        "entries_rejected": 0}
    # A new image, with --workers 2 and 1 alike; and none at all with --no-cache.
    cv2.imwrite(str(root / "test" / "20.png"), make_scene(20))
    for workers in (2, 1):
        copy = tmp_path / f"cache-{workers}.sqlite"
        shutil.copyfile(cache, copy)
        assert counts(audit(root, tmp_path / f"w{workers}", "--cache", copy, "--workers", workers)) == {
            "opened": True, "read_only": False, "images_from_cache": 10, "images_computed": 1,
            "hashes_from_cache": 10, "hashes_computed": 1, "entries_rejected": 0}
    assert audit(root, tmp_path / "none", "--no-cache")["hashes_computed"] == 11


@pytest.mark.parametrize("spoil, rejected", [
    ("UPDATE hashes SET data=X'00' WHERE image=?", 5),  # its 4 hashes, and 09.png's spoiled one
    ("UPDATE files SET info='{}' WHERE image=?", 2),  # its file record (its hashes are then not read), and 09.png's
])
def test_a_spoiled_entry_of_an_image_with_a_copy_is_noted_once_whatever_the_workers(partial_cache, tmp_path, spoil,
                                                                                   rejected):
    """The run's note counted a spoiled entry again for a copy of its image looked up before the first
    image's new entry replaced it (with workers: while the first was being hashed), so the note,
    summary.md and `inputs` followed --workers. Each spoiled entry and file record is counted once."""
    config, cache = partial_cache
    with contextlib.closing(sqlite3.connect(cache)) as db, db:
        image = db.execute("SELECT image FROM hashes ORDER BY rowid").fetchall()[ITEMS][0]  # 03.png's: it has a copy
        db.execute(spoil, (image,))
    records = {}
    copy = tmp_path / "copy.sqlite"  # one path for both runs: the notes name it, and `inputs` holds the notes
    for workers in (1, 2):
        shutil.copyfile(cache, copy)  # (the first run, closed, left no log beside it)
        records[workers] = run(config, tmp_path / f"workers-{workers}", "--cache", copy, "--workers", workers)
    assert records[1]["notes"] == records[2]["notes"]
    assert f"hash cache {copy}: {rejected} entries did not check out and were recomputed" in records[1]["notes"]
    assert records[1]["inputs"] == records[2]["inputs"]
    assert counts(records[1]["cache"]) == counts(records[2]["cache"])
    assert records[1]["cache"]["entries_rejected"] == rejected
