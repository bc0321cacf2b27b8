"""Config validation: every bad config stops before any work with one line naming file, key and problem."""

import re
import subprocess
import sys

import pytest
import yaml

from harness.config import load_config, parse_config
from harness.errors import ConfigError

GOOD = """
name: tiny
images: [builtin:astronaut]
hashers: [aHash, pHash]
sweeps:
  - family: identity
  - family: jpeg
    label: JPEG {value}
    b: {jpeg: {quality: $value}}
    values: {start: 10, stop: 30, step: 10}
"""


def parse(text, **kwargs):
    return parse_config(yaml.safe_load(text), "cfg.yaml", **kwargs)


def test_good_config_expands_sweeps():
    config = parse(GOOD)
    assert [(p.family, p.value, p.label) for p in config.pairs] == [
        ("identity", None, "identity"), ("jpeg", 10, "JPEG 10"), ("jpeg", 20, "JPEG 20"), ("jpeg", 30, "JPEG 30")]
    assert config.pairs[1].b == (("jpeg", (("quality", 10),)),)
    assert config.pairs[0].a == config.pairs[0].b == ()
    assert [h.id for h in config.hashers] == ["aHash", "pHash"]


def test_float_range_has_no_rounding_noise():
    config = parse(GOOD.replace("{start: 10, stop: 30, step: 10}", "{start: 0.1, stop: 0.3, step: 0.1}")
                   .replace("jpeg: {quality: $value}", "gamma: {gamma: $value}"))
    assert [p.value for p in config.pairs[1:]] == [0.1, 0.2, 0.3]


def test_a_range_keeps_small_steps_and_has_no_negative_zero():
    """Rounding to 10 decimals made 1e-11 steps zeros ("gamma 0.0 must be > 0", a value the config
    never gave), and -0.9 + 3 x 0.3 was the label "-0.0"."""
    small = parse(GOOD.replace("{start: 10, stop: 30, step: 10}", "{start: 1.0e-11, stop: 3.0e-11, step: 1.0e-11}")
                  .replace("jpeg: {quality: $value}", "gamma: {gamma: $value}"))
    assert [p.value for p in small.pairs[1:]] == [1e-11, 2e-11, 3e-11]
    signed = parse(GOOD.replace("{start: 10, stop: 30, step: 10}", "{start: -0.9, stop: 0.3, step: 0.3}")
                   .replace("jpeg: {quality: $value}", "hue: {degrees: $value}"))
    assert [p.value for p in signed.pairs[1:]] == [-0.9, -0.6, -0.3, 0.0, 0.3]  # in binary -0.9 + 3 x 0.3 is -1.1e-16
    assert [p.label.rpartition(" ")[2] for p in signed.pairs[1:]] == ["-0.9", "-0.6", "-0.3", "0.0", "0.3"]
    with pytest.raises(ConfigError, match=r"sweeps\[1\]\.values\.step: step 1e-13 makes values that are the same "):
        parse(GOOD.replace("{start: 10, stop: 30, step: 10}", "{start: 1000, stop: 1000.0000000000005, step: 1.0e-13}")
              .replace("jpeg: {quality: $value}", "hue: {degrees: $value}"))


@pytest.mark.parametrize("values", ["[1, 1.0, 2]", "[0.0, -0.0]", "[2, 2]"])
def test_a_value_listed_twice_as_the_same_number_is_refused(values):
    """1 and 1.0 made two identical pairs, each counted in the detection rates."""
    with pytest.raises(ConfigError, match="a value is listed twice"):
        parse(GOOD.replace("{start: 10, stop: 30, step: 10}", values).replace("jpeg: {quality: $value}",
                                                                                "gamma: {gamma: $value}"))
    from harness.config import _parse_values

    assert _parse_values(["1", 1], "cfg.yaml", "values") == ["1", 1]  # a text and a number: two values


def test_chain_and_side_a():
    config = parse(GOOD.replace("b: {jpeg: {quality: $value}}",
                                "a: grayscale\n    b: [{scale: {factor: 0.5}}, {jpeg: {quality: $value}}]"))
    pair = config.pairs[1]
    assert pair.a == (("grayscale", ()),)
    assert [name for name, _ in pair.b] == ["scale", "jpeg"]


