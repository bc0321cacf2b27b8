"""The added transforms: each against a direct cv2/numpy statement of its definition, plus seeds and ranges."""

import re

import cv2
import numpy as np
import pytest

from harness.params import check_params, param_specs
from harness.transforms import TRANSFORMS, TransformError
from harness.transforms.overlays import load_overlay


def run(name, image, **params):
    return TRANSFORMS.get(name)(image, **check_params(param_specs(TRANSFORMS.get(name)), params, name))


@pytest.fixture
def wide(synthetic):
    """Not square, so width and height mix-ups show."""
    return cv2.resize(synthetic, (200, 120))


def solid(color, height=120, width=200):
    return np.full((height, width, 3), color, np.uint8)


# --- geometry -----------------------------------------------------------------

def test_flips_are_cv2_flip(wide):
    assert np.array_equal(run("hflip", wide), cv2.flip(wide, 1))
    assert np.array_equal(run("vflip", wide), cv2.flip(wide, 0))
    assert np.array_equal(run("hflip", run("hflip", wide)), wide)


@pytest.mark.parametrize("crop", [False, True])
@pytest.mark.parametrize("angle", [0, 360, -360])
def test_rotate_by_a_full_turn_is_the_input(angle, crop, wide):
    assert np.array_equal(run("rotate", wide, angle=angle, crop=crop), wide)


def test_rotate_is_counter_clockwise_like_cv2_rotate(synthetic, wide):
    assert np.array_equal(run("rotate", synthetic, angle=90), cv2.rotate(synthetic, cv2.ROTATE_90_COUNTERCLOCKWISE))
    # With crop, a quarter turn of a non-square image keeps all of it: the rectangle is h x w.
    assert np.array_equal(run("rotate", wide, angle=-90, crop=True), cv2.rotate(wide, cv2.ROTATE_90_CLOCKWISE))


@pytest.mark.parametrize("angle", [1, 5, 17, 30, 45, 60, 89, 100, 135, -20, -170])
def test_rotate_with_crop_has_no_border(angle):
    out = run("rotate", solid((10, 200, 60)), angle=angle, crop=True)
    assert np.all(out == (10, 200, 60)), "a fill colour or blend leaked into the cropped rotation"


def test_rotate_crop_size_is_the_largest_inner_rectangle():
    assert run("rotate", solid((0, 0, 0), 256, 256), angle=45, crop=True).shape[:2] == (181, 181)  # 256 / sqrt 2
    for angle in [10, 30, 45, 60, 80, 120, -35]:
        rows, cols = run("rotate", solid((0, 0, 0)), angle=angle, crop=True).shape[:2]
        # Brute force: for every width, the tallest centred upright box whose corners stay in the rotated 200 x 120.
        c, s = abs(np.cos(np.radians(angle))), abs(np.sin(np.radians(angle)))
        widths = np.arange(1, 240)
        heights = np.minimum((200 - widths * c) / s if s > 0 else np.inf, (120 - widths * s) / c)
        best = (widths * np.floor(np.maximum(heights, 0))).max()
        assert c * cols + s * rows <= 200 + 1e-6 and s * cols + c * rows <= 120 + 1e-6, "box leaves the image"
        assert cols * rows >= 0.97 * best, f"{angle} deg: {cols}x{rows} is not the largest box"


def test_rotate_without_crop_keeps_the_canvas_and_fills_corners():
    out = run("rotate", solid((255, 255, 255)), angle=45, color=[0, 0, 255])
    assert out.shape == (120, 200, 3)
    assert tuple(out[0, 0]) == tuple(out[-1, -1]) == (0, 0, 255)
    assert tuple(out[60, 100]) == (255, 255, 255)


def test_center_crop_is_the_centred_window(wide):
    out = run("center_crop", wide, fraction=0.5)
    assert np.array_equal(out, wide[30:90, 50:150])
    assert np.array_equal(out, run("crop_fraction", wide, fraction=0.5))
    assert np.array_equal(run("center_crop", wide, fraction=1), wide)


