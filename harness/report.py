"""The only writer of files.

`write_run` saves what a run computed (distances.csv, hashers.csv, run.json,
previews.png), then `build_report` derives every table and figure from those
saved files. `python -m harness report DIR` calls `build_report` alone, so a
rebuilt report is the same as the first by construction. Every file is
written to a temporary name and renamed, so no half-written file is visible.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Callable

import numpy as np
import pandas as pd

from harness.config import format_value
from harness.errors import HarnessError
from harness.metrics import (ALL_FAMILIES, UNAVAILABLE, article_table, detection_table, family_curves,
                             family_verdicts, format_number, hasher_order, operating_points, roc_curve, roc_table,
                             thresholds_table)

DISTANCES = "distances.csv"
IMPOSTORS = "impostors.csv"
IMAGES = "images.csv"
ERRORS = "errors.csv"
THRESHOLDS = "thresholds.csv"
DETECTION = "detection.csv"
ROC = "roc.csv"
HASHERS = "hashers.csv"
TABLE = "table.csv"
RUN = "run.json"
SUMMARY = "summary.md"
FIGURES = "figures"
PREVIEWS = "previews.png"


# --- writing, atomically ---------------------------------------------------

_UMASK = os.umask(0)
os.umask(_UMASK)


def _atomic(path: str, write: Callable[[str], None]) -> None:
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    os.close(handle)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the mode a plain open() would
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _write_text(path: str, text: str) -> None:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
    _atomic(path, write)


def _write_csv(path: str, frame: pd.DataFrame) -> None:
    _atomic(path, lambda tmp: frame.to_csv(tmp, index=False, lineterminator="\n", float_format="%.6g"))


def _save_figure(path: str, figure, dpi: int = 110) -> None:
    import matplotlib.pyplot as plt

    # No timestamp in the PNG: a rebuilt figure is byte-identical to the first.
    _atomic(path, lambda tmp: figure.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png",
                                             metadata={"Software": None}))
    plt.close(figure)


def check_writable(out_dir: str) -> None:
    """Fail before any work when the output directory cannot be written."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=out_dir, prefix=".probe-")
        os.close(handle)
        os.remove(probe)
    except OSError as exc:
        raise HarnessError(f"{out_dir}: output directory is not writable ({exc.strerror})") from None


def write_run(result, out_dir: str, provenance: dict) -> pd.DataFrame:
    """Save a run's results and build its report; returns the article-style table."""
    distances = result.distances.copy()
    distances["value"] = distances["value"].map(format_value)
    _write_csv(os.path.join(out_dir, DISTANCES), distances)
    _write_csv(os.path.join(out_dir, IMAGES), pd.DataFrame(result.sources).rename(
        columns={"name": "image", "id": "image_id"}))
    _write_csv(os.path.join(out_dir, ERRORS), result.errors)
    impostors = result.impostors.copy()
    impostors["value"] = impostors["value"].map(lambda v: v if isinstance(v, str) else format_value(v))
    _write_csv(os.path.join(out_dir, IMPOSTORS), impostors)
    hashers = pd.DataFrame([{"hasher": h.id, "name": h.spec["name"], "distance": h.distance_kind,
                             "distance_max": h.distance_max, "status": h.status, "reason": h.reason,
                             "params": json.dumps({k: v for k, v in h.spec.items() if k != "name"})}
                            for h in result.hashers])
    _write_csv(os.path.join(out_dir, HASHERS), hashers)
    run = {**provenance, "config": result.config.resolved(), "sources": result.sources,
           "hashers": [h.spec | {"id": h.id, "status": h.status, "reason": h.reason} for h in result.hashers],
           "notes": result.notes}
    _write_text(os.path.join(out_dir, RUN), json.dumps(run, indent=2, default=str) + "\n")
    if result.previews:
        # Photographs compress poorly in PNG: a lower resolution keeps a large grid to a few MB.
        _save_figure(os.path.join(out_dir, PREVIEWS), previews_figure(result.previews), dpi=72)
    return build_report(out_dir)


# --- reading and building ----------------------------------------------------

def read_distances(out_dir: str) -> pd.DataFrame:
    path = os.path.join(out_dir, DISTANCES)
    if not os.path.isfile(path):
        raise HarnessError(f"{out_dir}: no {DISTANCES} here; is this the output directory of a run?")
    text_columns = {c: str for c in ("image", "image_id", "family", "value", "label", "hasher", "error")}
    frame = pd.read_csv(path, dtype=text_columns, keep_default_na=False, na_values={"distance": [""], "distance_norm": [""]})
    missing = {"image", "family", "value", "label", "hasher", "distance", "distance_norm", "error"} - set(frame.columns)
    if missing:
        raise HarnessError(f"{path}: missing columns {', '.join(sorted(missing))}")
    return frame


