"""The `list` and `validate` subcommands, and plugins named by import path in a config."""

import json
import os
import re
import subprocess
import sys

import cv2
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
    # the one distance that is not the same both ways (Hasher.symmetric), and which side is the original
    assert " ".join(out.split()).count("one-sided: d(a, b) != d(b, a), the original is a") == 1
    assert "quality: int in [1, 100]  JPEG quality" in out  # a parameter: type, range, doc
    assert "\ngeometry: " in out and "\ncodecs: " in out  # transforms grouped by kind


@pytest.mark.parametrize("which, registry, other", [("hashers", HASHERS, TRANSFORMS),
                                                    ("transforms", TRANSFORMS, HASHERS)])
def test_list_one_registry(capsys, which, registry, other):
    status, out, _ = run_main(capsys, "list", which)
    names = entry_names(out)
    assert status == 0 and set(registry) <= names and not (set(other) - set(registry)) & names


@pytest.mark.parametrize("which", [None, "hashers", "transforms"])
def test_list_says_where_plugins_are_listed(capsys, which):
    """`list` shows no plugin (it reads no config, so imports none): a user looking for their own
    hasher there found nothing, and neither its output nor `list --help` said why or where to look."""
    status, out, _ = run_main(capsys, "list", *([which] if which else []))
    said = "plugins (package.module:Name) are listed by `python -m harness validate CONFIG --import-plugins`"
    assert status == 0 and " ".join(out.split()).count(said) == (2 if which is None else 1)
    help_text = subprocess.run([sys.executable, "-m", "harness", "list", "--help"], cwd=ROOT, capture_output=True,
                               text=True, env={**os.environ, "COLUMNS": "200"}).stdout
    assert "A plugin (package.module:Name) is not listed" in help_text
    assert "`validate CONFIG --import-plugins` lists a config's plugins" in help_text


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
import harness.heap as heap
if heap._glibc() is None:
    print("no glibc"); raise SystemExit
def rss():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) // 1024
blocks = [bytes(64 * 1024) for _ in range(1600)]  # 100 MiB from the heap (below the mmap threshold)
kept = blocks[::8]  # every eighth stays: the rest are holes the heap cannot shrink past
del blocks
before = rss()
heap.trim_heap()
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


def test_validate_import_plugins_describes_each_plugin_as_list_does(monkeypatch, capsys):
    """`list` shows only the built-ins: a plugin's distance kind, distance_max and parameters, as harness
    reads them from its code, were shown nowhere before a run wrote hashers.csv."""
    monkeypatch.chdir(ROOT)
    status, out, _ = run_main(capsys, "validate", PLUGINS_YAML, "--import-plugins")
    assert status == 0
    listed = out[out.index("  plugins: imported and checked: "):].splitlines()[1:]
    assert all(line.startswith("    ") for line in listed if line)  # under the plugins line
    assert " ".join(" ".join(listed).split()) == (  # (wrapped to the terminal's width)
        f"{VIGNETTE} Darken towards the corners: pixels times 1 - strength * r**2, r = 0 at the centre, 1 at a "
        "corner. strength: float in [0, 1] = 0.5 darkening at the corners: 0 none, 1 black "
        f"{COLOR_HISTOGRAM} histograms of B, G and R, `bins` each, together normalised to sum 1 "
        "distance: L1, distance_max 2 bins: int in [2, 256] = 8 histogram bins per channel")
    status, out, _ = run_main(capsys, "validate", PLUGINS_YAML)  # not imported: nothing of theirs is read
    assert status == 0 and "distance_max" not in out


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


@pytest.mark.parametrize("command", ["run", "validate"])
def test_images_before_the_config_says_that_it_took_the_config(command, capsys):
    """--images takes every path after it: "the following arguments are required: CONFIG" named a
    config the user had given. The line says why, and `--` ends its paths."""
    with pytest.raises(SystemExit) as stop:
        main([command, "--images", "builtin:coffee", "configs/collection.yaml"])
    assert stop.value.code == 2
    assert "required: CONFIG (--images takes every path after it, the config's too: give CONFIG before --images, " \
        "or end its paths with --)" in capsys.readouterr().err
    if command == "validate":
        assert main([command, "--images", "builtin:coffee", "--", "configs/collection.yaml"]) == 0


