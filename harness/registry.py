"""Map the names used in YAML to the functions and classes that implement them.

An entry may be the object itself or a lazy "module:attr" string, so heavy
imports (TensorFlow for the Keras hashers) happen only when that entry is used.
A name containing ':' that is not registered is a plugin reference,
`package.module:Name`: the only way a config names code of its own. It is imported
(from the current directory, PYTHONPATH or an installed package) only by `get`;
`plugin_reference` checks its form without importing anything, for `validate`.

A plugin's results are stored in the hash cache under a digest of its module's code
(`plugin_code`), so that digest must be of the code that runs: it is taken of the very bytes a
plugin module is compiled from when harness imports it (see `import_plugin_module`), and a run
refuses a module whose file has changed since.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.abc
import importlib.machinery
import json
import os
import sys
import traceback
from typing import Any, Callable, Iterator

from harness.errors import HarnessError, shortened, shown


class UnknownName(LookupError):
    """The message already says what was asked for and what is close."""


def import_path(path: str, *, plugin: bool = False) -> Any:
    """Import "package.module:attr"; the only way a config can name code. A `plugin`'s module is
    imported by `import_plugin_module`, which records a digest of the code it runs.

    Every failure is an UnknownName with a one-line message: the module that is not
    found, the exception its code raised on import (with file and line), or the
    attribute it lacks (with the closest name it has).
    """
    module_name, _, attr = check_import_path(path)
    try:
        module = import_plugin_module(module_name) if plugin else importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name + ".").startswith(exc.name + "."):  # the plugin itself, not a dependency
            raise UnknownName(f"cannot import module '{module_name}': no module named '{exc.name}' in the "
                              f"current directory ({os.getcwd()}), PYTHONPATH or the installed packages") from None
        raise UnknownName(f"cannot import module '{module_name}': {_one_line(exc)}") from None
    except Exception as exc:  # the module's own code failed (SyntaxError, NameError, ...)
        raise UnknownName(f"cannot import module '{module_name}': {_one_line(exc)}") from None
    except SystemExit as exc:  # sys.exit() or argparse's parse_args() at its top level: harness's exit, unexplained
        raise UnknownName(f"cannot import module '{module_name}': its code calls sys.exit({exc.code!r}) as it is "
                          "imported (argparse's parse_args() at its top level does); keep that under "
                          "`if __name__ == \"__main__\":`") from None
    obj, parts = module, attr.split(".")
    for depth, part in enumerate(parts):
        if not hasattr(obj, part):
            owner = f"'{module_name}:{'.'.join(parts[:depth])}'" if depth else f"module '{module_name}'"
            close = suggest(part, [n for n in dir(obj) if not n.startswith("_")])
            raise UnknownName(f"{owner} has no attribute '{part}'" + (f"; did you mean '{close}'?" if close else ""))
        obj = getattr(obj, part)
    return obj


def check_import_path(path: str) -> tuple[str, str, str]:
    """("package.module", ":", "Name") of an import path, or UnknownName: dotted Python identifiers
    on both sides of one ':', no relative import, no private or dunder attribute (a config names a
    plugin, never a way into a module's internals such as `os:__builtins__`)."""
    module_name, colon, attr = path.partition(":")
    modules, attrs = module_name.split("."), attr.split(".")
    if not colon or not all(part.isidentifier() for part in modules + attrs):
        raise UnknownName(f"{shown(path)} is not an import path of the form package.module:Name")
    if any(part.startswith("_") for part in attrs):
        raise UnknownName(f"{shown(path)}: a plugin's name cannot start with '_'")
    return module_name, colon, attr


def _one_line(exc: BaseException) -> str:
    """"Type: message (file, line N)" for an exception raised while importing user code."""
    lines = str(exc).strip().splitlines()
    text = type(exc).__name__ + (f": {shortened(lines[0], 200)}" if lines else "")
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if f.filename != __file__ and "importlib" not in f.filename and not f.filename.startswith("<")]
    if frames and not isinstance(exc, SyntaxError):  # a SyntaxError's message already has its file and line
        text += f" ({os.path.relpath(frames[-1].filename)}, line {frames[-1].lineno})"
    return text


