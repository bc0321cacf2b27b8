"""The leak audit: find the copies of images between data-set splits, and within each split.

    audit = harness.find_leaks({"splits": {"train": ["data/train"], "test": ["data/test"]},
                                "hashers": ["pHash"], "threshold": 8})
    audit.leaks          # one row per flagged pair and hasher
    audit.save("reports/leaks")

Every image is hashed once (by the pass `run` uses: the same cache, the same engine), or its hash
is read from a table of precomputed hashes. Then, per hasher, every pair of images within its
threshold is found exactly (harness/search.py): across every two splits and inside each split.
A pair is flagged when at least `min_agree` hashers find it; every hasher's distance of a flagged
pair is kept. Duplicate groups are the connected components of the flagged pairs; the clean
lists keep one file of each group in a split and drop from a later split the files that have a
copy in an earlier one (test files with a copy in train leave test). No user file is ever
deleted, moved or rewritten.

What a threshold costs is stated with it:
- `calibration`: a `run` output directory. Its impostor pairs (different images) give the share
  of chance matches at the threshold, so the expected false flags are that share of the pairs
  compared, with a 95% range for the number found (leaks_search.false_flag_range); its edited
  copies give the share of copies the threshold misses, per family of edits.
- otherwise, the data itself: the distance of every pair compared is counted (an exact histogram,
  for Hamming hashes), and `fpr` picks the largest threshold at which at most that share of the
  pairs are flagged (0, identical hashes only, when those pairs alone are more: exact copies).
  The data cannot tell a copy from a chance match below a threshold, so the flagged pairs are
  also the bound on the false ones.
"""

from __future__ import annotations

import array
import copy
import dataclasses
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.cache import CacheUse, Entry, HashCache, digest
from harness.config import (MAX_PIXELS_RANGE, HasherSpec, _no_unknown_keys, _parse_hashers, _typed, as_distance,
                            Snapshot, check_text, output_of_name, output_path, plain_data, run_name,
                            whole_number)
from harness.errors import ConfigError, HarnessError, shown
from harness.hashers.base import BitHasher
from harness.hashing import Hashed, from_entries
from harness.images import DEFAULT_MAX_PIXELS, display_path, expand_source, file_identity, utf8_text
from harness.imagework import SOURCE, Plan
from harness.schema import ERROR_COLUMNS

LEAK_COLUMNS = ["split_a", "file_a", "split_b", "file_b", "hasher", "distance", "flagged", "agree", "group"]
GROUP_COLUMNS = ["group", "split", "file", "keep", "copy_of", "copy_in"]
ESTIMATE_COLUMNS = ["split_a", "split_b", "hasher", "threshold", "pairs_compared", "pairs_flagged",
                    "expected_false", "expected_false_low", "expected_false_high", "basis"]
MISS_COLUMNS = ["hasher", "family", "copies", "missed", "miss_rate", "miss_low", "miss_high"]
HASH_TABLE_SUFFIXES = (".csv", ".parquet")
# A split's name is part of file names (hashes/NAME.HASHER-2.parquet, the hasher's part at most 80
# characters): with this, they stay within the 255 bytes a file name may have on common file systems.
SPLIT_NAME_BYTES = 100
# The key of the JSON an audit stores in the hash tables it writes (Parquet key-value metadata): what
# their rows cannot hold, the hasher that made the hashes (`hasher`, its id; `name` and `params`, what
# they mean), the files and folders of the split that gave no hash (`errors`, rows of errors.csv) and
# the directory its relative file names are relative to (`cwd`, the audit's; absent where they are
# relative to several: a split of tables written from different directories, or of tables and images).
HASH_TABLE_KEY = "harness.leaks"
AGREEMENT = "(agreement)"  # the estimates' row for the combination of hashers (min_agree)
TOP_KEYS = {"name", "description", "output", "splits", "hashers", "threshold", "fpr", "calibration", "min_agree",
            "max_pixels", "max_side", "max_flags"}
DEFAULT_MAX_FLAGS = 1_000_000  # more flagged pairs than this stops the audit: the threshold is surely wrong
SHARD = 65_536  # query rows searched per job
SAME_FILE_EXAMPLES = 3  # the files given more than once that the note names


# --- configuration ---------------------------------------------------------------------

@dataclass(frozen=True)
class LeakConfig:
    source: str
    name: str
    output: str
    splits: tuple[tuple[str, tuple[str, ...]], ...]  # (split name, entries), in order
    hashers: tuple[HasherSpec, ...]
    threshold: dict[str, float]  # per hasher id; empty when fpr or calibration decides
    fpr: float | None
    calibration: str | None
    min_agree: int
    max_pixels: int | None = None
    max_side: int | None = None
    max_flags: int = DEFAULT_MAX_FLAGS
    raw: dict = field(default_factory=dict, repr=False, compare=False)
    # (split name, the command-line option that gave its entries), for the splits given so: an
    # error about one of their entries names the option, the key the user typed, not splits.NAME.
    split_options: tuple[tuple[str, str], ...] = ()

    def entries(self) -> list[str]:
        """Every split's entries (paths, globs, builtin:NAME, hash tables), in order."""
        return [entry for _, entries in self.splits for entry in entries]

    def entry_names(self) -> list[str]:
        """What messages call each entry of every split, in order: the command-line option that
        gave its split (--train), else its config key (splits.test[0])."""
        options = dict(self.split_options)
        return [options.get(split) or f"splits.{split}[{number}]"
                for split, entries in self.splits for number in range(len(entries))]

    def entry_error(self, split: str, number: int, problem: str) -> ConfigError:
        """The error about entry `number` of `split`, naming where the user gave it: the config's
        file (or <dict>) and key, or the command line's option."""
        option = dict(self.split_options).get(split)
        if option is not None:
            return ConfigError(option, "", problem)
        return ConfigError(self.source, f"splits.{split}[{number}]", problem)

    def reproducible(self) -> dict:
        raw = copy.deepcopy(self.raw)  # the caller's to change: `raw` stays this config's
        return {**raw, "name": self.name, "output": self.output,
                "splits": {name: list(entries) for name, entries in self.splits},
                "hashers": raw.get("hashers", [h.id for h in self.hashers])}