# --- repeated options ------------------------------------------------------

@pytest.mark.parametrize("command", [["run", "c.yaml"], ["validate", "c.yaml"]])
def test_a_list_option_given_twice_keeps_both(command):
    """argparse keeps only the last occurrence of an option: the first list was dropped in silence."""
    from harness.__main__ import build_parser
    from harness.commands import hasher_list

    args = build_parser().parse_args([*command, "--images", "a", "b", "--hashers", "aHash, pHash", "--images", "c",
                                      "--hashers", "PDQ"])
    assert args.images == ["a", "b", "c"]
    assert hasher_list(args.hashers) == ["aHash", "pHash", "PDQ"]


def test_validate_counts_the_images_of_every_images_option(tmp_path, capsys):
    status, out, _ = run_main(capsys, "validate", write_config(tmp_path), "--images", "builtin:camera",
                              "--images", "builtin:coffee")
    assert status == 0 and "images:  2: builtin:camera, builtin:coffee" in out, out


# --- the output directory and the name ------------------------------------

@pytest.mark.parametrize("out, what", [(".", "the current directory"), ("{here}", "the current directory"),
                                       ("..", "a folder above the current directory")])
@pytest.mark.parametrize("command", [["run", "CONFIG"], ["leaks", "--train", "builtin:camera", "--test",
                                                         "builtin:coffee", "--threshold", "8"]])
def test_the_current_directory_or_one_above_is_refused_as_output_before_any_work(tmp_path, capsys, monkeypatch,
                                                                               out, what, command):
    """`--out .` did all the work, then could not replace the directory (and said a rerun would do);
    `--out "$PWD"` replaced it, moving the folder the shell stood in away."""
    here = tmp_path / "work"
    here.mkdir()
    monkeypatch.chdir(here)
    argv = [write_config(tmp_path) if arg == "CONFIG" else arg for arg in command]
    status, out_text, err = run_main(capsys, *argv, "--out", out.format(here=here), "--quiet")
    assert status == 2 and out_text == "", err
    assert err.startswith(f"error: {out.format(here=here)}: the output directory is {what}, which the outputs would "
                          "replace whole; give a new folder"), err
    assert os.listdir(here) == [] and set(os.listdir(tmp_path)) <= {"config.yaml", "work"}


PLAIN_NAME = "name: expected a plain name, without '/' (the outputs go to reports/NAME, unless output is given)"


@pytest.mark.parametrize("line, message", [
    ("output: ''", "output: empty; give a directory, or leave output out for reports/NAME"),
    ("output: '  '", "output: empty; give a directory"),
    ("name: ''", "name: expected a name (it titles the summary), got ''"),
    ("name: a/b", f"{PLAIN_NAME}, got 'a/b'"),
    ("name: ../../escape", PLAIN_NAME),
    ("name: '..'", PLAIN_NAME),
])
def test_an_empty_output_or_a_name_that_is_no_plain_name_is_refused(tmp_path, capsys, line, message):
    """`output: ''` wrote into the current directory; `name: ''` into reports/ itself; `name: a/b` nested it."""
    config = write_config(tmp_path)
    with open(config, "a") as handle:
        handle.write(line + "\n")
    status, out, err = run_main(capsys, "validate", config)
    assert status == 2 and err.startswith(f"error: {config}: {message}"), err
    leak_config = tmp_path / "audit.yaml"
    leak_config.write_text(f"splits: {{train: [builtin:camera], test: [builtin:coffee]}}\nthreshold: 8\n{line}\n")
    status, out, err = run_main(capsys, "leaks", str(leak_config), "--quiet")
    assert status == 2 and err.startswith(f"error: {leak_config}: {message}"), err


