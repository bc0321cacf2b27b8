"""The metrics' one grouping per hasher (harness.grouping) and the lean forms of the ROC, threshold
and retrieval numbers give what pandas' groupby and the plain whole-array definitions give, to the
bit: the tables must not change because they are computed with less memory (issue 9)."""

import numpy as np
import pandas as pd
import pytest

from harness import grouping, metrics, retrieval, storage
from harness.schema import PAIR_KEY

FAMILIES = [("jpeg", "30"), ("jpeg", "90"), ("crop", "0.9"), ("blur", "3"), ("blur", "5")]


def _distances(seed: int, images: int = 30) -> pd.DataFrame:
    """Three hashers over five pairs, rows shuffled: ties, whole and fractional distances, groups of
    one and two images, a failed hash (NaN, with its error) and an unavailable hasher."""
    rng = np.random.default_rng(seed)
    rows = []
    for image in range(images):
        for hasher in ("h1", "h0", "off"):
            for family, value in FAMILIES:
                label = f"{family} {value}"
                if hasher == "off":
                    rows.append((f"i{image}", family, value, label, hasher, np.nan, np.nan, "unavailable"))
                    continue
                if value == "5" and image > 1 or value == "3" and image > 0:  # pairs of two and one image
                    continue
                failed = rng.random() < 0.05
                distance = np.nan if failed else float(rng.integers(0, 12)) / (1 if hasher == "h1" else 7)
                rows.append((f"i{image}", family, value, label, hasher, distance, distance / 64,
                             "hash: failed" if failed else ""))
    frame = pd.DataFrame(rows, columns=["image", "family", "value", "label", "hasher", "distance", "distance_norm",
                                        "error"])
    frame.insert(1, "image_id", frame["image"])
    return frame.sample(frac=1, random_state=seed).reset_index(drop=True)


@pytest.mark.parametrize("seed", range(6))
def test_medians_quartiles_and_counts_are_pandas_own(seed):
    distances = _distances(seed)
    for groups in grouping.hasher_groups(distances):
        usable = distances[(distances["hasher"] == groups.hasher) & (distances["error"] == "")]
        grouped = usable.groupby(PAIR_KEY, sort=False, observed=True)["distance"]
        expected = pd.DataFrame({"median": grouped.median(), "q25": grouped.quantile(0.25),
                                 "q75": grouped.quantile(0.75), "count": grouped.count()}).reset_index()
        keys = groups.keys.astype(object)
        assert keys.values.tolist() == expected[PAIR_KEY].astype(object).values.tolist()  # first-seen order
        # Bit for bit: the same operations as pandas' (its C is built as ISO C11, so no fused multiply-add).
        assert np.array_equal(groups.medians(), expected["median"].to_numpy(), equal_nan=True)
        assert np.array_equal(groups.quantiles(0.25), expected["q25"].to_numpy(), equal_nan=True)
        assert np.array_equal(groups.quantiles(0.75), expected["q75"].to_numpy(), equal_nan=True)
        assert groups.counts().tolist() == expected["count"].tolist()
        for k, (family, value, label) in enumerate(groups.keys.itertuples(index=False, name=None)):
            rows = usable[(usable["family"] == family) & (usable["value"] == value)]
            assert sorted(groups.first) == list(groups.first)
            assert groups.first[k] == rows.index.min()
            assert np.array_equal(groups.pair(k), np.sort(rows["distance"].to_numpy()), equal_nan=True)


def test_the_groups_are_the_same_from_plain_text_columns_and_without_a_pairs_rows():
    plain = _distances(1)
    categorical = storage.normalise(storage.DISTANCES, plain)
    missing = plain.copy()
    missing.loc[missing.index[:3], "family"] = None  # rows of no pair: left out, as groupby leaves them out
    for table in (plain, categorical, missing):
        found = {groups.hasher: groups for groups in grouping.hasher_groups(table)}
        assert list(found) == list(dict.fromkeys(table["hasher"]))
        assert found["off"].unavailable and not found["h1"].unavailable
        assert len(found["off"]) == 0 and len(found["off"].values) == 0
        kept = table[table["family"].notna() & (table["error"] == "")]
        for hasher in ("h0", "h1"):
            assert len(found[hasher].values) == int((kept["hasher"] == hasher).sum())
    pd.testing.assert_frame_equal(metrics.family_curves(plain).astype({c: object for c in PAIR_KEY + ["hasher"]}),
                                  metrics.family_curves(categorical).astype({c: object for c in PAIR_KEY + ["hasher"]}))


