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
from harness.metrics import UNAVAILABLE, article_table, family_curves, format_number, hasher_order

DISTANCES = "distances.csv"
HASHERS = "hashers.csv"
TABLE = "table.csv"
RUN = "run.json"
SUMMARY = "summary.md"
FIGURES = "figures"
PREVIEWS = "previews.png"


# --- writing, atomically ---------------------------------------------------

def _atomic(path: str, write: Callable[[str], None]) -> None:
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    os.close(handle)
    try:
        write(tmp)
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


def _save_figure(path: str, figure) -> None:
    import matplotlib.pyplot as plt

    # No timestamp in the PNG: a rebuilt figure is byte-identical to the first.
    _atomic(path, lambda tmp: figure.savefig(tmp, dpi=110, bbox_inches="tight", format="png",
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
        _save_figure(os.path.join(out_dir, PREVIEWS), previews_figure(result.previews))
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


def build_report(out_dir: str) -> pd.DataFrame:
    """Rebuild table.csv, the figures and summary.md from the saved CSVs and run.json."""
    distances = read_distances(out_dir)
    hashers_path = os.path.join(out_dir, HASHERS)
    hashers = pd.read_csv(hashers_path, dtype=str, keep_default_na=False) if os.path.isfile(hashers_path) else None
    run_path = os.path.join(out_dir, RUN)
    run = json.load(open(run_path, encoding="utf-8")) if os.path.isfile(run_path) else {}

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

    _write_text(os.path.join(out_dir, SUMMARY),
                summary_markdown(run, table, hashers, distances, overview, heatmap, figures,
                                 os.path.isfile(os.path.join(out_dir, PREVIEWS))))
    return table


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


# --- figures -------------------------------------------------------------------

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _geometric(xs: np.ndarray) -> bool:
    """True for sweeps like 1, 2, 4, 8 or 1/2, 1/4, 1/8: those read best on a log axis."""
    if len(xs) < 3 or xs.min() <= 0:
        return False
    ratios = xs[1:] / xs[:-1]
    return ratios.min() > 1.5 and ratios.max() / ratios.min() < 1.1


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
            ax.bar(positions, np.nan_to_num(heights), width, label=hasher, color=f"C{k}")
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
            ax.plot(part["x"], part["median"], marker="o", label=hasher, color=f"C{k}")
            if (part["images"] > 1).any():
                ax.fill_between(part["x"], part["q25"], part["q75"], alpha=0.2, color=f"C{k}", linewidth=0)
        if _geometric(xs):
            ax.set_xscale("log")
        ax.set_xticks(xs, [format_number(x) for x in xs], fontsize=8)
        ax.minorticks_off()
        ax.set_xlabel("value")
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


def overview_figure(curves: pd.DataFrame, hashers: list[str]):
    plt = _pyplot()
    families = list(dict.fromkeys(curves["family"]))
    columns = min(4, max(1, len(families)))
    rows = -(-len(families) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.2 * rows), sharey=True, squeeze=False)
    for ax, family in zip(axes.flat, families):
        _plot_family(ax, curves, family, hashers)
    axes.flat[0].set_ylim(0, _y_limit(curves))  # shared by every panel
    for ax in axes.flat[len(families):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("distance / max")
    from matplotlib.lines import Line2D

    shown = [h for h in hashers if h in set(curves["hasher"])]
    handles = [Line2D([], [], color=f"C{hashers.index(h)}", marker="o") for h in shown]
    figure.legend(handles, shown, loc="upper center", ncol=max(1, len(shown)), bbox_to_anchor=(0.5, 1.02))
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    _note_missing(figure, curves, hashers)
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
    ax.set_xticks(range(len(hashers)), hashers)
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
    figure.suptitle("Side B of every pair (first image)", fontsize=9)
    figure.tight_layout()
    return figure


# --- summary ---------------------------------------------------------------------

def markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def summary_markdown(run: dict, table: pd.DataFrame, hashers: pd.DataFrame | None, distances: pd.DataFrame,
                     overview: str, heatmap: str, figures: list[tuple[str, str]], previews: bool) -> str:
    config = run.get("config", {})
    images = sorted(set(distances["image"]))
    lines = [f"# {config.get('name', 'harness run')}", ""]
    if config.get("description"):
        lines += [config["description"].strip(), ""]
    lines += [f"Images: {len(images)} ({', '.join(images[:10])}{', ...' if len(images) > 10 else ''}). "
              f"Pairs: {len(table)}. Hashers: {', '.join(hasher_order(distances))}.", ""]
    for note in run.get("notes", []):
        lines.append(f"> **Note:** {note}")
        lines.append("")
    lines += ["## How to read this", "",
              "Each row is a pair of images: A (usually the untouched image) and B (A after the edit named "
              "in the row). Each cell is the distance a hasher measures between A and B: 0 means the "
              "hashes are identical, and larger means the hasher sees the two as more different. "
              "A robust hasher keeps the distance low for every edit; compare each number with the "
              "threshold you would use to call two images duplicates.",
              "",
              "Hamming hashes count differing bits (0 to 64 for 64-bit hashes). Embeddings (ResNet50) use "
              "the article's scale `64 * (1 - cosine similarity)`: 0 is the same direction, 64 orthogonal. "
              "The figures divide each distance by its hasher's maximum (`distance / max`, in [0, 1]) "
              "so hashers with different ranges share an axis."
              + (" With several images, each cell is the median over images." if len(images) > 1 else ""),
              ""]
    if hashers is not None and len(hashers):
        lines += ["| hasher | distance | max | status |", "| --- | --- | --- | --- |"]
        for row in hashers.itertuples(index=False):
            lines.append(f"| {row.hasher} | {row.distance} | {row.distance_max} | {row.status} |")
        lines.append("")
    lines += ["## Distances", "", markdown_table(table), "",
              f"![all families]({overview})", "",
              "One panel per family: the distance against the swept value (log scale where the values "
              "span a wide range), one line per hasher.", "",
              f"![heatmap]({heatmap})", "",
              "The whole table as colour (normalised) with the raw distance in each cell.", ""]
    lines += ["## Per family", ""]
    for family, path in figures:
        lines += [f"![{family}]({path})", ""]
    if previews:
        lines += ["## What the edits look like", "", f"![previews]({PREVIEWS})", "",
                  "Side B of every pair for the first image (not rebuilt by `harness report`; "
                  "not committed for images that may not be redistributed).", ""]
    versions = run.get("versions", {})
    if versions:
        lines += ["## Provenance", "",
                  f"Produced by `{' '.join(run.get('command', []))}` on {run.get('date', '?')}, "
                  f"git commit {(run.get('git') or {}).get('commit') or 'unknown'}"
                  f"{' (uncommitted changes)' if (run.get('git') or {}).get('dirty') else ''}. "
                  f"Python {versions.get('python')}, OpenCV {versions.get('cv2')}, NumPy {versions.get('numpy')}, "
                  f"TensorFlow {versions.get('tensorflow', 'not installed')}. "
                  f"The resolved config and all versions are in `{RUN}`.", ""]
    return "\n".join(lines)
