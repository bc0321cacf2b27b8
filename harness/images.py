"""Source images: files on disk and the built-in, freely licensed stand-ins.

Every image becomes uint8 HxWx3 BGR, as `cv2.imread(path, IMREAD_COLOR)` gives:
grayscale is repeated into three channels, alpha is dropped, 16-bit is scaled
to 8-bit. Its id is a hash of its pixels, so it does not depend on the path.
"""

from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass

import cv2
import numpy as np

from harness.errors import ImageError

BUILTIN_PREFIX = "builtin:"
# scikit-image's bundled photographs (shipped in the package, no download), freely
# licensed; `builtin:skimage` names them all. `cat` is left out: it is `chelsea` again.
BUILTIN_IMAGES = ("astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee", "coins", "grass",
                  "gravel", "hubble_deep_field", "immunohistochemistry", "moon", "motorcycle", "page",
                  "retina", "rocket", "text")
BUILTIN_SET = "skimage"
IMAGE_EXTENSIONS = {".bmp", ".gif", ".jpeg", ".jpg", ".jp2", ".png", ".pbm", ".pgm", ".ppm", ".tif", ".tiff",
                    ".webp", ".exr", ".hdr", ".pic", ".sr", ".ras"}


@dataclass(frozen=True)
class SourceImage:
    name: str  # file stem or builtin name, for people
    id: str  # content hash, for joins
    origin: str  # the path or builtin:name it came from
    pixels: np.ndarray


def image_id(pixels: np.ndarray) -> str:
    digest = hashlib.sha256(repr(pixels.shape).encode() + np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()[:12]


def expand_source(entry: str) -> list[str]:
    """One config entry -> image sources, in a stable order.

    `builtin:NAME`, `builtin:skimage` (every built-in), a file, a directory
    (searched recursively for image extensions) or a glob pattern (`**` recurses).
    Raises ValueError when the entry names nothing.
    """
    if entry.startswith(BUILTIN_PREFIX):
        name = entry[len(BUILTIN_PREFIX):]
        if name == BUILTIN_SET:
            return [BUILTIN_PREFIX + n for n in BUILTIN_IMAGES]
        if name not in BUILTIN_IMAGES:
            from harness.registry import suggest
            close = suggest(name, [*BUILTIN_IMAGES, BUILTIN_SET])
            hint = f"did you mean '{close}'?" if close else f"known: {BUILTIN_SET}, {', '.join(BUILTIN_IMAGES)}"
            raise ValueError(f"unknown built-in image '{name}'; {hint}")
        return [entry]
    if os.path.isfile(entry):
        return [entry]
    if os.path.isdir(entry):
        found = sorted(os.path.join(folder, name) for folder, _, names in os.walk(entry) for name in names
                       if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS)
        if not found:
            raise ValueError(f"no image files in directory '{entry}'")
        return found
    if glob.has_magic(entry):
        found = sorted(path for path in glob.glob(entry, recursive=True) if os.path.isfile(path))
        if not found:
            raise ValueError(f"no files match '{entry}'")
        return found
    raise ValueError(f"no image file at '{entry}'")


def check_source(source: str) -> None:
    """Raise ValueError when `source` names nothing."""
    expand_source(source)


def load_builtin(name: str) -> np.ndarray:
    import skimage.data

    pixels = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
    if pixels.ndim == 2:
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(pixels[..., 2::-1])  # RGB(A) -> BGR, alpha dropped


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


def resolve_sources(images: tuple[str, ...], fallback: str | None, config_source: str,
                    limit: int | None = None, seed: int = 0) -> tuple[list[str], list[str]]:
    """The sources to load, and notes for the user.

    The fallback stands in only when none of the entries names an existing image
    (the article's image is not distributed); otherwise an entry that names
    nothing is an error. `limit` keeps a seeded random sample, in listing order.
    """
    from harness.errors import ConfigError

    missing = [e for e in images if not e.startswith(BUILTIN_PREFIX) and not glob.has_magic(e)
               and not os.path.exists(e)]
    if fallback is not None and len(missing) == len(images):
        return [fallback], [f"{', '.join(missing)} not found: using the freely licensed stand-in "
                            f"{fallback} instead (see README, 'Source images')"]
    sources: list[str] = []
    for i, entry in enumerate(images):
        try:
            sources += expand_source(entry)
        except ValueError as exc:
            raise ConfigError(config_source, f"images[{i}]", str(exc)) from None
    sources = list(dict.fromkeys(sources))  # an image listed twice counts once
    notes = []
    if limit is not None and len(sources) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(sources), size=limit, replace=False))
        notes.append(f"limit: {limit} of {len(sources)} images, sampled with seed {seed}")
        sources = [sources[k] for k in keep]
    return sources, notes
