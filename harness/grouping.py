"""One hasher's usable distances grouped by pair (family, value, label): made once per hasher and
read by every metric.

The metrics read the same groups again and again: the article table's medians, the curves'
quartiles, the detected copies at each threshold, the ROC per family, the thresholds and the
retrieval numbers. pandas' groupby made the groups anew for each table and each time copied every
group's rows, keys and index: 15 to 35 MiB of working memory per table at 100,000 images (400,000
rows a hasher), about a second in all. Here one sort of the hasher's rows, by pair and then by
distance, serves them all. No library groups a sorted array into runs in pandas' order of first
appearance, so this part is written by hand; the medians and quartiles repeat pandas' own
arithmetic, operation for operation, so the tables do not change by a bit (tests/test_grouping.py
checks them against pandas).

A row is usable when its `error` is empty; a row without a family, value or label belongs to no
pair and is left out, as pandas' groupby leaves it out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from harness.schema import PAIR_KEY, UNAVAILABLE, category_codes, first_seen

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class PairGroups:
    """One hasher's usable rows, pair by pair. The arrays hold the pairs one after the other,
    ordered by their codes; the pairs' own order (k) is the order they first appear in among the
    rows, and pair k is the arrays' `ranked[k]`-th: for j = ranked[k], its rows (positions in the
    distance table, in no particular order) are `rows[bounds[j]:bounds[j + 1]]` and its distances,
    ascending (NaN last), `values[bounds[j]:bounds[j + 1]]`."""

    hasher: str
    keys: pd.DataFrame  # one row per pair: its PAIR_KEY values, with the table's own column types
    first: np.ndarray  # each pair's first row (a position in the distance table)
    ranked: np.ndarray  # pair k's place in the arrays
    bounds: np.ndarray  # the arrays' pairs' offsets, one more than the pairs
    rows: np.ndarray
    values: np.ndarray  # taken whole, the hasher's usable distances (in no useful order)
    unavailable: bool  # every row of the hasher says it could not run here

    def __len__(self) -> int:
        return len(self.first)

    def pair(self, k: int) -> np.ndarray:
        """Pair k's distances, ascending."""
        j = self.ranked[k]
        return self.values[self.bounds[j]:self.bounds[j + 1]]

    def families(self) -> list[tuple[object, np.ndarray]]:
        """(family, its distances over all its pairs) in the order the families first appear. The
        pairs are dealt to their families in one pass (looking each family's pairs up among all the
        pairs took time in the square of the families: 10 s a call at 10,000 one-pair families)."""
        pairs_of: dict[object, list[int]] = {}
        for k, name in enumerate(self.keys["family"].tolist()):
            pairs_of.setdefault(name, []).append(k)
        return [(name, np.concatenate([self.pair(k) for k in pairs])) for name, pairs in pairs_of.items()]

    def sorted_column(self, column: pd.Series) -> np.ndarray:
        """Another column of the same rows (`distance_norm`), pair by pair as `values`, ascending
        within each pair."""
        values = column.to_numpy(dtype=np.float64)[self.rows]
        _sort_each(values, self.bounds)
        return values

    def counts(self, values: np.ndarray | None = None) -> np.ndarray:
        """Each pair's distances (or `values`, as sorted_column gives them) that are not NaN."""
        return counts(self.values if values is None else values, self.bounds)[self.ranked]

    def medians(self, values: np.ndarray | None = None) -> np.ndarray:
        return medians(self.values if values is None else values, self.bounds)[self.ranked]

    def quantiles(self, q: float, values: np.ndarray | None = None) -> np.ndarray:
        return quantiles(self.values if values is None else values, self.bounds, q)[self.ranked]


def hasher_groups(distances: pd.DataFrame, hashers: list[str] | None = None):
    """PairGroups for each hasher (by default every hasher of the table, in order of first
    appearance), made one at a time: only one hasher's groups need to be held at once."""
    table = _Columns(distances)
    for hasher in first_seen(distances["hasher"]) if hashers is None else hashers:
        yield table.grouped(hasher)


