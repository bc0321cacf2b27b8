"""Tables from the long distance table. Pure: data frames in, data frames out.

The distance table has one row per (image, pair, hasher); `value` is kept as
the text the config gave ("2.0" stays "2.0") so tables rebuilt from CSV are
byte-identical to the first ones. Lower distances always mean closer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PAIR_KEY = ["family", "value", "label"]
UNAVAILABLE = "unavailable"


def hasher_order(distances: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(distances["hasher"]))


def article_table(distances: pd.DataFrame) -> pd.DataFrame:
    """Rows = pairs in config order, one column per hasher: the median distance over images
    (the distance itself for one image). A hasher that could not run reads 'unavailable';
    a cell whose every distance failed reads 'error'."""
    pairs = distances[PAIR_KEY].drop_duplicates().reset_index(drop=True)
    table = pairs.copy()
    for hasher in hasher_order(distances):
        rows = distances[distances["hasher"] == hasher]
        if (rows["error"] == UNAVAILABLE).all():
            table[hasher] = UNAVAILABLE
            continue
        median = rows.groupby(PAIR_KEY, sort=False)["distance"].median()
        cells = pairs.join(median, on=PAIR_KEY)["distance"]
        table[hasher] = [format_number(v) if np.isfinite(v) else "error" for v in cells]
    return table


def family_curves(distances: pd.DataFrame) -> pd.DataFrame:
    """Per (family, value, hasher): the median normalised distance over images and its
    inter-quartile band, the count of images, and the swept value as a number (NaN if none)."""
    usable = distances[distances["error"] == ""]
    grouped = usable.groupby(PAIR_KEY + ["hasher"], sort=False)["distance_norm"]
    curves = pd.DataFrame({
        "median": grouped.median(),
        "q25": grouped.quantile(0.25),
        "q75": grouped.quantile(0.75),
        "images": grouped.count(),
    }).reset_index()
    curves["x"] = pd.to_numeric(curves["value"], errors="coerce")
    return curves


def format_number(value: float) -> str:
    """Six significant digits: integers (Hamming distances) print without a decimal point."""
    return f"{value:.6g}"
