"""YAML config -> typed, validated, immutable objects.

Every problem is a ConfigError naming the file, the key path
(``sweeps[3].b[0].jpeg.quality``) and what is wrong, raised before any work.
Paths in a config are relative to the directory the command runs from.

A config's YAML is read with limits (harness/safe_yaml.py). Plugins, the
`package.module:Name` references among its hashers and transform steps, are
imported and checked against their contract only with `import_plugins=True`
(what `run` does); without it (`validate`), they are listed in `Config.plugins`
and their parameters are left unchecked.
"""

from __future__ import annotations

import copy
import math
import os
import re
import sys
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any

from harness.errors import OPENCV_MAX_PIXELS, ConfigError, HarnessError, shortened, shown
from harness.params import Doc, Range, check_params, finite, param_specs
from harness.registry import UnknownName, expect_plugins, suggest
from harness.schema import MAX_PANELS, PREVIEW_COLUMNS

VALUE = "$value"  # placeholder in transform parameters, replaced by each swept value

Step = tuple[str, tuple[tuple[str, Any], ...]]  # (transform name, sorted (param, value) pairs)


@dataclass(frozen=True)
class PairSpec:
    """One row of the article's table: a family, a swept value and the two sides' transform chains."""

    family: str
    value: Any  # None for families without a sweep
    label: str
    a: tuple[Step, ...]
    b: tuple[Step, ...]


def preview_pairs(pairs) -> list[PairSpec]:
    """The pairs previews.png shows, a family's together: those of the first MAX_PANELS families,
    and of a family of more than PREVIEW_COLUMNS pairs, that many, evenly spaced from its first
    (mildest) to its last (strongest). The runner keeps thumbnails of these alone: of every pair,
    a sweep of 10,000 values kept about a gigabyte of them."""
    families: dict[str, list[PairSpec]] = {}
    for pair in pairs:
        if pair.family in families or len(families) < MAX_PANELS:
            families.setdefault(pair.family, []).append(pair)
    chosen = []
    for members in families.values():
        if len(members) > PREVIEW_COLUMNS:  # a step over 1: the rounded positions are distinct
            step = (len(members) - 1) / (PREVIEW_COLUMNS - 1)
            members = [members[round(k * step)] for k in range(PREVIEW_COLUMNS)]
        chosen += members
    return chosen


@dataclass(frozen=True)
class HasherSpec:
    id: str  # the column name in every table; the registry name unless the config sets `id`
    name: str  # registry name or plugin import path
    params: tuple[tuple[str, Any], ...]

    def build(self):
        from harness.hashers import HASHERS
        return HASHERS.get(self.name)(**dict(self.params))


@dataclass(frozen=True)
class ImpostorSpec:
    """How the baseline of distances between different images is drawn."""

    max_pairs: Annotated[int, Range(1, 10_000_000), Doc(
        "source-image pairs per hasher: all of them when there are at most this many, else a seeded sample")] = 100_000
    transformed: Annotated[bool, Doc("also compare each edited copy with other source images")] = True
    per_variant: Annotated[int, Range(1, 1000), Doc(
        "other source images each edited copy is compared with (a seeded sample)")] = 5
    duplicates: Annotated[tuple[tuple[str, ...], ...], Doc(
        "groups of images known to be copies of each other (names as in images.csv, or image ids): "
        "pairs inside a group are not counted as impostors")] = ()
    exclude_below: Annotated[dict, Doc(
        "per hasher id, a distance: pairs of images closer than it for that hasher are dropped from "
        "every hasher's impostors: {pHash: 4}")] = field(default_factory=dict)

    def __post_init__(self):
        for i, group in enumerate(self.duplicates):
            if len(group) < 2:
                raise ValueError(f"duplicates: group {i} lists {len(group)} image; a group needs at least two")
        for hasher, value in self.exclude_below.items():
            if as_distance(value) is None:  # a ValueError: _section turns it into one ConfigError line
                raise ValueError(f"exclude_below: {hasher}: expected a distance >= 0, got {shown(value)}")


def whole_number(value, source: str, key: str, low: int, high: int | None = None, why: str = ""):
    """An optional whole-number setting (None: not given), checked to lie in [low, high] (`why`: the
    reason for `high`); returned as it is."""
    if value is None:
        return None
    number = _typed(value, int, source, key)
    if high is None and number < low:
        raise ConfigError(source, key, f"must be >= {low}, got {shown(value)}")
    if high is not None and not low <= number <= high:
        raise ConfigError(source, key, f"must be from {low} to {high:,}{why}, got {shown(value)}")
    return value


MAX_PIXELS_RANGE = (1, OPENCV_MAX_PIXELS, " (OpenCV's own limit)")  # whole_number's low, high and why


