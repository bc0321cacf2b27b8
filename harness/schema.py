"""The names every stage shares, defined once: table columns, status words, file names.

The runner produces tables with these columns, `metrics` reads them, the report
and storage write and read them under these file names.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

# A side of a pair that is not edited: the untouched source image.
UNTOUCHED: tuple = ()

# Status words: a hasher that cannot run here, and the `error` cell of its distances.
OK = "ok"
UNAVAILABLE = "unavailable"

DISTANCE_COLUMNS = ["image", "image_id", "family", "value", "label", "hasher", "distance", "distance_norm", "error"]
IMPOSTOR_COLUMNS = ["hasher", "kind", "family", "value", "image_id", "other_id", "distance"]
# As saved: the two images' names beside their ids (metrics.name_impostors).
NAMED_IMPOSTOR_COLUMNS = ["hasher", "kind", "family", "value", "image", "other", "image_id", "other_id", "distance"]
ERROR_COLUMNS = ["image", "image_id", "stage", "reason"]
# What names a pair in the distance table: its family, its swept value and its label.
PAIR_KEY = ["family", "value", "label"]

# How much a figure draws (harness.figures says why): the panels of a grid figure, a family each
# (and previews.png's rows), and the thumbnails of one family's row of previews.png.
MAX_PANELS = 64
PREVIEW_COLUMNS = 12


def category_codes(column) -> np.ndarray:
    """A categorical column's codes as they are stored, read-only: pandas' `.cat.codes` copies them
    (4.6 MiB for the distance table's image column at 100,000 images)."""
    return column.array.codes


def text_dtype(texts) -> pd.CategoricalDtype:
    """The categorical type whose categories are `texts` (text_categories). pandas checks that they
    are unique with a hash table of them, and keeps that table as long as they live (2 MiB per
    56,000 names); the harness never looks categories up by their text, so it goes at once."""
    import pandas as pd

    dtype = pd.CategoricalDtype(text_categories(texts))
    forget_lookup(dtype.categories)
    return dtype


def release_lookups(*tables) -> None:
    """Let go of the hash tables pandas keeps for the categories of the tables' categorical columns
    (forget_lookup): those of tables read from disk, and any that a step looked up since."""
    import pandas as pd

    for table in tables:
        for _, column in table.items() if table is not None else ():
            if isinstance(column.dtype, pd.CategoricalDtype):
                forget_lookup(column.cat.categories)


def forget_lookup(index: pd.Index) -> None:
    """Drop the hash table pandas built for `index` the first time it was checked or looked up (8 MiB
    for a 100,000-image run's tables); a later lookup builds it again. pandas has no public way to:
    `Index._cleanup` (in pandas since 0.x, and what its own tests call) is used where it exists, and
    nothing is done where it does not."""
    cleanup = getattr(index, "_cleanup", None)
    if cleanup is not None:
        cleanup()


def first_seen(column) -> list:
    """A column's distinct values in the order they first appear. A categorical column is read by
    its codes: a long table's million rows are not turned into a million Python objects."""
    import pandas as pd  # here, not above: the image pass and an unchanged rerun need no pandas

    if isinstance(column.dtype, pd.CategoricalDtype):
        categories = column.cat.categories
        codes = category_codes(column)
        if in_first_seen_order(codes, len(categories)):  # as the tables are made: no sorting needed
            return list(categories)
        return [categories[code] for code in first_seen_codes(codes, len(categories))]
    return list(dict.fromkeys(column))


def first_seen_codes(codes: np.ndarray, count: int | None = None) -> np.ndarray:
    """The distinct codes (0 .. count-1; -1, missing, is left out) of a categorical column in the
    order they first appear."""
    count = int(codes.max(initial=-1)) + 1 if count is None else count
    first = first_rows(codes, count)[:count]
    used = np.flatnonzero(first < len(codes))
    return used[np.argsort(first[used], kind="stable")]


def first_rows(codes: np.ndarray, count: int) -> np.ndarray:
    """Each code's first row in `codes` (codes 0 .. count-1, and at index `count` a missing one, -1),
    len(codes) for a code that does not appear. In blocks, with no sort: no temporary the size of
    `codes` (a column of a million rows), and a fortieth of np.unique's time."""
    first = np.full(count + 1, len(codes), np.int64)
    for start in range(0, len(codes), ROWS_BLOCK):
        block = codes[start:start + ROWS_BLOCK].astype(np.intp)
        block[block < 0] = count
        np.minimum.at(first, block, np.arange(start, start + len(block)))
    return first


def code_dtype(count: int) -> type:
    """The integer type pandas keeps the codes of `count` categories in: codes of this type go into
    a Categorical without being copied."""
    return next((kind for kind in (np.int8, np.int16, np.int32) if count < np.iinfo(kind).max), np.int64)


def first_seen_categorical(codes: np.ndarray, texts: np.ndarray) -> pd.Categorical:
    """The Categorical whose row r is texts[codes[r]] (texts[-1] where the code is -1, missing), its
    categories the distinct texts in the order they first appear; codes that stand for the same text
    become one. Worked on the codes and the categories: no text is made per row, and no temporary
    is the size of the rows but the new codes themselves (in the narrowest type pandas keeps)."""
    import pandas as pd

    first = first_rows(codes, len(texts) - 1)
    unique, inverse = np.unique(texts, return_inverse=True)
    text_first = np.full(len(unique), len(codes), np.int64)
    np.minimum.at(text_first, inverse.reshape(-1), first)
    used = np.flatnonzero(text_first < len(codes))
    order = used[np.argsort(text_first[used], kind="stable")]
    rank = np.zeros(len(unique), code_dtype(len(order)))
    rank[order] = np.arange(len(order))
    code_map = rank[inverse.reshape(-1)]  # each code's new code, and a missing one's last
    new_codes = np.empty(len(codes), code_map.dtype)
    for start in range(0, len(codes), ROWS_BLOCK):
        block = codes[start:start + ROWS_BLOCK].astype(np.intp)
        block[block < 0] = len(code_map) - 1
        np.take(code_map, block, out=new_codes[start:start + ROWS_BLOCK])
    return pd.Categorical.from_codes(new_codes, dtype=text_dtype(unique[order]))


def text_categories(texts) -> pd.Index:
    """Categories for a text column, as an index of Python strings (object dtype; see python_texts).
    pandas' own text type keeps its strings in an Arrow buffer and copies every one into a new Python
    object each time the categories are looked up or checked (6 MiB per 100,000 names, once per
    column); these are the strings the run already holds, shared by every column that names the
    same images."""
    import pandas as pd

    return pd.Index(python_texts(texts), dtype=object)


def python_texts(values) -> np.ndarray:
    """`values` (a column, an index, a list or any iterable) as an object array of Python strings, as
    `astype(str)` makes them, but the very objects where they already are strings: no copy of
    100,000 names. Strings made here (from pandas' text type, as Parquet reads it back) are
    interned, so the columns of a table read back that name the same images share one string per
    name."""
    import pandas as pd

    if hasattr(values, "dtype") and isinstance(values.dtype, pd.StringDtype):
        return np.array([sys.intern(value) if isinstance(value, str) else str(value)
                         for value in values.to_numpy(dtype=object)], dtype=object)
    if hasattr(values, "to_numpy"):
        array = values.to_numpy(dtype=object)
    else:
        array = np.asarray(values if isinstance(values, (list, np.ndarray)) else list(values), dtype=object)
    if pd.api.types.infer_dtype(array, skipna=False) in ("string", "empty"):
        return array
    return np.array([str(value) for value in array], dtype=object)


# Rows handled at a time where a whole column at once would need temporaries the size of the table
# (tens of MiB for the 1.2 million distances of 100,000 images).
ROWS_BLOCK = 1 << 16


def in_first_seen_order(codes: np.ndarray, count: int) -> bool:
    """Whether `codes` use every one of `count` categories and each first appears in its order (0
    before 1 before 2 ...), as the runner numbers them: then `first_seen_codes` is 0, 1, 2 ... and
    nothing needs reordering. One pass in blocks, no sort."""
    top = -1  # the largest code so far: every code up to it has appeared
    for start in range(0, len(codes), ROWS_BLOCK):
        block = codes[start:start + ROWS_BLOCK].astype(np.int64)
        reached = np.maximum.accumulate(np.maximum(block, top))
        before = np.concatenate([[top], reached[:-1]])
        if (block > before + 1).any() or (block < 0).any():  # a code that skips one, or a missing one
            return False
        top = int(reached[-1])
    return top == count - 1