def test_hasher_subset_and_id():
    config = parse(GOOD.replace("hashers: [aHash, pHash]", "hashers: [aHash, {name: pHash, id: p}]"),
                   hashers=["p"])
    assert [(h.id, h.name) for h in config.hashers] == [("p", "pHash")]


def test_an_id_that_is_its_own_hashers_name_in_another_case_is_accepted():
    """Only another hasher's name, or another id, in any case, is refused: 'phash' for pHash itself reads right."""
    config = parse(GOOD.replace("hashers: [aHash, pHash]", "hashers: [aHash, {name: pHash, id: phash}]"))
    assert [(h.id, h.name) for h in config.hashers] == [("aHash", "aHash"), ("phash", "pHash")]


def test_images_override_drops_fallback():
    config = parse(GOOD + "fallback_image: builtin:coffee\n", images=["x.png"])
    assert config.images == ("x.png",) and config.fallback_image is None


ODD_KERNELS = " | ".join(str(k) for k in range(1, 32, 2))

# (replace this, with this) -> the exact message
ERRORS = [
    ("name: tiny", "nmae: tiny", "cfg.yaml: nmae: unknown key; did you mean 'name'?"),
    ("{jpeg: {quality: $value}}", "{jpg: {quality: $value}}",
     "cfg.yaml: sweeps[1].b: unknown transform 'jpg'; did you mean 'jpeg'? (see `python -m harness list`)"),
    ("[aHash, pHash]", "[aHash, pHahs]",
     "cfg.yaml: hashers[1].name: unknown hasher 'pHahs'; did you mean 'pHash'? (see `python -m harness list`)"),
    ("stop: 30", "stop: 130",
     "cfg.yaml: sweeps[1].b.jpeg.quality: 110 must be <= 100 (the swept value 110)"),
    ("[aHash, pHash]", "[aHash, {name: RadialVarianceHash, sigma: 25}]",  # its cost grows with sigma squared
     "cfg.yaml: hashers[1].sigma: 25.0 must be <= 20"),
    ("[aHash, pHash]", "[aHash, {name: pHash, id: ''}]",
     "cfg.yaml: hashers[1].id: empty; a hasher's id names its column in every table"),
    ("[aHash, pHash]", "[aHash, {name: pHash, id: '  '}]",  # blank: a column no table can show by name
     "cfg.yaml: hashers[1].id: empty; a hasher's id names its column in every table"),
    ("label: JPEG {value}", "labels: [a, b, a]",  # two rows of every table nothing tells apart
     "cfg.yaml: sweeps[1].labels[2]: gives the pair label 'a' of sweeps[1].labels[0] again; each pair needs its own"),
    ("  - family: identity\n", "  - family: identity\n    b: {jpeg: {quality: high}}\n",
     "cfg.yaml: sweeps[0].b.jpeg.quality: expected int, got 'high'"),
    ("{jpeg: {quality: $value}}", "{jpeg: {qualty: $value}}",
     "cfg.yaml: sweeps[1].b.jpeg.qualty: unknown parameter of transform 'jpeg'; did you mean 'quality'?"),
    ("{start: 10, stop: 30, step: 10}", "[]",
     "cfg.yaml: sweeps[1].values: expected a non-empty list or {start, stop, step}, got []"),
    ("{start: 10, stop: 30, step: 10}", "{start: 30, stop: 10, step: 10}",
     "cfg.yaml: sweeps[1].values.step: step 10 never goes from 30 to 10"),
    ("  - family: identity\n", "  - family: jpeg\n",
     "cfg.yaml: sweeps[1].family: family 'jpeg' is declared twice"),
    ("  - family: identity\n", "  - family: ' '\n", "cfg.yaml: sweeps[0].family: expected a name, got ' '"),
    ("label: JPEG {value}", "label: JPEG {valu}",  # kept as it was, in every label of the family
     "cfg.yaml: sweeps[1].label: '{valu}' is no placeholder: {value} is the only one (the sweep's value in each "
     "pair's label)"),
    ("    values: {start: 10, stop: 30, step: 10}\n", "",
     "cfg.yaml: sweeps[1]: a parameter is '$value' but the sweep has no values"),
    ("[aHash, pHash]", "[aHash, aHash]", "cfg.yaml: hashers[1].id: two hashers are called 'aHash'; give one an `id`"),
    # Ids one letter's case apart: columns told apart by one letter (one hash-table file name on macOS, Windows).
    ("[aHash, pHash]", "[{name: aHash, id: Mean}, {name: imagehash.dhash, id: mean}]",
     "cfg.yaml: hashers[1].id: 'mean' and 'Mean' differ only in case; give one an `id` of its own"),
    ("[aHash, pHash]", "[aHash, {name: aHash, id: ahash}]",
     "cfg.yaml: hashers[1].id: 'ahash' and 'aHash' differ only in case; give one an `id` of its own"),
    # A column named as another hasher is read as that one's (here without pHash itself in the config).
    ("[aHash, pHash]", "[aHash, {name: imagehash.phash, id: pHash}]",
     "cfg.yaml: hashers[1].id: 'pHash' is the name of another hasher harness has; a column of imagehash.phash needs "
     "an id of its own"),
    ("[aHash, pHash]", "[aHash, {name: imagehash.dhash, id: phash}]",
     "cfg.yaml: hashers[1].id: 'phash' is the name of another hasher harness has, but for case (pHash); a column of "
     "imagehash.dhash needs an id of its own"),
    ("[aHash, pHash]", "[{name: ResNet50, weights: /no/such.h5}]",
     "cfg.yaml: hashers[0].weights: no file at '/no/such.h5' (use 'imagenet', null or a .h5 path)"),
    ("[aHash, pHash]", "[{name: ResNet50, batch_size: 0}]", "cfg.yaml: hashers[0].batch_size: 0 must be >= 1"),
    ("name: tiny", "name: tiny\nseed: yes", "cfg.yaml: seed: expected int, got True"),
    ("name: tiny", "name: tiny\nreport: false", "cfg.yaml: report: expected a mapping, got False"),  # was {}
    ("name: tiny", "name: tiny\nreport: 0", "cfg.yaml: report: expected a mapping, got 0"),
    ("name: tiny", "name: tiny\nreport: ''", "cfg.yaml: report: expected a mapping, got ''"),
    # One operating point twice made two rows of thresholds.csv and detection.csv under one key.
    ("name: tiny", "name: tiny\ndetection: {fpr: [0.1, 0.01, 0.10]}",
     "cfg.yaml: detection.fpr: a value is listed twice (fpr=0.1)"),
    ("name: tiny", "name: tiny\ndetection: {precision: [0.9, 1, 1.0]}",
     "cfg.yaml: detection.precision: a value is listed twice (precision=1)"),
    # a Literal's choices by type too: True == 1 and 3.0 == 3, but OpenCV refuses a bool or float kernel
    ("  - family: identity\n", "  - family: identity\n    b: {median_blur: {kernel: true}}\n",
     f"cfg.yaml: sweeps[0].b.median_blur.kernel: expected {ODD_KERNELS}, got True"),
    ("  - family: identity\n", "  - family: identity\n    b: {median_blur: {kernel: 3.0}}\n",
     f"cfg.yaml: sweeps[0].b.median_blur.kernel: expected {ODD_KERNELS}, got 3.0"),
    ("[aHash, pHash]", "[{name: BlockMeanHash, mode: true}]", "cfg.yaml: hashers[0].mode: expected 0 | 1, got True"),
    ("[aHash, pHash]", "[{name: BlockMeanHash, mode: 1.0}]", "cfg.yaml: hashers[0].mode: expected 0 | 1, got 1.0"),
    # keras.utils.set_random_seed takes 0..2**32 - 1; past it the run stopped on "a bug in harness"
    ("[aHash, pHash]", "[{name: MobileNetV3Small, weights: null, input_size: 64, seed: -1}]",
     "cfg.yaml: hashers[0].seed: -1 must be >= 0"),
    ("[aHash, pHash]", "[{name: keras, model: VGG16, weights: null, seed: 4294967296}]",
     "cfg.yaml: hashers[0].seed: 4294967296 must be <= 4294967295"),
    # an overlay that cannot be drawn stops before any work, as CNN weights do (every image failed)
    ("  - family: identity\n", "  - family: identity\n    b: {overlay_image: {source: /nonexistent.png}}\n",
     "cfg.yaml: sweeps[0].b.overlay_image.source: no file at '/nonexistent.png' (use 'builtin:logo' or an image "
     "file path)"),
    ("  - family: identity\n", "  - family: identity\n    b: {overlay_image: {source: 'builtin:astronaut'}}\n",
     "cfg.yaml: sweeps[0].b.overlay_image.source: unknown overlay 'builtin:astronaut'; the built-in one is "
     "'builtin:logo'"),
    ("  - family: identity\n", "  - family: identity\n    b: {border: {top: 0.1, color: [300, -5, 0]}}\n",
     "cfg.yaml: sweeps[0].b.border.color[0]: 300 must be <= 255"),
    ("  - family: identity\n", "  - family: identity\n    b: {text_watermark: {text: ''}}\n",
     "cfg.yaml: sweeps[0].b.text_watermark.text: '' draws nothing; give the words to draw"),
    ("images: [builtin:astronaut]", "images: [builtin:lena]", None),  # checked when run: see test_cli
]


