"""Detection metrics against hand-computed cases: ties, the too-few-pairs flag, intervals, AUC, EER."""

import math
import statistics

import numpy as np
import pandas as pd
import pytest

from harness.metrics import (detection_table, equal_error_rate, family_verdicts, fixed_threshold, operating_points,
                             roc_auc, roc_curve, roc_table, threshold_at_fpr, thresholds_table, wilson_interval)
from harness.impostors import Vocabulary, sample_pairs, source_impostors, transformed_impostors

IMPOSTOR = np.array([5, 7, 7, 9, 12, 12, 15, 20, 30, 40], dtype=float)  # 10 pairs, ties at 7 and 12
GENUINE = np.array([0, 3, 6, 7, 8, 13], dtype=float)


def test_threshold_allows_floor_fpr_n_false_matches():
    # fpr 0.1 of 10 pairs: one false match allowed; the 2nd smallest impostor (7) must stay out,
    # so the threshold is the largest observed distance below 7: the genuine 6.
    point = threshold_at_fpr(IMPOSTOR, GENUINE, 0.1)
    assert (point.threshold, point.false_matches_allowed, point.false_matches) == (6.0, 1, 1)
    assert point.fpr_measured == 0.1 and point.resolved
    # A copy AT the threshold is detected (0, 3 and 6), and shares the precision with the one false match.
    assert (point.genuine_pairs, point.detected, point.precision_measured) == (6, 3, 0.75)


def test_ties_are_never_split():
    # fpr 0.2 allows 2 false matches, but the 2nd and 3rd smallest impostors tie at 7:
    # admitting 7 would make 3, so the threshold stays below 7 and only 1 false match is spent.
    point = threshold_at_fpr(IMPOSTOR, GENUINE, 0.2)
    assert (point.threshold, point.false_matches_allowed, point.false_matches) == (6.0, 2, 1)
    # fpr 0.3: three allowed, 7 can be admitted (5, 7, 7); 9 cannot.
    point = threshold_at_fpr(IMPOSTOR, GENUINE, 0.3)
    assert (point.threshold, point.false_matches) == (8.0, 3)


def test_too_few_pairs_is_flagged_not_extrapolated():
    point = threshold_at_fpr(IMPOSTOR, GENUINE, 0.05)  # 10 pairs cannot resolve 1 in 20
    assert not point.resolved and point.false_matches_allowed == 0
    assert point.threshold == 3.0 and point.false_matches == 0  # merely below the closest impostor (5)
    assert threshold_at_fpr(np.arange(20.0), GENUINE, 0.05).resolved


def test_no_threshold_possible():
    point = threshold_at_fpr(np.array([0.0, 1.0]), np.array([2.0]), 0.4)
    assert math.isnan(point.threshold) and point.false_matches == 0
    assert not threshold_at_fpr(np.array([]), GENUINE, 0.01).resolved


def test_fixed_threshold_counts_at_or_below():
    point = fixed_threshold(IMPOSTOR, 7)
    assert point.false_matches == 3 and point.fpr_measured == pytest.approx(0.3)


