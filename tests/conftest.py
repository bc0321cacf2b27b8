import os
import signal

import cv2
import numpy as np
import pytest
from hypothesis import settings

# The property tests draw the same examples on every run (derived from each test's name): a suite
# whose verdict changed from run to run would let a rare example stop one run and pass the next.
# `python -m pytest --hypothesis-profile explore` draws new examples each run, to look for more.
settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False, database=None)
settings.load_profile("repeatable")

# A suite started in the background (`cmd &`, nohup) inherits SIGINT ignored, and so would every
# run the tests start: Python keeps an ignored SIGINT ignored, and the tests of Ctrl-C would see a
# run that cannot be interrupted. The tests' processes take SIGINT as a terminal gives it.
signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LENA = os.path.join(ROOT, "resources", "lena_std.tif")


def make_synthetic(height: int = 256, width: int = 256) -> np.ndarray:
    """A deterministic colour test card: gradients, shapes and texture, so every hasher sees structure."""
    rows, cols = np.mgrid[0:height, 0:width]
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = (cols * 255 // max(1, width - 1)).astype(np.uint8)
    image[..., 1] = (rows * 255 // max(1, height - 1)).astype(np.uint8)
    image[..., 2] = ((rows + cols) % 64 * 4).astype(np.uint8)
    cv2.circle(image, (width // 3, height // 3), min(height, width) // 6, (255, 255, 255), -1)
    cv2.rectangle(image, (width // 2, height // 2), (width * 7 // 8, height * 7 // 8), (0, 0, 0), -1)
    cv2.line(image, (0, height - 1), (width - 1, 0), (0, 0, 255), 3)
    return image


@pytest.fixture
def synthetic():
    return make_synthetic()


@pytest.fixture
def synthetic_file(tmp_path):
    path = tmp_path / "card.png"
    cv2.imwrite(str(path), make_synthetic())
    return str(path)


def make_scene(seed: int, height: int = 120, width: int = 160) -> np.ndarray:
    """A distinct, photo-like image per seed: a smooth random field plus a few shapes."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(4):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.circle(image, centre, int(rng.integers(8, 40)), colour, -1)
    return image