@pytest.mark.parametrize("x,y,rows,cols", [(0, 0, slice(0, 84), slice(0, 140)),
                                           (1, 1, slice(36, 120), slice(60, 200)),
                                           (0.5, 0.25, slice(9, 93), slice(30, 170))])
def test_crop_fraction_places_the_window_in_the_free_space(x, y, rows, cols, wide):
    assert np.array_equal(run("crop_fraction", wide, fraction=0.7, x=x, y=y), wide[rows, cols])


@pytest.mark.parametrize("ratio", [0.5, 1.5, 2])
def test_aspect_stretches_the_width_only(ratio, wide):
    out = run("aspect", wide, ratio=ratio)
    assert np.array_equal(out, cv2.resize(wide, (round(200 * ratio), 120)))


def test_scale_rounds_a_fractional_size_down():
    """The docstring's 'rounded down': 203 x 0.99 is 200.97 and 101 x 0.99 is 99.99, a 200 x 99 image
    (rounding to nearest made 201 x 100, one pixel more each way than every other resize of that factor)."""
    image = np.random.default_rng(3).integers(0, 256, (101, 203, 3), dtype=np.uint8)
    out = run("scale", image, factor=0.99)
    assert out.shape == (99, 200, 3)
    assert np.array_equal(out, cv2.resize(image, (200, 99)))


def test_crop_moves_its_window_by_dx_and_dy_each_on_its_own_axis(wide):
    """dx moves the window right and dy down, each by its own amount (the shift tests move both alike,
    which a swapped dx and dy passes); a window touching the right and bottom edges fits, one more does not."""
    assert np.array_equal(run("crop", wide, x=5, y=6, width=10, height=8, dx=3, dy=-2), wide[4:12, 8:18])
    assert np.array_equal(run("crop", wide, x=190, y=110, width=10, height=10), wide[110:120, 190:200])
    for past in ({"x": 191}, {"y": 111}, {"dx": 1}, {"dy": 1}):
        with pytest.raises(TransformError, match="does not fit in a 200x120 image"):
            run("crop", wide, **{"x": 190, "y": 110, "width": 10, "height": 10, **past})


def test_center_crop_moves_its_window_by_a_part_of_each_side(wide):
    """dx is a part of the width and dy of the height: on 200 x 120, a 100 x 60 window moved by
    dx = 0.1 (20 px) and dy = -0.25 (30 px) is columns 70-169 and rows 0-59."""
    assert np.array_equal(run("center_crop", wide, fraction=0.5, dx=0.1, dy=-0.25), wide[0:60, 70:170])
    with pytest.raises(TransformError, match="leaves the 200x120 image"):
        run("center_crop", wide, fraction=0.5, dx=0.0, dy=-0.26)  # 31 rows up from row 30


def test_aspect_rounds_the_new_width_to_the_nearest_pixel(wide):
    """200 x 1.003 is 200.6: 201 columns, as the docstring's 'rounded' says (int() made 200, no edit at all)."""
    out = run("aspect", wide, ratio=1.003)
    assert out.shape == (120, 201, 3)
    assert np.array_equal(out, cv2.resize(wide, (201, 120)))


@pytest.mark.parametrize("mode,border", [("constant", cv2.BORDER_CONSTANT), ("reflect", cv2.BORDER_REFLECT_101),
                                         ("replicate", cv2.BORDER_REPLICATE)])
def test_pad_is_copy_make_border(mode, border, wide):
    out = run("pad", wide, fraction=0.25, mode=mode, color=[1, 2, 3])
    assert np.array_equal(out, cv2.copyMakeBorder(wide, 30, 30, 50, 50, border, value=(1, 2, 3)))
    assert np.array_equal(out[30:150, 50:250], wide)


def test_pad_constant_uses_the_colour(wide):
    out = run("pad", wide, fraction=1, color=[1, 2, 3])
    assert out.shape == (360, 600, 3) and tuple(out[0, 0]) == (1, 2, 3)


# --- filters ------------------------------------------------------------------

