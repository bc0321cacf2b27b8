"""A persistent cache of computed hashes, so re-runs and resumed runs redo only new work.

What is stored:
- `files`: a file's content digest (with the reading rules' salt) -> the image it decodes to
  (its id, size and conversion notes), so a cached image needs no decoding at all;
- `hashes`: (hasher key, image id, item) -> one image's hash as raw bytes with its dtype and
  shape, or the reason it failed; item is "source" or a transform chain's digest. The hasher key
  covers the hasher's parameters and every library version that can change a result.

Values are never pickled: a cache file can arrive inside a shared folder, and unpickling runs
code. Arrays are stored as bytes with a dtype (numbers and booleans only) and a shape, and each
is checked as it is read, against the form its hasher gives too (Hasher.row_form, given to
get_image); an entry that does not check out is treated as missing (recomputed) and counted
in a note, text that is not UTF-8 included (a damaged page: SQLite then checks the
file, and a damaged file at the default place is copied, entry by entry, into a fresh one). A file
that is not a cache of this format is set aside: the cache at the
default place (inside the output directory) is replaced by a fresh one, any other file is left
alone and the run goes on without a cache. Nothing in a cache can make a run fail.

Each image's entries are written in one SQLite transaction as soon as they are computed, so a run
killed at any moment (even SIGKILL) loses at most the image in flight.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sqlite3
import stat
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.errors import exception_text

FORMAT = "imghash-harness hash cache 2"
DEFAULT_NAME = "hash-cache.sqlite"  # a damaged cache of this name may be replaced; one of another name never
SCHEMA = {
    "meta": "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)",
    "files": "CREATE TABLE files (digest TEXT, salt TEXT, image TEXT, info TEXT, PRIMARY KEY (digest, salt))",
    "hashes": "CREATE TABLE hashes (hasher TEXT, image TEXT, item TEXT, dtype TEXT, shape TEXT, data BLOB, "
              "extras TEXT, PRIMARY KEY (hasher, image, item))",
}
# What an array may be: numbers and booleans, at most 3 dimensions, at most 64 MiB.
ALLOWED_KINDS = "biuf"
MAX_DIMS = 3
MAX_BYTES = 64 << 20
ERROR_DTYPE = "error"  # an entry that records a failure: data holds the reason


def digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One image's cached result for one hasher and item: its hash row (as the hasher encodes it
    for storage), or the reason it could not be computed, and side outputs (numbers)."""

    row: np.ndarray | None
    error: str = ""
    extras: dict = field(default_factory=dict)


@dataclass(frozen=True)
class FileRecord:
    """What a file decodes to, so a cached image is not decoded again."""

    image: str  # image id
    height: int
    width: int
    notes: tuple[str, ...]


class CacheProblem(Exception):
    """The cache file cannot be used: the reason, for the note. `busy`: only because another process
    holds its lock at this moment (worth another try, never a reason to replace it). `unreadable`:
    the file itself is not a cache this version can read (damaged, another format), the one reason
    to replace a cache of ours; otherwise the place failed (a full disk, an I/O error, no permission)
    and the file, whose hashes a rerun with room to work still uses, is left as it is."""

    busy = False
    unreadable = False


BUSY_TRIES = 20  # tries to open a cache another process holds locked, about 10 s in all
# SQLite's primary result codes for a file that is not a database it can read: the file's fault,
# not the disk's (SQLITE_FULL, SQLITE_IOERR, SQLITE_CANTOPEN, ... say nothing about its content).
_UNREADABLE_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB


