"""CNN embeddings from `keras.applications`, compared as the article did.

TensorFlow is imported in `prepare()`, never at module import, so commands
that do not run a Keras hasher stay fast.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
from dataclasses import dataclass, field
from typing import Annotated, ClassVar, Literal, Sequence

import cv2
import numpy as np

from harness.errors import HarnessError, UnavailableError, exception_text, shown
from harness.hashers.base import Hasher, cosine_cross_64, cosine_distance_64
from harness.params import Doc, FileContent, Range, file_params

# keras.applications constructor -> the module holding its preprocess_input. A static table,
# so a config is checked without importing TensorFlow; prepare() checks the installed Keras.
# Every preprocess_input takes float RGB in 0..255. Those of ConvNeXt, EfficientNet(V2) and
# MobileNetV3 return it unchanged: the models rescale inside (include_preprocessing=True).
PREPROCESS_MODULES = {
    **{f"ConvNeXt{size}": "convnext" for size in ("Tiny", "Small", "Base", "Large", "XLarge")},
    **{f"DenseNet{depth}": "densenet" for depth in (121, 169, 201)},
    **{f"EfficientNetB{i}": "efficientnet" for i in range(8)},
    **{f"EfficientNetV2{v}": "efficientnet_v2" for v in ("B0", "B1", "B2", "B3", "S", "M", "L")},
    "InceptionResNetV2": "inception_resnet_v2",
    "InceptionV3": "inception_v3",
    "MobileNet": "mobilenet",
    "MobileNetV2": "mobilenet_v2",
    "MobileNetV3Small": "mobilenet_v3",
    "MobileNetV3Large": "mobilenet_v3",
    "NASNetMobile": "nasnet",
    "NASNetLarge": "nasnet",
    "ResNet50": "resnet50",
    "ResNet101": "resnet",
    "ResNet152": "resnet",
    **{f"ResNet{depth}V2": "resnet_v2" for depth in (50, 101, 152)},
    "VGG16": "vgg16",
    "VGG19": "vgg19",
    "Xception": "xception",
}

# The input side each model was trained at (its ImageNet weights' default); 224 otherwise.
DEFAULT_INPUT_SIZES = {
    "InceptionV3": 299, "InceptionResNetV2": 299, "Xception": 299, "NASNetLarge": 331,
    "EfficientNetB1": 240, "EfficientNetB2": 260, "EfficientNetB3": 300, "EfficientNetB4": 380,
    "EfficientNetB5": 456, "EfficientNetB6": 528, "EfficientNetB7": 600,
    "EfficientNetV2B1": 240, "EfficientNetV2B2": 260, "EfficientNetV2B3": 300,
    "EfficientNetV2S": 384, "EfficientNetV2M": 480, "EfficientNetV2L": 480,
}


def check_model_name(model: str) -> None:
    """ValueError("model: ...") for a name that is not a keras.applications model in the table."""
    if model in PREPROCESS_MODULES:
        return
    import difflib

    close = difflib.get_close_matches(model, list(PREPROCESS_MODULES), n=3, cutoff=0.6)
    if not close:  # case slips ("resnet50") are the commonest typo
        close = [name for name in PREPROCESS_MODULES if name.lower() == model.lower()]
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else (
        f"; known: {', '.join(sorted(PREPROCESS_MODULES))}")
    raise ValueError(f"model: unknown keras.applications model '{model}'{hint}")


# Where keras.applications downloads ImageNet weights from.
WEIGHTS_HOST = "storage.googleapis.com"

# The file each model's ImageNet weights without the top are cached under: the name
# keras.utils.get_file is given in the model's keras.applications module (a static table, as
# PREPROCESS_MODULES, so a missing file is named without importing TensorFlow). Keras 3.
_TF_KERNELS_NOTOP = "_weights_tf_dim_ordering_tf_kernels_notop.h5"
WEIGHTS_FILES = {
    **{f"ConvNeXt{size}": f"convnext_{size.lower()}_notop.h5" for size in ("Tiny", "Small", "Base", "Large", "XLarge")},
    **{f"DenseNet{depth}": f"densenet{depth}{_TF_KERNELS_NOTOP}" for depth in (121, 169, 201)},
    **{f"EfficientNetB{i}": f"efficientnetb{i}_notop.h5" for i in range(8)},
    **{f"EfficientNetV2{v}": f"efficientnetv2-{v.lower()}_notop.h5" for v in ("B0", "B1", "B2", "B3", "S", "M", "L")},
    "InceptionResNetV2": f"inception_resnet_v2{_TF_KERNELS_NOTOP}",
    "InceptionV3": f"inception_v3{_TF_KERNELS_NOTOP}",
    "MobileNetV3Small": "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
    "MobileNetV3Large": "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
    "NASNetMobile": "nasnet_mobile_no_top.h5",
    "NASNetLarge": "nasnet_large_no_top.h5",
    **{f"ResNet{depth}": f"resnet{depth}{_TF_KERNELS_NOTOP}" for depth in (50, 101, 152)},
    **{f"ResNet{depth}V2": f"resnet{depth}v2{_TF_KERNELS_NOTOP}" for depth in (50, 101, 152)},
    "VGG16": f"vgg16{_TF_KERNELS_NOTOP}",
    "VGG19": f"vgg19{_TF_KERNELS_NOTOP}",
    "Xception": f"xception{_TF_KERNELS_NOTOP}",
}
# MobileNet and MobileNetV2 have weights for several input sides; Keras takes 224's for any other.
_MOBILENET_SIDES = {"MobileNet": (128, 160, 192, 224), "MobileNetV2": (96, 128, 160, 192, 224)}


def weights_file(model: str, side: int) -> str | None:
    """The file name of `model`'s ImageNet weights (no top) for a `side` x `side` input, as Keras
    caches it; None for a model the tables do not know."""
    if model in _MOBILENET_SIDES:
        rows = side if side in _MOBILENET_SIDES[model] else 224
        return (f"mobilenet_1_0_{rows}_tf_no_top.h5" if model == "MobileNet"
                else f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5")
    return WEIGHTS_FILES.get(model)


def keras_cache() -> str:
    """Keras' cache of downloaded files: $KERAS_HOME/models, by default ~/.keras/models."""
    return os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), "models")


