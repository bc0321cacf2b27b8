"""Reading a YAML config safely: safe tags only, and bounded size, aliases, nodes and depth.

PyYAML's SafeLoader runs no code, but it does not bound what a small file can cost: a
462-byte "billion laughs" file (aliases of aliases) expands to a billion nodes, an
alias may refer to the node that contains it (a recursive structure), and ten thousand
nested brackets overflow the stack. Duplicate keys are silently merged, the last one
winning. PyYAML has no option for any of this, so the loader below counts while it
composes (before anything is expanded) and refuses, with the line and column:

- a file over MAX_BYTES (checked without reading more than that),
- more than MAX_ALIASES aliases, or more than MAX_NODES nodes once every alias is
  counted as the nodes it repeats,
- nesting deeper than MAX_DEPTH (aliases counted at their expanded depth),
- a recursive alias, a duplicate key, text that is not UTF-8,
- a number written with more than MAX_NUMBER_TEXT characters.

It also reads numbers as YAML 1.2 does (Resolver below): PyYAML follows YAML 1.1, whose
floats need a dot and a signed exponent, so `fpr: 1e-6` was the string '1e-6', and whose
integers read a leading 0 as octal and `1:30` as base 60: `quality: 010` was 8.
"""

from __future__ import annotations

import os
import re
import stat
from typing import Any

import yaml

try:
    from yaml.cyaml import CParser  # libyaml, in PyYAML's wheels
except ImportError:
    CParser = None

from harness.errors import ConfigError, shortened, shown

MAX_BYTES = 1 << 20  # 1 MiB: the largest shipped config is under 10 KiB
MAX_ALIASES = 1_000
MAX_NODES = 100_000  # scalars, lists and mappings, every alias expanded
MAX_DEPTH = 50  # a config nests about 7 levels deep
MAX_NUMBER_TEXT = 100  # characters of an integer or float
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


class Resolver(yaml.resolver.Resolver):
    """PyYAML's resolver with YAML 1.2's integers and floats (the core schema's). Known PyYAML gaps
    (it implements YAML 1.1): a float needed a dot and a sign in its exponent, so `1e-6`, `1e30`,
    `-2E+3` and `1.5e3` were strings and a config's `fpr: 1e-6` was refused as "got '1e-6'"; and
    an integer with a leading 0 was octal (`quality: 010` was 8, `kernel: 09` a float), `1:30` was
    base 60 (90). Here an integer is decimal digits, `0o` octal or `0x` hex
    (construct_int reads them so), a float YAML 1.2's pattern (`.inf` and `.nan` included, which the
    config checks refuse as numbers that are not finite); what YAML 1.1 alone took for a number
    (`1:30`, `0b101`) is a string, which the config checks refuse by name. A quoted
    '1e-6' stays a string, as every quoted scalar does."""


