"""A persistent cache of computed hashes, so re-runs and resumed runs redo only new work.

Keys: the hasher's spec (name and parameters) together with the versions of every
library that can change a result, the image's content id, and the transform
chains. An entry is written in its own SQLite transaction as soon as it is
computed, so a run killed at any moment (even SIGKILL) loses at most the entry in
flight, and the next run picks up the rest. Values are pickled NumPy arrays: the
cache is a local working file, not something to accept from others.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sqlite3
from typing import Any

SCHEMA = "CREATE TABLE IF NOT EXISTS hashes (hasher TEXT, image TEXT, item TEXT, value BLOB, " \
         "PRIMARY KEY (hasher, image, item))"


def digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class HashCache:
    """get/put by (hasher key, image id, item key); a cache at None stores nothing."""

    def __init__(self, path: str | None):
        self.path = path
        self._db = None
        if path is not None:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._db = sqlite3.connect(path, timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
            self._db.execute(SCHEMA)
            self._db.commit()

    def get(self, hasher: str, image: str, item: str) -> Any | None:
        if self._db is None:
            return None
        row = self._db.execute("SELECT value FROM hashes WHERE hasher=? AND image=? AND item=?",
                               (hasher, image, item)).fetchone()
        return pickle.loads(row[0]) if row else None

    def put_many(self, hasher: str, image: str, values: dict[str, Any]) -> None:
        """Store several entries in one transaction: all of them or none."""
        if self._db is None or not values:
            return
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?)",
                                 [(hasher, image, item, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
                                  for item, value in values.items()])

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
