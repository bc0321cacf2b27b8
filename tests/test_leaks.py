"""The leak audit, end to end: planted copies found, flags equal to brute force, false flags as
estimated, hash tables as sources, three splits, bad input, and the review page in Chromium."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from types import SimpleNamespace

import cv2
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

import harness
from harness.leaks import leak_config
from harness.__main__ import main
from harness.hashers import HASHERS
from harness.leaks_search import agreement_rate, false_flag_range, misses, source_pairs
from harness.metrics import poisson_quantile, wilson_interval
from harness.transforms import apply_chain
from tests.conftest import ROOT, make_scene

EDITS = [[("jpeg", {"quality": 40})], [("scale", {"factor": 0.6})], [("gamma", {"gamma": 1.3})],
         [("gaussian_blur", {"sigma": 1.0})], [("center_crop", {"fraction": 0.95})], [("scale", {"factor": 0.8}), ("jpeg", {"quality": 80})]]


def write(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cv2.imencode(".png", image)[1].tobytes())


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """train: 30 distinct scenes (and one exact duplicate); test: 20 others and 6 edited copies of train scenes."""
    root = tmp_path_factory.mktemp("planted")
    for seed in range(30):
        write(root / "train" / f"t{seed:02d}.png", make_scene(seed, 180, 240))
    write(root / "train" / "t00_again.png", make_scene(0, 180, 240))
    for seed in range(100, 120):
        write(root / "test" / f"s{seed}.png", make_scene(seed, 180, 240))
    copies = {}
    for number, edit in enumerate(EDITS):
        source = 3 * number + 1
        name = f"copy_of_t{source:02d}.png"
        write(root / "test" / name, apply_chain(make_scene(source, 180, 240), edit))
        copies[name] = f"t{source:02d}.png"
    return root, copies


def audit(root, out, *extra):
    argv = ["leaks", "--train", str(root / "train"), "--test", str(root / "test"), "--out", str(out), "--quiet",
            *map(str, extra)]
    return main(argv)


def brute_force(files_a, files_b, hasher, threshold, within=False):
    """Every pair within the threshold, by hashing each file and comparing every pair with distance()."""
    from harness.images import load_source

    def hashes(files):
        return hasher.hash_images([load_source(str(f)).pixels for f in files])

    a = hashes(files_a)
    b = a if within else hashes(files_b)
    found = set()
    for i, j in itertools.product(range(len(files_a)), range(len(files_b))):
        if within and j <= i:
            continue
        if hasher.distance(a[i:i + 1], b[j:j + 1])[0] <= threshold:
            found.add((str(files_a[i]), str(files_b[j])))
    return found


def test_every_planted_copy_is_found_and_the_flags_equal_brute_force(planted, tmp_path):
    root, copies = planted
    out = tmp_path / "out"
    assert audit(root, out, "--hashers", "pHash,PDQ", "--threshold", "pHash=12,PDQ=70") == 0
    leaks = pd.read_csv(out / "leaks.csv", keep_default_na=False)
    flagged = leaks[leaks["agree"] >= 1]
    cross = {(a, b) for a, b in zip(flagged["file_a"], flagged["file_b"]) if "/train/" in a and "/test/" in b}
    for copy, source in copies.items():
        assert (str(root / "train" / source), str(root / "test" / copy)) in cross, copy
    train = sorted((root / "train").glob("*.png"))
    test = sorted((root / "test").glob("*.png"))
    for hasher_id, threshold in (("pHash", 12), ("PDQ", 70)):
        hasher = HASHERS.get(hasher_id)()
        mine = leaks[(leaks["hasher"] == hasher_id) & leaks["flagged"]]
        found = set(zip(mine["file_a"], mine["file_b"]))
        expected = brute_force(train, test, hasher, threshold) | brute_force(train, train, hasher, threshold, True) \
            | brute_force(test, test, hasher, threshold, True)
        assert found == expected, hasher_id
    # Every hasher's distance is in the table, for every flagged pair.
    assert (leaks.groupby(["file_a", "file_b"]).size() == 2).all()
    clean_test = (out / "clean" / "test.txt").read_text().splitlines()
    assert not any(copy in line for line in clean_test for copy in copies)
    assert len(clean_test) == 26 - len(copies)
    clean_train = (out / "clean" / "train.txt").read_text().splitlines()
    assert len(clean_train) == 30 and not any("t00_again" in line for line in clean_train)
    summary = (out / "summary.md").read_text()
    assert summary.splitlines()[2].startswith(f"**{len(copies)} of 26 test files have a copy in train; "
                                              "1 more file (1 in train) is a copy")
    # It ends as a run's does: what produced it, how to run it again, and the hash cache's part.
    provenance = summary.rpartition("\n## Provenance\n")[2]
    assert provenance.lstrip().startswith("Produced by `") and "OpenCV " in provenance
    assert "run it again with `python -m harness leaks DIR/config.yaml`" in provenance
    assert re.search(r"Hashes: [\d,]+ computed in this run", provenance)


def test_agreement_of_hashers_cuts_flags_and_keeps_the_copies(planted, tmp_path):
    root, copies = planted
    loose = tmp_path / "loose"
    assert audit(root, loose, "--hashers", "pHash,imagehash.dhash", "--threshold", "24") == 0
    both = tmp_path / "both"
    assert audit(root, both, "--hashers", "pHash,imagehash.dhash", "--threshold", "24", "--min-agree", "2") == 0
    pairs = lambda out: set(zip(*[pd.read_csv(out / "leaks.csv")[c] for c in ("file_a", "file_b")]))
    assert pairs(both) < pairs(loose)
    planted_pairs = {(str(root / "train" / source), str(root / "test" / copy)) for copy, source in copies.items()}
    assert planted_pairs <= pairs(both)
    # The answer says that both must agree (it read as with one: "flagged at pHash <= 24, ...").
    assert "(flagged where at least 2 of 2 hashers agree: pHash <= 24, imagehash.dhash <= 24)." in \
        (both / "summary.md").read_text()
    assert "(flagged at pHash <= 24, imagehash.dhash <= 24)." in (loose / "summary.md").read_text()


def test_hash_tables_are_sources_and_a_second_audit_reads_no_image(planted, tmp_path, monkeypatch):
    root, _ = planted
    first = tmp_path / "first"
    assert audit(root, first, "--hashers", "pHash", "--threshold", "10") == 0
    tables = sorted(p.name for p in (first / "hashes").iterdir())
    assert tables == ["test.pHash.parquet", "train.pHash.parquet"]
    from harness import imagework

    monkeypatch.setattr(imagework, "decode_source", lambda *a: pytest.fail("an image was decoded"))
    second = tmp_path / "second"
    assert main(["leaks", "--train", str(first / "hashes" / "train.pHash.parquet"), "--test",
                 str(first / "hashes" / "test.pHash.parquet"), "--hashers", "pHash", "--threshold", "10",
                 "--out", str(second), "--quiet", "--no-cache"]) == 0
    for name in ("leaks.csv", "groups.csv", "estimates.csv"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    # A table made by another tool: CSV, upper-case hex with 0x.
    table = pd.read_parquet(first / "hashes" / "test.pHash.parquet")
    table["hash"] = "0x" + table["hash"].str.upper()
    table.to_csv(tmp_path / "theirs.csv", index=False)
    third = tmp_path / "third"
    assert main(["leaks", "--train", str(first / "hashes" / "train.pHash.parquet"), "--test",
                 str(tmp_path / "theirs.csv"), "--hashers", "pHash", "--threshold", "10", "--out", str(third),
                 "--quiet"]) == 0
    assert (first / "leaks.csv").read_bytes() == (third / "leaks.csv").read_bytes()


def test_the_default_cache_outlives_the_audit_and_a_rerun_decodes_nothing(planted, tmp_path, monkeypatch):
    root, _ = planted
    out = tmp_path / "out"
    assert audit(root, out, "--hashers", "pHash", "--threshold", "10") == 0
    assert (out / "hash-cache.sqlite").is_file()  # DIR/hash-cache.sqlite, the default, is kept with the outputs
    first = {name: (out / name).read_bytes() for name in ("leaks.csv", "groups.csv", "estimates.csv")}
    from harness import imagework

    monkeypatch.setattr(imagework, "decode_source", lambda *a: pytest.fail("an image was decoded"))
    assert audit(root, out, "--hashers", "pHash", "--threshold", "10") == 0
    assert {name: (out / name).read_bytes() for name in first} == first


def test_splits_given_on_the_command_line_keep_the_audits_order(planted, tmp_path):
    """The order decides which copy leaves its split: a split named by an option takes its place in
    the config (or train first, test last, any other between), never the end of the line."""
    import yaml

    from harness.commands import merged_splits

    assert list(merged_splits({"train": 1, "val": 2, "test": 3}, {"train": 4})) == ["train", "val", "test"]
    assert list(merged_splits({"train": 1, "test": 3}, {"val": 2})) == ["train", "val", "test"]
    assert list(merged_splits({}, {"test": 3, "val": 2})) == ["val", "test"]
    root, _ = planted
    config = tmp_path / "audit.yaml"
    config.write_text(yaml.safe_dump({"splits": {"train": ["nowhere"], "test": [str(root / "test")]},
                                      "hashers": ["pHash"], "threshold": 8}, sort_keys=False))
    out = tmp_path / "out"
    assert main(["leaks", str(config), "--train", str(root / "train"), "--split", f"val={root / 'test'}",
                 "--out", str(out), "--quiet"]) in (0, 1)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert list(saved["splits"]) == ["train", "val", "test"]
    assert saved["splits"]["train"] == [str(root / "train")]


def test_a_config_naming_test_before_train_is_audited_train_first(tmp_path):
    """The audit's order is train, the other splits, test, in a config as on the command line: a
    YAML mapping that writes test first still takes the copy out of test, not out of train."""
    write(tmp_path / "train" / "original.png", make_scene(1, 64, 64))
    write(tmp_path / "test" / "copy.png", make_scene(1, 64, 64))
    write(tmp_path / "val" / "other.png", make_scene(2, 64, 64))
    config = tmp_path / "audit.yaml"
    config.write_text(yaml.safe_dump({"splits": {"test": [str(tmp_path / "test")], "val": [str(tmp_path / "val")],
                                                 "train": [str(tmp_path / "train")]},
                                      "hashers": ["pHash"], "threshold": 8}, sort_keys=False))
    out = tmp_path / "out"
    assert main(["leaks", str(config), "--out", str(out), "--quiet"]) == 0
    assert (out / "summary.md").read_text().splitlines()[2].startswith(
        "**0 of 1 val file has a copy in train; 1 of 1 test file has a copy in an earlier split;")
    assert (out / "clean" / "train.txt").read_text() == f"{tmp_path / 'train' / 'original.png'}\n"
    assert (out / "clean" / "test.txt").read_text() == ""
    assert list(yaml.safe_load((out / "config.yaml").read_text())["splits"]) == ["train", "val", "test"]


def test_a_configs_description_heads_its_summary_and_must_be_text(tmp_path):
    write(tmp_path / "train" / "a.png", make_scene(1, 64, 64))
    write(tmp_path / "test" / "b.png", make_scene(2, 64, 64))
    config = {"splits": {"train": [str(tmp_path / "train")], "test": [str(tmp_path / "test")]},
              "hashers": ["pHash"], "threshold": 8, "description": "Split of *March*, before relabelling"}
    harness.find_leaks(config).save(str(tmp_path / "out"))
    assert (tmp_path / "out" / "summary.md").read_text().splitlines()[:3] == [
        "# Leak audit of train and test", "", "Split of \\*March\\*, before relabelling"]
    named = {**config, "name": "march"}
    harness.find_leaks(named).save(str(tmp_path / "named"))
    assert (tmp_path / "named" / "summary.md").read_text().splitlines()[0] == "# Leak audit of train and test: march"
    with pytest.raises(harness.ConfigError, match=r"^<dict>: description: expected str, got 5$"):
        harness.find_leaks({**config, "description": 5})


def test_a_name_through_a_link_and_up_is_the_file_the_system_opens(tmp_path, monkeypatch):
    """link/../x.png is x.png beside the link's target, as the system resolves it: read as that
    file, not as x.png beside the link (os.path.normpath's reading of the text)."""
    write(tmp_path / "real" / "x.png", make_scene(1, 64, 64))
    (tmp_path / "real" / "sub").mkdir()
    write(tmp_path / "here" / "x.png", make_scene(2, 64, 64))
    write(tmp_path / "here" / "copy.png", make_scene(1, 64, 64))
    (tmp_path / "here" / "link").symlink_to(tmp_path / "real" / "sub")
    monkeypatch.chdir(tmp_path / "here")
    audit = harness.find_leaks({"splits": {"train": ["link/../x.png"], "test": ["copy.png"]},
                                "hashers": ["pHash"], "threshold": 4})
    assert audit.answer.startswith("1 of 1 test file has a copy in train")


def test_a_file_named_twice_is_one_file_of_its_split(planted, tmp_path):
    """Two spellings of one path, or one hash table given twice: one file, never a copy of itself."""
    root, _ = planted
    out = tmp_path / "out"
    assert main(["leaks", "--train", str(root / "train"), f"{root / 'train'}/./t01.png",
                 f"{root / 'train'}/../train/t02.png", "--test", str(root / "test"),
                 "--hashers", "pHash", "--threshold", "10", "--out", str(out), "--quiet"]) == 0
    files = pd.read_csv(out / "files.csv", keep_default_na=False)
    assert len(files[files["split"] == "train"]) == 31 and files["file"].is_unique
    table = str(out / "hashes" / "train.pHash.parquet")
    again = tmp_path / "again"
    assert main(["leaks", "--train", table, table, "--test", str(out / "hashes" / "test.pHash.parquet"),
                 "--hashers", "pHash", "--threshold", "10", "--out", str(again), "--quiet"]) == 0
    for name in ("leaks.csv", "groups.csv"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name


def test_a_file_named_by_a_relative_and_an_absolute_path_or_by_a_table_is_one_file(tmp_path, monkeypatch):
    """Relative and absolute spellings of one file, and a hash table's row and an image entry naming one
    file, are one file of the split: one row of files.csv, never a copy of itself."""
    for seed in range(3):
        write(tmp_path / "train" / f"t{seed}.png", make_scene(seed, 96, 128))
    write(tmp_path / "test" / "s.png", make_scene(7, 96, 128))
    monkeypatch.chdir(tmp_path)
    first = tmp_path / "first"
    assert main(["leaks", "--train", "train", str(tmp_path / "train" / "t1.png"), "--test", "test",
                 "--hashers", "pHash", "--threshold", "10", "--out", str(first), "--quiet"]) == 0
    files = pd.read_csv(first / "files.csv", keep_default_na=False)
    assert files["file"].tolist() == ["train/t0.png", "train/t1.png", "train/t2.png", "test/s.png"]
    assert (files["group"] == -1).all()
    second = tmp_path / "second"
    assert main(["leaks", "--train", str(first / "hashes" / "train.pHash.parquet"), "train/t2.png", "--test", "test",
                 "--hashers", "pHash", "--threshold", "10", "--out", str(second), "--quiet"]) == 0
    assert (second / "files.csv").read_bytes() == (first / "files.csv").read_bytes()


def test_files_csv_shows_how_each_file_was_read_and_an_audit_from_its_tables_too(tmp_path, monkeypatch):
    """`run` records each image's conversions in images.csv; an audit recorded none, so a split's
    animated file judged by its first frame, or an image with its alpha dropped, passed unseen."""
    write(tmp_path / "train" / "t0.png", make_scene(0, 96, 128))
    write(tmp_path / "train" / "alpha.png", np.dstack([make_scene(1, 96, 128), np.full((96, 128), 200, np.uint8)]))
    write(tmp_path / "test" / "gray.png", cv2.cvtColor(make_scene(2, 96, 128), cv2.COLOR_BGR2GRAY))
    write(tmp_path / "test" / "dot.png", np.full((1, 1, 3), 90, np.uint8))  # its hashes match unrelated images
    monkeypatch.chdir(tmp_path)
    first = tmp_path / "first"
    assert main(["leaks", "--train", "train", "--test", "test", "--hashers", "pHash", "--threshold", "10",
                 "--out", str(first), "--quiet"]) == 0
    files = pd.read_csv(first / "files.csv", keep_default_na=False)
    assert files[["file", "notes"]].values.tolist() == [
        ["train/alpha.png", "alpha dropped"], ["train/t0.png", ""],
        ["test/dot.png", "only 1 x 1 pixels, fewer than a 64-bit hash has bits: its hashes say little and may match "
                         "unrelated images"],
        ["test/gray.png", "grayscale repeated to 3 channels"]]
    second = tmp_path / "second"  # from the hash tables: the notes their audit recorded
    assert main(["leaks", "--train", str(first / "hashes" / "train.pHash.parquet"), "--test",
                 str(first / "hashes" / "test.pHash.parquet"), "--hashers", "pHash", "--threshold", "10",
                 "--out", str(second), "--quiet"]) == 0
    assert (second / "files.csv").read_bytes() == (first / "files.csv").read_bytes()
    # A table that recorded no notes (another tool's, an older audit's) is not taken as "read as it is".
    pd.DataFrame({"file": ["train/t0.png"], "hash": ["00ff00ff00ff00ff"]}).to_csv(tmp_path / "other.csv", index=False)
    assert main(["leaks", "--train", str(tmp_path / "other.csv"), "--test", "test", "--hashers", "pHash",
                 "--threshold", "10", "--out", str(tmp_path / "third"), "--quiet"]) == 0
    third = pd.read_csv(tmp_path / "third" / "files.csv", keep_default_na=False)
    assert third["notes"].tolist()[0] == "not recorded in its hash table"


def test_a_splits_files_keep_the_order_of_its_entries_whatever_their_kind(tmp_path, monkeypatch):
    """A split of a folder then a hash table lists the folder's files first, as given: which file of a
    pair inside the split is kept follows that order."""
    write(tmp_path / "a" / "x.png", make_scene(1, 96, 128))
    write(tmp_path / "b" / "y.png", make_scene(1, 96, 128))  # the same picture under another name
    write(tmp_path / "test" / "s.png", make_scene(7, 96, 128))
    monkeypatch.chdir(tmp_path)
    tables = tmp_path / "tables"
    assert main(["leaks", "--train", "b", "--test", "test", "--hashers", "pHash", "--threshold", "4",
                 "--out", str(tables), "--quiet"]) == 0
    for order, kept in ((["a", str(tables / "hashes" / "train.pHash.parquet")], "a/x.png"),
                        ([str(tables / "hashes" / "train.pHash.parquet"), "a"], "b/y.png")):
        out = tmp_path / f"out-{kept[0]}"
        assert main(["leaks", "--train", *order, "--test", "test", "--hashers", "pHash", "--threshold", "4",
                     "--out", str(out), "--quiet"]) == 0
        files = pd.read_csv(out / "files.csv", keep_default_na=False)
        assert files["file"].tolist()[0] == kept and files[files["keep"]]["file"].tolist() == [kept, "test/s.png"]


@pytest.mark.parametrize("hasher", ["RadialVarianceHash", "pHash"])
def test_a_black_image_given_to_two_splits_is_a_copy_for_every_hasher(tmp_path, hasher):
    """RadialVarianceHash's hash of a black image has no variance (OpenCV's compare() correlates it with
    nothing, not even itself): the same file in train and test is still flagged, as the note says."""
    write(tmp_path / "train" / "black.png", np.zeros((64, 64, 3), np.uint8))
    write(tmp_path / "train" / "scene.png", make_scene(3, 64, 64))
    write(tmp_path / "test" / "black_copy.png", np.zeros((64, 64, 3), np.uint8))
    os.symlink(tmp_path / "train" / "black.png", tmp_path / "test" / "black_link.png")
    audit = harness.find_leaks({"splits": {"train": [str(tmp_path / "train")], "test": [str(tmp_path / "test")]},
                                "hashers": [hasher], "threshold": 0})
    assert audit.answer.startswith("2 of 2 test files have a copy in train")


def test_a_file_given_to_two_splits_is_named_as_the_same_file(tmp_path, capsys):
    """`--train data --test data/a.png`, or a link to a train file: the same file, not an edited copy.
    It is still counted among the copies (it is in both splits), and a note names it as one file."""
    train = tmp_path / "train"
    for seed, name in enumerate("abcd"):
        write(train / f"{name}.png", make_scene(seed, 64, 64))
    os.symlink(train / "a.png", train / "a_link.png")
    (tmp_path / "test").mkdir()
    os.symlink(train / "d.png", tmp_path / "test" / "d_link.png")
    out = tmp_path / "out"
    assert main(["leaks", "--train", str(train), "--test", *(str(train / f"{name}.png") for name in "abc"),
                 str(tmp_path / "test"), "--threshold", "0", "--out", str(out), "--quiet"]) == 0
    note = ("4 files are given more than once, to two splits or under two names (each is one file, not an edited "
            "copy, and is counted among the copies all the same): "
            f"{train / 'a.png'} (train) is {train / 'a_link.png'} (train) is {train / 'a.png'} (test); "
            f"{train / 'b.png'} (train) is {train / 'b.png'} (test); {train / 'c.png'} (train) is {train / 'c.png'} "
            "(test); and 1 more")
    assert capsys.readouterr().err.splitlines() == [f"note: {note}"]
    summary = (out / "summary.md").read_text()
    assert "4 of 4 test files have a copy in train; 1 more file (1 in train) is a copy" in summary
    assert "4 files are given more than once" in summary


def test_of_a_file_and_a_link_to_it_in_one_split_the_file_is_kept(tmp_path):
    """odd/ sorts before photos/: the link was listed first, so the clean list kept the link and
    dropped the file (as `run` did before it kept the file's own path)."""
    train = tmp_path / "train"
    write(train / "photos" / "cat.png", make_scene(1, 64, 64))
    write(train / "photos" / "dog.png", make_scene(2, 64, 64))
    (train / "odd").mkdir()
    os.symlink(train / "photos" / "cat.png", train / "odd" / "cat_link.png")
    write(tmp_path / "test" / "bird.png", make_scene(3, 64, 64))
    audit = harness.find_leaks({"splits": {"train": [str(train)], "test": [str(tmp_path / "test")]},
                                "hashers": ["pHash"], "threshold": 0})
    files = audit.files[audit.files["split"] == "train"]
    assert files["file"].tolist() == [str(train / "photos" / "cat.png"), str(train / "odd" / "cat_link.png"),
                                      str(train / "photos" / "dog.png")]
    assert files["keep"].tolist() == [True, False, True]
    assert audit.clean["train"] == [str(train / "photos" / "cat.png"), str(train / "photos" / "dog.png")]
    dropped = audit.groups[~audit.groups["keep"]]
    assert dropped[["file", "copy_of"]].values.tolist() == [[str(train / "odd" / "cat_link.png"),
                                                              str(train / "photos" / "cat.png")]]


def test_three_splits_audit_every_pair_of_splits(planted, tmp_path):
    root, copies = planted
    val = tmp_path / "val"
    write(val / "v_copy_of_t01.png", apply_chain(make_scene(1, 180, 240), [("jpeg", {"quality": 60})]))
    write(val / "v_own.png", make_scene(500, 180, 240))
    out = tmp_path / "out"
    assert main(["leaks", "--train", str(root / "train"), "--split", f"val={val}", "--test", str(root / "test"),
                 "--hashers", "pHash", "--threshold", "10", "--out", str(out), "--quiet"]) == 0
    estimates = pd.read_csv(out / "estimates.csv")
    assert list(zip(estimates["split_a"], estimates["split_b"])) == [
        ("train", "train"), ("train", "val"), ("train", "test"), ("val", "val"), ("val", "test"), ("test", "test")]
    assert (out / "clean" / "val.txt").read_text().splitlines() == [str(val / "v_own.png")]
    groups = pd.read_csv(out / "groups.csv", keep_default_na=False)
    copy_of_t01 = groups[groups["file"].str.endswith("copy_of_t01.png")]
    assert set(copy_of_t01["copy_in"]) == {"train"} and not copy_of_t01["keep"].any()


def test_a_file_leaves_only_for_a_file_it_is_flagged_with():
    """A chain A~B~C (A and C beyond the threshold) is not one picture: with A in train and B, C in
    test, B leaves for A and C stays (its only copy, B, left); every group in a split keeps a file."""
    from harness.leaks_search import clean_rule

    split_of = np.array([0, 1, 1])  # A | B, C
    keep, copy_of = clean_rule(3, split_of, np.array([0, 1]), np.array([1, 2]))
    assert keep.tolist() == [True, False, True] and copy_of.tolist() == [-1, 0, -1]
    # Random graphs: the rule's four promises, checked against the pairs themselves.
    rng = np.random.default_rng(0)
    for _ in range(200):
        count = int(rng.integers(2, 30))
        split_of = np.sort(rng.integers(0, 3, count))
        pairs = {tuple(sorted(p)) for p in rng.integers(0, count, (int(rng.integers(0, 40)), 2)) if p[0] != p[1]}
        i, j = (np.array(c, np.int64) for c in zip(*pairs)) if pairs else (np.zeros(0, np.int64),) * 2
        nearness = rng.integers(0, 4, len(i)).astype(float)  # ties too
        distance = dict(zip(zip(i.tolist(), j.tolist()), nearness))
        keep, copy_of = clean_rule(count, split_of, i, j, nearness)
        for f in np.flatnonzero(~keep):  # what it copies is its nearest partner among those it may copy
            partners = [a for a, b in pairs if b == f]
            options = [a for a in partners if split_of[a] < split_of[f]] or [a for a in partners if keep[a]]
            assert distance[(int(copy_of[f]), int(f))] == min(distance[(a, int(f))] for a in options)
        for a, b in pairs:  # a < b: b comes later in the audit's order
            assert not (keep[a] and keep[b] and split_of[a] == split_of[b]), "two kept copies in one split"
            assert not (keep[b] and split_of[a] < split_of[b]), "a kept file with a copy in an earlier split"
        for f in np.flatnonzero(~keep):
            c = int(copy_of[f])
            assert tuple(sorted((c, int(f)))) in pairs and c < f, "a copy not flagged with what it copies"
            assert split_of[c] < split_of[f] or keep[c], "a copy of a file that left its own split"
        assert (copy_of[keep] == -1).all()


def test_the_nearest_partner_is_judged_on_the_flagging_distances_as_the_review_page_orders_them():
    """A test file T is flagged with train file A by h2 at 8 (h1's 6.5 is beyond h1's threshold 6, so
    h1 does not flag it) and with train file B by h2 at 7. The review page ranks B-T before A-T (its
    order and bold distance use the flagging distances only): groups.csv must say T copies B, not A,
    which the unflagged 6.5 made the nearer when every hasher's distance counted."""
    from harness import leaks_search

    splits = [SimpleNamespace(name="train", files=["A", "B"], file_notes=["", ""]),
              SimpleNamespace(name="test", files=["T"], file_notes=[""])]
    hashers = {"h1": SimpleNamespace(distance_max=64.0), "h2": SimpleNamespace(distance_max=64.0)}
    thresholds = {"h1": 6.0, "h2": 9.0}
    flagged = pd.DataFrame({"a": [0, 0], "b": [1, 1], "i": [0, 1], "j": [0, 0],
                            "h1": [6.5, 30.0], "h2": [8.0, 7.0], "agree": [1, 1]})
    made = leaks_search.tables(SimpleNamespace(min_agree=1), splits, hashers, flagged, thresholds)
    groups = made["groups"].set_index("file")
    assert groups.loc["T", "copy_of"] == "B" and groups.loc["T", "copy_in"] == "train"
    assert made["clean"] == {"train": ["A", "B"], "test": []}


def test_a_copy_is_said_to_copy_its_nearest_partner():
    """A stretched board in test is flagged with the board (pHash 1) and with another train photo
    (pHash 22, listed first): it is a copy of the board. Among equals, one that stays."""
    from harness.leaks_search import clean_rule

    keep, copy_of = clean_rule(3, np.array([0, 0, 1]), np.array([0, 1]), np.array([2, 2]), np.array([22.0, 1.0]))
    assert keep.tolist() == [True, True, False] and copy_of.tolist() == [-1, -1, 1]
    # In train, 1 left as a copy of 0; the test file 3 is as near to 1 as to 2, which stays: 2.
    keep, copy_of = clean_rule(4, np.array([0, 0, 0, 1]), np.array([0, 1, 2]), np.array([1, 3, 3]),
                               np.array([0.0, 0.2, 0.2]))
    assert keep.tolist() == [True, False, True, False] and copy_of.tolist() == [-1, 0, -1, 2]


def test_the_false_flag_range_counts_pairs_of_images_and_chance():
    """A calibration run's impostor pairs are mostly edited copies of a few images: 3,480 pairs from
    15 images and no false match promised at most 1.7 false flags among 1,517 pairs (Wilson over the
    pairs), and an audit found 5. Over its 105 pairs of different images, with the count's own
    chance variation, the range says what such a run can promise."""
    expected, low, high = false_flag_range(1517, 0.0, 105)
    assert (expected, low) == (0.0, 0.0)
    assert high == poisson_quantile(0.975, 1517 * wilson_interval(0, 105)[1]) and high > 50
    assert 1517 * wilson_interval(0, 3480)[1] < 2  # what the range was
    # A well-measured rate leaves the chance variation of the count alone: Poisson(10)'s 95% range.
    assert false_flag_range(1000, 0.01, 10**9)[1:] == (4.0, 17.0)
    assert all(np.isnan(false_flag_range(1000, 0.0, 0)))


def test_poisson_quantiles():
    assert [poisson_quantile(q, m) for q, m in ((0.975, 3.3), (0.025, 14), (0.975, 14), (0.025, 53.2))] == \
        [7.0, 7.0, 22.0, 39.0]  # scipy.stats.poisson.ppf's values
    assert poisson_quantile(0.975, 0.0) == poisson_quantile(0.025, 1e-9) == 0.0
    assert 10**12 - 3 * 10**6 < poisson_quantile(0.025, 1e12) < 10**12  # past pdtrik's range


def test_source_pairs_are_counted_either_way_round_once():
    assert source_pairs(["a", "b", "a", "a"], ["b", "a", "c", "b"]) == 2
    # As text, as a set of str pairs counted them: 1 and "1" are one image, None "None", NaN "nan".
    assert source_pairs([1, "1", "a"], ["2", 2, "b"]) == 2
    assert source_pairs(pd.Categorical(["a", None, None]), np.array([None, "nan", "None"], object)) == 3
    assert source_pairs([], []) == 0


def test_the_agreements_false_rate_is_the_pivot_tables():
    """agreement_rate counts what the pivot table of the impostor pairs, one column a hasher, gave:
    duplicate rows (the first number counts), missing distances, pairs only one hasher measured,
    and a missing key."""
    rng = np.random.default_rng(8)
    n = 4000
    table = pd.DataFrame({"hasher": rng.choice(["a", "b", "c"], n), "kind": rng.choice(["edit", "source"], n),
                          "family": rng.choice(["jpeg", "crop", ""], n), "value": rng.choice(["1", "2"], n),
                          "image_id": rng.choice([f"i{k}" for k in range(12)], n),
                          "other_id": rng.choice([f"i{k}" for k in range(12)], n),
                          "distance": rng.integers(0, 20, n).astype(float)})
    table.loc[rng.random(n) < 0.1, "distance"] = np.nan
    table.loc[5, "family"] = None
    for column in ("hasher", "kind", "family", "value", "image_id", "other_id"):
        table[column] = table[column].astype("category")
    thresholds = {"a": 6.0, "b": 9.0, "c": 4.0}
    wide = table.pivot_table(index=["kind", "family", "value", "image_id", "other_id"], columns="hasher",
                             values="distance", aggfunc="first", observed=True)
    for chosen, min_agree in [(["a", "b"], 1), (["a", "b"], 2), (["a", "b", "c"], 2)]:
        given = {h: thresholds[h] for h in chosen}
        part = wide[chosen].dropna()
        matched = sum((part[h] <= t).to_numpy() for h, t in given.items()) >= min_agree
        images, others = part.index.get_level_values("image_id"), part.index.get_level_values("other_id")
        expected = (int(matched.sum()), len(part), source_pairs(images, others),
                    source_pairs(images[matched], others[matched]))
        assert 0 < expected[0] < expected[1]
        assert agreement_rate(table, given, min_agree) == expected


@pytest.fixture(scope="module")
def no_copies(tmp_path_factory):
    """Two collections of distinct scenes and no copy at all: a calibration run over one, an audit of the other."""
    root = tmp_path_factory.mktemp("nocopies")
    for seed in range(1000, 1040):
        write(root / "calibrate" / f"c{seed}.png", make_scene(seed, 120, 160))
    for seed in range(2000, 2040):
        write(root / "train" / f"a{seed}.png", make_scene(seed, 120, 160))
    for seed in range(3000, 3040):
        write(root / "test" / f"b{seed}.png", make_scene(seed, 120, 160))
    config = root / "calibrate.yaml"
    config.write_text(f"images: [{root / 'calibrate'}]\nhashers: [aHash, pHash]\nseed: 3\ndetection: {{fpr: [0.05]}}\n"
                      "impostors: {transformed: false}\nsweeps: [{family: jpeg, b: {jpeg: {quality: 50}}}]\n")
    assert main(["run", str(config), "--out", str(root / "run"), "--quiet"]) == 0
    return root


def test_the_expected_false_flags_match_a_collection_without_copies(no_copies, tmp_path):
    """Every flag of an audit of copy-free collections is false: their number must fall where the
    calibration run said it would (its interval holds the audit's own chance variation)."""
    root = no_copies
    out = tmp_path / "out"
    assert main(["leaks", "--train", str(root / "train"), "--test", str(root / "test"), "--hashers", "aHash,pHash",
                 "--calibration", str(root / "run"), "--out", str(out), "--quiet"]) == 0
    estimates = pd.read_csv(out / "estimates.csv")
    cross = estimates[(estimates["split_a"] == "train") & (estimates["split_b"] == "test")]
    checked = 0
    for _, row in cross.iterrows():
        assert row["expected_false_low"] <= row["pairs_flagged"] <= row["expected_false_high"], row.to_dict()
        checked += row["expected_false"] >= 5  # a test with something to count
    assert checked >= 1, cross
    run = json.loads((out / "run.json").read_text())
    assert run["threshold_basis"]["pHash"].startswith("fpr=0.05 of the impostor pairs of the run")
    misses = pd.read_csv(out / "misses.csv")
    assert set(misses["family"]) == {"jpeg"} and set(misses["hasher"]) == {"aHash", "pHash", "(agreement)"}
    # Every flag here is false, and the summary says so before anything else; the basis says how many
    # pairs of different images the rate rests on, of the 780 the calibration run has.
    summary = (out / "summary.md").read_text()
    assert summary.split("\n")[4].startswith("> **Most of the flags between splits are expected to be chance matches**")
    assert re.search(r"\(they are \d+ of its 780 pairs of different images\)\. Most of these flags are expected", summary)
    assert "Without a calibration run" not in summary and "measure the calibration run's edits only" in summary


def test_flags_below_the_expected_range_say_the_estimate_is_too_high_here():
    from harness.leaks_report import _estimate_caution

    row = {"pairs_flagged": 36, "expected_false": 1894.0, "expected_false_low": 168.0}
    assert _estimate_caution(row).startswith(" Fewer pairs were flagged than that range allows")
    assert _estimate_caution({**row, "pairs_flagged": 2000}).startswith(" Most of these flags are expected")
    assert _estimate_caution({**row, "pairs_flagged": 5000}) == ""


def test_a_calibration_run_is_checked_before_any_image_and_an_unresolved_rate_is_said(no_copies, tmp_path,
                                                                                        monkeypatch, capsys):
    root = no_copies
    from harness import imagework

    real = imagework.decode_source
    monkeypatch.setattr(imagework, "decode_source", lambda *a: pytest.fail("an image was decoded"))
    assert main(["leaks", "--train", str(root / "train"), "--test", str(root / "test"), "--hashers", "PDQ",
                 "--calibration", str(root / "run"), "--out", str(tmp_path / "bad"), "--quiet"]) == 2
    assert "the run has no hasher PDQ (it has aHash, pHash)" in one_line(capsys)
    monkeypatch.setattr(imagework, "decode_source", real)
    out = tmp_path / "out"  # 780 impostor pairs cannot measure a rate of 1 in 10,000
    assert main(["leaks", "--train", str(root / "train"), "--test", str(root / "test"), "--hashers", "pHash",
                 "--calibration", str(root / "run"), "--fpr", "0.0001", "--out", str(out), "--quiet"]) in (0, 1)
    basis = json.loads((out / "run.json").read_text())["threshold_basis"]["pHash"]
    assert "unresolved: its 780 impostor pairs are too few to measure that rate" in basis, basis


@pytest.mark.parametrize("fpr", [[], ["--fpr", "0.01"]])
def test_a_calibration_run_without_impostor_pairs_is_refused_saying_so(tmp_path, capsys, fpr):
    """A run of one image has no pairs of different images: nothing to calibrate from, said so (it
    was "no threshold of pHash at None", or "its closest impostor pairs are too many at one distance")."""
    run = tmp_path / "run"
    harness.evaluate({"images": ["builtin:astronaut"], "hashers": ["pHash"],
                      "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": 50}}}]}).save(run)
    assert main(["leaks", "--train", "builtin:astronaut", "--test", "builtin:coffee", "--hashers", "pHash",
                 "--calibration", str(run), *fpr, "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert one_line(capsys) == (f"error: calibration {run}: the run has no impostor pairs (pairs of different images) "
                                "of pHash to calibrate from (it has 1 image); calibrate with a run of many images")


def test_a_calibration_leaves_out_the_impostor_pairs_its_run_excludes(tmp_path):
    """A run whose collection holds a JPEG copy of the astronaut, listed as a duplicate of it: that pair
    (distance 0) is no impostor pair, in the run's thresholds and in a calibration from it alike. Kept,
    it would be a chance match at 0 in the audit's rate (and could move an fpr threshold)."""
    from harness.images import load_source

    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("astronaut", "camera", "coffee", "coins", "chelsea", "clock"):
        pixels = load_source(f"builtin:{name}").pixels
        cv2.imwrite(str(folder / f"{name}.png"), pixels)
        if name == "astronaut":
            cv2.imwrite(str(folder / "astronaut_copy.jpg"), pixels, [cv2.IMWRITE_JPEG_QUALITY, 80])
    run = tmp_path / "run"
    harness.evaluate({"images": [str(folder)], "hashers": ["pHash"], "detection": {"fpr": [0.1]},
                      "impostors": {"transformed": False, "duplicates": [["astronaut", "astronaut_copy"]]},
                      "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": 50}}}]}).save(run)
    results = harness.load(run)
    assert len(results.metrics.excluded) == 1 and len(results.impostors) == 21  # 7 images: 21 pairs, 1 excluded
    kept = results.impostors.drop(index=results.metrics.excluded.index)["distance"]
    out = tmp_path / "out"
    assert main(["leaks", "--train", "builtin:astronaut", "--test", "builtin:camera", "--hashers", "pHash",
                 "--calibration", str(run), "--fpr", "0.1", "--out", str(out), "--quiet"]) == 0
    threshold = json.loads((out / "run.json").read_text())["thresholds"]["pHash"]
    assert threshold == pd.read_csv(run / "thresholds.csv").set_index("operating_point").loc["fpr=0.1", "threshold"]
    basis = pd.read_csv(out / "estimates.csv")["basis"].iloc[0]
    assert basis.startswith(f"{(kept <= threshold).sum()} of 20 impostor pairs of the run"), basis