def as_distance(value) -> float | None:
    """A distance given in a config (a threshold) as a float, or None unless it is a finite number
    >= 0 (an integer too large for a float included)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:
        return None
    return value if 0 <= value < float("inf") else None


@dataclass(frozen=True)
class DetectionSpec:
    """Operating points for the detection metrics."""

    fpr: Annotated[tuple[float, ...], Doc("target false-positive rates; thresholds come from the impostors")] = (
        0.01, 0.001)
    thresholds: Annotated[dict, Doc("fixed thresholds to evaluate, per hasher id: {pHash: 10}")] = \
        field(default_factory=dict)
    min_tpr: Annotated[float, Range(0, 1), Doc("detection rate the summary calls 'holds up'")] = 0.95
    precision: Annotated[tuple[float, ...], Doc(
        "target precisions: per hasher, the threshold of highest recall whose matches are at least this "
        "share genuine (perception's recall at a precision), ties counted together")] = ()

    def __post_init__(self):
        if not self.fpr or any(not 0 < rate < 1 for rate in self.fpr):
            raise ValueError(f"fpr: each rate must be in (0, 1), got {shown(list(self.fpr))}")
        if any(not 0 < target <= 1 for target in self.precision):
            raise ValueError(f"precision: each target must be in (0, 1], got {shown(list(self.precision))}")
        for hasher, value in self.thresholds.items():
            if as_distance(value) is None:
                raise ValueError(f"thresholds: {hasher}: expected a distance >= 0, got {shown(value)}")
        for key, targets in (("fpr", self.fpr), ("precision", self.precision)):
            _check_unique_points(key, targets)


def _check_unique_points(key: str, targets) -> None:
    """Each operating point once: its name (metrics: "fpr=0.01", six significant digits) is a row's
    key in thresholds.csv and detection.csv, so 0.1 and 0.10 would make two rows of one point."""
    seen = set()
    for target in targets:
        point = f"{key}={target:g}"
        if point in seen:
            raise ValueError(f"{key}: a value is listed twice ({point})")
        seen.add(point)


# report.previews: draw previews.png, but show it in no summary: the images may not be redistributed,
# so the set is shared without it (the committed reports/article), and a summary linking it is broken there.
LOCAL_PREVIEWS = "local"


@dataclass(frozen=True)
class Config:
    source: str  # the YAML file
    name: str
    description: str
    output: str
    seed: int
    images: tuple[str, ...]
    fallback_image: str | None
    pairs: tuple[PairSpec, ...]
    hashers: tuple[HasherSpec, ...]
    previews: bool
    limit: int | None = None
    max_pixels: int | None = None  # None: harness.images.DEFAULT_MAX_PIXELS
    max_side: int | None = None  # larger images are downscaled to this longest side before the sweeps
    impostors: ImpostorSpec = ImpostorSpec()
    detection: DetectionSpec = DetectionSpec()
    raw: dict = field(repr=False, compare=False, default_factory=dict)
    # The plugin references, (kind, import path, key path); and whether they were imported and their
    # parameters checked. A config parsed without importing them is for `validate` only, never run.
    plugins: tuple[tuple[str, str, str], ...] = ()
    plugins_imported: bool = True
    # The option that replaced the config's images (--images; the API's `images`), which errors about
    # them name; None: they are the config's own, named by its file and key.
    images_option: str | None = field(default=None, compare=False)

    def reproducible(self) -> dict:
        """The config as YAML data that `run` accepts and that reproduces this run's tables: the
        user's own config with the command line's choices written in (the images, the hashers
        kept, in their order, and the output directory)."""
        raw = copy.deepcopy(self.raw)  # the caller's to change: `raw` stays this config's
        raw["name"] = self.name
        raw["output"] = self.output
        raw["images"] = list(self.images)
        from harness.images import fallback_in_use

        if fallback_in_use(self.images, self.fallback_image):  # the stand-in is what the tables were made from
            raw["images"] = [self.fallback_image]
        if self.fallback_image is None or fallback_in_use(self.images, self.fallback_image):
            raw.pop("fallback_image", None)
        kept = {h.id: h for h in self.hashers}
        by_id = {}
        for entry in raw.get("hashers", []):
            hasher_id = entry if isinstance(entry, str) else entry.get("id", entry.get("name"))
            by_id[hasher_id] = entry
        raw["hashers"] = [by_id[h] for h in kept]
        return settings_of_hashers(raw, set(kept))


class Snapshot:
    """A dataclass field holding a config's data as a record of what was run: a deep copy is
    taken when it is set and handed out each time it is read, so that neither the dict it was
    made from nor the dict a caller reads (and edits, to run again) can change the record."""

    def __set_name__(self, owner, name: str):
        self.private = "_" + name

    def __get__(self, obj, owner=None):
        if obj is None:  # read on the class: dataclasses asks for a default, and there is none
            raise AttributeError(self.private[1:])
        return copy.deepcopy(getattr(obj, self.private))

    def __set__(self, obj, value):
        setattr(obj, self.private, copy.deepcopy(value))


def hasher_ids(raw) -> set[str]:
    """The ids of a config's hashers, read from its data as it is (parse_config checks it)."""
    entries = raw.get("hashers") if isinstance(raw, dict) else None
    ids = set()
    for entry in entries if isinstance(entries, list) else []:
        hasher_id = entry.get("id", entry.get("name")) if isinstance(entry, dict) else entry
        if isinstance(hasher_id, str):
            ids.add(hasher_id)
    return ids