def test_wilson_interval_known_values():
    low, high = wilson_interval(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    # To the last digits the tables write (6 significant): z is the normal's 97.5% quantile, not 1.96.
    z = statistics.NormalDist().inv_cdf(0.975)
    centre, half = (0.8 + z * z / 20) / (1 + z * z / 10), z * math.sqrt(0.8 * 0.2 / 10 + z * z / 400) / (1 + z * z / 10)
    assert (low, high) == (pytest.approx(centre - half, abs=1e-12), pytest.approx(centre + half, abs=1e-12))
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_auc_counts_ties_half():
    # per genuine distance, impostors above (+ half the ties) out of 10: 10, 10, 9, 7+1, 7, 4 -> 48/60
    assert roc_auc(GENUINE, IMPOSTOR) == pytest.approx(0.8)
    assert roc_auc(np.array([1.0]), np.array([1.0])) == 0.5
    assert roc_auc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 1.0


def test_roc_curve_and_eer():
    thresholds, fpr, tpr = roc_curve(np.array([1.0, 2.0]), np.array([2.0, 3.0]))
    assert thresholds.tolist() == [-np.inf, 1.0, 2.0, 3.0]
    assert fpr.tolist() == [0, 0, 0.5, 1] and tpr.tolist() == [0, 0.5, 1, 1]
    # fnr: 1, 0.5, 0, 0; fpr: 0, 0, 0.5, 1 -> they cross between t=1 and t=2 at 0.25
    assert equal_error_rate(np.array([1.0, 2.0]), np.array([2.0, 3.0])) == pytest.approx(0.25)
    assert equal_error_rate(np.array([0.0]), np.array([5.0])) == 0.0


def frames():
    rows = []
    for image, (mild, strong) in enumerate([(1, 9), (2, 12), (0, 30), (3, 4)]):
        for hasher, scale in (("h1", 1), ("h2", 2)):
            rows.append([f"im{image}", "blur", "3", "Blur 3", hasher, mild * scale, ""])
            rows.append([f"im{image}", "blur", "9", "Blur 9", hasher, strong * scale, ""])
    distances = pd.DataFrame(rows, columns=["image", "family", "value", "label", "hasher", "distance", "error"])
    impostors = pd.DataFrame({"hasher": ["h1"] * 10 + ["h2"] * 10,
                              "distance": np.concatenate([IMPOSTOR, IMPOSTOR * 2])})
    return distances, impostors


def test_detection_table_per_pair_with_interval():
    distances, impostors = frames()
    points = operating_points(distances, impostors, [0.1], {"h1": 10})
    table = detection_table(distances, points)
    row = table[(table.hasher == "h1") & (table.operating_point == "fpr=0.1") & (table.label == "Blur 9")].iloc[0]
    # the largest observed distance below the tied 7s: the impostor 5 (no genuine 6 in these data)
    assert row.threshold == points["h1"][0].threshold == 5.0
    assert row.detected == int(sum(d <= row.threshold for d in [9, 12, 30, 4]))
    assert row.genuine_pairs == 4 and row.tpr == row.detected / 4
    assert (row.tpr_low, row.tpr_high) == wilson_interval(row.detected, 4)
    fixed = table[(table.hasher == "h1") & (table.operating_point == "fixed") & (table.label == "Blur 9")].iloc[0]
    assert fixed.detected == 2  # 9 and 4 are <= 10
    assert list(thresholds_table(points)["operating_point"]) == ["fpr=0.1", "fixed", "fpr=0.1"]


def test_roc_table_and_verdicts():
    distances, impostors = frames()
    roc = roc_table(distances, impostors)
    assert set(roc["family"]) == {"blur", "(all)"}
    assert roc.set_index(["hasher", "family"]).loc[("h1", "blur"), "genuine_pairs"] == 8
    points = operating_points(distances, impostors, [0.3], {})
    verdicts = family_verdicts(detection_table(distances, points), "fpr=0.3", 0.95)
    # h2's distances and impostors are h1's doubled: identical rates, so they tie
    assert verdicts.iloc[0]["best"] == "h1 = h2" and verdicts.iloc[0]["runner_up"] == ""


@pytest.mark.parametrize("count,wanted", [(2, 1), (5, 10), (5, 3), (100, 4950), (100, 1000), (3000, 5000)])
def test_sample_pairs_are_distinct_and_ordered(count, wanted):
    i, j = sample_pairs(count, wanted, np.random.default_rng(0))
    assert len(i) == min(wanted, count * (count - 1) // 2)
    assert np.all(i < j) and np.all(i >= 0) and np.all(j < count)
    assert len(np.unique(i * count + j)) == len(i)
    again = sample_pairs(count, wanted, np.random.default_rng(0))
    assert np.array_equal(i, again[0]) and np.array_equal(j, again[1])


def test_a_sample_of_pairs_reaches_every_pair():
    """The sample is drawn from all count * (count - 1) / 2 pairs alike: drawn many times, every pair
    comes up, the last of each row of the triangle too (where the index arithmetic turns a row)."""
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(200):
        i, j = sample_pairs(7, 5, rng)
        assert sorted(zip(i.tolist(), j.tolist())) == list(zip(i.tolist(), j.tolist()))  # in the table's order
        seen.update(zip(i.tolist(), j.tolist()))
    assert seen == {(a, b) for a in range(7) for b in range(a + 1, 7)}


def test_taking_every_pair_draws_nothing_from_the_generator():
    """max_pairs at or above the number of pairs takes them all, without a draw: the transformed
    impostors drawn next from the same generator are the same whether max_pairs is 10 or 1,000."""
    for wanted in (10, 1000):
        rng = np.random.default_rng(5)
        i, j = sample_pairs(5, wanted, rng)
        assert (i.tolist(), j.tolist()) == ([0, 0, 0, 0, 1, 1, 1, 2, 2, 3], [1, 2, 3, 4, 2, 3, 4, 3, 4, 4])
        assert rng.random() == np.random.default_rng(5).random()


def _hashes(ones, rows=None):
    """aHash rows of 64 bits with the first n set, for each n of `ones`: two rows are |n - m| apart.
    `rows`: each image's row (-1: the image did not hash)."""
    from harness.hashing import Hashed

    array = np.packbits(np.arange(64)[None, :] < np.array(ones)[:, None], axis=1)
    rows = np.arange(len(ones)) if rows is None else np.array(rows)
    return Hashed(array, rows, {k: "failed" for k in np.flatnonzero(rows < 0)})


def _ahash():
    from harness.hashers import HASHERS

    hasher = HASHERS.get("aHash")()
    hasher.prepare()
    return {"aHash": hasher}


def test_source_impostors_are_every_pair_of_images_that_hashed():
    """Four images, b not hashed: the pairs without b, each once and in order, a distance apart of
    their hashes (1, 3 and 7 bits set: 2, 6 and 4). A pair with b would have read another image's row."""
    hashers = _ahash()
    vocabulary = Vocabulary(["a", "b", "c", "d"], hashers, [])
    source = {"aHash": _hashes([1, 3, 7], rows=[0, -1, 1, 2])}
    frame = source_impostors(vocabulary, source, hashers, 100, np.random.default_rng(0))
    assert frame[["image_id", "other_id"]].astype(str).values.tolist() == [["a", "c"], ["a", "d"], ["c", "d"]]
    assert frame["distance"].tolist() == [2, 6, 4]
    assert set(frame["kind"].astype(str)) == {"source"} and set(frame["hasher"].astype(str)) == {"aHash"}


@pytest.mark.parametrize("failed", [None, 2])
def test_transformed_impostors_compare_each_copy_with_other_images(failed):
    """Three images with two edited copies each (jpeg 50, blur 3), per_variant 5: as only two other
    images exist, each copy meets both of them, never its own image. Source image i has 10i bits set,
    copy c of image i 10i + 2 + 3c, so each distance is |10i + 2 + 3c - 10j|, by hand below. A source
    image that did not hash (`failed`) is nobody's impostor, yet its own copies still meet the others."""
    from harness.config import PairSpec

    hashers = _ahash()
    pairs = [PairSpec("identity", None, "identity", (), ()),
             PairSpec("jpeg", 50, "jpeg 50", (), (("jpeg", (("quality", 50),)),)),
             PairSpec("blur", 3, "blur 3", (), (("blur", (("kernel", 3),)),))]
    vocabulary = Vocabulary(["p", "q", "r"], hashers, pairs)
    rows = None if failed is None else [k if k != failed else -1 for k in range(3)]
    source = {"aHash": _hashes([0, 10, 20], rows)}
    edited = {"aHash": _hashes([10 * i + 2 + 3 * c for i in range(3) for c in range(2)])}
    frames = transformed_impostors(vocabulary, pairs, [1, 2], edited, source, hashers, 5, np.random.default_rng(0))
    frame = pd.concat(frames)
    got = sorted(zip(frame["image_id"].astype(str), frame["family"].astype(str), frame["value"].astype(str),
                     frame["other_id"].astype(str), frame["distance"]))
    names = "pqr"
    expected = sorted((names[i], family, value, names[j], abs(10 * i + 2 + 3 * c - 10 * j))
                      for i in range(3) for c, (family, value) in enumerate([("jpeg", "50"), ("blur", "3")])
                      for j in range(3) if j != i and j != failed)
    assert got == expected
    assert set(frame["kind"].astype(str)) == {"transformed"}
    again = pd.concat(transformed_impostors(vocabulary, pairs, [1, 2], edited, source, hashers, 5,
                                            np.random.default_rng(0)))
    assert frame.equals(again)  # the draws follow the seed
