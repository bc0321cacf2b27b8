"""Verdicts that claim no more than the data show, and impostor hygiene: hand-computed cases."""

import math

import numpy as np
import pandas as pd
import pytest

from harness.config import ImpostorSpec
from harness.metrics import (
    break_points,
    family_verdicts,
    filter_impostors,
    format_percent,
    format_rate,
    hasher_verdicts,
    min_images_for,
    name_impostors,
    probable_duplicates,
    rank_with_ties,
    sample_size_warning,
    suspicious_impostors,
    unmatched_duplicates,
    wilson_interval,
)

# --- the percentage never crosses the line ------------------------------------------

@pytest.mark.parametrize("rate,line,text", [
    (0.945, 0.95, "94%"),  # 94.5 rounds half to even: below the line, and shown below it
    (0.9451, 0.95, "94.5%"),  # 95% would cross the line: one more digit
    (0.9499999, 0.95, "94.99%"),  # still 95.00 at two more digits: cut towards the rate's side
    (0.95, 0.95, "95%"),
    (0.9546, 0.9545, "95.5%"),  # above a line of 95.45%: 95% would fall below it
    (0.87, 0.95, "87%"),
    (0.87, None, "87%"),
    (float("nan"), 0.95, "n/a"),
])
def test_format_percent_never_rounds_across_the_line(rate, line, text):
    assert format_percent(rate, line) == text


def test_format_rate_gives_count_and_interval():
    # Wilson(17, 18): centre 0.8663, half-width 0.1238 -> 74.2% to 99.0%
    assert format_rate(17, 18, 0.95) == "94% (17 of 18; 95% CI 74–99%)"
    assert format_rate(0, 0) == "n/a (0 of 0)"


# --- too few images for a claim ----------------------------------------------------

def test_min_images_for_a_perfect_score_to_show_the_rate():
    # n / (n + 1.96^2) >= 0.95  <=>  n >= 72.99
    assert min_images_for(0.95) == 73
    assert wilson_interval(73, 73)[0] >= 0.95 > wilson_interval(72, 72)[0]
    assert min_images_for(0) == 1
    with pytest.raises(ValueError):
        min_images_for(1.0)


def test_sample_size_warning():
    eighteen = sample_size_warning(18, 0.95)  # 18 < 1/0.05: not one miss allowed
    assert "allows no miss at all: it means 18 of 18" in eighteen
    assert "even 18 of 18 has a 95% interval from 82%" in eighteen and "at least 73 images" in eighteen
    thirty = sample_size_warning(30, 0.95)  # one miss allowed, but a perfect score still proves little
    assert "no miss" not in thirty and "from 89%" in thirty  # 30 / 33.84
    assert sample_size_warning(100, 0.95) == ""
    assert "no number of images" in sample_size_warning(500, 1.0)


# --- tied ranks -----------------------------------------------------------------------

def test_overlapping_intervals_share_a_rank():
    rates = pd.DataFrame({"tpr": [0.5, 0.9, 0.85, 0.45], "tpr_low": [0.3, 0.8, 0.7, 0.35],
                          "tpr_high": [0.6, 0.95, 0.9, 0.55]}, index=["C", "A", "B", "D"])
    assert rank_with_ties(rates).to_dict() == {"C": 3, "A": 1, "B": 1, "D": 3}


def test_overlap_does_not_chain_and_a_rate_without_a_threshold_comes_last():
    # B overlaps A and C, but C does not overlap A, the leader: C is ranked below.
    rates = pd.DataFrame({"tpr": [0.9, 0.8, 0.7, np.nan], "tpr_low": [0.85, 0.7, 0.6, np.nan],
                          "tpr_high": [0.95, 0.86, 0.75, np.nan]}, index=["A", "B", "C", "D"])
    assert rank_with_ties(rates).tolist() == [1, 1, 3, 4]


# --- verdicts and break-points ------------------------------------------------------

