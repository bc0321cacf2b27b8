"""Geometric transforms: size and position."""

from typing import Annotated, Literal

import cv2
import numpy as np

from harness.params import Doc, Range
from transforms import TransformError, transform

INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "area": cv2.INTER_AREA,
    "cubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
}
Interpolation = Literal["nearest", "linear", "area", "cubic", "lanczos"]


@transform
def scale(
    image: np.ndarray,
    factor: Annotated[float, Range(0, 16, open_low=True), Doc("new size / old size, per side")],
    interpolation: Annotated[Interpolation, Doc("cv2.resize interpolation; linear is OpenCV's default")] = "linear",
) -> np.ndarray:
    """Resize both sides by `factor` (size rounded down, at least 1 px), as cv2.resize(img, (w*f, h*f))."""
    height, width = image.shape[:2]
    size = (max(1, int(width * factor)), max(1, int(height * factor)))
    return cv2.resize(image, size, interpolation=INTERPOLATIONS[interpolation])


@transform
def crop(
    image: np.ndarray,
    x: Annotated[int, Range(0), Doc("left column of the window")],
    y: Annotated[int, Range(0), Doc("top row of the window")],
    width: Annotated[int, Range(1), Doc("window width in px")],
    height: Annotated[int, Range(1), Doc("window height in px")],
    dx: Annotated[int, Doc("move the window right by dx px (simulates translation)")] = 0,
    dy: Annotated[int, Doc("move the window down by dy px")] = 0,
) -> np.ndarray:
    """Cut the width x height window at (x + dx, y + dy); two crops offset by d simulate a shift without borders."""
    left, top = x + dx, y + dy
    rows, cols = image.shape[:2]
    if left < 0 or top < 0 or left + width > cols or top + height > rows:
        raise TransformError(
            f"crop window {width}x{height} at (x={left}, y={top}) does not fit in a {cols}x{rows} image")
    return image[top:top + height, left:left + width].copy()
