"""Geometric transforms: size and position."""

import math
from typing import Annotated, Literal

import cv2
import numpy as np

from harness.params import Doc, Range, Stronger, Unit
from harness.transforms import Color, TransformError, output_size, transform

# Crops, flips and borders copy pixels; for the resizes see _resize_exact, for rotate its mark.

INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "area": cv2.INTER_AREA,
    "cubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
}
Interpolation = Literal["nearest", "linear", "area", "cubic", "lanczos"]


def _resize_exact(params: dict) -> bool:
    """Whether a cv2.resize with these parameters is bit-exact across processors. Cubic is not: OpenCV
    hands it to Intel's IPP where it has it (x86-64), whose result follows IPP's vector level and
    differs from OpenCV's own code (measured on 8 photographs at factors 0.3, 0.5 and 1.7: 1 to 8
    changed with OPENCV_IPP=disabled or =sse42). Area is not either: where the factor is no whole
    fraction of the image's sides, OpenCV weighs the pixels in floating point, which its ARM build
    rounds otherwise (measured against an arm64 build, .ci/arm64: scale 0.3, 0.5 and 0.7 changed 2 to
    10 of 14 images). Nearest, linear and lanczos gave the same pixels on both (fixed point)."""
    return params["interpolation"] not in ("cubic", "area")


BORDERS = {"constant": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT_101, "replicate": cv2.BORDER_REPLICATE}


@transform(cpu_exact=_resize_exact)
def scale(
    image: np.ndarray,
    factor: Annotated[float, Range(0, 16, open_low=True), Doc("new size / old size, per side")],
    interpolation: Annotated[Interpolation, Doc("cv2.resize interpolation; linear is OpenCV's default")] = "linear",
) -> np.ndarray:
    """Resize both sides by `factor` (size rounded down, at least 1 px), as cv2.resize(img, (w*f, h*f))."""
    height, width = image.shape[:2]
    size = output_size(max(1, whole(width * factor)), max(1, whole(height * factor)), image)
    return cv2.resize(image, size, interpolation=INTERPOLATIONS[interpolation])


def whole(value: float) -> int:
    """`value` rounded down, unless float arithmetic put it just under a whole number: 800 x 0.57
    is 455.99999999999994 in binary, which int() made 455, one pixel short (and 0.29 cut one side
    of 600 x 800 and not the other, changing its aspect)."""
    return math.floor(round(value, 9))


@transform
def crop(
    image: np.ndarray,
    x: Annotated[int, Unit("px"), Range(0), Doc("left column of the window")],
    y: Annotated[int, Unit("px"), Range(0), Doc("top row of the window")],
    width: Annotated[int, Unit("px"), Range(1), Doc("window width in px")],
    height: Annotated[int, Unit("px"), Range(1), Doc("window height in px")],
    dx: Annotated[int, Unit("px"), Doc("move the window right by dx px (simulates translation)")] = 0,
    dy: Annotated[int, Unit("px"), Doc("move the window down by dy px")] = 0,
) -> np.ndarray:
    """Cut the width x height window at (x + dx, y + dy); two crops offset by d simulate a shift without borders."""
    left, top = x + dx, y + dy
    rows, cols = image.shape[:2]
    if left < 0 or top < 0 or left + width > cols or top + height > rows:
        raise TransformError(
            f"crop window {width}x{height} at (x={left}, y={top}) does not fit in a {cols}x{rows} image")
    return image[top:top + height, left:left + width].copy()


