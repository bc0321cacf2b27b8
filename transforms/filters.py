"""Filters: smoothing, sharpening and mosaic."""

from typing import Annotated, Literal

import cv2
import numpy as np

from harness.params import Doc, Range, Stronger, Unit
from harness.transforms import transform

# Bit-exact across processors (transforms.cpu_exact) but for sharpen and pixelate: OpenCV's box, Gaussian
# and median filters work in fixed point (the same pixels on x86-64 and an arm64 build, measured).


@transform
def blur(
    image: np.ndarray,
    kernel: Annotated[int, Unit("px"), Stronger("higher"), Range(1, 255), Doc("box side in px")],
) -> np.ndarray:
    """Box blur: the mean over a kernel x kernel window (cv2.blur)."""
    return cv2.blur(image, (kernel, kernel))


# Median windows must be odd; listing them lets the config check catch an even one before any work.
OddKernel = Literal[1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31]


@transform
def gaussian_blur(
    image: np.ndarray,
    sigma: Annotated[float, Unit("px"), Stronger("higher"), Range(0, 100, open_low=True),
        Doc("standard deviation in px")],
) -> np.ndarray:
    """Gaussian blur, cv2.GaussianBlur(img, (0, 0), sigma): OpenCV sizes the kernel, round(6*sigma + 1) | 1 px."""
    return cv2.GaussianBlur(image, (0, 0), sigma)


@transform
def median_blur(
    image: np.ndarray,
    kernel: Annotated[OddKernel, Unit("px"), Stronger("higher"), Doc("odd window side in px")],
) -> np.ndarray:
    """Median filter over a kernel x kernel window (cv2.medianBlur)."""
    return cv2.medianBlur(image, kernel)


# cv2.addWeighted weighs in floating point, and its vector code rounds otherwise than its plain code:
# amount 0.37 moved 32 values of a photograph by 1 with OpenCV's optimizations off (amounts such as 0.5
# or 1.5 happened to match, which nothing promises), enough to change pHash and dHash bits.
@transform(cpu_exact=False)
def sharpen(
    image: np.ndarray,
    amount: Annotated[float, Stronger("higher"), Range(0, 10),
        Doc("how much of the detail (image - blurred) is added back")],
    sigma: Annotated[float, Unit("px"), Range(0, 100, open_low=True), Doc("Gaussian sigma of the blur, px")] = 1.0,
) -> np.ndarray:
    """Unsharp mask: (1 + amount) * img - amount * GaussianBlur(img, sigma), saturated (cv2.addWeighted)."""
    return cv2.addWeighted(image, 1 + amount, cv2.GaussianBlur(image, (0, 0), sigma), -amount, 0)


# Not exact: INTER_AREA weighs in floating point where `block` is no whole part of a side, which OpenCV's
# ARM build rounds otherwise (1 or 2 of 14 images changed on arm64 at blocks 2, 4 and 8).
@transform(cpu_exact=False)
def pixelate(
    image: np.ndarray,
    block: Annotated[int, Unit("px"), Stronger("higher"), Range(1), Doc("mosaic block side in px")],
) -> np.ndarray:
    """Mosaic: shrink by `block` with INTER_AREA (at least 1 px), then enlarge back with INTER_NEAREST."""
    rows, cols = image.shape[:2]
    small = cv2.resize(image, (max(1, round(cols / block)), max(1, round(rows / block))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (cols, rows), interpolation=cv2.INTER_NEAREST)