def input_side(model: str, input_size: int | None) -> int:
    """The network input side, px: `input_size`, or the model's default when that is null."""
    return input_size or DEFAULT_INPUT_SIZES.get(model, 224)


def cached_imagenet_file(model: str, side: int) -> str | None:
    """The path of `model`'s ImageNet weights in Keras' cache where that file is there, else None:
    the file the model then loads as it is (_from_cache), not through Keras' download."""
    filename = weights_file(model, side)
    path = os.path.join(keras_cache(), filename) if filename else None
    return path if path and os.path.isfile(path) else None


# No keras.applications model's weights without the top come near this: ConvNeXtXLarge's, the
# largest, are 348,147,968 float32 parameters (1.4 GB); ResNet50's file is 94,765,736 bytes. A weights
# file is read whole for its SHA-256 (the hash cache's key, run.json's files_read), 6 GB in 14 to 28 s
# on a 2-core machine: where Keras never opened it (no TensorFlow: the hasher unavailable, its key
# still made), and where Keras loaded it (weights with anything appended). A larger file is refused
# before it is read.
MAX_WEIGHTS_BYTES = 2 * 1024**3
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"  # the first 8 bytes of every HDF5 file Keras or h5py writes
ZIP_SIGNATURE = b"PK\x03\x04"  # a .keras archive's


