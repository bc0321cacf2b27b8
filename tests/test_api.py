"""The Python API and the output directory: evaluate -> Results -> save -> load, a run reproduced
from its own config.yaml, outputs swapped in as one set, and the report writing only inside DIR."""

import os
import re
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import yaml

import harness
from harness.__main__ import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIG = {
    "name": "api",
    "seed": 3,
    "images": ["builtin:coffee", "builtin:camera", "builtin:astronaut", "builtin:chelsea"],
    "hashers": ["aHash", "pHash", {"name": "imagehash.dhash", "id": "dHash"}],
    "detection": {"fpr": [0.05]},
    "report": {"previews": False},
    "sweeps": [
        {"family": "jpeg", "b": {"jpeg": {"quality": "$value"}}, "values": [10, 60]},
        {"family": "blur", "b": {"blur": {"kernel": "$value"}}, "values": [3, 9]},
    ],
}
TABLES = ["distances.csv", "impostors.csv", "table.csv", "thresholds.csv", "detection.csv", "roc.csv",
          "hashers.csv", "errors.csv", "images.csv"]


@pytest.fixture(scope="module")
def results():
    return harness.evaluate(CONFIG)


def test_evaluate_returns_every_table(results):
    assert isinstance(results, harness.Results)
    for name in ("distances", "impostors", "errors", "images", "hashers", "table", "thresholds", "detection",
                 "roc", "retrieval", "verdicts"):
        assert isinstance(getattr(results, name), pd.DataFrame), name
    assert results.retrieval.equals(results.metrics.retrieval)
    assert list(results.table.columns) == ["family", "value", "label", "aHash", "pHash", "dHash"]
    assert len(results.distances) == 4 * 4 * 3
    assert set(results.thresholds["operating_point"]) == {"fpr=0.05"}
    assert results.provenance["versions"]["cv2"] and results.provenance["cpu"]["opencv_features"]
    assert results.failures == 0 and "api" in repr(results)


def test_a_results_repr_is_one_short_line_whatever_the_config_name(results):
    """A config's name has no length limit; was: the repr held all of it (10 MB for a 10 MB name)."""
    import dataclasses

    long = dataclasses.replace(results, config={**results.config, "name": "a\nb" * 50_000})
    text = repr(long)
    assert len(text) < 300 and "\n" not in text and text.startswith("Results('a ba ba") and "…'" in text
    ids = dataclasses.replace(results, hashers=results.hashers.assign(hasher=["h" * 500] * len(results.hashers)))
    assert len(repr(ids)) < 300 + 90 * len(results.hashers)  # a hasher id has no length limit either


def test_workers_may_be_a_numpy_integer(results):
    """As numbers in a config dict may (np.int64(2) from a notebook's arithmetic was refused)."""
    import numpy as np

    again = harness.evaluate(results.config, workers=np.int64(1))
    assert again.table.equals(results.table)


def test_save_writes_what_run_writes_and_load_reads_it_back(results, tmp_path):
    saved, ran = tmp_path / "saved", tmp_path / "ran"
    results.save(str(saved))
    config = tmp_path / "api.yaml"
    import yaml
    config.write_text(yaml.safe_dump(CONFIG))
    assert main(["run", str(config), "--out", str(ran), "--quiet", "--no-cache"]) == 0
    for name in TABLES:
        assert (saved / name).read_bytes() == (ran / name).read_bytes(), name
    loaded = harness.load(str(saved))
    for name in ("distances", "impostors", "table", "thresholds", "detection", "roc"):
        pd.testing.assert_frame_equal(getattr(loaded, name), getattr(results, name), check_dtype=False,
                                      obj=name)
    for name in ("distances", "impostors", "images", "errors", "hashers", "table"):  # "the same tables, read back"
        assert getattr(loaded, name).equals(getattr(results, name)), name
    assert loaded.config["output"] == str(saved)


def test_a_loaded_run_saved_again_keeps_its_previews(tmp_path):
    """The thumbnails behind previews.png are not saved, so the file goes with the loaded results:
    saved over its own directory, or elsewhere (a pathlib.Path too), it and its summary section stay."""
    original = tmp_path / "original"
    harness.evaluate({**CONFIG, "images": CONFIG["images"][:2], "report": {"previews": True}}).save(original)
    drawn = (original / "previews.png").read_bytes()
    harness.load(original).save(original)
    harness.load(original).save(tmp_path / "elsewhere")
    for folder in (original, tmp_path / "elsewhere"):
        assert (folder / "previews.png").read_bytes() == drawn
        assert "![previews](previews.png)" in (folder / "summary.md").read_text()


@pytest.mark.parametrize("removed, missing", [
    (["run.json"], "run.json"), (["images.csv"], "images.csv"), (["errors.csv"], "errors.csv"),
    (["hashers.csv"], "hashers.csv"), (["impostors.csv", "impostors.parquet"], "impostors.csv or impostors.parquet"),
])
def test_loading_an_incomplete_output_directory_is_an_error(results, tmp_path, removed, missing):
    """Not results with no config, no hashers, or no impostors and so no thresholds, said nowhere."""
    results.save(tmp_path / "run")
    for name in removed:
        (tmp_path / "run" / name).unlink()
    with pytest.raises(harness.HarnessError) as caught:
        harness.load(tmp_path / "run")
    assert str(caught.value) == f"{tmp_path / 'run'}: an incomplete output directory: no {missing} (every run writes them)"


def _cut_csv(name, size):
    def damage(folder):
        (folder / name.replace(".csv", ".parquet")).unlink(missing_ok=True)  # the CSV is read only without it
        data = (folder / name).read_bytes()
        assert data[size - 1:size] != b"\n"  # inside a row
        (folder / name).write_bytes(data[:size])
    return damage


def _cut_at_a_line_break(folder):
    """distances.csv without its last rows, cut where a row ends: a table that reads as whole."""
    (folder / "distances.parquet").unlink()
    lines = (folder / "distances.csv").read_bytes().splitlines(keepends=True)
    (folder / "distances.csv").write_bytes(b"".join(lines[:len(lines) - 5]))


def _header_only(name):
    def damage(folder):
        (folder / name).write_bytes((folder / name).read_bytes().split(b"\n")[0] + b"\n")
    return damage