@pytest.mark.parametrize("sigma", [0.5, 1, 2.5, 4])
def test_gaussian_blur_sizes_its_kernel_from_sigma(sigma, synthetic):
    kernel = round(6 * sigma + 1) | 1  # what the docstring says OpenCV picks for uint8
    assert np.array_equal(run("gaussian_blur", synthetic, sigma=sigma),
                          cv2.GaussianBlur(synthetic, (kernel, kernel), sigma))


@pytest.mark.parametrize("kernel", [1, 3, 5, 9, 31])
def test_median_blur_is_cv2_median(kernel, synthetic):
    assert np.array_equal(run("median_blur", synthetic, kernel=kernel), cv2.medianBlur(synthetic, kernel))


def test_sharpen_is_unsharp_mask(synthetic):
    assert np.array_equal(run("sharpen", synthetic, amount=0), synthetic)
    blurred = cv2.GaussianBlur(synthetic, (0, 0), 2)
    expected = np.clip(np.rint(2.5 * synthetic.astype(float) - 1.5 * blurred), 0, 255)
    assert np.abs(run("sharpen", synthetic, amount=1.5, sigma=2) - expected).max() <= 1
    detail = lambda img: cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var()
    assert detail(run("sharpen", synthetic, amount=1)) > detail(synthetic)


def test_pixelate_makes_constant_blocks(synthetic):
    assert np.array_equal(run("pixelate", synthetic, block=1), synthetic)
    out = run("pixelate", synthetic, block=8)
    blocks = out.reshape(32, 8, 32, 8, 3)
    assert np.all(blocks == blocks[:, :1, :, :1])
    small = cv2.resize(synthetic, (32, 32), interpolation=cv2.INTER_AREA)
    assert np.array_equal(out, cv2.resize(small, (256, 256), interpolation=cv2.INTER_NEAREST))
    assert run("pixelate", synthetic, block=1000).shape == synthetic.shape  # one block: the mean colour


def test_pixelate_shrinks_each_side_by_the_block(wide):
    """A 200 x 120 image in blocks of 8 is 25 x 15 blocks (the square test image cannot tell the
    sides apart): every 8 x 8 block one colour, the mean of its pixels (INTER_AREA)."""
    out = run("pixelate", wide, block=8)
    small = cv2.resize(wide, (25, 15), interpolation=cv2.INTER_AREA)
    assert np.array_equal(out, cv2.resize(small, (200, 120), interpolation=cv2.INTER_NEAREST))
    blocks = out.reshape(15, 8, 25, 8, 3)
    assert np.all(blocks == blocks[:, :1, :, :1])


# --- photometric --------------------------------------------------------------

@pytest.mark.parametrize("delta", [-255, -100, -1, 0, 1, 60, 255])
def test_brightness_adds_and_saturates(delta, synthetic):
    expected = np.clip(synthetic.astype(int) + delta, 0, 255).astype(np.uint8)
    assert np.array_equal(run("brightness", synthetic, delta=delta), expected)


def test_brightness_does_not_wrap():
    assert np.all(run("brightness", solid((250, 5, 128)), delta=10) == (255, 15, 138))
    assert np.all(run("brightness", solid((250, 5, 128)), delta=-10) == (240, 0, 118))


@pytest.mark.parametrize("factor", [0, 0.5, 1, 1.7, 3])
def test_contrast_scales_around_mid_grey(factor, synthetic):
    expected = np.clip(np.rint((synthetic.astype(float) - 128) * factor + 128), 0, 255).astype(np.uint8)
    assert np.array_equal(run("contrast", synthetic, factor=factor), expected)


def test_saturation_one_is_identity_and_zero_is_grey(synthetic):
    assert np.array_equal(run("saturation", synthetic, factor=1), synthetic)
    grey = run("saturation", synthetic, factor=0)
    assert np.array_equal(grey, np.repeat(synthetic.max(axis=2, keepdims=True), 3, axis=2))  # V = max
    hsv = lambda img: cv2.cvtColor(img, cv2.COLOR_BGR2HSV)[..., 1].astype(int)
    assert hsv(run("saturation", synthetic, factor=0.5)).mean() < hsv(synthetic).mean()