@pytest.mark.parametrize("old,new,message", [e for e in ERRORS if e[2]])
def test_config_errors_name_file_key_and_problem(old, new, message):
    assert old in GOOD
    with pytest.raises(ConfigError) as caught:
        parse(GOOD.replace(old, new))
    assert str(caught.value) == message


def test_unknown_hasher_in_cli_subset():
    with pytest.raises(ConfigError, match="--hashers: Phash: not a hasher of cfg.yaml; did you mean 'pHash'"):
        parse(GOOD, hashers=["Phash"])


@pytest.mark.parametrize("asked, said", [
    ("dhash", "did you mean 'd16' (imagehash.dhash)?"),  # the config has it, under its own id
    ("imagehash.dhash", "did you mean 'd16' (imagehash.dhash)?"),
    ("dHash", "did you mean 'd16' (imagehash.dhash)?"),
    ("PDQ", "whose hashers are aHash, d16 (only those can be chosen); add PDQ to its hashers to run it"),
    ("aHsh", "did you mean 'aHash'?"),
])
def test_a_hasher_not_in_the_subset_is_named_with_its_fix(asked, said):
    """Was "add imagehash.dhash to its hashers" for a config that has it, as d16; and, before,
    "dHash: did you mean 'aHash'?", a spelling neighbour, for a hasher the config does not have."""
    config = {"name": "c", "images": ["builtin:camera"], "sweeps": [{"family": "identity"}],
              "hashers": ["aHash", {"name": "imagehash.dhash", "hash_size": 16, "id": "d16"}]}
    with pytest.raises(ConfigError) as caught:
        parse_config(config, "cfg.yaml", hashers=[asked])
    assert str(caught.value) == f"--hashers: {asked}: not a hasher of cfg.yaml" + (", " if "whose" in said else "; ") + said


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nsweeps: [\n  - oops: : :\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line \d+, column \d+: YAML syntax error"):
        load_config(str(path))


def test_yaml_cannot_run_code(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="YAML syntax error"):
        load_config(str(path))


def test_an_empty_report_key_is_the_defaults_as_an_empty_detection_key_is():
    config = parse(GOOD.replace("name: tiny", "name: tiny\nreport:\ndetection:"))
    assert config.previews is True and config.detection == parse(GOOD).detection


def test_yaml_reads_exponent_floats_as_yaml_1_2_does(tmp_path):
    """PyYAML (YAML 1.1) read 1e-6 as the string '1e-6': `fpr: [1e-3]` was refused as not a share."""
    from harness.safe_yaml import load_text

    data = load_text("[1e-6, 1e30, -2E+3, 1.5e3, +.5e2, 1.0, 12, 1_000, '1e-6', \"1e30\", 1e, e5, 1.2.3]", "x.yaml")
    assert data == [1e-6, 1e30, -2000.0, 1500.0, 50.0, 1.0, 12, 1000, "1e-6", "1e30", "1e", "e5", "1.2.3"]
    assert [type(value) for value in data[:7]] == [float] * 6 + [int]  # integers stay integers
    path = tmp_path / "c.yaml"
    path.write_text(GOOD.replace("name: tiny", "name: tiny\ndetection: {fpr: [1e-2, 1E-3]}"))
    assert load_config(str(path)).detection.fpr == (0.01, 0.001)


def test_yaml_reads_integers_as_yaml_1_2_does(tmp_path):
    """PyYAML (YAML 1.1) read a leading 0 as octal and ':' as base 60: `values: [005, 010, 050]` of a
    JPEG quality ran qualities 5, 8 and 40, `kernel: 1:30` was 90, and `kernel: 09` a float."""
    from harness.safe_yaml import load_text

    data = load_text("[010, 09, 007, -010, 0o17, 0x1F, 100_000, 1:30, 1:30.5, 0b101, 010.5, 1_000.5, '010']", "x.yaml")
    assert data == [10, 9, 7, -10, 15, 31, 100_000, "1:30", "1:30.5", "0b101", 10.5, 1000.5, "010"]
    assert [type(value) for value in data[:7]] == [int] * 7
    path = tmp_path / "c.yaml"
    path.write_text(GOOD.replace("name: tiny", "name: tiny\nseed: 010"))
    assert load_config(str(path)).seed == 10


@pytest.mark.parametrize("text, said", [
    ("!!int 0b101", "!!int '0b101' is not an integer as YAML 1.2 writes one (decimal digits, 0o octal or 0x hex); "
                    "YAML 1.1 reads it as 5: write 5"),
    ("!!int 1:30", "!!int '1:30' is not an integer as YAML 1.2 writes one (decimal digits, 0o octal or 0x hex); "
                   "YAML 1.1 reads it as 90: write 90"),
    ("!!int abc", "!!int 'abc' is not an integer as YAML 1.2 writes one (decimal digits, 0o octal or 0x hex)"),
])
def test_an_explicit_int_of_a_yaml_1_1_form_is_refused_saying_what_to_write(tmp_path, text, said):
    """`!!int 0b101` (YAML 1.1's binary five, which PyYAML's safe loader reads as 5) was refused as "YAML
    syntax error: bad value (invalid literal for int() with base 10: '0b101')": no syntax error, and
    neither what YAML 1.2 takes nor what to write instead."""
    from harness.safe_yaml import load_text

    path = tmp_path / "c.yaml"
    path.write_text(GOOD.replace("name: tiny", f"name: tiny\nseed: {text}"))
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert str(caught.value) == f"{path}: line 3, column 7: YAML refused: {said}"
    assert load_text("[!!int 0x1F, !!int 010, !!int 1_000, !!int '12']", "x.yaml") == [31, 10, 1000, 12]


def test_the_config_yaml_a_run_writes_reads_back_as_it_was():
    """A string that YAML 1.2 reads as a number ('2e5' as a caption, '1e3' as a name) was written
    plain by PyYAML and read back as a float: the saved config.yaml no longer ran."""
    from harness.report import config_yaml
    from harness.safe_yaml import load_text

    config = {"name": "1e3", "description": "-.5", "sweeps": [{"family": "cap", "values": ["2e5", "LOL", 12, "0o7"]}],
              "detection": {"fpr": [1e-06, 0.01]}}
    assert load_text(config_yaml(config, {"cwd": "/here"}), "config.yaml") == config


def test_random_transforms_get_the_config_seed(monkeypatch):
    from harness.params import Doc  # a registered transform with a seed parameter, for this test only
    from typing import Annotated
    import harness.transforms as transforms

    def speckle(image, seed: Annotated[int, Doc("random seed")] = 0):
        return image

    monkeypatch.setitem(transforms.TRANSFORMS._entries, "speckle_test", speckle)
    config = parse(GOOD.replace("name: tiny", "name: tiny\nseed: 7").replace("- family: identity",
                                                                             "- family: identity\n    b: speckle_test"))
    assert config.pairs[0].b == (("speckle_test", (("seed", 7),)),)


def test_chains_differing_only_in_a_value_type_are_not_merged(monkeypatch):
    # A plugin may take `int | float` and treat 3 and 3.0 differently; the chains compare equal as
    # tuples (3 == 3.0), and a run that merged them gave both sweeps the first one's result.
    import harness
    import harness.transforms as transforms

    def invert_if_float(image, amount: int | float = 0):
        return 255 - image if isinstance(amount, float) else image

    monkeypatch.setitem(transforms.TRANSFORMS._entries, "invert_if_float_test", invert_if_float)
    results = harness.evaluate({"name": "types", "images": ["builtin:camera"], "hashers": ["aHash"], "sweeps": [
        {"family": "float", "b": {"invert_if_float_test": {"amount": 3.0}}},
        {"family": "int", "b": {"invert_if_float_test": {"amount": 3}}}]})
    distance = dict(zip(results.distances.family, results.distances.distance))
    assert distance["int"] == 0 and distance["float"] > 20


def test_cli_reports_config_error_in_one_line_with_status_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace("[aHash, pHash]", "[aHash, pHsah]"))
    done = subprocess.run([sys.executable, "-m", "harness", "run", str(path), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {path}: hashers[1].name: unknown hasher 'pHsah'; did you mean 'pHash'? (see `python -m harness list`)"]
    assert not (tmp_path / "out").exists(), "nothing may be written before the config is valid"


@pytest.mark.parametrize("sweep, message", [
    ("labels: ['low {value}', high]", "sweeps[1].labels[0]: '{value}': labels are written as they are; {value} is "
                                      "replaced in label only"),
    ("labels: ['x {valu}', y]", "sweeps[1].labels[0]: '{valu}': labels are written as they are"),
    ("labels: ['', b]", "sweeps[1].labels[0]: expected a label, got ''"),
    ("label: ' '", "sweeps[1].label: expected a label, got ' '"),
])
def test_labels_are_checked_as_label_is(sweep, message):
    """'low {value}' in labels was kept as written, '{valu}' there passed where label refuses it,
    and an empty label named a pair in every table."""
    text = GOOD.replace("{start: 10, stop: 30, step: 10}", "[10, 50]").replace("label: JPEG {value}", sweep)
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse(text)


def test_value_in_the_label_of_a_sweep_without_values_is_refused():
    """'X {value}' was the label 'X '."""
    with pytest.raises(ConfigError, match=re.escape("sweeps[0].label: {value} in the label of a sweep without values")):
        parse(GOOD.replace("family: identity", "family: identity\n    label: 'X {value}'"))


@pytest.mark.parametrize("extra, message", [
    ("limit: 0", "cfg.yaml: limit: must be >= 1, got 0"),
    ("max_side: 15", "cfg.yaml: max_side: must be >= 16, got 15"),
    ("max_pixels: 0", "cfg.yaml: max_pixels: must be from 1 to 1,073,741,824 (OpenCV's own limit), got 0"),
    ("max_pixels: 1073741825", "cfg.yaml: max_pixels: must be from 1 to 1,073,741,824 (OpenCV's own limit), "
                               "got 1073741825"),
    ("seed: 18446744073709551616", "cfg.yaml: seed: must be from 0 to 2**64 - 1, got 18446744073709551616"),
    ("impostors: {duplicates: [[a, b], [c]]}", "cfg.yaml: impostors.duplicates: group 1 lists 1 image; a group "
                                              "needs at least two"),
    ("detection: {fpr: [0.01, 0]}", "cfg.yaml: detection.fpr: each rate must be in (0, 1), got [0.01, 0.0]"),
    ("detection: {fpr: [1]}", "cfg.yaml: detection.fpr: each rate must be in (0, 1), got [1.0]"),
    ("detection: {precision: [0]}", "cfg.yaml: detection.precision: each target must be in (0, 1], got [0.0]"),
    # Two spellings of one operating point: both rows would be named fpr=0.01 (six significant digits)
    ("detection: {fpr: [0.01, 0.0100000001]}", "cfg.yaml: detection.fpr: a value is listed twice (fpr=0.01)"),
])
def test_a_setting_one_past_its_bound_is_refused(extra, message):
    """Each bound is where the message puts it: one step past it is refused, naming the key. A limit
    of 0 or an fpr of 1 has no meaning a run could give it; a group of one duplicate excludes nothing."""
    with pytest.raises(ConfigError, match=re.escape(message) + "$"):
        parse(GOOD + extra)


def test_a_setting_at_its_bound_is_taken():
    """The bounds themselves are valid values, as the messages say ('>= 16', 'from 1 to', '(0, 1]'):
    a threshold of 0 (exact copies only) and a precision of 1 are fair choices, not mistakes."""
    config = parse(GOOD + """
limit: 1
max_side: 16
max_pixels: 1073741824
seed: 18446744073709551615
impostors: {duplicates: [[a, b]], exclude_below: {aHash: 0}}
detection: {fpr: [0.5], precision: [1], thresholds: {pHash: 0}}
""")
    assert (config.limit, config.max_side, config.max_pixels, config.seed) == (1, 16, 1 << 30, (1 << 64) - 1)
    assert config.impostors.duplicates == (("a", "b"),) and config.impostors.exclude_below == {"aHash": 0}
    assert (config.detection.fpr, config.detection.precision, config.detection.thresholds) == (
        (0.5,), (1.0,), {"pHash": 0})
    assert parse(GOOD + "max_pixels: 1").max_pixels == 1


@pytest.mark.parametrize("labels, message", [
    ("[a, b]", "cfg.yaml: sweeps[1].labels: 2 labels for 3 values"),
    ("[a, b, c, d]", "cfg.yaml: sweeps[1].labels: 4 labels for 3 values"),
])
def test_labels_are_one_per_value(labels, message):
    """Too few labels left a pair unnamed, too many named pairs that are not there: both are refused."""
    with pytest.raises(ConfigError, match=re.escape(message) + "$"):
        parse(GOOD.replace("label: JPEG {value}", f"labels: {labels}"))
    named = parse(GOOD.replace("label: JPEG {value}", "labels: [a, b, c]"))
    assert [p.label for p in named.pairs] == ["identity", "a", "b", "c"]


def test_a_threshold_for_a_hasher_the_config_lacks_is_refused():
    """detection.thresholds names hasher ids; one the config does not have (a case slip) would be a
    threshold never used, so it is refused with the id meant, as exclude_below's is."""
    with pytest.raises(ConfigError, match=re.escape("cfg.yaml: detection.thresholds.phash: not a hasher of this "
                                                    "config; did you mean 'pHash'?")):
        parse(GOOD + "detection: {thresholds: {phash: 10}}")


def test_the_sweeps_may_make_exactly_the_most_pairs():
    """MAX_PAIRS (10,000) is the most pairs allowed, not one more than allowed: 10,000 are taken and
    10,001 refused."""
    sweep = """
name: many
images: [builtin:astronaut]
hashers: [aHash]
sweeps:
  - family: pixelate
    b: {pixelate: {block: $value}}
    values: {start: 1, stop: STOP, step: 1}
"""
    assert len(parse(sweep.replace("STOP", "10000")).pairs) == 10_000
    with pytest.raises(ConfigError, match=re.escape("cfg.yaml: sweeps[0]: the sweeps make 10,001 pairs up to here; "
                                                    "at most 10,000 in all")):
        parse(sweep.replace("STOP", "10001"))


@pytest.mark.parametrize("values, step, expected", [
    ("{start: 5, stop: 5, step: 1}", "jpeg: {quality: $value}", [5]),  # a range of one value: start is stop
    ("{start: 0, stop: 1, step: 0.6}", "contrast: {factor: $value}", [0.0, 0.6]),  # 1.2 would be past stop
    ("{start: 30, stop: 10, step: -7}", "jpeg: {quality: $value}", [30, 23, 16]),  # downwards: 9 is past it
])
def test_a_range_stops_at_its_last_value_within_stop(values, step, expected):
    """stop is included where a whole number of steps reaches it, and never passed: start == stop is
    the one value, and a step that overshoots stop ends the range at the value before it."""
    config = parse(GOOD.replace("{start: 10, stop: 30, step: 10}", values).replace("jpeg: {quality: $value}", step))
    assert [p.value for p in config.pairs[1:]] == expected


def test_hashers_chosen_twice_run_once_in_the_options_order():
    """--hashers pHash,aHash,pHash runs each once, in the order the option names them: a hasher
    listed twice made two columns of one name in every table."""
    assert [h.id for h in parse(GOOD, hashers=["pHash", "aHash", "pHash"]).hashers] == ["pHash", "aHash"]