@pytest.mark.parametrize("damage, message", [
    (_cut_csv("distances.csv", 300), "distances.csv: its last row ends without a line break, so the file was cut "
                                     "short (every table of a run ends with one; an edited file must too)"),
    (_cut_csv("hashers.csv", 100), "hashers.csv: its last row ends without a line break"),
    (_header_only("hashers.csv"), "hashers.csv: does not list the hasher 'aHash' (and 2 more) that the distances "
                                  "table holds (a run lists every hasher of its tables): one of the two was cut "
                                  "short or edited"),
    (_header_only("images.csv"), "images.csv: does not list the image_id"),
    (lambda folder: (folder / "images.csv").write_bytes(b""),
     "images.csv: empty (every table of a run has at least its header line)"),
    (lambda folder: (folder / "hashers.csv").write_bytes(b""), "hashers.csv: empty"),
    (_cut_at_a_line_break, "distances.csv: image_id "),
], ids=["distances cut", "hashers cut", "hashers header only", "images header only", "images empty",
        "hashers empty", "distances cut at a line break"])
def test_loading_a_table_cut_short_or_emptied_is_an_error(results, tmp_path, damage, message):
    """Not results with fewer hashers or images than the distances hold (a hasher's column gone from
    the table, "Images: 0" in the summary), nor a row of empty fields read from a file cut inside it."""
    results.save(tmp_path / "run")
    damage(tmp_path / "run")
    with pytest.raises(harness.HarnessError) as caught:
        harness.load(tmp_path / "run")
    assert str(caught.value).startswith(f"{tmp_path / 'run'}{os.sep}{message}"), caught.value


def test_an_earlier_runs_settings_of_hashers_it_left_out_are_dropped_on_load(results, tmp_path):
    """Earlier code kept, in a run with --hashers, the thresholds of the hashers it left out: such a
    run still loads, and saved again its config is one that `run` accepts."""
    import json

    results.save(tmp_path / "old")
    run = json.loads((tmp_path / "old" / "run.json").read_text())
    run["config"]["detection"]["thresholds"] = {"pHash": 8, "colorhash": 3}
    (tmp_path / "old" / "run.json").write_text(json.dumps(run))
    loaded = harness.load(tmp_path / "old")
    assert loaded.config["detection"]["thresholds"] == {"pHash": 8}
    loaded.save(tmp_path / "again")
    assert main(["validate", str(tmp_path / "again" / "config.yaml")]) == 0


def test_a_set_rebuilt_by_report_can_be_run_over_again(results, tmp_path):
    """report DIR may write a file the set did not list (a table an older version did not write):
    run.json lists the rebuilt set, so a later run into DIR does not refuse its own file."""
    import json

    import yaml

    results.save(tmp_path / "out")
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    run["files"].remove("retrieval.csv")
    (tmp_path / "out" / "run.json").write_text(json.dumps(run))
    (tmp_path / "out" / "retrieval.csv").unlink()
    assert main(["report", str(tmp_path / "out")]) == 0
    listed = json.loads((tmp_path / "out" / "run.json").read_text())
    assert "retrieval.csv" in listed["files"] and listed["sizes"]["retrieval.csv"] > 0
    config = tmp_path / "api.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    assert main(["run", str(config), "--out", str(tmp_path / "out"), "--quiet"]) == 0


def test_report_help_names_every_table_it_rebuilds(results, tmp_path, capsys):
    """Every table of a set that is not saved as computed (report.SAVED) is derived, and rebuilt."""
    from harness import report

    results.save(tmp_path / "out")
    derived = [name for name in os.listdir(tmp_path / "out") if name.endswith(".csv") and name not in report.SAVED]
    assert {"table.csv", "thresholds.csv", "detection.csv", "roc.csv", "retrieval.csv"} <= set(derived)
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for name in derived + ["summary.md", "figures"]:
        assert name in shown, name


def test_a_saved_run_loads_wherever_it_is(results, tmp_path):
    """What the config names outside the set (a weights file, the images) need not be there: the
    tables are, and load reads those."""
    import json

    results.save(tmp_path / "out")
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    run["config"]["hashers"].append({"name": "ResNet50", "weights": str(tmp_path / "moved.h5")})
    run["config"]["images"] = [str(tmp_path / "gone")]
    (tmp_path / "out" / "run.json").write_text(json.dumps(run))
    assert harness.load(tmp_path / "out").table.equals(results.table)


