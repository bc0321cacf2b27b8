"""Transforms: pixel-exact against the article's OpenCV calls, and the contract of every registered one."""

import re

import cv2
import numpy as np
import pytest

from harness.params import check_params, param_specs
from harness.transforms import TRANSFORMS, TransformError, apply_chain

# One example per registered transform. A new transform without a row here fails
# test_every_transform_has_a_case, so nothing registered goes untested.
CASES = {
    "grayscale": {},
    "scale": {"factor": 0.25},
    "blur": {"kernel": 5},
    "text": {"scale": 3},
    "jpeg": {"quality": 40},
    "gamma": {"gamma": 1.5},
    "crop": {"x": 10, "y": 20, "width": 100, "height": 80, "dx": 4, "dy": 4},
    "rotate": {"angle": 30, "crop": True},
    "hflip": {},
    "vflip": {},
    "center_crop": {"fraction": 0.8},
    "crop_fraction": {"fraction": 0.7, "x": 0.2, "y": 0.9},
    "aspect": {"ratio": 1.5},
    "pad": {"fraction": 0.1, "mode": "reflect"},
    "gaussian_blur": {"sigma": 2},
    "median_blur": {"kernel": 5},
    "sharpen": {"amount": 1.5},
    "pixelate": {"block": 8},
    "brightness": {"delta": 40},
    "contrast": {"factor": 1.3},
    "saturation": {"factor": 0.5},
    "hue": {"degrees": 90},
    "quantize": {"levels": 4},
    "webp": {"quality": 50},
    "png": {"compression": 6},
    "gaussian_noise": {"sigma": 10, "seed": 1},
    "salt_pepper": {"amount": 0.05, "seed": 1},
    "overlay_image": {"size": 0.3, "x": 1, "y": 0, "opacity": 0.7},
    "caption": {"text": "HELLO", "height": 0.2, "position": "bottom"},
    "emoji": {"count": 4, "size": 0.2, "seed": 1},
    # added for the published protocols (configs/protocols/), tested in test_transforms_protocols.py
    "resize_max": {"size": 100},
    "border": {"top": 0.2, "bottom": 0.2},
    "crop_area": {"removed": 0.5},
    "vignette": {"sigma": 0.5},
    "enhance_brightness": {"factor": 1.2},
    "enhance_contrast": {"factor": 0.8},
    "text_watermark": {"text": "TEST", "width": 0.2},
    "screenshot": {"scale": 0.8},
    "cross": {"width": 2},
}


def test_every_transform_has_a_case():
    assert set(TRANSFORMS) == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_contract(name, synthetic):
    params = check_params(param_specs(TRANSFORMS.get(name)), CASES[name], name)
    before = synthetic.copy()
    out = apply_chain(synthetic, [(name, params)])
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    assert np.array_equal(synthetic, before), "a transform must not modify its input"
    again = apply_chain(synthetic, [(name, params)])
    assert np.array_equal(out, again), "a transform must be deterministic"


def run(name, image, **params):
    return TRANSFORMS.get(name)(image, **check_params(param_specs(TRANSFORMS.get(name)), params, name))


# --- the article's definitions, pixel for pixel -------------------------------

