"""Source images: files on disk and the built-in, freely licensed stand-ins.

Every image becomes uint8 HxWx3 BGR. Its id is a hash of its pixels, so it
does not depend on the path.

Reading image files
-------------------
An ordinary 8-bit image gives exactly the pixels of
`cv2.imdecode(data, cv2.IMREAD_COLOR)`, the article's reading (but for a JPEG
whose Exif segment is not its first APP1: see Orientation). Everything else
follows these rules, and each conversion is recorded as a short note
(`SourceImage.notes`):

- Depth: 16-bit samples are shifted right by 8 bits (v >> 8, which is what
  OpenCV's PNG reader does). Floating-point samples are multiplied by 255 when
  every value lies in [0, 1], and otherwise clipped to [0, 255]; both are then
  rounded to the nearest integer, and NaN reads as 0; this holds for 32- and
  64-bit floats, one channel, three, or four (alpha dropped). Other sample types (signed integers,
  32-bit unsigned ones, 16-bit floats) are refused as such ("unsupported sample
  type float16"), not as corrupt files.
- Channels: grayscale and 1-bit images are repeated into three channels. A
  palette is expanded to its colours. CMYK is converted to RGB by OpenCV's
  conversion. Alpha, and the transparent colour of a palette or tRNS chunk, is
  dropped, not composited: the colour channels are kept as stored.
- Orientation: an EXIF orientation tag, as Pillow finds it, is applied to every
  format (a PNG's eXIf chunk or ImageMagick's raw-profile text chunk; a JPEG's
  Exif segment wherever it stands, where OpenCV reads only the first APP1).
- Frames: an animated or multi-page file gives its first frame.
- Size: an image with more than `max_pixels` pixels is refused
  (DEFAULT_MAX_PIXELS is the limit at which Pillow refuses an image). The size
  comes from the header, before any pixels are decoded (for Radiance HDR,
  which only OpenCV reads, from its size line here; for a TIFF that Pillow
  cannot open, 64-bit floats say, from its first directory here). Other formats
  that only OpenCV reads are checked after decoding; while they decode,
  OpenCV's own limit of 2**30 pixels protects them.
- Refused: empty files; truncated or corrupt data, including a JPEG that ends
  before its end-of-image marker, whose data is too short for the size it
  declares, or part of whose data libjpeg cannot decode (OpenCV would fill the
  missing rows with gray), and a TIFF whose strips or tiles hold fewer pixels
  than its size declares (Pillow would fill the rest with black); and files
  that are not images (text, HTML, SVG,
  unknown bytes). The ImageError is one line: "<path>: <reason>".
- Decoder messages: what libpng and libjpeg print while OpenCV decodes (a
  damaged ancillary chunk, extraneous bytes) becomes a note of the image, or
  the reason it is refused, instead of a line on stderr that names no file.
  OpenCV's own log (the warning and the error it logs about a file it fails
  on, a truncated TIFF say) is silenced while it decodes: the reason comes
  from the header, Pillow or those lines.

OpenCV decodes. Pillow reads the header (size, mode, frames, orientation) of
the formats in IMAGE_EXTENSIONS. It also decodes three kinds of file. First,
files that OpenCV 4.10 cannot read: GIF, animated WebP, 1-channel 32-bit float
TIFF (OpenCV reads 1-channel floats in grayscale only, as it is asked to for the
64-bit ones, which Pillow cannot read), and any other file that OpenCV fails on,
but a PNG (libpng checks its data, Pillow does not: a PNG that OpenCV refuses is
damaged). Then JPEG 2000, whose OpenCV decoder
crashes the process on some damaged files. Last, files that OpenCV would convert
against these rules: an 8-bit TIFF with unassociated alpha, whose colour libtiff
multiplies by the alpha.
"""

from __future__ import annotations

import atexit
import contextlib
import fnmatch
import glob
import hashlib
import io
import logging
import os
import re
import stat
import struct
import sys
import tempfile
import threading
import unicodedata
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from harness.errors import OPENCV_MAX_PIXELS, PATH_MAX, ImageError, clipped, exception_text

# Pillow logs what it finds wrong in a file (a TIFF's "More samples per pixel than can be decoded")
# before it raises; with no handler configured, Python's last resort printed it on stderr, a stray
# line beside the file's one-line reason. A NullHandler on Pillow's logger stops only that: where
# logging is configured (a notebook's root handler), Pillow's records still reach it.
logging.getLogger("PIL").addHandler(logging.NullHandler())

BUILTIN_PREFIX = "builtin:"
# scikit-image's bundled photographs (shipped in the package, no download), freely
# licensed; `builtin:skimage` names them all. `cat` is left out: it is `chelsea` again.
BUILTIN_IMAGES = ("astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee", "coins", "grass",
                  "gravel", "hubble_deep_field", "immunohistochemistry", "moon", "motorcycle", "page",
                  "retina", "rocket", "text")
BUILTIN_SET = "skimage"
IMAGE_EXTENSIONS = {".bmp", ".gif", ".jpeg", ".jpg", ".jp2", ".png", ".pbm", ".pgm", ".ppm", ".tif", ".tiff",
                    ".webp", ".exr", ".hdr", ".pic", ".sr", ".ras"}
DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's refusal limit (2 * PIL.Image.MAX_IMAGE_PIXELS)


@dataclass(frozen=True)
class SourceImage:
    name: str  # file stem or builtin name, for people
    id: str  # content hash, for joins
    origin: str  # the path or builtin:name it came from
    pixels: np.ndarray
    notes: tuple[str, ...] = ()  # what reading did to make it uint8 HxWx3 BGR, for people


def image_id(pixels: np.ndarray) -> str:
    digest = hashlib.sha256(repr(pixels.shape).encode())
    digest.update(np.ascontiguousarray(pixels))  # the pixels where they are, not copied twice into one string
    return digest.hexdigest()[:12]


