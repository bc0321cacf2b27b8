"""Map the names used in YAML to the functions and classes that implement them.

An entry may be the object itself or a lazy "module:attr" string, so heavy
imports (TensorFlow for the Keras hashers) happen only when that entry is used.
A name containing ':' that is not registered is imported as a user plugin.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any, Iterator


class UnknownName(LookupError):
    """The message already says what was asked for and what is close."""


def import_path(path: str) -> Any:
    """Import "package.module:attr"; the only way a config can name code."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise UnknownName(f"'{path}' is not an import path of the form package.module:Name")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownName(f"cannot import module '{module_name}' ({exc})") from None
    try:
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise UnknownName(f"module '{module_name}' has no attribute '{attr}'") from None
    return obj


def suggest(name: str, known: list[str]) -> str | None:
    """The closest known name: a case slip ("phash" for "pHash") first, then spelling."""
    by_lower = {k.lower(): k for k in known}
    if name.lower() in by_lower:
        return by_lower[name.lower()]
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[close[0]] if close else None


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
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

    def get(self, name: str) -> Any:
        if name not in self._entries:
            if ":" in name:
                return import_path(name)
            close = suggest(name, list(self._entries))
            hint = f"; did you mean '{close}'?" if close else ""
            raise UnknownName(f"unknown {self.kind} '{name}'{hint} (see `python -m harness list`)")
        entry = self._entries[name]
        if isinstance(entry, str):
            entry = self._entries[name] = import_path(entry)
        return entry