def settings_of_hashers(raw: dict, kept: set[str]) -> dict:
    """`raw` (a config's data) with its settings per hasher id (detection.thresholds,
    impostors.exclude_below) for the hashers `kept` only: those of hashers the command line left
    out go. They changed nothing (a hasher that did not run has no distance to compare or exclude),
    and a config naming a hasher it does not have is refused."""
    for section, key in (("detection", "thresholds"), ("impostors", "exclude_below")):
        if isinstance(raw.get(section), dict) and isinstance(raw[section].get(key), dict):
            raw = {**raw, section: {**raw[section], key: {h: v for h, v in raw[section][key].items() if h in kept}}}
    return raw


def config_section(key: str, given, source: str):
    """The `detection` or `impostors` section of a config (None: the defaults), validated as in a
    config: how a saved run's config is read back."""
    return _section({"detection": DetectionSpec, "impostors": ImpostorSpec}[key], given, source, key)


TOP_KEYS = {"name", "description", "output", "seed", "images", "fallback_image", "limit", "max_pixels", "max_side",
            "sweeps",
            "hashers",
            "impostors", "detection", "report"}
SWEEP_KEYS = {"family", "label", "labels", "values", "a", "b"}


def load_config(path: str, images: list[str] | None = None, hashers: list[str] | None = None,
                import_plugins: bool = True, hashers_option: str = "--hashers",
                images_option: str = "--images", output: str | None = None, names_folder: bool = False) -> Config:
    """Read and validate a config; `images` / `hashers` / `output` are the CLI's overrides
    (`images_option` and `hashers_option` are the names their errors give them). With
    `import_plugins=False` no plugin is imported (see the module's docstring)."""
    from harness.safe_yaml import read_config

    return parse_config(read_config(path), path, images, hashers, import_plugins=import_plugins,
                        hashers_option=hashers_option, images_option=images_option, output=output,
                        names_folder=names_folder)


def check_text(raw: Any, source: str, images: Any = None) -> None:
    """Every string of a config (keys too, and `images`, the caller's override) can be a path and is
    written back into UTF-8 files: a NUL character (no path holds one; the system refuses it) or a
    lone surrogate (bytes that are not UTF-8) is a ConfigError naming the key, not a crash later.
    A dict from Python (the API's) is held to a YAML config's depth too: a value that contains
    itself would otherwise be walked until memory ran out. (Its size is the caller's: a list of
    200,000 image paths is a fair argument.)"""
    from harness.safe_yaml import MAX_DEPTH

    stack: list[tuple[str, Any, int]] = [("", raw, 0)] + ([("images", images, 1)] if images is not None else [])
    while stack:
        key, value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ConfigError(source, key, f"nests deeper than {MAX_DEPTH} levels (does a value contain itself?)")
        if isinstance(value, dict):
            for name, item in value.items():
                named = str(name) if str(name).isprintable() else repr(name)  # a NUL is not printed as it is
                named = f"{key}.{named}" if key else named
                stack += [(named, name if isinstance(name, str) else None, depth + 1), (named, item, depth + 1)]
        elif isinstance(value, (list, tuple)):
            stack += [(f"{key}[{i}]", item, depth + 1) for i, item in enumerate(value)]
        elif isinstance(value, str):
            if "\0" in value:
                raise ConfigError(source, key, "holds a NUL character, which no path or name can hold")
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    raise ConfigError(source, key, f"is not valid UTF-8: {shown(value)}") from None


def plain_data(raw: dict, source: str) -> dict:
    """A config's data as a copy of its own in plain YAML types, whoever built it: a dict built in
    Python may hold a path as a `pathlib.Path`, a list as a tuple or a 1-D NumPy array and a number
    as a NumPy scalar (np.int64(3)), which become a str, a list and a Python number here, so that
    the checks accept them and config.yaml and run.json stay plain YAML and JSON. YAML's own data is unchanged. The
    copy is deep: a caller who edits their dict (or its lists) afterwards changes no config made
    from it. Nesting deeper than a YAML config may is a ConfigError, as in check_text."""
    from harness.safe_yaml import MAX_DEPTH

    numpy = sys.modules.get("numpy")  # a NumPy scalar can only exist once NumPy is imported

    def plain(value, key: str, depth: int):
        if depth > MAX_DEPTH:
            raise ConfigError(source, key, f"nests deeper than {MAX_DEPTH} levels (does a value contain itself?)")
        if isinstance(value, dict):
            return {name: plain(item, f"{key}.{name}" if key else str(name), depth + 1) for name, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(item, f"{key}[{i}]", depth + 1) for i, item in enumerate(value)]
        if numpy is not None and isinstance(value, numpy.ndarray) and value.ndim == 1:  # np.linspace(10, 90, 5)
            return [plain(item, f"{key}[{i}]", depth + 1) for i, item in enumerate(value)]
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if numpy is not None and isinstance(value, numpy.floating) and value.dtype.itemsize < 8:
            # The decimal it is shown as (np.float32(0.01) is 0.009999999776 as a Python float: a rate
            # labelled fpr=0.01 allowed no false match of 100 where 0.01 allows one).
            return float(str(value))
        if numpy is not None and isinstance(value, numpy.generic):
            return value.item()
        return value

    return plain(raw, "", 0)


