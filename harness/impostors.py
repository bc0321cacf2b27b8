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
from harness.schema import IMPOSTOR_COLUMNS

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


def pair_distances(hasher, a: np.ndarray, b: np.ndarray, rows_a: np.ndarray, rows_b: np.ndarray) -> np.ndarray:
    """Row-wise distances for gathered index pairs, in blocks so memory stays bounded."""
    out = np.empty(len(rows_a), dtype=np.float64)
    for start in range(0, len(rows_a), PAIR_BLOCK):
        block = slice(start, start + PAIR_BLOCK)
        try:
            out[block] = hasher.checked_distance(a[rows_a[block]], b[rows_b[block]])
        except HashError as exc:  # a plugin's distance that misbehaves: the run cannot use this hasher
            raise HarnessError(f"impostor distances: {exc}") from None
    return out


def source_impostors(sources, source_hashed: dict[str, Hashed], hashers, max_pairs, rng) -> pd.DataFrame:
    """Distances between different untouched source images, per hasher: the same sampled
    pairs for every hasher, less those with an image the hasher could not hash."""
    i, j = sample_pairs(len(sources), max_pairs, rng)
    ids = np.array([s["id"] for s in sources])
    frames = [pd.DataFrame(columns=IMPOSTOR_COLUMNS)]
    for hid, hasher in hashers.items():
        rows = source_hashed[hid].rows
        keep = (rows[i] >= 0) & (rows[j] >= 0)
        array = source_hashed[hid].array
        frames.append(pd.DataFrame({
            "hasher": hid, "kind": "source", "family": "", "value": "",
            "image_id": ids[i[keep]], "other_id": ids[j[keep]],
            "distance": pair_distances(hasher, array, array, rows[i[keep]], rows[j[keep]]) if keep.any() else [],
        }))
    return pd.concat(frames, ignore_index=True)


def transformed_impostors(sources, pairs, edited: list[int], edited_hashed: dict[str, Hashed],
                          source_hashed: dict[str, Hashed], hashers, per_variant: int, rng) -> list[pd.DataFrame]:
    """Each edited copy (side B of the pairs numbered `edited`) of every image against `per_variant`
    other source images, the same others for every hasher. `edited_hashed[hasher]` holds image i's
    copies at rows i * len(edited) + j. The draws go image by image, copy by copy, in order."""
    count, per_image = len(sources), len(edited)
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
    ids = np.array([s["id"] for s in sources])
    families = np.array([pairs[k].family for k in edited], dtype=object)
    values = np.array([pairs[k].value for k in edited] + [None], dtype=object)[:-1]  # keeps 3 and 2.0 apart
    frames = [pd.DataFrame(columns=IMPOSTOR_COLUMNS)]
    for hid, hasher in hashers.items():
        mine, theirs = edited_hashed[hid], source_hashed[hid]
        copy_rows, other_rows = mine.rows[image * per_image + copy], theirs.rows[other]
        keep = (copy_rows >= 0) & (other_rows >= 0)
        if not keep.any():
            continue
        frames.append(pd.DataFrame({
            "hasher": hid, "kind": "transformed", "family": families[copy[keep]], "value": values[copy[keep]],
            "image_id": ids[image[keep]], "other_id": ids[other[keep]],
            "distance": pair_distances(hasher, mine.array, theirs.array, copy_rows[keep], other_rows[keep]),
        }))
    return frames
