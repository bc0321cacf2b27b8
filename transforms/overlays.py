"""Overlays: things drawn on top of the image."""

import os
from functools import lru_cache
from typing import Annotated, Literal

import cv2
import numpy as np

from harness.errors import shown
from harness.params import Check, Doc, FileContent, Range, Stronger, Unit
from harness.transforms import Color, Seed, TransformError, output_size, transform
from harness.transforms.geometry import whole

# Bit-exact across processors (transforms.cpu_exact) but for overlay_image, screenshot and cross wider than
# a pixel: OpenCV's drawing is integer and the NumPy blends round each operation as IEEE 754 says, while
# INTER_AREA resizes (overlay_image's logo, screenshot's picture) and Pillow's wide lines are floating
# point that OpenCV's and Pillow's ARM builds round otherwise (measured against an arm64 build, .ci/arm64).

BUILTIN_LOGO = "builtin:logo"
# The farthest a text may start from the image's corner, either way: past any image's side, and
# within the C int OpenCV takes a point's coordinates in (a larger one failed every image).
TEXT_REACH = 1 << 30


def hershey_problem(text: str) -> str | None:
    """Why OpenCV's Hershey fonts cannot draw `text` as written, or None: they have glyphs for
    printable ASCII only, and draw one line; anything else came out as question marks."""
    if "\n" in text or "\r" in text:
        return f"{shown(text)} has a line break; the text is drawn on one line"
    other = next((char for char in text if not " " <= char <= "~"), None)
    if other is not None:
        return f"{shown(text)} holds {other!r}, not printable ASCII: OpenCV's Hershey fonts draw it as '?'"
    return None


def visible_text_problem(text: str) -> str | None:
    """hershey_problem, and text that draws nothing (empty or blank): an edit that leaves every
    image as it was, scored as if it were one."""
    if not text.strip():
        return f"{shown(text)} draws nothing; give the words to draw"
    return hershey_problem(text)


@transform
def text(
    image: np.ndarray,
    scale: Annotated[float, Stronger("higher"), Range(0, 100, open_low=True), Doc("cv2.putText fontScale")],
    text: Annotated[str, Check(visible_text_problem), Doc("the words drawn: one line, printable ASCII")] = "Text",
    x: Annotated[int, Unit("px"), Range(-TEXT_REACH, TEXT_REACH), Doc("left of the baseline, px")] = 10,
    y: Annotated[int | None, Unit("px"), Range(-TEXT_REACH, TEXT_REACH),
        Doc("baseline row, px; null = 30 * scale")] = None,
    thickness: Annotated[int | None, Unit("px"), Range(1, 1000), Doc("stroke in px; null = 3 * scale")] = None,
    color: Annotated[Color, Doc("BGR colour")] = (255, 255, 255),
) -> np.ndarray:
    """Draw `text` with FONT_HERSHEY_SIMPLEX, anti-aliased; defaults place and weight it as the article did."""
    y = round(30 * scale) if y is None else y
    thickness = max(1, round(3 * scale)) if thickness is None else thickness
    check_text_draws(image, text, (x, y), scale, thickness, cv2.LINE_AA)
    out = image.copy()
    cv2.putText(out, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, tuple(int(c) for c in color),
                thickness, cv2.LINE_AA)
    return out


def check_text_draws(image: np.ndarray, text: str, origin: tuple[int, int], scale: float, thickness: int,
                     line_type: int) -> None:
    """A TransformError where `text` drawn at `origin` (its baseline's left) puts no pixel on
    `image`: the unchanged image would be scored as an edit (`text` at scale 100 puts its baseline
    at row 3,000; a watermark 3 images wide starts at the right edge, between its glyphs). Found by
    drawing it as the transform will, on a blank mask: exact, where getTextSize's box is not (a
    stroke reaches past it, and a box can cross the image where no glyph does)."""
    rows, cols = image.shape[:2]
    mask = np.zeros((rows, cols), np.uint8)
    cv2.putText(mask, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thickness, line_type)
    if not mask.any():
        (width, height), below = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        raise TransformError(f"the text, {width}x{height + below} px with its baseline's left at {origin}, puts no "
                             f"pixel on the {cols}x{rows} image: the unchanged image would be scored as an edit")


def overlay_problem(source: str) -> str | None:
    """Why `source` cannot be drawn, or None: checked with the parameters, so a config naming a
    missing or unreadable file stops before any work rather than failing every image. A path is
    relative to the directory the command runs from, as every path of a config is. A readable file
    is loaded here, once: load_overlay keeps it for the run."""
    if source.startswith("builtin:"):
        return None if source == BUILTIN_LOGO else f"unknown overlay '{source}'; the built-in one is '{BUILTIN_LOGO}'"
    if not os.path.exists(source):
        return f"no file at '{source}' (use '{BUILTIN_LOGO}' or an image file path)"
    try:
        load_overlay(source)
    except TransformError as exc:
        return str(exc)
    return None