def read_impostors(out_dir: str) -> pd.DataFrame:
    path = os.path.join(out_dir, IMPOSTORS)
    if not os.path.isfile(path):
        return pd.DataFrame(columns=["hasher", "kind", "family", "value", "image_id", "other_id", "distance"])
    return pd.read_csv(path, dtype={c: str for c in ("hasher", "kind", "family", "value", "image_id", "other_id")},
                       keep_default_na=False, na_values={"distance": [""]})


def build_report(out_dir: str) -> pd.DataFrame:
    """Rebuild table.csv, the detection tables, the figures and summary.md from the saved
    CSVs and run.json."""
    distances = read_distances(out_dir)
    impostors = read_impostors(out_dir)
    hashers_path = os.path.join(out_dir, HASHERS)
    hashers = pd.read_csv(hashers_path, dtype=str, keep_default_na=False) if os.path.isfile(hashers_path) else None
    run_path = os.path.join(out_dir, RUN)
    run = json.load(open(run_path, encoding="utf-8")) if os.path.isfile(run_path) else {}
    errors_path = os.path.join(out_dir, ERRORS)
    problems = pd.read_csv(errors_path, dtype=str, keep_default_na=False) if os.path.isfile(errors_path) else None

    table = article_table(distances)
    _write_csv(os.path.join(out_dir, TABLE), table)

    curves = family_curves(distances)
    figures = []
    for family in dict.fromkeys(distances["family"]):
        path = os.path.join(FIGURES, f"family_{_slug(family)}.png")
        _save_figure(os.path.join(out_dir, path), family_figure(curves, family, hasher_order(distances)))
        figures.append((family, path))
    overview = os.path.join(FIGURES, "families.png")
    _save_figure(os.path.join(out_dir, overview), overview_figure(curves, hasher_order(distances)))
    heatmap = os.path.join(FIGURES, "heatmap.png")
    _save_figure(os.path.join(out_dir, heatmap), heatmap_figure(distances))

    detection = build_detection(out_dir, distances, impostors, run.get("config", {}).get("detection", {}))

    _write_text(os.path.join(out_dir, SUMMARY),
                summary_markdown(run, table, hashers, distances, overview, heatmap, figures,
                                 os.path.isfile(os.path.join(out_dir, PREVIEWS)), detection, problems))
    return table


DETECTION_DEFAULTS = {"fpr": [0.01, 0.001], "thresholds": {}, "min_tpr": 0.95}


def build_detection(out_dir: str, distances: pd.DataFrame, impostors: pd.DataFrame, options: dict) -> dict | None:
    """Thresholds, detection rates and ROC from genuine and impostor distances, with their figures.
    None when there is no impostor baseline (a single image)."""
    if impostors.empty:
        for stale in (THRESHOLDS, DETECTION, ROC):  # from an earlier run into the same directory
            if os.path.exists(os.path.join(out_dir, stale)):
                os.remove(os.path.join(out_dir, stale))
        return None
    options = {**DETECTION_DEFAULTS, **options}
    points = operating_points(distances, impostors, options["fpr"], options["thresholds"])
    thresholds = thresholds_table(points)
    detection = detection_table(distances, points)
    roc = roc_table(distances, impostors)
    _write_csv(os.path.join(out_dir, THRESHOLDS), thresholds)
    _write_csv(os.path.join(out_dir, DETECTION), detection)
    _write_csv(os.path.join(out_dir, ROC), roc)
    hashers = hasher_order(distances)
    chosen = points and next(iter(points.values()))[0].name  # the first target FPR
    figures = {
        "detection": os.path.join(FIGURES, "detection.png"),
        "histograms": os.path.join(FIGURES, "histograms.png"),
        "roc": os.path.join(FIGURES, "roc.png"),
        "matrix": os.path.join(FIGURES, "detection_matrix.png"),
    }
    _save_figure(os.path.join(out_dir, figures["detection"]), detection_figure(detection, chosen, hashers))
    _save_figure(os.path.join(out_dir, figures["histograms"]), histogram_figure(distances, impostors, points, hashers))
    _save_figure(os.path.join(out_dir, figures["roc"]), roc_figure(distances, impostors, hashers))
    _save_figure(os.path.join(out_dir, figures["matrix"]), detection_matrix_figure(detection, chosen, hashers))
    verdicts = family_verdicts(detection, chosen, options["min_tpr"])
    return {"thresholds": thresholds, "detection": detection, "roc": roc, "figures": figures,
            "chosen": chosen, "verdicts": verdicts, "min_tpr": options["min_tpr"],
            "kinds": {hasher: part["kind"].value_counts(sort=False).to_dict()
                      for hasher, part in impostors.groupby("hasher", sort=False)}}


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