class HashCache:
    """get/put by (hasher key, image id, item); a cache at None stores nothing.

    `notes` says what happened to a cache that did not check out, for the run's notes.
    """

    def __init__(self, path: str | None):
        self.path = path
        self.notes: list[str] = []
        self.rejected = 0  # entries that did not check out
        self.read_only = False  # a cache this process may not write: read, never written
        self.unstored = 0  # images whose new results a read-only cache could not keep
        self._db = None
        self._owned = path is not None and os.path.basename(path) == DEFAULT_NAME
        self._checked = False  # whether the file was checked for damage (_damaged_row)
        self._salvaged = False  # whether a damaged file was copied into a fresh one (_salvage): once at most
        self._spoiled: list[int] = []  # rowids of entries that did not check out, deleted with the next write
        # The file records that did not check out, each counted once: a second lookup of one (a copy of the
        # file) comes before or after the first image's new record replaces it, as the workers go.
        self._spoiled_files: set[tuple[str, str]] = set()
        self._hold: int | None = None  # a descriptor of the file, holding a shared lock on it (in_use)
        self._identity: tuple[int, int] | None = None  # the file's (device, inode) as opened (_in_place)
        if path is not None:
            if self._owned:
                self._remove_stale_salvage(path)
            self._open(path, owned=self._owned)
            if self._db is not None:
                self._opened()
        self.opened = self._db is not None  # whether the run had it at its start (it may be dropped later)

    def _opened(self) -> None:
        """Hold the file just opened (in_use) and remember which file it is (_in_place)."""
        self._hold = _hold(self.path)
        try:
            found = os.stat(self.path)
            self._identity = (found.st_dev, found.st_ino)
        except OSError:
            self._identity = None

    def _remove_stale_salvage(self, path: str) -> None:
        """A repair (_salvage) killed midway leaves its fresh file beside the cache, which made every
        later run refuse the output directory as holding a file it did not write. Its entries are
        still in the damaged cache (the fresh file replaces it in one rename), so it goes, with a note."""
        removed = []
        folder = os.path.dirname(os.path.abspath(path))
        for name in stale_salvage_files(path):
            try:
                os.remove(os.path.join(folder, name))
                removed.append(name)
            except OSError:
                pass
        if removed:
            self.notes.append(f"hash cache {path}: removed what a repair of it, stopped before it ended, left beside "
                              f"it ({', '.join(removed[:4])}{', ...' if len(removed) > 4 else ''})")

    # --- opening -------------------------------------------------------------------
    def _open(self, path: str, owned: bool) -> None:
        if os.path.isdir(path):
            self.notes.append(f"hash cache {path} is a directory; running without a cache")
            return
        existed = os.path.lexists(path)
        for attempt in range(BUSY_TRIES):
            try:
                self._db = self._connect(path)
                return
            except CacheProblem as problem:
                reason, unreadable = str(problem), problem.unreadable
                if not problem.busy:
                    break
            # Another run holds the lock (two runs starting on one new cache both switch it to WAL, and
            # SQLite answers one of them "locked" at once, without waiting): a cache in use, not a
            # damaged one to delete under the other run.
            time.sleep(0.05 * (attempt + 1))
        else:
            self.notes.append(f"hash cache {path} is in use by another process ({reason}); it was left as it is "
                              "and this run keeps no cache")
            return
        if not existed:
            # This attempt made the file (SQLite creates it before it writes a page): a full disk left it
            # empty, and the note said it "was left as it is", as if it were the user's. It goes again,
            # unless another run has taken it up meanwhile (in_use) or written a hash to it.
            made = os.path.lexists(path)
            if made and holds_nothing(path) and not in_use(path):
                with contextlib.suppress(OSError):
                    _remove_cache_file(path)
            hint = "" if made else ": is its folder writable?"
            self.notes.append(f"hash cache {path} cannot be made ({reason}{hint}); this run keeps no cache")
            return
        if os.path.isfile(path) and not _writable(path):
            # A shared cache on a read-only mount (or another user's): SQLite cannot open it as above
            # (the write-ahead log needs its -shm file beside it), but its hashes still save the work.
            try:
                self._db = self._connect(path, read_only=True)
                self.read_only = True
                return
            except CacheProblem as problem:
                reason, unreadable = str(problem), problem.unreadable
        if owned and os.path.lexists(path) and not unreadable:
            # A full disk (SQLite cannot make its -shm file beside the cache) or an I/O error: the
            # file may hold hours of hashes, and deleting it here lost them all to a rerun on a
            # disk still full. It stays for the next run; this one keeps no cache.
            self.notes.append(f"hash cache {path} cannot be opened here ({reason}); it was left as it is "
                              "and this run keeps no cache")
            return
        if not owned:
            self.notes.append(f"hash cache {path} is not usable ({reason}); it was left as it is and this run "
                              "keeps no cache")
            return
        try:
            _remove_cache_file(path)
            self._db = self._connect(path)
            self.notes.append(f"hash cache {path} was not usable ({reason}); replaced by a fresh one")
        except (OSError, CacheProblem) as exc:
            self._db = None
            self.notes.append(f"hash cache {path} is not usable ({reason}) and could not be replaced ({exc}); "
                              "this run keeps no cache")

    @staticmethod
    def _connect(path: str, read_only: bool = False) -> sqlite3.Connection:
        """The cache at `path`, made if there is none. Read-only: opened read-only where SQLite can
        keep its shared-memory file beside it (another user's cache, which that user may be writing),
        else as immutable, with no lock and no log (a read-only mount, which nobody writes)."""
        db = None
        try:
            if read_only:
                db = _read_only_connection(path)
            else:
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
                db = sqlite3.connect(path, timeout=60, isolation_level=None)
            # A cache file is data, never code: no SQL functions from its schema (views,
            # triggers), and only the tables written here, exactly as written here.
            db.execute("PRAGMA trusted_schema=OFF")
            objects = _schema_objects(db)
            if not objects and read_only:
                raise CacheProblem("empty")
            if not objects:
                db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
                with db:
                    # Holding the write lock, look again: two runs that start on one new cache at
                    # once must not both make it (the second's CREATE failed, and its "damaged"
                    # cache, the first's, was deleted under it).
                    db.execute("BEGIN IMMEDIATE")
                    objects = _schema_objects(db)
                    if not objects:
                        for sql in SCHEMA.values():
                            db.execute(sql)
                        db.execute("INSERT INTO meta VALUES ('format', ?)", (FORMAT,))
            if objects:
                tables = {name: sql for (kind, name), sql in objects.items() if kind == "table"}
                other = sorted(name for (kind, name) in objects if not (kind == "index" and name.startswith(
                    "sqlite_autoindex_")) and (kind, name) not in {("table", t) for t in SCHEMA})
                if other or tables != SCHEMA:
                    raise CacheProblem("not a hash cache of this version" + (
                        f": it holds {', '.join(other[:3])}" if other else ""))
                row = db.execute("SELECT value FROM meta WHERE key='format'").fetchone()
                if row is None or row[0] != FORMAT:
                    raise CacheProblem("not a hash cache of this version")
                if read_only:
                    return db
                db.execute("PRAGMA journal_mode=WAL")
            # Commits survive the process being killed (the OS keeps the write-ahead log); not
            # syncing each one to the disk keeps a commit per image cheap.
            db.execute("PRAGMA synchronous=NORMAL")
            return db
        except sqlite3.Error as exc:
            if db is not None:
                db.close()
            problem = CacheProblem(exception_text(exc))
            problem.busy = isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)
            problem.unreadable = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF in _UNREADABLE_CODES
            raise problem from None
        except CacheProblem as problem:
            db.close()
            problem.unreadable = True  # raised above for what the file holds: not a cache of this version
            raise

    def _failed(self, exc: sqlite3.Error, doing: str) -> None:
        """A cache that breaks during the run (disk full, damaged pages) is dropped, never fatal; a
        damaged file of ours is repaired first (SQLite's own word for it: a plain DatabaseError)."""
        if type(exc) is sqlite3.DatabaseError and self._repairable:
            self._salvage(exception_text(exc))
            return
        self.notes.append(f"hash cache {self.path}: {doing} failed ({_visible(exception_text(exc))}); the rest of this run "
                          "keeps no cache")
        self.close()

    # --- files ---------------------------------------------------------------------
    def get_file(self, file_digest: str, salt: str) -> FileRecord | None:
        if self._db is None:
            return None
        try:
            row = self._db.execute(f"SELECT {_bytes_of('image')}, {_bytes_of('info')} FROM files "
                                   "WHERE digest=? AND salt=?", (file_digest, salt)).fetchone()
        except sqlite3.Error as exc:
            self._failed(exc, "reading")
            return None
        if row is None:
            return None
        record = _file_record(*map(_text, row))
        if record is None and (file_digest, salt) not in self._spoiled_files:
            self._spoiled_files.add((file_digest, salt))
            self.rejected += 1
        return record

    # --- hashes --------------------------------------------------------------------
    def get_image(self, hasher: str, image: str, form: tuple | None = None) -> dict[str, Entry]:
        """Every entry of one image for one hasher, by item; entries that do not check out are left out.

        `form`: the hasher's (dtype, shape) of a row (Hasher.row_form), None where not known: an entry
        of another form checks out no more than a damaged one (its rows would not fit the others')."""
        if self._db is None:
            return {}
        try:
            rows = self._db.execute(f"SELECT rowid, {_bytes_of('item')}, {_bytes_of('dtype')}, {_bytes_of('shape')}, data, "
                                    f"{_bytes_of('extras')} FROM hashes WHERE hasher=? AND image=?",
                                    (hasher, image)).fetchall()
        except sqlite3.Error as exc:
            self._failed(exc, "reading")
            return {}
        found, spoiled = {}, []
        for rowid, item, dtype, shape, data, extras in rows:
            if None in (_text(item), _text(dtype)) and not self._checked:  # bytes harness never writes
                return self._damaged_row(hasher, image, form)  # (which reads the rows again, counting them then)
            item = _text(item)
            entry = None if item is None else _entry(_text(dtype), _text(shape), data, _text(extras))
            if entry is None or not fits(entry.row, form):
                spoiled.append(rowid)
            else:
                found[item] = entry
        # Each spoiled entry counted once: a copy of the image looked up before the next write deletes
        # it (with workers, while the first is being hashed) finds it again, one looked up after does not.
        spoiled = [rowid for rowid in spoiled if rowid not in self._spoiled]
        self.rejected += len(spoiled)
        self._spoiled += spoiled
        return found

    def _damaged_row(self, hasher: str, image: str, form: tuple | None) -> dict[str, Entry]:
        """A row whose text is not UTF-8 (never written so) is a sign of a damaged file: SQLite
        checks it once. Damaged pages (an index that no longer matches its table, which no write
        repairs) are left behind by copying every entry that reads into a fresh file; where only
        rows are spoiled, they are recomputed like any entry that does not check out."""
        self._checked = True
        try:
            # integrity_check, not quick_check: an index that no longer matches its table makes
            # every later write of that entry fail as "malformed"
            problems = [row[0] for row in self._db.execute("PRAGMA integrity_check(3)")]
        except sqlite3.Error as exc:
            problems = [exception_text(exc)]
        if problems != ["ok"] and self._repairable:
            self._salvage("; ".join(problems))
        return self.get_image(hasher, image, form)

    @property
    def _repairable(self) -> bool:
        """A damaged file this run may replace: its own (at the default place), writable, not yet repaired."""
        return self._owned and not self.read_only and not self._salvaged

    def _salvage(self, damage: str) -> None:
        """Replace the damaged cache file by a fresh one holding every entry of it that reads and
        checks out; the rest is computed again. Where that fails, the run keeps no cache."""
        fresh = f"{self.path}{SALVAGE_MARK}{os.getpid()}"
        kept = 0
        self._salvaged = True
        guard = None  # an exclusive flock on the fresh file while it is made: another run's
        try:  # stale_salvage_files leaves it alone, even where it cannot see this process id
            _remove_cache_file(fresh)
            target = self._connect(fresh)
            guard = _hold(fresh, exclusive=True)
            try:
                kept = _copy_entries(self._db, target)
            finally:
                target.close()
            self._close()
            # The damaged file is replaced in one rename, never deleted first: a run killed at any moment
            # leaves either it or the fresh file at the cache's place, and a fresh file left beside it
            # holds nothing the damaged file does not. Its logs go first: SQLite would apply them to the new file.
            _remove_cache_file(self.path, logs_only=True)
            os.replace(fresh, self.path)
            if guard is not None:  # it would keep the shared lock _opened takes on the file from it
                os.close(guard)
                guard = None
            self._db = self._connect(self.path)
            self._opened()
        except (OSError, sqlite3.Error, CacheProblem) as exc:
            self._close()
            try:  # a fresh, empty one, rather than the damaged file failing every later run too
                _remove_cache_file(self.path)
                self._db = self._connect(self.path)
                self._opened()
                outcome = "replaced by a fresh one"
            except (OSError, CacheProblem):
                outcome = "the rest of this run keeps no cache"
            self.notes.append(f"hash cache {self.path}: damaged ({_visible(damage)}) and could not be repaired "
                              f"({exception_text(exc)}); {outcome}")
            return
        finally:
            if guard is not None:
                os.close(guard)
            _remove_cache_file(fresh)
        self._spoiled = []
        self.notes.append(f"hash cache {self.path}: damaged ({_visible(damage)}); its {kept} readable entries "
                          "were kept in a fresh file, the rest are computed again")

    def put_image(self, file: tuple[str, str, FileRecord] | None, entries: dict[str, dict[str, Entry]],
                  image: str) -> None:
        """Store one image's new results in one transaction: all of them or none.

        `file`: (digest, salt, record) when the file was decoded; `entries`: hasher key -> item -> Entry."""
        if self._db is None or (file is None and not any(entries.values())):
            return
        if self.read_only:
            self.unstored += 1
            return
        rows = [(hasher, image, item, *stored_form(entry)) for hasher, items in entries.items()
                for item, entry in items.items()]
        try:
            with self._db:
                self._db.execute("BEGIN")
                if file is not None:
                    file_digest, salt, record = file
                    info = json.dumps({"height": record.height, "width": record.width, "notes": list(record.notes)})
                    self._db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)",
                                     (file_digest, salt, record.image, info))
                # An entry that did not check out goes, even where its key was spoiled (a new row would not replace it).
                self._db.executemany("DELETE FROM hashes WHERE rowid=?", [(rowid,) for rowid in self._spoiled])
                self._db.executemany("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            self._spoiled = []
        except sqlite3.Error as exc:
            self._failed(exc, "writing")

    def close(self) -> None:
        if self._db is not None and not self._in_place():
            self.notes.append(f"hash cache {self.path} was deleted or replaced by another process during the run: "
                              "what this run stored in it after that was not kept (a rerun computes it again)")
        self._close()

    def _close(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None
        if self._hold is not None:
            os.close(self._hold)  # and with it the lock
            self._hold = None

    def _in_place(self) -> bool:
        """Whether the cache's path still names the file this run opened. SQLite goes on writing to a
        file deleted under it (`rm` of the cache while a run works), without an error: the run's hashes
        went with the file, unsaid. Checked once, as the cache is closed; True where it cannot be told,
        and for a cache only read."""
        if self._identity is None or self.read_only:
            return True
        try:
            found = os.stat(self.path)
        except FileNotFoundError:
            return False
        except OSError:
            return True
        return (found.st_dev, found.st_ino) == self._identity

    @property
    def active(self) -> bool:
        return self._db is not None

    def summary_notes(self) -> list[str]:
        """The notes for the run: what happened to the cache, and entries that were recomputed."""
        rejected = ([f"hash cache {self.path}: {self.rejected} entries did not check out and were recomputed"]
                    if self.rejected else [])
        unstored = []
        if self.read_only:
            unstored = [f"hash cache {self.path} is read-only here: it was read, and " + (
                f"the new results of {self.unstored} image{'s' if self.unstored != 1 else ''} were not stored in it"
                if self.unstored else "held every hash this run needed")]
        return self.notes + rejected + unstored


# The counts of run.json's `cache` record, in its order (CacheUse; read by api.check_run_record and
# markdown.cache_line).
CACHE_COUNTS = ("images_from_cache", "images_computed", "hashes_from_cache", "hashes_computed", "entries_rejected")


class CacheUse:
    """What a run read from the hash cache and what it computed, for run.json's `cache` record.

    Counted once per distinct image (by its id, at its first place in the run's order; a file
    that cannot be read is not counted): a later copy of an image (the same file under two names,
    or the same pixels in two files) is looked up while the first is still being hashed when
    workers or a cluster do the work, and after its hashes were stored when this process does, so
    counting every copy would make the counts follow --workers. An image's first lookup sees the
    cache as the run found it (the images before it in the run are other images, under other
    keys), so the counts follow the cache's state alone. `entries_rejected` counts the entries of those
    lookups that did not check out (and were computed again)."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.images_from_cache = self.images_computed = 0
        self.hashes_from_cache = self.hashes_computed = 0
        self.entries_rejected = 0

    def add(self, image: str, cached: dict, computed: dict, rejected: int) -> None:
        """One image's part: `cached` and `computed` map hasher id -> item -> Entry (the entries the
        cache gave, and those computed in this run); `rejected`, entries of its lookup that did not
        check out. An image with no hash at all (no hasher available) is in neither image count."""
        if image in self.seen:
            return
        self.seen.add(image)
        from_cache = sum(len(items) for items in cached.values())
        computed_here = sum(len(items) for items in computed.values())
        self.hashes_from_cache += from_cache
        self.hashes_computed += computed_here
        self.entries_rejected += rejected
        if computed_here:
            self.images_computed += 1
        elif from_cache:
            self.images_from_cache += 1

    def record(self, cache: HashCache) -> dict:
        """run.json's `cache`: the cache as given (None: no cache), its absolute path, whether it
        could be opened and only read, and the counts."""
        path = cache.path
        return {"path": path, "absolute_path": None if path is None else os.path.abspath(path),
                "opened": cache.opened, "read_only": cache.read_only,
                **{key: getattr(self, key) for key in CACHE_COUNTS}}


def _read_only_connection(path: str) -> sqlite3.Connection:
    uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro"
    if os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
        db = None
        try:
            db = sqlite3.connect(uri, uri=True, timeout=60, isolation_level=None)
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the -shm file must be at hand
            return db
        except sqlite3.Error:
            if db is not None:
                db.close()
    return sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None)


def _schema_objects(db: sqlite3.Connection) -> dict:
    """(kind, name) -> SQL of everything in a cache file's schema."""
    return {(kind, name): sql for kind, name, sql in db.execute("SELECT type, name, sql FROM sqlite_master")}


def _writable(path: str) -> bool:
    """Whether this process may write the cache file and make its log files beside it (False on a
    read-only file system, for root too)."""
    return os.access(path, os.W_OK) and os.access(os.path.dirname(os.path.abspath(path)), os.W_OK)


# A run that stops removes a cache it created and left empty: not while another run uses it (two
# runs given one new --cache, the first stopped by Ctrl-C, deleted the file under the second, which
# then kept its hashes in a file that no longer had a name). Every process that opens a cache holds
# a shared flock on the file, which SQLite's own locks (fcntl's, on byte ranges) do not touch.
def _hold(path: str, exclusive: bool = False) -> int | None:
    """A descriptor of `path` holding a shared (or an exclusive) flock on it; None where none can be
    had now: another process holds a lock that conflicts, or there is no file or no flock here."""
    try:
        import fcntl

        held = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (ImportError, OSError):
        return None
    try:
        fcntl.flock(held, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        return held
    except OSError:
        os.close(held)
        return None


def in_use(path: str) -> bool:
    """Whether a process (this one too) has the hash cache at `path` open (see _hold): no exclusive
    lock can be had. Where that cannot be told, in use: a cache is then kept, never deleted."""
    probe = _hold(path, exclusive=True)
    if probe is None:
        return True
    os.close(probe)  # and with it the probe's lock
    return False


def holds_nothing(path: str) -> bool:
    """Whether `path` is a hash cache with no file and no hash in it, as a run that stopped before
    its first image leaves it (or an empty file or database, where a full disk stopped it before its
    tables); False for anything else, or when that cannot be told."""
    try:
        if os.path.getsize(path) == 0:
            return True
        wal = path + "-wal"
        settled = not os.path.lexists(wal) or os.path.getsize(wal) == 0
    except OSError:
        return False
    uri = f"file:{urllib.parse.quote(os.path.abspath(path))}"
    # Read as usual, else, where the write-ahead log is empty (the file alone holds everything), as
    # immutable: on a full disk SQLite cannot grow the -shm file a usual read needs ("disk I/O error").
    for where in [uri] + ([uri + "?immutable=1"] if settled else []):
        db = None
        try:
            db = sqlite3.connect(where, uri=True, timeout=5, isolation_level=None)
            db.execute("PRAGMA trusted_schema=OFF")
            if not _schema_objects(db):  # a database (a file that is none fails to read here) with no table yet
                return True
            return not any(db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() for table in ("files", "hashes"))
        except sqlite3.Error:
            continue
        finally:
            if db is not None:
                db.close()
    return False


# --- entries as stored ---------------------------------------------------------------

def _bytes_of(column: str) -> str:
    """A TEXT column read as its bytes: SQLite hands text over as it is stored, and Python's
    decoding of a damaged value would fail the whole query (and with it the cache) instead of
    the one entry (_text)."""
    return f"CAST({column} AS BLOB)"


def _text(value: Any) -> str | None:
    """A TEXT column's bytes (_bytes_of) as text, or None when they are not UTF-8: an entry that
    does not check out. NULL stays None, and a number or blob stored there is rejected later."""
    if not isinstance(value, bytes):
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def stored_form(entry: Entry) -> tuple[str, str, bytes, str]:
    extras = json.dumps({k: _plain(v) for k, v in entry.extras.items()}, sort_keys=True, allow_nan=False)
    if entry.row is None:
        return ERROR_DTYPE, "[]", entry.error.encode("utf-8", "backslashreplace"), extras
    row = np.ascontiguousarray(entry.row)
    return row.dtype.str, json.dumps(list(row.shape)), row.tobytes(), extras


def _plain(value):
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"extras hold numbers only, not {value!r}")
    return value


def _entry(dtype: Any, shape: Any, data: Any, extras: Any) -> Entry | None:
    """An entry as read from the file, or None when it does not check out."""
    try:
        if not isinstance(data, bytes) or not isinstance(dtype, str) or not isinstance(extras, str):
            return None
        loaded = json.loads(extras)
        if not isinstance(loaded, dict) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in loaded.values()):
            return None
        if dtype == ERROR_DTYPE:
            return Entry(None, data.decode("utf-8", "replace")[:2000] or "failed", loaded)
        kind = np.dtype(dtype)
        dims = json.loads(shape) if isinstance(shape, str) else None
        if (kind.kind not in ALLOWED_KINDS or kind.itemsize > 8 or not isinstance(dims, list)
                or len(dims) > MAX_DIMS or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d
                                                   for d in dims)
                or math.prod(dims) * kind.itemsize != len(data) or len(data) > MAX_BYTES):
            return None
        return Entry(np.frombuffer(data, dtype=kind).reshape(dims).copy(), "", loaded)
    except (TypeError, ValueError, RecursionError):  # a dtype numpy does not know, JSON that is not JSON or
        return None  # is nested too deep ([[[[...)