def leak_config(raw: Any, source: str = "<dict>", split_options: dict[str, str] | None = None, *,
                import_plugins: bool = True, plugins: list | None = None,
                key_options: dict[str, str] | None = None, names_folder: bool = False) -> LeakConfig:
    """A leak audit's settings (from YAML, the command line or a dict built in Python: see
    config.plain_data) validated: one ConfigError line each. The LeakConfig keeps a copy of its own.
    `split_options`: split name -> the command-line option that gave its entries (see LeakConfig).
    With `import_plugins=False` (`validate`), no plugin hasher is imported: it is appended to
    `plugins` as (kind, import path, key), as config.parse_config does. `key_options`: key -> the
    command-line option that gave it (threshold: --threshold), which its errors name: the key the
    user typed, not the config file's, which may not hold it."""
    if not isinstance(raw, dict):
        raise ConfigError(source, "", "a leak audit config is a mapping (splits, hashers, threshold, ...)")
    raw = plain_data(raw, source)
    check_text(raw, source)
    _no_unknown_keys(raw, TOP_KEYS, source, "")
    splits = raw.get("splits")
    if not isinstance(splits, dict) or len(splits) < 1:
        raise ConfigError(source, "splits", "expected a mapping of split names to image sources, e.g. "
                                            "{train: [data/train], test: [data/test]}")
    parsed_splits = []
    for name, entries in splits.items():
        # A split's name names its clean list (clean/NAME.txt) and is printed in the answer's one line:
        # letters, digits, "_", "-" and "." (not first), nothing a shell or a page would read otherwise.
        if not isinstance(name, str) or not re.fullmatch(r"(?![.-])[\w.-]+", name):
            raise ConfigError(source, "splits", f"split names are plain words (letters, digits, _, - and ., not "
                                                f"first), got {shown(name)}")
        if len(name.encode("utf-8", "surrogateescape")) > SPLIT_NAME_BYTES:  # it names files: found before any work
            raise ConfigError(source, "splits", f"split names are at most {SPLIT_NAME_BYTES} bytes (they name the "
                              f"files clean/NAME.txt and hashes/NAME.HASHER.parquet), got {shown(name)}")
        if isinstance(entries, str):
            entries = [entries]
        if not isinstance(entries, list) or not entries or not all(isinstance(e, str) for e in entries):
            raise ConfigError(source, f"splits.{name}", f"expected a non-empty list of paths, got {shown(entries)}")
        parsed_splits.append((name, tuple(entries)))
    parsed_splits.sort(key=lambda split: _audit_rank(split[0]))  # stable: the others keep their order
    try:
        hashers = _parse_hashers(raw.get("hashers", ["pHash"]), source, import_plugins,
                                 [] if plugins is None else plugins)
    except ConfigError as exc:  # hashers given by --hashers alone (no config): named by the option
        if "hashers" not in (key_options or {}):
            raise
        raise ConfigError(key_options["hashers"], "", exc.problem) from None
    ids = [h.id for h in hashers]

    threshold = raw.get("threshold")
    fpr = raw.get("fpr")
    calibration = raw.get("calibration")
    if threshold is None and fpr is None and calibration is None:
        if key_options is not None:  # the `leaks` command: its options first (a config may hold the keys instead)
            raise ConfigError("leaks", "", "choose how close is a copy: --threshold N (a distance), --fpr RATE (a "
                                           "share of the pairs compared) or --calibration RUN_DIR (a run's output "
                                           "directory)" + ("" if source == "the command line" else
                                                           f", or the key threshold, fpr or calibration in {source}"))
        raise ConfigError(source, "threshold", "choose how close is a copy: threshold (a distance), fpr (a share of "
                                               "the pairs compared) or calibration (a run's output directory)")
    if threshold is not None and fpr is not None:
        raise ConfigError(source, "fpr", "give threshold or fpr, not both")
    thresholds: dict[str, float] = {}
    if threshold is not None:
        def threshold_error(hasher_id: str | None, problem: str) -> ConfigError:
            return _key_error(source, key_options, "threshold", problem, hasher_id or "")

        given = threshold if isinstance(threshold, dict) else dict.fromkeys(ids, threshold)
        for hasher_id, value in given.items():
            key = hasher_id if isinstance(threshold, dict) else None
            if hasher_id not in ids:
                raise threshold_error(hasher_id, f"not a hasher of this audit ({', '.join(ids)})")
            if as_distance(value) is None:
                raise threshold_error(key, f"expected a finite distance >= 0, got {shown(value)}")
            largest = _largest_distance(hashers[ids.index(hasher_id)], import_plugins)
            if largest is not None and as_distance(value) >= largest:
                raise threshold_error(key, f"{as_distance(value):g} is at or above {hasher_id}'s largest distance "
                                           f"({largest:g}): every pair would be flagged")
            # To 6 significant digits, as the distances it is compared with (leaks_search.stored) and as
            # every table and line shows it: 3.408428 showed as 3.40843, and a pair at 3.40843 was not flagged.
            thresholds[hasher_id] = float(f"{as_distance(value):.6g}")
        missing = [h for h in ids if h not in thresholds]
        if missing and calibration is None:
            raise threshold_error(None, f"no threshold for {', '.join(missing)}")
    if fpr is not None:
        if isinstance(fpr, bool) or not isinstance(fpr, (int, float)) or not 0 < fpr < 1:
            raise _key_error(source, key_options, "fpr", f"expected a share in (0, 1), got {shown(fpr)}")
        fpr = float(fpr)
    if calibration is not None:
        _typed(calibration, str, source, "calibration")
        if not os.path.isdir(calibration):
            raise _key_error(source, key_options, "calibration",
                             f"no run output directory at '{display_path(calibration)}'")
    min_agree = raw.get("min_agree", 1)
    if isinstance(min_agree, bool) or not isinstance(min_agree, int) or not 1 <= min_agree <= len(hashers):
        raise _key_error(source, key_options, "min_agree", f"expected a whole number from 1 to {len(hashers)} (the "
                                                           f"hashers), got {shown(min_agree)}")
    limits = {}
    for key, bounds in (("max_pixels", MAX_PIXELS_RANGE), ("max_side", (16,)), ("max_flags", (1,))):
        limits[key] = whole_number(raw.get(key), source, key, *bounds)
    _typed(raw.get("description", ""), str, source, "description")  # shown under the summary's title
    name = run_name(raw.get("name", "leaks"), source, names_folder and "output" not in raw)  # (see parse_config)
    output = output_path(raw.get("output", output_of_name(name)), source)
    return LeakConfig(source, name, output, tuple(parsed_splits), tuple(hashers), thresholds, fpr, calibration,
                      min_agree, limits["max_pixels"], limits["max_side"], limits["max_flags"] or DEFAULT_MAX_FLAGS,
                      raw, tuple((split_options or {}).items()))


def chosen_hashers(raw: dict, hashers: list[str], keeps_min_agree: bool, source: str, option: str = "--hashers",
                   advice: str = "choose more hashers or give --min-agree") -> dict:
    """An audit config's data with only the hashers `hashers` names (`option`: what gave them,
    which errors name: --hashers, or find_leaks' `hashers`). As `run --hashers` does, they are the
    config's own, by id, parameters and all (a bare name in their place ran the hasher's defaults
    under thresholds set for the config's parameters), and the config's thresholds of the hashers
    left out go: they were not wrong, only not chosen. A config that names no hashers takes the
    names as they are; one whose `hashers` is malformed is returned as it is, for the parser's
    error. The config's min_agree cannot be met by fewer hashers, which is the option's doing as
    much as the file's, so the error names both."""
    from harness.config import not_a_hasher_of

    entries = raw.get("hashers")
    if entries is not None:
        by_id = {}
        for entry in entries if isinstance(entries, list) and entries else [None]:
            name = entry if isinstance(entry, str) else entry.get("id", entry.get("name")) \
                if isinstance(entry, dict) else None
            if not isinstance(name, str):
                return raw  # malformed: the parser's to refuse, naming its key, before anything is chosen
            by_id.setdefault(name, entry)
        for name in hashers:
            if name not in by_id:
                named = {hid: entry if isinstance(entry, str) else entry.get("name") for hid, entry in by_id.items()}
                raise ConfigError(option, name, not_a_hasher_of(name, named, source))
        hashers = list(dict.fromkeys(hashers))
        raw = {**raw, "hashers": [by_id[name] for name in hashers]}
    else:
        raw = {**raw, "hashers": hashers}
    if isinstance(raw.get("threshold"), dict):
        raw["threshold"] = {h: value for h, value in raw["threshold"].items() if h in hashers}
    min_agree = raw.get("min_agree")
    if keeps_min_agree and type(min_agree) is int and min_agree > len(set(hashers)) >= 1:
        count = len(set(hashers))
        raise ConfigError(option, ",".join(hashers), f"{count} {'hasher' if count == 1 else 'hashers'}, fewer "
                          f"than min_agree: {min_agree} of {source}; {advice}")
    return raw


def _key_error(source: str, key_options: dict[str, str] | None, key: str, problem: str, sub: str = "") -> ConfigError:
    """The error about `key` (`sub`: a part of it, e.g. a hasher's threshold), naming the option
    that gave it where the command line did (see leak_config), else the config's key path."""
    option = (key_options or {}).get(key)
    if option is not None:
        return ConfigError(option, sub, problem)
    return ConfigError(source, f"{key}.{sub}" if sub else key, problem)


