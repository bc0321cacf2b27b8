"""Tables from the long distance table. Pure: data frames in, data frames out.

The distance table has one row per (image, pair, hasher); `value` is kept as
the text the config gave ("2.0" stays "2.0") so tables rebuilt from CSV are
byte-identical to the first ones. Lower distances always mean closer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.schema import UNAVAILABLE

PAIR_KEY = ["family", "value", "label"]
THRESHOLD_COLUMNS = ["hasher", "operating_point", "fpr_target", "threshold", "impostor_pairs",
                     "false_matches_allowed", "false_matches", "fpr_measured", "resolved"]
DETECTION_COLUMNS = ["hasher", "operating_point", "threshold", "resolved", "family", "value", "label",
                     "genuine_pairs", "detected", "tpr", "tpr_low", "tpr_high"]
ROC_COLUMNS = ["hasher", "family", "genuine_pairs", "impostor_pairs", "auc", "eer"]


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


# --- detection: what a distance means against the impostor baseline -------------
#
# Decision rule, everywhere: a pair is called a match when distance <= threshold.
# Genuine pairs are an image and its edited copy; impostor pairs are different
# images. Rates are exact counts over the observed distances, ties included.

Z95 = 1.959963984540054  # two-sided 95% normal quantile


@dataclass(frozen=True)
class OperatingPoint:
    name: str  # "fpr=0.01" or "fixed"
    fpr_target: float  # NaN for a fixed threshold
    threshold: float  # NaN: no threshold reaches the target (nothing may be called a match)
    impostor_pairs: int
    false_matches_allowed: int  # floor(fpr_target * impostor_pairs)
    false_matches: int  # impostor pairs at or below the threshold
    resolved: bool  # enough impostor pairs to measure fpr_target at all

    @property
    def fpr_measured(self) -> float:
        return self.false_matches / self.impostor_pairs if self.impostor_pairs else float("nan")


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
    n = len(impostor)
    name = f"fpr={fpr:g}"
    if n == 0:
        return OperatingPoint(name, fpr, float("nan"), 0, 0, 0, False)
    allowed = int(np.floor(fpr * n + 1e-9))
    bound = impostor[allowed] if allowed < n else np.inf
    observed = np.concatenate([impostor, np.asarray(genuine, dtype=np.float64)])
    below = observed[observed < bound]
    threshold = float(below.max()) if below.size else float("nan")
    false_matches = int(np.searchsorted(impostor, threshold, side="right")) if below.size else 0
    return OperatingPoint(name, fpr, threshold, n, allowed, false_matches, resolved=allowed >= 1)


def fixed_threshold(impostor: np.ndarray, threshold: float) -> OperatingPoint:
    impostor = np.asarray(impostor, dtype=np.float64)
    return OperatingPoint("fixed", float("nan"), float(threshold), len(impostor), 0,
                          int(np.count_nonzero(impostor <= threshold)), resolved=len(impostor) > 0)


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


def roc_auc(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """P(genuine distance < impostor distance), ties counted half (Mann-Whitney)."""
    genuine = np.asarray(genuine, dtype=np.float64)
    impostor = np.sort(np.asarray(impostor, dtype=np.float64))
    if not len(genuine) or not len(impostor):
        return float("nan")
    left = np.searchsorted(impostor, genuine, side="left")
    right = np.searchsorted(impostor, genuine, side="right")
    greater = len(impostor) - right
    return float((greater + 0.5 * (right - left)).sum() / (len(genuine) * len(impostor)))


def roc_curve(genuine: np.ndarray, impostor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, false-positive rates, true-positive rates) at every observed distance,
    starting from 'nothing matches' (-inf, 0, 0)."""
    genuine = np.sort(np.asarray(genuine, dtype=np.float64))
    impostor = np.sort(np.asarray(impostor, dtype=np.float64))
    thresholds = np.concatenate([[-np.inf], np.unique(np.concatenate([genuine, impostor]))])
    fpr = np.searchsorted(impostor, thresholds, side="right") / max(1, len(impostor))
    tpr = np.searchsorted(genuine, thresholds, side="right") / max(1, len(genuine))
    return thresholds, fpr, tpr


