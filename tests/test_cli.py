"""The `list` and `validate` subcommands, and plugins named by import path in a config."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from harness.__main__ import main
from harness.hashers import HASHERS
from harness.transforms import TRANSFORMS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGINS_YAML = "examples/plugins.yaml"
COLOR_HISTOGRAM = "examples.plugins:ColorHistogram"
VIGNETTE = "examples.plugins:vignette"


def write_config(tmp_path, hashers="[aHash]", side="{jpeg: {quality: $value}}", values="[10, 50, 90]"):
    path = tmp_path / "config.yaml"
    path.write_text(f"images: [builtin:astronaut]\nhashers: {hashers}\nsweeps:\n"
                    f"  - family: identity\n"
                    f"  - family: jpeg\n    b: {side}\n    values: {values}\n")
    return str(path)


def run_main(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


# --- list -----------------------------------------------------------------

def entry_names(text: str) -> set[str]:
    """The names of the listing's entries: lines indented by exactly two spaces."""
    return {m.group(1) for m in re.finditer(r"^  (\S+)", text, flags=re.MULTILINE)}


def test_list_shows_every_registered_hasher_and_transform(capsys):
    status, out, _ = run_main(capsys, "list")
    assert status == 0
    assert set(HASHERS) | set(TRANSFORMS) <= entry_names(out)
    assert "distance: hamming, distance_max 64" in out  # aHash's distance, as data
    assert "quality: int in [1, 100]  JPEG quality" in out  # a parameter: type, range, doc
    assert "\ngeometry: " in out and "\ncodecs: " in out  # transforms grouped by kind


@pytest.mark.parametrize("which, registry, other", [("hashers", HASHERS, TRANSFORMS),
                                                    ("transforms", TRANSFORMS, HASHERS)])
def test_list_one_registry(capsys, which, registry, other):
    status, out, _ = run_main(capsys, "list", which)
    names = entry_names(out)
    assert status == 0 and set(registry) <= names and not (set(other) - set(registry)) & names


