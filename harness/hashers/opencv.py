"""OpenCV's contrib module `cv2.img_hash`: the article's aHash and pHash, and the
module's other algorithms (Marr-Hildreth, radial variance, block mean, colour moments).

Every distance equals the algorithm's own `compare()`, converted to "lower = closer"
where compare() is a similarity (radial variance: a peak correlation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, Sequence

import cv2
import numpy as np

from harness.hashers.base import BitHasher, Hasher, from_params
from harness.params import Doc, Range


@dataclass(frozen=True)
class OpenCVHash(Hasher):
    """An img_hash algorithm: `create()` builds it with the hasher's parameters."""

    def create(self):
        raise NotImplementedError

    def hash_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        # img_hash has no batch API; one algorithm object serves the whole batch.
        algorithm = self.create()
        if not len(images):
            return self._blank_hash(algorithm)[:0]
        return np.concatenate([algorithm.compute(image) for image in images])

    def _blank_hash(self, algorithm):
        # The algorithm's own width and dtype, read from its hash of a blank image.
        return algorithm.compute(np.zeros((32, 32, 3), np.uint8))

    def row_form(self):
        blank = self._blank_hash(self.create())
        return blank.dtype.str, blank.shape[1:]


@dataclass(frozen=True)
class OpenCVBitHash(OpenCVHash, BitHasher):
    """Bit-packed hashes compared by Hamming distance, exactly as their compare() does
    (cv::norm NORM_HAMMING over the bytes; padding bits are always 0)."""

    distance_max = 64.0


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


MH_MAX_HALF_KERNEL = 512  # the kernel's half side, int(4 * alpha**scale): at most the 512 px working image


@dataclass(frozen=True)
class MarrHildrethHash(OpenCVBitHash):
    alpha: Annotated[float, Range(0, 64, open_low=True), Doc("scale factor of the Marr wavelet")] = 2.0
    scale: Annotated[float, Range(0, 16), Doc("level of the scale factor; kernel side 2*int(4*alpha**scale)+1")] = 1.0

    name = "MarrHildrethHash"
    description = ("cv2.img_hash.MarrHildrethHash: 512x512 equalised gray filtered by a Marr-Hildreth "
                   "(Mexican hat) kernel, 3x3 block signs in 64 windows, 576 bits")
    distance_max = 576.0
    cpu_exact = False  # the Mexican-hat filter's float sums round differently with AVX-512

    def __post_init__(self):
        super().__post_init__()
        half = int(4 * self.alpha ** self.scale)
        if half > MH_MAX_HALF_KERNEL:
            raise ValueError(f"alpha: alpha={self.alpha:g} with scale={self.scale:g} makes a {2 * half + 1} px "
                             f"kernel (2*int(4*alpha**scale)+1); at most {2 * MH_MAX_HALF_KERNEL + 1} is useful "
                             f"on the 512 px working image")

    def create(self):
        return cv2.img_hash.MarrHildrethHash_create(self.alpha, self.scale)


@dataclass(frozen=True)
class BlockMeanHash(OpenCVBitHash):
    mode: Annotated[Literal[0, 1], Doc(
        "0: 16x16 blocks of 16 px on the 256x256 gray image (256 bits); "
        "1: the same blocks every 8 px, overlapping (961 bits)")] = 0

    name = "BlockMeanHash"
    description = "cv2.img_hash.BlockMeanHash: block means of the 256x256 gray image against the image mean"

    @from_params
    def distance_max(self) -> float:
        """The number of bits (blocks): 16*16 in mode 0, 31*31 in mode 1."""
        return 256.0 if self.mode == 0 else 961.0

    def create(self):
        return cv2.img_hash.BlockMeanHash_create(self.mode)


@dataclass(frozen=True)
class RadialVarianceHash(OpenCVHash):
    # At most 20: the blur's cost grows with sigma squared (sigma 100 took 7.7 s for one 2048x2048 hash).
    sigma: Annotated[float, Range(1.0, 20.0), Doc("Gaussian blur sigma before the radial projections, px")] = 1.0
    numOfAngleLine: Annotated[int, Range(4, 3600), Doc("number of radial projection lines (angles)")] = 180

    name = "RadialVarianceHash"
    description = ("cv2.img_hash.RadialVarianceHash: variance along radial lines, 40 DCT coefficients as "
                   "bytes; compare() is their peak circular cross-correlation")
    distance_kind = "1 - peak cross-correlation"  # compare() returns the correlation, a similarity
    distance_max = 1.0  # the peak over all shifts is >= 0 (the shifted covariances sum to 0)

    def create(self):
        return cv2.img_hash.RadialVarianceHash_create(self.sigma, self.numOfAngleLine)

    def distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a_centred, a_std = _centred(a)
        shifted, b_std = _shifted(b)  # (N, shifts, 40)
        covariance = np.einsum("nj,nij->ni", a_centred, shifted) / a.shape[-1]
        distance = _distance(_peak(covariance, a_std[:, None], b_std[:, None]))
        distance[(a_std == 0) & (b_std == 0) & (np.asarray(a)[:, 0] == np.asarray(b)[:, 0])] = 0.0  # as _flat
        return distance

    def cross_distance(self, a: np.ndarray, b: np.ndarray, block: int = 256) -> np.ndarray:
        a_centred, a_std = _centred(a)
        shifted, b_std = _shifted(b)
        flat = shifted.reshape(-1, a.shape[-1]).T  # (40, len(b) * shifts)
        out = np.empty((len(a), len(b)), dtype=np.float64)
        for start in range(0, len(a), block):
            rows = slice(start, start + block)
            covariance = (a_centred[rows] @ flat).reshape(-1, len(b), a.shape[-1]) / a.shape[-1]
            out[rows] = _distance(_peak(covariance, a_std[rows, None, None], b_std[None, :, None]))
        _flat(out, np.asarray(a), a_std, np.asarray(b), b_std)
        return out