def weights_file_problem(path: str) -> str | None:
    """What makes the file at `path` no weights file a Keras model can load, from its size and its
    first bytes only, or None. The signature is checked where Keras reads the file by its name's
    ending: HDF5 for .h5 and .hdf5 (.weights.h5 too), a zip archive for .keras; Keras refuses any
    other ending itself, before reading the file."""
    try:
        size = os.path.getsize(path)
        if size > MAX_WEIGHTS_BYTES:
            return (f"{shown(path)} is {size:,} bytes, more than any keras.applications model's weights "
                    f"without the top ({MAX_WEIGHTS_BYTES:,} at most: ConvNeXtXLarge's, the largest, are "
                    f"1.4 GB, ResNet50's 94,765,736 bytes); refused before reading it")
        lower = path.lower()
        ending = next((e for e in (".keras", ".h5", ".hdf5") if lower.endswith(e)), None)
        if ending is None:
            return None
        kind, signature = (("a .keras archive", ZIP_SIGNATURE) if ending == ".keras" else
                           ("an HDF5 file", HDF5_SIGNATURE))
        with open(path, "rb") as handle:
            start = handle.read(len(signature))
    except OSError as exc:
        return f"cannot read {shown(path)} ({exc.strerror or exc})"
    if start != signature:
        found = "it is empty" if not size else f"its {size:,} bytes begin {start!r}, not {signature!r}"
        return f"{shown(path)} is not {kind}, which Keras takes a name ending in '{ending}' for: {found}"
    return None


# A download that connects and then stalls is given up after this many seconds without a byte
# (socket's default timeout; Keras' urlretrieve sets none, and would wait for ever).
DOWNLOAD_STALL_S = 60


def _no_tensorflow(why) -> str:
    return (f"the CNN hashers need TensorFlow, which is not installed ({why}); "
            f"in harness's folder, pip install -e '.[cnn]' (or pip install tensorflow)")


def import_keras():
    """Import Keras with TensorFlow's start-up log lines (CUDA probing, absl) kept off the terminal.

    They are written by C++ code straight to file descriptor 2 before any Python
    logging is set up, so only redirecting the descriptor keeps them out. An
    import that fails still raises its Python exception.
    """
    import sys

    if sys.modules.get("keras") is not None:
        return sys.modules["keras"]
    # Read by TensorFlow as it starts; the session's own value (or none) is put back after, so
    # that its later subprocesses log as they would have.
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import keras
    except ImportError as exc:
        raise UnavailableError(_no_tensorflow(exc)) from None
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        if level is None:
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return keras


def weights_route() -> tuple[str, int, str]:
    """Where a download of ImageNet weights first connects: (host, port, the proxy or "").
    Keras downloads with urllib, which goes through the proxy that HTTPS_PROXY (or the system's
    settings) names, unless NO_PROXY exempts the host: probed at the weights' host, a machine whose
    only way out is its proxy was taken to have no network."""
    import urllib.parse
    import urllib.request

    proxy = urllib.request.getproxies().get("https")
    if not proxy or urllib.request.proxy_bypass(WEIGHTS_HOST):
        return WEIGHTS_HOST, 443, ""
    parsed = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    try:
        # urllib tunnels an https download through the proxy's port, else 443 whatever its scheme
        port = parsed.port or 443
    except ValueError:  # a port that is no number: urllib fails on it too, so the probe does
        port = 0
    host = parsed.hostname or ""
    # named without any user name or password the address holds: the message is printed and saved
    return host, port, f"{parsed.scheme}://{f'[{host}]' if ':' in host else host}:{port}"


@contextlib.contextmanager
def _loading(download: bool):
    """Around a model's construction: Keras' warnings kept quiet (a weights file of another model
    gave 197 lines of "Skipping nested container" before its error) and, where Keras downloads the
    weights, a read that stalls given up (DOWNLOAD_STALL_S) instead of waiting for ever, and its
    "Downloading data from" and progress bar sent to stderr, where harness' own progress goes: on
    stdout they came before the run's table, in a pipe reading it, under --quiet too."""
    import socket
    import sys
    import warnings

    before = socket.getdefaulttimeout()
    try:
        to_stderr = contextlib.redirect_stdout(sys.stderr) if download else contextlib.nullcontext()
        with warnings.catch_warnings(), to_stderr:
            warnings.simplefilter("ignore")
            if download:
                socket.setdefaulttimeout(DOWNLOAD_STALL_S)
            yield
    finally:
        socket.setdefaulttimeout(before)


