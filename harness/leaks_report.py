"""The leak audit's outputs: the only code that writes them, as one consistent set (storage.OutputSet).

    leaks.csv            one row per flagged pair and hasher
    groups.csv           the files of every duplicate group, and which one each split keeps
    clean/<split>.txt    the files to keep, one per line
    estimates.csv        pairs compared and flagged, expected false flags, per pair of splits and hasher
    misses.csv           with a calibration run: the share of edited copies the thresholds miss
    hashes/<split>.<hasher>.parquet   every file's hash in hexadecimal: a source for the next audit
    files.csv, errors.csv, hashers.csv, run.json, config.yaml, summary.md, review.html
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from harness import storage
from harness.leaks import AGREEMENT
from harness.markdown import code, md, number, provenance_lines
from harness.report import config_yaml
from harness.summary import format_cells, markdown_table

REVIEW = "review.html"


def write(audit, out_dir: str) -> None:
    from harness.review import review_page

    with storage.OutputSet(out_dir) as output:
        for name in storage.CACHE_FILES:  # the default cache lives in DIR: the next audit starts from it
            output.carry(name)
        output.write_csv("leaks.csv", audit.leaks)
        output.write_csv("groups.csv", audit.groups)
        output.write_csv("estimates.csv", audit.estimates)
        if len(audit.misses):
            output.write_csv("misses.csv", audit.misses)
        output.write_csv("files.csv", audit.files)
        output.write_csv(storage.ERRORS, audit.errors)
        output.write_csv(storage.HASHERS, audit.hashers)
        for split, files in audit.clean.items():  # the names as the file system has them (not \xNN escapes)
            output.write_bytes(f"clean/{split}.txt",
                               b"".join(os.fsencode(audit.paths.get((split, f)) or audit.raw_names.get((split, f), f))
                                        + b"\n" for f in files))
        for (split, hasher), name in hash_table_names(audit.hashes).items():
            output.write_parquet(name, audit.hashes[(split, hasher)], audit.hash_metadata.get((split, hasher)))
        output.write_text(storage.CONFIG, config_yaml(audit.config, audit.provenance, "leaks"))
        page = review_page(*_named_pairs(audit),
                           hashers=dict(zip(audit.hashers["hasher"], audit.hashers["distance_max"])),
                           title=f"Leak review of {_listed(_split_names(audit))}",
                           notes=[answer(audit), *estimate_lines(audit)], thresholds=audit.thresholds)
        output.write_text(REVIEW, page)
        output.write_text(storage.SUMMARY, summary_markdown(audit))
        # Last, listing the set's files with their sizes and digests: a later run into this directory
        # replaces those as they were written, refuses to delete anything else found there
        # (storage.check_output_dir), and keeps the set whole where one was changed since.
        run = {**audit.provenance, "config": audit.config, "thresholds": audit.thresholds,
               "threshold_basis": audit.threshold_basis, "notes": audit.notes, **output.listing()}
        output.write_text(storage.RUN, json.dumps(run, indent=2, default=str, allow_nan=False) + "\n")
        output.commit()


def _split_names(audit) -> list[str]:
    """The audit's splits, in its order."""
    return list(dict.fromkeys(audit.files["split"]))


