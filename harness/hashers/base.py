"""The one small interface every hasher implements.

A hasher is a frozen dataclass whose fields are its YAML parameters (declared
once, with types and ranges in the annotations). It turns a batch of images
into an array of hashes, one row per image, and measures distances between
rows of two such arrays, vectorised. Its distance's meaning is data:
`distance_kind`, and `distance_max`, the value that normalised distances are
divided by. Lower always means closer; a backend whose native score is a
similarity converts it and says how in `distance_kind`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import ClassVar, Sequence

import numpy as np


@dataclass(frozen=True)
class Hasher(ABC):
    name: ClassVar[str]  # the registry / YAML name
    description: ClassVar[str]
    distance_kind: ClassVar[str]  # e.g. "hamming", "64*(1-cosine)"
    distance_max: ClassVar[float]  # normalised distance = distance / distance_max, clipped to [0, 1]

    def prepare(self) -> None:
        """Load what the hasher needs (models, weights) before any work.

        Raises harness.errors.UnavailableError when it cannot run here.
        """

    @abstractmethod
    def hash_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """uint8 BGR images (any sizes) -> array with one hash per row."""

    @abstractmethod
    def distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Row-wise distances between two equally long hash arrays -> float64 (N,)."""

    def normalise(self, distances: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(distances, dtype=np.float64) / self.distance_max, 0.0, 1.0)

    def spec(self) -> dict:
        return {"name": self.name, **{f.name: getattr(self, f.name) for f in fields(self) if f.init}}


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Hamming distance between bit-packed uint8 hashes (popcount of XOR)."""
    return np.bitwise_count(np.bitwise_xor(a, b)).sum(axis=-1, dtype=np.int64).astype(np.float64)


def cosine_distance_64(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The article's scale for embeddings: 64 * (1 - cosine similarity), 0 = same direction."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    similarity = np.einsum("ij,ij->i", a, b) / np.where(norms == 0, 1.0, norms)
    return 64.0 * (1.0 - similarity)
