"""Random transforms: each draws only from np.random.default_rng(seed), so a seed fixes the pixels."""

from typing import Annotated

import numpy as np

from harness.params import Doc, Range, Stronger, Unit
from harness.transforms import Seed, transform

# Bit-exact across processors (transforms.cpu_exact): NumPy's generators give the same numbers everywhere.


@transform
def gaussian_noise(
    image: np.ndarray,
    sigma: Annotated[float, Unit("grey levels"), Stronger("higher"), Range(0, 255),
        Doc("standard deviation in grey levels")],
    seed: Seed = 0,
    per_channel: Annotated[bool, Doc("independent noise per channel; false adds the same value to the three "
                                     "channels of a pixel (imgaug's default)")] = True,
) -> np.ndarray:
    """Add zero-mean Gaussian noise, independent per pixel (and channel), rounded and saturated."""
    shape = image.shape if per_channel else image.shape[:2] + (1,)
    noise = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32) * sigma
    return np.clip(np.rint(image + noise), 0, 255).astype(np.uint8)


@transform
def salt_pepper(
    image: np.ndarray,
    amount: Annotated[float, Stronger("higher"), Range(0, 1), Doc("part of the pixels replaced")],
    seed: Seed = 0,
) -> np.ndarray:
    """Set round(amount * pixels) distinct random pixels to white (half of them) or black (the rest)."""
    rows, cols = image.shape[:2]
    chosen = np.random.default_rng(seed).choice(rows * cols, size=round(amount * rows * cols), replace=False)
    out = image.copy()
    pixels = out.reshape(-1, 3)  # a view of out
    pixels[chosen[:len(chosen) // 2]] = 255
    pixels[chosen[len(chosen) // 2:]] = 0
    return out
