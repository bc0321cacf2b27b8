"""Property tests: every transform and hasher, fed arrays of odd shapes and dtypes, either gives a
valid result or raises the project's own error (TransformError, HashError), never a cv2.error,
ZeroDivisionError, IndexError or numpy ValueError.

Images come from one strategy mixing valid uint8 HxWx3 images of odd sizes (1..40 px a side, a
few very elongated ones) with invalid arrays (other dtypes, 2-D, 1 or 4 channels, empty). Their
pixels are drawn by numpy from a drawn seed, which is far faster than drawing every byte.
Derandomized, so CI sees the same examples every run.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import HarnessError, HashError, UnavailableError
from harness.hashers import HASHERS
from harness.hashers.base import Hasher, hamming
from harness.params import check_params, param_specs
from tests.test_hashers import CASES as HASHER_CASES
from tests.test_hashers import SLOW
from tests.test_transforms import CASES as TRANSFORM_CASES
from harness.transforms import TRANSFORMS, TransformError, apply_chain

PROPERTY = settings(deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

ELONGATED = [(1, 500), (500, 1), (1, 300), (300, 1), (2, 200), (150, 3)]
INVALID_DTYPES = [np.uint16, np.float32, np.float64, np.bool_, np.int8]


def _pixels(shape, dtype, seed: int, fill: str) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if fill == "flat":  # featureless: zero variance trips up normalisations
        value = int(rng.integers(0, 256))
        return np.full(shape, value if dtype != np.bool_ else bool(value & 1), dtype=dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(bool)
    if np.issubdtype(dtype, np.floating):
        return (rng.random(shape) * (255.0 if fill == "noise" else 1.0)).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, int(info.max) + 1, shape, dtype=dtype)


@st.composite
def images(draw):
    """(array, valid): a uint8 HxWx3 image of an odd size, or an array no hasher or transform takes."""
    seed = draw(st.integers(0, 2 ** 32 - 1))
    fill = draw(st.sampled_from(["noise", "flat"]))
    if draw(st.integers(0, 3)) > 0:  # three valid images for each invalid one
        if draw(st.integers(0, 5)) == 0:
            height, width = draw(st.sampled_from(ELONGATED))
        else:
            height, width = draw(st.integers(1, 40)), draw(st.integers(1, 40))
        return _pixels((height, width, 3), np.uint8, seed, fill), True
    height, width = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    kind = draw(st.sampled_from(["dtype", "2d", "1ch", "4ch", "empty"]))
    if kind == "dtype":
        return _pixels((height, width, 3), draw(st.sampled_from(INVALID_DTYPES)), seed, fill), False
    shape = {"2d": (height, width), "1ch": (height, width, 1), "4ch": (height, width, 4),
             "empty": draw(st.sampled_from([(0, 5, 3), (5, 0, 3), (0, 0, 3)]))}[kind]
    return _pixels(shape, np.uint8, seed, fill), False


def is_image(out) -> bool:
    return (isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
            and out.shape[0] >= 1 and out.shape[1] >= 1)


# --- transforms -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(TRANSFORMS))
@settings(PROPERTY, max_examples=50)
@given(case=images())
def test_transform_gives_an_image_or_a_transform_error(name, case):
    image, valid = case
    params = check_params(param_specs(TRANSFORMS.get(name)), TRANSFORM_CASES[name], name)
    before = image.copy()
    try:
        out = apply_chain(image, [(name, params)])
    except TransformError as exc:
        assert str(exc)
        if not valid:
            assert "apply_chain expects a uint8 HxWx3 BGR image" in str(exc)
        else:  # a wrapped crash would say "failed on": none of the transforms should need that
            assert " failed on a " not in str(exc), str(exc)
    else:
        assert valid, f"{name} accepted a {image.dtype} array of shape {image.shape}"
        assert is_image(out)
    assert np.array_equal(image, before), "a transform must not modify its input"


@pytest.mark.parametrize("name,params", [
    ("center_crop", {"fraction": 0.001}), ("crop_fraction", {"fraction": 0.001, "x": 1, "y": 1}),
    ("scale", {"factor": 0.001}), ("aspect", {"ratio": 0.001}), ("pixelate", {"block": 1000}),
    ("pad", {"fraction": 1.0, "mode": "reflect"}), ("median_blur", {"kernel": 31}),
    ("rotate", {"angle": 45, "crop": True}), ("rotate", {"angle": 89.999, "crop": True}),
    ("emoji", {"count": 5, "size": 1.0}), ("caption", {"text": "a long caption on a tiny image"}),
    ("salt_pepper", {"amount": 1.0}), ("text", {"scale": 0.01, "x": 0, "y": 0}),
])
@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (2, 1), (3, 3), (1, 500), (500, 1)])
def test_extreme_parameters_on_tiny_images(name, params, shape):
    params = check_params(param_specs(TRANSFORMS.get(name)), params, name)
    image = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    assert is_image(apply_chain(image, [(name, params)]))
    if name == "text":  # beyond the right edge it draws nothing: said so
        with pytest.raises(TransformError, match="puts no pixel on the"):
            apply_chain(image, [("text", {"scale": 0.01, "x": shape[1] + 2})])


def exploding(image):
    """A transform plugin (found by its import path) with a bug."""
    return image[10 ** 6] // 0


def wrong_type(image):
    return image.astype(np.float32)


def picky(image):
    raise TransformError("picky refuses every image")


@pytest.mark.parametrize("image,got", [
    (np.zeros((4, 5, 3), np.float32), "float32 array of shape (4, 5, 3)"),
    (np.zeros((4, 5), np.uint8), "uint8 array of shape (4, 5)"),
    (np.zeros((0, 5, 3), np.uint8), "uint8 array of shape (0, 5, 3)"),
    ([[0, 0, 0]], "list"),
])
def test_apply_chain_rejects_an_invalid_input_before_any_step(image, got):
    with pytest.raises(TransformError) as info:
        apply_chain(image, [("tests.test_properties:exploding", {})])
    assert str(info.value) == f"apply_chain expects a uint8 HxWx3 BGR image, got {got}"


def test_apply_chain_wraps_a_crash_inside_a_transform():
    with pytest.raises(TransformError) as info:
        apply_chain(np.zeros((2, 7, 3), np.uint8), [("hflip", {}), ("tests.test_properties:exploding", {})])
    assert str(info.value).startswith(
        "transform 'tests.test_properties:exploding' failed on a 7x2 image: IndexError: index 1000000")
    assert isinstance(info.value.__cause__, IndexError)


def test_apply_chain_lets_transform_errors_through_and_checks_outputs():
    image = np.zeros((2, 2, 3), np.uint8)
    with pytest.raises(TransformError, match="^picky refuses every image$"):
        apply_chain(image, [("tests.test_properties:picky", {})])
    with pytest.raises(TransformError, match=r"must return a uint8 HxWx3 image, got float32 array of shape \(2, 2, 3\)"):
        apply_chain(image, [("tests.test_properties:wrong_type", {})])


# --- hashers --------------------------------------------------------------------------------

CNN = {"ResNet50", "MobileNetV3Small", "EfficientNetB0", "keras"}
SLOW_SEGMENTATION = {"imagehash.crop_resistant_hash"}  # ~0.5 s an image, whatever its size
assert CNN <= SLOW, "tests/test_hashers.py's SLOW set lists every CNN"
FAST_HASHERS = sorted(set(HASHERS) - CNN - SLOW_SEGMENTATION)

_BUILT: dict[str, Hasher] = {}


def hasher(name: str, **params) -> Hasher:
    """Each hasher built once for the whole module (a CNN takes seconds)."""
    key = name + repr(sorted(params.items()))
    if key not in _BUILT:
        cls = HASHERS.get(name)
        _BUILT[key] = cls(**check_params(param_specs(cls), params or HASHER_CASES[name], name))
        _BUILT[key].prepare()
    return _BUILT[key]


def check_self_distance(h: Hasher, hashes: np.ndarray) -> None:
    for i in range(len(hashes)):  # 0 for every hash, a flat one too (see opencv._flat)
        d = h.distance(hashes[[i]], hashes[[i]])
        assert d.shape == (1,) and np.isfinite(d).all()
        assert d[0] == pytest.approx(0.0, abs=1e-9), f"row {i}: {d[0]}"


@pytest.mark.parametrize("name", FAST_HASHERS)
@settings(PROPERTY, max_examples=40)
@given(batch=st.lists(images(), min_size=1, max_size=3))
def test_hasher_gives_one_row_per_image_or_a_hash_error(name, batch):
    h = hasher(name)
    pictures = [image for image, _ in batch]
    invalid = [i for i, (_, valid) in enumerate(batch) if not valid]
    try:
        hashes = h.hash_images(pictures)
    except HashError as exc:
        if invalid:
            assert f"image {invalid[0]} of {len(batch)}" in str(exc)
        else:  # every hasher here hashes every valid image
            pytest.fail(f"{name} refused valid images of shapes {[p.shape for p in pictures]}: {exc}")
    else:
        assert not invalid, f"{name} accepted {pictures[invalid[0]].dtype} {pictures[invalid[0]].shape}"
        assert isinstance(hashes, np.ndarray) and len(hashes) == len(batch)
        check_self_distance(h, hashes)
        extras = h.checked_extras(pictures)
        assert all(len(values) == len(batch) for values in extras.values())


ODD = [
    np.zeros((1, 1, 3), np.uint8),
    np.full((2, 2, 3), 200, np.uint8),
    np.random.default_rng(1).integers(0, 256, (1, 300, 3), dtype=np.uint8),
    np.random.default_rng(2).integers(0, 256, (300, 1, 3), dtype=np.uint8),
]


@pytest.mark.parametrize("name,params", [
    ("imagehash.crop_resistant_hash", {}),
    ("ResNet50", {"weights": None, "input_size": 32}),
])
def test_slow_hashers_on_fixed_odd_images(name, params):
    h = hasher(name, **params)
    hashes = h.hash_images(ODD)
    assert len(hashes) == len(ODD)
    if name == "ResNet50":
        assert np.isfinite(hashes).all()
    check_self_distance(h, hashes)
    with pytest.raises(HashError, match=r"image 1 of 2: got float32 array of shape \(2, 2, 3\)"):
        h.hash_images([ODD[0], np.zeros((2, 2, 3), np.float32)])


# --- the hashers' checked entry points, on a toy hasher ----------------------------------------

class Toy(Hasher):
    """Not registered: its hash_batch does whatever `behaviour` says."""

    name = "toy"
    description = "a hasher for testing the checked entry points"
    distance_kind = "hamming"
    distance_max = 8.0

    def __init__(self, behaviour):
        object.__setattr__(self, "behaviour", behaviour)

    def hash_batch(self, images):
        return self.behaviour(images)

    def hash_extras(self, images):
        return {"size": self.behaviour(images)}

    def distance(self, a, b):
        return hamming(a, b)


def test_hash_error_is_a_harness_error():
    assert issubclass(HashError, HarnessError) and HashError.exit_status == 2


@pytest.mark.parametrize("images,problem", [
    ([np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2), np.uint8)], "image 1 of 2: got uint8 array of shape (2, 2)"),
    ([np.zeros((2, 2, 3), np.int8)], "image 0 of 1: got int8 array of shape (2, 2, 3)"),
    ([np.zeros((2, 0, 3), np.uint8)], "image 0 of 1: got uint8 array of shape (2, 0, 3)"),
    ([None], "image 0 of 1: got NoneType"),
])
def test_hash_images_names_the_invalid_image(images, problem):
    toy = Toy(lambda batch: pytest.fail("hash_batch must not see invalid images"))
    with pytest.raises(HashError) as info:
        toy.hash_images(images)
    assert str(info.value) == f"toy expects uint8 HxWx3 BGR images (H, W >= 1); {problem}"


def test_hash_images_refuses_a_single_image_array():
    with pytest.raises(HashError, match=r"toy expects a sequence of images, got one uint8 array of shape \(4, 4, 3\)"):
        Toy(lambda batch: np.zeros((len(batch), 1), np.uint8)).hash_images(np.zeros((4, 4, 3), np.uint8))


def test_hash_images_wraps_a_backend_crash():
    toy = Toy(lambda batch: 1 // 0)
    batch = [np.zeros((1, 1, 3), np.uint8)] * 2
    with pytest.raises(HashError) as info:
        toy.hash_images(batch)
    assert str(info.value) == "toy failed on a batch of 2 images: ZeroDivisionError: integer division or modulo by zero"
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    with pytest.raises(HashError, match="^toy failed on a batch of 2 images: ZeroDivisionError"):
        toy.checked_extras(batch)


@pytest.mark.parametrize("error", [HashError("too small to hash"), UnavailableError("no weights here")])
def test_hash_images_lets_its_own_errors_through(error):
    def fail(batch):
        raise error
    with pytest.raises(type(error)) as info:
        Toy(fail).hash_images([np.zeros((1, 1, 3), np.uint8)])
    assert info.value is error


def test_hash_images_checks_one_row_per_image():
    batch = [np.zeros((3, 3, 3), np.uint8)] * 3
    with pytest.raises(HashError, match=r"toy returned shape \(2, 1\) for a batch of 3 images, not one row per image"):
        Toy(lambda b: np.zeros((2, 1), np.uint8)).hash_images(batch)
    with pytest.raises(HashError, match="toy returned list for a batch of 3 images"):
        Toy(lambda b: [0, 0, 0]).hash_images(batch)
    with pytest.raises(HashError, match="toy extra 'size' gives 2 values for a batch of 3 images, not one value"):
        Toy(lambda b: np.zeros((2, 1), np.uint8)).checked_extras(batch)
    with pytest.raises(HashError, match="toy extra 'size' gives a float for a batch of 3 images"):
        Toy(lambda b: 0.5).checked_extras(batch)
    assert Toy(lambda b: np.zeros((len(b), 1), np.uint8)).hash_images([]).shape == (0, 1)
