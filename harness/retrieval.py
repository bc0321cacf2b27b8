"""The Image Similarity Challenge 2021's retrieval metrics: micro average precision (µAP) and
recall at 90% precision. Pure: distances in, numbers and tables out.

Defined as in the challenge's reference code (``isc/metrics.py`` of facebookresearch/isc2021):
every prediction of every query is pooled into ONE precision-recall curve. Predictions are
sorted by decreasing score; among equal scores the negatives come first, so ties always count
against the system (the worst case: a hasher cannot gain by giving many pairs the same score).
Precision and recall are taken after every single prediction, with the number of ground-truth
positives as recall's denominator, and

    µAP = sum over predictions i of (recall_i - recall_{i-1}) * precision_i

Recall at P90 is the highest recall among the prefixes whose precision is at least 0.9.

Here a prediction is a pair of images the run compared: positives are all genuine pairs with a
distance (an image and its edited copy), negatives all impostor pairs (different images), and
the score is minus the distance. `threshold_at_p90` is reported as a DISTANCE (the challenge
reports the score, its negative): pairs at distance <= threshold_at_p90 are called matches.

Unlike the challenge, where each query has its own short result list, every pair the run made
is a prediction here, so the ratio of positives to negatives is set by the config (how many
edits, how many impostor pairs): precision-based numbers compare across runs only when that
ratio is similar.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.schema import first_seen

RETRIEVAL_COLUMNS = ["hasher", "muAP", "recall_at_p90", "threshold_at_p90", "positives", "negatives"]


def precision_recall(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precisions, recalls, distances) after each prediction, best first, ties worst case.

    Predictions are ordered by increasing distance (decreasing score = -distance); at equal
    distances negatives come before positives."""
    positive = np.asarray(positive, dtype=np.float64)
    negative = np.asarray(negative, dtype=np.float64)
    distances = np.concatenate([positive, negative])
    is_positive = np.concatenate([np.ones(len(positive), bool), np.zeros(len(negative), bool)])
    order = np.lexsort((is_positive, distances))  # by distance, then negatives (False) first
    hits = np.cumsum(is_positive[order])
    precisions = hits / np.arange(1, len(order) + 1)
    recalls = hits / len(positive) if len(positive) else np.full(len(order), np.nan)
    return precisions, recalls, distances[order]


def micro_average_precision(positive: np.ndarray, negative: np.ndarray) -> float:
    """µAP: the area under the pooled precision-recall curve, as the challenge sums it. NaN
    without positives."""
    if not len(positive):
        return float("nan")
    precisions, recalls, _ = precision_recall(positive, negative)
    steps = recalls - np.concatenate([[0.0], recalls[:-1]])
    return float((steps * precisions).sum())


def recall_at_precision(positive: np.ndarray, negative: np.ndarray, precision: float = 0.9) -> tuple[float, float]:
    """(recall, distance threshold) at the first prediction of highest recall among those whose
    precision is at least `precision`; (NaN, NaN) when no prefix reaches it (the challenge
    prints "Does not reach P90")."""
    if not len(positive):
        return float("nan"), float("nan")
    precisions, recalls, distances = precision_recall(positive, negative)
    valid = precisions >= precision
    if not valid.any():
        return float("nan"), float("nan")
    best = int(np.argmax(np.where(valid, recalls, -1.0)))  # the first of the highest valid recalls
    return float(recalls[best]), float(distances[best])


def retrieval_table(distances: pd.DataFrame, impostors: pd.DataFrame) -> pd.DataFrame:
    """One row per hasher that produced distances (unavailable ones are left out):

    hasher, muAP, recall_at_p90 (NaN when precision never reaches 0.9), threshold_at_p90 (a
    distance; pairs at or below it are matches), positives (genuine pairs with a distance) and
    negatives (impostor pairs)."""
    rows = []
    for hasher in first_seen(distances["hasher"]):
        genuine = distances.loc[(distances["hasher"] == hasher) & (distances["error"] == ""), "distance"]
        genuine = genuine.to_numpy(dtype=np.float64)
        if not len(genuine):
            continue
        impostor = impostors.loc[impostors["hasher"] == hasher, "distance"].to_numpy(dtype=np.float64)
        recall, threshold = recall_at_precision(genuine, impostor, 0.9)
        rows.append({"hasher": hasher, "muAP": micro_average_precision(genuine, impostor),
                     "recall_at_p90": recall, "threshold_at_p90": threshold,
                     "positives": len(genuine), "negatives": len(impostor)})
    return pd.DataFrame(rows, columns=RETRIEVAL_COLUMNS)
