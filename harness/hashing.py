"""Hashing batches of images safely and through the cache.

`hash_safely` turns one bad image into a recorded failure instead of a lost batch, and
returns `Hashed`: one hasher's hashes of a batch, with the failures by position.
`to_entries` / `from_entries` convert them to and from the cache's entries (one per
image: plain arrays or a reason, never pickles); `row_form` is the form the cache's
lookup holds a hasher's entries to.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from harness.cache import Entry
from harness.errors import HashError
from harness.hashers.base import rounding_bound


@dataclass
class Hashed:
    """One hasher's hashes of a batch of images: `array` holds the rows of the images that
    hashed, `rows[k]` is image k's row in it (-1 where hashing failed, reason in `errors[k]`)."""

    array: np.ndarray | None
    rows: np.ndarray
    errors: dict[int, str]
    extras: dict[str, np.ndarray] = field(default_factory=dict)

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
    """Hash a batch; when the batch fails, hash image by image so one bad image costs only itself
    (a batch of one included: its failure is that image's result, never the run's)."""
    try:
        array = hasher.hash_images(images)
        return Hashed(array, np.arange(len(images)), {}, hasher.checked_extras(images))
    except HashError as exc:
        if len(images) == 1:
            return Hashed(None, np.array([-1]), {0: str(exc)})
    parts = [hash_safely(hasher, [image]) for image in images]
    joined = Hashed.join(parts)
    if any(not p.extras for p in parts):  # extras only where every image hashed
        joined.extras = {}
    return joined


def to_entries(hasher, hashed: Hashed) -> list[Entry]:
    """Each image's result as a cache entry: its row as the hasher encodes it, or why it failed."""
    entries = []
    for k, row in enumerate(hashed.rows):
        extras = {key: values[k] for key, values in hashed.extras.items()}
        if row < 0:
            entries.append(Entry(None, hashed.errors.get(k, "no hash"), extras))
        else:
            entries.append(Entry(hasher.encode_row(hashed.array[row]), "", extras))
    return entries


def row_form(hasher) -> tuple[str, tuple[int | None, ...]] | None:
    """The hasher's form of a stored row (Hasher.row_form) as the cache's lookup takes it, or None
    where it declares none or none that reads (a plugin's: no reason to fail a run, only to check
    its entries less)."""
    try:
        dtype, shape = hasher.row_form()
        return np.dtype(dtype).str, tuple(None if length is None else int(length) for length in shape)
    except Exception:
        return None


def made_up_image(other: bool = False) -> np.ndarray:
    """A small image to try a hasher on before any work: a gradient and a square, 64x64 BGR; with
    `other`, a clearly different one (the same mirrored and inverted)."""
    lines = np.add.outer(np.arange(64), np.arange(64)).astype(np.uint8) * 2
    image = np.stack([lines, lines[::-1], 255 - lines], axis=-1)
    image[16:40, 20:44] = (30, 200, 90)
    return np.ascontiguousarray(255 - image[:, ::-1]) if other else image


def probe_form(hasher) -> tuple[str, tuple[int, ...]] | None:
    """The form of a stored row of `hasher`, from its hash of a small made-up image, for a hasher that
    declares none; None where that image gives it no hash."""
    try:
        row = np.asarray(hasher.encode_row(hasher.hash_images([made_up_image()])[0]))
    except Exception:  # a plugin's failure on it (a HashError, or anything its encode_row raises)
        return None
    return row.dtype.str, row.shape


def self_distance_problem(hasher) -> str | None:
    """Why `hasher`'s distance is no distance, from its hashes of two made-up images a and b: a hash is
    at 0 from itself (past float rounding, rounding_bound), no farther from itself than from another
    image's, and, unless the hasher declares `symmetric = False`, d(a, b) == d(b, a) within the same
    rounding. A similarity returned where a distance goes (highest for the closest) turns every
    threshold and rate upside down, and the leak audit counts a file given twice as a copy of itself;
    a one-sided distance (the sum of max(a - b, 0)) puts a copy at 0 from the image it was compared
    with one way and far from it the other, so which pairs match would follow which side harness
    happened to pass first. None where all hold, or where the images give the hasher no hashes or
    distances (the run records those failures)."""
    try:
        hashes = hasher.hash_images([made_up_image(), made_up_image(other=True)])
        itself, other, back = (float(d) for d in hasher.checked_distance(hashes[[0, 0, 1]], hashes[[0, 1, 0]]))
    except Exception:
        return None
    bound = rounding_bound(hasher.distance_max)
    if itself > other:
        return (f"distance between a hash and itself ({itself:.6g}) is larger than between two different "
                f"images ({other:.6g}): a distance is lowest for the closest images; return one, not a similarity")
    if itself > bound:
        return f"distance between a hash and itself is {itself:.6g}, not 0"
    if hasher.symmetric and abs(other - back) > bound:
        return (f"distance is not symmetric: d(a, b) is {other:.6g} and d(b, a) {back:.6g} for two made-up images "
                f"a and b; make it the same both ways, or declare symmetric = False if it is one-sided by design "
                f"(harness then passes the original image first)")
    return None


def from_entries(hasher, entries: list[Entry]) -> Hashed:
    """Cache entries (one per image) back as one batch's Hashed. Rows that do not decode together
    raise ValueError: the caller records the items as failures. (The cache's lookup has left out
    entries of another form than the hasher's, `row_form`, and they were computed again; this
    remains for the forms a hasher does not declare.)"""
    ok = [k for k, entry in enumerate(entries) if entry.row is not None]
    rows = np.full(len(entries), -1)
    rows[ok] = np.arange(len(ok))
    array = hasher.decode_rows([entries[k].row for k in ok]) if ok else None
    keys = set.intersection(*(set(e.extras) for e in entries)) if entries else set()
    extras = {key: np.array([e.extras[key] for e in entries]) for key in sorted(keys)}
    return Hashed(array, rows, {k: e.error for k, e in enumerate(entries) if e.row is None}, extras)