def _largest_distance(spec: HasherSpec, imported: bool) -> float | None:
    """The largest distance `spec`'s hasher can give, where it is known before it runs: a bit hash's
    bit count. None for the others (their distance_max only scales their distances, which may pass
    it) and for a plugin left unimported (`validate`)."""
    from harness.hashers import HASHERS

    if HASHERS.is_plugin(spec.name) and not imported:
        return None
    cls = HASHERS.get(spec.name)
    if not (isinstance(cls, type) and issubclass(cls, BitHasher)):
        return None
    return float(spec.build().distance_max)


def _audit_rank(split_name: str) -> int:
    """The audit's order of splits: train first, test last, the others between them in the order given.
    The order decides which copy leaves its split (the later one), so test files with a copy in train
    leave test whichever order a config writes its splits in, as on the command line."""
    return {"train": 0, "test": 2}.get(split_name, 1)


# --- the sources of a split: image files, or tables of precomputed hashes ---------------------

@dataclass
class SplitHashes:
    """One split's files and, per hasher, their hashes: `rows[k]` is file k's row in `array[hasher]`
    (-1: no hash, the reason in errors)."""

    name: str
    files: list[str]  # as shown in the tables
    paths: list[str | None]  # what to read for a thumbnail (None for a hash table row without a readable file)
    names: list[str] = field(default_factory=list)  # each file's name as the system gives it (files shows it)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    rows: dict[str, np.ndarray] = field(default_factory=dict)
    errors: list[dict] = field(default_factory=list)  # rows of errors.csv: its files and folders that gave no hash
    cwd: str | None = None  # the directory its relative names are relative to (None: to several)
    notes: list[str] = field(default_factory=list)  # what reading its sources found to say (the audit's notes)
    # Each file's conversions as it was read ("alpha dropped; EXIF orientation 6 applied"), "" for none;
    # a hash table's rows have those its audit recorded.
    file_notes: list[str] = field(default_factory=list)


@dataclass
class HashTable:
    """A table of precomputed hashes: its files, their bit-packed hashes, and the rows of errors.csv
    that the audit which wrote it recorded in it (the files of its split it could not hash: they
    were never compared, and an audit from the table must say so as the first did)."""

    files: list[str]
    rows: np.ndarray
    errors: list[dict]
    cwd: str | None = None  # the directory the audit that wrote it ran from, where it recorded it
    unusable_cwd: str | None = None  # a recorded directory that is no absolute path here (see _usable_cwd)
    names: list[str] | None = None  # the files' names as this system gives them (_system_names)
    recorded: bool = True  # whether an audit's record (HASH_TABLE_KEY) is in it
    notes: list[str] | None = None  # each file's conversions as its audit read it ("" for none); None: not recorded


# files.csv's notes of a file from a hash table that recorded none (another tool's, an older audit's):
# not "" (read as it is), which nobody can tell.
NOTES_NOT_RECORDED = "not recorded in its hash table"


def is_hash_table(entry: str) -> bool:
    return entry.lower().endswith(HASH_TABLE_SUFFIXES) and os.path.isfile(entry)


def read_hash_table(path: str, hasher, hasher_id: str) -> HashTable:
    """A table of precomputed hashes (columns `file` and `hash`, the hash in hexadecimal), as the
    hashes of `hasher`, with what an audit recorded in it (HASH_TABLE_KEY). One line for anything
    malformed."""
    from harness.storage import read_table_file

    shown_path = display_path(path)
    if not isinstance(hasher, BitHasher):
        raise HarnessError(f"{shown_path}: hash tables hold bit hashes; {hasher_id} is not one")
    frame, metadata = read_table_file(path, ["file", "hash"])
    recorded = _recorded(shown_path, metadata)
    _check_recorded_hasher(shown_path, recorded, hasher, hasher_id)
    first = 1 if path.lower().endswith(".parquet") else 2  # the row number of the first row (a CSV has a header)
    width = (int(hasher.distance_max) + 7) // 8
    files = frame["file"].astype(str).tolist()
    broken = next((k for k, name in enumerate(files) if "\n" in name or "\r" in name), None)
    if broken is not None:  # the clean lists hold a file per line (see _nameable)
        raise HarnessError(f"{shown_path}: row {broken + first}: file {shown(files[broken])} holds a line break, "
                           "which a clean list (a file per line) cannot hold")
    repeated = np.flatnonzero(pd.Series(files).duplicated().to_numpy())
    if len(repeated):  # two hashes for one file: which one is its own cannot be told
        k = int(repeated[0])
        raise HarnessError(f"{shown_path}: row {k + first}: file {shown(files[k])} is row "
                           f"{files.index(files[k]) + first} too; a hash table holds each file once")
    texts = [text.strip().lower().removeprefix("0x") for text in frame["hash"].astype(str)]
    rows = np.zeros((len(texts), width), np.uint8)
    try:  # all at once (a million hashes in a second); row by row only to name a bad one
        if any(len(text) != 2 * width for text in texts):
            raise ValueError("a hash of another length")
        rows = np.frombuffer(bytes.fromhex("".join(texts)), np.uint8).reshape(len(texts), width).copy()
    except ValueError:
        for k, text in enumerate(texts):
            try:
                ok = len(text) == 2 * width and len(bytes.fromhex(text)) == width
            except ValueError:
                ok = False
            if not ok:
                raise HarnessError(f"{shown_path}: row {k + first}: hash {shown(text)} is not {width * 2} hexadecimal "
                                   f"digits ({hasher_id}'s hashes are {int(hasher.distance_max)} bits)") from None
    if not files:
        raise HarnessError(f"{shown_path}: the hash table has no rows")
    spare = 8 * width - int(hasher.distance_max)  # np.packbits' padding: the last byte's low bits, always 0
    if spare:
        padded = np.flatnonzero(rows[:, -1] & ((1 << spare) - 1))
        if len(padded):
            k = int(padded[0])
            raise HarnessError(f"{shown_path}: row {k + first}: hash {shown(texts[k])} sets bits past the "
                               f"{int(hasher.distance_max)} bits of {hasher_id} (its last {spare} bits must be 0)")
    cwd = recorded.get("cwd")
    here_cwd = None if cwd is None else system_name(cwd)  # None also where this system cannot name it
    usable = cwd is None or (here_cwd is not None and _usable_cwd(here_cwd))
    notes = recorded.get("notes")
    if notes is not None and any(int(key) >= len(files) for key in notes):
        raise HarnessError(f"{shown_path}: its {HASH_TABLE_KEY} metadata records notes of a row the table does not "
                           "have; write the table again without it")
    errors = [{c: row[c] for c in ERROR_COLUMNS} for row in recorded.get("errors", [])]
    notes = None if notes is None else [notes.get(str(k), "") for k in range(len(files))]
    names = _system_names(shown_path, files, recorded, first)
    unnamed = [k for k, name in enumerate(names) if name is None]
    if unnamed:  # a name this system cannot hold (a Windows reader, bytes that are not UTF-8): compared with nothing
        kept = [k for k, name in enumerate(names) if name is not None]
        errors += [{"image": files[k], "image_id": "", "stage": "read",
                    "reason": f"row {k + first} of {shown_path}: its name cannot be a file name on this system "
                              f"(file system encoding {sys.getfilesystemencoding()}), so its hash is not compared"}
                   for k in unnamed]
        files, rows, names = [files[k] for k in kept], rows[kept], [names[k] for k in kept]
        notes = None if notes is None else [notes[k] for k in kept]
        if not files:
            raise HarnessError(f"{shown_path}: no name of the hash table can be a file name on this system "
                               f"(file system encoding {sys.getfilesystemencoding()})")
    return HashTable(files, rows, errors, here_cwd if usable else None, None if usable else cwd, names,
                     HASH_TABLE_KEY in metadata, notes)


