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


RETRIEVAL_COLUMNS = ["hasher", "muAP", "recall_at_p90", "threshold_at_p90", "positives", "negatives"]


def precision_recall(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precisions, recalls, distances) after each prediction, best first, ties worst case.

    Predictions are ordered by increasing distance (decreasing score = -distance); at equal
    distances negatives come before positives. (Each temporary goes as soon as it is used: at
    100,000 images a hasher's curve has half a million points, 4 MiB per array.)"""
    positive = np.asarray(positive, dtype=np.float64)
    negative = np.asarray(negative, dtype=np.float64)
    distances = np.concatenate([positive, negative])
    is_positive = np.zeros(len(distances), bool)
    is_positive[:len(positive)] = True
    order = np.lexsort((is_positive, distances))  # by distance, then negatives (False) first
    distances = distances[order]
    hits = np.cumsum(is_positive[order])
    del order, is_positive
    precisions = hits / np.arange(1, len(hits) + 1)
    recalls = hits / len(positive) if len(positive) else np.full(len(hits), np.nan)
    return precisions, recalls, distances


def micro_average_precision(positive: np.ndarray, negative: np.ndarray) -> float:
    """µAP: the area under the pooled precision-recall curve, as the challenge sums it. NaN
    without positives."""
    return retrieval_scores(positive, negative)[0]


def recall_at_precision(positive: np.ndarray, negative: np.ndarray, precision: float = 0.9) -> tuple[float, float]:
    """(recall, distance threshold) at the first prediction of highest recall among those whose
    precision is at least `precision`; (NaN, NaN) when no prefix reaches it (the challenge
    prints "Does not reach P90")."""
    return retrieval_scores(positive, negative, precision)[1:]


def retrieval_scores(positive: np.ndarray, negative: np.ndarray, precision: float = 0.9) -> tuple[float, float, float]:
    """(µAP, recall at `precision`, its distance threshold): precision_recall's curve walked in blocks.

    The same numbers as from precision_recall's arrays, to the bit: every point's precision,
    recall and recall gained are the same divisions and subtractions, and µAP sums the same array
    of terms the same way. But the curve is never made whole: each side is sorted on its own, the
    negatives' places among the predictions follow from how many positives lie strictly closer,
    and the points are taken a block at a time (at 100,000 images, half a million points a hasher
    made five arrays of 4 MiB)."""
    if not len(positive):
        return float("nan"), float("nan"), float("nan")
    positive = np.sort(np.asarray(positive, dtype=np.float64))
    negative = np.sort(np.asarray(negative, dtype=np.float64))
    total, found = len(positive) + len(negative), len(positive)
    is_positive = np.ones(total, bool)  # ties: the negatives first, as precision_recall orders them
    for start in range(0, len(negative), CURVE_BLOCK):  # each negative's place: the positives before it, plus itself
        block = negative[start:start + CURVE_BLOCK]
        is_positive[np.searchsorted(positive, block, side="left") + np.arange(start, start + len(block))] = False
    terms = np.empty(total)  # recall gained at each point times its precision
    hits_before, recall_before, best_hits = 0, 0.0, None
    for start in range(0, total, CURVE_BLOCK):
        hits = np.cumsum(is_positive[start:start + CURVE_BLOCK]) + hits_before
        precisions = hits / np.arange(start + 1, start + len(hits) + 1)
        recalls = hits / found
        gained = terms[start:start + len(hits)]
        gained[0] = recalls[0] - recall_before
        np.subtract(recalls[1:], recalls[:-1], out=gained[1:])
        gained *= precisions
        valid = np.flatnonzero(precisions >= precision)
        if len(valid):  # recall never falls, so the last valid point has the highest valid recall
            best_hits = int(hits[valid[-1]])
        hits_before, recall_before = int(hits[-1]), recalls[-1]
    if best_hits is None:
        recall = threshold = float("nan")
    else:  # that recall's first point (all valid: precision only falls from there to the next hit)
        recall = best_hits / found
        threshold = float(positive[best_hits - 1] if best_hits else negative[0])
    return float(terms.sum()), recall, threshold


CURVE_BLOCK = 1 << 14  # points a block: five arrays of 128 KiB


def retrieval_table(distances: pd.DataFrame, impostors: pd.DataFrame) -> pd.DataFrame:
    """One row per hasher that produced distances (unavailable ones are left out):

    hasher, muAP, recall_at_p90 (NaN when precision never reaches 0.9), threshold_at_p90 (a
    distance; pairs at or below it are matches), positives (genuine pairs with a distance) and
    negatives (impostor pairs)."""
    from harness.grouping import hasher_groups

    rows = [retrieval_row(groups.hasher, groups.values,
                          impostors.loc[impostors["hasher"] == groups.hasher, "distance"].to_numpy(dtype=np.float64))
            for groups in hasher_groups(distances)]
    return pd.DataFrame([row for row in rows if row is not None], columns=RETRIEVAL_COLUMNS)


def retrieval_row(hasher: str, genuine: np.ndarray, impostor: np.ndarray) -> dict | None:
    """retrieval_table's row of one hasher from its genuine and impostor distances (in any order);
    None without genuine distances."""
    if not len(genuine):
        return None
    muap, recall, threshold = retrieval_scores(genuine, impostor, 0.9)
    return {"hasher": hasher, "muAP": muap, "recall_at_p90": recall,
            "threshold_at_p90": threshold, "positives": len(genuine), "negatives": len(impostor)}
