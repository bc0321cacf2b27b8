"""A transform and a hasher written outside the harness, named in a config by import path.

    sweeps:  b: {examples.plugins:vignette: {strength: $value}}
    hashers: [examples.plugins:ColorHistogram]

Both follow the builtins' contracts: a transform is a function f(image, **params) on uint8
HxWx3 BGR images, a hasher a frozen Hasher dataclass; parameters are declared once, in the
annotations, and a config is checked against them before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Sequence

import numpy as np

from harness.hashers.base import Hasher
from harness.params import Doc, Range


def vignette(
    image: np.ndarray,
    strength: Annotated[float, Range(0, 1), Doc("darkening at the corners: 0 none, 1 black")] = 0.5,
) -> np.ndarray:
    """Darken towards the corners: pixels times 1 - strength * r**2, r = 0 at the centre, 1 at a corner."""
    height, width = image.shape[:2]
    x, y = np.linspace(-1, 1, width), np.linspace(-1, 1, height)
    gain = 1 - strength * (x[None, :] ** 2 + y[:, None] ** 2) / 2
    return np.rint(image * gain[..., None]).astype(np.uint8)


@dataclass(frozen=True)
class ColorHistogram(Hasher):
    bins: Annotated[int, Range(2, 256), Doc("histogram bins per channel")] = 8

    name = "examples.plugins:ColorHistogram"  # the YAML name, as for a builtin
    description = "histograms of B, G and R, `bins` each, together normalised to sum 1"
    distance_kind = "L1"
    distance_max = 2.0  # two distributions summing to 1 differ by at most 2

    def hash_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        offsets = np.arange(3) * self.bins  # channel c counts in bins [c*bins, (c+1)*bins)
        counts = [np.bincount((image.reshape(-1, 3).astype(np.intp) * self.bins // 256 + offsets).ravel(),
                              minlength=3 * self.bins) for image in images]
        hashes = np.array(counts, dtype=np.float64).reshape(len(images), 3 * self.bins)
        return hashes / np.maximum(hashes.sum(axis=1, keepdims=True), 1)

    def distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.abs(a - b).sum(axis=1)
