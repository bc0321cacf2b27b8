"""Edits marked bit-exact give pinned pixels, on whatever machine the tests run.

`transforms.cpu_exact` promises the same pixels on every x86-64 and ARM processor; the hash cache keys
such an edit's results without the kind of CPU, and the summary counts on it. tests/test_cpu_kind.py
checks the promise on one machine (OpenCV's optimizations on and off); this file checks it across
machines: the SHA-256 of each exact edit's pixels, at its test parameters and at others that take
other code paths, on four images made the same everywhere, is pinned in tests/data/exact_edits.json.
The pins were made on x86-64 (AVX2) and gave the same digests on an arm64 build (.ci/arm64), where
the area resizes, pixelate, screenshot, overlay_image, enhance_contrast and cross wider than a pixel
did not: those are marked inexact.

    python -m tests.test_exact_edits > tests/data/exact_edits.json   # pins again, for a wanted change
"""

import hashlib
import json
import os
import sys

import cv2
import numpy as np
import pytest

from harness.transforms import apply_chain, cpu_exact
from tests.conftest import ROOT, make_synthetic
from tests.test_transforms import CASES

PINS = os.path.join(ROOT, "tests", "data", "exact_edits.json")
INTERPOLATIONS = ("nearest", "linear", "area", "cubic", "lanczos")

# Beyond each edit's test parameters: the resizes at factors that are and are not whole fractions of
# the sides, every interpolation, and the parameters where an edit's code path changes.
MORE = {
    "scale": [{"factor": f, "interpolation": i} for f in (0.3, 0.5, 0.7, 1.7) for i in INTERPOLATIONS],
    "aspect": [{"ratio": r, "interpolation": i} for r in (0.7, 1.5) for i in INTERPOLATIONS],
    "resize_max": [{"size": 100, "interpolation": i} for i in INTERPOLATIONS],
    "rotate": [{**CASES["rotate"], "angle": a, "crop": c, "interpolation": i}
               for a, c in ((5, False), (30, True)) for i in INTERPOLATIONS],
    "pixelate": [{"block": b} for b in (2, 4, 13)],
    "cross": [{"width": w} for w in (1, 3)],
    "enhance_contrast": [{"factor": 0.8}],
    "enhance_brightness": [{"factor": 0.8}],
    "screenshot": [{"scale": 0.5}],
    "overlay_image": [{"opacity": 1.0, "size": 0.5}],
    "jpeg": [{"quality": q} for q in (10, 90)],
    "gamma": [{"gamma": g} for g in (0.5, 2.2)],
}


def images() -> dict[str, np.ndarray]:
    """Images made the same everywhere (integer drawing, NumPy's generator, a box filter), chosen so that
    the edits found to follow the processor show it: the synthetic card; an odd-sized textured card (no
    side a multiple of 2, 4 or 8); plain noise, whose many values put some area averages and blends
    next to a rounding edge; and a 868x600 card, where Pillow's wide diagonals fell otherwise on arm64."""
    noise = np.random.default_rng(7).integers(0, 256, (223, 325, 3), dtype=np.uint8)
    textured = ((cv2.blur(noise, (5, 5)).astype(np.uint16) + make_synthetic(223, 325)) // 2).astype(np.uint8)
    return {"card": make_synthetic(), "textured": textured,
            "noise": np.random.default_rng(479).integers(0, 256, (479, 641, 3), dtype=np.uint8),
            "wide card": make_synthetic(600, 868)}


def cases() -> list[tuple[str, dict]]:
    return [(name, params) for name in sorted(CASES) for params in [CASES[name]] + MORE.get(name, [])]


def case_key(name: str, params: dict, image: str) -> str:
    return f"{name} {json.dumps(params, sort_keys=True)} {image}"


def digests(exact_only: bool = True) -> dict[str, str]:
    """Each (edit, parameters, image)'s pixels: the first 16 hex digits of their SHA-256, with the shape."""
    found, made = {}, images()
    for name, params in cases():
        if exact_only and not cpu_exact(name, params):
            continue
        for label, image in made.items():
            pixels = apply_chain(image, [(name, params)])
            found[case_key(name, params, label)] = \
                f"{hashlib.sha256(pixels.tobytes()).hexdigest()[:16]} {'x'.join(map(str, pixels.shape))}"
    return found


@pytest.fixture(scope="module")
def pinned() -> dict[str, str]:
    with open(PINS, encoding="utf-8") as handle:
        return json.load(handle)


def test_every_exact_edit_case_is_pinned_and_only_those(pinned):
    """An edit marked exact since the pins were made is pinned too; one marked inexact is not."""
    labels = list(images())
    exact = {case_key(name, params, label) for name, params in cases() if cpu_exact(name, params)
             for label in labels}
    assert set(pinned) == exact


def test_exact_edits_give_the_pinned_pixels(pinned):
    found = digests()
    changed = sorted(key for key in pinned if found.get(key) != pinned[key])
    assert changed == [], (f"{len(changed)} exact edits gave other pixels than pinned (on x86-64 and arm64): "
                           f"{changed[:10]}; a wanted change pins again (this module's docstring), an edit "
                           "that follows the processor is marked cpu_exact=False")


if __name__ == "__main__":
    json.dump(digests(), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
