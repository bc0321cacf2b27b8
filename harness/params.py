"""Parameters declared once, in a signature, and checked before any work.

A transform is a function and a hasher a dataclass; each parameter's type and
valid range are written in its annotation, e.g. ``quality: Annotated[int, Range(0, 100)]``.
`check_params` reads that single declaration to validate what a config gives.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Annotated, Callable, Literal

from harness.errors import shortened, shown


@dataclass(frozen=True)
class Range:
    """Inclusive bounds (None = unbounded); `open_low` and `open_high` make a bound exclusive."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def check(self, value) -> str | None:
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return f"must be {'>' if self.open_low else '>='} {bound(self.low)}"
        if self.high is not None and (value >= self.high if self.open_high else value > self.high):
            return f"must be {'<' if self.open_high else '<='} {bound(self.high)}"
        return None

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.open_low else '>='} {bound(self.low)}"
        if self.low is None:
            return f"{'<' if self.open_high else '<='} {bound(self.high)}"
        low, high = "(" if self.open_low else "[", ")" if self.open_high else "]"
        return f"in {low}{bound(self.low)}, {bound(self.high)}{high}"


def bound(number: float) -> str:
    """A range's bound as written: a whole number in full (2**32 - 1 is 4294967295, not :g's
    4.29497e+09, which reads as a different limit), any other as :g."""
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


@dataclass(frozen=True)
class Doc:
    """A one-line description of a parameter, shown by `harness list`."""

    text: str


@dataclass(frozen=True)
class Stronger:
    """Which way a parameter makes an edit stronger: "lower" (JPEG quality, a crop's kept part) or
    "higher" (a blur's kernel, a noise's sigma). Figures put the mildest edit on the left by it,
    whatever order a config lists its values in. Left out where neither way is stronger (a gamma or
    a scale factor can go both ways from "unchanged")."""

    direction: Literal["lower", "higher"]


@dataclass(frozen=True)
class Unit:
    """What a parameter's number counts, where it counts something ("px", "degrees", "grey levels"):
    a figure's x axis names it beside the swept parameter ("blur kernel (px)"). Left out of a ratio,
    a share or a level on a scale of its own (a scale factor, a JPEG quality)."""

    text: str


@dataclass(frozen=True)
class FileContent:
    """The parameter is a path to a file whose content the result is made from (an overlay's
    image, a model's weights): the hash cache keys the result by that content, so a file replaced
    under the same name is not taken for the old one. `names`: values that are names, not paths
    ('imagenet', 'builtin:logo'), never looked for on disk (a folder `imagenet` where the run
    starts is not the weights); a name ending in ':' stands for every value it begins."""

    names: tuple[str, ...] = ()

    def is_path(self, value) -> bool:
        return isinstance(value, str) and not any(
            value.startswith(name) if name.endswith(":") else value == name for name in self.names)


@dataclass(frozen=True)
class Check:
    """A check of a value beyond its type and range: `problem(value)` says what is wrong with it, or
    None. For what only the value's meaning tells (an overlay file that is not there), so a config
    naming it stops before any work instead of every image failing."""

    problem: Callable[[Any], str | None]


@dataclass(frozen=True)
class ParamSpec:
    name: str
    kind: Any  # int, float, str, bool, tuple, or a Literal[...] / union
    default: Any  # inspect.Parameter.empty when required
    range: Range | None
    doc: str
    stronger: str | None = None  # Stronger.direction, where one way is stronger
    reads_file: FileContent | None = None  # which values name a file read for its content
    check: Callable[[Any], str | None] | None = None  # Check.problem
    unit: str | None = None  # Unit.text, where the number counts something

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty

    def describe(self) -> str:
        text = f"{self.name}: {type_name(self.kind)}"
        if self.range:
            each = "each " if typing.get_origin(self.kind) in (list, tuple) else ""
            text += f" {each}{self.range}"
        if not self.required:
            text += f" = {self.default!r}"
        return text + (f"  {self.doc}" if self.doc else "")