def expand_source(entry: str, unlisted: list | None = None, notes: list | None = None,
                  given: tuple[str, ...] | list[str] = ()) -> list[str]:
    """One config entry -> image sources, in a stable order.

    `builtin:NAME`, `builtin:skimage` (every built-in), a file, a directory
    (searched recursively for image extensions) or a glob pattern (`**` recurses).
    Raises ValueError when the entry names nothing. A folder below the entry that cannot be
    listed (no permission, a path too long) is appended to `unlisted` as (folder, reason) and the
    rest is listed; without `unlisted` it is a ValueError. A directory's files without an image
    extension are left out by name (no file is opened to decide), and counted in a note appended
    to `notes`: an exact copy named `photo.jpg.part` must not pass unseen. So are the links to
    folders below the entry, which are not followed (see _walk): a test folder holding a link to a
    train folder must not look clean. A link to a file is listed, and read as the file it points to.
    `given`: the entries listed with this one (a split's, a run's images); a link to a folder that
    one of them lists (the link itself given, its target, a folder above the target) is not counted,
    since its files are listed after all.
    """
    if entry.startswith(BUILTIN_PREFIX):
        name = entry[len(BUILTIN_PREFIX):]
        if name == BUILTIN_SET:
            return [BUILTIN_PREFIX + n for n in BUILTIN_IMAGES]
        if name not in BUILTIN_IMAGES:
            from harness.registry import suggest
            close = suggest(name, [*BUILTIN_IMAGES, BUILTIN_SET])
            hint = f"did you mean '{close}'?" if close else f"known: {BUILTIN_SET}, {', '.join(BUILTIN_IMAGES)}"
            raise ValueError(f"unknown built-in image '{clipped(name)}'; {hint}")
        return [entry]
    if os.path.isfile(entry):
        return [entry]
    skipped = len(unlisted) if unlisted is not None else 0  # a folder that lists nothing but unlisted ones is no error
    links: list[str] = []
    if os.path.isdir(entry):
        files = _walk(entry, unlisted=unlisted, links=links)
        links = [link for link in links if not _listed_by(link, given)]
        found = sorted((path for path in files if has_image_extension(path)), key=listing_order)
        other = sorted((path for path in files if not has_image_extension(path)), key=listing_order)
        if not found and len(unlisted or ()) == skipped:
            raise ValueError(f"no image files in directory '{clipped(display_path(entry), PATH_MAX)}'"
                             + (f" ({without_extension_note(entry, other)})" if other else "")
                             + (f" ({linked_folders_note(entry, links)})" if links else ""))
        if other and notes is not None:
            notes.append(without_extension_note(entry, other))
        if links and notes is not None:
            notes.append(linked_folders_note(entry, links))
        return found
    if glob.has_magic(entry):
        found = _glob(entry, unlisted, links)
        links = [link for link in links if not _listed_by(link, given)]
        if not found and len(unlisted or ()) == skipped:
            raise ValueError(f"no files match '{clipped(display_path(entry), PATH_MAX)}'"
                             + (f" ({linked_folders_note(entry, links)})" if links else ""))
        if links and notes is not None:
            notes.append(linked_folders_note(entry, links))
        return found
    shown_entry = clipped(display_path(entry), PATH_MAX)
    try:
        os.lstat(entry)
    except (FileNotFoundError, NotADirectoryError, ValueError):
        raise ValueError(f"no image file at '{shown_entry}'") from None
    except OSError as exc:  # a folder on the way that cannot be searched: not "no image file"
        raise ValueError(f"cannot read '{shown_entry}' ({exc.strerror})") from None
    try:  # something is there, but not a file or a folder to read
        kind = _file_kind(os.stat(entry).st_mode)
    except OSError as exc:  # a link to nothing, a loop of links
        raise ValueError(f"cannot read '{shown_entry}' ({exc.strerror})") from None
    raise ValueError(f"'{shown_entry}' is not a regular file ({kind}); only files are read as images")


def _listed_by(link: str, entries) -> bool:
    """Whether one of the folder `entries` lists the folder `link` points to: the folder is the
    entry's, or lies below it through folders a listing enters (real ones, not hidden)."""
    target = os.path.realpath(link)
    for entry in entries:
        if entry.startswith(BUILTIN_PREFIX) or not os.path.isdir(entry):
            continue
        below = os.path.relpath(target, os.path.realpath(entry))
        if below == os.curdir or (below != os.pardir and not below.startswith(os.pardir + os.sep)
                                  and not any(part.startswith(".") for part in below.split(os.sep))):
            return True
    return False


def file_identity(source: str):
    """What makes two sources one image file: its device and inode (one file reached by two paths, a
    linked folder, counts once, before `limit` samples), else the source as written."""
    if source.startswith(BUILTIN_PREFIX):
        return source
    try:
        status = os.stat(source)
    except (OSError, ValueError):
        return source
    return status.st_dev, status.st_ino


