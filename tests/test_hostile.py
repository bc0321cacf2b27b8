"""Hostile input: configs, plugins, the command line's exit statuses, output and report directories.

The cases are data, generated here: each config case is written to a temporary directory and
checked through `harness.__main__.main` (a subprocess where the exit status or the absence of a
traceback is the point). Every bad input must end in exactly one line, `error: <file>: <where>:
<problem>`, of bounded length, with exit status 2; a bug has status 3; Ctrl-C 130. Plugins are
small modules written into the temporary directory and put on sys.path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid

import pandas as pd
import pytest

import harness
from harness.__main__ import main
from harness.errors import MESSAGE_MAX, HarnessError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINE_MAX = MESSAGE_MAX  # the whole line, "error: " included
HEAD = "images: [builtin:astronaut]\nhashers: [aHash]\n"
GRAY = "sweeps: [{family: g, b: grayscale}]\n"


def cli(capsys, *argv) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def one_line_error(err: str) -> str:
    """The single error line (without 'error: '), after checking that it is one bounded line."""
    assert err.endswith("\n") and err.count("\n") == 1, err[:2000]
    assert err.startswith("error: ") and len(err) - 1 <= LINE_MAX, err[:2000]
    assert "Traceback" not in err
    return err[len("error: "):-1]


# --- configs ------------------------------------------------------------------------------------

def billion_laughs(levels: int = 9) -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in zip("abcdefghi", "bcdefghij"[:levels - 1]):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def nested_blocks(depth: int) -> str:
    return "".join(f"{'  ' * i}k{i}:\n" for i in range(depth)) + f"{'  ' * depth}leaf\n"


def deep_by_aliases(depth: int) -> str:
    """Each anchor one level deeper than the last: shallow as written, deep once expanded."""
    lines = ["x0: &x0 [1]"] + [f"x{i}: &x{i} [*x{i - 1}]" for i in range(1, depth)]
    return "\n".join(lines) + "\n"


LONG = "x" * 200_000

# (case id, config text (str or bytes), regular expression the message after "error: <file>: " must match)
CONFIG_CASES = [
    ("billion laughs", billion_laughs(),
     r"line \d+, column \d+: YAML refused: more than 100000 values once aliases are expanded"),
    ("a thousand and one aliases", "a: &a 1\nb: [" + ", ".join(["*a"] * 1001) + "]\n",
     r"line 2, column \d+: YAML refused: more than 1000 aliases"),
    ("recursive alias", "a: &a [1, *a]\n",
     r"line 1, column 11: YAML refused: an alias refers to a node that contains it \(a recursive alias\)"),
    ("recursive merge", "a: &a {<<: *a}\n", r"line 1, column \d+: YAML refused: an alias refers to a node"),
    ("nesting", nested_blocks(60), r"line \d+, column \d+: YAML refused: nested more than 50 levels deep"),
    ("nesting by aliases", deep_by_aliases(60),
     r"line \d+, column \d+: YAML refused: nested more than 50 levels deep \(aliases expanded\)"),
    ("brackets", "a: " + "[" * 100_000 + "]" * 100_000 + "\n", r"line 1, column \d+: YAML (refused|syntax error): "),
    ("a hundred thousand values", HEAD + "sweeps: [{family: g, b: {gamma: {gamma: $value}}, values: ["
     + ",".join(["1"] * 100_001) + "]}]\n", r"line 3, column \d+: YAML refused: more than 100000 values"),
    ("over 1 MiB", "# " + "x" * (1 << 20) + "\n", r"larger than 1 MiB; a config is a few KiB"),
    ("not UTF-8", HEAD.encode() + b"name: caf\xe9\n" + GRAY.encode(), rf"line 3: not UTF-8 text \(byte 0xe9 at offset {len(HEAD) + len('name: caf')}\)"),
    ("NUL", HEAD + "name: a\x00b\n" + GRAY, r"YAML syntax error: unacceptable character #x0000"),
    ("duplicate top-level key", HEAD + "hashers: [pHash]\n" + GRAY,
     r"line 3, column 1: YAML syntax error: duplicate key 'hashers' \(first on line 2\)"),
    ("duplicate parameter", HEAD + "sweeps: [{family: j, b: {jpeg: {quality: 5, quality: 6}}}]\n",
     r"line 3, column \d+: YAML syntax error: duplicate key 'quality' \(first on line 3\)"),
    ("python tag", "images: !!python/object/apply:os.system ['true']\n",
     r"line 1, column 9: YAML syntax error: could not determine a constructor for the tag"),
    ("integer of 5000 digits", HEAD + "seed: " + "9" * 5000 + "\n" + GRAY,
     r"line 3, column 7: YAML syntax error: bad value \(a number written with 5,000 characters; at most 100\)"),
    ("13th month", HEAD + "seed: 2001-13-01\n" + GRAY, r"line 3, column 7: YAML syntax error: bad value \(month must be in 1\.\.12\)"),
    ("transform parameter NaN", HEAD + "sweeps: [{family: g, b: {gamma: {gamma: .nan}}}]\n",
     r"sweeps\[0\]\.b\.gamma\.gamma: nan is not a finite number"),
    ("swept NaN", HEAD + "sweeps: [{family: g, b: {gamma: {gamma: $value}}, values: [0.5, .nan]}]\n",
     r"sweeps\[0\]\.values\[1\]: expected a finite number, got nan"),
    ("swept infinity", HEAD + "sweeps: [{family: g, b: {gamma: {gamma: $value}}, values: [-.inf]}]\n",
     r"sweeps\[0\]\.values\[0\]: expected a finite number, got -inf"),
    ("range to infinity", HEAD + "sweeps: [{family: g, b: {gamma: {gamma: $value}}, "
     "values: {start: 0.5, stop: .inf, step: 1}}]\n", r"sweeps\[0\]\.values\.stop: expected a finite number, got inf"),
    ("range step NaN", HEAD + "sweeps: [{family: g, b: {gamma: {gamma: $value}}, "
     "values: {start: 0.5, stop: 1.5, step: .nan}}]\n", r"sweeps\[0\]\.values\.step: expected a finite number, got nan"),
    ("range overflowing", HEAD + "sweeps: [{family: g, b: {gamma: {gamma: $value}}, "
     "values: {start: -1.7e+308, stop: 1.7e+308, step: 1.0}}]\n",
     r"sweeps\[0\]\.values: the range has more than 100000 values"),
    ("range of tiny steps", HEAD + "sweeps: [{family: g, b: {gamma: {gamma: $value}}, "
     "values: {start: 0.5, stop: 1.0, step: 5.0e-324}}]\n", r"sweeps\[0\]\.values: the range has more than 100000"),
    ("ten ranges of 100,000 values", HEAD + "sweeps:\n" + "".join(
        f"  - {{family: f{k}, b: {{gamma: {{gamma: $value}}}}, values: {{start: 0.0001, stop: 10, step: 0.0001}}}}\n"
        for k in range(10)), r"sweeps\[0\]: the sweeps make 100,000 pairs up to here; at most 10,000 in all"),
    ("many small sweeps", HEAD + "sweeps:\n" + "".join(
        f"  - {{family: f{k}, b: {{gamma: {{gamma: $value}}}}, values: {{start: 0.01, stop: 10, step: 0.01}}}}\n"
        for k in range(11)), r"sweeps\[10\]: the sweeps make 11,000 pairs up to here; at most 10,000 in all"),
    ("negative seed", HEAD + "seed: -1\n" + GRAY, r"seed: must be from 0 to 2\*\*64 - 1, got -1"),
    ("seed of 65 bits", HEAD + f"seed: {1 << 64}\n" + GRAY, r"seed: must be from 0 to 2\*\*64 - 1, got 1844"),
    ("a number of 4,000 hex digits", HEAD + "seed: 0x" + "f" * 4000 + "\n" + GRAY,
     r"line 3, column 7: YAML syntax error: bad value \(a number written with 4,002 characters; at most 100\)"),
    # YAML 1.1's base-60 number (PyYAML took 24 s to convert it), text in YAML 1.2, refused as text
    ("a base-60 number of 900 KB", HEAD + "seed: 1" + ":59" * 300_000 + "\n" + GRAY,
     r"seed: expected int, got '1:59:59:59.*59:59:59'$"),
    ("seed NaN", HEAD + "seed: .nan\n" + GRAY, r"seed: expected int, got nan"),
    ("limit infinity", HEAD + "limit: .inf\n" + GRAY, r"limit: expected int, got inf"),
    ("max_pixels NaN", HEAD + "max_pixels: .nan\n" + GRAY, r"max_pixels: expected int, got nan"),
    ("max_pixels past OpenCV's", HEAD + "max_pixels: 100000000000\n" + GRAY,  # a 50 GB file would be read
     r"max_pixels: must be from 1 to 1,073,741,824 \(OpenCV's own limit\), got 100000000000"),
    ("min_tpr NaN", HEAD + "detection: {min_tpr: .nan}\n" + GRAY, r"detection\.min_tpr: nan is not a finite number"),
    ("fpr NaN", HEAD + "detection: {fpr: [0.01, .nan]}\n" + GRAY,
     r"detection\.fpr\[1\]: nan is not a finite number"),
    ("precision NaN", HEAD + "detection: {precision: [.nan]}\n" + GRAY,
     r"detection\.precision\[0\]: nan is not a finite number"),
    ("threshold infinity", HEAD + "detection: {thresholds: {aHash: .inf}}\n" + GRAY,
     r"detection\.thresholds\.aHash: inf is not a finite number"),
    ("exclude_below NaN", HEAD + "impostors: {exclude_below: {aHash: .nan}}\n" + GRAY,
     r"impostors\.exclude_below\.aHash: nan is not a finite number"),
    ("max_pairs NaN", HEAD + "impostors: {max_pairs: .nan}\n" + GRAY, r"impostors\.max_pairs: expected int, got nan"),
    ("hasher parameter NaN", "images: [builtin:astronaut]\nhashers: [{name: MarrHildrethHash, alpha: .nan}]\n" + GRAY,
     r"hashers\[0\]\.alpha: nan is not a finite number"),
    ("long value", HEAD + f"seed: '{LONG}'\n" + GRAY, r"seed: expected int, got 'x{30,}\.\.\.x{30,}'$"),
    ("long key", HEAD + f"{LONG[:1000]}: 1\n" + GRAY, r"^x{90,}\.\.\.x{90,}: unknown key; allowed: "),
    ("long image path", f"images: ['{LONG}']\nhashers: [aHash]\n" + GRAY,
     r"images\[0\]: cannot read 'x{90,}\.\.\.x{90,}' \(File name too long\)$"),
    ("long built-in name", f"images: ['builtin:{LONG}']\nhashers: [aHash]\n" + GRAY,
     r"images\[0\]: unknown built-in image 'x{30,}\.\.\.x{30,}'; known: skimage, "),
    ("long list", HEAD + "sweeps: [{family: g, b: {gamma: {gamma: $value}}, values: ["
     + ",".join(["[1]"] * 5000) + "]}]\n", r"sweeps\[0\]\.values\[0\]: expected a number or a string, got \[1\]"),
    ("long transform name", HEAD + f"sweeps: [{{family: g, b: '{LONG}'}}]\n",
     r"sweeps\[0\]\.b: unknown transform 'x{30,}\.\.\.x{30,}' \(see `python -m harness list`\)$"),
    ("transform name not a string", HEAD + "sweeps: [{family: g, b: {12: {}}}]\n",
     r"sweeps\[0\]\.b: a transform's name must be a string, got 12"),
]


@pytest.mark.parametrize("case, text, message", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_hostile_config_is_one_line_and_status_2(tmp_path, capsys, case, text, message):
    path = tmp_path / "hostile.yaml"
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    status, out, err = cli(capsys, "validate", path)
    line = one_line_error(err)
    assert status == 2 and out == ""
    assert line.startswith(f"{path}: ")
    assert re.search(message, line[len(f"{path}: "):]), line[:300]


@pytest.mark.parametrize("case", ["billion laughs", "transform parameter NaN"])
def test_hostile_config_through_a_real_process(tmp_path, case):
    """The exit status and stderr as a shell sees them: no traceback, nothing written."""
    text = {c[0]: c[1] for c in CONFIG_CASES}[case]
    path = tmp_path / "hostile.yaml"
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    done = subprocess.run([sys.executable, "-m", "harness", "run", str(path), "--out", str(tmp_path / "out")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and done.stdout == ""
    one_line_error(done.stderr)
    assert not (tmp_path / "out").exists()


def test_a_config_that_is_not_a_regular_file_is_refused_without_reading(tmp_path, capsys):
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    for path in (fifo, "/dev/zero", tmp_path):
        status, _, err = cli(capsys, "validate", path)
        assert status == 2 and one_line_error(err) == f"{path}: not a regular file"


def test_merge_keys_are_not_duplicates(tmp_path, capsys):
    path = tmp_path / "merge.yaml"
    path.write_text(HEAD + "sweeps:\n  - {family: a, b: {jpeg: &q {quality: 50}}}\n"
                           "  - {family: b, b: {jpeg: {<<: *q, quality: 60}}}\n")
    status, out, err = cli(capsys, "validate", path)
    assert status == 0, err
    assert "pairs:   2 in 2 families" in out


def test_shipped_configs_stay_within_the_limits(capsys):
    from harness.config import load_config

    for folder, _, names in os.walk(os.path.join(ROOT, "configs")):
        for name in names:
            if name.endswith(".yaml"):
                load_config(os.path.join(folder, name))  # raises on any refusal


def test_error_values_are_shortened_and_cheap():
    """A value shared a million times over costs no more to show than a small one."""
    from harness.errors import shown

    shared = ["lol"] * 10
    for _ in range(8):
        shared = [shared] * 10
    text = shown(shared)
    assert len(text) <= 80 and text.endswith(("…", "]"))
    assert re.fullmatch(r"'x{30,}\.\.\.x{30,}'", shown("x" * 10_000)) and len(shown("x" * 10_000)) <= 80
    assert str(HarnessError("y" * 10_000)) == "y" * (MESSAGE_MAX - 1) + "…"
    assert str(HarnessError("two\nlines")) == "two lines"


# --- plugins ------------------------------------------------------------------------------------

TRANSFORM_PLUGINS = '''
from __future__ import annotations

import subprocess
from os import getpid
from typing import Annotated

from harness.params import Range


def good(image, strength: Annotated[float, Range(0, 1)] = 0.5):
    return image


class AClass:
    pass


builtin = getpid
call = subprocess.call


def nothing():
    return None


def defaulted(image=None):
    return image


def star_args(image, *more):
    return image


def star_kwargs(image, **more):
    return image


def unannotated(image, strength=1):
    return image


def mapping(image, table: dict = None):
    return image


def undefined(image, strength: Undefined = 1):  # noqa: F821
    return image


def wrong_default(image, strength: int = "high"):
    return image


def positional_only(image, strength: int, /):
    return image
'''

HASHER_PLUGINS = '''
from dataclasses import dataclass

import numpy as np

from harness.hashers.base import Hasher


class Base(Hasher):
    description = "test"
    distance_kind = "L1"
    distance_max = 255.0

    def hash_batch(self, images):
        return np.array([[image.mean()] for image in images])

    def distance(self, a, b):
        return np.abs(a - b).sum(axis=1)


@dataclass(frozen=True)
class Good(Base):
    name = __name__ + ":Good"
    scale: int = 1


def function():
    return None


@dataclass(frozen=True)
class Abstract(Hasher):
    name = __name__ + ":Abstract"
    description = "test"
    distance_kind = "L1"
    distance_max = 1.0

    def hash_batch(self, images):
        return np.zeros((len(images), 1))


class Undecorated(Base):
    name = __name__ + ":Undecorated"


@dataclass(frozen=True)
class TextSymmetric(Base):
    name = __name__ + ":TextSymmetric"
    symmetric = "no"


@dataclass(frozen=True)
class ZeroMax(Base):
    name = __name__ + ":ZeroMax"
    distance_max = 0


@dataclass(frozen=True)
class TextMax(Base):
    name = __name__ + ":TextMax"
    distance_max = "64"


@dataclass(frozen=True)
class NanMax(Base):
    name = __name__ + ":NanMax"
    distance_max = float("nan")


@dataclass(frozen=True)
class NumberName(Base):
    name = 7


@dataclass(frozen=True)
class MappingField(Base):
    name = __name__ + ":MappingField"
    table: dict = None


@dataclass(frozen=True)
class NoAttributes(Hasher):
    def hash_batch(self, images):
        return np.zeros((len(images), 1))

    def distance(self, a, b):
        return np.zeros(len(a))


@dataclass(frozen=True)
class RaisingDistance(Base):
    name = __name__ + ":RaisingDistance"

    def distance(self, a, b):
        raise ZeroDivisionError("oops")


@dataclass(frozen=True)
class ShortDistance(Base):
    name = __name__ + ":ShortDistance"

    def distance(self, a, b):
        return np.zeros(1)


@dataclass(frozen=True)
class TextDistance(Base):
    name = __name__ + ":TextDistance"

    def distance(self, a, b):
        return np.array(["near"] * len(a))


@dataclass(frozen=True)
class WrongName(Base):
    name = "wrong:Name"  # a hasher that does not exist


@dataclass(frozen=True)
class SymmetricField(Base):  # a parameter (mirror the image first, say) named as Hasher's flag
    name = __name__ + ":SymmetricField"
    symmetric: bool = False


@dataclass(frozen=True)
class CpuExactField(Base):
    name = __name__ + ":CpuExactField"
    cpu_exact: bool = True


@dataclass(frozen=True)
class BatchInvariantField(Base):
    name = __name__ + ":BatchInvariantField"
    batch_invariant: bool = True


@dataclass(frozen=True)
class SpecField(Base):  # named as a method
    name = __name__ + ":SpecField"
    spec: str = "x"


@dataclass(frozen=True)
class FailingPrepare(Base):
    name = __name__ + ":FailingPrepare"

    def prepare(self):
        raise RuntimeError("no model here")
'''


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """Modules transforms_<id> and hashers_<id> in tmp_path, importable; returns their names."""
    suffix = uuid.uuid4().hex[:8]
    names = {"transforms": f"hostile_transforms_{suffix}", "hashers": f"hostile_hashers_{suffix}"}
    (tmp_path / f"{names['transforms']}.py").write_text(TRANSFORM_PLUGINS)
    (tmp_path / f"{names['hashers']}.py").write_text(HASHER_PLUGINS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield names
    for name in names.values():
        sys.modules.pop(name, None)


MUST_BE_A_FUNCTION = "must be a function f(image, **params) -> image written in Python, not "
NEEDS_ANNOTATION = ("needs an annotation harness can check (int, float, str, bool, Literal, tuple or list "
                    "of them), has ")
FIRST_PARAMETER = "must take the image as its first parameter (positional, without a default)"
TRANSFORM_CASES = [
    ("AClass", MUST_BE_A_FUNCTION + "a class"),
    ("builtin", MUST_BE_A_FUNCTION + "a built-in function"),
    ("call", FIRST_PARAMETER),  # subprocess.call(*popenargs, ...)
    ("nothing", FIRST_PARAMETER),
    ("defaulted", FIRST_PARAMETER),
    ("star_args", "must declare each parameter by name, not *more"),
    ("star_kwargs", "must declare each parameter by name, not **more"),
    ("unannotated", f"parameter 'strength' {NEEDS_ANNOTATION}no annotation"),
    ("mapping", f"parameter 'table' {NEEDS_ANNOTATION}dict"),
    ("undefined", "has annotations that cannot be resolved (NameError: name 'Undefined' is not defined)"),
    ("wrong_default", "parameter 'strength' has a default 'high' that is not of type int"),
    ("positional_only", "parameter 'strength' must be passable by keyword"),
]


@pytest.mark.parametrize("attr, problem", TRANSFORM_CASES, ids=[c[0] for c in TRANSFORM_CASES])
def test_transform_plugin_breaking_the_contract_is_one_line(tmp_path, capsys, plugins, attr, problem):
    reference = f"{plugins['transforms']}:{attr}"
    path = tmp_path / "c.yaml"
    path.write_text(HEAD + f"sweeps: [{{family: x, b: '{reference}'}}]\n")
    for command in (["validate", "--import-plugins"], ["run", "--out", tmp_path / "out"]):
        status, _, err = cli(capsys, *command, path)
        assert status == 2
        assert one_line_error(err) == f"{path}: sweeps[0].b: transform plugin '{reference}' {problem}"
    assert not (tmp_path / "out").exists()


def test_subprocess_call_is_not_a_transform(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(HEAD + "sweeps: [{family: x, b: {'subprocess:call': {args: 'touch pwned'}}}]\n")
    status, _, err = cli(capsys, "run", path, "--out", tmp_path / "out")
    assert status == 2 and one_line_error(err).endswith(f"transform plugin 'subprocess:call' {FIRST_PARAMETER}")


def test_a_plugin_keeping_the_contract_has_its_parameters_checked(tmp_path, capsys, plugins):
    reference = f"{plugins['transforms']}:good"
    path = tmp_path / "c.yaml"
    path.write_text(HEAD + f"sweeps: [{{family: x, b: {{'{reference}': {{strength: $value}}}}, values: [0.5, 2]}}]\n")
    status, _, err = cli(capsys, "validate", "--import-plugins", path)
    assert status == 2
    assert one_line_error(err) == (f"{path}: sweeps[0].b.{reference}.strength: 2.0 must be <= 1 "
                                   "(the swept value 2)")


HASHER_CASES = [
    ("function", "must be a subclass of harness.hashers.base.Hasher"),
    ("Abstract", "does not implement distance"),
    ("Undecorated", "must itself be decorated with @dataclass(frozen=True): its fields are its YAML parameters"),
    ("ZeroMax", "distance_max must be a positive finite number, got 0"),
    ("TextSymmetric", "symmetric must be True or False, got 'no'"),  # bool("no") is True
    ("TextMax", "distance_max must be a positive finite number, got '64'"),
    ("NanMax", "distance_max must be a positive finite number, got nan"),
    ("NumberName", "name must be a string, got 7"),
    ("MappingField", ("field 'table' needs a type harness can check (int, float, str, bool, Literal, tuple or "
                      "list of them), has dict")),
    ("NoAttributes", "lacks the class attribute(s) name, description, distance_kind, distance_max"),
    # A field is a parameter, and @dataclass makes it the attribute of that name: the config's
    # `symmetric: true` had turned a one-sided distance's flag on, `cpu_exact: false` made hashers.csv say "no".
    *((f"{flag.title().replace('_', '')}Field", (
        f"has a parameter (a field) named '{flag}': that is Hasher's class attribute '{flag}' (`{flag} = ...` in "
        "the class body), which harness reads and the config's value would set; give the parameter another name"))
      for flag in ("symmetric", "cpu_exact", "batch_invariant")),
    ("SpecField", ("has a parameter (a field) named 'spec': that is Hasher's method 'spec', which it would replace; "
                   "give the parameter another name")),
]


@pytest.mark.parametrize("attr, problem", HASHER_CASES, ids=[c[0] for c in HASHER_CASES])
def test_hasher_plugin_breaking_the_contract_is_one_line(tmp_path, capsys, plugins, attr, problem):
    reference = f"{plugins['hashers']}:{attr}"
    path = tmp_path / "c.yaml"
    path.write_text(f"images: [builtin:astronaut]\nhashers: ['{reference}']\n" + GRAY)
    for command in (["validate", "--import-plugins"], ["run", "--out", tmp_path / "out"]):
        status, _, err = cli(capsys, *command, path)
        assert status == 2
        assert one_line_error(err) == f"{path}: hashers[0].name: hasher plugin '{reference}' {problem}"


def test_a_hasher_plugin_named_other_than_its_import_path_is_one_line(tmp_path, capsys, plugins):
    """hashers.csv records a hasher's name as what made the results: it must name the plugin."""
    reference = f"{plugins['hashers']}:WrongName"
    path = tmp_path / "c.yaml"
    path.write_text(f"images: [builtin:astronaut]\nhashers: ['{reference}']\n" + GRAY)
    for command in (["validate", "--import-plugins"], ["run", "--out", tmp_path / "out"]):
        status, _, err = cli(capsys, *command, path)
        assert status == 2
        assert one_line_error(err) == (f"{path}: hashers[0].name: hasher plugin '{reference}' must have name = "
                                       f"'{reference}' (its import path, as configs name it), has 'wrong:Name'")
    assert not (tmp_path / "out").exists()


