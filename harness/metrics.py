"""Tables from the long distance table. Pure: data frames in, data frames out.

The distance table has one row per (image, pair, hasher); `value` is kept as
the text the config gave ("2.0" stays "2.0") so tables rebuilt from CSV are
byte-identical to the first ones. Lower distances always mean closer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.grouping import PairGroups, hasher_groups
from harness.schema import (PAIR_KEY, ROWS_BLOCK, UNAVAILABLE, category_codes, first_seen, first_seen_categorical,
                            python_texts, text_categories)
THRESHOLD_COLUMNS = ["hasher", "operating_point", "fpr_target", "threshold", "impostor_pairs", "false_matches_allowed",
                     "false_matches", "fpr_measured", "resolved", "precision_target", "genuine_pairs", "detected",
                     "precision_measured"]
DETECTION_COLUMNS = ["hasher", "operating_point", "threshold", "resolved", "family", "value", "label",
                     "genuine_pairs", "detected", "tpr", "tpr_low", "tpr_high"]
ROC_COLUMNS = ["hasher", "family", "genuine_pairs", "impostor_pairs", "auc", "eer"]


def hasher_order(distances: pd.DataFrame) -> list[str]:
    return first_seen(distances["hasher"])


def article_table(distances: pd.DataFrame) -> pd.DataFrame:
    """Rows = pairs in config order, one column per hasher: the median distance over the images
    whose distance could be computed (the distance itself for one image). A hasher that could not
    run reads 'unavailable'; a cell whose every distance failed reads 'error'."""
    pairs = _distinct_pairs(distances)
    table = pairs.copy()
    for groups in hasher_groups(distances):
        table[groups.hasher] = _article_column(pairs, groups)
    return table


def _article_column(pairs: pd.DataFrame, groups: PairGroups):
    """One hasher's column of the article table, for `pairs` (the table's rows)."""
    if groups.unavailable:
        return UNAVAILABLE
    median = dict(zip(groups.keys.itertuples(index=False, name=None), groups.medians()))
    cells = (median.get(key, np.nan) for key in pairs.itertuples(index=False, name=None))
    return [format_number(v) if np.isfinite(v) else "error" for v in cells]


def _distinct_pairs(distances: pd.DataFrame) -> pd.DataFrame:
    """The pairs (PAIR_KEY) in order of first appearance, found block by block: hashing a million
    rows' three columns at once took most of the 70 MiB the article table took at 100,000 images."""
    pairs = distances[PAIR_KEY]
    parts = [pairs.iloc[start:start + ROWS_BLOCK].drop_duplicates() for start in range(0, len(pairs), ROWS_BLOCK)]
    return (pd.concat(parts).drop_duplicates() if parts else pairs).reset_index(drop=True)


def hasher_rows(distances: pd.DataFrame, hasher: str, columns: list[str], usable: bool = True) -> pd.DataFrame:
    """One hasher's rows (only those without an error if `usable`), with only `columns`, numbered
    from 0: a third of a million-row table and a few of its columns at a time (a mask's `.loc`
    would also copy the rows' labels, 3 MiB per 400,000 rows)."""
    rows = (distances["hasher"] == hasher).to_numpy()
    if usable:
        rows = rows & (distances["error"] == "").to_numpy()
    return pd.DataFrame({column: distances[column].array[rows] for column in columns}, copy=False)


CURVE_COLUMNS = PAIR_KEY + ["hasher", "median", "q25", "q75", "images", "x"]


def family_curves(distances: pd.DataFrame) -> pd.DataFrame:
    """Per (family, value, hasher): the median normalised distance over images and its
    inter-quartile band, the count of images, and the swept value as a number (NaN if none);
    in the order the (pair, hasher) groups first appear among the usable rows."""
    return _curves([_curve_part(distances, groups) for groups in hasher_groups(distances)])


def _curve_part(distances: pd.DataFrame, groups: PairGroups) -> pd.DataFrame:
    """One hasher's curves, with each pair's first row (`first`) to order them among the others'."""
    norm = groups.sorted_column(distances["distance_norm"])
    part = groups.keys.copy()
    part["hasher"] = pd.array([groups.hasher] * len(groups), dtype=distances["hasher"].dtype)
    part["median"] = groups.medians(norm)
    part["q25"] = groups.quantiles(0.25, norm)
    part["q75"] = groups.quantiles(0.75, norm)
    part["images"] = groups.counts(norm).astype(np.int64)
    part["first"] = groups.first
    return part


def _curves(parts: list[pd.DataFrame]) -> pd.DataFrame:
    if not parts:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    curves = pd.concat(parts, ignore_index=True).sort_values("first", kind="stable").drop(columns="first")
    curves = curves.reset_index(drop=True)
    curves["x"] = pd.to_numeric(curves["value"], errors="coerce")
    return curves


def format_number(value: float) -> str:
    """Six significant digits: integers (Hamming distances) print without a decimal point. The text
    of table.csv's cells, read by programs: no thousands separators (summary.md's tables and lines
    have them, markdown.number)."""
    return f"{value:.6g}"


# --- detection: what a distance means against the impostor baseline -------------
#
# Decision rule, everywhere: a pair is called a match when distance <= threshold.
# Genuine pairs are an image and its edited copy; impostor pairs are different
# images. Rates are exact counts over the observed distances, ties included.

Z95 = 1.959963984540054  # two-sided 95% normal quantile


@dataclass(frozen=True)
class OperatingPoint:
    name: str  # "fpr=0.01", "precision=0.9" or "fixed"
    fpr_target: float  # NaN unless the point targets a false-positive rate
    threshold: float  # NaN: no threshold reaches the target (nothing may be called a match)
    impostor_pairs: int
    # fpr: floor(fpr_target * impostor_pairs); precision: what the target tolerates; fixed: None (no target)
    false_matches_allowed: int | None
    false_matches: int  # impostor pairs at or below the threshold
    resolved: bool  # enough pairs to measure the target at all
    precision_target: float = float("nan")  # NaN unless the point targets a precision
    genuine_pairs: int = 0  # genuine pairs of the hasher (all families), when known
    detected: int = 0  # genuine pairs at or below the threshold

    @property
    def fpr_measured(self) -> float:
        return self.false_matches / self.impostor_pairs if self.impostor_pairs else float("nan")

    @property
    def precision_measured(self) -> float:
        """Of the pairs called matches, the share that are genuine (NaN when nothing matches)."""
        called = self.detected + self.false_matches
        return self.detected / called if called else float("nan")