@pytest.mark.parametrize("command", [["validate"], ["run", "--quiet"]])
def test_an_images_option_that_names_nothing_is_named_as_the_option(tmp_path, capsys, monkeypatch, command):
    """The config's file and key were blamed for a path the user typed on the command line."""
    monkeypatch.chdir(tmp_path)  # run's default output, reports/NAME, goes here
    pattern = str(tmp_path / "nomatch*" / "*.png")
    status, _, err = run_main(capsys, command[0], write_config(tmp_path), *command[1:], "--images", "builtin:camera",
                              pattern)
    assert status == 2 and err == f"error: --images: no files match '{pattern}'\n", err


def test_the_apis_images_argument_is_named_when_it_names_nothing(tmp_path):
    import harness

    pattern = str(tmp_path / "nomatch*" / "*.png")
    with pytest.raises(harness.ConfigError, match=r"^images: no files match "):
        harness.evaluate(write_config(tmp_path), images=[pattern])


def test_validate_refuses_an_output_directory_that_run_refuses_and_writes_nothing(tmp_path, capsys):
    """validate said valid, and run refused before any work: the output inside the image folder."""
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    config = tmp_path / "inside.yaml"
    config.write_text(f"images: ['{photos}']\noutput: '{photos / 'report'}'\nhashers: [aHash]\n"
                      "sweeps: [{family: g, b: grayscale}]\n")
    status, out, err = run_main(capsys, "validate", str(config))
    assert status == 2 and out == ""
    assert err.startswith(f"error: {photos / 'report'}: the output directory is inside the image folder {photos} "
                          "(images[0])"), err
    assert os.listdir(photos) == ["a.png"]


@pytest.mark.parametrize("command, name", [
    (["run", "CONFIG", "--images", "PHOTOS"], "--images"),
    (["validate", "CONFIG", "--images", "PHOTOS"], "--images"),
    (["leaks", "--train", "builtin:camera", "--test", "PHOTOS", "--threshold", "8"], "--test"),
    (["leaks", "AUDIT", "--threshold", "8"], "splits.test[0]"),
    (["validate", "AUDIT"], "splits.test[0]"),
])
def test_an_output_inside_an_image_folder_names_where_the_folder_was_given(tmp_path, capsys, command, name):
    """The message said images[0] for a folder given with --images (or --test), a key the user never wrote."""
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    audit = tmp_path / "audit.yaml"
    audit.write_text(f"splits: {{train: [builtin:camera], test: ['{photos}']}}\nthreshold: 8\n"
                     f"output: '{photos / 'report'}'\n")
    config = write_config(tmp_path)
    with open(config, "a", encoding="utf-8") as handle:
        handle.write(f"output: '{photos / 'report'}'\n")
    given = {"CONFIG": config, "PHOTOS": str(photos), "AUDIT": str(audit)}
    out = ["--out", str(photos / "report")] if "--train" in command else []
    status, _, err = run_main(capsys, *[given.get(word, word) for word in command], *out)
    assert status == 2 and err == (f"error: {photos / 'report'}: the output directory is inside the image folder "
                                   f"{photos} ({name}), so the next run would read its figures as images; write the "
                                   "outputs elsewhere\n"), err
    assert os.listdir(photos) == ["a.png"]