RUNTIME_CASES = [
    ("RaisingDistance", "distance failed: ZeroDivisionError: oops"),
    ("ShortDistance", "distance returned shape (1,) for "),
    ("TextDistance", "distance failed: ValueError: could not convert string to float"),
]


@pytest.mark.parametrize("attr, problem", RUNTIME_CASES, ids=[c[0] for c in RUNTIME_CASES])
def test_a_hasher_plugin_misbehaving_at_run_time_is_not_a_bug_of_ours(tmp_path, capsys, plugins, attr, problem):
    reference = f"{plugins['hashers']}:{attr}"
    path = tmp_path / "c.yaml"
    sweeps = "sweeps: [{family: g, b: grayscale}, {family: f, b: hflip}]\n"
    path.write_text(f"images: [builtin:astronaut]\nhashers: [aHash, '{reference}']\n" + sweeps)
    status, _, err = cli(capsys, "run", path, "--out", tmp_path / "one")  # one image: the pairs' cells say why
    assert status == 1 and "Traceback" not in err
    distances = pd.read_csv(tmp_path / "one" / "distances.csv", keep_default_na=False)
    cells = distances.loc[distances["hasher"] == reference, "error"]
    assert len(cells) == 2 and all(problem in cell for cell in cells)
    path.write_text(f"images: [builtin:astronaut, builtin:camera]\nhashers: [aHash, '{reference}']\n" + sweeps)
    status, _, err = cli(capsys, "run", path, "--out", tmp_path / "two")  # no impostor baseline: stop, one line
    assert status == 2 and problem in one_line_error(err)