# --- figures -------------------------------------------------------------------

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colour(hashers: list[str], hasher: str):
    """One colour per hasher, the same in every figure; tab20 when tab10 would repeat."""
    import matplotlib

    k = hashers.index(hasher)
    if len(hashers) <= 10:
        return f"C{k}"
    # tab20 pairs a strong and a light shade of each hue: all strong ones first, then the light.
    return matplotlib.colormaps["tab20"]((2 * k) % 20 + (k // 10) % 2)


def _geometric(xs: np.ndarray) -> bool:
    """True for sweeps that grow by a roughly constant factor over a wide range
    (1, 2, 4, ... 64 or 3/4, 1/2, ... 1/32): those read best on a log axis."""
    if len(xs) < 3 or xs.min() <= 0 or xs.max() / xs.min() < 8:
        return False
    ratios = xs[1:] / xs[:-1]
    return ratios.min() > 1.2 and ratios.max() / ratios.min() < 1.6


def _value_axis(ax, xs: np.ndarray) -> None:
    """Ticks at the swept values, log-spaced when the sweep is geometric."""
    xs = np.sort(xs)
    if _geometric(xs):
        ax.set_xscale("log")
    labels = [f"{x:.3g}" for x in xs]
    long = max(len(label) for label in labels) > 5
    ax.set_xticks(xs, labels, fontsize=8, rotation=35 if long else 0, ha="right" if long else "center")
    ax.minorticks_off()
    ax.set_xlabel("value")


def _plot_family(ax, curves: pd.DataFrame, family: str, hashers: list[str]) -> None:
    rows = curves[curves["family"] == family]
    numeric = rows["x"].notna().all() and rows["value"].nunique() > 1
    if not numeric:  # one point (identity, grayscale) or non-numeric values: grouped bars
        labels = list(dict.fromkeys(rows["label"]))
        present = [h for h in hashers if h in set(rows["hasher"])]
        width = 0.8 / max(1, len(present))
        for slot, hasher in enumerate(present):
            k = hashers.index(hasher)  # colour by position in the full list, as in every panel
            part = rows[rows["hasher"] == hasher].set_index("label").reindex(labels)
            positions = np.arange(len(labels)) + (slot - (len(present) - 1) / 2) * width
            heights = part["median"].to_numpy(dtype=float)
            ax.bar(positions, np.nan_to_num(heights), width, label=hasher, color=_colour(hashers, hasher))
            for x, height in zip(positions, heights):  # a zero bar is invisible: print its value
                if np.isfinite(height):
                    ax.annotate(f"{height:.2g}", (x, height), ha="center", va="bottom", fontsize=7,
                                xytext=(0, 1), textcoords="offset points")
        ax.set_xticks(np.arange(len(labels)), labels, rotation=20 if len(labels) > 1 else 0,
                      ha="right" if len(labels) > 1 else "center")
    else:
        xs = np.sort(rows["x"].unique())
        for k, hasher in enumerate(hashers):
            part = rows[rows["hasher"] == hasher].sort_values("x")
            if part.empty:
                continue
            ax.plot(part["x"], part["median"], marker="o", label=hasher, color=_colour(hashers, hasher))
            if (part["images"] > 1).any():
                ax.fill_between(part["x"], part["q25"], part["q75"], alpha=0.2, color=_colour(hashers, hasher), linewidth=0)
        _value_axis(ax, xs)
    ax.set_title(family)
    ax.grid(alpha=0.3)


def _y_limit(curves: pd.DataFrame) -> float:
    top = np.nanmax(curves[["median", "q75"]].to_numpy(dtype=float), initial=0.0)
    return max(0.05, min(1.0, top * 1.15))


def _note_missing(figure, curves: pd.DataFrame, hashers: list[str]) -> None:
    missing = [h for h in hashers if h not in set(curves["hasher"])]
    if missing:
        figure.text(0.01, 0.0, f"not shown (no distances, e.g. unavailable): {', '.join(missing)}",
                    fontsize=8, color="0.4", va="top")


def family_figure(curves: pd.DataFrame, family: str, hashers: list[str]):
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(6, 4))
    _plot_family(ax, curves, family, hashers)
    ax.set_ylim(0, _y_limit(curves[curves["family"] == family]))
    ax.set_ylabel("normalised distance (distance / max)")
    if (curves["images"] > 1).any():
        ax.set_title(f"{family}: median over images, band = inter-quartile range")
    ax.legend(title="hasher")
    _note_missing(figure, curves, hashers)
    return figure


def _grid(count: int, sharey: bool = True, sharex: bool = False):
    """A figure with one panel per item, four to a row; spare panels hidden."""
    plt = _pyplot()
    columns = min(4, max(1, count))
    rows = -(-count // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.2 * rows), sharey=sharey, sharex=sharex,
                                squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return figure, axes


def _figure_legend(figure, hashers: list[str], shown: list[str]) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=_colour(hashers, h), marker="o") for h in shown]
    # At most six a row, so many hashers make a taller legend rather than a wider figure.
    figure.legend(handles, shown, loc="lower center", ncol=max(1, min(6, len(shown))), bbox_to_anchor=(0.5, 0.985))
    figure.tight_layout(rect=(0, 0, 1, 0.97))


