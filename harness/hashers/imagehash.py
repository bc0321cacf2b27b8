"""The ImageHash library (`pip install ImageHash`): its hash functions, called as they are.

Images go to the library as PIL RGB, converted from the harness's uint8 BGR. Bit hashes
are stored as bit-packed uint8 rows (`np.packbits` of the ImageHash's flattened bool
array, zero-padded to whole bytes), so the Hamming distance between two rows is the
library's own `h1 - h2`. ImageHash (and PyWavelets, for whash) are imported on first
use: a missing package makes the hasher unavailable, not the config invalid.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal, Sequence

import numpy as np

from harness.errors import UnavailableError
from harness.hashers.base import BitHasher, Hasher, from_params
from harness.hashers.layouts import layouts
from harness.params import Doc, Range

HashSize = Annotated[int, Range(2, 128), Doc("side of the hash's bit square: hash_size**2 bits")]


def library():
    """The `imagehash` module, or UnavailableError saying how to install it."""
    try:
        import imagehash
    except ImportError as exc:
        raise UnavailableError(f"the ImageHash package is not installed ({exc}); pip install ImageHash") from None
    return imagehash


def to_pil(image: np.ndarray, mode: str = "RGB"):
    """uint8 BGR (H, W, 3) -> PIL image in `mode` ("RGB", or "L": PIL's own gray conversion, which
    the gray-based functions would make first anyway), shared between hashers (see layouts)."""
    shared = layouts(image)
    return shared.pil_gray if mode == "L" else shared.pil_rgb


def power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


@dataclass(frozen=True)
class ImageHashBits(BitHasher):
    """One ImageHash function whose ImageHash is stored bit-packed; Hamming = the library's `-`."""

    # The PIL mode the function is given: "L" for the functions that convert to gray first (the
    # conversion is then made once for all of them), "RGB" for those that need the colours.
    pil_mode: ClassVar[str] = "L"

    def prepare(self) -> None:
        library()

    def compute(self, image):
        """PIL RGB image -> the library's ImageHash."""
        raise NotImplementedError

    def bits(self) -> int:
        """The number of bits of every hash (all images give the same)."""
        raise NotImplementedError

    @from_params
    def distance_max(self) -> float:
        """The number of bits."""
        return float(self.bits())

    def hash_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(images), (self.bits() + 7) // 8), np.uint8)
        for row, image in enumerate(images):
            bits = np.asarray(self.compute(to_pil(image, self.pil_mode)).hash, dtype=bool).ravel()
            if bits.size != self.bits():  # a bug, not an input problem: bits() must know every length
                raise AssertionError(f"{self.name} gave {bits.size} bits, not {self.bits()}")
            out[row] = np.packbits(bits)
        return out


@dataclass(frozen=True)
class AverageHash(ImageHashBits):
    hash_size: HashSize = 8

    name = "imagehash.average_hash"
    description = "imagehash.average_hash: hash_size^2 gray thumbnail (Lanczos) thresholded at its mean"

    def compute(self, image):
        return library().average_hash(image, hash_size=self.hash_size)

    def bits(self) -> int:
        return self.hash_size ** 2


@dataclass(frozen=True)
class PHash(ImageHashBits):
    hash_size: HashSize = 8
    highfreq_factor: Annotated[int, Range(1, 32), Doc(
        "the DCT is taken of a (hash_size*highfreq_factor)^2 gray thumbnail")] = 4

    name = "imagehash.phash"
    description = "imagehash.phash: 2-D DCT of a gray thumbnail, hash_size^2 low frequencies against their median"

    def warm_up(self) -> None:
        # phash imports SciPy's fftpack on each call: the first call pays 0.4 s of imports. Paid here,
        # before the workers are forked, it is paid once, not by every worker on its first image.
        import scipy.fftpack  # noqa: F401

    def compute(self, image):
        return library().phash(image, hash_size=self.hash_size, highfreq_factor=self.highfreq_factor)

    def bits(self) -> int:
        return self.hash_size ** 2


@dataclass(frozen=True)
class DHash(ImageHashBits):
    hash_size: HashSize = 8

    name = "imagehash.dhash"
    description = "imagehash.dhash: signs of horizontal differences in a (hash_size+1) x hash_size gray thumbnail"

    def compute(self, image):
        return library().dhash(image, hash_size=self.hash_size)

    def bits(self) -> int:
        return self.hash_size ** 2


@dataclass(frozen=True)
class WHash(ImageHashBits):
    hash_size: Annotated[int, Range(2, 128), Doc("a power of 2; haar gives hash_size**2 bits, "
                                                  "db4 a few more (boundary coefficients)")] = 8
    image_scale: Annotated[int | None, Range(2, 4096), Doc(
        "a power of 2 >= hash_size: the side images are resized to; null = the largest power of 2 "
        "within each image (the library's default; haar only)")] = None
    mode: Annotated[Literal["haar", "db4"], Doc("the wavelet: Haar or Daubechies-4")] = "haar"
    remove_max_haar_ll: Annotated[bool, Doc("remove the lowest (LL) Haar frequency first")] = True

    name = "imagehash.whash"
    description = "imagehash.whash: wavelet (haar or db4) low-low band of the gray image against its median"

    def __post_init__(self):
        super().__post_init__()
        if not power_of_two(self.hash_size):
            raise ValueError(f"hash_size: {self.hash_size} is not a power of 2")
        if self.image_scale is not None:
            if not power_of_two(self.image_scale):
                raise ValueError(f"image_scale: {self.image_scale} is not a power of 2")
            if self.image_scale < self.hash_size:
                raise ValueError(f"image_scale: {self.image_scale} is below hash_size {self.hash_size}")
        elif self.mode == "db4":
            # db4's band width follows the scale, so images under 8*hash_size px would give
            # shorter hashes, which cannot be compared (the library's `-` raises).
            raise ValueError(f"image_scale: mode 'db4' needs a fixed image_scale (a power of 2, e.g. "
                             f"{max(64, 8 * self.hash_size)}): with null, small images give hashes of another length")

    def prepare(self) -> None:
        library()
        try:
            import pywt  # noqa: F401  (whash imports it on each call)
        except ImportError as exc:
            raise UnavailableError(f"imagehash.whash needs PyWavelets ({exc}); pip install PyWavelets") from None

    def compute(self, image):
        return library().whash(image, hash_size=self.hash_size, image_scale=self.image_scale, mode=self.mode,
                               remove_max_haar_ll=self.remove_max_haar_ll)

    def bits(self) -> int:
        if self.mode == "haar":
            return self.hash_size ** 2
        return _db4_bits(self.hash_size, self.image_scale)