def test_a_run_is_reproduced_from_its_own_config_yaml(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    config = tmp_path / "c.yaml"
    import yaml
    # settings of a hasher the command line leaves out (dHash) must not make the saved config invalid
    config.write_text(yaml.safe_dump({**CONFIG, "detection": {"fpr": [0.05], "thresholds": {"dHash": 5, "pHash": 8}},
                                      "impostors": {"exclude_below": {"dHash": 1}}}))
    assert main(["run", str(config), "--out", str(first), "--quiet", "--no-cache",
                 "--images", "builtin:coffee", "builtin:moon", "builtin:rocket", "--hashers", "pHash,aHash"]) == 0
    assert main(["run", str(first / "config.yaml"), "--out", str(second), "--quiet", "--no-cache"]) == 0
    for name in TABLES:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert pd.read_csv(first / "table.csv").columns[3:].tolist() == ["pHash", "aHash"]
    assert main(["report", str(first)]) == 0


def test_api_errors_are_the_command_lines_one_liners(tmp_path, capsys):
    bad = {**CONFIG, "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": 500}}}]}
    with pytest.raises(harness.ConfigError) as caught:
        harness.evaluate(bad)
    assert str(caught.value) == "<dict>: sweeps[0].b.jpeg.quality: 500 must be <= 100"
    import yaml
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(bad))
    assert main(["run", str(config), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {config}: sweeps[0].b.jpeg.quality: 500 must be <= 100"
    with pytest.raises(harness.HarnessError, match="expected a YAML path, a dict or a Config"):
        harness.evaluate(42)


@pytest.mark.parametrize("arguments, message", [
    ({"images": [123]}, "images[0]: expected a string, got 123"),
    ({"images": 5}, "images: expected a list of strings, got 5"),
    ({"images": []}, "images: empty; leave it out to keep the config's images"),
    ({"hashers": [None]}, "hashers[0]: expected a string, got None"),
    ({"hashers": []}, "hashers: empty; leave it out to keep the config's hashers"),
    ({"hashers": "phash"}, "hashers: phash: not a hasher of <dict>; did you mean 'pHash'?"),
    ({"workers": "2"}, "workers: expected a whole number from 1 to 1024 (or None), got '2'"),
    ({"workers": 1.5}, "workers: expected a whole number from 1 to 1024 (or None), got 1.5"),
    ({"workers": 0}, "workers: expected a whole number from 1 to 1024 (or None), got 0"),
    ({"workers": 10**11}, "workers: expected a whole number from 1 to 1024 (or None), got 100000000000"),
    ({"cache": 5}, "cache: expected a file path (or None for no cache), got 5"),
    ({"cache": ""}, "cache: expected a file path (or None for no cache), got ''"),
    ({"scheduler": 5}, "scheduler: expected a Dask scheduler's address such as 'tcp://host:8786' (or None), got 5"),
    ({"scheduler": " "}, "scheduler: expected a Dask scheduler's address such as 'tcp://host:8786' (or None), got ' '"),
    ({"progress": "yes"}, "progress: expected True, False or None, got 'yes'"),
    ({"strict": "no"}, "strict: expected True or False, got 'no'"),
])
def test_evaluate_checks_its_own_arguments(arguments, message):
    """Not an AttributeError from deep inside: one line naming the argument, before any work."""
    with pytest.raises(harness.HarnessError) as caught:
        harness.evaluate(CONFIG, **arguments)
    assert str(caught.value) == message


SMALL = {"name": "small", "images": ["builtin:coffee", "builtin:camera", "builtin:moon"], "hashers": ["pHash"],
         "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": "$value"}}, "values": [50]}]}


def test_results_keep_the_config_they_were_run_with():
    """Neither the caller's dict, changed after the run, nor the dict `config` hands out, changed
    to run again, changes what the results record (and save)."""
    import copy

    config = copy.deepcopy(SMALL)
    results = harness.evaluate(config)
    config["sweeps"][0]["values"].append(10)
    config["images"].append("builtin:astronaut")
    assert results.config["sweeps"][0]["values"] == [50]
    assert results.config["images"] == SMALL["images"]
    handed_out = results.config
    handed_out["sweeps"][0]["values"].append(90)
    handed_out["name"] = "changed"
    assert results.config["sweeps"][0]["values"] == [50] and results.config["name"] == "small"
    assert config["sweeps"][0]["values"] == [50, 10]  # and the caller's dict is the caller's


@pytest.mark.parametrize("bad", [None, 3, b"out", ["out"]])
def test_save_and_load_refuse_a_path_of_the_wrong_type(results, tmp_path, bad, monkeypatch):
    """One line naming the argument, and nothing written (bytes made an empty folder, then a TypeError)."""
    monkeypatch.chdir(tmp_path)
    for call in (results.save, harness.load):
        with pytest.raises(harness.HarnessError) as caught:
            call(bad)
        assert str(caught.value) == f"out_dir: expected a path (a str or pathlib.Path), got {bad!r}"
    assert os.listdir(tmp_path) == []


def test_a_scheduler_is_named_as_the_user_gave_it(tmp_path, capsys):
    """The API's argument is `scheduler`; only the command line has a --scheduler option."""
    with pytest.raises(harness.HarnessError, match=r"^scheduler='inproc://x': no scheduler of this process is there"):
        harness.evaluate(SMALL, scheduler="inproc://x")
    with pytest.raises(harness.HarnessError, match=r"^scheduler='inproc://x': no scheduler of this process is there"):
        harness.find_leaks({"splits": {"train": ["builtin:coffee"], "test": ["builtin:camera"]}, "threshold": 8},
                           scheduler="inproc://x")
    assert main(["run", "configs/lena.yaml", "--images", "builtin:coffee", "--hashers", "pHash", "--scheduler",
                 "inproc://x", "--out", str(tmp_path / "o"), "--quiet", "--no-cache"]) == 2
    assert capsys.readouterr().err.startswith("error: --scheduler inproc://x: no scheduler of this process is there")


def test_a_config_dict_built_in_python_takes_paths_tuples_and_numpy_numbers(tmp_path):
    """As the arguments do; they become plain YAML data, so config.yaml and run.json stay plain."""
    import pathlib

    import cv2
    import numpy as np
    import yaml

    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    config = {**SMALL, "images": (photo, pathlib.Path("builtin:camera")), "seed": np.int64(7),
              "output": tmp_path / "out", "max_side": np.int32(512),
              "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": "$value"}}, "values": np.array([50, 90])}],
              "detection": {"fpr": (np.float64(0.1), np.float32(0.01)), "thresholds": {"pHash": np.int64(8)}}}
    results = harness.evaluate(config)
    plain = {**SMALL, "images": [str(photo), "builtin:camera"], "seed": 7, "output": str(tmp_path / "out"),
             "max_side": 512, "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": "$value"}}, "values": [50, 90]}],
             "detection": {"fpr": [0.1, 0.01], "thresholds": {"pHash": 8}}}
    assert results.config == plain  # a float32 as the decimal it shows: 0.01, not 0.009999999776482582
    assert yaml.safe_load(yaml.safe_dump(results.config)) == plain  # safe_dump refuses a NumPy scalar or a Path
    assert results.table.equals(harness.evaluate(plain).table)


def test_every_argument_of_the_api_is_documented_and_typed_as_accepted():
    import inspect
    import pathlib
    import typing

    for function in (harness.evaluate, harness.find_leaks):
        for name in inspect.signature(function).parameters:
            assert f"`{name}`" in function.__doc__, (function.__name__, name)

    def accepts(hint, value) -> bool:
        kinds = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, __import__("types").UnionType) \
            else (hint,)
        return any(isinstance(value, typing.get_origin(kind) or kind) for kind in kinds)

    hints = typing.get_type_hints(harness.evaluate)
    for value in ("builtin:coffee", pathlib.Path("photos"), ["builtin:coffee"], ("builtin:coffee",)):
        assert accepts(hints["images"], value), value
    for value in ("pHash", ["pHash"], ("pHash",)):
        assert accepts(hints["hashers"], value), value
    assert accepts(hints["config"], pathlib.Path("configs/lena.yaml"))
    assert accepts(hints["cache"], pathlib.Path("cache.sqlite"))
    for function in (harness.load, harness.Results.save, harness.LeakAudit.save):
        assert accepts(typing.get_type_hints(function)["out_dir"], pathlib.Path("out")), function
    for name in ("config", "cache", "output"):
        assert accepts(typing.get_type_hints(harness.find_leaks)[name], pathlib.Path("x")), name