def detection(counts: dict, images=20) -> pd.DataFrame:
    rows = []
    for hasher, detected in counts.items():
        for value, k in zip(["90", "50", "10"], detected):
            low, high = wilson_interval(k, images)
            rows.append({"hasher": hasher, "operating_point": "fpr=0.01", "threshold": 5.0, "resolved": True,
                         "family": "jpeg", "value": value, "label": f"JPEG {value}", "genuine_pairs": images,
                         "detected": k, "tpr": k / images, "tpr_low": low, "tpr_high": high})
    return pd.DataFrame(rows)


DETECTION = detection({"h1": [20, 19, 8], "h2": [20, 18, 12], "h3": [10, 5, 0]})


def test_hasher_verdicts_pool_counts_and_rank_with_ties():
    table = hasher_verdicts(DETECTION, "fpr=0.01", 0.95).set_index("hasher")
    assert table.loc["h1", ["detected", "genuine_pairs", "images", "strengths"]].tolist() == [47, 60, 20, 3]
    # interval over the 20 images, the independent unit: Wilson(47/60 x 20, 20) = [0.5661, 0.9092]
    assert (table.loc["h1", "tpr_low"], table.loc["h1", "tpr_high"]) == (pytest.approx(0.5661, abs=1e-4),
                                                                       pytest.approx(0.9092, abs=1e-4))
    # h2 (50/60) and h1 (47/60) overlap; h3 (15/60, up to 0.469) is below h1's 0.566
    assert table["rank"].to_dict() == {"h1": 1, "h2": 1, "h3": 3}
    assert table.loc["h1", ["held", "first_miss", "first_miss_value", "first_miss_detected"]].tolist() == [
        2, "JPEG 10", "10", 8]
    assert table.loc["h1", "break_label"] == "JPEG 10" and table.loc["h2", "break_label"] == ""


def test_family_verdict_names_the_tied_group_and_its_counts():
    verdict = family_verdicts(DETECTION, "fpr=0.01", 0.95).iloc[0]
    assert (verdict.best, verdict.tied, verdict.hashers, verdict.runner_up) == ("h2 = h1", 2, 3, "h3")
    assert (verdict.detected, verdict.genuine_pairs, verdict.images) == (50, 60, 20)
    assert verdict.mean_tpr == pytest.approx(50 / 60) and verdict.runner_up_mean_tpr == pytest.approx(0.25)
    assert (verdict.held, verdict.first_miss, verdict.first_miss_detected, verdict.first_miss_genuine_pairs) == (
        1, "JPEG 50", 18, 20)
    assert "at least 73 images" in verdict.warning  # 20 of 20 would still start at 84%


def test_break_point_is_the_first_strength_below_half():
    table = break_points(DETECTION, "fpr=0.01").set_index("hasher")
    assert table.loc["h1", ["break_label", "break_value", "detected", "genuine_pairs"]].tolist() == [
        "JPEG 10", "10", 8, 20]
    assert table.loc["h1", "tpr"] == 0.4
    assert table.loc["h2", "break_label"] == "" and pd.isna(table.loc["h2", "detected"])
    assert math.isnan(table.loc["h2", "tpr"])
    # exactly 50% is not below half: h3's break is JPEG 50 (25%), not JPEG 90 (50%)
    assert table.loc["h3", ["break_label", "tpr"]].tolist() == ["JPEG 50", 0.25]
    assert list(table.reset_index().columns[:7]) == ["hasher", "family", "break_label", "break_value", "tpr",
                                                      "detected", "genuine_pairs"]


# --- the verdicts grouped once are those of a groupby per family -------------------------
#
# hasher_verdicts, family_verdicts and break_points group the detection table once and read its
# columns as arrays (a groupby and data frames per family took minutes at 10,000 families). The
# functions below are the per-family pandas forms they replace, kept to check them against.