@functools.lru_cache(maxsize=None)
def _db4_bits(hash_size: int, image_scale: int) -> int:
    """db4 pads each wavelet level, so its LL band is wider than hash_size; ask the library once."""
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pywt: "level too high, boundary effects" at small scales
        probe = library().whash(Image.new("RGB", (image_scale, image_scale)), hash_size=hash_size,
                                image_scale=image_scale, mode="db4")
    return int(probe.hash.size)


@dataclass(frozen=True)
class ColorHash(ImageHashBits):
    binbits: Annotated[int, Range(1, 16), Doc("bits per bin fraction; 14 bins, 14*binbits bits")] = 3

    pil_mode = "RGB"  # HSV bins
    name = "imagehash.colorhash"
    description = ("imagehash.colorhash: fractions of black, gray and 2x6 hue bins (faint, bright) "
                   "in HSV, binbits each")

    def compute(self, image):
        return library().colorhash(image, binbits=self.binbits)

    def bits(self) -> int:
        return 14 * self.binbits


@dataclass(frozen=True)
class CropResistantHash(Hasher):
    """Each row is the library's ImageMultiHash itself (a 1-D object array, one per image): the
    number of segments varies from image to image, and the library's own matching compares them.

    distance(a, b) = (a - b) / len(a.segment_hashes), the library's `ImageMultiHash.__sub__`
    (with this hasher's bit_error_rate) over a's segment count: a - b is the number of a's
    segments without a match in b within the bit-error rate, less a tie-breaker (1 - mean
    Hamming fraction of the matches), so it lies in [0, len(a.segment_hashes)]; dividing by
    the segment count puts it in [0, 1] for every image. It is asymmetric, like the library's:
    a holds the reference (the original), b the edited copy.
    """

    limit_segments: Annotated[int | None, Range(1, 1000), Doc(
        "hash only the largest N segments; null = all")] = None
    segment_threshold: Annotated[int, Range(0, 255), Doc(
        "gray level separating bright (hill) from dark (valley) segments")] = 128
    min_segment_size: Annotated[int, Range(0), Doc("smallest segment hashed, px of the segmentation image")] = 500
    segmentation_image_size: Annotated[int, Range(16, 2000), Doc(
        "side of the square gray image that is segmented, px")] = 300
    bit_error_rate: Annotated[float, Range(0, 1), Doc(
        "a segment matches when a segment of the other image is within this fraction of its bits")] = 0.25

    name = "imagehash.crop_resistant_hash"
    description = ("imagehash.crop_resistant_hash: dhash of each bright/dark segment's bounding box, "
                   "matched segment by segment (pure-Python segmentation: ~0.3 s an image)")
    distance_kind = "(a - b) / len(a.segment_hashes), a - b = ImageMultiHash `-`"
    distance_max = 1.0
    symmetric = False  # the share of a's segments without a match in b

    def prepare(self) -> None:
        library()

    def hash_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        imagehash = library()
        out = np.empty(len(images), dtype=object)
        for row, image in enumerate(images):
            out[row] = imagehash.crop_resistant_hash(
                to_pil(image, "L"), limit_segments=self.limit_segments, segment_threshold=self.segment_threshold,
                min_segment_size=self.min_segment_size, segmentation_image_size=self.segmentation_image_size)
        return out

    def encode_row(self, row) -> np.ndarray:
        """An ImageMultiHash as stored in the cache: its segments' hash bits, (segments, h, w) booleans."""
        return np.array([np.asarray(segment.hash, dtype=bool) for segment in row.segment_hashes], dtype=bool)

    def row_form(self):
        return "|b1", (None, 8, 8)  # the library's segment hash, an 8x8 dhash; the segment count varies

    def decode_rows(self, arrays) -> np.ndarray:
        imagehash = library()
        out = np.empty(len(arrays), dtype=object)
        for k, bits in enumerate(arrays):
            if bits.dtype != bool or bits.ndim != 3:
                raise ValueError(f"expected (segments, h, w) booleans, got {bits.dtype} {bits.shape}")
            out[k] = imagehash.ImageMultiHash([imagehash.ImageHash(segment) for segment in bits])
        return out

    def _one(self, a, b) -> float:
        return a.__sub__(b, bit_error_rate=self.bit_error_rate) / len(a.segment_hashes)

    def distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        # No vectorised form: the library matches segment lists of different lengths.
        return np.array([self._one(x, y) for x, y in zip(a, b)], dtype=np.float64)

    def cross_distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.array([[self._one(x, y) for y in b] for x in a], dtype=np.float64).reshape(len(a), len(b))
