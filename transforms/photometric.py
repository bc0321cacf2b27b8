"""Photometric transforms: colour and tone."""

from typing import Annotated

import cv2
import numpy as np

from harness.params import Doc, Range, Stronger, Unit
from harness.transforms import transform

# Bit-exact across processors (transforms.cpu_exact) but hue, saturation and enhance_contrast: the LUTs
# hold rounded values (gamma's float powers move in the last bits with NumPy's SIMD, yet round alike for
# every gamma from 0.05 to 10 in steps of 0.01, measured), vignette multiplies without summing, and
# Pillow's brightness enhancer scales alone.


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


def _lut(image: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Map each channel value through a 256-entry table, rounded and saturated to uint8."""
    return cv2.LUT(image, np.clip(np.rint(values), 0, 255).astype(np.uint8))


def _in_hsv(image: np.ndarray, edit) -> np.ndarray:
    """Edit the image in float HSV (H in degrees [0, 360), S and V in [0, 1]) and convert back, rounded.

    Float, not 8-bit HSV, so that a neutral edit returns the input exactly."""
    hsv = cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_BGR2HSV)
    edit(hsv)
    return np.clip(np.rint(cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR) * 255), 0, 255).astype(np.uint8)


@transform
def brightness(
    image: np.ndarray,
    delta: Annotated[int, Unit("grey levels"), Range(-255, 255), Doc("grey levels added to every channel")],
) -> np.ndarray:
    """Add `delta` to every channel, saturating at 0 and 255."""
    return _lut(image, np.arange(256) + delta)


@transform
def contrast(
    image: np.ndarray,
    factor: Annotated[float, Range(0, 10), Doc("<1 flattens towards grey 128, >1 stretches away from it")],
) -> np.ndarray:
    """Scale every channel around mid-grey: (v - 128) * factor + 128, rounded and saturated."""
    return _lut(image, (np.arange(256) - 128) * factor + 128)


@transform(cpu_exact=False)  # float HSV conversion: OpenCV's AVX2 code rounds otherwise (5 of 8 photographs)
def saturation(
    image: np.ndarray,
    factor: Annotated[float, Range(0, 10), Doc("0 = grey (all channels = max), 1 = unchanged, >1 more vivid")],
) -> np.ndarray:
    """Scale the HSV saturation by `factor` (clipped to 1), in float HSV."""
    def edit(hsv):
        hsv[..., 1] = np.clip(hsv[..., 1] * factor, 0, 1)
    return _in_hsv(image, edit)


@transform(cpu_exact=False)  # float HSV conversion: OpenCV's AVX2 code rounds otherwise (5 of 8 photographs)
def hue(
    image: np.ndarray,
    degrees: Annotated[float, Unit("degrees"), Range(-360, 360),
        Doc("hue rotation; 180 swaps colours for their complements")],
) -> np.ndarray:
    """Rotate the HSV hue by `degrees`, wrapping around 360, in float HSV."""
    def edit(hsv):
        hsv[..., 0] = (hsv[..., 0] + degrees) % 360
    return _in_hsv(image, edit)


@transform
def quantize(
    image: np.ndarray,
    levels: Annotated[int, Stronger("lower"), Range(2, 256),
        Doc("values kept per channel (levels**3 colours at most)")],
) -> np.ndarray:
    """Posterise: each channel to `levels` evenly spaced values from 0 to 255 (v*levels//256 * 255/(levels-1))."""
    return _lut(image, (np.arange(256) * levels // 256) * 255 / (levels - 1))


@transform
def vignette(
    image: np.ndarray,
    sigma: Annotated[float, Stronger("lower"), Range(0, 100, open_low=True),
        Doc("Gaussian sigma as a part of each side; "
                                                               "smaller darkens the edges more")] = 0.5,
) -> np.ndarray:
    """Darken towards the edges: multiply by the outer product of two cv2.getGaussianKernel(side,
    sigma x side) columns, scaled to a peak of 1, and truncate to uint8 (perception's benchmark)."""
    rows, cols = image.shape[:2]
    mask = cv2.getGaussianKernel(rows, rows * sigma) @ cv2.getGaussianKernel(cols, cols * sigma).T
    return (image * (mask / mask.max())[..., np.newaxis]).astype(np.uint8)


def _pil_enhance(image: np.ndarray, enhancer: str, factor: float) -> np.ndarray:
    from PIL import Image, ImageEnhance  # the owning library of these two edits
    rgb = Image.fromarray(np.ascontiguousarray(image[..., ::-1]))
    out = getattr(ImageEnhance, enhancer)(rgb).enhance(factor)
    return np.ascontiguousarray(np.asarray(out)[..., ::-1])


@transform
def enhance_brightness(
    image: np.ndarray,
    factor: Annotated[float, Range(0, 10), Doc("0 black, 1 unchanged, >1 brighter")],
) -> np.ndarray:
    """Pillow's ImageEnhance.Brightness: every channel multiplied by `factor` (in float32), truncated
    (not rounded: 101 x 1.5 gives 151) and saturated."""
    return _pil_enhance(image, "Brightness", factor)


# Not exact: Pillow blends towards the mean grey as a + f * (b - a) in C floats, which its ARM build rounds
# otherwise (12 of 14 images changed on arm64 at factor 0.8). Brightness blends with black (a = 0).
@transform(cpu_exact=False)
def enhance_contrast(
    image: np.ndarray,
    factor: Annotated[float, Range(0, 10), Doc("0 flat grey at the mean luminance, 1 unchanged, >1 more contrast")],
) -> np.ndarray:
    """Pillow's ImageEnhance.Contrast: blend away from (or towards) a grey at the image's mean luminance."""
    return _pil_enhance(image, "Contrast", factor)