def _verdicts_per_family(detection, operating_point, min_tpr):
    from harness.metrics import BREAK_RATE, HASHER_VERDICT_COLUMNS

    chosen = detection[detection["operating_point"] == operating_point]
    frames = []
    for family, part in chosen.groupby("family", sort=False, observed=True):
        rows = []
        for hasher, own in part.groupby("hasher", sort=False, observed=True):
            rates, counts, totals = (own[column].to_numpy() for column in ("tpr", "detected", "genuine_pairs"))
            detected, pairs, images = int(counts.sum()), int(totals.sum()), int(totals.max())
            if own["threshold"].isna().all():
                rates, pairs = np.full(len(own), np.nan), 0
            tpr = detected / pairs if pairs else float("nan")
            low, high = wilson_interval(tpr * images, images) if pairs else (float("nan"), float("nan"))
            missed = np.flatnonzero(rates < min_tpr)[:1]
            broken = np.flatnonzero(rates < BREAK_RATE)[:1]
            rows.append({
                "family": family, "hasher": hasher, "strengths": len(own), "images": images,
                "genuine_pairs": pairs, "detected": detected, "tpr": tpr, "tpr_low": low, "tpr_high": high,
                "held": int(np.count_nonzero(rates >= min_tpr)),
                "first_miss": own["label"].iloc[missed[0]] if len(missed) else "",
                "first_miss_value": own["value"].iloc[missed[0]] if len(missed) else "",
                "first_miss_tpr": rates[missed[0]] if len(missed) else float("nan"),
                "first_miss_detected": int(counts[missed[0]]) if len(missed) else 0,
                "first_miss_genuine_pairs": int(totals[missed[0]]) if len(missed) else 0,
                "break_label": own["label"].iloc[broken[0]] if len(broken) else "",
                "break_value": own["value"].iloc[broken[0]] if len(broken) else "",
                "resolved": bool(own["resolved"].all()), "warning": sample_size_warning(images, min_tpr)})
        frame = pd.DataFrame(rows)
        frame["rank"] = _ranks_by_sorting(frame)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)[HASHER_VERDICT_COLUMNS]


def _ranks_by_sorting(rates):
    values = rates["tpr"].astype(float)
    order = values[values.notna()].sort_values(ascending=False, kind="stable").index
    ranks = pd.Series(len(order) + 1, index=rates.index, dtype=int)
    leader_low, group_rank = np.inf, 0
    for position, row in enumerate(order):
        if position == 0 or rates.at[row, "tpr_high"] < leader_low:
            leader_low, group_rank = rates.at[row, "tpr_low"], position + 1
        ranks[row] = group_rank
    return ranks


def _family_verdicts_per_family(per_hasher):
    from harness.metrics import FAMILY_VERDICT_COLUMNS

    rows = []
    for family, part in per_hasher.groupby("family", sort=False, observed=True):
        part = part.sort_values(["rank", "tpr"], ascending=[True, False], kind="stable")
        if part["tpr"].notna().any():
            part = part[part["tpr"].notna()]
        best = part[part["rank"] == 1]
        lead = best.iloc[0]
        others = part[part["rank"] > 1]
        runner = others.iloc[0] if len(others) else None
        rows.append({
            "family": family, "best": " = ".join(best["hasher"]), "mean_tpr": lead["tpr"],
            "runner_up": runner["hasher"] if runner is not None else "",
            "runner_up_mean_tpr": runner["tpr"] if runner is not None else float("nan"),
            "strengths": int(lead["strengths"]), "held": int(lead["held"]), "first_miss": lead["first_miss"],
            "first_miss_tpr": lead["first_miss_tpr"], "resolved": bool(part["resolved"].all()),
            "tied": len(best), "hashers": len(part), "detected": int(lead["detected"]),
            "genuine_pairs": int(lead["genuine_pairs"]), "images": int(lead["images"]),
            "tpr_low": lead["tpr_low"], "tpr_high": lead["tpr_high"],
            "runner_up_detected": int(runner["detected"]) if runner is not None else 0,
            "runner_up_genuine_pairs": int(runner["genuine_pairs"]) if runner is not None else 0,
            "runner_up_tpr_low": runner["tpr_low"] if runner is not None else float("nan"),
            "runner_up_tpr_high": runner["tpr_high"] if runner is not None else float("nan"),
            "first_miss_detected": int(lead["first_miss_detected"]),
            "first_miss_genuine_pairs": int(lead["first_miss_genuine_pairs"]), "warning": lead["warning"]})
    return pd.DataFrame(rows, columns=FAMILY_VERDICT_COLUMNS)