def test_grayscale_is_bgr_gray_bgr(synthetic):
    expected = cv2.cvtColor(cv2.cvtColor(synthetic, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    assert np.array_equal(run("grayscale", synthetic), expected)


@pytest.mark.parametrize("divisor", [2, 4, 8, 16])
def test_scale_is_resize_by_integer_divisor(divisor, synthetic):
    h, w = synthetic.shape[:2]
    expected = cv2.resize(synthetic, (w // divisor, h // divisor))
    assert np.array_equal(run("scale", synthetic, factor=1 / divisor), expected)


@pytest.mark.parametrize("factor, size", [(0.57, (456, 342)), (0.29, (232, 174)), (0.41, (328, 246)),
                                          (1.15, (920, 690))])
def test_scale_sizes_are_the_whole_numbers_of_the_product(factor, size):
    """800 x 0.57 is 455.99999999999994 in binary: int() made the image 455 px wide, one short, and
    0.29 cut the width (231) but not the height (174)."""
    image = np.zeros((600, 800, 3), np.uint8)
    assert run("scale", image, factor=factor).shape[1::-1] == size
    # and a window placed at a part of the free space: 100 x 0.29 is 28.999999999999996
    columns = np.broadcast_to(np.arange(150, dtype=np.uint8)[None, :, None], (150, 150, 3)).copy()
    window = run("crop_fraction", columns, fraction=1 / 3, x=0.29, y=0.0)
    assert window.shape[:2] == (50, 50) and window[0, 0, 0] == 29  # its left column: 29, not 28


@pytest.mark.parametrize("kernel", [3, 5, 7, 9, 11])
def test_blur_is_box_filter(kernel, synthetic):
    assert np.array_equal(run("blur", synthetic, kernel=kernel), cv2.blur(synthetic, (kernel, kernel)))


@pytest.mark.parametrize("s", range(1, 8))
def test_text_matches_article_put_text(s, synthetic):
    expected = synthetic.copy()
    cv2.putText(expected, "Text", org=(10, 30 * s), fontFace=cv2.FONT_HERSHEY_SIMPLEX, fontScale=s,
                color=(255, 255, 255), thickness=3 * s, lineType=cv2.LINE_AA)
    assert np.array_equal(run("text", synthetic, scale=s), expected)


@pytest.mark.parametrize("quality", range(10, 100, 10))
def test_jpeg_is_encode_decode_round_trip(quality, synthetic):
    _, buffer = cv2.imencode(".jpg", synthetic, [cv2.IMWRITE_JPEG_QUALITY, quality])
    expected = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    assert np.array_equal(run("jpeg", synthetic, quality=quality), expected)


@pytest.mark.parametrize("g", [0.2, 0.5, 0.8, 1.2, 1.5, 2.0])
def test_gamma_is_lookup_table(g, synthetic):
    table = np.array([np.clip((i / 255.0) ** g * 255.0, 0, 255) for i in range(256)]).astype(np.uint8)
    assert np.array_equal(run("gamma", synthetic, gamma=g), cv2.LUT(synthetic, table))


@pytest.mark.parametrize("d", [1, 2, 4, 8, 16, 32, 64])
def test_shift_crops_are_offset_windows(d):
    image = np.random.default_rng(d).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    a = run("crop", image, x=128, y=128, width=256, height=256)
    b = run("crop", image, x=128, y=128, width=256, height=256, dx=d, dy=d)
    assert np.array_equal(a, image[128:384, 128:384])
    assert np.array_equal(b, image[128 + d:384 + d, 128 + d:384 + d])


def test_crop_outside_the_image_is_a_clear_error(synthetic):
    with pytest.raises(TransformError, match="does not fit in a 256x256 image"):
        run("crop", synthetic, x=200, y=0, width=100, height=10)


def test_chain_applies_steps_in_order(synthetic):
    chain = [("scale", {"factor": 0.5, "interpolation": "linear"}), ("jpeg", {"quality": 50})]
    expected = run("jpeg", run("scale", synthetic, factor=0.5), quality=50)
    assert np.array_equal(apply_chain(synthetic, chain), expected)


@pytest.mark.parametrize("name,params,problem", [
    ("jpeg", {"quality": 101}, "quality: 101 must be <= 100"),
    ("jpeg", {"quality": "high"}, "quality: expected int"),
    ("blur", {}, "kernel: required parameter"),
    ("gamma", {"gamma": 0}, "gamma: 0.0 must be > 0"),
    ("scale", {"factor": 0.5, "interpolation": "bicubic"}, "interpolation: expected"),
    ("text", {"scale": 1, "colour": [0, 0, 0]}, "did you mean 'color'"),
])
def test_parameters_are_validated(name, params, problem):
    with pytest.raises(ValueError, match=problem.replace("(", r"\(")):
        check_params(param_specs(TRANSFORMS.get(name)), params, name)


@pytest.mark.parametrize("chain,size", [
    ([("resize_max", {"size": 65536})], "65536x65536"),  # 12.9 GB asked for at once
    ([("scale", {"factor": 16}), ("scale", {"factor": 16})], "131072x131072"),  # each step within its range
    ([("border", {"top": 10, "bottom": 10, "left": 10, "right": 10})] * 2, "225792x225792"),
    ([("pad", {"fraction": 1.0})] * 3, "13824x13824"),
    ([("aspect", {"ratio": 16})] * 3, "2097152x512"),
    ([("scale", {"factor": 16})] + [("caption", {"height": 1.0})] * 2, "8192x32768"),
])
def test_no_edit_makes_an_image_past_the_limit_before_allocating_it(chain, size):
    """An edit that would make an image larger than any a run reads is refused before it asks for
    the memory, with the size it would have made (and the run records it as that copy's failure)."""
    from harness.transforms import MAX_OUTPUT_PIXELS

    image = np.zeros((512, 512, 3), np.uint8)
    with pytest.raises(TransformError, match=rf"^the result would be {size}, more than the "
                                             rf"{MAX_OUTPUT_PIXELS:,} pixels an edit may make$"):
        apply_chain(image, chain)


def test_a_plugins_result_past_the_limit_stops_the_chain(monkeypatch):
    from harness import transforms

    monkeypatch.setattr(transforms, "MAX_OUTPUT_PIXELS", 1000)
    with pytest.raises(TransformError, match="the result would be 40x40"):
        transforms.check_image(np.zeros((40, 40, 3), np.uint8), "transform 'mine'", np.zeros((10, 10, 3), np.uint8))


def test_an_image_past_the_limit_may_still_be_edited_at_its_size_or_less(monkeypatch):
    """A run that raised max_pixels reads images past the edits' limit: flipping, blurring or
    shrinking one is no enlargement (a 13420x13420 photo's every edit failed); growing it is."""
    from harness import transforms

    monkeypatch.setattr(transforms, "MAX_OUTPUT_PIXELS", 1000)
    large = np.zeros((40, 40, 3), np.uint8)
    assert apply_chain(large, [("hflip", {}), ("blur", {"kernel": 3}), ("scale", {"factor": 0.5})]).shape == (20, 20, 3)
    with pytest.raises(TransformError, match="the result would be 80x80"):
        apply_chain(large, [("scale", {"factor": 2})])


def test_an_overlay_file_is_read_within_bounds(tmp_path):
    """The overlay's file is read as the run's images are: a regular file, its header's size checked
    before any pixel is decoded (a 875 KB PNG of 30000x30000 took 1.8 GB and 11 s, then failed)."""
    from PIL import Image

    from harness.transforms.overlays import MAX_OVERLAY_PIXELS

    image = np.zeros((64, 64, 3), np.uint8)
    Image.new("L", (30000, 30000)).save(tmp_path / "bomb.png")
    Image.new("L", (4097, 4096)).save(tmp_path / "large.png")
    cv2.imwrite(str(tmp_path / "ok.png"), np.full((20, 40, 4), 200, np.uint8))
    cases = {"bomb.png": f"has more than {MAX_OVERLAY_PIXELS:,} pixels",
             "large.png": f"is 4097x4096; at most {MAX_OVERLAY_PIXELS:,} pixels"}
    for name, problem in cases.items():
        with pytest.raises(TransformError, match=f"overlay image '{tmp_path / name}' {problem}"):
            apply_chain(image, [("overlay_image", {"source": str(tmp_path / name)})])
    with pytest.raises(TransformError, match="overlay image '/dev/zero' is not a regular file"):
        apply_chain(image, [("overlay_image", {"source": "/dev/zero"})])
    assert apply_chain(image, [("overlay_image", {"source": str(tmp_path / "ok.png")})]).shape == (64, 64, 3)


def _checked(name, **params):
    return check_params(param_specs(TRANSFORMS.get(name)), params, name)


@pytest.mark.parametrize("name, params, problem", [
    ("gamma", {"gamma": 0}, "gamma: 0.0 must be > 0"),  # (0, 10]: open below
    ("gamma", {"gamma": 10.001}, "gamma: 10.001 must be <= 10"),
    ("screenshot", {"header": 0.5}, "header: 0.5 must be < 0.5"),  # [0, 0.5): open above
    ("screenshot", {"footer": -0.01}, "footer: -0.01 must be >= 0"),
    ("contrast", {"factor": -0.5}, "factor: -0.5 must be >= 0"),  # [0, 10]: closed at both ends
    ("contrast", {"factor": 10.5}, "factor: 10.5 must be <= 10"),
    ("rotate", {"angle": 1, "color": [0, 256, 0]}, "color[1]: 256 must be <= 255"),  # each item of a list
    ("rotate", {"angle": 1, "color": [0, 0, -1]}, "color[2]: -1 must be >= 0"),
    ("rotate", {"angle": 1, "color": [0, 0]}, "color: expected list[int, int, int], got [0, 0]"),
    ("rotate", {"angle": 1, "color": [0, 0, 0, 0]}, "color: expected list[int, int, int]"),
    ("rotate", {"angle": True}, "angle: expected float, got True"),
    ("jpeg", {"quality": 50.0}, "quality: expected int, got 50.0"),
    ("jpeg", {"quality": True}, "quality: expected int, got True"),
    ("median_blur", {"kernel": 3.0}, "kernel: expected 1 | 3 | 5"),
    ("median_blur", {"kernel": True}, "kernel: expected 1 | 3 | 5"),  # True == 1, yet not the choice 1
    ("scale", {"factor": 10 ** 400}, "factor: expected float"),  # an int past any float
    ("rotate", {"angle": float("nan")}, "angle: nan is not a finite number"),
    ("scale", {"factor": float("inf")}, "factor: inf is not a finite number"),
])
def test_each_bound_and_kind_is_checked_as_declared(name, params, problem):
    """A Range is closed unless it says open, at each end on its own; a list's items are checked each;
    an int is not a bool nor a float, a Literal's choice is matched by type as well as by value, and no
    NaN or infinity gets through (every range comparison with NaN is false)."""
    with pytest.raises(ValueError, match="^" + re.escape(problem)):
        _checked(name, **params)


def test_values_at_a_closed_bound_and_of_a_wider_kind_are_taken():
    """The bounds a closed Range names are valid values; an int is taken for a float (as a float), a
    list for a tuple, and defaults fill what is not given."""
    assert _checked("gamma", gamma=10) == {"gamma": 10.0} and isinstance(_checked("gamma", gamma=10)["gamma"], float)
    assert _checked("contrast", factor=0) == {"factor": 0.0}
    assert _checked("screenshot", header=0, footer=0.49)["header"] == 0.0
    assert _checked("rotate", angle=-360, color=[0, 255, 7]) == {"angle": -360.0, "crop": False, "color": (0, 255, 7),
                                                                  "interpolation": "linear"}
    assert _checked("median_blur", kernel=31) == {"kernel": 31}
    assert _checked("text", scale=1)["y"] is None and _checked("text", scale=1, y=-5)["y"] == -5


def test_a_range_is_described_with_its_open_and_closed_ends():
    """`harness list` shows each range as the check applies it: ( or ) for an open end, [ or ] for a
    closed one, and a whole-number bound written in full."""
    from harness.params import Range, bound

    assert [str(r) for r in (Range(0, 10, open_low=True), Range(0, 0.5, open_high=True), Range(1, 100),
                             Range(0), Range(0, open_low=True), Range(None, 5), Range(None, 5, open_high=True))] == [
        "in (0, 10]", "in [0, 0.5)", "in [1, 100]", ">= 0", "> 0", "<= 5", "< 5"]
    assert bound(2 ** 32 - 1) == "4294967295" and bound(0.25) == "0.25" and bound(16.0) == "16"


def test_a_plugins_tuple_literal_and_union_parameters_keep_their_kinds():
    """A plugin's parameters may be of any kind check_params knows: each item of a tuple is checked
    against its own type (str, then int), an int stands for an equal float choice of a Literal (and
    becomes that float, as OpenCV or the plugin expects), and a union takes the first kind that fits,
    so an `int | float` parameter given 3 stays the int 3."""
    from typing import Literal

    def edit(image, pair: tuple[str, int] = ("a", 1), level: Literal[0.5, 1.0] = 0.5, amount: int | float = 1):
        return image

    specs = param_specs(edit)
    checked = check_params(specs, {"pair": ["x", 3], "level": 1, "amount": 3}, "edit")
    assert checked == {"pair": ("x", 3), "level": 1.0, "amount": 3}
    assert type(checked["level"]) is float and type(checked["amount"]) is int
    assert type(check_params(specs, {"amount": 2.5}, "edit")["amount"]) is float
    with pytest.raises(ValueError, match=re.escape("pair: expected list[str, int], got ['x', 'y']")):
        check_params(specs, {"pair": ["x", "y"]}, "edit")
    with pytest.raises(ValueError, match=re.escape("level: expected 0.5 | 1.0, got 2")):
        check_params(specs, {"level": 2}, "edit")
