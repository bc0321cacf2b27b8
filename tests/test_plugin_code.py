"""A plugin's results are stored under a digest of the code that made them, never another's.

The hash cache keys what a plugin made by its module's code. Here that code and the file differ:
a module edited while a Python session holds it, a .pyc older than an edit of the same size and
second, a spawned worker importing a file edited after the run started, a Dask worker with
another copy. Each is refused or runs the file, so no result is kept under the wrong key.
"""

import dataclasses
import hashlib
import importlib
import os
import py_compile
import re
import sys
import uuid

import numpy as np
import pytest

import harness
from harness.errors import HarnessError

TRANSFORM = '''
import numpy as np

OFFSET = 0


def shiftbright(image, amount: int = 1):
    return np.clip(image.astype(np.int16) + OFFSET + amount, 0, 255).astype(np.uint8)
'''

HASHER = '''
from dataclasses import dataclass

import numpy as np

from harness.hashers.base import Hasher

SCALE = 1.0


@dataclass(frozen=True)
class Mean(Hasher):
    name = __name__ + ":Mean"
    description = "the mean of each channel, scaled"
    distance_kind = "L1"
    distance_max = 1000.0

    def hash_batch(self, images):
        return np.array([image.reshape(-1, 3).mean(axis=0) * SCALE for image in images])

    def distance(self, a, b):
        return np.abs(a - b).sum(axis=1)
'''

EDITS = {"transform": ("OFFSET = 0", "OFFSET = 120"), "hasher": ("SCALE = 1.0", "SCALE = 3.0")}


def write_plugins(folder, suffix: str) -> dict:
    """A transform module and a hasher module of names ending in `suffix` in `folder`: kind -> (name, file)."""
    found = {}
    for kind, text in (("transform", TRANSFORM), ("hasher", HASHER)):
        name = f"code_{kind}_{suffix}"
        (folder / f"{name}.py").write_text(text)
        found[kind] = (name, folder / f"{name}.py")
    return found


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """The two plugin modules, of unique names, importable from tmp_path."""
    found = write_plugins(tmp_path, uuid.uuid4().hex[:8])
    monkeypatch.syspath_prepend(str(tmp_path))
    yield found
    for name, _ in found.values():
        sys.modules.pop(name, None)


def config(plugins) -> dict:
    return {"images": ["builtin:astronaut", "builtin:camera"],
            "hashers": ["aHash", f"{plugins['hasher'][0]}:Mean"],
            "sweeps": [{"family": "shift", "b": {f"{plugins['transform'][0]}:shiftbright": {"amount": "$value"}},
                        "values": [1, 2]}]}


def distances(plugins, **options) -> list[float]:
    return list(harness.evaluate(config(plugins), **options).distances["distance"])


def edit(path, kind):
    old, new = EDITS[kind]
    path.write_text(path.read_text().replace(old, new))


@pytest.mark.parametrize("kind", ["transform", "hasher"])
def test_a_plugin_edited_in_a_session_is_refused_until_reloaded(plugins, tmp_path, kind):
    """The session's module keeps running its old code after the edit: computed now, its results
    would be stored under the new code's key, and a fresh process would be handed them."""
    cache = str(tmp_path / "plug.sqlite")
    before = distances(plugins, cache=cache)
    name, path = plugins[kind]
    edit(path, kind)
    with pytest.raises(HarnessError) as refused:
        distances(plugins, cache=cache)
    assert str(refused.value) == (f"plugin module '{name}' ({path}) changed after it was imported, and this "
                                  f"process still runs the old code: restart the Python session, or "
                                  f"importlib.reload({name}) first")
    importlib.reload(sys.modules[name])
    after = distances(plugins, cache=cache)
    assert after != before
    assert after == distances(plugins)  # as without a cache: it held nothing of the old code's under the new key


def test_a_stale_bytecode_cache_is_not_run(plugins):
    """Python takes a .pyc for its source when the size and the modification second match: an edit of
    the same length within that second ran the old code, keyed by the new file's digest."""
    from harness.transforms import TRANSFORMS

    name, path = plugins["transform"]
    py_compile.compile(str(path), cfile=importlib.util.cache_from_source(str(path)))  # OFFSET = 0
    stat = os.stat(path)
    path.write_text(path.read_text().replace("OFFSET = 0", "OFFSET = 9"))  # the same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    shift = TRANSFORMS.get(f"{name}:shiftbright")
    assert shift(np.zeros((1, 1, 3), np.uint8), amount=1)[0, 0, 0] == 10

    from harness.registry import plugin_code

    assert plugin_code(f"{name}:shiftbright") == hashlib.sha256(path.read_bytes()).hexdigest()


def a_plan(plugins):
    from harness.api import resolve_config
    from harness.runner import make_plan

    parsed = resolve_config(config(plugins))
    return make_plan(parsed, parsed.hashers, salt="")


def run_on(engine) -> list:
    from harness.imagework import ImageJob, process_all

    return list(engine.map(process_all, [[ImageJob(0, "builtin:astronaut", None, None)]]))


@pytest.mark.parametrize("kind", ["transform", "hasher"])
def test_a_spawned_worker_runs_only_the_code_the_run_started_with(plugins, monkeypatch, kind):
    """A spawned worker imports the plugin's file anew: edited after the run imported it, the worker
    would compute the new code's results for the old code's keys."""
    import multiprocessing

    from harness import cluster
    from harness.imagework import build_state

    monkeypatch.setattr(cluster, "_context", lambda: multiprocessing.get_context("spawn"))
    plan = a_plan(plugins)
    with cluster.Engine(workers=2, setup=(build_state, (plan,))) as engine:
        [[outcome]] = run_on(engine)
    assert outcome.record is not None and len(outcome.entries) == 2
    name, path = plugins[kind]
    edit(path, kind)
    with pytest.raises(HarnessError, match=rf"^plugin module '{name}' \({path}\) is not the code this run started "
                                           r"with \(its file changed after the run imported it, or this worker "
                                           r"runs another copy"):
        with cluster.Engine(workers=2, setup=(build_state, (plan,))) as engine:
            run_on(engine)


from tests.test_cluster import cluster  # noqa: E402, F401  the fixture: a scheduler, two workers in tmp_path