class _Columns:
    """The distance table's columns that grouping reads, as NumPy arrays (views, not copies)."""

    def __init__(self, distances: pd.DataFrame):
        self.distances = distances
        self.hasher, self.hashers = _codes(distances["hasher"])
        self.error, errors = _codes(distances["error"])
        self.ok, self.unavailable = (_code(errors, text) for text in ("", UNAVAILABLE))
        self.keys = [_codes(distances[column]) for column in PAIR_KEY]
        self.distance = distances["distance"].to_numpy(dtype=np.float64)

    def grouped(self, hasher: str) -> PairGroups:
        in_hasher = self.hasher == _code(self.hashers, hasher)
        could_not_run = bool(in_hasher.any()) and not (in_hasher & (self.error != self.unavailable)).any()
        in_hasher &= self.error == self.ok  # usable
        rows = np.flatnonzero(in_hasher)
        del in_hasher
        if len(self.distance) < 2 ** 31:  # positions fit in 4 bytes
            rows = rows.astype(np.int32)
        key_codes = [codes[rows] for codes, _ in self.keys]
        if len(rows):
            present = np.logical_and.reduce([codes >= 0 for codes in key_codes])
            if not present.all():
                rows, key_codes = rows[present], [codes[present] for codes in key_codes]
        pair = _combined(key_codes, [len(names) for _, names in self.keys])
        del key_codes
        order = np.argsort(pair, kind="stable")  # pair by pair
        pair, rows = pair[order], rows[order]
        del order
        values = self.distance[rows]
        starts = np.flatnonzero(np.concatenate([[True], pair[1:] != pair[:-1]])) if len(rows) else \
            np.zeros(0, np.int64)
        del pair
        bounds = np.append(starts, len(rows)).astype(np.int64)
        _sort_each(values, bounds)
        first = np.minimum.reduceat(rows, starts).astype(np.int64) if len(rows) else np.zeros(0, np.int64)
        ranked = np.argsort(first, kind="stable")  # the pairs in order of first appearance, as pandas gives them
        first = first[ranked]
        keys = self.distances.iloc[first][PAIR_KEY].reset_index(drop=True)
        return PairGroups(hasher, keys, first, ranked, bounds, rows, values, could_not_run)


def _sort_each(values: np.ndarray, bounds: np.ndarray) -> None:
    """Sort each group's slice in place (NaN last): no index array the size of the rows."""
    for start, end in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        values[start:end].sort()


def _codes(column: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """A column's codes and the values they stand for (-1: missing); a categorical column's own."""
    import pandas as pd

    if isinstance(column.dtype, pd.CategoricalDtype):
        return category_codes(column), column.cat.categories
    codes, uniques = pd.factorize(column)
    return codes, pd.Index(uniques)


def _code(names: pd.Index, name) -> int:
    """`name`'s code, or -2 (no row has it; -1 is a missing value's)."""
    return int(names.get_loc(name)) if name in names else -2


def _combined(codes: list[np.ndarray], sizes: list[int]) -> np.ndarray:
    """One code per row for a tuple of codes (equal tuples, equal codes), in the narrowest integer
    type that holds every combination (sorting 2-byte codes is a radix sort)."""
    sizes = [max(size, 1) for size in sizes]
    total = int(np.prod(sizes, dtype=object))
    for kind in (np.int16, np.int32):
        if total <= np.iinfo(kind).max:
            combined = codes[0].astype(kind)
            for column, size in zip(codes[1:], sizes[1:]):
                combined *= size
                combined += column
            return combined
    combined = codes[0].astype(np.int64)  # a table with millions of distinct pairs: numbered densely as it goes
    for column, size in zip(codes[1:], sizes[1:]):
        if len(combined) and int(combined.max()) >= np.iinfo(np.int64).max // size:
            combined = np.unique(combined, return_inverse=True)[1].reshape(-1)
        combined = combined * size + column
    return combined


def counts(values: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Each group's values that are not NaN (pandas' `count`)."""
    sizes = np.diff(bounds)
    missing = np.flatnonzero(np.isnan(values))
    if len(missing):
        sizes -= np.bincount(np.searchsorted(bounds, missing, side="right") - 1, minlength=len(sizes))
    return sizes


def medians(values: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Each group's median, NaN skipped, as pandas computes it: the middle value, or the two middle
    values' sum halved (NaN for a group without a value). `values` ascending within each group,
    NaN last."""
    n = counts(values, bounds)
    if not len(n):
        return np.zeros(0)
    start = bounds[:-1]
    high = start + n // 2
    low = start + np.maximum(n - 1, 0) // 2
    with np.errstate(invalid="ignore", over="ignore"):
        middle = np.where(n % 2 == 1, values[high], (values[high] + values[low]) / 2)
    return np.where(n > 0, middle, np.nan)


def quantiles(values: np.ndarray, bounds: np.ndarray, q: float) -> np.ndarray:
    """Each group's `q` quantile, NaN skipped, linear between neighbours as pandas' groupby computes
    it: at position q (n - 1), the value at its whole part plus the step to the next times its
    fraction (`val + (next_val - val) * frac` in pandas' group_quantile)."""
    n = counts(values, bounds)
    if not len(n):
        return np.zeros(0)
    start = bounds[:-1]
    position = q * (n - 1).astype(np.float64)
    whole = position.astype(np.int64)
    fraction = position % 1
    value = values[start + np.maximum(whole, 0)]
    following = values[start + np.clip(whole + 1, 0, np.maximum(n - 1, 0))]
    with np.errstate(invalid="ignore", over="ignore"):
        interpolated = value + (following - value) * fraction
    return np.where(n > 0, np.where(fraction == 0.0, value, interpolated), np.nan)