def load_overlay(source: str) -> np.ndarray:
    """The overlay as read-only float32 BGRA in [0, 1], colour premultiplied by alpha; read once per
    source while its file keeps its size and time (a file replaced under the same name is read again)."""
    try:
        status = os.stat(source)
        signature = (status.st_size, status.st_mtime_ns, status.st_ino)
    except (OSError, ValueError):
        signature = None
    return _load_overlay(source, signature)


@lru_cache(maxsize=8)
def _load_overlay(source: str, signature) -> np.ndarray:
    if source == BUILTIN_LOGO:
        from skimage import data  # only when used
        bgra = cv2.cvtColor(data.logo(), cv2.COLOR_RGBA2BGRA)
    elif source.startswith("builtin:"):
        raise TransformError(f"unknown overlay '{source}'; the built-in one is '{BUILTIN_LOGO}'")
    else:
        bgra = _read_overlay(source)
        if bgra is None or bgra.dtype not in (np.uint8, np.uint16):
            raise TransformError(f"cannot read overlay image '{source}' (missing, or not an 8/16-bit image)")
        if bgra.dtype == np.uint16:
            bgra = (bgra >> 8).astype(np.uint8)
        if bgra.ndim == 2 or bgra.shape[2] != 4:
            bgra = cv2.cvtColor(bgra, cv2.COLOR_GRAY2BGRA if bgra.ndim == 2 else cv2.COLOR_BGR2BGRA)
    overlay = bgra.astype(np.float32) / 255
    overlay[..., :3] *= overlay[..., 3:]  # premultiplied, so resizing does not bleed hidden colours
    overlay.setflags(write=False)
    return overlay


MAX_OVERLAY_PIXELS = 1 << 24  # 4096x4096: held as float32 BGRA (256 MiB), and drawn at a part of the image's width
MAX_OVERLAY_BYTES = 64 << 20


def _read_overlay(source: str) -> np.ndarray | None:
    """An overlay file's pixels, as the run's images are read: a regular file of bounded size whose
    header (read by Pillow, which decodes nothing yet) promises a bounded number of pixels, else
    TransformError; None when it is missing or not an image."""
    import stat
    import warnings

    from PIL import Image

    try:
        status = os.stat(source)
    except OSError:
        return None
    if not stat.S_ISREG(status.st_mode):
        raise TransformError(f"overlay image '{source}' is not a regular file")
    if status.st_size > MAX_OVERLAY_BYTES:
        raise TransformError(f"overlay image '{source}' has {status.st_size:,} bytes; at most {MAX_OVERLAY_BYTES:,}")
    try:
        with warnings.catch_warnings():  # Pillow's bomb warning: the size is checked just below, in one line
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as header:
                width, height = header.size
    except Image.DecompressionBombError:  # past Pillow's own limit, far past this one
        raise TransformError(f"overlay image '{source}' has more than {MAX_OVERLAY_PIXELS:,} pixels") from None
    except Exception:  # Pillow's errors on files that are not images vary
        return None
    if width * height > MAX_OVERLAY_PIXELS:
        raise TransformError(f"overlay image '{source}' is {width}x{height}; at most {MAX_OVERLAY_PIXELS:,} pixels")
    from harness.images import decode_quietly  # here: only an overlay file needs it (and Pillow with it)

    with open(source, "rb") as file:
        data = file.read(MAX_OVERLAY_BYTES + 1)
    pixels = decode_quietly(data, cv2.IMREAD_UNCHANGED) if len(data) else None  # a damaged file logs nothing
    if pixels is not None and pixels.shape[0] * pixels.shape[1] > MAX_OVERLAY_PIXELS:  # a header that lied
        return None
    return pixels