def test_a_dask_worker_with_another_copy_of_a_plugin_is_refused(cluster, tmp_path, monkeypatch):
    """The workers import the plugins from their directory (tmp_path), this process from its own: a
    worker's results of its copy would go into this process's cache under this copy's key."""
    from harness.cluster import Engine
    from harness.imagework import build_state

    address, _ = cluster
    suffix = uuid.uuid4().hex[:8]
    theirs = write_plugins(tmp_path, suffix)
    edit(theirs["transform"][1], "transform")
    (tmp_path / "client").mkdir()
    ours = write_plugins(tmp_path / "client", suffix)
    monkeypatch.syspath_prepend(str(tmp_path / "client"))
    try:
        plan = a_plan(ours)
        with pytest.raises(HarnessError, match=rf"^on the Dask worker tcp://127\.0\.0\.1:\d+: plugin module "
                                               rf"'{ours['transform'][0]}' \({theirs['transform'][1]}\) is not the "
                                               r"code this run started with"):
            with Engine(scheduler=address, setup=(build_state, (plan,))) as engine:
                run_on(engine)
    finally:
        for name, _ in ours.values():
            sys.modules.pop(name, None)


def test_a_reload_runs_the_file_never_an_older_bytecode_cache(plugins):
    """The README's advice after an edit is importlib.reload: Python's own loader would take a .pyc
    of the old code when the edit keeps the file's size and modification second."""
    from harness.registry import plugin_code
    from harness.transforms import TRANSFORMS

    name, path = plugins["transform"]
    shift = TRANSFORMS.get(f"{name}:shiftbright")
    assert shift(np.zeros((1, 1, 3), np.uint8), amount=1)[0, 0, 0] == 1
    py_compile.compile(str(path), cfile=importlib.util.cache_from_source(str(path)))  # OFFSET = 0
    stat = os.stat(path)
    path.write_text(path.read_text().replace("OFFSET = 0", "OFFSET = 9"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    importlib.reload(sys.modules[name])
    assert TRANSFORMS.get(f"{name}:shiftbright")(np.zeros((1, 1, 3), np.uint8), amount=1)[0, 0, 0] == 10
    assert plugin_code(f"{name}:shiftbright") == hashlib.sha256(path.read_bytes()).hexdigest()


def test_threads_importing_one_plugin_at_once_get_one_whole_module(tmp_path, monkeypatch):
    """A Dask worker runs jobs in threads: two of them may ask for a plugin while it is being imported,
    and must both wait for the whole module (the import system's lock), not find half of it."""
    import threading

    from harness.hashers import HASHERS

    name = f"slow_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("import time\ntime.sleep(0.5)\n" + HASHER)
    monkeypatch.syspath_prepend(str(tmp_path))
    found, failed = [], []

    def get():
        try:
            found.append(HASHERS.get(f"{name}:Mean"))
        except Exception as exc:  # what the test is about: nothing may fail
            failed.append(exc)
    threads = [threading.Thread(target=get) for _ in range(3)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failed == [] and len(found) == 3 and all(cls is sys.modules[name].Mean for cls in found)
    finally:
        sys.modules.pop(name, None)


def test_a_package_that_imports_its_own_plugin_module_runs_it_once(tmp_path, monkeypatch):
    from harness.hashers import HASHERS
    from harness.registry import plugin_code

    package = tmp_path / f"pkg_{uuid.uuid4().hex[:8]}"
    package.mkdir()
    (package / "__init__.py").write_text("from . import plug\n")
    (package / "plug.py").write_text("import builtins\nbuiltins.harness_test_runs = "
                                     "getattr(builtins, 'harness_test_runs', 0) + 1\n" + HASHER)
    monkeypatch.syspath_prepend(str(tmp_path))
    import builtins
    try:
        cls = HASHERS.get(f"{package.name}.plug:Mean")
        assert cls is sys.modules[f"{package.name}.plug"].Mean and builtins.harness_test_runs == 1
        # Keyed by its own code and, in a fixed order, every Python file of its package (a helper may change it).
        own = hashlib.sha256((package / "plug.py").read_bytes()).hexdigest()
        keyed = hashlib.sha256(own.encode())
        for name in ("__init__.py", "plug.py"):
            keyed.update(name.encode() + b"\0" + hashlib.sha256((package / name).read_bytes()).hexdigest().encode())
        assert plugin_code(f"{package.name}.plug:Mean") == keyed.hexdigest()
    finally:
        for module in (package.name, f"{package.name}.plug"):
            sys.modules.pop(module, None)
        if hasattr(builtins, "harness_test_runs"):
            del builtins.harness_test_runs


def test_a_plugin_imported_by_an_earlier_one_is_compiled_from_its_file_too(tmp_path, monkeypatch):
    """Plugin A imports plugin B, which the config names after A: B must not come from an older
    .pyc through Python's own loader, for its results would be keyed by the file's digest."""
    a, b, path = stale_pair(tmp_path, uuid.uuid4().hex[:8])
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    try:
        results = harness.evaluate({"images": ["builtin:astronaut", "builtin:camera"],
                                    "hashers": [f"{a}:Mean", f"{b}:Mean"],
                                    "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": 50}}}]})
        assert sys.modules[b].SCALE == 3.0
        from harness.registry import plugin_code

        assert plugin_code(f"{b}:Mean") == hashlib.sha256(path.read_bytes()).hexdigest()
        assert len(results.distances) == 4
    finally:
        for name in (a, b):
            sys.modules.pop(name, None)


def test_a_failed_reload_leaves_the_plugin_refused_until_one_succeeds(plugins):
    """A reload whose new code raises leaves the old code running (part of the new, even): no digest
    stands for that, so a run must not key results by the new file's."""
    name, path = plugins["transform"]
    distances(plugins)
    text = path.read_text()
    path.write_text("import not_installed_anywhere_xyz\n" + text.replace("OFFSET = 0", "OFFSET = 2"))
    with pytest.raises(ImportError):
        importlib.reload(sys.modules[name])
    with pytest.raises(HarnessError, match=rf"^plugin module '{name}' failed in its last import or reload"):
        distances(plugins)
    path.write_text(text.replace("OFFSET = 0", "OFFSET = 2"))
    importlib.reload(sys.modules[name])
    assert distances(plugins) == distances(plugins, cache=None)