@transform  # exact: warpAffine interpolates in fixed point (unchanged without IPP or AVX, every interpolation)
def rotate(
    image: np.ndarray,
    angle: Annotated[float, Unit("degrees"), Range(-360, 360), Doc("degrees, counter-clockwise, about the centre")],
    crop: Annotated[bool, Doc("false: keep the canvas, fill the corners; true: keep only the largest "
                              "upright rectangle inside the rotated image (no border)")] = False,
    color: Annotated[Color, Doc("BGR fill of the uncovered corners when crop is false")] = (0, 0, 0),
    interpolation: Annotated[Interpolation, Doc("cv2.warpAffine interpolation")] = "linear",
) -> np.ndarray:
    """Rotate by `angle` about the centre (cv2.warpAffine): same canvas, corners filled, or cropped to no border."""
    rows, cols = image.shape[:2]
    matrix = cv2.getRotationMatrix2D(((cols - 1) / 2, (rows - 1) / 2), angle, 1.0)
    flags = INTERPOLATIONS[interpolation]
    if not crop:
        return cv2.warpAffine(image, matrix, (cols, rows), flags=flags, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=tuple(int(c) for c in color))
    width, height = _inner_rectangle(cols, rows, math.radians(angle))
    matrix[:, 2] += ((width - cols) / 2, (height - rows) / 2)  # keep the centre at the output's centre
    # Replicate, not fill: the rectangle touches the rotated edges, where interpolation
    # would otherwise blend in a fill colour.
    return cv2.warpAffine(image, matrix, (width, height), flags=flags, borderMode=cv2.BORDER_REPLICATE)


def _inner_rectangle(width: int, height: int, radians: float) -> tuple[int, int]:
    """Size of the largest axis-aligned rectangle, centred, inside a width x height one rotated by `radians`."""
    sin_a, cos_a = abs(math.sin(radians)), abs(math.cos(radians))
    long_side, short_side = max(width, height), min(width, height)
    if short_side <= 2 * sin_a * cos_a * long_side or abs(sin_a - cos_a) < 1e-10:
        half = short_side / 2  # two opposite corners touch the rotated long sides
        w, h = (half / sin_a, half / cos_a) if width >= height else (half / cos_a, half / sin_a)
    else:  # all four corners touch the rotated sides
        cos_2a = cos_a * cos_a - sin_a * sin_a
        w, h = (width * cos_a - height * sin_a) / cos_2a, (height * cos_a - width * sin_a) / cos_2a
    return max(1, int(w + 1e-6)), max(1, int(h + 1e-6))


@transform
def hflip(image: np.ndarray) -> np.ndarray:
    """Mirror left-right: cv2.flip(img, 1)."""
    return cv2.flip(image, 1)


@transform
def vflip(image: np.ndarray) -> np.ndarray:
    """Mirror top-bottom: cv2.flip(img, 0)."""
    return cv2.flip(image, 0)


@transform
def center_crop(
    image: np.ndarray,
    fraction: Annotated[float, Stronger("lower"), Range(0, 1, open_low=True), Doc("kept part of each side")],
    dx: Annotated[float, Unit("× image size"), Range(-1, 1),
        Doc("move the window right by dx x the image width (a shift)")] = 0.0,
    dy: Annotated[float, Unit("× image size"), Range(-1, 1),
        Doc("move the window down by dy x the image height")] = 0.0,
) -> np.ndarray:
    """Keep the centred window of `fraction` x each side, optionally moved by a fraction of the image size.

    Two such crops, one moved, simulate a shift without borders on images of any
    size; on 512 px, fraction 0.5 and dx = dy = d/512 give the article's crops.
    """
    return _window(image, fraction, 0.5, 0.5, dx, dy)


@transform
def crop_fraction(
    image: np.ndarray,
    fraction: Annotated[float, Stronger("lower"), Range(0, 1, open_low=True), Doc("kept part of each side")],
    x: Annotated[float, Range(0, 1), Doc("left of the window, as a part of the free width: 0 left, 1 right")] = 0.5,
    y: Annotated[float, Range(0, 1), Doc("top of the window, as a part of the free height: 0 top, 1 bottom")] = 0.5,
) -> np.ndarray:
    """Keep a window of `fraction` x each side, placed at relative (x, y) of the space left over."""
    return _window(image, fraction, x, y)