def _listed(names: list[str]) -> str:
    """"train", "train and test", "train, val and test": the splits a page is about (its pairs
    inside each split too, which "train vs test" left out)."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _named_pairs(audit):
    """The flagged pairs with each file as the system names it (audit.raw_names), as UTF-8 reads its
    bytes (the review page marks bytes that are not UTF-8 as escapes, where the tables' \\xNN text
    looks like a name holding a backslash), and each such file's thumbnail, made from the file read for it."""
    from harness.images import utf8_text
    from harness.review import NOT_FOUND, image_thumbnail

    pairs = audit.pairs
    # As UTF-8 reads the name's bytes, whatever the locale (under LC_ALL=C the system names café.png
    # with surrogates, which the page showed as \\xNN escapes): escapes for bytes that are not UTF-8 only.
    raw = {key: utf8_text(name) for key, name in audit.raw_names.items()}
    if raw:
        pairs = pairs.copy()
        for side in "ab":  # as objects: Arrow's text, pandas' default, holds no surrogate
            names = [raw.get((split, file), file) for split, file in zip(pairs[f"split_{side}"], pairs[f"file_{side}"])]
            pairs[f"file_{side}"] = pd.Series(names, index=pairs.index, dtype=object)
    paths = {}
    for (split, file), path in audit.paths.items():
        paths.setdefault(raw.get((split, file), file), path)
    return pairs, lambda file: image_thumbnail(paths[file]) if paths.get(file) else NOT_FOUND


def _file_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:80]


def hash_table_names(hashes) -> dict[tuple[str, str], str]:
    """Per (split, hasher) of `hashes`, the path of its table in the output set. `_file_name`
    makes two ids one name (p/h and p_h), and so can a split's dot (split a.b with hasher c, split
    a with hasher b.c): the later table takes -2, -3, ... rather than replacing the earlier. Names
    are compared case-folded, as a macOS or Windows disk compares them."""
    names, taken = {}, set()
    for split, hasher in hashes:
        stem = f"hashes/{split}.{_file_name(hasher)}"
        name, number = f"{stem}.parquet", 1
        while name.casefold() in taken:
            number += 1
            name = f"{stem}-{number}.parquet"
        taken.add(name.casefold())
        names[(split, hasher)] = name
    return names


# --- the summary ------------------------------------------------------------------------

def answer(audit) -> str:
    """The first line: how many files of each later split have a copy in an earlier one, and how
    many are copies inside their own split."""
    groups, files = audit.groups, audit.files
    splits = _split_names(audit)
    dropped = groups[~groups["keep"].astype(bool)]
    parts = []
    for later in splits[1:]:
        earlier = int(((dropped["split"] == later) & (dropped["copy_in"] != later)).sum())
        total = int((files["split"] == later).sum())
        files_of_split = f"{total:,} {later} {_plural(total, 'file', 'files')}"
        verb = "has" if 1 in (earlier, total) else "have"  # "1 of 2 files has", "0 of 1 file has"
        parts.append(f"{earlier:,} of {files_of_split} {verb} a copy in "
                     + (splits[0] if splits.index(later) == 1 else "an earlier split"))
    own = dropped[dropped["split"] == dropped["copy_in"]]
    inside = len(own)
    # "more": a file with a copy in an earlier split is counted there, even if it also has one in its own split
    more = " more" if len(splits) > 1 else ""
    # Which splits, where there are several: after a sentence about test files, "its own split" read as test's.
    per_split = own["split"].value_counts()
    where = (" (" + ", ".join(f"{int(per_split[name]):,} in {name}" for name in splits if name in per_split) + ")"
             if inside and len(splits) > 1 else "")
    parts.append(f"{inside:,}{more} {_plural(inside, 'file', 'files')}{where} "
                 + _plural(inside, "is a copy of another file of its own split",
                           "are copies of other files of their own split"))
    limits = ", ".join(f"{h} <= {number(t)}" for h, t in audit.thresholds.items())
    agree = audit.config.get("min_agree", 1) if isinstance(audit.config, dict) else 1
    # With min_agree, the thresholds alone read as any one hasher's flag.
    flagged = (f"flagged where at least {agree} of {len(audit.thresholds)} hashers agree: {limits}"
               if isinstance(agree, int) and agree > 1 else f"flagged at {limits}")
    unread = len(audit.errors)  # never compared: in no count above and in no clean list
    if unread:
        parts.append(f"{unread:,} {_plural(unread, 'file or folder', 'files or folders')} could not be read, so "
                     f"{_plural(unread, 'it is', 'they are')} in no count and no clean list (errors.csv)")
    return "; ".join(parts) + f" ({flagged})."