def test_dir_offers_what_the_module_gives_on_demand():
    assert set(harness.__all__) <= set(dir(harness))


def test_a_config_dict_that_contains_itself_is_one_line():
    """From Python, a dict can hold itself (no YAML parser stops it): 3.7 GB in 10 s, then MemoryError."""
    looped = {"images": ["builtin:coffee"], "hashers": ["aHash"], "sweeps": [{"family": "g", "b": None}]}
    looped["sweeps"][0]["b"] = looped["sweeps"]
    with pytest.raises(harness.ConfigError, match=r"^<dict>: sweeps\[0\]\.b\[0\]\.b.*: nests deeper than 50 levels "
                                                 r"\(does a value contain itself\?\)$"):
        harness.evaluate(looped)
    with pytest.raises(harness.ConfigError, match="nests deeper than 50 levels"):
        harness.find_leaks({"splits": looped["sweeps"], "hashers": ["pHash"], "threshold": 8})


def test_one_image_or_hasher_may_be_a_string_or_a_path(tmp_path):
    import cv2
    import numpy as np

    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    one = harness.evaluate(CONFIG, images="builtin:coffee", hashers="pHash")
    assert list(one.hashers["hasher"]) == ["pHash"] and one.images["image"].tolist() == ["coffee"]
    two = harness.evaluate(CONFIG, images=[photo, "builtin:camera"], hashers=["aHash"])
    assert two.images["image"].tolist() == ["photo", "camera"]


