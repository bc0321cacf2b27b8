"""Source images: files on disk and the built-in, freely licensed stand-ins.

Every image becomes uint8 HxWx3 BGR, as `cv2.imread(path, IMREAD_COLOR)` gives:
grayscale is repeated into three channels, alpha is dropped, 16-bit is scaled
to 8-bit. Its id is a hash of its pixels, so it does not depend on the path.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import cv2
import numpy as np

from harness.errors import ImageError

BUILTIN_PREFIX = "builtin:"
# scikit-image's bundled colour photographs (no download needed), freely licensed.
BUILTIN_IMAGES = ("astronaut", "chelsea", "coffee", "rocket")


@dataclass(frozen=True)
class SourceImage:
    name: str  # file stem or builtin name, for people
    id: str  # content hash, for joins
    origin: str  # the path or builtin:name it came from
    pixels: np.ndarray


def image_id(pixels: np.ndarray) -> str:
    digest = hashlib.sha256(repr(pixels.shape).encode() + np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()[:12]


def check_source(source: str) -> None:
    """Raise ValueError when `source` names no builtin image and no file."""
    if source.startswith(BUILTIN_PREFIX):
        name = source[len(BUILTIN_PREFIX):]
        if name not in BUILTIN_IMAGES:
            raise ValueError(f"unknown built-in image '{name}'; known: {', '.join(BUILTIN_IMAGES)}")
    elif not os.path.isfile(source):
        raise ValueError(f"no image file at '{source}'")


def load_builtin(name: str) -> np.ndarray:
    import skimage.data

    rgb = getattr(skimage.data, name)()
    return np.ascontiguousarray(rgb[..., ::-1])


def read_image(path: str) -> np.ndarray:
    """Read a file as uint8 BGR. np.fromfile + imdecode handles non-ASCII paths everywhere."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror})") from None
    pixels = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if pixels is None:
        raise ImageError(f"{path}: not an image OpenCV can decode")
    return pixels


def load_source(source: str) -> SourceImage:
    if source.startswith(BUILTIN_PREFIX):
        name = source[len(BUILTIN_PREFIX):]
        check_source(source)
        pixels = load_builtin(name)
    else:
        name = os.path.splitext(os.path.basename(source))[0]
        pixels = read_image(source)
    return SourceImage(name=name, id=image_id(pixels), origin=source, pixels=pixels)


def resolve_sources(images: tuple[str, ...], fallback: str | None, config_source: str) -> tuple[list[str], list[str]]:
    """The sources to load, and notes for the user.

    The fallback stands in only when none of the images exists (the article's
    image is not distributed); otherwise a missing file is an error.
    """
    from harness.errors import ConfigError

    missing = [path for path in images if not path.startswith(BUILTIN_PREFIX) and not os.path.isfile(path)]
    if fallback is not None and len(missing) == len(images):
        return [fallback], [f"{', '.join(missing)} not found: using the freely licensed stand-in "
                            f"{fallback} instead (see README, 'Source images')"]
    for i, source in enumerate(images):
        try:
            check_source(source)
        except ValueError as exc:
            raise ConfigError(config_source, f"images[{i}]", str(exc)) from None
    return list(images), []
