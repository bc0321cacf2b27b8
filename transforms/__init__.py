"""Image transforms: pure functions ``f(image, **params) -> image``.

Every image is uint8, HxWx3, BGR (OpenCV's order). Parameters, their types and
valid ranges are declared once, in each function's annotations; the YAML name
of a transform is its function name. `apply_chain` is the one checked entry point.
"""

from __future__ import annotations

import functools
import inspect
from typing import Annotated, Callable, Iterable

import numpy as np

from harness.params import Doc, Range, check_params, param_specs
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


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line (cv2.error spans several), for CSV cells and the CLI."""
    return " ".join(str(exc).split())


def _describe(image) -> str:
    return (f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray)
            else type(image).__name__)


def _is_image(image) -> bool:
    """uint8, H x W x 3, H and W >= 1: the only images transforms take and give."""
    return (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
            and image.shape[2] == 3 and image.shape[0] >= 1 and image.shape[1] >= 1)


def check_image(image: np.ndarray, where: str) -> np.ndarray:
    if not _is_image(image):
        raise TransformError(f"{where} must return a uint8 HxWx3 image, got {_describe(image)}")
    return image


@functools.lru_cache(maxsize=None)
def _specs(func: Callable):
    return param_specs(func)


def check_step(name: str, params: dict) -> tuple[Callable, dict]:
    """The transform and its parameters checked against their declaration, defaults filled in:
    TransformError "transform 'NAME': <param>: <problem>" for a bad one (an unknown name raises
    the registry's UnknownName)."""
    func = TRANSFORMS.get(name)
    try:
        return func, check_params(_specs(func), params, f"transform '{name}'")
    except ValueError as exc:
        raise TransformError(f"transform '{name}': {exc}") from None


def apply_chain(image: np.ndarray, steps: Iterable[tuple[str, dict]]) -> np.ndarray:
    """Apply (name, params) steps in order.

    The one checked entry point: the input must be a uint8 HxWx3 BGR image, every
    step's parameters are checked against the transform's declaration (as a config's
    are), every step's output is checked like the input, and whatever a transform
    raises other than TransformError (a cv2.error on an image too small for it, say)
    comes out as a TransformError naming the transform and the image size.
    """
    if not _is_image(image):
        raise TransformError(f"apply_chain expects a uint8 HxWx3 BGR image, got {_describe(image)}")
    for name, params in steps:
        func, params = check_step(name, params)
        try:
            out = func(image, **params)
        except TransformError:
            raise
        except Exception as exc:
            rows, cols = image.shape[:2]
            raise TransformError(f"transform '{name}' failed on a {cols}x{rows} image: "
                                 f"{type(exc).__name__}: {_one_line(exc)}") from exc
        image = check_image(out, f"transform '{name}'")
    return image


# Importing the modules registers their transforms.
from harness.transforms import codecs, filters, geometry, noise, overlays, photometric  # noqa: E402,F401
