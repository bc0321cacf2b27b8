"""Overlays: things drawn on top of the image."""

from typing import Annotated

import cv2
import numpy as np

from harness.params import Doc, Range
from transforms import transform

Color = tuple[int, int, int]


@transform
def text(
    image: np.ndarray,
    scale: Annotated[float, Range(0, 100, open_low=True), Doc("cv2.putText fontScale")],
    text: Annotated[str, Doc("the words drawn")] = "Text",
    x: Annotated[int, Doc("left of the baseline, px")] = 10,
    y: Annotated[int | None, Doc("baseline row, px; null = 30 * scale")] = None,
    thickness: Annotated[int | None, Range(1), Doc("stroke in px; null = 3 * scale")] = None,
    color: Annotated[Color, Doc("BGR colour")] = (255, 255, 255),
) -> np.ndarray:
    """Draw `text` with FONT_HERSHEY_SIMPLEX, anti-aliased; defaults place and weight it as the article did."""
    y = round(30 * scale) if y is None else y
    thickness = max(1, round(3 * scale)) if thickness is None else thickness
    out = image.copy()
    cv2.putText(out, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, tuple(int(c) for c in color),
                thickness, cv2.LINE_AA)
    return out