def parse_config(raw: Any, source: str, images: list[str] | None = None,
                 hashers: list[str] | None = None, import_plugins: bool = True,
                 hashers_option: str = "--hashers", images_option: str = "--images",
                 output: str | None = None, names_folder: bool = False) -> Config:
    """A config's data (YAML's, or a dict built in Python: see plain_data) validated into a Config,
    which keeps a copy of its own (`raw`). `output`: the command line's --out; `names_folder`: the
    command line writes to reports/NAME when no output is given (the API writes only where `save`
    is told, so there a name is only a title)."""
    if not isinstance(raw, dict):
        raise ConfigError(source, "", "the config must be a mapping of keys (name, images, sweeps, hashers, ...)")
    raw = plain_data(raw, source)
    check_text(raw, source, images)
    _no_unknown_keys(raw, TOP_KEYS, source, "")
    for key in ("images", "sweeps", "hashers"):
        if key not in raw:
            raise ConfigError(source, key, "missing; a config needs images, sweeps and hashers"
                              + ("" if {"images", "sweeps"} & set(raw) else
                                 " (a leak audit's config needs splits: python -m harness leaks CONFIG)"))

    names_output = names_folder and output is None and "output" not in raw  # else --out, or the config's
    name = run_name(raw.get("name", os.path.splitext(os.path.basename(source))[0]), source, names_output)
    output = output_path(output if output is not None else raw.get("output", output_of_name(name)), source)
    seed = _typed(raw.get("seed", 0), int, source, "seed")
    if not 0 <= seed < 1 << 64:  # numpy's generators take seeds >= 0; 64 bits are plenty
        raise ConfigError(source, "seed", f"must be from 0 to 2**64 - 1, got {shown(seed)}")
    description = _typed(raw.get("description", ""), str, source, "description")

    # An empty `report:` key (None) is the defaults, as an empty `detection:` or `impostors:` is
    # (_section); false, 0 or '' is not a mapping, and was taken for one in silence.
    report = raw.get("report")
    report = {} if report is None else report
    if not isinstance(report, dict):
        raise ConfigError(source, "report", f"expected a mapping, got {shown(report)}")
    _no_unknown_keys(report, {"previews"}, source, "report.")
    # `local`: drawn as for true, but the summary does not show it (see summary.local_previews)
    previews = report.get("previews", True)
    if previews is not True and previews is not False and previews != LOCAL_PREVIEWS:
        raise ConfigError(source, "report.previews", f"expected true, false or {LOCAL_PREVIEWS}, got {shown(previews)}")
    previews = previews is not False

    fallback = raw.get("fallback_image")
    if fallback is not None:
        _typed(fallback, str, source, "fallback_image")
    if images is not None:
        image_list, fallback = tuple(images), None  # the user's own images replace the config's
    else:
        image_list = tuple(_string_list(raw["images"], source, "images"))
    if fallback is not None:
        from harness.images import check_source
        _check(lambda: check_source(fallback), source, "fallback_image")

    limit = whole_number(raw.get("limit"), source, "limit", 1)
    max_pixels = whole_number(raw.get("max_pixels"), source, "max_pixels", *MAX_PIXELS_RANGE)
    max_side = whole_number(raw.get("max_side"), source, "max_side", 16)

    plugins: list[tuple[str, str, str]] = []
    if import_plugins:
        expect_plugins([raw["sweeps"], raw["hashers"]])  # all of them, before the first is imported
    pairs = _parse_sweeps(raw["sweeps"], source, seed, import_plugins, plugins)
    hasher_specs = _parse_hashers(raw["hashers"], source, import_plugins, plugins)
    impostors = _section(ImpostorSpec, raw.get("impostors"), source, "impostors")
    detection = _section(DetectionSpec, raw.get("detection"), source, "detection")
    for hasher_id in detection.thresholds:
        if hasher_id not in {h.id for h in hasher_specs}:
            close = suggest(str(hasher_id), [h.id for h in hasher_specs])
            raise ConfigError(source, f"detection.thresholds.{hasher_id}",
                              "not a hasher of this config" + (f"; did you mean '{close}'?" if close else ""))
    for hasher_id in impostors.exclude_below:
        if hasher_id not in {h.id for h in hasher_specs}:
            close = suggest(str(hasher_id), [h.id for h in hasher_specs])
            raise ConfigError(source, f"impostors.exclude_below.{hasher_id}",
                              "not a hasher of this config" + (f"; did you mean '{close}'?" if close else ""))
    if hashers is not None:
        hasher_specs = _select_hashers(hasher_specs, hashers, source, hashers_option)

    return Config(source=source, name=name, description=description, output=output, seed=seed,
                  images=image_list, fallback_image=fallback, pairs=tuple(pairs),
                  hashers=tuple(hasher_specs), previews=previews, limit=limit, max_pixels=max_pixels,
                  max_side=max_side, impostors=impostors, detection=detection, raw=raw, plugins=tuple(plugins),
                  plugins_imported=import_plugins, images_option=images_option if images is not None else None)


def _section(cls, given, source, key):
    """A mapping of options validated against a dataclass's declared fields."""
    if given is None:
        return cls()
    if not isinstance(given, dict):
        raise ConfigError(source, key, f"expected a mapping, got {shown(given)}")
    try:
        return cls(**check_params(param_specs(cls), given, key))
    except ValueError as exc:
        param, _, problem = str(exc).partition(": ")
        raise ConfigError(source, f"{key}.{shortened(param, 60)}", problem) from None