def test_hue_shifts_and_wraps(synthetic):
    assert np.array_equal(run("hue", synthetic, degrees=0), synthetic)
    assert np.array_equal(run("hue", synthetic, degrees=360), synthetic)
    twice = run("hue", run("hue", synthetic, degrees=180), degrees=180)
    assert np.abs(twice.astype(int) - synthetic).max() <= 1
    back = run("hue", run("hue", synthetic, degrees=300), degrees=-300)
    assert np.abs(back.astype(int) - synthetic).max() <= 1


@pytest.mark.parametrize("degrees,expected", [(120, (0, 255, 0)), (240, (255, 0, 0)), (-120, (255, 0, 0)),
                                              (60, (0, 255, 255))])
def test_hue_moves_pure_red_round_the_wheel(degrees, expected):
    assert np.all(run("hue", solid((0, 0, 255)), degrees=degrees) == expected)


def test_quantize_is_uniform_posterisation(synthetic):
    assert np.array_equal(run("quantize", synthetic, levels=256), synthetic)
    assert set(np.unique(run("quantize", synthetic, levels=2))) == {0, 255}
    assert set(np.unique(run("quantize", synthetic, levels=4))) <= {0, 85, 170, 255}
    grades = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    assert np.array_equal(run("quantize", grades, levels=3)[..., 0].ravel(),
                          np.repeat([0, 128, 255], [86, 85, 85]))  # thirds of 256, to 0, mid, 255


# --- codecs -------------------------------------------------------------------

@pytest.mark.parametrize("quality", [1, 30, 75, 100])
def test_webp_is_encode_decode_round_trip(quality, synthetic):
    _, buffer = cv2.imencode(".webp", synthetic, [cv2.IMWRITE_WEBP_QUALITY, quality])
    out = run("webp", synthetic, quality=quality)
    assert np.array_equal(out, cv2.imdecode(buffer, cv2.IMREAD_COLOR))
    assert not np.array_equal(out, synthetic), "webp below lossless must change pixels"


@pytest.mark.parametrize("compression", [0, 1, 6, 9])
def test_png_round_trip_is_lossless(compression, synthetic):
    noisy = np.random.default_rng(compression).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    assert np.array_equal(run("png", synthetic, compression=compression), synthetic)
    assert np.array_equal(run("png", noisy, compression=compression), noisy)


# --- noise: seeded, never the global generator --------------------------------

RANDOM = {
    "gaussian_noise": {"sigma": 12},
    "salt_pepper": {"amount": 0.1},
    "emoji": {"count": 3, "size": 0.2},
}


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_random_transforms_follow_their_seed(name, synthetic):
    a = run(name, synthetic, **RANDOM[name], seed=7)
    assert np.array_equal(a, run(name, synthetic, **RANDOM[name], seed=7))
    assert not np.array_equal(a, run(name, synthetic, **RANDOM[name], seed=8))
    assert np.array_equal(run(name, synthetic, **RANDOM[name]), run(name, synthetic, **RANDOM[name], seed=0))


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_random_transforms_leave_the_global_generator_alone(name, synthetic):
    np.random.seed(123)
    a = run(name, synthetic, **RANDOM[name])
    after = np.random.random()
    np.random.seed(456)
    assert np.array_equal(a, run(name, synthetic, **RANDOM[name]))
    np.random.seed(123)
    assert np.random.random() == after


def test_gaussian_noise_has_the_asked_sigma():
    grey = solid((128, 128, 128), 200, 200)
    assert np.array_equal(run("gaussian_noise", grey, sigma=0), grey)
    diff = run("gaussian_noise", grey, sigma=10).astype(float) - 128
    assert abs(diff.mean()) < 0.2 and abs(diff.std() - 10) < 0.2


@pytest.mark.parametrize("amount", [0, 0.01, 0.25, 1])
def test_salt_pepper_replaces_the_asked_part_of_the_pixels(amount):
    grey = solid((128, 128, 128), 100, 150)
    out = run("salt_pepper", grey, amount=amount)
    salt, pepper = np.all(out == 255, axis=2).sum(), np.all(out == 0, axis=2).sum()
    changed = np.any(out != 128, axis=2).sum()
    assert changed == salt + pepper == round(amount * 100 * 150)
    assert abs(int(salt) - int(pepper)) <= 1


