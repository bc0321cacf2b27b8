"""Reading messy image files: every odd or broken file is generated here, in tmp_path.

Each readable file must give uint8 HxWx3 BGR and say what was converted. Each
unreadable one must raise a one-line ImageError "<path>: <reason>", and no
other exception.
"""

import contextlib
import io
import os
import re
import struct
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image, TiffImagePlugin

from harness import images
from harness.errors import ImageError
from harness.images import DEFAULT_MAX_PIXELS, SourceImage, decode_image, load_source, read_image
from tests.conftest import ROOT, make_scene

RNG = np.random.default_rng(7)
RGB = RNG.integers(0, 256, (12, 16, 3), dtype=np.uint8)  # an "ordinary" image, in RGB order
BGR = np.ascontiguousarray(RGB[..., ::-1])


def pillow_bytes(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def opencv_bytes(pixels: np.ndarray, ext: str, params=()) -> bytes:
    ok, encoded = cv2.imencode(ext, pixels, list(params))
    assert ok
    return encoded.tobytes()


def write(tmp_path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


def imread_color(data: bytes) -> np.ndarray:
    """The article's reading of a file."""
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def read(tmp_path, name: str, data: bytes, **kwargs):
    pixels, notes = read_image(write(tmp_path, name, data), **kwargs)
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.flags.c_contiguous
    return pixels, notes


def refused(tmp_path, name: str, data: bytes, **kwargs) -> str:
    """The reason of the ImageError, after checking that the message is '<path>: <reason>' on one line."""
    path = write(tmp_path, name, data)
    with pytest.raises(ImageError) as caught:
        read_image(path, **kwargs)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message[len(path) + 2:]


# Ordinary images: the article's reading, byte for byte, and nothing to note.

@pytest.mark.parametrize("ext", [".png", ".tif", ".jpg", ".bmp", ".webp"])
def test_ordinary_rgb_is_exactly_imread_color(tmp_path, ext):
    data = opencv_bytes(BGR, ext)
    pixels, notes = read(tmp_path, "plain" + ext, data)
    assert np.array_equal(pixels, imread_color(data))
    assert notes == []


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "JPEG"])
def test_ordinary_rgb_written_by_pillow_is_exactly_imread_color(tmp_path, fmt):
    data = pillow_bytes(Image.fromarray(RGB), fmt)
    pixels, notes = read(tmp_path, "pillow." + fmt.lower(), data)
    assert np.array_equal(pixels, imread_color(data)) and notes == []


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (1, 7), (7, 1)])
@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_tiny_images_load(tmp_path, shape, ext):
    data = opencv_bytes(RNG.integers(0, 256, (*shape, 3), dtype=np.uint8), ext)
    pixels, _ = read(tmp_path, "tiny" + ext, data)
    assert pixels.shape == (*shape, 3) and np.array_equal(pixels, imread_color(data))


def test_paths_with_spaces_and_non_ascii_characters(tmp_path):
    data = opencv_bytes(BGR, ".png")
    pixels, _ = read(tmp_path, "a folder/ünïcødé 画像 ☃.png", data)
    assert np.array_equal(pixels, BGR)


# Channels.

def test_grayscale_is_repeated(tmp_path):
    gray = RGB[..., 0]
    data = opencv_bytes(gray, ".png")
    pixels, notes = read(tmp_path, "gray.png", data)
    assert np.array_equal(pixels, np.dstack([gray] * 3)) and np.array_equal(pixels, imread_color(data))
    assert notes == ["grayscale repeated to 3 channels"]


def test_one_bit_image(tmp_path):
    data = pillow_bytes(Image.fromarray(RGB[..., 0] > 127), "PNG")
    pixels, notes = read(tmp_path, "bilevel.png", data)
    assert np.array_equal(pixels[..., 0], np.where(RGB[..., 0] > 127, 255, 0))
    assert notes == ["1-bit black and white repeated to 3 channels"]


def test_rgba_alpha_is_dropped_not_composited(tmp_path):
    rgba = np.dstack([RGB, RNG.integers(0, 256, RGB.shape[:2], dtype=np.uint8)])
    data = pillow_bytes(Image.fromarray(rgba, "RGBA"), "PNG")
    pixels, notes = read(tmp_path, "rgba.png", data)
    assert np.array_equal(pixels, BGR) and np.array_equal(pixels, imread_color(data))
    assert notes == ["alpha dropped"]


def test_rgba_tiff_with_unassociated_alpha_is_dropped_too(tmp_path):
    """libtiff (OpenCV's reader) would multiply the colour by alpha; the rule is to drop alpha."""
    rgba = np.dstack([RGB, np.full(RGB.shape[:2], 64, np.uint8)])
    extra = TiffImagePlugin.ImageFileDirectory_v2()
    extra[338] = 2  # ExtraSamples: unassociated alpha (what Pillow writes anyway)
    data = pillow_bytes(Image.fromarray(rgba, "RGBA"), "TIFF", tiffinfo=extra)
    pixels, notes = read(tmp_path, "rgba.tif", data)
    assert np.array_equal(pixels, BGR)
    assert notes == ["alpha dropped"]


def test_la_image(tmp_path):
    la = np.dstack([RGB[..., 0], RGB[..., 1]])
    pixels, notes = read(tmp_path, "la.png", pillow_bytes(Image.fromarray(la, "LA"), "PNG"))
    assert np.array_equal(pixels, np.dstack([RGB[..., 0]] * 3))
    assert notes == ["grayscale repeated to 3 channels", "alpha dropped"]


@pytest.mark.parametrize("transparent", [False, True])
def test_palette_image(tmp_path, transparent):
    palette = Image.fromarray(RGB).convert("P")
    if transparent:
        palette.info["transparency"] = 0
    data = pillow_bytes(palette, "PNG")
    pixels, notes = read(tmp_path, "palette.png", data)
    assert np.array_equal(pixels, np.asarray(palette.convert("RGB"))[..., ::-1])
    assert np.array_equal(pixels, imread_color(data))
    assert notes == ["palette image converted to RGB"] + (["alpha dropped"] if transparent else [])


def test_cmyk_jpeg(tmp_path):
    data = pillow_bytes(Image.fromarray(RGB).convert("CMYK"), "JPEG", quality=95)
    pixels, notes = read(tmp_path, "cmyk.jpg", data)
    assert np.array_equal(pixels, imread_color(data))  # OpenCV's conversion, as before
    by_pillow = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))[..., ::-1]
    assert np.abs(pixels.astype(int) - by_pillow).max() <= 2
    assert notes == ["CMYK converted to RGB"]


# Depth.

@pytest.mark.parametrize("ext", [".png", ".tif"])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_16_bit_is_shifted_to_8_bit(tmp_path, ext, channels):
    deep = RNG.integers(0, 65536, (5, 6, channels), dtype=np.uint16).squeeze(axis=2 if channels == 1 else None)
    pixels, notes = read(tmp_path, "deep" + ext, opencv_bytes(deep, ext))
    expected = (deep >> 8).astype(np.uint8)
    expected = np.dstack([expected] * 3) if channels == 1 else expected[..., :3]
    assert np.array_equal(pixels, expected)
    assert "16-bit scaled to 8-bit (>> 8)" in notes
    assert ("grayscale repeated to 3 channels" in notes) == (channels == 1)
    assert ("alpha dropped" in notes) == (channels == 4)


def test_16_bit_png_matches_imread_color(tmp_path):
    data = opencv_bytes(RNG.integers(0, 65536, (5, 6, 3), dtype=np.uint16), ".png")
    assert np.array_equal(read(tmp_path, "deep.png", data)[0], imread_color(data))


def test_float_tiff_in_unit_range_is_scaled(tmp_path):
    values = RNG.random((5, 6)).astype(np.float32)
    values[0, 0], values[0, 1] = 0.0, 1.0
    pixels, notes = read(tmp_path, "float.tif", pillow_bytes(Image.fromarray(values, "F"), "TIFF"))
    assert np.array_equal(pixels[..., 0], np.rint(values.astype(np.float64) * 255).astype(np.uint8))
    assert notes == ["grayscale repeated to 3 channels", "32-bit float in [0, 1] scaled by 255 to 8-bit"]