def _break_points_per_family(detection, operating_point):
    from harness.metrics import BREAK_COLUMNS, BREAK_RATE
    from harness.schema import first_seen

    chosen = detection[detection["operating_point"] == operating_point]
    rows = []
    for hasher in first_seen(chosen["hasher"]):
        own = chosen[chosen["hasher"] == hasher]
        for family, part in own.groupby("family", sort=False, observed=True):
            thresholded = part["threshold"].notna()
            broken = part[(part["tpr"] < BREAK_RATE) & thresholded].head(1)
            if len(broken):
                row = broken.iloc[0]
                rows.append({"hasher": hasher, "family": family, "break_label": row["label"],
                             "break_value": row["value"], "tpr": row["tpr"], "detected": int(row["detected"]),
                             "genuine_pairs": int(row["genuine_pairs"]), "tpr_low": row["tpr_low"],
                             "tpr_high": row["tpr_high"], "has_threshold": True})
            else:
                rows.append({"hasher": hasher, "family": family, "break_label": "", "break_value": "",
                             "tpr": float("nan"), "detected": pd.NA, "genuine_pairs": pd.NA,
                             "tpr_low": float("nan"), "tpr_high": float("nan"),
                             "has_threshold": bool(thresholded.any())})
    frame = pd.DataFrame(rows, columns=BREAK_COLUMNS)
    for column in ("detected", "genuine_pairs"):
        frame[column] = frame[column].astype("Int64")
    return frame


def _many_families(seed: int) -> pd.DataFrame:
    """A detection table of 50 families, one to four strengths each, rows shuffled (families and
    hashers interleave, each family meets its hashers in its own order): tied and equal rates, a
    hasher without a threshold everywhere and one without it at some strengths, unresolved points,
    a second operating point, and a few rows without a family."""
    rng = np.random.default_rng(seed)
    rows = []
    for family in range(50):
        images = int(rng.integers(1, 25))
        for value in range(int(rng.integers(1, 5))):
            for hasher in ("h1", "h2", "h3", "none"):
                for point in ("fpr=0.01", "fpr=0.1"):
                    pairs = images - int(rng.integers(0, 2)) if images > 1 else images
                    detected = int(rng.integers(0, pairs + 1)) if rng.random() < 0.7 else pairs
                    low, high = wilson_interval(detected, pairs)
                    threshold = np.nan if hasher == "none" or (hasher == "h3" and value == 1) else 4.0
                    rows.append({"hasher": hasher, "operating_point": point, "threshold": threshold,
                                 "resolved": bool(rng.random() < 0.9), "family": f"f{family}",
                                 "value": str(10 * value), "label": f"f{family} q{10 * value}",
                                 "genuine_pairs": pairs, "detected": detected, "tpr": detected / pairs,
                                 "tpr_low": low, "tpr_high": high})
    frame = pd.DataFrame(rows).sample(frac=1, random_state=seed).reset_index(drop=True)
    # Shuffled, each family's strengths are back in the config's order (the break-point reads them in it).
    frame = frame.sort_values("value", kind="stable").reset_index(drop=True) if seed % 2 else frame
    frame.loc[rng.choice(len(frame), 5, replace=False), "family"] = np.nan
    return frame


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("categorical", [False, True])
def test_the_verdicts_of_many_families_are_those_of_a_groupby_per_family(seed, categorical):
    frame = _many_families(seed)
    if categorical:
        frame = frame.astype({"family": "category", "hasher": "category"})
    for point in ("fpr=0.01", "fpr=0.1"):
        per_hasher = hasher_verdicts(frame, point, 0.95)
        expected = _verdicts_per_family(frame, point, 0.95)
        pd.testing.assert_frame_equal(per_hasher, expected, check_exact=True)
        assert per_hasher.map(type).equals(expected.map(type))  # the same Python types, cell by cell
        verdicts = family_verdicts(frame, point, 0.95, per_hasher)
        pd.testing.assert_frame_equal(verdicts, _family_verdicts_per_family(expected), check_exact=True)
        assert verdicts["tied"].max() > 1 and verdicts["runner_up"].ne("").any()  # ties and runners-up were met
        pd.testing.assert_frame_equal(break_points(frame, point), _break_points_per_family(frame, point),
                                      check_exact=True)