def stale_pair(folder, suffix: str) -> tuple[str, str, object]:
    """Plugin A imports plugin B, whose .pyc holds SCALE = 1.0 and whose file SCALE = 3.0, of the
    same size and time: Python's own loader would run the .pyc."""
    a, b = f"first_{suffix}", f"second_{suffix}"
    (folder / f"{a}.py").write_text(f"import {b}\n" + HASHER)
    path = folder / f"{b}.py"
    path.write_text(HASHER)
    py_compile.compile(str(path), cfile=importlib.util.cache_from_source(str(path)))
    stat = os.stat(path)
    path.write_text(path.read_text().replace("SCALE = 1.0", "SCALE = 3.0"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return a, b, path


def test_a_spawned_worker_compiles_a_plugin_imported_by_another_from_its_file(tmp_path, monkeypatch):
    """A spawned worker imports the run's plugins one by one: the one plugin A imports must not come
    from its .pyc there either, or the worker's results would be the old code's under the new key."""
    import multiprocessing

    from harness import cluster

    a, b, _ = stale_pair(tmp_path, uuid.uuid4().hex[:8])
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    monkeypatch.setattr(cluster, "_context", lambda: multiprocessing.get_context("spawn"))
    config = {"images": ["builtin:astronaut", "builtin:camera", "builtin:coffee", "builtin:chelsea"],
              "hashers": [f"{a}:Mean", f"{b}:Mean"], "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": 50}}}]}
    try:
        spawned = harness.evaluate(config, workers=2).distances
        here = harness.evaluate(config, workers=1).distances
        assert sys.modules[b].SCALE == 3.0
        assert spawned.equals(here), (spawned, here)
    finally:
        for name in (a, b):
            sys.modules.pop(name, None)


def test_a_plugin_module_under_a_second_name_or_renaming_itself_is_not_refused(tmp_path, monkeypatch):
    """The loader records a module's digest under the name it was imported as: a package that also
    puts the module in sys.modules under an alias, or a module that rebinds __name__, runs as before."""
    from harness.transforms import TRANSFORMS

    suffix = uuid.uuid4().hex[:8]
    package = tmp_path / f"alias_{suffix}"
    package.mkdir()
    (package / "__init__.py").write_text("import sys\nfrom . import real\nsys.modules[__name__ + '.alias'] = real\n")
    (package / "real.py").write_text(TRANSFORM)
    (tmp_path / f"renamed_{suffix}.py").write_text(TRANSFORM + "\n__name__ = 'something_else'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        results = harness.evaluate({"images": ["builtin:camera", "builtin:coffee"], "hashers": ["aHash"],
                                    "sweeps": [{"family": f"s{i}", "b": {name: {"amount": 3}}} for i, name in
                                               enumerate([f"{package.name}.real:shiftbright",
                                                          f"{package.name}.alias:shiftbright",
                                                          f"renamed_{suffix}:shiftbright"])]})
        assert results.failures == 0 and len(results.distances) == 6
    finally:
        for name in (package.name, f"{package.name}.real", f"{package.name}.alias", f"renamed_{suffix}"):
            sys.modules.pop(name, None)