def test_list_and_validate_import_no_heavy_library():
    code = ("import contextlib, io, sys\nfrom harness.__main__ import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    assert main(['list']) == 0\n"
            "    assert main(['validate', 'configs/lena.yaml']) == 0\n"
            "heavy = {'tensorflow', 'keras', 'imagehash', 'pdqhash'} & set(sys.modules)\n"
            "assert not heavy, f'imported {heavy}'\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("setting, expected", [(None, "system"), ("mimalloc", "mimalloc")])
def test_the_command_line_gives_pyarrow_the_system_allocator_unless_told_otherwise(setting, expected):
    """pyarrow's mimalloc kept ~50 MiB of a 100,000-image run's peak to itself (issue 9); a user's
    ARROW_DEFAULT_MEMORY_POOL stands."""
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if setting:
        env["ARROW_DEFAULT_MEMORY_POOL"] = setting
    code = "import harness.__main__, pyarrow\nprint(pyarrow.default_memory_pool().backend_name)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_trim_heap_gives_back_the_free_pages_between_live_blocks():
    """Blocks freed between blocks still in use stay with the process until trim_heap (issue 9: the
    image pass left 8 to 11 MiB of them at 100,000 images)."""
    code = """
import harness.__main__ as main
if main._glibc() is None:
    print("no glibc"); raise SystemExit
def rss():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) // 1024
blocks = [bytes(64 * 1024) for _ in range(1600)]  # 100 MiB from the heap (below the mmap threshold)
kept = blocks[::8]  # every eighth stays: the rest are holes the heap cannot shrink past
del blocks
before = rss()
main.trim_heap()
print(before - rss())
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    if done.stdout.strip() != "no glibc":
        assert int(done.stdout) >= 50, done.stdout  # MiB given back of the 87 freed

# --- validate -------------------------------------------------------------

def test_validate_counts_the_work(tmp_path, capsys):
    status, out, err = run_main(capsys, "validate", write_config(tmp_path))
    assert status == 0 and err == ""
    assert "pairs:   4 in 2 families: identity 1, jpeg 3" in out
    assert "hashers: aHash" in out and "images:  1: builtin:astronaut" in out


def test_validate_notes_the_fallback_image(tmp_path, capsys):
    config = tmp_path / "fallback.yaml"
    config.write_text(f"images: [{tmp_path / 'absent.tif'}]\nfallback_image: builtin:camera\n"
                      "hashers: [aHash]\nsweeps: [{family: gray, b: grayscale}]\n")
    status, out, _ = run_main(capsys, "validate", str(config))
    assert status == 0 and "images:  1: builtin:camera" in out and "note: " in out


def test_validate_bad_config_is_one_line_and_status_2(tmp_path, capsys):
    status, out, err = run_main(capsys, "validate", write_config(tmp_path, values="[10, 200]"))
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "sweeps[1].b.jpeg.quality: 200 must be <= 100" in err


# --- plugins --------------------------------------------------------------

def test_plugin_example_validates(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    status, out, _ = run_main(capsys, "validate", PLUGINS_YAML)
    assert status == 0
    assert "vignette 4" in out and COLOR_HISTOGRAM in out


def test_plugin_example_runs_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["run", PLUGINS_YAML, "--out", str(tmp_path), "--quiet"]) == 0
    distances = pd.read_csv(tmp_path / "distances.csv", keep_default_na=False)
    assert {"aHash", COLOR_HISTOGRAM, "ColorHistogram-4bins"} <= set(distances["hasher"])
    assert (distances["error"] == "").all()
    vignette = distances[(distances["family"] == "vignette") & (distances["hasher"] == COLOR_HISTOGRAM)]
    assert vignette["distance"].is_monotonic_increasing and vignette["distance"].iloc[-1] > 0
    hashers = pd.read_csv(tmp_path / "hashers.csv", keep_default_na=False)
    assert set(hashers.loc[hashers["name"] == COLOR_HISTOGRAM, "distance_max"]) == {2.0}
    assert VIGNETTE in json.dumps(json.loads((tmp_path / "run.json").read_text())["config"]["sweeps"])


def test_color_histogram_spans_its_distance_range():
    from examples.plugins import ColorHistogram

    black, white = np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 255, np.uint8)
    hashes = ColorHistogram().hash_batch([black, white, black])
    assert np.allclose(hashes.sum(axis=1), 1)
    assert list(ColorHistogram().distance(hashes[:2], hashes[1:])) == [ColorHistogram.distance_max, 2.0]
    assert ColorHistogram().hash_batch([]).shape == (0, 24)


@pytest.mark.parametrize("hashers, side, key, problem", [
    ("[aHash, no_such_package.hashers:Thing]", "{gamma: {gamma: $value}}", "hashers[1].name",
     "hasher plugin 'no_such_package.hashers:Thing': cannot import module 'no_such_package.hashers': "
     "no module named 'no_such_package'"),
    ("[aHash]", "{'examples.plugins:vignete': {strength: $value}}", "sweeps[1].b",
     "transform plugin 'examples.plugins:vignete': module 'examples.plugins' has no attribute 'vignete'; "
     "did you mean 'vignette'?"),
])
def test_plugin_that_cannot_be_imported_is_one_line_and_status_2(tmp_path, monkeypatch, capsys,
                                                                  hashers, side, key, problem):
    monkeypatch.chdir(ROOT)
    config = write_config(tmp_path, hashers=hashers, side=side, values="[0.5]")
    status, out, err = run_main(capsys, "validate", "--import-plugins", config)
    assert status == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(f"error: {config}: {key}: {problem}")


def test_plugin_is_found_from_the_current_directory(tmp_path, monkeypatch, capsys):
    """As for an installed `harness` script, whose sys.path lacks the directory it runs in."""
    module = f"cwd_plugin_{tmp_path.name}"
    (tmp_path / f"{module}.py").write_text("def invert(image):\n    return 255 - image\n")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "cwd.yaml"
    config.write_text(f"images: [builtin:astronaut]\nhashers: [aHash]\n"
                      f"sweeps: [{{family: invert, b: '{module}:invert'}}]\n")
    status, out, err = run_main(capsys, "validate", "--import-plugins", "cwd.yaml")
    assert status == 0, err
    assert f"plugins: imported and checked: {module}:invert" in out
    assert "invert 1" in out


@pytest.mark.parametrize("kind,name,problem", [
    ("hasher", "examples.plugins:vignette", "hasher plugin 'examples.plugins:vignette' must be a subclass of"),
    ("transform", "examples.plugins:ColorHistogram",
     "transform plugin 'examples.plugins:ColorHistogram' must be a function"),
])
def test_plugin_breaking_the_contract_is_a_config_error(kind, name, problem, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    config = tmp_path / "c.yaml"
    config.write_text("images: [builtin:astronaut]\n" + (
        f"hashers: ['{name}']\nsweeps: [{{family: identity}}]\n" if kind == "hasher" else
        f"hashers: [aHash]\nsweeps: [{{family: x, b: '{name}'}}]\n"))
    assert main(["validate", "--import-plugins", str(config)]) == 2
    assert problem in capsys.readouterr().err


@pytest.mark.parametrize("command", [["run", "configs/lena.yaml"], ["leaks", "--train", "a", "--test", "b"]])
def test_cache_and_no_cache_together_are_a_usage_error(command, capsys):
    """Each names where the hashes go; taking one silently would drop what the other asked for."""
    with pytest.raises(SystemExit) as stop:
        main([*command, "--cache", "elsewhere.sqlite", "--no-cache"])
    assert stop.value.code == 2
    assert "--no-cache: not allowed with argument --cache" in capsys.readouterr().err
