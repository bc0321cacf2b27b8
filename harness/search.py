"""Exact search over sets of hashes: every pair within a distance threshold, the
exact histogram of all distances, and the groups that the close pairs join.

This is the core of the leak audit (copies of images between data-set splits):
nothing here is approximate. A pair is reported when its distance is <= the
threshold, with the distance the hasher's own `distance()` gives for it, and
pairs come sorted by query row `i`, then database row `j`.

- Hamming hashes (bit-packed uint8 rows, `BitHasher`): brute force, every pair
  compared, so its cost does not depend on how the hashes are spread. faiss's
  `IndexBinaryFlat.range_search` does it in C++ on all cores; a numpy kernel
  (popcount of XOR in cache-sized tiles, on threads) does it where faiss is not
  installed. faiss's exact pruning index, `IndexBinaryMultiHash` (4 tables of 16
  bits, 2 flips: exact up to 8 bits), took 4 times the flat scan's CPU time on 1M
  random 64-bit hashes, and clustered hashes crowd its buckets further.
- The histogram of all Hamming distances: the same tiles, counted by faiss's
  `ivec_hist` (or np.bincount without faiss).
- Embeddings compared by 64 * (1 - cosine): blocked float32 matrix products find
  candidates with a proven rounding margin; the hasher's own float64 `distance()`
  then decides.
- Any other hasher: its `cross_distance()` in row blocks, candidates within a
  rounding margin, decided by its `distance()` (slow but exact).

Within one set, pairs are i < j and a hasher's distance is taken as distance(x_i, x_j)
(CropResistantHash's is asymmetric: its first argument is the reference).

A search given a `limit` raises `TooManyPairs` as soon as it holds more pairs than that,
block by block: a threshold that flags most pairs of a large set (near-identical images,
a loose threshold) would otherwise gather them all, gigabytes, before anyone could refuse.
"""

from __future__ import annotations

import functools
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import numpy as np

from harness.hashers.base import BitHasher, Hasher

Engine = Literal["auto", "faiss", "numpy"]

# Pairs compared per numpy tile: the tile's XOR (8 bytes a pair) stays in a core's
# 1 MB L2 cache, and each ufunc call does enough work to hide Python's overhead.
TILE_PAIRS = 1 << 16
TILE_ROWS = 8
# Distances gathered before they are counted: each count folds 65,536 bins (two
# distances a key, see _Counter), so a batch holds many more distances than that.
HISTOGRAM_BATCH = 1 << 21
# Query rows per faiss range search: bounds the result buffers of one call, and is
# large enough that faiss's OpenMP loop over queries keeps every core busy.
FAISS_QUERY_BLOCK = 16_384
# Distances per block of an embedding matrix product or a `cross_distance` call
# (4 or 8 bytes each): 16-32 MB, however many rows the database has.
EMBEDDING_BLOCK = 1 << 22
# How far a hasher's `cross_distance` may stray from its `distance` for the same pair,
# relative to max(1, threshold): they compute the same formula in a different order
# (matrix product against row-wise sums), so they differ by a few units in the last
# place (1e-16 relative); candidates within this margin are decided by `distance`.
CROSS_DISTANCE_MARGIN = 1e-9


class TooManyPairs(Exception):
    """A search held more pairs than its `limit` and stopped: `count`, the pairs it held then (a
    lower bound of those there are)."""

    def __init__(self, count: int):
        super().__init__(count)
        self.count = count


@dataclass(frozen=True, eq=False)
class Pairs:
    """Pairs found by a search, sorted by `i`, then `j`: `i` and `j` are int64 row
    numbers (query and database rows; within one set, i < j), `distance` float64."""

    i: np.ndarray
    j: np.ndarray
    distance: np.ndarray

    def __len__(self) -> int:
        return len(self.i)