def equal_error_rate(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """The rate where false positives equal false negatives, linearly interpolated on the ROC."""
    if not len(genuine) or not len(impostor):
        return float("nan")
    _, fpr, tpr = roc_curve(genuine, impostor)
    fnr = 1.0 - tpr
    crossed = int(np.argmax(fpr >= fnr))  # fpr rises from 0 and fnr falls to 0: they cross
    if crossed == 0:
        return float(fpr[0])
    f0, f1, r0, r1 = fpr[crossed - 1], fpr[crossed], fnr[crossed - 1], fnr[crossed]
    step = (r0 - f0) / ((r0 - f0) - (r1 - f1))
    return float(f0 + step * (f1 - f0))


def _genuine(distances: pd.DataFrame, hasher: str) -> pd.DataFrame:
    return distances[(distances["hasher"] == hasher) & (distances["error"] == "")]


def _impostor(impostors: pd.DataFrame, hasher: str) -> np.ndarray:
    return impostors.loc[impostors["hasher"] == hasher, "distance"].to_numpy(dtype=np.float64)


def operating_points(distances: pd.DataFrame, impostors: pd.DataFrame, fprs, fixed: dict) -> dict:
    """Per hasher: its operating points (one per target FPR, plus a fixed threshold if given)."""
    points = {}
    for hasher in hasher_order(distances):
        genuine = _genuine(distances, hasher)["distance"].to_numpy(dtype=np.float64)
        if not len(genuine):
            continue  # unavailable
        impostor = _impostor(impostors, hasher)
        points[hasher] = [threshold_at_fpr(impostor, genuine, rate) for rate in fprs]
        if hasher in fixed:
            points[hasher].append(fixed_threshold(impostor, fixed[hasher]))
    return points


def thresholds_table(points: dict) -> pd.DataFrame:
    rows = [{"hasher": hasher, "operating_point": p.name, "fpr_target": p.fpr_target, "threshold": p.threshold,
             "impostor_pairs": p.impostor_pairs, "false_matches_allowed": p.false_matches_allowed,
             "false_matches": p.false_matches, "fpr_measured": p.fpr_measured, "resolved": p.resolved}
            for hasher, hasher_points in points.items() for p in hasher_points]
    return pd.DataFrame(rows, columns=THRESHOLD_COLUMNS)


def detection_table(distances: pd.DataFrame, points: dict) -> pd.DataFrame:
    """Per hasher, operating point and pair (family, value): how many edited copies are still
    matched (distance <= threshold) out of how many images, with a 95% Wilson interval."""
    rows = []
    for hasher, hasher_points in points.items():
        genuine = _genuine(distances, hasher)
        groups = list(genuine.groupby(PAIR_KEY, sort=False)["distance"])
        for point in hasher_points:
            for (family, value, label), values in groups:
                detected = int(np.count_nonzero(values.to_numpy() <= point.threshold))
                low, high = wilson_interval(detected, len(values))
                rows.append({"hasher": hasher, "operating_point": point.name, "threshold": point.threshold,
                             "resolved": point.resolved, "family": family, "value": value, "label": label,
                             "genuine_pairs": len(values), "detected": detected,
                             "tpr": detected / len(values), "tpr_low": low, "tpr_high": high})
    return pd.DataFrame(rows, columns=DETECTION_COLUMNS)


ALL_FAMILIES = "(all)"


def roc_table(distances: pd.DataFrame, impostors: pd.DataFrame) -> pd.DataFrame:
    """ROC AUC and equal error rate per hasher, per family and over all families,
    each family's genuine distances against the hasher's whole impostor baseline."""
    rows = []
    for hasher in hasher_order(distances):
        genuine = _genuine(distances, hasher)
        impostor = _impostor(impostors, hasher)
        if genuine.empty:
            continue
        groups = [(family, part["distance"]) for family, part in genuine.groupby("family", sort=False)]
        for family, values in groups + [(ALL_FAMILIES, genuine["distance"])]:
            values = values.to_numpy(dtype=np.float64)
            rows.append({"hasher": hasher, "family": family, "genuine_pairs": len(values),
                         "impostor_pairs": len(impostor), "auc": roc_auc(values, impostor),
                         "eer": equal_error_rate(values, impostor)})
    return pd.DataFrame(rows, columns=ROC_COLUMNS)


def family_verdicts(detection: pd.DataFrame, operating_point: str, min_tpr: float) -> pd.DataFrame:
    """Per family, which hasher holds up best at one operating point: the highest mean detection
    rate over the family's strengths (hashers that tie are all named, joined by ' = '), then how
    many strengths the first of them detects at >= min_tpr and the first (in config order) where
    it does not."""
    rows = []
    chosen = detection[detection["operating_point"] == operating_point]
    for family, part in chosen.groupby("family", sort=False):
        ranking = part.groupby("hasher", sort=False)["tpr"].mean().sort_values(ascending=False, kind="stable")
        tied = [h for h, rate in ranking.items() if np.isclose(rate, ranking.iloc[0])]
        own = part[part["hasher"] == tied[0]]
        held = own["tpr"] >= min_tpr
        first_miss = own[~held].head(1)
        runner_up = ranking.drop(tied)
        rows.append({"family": family, "best": " = ".join(tied), "mean_tpr": ranking.iloc[0],
                     "runner_up": runner_up.index[0] if len(runner_up) else "",
                     "runner_up_mean_tpr": runner_up.iloc[0] if len(runner_up) else float("nan"),
                     "strengths": len(own), "held": int(held.sum()),
                     "first_miss": first_miss["label"].iloc[0] if len(first_miss) else "",
                     "first_miss_tpr": first_miss["tpr"].iloc[0] if len(first_miss) else float("nan"),
                     "resolved": bool(own["resolved"].all())})
    return pd.DataFrame(rows)


# --- everything at once ------------------------------------------------------------

@dataclass
class Metrics:
    """Every table derived from a run's distances and impostors."""

    table: pd.DataFrame  # the article's layout: pairs x hashers
    curves: pd.DataFrame  # per family, value and hasher: median and quartiles of the normalised distance
    thresholds: pd.DataFrame
    detection: pd.DataFrame
    roc: pd.DataFrame
    verdicts: pd.DataFrame
    points: dict  # hasher -> [OperatingPoint]
    chosen: str | None  # the operating point the answer and the key figures use (the first target FPR)
    min_tpr: float
    impostor_kinds: dict  # hasher -> {kind: count}

    @property
    def has_detection(self) -> bool:
        """False without an impostor baseline (one image): no thresholds, no rates."""
        return self.chosen is not None



def compute(distances: pd.DataFrame, impostors: pd.DataFrame, detection) -> Metrics:
    """All derived tables. `detection` is the config's detection section (a DetectionSpec:
    fpr targets, fixed thresholds, min_tpr), so its defaults live in one place."""
    table = article_table(distances)
    curves = family_curves(distances)
    usable = distances["error"] == ""
    if impostors.empty or not usable.any():
        empty = pd.DataFrame
        return Metrics(table, curves, empty(columns=THRESHOLD_COLUMNS), empty(columns=DETECTION_COLUMNS),
                       empty(columns=ROC_COLUMNS), empty(), {}, None, detection.min_tpr, {})
    points = operating_points(distances, impostors, list(detection.fpr), dict(detection.thresholds))
    detected = detection_table(distances, points)
    chosen = next(iter(points.values()))[0].name if points else None
    verdicts = family_verdicts(detected, chosen, detection.min_tpr) if chosen else pd.DataFrame()
    kinds = {hasher: part["kind"].value_counts(sort=False).to_dict()
             for hasher, part in impostors.groupby("hasher", sort=False)}
    return Metrics(table, curves, thresholds_table(points), detected, roc_table(distances, impostors), verdicts,
                   points, chosen, detection.min_tpr, kinds)