def type_name(kind) -> str:
    origin = typing.get_origin(kind)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(kind))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(kind))
    if origin in (list, tuple):
        return f"list[{', '.join(type_name(a) for a in typing.get_args(kind) if a is not Ellipsis)}]"
    if kind is type(None):
        return "null"
    return getattr(kind, "__name__", str(kind))


def param_specs(target: Callable | type) -> list[ParamSpec]:
    """The parameters of a transform function (after `image`) or a hasher dataclass."""
    if dataclasses.is_dataclass(target):
        hints = typing.get_type_hints(target, include_extras=True)
        specs = []
        for field in dataclasses.fields(target):
            if not field.init:
                continue
            default = field.default
            if default is dataclasses.MISSING:
                default = (field.default_factory() if field.default_factory is not dataclasses.MISSING
                           else inspect.Parameter.empty)
            specs.append(_spec(field.name, hints[field.name], default))
        return specs
    hints = typing.get_type_hints(target, include_extras=True)
    params = list(inspect.signature(target).parameters.values())[1:]  # skip the image
    return [_spec(p.name, hints.get(p.name, Any), p.default) for p in params]


def file_params(target: Callable | type, params: dict) -> list[tuple[str, str]]:
    """(name, path) of each of `params` that names a file its result is made from (FileContent)."""
    return [(spec.name, params[spec.name]) for spec in param_specs(target)
            if spec.reads_file is not None and spec.reads_file.is_path(params.get(spec.name))]


def files_read(target: Callable | type, params: dict) -> list[tuple[str, str]]:
    """(name, path) of each file the transform or hasher `target` makes its result from with `params`:
    its own `files_read(params)` where it has one (a CNN's ImageNet weights in Keras' cache, loaded
    by their path), else file_params'."""
    own = getattr(target, "files_read", None)
    return own(params) if own is not None else file_params(target, params)


def _spec(name: str, hint, default) -> ParamSpec:
    rng, doc, stronger, reads_file, check, unit = None, "", None, None, None, None
    if typing.get_origin(hint) is Annotated:
        hint, *extras = typing.get_args(hint)
        for extra in extras:
            if isinstance(extra, Range):
                rng = extra
            elif isinstance(extra, Doc):
                doc = extra.text
            elif isinstance(extra, Stronger):
                stronger = extra.direction
            elif isinstance(extra, FileContent):
                reads_file = extra
            elif isinstance(extra, Check):
                check = extra.problem
            elif isinstance(extra, Unit):
                unit = extra.text
    return ParamSpec(name, hint, default, rng, doc, stronger, reads_file, check, unit)


def coerce(kind, value) -> tuple[bool, Any]:
    """Return (ok, value) with ints accepted where floats are expected."""
    origin = typing.get_origin(kind)
    if kind is Any:
        return True, value
    if origin is Literal:
        return literal_choice(kind, value)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(kind):
            ok, coerced = coerce(option, value)
            if ok:
                return True, coerced
        return False, value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False, value
        args = [a for a in typing.get_args(kind) if a is not Ellipsis]
        if origin is tuple and Ellipsis not in typing.get_args(kind) and len(args) != len(value):
            return False, value
        items = []
        for i, item in enumerate(value):
            ok, coerced = coerce(args[min(i, len(args) - 1)] if args else Any, item)
            if not ok:
                return False, value
            items.append(coerced)
        return True, tuple(items)
    if kind is type(None):
        return value is None, value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False, value
        try:  # (NaN and infinities pass, for the checks that name them)
            return True, float(value)
        except OverflowError:  # an int past any float (10**400, from Python)
            return False, value
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if kind is bool:
        return isinstance(value, bool), value
    return isinstance(value, kind), value


def literal_choice(kind, value) -> tuple[bool, Any]:
    """(ok, choice): `value` is one of the Literal's choices by type as well as by value. `in` alone
    takes True for 1 and 3.0 for 3 (they compare equal), and the transform then gets a bool or a float
    where OpenCV needs an int; an int stands for an equal float choice, as ints do for floats."""
    for choice in typing.get_args(kind):
        if type(value) is type(choice) and value == choice:
            return True, choice
        if type(choice) is float and type(value) is int and value == choice:
            return True, choice
    return False, value


