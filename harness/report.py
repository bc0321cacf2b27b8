"""The report: renders a Results into its output directory, the only code that writes a run's files.

`write` saves what a run computed (the long tables, images, errors, hashers, run.json,
config.yaml, previews) and what is derived from it (table, thresholds, detection,
ROC, figures, summary.md) as one new output set (see harness/storage.py).
`python -m harness report DIR` loads a Results from DIR and writes it again with
`rebuild=True`: the saved files are carried over as they are and every derived
file is rendered anew, so a rebuilt report equals the first one by construction.
"""

from __future__ import annotations

import json
import os

import yaml

from harness import figures as plots
from harness import storage
from harness.metrics import hasher_order
from harness.summary import summary_markdown

# What a run saves, and a rebuild carries over unchanged.
SAVED = [f"{storage.DISTANCES}.csv", f"{storage.DISTANCES}.parquet", f"{storage.IMPOSTORS}.csv",
         f"{storage.IMPOSTORS}.parquet", storage.IMAGES, storage.ERRORS, storage.HASHERS, storage.RUN,
         storage.CONFIG, storage.PREVIEWS]
CACHE_FILES = [storage.CACHE, storage.CACHE + "-wal", storage.CACHE + "-shm"]


def write(results, out_dir: str, rebuild: bool = False) -> None:
    """Write `results` to `out_dir` as one new output set; the hash cache there is kept."""
    import matplotlib

    # Names in figures are text: with matplotlib's default, "$...$" in a family or a label is parsed
    # as mathematics, and "$\frac{$" stops the report.
    with storage.OutputSet(out_dir) as output, matplotlib.rc_context({"text.parse_math": False}):
        if rebuild:
            for name in SAVED:
                output.carry(name)
        else:
            save_tables(results, output)
        for name in CACHE_FILES:
            output.carry(name)
        render(results, output, previews=os.path.isfile(output.path(storage.PREVIEWS)))
        output.commit()


def save_tables(results, output: storage.OutputSet) -> None:
    """The tables a run computed, run.json and config.yaml (and the previews, which only a run has)."""
    output.write_long(storage.DISTANCES, results.distances)
    output.write_long(storage.IMPOSTORS, results.impostors)
    output.write_csv(storage.IMAGES, results.images)
    output.write_csv(storage.ERRORS, results.errors)
    output.write_csv(storage.HASHERS, results.hashers)
    config = results.config
    run = {**results.provenance, "config": config, "hashers": results.hashers.to_dict("records"),
           "notes": results.notes}
    output.write_text(storage.RUN, json.dumps(run, indent=2, default=str, allow_nan=False) + "\n")
    output.write_text(storage.CONFIG, config_yaml(config, results.provenance))
    if results.previews:
        output.save_figure(storage.PREVIEWS, plots.previews_figure(results.previews))


def config_yaml(config: dict, provenance: dict) -> str:
    header = ("# The resolved config of this run: `python -m harness run <this file>`, from the directory the\n"
              f"# run was started in ({provenance.get('cwd', '?')}), reproduces its tables.\n")
    return header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=100)


def render(results, output: storage.OutputSet, previews: bool) -> None:
    """Every derived table and figure, and summary.md."""
    metrics, distances = results.metrics, results.distances
    impostors = results.impostors.drop(index=metrics.excluded.index)  # the baseline the thresholds use
    output.write_csv(storage.TABLE, metrics.table)
    hashers = hasher_order(distances)
    axes = plots.sweep_axes(results.config)
    figures = {}
    if len(metrics.curves):  # none when no pair yielded a distance
        figures.update(families=f"{storage.FIGURES}/families.png", heatmap=f"{storage.FIGURES}/heatmap.png")
        output.save_figure(figures["families"], plots.overview_figure(metrics.curves, hashers, axes))
        output.save_figure(figures["heatmap"], plots.heatmap_figure(distances))
    if metrics.has_detection:
        output.write_csv(storage.THRESHOLDS, metrics.thresholds)
        output.write_csv(storage.DETECTION, metrics.detection)
        output.write_csv(storage.ROC, metrics.roc)
        output.write_csv(storage.RETRIEVAL, metrics.retrieval)
        figures.update(detection=f"{storage.FIGURES}/detection.png", histograms=f"{storage.FIGURES}/histograms.png",
                       roc=f"{storage.FIGURES}/roc.png", matrix=f"{storage.FIGURES}/detection_matrix.png")
        chosen = metrics.chosen
        output.save_figure(figures["detection"], plots.detection_figure(metrics.detection, chosen, hashers, axes))
        output.save_figure(figures["histograms"],
                           plots.histogram_figure(distances, impostors, metrics.points, hashers))
        output.save_figure(figures["roc"], plots.roc_figure(distances, impostors, hashers))
        output.save_figure(figures["matrix"], plots.detection_matrix_figure(metrics.detection, chosen, hashers))
    output.write_text(storage.SUMMARY, summary_markdown(results, figures, previews))