# --- impostor hygiene ---------------------------------------------------------------------

IMAGES = pd.DataFrame({"image": ["basketball1", "basketball2", "lena", "pepper"],
                       "image_id": ["a1", "b2", "c3", "d4"]})


def impostor_rows(rows):
    return pd.DataFrame(rows, columns=["hasher", "kind", "family", "value", "image_id", "other_id", "distance"])


def test_name_impostors_adds_file_names_before_the_ids():
    named = name_impostors(impostor_rows([["h1", "source", "", "", "a1", "c3", 5.0],
                                          ["h1", "source", "", "", "b2", "zz", 6.0]]), IMAGES)
    assert list(named.columns) == ["hasher", "kind", "family", "value", "image", "other", "image_id", "other_id",
                                   "distance"]
    assert named[["image", "other"]].values.tolist() == [["basketball1", "lena"], ["basketball2", ""]]


def test_suspicious_impostors_by_hand():
    # h1's impostors: 25..35 nine times each, and one pair at 2. Median 30, MAD 3, so the outlier
    # fence is 30 - 5/0.6745 x 3 = 7.76; the genuine 90th percentile of 0..6 is 5.4: the bound.
    values = [float(v) for v in range(25, 36)] * 9
    rows = [["h1", "source", "", "", "c3", "d4", v] for v in values] + [["h1", "source", "", "", "a1", "b2", 2.0]]
    rows += [["h1", "transformed", "jpeg", "50", "a1", "c3", 1.0]]  # an edited copy: not examined by default
    # h2's impostors have no spread (MAD 0): it flags nothing, even the pair at 0.
    rows += [["h2", "source", "", "", "c3", "d4", 10.0]] * 5 + [["h2", "source", "", "", "a1", "b2", 0.0]]
    impostors = impostor_rows(rows)
    distances = pd.DataFrame({"hasher": ["h1"] * 7 + ["h2"], "distance": [0, 1, 2, 3, 4, 5, 6, 0.0],
                              "error": [""] * 8})
    flagged = suspicious_impostors(distances, impostors)
    assert flagged[["hasher", "image_id", "other_id", "distance"]].values.tolist() == [["h1", "a1", "b2", 2.0]]
    assert flagged["bound"].tolist() == [pytest.approx(5.4)]
    # The median of all 101 h1 distances is still 30 and the MAD 3 with the edited copy included.
    both = suspicious_impostors(distances, impostors, kinds=("source", "transformed"))
    assert both["distance"].tolist() == [2.0, 1.0]
    # A looser genuine quantile cannot pass the fence: with a copy at 20, the farthest copy is 20
    # but the fence, 7.76, caps the bound.
    far = pd.concat([distances, pd.DataFrame({"hasher": ["h1"], "distance": [20.0], "error": [""]})])
    assert suspicious_impostors(far, impostors, genuine_quantile=1.0)["bound"].tolist() == [
        pytest.approx(30 - 5 / 0.6745 * 3)]
    # A pair AT the bound is flagged: with the farthest copy at 6 the bound is 6, and a pair at 6 is in.
    at_bound = impostor_rows(rows + [["h1", "source", "", "", "a1", "d4", 6.0]])
    flagged = suspicious_impostors(distances, at_bound, genuine_quantile=1.0)
    assert flagged["distance"].tolist() == [2.0, 6.0] and flagged["bound"].tolist() == [6.0, 6.0]


