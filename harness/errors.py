"""Errors the user can fix, the exit statuses of the command line, and the bounded text they print.

A HarnessError is bad input (a config, an image, weights, an output directory): the CLI
prints it as one line and exits with status 2. Anything else that reaches the CLI is a bug
in harness (status 3). Messages echo the user's values, so every value is shown shortened
(`shown`) and every message is one line of bounded length: a hostile config cannot make an
error message megabytes long.
"""

from __future__ import annotations

import reprlib

# Exit statuses of `python -m harness`.
EXIT_OK = 0
EXIT_FAILURES = 1  # the run finished, but some images, transforms or hashes failed (rows of errors.csv)
EXIT_BAD_INPUT = 2  # a HarnessError: bad config, image sources, weights, output directory; or an OSError
EXIT_BUG = 3  # an unexpected exception: a bug in harness
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as a shell reports it)
EXIT_BROKEN_PIPE = 141  # the reader of stdout went away (128 + SIGPIPE), e.g. `list | head`
EXIT_TERMINATED = 143  # SIGTERM (`kill PID`; 128 + SIGTERM), handled as Ctrl-C is


class Terminated(KeyboardInterrupt):
    """SIGTERM in the command-line process: a KeyboardInterrupt, so that it stops the run where
    Ctrl-C does and cleans up the same way (the staging folder, the workers)."""

SHOWN_MAX = 80  # characters of a user's value echoed in a message
PATH_MAX = 200  # characters of a file or key path echoed in a message
REASON_MAX = 300  # characters of a library's exception message quoted as a reason
MESSAGE_MAX = 1000  # characters of a whole message, as printed ("error: ..." included)
# OpenCV decodes no image of more pixels (CV_IO_MAX_IMAGE_PIXELS): the bound of `max_pixels`. A file
# of one is read whole (8 bytes a pixel at most), so it also bounds what a config can make a run read.
OPENCV_MAX_PIXELS = 1 << 30

# reprlib bounds the work as well as the text: it never walks more than a few items or levels, so a
# value shared a million times over (a YAML alias bomb) costs no more to show than a small one.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxtuple, _REPR.maxlist, _REPR.maxdict, _REPR.maxset = 3, 6, 6, 4, 6
_REPR.maxstring, _REPR.maxlong, _REPR.maxother = SHOWN_MAX, 40, SHOWN_MAX


def shortened(text: str, limit: int) -> str:
    """`text` on one line, cut to `limit` characters with an ellipsis."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def line(kind: str, text) -> str:
    """What the command line prints for an error or a note: "KIND: TEXT", one line of at most MESSAGE_MAX."""
    return shortened(f"{kind}: {text}", MESSAGE_MAX)


def exception_text(exc: BaseException, with_type: bool = False) -> str:
    """An exception's message on one line of bounded length (a cv2.error spans several lines),
    or its type's name when it has no message: the reason a message quotes. `with_type`
    puts the type's name first ("ValueError: ...") where the message alone says too little."""
    if isinstance(exc, SystemExit):  # a plugin's code calling sys.exit(), caught where it was called
        return f"it called sys.exit({shortened(repr(exc.code), REASON_MAX)})"
    text = shortened(str(exc), REASON_MAX)
    if not text or not with_type:
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def clipped(text: str, limit: int = SHOWN_MAX) -> str:
    """A user's text (a name, a path) on one line, its middle cut to keep at most `limit`
    characters, as `shown` cuts a value: a path keeps its start and its file name."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    keep = limit - 3
    return text[:keep - keep // 2] + "..." + text[len(text) - keep // 2:]


def shown(value, limit: int = SHOWN_MAX) -> str:
    """A user's value as a message shows it: its repr, on one line, at most `limit` characters."""
    try:
        text = _REPR.repr(value)
    except Exception:  # a repr that fails must not replace the message it was meant for
        text = f"<{type(value).__name__}>"
    return shortened(text, limit)


class HarnessError(Exception):
    """A problem with the user's input (config, image, weights), never a bug."""

    exit_status = EXIT_BAD_INPUT

    def __str__(self) -> str:
        return shortened(super().__str__(), MESSAGE_MAX)


class ConfigError(HarnessError):
    """An invalid config: the message names the file, the key path and the problem."""

    def __init__(self, source: str, key: str, problem: str):
        self.source, self.key, self.problem = source, key, problem
        source, key = clipped(source, PATH_MAX), clipped(key, PATH_MAX)  # a key path holds the config's own keys
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")


class UnavailableError(HarnessError):
    """A hasher cannot run here (e.g. model weights missing): marked unavailable while the others run,
    or, with --strict, the run stops before any work."""


class ImageError(HarnessError):
    """An image cannot be read or used."""


class HashError(HarnessError):
    """A hasher cannot hash this image (wrong dtype or shape, or the backend failed on it)."""