@pytest.mark.parametrize("seed", range(4))
def test_the_metrics_tables_are_the_ones_of_a_whole_table_grouping(seed):
    """detection, ROC and thresholds against the same numbers from each hasher's rows taken whole."""
    distances = storage.normalise(storage.DISTANCES, _distances(seed))
    rng = np.random.default_rng(seed)
    impostors = pd.DataFrame({"hasher": np.repeat(["h1", "h0"], 200), "kind": "source",
                              "distance": rng.integers(3, 15, 400) / np.repeat([1, 7], 200)})
    points = metrics.operating_points(distances, impostors, [0.01, 0.1], {"h0": 1.0}, precisions=(0.9,))
    detection = metrics.detection_table(distances, points)
    roc = metrics.roc_table(distances, impostors)
    for hasher, hasher_points in points.items():
        usable = distances[(distances["hasher"] == hasher) & (distances["error"] == "")]
        genuine = usable["distance"].to_numpy()
        impostor = impostors.loc[impostors["hasher"] == hasher, "distance"].to_numpy()
        assert [p.threshold for p in hasher_points[:2]] == \
            [metrics.threshold_at_fpr(impostor, genuine, rate).threshold for rate in (0.01, 0.1)]
        for point in hasher_points:
            rows = detection[(detection["hasher"] == hasher) & (detection["operating_point"] == point.name)]
            for (family, value, label), part in usable.groupby(PAIR_KEY, sort=False, observed=True):
                row = rows[(rows["family"] == family) & (rows["value"] == value)].iloc[0]
                assert (row["genuine_pairs"], row["detected"]) == (len(part), int((part["distance"] <= point.threshold).sum()))
        mine = roc[roc["hasher"] == hasher].set_index("family")
        for family, part in list(usable.groupby("family", sort=False, observed=True)) + [("(all)", usable)]:
            assert mine.at[family, "auc"] == metrics.roc_auc(part["distance"].to_numpy(), impostor)
            assert mine.at[family, "eer"] == metrics.equal_error_rate(part["distance"].to_numpy(), impostor)


def _plain_auc(genuine, impostor):
    genuine, impostor = np.asarray(genuine, float)[:, None], np.asarray(impostor, float)[None, :]
    return ((genuine < impostor) + 0.5 * (genuine == impostor)).mean()


@pytest.mark.parametrize("seed", range(40))
def test_roc_and_the_fpr_threshold_follow_their_definitions(seed):
    rng = np.random.default_rng(seed)
    genuine = rng.integers(0, 12, rng.integers(1, 50)) / (1 if seed % 2 else 7)
    impostor = rng.integers(2, 15, rng.integers(1, 50)) / (1 if seed % 2 else 7)
    assert metrics.roc_auc(genuine, impostor) == pytest.approx(_plain_auc(genuine, impostor), abs=1e-15)
    thresholds, fpr, tpr = metrics.roc_curve(genuine, impostor)
    assert thresholds[0] == -np.inf and list(thresholds[1:]) == sorted(set(genuine) | set(impostor))
    assert list(fpr) == [np.mean(impostor <= t) for t in thresholds]
    assert list(tpr) == [np.mean(genuine <= t) for t in thresholds]
    for rate in (0.0, 0.05, 0.2, 1.0):
        point = metrics.threshold_at_fpr(impostor, genuine, rate)
        allowed = int(np.floor(rate * len(impostor) + 1e-9))
        bound = np.sort(impostor)[allowed] if allowed < len(impostor) else np.inf
        below = np.concatenate([impostor, genuine])
        below = below[below < bound]
        assert point.threshold == (below.max() if len(below) else None) or (not len(below) and np.isnan(point.threshold))
        assert point.false_matches == int(np.sum(impostor <= point.threshold))
        assert point.false_matches <= point.false_matches_allowed or not len(below)


@pytest.mark.parametrize("block", [3, 64, 1 << 16])
def test_retrieval_scores_walk_the_whole_curve_in_blocks(block, monkeypatch):
    """µAP, recall at 90% precision and its threshold from blocks equal those of precision_recall's
    whole arrays, to the bit, ties and NaN included."""
    monkeypatch.setattr(retrieval, "CURVE_BLOCK", block)
    rng = np.random.default_rng(block)
    for trial in range(300):
        positive = rng.integers(0, 10, rng.integers(1, 60)) / (1 if trial % 3 else 7)
        negative = rng.integers(0, 12, rng.integers(0, 60)) / (1 if trial % 3 else 7) + rng.integers(0, 3)
        if trial % 11 == 0:
            positive[0] = np.nan
        if trial % 13 == 0 and len(negative):
            negative[-1] = np.nan
        precisions, recalls, distances = retrieval.precision_recall(positive, negative)
        muap = float(((recalls - np.concatenate([[0.0], recalls[:-1]])) * precisions).sum())
        for target in (0.5, 0.9, 1.0):
            valid = precisions >= target
            if valid.any():
                best = int(np.argmax(np.where(valid, recalls, -1.0)))
                expected = (muap, float(recalls[best]), float(distances[best]))
            else:
                expected = (muap, np.nan, np.nan)
            assert np.array_equal(retrieval.retrieval_scores(positive, negative, target), expected, equal_nan=True)