def _check(func, source, key):
    try:
        return func()
    except (ValueError, UnknownName) as exc:
        raise ConfigError(source, key, str(exc)) from None


def run_name(value, source: str, names_output: bool) -> str:
    """`name`: not empty (it titles the summary); and where it names the output directory
    (`names_output`: no output given, so reports/NAME), one folder's name: an empty one wrote into
    reports/ itself, and a separator (`a/b`, `../x`) put the outputs elsewhere. A name with a
    given output is only a title, and may hold any text."""
    name = _typed(value, str, source, "name")
    if not name.strip():
        raise ConfigError(source, "name", f"expected a name (it titles the summary), got {shown(name)}")
    if names_output and not _plain_folder(name):
        raise ConfigError(source, "name", f"expected a plain name, without '/' (the outputs go to reports/NAME, "
                                          f"unless output is given), got {shown(name)}")
    return name


def _plain_folder(name: str) -> bool:
    return name not in (".", "..") and not any(sep in name for sep in ("/", os.sep, os.altsep) if sep)


def output_of_name(name: str) -> str:
    """reports/NAME, where a config gives no output. A name that is no plain folder name (the API
    takes any title) has its separators made "_": its resolved config, run again from the command
    line, wrote to reports/../../etc."""
    folder = name if _plain_folder(name) else "_" * len(name) if name in (".", "..") else \
        "".join("_" if c in ("/", os.sep, os.altsep) else c for c in name)
    return os.path.join("reports", folder)


def output_path(value, source: str) -> str:
    """`output`: a directory; an empty one is refused as `--out ''` is (it would be the current directory)."""
    output = _typed(value, str, source, "output")
    if not output.strip():
        raise ConfigError(source, "output", "empty; give a directory, or leave output out for reports/NAME")
    return output


def _typed(value, kind, source, key):
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(source, key, f"expected {kind.__name__}, got {shown(value)}")
    return value


def _string_list(value, source, key) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ConfigError(source, key, f"expected a non-empty list, got {shown(value)}")
    for i, item in enumerate(value):
        _typed(item, str, source, f"{key}[{i}]")
    return value


def _no_unknown_keys(mapping: dict, allowed: set, source: str, prefix: str) -> None:
    for key in mapping:
        if key not in allowed:
            close = suggest(str(key), sorted(allowed))
            hint = f"; did you mean '{close}'?" if close else f"; allowed: {', '.join(sorted(allowed))}"
            raise ConfigError(source, f"{prefix}{key}", f"unknown key{hint}")


# --- sweeps ---------------------------------------------------------------

def _parse_sweeps(sweeps, source, seed: int, import_plugins: bool, plugins: list) -> list[PairSpec]:
    if not isinstance(sweeps, list) or not sweeps:
        raise ConfigError(source, "sweeps", "expected a non-empty list of sweeps")
    pairs, families = [], set()
    for i, sweep in enumerate(sweeps):
        key = f"sweeps[{i}]"
        if not isinstance(sweep, dict):
            raise ConfigError(source, key, f"expected a mapping with family, a/b and values, got {shown(sweep)}")
        _no_unknown_keys(sweep, SWEEP_KEYS, source, key + ".")
        family = _typed(sweep.get("family"), str, source, key + ".family")
        if not family.strip():  # it names the family in every table and figure
            raise ConfigError(source, key + ".family", f"expected a name, got {shown(family)}")
        if family in families:
            raise ConfigError(source, key + ".family", f"family {shown(family)} is declared twice")
        families.add(family)
        a = _parse_side(sweep.get("a"), source, key + ".a", import_plugins, plugins)
        b = _parse_side(sweep.get("b"), source, key + ".b", import_plugins, plugins)
        uses_value = any(v == VALUE for _, params, _ in a + b for v in params.values())
        values = _parse_values(sweep.get("values"), source, key + ".values")
        if values is not None and not uses_value:
            raise ConfigError(source, key + ".values",
                              f"values are given but no transform parameter is '{VALUE}'")
        if values is None and uses_value:
            raise ConfigError(source, key, f"a parameter is '{VALUE}' but the sweep has no values")
        labels = sweep.get("labels")
        if labels is not None:
            labels = _string_list(labels, source, key + ".labels")
            if len(labels) != len(values or [None]):
                raise ConfigError(source, key + ".labels",
                                  f"{len(labels)} labels for {len(values or [None])} values")
            for j, written in enumerate(labels):
                if not written.strip():  # it names the pair in every table and figure, as family does
                    raise ConfigError(source, f"{key}.labels[{j}]", f"expected a label, got {shown(written)}")
                field = re.search(r"\{[^{}]*\}", written)
                if field:  # 'low {value}' was kept as written
                    raise ConfigError(source, f"{key}.labels[{j}]", f"{shown(field.group())}: labels are written as "
                                                                    "they are; {value} is replaced in label only")
        template = _typed(sweep.get("label", family if values is None else family + " {value}"),
                          str, source, key + ".label")
        other = next((field for field in re.findall(r"\{[^{}]*\}", template) if field != "{value}"), None)
        if other is not None:  # a mistyped {valu} was kept as it is, in every label of the family
            raise ConfigError(source, key + ".label", f"{shown(other)} is no placeholder: {{value}} is the only one "
                                                      "(the sweep's value in each pair's label)")
        if labels is None and not template.replace("{value}", "" if values is None else "v").strip():
            raise ConfigError(source, key + ".label", f"expected a label, got {shown(template)}")
        if values is None and "{value}" in template:  # 'X {value}' was the label 'X '
            raise ConfigError(source, key + ".label", "{value} in the label of a sweep without values")
        if len(pairs) + len(values or [None]) > MAX_PAIRS:  # a range is 3 values of YAML, any number of pairs
            raise ConfigError(source, key, f"the sweeps make {len(pairs) + len(values or [None]):,} pairs up to "
                                           f"here; at most {MAX_PAIRS:,} in all")
        seen: dict[str, int] = {}
        for j, value in enumerate(values if values is not None else [None]):
            label = labels[j] if labels else template.replace("{value}", format_value(value))
            if label in seen:  # two rows of every table that nothing tells apart
                where = key + (".labels" if labels else ".values")
                raise ConfigError(source, f"{where}[{j}]", f"gives the pair label {shown(label)} of "
                                                           f"{where}[{seen[label]}] again; each pair needs its own")
            seen[label] = j
            pairs.append(PairSpec(family, value, label, _resolve_side(a, value, source, seed, import_plugins),
                                  _resolve_side(b, value, source, seed, import_plugins)))
    return pairs