@contextlib.contextmanager
def _from_cache(path: str | None):
    """Around a model's construction with weights='imagenet' whose file is in Keras' cache (`path`):
    Keras' own get_file hands that path over as it is. Keras checks a cached file's MD5 only to
    download it again, and deleted the file when that download failed (no network); a read-only
    cache folder sent it to /tmp/.keras. The constructor is still given 'imagenet', not the path:
    EfficientNet builds another network for it (a normalisation layer), and loaded by path its
    ImageNet weights went into the network without that layer, silently. Every keras.applications
    constructor fetches its file through keras.src.utils.file_utils.get_file(name, origin, ...);
    where Keras is laid out otherwise, its own way is kept."""
    try:
        from keras.src.utils import file_utils
    except ImportError:
        file_utils = None
    if path is None or file_utils is None or not hasattr(file_utils, "get_file"):
        yield
        return
    original = file_utils.get_file

    def get_file(fname=None, *args, **kwargs):
        if fname is not None and os.path.basename(str(fname)) == os.path.basename(path):
            return path
        return original(fname, *args, **kwargs)

    file_utils.get_file = get_file
    try:
        yield
    finally:
        file_utils.get_file = original


@dataclass(frozen=True)
class KerasEmbedding(Hasher):
    weights: Annotated[str | None, FileContent(names=("imagenet",)), Doc(
        "'imagenet' (Keras' cache, downloading if absent), a path to a .h5 weights file, "
        "or null for random weights (tests)")] = "imagenet"
    input_size: Annotated[int, Range(32, 1024), Doc("side of the square network input, px")] = 224
    pooling: Annotated[Literal["avg", "max"], Doc("global pooling of the last feature map")] = "avg"
    channel_order: Annotated[Literal["rgb", "bgr"], Doc(
        "order the pixels are fed in; Keras expects rgb, the article fed OpenCV's bgr")] = "rgb"
    batch_size: Annotated[int, Range(1, 4096), Doc("images per forward pass")] = 32
    # keras.utils.set_random_seed seeds NumPy's legacy generator too, which takes 0..2**32 - 1 only
    # (the transforms' Seed, for np.random.default_rng, has no upper bound)
    seed: Annotated[int, Range(0, 2**32 - 1), Doc("initialisation seed when weights is null")] = 0
    _model: list = field(default_factory=list, init=False, repr=False, compare=False)
    # The ImageNet weights' file to load instead of looking in this machine's Keras cache (use_files)
    _imagenet_file: list = field(default_factory=list, init=False, repr=False, compare=False)

    model_name: ClassVar[str]  # the keras.applications constructor
    batch_invariant = False  # float kernels block by batch size
    parallel_inside = True  # TensorFlow's convolutions use every core
    cpu_exact = False  # float32 convolutions follow the CPU's vector instructions
    distance_kind = "64*(1-cosine)"
    distance_max = 64.0  # orthogonal vectors; pooled ReLU features are non-negative, so rarely above

    @property
    def side(self) -> int:
        """The network input side, px: input_size, or the model's default when that is null."""
        return input_side(self.model_name, self.input_size)

    @classmethod
    def files_read(cls, params: dict) -> list[tuple[str, str]]:
        """(parameter, path) of the files the hasher with `params` (its spec) loads: a `weights` path,
        and for 'imagenet' the file in Keras' cache where it is there (cached_imagenet_file), so that
        the hash cache's keys and the run's record follow that file's content as they follow a path's."""
        if params.get("weights") != "imagenet":
            return file_params(cls, params)
        model = params.get("model") or cls.model_name
        path = cached_imagenet_file(model, input_side(model, params.get("input_size")))
        return [("weights", path)] if path else []

    def use_files(self, files: dict[str, str]) -> None:
        """Load the files `files` names (parameter -> path), as files_read found them where the run's
        plan was made: for 'imagenet', the file in that process's Keras cache, which the run keyed its
        cache by and records in run.json. A worker (a Dask worker under another user's home, a spawned
        one given another KERAS_HOME) had looked in its own cache, and loaded another file, silently, or
        none; the path is checked on its disk first (imagework.check_files)."""
        if self.weights == "imagenet" and files.get("weights") and not self._model:
            self._imagenet_file[:] = [files["weights"]]

    def _cached_imagenet_file(self) -> str | None:
        """The ImageNet weights' file this hasher loads (use_files'), or None (not cached: downloaded)."""
        if self.weights != "imagenet":
            return None
        return self._imagenet_file[0] if self._imagenet_file else cached_imagenet_file(self.model_name, self.side)

    def __post_init__(self):
        super().__post_init__()
        if self.weights not in (None, "imagenet") and not os.path.isfile(self.weights):
            raise ValueError(f"weights: no file at '{self.weights}' (use 'imagenet', null or a .h5 path)")
        problem = weights_file_problem(self.weights) if self.weights not in (None, "imagenet") else None
        if problem:
            raise ValueError(f"weights: {problem}")

    def prepare(self) -> None:
        if self._model:
            return
        # First, as a `weights:` path is checked as the hasher is built: a file in Keras' cache is hashed
        # for the cache's key even where this hasher turns out unavailable (no TensorFlow).
        cached = self._cached_imagenet_file()
        problem = weights_file_problem(cached) if cached else None
        if problem:
            raise HarnessError(f"weights: the file in Keras' cache under the ImageNet weights' name: {problem}; "
                               "put the right one there, or delete it to download it again")
        if importlib.util.find_spec("tensorflow") is None:  # said first: weights are no use without it
            raise UnavailableError(_no_tensorflow("no module named 'tensorflow'"))
        self._check_weights_reachable()
        keras = import_keras()

        constructor = getattr(keras.applications, self.model_name, None)
        module = getattr(keras.applications, PREPROCESS_MODULES[self.model_name], None)
        if constructor is None or module is None:
            raise UnavailableError(f"Keras {keras.__version__} has no keras.applications.{self.model_name}")
        keras.utils.set_random_seed(self.seed)
        try:
            with _loading(download=self.weights == "imagenet" and cached is None), _from_cache(cached):
                model = constructor(include_top=False, weights=self.weights, pooling=self.pooling,
                                    input_shape=(self.side, self.side, 3))
        except Exception as exc:  # Keras raises bare Exception/ValueError for download failures
            if self.weights == "imagenet" and cached is None:
                raise UnavailableError(self._missing_weights_message(exc)) from None
            if self.weights is None:  # no file read: what Keras refused is the input (InceptionV3 needs 75 px or more)
                raise HarnessError(f"input_size: cannot build {self.model_name} for a {self.side} x {self.side} "
                                   f"input: {exception_text(exc)}") from None
            # A file that is there but does not load is the config's error (exit 2), not a lack of
            # this machine's that leaves the column `unavailable`.
            raise HarnessError(f"weights: cannot load {self.model_name} weights from {shown(cached or self.weights)}"
                               + (" (the file in Keras' cache under the ImageNet weights' name: put the right one "
                                  "there, or delete it to download it again)" if cached else "")
                               + f": {exception_text(exc)}") from None
        import tensorflow as tf

        # Called eagerly, ResNet50 peaked at 5.6 GiB on a batch of 32 at 224 px; through a graph, at
        # 1.3 GiB, with the same embeddings. One function per model, traced once: its batch dimension
        # is left open, so that a short last batch does not trace it again.
        forward = tf.function(lambda batch: model(batch, training=False), autograph=False, input_signature=[
            tf.TensorSpec((None, self.side, self.side, 3), tf.float32)])
        self._model.append((model, module.preprocess_input, forward))

    def _check_weights_reachable(self) -> None:
        """ImageNet weights that are neither in Keras' cache nor downloadable make the hasher
        unavailable before TensorFlow is imported: importing it and building the model costs about
        10 s and 600 MB, only for Keras to fail on the download."""
        if self.weights != "imagenet":
            return
        filename = weights_file(self.model_name, self.side)
        if self._cached_imagenet_file():
            return
        import socket

        host, port, through = weights_route()
        try:
            socket.create_connection((host, port), timeout=5).close()
        except OSError as exc:
            raise UnavailableError(self._missing_weights_message(exc, filename, through)) from None

    def _missing_weights_message(self, exc: Exception, filename: str | None = None, through: str = "") -> str:
        found = re.search(r"[\w.-]+\.h5", str(exc))
        filename = found.group(0) if found else (filename or weights_file(self.model_name, self.side) or
                                                 f"the {self.model_name} ImageNet weights (.h5, no top; harness "
                                                 "does not know the file's name)")
        cache = keras_cache()
        reason = (str(exc).rsplit(" -- ", 1)[-1].strip() or type(exc).__name__) + (
            f" at the proxy {through}" if through else "")
        return (f"ImageNet weights for {self.model_name} unavailable ({reason}); put {filename} in {cache}/ "
                f"or set `weights:` to the path of that file")

    def hash_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        self.prepare()
        _, preprocess, forward = self._model[0]
        size = (self.side, self.side)
        outputs = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            batch = np.stack([cv2.resize(image, size) for image in chunk]).astype(np.float32)
            if self.channel_order == "rgb":
                batch = batch[..., ::-1]
            batch = preprocess(np.ascontiguousarray(batch))
            outputs.append(np.asarray(forward(batch), dtype=np.float32))
        if not outputs:
            return np.zeros((0, 0), np.float32)
        return np.concatenate(outputs)

    def row_form(self):
        # The embedding's length is the model's: known once it is built (prepare), any before.
        return np.dtype(np.float32).str, (self._model[0][0].output_shape[-1] if self._model else None,)

    def distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return cosine_distance_64(a, b)

    def cross_distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return cosine_cross_64(a, b)

    def spec(self) -> dict:
        return {**super().spec(), "model": self.model_name}


