"""Photometric transforms: colour and tone."""

from typing import Annotated

import cv2
import numpy as np

from harness.params import Doc, Range
from transforms import transform


@transform
def grayscale(image: np.ndarray) -> np.ndarray:
    """Drop colour: BGR -> GRAY -> BGR, three equal channels again."""
    return cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)


@transform
def gamma(
    image: np.ndarray,
    gamma: Annotated[float, Range(0, 10, open_low=True), Doc("exponent; <1 brightens, >1 darkens")],
) -> np.ndarray:
    """Gamma curve through a 256-entry table: clip((i/255)**gamma * 255, 0, 255) as uint8, with cv2.LUT."""
    table = np.clip((np.arange(256) / 255.0) ** gamma * 255.0, 0, 255).astype(np.uint8)
    return cv2.LUT(image, table)