def hamming_pairs(queries: np.ndarray, database: np.ndarray, threshold: float, *,
                  engine: Engine = "auto", workers: int | None = None, limit: int | None = None) -> Pairs:
    """Every pair (i, j) with Hamming distance(queries[i], database[j]) <= threshold.

    Both are bit-packed uint8 arrays (n, nbytes) of the same width; padding bits
    (42-bit hashes in 6 bytes) must be zero in both, as every hasher here leaves them.
    `engine`: "faiss", "numpy", or "auto" (faiss where it is installed). `workers`:
    threads of the numpy engine (default: the cores this process may use); faiss uses
    its OpenMP threads. `limit`: raise TooManyPairs once more pairs than that are found.
    """
    queries, database = _check_bits(queries, "queries"), _check_bits(database, "database")
    _same_width(queries, database)
    radius, limit = _hamming_radius(threshold, queries.shape[1]), _checked_limit(limit)
    if _use_faiss(engine):
        return _faiss_pairs(queries, database, radius, within=False, limit=limit)
    return _numpy_pairs(queries, database, radius, within=False, workers=workers, limit=limit)


def hamming_pairs_within(hashes: np.ndarray, threshold: float, *, engine: Engine = "auto",
                         workers: int | None = None, limit: int | None = None) -> Pairs:
    """Every pair i < j of one set with Hamming distance <= threshold; as `hamming_pairs`."""
    hashes = _check_bits(hashes, "hashes")
    radius, limit = _hamming_radius(threshold, hashes.shape[1]), _checked_limit(limit)
    if _use_faiss(engine):
        return _faiss_pairs(hashes, hashes, radius, within=True, limit=limit)
    return _numpy_pairs(hashes, hashes, radius, within=True, workers=workers, limit=limit)


def hamming_histogram(queries: np.ndarray, database: np.ndarray, nbits: int | None = None, *,
                      engine: Engine = "auto", workers: int | None = None) -> np.ndarray:
    """The number of pairs (i, j) at each Hamming distance 0..nbits: int64 (nbits + 1,),
    summing to len(queries) * len(database).

    `nbits` defaults to 8 * nbytes; give the hash's own bit count (42 for 6-byte rows)
    for a histogram of that length. ValueError if a distance exceeds it (padding bits set).
    numpy computes the distances (threads: `workers`); `engine` says what counts them:
    faiss's `ivec_hist` ("faiss", and "auto" where faiss is installed) or np.bincount.
    """
    queries, database = _check_bits(queries, "queries"), _check_bits(database, "database")
    _same_width(queries, database)
    nbits = _check_nbits(nbits, queries.shape[1])
    return _numpy_histogram(queries, database, nbits, within=False, engine=engine, workers=workers)


def hamming_histogram_within(hashes: np.ndarray, nbits: int | None = None, *,
                             engine: Engine = "auto", workers: int | None = None) -> np.ndarray:
    """The number of pairs i < j of one set at each Hamming distance 0..nbits, summing to
    n (n - 1) / 2; as `hamming_histogram`."""
    hashes = _check_bits(hashes, "hashes")
    nbits = _check_nbits(nbits, hashes.shape[1])
    return _numpy_histogram(hashes, hashes, nbits, within=True, engine=engine, workers=workers)


def hasher_pairs(hasher: Hasher, queries: np.ndarray, database: np.ndarray, threshold: float, *,
                 engine: Engine = "auto", limit: int | None = None) -> Pairs:
    """Every pair (i, j) with hasher.distance(queries[i], database[j]) <= threshold, for any
    hasher: Hamming search for bit hashes, matrix products for 64*(1-cosine) embeddings,
    the hasher's `cross_distance` otherwise. The distances are the hasher's own. `limit`: as
    `hamming_pairs`'s."""
    threshold, limit = _check_threshold(threshold), _checked_limit(limit)
    if isinstance(hasher, BitHasher):
        return hamming_pairs(queries, database, threshold, engine=engine, limit=limit)
    if hasher.distance_kind == "64*(1-cosine)":
        return _cosine_pairs(hasher, queries, database, threshold, within=False, limit=limit)
    return _cross_distance_pairs(hasher, queries, database, threshold, within=False, limit=limit)