def fits(row: np.ndarray | None, form: tuple | None) -> bool:
    """Whether a row has the form (dtype, shape; None: any length there) its hasher gives, as
    Hasher.row_form declares it; a failure (no row) or a form not known (None) always does."""
    if row is None or form is None:
        return True
    dtype, shape = form
    return (row.dtype.str == dtype and row.ndim == len(shape)
            and all(length is None or length == got for length, got in zip(shape, row.shape)))


def _file_record(image: Any, info: Any) -> FileRecord | None:
    try:
        loaded = json.loads(info)
        height, width, notes = loaded["height"], loaded["width"], loaded["notes"]
        if (isinstance(image, str) and len(image) == 12 and all(c in "0123456789abcdef" for c in image)
                and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (height, width))
                and isinstance(notes, list) and all(isinstance(n, str) for n in notes)):
            return FileRecord(image, height, width, tuple(notes))
    except (TypeError, ValueError, KeyError, RecursionError):  # RecursionError: JSON nested too deep
        pass
    return None


def _remove_cache_file(path: str, logs_only: bool = False) -> None:
    """A cache file and SQLite's files beside it (or only those: `logs_only`)."""
    for name in ([] if logs_only else [path]) + [path + "-wal", path + "-shm", path + "-journal"]:
        if os.path.lexists(name):
            os.remove(name)


