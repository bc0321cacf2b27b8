"""Figures: matplotlib (Agg) figures built from a run's tables. Pure: tables in, figures out;
the report saves them. One colour per hasher, the same in every figure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dataclasses import dataclass

from harness.metrics import format_number, hasher_order, roc_curve
from harness.schema import UNAVAILABLE

# Twenty hues that are not grey (grey is the impostors' colour): tab20's strong shades, then its
# light ones, with the grey pair (14, 15) replaced by two of tab20b's.
_GREY_PAIR = (14, 15)


@dataclass(frozen=True)
class SweepAxis:
    """How a family's x axis reads: the swept parameter(s), and whether the config gave labels."""

    title: str  # e.g. "jpeg quality"
    labelled: bool  # the config gave `labels:`: tick labels are those, not the raw values


def sweep_axes(config: dict) -> dict[str, SweepAxis]:
    """Per family of a (resolved) config: its x axis, read from the sweeps' `$value` parameters."""
    axes = {}
    for sweep in config.get("sweeps", []) if isinstance(config, dict) else []:
        if not isinstance(sweep, dict) or "family" not in sweep:
            continue
        swept: dict[str, list[str]] = {}  # transform -> its swept parameters
        for side in (sweep.get("a"), sweep.get("b")):
            for step in side if isinstance(side, list) else [side]:
                if isinstance(step, dict) and len(step) == 1:
                    (name, params), = step.items()
                    keys = [k for k, v in (params or {}).items() if v == "$value"] if isinstance(params, dict) else []
                    for key in keys:
                        swept.setdefault(str(name), [])
                        if key not in swept[str(name)]:
                            swept[str(name)].append(key)
        # "jpeg quality", "center_crop dx, dy"; "gamma" rather than "gamma gamma"
        title = "; ".join(name if keys == [name] else f"{name} {', '.join(keys)}" for name, keys in swept.items())
        axes[str(sweep["family"])] = SweepAxis(title or "value", "labels" in sweep)
    return axes


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
        return f"C{k}" if k != 7 else matplotlib.colormaps["tab20b"](0)  # C7 is grey: the impostors'
    # tab20 pairs a strong and a light shade of each hue: all strong ones first, then the light.
    index = (2 * k) % 20 + (k // 10) % 2
    if index in _GREY_PAIR:
        return matplotlib.colormaps["tab20b"](0 if index == 14 else 8)
    return matplotlib.colormaps["tab20"](index)


def _geometric(xs: np.ndarray) -> bool:
    """True for sweeps that grow by a roughly constant factor over a wide range
    (1, 2, 4, ... 64 or 3/4, 1/2, ... 1/32): those read best on a log axis."""
    if len(xs) < 3 or xs.min() <= 0 or xs.max() / xs.min() < 8:
        return False
    ratios = xs[1:] / xs[:-1]
    return ratios.min() > 1.2 and ratios.max() / ratios.min() < 1.6


def _value_axis(ax, rows: pd.DataFrame, axis: SweepAxis | None) -> None:
    """Ticks at the swept values (log-spaced when the sweep is geometric), labelled with the config's
    labels where it gives them; the mildest strength on the left (the config lists it first), and the
    axis named after the swept parameter."""
    in_order = rows.drop_duplicates("x")  # config order: mildest first
    xs = in_order["x"].to_numpy(dtype=float)
    ordered = np.sort(xs)
    if _geometric(ordered):
        ax.set_xscale("log")
    labelled = axis is not None and axis.labelled
    by_x = dict(zip(xs, in_order["label"])) if labelled else {}
    labels = [_short(by_x[x]) if labelled else f"{x:g}" for x in ordered]
    long = max(len(label) for label in labels) > 5
    ax.set_xticks(ordered, labels, fontsize=8, rotation=35 if long else 0, ha="right" if long else "center")
    ax.minorticks_off()
    if len(xs) > 1 and xs[0] > xs[-1]:  # e.g. JPEG quality 90 -> 10: strength grows as the value falls
        ax.invert_xaxis()
    ax.set_xlabel(axis.title if axis is not None else "value", fontsize=9)


def _short(label: str) -> str:
    return label if len(label) <= 14 else label[:13] + "…"


def _plot_family(ax, curves: pd.DataFrame, family: str, hashers: list[str], axis: SweepAxis | None) -> None:
    rows = curves[curves["family"] == family]
    numeric = rows["x"].notna().all() and rows["value"].nunique() > 1
    if not numeric:  # one point (identity, grayscale) or non-numeric values: grouped bars
        labels = list(dict.fromkeys(rows["label"]))
        present = [h for h in hashers if h in set(rows["hasher"])]
        width = 0.8 / max(1, len(present))
        for slot, hasher in enumerate(present):
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
        for hasher in hashers:
            part = rows[rows["hasher"] == hasher].sort_values("x")
            if part.empty:
                continue
            ax.plot(part["x"], part["median"], marker="o", label=hasher, color=_colour(hashers, hasher))
            if (part["images"] > 1).any():
                ax.fill_between(part["x"], part["q25"], part["q75"], alpha=0.2, color=_colour(hashers, hasher),
                                linewidth=0)
        _value_axis(ax, rows, axis)
    ax.set_title(family)
    ax.grid(alpha=0.3)


def _y_limit(curves: pd.DataFrame) -> float:
    top = np.nanmax(curves[["median", "q75"]].to_numpy(dtype=float), initial=0.0)
    return max(0.05, min(1.0, top * 1.15))


def _note_missing(figure, curves: pd.DataFrame, hashers: list[str]) -> None:
    missing = [h for h in hashers if h not in set(curves["hasher"])]
    if missing:
        # Below everything (bbox_inches="tight" keeps it in the file), never over an axis label.
        figure.text(0.01, -0.01, f"not shown (no distances, e.g. unavailable): {', '.join(missing)}",
                    fontsize=8, color="0.4", va="top", transform=figure.transFigure)


def family_figure(curves: pd.DataFrame, family: str, hashers: list[str], axes: dict | None = None):
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(6, 4))
    _plot_family(ax, curves, family, hashers, (axes or {}).get(family))
    ax.set_ylim(0, _y_limit(curves[curves["family"] == family]))
    ax.set_ylabel("normalised distance (distance / max)")
    if (curves["images"] > 1).any():
        ax.set_title(f"{family}: median over images, band = inter-quartile range")
    ax.legend(title="hasher")
    figure.tight_layout()
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
    for ax in axes.flat[:count]:  # shared axes still label every panel: each is read on its own
        ax.tick_params(labelbottom=True, labelleft=True)
    return figure, axes


