"""The published protocols as configs, and the config keys added for them."""

import glob
import os

import pytest

from harness.config import load_config, parse_config
from harness.errors import ConfigError

PROTOCOLS = sorted(glob.glob(os.path.join("configs", "protocols", "*.yaml")))
HASHERS = ["aHash", "pHash", "PDQ", "imagehash.dhash", "imagehash.phash"]


def test_the_four_protocols_are_there():
    names = {os.path.splitext(os.path.basename(p))[0] for p in PROTOCOLS}
    assert {"perception", "copydays", "content_blockchain", "augly_overlays"} <= names


@pytest.mark.parametrize("path", PROTOCOLS)
def test_protocol_config_is_valid_cited_and_comparable(path):
    config = load_config(path)
    name = os.path.splitext(os.path.basename(path))[0]
    assert config.name == name and config.output == f"reports/protocols/{name}"
    assert config.images == ("builtin:skimage",)
    assert [h.id for h in config.hashers] == HASHERS
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    assert "# Source:" in text, "a protocol cites where its parameters come from"


def test_copydays_ladders_are_the_published_ones():
    pairs = load_config("configs/protocols/copydays.yaml").pairs
    assert [p.value for p in pairs if p.family == "jpeg"] == [75, 50, 30, 20, 15, 10, 8, 5, 3]
    assert [p.value for p in pairs if p.family == "crop"] == [0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]


def test_perception_edits_and_compares_with_the_256_px_noop_file():
    # perception's BenchmarkImageDataset.transform edits the noop file (256 px, saved by cv2.imwrite at
    # JPEG quality 95), not the original, and saves each edit the same way.
    pairs = load_config("configs/protocols/perception.yaml").pairs
    saved = ("jpeg", (("quality", 95),))
    noop = (("resize_max", (("interpolation", "cubic"), ("size", 256))), saved)
    assert all(p.a == noop for p in pairs)
    edited = [p for p in pairs if p.family != "noop"]
    assert len(edited) == 10 and all(p.b[:2] == noop and len(p.b) == 4 and p.b[3] == saved for p in edited)
    jpeg = next(p for p in pairs if p.family == "jpeg95")
    # imgaug's JpegCompression(95): Pillow quality round(1 + 99 x (1 - 95/101)) = 7
    assert jpeg.b[2] == ("jpeg", (("quality", round(1 + 99 * (1 - 95 / 101))),))


BASE = {"images": ["builtin:camera"], "hashers": ["aHash", "pHash"],
        "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": "$value"}}, "values": [50]}]}


def test_new_keys_parse_and_are_recorded():
    config = parse_config({**BASE, "impostors": {"duplicates": [["camera", "coins"]], "exclude_below": {"pHash": 3}},
                           "detection": {"precision": [0.9, 0.999]}}, "x.yaml")
    assert config.impostors.duplicates == (("camera", "coins"),) and config.impostors.exclude_below == {"pHash": 3}
    assert config.detection.precision == (0.9, 0.999)
    resolved = config.reproducible()
    assert resolved["impostors"]["duplicates"] == [["camera", "coins"]]
    assert resolved["detection"]["precision"] == [0.9, 0.999]
    assert parse_config(resolved, "again.yaml").impostors == config.impostors
    assert parse_config(BASE, "x.yaml").detection.precision == ()


@pytest.mark.parametrize("section,problem", [
    ({"impostors": {"duplicates": [["camera"]]}}, "impostors.duplicates: group 0 lists 1 image"),
    ({"impostors": {"duplicates": ["camera"]}}, "impostors.duplicates: expected list[list[str]]"),
    ({"impostors": {"exclude_below": {"phash": 3}}},
     "impostors.exclude_below.phash: not a hasher of this config; did you mean 'pHash'?"),
    ({"impostors": {"exclude_below": {"pHash": "x"}}}, "impostors.exclude_below: pHash: expected a distance >= 0"),
    ({"detection": {"precision": [0.9, 0]}}, "detection.precision: each target must be in (0, 1]"),
    ({"detection": {"precision": 0.9}}, "detection.precision: expected list[float]"),
])
def test_bad_values_name_the_key(section, problem):
    with pytest.raises(ConfigError) as caught:
        parse_config({**BASE, **section}, "x.yaml")
    assert problem in str(caught.value)
