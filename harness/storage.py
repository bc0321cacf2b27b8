"""A run's output directory: its file names, writing it as one consistent set, reading it back.

Writing. An output set is built in a staging directory beside DIR
(`.DIR.staging-PID`) and swapped in as a whole: on Linux one atomic
renameat2(RENAME_EXCHANGE), elsewhere two renames. A run killed at any moment
leaves the old set or the new one, never a mix, and no stale figure of an earlier
run survives. Nothing is written through a link inside DIR: the new set is a fresh
tree. Only a directory that is empty, new, or already a harness output is replaced,
so `--out` pointed at a folder of photographs is refused instead of emptied.

Reading. The long tables (distances, impostors) are written as CSV and as Parquet,
and above CSV_MAX_ROWS rows as Parquet only; readers take either. A CSV table is read only whole
(ending with a line break, each row with its header's fields), and the long tables must name only
the hashers and images the small tables list (check_listed). Distances are kept
to 6 significant digits everywhere (in memory too, see `normalise`), so a report
rebuilt from disk equals the first one byte for byte.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import tempfile

from typing import TYPE_CHECKING

import numpy as np

from harness.errors import PATH_MAX, HarnessError, clipped, exception_text, shown
from harness.provenance import file_sha256
from harness.schema import (DISTANCE_COLUMNS, ERROR_COLUMNS, NAMED_IMPOSTOR_COLUMNS, ROWS_BLOCK, category_codes,
                            first_seen_categorical, in_first_seen_order, text_categories, text_dtype)

if TYPE_CHECKING:  # pandas is imported where a table is read or written: an unchanged rerun writes none
    import pandas as pd

DISTANCES = "distances"
IMPOSTORS = "impostors"
IMAGES = "images.csv"
ERRORS = "errors.csv"
HASHERS = "hashers.csv"
RUN = "run.json"
CONFIG = "config.yaml"
PREVIEWS = "previews.png"
CACHE = "hash-cache.sqlite"
CACHE_FILES = [CACHE, CACHE + "-wal", CACHE + "-shm"]  # what a new output set carries over from the old
TABLE = "table.csv"
THRESHOLDS = "thresholds.csv"
DETECTION = "detection.csv"
ROC = "roc.csv"
RETRIEVAL = "retrieval.csv"
SUMMARY = "summary.md"
FIGURES = "figures"

LONG_TABLES = {DISTANCES: DISTANCE_COLUMNS, IMPOSTORS: NAMED_IMPOSTOR_COLUMNS}
OPTIONAL_COLUMNS = {"image", "other"}  # impostors' names: outputs of older versions lack them
CSV_MAX_ROWS = 1_000_000  # above this a long table is written as Parquet only
FLOAT_FORMAT = "%.6g"



def _umask() -> int:
    """The process's umask now (a session may change it after importing harness). Linux shows it in
    /proc, read without changing it; elsewhere it is set and put back, which a thread creating a
    file at that instant would see."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


# --- the output directory ----------------------------------------------------------

def _where(out_dir: str) -> str:
    """An output directory as a message names it: at most PATH_MAX characters, cut in the middle."""
    return clipped(out_dir, PATH_MAX)


