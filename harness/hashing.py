"""Hashing batches of images safely and through the cache.

`hash_safely` turns one bad image into a recorded failure instead of a lost batch;
`hash_with_cache` computes only what the cache lacks. Both return `Hashed`: one
hasher's hashes of a batch, with the failures by position.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from harness.cache import HashCache
from harness.errors import HashError


@dataclass
class Hashed:
    """One hasher's hashes of a batch of images: `array` holds the rows of the images that
    hashed, `rows[k]` is image k's row in it (-1 where hashing failed, reason in `errors[k]`)."""

    array: np.ndarray | None
    rows: np.ndarray
    errors: dict[int, str]
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def take(self, indices) -> "Hashed":
        """The same images' hashes, as a batch of their own (for caching one image)."""
        indices = np.asarray(indices, dtype=np.int64)
        rows = self.rows[indices]
        kept = rows >= 0
        array = self.array[rows[kept]] if kept.any() else None
        new_rows = np.full(len(indices), -1)
        new_rows[kept] = np.arange(int(kept.sum()))
        return Hashed(array, new_rows, {k: self.errors[i] for k, i in enumerate(indices) if i in self.errors},
                      {key: values[indices] for key, values in self.extras.items()})

    @staticmethod
    def join(parts: list["Hashed"]) -> "Hashed":
        arrays = [p.array for p in parts if p.array is not None]
        rows, errors, offset, start = [], {}, 0, 0
        for part in parts:
            rows.append(np.where(part.rows >= 0, part.rows + offset, -1))
            errors.update({start + k: reason for k, reason in part.errors.items()})
            offset += 0 if part.array is None else len(part.array)
            start += len(part.rows)
        keys = parts[0].extras.keys() if parts else []
        return Hashed(np.concatenate(arrays) if arrays else None,
                      np.concatenate(rows) if rows else np.zeros(0, np.int64), errors,
                      {key: np.concatenate([p.extras[key] for p in parts]) for key in keys})


def hash_safely(hasher, images: list[np.ndarray]) -> Hashed:
    """Hash a batch; when the batch fails, hash image by image so one bad image costs only itself."""
    try:
        array = hasher.hash_images(images)
        return Hashed(array, np.arange(len(images)), {}, hasher.checked_extras(images))
    except HashError:
        if len(images) == 1:
            raise
    parts = []
    for image in images:
        try:
            parts.append(hash_safely(hasher, [image]))
        except HashError as exc:
            parts.append(Hashed(None, np.array([-1]), {0: str(exc)}))
    joined = Hashed.join(parts)
    if any(not p.extras for p in parts):  # extras only where every image hashed
        joined.extras = {}
    return joined


def hash_with_cache(hasher, key: str, cache: HashCache, images: list[np.ndarray],
                    names: list[tuple[str, str]]) -> tuple[Hashed, list[tuple[str, str, Hashed]]]:
    """Hashes of `images`, image k known to the cache as names[k] = (image id, item).

    Only what the cache lacks is computed, or the whole batch when the hasher's results
    depend on the batch (batch_invariant False), so they match an uncached run bit for bit.
    Returns the hashes and the new entries for the caller to store (failures are not stored)."""
    found = [cache.get(key, image_id, item) for image_id, item in names]
    missing = [k for k, entry in enumerate(found) if entry is None]
    if missing and not hasher.batch_invariant:
        missing = list(range(len(images)))
    new = []
    if missing:
        fresh = hash_safely(hasher, [images[k] for k in missing])
        for j, k in enumerate(missing):
            found[k] = fresh.take([j])
            if j not in fresh.errors:
                new.append((*names[k], found[k]))
    return Hashed.join(found), new


# --- set-up ------------------------------------------------------------------