def _current_directory_importable() -> None:
    """Find plugins from the directory the command runs in, as config paths are.

    `python -m harness` puts that directory on sys.path; an installed `harness`
    script does not, so it is added (last: it never shadows an installed package).
    """
    cwd = os.getcwd()
    if not any(os.path.abspath(entry or os.curdir) == cwd for entry in sys.path):
        sys.path.append(cwd)


def suggest(name: str, known: list[str]) -> str | None:
    """The closest known name: a case slip ("phash" for "pHash") first, then a name without its
    library ("dHash" for "imagehash.dhash", which spelling alone would take for "pHash"), then spelling."""
    by_lower = {k.lower(): k for k in known}
    if name.lower() in by_lower:
        return by_lower[name.lower()]
    unqualified = [k for k in known if "." in k and k.rsplit(".", 1)[1].lower() == name.lower()]
    if len(unqualified) == 1:
        return unqualified[0]
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[close[0]] if close else None


class Registry:
    def __init__(self, kind: str, check: Callable[[Any], str | None] | None = None):
        """`check(obj, name)` returns why `obj`, imported for the plugin reference `name`, breaks
        the contract, or None."""
        self.kind = kind
        self.check = check
        self._entries: dict[str, Any] = {}

    def add(self, name: str, entry: Any) -> Any:
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._entries[name] = entry
        return entry

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries, key=str.lower))

    def is_plugin(self, name: str) -> bool:
        """Whether `name` is a plugin reference (an import path) rather than a registered name."""
        return name not in self._entries and ":" in name

    def plugin_reference(self, name: str) -> str:
        """A plugin reference checked for its form only, nothing imported (UnknownName if malformed)."""
        try:
            check_import_path(name)
        except UnknownName as exc:
            raise UnknownName(f"{self.kind} plugin {exc}") from None
        return name

    def get(self, name: str) -> Any:
        if name not in self._entries:
            if ":" in name:
                self.plugin_reference(name)
                _current_directory_importable()
                try:
                    found = import_path(name, plugin=True)
                except UnknownName as exc:
                    raise UnknownName(f"{self.kind} plugin '{shortened(name, 120)}': {exc}") from None
                problem = self.check(found, name) if self.check else None
                if problem:
                    raise UnknownName(f"{self.kind} plugin '{shortened(name, 120)}' {problem}")
                return found
            close = suggest(name, list(self._entries))
            module, dot, attr = name.rpartition(".")
            hint = (f"; did you mean '{close}'?" if close else
                    f"; a plugin is named as module:name, with a colon: '{module}:{attr}'?" if dot and module and attr
                    else "")
            raise UnknownName(f"unknown {self.kind} {shown(name)}{hint} (see `python -m harness list`)")
        entry = self._entries[name]
        if isinstance(entry, str):
            entry = self._entries[name] = import_path(entry)
        return entry


# --- a plugin module's code, as it runs -----------------------------------------------------------
# The hash cache keys what a plugin made by a digest of its module's file. A digest of the file as it
# is *now* is not enough: in a long Python session (the API) the module imported an hour ago keeps
# running its old code after an edit, and a .pyc of the same size and second as an edit is run
# instead of the edited source; either way the old code's results would be stored under the new
# code's key, for every later run to reuse. So the digest is of the bytes the module was compiled
# from, recorded at its import, and a run checks that the file still holds them (`plugin_code`).

# module name -> (the loader that ran it, digest of its code, its file or None)
_LOADED: dict[str, tuple[Any, str, str | None]] = {}
NO_FILE = "no file"  # a module built in memory, or one whose file cannot be read: its reference alone keys it