@contextlib.contextmanager
def removed_if_unused(out_dir: str, cache: str | None = None):
    """A command that fails (bad input, Ctrl-C, a full disk) leaves no output directory it created
    behind, nor the empty parents it created for it, unless something was kept there: nothing, or
    only a hash cache that holds nothing, is removed. So is a hash cache elsewhere (--cache) that
    the command created and that holds nothing."""
    missing = []  # out_dir and each of its parents that the command may create, innermost first
    folder = os.path.abspath(out_dir)
    while not os.path.lexists(folder) and folder != os.path.dirname(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    new_cache = cache is not None and not os.path.lexists(cache)
    try:
        yield
    except BaseException:
        if new_cache:
            _remove_unused_cache(cache)
        if missing:
            _remove_unused(out_dir)
            for parent in missing[1:]:  # the parents it made for out_dir, while empty
                try:
                    os.rmdir(parent)
                except OSError:
                    break
        raise


def _remove_unused(out_dir: str) -> None:
    from harness import cache

    try:
        names = set(os.listdir(out_dir))
        kept = os.path.join(out_dir, CACHE)
        if names - set(CACHE_FILES) or (CACHE in names and (not cache.holds_nothing(kept) or cache.in_use(kept))):
            return
        for name in names:
            os.remove(os.path.join(out_dir, name))
        os.rmdir(out_dir)
    except OSError:  # it stays: the error that ended the command is what the user needs to read
        pass


def _remove_unused_cache(path: str) -> None:
    """A hash cache file (with SQLite's side files) removed where it holds nothing."""
    from harness import cache

    try:
        if os.path.isfile(path) and cache.holds_nothing(path) and not cache.in_use(path):  # another run's
            for name in (path, path + "-wal", path + "-shm", path + "-journal"):
                if os.path.lexists(name):
                    os.remove(name)
    except OSError:
        pass


def check_output_dir(out_dir: str, images=(), reads: dict | None = None, names=None) -> None:
    """Fail before any work unless `out_dir` can take a run's outputs: in a place that can take
    them (check_output_place), and writable, which is tried by creating it and a file in it."""
    check_output_place(out_dir, images, reads, names)
    _check_writable(os.path.normpath(out_dir))


def check_output_place(out_dir: str, images=(), reads: dict | None = None, names=None) -> None:
    """What check_output_dir checks without writing anything (`validate` writes nothing): `out_dir`
    is new, empty, or a harness output directory, and apart from the run's images (`images`, the
    config's entries): outputs written inside an image folder would be read as images by
    the next run, and images inside `out_dir` would go when the outputs replace it. The
    same holds for the other folders the command reads (`reads`: key -> path, an audit's
    calibration run). `names`: what the messages call each entry of `images`, where the user
    wrote it (--images, --train, splits.test[0]); by default the config's images[i]."""
    out_dir = os.path.normpath(out_dir)  # "link/" is the link itself
    _check_apart_from_here(out_dir)
    for key, path in (reads or {}).items():
        if path is not None and _within(os.path.realpath(path), os.path.realpath(out_dir)):
            raise HarnessError(f"{_where(out_dir)}: holds what the command reads ({key}: {_where(path)}), and the "
                               "outputs replace the whole directory; write them elsewhere")
    for i, entry in enumerate(images):
        name = names[i] if names is not None else f"images[{i}]"
        folder = image_folder_holding(entry, out_dir)
        if folder is not None:
            raise HarnessError(f"{_where(out_dir)}: the output directory is inside the image folder {_where(folder)} "
                               f"({name}), so the next run would read its figures as images; "
                               "write the outputs elsewhere")
        if image_source_inside(entry, out_dir):
            raise HarnessError(f"{_where(out_dir)}: holds images the run reads ({_where(entry)}, {name}), and "
                               "a run replaces the whole output directory; write the outputs elsewhere")
    if os.path.islink(out_dir):
        raise HarnessError(f"{_where(out_dir)}: the output directory is a symbolic link; give its target instead")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise HarnessError(f"{_where(out_dir)}: exists and is not a directory")
    if os.path.isdir(out_dir):
        foreign = foreign_files(out_dir)
        if foreign:
            what = "a harness output directory with files it did not write" if os.path.lexists(
                os.path.join(out_dir, RUN)) else "not empty and not a harness output directory"
            raise HarnessError(f"{_where(out_dir)}: {what} (it holds {_shown_list(foreign)}); outputs replace the "
                               "whole directory, so choose a new or empty one")


def _check_writable(out_dir: str) -> None:
    """`out_dir` can be made and written in, and a staging folder made beside it (it is made here)."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=out_dir, prefix=PROBE)
        os.close(handle)
        os.remove(probe)
    except OSError as exc:
        raise HarnessError(f"{_where(out_dir)}: output directory is not writable ({exc.strerror})") from None
    # The outputs are staged beside out_dir under a longer name (OutputSet): a name too long for
    # the file system, or a folder above that cannot be written in, must fail now, not after the work.
    parent = os.path.dirname(os.path.abspath(out_dir))
    try:
        os.rmdir(tempfile.mkdtemp(dir=parent, prefix=_staging_prefix(out_dir)))
    except OSError as exc:
        where = "the name is too long for it" if exc.errno == errno.ENAMETOOLONG else exc.strerror
        raise HarnessError(f"{_where(out_dir)}: the new outputs are built beside it, in {_where(parent)}, and "
                           f"cannot be ({where})") from None


def _check_apart_from_here(out_dir: str) -> None:
    """The outputs replace the whole output directory (renamed away, the new set renamed in): done to
    the current directory or a folder above it, that fails at the end (`.`: the rename is refused,
    after all the work, and every rerun the same) or moves the folder a shell stands in away."""
    try:
        here = os.path.realpath(os.getcwd())
    except OSError:  # the current directory was removed: no output can be it
        return
    if _within(here, os.path.realpath(out_dir)):
        what = "the current directory" if os.path.realpath(out_dir) == here else "a folder above the current directory"
        raise HarnessError(f"{_where(out_dir)}: the output directory is {what}, which the outputs would replace "
                           "whole; give a new folder for them, e.g. reports/mine")


def check_cache_path(cache: str | None, out_dir: str) -> None:
    """A hash cache inside `out_dir` must be its own DIR/hash-cache.sqlite, the one file of the old
    set the new one carries over: under another name it would go with the old set, and the next
    run would find it there and refuse the directory."""
    if cache is not None:
        check_cache_folder(cache)
    if cache is None or not _within(os.path.realpath(cache), os.path.realpath(out_dir)):
        return
    if os.path.realpath(cache) != os.path.realpath(os.path.join(out_dir, CACHE)):
        raise HarnessError(f"--cache {_where(cache)}: inside the output directory, which each run replaces; "
                           f"leave --cache out (the cache is then {CACHE} there) or keep it outside")


def check_cache_folder(cache: str, option: str = "--cache") -> None:
    """A cache's folder must exist: a mistyped --cache (or the API's cache=) would otherwise create
    folders where the user never meant any (SQLite makes only the file). The default cache's folder
    is the output directory, which check_output_dir has made by the time this is called."""
    folder = os.path.dirname(os.path.abspath(cache))
    named = f"--cache {_where(cache)}" if option == "--cache" else f"{option}={_where(cache)!r}"
    if os.path.isdir(cache):  # the run went on without a cache, which a notebook did not show
        raise HarnessError(f"{named}: is a directory; name the cache file itself, e.g. "
                           f"{_where(os.path.join(cache, CACHE))}")
    if os.path.isdir(folder):
        return
    if os.path.lexists(folder):  # the cache would not open, and the run would fail on its folder
        raise HarnessError(f"{named}: cannot be made, as {_where(folder)} is not a directory")
    leave_out = "leave --cache out (the cache is then in the output directory)" if option == "--cache" else \
        "give cache=None (no cache)"
    raise HarnessError(f"{named}: the folder {_where(folder)} does not exist; make it first, or {leave_out}")


PROBE = ".probe-"


@contextlib.contextmanager
def sole_writer(out_dir: str):
    """While the block runs, this process is the only harness command writing to `out_dir`: two
    runs into one folder computed everything twice, and the later one's set replaced the other's
    without a word. The lock is an exclusive flock on `.NAME.lock` beside `out_dir` (its parent
    exists: check_output_dir made `out_dir`), holding the holder's process number for the message;
    the file is removed at the end (one a killed command left is taken over: the kernel dropped
    its lock). Nested blocks of one process for one folder share the lock (a command that saves)."""
    import fcntl
    import stat

    out_dir = os.path.normpath(out_dir)
    key = os.path.realpath(out_dir)
    if key in _WRITING:
        yield
        return
    parent = os.path.dirname(os.path.abspath(out_dir))
    path = os.path.join(parent, f".{os.path.basename(os.path.abspath(out_dir))}.lock")
    held = None
    try:
        for _ in range(3):  # the file may be removed by its holder between our open and our lock
            held = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
            if not stat.S_ISREG(os.fstat(held).st_mode):
                raise OSError(errno.EINVAL, "not a regular file")
            try:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(held, 32).decode("ascii", "replace").strip()
                raise HarnessError(f"{_where(out_dir)}: another harness command"
                                   f"{f' (process {holder})' if holder.isdigit() else ''} is writing its outputs "
                                   "there; wait for it to end, or give another output directory") from None
            try:
                now = os.stat(path, follow_symlinks=False)
            except FileNotFoundError:
                now = None
            mine = os.fstat(held)
            if now is not None and (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
                break
            os.close(held)
            held = None
        else:
            raise OSError(errno.EAGAIN, "its lock file kept changing")
        with contextlib.suppress(OSError):  # for the message alone: a full disk must not stop the run here
            os.ftruncate(held, 0)
            os.write(held, f"{os.getpid()}\n".encode())
    except OSError as exc:
        if held is not None:
            os.close(held)
        raise HarnessError(f"{_where(path)}: cannot lock the output directory {_where(out_dir)} for this command "
                           f"({exc.strerror or exc}); remove that file if it is not a harness command's") from None
    _WRITING.add(key)
    try:
        yield
    finally:
        _WRITING.discard(key)
        with contextlib.suppress(OSError):
            os.remove(path)  # before the lock goes: whoever opens the path next makes a new file
        os.close(held)


# The output directories (resolved) this process holds sole_writer's lock on.
_WRITING: set[str] = set()


def _staging_prefix(out_dir: str) -> str:
    return f".{os.path.basename(os.path.abspath(out_dir))}.staging-{os.getpid()}-"


def image_source_inside(entry: str, out_dir: str) -> bool:
    """Whether an `images:` entry names files inside `out_dir` (a file, a folder or a glob pattern's
    fixed part there). Paths are compared resolved."""
    from harness.images import glob_root  # here: storage alone does not load the image libraries

    if not isinstance(entry, str) or entry.startswith("builtin:"):
        return False
    root = entry if os.path.isdir(entry) else glob_root(entry)[0]  # a folder is listed whole, `[` in its name or not
    return _within(os.path.realpath(root), os.path.realpath(out_dir))


def image_folder_holding(entry: str, out_dir: str) -> str | None:
    """The folder of an `images:` entry that would collect files written in `out_dir`, or None.

    A directory entry is searched recursively, so it holds everything below it. A glob
    pattern (`photos/**/*.png`) can reach into `out_dir` when its fixed part (`photos`)
    contains it and its remaining parts can match the path down to `out_dir` (or hold a
    `**`). A file or `builtin:` entry collects nothing. Paths are compared resolved.
    """
    import glob

    from harness.images import _matches, glob_root  # here: storage alone does not load the image libraries

    if not isinstance(entry, str) or entry.startswith("builtin:"):
        return None
    out = os.path.realpath(out_dir)
    if os.path.isdir(entry) or not glob.has_magic(entry):  # as the listing: a folder (photos[1]) is no pattern
        folder = os.path.realpath(entry)
        return entry if os.path.isdir(entry) and _within(out, folder) else None
    # The folder the listing walks, resolved as the listing's opening of it resolves it.
    root, rest = glob_root(entry)
    folder = os.path.realpath(root)
    if not _within(out, folder):
        return None
    below = () if out == folder else tuple(os.path.relpath(out, folder).split(os.sep))
    # A file in out_dir is `below` and a name or more: the pattern reaches one when its first
    # parts match `below` and some are left for the names inside, or when a `**` it reaches on
    # the way down (after matching any leading folders of `below`) goes on into out_dir.
    for i in range(len(rest)):
        if _matches(rest[:i], below):
            return root
        if rest[i] == "**" and any(_matches(rest[:i], below[:j]) for j in range(len(below) + 1)):
            return root
    return None  # the pattern ends at or above out_dir: it can match out_dir, not a file in it


def foreign_files(out_dir: str) -> list[str]:
    """What in an existing `out_dir` is not a harness set's, which replacing the directory would
    delete: with no run.json, anything but a hash cache (what a first run leaves when it is
    stopped); with one, any file its list (`files`) does not name, in a subfolder too
    (figures/notes.txt); with one of an older version, without a list, any hidden entry (.git).
    A run.json that cannot be read is refused (HarnessError): the set's files are then unknown."""
    entries = set(os.listdir(out_dir))
    if RUN not in entries:
        leftovers = _stale_salvage(out_dir)
        return sorted(e for e in entries if e not in _CACHE_NAMES and e not in leftovers and not e.startswith(PROBE))
    written = _written(out_dir)
    if written is None:
        return sorted(e for e in entries if e.startswith(".") and not e.startswith(PROBE))
    # A file where the set has a folder (`figures` damaged into a file) is the set's own to replace.
    folders_of_set = {name.rsplit("/", 1)[0] for name in written if "/" in name}
    return sorted(path for path, _ in _files_of_set(out_dir) if path not in written and path not in folders_of_set)