def _flat(out: np.ndarray, a: np.ndarray, a_std: np.ndarray, b: np.ndarray, b_std: np.ndarray) -> None:
    """Identical hashes at distance 0 in `out` (a x b), also where compare() says 1: a hash with no
    variance (all 40 bytes equal: an all-black image's, a 1x1 image's) correlates with nothing, not
    even itself, so compare() puts the same image at distance 1 from itself, and a leak audit would
    not find a black image given to two splits. Every other hasher puts identical hashes at 0.
    (Two flat hashes are identical when their first bytes are.)"""
    rows, cols = np.flatnonzero(a_std == 0), np.flatnonzero(b_std == 0)
    if len(rows) and len(cols):
        same = a[rows, 0][:, None] == b[cols, 0][None, :]
        out[np.ix_(rows, cols)] = np.where(same, 0.0, out[np.ix_(rows, cols)])


def _distance(peak: np.ndarray) -> np.ndarray:
    """1 - peak correlation, with rounding taken out: a hash against itself (or against one that is
    an exact affine copy of it at some shift) correlates 1 exactly, but the float sums give 1 give or
    take a few 1e-16, which would read as a distance just above 0 (an exact copy missed at
    threshold 0) or just below. So a distance under _ROUNDING is read as 0. For two 40-byte hashes a
    true distance between 0 and _ROUNDING is possible (by Lagrange's identity it is at least about
    3e-20) but takes a constructed pair: JPEG copies at quality 90 to 98 whose hashes differ
    were 4e-6 or more apart, in OpenCV's sample photographs.

    A hash with no variance (all bytes equal: an all-black image's, a 1x1 image's) correlates with
    nothing, not even itself: compare() gives 0 there, a distance of 1 even to an identical hash,
    which the hasher puts at 0 (_flat). Any other flat image hashes to a pattern set by its size alone, not its colour: flat
    images of one size are at distance 0 from each other, whatever their colours."""
    distance = 1.0 - peak
    return np.where(distance < _ROUNDING, 0.0, distance)


_ROUNDING = 1e-12  # float64 rounding in these 40-term sums is a few 1e-16


def _centred(hashes: np.ndarray):
    """compare() in float: each hash less its mean, and its population standard deviation."""
    values = np.asarray(hashes, dtype=np.float64)
    return values - values.mean(axis=-1, keepdims=True), values.std(axis=-1)


def _shifted(hashes: np.ndarray):
    """Every circular shift of every centred hash: (N, shifts, length)."""
    centred, std = _centred(hashes)
    length = centred.shape[-1]
    index = (np.arange(length)[None, :] - np.arange(length)[:, None]) % length  # [shift, j] -> j - shift
    return centred[:, index], std


def _peak(covariance: np.ndarray, std_a: np.ndarray, std_b: np.ndarray) -> np.ndarray:
    """compare()'s peak: max over shifts of covariance / (std_a * std_b + 1e-20), floored at DBL_MIN."""
    correlation = covariance / (std_a * std_b + 1e-20)
    return np.maximum(correlation.max(axis=-1), np.finfo(np.float64).tiny)


@dataclass(frozen=True)
class ColorMomentHash(OpenCVHash):
    name = "ColorMomentHash"
    description = ("cv2.img_hash.ColorMomentHash: 7 Hu moments of each HSV and YCrCb channel of the "
                   "blurred 512x512 image, 42 floats")
    distance_kind = "10000*L2"  # exactly compare(): cv::norm(NORM_L2) * 10000
    cpu_exact = False  # float Hu moments: the last digits follow the CPU's vector instructions
    # No upper bound: 100 is about the 70th percentile between unrelated photographs (the median
    # is near 50; gray images sit far closer, colour ones up to ~180).
    distance_max = 100.0
    distance_bounded = False

    def create(self):
        return cv2.img_hash.ColorMomentHash_create()

    def distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        difference = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
        return 10000.0 * np.sqrt(np.einsum("ij,ij->i", difference, difference))

    def cross_distance(self, a: np.ndarray, b: np.ndarray, block: int = 256) -> np.ndarray:
        # Differences, not |a|^2 + |b|^2 - 2ab: that form cancels to noise for near-equal hashes.
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        out = np.empty((len(a), len(b)), dtype=np.float64)
        for start in range(0, len(a), block):
            difference = a[start:start + block, None, :] - b[None, :, :]
            out[start:start + block] = 10000.0 * np.sqrt(np.einsum("ijk,ijk->ij", difference, difference))
        return out
