"""Meta's PDQ through the `pdqhash` package (`pip install pdqhash`), called as it is.

`pdqhash.compute(rgb)` returns the 256 hash bits and a quality score (0-100; Meta's
reference code treats hashes under 50 as too featureless to trust). The bits are stored
bit-packed in the order pdqhash returns them, so Hamming distance is PDQ's distance; the
quality comes out through `hash_extras` as "quality".
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from harness.errors import UnavailableError
from harness.hashers.base import BitHasher
from harness.hashers.layouts import layouts


def fingerprint(image: np.ndarray) -> tuple:
    """An image's shape and a SHA-1 of its pixels: what tells whether a batch is the last one again.
    Not the arrays' identity, which stays the same while their pixels are changed in place (the last
    batch's hashes came back for new pixels). About 1 ms for 512x512, next to PDQ's 20 ms."""
    pixels = np.ascontiguousarray(image)
    return pixels.shape, str(pixels.dtype), hashlib.sha1(pixels, usedforsecurity=False).digest()


def library():
    """The `pdqhash` module, or UnavailableError saying how to install it."""
    try:
        import pdqhash
    except ImportError as exc:
        raise UnavailableError(f"the pdqhash package is not installed ({exc}); pip install pdqhash") from None
    return pdqhash


@dataclass(frozen=True)
class PDQ(BitHasher):
    # The last batch: (its images' fingerprints, hashes, quality), so hash_batch + hash_extras hash it
    # once (the runner calls both on every batch; without it PDQ would cost twice its time).
    _last: list = field(default_factory=list, init=False, repr=False, compare=False)

    name = "PDQ"
    description = "PDQ (pdqhash): 64x64 luminance from a Jarosz-filtered image, 16x16 DCT against its median, 256 bits"
    distance_max = 256.0

    def prepare(self) -> None:
        library()

    def _compute(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Hashes and quality scores of one batch, in one pass; images with the same pixels as the
        last batch's get the kept result."""
        fingerprints = [fingerprint(image) for image in images]
        if self._last and self._last[0] == fingerprints:
            return self._last[1], self._last[2]
        pdqhash = library()
        hashes = np.zeros((len(images), 32), np.uint8)
        quality = np.zeros(len(images), np.int64)
        for row, image in enumerate(images):
            bits, quality[row] = pdqhash.compute(layouts(image).rgb)
            hashes[row] = np.packbits(np.asarray(bits, dtype=bool))
        self._last[:] = [fingerprints, hashes, quality]
        return hashes, quality

    def hash_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return self._compute(images)[0].copy()

    def hash_extras(self, images: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        return {"quality": self._compute(images)[1].copy()}