# The hash cache's files, which a set carries over (or a first run leaves), never its own.
_CACHE_NAMES = {*CACHE_FILES, CACHE + "-journal"}


def _stale_salvage(out_dir: str) -> set[str]:
    """What a repair of the hash cache killed midway left beside it (hash-cache.sqlite.salvage-PID, its
    process gone): harness's own, removed as the cache is opened or with the old set, never a reason
    to refuse the directory. A live repair's file (another run's, using this cache) is not listed."""
    from harness import cache

    return set(cache.stale_salvage_files(os.path.join(out_dir, CACHE)))


def _files_of_set(out_dir: str):
    """Each file below `out_dir` as (its "/"-separated path there, its full path), but links (replacing
    one deletes nothing it points to; os.walk follows none) and, at the top, the hash cache's files
    and write probes, and what a killed repair of the cache left (_stale_salvage): what foreign_files
    and changed_files look through."""
    leftovers = _stale_salvage(out_dir)
    for folder, _, names in os.walk(out_dir):
        relative = os.path.relpath(folder, out_dir).replace(os.sep, "/")
        for name in names:
            full = os.path.join(folder, name)
            if os.path.islink(full) or relative == "." and (name in _CACHE_NAMES or name in leftovers
                                                             or name.startswith(PROBE)):
                continue
            yield (name if relative == "." else f"{relative}/{name}"), full


def as_recorded(path: str, size, digest) -> bool:
    """Whether the file at `path` is a regular file of `size` bytes whose SHA-256 is `digest` (as a
    run.json recorded them). The size is compared first (a changed one costs no read), and a
    digest is read once per file as it stands (report.reusable asks which files a rerun can keep,
    then changed_files, as the set is replaced), never of what is not a regular file (a FIFO would
    block the read)."""
    import stat

    try:
        status = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISREG(status.st_mode) or status.st_size != size or not isinstance(digest, str):
        return False
    # Not its ctime: the new set's hard link to a kept file changes that, not the file's bytes.
    key = (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)
    if key not in _DIGESTS_READ:
        try:
            _DIGESTS_READ[key] = file_sha256(path)
        except OSError:
            return False
    return _DIGESTS_READ[key] == digest


# The digests as_recorded read this process, by file (device, inode), its size and its mtime.
_DIGESTS_READ: dict[tuple, str] = {}


def _shown_list(names: list[str]) -> str:
    return _where(", ".join(names[:3]) + (", ..." if len(names) > 3 else ""))


def _written(out_dir: str) -> set[str] | None:
    """The files of `out_dir` that its run.json lists as the set's (`files`), or None where it
    lists none (an older version's). A run.json that cannot be read, or whose list is not one, is
    a HarnessError: with the set's files unknown, anything there may be the user's, and replacing
    the directory would delete it."""
    path = os.path.join(out_dir, RUN)
    try:
        if not _regular(path):
            raise HarnessError(f"{path}: not a regular file")
        record = read_json(out_dir, RUN)
    except HarnessError as error:
        raise _unknown_set(out_dir, str(error)) from None
    files = record.get("files")
    if files is None:
        return None
    if not isinstance(files, list) or not all(isinstance(f, str) and f for f in files):
        raise _unknown_set(out_dir, f"{path}: files: expected a list of file names")
    return set(files) | {RUN}


def _unknown_set(out_dir: str, problem: str) -> HarnessError:
    return HarnessError(f"{problem}; it lists the files of the output set, which replaces the whole directory, so "
                        f"nothing in {_where(out_dir)} can be told from your own files: move what you want to keep "
                        "out of it and remove it, or choose a new output directory")


def anchored(paths, cwd: str | None) -> list[str]:
    """Paths as the run that listed them read them: a relative one joined to the folder it ran in
    (`cwd`, its provenance's). A save may come after os.chdir: its checks read 'imgs/' from there."""
    return [path if cwd is None or path.startswith("builtin:") or os.path.isabs(path) else os.path.join(cwd, path)
            for path in paths]


def check_sources_outside(paths, out_dir: str | None) -> None:
    """Fail unless every image file of the run (`paths`, as listed) lies outside `out_dir`, links
    resolved: a link in an image folder to a file in `out_dir` is read, then deleted with the old
    outputs when the new ones replace them. (check_output_dir compares the config's entries; a
    listing follows no link to a folder, so only a file that is a link itself, or a glob's folder,
    can lead elsewhere: each folder is resolved once, and a file only when it is a link.)"""
    if out_dir is None or not os.path.isdir(out_dir):
        return
    target = os.path.realpath(out_dir)
    folders: dict[str, str] = {}
    for path in paths:
        if path.startswith("builtin:"):
            continue
        folder, name = os.path.split(path)
        if folder not in folders:
            folders[folder] = os.path.realpath(folder or os.curdir)
        resolved = os.path.realpath(path) if os.path.islink(path) else os.path.join(folders[folder], name)
        if _within(resolved, target):
            raise HarnessError(f"{_where(out_dir)}: holds an image the run reads ({_where(path)} leads to "
                               f"{_where(resolved)}), and the outputs replace the whole directory; write them "
                               "elsewhere")


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_report_dir(out_dir: str) -> None:
    """`report DIR`: DIR must be a directory itself, not a link to one (the report is written there)."""
    out_dir = os.path.normpath(out_dir)  # "link/" is the link itself
    if os.path.islink(out_dir):
        raise HarnessError(f"{_where(out_dir)}: is a symbolic link; give the output directory itself")
    if not os.path.exists(out_dir):
        raise HarnessError(f"{_where(out_dir)}: no such directory")
    if not os.path.isdir(out_dir):
        raise HarnessError(f"{_where(out_dir)}: not a directory; give the output directory of a run")
    foreign = foreign_files(out_dir) if os.path.lexists(os.path.join(out_dir, RUN)) else []
    if foreign:  # the rebuilt set replaces the directory, as a run's does
        raise HarnessError(f"{_where(out_dir)}: holds files its run did not write ({_shown_list(foreign)}), which "
                           "the rebuilt set would replace; move them out first")