def test_float_tiff_outside_unit_range_is_clipped(tmp_path):
    values = np.array([[-20.0, 0.4, 1.0, 127.6], [254.5, 300.0, np.nan, np.inf]], np.float32)
    pixels, notes = read(tmp_path, "hdr.tif", pillow_bytes(Image.fromarray(values, "F"), "TIFF"))
    assert pixels[..., 0].tolist() == [[0, 0, 1, 128], [254, 255, 0, 255]]  # rint rounds half to even
    assert notes[-1] == "32-bit float clipped to [0, 255]"


def test_three_channel_float_tiff(tmp_path):
    """Pillow cannot read this one: OpenCV decodes it, and the size is checked from its first directory."""
    values = RNG.random((5, 6, 3)).astype(np.float32)
    data = opencv_bytes(values, ".tif", [cv2.IMWRITE_TIFF_COMPRESSION, 1])
    pixels, notes = read(tmp_path, "float3.tif", data)
    assert np.array_equal(pixels, np.rint(values.astype(np.float64) * 255).astype(np.uint8))
    assert notes == ["32-bit float in [0, 1] scaled by 255 to 8-bit"]
    assert refused(tmp_path, "float3.tif", data, max_pixels=29) == \
        "6 x 5 = 30 pixels exceeds the limit of 29 (raise max_pixels to allow it)"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_four_channel_float_tiff_drops_its_alpha(tmp_path, dtype):
    """OpenCV's IMREAD_COLOR cannot read 4-channel float samples, nor can Pillow: such a TIFF (an
    RGBA render, cv2.imwrite of a BGRA float array) was refused as "corrupt or unsupported". It
    is read as it is, its alpha dropped; OpenCV's TIFF reader turns it upright itself."""
    values = RNG.random((5, 6, 4)).astype(dtype)
    data = opencv_bytes(values, ".tif")
    pixels, notes = read(tmp_path, "rgba.tif", data)
    assert np.array_equal(pixels, np.rint(values[..., :3].astype(np.float64) * 255).astype(np.uint8))
    assert notes == ["alpha dropped", f"{values.itemsize * 8}-bit float in [0, 1] scaled by 255 to 8-bit"]
    rotated, notes = read(tmp_path, "rgba6.tif", _with_orientation(data, 6))
    assert np.array_equal(rotated, np.rot90(pixels, -1)) and "EXIF orientation 6 applied" in notes
    assert refused(tmp_path, "rgba.tif", data, max_pixels=29) == \
        "6 x 5 = 30 pixels exceeds the limit of 29 (raise max_pixels to allow it)"


def _with_orientation(data: bytes, orientation: int) -> bytes:
    """A little-endian TIFF from OpenCV with an Orientation field added to its first directory
    (OpenCV writes none): the directory is copied to the end of the file, one entry longer."""
    start = struct.unpack_from("<I", data, 4)[0]
    count = struct.unpack_from("<H", data, start)[0]
    entries = [data[start + 2 + 12 * i:start + 14 + 12 * i] for i in range(count)]
    entries.append(struct.pack("<HHIH2x", 274, 3, 1, orientation))
    entries.sort(key=lambda entry: struct.unpack_from("<H", entry)[0])
    directory = struct.pack("<H", len(entries)) + b"".join(entries) + data[start + 2 + 12 * count:start + 6 + 12 * count]
    return data[:4] + struct.pack("<I", len(data)) + data[8:] + directory


@pytest.mark.parametrize("codec, damage, said", [
    (5, "zeroed", "LZWDecode: "), (5, "random", "Using code not yet in table"),
    (32773, "zeroed", "PackBitsDecode: Not enough data for scanline")])
def test_a_compressed_tiff_whose_data_does_not_decode_is_refused(tmp_path, capfd, codec, damage, said):
    """OpenCV's TIFF reader left the rows of a damaged LZW or PackBits strip black (92 of 256 rows
    here), or as the decoder made them up, without a word; libtiff under Pillow says what is wrong,
    and nothing of it reaches stderr. A whole file of each codec reads as OpenCV reads it."""
    pixels = cv2.resize(RNG.integers(0, 256, (16, 16, 3), dtype=np.uint8), (256, 256))
    data = opencv_bytes(pixels, ".tif", [cv2.IMWRITE_TIFF_COMPRESSION, codec])
    assert np.array_equal(read(tmp_path, "whole.tif", data)[0], imread_color(data))
    third = len(data) // 3
    middle = bytes(third) if damage == "zeroed" else np.random.default_rng(1).integers(0, 256, third, np.uint8).tobytes()
    damaged = data[:third] + middle + data[2 * third:]
    assert imread_color(damaged) is not None  # what OpenCV alone made of it
    reason = refused(tmp_path, "damaged.tif", damaged)  # libtiff's words, as this one says them
    assert reason.startswith("corrupt TIFF: its compressed data cannot be decoded (libtiff: ") and said in reason
    assert reason.endswith("); the rows it holds would be made up")
    assert capfd.readouterr().err == ""


def test_32_bit_integer_is_refused(tmp_path):
    data = pillow_bytes(Image.fromarray(RNG.integers(0, 70000, (4, 4)).astype(np.int32)), "TIFF")
    assert refused(tmp_path, "int32.tif", data) == \
        "unsupported sample type int32 (unsigned integers of up to 16 bits and 32- or 64-bit floats are read)"


def tiff_field(data: bytes, tag: int, value: int) -> bytes:
    """A little-endian TIFF with the first directory's `tag` (a SHORT or LONG held in its entry) set to `value`."""
    start = struct.unpack_from("<I", data, 4)[0]
    for at in range(start + 2, start + 2 + 12 * struct.unpack_from("<H", data, start)[0], 12):
        if struct.unpack_from("<H", data, at)[0] == tag:
            kind = struct.unpack_from("<H", data, at + 2)[0]
            return data[:at + 8] + struct.pack("<H2x" if kind == 3 else "<I", value) + data[at + 12:]
    raise AssertionError(f"no tag {tag}")


def test_one_channel_64_bit_float_tiff_is_read_as_float_samples_are(tmp_path):
    """Neither Pillow nor IMREAD_COLOR reads it (OpenCV reads 1-channel floats in grayscale only):
    it was refused as "corrupt or unsupported", while a 3-channel one was read."""
    values = RNG.random((6, 5))
    values[0, 0], values[0, 1] = 0.0, 1.0
    data = opencv_bytes(values, ".tif")  # cv2.imwrite('f64.tif', np.random.rand(64, 64)) writes this
    pixels, notes = read(tmp_path, "f64.tif", data)
    assert np.array_equal(pixels, np.dstack([np.rint(values * 255).astype(np.uint8)] * 3))
    assert notes == ["grayscale repeated to 3 channels", "64-bit float in [0, 1] scaled by 255 to 8-bit"]
    hdr = np.array([[-20.0, 0.4, 1.0, 127.6], [254.5, 300.0, np.nan, np.inf]])
    pixels, notes = read(tmp_path, "hdr64.tif", opencv_bytes(hdr, ".tif"))
    assert pixels[..., 0].tolist() == [[0, 0, 1, 128], [254, 255, 0, 255]]
    assert notes == ["grayscale repeated to 3 channels", "64-bit float clipped to [0, 255]"]