class _DigestedSourceLoader(importlib.machinery.SourceFileLoader):
    """Compiles a module from the bytes whose digest it records, never from a cached .pyc (whose
    check, by the source's size and modification second, can miss an edit)."""

    digest = None  # of the bytes compiled, recorded once the module has run them whole

    def get_code(self, fullname):
        import hashlib

        path = self.get_filename(fullname)
        source = self.get_data(path)
        self.digest = hashlib.sha256(source).hexdigest()
        return self.source_to_code(source, path)

    def exec_module(self, module):
        super().exec_module(module)  # a failure (a reload whose new code raises) records nothing
        _LOADED[self.name] = (self, self.digest, self.path)  # the name it was imported as (the module may rename itself)


class _PluginFinder(importlib.abc.MetaPathFinder):
    """First on sys.meta_path, for the plugin modules only (`_PLUGIN_MODULES`): the spec the other
    finders give, its source loader replaced by _DigestedSourceLoader. The import system itself runs
    the import (its per-module lock: two threads importing a plugin at once get one module, run once;
    a package importing its own plugin module; importlib.reload), so only the loader is ours."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in _PLUGIN_MODULES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if type(spec.loader) is importlib.machinery.SourceFileLoader:
                    spec.loader = _DigestedSourceLoader(spec.loader.name, spec.loader.path)
                return spec
        return None


_PLUGIN_MODULES: set[str] = set()
_FINDER = _PluginFinder()


def expect_plugins(data) -> None:
    """Mark, before any is imported, the module of every plugin reference in a config's sweeps or
    hashers (`data`: every string of it that has the form of one): a plugin module that imports
    another one, named later in the config, must not load that one with Python's own loader (an
    older .pyc), before harness asks for it. A string taken for one that is not costs nothing: its
    module, if it is ever imported, is only compiled from its source."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack += list(item.keys()) + list(item.values())
        elif isinstance(item, list):
            stack += item
        elif isinstance(item, str) and ":" in item:
            try:
                _PLUGIN_MODULES.add(check_import_path(item)[0])
            except UnknownName:
                pass
    _install_finder()


def import_plugin_module(module_name: str):
    """Import a plugin's module through the import system, its code compiled by a loader that records
    the digest of the bytes it runs (`_LOADED`). One imported already (by the session) is taken as it
    is; `loaded_code` reads its file at first sight."""
    _PLUGIN_MODULES.add(module_name)
    _install_finder()
    return importlib.import_module(module_name)


def _install_finder() -> None:
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def loaded_code(module_name: str) -> tuple[str, str | None]:
    """(digest of the code this process runs for a plugin module, its file or None), importing the
    module if it is not yet. A module that harness's loader did not run (the session imported it
    before harness named it a plugin; an extension module) is digested from its file at first
    sight, the nearest to its code that can be known; one without a readable file of its own (in a
    zip archive) is keyed by its name alone (NO_FILE), as the README says."""
    module = import_plugin_module(module_name)
    loader = getattr(getattr(module, "__spec__", None), "loader", None)
    if isinstance(loader, _DigestedSourceLoader):  # ours ran it, under its own name (this one may be an alias)
        known = _LOADED.get(loader.name)
        if known is not None and known[0] is loader:
            return known[1], known[2]
        # Its last import or reload stopped half-way: which code runs (the old, part of the new)
        # cannot be told, so no digest can stand for it.
        raise HarnessError(f"plugin module '{module_name}' failed in its last import or reload, so the code this "
                           f"process runs for it is not known: fix it and importlib.reload({module_name}) again, "
                           "or restart the Python session")
    known = _LOADED.get(module_name)
    if known is None or known[0] is not loader:
        path = getattr(module, "__file__", None)
        known = _LOADED[module_name] = (loader, _file_code(path), path)
    return known[1], known[2]


# A plugin's package is read whole for its key, within these bounds (a plugin in a large package
# then keys by its own file only, and a note could not say which helper changed anyway).
PACKAGE_MAX_FILES, PACKAGE_MAX_BYTES = 2000, 50 << 20