def _parse_side(side, source, key, import_plugins: bool, plugins: list) -> list[tuple[str, dict, str]]:
    """A side is a transform name, a {name: params} mapping, or a list of those (a chain)."""
    if side is None:
        return []
    steps = side if isinstance(side, list) else [side]
    parsed = []
    for i, step in enumerate(steps):
        step_key = f"{key}[{i}]" if isinstance(side, list) else key
        if isinstance(step, str):
            name, params = step, {}
        elif isinstance(step, dict) and len(step) == 1:
            (name, params), = step.items()
            params = {} if params is None else params
            if not isinstance(params, dict):
                raise ConfigError(source, f"{step_key}.{name}", f"expected a mapping of parameters, got {shown(params)}")
        else:
            raise ConfigError(source, step_key,
                              f"expected a transform name or {{name: {{param: value}}}}, got {shown(step)}")
        from harness.transforms import TRANSFORMS
        if not isinstance(name, str):
            raise ConfigError(source, step_key, f"a transform's name must be a string, got {shown(name)}")
        if TRANSFORMS.is_plugin(name):
            _check(lambda: TRANSFORMS.plugin_reference(name), source, step_key)
            plugins.append(("transform", name, step_key))
        if import_plugins or not TRANSFORMS.is_plugin(name):
            _check(lambda: TRANSFORMS.get(name), source, step_key)
        parsed.append((name, params, step_key))
    return parsed


def _resolve_side(steps, value, source, seed: int, import_plugins: bool) -> tuple[Step, ...]:
    """Substitute the swept value, give random transforms the config's seed unless
    the step sets its own, and validate every step's parameters (a plugin's only when
    it is imported)."""
    from harness.transforms import TRANSFORMS
    resolved = []
    for name, params, step_key in steps:
        given = {k: (value if v == VALUE else v) for k, v in params.items()}
        if not import_plugins and TRANSFORMS.is_plugin(name):
            resolved.append((name, tuple(given.items())))
            continue
        specs = param_specs(TRANSFORMS.get(name))
        if any(spec.name == "seed" for spec in specs):
            given.setdefault("seed", seed)
        try:
            full = check_params(specs, given, f"transform '{name}'")
        except ValueError as exc:
            param, _, problem = str(exc).partition(": ")
            param_name = param.partition("[")[0]  # "color[0]": an item of the parameter
            if params.get(param_name) == VALUE and any(spec.name == param_name for spec in specs):
                problem += f" (the swept value {shown(value)})"
            raise ConfigError(source, f"{step_key}.{name}.{shortened(param, 60)}", problem) from None
        if TRANSFORMS.is_plugin(name):
            # A plugin's cpu_exact (a function of the parameters, or not a bool) is checked here, where the
            # step's key is known: the runner's check of the chains said only which transform it was.
            from harness.transforms import cpu_exact
            try:
                cpu_exact(name, full)
            except HarnessError as exc:
                swept = VALUE in params.values()
                raise ConfigError(source, step_key, str(exc) + (f" (the swept value {shown(value)})" if swept
                                                                else "")) from None
        resolved.append((name, tuple(sorted(full.items()))))
    return tuple(resolved)


MAX_VALUES = 100_000  # values of one sweep's range, computed before the total is checked
MAX_PAIRS = 10_000  # pairs of all sweeps together: each is made and hashed for every image


