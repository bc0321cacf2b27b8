"""A plugin's results are stored under a digest of the code that made them, never another's.

The hash cache keys what a plugin made by its module's code. Here that code and the file differ:
a module edited while a Python session holds it, a .pyc older than an edit of the same size and
second, a spawned worker importing a file edited after the run started, a Dask worker with
another copy. Each is refused or runs the file, so no result is kept under the wrong key.
"""

import hashlib
import importlib
import os
import py_compile
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
        assert plugin_code(f"{package.name}.plug:Mean") == hashlib.sha256((package / "plug.py").read_bytes()).hexdigest()
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
