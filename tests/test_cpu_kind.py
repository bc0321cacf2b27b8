"""Results that follow the processor: what run.json records of it, the hash cache's keys, the summary.

The CPU's code paths are switched here as OpenCV lets a process switch them, in the process:
cv2.setUseOptimized(False) turns off both Intel's IPP and OpenCV's dispatched vector code, which is
what another kind of machine (without AVX-512, or ARM without IPP) would run.
"""

import glob
import json
import os

import cv2
import numpy as np
import pytest

from harness.hashers import HASHERS
from harness.provenance import CPU_ENVIRONMENT, cpu_features, cpu_kind, result_versions
from harness.runner import chain_key, hasher_key
from harness.transforms import TRANSFORMS, apply_chain, cpu_exact
from tests.conftest import make_synthetic
from tests.test_transforms import CASES


@pytest.fixture
def unoptimized():
    """OpenCV without IPP and its dispatched vector code, for the test's duration."""
    cv2.setUseOptimized(False)
    try:
        yield
    finally:
        cv2.setUseOptimized(True)


def test_run_json_records_ipp_numpy_simd_and_the_environment_that_changes_results(monkeypatch):
    for name in CPU_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    cpu = cpu_features()
    assert cpu["opencv_ipp"] is cv2.ipp.useIPP() and cpu["opencv_ipp_version"] == cv2.ipp.getIppVersion()
    assert isinstance(cpu["numpy_simd"], str) and cpu["numpy_simd"]  # at least NumPy's baseline
    # Every variable, set or not: null says it was unset when the run started.
    assert cpu["environment"] == {**{name: None for name in CPU_ENVIRONMENT}, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert set(CPU_ENVIRONMENT) == {"OPENCV_IPP", "OPENCV_CPU_DISABLE", "NPY_DISABLE_CPU_FEATURES",
                                    "TF_ENABLE_ONEDNN_OPTS", "ONEDNN_MAX_CPU_ISA", "OPENBLAS_CORETYPE"}


def test_the_cpu_kind_follows_opencvs_code_paths_and_the_environment(monkeypatch):
    first = cpu_kind()
    cv2.setUseOptimized(False)
    try:
        assert cpu_kind() != first
    finally:
        cv2.setUseOptimized(True)
    assert cpu_kind() == first
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    assert cpu_kind()["OPENBLAS_CORETYPE"] == "Haswell" and cpu_kind() != first


def test_a_non_exact_hashers_cache_key_holds_the_cpu_kind_an_exact_ones_does_not(monkeypatch):
    """A cache shared between machines must not serve MarrHildrethHash hashes made on another kind of
    CPU, and must keep serving aHash's to every machine."""
    versions = result_versions()
    exact, inexact = HASHERS.get("aHash")(), HASHERS.get("MarrHildrethHash")()
    assert exact.cpu_exact and not inexact.cpu_exact
    keys = hasher_key(exact, versions), hasher_key(inexact, versions)
    cv2.setUseOptimized(False)
    try:
        other = hasher_key(exact, versions), hasher_key(inexact, versions)
    finally:
        cv2.setUseOptimized(True)
    assert other[0] == keys[0] and other[1] != keys[1]
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    assert hasher_key(exact, versions) == keys[0] and hasher_key(inexact, versions) != keys[1]


def test_a_chain_key_holds_the_cpu_kind_only_where_a_step_follows_the_cpu():
    cubic = (("resize_max", (("interpolation", "cubic"), ("size", 256))),)
    linear = (("resize_max", (("interpolation", "linear"), ("size", 256))),)
    hue = (("jpeg", (("quality", 90),)), ("hue", (("degrees", 10.0),)))
    before = [chain_key(chain, "salt") for chain in (cubic, linear, hue)]
    cv2.setUseOptimized(False)
    try:
        after = [chain_key(chain, "salt") for chain in (cubic, linear, hue)]
    finally:
        cv2.setUseOptimized(True)
    assert [a == b for a, b in zip(before, after)] == [False, True, False]


def test_the_transforms_that_follow_the_cpu_are_marked():
    assert not cpu_exact("resize_max", {"size": 256})  # cubic by default
    assert cpu_exact("resize_max", {"size": 256, "interpolation": "lanczos"})
    # Found to follow the processor on an arm64 build (tests/test_exact_edits.py pins the exact ones):
    # area resizes and what makes one, Pillow's contrast blend and its lines wider than a pixel.
    assert not cpu_exact("resize_max", {"size": 256, "interpolation": "area"})
    assert not cpu_exact("pixelate", {"block": 8}) and not cpu_exact("screenshot", {})
    assert not cpu_exact("overlay_image", {}) and not cpu_exact("enhance_contrast", {"factor": 0.8})
    assert not cpu_exact("cross", {"width": 2}) and cpu_exact("cross", {"width": 1})
    assert cpu_exact("enhance_brightness", {"factor": 0.8})
    assert not cpu_exact("scale", {"factor": 0.5, "interpolation": "cubic"})
    assert cpu_exact("scale", {"factor": 0.5})
    assert not cpu_exact("hue", {"degrees": 10}) and not cpu_exact("saturation", {"factor": 1.5})
    assert cpu_exact("rotate", {"angle": 2}) and cpu_exact("jpeg", {"quality": 50})
    assert not cpu_exact("sharpen", {"amount": 0.37})


@pytest.mark.parametrize("name, params", [("sharpen", {"amount": 0.37}), ("hue", {"degrees": 10}),
                                          ("saturation", {"factor": 1.3})])
def test_a_transform_whose_pixels_follow_opencvs_code_path_is_marked(name, params, unoptimized):
    """The reverse of the check below, where this machine can show it: the pixels differ with
    OpenCV's vector code switched off, so the mark must say so (sharpen was marked exact)."""
    differ = False
    for image in photographs():
        cv2.setUseOptimized(True)
        optimized = apply_chain(image, [(name, params)])
        cv2.setUseOptimized(False)
        differ |= not np.array_equal(apply_chain(image, [(name, params)]), optimized)
    cv2.setUseOptimized(True)
    if not differ:
        pytest.skip(f"{name} gives the same pixels with and without OpenCV's optimizations on this machine")
    assert not cpu_exact(name, params)


def photographs():
    folder = os.environ.get("OPENCV_SAMPLE_DATA", "")
    found = [cv2.imread(path) for path in sorted(glob.glob(os.path.join(folder, "*.jpg")))[:6]]
    return [image for image in found if image is not None] or [make_synthetic()]


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_transform_marked_exact_gives_the_same_pixels_without_opencvs_optimizations(name, unoptimized):
    """The mark's promise, checked where it can be on any machine: OpenCV's plain code gives what its
    IPP and vector code give. (The reverse, that a non-exact one differs, holds only where this
    machine has the other code path: IPP is x86-64's alone.)"""
    cases = [CASES[name]] + ([{**CASES[name], "interpolation": i} for i in ("nearest", "linear", "area", "lanczos")]
                             if name in ("scale", "aspect", "resize_max", "rotate") else [])
    for params in cases:
        if not cpu_exact(name, params):
            continue
        for image in photographs():
            cv2.setUseOptimized(True)
            optimized = apply_chain(image, [(name, params)])
            cv2.setUseOptimized(False)
            assert np.array_equal(apply_chain(image, [(name, params)]), optimized), (name, params)


def test_every_registered_transform_has_a_mark():
    for name in TRANSFORMS:
        assert isinstance(getattr(TRANSFORMS.get(name), "cpu_exact"), bool) or callable(TRANSFORMS.get(name).cpu_exact)


SUMMARY_CONFIG = """
name: cpu
images: [builtin:camera]
hashers: [aHash]
sweeps:
  - {family: jpeg, b: {jpeg: {quality: $value}}, values: [90]}
"""


@pytest.mark.parametrize("edit, inexact", [("{resize_max: {size: 128}}", ["resize_max"]),
                                            ("{resize_max: {size: 128, interpolation: linear}}", [])])
def test_the_summary_counts_an_edit_that_follows_the_cpu(tmp_path, edit, inexact):
    """aHash is bit-exact, but its distances for a cubic resize's pairs follow the CPU all the same."""
    from harness.__main__ import main

    config = tmp_path / "cpu.yaml"
    config.write_text(SUMMARY_CONFIG + f"  - {{family: small, b: {edit}}}\n")
    assert main(["run", str(config), "--out", str(tmp_path / "out"), "--quiet", "--no-cache"]) == 0
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["cpu_inexact_transforms"] == inexact
    assert run["cpu"]["opencv_ipp"] is cv2.ipp.useIPP() and "environment" in run["cpu"]
    summary = (tmp_path / "out" / "summary.md").read_text()
    row = next(line for line in summary.splitlines() if line.startswith("| aHash |"))
    assert row.endswith("| no (edits) |" if inexact else "| yes |")
    said = "`no (edits)`: the hashes are bit-exact, but this run's resize\\_max edit is not" in summary
    assert said == bool(inexact)


def test_the_summarys_provenance_names_ipp_and_numpys_simd_and_reads_an_older_record():
    from harness.markdown import cpu_line

    cpu = {"machine": "x86_64", "opencv_dispatch": "AVX2", "opencv_ipp": True, "numpy_simd": "SSE SSE2 AVX2",
           "opencv_ipp_version": "ippIP AVX2 (l9) 2021.11.0 (-) Feb  1 2024"}
    assert cpu_line(cpu) == ("CPU x86\\_64 with OpenCV dispatching to AVX2, IPP 2021.11.0 (AVX2), "
                             "NumPy's SIMD up to AVX2")
    assert "IPP off" in cpu_line({**cpu, "opencv_ipp": False})
    assert cpu_line({"machine": "aarch64", "opencv_dispatch": ""}) == \
        "CPU aarch64 with OpenCV dispatching to baseline only"  # run.json of an older version
    here = cpu_features()
    assert ("IPP off" in cpu_line(here)) is (not cv2.ipp.useIPP())


def test_inexact_steps_name_each_edit_that_follows_the_cpu_once_and_sorted():
    """hue and saturation work in float HSV, sharpen weighs in floating point and a cubic resize goes
    to IPP: each is named once however many chains use it, in name order (run.json and the summary
    list them; six names leave a set's own order one chance in 720 of being that); bit-exact steps
    (jpeg, a linear resize) are not named."""
    from harness.runner import inexact_steps

    chains = [(("saturation", (("factor", 2.0),)), ("jpeg", (("quality", 50),))),
              (("sharpen", (("amount", 1.0), ("sigma", 1.0))),),
              (("resize_max", (("interpolation", "cubic"), ("size", 64))),),
              (("hue", (("degrees", 30.0),)), ("saturation", (("factor", 0.5),))),
              (("scale", (("factor", 0.5), ("interpolation", "cubic"))),),
              (("aspect", (("interpolation", "cubic"), ("ratio", 2.0))),),
              (("resize_max", (("interpolation", "linear"), ("size", 64))),)]
    assert inexact_steps(chains) == ["aspect", "hue", "resize_max", "saturation", "scale", "sharpen"]
    assert inexact_steps(chains[-1:]) == [] and inexact_steps([]) == []
