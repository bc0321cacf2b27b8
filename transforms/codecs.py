"""Codecs: lossy re-encoding round trips, in memory (no intermediate files)."""

from typing import Annotated

import cv2
import numpy as np

from harness.params import Doc, Range
from transforms import TransformError, transform


def _round_trip(image: np.ndarray, ext: str, params: list[int]) -> np.ndarray:
    ok, buffer = cv2.imencode(ext, image, params)
    if not ok:
        raise TransformError(f"OpenCV could not encode the image as {ext}")
    return cv2.imdecode(buffer, cv2.IMREAD_COLOR)


@transform
def jpeg(
    image: np.ndarray,
    quality: Annotated[int, Range(0, 100), Doc("JPEG quality; lower compresses harder")],
) -> np.ndarray:
    """JPEG round trip at `quality` with cv2.imencode / cv2.imdecode."""
    return _round_trip(image, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, quality])