class OutputSet:
    """A new output set for `out_dir`, staged beside it; `commit()` swaps it in whole.

        with OutputSet(out_dir) as output:
            output.write_csv(TABLE, frame)
            output.carry(CACHE)     # keep a file of the old set
            output.commit()
    Leaving the block without commit() removes the staging directory.
    """

    def __init__(self, out_dir: str):
        self.out_dir = os.path.normpath(out_dir)
        parent = os.path.dirname(os.path.abspath(self.out_dir))
        base = os.path.basename(os.path.abspath(self.out_dir))
        _remove_stale_staging(parent, base)
        try:
            os.makedirs(parent, exist_ok=True)
            self.staging = tempfile.mkdtemp(dir=parent, prefix=_staging_prefix(self.out_dir))
            os.chmod(self.staging, 0o777 & ~_umask())  # as a plain mkdir would
        except OSError as exc:
            raise HarnessError(f"{_where(self.out_dir)}: cannot create the new output set beside it "
                               f"({exc.strerror})") from None
        self.committed = False

    def __enter__(self) -> "OutputSet":
        return self

    def __exit__(self, *exc) -> None:
        if not self.committed:
            shutil.rmtree(self.staging, ignore_errors=True)

    def files(self) -> list[str]:
        """The files of the new set so far, relative to it, '/'-separated, sorted (cache files left out)."""
        found = []
        for folder, _, names in os.walk(self.staging):
            for name in names:
                relative = os.path.relpath(os.path.join(folder, name), self.staging).replace(os.sep, "/")
                if not relative.startswith(CACHE):
                    found.append(relative)
        return sorted(found)

    def listing(self) -> dict:
        """run.json's record of the set: its `files` (the files so far, and run.json, written last),
        their `sizes` and `digests` (SHA-256). A later run replaces only those (foreign_files), and
        keeps a file of them only as it was written (report.reusable): a table edited in place at
        the same size is made anew."""
        files = self.files()
        sizes = {name: os.path.getsize(os.path.join(self.staging, name)) for name in files}
        digests = {name: file_sha256(os.path.join(self.staging, name)) for name in files}
        return {"files": [*sizes, RUN], "sizes": sizes, "digests": digests}

    def path(self, name: str) -> str:
        path = os.path.join(self.staging, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    def _write(self, name: str, write) -> None:
        try:
            write(self.path(name))
        except OSError as exc:
            raise _write_error(self.out_dir, exc) from None

    def write_text(self, name: str, text: str) -> None:
        def write(path):
            with open(path, "w", encoding="utf-8", newline="\n") as handle:
                handle.write(text)
        self._write(name, write)

    def write_bytes(self, name: str, data: bytes) -> None:
        def write(path):
            with open(path, "wb") as handle:
                handle.write(data)
        self._write(name, write)

    def write_csv(self, name: str, frame: pd.DataFrame) -> None:
        self._write(name, lambda path: _to_csv(frame, path))

    def write_parquet(self, name: str, frame: pd.DataFrame, metadata: dict[str, str] | None = None) -> None:
        """`metadata`: key-value pairs stored in the file beside pandas' own (what the rows cannot hold)."""
        self._write(name, lambda path: _to_parquet(frame, path, metadata))

    def write_long(self, name: str, frame: pd.DataFrame) -> None:
        """A long table (in normalise's form): Parquet always, CSV too while it stays small enough to open."""
        self._write(f"{name}.parquet", lambda path: _long_to_parquet(frame, path, PARQUET_GROUP_ROWS[name]))
        if len(frame) <= CSV_MAX_ROWS:
            self.write_csv(f"{name}.csv", frame)

    def save_figure(self, name: str, figure) -> None:
        """A figure of harness/figures.py as PNG, drawn once at its own size and resolution."""
        from harness.figures import save_png

        self._write(name, lambda path: save_png(figure, path))

    def carry(self, name: str, from_dir: str | None = None) -> bool:
        """Keep `name` of the current set (or of the set in `from_dir`) in the new one (a hard link,
        or a copy); False if absent. Only regular files are carried, never links."""
        source = os.path.join(self.out_dir if from_dir is None else from_dir, name)
        if not os.path.isfile(source) or os.path.islink(source):
            return False
        target = self.path(name)
        try:
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target)
        except OSError as exc:
            raise _write_error(self.out_dir, exc) from None
        return True

    def commit(self) -> None:
        """Swap the new set in: the old one is gone and the new one complete, or nothing changed.
        Files added to the old set while the run worked are moved into the new one, not deleted.
        From here on a command-line process ignores Ctrl-C and SIGTERM (process.outputs_final)."""
        from harness import process

        process.stop_if_signalled()
        process.outputs_final()
        try:
            if os.path.isdir(self.out_dir) and not os.path.islink(self.out_dir):
                if not _exchange(self.staging, self.out_dir):
                    old = self.staging + ".old"
                    os.rename(self.out_dir, old)
                    os.rename(self.staging, self.out_dir)
                    self.staging = old
            else:
                os.rename(self.staging, self.out_dir)
                self.committed = True
                return
        except OSError as exc:
            raise _write_error(self.out_dir, exc) from None
        self.committed = True  # the new set is in place: whatever follows must not remove the old one blindly
        if _keep_added(self.staging, self.out_dir):  # self.staging is now the old set
            shutil.rmtree(self.staging, ignore_errors=True)


def _keep_added(old: str, new: str) -> bool:
    """Move what the replaced set `old` holds but did not write into the new set `new`: files a
    user put there while the run worked (check_output_dir found none before it). A later run then
    refuses `new` as holding files it did not write, rather than deleting them. True when `old` may
    go; it is kept beside `new` instead, under a name the next run does not clean up, with a note
    saying where, when a file cannot be moved (the new set has that name), or when a file its
    run.json lists is not as that run wrote it (changed_files) and the new set did not keep it:
    an edited table, or a file of the user's that a run.json copied or forged into the folder lists."""
    moved, stuck, changed, unrecorded = [], [], [], False
    try:
        added = foreign_files(old)
        unrecorded = os.path.lexists(os.path.join(old, RUN)) and _recorded_files(read_json(old, RUN)) is None
        # A first run's folder (no run.json) held no set; what was added is moved, not counted twice.
        changed = [name for name in (changed_files(old) if os.path.lexists(os.path.join(old, RUN)) else [])
                   if not any(name == a or name.startswith(a + "/") for a in added)
                   and not _same_content(os.path.join(old, name), os.path.join(new, name))]
    except OSError:
        added = []
    except HarnessError:  # its run.json was damaged during the run: what is the user's is unknown
        added, stuck = [], [RUN]
    for name in added:
        _move_into(old, new, name, moved, stuck)
    if moved:
        _note(f"{_where(new)}: {_shown_list(moved)} appeared there during the run; kept in the new outputs "
              "(a later run into it will refuse to replace them)")
    if not stuck and not changed:
        return True
    try:
        kept = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(new)),
                                prefix=os.path.basename(os.path.abspath(new)) + ".replaced-")
        os.rmdir(kept)
        os.rename(old, kept)
    except OSError:  # left where it is (beside `new`, under its staging name): still not deleted
        kept = old
    if stuck:
        _note(f"{_where(new)}: {_shown_list(stuck)} appeared there during the run under names the new outputs "
              f"use; the replaced outputs, with them, are kept in {_where(kept)}")
    if changed and unrecorded:
        _note(f"{_where(new)}: the replaced outputs' {RUN} records no digests (an older version's set), so none of "
              f"their files can be told to be as their run wrote them; they are kept in {_where(kept)}")
    elif changed:
        _note(f"{_where(new)}: {_shown_list(changed)} of the replaced outputs had changed since their run wrote "
              f"them; the replaced outputs are kept in {_where(kept)}")
    return False


def _recorded_files(record: dict) -> set[str] | None:
    """The files a run.json lists with their sizes and digests; None where it records none (an older version's)."""
    files, sizes, digests = record.get("files"), record.get("sizes"), record.get("digests")
    return set(files) if isinstance(files, list) and isinstance(sizes, dict) and isinstance(digests, dict) \
        and all(isinstance(f, str) for f in files) else None


def changed_files(out_dir: str) -> list[str]:
    """The files of the set in `out_dir` that its run.json lists but that are not as it recorded
    them (size and SHA-256, as_recorded): replacing the set would delete what may be the user's
    work. Where run.json records no list or no digests (an older version's), every file of the set
    is counted: none can be told to be as its run wrote it. Links, run.json itself and the hash
    cache are not counted (replacing them loses nothing), nor what the list does not name
    (foreign_files). A run.json that cannot be read is a HarnessError."""
    record = read_json(out_dir, RUN)
    listed = _recorded_files(record)
    sizes, digests = record.get("sizes"), record.get("digests")
    return sorted(path for path, full in _files_of_set(out_dir) if path != RUN and (
        listed is None or path in listed and not as_recorded(full, sizes.get(path), digests.get(path))))


def _same_content(path: str, other: str) -> bool:
    """Whether `other` is the file at `path` (a hard link: what a new set carries) or a regular
    file with the same bytes (a copy, where a link cannot be made)."""
    import stat

    try:
        one, two = os.lstat(path), os.lstat(other)
    except OSError:
        return False
    if (one.st_dev, one.st_ino) == (two.st_dev, two.st_ino):
        return True
    if not (stat.S_ISREG(one.st_mode) and stat.S_ISREG(two.st_mode)) or one.st_size != two.st_size:
        return False
    return file_sha256(path) == file_sha256(other)