def threshold_at_fpr(impostor: np.ndarray, genuine: np.ndarray, fpr: float) -> OperatingPoint:
    """The largest threshold whose false-positive rate on the impostors is at most `fpr`.

    With n impostor distances, k = floor(fpr * n) false matches are allowed, so the
    threshold must stay below the (k+1)-th smallest impostor distance d. Any value in
    [largest observed distance below d, d) gives the same rates on these data; we report
    that observed value (genuine or impostor), so Hamming thresholds stay whole numbers.
    With n < 1/fpr not even one false match is allowed and the rate cannot be resolved:
    `resolved` is False and the threshold merely sits below the closest impostor.
    """
    impostor = np.sort(np.asarray(impostor, dtype=np.float64))
    genuine = np.asarray(genuine, dtype=np.float64)
    n = len(impostor)
    name = f"fpr={fpr:g}"
    if n == 0:
        return OperatingPoint(name, fpr, float("nan"), 0, 0, 0, False, genuine_pairs=len(genuine))
    allowed = int(np.floor(fpr * n + 1e-9))
    bound = impostor[allowed] if allowed < n else np.inf
    # The largest observed distance below `bound`, from each side without joining them (400,000
    # genuine distances at 100,000 images): the impostors' is the last before `bound`, sorted.
    below = []
    if not np.isnan(bound):
        before = int(np.searchsorted(impostor, bound, side="left"))
        if before:
            below.append(float(impostor[before - 1]))
        under = genuine < bound
        if under.any():
            below.append(float(np.max(genuine, where=under, initial=-np.inf)))
    threshold = max(below) if below else float("nan")
    false_matches = int(np.searchsorted(impostor, threshold, side="right")) if below else 0
    return OperatingPoint(name, fpr, threshold, n, allowed, false_matches, resolved=allowed >= 1,
                          genuine_pairs=len(genuine), detected=int(np.count_nonzero(genuine <= threshold)))


def threshold_at_precision(genuine: np.ndarray, impostor: np.ndarray, precision: float) -> OperatingPoint:
    """The threshold of highest recall whose precision is at least `precision` (perception's
    "recall at a precision target"), ties counted together.

    At a threshold t every pair at distance <= t is called a match, so a threshold is valid only
    if ALL pairs at or below it, genuine and impostor alike, reach the precision together: pairs at
    equal distances are never split by rank. (perception's `compute_threshold_precision_recall`
    counts the i-th smallest genuine distance as i true matches even when many genuine pairs tie
    at it, so with one impostor at distance 0 it reports 0 recall even for unedited copies.)
    Among valid thresholds we take the one of highest recall and, among those, the smallest
    (fewest false matches); it is always an observed genuine distance. This is the same point as
    `harness.retrieval.recall_at_precision` (the ISC's rule): both count ties in the worst case.
    Perception stops at the first threshold whose precision falls below the target; we do not,
    because precision over a handful of pairs at the smallest distances is noise, not a ceiling.
    With no valid threshold, the threshold is NaN and nothing is called a match.
    """
    genuine = np.sort(np.asarray(genuine, dtype=np.float64))
    impostor = np.sort(np.asarray(impostor, dtype=np.float64))
    name = f"precision={precision:g}"
    candidates = np.unique(genuine)
    detected = np.searchsorted(genuine, candidates, side="right")
    false = np.searchsorted(impostor, candidates, side="right")
    valid = detected / (detected + false) >= precision if len(candidates) else np.zeros(0, bool)
    # As for a false-positive rate (n < 1/r): when the copies matched cannot tolerate even one false
    # match, the target is not measured, only "no false match at all" (99.99% needs 9,999 copies).
    if not valid.any():
        resolved = len(impostor) > 0 and _tolerated(len(genuine), precision) >= 1
        return OperatingPoint(name, float("nan"), float("nan"), len(impostor), 0, 0, resolved,
                              precision_target=precision, genuine_pairs=len(genuine))
    best = int(np.argmax(np.where(valid, detected, -1)))  # the smallest threshold of highest recall
    tp, fp = int(detected[best]), int(false[best])
    resolved = len(impostor) > 0 and _tolerated(tp, precision) >= 1
    return OperatingPoint(name, float("nan"), float(candidates[best]), len(impostor), _tolerated(tp, precision), fp,
                          resolved, precision_target=precision, genuine_pairs=len(genuine), detected=tp)


def _tolerated(detected: int, precision: float) -> int:
    """The most false matches `detected` true ones can come with while precision stays >= target."""
    if precision <= 0:
        return np.iinfo(np.int64).max
    allowed = int(np.floor(detected * (1 - precision) / precision + 1e-9))
    while allowed > 0 and detected / (detected + allowed) < precision:  # the same test as above, exactly
        allowed -= 1
    while detected / (detected + allowed + 1) >= precision:
        allowed += 1
    return allowed


def fixed_threshold(impostor: np.ndarray, threshold: float, genuine: np.ndarray | None = None) -> OperatingPoint:
    impostor = np.asarray(impostor, dtype=np.float64)
    genuine = np.asarray([] if genuine is None else genuine, dtype=np.float64)
    return OperatingPoint("fixed", float("nan"), float(threshold), len(impostor), None,
                          int(np.count_nonzero(impostor <= threshold)), resolved=len(impostor) > 0,
                          genuine_pairs=len(genuine), detected=int(np.count_nonzero(genuine <= threshold)))


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion; sound at 0 and 1, where the normal one is not."""
    if trials == 0:
        return float("nan"), float("nan")
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * np.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    # At 0 and 1 the bound is exactly 0 or 1; say so rather than 0.9999999999999999.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return float(low), float(high)


def poisson_quantile(q: float, mean: float) -> float:
    """The smallest count k with P(N <= k) >= q, N a Poisson count of that mean: the chance variation
    of a count of rare events (false flags among many pairs). scipy.special inverts the Poisson CDF
    continuously in k (rounded up here); scipy.stats' ppf does the same but takes a second to import."""
    from scipy.special import ndtri, pdtrik

    if not mean > 0:
        return 0.0
    k = pdtrik(q, mean)
    if not np.isfinite(k):  # means of 10^12 and more, where the normal approximation is exact to a count
        k = mean + ndtri(q) * np.sqrt(mean)
    return float(max(0, np.ceil(k)))