def has_image_extension(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def without_extension_note(folder: str, files: list[str]) -> str:
    """What listing `folder` left out by name (`files`, in order), in one line."""
    one = len(files) == 1
    return (f"{len(files)} {'file' if one else 'files'} without an image extension in "
            f"{clipped(display_path(folder), PATH_MAX)} {'was' if one else 'were'} not listed (e.g. "
            f"{clipped(display_path(files[0]), PATH_MAX)}); name {'it' if one else 'them'} explicitly or rename "
            f"{'it' if one else 'them'}")


def linked_folders_note(entry: str, links: list[str]) -> str:
    """The links to folders that listing `entry` did not follow (`links`), in one line (the example is
    the first by name: os.walk's order is the file system's)."""
    one = len(links) == 1
    return (f"listing {clipped(display_path(entry), PATH_MAX)}, {len(links)} {'link' if one else 'links'} to "
            f"{'a folder was' if one else 'folders were'} not followed, so {'its' if one else 'their'} files are not "
            f"listed (e.g. {clipped(display_path(min(links)), PATH_MAX)}); give the {'folder' if one else 'folders'} "
            f"as {'an entry' if one else 'entries'} to include {'its' if one else 'their'} files")


# How deep a listing goes below the folder given: os.walk (Python 3.11) recurses a stack frame a
# folder, so 1,100 nested folders ended in RecursionError; no data set nests 200.
MAX_FOLDER_DEPTH = 200


def _walk(folder: str, pattern: tuple[str, ...] | None = None, unlisted: list | None = None,
          links: list | None = None) -> list[str]:
    """Every file below `folder` but hidden ones (names starting with '.', like an interrupted run's
    staging folder); with `pattern` (a glob's parts below `folder`), only down the folders it can
    match. Links to folders are not followed, so a link loop cannot make the listing endless; each
    one the listing would have entered is appended to `links`, to be said (a link from a test
    folder to a train folder would otherwise leave a leak unseen). Links to files are listed.

    os.walk skips a folder it cannot list (no permission, a path too long) without a word: a run
    would leave its files out, and an audit call a split clean without having seen them. Each one
    is appended to `unlisted` as (folder, reason), or without `unlisted` it is a ValueError."""
    def failed(exc: OSError):
        where = exc.filename if isinstance(exc.filename, str) else folder
        if unlisted is None:
            raise ValueError(f"cannot list the folder '{clipped(display_path(where), PATH_MAX)}' "
                             f"({exc.strerror or exc})")
        unlisted.append((where, exc.strerror or str(exc)))

    found = []
    root_depth = folder.rstrip(os.sep).count(os.sep)
    for parent, folders, names in os.walk(folder, onerror=failed):
        folders[:] = [name for name in folders if not name.startswith(".")]
        depth = parent.rstrip(os.sep).count(os.sep) - root_depth
        if depth >= MAX_FOLDER_DEPTH and folders:  # os.walk recurses a frame a folder (Python 3.11)
            failed(OSError(0, f"more than {MAX_FOLDER_DEPTH} folders deep, not listed",
                           os.path.join(parent, min(folders))))
            folders[:] = []
        if pattern is not None:  # the folders at depth d+1 are matched by the pattern's part d
            if "**" not in pattern[:depth + 1]:
                folders[:] = [name for name in folders if depth < len(pattern) - 1
                              and fnmatch.fnmatchcase(name, pattern[depth])]
        if links is not None:  # os.walk lists a link to a folder among the folders, and does not enter it
            links += [path for path in (os.path.join(parent, name) for name in folders) if os.path.islink(path)]
        found += [os.path.join(parent, name) for name in names if not name.startswith(".")]
    return found


def _glob(pattern: str, unlisted: list | None = None, links: list | None = None) -> list[str]:
    """Files matching a glob pattern (`*`, `?`, `[...]` within a name; `**` for any number of
    folders), hidden ones left out as in _walk, and links to folders the pattern could enter
    appended to `links`, as in _walk.

    Matched here over _walk's listing rather than with glob.glob or pathlib: glob.glob's `**`
    follows links to folders (two links to a parent folder make a listing without end), and both
    skip a folder they cannot list without a word (pathlib stops on a path too long to open).
    Names match case-sensitively, as pathlib does on POSIX.
    """
    root, wanted = glob_root(pattern)
    if not os.path.isdir(root):
        return []
    found = []
    for path in _walk(root, wanted, unlisted, links):
        relative = Path(os.path.relpath(path, root)).parts
        if _matches(wanted, relative):
            found.append(str(Path(root, *relative)))
    return sorted(found, key=listing_order)


def listing_order(path: str) -> tuple[str, str]:
    """The order a folder's or a pattern's files are listed in: by name as Unicode's composed form
    (NFC) writes it, then as the file system does. A file system that stores names decomposed (NFD:
    macOS's, or files copied from it) lists 'e' + U+0301 for 'é', which sorted among the e's where
    the composed name sorts after every ASCII letter: the same photographs in another order, and so
    another seeded sample of impostors and other thresholds. ASCII names keep their plain order."""
    return unicodedata.normalize("NFC", path), path


def glob_root(pattern: str) -> tuple[str, tuple[str, ...]]:
    """A glob pattern's fixed folder (its parts before the first with a wildcard), as _glob walks
    it, and the parts left, which _matches matches below it. A path without a wildcard is all
    folder. `..` is kept: the system takes `link/..` through the link, where os.path.normpath
    would drop both as text, so whoever compares this folder (the output directory's checks)
    resolves it with os.path.realpath, as the listing does, rather than parsing it again."""
    parts = Path(pattern).parts
    fixed = 0
    while fixed < len(parts) and not glob.has_magic(parts[fixed]):
        fixed += 1
    return (str(Path(*parts[:fixed])) if fixed else os.curdir), tuple(parts[fixed:])


def _matches(pattern: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    """Whether a file's path below a glob's fixed folder (`parts`) matches its remaining parts;
    `**` stands for any number of folders, never for the file's own name. Worked as the set of
    positions in `parts` each step of the pattern can reach, each step once: tried as every way
    to split the path per `**` (a recursion), `**/**/**/**/**/**/**/**/*.png` took 33 s a folder."""
    reached = {0}  # positions in `parts` the pattern's steps so far can end at
    for step in pattern:
        if step == "**":  # any number of folders from the earliest position reached, not the name
            reached = set(range(min(reached), len(parts))) if reached else set()
        else:
            reached = {at + 1 for at in reached if at < len(parts) and fnmatch.fnmatchcase(parts[at], step)}
        if not reached:
            return False
    return len(parts) in reached


def check_source(source: str) -> None:
    """Raise ValueError when `source` names nothing."""
    expand_source(source)


def load_builtin(name: str) -> np.ndarray:
    return _load_builtin(name)[0]


def _load_builtin(name: str) -> tuple[np.ndarray, list[str]]:
    import skimage.data

    pixels = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
    if pixels.ndim == 2:
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR), ["grayscale repeated to 3 channels"]
    notes = ["alpha dropped"] if pixels.shape[2] == 4 else []
    return np.ascontiguousarray(pixels[..., 2::-1]), notes  # RGB(A) -> BGR


# OpenCV's reading: IMREAD_COLOR, as the article does. IMREAD_ANYDEPTH keeps
# 16-bit and float samples as they are, so that _to_uint8 applies the documented
# rule to them. It changes nothing for 8-bit images. IMREAD_IGNORE_ORIENTATION:
# read_image turns the image upright by the tag Pillow reads (see _ORIENTED_BY_OPENCV).
_OPENCV_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_IGNORE_ORIENTATION
# OpenCV's TIFF reader gives 1-channel float samples in grayscale only (IMREAD_COLOR fails on them),
# and 4-channel (RGBA) float samples as they are only ("can not handle images with 32-bit samples"):
# BGRA, turned upright by the TIFF reader itself, whose alpha read_image drops.
_OPENCV_GRAY_FLAGS = cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH
_OPENCV_ALPHA_FLAGS = cv2.IMREAD_UNCHANGED
_OPENCV_LOG_SILENT = 0  # cv::utils::logging::LOG_LEVEL_SILENT (this cv2 has no cv2.utils.logging to name it)
# Formats whose orientation tag OpenCV 4.10 applies itself (Pillow's format names), whatever the
# flags: its TIFF reader turns the image upright. For JPEG and PNG it is asked not to
# (IMREAD_IGNORE_ORIENTATION): it reads a JPEG's tag only from the file's first APP1 segment, so a
# JPEG whose XMP segment came first was left on its side, where Pillow, viewers and the note said
# upright. The same rotation, made here from Pillow's tag, gives the same pixels elsewhere.
_ORIENTED_BY_OPENCV = {"TIFF"}
_ORIENTATION_TAG = 0x0112
_PNG_EXIF_MARKERS = (b"eXIf", b"Raw profile type exif")  # the chunks Pillow reads a PNG's EXIF from
# EXIF orientation -> the view that shows the image upright, on (row, column, channel) arrays.
# OpenCV's flips and rotations, not NumPy views made contiguous: a 24-megapixel photograph took 0.21 s
# to copy out of a transposed view, 0.04 s to rotate (the same pixels; tests/test_images.py checks).
# Applied to 8-bit samples only (after _to_uint8): OpenCV has no 32-bit unsigned type, which Pillow gives.
_UPRIGHT = {2: lambda p: cv2.flip(p, 1), 3: lambda p: cv2.rotate(p, cv2.ROTATE_180), 4: lambda p: cv2.flip(p, 0),
            5: cv2.transpose, 6: lambda p: cv2.rotate(p, cv2.ROTATE_90_CLOCKWISE),
            7: lambda p: cv2.flip(cv2.transpose(p), -1), 8: lambda p: cv2.rotate(p, cv2.ROTATE_90_COUNTERCLOCKWISE)}
# Pillow opens only the formats of IMAGE_EXTENSIONS (JPEG includes MPO). Some of its
# other plugins accept headers so loose that random bytes pass (TGA), or run a
# program (EPS runs Ghostscript).
_PILLOW_FORMATS = ("BMP", "GIF", "JPEG", "JPEG2000", "PNG", "PPM", "SUN", "TIFF", "WEBP")
_PILLOW_LOCK = threading.Lock()


def load_decoders() -> None:
    """Import now what decoding imports on first use (Pillow's format plugins, its EXIF reader), so
    worker processes forked after this inherit it instead of each importing it on its first image."""
    Image.init()  # every plugin: opening with `formats` registers them all on the first file of some formats
    from PIL import ImageOps, TiffImagePlugin  # noqa: F401  (EXIF orientation)


def max_bytes_for(max_pixels: int | None) -> int | None:
    """The largest file read as an image: an uncompressed 16-bit RGBA image of `max_pixels` pixels
    (8 bytes a pixel) plus 1 MiB of headers and metadata. No honest image file is larger, so a
    bigger file (a 3 GB blob named .jpg, /dev/zero behind a link) is refused before it is read."""
    return None if max_pixels is None else 8 * max_pixels + 2 ** 20


def display_path(path: str) -> str:
    """A path as text that can be written anywhere: a name that is not valid UTF-8 keeps its bytes
    as \\xNN escapes (os.walk hands them over as surrogates, which no UTF-8 file can hold). An ASCII
    path is itself, not a copy (100,000 paths' copies were 10 MiB at the end of a run)."""
    return path if path.isascii() else os.fsencode(path).decode("utf-8", "backslashreplace")


def utf8_text(path: str) -> str:
    """A path of this system as the UTF-8 text of its bytes, whatever the locale: bytes that are not
    UTF-8 as surrogate escapes (\\udcNN; display_path shows them as \\xNN). Under LC_ALL=C the
    system names a file café.png with surrogates, under Latin-1 as cafÃ©.png; this is café.png under any.
    Under a UTF-8 locale, the path itself."""
    return path if path.isascii() else os.fsencode(path).decode("utf-8", "surrogateescape")


def _open_without_waiting(path: str) -> int:
    """A descriptor to read `path` from, opened without blocking: a FIFO would wait for a writer."""
    return os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
                   | getattr(os, "O_BINARY", 0))