def _parse_values(values, source, key) -> list | None:
    """A list of numbers/strings, or a range {start, stop, step} with stop included."""
    if values is None:
        return None
    if isinstance(values, dict):
        _no_unknown_keys(values, {"start", "stop", "step"}, source, key + ".")
        for part in ("start", "stop", "step"):
            if part not in values:
                raise ConfigError(source, f"{key}.{part}", "missing; a range needs start, stop and step")
            if isinstance(values[part], bool) or not isinstance(values[part], (int, float)) \
                    or not finite(values[part]):
                raise ConfigError(source, f"{key}.{part}", f"expected a finite number, got {shown(values[part])}")
        start, stop, step = values["start"], values["stop"], values["step"]
        # In decimal, as the numbers are written: in binary -0.9 + 3 x 0.3 is -1.1e-16, not 0, and
        # 0.1 + 2 x 0.1 is 0.30000000000000004 (rounding to a number of decimals or digits instead
        # made a 1e-11 step a range of zeros, or kept the -1.1e-16). Exact for ints, of any size.
        first, last, stride = (Decimal(repr(values[p])) for p in ("start", "stop", "step"))
        if stride == 0 or (last - first) / stride < 0:
            raise ConfigError(source, f"{key}.step", f"step {shown(step)} never goes from {shown(start)} to {shown(stop)}")
        steps = (last - first) / stride
        if steps > MAX_VALUES:
            raise ConfigError(source, key, f"the range has more than {MAX_VALUES} values")
        count = int(steps) + 1  # stop included where a whole number of steps reaches it
        as_int = all(isinstance(values[p], int) for p in ("start", "stop", "step"))
        made = [start + i * step if as_int else float(first + i * stride) + 0.0 for i in range(count)]  # no -0.0
        if len(set(made)) != len(made):  # steps finer than a float tells apart (1000 + 1e-13)
            raise ConfigError(source, f"{key}.step", f"step {shown(step)} makes values that are the same number")
        return made
    if not isinstance(values, list) or not values:
        raise ConfigError(source, key, f"expected a non-empty list or {{start, stop, step}}, got {shown(values)}")
    if len(values) > MAX_VALUES:
        raise ConfigError(source, key, f"{len(values)} values; at most {MAX_VALUES}")
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(source, f"{key}[{i}]", f"expected a number or a string, got {shown(value)}")
        if not finite(value):
            raise ConfigError(source, f"{key}[{i}]", f"expected a finite number, got {shown(value)}")
    # Numbers by value (1 and 1.0, 0.0 and -0.0 make the same pair), texts as texts ("1" is not 1)
    if len({value if not isinstance(value, str) else ("text", value) for value in values}) != len(values):
        raise ConfigError(source, key, "a value is listed twice")
    return values


def format_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return repr(value)  # keep "2.0": the YAML said a float
    return str(value)


# --- hashers --------------------------------------------------------------

def _parse_hashers(hashers, source, import_plugins: bool, plugins: list) -> list[HasherSpec]:
    from harness.hashers import HASHERS
    if not isinstance(hashers, list) or not hashers:
        raise ConfigError(source, "hashers", "expected a non-empty list of hasher names or {name: ..., params}")
    if import_plugins:
        expect_plugins(hashers)  # (a leak audit's: it has no sweeps)
    specs, ids = [], {}  # ids: each id case-folded -> as the config spells it
    registered = {known.casefold(): known for known in HASHERS}
    for i, entry in enumerate(hashers):
        key = f"hashers[{i}]"
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict) or "name" not in entry:
            raise ConfigError(source, key, f"expected a hasher name or a mapping with 'name', got {shown(entry)}")
        params = dict(entry)
        name = _typed(params.pop("name"), str, source, key + ".name")
        hasher_id = _typed(params.pop("id", name), str, source, key + ".id")
        if not hasher_id.strip():
            raise ConfigError(source, key + ".id", "empty; a hasher's id names its column in every table")
        same = registered.get(hasher_id.casefold())
        if hasher_id != name and same is not None and same != name:
            # One name for one thing: the column would read as that hasher's, `--hashers` and `--threshold`
            # given its name would pick this one, and a hash table named for it would be taken as this one's
            # (one letter's case apart, too: 'phash' for imagehash.dhash reads as pHash).
            but = "" if same == hasher_id else f", but for case ({same})"
            raise ConfigError(source, key + ".id", f"{shown(hasher_id)} is the name of another hasher harness "
                                                   f"has{but}; a column of {shortened(name, 120)} needs an id of its own")
        if HASHERS.is_plugin(name):
            _check(lambda: HASHERS.plugin_reference(name), source, key + ".name")
            plugins.append(("hasher", name, key + ".name"))
            if not import_plugins:
                _claim_id(hasher_id, ids, source, key)
                specs.append(HasherSpec(hasher_id, name, tuple(params.items())))
                continue
        cls = _check(lambda: HASHERS.get(name), source, key + ".name")
        problem = hasher_plugin_problem(cls) if HASHERS.is_plugin(name) else None
        if problem:
            raise ConfigError(source, key + ".name", f"hasher plugin '{shortened(name, 120)}' {problem}")
        try:
            full = check_params(param_specs(cls), params, f"hasher '{name}'")
            cls(**full)  # runs the hasher's own checks (e.g. a weights file that must exist)
        except ValueError as exc:
            param, _, problem = str(exc).partition(": ")
            raise ConfigError(source, f"{key}.{shortened(param, 60)}", problem) from None
        _claim_id(hasher_id, ids, source, key)
        specs.append(HasherSpec(hasher_id, name, tuple(full.items())))
    return specs