def test_validate_checks_a_leak_audits_config_with_the_audits_parser(tmp_path, capsys, monkeypatch):
    """A config with splits (the config.yaml an audit writes too) was refused: "splits: unknown key"."""
    monkeypatch.chdir(tmp_path)
    audit = tmp_path / "audit.yaml"
    audit.write_text("splits: {train: [builtin:camera, builtin:moon], test: [builtin:coffee]}\n"
                     "hashers: [aHash, pHash]\nthreshold: {aHash: 6, pHash: 8}\n")
    status, out, err = run_main(capsys, "validate", str(audit))
    assert (status, err) == (0, "")
    assert out == (f"{audit}: valid leak audit (leaks)\n  splits:  train: 2 files, test: 1 file\n"
                   "  hashers: aHash, pHash; threshold aHash <= 6, pHash <= 8\n")
    assert run_main(capsys, "leaks", str(audit), "--out", "first", "--quiet")[0] == 0
    status, out, _ = run_main(capsys, "validate", str(tmp_path / "first" / "config.yaml"), "--hashers", "pHash")
    assert status == 0 and "hashers: pHash; threshold pHash <= 8" in out, out
    audit.write_text("splits: {train: [builtin:camera], test: [nothere.png]}\ntreshold: 8\n")
    status, out, err = run_main(capsys, "validate", str(audit))
    assert status == 2 and err == f"error: {audit}: treshold: unknown key; did you mean 'threshold'?\n"
    audit.write_text("splits: {train: [builtin:camera], test: [nothere.png]}\nthreshold: 8\n")
    status, out, err = run_main(capsys, "validate", str(audit))
    assert status == 2 and err == f"error: {audit}: splits.test[0]: no image file at 'nothere.png'\n", err
    assert sorted(os.listdir(tmp_path)) == ["audit.yaml", "first"]  # validate wrote nothing


def test_validate_imports_no_plugin_of_a_leak_audits_config_unless_asked(tmp_path, capsys, monkeypatch):
    """validate promises to run no plugin code without --import-plugins: a leak config's too."""
    module = f"leak_plugin_{tmp_path.name}"
    marker = tmp_path / "imported"
    (tmp_path / f"{module}.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nfrom harness.hashers.imagehash import AverageHash as Hasher\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    audit = tmp_path / "audit.yaml"
    audit.write_text(f"splits: {{train: [builtin:camera], test: [builtin:coffee]}}\n"
                     f"hashers: [aHash, '{module}:Hasher']\nthreshold: 8\n")
    status, out, err = run_main(capsys, "validate", str(audit))
    assert (status, err) == (0, "") and not marker.exists()
    assert f"plugins: not imported: {module}:Hasher (hashers[1].name); `leaks` imports them" in out, out


def test_a_name_with_a_slash_is_a_title_where_an_output_is_given(tmp_path, capsys):
    config = write_config(tmp_path)
    with open(config, "a") as handle:
        handle.write("name: before/after\n")
    status, _, err = run_main(capsys, "run", config, "--out", str(tmp_path / "out"), "--quiet")
    assert status == 0, err
    assert "# before/after" in (tmp_path / "out" / "summary.md").read_text()


@pytest.mark.parametrize("command", [["run", "configs/lena.yaml"],
                                     ["leaks", "--train", "builtin:camera", "--test", "builtin:coffee"]])
def test_workers_with_a_scheduler_is_a_usage_error(command, capsys):
    """On a cluster its workers do the work: --workers was ignored there without a word."""
    with pytest.raises(SystemExit) as stopped:
        main([*command, "--workers", "4", "--scheduler", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.count("\n") == 1, err
    assert "argument --scheduler: not allowed with argument --workers" in err


def test_validate_names_what_a_leak_config_lacks_and_what_it_can_do(tmp_path, capsys):
    """A leak config whose splits come from `leaks --train/--test` was checked as a run's config
    ("threshold: unknown key"); validate's advice named --min-agree, which validate does not have."""
    audit = tmp_path / "audit.yaml"
    audit.write_text("hashers: [aHash, pHash]\nthreshold: {aHash: 5, pHash: 8}\n")
    status, out, err = run_main(capsys, "validate", str(audit))
    assert status == 2 and err.count("\n") == 1 and err.startswith(f"error: {audit}: splits: none: "), err
    audit.write_text("splits: {train: [builtin:camera], test: [builtin:coffee]}\nhashers: [aHash, pHash]\n"
                     "threshold: 8\nmin_agree: 2\n")
    status, out, err = run_main(capsys, "validate", str(audit), "--hashers", "pHash")
    assert status == 2 and err.rstrip().endswith("choose more hashers"), err
    # Keys both kinds of config have, and nothing else: read as a run's, and the line says what an audit's needs.
    audit.write_text("name: x\nhashers: [pHash]\n")
    status, out, err = run_main(capsys, "validate", str(audit))
    assert status == 2 and err == (f"error: {audit}: images: missing; a config needs images, sweeps and hashers "
                                   "(a leak audit's config needs splits: python -m harness leaks CONFIG)\n"), err


def test_a_name_with_a_slash_is_only_a_title_in_the_api():
    """The API writes only where `save` is told: the name never names a folder there."""
    import harness

    config = {"name": "my run / v2", "images": ["builtin:camera"], "hashers": ["aHash"],
              "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": 50}}}]}
    assert harness.evaluate(config).config["name"] == "my run / v2"


