"""The OpenCV, ImageHash, PDQ and generic Keras hashers against their owning libraries, called directly."""

import subprocess
import sys

import cv2
import numpy as np
import pytest

from harness.errors import UnavailableError
from harness.hashers import HASHERS
from harness.params import check_params, param_specs
from tests.conftest import make_synthetic


def build(name, **params):
    cls = HASHERS.get(name)
    hasher = cls(**check_params(param_specs(cls), params, name))
    hasher.prepare()
    return hasher


def variants():
    """Four images of different sizes: the card, a noisy copy, a blurred crop, a different picture."""
    card = make_synthetic()
    noisy = np.clip(card.astype(int) + np.random.default_rng(1).integers(-4, 5, card.shape), 0, 255).astype(np.uint8)
    crop = cv2.GaussianBlur(card[20:220, 10:250], (5, 5), 0)
    rng = np.random.default_rng(2)
    other = cv2.resize(rng.integers(0, 256, (12, 9, 3), dtype=np.uint8), (180, 240), interpolation=cv2.INTER_CUBIC)
    return [card, noisy, crop, other]


def all_pairs(hasher, hashes):
    """cross_distance must equal the row-wise distance for every pair; returns the matrix."""
    cross = hasher.cross_distance(hashes, hashes)
    assert cross.shape == (len(hashes), len(hashes)) and cross.dtype == np.float64
    for i in range(len(hashes)):
        rowwise = hasher.distance(hashes[[i] * len(hashes)], hashes)
        assert rowwise.dtype == np.float64
        np.testing.assert_allclose(cross[i], rowwise, atol=1e-9)
    return cross