def test_probable_duplicates_groups_both_orders_and_kinds():
    suspicious = name_impostors(impostor_rows([["h1", "source", "", "", "a1", "b2", 0.0],
                                               ["h2", "transformed", "jpeg", "50", "b2", "a1", 3.0],
                                               ["h2", "source", "", "", "c3", "d4", 1.0]]), IMAGES)
    table = probable_duplicates(suspicious)
    assert table.values.tolist() == [
        ["basketball1", "basketball2", "a1", "b2", 2, "h1, h2", 2, "source, transformed"],
        ["lena", "pepper", "c3", "d4", 1, "h2", 1, "source"]]
    assert probable_duplicates(suspicious.iloc[:0]).empty


def test_filter_impostors_by_group_and_by_distance():
    impostors = name_impostors(impostor_rows([
        ["h1", "source", "", "", "a1", "b2", 0.0],  # basketball1 ~ basketball2: a listed group, by name
        ["h2", "source", "", "", "a1", "b2", 1.0],
        ["h1", "source", "", "", "a1", "c3", 2.0],  # h1 puts a1 and c3 within 3: dropped for every hasher
        ["h2", "source", "", "", "a1", "c3", 30.0],
        ["h2", "transformed", "jpeg", "50", "c3", "a1", 31.0],  # the same images, other order and kind
        ["h1", "source", "", "", "c3", "d4", 3.0],  # not below 3: kept
        ["h2", "source", "", "", "c3", "d4", 0.0]]), IMAGES)  # below 3 but for h2, which has no limit
    spec = ImpostorSpec(duplicates=(("basketball1", "b2"),), exclude_below={"h1": 3})
    kept, excluded = filter_impostors(impostors, spec)
    assert kept.index.tolist() == [5, 6] and list(kept.columns) == list(impostors.columns)
    assert excluded["excluded_by"].tolist() == ["duplicates[0]", "duplicates[0]", "exclude_below.h1",
                                                "exclude_below.h1", "exclude_below.h1"]
    kept, excluded = filter_impostors(impostors, ImpostorSpec())
    assert len(kept) == len(impostors) and excluded.empty


def test_unmatched_duplicate_names_are_reported():
    spec = ImpostorSpec(duplicates=(("basketball1", "basketbal2", "c3"),))
    expected = ("impostors.duplicates[0][1]: 'basketbal2' names no image of this run (give the name shown in "
                "images.csv, without extension, or the image id); did you mean 'basketball2'?")
    assert unmatched_duplicates(spec, IMAGES) == [expected]


def test_a_hasher_without_a_threshold_is_neither_ranked_nor_broken():
    """No threshold at the rate (too many impostors at distance 0): it detects nothing by default,
    which is neither a 0% verdict nor a break-point."""
    frame = detection({"h1": [20, 19, 8], "h2": [10, 5, 0], "none": [0, 0, 0]})
    frame.loc[frame["hasher"] == "none", "threshold"] = np.nan
    verdict = family_verdicts(frame, "fpr=0.01", 0.95).iloc[0]
    assert (verdict.best, verdict.runner_up, verdict.hashers) == ("h1", "h2", 2)
    breaks = break_points(frame, "fpr=0.01")
    assert breaks.loc[breaks["hasher"] == "none", "break_label"].tolist() == [""]
    assert breaks.loc[breaks["hasher"] == "h2", "break_label"].tolist() == ["JPEG 50"]
    # ... and its empty break_label is told apart from one that holds
    assert breaks.set_index("hasher")["has_threshold"].to_dict() == {"h1": True, "h2": True, "none": False}