def hasher_pairs_within(hasher: Hasher, hashes: np.ndarray, threshold: float, *,
                        engine: Engine = "auto", limit: int | None = None) -> Pairs:
    """Every pair i < j of one set with hasher.distance(hashes[i], hashes[j]) <= threshold;
    as `hasher_pairs`."""
    threshold, limit = _check_threshold(threshold), _checked_limit(limit)
    if isinstance(hasher, BitHasher):
        return hamming_pairs_within(hashes, threshold, engine=engine, limit=limit)
    if hasher.distance_kind == "64*(1-cosine)":
        return _cosine_pairs(hasher, hashes, hashes, threshold, within=True, limit=limit)
    return _cross_distance_pairs(hasher, hashes, hashes, threshold, within=True, limit=limit)


def duplicate_groups(count: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Connected components of the graph of `count` items joined by the pairs (i[k], j[k]):
    int64 (count,), the group of each item, or -1 for an item in no pair.

    Groups are numbered 0, 1, ... in the order of their smallest member, so the same
    pairs always give the same numbers. Indices of several sets go in one index space
    (e.g. test rows offset by the number of train rows).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    i, j = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
    if i.shape != j.shape or i.ndim != 1:
        raise ValueError(f"i and j must be 1-D and equally long, got shapes {i.shape} and {j.shape}")
    if len(i) and (min(i.min(), j.min()) < 0 or max(i.max(), j.max()) >= count):
        raise ValueError(f"pair indices must lie in 0..{count - 1}")
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(count, count))
    _, labels = connected_components(graph, directed=False)
    # np.unique's first index of each component is its smallest member.
    _, first, inverse, sizes = np.unique(labels, return_index=True, return_inverse=True, return_counts=True)
    by_smallest = np.argsort(first)
    groups = by_smallest[sizes[by_smallest] > 1]
    number = np.full(len(first), -1, dtype=np.int64)
    number[groups] = np.arange(len(groups))
    return number[inverse]


# ---------------------------------------------------------------------------------------
# Checks


def _check_bits(hashes, name: str) -> np.ndarray:
    hashes = np.asarray(hashes)
    if hashes.dtype != np.uint8 or hashes.ndim != 2 or hashes.shape[1] == 0:
        raise ValueError(f"{name}: expected bit-packed uint8 hashes of shape (n, nbytes), "
                         f"got {hashes.dtype} of shape {hashes.shape}")
    return np.ascontiguousarray(hashes)


def _same_width(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"queries have {a.shape[1]} bytes a hash, the database {b.shape[1]}")


def _check_threshold(threshold) -> float:
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"threshold: expected a number, got {threshold!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"threshold: must be a finite number >= 0, got {threshold!r}")
    return value


def _hamming_radius(threshold, nbytes: int) -> int:
    """The largest integer distance within the threshold (d <= 8.5 is d <= 8), at most
    the bit width: every pair is then within it."""
    return min(math.floor(_check_threshold(threshold)), 8 * nbytes)


def _check_nbits(nbits, nbytes: int) -> int:
    if nbits is None:
        return 8 * nbytes
    if isinstance(nbits, bool) or not isinstance(nbits, (int, np.integer)) \
            or not 8 * (nbytes - 1) < nbits <= 8 * nbytes:
        raise ValueError(f"nbits: {nbits!r} bits do not fill {nbytes}-byte hashes "
                         f"(expected {8 * (nbytes - 1) + 1}..{8 * nbytes})")
    return int(nbits)


def _workers(workers: int | None) -> int:
    if workers is None:
        from harness.cluster import usable_cores

        return usable_cores()
    if workers < 1:
        raise ValueError(f"workers: must be >= 1, got {workers}")
    return int(workers)