def overview_figure(curves: pd.DataFrame, hashers: list[str]):
    families = list(dict.fromkeys(curves["family"]))
    figure, axes = _grid(len(families))
    for ax, family in zip(axes.flat, families):
        _plot_family(ax, curves, family, hashers)
    axes.flat[0].set_ylim(0, _y_limit(curves))  # shared by every panel
    for ax in axes[:, 0]:
        ax.set_ylabel("distance / max")
    _figure_legend(figure, hashers, [h for h in hashers if h in set(curves["hasher"])])
    _note_missing(figure, curves, hashers)
    return figure


def detection_figure(detection: pd.DataFrame, operating_point: str, hashers: list[str]):
    """The key figure: per family, the share of edited copies still matched at the chosen
    false-positive rate, against the edit's strength; band = 95% Wilson interval."""
    chosen = detection[detection["operating_point"] == operating_point].copy()
    chosen["x"] = pd.to_numeric(chosen["value"], errors="coerce")
    families = list(dict.fromkeys(chosen["family"]))
    figure, axes = _grid(len(families))
    for ax, family in zip(axes.flat, families):
        rows = chosen[chosen["family"] == family]
        numeric = rows["x"].notna().all() and rows["value"].nunique() > 1
        positions = {label: k for k, label in enumerate(dict.fromkeys(rows["label"]))}
        for hasher in hashers:
            part = rows[rows["hasher"] == hasher]
            if part.empty:
                continue
            part = part.sort_values("x") if numeric else part
            xs = part["x"] if numeric else part["label"].map(positions)
            style = "-" if part["resolved"].all() else "--"
            ax.plot(xs, part["tpr"], style, marker="o", color=_colour(hashers, hasher), label=hasher)
            ax.fill_between(xs, part["tpr_low"], part["tpr_high"], alpha=0.15, color=_colour(hashers, hasher),
                            linewidth=0)
        if numeric:
            _value_axis(ax, rows["x"].unique())
        else:
            ax.set_xticks(list(positions.values()), list(positions), fontsize=8)
            ax.set_xlim(-0.5, len(positions) - 0.5)
        ax.set_title(family)
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"detected at {operating_point}")
    _figure_legend(figure, hashers, [h for h in hashers if h in set(chosen["hasher"])])
    if not chosen["resolved"].all():
        figure.text(0.01, 0.0, "dashed: too few impostor pairs to resolve this false-positive rate",
                    fontsize=8, color="0.4", va="top")
    return figure


def detection_matrix(detection: pd.DataFrame, operating_point: str, hashers: list[str]) -> pd.DataFrame:
    """Mean detection rate over each family's strengths: families x hashers."""
    chosen = detection[detection["operating_point"] == operating_point]
    matrix = chosen.pivot_table(index="family", columns="hasher", values="tpr", aggfunc="mean", sort=False)
    return matrix.reindex(columns=[h for h in hashers if h in matrix.columns])


