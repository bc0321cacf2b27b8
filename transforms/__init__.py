"""Image transforms: pure functions ``f(image, **params) -> image``.

Every image is uint8, HxWx3, BGR (OpenCV's order). Parameters, their types and
valid ranges are declared once, in each function's annotations; the YAML name
of a transform is its function name. `apply_chain` is the one checked entry point.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Callable, Iterable

import numpy as np

from harness.params import Doc, Range
from harness.registry import Registry

def _check_plugin(obj) -> str | None:
    if not inspect.isfunction(obj):
        return "must be a function f(image, **params) -> image"
    if not inspect.signature(obj).parameters:
        return "must take the image as its first parameter"
    return None


TRANSFORMS = Registry("transform", check=_check_plugin)

# Parameter types shared by several modules.
Color = tuple[int, int, int]  # BGR, as OpenCV draws
Seed = Annotated[int, Range(0), Doc("random seed")]  # random transforms draw only from np.random.default_rng(seed)


class TransformError(ValueError):
    """A transform cannot apply to this image (e.g. a crop outside it)."""


def transform(func: Callable) -> Callable:
    """Register a transform function under its own name."""
    TRANSFORMS.add(func.__name__, func)
    return func


def check_image(image: np.ndarray, where: str) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
            or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        desc = (f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray)
                else type(image).__name__)
        raise TransformError(f"{where} must return a uint8 HxWx3 image, got {desc}")
    return image


def apply_chain(image: np.ndarray, steps: Iterable[tuple[str, dict]]) -> np.ndarray:
    """Apply (name, params) steps in order. Params must already be validated."""
    for name, params in steps:
        image = check_image(TRANSFORMS.get(name)(image, **params), f"transform '{name}'")
    return image


# Importing the modules registers their transforms.
from transforms import codecs, filters, geometry, noise, overlays, photometric  # noqa: E402,F401
