"""CNN embeddings from `keras.applications`, compared as the article did.

TensorFlow is imported in `prepare()`, never at module import, so commands
that do not run a Keras hasher stay fast.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Annotated, ClassVar, Literal, Sequence

import cv2
import numpy as np

from harness.errors import UnavailableError
from harness.hashers.base import Hasher, cosine_cross_64, cosine_distance_64
from harness.params import Doc, Range

# keras.applications constructor -> the module holding its preprocess_input.
PREPROCESS_MODULES = {
    "ResNet50": "resnet50",
}


def import_keras():
    """Import Keras with TensorFlow's start-up log lines (CUDA probing, absl) kept off the terminal.

    They are written by C++ code straight to file descriptor 2 before any Python
    logging is set up, so only redirecting the descriptor keeps them out. An
    import that fails still raises its Python exception.
    """
    import sys

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "keras" in sys.modules:
        return sys.modules["keras"]
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import keras
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return keras


@dataclass(frozen=True)
class KerasEmbedding(Hasher):
    weights: Annotated[str | None, Doc(
        "'imagenet' (Keras' cache, downloading if absent), a path to a .h5 weights file, "
        "or null for random weights (tests)")] = "imagenet"
    input_size: Annotated[int, Range(32, 1024), Doc("side of the square network input, px")] = 224
    pooling: Annotated[Literal["avg", "max"], Doc("global pooling of the last feature map")] = "avg"
    channel_order: Annotated[Literal["rgb", "bgr"], Doc(
        "order the pixels are fed in; Keras expects rgb, the article fed OpenCV's bgr")] = "rgb"
    batch_size: Annotated[int, Range(1, 4096), Doc("images per forward pass")] = 32
    seed: Annotated[int, Doc("initialisation seed when weights is null")] = 0
    _model: list = field(default_factory=list, init=False, repr=False, compare=False)

    model_name: ClassVar[str]  # the keras.applications constructor
    distance_kind = "64*(1-cosine)"
    distance_max = 64.0  # orthogonal vectors; pooled ReLU features are non-negative, so rarely above

    def __post_init__(self):
        if self.weights not in (None, "imagenet") and not os.path.isfile(self.weights):
            raise ValueError(f"weights: no file at '{self.weights}' (use 'imagenet', null or a .h5 path)")

    def prepare(self) -> None:
        if self._model:
            return
        keras = import_keras()

        keras.utils.set_random_seed(self.seed)
        constructor = getattr(keras.applications, self.model_name)
        try:
            model = constructor(include_top=False, weights=self.weights, pooling=self.pooling,
                                input_shape=(self.input_size, self.input_size, 3))
        except Exception as exc:  # Keras raises bare Exception/ValueError for download failures
            if self.weights != "imagenet":
                raise UnavailableError(f"cannot load {self.model_name} weights from '{self.weights}' ({exc})") from None
            raise UnavailableError(self._missing_weights_message(exc)) from None
        module = getattr(keras.applications, PREPROCESS_MODULES[self.model_name])
        self._model.append((model, module.preprocess_input))

    def _missing_weights_message(self, exc: Exception) -> str:
        found = re.search(r"[\w.-]+\.h5", str(exc))
        filename = found.group(0) if found else f"the {self.model_name} ImageNet weights (.h5, no top)"
        cache = os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), "models")
        reason = str(exc).rsplit(" -- ", 1)[-1].strip() or type(exc).__name__
        return (f"ImageNet weights for {self.model_name} unavailable ({reason}); put {filename} in {cache}/ "
                f"or set `weights:` to the path of that file")

    def hash_batch(self, images: Sequence[np.ndarray]) -> np.ndarray:
        self.prepare()
        model, preprocess = self._model[0]
        size = (self.input_size, self.input_size)
        outputs = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            batch = np.stack([cv2.resize(image, size) for image in chunk]).astype(np.float32)
            if self.channel_order == "rgb":
                batch = batch[..., ::-1]
            batch = preprocess(np.ascontiguousarray(batch))
            outputs.append(np.asarray(model(batch, training=False), dtype=np.float32))
        if not outputs:
            return np.zeros((0, 0), np.float32)
        return np.concatenate(outputs)

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