def test_a_plugin_exported_by_a_package_is_keyed_by_the_modules_it_imports(tmp_path, monkeypatch):
    """A package's __init__ that exports a plugin from a submodule, which takes a constant from a
    helper module: editing the helper (or the submodule) changes what the plugin makes, so a rerun on
    the same cache computes it again. Only the __init__ file had been keyed, and the rerun kept the
    old results (and, its inputs' digest unchanged, the whole old output set)."""
    import subprocess

    import pandas as pd

    package = tmp_path / "plugpkg"
    package.mkdir()
    (package / "__init__.py").write_text("from .impl import brighten\n")
    (package / "impl.py").write_text(
        "import numpy as np\nfrom .helpers import AMOUNT\n\n\ndef brighten(image, k: int = 1):\n"
        "    return np.clip(image.astype(np.int16) + AMOUNT * k, 0, 255).astype(np.uint8)\n")
    helpers = package / "helpers.py"
    helpers.write_text("AMOUNT = 10\n")
    config = tmp_path / "c.yaml"
    config.write_text("images: [builtin:astronaut, builtin:camera]\nhashers: [imagehash.colorhash]\nsweeps:\n"
                      "  - family: bright\n    b: {'plugpkg:brighten': {k: $value}}\n    values: [3, 6]\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), root])}

    def run(out, *options):
        done = subprocess.run([sys.executable, "-m", "harness", "run", str(config), "--out", str(tmp_path / out),
                               "--quiet", *options], env=env, cwd=tmp_path, capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr.decode()[-400:]
        return pd.read_csv(tmp_path / out / "distances.csv")["distance"].tolist()

    (package / "other.py").write_text("from .helpers import AMOUNT\n\n\ndef same(image):\n    return image.copy()\n")
    from harness.registry import plugin_code

    # The key reads the package's files, whatever this process imported of it before.
    monkeypatch.syspath_prepend(str(tmp_path))
    keys = []
    for order in (["plugpkg.other:same", "plugpkg.impl:brighten"], ["plugpkg.impl:brighten", "plugpkg.other:same"]):
        try:
            keys.append({reference: plugin_code(reference) for reference in order})
        finally:
            for name in [m for m in sys.modules if m == "plugpkg" or m.startswith("plugpkg.")]:
                sys.modules.pop(name)
    assert keys[0] == keys[1]
    cache = ["--cache", str(tmp_path / "c.sqlite")]
    before = run("cached", *cache)
    helpers.write_text("AMOUNT = 40\n")
    after = run("fresh", "--no-cache")
    assert after != before  # the helper's constant reaches the pixels
    assert run("cached", *cache) == after


MISBEHAVING = HASHER + '''

def inplace(image, k: int = 1):
    image[:] = 255 - image
    return image


@dataclass(frozen=True)
class Zeroes(Mean):
    """Hashes, then blacks out the images it was given."""
    name = __name__ + ":Zeroes"
    description = "the channel means, then the images zeroed"

    def hash_batch(self, images):
        out = super().hash_batch(images)
        for image in images:
            image[:] = 0
        return out


@dataclass(frozen=True)
class Signed(Mean):
    name = __name__ + ":Signed"

    def distance(self, a, b):
        return (a - b).sum(axis=1) + DISTANCE_SHIFT


@dataclass(frozen=True)
class Similarity(Mean):
    """A similarity where a distance goes: highest for identical hashes."""
    name = __name__ + ":Similarity"

    def distance(self, a, b):
        return 1.0 / (1.0 + np.abs(a - b).sum(axis=1))


@dataclass(frozen=True)
class Offset(Mean):
    """A distance with a constant added: OFFSET for identical hashes."""
    name = __name__ + ":Offset"

    def distance(self, a, b):
        return np.abs(a - b).sum(axis=1) + OFFSET


@dataclass(frozen=True)
class Cosine32(Hasher):
    """1 - cos of float32 vectors in float32: 6e-8, not 0, for many a vector and itself."""
    name = __name__ + ":Cosine32"
    description = "a float32 vector of the pixels"
    distance_kind = "cosine"
    distance_max = 2.0

    def hash_batch(self, images):
        return np.array([image[:8, :64].astype(np.float32).ravel() + 0.1 for image in images])

    def distance(self, a, b):
        a, b = a.astype(np.float32), b.astype(np.float32)
        return 1 - (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@dataclass(frozen=True)
class GrayPairs(Mean):
    """Its distance raises for a pair of two gray images' hashes (equal channel means): camera's
    genuine pairs fail, its impostor pairs (with a colour image) do not."""
    name = __name__ + ":GrayPairs"

    def distance(self, a, b):
        if ((np.ptp(a, axis=1) == 0) & (np.ptp(b, axis=1) == 0)).any():
            raise ValueError("two gray images")
        return np.abs(a - b).sum(axis=1)


@dataclass(frozen=True)
class GrayNaN(Mean):
    """Its distance is NaN for a pair of two gray images' hashes, and honest otherwise."""
    name = __name__ + ":GrayNaN"

    def distance(self, a, b):
        out = np.abs(a - b).sum(axis=1)
        out[(np.ptp(a, axis=1) == 0) & (np.ptp(b, axis=1) == 0)] = np.nan
        return out


@dataclass(frozen=True)
class GrayNegative(Mean):
    """Its distance is -5 for a pair of two gray images' hashes, and honest otherwise."""
    name = __name__ + ":GrayNegative"

    def distance(self, a, b):
        out = np.abs(a - b).sum(axis=1)
        out[(np.ptp(a, axis=1) == 0) & (np.ptp(b, axis=1) == 0)] = -5
        return out


@dataclass(frozen=True)
class OneSided(Mean):
    """How far a's channel means are above b's: 0 one way for a pair the other way far apart."""
    name = __name__ + ":OneSided"

    def distance(self, a, b):
        return np.clip(a - b, 0, None).sum(axis=1)


@dataclass(frozen=True)
class OneSidedByDesign(OneSided):
    name = __name__ + ":OneSidedByDesign"
    symmetric = False


@dataclass(frozen=True)
class BrokenPrepare(Mean):
    name = __name__ + ":BrokenPrepare"

    def prepare(self):
        raise RuntimeError("no model here")


@dataclass(frozen=True)
class Elsewhere(Mean):
    name = __name__ + ":Elsewhere"

    def prepare(self):
        from harness.errors import UnavailableError
        raise UnavailableError("needs a GPU")


def soft(image, k: int = 1):
    return image.copy()


soft.cpu_exact = "no"
DISTANCE_SHIFT = 0.0
OFFSET = 0.0
'''


def test_a_plugin_cannot_change_the_images_it_is_given(tmp_path, monkeypatch):
    """A transform that edits its input in place, or a hasher that edits the images it hashes, had
    changed the image they share a batch with: the edit scored as no edit (aHash 0), every later
    hasher's hashes were of black images, and the cache kept them for runs that never name the
    plugin. A plugin gets read-only views: its edit is that pair's error, the others' hashes stand."""
    import harness

    name = f"misbehaving_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(MISBEHAVING)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        images = ["builtin:astronaut", "builtin:camera"]
        jpeg = {"family": "jpeg", "b": {"jpeg": {"quality": 50}}}
        cache = tmp_path / "c.sqlite"
        plain = harness.evaluate({"images": images, "hashers": ["aHash"], "sweeps": [jpeg]})
        edited = harness.evaluate({"images": images, "hashers": ["aHash"],
                                   "sweeps": [jpeg, {"family": "flip", "b": {f"{name}:inplace": {}}}]}, cache=cache)
        flip = edited.distances[edited.distances["family"] == "flip"]
        assert (flip["error"].str.contains("read-only") & flip["error"].str.contains("leaves its input")).all()
        kept = edited.distances[edited.distances["family"] == "jpeg"].reset_index(drop=True)
        assert kept["distance"].tolist() == plain.distances["distance"].tolist()
        again = harness.evaluate({"images": images, "hashers": ["aHash"], "sweeps": [jpeg]}, cache=cache)
        assert again.distances.equals(plain.distances) and again.impostors.equals(plain.impostors)

        both = harness.evaluate({"images": images, "hashers": [f"{name}:Zeroes", "aHash"], "sweeps": [jpeg]})
        assert both.distances.query("hasher == 'aHash'")["distance"].tolist() == plain.distances["distance"].tolist()
        assert (both.distances.query("hasher != 'aHash'")["error"].str.contains("read-only")).all()
    finally:
        sys.modules.pop(name, None)


@pytest.mark.parametrize("shift, said", [("float('nan')", "NaN values"), ("-1000.0", r"negative values \(-")])
def test_a_plugin_distance_that_is_nan_or_negative_is_refused(tmp_path, monkeypatch, shift, said):
    """NaN distances passed, then failed the report's histograms as "a bug in harness"; negative ones
    scored below every threshold (the leak audit flagged every pair). Both are refused, naming the hasher."""
    import harness

    name = f"signed_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(MISBEHAVING.replace("DISTANCE_SHIFT = 0.0", f"DISTANCE_SHIFT = {shift}"))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(HarnessError, match=f"impostor distances: {name}:Signed distance returned {said}"):
            harness.evaluate({"images": ["builtin:astronaut", "builtin:camera"], "hashers": [f"{name}:Signed"],
                              "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": 50}}}]})
    finally:
        sys.modules.pop(name, None)