def roc_auc(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """P(genuine distance < impostor distance), ties counted half (Mann-Whitney)."""
    if not len(genuine) or not len(impostor):
        return float("nan")
    return _auc(counted(genuine), counted(impostor))


def roc_curve(genuine: np.ndarray, impostor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, false-positive rates, true-positive rates) at every observed distance,
    starting from 'nothing matches' (-inf, 0, 0)."""
    return _curve(counted(genuine), counted(impostor))


def equal_error_rate(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """The rate where false positives equal false negatives, linearly interpolated on the ROC."""
    if not len(genuine) or not len(impostor):
        return float("nan")
    return _eer(counted(genuine), counted(impostor))


# The ROC works on distances counted per distinct value (`counted`): a hasher's impostors are
# counted once for all its families' AUC and EER (_roc_rows), not sorted again for each, and no
# array is the size of the genuine pairs. Every count is a whole number, so the sums are exact.

def counted(distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct distances, ascending (NaN last), and how often each occurs."""
    return np.unique(np.asarray(distances, dtype=np.float64), return_counts=True)


def _at_or_below(distances: tuple, thresholds: np.ndarray, side: str = "right") -> np.ndarray:
    """How many of the `counted` distances are at or below each threshold (below it: side="left")."""
    values, times = distances
    return np.concatenate([[0], np.cumsum(times)])[np.searchsorted(values, thresholds, side=side)]


def _auc(genuine: tuple, impostor: tuple) -> float:
    values, times = genuine
    left, right = _at_or_below(impostor, values, "left"), _at_or_below(impostor, values)
    total = int(impostor[1].sum())
    return float((times * (total - right + 0.5 * (right - left))).sum() / (int(times.sum()) * total))


def _curve(genuine: tuple, impostor: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    thresholds = np.concatenate([[-np.inf], np.union1d(genuine[0], impostor[0])])
    fpr = _at_or_below(impostor, thresholds) / max(1, int(impostor[1].sum()))
    tpr = _at_or_below(genuine, thresholds) / max(1, int(genuine[1].sum()))
    return thresholds, fpr, tpr


def _eer(genuine: tuple, impostor: tuple) -> float:
    _, fpr, tpr = _curve(genuine, impostor)
    fnr = 1.0 - tpr
    crossed = int(np.argmax(fpr >= fnr))  # fpr rises from 0 and fnr falls to 0: they cross
    if crossed == 0:
        return float(fpr[0])
    f0, f1, r0, r1 = fpr[crossed - 1], fpr[crossed], fnr[crossed - 1], fnr[crossed]
    step = (r0 - f0) / ((r0 - f0) - (r1 - f1))
    return float(f0 + step * (f1 - f0))


def impostor_distances(impostors: pd.DataFrame, hasher: str) -> np.ndarray:
    """One hasher's impostor distances, in the table's order."""
    return impostors.loc[impostors["hasher"] == hasher, "distance"].to_numpy(dtype=np.float64)


def operating_points(distances: pd.DataFrame, impostors: pd.DataFrame, fprs, fixed: dict,
                     precisions=()) -> dict:
    """Per hasher: its operating points, one per target FPR, then one per target precision,
    then the fixed threshold if given (unavailable hashers have none)."""
    points = {}
    for groups in hasher_groups(distances):
        if len(groups.values):
            points[groups.hasher] = _hasher_points(groups, impostor_distances(impostors, groups.hasher), fprs, fixed,
                                                   precisions)
    return points


def _hasher_points(groups: PairGroups, impostor: np.ndarray, fprs, fixed: dict, precisions) -> list[OperatingPoint]:
    genuine = groups.values  # every pair's: the order does not matter to a threshold
    points = [threshold_at_fpr(impostor, genuine, rate) for rate in fprs]
    points += [threshold_at_precision(genuine, impostor, target) for target in precisions]
    if groups.hasher in fixed:
        points.append(fixed_threshold(impostor, fixed[groups.hasher], genuine))
    return points


def thresholds_table(points: dict) -> pd.DataFrame:
    """One row per hasher and operating point: its target (fpr_target or precision_target, the
    other NaN; both NaN for `fixed`), the threshold (distance <= threshold is a match; NaN when no
    threshold reaches the target), the impostor pairs and how many of them are matches
    (false_matches, fpr_measured) against false_matches_allowed (empty for `fixed`), whether the target can be
    measured (resolved), and the genuine pairs of the hasher over all families with how many are
    matches (detected) and the share of matches that are genuine (precision_measured)."""
    rows = [{"hasher": hasher, "operating_point": p.name, "fpr_target": p.fpr_target, "threshold": p.threshold,
             "impostor_pairs": p.impostor_pairs, "false_matches_allowed": p.false_matches_allowed,
             "false_matches": p.false_matches, "fpr_measured": p.fpr_measured, "resolved": p.resolved,
             "precision_target": p.precision_target, "genuine_pairs": p.genuine_pairs, "detected": p.detected,
             "precision_measured": p.precision_measured}
            for hasher, hasher_points in points.items() for p in hasher_points]
    table = pd.DataFrame(rows, columns=THRESHOLD_COLUMNS)
    # Empty for a `fixed` row, which has no target to allow false matches by (was 0 beside its count).
    table["false_matches_allowed"] = table["false_matches_allowed"].astype("Int64")
    return table


def detection_table(distances: pd.DataFrame, points: dict) -> pd.DataFrame:
    """Per hasher, operating point and pair (family, value): how many edited copies are still
    matched (distance <= threshold) out of how many images, with a 95% Wilson interval."""
    rows = []
    for groups in hasher_groups(distances, list(points)):
        rows += _detection_rows(groups, points[groups.hasher])
    return pd.DataFrame(rows, columns=DETECTION_COLUMNS)


def _detection_rows(groups: PairGroups, points: list[OperatingPoint]) -> list[dict]:
    keys = list(groups.keys.itertuples(index=False, name=None))
    rows = []
    for point in points:
        for k, (family, value, label) in enumerate(keys):
            values = groups.pair(k)
            detected = int(np.count_nonzero(values <= point.threshold))
            low, high = wilson_interval(detected, len(values))
            rows.append({"hasher": groups.hasher, "operating_point": point.name, "threshold": point.threshold,
                         "resolved": point.resolved, "family": family, "value": value, "label": label,
                         "genuine_pairs": len(values), "detected": detected,
                         "tpr": detected / len(values), "tpr_low": low, "tpr_high": high})
    return rows


ALL_FAMILIES = "(all)"


def roc_table(distances: pd.DataFrame, impostors: pd.DataFrame) -> pd.DataFrame:
    """ROC AUC and equal error rate per hasher, per family and over all families,
    each family's genuine distances against the hasher's whole impostor baseline."""
    rows = []
    for groups in hasher_groups(distances):
        rows += _roc_rows(groups, impostor_distances(impostors, groups.hasher))
    return pd.DataFrame(rows, columns=ROC_COLUMNS)


def _roc_rows(groups: PairGroups, impostor: np.ndarray) -> list[dict]:
    if not len(groups.values):
        return []
    baseline = counted(impostor)  # once for every family
    rows = []
    for family, values in groups.families() + [(ALL_FAMILIES, groups.values)]:
        genuine = counted(values)
        auc, eer = (_auc(genuine, baseline), _eer(genuine, baseline)) if len(impostor) else (np.nan, np.nan)
        rows.append({"hasher": groups.hasher, "family": family, "genuine_pairs": len(values),
                     "impostor_pairs": len(impostor), "auc": auc, "eer": eer})
    return rows


# --- verdicts: say only what the data supports ------------------------------------
#
# Every rate goes out with its count (k of n) and a 95% Wilson interval; hashers whose
# intervals overlap share a rank; a claim that the sample is too small to make carries a
# warning; and no percentage is rounded across the line the reader compares it with.

BREAK_RATE = 0.5  # the break-point: the first strength at which fewer than half the copies are detected


def format_percent(rate: float, line: float | None = None, digits: int = 0) -> str:
    """`rate` as a percentage with `digits` decimals, never rounded across `line`.

    94.5% against a 95% line prints "94.5%" (or "94%"), never "95%": digits are added (up to
    two more) until the shown value sits on the same side of the line as the rate, and past
    that the value is cut towards the rate's side (94.999% rather than 95.00%)."""
    if rate is None or not np.isfinite(rate):
        return "n/a"
    if line is None or not np.isfinite(line):
        return f"{100 * rate:.{digits}f}%"
    above = rate >= line
    mark = round(100 * line, 10)
    for shown_digits in range(digits, digits + 3):
        shown = round(100 * rate, shown_digits)
        if (shown >= mark) == above:
            return f"{shown:.{shown_digits}f}%"
    scale = 10 ** shown_digits
    shown = (np.ceil if above else np.floor)(100 * rate * scale) / scale
    return f"{shown:.{shown_digits}f}%"


def format_rate(detected: int, total: int, line: float | None = None, digits: int = 0) -> str:
    """'94.4% (17 of 18; 95% CI 74–99%)': the rate, its count and its Wilson interval, none of
    them rounded across `line`."""
    if not total:
        return "n/a (0 of 0)"
    low, high = wilson_interval(detected, total)
    return (f"{format_percent(detected / total, line, digits)} ({detected:,} of {total:,}; 95% CI "
            f"{format_percent(low, line, digits)[:-1]}–{format_percent(high, line, digits)})")


def min_images_for(min_tpr: float) -> int:
    """The fewest images for which a perfect score (n of n) has a 95% Wilson interval starting at
    or above `min_tpr`: n / (n + z^2) >= min_tpr, i.e. n >= z^2 min_tpr / (1 - min_tpr)."""
    if not 0 <= min_tpr < 1:
        raise ValueError(f"min_tpr must be in [0, 1) to be shown by any number of images, got {min_tpr}")
    n = max(1, int(np.ceil(Z95 * Z95 * min_tpr / (1 - min_tpr) - 1e-9)))
    while wilson_interval(n, n)[0] < min_tpr:  # guard the float arithmetic of the closed form
        n += 1
    return n


def sample_size_warning(images: int, min_tpr: float) -> str:
    """Why `images` images cannot support the claim "detected at >= min_tpr", or "" if they can.

    Two reasons, both about the sample, not the hasher: with fewer than 1/(1 - min_tpr) images,
    reaching min_tpr allows no miss at all; and unless even a perfect score's 95% interval starts
    at or above min_tpr, a rate at the line is not evidence that the true rate is there."""
    if images <= 0:
        return "no images: nothing can be claimed"
    line = format_percent(min_tpr)
    reasons = []
    if np.floor(images * (1 - min_tpr) + 1e-9) < 1:
        reasons.append(f"with {images:,} {'image' if images == 1 else 'images'}, a detection rate of {line} or more "
                       f"allows no miss at all: it means {images:,} of {images:,}")
    low = wilson_interval(images, images)[0]
    if low < min_tpr:
        needed = f"at least {min_images_for(min_tpr):,} images are" if min_tpr < 1 else "no number of images is"
        reasons.append(f"even {images:,} of {images:,} has a 95% interval from {format_percent(low, min_tpr)}: "
                       f"{needed} needed before a perfect score shows a rate of {line}")
    return "; ".join(reasons)


def rank_with_ties(rates: pd.DataFrame, rate: str = "tpr", low: str = "tpr_low", high: str = "tpr_high") -> pd.Series:
    """A rank per row (1 = best) where rows whose 95% intervals overlap their group's leader's share
    a rank.

    Rows are taken by decreasing rate; the first row leads a group, and each next row joins it
    when its interval overlaps the LEADER's interval, else it leads the next group. Overlap does
    not chain: with A ~ B and B ~ C, C joins A's group only if it overlaps A itself (chaining
    once put a hasher detecting 0 of 54 copies in one tie with one detecting 54 of 54). Ranks skip
    like sports ranks (1, 1, 3). Overlap of two 95% intervals is a conservative test: rates whose
    intervals touch may still differ, but the data do not show it at that level. A row without a
    rate (NaN: its hasher has no threshold there) is ranked after every other, on its own."""
    ranks = tie_ranks(rates[rate].to_numpy(dtype=float), rates[low].to_numpy(), rates[high].to_numpy())
    return pd.Series(ranks, index=rates.index, dtype=int)


def tie_ranks(rates: np.ndarray, lows: np.ndarray, highs: np.ndarray) -> list[int]:
    """rank_with_ties on one group's arrays (rate, interval), a rank per position: the verdicts rank
    every family's hashers, and a Series per family cost more than the ranking."""
    rated = np.flatnonzero(~np.isnan(rates))
    order = rated[np.argsort(-rates[rated], kind="stable")]  # by decreasing rate, ties in table order
    ranks = [len(order) + 1] * len(rates)
    leader_low, group_rank = np.inf, 0
    for position, row in enumerate(order.tolist()):
        if position == 0 or highs[row] < leader_low:
            leader_low, group_rank = lows[row], position + 1
        ranks[row] = group_rank
    return ranks


def _row_groups(frame: pd.DataFrame, key: str) -> list[np.ndarray]:
    """The positions of each group's rows of `frame` by `key`, as pandas' groupby(sort=False,
    observed=True) gives the groups: in the order they first appear, rows in the table's order, a
    row without the key in none."""
    numbers = _group_numbers(frame, [key])
    kept = np.flatnonzero(numbers >= 0)
    order = kept[np.argsort(numbers[kept], kind="stable")]
    return np.split(order, np.flatnonzero(np.diff(numbers[order])) + 1) if len(order) else []


def _nested_groups(frame: pd.DataFrame, outer: str, inner: str):
    """For each group of `frame` by `outer`, the positions of its rows in each of its groups by
    `inner` (a list of arrays), as pandas' groupby(sort=False, observed=True) on `outer` and then
    on each part's `inner` gives them: groups in the order they first appear, rows in the table's
    order, a row without either key in none. One grouping of the whole table, not one per group."""
    outer_number = _group_numbers(frame, [outer])
    pair_number = _group_numbers(frame, [outer, inner])
    kept = np.flatnonzero((outer_number >= 0) & (pair_number >= 0))
    if not len(kept):
        return
    first = np.full(int(pair_number.max()) + 1, len(frame))
    np.minimum.at(first, pair_number[kept], kept)  # each inner group's first row
    order = kept[np.lexsort((kept, first[pair_number[kept]], outer_number[kept]))]
    starts = np.flatnonzero(np.diff(pair_number[order], prepend=-1))
    pairs = np.split(order, starts[1:])
    outer_starts = np.flatnonzero(np.diff(outer_number[order[starts]], prepend=-1))
    for start, end in zip(outer_starts.tolist(), outer_starts[1:].tolist() + [len(pairs)]):
        yield pairs[start:end]


def _group_numbers(frame: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """Each row's group by `keys`, numbered as pandas' groupby(sort=False, observed=True) iterates
    the groups (-1: a row with a missing key, in no group)."""
    numbers = frame.groupby(keys, sort=False, observed=True).ngroup().to_numpy(dtype=np.float64)
    return np.where(np.isnan(numbers), -1, numbers).astype(np.int64)


HASHER_VERDICT_COLUMNS = ["family", "hasher", "strengths", "images", "genuine_pairs", "detected", "tpr", "tpr_low",
                          "tpr_high", "rank", "held", "first_miss", "first_miss_value", "first_miss_tpr",
                          "first_miss_detected", "first_miss_genuine_pairs", "break_label", "break_value",
                          "resolved", "warning"]


def hasher_verdicts(detection: pd.DataFrame, operating_point: str, min_tpr: float) -> pd.DataFrame:
    """Per family and hasher, at one operating point of `detection_table`:

    - detected of genuine_pairs: the family's edited copies still matched, pooled over its
      strengths (`tpr` = detected / genuine_pairs);
    - tpr_low, tpr_high: a 95% Wilson interval for that rate. Copies of one image at several
      strengths are not independent, so the interval counts the images (n = images, the most
      pairs of any strength), not the pairs: exact for a one-strength family, wider otherwise;
    - rank: 1 = best within the family, tied (shared) where intervals overlap (`rank_with_ties`);
    - held: strengths detected at >= min_tpr; first_miss*: the first strength, in config order,
      below min_tpr, with its rate and count;
    - break_label, break_value: the first strength detected at < 50% ("" if none);
    - resolved: the operating point's threshold could be measured; warning: why the images are
      too few for a ">= min_tpr" claim ("" when they suffice)."""
    chosen = detection[detection["operating_point"] == operating_point]
    # The table is grouped once, by family and within it by hasher, and each group read from the
    # columns as arrays: a groupby, a data frame and its ranking per family cost 5 ms a family,
    # most of a minute at 10,000 families.
    tprs, detections, genuine, resolved = (chosen[column].to_numpy()
                                           for column in ("tpr", "detected", "genuine_pairs", "resolved"))
    no_threshold = chosen["threshold"].isna().to_numpy()
    families, hashers, labels, values = (chosen[column] for column in ("family", "hasher", "label", "value"))
    rows = []
    for family_groups in _nested_groups(chosen, "family", "hasher"):
        family_rows = []
        for own in family_groups:
            rates, counts, totals = tprs[own], detections[own], genuine[own]
            detected, pairs = int(counts.sum()), int(totals.sum())
            images = int(totals.max())
            if no_threshold[own].all():  # no threshold at this rate: nothing to rank, not a 0% hasher
                rates, pairs = np.full(len(own), np.nan), 0
            tpr = detected / pairs if pairs else float("nan")
            low, high = wilson_interval(tpr * images, images) if pairs else (float("nan"), float("nan"))
            missed = np.flatnonzero(rates < min_tpr)[:1]  # NaN rates are neither missed nor held
            broken = np.flatnonzero(rates < BREAK_RATE)[:1]
            first_miss, first_broken = (own[found[0]] if len(found) else None for found in (missed, broken))
            family_rows.append({
                "family": families.iloc[own[0]], "hasher": hashers.iloc[own[0]],
                "strengths": len(own), "images": images,
                "genuine_pairs": pairs, "detected": detected, "tpr": tpr, "tpr_low": low, "tpr_high": high,
                "held": int(np.count_nonzero(rates >= min_tpr)),
                "first_miss": labels.iloc[first_miss] if len(missed) else "",
                "first_miss_value": values.iloc[first_miss] if len(missed) else "",
                "first_miss_tpr": rates[missed[0]] if len(missed) else float("nan"),
                "first_miss_detected": int(counts[missed[0]]) if len(missed) else 0,
                "first_miss_genuine_pairs": int(totals[missed[0]]) if len(missed) else 0,
                "break_label": labels.iloc[first_broken] if len(broken) else "",
                "break_value": values.iloc[first_broken] if len(broken) else "",
                "resolved": bool(resolved[own].all()),
                "warning": sample_size_warning(images, min_tpr)})
        ranks = tie_ranks(*(np.array([row[key] for row in family_rows], dtype=float)
                            for key in ("tpr", "tpr_low", "tpr_high")))
        for row, rank in zip(family_rows, ranks):
            row["rank"] = rank
        rows += family_rows
    if not rows:
        return pd.DataFrame(columns=HASHER_VERDICT_COLUMNS)
    return pd.DataFrame(rows)[HASHER_VERDICT_COLUMNS]


def ranked(part: pd.DataFrame) -> pd.DataFrame:
    """One family's rows of `hasher_verdicts` in the order `family_verdicts` names them: by rank,
    then rate; its first `tied` rows are its `best`, whose ids may hold ' = ' themselves."""
    return part.iloc[ranked_order(part["rank"].to_numpy(), part["tpr"].to_numpy(dtype=float))]


def ranked_order(ranks: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """`ranked` on one family's arrays: the positions it keeps, in its order (by rank, then by
    decreasing rate, a row without a rate after those with one, ties in table order)."""
    rated = ~np.isnan(rates)
    order = np.lexsort((np.arange(len(ranks)), np.where(rated, -rates, 0.0), ~rated, ranks))
    if rated.any():  # hashers without a threshold here are neither best nor runner-up
        order = order[rated[order]]
    return order


FAMILY_VERDICT_COLUMNS = ["family", "best", "mean_tpr", "runner_up", "runner_up_mean_tpr", "strengths", "held",
                          "first_miss", "first_miss_tpr", "resolved", "tied", "hashers", "detected",
                          "genuine_pairs", "images", "tpr_low", "tpr_high", "runner_up_detected",
                          "runner_up_genuine_pairs", "runner_up_tpr_low", "runner_up_tpr_high",
                          "first_miss_detected", "first_miss_genuine_pairs", "warning"]


def family_verdicts(detection: pd.DataFrame, operating_point: str, min_tpr: float,
                    per_hasher: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per family, which hashers hold up best at one operating point, claiming no more than the
    data show.

    best: every hasher of rank 1 (`hasher_verdicts`: intervals overlapping the leader's),
    joined by ' = ', in decreasing rate; `tied` counts them, `hashers` counts all. mean_tpr,
    detected of genuine_pairs, tpr_low/tpr_high: the first of them (the pooled rate of the
    family's copies; equal to the mean over strengths when every strength has all images).
    runner_up*: the best hasher ranked below them ("" when all tie). strengths, held,
    first_miss*: as in `hasher_verdicts`, for the first best hasher. warning: why the images are
    too few for a ">= min_tpr" claim, "" when they suffice. `per_hasher`: `hasher_verdicts` of the
    same arguments, where the caller has made it already."""
    if per_hasher is None:
        per_hasher = hasher_verdicts(detection, operating_point, min_tpr)
    # Each family's rows are found in one grouping and read from the columns as arrays (a groupby,
    # a sort and row Series per family: most of a minute at 10,000 families).
    column = {name: per_hasher[name].to_numpy() for name in per_hasher.columns}
    ranks, rates = column["rank"], per_hasher["tpr"].to_numpy(dtype=float)
    rows = []
    for part in _row_groups(per_hasher, "family"):
        family = per_hasher["family"].iloc[part[0]]
        part = part[ranked_order(ranks[part], rates[part])]
        best = part[ranks[part] == 1]
        others = part[ranks[part] > 1]
        lead = {name: values[best[0]] for name, values in column.items()}
        runner = {name: values[others[0]] for name, values in column.items()} if len(others) else None
        rows.append({
            "family": family, "best": " = ".join(column["hasher"][best]), "mean_tpr": lead["tpr"],
            "runner_up": runner["hasher"] if runner is not None else "",
            "runner_up_mean_tpr": runner["tpr"] if runner is not None else float("nan"),
            "strengths": int(lead["strengths"]), "held": int(lead["held"]), "first_miss": lead["first_miss"],
            "first_miss_tpr": lead["first_miss_tpr"], "resolved": bool(column["resolved"][part].all()),
            "tied": len(best), "hashers": len(part), "detected": int(lead["detected"]),
            "genuine_pairs": int(lead["genuine_pairs"]), "images": int(lead["images"]),
            "tpr_low": lead["tpr_low"], "tpr_high": lead["tpr_high"],
            "runner_up_detected": int(runner["detected"]) if runner is not None else 0,
            "runner_up_genuine_pairs": int(runner["genuine_pairs"]) if runner is not None else 0,
            "runner_up_tpr_low": runner["tpr_low"] if runner is not None else float("nan"),
            "runner_up_tpr_high": runner["tpr_high"] if runner is not None else float("nan"),
            "first_miss_detected": int(lead["first_miss_detected"]),
            "first_miss_genuine_pairs": int(lead["first_miss_genuine_pairs"]),
            "warning": lead["warning"]})
    return pd.DataFrame(rows, columns=FAMILY_VERDICT_COLUMNS)


BREAK_COLUMNS = ["hasher", "family", "break_label", "break_value", "tpr", "detected", "genuine_pairs", "tpr_low",
                 "tpr_high", "has_threshold"]


def break_points(detection: pd.DataFrame, operating_point: str) -> pd.DataFrame:
    """Per hasher and family: the first strength, from mildest to strongest, at which fewer than
    half of the edited copies are still detected, with that strength's rate, count and 95% Wilson
    interval. Strengths are taken in the config's order, which lists them mildest first (the
    order `detection_table` keeps). A family that holds at every strength has an empty
    break_label and break_value and NaN/empty rate columns; so has a hasher without a threshold
    at `operating_point` (it detects nothing by default, which is no break-point), told apart
    from one that holds by has_threshold False."""
    chosen = detection[detection["operating_point"] == operating_point]
    # A strength without a threshold detects nothing by default, which is no break-point.
    thresholded = chosen["threshold"].notna().to_numpy()
    broken = (chosen["tpr"] < BREAK_RATE).to_numpy() & thresholded
    hashers, families, labels, values = (chosen[name] for name in ("hasher", "family", "label", "value"))
    tpr, detected, genuine, low, high = (chosen[name].to_numpy()
                                         for name in ("tpr", "detected", "genuine_pairs", "tpr_low", "tpr_high"))
    rows = []
    # Grouped once, by hasher and within it by family, each group read from the columns as arrays
    # (a filter per hasher and a groupby of its rows per family: 13 s at 10,000 families).
    for hasher_parts in _nested_groups(chosen, "hasher", "family"):
        for part in hasher_parts:
            hasher, family = hashers.iloc[part[0]], families.iloc[part[0]]
            first_broken = part[broken[part]][:1]
            if len(first_broken):
                row = first_broken[0]
                rows.append({"hasher": hasher, "family": family, "break_label": labels.iloc[row],
                             "break_value": values.iloc[row], "tpr": tpr[row],
                             "detected": int(detected[row]), "genuine_pairs": int(genuine[row]),
                             "tpr_low": low[row], "tpr_high": high[row], "has_threshold": True})
            else:
                rows.append({"hasher": hasher, "family": family, "break_label": "", "break_value": "",
                             "tpr": float("nan"), "detected": pd.NA, "genuine_pairs": pd.NA,
                             "tpr_low": float("nan"), "tpr_high": float("nan"),
                             "has_threshold": bool(thresholded[part].any())})
    frame = pd.DataFrame(rows, columns=BREAK_COLUMNS)
    for column in ("detected", "genuine_pairs"):
        frame[column] = frame[column].astype("Int64")
    return frame


# --- impostor hygiene: near-duplicates inside the collection -----------------------
#
# Impostor pairs are assumed to be different pictures. A collection often holds near-copies
# (two frames of one scene, a picture saved twice); their pairs then sit among the impostors at
# genuine-like distances and drag every threshold down. These functions find them, name them,
# and drop the ones the config lists.

# The outlier cut on the impostors' modified z-score, 0.6745 (median - d) / MAD. Iglewicz and
# Hoaglin's textbook cut is 3.5, made for a handful of values; here every pair of a collection is
# tested (100,000 by default), and 3.5 (about 3.5 standard deviations for normal data) would flag
# some 20 pairs per hasher by chance alone, 5 (about 5 sd) fewer than one.
OUTLIER_Z = 5.0
MAD_TO_Z = 0.6745
GENUINE_QUANTILE = 0.9


def name_impostors(impostors: pd.DataFrame, images: pd.DataFrame) -> pd.DataFrame:
    """The impostor table with `image` and `other` name columns (from images.csv's `image` and
    `image_id`) placed before the ids. Identical files share an id; their names are joined by ' | '."""
    if images["image_id"].is_unique:  # as a run makes it: no grouping (100,000 groups of one took seconds)
        names = pd.Series(python_texts(images["image"]), index=text_categories(images["image_id"]),
                          dtype=object)
    else:
        names = images.groupby("image_id", sort=False, observed=True)["image"].agg(
            lambda n: " | ".join(dict.fromkeys(n)))
    named = impostors.copy(deep=False)  # pandas copies on write: the caller's table is safe
    position = list(named.columns).index("image_id") if "image_id" in named.columns else len(named.columns)
    for offset, (column, ids) in enumerate((("image", "image_id"), ("other", "other_id"))):
        if column in named.columns:
            named = named.drop(columns=column)
        named.insert(position + offset, column, _mapped(named[ids], names))
    return named


def _mapped(ids: pd.Series, names: pd.Series) -> pd.Series:
    """Each id's name ("" for an unknown one). A categorical column is mapped by its categories, not
    per row, and its names come in order of appearance, as storage.normalise keeps them."""
    if isinstance(ids.dtype, pd.CategoricalDtype):
        categories = ids.cat.categories
        known = names.reindex(text_categories(categories)) if len(categories) else names.iloc[:0]
        texts = np.append(known.fillna("").to_numpy(dtype=object), "")  # the last: a missing id's
        return pd.Series(first_seen_categorical(category_codes(ids), texts), index=ids.index)
    return ids.map(names).fillna("").astype(str)


def suspicious_impostors(distances: pd.DataFrame, impostors: pd.DataFrame,
                         genuine_quantile: float = GENUINE_QUANTILE, outlier_z: float = OUTLIER_Z,
                         kinds: tuple[str, ...] = ("source",)) -> pd.DataFrame:
    """Impostor pairs whose distance makes them look like copies: probable duplicates inside the
    collection. Per hasher, a pair is suspicious when its distance is at or below `bound`, the
    smaller of
    - the `genuine_quantile` quantile (default 0.9) of the hasher's genuine distances over every
      edit of the run: a distance edited copies commonly reach; and
    - the low outlier fence of the hasher's own impostor distances, median - outlier_z / 0.6745
      x MAD (a modified z-score above `outlier_z`, default 5): far below where pairs of
      different images fall, beyond what chance gives among 100,000 pairs.
    The first keeps a hasher whose copies are no closer than its impostors from flagging its own
    lower tail; the second keeps a hasher whose impostors overlap its copies (a weak hasher, not a
    duplicate) from flagging them all. A hasher whose impostor distances have no spread (MAD 0)
    flags nothing: it cannot tell an outlier from the rest.
    Only impostors of the given `kinds` are examined; by default two untouched source images
    ("source"): an edited copy near a different image ("transformed") says more about the edit
    (a darkened or padded copy drifts towards any dark or bordered picture) than about the collection.
    Returns the flagged rows with a `bound` column, in the impostor table's order.

    Measured: on scikit-image's 18 photographs (the collection, zoo and protocol runs) this flags
    nothing; with a JPEG-80 copy and a copy cropped to 96% of each side planted among 12 of them,
    it finds both pairs, each with all 4 hashers (examples/planted_duplicates.py)."""
    return _flagged(impostors, [
        _suspicious(hasher, hasher_rows(distances, hasher, ["distance"])["distance"].to_numpy(np.float64),
                    impostors, genuine_quantile, outlier_z, kinds)
        for hasher in hasher_order(distances)])


def _suspicious(hasher: str, genuine: np.ndarray, impostors: pd.DataFrame, genuine_quantile: float,
                outlier_z: float, kinds) -> pd.DataFrame | None:
    """One hasher's suspicious impostor rows (see suspicious_impostors), None when it flags nothing;
    `genuine`: its usable distances, in any order."""
    own = (impostors["hasher"] == hasher).to_numpy()
    values = impostors["distance"].to_numpy(dtype=np.float64)[own]
    if not len(genuine) or not len(values):
        return None
    median = float(np.median(values))
    mad = float(np.median(np.abs(values - median)))
    if mad == 0:
        return None
    bound = min(float(np.quantile(genuine, genuine_quantile)), median - outlier_z / MAD_TO_Z * mad)
    hits = impostors[own & (impostors["distance"] <= bound).to_numpy() & impostors["kind"].isin(kinds).to_numpy()]
    return hits.assign(bound=bound)


def _flagged(impostors: pd.DataFrame, parts: list) -> pd.DataFrame:
    """The hashers' suspicious rows as one table, in the impostor table's order."""
    flagged = [part for part in parts if part is not None]
    if not flagged:
        return impostors.iloc[:0].assign(bound=pd.Series(dtype=float))
    return pd.concat(flagged).sort_index(kind="stable").reset_index(drop=True)


DUPLICATE_COLUMNS = ["image", "other", "image_id", "other_id", "hashers", "flagged_by", "pairs", "kinds"]


def probable_duplicates(suspicious: pd.DataFrame) -> pd.DataFrame:
    """One row per pair of source images among `suspicious_impostors`' rows (either order, either
    kind: two untouched images, or an edited copy of one against the other): the names (when the
    table was named with `name_impostors`), the ids, how many hashers flag the pair and which
    (`flagged_by`, in the order they first flag it), how many impostor rows were flagged, and of
    which kinds. Most hashers agreeing is the strong sign; one hasher alone may be its weakness.
    Sorted by hashers (most first), then names."""
    if suspicious.empty:
        return pd.DataFrame(columns=DUPLICATE_COLUMNS)
    # A few rows: plain text, so ids can be ordered and names swapped (categoricals allow neither).
    frame = suspicious.astype({c: object for c in suspicious.columns
                               if isinstance(suspicious[c].dtype, pd.CategoricalDtype)})
    if "image" not in frame.columns:
        frame["image"], frame["other"] = "", ""
    swap = frame["image_id"] > frame["other_id"]  # one key per unordered pair
    for a, b in (("image_id", "other_id"), ("image", "other")):
        frame.loc[swap, [a, b]] = frame.loc[swap, [b, a]].to_numpy()
    rows = []
    for (first, second), part in frame.groupby(["image_id", "other_id"], sort=False, observed=True):
        hashers = list(dict.fromkeys(part["hasher"]))
        rows.append({"image": part["image"].iloc[0], "other": part["other"].iloc[0], "image_id": first,
                     "other_id": second, "hashers": len(hashers), "flagged_by": ", ".join(hashers),
                     "pairs": len(part), "kinds": ", ".join(sorted(set(part["kind"])))})
    table = pd.DataFrame(rows, columns=DUPLICATE_COLUMNS)
    table["hashers_sort"] = -table["hashers"]
    return (table.sort_values(["hashers_sort", "image", "other", "image_id", "other_id"], kind="stable")
            .drop(columns="hashers_sort").reset_index(drop=True))


def filter_impostors(impostors: pd.DataFrame, spec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kept, excluded): the impostor rows the config's `impostors` section (an ImpostorSpec)
    leaves out, and the rest.

    - `duplicates`: groups of images known to be copies of each other, by name (images.csv's
      `image`; needs the `image`/`other` columns of `name_impostors`) or image id. A row whose
      two images are in one group is excluded (`excluded_by`: "duplicates[i]").
    - `exclude_below`: {hasher id: distance}. A pair of source images closer than that distance
      for that hasher (any row of that hasher, source or edited copy) is excluded from every
      hasher's impostors, so all hashers keep the same pairs (`excluded_by`: "exclude_below.<id>").
    `excluded` has the impostor columns plus `excluded_by` (the first rule that matched)."""
    if not spec.duplicates and not spec.exclude_below:  # nothing to leave out: no copy, no per-row text
        return impostors, impostors.iloc[:0].assign(excluded_by=pd.Series(dtype=object))
    reason = pd.Series("", index=impostors.index, dtype=object)
    has_names = "image" in impostors.columns and "other" in impostors.columns
    for number, group in enumerate(spec.duplicates):
        members = set(group)
        first = impostors["image_id"].isin(members)
        second = impostors["other_id"].isin(members)
        if has_names:
            first |= impostors["image"].isin(members)
            second |= impostors["other"].isin(members)
        reason[(reason == "") & first & second] = f"duplicates[{number}]"
    key = _pair_key(impostors)
    for hasher, limit in spec.exclude_below.items():
        close = (impostors["hasher"] == hasher) & (impostors["distance"] < limit)
        reason[(reason == "") & key.isin(set(key[close]))] = f"exclude_below.{hasher}"
    out = reason != ""
    excluded = impostors[out].assign(excluded_by=reason[out])
    return (impostors[~out] if out.any() else impostors), excluded


def _pair_key(impostors: pd.DataFrame) -> pd.Series:
    """The unordered pair of source ids of each row, as one string."""
    a, b = impostors["image_id"].astype(str), impostors["other_id"].astype(str)
    return a.where(a <= b, b) + "|" + b.where(a <= b, a)


def unmatched_duplicates(spec, images: pd.DataFrame) -> list[str]:
    """Entries of `impostors.duplicates` that name no image of the run (neither an `image` name
    nor an `image_id` of images.csv), as 'impostors.duplicates[i][j]: ...' lines for an error."""
    from harness.registry import suggest
    if not spec.duplicates:  # (no set of every name and id to build: 20 MiB at 100,000 images)
        return []
    known = set(images["image"]) | set(images["image_id"])
    problems = []
    for i, group in enumerate(spec.duplicates):
        for j, entry in enumerate(group):
            if entry not in known:
                close = suggest(entry, sorted(images["image"]))
                hint = f"; did you mean '{close}'?" if close else ""
                problems.append(f"impostors.duplicates[{i}][{j}]: '{entry}' names no image of this run "
                                f"(give the name shown in images.csv, without extension, or the image id){hint}")
    return problems


# --- everything at once ------------------------------------------------------------

@dataclass
class Metrics:
    """Every table derived from a run's distances and impostors."""

    table: pd.DataFrame  # the article's layout: pairs x hashers
    curves: pd.DataFrame  # per family, value and hasher: median and quartiles of the normalised distance
    thresholds: pd.DataFrame  # on the impostors the config keeps (see `excluded`)
    detection: pd.DataFrame
    roc: pd.DataFrame
    verdicts: pd.DataFrame  # per family: the best hashers (tied where their intervals overlap)
    hasher_verdicts: pd.DataFrame  # per family and hasher: pooled rate, interval, rank, break-point
    break_points: pd.DataFrame
    retrieval: pd.DataFrame  # ISC 2021 muAP and recall at 90% precision, per hasher
    duplicates: pd.DataFrame  # probable duplicates inside the collection (suspicious impostor pairs)
    excluded: pd.DataFrame  # impostor rows the config excludes (`impostors.duplicates`, `exclude_below`)
    thresholds_unfiltered: pd.DataFrame  # the thresholds with those rows kept; empty when none is excluded
    points: dict  # hasher -> [OperatingPoint]
    chosen: str | None  # the operating point the answer and the key figures use (the first target FPR)
    min_tpr: float
    impostor_kinds: dict  # hasher -> {kind: count}

    @property
    def has_detection(self) -> bool:
        """False without an impostor baseline (one image): no thresholds, no rates."""
        return self.chosen is not None


def compute(distances: pd.DataFrame, impostors: pd.DataFrame, detection, impostor_spec=None) -> Metrics:
    """All derived tables. `detection` is the config's detection section (a DetectionSpec: fpr and
    precision targets, fixed thresholds, min_tpr) and `impostor_spec` its impostors section (an
    ImpostorSpec: known duplicates and distances to exclude), so their defaults live in one place."""
    from harness.retrieval import RETRIEVAL_COLUMNS, retrieval_row

    empty = pd.DataFrame
    baseline = not impostors.empty and bool((distances["error"] == "").any())
    kept, excluded = (filter_impostors(impostors, impostor_spec) if baseline and impostor_spec is not None
                      else (impostors, impostors.iloc[:0]))
    fprs, fixed = list(detection.fpr), dict(detection.thresholds)
    precisions = tuple(getattr(detection, "precision", ()))
    pairs = _distinct_pairs(distances)
    table, curve_parts = pairs.copy(), []
    points, unfiltered, suspicious, detected, roc, retrieval = {}, {}, [], [], [], []
    # Each hasher's rows are grouped once (grouping.PairGroups) and every table reads those groups;
    # one hasher's groups at a time (`del`: not two while the next is made).
    for groups in hasher_groups(distances):
        hasher = groups.hasher
        table[hasher] = _article_column(pairs, groups)
        curve_parts.append(_curve_part(distances, groups))
        if baseline and len(groups.values):
            impostor = impostor_distances(kept, hasher)
            points[hasher] = _hasher_points(groups, impostor, fprs, fixed, precisions)
            if len(excluded):
                unfiltered[hasher] = _hasher_points(groups, impostor_distances(impostors, hasher), fprs, fixed, precisions)
            suspicious.append(_suspicious(hasher, groups.values, impostors, GENUINE_QUANTILE, OUTLIER_Z, ("source",)))
            detected += _detection_rows(groups, points[hasher])
            roc += _roc_rows(groups, impostor)
            retrieval.append(retrieval_row(hasher, groups.values, impostor))
        del groups
    curves = _curves(curve_parts)
    if not baseline:
        return Metrics(table, curves, empty(columns=THRESHOLD_COLUMNS), empty(columns=DETECTION_COLUMNS),
                       empty(columns=ROC_COLUMNS), empty(), empty(), empty(), empty(columns=RETRIEVAL_COLUMNS),
                       empty(columns=DUPLICATE_COLUMNS), empty(), empty(), {}, None, detection.min_tpr, {})
    detected = pd.DataFrame(detected, columns=DETECTION_COLUMNS)
    chosen = next(iter(points.values()))[0].name if points else None
    per_hasher = hasher_verdicts(detected, chosen, detection.min_tpr) if chosen else empty()
    verdicts = family_verdicts(detected, chosen, detection.min_tpr, per_hasher) if chosen else empty()
    breaks = break_points(detected, chosen) if chosen else empty()
    kinds = {hasher: part["kind"].value_counts(sort=False).to_dict()
             for hasher, part in kept.groupby("hasher", sort=False, observed=True)}
    return Metrics(table, curves, thresholds_table(points), detected, pd.DataFrame(roc, columns=ROC_COLUMNS),
                   verdicts, per_hasher, breaks,
                   pd.DataFrame([row for row in retrieval if row is not None], columns=RETRIEVAL_COLUMNS),
                   probable_duplicates(_flagged(impostors, suspicious)), excluded,
                   thresholds_table(unfiltered) if len(excluded) else empty(columns=THRESHOLD_COLUMNS),
                   points, chosen, detection.min_tpr, kinds)