# --- run's last line --------------------------------------------------------

@pytest.mark.parametrize("csv_max_rows, table", [(None, "distances.csv"), (2, "distances.parquet")])
def test_run_names_the_distance_table_it_wrote(tmp_path, capsys, monkeypatch, csv_max_rows, table):
    """Above storage.CSV_MAX_ROWS rows (a million; lowered here to reach it with one image) the distance
    table is written as Parquet only, and `run` said "wrote ... distances.csv" all the same."""
    from harness import storage

    if csv_max_rows is not None:
        monkeypatch.setattr(storage, "CSV_MAX_ROWS", csv_max_rows)
    out = tmp_path / "out"
    status, printed, _ = run_main(capsys, "run", write_config(tmp_path), "--out", str(out), "--no-cache",
                                  "--workers", "1")
    assert status == 0
    assert f"wrote {out}/ (summary.md, table.csv, {table}, figures/)" in printed, printed
    assert (out / table).is_file()
    assert (out / "distances.csv").is_file() == (table == "distances.csv")


def test_validate_names_the_first_families_only(tmp_path, capsys):
    """Was: every family on one line (110 KB for 10,000 single-pair families)."""
    sweeps = "\n".join(f"  - {{family: f{k}, b: {{jpeg: {{quality: {10 + k % 80}}}}}}}" for k in range(1000))
    config = tmp_path / "many.yaml"
    config.write_text(f"name: many\nimages: [builtin:astronaut]\nhashers: [aHash]\nsweeps:\n{sweeps}\n")
    status, out, _ = run_main(capsys, "validate", str(config))
    assert status == 0
    line = next(line for line in out.splitlines() if line.startswith("  pairs:"))
    assert len(line) < 1000 and line.endswith(" more")
    from harness.commands import VALIDATE_FAMILIES

    named = ", ".join(f"f{k} 1" for k in range(VALIDATE_FAMILIES))
    assert line == f"  pairs:   1000 in 1000 families: {named}, and {1000 - VALIDATE_FAMILIES:,} more"