def detection_matrix_figure(detection: pd.DataFrame, operating_point: str, hashers: list[str]):
    """Every hasher against every family at a glance: the mean share of copies detected."""
    plt = _pyplot()
    matrix = detection_matrix(detection, operating_point, hashers)
    rows, columns = matrix.shape
    figure, ax = plt.subplots(figsize=(2.5 + 0.62 * columns, 1.4 + 0.3 * rows))
    image = ax.imshow(matrix.to_numpy(dtype=float), aspect="auto", cmap="RdYlGn", vmin=0, vmax=1)
    ax.set_xticks(range(columns), matrix.columns, rotation=40, ha="left", fontsize=8)
    ax.set_yticks(range(rows), matrix.index, fontsize=8)
    ax.xaxis.tick_top()
    for i in range(rows):
        for j in range(columns):
            value = matrix.iat[i, j]
            if np.isfinite(value):
                ax.text(j, i, f"{100 * value:.0f}", ha="center", va="center", fontsize=6.5)
    figure.colorbar(image, ax=ax, fraction=0.04, label=f"copies detected at {operating_point} (mean over strengths)")
    figure.tight_layout()
    return figure


def histogram_figure(distances: pd.DataFrame, impostors: pd.DataFrame, points: dict, hashers: list[str]):
    """Per hasher: how far apart copies (genuine) and different images (impostors) are."""
    shown = [h for h in hashers if h in points]
    figure, axes = _grid(len(shown), sharey=False)
    for ax, hasher in zip(axes.flat, shown):
        genuine = distances.loc[(distances["hasher"] == hasher) & (distances["error"] == ""), "distance"]
        impostor = impostors.loc[impostors["hasher"] == hasher, "distance"]
        both = np.concatenate([genuine, impostor])
        # A few huge distances (ColorMomentHash on flat images reaches 1e12) would squash every
        # bin into one: only for such a tail the axis stops early, and the title says what is cut.
        high, p90 = float(both.max()), float(np.percentile(both, 90))
        if p90 > 0 and high > 50 * p90:
            high = 3 * p90
        beyond = int(np.count_nonzero(both > high))
        integral = np.all(np.mod(both, 1) == 0) and high - both.min() <= 1024
        bins = np.arange(both.min() - 0.5, high + 1.5) if integral else np.linspace(both.min(), high, 51)
        ax.hist(impostor, bins=bins, density=True, histtype="stepfilled", color="0.85", edgecolor="0.45", linewidth=0.6,
                label=f"impostors ({len(impostor)})")
        ax.hist(genuine, bins=bins, density=True, alpha=0.6, color=_colour(hashers, hasher),
                label=f"copies ({len(genuine)})")
        for k, point in enumerate(points[hasher]):
            if np.isfinite(point.threshold):
                ax.axvline(point.threshold, color="black", linestyle=["-", "--", ":", "-."][k % 4], linewidth=1,
                           label=f"threshold {point.name}: {format_number(point.threshold)}")
        ax.set_title(hasher + (f" ({beyond} beyond {format_number(high)} not shown)" if beyond else ""),
                     fontsize=10 if not beyond else 8)
        ax.set_xlabel("distance")
        ax.legend(fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("density")
    figure.tight_layout()
    return figure


def roc_figure(distances: pd.DataFrame, impostors: pd.DataFrame, hashers: list[str]):
    """Per family: true-positive rate against false-positive rate (log axis), one line per hasher."""
    usable = distances[distances["error"] == ""]
    families = list(dict.fromkeys(usable["family"]))
    figure, axes = _grid(len(families), sharex=True)
    floor = 1.0
    for ax, family in zip(axes.flat, families):
        for hasher in hashers:
            genuine = usable.loc[(usable["hasher"] == hasher) & (usable["family"] == family), "distance"]
            impostor = impostors.loc[impostors["hasher"] == hasher, "distance"]
            if genuine.empty or impostor.empty:
                continue
            _, fpr, tpr = roc_curve(genuine, impostor)
            floor = min(floor, 1.0 / len(impostor))
            ax.step(np.maximum(fpr, 1.0 / len(impostor) / 2), tpr, where="post", color=_colour(hashers, hasher))
        ax.set_xscale("log")
        ax.set_title(family)
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    for ax in axes.flat[:len(families)]:
        ax.set_xlim(floor / 2, 1.0)
        ax.set_xlabel("false-positive rate")
    for ax in axes[:, 0]:
        ax.set_ylabel("true-positive rate")
    _figure_legend(figure, hashers, [h for h in hashers if h in set(usable["hasher"])])
    return figure


def matplotlib_colormap(name: str):
    import matplotlib

    return matplotlib.colormaps[name]


def heatmap_figure(distances: pd.DataFrame):
    plt = _pyplot()
    hashers = hasher_order(distances)
    usable = distances[distances["error"] == ""]
    labels = list(dict.fromkeys(distances["label"]))
    norm = usable.pivot_table(index="label", columns="hasher", values="distance_norm", aggfunc="median", sort=False)
    raw = usable.pivot_table(index="label", columns="hasher", values="distance", aggfunc="median", sort=False)
    norm = norm.reindex(index=labels, columns=hashers)
    raw = raw.reindex(index=labels, columns=hashers)
    figure, ax = plt.subplots(figsize=(2.2 + 1.3 * len(hashers), 1.2 + 0.28 * len(labels)))
    # Unavailable or failed cells: grey, not a colour on the scale.
    colours = matplotlib_colormap("viridis").with_extremes(bad="0.85")
    image = ax.imshow(np.ma.masked_invalid(norm.to_numpy(dtype=float)), aspect="auto", cmap=colours, vmin=0, vmax=1)
    ax.set_xticks(range(len(hashers)), hashers, rotation=40 if len(hashers) > 4 else 0,
                  ha="left" if len(hashers) > 4 else "center")
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.xaxis.tick_top()
    for i in range(len(labels)):
        for j in range(len(hashers)):
            value = raw.iat[i, j]
            text = f"{value:.3g}" if np.isfinite(value) else (
                UNAVAILABLE if (distances.loc[distances["hasher"] == hashers[j], "error"] == UNAVAILABLE).all()
                else "")
            shade = norm.iat[i, j]
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="white" if np.isfinite(shade) and shade < 0.6 else "black")
    figure.colorbar(image, ax=ax, label="normalised distance (distance / max)", fraction=0.05)
    ax.set_title("distance per pair (cell text: raw distance)", fontsize=9, pad=24)
    return figure