def test_a_tiff_pillow_cannot_open_is_size_checked_before_decoding(tmp_path, no_decoding):
    """libtiff allocates the size a 64-bit float TIFF declares (2**30 pixels of 3 x 8 bytes at most):
    the size comes from its first directory, as Pillow's header gives it for other TIFFs."""
    data = opencv_bytes(RNG.random((6, 5, 3)), ".tif")
    bomb = tiff_field(tiff_field(data, 256, 30000), 257, 20000)
    assert refused(tmp_path, "bomb.tif", bomb) == \
        f"30000 x 20000 = 600000000 pixels exceeds the limit of {DEFAULT_MAX_PIXELS} (raise max_pixels to allow it)"
    assert refused(tmp_path, "f64.tif", opencv_bytes(RNG.random((6, 5)), ".tif"), max_pixels=29) == \
        "5 x 6 = 30 pixels exceeds the limit of 29 (raise max_pixels to allow it)"
    assert refused(tmp_path, "cut.tif", data[:struct.unpack_from("<I", data, 4)[0]]).startswith(
        "corrupt TIFF header: its first directory (at byte ")
    assert refused(tmp_path, "nosize.tif", tiff_field(data, 257, 0)) == \
        "corrupt TIFF header: its first directory declares no image size (5 x 0)"


@pytest.mark.parametrize("dtype", [np.float16, np.uint32, np.int64])
def test_a_sample_type_neither_library_reads_is_named_not_called_corrupt(tmp_path, dtype):
    tifffile = pytest.importorskip("tifffile")  # installed with scikit-image

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.full((8, 8), 1, dtype))
    assert refused(tmp_path, "odd.tif", buffer.getvalue()) == (f"unsupported sample type {np.dtype(dtype).name} "
                                                               "(unsigned integers of up to 16 bits and 32- or "
                                                               "64-bit floats are read)")


def test_exif_orientation_of_a_tiff_pillow_cannot_open(tmp_path):
    """OpenCV turns it upright, as it does the TIFFs Pillow reads; the note says so."""
    tifffile = pytest.importorskip("tifffile")

    values = RNG.random((5, 6))
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, values, extratags=[(0x0112, 3, 1, 6, True)])
    pixels, notes = read(tmp_path, "f64.tif", buffer.getvalue())
    assert np.array_equal(pixels[..., 0], np.rot90(np.rint(values * 255), -1).astype(np.uint8))
    assert notes == ["grayscale repeated to 3 channels", "EXIF orientation 6 applied",
                     "64-bit float in [0, 1] scaled by 255 to 8-bit"]


# Frames.

def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.fromarray(RNG.integers(0, 256, (9, 11, 3), dtype=np.uint8)).convert("P") for _ in range(12)]
    data = pillow_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=40)
    pixels, notes = read(tmp_path, "animated.gif", data)
    assert np.array_equal(pixels, np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))[..., ::-1])
    assert notes == ["animated GIF: first frame of 12", "palette image converted to RGB"]


def test_single_frame_gif(tmp_path):
    pixels, notes = read(tmp_path, "still.gif", pillow_bytes(Image.fromarray(RGB).convert("P"), "GIF"))
    assert pixels.shape == RGB.shape and notes == ["palette image converted to RGB"]


@pytest.mark.parametrize("fmt", ["WEBP", "PNG"])
def test_animated_webp_and_png(tmp_path, fmt):
    frames = [Image.fromarray(RNG.integers(0, 256, (9, 11, 3), dtype=np.uint8)) for _ in range(3)]
    data = pillow_bytes(frames[0], fmt, save_all=True, append_images=frames[1:], lossless=True)
    pixels, notes = read(tmp_path, "animated." + fmt.lower(), data)
    assert np.array_equal(pixels, np.asarray(frames[0])[..., ::-1])
    assert notes == [f"animated {fmt}: first frame of 3"]


def test_multi_page_tiff(tmp_path):
    pages = [Image.fromarray(RNG.integers(0, 256, (9, 11, 3), dtype=np.uint8)) for _ in range(2)]
    pixels, notes = read(tmp_path, "pages.tif", pillow_bytes(pages[0], "TIFF", save_all=True, append_images=pages[1:]))
    assert np.array_equal(pixels, np.asarray(pages[0])[..., ::-1])
    assert notes == ["multi-page TIFF: first frame of 2"]


# Orientation: OpenCV's TIFF reader applies it (which this pins); read_image for the others.

UPRIGHT = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
           4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
           7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}  # as PIL.ImageOps.exif_transpose


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF", "WEBP"])
def test_exif_orientation_is_applied(tmp_path, fmt):
    for orientation, method in UPRIGHT.items():
        exif = Image.Exif()
        exif[0x0112] = orientation
        data = pillow_bytes(Image.fromarray(RGB), fmt, exif=exif, **({"lossless": True} if fmt == "WEBP" else {}))
        stored = (cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
                  if fmt == "JPEG" else BGR)
        upright = np.asarray(Image.fromarray(stored).transpose(method)) if method is not None else stored
        pixels, notes = read(tmp_path, f"rotated.{fmt.lower()}", data)
        assert np.array_equal(pixels, upright), orientation
        assert notes == ([] if orientation == 1 else [f"EXIF orientation {orientation} applied"])
        if fmt != "WEBP":
            assert np.array_equal(pixels, imread_color(data))  # the article's reading already did it


def test_a_jpegs_orientation_after_an_xmp_segment_is_applied(tmp_path):
    """OpenCV reads the tag from a JPEG's first APP1 segment only: with an XMP segment first, it left
    the image on its side, which Pillow, viewers and the note ("applied") turn upright."""
    exif = Image.Exif()
    exif[0x0112] = 6
    data = pillow_bytes(Image.fromarray(RGB), "JPEG", exif=exif, quality=95)
    xmp = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta xmlns:x='adobe:ns:meta/'/>"
    data = data[:2] + b"\xff\xe1" + struct.pack(">H", len(xmp) + 2) + xmp + data[2:]
    stored = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    assert np.array_equal(imread_color(data), stored)  # OpenCV's own reading misses the tag
    pixels, notes = read(tmp_path, "xmp_first.jpg", data)
    assert np.array_equal(pixels, np.rot90(stored, -1)) and notes == ["EXIF orientation 6 applied"]


def test_a_pngs_orientation_in_imagemagicks_raw_profile_chunk_is_applied(tmp_path):
    """ImageMagick keeps a PNG's EXIF in a "Raw profile type exif" text chunk, which Pillow reads;
    the PNG was taken as upright (no eXIf chunk) and hashed on its side, without a note."""
    from PIL import PngImagePlugin

    exif = Image.Exif()
    exif[0x0112] = 6
    raw = exif.tobytes()
    info = PngImagePlugin.PngInfo()
    info.add_text("Raw profile type exif", f"\nexif\n{len(raw):8d}\n{raw.hex()}\n", zip=True)
    pixels, notes = read(tmp_path, "profile.png", pillow_bytes(Image.fromarray(RGB), "PNG", pnginfo=info))
    assert np.array_equal(pixels, np.rot90(BGR, -1)) and notes == ["EXIF orientation 6 applied"]


def test_an_orientation_tag_of_the_wrong_type_is_ignored_as_opencv_ignores_it(tmp_path):
    """A float 6.0 is no orientation (the tag is a SHORT): no note claims a rotation not made."""
    ifd = struct.pack("<H", 1) + struct.pack("<HHI", 0x0112, 11, 1) + struct.pack("<f", 6.0) + struct.pack("<I", 0)
    data = pillow_bytes(Image.fromarray(RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)), "JPEG",
                        exif=b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + ifd)
    pixels, notes = decode_image(data)
    assert notes == [] and np.array_equal(pixels, cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))