def _move_into(old: str, new: str, name: str, moved: list, stuck: list) -> None:
    """Move `name` (a file or folder of the set `old`) to the same place in `new`; a folder that
    `new` has too (a user's `figures/mine.png` in a set not listed yet) is merged file by file."""
    source, target = os.path.join(old, name), os.path.join(new, name)
    try:
        if os.path.isdir(target) and not os.path.islink(target) and os.path.isdir(source) \
                and not os.path.islink(source):
            for child in sorted(os.listdir(source)):
                _move_into(old, new, f"{name}/{child}", moved, stuck)
            return
        if os.path.lexists(target):
            raise FileExistsError(name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.rename(source, target)
        moved.append(name)
    except OSError:
        stuck.append(name)


def _note(text: str) -> None:
    """A note of the writer itself, where no caller collects notes (the set is already written)."""
    import sys

    print(f"note: {text}", file=sys.stderr)


def _write_error(out_dir: str, exc: OSError) -> HarnessError:
    why = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
    # The hash cache may have been dropped too (the same disk): the run's notes say so, not this line.
    return HarnessError(f"{_where(out_dir)}: cannot write the outputs ({why}); the previous outputs are unchanged, "
                        "and running again reuses what the hash cache kept, if anything")


def _exchange(a: str, b: str) -> bool:
    """Atomically swap two directories (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    return False


def _remove_stale_staging(parent: str, base: str) -> None:
    """Staging directories of runs that were killed (their process is gone)."""
    prefix = f".{base}.staging-"
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        if not name.startswith(prefix):
            continue
        pid = name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- tables ----------------------------------------------------------------------

def _to_csv(frame: pd.DataFrame, path: str) -> None:
    """A table as CSV, as pandas writes it (`index=False`, "\\n", FLOAT_FORMAT, a missing value
    empty). pandas formats and writes each value in Python: 0.9 s for the 300,000 impostor rows of
    910 images (benchmarks/tables.py). A table of text categories and floats (every long table) goes
    through Arrow's CSV writer instead, in 0.12 s, with the same bytes (tests/test_table_memory.py
    compares them): each category, and each distinct float of a block of rows, is made text once,
    as pandas makes it, and nothing is quoted, which is what pandas does unless a text holds a
    comma, a quote or a line break. Any other table, and text that needs quotes, pandas writes
    itself."""
    columns = _csv_columns(frame)
    if columns is None:
        frame.to_csv(path, index=False, lineterminator="\n", float_format=FLOAT_FORMAT)
        return
    import pyarrow as pa
    import pyarrow.csv as arrow_csv

    names = [str(number) for number in range(len(columns))]
    with open(path, "wb") as handle:
        handle.write((",".join(frame.columns) + "\n").encode())  # Arrow would quote every name
        with arrow_csv.CSVWriter(handle, pa.schema([(name, pa.dictionary(pa.int32(), pa.string())) for name in names]),
                                 write_options=arrow_csv.WriteOptions(include_header=False,
                                                                      quoting_style="none")) as writer:
            for start in range(0, len(frame), ROWS_BLOCK):  # in blocks: no temporaries the size of the table
                writer.write_table(pa.Table.from_arrays([column(start, start + ROWS_BLOCK) for column in columns],
                                                        names=names))


_QUOTED = (",", '"', "\r", "\n")  # a field holding one is quoted by pandas (csv.QUOTE_MINIMAL), or not written by Arrow


def _csv_columns(frame: pd.DataFrame) -> list | None:
    """Per column of `frame`, a function of (start, stop) giving those rows as an Arrow dictionary
    array of the texts pandas' to_csv writes; None where Arrow would not write the same bytes: a
    column neither categorical of text nor float64, a text or column name that pandas quotes, two
    columns of one name, or one column only (pandas quotes an empty row)."""
    import pandas as pd
    import pyarrow as pa

    def dictionary(codes: np.ndarray, texts) -> pa.DictionaryArray:
        missing = codes < 0
        return pa.DictionaryArray.from_arrays(pa.array(codes, type=pa.int32(), mask=missing if missing.any() else None),
                                              texts)

    def texts_of(column: pd.Series):
        categories = pa.array(column.cat.categories.to_numpy(dtype=object), type=pa.string())
        codes = category_codes(column)
        return lambda start, stop: dictionary(codes[start:stop], categories)

    def floats_of(column: pd.Series):
        values = column.to_numpy()

        def rows(start: int, stop: int) -> pa.DictionaryArray:
            # Each distinct value (by its bits: -0.0 prints apart from 0.0) made text once, as pandas would.
            distinct, codes = np.unique(values[start:stop].view(np.int64), return_inverse=True)
            distinct = distinct.view(np.float64)
            texts = pa.array([FLOAT_FORMAT % value for value in distinct.tolist()], type=pa.string())
            codes = codes.reshape(-1).astype(np.int32)
            codes[np.isnan(distinct)[codes]] = -1  # NaN: empty, pandas' na_rep
            return dictionary(codes, texts)
        return rows

    names = [name for name in frame.columns if isinstance(name, str)]
    if len(names) < 2 or len(names) < len(frame.columns) or frame.columns.has_duplicates or _needs_quotes(names):
        return None
    columns = []
    for name in names:
        column = frame[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            categories = column.cat.categories
            if len(categories) and (categories.inferred_type != "string" or _needs_quotes(categories)):
                return None
            columns.append(texts_of(column))
        elif column.dtype == np.float64:
            columns.append(floats_of(column))
        else:
            return None
    return columns


def _needs_quotes(texts) -> bool:
    joined = "".join(texts)
    return any(mark in joined for mark in _QUOTED)


def _to_parquet(frame: pd.DataFrame, path: str, metadata: dict[str, str] | None = None) -> None:
    # No pandas index and no timestamps: the same frame gives the same file.
    if not metadata:
        frame.to_parquet(path, index=False, engine="pyarrow", compression="zstd")
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           **{key.encode(): value.encode() for key, value in metadata.items()}})
    pq.write_table(table, path, compression="zstd")


# A long table's rows per Parquet row group. pyarrow's writer indexes the whole dictionary of a
# categorical column for each row group (a hash table of 12 MiB for 100,000 names) however few of
# its names the group's rows use; `_long_to_parquet` gives each group the names it uses only. The
# distance table lists each image's rows together, so a group of 65,536 rows names about 5,000
# images (memory at 100,000 images: 11 MiB where one group took 28, and a smaller file, as no name
# is stored twice). The impostor table's pairs are random: any group names most images, and small
# groups would only store the names again, so it keeps pyarrow's default size.
PARQUET_GROUP_ROWS = {DISTANCES: 1 << 16, IMPOSTORS: 1 << 20}


def _long_to_parquet(frame: pd.DataFrame, path: str, group_rows: int) -> None:
    """A long table as Parquet, the file pandas' to_parquet writes (its schema, with pandas' metadata,
    so it reads back the same) but in row groups of `group_rows` rows, each with the dictionaries of
    the names its rows use."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.Schema.from_pandas(frame.iloc[:0], preserve_index=False)
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for start in range(0, max(len(frame), 1), group_rows):
            stop = start + group_rows
            writer.write_table(pa.Table.from_arrays([_arrow_rows(frame[field.name], field.type, start, stop)
                                                     for field in schema], schema=schema), row_group_size=group_rows)


def _arrow_rows(column: pd.Series, kind, start: int, stop: int):
    """Rows start:stop of a long table's column as Arrow (of type `kind`); a categorical column's
    dictionary holds the categories these rows use, in the order of their codes."""
    import pandas as pd
    import pyarrow as pa

    if not isinstance(column.dtype, pd.CategoricalDtype):
        return pa.array(column.to_numpy()[start:stop], type=kind, from_pandas=True)  # NaN as null, as pandas writes it
    codes = given = category_codes(column)[start:stop]
    used = np.unique(given)
    used = used[used >= 0]
    if len(used) < len(column.cat.categories):  # (every category used: the codes themselves, not a copy)
        renumber = np.zeros(len(column.cat.categories), kind.index_type.to_pandas_dtype())
        renumber[used] = np.arange(len(used))
        codes = renumber[given]
    missing = given < 0
    indices = pa.array(codes, type=kind.index_type, mask=missing if missing.any() else None)
    return pa.DictionaryArray.from_arrays(indices, pa.array(column.cat.categories.to_numpy(dtype=object)[used],
                                                            type=kind.value_type))


