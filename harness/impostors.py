"""The impostor baseline: distances between different images.

Source pairs are every pair of different source images, or a seeded sample; each
edited copy is also compared with a seeded sample of other source images. The same
pairs serve every hasher, less those with an image the hasher could not hash.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.errors import HarnessError, HashError
from harness.hashing import Hashed
from harness.schema import IMPOSTOR_COLUMNS, code_dtype, text_dtype

PAIR_BLOCK = 65_536  # impostor pairs gathered per vectorised distance call


def sample_pairs(count: int, max_pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j) of `count` items: all of them, or a seeded sample of `max_pairs`."""
    total = count * (count - 1) // 2
    if total <= max_pairs:
        return np.triu_indices(count, k=1)
    linear = np.sort(rng.choice(total, size=max_pairs, replace=False))
    # Row i of the upper triangle starts at offset i*count - i*(i+1)/2; invert that.
    i = np.floor(((2 * count - 1) - np.sqrt((2 * count - 1) ** 2 - 8 * linear)) / 2).astype(np.int64)
    start = i * count - i * (i + 1) // 2
    too_far = linear >= start + (count - 1 - i)  # guard against rounding at row boundaries
    i[too_far] += 1
    start = i * count - i * (i + 1) // 2
    j = linear - start + i + 1
    return i, j


def pair_distances(hasher, a: np.ndarray, b: np.ndarray, rows_a: np.ndarray, rows_b: np.ndarray,
                   out: np.ndarray | None = None) -> np.ndarray:
    """Row-wise distances for gathered index pairs, in blocks so memory stays bounded; into `out`
    when given (a part of the table's column)."""
    out = np.empty(len(rows_a), dtype=np.float64) if out is None else out
    for start in range(0, len(rows_a), PAIR_BLOCK):
        block = slice(start, start + PAIR_BLOCK)
        try:
            out[block] = hasher.checked_distance(a[rows_a[block]], b[rows_b[block]])
        except HashError as exc:  # a plugin's distance that misbehaves: the run cannot use this hasher
            raise HarnessError(f"impostor distances: {exc}") from None
    return out


class Vocabulary:
    """The texts an impostor table's columns can hold, so that its columns are categorical codes
    (bytes a row) with the same categories in every part, which pandas then concatenates as codes.
    Each column's categories are checked and indexed once (`dtypes`): at 100,000 images, building
    the image ids' categories again for every part took 18 s and 200 MiB."""

    def __init__(self, ids, hashers, pairs):
        from harness.config import format_value

        small = {
            "hasher": list(hashers), "kind": ["source", "transformed"],
            "family": list(dict.fromkeys(["", *(p.family for p in pairs)])),
            "value": list(dict.fromkeys(["", *(format_value(p.value) for p in pairs)]))}
        images = text_dtype(ids)  # image_id and other_id: codes are the images' numbers
        self.images = len(images.categories)
        self.dtypes = {**{column: text_dtype(texts) for column, texts in small.items()},
                       "image_id": images, "other_id": images}
        self.code = {column: {text: k for k, text in enumerate(texts)} for column, texts in small.items()}

    def frame(self, distance: np.ndarray, **codes) -> pd.DataFrame:
        """An impostor table from each text column's codes (an array, or one code for every row). Codes
        already in the type pandas keeps them in (schema.code_dtype) are not copied."""
        count = len(distance)
        columns = {}
        for column in IMPOSTOR_COLUMNS[:-1]:
            dtype = self.dtypes[column]
            kind = code_dtype(len(dtype.categories))
            given = codes[column]
            values = np.asarray(given, kind) if np.ndim(given) else np.full(count, given, kind)
            columns[column] = pd.Categorical.from_codes(values, dtype=dtype)
        return pd.DataFrame({**columns, "distance": distance}, columns=IMPOSTOR_COLUMNS, copy=False)


def source_impostors(vocabulary: Vocabulary, source_hashed: dict[str, Hashed], hashers, max_pairs,
                     rng) -> pd.DataFrame:
    """Distances between different untouched source images, per hasher: the same sampled
    pairs for every hasher, less those with an image the hasher could not hash."""
    i, j = sample_pairs(vocabulary.images, max_pairs, rng)
    # Each column is made whole in its final type and filled hasher by hasher: no per-hasher tables
    # to concatenate (which held the table twice: 6 MiB at 100,000 images).
    keeps = [(source_hashed[hid].rows[i] >= 0) & (source_hashed[hid].rows[j] >= 0) for hid in hashers]
    counts = [int(np.count_nonzero(keep)) for keep in keeps]
    id_type = code_dtype(vocabulary.images)
    distance = np.empty(sum(counts))
    image_id, other_id = np.empty(len(distance), id_type), np.empty(len(distance), id_type)
    start = 0
    for (hid, hasher), keep, count in zip(hashers.items(), keeps, counts):
        part = slice(start, start + count)
        if count:
            rows, array = source_hashed[hid].rows, source_hashed[hid].array
            pair_distances(hasher, array, array, rows[i[keep]], rows[j[keep]], out=distance[part])
        image_id[part], other_id[part] = i[keep], j[keep]
        start += count
    code = vocabulary.code
    return vocabulary.frame(distance, hasher=np.repeat(np.array([code["hasher"][hid] for hid in hashers], np.int64),
                                                       counts),
                            kind=code["kind"]["source"], family=code["family"][""], value=code["value"][""],
                            image_id=image_id, other_id=other_id)


def transformed_impostors(vocabulary: Vocabulary, pairs, edited: list[int], edited_hashed: dict[str, Hashed],
                          source_hashed: dict[str, Hashed], hashers, per_variant: int, rng) -> list[pd.DataFrame]:
    """Each edited copy (side B of the pairs numbered `edited`) of every image against `per_variant`
    other source images, the same others for every hasher. `edited_hashed[hasher]` holds image i's
    copies at rows i * len(edited) + j. The draws go image by image, copy by copy, in order."""
    from harness.config import format_value

    count, per_image = vocabulary.images, len(edited)
    take = min(per_variant, count - 1)
    # Draw k of the other count-1 images without replacement: draw from 0..count-2 and step over the image itself.
    chosen = np.empty((count, per_image, take), np.int64)
    for number in range(count):
        for copy in range(per_image):
            chosen[number, copy] = rng.choice(count - 1, size=take, replace=False)
        chosen[number] += chosen[number] >= number
    image = np.repeat(np.arange(count), per_image * take)
    copy = np.tile(np.repeat(np.arange(per_image), take), count)
    other = chosen.ravel()
    code = vocabulary.code
    families = np.array([code["family"][pairs[k].family] for k in edited], np.int64)
    values = np.array([code["value"][format_value(pairs[k].value)] for k in edited], np.int64)
    frames = []
    for hid, hasher in hashers.items():
        mine, theirs = edited_hashed[hid], source_hashed[hid]
        copy_rows, other_rows = mine.rows[image * per_image + copy], theirs.rows[other]
        keep = (copy_rows >= 0) & (other_rows >= 0)
        if not keep.any():
            continue
        # The other image first, as a pair's untouched side comes first: a one-sided distance
        # (CropResistantHash's, Hasher.symmetric) is then of the same question as the copies' distances.
        distance = pair_distances(hasher, theirs.array, mine.array, other_rows[keep], copy_rows[keep])
        frames.append(vocabulary.frame(distance, hasher=code["hasher"][hid], kind=code["kind"]["transformed"],
                                       family=families[copy[keep]], value=values[copy[keep]], image_id=image[keep],
                                       other_id=other[keep]))
    return frames
