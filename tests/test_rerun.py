"""A rerun of an unchanged run: it keeps the set already in its directory (tables and figures, not
drawn again) only when it computed its results with that directory's own hash cache; otherwise it
trusts nothing it finds there. When even the inputs of its tables are unchanged (config, code,
versions, every image's hashes), it makes no table at all: neither pandas nor matplotlib is loaded."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import yaml

from harness.__main__ import main

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
print("pandas loaded:", "pandas" in sys.modules)
print("matplotlib loaded:", "matplotlib" in sys.modules)
sys.exit(code)
"""

FIGURE = os.path.join("figures", "detection.png")


def run(tmp_path, out, *options, fpr="0.1", config_text=CONFIG, status=0, quiet=True):
    """Runs the command; returns whether it loaded matplotlib (drew), and `.pandas`/`.stdout` on the side."""
    config = tmp_path / "rerun.yaml"
    config.write_text(config_text.replace("FPR", fpr))
    done = subprocess.run([sys.executable, "-c", RUN, "run", str(config), "--out", str(out),
                           *(["--quiet"] if quiet else []), "--workers", "1", *options],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == status, done.stderr
    lines = done.stdout.strip().splitlines()
    run.pandas = lines[-2] == "pandas loaded: True"
    run.stdout = "\n".join(lines[:-2])
    return lines[-1] == "matplotlib loaded: True"


def saved_set(out) -> dict:
    """Every file of an output set but the hash cache, by path."""
    return {str(path.relative_to(out)): path.read_bytes() for path in sorted(out.rglob("*"))
            if path.is_file() and not path.name.startswith("hash-cache")}


def without_provenance(summary: bytes) -> bytes:
    return summary.rpartition(b"\n## Provenance\n")[0]


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


def test_an_unchanged_rerun_keeps_the_whole_set_without_making_a_table(tmp_path):
    out = tmp_path / "out"
    run(tmp_path, out)
    first = saved_set(out)
    assert not run(tmp_path, out) and not run.pandas  # nothing made: neither pandas nor matplotlib loaded
    kept = saved_set(out)
    assert kept.keys() == first.keys()
    fresh = {"run.json", "config.yaml", "summary.md"}
    assert {name: data for name, data in kept.items() if name not in fresh} == {
        name: data for name, data in first.items() if name not in fresh}
    assert without_provenance(kept["summary.md"]) == without_provenance(first["summary.md"])
    record = json.loads(kept["run.json"])
    assert record["date"] in kept["summary.md"].decode() and record["files"] == json.loads(first["run.json"])["files"]
    # What was kept is what a run that trusts nothing (no cache) makes anew, byte for byte.
    assert run(tmp_path, out, "--no-cache") and run.pandas
    remade = saved_set(out)
    assert {name: data for name, data in remade.items() if name not in fresh} == {
        name: data for name, data in kept.items() if name not in fresh}
    assert without_provenance(remade["summary.md"]) == without_provenance(kept["summary.md"])


def photo_config(tmp_path, seed: int) -> tuple:
    """Three random photographs in a folder of their own, and CONFIG run on them."""
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(seed)
    for k in range(3):
        cv2.imwrite(str(images / f"photo{k}.png"), rng.integers(0, 256, (40, 50, 3), dtype=np.uint8))
    return images, CONFIG.replace("[builtin:astronaut, builtin:camera, builtin:coffee]", f"['{images}/*.png']")


def test_the_console_table_and_exit_status_are_the_same_when_the_set_is_kept(tmp_path):
    images, config = photo_config(tmp_path, 0)
    (images / "broken.png").write_bytes(b"not an image")  # one problem: exit status 1, both times
    out = tmp_path / "out"
    run(tmp_path, out, config_text=config, status=1, quiet=False)
    first = run.stdout
    assert run.pandas and "wrote" in first
    run(tmp_path, out, config_text=config, status=1, quiet=False)
    assert not run.pandas and "kept" in run.stdout
    assert run.stdout.partition("\n\n")[0] == first.partition("\n\n")[0]  # the same table


def test_a_changed_image_makes_the_set_anew(tmp_path):
    images, config = photo_config(tmp_path, 1)
    out = tmp_path / "out"
    run(tmp_path, out, config_text=config)
    distances = read(out, "distances.csv")
    # The same pixels in another encoding: the same tables, so the set is kept.
    pixels = cv2.imread(str(images / "photo0.png"))
    cv2.imwrite(str(images / "photo0.png"), pixels, [cv2.IMWRITE_PNG_COMPRESSION, 0])
    run(tmp_path, out, config_text=config)
    assert not run.pandas
    cv2.imwrite(str(images / "photo0.png"), 255 - pixels)  # other pixels: made anew
    run(tmp_path, out, config_text=config)
    assert run.pandas and read(out, "distances.csv") != distances


def test_a_summary_without_its_provenance_section_is_made_anew(tmp_path):
    out = tmp_path / "out"
    run(tmp_path, out)
    summary = read(out, "summary.md")
    (out / "summary.md").write_bytes(without_provenance(summary))
    # The tables are made again (pandas); being the same, the figures are kept, not drawn (matplotlib).
    assert not run(tmp_path, out)
    assert run.pandas and without_provenance(read(out, "summary.md")) == without_provenance(summary)


def test_an_edited_summary_is_made_anew_not_kept(tmp_path):
    """The summary's body was kept by an unchanged rerun whatever it had become (its provenance
    rewritten), and recorded in run.json as the set's own."""
    out = tmp_path / "out"
    run(tmp_path, out)
    summary = read(out, "summary.md")
    (out / "summary.md").write_bytes(summary.replace(b"#", b"# EDITED", 1)[:len(summary) // 2] + b"\n" +
                                     summary[summary.index(b"\n## Provenance"):])
    run(tmp_path, out)
    assert run.pandas and without_provenance(read(out, "summary.md")) == without_provenance(summary)


def test_an_emptied_or_cut_table_is_made_anew(tmp_path):
    """run.json records each file's size: a damaged table is not kept on the strength of its name."""
    out = tmp_path / "out"
    run(tmp_path, out)
    distances, figure = read(out, "distances.parquet"), read(out, FIGURE)
    (out / "distances.parquet").write_bytes(b"")
    (out / FIGURE).write_bytes(read(out, FIGURE)[:100])
    assert run(tmp_path, out) and run.pandas  # the tables made and the figures drawn again
    assert read(out, "distances.parquet") == distances and read(out, FIGURE) == figure


def test_a_table_edited_in_place_at_its_size_is_made_anew(tmp_path):
    """run.json records each file's digest too: a distance changed by hand (9 for 0, the size the
    same) is not kept as the run's result."""
    out = tmp_path / "out"
    run(tmp_path, out)
    distances = read(out, "distances.csv")
    rows = distances.decode().splitlines()
    changed = [rows[0]] + [row.replace(",0,", ",9,", 1) if ",0," in row else row for row in rows[1:]]
    assert changed != rows
    (out / "distances.csv").write_text("\n".join(changed) + "\n")
    assert len(read(out, "distances.csv")) == len(distances)
    run(tmp_path, out)
    assert run.pandas and read(out, "distances.csv") == distances  # made again, as the run gives it


PLUGIN = '''
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from harness.hashers.base import Hasher


def darken(image, amount: int = 40):
    return np.clip(image.astype(np.int16) - amount * FACTOR, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class MeanHash(Hasher):
    name = "rerunplug:MeanHash"
    description = "the mean of each channel"
    distance_kind = "L1"
    distance_max = 765.0

    def hash_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return np.array([image.reshape(-1, 3).mean(axis=0) for image in images])

    def distance(self, a, b):
        return np.abs(a - b).sum(axis=1) * SCALE
'''


def test_a_plugins_code_is_part_of_what_a_rerun_compares(tmp_path):
    """Editing a plugin's module changes the transforms and hashes it made: a rerun must not keep
    the old set nor reuse the old hashes, but give what a run without any cache gives."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    config_text = ("name: plug\nimages: [builtin:astronaut, builtin:camera]\nhashers: [aHash, rerunplug:MeanHash]\n"
                   "sweeps:\n  - {family: dark, b: {'rerunplug:darken': {amount: $value}}, values: [20, 60]}\n")
    config = tmp_path / "plug.yaml"
    config.write_text(config_text)

    def run_with(factor, scale, out, *options):
        (plugins / "rerunplug.py").write_text(PLUGIN.replace("FACTOR", factor).replace("SCALE", scale))
        done = subprocess.run([sys.executable, "-m", "harness", "run", str(config), "--out", str(out), "--quiet",
                               "--workers", "1", *options], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(plugins), "PYTHONDONTWRITEBYTECODE": "1"})
        assert done.returncode == 0, done.stderr
        return (out / "distances.csv").read_bytes()

    first = run_with("1", "1.0", tmp_path / "out")
    edited = run_with("2", "0.5", tmp_path / "out")  # a stronger darken, a halved distance
    assert edited != first
    assert edited == run_with("2", "0.5", tmp_path / "fresh", "--no-cache")


def test_a_replaced_overlay_file_is_not_taken_for_the_old_one(tmp_path):
    """The cache keys an overlay's result by the file's content: a logo replaced under the same
    name gives what a run without any cache gives, not the old logo's hashes (nor a kept set)."""
    from tests.conftest import ROOT, make_scene

    logo = tmp_path / "logo.png"
    cv2.imwrite(str(logo), make_scene(1, 40, 60))
    config = tmp_path / "ov.yaml"
    config.write_text(f"images: [builtin:astronaut, builtin:camera]\nhashers: [aHash]\nreport: {{previews: false}}\n"
                      f"sweeps:\n  - {{family: logo, b: {{overlay_image: {{source: {logo}, size: 0.6}}}}}}\n")

    def run(out, *options):
        done = subprocess.run([sys.executable, "-m", "harness", "run", str(config), "--out", str(out), "--quiet",
                               "--workers", "1", *options], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return (out / "distances.csv").read_bytes()

    first = run(tmp_path / "out")
    cv2.imwrite(str(logo), make_scene(2, 90, 60))
    replaced = run(tmp_path / "out")
    assert replaced != first and replaced == run(tmp_path / "fresh", "--no-cache")


def test_a_weights_file_is_keyed_by_its_content(tmp_path):
    from harness.hashers import HASHERS
    from harness.runner import hasher_key

    hdf5 = b"\x89HDF\r\n\x1a\n"  # a .h5 file must begin as HDF5 (its content is not loaded here)
    weights = tmp_path / "w.h5"
    weights.write_bytes(hdf5 + b"one")
    resnet = HASHERS.get("ResNet50")(weights=str(weights))
    first = hasher_key(resnet, {})
    weights.write_bytes(hdf5 + b"other")
    assert hasher_key(resnet, {}) != first


def test_a_cache_key_follows_the_library_versions():
    """A hash or a transformed image made under other versions of the libraries (OpenCV's resize, a
    hasher's package) may differ: a cache shared across an upgrade must not serve it. The versions are in a
    hasher's key, and (as the salt, their digest) in a transform chain's."""
    from harness.hashers import HASHERS
    from harness.runner import chain_key, hasher_key

    phash = HASHERS.get("pHash")()
    assert hasher_key(phash, {"opencv": "4.10.0"}) != hasher_key(phash, {"opencv": "4.11.0"})
    assert hasher_key(phash, {"opencv": "4.10.0"}) == hasher_key(phash, {"opencv": "4.10.0"})
    chain = (("jpeg", (("quality", 50),)),)
    assert chain_key(chain, "salt a") != chain_key(chain, "salt b")
    assert chain_key(chain, "salt a") == chain_key(chain, "salt a")


def test_a_run_on_the_stand_in_image_saves_a_config_that_reruns_it(tmp_path):
    """Without the config's image, its freely licensed stand-in runs into OUTPUT-astronaut; the saved
    config names the stand-in and that directory, so it reruns the same tables there even once the
    real image is in place (it used to name the missing file, and the real report's directory)."""
    from tests.conftest import make_scene

    missing = tmp_path / "licensed.png"
    config = tmp_path / "c.yaml"
    config.write_text(f"images: [{missing}]\nfallback_image: builtin:astronaut\noutput: {tmp_path / 'out'}\n"
                      "hashers: [aHash]\nsweeps: [{family: j, b: {jpeg: {quality: 30}}}]\n")
    assert main(["run", str(config), "--quiet"]) == 0
    stand_in = tmp_path / "out-astronaut"
    saved = yaml.safe_load((stand_in / "config.yaml").read_text())
    assert saved["images"] == ["builtin:astronaut"] and "fallback_image" not in saved
    assert saved["output"] == str(stand_in)
    distances = (stand_in / "distances.csv").read_bytes()
    cv2.imwrite(str(missing), make_scene(3))  # the real image arrives
    assert main(["run", str(stand_in / "config.yaml"), "--quiet"]) == 0
    assert (stand_in / "distances.csv").read_bytes() == distances and not (tmp_path / "out").exists()