def round6(values, in_place: bool = False) -> np.ndarray:
    """Floats as the tables store them: 6 significant digits (what "%.6g" prints and reads back).
    The same array when every value already is (a table read back, or rounded before): no copy;
    `in_place`: `values` (a float64 array) is rounded itself."""
    array = np.asarray(values, dtype=np.float64)
    rounded = array if in_place else None
    for start in range(0, len(array), ROWS_BLOCK):  # in blocks: no temporaries the size of the table
        block = array[start:start + ROWS_BLOCK]
        # Whole numbers below 1e6 (every Hamming distance) already print exactly: format only the rest.
        inexact = ~(np.isnan(block) | ((block == np.round(block)) & (np.abs(block) < 1e6)))
        if not inexact.any():
            continue
        # Each distinct value formatted once: normalised Hamming distances take a few dozen values.
        distinct, where = np.unique(block[inexact], return_inverse=True)
        exact = np.array([float(FLOAT_FORMAT % v) for v in distinct.tolist()], np.float64)
        if (exact == distinct).all():  # already to 6 digits
            continue
        if rounded is None:
            rounded = array.copy()
        rounded[start:start + ROWS_BLOCK][inexact] = exact[where.reshape(-1)]
    return array if rounded is None else rounded


def normalise(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """A long table as it reads back from disk: its columns in order, `value` as the config's text,
    distances to 6 significant digits, every text column categorical (a long table repeats a few
    names millions of times: codes keep it to a few bytes a row, and its groups to the names seen)."""
    import pandas as pd

    from harness.config import format_value

    frame = frame.reindex(columns=LONG_TABLES[name])  # pandas copies on write: the caller's frame is safe
    if not isinstance(frame["value"].dtype, pd.CategoricalDtype):
        frame["value"] = [v if isinstance(v, str) else format_value(v) for v in frame["value"]]
    for column in frame.columns:
        values = frame[column]
        if column in ("distance", "distance_norm"):
            values = values.to_numpy()
            normal = round6(values)
        else:
            normal = _categorical(values)
        if normal is not values:  # (assigning a column copies it: a table made by this version is left as it is)
            frame[column] = normal
    return frame.reset_index(drop=True)


def _categorical(column: pd.Series) -> pd.Series:
    """Text as a categorical column whose categories are the texts, as Python strings
    (schema.text_categories), in order of appearance (so the same table gives the same categories
    however it was made: in memory, from CSV or Parquet). A categorical column is reordered by its
    codes alone: no text is made per row."""
    import pandas as pd

    if not isinstance(column.dtype, pd.CategoricalDtype):
        texts = column.astype(object).where(column.notna(), "").map(str)
        return pd.Series(pd.Categorical(texts, categories=text_categories(pd.unique(texts))), index=column.index,
                         name=column.name)
    categories = column.cat.categories
    if categories.inferred_type == "string" and in_first_seen_order(category_codes(column), len(categories)):
        if categories.dtype == object:
            return column  # already so (as the runner makes its tables): nothing is copied
        # pandas' text type (as read from Parquet): the same codes, the texts as Python strings once
        return pd.Series(pd.Categorical.from_codes(category_codes(column), dtype=text_dtype(categories)),
                         index=column.index, name=column.name)
    # Reordered, and categories that read the same as text (2 and "2") made one, by the codes alone.
    texts = np.array([str(c) for c in categories] + [""], dtype=object)  # the last: a missing value's
    return pd.Series(first_seen_categorical(category_codes(column), texts), index=column.index, name=column.name)


# What a Parquet table may take once decompressed: a run's distance table of 10^8 rows holds 1.6 GB
# of distances (two float64 columns), besides its text columns' dictionary codes, a byte or a few a
# row each; a hash table as much as a CSV one.
PARQUET_MAX_BYTES = 8 << 30


def read_parquet_bounded(source, shown: str, what: str, columns: list[str] | None = None,
                         limit: int | None = None):
    """A Parquet file as a pyarrow Table, its text columns read as dictionaries (each distinct value
    once, as pandas' categories), refused in one line naming `shown` where its pages would take more
    than `limit` bytes decompressed (`what` names the kind of table). A 4 KB file can hold gigabytes
    of zstd-compressed or dictionary-repeated text: read plainly, one took 7.4 GB and ended in an
    ArrowMemoryError. The pages' sizes are those the file's footer declares (pyarrow reads no page
    header until it decodes); the dictionaries keep repeated values from multiplying in memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    limit = PARQUET_MAX_BYTES if limit is None else limit
    file = pq.ParquetFile(source)
    meta, wanted = file.metadata, None if columns is None else set(columns)
    pages = sum(meta.row_group(g).column(c).total_uncompressed_size for g in range(meta.num_row_groups)
                for c in range(meta.num_columns)
                if wanted is None or meta.row_group(g).column(c).path_in_schema in wanted)
    if pages > limit:
        raise HarnessError(f"{shown}: {pages:,} bytes once decompressed, more than {what} may hold "
                           f"({limit >> 30} GiB)")

    def text(kind) -> bool:
        kind = kind.value_type if pa.types.is_dictionary(kind) else kind
        return pa.types.is_string(kind) or pa.types.is_large_string(kind)

    names = [field.name for field in file.schema_arrow if text(field.type) and (wanted is None or field.name in wanted)]
    return pq.ParquetFile(source, read_dictionary=names).read(columns=columns)


def decoded_text_bytes(column) -> tuple[int, int]:
    """(the bytes a dictionary column of text takes decoded, row by row; its longest value's bytes),
    worked out on the codes and the dictionary: nothing is decoded."""
    import pyarrow.compute as pc

    total = longest = 0
    for chunk in column.chunks:
        lengths = pc.binary_length(chunk.dictionary)
        total += pc.sum(pc.take(lengths, chunk.indices)).as_py() or 0
        longest = max(longest, pc.max(lengths).as_py() or 0)
    return total, longest


# The longest value of a hash table's column: a file's path (Linux's PATH_MAX), or a hash in hexadecimal.
TABLE_VALUE_MAX_BYTES = 4096


def _check_same_rows(csv: str, rows: int, out_dir: str, name: str) -> None:
    """A HarnessError unless the CSV at `csv` has `rows` rows (its lines but the header; counted in
    blocks, in constant memory)."""
    lines = 0
    with open(csv, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            lines += block.count(b"\n")
    if lines - 1 != rows:  # a label or an error text may hold a line break in quotes: count the rows themselves
        import pandas as pd

        lines = 1 + len(pd.read_csv(csv, usecols=[0], dtype=str, keep_default_na=False))
    if lines - 1 != rows:
        raise HarnessError(f"{_where(out_dir)}: {name}.csv and {name}.parquet hold different tables ({lines - 1:,} "
                           f"and {rows:,} rows), and run.json does not list which its run wrote: one is another "
                           "run's (an older version writes no Parquet); move it out")


def read_long(out_dir: str, name: str, record: dict | None = None) -> pd.DataFrame:
    """A long table of the set in `out_dir`: its Parquet file where there is one, else its CSV. With
    `record`, the set's run.json: where it lists the set's files, only a listed one is read (a run of
    an older version into a current set's folder wrote its CSV and left the other run's Parquet, which
    was read in its place: another run's numbers under this run's record); where it lists none (sets
    of versions before it did) and both files are there, they must hold as many rows."""
    import pandas as pd

    columns = LONG_TABLES[name]
    parquet, csv = os.path.join(out_dir, f"{name}.parquet"), os.path.join(out_dir, f"{name}.csv")
    listed = record.get("files") if record is not None else None
    read = long_table_file(out_dir, name, record)
    if read is None:
        raise HarnessError(f"{_where(out_dir)}: no {name}.csv or {name}.parquet here; is this the output directory "
                           "of a run?")
    try:
        if read == parquet:
            table = read_parquet_bounded(parquet, f"{_where(out_dir)}: {name}.parquet", "a table of a run")
            if record is not None and not isinstance(listed, list) and _regular(csv):
                _check_same_rows(csv, table.num_rows, out_dir, name)
            frame = table.to_pandas()
        else:
            _check_run_csv(csv)
            numeric = [c for c in ("distance", "distance_norm") if c in columns]
            frame = pd.read_csv(csv, dtype={c: str for c in columns if c not in numeric}, keep_default_na=False,
                                na_values={c: [""] for c in numeric})
    except HarnessError:
        raise
    except Exception as exc:  # a damaged file: pandas and pyarrow raise many kinds
        raise HarnessError(f"{_where(out_dir)}: cannot read {name} ({exception_text(exc)})") from None
    for column in OPTIONAL_COLUMNS & set(columns) - set(frame.columns):
        frame[column] = ""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise HarnessError(f"{_where(out_dir)}: {name} lacks the columns {', '.join(missing)}")
    try:
        frame = normalise(name, frame)
    except (TypeError, ValueError) as exc:
        raise HarnessError(f"{_where(out_dir)}: {name} holds values of the wrong type ({exception_text(exc)})") from None
    check_long(_where(out_dir), name, frame)
    return frame


def long_table_file(out_dir: str, name: str, record: dict | None = None) -> str | None:
    """The file read_long reads for the long table `name` of the set in `out_dir` (`record`: its
    run.json): its Parquet file where there is one and the record does not list the CSV alone, else
    its CSV; None where neither is there."""
    parquet, csv = os.path.join(out_dir, f"{name}.parquet"), os.path.join(out_dir, f"{name}.csv")
    listed = record.get("files") if record is not None else None
    not_this_runs = isinstance(listed, list) and f"{name}.csv" in listed and f"{name}.parquet" not in listed
    if not not_this_runs and _regular(parquet):
        return parquet
    return csv if _regular(csv) else None


def check_long(where: str, name: str, frame: pd.DataFrame) -> None:
    """A long table's distances are as a run writes them (`where` names the table's home in the
    message): a number or nothing (a failed pair, with its error), never infinite; and nothing only
    where the row says what stopped it: the figures and thresholds have no reading of such a row."""
    if np.isinf(frame["distance"]).any():
        raise HarnessError(f"{where}: {name} holds an infinite distance")
    silent = frame["distance"].isna() & (frame["error"].eq("") if "error" in frame.columns else True)
    if silent.any():
        row = frame.loc[silent.idxmax()]
        raise HarnessError(f"{where}: {name} holds a row with no distance"
                           + (" and no error" if "error" in frame.columns else "")
                           + f" (image {shown(row['image_id'])}, hasher {shown(row['hasher'])}); a run writes "
                           + ("one or the other" if "error" in frame.columns else "a distance on every row"))


# Text columns of the small tables; the others (sizes, scores, maxima) read back as numbers.
TEXT_COLUMNS = {IMAGES: ["image", "image_id", "origin", "notes"],
                HASHERS: ["hasher", "name", "distance", "status", "reason", "cpu_exact", "params"]}
NUMBER_COLUMNS = {HASHERS: ["distance_max"]}  # what the report computes with: a damaged file fails here


# A run writes a long table as CSV only up to CSV_MAX_ROWS rows (a few hundred bytes each at most);
# the small tables are smaller still. pandas takes several times a file's size in memory: a 1 GB
# file of NUL bytes named distances.csv took 12 GB and wrote a 3 GB summary.
RUN_CSV_MAX_BYTES = 512 << 20


def _check_run_csv(path: str) -> None:
    """A CSV table of a run's set is at most RUN_CSV_MAX_BYTES, holds no NUL byte (no text a run
    writes does), ends with a line break and has its header's fields in every row: anything else is
    not read. pandas reads a row short of fields as one whose last fields are empty, which is what a
    failed distance, an image without notes or an error-free pair is: a table cut short would
    otherwise give a report of less, or of a row of nothing, with no word said."""
    size = os.path.getsize(path)
    if size > RUN_CSV_MAX_BYTES:
        raise HarnessError(f"{_where(path)}: {size:,} bytes, more than a run writes as CSV "
                           f"({RUN_CSV_MAX_BYTES >> 20} MiB at most); not a table of a run")
    with open(path, "rb") as handle:
        while block := handle.read(1 << 24):
            if b"\0" in block:
                raise HarnessError(f"{_where(path)}: holds NUL bytes, which no table of a run does")
        # Every table a run writes ends with a line break. Without one the last row may be whole, or
        # cut inside its last field (a distance of 31 read as 3): no reader can tell, so it is refused.
        handle.seek(max(size - 1, 0))
        if size and handle.read(1) != b"\n":
            raise HarnessError(f"{_where(path)}: its last row ends without a line break, so the file was cut "
                               "short (every table of a run ends with one; an edited file must too)")
    _check_fields(path)


def _check_fields(path: str) -> None:
    """Every row of a CSV table has as many fields as its header. Arrow's parser counts them (and,
    unlike pandas, refuses a short row); no column is converted (`include_columns` names one that
    no header holds: none holds a NUL byte), so this takes a tenth of the time pandas' reading does."""
    import pyarrow.csv as arrow_csv

    invalid = []

    def refuse(row):
        invalid.append(row)
        return "error"

    try:
        arrow_csv.read_csv(path, read_options=arrow_csv.ReadOptions(use_threads=False),  # one thread numbers the rows
                           parse_options=arrow_csv.ParseOptions(newlines_in_values=True, invalid_row_handler=refuse),
                           convert_options=arrow_csv.ConvertOptions(include_columns=["\0"],
                                                                    include_missing_columns=True))
    except Exception:  # pyarrow raises many kinds: a row `refuse` kept, or anything else, which pandas reports
        if not invalid:
            return
        row = invalid[0]
        where = f"row {row.number}" if row.number is not None else "a row"
        raise HarnessError(f"{_where(path)}: {where} has {row.actual_columns} fields where the header has "
                           f"{row.expected_columns}; the file was cut short or edited") from None


