"""Filters: smoothing."""

from typing import Annotated

import cv2
import numpy as np

from harness.params import Doc, Range
from transforms import transform


@transform
def blur(
    image: np.ndarray,
    kernel: Annotated[int, Range(1, 255), Doc("box side in px")],
) -> np.ndarray:
    """Box blur: the mean over a kernel x kernel window (cv2.blur)."""
    return cv2.blur(image, (kernel, kernel))