def test_an_audit_never_replaces_its_calibration_run_and_its_config_names_where_it_is(no_copies, tmp_path, capsys):
    root = no_copies
    before = sorted(p.name for p in (root / "run").iterdir())
    assert main(["leaks", "--train", str(root / "train"), "--test", str(root / "test"), "--hashers", "pHash",
                 "--calibration", str(root / "run"), "--out", str(root / "run"), "--quiet"]) == 2
    assert f"holds what the command reads (calibration: {root / 'run'})" in one_line(capsys)
    assert sorted(p.name for p in (root / "run").iterdir()) == before
    audit = harness.find_leaks({"splits": {"train": [str(root / "train")], "test": [str(root / "test")]},
                                "hashers": ["pHash"], "calibration": str(root / "run")})
    with pytest.raises(harness.HarnessError, match="holds what the command reads"):
        audit.save(root / "run")
    audit.save(tmp_path / "saved")  # a pathlib.Path, written into its config.yaml as a string
    assert yaml.safe_load((tmp_path / "saved" / "config.yaml").read_text())["output"] == str(tmp_path / "saved")


def test_fpr_on_the_data_itself_flags_at_most_that_share(no_copies, tmp_path):
    root = no_copies
    out = tmp_path / "out"
    assert main(["leaks", "--train", str(root / "train"), "--test", str(root / "test"), "--hashers", "pHash",
                 "--fpr", "0.01", "--out", str(out), "--quiet"]) == 0
    estimates = pd.read_csv(out / "estimates.csv", keep_default_na=False)
    cross = estimates[(estimates["split_a"] == "train") & (estimates["split_b"] == "test")].iloc[0]
    assert 0 < cross["pairs_flagged"] <= 0.01 * 40 * 40
    assert cross["expected_false"] == "" and cross["expected_false_high"] == cross["pairs_flagged"]