def test_salt_pepper_rounds_the_count_of_pixels_to_the_nearest():
    """round(amount * pixels), as the docstring says: 0.00071 of 15,000 pixels is 10.65, so 11 pixels
    (int() made 10: the amounts the other test uses all give whole counts)."""
    out = run("salt_pepper", solid((128, 128, 128), 100, 150), amount=0.00071)
    assert np.any(out != 128, axis=2).sum() == 11


# --- overlays -----------------------------------------------------------------

def test_overlay_image_builtin_logo_respects_alpha_and_opacity(wide):
    assert np.array_equal(run("overlay_image", wide, opacity=0), wide)
    out = run("overlay_image", wide, size=0.5, x=0, y=1, opacity=1)
    assert load_overlay("builtin:logo").shape == (500, 500, 4)  # RGBA (opaque, on white)
    box = (slice(20, 120), slice(0, 100))  # 100 x 100 at the bottom left
    assert not np.array_equal(out[box], wide[box])
    outside = np.ones(wide.shape[:2], bool)
    outside[box] = False
    assert np.array_equal(out[outside], wide[outside])


def test_overlay_image_from_a_file(tmp_path, wide):
    path = str(tmp_path / "red.png")
    cv2.imwrite(path, solid((0, 0, 255), 10, 20))
    out = run("overlay_image", wide, source=path, size=0.5, x=1, y=0)
    assert np.all(out[:50, 100:] == (0, 0, 255)) and np.array_equal(out[50:], wide[50:])
    half = run("overlay_image", wide, source=path, size=0.5, x=1, y=0, opacity=0.5)
    expected = np.rint(wide[:50, 100:] * 0.5 + np.array([0, 0, 127.5]))
    assert np.abs(half[:50, 100:] - expected).max() <= 1

    clear = str(tmp_path / "clear.png")
    cv2.imwrite(clear, np.zeros((10, 10, 4), np.uint8))  # fully transparent
    assert np.array_equal(run("overlay_image", wide, source=clear), wide)
    veil = str(tmp_path / "veil.png")
    cv2.imwrite(veil, np.full((10, 20, 4), (0, 0, 255, 102), np.uint8))  # red at alpha 0.4
    out = run("overlay_image", wide, source=veil, size=0.5, x=1, y=0, opacity=0.5)  # 0.2 in all
    assert np.abs(out[:50, 100:] - (wide[:50, 100:] * 0.8 + np.array([0, 0, 51]))).max() <= 1


def test_overlay_image_is_read_once_while_its_file_is_unchanged(tmp_path, synthetic):
    from harness.transforms.overlays import _load_overlay

    path = str(tmp_path / "logo.png")
    cv2.imwrite(path, solid((9, 9, 9), 8, 8))
    run("overlay_image", synthetic, source=path)  # read when its parameters are checked
    misses = _load_overlay.cache_info().misses
    run("overlay_image", synthetic, source=path)
    assert _load_overlay.cache_info().misses == misses
    cv2.imwrite(path, solid((250, 9, 9), 8, 16))  # replaced under the same name: read again
    assert load_overlay(path).shape == (8, 16, 4) and _load_overlay.cache_info().misses == misses + 1


def test_overlay_image_errors_are_clear(tmp_path, wide):
    # a source that cannot be drawn is refused with the parameters, before any image is edited
    missing = str(tmp_path / "missing.png")
    with pytest.raises(ValueError, match=re.escape(f"source: no file at '{missing}' (use 'builtin:logo' or an image")):
        run("overlay_image", wide, source=missing)
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="source: cannot read overlay image"):
        run("overlay_image", wide, source=str(tmp_path / "junk.png"))
    with pytest.raises(ValueError,
                       match="source: unknown overlay 'builtin:coffee'; the built-in one is 'builtin:logo'"):
        run("overlay_image", wide, source="builtin:coffee")
    with pytest.raises(TransformError, match="cannot read overlay image"):  # loaded without the check
        load_overlay(missing)
    with pytest.raises(TransformError, match="does not fit in a 200x120 image"):
        run("overlay_image", wide, size=1)  # the square logo is 200 px tall