def check_params(specs: list[ParamSpec], given: dict, where: str) -> dict:
    """Validate `given` against `specs`; return the full, typed parameter dict.

    Raises ValueError("<key>: <problem>") naming the parameter so the caller can
    prefix the config file and key path.
    """
    from harness.registry import suggest

    by_name = {s.name: s for s in specs}
    for key in given:
        if key not in by_name:
            close = suggest(str(key), list(by_name))
            hint = f"; did you mean '{close}'?" if close else (
                f"; known: {', '.join(by_name)}" if by_name else "; it takes no parameters")
            raise ValueError(f"{shortened(key, 60)}: unknown parameter of {where}{hint}")
    resolved = {}
    for spec in specs:
        if spec.name not in given:
            if spec.required:
                raise ValueError(f"{spec.name}: required parameter of {where} is missing")
            resolved[spec.name] = spec.default
            continue
        ok, value = coerce(spec.kind, given[spec.name])
        if not ok:
            raise ValueError(f"{spec.name}: expected {type_name(spec.kind)}, got {shown(given[spec.name])}")
        if not finite(value):  # NaN passes every range check (all its comparisons are false)
            where_in, bad = _first_not_finite(value)
            raise ValueError(f"{spec.name}{where_in}: {shown(bad)} is not a finite number")
        if spec.range is not None:
            _check_range(spec.name, spec.range, value)
        problem = spec.check(value) if spec.check is not None else None
        if problem:
            raise ValueError(f"{spec.name}: {problem}")
        resolved[spec.name] = value
    return resolved


def _check_range(name: str, bounds: Range, value) -> None:
    """ValueError("<name>: <value> must be ...") for a number out of `bounds`; for a list or tuple,
    each number in it is checked ("<name>[<i>]: ..."): a colour's channels are each 0..255."""
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_range(f"{name}[{index}]", bounds, item)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        problem = bounds.check(value)
        if problem:
            raise ValueError(f"{name}: {shown(value)} {problem}")


def finite(value) -> bool:
    """False when `value` is, or holds (in lists, tuples or mappings), a NaN or an infinity."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(finite(item) for item in value)
    if isinstance(value, dict):
        return all(finite(item) for item in value.values())
    return True


def _first_not_finite(value, path: str = "") -> tuple[str, object]:
    """Where in `value` (which `finite` refused) its first NaN or infinity is, as a key path's end
    ("[0]", ".aHash"), and that number: the error names the item, not the whole list or mapping."""
    if isinstance(value, (list, tuple)):
        items = ((f"{path}[{index}]", item) for index, item in enumerate(value))
    elif isinstance(value, dict):
        items = ((f"{path}.{key}", item) for key, item in value.items())
    else:
        return path, value
    return next(_first_not_finite(item, where) for where, item in items if not finite(item))


def unsupported_kind(kind) -> str | None:
    """Why `check_params` cannot check values of this annotation, or None when it can: the kinds are
    int, float, str, bool, None, Literal[...] of those, unions of them, and list[...] / tuple[...]
    of them. A plugin's parameters must be of these kinds."""
    origin = typing.get_origin(kind)
    if origin is Literal:
        bad = [a for a in typing.get_args(kind) if a is not None and not isinstance(a, (int, float, str))]
        return f"Literal of {shown(bad[0])}" if bad else None
    if origin in (typing.Union, types.UnionType):
        return next(filter(None, map(unsupported_kind, typing.get_args(kind))), None)
    if origin in (list, tuple):
        args = [a for a in typing.get_args(kind) if a is not Ellipsis]
        if not args:
            return f"{origin.__name__} without an item type"
        return next(filter(None, map(unsupported_kind, args)), None)
    if kind in (int, float, str, bool, type(None)):
        return None
    return type_name(kind) if kind is not inspect.Parameter.empty else "no annotation"