def read_small(out_dir: str, name: str, columns: list[str] | None = None) -> pd.DataFrame:
    """A small CSV table; empty (with `columns`) when absent, a HarnessError when the file is empty or
    damaged (_check_run_csv). Text columns stay text (an id of digits is not a number), the rest are
    read as numbers."""
    import pandas as pd

    path = os.path.join(out_dir, name)
    if not _regular(path):
        return pd.DataFrame(columns=columns or [])
    text = TEXT_COLUMNS.get(name)
    _check_run_csv(path)
    try:
        frame = pd.read_csv(path, dtype=str if text is None else {c: str for c in text}, keep_default_na=False,
                            na_values=None if text is None else [""])
        for column in text or []:
            if column in frame:
                frame[column] = frame[column].fillna("")
    except pd.errors.EmptyDataError:  # not even a header: every run writes one, rows or none
        raise HarnessError(f"{_where(path)}: empty (every table of a run has at least its header line)") from None
    except Exception as exc:
        raise HarnessError(f"{path}: cannot read ({exception_text(exc)})") from None
    if columns and any(c not in frame.columns for c in columns):
        raise HarnessError(f"{path}: lacks the columns {', '.join(c for c in columns if c not in frame.columns)}")
    for column in NUMBER_COLUMNS.get(name, []):
        if column in frame:
            try:
                frame[column] = pd.to_numeric(frame[column])
            except (TypeError, ValueError) as exc:
                raise HarnessError(f"{path}: column {column} holds a value that is not a number "
                                   f"({exception_text(exc)})") from None
    return frame


JSON_MAX_BYTES = 64 << 20  # run.json holds a config and provenance: a few KiB


def read_text(out_dir: str, name: str, max_bytes: int = JSON_MAX_BYTES) -> str | None:
    """A text file of an output set (summary.md); None when it is absent, not UTF-8 or too large."""
    path = os.path.join(out_dir, name)
    try:
        if not _regular(path):
            return None
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
        return data.decode("utf-8") if len(data) <= max_bytes else None
    except (OSError, UnicodeDecodeError, HarnessError):
        return None