@pytest.mark.parametrize("position", ["top", "bottom"])
@pytest.mark.parametrize("bar", ["white", "black"])
def test_caption_adds_a_bar_with_centred_text(position, bar, wide):
    out = run("caption", wide, text="HELLO", height=0.25, position=position, bar=bar)
    assert out.shape == (150, 200, 3)
    strip, rest = (out[:30], out[30:]) if position == "top" else (out[120:], out[:120])
    assert np.array_equal(rest, wide)
    paper = 255 if bar == "white" else 0
    assert np.all(strip[0] == paper) and np.all(strip[-1] == paper)  # text stays off the edges
    ink = np.argwhere(np.abs(strip.astype(int) - paper).min(axis=2) > 127)  # anti-aliased strokes
    assert len(ink) > 50
    (top, left), (bottom, right) = ink.min(axis=0), ink.max(axis=0)
    assert abs((left + right) / 2 - 100) <= 3 and abs((top + bottom) / 2 - 15) <= 3
    assert np.all(strip[..., 0] == strip[..., 1]) and np.all(strip[..., 1] == strip[..., 2])  # grey only


def test_caption_sizes_its_bar_and_text_from_the_image():
    """The bar is round(height x rows): 0.23 of 120 is 27.6, 28 rows (int() made 27). In a bar as tall
    as the image, a long text is sized to 0.9 of the width (10 px free at each side of 200), a short one
    to 0.7 of the bar's height; either is centred across and down, the text's box (descenders included)
    about the bar's middle row, 60."""
    grey = solid((90, 90, 90))
    assert run("caption", grey, height=0.23).shape == (148, 200, 3)
    for text in ("Hgjpqy", "Hy"):
        strip = run("caption", grey, text=text, height=1.0)[:120]
        ink = np.argwhere(strip.min(axis=2) < 128)
        (top, left), (bottom, right) = ink.min(axis=0), ink.max(axis=0)
        assert left >= 10 and right <= 189 and abs((left + right) / 2 - 100) <= 3, (text, left, right)
        assert abs((top + bottom) / 2 - 60) <= 3, (text, top, bottom)
    assert right - left < 100 and bottom - top > 70  # "Hy": as tall as 0.7 of the bar allows, not as wide


def test_caption_of_empty_text_is_a_plain_bar(wide):
    out = run("caption", wide, text="", height=0.5)
    assert np.all(out[:60] == 255) and np.array_equal(out[60:], wide)


def test_emoji_draws_yellow_faces_inside_the_image():
    grey = solid((128, 128, 128))
    out = run("emoji", grey, count=2, size=0.3)
    yellow = np.all(out == (0, 210, 255), axis=2)
    assert yellow.sum() > 0.5 * 2 * np.pi * 30 ** 2 * 0.5  # most of two 60 px faces, less eyes and smile
    assert run("emoji", grey, count=5, size=0.3).shape == grey.shape


@pytest.mark.parametrize("shape", [(120, 200), (200, 120)])
def test_emoji_faces_are_whole_on_wide_and_tall_images(shape):
    """Each face's centre is placed in the room its side leaves (width across, height down): a face
    of radius 30 on a 120 x 200 or 200 x 120 image lies whole inside it, whatever the seed: its drawn
    pixels span 65 rows and 65 columns (the 61 px disc and its anti-aliased rim); a centre placed by
    the other side's room was cut off at the edge."""
    grey = solid((128, 128, 128), *shape)
    for seed in range(6):
        out = run("emoji", grey, count=1, size=60 / shape[1], seed=seed)  # a radius of 30 px
        drawn = np.argwhere(np.any(out != 128, axis=2))
        (top, left), (bottom, right) = drawn.min(axis=0), drawn.max(axis=0)
        assert bottom - top + 1 == right - left + 1 == 65, (seed, top, bottom, left, right)