def test_a_plugin_distance_a_rounding_below_zero_is_zero(tmp_path, monkeypatch):
    """1 - cos(a, a) comes out at -1e-16 for some vectors: that is a distance of 0, not a refusal."""
    import harness

    name = f"signed_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(MISBEHAVING.replace("DISTANCE_SHIFT = 0.0", "DISTANCE_SHIFT = -1e-13")
                                         .replace("return (a - b).sum(axis=1)", "return 0 * (a - b).sum(axis=1)"))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        results = harness.evaluate({"images": ["builtin:astronaut", "builtin:camera"], "hashers": [f"{name}:Signed"],
                                    "sweeps": [{"family": "same", "b": {"png": {}}}]})
        assert set(results.distances["distance"]) == {0.0} and set(results.impostors["distance"]) == {0.0}
        assert results.failures == 0
    finally:
        sys.modules.pop(name, None)


def test_a_plugin_similarity_in_place_of_a_distance_is_refused_before_any_work(tmp_path):
    """A similarity (highest for the closest) ran: every threshold, rate and ROC upside down, exit 0.
    A plugin's hash of a made-up image is now compared with itself first: it must be at 0."""
    import subprocess

    name = f"similar_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(MISBEHAVING)
    config = tmp_path / "c.yaml"
    config.write_text(f"images: [builtin:camera, builtin:astronaut]\nhashers: [aHash, '{name}:Similarity']\n"
                      "sweeps:\n  - {family: jpeg, b: {jpeg: {quality: 50}}}\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "harness", "run", str(config), "--out", str(out), "--no-cache",
                           "--quiet"], env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), root])},
                          cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done
    assert re.fullmatch(
        rf"error: {re.escape(str(config))}: hashers\[1\] \({name}:Similarity\): the plugin's distance between a "
        r"hash and itself \(1\) is larger than between two different images \(0\.\d+\): a distance is lowest for "
        r"the closest images; return one, not a similarity", done.stderr.strip()), done.stderr
    assert not out.exists()

    (tmp_path / f"{name}.py").write_text(MISBEHAVING.replace("1.0 / (1.0 + np.abs(a - b).sum(axis=1))",
                                                             "np.abs(a - b).sum(axis=1)"))
    done = subprocess.run(done.args, env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), root])},
                          cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("plugin, offset, problem", [
    ("Offset", "5.0", "distance between a hash and itself is 5, not 0"),
    ("Offset", "0.1", "distance between a hash and itself is 0.1, not 0"),
    ("Offset", "6e-8", None),  # float32 rounding of 1 - cos(a, a): 0
    ("Cosine32", "0.0", None),  # 1 - cos(a, a) in float32 is 6e-8 for many a vector: 0 all the same
    ("Mean", "0.0", None),
])
def test_a_plugin_distance_of_a_hash_to_itself_is_zero_up_to_rounding(tmp_path, monkeypatch, plugin, offset,
                                                                       problem):
    """The made-up images' check refuses a distance that is not 0 between a hash and itself, and lets
    float32 rounding through: a float32 cosine plugin ran before the check was added, and must still."""
    from harness.hashing import made_up_image, self_distance_problem

    name = f"offset_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(MISBEHAVING.replace("OFFSET = 0.0", f"OFFSET = {offset}"))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        hasher = getattr(importlib.import_module(name), plugin)()
        if plugin == "Cosine32":  # within float32 rounding of 0 (its sign and size follow the CPU's sums)
            hashes = hasher.hash_batch([made_up_image()])
            assert abs(hasher.distance(hashes, hashes)[0]) < 1e-6
        assert self_distance_problem(hasher) == problem
    finally:
        sys.modules.pop(name, None)


def test_a_plugin_module_that_exits_as_it_is_imported_is_named(tmp_path):
    """A module calling sys.exit() (or argparse's parse_args()) at its top level ended harness with
    that status and no word of which module did it."""
    import subprocess

    (tmp_path / "exits_on_import.py").write_text("import sys\nsys.exit(0)\n\ndef f(image):\n    return image\n")
    config = tmp_path / "c.yaml"
    config.write_text("images: [builtin:camera]\nhashers: [aHash]\nsweeps:\n  - family: f\n"
                      "    b: 'exits_on_import:f'\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-m", "harness", "validate", str(config), "--import-plugins"],
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), root])}, cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done
    assert done.stderr.strip().splitlines()[-1].endswith(
        "cannot import module 'exits_on_import': its code calls sys.exit(0) as it is imported (argparse's "
        "parse_args() at its top level does); keep that under `if __name__ == \"__main__\":`")


@pytest.mark.parametrize("attribute, said", [
    ("lambda: True", "its cpu_exact function failed on the step's parameters (one dict): TypeError"),
    ("'no'", "cpu_exact must be True, False or a function of the step's parameters (one dict) returning one, "
             "not 'no'")])
def test_a_transforms_cpu_exact_is_checked(tmp_path, monkeypatch, attribute, said):
    """A plugin's `cpu_exact` that fails ended a run as "a bug in harness"; a string "no" counted the
    edit as bit-exact (bool("no") is True), so its results were shared with other kinds of CPU."""
    import harness

    name = f"cpu_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(f"def soft(image, k: int = 1):\n    return image.copy()\n\n\n"
                                         f"soft.cpu_exact = {attribute}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        # Named where the config uses it (the file, the sweep's side), as a parameter's problem is.
        with pytest.raises(HarnessError, match="^" + re.escape(f"<dict>: sweeps[1].b[1]: transform '{name}:soft': "
                                                               f"{said}")):
            harness.evaluate({"images": ["builtin:camera"], "hashers": ["aHash"],
                              "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": 50}}},
                                         {"family": "soft", "b": ["grayscale", {f"{name}:soft": {}}]}]})
    finally:
        sys.modules.pop(name, None)