def test_the_summary_says_no_threshold_where_a_hasher_has_none_not_holds():
    """Was: "holds" for a hasher that has no threshold and so detects nothing (the zoo's colorhash in
    all 35 families)."""
    from harness.summary import break_point_section

    frame = detection({"h1": [20, 19, 18], "h2": [10, 5, 0], "none": [0, 0, 0]})
    frame.loc[frame["hasher"] == "none", "threshold"] = np.nan
    text = "\n".join(break_point_section({"break_points": break_points(frame, "fpr=0.01"), "chosen": "fpr=0.01"}))
    assert ("| family | h1 | h2 | none |\n| --- | --- | --- | --- |\n"
            "| jpeg | holds | JPEG 50 (25% (5 of 20; 95% CI 11–47%)) | no threshold |") in text


@pytest.mark.parametrize("counts, said", [
    ({"p = 1": [20, 18, 12], "h2": [20, 19, 8], "h3": [20, 18, 10]}, "| jpeg | all 3 tied: p = 1, h3, h2 |"),
    ({"a = b": [20, 18, 12], "h2": [20, 18, 11], "h3": [20, 18, 10], "h4": [20, 19, 8], "low": [10, 5, 0]},
     "| jpeg | 4 tied: a = b, h2, h3, ... |"),
])
def test_the_answer_counts_the_tied_hashers_not_the_pieces_of_their_joined_ids(counts, said):
    """Was "4 tied: p, 1, h2, ..." of 3 hashers: the count came from splitting `best` on " = ",
    which a hasher's id may hold, not from its `tied` column."""
    from harness.summary import answer_section

    frame = detection(counts)
    per_hasher = hasher_verdicts(frame, "fpr=0.01", 0.95)
    thresholds = pd.DataFrame({"hasher": list(counts), "operating_point": "fpr=0.01", "impostor_pairs": 100,
                               "threshold": 10.0, "resolved": True})
    text = "\n".join(answer_section({
        "verdicts": family_verdicts(frame, "fpr=0.01", 0.95, per_hasher), "hasher_verdicts": per_hasher,
        "chosen": "fpr=0.01", "rate": 0.01, "min_tpr": 0.95, "thresholds": thresholds,
        "figures": {"matrix": "m", "detection": "d"}, "families": ["jpeg"]}))
    assert said in text.replace("\\", "")  # md() escapes the ids' "=" and "_" for Markdown


def test_the_figures_draw_no_rate_for_a_hasher_without_a_threshold():
    """Its empty matches are no 0%: a grey "none" cell in the matrix, no line in the detection figure."""
    from harness.figures import detection_figure, detection_matrix

    frame = detection({"h1": [20, 19, 8], "none": [0, 0, 0]})
    frame.loc[frame["hasher"] == "none", "threshold"] = np.nan
    matrix = detection_matrix(frame, "fpr=0.01", ["h1", "none"])
    assert list(matrix.columns) == ["h1", "none"] and np.isnan(matrix.at["jpeg", "none"])
    figure = detection_figure(frame, "fpr=0.01", ["h1", "none"])
    assert len(figure.axes[0].get_lines()) == 1
    assert any("no threshold at fpr=0.01: none" in text.get_text() for text in figure.texts)


def test_the_planted_duplicates_example_finds_both_copies_and_listing_them_raises_the_threshold(capsys):
    """The README's "Impostor hygiene" figures come from this example: both planted copies are
    listed as probable duplicates, and listing them moves aHash's 1% threshold up."""
    from examples.planted_duplicates import PLANTED, main

    main()
    out = capsys.readouterr().out
    for source, copy, _ in PLANTED:
        assert any(source in line and copy in line and "flagged by" in line for line in out.splitlines()), out
    found, listed = (float(line.rsplit(": ", 1)[1]) for line in out.splitlines() if line.startswith("aHash's"))
    assert listed > found, out