# ---------------------------------------------------------------------------------------
# Hamming with faiss


@functools.cache
def _faiss():
    """The faiss module, or None where it is not installed (the numpy engine runs then)."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def _use_faiss(engine: Engine) -> bool:
    # faiss when installed: its C++ loop took 0.8 ns of CPU a pair of 64-bit hashes where
    # the numpy kernel took 1.1, and 3 ns a pair of 256-bit hashes against 6.
    if engine == "auto":
        return _faiss() is not None
    if engine == "faiss":
        if _faiss() is None:
            raise ValueError("engine: 'faiss' is not installed (pip install faiss-cpu); use 'numpy'")
        return True
    if engine == "numpy":
        return False
    raise ValueError(f"engine: expected 'auto', 'faiss' or 'numpy', got {engine!r}")


def _faiss_pairs(queries: np.ndarray, database: np.ndarray, radius: int, within: bool,
                 limit: int | None = None) -> Pairs:
    """faiss IndexBinaryFlat range search, query rows in blocks.

    faiss's radius is strict (distance < radius, checked against brute force for 1 to
    72 bytes in tests), so it is given radius + 1. Its codes may be any whole number of
    bytes (8 * nbytes bits). Within one set, the database is cut into blocks of
    FAISS_QUERY_BLOCK rows and queries are searched only in the blocks that reach past
    them: half the work.

    With a `limit`, the first query block is short enough that even if every pair of it
    were found they would be within the limit (a full block of 16,384 identical hashes
    against a million holds 16 billion pairs, found in one call), and the blocks double
    while the pairs found stay well below what the limit leaves: a few short calls, then
    full blocks, where the pairs are as sparse as they should be.
    """
    faiss = _faiss()
    nbits = 8 * queries.shape[1]
    block = FAISS_QUERY_BLOCK
    starts = range(0, len(database), block) if within else [0]
    indexes = []
    for start in starts:
        index = faiss.IndexBinaryFlat(nbits)
        part = database[start:start + block] if within else database
        if len(part):
            index.add(part)
        indexes.append((start, index))
    found, held = [], 0
    rows_per_call = block if limit is None else max(1, min(block, limit // max(1, len(database))))
    q_start = 0
    while q_start < len(queries):
        rows = queries[q_start:q_start + rows_per_call]
        parts = []
        for d_start, index in indexes:
            if within and d_start + index.ntotal <= q_start or index.ntotal == 0:
                continue
            lims, distances, labels = index.range_search(rows, radius + 1)
            i = q_start + np.repeat(np.arange(len(rows), dtype=np.int64), np.diff(lims).astype(np.int64))
            j = d_start + labels.astype(np.int64)
            keep = j > i if within else slice(None)
            parts.append((i[keep], j[keep], distances[keep]))
        found.append(_sorted(parts))
        q_start += len(rows)
        if limit is not None:
            got = len(found[-1][0])
            held += got
            _check_limit(held, limit)
            if 4 * got <= limit - held:  # twice the rows would likely find twice as many: half what is left
                rows_per_call = min(block, 2 * rows_per_call)
    return _concatenate(found)


# ---------------------------------------------------------------------------------------
# Hamming with numpy


def _as_words(hashes: np.ndarray) -> np.ndarray:
    """uint8 rows (n, nbytes) -> uint64 words (nwords, n), each word's values contiguous.

    Zero bytes pad a row to whole 64-bit words: they XOR to zero, so the distance does
    not change, and one popcount covers 8 bytes.
    """
    n, nbytes = hashes.shape
    padded = np.zeros((n, -(-nbytes // 8) * 8), dtype=np.uint8)
    padded[:, :nbytes] = hashes
    return np.ascontiguousarray(padded.view(np.uint64).T)


class _Tiles:
    """Hamming distances of a (rows x columns) tile into reusable buffers.

    Each thread owns one: the XOR and popcount scratch is allocated once and stays in
    the core's cache. Distances are uint8 up to 255 bits and uint16 above.
    """

    def __init__(self, a_words: np.ndarray, b_words: np.ndarray, nbits: int):
        self.a, self.b = a_words, b_words
        self.dtype = np.uint8 if nbits <= 255 else np.uint16
        self.xor = np.empty(TILE_PAIRS, dtype=np.uint64)
        self.count = np.empty(TILE_PAIRS, dtype=np.uint8)

    def distances(self, rows: slice, cols: slice, out: np.ndarray) -> np.ndarray:
        """Fill `out` (at least rows x cols long) and return it shaped (rows, cols)."""
        height, width = rows.stop - rows.start, cols.stop - cols.start
        size = height * width
        xor = self.xor[:size].reshape(height, width)
        dist = out[:size].reshape(height, width)
        count = self.count[:size].reshape(height, width)
        for word in range(len(self.a)):
            np.bitwise_xor(self.a[word, rows, None], self.b[word, None, cols], out=xor)
            if word == 0:
                np.bitwise_count(xor, out=dist)
            else:
                np.bitwise_count(xor, out=count)
                np.add(dist, count, out=dist)
        return dist


class _Plan:
    """How the (rows x columns) pairs are cut: tasks of whole row blocks, shared among the
    threads, each cut into tiles of TILE_ROWS rows and TILE_PAIRS pairs.

    Several rows a tile: each column chunk then serves TILE_ROWS queries from L1, which
    measured 35% faster for the XOR than one row against 65,536 columns. Within one set,
    the rows of a tile meet the columns from their first row on (the upper triangle).
    """

    def __init__(self, n_rows: int, n_cols: int, within: bool, workers: int):
        self.n_rows, self.n_cols, self.within = n_rows, n_cols, within
        # Eight tasks a thread or more (the triangle's rows are uneven work), of whole tiles.
        per_task = -(-n_rows // (8 * workers))
        self.task_rows = max(TILE_ROWS, min(1024, -(-per_task // TILE_ROWS) * TILE_ROWS))
        self.starts = list(range(0, n_rows, self.task_rows))

    def tiles(self, task_start: int):
        """The (rows, cols) slices of one task's tiles, row by row, columns in order."""
        task_stop = min(task_start + self.task_rows, self.n_rows)
        for row in range(task_start, task_stop, TILE_ROWS):
            rows = slice(row, min(row + TILE_ROWS, task_stop))
            width = max(1, TILE_PAIRS // TILE_ROWS)
            first = row if self.within else 0
            for col in range(first, self.n_cols, width):
                yield rows, slice(col, min(col + width, self.n_cols))


def _numpy_pairs(queries: np.ndarray, database: np.ndarray, radius: int, within: bool,
                 workers: int | None, limit: int | None = None) -> Pairs:
    """Brute force: popcount of XOR over cache-sized tiles, row blocks shared among threads
    (numpy's ufuncs release the GIL, so the tiles of two threads run at once). With a
    `limit`, the threads count the pairs they hold together, and all stop at the tile that
    takes them past it."""
    workers = _workers(workers)
    if not len(queries) or not len(database):
        return _empty()
    plan = _Plan(len(queries), len(database), within, workers)
    a_words, b_words = _as_words(queries), _as_words(database)
    local = _per_thread(lambda: _Tiles(a_words, b_words, 8 * queries.shape[1]))
    held, lock = [0], threading.Lock()

    def task(start: int):
        tiles = local()
        buffer = np.empty(TILE_PAIRS, dtype=tiles.dtype)
        parts = []
        for rows, cols in plan.tiles(start):
            if limit is not None and held[0] > limit:
                break
            dist = tiles.distances(rows, cols, buffer).ravel()
            # Most tiles hold no close pair: a minimum (0.04 ns a value) rules them out;
            # flatnonzero then finds the hits, 25 times faster than a 2-D np.nonzero.
            if dist.min() > radius:
                continue
            hits = np.flatnonzero(dist <= radius)  # row-major: sorted by row, then column
            r, c = np.divmod(hits, cols.stop - cols.start)
            i, j = rows.start + r, cols.start + c
            keep = j > i if within else slice(None)
            parts.append((i[keep], j[keep], dist[hits][keep]))
            if limit is not None:
                with lock:
                    held[0] += len(parts[-1][0])
        return _sorted(parts)

    found = _map(task, plan.starts, workers)
    if limit is not None:
        _check_limit(held[0], limit)
    return _concatenate(found)


def _numpy_histogram(queries: np.ndarray, database: np.ndarray, nbits: int, within: bool,
                     engine: Engine, workers: int | None) -> np.ndarray:
    """Brute force over the tiles of `_numpy_pairs`, each thread counting its distances in
    batches (see `_Counter`). Within one set, a tile on the diagonal counts only the
    pairs of its square's upper triangle."""
    workers = _workers(workers)
    width_bits = 8 * queries.shape[1]
    hist = np.zeros(width_bits + 1, dtype=np.int64)
    count_with_faiss = _use_faiss(engine)
    if len(queries) and len(database):
        plan = _Plan(len(queries), len(database), within, workers)
        a_words, b_words = _as_words(queries), _as_words(database)
        local = _per_thread(lambda: _Counter(_Tiles(a_words, b_words, width_bits), width_bits, count_with_faiss))

        def task(start: int) -> np.ndarray:
            counter = local()
            for rows, cols in plan.tiles(start):
                if within and cols.start == rows.start:
                    counter.add_upper_triangle(rows, cols)
                else:
                    counter.add(rows, cols)
            return counter.take()

        for partial in _map(task, plan.starts, workers):
            hist += partial
    if hist[nbits + 1:].any():
        far = int(np.flatnonzero(hist)[-1])
        raise ValueError(f"nbits: a distance of {far} exceeds nbits={nbits}: the padding bits are not zero")
    return hist[:nbits + 1]


class _Counter:
    """One thread's counts of distances, by bit distance 0..width_bits.

    Distances are gathered in a batch of HISTOGRAM_BATCH and counted when it is full. Up
    to 255 bits a distance is one byte, and two neighbouring distances, read as one
    uint16 key of 65,536, are counted at once and the key counts split afterwards: half
    the counting, 17% less time in all with faiss. faiss's `ivec_hist` counts (int32
    values, in C++, 0.7 ns a value; faiss's SWIG wrapper releases the GIL around every
    call, so the threads count at once), or without faiss `np.bincount` (it holds the
    GIL and costs 1.3-1.7 ns a value).
    """

    def __init__(self, tiles: _Tiles, width_bits: int, with_faiss: bool):
        self.tiles = tiles
        self.hist = np.zeros(width_bits + 1, dtype=np.int64)
        self.buffer = np.empty(HISTOGRAM_BATCH, dtype=tiles.dtype)
        self.filled = 0
        self.paired = tiles.dtype == np.uint8
        self.faiss = _faiss() if with_faiss else None
        if self.faiss is not None:
            self.ints = np.empty(HISTOGRAM_BATCH // 2 if self.paired else HISTOGRAM_BATCH, dtype=np.int32)
            self.counts = np.empty(1 << 16 if self.paired else width_bits + 1, dtype=np.int32)

    def add(self, rows: slice, cols: slice) -> None:
        size = (rows.stop - rows.start) * (cols.stop - cols.start)
        if self.filled + size > len(self.buffer):
            self._flush()
        self.tiles.distances(rows, cols, self.buffer[self.filled:])
        self.filled += size

    def add_upper_triangle(self, rows: slice, cols: slice) -> None:
        """A tile starting on the diagonal: the pairs i < j of its leading square, then
        the rest of its columns."""
        height = rows.stop - rows.start
        square = slice(cols.start, cols.start + height)
        scratch = np.empty(height * height, dtype=self.buffer.dtype)
        dist = self.tiles.distances(rows, square, scratch)
        self.hist += np.bincount(dist[np.triu_indices(height, k=1)], minlength=len(self.hist))
        if square.stop < cols.stop:
            self.add(rows, slice(square.stop, cols.stop))

    def take(self) -> np.ndarray:
        """The counts so far, and start again from zero."""
        self._flush()
        hist, self.hist = self.hist, np.zeros_like(self.hist)
        return hist

    def _flush(self) -> None:
        values, count = self.buffer[:self.filled], self.filled
        self.filled = 0
        if not count:
            return
        if self.paired:
            if count % 2:
                self.hist[values[-1]] += 1
                values = values[:-1]
            keys = self._count(values.view(np.uint16), 1 << 16).reshape(256, 256)
            # A key holds one distance in its low byte and one in its high byte.
            self.hist += keys.sum(axis=0)[:len(self.hist)] + keys.sum(axis=1)[:len(self.hist)]
        else:
            self.hist += self._count(values, len(self.hist))

    def _count(self, values: np.ndarray, bins: int) -> np.ndarray:
        """How many of `values` are 0, 1, ..., bins - 1 (all are below bins)."""
        if self.faiss is None:
            return np.bincount(values, minlength=bins)
        ints, counts = self.ints[:len(values)], self.counts[:bins]
        np.copyto(ints, values)
        outside = self.faiss.ivec_hist(len(ints), self.faiss.swig_ptr(ints), bins, self.faiss.swig_ptr(counts))
        if outside:  # cannot happen: every distance is at most the bit width
            raise AssertionError(f"{outside} values outside 0..{bins - 1}")
        return counts


def _per_thread(make):
    """A function giving each thread its own `make()` (scratch buffers are reused, and
    never shared between threads)."""
    import threading

    store = threading.local()

    def get():
        if not hasattr(store, "value"):
            store.value = make()
        return store.value
    return get


def _map(task, items, workers: int) -> list:
    """task over items, in order, on `workers` threads."""
    if workers == 1 or len(items) <= 1:
        return [task(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(task, items))


# ---------------------------------------------------------------------------------------
# Embeddings and other hashers


def _cosine_pairs(hasher: Hasher, queries, database, threshold: float, within: bool,
                  limit: int | None = None) -> Pairs:
    """64 * (1 - cosine) by float32 matrix products on unit vectors, with a margin that
    bounds float32's rounding; the hasher's float64 `distance()` decides each candidate.

    The margin: a float32 dot product of d terms errs by at most gamma_d * sum |x_k y_k|
    <= (d u / (1 - d u)) for unit vectors (u = 2**-24, any summation order), rounding
    the unit vectors to float32 adds at most 2u, so the cosine errs by less than
    (d + 3) u (1 + 1e-3) and the distance by 64 times that; 1e-9 more covers float64's
    own rounding and the hasher's rounding to 10 decimals.
    """
    queries, database = _check_vectors(queries, "queries"), _check_vectors(database, "database")
    if queries.shape[1] != database.shape[1]:
        raise ValueError(f"queries have {queries.shape[1]} dimensions, the database {database.shape[1]}")
    if not len(queries) or not len(database):
        return _empty()
    dims = queries.shape[1]
    margin = 64 * (dims + 3) * 2.0 ** -24 * (1 + 1e-3) + 1e-9
    floor = 1.0 - (threshold + margin) / 64.0  # candidates: cosine >= floor
    a, b = _unit32(queries), _unit32(database)
    zero_a, zero_b = ~a.any(axis=1), ~b.any(axis=1)  # two zero vectors are at distance 0 (cosine_distance_64)
    rows = max(1, EMBEDDING_BLOCK // len(b))
    parts, held = [], 0
    for start in range(0, len(a), rows):
        first = start if within else 0
        similarity = a[start:start + rows] @ b[first:].T
        similarity[np.ix_(zero_a[start:start + rows], zero_b[first:])] = 1.0
        r, c = np.divmod(np.flatnonzero(similarity >= floor), similarity.shape[1])
        i, j = start + r, first + c
        if within:
            i, j = i[j > i], j[j > i]
        parts.append(_decide(hasher, queries, database, i, j, threshold))
        held += len(parts[-1][0])
        _check_limit(held, limit)
    return _concatenate(parts)


def _check_vectors(vectors, name: str) -> np.ndarray:
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or not np.issubdtype(vectors.dtype, np.number):
        raise ValueError(f"{name}: expected embeddings of shape (n, dims), "
                         f"got {vectors.dtype} of shape {vectors.shape}")
    return vectors


def _unit32(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length in float64, then float32; zero rows stay zero, as in
    `cosine_distance_64` (whose cosine with them is 0)."""
    x = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms == 0, 1.0, norms)).astype(np.float32)


def _cross_distance_pairs(hasher: Hasher, queries, database, threshold: float, within: bool,
                          limit: int | None = None) -> Pairs:
    """The hasher's `cross_distance` in row blocks; pairs within CROSS_DISTANCE_MARGIN of the
    threshold are decided by its `distance`, so the result is exactly `distance`'s."""
    if not len(queries) or not len(database):
        return _empty()
    margin = CROSS_DISTANCE_MARGIN * max(1.0, threshold)
    rows = max(1, EMBEDDING_BLOCK // len(database))
    parts, held = [], 0
    for start in range(0, len(queries), rows):
        first = start if within else 0
        cross = hasher.checked_cross_distance(queries[start:start + rows], database[first:])
        r, c = np.divmod(np.flatnonzero(cross <= threshold + margin), cross.shape[1])
        i, j = start + r, first + c
        if within:
            i, j = i[j > i], j[j > i]
        parts.append(_decide(hasher, queries, database, i, j, threshold))
        held += len(parts[-1][0])
        _check_limit(held, limit)
    return _concatenate(parts)


def _decide(hasher: Hasher, queries, database, i: np.ndarray, j: np.ndarray,
            threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidates whose `hasher.distance` is <= threshold, with those distances."""
    if not len(i):
        return i, j, np.zeros(0)
    # checked: a plugin's distance that raises, or gives NaN (never <= threshold), is refused, not a lost pair
    distance = hasher.checked_distance(queries[i], database[j])
    keep = distance <= threshold
    return i[keep], j[keep], distance[keep]


# ---------------------------------------------------------------------------------------
# Results


def _checked_limit(limit) -> int | None:
    """`limit`: None (no limit) or a whole number of pairs, at least 0; else a ValueError naming it."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 0:
        raise ValueError(f"limit: expected None or a whole number of pairs >= 0, got {limit!r}")
    return int(limit)


def _check_limit(held: int, limit: int | None) -> None:
    if limit is not None and held > limit:
        raise TooManyPairs(held)


def _empty() -> Pairs:
    return Pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))


def _sorted(parts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, distance) parts joined and sorted by i, then j."""
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
    i = np.concatenate([p[0] for p in parts])
    j = np.concatenate([p[1] for p in parts])
    distance = np.concatenate([np.asarray(p[2], dtype=np.float64) for p in parts])
    order = np.lexsort((j, i))
    return i[order], j[order], distance[order]


def _concatenate(parts) -> Pairs:
    """Parts already sorted, each after the last, into one Pairs."""
    parts = [p for p in parts if len(p[0])]
    if not parts:
        return _empty()
    return Pairs(np.concatenate([p[0] for p in parts]).astype(np.int64, copy=False),
                 np.concatenate([p[1] for p in parts]).astype(np.int64, copy=False),
                 np.concatenate([np.asarray(p[2], dtype=np.float64) for p in parts]))