@dataclass(frozen=True)
class ResNet50(KerasEmbedding):
    name = "ResNet50"
    description = "keras.applications.ResNet50 pooled features (2048-d), 64*(1-cosine) as in the article"
    model_name = "ResNet50"


@dataclass(frozen=True)
class MobileNetV3Small(KerasEmbedding):
    name = "MobileNetV3Small"
    description = "keras.applications.MobileNetV3Small pooled features (576-d), 64*(1-cosine)"
    model_name = "MobileNetV3Small"


@dataclass(frozen=True)
class EfficientNetB0(KerasEmbedding):
    name = "EfficientNetB0"
    description = "keras.applications.EfficientNetB0 pooled features (1280-d), 64*(1-cosine)"
    model_name = "EfficientNetB0"


@dataclass(frozen=True)
class Keras(KerasEmbedding):
    """Any keras.applications model, named by `model`."""

    input_size: Annotated[int | None, Range(32, 1024), Doc(
        "side of the square network input, px; null = the model's own (224; 299 for InceptionV3, "
        "Xception, InceptionResNetV2; 240-600 for EfficientNetB1-B7)")] = None
    model: Annotated[str, Doc(
        "a keras.applications constructor, e.g. ResNet50, MobileNetV3Small, EfficientNetB0, ConvNeXtTiny, "
        "VGG16, DenseNet121, InceptionV3, Xception")] = "ResNet50"

    name = "keras"
    description = "any keras.applications model's pooled features (`model:`), 64*(1-cosine)"

    def __post_init__(self):
        super().__post_init__()
        check_model_name(self.model)

    @property
    def model_name(self) -> str:
        return self.model
