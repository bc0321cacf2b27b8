"""A tiny config run end to end through the CLI: outputs, determinism, `report` rebuilding them."""

import json
import os
import re
import shutil
import sys

import pandas as pd
import pytest

import harness
from harness.__main__ import main

TINY = """
name: tiny
images: [{image}]
report: {{previews: true}}
hashers:
  - aHash
  - pHash
  - {{name: ResNet50, weights: null, input_size: 64}}
sweeps:
  - family: identity
    label: Same image
  - family: jpeg
    label: JPEG {{value}}
    b: {{jpeg: {{quality: $value}}}}
    values: [20, 80]
  - family: shift
    label: Shift {{value}} px
    a: {{crop: {{x: 64, y: 64, width: 128, height: 128}}}}
    b: {{crop: {{x: 64, y: 64, width: 128, height: 128, dx: $value, dy: $value}}}}
    values: [1, 8, 32]
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests.conftest import make_synthetic
    import cv2

    folder = tmp_path_factory.mktemp("tiny")
    cv2.imwrite(str(folder / "card.png"), make_synthetic())
    config = folder / "tiny.yaml"
    config.write_text(TINY.format(image=folder / "card.png"))
    out = folder / "out"
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    return config, out


def test_outputs(tiny):
    _, out = tiny
    for name in ["distances.csv", "table.csv", "hashers.csv", "run.json", "summary.md", "previews.png",
                 "figures/families.png", "figures/heatmap.png"]:
        assert (out / name).is_file(), name
    # Every figure summary.md shows is there, and every figure there is shown.
    summary = (out / "summary.md").read_text()
    linked = set(re.findall(r"\]\((figures/[^)]+)\)", summary))
    assert linked == {f"figures/{name}" for name in os.listdir(out / "figures")}
    distances = pd.read_csv(out / "distances.csv", keep_default_na=False)
    assert list(distances.columns) == ["image", "image_id", "family", "value", "label", "hasher",
                                       "distance", "distance_norm", "error"]
    assert len(distances) == 6 * 3
    assert set(distances["image"]) == {"card"}
    identity = distances[distances["family"] == "identity"]
    assert (identity["distance"] == 0).all()
    assert distances["distance_norm"].between(0, 1).all()
    assert (distances["error"] == "").all()
    shift = distances[(distances["family"] == "shift") & (distances["hasher"] == "aHash")]
    assert shift["distance"].is_monotonic_increasing, "a larger shift should move aHash further"


def test_table_is_the_article_layout(tiny):
    _, out = tiny
    table = (out / "table.csv").read_text().splitlines()
    assert table[0] == "family,value,label,aHash,pHash,ResNet50"
    assert table[1].startswith("identity,,Same image,0,0,")
    assert [line.split(",")[2] for line in table[1:]] == [
        "Same image", "JPEG 20", "JPEG 80", "Shift 1 px", "Shift 8 px", "Shift 32 px"]


def test_run_json_has_provenance(tiny):
    _, out = tiny
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["name"] == "tiny" and len(run["config"]["sweeps"]) == 3
    assert {"python", "cv2", "numpy", "tensorflow", "pandas"} <= set(run["versions"])
    # Every library a decode, a hash or the audit's search goes through: Pillow (decoding, ImageHash's
    # resizing), SciPy (imagehash.phash's DCT), PyWavelets (whash), FAISS; and pyarrow, which writes.
    assert {"pillow", "scipy", "pywavelets", "faiss-cpu", "pyarrow"} <= set(run["versions"])
    assert set(run["git"]) == {"commit", "dirty"} and run["date"]
    assert run["cpu"]["opencv_features"] and "machine" in run["cpu"]
    assert [h["hasher"] for h in run["hashers"]] == ["aHash", "pHash", "ResNet50"]
    assert [h["cpu_exact"] for h in run["hashers"]] == ["yes", "yes", "no"]


def test_the_hash_cache_keys_hold_every_library_a_hash_goes_through():
    """A Pillow that resizes differently gives other ImageHash hashes: its version is in the keys."""
    from harness.provenance import result_versions

    keys = result_versions()
    assert {"pillow", "scipy", "pywavelets", "imagehash", "pdqhash", "harness code"} <= set(keys)
    # Only the tables, the report and the audit's exact search go through these: upgrading one keeps
    # the cache, and Dask workers need not match them.
    assert not {"pandas", "matplotlib", "pyyaml", "pyarrow", "faiss-cpu"} & set(keys)


def test_the_hash_cache_keys_hold_harness_code_but_its_report_modules():
    """Editing the summary's wording keeps a 100,000-image cache; editing a hasher or a transform does not."""
    from harness.provenance import code_digest, source_files

    hashing = {os.path.relpath(path, os.path.dirname(harness.__file__)) for path in source_files(hashing_only=True)}
    everything = {os.path.relpath(path, os.path.dirname(harness.__file__)) for path in source_files()}
    # The command line's modules too: an edit of what it prints invalidated every cache.
    assert everything - hashing == {"report.py", "summary.py", "figures.py", "markdown.py", "review.py",
                                    "leaks_report.py", "search.py", "leaks_search.py", "__main__.py", "commands.py",
                                    "heap.py", "process.py"}
    assert {"imagework.py", "images.py", "runner.py", "cache.py", "hashing.py", os.path.join("hashers", "base.py"),
            os.path.join("transforms", "geometry.py")} <= hashing
    assert code_digest(hashing_only=True) != code_digest()