def test_importing_the_registry_imports_no_backend():
    code = ("import sys, harness.hashers; from harness.hashers import HASHERS; "
            "from harness.params import check_params, param_specs; "
            "cls = HASHERS.get('keras'); cls(**check_params(param_specs(cls), {'model': 'EfficientNetB0'}, 'keras')); "
            "bad = [m for m in ('tensorflow', 'keras', 'imagehash', 'pdqhash') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- OpenCV img_hash -------------------------------------------------------------------------

@pytest.mark.parametrize("name,params,create", [
    ("MarrHildrethHash", {}, lambda: cv2.img_hash.MarrHildrethHash_create()),
    ("MarrHildrethHash", {"alpha": 1.5, "scale": 2.0}, lambda: cv2.img_hash.MarrHildrethHash_create(1.5, 2.0)),
    ("BlockMeanHash", {"mode": 0}, lambda: cv2.img_hash.BlockMeanHash_create(0)),
    ("BlockMeanHash", {"mode": 1}, lambda: cv2.img_hash.BlockMeanHash_create(1)),
    ("RadialVarianceHash", {}, lambda: cv2.img_hash.RadialVarianceHash_create()),
    ("RadialVarianceHash", {"sigma": 2.5, "numOfAngleLine": 90},
     lambda: cv2.img_hash.RadialVarianceHash_create(2.5, 90)),
    ("ColorMomentHash", {}, lambda: cv2.img_hash.ColorMomentHash_create()),
])
def test_opencv_equals_compute_and_compare(name, params, create):
    hasher, algorithm = build(name, **params), create()
    images = variants()
    hashes = hasher.hash_batch(images)
    expected = [algorithm.compute(image) for image in images]
    np.testing.assert_array_equal(hashes, np.concatenate(expected))
    compare = np.array([[algorithm.compare(x, y) for y in expected] for x in expected])
    cross = all_pairs(hasher, hashes)
    if name == "RadialVarianceHash":  # compare() is a peak correlation, computed by OpenCV in float32
        np.testing.assert_allclose(cross, 1.0 - compare, atol=1e-6)
        assert np.all(cross >= -1e-6) and np.all(cross <= hasher.distance_max + 1e-9)
    elif name == "ColorMomentHash":
        np.testing.assert_allclose(cross, compare, rtol=1e-12, atol=1e-9)
    else:
        np.testing.assert_array_equal(cross, compare)
        assert cross.max() <= hasher.distance_max


def test_opencv_bit_counts():
    marr_hildreth = build("MarrHildrethHash")
    assert marr_hildreth.distance_max == 576 == 8 * marr_hildreth.hash_batch(variants()).shape[1]
    assert build("BlockMeanHash", mode=0).distance_max == 256
    assert build("BlockMeanHash", mode=1).distance_max == 961
    assert HASHERS.get("BlockMeanHash").distance_max == 256  # on the class: the default mode


def test_color_moment_orders_a_different_picture_farther():
    # Moments of hue are noise-sensitive on the card's gray areas, so the small edits are a
    # downscale and a blur; the different picture is a photograph.
    import skimage.data

    hasher = build("ColorMomentHash")
    card = make_synthetic()
    photo = np.ascontiguousarray(skimage.data.astronaut()[..., ::-1])
    hashes = hasher.hash_batch([card, cv2.resize(card, (128, 128)), cv2.GaussianBlur(card, (5, 5), 0), photo])
    distances = hasher.cross_distance(hashes[:1], hashes)[0]
    assert max(distances[1], distances[2]) < distances[3]


def test_opencv_parameter_checks():
    cls = HASHERS.get("MarrHildrethHash")
    with pytest.raises(ValueError, match=r"^alpha: .*kernel"):
        cls(alpha=8.0, scale=4.0)
    with pytest.raises(ValueError, match=r"^mode: "):
        check_params(param_specs(HASHERS.get("BlockMeanHash")), {"mode": 2}, "BlockMeanHash")


# --- ImageHash -------------------------------------------------------------------------------

def _pil(image):
    from PIL import Image
    return Image.fromarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


@pytest.mark.parametrize("name,params,function", [
    ("imagehash.average_hash", {}, lambda ih, im: ih.average_hash(im)),
    ("imagehash.average_hash", {"hash_size": 6}, lambda ih, im: ih.average_hash(im, hash_size=6)),
    ("imagehash.phash", {}, lambda ih, im: ih.phash(im)),
    ("imagehash.phash", {"hash_size": 16, "highfreq_factor": 2}, lambda ih, im: ih.phash(im, 16, 2)),
    ("imagehash.dhash", {}, lambda ih, im: ih.dhash(im)),
    ("imagehash.dhash", {"hash_size": 12}, lambda ih, im: ih.dhash(im, hash_size=12)),
    ("imagehash.whash", {}, lambda ih, im: ih.whash(im)),
    ("imagehash.whash", {"mode": "db4", "image_scale": 128}, lambda ih, im: ih.whash(im, image_scale=128, mode="db4")),
    ("imagehash.whash", {"hash_size": 16, "image_scale": 64, "remove_max_haar_ll": False},
     lambda ih, im: ih.whash(im, hash_size=16, image_scale=64, remove_max_haar_ll=False)),
    ("imagehash.colorhash", {}, lambda ih, im: ih.colorhash(im)),
    ("imagehash.colorhash", {"binbits": 5}, lambda ih, im: ih.colorhash(im, binbits=5)),
])
def test_imagehash_equals_the_library(name, params, function):
    imagehash = pytest.importorskip("imagehash")
    hasher = build(name, **params)
    images = variants()
    hashes = hasher.hash_batch(images)
    expected = [function(imagehash, _pil(image)) for image in images]
    for row, reference in zip(hashes, expected):
        bits = np.unpackbits(row)[:reference.hash.size]
        np.testing.assert_array_equal(bits, reference.hash.flatten())
        assert not np.unpackbits(row)[reference.hash.size:].any()  # zero padding
    assert hasher.distance_max == len(expected[0])
    cross = all_pairs(hasher, hashes)
    np.testing.assert_array_equal(cross, [[x - y for y in expected] for x in expected])
    assert hasher.hash_batch([]).shape == (0, hashes.shape[1])


@pytest.mark.parametrize("shape", [(1, 1, 3), (7, 13, 3), (480, 641, 3)])
def test_shared_gray_layout_is_pillows_own_conversion(shape):
    """The gray PIL image the ImageHash functions are given (made from an RGBA buffer, not an RGB
    copy) has exactly the bytes of Pillow's RGB -> L conversion, made first or after the RGB one."""
    from harness.hashers.layouts import Layouts

    image = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    expected = _pil(image).convert("L")
    gray = Layouts(image).pil_gray
    assert (gray.mode, gray.size, gray.tobytes()) == ("L", expected.size, expected.tobytes())
    after_rgb = Layouts(image)
    assert after_rgb.pil_rgb.tobytes() == _pil(image).tobytes()
    assert after_rgb.pil_gray.tobytes() == expected.tobytes()


def test_whash_db4_needs_a_fixed_scale():
    with pytest.raises(ValueError, match="^image_scale: mode 'db4' needs a fixed image_scale"):
        HASHERS.get("imagehash.whash")(mode="db4")
    fixed = build("imagehash.whash", mode="db4", image_scale=64)
    assert fixed.distance_max == 14 * 14
    assert fixed.hash_batch([make_synthetic(20, 40), make_synthetic()]).shape == (2, (14 * 14 + 7) // 8)
    with pytest.raises(ValueError, match="^hash_size: "):
        HASHERS.get("imagehash.whash")(hash_size=12)
    with pytest.raises(ValueError, match="^image_scale: "):
        HASHERS.get("imagehash.whash")(hash_size=16, image_scale=8)


def test_crop_resistant_hash_is_the_library_multihash():
    imagehash = pytest.importorskip("imagehash")
    hasher = build("imagehash.crop_resistant_hash")
    images = variants()[:3]
    hashes = hasher.hash_batch(images)
    assert hashes.dtype == object and hashes.shape == (3,)
    expected = [imagehash.crop_resistant_hash(_pil(image)) for image in images]
    assert [str(h) for h in hashes] == [str(h) for h in expected]
    cross = all_pairs(hasher, hashes)
    library = np.array([[x - y for y in expected] for x in expected])
    segments = np.array([len(x.segment_hashes) for x in expected])[:, None]
    np.testing.assert_allclose(cross * segments, library, atol=1e-12)
    assert np.all(cross >= 0) and np.all(cross <= hasher.distance_max)
    assert hasher.hash_batch([]).shape == (0,)


# --- PDQ -------------------------------------------------------------------------------------

def test_pdq_equals_pdqhash_and_records_quality(monkeypatch):
    pdqhash = pytest.importorskip("pdqhash")
    hasher = build("PDQ")
    images = variants() + [np.full((64, 64, 3), 128, np.uint8)]  # a flat image: quality 0
    expected = [pdqhash.compute(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)) for image in images]
    calls = []
    real = pdqhash.compute
    monkeypatch.setattr(pdqhash, "compute", lambda image: calls.append(1) or real(image))
    hashes = hasher.hash_batch(images)
    extras = hasher.hash_extras(images)
    assert len(calls) == len(images), "hash_batch then hash_extras of the same batch must hash once"
    for row, (bits, _) in zip(hashes, expected):
        np.testing.assert_array_equal(np.unpackbits(row), bits)
    assert set(extras) == {"quality"}
    np.testing.assert_array_equal(extras["quality"], [quality for _, quality in expected])
    assert extras["quality"][-1] == 0 and extras["quality"][0] > 50
    cross = all_pairs(hasher, hashes)
    np.testing.assert_array_equal(cross, [[np.count_nonzero(x != y) for y, _ in expected] for x, _ in expected])
    hasher.hash_batch([images[0]])  # a new batch is hashed again
    assert len(calls) == len(images) + 1
    assert hasher.hash_extras([])["quality"].shape == (0,)


def test_pdq_hashes_an_image_changed_in_place_again():
    pytest.importorskip("pdqhash")
    hasher = build("PDQ")
    first, second = variants()[0], np.ascontiguousarray(variants()[0][::-1])  # different pictures
    image = first.copy()
    before = hasher.hash_images([image])
    image[:] = second  # the same array, new pixels: its hash and quality are the new pixels'
    assert np.count_nonzero(hasher.hash_images([image]) != before) > 0
    np.testing.assert_array_equal(hasher.hash_images([image]), build("PDQ").hash_images([second]))
    np.testing.assert_array_equal(hasher.checked_extras([image])["quality"],
                                  build("PDQ").checked_extras([second])["quality"])


def test_hash_extras_default_is_empty():
    assert build("aHash").hash_extras(variants()) == {}


# --- Keras -----------------------------------------------------------------------------------

def test_keras_unknown_model_suggests_a_name():
    cls = HASHERS.get("keras")
    with pytest.raises(ValueError, match=r"^model: unknown keras.applications model 'MobileNetV3small'; "
                                         r"did you mean 'MobileNetV3Small'"):
        cls(model="MobileNetV3small")
    with pytest.raises(ValueError, match=r"^model: .*did you mean 'ResNet50'"):
        cls(model="resnet50")


def test_keras_input_size_defaults_to_the_model():
    cls = HASHERS.get("keras")
    assert cls(model="InceptionV3").side == 299 and cls(model="Xception").side == 299
    assert cls(model="MobileNetV3Small").side == 224 and cls(model="MobileNetV3Small", input_size=96).side == 96
    resnet = HASHERS.get("ResNet50")()
    assert (resnet.input_size, resnet.weights, resnet.pooling, resnet.channel_order) == (224, "imagenet", "avg", "rgb")
    assert resnet.spec()["model"] == "ResNet50" and cls(model="VGG16").spec()["model"] == "VGG16"


def test_keras_table_matches_the_installed_keras():
    from harness.hashers.keras import PREPROCESS_MODULES, import_keras

    keras = import_keras()
    for model, module in PREPROCESS_MODULES.items():
        assert callable(getattr(keras.applications, model)), model
        assert callable(getattr(keras.applications, module).preprocess_input), module
    pixels = np.random.default_rng(0).uniform(0, 255, (1, 8, 8, 3)).astype(np.float32)
    for module in ("mobilenet_v3", "efficientnet", "efficientnet_v2", "convnext"):  # the models rescale inside
        np.testing.assert_array_equal(np.asarray(getattr(keras.applications, module).preprocess_input(pixels)), pixels)


def test_keras_generic_model_builds_with_random_weights():
    hasher = build("keras", model="MobileNetV3Small", weights=None, input_size=96, batch_size=2)
    images = variants()[:3]
    hashes = hasher.hash_batch(images)  # two batches: 2 + 1
    assert hashes.shape == (3, 576) and hashes.dtype == np.float32
    again = build("MobileNetV3Small", weights=None, input_size=96).hash_batch(images)
    np.testing.assert_allclose(hashes, again, rtol=1e-4, atol=1e-5)  # same model, same seed
    cross = all_pairs(hasher, hashes)
    assert np.allclose(np.diag(cross), 0, atol=1e-4)


def test_keras_weights_file_that_does_not_load_is_bad_input(tmp_path):
    """A file the config names that is not weights is the config's error (exit 2), not a lack of this
    machine's that would leave the column `unavailable` (see test_keras for the run's one line)."""
    from harness.errors import HarnessError

    bogus = tmp_path / "weights.h5"
    bogus.write_bytes(b"\x89HDF\r\n\x1a\nnot hdf5")  # begins as HDF5 (else refused as the hasher is built)
    hasher = HASHERS.get("keras")(model="MobileNetV3Small", weights=str(bogus), input_size=96)
    with pytest.raises(HarnessError, match="weights: cannot load MobileNetV3Small weights from") as caught:
        hasher.prepare()
    assert not isinstance(caught.value, UnavailableError)


@pytest.mark.parametrize("model, size, filename", [
    ("VGG16", None, "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    ("ConvNeXtTiny", None, "convnext_tiny_notop.h5"),
    ("MobileNetV2", 96, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5"),
    ("MobileNet", 100, "mobilenet_1_0_224_tf_no_top.h5"),  # no weights for 100 px: Keras takes 224's
])
def test_missing_weights_of_any_keras_model_name_the_file(model, size, filename, monkeypatch, tmp_path):
    """Without network the note must say which file to put where, for any model (it named only the
    three presets' files), before TensorFlow is imported."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    hasher = HASHERS.get("keras")(model=model, input_size=size)
    message = hasher._missing_weights_message(OSError("[Errno -2] Name or service not known"))
    assert f"put {filename} in {tmp_path}/models/ or set `weights:`" in message


def test_radial_variance_puts_an_exact_copy_at_distance_zero():
    """compare() correlates a hash with itself exactly 1; the float sums give 1 give or take a few
    1e-16, which read as a distance just above 0 missed exact copies at threshold 0 (15 of these 30
    scenes), and the one-by-one and all-pairs distances disagreed."""
    from harness.hashers.opencv import RadialVarianceHash

    from tests.conftest import make_scene

    hasher = RadialVarianceHash()
    create = cv2.img_hash.RadialVarianceHash_create()
    hashes = np.concatenate([create.compute(make_scene(seed, 96, 128)) for seed in range(30)])
    assert (hasher.distance(hashes, hashes) == 0).all()
    cross = hasher.cross_distance(hashes, hashes)
    assert (np.diag(cross) == 0).all()
    assert cross[~np.eye(len(hashes), dtype=bool)].min() > 1e-3  # different scenes stay apart


def test_radial_variance_of_flat_images_as_documented():
    """As README's Hashers table and `_distance` say: an all-black image's hash has no variance, so
    compare() puts it at distance 1 even from itself; the hasher puts identical hashes at 0 (a black
    image given to two splits is a copy), and such a hash at 1 from every other. Any other flat
    image's hash depends on its size, not its colour, so flat images of one size are at distance 0
    from each other."""
    from harness.hashers.opencv import RadialVarianceHash

    hasher = RadialVarianceHash()
    black, grey, green = (np.full((64, 64, 3), colour, np.uint8) for colour in (0, 128, (10, 200, 30)))
    one_pixel = np.full((1, 1, 3), 90, np.uint8)
    hashes = hasher.hash_images([black, black, grey, grey, green, one_pixel])
    flat = [k for k in range(len(hashes)) if np.ptp(hashes[k].astype(int)) == 0]
    assert flat == [0, 1, 5]
    assert cv2.img_hash.RadialVarianceHash_create().compare(hashes[:1], hashes[1:2]) < 1e-300  # OpenCV: no correlation
    assert hasher.distance(hashes[:1], hashes[1:2])[0] == 0.0
    cross = hasher.cross_distance(hashes, hashes)
    np.testing.assert_array_equal(cross[2:5, 2:5], np.zeros((3, 3)))
    np.testing.assert_array_equal(np.diag(cross), np.zeros(len(hashes)))
    assert (cross[:2, 2:5] == 1.0).all() and (cross[2:5, 5] == 1.0).all()  # flat: apart from all else
    i, j = np.divmod(np.arange(len(hashes) ** 2), len(hashes))
    np.testing.assert_array_equal(hasher.distance(hashes[i], hashes[j]).reshape(cross.shape), cross)