def test_a_hasher_plugin_whose_prepare_fails_is_one_line(tmp_path, capsys, plugins):
    reference = f"{plugins['hashers']}:FailingPrepare"
    path = tmp_path / "c.yaml"
    path.write_text(f"images: [builtin:astronaut]\nhashers: ['{reference}']\n" + GRAY)
    status, _, err = cli(capsys, "run", path, "--out", tmp_path / "out")
    assert status == 2
    assert one_line_error(err) == (f"{path}: hashers[0] ({reference}): the plugin's prepare() failed: "
                                   "RuntimeError: no model here")


def test_a_non_frozen_hasher_fails_as_its_import(tmp_path, capsys, monkeypatch):
    module = f"hostile_mutable_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(HASHER_PLUGINS.replace("@dataclass(frozen=True)\nclass Good",
                                                                  "@dataclass\nclass Good"))
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "c.yaml"
    path.write_text(f"images: [builtin:astronaut]\nhashers: ['{module}:Good']\n" + GRAY)
    status, _, err = cli(capsys, "validate", "--import-plugins", path)
    line = one_line_error(err)
    assert status == 2 and f"hashers[0].name: hasher plugin '{module}:Good': cannot import module" in line
    assert "cannot inherit non-frozen dataclass from a frozen one" in line
    sys.modules.pop(module, None)


def test_every_registered_transform_and_hasher_keeps_the_plugin_contract():
    """The contract is the one the built-ins keep, so a plugin can do whatever they do."""
    from harness.config import hasher_plugin_problem
    from harness.hashers import HASHERS
    from harness.transforms import TRANSFORMS

    assert {name: TRANSFORMS.check(TRANSFORMS.get(name), name) for name in TRANSFORMS} == {n: None for n in TRANSFORMS}
    problems = {name: HASHERS.check(HASHERS.get(name), name) or hasher_plugin_problem(HASHERS.get(name))
                for name in HASHERS}
    assert problems == {n: None for n in HASHERS}


@pytest.mark.parametrize("reference, problem", [
    ("..up:thing", "'..up:thing' is not an import path of the form package.module:Name"),
    ("os:__builtins__.eval", "'os:__builtins__.eval': a plugin's name cannot start with '_'"),
    ("mod:", "'mod:' is not an import path of the form package.module:Name"),
    ("a b:c", "'a b:c' is not an import path of the form package.module:Name"),
])
def test_malformed_plugin_references_are_refused_before_any_import(tmp_path, capsys, reference, problem):
    path = tmp_path / "c.yaml"
    path.write_text(HEAD + f"sweeps: [{{family: x, b: '{reference}'}}]\n")
    status, _, err = cli(capsys, "validate", path)  # without --import-plugins: the form alone is checked
    assert status == 2 and one_line_error(err) == f"{path}: sweeps[0].b: transform plugin {problem}"


MARKED = '''
import json
import os
from dataclasses import dataclass

import numpy as np

from harness.hashers.base import Hasher

open(os.path.join(os.path.dirname(__file__), __name__ + ".imported"), "a").close()


def invert(image):
    return 255 - image


@dataclass(frozen=True)
class Mean(Hasher):
    name = __name__ + ":Mean"
    description = "test"
    distance_kind = "L1"
    distance_max = 255.0

    def hash_batch(self, images):
        return np.array([[image.mean()] for image in images])

    def distance(self, a, b):
        return np.abs(a - b).sum(axis=1)
'''


def test_validate_imports_no_plugin_unless_asked(tmp_path, capsys, monkeypatch):
    module = f"hostile_marked_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(MARKED)
    marker = tmp_path / f"{module}.imported"
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "c.yaml"
    path.write_text(f"images: [builtin:astronaut]\nhashers: [aHash, '{module}:Mean']\nreport: {{previews: false}}\n"
                    f"sweeps: [{{family: inv, b: '{module}:invert'}}, {{family: g, b: grayscale}}]\n")

    status, out, err = cli(capsys, "validate", path)
    assert status == 0, err
    assert not marker.exists() and module not in sys.modules
    assert (f"plugins: not imported: {module}:invert (sweeps[0].b), {module}:Mean (hashers[1].name); `run` "
            "imports them") in out

    status, out, err = cli(capsys, "validate", "--import-plugins", path)
    assert status == 0, err
    assert marker.exists() and "plugins: imported and checked: " in out

    marker.unlink()
    sys.modules.pop(module)
    status, _, err = cli(capsys, "run", path, "--out", tmp_path / "out", "--quiet")
    assert status == 0, err
    assert marker.exists()
    assert set(pd.read_csv(tmp_path / "out" / "distances.csv")["hasher"]) == {"aHash", f"{module}:Mean"}
    sys.modules.pop(module)