def _check_named_hasher(path: str, hasher_id: str) -> None:
    """A hash table without an audit's record is taken as `hasher_id`'s, unchecked; but one its file
    name says is another registered hasher's (an audit names its tables SPLIT.HASHER.parquet: an
    older audit's train.pHash.parquet, which recorded no hasher) is refused: given with --hashers
    aHash, pHash's hashes compared as aHash's found none of the copies, with exit 0."""
    from harness.hashers import HASHERS
    from harness.leaks_report import _file_name

    # An audit writes SPLIT.HASHER.parquet, the split a plain word and the hasher's id as _file_name makes it
    # ("imagehash.phash" keeps its dot), with -2, -3, ... where two names would be one.
    stem, dot, extension = os.path.basename(path).rpartition(".")
    _, split_dot, written = stem.partition(".")
    if not (dot and split_dot and extension.lower() == "parquet"):
        return
    written = re.sub(r"-\d+$", "", written)
    named = {_file_name(name): name for name in HASHERS}.get(written)
    if named is not None and named != hasher_id and written != _file_name(hasher_id):
        raise HarnessError(f"{display_path(path)}: named as {named}'s hash table by the audit that wrote it, and it "
                           f"records no hasher to tell otherwise; audit it with --hashers {named}, or rename it if "
                           f"it holds {hasher_id}'s hashes")


def _system_names(shown_path: str, files: list[str], recorded: dict, first: int) -> list[str | None]:
    """The files' names as this system gives them (os.fsdecode of their bytes), whatever the locale of
    the audit that wrote the table and of this one. A table's `file` is the text its name's bytes are
    as UTF-8 (display_path); a name that is not valid UTF-8 shows its bytes as \\xNN escapes, which a
    file may also be named literally, so the audit that wrote it recorded those bytes (`raw_names`: row
    -> hexadecimal bytes). A name is converted text -> bytes (UTF-8, or the recorded bytes) -> this
    system's text: read as text, a name the writer kept as UTF-8 was encoded again with this locale's
    codec (ASCII under LC_ALL=C: a crash; Latin-1: another file's name). None for a name this system
    cannot hold. A recorded name must show as its row's text, or the table is refused."""
    names: list[str | None] = [system_name(text) for text in files]
    for key, hexed in recorded.get("raw_names", {}).items():
        row = int(key)
        try:
            data = bytes.fromhex(hexed) if row < len(files) else None
        except ValueError:
            data = None
        if data is None or data.decode("utf-8", "backslashreplace") != files[row]:
            raise HarnessError(f"{shown_path}: its {HASH_TABLE_KEY} metadata records the bytes of row {row + first}'s "
                               "name as something that does not show as that name; write the table again without it")
        names[row] = _fsdecoded(data)
    return names


def _fsdecoded(data: bytes) -> str | None:
    try:
        return os.fsdecode(data)
    except UnicodeDecodeError:  # only where the file system encoding has no surrogateescape (Windows)
        return None


def system_name(text: str) -> str | None:
    """A name a hash table records as text (a file's, or its `cwd`), as this system names it: its
    text is the UTF-8 of the name's bytes, undecodable bytes as surrogate escapes (utf8_text),
    whatever the locale it was written under; tables that older versions wrote under another
    locale than UTF-8 are read so too (they almost always were written under UTF-8). None where
    this system cannot name it. Under a UTF-8 locale, the text itself."""
    if text.isascii():
        return text
    try:
        data = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that stands for no byte
        return None
    return _fsdecoded(data)


def _not_utf8(name: str) -> bytes | None:
    """The bytes of a name of this system that are not valid UTF-8, which a table can only show
    with \\xNN escapes (so it records them: raw_names); None for a name whose bytes are."""
    if name.isascii():
        return None
    data = os.fsencode(name)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return data
    return None


def _usable_cwd(cwd: str) -> bool:
    """Whether a table's recorded directory can be a directory here: an absolute path of this
    machine's kind. One written on Windows (C:\\...) read on Linux, or a relative one, is not; the
    table's hashes are still good, so its names are read from here, as for a table without one."""
    return os.path.isabs(cwd) and "\0" not in cwd


def hash_table_metadata(hasher_id: str, spec: dict, errors: list[dict], cwd: str | None = None,
                        names: list[str] = (), notes: list[str] = ()) -> dict[str, str]:
    """The key-value metadata of a hash table the audit writes: the hasher that made its hashes (its
    id and `spec()`), the rows of errors.csv of its split, the directory its relative file names
    are relative to (`cwd`, as the UTF-8 text of its bytes: utf8_text; None, where they are relative
    to several, records none), the bytes of each name (`names`, as the system gives them) that is not
    valid UTF-8 (`raw_names`, by row: the table can only show it with \\xNN escapes), and each file's
    conversions as it was read (`notes`, by row, those that have some), which an audit from the table
    shows as this one did. Names and directory are recorded as their bytes are, whatever this locale:
    an audit under another reads them back (_system_names)"""
    raw = {str(k): data.hex() for k, name in enumerate(names) if (data := _not_utf8(name)) is not None}
    # Always written, empty too: a table without the key (another tool's, an older audit's) recorded none.
    noted = {str(k): note for k, note in enumerate(notes) if note}
    record = {**_hasher_record(hasher_id, spec), "errors": errors,
              **({"cwd": utf8_text(cwd)} if cwd is not None else {}),
              **({"raw_names": raw} if raw else {}), "notes": noted}
    return {HASH_TABLE_KEY: json.dumps(record, sort_keys=True)}


def _hasher_record(hasher_id: str, spec: dict) -> dict:
    params = json.loads(json.dumps({k: v for k, v in spec.items() if k != "name"}))  # as JSON gives them back
    return {"hasher": hasher_id, "name": spec["name"], "params": params}


def _check_recorded_hasher(shown_path: str, recorded: dict, hasher, hasher_id: str) -> None:
    """A table whose audit recorded another hasher is refused: its hashes' distances would be read
    as this hasher's, and a calibration of this hasher would price them. A table without the record
    (a CSV, another tool's) is taken as the hashes of the hasher named, as the README says."""
    if "name" not in recorded:
        return
    mine = _hasher_record(hasher_id, hasher.spec())
    if (recorded["name"], recorded["params"]) != (mine["name"], mine["params"]):
        def described(record):
            return f"{record['hasher']} ({record['name']} {json.dumps(record['params'], sort_keys=True)})"

        raise HarnessError(f"{shown_path}: holds the hashes of {described(recorded)}, not of {described(mine)}; "
                           f"audit it with that hasher ({_how_to_name(recorded)})")


def _how_to_name(record: dict) -> str:
    """How an audit names the hasher of a record: `--hashers NAME` where its parameters are the
    defaults, else a config's hashers entry (an id names a column, not a hasher, and the command
    line gives no parameters)."""
    from harness.hashers import HASHERS

    defaults = None  # a hasher not registered here (a plugin): its config entry says it
    # Registered names alone: a plugin's name in a table's record is never imported (the table, not
    # the user, chose it; was: `pkg:Name` in a table's metadata imported pkg, from the current folder).
    if record["name"] in HASHERS:
        try:
            defaults = _hasher_record(record["hasher"], HASHERS.get(record["name"])().spec())["params"]
        except Exception:  # noqa: BLE001 -- parameters it cannot be built with: named in full below
            defaults = None
    if record["params"] == defaults:
        return f"--hashers {record['name']}"
    entry = json.dumps({"name": record["name"], **record["params"]}, sort_keys=False)
    return f"a config with hashers: [{entry}]"