def test_progress_to_a_log_file_is_a_line_a_minute_not_a_bar(tmp_path, capsys, monkeypatch):
    """With stderr a file or a pipe (`run ... 2> log`, nohup), tqdm's bar was off and a long job's
    log said nothing until its end; a bar there would be one line of carriage returns. A pass that
    lasts longer than LOG_EVERY writes whole lines, and a last one with its total; a shorter one
    writes none (here LOG_EVERY is 0: a line per image). Only in the command-line process (here
    main() is called in this one, so it is marked as one): a Python session's progress=None stays a
    bar on a terminal, else nothing."""
    import harness
    import harness.process
    import harness.runner

    folder = tmp_path / "imgs"
    folder.mkdir()
    for seed in range(3):
        cv2.imwrite(str(folder / f"p{seed}.png"), np.random.default_rng(seed).integers(0, 256, (40, 40, 3), np.uint8))
    config = write_config(tmp_path)
    monkeypatch.setattr(harness.process, "_enabled", True)
    # Not its signal rule: SIG_IGN set in this test process outlived the test, and a later test's
    # subprocess inherited an ignored SIGINT (its Ctrl-C test then ran to the end, status 0).
    monkeypatch.setattr(harness.process, "outputs_final", lambda: None)
    status, _, err = run_main(capsys, "run", config, "--images", str(folder), "--out", str(tmp_path / "short"),
                              "--no-cache")
    assert status == 0 and "images [" not in err  # shorter than a minute: no line
    monkeypatch.setattr(harness.runner, "LOG_EVERY", 0.0)
    status, _, err = run_main(capsys, "run", config, "--images", str(folder), "--out", str(tmp_path / "out"),
                              "--no-cache")
    assert status == 0 and "\r" not in err
    lines = [line for line in err.splitlines() if " images [" in line]
    assert lines[0].startswith("harness:   0% 0/3 images [00:00 elapsed, ")
    assert lines[-1].startswith("harness: 100% 3/3 images [") and lines.count(lines[-1]) == 1
    assert len(lines) >= 3 and sum(" 3/3 " in line for line in lines) == 1  # the total once
    status, _, err = run_main(capsys, "run", config, "--images", str(folder), "--out", str(tmp_path / "quiet"),
                              "--no-cache", "--quiet")
    assert status == 0 and "images [" not in err  # --quiet: none
    monkeypatch.setattr(harness.process, "_enabled", False)
    harness.evaluate(config, images=str(folder), progress=None)
    assert capsys.readouterr().err == ""  # the API's None: no terminal, no progress


def test_list_says_which_distance_maximum_is_no_bound(capsys):
    """ColorMomentHash's "distance_max 100" read as a bound; distances of 107 and 113 were measured."""
    status, out, _ = run_main(capsys, "list", "hashers")
    listing = " ".join(out.split())
    assert status == 0 and "distance: 10000*L2, distance_max 100 (a scale, not a bound: farther distances count " \
                           "as 1 normalised)" in listing
    assert listing.count("not a bound") == 1  # every other maximum is one