def previews_figure(previews):
    """Side A and B of each pair for the first image: the article's imshow previews, saved."""
    plt = _pyplot()
    families = list(dict.fromkeys(p.family for p, _, _ in previews))
    per_family = {f: [(p, a, b) for p, a, b in previews if p.family == f] for f in families}
    columns = max(len(items) for items in per_family.values())
    figure, axes = plt.subplots(len(families), columns, figsize=(1.6 * columns, 1.9 * len(families)), squeeze=False)
    for row, family in enumerate(families):
        for col in range(columns):
            ax = axes[row, col]
            ax.axis("off")
            if col >= len(per_family[family]):
                continue
            pair, a, b = per_family[family][col]
            shown = b if b is not None else a
            if shown is not None:
                ax.imshow(shown[..., ::-1])
            ax.set_title(pair.label, fontsize=6)
    figure.tight_layout()
    # Above the top row whatever the figure's height (bbox_inches="tight" keeps it in the file).
    figure.suptitle("Side B of every pair (first image)", fontsize=9, y=1 + 0.15 / figure.get_figheight())
    return figure


# --- summary ---------------------------------------------------------------------

def markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _percent(rate: float) -> str:
    return f"{100 * rate:.0f}%" if np.isfinite(rate) else "n/a"


def _format_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """Numbers to short text for Markdown tables."""
    out = frame.copy()
    for column in out.columns:
        if pd.api.types.is_float_dtype(out[column]):
            out[column] = [("" if not np.isfinite(v) else f"{v:.4g}") for v in out[column]]
    return out