# A repair's fresh file, NAME.salvage-PID beside the cache NAME, with SQLite's files beside it.
SALVAGE_MARK = ".salvage-"
_SIDE_FILES = ("", "-wal", "-shm", "-journal")


def salvage_pid(cache_name: str, name: str) -> int | None:
    """The process id in `name` where it is one of the files of a repair (_salvage) of the cache file
    named `cache_name`, in the same folder; None for any other name."""
    rest = name[len(cache_name + SALVAGE_MARK):] if name.startswith(cache_name + SALVAGE_MARK) else ""
    for side in _SIDE_FILES[1:]:
        if rest.endswith(side):
            rest = rest[:-len(side)]
            break
    return int(rest) if rest.isascii() and rest.isdigit() and not rest.startswith("0") and len(rest) <= 10 else None


def stale_salvage_files(path: str) -> list[str]:
    """The names, in its folder, of the files that a repair of the cache at `path` left when its process
    was killed: its process is gone, and nothing holds the lock a repair holds on its fresh file (a
    process of another PID namespace sharing the folder). A live repair's files are not listed."""
    folder, base = os.path.split(os.path.abspath(path))
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    by_pid: dict[int, list[str]] = {}
    for name in names:
        pid = salvage_pid(base, name)
        # Regular files only: a repair makes nothing else (and a FIFO would block in_use's open).
        if pid is not None and _regular_file(os.path.join(folder, name)):
            by_pid.setdefault(pid, []).append(name)
    stale = []
    for pid, found in by_pid.items():
        fresh = os.path.join(folder, f"{base}{SALVAGE_MARK}{pid}")
        if not _process_alive(pid) and not (_regular_file(fresh) and in_use(fresh)):
            stale += found
    return sorted(stale)