def module_code(module_name: str) -> tuple[str, list[tuple[str, str | None]]]:
    """(digest of the code a plugin module runs, with the Python files of the package it is in;
    [(module name, its file)]). A helper module of the package, or the submodule a package's
    __init__ exports the plugin from, changes what the plugin makes as much as its own file does.
    The package's files are read from disk, all of them, in a fixed order: what a process happened to
    import before (another plugin of the package, an earlier run) changes nothing, and a worker that
    imports the plugin itself reads the same files. Code outside the package is not followed."""
    import hashlib

    from harness.provenance import file_digest

    digest, path = loaded_code(module_name)
    top = sys.modules.get(module_name.split(".")[0])
    folders = list(getattr(top, "__path__", None) or [])
    if len(folders) != 1:  # a single-file module, or a namespace package spread over folders
        return digest, [(module_name, path)]
    package = hashlib.sha256(digest.encode())
    count = size = 0
    for folder, names, files in os.walk(folders[0]):
        names[:] = sorted(n for n in names if not n.startswith(".") and n != "__pycache__")
        for name in sorted(f for f in files if f.endswith(".py")):
            full = os.path.join(folder, name)
            count, size = count + 1, size + os.path.getsize(full)
            if count > PACKAGE_MAX_FILES or size > PACKAGE_MAX_BYTES:
                return digest, [(module_name, path)]
            package.update(os.path.relpath(full, folders[0]).encode("utf-8", "surrogateescape") + b"\0"
                           + file_digest(full).encode())  # read once while a file keeps its size and time
    return package.hexdigest(), [(module_name, path)]


def plugin_code(reference: str) -> str:
    """The digest a plugin's (`package.module:Name`) results are keyed by: that of its module's code
    as this process runs it, with the files of its package (module_code).

    A HarnessError when the file no longer holds that code (edited after the import, in a long Python
    session). Refused rather than reloaded: a reload would run the module again behind the back of
    what the session holds (its objects, a `from module import` elsewhere keep the old code) and the
    new code would have to pass the contract check again; the one who edited knows which they want."""
    module_name = reference.partition(":")[0]
    digest, files = module_code(module_name)
    for name, path in files:
        if path is not None and _LOADED.get(name) is not None and _file_code(path) != _LOADED[name][1]:
            raise HarnessError(f"plugin module '{name}' ({shortened(path, 200)}) changed after it was imported, "
                               f"and this process still runs the old code: restart the Python session, or "
                               f"importlib.reload({name}) first")
    return digest


def check_plugin_code(expected: tuple[tuple[str, str], ...]) -> None:
    """In a worker (a process of its own, or on a Dask cluster): a HarnessError unless each plugin
    module's code here (`loaded_code`) is the code the run's keys were made with (module name ->
    digest, from `Plan.plugin_code`), else its results would be stored under the other code's key.
    A forked worker runs its parent's code; a spawned one or a Dask worker imports the file it finds."""
    _PLUGIN_MODULES.update(module_name for module_name, _ in expected)  # all, before one imports another
    _install_finder()
    for module_name, digest in expected:
        try:
            here, files = module_code(module_name)
            path = files[0][1]
        except Exception as exc:  # not found here, or its code fails here
            raise HarnessError(f"cannot import plugin module '{module_name}' here: {_one_line(exc)}") from None
        if here != digest:
            raise HarnessError(f"plugin module '{module_name}' ({shortened(str(path), 200)}) is not the code this "
                               "run started with (its file changed after the run imported it, or this worker runs "
                               "another copy: another machine's, or one it imported before an edit): keep a "
                               "plugin's file unchanged while a run uses it and the same on every worker, and "
                               "restart a long-lived worker after an edit")


def _file_code(path: str | None) -> str:
    from harness.provenance import file_sha256

    try:
        return file_sha256(path)
    except (OSError, TypeError):  # no file (None), or one that cannot be read
        return NO_FILE