def _figure_legend(figure, hashers: list[str], shown: list[str]) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=_colour(hashers, h), marker="o") for h in shown]
    # At most six a row, so many hashers make a taller legend rather than a wider figure.
    figure.legend(handles, shown, loc="lower center", ncol=max(1, min(6, len(shown))), bbox_to_anchor=(0.5, 0.985))
    figure.tight_layout(rect=(0, 0, 1, 0.97))


def overview_figure(curves: pd.DataFrame, hashers: list[str], sweep: dict | None = None):
    families = list(dict.fromkeys(curves["family"]))
    figure, axes = _grid(len(families))
    for ax, family in zip(axes.flat, families):
        _plot_family(ax, curves, family, hashers, (sweep or {}).get(family))
    axes.flat[0].set_ylim(0, _y_limit(curves))  # shared by every panel
    for ax in axes[:, 0]:
        ax.set_ylabel("distance / max")
    _figure_legend(figure, hashers, [h for h in hashers if h in set(curves["hasher"])])
    _note_missing(figure, curves, hashers)
    return figure


def detection_figure(detection: pd.DataFrame, operating_point: str, hashers: list[str], sweep: dict | None = None):
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
            _value_axis(ax, rows, (sweep or {}).get(family))
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
        figure.text(0.01, -0.01, "dashed: too few impostor pairs to resolve this false-positive rate",
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