def test_exif_orientation_of_a_pillow_decoded_tiff(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    values = RNG.random((5, 6)).astype(np.float32)
    pixels, notes = read(tmp_path, "float.tif", pillow_bytes(Image.fromarray(values, "F"), "TIFF", exif=exif))
    assert np.array_equal(pixels[..., 0], np.rot90(np.rint(values.astype(np.float64) * 255), -1).astype(np.uint8))
    assert "EXIF orientation 6 applied" in notes


def test_exif_orientation_of_an_animated_webp(tmp_path):
    """Pillow decodes it and leaves the orientation to read_image."""
    frames = [Image.fromarray(RNG.integers(0, 256, (9, 11, 3), dtype=np.uint8)) for _ in range(2)]
    exif = Image.Exif()
    exif[0x0112] = 6
    data = pillow_bytes(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True, exif=exif)
    pixels, notes = read(tmp_path, "animated.webp", data)
    assert np.array_equal(pixels, np.rot90(np.asarray(frames[0])[..., ::-1], -1))
    assert notes == ["animated WEBP: first frame of 2", "EXIF orientation 6 applied"]


# Unreadable files: one line, the path and the reason.

def test_zero_byte_file(tmp_path):
    assert refused(tmp_path, "empty.jpg", b"") == "empty file (0 bytes)"


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageError, match=r"missing\.png: cannot read \(No such file or directory\)$"):
        read_image(str(tmp_path / "missing.png"))
    with pytest.raises(ImageError, match=r": not a regular file \(a directory\)"):
        read_image(str(tmp_path))