def test_fpr_on_data_holding_more_exact_copies_than_that_share_flags_them(tmp_path, capsys):
    """Exact copies are the leaks the audit is for: when the pairs with identical hashes alone are
    more than the share, the threshold is 0 (those pairs, nothing more), and the audit says so."""
    for seed in range(3):
        write(tmp_path / "train" / f"t{seed}.png", make_scene(seed, 64, 64))
        write(tmp_path / "test" / f"copy{seed}.png", make_scene(seed, 64, 64))
    write(tmp_path / "test" / "own.png", make_scene(9, 64, 64))
    out = tmp_path / "out"
    assert main(["leaks", "--train", str(tmp_path / "train"), "--test", str(tmp_path / "test"), "--fpr", "0.1",
                 "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "note: fpr: 3 of the 12 pairs compared have identical pHash hashes, more than fpr=0.1 of them; the threshold "
        "is 0, so only those pairs are flagged (copies, most likely). For near copies too, give a threshold or a "
        "calibration run (--threshold, --calibration: a run's output directory)"]
    assert json.loads((out / "run.json").read_text())["thresholds"] == {"pHash": 0.0}
    assert "3 of 4 test files have a copy in train" in (out / "summary.md").read_text()
    assert "0, flagging only identical hashes" in (out / "hashers.csv").read_text()


def test_an_fpr_threshold_keeps_the_distance_at_which_exactly_that_share_is_flagged(tmp_path):
    """fpr=0.2 of 10 pairs allows 2 flags, and exactly 2 test files are within distance 2 of the train file
    (one at 1, one at 2; the next at 3): the threshold is 2, flagging those 2, "at most" the share. A
    strict comparison (fewer than 2) gave 1, one copy short, with nothing over the share to show for it."""
    (tmp_path / "train.csv").write_text("file,hash\na.png,0000000000000000\n")
    near = ["0000000000000001", "0000000000000003", "0000000000000007"]  # distances 1, 2 and 3 from a.png
    far = ["ffffffffffffffff", "00000000ffffffff", "ffffffff00000000", "0f0f0f0f0f0f0f0f", "f0f0f0f0f0f0f0f0",
           "ff00ff00ff00ff00", "00ff00ff00ff00ff"]  # 32 or 64 from it
    (tmp_path / "test.csv").write_text("file,hash\n" + "".join(f"t{k}.png,{h}\n" for k, h in enumerate(near + far)))
    out = tmp_path / "out"
    assert main(["leaks", "--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"),
                 "--hashers", "pHash", "--fpr", "0.2", "--out", str(out), "--quiet"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["thresholds"] == {"pHash": 2.0}
    assert run["threshold_basis"]["pHash"].endswith("at most fpr=0.2 of the 10 pairs compared are flagged (2)")
    estimates = pd.read_csv(out / "estimates.csv")
    cross = estimates[(estimates["split_a"] == "train") & (estimates["split_b"] == "test")].iloc[0]
    assert (cross["pairs_compared"], cross["pairs_flagged"]) == (10, 2)


def test_the_python_api_gives_the_same_tables(planted, tmp_path):
    root, _ = planted
    config = {"splits": {"train": [str(root / "train")], "test": [str(root / "test")]}, "hashers": ["pHash"],
              "threshold": 10}
    result = harness.find_leaks(config)
    assert "have a copy in train" in result.answer
    result.save(str(tmp_path / "api"))
    assert audit(root, tmp_path / "cli", "--hashers", "pHash", "--threshold", "10") == 0
    for name in ("leaks.csv", "groups.csv", "estimates.csv"):
        assert (tmp_path / "api" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes()
    assert (tmp_path / "cli" / "config.yaml").exists()
    assert main(["leaks", str(tmp_path / "cli" / "config.yaml"), "--out", str(tmp_path / "again"), "--quiet"]) == 0
    assert (tmp_path / "cli" / "leaks.csv").read_bytes() == (tmp_path / "again" / "leaks.csv").read_bytes()


def test_a_distance_is_flagged_as_the_table_shows_it(tmp_path):
    """leaks.csv holds distances to 6 significant digits, as a run's tables do: a pair whose distance
    prints as the threshold is flagged (a calibration's thresholds are such printed distances), and
    flagged says what `distance <= threshold` says of the row."""
    from harness.hashers.opencv import ColorMomentHash
    from harness.storage import round6

    hasher = ColorMomentHash()
    for seed in range(1, 40):  # a pair whose distance is just above its 6-digit print
        images = [make_scene(0, 96, 128), apply_chain(make_scene(0, 96, 128), [("jpeg", {"quality": 10 + seed})])]
        hashes = hasher.hash_images(images)
        exact = float(hasher.distance(hashes[:1], hashes[1:])[0])
        if round6(np.array([exact]))[0] < exact:
            break
    threshold = float(round6(np.array([exact]))[0])
    write(tmp_path / "train" / "a.png", images[0])
    write(tmp_path / "test" / "b.png", images[1])
    audit = harness.find_leaks({"splits": {"train": [str(tmp_path / "train")], "test": [str(tmp_path / "test")]},
                                "hashers": ["ColorMomentHash"], "threshold": threshold})
    audit.save(tmp_path / "out")
    leaks = pd.read_csv(tmp_path / "out" / "leaks.csv")
    assert leaks[["distance", "flagged"]].values.tolist() == [[threshold, True]], (exact, threshold)
    assert audit.answer.startswith("1 of 1 test file has a copy in train")


# --- bad input ------------------------------------------------------------------------------

def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err.strip()


def test_bad_input_is_one_line(planted, tmp_path, capsys):
    root, _ = planted
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["--train", str(empty), "--test", str(root / "test"), "--threshold", "8"], "no image files in directory"),
        (["--train", str(tmp_path / "missing"), "--test", str(root / "test"), "--threshold", "8"], "no image file at"),
        (["--train", str(root / "train"), "--test", str(root / "test")],  # the options, not the config's keys
         "error: leaks: choose how close is a copy: --threshold N (a distance), --fpr RATE (a share of the pairs "
         "compared) or --calibration RUN_DIR (a run's output directory)"),
        (["--train", str(root / "train"), "--test", str(root / "test"), "--threshold", "x"], "expected a number"),
        (["--train", str(root / "train"), "--test", str(root / "test"), "--threshold", "inf"],
         "threshold: expected a finite distance >= 0, got inf"),
        ([], "leaks: nothing to audit; give --train and --test (image folders, files or hash tables), or a config "
             "with splits"),
        (["--train", str(root / "train"), "--test", str(root / "test"), "--threshold", "8", "--min-agree", "2"],
         "--min-agree: expected a whole number from 1 to 1 (the hashers), got 2"),
        (["--train", str(root / "train"), "--test", str(root / "test"), "--calibration", str(tmp_path / "nope")],
         "no run output directory"),
        (["--train", str(root / "train"), "--test", str(root / "test"), "--threshold", "8", "--hashers", "dHash"],
         "error: --hashers: unknown hasher 'dHash'; did you mean 'imagehash.dhash'?"),
        (["--train", str(root / "train"), "--test", str(root / "test"), "--threshold", "8", "--hashers", ""],
         "error: --hashers: expected a non-empty list"),
    ]
    bad = tmp_path / "bad.csv"
    bad.write_text("file,hash\na.png,00ff00ff00ff00ff\nb.png,xyz\n")
    cases.append((["--train", str(bad), "--test", str(root / "test"), "--threshold", "8"],
                  "bad.csv: row 3: hash 'xyz' is not 16 hexadecimal digits (pHash's hashes are 64 bits)"))
    short = tmp_path / "short.csv"
    short.write_text("file,hash\na.png,00ff\n")
    cases.append((["--train", str(short), "--test", str(root / "test"), "--threshold", "8"], "is not 16 hexadecimal"))
    padded = tmp_path / "padded.csv"  # imagehash.colorhash: 42 bits in 6 bytes, the last 6 bits padding
    padded.write_text("file,hash\na.png,000000000000\nb.png,ffffffffffff\n")
    cases.append((["--train", str(padded), "--test", str(padded), "--hashers", "imagehash.colorhash", "--threshold",
                   "8"], "padded.csv: row 3: hash 'ffffffffffff' sets bits past the 42 bits of imagehash.colorhash"))
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("name,value\na,b\n")
    cases.append((["--train", str(wrong), "--test", str(root / "test"), "--threshold", "8"], "not a table with the "
                                                                                              "columns file, hash"))
    import pyarrow as pa
    import pyarrow.parquet as pq

    for name, table, message in [  # Parquet columns may hold what a CSV cannot: bytes, numbers, nulls
        ("bytes", pa.table({"file": ["a.png"], "hash": pa.array([b"\xff" * 8])}), "column hash holds binary values"),
        ("numbers", pa.table({"file": [1], "hash": ["ff" * 8]}), "column file holds int64 values, not text"),
        ("null", pa.table({"file": ["a.png", "b.png"], "hash": pa.array(["ff" * 8, None], pa.string())}),
         "null.parquet: row 2: hash is null"),
        ("badhex", pa.table({"file": ["a.png"], "hash": ["xyz"]}), "badhex.parquet: row 1: hash 'xyz' is not 16"),
    ]:
        pq.write_table(table, tmp_path / f"{name}.parquet")
        cases.append((["--train", str(tmp_path / f"{name}.parquet"), "--test", str(root / "test"), "--threshold", "8"],
                      message))
    sparse = tmp_path / "sparse.csv"
    sparse.write_bytes(b"file,hash\n")
    os.truncate(sparse, 64 << 20)  # NUL bytes: pandas would take four times that
    cases.append((["--train", str(sparse), "--test", str(root / "test"), "--threshold", "8"],
                  "sparse.csv: holds NUL bytes; not a CSV table"))
    broken = tmp_path / "broken.csv"
    broken.write_text('file,hash\n"two\nlines.png",00ff00ff00ff00ff\n')
    cases.append((["--train", str(broken), "--test", str(root / "test"), "--threshold", "8"],
                  "broken.csv: row 2: file 'two\\nlines.png' holds a line break"))
    twice = tmp_path / "twice.csv"
    twice.write_text("file,hash\na.png,00ff00ff00ff00ff\nb.png,00ff00ff00ff00ff\na.png,ffff00ff00ff00ff\n")
    cases.append((["--train", str(twice), "--test", str(root / "test"), "--threshold", "8"],
                  "twice.csv: row 4: file 'a.png' is row 2 too; a hash table holds each file once"))
    unnamed = tmp_path / "unnamed.csv"
    unnamed.write_text("file,hash\n,00ff00ff00ff00ff\n")
    cases.append((["--train", str(unnamed), "--test", str(root / "test"), "--threshold", "8"],
                  "unnamed.csv: row 2: file is empty"))
    for argv, message in cases:
        assert main(["leaks", *argv, "--out", str(tmp_path / "out"), "--quiet"]) == 2, argv
        assert message in one_line(capsys), argv
    written = {p.name for p in (tmp_path / "out").iterdir()} if (tmp_path / "out").exists() else set()
    assert written <= {"hash-cache.sqlite", "hash-cache.sqlite-wal", "hash-cache.sqlite-shm"}  # no outputs


@pytest.mark.parametrize("threshold, where", [
    ({"threshold": 100000}, "audit.yaml: threshold: 100000 is at or above aHash's"),  # aHash, checked first
    ({"threshold": {"pHash": 64, "aHash": 8}}, "audit.yaml: threshold.pHash: 64 is at or above pHash's"),
    (["--threshold", "64"], "--threshold: 64 is at or above aHash's"),
    (["--threshold", "aHash=3,pHash=100000"], "--threshold: pHash: 100000 is at or above pHash's"),
])
def test_a_threshold_that_flags_every_pair_is_refused(planted, tmp_path, capsys, threshold, where):
    """pHash's distances are at most its 64 bits: a threshold there flagged every pair compared,
    found before any work. A threshold given with --threshold names the option, even with a config."""
    root, _ = planted
    config = tmp_path / "audit.yaml"
    raw = {"splits": {"train": [str(root / "train")], "test": [str(root / "test")]}, "hashers": ["aHash", "pHash"]}
    config.write_text(yaml.safe_dump({**raw, "threshold": 8, **(threshold if isinstance(threshold, dict) else {})}))
    options = threshold if isinstance(threshold, list) else []
    assert main(["leaks", str(config), *options, "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert one_line(capsys).endswith(f"{where} largest distance (64): every pair would be flagged")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, options, message", [
    ({}, ["--min-agree", "3"], "--min-agree: expected a whole number from 1 to 2 (the hashers), got 3"),
    ({"min_agree": 2}, ["--min-agree", "3"], "--min-agree: expected a whole number from 1 to 2 (the hashers), got 3"),
    ({}, ["--fpr", "2"], "--fpr: expected a share in (0, 1), got 2.0"),
    ({}, ["--calibration", "nowhere"], "--calibration: no run output directory at 'nowhere'"),
    ({"min_agree": 3}, [], "audit.yaml: min_agree: expected a whole number from 1 to 2 (the hashers), got 3"),
])
def test_an_option_that_overrides_a_config_is_named_in_its_errors(planted, tmp_path, capsys, monkeypatch, extra,
                                                                   options, message):
    """`leaks CONFIG --min-agree 3` named the config file, which holds no such value."""
    root, _ = planted
    monkeypatch.chdir(tmp_path)
    splits = {"train": [str(root / "train")], "test": [str(root / "test")]}
    (tmp_path / "audit.yaml").write_text(yaml.safe_dump({"splits": splits, "hashers": ["aHash", "pHash"],
                                                         "threshold": 8, **extra}))
    assert main(["leaks", "audit.yaml", *options, "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert one_line(capsys) == f"error: {message}"


def test_a_threshold_below_the_largest_distance_or_of_an_unbounded_distance_is_kept():
    """One below the bit count flags what is within it; ColorMomentHash's distance_max (100) only
    scales its L2 distances, which go past it, so a threshold above it is a real choice."""
    splits = {"train": ["a"], "test": ["b"]}
    assert leak_config({"splits": splits, "hashers": ["pHash"], "threshold": 63}).threshold == {"pHash": 63}
    config = leak_config({"splits": splits, "hashers": ["ColorMomentHash"], "threshold": 500})
    assert config.threshold == {"ColorMomentHash": 500}


def test_a_source_that_names_nothing_is_named_where_the_user_gave_it(planted, tmp_path, capsys, monkeypatch):
    """The config's file and key, or the command line's option: not a key the user never wrote."""
    root, _ = planted
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "audit.yaml"
    config.write_text(yaml.safe_dump({"splits": {"train": [str(root / "train")], "test": ["nothere/x.jpg"]}}))
    table = tmp_path / "hashes.csv"
    table.write_text("file,hash\na.png,00ff00ff00ff00ff\n")
    for argv, message in [
        ([str(config)], f"error: {config}: splits.test[0]: no image file at 'nothere/x.jpg'"),
        (["--train", str(root / "train"), "--test", "nothere/x.jpg"], "error: --test: no image file at 'nothere/x.jpg'"),
        ([str(config), "--test", "nothere/y.jpg"], "error: --test: no image file at 'nothere/y.jpg'"),
        ([str(config), "--train", "nothere/z.jpg"], "error: --train: no image file at 'nothere/z.jpg'"),
        (["--train", str(root / "train"), "--split", "val=nothere/v.jpg", "--test", str(root / "test")],
         "error: --split val: no image file at 'nothere/v.jpg'"),
        (["--train", str(table), "--test", str(root / "test"), "--hashers", "pHash,aHash"],
         f"error: --train: {table} is a hash table, which holds one hasher's hashes"),
    ]:
        assert main(["leaks", *argv, "--threshold", "8", "--out", str(tmp_path / "out"), "--quiet"]) == 2, argv
        assert one_line(capsys).startswith(message), argv
    with pytest.raises(harness.ConfigError, match=r"^<dict>: splits\.test\[0\]: no image file at 'nothere/x\.jpg'$"):
        harness.find_leaks({"splits": {"train": [str(root / "train")], "test": ["nothere/x.jpg"]}, "threshold": 8})


@pytest.mark.parametrize("bad", [5, b"out", ["out"]])
def test_find_leaks_refuses_an_output_of_the_wrong_type(tmp_path, bad, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(harness.HarnessError) as caught:
        harness.find_leaks({"splits": {"train": ["builtin:coffee"], "test": ["builtin:camera"]}, "threshold": 8},
                           output=bad)
    assert str(caught.value) == f"output: expected a path (a str or pathlib.Path), got {bad!r}"
    assert os.listdir(tmp_path) == []


def test_an_audit_keeps_the_config_it_ran_with_and_takes_python_values(tmp_path):
    """Paths, tuples and NumPy numbers in a dict built in Python, as plain YAML data; and neither the
    caller's dict, changed after the audit, nor the dict `config` hands out changes its record."""
    import pathlib

    photo = tmp_path / "photo.png"
    write(photo, make_scene(1, 64, 64))
    config = {"splits": {"train": (photo,), "test": ["builtin:camera"]}, "hashers": ("pHash",),
              "threshold": {"pHash": np.int64(8)}, "min_agree": np.int8(1)}
    audit = harness.find_leaks(config)
    assert audit.config["splits"] == {"train": [str(photo)], "test": ["builtin:camera"]}
    assert audit.config["threshold"] == {"pHash": 8} and type(audit.config["threshold"]["pHash"]) is int
    assert yaml.safe_load(yaml.safe_dump(audit.config)) == audit.config
    config["threshold"]["pHash"] = 2
    handed_out = audit.config
    handed_out["splits"]["test"].append("x.png")
    assert audit.config["threshold"] == {"pHash": 8} and audit.config["splits"]["test"] == ["builtin:camera"]
    with pytest.raises(harness.ConfigError, match="^<dict>: calibration: no run output directory at"):
        harness.find_leaks({**config, "calibration": pathlib.Path(tmp_path / "nothere")})


def test_an_unreadable_image_is_a_row_of_errors(planted, tmp_path, capsys):
    root, _ = planted
    test = tmp_path / "test"
    shutil.copytree(root / "test", test)
    (test / "broken.jpg").write_text("<html>404</html>")
    out = tmp_path / "out"
    assert main(["leaks", "--train", str(root / "train"), "--test", str(test), "--threshold", "8", "--out",
                 str(out), "--quiet"]) == 1
    errors = pd.read_csv(out / "errors.csv")
    assert list(errors["image"]) == [str(test / "broken.jpg")] and "not an image" in errors["reason"][0]
    # the exit status says something failed; the last line says what, and where to look
    assert capsys.readouterr().err.splitlines()[-1] == \
        "note: 1 file or folder could not be read, so the audit did not compare them; see errors.csv"
    # The answer, and the summary, do not read as if every file was compared (it is in no count, no clean list).
    summary = (out / "summary.md").read_text()
    assert ("26 test files have a copy in train; 1 more file (1 in train) is a copy of another file of its own split; "
            "1 file or folder could not be read, so it is in no count and no clean list (errors.csv) (flagged at"
            in summary)
    assert "Every pair of the files read was compared" in summary
    assert "broken.jpg" not in (out / "clean" / "test.txt").read_text()


def test_a_second_audit_from_the_hash_tables_reports_the_files_the_first_could_not_hash(tmp_path, capsys):
    """The tables hold only the files that hashed: the others travel in their metadata, so an audit
    from them says what the first said (errors.csv, exit status) instead of calling the split clean."""
    write(tmp_path / "train" / "a.png", make_scene(1, 64, 64))
    write(tmp_path / "train" / "b.png", make_scene(2, 64, 64))
    write(tmp_path / "test" / "c.png", make_scene(3, 64, 64))
    (tmp_path / "test" / "broken.jpg").write_text("junk\n")
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["leaks", "--train", str(tmp_path / "train"), "--test", str(tmp_path / "test"), "--threshold", "8",
                 "--out", str(first), "--quiet"]) == 1
    hashes = first / "hashes"
    assert main(["leaks", "--train", str(hashes / "train.pHash.parquet"), "--test", str(hashes / "test.pHash.parquet"),
                 "--threshold", "10", "--out", str(second), "--quiet"]) == 1
    assert (second / "errors.csv").read_bytes() == (first / "errors.csv").read_bytes()
    assert str(tmp_path / "test" / "broken.jpg") in (second / "errors.csv").read_text()
    assert capsys.readouterr().err.splitlines()[-1] == \
        "note: 1 file or folder could not be read, so the audit did not compare them; see errors.csv"
    # Tables of other tools (only `file` and `hash`) are read as before.
    assert list(pd.read_parquet(hashes / "test.pHash.parquet").columns) == ["file", "hash"]


def test_one_table_given_to_two_splits_says_its_note_once(tmp_path, capsys):
    table = tmp_path / "theirs.csv"
    table.write_text("file,hash\nnowhere/a.png,00ff00ff00ff00ff\nnowhere/b.png,ff00ff00ff00ff00\n")
    assert main(["leaks", "--train", str(table), "--test", str(table), "--hashers", "pHash", "--threshold", "0",
                 "--out", str(tmp_path / "o"), "--quiet"]) == 0
    notes = capsys.readouterr().err.splitlines()
    assert sum("2 of 2 files named by" in note for note in notes) == 1, notes


def test_hash_tables_name_their_files_from_the_directory_their_audit_ran_from(tmp_path, capsys, monkeypatch):
    """A table's relative names are relative to where its audit ran, which it records: an audit from
    the tables run elsewhere previews and lists those files; where they are found nowhere, a note
    says how many and why (review.html showed "unreadable" for every pair, without a word)."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    write(project / "train" / "a.png", make_scene(1, 64, 64))
    write(project / "train" / "b.png", make_scene(2, 64, 64))
    write(project / "test" / "a_again.png", make_scene(1, 64, 64))
    elsewhere.mkdir()
    monkeypatch.chdir(project)
    assert main(["leaks", "--train", "train", "--test", "test", "--threshold", "0", "--out", "first", "--quiet"]) == 0
    hashes = project / "first" / "hashes"
    recorded = json.loads(pq.read_schema(hashes / "test.pHash.parquet").metadata[b"harness.leaks"])
    assert recorded["cwd"] == str(project)
    tables = ["--train", str(hashes / "train.pHash.parquet"), "--test", str(hashes / "test.pHash.parquet")]

    monkeypatch.chdir(elsewhere)
    assert main(["leaks", *tables, "--threshold", "0", "--out", "second", "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    second = elsewhere / "second"
    page = (second / "review.html").read_text()
    assert page.count("<img") == 2 and "(unreadable)" not in page
    assert (second / "clean" / "train.txt").read_text().splitlines() == [str(project / "train" / "a.png"),
                                                                         str(project / "train" / "b.png")]
    assert list(pd.read_csv(second / "files.csv")["file"]) == ["train/a.png", "train/b.png", "test/a_again.png"]
    # The second audit's tables keep the first's directory: their names are still relative to it.
    assert json.loads(pq.read_schema(second / "hashes" / "train.pHash.parquet").metadata[b"harness.leaks"])["cwd"] \
        == str(project)

    # A table that records no directory (another tool's) is read from here, and a note says why nothing is found.
    pd.read_parquet(hashes / "test.pHash.parquet").to_csv(elsewhere / "test.csv", index=False)
    assert main(["leaks", tables[0], tables[1], "--test", "test.csv", "--threshold", "0", "--out", "third",
                 "--quiet"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "note: test.csv holds no record of the audit that wrote it (harness.leaks metadata: an older audit's table, "
        "another tool's, or an audit's rewritten without it): its hashes are taken as pHash's unchecked, and the files "
        "its audit could not hash, if any, are not known",
        f"note: 1 of 1 files named by test.csv is not found from here ({elsewhere}): the table records no directory "
        "its names are relative to (another tool's table, or an older audit's), so they are read from here; run this "
        "audit from the directory they are relative to (where the audit that wrote it ran). Until then review.html "
        "shows no preview of them, and the clean lists name them as the table does"]
    assert "1 of 1 files named by test.csv is not found" in (elsewhere / "third" / "summary.md").read_text()
    # Without the record, a table its name says is another hasher's (an older audit's train.pHash.parquet)
    # is refused for this one: pHash's hashes compared as aHash's found none of the copies, with exit 0.
    pd.read_parquet(hashes / "test.pHash.parquet").to_parquet(elsewhere / "old.pHash.parquet", index=False)
    assert main(["leaks", "--train", "old.pHash.parquet", "--test", "test.csv", "--hashers", "aHash", "--threshold",
                 "0", "--out", "fourth", "--quiet"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: old.pHash.parquet: named as pHash's hash table by the audit that wrote it, and it records no hasher "
        "to tell otherwise; audit it with --hashers pHash, or rename it if it holds aHash's hashes"]
    assert "cwd" not in json.loads(pq.read_schema(elsewhere / "third" / "hashes" / "test.pHash.parquet")
                                   .metadata[b"harness.leaks"])

    # The data set moved away: found neither where the first audit ran nor from here.
    os.rename(project / "train", tmp_path / "moved")
    assert main(["leaks", *tables, "--threshold", "0", "--out", "fourth", "--quiet"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"note: 2 of 2 files named by {tables[1]} are not found from {project}, where its audit ran, nor from here "
        f"({elsewhere}): moved or deleted since the table was written, or not on this machine; review.html shows no "
        "preview of them, and the clean lists name them as the table does"]
    page = (elsewhere / "fourth" / "review.html").read_text()
    assert page.count("(not found)") == 1 and "(unreadable)" not in page  # was: "unreadable", for a file gone
    # Found nowhere, its new table passes the first audit's directory on: nothing here says otherwise,
    # and the data may come back there (an audit of the tables away from the images).
    assert json.loads(pq.read_schema(elsewhere / "fourth" / "hashes" / "train.pHash.parquet")
                      .metadata[b"harness.leaks"])["cwd"] == str(project)
    # A recorded directory that is no absolute path here (a table written on Windows, or a relative
    # one) cannot be used: the table's hashes are, its names read from here, and a note says so.
    table = pq.read_table(hashes / "test.pHash.parquet")
    (elsewhere / "test").mkdir()
    shutil.copy(project / "test" / "a_again.png", elsewhere / "test" / "a_again.png")
    for number, cwd in enumerate(["C:\\Users\\me\\project", "project"]):
        other = {b"harness.leaks": json.dumps({**recorded, "cwd": cwd}).encode()}
        pq.write_table(table.replace_schema_metadata(other), elsewhere / "other.parquet")
        out = elsewhere / f"fifth{number}"
        assert main(["leaks", "--train", str(project / "first" / "hashes" / "train.pHash.parquet"), "--test",
                     "other.parquet", "--threshold", "0", "--out", str(out), "--quiet"]) == 0
        assert [line for line in capsys.readouterr().err.splitlines() if "other.parquet" in line] == [
            f"note: other.parquet records its names as relative to {cwd!r}, which is not an absolute path on this "
            "machine (a table written on another system?), so that directory could not be used: its names are read "
            f"from here ({elsewhere})"]
        assert len(pd.read_csv(out / "leaks.csv")) == 1  # its hashes were compared
        assert json.loads(pq.read_schema(out / "hashes" / "test.pHash.parquet")
                          .metadata[b"harness.leaks"])["cwd"] == str(elsewhere)
    # Other metadata that is not what an audit writes is refused, in one line; so are a name's
    # recorded bytes (raw_names) that do not show as its row's name.
    for number, (changed, said) in enumerate([
            ({"cwd": 5}, "its harness.leaks metadata is not what an audit writes"),
            ({"raw_names": {"0": 5}}, "its harness.leaks metadata is not what an audit writes"),
            ({"raw_names": {"-1": "61"}}, "its harness.leaks metadata is not what an audit writes"),
            ({"raw_names": {"\u00b2": "61"}}, "its harness.leaks metadata is not what an audit writes"),
            ({"raw_names": {"0": "zz"}}, "its harness.leaks metadata records the bytes of row 1's name as something"),
            ({"raw_names": {"0": "61ff"}}, "its harness.leaks metadata records the bytes of row 1's name as something"),
            ({"raw_names": {"99": "61"}}, "its harness.leaks metadata records the bytes of row 100's name as")]):
        bad = {b"harness.leaks": json.dumps({**recorded, **changed}).encode()}
        pq.write_table(table.replace_schema_metadata(bad), elsewhere / "bad.parquet")
        assert main(["leaks", tables[0], tables[1], "--test", "bad.parquet", "--threshold", "0", "--out",
                     f"sixth{number}", "--quiet"]) == 2
        assert one_line(capsys).startswith(f"error: bad.parquet: {said}")


def test_a_chain_of_audits_records_where_each_found_its_files(tmp_path, capsys, monkeypatch):
    """An audit that finds a table's files from where it runs (the project moved with its tables)
    records that directory, not the one the table recorded: a third audit from its tables, run
    elsewhere, finds every file, where it found none (and blamed the first directory)."""
    project, moved, elsewhere = tmp_path / "project", tmp_path / "moved", tmp_path / "elsewhere"
    write(project / "train" / "a.png", make_scene(1, 64, 64))
    write(project / "test" / "a_again.png", make_scene(1, 64, 64))
    elsewhere.mkdir()
    monkeypatch.chdir(project)
    assert main(["leaks", "--train", "train", "--test", "test", "--threshold", "0", "--out", "first", "--quiet"]) == 0
    os.rename(project, moved)

    def tables(audit):
        return ["--train", str(audit / "hashes" / "train.pHash.parquet"),
                "--test", str(audit / "hashes" / "test.pHash.parquet")]

    def recorded_cwd(audit):
        metadata = pq.read_schema(audit / "hashes" / "train.pHash.parquet").metadata
        return json.loads(metadata[b"harness.leaks"]).get("cwd")

    monkeypatch.chdir(moved)
    assert main(["leaks", *tables(moved / "first"), "--threshold", "0", "--out", "second", "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    assert recorded_cwd(moved / "second") == str(moved)
    monkeypatch.chdir(elsewhere)
    assert main(["leaks", *tables(moved / "second"), "--threshold", "0", "--out", "third", "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    page = (elsewhere / "third" / "review.html").read_text()
    assert page.count("<img") == 2 and "(unreadable)" not in page
    assert recorded_cwd(elsewhere / "third") == str(moved)


def test_a_hash_table_an_audit_wrote_is_refused_as_another_hashers_hashes(tmp_path, capsys):
    write(tmp_path / "train" / "a.png", make_scene(1, 64, 64))
    write(tmp_path / "test" / "b.png", make_scene(2, 64, 64))
    first = tmp_path / "first"
    assert main(["leaks", "--train", str(tmp_path / "train"), "--test", str(tmp_path / "test"), "--threshold", "8",
                 "--out", str(first), "--quiet"]) == 0
    train, test = first / "hashes" / "train.pHash.parquet", first / "hashes" / "test.pHash.parquet"
    assert main(["leaks", "--train", str(train), "--test", str(test), "--hashers", "aHash", "--threshold", "8",
                 "--out", str(tmp_path / "wrong"), "--quiet"]) == 2
    assert one_line(capsys) == (f"error: {train}: holds the hashes of pHash (pHash {{}}), not of aHash (aHash {{}}); "
                                "audit it with that hasher (--hashers pHash)")
    # A hasher with other parameters is named by the config entry that gives them (an id such as p16
    # is a column's name, not a hasher's, and the command line takes no parameters).
    config = tmp_path / "p16.yaml"
    config.write_text(f"splits: {{train: [{tmp_path / 'train'}], test: [{tmp_path / 'test'}]}}\nthreshold: 8\n"
                      "hashers: [{name: imagehash.phash, id: p16, hash_size: 16}]\n")
    assert main(["leaks", str(config), "--out", str(tmp_path / "p16"), "--quiet"]) == 0
    p16 = tmp_path / "p16" / "hashes" / "train.p16.parquet"
    assert main(["leaks", "--train", str(p16), "--test", str(p16), "--hashers", "imagehash.phash", "--threshold", "8",
                 "--out", str(tmp_path / "wrong16"), "--quiet"]) == 2
    assert one_line(capsys).endswith('audit it with that hasher (a config with hashers: [{"name": "imagehash.phash", '
                                     '"hash_size": 16, "highfreq_factor": 4}])')
    # A table without the record (a CSV, another tool's) is taken as the hasher named, as before.
    pd.read_parquet(train).to_csv(tmp_path / "train.csv", index=False)
    pd.read_parquet(test).to_csv(tmp_path / "test.csv", index=False)
    assert main(["leaks", "--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"), "--hashers",
                 "aHash", "--threshold", "8", "--out", str(tmp_path / "csv"), "--quiet"]) == 0


def first_audits_train_table(tmp_path):
    """An audit (pHash) of one train and one test image under tmp_path; its train split's hash table,
    as pyarrow read it, for a test to alter."""
    write(tmp_path / "train" / "a.png", make_scene(1, 64, 64))
    write(tmp_path / "test" / "b.png", make_scene(2, 64, 64))
    first = tmp_path / "first"
    assert main(["leaks", "--train", str(tmp_path / "train"), "--test", str(tmp_path / "test"), "--threshold", "8",
                 "--hashers", "pHash", "--out", str(first), "--quiet"]) == 0
    return pq.read_table(first / "hashes" / "train.pHash.parquet")


def test_a_plugin_named_in_a_hash_tables_record_is_never_imported(tmp_path, capsys, monkeypatch):
    """A table's record names the hasher that made it; a plugin's name there is named back to the
    user, never imported. Was: `pwn:Anything` in the metadata imported pwn.py from the folder the
    audit ran in, on the way to the error that said the table holds another hasher's hashes."""
    table = first_audits_train_table(tmp_path)
    recorded = json.loads(table.schema.metadata[b"harness.leaks"])
    crafted = {**recorded, "name": "pwnplugin:Anything", "hasher": "pwnplugin:Anything"}
    folder = tmp_path / "shipped"
    folder.mkdir()
    pq.write_table(table.replace_schema_metadata({b"harness.leaks": json.dumps(crafted).encode()}),
                   folder / "train.parquet")
    (folder / "pwnplugin.py").write_text("import pathlib\npathlib.Path('imported').write_text('yes')\n")
    monkeypatch.chdir(folder)
    assert main(["leaks", "--train", "train.parquet", "--test", str(tmp_path / "test"), "--hashers", "pHash",
                 "--threshold", "8", "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert not (folder / "imported").exists() and "pwnplugin" not in sys.modules
    assert one_line(capsys).startswith("error: train.parquet: holds the hashes of pwnplugin:Anything (")


def test_a_hash_table_whose_text_decodes_past_its_bounds_is_one_line(tmp_path, capsys):
    """A few KB of Parquet can repeat one value on millions of rows: a name longer than any path, or
    more text than a hash table may hold, is refused from the dictionary's lengths, before anything
    is decoded. Was: a 4 KB file took 7.4 GB and ended in exit 3 (ArrowMemoryError)."""
    import pyarrow as pa

    write(tmp_path / "test" / "b.png", make_scene(2, 64, 64))

    def table(rows: int, name_bytes: int) -> str:
        codes = pa.array(np.zeros(rows, np.int32))
        path = tmp_path / f"t{rows}_{name_bytes}.parquet"
        pq.write_table(pa.table({"file": pa.DictionaryArray.from_arrays(codes, pa.array(["x" * name_bytes])),
                                 "hash": pa.DictionaryArray.from_arrays(codes, pa.array(["0" * 16]))}),
                       path, compression="zstd", store_schema=False)
        assert os.path.getsize(path) < 1_000_000  # 500 KB: the codes of 1,100,000 rows
        return str(path)

    for path, said in ((table(600_000, 5000), "column file holds a value of 5,000 bytes; a file's path or a hash "
                                              "has at most 4,096"),
                       (table(1_100_000, 4000), "bytes of text once decoded, more than a hash table may hold (4 GiB")):
        assert main(["leaks", "--train", path, "--test", str(tmp_path / "test"), "--hashers", "pHash",
                     "--threshold", "8", "--out", str(tmp_path / "out"), "--quiet"]) == 2
        error = one_line(capsys)
        assert error.startswith(f"error: {path}: ") and said in error


def test_json_nested_too_deep_in_a_hash_table_or_a_calibration_run_is_one_line(tmp_path, capsys):
    """JSON nested past Python's recursion limit, in a hash table's record or a calibration run's
    hashers.csv, is a damaged input (one line, exit 2), never a crash."""
    deep = "[" * 100_000 + "]" * 100_000
    table = first_audits_train_table(tmp_path)
    pq.write_table(table.replace_schema_metadata({b"harness.leaks": deep.encode()}), tmp_path / "deep.parquet")
    assert main(["leaks", "--train", str(tmp_path / "deep.parquet"), "--test", str(tmp_path / "test"),
                 "--hashers", "pHash", "--threshold", "8", "--out", str(tmp_path / "o1"), "--quiet"]) == 2
    assert one_line(capsys).startswith(f"error: {tmp_path / 'deep.parquet'}: ")
    run = tmp_path / "run"
    config = {"images": [str(tmp_path / "train" / "a.png"), str(tmp_path / "test" / "b.png")],
              "hashers": ["pHash"], "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": 50}}}],
              "detection": {"fpr": [0.5]}}
    harness.evaluate(config).save(run)
    hashers = pd.read_csv(run / "hashers.csv", keep_default_na=False)
    hashers["params"] = deep
    hashers.to_csv(run / "hashers.csv", index=False)
    assert main(["leaks", "--train", str(tmp_path / "train"), "--test", str(tmp_path / "test"), "--hashers", "pHash",
                 "--calibration", str(run), "--out", str(tmp_path / "o2"), "--quiet"]) == 2
    assert one_line(capsys).startswith(f"error: calibration {run}: its pHash is pHash ")


def test_hasher_ids_that_make_one_file_name_each_keep_their_hash_tables(tmp_path):
    """p/h and p_h both make the file name p_h: the later table takes -2 instead of replacing the
    earlier, and a second audit from each table reads it as its own hasher's hashes."""
    write(tmp_path / "train" / "a.png", make_scene(1, 64, 64))
    write(tmp_path / "train" / "b.png", make_scene(2, 64, 64))
    write(tmp_path / "test" / "c.png", make_scene(1, 64, 64))
    hashers = [{"name": "pHash", "id": "p/h"}, {"name": "aHash", "id": "p_h"}]
    first = harness.find_leaks({"splits": {"train": [str(tmp_path / "train")], "test": [str(tmp_path / "test")]},
                                "hashers": hashers, "threshold": 8})
    first.save(str(tmp_path / "first"))
    tables = tmp_path / "first" / "hashes"
    assert sorted(os.listdir(tables)) == ["test.p_h-2.parquet", "test.p_h.parquet", "train.p_h-2.parquet",
                                          "train.p_h.parquet"]
    for suffix, hasher in (("", hashers[0]), ("-2", hashers[1])):
        again = harness.find_leaks({"splits": {"train": [str(tables / f"train.p_h{suffix}.parquet")],
                                               "test": [str(tables / f"test.p_h{suffix}.parquet")]},
                                    "hashers": [hasher], "threshold": 8})
        assert again.hashes[("test", hasher["id"])].equals(first.hashes[("test", hasher["id"])])
        assert len(again.leaks) == len(first.leaks[first.leaks["hasher"] == hasher["id"]]) > 0


def test_files_without_an_image_extension_are_counted_in_a_note(tmp_path, capsys):
    """A folder lists image files by name; an exact copy named apple_noext or apple.jpg.part must not
    pass unseen, so the files it leaves out are counted (hidden files stay skipped, as documented)."""
    photo = cv2.imencode(".jpg", make_scene(5, 64, 64))[1].tobytes()
    for name, data in (("train/apple.jpg", photo), ("test/pear.jpg", cv2.imencode(".jpg", make_scene(6, 64, 64))[1]),
                       ("test/apple_noext", photo), ("test/apple.jpg.part", photo), ("test/.apple.jpg.swp", photo)):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(bytes(data))
    out = tmp_path / "out"
    assert main(["leaks", "--train", str(tmp_path / "train"), "--test", str(tmp_path / "test"), "--threshold", "8",
                 "--out", str(out), "--quiet"]) == 0
    note = (f"2 files without an image extension in {tmp_path / 'test'} were not listed (e.g. "
            f"{tmp_path / 'test' / 'apple.jpg.part'}); name them explicitly or rename them")
    assert capsys.readouterr().err.splitlines() == [f"note: {note}"]
    assert "2 files without an image extension in" in (out / "summary.md").read_text()


def test_links_to_folders_in_a_split_are_said_not_audited_in_silence(tmp_path, capsys):
    """An ImageFolder-style test split linking to a train class folder, and to a folder outside the
    data set: links to folders are not followed (as documented), and a note says which were left out,
    in the summary and on stderr, with the audit going on."""
    write(tmp_path / "train" / "cat" / "a.png", make_scene(1, 64, 64))
    write(tmp_path / "test" / "cat" / "b.png", make_scene(2, 64, 64))
    write(tmp_path / "outside" / "c.png", make_scene(3, 64, 64))
    os.symlink(tmp_path / "train" / "cat", tmp_path / "test" / "linked_cat")
    os.symlink(tmp_path / "outside", tmp_path / "test" / "linked_outside")
    out = tmp_path / "out"
    assert main(["leaks", "--train", str(tmp_path / "train"), "--test", str(tmp_path / "test"), "--threshold", "8",
                 "--out", str(out), "--quiet"]) == 0
    note = (f"listing {tmp_path / 'test'}, 2 links to folders were not followed, so their files are not listed (e.g. "
            f"{tmp_path / 'test' / 'linked_cat'}); give the folders as entries to include their files")
    assert capsys.readouterr().err.splitlines() == [f"note: {note}"]
    assert "2 links to folders were not followed" in (out / "summary.md").read_text()
    assert list(pd.read_csv(out / "files.csv")["file"]) == [str(tmp_path / "train" / "cat" / "a.png"),
                                                            str(tmp_path / "test" / "cat" / "b.png")]
    # Giving the link as an entry of the split, as the note says, lists its files; the note then
    # counts only the link still left out.
    out = tmp_path / "out2"
    assert main(["leaks", "--train", str(tmp_path / "train"), "--test", str(tmp_path / "test"),
                 str(tmp_path / "test" / "linked_cat"), "--threshold", "8", "--out", str(out), "--quiet"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "not followed" in line]
    assert notes == [f"note: listing {tmp_path / 'test'}, 1 link to a folder was not followed, so its files are not "
                     f"listed (e.g. {tmp_path / 'test' / 'linked_outside'}); give the folder as an entry to include "
                     "its files"]
    assert str(tmp_path / "test" / "linked_cat" / "a.png") in set(pd.read_csv(out / "files.csv")["file"])


# --- the review page, in a real browser ------------------------------------------------------------

def test_the_review_page_renders_every_flagged_pair(planted, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no Chromium installed (Debian: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e "
                                                                 "'.[test]')")
    root, copies = planted
    out = tmp_path / "out"
    assert audit(root, out, "--hashers", "pHash,PDQ", "--threshold", "pHash=10,PDQ=60") == 0
    pairs = pd.read_csv(out / "leaks.csv").drop_duplicates(["file_a", "file_b"])
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        page = browser.new_page()
        page.goto((out / "review.html").as_uri())
        assert page.locator("article.pair").count() == len(pairs)
        images = page.evaluate("Array.from(document.images, i => [i.complete, i.naturalWidth])")
        assert len(images) == 2 * len(pairs) and all(done and width > 0 for done, width in images)
        text = page.inner_text("body")
        assert all(copy in text for copy in copies)
        assert f"{len(copies)} of 26 test files have a copy in train" in text
        browser.close()


def test_a_dask_cluster_finds_the_same_leaks(planted, tmp_path):
    pytest.importorskip("distributed")
    from distributed import LocalCluster

    root, _ = planted
    local = tmp_path / "local"
    assert audit(root, local, "--hashers", "pHash", "--threshold", "10", "--no-cache") == 0
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        done = subprocess.run([sys.executable, "-m", "harness", "leaks", "--train", str(root / "train"), "--test",
                               str(root / "test"), "--hashers", "pHash", "--threshold", "10", "--no-cache",
                               "--scheduler", cluster.scheduler_address, "--out", str(tmp_path / "dask"), "--quiet"],
                              cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    for name in ("leaks.csv", "groups.csv", "estimates.csv", "files.csv"):
        assert (local / name).read_bytes() == (tmp_path / "dask" / name).read_bytes(), name


def test_shards_change_nothing(planted, tmp_path, monkeypatch):
    """The search runs in blocks of query rows (65,536 by default): blocks of 5 find the same pairs,
    across splits and inside them (where a block also meets the rows after it)."""
    from harness import leaks_search

    root, _ = planted
    whole = tmp_path / "whole"
    assert audit(root, whole, "--hashers", "pHash", "--threshold", "26", "--no-cache") == 0
    monkeypatch.setattr(leaks_search, "SHARD", 5)
    blocks = tmp_path / "blocks"
    assert audit(root, blocks, "--hashers", "pHash", "--threshold", "26", "--no-cache") == 0
    leaks = pd.read_csv(whole / "leaks.csv")
    assert len(leaks[leaks["split_a"] == leaks["split_b"]]) > 5  # pairs inside the splits, across blocks
    for name in ("leaks.csv", "groups.csv", "estimates.csv"):
        assert (whole / name).read_bytes() == (blocks / name).read_bytes(), name


@pytest.mark.parametrize("splits, answer", [
    ({"train": ["builtin:astronaut"], "test": ["builtin:coffee"]}, "0 of 1 test file has a copy in train"),
    ({"train": ["builtin:astronaut"], "test": ["builtin:coffee", "builtin:astronaut"]},
     "1 of 2 test files has a copy in train"),
    ({"train": ["builtin:astronaut"], "test": ["builtin:coffee", "builtin:camera"]},
     "0 of 2 test files have a copy in train"),
])
def test_the_answer_agrees_with_its_numbers(splits, answer):
    assert harness.find_leaks({"splits": splits, "hashers": ["pHash"], "threshold": 8}).answer.startswith(answer)


def test_a_threshold_is_taken_to_the_six_digits_it_is_shown_with(tmp_path):
    """A float distance is stored and compared to 6 significant digits; a threshold given with more
    was compared as given, while every table and line showed it rounded: 'flagged at <= 3.40843',
    and a pair at 3.40843 not flagged."""
    scene = make_scene(5, 96, 96)
    write(tmp_path / "train" / "a.png", scene)
    (tmp_path / "test").mkdir()
    cv2.imwrite(str(tmp_path / "test" / "a.jpg"), scene, [cv2.IMWRITE_JPEG_QUALITY, 50])
    splits = {"train": [str(tmp_path / "train")], "test": [str(tmp_path / "test")]}
    loose = harness.find_leaks({"splits": splits, "hashers": ["ColorMomentHash"], "threshold": 10000})
    stored = float(loose.leaks["distance"].iloc[0])
    given = stored * (1 - 4e-7)  # below the stored distance, and shown as it
    assert f"{given:.6g}" == f"{stored:.6g}" and given < stored
    audit = harness.find_leaks({"splits": splits, "hashers": ["ColorMomentHash"], "threshold": given})
    assert len(audit.leaks) == 1 and audit.thresholds == {"ColorMomentHash": stored}
    assert audit.answer.endswith(f"(flagged at ColorMomentHash <= {stored:g}).")


SECOND_AUDIT_WITH_WORKERS = """
import harness
config = {"splits": {"train": ["builtin:astronaut", "builtin:camera"], "test": ["builtin:coffee", "builtin:astronaut"]},
          "hashers": ["pHash"], "threshold": 8}
first = harness.find_leaks(config)  # its search runs here, on faiss's OpenMP threads
second = harness.find_leaks(config, workers=2)  # its workers are forked from this process
print(first.leaks.equals(second.leaks) and len(second.leaks) == 1)
"""


def test_a_second_audit_with_workers_in_one_session_ends():
    """A worker forked from a session whose faiss had started OpenMP's threads hung in its first
    search (an API user's second audit never returned); the workers search on one thread."""
    done = subprocess.run([sys.executable, "-c", SECOND_AUDIT_WITH_WORKERS], cwd=ROOT, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0 and done.stdout.strip() == "True", done.stderr


def test_an_empty_misses_table_has_the_column_types_of_a_full_one():
    """Without a calibration run there are no misses: the table's numbers were `object` columns."""
    audit = harness.find_leaks({"splits": {"train": ["builtin:astronaut"], "test": ["builtin:coffee"]},
                                "hashers": ["pHash"], "threshold": 8})
    assert audit.misses.empty
    assert {c: str(t) for c, t in audit.misses.dtypes.items() if c not in ("hasher", "family")} == {
        "copies": "int64", "missed": "int64", "miss_rate": "float64", "miss_low": "float64", "miss_high": "float64"}


def calibrated(distances: dict) -> SimpleNamespace:
    """What `misses` reads of a calibration run: its edited copies' distances ({image id: [distance of
    each strength]}), one hasher (pHash), one family (jpeg)."""
    rows = [("pHash", "jpeg", image, distance) for image, values in distances.items() for distance in values]
    return SimpleNamespace(genuine=pd.DataFrame(rows, columns=["hasher", "family", "image_id", "distance"]))


def test_a_copy_at_the_threshold_is_flagged_not_missed():
    """Copies at 2, 4 and 6 with the threshold 4: the copy at 4 is flagged (a pair at or below the
    threshold is), so only the one at 6 is missed."""
    table = misses(None, {"pHash": 4.0}, calibrated({"a": [2.0], "b": [4.0], "c": [6.0]}))  # one hasher: no config
    row = table.iloc[0]
    assert (row["copies"], row["missed"], row["miss_rate"]) == (3, 1, 1 / 3)


def test_the_miss_interval_counts_images_not_copies():
    """Two images at three strengths each, threshold 4: 3 of the 6 copies are missed. The copies of one
    image are not independent chances, so the interval is Wilson's over the 2 images (as if 1 of 2 were
    missed), far wider than over 6 copies."""
    table = misses(None, {"pHash": 4.0}, calibrated({"a": [1.0, 3.0, 9.0], "b": [2.0, 5.0, 7.0]}))
    row = table.iloc[0]
    assert (row["copies"], row["missed"], row["miss_rate"]) == (6, 3, 0.5)
    assert (row["miss_low"], row["miss_high"]) == wilson_interval(1, 2)
    assert (row["miss_low"], row["miss_high"]) != pytest.approx(wilson_interval(3, 6))


def test_the_answer_of_one_split_counts_its_copies_without_more():
    """"0 more files are copies" read as if another count came first, where none does."""
    audit = harness.find_leaks({"splits": {"train": ["builtin:astronaut", "builtin:coffee"]}, "hashers": ["pHash"],
                                "threshold": 8})
    assert audit.answer == "0 files are copies of other files of their own split (flagged at pHash <= 8)."


def test_one_pair_compared_is_one_pair():
    from harness.leaks_report import estimate_lines

    audit = harness.find_leaks({"splits": {"train": ["builtin:astronaut"], "test": ["builtin:coffee"]},
                                "hashers": ["pHash"], "threshold": 8})
    assert estimate_lines(audit) == ["train vs test: 0 of 1 pair flagged."]  # nothing said of flags it has not


def test_the_pairs_compared_inside_a_split_are_its_pairs_of_different_files(tmp_path):
    """n files of one split make n(n-1)/2 pairs (each file with each later one, never with itself): 3 in
    train, 1 in test; across the splits 3 x 2. These counts scale the expected false flags."""
    (tmp_path / "train.csv").write_text("file,hash\na.png,0000000000000000\nb.png,ffffffffffffffff\n"
                                        "c.png,00000000ffffffff\n")
    (tmp_path / "test.csv").write_text("file,hash\nd.png,0f0f0f0f0f0f0f0f\ne.png,ff00ff00ff00ff00\n")
    out = tmp_path / "out"
    assert main(["leaks", "--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"),
                 "--hashers", "pHash", "--threshold", "4", "--out", str(out), "--quiet"]) == 0
    estimates = pd.read_csv(out / "estimates.csv")
    assert {(row.split_a, row.split_b): row.pairs_compared for row in estimates.itertuples()} == {
        ("train", "train"): 3, ("train", "test"): 6, ("test", "test"): 1}


def test_without_calibration_a_flag_may_be_false():
    from harness.leaks_report import estimate_lines

    audit = harness.find_leaks({"splits": {"train": ["builtin:astronaut"], "test": ["builtin:astronaut"]},
                                "hashers": ["pHash"], "threshold": 8})
    assert estimate_lines(audit) == ["train vs test: 1 of 1 pair flagged; without a calibration run (--calibration) "
                                     "the data cannot tell a copy from a chance match, so it may be false."]


def test_clean_lists_name_each_file_exactly_or_the_file_is_an_error(tmp_path, capsys):
    """A clean list holds a file per line, as the file system names it (bytes that are not UTF-8
    too); a name with a line break, or one whose \\xNN form is another file's name, cannot be listed."""
    def make_png(seed):
        return cv2.imencode(".png", make_scene(seed, 64, 64))[1].tobytes()

    photo, other = make_png(11), make_png(12)
    test = os.fsencode(tmp_path / "test")
    os.makedirs(test)
    for name, data in ((b"plain.png", photo), (b"odd\xffname.png", other), (b"line\nbreak.png", other),
                       (b"odd\\xffname.png", other), (b"only\xfe.png", make_png(13))):
        with open(os.path.join(test, name), "wb") as handle:
            handle.write(data)
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "a.png").write_bytes(photo)
    out = tmp_path / "out"
    assert main(["leaks", "--train", str(tmp_path / "train"), "--test", str(tmp_path / "test"), "--threshold", "4",
                 "--out", str(out), "--quiet"]) == 1
    errors = pd.read_csv(out / "errors.csv")
    assert sorted(errors["image"]) == sorted([str(tmp_path / "test" / "line\nbreak.png"),
                                              str(tmp_path / "test" / "odd\\xffname.png")])
    assert "line break" in " ".join(errors["reason"]) and "shows the same" in " ".join(errors["reason"])
    clean = (out / "clean" / "test.txt").read_bytes().splitlines()
    assert clean == [os.path.join(test, b"odd\\xffname.png"), os.path.join(test, b"only\xfe.png")]  # plain.png: a.png
    # An audit from the hash tables names the same files: a table shows only\xfe.png as only\\xfe.png (text),
    # and records its bytes; without them it named a file that is not there, or another one that is.
    (tmp_path / "test" / "only\\xfe.png").write_bytes(photo)  # named as the table shows the other
    again = tmp_path / "again"
    assert main(["leaks", "--train", str(out / "hashes" / "train.pHash.parquet"), "--test",
                 str(out / "hashes" / "test.pHash.parquet"), "--hashers", "pHash", "--threshold", "4",
                 "--out", str(again), "--quiet"]) == 1  # the first audit's errors, recorded in its table
    assert (again / "clean" / "test.txt").read_bytes().splitlines() == clean
    assert "moved or deleted" not in capsys.readouterr().err


def test_the_review_page_marks_the_bytes_of_a_name_that_is_not_utf8(tmp_path):
    """The tables show such a byte as the text \\xff, as a file may be named literally; the review
    page marked a tab and left the byte plain, from an audit of images and of their hash tables."""
    photo = cv2.imencode(".png", make_scene(11, 64, 64))[1].tobytes()
    for split, name in (("train", b"a.png"), ("test", b"copy\xff.png")):
        os.makedirs(os.fsencode(tmp_path / split), exist_ok=True)
        with open(os.path.join(os.fsencode(tmp_path / split), name), "wb") as handle:
            handle.write(photo)
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["leaks", "--train", str(tmp_path / "train"), "--test", str(tmp_path / "test"), "--hashers", "pHash",
                 "--threshold", "4", "--out", str(first), "--quiet"]) == 0
    assert main(["leaks", "--train", str(first / "hashes" / "train.pHash.parquet"), "--test",
                 str(first / "hashes" / "test.pHash.parquet"), "--hashers", "pHash", "--threshold", "4",
                 "--out", str(second), "--quiet"]) == 0
    for out in (first, second):
        page = (out / "review.html").read_text()
        assert 'copy<span class="esc">\\xff</span>.png' in page and page.count("<img") == 2
        assert pd.read_csv(out / "leaks.csv")["file_b"].tolist() == [str(tmp_path / "test" / "copy\\xff.png")]


def harness_under(locale: str, argv: list, cwd) -> subprocess.CompletedProcess:
    """`python -m harness ARGV` in a subprocess under `locale` as the system's (LC_ALL), neither
    coerced to C.UTF-8 nor in UTF-8 mode: under C, Python's file-system encoding is ASCII."""
    env = {**os.environ, "LC_ALL": locale, "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "1" if locale == "UTF-8" else "0",
           "PYTHONPATH": ROOT}
    if locale == "UTF-8":
        env["LC_ALL"] = "C.UTF-8"
    return subprocess.run([sys.executable, "-m", "harness", *map(str, argv)], cwd=cwd, env=env, capture_output=True,
                          timeout=600)


def _latin1_locale() -> str | None:
    """A Latin-1 locale this machine has (Debian's have only C, C.UTF-8 and POSIX by default)."""
    for name in ("de_DE.ISO-8859-1", "de_DE.iso88591", "en_US.ISO-8859-1", "en_US.iso88591"):
        done = subprocess.run([sys.executable, "-c", "import sys; print(sys.getfilesystemencoding())"],
                              env={**os.environ, "LC_ALL": name, "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"},
                              capture_output=True, text=True, timeout=60)
        if done.stdout.strip() in ("iso8859-1", "latin-1"):
            return name
    return None


@pytest.mark.parametrize("folder", ["project", "proj\u00e4"])
@pytest.mark.parametrize("locale", ["C", "latin-1"])
def test_a_hash_table_names_its_files_by_their_bytes_under_any_locale(tmp_path, locale, folder):
    """A table written under UTF-8 names café.png and cоpy.png (Cyrillic о) as UTF-8 text. Read under
    LC_ALL=C (ASCII file names) the text was encoded again with ASCII: a crash ("a bug in harness");
    under Latin-1, café.png named caf\\xe9.png, a file that is not there, "moved or deleted". An audit
    from the table under any locale finds those files, lists them by their bytes, records them in
    its own tables as the first did, and shows them on the review page as text, not \\xNN escapes."""
    if locale != "C":
        locale = _latin1_locale()
        if locale is None:
            pytest.skip("no Latin-1 locale on this machine")
    photo, other, third = (cv2.imencode(".png", make_scene(seed, 64, 64))[1].tobytes() for seed in (11, 12, 13))
    project = os.path.join(os.fsencode(tmp_path), folder.encode())  # the directory the first audit ran from
    files = {b"train/caf\xc3\xa9.png": photo, b"train/b.png": other, b"test/c\xd0\xbepy.png": photo,
             b"test/odd\xff.png": third}
    for name, data in files.items():
        os.makedirs(os.path.dirname(os.path.join(project, name)), exist_ok=True)
        with open(os.path.join(project, name), "wb") as handle:
            handle.write(data)
    first = harness_under("UTF-8", ["leaks", "--train", "train", "--test", "test", "--hashers", "pHash",
                                    "--threshold", "4", "--no-cache", "--out", "first", "--quiet"], project)
    assert first.returncode == 0, first.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for split in ("train", "test"):
        shutil.copy(os.path.join(project, b"first", b"hashes", f"{split}.pHash.parquet".encode()),
                    elsewhere / f"{split}.parquet")
    tables = {split: pq.read_table(elsewhere / f"{split}.parquet") for split in ("train", "test")}
    assert tables["train"]["file"].to_pylist() == ["train/b.png", "train/caf\u00e9.png"]

    # Run elsewhere: the names are read relative to the first audit's directory (its recorded cwd).
    second = harness_under(locale, ["leaks", "--train", "train.parquet", "--test", "test.parquet", "--hashers",
                                    "pHash", "--threshold", "4", "--no-cache", "--out", "second", "--quiet"], elsewhere)
    assert second.returncode == 0, second.stderr
    assert b"moved or deleted" not in second.stderr and b"not found" not in second.stderr, second.stderr
    out = elsewhere / "second"
    assert (out / "clean" / "train.txt").read_bytes().splitlines() == [os.path.join(project, b"train/b.png"),
                                                                     os.path.join(project, b"train/caf\xc3\xa9.png")]
    assert (out / "clean" / "test.txt").read_bytes().splitlines() == [os.path.join(project, b"test/odd\xff.png")]
    assert pd.read_csv(out / "leaks.csv")[["file_a", "file_b"]].values.tolist() == [["train/caf\u00e9.png",
                                                                                    "test/c\u043epy.png"]]
    page = (out / "review.html").read_text(encoding="utf-8")
    assert page.count("<img") == 2 and '<span class="name">caf\u00e9.png</span>' in page
    assert '<span class="name">c\u043epy.png</span>' in page and "\\xc3" not in page and "\\xd0" not in page
    # Its tables record the names and the first audit's directory as the first audit's did.
    for split, table in tables.items():
        again = pq.read_table(out / "hashes" / f"{split}.pHash.parquet")
        assert again.equals(table) and again.schema.metadata == table.schema.metadata

    # Run from the first audit's directory: the names are found from here, and clean lists name them as given.
    third = harness_under(locale, ["leaks", "--train", "first/hashes/train.pHash.parquet", "--test",
                                   "first/hashes/test.pHash.parquet", "--hashers", "pHash", "--threshold", "4",
                                   "--no-cache", "--out", elsewhere / "third", "--quiet"], project)
    assert third.returncode == 0, third.stderr
    assert (elsewhere / "third" / "clean" / "train.txt").read_bytes() == b"train/b.png\ntrain/caf\xc3\xa9.png\n"
    assert (elsewhere / "third" / "clean" / "test.txt").read_bytes() == b"test/odd\xff.png\n"
    for split, table in tables.items():  # its directory, the same as the first's, recorded as UTF-8 text too
        assert pq.read_schema(elsewhere / "third" / "hashes" / f"{split}.pHash.parquet").metadata == \
            table.schema.metadata

    # An audit of the images themselves shows them on its review page as text too (was: caf\\xc3\\xa9.png).
    fourth = harness_under(locale, ["leaks", "--train", "train", "--test", "test", "--hashers", "pHash", "--threshold",
                                    "4", "--no-cache", "--out", elsewhere / "fourth", "--quiet"], project)
    assert fourth.returncode == 0, fourth.stderr
    page = (elsewhere / "fourth" / "review.html").read_text(encoding="utf-8")
    assert page.count("<img") == 2 and '<span class="name">caf\u00e9.png</span>' in page
    assert (elsewhere / "fourth" / "clean" / "train.txt").read_bytes() == b"train/b.png\ntrain/caf\xc3\xa9.png\n"


def test_a_name_this_system_cannot_hold_is_a_row_of_errors(tmp_path, capsys, monkeypatch):
    """Where the file-system encoding cannot hold a table's name (on Windows, bytes that are not
    UTF-8), that file is compared with nothing: a row of errors.csv, not a crash nor another file."""
    import harness.leaks

    photo = cv2.imencode(".png", make_scene(11, 64, 64))[1].tobytes()
    for split, name in (("train", b"a.png"), ("test", b"copy\xff.png"), ("test", b"b.png")):
        os.makedirs(os.fsencode(tmp_path / split), exist_ok=True)
        with open(os.path.join(os.fsencode(tmp_path / split), name), "wb") as handle:
            handle.write(photo if split == "train" else cv2.imencode(".png", make_scene(12, 64, 64))[1].tobytes())
    first = tmp_path / "first"
    assert main(["leaks", "--train", str(tmp_path / "train"), "--test", str(tmp_path / "test"), "--hashers", "pHash",
                 "--threshold", "4", "--out", str(first), "--quiet"]) == 0
    fsdecoded = harness.leaks._fsdecoded
    monkeypatch.setattr(harness.leaks, "_fsdecoded", lambda data: None if b"\xff" in data else fsdecoded(data))
    second = tmp_path / "second"
    assert main(["leaks", "--train", str(first / "hashes" / "train.pHash.parquet"), "--test",
                 str(first / "hashes" / "test.pHash.parquet"), "--hashers", "pHash", "--threshold", "4",
                 "--out", str(second), "--quiet"]) == 1
    capsys.readouterr()
    errors = pd.read_csv(second / "errors.csv")
    assert errors["image"].tolist() == [str(tmp_path / "test" / "copy\\xff.png")]
    assert "its name cannot be a file name on this system" in errors["reason"][0]
    assert (second / "clean" / "test.txt").read_bytes() == os.fsencode(tmp_path / "test" / "b.png") + b"\n"


def test_the_warning_first_reads_the_flags_the_answer_counts():
    """With several hashers the answer counts the agreement's flags: one hasher's chance matches
    alone must not put the warning above an answer whose own flags are mostly copies."""
    from types import SimpleNamespace

    from harness.leaks_report import mostly_chance

    def rows(expected_by_hasher):
        return pd.DataFrame([{"split_a": "train", "split_b": "test", "hasher": hasher, "pairs_flagged": 12,
                              "expected_false": expected} for hasher, expected in expected_by_hasher.items()])
    assert not mostly_chance(SimpleNamespace(estimates=rows({"aHash": 30.0, "pHash": 1.0, "(agreement)": 0.4})))
    assert mostly_chance(SimpleNamespace(estimates=rows({"aHash": 1.0, "pHash": 1.0, "(agreement)": 6.0})))
    assert mostly_chance(SimpleNamespace(estimates=rows({"pHash": 7.0})))


def test_a_split_given_by_two_options_names_both(tmp_path, capsys):
    write(tmp_path / "train" / "a.png", make_scene(1))
    assert main(["leaks", "--train", str(tmp_path / "train"), "--split", f"test={tmp_path / 'train'}",
                 "--test", str(tmp_path / "none.png"), "--threshold", "8", "--hashers", "pHash",
                 "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert one_line(capsys).startswith(f"error: --split test or --test: no image file at '{tmp_path / 'none.png'}'")


def test_a_split_option_given_twice_audits_the_files_of_both(tmp_path, capsys):
    """`--train a --train b` audited only b (argparse keeps the last occurrence): a copy of a went unseen."""
    write(tmp_path / "a" / "a.png", make_scene(1, 64, 64))
    write(tmp_path / "b" / "b.png", make_scene(2, 64, 64))
    write(tmp_path / "test" / "copy_of_a.png", make_scene(1, 64, 64))
    write(tmp_path / "more" / "c.png", make_scene(3, 64, 64))
    out = tmp_path / "out"
    assert main(["leaks", "--train", str(tmp_path / "a"), "--train", str(tmp_path / "b"), "--test",
                 str(tmp_path / "test"), "--test", str(tmp_path / "more"), "--hashers", "pHash", "--hashers", "aHash",
                 "--threshold", "8", "--out", str(out), "--quiet"]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["splits"] == {"train": [str(tmp_path / "a"), str(tmp_path / "b")],
                               "test": [str(tmp_path / "test"), str(tmp_path / "more")]}
    assert saved["hashers"] == ["pHash", "aHash"]
    assert set(pd.read_csv(out / "leaks.csv")["file_b"]) == {str(tmp_path / "test" / "copy_of_a.png")}


def test_a_hasher_given_twice_a_threshold_is_refused(tmp_path, capsys):
    """--threshold pHash=8,pHash=9 kept 9 in silence."""
    assert main(["leaks", "--train", "builtin:camera", "--test", "builtin:coffee", "--threshold", "pHash=8,pHash=9",
                 "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert one_line(capsys) == "error: --threshold: pHash: given twice; give each hasher one threshold"


def test_hashers_chosen_on_the_command_line_are_the_configs_own_with_their_parameters(tmp_path, capsys):
    """--hashers put bare names in the config's place: imagehash.phash at 8 bits (64) ran under the
    threshold set for the config's hash_size 16 (256 bits), and an id (bm1) was unknown."""
    config = tmp_path / "audit.yaml"
    config.write_text("splits: {train: [builtin:camera], test: [builtin:coffee]}\n"
                      "hashers: [aHash, {name: imagehash.phash, hash_size: 16}, {name: BlockMeanHash, mode: 1, id: bm1}]\n"
                      "threshold: {aHash: 6, imagehash.phash: 40, bm1: 300}\n")
    out = tmp_path / "out"
    assert main(["leaks", str(config), "--hashers", "imagehash.phash,bm1", "--out", str(out), "--quiet"]) == 0
    hashers = pd.read_csv(out / "hashers.csv").set_index("hasher")
    assert hashers.loc["imagehash.phash", "distance_max"] == 256 and hashers.loc["bm1", "name"] == "BlockMeanHash"
    assert main(["leaks", str(config), "--hashers", "dHash", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    # Not aHash, which spelling alone would suggest: the hasher meant, which the config must name to run it.
    assert one_line(capsys) == (f"error: --hashers: dHash: not a hasher of {config}, whose hashers are aHash, "
                                "imagehash.phash, bm1 (only those can be chosen); add imagehash.dhash to its hashers "
                                "to run it")
    assert main(["leaks", str(config), "--hashers", "aHsh", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert one_line(capsys) == f"error: --hashers: aHsh: not a hasher of {config}; did you mean 'aHash'?"


def test_find_leaks_chooses_hashers_as_the_command_line_does(tmp_path):
    """find_leaks(hashers=...) is --hashers from Python: the config's own hashers by id, with their
    parameters and thresholds, from a dict, a YAML path or a parsed LeakConfig alike."""
    from harness.leaks import leak_config

    config = {"splits": {"train": ["builtin:camera"], "test": ["builtin:coffee"]},
              "hashers": ["aHash", {"name": "imagehash.phash", "hash_size": 16}],
              "threshold": {"aHash": 6, "imagehash.phash": 40}, "min_agree": 1}
    path = tmp_path / "audit.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["leaks", str(path), "--hashers", "imagehash.phash", "--out", str(tmp_path / "cli"), "--quiet"]) == 0
    cli = (tmp_path / "cli" / "hashers.csv").read_bytes()
    for given in (config, path, leak_config(config)):
        audit = harness.find_leaks(given, hashers=("imagehash.phash",))
        assert list(audit.hashers["hasher"]) == ["imagehash.phash"]
        audit.save(str(tmp_path / "api"))
        assert (tmp_path / "api" / "hashers.csv").read_bytes() == cli
    with pytest.raises(harness.ConfigError, match=r"^hashers: dHash: not a hasher of <dict>, whose hashers are aHash, "
                                                  r"imagehash.phash \(only those can be chosen\); add imagehash.dhash "
                                                  r"to its hashers to run it$"):
        harness.find_leaks(config, hashers="dHash")
    with pytest.raises(harness.ConfigError, match=r"^hashers: aHash: 1 hasher, fewer than min_agree: 2 of <dict>"):
        harness.find_leaks({**config, "min_agree": 2}, hashers="aHash")
    with pytest.raises(harness.HarnessError, match=r"^hashers\[0\]: expected a string, got 5$"):
        harness.find_leaks(config, hashers=[5])


@pytest.mark.parametrize("hashers, message", [
    ("pHash", "hashers: expected a non-empty list of hasher names or {name: ..., params}"),
    ([], "hashers: expected a non-empty list of hasher names or {name: ..., params}"),
    (["pHash", 5], "hashers[1]: expected a hasher name or a mapping with 'name', got 5")])
def test_a_malformed_hashers_key_is_refused_whatever_hashers_are_chosen(tmp_path, capsys, hashers, message):
    """Choosing hashers does not stand in for a config's malformed `hashers` (a bare `pHash` ran
    aHash at pHash's threshold): the parser's error, naming the key, as without a choice."""
    config = {"splits": {"train": ["builtin:camera"], "test": ["builtin:coffee"]}, "hashers": hashers, "threshold": 8}
    path = tmp_path / "audit.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["leaks", str(path), "--hashers", "aHash", "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert one_line(capsys) == f"error: {path}: {message}"
    with pytest.raises(harness.ConfigError, match=re.escape(f"<dict>: {message}")):
        harness.find_leaks(config, hashers="aHash")


def test_hashers_chosen_on_the_command_line_drop_the_configs_thresholds_of_the_others(tmp_path, capsys):
    """As `run --hashers` drops the settings of the hashers left out: the config's aHash threshold
    was refused as "not a hasher of this audit", and its min_agree blamed on the file alone."""
    config = tmp_path / "audit.yaml"
    config.write_text("splits: {train: [builtin:camera], test: [builtin:coffee]}\nhashers: [aHash, pHash]\n"
                      "threshold: {aHash: 6, pHash: 8}\nmin_agree: 2\n")
    out = tmp_path / "out"
    assert main(["leaks", str(config), "--hashers", "pHash", "--out", str(out), "--quiet"]) == 2
    assert one_line(capsys) == (f"error: --hashers: pHash: 1 hasher, fewer than min_agree: 2 of {config}; choose "
                                "more hashers or give --min-agree")
    assert main(["leaks", str(config), "--hashers", "pHash", "--min-agree", "1", "--out", str(out), "--quiet"]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["hashers"] == ["pHash"] and saved["threshold"] == {"pHash": 8} and saved["min_agree"] == 1


def test_max_flags_stops_the_search_near_that_many_pairs(tmp_path, capsys):
    """6,000 identical hashes: all 18 million pairs are within threshold 0. The audit refuses in one
    line, and its search stops once it holds more than max_flags pairs, not after gathering them all:
    the memory it took (tracemalloc's peak, numpy's arrays included) stays a few MB, where gathering
    every pair took over 500 MB."""
    import tracemalloc

    table = tmp_path / "same.csv"
    table.write_text("file,hash\n" + "".join(f"{k}.png,00ff00ff00ff00ff\n" for k in range(6000)))
    config = tmp_path / "audit.yaml"
    config.write_text(yaml.safe_dump({"splits": {"train": [str(table)]}, "hashers": ["aHash"],
                                      "threshold": {"aHash": 0}, "max_flags": 1000, "output": str(tmp_path / "out")}))
    capsys.readouterr()
    tracemalloc.start()
    try:
        code = main(["leaks", str(config), "--quiet"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "more than max_flags (1000)" in error
    # At threshold 0 no smaller one helps: the line says what does (it said "choose a smaller one").
    assert "these files share their hashes: 6,000 files have one aHash hash (6,000 in train; e.g. 0.png)" in error
    assert "raise max_flags (a key of the audit's config" in error
    assert peak < 50 << 20, f"{peak / 2**20:.0f} MB"


def test_too_many_pairs_names_the_files_that_share_a_hash_or_blames_the_threshold(tmp_path, capsys):
    """A placeholder repeated through both splits (blank images, as scraped data sets hold) is flagged
    at any threshold: the refusal says how many files share its hash, where, and names one (it said
    the threshold was too loose, at threshold 8). Where the pairs are all different hashes, it is the
    threshold."""
    rng = np.random.default_rng(0)
    distinct = lambda n: [rng.bytes(8).hex() for _ in range(n)]
    for name, train, test, why in (
            ("placeholder", distinct(20) + ["ff" * 8] * 60, ["ff" * 8] * 40 + distinct(10),
             "these files share their hashes: 100 files have one aHash hash (60 in train, 40 in test; e.g. train-20.png)"),
            ("loose", distinct(80), distinct(50), "the threshold is far too loose for these images")):
        tables = {}
        for split, hashes in (("train", train), ("test", test)):
            tables[split] = tmp_path / f"{name}-{split}.csv"
            tables[split].write_text("file,hash\n" + "".join(f"{split}-{k}.png,{h}\n" for k, h in enumerate(hashes)))
        config = tmp_path / f"{name}.yaml"
        config.write_text(yaml.safe_dump({"splits": {s: [str(t)] for s, t in tables.items()}, "hashers": ["aHash"],
                                          "threshold": {"aHash": 8 if name == "placeholder" else 40},
                                          "max_flags": 2000, "output": str(tmp_path / name)}))
        capsys.readouterr()
        assert main(["leaks", str(config), "--quiet"]) == 2
        error = capsys.readouterr().err.strip()
        assert "\n" not in error and why in error, error


def test_as_many_pairs_as_max_flags_are_audited(tmp_path):
    """max_flags is the most pairs an audit holds: 5 identical hashes make 10 pairs, all within threshold 0,
    and max_flags 10 audits them (one more pair than that is refused)."""
    table = tmp_path / "same.csv"
    table.write_text("file,hash\n" + "".join(f"{k}.png,00ff00ff00ff00ff\n" for k in range(5)))
    for max_flags, code in ((10, 0), (9, 2)):
        config = tmp_path / f"audit{max_flags}.yaml"
        out = tmp_path / f"out{max_flags}"
        config.write_text(yaml.safe_dump({"splits": {"train": [str(table)]}, "hashers": ["aHash"],
                                          "threshold": {"aHash": 0}, "max_flags": max_flags, "output": str(out)}))
        assert main(["leaks", str(config), "--quiet"]) == code, max_flags
    assert pd.read_csv(tmp_path / "out10" / "estimates.csv")["pairs_flagged"].tolist() == [10]


def test_an_fpr_threshold_of_0_says_near_copies_go_unflagged(tmp_path, capsys):
    """On a small set, fpr=0.01 of the pairs allows less than one: the threshold fell to 0 and the
    answer read "0 of 3 test files have a copy", an all-clear, with copies at distance 1 unflagged
    and nothing said (the note was only for identical hashes more than the share)."""
    (tmp_path / "train.csv").write_text("file,hash\na.png,0000000000000000\nb.png,ffffffffffffffff\n"
                                        "c.png,00000000ffffffff\n")
    (tmp_path / "test.csv").write_text("file,hash\nd.png,0000000000000001\ne.png,0f0f0f0f0f0f0f0f\n"
                                       "f.png,ff00ff00ff00ff00\n")
    out = tmp_path / "out"
    assert main(["leaks", "--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"),
                 "--hashers", "pHash", "--fpr", "0.01", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("0 of 3 test files have a copy in train")
    note = ("fpr: pHash's threshold is 0: fpr=0.01 of the 9 pairs compared allows 0.09 pairs to be flagged, and 1 "
            "is within distance 1, so only identical hashes are flagged and near copies (a re-saved JPEG, a resize) "
            "are not; give a threshold or a calibration run (--threshold, --calibration: a run's output directory) "
            "to flag them")
    assert f"note: {note}" in captured.err.splitlines()
    assert note in (out / "summary.md").read_text()


def test_the_clean_lists_read_from_an_audit_are_copies(tmp_path):
    """An edited clean list (a.clean['test'].append('/etc/passwd')) was written by save as the audit's."""
    audit = harness.find_leaks({"splits": {"train": ["builtin:coffee"], "test": ["builtin:camera"]},
                                "hashers": ["pHash"], "threshold": 4})
    audit.clean["test"].append("/etc/passwd")
    assert audit.clean == {"train": ["builtin:coffee"], "test": ["builtin:camera"]}
    audit.save(tmp_path / "out")
    assert (tmp_path / "out" / "clean" / "test.txt").read_text() == "builtin:camera\n"


def test_the_answer_writes_its_counts_with_thousands_separators():
    """'1040 test files' beside bullets that wrote '4,498,500'."""
    from types import SimpleNamespace

    from harness.leaks_report import answer

    files = pd.DataFrame({"split": ["train"] * 3000 + ["test"] * 1040})
    groups = pd.DataFrame({"split": ["test"] * 1001 + ["train"] * 1200, "keep": [False] * 2201,
                           "copy_in": ["train"] * 2201})
    audit = SimpleNamespace(files=files, groups=groups, thresholds={"pHash": 8.0}, config={}, errors=[0] * 1500)
    assert answer(audit) == ("1,001 of 1,040 test files have a copy in train; 1,200 more files (1,200 in train) are "
                             "copies of other files of their own split; 1,500 files or folders could not be read, so "
                             "they are in no count and no clean list (errors.csv) (flagged at pHash <= 8).")


@pytest.mark.parametrize("path, hasher, refused", [
    ("train.pHash.parquet", "aHash", "pHash"), ("train.pHash-2.parquet", "aHash", "pHash"),
    ("train.imagehash.phash.parquet", "imagehash.dhash", "imagehash.phash"),  # an id with a dot keeps it
    ("train.pHash.parquet", "pHash", None), ("train.imagehash.phash.parquet", "imagehash.phash", None),
    ("mine.parquet", "aHash", None), ("train.custom.parquet", "aHash", None)])
def test_a_table_without_a_record_named_for_another_hasher_is_refused(path, hasher, refused):
    """An older audit's table records no hasher: its audit-made name (SPLIT.HASHER.parquet) says whose it is."""
    from harness.errors import HarnessError
    from harness.leaks import _check_named_hasher

    if refused is None:
        _check_named_hasher(path, hasher)
    else:
        with pytest.raises(HarnessError, match=f"named as {re.escape(refused)}'s hash table"):
            _check_named_hasher(path, hasher)


def test_an_audits_record_names_the_files_its_hashers_read(tmp_path, monkeypatch):
    """A run's run.json lists the files its hashers read for their content (a CNN's weights) with their
    SHA-256; an audit's listed none, though its flags came from them too."""
    import hashlib
    import uuid

    import harness

    name = f"keyed_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "from dataclasses import dataclass\nfrom typing import Annotated\n\nimport numpy as np\n\n"
        "from harness.hashers.base import Hasher\nfrom harness.params import FileContent\n\n\n"
        "@dataclass(frozen=True)\nclass Keyed(Hasher):\n"
        "    key_file: Annotated[str, FileContent()] = 'key.bin'\n"
        "    name = __name__ + ':Keyed'\n    description = 'channel means plus the key file length'\n"
        "    distance_kind = 'L1'\n    distance_max = 1000.0\n\n"
        "    def hash_batch(self, images):\n"
        "        extra = len(open(self.key_file, 'rb').read())\n"
        "        return np.array([image.reshape(-1, 3).mean(axis=0) + extra for image in images])\n\n"
        "    def distance(self, a, b):\n        return np.abs(a - b).sum(axis=1)\n")
    key = tmp_path / "key.bin"
    key.write_bytes(b"seven b")
    monkeypatch.syspath_prepend(str(tmp_path))
    for split, seeds in (("train", (1, 2)), ("test", (1, 3))):
        (tmp_path / split).mkdir()
        for seed in seeds:
            write(tmp_path / split / f"{seed}.png", make_scene(seed, 64, 64))
    try:
        audit = harness.find_leaks({"splits": {"train": [str(tmp_path / "train")], "test": [str(tmp_path / "test")]},
                                    "hashers": ["pHash", {"name": f"{name}:Keyed", "key_file": str(key)}],
                                    "threshold": {"pHash": 4, f"{name}:Keyed": 1}}, cache=None)
        expected = [{"read_as": f"key_file of hasher {name}:Keyed", "path": str(key),
                     "sha256": hashlib.sha256(b"seven b").hexdigest()}]
        assert audit.provenance["files_read"] == expected
        audit.save(tmp_path / "out")
        assert json.loads((tmp_path / "out" / "run.json").read_text())["files_read"] == expected
    finally:
        sys.modules.pop(name, None)


def test_the_image_pass_of_an_audit_holds_little_per_image(tmp_path, monkeypatch):
    """What hashing a split's image files holds per image while its pass runs (tracemalloc's peak in
    _hash_split, over and above what the split keeps): each image's row was an array of one row
    (a view keeping its batch's array) in a dict of its own, 989 bytes an image here against 637 now,
    over 30 MiB of a 100,000-file audit that the process kept after the pass (freed among the names
    it keeps, its heap could not give it back): with normpath's equal copy of every name (8.5 MiB,
    held to the end; each path is held once now) the audit's peak was 1.44x a 1,000-file audit's,
    1.30x now. The split's hashes are those of the images, in their order, whatever the rows are kept as."""
    import tracemalloc

    from harness import leaks

    rng = np.random.default_rng(5)
    count = 3000
    for split, number in (("train", count), ("test", 2)):
        (tmp_path / split).mkdir()
        for k in range(number):
            (tmp_path / split / f"{k:04d}.png").write_bytes(
                cv2.imencode(".png", rng.integers(0, 256, (8, 8), dtype=np.uint8))[1].tobytes())
    monkeypatch.chdir(tmp_path)
    config = {"splits": {"train": ["train"], "test": ["test"]}, "hashers": ["pHash"], "threshold": {"pHash": 8}}
    passes = []
    hash_split = leaks._hash_split

    def measured(*args, **kwargs):
        tracemalloc.start()
        try:
            split = hash_split(*args, **kwargs)
            kept, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        passes.append((split, peak - kept))
        return split

    monkeypatch.setattr(leaks, "_hash_split", measured)
    harness.find_leaks(config)
    (train, held), _ = passes
    assert len(train.files) == count
    phash = cv2.img_hash.PHash_create()  # harness's pHash is OpenCV's
    expected = np.stack([phash.compute(cv2.imread(f"train/{k:04d}.png"))[0] for k in range(0, count, 500)])
    assert np.array_equal(train.arrays["pHash"][::500], expected)
    assert held / count < 800, f"{held / count:.0f} bytes an image held by the pass"


def test_the_note_of_files_given_twice_holds_little_per_file(tmp_path):
    """The note naming files given more than once (to two splits, or under two names: a hard link)
    made a name and a list for every file of the audit to find the few given twice: 30 MiB at once
    for 100,000 files, above what the audit held before and after it. It keeps two numbers a file
    now, and names the files it shows, in the order they were given, as before."""
    import tracemalloc

    from harness import leaks

    count = 20_000
    folder = tmp_path / "files"
    folder.mkdir()
    paths = [str(folder / f"{k:05d}.png") for k in range(count)]
    for path in paths:
        open(path, "wb").close()
    os.link(paths[7], str(folder / "linked.png"))
    train = SimpleNamespace(name="train", files=[f"f{k}" for k in range(count)], paths=paths)
    test = SimpleNamespace(name="test", files=["a", "b", "gone", "c", "d"],
                           paths=[paths[5], str(folder / "linked.png"), None, paths[3], paths[3]])
    expected = ("3 files are given more than once, to two splits or under two names (each is one file, not an "
                "edited copy, and is counted among the copies all the same): f3 (train) is c (test) is d (test); "
                "f5 (train) is a (test); f7 (train) is b (test)")
    assert leaks._same_file_notes([train, test]) == [expected]
    assert leaks._same_file_notes([train]) == []
    tracemalloc.start()
    try:
        leaks._same_file_notes([train, test])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak / count < 200, f"{peak / count:.0f} bytes a file"


def test_the_audit_summary_writes_its_counts_with_thousands_separators(tmp_path):
    """The table of pairs compared read "1225" where the lines above it said "1,225 pairs"."""
    rng = np.random.default_rng(0)
    hashes = [f"{value:016x}" for value in rng.integers(0, 1 << 63, 80, dtype=np.int64)]
    for name, rows in (("train", range(50)), ("test", range(50, 80))):
        pd.DataFrame({"file": [f"{name}/{i}.png" for i in rows], "hash": [hashes[i] for i in rows]}).to_csv(
            tmp_path / f"{name}.csv", index=False)
    audit = harness.find_leaks({"splits": {"train": [str(tmp_path / "train.csv")], "test": [str(tmp_path / "test.csv")]},
                                "hashers": ["pHash"], "threshold": 8})
    audit.save(str(tmp_path / "out"))
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "inside train: 0 of 1,225 pairs flagged" in summary
    assert "| train | train | pHash | 8 | 1,225 | 0 |" in summary and "| train | test | pHash | 8 | 1,500 | 0 |" in summary