def _recorded(shown_path: str, metadata: dict[str, str]) -> dict:
    """What an audit recorded in a hash table (hash_table_metadata), checked; {} for a table
    without it (a CSV, another tool's Parquet)."""
    if HASH_TABLE_KEY not in metadata:
        return {}
    try:
        recorded = json.loads(metadata[HASH_TABLE_KEY])
    except (ValueError, RecursionError):  # RecursionError: JSON nested too deep ([[[[...)
        recorded = None
    errors = recorded.get("errors", []) if isinstance(recorded, dict) else None
    hasher_known = isinstance(recorded, dict) and (
        "name" not in recorded or (isinstance(recorded.get("hasher"), str) and isinstance(recorded["name"], str)
                                   and isinstance(recorded.get("params"), dict)))
    cwd = recorded.get("cwd") if isinstance(recorded, dict) else None
    cwd_known = cwd is None or isinstance(cwd, str)  # a path of another machine's kind: see _usable_cwd
    raw = recorded.get("raw_names", {}) if isinstance(recorded, dict) else None
    noted = recorded.get("notes", {}) if isinstance(recorded, dict) else None
    by_row_known = all(isinstance(record, dict) and all(
        isinstance(k, str) and k.isascii() and k.isdigit() and len(k) < 12 and isinstance(v, str)
        for k, v in record.items()) for record in (raw, noted))
    if (not hasher_known or not cwd_known or not by_row_known or not isinstance(errors, list)
            or not all(_is_error_row(row) for row in errors)):
        raise HarnessError(f"{shown_path}: its {HASH_TABLE_KEY} metadata is not what an audit writes (JSON with "
                           f"hasher, name, params and errors, rows of {', '.join(ERROR_COLUMNS)}, cwd, a "
                           "path, and raw_names and notes, row numbers and text); write the table again without it")
    return recorded


# --- the audit ---------------------------------------------------------------------------

@dataclass
class LeakAudit:
    """Everything an audit found, as DataFrames, with how it was decided.

    `leaks`: one row per flagged pair and hasher; `groups`: the files of every duplicate group and
    whether each is kept; `clean`: per split, the files to keep; `estimates`: per pair of splits
    and hasher (and the agreement of hashers), pairs compared and flagged and the expected false
    flags; `misses` (with a calibration run): the share of edited copies the thresholds miss, per
    family; `files`: every file with its split, group, whether it is kept, and its conversions as it
    was read (`notes`: alpha dropped, the first frame of an animation, ...); `hashes`: per split and hasher, each file's
    hash in hexadecimal (bit hashes); `errors`: files that could not be hashed, and folders that could
    not be listed. `config`: the resolved config, and `clean`, each a copy of the audit's own each time
    it is read (so editing it, or the dict the audit was run with, changes no record).
    """

    config: dict = Snapshot()  # the resolved config: a copy each time it is read (see config.Snapshot)
    provenance: dict
    thresholds: dict[str, float]
    threshold_basis: dict[str, str]
    leaks: pd.DataFrame
    groups: pd.DataFrame
    clean: dict[str, list[str]] = Snapshot()  # a copy each time it is read: save writes the audit's own lists
    estimates: pd.DataFrame
    misses: pd.DataFrame
    files: pd.DataFrame
    hashes: dict[tuple[str, str], pd.DataFrame]
    errors: pd.DataFrame
    hashers: pd.DataFrame
    notes: list[str]
    pairs: pd.DataFrame  # one row per flagged pair, one distance column per hasher (the review page's input)
    paths: dict[tuple[str, str], str | None] = field(default_factory=dict, repr=False)  # (split, file) -> path
    calibration: str | None = None
    # Per (split, hasher): the key-value metadata of its hash table (hash_table_metadata)
    hash_metadata: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict, repr=False)
    # Per (split, file as the tables show it): the name as the system gives it, where the two differ
    # (bytes that are not UTF-8, shown as \xNN): the review page marks those bytes as escapes.
    raw_names: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)

    def save(self, out_dir: str | os.PathLike[str]) -> None:
        """Write the audit's outputs to `out_dir` (a directory path: str or pathlib.Path) as one
        consistent set (see README, "Leak audit")."""
        from harness import leaks_report, storage
        from harness.api import path_argument

        out_dir = path_argument("out_dir", out_dir)
        splits = self.config["splits"].items()
        ran_in = self.provenance.get("cwd")  # relative entries and paths are the audit's
        with storage.removed_if_unused(out_dir):  # Ctrl-C while saving leaves no folder it made
            storage.check_output_dir(out_dir, images=storage.anchored([e for _, entries in splits for e in entries],
                                                                      ran_in),
                                     reads={"calibration": storage.anchored([self.calibration], ran_in)[0]
                                            if self.calibration else None},
                                     names=[f"splits.{name}[{k}]" for name, entries in splits
                                            for k in range(len(entries))])
            storage.check_sources_outside(storage.anchored([path for path in self.paths.values() if path is not None],
                                                           ran_in), out_dir)
            with storage.sole_writer(out_dir):  # the saved config names this directory: running it again writes here
                leaks_report.write(dataclasses.replace(self, config={**self.config, "output": out_dir}), out_dir)

    @property
    def answer(self) -> str:
        from harness.leaks_report import answer

        return answer(self)

    def __repr__(self) -> str:
        return f"LeakAudit({self.answer})"