def test_the_summary_does_not_ask_to_list_duplicates_the_config_already_leaves_out():
    """A pair listed under impostors.duplicates is still found as a probable duplicate (the search
    reads every impostor): the summary counts it among the excluded, and asks to list only the others."""
    from types import SimpleNamespace

    from harness.summary import hygiene_section

    duplicates = pd.DataFrame({"image": ["a", "c"], "other": ["b", "d"], "image_id": ["1", "3"],
                               "other_id": ["2", "4"], "hashers": [2, 2], "flagged_by": ["aHash, pHash"] * 2})
    thresholds = pd.DataFrame({"hasher": ["aHash"], "operating_point": ["fpr=0.01"], "threshold": [9.0]})
    excluded = pd.DataFrame({"image_id": ["2", "2", "5"], "other_id": ["1", "1", "6"],
                             "excluded_by": ["duplicates[0]", "duplicates[0]", "exclude_below"]})
    metrics = SimpleNamespace(duplicates=duplicates, excluded=excluded, thresholds=thresholds,
                              thresholds_unfiltered=thresholds.assign(threshold=7.0))
    text = "\n".join(hygiene_section(metrics))
    assert "1 pair of *different* source images is" in text and "| c | d |" in text and "| a | b |" not in text
    assert ("3 impostor distances were left out (2 by `duplicates[0]`, 1 by `exclude_below`), among them those of "
            "1 pair of source images that look like copies of one picture.") in text
    metrics.excluded = excluded.iloc[:0]
    assert "2 pairs of *different* source images" in "\n".join(hygiene_section(metrics))


def test_listed_duplicates_leave_the_thresholds_and_roc_but_are_still_found(tmp_path):
    """impostors.duplicates takes a pair out of every number made from impostors (thresholds and
    ROC alike), while the search for probable duplicates still reads every impostor: the pair
    stays listed, so the summary can say the config leaves it out."""
    import cv2

    from harness import evaluate
    from harness.images import BUILTIN_IMAGES, load_builtin
    from harness.metrics import ALL_FAMILIES, impostor_distances, roc_auc
    from harness.transforms import apply_chain

    paths = []
    for name in BUILTIN_IMAGES[:8]:
        paths.append(str(tmp_path / f"{name}.png"))
        cv2.imwrite(paths[-1], load_builtin(name))
    paths.append(str(tmp_path / "astronaut_copy.png"))
    cv2.imwrite(paths[-1], apply_chain(load_builtin("astronaut"), [("jpeg", {"quality": 80})]))
    config = {"name": "planted", "images": paths, "hashers": ["aHash", "pHash"],
              "sweeps": [{"family": "jpeg", "b": {"jpeg": {"quality": "$value"}}, "values": [50, 30]},
                         {"family": "blur", "b": {"blur": {"kernel": 3}}}]}
    found = evaluate(config, progress=False)
    listed = evaluate({**config, "impostors": {"duplicates": [["astronaut", "astronaut_copy"]]}}, progress=False)
    for results in (found, listed):
        assert [sorted(pair) for pair in zip(results.metrics.duplicates["image"], results.metrics.duplicates["other"])
                ] == [["astronaut", "astronaut_copy"]]
    assert len(found.metrics.excluded) == 0 and len(listed.metrics.excluded) > 0
    for results, spec in ((found, ImpostorSpec()), (listed, ImpostorSpec(duplicates=(("astronaut", "astronaut_copy"),)))):
        kept, _ = filter_impostors(results.impostors, spec)
        for hasher in ("aHash", "pHash"):
            impostor = impostor_distances(kept, hasher)
            genuine = results.distances.query("hasher == @hasher and error == ''")["distance"].to_numpy(float)
            roc = results.roc.set_index(["hasher", "family"]).loc[(hasher, ALL_FAMILIES)]
            pairs = results.thresholds.query("hasher == @hasher")["impostor_pairs"].unique().tolist()
            assert roc["impostor_pairs"] == len(impostor) and pairs == [len(impostor)]
            assert roc["auc"] == pytest.approx(roc_auc(genuine, impostor), abs=1e-12)
    assert listed.roc["impostor_pairs"].max() < found.roc["impostor_pairs"].max()