@pytest.mark.parametrize("options", [{}, {"progressive": True}])
def test_truncated_jpeg_is_refused(tmp_path, options):
    data = pillow_bytes(Image.fromarray(np.kron(RGB, np.ones((8, 8, 1), np.uint8))), "JPEG", **options)
    assert refused(tmp_path, "half.jpg", data[:len(data) // 2]) == \
        "truncated JPEG: the data ends before its end-of-image marker"


def test_truncated_png_is_refused(tmp_path):
    data = opencv_bytes(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8), ".png")
    assert refused(tmp_path, "half.png", data[:len(data) // 2]) == \
        "corrupt PNG: a chunk runs past the end of the file (truncated?)"


@pytest.mark.parametrize("damage", ["zeroed tail", "bad IDAT length"])
def test_a_damaged_png_that_pillow_would_read_is_refused(tmp_path, damage):
    """Pillow reads these two as pictures with black rows; libpng (OpenCV) refuses them."""
    y, x = np.mgrid[0:96, 0:128]  # smooth: deflate codes it in runs that survive the damage
    smooth = cv2.GaussianBlur(np.dstack([(x * 2) % 256, (y * 2) % 256, (x + y) % 256]).astype(np.uint8), (5, 5), 0)
    data = opencv_bytes(smooth, ".png")
    if damage == "zeroed tail":
        data = data[:len(data) // 2] + b"\0" * (len(data) - len(data) // 2)
    else:
        at = data.find(b"IDAT") - 4
        data = data[:at] + struct.pack(">I", 0x7FFFFFFF) + data[at + 4:]
    reason = refused(tmp_path, "damaged.png", data)
    assert reason.startswith(("corrupt PNG", "cannot decode PNG")), reason


def with_chunk(png: bytes, kind: bytes, payload: bytes, good_crc: bool = True) -> bytes:
    """`png` with one more chunk after IHDR, its checksum right or wrong."""
    crc = zlib.crc32(kind + payload) ^ (0 if good_crc else 1)
    return png[:33] + struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc) + png[33:]


def test_what_the_decoders_print_becomes_the_images_note_or_reason(tmp_path, capfd):
    """libpng and libjpeg write to fd 2 themselves: a line naming no file, in the middle of the
    progress bar. Their words go where the file is named instead, and nothing reaches stderr."""
    png = opencv_bytes(BGR, ".png")
    pixels, notes = read_image(write(tmp_path, "odd.png", with_chunk(png, b"tEXt", b"Comment\0hi", good_crc=False)))
    assert np.array_equal(pixels, BGR) and notes == ["libpng warning: tEXt: CRC error"]
    damaged = bytearray(png)
    at = png.find(b"IDAT")
    damaged[at + 4 + struct.unpack(">I", png[at - 4:at])[0]] ^= 0xFF  # the chunk's checksum
    assert refused(tmp_path, "bad.png", bytes(damaged)) == "corrupt PNG: IDAT: CRC error (libpng)"
    # A JPEG cut short with an end-of-image marker put back passes the marker check; libjpeg
    # fills the missing rows with gray and warns once.
    jpeg = opencv_bytes(RNG.integers(0, 256, (128, 128, 3), dtype=np.uint8), ".jpg")
    assert refused(tmp_path, "cut.jpg", jpeg[:len(jpeg) // 2] + b"\xff\xd9") == \
        "corrupt JPEG: part of its data cannot be decoded (libjpeg: premature end of data segment)"
    assert capfd.readouterr().err == ""


def float4_zstd() -> bytes:
    """A 4-channel float TIFF marked as Zstandard-compressed, which OpenCV's libtiff is built without
    (and Pillow reads no 4-channel floats): neither library reads it."""
    data = opencv_bytes(np.full((8, 8, 4), 0.5, np.float32), ".tif", [cv2.IMWRITE_TIFF_COMPRESSION, 1])
    return tiff_field(data, 259, 50000)


def opencv_failures() -> dict[str, bytes]:
    """TIFFs that OpenCV fails on (f64.tif with IMREAD_COLOR, as it was read), logging a warning and
    the error it caught (several lines). f64.tif is read in grayscale; taller.tif, whose height was
    patched past its data, is refused (Pillow would fill the rows it lacks with black)."""
    tiff = pillow_bytes(Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)), "TIFF")
    files = {"cut.tif": tiff[:len(tiff) // 2], "taller.tif": tiff_field(tiff, 257, 256),
             "f64.tif": opencv_bytes(RNG.random((6, 5)), ".tif"),
             "float4.tif": float4_zstd()}
    with contextlib.suppress(ImportError):
        import tifffile

        for dtype in (np.float16, np.uint32):
            buffer = io.BytesIO()
            tifffile.imwrite(buffer, np.full((8, 8), 1, dtype))
            files[f"{np.dtype(dtype).name}.tif"] = buffer.getvalue()
    return files


def test_opencvs_own_log_is_silenced_while_it_decodes(tmp_path, capfd):
    """OpenCV logs a failed decode itself ("[ WARN:0@0.150] global grfmt_tiff.cpp:832 ...", "[ERROR:...]
    imdecode_ ..."): lines naming no file, past --quiet. The reason is said by the ImageError or a
    note; OpenCV's log level is put back after each decode, whether it failed or not."""
    level = cv2.getLogLevel()
    said = {}
    for name, data in opencv_failures().items():
        try:
            said[name] = read_image(write(tmp_path, name, data))[1]
        except ImageError as exc:
            said[name] = str(exc)
        assert cv2.getLogLevel() == level
    assert capfd.readouterr().err == ""
    assert re.search(r"cut\.tif: cannot decode TIFF: image file is truncated \(\d+ bytes not processed\)$",
                     said["cut.tif"])
    assert said["float4.tif"].endswith("float4.tif: corrupt or unsupported TIFF file: neither OpenCV nor Pillow can "
                                       "read it")
    assert said["taller.tif"].endswith("taller.tif: corrupt TIFF: its strips hold 4,096 of the 16,384 pixels its "
                                       "size declares (64 x 256); the rest would be made up")
    with images._decoder_lines():  # where no decode is made, OpenCV's level is left alone
        assert cv2.getLogLevel() == level


def test_a_damaged_overlay_file_is_read_without_opencvs_log(tmp_path, capfd):
    """An overlay's source is decoded by the transforms, not as an image of the run: a damaged one is
    refused in one line (overlay_problem), and OpenCV's log of its failed decode stays off stderr."""
    from harness.transforms.overlays import overlay_problem

    cut = tmp_path / "cut.tif"
    cut.write_bytes(opencv_failures()["cut.tif"])
    assert "cannot read overlay image" in overlay_problem(str(cut))
    assert capfd.readouterr().err == ""


def test_a_run_and_an_audits_workers_print_no_opencv_log(tmp_path):
    """As a shell sees it: `run --quiet` on a truncated TIFF prints its one error line, and `leaks
    --workers 2`, whose worker processes decode the images, its one note; nothing else."""
    test = tmp_path / "test"
    test.mkdir()
    failures = opencv_failures()
    for name, data in failures.items():
        (test / name).write_bytes(data)
    train = tmp_path / "train"
    train.mkdir()
    for seed in range(2):
        cv2.imwrite(str(train / f"scene{seed}.png"), make_scene(seed))
    cut = test / "cut.tif"
    done = subprocess.run([sys.executable, "-m", "harness", "run", "configs/collection.yaml", "--hashers", "aHash",
                           "--images", str(cut), "--out", str(tmp_path / "out"), "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and re.fullmatch(
        rf"error: none of the 1 images could be read; first: {re.escape(str(cut))}: cannot decode TIFF: image file "
        r"is truncated \(\d+ bytes not processed\)\n", done.stderr), done.stderr
    done = subprocess.run([sys.executable, "-m", "harness", "leaks", "--train", str(train), "--test", str(test),
                           "--hashers", "aHash", "--threshold", "4", "--workers", "2", "--no-cache",
                           "--out", str(tmp_path / "audit"), "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    refused = len(failures) - 1  # all but f64.tif
    assert done.returncode == 1 and done.stderr == (f"note: {refused} files or folders could not be read, so the "
                                                    "audit did not compare them; see errors.csv\n"), done.stderr


def test_other_output_meanwhile_still_reaches_stderr(capfd):
    with images._decoder_lines() as said:
        os.write(2, b"libpng warning: iCCP: known incorrect sRGB profile\nanother thread's line\n\rbar 50%")
    assert said == ["libpng warning: iCCP: known incorrect sRGB profile"]
    assert capfd.readouterr().err == "another thread's line\n\rbar 50%"
    with images._decoder_lines() as said:  # the file is emptied after each use
        pass
    assert said == [] and capfd.readouterr().err == ""
    with images._decoder_lines() as said:  # a warning per bad chunk: each kind once; all the rest passed on
        os.write(2, b"libpng warning: tEXt: CRC error\n" * 20_000 + b"x" * 200_000)
    assert said == ["libpng warning: tEXt: CRC error"] and capfd.readouterr().err == "x" * 200_000


def test_a_closed_stderr_pipe_does_not_fail_a_decode():
    read_end, write_end = os.pipe()
    os.close(read_end)
    saved = os.dup(2)
    os.dup2(write_end, 2)
    try:
        with images._decoder_lines() as said:
            os.write(2, b"a line nobody reads\n")
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(write_end)
    assert said == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="forked workers only")
def test_a_forked_worker_does_not_share_its_parents_file_for_them():
    """Forked workers decode at the same time as each other: each keeps its own words."""
    with images._decoder_lines():
        pass  # the parent's file exists now, and a fork inherits it

    def own_words_each_time(who: bytes) -> bool:
        for _ in range(300):
            with images._decoder_lines() as said:
                os.write(2, b"libpng warning: " + who + b"\n")
            if said != ["libpng warning: " + who.decode()]:
                return False
        return True

    pid = os.fork()
    if pid == 0:
        os._exit(0 if own_words_each_time(b"child") else 1)
    parent_ok = own_words_each_time(b"parent")
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0 and parent_ok


def test_an_image_neither_library_reads_is_named_by_its_format():
    """Not "unknown format" nor "the file holds text, starting 'II*'": its signature says what it is."""
    for data, name in ((float4_zstd(), "TIFF"), (b"RIFF\x10\x00\x00\x00WEBP", "WebP")):
        with pytest.raises(ImageError, match=f"corrupt or unsupported {name} file"):
            decode_image(data)
    with pytest.raises(ImageError, match="corrupt TIFF header"):
        decode_image(b"II*\x00\x08\x00")


def test_truncated_gif_is_refused(tmp_path):
    data = pillow_bytes(Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).convert("P"), "GIF")
    assert refused(tmp_path, "half.gif", data[:len(data) // 2]).startswith("cannot decode GIF: ")


def test_html_saved_as_jpg(tmp_path):
    reason = refused(tmp_path, "photo.jpg", b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head></html>")
    assert reason == "not an image: the file holds text, starting '<!DOCTYPE html> <html><head><title>404 N'"


def test_svg(tmp_path):
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect width="4" height="4"/></svg>'
    assert refused(tmp_path, "vector.svg", svg).endswith("(SVG and other vector formats are not read)")


def test_random_bytes(tmp_path):
    data = bytes([0x00, 0x9f, 0x13, 0x37]) + RNG.integers(0, 256, 400, dtype=np.uint8).tobytes()
    assert refused(tmp_path, "noise.png", data) == "not an image: unknown format (first bytes 00 9f 13 37 " \
        + data[4:8].hex(" ") + ")"


def test_postscript_is_not_handed_to_ghostscript(tmp_path):
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 4 4\nnewpath 0 0 moveto 4 4 lineto stroke\n"
    assert refused(tmp_path, "drawing.jpg", eps).startswith("not an image: the file holds text")


# Decompression bombs: refused from the header, before decoding.

def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with next to no pixel data: a decompression bomb's shape."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@pytest.fixture
def no_decoding(monkeypatch):
    def fail(*args):
        raise AssertionError("pixels were decoded")
    monkeypatch.setattr(images, "_decode_opencv", fail)
    monkeypatch.setattr(images, "_decode_pillow", fail)


def test_bomb_is_refused_before_decoding(tmp_path, no_decoding):
    limit = Image.MAX_IMAGE_PIXELS
    assert refused(tmp_path, "bomb.png", png_header(30000, 20000)) == \
        f"30000 x 20000 = 600000000 pixels exceeds the limit of {DEFAULT_MAX_PIXELS} (raise max_pixels to allow it)"
    assert refused(tmp_path, "big.png", png_header(1000, 1000), max_pixels=999_999).startswith("1000 x 1000 =")
    assert Image.MAX_IMAGE_PIXELS == limit  # Pillow's own setting is left as it was


def test_a_radiance_bomb_is_refused_from_its_size_line(tmp_path, no_decoding):
    """Pillow does not read HDR; OpenCV would decode 14000 x 14000 float pixels (gigabytes) first."""
    bomb = b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 14000 +X 14000\n" + b"\x02\x02" * 100
    assert refused(tmp_path, "bomb.hdr", bomb).startswith("14000 x 14000 = 196000000 pixels exceeds the limit")
    assert refused(tmp_path, "odd.hdr", b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\nno size\n") == \
        "corrupt Radiance HDR header: no size line"
    small = cv2.imencode(".hdr", np.full((6, 9, 3), 0.5, np.float32))[1].tobytes()
    assert images._radiance_size(small) == (9, 6)


def test_a_jpeg_whose_data_cannot_fill_its_declared_size_is_refused_before_decoding(tmp_path, no_decoding):
    """A few KB declaring 13000 x 13000: OpenCV decodes it as gray, 6 GB later. A Huffman JPEG spends
    a bit at least on every 8x8 block, so its bytes bound its size."""
    data = bytearray(opencv_bytes(np.full((96, 128, 3), 90, np.uint8), ".jpg"))
    frame = data.find(b"\xff\xc0")
    data[frame + 5:frame + 9] = struct.pack(">HH", 13000, 13000)
    assert refused(tmp_path, "liar.jpg", bytes(data)) == \
        f"corrupt JPEG: {len(data)} bytes cannot hold the 13000 x 13000 pixels its header declares"


@pytest.mark.parametrize("progressive", [0, 1])
@pytest.mark.parametrize("shape", [(2000, 2000), (2000, 2000, 3)])
def test_the_smallest_honest_jpeg_is_far_from_that_bound(progressive, shape):
    from harness.images import _jpeg_too_short

    flat = opencv_bytes(np.full(shape, 128, np.uint8), ".jpg",
                        [cv2.IMWRITE_JPEG_QUALITY, 5, cv2.IMWRITE_JPEG_PROGRESSIVE, progressive])
    assert not _jpeg_too_short(flat, 2000, 2000)
    assert len(flat) * 2048 > 4 * 2000 * 2000  # four times the bytes the check asks for, at the least


def test_jpeg2000_is_read_by_pillow_and_a_damaged_one_is_a_reason_not_a_crash(tmp_path):
    """OpenCV 4.10's JPEG 2000 decoder kills the process on some truncated files: a subprocess
    here, so that the old behaviour fails the test instead of the test run."""
    y, x = np.mgrid[0:96, 0:128]
    image = cv2.GaussianBlur(np.dstack([(x * 2) % 256, (y * 2) % 256, (x + y) % 256]).astype(np.uint8), (5, 5), 0)
    data = cv2.imencode(".jp2", image)[1].tobytes()
    (tmp_path / "good.jp2").write_bytes(data)
    assert np.array_equal(read_image(str(tmp_path / "good.jp2"))[0],
                          cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))
    code = ("import sys\nfrom harness.errors import ImageError\nfrom harness.images import decode_image\n"
            "for n in (100, 112, 149, 200, len(sys.argv[1]) // 2):\n"
            "    try:\n        decode_image(open(sys.argv[1], 'rb').read()[:n])\n    except ImageError as e:\n"
            "        print(e)\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "good.jp2")], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-500:]
    assert len(done.stdout.splitlines()) == 5, done.stdout


def test_max_pixels_above_pillows_limit_is_honoured(tmp_path, monkeypatch):
    def decoded(*args):
        raise ImageError("reached decoding")
    monkeypatch.setattr(images, "_decode_opencv", lambda data, flags: (None, []))
    monkeypatch.setattr(images, "_decode_pillow", decoded)
    assert refused(tmp_path, "huge.png", png_header(30000, 20000), max_pixels=None) == "reached decoding"


def test_max_pixels_on_a_real_image(tmp_path):
    data = opencv_bytes(BGR, ".png")
    assert refused(tmp_path, "card.png", data, max_pixels=16 * 12 - 1) == \
        "16 x 12 = 192 pixels exceeds the limit of 191 (raise max_pixels to allow it)"
    assert read(tmp_path, "card.png", data, max_pixels=16 * 12)[0].shape == (12, 16, 3)
    assert read(tmp_path, "card.png", data, max_pixels=None)[0].shape == (12, 16, 3)


# The JPEG truncation check follows the marker chain.

def jpeg_variants() -> dict[str, bytes]:
    photo = np.kron(RGB, np.ones((4, 4, 1), np.uint8))
    plain = opencv_bytes(photo, ".jpg")
    comment = b"look: \xff\xd9 \xff\xda inside a comment"
    return {
        "baseline": plain,
        "progressive": opencv_bytes(photo, ".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
        "restart markers": opencv_bytes(photo, ".jpg", [cv2.IMWRITE_JPEG_RST_INTERVAL, 1]),
        "markers in a comment": plain[:2] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + plain[2:],
    }


@pytest.mark.parametrize("name", list(jpeg_variants()))
def test_every_strict_prefix_of_a_jpeg_is_truncated(name):
    data = jpeg_variants()[name]
    assert not images._jpeg_truncated(data)
    assert all(images._jpeg_truncated(data[:end]) for end in range(2, len(data)))


def test_data_after_the_end_of_image_is_fine(tmp_path):
    """A motion photo appends a video after the JPEG: it may hold any bytes, markers included."""
    data = jpeg_variants()["baseline"]
    trailer = b"\xff\xda\x00\x08ftypmp42" + RNG.integers(0, 256, 300, dtype=np.uint8).tobytes()
    pixels, notes = read(tmp_path, "motion.jpg", data + trailer)
    assert np.array_equal(pixels, imread_color(data)) and notes == []


# load_source and SourceImage.

def test_load_source_records_the_notes(tmp_path):
    path = write(tmp_path, "deep gray.png", opencv_bytes(RNG.integers(0, 65536, (5, 6), dtype=np.uint16), ".png"))
    image = load_source(path)
    assert isinstance(image, SourceImage) and image.name == "deep gray" and image.origin == path
    assert image.pixels.shape == (5, 6, 3) and image.id == images.image_id(image.pixels)
    assert image.notes == ("grayscale repeated to 3 channels", "16-bit scaled to 8-bit (>> 8)")
    with pytest.raises(ImageError, match="exceeds the limit of 10"):
        load_source(path, max_pixels=10)


def test_builtin_notes():
    assert load_source("builtin:camera").notes == ("grayscale repeated to 3 channels",)
    assert load_source("builtin:astronaut").notes == ()
    assert SourceImage("a", "b", "c", BGR).notes == ()


# Properties: whatever the bytes, a valid image or an ImageError.

def check_contract(data: bytes) -> None:
    try:
        pixels, notes = decode_image(data)
    except ImageError as exc:
        assert "\n" not in str(exc)
        return
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3 and min(pixels.shape) > 0
    assert all(isinstance(note, str) for note in notes)


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(st.binary(max_size=2048))
def test_random_bytes_never_crash(data):
    check_contract(data)


@PROPERTY
@given(st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"II*\x00", b"MM\x00*", b"BM",
                        b"RIFF\x00\x00\x00\x00WEBP", b"P6\n", b"<html>"]),
       st.binary(max_size=512))
def test_random_bytes_behind_a_real_signature_never_crash(signature, data):
    check_contract(signature + data)


SAMPLE_TYPES = [np.uint8, np.uint16, np.int8, np.int16, np.int32, np.float32, np.float64]


@st.composite
def encoded_arrays(draw) -> bytes:
    ext = draw(st.sampled_from([".png", ".tif"]))
    dtype = draw(st.sampled_from([np.uint8, np.uint16] if ext == ".png" else SAMPLE_TYPES))
    shape = (draw(st.integers(1, 9)), draw(st.integers(1, 9)), draw(st.sampled_from([1, 3, 4])))
    elements = st.floats(-2, 300, width=32) if np.dtype(dtype).kind == "f" else None
    pixels = draw(hnp.arrays(dtype, shape, elements=elements))
    ok, encoded = cv2.imencode(ext, pixels)
    assert ok
    return encoded.tobytes()


@PROPERTY
@given(encoded_arrays())
def test_random_arrays_of_any_type_never_crash(data):
    check_contract(data)


ENCODINGS = [opencv_bytes(BGR, ".png"), opencv_bytes(BGR, ".jpg"), opencv_bytes(BGR, ".tif"),
             opencv_bytes(BGR, ".webp"), pillow_bytes(Image.fromarray(RGB).convert("P"), "GIF"),
             opencv_bytes(BGR, ".bmp")]


@PROPERTY
@given(st.sampled_from(ENCODINGS), st.data())
def test_truncated_or_damaged_files_never_crash(data, draw):
    data = data[:draw.draw(st.integers(1, len(data)))]
    for position in draw.draw(st.lists(st.integers(0, len(data) - 1), max_size=4)):
        data = data[:position] + bytes([draw.draw(st.integers(0, 255))]) + data[position + 1:]
    check_contract(data)


def test_work_size_reads_a_header_and_never_waits(tmp_path):
    """The size that orders the work: pixels from the header, else the file's bytes; 0 for what
    cannot be read, a FIFO included (opened without waiting for a writer)."""
    from harness.images import work_size

    png = tmp_path / "a.png"
    cv2.imwrite(str(png), np.zeros((30, 50, 3), np.uint8))
    assert work_size(str(png)) == 1500
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    assert work_size(str(text)) == len("not an image")
    assert work_size(str(tmp_path / "missing.png")) == 0
    # A built-in image is sized as scikit-image's photographs mostly are, without decoding it; at 0,
    # the 18 of builtin:skimage went to one worker as one job.
    assert work_size("builtin:astronaut") == images.BUILTIN_PIXELS == 512 * 512
    from harness.imagework import ImageJob
    from harness.runner import TOGETHER_MOST, sent_together

    jobs = [(ImageJob(k, "builtin:coffee", None, None), work_size("builtin:coffee")) for k in range(TOGETHER_MOST)]
    assert [len(sent) for sent in sent_together(jobs)] == [2] * (TOGETHER_MOST // 2)
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "fifo.jpg"
        os.mkfifo(fifo)
        assert work_size(str(fifo)) == 0


def test_a_folders_files_without_an_image_extension_are_a_note(tmp_path):
    """`run` lists a folder's image files by name; the others are counted in a note, not left out
    in silence (hidden files stay skipped without a word), and a folder of only such files says so."""
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "b_noext").write_bytes((tmp_path / "a.png").read_bytes())
    (tmp_path / ".hidden").write_bytes(b"x")
    sources, notes = images.resolve_sources((str(tmp_path),), None, "c.yaml")
    assert sources == [str(tmp_path / "a.png")]
    assert notes == [f"1 file without an image extension in {tmp_path} was not listed (e.g. {tmp_path / 'b_noext'}); "
                     "name it explicitly or rename it"]
    os.remove(tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"no image files in directory .* \(1 file without an image extension in"):
        images.expand_source(str(tmp_path))


def test_a_file_and_a_link_to_it_are_read_once_by_the_files_own_path(tmp_path):
    """A link listed before the file it points to (odd/ sorts before photos/) took the file's place:
    the image was named after the link, and the file's own path was in no table."""
    from harness.images import resolve_sources

    (tmp_path / "odd").mkdir()
    (tmp_path / "photos").mkdir()
    cv2.imwrite(str(tmp_path / "photos" / "baboon.png"), BGR)
    cv2.imwrite(str(tmp_path / "photos" / "cat.png"), BGR[::-1])
    os.symlink("../photos/baboon.png", tmp_path / "odd" / "link.png")
    folder = str(tmp_path)
    sources, notes = resolve_sources((folder, f"{folder}/photos/cat.png"), None, "c.yaml")
    assert sources == [f"{folder}/photos/baboon.png", f"{folder}/photos/cat.png"]  # the link's place, the file's path
    assert notes == []
    sources, _ = resolve_sources((f"{folder}/odd/link.png", f"{folder}/odd/link.png"), None, "c.yaml")
    assert sources == [f"{folder}/odd/link.png"]  # only the link given: the link


def test_links_to_folders_are_not_followed_and_a_note_counts_them(tmp_path):
    """A folder's links to folders are left out (a link loop must not make a listing endless), but
    said: a split folder linking to another folder's images must not look audited. A link to a file
    is listed (read as the file it points to); a hidden link is skipped without a word."""
    outside = tmp_path / "outside"
    outside.mkdir()
    cv2.imwrite(str(outside / "o.png"), np.zeros((8, 8, 3), np.uint8))
    folder = tmp_path / "photos"
    (folder / "cat").mkdir(parents=True)
    cv2.imwrite(str(folder / "cat" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    os.symlink(outside, folder / "linked")
    os.symlink(outside, folder / "cat" / "more")
    os.symlink(outside, folder / ".hidden_link")
    os.symlink(outside / "o.png", folder / "cat" / "file_link.png")
    sources, notes = images.resolve_sources((str(folder),), None, "c.yaml")
    assert sources == [str(folder / "cat" / "a.png"), str(folder / "cat" / "file_link.png")]
    assert notes == [f"listing {folder}, 2 links to folders were not followed, so their files are not listed (e.g. "
                     f"{folder / 'cat' / 'more'}); give the folders as entries to include their files"]
    # A glob says so for the links its pattern could enter, and only those.
    sources, notes = images.resolve_sources((f"{folder}/*/*.png",), None, "c.yaml")
    assert sources == [str(folder / "cat" / "a.png"), str(folder / "cat" / "file_link.png")]
    assert notes == [f"listing {folder}/*/*.png, 1 link to a folder was not followed, so its files are not listed "
                     f"(e.g. {folder / 'linked'}); give the folder as an entry to include its files"]
    assert images.resolve_sources((f"{folder}/cat/*.png",), None, "c.yaml")[1] == []
    # The link given as an entry is listed; a folder holding nothing but links to folders says why it is empty.
    assert images.resolve_sources((str(folder / "linked"),), None, "c.yaml")[0] == [str(folder / "linked" / "o.png")]
    # Given with the folder (the link itself, its target, or a folder above the target), a link's
    # files are listed after all, and the note does not count it.
    for given in (folder / "linked", outside, tmp_path):
        sources, notes = images.resolve_sources((str(folder), str(given)), None, "c.yaml")
        assert os.path.realpath(sources[-1]) == str(outside / "o.png") and notes == []
    # A link to a folder its own entry lists is not counted either; one to a hidden folder is.
    (tmp_path / ".hidden").mkdir()
    os.symlink(tmp_path / ".hidden", tmp_path / "unhidden")
    assert images.resolve_sources((str(tmp_path),), None, "c.yaml")[1] == [
        f"listing {tmp_path}, 1 link to a folder was not followed, so its files are not listed (e.g. "
        f"{tmp_path / 'unhidden'}); give the folder as an entry to include its files"]
    only_links = tmp_path / "only_links"
    only_links.mkdir()
    os.symlink(outside, only_links / "linked")
    with pytest.raises(ValueError, match=r"no image files in directory .* \(listing .*, 1 link to a folder was not"):
        images.expand_source(str(only_links))


def test_one_file_reached_by_two_paths_counts_once_before_the_limit(tmp_path):
    """A folder and a link to it (or a file listed again) are one set of images: `limit` samples
    from three, not from six of which three are the same files."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for k in range(3):
        cv2.imwrite(str(folder / f"{k}.png"), np.full((8, 8, 3), 40 * k, np.uint8))
    os.symlink(folder, tmp_path / "link")
    entries = (str(folder), str(tmp_path / "link"), str(folder / "1.png"))
    sources, notes = images.resolve_sources(entries, None, "c.yaml")
    assert sources == [str(folder / f"{k}.png") for k in range(3)] and notes == []
    sources, notes = images.resolve_sources(entries, None, "c.yaml", 2, 0)
    assert len(sources) == 2 and notes == ["limit: 2 of 3 images, sampled with seed 0"]


def test_decoding_leaves_no_file_open_at_exit(tmp_path):
    """The decoders' messages go to one temporary file kept for the process's life: it is closed at
    exit, not left to the garbage collector (a ResourceWarning in a session that shows them)."""
    path = tmp_path / "x.png"
    path.write_bytes(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    code = f"from harness.images import read_image\nread_image({str(path)!r})\n"
    done = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and "ResourceWarning" not in done.stderr, done.stderr


def _matches_by_every_split(pattern, parts):  # the former _matches: every way to split the path per `**`
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_matches_by_every_split(pattern[1:], parts[skip:]) for skip in range(len(parts)))
    import fnmatch

    return bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _matches_by_every_split(pattern[1:], parts[1:])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(["**", "*", "a", "b", "*.png", "?"]), max_size=6),
       st.lists(st.sampled_from(["a", "b", "x.png", "ab"]), max_size=6))
def test_a_glob_matches_as_every_split_of_the_path_would(pattern, parts):
    assert images._matches(tuple(pattern), tuple(parts)) == _matches_by_every_split(tuple(pattern), tuple(parts))


def test_repeated_double_stars_cost_each_step_once(tmp_path):
    """`**` repeated: was every way to split the path per `**` (8 of them over 25 folders took 33 s
    for one file); now each step of the pattern once. 40 of them over 60 folders would not end."""
    parts = tuple(["d"] * 60 + ["x.jpg"])
    assert not images._matches(("**",) * 40 + ("*.png",), parts)
    assert images._matches(("**",) * 40 + ("*.jpg",), parts)
    deep = tmp_path.joinpath(*["d"] * 25)
    deep.mkdir(parents=True)
    for k in range(3):
        (deep / f"{k}.jpg").write_bytes(b"")
    write_png = cv2.imwrite(str(tmp_path / "top.png"), make_scene(1, 16, 16))
    assert write_png
    found = images.expand_source(str(tmp_path) + "/" + "**/" * 12 + "*.png")
    assert [os.path.basename(path) for path in found] == ["top.png"]


def test_a_folder_nested_past_the_depth_limit_is_said_not_a_crash(tmp_path):
    """1,100 nested folders: was RecursionError from os.walk (exit 3); now the listing stops at
    MAX_FOLDER_DEPTH and says which folder it did not list."""
    (tmp_path / "d").mkdir()
    assert cv2.imwrite(str(tmp_path / "d" / "top.png"), make_scene(1, 16, 16))
    deep = tmp_path / "d"
    cwd = os.getcwd()
    try:  # one level at a time: a 2,200-character path at once is past what some calls take
        os.chdir(deep)
        for _ in range(1100):
            os.mkdir("a")
            os.chdir("a")
        assert cv2.imwrite("x.png", make_scene(2, 16, 16))
    finally:
        os.chdir(cwd)
    unlisted: list = []
    found = images._walk(str(deep), unlisted=unlisted)
    assert [os.path.basename(path) for path in found] == ["top.png"]
    (where, reason), = unlisted
    assert where == str(deep) + "/a" * (images.MAX_FOLDER_DEPTH + 1)
    assert reason == f"more than {images.MAX_FOLDER_DEPTH} folders deep, not listed"
    with pytest.raises(ValueError, match="more than 200 folders deep"):
        images._walk(str(deep))
    # Removed here, bottom up: Python 3.11's shutil.rmtree recurses a frame a folder, and pytest's
    # clean-up of old temporary folders would end in RecursionError.
    os.remove(os.path.join(str(deep), *["a"] * 1100, "x.png"))
    for depth in range(1100, 0, -1):
        os.rmdir(os.path.join(str(deep), *["a"] * depth))


def _chained_tiff(pages: int, loop: bool = False, order: str = "<") -> bytes:
    """A TIFF of `pages` one-pixel grey pages, each directory pointing at the next (the last at the
    first, with `loop`), little- or big-endian (`order`)."""
    def directory(following: int) -> bytes:
        tags = [(256, 4, 1, 1), (257, 4, 1, 1), (258, 4, 1, 8), (259, 4, 1, 1), (262, 4, 1, 1), (273, 4, 1, 4),
                (277, 4, 1, 1), (278, 4, 1, 1), (279, 4, 1, 1)]  # LONGs: the same bytes in either order
        return (struct.pack(order + "H", 9) + b"".join(struct.pack(order + "HHII", *tag) for tag in tags)
                + struct.pack(order + "I", following))
    size = 114
    last = 8 if loop else 0
    return (b"II*\x00" if order == "<" else b"MM\x00*") + struct.pack(order + "I", 8) + b"".join(
        directory(8 + (k + 1) * size if k < pages - 1 else last) for k in range(pages))


def test_a_tiffs_pages_are_counted_once_each_and_up_to_a_bound():
    """Pillow's n_frames seeks through the chain again for each page (200,000 pages: minutes a file,
    for a note); counted here each once, up to TIFF_PAGES_COUNTED, and a chain that loops ends."""
    buffer = io.BytesIO()
    frames = [Image.fromarray(np.full((8, 8, 3), 40 * k, np.uint8)) for k in range(5)]
    frames[0].save(buffer, format="TIFF", save_all=True, append_images=frames[1:])
    data = buffer.getvalue()
    assert images._tiff_pages(data) == Image.open(io.BytesIO(data)).n_frames == 5
    assert "multi-page TIFF: first frame of 5" in decode_image(data)[1]
    for order in ("<", ">"):
        chained = _chained_tiff(7, order=order)
        assert images._tiff_pages(chained) == Image.open(io.BytesIO(chained)).n_frames == 7, order
        assert images._tiff_pages(_chained_tiff(3, loop=True, order=order)) == 3
    _, notes = decode_image(_chained_tiff(30_000))
    assert "multi-page TIFF: first frame of 10,000 or more" in notes


@pytest.mark.skipif(not os.path.exists("/proc/self/environ"), reason="needs /proc (Linux)")
def test_a_file_that_reports_no_size_but_holds_data_is_refused_unread(tmp_path):
    """A link to /proc/self/pagemap (size 0, gigabytes to read) was read up to the byte limit, 1.4 GB
    for one file; a link to /proc/self/environ put its first bytes in errors.csv. An empty file is
    still the empty file it was."""
    link = tmp_path / "pm.jpg"
    link.symlink_to("/proc/self/environ")
    with pytest.raises(ImageError, match=r"reports a size of 0 bytes but holds data \(a file of /proc or /sys\?\); "
                                         r"not an image file$") as caught:
        read_image(str(link))
    assert "SHELL" not in str(caught.value) and "53 48" not in str(caught.value)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty file"):
        read_image(str(tmp_path / "empty.png"))


def test_pillows_log_of_a_damaged_tiff_stays_off_stderr(tmp_path):
    """A TIFF declaring 2,048 samples per pixel: Pillow logs "More samples per pixel than can be
    decoded" before it refuses the file, and with no logging configured Python printed that on
    stderr beside the file's one-line reason. (In a process of its own: pytest's log capture would
    take the record before Python's last resort could print it.)"""
    tags = [(256, 4, 1, 8), (257, 4, 1, 8), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1), (273, 4, 1, 200),
            (277, 3, 1, 2048), (278, 4, 1, 8), (279, 4, 1, 64)]
    data = (b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(tags))
            + b"".join(struct.pack("<HHII", *tag) for tag in tags) + struct.pack("<I", 0))
    (tmp_path / "t.tif").write_bytes(data + b"\x00" * (264 - len(data)))
    code = ("import sys\nfrom harness.images import read_image\nfrom harness.errors import ImageError\n"
            f"try:\n    read_image({str(tmp_path / 't.tif')!r})\nexcept ImageError as exc:\n    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "TIFF" in done.stdout and done.stderr == ""


@pytest.mark.parametrize("channels", [None, 3, 4])
def test_turning_an_image_upright_gives_the_views_pixels(channels):
    """OpenCV's flips and rotations (a NumPy transposed view made contiguous took five times as long on
    a 24-megapixel photograph) give exactly the EXIF views' pixels; read_image turns 8-bit samples."""
    dtype = np.uint8
    views = {2: lambda p: p[:, ::-1], 3: lambda p: p[::-1, ::-1], 4: lambda p: p[::-1], 5: lambda p: p.swapaxes(0, 1),
             6: lambda p: p.swapaxes(0, 1)[:, ::-1], 7: lambda p: p.swapaxes(0, 1)[::-1, ::-1],
             8: lambda p: p.swapaxes(0, 1)[::-1]}
    shape = (5, 7) if channels is None else (5, 7, channels)
    pixels = RNG.integers(0, 256, shape).astype(dtype)
    for orientation, view in views.items():
        upright = images._UPRIGHT[orientation](pixels)
        assert upright.dtype == pixels.dtype and np.array_equal(upright, view(pixels)), orientation


def test_a_folder_lists_composed_and_decomposed_names_in_one_order(tmp_path):
    """The same files named in Unicode's composed form (NFC: 'é') and decomposed (NFD: 'e' + U+0301,
    as macOS stores names) are listed in one order, so a run's seeded impostor sample, and its
    thresholds, do not follow how the file system stores names."""
    import unicodedata

    from harness.images import expand_source

    names = ["apple.png", "éclair.png", "egg.png", "zebra.png", "Zürich.png"]
    listed = {}
    for form in ("NFC", "NFD"):
        folder = tmp_path / form
        folder.mkdir()
        for name in names:
            (folder / unicodedata.normalize(form, name)).write_bytes(b"")
        listed[form] = [unicodedata.normalize("NFC", os.path.basename(path)) for path in expand_source(str(folder))]
    assert listed["NFC"] == listed["NFD"] == sorted(names)