def find_leaks(config: str | os.PathLike[str] | dict | LeakConfig, *,
               hashers: str | list[str] | tuple[str, ...] | None = None, workers: int | None = 1,
               scheduler: str | None = None, cache: str | os.PathLike[str] | None = None,
               progress: bool | None = False, output: str | os.PathLike[str] | None = None) -> LeakAudit:
    """Run a leak audit and return its LeakAudit; writes nothing but the hash cache (if `cache` is
    a path). `audit.save(dir)` writes what `python -m harness leaks` writes.

    `config`: a YAML path (str or pathlib.Path), a dict shaped like a YAML audit config (paths may
    be pathlib.Path, lists tuples, numbers NumPy scalars), or a parsed LeakConfig.
    `hashers`: a hasher id or a list of them, the only ones of the config's that run, with their
    parameters (default None: all); the config's thresholds of the others are dropped.
    `workers`: worker processes for hashing (default 1, this process; None: one per core from 32
    images on). `scheduler`: the address of a Dask scheduler to hash and search on (default None,
    no cluster). `cache`: a hash cache file to reuse hashes across calls (default None, no cache).
    `progress`: True shows a progress bar, None one when the output is a terminal (default False).
    `output`: the directory the audit will be saved to (default None), checked before any work to
    hold none of its images. Raises harness.HarnessError (a config problem: harness.ConfigError)
    with the same one-line messages as the command line; a wrong-type argument is one naming it.
    """
    from harness import leaks_search, storage
    from harness.api import check_run_options, path_argument, strings_argument
    from harness.cluster import check_workers
    from harness.provenance import provenance, result_versions
    from harness.runner import files_read_record, prepare_hashers, unlisted_row

    if output is not None:
        output = path_argument("output", output)
    chosen = strings_argument("hashers", hashers)
    if isinstance(config, (str, os.PathLike)):
        from harness.safe_yaml import read_config

        raw, source = read_config(os.fspath(config)), os.fspath(config)
    elif isinstance(config, dict):
        raw, source = config, "<dict>"
    elif isinstance(config, LeakConfig):
        raw, source = config.raw, config.source
    else:
        raise HarnessError(f"config: expected a YAML path, a dict or a LeakConfig, got {type(config).__name__}")
    if chosen is not None and isinstance(raw, dict):
        raw = chosen_hashers(plain_data(raw, source), chosen, keeps_min_agree=True, source=source,
                             option="hashers", advice="choose more hashers")
    if not isinstance(config, LeakConfig) or chosen is not None:  # a parsed one is parsed again if hashers change
        config = leak_config(raw, source)
    if output is not None:  # as `leaks --out` and save check it: apart from the splits, new or an output
        storage.check_output_place(output, images=config.entries(), reads={"calibration": config.calibration},
                                   names=config.entry_names())
    workers = check_workers(workers)
    cache = check_run_options(cache=cache, scheduler=scheduler, progress=progress, workers=workers)
    started = provenance()
    versions = result_versions()
    hashers, infos = prepare_hashers(_as_run_config(config), skip_unavailable=False, versions=versions)
    notes: list[str] = []
    salt = digest("versions", versions)
    plan = Plan(hashers=tuple(config.hashers), chains=(), chain_keys=(), max_pixels=config.max_pixels or
                DEFAULT_MAX_PIXELS, max_side=config.max_side, salt=salt)
    calibration = leaks_search.Calibration(config.calibration, config, hashers) if config.calibration else None
    splits = []
    unlisted: dict[str, list[tuple[str, str]]] = {name: [] for name, _ in config.splits}
    # Every split listed before any hash: an entry that names nothing fails at once.
    listed = {name: _listed(config, name, entries, unlisted[name], notes) for name, entries in config.splits}
    storage.check_sources_outside([path for paths in listed.values() for found in paths.values() for path in found],
                                  output)
    forms: dict[str, tuple] = {}  # per hasher: (dtype, shape) of its first image's row, which the others' must have
    store = HashCache(cache)  # opened once every split is listed, and closed whatever happens next
    use = CacheUse()  # one for all the splits: a file in two splits is counted once, as `run` counts an image
    try:
        for name, entries in config.splits:
            errors = [unlisted_row(folder, reason) for folder, reason in unlisted[name]]
            splits.append(_hash_split(name, entries, listed[name], config, plan, infos, hashers, store, errors,
                                      forms, workers=workers, scheduler=scheduler, progress=progress, use=use))
    finally:
        store.close()
    notes += store.summary_notes()
    notes += list(dict.fromkeys(note for split in splits for note in split.notes))  # one table given to two splits: once
    notes += _same_file_notes(splits)
    for split in splits:
        if not split.files:
            raise HarnessError(f"split '{split.name}': no file could be hashed"
                               + (f"; first: {split.errors[0]['reason']}" if split.errors else ""))

    thresholds, basis, threshold_notes = leaks_search.choose_thresholds(config, splits, hashers, calibration,
                                                                        workers=workers or 1, scheduler=scheduler)
    notes += threshold_notes
    # The search runs in this process unless asked otherwise: faiss already uses every core.
    found = leaks_search.search_all(config, splits, hashers, thresholds, workers=workers or 1, scheduler=scheduler)
    flagged = leaks_search.flagged_pairs(config, splits, hashers, found, thresholds)
    tables = leaks_search.tables(config, splits, hashers, flagged, thresholds)
    estimates = leaks_search.estimates(config, splits, found, flagged, thresholds, calibration)
    misses = leaks_search.misses(config, thresholds, calibration)
    hasher_table = pd.DataFrame([{"hasher": i.id, "name": i.spec["name"], "distance": i.distance_kind,
                                  "distance_max": i.distance_max, "threshold": thresholds[i.id],
                                  "threshold_basis": basis[i.id], "cpu_exact": "yes" if i.cpu_exact else "no",
                                  "params": json.dumps({k: v for k, v in i.spec.items() if k != "name"})}
                                 for i in infos])
    return LeakAudit(config=config.reproducible(), provenance={**started, "engine": found.engine,
                                                           "files_read": files_read_record(plan),
                                                           "cache": use.record(store)},
                     thresholds=thresholds, threshold_basis=basis, leaks=tables["leaks"], groups=tables["groups"],
                     clean=tables["clean"], estimates=estimates, misses=misses, files=tables["files"],
                     hashes={(s.name, hid): pd.DataFrame({"file": s.files, "hash": _hex_column(s, hid)})
                             for s in splits for hid in hashers if isinstance(hashers[hid], BitHasher)},
                     errors=pd.DataFrame([row for s in splits for row in s.errors], columns=ERROR_COLUMNS),
                     hashers=hasher_table, notes=notes, pairs=tables["pairs"],
                     paths={(s.name, f): p for s in splits for f, p in zip(s.files, s.paths)},
                     calibration=config.calibration,
                     hash_metadata={(s.name, i.id): hash_table_metadata(i.id, i.spec, s.errors, s.cwd, s.names,
                                                                        s.file_notes)
                                    for s in splits for i in infos if isinstance(hashers[i.id], BitHasher)},
                     raw_names={(s.name, f): n for s in splits for f, n in zip(s.files, s.names) if f != n})


def _same_file_notes(splits: list[SplitHashes]) -> list[str]:
    """A note naming the files given more than once: to two splits (`--train data --test
    data/cat/x.jpg`), or under two names (a link to a file beside it). Such a file has the same
    hashes under each name, so it is flagged as a copy of itself and counted so (the same file in
    train and test is a leak too); the note says it is one file, not an edited copy."""
    # Each file's device and inode in two 8-byte numbers, not a name and a list per file: at 100,000
    # files those were 30 MiB at once, above what the audit held before and after.
    identities = array.array("Q")  # device, inode of each file found, in turn
    places = array.array("q")  # its place among the audit's files, split by split
    others: dict = {}  # a source that cannot be stat'ed (file_identity gives the source itself) -> its places
    place = -1
    for split in splits:
        for path in split.paths:
            place += 1
            if path is None:  # a hash table's row whose file is not found here: nothing to compare
                continue
            identity = file_identity(path)
            if isinstance(identity, tuple):
                identities.extend(identity)
                places.append(place)
            else:
                others.setdefault(identity, []).append(place)
    groups = [given for given in others.values() if len(given) > 1]
    if len(places):
        _, inverse, counts = np.unique(np.frombuffer(identities, np.uint64).reshape(-1, 2), axis=0,
                                       return_inverse=True, return_counts=True)
        inverse = inverse.reshape(-1)
        twice = counts[inverse] > 1
        if twice.any():
            ids, at = inverse[twice], np.frombuffer(places, np.int64)[twice]
            order = np.argsort(ids, kind="stable")  # each file's places in turn
            starts = np.flatnonzero(np.diff(ids[order], prepend=-1))
            groups += [part.tolist() for part in np.split(at[order], starts[1:])]
    if not groups:
        return []
    groups.sort()  # by each file's first place, as the files were given
    offsets = np.cumsum([0] + [len(split.files) for split in splits])

    def named(place: int) -> str:
        k = int(np.searchsorted(offsets, place, side="right")) - 1
        return f"{splits[k].files[place - offsets[k]]} ({splits[k].name})"

    one = len(groups) == 1
    examples = "; ".join(" is ".join(named(place) for place in group) for group in groups[:SAME_FILE_EXAMPLES])
    more = len(groups) - SAME_FILE_EXAMPLES
    return [f"{len(groups)} {'file is' if one else 'files are'} given more than once, to two splits or under two "
            f"names ({'it is' if one else 'each is'} one file, not an edited copy, and is counted among the copies all "
            f"the same): {examples}{f'; and {more} more' if more > 0 else ''}"]


def _as_run_config(config: LeakConfig):
    """The few fields prepare_hashers reads, from a leak config."""
    from types import SimpleNamespace

    return SimpleNamespace(hashers=config.hashers, source=config.source)


def _hex_column(split: SplitHashes, hasher_id: str) -> list[str]:
    rows, array = split.rows[hasher_id], split.arrays[hasher_id]
    return [array[r].tobytes().hex() if r >= 0 else "" for r in rows]


def _is_error_row(row) -> bool:
    return (isinstance(row, dict) and sorted(row) == sorted(ERROR_COLUMNS)
            and all(isinstance(value, str) for value in row.values()))