def test_selecting_no_hasher_is_an_error_not_an_empty_run(capsys, tmp_path):
    assert main(["run", "configs/lena.yaml", "--hashers", ",", "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()
    assert capsys.readouterr().err.strip() == "error: --hashers: names no hasher; the config has aHash, pHash, ResNet50"
    with pytest.raises(harness.ConfigError, match=r"thresholds: pHash: expected a distance >= 0, got -5"):
        harness.evaluate({**CONFIG, "detection": {"thresholds": {"pHash": -5}}})


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"harness {harness.__version__}"


def test_no_generic_top_level_module_is_installed():
    """What setuptools packages (pyproject's find rule): harness and its subpackages only, the
    transforms among them through the harness/transforms link."""
    import tomllib

    from setuptools import find_packages

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        project = tomllib.load(handle)
    packages = find_packages(ROOT, **project["tool"]["setuptools"]["packages"]["find"])
    assert "harness.transforms" in packages and "harness.hashers" in packages
    assert {p.split(".")[0] for p in packages} == {"harness"}
    assert project["project"]["name"] not in ("harness", "transforms")
    import harness.transforms
    assert os.path.samefile(os.path.dirname(harness.transforms.__file__), os.path.join(ROOT, "transforms"))


# --- the output directory -----------------------------------------------------------------

def write_config(tmp_path, families):
    sweeps = [f"  - {{family: {f}, b: {{jpeg: {{quality: $value}}}}, values: [20, 70]}}" for f in families]
    config = tmp_path / f"c{len(families)}.yaml"
    config.write_text("images: [builtin:coffee, builtin:camera]\nhashers: [aHash]\nreport: {previews: false}\n"
                      "sweeps:\n" + "\n".join(sweeps) + "\n")
    return config


def test_no_stale_figure_of_an_earlier_run_survives(tmp_path):
    out = tmp_path / "out"
    config = write_config(tmp_path, ["one", "two"])
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    assert (out / "figures" / "roc.png").is_file()  # two images: impostors, so detection figures
    # One image: no impostors, so no ROC; the first run's must not survive.
    assert main(["run", str(config), "--images", "builtin:coffee", "--out", str(out), "--quiet"]) == 0
    assert not (out / "figures" / "roc.png").exists()
    assert (out / "figures" / "families.png").is_file() and (out / "hash-cache.sqlite").is_file()
    assert not [p for p in os.listdir(tmp_path) if ".staging-" in p]


def test_a_folder_that_is_not_an_output_is_never_replaced(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "holiday.jpg").write_bytes(b"not touched")
    assert main(["run", str(write_config(tmp_path, ["one"])), "--out", str(photos), "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert "not empty and not a harness output directory (it holds holiday.jpg)" in error and "\n" not in error
    assert os.listdir(photos) == ["holiday.jpg"] and (photos / "holiday.jpg").read_bytes() == b"not touched"


def test_report_writes_only_inside_dir(tmp_path):
    out = tmp_path / "out"
    assert main(["run", str(write_config(tmp_path, ["one"])), "--out", str(out), "--quiet"]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    import shutil
    shutil.rmtree(out / "figures")
    os.symlink(elsewhere, out / "figures")
    assert main(["report", str(out)]) == 0
    assert os.listdir(elsewhere) == []
    assert (out / "figures").is_dir() and not (out / "figures").is_symlink()
    assert (out / "figures" / "families.png").is_file()


def test_a_run_killed_while_writing_leaves_the_old_set(tmp_path):
    out = tmp_path / "out"
    assert main(["run", str(write_config(tmp_path, ["one"])), "--out", str(out), "--quiet"]) == 0
    before = {name: (out / name).read_bytes() for name in ("summary.md", "table.csv", "distances.csv")}
    # A writer killed (SIGKILL) in the middle of a new set: half of it is written, nothing committed.
    code = textwrap.dedent(f"""
        import os, signal
        import pandas as pd
        from harness.storage import OutputSet
        output = OutputSet({str(out)!r})
        output.write_text("summary.md", "half-written")
        output.write_csv("table.csv", pd.DataFrame({{"x": [1]}}))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True)
    assert done.returncode == -signal.SIGKILL
    for name, content in before.items():
        assert (out / name).read_bytes() == content, name
    assert [p for p in os.listdir(tmp_path) if ".staging-" in p]  # the killed writer's staging is left ...
    assert main(["report", str(out)]) == 0
    assert not [p for p in os.listdir(tmp_path) if ".staging-" in p]  # ... and cleared by the next writer


def test_no_distance_at_all_still_writes_a_summary(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("images: [builtin:coffee, builtin:camera]\nhashers: [aHash]\nsweeps:\n"
                      "  - {family: crop, b: {crop: {x: 0, y: 0, width: 5000, height: 10}}}\n")
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 1
    summary = (out / "summary.md").read_text()
    assert "No pair yielded a distance" in summary and "## Problems" in summary
    assert main(["report", str(out)]) == 0


@pytest.mark.parametrize("damage", ["garbage", "columns", "types"])
def test_report_of_a_damaged_directory_is_one_line(tmp_path, capsys, damage):
    out = tmp_path / "out"
    assert main(["run", str(write_config(tmp_path, ["one"])), "--out", str(out), "--quiet"]) == 0
    os.remove(out / "distances.parquet")
    text = {"garbage": "\x00\x01\x02 not,a\ncsv\"\n", "columns": "a,b\n1,2\n",
            "types": "image,image_id,family,value,label,hasher,distance,distance_norm,error\nx,y,f,1,l,h,far,0,\n"}
    (out / "distances.csv").write_text(text[damage])
    capsys.readouterr()
    assert main(["report", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: {out}") and "\n" not in error


def test_a_parquet_table_that_decompresses_past_its_bound_is_one_line_and_repeats_cost_nothing(tmp_path, capsys,
                                                                                               monkeypatch):
    """A run's distances.parquet is read with its text as dictionaries (a value repeated on 600,000
    rows is held once) and refused where its pages decompress past storage.PARQUET_MAX_BYTES.
    Was: read plainly, a 19 KB file took 7.4 GB and ended in exit 3 (ArrowMemoryError)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from harness import storage

    out = tmp_path / "out"
    assert main(["run", str(write_config(tmp_path, ["one"])), "--out", str(out), "--quiet"]) == 0
    table = pq.read_table(out / "distances.parquet")
    rows = 600_000
    long_name = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, np.int32)), pa.array(["x" * 5000]))
    repeated = pa.table({name: (long_name if name in ("image", "image_id") else
                                pa.array(np.resize(table.column(name).to_pylist(), rows)).dictionary_encode()
                                if pa.types.is_dictionary(table.schema.field(name).type) else
                                pa.array(np.resize(table.column(name).to_numpy(), rows)))
                         for name in table.column_names})
    pq.write_table(repeated, out / "distances.parquet", compression="zstd", store_schema=False)
    assert os.path.getsize(out / "distances.parquet") < 100_000
    frame = storage.read_long(str(out), storage.DISTANCES)  # 3 GB of text, if each row held its own
    assert isinstance(frame["image"].dtype, pd.CategoricalDtype) and len(frame) == rows
    assert frame["image"].cat.categories.tolist() == ["x" * 5000]
    capsys.readouterr()
    assert main(["report", str(out)]) == 2  # its rows name no image of images.csv: damaged, one line
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: {out}") and "\n" not in error
    # Pages that decompress past the bound (here made small) are refused before any is read.
    pq.write_table(table, out / "distances.parquet", compression="zstd", use_dictionary=False)
    monkeypatch.setattr(storage, "PARQUET_MAX_BYTES", 100)  # the 4-row table takes 750
    assert main(["report", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: {out}: distances.parquet: ") and "bytes once decompressed, more than a table " \
        "of a run may hold" in error and "\n" not in error


def test_long_tables_are_parquet_too_and_either_reads_back(tmp_path):
    out = tmp_path / "out"
    assert main(["run", str(write_config(tmp_path, ["one"])), "--out", str(out), "--quiet"]) == 0
    from_parquet = harness.load(str(out))
    os.remove(out / "distances.parquet")
    os.remove(out / "impostors.parquet")
    from_csv = harness.load(str(out))
    pd.testing.assert_frame_equal(from_parquet.distances, from_csv.distances, check_dtype=False)
    pd.testing.assert_frame_equal(from_parquet.thresholds, from_csv.thresholds)


def test_names_from_files_and_configs_are_escaped_in_the_summary(tmp_path):
    from harness.summary import md

    assert md("[click](javascript:alert(1))") == "\\[click\\](javascript:alert(1))"
    assert md("![x](http://remote/y.png)") == "!\\[x\\](http\\://remote/y.png)"
    assert md("<img src=http://x/y.png>") == "\\<img src=http\\://x/y.png>"
    assert md("a|b\nc") == "a\\|b c"
    folder = tmp_path / "imgs"
    folder.mkdir()
    import cv2
    from tests.conftest import make_synthetic
    cv2.imwrite(str(folder / "![x](http:evil) <b>.png"), make_synthetic())
    cv2.imwrite(str(folder / "plain.png"), make_synthetic()[::-1].copy())
    config = tmp_path / "c.yaml"
    config.write_text(f"name: '<script>alert(1)</script>'\nimages: ['{folder}']\nhashers: [aHash]\n"
                      "sweeps:\n  - {family: '[f](javascript:x)', b: grayscale}\n")
    out = tmp_path / "out"
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    summary = (out / "summary.md").read_text()
    import re
    assert not re.search(r"(?<!\\)<(script|b)>", summary)  # each '<' that could open a tag is escaped
    # Every link or image in the summary is the report's own: no name became one.
    targets = re.findall(r"(?<!\\)\]\(([^)]*)\)", summary)
    assert targets and all(t.startswith("figures/") or t == "previews.png" for t in targets), targets
    assert "\\<script>alert(1)\\</script>" in summary


def test_the_summary_counts_and_names_the_images_as_images_csv_does(tmp_path):
    """Was "Images: 2 (x, y)" for a/x.png, a/y.png and b/x.png: counted by file name, where
    images.csv (and repr) count 3; two images of one name are told apart by where they came from."""
    import cv2
    from harness.summary import md
    from tests.conftest import make_scene

    files = [tmp_path / "a" / "x.png", tmp_path / "a" / "y.png", tmp_path / "b" / "x.png"]
    for seed, path in enumerate(files):
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), make_scene(seed))
    results = harness.evaluate({"name": "names", "images": [str(f) for f in files], "hashers": ["aHash"],
                                "sweeps": [{"family": "gray", "b": "grayscale"}]})
    results.save(tmp_path / "out")
    assert len(pd.read_csv(tmp_path / "out" / "images.csv")) == 3
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert f"Images: 3 ({md(str(files[0]))}, y, {md(str(files[2]))}). " in summary


# --- validation where things are built ------------------------------------------------------

@pytest.mark.parametrize("name, params, problem", [
    ("ResNet50", {"batch_size": 0}, "batch_size: 0 must be >= 1"),
    ("imagehash.phash", {"hash_size": 1}, "hash_size: 1 must be >= 2"),
    ("BlockMeanHash", {"mode": 2}, "mode: expected 0 | 1, got 2"),
    ("MarrHildrethHash", {"scale": "1"}, "scale: expected float, got '1'"),
])
def test_a_hasher_built_in_python_is_validated(name, params, problem):
    from harness.hashers import HASHERS

    with pytest.raises(ValueError) as caught:
        HASHERS.get(name)(**params)
    assert str(caught.value) == problem


def test_a_hasher_built_in_python_gets_declared_types():
    from harness.hashers import HASHERS

    hasher = HASHERS.get("MarrHildrethHash")(alpha=3)
    assert isinstance(hasher.alpha, float) and hasher.alpha == 3.0


def test_a_transform_called_from_python_is_validated():
    import numpy as np

    from harness.transforms import TransformError, apply_chain

    image = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(TransformError, match=r"^transform 'jpeg': quality: 500 must be <= 100$"):
        apply_chain(image, [("jpeg", {"quality": 500})])
    with pytest.raises(TransformError, match="did you mean 'quality'"):
        apply_chain(image, [("jpeg", {"qualty": 50})])
    assert apply_chain(image, [("jpeg", {"quality": 50})]).shape == image.shape


def test_a_cache_in_a_folder_that_does_not_exist_is_refused_and_nothing_made(tmp_path):
    """As --cache is: the API made every folder a mistyped path named."""
    missing = tmp_path / "mistyped" / "dir" / "c.sqlite"
    with pytest.raises(harness.HarnessError, match=r"^cache='.*c\.sqlite': the folder .* does not exist; make it "
                                                   r"first, or give cache=None \(no cache\)$"):
        harness.evaluate(SMALL, cache=missing)
    assert not (tmp_path / "mistyped").exists()


def test_ctrl_c_while_saving_leaves_no_folder_the_save_made(tmp_path, monkeypatch):
    """As a command stopped by Ctrl-C leaves none: Results.save left an empty new folder."""
    from harness import report

    results = harness.evaluate(SMALL)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        results.save(tmp_path / "new" / "out")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    results.save(tmp_path / "new" / "out")
    assert (tmp_path / "new" / "out" / "run.json").is_file()


def test_a_title_that_is_no_folder_name_gives_an_output_within_reports():
    """The API takes any name as a title; the resolved config's output came from it: reports/../../etc,
    where the command line, given that config, would write."""
    for name, output in (("../../etc", "reports/.._.._etc"), ("a/b", "reports/a_b"), ("..", "reports/__"),
                         ("plain", "reports/plain")):
        assert harness.evaluate({**SMALL, "name": name}).config["output"] == output
    with pytest.raises(harness.HarnessError, match=r"name: expected a name \(it titles the summary\), got ''$"):
        harness.evaluate({**SMALL, "name": ""})


def test_each_sample_size_warning_names_its_families_where_they_differ(tmp_path):
    """A crop that fails on one image of three leaves its family 2 images: the summary said "Too few
    images" twice, the second "with 2 images" about no family named (and "with 1 images")."""
    from harness.metrics import sample_size_warning

    config = {"images": ["builtin:astronaut", "builtin:coffee", "builtin:camera"], "hashers": ["pHash"],
              "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": "$value"}}, "values": [50, 20]},
                         {"family": "crop", "b": {"crop": {"x": 0, "y": 0, "width": 450, "height": 450}}}]}
    harness.evaluate(config).save(tmp_path / "out")
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "> **Too few images for a 95% claim (family jpeg):** with 3 images" in summary
    assert "> **Too few images for a 95% claim (family crop):** with 2 images" in summary
    assert sample_size_warning(1, 0.95).startswith("with 1 image, a detection rate")