def _plural(count: int, one: str, many: str) -> str:
    return one if count == 1 else many


def estimate_lines(audit) -> list[str]:
    """One line per pair of different splits: flagged pairs and the expected false flags."""
    lines = []
    rows = audit.estimates
    subject = AGREEMENT if (rows["hasher"] == AGREEMENT).any() else None
    for _, row in rows.iterrows():
        if (subject and row["hasher"] != subject) or (not subject and row["hasher"] != rows["hasher"].iloc[0]):
            continue
        which = (f"{row['split_a']} vs {row['split_b']}" if row["split_a"] != row["split_b"]
                 else f"inside {row['split_a']}")
        compared = row["pairs_compared"]
        flagged = f"{which}: {row['pairs_flagged']:,} of {compared:,} {_plural(compared, 'pair', 'pairs')} flagged"
        if np.isfinite(row["expected_false"]):
            lines.append(f"{flagged}; expected false flags {_count(row['expected_false'])} (95% range "
                         f"{_count(row['expected_false_low'])}-{_count(row['expected_false_high'])}), from "
                         f"{row['basis']}." + _estimate_caution(row))
        elif row["pairs_flagged"]:
            lines.append(f"{flagged}; without a calibration run (--calibration) the data cannot tell a copy from a "
                         f"chance match, so {'any of them' if row['pairs_flagged'] > 1 else 'it'} may be false.")
        else:
            lines.append(f"{flagged}.")
    return lines


def _estimate_caution(row) -> str:
    """What a reader should not miss in an estimate: that the flags came out below its range (the
    calibration run's different images are more alike than this data's), or that most of the flags
    are expected to be chance matches (the answer counts them as copies all the same)."""
    flagged = row["pairs_flagged"]
    if flagged < row["expected_false_low"]:
        return (" Fewer pairs were flagged than that range allows: this data's different images are less alike "
                "than the calibration run's, so its estimate is too high here.")
    if flagged and row["expected_false"] >= flagged / 2:
        return " Most of these flags are expected to be chance matches."
    return ""


def mostly_chance(audit) -> bool:
    """Whether, between two different splits, at least half the flags the answer counts (the
    agreement's, with several hashers) are expected to be false."""
    rows = audit.estimates
    rows = rows[rows["hasher"] == (AGREEMENT if (rows["hasher"] == AGREEMENT).any() else rows["hasher"].iloc[0])] \
        if len(rows) else rows
    between = rows[(rows["split_a"] != rows["split_b"]) & (rows["pairs_flagged"] > 0)]
    return bool((between["expected_false"] >= between["pairs_flagged"] / 2).any())


def _threshold_shown(text):
    """estimates.csv's threshold is text ("1240", or "1 of 2" for the agreement): its numbers as the prose's."""
    try:
        return number(float(text))
    except (TypeError, ValueError):
        return text


def _count(value: float) -> str:
    if not np.isfinite(value):
        return ""
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.2g}"


