"""The transforms the published protocols need, each against its owning library (OpenCV, Pillow)
or the published code's own arithmetic, written out independently here."""

import math
import re

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance

from harness.params import check_params, param_specs
from harness.transforms import TRANSFORMS, TransformError


def run(name, image, **params):
    return TRANSFORMS.get(name)(image, **check_params(param_specs(TRANSFORMS.get(name)), params, name))


@pytest.fixture
def wide(synthetic):
    return cv2.resize(synthetic, (200, 120))


def pil(image):
    return Image.fromarray(np.ascontiguousarray(image[..., ::-1]))


def bgr(picture):
    return np.asarray(picture)[..., ::-1]


# --- geometry -----------------------------------------------------------------

@pytest.mark.parametrize("size,shape", [(100, (60, 100)), (256, (154, 256)), (50, (30, 50))])
def test_resize_max_sets_the_longer_side(size, shape, wide):
    out = run("resize_max", wide, size=size)
    assert out.shape[:2] == shape
    assert np.array_equal(out, cv2.resize(wide, shape[::-1], interpolation=cv2.INTER_CUBIC))
    tall = np.ascontiguousarray(wide.transpose(1, 0, 2))
    assert run("resize_max", tall, size=size).shape[:2] == shape[::-1]


def test_border_is_copy_make_border_per_side(wide):
    out = run("border", wide, top=0.2, bottom=0.1, left=0.05, right=0.5, color=[1, 2, 3])
    expected = cv2.copyMakeBorder(wide, 24, 12, 10, 100, cv2.BORDER_CONSTANT, value=(1, 2, 3))
    assert np.array_equal(out, expected) and np.array_equal(out[24:144, 10:210], wide)
    assert np.array_equal(run("border", wide), wide)


@pytest.mark.parametrize("removed", [0.1, 0.5, 0.8])
def test_crop_area_removes_that_part_of_the_surface(removed, wide):
    out = run("crop_area", wide, removed=removed)
    side = math.sqrt(1 - removed)
    assert out.shape[:2] == (round(120 * side), round(200 * side))
    assert abs(out.shape[0] * out.shape[1] / (120 * 200) - (1 - removed)) < 0.02
    assert np.array_equal(out, run("center_crop", wide, fraction=side))
    assert np.array_equal(run("crop_area", wide, removed=0), wide)


# --- photometric --------------------------------------------------------------

def test_vignette_is_perceptions_gaussian_mask(wide):
    # perception's benchmark: kernel(h, h/2) x kernel(w, w/2), scaled to a peak of 1, truncated
    a = cv2.getGaussianKernel(120, 60)
    b = cv2.getGaussianKernel(200, 100)
    mask = (b.T * a)[..., np.newaxis]
    assert np.array_equal(run("vignette", wide), (wide * (mask / mask.max())).astype("uint8"))
    white = np.full((120, 200, 3), 255, np.uint8)
    out = run("vignette", white, sigma=0.25)
    assert out[60, 100].min() >= 250 and out[0, 0].max() < out[60, 0].max() < 255  # dark corners


@pytest.mark.parametrize("factor", [0.8, 0.95, 1.05, 1.2])
def test_enhance_brightness_and_contrast_are_pillows(factor, wide):
    assert np.array_equal(run("enhance_brightness", wide, factor=factor),
                          bgr(ImageEnhance.Brightness(pil(wide)).enhance(factor)))
    assert np.array_equal(run("enhance_contrast", wide, factor=factor),
                          bgr(ImageEnhance.Contrast(pil(wide)).enhance(factor)))
    assert np.array_equal(run("enhance_brightness", wide, factor=1), wide)


def test_enhance_brightness_by_hand():
    grey = np.full((4, 4, 3), (100, 200, 250), np.uint8)
    assert np.all(run("enhance_brightness", grey, factor=1.2) == (120, 240, 255))  # 300 saturates
    odd = np.full((4, 4, 3), (101, 3, 7), np.uint8)
    assert np.all(run("enhance_brightness", odd, factor=1.5) == (151, 4, 10))  # truncated, as its doc says


# --- noise ----------------------------------------------------------------------

def test_gaussian_noise_can_be_the_same_for_every_channel():
    grey = np.full((50, 60, 3), 128, np.uint8)
    out = run("gaussian_noise", grey, sigma=20, per_channel=False, seed=3)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    noise = np.random.default_rng(3).standard_normal((50, 60, 1), dtype=np.float32) * 20
    assert np.array_equal(out, np.clip(np.rint(grey + noise), 0, 255).astype(np.uint8))
    assert not np.array_equal(run("gaussian_noise", grey, sigma=20, seed=3)[..., 0],
                              run("gaussian_noise", grey, sigma=20, seed=3)[..., 1])


# --- overlays --------------------------------------------------------------------