def test_a_cache_that_is_a_directory_is_refused(tmp_path, capsys):
    """It was a note in Results.notes, which a notebook does not show, and the run went on without a
    cache while `cache` said it had one."""
    with pytest.raises(harness.HarnessError, match=r"^cache='.*': is a directory; name the cache file itself, e\.g\. "
                                                   r".*hash-cache\.sqlite$"):
        harness.evaluate(SMALL, cache=tmp_path)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    assert main(["run", str(config), "--cache", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith(f"error: --cache {tmp_path}: is a directory; name the cache file")
    assert not (tmp_path / "out").exists()


def test_a_save_after_a_change_of_folder_checks_the_run_s_own_relative_paths(tmp_path, monkeypatch):
    """Entries relative to the folder the run (or audit) ran in: after os.chdir into the image
    folder, save("out") wrote there, and the next run read its figures as images."""
    import re

    import cv2
    from tests.conftest import make_scene

    (tmp_path / "imgs").mkdir()
    for seed in range(3):
        cv2.imwrite(str(tmp_path / "imgs" / f"p{seed}.png"), make_scene(seed))
    monkeypatch.chdir(tmp_path)
    results = harness.evaluate({"name": "rel", "images": ["imgs"], "hashers": ["pHash"],
                                "sweeps": [{"family": "gray", "b": "grayscale"}]})
    audit = harness.find_leaks({"splits": {"train": ["imgs"], "test": ["builtin:coffee"]}, "hashers": ["pHash"],
                                "threshold": 4})
    monkeypatch.chdir(tmp_path / "imgs")
    with pytest.raises(harness.HarnessError, match=r"^out: the output directory is inside the image folder "
                                           + re.escape(str(tmp_path / "imgs")) + r" \(images\[0\]\)"):
        results.save("out")
    with pytest.raises(harness.HarnessError, match=r"^out: the output directory is inside the image folder "
                                                   + re.escape(str(tmp_path / "imgs")) + r" \(splits\.train\[0\]\)"):
        audit.save("out")
    assert sorted(os.listdir(tmp_path / "imgs")) == ["p0.png", "p1.png", "p2.png"]
    results.save(tmp_path / "elsewhere")  # and where nothing is read, it saves
    assert (tmp_path / "elsewhere" / "run.json").is_file()


def test_find_leaks_checks_its_output_before_any_work(tmp_path):
    """`output` was checked only against the files listed; save then refused it after the whole audit."""
    import re

    import cv2
    from tests.conftest import make_scene

    (tmp_path / "imgs").mkdir()
    cv2.imwrite(str(tmp_path / "imgs" / "a.png"), make_scene(1))
    message = (f"{tmp_path / 'imgs' / 'o'}: the output directory is inside the image folder {tmp_path / 'imgs'} "
               "(splits.train[0])")
    with pytest.raises(harness.HarnessError, match=re.escape(message)):
        harness.find_leaks({"splits": {"train": [str(tmp_path / "imgs")], "test": ["builtin:coffee"]},
                            "hashers": ["pHash"], "threshold": 4}, output=tmp_path / "imgs" / "o")


@pytest.mark.parametrize("table, edit", [("distances", lambda frame: frame.assign(distance=frame["distance"].where(
    frame.index != 1), error="")), ("impostors", lambda frame: frame.assign(distance=frame["distance"].where(
        frame.index != 2)))])
def test_a_row_with_no_distance_and_no_error_is_refused_on_loading(tmp_path, table, edit):
    """Was loaded, then report and save failed with 'a bug in harness (ValueError: cannot convert
    float NaN to integer)' in the histograms."""
    results = harness.evaluate({"name": "x", "images": ["builtin:coffee", "builtin:camera"], "hashers": ["pHash"],
                                "sweeps": [{"family": "gray", "b": "grayscale"}]})
    out = tmp_path / "out"
    results.save(out)
    os.remove(out / f"{table}.parquet")
    frame = pd.read_csv(out / f"{table}.csv", dtype=str, keep_default_na=False)
    edit(frame.assign(distance=pd.to_numeric(frame["distance"]))).to_csv(out / f"{table}.csv", index=False)
    with pytest.raises(harness.HarnessError, match=f"^{re.escape(str(out))}: {table} holds a row with no distance"):
        harness.load(out)
    status = subprocess.run([sys.executable, "-m", "harness", "report", str(out)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert status.returncode == 2 and f"{table} holds a row with no distance" in status.stderr, status.stderr


@pytest.mark.parametrize("damage, message", [
    ("hashers", "hashers.csv: lists the hasher 'pHash' twice"),
    ("images", "images.csv: lists the image_id"),
    ("config", "run.json: holds no config"),
])
def test_a_repeated_row_or_an_emptied_config_is_refused_on_loading(tmp_path, damage, message):
    """Were loaded as 3 hashers (pHash twice), 3 images, or a run of the defaults' settings."""
    import json

    results = harness.evaluate({"name": "x", "images": ["builtin:coffee", "builtin:camera"], "hashers": ["pHash"],
                                "sweeps": [{"family": "gray", "b": "grayscale"}]})
    out = tmp_path / "out"
    results.save(out)
    if damage == "config":
        run = json.loads((out / "run.json").read_text())
        (out / "run.json").write_text(json.dumps({**run, "config": {}}))
    else:
        lines = (out / f"{damage}.csv").read_text().splitlines(keepends=True)
        (out / f"{damage}.csv").write_text("".join(lines + lines[-1:]))
    with pytest.raises(harness.HarnessError, match=re.escape(message)):
        harness.load(out)


def test_save_writes_the_tables_that_follow_from_the_frames_as_they_are(tmp_path):
    """Distances edited after evaluate were saved beside a table.csv made before the edit, which
    load (recomputing) then contradicted: not 'one consistent set'."""
    jpeg = {"family": "jpeg", "b": {"jpeg": {"quality": "$value"}}, "values": [50, 10]}
    results = harness.evaluate({"name": "x", "images": ["builtin:coffee", "builtin:camera", "builtin:astronaut"],
                                "hashers": ["aHash", "pHash"], "sweeps": [jpeg]})
    before = results.table.copy()
    results.distances.loc[results.distances["hasher"] == "pHash", "distance"] = 40.0
    results.save(tmp_path / "out")
    saved = pd.read_csv(tmp_path / "out" / "table.csv", dtype=str)
    assert saved["pHash"].tolist() == ["40", "40"] and saved["aHash"].tolist() == before["aHash"].tolist()
    assert harness.load(tmp_path / "out").table["pHash"].tolist() == ["40", "40"]
    results.distances = results.distances[results.distances["hasher"] == "pHash"]  # a hasher dropped: still a run's
    results.save(tmp_path / "fewer")
    assert pd.read_csv(tmp_path / "fewer" / "table.csv", dtype=str).columns.tolist() == ["family", "value", "label",
                                                                                          "pHash"]
    assert harness.load(tmp_path / "fewer").table["pHash"].tolist() == ["40", "40"]
    # Edits that leave no run's tables are refused as load refuses them, before anything is written.
    cut = results.distances.iloc[3:]  # an image's first rows gone
    first = results.distances.index[0]
    emptied = results.distances.assign(distance=results.distances["distance"].where(results.distances.index != first))
    for edited, message in ((cut, "rows where another has 2"), (emptied, "holds a row with no distance and no "
                                                                               "error"),
                            (results.distances.drop(columns=["hasher"]), "does not list the hasher ''")):
        results.distances = edited
        with pytest.raises(harness.HarnessError, match=re.escape(message)):
            results.save(tmp_path / "broken")
        assert not (tmp_path / "broken").exists()


@pytest.mark.parametrize("where", ["transform", "range", "hasher", "value"])
def test_an_integer_past_any_float_is_a_config_error(where):
    """From Python, 10**400 raised OverflowError from deep in the parameter checks (YAML cannot
    write it: a number is at most 100 characters)."""
    huge = 10 ** 400
    sweep = {"family": "g", "b": {"gamma": {"gamma": "$value"}}, "values": [0.5]}
    config = {"images": ["builtin:coffee"], "hashers": ["aHash"], "sweeps": [sweep]}
    if where == "transform":
        sweep.update(b={"gamma": {"gamma": huge}}, values=None)
        del sweep["values"]
    elif where == "range":
        sweep["values"] = {"start": huge, "stop": huge * 10, "step": 1}
    elif where == "hasher":
        config["hashers"] = [{"name": "MarrHildrethHash", "alpha": huge}]
    else:
        sweep["values"] = [huge]
    with pytest.raises(harness.ConfigError, match=r"^<dict>: (sweeps|hashers)\[0\]\.\S+: (expected|the range)"):
        harness.evaluate(config)


def test_load_never_reads_another_runs_parquet_beside_this_runs_csv(tmp_path):
    """An older version (CSV only, and run.json listing no files) run into a current set's folder
    wrote its CSV tables and left the other run's Parquet ones, which `load` and `report` read in their
    place: another run's numbers under this run's record, exit 0. A set that lists its files is read
    from the listed ones; one that lists none, where both are there, must hold one table in both."""
    import json
    import shutil

    import harness
    from harness.errors import HarnessError

    base = {"images": ["builtin:coffee", "builtin:camera"], "hashers": ["aHash"]}
    first = harness.evaluate({**base, "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": "$value"}},
                                                  "values": [50, 10]}]})
    other = harness.evaluate({**base, "sweeps": [{"family": "blur", "b": {"blur": {"kernel": 3}}}]})
    first.save(tmp_path / "a")
    other.save(tmp_path / "b")
    shutil.copy(tmp_path / "b" / "distances.parquet", tmp_path / "a" / "distances.parquet")
    run_json = tmp_path / "a" / "run.json"
    record = json.loads(run_json.read_text())
    # Listed: the listed Parquet file is read (the swapped one is refused by its digest elsewhere); with the
    # Parquet left out of the list, the CSV is.
    record["files"] = [name for name in record["files"] if name != "distances.parquet"]
    run_json.write_text(json.dumps(record))
    assert harness.load(tmp_path / "a").distances.equals(first.distances)
    for key in ("files", "sizes", "digests"):  # an older version's record
        record.pop(key)
    run_json.write_text(json.dumps(record))
    with pytest.raises(HarnessError, match=r"distances.csv and distances.parquet hold different tables \(4 and 2 "):
        harness.load(tmp_path / "a")
    shutil.copy(tmp_path / "b" / "distances.csv", tmp_path / "a" / "distances.csv")  # one table in both: read
    assert len(harness.load(tmp_path / "a").distances) == 2
    # A label holding a line break (in quotes in the CSV) is one row, not two.
    broken = harness.evaluate({**base, "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": 50}},
                                                   "label": "JPEG\nq50"}]})
    broken.save(tmp_path / "c")
    record = json.loads((tmp_path / "c" / "run.json").read_text())
    (tmp_path / "c" / "run.json").write_text(json.dumps({k: v for k, v in record.items()
                                                         if k not in ("files", "sizes", "digests")}))
    assert harness.load(tmp_path / "c").distances.equals(broken.distances)