def test_text_the_terminal_cannot_encode_is_escaped_not_a_crash(tmp_path, synthetic_file):
    """Under an ASCII terminal (PYTHONIOENCODING=ascii, or LC_ALL=C without UTF-8 mode) a label with
    'é' and '–' had ended a finished run with exit 3 ("a bug in harness") as its table was printed.
    It is printed with backslash escapes, and run.json records the encodings the run had."""
    config = tmp_path / "c.yaml"
    config.write_text(f"images: [{synthetic_file}]\nhashers: [aHash]\nsweeps:\n  - family: jpeg\n"
                      "    b: {jpeg: {quality: $value}}\n    values: [50]\n    label: 'Qualité {value} – ü'\n",
                      encoding="utf-8")
    env = {**os.environ, "PYTHONIOENCODING": "ascii", "PYTHONPATH": ROOT}
    for command in (["run", str(config), "--out", str(tmp_path / "out"), "--no-cache"], ["validate", str(config)],
                    ["report", str(tmp_path / "out")]):
        done = subprocess.run([sys.executable, "-m", "harness", *command], env=env, capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr.decode()[-500:]
        assert command[0] == "validate" or b"Qualit\\xe9 50 \\u2013 \\xfc" in done.stdout, command
    text = json.loads((tmp_path / "out" / "run.json").read_text())["text"]
    assert text["stdout_encoding"] == "ascii" and text["environment"]["PYTHONIOENCODING"] == "ascii"


def test_a_plugin_named_with_a_dot_is_told_the_colon():
    """`mymodule.func` (a dot where the colon goes) was "unknown transform" with a poor suggestion."""
    from harness.registry import UnknownName

    with pytest.raises(UnknownName, match=r"a plugin is named as module:name, with a colon: 'mymodule:func'\?"):
        TRANSFORMS.get("mymodule.func")
    with pytest.raises(UnknownName, match=r"did you mean 'imagehash.average_hash'\?"):  # a built-in's typo
        HASHERS.get("imagehash.average_hsh")


def test_report_says_when_the_previews_its_set_listed_are_gone(tmp_path, capsys):
    """A set copied without previews.png (the article's, whose image may not be redistributed, from a
    clean clone) was rebuilt without the summary's previews section, and nothing said so."""
    import harness

    out = tmp_path / "out"
    harness.evaluate({"images": ["builtin:coffee", "builtin:camera"], "hashers": ["aHash"],
                      "sweeps": [{"family": "gray", "b": "grayscale"}], "report": {"previews": True}}).save(out)
    code, _, err = run_main(capsys, "report", str(out))
    assert code == 0 and "note:" not in err  # all there: nothing to say
    (out / "previews.png").unlink()
    code, _, err = run_main(capsys, "report", str(out))
    assert code == 0
    assert err.strip().splitlines()[-1] == (
        f"note: previews.png, which the set's run listed, is not in {out}: summary.md no longer shows the edits (report "
        "cannot draw them again: they are thumbnails of the images; run the config again for them)")
    assert "![previews]" not in (out / "summary.md").read_text()
    assert "previews.png" not in json.loads((out / "run.json").read_text())["files"]
    code, _, err = run_main(capsys, "report", str(out))  # said once: the set no longer lists it
    assert code == 0 and "note:" not in err


def test_previews_kept_local_are_drawn_and_linked_from_no_summary(tmp_path, capsys):
    """The committed reports/article showed `![previews](previews.png)`, which git ignores (the image may
    not be redistributed): a broken image for every reader of it. `report: {previews: local}` draws the
    file as `true` does, and the summary says where it is and how to make it, without linking it: the
    same summary where the file is and where a copy left it out."""
    import harness

    out = tmp_path / "out"
    config = {"images": ["builtin:coffee", "builtin:camera"], "hashers": ["aHash"],
              "sweeps": [{"family": "gray", "b": "grayscale"}], "report": {"previews": "local"}}
    harness.evaluate(config).save(out)
    summary = (out / "summary.md").read_text()
    assert (out / "previews.png").is_file() and "previews.png" in json.loads((out / "run.json").read_text())["files"]
    assert "](previews.png)" not in summary
    assert ("`previews.png` shows side B of every pair for the first image (coffee) as thumbnails, where the run was "
            "made. It is not shown here: the config keeps it local (`report: {previews: local}`") in summary
    assert "`python -m harness run DIR/config.yaml` draws it again" in summary
    assert "previews: local" in (out / "config.yaml").read_text()
    (out / "previews.png").unlink()
    code, _, err = run_main(capsys, "report", str(out))
    assert code == 0 and "note:" not in err  # nothing lost: the summary never showed it
    assert (out / "summary.md").read_text() == summary
    with pytest.raises(harness.ConfigError, match=r"^<dict>: report.previews: expected true, false or local, got 'yes'$"):
        harness.evaluate({**config, "report": {"previews": "yes"}})


def test_report_writes_the_config_a_set_lost_again(tmp_path, capsys):
    """A set copied without config.yaml was rebuilt with a summary saying "the resolved config is in
    `config.yaml`", which was not there; it is written again from run.json's config, as the run wrote it."""
    import harness

    out = tmp_path / "out"
    harness.evaluate({"images": ["builtin:coffee", "builtin:camera"], "hashers": ["aHash"],
                      "sweeps": [{"family": "gray", "b": "grayscale"}]}).save(out)
    written = (out / "config.yaml").read_text()
    (out / "config.yaml").unlink()
    code, _, _ = run_main(capsys, "report", str(out))
    assert code == 0
    assert (out / "config.yaml").read_text() == written
    assert "config.yaml" in json.loads((out / "run.json").read_text())["files"]
