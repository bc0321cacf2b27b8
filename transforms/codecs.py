"""Codecs: re-encoding round trips, in memory (no intermediate files)."""

from typing import Annotated

import cv2
import numpy as np

from harness.params import Doc, Range, Stronger
from harness.transforms import TransformError, transform

# Bit-exact across processors (transforms.cpu_exact): libjpeg-turbo's and libwebp's vector code
# gives their scalar code's bytes (measured without AVX), and PNG is lossless.


def _round_trip(image: np.ndarray, ext: str, params: list[int]) -> np.ndarray:
    ok, buffer = cv2.imencode(ext, image, params)
    if not ok:
        raise TransformError(f"OpenCV could not encode the image as {ext}")
    return cv2.imdecode(buffer, cv2.IMREAD_COLOR)


@transform
def jpeg(
    image: np.ndarray,
    # from 1: libjpeg takes quality 0 as 1, and two labels for the same pixels would be two pairs
    quality: Annotated[int, Stronger("lower"), Range(1, 100), Doc("JPEG quality; lower compresses harder")],
) -> np.ndarray:
    """JPEG round trip at `quality` with cv2.imencode / cv2.imdecode."""
    return _round_trip(image, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, quality])


@transform
def webp(
    image: np.ndarray,
    quality: Annotated[int, Stronger("lower"), Range(1, 100),
        Doc("WebP quality; lower compresses harder (100 is still lossy)")],
) -> np.ndarray:
    """WebP round trip at `quality` with cv2.imencode / cv2.imdecode (WebP: at most 16383 px a side)."""
    rows, cols = image.shape[:2]
    if max(rows, cols) > WEBP_MAX_SIDE:  # OpenCV's own error is an assertion: "size > 0 in function 'write'"
        raise TransformError(f"WebP holds images of at most {WEBP_MAX_SIDE} px a side; this one is {cols}x{rows}")
    return _round_trip(image, ".webp", [cv2.IMWRITE_WEBP_QUALITY, quality])


WEBP_MAX_SIDE = 16383  # the format's limit (14 bits a side)


@transform
def png(
    image: np.ndarray,
    compression: Annotated[int, Range(0, 9), Doc("zlib level; changes size and speed, never the pixels")] = 1,
) -> np.ndarray:
    """PNG round trip (lossless: the output equals the input), a control for the codec path."""
    return _round_trip(image, ".png", [cv2.IMWRITE_PNG_COMPRESSION, compression])
