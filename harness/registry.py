"""Map the names used in YAML to the functions and classes that implement them.

An entry may be the object itself or a lazy "module:attr" string, so heavy
imports (TensorFlow for the Keras hashers) happen only when that entry is used.
A name containing ':' that is not registered is a plugin reference,
`package.module:Name`: the only way a config names code of its own. It is imported
(from the current directory, PYTHONPATH or an installed package) only by `get`;
`plugin_reference` checks its form without importing anything, for `validate`.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
import traceback
from typing import Any, Callable, Iterator

from harness.errors import shortened, shown


class UnknownName(LookupError):
    """The message already says what was asked for and what is close."""


def import_path(path: str) -> Any:
    """Import "package.module:attr"; the only way a config can name code.

    Every failure is an UnknownName with a one-line message: the module that is not
    found, the exception its code raised on import (with file and line), or the
    attribute it lacks (with the closest name it has).
    """
    module_name, _, attr = check_import_path(path)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name + ".").startswith(exc.name + "."):  # the plugin itself, not a dependency
            raise UnknownName(f"cannot import module '{module_name}': no module named '{exc.name}' in the "
                              f"current directory ({os.getcwd()}), PYTHONPATH or the installed packages") from None
        raise UnknownName(f"cannot import module '{module_name}': {_one_line(exc)}") from None
    except Exception as exc:  # the module's own code failed (SyntaxError, NameError, ...)
        raise UnknownName(f"cannot import module '{module_name}': {_one_line(exc)}") from None
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
    """The closest known name: a case slip ("phash" for "pHash") first, then spelling."""
    by_lower = {k.lower(): k for k in known}
    if name.lower() in by_lower:
        return by_lower[name.lower()]
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
                    found = import_path(name)
                except UnknownName as exc:
                    raise UnknownName(f"{self.kind} plugin '{shortened(name, 120)}': {exc}") from None
                problem = self.check(found, name) if self.check else None
                if problem:
                    raise UnknownName(f"{self.kind} plugin '{shortened(name, 120)}' {problem}")
                return found
            close = suggest(name, list(self._entries))
            hint = f"; did you mean '{close}'?" if close else ""
            raise UnknownName(f"unknown {self.kind} {shown(name)}{hint} (see `python -m harness list`)")
        entry = self._entries[name]
        if isinstance(entry, str):
            entry = self._entries[name] = import_path(entry)
        return entry