def answer_section(detection: dict) -> list[str]:
    verdicts, chosen, min_tpr = detection["verdicts"], detection["chosen"], detection["min_tpr"]
    thresholds = detection["thresholds"]
    at_chosen = thresholds[thresholds["operating_point"] == chosen]
    pairs = int(at_chosen["impostor_pairs"].max()) if len(at_chosen) else 0
    rate = float(chosen.split("=", 1)[1])
    lines = ["## The answer", "",
             f"Which hasher still recognises an edited copy while calling at most {rate:g} of pairs of "
             f"*different* images a match ({chosen}; thresholds estimated from {pairs} impostor pairs per hasher)? "
             f"Per family of edits, the hasher with the highest average detection rate over the family's "
             f"strengths, how many strengths it detects at {_percent(min_tpr)} or more, and the first strength "
             f"(in the config's order) where it falls below that:", "",
             "| family | best hasher | detected (mean) | strengths held | first below | runner-up |",
             "| --- | --- | --- | --- | --- | --- |"]
    for row in verdicts.itertuples(index=False):
        miss = f"{row.first_miss} ({_percent(row.first_miss_tpr)})" if row.first_miss else "none"
        runner = f"{row.runner_up} ({_percent(row.runner_up_mean_tpr)})" if row.runner_up else ""
        flag = "" if row.resolved else " *"
        tied = row.best.split(" = ")
        best = row.best if len(tied) <= 3 else f"{len(tied)} tied: {', '.join(tied[:2])}, ..."
        lines.append(f"| {row.family} | {best}{flag} | {_percent(row.mean_tpr)} | {row.held} of {row.strengths} "
                     f"| {miss} | {runner} |")
    lines.append("")
    if not verdicts["resolved"].all():
        lines += [f"\\* Too few impostor pairs to resolve {chosen}: not even one false match is allowed, so the "
                  "threshold only sits below the closest pair of different images. Add images (or "
                  "`impostors: {transformed: true}`) before trusting these rows.", ""]
    lines += [f"![detection rate per family and hasher]({detection['figures']['matrix']})", "",
              "**How to read it:** each cell is the percentage of edited copies a hasher (column) still "
              f"matches at {chosen}, averaged over the strengths of an edit family (row). Green holds up, "
              "red does not.", "",
              f"![detection rate per family]({detection['figures']['detection']})", "",
              f"**How to read it:** one panel per family of edits, the edit's strength on the x axis, and on the "
              f"y axis the share of images whose edited copy is still matched at the threshold that keeps false "
              f"matches between different images at {rate:g}. The band is a 95% Wilson interval over images; "
              f"a line near 1 is a hasher that holds up.", ""]
    return lines


def detection_sections(detection: dict) -> list[str]:
    thresholds = detection["thresholds"].copy()
    thresholds["resolved"] = thresholds["resolved"].map({True: "yes", False: "**no**"})
    roc = detection["roc"]
    overall = roc[roc["family"] == ALL_FAMILIES][["hasher", "auc", "eer", "genuine_pairs", "impostor_pairs"]]
    per_family = roc[roc["family"] != ALL_FAMILIES].pivot_table(index="family", columns="hasher", values="auc",
                                                                  sort=False).reset_index()
    kind_text = "; ".join(f"{hasher}: " + ", ".join(f"{count} {kind}" for kind, count in counts.items())
                          for hasher, counts in detection["kinds"].items())
    unreachable = sorted(set(thresholds.loc[thresholds["threshold"].isna(), "hasher"]))
    no_threshold_note = [f"An empty threshold ({', '.join(unreachable)}) means more impostor pairs than the rate "
                         "allows sit at the smallest distance there is: no threshold reaches that rate, so no copy "
                         "counts as detected.", ""] if unreachable else []
    fixed_rates = []
    detected = detection["detection"]
    fixed = detected[detected["operating_point"] == "fixed"]
    if len(fixed):
        given = thresholds[thresholds["operating_point"] == "fixed"]
        rates = fixed.pivot_table(index="family", columns="hasher", values="tpr", aggfunc="mean", sort=False)
        fixed_rates = [
            "## The thresholds you gave", "",
            "Mean detection rate per family at the config's fixed thresholds ("
            + ", ".join(f"{r.hasher} <= {format_number(r.threshold)}: false-positive rate {r.fpr_measured:.4g} "
                        f"on {r.impostor_pairs} impostor pairs" for r in given.itertuples(index=False)) + "):", "",
            markdown_table(_format_cells(rates.reset_index())), ""]
    return fixed_rates + [
        "## Thresholds", "",
        "A pair counts as a match when its distance is **at most** the threshold. Each threshold is the largest "
        "one whose false-positive rate on the impostor pairs stays within the target (`false_matches` of "
        "`impostor_pairs`; ties are never split). `resolved: no` means there are fewer than 1/rate impostor "
        "pairs, so the rate cannot be measured: that threshold only sits below the closest different images. "
        "`fixed` rows evaluate thresholds given in the config.", "",
        markdown_table(_format_cells(thresholds)), "",
        *no_threshold_note,
        f"Impostor pairs: {kind_text} (`source`: two different untouched images; `transformed`: an edited copy "
        "against a different image).", "",
        f"![genuine and impostor distances]({detection['figures']['histograms']})", "",
        "**How to read it:** for each hasher, the distances between an image and its edited copies (coloured) "
        "and between different images (grey), with the thresholds as vertical lines. The less the two overlap, "
        "the better the hasher separates copies from different pictures.", "",
        "## ROC", "",
        "Area under the ROC curve (1 = every copy is closer than every pair of different images, 0.5 = chance) "
        "and equal error rate (where missed copies and false matches are equally frequent), over all families:",
        "", markdown_table(_format_cells(overall)), "",
        "Area under the curve per family:", "", markdown_table(_format_cells(per_family)), "",
        f"![ROC curves per family]({detection['figures']['roc']})", "",
        "**How to read it:** per family, the share of copies matched (y) against the share of different-image "
        "pairs falsely matched (x, log scale) as the threshold grows. Curves towards the top left are better.",
        "",
        "`detection.csv` holds every rate with its interval, `thresholds.csv` the thresholds and `roc.csv` "
        "the areas and equal error rates.", ""]