@transform(cpu_exact=False)  # the float32 logo's INTER_AREA resize: 14 of 14 images changed on arm64 (opacity 0.7)
def overlay_image(
    image: np.ndarray,
    size: Annotated[float, Stronger("higher"), Range(0, 1, open_low=True),
        Doc("overlay width / image width (aspect kept)")] = 0.3,
    x: Annotated[float, Range(0, 1), Doc("left of the overlay, as a part of the free width: 0 left, 1 right")] = 0.5,
    y: Annotated[float, Range(0, 1), Doc("top of the overlay, as a part of the free height: 0 top, 1 bottom")] = 0.5,
    opacity: Annotated[float, Stronger("higher"), Range(0, 1),
        Doc("0 invisible, 1 opaque (times the overlay's own alpha)")] = 1.0,
    source: Annotated[str, FileContent(names=("builtin:",)), Check(overlay_problem),
                      Doc(f"'{BUILTIN_LOGO}' (scikit-image's logo, RGBA) or an image file path")] = BUILTIN_LOGO,
) -> np.ndarray:
    """Paste a logo or image, `size` of the width wide, at relative (x, y), alpha-blended at `opacity`."""
    overlay = load_overlay(source)
    rows, cols = image.shape[:2]
    width = max(1, round(cols * size))
    height = max(1, round(overlay.shape[0] * width / overlay.shape[1]))
    if height > rows:
        raise TransformError(f"a {width}x{height} overlay does not fit in a {cols}x{rows} image; use a smaller size")
    small = cv2.resize(overlay, (width, height), interpolation=cv2.INTER_AREA)
    left, top = whole((cols - width) * x), whole((rows - height) * y)  # as _window places its window
    out = image.copy()
    region = out[top:top + height, left:left + width]
    blended = region * (1 - opacity * small[..., 3:]) + (255 * opacity) * small[..., :3]
    region[:] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