def read_file(path: str, max_bytes: int | None) -> bytes:
    """The bytes of a regular file, at most `max_bytes` of them; ImageError "<path>: <reason>" otherwise.

    The file is opened without blocking (a FIFO named x.jpg would wait for a writer forever) and
    checked on the open descriptor, so what is read is what was checked: only a regular file is
    read (links are followed to their target, which must be one too: /dev/zero is refused), and
    reading stops one byte past the limit however much the file grows meanwhile.
    """
    shown = display_path(path)
    try:
        handle = _open_without_waiting(path)
    except OSError as exc:
        raise ImageError(f"{shown}: cannot read ({exc.strerror or exc})") from None
    try:
        info = os.fstat(handle)
        if not stat.S_ISREG(info.st_mode):
            raise ImageError(f"{shown}: not a regular file ({_file_kind(info.st_mode)}); only files are read as images")
        if max_bytes is not None and info.st_size > max_bytes:
            raise ImageError(f"{shown}: {info.st_size} bytes, more than an image within max_pixels can take "
                             f"({max_bytes} bytes); raise max_pixels to allow it")
        if info.st_size == 0:  # empty, or a file of /proc or /sys, which reports 0 and holds as much as it likes
            if os.read(handle, 1):
                raise ImageError(f"{shown}: reports a size of 0 bytes but holds data (a file of /proc or /sys?); "
                                 "not an image file")
            return b""
        chunks, total = [], 0
        limit = (max_bytes + 1) if max_bytes is not None else None
        while True:
            chunk = os.read(handle, 1 << 20 if limit is None else min(1 << 20, limit - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if limit is not None and total >= limit:
                raise ImageError(f"{shown}: more than {max_bytes} bytes (it grew while being read)")
        return b"".join(chunks)
    except OSError as exc:
        raise ImageError(f"{shown}: cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(handle)


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def read_image(path: str, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, list[str]]:
    """A file's pixels as uint8 HxWx3 BGR, and notes on any conversion (see the module docstring).

    Raises ImageError "<path>: <reason>" when the file is not a readable image,
    or when it has more than `max_pixels` pixels (None: no limit).
    """
    data = read_file(path, max_bytes_for(max_pixels))
    try:
        return decode_image(data, max_pixels)
    except ImageError as exc:
        raise ImageError(f"{display_path(path)}: {exc}") from None


def decode_image(data: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, list[str]]:
    """read_image for bytes already in memory; the ImageError holds the reason only."""
    if not data:
        raise ImageError("empty file (0 bytes)")
    with _pillow_unlimited():
        header, header_problem = _open_header(data)
        notes = []
        if header is not None:
            _check_size(*header.size, max_pixels)
            notes = _header_notes(header, data)
        if data.startswith(b"\xff\xd8") and _jpeg_truncated(data):
            raise ImageError("truncated JPEG: the data ends before its end-of-image marker")
        if header is not None and header.format == "JPEG" and _jpeg_too_short(data, *header.size):
            raise ImageError(f"corrupt JPEG: {len(data)} bytes cannot hold the {header.size[0]} x {header.size[1]} "
                             "pixels its header declares")
        # Pillow reads a PNG's EXIF by decoding the whole image (an eXIf chunk, or ImageMagick's
        # "Raw profile type exif" text chunk, may follow the pixels): a PNG with neither is upright,
        # and is not decoded twice for nothing.
        orientation = 1 if header is not None and header.format == "PNG" and not any(
            marker in data for marker in _PNG_EXIF_MARKERS) else _orientation(header)
        jpeg2000 = data.startswith(_JPEG2000_SIGNATURES)
        tiff = None
        if header is None and not jpeg2000:
            _check_size(*_radiance_size(data), max_pixels)  # before OpenCV decodes it (Pillow does not read HDR)
            tiff = _tiff_directory(data)
        flags = _OPENCV_FLAGS
        if tiff is not None:  # a TIFF Pillow cannot open (64-bit floats, say): its size is checked before decoding
            _check_size(tiff.width, tiff.height, max_pixels)
            if tiff.samples == 1 and tiff.sample_format == _TIFF_FLOAT:
                flags = _OPENCV_GRAY_FLAGS
            elif tiff.samples == 4 and tiff.sample_format == _TIFF_FLOAT:
                flags = _OPENCV_ALPHA_FLAGS
            orientation = tiff.orientation  # which OpenCV applies
        pillow_decodes = header is not None and _pillow_decodes(header)
        if header is not None and header.format == "TIFF" and not pillow_decodes and \
                _tiff_tag(header, _TIFF_COMPRESSION)[:1] in _TIFF_CHECKED_CODECS:
            _check_tiff_decodes(data)  # first: its pixels are freed before OpenCV's are made
        pixels, said = (None, []) if pillow_decodes or jpeg2000 else _decode_opencv(data, flags)
        if tiff is not None and pixels is None and not tiff.convertible:  # OpenCV refuses 16-bit floats, 32-bit uints
            raise ImageError(f"unsupported sample type {tiff.sample_type} ({_SAMPLE_TYPES_READ})")
        if tiff is not None and pixels is not None and pixels.ndim == 2:
            notes.append("grayscale repeated to 3 channels")
        if tiff is not None and pixels is not None and pixels.ndim == 3 and pixels.shape[2] == 4:
            pixels = pixels[..., :3]
            notes.append("alpha dropped")
        lost = [line for line in said if _JPEG_PIXELS_LOST.fullmatch(line)]
        if lost and pixels is not None:  # OpenCV would hand over the rows libjpeg filled in
            raise ImageError(f"corrupt JPEG: part of its data cannot be decoded "
                             f"(libjpeg: {lost[0].removeprefix('Corrupt JPEG data: ')})")
        if pixels is None and header is not None and header.format == "PNG" and not _pillow_decodes(header):
            # libpng checks every chunk's CRC and the compressed stream; Pillow's reader does not, and
            # turns a zeroed or cut stream into black rows. What OpenCV refuses here is damaged: libpng
            # or Pillow says how, where it can (a truncated file), and Pillow's pixels are never used.
            failed = [line.removeprefix("libpng error: ") for line in said if line.startswith("libpng error: ")]
            if failed == ["PNG input buffer is incomplete"]:  # OpenCV's words, for a read past the end
                raise ImageError("corrupt PNG: a chunk runs past the end of the file (truncated?)")
            if failed:
                raise ImageError(f"corrupt PNG: {failed[0]} (libpng)")
            _decode_pillow(header)
            raise ImageError("corrupt PNG: its data does not check out (a chunk's checksum or the compressed "
                             "pixels)")
        if pixels is not None:  # what else the decoders said, e.g. an ancillary chunk's bad checksum
            notes += [line if line.startswith("libpng") else f"libjpeg: {line}" for line in said]
        if pixels is not None:
            upright = tiff is not None or (header is not None and header.format in _ORIENTED_BY_OPENCV)
        elif header is not None:
            pixels = _decode_pillow(header)
            upright = _orientation(header) == 1  # Pillow drops the tag when it turns an image upright (TIFF)
        else:
            raise ImageError(header_problem or ("corrupt JPEG 2000 file" if jpeg2000 else _not_an_image(data)))
        if header is None:
            _check_size(pixels.shape[1], pixels.shape[0], max_pixels)
    pixels, depth_note = _to_uint8(pixels)  # first: per sample, so it commutes with a rotation, which it gives 8 bits
    if orientation != 1:
        notes.append(f"EXIF orientation {orientation} applied")
        if not upright:
            pixels = _UPRIGHT[orientation](pixels)
    if depth_note:
        notes.append(depth_note)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    return np.ascontiguousarray(pixels), notes


@contextlib.contextmanager
def _pillow_unlimited():
    """Pillow's own decompression-bomb check is off; read_image checks max_pixels itself.

    The check is a module-wide setting (Image.MAX_IMAGE_PIXELS), so the lock stops
    two threads from restoring it in the wrong order. Pillow's warnings (a corrupt
    EXIF block, say) are silenced: they must not become exceptions under `-W error`.
    """
    with _PILLOW_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _open_header(data: bytes) -> tuple[Image.Image | None, str | None]:
    """Pillow's lazy image, which has read the header only. Otherwise None, and what was wrong
    with a header that Pillow knew but could not parse (OpenCV may still read the file)."""
    try:
        return Image.open(io.BytesIO(data), formats=_PILLOW_FORMATS), None
    except UnidentifiedImageError:
        return None, None
    except Exception as exc:  # plugins raise all sorts on malformed headers; the bytes are untrusted
        return None, f"corrupt image header: {exception_text(exc)}"


def _check_size(width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels is not None and width * height > max_pixels:
        hint = "raise max_pixels to allow it" if width * height <= OPENCV_MAX_PIXELS else "more than OpenCV reads"
        raise ImageError(f"{width} x {height} = {width * height} pixels exceeds the limit of {max_pixels} ({hint})")


def _header_notes(header: Image.Image, data: bytes) -> list[str]:
    """What becoming 3-channel BGR does to this file, read from Pillow's mode; the depth note comes later."""
    notes, mode = [], header.mode
    frames = _tiff_pages(data) if header.format == "TIFF" else _frame_count(header)
    if frames > 1:
        kind = "multi-page" if header.format in ("TIFF", "MPO") else "animated"
        counted = f"{frames:,} or more" if header.format == "TIFF" and frames >= TIFF_PAGES_COUNTED else f"{frames}"
        notes.append(f"{kind} {header.format}: first frame of {counted}")
    if mode in ("P", "PA"):
        notes.append("palette image converted to RGB")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        notes.append(f"{mode} converted to RGB")
    elif mode == "1":
        notes.append("1-bit black and white repeated to 3 channels")
    elif mode.startswith(("L", "I", "F")):  # L, LA, La, I, I;16*, F
        notes.append("grayscale repeated to 3 channels")
    if mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in header.info:
        notes.append("alpha dropped")
    return notes


TIFF_PAGES_COUNTED = 10_000  # a TIFF's pages are counted up to this many (for its note alone)


def _tiff_pages(data: bytes) -> int:
    """How many pages (directories) a classic TIFF chains, up to TIFF_PAGES_COUNTED, each read once,
    within the file's bounds and never twice (a chain that loops ends). By hand: Pillow's n_frames
    seeks through the chain again for each page, 1.6 s at 10,000 pages and minutes at 200,000,
    for a note."""
    order = "<" if data.startswith(b"II") else ">"
    at = struct.unpack_from(order + "I", data, 4)[0] if len(data) >= 8 else 0
    pages, seen = 0, set()
    while at and at + 2 <= len(data) and at not in seen and pages < TIFF_PAGES_COUNTED:
        seen.add(at)
        pages += 1
        end = at + 2 + 12 * struct.unpack_from(order + "H", data, at)[0]
        at = struct.unpack_from(order + "I", data, end)[0] if end + 4 <= len(data) else 0
    return max(pages, 1)


def _frame_count(header: Image.Image) -> int:
    try:
        return getattr(header, "n_frames", 1)
    except Exception:  # counting walks the whole file; a bad later frame does not spoil the first
        return 1


def _orientation(header: Image.Image | None) -> int:
    """The EXIF orientation (1 to 8); 1, upright, when there is none or it is not valid."""
    try:
        value = header.getexif().get(_ORIENTATION_TAG, 1) if header is not None else 1
    except Exception:  # a corrupt EXIF block leaves the image as stored
        return 1
    # The tag is a SHORT: another type (a float 6.0) is invalid, and OpenCV ignores it as viewers do.
    return value if type(value) is int and value in _UPRIGHT else 1


# JPEG 2000 (a .jp2 box, or a bare codestream) is decoded by Pillow only: OpenCV 4.10's decoder
# crashes the whole process on some truncated or damaged files. Both give the same pixels.
_JPEG2000_SIGNATURES = (b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51")
_RADIANCE_SIZE = re.compile(rb"\n\n([-+][XY]) (\d{1,9}) ([-+][XY]) (\d{1,9})\n")


def _radiance_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a Radiance HDR file from its header, which OpenCV would otherwise only
    check against its own limit of 2**30 pixels while it decodes (gigabytes); (0, 0) for any other
    file. A Radiance file whose size line cannot be found is refused."""
    if not data.startswith((b"#?RADIANCE", b"#?RGBE")):
        return 0, 0
    found = _RADIANCE_SIZE.search(data, 0, 1 << 16)
    if found is None:
        raise ImageError("corrupt Radiance HDR header: no size line")
    first, first_size, _, second_size = found.groups()
    height, width = (int(first_size), int(second_size)) if first.endswith(b"Y") else (int(second_size), int(first_size))
    return width, height


def _pillow_decodes(header: Image.Image) -> bool:
    """Files that OpenCV 4.10 cannot read, or would convert against the module's rules."""
    if header.format == "GIF" or header.mode == "F":  # no GIF reader; 1-channel float TIFF fails
        return True
    if header.format == "WEBP":
        return getattr(header, "is_animated", False)  # OpenCV refuses animated WebP
    # 8-bit TIFF with unassociated alpha: libtiff multiplies the colour by alpha (composites on black).
    return header.format == "TIFF" and 2 in _tiff_tag(header, 338) and max(_tiff_tag(header, 258) or (8,)) <= 8


def _check_tiff_decodes(data: bytes) -> None:
    """A compressed TIFF whose data does not decode (a strip's LZW, Deflate or PackBits data
    damaged) is refused: OpenCV's reader leaves the rows it could not decode black, or keeps what
    the decoder made of them, without a word (an LZW file with its middle third zeroed gave 92
    black rows of 256). libtiff, under Pillow, says so: the file is decoded again by it, for
    that alone (a second decode, of compressed TIFFs only; OpenCV's pixels are the ones kept).
    Only the lossless codecs every libtiff has are checked (_TIFF_CHECKED_CODECS): a file whose
    codec Pillow's libtiff may lack must not be refused for that. Called under _pillow_unlimited."""
    with _decoder_lines() as said:
        try:
            with Image.open(io.BytesIO(data), formats=["TIFF"]) as probe:
                probe.load()
            failed = None
        except Exception as exc:  # decoders raise all sorts on corrupt data; the bytes are untrusted
            failed = exception_text(exc)
    if failed is not None:
        said = [line.removeprefix("tempfile.tif: ") for line in said]  # the name Pillow gives libtiff
        raise ImageError(f"corrupt TIFF: its compressed data cannot be decoded "
                         f"({f'libtiff: {said[0]}' if said else failed}); the rows it holds would be made up")


def _tiff_tag(header: Image.Image, number: int) -> tuple:
    """A TIFF tag's values as a tuple (338: ExtraSamples, 258: BitsPerSample); () when absent."""
    value = header.tag_v2.get(number, ())
    return value if isinstance(value, tuple) else (value,)


_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*")  # classic TIFF, little- and big-endian
_TIFF_TYPES = {1: "B", 3: "H", 4: "I"}  # BYTE, SHORT, LONG: the types the fields read here come in
# ImageWidth, ImageLength, BitsPerSample, SamplesPerPixel, SampleFormat, Orientation, PhotometricInterpretation
_TIFF_WIDTH, _TIFF_LENGTH, _TIFF_BITS, _TIFF_SAMPLES, _TIFF_SAMPLE_FORMAT = 256, 257, 258, 277, 339
_TIFF_ORIENTATION, _TIFF_PHOTOMETRIC, _TIFF_COMPRESSION = 274, 262, 259
_TIFF_CHECKED_CODECS = {(5,), (8,), (32946,), (32773,)}  # LZW, Deflate (and its old code), PackBits
_TIFF_LOGLUV = (32844, 32845)  # SGI LogL and LogLuv: stored as 16-bit signed integers, decoded as floats
_TIFF_UINT, _TIFF_FLOAT = 1, 3
_TIFF_SAMPLE_KINDS = {_TIFF_UINT: "uint", 2: "int", _TIFF_FLOAT: "float"}  # SampleFormat -> numpy's word


class _TiffDirectory(NamedTuple):
    width: int
    height: int
    samples: int  # per pixel
    bits: int  # per sample
    sample_format: int  # 1 unsigned integer, 2 signed integer, 3 float, ... (TIFF's SampleFormat)
    orientation: int  # 1 to 8, 1 when absent or not valid
    photometric: int  # PhotometricInterpretation, -1 when absent

    @property
    def sample_type(self) -> str:
        """numpy's name for the samples (uint32, float16), or TIFF's words for what numpy has no name for."""
        kind = _TIFF_SAMPLE_KINDS.get(self.sample_format)
        return f"{kind}{self.bits}" if kind else f"{self.bits}-bit, TIFF SampleFormat {self.sample_format}"

    @property
    def convertible(self) -> bool:
        """Whether the samples, as OpenCV decodes them, are ones _to_uint8 converts: unsigned integers
        of up to 16 bits (1-bit and 12-bit included), 32- and 64-bit floats. Consulted only once OpenCV
        has failed, to say why (it refuses 16-bit floats and 32-bit unsigned integers): LogLuv's 16-bit
        signed samples, say, OpenCV decodes into floats."""
        return self.photometric in _TIFF_LOGLUV or (self.sample_format == _TIFF_UINT and self.bits <= 16) or (
            self.sample_format == _TIFF_FLOAT and self.bits in (32, 64))


def _tiff_directory(data: bytes) -> _TiffDirectory | None:
    """What a classic TIFF's first directory (the image OpenCV decodes) declares; None for any other
    file. Read for a TIFF that Pillow cannot open (64-bit or 16-bit floats, 32-bit unsigned
    integers), so that its size is checked before OpenCV decodes it (libtiff allocates the size
    declared, up to OpenCV's limit of 2**30 pixels: 24 GiB of 64-bit RGB), and so that a sample
    type OpenCV refuses is named as such. A field's first value is read, as libtiff reads
    BitsPerSample, and a field's first entry, as libtiff keeps it; a field of another type is left
    at its default. A directory that cannot be read, or declares no size, is refused: libtiff
    could not read it either. (By hand: Pillow, which reads every other header here, refuses these
    files outright; tifffile, installed with scikit-image, reads them, but on a damaged directory it
    writes warnings to the log, a stray line on stderr, and raises errors such as IndexError(0) that
    say nothing. Five fields of one directory are read here with struct, within the file's bounds.)"""
    if not data.startswith(_TIFF_SIGNATURES):
        return None
    order = "<" if data.startswith(b"II") else ">"
    start = struct.unpack_from(order + "I", data, 4)[0] if len(data) >= 8 else len(data)
    if start + 2 > len(data):
        raise ImageError(f"corrupt TIFF header: its first directory (at byte {start}) lies past the end of the "
                         f"file ({len(data)} bytes; truncated?)")
    count = struct.unpack_from(order + "H", data, start)[0]
    fields = {}  # tag -> (type, first value)
    for at in range(start + 2, min(start + 2 + 12 * count, len(data) - 11), 12):  # whole entries only
        tag, kind, number = struct.unpack_from(order + "HHI", data, at)
        code = _TIFF_TYPES.get(kind)
        if code is None or number == 0:
            continue
        size = struct.calcsize(code)
        where = at + 8 if size * number <= 4 else struct.unpack_from(order + "I", data, at + 8)[0]
        if where + size <= len(data):
            fields.setdefault(tag, (kind, struct.unpack_from(order + code, data, where)[0]))
    width, height = fields.get(_TIFF_WIDTH, (0, 0))[1], fields.get(_TIFF_LENGTH, (0, 0))[1]
    if not width or not height:
        raise ImageError(f"corrupt TIFF header: its first directory declares no image size ({width} x {height})")
    orientation = fields.get(_TIFF_ORIENTATION, (0, 1))
    # A SHORT, as for _orientation: another type is not valid.
    orientation = orientation[1] if orientation[0] == 3 and orientation[1] in _UPRIGHT else 1
    return _TiffDirectory(width, height, fields.get(_TIFF_SAMPLES, (0, 1))[1], fields.get(_TIFF_BITS, (0, 1))[1],
                          fields.get(_TIFF_SAMPLE_FORMAT, (0, _TIFF_UINT))[1], orientation,
                          fields.get(_TIFF_PHOTOMETRIC, (0, -1))[1])


def decode_quietly(data: bytes, flags: int) -> np.ndarray | None:
    """cv2.imdecode(data, flags), None where it fails, with nothing on stderr: OpenCV's own log is
    silenced and what its decoders print is dropped (see _decode_opencv). For a file a config names
    (an overlay), which is not an image of the run and has no notes to keep them in."""
    return _decode_opencv(data, flags)[0]


def _decode_opencv(data: bytes, flags: int = _OPENCV_FLAGS) -> tuple[np.ndarray | None, list[str]]:
    """OpenCV's pixels (None where it fails), and what its decoders said meanwhile (see
    _decoder_lines).

    OpenCV's own log is silenced meanwhile: on a file it fails on, it logs a warning and the error
    it caught ("[ WARN:0@0.15] global grfmt_tiff.cpp:832 readData ...", several lines with a
    failed check), which named no file and reached stderr past --quiet, in workers too. The reason
    comes from the header, Pillow or the decoders' lines instead. The level is OpenCV's, for the
    whole process: it is set and put back under _decoder_lines' lock, one decode at a time, so
    two decodes cannot put it back in the wrong order."""
    with _decoder_lines() as said:
        level = cv2.setLogLevel(_OPENCV_LOG_SILENT)
        try:
            pixels = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
        except cv2.error:
            pixels = None
        finally:
            cv2.setLogLevel(level)
    return pixels, said


# libjpeg and libpng write their warnings and errors straight to file descriptor 2 (OpenCV installs
# no handler): a damaged file printed a line naming no file into the progress bar. Their lines, as
# jerror.h and png.c word them; libjpeg prints the first warning of each image only.
_DECODER_LINE = re.compile(r"libpng (warning|error): .*|Corrupt JPEG data: .*|Premature end of JPEG file|"
                           r"Warning: unknown JFIF revision number .*|Unknown Adobe color transform code .*|"
                           r"Inconsistent progression sequence .*|Invalid SOS parameters for sequential JPEG|"
                           # libtiff's, under Pillow (_check_tiff_decodes): "LZWDecode: ...", "TIFFFillStrip: ...",
                           # and its warnings, which name the file Pillow gives it ("tempfile.tif: ...")
                           r"(LZW|PackBits|ZIP|LZMA|ZSTD|WebP|JPEG|OJPEG|Fax[34]|NeXT|ThunderScan|PixarLog|"
                           r"SGILog|Predictor)\w*: .*|TIFF\w+: .*|tempfile\.tif: .*")
# libjpeg's warnings for data it could not decode, whose pixels it filled in (gray, or the last
# good row): JWRN_HIT_MARKER, JWRN_JPEG_EOF, JWRN_HUFF_BAD_CODE, JWRN_MUST_RESYNC, JWRN_ARITH_BAD_CODE.
# The others ("extraneous bytes before marker", an unknown JFIF revision) leave the picture whole.
# libjpeg prints only an image's first warning: a file whose first problem is benign and whose data is
# also cut short is not caught here (the end-marker and size checks above catch most cut files).
_JPEG_PIXELS_LOST = re.compile(r"Corrupt JPEG data: (premature end of data segment|bad Huffman code|"
                               r"found marker 0x[0-9a-f]+ instead of RST\d|bad arithmetic code)|"
                               r"Premature end of JPEG file")
_DECODER_BLOCK = 1 << 20  # read at a time: libpng warns once per bad chunk, and chunks are cheap
_DECODER_LINES_MAX = 8  # distinct lines kept as an image's notes
_decoder_sink: tuple[int, object] | None = None  # (pid, temporary file): a forked worker makes its own
_decoder_lock = threading.Lock()  # fd 2 is the process's: one decode at a time points it elsewhere


def _close_decoder_sink() -> None:
    """At exit: the sink is kept open for the process's life, and closed before it ends, not left
    to the garbage collector (a ResourceWarning where warnings show)."""
    if _decoder_sink is not None and _decoder_sink[0] == os.getpid():
        _decoder_sink[1].close()


@contextlib.contextmanager
def _decoder_lines():
    """For the block, fd 2 goes to a temporary file; the decoders' lines in it (_DECODER_LINE) are
    appended to the list yielded, and anything else (another thread's output) is written back to
    stderr as it was. Without a usable fd 2 or temporary file the block runs as it is."""
    global _decoder_sink
    said: list[str] = []
    with _decoder_lock:
        try:
            if _decoder_sink is None or _decoder_sink[0] != os.getpid():
                if _decoder_sink is None:
                    atexit.register(_close_decoder_sink)
                _decoder_sink = (os.getpid(), tempfile.TemporaryFile())
            sink = _decoder_sink[1].fileno()
            if sys.stderr is not None:
                sys.stderr.flush()  # what Python wrote before goes where it was meant to
            saved = os.dup(2)
        except (OSError, ValueError):
            yield said
            return
        try:
            os.dup2(sink, 2)
            try:
                yield said
            finally:
                os.dup2(saved, 2)
        finally:
            os.close(saved)
            written = os.lseek(sink, 0, os.SEEK_CUR)  # fd 2 shared the sink's offset
            if written:
                os.lseek(sink, 0, os.SEEK_SET)
                _sort_out(sink, said)
                os.ftruncate(sink, 0)
                os.lseek(sink, 0, os.SEEK_SET)


def _sort_out(sink: int, said: list[str]) -> None:
    """The lines written to `sink`: the decoders' into `said` (each kind once, at most
    _DECODER_LINES_MAX), anything else back to stderr as it came, read a block at a time."""
    pending = b""
    while True:
        block = os.read(sink, _DECODER_BLOCK)
        lines = (pending + block).splitlines(keepends=True)
        pending = lines.pop() if block and lines and not lines[-1].endswith((b"\n", b"\r")) else b""
        other = []
        for chunk in lines:
            line = chunk.rstrip(b"\r\n").decode("utf-8", "replace")
            if _DECODER_LINE.fullmatch(line):
                if line not in said and len(said) < _DECODER_LINES_MAX:  # one note per kind of problem
                    said.append(line)
            else:
                other.append(chunk)
        try:
            _write_all(b"".join(other))
        except OSError:  # stderr closed, or a pipe nobody reads: lost, as it would have been
            pass
        if not block:
            return


def _write_all(data: bytes) -> None:
    while data:
        data = data[os.write(2, data):]


def _decode_pillow(image: Image.Image) -> np.ndarray:
    """The first frame, as RGB reversed to BGR. Integer and float modes are kept as one channel at
    their depth, for _to_uint8."""
    if image.format == "TIFF":
        _check_tiff_coverage(image)
    try:
        if image.mode.startswith(("I", "F")):
            pixels = np.asarray(image)
            if pixels.dtype == np.int32 and image.format == "TIFF" and _tiff_tag(image, 339) in ((), (_TIFF_UINT,)):
                pixels = pixels.view(np.uint32)  # Pillow holds unsigned 32-bit samples in mode I: named as stored
            return pixels
        return np.asarray(image.convert("RGB"))[:, :, ::-1]
    except Exception as exc:  # decoders raise all sorts on truncated or corrupt data; the bytes are untrusted
        raise ImageError(f"cannot decode {image.format}: {exception_text(exc)}") from None


def _check_tiff_coverage(image: Image.Image) -> None:
    """A TIFF whose strips or tiles cover less than the size it declares (a height patched larger
    than its data, a directory cut short) is refused: Pillow decodes what its strips hold and
    leaves the other rows black, without a word, where OpenCV (libtiff) refuses the file. The
    strips and tiles of one image do not overlap, so their areas add up. They are laid out as
    stored, where `size` may be the upright one (an orientation of 5 to 8 swaps the sides): the
    stored size is whichever of the two they cover best."""
    width, height = image.size

    def covered_within(columns: int, rows: int) -> int:
        return sum(max(0, min(x1, columns) - max(x0, 0)) * max(0, min(y1, rows) - max(y0, 0))
                   for _, (x0, y0, x1, y1), *_ in image.tile)

    covered = max(covered_within(width, height), covered_within(height, width))
    if covered < width * height:
        raise ImageError(f"corrupt TIFF: its strips hold {covered:,} of the {width * height:,} pixels its size "
                         f"declares ({width} x {height}); the rest would be made up")


_SAMPLE_TYPES_READ = "unsigned integers of up to 16 bits and 32- or 64-bit floats are read"


def _to_uint8(pixels: np.ndarray) -> tuple[np.ndarray, str | None]:
    """The depth rule of the module docstring, and its note."""
    kind, bits = pixels.dtype.kind, pixels.dtype.itemsize * 8
    if kind == "u" and bits == 8:
        return pixels, None
    if kind == "u" and bits == 16:
        return (pixels >> 8).astype(np.uint8), "16-bit scaled to 8-bit (>> 8)"
    if kind == "f":
        values = np.nan_to_num(pixels.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        if values.min() >= 0 and values.max() <= 1:
            return np.rint(values * 255).astype(np.uint8), f"{bits}-bit float in [0, 1] scaled by 255 to 8-bit"
        return np.rint(np.clip(values, 0, 255)).astype(np.uint8), f"{bits}-bit float clipped to [0, 255]"
    raise ImageError(f"unsupported sample type {pixels.dtype.name} ({_SAMPLE_TYPES_READ})")


def _jpeg_truncated(data: bytes) -> bool:
    """Whether a JPEG's data ends before its end-of-image marker.

    OpenCV's JPEG reader decodes a truncated baseline JPEG and fills the missing rows
    with gray. The check follows the markers: a segment gives its length, and
    the entropy-coded data after a start-of-scan runs to the next marker. Inside
    that data, 0xFF is followed by 0x00 (stuffing) or by a restart marker.
    Checking the marker chain, and not only the last bytes, accepts files with
    data after the image, such as a motion photo's video.
    """
    pos, end = 2, len(data)  # after the start-of-image marker
    while True:
        pos = data.find(b"\xff", pos)  # libjpeg also skips stray bytes between segments
        if pos < 0 or pos + 1 >= end:
            return True
        marker = data[pos + 1]
        if marker == 0xD9:  # end of image
            return False
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if 0xD0 <= marker <= 0xD8 or marker in (0x00, 0x01):  # markers without a length
            pos += 2
            continue
        if pos + 4 > end:
            return True
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xDA:  # start of scan: skip the entropy-coded data up to the next real marker
            while 0 <= (pos := data.find(b"\xff", pos)) < end - 1 and (
                    data[pos + 1] == 0x00 or 0xD0 <= data[pos + 1] <= 0xD7):
                pos += 2
            if pos < 0:
                return True


_HUFFMAN_FRAMES = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7}  # start-of-frame markers of Huffman-coded JPEGs
_ARITHMETIC_FRAMES = {0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_too_short(data: bytes, width: int, height: int) -> bool:
    """Whether a JPEG's data is too short for the size its header declares. A Huffman-coded JPEG,
    sequential or progressive, spends at least one bit on every 8x8 block of its first component
    (a DC code has at least one bit), so it holds at least width * height / 512 bytes; a file under
    a quarter of that lies about its size, and OpenCV would decode it as gray (a 1.7 KB file
    declaring 13000 x 13000 took 6 GB). Arithmetic coding can be that small: not checked."""
    if len(data) * 2048 >= width * height:
        return False
    pos = 2  # the frame header's marker, found by following the segments, not inside an EXIF thumbnail
    while 0 <= (pos := data.find(b"\xff", pos)) < len(data) - 3:
        marker = data[pos + 1]
        if marker in _HUFFMAN_FRAMES or marker in _ARITHMETIC_FRAMES:
            return marker in _HUFFMAN_FRAMES
        if marker == 0xFF or 0xD0 <= marker <= 0xD8 or marker in (0x00, 0x01):
            pos += 1 if marker == 0xFF else 2
            continue
        if marker == 0xDA:  # a scan before any frame header: not a JPEG this check understands
            return False
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return False


# Signatures of image formats, to tell a damaged or unsupported image from a file that is none.
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
               (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"#?RADIANCE", "Radiance HDR"), (b"#?RGBE", "Radiance HDR"))


def _not_an_image(data: bytes) -> str:
    known = next((name for signature, name in _SIGNATURES if data.startswith(signature)), None)
    if known is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        known = "WebP"
    if known:  # short text-like magic (II*, RIFF) must not read as "the file holds text"
        return f"corrupt or unsupported {known} file: neither OpenCV nor Pillow can read it"
    sample = data[:512].decode("utf-8", "replace").lstrip("\ufeff")
    sample = sample.rstrip("\ufffd") if len(data) > 512 else sample  # a character cut at byte 512
    if sample and "\ufffd" not in sample and all(c.isprintable() or c.isspace() for c in sample):
        start = " ".join(sample.split())[:40]
        hint = " (SVG and other vector formats are not read)" if "<svg" in sample.lower() else ""
        return f"not an image: the file holds text, starting {start!r}{hint}"
    return f"not an image: unknown format (first bytes {data[:8].hex(' ')})"


WORK_SIZE_HEAD = 1 << 16


# A built-in image's size, for the order and the grouping of the work: most of scikit-image's
# photographs are 512 x 512. Sized 0, the 18 of builtin:skimage went to one worker as one job (up to
# 32 small images go together), and none was stored in the cache before all were hashed.
BUILTIN_PIXELS = 512 * 512


def work_size(source: str) -> int:
    """How much work a source is likely to be, to send large ones first (nothing else depends on
    it): its pixels, from a header within the file's first 64 KiB (Pillow reads headers alone),
    else the file's size in bytes; BUILTIN_PIXELS for a built-in image (not decoded here: its worker
    decodes it), 0 for a file that is not a regular one or cannot be read (its reading will say why).
    Opened as read_file opens (never waits on a FIFO), reads 64 KiB at most, never raises."""
    if source.startswith(BUILTIN_PREFIX):
        return BUILTIN_PIXELS
    try:
        handle = _open_without_waiting(source)
    except (OSError, ValueError):
        return 0
    try:
        info = os.fstat(handle)
        if not stat.S_ISREG(info.st_mode):
            return 0
        head = os.read(handle, WORK_SIZE_HEAD)
    except OSError:
        return 0
    finally:
        os.close(handle)
    try:
        with _pillow_unlimited(), Image.open(io.BytesIO(head), formats=_PILLOW_FORMATS) as header:
            width, height = header.size
        return width * height
    except Exception:  # no header Pillow knows within the head (a JPEG's EXIF may be larger): its size
        return info.st_size


def read_source(source: str, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> bytes | None:
    """The bytes of a file source (bounded, see read_file); None for a built-in image."""
    if source.startswith(BUILTIN_PREFIX):
        check_source(source)
        return None
    return read_file(source, max_bytes_for(max_pixels))


def source_name(source: str) -> str:
    """What tables call a source: a built-in's name, or the file's stem (printable, see display_path)."""
    if source.startswith(BUILTIN_PREFIX):
        return source[len(BUILTIN_PREFIX):]
    return display_path(os.path.splitext(os.path.basename(source))[0])


def decode_source(source: str, data: bytes | None, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> SourceImage:
    """A source's pixels from its bytes (read_source); ImageError "<path>: <reason>" when unusable."""
    if data is None:
        pixels, notes = _load_builtin(source[len(BUILTIN_PREFIX):])
    else:
        try:
            pixels, notes = decode_image(data, max_pixels)
        except ImageError as exc:
            raise ImageError(f"{display_path(source)}: {exc}") from None
    return SourceImage(name=source_name(source), id=image_id(pixels), origin=display_path(source), pixels=pixels,
                       notes=tuple(notes))


def load_source(source: str, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> SourceImage:
    return decode_source(source, read_source(source, max_pixels), max_pixels)


def _one_path_each(sources: list[str]) -> list[str]:
    """Each file once (file_identity), where it was first listed, by the first of its paths that is
    not a link to it, if any: a link listed before the file it points to (odd/ sorts before photos/)
    had the file's image named after the link, and the file's own path in no table."""
    unique: dict = {}
    for source in sources:
        kept = unique.setdefault(file_identity(source), source)
        if kept != source and os.path.islink(kept) and not os.path.islink(source):
            unique[file_identity(source)] = source  # the key keeps its place: the first listing's
    return list(unique.values())


def source_names(sources: list[str]) -> dict[str, str]:
    """What the tables call each source: its name (source_name), or, where two sources share a name
    (a/x.png and b/x.png; x.png and x.webp), its path as listed, so that no two images share one.
    Again until none does: a path may be another file's stem (cat.jpg, and cat.jpg.png's stem)."""
    names = {source: source_name(source) for source in sources}
    while True:
        counts = Counter(names.values())
        shared = [source for source, name in names.items() if counts[name] > 1 and name != display_path(source)]
        if not shared:  # none shared, or only paths that show alike (escapes), which nothing tells apart
            return names
        for source in shared:
            names[source] = display_path(source)


def fallback_in_use(images: tuple[str, ...], fallback: str | None) -> bool:
    """True when the config's fallback image stands in: none of its image entries exists."""
    missing = [e for e in images if not e.startswith(BUILTIN_PREFIX) and not glob.has_magic(e)
               and not os.path.exists(e)]
    return fallback is not None and len(missing) == len(images)


def resolve_sources(images: tuple[str, ...], fallback: str | None, config_source: str,
                    limit: int | None = None, seed: int = 0, unlisted: list | None = None,
                    option: str | None = None) -> tuple[list[str], list[str]]:
    """The sources to load, and notes for the user.

    The fallback stands in only when none of the entries names an existing image
    (the article's image is not distributed); otherwise an entry that names
    nothing is an error. `limit` keeps a seeded random sample, in listing order.
    Folders that cannot be listed go to `unlisted` (see expand_source). An entry's error names
    `option` (--images) when the images came from it, else the config's file and key.
    """
    from harness.errors import ConfigError

    if fallback_in_use(images, fallback):
        return [fallback], [f"{', '.join(images)} not found: using the freely licensed stand-in "
                            f"{fallback} instead (see README, 'Source images')"]
    sources: list[str] = []
    notes = []
    for i, entry in enumerate(images):
        try:
            sources += expand_source(entry, unlisted, notes, images)
        except ValueError as exc:
            raise (ConfigError(option, "", str(exc)) if option else
                   ConfigError(config_source, f"images[{i}]", str(exc))) from None
    sources = _one_path_each(sources)
    if limit is not None and len(sources) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(sources), size=limit, replace=False))
        notes.append(f"limit: {limit} of {len(sources)} images, sampled with seed {seed}")
        sources = [sources[k] for k in keep]
    return sources, notes
