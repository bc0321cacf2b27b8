"""The ISC 2021 metrics and recall at a precision target, against hand-computed cases with ties."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.metrics import operating_points, threshold_at_precision, thresholds_table
from harness.retrieval import (
    micro_average_precision,
    precision_recall,
    recall_at_precision,
    retrieval_table,
)

# Three copies (distances 0, 1, 1) and two different-image pairs (1, 2): the tie at 1 is the point.
POSITIVE = np.array([0.0, 1.0, 1.0])
NEGATIVE = np.array([1.0, 2.0])


def test_ties_are_ranked_worst_case():
    # Order: P(0), then at distance 1 the negative before both positives, then N(2).
    precisions, recalls, distances = precision_recall(POSITIVE, NEGATIVE)
    assert distances.tolist() == [0, 1, 1, 1, 2]
    assert precisions.tolist() == pytest.approx([1, 1 / 2, 2 / 3, 3 / 4, 3 / 5])
    assert recalls.tolist() == pytest.approx([1 / 3, 1 / 3, 2 / 3, 1, 1])


def test_micro_average_precision_by_hand():
    # sum of (recall step) x precision = 1/3 * 1 + 1/3 * 2/3 + 1/3 * 3/4 = 29/36; ranking the
    # positives first at the tie would give 1.
    assert micro_average_precision(POSITIVE, NEGATIVE) == pytest.approx(29 / 36)
    # Everything tied: N, N, P, P -> 1/2 * 1/3 + 1/2 * 2/4 = 5/12.
    assert micro_average_precision(np.ones(2), np.ones(2)) == pytest.approx(5 / 12)
    assert micro_average_precision(POSITIVE, np.array([])) == 1.0
    assert math.isnan(micro_average_precision(np.array([]), NEGATIVE))


def test_recall_at_p90_by_hand():
    # Only the first prediction has precision >= 0.9: recall 1/3 at distance 0.
    assert recall_at_precision(POSITIVE, NEGATIVE, 0.9) == (pytest.approx(1 / 3), 0.0)
    # At 0.7 the prefix through the tie (3 of 4) qualifies: recall 1 at distance 1.
    assert recall_at_precision(POSITIVE, NEGATIVE, 0.7) == (1.0, 1.0)
    recall, threshold = recall_at_precision(np.array([5.0]), np.array([0.0, 1.0]), 0.9)
    assert math.isnan(recall) and math.isnan(threshold)  # "does not reach P90"


def test_threshold_at_precision_counts_ties_together():
    point = threshold_at_precision(POSITIVE, NEGATIVE, 0.9)
    assert (point.name, point.threshold, point.detected, point.false_matches) == ("precision=0.9", 0.0, 1, 0)
    point = threshold_at_precision(POSITIVE, NEGATIVE, 0.7)
    # At 1: 3 copies and 1 different pair are matches, precision 3/4; 3 true matches tolerate
    # one false one at 0.7 (3/4 >= 0.7 > 3/5).
    assert (point.threshold, point.detected, point.false_matches, point.false_matches_allowed) == (1.0, 3, 1, 1)
    assert point.precision_measured == 0.75 and point.genuine_pairs == 3 and point.resolved
    assert math.isnan(point.fpr_target) and point.precision_target == 0.7


def test_one_impostor_at_zero_does_not_zero_the_recall():
    # perception's rank count takes the first of four tied copies as 1 true match against 1
    # false one (50%) and reports recall 0; all four tie, so the precision at 0 is 4/5.
    point = threshold_at_precision(np.zeros(4), np.array([0.0, 10.0, 12.0]), 0.8)
    assert (point.threshold, point.detected, point.false_matches) == (0.0, 4, 1)


def test_highest_recall_not_first_failure():
    # Precision dips below 0.9 at 1 (1 of 2) and recovers at 3 (10 of 11): we keep the recovery.
    genuine = np.array([0.0] + [3.0] * 9)
    point = threshold_at_precision(genuine, np.array([1.0, 20.0]), 0.9)
    assert (point.threshold, point.detected, point.false_matches) == (3.0, 10, 1)


def test_no_threshold_reaches_the_precision():
    point = threshold_at_precision(np.array([5.0]), np.array([0.0, 1.0]), 0.9)
    assert math.isnan(point.threshold) and point.detected == 0 and point.false_matches == 0
    assert math.isnan(point.precision_measured)


def frames():
    distances = pd.DataFrame({
        "hasher": ["h1"] * 3 + ["h2"] * 3, "distance": [0.0, 1.0, 1.0, np.nan, np.nan, np.nan],
        "error": [""] * 3 + ["unavailable"] * 3, "family": ["f"] * 6, "value": [""] * 6, "label": ["f"] * 6})
    impostors = pd.DataFrame({"hasher": ["h1", "h1"], "distance": [1.0, 2.0]})
    return distances, impostors


def test_retrieval_table_one_row_per_available_hasher():
    table = retrieval_table(*frames())
    assert list(table.columns) == ["hasher", "muAP", "recall_at_p90", "threshold_at_p90", "positives", "negatives"]
    assert table["hasher"].tolist() == ["h1"]
    row = table.iloc[0]
    assert row.muAP == pytest.approx(29 / 36) and row.recall_at_p90 == pytest.approx(1 / 3)
    assert (row.threshold_at_p90, row.positives, row.negatives) == (0.0, 3, 2)


def test_precision_points_sit_between_fpr_and_fixed_points():
    distances, impostors = frames()
    points = operating_points(distances, impostors, [0.5], {"h1": 1}, precisions=[0.7])
    assert [p.name for p in points["h1"]] == ["fpr=0.5", "precision=0.7", "fixed"]
    table = thresholds_table(points)
    assert table.loc[1, "precision_measured"] == 0.75 and table.loc[2, "detected"] == 3


def brute_force_map(positive, negative):
    """µAP from its definition, one positive at a time: the precision at the worst rank it can have."""
    total = 0.0
    for d in np.unique(positive):
        before = np.count_nonzero(positive < d)
        ahead = before + np.count_nonzero(negative <= d)  # every tied negative goes first
        for j in range(1, np.count_nonzero(positive == d) + 1):
            total += (before + j) / (ahead + j)
    return total / len(positive)


distances_strategy = st.lists(st.integers(0, 8), min_size=1, max_size=25).map(lambda v: np.array(v, float))


@settings(max_examples=200, deadline=None)
@given(distances_strategy, st.lists(st.integers(0, 8), max_size=25).map(lambda v: np.array(v, float)),
       st.sampled_from([0.5, 0.75, 0.9, 0.99, 1.0]))
def test_isc_and_operating_point_agree(positive, negative, precision):
    assert micro_average_precision(positive, negative) == pytest.approx(brute_force_map(positive, negative))
    recall, threshold = recall_at_precision(positive, negative, precision)
    point = threshold_at_precision(positive, negative, precision)
    if math.isnan(recall):
        assert math.isnan(point.threshold)
    else:
        assert point.threshold == threshold and point.detected / len(positive) == pytest.approx(recall)
        assert point.detected / (point.detected + point.false_matches) >= precision


def test_a_precision_too_high_for_the_copies_is_not_resolved():
    """198 copies cannot tolerate one false match at 99.99% (that takes 9,999): the target is not
    measured, only "no false match", and the row says so, as an FPR below 1/n does."""
    genuine, impostor = np.arange(198, dtype=float) % 10, np.arange(1143, dtype=float) + 5
    assert not threshold_at_precision(genuine, impostor, 0.9999).resolved
    assert threshold_at_precision(genuine, impostor, 0.9).resolved  # 198 copies tolerate 22 false matches
    assert not threshold_at_precision(np.array([1.0]), impostor, 0.99).resolved  # one copy tolerates none
