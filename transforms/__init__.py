"""Image transforms: pure functions ``f(image, **params) -> image``.

Every image is uint8, HxWx3, BGR (OpenCV's order). Parameters, their types and
valid ranges are declared once, in each function's annotations; the YAML name
of a transform is its function name. `apply_chain` is the one checked entry point.
"""

from __future__ import annotations

import functools
import inspect
import typing
from typing import Annotated, Callable, Iterable

import numpy as np

from harness.errors import HarnessError, exception_text, shown
from harness.params import Doc, Range, check_params, coerce, param_specs, type_name, unsupported_kind
from harness.registry import Registry

def _check_plugin(obj, reference: str) -> str | None:
    """Why an imported object is not a transform, or None: the contract every registered transform
    keeps, checked before a plugin is used. A plain Python function (not a class, a builtin or a
    partial) whose first parameter takes the image, positionally; every other parameter named,
    passable by keyword, annotated with a type `harness.params` can check (no *args or **kwargs)
    and, if it has a default, a default of that type. So a config can neither call an arbitrary
    function (`subprocess:call` takes *popenargs) nor pass it parameters nobody declared. It has no
    name of its own to check against `reference`: its steps and tables name it by the reference."""
    if not inspect.isfunction(obj):
        what = ("a class" if inspect.isclass(obj) else "a built-in function" if inspect.isbuiltin(obj)
                else f"a {type(obj).__name__}")
        return f"must be a function f(image, **params) -> image written in Python, not {what}"
    params = list(inspect.signature(obj).parameters.values())
    if not params or params[0].kind not in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD) \
            or params[0].default is not params[0].empty:
        return "must take the image as its first parameter (positional, without a default)"
    try:
        hints = typing.get_type_hints(obj, include_extras=True)
    except Exception as exc:  # an annotation naming something undefined
        return f"has annotations that cannot be resolved ({exception_text(exc, with_type=True)})"
    specs = {spec.name: spec for spec in param_specs(obj)}
    for param in params[1:]:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            return f"must declare each parameter by name, not *{'*' if param.kind is param.VAR_KEYWORD else ''}" \
                   f"{param.name}"
        if param.kind is param.POSITIONAL_ONLY:
            return f"parameter '{param.name}' must be passable by keyword"
        spec = specs[param.name]
        problem = unsupported_kind(spec.kind) if param.name in hints else "no annotation"
        if problem:
            return (f"parameter '{param.name}' needs an annotation harness can check (int, float, str, bool, "
                    f"Literal, tuple or list of them), has {problem}")
        if not spec.required and not coerce(spec.kind, spec.default)[0]:
            return f"parameter '{param.name}' has a default {shown(spec.default)} that is not of type {type_name(spec.kind)}"
    return None



TRANSFORMS = Registry("transform", check=_check_plugin)

# Parameter types shared by several modules.
Color = Annotated[tuple[int, int, int], Range(0, 255)]  # BGR, as OpenCV draws; OpenCV and Pillow clamp others
Seed = Annotated[int, Range(0), Doc("random seed")]  # random transforms draw only from np.random.default_rng(seed)


class TransformError(ValueError):
    """A transform cannot apply to this image (e.g. a crop outside it)."""


# No edit makes an image larger than both its input and the largest image a run reads by default
# (Pillow's refusal limit, harness.images.DEFAULT_MAX_PIXELS): a chain of upscales or borders within
# each step's range (scale 16, then 16 again) would otherwise ask for tens of gigabytes. An image
# already larger (a run that raised max_pixels) may still be edited at its own size or less.
MAX_OUTPUT_PIXELS = 178_956_970


def output_size(width: int, height: int, image: np.ndarray) -> tuple[int, int]:
    """(width, height) of an edit's result from `image`, checked before it is made: TransformError
    past MAX_OUTPUT_PIXELS and the input's own size. Every transform that can enlarge an image calls it."""
    if width * height > max(MAX_OUTPUT_PIXELS, image.shape[0] * image.shape[1]):
        raise TransformError(f"the result would be {width}x{height}, more than the {MAX_OUTPUT_PIXELS:,} pixels an "
                             "edit may make")
    return width, height