def _regular_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _process_alive(pid: int) -> bool:
    """Whether a process of this id runs (this one included); True where that cannot be told (off
    POSIX, where os.kill(pid, 0) is no probe)."""
    if pid == os.getpid() or os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: another user's process
        return True
    return True


SALVAGE_ROWS = 8  # rows read at a time in a damaged file (a page holds 15 to 25 entries)


def _copy_entries(source: sqlite3.Connection, target: sqlite3.Connection) -> int:
    """Copy every file record and hash entry of `source` that reads and checks out into `target`;
    how many hash entries were kept."""
    kept = 0
    with target:
        target.execute("BEGIN")
        for digest_, salt, image, info in _readable_rows(source, "files", ["digest", "salt", "image", "info"]):
            fields = [_text(value) for value in (digest_, salt, image, info)]
            if None not in fields and _file_record(*fields[2:]) is not None:
                target.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)", fields)
        for hasher, image, item, dtype, shape, data, extras in _readable_rows(
                source, "hashes", ["hasher", "image", "item", "dtype", "shape", "data", "extras"]):
            key = [_text(value) for value in (hasher, image, item)]
            text = [_text(value) for value in (dtype, shape, extras)]
            if None not in key and _entry(text[0], text[1], data, text[2]) is not None:
                target.execute("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?, ?, ?, ?)", (*key, text[0], text[1],
                                                                                             data, text[2]))
                kept += 1
    return kept