@transform
def caption(
    image: np.ndarray,
    text: Annotated[str, Check(hershey_problem),
                    Doc("one line, printable ASCII (Hershey fonts have no other glyphs); '' a plain bar")] = "CAPTION",
    height: Annotated[float, Stronger("higher"), Range(0, 1, open_low=True), Doc("bar height / image height")] = 0.2,
    position: Annotated[Literal["top", "bottom"], Doc("where the bar is added")] = "top",
    bar: Annotated[Literal["white", "black"], Doc("bar colour; the text is the other one")] = "white",
) -> np.ndarray:
    """Meme caption: add a solid bar above or below (the output is taller) with `text` centred, scaled to fit."""
    rows, cols = image.shape[:2]
    bar_rows = max(1, round(rows * height))
    output_size(cols, rows + bar_rows, image)
    paper, ink = ((255, 255, 255), (0, 0, 0)) if bar == "white" else ((0, 0, 0), (255, 255, 255))
    strip = np.full((bar_rows, cols, 3), paper, np.uint8)
    if text.strip():
        font = cv2.FONT_HERSHEY_SIMPLEX
        (unit_w, unit_h), unit_base = cv2.getTextSize(text, font, 1.0, 2)
        scale = min(0.9 * cols / unit_w, 0.7 * bar_rows / (unit_h + unit_base))
        thickness = max(1, round(2 * scale))
        (w, h), base = cv2.getTextSize(text, font, scale, thickness)
        cv2.putText(strip, text, ((cols - w) // 2, (bar_rows + h - base) // 2), font, scale, ink, thickness,
                    cv2.LINE_AA)
    return np.vstack([strip, image] if position == "top" else [image, strip])


@transform
def emoji(
    image: np.ndarray,
    count: Annotated[int, Stronger("higher"), Range(1, 100), Doc("how many smileys")] = 3,
    size: Annotated[float, Stronger("higher"), Range(0, 1, open_low=True), Doc("diameter / image width")] = 0.15,
    seed: Seed = 0,
) -> np.ndarray:
    """Draw `count` yellow smileys `size` of the width across, at places drawn from np.random.default_rng(seed)."""
    rows, cols = image.shape[:2]
    radius = max(2, round(size * cols / 2))
    out = image.copy()
    for u, v in np.random.default_rng(seed).random((count, 2)):  # centres keep a whole face inside where it fits
        _smiley(out, (round(radius + u * (cols - 2 * radius)), round(radius + v * (rows - 2 * radius))), radius)
    return out


def _smiley(canvas: np.ndarray, centre: tuple[int, int], r: int) -> None:
    x, y = centre
    dark = (30, 30, 30)
    cv2.circle(canvas, centre, r, (0, 210, 255), -1, cv2.LINE_AA)  # yellow face
    cv2.circle(canvas, centre, r, (0, 140, 220), max(1, round(r / 15)), cv2.LINE_AA)  # orange rim
    for side in (-1, 1):
        cv2.circle(canvas, (x + side * round(0.35 * r), y - round(0.3 * r)), max(1, round(0.12 * r)), dark, -1,
                   cv2.LINE_AA)
    cv2.ellipse(canvas, (x, y + round(0.05 * r)), (round(0.55 * r), round(0.5 * r)), 0, 20, 160, dark,
                max(1, round(0.1 * r)), cv2.LINE_AA)


@transform
def text_watermark(
    image: np.ndarray,
    text: Annotated[str, Check(visible_text_problem), Doc("the words drawn: one line, printable ASCII")] = "TEST",
    width: Annotated[float, Stronger("higher"), Range(0, 10, open_low=True), Doc("text width / image width")] = 0.2,
    alpha: Annotated[int, Stronger("higher"), Range(0, 255), Doc("ink opacity on 0-255")] = 200,
    thickness: Annotated[int, Unit("px"), Stronger("higher"), Range(1, 100),
        Doc("stroke in px (not scaled with the text)")] = 5,
    color: Annotated[Color, Doc("BGR ink")] = (0, 0, 0),
) -> np.ndarray:
    """Perception's benchmark watermark: `text` in FONT_HERSHEY_SIMPLEX sized to `width` of the image
    (font scale 5 x width x cols / the text's width at scale 5), baseline at (h, rows - h) with h the
    scaled text height, drawn without anti-aliasing and blended at `alpha`:
    (image x (255 - a) + color x a) / 255, truncated."""
    rows, cols = image.shape[:2]
    font = cv2.FONT_HERSHEY_SIMPLEX
    (text_width, text_height), _ = cv2.getTextSize(text, font, 5, thickness)
    factor = width * cols / text_width
    origin = (int(text_height * factor), int(rows - text_height * factor))
    check_text_draws(image, text, origin, 5 * factor, thickness, cv2.LINE_8)
    ink = np.zeros((rows, cols, 4), np.uint8)
    cv2.putText(ink, text, origin, font, 5 * factor, (*(int(c) for c in color), alpha), thickness)
    ink = ink.astype(np.float32)
    return ((image * (255 - ink[..., 3:]) + ink[..., :3] * ink[..., 3:]) / 255).astype(np.uint8)


@transform(cpu_exact=False)  # INTER_AREA: 11 of 14 images changed on arm64 at scale 0.8
def screenshot(
    image: np.ndarray,
    scale: Annotated[float, Stronger("lower"), Range(0, 1, open_low=True), Doc("picture width / screen width")] = 0.8,
    # Each below one half: together they leave the picture some room (0.5 and 0.5 left none on any image).
    header: Annotated[float, Stronger("higher"), Range(0, 0.5, open_high=True),
                      Doc("title bar height / screen height")] = 0.08,
    footer: Annotated[float, Stronger("higher"), Range(0, 0.5, open_high=True),
                      Doc("caption area height / screen height")] = 0.15,
) -> np.ndarray:
    """A screenshot-like frame of the same size: a dark title bar, the picture shrunk (INTER_AREA)
    to fit `scale` of the width between bar and footer, centred on white, and two grey caption lines."""
    rows, cols = image.shape[:2]
    top, bottom = round(rows * header), round(rows * footer)
    room = rows - top - bottom
    if room < 2:
        raise TransformError(f"header {header:g} and footer {footer:g} leave no room in a {cols}x{rows} image")
    factor = min(scale, room / rows)
    width, height = max(1, round(cols * factor)), max(1, round(rows * factor))
    screen = np.full_like(image, 255)
    screen[:top] = (38, 38, 38)
    left, upper = (cols - width) // 2, top + (room - height) // 2
    screen[upper:upper + height, left:left + width] = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    line = max(1, round(bottom / 8))
    for number, length in enumerate((0.6, 0.35)):
        y = rows - bottom + round(bottom * (0.3 + 0.35 * number))
        cv2.rectangle(screen, (round(cols * 0.05), y), (round(cols * (0.05 + length)), y + line - 1), (160, 160, 160), -1)
    return screen


def _one_pixel_line(params: dict) -> bool:
    """Pillow draws a line 1 px wide with integer steps; a wider one as a polygon whose corners are
    floating point (one image of 14 changed on arm64 at widths 2, 3 and 5)."""
    return params["width"] == 1


@transform(cpu_exact=_one_pixel_line)
def cross(
    image: np.ndarray,
    color: Annotated[Color, Doc("BGR line colour")] = (0, 0, 128),
    width: Annotated[int, Unit("px"), Stronger("higher"), Range(1, 1000), Doc("line width in px")] = 1,
) -> np.ndarray:
    """Draw both diagonals, corner to corner, with Pillow's ImageDraw.line (the iscc-experiments watermark)."""
    from PIL import Image, ImageDraw  # the owning library of this edit
    canvas = Image.fromarray(np.ascontiguousarray(image[..., ::-1]))
    draw = ImageDraw.Draw(canvas)
    rgb = tuple(int(c) for c in color[::-1])
    draw.line((0, 0) + canvas.size, fill=rgb, width=width)
    draw.line((0, canvas.size[1], canvas.size[0], 0), fill=rgb, width=width)
    return np.ascontiguousarray(np.asarray(canvas)[..., ::-1])