def _error_key(row: dict) -> tuple:
    return tuple(row[c] for c in ERROR_COLUMNS)


def _nameable(paths: list[str], errors: list) -> list[str]:
    """The files an audit can name unambiguously; the others are rows of `errors`. The clean lists
    hold a file per line, so a name with a line break cannot be one; and the tables show a name that
    is not UTF-8 with \\xNN escapes, so a file whose name shows as another's would be mistaken for it."""
    shown_as: dict[str, str] = {}
    kept = []
    for path in paths:
        shown_name = display_path(path)
        if "\n" in path or "\r" in path:
            reason = "its name holds a line break, which a clean list (a file per line) cannot hold; rename it"
        elif shown_as.setdefault(shown_name, path) != path:
            reason = ("another file's name shows the same, as \\xNN escapes show the bytes of a name that is not "
                      "UTF-8; rename one of them")
        else:
            kept.append(path)
            continue
        errors.append({"image": shown_name, "image_id": "", "stage": "read", "reason": reason})
    return kept


def count_split_files(config: LeakConfig) -> tuple[dict[str, str], list[str]]:
    """What `validate` says of each split without reading an image: its image files (an entry that
    names nothing fails, as in an audit) and its hash tables, which are read only by the audit."""
    counts, notes = {}, []
    for name, entries in config.splits:
        unlisted: list = []
        files = sum(len(found) for found in _listed(config, name, entries, unlisted, notes).values())
        tables = sum(map(is_hash_table, entries))
        counts[name] = f"{files} {'file' if files == 1 else 'files'}" + (
            f" and {tables} hash {'table' if tables == 1 else 'tables'}" if tables else "")
        notes += [f"cannot list the folder {display_path(folder)} ({reason}): the audit leaves its files out"
                  for folder, reason in unlisted]
    return counts, notes


def _listed(config: LeakConfig, name: str, entries, unlisted: list, notes: list) -> dict[int, list[str]]:
    """The image files of a split's entries that are not hash tables, by entry number: an entry
    that names nothing fails here, before any image of any split is hashed. Folders that cannot be
    listed go to `unlisted`; the files a folder's listing leaves out by name are counted in `notes`."""
    listed = {}
    for number, entry in enumerate(entries):
        if not is_hash_table(entry):
            try:
                listed[number] = expand_source(entry, unlisted, notes, entries)
            except ValueError as exc:
                raise config.entry_error(name, number, str(exc)) from None
    return listed


def _one_spelling(path: str) -> str:
    short = os.path.normpath(path)
    if short == path:  # the path itself, not normpath's equal copy (100,000 names: 8.5 MiB held to the end)
        return path
    return short if os.path.realpath(short) == os.path.realpath(path) else str(Path(path))


def _file_key(path: str, here: str) -> str:
    """One file of a split however it is spelled (./a/x.png, a/sub/../x.png, /data/a/x.png from /data),
    and whether an image entry or a hash table's row names it: its absolute path in normpath's
    spelling, where that names the file the system opens. Not for link/../x.png, which the system
    takes through the link and normpath would read as x.png beside it. (A second name of a file, a
    link to it, stays a name of its own: the audit notes it as one file given twice.)"""
    return _one_spelling(os.path.join(here, path))


def _hash_split(name: str, entries, listed: dict[int, list[str]], config: LeakConfig, plan: Plan, infos,
                hashers: dict, cache: HashCache, errors: list, forms: dict, *, workers: int, scheduler: str | None,
                progress, use: CacheUse | None = None) -> SplitHashes:
    """A split's files and their hashes, in the order of its entries (the audit's order: which file
    of a pair inside a split is kept follows it), each file once however often and however it is
    named: hash tables read as they are, images (`listed`, see _listed) hashed by the pass `run` uses
    (each file read once, decoded once, cached). `errors`: the split's rows of errors.csv so far (its
    folders that could not be listed); the files that give no hash, and those a hash table recorded,
    are added to them. `forms`: per hasher, the (dtype, shape) of the audit's first hashed image's row
    (_decoded), filled as they come."""
    from harness.runner import ImagePass

    split = SplitHashes(name, [], [], errors=errors)
    here = os.getcwd()
    bases = set()  # the directories the split's relative names are relative to
    seen: set[str] = set()  # _file_key of each file taken
    # In the entries' order: (files, paths, {hasher: rows}, names, notes) of a hash table, or an entry's image paths.
    segments: list = []
    for number, entry in enumerate(entries):
        if is_hash_table(entry):
            if len(hashers) != 1:
                raise config.entry_error(name, number, f"{display_path(entry)} is a hash table, which holds one "
                                         f"hasher's hashes; name that one hasher (--hashers), not {len(hashers)}")
            (hid, hasher), = hashers.items()
            table = read_hash_table(entry, hasher, hid)
            files, names = table.files, table.names or table.files
            notes = table.notes if table.notes is not None else [NOTES_NOT_RECORDED] * len(files)
            base = _names_base(table.cwd, here)
            found = [_table_path(name, base, here) for name in names]
            new = [k for k, (name, path) in enumerate(zip(names, found))
                   if (key := _file_key(path if path is not None else name, here)) not in seen and not seen.add(key)]
            paths = [found[k] for k in new]
            segments.append(([files[k] for k in new], paths, {hid: table.rows[new]}, [names[k] for k in new],
                             [notes[k] for k in new]))
            missing = sum(path is None for path in paths)
            if table.unusable_cwd is not None:
                split.notes.append(_unusable_cwd_note(entry, table.unusable_cwd, here))
            if not table.recorded:  # pandas' to_parquet of an audit's table drops it, without a word
                _check_named_hasher(entry, hid)
                split.notes.append(f"{display_path(entry)} holds no record of the audit that wrote it "
                                   f"({HASH_TABLE_KEY} metadata: an older audit's table, another tool's, or an "
                                   f"audit's rewritten without it): its hashes are taken as {hid}'s unchecked, and "
                                   "the files its audit could not hash, if any, are not known")
            if missing:
                split.notes.append(_unfound_note(entry, missing, len(paths), table.cwd, base, here,
                                                 unusable=table.unusable_cwd is not None))
            bases.update(_found_from([names[k] for k in new], paths, base, here, table.cwd))
            known = {_error_key(row) for row in errors}  # each once, if the table is given twice
            errors += [row for row in table.errors if _error_key(row) not in known]
            continue
        segments.append([_one_spelling(path) for path in listed[number]
                         if (key := _file_key(path, here)) not in seen and not seen.add(key)])
        bases.add(here)
    _files_before_their_links(segments)
    images = _nameable([path for segment in segments if isinstance(segment, list) for path in segment], errors)
    hashed: dict[str, int] = {}  # image path -> its place in each hasher's `packed` rows, for each image every hasher hashed
    packed = {hid: _PackedRows() for hid in hashers}
    read_notes: dict[str, str] = {}  # image path -> its conversions, for those that had some
    if images:
        hashing = ImagePass(images, plan, infos, hashers, cache, workers=workers, scheduler=scheduler,
                            progress=progress, desc=name, use=use)
        for path, outcome, cached in hashing:
            if outcome.record is None:
                errors.append({"image": display_path(path), "image_id": "", "stage": "read", "reason": outcome.error})
                continue
            rows = {}
            for hid, hasher in hashers.items():
                entry = {**cached.get(hid, {}), **outcome.entries.get(hid, {})}.get(SOURCE)
                decoded = _decoded(hasher, entry, forms.get(hid))
                if decoded is None or decoded.rows[0] < 0:
                    reason = decoded.errors.get(0, "no hash") if decoded is not None else "no hash"
                    errors.append({"image": display_path(path), "image_id": outcome.record.image,
                                   "stage": f"hash {hid}", "reason": reason})
                    break
                rows[hid] = decoded.array[0]
                forms.setdefault(hid, (np.asarray(rows[hid]).dtype, np.shape(rows[hid])))
            else:  # every hasher hashed it: a file of the split
                hashed[path] = len(hashed)
                for hid, row in rows.items():
                    packed[hid].append(row)
                if outcome.record.notes:
                    read_notes[path] = "; ".join(outcome.record.notes)
        split.notes += hashing.notes
    parts: dict[str, list[np.ndarray]] = {hid: [] for hid in hashers}
    for segment in segments:
        if isinstance(segment, tuple):  # a hash table's rows
            files, paths, rows, names, notes = segment
            split.files += files
            split.paths += paths
            split.names += names
            split.file_notes += notes
            for hid, table_rows in rows.items():
                parts[hid].append(table_rows)
            continue
        done = [path for path in segment if path in hashed]
        split.files += [display_path(path) for path in done]
        split.paths += done
        split.names += done
        split.file_notes += [read_notes.get(path, "") for path in done]
        for hid in hashers:
            if done:
                parts[hid].append(packed[hid].rows([hashed[path] for path in done], forms[hid]))
    for hid in hashers:
        split.arrays[hid] = np.concatenate(parts[hid]) if parts[hid] else np.zeros((0, 1), np.uint8)
        split.rows[hid] = np.arange(len(split.files))
    split.cwd = bases.pop() if len(bases) == 1 else None  # None among them: one table's base is unknown
    return split