def test_text_watermark_is_perceptions_blend(wide):
    # perception's benchmark watermark, written out: "TEST" at 20% of the width, alpha 200, black.
    (width, height), _ = cv2.getTextSize("TEST", cv2.FONT_HERSHEY_SIMPLEX, 5, 5)
    factor = 0.2 * 200 / width
    ink = cv2.putText(np.zeros((120, 200, 4), np.uint8), "TEST", (int(height * factor), int(120 - height * factor)),
                      cv2.FONT_HERSHEY_SIMPLEX, 5 * factor, (0, 0, 0, 200), 5).astype("float32")
    expected = ((wide.astype("float32") * (255 - ink[..., 3:]) + ink[..., :3] * ink[..., 3:]) / 255).astype("uint8")
    out = run("text_watermark", wide)
    assert np.array_equal(out, expected)
    inked = ink[..., 3] > 0
    assert inked.any() and np.array_equal(out[~inked], wide[~inked])
    assert np.array_equal(out[inked], (wide[inked] * 55.0 / 255).astype("uint8"))  # 255 - 200 of the light kept


def test_screenshot_frames_the_shrunk_picture(wide):
    out = run("screenshot", wide, scale=0.5, header=0.1, footer=0.2)
    assert out.shape == wide.shape
    assert np.all(out[:12] == 38)  # title bar: 0.1 x 120 rows
    # room between bar and footer: 120 - 12 - 24 = 84 rows; 0.5 x 120 = 60 fits: a 100 x 60 picture
    assert np.array_equal(out[24:84, 50:150], cv2.resize(wide, (100, 60), interpolation=cv2.INTER_AREA))
    assert np.all(out[24:84, :50] == 255) and np.all(out[12:24] == 255)
    footer = out[96:]
    assert (footer == 160).all(axis=2).any() and (footer == 255).all(axis=2).any()  # grey lines on white
    with pytest.raises(TransformError, match="leave no room"):
        run("screenshot", wide[:3], header=0.45, footer=0.45)  # a 3-row image: room for no picture


def test_cross_is_pillows_diagonals(wide):
    expected = pil(wide)
    draw = ImageDraw.Draw(expected)
    draw.line((0, 0, 200, 120), fill=(128, 0, 0))  # iscc-experiments' fill=128 on RGB is (128, 0, 0)
    draw.line((0, 120, 200, 0), fill=(128, 0, 0))
    out = run("cross", wide)
    assert np.array_equal(out, bgr(expected))
    assert tuple(out[0, 0]) == (0, 0, 128) and tuple(out[60, 100]) == (0, 0, 128)  # the centre


def test_screenshot_shrinks_a_picture_that_scale_would_not_fit_to_the_room(wide):
    """scale 0.9 of 120 rows is 108, more than the 84 rows between a 12-row bar and a 24-row footer:
    the picture is 0.7 (84 / 120) of each side instead, 140 x 84, centred across and filling the room."""
    out = run("screenshot", wide, scale=0.9, header=0.1, footer=0.2)
    assert np.array_equal(out[12:96, 30:170], cv2.resize(wide, (140, 84), interpolation=cv2.INTER_AREA))
    assert np.all(out[12:96, :30] == 255) and np.all(out[12:96, 170:] == 255)


def test_cross_draws_its_lines_at_the_given_width(wide):
    """width reaches Pillow's line: 5 px diagonals in the given colour, as ImageDraw draws them."""
    expected = pil(wide)
    draw = ImageDraw.Draw(expected)
    draw.line((0, 0, 200, 120), fill=(0, 255, 0), width=5)
    draw.line((0, 120, 200, 0), fill=(0, 255, 0), width=5)
    out = run("cross", wide, color=[0, 255, 0], width=5)
    assert np.array_equal(out, bgr(expected))
    assert tuple(out[58, 100]) == (0, 255, 0)  # two rows off the centre: inside a 5 px line, not a 1 px one


@pytest.mark.parametrize("name,params,problem", [
    ("resize_max", {"size": 0}, "size: 0 must be >= 1"),
    ("border", {"top": -0.1}, "top: -0.1 must be >= 0"),
    ("crop_area", {"removed": 1}, "removed: 1.0 must be <= 0.99"),
    ("vignette", {"sigma": 0}, "sigma: 0.0 must be > 0"),
    ("enhance_brightness", {"factor": -1}, "factor: -1.0 must be >= 0"),
    ("enhance_contrast", {}, "factor: required parameter"),
    ("text_watermark", {"alpha": 256}, "alpha: 256 must be <= 255"),
    ("screenshot", {"scale": 0}, "scale: 0.0 must be > 0"),
    ("cross", {"width": 0}, "width: 0 must be >= 1"),
    ("gaussian_noise", {"sigma": 1, "per_channel": "no"}, "per_channel: expected bool"),
])
def test_parameters_are_validated(name, params, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        check_params(param_specs(TRANSFORMS.get(name)), params, name)