def transform(func: Callable | None = None, *, cpu_exact: bool | Callable[[dict], bool] = True):
    """Register a transform function under its own name: `@transform`, or `@transform(cpu_exact=...)`
    for one whose pixels are not the same on every processor (False, or a function of the step's
    parameters, defaults filled in, that says for which). See `cpu_exact`."""
    def register(func: Callable) -> Callable:
        func.cpu_exact = cpu_exact
        TRANSFORMS.add(func.__name__, func)
        return func

    return register if func is None else register(func)


def cpu_exact(name: str, params: dict) -> bool:
    """Whether a step gives the same pixels on every x86-64 and ARM processor. Not where OpenCV runs
    it through Intel's IPP (x86-64 only, at the machine's vector level) or vector code of its own
    whose float rounding follows the instructions (measured by switching them off: OPENCV_IPP=disabled,
    OPENCV_CPU_DISABLE), nor where a library's ARM build rounds its floating point otherwise (measured
    against an arm64 build, .ci/arm64; tests/test_exact_edits.py pins the exact steps' pixels). A
    plugin is taken to be exact, as a hasher is, unless its function has a `cpu_exact` attribute that
    says otherwise."""
    func, params = check_step(name, params)
    exact = getattr(func, "cpu_exact", True)
    if callable(exact):
        try:
            exact = exact(params)
        except Exception as exc:  # a plugin's: its error, not harness's
            raise HarnessError(f"transform '{name}': its cpu_exact function failed on the step's parameters (one "
                               f"dict): {exception_text(exc, with_type=True)}") from None
    if not isinstance(exact, (bool, np.bool_)):  # "no" is true to bool(): the edit would count as exact
        raise HarnessError(f"transform '{name}': cpu_exact must be True, False or a function of the step's "
                           f"parameters (one dict) returning one, not {shown(exact)}")
    return bool(exact)


def _describe(image) -> str:
    return (f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray)
            else type(image).__name__)


def _is_image(image) -> bool:
    """uint8, H x W x 3, H and W >= 1: the only images transforms take and give."""
    return (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
            and image.shape[2] == 3 and image.shape[0] >= 1 and image.shape[1] >= 1)


def check_image(image: np.ndarray, where: str, source: np.ndarray | None = None) -> np.ndarray:
    """`image`, the result of a step from `source`, checked: a uint8 HxWx3 image, no larger than
    output_size allows (a plugin's result too, before the next step grows it further)."""
    if not _is_image(image):
        raise TransformError(f"{where} must return a uint8 HxWx3 image, got {_describe(image)}")
    output_size(image.shape[1], image.shape[0], image if source is None else source)
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


def read_only(image: np.ndarray) -> np.ndarray:
    """A view of `image` that cannot be written: what a plugin (transform or hasher) is given."""
    view = image.view()
    view.flags.writeable = False
    return view


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
        plugin = ":" in name
        try:
            # A plugin gets a read-only view: one that edited its input in place changed the image (or
            # variant) it shares a batch with, and every hash made of it, cached ones too.
            out = func(read_only(image) if plugin else image, **params)
        except TransformError:
            raise
        except (Exception, SystemExit) as exc:  # sys.exit() in a plugin: its failure, not harness's exit
            rows, cols = image.shape[:2]
            hint = ("; a transform returns a new image and leaves its input as it is"
                    if plugin and "read-only" in str(exc) else "")
            raise TransformError(f"transform '{name}' failed on a {cols}x{rows} image: "
                                 f"{exception_text(exc, with_type=True)}{hint}") from exc
        image = check_image(out, f"transform '{name}'", image)
    return image


# Importing the modules registers their transforms.
from harness.transforms import codecs, filters, geometry, noise, overlays, photometric  # noqa: E402,F401