# --- exit statuses ------------------------------------------------------------------------------

def test_a_bug_exits_3_with_one_line_and_its_traceback_in_a_file(tmp_path):
    # No input makes harness fail on purpose, so one function is replaced by one that raises, as a
    # bug would; everything around it (main, the handler, the file) is the real thing.
    code = ("import sys\nimport harness.catalog\nimport harness.__main__ as cli\n"
            "def describe(which):\n    return 1 / 0\n"
            "harness.catalog.describe = describe\nsys.exit(cli.main(['list']))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "TMPDIR": str(tmp_path)})
    assert done.returncode == 3 and done.stdout == ""
    line = one_line_error(done.stderr)
    match = re.fullmatch(r"a bug in harness \(ZeroDivisionError: division by zero\)\. Please report it with the "
                         r"command you ran, the run's run\.json if it wrote one, and the traceback saved in "
                         r"(\S+harness-bug-\S+\.txt) \(README, 'Reporting bugs'\)", line)
    assert match, line
    with open(match.group(1), encoding="utf-8") as handle:
        saved = handle.read()
    assert os.path.dirname(match.group(1)) == str(tmp_path)
    assert "command: python -m harness list" in saved and "Traceback (most recent call last)" in saved
    assert "ZeroDivisionError: division by zero" in saved and f"harness {harness.__version__}" in saved


@pytest.mark.parametrize("name, status, said", [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")])
def test_ctrl_c_and_kill_stop_a_run_in_one_line_and_clean_up(tmp_path, name, status, said):
    """Ctrl-C and `kill PID` alike; SIGTERM ended the process at once (143, nothing said) and left
    the hidden staging folder."""
    (tmp_path / "stopping.py").write_text(
        f"import os, signal\n\n\ndef stop(image):\n    os.kill(os.getpid(), signal.{name})\n    return image\n")
    config = tmp_path / "c.yaml"
    config.write_text(HEAD + "sweeps: [{family: x, b: 'stopping:stop'}]\n")
    done = subprocess.run([sys.executable, "-m", "harness", "run", str(config), "--out", str(tmp_path / "out"),
                           "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert done.returncode == status and done.stderr == said + "\n"
    assert not [name for name in os.listdir(tmp_path) if ".staging-" in name]


@pytest.mark.parametrize("argv, message", [
    (["run", "configs/lena.yaml", "--workers", "0"],
     "argument --workers: must be from 1 to 1024, got 0 (see python -m harness run --help)"),
    (["run", "configs/lena.yaml", "--out", ""],  # an unset shell variable: not the config's output instead
     "argument --out: empty; give a directory, or leave --out out for the default (see python -m harness run --help)"),
    (["run", "configs/lena.yaml", "--cache", ""],  # an unset shell variable: not the default cache instead
     "argument --cache: empty; give a file, or leave --cache out for the default (see python -m harness run --help)"),
    (["leaks", "--train", "builtin:camera", "--test", "builtin:coffee", "--cache", " "],
     "argument --cache: empty; give a file, or leave --cache out for the default (see python -m harness leaks "
     "--help)"),
    (["run", "configs/lena.yaml", "--workers", "100000000000"],  # was multiprocessing's OverflowError, exit 3
     "argument --workers: must be from 1 to 1024, got 100000000000 (see python -m harness run --help)"),
    (["list", "hashes"], "argument hashers|transforms: invalid choice: 'hashes' (choose from 'hashers', 'transforms') "
                         "(see python -m harness list --help)"),
    ([], "the following arguments are required: COMMAND (see python -m harness --help)"),
    (["run", "configs/lena.yaml", "--wrkers", "2"],  # an unknown option points at its command's help
     "unrecognized arguments: --wrkers 2 (see python -m harness run --help)"),
    (["leaks", "--tain"], "unrecognized arguments: --tain (see python -m harness leaks --help)"),
    (["run", "configs/lena.yaml", "--out", "x" * 5000], None),
])
def test_usage_errors_and_long_paths_are_one_bounded_line(argv, message, tmp_path):
    """argparse's own errors too: one line, status 2, no usage block (--help has it)."""
    done = subprocess.run([sys.executable, "-m", "harness", *argv], cwd=tmp_path if not argv else ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and done.stdout == ""
    line = one_line_error(done.stderr)
    if message is None:  # a path is cut in its middle, keeping its start and its end
        assert re.fullmatch(r"x{90,}\.\.\.x{90,}: output directory is not writable \(File name too long\)", line), line
    else:
        assert line == message


def test_an_empty_hasher_selection_is_refused_not_all_hashers(tmp_path):
    """`--hashers ""` (an unset shell variable) as `--hashers ,`: not all of the config's hashers."""
    done = subprocess.run([sys.executable, "-m", "harness", "run", "configs/lena.yaml", "--hashers", "", "--out",
                           str(tmp_path / "o")], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2, done.stderr
    assert one_line_error(done.stderr) == "--hashers: names no hasher; the config has aHash, pHash, ResNet50"
    assert not (tmp_path / "o").exists()


def test_a_failed_command_leaves_no_output_directory_it_made(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "x.png"
    new = tmp_path / "new"
    assert cli(capsys, "run", "configs/lena.yaml", "--images", missing, "--out", new)[0] == 2
    assert cli(capsys, "leaks", "--train", missing, "--test", missing, "--threshold", "8", "--out", new)[0] == 2
    assert not new.exists()  # neither an empty folder nor an empty hash cache is left behind
    deep = tmp_path / "made" / "for" / "it"
    assert cli(capsys, "run", "configs/lena.yaml", "--images", missing, "--out", deep)[0] == 2
    assert not (tmp_path / "made").exists()  # nor the parents it made for it
    mine = tmp_path / "mine"
    mine.mkdir()  # a folder that was there before the command stays
    assert cli(capsys, "run", "configs/lena.yaml", "--images", missing, "--out", mine)[0] == 2
    assert mine.is_dir()


def test_a_stopped_command_leaves_a_new_cache_that_another_run_has_open(tmp_path):
    """A command stopped (Ctrl-C) removes the --cache it created while it holds nothing, but not
    while another run has it open. Was: two runs given one new --cache, the first stopped, deleted
    the file under the second, which then kept its hashes in a file that no longer had a name."""
    from harness.storage import removed_if_unused
    from harness.cache import HashCache

    shared = tmp_path / "shared.sqlite"
    for other_has_it_open in (True, False):
        with pytest.raises(KeyboardInterrupt):
            with removed_if_unused(str(tmp_path / "out"), str(shared)):
                mine = HashCache(str(shared))  # this command makes it ...
                other = HashCache(str(shared))  # ... and another run opens it
                mine.close()
                if not other_has_it_open:
                    other.close()
                raise KeyboardInterrupt
        assert shared.exists() == other_has_it_open
        other.close()
        if other_has_it_open:
            shared.unlink()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_full_disk_is_one_line():
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "harness", "list"], cwd=ROOT, stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    assert done.returncode == 2 and done.stderr == "error: No space left on device\n"


def test_the_statuses_are_documented(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for status in ("0 all done", "1 finished, but", "2 bad input", "3 a bug in harness", "130 interrupted",
                   "143 terminated"):
        assert status in help_text
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    assert "### Exit status" in readme and "### Reporting bugs" in readme and "## Security" in readme


# --- output directories -------------------------------------------------------------------------

@pytest.fixture
def photos(tmp_path):
    import cv2

    from tests.conftest import make_scene

    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    cv2.imwrite(str(folder / "a.png"), make_scene(1))
    cv2.imwrite(str(folder / "sub" / "b.png"), make_scene(2))
    return folder


@pytest.mark.parametrize("entry, out", [
    ("{photos}", "{photos}"),
    ("{photos}", "{photos}/report"),
    ("{photos}", "{photos}/sub/deeper/report"),
    ("{photos}/**/*.png", "{photos}/sub/report"),
    ("{photos}/*/*.png", "{photos}/report"),
])
def test_an_output_directory_inside_an_image_folder_is_refused(tmp_path, capsys, photos, entry, out):
    entry, out = entry.format(photos=photos), out.format(photos=photos)
    config = tmp_path / "c.yaml"
    config.write_text(f"images: ['{entry}']\nhashers: [aHash]\n" + GRAY)
    before = sorted(p for p in photos.rglob("*"))
    status, _, err = cli(capsys, "run", config, "--out", out)
    assert status == 2
    assert one_line_error(err).startswith(f"{out}: the output directory is inside the image folder ")
    assert sorted(p for p in photos.rglob("*")) == before  # nothing was written


def test_a_pattern_through_a_link_and_dotdot_is_checked_at_the_folder_it_lists(tmp_path, capsys):
    """`link/../photos` lists other/photos when `link` is other/deep; the output check once
    dropped `link/..` as text (photos, which is not there) and let a run write into the
    image folder, where the next run read its figures as images."""
    import cv2

    from tests.conftest import make_scene

    (tmp_path / "other" / "deep").mkdir(parents=True)
    (tmp_path / "other" / "photos" / "sub").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "other" / "deep")
    for i in range(3):
        cv2.imwrite(str(tmp_path / "other" / "photos" / "sub" / f"{i}.png"), make_scene(i))
    config = tmp_path / "c.yaml"
    config.write_text("images: [x]\nhashers: [aHash]\n" + GRAY)
    out = tmp_path / "other" / "photos" / "sub" / "out"
    errors = {}
    for folder in ("other/photos", "link/../photos"):
        status, _, err = cli(capsys, "run", config, "--images", f"{tmp_path}/{folder}/**/*.png", "--out", out)
        assert status == 2
        errors[folder] = one_line_error(err).replace(f"{tmp_path}/{folder} ", f"{tmp_path}/FOLDER ")
    assert errors["link/../photos"] == errors["other/photos"]
    assert errors["other/photos"].startswith(f"{out}: the output directory is inside the image folder ")
    assert not out.exists()
    status, _, _ = cli(capsys, "run", config, "--images", f"{tmp_path}/link/../photos/**/*.png",
                       "--out", tmp_path / "report")
    assert status == 0 and (tmp_path / "report" / "run.json").is_file()


def test_a_folder_named_like_a_pattern_is_checked_as_the_folder_it_is(tmp_path, capsys, photos):
    """The listing takes a folder as a folder though its name reads as a pattern (`photos[1]`);
    the output check once took it as a pattern matching photos1 and let a run write inside it."""
    folder = photos.rename(tmp_path / "photos[1]")
    config = tmp_path / "c.yaml"
    config.write_text(f"images: ['{folder}']\nhashers: [aHash]\n" + GRAY)
    before = sorted(folder.rglob("*"))
    status, _, err = cli(capsys, "run", config, "--out", folder / "report")
    assert status == 2
    assert one_line_error(err) == (f"{folder}/report: the output directory is inside the image folder {folder} "
                                   "(images[0]), so the next run would read its figures as images; "
                                   "write the outputs elsewhere")
    assert sorted(folder.rglob("*")) == before


def test_an_output_directory_a_pattern_cannot_reach_is_accepted(photos):
    from harness.storage import check_output_dir, image_folder_holding

    assert image_folder_holding(f"{photos}/*.png", str(photos / "report")) is None  # only photos/X.png matches
    assert image_folder_holding(f"{photos}/s*/*.png", str(photos / "report")) is None
    assert image_folder_holding(str(photos / "a.png"), str(photos)) is None  # a file collects nothing
    assert image_folder_holding("builtin:coffee", ".") is None
    assert image_folder_holding(str(photos), str(photos.parent / "photos-report")) is None
    check_output_dir(str(photos / "report"), images=[f"{photos}/*.png"])


def test_results_save_refuses_an_image_folder(tmp_path, photos):
    results = harness.evaluate({"images": [str(photos)], "hashers": ["aHash"],
                                "sweeps": [{"family": "g", "b": "grayscale"}]})
    with pytest.raises(HarnessError, match="the output directory is inside the image folder"):
        results.save(str(photos / "out"))
    assert not (photos / "out").exists()


@pytest.mark.parametrize("case", ["hidden files", "images inside", "known names, no run.json", "link/", "long name",
                                  "cache of another name inside", "a file added to an output",
                                  "a file added to its figures", "an image linked into it", "run.json emptied",
                                  "run.json of random bytes"])
def test_an_output_directory_that_is_not_ours_to_replace_is_refused_before_any_work(tmp_path, capsys, photos, case):
    """Outputs replace the whole directory: nothing of the user's may be in it, and whatever would
    stop the writing at the end (a link, a name too long for the staging folder) stops the start."""
    config = tmp_path / "c.yaml"
    config.write_text(HEAD + GRAY)
    out, extra, message = tmp_path / "out", [], None
    if case == "hidden files":
        (out / ".git").mkdir(parents=True)
        (out / ".git" / "config").write_text("precious")
        (out / ".env").write_text("secret")
        message = "not empty and not a harness output directory (it holds .env, .git)"
    elif case == "images inside":
        out = photos
        extra = ["--images", str(photos / "sub")]
        message = f"holds images the run reads ({photos / 'sub'}, --images)"  # not the config's images[0]
    elif case == "known names, no run.json":  # a folder of the user's named like an output
        (out / "figures").mkdir(parents=True)
        (out / "figures" / "mine.png").write_bytes(b"mine")
        message = "not empty and not a harness output directory (it holds figures)"
    elif case == "link/":
        (tmp_path / "target").mkdir()
        os.symlink(tmp_path / "target", tmp_path / "link")
        out = f"{tmp_path / 'link'}{os.sep}"
        message = "the output directory is a symbolic link"
    elif case == "long name":
        out = tmp_path / ("y" * 240)
        message = "the new outputs are built beside it, in"
    elif case == "cache of another name inside":
        extra = ["--cache", str(out / "mine.sqlite")]
        message = "inside the output directory, which each run replaces"
    elif case == "a file added to an output":  # run.json lists the set's files: notes.txt is not one
        assert cli(capsys, "run", config, "--out", out, "--quiet")[0] == 0
        (out / "notes.txt").write_text("mine")
        message = "a harness output directory with files it did not write (it holds notes.txt)"
    elif case == "a file added to its figures":
        assert cli(capsys, "run", config, "--out", out, "--quiet")[0] == 0
        (out / "figures" / "old").mkdir()
        (out / "figures" / "old" / "mine.png").write_bytes(b"mine")
        message = "a harness output directory with files it did not write (it holds figures/old/mine.png)"
    elif case.startswith("run.json"):  # the list of the set's files is lost: notes.txt cannot be told from it
        assert cli(capsys, "run", config, "--out", out, "--quiet")[0] == 0
        (out / "notes.txt").write_text("mine")
        (out / "run.json").write_bytes(b"" if case == "run.json emptied" else os.urandom(600))
        message = f"{out / 'run.json'}: cannot read ("
    else:  # a folder of images, one a link to a file of the output directory
        assert cli(capsys, "run", config, "--out", out, "--quiet")[0] == 0
        (tmp_path / "pics").mkdir()
        os.symlink(out / "previews.png", tmp_path / "pics" / "p.png")
        extra = ["--images", str(tmp_path / "pics")]
        message = f"holds an image the run reads ({tmp_path / 'pics' / 'p.png'} leads to {out / 'previews.png'})"
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    status, _, err = cli(capsys, "run", config, "--out", out, *extra)
    assert status == 2 and message in one_line_error(err), err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing written, nothing removed
    if case in ("link/", "a file added to an output", "a file added to its figures", "run.json emptied"):
        assert cli(capsys, "report", out)[0] == 2  # the rebuilt set would replace them too
        assert sorted(str(p) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("case", ["a rerun", "a first run", "a folder the new outputs have too",
                                  "a name the new outputs use"])
def test_files_added_to_the_output_directory_during_a_run_are_kept(tmp_path, capsys, monkeypatch, case):
    """The check before the work found nothing of the user's; a file written into --out while the
    run worked (a note, a figure of one's own) must not go with the replaced set."""
    from harness import storage

    config = tmp_path / "c.yaml"
    config.write_text(HEAD + GRAY)
    out = tmp_path / "out"
    if case == "a rerun":
        assert cli(capsys, "run", config, "--out", out, "--quiet")[0] == 0
        added = {"notes.txt": "mine", "figures/old/mine.png": "my figure"}
    elif case == "a first run":
        added = {"notes.txt": "mine"}
    elif case == "a folder the new outputs have too":  # merged file by file, not the whole set kept aside
        added = {"figures/mine.txt": "mine"}
    else:  # before a first run's set lists its files, summary.md is the user's
        added = {"summary.md": "my summary"}
    commit = storage.OutputSet.commit

    def user_writes_then_commit(self):
        for name, text in added.items():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_text(text)
        commit(self)

    monkeypatch.setattr(storage.OutputSet, "commit", user_writes_then_commit)
    status, _, err = cli(capsys, "run", config, "--out", out, "--quiet")
    monkeypatch.undo()
    assert status == 0 and "Traceback" not in err, err
    if case == "a name the new outputs use":
        kept = [p for p in tmp_path.iterdir() if p.name.startswith("out.replaced-")]
        assert len(kept) == 1 and (kept[0] / "summary.md").read_text() == "my summary"
        assert f"the replaced outputs, with them, are kept in {kept[0]}" in err
        assert (out / "summary.md").read_text() != "my summary"  # the new set is whole
        return
    assert {name: (out / name).read_text() for name in added} == added
    assert "appeared there during the run; kept in the new outputs" in err
    assert not [p for p in tmp_path.iterdir() if ".replaced-" in p.name] and "had changed" not in err
    status, _, err = cli(capsys, "run", config, "--out", out, "--quiet")  # and not deleted by the next run
    assert status == 2 and "with files it did not write" in one_line_error(err)
    assert {name: (out / name).read_text() for name in added} == added


@pytest.mark.parametrize("case", ["run.json lists a file of the user's", "a table edited in place",
                                  "a summary edited in place", "run.json without digests"])
def test_a_set_with_a_file_not_as_its_run_wrote_it_is_kept_whole_beside_the_new_one(tmp_path, capsys, case):
    """run.json lists the files a run may replace: one that is not as it recorded it (its size and
    SHA-256) may be the user's work, or a file of the user's that a forged or copied run.json names
    (the next run deleted it). The new set is made, and the replaced one kept, with a note."""
    from harness import storage

    config = tmp_path / "c.yaml"
    config.write_text(HEAD + GRAY)
    out = tmp_path / "out"
    assert cli(capsys, "run", config, "--out", out, "--quiet")[0] == 0
    record = json.loads((out / "run.json").read_text())
    if case == "run.json lists a file of the user's":
        (out / "notes.txt").write_text("mine")
        record["files"].append("notes.txt")
        record["sizes"]["notes.txt"] = 4
        record["digests"]["notes.txt"] = record["digests"]["summary.md"]
        changed = {"notes.txt": b"mine"}
    elif case == "a table edited in place":  # at the same size: the digest tells it
        table = (out / "distances.csv").read_bytes()
        changed = {"distances.csv": table[:-2] + (b"7" if table[-2:-1] != b"7" else b"8") + b"\n"}
    elif case == "a summary edited in place":
        changed = {"summary.md": (out / "summary.md").read_bytes() + b"\nMy reading of it.\n"}
    else:  # an older version's: nothing can be told to be as its run wrote it (a file the new set
        del record["digests"]  # writes again with the same bytes loses nothing)
        record["files"].append("notes.txt")
        changed = {"notes.txt": b"mine"}
    (out / "run.json").write_text(json.dumps(record))
    for name, data in changed.items():
        (out / name).write_bytes(data)
    status, _, err = cli(capsys, "run", config, "--out", out, "--quiet")
    assert status == 0 and "Traceback" not in err, err
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("out.replaced-")]
    assert len(kept) == 1 and {name: (kept[0] / name).read_bytes() for name in changed} == changed
    if "digests" in record:
        assert f"had changed since their run wrote them; the replaced outputs are kept in {kept[0]}" in err
        assert next(iter(changed)) in err
    else:  # said as what it is, not as a change
        assert (f"the replaced outputs' run.json records no digests (an older version's set), so none of their files "
                f"can be told to be as their run wrote them; they are kept in {kept[0]}") in err
    assert not (out / "notes.txt").exists() and storage.changed_files(str(out)) == []  # the new set is whole
    assert cli(capsys, "run", config, "--out", out, "--quiet")[0] == 0  # and as written: replaced, not kept
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("out.replaced-")]) == 1


def test_a_second_command_into_one_output_directory_is_refused_while_the_first_writes(tmp_path, capsys):
    """Two runs into one folder computed everything twice, and the later set replaced the other's
    without a word. The lock is a real flock held by another process; a killed holder's lock file
    is taken over (the kernel dropped its lock) and removed at the end."""
    config = tmp_path / "c.yaml"
    config.write_text(HEAD + GRAY)
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom harness import storage\n"
                               "with storage.sole_writer(sys.argv[1]):\n    print('held', flush=True)\n"
                               "    time.sleep(300)\n", str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        (tmp_path / "pics").mkdir()
        for command in (["run", config, "--out", out], ["leaks", "--train", tmp_path / "pics", "--test",
                                                         tmp_path / "pics", "--threshold", "8", "--out", out]):
            status, _, err = cli(capsys, *command)
            assert status == 2 and f"{out}: another harness command (process {holder.pid}) is writing its outputs " \
                "there; wait for it to end, or give another output directory" in one_line_error(err)
        assert os.listdir(out) == []  # nothing written
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / ".out.lock").exists()  # left by the killed holder
    assert cli(capsys, "run", config, "--out", out, "--quiet")[0] == 0
    assert not (tmp_path / ".out.lock").exists() and (out / "run.json").is_file()
    assert cli(capsys, "report", out)[0] == 0 and not (tmp_path / ".out.lock").exists()


# --- report DIR ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("saved") / "out"
    config = out.parent / "c.yaml"
    config.write_text("images: [builtin:coffee]\nhashers: [aHash]\nreport: {previews: false}\n"
                      "sweeps: [{family: j, b: {jpeg: {quality: $value}}, values: [10, 50]}]\n")
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    return out


def _write(name, data):
    def damage(d):
        if name.startswith(("distances", "impostors")):  # the CSV is read only without the Parquet file
            os.remove(d / f"{name.split('.')[0]}.parquet")
        (d / name).write_bytes(data)
    return damage


def _cut(name, end=b""):
    """`name` cut inside its last row (its line break and the two characters before it gone), then
    `end` written after it: a line break makes the last row one short of its fields."""
    def damage(d):
        data = (d / name).read_bytes()
        _write(name, data[:-3] + end)(d)
    return damage


def _config_edit(edit):
    """run.json with its config changed by `edit` (the rest of the config stays whole)."""
    def damage(d):
        run = json.loads((d / "run.json").read_text())
        edit(run["config"])
        (d / "run.json").write_text(json.dumps(run))
    return damage


def _remove(*names):
    def damage(d):
        for name in names:
            os.remove(d / name)
    return damage


def _replace_with_link(name, target_dir):
    def damage(d):
        outside = target_dir / name
        os.replace(d / name, outside)
        os.symlink(outside, d / name)
    return damage


REPORT_CASES = [
    ("no distances", _remove("distances.csv", "distances.parquet"), "no distances.csv or distances.parquet here"),
    ("empty distances", _write("distances.csv", b""), "cannot read distances (No columns to parse from file)"),
    ("empty parquet", _write("distances.parquet", b""), "cannot read distances"),
    ("garbage CSV", _write("distances.csv", b"\x01,\"\n\xff"), "distances.csv: its last row ends without a line break"),
    ("garbage CSV ending in a line break", _write("distances.csv", b"\x01,\"\n\xff\n"), "cannot read distances"),
    ("NUL bytes in a CSV", _write("distances.csv", b"\x00\x01,\"\n\xff"), "holds NUL bytes, which no table of a run"),
    ("a sparse CSV of 600 MB", lambda d: (os.remove(d / "distances.parquet"),
                                          os.truncate(d / "distances.csv", 600 << 20)),
     "distances.csv: 629,145,600 bytes, more than a run writes as CSV (512 MiB at most)"),
    ("garbage Parquet", _write("impostors.parquet", b"PAR1 not really"), "cannot read impostors"),
    ("wrong columns", _write("distances.csv", b"a,b\n1,2\n"), "distances lacks the columns image_id, family"),
    ("wrong types", _write("distances.csv", b"image,image_id,family,value,label,hasher,distance,distance_norm,"
                                            b"error\nx,y,f,1,l,h,far,0,\n"), "distances holds values of the wrong type"),
    ("infinite distance", _write("impostors.csv", b"hasher,kind,family,value,image_id,other_id,distance,image,"
                                                  b"other\naHash,source,,,a,b,inf,x,y\n"),
     "impostors holds an infinite distance"),
    ("distances cut mid-row", _cut("distances.csv"), "distances.csv: its last row ends without a line break, so "
                                                        "the file was cut short"),
    ("impostors cut mid-row", _cut("impostors.csv"), "impostors.csv: its last row ends without a line break"),
    ("a row short of fields", _cut("distances.csv", b"\n"), "distances.csv: row 3 has 8 fields where the header "
                                                             "has 9; the file was cut short or edited"),
    ("a row of too many fields", _write("distances.csv", b"image,image_id,family,value,label,hasher,distance,"
                                                         b"distance_norm,error\nx,y,f,1,l,h,1,0,,\n"),
     "distances.csv: row 2 has 10 fields where the header has 9"),
    ("hashers.csv empty", _write("hashers.csv", b""), "hashers.csv: empty (every table of a run has at least"),
    ("hashers.csv cut mid-row", _cut("hashers.csv"), "hashers.csv: its last row ends without a line break"),
    ("hashers.csv header only", _write("hashers.csv", b"hasher,name,distance,distance_max,status\n"),
     "hashers.csv: does not list the hasher 'aHash' that the distances table holds"),
    ("images.csv empty", _write("images.csv", b""), "images.csv: empty (every table of a run has at least"),
    ("images.csv header only", _write("images.csv", b"image,image_id,origin,height,width,notes\n"),
     "images.csv: does not list the image_id"),
    ("images.csv columns", _write("images.csv", b"a,b\n1,2\n"), "images.csv: lacks the columns image, image_id"),
    ("errors.csv empty", _write("errors.csv", b""), "errors.csv: empty (every table of a run has at least"),
    ("hashers.csv columns", _write("hashers.csv", b"a,b\n1,2\n"), "hashers.csv: lacks the columns hasher, distance"),
    ("hashers.csv types", _write("hashers.csv", b"hasher,name,distance,distance_max,status\naHash,aHash,hamming,"
                                                b"lots,ok\n"), "hashers.csv: column distance_max holds a value"),
    ("errors.csv columns", _write("errors.csv", b"a\n1\n"), "errors.csv: lacks the columns image, image_id"),
    ("run.json empty", _write("run.json", b""), "run.json: cannot read (Expecting value"),
    ("run.json not JSON", _write("run.json", b"{'config': nope"), "run.json: cannot read"),
    ("run.json not UTF-8", _write("run.json", b'{"a": "\xff"}'), "run.json: cannot read"),
    ("run.json a list", _write("run.json", b"[1, 2]"), "run.json: expected a JSON object"),
    ("run.json nested deep", _write("run.json", b"[" * 100_000 + b"]" * 100_000), "run.json: cannot read"),
    ("config not an object", _write("run.json", b'{"config": 5}'), "run.json: config: expected a JSON object, got 5"),
    ("config missing", _write("run.json", b'{}'), "run.json: holds no config (the run's settings"),
    ("config with a bad key", _config_edit(lambda c: c.setdefault("detection", {}).update(nope=1)),
     "run.json: detection.nope: unknown parameter of detection"),
    ("config with NaN", _config_edit(lambda c: c.setdefault("detection", {}).update(fpr=[float("nan")])),
     "run.json: detection.fpr[0]: nan is not a finite number"),
    ("sweeps not a list", _write("run.json", b'{"config": {"sweeps": 5}}'), "run.json: config.sweeps: expected a list"),
    ("command not a list", _write("run.json", b'{"command": 5}'), "run.json: command: expected a JSON array, got 5"),
    ("command of numbers", _write("run.json", b'{"command": [1]}'), "run.json: command: expected a list of strings"),
    ("run.json a directory", lambda d: (os.remove(d / "run.json"), os.mkdir(d / "run.json")),
     "run.json: not a regular file"),
    ("run.json a FIFO", lambda d: (os.remove(d / "run.json"), os.mkfifo(d / "run.json")),
     "run.json: not a regular file"),
]


@pytest.mark.parametrize("case, damage, message", REPORT_CASES, ids=[c[0] for c in REPORT_CASES])
def test_report_of_a_malformed_directory_is_one_line(tmp_path, capsys, saved_run, case, damage, message):
    out = tmp_path / "out"
    shutil.copytree(saved_run, out)
    damage(out)
    status, _, err = cli(capsys, "report", out)
    line = one_line_error(err)
    assert status == 2 and line.startswith(str(out)) and message in line, line


def test_report_of_a_table_cut_short_changes_nothing(tmp_path, capsys, saved_run):
    """A distances.csv cut inside a row (its Parquet twin gone) read as a table whose last row had
    empty fields, and `report` rebuilt table.csv with an unnamed column and a row of errors: it is
    refused, and the directory is left as it was."""
    out = tmp_path / "out"
    shutil.copytree(saved_run, out)
    _cut("distances.csv")(out)
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    status, _, err = cli(capsys, "report", out)
    assert status == 2 and one_line_error(err).startswith(f"{out / 'distances.csv'}: its last row ends without")
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before


@pytest.mark.parametrize("name", ["distances.parquet", "run.json", "hashers.csv"])
def test_report_reads_no_link_out_of_dir(tmp_path, capsys, saved_run, name):
    out, outside = tmp_path / "out", tmp_path / "outside"
    shutil.copytree(saved_run, out)
    outside.mkdir()
    _replace_with_link(name, outside)(out)
    status, _, err = cli(capsys, "report", out)
    assert status == 2 and one_line_error(err).startswith(f"{out / name}: not a regular file")


def test_report_writes_no_link_out_of_dir(tmp_path, capsys, saved_run):
    out, outside = tmp_path / "out", tmp_path / "outside"
    shutil.copytree(saved_run, out)
    outside.mkdir()
    (outside / "keep.png").write_bytes(b"mine")
    (outside / "summary.md").write_text("mine")
    shutil.rmtree(out / "figures")
    os.symlink(outside, out / "figures")
    os.remove(out / "summary.md")
    os.symlink(outside / "summary.md", out / "summary.md")
    status, _, err = cli(capsys, "report", out)
    assert status == 0, err
    assert sorted(os.listdir(outside)) == ["keep.png", "summary.md"] and (outside / "summary.md").read_text() == "mine"
    assert not os.path.islink(out / "figures") and (out / "figures" / "families.png").is_file()
    assert not os.path.islink(out / "summary.md")


def test_report_of_a_figures_file_rebuilds_it(tmp_path, capsys, saved_run):
    out = tmp_path / "out"
    shutil.copytree(saved_run, out)
    shutil.rmtree(out / "figures")
    (out / "figures").write_text("not a folder")
    status, _, err = cli(capsys, "report", out)
    assert status == 0, err and (out / "figures" / "families.png").is_file()


@pytest.mark.parametrize("kind", ["link", "file", "missing"])
def test_report_dir_must_be_a_directory(tmp_path, capsys, saved_run, kind):
    target = tmp_path / "dir"
    if kind == "link":
        shutil.copytree(saved_run, tmp_path / "real")
        os.symlink(tmp_path / "real", target)
    elif kind == "file":
        target.write_text("x")
    status, _, err = cli(capsys, "report", target)
    expected = {"link": "is a symbolic link; give the output directory itself",
                "file": "not a directory; give the output directory of a run", "missing": "no such directory"}[kind]
    assert status == 2 and one_line_error(err) == f"{target}: {expected}"


# --- no distance at all -------------------------------------------------------------------------

UNAVAILABLE_PLUGIN = '''
from dataclasses import dataclass

import numpy as np

from harness.errors import UnavailableError
from harness.hashers.base import Hasher


@dataclass(frozen=True)
class Gone(Hasher):
    name = __name__ + ":Gone"
    description = "never available"
    distance_kind = "L1"
    distance_max = 1.0

    def prepare(self):
        raise UnavailableError("not on this machine")

    def hash_batch(self, images):
        return np.zeros((len(images), 1))

    def distance(self, a, b):
        return np.zeros(len(a))
'''


@pytest.mark.parametrize("case", ["every hasher unavailable", "every transform fails"])
def test_no_distance_at_all_writes_a_summary_saying_why(tmp_path, capsys, monkeypatch, case):
    module = f"hostile_gone_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(UNAVAILABLE_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    images = "images: [builtin:coffee, builtin:camera, builtin:moon]\n"
    config = tmp_path / "c.yaml"
    config.write_text(images + (f"hashers: ['{module}:Gone']\nsweeps: [{{family: g, b: grayscale}}]\n"
                                if case == "every hasher unavailable" else
                                "hashers: [aHash]\nsweeps: [{family: c, b: {crop: {x: 0, y: 0, width: 9999, "
                                "height: 9}}}]\n"))
    out = tmp_path / "out"
    status, _, err = cli(capsys, "run", config, "--out", out, "--quiet")
    assert status == (0 if case == "every hasher unavailable" else 1), err
    why = {"every hasher unavailable": "no hasher could run here (each is `unavailable`; the notes above say why)",
           "every transform fails": "every pair failed (see the problems above)"}[case]
    assert f"No pair yielded a distance, so there are no figures: {why}." in (out / "summary.md").read_text()
    assert cli(capsys, "report", out)[0] == 0
    sys.modules.pop(module, None)


# --- names in the summary -----------------------------------------------------------------------

HOSTILE_TEXT = ("<script>alert(1)</script> [x](javascript:alert(1)) ![i](http://evil.example/i.png) "
                "https://evil.example/a www.evil.example a@evil.example <img src=x onerror=alert(1)> | a | b |")


def test_md_leaves_no_markup():
    from harness.summary import md

    assert md("# big") == "\\# big" and md("- item") == "\\- item" and md("1. item") == "1\\. item"
    assert md("===") == "\\===" and md("---") == "\\---" and md("> quote") == "\\> quote"
    assert md("-- -") == "\\-- -" and md("-  - -") == "\\- - -" and md("-- x") == "-- x"  # a break, spaced
    assert md("-0.5") == "-0.5" and md("1.5") == "1.5" and md("#tag") == "#tag"
    # Only what could open HTML is escaped, so that the source reads as the page: "pHash <= 12".
    assert md("pHash <= 12 & x > 2") == "pHash <= 12 & x > 2"
    assert md("<i>a</i> &amp; &#60;") == "\\<i>a\\</i> \\&amp; \\&#60;"
    assert md("see https://x.example/y") == "see https\\://x.example/y"
    assert md("www.x.example") == "www\\.x.example" and md("me@x.example") == "me\\@x.example"
    assert md("a\x00b\x1bc") == "a\\\\x00b\\\\x1bc"  # shown as \x00 and \x1b (a backslash is escaped in Markdown)
    assert md("a | b\nc") == "a \\| b c"  # a line break reads as a space
    assert md("=cmd()$x^2$.jpg") == "=cmd()\\$x^2\\$.jpg"  # not GitHub's maths


def test_invisible_characters_in_a_name_are_shown_not_obeyed():
    """A right-to-left override would make the rest of the summary's line read backwards, and a
    tab or a vertical tab would show as a space: a name that is not the file's."""
    from harness.markdown import code, md

    # Markdown source: the escape's backslash is itself escaped, and renders as one.
    assert md("gnp.\u202eevil.jpg, then more") == "gnp.\\\\u202eevil.jpg, then more"
    assert md("tab\tname.png") == "tab\\\\tname.png" and md("a\u2028b\x0bc") == "a\\\\u2028b\\\\x0bc"
    assert code("x\u202ey\tz") == "`x\\u202ey\\tz`"
    assert md("  two  spaces\r\nand a break ") == "two spaces and a break"


def test_code_spans_show_their_text_exactly():
    """Inside a code span Markdown shows a backslash as it is: md's escapes would be seen
    (`augly\\_overlays.yaml`), so a code span only fences the text."""
    from harness.markdown import code

    assert code("configs/protocols/augly_overlays.yaml") == "`configs/protocols/augly_overlays.yaml`"
    assert code("a`b") == "``a`b``" and code("`x`") == "`` `x` ``" and code("a\nb\x1b") == "`a b\\x1b`"


def test_names_reach_the_summary_only_as_text(tmp_path, capsys):
    """Every place a name from a config or a file reaches summary.md (title, description, notes,
    images, families, labels, hashers, problems, tables, figure captions), rendered by a real
    CommonMark renderer: no link, image or HTML but the report's own, no heading but its own,
    and every table keeps its columns."""
    markdown_it = pytest.importorskip("markdown_it")
    import cv2

    from tests.conftest import make_scene

    folder = tmp_path / "imgs"
    folder.mkdir()
    assert cv2.imwrite(str(folder / "# <b>x<b> [l](javascript:x) www.evil.example a@b.example.png"), make_scene(3))
    assert cv2.imwrite(str(folder / "- plain | cell.png"), make_scene(4))
    (folder / "<i>broken<i> ![i](x).png").write_bytes(b"<html>not an image</html>")
    quoted = HOSTILE_TEXT.replace("'", "''")
    config = tmp_path / "c.yaml"
    config.write_text(f"name: '# {quoted}'\ndescription: '# {quoted}'\nimages: ['{folder}']\n"
                      f"hashers: [aHash, {{name: pHash, id: '<i>p</i> | https://evil.example'}}]\n"
                      "sweeps:\n"
                      f"  - {{family: '- {quoted}', b: grayscale}}\n"
                      f"  - {{family: '1. $\\frac{{$ www.evil.example', b: {{jpeg: {{quality: $value}}}}, "
                      f"values: [10, 50], labels: ['<b>a</b> | b', '=== https://evil.example']}}\n")
    out = tmp_path / "out"
    status, _, err = cli(capsys, "run", config, "--out", out, "--quiet")
    assert status == 1, err  # the HTML file is a problem row; everything else ran
    summary = (out / "summary.md").read_text()
    page = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").render(summary)
    links = re.findall(r"<a\b[^>]*href=\"([^\"]*)\"", page)
    images = re.findall(r"<img\b[^>]*src=\"([^\"]*)\"", page)
    assert not links
    assert images and all(src.startswith("figures/") or src == "previews.png" for src in images), images
    tags = set(re.findall(r"<([a-z0-9]+)\b", page))
    assert tags <= {"h1", "h2", "h3", "p", "em", "strong", "code", "ul", "li", "table", "thead", "tbody", "tr",
                    "th", "td", "img", "blockquote", "br"}, tags
    assert page.count("<h1>") == 1 and "<ol" not in page
    for bare in ("https://evil", "www.evil", "a@evil", "a@b.example"):  # GitHub would autolink these
        assert bare not in summary
    # Every table keeps its header's number of columns on every row.
    for block in re.findall(r"(?:^\|.*\n)+", summary, flags=re.MULTILINE):
        counts = {len(re.findall(r"(?<!\\)\|", row)) for row in block.splitlines()}
        assert len(counts) == 1, block
    assert "\\<script>" in summary and "\\<b>x\\<b>" in summary and "\\<i>p\\</i>" in summary


def deep_tree(root, depth: int = 110) -> None:
    """A photo at the top and one at the bottom of folders nested deeper than a path can name
    (110 names of 40 letters: 4,500 characters, past Linux's 4,096), made through folder handles."""
    import cv2
    import numpy as np

    photo = cv2.imencode(".png", np.random.default_rng(5).integers(0, 256, (32, 32, 3), dtype=np.uint8))[1].tobytes()
    root.mkdir()
    (root / "top.png").write_bytes(photo)
    handle = os.open(root, os.O_RDONLY)
    for _ in range(depth):
        os.mkdir("D" * 40, dir_fd=handle)
        inner = os.open("D" * 40, os.O_RDONLY, dir_fd=handle)
        os.close(handle)
        handle = inner
    out = os.open("bottom.png", os.O_WRONLY | os.O_CREAT, dir_fd=handle)
    os.write(out, photo)
    os.close(out)
    os.close(handle)


def test_a_folder_that_cannot_be_listed_is_a_row_of_errors(tmp_path, capsys):
    """os.walk and pathlib's glob skip such a folder without a word: an audit then called a split
    clean without having seen the copy inside it. It is a row of errors.csv now, the rest is listed,
    and the exit status is 1. Here the folder's path is too long to open (root or not)."""
    deep_tree(tmp_path / "deep")
    config = tmp_path / "c.yaml"
    config.write_text(HEAD + GRAY)
    for entry in (tmp_path / "deep", tmp_path / "deep" / "**" / "*.png"):
        status, _, err = cli(capsys, "run", config, "--images", entry, "--out", tmp_path / "o", "--quiet")
        errors = pd.read_csv(tmp_path / "o" / "errors.csv")
        assert status == 1 and list(errors["stage"]) == ["list"], err
        assert errors["reason"][0] == "cannot list this folder (File name too long), so its files are left out"
        assert pd.read_csv(tmp_path / "o" / "images.csv")["image"].tolist() == ["top"]
    status, _, err = cli(capsys, "leaks", "--train", "builtin:astronaut", "--test", tmp_path / "deep", "--threshold",
                         "8", "--out", tmp_path / "a", "--quiet")
    assert status == 1 and err.splitlines()[-1] == ("note: 1 file or folder could not be read, so the audit did "
                                                    "not compare them; see errors.csv")
    assert pd.read_csv(tmp_path / "a" / "errors.csv")["stage"].tolist() == ["list"]
    # a glob that does not reach down there lists the top folder only, and says nothing
    assert cli(capsys, "run", config, "--images", tmp_path / "deep" / "*.png", "--out", tmp_path / "o2",
               "--quiet")[0] == 0



def test_a_folder_without_read_permission_is_a_row_of_errors(tmp_path):
    """As root, permissions bind only without the override capabilities (setpriv drops them)."""
    (tmp_path / "split" / "locked").mkdir(parents=True)
    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "split" / "seen.png"), np.random.default_rng(2).integers(0, 256, (32, 32, 3), np.uint8))
    (tmp_path / "split" / "locked").chmod(0)
    prefix = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root, and no setpriv to drop the permission override")
        prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
    (tmp_path / "split" / "sub").mkdir()
    cv2.imwrite(str(tmp_path / "split" / "sub" / "x.png"), np.zeros((32, 32, 3), np.uint8))

    def audit(test: str, out: str):
        return subprocess.run([*prefix, sys.executable, "-m", "harness", "leaks", "--train", "builtin:astronaut",
                               "--test", test, "--threshold", "8", "--out", str(tmp_path / out)],
                              cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    try:
        done = audit(str(tmp_path / "split"), "o")
        narrow = audit(str(tmp_path / "split" / "s*" / "*.png"), "o2")  # a glob lists only what it can match
    finally:
        (tmp_path / "split" / "locked").chmod(0o755)
    assert narrow.returncode == 0, narrow.stderr
    if prefix and "setpriv" in done.stderr:
        pytest.skip(f"setpriv cannot drop capabilities here: {done.stderr.strip()}")
    assert done.returncode == 1 and done.stderr.splitlines()[-1] == ("note: 1 file or folder could not be read, so "
                                                                    "the audit did not compare them; see errors.csv")
    errors = pd.read_csv(tmp_path / "o" / "errors.csv")
    assert errors[["image", "stage"]].values.tolist() == [[str(tmp_path / "split" / "locked"), "list"]]
    assert "Permission denied" in errors["reason"][0]


def test_a_file_in_a_folder_that_cannot_be_searched_is_unreadable_not_missing(tmp_path):
    """Was "no image file at '.../locked/pic.png'": the file is there, behind a folder's permissions."""
    import cv2
    import numpy as np

    (tmp_path / "locked").mkdir()
    cv2.imwrite(str(tmp_path / "locked" / "pic.png"), np.zeros((32, 32, 3), np.uint8))
    prefix = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root, and no setpriv to drop the permission override")
        prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
    (tmp_path / "locked").chmod(0)
    try:
        done = subprocess.run([*prefix, sys.executable, "-m", "harness", "leaks", "--train", "builtin:astronaut",
                               "--test", str(tmp_path / "locked" / "pic.png"), "--threshold", "8", "--out",
                               str(tmp_path / "o")], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    finally:
        (tmp_path / "locked").chmod(0o755)
    if prefix and "setpriv" in done.stderr:
        pytest.skip(f"setpriv cannot drop capabilities here: {done.stderr.strip()}")
    assert done.returncode == 2
    assert one_line_error(done.stderr).endswith(f"cannot read '{tmp_path / 'locked' / 'pic.png'}' (Permission denied)")


@pytest.mark.parametrize("command, config, message", [
    ("run", HEAD.replace("builtin:astronaut", '"photos/a\\0b.jpg"') + GRAY,
     "images[0]: holds a NUL character, which no path or name can hold"),
    ("run", HEAD + GRAY + 'output: "out\\0put"\n', "output: holds a NUL character"),
    ("leaks", 'splits: {train: [builtin:coffee], test: ["te\\0st"]}\nthreshold: 8\n',
     "splits.test[0]: holds a NUL character"),
    ("leaks", 'splits: {"a\\0b": [builtin:coffee], test: [builtin:astronaut]}\nthreshold: 8\n',
     "splits.'a\\x00b': holds a NUL character"),
    ("leaks", 'splits: {"a\\nb": [builtin:coffee], test: [builtin:astronaut]}\nthreshold: 8\n',
     "splits: split names are plain words (letters, digits, _, - and ., not first), got 'a\\nb'"),
    *[("leaks", f'splits: {{"{name}": [builtin:coffee], test: [builtin:astronaut]}}\nthreshold: 8\n',
       f"splits: split names are plain words (letters, digits, _, - and ., not first), got {name!r}")
      for name in ("a b", "<img onerror=x>", "a|b", "*", "`x`", ".hidden", "-x")],
    ("leaks", f'splits: {{train: [builtin:coffee], {"x" * 101}: [builtin:astronaut]}}\nthreshold: 8\n',
     "splits: split names are at most 100 bytes (they name the files clean/NAME.txt and "
     "hashes/NAME.HASHER.parquet), got 'xxxx"),
])
def test_a_nul_or_a_line_break_where_a_path_or_name_goes_is_a_config_error(tmp_path, capsys, command, config, message):
    """Not "a bug in harness (ValueError: embedded null byte)" after the work, nor a clean list
    named across two lines."""
    path = tmp_path / "c.yaml"
    path.write_text(config)
    status, _, err = cli(capsys, command, path, "--out", tmp_path / "o")
    assert status == 2 and message in one_line_error(err), err
    assert not (tmp_path / "o").exists()


def test_a_command_line_path_that_is_not_utf8_is_one_line(tmp_path):
    """The system hands such bytes over as lone surrogates, which no UTF-8 file (run.json) can hold."""
    out = os.fsencode(tmp_path) + b"/o\xffut"
    done = subprocess.run([sys.executable.encode(), b"-m", b"harness", b"run", b"configs/lena.yaml", b"--out", out],
                          cwd=ROOT, capture_output=True, timeout=120, check=False)
    assert done.returncode == 2 and done.stdout == b""
    assert one_line_error(done.stderr.decode()) == (f"{tmp_path}/o\\xffut: not valid UTF-8; harness writes the paths "
                                                    "it is given into UTF-8 files (run.json, config.yaml), so rename it")
    assert not os.path.exists(out)


@pytest.mark.parametrize("make, option, message", [
    (lambda p: os.mkfifo(p), "--images", "'{p}' is not a regular file (a FIFO); only files are read as images"),
    (lambda p: (os.symlink(f"{p}.2", p), os.symlink(p, f"{p}.2")), "--images",
     "cannot read '{p}' (Too many levels of symbolic links)"),
    (lambda p: open(p, "w").close(), "--cache", "--cache {p}/c.sqlite: cannot be made, as {p} is not a directory"),
])
def test_a_path_that_is_something_else_is_named_for_what_it_is(tmp_path, capsys, make, option, message):
    """Not "no image file at" for a FIFO or a loop of links, nor "File exists" for a cache's folder."""
    thing = tmp_path / "thing"
    make(thing)
    value = thing / "c.sqlite" if option == "--cache" else thing
    status, _, err = cli(capsys, "run", "configs/lena.yaml", option, value, "--out", tmp_path / "o", "--quiet")
    assert status == 2 and message.format(p=thing) in one_line_error(err), err


@pytest.mark.parametrize("command", [["run", "configs/lena.yaml"],
                                     ["leaks", "--train", "builtin:camera", "--test", "builtin:coffee",
                                      "--hashers", "pHash", "--threshold", "8"]])
def test_a_cache_in_a_folder_that_does_not_exist_is_refused_before_any_work(tmp_path, capsys, command):
    """A mistyped --cache made the folders it named; the default cache, inside the output
    directory the command makes, still needs none made by hand."""
    cache = tmp_path / "missing" / "deeper" / "c.sqlite"
    status, _, err = cli(capsys, *command, "--cache", cache, "--out", tmp_path / "o", "--quiet")
    assert status == 2 and one_line_error(err) == (
        f"--cache {cache}: the folder {cache.parent} does not exist; make it first, or leave --cache out (the "
        "cache is then in the output directory)")
    assert sorted(tmp_path.iterdir()) == []  # neither the cache's folders nor the output directory
    assert cli(capsys, *command, "--out", tmp_path / "new" / "o", "--quiet")[0] == 0
    assert (tmp_path / "new" / "o" / "hash-cache.sqlite").is_file()


def test_a_line_break_in_the_working_directory_cannot_add_keys_to_a_saved_config():
    """config.yaml's first comment names the directory the run started in: a line break in that
    name would end the comment, and the rest would be read as the config's keys."""
    import yaml

    from harness.report import config_yaml

    for command in ("run", "leaks"):
        text = config_yaml({"name": "x"}, {"cwd": "/tmp/a\nimages: [evil.png]\n# "}, command)
        assert yaml.safe_load(text) == {"name": "x"}
        assert text.splitlines()[1].startswith("# it was started in (/tmp/a\\nimages: [evil.png]\\n# )")
        assert f"python -m harness {command} <this file>" in text.splitlines()[0]