def test_a_transforms_cpu_exact_that_fails_for_one_swept_value_names_the_value(tmp_path, monkeypatch, capsys):
    """The refusal names the config file, the sweep's side and the value it failed for, as a bad
    parameter's does (it named only the transform, which a config may use in many sweeps)."""
    from harness.__main__ import main

    name = f"cpu_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("def soft(image, k: int = 1):\n    return image.copy()\n\n\n"
                                         "soft.cpu_exact = lambda params: {1: True, 2: False}[params['k']]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / "c.yaml"
    config.write_text(f"images: [builtin:camera]\nhashers: [aHash]\n"
                      f"sweeps: [{{family: s, a: grayscale, b: {{'{name}:soft': {{k: $value}}}}, values: [1, 2, 3]}}]\n")
    try:
        assert main(["validate", str(config), "--import-plugins"]) == 2
        assert capsys.readouterr().err == (f"error: {config}: sweeps[0].b: transform '{name}:soft': its cpu_exact "
                                           "function failed on the step's parameters (one dict): KeyError: 3 "
                                           "(the swept value 3)\n")
    finally:
        sys.modules.pop(name, None)


def test_a_plugin_distance_that_raises_for_some_pairs_is_a_problem_of_errors_csv(tmp_path):
    """A distance that raised for an image's pairs marked them in distances.csv's error column, and the
    run exited 1, but errors.csv, which exit 1 and the README send the reader to, held no row of it."""
    import subprocess

    import pandas as pd

    name = f"gray_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(MISBEHAVING)
    config = tmp_path / "c.yaml"
    config.write_text(f"images: [builtin:camera, builtin:astronaut, builtin:coffee]\n"
                      f"hashers: [aHash, '{name}:GrayPairs']\n"
                      "sweeps:\n  - {family: same, b: {png: {}}}\n  - {family: jpeg, b: {jpeg: {quality: 50}}}\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), root])}
    done = subprocess.run([sys.executable, "-m", "harness", "run", str(config), "--out", str(out), "--no-cache",
                           "--quiet"], env=env, cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    reason = f"{name}:GrayPairs distance failed: ValueError: two gray images"
    errors = pd.read_csv(out / "errors.csv", keep_default_na=False)
    assert errors[["image", "stage", "reason"]].values.tolist() == [["camera", f"hash {name}:GrayPairs", reason]]
    distances = pd.read_csv(out / "distances.csv", keep_default_na=False)
    failed = distances[distances["error"] != ""]
    assert set(failed["image"]) == {"camera"} and set(failed["error"]) == {f"hash: {reason}"} and len(failed) == 2

    sys.path.insert(0, str(tmp_path))
    try:  # the API counts what the command line does: 2 distances and the one problem they came from
        from harness import api

        evaluation = api.image_pass(str(config))
        assert evaluation.failures == 3
        results = evaluation.results()
        assert results.failures == 3 and len(results.errors) == 1
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)


@pytest.mark.parametrize("plugin, said", [("GrayPairs", "distance failed: ValueError: two gray images"),
                                           ("GrayNaN", "distance returned NaN values"),
                                           ("GrayNegative", "distance returned negative values (-5; a distance is 0 "
                                            "or more: below every threshold, each pair would count as a match)")])
def test_a_plugin_distance_that_fails_in_the_leak_search_is_one_line(tmp_path, monkeypatch, capsys, plugin, said):
    """The leak audit's search called a plugin's distance unchecked: one that raised for a pair (here
    two gray images, camera and moon, in one split) was reported as "a bug in harness" (exit 3), and
    one that gave NaN lost that pair without a word (exit 0: NaN is never at or below a threshold).
    Both stop the audit in one line naming the hasher (exit 2), in this process and in workers; and so
    does one that gave a negative distance, which a run refuses (every pair at or below any threshold)."""
    from harness.__main__ import main

    name = f"leaky_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(MISBEHAVING)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    try:
        for workers in ("1", "2"):
            out = tmp_path / f"out{workers}"
            status = main(["leaks", "--train", "builtin:camera", "--train", "builtin:moon", "--test", "builtin:coffee",
                           "--hashers", f"{name}:{plugin}", "--threshold", "1000", "--out", str(out), "--quiet",
                           "--no-cache", "--workers", workers])
            err = capsys.readouterr().err
            assert status == 2, err
            assert err == f"error: leak search: {name}:{plugin} {said}; the audit needs every pair's distance\n"
            assert not out.exists()
    finally:
        sys.modules.pop(name, None)


EXITING = HASHER + '''
import sys


def _gray(rows):
    return bool((np.ptp(rows, axis=1) == 0).any())


@dataclass(frozen=True)
class DistanceExits(Mean):
    name = __name__ + ":DistanceExits"

    def distance(self, a, b):
        if ((np.ptp(a, axis=1) == 0) & (np.ptp(b, axis=1) == 0)).any():  # a pair of two gray images
            sys.exit(0)
        return np.abs(a - b).sum(axis=1)


@dataclass(frozen=True)
class HashExits(Mean):
    name = __name__ + ":HashExits"

    def hash_batch(self, images):
        out = super().hash_batch(images)
        if _gray(out):
            sys.exit(0)
        return out


@dataclass(frozen=True)
class PrepareExits(Mean):
    name = __name__ + ":PrepareExits"

    def prepare(self):
        sys.exit("no GPU here")


def exits_on_gray(image, k: int = 1):
    if (image[..., 0] == image[..., 1]).all():
        sys.exit(0)
    return image.copy()
'''


def test_a_plugin_calling_sys_exit_is_its_failure_not_the_runs_exit(tmp_path):
    """A plugin's distance, hash_batch or transform that called sys.exit(0) for one image (camera, the
    gray one) ended the whole run with exit status 0, no line and no output; its prepare() ended it with
    its own message. Each is that plugin's failure as an exception is: a row of errors.csv (exit 1),
    or for prepare() the run's one line (exit 2)."""
    import subprocess

    import pandas as pd

    name = f"exits_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(EXITING)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), root])}
    config = tmp_path / "c.yaml"
    config.write_text(f"images: [builtin:camera, builtin:astronaut, builtin:coffee]\n"
                      f"hashers: [aHash, '{name}:DistanceExits', '{name}:HashExits']\n"
                      f"sweeps:\n  - {{family: jpeg, b: {{jpeg: {{quality: 50}}}}}}\n"
                      f"  - {{family: exits, b: '{name}:exits_on_gray'}}\n")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "harness", "run", str(config), "--out", str(out), "--no-cache", "--quiet"]
    done = subprocess.run(command, env=env, cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    errors = pd.read_csv(out / "errors.csv", keep_default_na=False)
    assert sorted(errors[["image", "stage", "reason"]].values.tolist()) == [
        ["camera", f"hash {name}:DistanceExits", f"{name}:DistanceExits distance failed: it called sys.exit(0)"],
        ["camera", f"hash {name}:HashExits", f"{name}:HashExits failed: it called sys.exit(0)"],
        ["camera", "transform", f"transform '{name}:exits_on_gray' failed on a 512x512 image: it called sys.exit(0)"]]

    config.write_text(f"images: [builtin:camera]\nhashers: [aHash, '{name}:PrepareExits']\n"
                      "sweeps:\n  - {family: jpeg, b: {jpeg: {quality: 50}}}\n")
    done = subprocess.run(command, env=env, cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (f"error: {config}: hashers[1] ({name}:PrepareExits): the plugin's prepare() failed: it "
                           "called sys.exit('no GPU here')\n")


def test_a_plugin_distance_not_the_same_both_ways_is_refused_before_any_work(tmp_path, monkeypatch):
    """A one-sided distance ran: a copy scored 0 from its image one way and far from it the other, so
    which pairs matched followed which side harness passed first. One declared one-sided (as
    CropResistantHash's is) runs, with the original passed first."""
    name = f"onesided_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(MISBEHAVING)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = {"images": ["builtin:astronaut", "builtin:coffee"], "hashers": ["aHash", f"{name}:OneSided"],
              "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": 50}}}]}
    try:
        with pytest.raises(HarnessError) as refused:
            harness.evaluate(config)
        assert re.fullmatch(
            rf"<dict>: hashers\[1\] \({name}:OneSided\): the plugin's distance is not symmetric: d\(a, b\) is "
            r"\d+(\.\d+)? and d\(b, a\) \d+(\.\d+)? for two made-up images a and b; make it the same both ways, or "
            r"declare symmetric = False if it is one-sided by design \(harness then passes the original image "
            r"first\)", str(refused.value)), str(refused.value)
        config["hashers"][1] = f"{name}:OneSidedByDesign"
        assert harness.evaluate(config).failures == 0
    finally:
        sys.modules.pop(name, None)


