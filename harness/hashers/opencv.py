"""OpenCV's contrib module `cv2.img_hash`: the article's aHash and pHash."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from harness.hashers.base import Hasher, hamming, hamming_cross


@dataclass(frozen=True)
class OpenCVBitHash(Hasher):
    """A 64-bit img_hash algorithm compared by Hamming distance, exactly as its compare() does."""

    distance_kind = "hamming"
    distance_max = 64.0

    def create(self):
        raise NotImplementedError

    def hash_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        # img_hash has no batch API; one algorithm object serves the whole batch.
        algorithm = self.create()
        return np.concatenate([algorithm.compute(image) for image in images]) if len(images) \
            else np.zeros((0, 8), np.uint8)

    def distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return hamming(a, b)

    def cross_distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return hamming_cross(a, b)


@dataclass(frozen=True)
class AverageHash(OpenCVBitHash):
    name = "aHash"
    description = "cv2.img_hash.AverageHash: 8x8 gray thumbnail thresholded at its mean, 64 bits"

    def create(self):
        return cv2.img_hash.AverageHash_create()


@dataclass(frozen=True)
class PHash(OpenCVBitHash):
    name = "pHash"
    description = "cv2.img_hash.PHash: 32x32 gray, DCT, 8x8 low frequencies against their mean, 64 bits"

    def create(self):
        return cv2.img_hash.PHash_create()