def _readable_rows(source: sqlite3.Connection, table: str, columns: list[str]):
    """The rows of `table` that can be read, a few at a time in rowid order, through the table itself
    (a damaged index is never used): where a read fails on a damaged page, the next one starts past
    it, twice as far each time it fails again, where one scan of the table would stop at the first
    damage. So a damaged page costs about its own rows, and the reads are bounded by the rows
    there are plus 63 for each damaged stretch, however far apart a crafted file's rowids are.
    Text columns come as their bytes (_bytes_of); `data` as it is."""
    listed = ", ".join(column if column == "data" else _bytes_of(column) for column in columns)
    after, stride = 0, SALVAGE_ROWS
    while after < 1 << 63:
        try:
            rows = source.execute(f"SELECT rowid, {listed} FROM {table} NOT INDEXED WHERE rowid > ? ORDER BY rowid "
                                  "LIMIT ?", (after, SALVAGE_ROWS)).fetchall()
        except sqlite3.DatabaseError:
            after, stride = after + stride, stride * 2
            continue
        if not rows:
            return
        after, stride = rows[-1][0], SALVAGE_ROWS
        for row in rows:
            yield row[1:]


def _visible(text: str) -> str:
    """Text from a damaged file as a note may show it (undecodable and invisible characters escaped)."""
    from harness.markdown import visible

    return visible(text)