def summary_markdown(run: dict, table: pd.DataFrame, hashers: pd.DataFrame | None, distances: pd.DataFrame,
                     overview: str, heatmap: str, figures: list[tuple[str, str]], previews: bool,
                     detection: dict | None = None, problems: pd.DataFrame | None = None) -> str:
    config = run.get("config", {})
    images = list(dict.fromkeys(distances["image"]))
    lines = [f"# {config.get('name', 'harness run')}", ""]
    if config.get("description"):
        lines += [config["description"].strip(), ""]
    lines += [f"Images: {len(images)} ({', '.join(images[:10])}{', ...' if len(images) > 10 else ''}). "
              f"Pairs per image: {len(table)}. Hashers: {', '.join(hasher_order(distances))}.", ""]
    for note in run.get("notes", []):
        lines += [f"> **Note:** {note}", ""]
    if problems is not None and len(problems):
        shown = 20
        lines += ["## Problems", "", f"{len(problems)} problems (every one is a row of `{ERRORS}`; the run "
                  "went on without what failed):", ""]
        lines += [f"- `{row.image}` ({row.stage}): {row.reason}" for row in problems.head(shown).itertuples()]
        if len(problems) > shown:
            lines.append(f"- ... and {len(problems) - shown} more in `{ERRORS}`")
        lines.append("")
    if detection is not None:
        lines += answer_section(detection)
    lines += ["## How to read the distances", "",
              "Each row of the table is a pair of images: A (usually the untouched image) and B (A after the edit "
              "named in the row). Each cell is the distance a hasher measures between A and B: 0 means the "
              "hashes are identical, and larger means the hasher sees the two as more different."
              + (" With several images, each cell is the median over images." if len(images) > 1 else
                 " One image proves little: the detection rates of a collection say what a distance means."),
              "",
              "Hamming hashes count differing bits (0 to the hash's length). Embeddings use the article's scale "
              "`64 * (1 - cosine similarity)`: 0 is the same direction, 64 orthogonal. The figures divide each "
              "distance by its hasher's maximum (`distance / max`, in [0, 1]) so hashers with different ranges "
              "share an axis.", ""]
    if hashers is not None and len(hashers):
        lines += ["| hasher | distance | max | status |", "| --- | --- | --- | --- |"]
        for row in hashers.itertuples(index=False):
            lines.append(f"| {row.hasher} | {row.distance} | {row.distance_max} | {row.status} |")
        lines.append("")
    lines += ["## Distances", "", markdown_table(table), "",
              f"![all families]({overview})", "",
              "**How to read it:** one panel per family, the distance against the swept value (log scale where "
              "the values double at each step), one line per hasher"
              + ("; the line is the median over images and the band the inter-quartile range." if len(images) > 1
                 else "."), "",
              f"![heatmap]({heatmap})", "",
              "**How to read it:** the whole table as colour (normalised distance) with the raw distance in each "
              "cell.", ""]
    if detection is not None:
        lines += detection_sections(detection)
    lines += ["## Per family", ""]
    for family, path in figures:
        lines += [f"![{family}]({path})", ""]
    if previews:
        lines += ["## What the edits look like", "", f"![previews]({PREVIEWS})", "",
                  "Side B of every pair for the first image (not rebuilt by `harness report`; "
                  "not committed for images that may not be redistributed).", ""]
    versions = run.get("versions", {})
    if versions:
        git = run.get("git") or {}
        lines += ["## Provenance", "",
                  f"Produced by `{' '.join(run.get('command', []))}` on {run.get('date', '?')}, "
                  f"git commit {git.get('commit') or 'unknown'}{' (uncommitted changes)' if git.get('dirty') else ''}. "
                  f"Python {versions.get('python')}, OpenCV {versions.get('cv2')}, NumPy {versions.get('numpy')}, "
                  f"TensorFlow {versions.get('tensorflow', 'not installed')}. "
                  f"The resolved config and all versions are in `{RUN}`.", ""]
    return "\n".join(lines)
