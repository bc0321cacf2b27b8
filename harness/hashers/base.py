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

from harness.errors import HashError, UnavailableError, exception_text


@dataclass(frozen=True)
class Hasher(ABC):
    name: ClassVar[str]  # the registry / YAML name
    description: ClassVar[str]
    distance_kind: ClassVar[str]  # e.g. "hamming", "64*(1-cosine)"
    distance_max: ClassVar[float]  # normalised distance = distance / distance_max, clipped to [0, 1]
    distance_bounded: ClassVar[bool] = True  # False: distance_max is a scale that distances can pass
    # Whether an image's hash is the same whatever else is in its batch. A CNN's float
    # results can move in the last bits with the batch, so it says False and the cache
    # then recomputes whole batches, keeping the tables byte-identical.
    batch_invariant: ClassVar[bool] = True
    # Whether the hashes are bit-exact on every processor. False where the library's floating
    # point follows the CPU's vector instructions (measured: OpenCV's MarrHildrethHash and
    # ColorMomentHash change with AVX-512; CNN embeddings): tests then use a stated tolerance.
    cpu_exact: ClassVar[bool] = True
    # Whether the library already spreads one batch over every core (TensorFlow's thread pools):
    # `--workers auto` then runs in this process, where workers would compete for the same cores
    # and, spawned, each load the library and the model again.
    parallel_inside: ClassVar[bool] = False
    # Whether distance(a, b) == distance(b, a). False only for a distance that is one-sided by design
    # (CropResistantHash's: the share of a's segments found in b); harness passes the original (the
    # reference) as `a`. A plugin that says True (the default) is held to it on two made-up images.
    symmetric: ClassVar[bool] = True

    def __post_init__(self):
        """Every parameter is checked against its declaration when the hasher is built, in Python as
        from a config: ValueError("<param>: <problem>"). Subclasses with checks of their own call
        this first."""
        from harness.params import check_params, param_specs

        given = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        checked = check_params(param_specs(type(self)), given, f"hasher '{self.name}'")
        for key, value in checked.items():  # as declared: 2 becomes 2.0 for a float, a list a tuple
            if value is not given[key]:
                object.__setattr__(self, key, value)

    def prepare(self) -> None:
        """Load what the hasher needs (models, weights) before any work.

        Raises harness.errors.UnavailableError when it cannot run here.
        """

    def warm_up(self) -> None:
        """Import now what `hash_batch` would import on its first call. Called in the main process just
        before local worker processes are forked (only when there is something to hash), so each
        worker inherits it instead of importing it on its first image."""

    @abstractmethod
    def hash_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """uint8 BGR images (any sizes) -> array with one hash per row."""

    @abstractmethod
    def distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Row-wise distances between two equally long hash arrays -> float64 (N,)."""

    def hash_extras(self, images: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Side outputs of hashing the same batch as `hash_batch`: column name -> array with
        one value per image, e.g. {"quality": ...} (PDQ's own 0-100 quality score).

        The default is none. A hasher with extras computes them in the same pass as its
        hashes and keeps its last batch, so calling `hash_batch(images)` and then
        `hash_extras(images)` (or the reverse) with the same images (the same pixels, not only the same
        arrays: one changed in place is hashed again) hashes once.
        """
        return {}

    def hash_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """The checked entry point: `hash_batch` with its input and output checked.

        Every image must be a uint8 HxWx3 array with H, W >= 1; the result has one row
        per image. Anything the backend raises other than HashError or UnavailableError
        (a cv2.error, a ZeroDivisionError on a 1-pixel image) becomes a HashError naming
        this hasher, so one bad image is a recorded failure, never a crash.
        """
        _check_batch(self.name, images)
        out = self._guarded(self.hash_batch, self._given(images))
        if not isinstance(out, np.ndarray) or out.ndim < 1 or len(out) != len(images):
            got = f"shape {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
            raise HashError(f"{self.name} returned {got} for a batch of {len(images)} images, "
                            f"not one row per image")
        return out

    def checked_extras(self, images: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """`hash_extras` with the same checks as `hash_images`: valid images in, one
        value per image in every column out, backend failures as HashError."""
        _check_batch(self.name, images)
        extras = self._guarded(self.hash_extras, self._given(images))
        if not isinstance(extras, dict):
            raise HashError(f"{self.name} extras are a {type(extras).__name__}, not a dict of columns")
        for key, values in extras.items():
            if not hasattr(values, "__len__") or len(values) != len(images):
                got = f"{len(values)} values" if hasattr(values, "__len__") else f"a {type(values).__name__}"
                raise HashError(f"{self.name} extra '{key}' gives {got} for a batch of {len(images)} images, "
                                f"not one value per image")
        return extras

    def checked_distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """`distance` with its output checked: one float per row, finite, and for a plugin 0 or more (a
        plugin's distance that raises or returns something else is a HashError naming the hasher, never
        a crash)."""
        return self._checked(lambda: self.distance(a, b), (len(a),), "distance", f"{len(a)} pairs")

    def _checked(self, compute, shape: tuple, method: str, counted: str) -> np.ndarray:
        """What `compute` (a distance method's call) returns, checked: floats of `shape`, finite, a
        plugin's 0 or more; else a HashError naming the hasher."""
        try:
            out = np.asarray(compute(), dtype=np.float64)
        except HashError:
            raise
        except (Exception, SystemExit) as exc:  # sys.exit() in a plugin: its failure (exception_text)
            raise HashError(f"{self.name} distance failed: {exception_text(exc, with_type=True)}") from exc
        if out.shape != shape:
            raise HashError(f"{self.name} {method} returned shape {out.shape} for {counted}, not one value per pair")
        if not np.isfinite(out).all():  # NaN had passed, then failed the report's histograms as a bug
            raise HashError(f"{self.name} distance returned {'NaN' if np.isnan(out).any() else 'infinite'} values")
        if ":" in self.name and (out < 0).any():  # a plugin's (the built-ins' are 0 or more by construction)
            # Float rounding leaves 1 - cos(a, a) at -1e-16 (-1.2e-7 in float32): that is 0. Anything further
            # below is no distance.
            if out.min() < -rounding_bound(self.distance_max):
                raise HashError(f"{self.name} distance returned negative values ({out.min():.6g}; a distance is 0 or "
                                "more: below every threshold, each pair would count as a match)")
            out = np.maximum(out, 0.0)
        return out

    def _given(self, images):
        """The images as a plugin gets them: read-only views (one that zeroed the images it hashed made
        every later hasher's hashes of them, and the cache's, those of black images)."""
        if ":" not in self.name:
            return images
        from harness.transforms import read_only

        return [read_only(image) for image in images]

    def _guarded(self, method, images):
        try:
            return method(images)
        except (HashError, UnavailableError):
            raise
        except (Exception, SystemExit) as exc:  # sys.exit() in a plugin: its failure (exception_text)
            batch = f" on a batch of {len(images)} images" if len(images) != 1 else ""
            raise HashError(f"{self.name} failed{batch}: {exception_text(exc, with_type=True)}") from exc

    def encode_row(self, row) -> np.ndarray:
        """One image's hash (a row of `hash_batch`'s result) as a plain array of numbers or booleans,
        for the hash cache, which never stores pickles. The default: the row itself. Hashers whose
        rows are objects override this and `decode_rows`; the two must round-trip exactly."""
        return np.asarray(row)

    def row_form(self) -> tuple[str, tuple[int | None, ...]] | None:
        """The form of every array `encode_row` gives: (its dtype as numpy writes it, e.g. "|u1"; its
        shape, None for a length that varies from image to image or is not known before hashing), or
        None where nothing is known. The hash cache takes a stored entry of another form for a
        damaged one and computes it again: rows of other forms cannot be compared. The default: not
        known (a plugin may declare its own)."""
        return None

    def decode_rows(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        """Rows back from `encode_row`'s arrays, as `hash_batch` would return them for those images;
        ValueError when they do not fit together."""
        if not len(arrays):
            raise ValueError("no rows")
        first = arrays[0]
        if any(a.dtype != first.dtype or a.shape != first.shape for a in arrays):
            raise ValueError("rows of different dtypes or shapes")
        return np.stack(arrays)

    def cross_distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """All-pairs distances -> float64 (len(a), len(b)). Hashers with a faster form
        (popcount, matrix product) override this; the default is one vectorised
        `distance` call per row of `a`."""
        out = np.empty((len(a), len(b)), dtype=np.float64)
        for i in range(len(a)):
            out[i] = self.distance(np.repeat(a[i:i + 1], len(b), axis=0), b)
        return out

    def checked_cross_distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """`cross_distance` with its output checked as `checked_distance` checks `distance`'s, of shape
        (len(a), len(b)). The leak audit takes its candidate pairs from it: a plugin's exception had
        been reported as a bug of harness's, and a NaN, never at or below a threshold, lost its pair
        without a word."""
        return self._checked(lambda: self.cross_distance(a, b), (len(a), len(b)), "cross_distance",
                             f"{len(a)} x {len(b)} hashes")

    def spec(self) -> dict:
        return {"name": self.name, **{f.name: getattr(self, f.name) for f in fields(self) if f.init}}


def rounding_bound(distance_max: float) -> float:
    """How far from 0 a distance that means 0 may come out of float arithmetic: 1 - cos(a, a) gives
    -1e-16 in float64 and 6e-8 in float32, more over long vectors. Scaled by distance_max. (A
    function, not a method: a plugin's own field may take any name.)"""
    return 1e-5 * max(1.0, float(distance_max))


def _check_batch(name: str, images) -> None:
    """HashError unless `images` is a sequence of uint8 HxWx3 arrays with H, W >= 1."""
    if isinstance(images, np.ndarray) and images.dtype != object and images.ndim != 4:
        raise HashError(f"{name} expects a sequence of images, got one {images.dtype} array of shape "
                        f"{images.shape}; wrap a single image in a list")
    try:
        count = len(images)
    except TypeError:
        raise HashError(f"{name} expects a sequence of images, got {type(images).__name__}") from None
    for index, image in enumerate(images):
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
                and image.shape[2] == 3 and image.shape[0] >= 1 and image.shape[1] >= 1):
            got = (f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray)
                   else type(image).__name__)
            raise HashError(f"{name} expects uint8 HxWx3 BGR images (H, W >= 1); image {index} of "
                            f"{count}: got {got}")