# --- parameters are checked before any work -----------------------------------

@pytest.mark.parametrize("name,params,problem", [
    ("rotate", {"angle": 400}, "angle: 400.0 must be <= 360"),
    ("rotate", {"angle": 10, "crop": "yes"}, "crop: expected bool"),
    ("center_crop", {"fraction": 0}, "fraction: 0.0 must be > 0"),
    ("crop_fraction", {"fraction": 1.5}, "fraction: 1.5 must be <= 1"),
    ("crop_fraction", {"fraction": 0.5, "x": -0.1}, "x: -0.1 must be >= 0"),
    ("aspect", {"ratio": 0}, "ratio: 0.0 must be > 0"),
    ("pad", {"fraction": 0.1, "mode": "wrap"}, "mode: expected 'constant' | 'reflect' | 'replicate'"),
    ("pad", {"fraction": 0.1, "color": [1, 2]}, "color: expected list[int, int, int]"),
    ("gaussian_blur", {"sigma": 0}, "sigma: 0.0 must be > 0"),
    ("median_blur", {"kernel": 4}, "kernel: expected 1 | 3 | 5"),
    ("sharpen", {"amount": -1}, "amount: -1.0 must be >= 0"),
    ("pixelate", {"block": 0}, "block: 0 must be >= 1"),
    ("brightness", {"delta": 300}, "delta: 300 must be <= 255"),
    ("brightness", {"delta": 1.5}, "delta: expected int"),
    ("contrast", {"factor": -0.5}, "factor: -0.5 must be >= 0"),
    ("saturation", {"factor": 11}, "factor: 11.0 must be <= 10"),
    ("hue", {"degrees": -400}, "degrees: -400.0 must be >= -360"),
    ("quantize", {"levels": 1}, "levels: 1 must be >= 2"),
    ("webp", {"quality": 0}, "quality: 0 must be >= 1"),
    ("jpeg", {"quality": 0}, "quality: 0 must be >= 1"),  # libjpeg's 0 is its 1: the same pixels
    ("png", {"compression": 10}, "compression: 10 must be <= 9"),
    ("gaussian_noise", {"sigma": 5, "seed": -1}, "seed: -1 must be >= 0"),
    ("salt_pepper", {"amount": 1.5}, "amount: 1.5 must be <= 1"),
    ("salt_pepper", {"amount": 0.1, "sed": 3}, "did you mean 'seed'"),
    ("overlay_image", {"opacity": 2}, "opacity: 2.0 must be <= 1"),
    ("overlay_image", {"size": 0}, "size: 0.0 must be > 0"),
    ("caption", {"position": "middle"}, "position: expected 'top' | 'bottom'"),
    ("emoji", {"count": 0}, "count: 0 must be >= 1"),
    # a colour's channels are 0..255 each (OpenCV and Pillow clamped the others without a word)
    ("border", {"top": 0.1, "color": [300, -5, 0]}, "color[0]: 300 must be <= 255"),
    ("pad", {"fraction": 0.1, "color": [0, -5, 0]}, "color[1]: -5 must be >= 0"),
    ("rotate", {"angle": 10, "color": [0, 0, 1000]}, "color[2]: 1000 must be <= 255"),
    ("cross", {"color": [999, 0, 0]}, "color[0]: 999 must be <= 255"),
    ("text", {"scale": 1, "color": [256, 256, 256]}, "color[0]: 256 must be <= 255"),
    ("text_watermark", {"color": [0, 0, 256]}, "color[2]: 256 must be <= 255"),
    # past a C int, OpenCV refused the text's origin on every image
    ("text", {"scale": 1, "x": 99999999999}, "x: 99999999999 must be <= 1073741824"),
    ("text", {"scale": 1, "y": -99999999999}, "y: -99999999999 must be >= -1073741824"),
    ("text", {"scale": 1, "thickness": 1 << 31}, "thickness: 2147483648 must be <= 1000"),
    # Hershey fonts draw one line of printable ASCII (the rest came out as '?'); text drawing nothing
    # left every image as it was (a caption's empty text still adds its bar)
    ("caption", {"text": "Привет"}, "text: 'Привет' holds 'П', not printable ASCII: OpenCV's Hershey fonts"),
    ("caption", {"text": "two\nlines"}, "text: 'two\\nlines' has a line break; the text is drawn on one line"),
    ("text", {"scale": 1, "text": "caf\u00e9"}, "text: 'café' holds 'é', not printable ASCII"),
    ("text", {"scale": 1, "text": " "}, "text: ' ' draws nothing; give the words to draw"),
    ("text_watermark", {"text": ""}, "text: '' draws nothing; give the words to draw"),
    ("text_watermark", {"text": "a\tb"}, "text: 'a\\tb' holds '\\t', not printable ASCII"),
])
def test_new_parameters_are_validated(name, params, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        check_params(param_specs(TRANSFORMS.get(name)), params, name)


@pytest.mark.parametrize("name, params", [("text", {"scale": 100}), ("text", {"scale": 1, "x": -200}),
                                          ("text", {"scale": 1, "y": -5}), ("text_watermark", {"width": 3})])
def test_text_that_puts_no_pixel_on_the_image_is_an_error_not_an_unchanged_copy(name, params):
    """Values inside the documented ranges drew nothing on a 512 x 480 photo: the unchanged image
    was scored as an edit (pHash 0, a perfect detection). A text partly on the image still draws."""
    photo = np.full((480, 512, 3), 100, np.uint8)
    with pytest.raises(TransformError, match=r"puts no pixel on the 512x480 image"):
        run(name, photo, **params)
    assert (run("text", photo, scale=1, x=-60) != photo).any()  # its last letters show
    assert (run("text_watermark", photo, width=2) != photo).any()
    assert np.array_equal(run("text_watermark", photo, alpha=0), photo)  # drawn, at no opacity: a neutral value


def test_a_screenshot_frame_whose_bars_leave_no_room_on_any_image_is_refused_with_its_parameters():
    """header 0.5 and footer 0.5 were each in range, so `validate` said valid and `run` failed on every image."""
    specs = param_specs(TRANSFORMS.get("screenshot"))
    with pytest.raises(ValueError, match=r"^header: 0.5 must be < 0.5$"):
        check_params(specs, {"header": 0.5, "footer": 0.5}, "transform 'screenshot'")
    assert check_params(specs, {"header": 0.45, "footer": 0.45}, "transform 'screenshot'")["footer"] == 0.45
    framed = run("screenshot", np.full((480, 512, 3), 90, np.uint8), header=0.45, footer=0.45)
    assert framed.shape == (480, 512, 3) and (framed == 90).any()  # the picture has its room


def test_webp_past_its_format_s_size_says_so():
    """Was OpenCV's "(-215:Assertion failed) size > 0 in function 'write'"."""
    with pytest.raises(TransformError, match=r"^WebP holds images of at most 16383 px a side; this one is 16384x2$"):
        run("webp", np.zeros((2, 16384, 3), np.uint8), quality=80)
    assert run("webp", np.zeros((2, 16383, 3), np.uint8), quality=80).shape == (2, 16383, 3)


@pytest.mark.parametrize("name, params", [
    ("scale", {"factor": 1.0}), ("rotate", {"angle": 0}), ("gamma", {"gamma": 1.0}), ("brightness", {"delta": 0}),
    ("gaussian_noise", {"sigma": 0}), ("overlay_image", {"opacity": 0.0}), ("text_watermark", {"alpha": 0}),
    ("png", {}),
])
def test_a_parameter_value_that_changes_nothing_is_a_control_as_the_readme_says(name, params):
    """The convention (README, Transforms): a value that leaves every image as it is is accepted and
    gives the image back, a control like the identity family; text_watermark's alpha 0 is one of them,
    as overlay_image's opacity 0 is (only a text that an image's size keeps off it fails, above)."""
    photo = cv2.resize(np.arange(48 * 64 * 3, dtype=np.uint8).reshape(48, 64, 3), (64, 48))
    assert np.array_equal(run(name, photo, **params), photo)