def read_json(out_dir: str, name: str) -> dict:
    path = os.path.join(out_dir, name)
    if not _regular(path):
        return {}
    try:
        with open(path, "rb") as handle:
            data = handle.read(JSON_MAX_BYTES + 1)
        if len(data) > JSON_MAX_BYTES:
            raise HarnessError(f"{path}: larger than {JSON_MAX_BYTES >> 20} MiB; not the run.json of a run")
        data = json.loads(data.decode("utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: [[[[... nested too deep
        raise HarnessError(f"{path}: cannot read ({exception_text(exc)})") from None
    if not isinstance(data, dict):
        raise HarnessError(f"{path}: expected a JSON object")
    return data


def read_table_file(path: str, columns: list[str]) -> tuple[pd.DataFrame, dict[str, str]]:
    """A user's CSV or Parquet table (a hash table given to the leak audit), its `columns` as text,
    and a Parquet file's key-value metadata (none for a CSV); one line naming the file for anything
    that is not such a table. Read through the same bounded, regular-file-only reader as images, so a
    FIFO or /dev/zero named .csv cannot hang or exhaust a run."""
    import io

    import pandas as pd

    from harness.errors import ImageError
    from harness.images import display_path, read_file

    shown = display_path(path)
    if os.path.isfile(path) and os.path.getsize(path) > TABLE_MAX_BYTES:  # read_file's words are for images
        raise HarnessError(f"{shown}: {os.path.getsize(path):,} bytes, more than a hash table may hold "
                           f"({TABLE_MAX_BYTES >> 30} GiB: 10^8 files)")
    try:
        data = read_file(path, TABLE_MAX_BYTES)
    except ImageError as exc:
        raise HarnessError(str(exc)) from None
    parquet = path.lower().endswith(".parquet")
    if not parquet and b"\0" in data:  # no text table holds one; pandas would parse a sparse file at 4x its size
        raise HarnessError(f"{shown}: holds NUL bytes; not a CSV table of file names and hashes")
    try:
        if parquet:
            table = read_parquet_bounded(io.BytesIO(data), shown, "a hash table", columns, TABLE_MAX_BYTES)
        else:
            frame = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, usecols=columns)
    except HarnessError:
        raise
    except Exception as exc:  # pandas and pyarrow raise many kinds on damaged files
        raise HarnessError(f"{shown}: not a table with the columns {', '.join(columns)} ({exception_text(exc)})") from None
    if parquet:  # a CSV is text by nature; a Parquet column may hold bytes, numbers or nulls
        import pyarrow as pa
        import pyarrow.compute as pc

        decoded = 0
        for column in columns:
            kind = table.schema.field(column).type
            if not pa.types.is_dictionary(kind):  # read_parquet_bounded reads every text column as one
                raise HarnessError(f"{shown}: column {column} holds {kind} values, not text")
            if table.column(column).null_count:
                row = pc.index(pc.is_null(table.column(column)), True).as_py()
                raise HarnessError(f"{shown}: row {row + 1}: {column} is null")
            size, longest = decoded_text_bytes(table.column(column))
            if longest > TABLE_VALUE_MAX_BYTES:
                raise HarnessError(f"{shown}: column {column} holds a value of {longest:,} bytes; a file's path or "
                                   f"a hash has at most {TABLE_VALUE_MAX_BYTES:,}")
            decoded += size
        if decoded > TABLE_MAX_BYTES:  # its values repeated: as much text as no CSV table may hold
            raise HarnessError(f"{shown}: {decoded:,} bytes of text once decoded, more than a hash table may hold "
                               f"({TABLE_MAX_BYTES >> 30} GiB: 10^8 files)")
        frame = pd.DataFrame({column: table.column(column).cast(pa.large_string()).to_pandas() for column in columns})
    empty = np.flatnonzero(frame[columns[0]].to_numpy(dtype=object) == "")
    if len(empty):
        raise HarnessError(f"{shown}: row {int(empty[0]) + (1 if parquet else 2)}: {columns[0]} is empty")
    metadata = (table.schema.metadata or {}) if parquet else {}
    return frame, {key.decode("utf-8", "replace"): value.decode("utf-8", "replace") for key, value in metadata.items()}


TABLE_MAX_BYTES = 4 << 30  # a hash table of 10^8 files is about 4 GB of CSV


def check_complete(out_dir: str) -> None:
    """A run's output directory holds run.json, the small tables and both long tables (CSV or
    Parquet): metrics made from a set with one missing (no impostors: no thresholds) would be
    silently wrong. A folder without distances is not a run's at all."""
    absent = [name for name in LONG_TABLES
              if not any(_regular(os.path.join(out_dir, f"{name}.{kind}")) for kind in ("parquet", "csv"))]
    if DISTANCES in absent:
        raise HarnessError(f"{_where(out_dir)}: no {DISTANCES}.csv or {DISTANCES}.parquet here; is this the output "
                           "directory of a run?")
    missing = [name for name in (RUN, IMAGES, ERRORS, HASHERS) if not _regular(os.path.join(out_dir, name))]
    missing += [f"{name}.csv or {name}.parquet" for name in absent]
    if missing:
        raise HarnessError(f"{_where(out_dir)}: an incomplete output directory: no {', '.join(missing)} (every run "
                           "writes them)")


def check_listed(out_dir: str, distances: pd.DataFrame, impostors: pd.DataFrame, images: pd.DataFrame,
                 hashers: pd.DataFrame, record: dict | None = None) -> None:
    """The long tables name only hashers that hashers.csv lists and images (by id) that images.csv
    lists, as every run writes them: a small table cut short or emptied to its header reads as a
    table of fewer rows, and the report would show fewer hashers or images than the distances hold.
    The long tables' names are compared by their categories (normalise leaves each distinct name
    once, and only those the rows use), not row by row: 10^8 distances cost the time of their names.
    Then every image's distances are counted (_check_rows_per_image)."""
    import pandas as pd

    listed = {HASHERS: hashers["hasher"].to_numpy(dtype=object), IMAGES: images["image_id"].to_numpy(dtype=object)}
    for small, column in ((HASHERS, "hasher"), (IMAGES, "image_id")):  # a run lists each once
        repeated = pd.Index(listed[small])[pd.Index(listed[small]).duplicated()]
        if len(repeated):
            raise HarnessError(f"{_where(os.path.join(out_dir, small))}: lists the {column} {shown(repeated[0])} "
                               "twice (a run lists each once): a row was repeated or edited")
    for name, table, column, small in ((DISTANCES, distances, "hasher", HASHERS),
                                       (IMPOSTORS, impostors, "hasher", HASHERS),
                                       (DISTANCES, distances, "image_id", IMAGES),
                                       (IMPOSTORS, impostors, "image_id", IMAGES),
                                       (IMPOSTORS, impostors, "other_id", IMAGES)):
        names = table[column].cat.categories
        unlisted = names[~names.isin(listed[small])]
        if len(unlisted):
            what = "hasher" if small == HASHERS else "image_id"
            more = f" (and {len(unlisted) - 1} more)" if len(unlisted) > 1 else ""
            raise HarnessError(f"{_where(os.path.join(out_dir, small))}: does not list the {what} "
                               f"{shown(unlisted[0])}{more} that the {name} table holds (a run lists every {what} "
                               "of its tables): one of the two was cut short or edited")
    _check_rows_per_image(out_dir, record, distances, listed[IMAGES])


def _check_rows_per_image(out_dir: str, record: dict | None, distances: pd.DataFrame, images) -> None:
    """Every image images.csv lists has as many rows of the distances table as every other (a row
    per pair and hasher, an edit that failed included): a table cut at a line break reads as whole,
    with the last images' rows missing. Counted on the ids' codes, without a row of Python per row."""
    import pandas as pd

    if not len(distances):  # no hasher ran, or no pair: nothing to count
        return
    ids = distances["image_id"].cat.categories
    codes = category_codes(distances["image_id"])
    per_image = pd.Series(np.bincount(codes[codes >= 0], minlength=len(ids)), index=ids)
    per_image = per_image.reindex(pd.Index(images).unique(), fill_value=0)
    if per_image.min() != per_image.max():
        source = long_table_file(out_dir, DISTANCES, record) or f"{out_dir}: {DISTANCES}"  # the file read, if any
        raise HarnessError(f"{_where(source)}: image_id {shown(per_image.idxmin())} has {per_image.min():,} rows "
                           f"where another has {per_image.max():,} (a run writes as many for every image of "
                           "images.csv, a row per pair and hasher): the table was cut short or edited")


def read_errors(out_dir: str) -> pd.DataFrame:
    return read_small(out_dir, ERRORS, ERROR_COLUMNS)


def _regular(path: str) -> bool:
    """True for a regular file, False when there is nothing at `path`, and a HarnessError for a
    link, a directory or a device where a file of the run should be: reading never follows a
    link out of the directory, nor waits on a FIFO."""
    if not os.path.lexists(path):
        return False
    if os.path.islink(path) or not os.path.isfile(path):
        raise HarnessError(f"{path}: not a regular file (a symbolic link, a directory or a device); an output "
                           "directory holds only the files a run wrote")
    return True