def summary_markdown(audit) -> str:
    # The splits, as the review page's title: the default name ("leaks") said nothing, whatever was audited.
    name = audit.config.get("name", "leaks")
    splits = _split_names(audit)
    lines = [f"# Leak audit of {md(_listed(splits))}" + (f": {md(name)}" if name != "leaks" else ""), ""]
    if audit.config.get("description"):
        lines += [md(audit.config["description"]), ""]
    lines += [f"**{md(answer(audit))}**", ""]
    if mostly_chance(audit):
        lines += ["> **Most of the flags between splits are expected to be chance matches** (below), which this "
                  f"answer counts as copies: confirm them in {REVIEW}, or audit again at lower thresholds (a smaller "
                  "--fpr).", ""]
    lines += [f"- {md(line)}" for line in estimate_lines(audit)]
    lines += ["", f"Every pair of {'the files read' if len(audit.errors) else 'files'} was compared, exactly: no pair "
              "within a threshold is missed; a copy edited "
              "beyond it is (mirrored copies escape most hashes, for one: "
              + ("the misses below measure the calibration run's edits only)" if len(audit.misses) else
                 "a calibration run, --calibration, measures what each threshold misses)") + ". "
              "`leaks.csv` lists each flagged pair with every hasher's distance; `groups.csv` the groups of copies "
              "and the file each split keeps; `clean/<split>.txt` the files to keep; "
              f"[`{REVIEW}`]({REVIEW}) shows the flagged pairs side by side, closest first, to confirm by eye. "
              "No file was moved, deleted or changed.", ""]
    lines += ["## Thresholds", "", "A pair is flagged by a hasher when its distance is at most the threshold"
              + (f", and flagged by the audit when at least {audit.config.get('min_agree', 1)} of the hashers flag it"
                 if len(audit.thresholds) > 1 else "") + ".", ""]
    table = audit.hashers[["hasher", "distance", "distance_max", "threshold", "threshold_basis", "cpu_exact"]].copy()
    for column in ("distance_max", "threshold"):
        table[column] = table[column].map(number)
    lines += [markdown_table(table), ""]
    lines += ["## Pairs compared, flagged, and expected false flags", "",
              "Per pair of splits (a split with itself: the copies inside it) and hasher"
              + (f"; `{AGREEMENT}` is the audit's flag (the hashers' agreement)" if len(audit.thresholds) > 1 else "")
              + ". The expected false flags are the pairs compared times the share of the calibration run's "
              "pairs of different images at or below the threshold. The 95% range is for the number this audit "
              "finds: the share's Wilson interval, counting each pair of different source images once (their "
              "edited copies are not independent chances), widened by the count's own chance variation "
              "(Poisson)." + ("" if audit.calibration else " Without a calibration run, the flagged pairs themselves "
                              "bound them."), ""]
    estimates = audit.estimates.copy()
    for column in ("expected_false", "expected_false_low", "expected_false_high"):
        estimates[column] = estimates[column].map(_count)
    estimates["threshold"] = estimates["threshold"].map(_threshold_shown)
    lines += [markdown_table(format_cells(estimates.drop(columns=["basis"]))), ""]
    if len(audit.misses):
        misses = audit.misses.copy()
        for column in ("miss_rate", "miss_low", "miss_high"):
            misses[column] = misses[column].map(lambda v: f"{100 * v:.0f}%" if np.isfinite(v) else "")
        lines += ["## Copies the thresholds miss", "",
                  f"From the calibration run {code(audit.calibration)}: per family of edits, the share of its edited "
                  "copies whose distance is above the threshold (pooled over strengths; the 95% interval counts "
                  "images, not copies). A copy "
                  "made by such an edit is as likely to be missed here.", "", markdown_table(format_cells(misses)), ""]
    if len(audit.groups):
        shown = audit.groups.head(50)
        groups = audit.groups["group"].nunique()
        lines += ["## Groups of copies", "", f"{groups:,} {_plural(groups, 'group', 'groups')}, "
                  f"{len(audit.groups):,} files" + (" (the first 50 rows; groups.csv has them all)"
                                                  if len(audit.groups) > 50 else "") + ".", "",
                  markdown_table(shown), ""]
    if len(audit.errors):
        count = len(audit.errors)
        lines += ["## Problems", "", f"{count:,} {_plural(count, 'file or folder', 'files or folders')} could not be "
                  "read (a file hashed, a folder listed); each is a row of errors.csv.", "",
                  markdown_table(audit.errors.head(20)), ""]
    if audit.notes:
        lines += ["## Notes", ""] + [f"- {md(note)}" for note in audit.notes] + [""]
    lines += provenance_lines(audit.provenance, "leaks")
    return "\n".join(lines)