class _PackedRows:
    """One hasher's rows of a split's hashed images, in the order they were hashed, kept small until
    the pass ends: a row of a fixed-size dtype (a bit hash's bytes) as its bytes, where an array of
    one row (a view keeping its batch's array) in a dict per image took some 350 bytes an image more:
    over 30 MiB of a 100,000-file audit, freed only at the pass's end, among the names the audit keeps,
    so the process kept it. Rows of objects (a hasher whose rows are not arrays of numbers) are kept
    as they are."""

    def __init__(self) -> None:
        self.items: list = []
        self.as_bytes = True

    def append(self, row) -> None:
        if not self.items:  # the first row decides: every other is of its form (_decoded)
            self.as_bytes = isinstance(row, np.ndarray) and row.dtype.kind in "biufc"
        self.items.append(row.tobytes() if self.as_bytes else row)

    def rows(self, places: list[int], form: tuple) -> np.ndarray:
        """The rows at `places`, stacked (as np.stack stacks the arrays); `form`: their (dtype, shape)."""
        if not self.as_bytes:
            return np.stack([self.items[k] for k in places])
        dtype, shape = form
        return np.frombuffer(b"".join(self.items[k] for k in places), dtype=dtype).reshape((len(places), *shape))


def _files_before_their_links(segments: list) -> None:
    """Of a file and links to it listed in one split (in its image entries, `segments`' lists), the
    file takes the first place and the links the later ones, in place. All stay names of the split
    (one file given twice: _same_file_notes), but the first is the one its clean list keeps, and a
    link listed first (odd/ sorts before photos/) had kept the link and dropped the file, which
    `run` keeps (images._one_path_each). Their hashes are the same: nothing else changes."""
    places = [(k, n) for k, segment in enumerate(segments) if isinstance(segment, list) for n in range(len(segment))]
    if not any(os.path.islink(segments[k][n]) for k, n in places):
        return
    by_file: dict = {}
    for k, n in places:
        by_file.setdefault(file_identity(segments[k][n]), []).append((k, n))
    for shared in by_file.values():
        if len(shared) > 1:
            paths = sorted((segments[k][n] for k, n in shared), key=os.path.islink)  # stable: else as listed
            for (k, n), path in zip(shared, paths):
                segments[k][n] = path


def _decoded(hasher, entry: Entry | None, form: tuple | None) -> Hashed | None:
    """One image's hash from its entry (None: none), as a Hashed; a row that does not decode, or is
    not of the `form` (dtype, shape) of the audit's other rows, is the image's failure, never a crash
    where the rows are stacked and compared. (The cache's lookup recomputes entries of another form
    than the hasher declares, Hasher.row_form; this is for the forms it does not.)"""
    if entry is None:
        return None
    try:
        hashed = from_entries(hasher, [entry])
        row = None if hashed.array is None else np.asarray(hashed.array[0])
        if row is not None and form is not None and (row.dtype, row.shape) != form:
            raise ValueError(f"{row.dtype} {row.shape}, where the first file's is {form[0]} {form[1]}")
        return hashed
    except ValueError as exc:
        return from_entries(hasher, [Entry(None, f"stored hash does not fit the others ({exc})")])


def _names_base(recorded_cwd: str | None, here: str) -> str:
    """The directory a hash table's relative names are relative to: the one the audit that wrote it
    ran from, where it recorded it; else (another tool's table, an older audit's) this one, as ever."""
    if recorded_cwd is None:
        return here
    try:
        return here if os.path.samefile(recorded_cwd, here) else recorded_cwd
    except OSError:  # gone, or not reachable from this machine
        return recorded_cwd


def _found_from(names: list[str], paths: list[str | None], base: str, here: str,
                recorded: str | None) -> set[str | None]:
    """The directory a hash table's relative names were found relative to (`paths`: _table_path's),
    for the table this audit writes: here where they were found as written, `base` where they were
    found there (a table moved with its files must not pass on the directory it came from, where
    the next audit would look in vain); {None} (no directory known) where they were found in both.
    Where none was found (an audit of tables away from the images), the table's own record (or
    none) is passed on. Absolute names fit any directory, and a file not found tells nothing."""
    if names and all(path is None for path in paths):
        return {recorded}  # nothing learnt here: the table's own record, if any, still holds
    found_in = {here if path == name else base for name, path in zip(names, paths)
                if path is not None and not os.path.isabs(name)}
    return found_in if len(found_in) <= 1 else {None}


def _table_path(name: str, base: str, here: str) -> str | None:
    """What to read for a hash table's file `name` (its thumbnail; its line in a clean list): relative
    to `base`, where its audit ran, else as written from here (a data set moved with its tables);
    None where neither is a file."""
    if base != here and not os.path.isabs(name):
        there = os.path.join(base, name)
        if os.path.isfile(there):
            return there
    return name if os.path.isfile(name) else None


def _unusable_cwd_note(entry: str, cwd: str, here: str) -> str:
    return (f"{display_path(entry)} records its names as relative to {shown(cwd)}, which is not an absolute path on "
            f"this machine (a table written on another system?), so that directory could not be used: its names are "
            f"read from here ({display_path(here)})")


def _unfound_note(entry: str, missing: int, total: int, recorded_cwd: str | None, base: str, here: str, *,
                  unusable: bool = False) -> str:
    """Why a hash table's files show no preview in review.html, and name nothing in the clean lists
    (`unusable`: the table recorded a directory that is none of this machine's)."""
    counted = f"{missing} of {total} files named by {display_path(entry)} {'is' if missing == 1 else 'are'} not found"
    consequence = "review.html shows no preview of them, and the clean lists name them as the table does"
    if recorded_cwd is None:
        why = ("the directory the table records is not one of this machine's" if unusable else
               "the table records no directory its names are relative to (another tool's table, or an older audit's)")
        return (f"{counted} from here ({display_path(here)}): {why}, so they are read from here; run this audit "
                f"from the directory they are relative to (where the audit that wrote it ran). "
                f"Until then {consequence}")
    where = (f"here ({display_path(here)}), where its audit ran" if base == here else
             f"{display_path(base)}, where its audit ran, nor from here ({display_path(here)})")
    return (f"{counted} from {where}: moved or deleted since the table was written, or not on this machine; "
            f"{consequence}")
