"""Describe the hasher and transform registries as text, for `python -m harness list`.

Everything shown is read from the registered code itself: a hasher's `description`,
`distance_kind` and `distance_max`, a transform's docstring, and each parameter's
annotation through `param_specs`. Resolving a hasher imports its module (e.g.
harness/hashers/keras.py) but never its library: those import it on first use.
"""

from __future__ import annotations

import inspect
import shutil
import sys
import textwrap

from harness.params import ParamSpec, param_specs

# The order transform kinds are listed in; a module not named here follows, alphabetically.
TRANSFORM_KINDS = ("geometry", "photometric", "filters", "codecs", "overlays", "noise")
HASHER_BACKENDS = ("opencv", "imagehash", "pdq", "keras")
REQUIRED_NOTE = 'a parameter without "= default" is required'
# `list` imports no plugin (it reads no config): said where the listing starts, as a user looking for
# their own hasher or transform would otherwise take it for unknown.
PLUGINS_NOTE = "plugins (package.module:Name) are listed by `python -m harness validate CONFIG --import-plugins`"


def describe(which: str | None = None) -> str:
    """The listing of `which` ("hashers" or "transforms"), or of both when None."""
    parts = []
    if which in (None, "hashers"):
        parts.append(describe_hashers())
    if which in (None, "transforms"):
        parts.append(describe_transforms())
    return "\n\n".join(parts)


def describe_hashers() -> str:
    from harness.hashers import HASHERS

    groups = _grouped(HASHERS, HASHER_BACKENDS)
    lines = _wrap(f"HASHERS ({sum(map(len, groups.values()))}), named in a config as `hashers: [NAME, "
                  f"{{name: NAME, param: value}}]`; a lower distance is closer; {REQUIRED_NOTE}; {PLUGINS_NOTE}.",
                  _width(), "", "")
    for backend, entries in groups.items():
        lines += ["", f"{backend}:"]
        for name, cls in entries:
            lines += _entry(name, cls.description, [_distance(cls)], param_specs(cls))
    return "\n".join(lines)


def describe_transforms() -> str:
    from harness.transforms import TRANSFORMS

    groups = _grouped(TRANSFORMS, TRANSFORM_KINDS)
    lines = _wrap(f"TRANSFORMS ({sum(map(len, groups.values()))}), named in a sweep's `a:` and `b:` as NAME "
                  f"or {{NAME: {{param: value}}}}; {REQUIRED_NOTE}; a `seed` left out is the config's seed; "
                  f"{PLUGINS_NOTE}.",
                  _width(), "", "")
    for kind, entries in groups.items():
        heading = _first_line(sys.modules[entries[0][1].__module__].__doc__)
        lines += ["", f"{kind}: {heading}" if heading else f"{kind}:"]
        for name, func in entries:
            lines += _entry(name, _first_line(func.__doc__), [], param_specs(func))
    return "\n".join(lines)


def describe_plugins(plugins) -> list[str]:
    """A config's imported plugins, (kind, import path) each, as `list` shows the registered ones:
    a hasher's description, distance kind and distance_max, a transform's first docstring line, and
    the parameters of both; each once, in the config's order."""
    from harness.hashers import HASHERS
    from harness.transforms import TRANSFORMS

    lines: list[str] = []
    for kind, path in dict.fromkeys(plugins):
        if kind == "hasher":
            cls = HASHERS.get(path)
            lines += _entry(path, cls.description, [_distance(cls)], param_specs(cls))
        else:
            func = TRANSFORMS.get(path)
            lines += _entry(path, _first_line(func.__doc__), [], param_specs(func))
    return lines


def _grouped(registry, order: tuple[str, ...]) -> dict[str, list[tuple[str, object]]]:
    """Registry entries (name, resolved object) by the last part of their module's name, in `order`."""
    groups: dict[str, list] = {}
    for name in registry:
        obj = registry.get(name)
        groups.setdefault(obj.__module__.rpartition(".")[2], []).append((name, obj))
    rank = {kind: i for i, kind in enumerate(order)}
    return dict(sorted(groups.items(), key=lambda item: (rank.get(item[0], len(order)), item[0])))


def _entry(name: str, summary: str, facts: list[str], specs: list[ParamSpec]) -> list[str]:
    lines = [""] + _wrap(f"{name}  {summary}" if summary else name, _width(), "  ", "      ")
    for text in facts + ([spec.describe() for spec in specs] or ["no parameters"]):
        lines += _wrap(text, _width(), "      ", "          ")
    return lines


def _distance(cls) -> str:
    """A hasher's distance line: its kind, its maximum, and whether it is one-sided (Hasher.symmetric)."""
    return (f"distance: {cls.distance_kind}, {_distance_max(cls)}"
            + ("" if cls.symmetric else "; one-sided: d(a, b) != d(b, a), the original is a"))


def _distance_max(cls) -> str:
    """"distance_max N", saying so when N depends on the parameters (a `from_params` value)."""
    from harness.hashers.base import from_params

    static = inspect.getattr_static(cls, "distance_max")
    text = f"distance_max {cls.distance_max:g}"
    if isinstance(static, from_params):
        rule = _first_line(static.__doc__)
        text += " with the defaults" + (f" ({rule[0].lower() + rule[1:].rstrip('.')})" if rule else "")
    if not getattr(cls, "distance_bounded", True):  # it read as a bound: distances of 107 and 113 were measured
        text += " (a scale, not a bound: farther distances count as 1 normalised)"
    return text


def _first_line(doc: str | None) -> str:
    return inspect.cleandoc(doc).split("\n\n")[0].replace("\n", " ") if doc else ""


def _width() -> int:
    """The terminal's width, kept between 60 and 120 columns (100 when not a terminal)."""
    return max(60, min(shutil.get_terminal_size((100, 24)).columns, 120))


def _wrap(text: str, width: int, first: str, rest: str) -> list[str]:
    return textwrap.wrap(text, width, initial_indent=first, subsequent_indent=rest,
                         break_long_words=False, break_on_hyphens=False) or [first.rstrip()]
