"""summary.md: the answer first, then every table and figure with a plain-words guide.

Pure: a Results and the figures' paths in, Markdown text out. Every name that comes
from a file or a config (image names, labels, families, hashers, notes, reasons) is
escaped with `md`, so it reads as text and never becomes a link, an image or HTML.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from harness.config import LOCAL_PREVIEWS
from harness.figures import MAX_PANELS, MAX_TABLE_ROWS, THINNED, preview_scope, undrawable
from harness.markdown import code, md, number, provenance_lines
from harness.metrics import ALL_FAMILIES, format_percent, format_rate, hasher_order, ranked
from harness.schema import PREVIEW_COLUMNS, UNAVAILABLE, first_seen
from harness.storage import ERRORS, PREVIEWS


def markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(md(c) for c in frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    body = ["| " + " | ".join(md(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def format_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """Numbers to short text for Markdown tables, as the prose writes them (markdown.number):
    thousands separators for every column, floats holding whole numbers (a threshold of 1,240.0)
    included; 4 significant digits, but a threshold's 6, as the summary's lines name it (its
    0.310527 read 0.3105 in the table)."""
    out = frame.copy()
    for column in out.columns:
        if pd.api.types.is_float_dtype(out[column]):
            digits = 6 if str(column).startswith("threshold") else 4
            out[column] = [("" if not np.isfinite(v) else number(v, digits)) for v in out[column]]
        elif pd.api.types.is_integer_dtype(out[column]):  # counts, with thousands separators as in the prose
            # (a nullable integer column's empty cells, false_matches_allowed of `fixed`, stay empty)
            out[column] = ["" if pd.isna(v) else f"{v:,}" for v in out[column]]
        elif out[column].hasnans:
            out[column] = ["" if pd.isna(v) else str(v) for v in out[column]]
    return out


def _distance_cells(table: pd.DataFrame, hashers: list[str]) -> pd.DataFrame:
    """The article table with its distances as the rest of the summary writes numbers (a median of
    1,201.5, not table.csv's 1201.5); `unavailable` and `error` as they are."""
    out = table.copy()
    for column in hashers:
        if column in out and out[column].dtype == object:
            out[column] = [cell if cell in (UNAVAILABLE, "error") else number(float(cell)) for cell in out[column]]
    return out


def answer_section(detection: dict) -> list[str]:
    verdicts, chosen, min_tpr = detection["verdicts"], detection["chosen"], detection["min_tpr"]
    per_hasher = detection["hasher_verdicts"]
    thresholds = detection["thresholds"]
    at_chosen = thresholds[thresholds["operating_point"] == chosen]
    counts = sorted(set(at_chosen["impostor_pairs"].astype(int))) if len(at_chosen) else [0]
    # A hasher that failed on some images has fewer pairs than the others: say the range, not the most.
    pairs = f"{counts[0]:,}" if len(counts) == 1 else f"{counts[0]:,} to {counts[-1]:,}"
    rate = detection["rate"]
    line = format_percent(min_tpr)
    lines = ["## The answer", "",
             f"Which hasher still recognises an edited copy while calling at most {rate:g} of pairs of "
             f"*different* images a match ({chosen}; thresholds estimated from {pairs} impostor pairs per hasher)? "
             f"Per family of edits: the hashers that detect most of its copies, pooled over the family's "
             f"strengths, with the count and a 95% Wilson interval over images. Hashers whose intervals "
             f"overlap the best one's are **tied**: listed together, not ranked, the count and the columns "
             f"after it being the first one's; hashers without a threshold at this rate are left out. "
             f"Then how many strengths the first of them detects at {line} or more, the first strength "
             f"(mildest first) where it falls below, and the best hasher ranked below the tied group:", "",
             "| family | best (tied where intervals overlap) | detected | strengths held | first below | runner-up |",
             "| --- | --- | --- | --- | --- | --- |"]
    def pooled(detected, pairs, low, high) -> str:
        """A family's pooled rate: its count, and the interval over images (copies of one image are
        not independent, so the interval is the images', wider than the pairs' would be)."""
        return (f"{format_percent(detected / pairs if pairs else float('nan'), min_tpr)} ({detected:,} of {pairs:,}; "
                f"95% CI {format_percent(low, min_tpr)[:-1]}–{format_percent(high, min_tpr)})")

    # Each family's rows, found once: a filter per family grows with the square of the families.
    rows_of = per_hasher.groupby("family", sort=False, observed=True).indices  # positions, no frame per family
    for row in verdicts.itertuples(index=False):
        if not np.isfinite(row.mean_tpr):  # every hasher lacks a threshold here: none to name, no rate to give
            lines.append(f"| {md(row.family)} | none: no hasher has a threshold at {chosen} | n/a | n/a |  |  |")
            continue
        miss = (f"{row.first_miss} ({format_rate(row.first_miss_detected, row.first_miss_genuine_pairs, min_tpr)})"
                if row.first_miss else "none")
        runner_rate = pooled(row.runner_up_detected, row.runner_up_genuine_pairs, row.runner_up_tpr_low,
                             row.runner_up_tpr_high)
        runner = f"{row.runner_up} ({runner_rate})" if row.runner_up else ""
        flag = "" if row.resolved else " *"
        best = row.best
        if row.tied > 3 or (row.tied == row.hashers and row.hashers > 2):
            # The tied hashers from their own rows: `best` joins their ids with " = ", which an id may hold.
            tied = list(ranked(per_hasher.iloc[rows_of[row.family]])["hasher"].iloc[:row.tied])
            named = ", ".join(tied[:3]) + (", ..." if len(tied) > 3 else "")  # all three of three: "aHash, ..." hid two
            best = f"all {row.hashers} tied: {named}" if row.tied == row.hashers else f"{row.tied} tied: {named}"
        lines.append(f"| {md(row.family)} | {md(best)}{flag} "
                     f"| {pooled(row.detected, row.genuine_pairs, row.tpr_low, row.tpr_high)} "
                     f"| {row.held} of {row.strengths} | {md(miss)} | {md(runner)} |")
    lines.append("")
    # The threshold to use with each hasher, here: it was only in the Thresholds table, a hundred lines down.
    star = " \\*"  # as the answer's rows mark an unresolved rate
    at = [f"{md(r.hasher)} <= {number(r.threshold)}{'' if r.resolved else star}" if np.isfinite(r.threshold)
          else f"{md(r.hasher)}: none" for r in at_chosen.itertuples(index=False)]
    if at:
        lines += [f"The thresholds behind these rates, at {chosen} (a pair is a match at or below its hasher's): "
                  + ", ".join(at) + " (see Thresholds).", ""]
    lines += _no_rate_lines(detection["families"], verdicts)
    warnings = [w for w in dict.fromkeys(verdicts["warning"]) if w]
    for warning in warnings:
        # Where families differ (images failed in some), each warning names the families it is about.
        where = "" if len(warnings) == 1 else f" ({_families_named(verdicts, warning)})"
        lines += [f"> **Too few images for a {line} claim{where}:** {md(warning)}. Read \"held\" as \"no miss was "
                  "seen\", not as a measured rate.", ""]
    if not verdicts["resolved"].all():
        # Edited copies against other images add impostor pairs, unless the run compared them already.
        compared = any(counts.get("transformed") for counts in detection["kinds"].values())
        more = "Add images" if compared else "Add images (or `impostors: {transformed: true}`)"
        lines += [f"\\* Too few impostor pairs to resolve {chosen}: not even one false match is allowed, so the "
                  f"threshold only sits below the closest pair of different images. {more} before trusting these "
                  "rows.", ""]
    lines += break_point_section(detection)
    lines += [f"![detection rate per family and hasher]({detection['figures']['matrix']})", "",
              "**How to read it:** each cell is the percentage of edited copies a hasher (column) still "
              f"matches at {chosen}, averaged over the strengths of an edit family (row). Green holds up, "
              "red does not; a grey `none` column is a hasher without a threshold at this rate.", "",
              f"![detection rate per family]({detection['figures']['detection']})", "",
              f"**How to read it:** one panel per family of edits, the edit's strength on the x axis (mildest on "
              f"the left), and on the y axis the share of images whose edited copy is still matched at the "
              f"threshold that keeps false matches between different images at {rate:g}. The band (a whisker "
              f"where a family has one strength or named ones) is a 95% Wilson interval over images; a line near "
              f"1 is a hasher that holds up.", ""]
    families = len(verdicts)  # a row per family
    if families > MAX_PANELS:
        drawn = f"the first {MAX_PANELS}" + (f" (the matrix the first {MAX_TABLE_ROWS})"
                                             if families > MAX_TABLE_ROWS else " (the matrix all of them)")
        lines += [f"> **Not every family is drawn:** of {families:,} families the figures show {drawn}; "
                  "every family's detection rates are in `detection.csv` and in the tables of this summary.", ""]
    return lines


def break_point_section(detection: dict) -> list[str]:
    """Per family and hasher: the first strength, mildest first, where detection falls below 50%."""
    breaks = detection.get("break_points")
    if breaks is None or breaks.empty:
        return []
    cells = breaks.assign(cell=[_break_cell(row) for row in breaks.itertuples(index=False)])
    table = cells.pivot_table(index="family", columns="hasher", values="cell", aggfunc="first", sort=False)
    table = table.reindex(columns=list(dict.fromkeys(breaks["hasher"]))).fillna("").reset_index()
    unthresholded = ("; \"no threshold\": the hasher has no threshold at this rate, so no copy counts as detected "
                     "and it has no break-point") if not breaks["has_threshold"].all() else ""
    return ["### Where each hasher breaks", "",
            f"The first strength of each family, mildest first, at which a hasher detects fewer than half of the "
            f"copies at {detection['chosen']} (\"holds\": it never does over the strengths tried{unthresholded}):", "",
            markdown_table(table), ""]


def _break_cell(row) -> str:
    """One hasher's break-point in one family: the strength and its rate, "holds", or "no threshold"
    (a hasher that detects nothing for want of a threshold has not held)."""
    if row.break_label:
        return f"{row.break_label} ({format_rate(row.detected, row.genuine_pairs)})"
    return "holds" if row.has_threshold else "no threshold"


def retrieval_section(retrieval: pd.DataFrame) -> list[str]:
    if retrieval.empty:
        return []
    shown = retrieval.copy()
    shown["muAP"] = [f"{v:.4f}" if np.isfinite(v) else "n/a" for v in shown["muAP"]]
    shown["recall_at_p90"] = [format_percent(v, digits=1) for v in shown["recall_at_p90"]]
    shown["threshold_at_p90"] = [number(v) if np.isfinite(v) else "none" for v in shown["threshold_at_p90"]]
    return ["## Standard retrieval metrics", "",
            "To set these results beside published benchmarks: the Image Similarity Challenge 2021's micro "
            "average precision (`muAP`) and recall at 90% precision, computed as its reference code does "
            "(`isc/metrics.py` of facebookresearch/isc2021): one precision-recall curve over every pair of the "
            "run pooled, the genuine pairs (an image and its edited copy) as positives and the impostor pairs as "
            "negatives, score = -distance, and equal distances ranked worst case (negatives first). "
            "`threshold_at_p90` is the distance at which that recall is reached (pairs at or below it match). "
            "Each is over *this* run's edits and images, so it compares hashers here, and equals a published "
            "figure only on the same protocol and data (`retrieval.csv`).", "",
            markdown_table(shown), ""]


def hygiene_section(metrics) -> list[str]:
    """Probable duplicates inside the collection, and what the config excluded."""
    lines = []
    duplicates = metrics.duplicates
    # Pairs the config already leaves out (listed under duplicates, or below exclude_below): the
    # advice to list them would send the reader round in a loop.
    handled = np.zeros(len(duplicates), dtype=bool)
    if len(metrics.excluded) and len(duplicates):  # (a few duplicates; the excluded rows may be millions)
        ids = set(map(str, duplicates["image_id"])) | set(map(str, duplicates["other_id"]))
        first, second = (metrics.excluded[column].astype(str) for column in ("image_id", "other_id"))
        near = first.isin(ids) & second.isin(ids)
        excluded = {frozenset(pair) for pair in zip(first[near], second[near])}
        handled = np.array([frozenset((str(a), str(b))) in excluded
                            for a, b in zip(duplicates["image_id"], duplicates["other_id"])], dtype=bool)
    left = duplicates[~handled] if len(duplicates) else duplicates
    if len(left):
        shown = left.head(20)
        lines += ["## Probable duplicates inside the collection", "",
                  (f"{len(left):,} pairs of *different* source images are as close as edited copies usually are "
                   "and far closer than the rest of the impostor pairs: they are probably copies of one picture. "
                   if len(left) > 1 else
                   "1 pair of *different* source images is as close as edited copies usually are and far closer "
                   "than the rest of the impostor pairs: it is probably two copies of one picture. ")
                  + "Counted as impostors they push the thresholds down. If they are copies, list them under "
                  "`impostors: {duplicates: [[name, name], ...]}` (or set `impostors.exclude_below`) and run again:",
                  "", markdown_table(shown[["image", "other", "hashers", "flagged_by"]]), ""]
        if len(left) > len(shown):
            lines += [f"... and {len(left) - len(shown):,} more.", ""]
    if len(metrics.excluded):
        by_rule = metrics.excluded["excluded_by"].value_counts(sort=False)
        compare = metrics.thresholds[["hasher", "operating_point", "threshold"]].merge(
            metrics.thresholds_unfiltered[["hasher", "operating_point", "threshold"]],
            on=["hasher", "operating_point"], suffixes=("", "_with_excluded"))
        copies = int(handled.sum())
        lines += ["## Impostor pairs excluded by the config", "",
                  f"{len(metrics.excluded):,} impostor distances were left out ("
                  + ", ".join(f"{count:,} by {code(rule)}" for rule, count in by_rule.items()) + ")"
                  + (f", among them those of {copies:,} {'pair' if copies == 1 else 'pairs'} of source images that look "
                     "like copies of one picture" if copies else "")
                  + ". The thresholds with and without them:", "",
                  markdown_table(format_cells(compare)), ""]
    return lines


def detection_sections(detection: dict) -> list[str]:
    thresholds = detection["thresholds"].copy()
    thresholds["resolved"] = thresholds["resolved"].map({True: "yes", False: "NO"})
    if thresholds["precision_target"].isna().all():  # no precision targets: their columns say nothing
        thresholds = thresholds.drop(columns=["precision_target", "precision_measured"])
    roc = detection["roc"]
    overall = roc[roc["family"] == ALL_FAMILIES][["hasher", "auc", "eer", "genuine_pairs", "impostor_pairs"]]
    per_family = roc[roc["family"] != ALL_FAMILIES].pivot_table(index="family", columns="hasher", values="auc",
                                                                  sort=False).reset_index()
    kind_text = "; ".join(f"{md(hasher)}: " + ", ".join(f"{count:,} {md(kind)}" for kind, count in counts.items())
                          for hasher, counts in detection["kinds"].items())
    unreachable = sorted(set(thresholds.loc[thresholds["threshold"].isna(), "hasher"]))
    no_threshold_note = [f"An empty threshold ({md(', '.join(unreachable))}) means more impostor pairs than the rate "
                         "allows sit at the smallest distance there is: no threshold reaches that rate, so no copy "
                         "counts as detected.", ""] if unreachable else []
    families = roc.loc[roc["family"] != ALL_FAMILIES, "family"].nunique()
    roc_cut = [f"> **Not every family is drawn:** `roc.png` draws the first {MAX_PANELS} of {families:,} families; "
               "every family's area under the curve is in the table above and `roc.csv`.", ""] \
        if families > MAX_PANELS else []
    fixed_rates = []
    detected = detection["detection"]
    fixed = detected[detected["operating_point"] == "fixed"]
    if len(fixed):
        given = thresholds[thresholds["operating_point"] == "fixed"]
        rates = fixed.pivot_table(index="family", columns="hasher", values="tpr", aggfunc="mean", sort=False)
        fixed_rates = [
            "## The thresholds you gave", "",
            "Mean detection rate per family at the config's fixed thresholds ("
            + ", ".join(f"{md(r.hasher)} <= {number(r.threshold)}: false-positive rate {r.fpr_measured:.4g} "
                        f"on {r.impostor_pairs:,} impostor pairs" for r in given.itertuples(index=False)) + "):", "",
            markdown_table(format_cells(rates.reset_index())), ""]
    return fixed_rates + [
        "## Thresholds", "",
        "A pair counts as a match when its distance is **at most** the threshold. Each threshold is the largest "
        "distance observed (a copy's or an impostor pair's) at which the false-positive rate on the impostor "
        "pairs stays within the target (`false_matches` of `impostor_pairs`; ties are never split). `resolved: NO` means there are fewer than 1/rate impostor "
        "pairs, so the rate cannot be measured: that threshold only sits below the closest different images "
        "(for a `precision=` row: too few copies matched to tolerate a single false match). "
        "`precision=` rows take the threshold of highest recall whose matches are at least that share "
        "copies (`precision_measured`). `fixed` rows evaluate thresholds given in the config.", "",
        markdown_table(format_cells(thresholds)), "",
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
        "", markdown_table(format_cells(overall)), "",
        "Area under the curve per family:", "", markdown_table(format_cells(per_family)), "",
        f"![ROC curves per family]({detection['figures']['roc']})", "",
        "**How to read it:** per family, the share of copies matched (y) against the share of different-image "
        "pairs falsely matched (x, log scale) as the threshold grows. Curves towards the top left are better.",
        "", *roc_cut,
        "`detection.csv` holds every rate with its interval, `thresholds.csv` the thresholds and `roc.csv` "
        "the areas and equal error rates.", ""]




def summary_markdown(results, figures: dict, previews: bool) -> str:
    """The whole summary of a Results; `figures` maps a figure's role to its path in the output set."""
    config, provenance, metrics = results.config, results.provenance, results.metrics
    distances = results.distances
    image_count, first_images = len(results.images), image_names(results.images, 10)
    lines = [f"# {md(config.get('name', 'harness run'))}", ""]
    if config.get("description"):
        lines += [md(config["description"]), ""]
    shown_images = ", ".join(md(i) for i in first_images) + (", ..." if image_count > 10 else "")
    lines += [f"Images: {image_count:,} ({shown_images}). Pairs per image: {len(metrics.table):,}. "
              f"Hashers: {md(', '.join(hasher_order(distances)))}.", ""]
    for note in results.notes:
        lines += [f"> **Note:** {md(note)}", ""]
    problems = results.errors
    if len(problems):
        shown = 20
        lines += ["## Problems", "", f"{len(problems):,} problems (every one is a row of `{ERRORS}`; the run "
                  "went on without what failed):", ""]
        lines += [f"- {md(row.image)} ({md(row.stage)}): {md(row.reason)}"
                  for row in problems.head(shown).itertuples()]
        if len(problems) > shown:
            lines.append(f"- ... and {len(problems) - shown:,} more in `{ERRORS}`")
        lines.append("")
    detection = detection_bundle(metrics, figures)
    if detection is not None:
        lines += answer_section(detection)
    lines += ["## How to read the distances", "",
              "Each row of the table is a pair of images: A (usually the untouched image) and B (A after the edit "
              "named in the row). Each cell is the distance a hasher measures between A and B: 0 means the "
              "hashes are identical, and larger means the hasher sees the two as more different."
              + (" With several images, each cell is the median over images." if image_count > 1 else
                 " One image proves little: the detection rates of a collection say what a distance means."),
              "",
              "Hamming hashes count differing bits (0 to the hash's length). Embeddings use the article's scale "
              "`64 * (1 - cosine similarity)`: 0 is the same direction, 64 orthogonal. The figures divide each "
              "distance by its hasher's maximum (`distance / max`, in [0, 1]) so hashers with different ranges "
              "share an axis.", ""]
    hashers = results.hashers
    if len(hashers):
        # Edits whose pixels follow the processor make every hasher's distances for their pairs follow
        # it too, the bit-exact ones' included (a run.json of an older version names none).
        inexact = [str(name) for name in provenance.get("cpu_inexact_transforms", [])]
        lines += ["| hasher | distance | max | status | same on every CPU |", "| --- | --- | --- | --- | --- |"]
        for row in hashers.itertuples(index=False):
            exact = getattr(row, "cpu_exact", "")
            if exact == "yes" and inexact:
                exact = "no (edits)"
            lines.append(f"| {md(row.hasher)} | {md(row.distance)} | {number(float(row.distance_max))} "
                         f"| {md(row.status)} "
                         f"| {md(exact)} |")
        lines += ["", "*Same on every CPU*: `yes` where the hashes are bit-exact across processors (measured on "
                  "x86-64 with and without AVX-512, and on an arm64 build); `no` where the library's result "
                  "follows the processor's vector instructions (floating-point rounding), so distances can "
                  "differ in the last digits between machines and a threshold can move by one step."
                  + (f" `no (edits)`: the hashes are bit-exact, but this run's {md(', '.join(inexact))} "
                     f"{'edit is' if len(inexact) == 1 else 'edits are'} not (floating-point work whose rounding "
                     "follows the processor: Intel's IPP, vector code, or another processor's build of the "
                     "library), so the edited copies, and the distances of their pairs, can differ between "
                     "machines." if inexact else ""), ""]
    lines += ["## Distances", "", markdown_table(_distance_cells(metrics.table, hasher_order(distances))), ""]
    if "families" not in figures:
        lines += [f"No pair yielded a distance, so there are no figures: {no_distance_reason(results)}.", ""]
    else:
        lines += [f"![all families]({figures['families']})", "",
                  "**How to read it:** one panel per family, the distance against the swept value (log scale where "
                  "the values double at each step), one line per hasher"
                  + ("; the line (or bar) is the median over images and the band (or whisker) the inter-quartile "
                     "range." if image_count > 1
                     else "."), "",
                  f"![heatmap]({figures['heatmap']})", "",
                  "**How to read it:** the whole table as colour (normalised distance) with the raw distance in each "
                  "cell" + (", each the median over images." if image_count > 1 else "."), ""]
        lines += not_drawn_lines(metrics.table)
        lines += undrawable_lines(metrics.table, hasher_order(results.distances))
    if detection is not None:
        lines += detection_sections(detection)
        lines += retrieval_section(metrics.retrieval)
        lines += hygiene_section(metrics)
    if local_previews(config):
        lines += ["## What the edits look like", "",
                  f"`{PREVIEWS}` shows side B of every pair for the first image "
                  f"({md(first_images[0]) if first_images else ''}) as thumbnails, where the run was made. It is not "
                  f"shown here: the config keeps it local (`report: {{previews: {LOCAL_PREVIEWS}}}`: its images may "
                  "not be redistributed), so a copy of this set made to be shared, such as the one this project "
                  f"commits, does not hold it. With the config's images, `python -m harness run DIR/config.yaml` draws "
                  "it again (`harness report` cannot: it has only the tables).", ""]
    elif previews:
        families, widest = preview_scope(metrics.table)
        shown = "every pair" if families <= MAX_PANELS and widest <= PREVIEW_COLUMNS else "the pairs"
        cuts = ([f"the first {MAX_PANELS} of {families:,} families"] if families > MAX_PANELS else []) + (
            [THINNED] if widest > PREVIEW_COLUMNS else [])
        lines += ["## What the edits look like", "", f"![previews]({PREVIEWS})", "",
                  f"Side B of {shown} for the first image ({md(first_images[0]) if first_images else ''}), as thumbnails "
                  "(not rebuilt by `harness report`; not committed for images that may not be redistributed)."
                  + (f" It shows {', and '.join(cuts)}; the tables hold every pair." if cuts else ""), ""]
    lines += provenance_lines(provenance)
    return "\n".join(lines)


def local_previews(config) -> bool:
    """Whether a run's (resolved) config keeps its previews.png local: drawn, linked from no summary."""
    report = config.get("report") if isinstance(config, dict) else None
    return isinstance(report, dict) and report.get("previews") == LOCAL_PREVIEWS


def not_drawn_lines(table: pd.DataFrame) -> list[str]:
    """What summary.md says where the distance figures leave families or pairs out (a figure
    draws at most MAX_PANELS families and MAX_TABLE_ROWS rows, see harness.figures)."""
    families, labels = table["family"].nunique(), table["label"].nunique()
    cuts = ([f"`families.png` draws the first {MAX_PANELS} of {families:,} families"] if families > MAX_PANELS
            else []) + ([f"`heatmap.png` draws the first {MAX_TABLE_ROWS} of {labels:,} pairs"]
                        if labels > MAX_TABLE_ROWS else [])
    if not cuts:
        return []
    return [f"> **Not everything is drawn:** {' and '.join(cuts)} (as many as a figure stays readable and quick "
            "to draw); every pair's distances are in the table above, `table.csv` and `distances.csv`.", ""]


def undrawable_lines(table: pd.DataFrame, hashers: list[str]) -> list[str]:
    """What summary.md says where the figures' text holds characters that no installed font has
    (a family or label in Chinese, with only DejaVu Sans here): they are drawn as empty boxes."""
    missing = undrawable([*first_seen(table["family"]), *first_seen(table["label"]), *hashers])
    if not missing:
        return []
    shown = " ".join(missing[:UNDRAWABLE_SHOWN]) + (" …" if len(missing) > UNDRAWABLE_SHOWN else "")
    return [f"> **Characters the figures cannot draw:** {md(shown)} ({len(missing):,} in all) are in no installed font "
            "that the figures use, so they show as empty boxes. Install a font that has them (on Debian, "
            "`fonts-noto-cjk` for Chinese, Japanese and Korean), delete matplotlib's list of fonts (the "
            "`fontlist-*.json` in the folder `python -c \"import matplotlib; print(matplotlib.get_cachedir())\"` "
            "prints: matplotlib does not look for new fonts while it has one) and rebuild the figures with "
            "`python -m harness report DIR`; the tables and this summary hold the text as it is.", ""]


UNDRAWABLE_SHOWN = 20  # characters the summary names of those the figures cannot draw


def image_names(images: pd.DataFrame, count: int) -> list[str]:
    """The first `count` images as images.csv counts them (one per pixel content), each by its name,
    or where two images share one (a/x.png and b/x.png are both x) by where it came from. Only
    those names are made: a text per image was 12 MiB at 100,000 images, the run's peak."""
    first = images.head(count)
    names = first["image"].astype(str).tolist()
    if "origin" not in images:  # an output set saved without it: the names are all there is
        return names
    shared = images["image"].duplicated(keep=False).to_numpy()[:count]
    return [str(origin) if twice else name for name, origin, twice in zip(names, first["origin"], shared)]


def no_distance_reason(results) -> str:
    """Why not one pair has a distance, from the hashers' statuses and the problems."""
    statuses = results.hashers["status"] if "status" in results.hashers else pd.Series(dtype=object)
    if len(statuses) and (statuses == UNAVAILABLE).all():
        return "no hasher could run here (each is `unavailable`; the notes above say why)"
    if len(results.errors):
        return "every pair failed (see the problems above)"
    return "the saved tables hold no distance"


def _chosen_rate(metrics) -> float:
    """The false-positive rate the answer is at: its operating point's own target (the first of
    the config's `fpr`, which is never empty), not the number in its name."""
    return next(p.fpr_target for points in metrics.points.values() for p in points if p.name == metrics.chosen)


def _no_rate_lines(families: list, verdicts: pd.DataFrame) -> list[str]:
    """What the summary says of the families the answer has no row for: those whose every pair
    failed for every hasher, so that no table or figure of detection has them (was: not a word)."""
    rated = set(verdicts["family"])
    missing = [family for family in families if family not in rated]
    if not missing:
        return []
    one = len(missing) == 1
    names = _names(missing)
    return [f"> **No detection rate for {len(missing):,} {'family' if one else 'families'} ({names}):** every one of "
            f"{'its' if one else 'their'} pairs failed for every hasher, so no table or figure of detection rates "
            f"has {'it' if one else 'them'}; the problems above and `errors.csv` say why.", ""]


def _names(families: list) -> str:
    """Up to 10 families' names, for a line of the summary, and how many more there are."""
    return ", ".join(md(family) for family in families[:10]) + (
        f" and {len(families) - 10:,} more" if len(families) > 10 else "")


def _families_named(verdicts: pd.DataFrame, warning: str) -> str:
    """'family a' or 'families a, b': those of `verdicts` whose sample-size warning is `warning`."""
    families = list(dict.fromkeys(verdicts.loc[verdicts["warning"] == warning, "family"]))
    return f"{'family' if len(families) == 1 else 'families'} {_names(families)}"


def detection_bundle(metrics, figures: dict) -> dict | None:
    """What the detection sections read, or None without an impostor baseline."""
    if not metrics.has_detection:
        return None
    return {"thresholds": metrics.thresholds, "detection": metrics.detection, "roc": metrics.roc,
            "figures": figures, "chosen": metrics.chosen, "verdicts": metrics.verdicts,
            "hasher_verdicts": metrics.hasher_verdicts, "rate": _chosen_rate(metrics),
            "break_points": metrics.break_points, "min_tpr": metrics.min_tpr, "kinds": metrics.impostor_kinds,
            "families": first_seen(metrics.table["family"])}