def test_same_config_gives_byte_identical_tables(tiny, tmp_path):
    config, out = tiny
    again = tmp_path / "again"
    assert main(["run", str(config), "--out", str(again), "--quiet"]) == 0
    for name in ("distances.csv", "table.csv", "hashers.csv"):
        assert (out / name).read_bytes() == (again / name).read_bytes(), name


def test_report_rebuilds_everything_from_csv(tiny, tmp_path, capsys):
    _, out = tiny
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = {name: (copy / name).read_bytes() for name in ("table.csv", "summary.md", "figures/families.png")}
    os.remove(copy / "table.csv")
    os.remove(copy / "summary.md")
    shutil.rmtree(copy / "figures")
    assert main(["report", str(copy)]) == 0
    for name, content in before.items():
        assert (copy / name).read_bytes() == content, name
    assert "Shift 32 px" in capsys.readouterr().out


def test_images_and_hashers_overrides(tiny, tmp_path):
    config, _ = tiny
    out = tmp_path / "override"
    assert main(["run", str(config), "--out", str(out), "--quiet", "--images", "builtin:coffee",
                 "--hashers", "pHash"]) == 0
    distances = pd.read_csv(out / "distances.csv")
    assert set(distances["image"]) == {"coffee"} and set(distances["hasher"]) == {"pHash"}


def test_fallback_image_when_the_configured_one_is_absent(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("images: [resources/not_here.tif]\nfallback_image: builtin:astronaut\nhashers: [aHash]\n"
                      "sweeps:\n  - family: grayscale\n    b: grayscale\n")
    assert main(["run", str(config), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert "using the freely licensed stand-in builtin:astronaut" in capsys.readouterr().err
    assert "astronaut" in (tmp_path / "out" / "distances.csv").read_text()
    assert "stand-in" in (tmp_path / "out" / "summary.md").read_text()


def test_the_stand_ins_numbers_never_replace_the_real_images_report(tmp_path, capsys):
    real = tmp_path / "reports" / "article"
    config = tmp_path / "c.yaml"
    config.write_text(f"output: {real}\nimages: [resources/not_here.tif]\nfallback_image: builtin:astronaut\n"
                      "hashers: [aHash]\nsweeps:\n  - family: grayscale\n    b: grayscale\n")
    assert main(["run", str(config), "--quiet"]) == 0
    assert not real.exists()
    assert "stand-in" in (tmp_path / "reports" / "article-astronaut" / "summary.md").read_text()


def test_missing_image_without_fallback_is_one_line_status_2(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("images: [nothing.png]\nhashers: [aHash]\nsweeps:\n  - family: identity\n")
    assert main(["run", str(config), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {config}: images[0]: no image file at 'nothing.png'"


def test_transform_that_cannot_apply_is_recorded_not_fatal(tmp_path, synthetic_file):
    config = tmp_path / "c.yaml"
    config.write_text(f"images: [{synthetic_file}]\nhashers: [aHash]\nsweeps:\n  - family: crop\n"
                      "    b: {crop: {x: 0, y: 0, width: $value, height: 10}}\n    values: [100, 1000]\n")
    assert main(["run", str(config), "--out", str(tmp_path / "out"), "--quiet"]) == 1
    distances = pd.read_csv(tmp_path / "out" / "distances.csv", keep_default_na=False)
    assert distances["error"].tolist()[0] == ""
    assert "does not fit in a 256x256 image" in distances["error"].tolist()[1]
    assert "error" in (tmp_path / "out" / "table.csv").read_text()


def test_report_of_a_directory_without_results(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no distances.csv or distances.parquet here" in capsys.readouterr().err


def test_the_recorded_command_is_the_one_to_type_again(monkeypatch):
    import importlib.util
    import types

    from harness.provenance import command_line

    main = types.ModuleType("__main__")
    main.__spec__ = importlib.util.find_spec("harness.__main__")  # as `python -m harness` sets it
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setattr(sys, "argv", [main.__spec__.origin, "run", "c.yaml"])
    assert command_line() == ["python", "-m", "harness", "run", "c.yaml"]
    main.__spec__ = None  # a script, or the installed `harness` command
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/harness", "run", "c.yaml"])
    assert command_line() == ["harness", "run", "c.yaml"]