def built_in(name: str):
    from harness.hashers import HASHERS

    cls = HASHERS.get(name)
    fields = {f.name for f in dataclasses.fields(cls)}
    # The CNNs with random weights, small: no network here, and the check needs no trained model.
    return cls(**({"weights": None} if "weights" in fields else {}),
               **({"input_size": 64} if "input_size" in fields else {}))


def test_every_built_in_hasher_passes_the_made_up_images_check():
    """The check a plugin is held to is one every built-in keeps (CropResistantHash, one-sided by
    design, declares it), so a plugin wrapping one is not refused for what the built-in does."""
    from harness.hashers import HASHERS
    from harness.hashing import self_distance_problem

    problems = {}
    for name in HASHERS:
        hasher = built_in(name)
        hasher.prepare()
        problems[name] = self_distance_problem(hasher)
    assert problems == {name: None for name in HASHERS}
    assert [name for name in HASHERS if not HASHERS.get(name).symmetric] == ["imagehash.crop_resistant_hash"]


def test_a_one_sided_distance_compares_the_impostors_as_the_copies_other_image_first(tmp_path, monkeypatch):
    """A pair's distance is d(original, copy); the edited copies' impostor distances were d(copy, other
    image), the other question for a one-sided distance (CropResistantHash's), so the threshold those
    impostors set was of another distance than the copies' it was applied to."""
    from harness.images import load_builtin

    name = f"onesided_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(MISBEHAVING)
    monkeypatch.syspath_prepend(str(tmp_path))
    images = ["astronaut", "coffee", "chelsea"]
    try:
        results = harness.evaluate({"images": [f"builtin:{image}" for image in images],
                                    "hashers": [f"{name}:OneSidedByDesign"],
                                    "sweeps": [{"family": "flip", "b": "hflip"}],  # the same channel means
                                    "impostors": {"per_variant": 2}})
        hasher = getattr(sys.modules[name], "OneSidedByDesign")()
        means = {image: hasher.hash_batch([load_builtin(image)])[0] for image in images}
        transformed = results.impostors[results.impostors["kind"] == "transformed"]
        assert len(transformed) == 6
        got = transformed["distance"].tolist()
        def one_sided(a, b):
            return [float(np.clip(means[x] - means[y], 0, None).sum()) for x, y in zip(a, b)]

        pairs = transformed["image"], transformed["other"]
        assert got == pytest.approx(one_sided(pairs[1], pairs[0]), rel=1e-5)  # (the table keeps 6 digits)
        assert got != pytest.approx(one_sided(pairs[0], pairs[1]), rel=1e-2)
    finally:
        sys.modules.pop(name, None)


REFUSED_BEFORE_WORK = [
    ("hashers: [aHash, '{m}:Similarity']", "{c}: hashers[1] ({m}:Similarity): the plugin's distance between a hash "
                                           "and itself (1) is larger than between two different images"),
    ("hashers: [aHash, '{m}:OneSided']", "{c}: hashers[1] ({m}:OneSided): the plugin's distance is not symmetric"),
    ("hashers: [aHash, '{m}:BrokenPrepare']", "{c}: hashers[1] ({m}:BrokenPrepare): the plugin's prepare() failed: "
                                              "RuntimeError: no model here"),
    ("hashers: [aHash]\nsweeps: [{{family: s, b: '{m}:soft'}}]", "{c}: sweeps[0].b: transform '{m}:soft': cpu_exact must "
                                                                  "be True, False or a function of the step's parameters"),
]