def test_a_table_naming_an_image_images_csv_lacks_or_without_an_images_rows_is_refused(tmp_path):
    """An impostor row whose other image images.csv does not list, and a distances table missing every
    row of one image (cut where that image's rows begin: each row left is whole), were loaded; the
    report would then show pairs of an image nobody listed, or an image with no distances."""
    results = harness.evaluate({"name": "x", "images": ["builtin:coffee", "builtin:camera"], "hashers": ["pHash"],
                                "sweeps": [{"family": "gray", "b": "grayscale"}]})
    out = tmp_path / "out"
    results.save(out)
    camera = results.images.set_index("image").loc["camera", "image_id"]
    for table in ("distances", "impostors"):
        os.remove(out / f"{table}.parquet")
    impostors = pd.read_csv(out / "impostors.csv", dtype=str, keep_default_na=False)
    impostors.loc[0, "other_id"] = "zzz"  # its image_id stays one images.csv lists
    impostors.to_csv(out / "impostors.csv", index=False)
    with pytest.raises(harness.HarnessError, match=re.escape("images.csv: does not list the image_id 'zzz' that "
                                                             "the impostors table holds")):
        harness.load(out)
    results.save(tmp_path / "cut")
    os.remove(tmp_path / "cut" / "distances.parquet")
    distances = pd.read_csv(tmp_path / "cut" / "distances.csv", dtype=str, keep_default_na=False)
    distances[distances["image_id"] != camera].to_csv(tmp_path / "cut" / "distances.csv", index=False)
    with pytest.raises(harness.HarnessError, match=re.escape(f"distances.csv: image_id '{camera}' has 0 rows where "
                                                             "another has 1")):
        harness.load(tmp_path / "cut")


def test_a_cut_table_is_named_by_the_file_that_was_read(tmp_path):
    """A set whose run.json lists its CSV alone (an older version's run into a newer set's folder left
    the other run's Parquet beside it) is read from the CSV: a cut there was reported as the
    Parquet's, a file that was not read."""
    import json

    results = harness.evaluate({"name": "x", "images": ["builtin:coffee", "builtin:camera"], "hashers": ["pHash"],
                                "sweeps": [{"family": "gray", "b": "grayscale"}]})
    out = tmp_path / "out"
    results.save(out)
    run = json.loads((out / "run.json").read_text())
    assert "distances.parquet" in run["files"]
    (out / "run.json").write_text(json.dumps({**run, "files": [f for f in run["files"] if f != "distances.parquet"]}))
    lines = (out / "distances.csv").read_text().splitlines(keepends=True)
    (out / "distances.csv").write_text("".join(lines[:-1]))  # the last image's row gone
    with pytest.raises(harness.HarnessError, match=f"^{re.escape(str(out / 'distances.csv'))}: image_id '.*' has 0 "
                                                   "rows where another has 1"):
        harness.load(out)