def _claim_id(hasher_id: str, ids: dict[str, str], source, key: str) -> None:
    """Record a hasher's id, or refuse one that another hasher of the config has, in any case: of
    ids that differ only in case ('Mean' and 'mean'), a reader, `--hashers` and `--threshold` tell
    the columns apart by one letter, and a leak audit's hash tables, one file name on a
    case-insensitive file system (macOS's, Windows's), by the '-2' given to the second."""
    same = ids.get(hasher_id.casefold())
    if same == hasher_id:
        raise ConfigError(source, key + ".id", f"two hashers are called {shown(hasher_id)}; give one an `id`")
    if same is not None:
        raise ConfigError(source, key + ".id", f"{shown(hasher_id)} and {shown(same)} differ only in case; "
                                               "give one an `id` of its own")
    ids[hasher_id.casefold()] = hasher_id


def hasher_plugin_problem(cls) -> str | None:
    """What a hasher plugin class that passed the registry's check (a concrete Hasher dataclass with
    the class attributes) still gets wrong, or None: the contract as data, checked before any work,
    so that a plugin cannot fail in the middle of a run (a distance_max of 0 or "x" divides every
    distance). Decorated with @dataclass itself (else its own annotations are not parameters),
    name, description and distance_kind strings, distance_max a positive finite number, and every
    field of a kind harness.params can check."""
    import dataclasses

    from harness.hashers.base import Hasher
    from harness.params import unsupported_kind

    if "__dataclass_fields__" not in vars(cls):
        return "must itself be decorated with @dataclass(frozen=True): its fields are its YAML parameters"
    for field_ in dataclasses.fields(cls):
        # A field is a parameter, and @dataclass makes its default the class's attribute of that name, and
        # its value the instance's: a parameter `symmetric` (a mirroring, say) became Hasher.symmetric, the
        # flag harness reads, set by the config (cpu_exact: false made hashers.csv say "no"); one named
        # as a method (distance, spec) replaced it.
        if not field_.name.startswith("__") and hasattr(Hasher, field_.name):
            name = field_.name
            what = (f"Hasher's method '{name}', which it would replace" if callable(getattr(Hasher, name)) else
                    f"Hasher's class attribute '{name}' (`{name} = ...` in the class body), which harness reads "
                    "and the config's value would set")
            return f"has a parameter (a field) named '{name}': that is {what}; give the parameter another name"
    for attr in ("name", "description", "distance_kind"):
        if not isinstance(getattr(cls, attr), str):
            return f"{attr} must be a string, got {shown(getattr(cls, attr))}"
    maximum = cls.distance_max
    if isinstance(maximum, bool) or not isinstance(maximum, (int, float)) or not finite(maximum) or maximum <= 0:
        return f"distance_max must be a positive finite number, got {shown(maximum)}"
    for attr in ("batch_invariant", "cpu_exact", "symmetric"):
        if not isinstance(getattr(cls, attr), bool):
            return f"{attr} must be True or False, got {shown(getattr(cls, attr))}"
    kinds = {spec.name: spec.kind for spec in param_specs(cls)}
    for field_ in dataclasses.fields(cls):
        problem = unsupported_kind(kinds[field_.name]) if field_.name in kinds else None
        if problem:
            return (f"field '{field_.name}' needs a type harness can check (int, float, str, bool, Literal, "
                    f"tuple or list of them), has {problem}")
    return None


def not_a_hasher_of(name: str, named: dict[str, str], source) -> str:
    """Why `name` is not one of a config's hasher ids (`named`: id -> the hasher's registered name),
    which --hashers chooses among, and the likely fix: the config's own spelling of it, or the id it
    gave the hasher meant (d16 for imagehash.dhash), else, for a hasher harness has (dHash for
    imagehash.dhash), adding it to the config, which --hashers cannot do (it suggested aHash for dHash)."""
    from harness.hashers import HASHERS

    ids = list(named)
    close = suggest(name, ids)
    if close is not None and name.lower() in (close.lower(), close.rsplit(".", 1)[-1].lower()):
        return f"not a hasher of {source}; did you mean '{close}'?"
    registered = name if name in HASHERS else suggest(name, list(HASHERS))
    under = [hid for hid, hasher in named.items() if hasher == registered]  # the config's ids for that hasher
    if registered is not None and under:
        meant = " or ".join(f"'{hid}'" + ("" if hid == registered else f" ({registered})") for hid in under)
        return f"not a hasher of {source}; did you mean {meant}?"
    if registered is not None and registered not in ids:
        return (f"not a hasher of {source}, whose hashers are {', '.join(ids)} (only those can be chosen); "
                f"add {registered} to its hashers to run it")
    return f"not a hasher of {source}" + (f"; did you mean '{close}'?" if close else
                                          f"; the config has {', '.join(ids)}")


def _select_hashers(specs: list[HasherSpec], wanted: list[str], source, option: str) -> list[HasherSpec]:
    by_id = {s.id: s for s in specs}
    if not wanted:
        raise ConfigError(option, "", f"names no hasher; the config has {', '.join(by_id)}")
    chosen = []
    for name in wanted:
        if name not in by_id:
            raise ConfigError(option, name, not_a_hasher_of(name, {s.id: s.name for s in specs}, source))
        if by_id[name] not in chosen:
            chosen.append(by_id[name])
    return chosen