@pytest.mark.parametrize("text, said", REFUSED_BEFORE_WORK, ids=["similarity", "one-sided", "prepare", "cpu_exact"])
def test_validate_import_plugins_refuses_what_run_refuses_before_any_work(tmp_path, monkeypatch, capsys, text, said):
    """`validate --import-plugins` said "valid" (exit 0) for a plugin that `run` refused at once: it
    imported the plugins and checked their contract as data, but neither loaded them nor tried them
    on the made-up images. It now runs the run's own checks, reading no image of the run."""
    from harness.__main__ import main

    module = f"refused_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(MISBEHAVING)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / "c.yaml"
    body = text.format(m=module)
    config.write_text("images: [builtin:camera, builtin:astronaut]\n" + body
                      + ("" if "sweeps" in body else "\nsweeps: [{family: jpeg, b: {jpeg: {quality: 50}}}]") + "\n")
    try:
        lines = []
        for argv in (["validate", str(config), "--import-plugins"],
                     ["run", str(config), "--out", str(tmp_path / "out"), "--no-cache", "--quiet"]):
            status = main(argv)
            err = capsys.readouterr().err
            assert status == 2 and err.count("\n") == 1, err
            lines.append(err)
        assert lines[0] == lines[1] and lines[0].startswith("error: " + said.format(m=module, c=config)), lines
        assert not (tmp_path / "out").exists()
    finally:
        sys.modules.pop(module, None)


def test_validate_import_plugins_says_what_run_and_leaks_do_with_a_plugin_unavailable_here(tmp_path, monkeypatch,
                                                                                             capsys):
    """`run` marks an unavailable hasher's distances and runs the others: validate notes it. `leaks`
    stops: validate of an audit's config refuses it with the audit's own line."""
    from harness.__main__ import main

    module = f"elsewhere_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(MISBEHAVING)
    monkeypatch.syspath_prepend(str(tmp_path))
    run_config, audit = tmp_path / "run.yaml", tmp_path / "audit.yaml"
    run_config.write_text(f"images: [builtin:camera]\nhashers: [aHash, '{module}:Elsewhere']\n"
                          "sweeps: [{family: jpeg, b: {jpeg: {quality: 50}}}]\n")
    audit.write_text(f"splits: {{train: [builtin:camera], test: [builtin:astronaut]}}\n"
                     f"hashers: ['{module}:Elsewhere']\nthreshold: 3\n")
    try:
        assert main(["validate", str(run_config), "--import-plugins"]) == 0
        assert (f"  note: hasher {module}:Elsewhere unavailable: needs a GPU; `run` marks its distances unavailable "
                "and runs the others (with --strict it stops)\n") in capsys.readouterr().out
        lines = []
        for argv in (["validate", str(audit), "--import-plugins"],
                     ["leaks", str(audit), "--out", str(tmp_path / "out"), "--no-cache", "--quiet"]):
            assert main(argv) == 2
            lines.append(capsys.readouterr().err)
        assert lines[0] == lines[1] == f"error: {audit}: hashers[0] ({module}:Elsewhere): needs a GPU\n"
        assert main(["validate", str(audit)]) == 0  # not imported: nothing of the plugin's code runs
    finally:
        sys.modules.pop(module, None)


@pytest.mark.parametrize("import_plugins", [True, False])
def test_a_plugin_hasher_given_a_built_in_hashers_name_as_its_id_is_refused(tmp_path, monkeypatch, import_plugins):
    """A plugin with `id: pHash` ran as a column called pHash: a reader, `--hashers pHash` and `--threshold
    pHash=8` took it for OpenCV's pHash. (Beside pHash itself it was already "two hashers are called";
    a plugin's `name` must be its import path, so it cannot be a built-in's.)"""
    from harness.config import parse_config
    from harness.errors import ConfigError

    module = f"named_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(HASHER)
    monkeypatch.syspath_prepend(str(tmp_path))
    raw = {"images": ["builtin:camera"], "hashers": ["aHash", {"name": f"{module}:Mean", "id": "pHash"}],
           "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": 50}}}]}
    try:
        with pytest.raises(ConfigError) as refused:
            parse_config(raw, "c.yaml", import_plugins=import_plugins)
        assert str(refused.value) == (f"c.yaml: hashers[1].id: 'pHash' is the name of another hasher harness has; "
                                      f"a column of {module}:Mean needs an id of its own")
        raw["hashers"][1]["id"] = "pHash-mine"
        assert [h.id for h in parse_config(raw, "c.yaml", import_plugins=import_plugins).hashers] == ["aHash",
                                                                                                     "pHash-mine"]
    finally:
        sys.modules.pop(module, None)


def test_a_transform_drawing_from_an_unseeded_generator_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    """A plugin transform with unseeded randomness (np.random's global generator, as augmentations
    written for training often are) made two runs of one config differ, and the hash cache kept the
    first run's draw, without a word. `validate --import-plugins` and `run` refuse it in one line
    naming the config's key; the same transform seeded from its `seed` parameter runs."""
    from harness.__main__ import main

    module = f"noisy_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        "import numpy as np\n\n\n"
        "def noise(image, sigma: float = 8.0):\n"
        "    return np.clip(image + np.random.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)\n\n\n"
        "def seeded_noise(image, sigma: float = 8.0, seed: int = 0):\n"
        "    noise = np.random.default_rng(seed).normal(0, sigma, image.shape)\n"
        "    return np.clip(image + noise, 0, 255).astype(np.uint8)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        for transform, refused in (("noise", True), ("seeded_noise", False)):
            config = tmp_path / f"{transform}.yaml"
            config.write_text("images: [builtin:camera, builtin:astronaut]\nhashers: [aHash]\nsweeps:\n"
                              "  - {family: jpeg, b: {jpeg: {quality: 50}}}\n"
                              f"  - {{family: noise, b: ['grayscale', {{'{module}:{transform}': {{sigma: 4}}}}]}}\n")
            out = tmp_path / f"out-{transform}"
            statuses = [main(["validate", str(config), "--import-plugins"]),
                        main(["run", str(config), "--out", str(out), "--no-cache", "--quiet"])]
            err = capsys.readouterr().err
            if refused:
                line = (f"error: {config}: sweeps[1].b[1]: transform '{module}:noise' gave different images for one "
                        "image and the same parameters (sigma=4.0): a transform must be a function of its image "
                        "and parameters; draw its randomness from a parameter named `seed`")
                assert statuses == [2, 2] and err.count("\n") == 2, err
                assert all(text.startswith(line) for text in err.splitlines()), err
                assert not out.exists()
            else:
                assert statuses == [0, 0], err
                assert (out / "distances.csv").exists()
    finally:
        sys.modules.pop(module, None)