@dataclass(frozen=True)
class BitHasher(Hasher, ABC):
    """A hash of bit-packed uint8 rows, compared by Hamming distance (popcount of XOR)."""

    distance_kind = "hamming"

    def row_form(self):
        # distance_max is the bit count (the largest Hamming distance), as for hash tables (leaks)
        return "|u1", ((int(self.distance_max) + 7) // 8,)

    def distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return hamming(a, b)

    def cross_distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return hamming_cross(a, b)


class from_params:
    """A class-level value that depends on the parameters, e.g. `distance_max` = the bit
    count that a `hash_size` gives. Decorate a method computing it from an instance:

        @from_params
        def distance_max(self) -> float:
            return float(self.hash_size ** 2)

    Read on an instance it is that method's result; read on the class (listings), the
    result for the default parameters, so it can stand wherever a plain ClassVar does.
    """

    def __init__(self, compute):
        self.compute = compute
        self.__doc__ = compute.__doc__

    def __get__(self, instance, owner=None):
        return self.compute(instance if instance is not None else owner())


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Hamming distance between bit-packed uint8 hashes (popcount of XOR)."""
    return np.bitwise_count(np.bitwise_xor(a, b)).sum(axis=-1, dtype=np.int64).astype(np.float64)


def hamming_cross(a: np.ndarray, b: np.ndarray, block: int = 256) -> np.ndarray:
    """All-pairs Hamming distances between bit-packed hashes, in row blocks to bound memory."""
    out = np.empty((len(a), len(b)), dtype=np.float64)
    for start in range(0, len(a), block):
        xor = np.bitwise_xor(a[start:start + block, None, :], b[None, :, :])
        out[start:start + block] = np.bitwise_count(xor).sum(axis=-1, dtype=np.int64)
    return out


def cosine_cross_64(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """All-pairs 64 * (1 - cosine similarity), as one matrix product (zero vectors: see
    cosine_distance_64)."""
    def unit(x):
        x = np.asarray(x, dtype=np.float64)
        norms = np.linalg.norm(x, axis=-1, keepdims=True)
        return x / np.where(norms == 0, 1.0, norms), norms[:, 0] == 0
    (a, zero_a), (b, zero_b) = unit(a), unit(b)
    similarity = a @ b.T
    similarity[np.ix_(zero_a, zero_b)] = 1.0
    return _cosine_scale(similarity)


def cosine_distance_64(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The article's scale for embeddings: 64 * (1 - cosine similarity), 0 = same direction.
    A zero vector (a CNN whose activations an image leaves all at 0: a black image, random
    weights) has no direction: its cosine with any other vector is taken as 0 (distance 64), but
    two zero vectors are one and the same embedding, at distance 0, as identical hashes are for
    every hasher (the same image given twice must match itself)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    norm_a, norm_b = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    norms = norm_a * norm_b
    similarity = np.einsum("ij,ij->i", a, b) / np.where(norms == 0, 1.0, norms)
    similarity[(norm_a == 0) & (norm_b == 0)] = 1.0
    return _cosine_scale(similarity)


def _cosine_scale(similarity: np.ndarray) -> np.ndarray:
    # Rounding noise puts identical vectors at +-1e-14 rather than 0; 10 decimals
    # remove it, and the clip keeps it from printing as -0.
    return np.round(64.0 * np.clip(1.0 - similarity, 0.0, 2.0), 10)