INT, FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
# The core schema's patterns (YAML 1.2.2, 10.3.2), integers first: the float pattern matches "10"
# too. Digits may be grouped by '_' (100_000), as YAML 1.1 and Python allow: no value changes.
YAML12_NUMBERS = [
    (INT, re.compile(r"^(?:[-+]?[0-9](?:_?[0-9])*|0o[0-7]+|0x[0-9a-fA-F]+)$"), "-+0123456789"),
    (FLOAT, re.compile(r"^(?:[-+]?(?:\.[0-9](?:_?[0-9])*|[0-9](?:_?[0-9])*(?:\.(?:[0-9](?:_?[0-9])*)?)?)"
                       r"(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), "-+.0123456789"),
]


def _with_yaml12_numbers(cls) -> None:
    """`cls`'s implicit resolvers with YAML 1.1's integer and float patterns replaced by YAML 1.2's."""
    cls.yaml_implicit_resolvers = {first: [(tag, pattern) for tag, pattern in resolvers if tag not in (INT, FLOAT)]
                                   for first, resolvers in cls.yaml_implicit_resolvers.items()}
    for tag, pattern, firsts in YAML12_NUMBERS:
        cls.add_implicit_resolver(tag, pattern, list(firsts))


_with_yaml12_numbers(Resolver)


_YAML12_INT = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")


class RefusedValue(yaml.MarkedYAMLError):
    """A value this loader does not read (not a syntax error, nor a limit passed)."""


def construct_int(loader, node) -> int:
    """A YAML 1.2 integer (YAML12_NUMBERS): decimal whatever its leading zeros, `0o` octal, `0x` hex.
    (PyYAML's own reads a leading 0 as octal, and ':' and '_' as YAML 1.1 does.) Plain text reaches
    here only in those forms; an explicit `!!int` of any other (YAML 1.1's binary `0b101` or base 60
    `1:30`, which PyYAML's safe loader reads as 5 and 90) is refused in one line saying what
    YAML 1.2 takes and, where YAML 1.1 reads it as a number, which one to write (Python's "invalid
    literal for int() with base 10" said neither)."""
    raw = loader.construct_scalar(node)
    text = raw.replace("_", "")
    if not _YAML12_INT.fullmatch(text):
        try:
            old = yaml.constructor.SafeConstructor.construct_yaml_int(loader, node)
        except (ValueError, IndexError):
            old = None
        said = f"; YAML 1.1 reads it as {old}: write {old}" if isinstance(old, int) else ""
        raise RefusedValue(None, None, f"!!int {shortened(repr(raw), 60)} is not an integer as YAML 1.2 writes one "
                                       f"(decimal digits, 0o octal or 0x hex){said}", node.start_mark)
    if text.startswith(("0o", "0x")):
        return int(text[2:], 8 if text[1] == "o" else 16)
    return int(text, 10)


class Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper, resolving as `Resolver` reads: a string that YAML 1.2 reads as a number
    ('1e3', a caption or a name) is written quoted, so a config.yaml a run writes reads back as it
    was (PyYAML alone writes it plain, which Resolver reads as 1000.0)."""


_with_yaml12_numbers(Dumper)


def dump(data) -> str:
    """`data` as YAML that this module's loader reads back as `data` (keys in their order)."""
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=100)


class LimitError(yaml.MarkedYAMLError):
    """A limit of this loader was passed (not a syntax error)."""


class _Bounded:
    """The counting, refusing half of a loader: mixed into a YAML parser, composer, SafeConstructor
    and resolver below. Counts aliases, expanded nodes and depth while composing, refuses
    recursive aliases and duplicate keys, and gives every bad value its line."""

    def _start_counting(self) -> None:
        self._aliases = 0
        self._nodes = 0  # nodes so far, each alias counted as the nodes it repeats
        self._open: list[int] = []  # per node being composed: the largest height among its children so far
        self._extent: dict[int, tuple[int, int]] = {}  # id(finished node) -> (expanded nodes, height)

    def compose_node(self, parent, index):
        mark = self.peek_event().start_mark
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise LimitError(None, None, f"more than {MAX_ALIASES} aliases", mark)
            node = super().compose_node(parent, index)  # the anchored node (or "undefined alias")
            if id(node) not in self._extent:  # its anchor is still open: the alias is inside it
                raise LimitError(None, None, "an alias refers to a node that contains it (a recursive alias)",
                                 mark)
            size, height = self._extent[id(node)]
            self._count(size, mark)
            self._finished(height, mark)
            return node
        self._open.append(0)
        if len(self._open) > MAX_DEPTH:
            raise LimitError(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
        start = self._nodes
        self._count(1, mark)
        node = super().compose_node(parent, index)
        height = 1 + self._open.pop()
        self._extent[id(node)] = (self._nodes - start, height)  # nodes stay alive, so ids stay unique
        self._finished(height, mark)
        return node

    def _count(self, nodes: int, mark) -> None:
        self._nodes += nodes
        if self._nodes > MAX_NODES:
            raise LimitError(None, None, f"more than {MAX_NODES} values once aliases are expanded", mark)

    def _finished(self, height: int, mark) -> None:
        if len(self._open) + height > MAX_DEPTH:
            raise LimitError(None, None, f"nested more than {MAX_DEPTH} levels deep (aliases expanded)", mark)
        if self._open:
            self._open[-1] = max(self._open[-1], height)

    def construct_object(self, node, deep=False):
        if node.tag in _NUMBER_TAGS and len(node.value) > MAX_NUMBER_TEXT:
            # A number's text is converted in Python: a 900 KB base-60 integer ("1:59:59:...") took
            # 24 s, and a hex one of 4,000 digits cannot be written back in decimal.
            raise yaml.constructor.ConstructorError(None, None, f"bad value (a number written with {len(node.value):,} "
                                                    f"characters; at most {MAX_NUMBER_TEXT})", node.start_mark)
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as exc:  # int('9' * 5000), a 13th month: a bad value, with its line
            raise yaml.constructor.ConstructorError(None, None, f"bad value ({shortened(exc, 120)})",
                                                    node.start_mark) from None

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may be overridden: not a duplicate
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # unhashable: the constructor below says so
                    continue
                if first is not key_node:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {shown(key)} (first on line {first.start_mark.line + 1})",
                        key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


if CParser is not None:
    class BoundedSafeLoader(_Bounded, yaml.composer.Composer, CParser, yaml.constructor.SafeConstructor, Resolver):
        """libyaml's parser (about 4 times faster than PyYAML's: a 1 MiB config is parsed in seconds,
        not tens of seconds) under PyYAML's composer, which is where _Bounded counts."""

        def __init__(self, stream):
            CParser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            Resolver.__init__(self)
            self._start_counting()
else:  # PyYAML built without libyaml
    class BoundedSafeLoader(_Bounded, Resolver, yaml.SafeLoader):
        def __init__(self, stream):
            yaml.SafeLoader.__init__(self, stream)
            self._start_counting()


BoundedSafeLoader.add_constructor(INT, construct_int)


def read_config(path: str) -> Any:
    """The YAML data of a config file, or a ConfigError naming the file, the line and the problem."""
    return load_text(_read_bytes(path), path)


def _read_bytes(path: str) -> bytes:
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; only regular files are read.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read the config ({exc.strerror})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError(path, "", "not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read the config ({exc.strerror})") from None
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise ConfigError(path, "", f"larger than {MAX_BYTES // (1 << 20)} MiB; a config is a few KiB")
    return data


def load_text(data: bytes | str, source: str) -> Any:
    """Parse YAML text with BoundedSafeLoader; every problem is one ConfigError line."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[:exc.start].count(b"\n") + 1
            raise ConfigError(source, f"line {line}",
                              f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
    if len(data) > MAX_BYTES:
        raise ConfigError(source, "", f"larger than {MAX_BYTES // (1 << 20)} MiB; a config is a few KiB")
    loader = None
    try:
        loader = BoundedSafeLoader(data)
        return loader.get_single_data()
    except (LimitError, RefusedValue) as exc:
        raise ConfigError(source, _where(exc.problem_mark), f"YAML refused: {exc.problem}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if isinstance(exc, yaml.reader.ReaderError):
            mark, problem = None, f"{shortened(str(exc).splitlines()[0], 120)} (character {exc.position})"
        raise ConfigError(source, _where(mark), f"YAML syntax error: {problem}") from None
    except RecursionError:  # not reached within MAX_DEPTH; a last guard all the same
        raise ConfigError(source, "", f"YAML refused: nested more than {MAX_DEPTH} levels deep") from None
    finally:
        if loader is not None and hasattr(loader, "dispose"):
            loader.dispose()


def _where(mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