def _window(image: np.ndarray, fraction: float, x: float, y: float, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    """A window of `fraction` x each side at relative (x, y) of the free space, moved by (dx, dy) x the size."""
    rows, cols = image.shape[:2]
    width, height = max(1, round(cols * fraction)), max(1, round(rows * fraction))
    left = whole((cols - width) * x) + round(dx * cols)
    top = whole((rows - height) * y) + round(dy * rows)
    if left < 0 or top < 0 or left + width > cols or top + height > rows:
        raise TransformError(f"a {width}x{height} window moved by ({dx:g}, {dy:g}) of the size leaves "
                             f"the {cols}x{rows} image")
    return image[top:top + height, left:left + width].copy()


@transform(cpu_exact=_resize_exact)
def aspect(
    image: np.ndarray,
    ratio: Annotated[float, Range(0, 16, open_low=True), Doc("new width / old width; the height is kept")],
    interpolation: Annotated[Interpolation, Doc("cv2.resize interpolation")] = "linear",
) -> np.ndarray:
    """Change the aspect ratio: stretch the width by `ratio` (rounded, at least 1 px), keep the height."""
    rows, cols = image.shape[:2]
    size = output_size(max(1, round(cols * ratio)), rows, image)
    return cv2.resize(image, size, interpolation=INTERPOLATIONS[interpolation])


@transform
def pad(
    image: np.ndarray,
    fraction: Annotated[float, Stronger("higher"), Range(0, 1),
        Doc("border on each side, as a part of that side's length")],
    mode: Annotated[Literal["constant", "reflect", "replicate"],
                    Doc("fill with `color`, mirror (edge not repeated) or repeat the edge")] = "constant",
    color: Annotated[Color, Doc("BGR fill when mode is constant")] = (0, 0, 0),
) -> np.ndarray:
    """Add a border: fraction x height above and below, fraction x width left and right (cv2.copyMakeBorder)."""
    rows, cols = image.shape[:2]
    dy, dx = round(rows * fraction), round(cols * fraction)
    output_size(cols + 2 * dx, rows + 2 * dy, image)
    return cv2.copyMakeBorder(image, dy, dy, dx, dx, BORDERS[mode], value=tuple(int(c) for c in color))


@transform(cpu_exact=_resize_exact)  # cubic by default: not exact unless told another interpolation
def resize_max(
    image: np.ndarray,
    size: Annotated[int, Unit("px"), Stronger("lower"), Range(1, 65536),
        Doc("length of the longer side after resizing, px")],
    interpolation: Annotated[Interpolation, Doc("cv2.resize interpolation")] = "cubic",
) -> np.ndarray:
    """Resize so the longer side is `size` px, the shorter one in proportion (rounded, at least 1 px)."""
    rows, cols = image.shape[:2]
    factor = size / max(rows, cols)
    shape = (size, max(1, round(rows * factor))) if cols >= rows else (max(1, round(cols * factor)), size)
    return cv2.resize(image, output_size(*shape, image), interpolation=INTERPOLATIONS[interpolation])


@transform
def border(
    image: np.ndarray,
    top: Annotated[float, Stronger("higher"), Range(0, 10), Doc("border above, as a part of the height")] = 0.0,
    bottom: Annotated[float, Stronger("higher"), Range(0, 10), Doc("border below, as a part of the height")] = 0.0,
    left: Annotated[float, Stronger("higher"), Range(0, 10), Doc("border on the left, as a part of the width")] = 0.0,
    right: Annotated[float, Stronger("higher"), Range(0, 10), Doc("border on the right, as a part of the width")] = 0.0,
    color: Annotated[Color, Doc("BGR fill")] = (0, 0, 0),
) -> np.ndarray:
    """Add a solid border of its own size on each side (rounded to px), with cv2.copyMakeBorder."""
    rows, cols = image.shape[:2]
    above, below, before, after = round(rows * top), round(rows * bottom), round(cols * left), round(cols * right)
    output_size(cols + before + after, rows + above + below, image)
    return cv2.copyMakeBorder(image, above, below, before, after, cv2.BORDER_CONSTANT,
                              value=tuple(int(c) for c in color))


@transform
def crop_area(
    image: np.ndarray,
    removed: Annotated[float, Stronger("higher"), Range(0, 0.99),
        Doc("part of the image's surface cut away (Copydays' crop %)")],
    x: Annotated[float, Range(0, 1), Doc("left of the kept window, as a part of the free width")] = 0.5,
    y: Annotated[float, Range(0, 1), Doc("top of the kept window, as a part of the free height")] = 0.5,
) -> np.ndarray:
    """Cut away `removed` of the surface: keep a window whose sides are sqrt(1 - removed) of the image's."""
    return _window(image, math.sqrt(1 - removed), x, y)
