"""The colour layouts of an image that hashers need, made once per image and shared.

Every hasher takes uint8 BGR arrays (the one interface, plugins included). Several backends
want something else: ImageHash a PIL image (most of its functions convert it to gray first),
PDQ an RGB array. Converting once per hasher repeats the same work, so while the runner hashes
a batch with several hashers it registers the batch with `shared(images)`, and a backend asks
`layouts(image)` for what it needs: inside that block it gets the batch's shared, lazily made
conversions; outside it (a hasher called on its own), a fresh one, with the same pixels.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator, Sequence

import numpy as np

_SHARED: contextvars.ContextVar[dict[int, "Layouts"] | None] = contextvars.ContextVar("layouts", default=None)


class Layouts:
    """One image in the layouts hashers need, each made on first use."""

    __slots__ = ("bgr", "_rgb", "_pil_rgb", "_pil_gray")

    def __init__(self, bgr: np.ndarray):
        self.bgr = bgr
        self._rgb = self._pil_rgb = self._pil_gray = None

    @property
    def rgb(self) -> np.ndarray:
        """uint8 RGB, C-contiguous."""
        if self._rgb is None:
            import cv2  # ten times numpy's reversed copy

            self._rgb = cv2.cvtColor(self.bgr, cv2.COLOR_BGR2RGB)
        return self._rgb

    @property
    def pil_rgb(self):
        """A PIL image in mode RGB."""
        if self._pil_rgb is None:
            from PIL import Image

            self._pil_rgb = Image.fromarray(self.rgb)
        return self._pil_rgb

    @property
    def pil_gray(self):
        """A PIL image in mode L, made by PIL's own RGB -> L conversion: exactly what ImageHash's
        functions compute first (`image.convert("L")`), so giving them this changes no bit."""
        if self._pil_gray is None:
            if self._pil_rgb is not None:
                self._pil_gray = self._pil_rgb.convert("L")
            else:
                # Pillow keeps RGB as four bytes a pixel, so an RGB array is first copied into a new,
                # zero-filled image; an RGBA array is used where it is (frombuffer), and Pillow's
                # RGBA -> L is the same function as its RGB -> L: the same bytes in half the time.
                import cv2
                from PIL import Image

                rgba = cv2.cvtColor(self.bgr, cv2.COLOR_BGR2RGBA)
                size = (rgba.shape[1], rgba.shape[0])
                self._pil_gray = Image.frombuffer("RGBA", size, rgba, "raw", "RGBA", 0, 1).convert("L")
        return self._pil_gray


def layouts(image: np.ndarray) -> Layouts:
    """The shared layouts of `image` while its batch is registered, else fresh ones."""
    registered = _SHARED.get()
    found = registered.get(id(image)) if registered else None
    return found if found is not None and found.bgr is image else Layouts(image)


@contextlib.contextmanager
def shared(images: Sequence[np.ndarray]) -> Iterator[None]:
    """Within the block, every hasher given one of `images` shares its layouts; they are freed after."""
    token = _SHARED.set({id(image): Layouts(image) for image in images})
    try:
        yield
    finally:
        _SHARED.reset(token)
